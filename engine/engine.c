/*
 * engine.c - the worker thread behind engine.h.
 *
 * Requests go into a locked FIFO that the worker drains; events come back
 * through a second locked FIFO, and one byte written to a pipe announces
 * that the event queue went from empty to non-empty, so the owner's poll()
 * wakes once per burst rather than once per token.  The worker blocks all
 * signals; the owner handles them.
 *
 * Cancellation is an epoch counter: every request remembers the epoch it
 * was queued in, engine_cancel() bumps it (a lock-free atomic increment, so
 * it is safe in a signal handler), and the worker abandons any request whose
 * epoch is stale, checking between tokens, between prefill batches and
 * between load steps.
 *
 * Conversations: each has a KV cache holding the tokens it was computed
 * from.  A submit renders the whole conversation, tokenises it, keeps the
 * longest common prefix of the cache, and prefills only the rest.  Caches
 * of other conversations are evicted least-recently-used first when their
 * total exceeds the budget.
 *
 * A path "remote:{...}" loads a remote model instead (engine/remote.c): the
 * worker keeps a remote handle in place of the model and a submit streams
 * the reply from the server.  engine_cancel() also writes a byte to a
 * wake-up pipe so that a remote transfer waiting on the network notices the
 * cancel at once.
 *
 * Devices: a load plans the GPU part first (forward_cuda.h: how many
 * layers fit free VRAM, or none), prepares the CPU part for the other
 * layers and uploads; out of GPU memory at upload retries with what fits
 * then, down to the CPU.  What was chosen is info.backend, anything the
 * user should know (CUDA asked for but unusable, fewer layers) is
 * info.notice.  A GPU failure later (a kernel or a copy) frees the GPU
 * part and redoes the step on the CPU with a NOTICE event: the host KV
 * rows are complete after every step, so nothing is lost.
 */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "alloc.h"
#include "bench.h"
#include "forward.h"
#include "kvquant.h"
#include "forward_cuda.h"
#include "gguf.h"
#include "model.h"
#include "pool.h"
#include "quant.h"
#include "reasoning.h"
#include "remote.h"
#include "gbnf.h"
#include "grammar.h"
#include "sampler.h"
#include "template.h"
#include "spec.h"
#include "tokenizer.h"


enum req_type { REQ_LOAD, REQ_UNLOAD, REQ_SUBMIT, REQ_DROP, REQ_EXPORT, REQ_IMPORT, REQ_BENCH, REQ_QUIT };

struct request {
	enum req_type type;
	int id;
	unsigned epoch;
	uint64_t conv;
	char *path;
	struct engine_load_opts load;
	char *template_override;
	char *draft;             /* LOAD: the draft model's path, or NULL */
	struct engine_msg *msgs; /* roles and contents copied */
	size_t n_msgs;
	struct engine_sampling sampling;
	struct engine_gen_opts gen;
	char **stop;             /* copied, NULL-terminated */
	char *grammar;           /* copied GBNF, or NULL */
	char *trigger;           /* copied gen.grammar_trigger, or NULL */
	char **msg_json;         /* copied gen.msg_json (n_msgs entries), or NULL */
	char *vars_json;         /* REQ_SUBMIT: template variables (think, effort, kwargs), or NULL */
	char *wrapup;            /* REQ_SUBMIT: the wrap-up phrase, copied ("" none) */
	char *effort;            /* REQ_SUBMIT: reasoning_effort, copied (gen.reasoning_effort points here) */
	void *blob;              /* REQ_IMPORT: copied snapshot */
	size_t blob_len;
	struct engine_bench_opts bench; /* REQ_BENCH */
	struct event_node *end;  /* the node reserved for the event that ends it */
	struct request *next;
};

struct event_node {
	struct engine_event ev;
	struct event_node *next;
};

struct conv {
	uint64_t id;
	struct kv_cache kv;
	uint64_t last_used;
	bool spec_paused;        /* speculative decoding did not pay here (AUTO) */
};

struct engine {
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct request *req_head, *req_tail;
	struct event_node *ev_head, *ev_tail;
	int pipe_rd, pipe_wr;
	atomic_uint epoch;
	atomic_uint answer_now;  /* engine_answer_now() bumps it; a reply compares with its start */
	int wake_rd, wake_wr;    /* engine_cancel() writes a byte: wakes remote transfers */
	int next_id;
	char last_error[512];
	struct engine_params params;
	struct request quit;     /* engine_free()'s: stopping needs no memory */

	/* worker-owned from here on */
	struct event_node *end;  /* the running request's reserved node, until its end goes out */
	struct remote *remote;   /* a remote model is loaded (then !loaded) */
	bool loaded;
	struct model model;
	tokenizer *tok;
	grammar_vocab *gvocab;   /* the tokenizer's trie for grammars, built on first use */
	char *tmpl_text;
	char bos_text[64], eos_text[64];
	pool *pool;
	struct fwd fwd;
	struct fwd_batcher batcher;   /* prefill batch size, tuned by its speed */
	uint32_t n_ctx;
	uint32_t kv_type, kv_type_v;  /* kvquant.h's types of K and V */
	uint32_t kv_rot;              /* rotation seed of the quantised rows (0: none) */
	enum engine_overflow overflow;
	char family[32];
	enum reasoning_format rfmt;   /* the template's (REASONING_NONE: the model does not think) */
	unsigned rmask;               /* the markers that are vocabulary tokens */
	int32_t rmarker_ids[REASONING_MAX_MARKERS]; /* their ids (-1: matched in text) */
	struct conv *convs;
	size_t n_convs;
	uint64_t use_clock;
	int32_t *ids;
	size_t ids_cap;
	uint64_t model_hash;     /* identity of the loaded file, for snapshots */
	char model_id[33];
	char backend[80];        /* info.backend of the loaded model */
	char notice[256];        /* info.notice */
	double load_ms, prep_ms; /* the load's model_load() and setup_forward(), for bench */
	struct spec_draft_model draft;  /* engine_load_opts.draft (draft.loaded) */
	bool emit_drafted;       /* the token being delivered was a guess (TOKEN's drafted) */
};

/* ---- small helpers ------------------------------------------------------- */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static char *dupstr(const char *s)
{
	return s ? eng_strdup(s) : NULL;
}

const char *engine_status_str(int status)
{
	switch (status) {
	case ENGINE_OK: return "ok";
	case ENGINE_E_INVAL: return "invalid argument";
	case ENGINE_E_NOMEM: return "out of memory";
	case ENGINE_E_IO: return "I/O error";
	case ENGINE_E_FORMAT: return "malformed or unsupported model file";
	case ENGINE_E_NOMODEL: return "no model loaded";
	case ENGINE_E_BUSY: return "busy";
	case ENGINE_E_CONTEXT: return "context full";
	case ENGINE_E_TEMPLATE: return "chat template failed";
	case ENGINE_E_CANCELLED: return "cancelled";
	case ENGINE_E_THREAD: return "cannot start a thread";
	case ENGINE_E_NETWORK: return "network error";
	case ENGINE_E_SERVER: return "server error";
	}
	return "unknown error";
}

int engine_spec_parse(const char *name)
{
	static const char *const names[] = {"auto", "off", "ngram", "draft"};
	for (int i = 0; i < 4; i++)
		if (name && strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

const char *engine_last_error(const engine *e)
{
	return e->last_error;
}

/* ---- event queue ---------------------------------------------------------
 * No request loses its end for want of memory.  post() gives every request
 * one event node before it is queued (the caller gets ENGINE_E_NOMEM at
 * once when even that fails); while the worker runs the request the node
 * waits in e->end, and the first event that ends a request (LOADED,
 * UNLOADED, DONE, ERROR, CONV_EXPORT, CONV_IMPORT) goes out in it.  The
 * other events take a fresh node each, and when none can be had
 * push_event() says so and its caller decides: progress is dropped (the
 * next progress or the end supersedes it), a reply's text stays with the
 * worker and goes out with the next piece (or the reply ends in an ERROR
 * that says it was cut), a CONTEXT_SHIFT or NOTICE ends the request with
 * ENGINE_E_NOMEM before anything changes. */

static bool ends_request(enum engine_event_type t)
{
	return t == ENGINE_EV_LOADED || t == ENGINE_EV_UNLOADED || t == ENGINE_EV_DONE || t == ENGINE_EV_ERROR ||
	       t == ENGINE_EV_CONV_EXPORT || t == ENGINE_EV_CONV_IMPORT;
}

static struct event_node *node_new(void)
{
	return eng_malloc(sizeof(struct event_node));
}

/* Queues EV in node N (both now the queue's). */
static void push_node(engine *e, struct event_node *n, const struct engine_event *ev)
{
	n->ev = *ev;
	n->next = NULL;
	pthread_mutex_lock(&e->mu);
	bool was_empty = e->ev_head == NULL;
	if (e->ev_tail)
		e->ev_tail->next = n;
	else
		e->ev_head = n;
	e->ev_tail = n;
	pthread_mutex_unlock(&e->mu);
	if (was_empty) {
		char b = 1;
		ssize_t w;
		do
			w = write(e->pipe_wr, &b, 1);
		while (w < 0 && errno == EINTR);
	}
}

/* Queues EV (its payload now the queue's); false, payload untouched, when
 * no node could be had.  Worker thread only. */
static bool push_event(engine *e, const struct engine_event *ev)
{
	struct event_node *n = NULL;
	if (ends_request(ev->type)) {
		n = e->end;
		e->end = NULL;
	}
	if (!n)
		n = node_new();
	if (!n)
		return false;
	push_node(e, n, ev);
	return true;
}

/* A progress event (dropped when out of memory: the next one or the end
 * supersedes it) or UNLOADED (never lost). */
static void emit_simple(engine *e, const struct request *r, enum engine_event_type t, float progress)
{
	struct engine_event ev = {.type = t, .request = r->id, .conv = r->conv, .progress = progress};
	(void)push_event(e, &ev);
}

static void emit_error(engine *e, const struct request *r, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void emit_error(engine *e, const struct request *r, int code, const char *fmt, ...)
{
	struct engine_event ev = {.type = ENGINE_EV_ERROR, .request = r->id, .conv = r->conv, .code = code};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ev.message, sizeof ev.message, fmt, ap);
	va_end(ap);
	push_event(e, &ev);
}

bool engine_event_next(engine *e, struct engine_event *ev)
{
	pthread_mutex_lock(&e->mu);
	struct event_node *n = e->ev_head;
	if (n) {
		e->ev_head = n->next;
		if (!e->ev_head)
			e->ev_tail = NULL;
	} else {
		/* queue drained: empty the pipe so poll() sleeps again; a later
		 * push on an empty queue writes a fresh byte */
		char buf[64];
		while (read(e->pipe_rd, buf, sizeof buf) > 0)
			;
	}
	pthread_mutex_unlock(&e->mu);
	if (!n)
		return false;
	*ev = n->ev;
	free(n);
	return true;
}

bool engine_event_wait(engine *e, struct engine_event *ev, int timeout_ms)
{
	double deadline = now_ms() + timeout_ms;
	for (;;) {
		if (engine_event_next(e, ev))
			return true;
		int wait = -1;
		if (timeout_ms >= 0) {
			double left = deadline - now_ms();
			if (left <= 0)
				return false;
			wait = (int)left + 1;
		}
		struct pollfd p = {.fd = e->pipe_rd, .events = POLLIN};
		int rc = poll(&p, 1, wait);
		if (rc < 0 && errno != EINTR)
			return false;
	}
}

void engine_event_clear(struct engine_event *ev)
{
	free(ev->text);
	ev->text = NULL;
	ev->text_len = 0;
	free(ev->blob);
	ev->blob = NULL;
	ev->blob_len = 0;
}

int engine_event_fd(const engine *e)
{
	return e->pipe_rd;
}

/* ---- request queue ------------------------------------------------------- */

static void free_request(struct request *r)
{
	if (!r)
		return;
	free(r->path);
	free(r->template_override);
	free(r->draft);
	for (size_t i = 0; i < r->n_msgs; i++) {
		free((char *)r->msgs[i].role);
		free((char *)r->msgs[i].content);
		if (r->msg_json)
			free(r->msg_json[i]);
	}
	free(r->msgs);
	free(r->msg_json);
	for (size_t i = 0; r->stop && r->stop[i]; i++)
		free(r->stop[i]);
	free(r->stop);
	free(r->grammar);
	free(r->trigger);
	free(r->vars_json);
	free(r->wrapup);
	free(r->effort);
	free(r->blob);
	free(r->end);
	free(r);
}

/* A request refused for want of memory. */
static int refuse_nomem(engine *e)
{
	snprintf(e->last_error, sizeof e->last_error, "out of memory for a request");
	return ENGINE_E_NOMEM;
}

/* Queues R with its end event's node (see the event queue above); R is
 * the engine's either way. */
static int post(engine *e, struct request *r)
{
	r->end = node_new();
	if (!r->end) {
		free_request(r);
		return refuse_nomem(e);
	}
	pthread_mutex_lock(&e->mu);
	/* the worker may free R as soon as the lock is released */
	int id = r->id = ++e->next_id;
	r->epoch = atomic_load(&e->epoch);
	if (e->req_tail)
		e->req_tail->next = r;
	else
		e->req_head = r;
	e->req_tail = r;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return id;
}

static struct request *take(engine *e)
{
	pthread_mutex_lock(&e->mu);
	while (!e->req_head)
		pthread_cond_wait(&e->cv, &e->mu);
	struct request *r = e->req_head;
	e->req_head = r->next;
	if (!e->req_head)
		e->req_tail = NULL;
	pthread_mutex_unlock(&e->mu);
	return r;
}

static bool cancelled(engine *e, const struct request *r)
{
	return atomic_load_explicit(&e->epoch, memory_order_relaxed) != r->epoch;
}

void engine_answer_now(engine *e)
{
	atomic_fetch_add(&e->answer_now, 1);
}

void engine_cancel(engine *e)
{
	atomic_fetch_add(&e->epoch, 1);
	char b = 1;
	ssize_t w = write(e->wake_wr, &b, 1); /* non-blocking; a full pipe wakes anyway */
	(void)w;
}

int engine_load(engine *e, const char *path, const struct engine_load_opts *o)
{
	if (!path) {
		snprintf(e->last_error, sizeof e->last_error, "engine_load: no path");
		return ENGINE_E_INVAL;
	}
	struct request *r = eng_calloc(1, sizeof *r);
	if (!r)
		return refuse_nomem(e);
	r->type = REQ_LOAD;
	r->path = eng_strdup(path);
	if (o) {
		r->load = *o;
		r->template_override = dupstr(o->template_override);
		r->load.template_override = NULL;
		r->draft = dupstr(o->draft);
		r->load.draft = NULL;
	}
	if (!r->path || (o && o->template_override && !r->template_override) || (o && o->draft && !r->draft)) {
		free_request(r);
		return refuse_nomem(e);
	}
	return post(e, r);
}

/* A request that carries nothing but its type and conversation. */
static int post_simple(engine *e, enum req_type type, uint64_t conv)
{
	struct request *r = eng_calloc(1, sizeof *r);
	if (!r)
		return refuse_nomem(e);
	r->type = type;
	r->conv = conv;
	return post(e, r);
}

int engine_unload(engine *e)
{
	return post_simple(e, REQ_UNLOAD, 0);
}

int engine_drop_conv(engine *e, uint64_t conv)
{
	return post_simple(e, REQ_DROP, conv);
}

int engine_conv_export(engine *e, uint64_t conv)
{
	return post_simple(e, REQ_EXPORT, conv);
}

int engine_conv_import(engine *e, uint64_t conv, const void *blob, size_t len)
{
	if (!blob || len == 0)
		return ENGINE_E_INVAL;
	struct request *r = eng_calloc(1, sizeof *r);
	if (!r || !(r->blob = eng_malloc(len))) {
		free(r);
		return refuse_nomem(e);
	}
	memcpy(r->blob, blob, len);
	r->blob_len = len;
	r->type = REQ_IMPORT;
	r->conv = conv;
	return post(e, r);
}

int engine_bench(engine *e, const struct engine_bench_opts *o)
{
	if (!o || (o->n_prompt == 0 && o->n_gen == 0) || o->batch > ENGINE_BATCH_MAX) {
		snprintf(e->last_error, sizeof e->last_error, "engine_bench: no test, or a batch over %d",
			 ENGINE_BATCH_MAX);
		return ENGINE_E_INVAL;
	}
	struct request *r = eng_calloc(1, sizeof *r);
	if (!r)
		return ENGINE_E_NOMEM;
	r->type = REQ_BENCH;
	r->bench = *o;
	return post(e, r);
}

/* The template variables of G as one JSON object (*out NULL when there
 * are none): its template_vars, with enable_thinking and reasoning_effort
 * set over them. */
static int build_vars(engine *e, const struct engine_gen_opts *g, char **out)
{
	*out = NULL;
	if (!g->template_vars && g->think == ENGINE_THINK_DEFAULT && !g->reasoning_effort)
		return 0;
	cJSON *o = g->template_vars ? cJSON_Parse(g->template_vars) : cJSON_CreateObject();
	if (g->template_vars && !cJSON_IsObject(o)) {
		cJSON_Delete(o);
		snprintf(e->last_error, sizeof e->last_error, "engine_submit: template variables are not a JSON object");
		return ENGINE_E_INVAL;
	}
	if (!o)
		return refuse_nomem(e);
	bool ok = true;
	if (g->think != ENGINE_THINK_DEFAULT) {
		cJSON_DeleteItemFromObjectCaseSensitive(o, "enable_thinking");
		ok = cJSON_AddBoolToObject(o, "enable_thinking", g->think == ENGINE_THINK_ON) != NULL;
	}
	if (ok && g->reasoning_effort) {
		cJSON_DeleteItemFromObjectCaseSensitive(o, "reasoning_effort");
		ok = cJSON_AddStringToObject(o, "reasoning_effort", g->reasoning_effort) != NULL;
	}
	char *txt = ok ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (!txt)
		return refuse_nomem(e);
	*out = eng_strdup(txt);
	cJSON_free(txt);
	return *out ? 0 : refuse_nomem(e);
}

int engine_submit(engine *e, uint64_t conv, const struct engine_msg *msgs, size_t n,
		  const struct engine_sampling *s, const struct engine_gen_opts *g)
{
	if (!msgs || n == 0 || n > 100000) {
		snprintf(e->last_error, sizeof e->last_error, "engine_submit: no messages");
		return ENGINE_E_INVAL;
	}
	struct request *r = eng_calloc(1, sizeof *r);
	if (!r)
		return refuse_nomem(e);
	r->type = REQ_SUBMIT;
	r->conv = conv;
	if (s)
		r->sampling = *s;
	else
		engine_sampling_default(&r->sampling);
	if (g)
		r->gen = *g;
	else
		r->gen.add_generation_prompt = true;
	r->gen.stop = NULL;
	r->gen.grammar = NULL;
	r->gen.grammar_trigger = NULL;
	if (g && g->grammar && !(r->grammar = eng_strdup(g->grammar)))
		goto nomem;
	if (g && g->grammar && g->grammar_trigger && g->grammar_trigger[0] &&
	    !(r->trigger = eng_strdup(g->grammar_trigger)))
		goto nomem;
	r->gen.reasoning_effort = NULL;
	r->gen.template_vars = NULL;
	r->gen.reasoning_wrapup = NULL;
	if (g) {
		int rc = build_vars(e, g, &r->vars_json);
		if (rc) {
			free_request(r);
			return rc;
		}
		if (!(r->wrapup = eng_strdup(g->reasoning_wrapup ? g->reasoning_wrapup : ENGINE_WRAPUP_DEFAULT)))
			goto nomem;
		if (g->reasoning_effort && !(r->effort = eng_strdup(g->reasoning_effort)))
			goto nomem;
		/* a remote model sends them on (chat_template_kwargs, reasoning_effort) */
		r->gen.template_vars = r->vars_json;
		r->gen.reasoning_effort = r->effort;
	}
	r->msgs = eng_calloc(n, sizeof *r->msgs);
	if (!r->msgs)
		goto nomem;
	r->n_msgs = n;
	for (size_t i = 0; i < n; i++) {
		r->msgs[i].role = eng_strdup(msgs[i].role ? msgs[i].role : "user");
		r->msgs[i].content = eng_strdup(msgs[i].content ? msgs[i].content : "");
		if (!r->msgs[i].role || !r->msgs[i].content)
			goto nomem;
	}
	r->gen.msg_json = NULL;
	if (g && g->msg_json) {
		if (!(r->msg_json = eng_calloc(n, sizeof *r->msg_json)))
			goto nomem;
		for (size_t i = 0; i < n; i++)
			if (g->msg_json[i] && !(r->msg_json[i] = eng_strdup(g->msg_json[i])))
				goto nomem;
	}
	if (g && g->stop) {
		size_t ns = 0;
		while (g->stop[ns])
			ns++;
		r->stop = eng_calloc(ns + 1, sizeof *r->stop);
		if (!r->stop)
			goto nomem;
		for (size_t i = 0; i < ns; i++)
			if (!(r->stop[i] = eng_strdup(g->stop[i])))
				goto nomem;
	}
	return post(e, r);
nomem:
	free_request(r);
	return refuse_nomem(e);
}

/* ---- worker: model lifetime ---------------------------------------------- */

static void drop_all_convs(engine *e)
{
	for (size_t i = 0; i < e->n_convs; i++)
		kv_free(&e->convs[i].kv);
	free(e->convs);
	e->convs = NULL;
	e->n_convs = 0;
}

static void unload_model(engine *e)
{
	remote_free(e->remote);
	e->remote = NULL;
	if (!e->loaded)
		return;
	drop_all_convs(e);
	spec_draft_free(&e->draft);
	fwd_free(&e->fwd);
	pool_free(e->pool);
	e->pool = NULL;
	grammar_vocab_free(e->gvocab);
	e->gvocab = NULL;
	tok_free(e->tok);
	e->tok = NULL;
	free(e->tmpl_text);
	e->tmpl_text = NULL;
	e->rfmt = REASONING_NONE;
	model_free(&e->model);
	e->loaded = false;
}

static uint64_t weights_bytes(const struct model *m)
{
	uint64_t total = 0;
	for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++)
		total += gguf_tensor_at(m->gguf, i)->size;
	return total + m->owned_f32_bytes;
}

static void fill_info(engine *e, struct engine_model_info *info)
{
	const struct model *m = &e->model;
	memset(info, 0, sizeof *info);
	snprintf(info->arch, sizeof info->arch, "%s", m->arch_name);
	snprintf(info->name, sizeof info->name, "%s", m->name);
	snprintf(info->quant, sizeof info->quant, "%s", m->quant);
	info->n_params = m->n_params;
	info->file_bytes = gguf_file_size(m->gguf);
	info->n_ctx_train = m->hp.n_ctx_train;
	info->n_ctx = e->n_ctx;
	info->n_layer = m->hp.n_layer;
	info->n_embd = m->hp.n_embd;
	info->n_head = m->hp.n_head;
	info->n_head_kv = m->hp.n_head_kv;
	info->n_vocab = m->hp.n_vocab;
	snprintf(info->template_family, sizeof info->template_family, "%s", e->family);
	snprintf(info->reasoning, sizeof info->reasoning, "%s", reasoning_format_name(e->rfmt));
	snprintf(info->tool_format, sizeof info->tool_format, "%s", engine_tools_format(e->tmpl_text));
	snprintf(info->model_id, sizeof info->model_id, "%s", e->model_id);
	snprintf(info->backend, sizeof info->backend, "%s", e->backend[0] ? e->backend : "cpu");
	snprintf(info->notice, sizeof info->notice, "%s", e->notice);
	if (e->draft.loaded)
		snprintf(info->draft, sizeof info->draft, "%s", e->draft.m.name);
}

/* The GPU memory figures of ST (0 on the CPU). */
static void fill_vram(engine *e, struct engine_stats *st)
{
	fwd_cuda_usage(&e->fwd, &st->vram_total, &st->vram_free, &st->vram_ours);
}

/* Where the model runs (see the top of the file): sets e->fwd, e->backend
 * and e->notice.  0 or the status of preparing the CPU part. */
static int setup_forward(engine *e, const struct engine_load_opts *o)
{
	struct fwd_device_opts d = {.device = (int)o->device, .gpu_layers = o->gpu_layers, .kv_type = e->kv_type,
				    .kv_type_v = e->kv_type_v, .kv_rotated = e->kv_rot != 0};
	e->batcher.cur = 0;   /* a new model: start the batch size over */
	return fwd_init_device(&e->fwd, &e->model, e->pool, e->n_ctx, FWD_BATCH_MAX, &d, e->backend, sizeof e->backend,
			       e->notice, sizeof e->notice);
}

/* Text of a special token for the template's bos_token/eos_token. */
static void token_text(const tokenizer *t, int32_t id, char *buf, size_t n)
{
	buf[0] = '\0';
	if (id < 0)
		return;
	size_t len = 0;
	const char *p = tok_piece(t, id, &len);
	if (p && len < n) {
		memcpy(buf, p, len);
		buf[len] = '\0';
	}
}

/* The reasoning format of the loaded model: its template's, else <think>
 * tags when the vocabulary has them as tokens; and which markers are
 * tokens. */
static void setup_reasoning(engine *e)
{
	e->rfmt = reasoning_detect(e->tmpl_text);
	if (e->rfmt == REASONING_NONE && tok_find(e->tok, "<think>", 7) >= 0 && tok_find(e->tok, "</think>", 8) >= 0)
		e->rfmt = REASONING_THINK;
	e->rmask = 0;
	for (unsigned i = 0; i < REASONING_MAX_MARKERS; i++) {
		const char *m = reasoning_marker(e->rfmt, i);
		e->rmarker_ids[i] = m ? tok_find(e->tok, m, strlen(m)) : -1;
		if (e->rmarker_ids[i] >= 0)
			e->rmask |= 1u << i;
	}
}

static void do_load_remote(engine *e, struct request *r)
{
	char err[512];
	e->remote = remote_open(r->path + strlen(REMOTE_PREFIX), r->load.n_ctx, err, sizeof err);
	if (!e->remote) {
		emit_error(e, r, ENGINE_E_INVAL, "%s", err);
		return;
	}
	struct remote_cancel c = {.epoch = &e->epoch, .mine = r->epoch, .wake_fd = e->wake_rd};
	struct engine_event ev = {.type = ENGINE_EV_LOADED, .request = r->id, .progress = 1.0f};
	int rc = remote_probe(e->remote, &c, &ev.info, err, sizeof err);
	if (rc) {
		remote_free(e->remote);
		e->remote = NULL;
		emit_error(e, r, rc, "%s", err);
		return;
	}
	push_event(e, &ev);
}

static void fmt_mib(uint64_t b, char *buf, size_t n)
{
	if (b >= ((uint64_t)10 << 30))
		snprintf(buf, n, "%.1f GiB", (double)b / (double)(1u << 30));
	else
		snprintf(buf, n, "%.0f MiB", (double)b / (double)(1u << 20));
}

/* Refuses (an error event, true) a model that runs on the CPU and cannot
 * fit the memory this process can take, before anything large is
 * touched: the numbers in one line, instead of an OOM kill later. */
static bool refuse_too_big(engine *e, struct request *r)
{
	const struct model *m = &e->model;
	if (r->load.device != ENGINE_DEVICE_CPU && r->load.gpu_layers != ENGINE_GPU_LAYERS_NONE) {
		struct fwd_cuda_plan plan;
		fwd_cuda_plan(m, e->n_ctx, FWD_BATCH_MAX, e->kv_type, r->load.gpu_layers > 0 ? r->load.gpu_layers : 0,
			      &plan);
		if (plan.n_layers > 0)
			return false;   /* the GPU part changes the sum: not judged here */
	}
	const uint64_t kv = kv_bytes_for(&m->hp, e->kv_type, e->kv_type_v, e->n_ctx);
	const uint64_t w = weights_bytes(m), need = engine_mem_need(w, kv), avail = engine_mem_available();
	if (avail == 0 || need <= avail)
		return false;
	char sn[32], sw[32], sk[32], ss[32], sa[32];
	fmt_mib(need, sn, sizeof sn);
	fmt_mib(w, sw, sizeof sw);
	fmt_mib(kv, sk, sizeof sk);
	fmt_mib(engine_mem_scratch(w), ss, sizeof ss);
	fmt_mib(avail, sa, sizeof sa);
	emit_error(e, r, ENGINE_E_NOMEM,
		   "%s: needs %s of memory (weights %s + KV cache %s for %u tokens + scratch %s), %s available: try a smaller quant or context (--ctx-size)",
		   r->path, sn, sw, sk, e->n_ctx, ss, sa);
	return true;
}

/* The draft model of r->draft beside the loaded one; nonzero (an ERROR
 * sent) when it cannot be. */
static int load_draft(engine *e, struct request *r)
{
	char err[512];
	const uint64_t avail = engine_mem_available();
	int rc = spec_draft_load(&e->draft, r->draft, e->tok, e->pool, e->n_ctx, err, sizeof err);
	if (rc) {
		emit_error(e, r, rc, "%s", err);
		return rc;
	}
	const uint64_t w = weights_bytes(&e->model) + weights_bytes(&e->draft.m);
	const uint64_t kv = kv_bytes_for(&e->model.hp, e->kv_type, e->kv_type_v, e->n_ctx) +
			    kv_bytes_for(&e->draft.m.hp, GGML_TYPE_F16, GGML_TYPE_F16, e->n_ctx);
	const uint64_t need = engine_mem_need(w, kv);
	if (e->fwd.cpu_first == 0 && avail > 0 && need > avail) {
		char sn[32], sa[32];
		fmt_mib(need, sn, sizeof sn);
		fmt_mib(avail, sa, sizeof sa);
		emit_error(e, r, ENGINE_E_NOMEM,
			   "%s: with the draft model %s the two need %s of memory, %s available: try a smaller draft or context",
			   r->path, r->draft, sn, sa);
		spec_draft_free(&e->draft);
		return ENGINE_E_NOMEM;
	}
	return 0;
}

static void do_load(engine *e, struct request *r)
{
	char err[512];
	unload_model(e);
	emit_simple(e, r, ENGINE_EV_LOAD_PROGRESS, 0.0f);
	if (strncmp(r->path, REMOTE_PREFIX, strlen(REMOTE_PREFIX)) == 0) {
		do_load_remote(e, r);
		return;
	}

	const volatile int abort_never = 0;
	double t0 = now_ms();
	int rc = model_load(&e->model, r->path, &abort_never, err, sizeof err);
	e->load_ms = now_ms() - t0;
	if (rc) {
		emit_error(e, r, rc, "%s", err);
		return;
	}
	if (cancelled(e, r))
		goto cancel;
	emit_simple(e, r, ENGINE_EV_LOAD_PROGRESS, 0.3f);

	e->tok = tok_load(e->model.gguf, err, sizeof err);
	if (!e->tok) {
		rc = errno == ENOMEM ? ENGINE_E_NOMEM : ENGINE_E_FORMAT;
		model_free(&e->model);
		emit_error(e, r, rc, "%s: tokenizer: %s", r->path, err);
		return;
	}
	/* every embedding row is a token (llama.cpp insists on the same) */
	if (tok_n_vocab(e->tok) != e->model.hp.n_vocab) {
		emit_error(e, r, ENGINE_E_FORMAT, "%s: the vocabulary has %u tokens but token_embd.weight %u rows",
			   r->path, tok_n_vocab(e->tok), e->model.hp.n_vocab);
		tok_free(e->tok);
		e->tok = NULL;
		model_free(&e->model);
		return;
	}
	token_text(e->tok, tok_bos(e->tok), e->bos_text, sizeof e->bos_text);
	token_text(e->tok, tok_eos(e->tok), e->eos_text, sizeof e->eos_text);

	const char *tt = r->template_override;
	struct gguf_str ts;
	bool have_tmpl = tt != NULL;
	if (!tt && gguf_get_str(e->model.gguf, "tokenizer.chat_template", &ts)) {
		have_tmpl = true;
		e->tmpl_text = eng_malloc(ts.len + 1);
		if (e->tmpl_text) {
			memcpy(e->tmpl_text, ts.ptr, ts.len);
			e->tmpl_text[ts.len] = '\0';
		}
	} else if (tt) {
		e->tmpl_text = eng_strdup(tt);
	}
	if (have_tmpl && !e->tmpl_text) {
		emit_error(e, r, ENGINE_E_NOMEM, "%s: out of memory for the chat template", r->path);
		goto fail;
	}
	snprintf(e->family, sizeof e->family, "%s",
		 e->tmpl_text ? "jinja" : tmpl_family_name(tmpl_detect_family(NULL, e->model.arch_name)));
	setup_reasoning(e);

	uint32_t n_ctx = r->load.n_ctx;
	if (n_ctx == 0)
		n_ctx = e->model.hp.n_ctx_train < 4096 ? e->model.hp.n_ctx_train : 4096;
	if (n_ctx < 16)
		n_ctx = 16;
	e->n_ctx = n_ctx;
	e->kv_type = kvq_from_engine((int)r->load.kv_type);
	e->kv_type_v = r->load.kv_type_v ? kvq_from_engine(r->load.kv_type_v - 1) : e->kv_type;
	if (!e->kv_type || !e->kv_type_v) {
		emit_error(e, r, ENGINE_E_INVAL, "unknown KV cache type (types: %s)", ENGINE_KV_TYPE_NAMES);
		goto fail;
	}
	for (int side = 0; side < 2; side++) {
		const uint32_t t = side ? e->kv_type_v : e->kv_type;
		if (kv_bad_head(&e->model.hp, t)) {
			emit_error(e, r, ENGINE_E_INVAL, "%s: head size %u cannot hold a %s %s cache (blocks of %d)",
				   r->path, kv_bad_head(&e->model.hp, t), kvq_name(t), side ? "V" : "K", kvq_block(t));
			goto fail;
		}
	}
	/* rotation pays below 8 bits; q8_0 gains next to nothing from it
	 * (SmolLM2: KLD 0.0056 -> 0.0051) and stays as the GPU reads it */
	const bool wide_k = e->kv_type == GGML_TYPE_F16 || e->kv_type == GGML_TYPE_Q8_0;
	const bool wide_v = e->kv_type_v == GGML_TYPE_F16 || e->kv_type_v == GGML_TYPE_Q8_0;
	e->kv_rot = r->load.kv_no_rotate || (wide_k && wide_v) ? 0 : KVQ_ROT_SEED;
	e->overflow = r->load.overflow;
	if (refuse_too_big(e, r))
		goto fail;

	int nt = e->params.n_threads > 0 ? e->params.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (nt < 1)
		nt = 1;
	e->pool = pool_create(nt);
	if (!e->pool) {
		emit_error(e, r, ENGINE_E_THREAD, "%s: cannot start %d compute threads", r->path, nt);
		goto fail;
	}
	struct engine_load_opts lo = r->load;
	if (lo.device != ENGINE_DEVICE_AUTO && lo.device != ENGINE_DEVICE_CPU && lo.device != ENGINE_DEVICE_CUDA)
		lo.device = ENGINE_DEVICE_AUTO;
	t0 = now_ms();
	rc = setup_forward(e, &lo);
	e->prep_ms = now_ms() - t0;
	if (rc) {
		emit_error(e, r, rc, "%s: %s", r->path,
			   rc == ENGINE_E_NOMEM ? "out of memory for the weights and scratch buffers"
						: engine_status_str(rc));
		pool_free(e->pool);
		e->pool = NULL;
		goto fail;
	}
	/* identity for KV snapshots: FNV-1a over the header and metadata
	 * (everything before the tensor data, at most 64 MiB) and the size */
	{
		const unsigned char *b = gguf_base(e->model.gguf);
		uint64_t n = gguf_data_offset(e->model.gguf), h = 0xcbf29ce484222325ull;
		if (n > (64u << 20))
			n = 64u << 20;
		for (uint64_t i = 0; i < n; i++)
			h = (h ^ b[i]) * 0x100000001b3ull;
		e->model_hash = h;
		snprintf(e->model_id, sizeof e->model_id, "%016llx%016llx",
			 (unsigned long long)gguf_file_size(e->model.gguf), (unsigned long long)h);
	}
	if (r->draft && load_draft(e, r))
		goto fail_loaded;
	/* fault the weights in ahead of the first token */
	gguf_prefetch(e->model.gguf);
	e->loaded = true;
	if (cancelled(e, r)) {
		unload_model(e);
		emit_error(e, r, ENGINE_E_CANCELLED, "%s: loading cancelled", r->path);
		return;
	}
	struct engine_event ev = {.type = ENGINE_EV_LOADED, .request = r->id, .progress = 1.0f};
	fill_info(e, &ev.info);
	ev.stats.weights_bytes = weights_bytes(&e->model);
	ev.stats.scratch_bytes = e->fwd.bytes;
	fill_vram(e, &ev.stats);
	push_event(e, &ev);
	return;
cancel:
	model_free(&e->model);
	emit_error(e, r, ENGINE_E_CANCELLED, "%s: loading cancelled", r->path);
	return;
fail_loaded:
	fwd_free(&e->fwd);
	pool_free(e->pool);
	e->pool = NULL;
fail:
	tok_free(e->tok);
	e->tok = NULL;
	free(e->tmpl_text);
	e->tmpl_text = NULL;
	model_free(&e->model);
}

/* ---- worker: conversations ----------------------------------------------- */

static size_t total_kv(const engine *e)
{
	size_t t = 0;
	for (size_t i = 0; i < e->n_convs; i++)
		t += kv_bytes(&e->convs[i].kv);
	return t;
}

static void drop_conv_at(engine *e, size_t i)
{
	kv_free(&e->convs[i].kv);
	e->convs[i] = e->convs[e->n_convs - 1];
	e->n_convs--;
}

/* The conversation's slot, created when missing; NULL when out of memory. */
static struct conv *get_conv(engine *e, uint64_t id)
{
	for (size_t i = 0; i < e->n_convs; i++)
		if (e->convs[i].id == id) {
			e->convs[i].last_used = ++e->use_clock;
			return &e->convs[i];
		}
	struct conv *c = eng_realloc(e->convs, (e->n_convs + 1) * sizeof *c);
	if (!c)
		return NULL;
	e->convs = c;
	c = &e->convs[e->n_convs];
	memset(c, 0, sizeof *c);
	if (kv_init_types(&c->kv, &e->model.hp, e->kv_type, e->kv_type_v, e->kv_rot, e->n_ctx))
		return NULL;
	c->id = id;
	c->last_used = ++e->use_clock;
	e->n_convs++;
	return c;
}

/* Evicts least recently used caches other than KEEP until within budget. */
static void enforce_budget(engine *e, uint64_t keep)
{
	size_t budget = e->params.kv_budget_bytes ? e->params.kv_budget_bytes : (size_t)1 << 30;
	while (total_kv(e) > budget) {
		size_t victim = SIZE_MAX;
		for (size_t i = 0; i < e->n_convs; i++)
			if (e->convs[i].id != keep &&
			    (victim == SIZE_MAX || e->convs[i].last_used < e->convs[victim].last_used))
				victim = i;
		if (victim == SIZE_MAX)
			return;
		drop_conv_at(e, victim);
	}
}

/* ---- worker: one reply --------------------------------------------------- */

/* The messages from FIRST_MSG on (a leading system one kept) as one JSON
 * array for the template, when some message carries its own JSON (tool
 * calls, tool results); *out stays NULL when none does.  Nonzero when out
 * of memory. */
static int messages_json(const struct request *r, size_t first_msg, char **out)
{
	*out = NULL;
	bool any = false;
	for (size_t i = 0; r->msg_json && i < r->n_msgs; i++)
		any |= r->msg_json[i] != NULL;
	if (!any)
		return 0;
	size_t total = 3;
	for (size_t i = 0; i < r->n_msgs; i++)
		total += (r->msg_json[i] ? strlen(r->msg_json[i])
					  : 40 + 6 * (strlen(r->msgs[i].role) + strlen(r->msgs[i].content))) + 1;
	char *s = eng_malloc(total);
	if (!s)
		return 1;
	size_t o = 0;
	s[o++] = '[';
	for (size_t i = 0; i < r->n_msgs; i++) {
		if (i < first_msg && !(i == 0 && strcmp(r->msgs[0].role, "system") == 0))
			continue;
		if (o > 1)
			s[o++] = ',';
		if (r->msg_json[i]) {
			size_t l = strlen(r->msg_json[i]);
			memcpy(s + o, r->msg_json[i], l);
			o += l;
			continue;
		}
		/* a plain message: {"role": R, "content": C}, escaped */
		const char *parts[2] = {r->msgs[i].role, r->msgs[i].content};
		for (int k = 0; k < 2; k++) {
			const char *key = k ? ",\"content\":\"" : "{\"role\":\"";
			memcpy(s + o, key, strlen(key));
			o += strlen(key);
			for (const unsigned char *p = (const unsigned char *)parts[k]; *p; p++) {
				if (*p == '"' || *p == '\\') {
					s[o++] = '\\';
					s[o++] = (char)*p;
				} else if (*p < 0x20) {
					/* room: 6 bytes a byte were counted */
					o += (size_t)snprintf(s + o, total - o, "\\u%04x", *p);
				} else {
					s[o++] = (char)*p;
				}
			}
			s[o++] = '"';
		}
		s[o++] = '}';
	}
	s[o++] = ']';
	s[o] = '\0';
	*out = s;
	return 0;
}

/* Renders the conversation from message FIRST_MSG on into *out; *gen_at
 * is where the generation prompt starts in it (0 when unknown or raw): the
 * text the reasoning parser reads to learn how the reply starts. */
static int render_prompt(engine *e, const struct request *r, size_t first_msg, char **out, size_t *len,
			 size_t *gen_at, char *err, size_t errlen)
{
	size_t n = r->n_msgs;
	*gen_at = 0;
	if (r->gen.raw) {
		size_t total = 0;
		for (size_t i = first_msg; i < n; i++)
			total += strlen(r->msgs[i].content);
		char *s = eng_malloc(total + 1);
		if (!s)
			return ENGINE_E_NOMEM;
		size_t o = 0;
		for (size_t i = first_msg; i < n; i++) {
			size_t l = strlen(r->msgs[i].content);
			memcpy(s + o, r->msgs[i].content, l);
			o += l;
		}
		s[o] = '\0';
		*out = s;
		*len = o;
		return 0;
	}
	/* keep a leading system message when older turns are dropped */
	struct tmpl_message *tm = eng_calloc(n, sizeof *tm);
	if (!tm)
		return ENGINE_E_NOMEM;
	size_t k = 0;
	if (first_msg > 0 && strcmp(r->msgs[0].role, "system") == 0)
		tm[k++] = (struct tmpl_message){r->msgs[0].role, r->msgs[0].content, strlen(r->msgs[0].content)};
	for (size_t i = first_msg; i < n; i++)
		tm[k++] = (struct tmpl_message){r->msgs[i].role, r->msgs[i].content, strlen(r->msgs[i].content)};
	char *mjson = NULL;
	if (messages_json(r, first_msg, &mjson)) {
		free(tm);
		return ENGINE_E_NOMEM;
	}
	struct tmpl_options opt = {
		.add_generation_prompt = r->gen.add_generation_prompt,
		.bos_token = e->bos_text,
		.eos_token = e->eos_text,
		.vars_json = r->vars_json,
		.messages_json = mjson,
	};
	enum tmpl_family fam = TMPL_FAMILY_UNKNOWN;
	int rc = tmpl_format_chat(e->tmpl_text, e->model.arch_name, tm, k, &opt, out, len, &fam, err, errlen);
	if (rc >= 0 && e->rfmt != REASONING_NONE && opt.add_generation_prompt) {
		/* the same without the generation prompt: what it adds is the tail */
		char *base = NULL, e2[256];
		size_t bl = 0;
		opt.add_generation_prompt = false;
		if (tmpl_format_chat(e->tmpl_text, e->model.arch_name, tm, k, &opt, &base, &bl, NULL, e2, sizeof e2) >= 0 &&
		    bl <= *len && memcmp(base, *out, bl) == 0)
			*gen_at = bl;
		free(base);
	}
	free(tm);
	free(mjson);
	if (rc < 0)
		return rc == TMPL_ERR_NOMEM ? ENGINE_E_NOMEM : ENGINE_E_TEMPLATE;
	if (rc == TMPL_FALLBACK)
		snprintf(e->family, sizeof e->family, "%s", tmpl_family_name(fam));
	return 0;
}

/* Tokenises the rendered prompt into e->ids; returns the count or < 0. */
static int64_t tokenize_prompt(engine *e, const char *text, size_t len)
{
	bool add_bos = tok_add_bos(e->tok);
	/* a template that writes the BOS text itself gets no second BOS */
	size_t bl = strlen(e->bos_text);
	if (add_bos && bl > 0 && len >= bl && memcmp(text, e->bos_text, bl) == 0)
		add_bos = false;
	size_t n = 0;
	int rc = tok_encode(e->tok, text, len, add_bos, true, &e->ids, &n, &e->ids_cap);
	if (rc < 0)
		return rc;
	return (int64_t)n;
}

/* Longest suffix of TEXT that is a proper prefix of some stop string:
 * those bytes are held back until we know they do not start a stop. */
static size_t stop_holdback(char *const *stop, const char *text, size_t len)
{
	size_t hold = 0;
	for (size_t s = 0; stop && stop[s]; s++) {
		size_t sl = strlen(stop[s]);
		for (size_t k = sl - 1; k > hold && k > 0; k--)
			if (k <= len && memcmp(text + len - k, stop[s], k) == 0) {
				hold = k;
				break;
			}
	}
	return hold;
}

/* A TOKEN event; ST (may be NULL) carries the prompt figures known so far,
 * so a UI can show prefill speed and cache reuse while the reply streams.
 * False when out of memory: the caller keeps the text and sends it with
 * the next piece. */
static bool emit_text(engine *e, const struct request *r, const char *s, size_t n, int32_t tok, uint32_t pos,
		      const struct engine_stats *st, enum engine_part part)
{
	if (n == 0)
		return true;
	struct engine_event ev = {.type = ENGINE_EV_TOKEN, .request = r->id, .conv = r->conv, .token = tok,
				  .position = pos, .part = part, .drafted = tok >= 0 && e->emit_drafted};
	if (st)
		ev.stats = *st;
	ev.text = eng_malloc(n + 1);
	if (!ev.text)
		return false;
	memcpy(ev.text, s, n);
	ev.text[n] = '\0';
	ev.text_len = n;
	if (!push_event(e, &ev)) {
		free(ev.text);
		return false;
	}
	return true;
}

/* A remote reply's text: what could not go out waits in held and goes
 * with the next piece; lost when even that buffer cannot grow. */
struct remote_sink {
	engine *e;
	const struct request *r;
	uint32_t n;
	char *held;
	size_t held_len, held_cap;
	enum engine_part held_part;
	bool lost;
};

static bool sink_flush(struct remote_sink *k)
{
	if (!emit_text(k->e, k->r, k->held, k->held_len, -1, k->n, NULL, k->held_part))
		return false;
	k->held_len = 0;
	return true;
}

static void remote_text(void *ctx, const char *text, size_t len, bool reasoning)
{
	struct remote_sink *k = ctx;
	const enum engine_part part = reasoning ? ENGINE_PART_REASONING : ENGINE_PART_ANSWER;
	k->n++;
	if (k->lost)
		return;
	if (k->held_len && k->held_part != part && !sink_flush(k)) {
		k->lost = true; /* the parts cannot be kept apart in order */
		return;
	}
	k->held_part = part;
	if (k->held_len == 0 && emit_text(k->e, k->r, text, len, -1, k->n, NULL, part))
		return;
	if (len > k->held_cap - k->held_len) {
		size_t cap = 2 * (k->held_len + len) + 64;
		char *h = eng_realloc(k->held, cap);
		if (!h) {
			k->lost = true;
			return;
		}
		k->held = h;
		k->held_cap = cap;
	}
	memcpy(k->held + k->held_len, text, len);
	k->held_len += len;
	(void)sink_flush(k);
}

static void do_submit_remote(engine *e, struct request *r)
{
	char err[512] = "";
	struct engine_stats st;
	enum engine_stop_reason stop;
	struct remote_cancel c = {.epoch = &e->epoch, .mine = r->epoch, .wake_fd = e->wake_rd};
	struct remote_sink k = {.e = e, .r = r};
	if (cancelled(e, r)) {
		struct engine_event ev = {.type = ENGINE_EV_DONE, .request = r->id, .conv = r->conv,
					  .stop = ENGINE_STOP_CANCELLED};
		push_event(e, &ev);
		return;
	}
	int rc = remote_chat(e->remote, &c, r->msgs, r->n_msgs, &r->sampling, &r->gen, r->stop, remote_text, &k, &st,
			     &stop, err, sizeof err);
	bool delivered = !k.lost && (k.held_len == 0 || sink_flush(&k));
	free(k.held);
	if (rc) {
		emit_error(e, r, rc, "%s", err);
		return;
	}
	if (!delivered) {
		emit_error(e, r, ENGINE_E_NOMEM, "out of memory: the rest of the reply could not be delivered");
		return;
	}
	struct engine_event ev = {.type = ENGINE_EV_DONE, .request = r->id, .conv = r->conv, .stop = stop, .stats = st};
	push_event(e, &ev);
}

/* The GPU failed mid-request: prepare every layer on the CPU, drop the GPU
 * part and say so.  0, or the status of preparing the CPU part (the
 * failed GPU part then stays, and every step reports the failure). */
static int fall_back_to_cpu(engine *e, const struct request *r)
{
	struct fwd cpu;
	struct event_node *n = node_new();   /* the NOTICE must go out once the GPU part is gone */
	if (!n)
		return ENGINE_E_NOMEM;
	int rc = fwd_init(&cpu, &e->model, e->pool, e->n_ctx, FWD_BATCH_MAX);
	if (rc) {
		free(n);
		return rc;
	}
	struct engine_event ev = {.type = ENGINE_EV_NOTICE, .request = r->id, .conv = r->conv};
	snprintf(ev.message, sizeof ev.message, "CUDA failed (%.300s); running on the CPU from here on",
		 fwd_cuda_error(&e->fwd));
	fwd_free(&e->fwd);
	e->fwd = cpu;
	snprintf(e->backend, sizeof e->backend, "cpu");
	snprintf(e->notice, sizeof e->notice, "%.255s", ev.message);
	push_node(e, n, &ev);
	return 0;
}

/* What a forward pass polls between the layers of a batch: this
 * request's cancel. */
struct stop_ctx {
	engine *e;
	const struct request *r;
};

static bool stop_requested(void *ctx)
{
	const struct stop_ctx *c = ctx;
	return cancelled(c->e, c->r);
}

static int eval_stoppable(engine *e, struct stop_ctx *sc, struct kv_cache *kv, const int32_t *ids, int n,
			  bool all_logits)
{
	e->fwd.stop = stop_requested;
	e->fwd.stop_ctx = sc;
	int rc = fwd_eval(&e->fwd, kv, ids, n, all_logits);
	e->fwd.stop = NULL;
	e->fwd.stop_ctx = NULL;
	return rc;
}

/* One batch, redone on the CPU when the GPU part failed; a cancel during
 * a prefill batch stops it between layers (ENGINE_E_CANCELLED, nothing
 * appended to the cache). */
static int eval_rows(engine *e, const struct request *r, struct kv_cache *kv, const int32_t *ids, int n,
		     bool all_logits)
{
	struct stop_ctx sc = {e, r};
	int rc = eval_stoppable(e, &sc, kv, ids, n, all_logits);
	if (rc && rc != ENGINE_E_CANCELLED && fwd_cuda_failed(&e->fwd) && fall_back_to_cpu(e, r) == 0)
		rc = eval_stoppable(e, &sc, kv, ids, n, all_logits);
	return rc;
}

static int eval_step(engine *e, const struct request *r, struct kv_cache *kv, const int32_t *ids, int n)
{
	return eval_rows(e, r, kv, ids, n, false);
}

/* A reply's text so far; sent: how much of it went out in TOKEN events. */
struct reply {
	char *text;
	size_t len, cap, sent;
};

static bool reply_append(struct reply *b, const char *s, size_t n)
{
	if (n >= b->cap - b->len) {
		size_t cap = b->cap;
		while (n >= cap - b->len)
			cap *= 2;
		char *t = eng_realloc(b->text, cap);
		if (!t)
			return false;
		b->text = t;
		b->cap = cap;
	}
	memcpy(b->text + b->len, s, n);
	b->len += n;
	b->text[b->len] = '\0';
	return true;
}

/* Sends what is ready of the reply; what cannot go out for want of memory
 * stays and goes with the next piece. */
static void reply_send(engine *e, const struct request *r, struct reply *b, size_t ready, int32_t tok,
		       uint32_t pos, const struct engine_stats *st, enum engine_part part)
{
	if (ready > b->sent && emit_text(e, r, b->text + b->sent, ready - b->sent, tok, pos, st, part))
		b->sent = ready;
}

/* One reply being decoded: the answer (stop strings are matched in it,
 * a possible start of one held back) and the reasoning (sent as it
 * comes), fed by the reasoning parser. */
struct gen {
	engine *e;
	const struct request *r;
	const struct engine_stats *st;
	struct reply ans, think;
	int32_t tok;               /* the token being delivered (-1: the engine's text) */
	uint32_t pos;
	bool nomem;
};

/* The answer's text that may go out: all of it but a possible start of a
 * stop string. */
static size_t answer_ready(const struct gen *g)
{
	return g->ans.len - stop_holdback(g->r->stop, g->ans.text, g->ans.len);
}

/* The parser's output.  What the other part holds goes out first, so
 * the TOKENs keep the order of the text. */
static void gen_emit(void *ctx, enum reasoning_part part, const char *s, size_t n)
{
	struct gen *g = ctx;
	if (part == REASONING_THOUGHT) {
		reply_send(g->e, g->r, &g->ans, answer_ready(g), g->tok, g->pos, g->st, ENGINE_PART_ANSWER);
		if (!reply_append(&g->think, s, n))
			g->nomem = true;
	} else {
		reply_send(g->e, g->r, &g->think, g->think.len, g->tok, g->pos, g->st, ENGINE_PART_REASONING);
		if (!reply_append(&g->ans, s, n))
			g->nomem = true;
	}
}

/* Ends the reasoning from outside (a budget, answer now, a loop, think
 * off): the wrap-up phrase goes out as reasoning, then PENDING (the
 * sampled token not yet in the cache, or -1), the phrase and the family's
 * closing text are fed to the model.  0, or a status with a message. */
static int close_reasoning(engine *e, const struct request *r, struct kv_cache *kv, struct reasoning *rs,
			   struct gen *g, const char *phrase, int32_t pending, int32_t **ids, size_t *cap,
			   char *err, size_t errlen)
{
	reasoning_force_answer(rs, gen_emit, g);
	if (phrase && *phrase && !reply_append(&g->think, phrase, strlen(phrase))) {
		snprintf(err, errlen, "out of memory for the reply");
		return ENGINE_E_NOMEM;
	}
	g->tok = -1;
	reply_send(e, r, &g->think, g->think.len, -1, kv->n, g->st, ENGINE_PART_REASONING);
	size_t n = 0;
	if (pending >= 0) {
		if (*cap < 1) {
			int32_t *t = eng_realloc(*ids, 16 * sizeof **ids);
			if (!t)
				goto nomem;
			*ids = t;
			*cap = 16;
		}
		(*ids)[n++] = pending;
	}
	const char *close = reasoning_close_text(rs->fmt);
	if ((phrase && *phrase && tok_encode(e->tok, phrase, strlen(phrase), false, false, ids, &n, cap) < 0) ||
	    tok_encode(e->tok, close, strlen(close), false, true, ids, &n, cap) < 0)
		goto nomem;
	if (kv->n + n > e->n_ctx)
		return ENGINE_E_CONTEXT;
	for (size_t i = 0; i < n;) {
		int nb = n - i > ENGINE_BATCH_MAX ? ENGINE_BATCH_MAX : (int)(n - i);
		int rc = eval_step(e, r, kv, *ids + i, nb);
		if (rc) {
			if (rc != ENGINE_E_CONTEXT && rc != ENGINE_E_CANCELLED)
				snprintf(err, errlen, "closing the reasoning: %s", engine_status_str(rc));
			return rc;
		}
		i += (size_t)nb;
	}
	return 0;
nomem:
	snprintf(err, errlen, "out of memory closing the reasoning");
	return ENGINE_E_NOMEM;
}

/* A lazy grammar's triggers (engine_gen_opts.grammar_trigger): a list of
 * lines, "^" marking one that counts only at the answer's start; one that
 * is a control token is matched as that token. */
#define TRIGGERS_MAX 8
struct trig {
	const char *s;
	size_t len;
	bool start;
	int32_t tok;
};

static size_t triggers_parse(const engine *e, const char *list, struct trig *t)
{
	size_t n = 0;
	for (const char *p = list; *p && n < TRIGGERS_MAX;) {
		size_t l = strcspn(p, "\n");
		bool start = *p == '^';
		t[n] = (struct trig){p + start, l - start, start, -1};
		int32_t id = start ? -1 : tok_find(e->tok, t[n].s, t[n].len);
		if (id >= 0 && tok_is_control(e->tok, id))
			t[n].tok = id;
		n += t[n].len > 0;
		p += l + (p[l] == '\n');
	}
	return n;
}

/* Whether token ID is one of the N triggers T. */
static bool trigger_token(const struct trig *t, size_t n, int32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].tok == id)
			return true;
	return false;
}

/* The lazy grammar's start: when token TOK (>= 0) is a trigger, or the
 * answer's text from BEFORE on completes one (the earliest), the grammar
 * takes the text from the trigger's start (or the token) and *LAZY ends.
 * GRAMMAR_OK, the grammar's refusal, or 1: text came first where only
 * triggers at the start were given, so the grammar no longer applies. */
static int lazy_trigger(const struct trig *t, size_t n, grammar *gm, const struct reply *ans, size_t before,
			int32_t tok, bool *lazy)
{
	size_t lead = 0; /* white space at the answer's start */
	while (lead < ans->len && strchr(" \t\r\n", ans->text[lead]))
		lead++;
	size_t pos = SIZE_MAX, tl = 0;
	bool by_tok = false;
	for (size_t i = 0; i < n; i++) {
		if (tok >= 0 && t[i].tok == tok) {
			pos = before;
			tl = t[i].len;
			by_tok = true;
			break;
		}
		size_t from = before >= t[i].len ? before - t[i].len + 1 : 0;
		for (size_t k = from; k + t[i].len <= ans->len && k < pos; k++)
			if (memcmp(ans->text + k, t[i].s, t[i].len) == 0 && (!t[i].start || k <= lead)) {
				pos = k;
				break;
			}
	}
	if (pos == SIZE_MAX) {
		/* only triggers at the start, and the text after the answer's
		 * white space no longer begins one: free text it stays */
		bool alive = false;
		for (size_t i = 0; i < n; i++)
			alive |= !t[i].start || (ans->len - lead < t[i].len &&
						 memcmp(ans->text + lead, t[i].s, ans->len - lead) == 0);
		if (!alive) {
			*lazy = false;
			return 1;
		}
		return GRAMMAR_OK;
	}
	*lazy = false;
	if (by_tok) {
		int rc = grammar_accept_token(gm, tok);
		/* text the token's decoding already added after it */
		size_t done = before + tl;
		return rc || ans->len <= done ? rc : grammar_accept_text(gm, ans->text + done, ans->len - done);
	}
	return grammar_accept_text(gm, ans->text + pos, ans->len - pos);
}

/* Samples and evaluates the reply token by token after the prefill,
 * streaming TOKEN events split by RS into reasoning and answer, and fills
 * the decode figures of ST.  GM (or NULL) constrains the answer: the
 * reasoning of a thinking model is free, the grammar applies from the
 * first token after it.  Returns the stop reason, or a negative status
 * with a message in ERR when the reply cannot go on: out of memory
 * (sampler, reply, decoder, KV cache, text that cannot be delivered) or a
 * failed step. */
/* ---- worker: speculative decoding -----------------------------------------
 * A reply's decode loop samples one token at a time from e->fwd.logits and
 * hands it to spec_advance(), which either moves on to the next row of a
 * verification pass already computed (the token was the drafter's guess)
 * or evaluates it, with the next guesses behind it, in one batched pass
 * (spec.h).  Rows of guesses not yet accepted sit in the cache past the
 * committed text: committed() is where the reply really is.  A rejected
 * guess cuts them off; a recurrent state cannot be cut, so it goes back
 * to its copy from before the pass and the accepted tokens are recomputed
 * at the head of the next pass. */

#define SPEC_PROBE_EVERY 128   /* tokens between plain steps that time the baseline */
#define SPEC_WINDOW 8          /* passes per judgement of AUTO */
#define SPEC_RETRY_AFTER 256   /* tokens before a paused drafter is tried again */
#define SPEC_NEW_TASK 64       /* new prompt tokens that count as a new task */

struct spec_run {
	enum engine_spec mode;     /* NGRAM or DRAFT; OFF: plain */
	bool may_pause;            /* AUTO */
	bool paused;
	uint32_t paused_at;        /* gen count when paused */
	int cap;                   /* the request's cap on guesses per pass */
	/* the length model: a pass of T tokens costs cost[T] ms (measured,
	 * running means; cost[1] is a plain step), each guess of the draft
	 * model draft_ms, and a guess holds with probability alpha (acc / (acc
	 * + rej): accepted guesses against passes cut by a rejection) */
	double cost[SPEC_MAX_DRAFT + 2];
	double draft_ms;
	double acc, rej;
	/* the pass under verification */
	bool active;
	int32_t draft[SPEC_MAX_DRAFT];
	int n_draft, next;
	int row0;                  /* logits row of its first sample */
	uint32_t base;             /* kv->n before it */
	float *rs_save;            /* recurrent states before it */
	int32_t prefix[SPEC_MAX_DRAFT + 2];
	int n_prefix;              /* recurrent: accepted tokens to recompute */
	/* timing: a cycle runs from one evaluation's start to the next */
	double cycle_t0;
	bool cycle_spec;
	uint32_t cycle_tokens;
	double plain_ms;           /* per token, plain steps (running mean) */
	uint32_t n_plain, since_plain;
	double spec_ms, win_ms;
	uint32_t spec_tokens, win_tokens, win_passes;
	uint32_t gen;              /* tokens through spec_advance */
};

static void spec_cost(struct spec_run *sp, int T, double ms)
{
	if (T < 1 || T > SPEC_MAX_DRAFT + 1)
		return;
	sp->cost[T] = sp->cost[T] > 0 ? 0.7 * sp->cost[T] + 0.3 * ms : ms;
}

/* Guesses to ask for: the k (1..cap) with the most tokens per ms, a pass
 * of k guesses giving 1 + a + a^2 + .. + a^k tokens on average for
 * cost[k + 1] + k * draft_ms.  A length not timed yet is priced
 * hopefully (cost[1] x (1 + (T - 1) / 4), the memory-bound ideal with some
 * compute): it gets tried and measured.  Until passes have been seen, a
 * guess is taken to hold 3 times in 4. */
static int spec_length(const struct spec_run *sp)
{
	if (sp->cost[1] <= 0)
		return sp->cap;
	const double a = sp->acc + sp->rej > 0.5 ? sp->acc / (sp->acc + sp->rej) : 0.75;
	int best = 1;
	double best_rate = 0, tokens = 1, ak = 1;
	for (int k = 1; k <= sp->cap; k++) {
		ak *= a;
		tokens += ak;
		const double c = (sp->cost[k + 1] > 0 ? sp->cost[k + 1] : sp->cost[1] * (1 + k / 4.0)) + k * sp->draft_ms;
		if (tokens / c > best_rate) {
			best_rate = tokens / c;
			best = k;
		}
	}
	return best;
}

static uint32_t committed(const struct kv_cache *kv, const struct spec_run *sp)
{
	return kv->n - (sp->active ? (uint32_t)(sp->n_draft - sp->next) : 0);
}

static void spec_cycle_end(struct spec_run *sp, struct engine_stats *st)
{
	const double now = now_ms();
	if (sp->cycle_t0 > 0 && sp->cycle_tokens > 0) {
		const double dt = now - sp->cycle_t0;
		if (sp->cycle_spec) {
			sp->spec_ms += dt;
			sp->spec_tokens += sp->cycle_tokens;
			sp->win_ms += dt;
			sp->win_tokens += sp->cycle_tokens;
			sp->win_passes++;
		} else if (sp->cycle_tokens == 1) {
			const double per = dt;
			sp->plain_ms = sp->n_plain == 0 ? per : 0.8 * sp->plain_ms + 0.2 * per;
			sp->n_plain++;
		}
	}
	if (sp->plain_ms > 0 && sp->spec_ms > 0)
		st->spec_speedup = sp->spec_tokens * sp->plain_ms / sp->spec_ms;
	/* AUTO judges each window of passes */
	if (sp->may_pause && sp->win_passes >= SPEC_WINDOW && sp->plain_ms > 0) {
		if (sp->win_tokens * sp->plain_ms / sp->win_ms < 1.0) {
			sp->paused = true;
			sp->paused_at = sp->gen;
		}
		sp->win_passes = sp->win_tokens = 0;
		sp->win_ms = 0;
	}
	sp->cycle_t0 = now;
	sp->cycle_tokens = 0;
}

/* Drops the unaccepted guesses of the pass (and, recurrent, goes back to
 * the states before it, keeping the accepted tokens in sp->prefix). */
static void spec_cut(struct kv_cache *kv, struct spec_run *sp)
{
	const uint32_t keep = committed(kv, sp);
	sp->active = false;
	if (keep >= kv->n)
		return;
	if (kv->n_rec == 0) {
		kv_truncate(kv, keep);
		return;
	}
	memcpy(kv->rs, sp->rs_save, (size_t)kv->n_rec * kv->rs_floats * sizeof(float));
	sp->n_prefix = (int)(keep - sp->base);
	memcpy(sp->prefix, kv->tokens + sp->base, (size_t)sp->n_prefix * sizeof(int32_t));
	kv->n = sp->base;
}

/* Leaves the cache at the committed text (the end of a reply, or before
 * the engine writes tokens of its own). */
static int spec_settle(engine *e, const struct request *r, struct kv_cache *kv, struct spec_run *sp)
{
	if (sp->active)
		spec_cut(kv, sp);
	sp->cycle_t0 = 0;
	if (sp->n_prefix == 0)
		return 0;
	const int n = sp->n_prefix;
	sp->n_prefix = 0;
	return eval_step(e, r, kv, sp->prefix, n);
}

static int spec_guess(engine *e, const struct request *r, struct kv_cache *kv, struct spec_run *sp, int32_t id,
		      int max, int32_t *out)
{
	const uint32_t n = committed(kv, sp) + (uint32_t)sp->n_prefix;
	if (sp->mode == ENGINE_SPEC_DRAFT) {
		double catchup = 0;
		const double t0 = now_ms();
		int k = spec_draft_run(&e->draft, r->conv, kv->tokens, n, id, max, out, &catchup);
		sp->cycle_t0 += catchup;   /* the draft's prefill is not the guesses' cost */
		if (k > 0) {
			const double per = (now_ms() - t0 - catchup) / k;
			sp->draft_ms = sp->draft_ms > 0 ? 0.8 * sp->draft_ms + 0.2 * per : per;
		}
		return k > 0 ? k : 0;
	}
	return spec_ngram_draft(kv->tokens, n, id, max, out);
}

/* Takes the sampled ID: 0 with the logits of the next position in
 * e->fwd.logits, or a status. */
static int spec_advance(engine *e, const struct request *r, struct kv_cache *kv, struct spec_run *sp, int32_t id,
			struct engine_stats *st)
{
	const uint32_t nv = e->model.hp.n_vocab;
	sp->gen++;
	sp->cycle_tokens++;
	if (sp->active) {
		if (sp->next < sp->n_draft && id == sp->draft[sp->next]) {
			sp->next++;
			st->spec_accepted++;
			memcpy(e->fwd.logits, e->fwd.logits + (size_t)(sp->row0 + sp->next) * nv, nv * sizeof(float));
			return 0;
		}
		/* the pass ends: what it says of the guesses' odds (decayed, so a
		 * change of task shows) */
		sp->acc = 0.95 * sp->acc + sp->next;
		sp->rej = 0.95 * sp->rej + (sp->next < sp->n_draft);
		spec_cut(kv, sp);
	}
	spec_cycle_end(sp, st);
	if (sp->paused && sp->gen - sp->paused_at >= SPEC_RETRY_AFTER)
		sp->paused = false;

	int32_t batch[SPEC_MAX_DRAFT * 2 + 4];
	int P = sp->n_prefix, k = 0;
	memcpy(batch, sp->prefix, (size_t)P * sizeof *batch);
	batch[P] = id;
	const bool probe = sp->n_plain < 2 || sp->since_plain >= SPEC_PROBE_EVERY;
	if (sp->mode != ENGINE_SPEC_OFF && !sp->paused && !probe) {
		int max = spec_length(sp);
		const uint32_t room = e->n_ctx - (kv->n + (uint32_t)P + 1 < e->n_ctx ? kv->n + (uint32_t)P + 1 : e->n_ctx);
		if ((uint32_t)max > room)
			max = (int)room;
		if (max > FWD_BATCH_MAX - P - 1)
			max = FWD_BATCH_MAX - P - 1;
		if (max > 0)
			k = spec_guess(e, r, kv, sp, id, max, batch + P + 1);
	}
	sp->n_prefix = 0;
	int rc;
	if (k == 0) {
		/* a recomputed prefix is the cost of the last pass, not a plain step */
		sp->cycle_spec = P > 0;
		if (P == 0)
			sp->since_plain = 0;
		const double t0 = now_ms();
		rc = eval_step(e, r, kv, batch, P + 1);
		if (rc == 0)
			spec_cost(sp, P + 1, now_ms() - t0);
		return rc;
	}
	sp->since_plain++;
	sp->cycle_spec = true;
	sp->base = kv->n;
	if (kv->n_rec > 0)
		memcpy(sp->rs_save, kv->rs, (size_t)kv->n_rec * kv->rs_floats * sizeof(float));
	const double t0 = now_ms();
	rc = eval_rows(e, r, kv, batch, P + 1 + k, true);
	if (rc)
		return rc;
	spec_cost(sp, P + 1 + k, now_ms() - t0);
	memcpy(sp->draft, batch + P + 1, (size_t)k * sizeof *batch);
	sp->n_draft = k;
	sp->next = 0;
	sp->row0 = P;
	sp->active = true;
	if (P > 0)
		memcpy(e->fwd.logits, e->fwd.logits + (size_t)P * nv, nv * sizeof(float));
	st->spec_passes++;
	st->spec_drafted += (uint32_t)k;
	return 0;
}

static int decode(engine *e, const struct request *r, struct kv_cache *kv, bool *spec_paused, struct reasoning *rs,
		  grammar *gm, struct engine_stats *st, double t_start, char *err, size_t errlen)
{
	struct sampler smp;
	struct spec_run sp = {.mode = r->gen.spec, .may_pause = r->gen.spec == ENGINE_SPEC_AUTO,
			      .paused = *spec_paused, .cap = r->gen.draft_max > 0 ? r->gen.draft_max : 8};
	if (sp.mode == ENGINE_SPEC_AUTO || sp.mode == ENGINE_SPEC_DRAFT)
		sp.mode = e->draft.loaded ? ENGINE_SPEC_DRAFT : ENGINE_SPEC_NGRAM;
	if (sp.cap > SPEC_MAX_DRAFT)
		sp.cap = SPEC_MAX_DRAFT;

	struct gen g = {.e = e, .r = r, .st = st, .ans = {.cap = 256}, .think = {.cap = 256}};
	struct reasoning_loop loop;
	tok_decoder *dec = NULL;
	int32_t *eog = NULL, *forced = NULL;
	size_t n_eog = 0, forced_cap = 0;
	uint32_t n_gen = 0, n_think = 0;
	const unsigned answer_now = atomic_load(&e->answer_now);
	/* think OFF closes any block at once; else the budget, or none (-1) */
	const int64_t budget = r->gen.think == ENGINE_THINK_OFF ? 0
			       : r->gen.reasoning_budget > 0 ? r->gen.reasoning_budget : -1;
	int stop = ENGINE_STOP_LENGTH;
	/* a lazy grammar waits for its trigger in the answer (or as a token) */
	struct trig trigs[TRIGGERS_MAX];
	const size_t n_trigs = gm && r->trigger ? triggers_parse(e, r->trigger, trigs) : 0;
	bool lazy = n_trigs > 0;
	if (sp.mode != ENGINE_SPEC_OFF && kv->n_rec > 0 &&
	    !(sp.rs_save = eng_malloc((size_t)kv->n_rec * kv->rs_floats * sizeof(float))))
		sp.mode = ENGINE_SPEC_OFF;   /* no room for the copy: plain decoding */
	snprintf(st->spec, sizeof st->spec, "%s",
		 sp.mode == ENGINE_SPEC_DRAFT ? "draft" : sp.mode == ENGINE_SPEC_NGRAM ? "ngram" : "");
	int rc = sampler_init(&smp, &r->sampling, e->model.hp.n_vocab);
	if (rc) {
		free(sp.rs_save);
		snprintf(err, errlen, "out of memory for the sampler");
		return rc;
	}
	reasoning_loop_init(&loop);
	dec = tok_decoder_new(e->tok);
	g.ans.text = eng_malloc(g.ans.cap);
	g.think.text = eng_malloc(g.think.cap);
	if (!dec || !g.ans.text || !g.think.text) {
		rc = ENGINE_E_NOMEM;
		snprintf(err, errlen, "out of memory for the reply");
		goto out;
	}
	g.ans.text[0] = g.think.text[0] = '\0';
	if (r->gen.ignore_eos) {
		uint32_t nv = tok_n_vocab(e->tok);
		for (uint32_t i = 0; i < nv; i++)
			if (tok_is_eog(e->tok, (int32_t)i)) {
				int32_t *t = eng_realloc(eog, (n_eog + 1) * sizeof *eog);
				if (!t) {
					rc = ENGINE_E_NOMEM;
					snprintf(err, errlen, "out of memory for the reply");
					goto out;
				}
				eog = t;
				eog[n_eog++] = (int32_t)i;
			}
	}
	const double t_dec = now_ms();
	if (budget == 0 && reasoning_thinking(rs)) {
		/* the generation prompt opened a block and thinking is off */
		rc = close_reasoning(e, r, kv, rs, &g, NULL, -1, &forced, &forced_cap, err, errlen);
		if (rc == ENGINE_E_CONTEXT || rc == ENGINE_E_CANCELLED) {
			stop = rc == ENGINE_E_CONTEXT ? ENGINE_STOP_CONTEXT : ENGINE_STOP_CANCELLED;
			goto done;
		}
		if (rc)
			goto out;
		st->reasoning_end = ENGINE_REASONING_END_OFF;
	}
	for (;;) {
		if (cancelled(e, r)) {
			stop = ENGINE_STOP_CANCELLED;
			break;
		}
		for (size_t i = 0; i < n_eog; i++)
			e->fwd.logits[eog[i]] = -INFINITY;
		int32_t id;
		if (gm && !lazy && !reasoning_thinking(rs)) {
			int grc = 0;
			const double t_g = now_ms();
			id = sampler_sample_grammar(&smp, gm, e->fwd.logits, kv->tokens, committed(kv, &sp), &grc);
			if (id >= 0)
				grc = grammar_accept_token(gm, id);
			st->grammar_ms += now_ms() - t_g;
			st->grammar_masks = smp.n_masks;
			if (id < 0 || grc) {
				rc = grc == GRAMMAR_E_NOMEM ? ENGINE_E_NOMEM : ENGINE_E_INVAL;
				snprintf(err, errlen, "grammar: %s after %u tokens",
					 grc == GRAMMAR_E_NOMEM	   ? "out of memory"
					 : grc == GRAMMAR_E_LIMIT ? "the parse grew past its limits (too ambiguous or too deeply nested)"
								  : "no token of the vocabulary can continue the text",
					 n_gen);
				goto out;
			}
		} else {
			id = sampler_sample(&smp, e->fwd.logits, kv->tokens, committed(kv, &sp));
		}
		e->emit_drafted = sp.active && sp.next < sp.n_draft && id == sp.draft[sp.next];
		if (tok_is_eog(e->tok, id)) {
			stop = ENGINE_STOP_EOG;
			break;
		}
		n_gen++;
		if (n_gen == 1)
			st->ttft_ms = now_ms() - t_start;
		g.tok = id;
		g.pos = committed(kv, &sp);
		bool was_thinking = reasoning_thinking(rs);
		int marker = -1;
		for (unsigned i = 0; i < REASONING_MAX_MARKERS && rs->fmt != REASONING_NONE; i++)
			if (id == e->rmarker_ids[i] && (rs->token_mask >> i & 1))
				marker = (int)i;
		char piece[256];
		size_t pl;
		size_t ans_before = g.ans.len;
		/* a control token the grammar names (a tool-call marker) is part
		 * of the answer: the decoder would hide it */
		const bool ctl_shown = gm && !was_thinking && (lazy ? trigger_token(trigs, n_trigs, id) : true) &&
				       tok_is_control(e->tok, id) && !tok_is_eog(e->tok, id);
		if (ctl_shown && marker < 0) {
			size_t tl;
			const char *tt = tok_piece(e->tok, id, &tl);
			while ((pl = tok_decoder_flush(dec, piece, sizeof piece)) > 0)
				reasoning_feed(rs, piece, pl, false, gen_emit, &g);
			reasoning_feed(rs, tt ? tt : "", tt ? tl : 0, false, gen_emit, &g);
		} else if (marker >= 0) {
			/* a marker token: what the decoder holds goes before it */
			while ((pl = tok_decoder_flush(dec, piece, sizeof piece)) > 0)
				reasoning_feed(rs, piece, pl, false, gen_emit, &g);
			const char *m = reasoning_marker(rs->fmt, (unsigned)marker);
			reasoning_feed(rs, m, strlen(m), true, gen_emit, &g);
		} else {
			pl = tok_decoder_feed(dec, id, piece, sizeof piece);
			reasoning_feed(rs, piece, pl, false, gen_emit, &g);
		}
		if (tok_decoder_nomem(dec) || g.nomem) {
			rc = ENGINE_E_NOMEM;
			snprintf(err, errlen, "out of memory for the reply after %u tokens", n_gen);
			goto out;
		}
		bool thinking = reasoning_thinking(rs);
		if (was_thinking || thinking)
			n_think++;
		if (lazy && !thinking) {
			int grc = lazy_trigger(trigs, n_trigs, gm, &g.ans, ans_before, id, &lazy);
			if (grc == 1 || grc == GRAMMAR_E_REJECT) {
				/* free text it is; a trigger whose text the grammar
				 * refuses (a harmony call of an unknown tool, named
				 * before the trigger) stays unconstrained too, for the
				 * caller's check of the calls */
				gm = NULL;
			} else if (grc) {
				rc = grc == GRAMMAR_E_NOMEM ? ENGINE_E_NOMEM : ENGINE_E_INVAL;
				snprintf(err, errlen, "grammar: the text from the trigger on does not start a sentence of the grammar");
				goto out;
			}
		}

		/* stop strings: cut the answer at the first match; hold back a
		 * possible start of one */
		bool hit = false;
		struct reply *b = &g.ans;
		for (size_t s = 0; r->stop && r->stop[s]; s++) {
			char *m = r->stop[s][0] ? strstr(b->text + (b->sent > 64 ? b->sent - 64 : 0), r->stop[s]) : NULL;
			if (m) {
				b->len = (size_t)(m - b->text);
				hit = true;
			}
		}
		reply_send(e, r, &g.think, g.think.len, id, g.pos, st, ENGINE_PART_REASONING);
		reply_send(e, r, b, hit ? b->len : answer_ready(&g), id, g.pos, st, ENGINE_PART_ANSWER);
		e->emit_drafted = false;
		if (hit) {
			stop = ENGINE_STOP_STRING;
			break;
		}
		if (r->gen.max_tokens > 0 && n_gen >= (uint32_t)r->gen.max_tokens) {
			stop = ENGINE_STOP_LENGTH;
			break;
		}
		if (g.pos >= e->n_ctx) {
			stop = ENGINE_STOP_CONTEXT;
			break;
		}
		/* the reasoning ends here when a budget, answer now or a loop says so */
		enum engine_reasoning_end why = ENGINE_REASONING_END_MODEL;
		uint32_t period = thinking ? reasoning_loop_add(&loop, id) : 0;
		if (thinking && budget >= 0 && n_think >= budget)
			why = budget == 0 ? ENGINE_REASONING_END_OFF : ENGINE_REASONING_END_BUDGET;
		else if (thinking && atomic_load(&e->answer_now) != answer_now)
			why = ENGINE_REASONING_END_NOW;
		else if (period) {
			why = ENGINE_REASONING_END_LOOP;
			struct engine_event ev = {.type = ENGINE_EV_NOTICE, .request = r->id, .conv = r->conv};
			snprintf(ev.message, sizeof ev.message,
				 "the reasoning repeated the same %u tokens three times: closed it after %u tokens",
				 period, n_think);
			push_event(e, &ev);
		}
		if (why != ENGINE_REASONING_END_MODEL) {
			st->reasoning_end = why;
			rc = spec_settle(e, r, kv, &sp);
			if (rc == 0)
				rc = close_reasoning(e, r, kv, rs, &g, why == ENGINE_REASONING_END_OFF ? NULL : r->wrapup, id,
					     &forced, &forced_cap, err, errlen);
		} else {
			const bool was_paused = sp.paused;
			rc = spec_advance(e, r, kv, &sp, id, st);
			const bool narrow_kv = (e->kv_type != GGML_TYPE_F16 && e->kv_type != GGML_TYPE_Q8_0) ||
					       (e->kv_type_v != GGML_TYPE_F16 && e->kv_type_v != GGML_TYPE_Q8_0);
			if (rc == 0 && sp.paused && !was_paused && narrow_kv && st->spec_drafted >= 16 &&
			    st->spec_accepted * 4 < st->spec_drafted) {
				/* Gemma 4 with a 4-bit cache accepted nothing: say it */
				struct engine_event ev = {.type = ENGINE_EV_NOTICE, .request = r->id, .conv = r->conv};
				snprintf(ev.message, sizeof ev.message,
					 "speculative decoding paused: %u of %u guesses held; a KV cache under 8 bits "
					 "(%s/%s) can ruin them: try --cache-type-k q8_0 --cache-type-v q8_0",
					 st->spec_accepted, st->spec_drafted, ggml_type_name(e->kv_type),
					 ggml_type_name(e->kv_type_v));
				push_event(e, &ev);
			}
		}
		if (rc == ENGINE_E_CONTEXT || rc == ENGINE_E_CANCELLED) {
			stop = rc == ENGINE_E_CONTEXT ? ENGINE_STOP_CONTEXT : ENGINE_STOP_CANCELLED;
			break;
		}
		if (rc) {
			if (why == ENGINE_REASONING_END_MODEL || !err[0])
				snprintf(err, errlen, "%s after %u tokens",
					 rc == ENGINE_E_NOMEM ? "out of memory for the KV cache" : engine_status_str(rc),
					 n_gen);
			goto out;
		}
	}
done:
	/* the guesses past the reply's end go; a recurrent model's states come
	 * back to its last token */
	e->emit_drafted = false;
	if ((rc = spec_settle(e, r, kv, &sp)) != 0 && rc != ENGINE_E_CANCELLED) {
		snprintf(err, errlen, "rolling back the speculative guesses: %s", engine_status_str(rc));
		goto out;
	}
	/* flush what the decoder, the parser and the stop-string check held back */
	if (stop != ENGINE_STOP_STRING) {
		char tail[64];
		size_t tl;
		g.tok = -1;
		while ((tl = tok_decoder_flush(dec, tail, sizeof tail)) > 0)
			reasoning_feed(rs, tail, tl, false, gen_emit, &g);
		reasoning_flush(rs, gen_emit, &g);
		if (g.nomem || tok_decoder_nomem(dec)) {
			rc = ENGINE_E_NOMEM;
			snprintf(err, errlen, "out of memory for the end of the reply");
			goto out;
		}
		reply_send(e, r, &g.think, g.think.len, -1, kv->n, st, ENGINE_PART_REASONING);
		reply_send(e, r, &g.ans, g.ans.len, -1, kv->n, st, ENGINE_PART_ANSWER);
	}
	if (g.ans.sent < g.ans.len || g.think.sent < g.think.len) {
		rc = ENGINE_E_NOMEM;
		snprintf(err, errlen, "out of memory: the last %zu bytes of the reply could not be delivered",
			 g.ans.len - g.ans.sent + g.think.len - g.think.sent);
		goto out;
	}
	st->decode_ms = now_ms() - t_dec;
	st->gen_tokens = n_gen;
	st->reasoning_tokens = n_think;
	if (n_gen == 0)
		st->ttft_ms = now_ms() - t_start;
	/* the first token comes from the prefill logits: decode speed counts
	 * the forward passes made during decoding */
	st->decode_tps = st->decode_ms > 0 && n_gen > 1 ? (n_gen - 1) / (st->decode_ms / 1e3) : 0;
	rc = stop;
out:
	e->emit_drafted = false;
	if (sp.active)
		spec_cut(kv, &sp);  /* an error: the cache stays consistent, maybe shorter */
	*spec_paused = sp.paused;
	st->spec_paused = sp.paused;
	st->draft_bytes = spec_draft_bytes(&e->draft);
	free(sp.rs_save);
	sampler_free(&smp);
	tok_decoder_free(dec);
	free(g.ans.text);
	free(g.think.text);
	free(eog);
	free(forced);
	return rc;
}

static int32_t grammar_token_lookup(void *ctx, const char *text, size_t len)
{
	return tok_find(ctx, text, len);
}

/* Compiles the request's grammar against the loaded vocabulary (building
 * the vocabulary's trie on first use).  ENGINE_E_INVAL with the parser's
 * message, or ENGINE_E_NOMEM. */
static int compile_grammar(engine *e, const char *text, struct gbnf **g, grammar **gm, char *err, size_t errlen)
{
	int rc = gbnf_parse(text, strlen(text), grammar_token_lookup, e->tok, tok_n_vocab(e->tok), g, err, errlen);
	if (rc)
		return rc == GBNF_E_NOMEM ? ENGINE_E_NOMEM : ENGINE_E_INVAL;
	if (!e->gvocab && !(e->gvocab = grammar_vocab_from_tok(e->tok))) {
		snprintf(err, errlen, "out of memory for the vocabulary's trie");
		goto fail;
	}
	int grc;
	if (!(*gm = grammar_new(*g, e->gvocab, &grc))) {
		snprintf(err, errlen, "%s", grc == GRAMMAR_E_LIMIT ? "the start of the grammar is too ambiguous"
								  : "out of memory");
		if (grc == GRAMMAR_E_LIMIT) {
			gbnf_free(*g);
			*g = NULL;
			return ENGINE_E_INVAL;
		}
		goto fail;
	}
	return 0;
fail:
	gbnf_free(*g);
	*g = NULL;
	return ENGINE_E_NOMEM;
}

static void submit_local(engine *e, struct request *r, grammar *gm, double t_start, double setup_ms);

static void do_submit(engine *e, struct request *r)
{
	if (e->remote) {
		if (r->grammar)
			emit_error(e, r, ENGINE_E_INVAL, "grammar: a remote model cannot be constrained by a grammar");
		else
			do_submit_remote(e, r);
		return;
	}
	if (!e->loaded) {
		emit_error(e, r, ENGINE_E_NOMODEL, "no model loaded");
		return;
	}
	const double t_start = now_ms(); /* compiling the grammar counts in the time to first token */
	struct gbnf *g = NULL;
	grammar *gm = NULL;
	if (r->grammar) {
		char err[512] = "";
		int rc = compile_grammar(e, r->grammar, &g, &gm, err, sizeof err);
		if (rc) {
			emit_error(e, r, rc, "grammar: %s", err);
			return;
		}
	}
	submit_local(e, r, gm, t_start, gm ? now_ms() - t_start : 0);
	grammar_free(gm);
	gbnf_free(g);
}

/* A local model's reply: prompt, prefill, decode (under GM when set). */
static void submit_local(engine *e, struct request *r, grammar *gm, double t_start, double setup_ms)
{
	char err[512] = "";
	struct engine_stats st = {.grammar_setup_ms = setup_ms};

	if (cancelled(e, r)) {
		struct engine_event ev = {.type = ENGINE_EV_DONE, .request = r->id, .conv = r->conv,
					  .stop = ENGINE_STOP_CANCELLED};
		push_event(e, &ev);
		return;
	}

	/* render and tokenise, dropping the oldest turns while it does not fit */
	const uint32_t reserve = r->gen.max_tokens > 0 && (uint32_t)r->gen.max_tokens < e->n_ctx / 4
					 ? (uint32_t)r->gen.max_tokens : e->n_ctx / 4;
	size_t first = 0;
	uint32_t dropped = 0;
	int64_t n_prompt;
	/* raw prompts of a model whose template says nothing use <think> tags */
	struct reasoning rs;
	enum reasoning_format rf = e->rfmt == REASONING_NONE && r->gen.raw ? REASONING_THINK : e->rfmt;
	reasoning_init(&rs, rf, rf == e->rfmt ? e->rmask : 0);
	for (;;) {
		char *text = NULL;
		size_t len = 0, gen_at = 0;
		int rc = render_prompt(e, r, first, &text, &len, &gen_at, err, sizeof err);
		if (rc) {
			emit_error(e, r, rc, "chat template: %s", err[0] ? err : engine_status_str(rc));
			return;
		}
		reasoning_begin(&rs, text + gen_at, len - gen_at);
		n_prompt = tokenize_prompt(e, text, len);
		free(text);
		if (n_prompt == TOK_ERR_NOMEM) {
			emit_error(e, r, ENGINE_E_NOMEM, "out of memory tokenizing the prompt");
			return;
		}
		if (n_prompt < 0) {
			emit_error(e, r, ENGINE_E_INVAL, "cannot tokenize the prompt");
			return;
		}
		if (n_prompt == 0) {
			emit_error(e, r, ENGINE_E_INVAL, "the prompt is empty");
			return;
		}
		if ((uint64_t)n_prompt + reserve <= e->n_ctx)
			break;
		/* drop the oldest non-system message; never the last one */
		size_t next = first;
		if (next == 0 && strcmp(r->msgs[0].role, "system") == 0)
			next = 1;
		next++;
		if (r->gen.raw || e->overflow == ENGINE_OVERFLOW_ERROR || next >= r->n_msgs) {
			emit_error(e, r, ENGINE_E_CONTEXT,
				   "the prompt needs %lld tokens, the context holds %u (with %u kept for the reply)",
				   (long long)n_prompt, e->n_ctx, reserve);
			return;
		}
		dropped += (uint32_t)(next - (first == 0 && strcmp(r->msgs[0].role, "system") == 0 ? 1 : first));
		first = next;
	}
	if (dropped) {
		struct engine_event ev = {.type = ENGINE_EV_CONTEXT_SHIFT, .request = r->id, .conv = r->conv,
					  .dropped_turns = dropped};
		/* a recurrent state holds every token since the start: without
		 * the dropped turns it must be rebuilt from the first token */
		snprintf(ev.message, sizeof ev.message,
			 "context full: dropped the %u oldest message%s to fit %u tokens%s", dropped,
			 dropped == 1 ? "" : "s", e->n_ctx,
			 e->model.hp.n_recurrent > 0 ? " (recurrent model: the whole conversation is recomputed)" : "");
		if (!push_event(e, &ev)) {
			emit_error(e, r, ENGINE_E_NOMEM, "out of memory (dropping %u old messages to fit the context)",
				   dropped);
			return;
		}
	}

	struct conv *c = get_conv(e, r->conv);
	if (!c) {
		emit_error(e, r, ENGINE_E_NOMEM, "out of memory for a conversation");
		return;
	}
	struct kv_cache *kv = &c->kv;

	/* reuse the common prefix; the last prompt token is always recomputed
	 * because its logits are needed */
	uint32_t keep = 0;
	while (keep < kv->n && keep < (uint32_t)n_prompt && kv->tokens[keep] == e->ids[keep])
		keep++;
	if (keep == (uint32_t)n_prompt)
		keep--;
	kv_truncate(kv, keep);
	keep = kv->n;   /* recurrent layers: back to a checkpoint at or before it */
	if (kv_reserve(kv, (uint32_t)n_prompt) != 0) {
		emit_error(e, r, ENGINE_E_NOMEM, "out of memory for the KV cache (%u tokens)", (unsigned)n_prompt);
		return;
	}
	enforce_budget(e, r->conv);
	st.prompt_tokens = (uint32_t)n_prompt;
	st.prompt_reused = keep;
	st.prompt_computed = (uint32_t)n_prompt - keep;

	/* prefill */
	const double t_pf = now_ms();
	uint32_t last_ck = keep;
	for (uint32_t p = keep; p < (uint32_t)n_prompt;) {
		int nb = fwd_batch_next(&e->batcher, (int)((uint32_t)n_prompt - p));
		/* recurrent states cannot be cut back: a checkpoint before the
		 * prompt's last token (a regenerated or edited reply, and the
		 * next turn of a template that rewrites past replies, restart
		 * there) and one every KV_CKPT_EVERY tokens of a long prompt */
		const uint32_t before_last = (uint32_t)n_prompt - 1;
		if (kv->n_rec > 0 && p < before_last && p + (uint32_t)nb > before_last)
			nb = (int)(before_last - p);
		const double t_b = now_ms();
		int rc = eval_step(e, r, kv, e->ids + p, nb);
		if (rc && rc != ENGINE_E_CANCELLED) {
			emit_error(e, r, rc, "prefill failed: %s", engine_status_str(rc));
			return;
		}
		if (rc == 0) {
			fwd_batch_done(&e->batcher, nb, now_ms() - t_b);
			p += (uint32_t)nb;
			if (kv->n_rec > 0 && (p == before_last || p - last_ck >= KV_CKPT_EVERY)) {
				kv_checkpoint(kv);   /* without it, only a later edit costs more */
				last_ck = p;
			}
		}
		if (rc == ENGINE_E_CANCELLED || cancelled(e, r)) {
			struct engine_event ev = {.type = ENGINE_EV_DONE, .request = r->id, .conv = r->conv,
						  .stop = ENGINE_STOP_CANCELLED, .stats = st};
			push_event(e, &ev);
			return;
		}
		if (p - keep > (uint32_t)nb || p < (uint32_t)n_prompt)   /* more than one batch */
			emit_simple(e, r, ENGINE_EV_PREFILL_PROGRESS,
				    (float)(p - keep) / (float)st.prompt_computed);
	}
	st.prefill_ms = now_ms() - t_pf;
	st.prefill_tps = st.prefill_ms > 0 ? st.prompt_computed / (st.prefill_ms / 1e3) : 0;
	st.ctx_size = e->n_ctx;
	fill_vram(e, &st);

	/* a long new prompt is a new task: a paused drafter gets another try */
	if (st.prompt_computed >= SPEC_NEW_TASK)
		c->spec_paused = false;
	int stop = decode(e, r, kv, &c->spec_paused, &rs, gm, &st, t_start, err, sizeof err);
	if (stop < 0) {
		/* the TOKENs already sent are the partial reply */
		emit_error(e, r, stop, "%s", err);
		return;
	}
	st.prefill_tps = st.prefill_ms > 0 ? st.prompt_computed / (st.prefill_ms / 1e3) : 0;
	st.ctx_used = kv->n;
	st.ctx_size = e->n_ctx;
	st.weights_bytes = weights_bytes(&e->model);
	st.kv_bytes = total_kv(e);
	st.scratch_bytes = e->fwd.bytes;
	fill_vram(e, &st);
	struct engine_event ev = {.type = ENGINE_EV_DONE, .request = r->id, .conv = r->conv,
				  .stop = (enum engine_stop_reason)stop, .stats = st};
	push_event(e, &ev);
}

/* ---- worker: benchmark ----------------------------------------------------
 * bench.c runs the tests; it reaches the worker through these hooks so
 * that what it times is eval_step(), a reply's own step. */

struct bench_hook {
	engine *e;
	const struct request *r;
};

static int bench_eval(void *ctx, struct kv_cache *kv, const int32_t *ids, int n)
{
	const struct bench_hook *h = ctx;
	return eval_step(h->e, h->r, kv, ids, n);
}

static bool bench_cancelled(void *ctx)
{
	const struct bench_hook *h = ctx;
	return cancelled(h->e, h->r);
}

static void do_bench(engine *e, struct request *r)
{
	if (!e->loaded) {
		emit_error(e, r, ENGINE_E_NOMODEL, "%s", e->remote ? "the benchmark needs a local model" : "no model loaded");
		return;
	}
	struct bench_hook h = {e, r};
	struct bench_env b = {.m = &e->model, .fwd = &e->fwd, .batcher = &e->batcher, .kv_type = e->kv_type,
			      .kv_type_v = e->kv_type_v, .kv_rot = e->kv_rot,
			      .n_ctx = e->n_ctx, .load_ms = e->load_ms, .prepare_ms = e->prep_ms,
			      .eval = bench_eval, .cancelled = bench_cancelled, .ctx = &h};
	struct engine_bench_run *runs;
	size_t n_runs;
	char err[512] = "";
	int rc = bench_run(&b, &r->bench, &runs, &n_runs, err, sizeof err);
	if (rc && rc != ENGINE_E_CANCELLED) {
		free(runs);
		emit_error(e, r, rc, "%s", err);
		return;
	}
	struct engine_event ev = {.type = ENGINE_EV_DONE, .request = r->id,
				  .stop = rc ? ENGINE_STOP_CANCELLED : ENGINE_STOP_EOG,
				  .blob = runs, .blob_len = n_runs * sizeof *runs};
	push_event(e, &ev);
}

/* ---- worker: KV snapshots -------------------------------------------------
 * Layout (little-endian): "TTKV" u32 version, u64 file size, u64 header
 * hash, u32 n_layer, u32 kv_dim, u32 cache type (K's), u32 n, then
 * (versions 3 and 4) u32 V's cache type and u32 rotation seed (0: rows
 * not rotated), then (versions 2 and 4, models with recurrent layers) u32
 * checkpoints; then int32 tokens[n], per layer with KV rows n rows of K
 * followed by n rows of V, and (versions 2 and 4) the recurrent states
 * after position n followed by each checkpoint (u32 position, its states)
 * - forward.c's kv_pack().  Types are kvquant.h's numbers.  Versions 3
 * and 4 are written; 1 and 2 (one type for K and V, never rotated) are
 * still read. */

#define SNAP_MAGIC 0x564b5454u /* "TTKV" */
#define SNAP_HEADER 40
#define SNAP_HEADER3 48

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static void do_export(engine *e, struct request *r)
{
	struct engine_event ev = {.type = ENGINE_EV_CONV_EXPORT, .request = r->id, .conv = r->conv};
	struct conv *c = NULL;
	for (size_t i = 0; e->loaded && i < e->n_convs; i++)
		if (e->convs[i].id == r->conv)
			c = &e->convs[i];
	if (c && c->kv.n > 0) {
		const struct kv_cache *kv = &c->kv;
		const bool rec = kv->n_rec > 0;
		const size_t head = SNAP_HEADER3 + (rec ? 4 : 0);
		size_t len = head + kv_pack_bytes(kv, kv->n, kv->n_ck);
		unsigned char *b = eng_malloc(len);
		if (!b) {
			emit_error(e, r, ENGINE_E_NOMEM, "out of memory for a KV snapshot of %zu bytes", len);
			return;
		}
		put32(b, SNAP_MAGIC);
		put32(b + 4, rec ? 4 : 3);
		put64(b + 8, gguf_file_size(e->model.gguf));
		put64(b + 16, e->model_hash);
		put32(b + 24, kv->n_layer);
		put32(b + 28, kv->kv_dim);
		put32(b + 32, kv->type_k);
		put32(b + 36, kv->n);
		put32(b + 40, kv->type_v);
		put32(b + 44, kv->rot_seed);
		if (rec)
			put32(b + 48, (uint32_t)kv->n_ck);
		kv_pack(kv, b + head);
		ev.blob = b;
		ev.blob_len = len;
		ev.position = kv->n;
	}
	push_event(e, &ev);
}

static void do_import(engine *e, struct request *r)
{
	struct engine_event ev = {.type = ENGINE_EV_CONV_IMPORT, .request = r->id, .conv = r->conv};
	const unsigned char *b = r->blob;
	const char *why = NULL;
	bool nomem = false;
	const bool rec = e->model.hp.n_recurrent > 0;
	const uint32_t version = r->blob_len >= 8 ? get32(b + 4) : 0;
	const bool v3 = version == (rec ? 4u : 3u);
	const size_t head = (v3 ? SNAP_HEADER3 : SNAP_HEADER) + (rec ? 4 : 0);
	uint32_t tk = 0, tv = 0, seed = 0;
	if (!e->loaded)
		why = "no model loaded";
	else if (r->blob_len < head || get32(b) != SNAP_MAGIC || (!v3 && version != (rec ? 2u : 1u)))
		why = "not a KV snapshot";
	else if (get64(b + 8) != gguf_file_size(e->model.gguf) || get64(b + 16) != e->model_hash)
		why = "snapshot of another model";
	if (!why) {
		tk = get32(b + 32);
		tv = v3 ? get32(b + 40) : tk;
		seed = v3 ? get32(b + 44) : 0;
		/* the cache takes the snapshot's types and rotation on the CPU;
		 * the GPU's mirror only the loaded ones */
		if (e->fwd.cpu_first > 0 && (tk != e->kv_type || tv != e->kv_type_v || seed != e->kv_rot))
			why = "snapshot cache types or rotation not usable on the GPU";
	}
	if (!why) {
		struct kv_cache probe;
		const uint32_t n = get32(b + 36);
		const uint32_t n_ck = rec ? get32(b + head - 4) : 0;
		int rc = kv_init_types(&probe, &e->model.hp, tk, tv, seed, e->n_ctx);
		if (rc != 0) {
			nomem = rc == ENGINE_E_NOMEM;
			why = nomem ? "out of memory" : "snapshot cache type not usable";
		} else {
			if (get32(b + 24) != probe.n_layer || get32(b + 28) != probe.kv_dim || n_ck > KV_MAX_CKPT)
				rc = ENGINE_E_FORMAT;
			else
				rc = kv_unpack(&probe, n, (int)n_ck, b + head, r->blob_len - head);
			if (rc == ENGINE_E_NOMEM) {
				why = "out of memory";
				nomem = true;
			} else if (rc) {
				why = "snapshot shape does not match the model";
			}
			for (uint32_t i = 0; i < n && !why; i++)
				if (probe.tokens[i] < 0 || (uint32_t)probe.tokens[i] >= e->model.hp.n_vocab)
					why = "snapshot holds invalid token ids";
			if (!why) {
				struct conv *c = get_conv(e, r->conv);
				if (!c) {
					why = "out of memory";
					nomem = true;
				} else {
					kv_free(&c->kv);
					c->kv = probe;
					ev.position = n;
					enforce_budget(e, r->conv);
				}
			}
			if (why)
				kv_free(&probe);
		}
	}
	if (nomem) {
		emit_error(e, r, ENGINE_E_NOMEM, "KV snapshot not restored: out of memory");
		return;
	}
	if (why)
		snprintf(ev.message, sizeof ev.message, "KV snapshot not restored: %s", why);
	push_event(e, &ev);
}

/* ---- worker loop --------------------------------------------------------- */

static void *worker_main(void *arg)
{
	engine *e = arg;
	for (;;) {
		struct request *r = take(e);
		e->end = r->end;   /* the request's end goes out in it */
		r->end = NULL;
		switch (r->type) {
		case REQ_QUIT:   /* e->quit, not to be freed */
			unload_model(e);
			return NULL;
		case REQ_LOAD:
			do_load(e, r);
			break;
		case REQ_UNLOAD:
			unload_model(e);
			emit_simple(e, r, ENGINE_EV_UNLOADED, 0);
			break;
		case REQ_SUBMIT:
			do_submit(e, r);
			break;
		case REQ_EXPORT:
			do_export(e, r);
			break;
		case REQ_IMPORT:
			do_import(e, r);
			break;
		case REQ_BENCH:
			do_bench(e, r);
			break;
		case REQ_DROP:
			for (size_t i = 0; i < e->n_convs; i++)
				if (e->convs[i].id == r->conv) {
					drop_conv_at(e, i);
					break;
				}
			break;
		}
		free(e->end);   /* a request with no end event (DROP) */
		e->end = NULL;
		free_request(r);
	}
}

engine *engine_create(const struct engine_params *p, char *err, size_t errlen)
{
	engine *e = eng_calloc(1, sizeof *e);
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (p)
		e->params = *p;
	int fds[2];
	if (pipe(fds) != 0) {
		snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
		free(e);
		return NULL;
	}
	e->pipe_rd = fds[0];
	e->pipe_wr = fds[1];
	int wfds[2];
	if (pipe(wfds) != 0) {
		snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		free(e);
		return NULL;
	}
	e->wake_rd = wfds[0];
	e->wake_wr = wfds[1];
	for (int i = 0; i < 2; i++) {
		fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
		fcntl(fds[i], F_SETFD, FD_CLOEXEC);
		fcntl(wfds[i], F_SETFL, fcntl(wfds[i], F_GETFL) | O_NONBLOCK);
		fcntl(wfds[i], F_SETFD, FD_CLOEXEC);
	}
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&e->thread, NULL, worker_main, e);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the engine thread: %s", strerror(rc));
		close(fds[0]);
		close(fds[1]);
		close(wfds[0]);
		close(wfds[1]);
		free(e);
		return NULL;
	}
	e->thread_started = true;
	return e;
}

void engine_free(engine *e)
{
	if (!e)
		return;
	engine_cancel(e);
	struct request *q = &e->quit;
	q->type = REQ_QUIT;
	/* jump the queue: everything else is stale now */
	pthread_mutex_lock(&e->mu);
	q->next = e->req_head;
	e->req_head = q;
	if (!e->req_tail)
		e->req_tail = q;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	pthread_join(e->thread, NULL);
	for (struct request *r = e->req_head; r;) {
		struct request *n = r->next;
		free_request(r);
		r = n;
	}
	for (struct event_node *n = e->ev_head; n;) {
		struct event_node *nx = n->next;
		engine_event_clear(&n->ev);
		free(n);
		n = nx;
	}
	free(e->ids);
	close(e->pipe_rd);
	close(e->pipe_wr);
	close(e->wake_rd);
	close(e->wake_wr);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	free(e);
}
