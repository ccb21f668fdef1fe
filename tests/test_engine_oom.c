/*
 * test_engine_oom.c - out of memory through the engine's API, by fault
 * injection (engine/alloc.h: this program's copies of the engine's objects
 * are built with TTYCHAT_ALLOC_HOOK, mk/engine_oom.am).
 *
 * For N = 1, 2, ... the Nth allocation of a load, a submit (render,
 * tokenize, prefill, generation), a KV export and an import fails, once and
 * then again from the Nth on (persistent: the event queue cannot grow
 * either).  Every request must end, within a timeout: in an ERROR with
 * ENGINE_E_NOMEM and a message that says so, or in the very success a run
 * without the failure gives (a reply's text coalesced into fewer TOKEN
 * events, never shorter); a request refused at once must say
 * ENGINE_E_NOMEM.  After each failure a plain request on the same engine
 * must give the reference answer.  A last check fails every allocation
 * from the first TOKEN of a long reply on: its end still arrives.
 *
 * The model is a random-weight fixture in the source tree, so the test
 * never skips.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "engine.h"
#include "testutil.h"

#define FIXTURE "tests/fixtures/engine/random/llama3-q4_0.gguf"
#define WAIT_MS 20000
/* the sweeps try at most this many N per request type (every allocation
 * while a request makes fewer; evenly spread ones beyond) */
#define MAX_STEPS 400

static const char chatml[] =
	"{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
	"{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

static char model_path[4096];
static bool verbose;   /* -v: every outcome */
/* 1024: the long reply outgrows the KV cache's first 256 rows */
static struct engine_load_opts load_opts = {.n_ctx = 1024, .template_override = chatml};
static const struct engine_msg msgs[] = {
	{"system", "You are terse."},
	{"user", "Name three colours of the rainbow."},
};
/* a prompt just under the KV cache's first 256 rows, so that the reply
 * makes it grow */
static const struct engine_msg long_msgs[] = {
	{"system", "You are terse. You answer in one line. You never repeat the question. You do not apologise. "
		   "You use plain words. You avoid lists unless asked. You cite no sources. You keep to the "
		   "point and stop when done. You like blue and green."},
	{"user", "Name three colours of the rainbow."},
};

/* How a request ended. */
struct outcome {
	bool ended;                /* false: timeout */
	enum engine_event_type type;
	int code;                  /* ERROR, or the request's own negative return */
	char msg[512];
	char *text;                /* TOKEN texts joined */
	size_t len;
	enum engine_stop_reason stop;
	struct engine_stats stats;
	void *blob;
	size_t blob_len;
	uint32_t position;
};

static void outcome_clear(struct outcome *o)
{
	free(o->text);
	free(o->blob);
	memset(o, 0, sizeof *o);
}

static bool is_end(enum engine_event_type t)
{
	return t == ENGINE_EV_LOADED || t == ENGINE_EV_UNLOADED || t == ENGINE_EV_DONE || t == ENGINE_EV_ERROR ||
	       t == ENGINE_EV_CONV_EXPORT || t == ENGINE_EV_CONV_IMPORT;
}

/* Waits for the end of request REQ (< 0: refused at once).  From the
 * FAIL_AFTER_TOKEN'th TOKEN event on (0: never) every allocation fails. */
static void await(engine *e, int req, struct outcome *o, unsigned fail_after_token)
{
	memset(o, 0, sizeof *o);
	if (req < 0) {
		o->ended = true;
		o->type = ENGINE_EV_ERROR;
		o->code = req;
		snprintf(o->msg, sizeof o->msg, "%s", engine_last_error(e));
		return;
	}
	unsigned tokens = 0;
	struct engine_event ev;
	while (engine_event_wait(e, &ev, WAIT_MS)) {
		if (ev.request != req) {
			engine_event_clear(&ev);
			continue;
		}
		if (ev.type == ENGINE_EV_TOKEN) {
			char *t = realloc(o->text, o->len + ev.text_len + 1);
			if (t) {
				memcpy(t + o->len, ev.text, ev.text_len);
				o->len += ev.text_len;
				t[o->len] = '\0';
				o->text = t;
			}
			if (++tokens == fail_after_token)
				eng_alloc_fail_at(1, 1);
		}
		if (is_end(ev.type)) {
			o->ended = true;
			o->type = ev.type;
			o->code = ev.code;
			o->stop = ev.stop;
			o->stats = ev.stats;
			o->position = ev.position;
			snprintf(o->msg, sizeof o->msg, "%s", ev.message);
			o->blob = ev.blob;
			o->blob_len = ev.blob_len;
			ev.blob = NULL;
			engine_event_clear(&ev);
			return;
		}
		engine_event_clear(&ev);
	}
}

/* O's text is where REF's starts. */
static bool starts(const struct outcome *o, const struct outcome *ref)
{
	return o->len == 0 || (o->len <= ref->len && memcmp(o->text, ref->text, o->len) == 0);
}

/* A failed request must say out of memory, clearly. */
static bool is_nomem(const struct outcome *o)
{
	return o->type == ENGINE_EV_ERROR && o->code == ENGINE_E_NOMEM && strstr(o->msg, "memory") != NULL;
}

static void must_end(const struct outcome *o, const char *what, long n)
{
	if (!o->ended) {
		printf("FAIL %s, allocation %ld: no end within %d ms; giving up\n", what, n, WAIT_MS);
		tu_fail++;
		exit(tu_finish());
	}
}

static int submit_msgs(engine *e, uint64_t conv, const struct engine_msg *m, size_t n, int32_t max_tokens)
{
	struct engine_sampling s;
	engine_sampling_default(&s);
	s.temperature = 0;
	struct engine_gen_opts g = {.max_tokens = max_tokens, .add_generation_prompt = true};
	return engine_submit(e, conv, m, n, &s, &g);
}

static int submit(engine *e, uint64_t conv, int32_t max_tokens)
{
	return submit_msgs(e, conv, msgs, sizeof msgs / sizeof msgs[0], max_tokens);
}

#define GROW_TOKENS 24

static int submit_grow(engine *e, uint64_t conv)
{
	return submit_msgs(e, conv, long_msgs, sizeof long_msgs / sizeof long_msgs[0], GROW_TOKENS);
}

/* The reference answers, made without failures. */
static struct outcome ref_load, ref_reply, ref_grow, ref_long, ref_export, ref_import;

static void check_reply(engine *e, const char *what, long n)
{
	struct outcome o;
	await(e, submit(e, 9999, 12), &o, 0);
	must_end(&o, what, n);
	CHECK(o.type == ENGINE_EV_DONE && o.len == ref_reply.len && starts(&o, &ref_reply),
	      "%s, allocation %ld: the next reply differs (%s)", what, n, o.msg);
	outcome_clear(&o);
	engine_drop_conv(e, 9999);
}

static void load_plain(engine *e, const char *what, long n)
{
	struct outcome o;
	await(e, engine_load(e, model_path, &load_opts), &o, 0);
	must_end(&o, what, n);
	CHECK(o.type == ENGINE_EV_LOADED, "%s, allocation %ld: the next load failed: %s", what, n, o.msg);
	outcome_clear(&o);
}

/* One kind of request under fault injection. */
struct sweep {
	const char *what;
	void (*before)(engine *e);                    /* before the hook is armed, or NULL */
	int (*post)(engine *e, long n);               /* the request */
	bool (*same)(const struct outcome *o);        /* the success it must give */
	const struct outcome *ref;                    /* a cut reply starts as its text */
	bool reload;                                  /* a failure leaves no model */
};

static int post_load(engine *e, long n)
{
	return engine_load(e, model_path, &load_opts);
}

static bool same_load(const struct outcome *o)
{
	return o->type == ENGINE_EV_LOADED;
}

static void drop_1000(engine *e)
{
	engine_drop_conv(e, 1000);   /* a fresh cache: the whole prompt is prefilled */
}

static int post_submit(engine *e, long n)
{
	return submit(e, 1000, 12);
}

static bool same_text(const struct outcome *o, const struct outcome *ref)
{
	return o->type == ENGINE_EV_DONE && o->stop == ref->stop && o->len == ref->len && starts(o, ref);
}

static bool same_reply(const struct outcome *o)
{
	return same_text(o, &ref_reply);
}

static int post_grow(engine *e, long n)
{
	return submit_grow(e, 1000);
}

static bool same_grow(const struct outcome *o)
{
	return same_text(o, &ref_grow);
}

static int post_export(engine *e, long n)
{
	return engine_conv_export(e, 1);
}

static bool same_export(const struct outcome *o)
{
	return o->type == ENGINE_EV_CONV_EXPORT && o->blob_len == ref_export.blob_len &&
	       memcmp(o->blob, ref_export.blob, o->blob_len) == 0;
}

static void drop_2000(engine *e)
{
	engine_drop_conv(e, 2000);
}

static int post_import(engine *e, long n)
{
	return engine_conv_import(e, 2000, ref_export.blob, ref_export.blob_len);
}

static bool same_import(const struct outcome *o)
{
	return o->type == ENGINE_EV_CONV_IMPORT && o->position == ref_import.position && o->position > 0;
}

/* Allocations one request of SW makes without failures. */
static long count_allocs(engine *e, const struct sweep *sw)
{
	struct outcome o;
	if (sw->before)
		sw->before(e);
	long before = eng_alloc_calls();
	await(e, sw->post(e, 0), &o, 0);
	long n = eng_alloc_calls() - before;
	must_end(&o, sw->what, 0);
	CHECK(sw->same(&o), "%s without failures: %s", sw->what, o.msg);
	outcome_clear(&o);
	return n;
}

static void run_sweep(engine *e, const struct sweep *sw, bool persist)
{
	long total = count_allocs(e, sw);
	long step = total / MAX_STEPS + 1;
	long tried = 0, failed = 0;
	const char *mode = persist ? "persistent" : "once";
	CHECK(total > 0, "%s makes no allocation the hook sees", sw->what);
	for (long n = 1; n <= total + 2; n += n < 16 ? 1 : step) {
		struct outcome o;
		if (sw->before)
			sw->before(e);
		eng_alloc_fail_at(n, persist);
		await(e, sw->post(e, n), &o, 0);
		long fired = eng_alloc_failed();
		eng_alloc_fail_at(0, 0);
		must_end(&o, sw->what, n);
		tried++;
		if (!fired) {
			CHECK(sw->same(&o), "%s (%s), allocation %ld not reached: %s", sw->what, mode, n, o.msg);
			outcome_clear(&o);
			continue;
		}
		if (verbose)
			printf("%s %s %ld: event %d code %d, %zu bytes: %s\n", sw->what, mode, n, (int)o.type, o.code,
			       o.len, o.msg);
		bool ok = sw->same(&o) || is_nomem(&o);
		/* a reply cut by the failure: what came is the start of the reference */
		if (ok && o.type == ENGINE_EV_ERROR && o.len)
			ok = sw->ref && starts(&o, sw->ref);
		CHECK(ok, "%s (%s), allocation %ld failed: ended in event %d code %d stop %d (%zu bytes) '%s'",
		      sw->what, mode, n, (int)o.type, o.code, (int)o.stop, o.len, o.msg);
		if (o.type == ENGINE_EV_ERROR)
			failed++;
		bool reload = sw->reload && o.type == ENGINE_EV_ERROR;
		outcome_clear(&o);
		if (reload)
			load_plain(e, sw->what, n);
		check_reply(e, sw->what, n);
	}
	printf("%-8s %-10s %4ld allocations, %3ld tried, %3ld ended in ENGINE_E_NOMEM\n", sw->what, mode, total,
	       tried, failed);
	CHECK(failed > 0, "%s (%s): no failure was ever reported", sw->what, mode);
}

/* Every allocation fails from the first TOKEN of a long reply on: the
 * reply cannot be delivered, but its end can. */
static void test_queue_full(engine *e)
{
	struct outcome o;
	engine_drop_conv(e, 3000);
	await(e, submit(e, 3000, 200), &o, 1);
	long fired = eng_alloc_failed();
	eng_alloc_fail_at(0, 0);
	must_end(&o, "queue full", 0);
	CHECK(fired > 0, "the reply ended before the failures began");
	CHECK(is_nomem(&o) || (o.type == ENGINE_EV_DONE && o.len == ref_long.len),
	      "queue full: ended in event %d code %d '%s'", (int)o.type, o.code, o.msg);
	CHECK(starts(&o, &ref_long), "queue full: the text differs");
	printf("queue full: %ld allocations failed, %s after %zu of %zu bytes: %s\n", fired,
	       o.type == ENGINE_EV_ERROR ? "ERROR" : "DONE", o.len, ref_long.len, o.msg);
	outcome_clear(&o);
	check_reply(e, "queue full", 0);

	/* nothing at all can be allocated: refused at once, and says so */
	eng_alloc_fail_at(1, 1);
	int req = submit(e, 3000, 12);
	eng_alloc_fail_at(0, 0);
	CHECK(req == ENGINE_E_NOMEM && strstr(engine_last_error(e), "memory"), "submit with no memory: %d '%s'", req,
	      engine_last_error(e));
}

int main(int argc, char **argv)
{
	verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
	const char *src = getenv("TTYCHAT_SRCDIR");
	snprintf(model_path, sizeof model_path, "%s/%s", src ? src : ".", FIXTURE);
	char err[512];
	struct engine_params ep = {.n_threads = 2};
	engine *e = engine_create(&ep, err, sizeof err);
	CHECK(e != NULL, "engine_create: %s", err);
	if (!e)
		return tu_finish();
	double t0 = (double)clock();

	await(e, engine_load(e, model_path, &load_opts), &ref_load, 0);
	CHECK(ref_load.type == ENGINE_EV_LOADED, "load %s: %s", model_path, ref_load.msg);
	if (ref_load.type != ENGINE_EV_LOADED) {
		engine_free(e);
		return tu_finish();
	}
	await(e, submit(e, 1, 12), &ref_reply, 0);
	CHECK(ref_reply.type == ENGINE_EV_DONE && ref_reply.len > 0, "reference reply: %s", ref_reply.msg);
	await(e, submit_grow(e, 3001), &ref_grow, 0);
	engine_drop_conv(e, 3001);
	const struct engine_stats *gs = &ref_grow.stats;
	CHECK(ref_grow.type == ENGINE_EV_DONE && gs->prompt_tokens < 256 && gs->ctx_used > 256,
	      "reference reply that grows the cache: %u prompt tokens, %u in the cache: %s", gs->prompt_tokens,
	      gs->ctx_used, ref_grow.msg);
	await(e, submit(e, 3001, 200), &ref_long, 0);
	CHECK(ref_long.type == ENGINE_EV_DONE && ref_long.len > ref_reply.len, "reference long reply: %s",
	      ref_long.msg);
	engine_drop_conv(e, 3001);
	await(e, engine_conv_export(e, 1), &ref_export, 0);
	CHECK(ref_export.type == ENGINE_EV_CONV_EXPORT && ref_export.blob_len > 0, "reference export: %s",
	      ref_export.msg);
	await(e, engine_conv_import(e, 2000, ref_export.blob, ref_export.blob_len), &ref_import, 0);
	CHECK(ref_import.type == ENGINE_EV_CONV_IMPORT && ref_import.position > 0, "reference import: %s",
	      ref_import.msg);
	if (tu_fail) {
		engine_free(e);
		return tu_finish();
	}

	const struct sweep sweeps[] = {
		/* a load drops the caches: export's conversation 1 goes first */
		{"export", NULL, post_export, same_export, NULL, false},
		{"import", drop_2000, post_import, same_import, NULL, false},
		{"submit", drop_1000, post_submit, same_reply, &ref_reply, false},
		{"grow", drop_1000, post_grow, same_grow, &ref_grow, false},
		{"load", NULL, post_load, same_load, NULL, true},
	};
	for (size_t i = 0; i < sizeof sweeps / sizeof sweeps[0]; i++) {
		run_sweep(e, &sweeps[i], false);
		run_sweep(e, &sweeps[i], true);
	}
	test_queue_full(e);

	engine_free(e);
	outcome_clear(&ref_load);
	outcome_clear(&ref_reply);
	outcome_clear(&ref_long);
	outcome_clear(&ref_grow);
	outcome_clear(&ref_export);
	outcome_clear(&ref_import);
	printf("%.1f s of CPU\n", ((double)clock() - t0) / CLOCKS_PER_SEC);
	return tu_finish();
}
