/*
 * serve.c - `ttychat serve`, an OpenAI-compatible HTTP/1.1 server on the
 * in-process engine (see serve.h).
 *
 * One poll() loop, one thread.  Each connection is a small state machine:
 * it reads a request (headers up to 16 KiB, a Content-Length body up to
 * 8 MiB; no chunked request bodies), answers the cheap ones at once
 * (/health, /v1/models, errors) and turns a completion request into a job.
 * Jobs wait in a FIFO; exactly one at a time is submitted to the engine, so
 * that a client that goes away can be cancelled with engine_cancel() (which
 * stops the running request and drops those queued in the engine) without
 * touching anyone else's request.  Engine events are routed to the running
 * job by request id.
 *
 * A job's HTTP head is written when its first token, or its end, arrives:
 * an error before any text (prompt too long, template failure) still gets a
 * proper status.  Streams use chunked transfer encoding with one SSE event
 * per chunk, so connections stay reusable (keep-alive).  Output goes
 * through a per-connection buffer written when the socket is writable; a
 * client that stops reading while its buffer passes 16 MiB is dropped.
 *
 * Hostile clients: input is parsed from an offset (a long pipeline costs
 * linear time) and bounded per connection (a connection is not read past
 * 8 MiB unparsed or 256 KiB of unread answers, nor more than 16 requests
 * or 256 KiB taken from it per pass), so one client cannot hold the loop.
 * A request head must be complete within a total time (not per byte); when
 * every connection slot is taken, the longest idle keep-alive connection,
 * else the slowest head, is closed to make room; the key is checked as
 * soon as the head is complete.
 *
 * KV reuse: a job takes, at the moment it is submitted, the conversation
 * slot whose recorded messages share the longest prefix with its own (in
 * bytes; raw completions only match raw slots), else an empty or the least
 * recently used slot.  The engine itself keeps the longest common token
 * prefix of that slot's cache, so the choice only affects speed, never the
 * reply.
 */
#include "config.h"
#include "serve.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX (16u << 10)
#define BODY_MAX (8u << 20)
#define OUT_MAX (16u << 20)
#define MSGS_MAX 10000
#define STOPS_MAX 16
#define BODY_TIMEOUT_MS 30000   /* silence allowed while a body comes */
#define HEAD_TIMEOUT_MS 10000   /* a whole request head, however it trickles */
#define IN_CAP (HEAD_MAX + BODY_MAX + (256u << 10)) /* unparsed input kept; one whole request fits */
#define OUT_HIGH (256u << 10)   /* answers waiting for a client before we stop parsing its requests */
#define READ_PER_PASS (256u << 10)
#define PARSE_PER_PASS 16
#define IDLE_TIMEOUT_MS 120000

enum job_kind { JOB_CHAT, JOB_COMPLETION };

struct job {
	struct conn *c;            /* NULL once the client went away */
	enum job_kind kind;
	bool stream, include_usage;
	struct engine_msg *msgs;   /* owned strings */
	size_t n_msgs;
	char **msg_json;           /* n_msgs entries (owned, NULL where role and content say all), or NULL */
	struct engine_sampling s;
	struct engine_gen_opts g;
	char *stops[STOPS_MAX + 1];
	char *grammar;             /* GBNF from 'grammar' or 'response_format', or NULL */
	int req;                   /* engine request id once submitted */
	int slot;
	char id[48];
	long long created;
	char *text;                /* the reply so far: the answer */
	size_t len, cap;
	char *think;               /* ... and a thinking model's reasoning, apart */
	size_t think_len, think_cap;
	char *effort;              /* reasoning_effort, chat_template_kwargs (JSON): owned */
	char *kwargs;
	/* tools: the model's call format while calls may come (tool_choice
	 * not "none"), else NULL; the opener that starts a call; the bytes
	 * of text already streamed as content (what follows an opener waits
	 * for the end, where the calls are parsed) */
	char *tool_fmt;
	char *tools_json;          /* the request's tools: every parsed call is checked against them */
	const char *tool_open;     /* the openers (engine_gen_opts.grammar_trigger's lines) */
	size_t streamed;
	bool head_sent;
	double t_arrive, t_submit, t_first;
	struct job *next;
};

struct conn {
	int fd;
	char peer[64];
	char *in;
	size_t in_off, in_len, in_cap; /* requests are parsed from in + in_off */
	char *out;
	size_t out_len, out_off, out_cap;
	bool keep_alive, close_after;
	bool eof;                  /* the client half-closed: answer what it sent, then close */
	bool head_done;            /* the current request's head is complete, its body is coming */
	bool continued;            /* "100 Continue" sent for the current request */
	double t_head;             /* the current request's first byte */
	bool busy;                 /* a job of this connection is queued or running */
	struct job *job;
	double t_last;             /* last byte in, or the end of the last answer */
	short revents;             /* of the last poll() */
	bool dead;
};

struct slot {
	uint64_t conv;
	bool used, raw;
	struct engine_msg *msgs;
	size_t n;
	uint64_t last_used;
};

struct server {
	engine *e;
	struct serve_opts o;
	char *key;
	int lfd, port;
	struct conn **conns;
	size_t n_conns, cap_conns;
	struct job *q_head, *q_tail;
	int n_queued;
	struct job *running;
	bool ready;
	struct engine_model_info info;
	struct slot *slots;
	uint64_t clock;
	unsigned long long next_id;
	bool more;                 /* a connection has parsed requests left over from the last pass */
	double accept_paused;      /* out of descriptors: the listening socket rests until then */
	char err[512];
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void logf_(struct server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct server *s, const char *fmt, ...)
{
	if (!s->o.log)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(s->o.log, fmt, ap);
	va_end(ap);
	fputc('\n', s->o.log);
	fflush(s->o.log);
}

/* ---- messages --------------------------------------------------------------- */

static void msgs_free(struct engine_msg *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)m[i].role);
		free((char *)m[i].content);
	}
	free(m);
}

static struct engine_msg *msgs_copy(const struct engine_msg *m, size_t n, const char *extra, size_t extra_len)
{
	struct engine_msg *c = calloc(n + 1, sizeof *c);
	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		c[i].role = strdup(m[i].role);
		c[i].content = strdup(m[i].content);
		if (!c[i].role || !c[i].content) {
			msgs_free(c, n);
			return NULL;
		}
	}
	if (extra) {
		c[n].role = strdup("assistant");
		c[n].content = strndup(extra, extra_len);
		if (!c[n].role || !c[n].content) {
			msgs_free(c, n + 1);
			return NULL;
		}
	}
	return c;
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	for (size_t i = 0; j->msg_json && i < j->n_msgs; i++)
		free(j->msg_json[i]);
	free(j->msg_json);
	msgs_free(j->msgs, j->n_msgs);
	for (int i = 0; j->stops[i]; i++)
		free(j->stops[i]);
	free(j->grammar);
	free(j->text);
	free(j->think);
	free(j->effort);
	free(j->kwargs);
	free(j->tool_fmt);
	free(j->tools_json);
	free(j);
}

/* ---- output ----------------------------------------------------------------- */

static bool out_add(struct conn *c, const char *p, size_t n)
{
	if (c->dead)
		return false;
	if (c->out_len + n > OUT_MAX) {
		c->dead = true; /* the client does not read */
		return false;
	}
	if (c->out_len + n > c->out_cap) {
		size_t nc = c->out_cap ? c->out_cap : 4096;
		while (nc < c->out_len + n)
			nc *= 2;
		char *no = realloc(c->out, nc);
		if (!no) {
			c->dead = true;
			return false;
		}
		c->out = no;
		c->out_cap = nc;
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return true;
}

static void out_fmt(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(struct conn *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int w = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (w > 0)
		out_add(c, buf, (size_t)w < sizeof buf ? (size_t)w : sizeof buf - 1);
}

/* Writes what the socket takes now. */
static void out_flush(struct conn *c)
{
	while (!c->dead && c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (w <= 0) {
			c->dead = true;
			return;
		}
		c->out_off += (size_t)w;
	}
	if (c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
	} else if (c->out_off > c->out_len / 2) {
		/* a slow reader of pipelined answers: keep the buffer from creeping to OUT_MAX */
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
}

static const char *status_text(int st)
{
	switch (st) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	}
	return "Error";
}

static void send_head(struct conn *c, int st, const char *ctype, long long len, const char *extra)
{
	out_fmt(c, "HTTP/1.1 %d %s\r\nServer: ttychat\r\nContent-Type: %s\r\n", st, status_text(st), ctype);
	if (len >= 0)
		out_fmt(c, "Content-Length: %lld\r\n", len);
	else
		out_fmt(c, "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n");
	if (extra)
		out_fmt(c, "%s", extra);
	if (!c->keep_alive)
		c->close_after = true; /* once this answer is out */
	out_fmt(c, "Connection: %s\r\n\r\n", c->close_after ? "close" : "keep-alive");
}

static void send_json(struct conn *c, int st, cJSON *j, const char *extra)
{
	char *t = j ? cJSON_PrintUnformatted(j) : NULL;
	cJSON_Delete(j);
	if (!t) {
		c->close_after = true;
		send_head(c, 500, "application/json", 2, NULL);
		out_add(c, "{}", 2);
		return;
	}
	size_t n = strlen(t);
	send_head(c, st, "application/json", (long long)n + 1, extra);
	out_add(c, t, n);
	out_add(c, "\n", 1);
	free(t);
}

static cJSON *error_obj(const char *type, const char *code, const char *msg)
{
	cJSON *j = cJSON_CreateObject();
	cJSON *e = cJSON_AddObjectToObject(j, "error");
	cJSON_AddStringToObject(e, "message", msg);
	cJSON_AddStringToObject(e, "type", type);
	if (code)
		cJSON_AddStringToObject(e, "code", code);
	else
		cJSON_AddNullToObject(e, "code");
	return j;
}

static void send_error(struct conn *c, int st, const char *type, const char *code, const char *extra,
		       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void send_error(struct conn *c, int st, const char *type, const char *code, const char *extra,
		       const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	send_json(c, st, error_obj(type, code, msg), extra);
}

/* One chunk of a chunked body; N == 0 ends the body. */
static void send_chunk(struct conn *c, const char *p, size_t n)
{
	out_fmt(c, "%zx\r\n", n);
	if (n)
		out_add(c, p, n);
	out_add(c, "\r\n", 2);
}

static void send_event(struct conn *c, cJSON *j)
{
	char *t = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (!t) {
		c->dead = true;
		return;
	}
	size_t n = strlen(t);
	char *ev = malloc(n + 8);
	if (ev) {
		memcpy(ev, "data: ", 6);
		memcpy(ev + 6, t, n);
		memcpy(ev + 6 + n, "\n\n", 2);
		send_chunk(c, ev, n + 8);
	} else {
		c->dead = true;
	}
	free(ev);
	free(t);
}

/* ---- slots ------------------------------------------------------------------ */

static size_t common_prefix(const char *a, const char *b)
{
	size_t i = 0;
	while (a[i] && a[i] == b[i])
		i++;
	return i;
}

static size_t slot_score(const struct slot *sl, const struct job *j)
{
	if (!sl->used || sl->raw != (j->kind == JOB_COMPLETION))
		return 0;
	size_t score = 0;
	for (size_t i = 0; i < sl->n && i < j->n_msgs; i++) {
		if (strcmp(sl->msgs[i].role, j->msgs[i].role) != 0)
			break;
		size_t cp = common_prefix(sl->msgs[i].content, j->msgs[i].content);
		score += cp;
		if (sl->msgs[i].content[cp] || j->msgs[i].content[cp])
			break;
		score++;
	}
	return score;
}

static int pick_slot(struct server *s, const struct job *j)
{
	int best = -1;
	size_t best_score = 0;
	for (int i = 0; i < s->o.slots; i++) {
		size_t sc = slot_score(&s->slots[i], j);
		if (sc > best_score || (sc == best_score && sc > 0 && s->slots[i].last_used > s->slots[best].last_used)) {
			best = i;
			best_score = sc;
		}
	}
	if (best >= 0)
		return best;
	for (int i = 0; i < s->o.slots; i++)
		if (!s->slots[i].used)
			return i;
	int lru = 0;
	for (int i = 1; i < s->o.slots; i++)
		if (s->slots[i].last_used < s->slots[lru].last_used)
			lru = i;
	return lru;
}

/* Records what the slot's cache now holds: the prompt, and the reply when
 * it ended normally. */
static void slot_record(struct server *s, struct job *j, bool with_reply)
{
	struct slot *sl = &s->slots[j->slot];
	msgs_free(sl->msgs, sl->n);
	sl->msgs = NULL;
	sl->n = 0;
	sl->used = false;
	if (j->kind == JOB_COMPLETION) {
		/* one message: the prompt, and the reply as its continuation */
		struct engine_msg m = {.role = "raw", .content = j->msgs[0].content};
		sl->msgs = msgs_copy(&m, 1, NULL, 0);
		if (sl->msgs && with_reply && j->len) {
			size_t a = strlen(sl->msgs[0].content);
			char *t = realloc((char *)sl->msgs[0].content, a + j->len + 1);
			if (t) {
				memcpy(t + a, j->text, j->len);
				t[a + j->len] = '\0';
				sl->msgs[0].content = t;
			}
		}
		sl->n = sl->msgs ? 1 : 0;
	} else {
		sl->msgs = msgs_copy(j->msgs, j->n_msgs, with_reply ? (j->text ? j->text : "") : NULL, j->len);
		sl->n = sl->msgs ? j->n_msgs + (with_reply ? 1 : 0) : 0;
	}
	sl->used = sl->n > 0;
	sl->raw = j->kind == JOB_COMPLETION;
	sl->last_used = ++s->clock;
}

/* ---- jobs ------------------------------------------------------------------- */

static cJSON *usage_obj(const struct engine_stats *st)
{
	cJSON *u = cJSON_CreateObject();
	cJSON_AddNumberToObject(u, "prompt_tokens", st->prompt_tokens);
	cJSON_AddNumberToObject(u, "completion_tokens", st->gen_tokens);
	cJSON_AddNumberToObject(u, "total_tokens", (double)st->prompt_tokens + st->gen_tokens);
	/* OpenAI's place for the reasoning's share of completion_tokens */
	cJSON *d = cJSON_AddObjectToObject(u, "completion_tokens_details");
	cJSON_AddNumberToObject(d, "reasoning_tokens", st->reasoning_tokens);
	return u;
}

/* llama.cpp's "timings" object, which ttychat's remote backend reads. */
static cJSON *timings_obj(const struct engine_stats *st)
{
	cJSON *t = cJSON_CreateObject();
	cJSON_AddNumberToObject(t, "cache_n", st->prompt_reused);
	cJSON_AddNumberToObject(t, "prompt_n", st->prompt_computed);
	cJSON_AddNumberToObject(t, "prompt_ms", st->prefill_ms);
	cJSON_AddNumberToObject(t, "prompt_per_second", st->prefill_tps);
	cJSON_AddNumberToObject(t, "predicted_n", st->gen_tokens);
	cJSON_AddNumberToObject(t, "predicted_ms", st->decode_ms);
	cJSON_AddNumberToObject(t, "predicted_per_second", st->decode_tps);
	if (st->spec_passes) {
		/* llama.cpp's names for the guesses, and ours for the rest */
		cJSON_AddNumberToObject(t, "draft_n", st->spec_drafted);
		cJSON_AddNumberToObject(t, "draft_n_accepted", st->spec_accepted);
		cJSON_AddNumberToObject(t, "draft_passes", st->spec_passes);
		cJSON_AddNumberToObject(t, "draft_speedup", st->spec_speedup);
	}
	return t;
}

static const char *finish_name(enum engine_stop_reason r)
{
	return r == ENGINE_STOP_LENGTH || r == ENGINE_STOP_CONTEXT ? "length" : "stop";
}

/* "tool_calls" when the reply made calls and ended by itself; a reply cut
 * by its length says "length" even with the calls it completed. */
static const char *finish_tools(bool called, enum engine_stop_reason r)
{
	return called && strcmp(finish_name(r), "stop") == 0 ? "tool_calls" : finish_name(r);
}

static cJSON *chunk_obj(struct server *s, const struct job *j)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", j->id);
	cJSON_AddStringToObject(o, "object", j->kind == JOB_CHAT ? "chat.completion.chunk" : "text_completion");
	cJSON_AddNumberToObject(o, "created", (double)j->created);
	cJSON_AddStringToObject(o, "model", s->o.model_name);
	return o;
}

/* A streamed piece (TEXT: answer, or reasoning when THINK) or the end
 * (FINISH != NULL).  Reasoning goes in "reasoning_content", as
 * llama-server, vLLM and DeepSeek's API send it. */
static cJSON *stream_choice(const struct job *j, const char *text, bool think, const char *finish, bool first)
{
	cJSON *c = cJSON_CreateObject();
	cJSON_AddNumberToObject(c, "index", 0);
	if (j->kind == JOB_CHAT) {
		cJSON *d = cJSON_AddObjectToObject(c, "delta");
		if (first)
			cJSON_AddStringToObject(d, "role", "assistant");
		if (text)
			cJSON_AddStringToObject(d, think ? "reasoning_content" : "content", text);
	} else {
		cJSON_AddStringToObject(c, "text", text && !think ? text : "");
		if (text && think)
			cJSON_AddStringToObject(c, "reasoning_content", text);
		cJSON_AddNullToObject(c, "logprobs");
	}
	if (finish)
		cJSON_AddStringToObject(c, "finish_reason", finish);
	else
		cJSON_AddNullToObject(c, "finish_reason");
	return c;
}

static void stream_head(struct job *j)
{
	if (j->head_sent || !j->c)
		return;
	j->head_sent = true;
	send_head(j->c, 200, "text/event-stream", -1, NULL);
}

static void job_append(struct server *s, struct job *j, const char *text, size_t n, bool think);

/* One streamed delta of TEXT (NUL-terminated). */
static void stream_piece(struct server *s, struct job *j, const char *text, bool think)
{
	bool first = !j->head_sent;
	stream_head(j);
	cJSON *o = chunk_obj(s, j);
	cJSON *arr = cJSON_AddArrayToObject(o, "choices");
	cJSON_AddItemToArray(arr, stream_choice(j, text, think, NULL, first));
	send_event(j->c, o);
}

/* How much of a tools job's answer is surely content: all of it up to
 * where a call opener (a line of tool_open; "^": only at the start, after
 * white space) begins or may begin. */
static size_t tool_ready(const struct job *j)
{
	const char *t = j->text ? j->text : "";
	size_t n = j->len, lead = strspn(t, " \t\r\n"), ready = n;
	for (const char *p = j->tool_open; *p;) {
		size_t l = strcspn(p, "\n");
		bool start = *p == '^';
		const char *o = p + start;
		size_t ol = l - start;
		p += l + (p[l] == '\n');
		if (start) {
			/* the reply so far may still become this opener, or is one */
			size_t have = n - lead;
			if (memcmp(t + lead, o, have < ol ? have : ol) == 0 && lead < ready)
				ready = lead;
			continue;
		}
		for (size_t i = 0; i + ol <= n && i < ready; i++)
			if (memcmp(t + i, o, ol) == 0)
				ready = i;
		for (size_t k = ol - 1; k > 0; k--)
			if (k <= n && n - k < ready && memcmp(t + n - k, o, k) == 0) {
				ready = n - k;
				break;
			}
	}
	return ready;
}

/* TEXT[0..N) with each NUL byte as U+FFFD (JSON strings here end at a
 * NUL): malloc'd and NUL-terminated, its length in *OUT_N; NULL when out
 * of memory. */
static char *text_nul_safe(const char *text, size_t n, size_t *out_n)
{
	size_t nul = 0;
	for (size_t i = 0; i < n; i++)
		nul += text[i] == '\0';
	char *t = malloc(n + 2 * nul + 1);
	if (!t)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (text[i] == '\0') {
			memcpy(t + o, "\xef\xbf\xbd", 3);
			o += 3;
		} else {
			t[o++] = text[i];
		}
	}
	t[o] = '\0';
	*out_n = o;
	return t;
}

static void job_token(struct server *s, struct job *j, const char *text0, size_t n0, bool think)
{
	size_t n;
	char *text = text_nul_safe(text0, n0, &n);
	if (!text)
		return;
	job_append(s, j, text, n, think);
	free(text);
}

static void job_append(struct server *s, struct job *j, const char *text, size_t n, bool think)
{
	char **buf = think ? &j->think : &j->text;
	size_t *len = think ? &j->think_len : &j->len, *cap = think ? &j->think_cap : &j->cap;
	if (*len + n + 1 > *cap) {
		size_t nc = *cap ? *cap : 1024;
		while (nc < *len + n + 1)
			nc *= 2;
		char *nt = realloc(*buf, nc);
		if (!nt)
			return;
		*buf = nt;
		*cap = nc;
	}
	memcpy(*buf + *len, text, n);
	*len += n;
	(*buf)[*len] = '\0';
	if (j->t_first == 0)
		j->t_first = now_ms();
	if (!j->stream || !j->c)
		return;
	if (j->tool_fmt && !think) {
		/* content goes out up to where a call may begin */
		size_t ready = tool_ready(j);
		if (ready > j->streamed) {
			char *part = strndup(j->text + j->streamed, ready - j->streamed);
			if (part)
				stream_piece(s, j, part, false);
			free(part);
			j->streamed = ready;
		}
		return;
	}
	stream_piece(s, j, text, think);
}

/* A call id: 9 letters and digits (what Mistral's templates demand of the
 * ids they get back), after "call_" but for Mistral. */
static void call_id(const struct job *j, int i, char *out, size_t n)
{
	static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	uint64_t h = 1469598103934665603ull ^ (uint64_t)j->created ^ ((uint64_t)i << 40);
	for (const char *p = j->id; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	char k[10];
	for (int d = 0; d < 9; d++, h /= 62)
		k[d] = abc[h % 62];
	k[9] = '\0';
	snprintf(out, n, "%s%s", strcmp(j->tool_fmt, "mistral") ? "call_" : "", k);
}

/* A tools job's reply split into its text (*content, malloc'd) and its
 * calls as OpenAI's tool_calls; NULL (and *content NULL) when it made
 * none. */
static cJSON *job_calls(const struct job *j, char **content)
{
	*content = NULL;
	if (!j->tool_fmt || j->kind != JOB_CHAT)
		return NULL;
	char *text = NULL, *calls = NULL;
	if (engine_tools_parse(j->tool_fmt, j->tools_json, j->text ? j->text : "", j->len, &text, &calls))
		return NULL;
	cJSON *arr = cJSON_Parse(calls);
	free(calls);
	if (cJSON_GetArraySize(arr) == 0) {
		cJSON_Delete(arr);
		free(text);
		return NULL;
	}
	cJSON *out = cJSON_CreateArray();
	int i = 0;
	for (const cJSON *x = arr->child; x; x = x->next, i++) {
		const cJSON *mid = cJSON_GetObjectItemCaseSensitive(x, "id");
		char id[48];
		if (cJSON_IsString(mid) && strlen(mid->valuestring) < sizeof id)
			snprintf(id, sizeof id, "%s", mid->valuestring);
		else
			call_id(j, i, id, sizeof id);
		cJSON *tc = cJSON_CreateObject();
		cJSON_AddStringToObject(tc, "id", id);
		cJSON_AddStringToObject(tc, "type", "function");
		cJSON *f = cJSON_AddObjectToObject(tc, "function");
		cJSON_AddStringToObject(f, "name", cJSON_GetObjectItemCaseSensitive(x, "name")->valuestring);
		cJSON_AddStringToObject(f, "arguments", cJSON_GetObjectItemCaseSensitive(x, "arguments")->valuestring);
		cJSON_AddItemToArray(out, tc);
	}
	cJSON_Delete(arr);
	*content = text;
	return out;
}

/* The end of a streamed tools job: the content held back, then each call
 * as OpenAI streams one (its id, type and name with empty arguments, then
 * the arguments).  True when there were calls. */
static bool stream_calls(struct server *s, struct job *j)
{
	char *content;
	cJSON *calls = job_calls(j, &content);
	const char *held = j->text ? j->text + j->streamed : "";
	if (calls) {
		/* the text before the first call went out; the rest of the
		 * content (what came between or after calls) goes now */
		size_t lead = j->streamed;
		while (lead > 0 && j->text && strchr(" \t\r\n", j->text[lead - 1]))
			lead--;
		size_t skip = strspn(j->text ? j->text : "", " \t\r\n");
		size_t pre = lead > skip ? lead - skip : 0;
		held = strlen(content) > pre && !strncmp(content, j->text + skip, pre) ? content + pre : "";
	}
	if (held[0])
		stream_piece(s, j, held, false);
	int i = 0;
	for (const cJSON *tc = calls ? calls->child : NULL; tc; tc = tc->next, i++) {
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(tc, "function");
		for (int half = 0; half < 2; half++) {
			bool first = !j->head_sent;
			stream_head(j);
			cJSON *o = chunk_obj(s, j);
			cJSON *ch = cJSON_CreateObject();
			cJSON_AddNumberToObject(ch, "index", 0);
			cJSON *d = cJSON_AddObjectToObject(ch, "delta");
			if (first)
				cJSON_AddStringToObject(d, "role", "assistant");
			cJSON *arr = cJSON_AddArrayToObject(d, "tool_calls");
			cJSON *x = cJSON_CreateObject();
			cJSON_AddNumberToObject(x, "index", i);
			if (!half) {
				cJSON_AddItemToObject(x, "id", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(tc, "id"), 1));
				cJSON_AddStringToObject(x, "type", "function");
			}
			cJSON *xf = cJSON_AddObjectToObject(x, "function");
			if (!half)
				cJSON_AddItemToObject(xf, "name", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(f, "name"), 1));
			cJSON_AddStringToObject(xf, "arguments",
						half ? cJSON_GetObjectItemCaseSensitive(f, "arguments")->valuestring : "");
			cJSON_AddItemToArray(arr, x);
			cJSON_AddNullToObject(ch, "finish_reason");
			cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), ch);
			send_event(j->c, o);
		}
	}
	free(content);
	cJSON_Delete(calls);
	return i > 0;
}

/* The answer's end: DONE (ST, STOP) or an error (CODE < 0, MSG). */
static void job_finish(struct server *s, struct job *j, int code, const char *msg, const struct engine_stats *st,
		       enum engine_stop_reason stop)
{
	struct conn *c = j->c;
	if (c && !c->dead) {
		if (code < 0 && !j->head_sent) {
			/* a conversation its template refuses is the request's fault */
			int http = code == ENGINE_E_CONTEXT || code == ENGINE_E_INVAL || code == ENGINE_E_TEMPLATE ? 400 : 500;
			send_error(c, http, http == 400 ? "invalid_request_error" : "server_error",
				   code == ENGINE_E_CONTEXT ? "context_length_exceeded" : NULL, NULL, "%s", msg);
		} else if (code < 0) {
			/* mid-stream: an error event, then the end */
			cJSON *e = error_obj("server_error", NULL, msg);
			send_event(c, e);
			send_chunk(c, "data: [DONE]\n\n", 14);
			send_chunk(c, NULL, 0);
		} else if (j->stream) {
			bool called = j->tool_fmt && stream_calls(s, j);
			bool first = !j->head_sent;
			stream_head(j);
			cJSON *o = chunk_obj(s, j);
			cJSON *arr = cJSON_AddArrayToObject(o, "choices");
			cJSON_AddItemToArray(arr, stream_choice(j, NULL, false, finish_tools(called, stop), first));
			cJSON_AddItemToObject(o, "timings", timings_obj(st));
			send_event(c, o);
			if (j->include_usage) {
				o = chunk_obj(s, j);
				cJSON_AddArrayToObject(o, "choices");
				cJSON_AddItemToObject(o, "usage", usage_obj(st));
				send_event(c, o);
			}
			send_chunk(c, "data: [DONE]\n\n", 14);
			send_chunk(c, NULL, 0);
		} else {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "id", j->id);
			cJSON_AddStringToObject(o, "object", j->kind == JOB_CHAT ? "chat.completion" : "text_completion");
			cJSON_AddNumberToObject(o, "created", (double)j->created);
			cJSON_AddStringToObject(o, "model", s->o.model_name);
			cJSON *arr = cJSON_AddArrayToObject(o, "choices");
			cJSON *ch = cJSON_CreateObject();
			cJSON_AddNumberToObject(ch, "index", 0);
			char *content = NULL;
			cJSON *calls = job_calls(j, &content);
			if (j->kind == JOB_CHAT) {
				cJSON *m = cJSON_AddObjectToObject(ch, "message");
				cJSON_AddStringToObject(m, "role", "assistant");
				if (calls && !content[0])
					cJSON_AddNullToObject(m, "content");
				else
					cJSON_AddStringToObject(m, "content", calls ? content : j->text ? j->text : "");
				if (j->think_len)
					cJSON_AddStringToObject(m, "reasoning_content", j->think);
				if (calls)
					cJSON_AddItemToObject(m, "tool_calls", calls);
			} else {
				cJSON_AddStringToObject(ch, "text", j->text ? j->text : "");
				if (j->think_len)
					cJSON_AddStringToObject(ch, "reasoning_content", j->think);
				cJSON_AddNullToObject(ch, "logprobs");
			}
			cJSON_AddStringToObject(ch, "finish_reason", finish_tools(calls != NULL, stop));
			free(content);
			cJSON_AddItemToArray(arr, ch);
			cJSON_AddItemToObject(o, "usage", usage_obj(st));
			cJSON_AddItemToObject(o, "timings", timings_obj(st));
			send_json(c, 200, o, NULL);
		}
	}
	if (c) {
		c->busy = false;
		c->job = NULL;
		c->t_last = c->t_head = now_ms(); /* a request pipelined behind it starts its clock now */
	}
	double t = now_ms();
	logf_(s, "%s %s %s: %s, %u prompt tokens (%u reused), %u generated, queued %.0f ms, first token %.0f ms, total %.0f ms",
	      c ? c->peer : "-", j->id, j->stream ? "stream" : "whole", code < 0 ? msg : finish_name(stop),
	      st ? st->prompt_tokens : 0, st ? st->prompt_reused : 0, st ? st->gen_tokens : 0,
	      j->t_submit - j->t_arrive, j->t_first ? j->t_first - j->t_arrive : 0, t - j->t_arrive);
	slot_record(s, j, code == 0 && stop != ENGINE_STOP_CANCELLED);
	job_free(j);
}

/* Submits the next queued job when the engine is free. */
static void dispatch(struct server *s)
{
	while (!s->running && s->q_head && s->ready) {
		struct job *j = s->q_head;
		s->q_head = j->next;
		if (!s->q_head)
			s->q_tail = NULL;
		s->n_queued--;
		j->next = NULL;
		if (!j->c) { /* its client left while it waited */
			job_free(j);
			continue;
		}
		j->slot = pick_slot(s, j);
		j->t_submit = now_ms();
		j->g.stop = j->stops[0] ? (const char *const *)j->stops : NULL;
		int req = engine_submit(s->e, s->slots[j->slot].conv, j->msgs, j->n_msgs, &j->s, &j->g);
		if (req <= 0) {
			job_finish(s, j, req < 0 ? req : ENGINE_E_NOMEM, engine_last_error(s->e), NULL, ENGINE_STOP_EOG);
			continue;
		}
		j->req = req;
		s->running = j;
	}
}

/* The client of J went away. */
static void job_abandon(struct server *s, struct job *j)
{
	j->c = NULL;
	if (j == s->running)
		engine_cancel(s->e); /* only this request is in the engine */
}

/* ---- parsing a request ------------------------------------------------------- */

static int get_number(const cJSON *root, const char *key, double lo, double hi, bool integer, double *out,
		      char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
	    (integer && v->valuedouble != (double)(long long)v->valuedouble)) {
		snprintf(err, errlen, "'%s' must be %s in [%g, %g]", key, integer ? "an integer" : "a number", lo, hi);
		return -1;
	}
	*out = v->valuedouble;
	return 1;
}

/* Text of a message content: a string, null, or a list of {"type":
 * "text", "text": ...} parts. */
static char *content_text(const cJSON *c, char *err, size_t errlen)
{
	if (!c || cJSON_IsNull(c))
		return strdup("");
	if (cJSON_IsString(c))
		return strdup(c->valuestring);
	if (!cJSON_IsArray(c)) {
		snprintf(err, errlen, "a message's 'content' must be a string or a list of text parts");
		return NULL;
	}
	size_t total = 0;
	for (const cJSON *p = c->child; p; p = p->next) {
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
		const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
		if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !cJSON_IsString(text)) {
			snprintf(err, errlen, "only text content parts are supported");
			return NULL;
		}
		total += strlen(text->valuestring);
	}
	char *out = malloc(total + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (const cJSON *p = c->child; p; p = p->next) {
		const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
		size_t l = strlen(t);
		memcpy(out + o, t, l);
		o += l;
	}
	out[o] = '\0';
	return out;
}

/* Whether a JSON text has "\u0000" inside a string: cJSON would cut the
 * string there, silently. */
static bool json_has_nul(const char *p, size_t n)
{
	bool in_str = false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '"') {
			in_str = !in_str;
		} else if (in_str && p[i] == '\\' && i + 1 < n) {
			if (p[i + 1] == 'u' && i + 5 < n && memcmp(p + i + 2, "0000", 4) == 0)
				return true;
			i++; /* the escaped character */
		}
	}
	return false;
}

/* The reply's constraint: 'grammar' (GBNF, llama.cpp's server field) or
 * 'response_format' ({"type": "text" | "json_object" | "json_schema",
 * "json_schema": {"schema": ...}}), compiled here so that a bad one is a
 * 400 before the job queues.  0, -1 with ERR (a 400), 1 out of memory. */
static int job_grammar(struct job *j, const cJSON *root, char *err, size_t errlen)
{
	const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "grammar");
	const cJSON *rf = cJSON_GetObjectItemCaseSensitive(root, "response_format");
	char msg[512] = "";
	if (g && !cJSON_IsNull(g)) {
		if (!cJSON_IsString(g)) {
			snprintf(err, errlen, "'grammar' must be a string (a GBNF grammar)");
			return -1;
		}
		if (rf && !cJSON_IsNull(rf)) {
			snprintf(err, errlen, "'grammar' and 'response_format' cannot be combined");
			return -1;
		}
		int rc = engine_grammar_check(g->valuestring, strlen(g->valuestring), msg, sizeof msg);
		if (rc == ENGINE_E_NOMEM)
			return 1;
		if (rc) {
			snprintf(err, errlen, "grammar: %s", msg);
			return -1;
		}
		if (!(j->grammar = strdup(g->valuestring)))
			return 1;
	} else if (rf && !cJSON_IsNull(rf)) {
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
		if (!cJSON_IsObject(rf) || !cJSON_IsString(type)) {
			snprintf(err, errlen, "'response_format' must be an object with a 'type'");
			return -1;
		}
		char *schema = NULL;
		if (!strcmp(type->valuestring, "text")) {
			return 0;
		} else if (!strcmp(type->valuestring, "json_object")) {
			schema = strdup("{\"type\":\"object\"}");
		} else if (!strcmp(type->valuestring, "json_schema")) {
			const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
			const cJSON *sc = cJSON_GetObjectItemCaseSensitive(js, "schema");
			if (!cJSON_IsObject(sc) && !cJSON_IsBool(sc)) {
				snprintf(err, errlen, "response_format json_schema needs 'json_schema': {\"schema\": {...}}");
				return -1;
			}
			schema = cJSON_PrintUnformatted(sc);
		} else {
			snprintf(err, errlen, "response_format type '%.40s' is not text, json_object or json_schema",
				 type->valuestring);
			return -1;
		}
		if (!schema)
			return 1;
		int rc = engine_json_schema_grammar(schema, strlen(schema), &j->grammar, msg, sizeof msg);
		free(schema);
		if (rc == ENGINE_E_NOMEM)
			return 1;
		if (rc) {
			snprintf(err, errlen, "response_format: the schema cannot be honoured: %s", msg);
			return -1;
		}
	}
	j->g.grammar = j->grammar;
	return 0;
}

/* The message M as its template should see it when it says more than a
 * role and a text: an assistant's tool_calls (string arguments parsed into
 * the object the templates render with tojson, as llama.cpp passes them),
 * a tool result's tool_call_id and name.  *OUT NULL when role and text say
 * all.  0, -1 with ERR (a 400), 1 out of memory. */
static int msg_json(const cJSON *m, const char *role, const char *text, char **out, char *err, size_t errlen)
{
	*out = NULL;
	const cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "tool_call_id");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
	const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
	if (cJSON_IsNull(tc))
		tc = NULL;
	if (!tc && !cJSON_IsString(id) && !cJSON_IsString(name))
		return 0;
	if (tc && !cJSON_IsArray(tc)) {
		snprintf(err, errlen, "a message's 'tool_calls' must be a list");
		return -1;
	}
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return 1;
	cJSON_AddStringToObject(o, "role", role);
	if (tc && (!content || cJSON_IsNull(content)))
		cJSON_AddNullToObject(o, "content");
	else
		cJSON_AddStringToObject(o, "content", text);
	cJSON *arr = tc ? cJSON_AddArrayToObject(o, "tool_calls") : NULL;
	for (const cJSON *x = tc ? tc->child : NULL; x; x = x->next) {
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(x, "function");
		if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(f, "name"))) {
			cJSON_Delete(o);
			snprintf(err, errlen, "each of a message's 'tool_calls' needs 'function': {\"name\": ...}");
			return -1;
		}
		cJSON *d = cJSON_Duplicate(x, 1);
		cJSON *df = cJSON_GetObjectItemCaseSensitive(d, "function");
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(df, "arguments");
		cJSON *parsed = cJSON_IsString(a) ? cJSON_Parse(a->valuestring) : NULL;
		if (cJSON_IsObject(parsed))
			cJSON_ReplaceItemInObjectCaseSensitive(df, "arguments", parsed);
		else
			cJSON_Delete(parsed);
		cJSON_AddItemToArray(arr, d);
	}
	if (cJSON_IsString(id))
		cJSON_AddStringToObject(o, "tool_call_id", id->valuestring);
	if (cJSON_IsString(name))
		cJSON_AddStringToObject(o, "name", name->valuestring);
	char *t = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!t)
		return 1;
	*out = strdup(t);
	cJSON_free(t);
	return *out ? 0 : 1;
}

/* tools, tool_choice, parallel_tool_calls: the tools go to the template
 * (the variable `tools`, as transformers passes them), and unless
 * tool_choice is "none" a grammar built from their schemas makes any call
 * valid: lazy (free text until the model opens a call) for "auto", from
 * the first token for "required" or a named function.  0, -1 with ERR (a
 * 400), 1 out of memory. */
static int job_tools(struct server *s, struct job *j, const cJSON *root, char *err, size_t errlen)
{
	const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
	const cJSON *choice = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
	const cJSON *par = cJSON_GetObjectItemCaseSensitive(root, "parallel_tool_calls");
	if (tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools)) {
		snprintf(err, errlen, "'tools' must be a list");
		return -1;
	}
	if (par && !cJSON_IsBool(par) && !cJSON_IsNull(par)) {
		snprintf(err, errlen, "'parallel_tool_calls' must be true or false");
		return -1;
	}
	bool have = cJSON_GetArraySize(tools) > 0;
	const char *mode = have ? "auto" : "none", *only = NULL;
	if (cJSON_IsString(choice) && (!strcmp(choice->valuestring, "auto") || !strcmp(choice->valuestring, "none") ||
				       !strcmp(choice->valuestring, "required"))) {
		mode = choice->valuestring;
	} else if (cJSON_IsObject(choice)) {
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(choice, "function"), "name");
		if (!cJSON_IsString(n)) {
			snprintf(err, errlen, "'tool_choice' names a function as {\"type\": \"function\", \"function\": {\"name\": ...}}");
			return -1;
		}
		mode = "required";
		only = n->valuestring;
	} else if (choice && !cJSON_IsNull(choice)) {
		snprintf(err, errlen, "'tool_choice' must be \"none\", \"auto\", \"required\" or a named function");
		return -1;
	}
	if (!have) {
		if (strcmp(mode, "none") != 0) {
			snprintf(err, errlen, "'tool_choice' %s needs 'tools'", only ? "naming a function" : mode);
			return -1;
		}
		return 0;
	}
	if (j->kind != JOB_CHAT) {
		snprintf(err, errlen, "'tools' belong to /v1/chat/completions");
		return -1;
	}
	if (!s->info.tool_format[0]) {
		snprintf(err, errlen, "this model's chat template cannot render tools (it has no tool-call format ttychat "
				      "knows: Hermes/Qwen <tool_call>, Llama 3.x JSON, Mistral [TOOL_CALLS], "
				      "gpt-oss harmony)");
		return -1;
	}
	/* the template's variables: chat_template_kwargs and the tools */
	cJSON *kw = j->kwargs ? cJSON_Parse(j->kwargs) : cJSON_CreateObject();
	if (!kw)
		return 1;
	cJSON_DeleteItemFromObjectCaseSensitive(kw, "tools");
	cJSON_AddItemToObject(kw, "tools", cJSON_Duplicate(tools, 1));
	char *vars = cJSON_PrintUnformatted(kw);
	cJSON_Delete(kw);
	if (!vars)
		return 1;
	free(j->kwargs);
	j->kwargs = strdup(vars);
	cJSON_free(vars);
	if (!j->kwargs)
		return 1;
	j->g.template_vars = j->kwargs;
	if (!strcmp(mode, "none"))
		return 0;
	if (j->grammar) {
		snprintf(err, errlen, "'tools' (unless tool_choice is \"none\") cannot be combined with 'grammar' or 'response_format'");
		return -1;
	}
	char *txt = cJSON_PrintUnformatted(tools), msg[512] = "";
	if (!txt)
		return 1;
	const char *trigger = NULL;
	int rc = engine_tools_grammar(s->info.tool_format, txt, strlen(txt), only, !cJSON_IsFalse(par), &j->grammar,
				      &trigger, msg, sizeof msg);
	j->tools_json = strdup(txt);
	cJSON_free(txt);
	if (rc == ENGINE_E_NOMEM || !j->tools_json)
		return 1;
	if (rc) {
		snprintf(err, errlen, "tools: %s", msg);
		return -1;
	}
	if (!(j->tool_fmt = strdup(s->info.tool_format)))
		return 1;
	j->tool_open = trigger;
	j->g.grammar = j->grammar;
	/* harmony calls start with header tokens no grammar can force */
	if (!strcmp(mode, "auto") || !strcmp(j->tool_fmt, "harmony"))
		j->g.grammar_trigger = trigger;
	return 0;
}

/* Builds a job from a request body; NULL with ERR (a 400) or *NOMEM. */
static struct job *job_parse(struct server *s, enum job_kind kind, const char *body, size_t len, char *err,
			     size_t errlen)
{
	if (json_has_nul(body, len)) {
		snprintf(err, errlen, "a JSON string holds \\u0000 (a NUL character), which is not supported");
		return NULL;
	}
	cJSON *root = cJSON_ParseWithLength(body, len);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		snprintf(err, errlen, "the request body is not a JSON object");
		return NULL;
	}
	struct job *j = calloc(1, sizeof *j);
	if (!j) {
		cJSON_Delete(root);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	j->kind = kind;
	j->s = s->o.sampling;
	j->g.add_generation_prompt = true;
	j->g.raw = kind == JOB_COMPLETION;
	j->g.think = (enum engine_think)s->o.think;
	j->g.reasoning_effort = s->o.reasoning_effort;
	j->g.reasoning_budget = s->o.reasoning_budget;
	j->g.spec = s->o.spec;
	j->g.draft_max = s->o.draft_max;
	j->t_arrive = now_ms();
	j->created = (long long)time(NULL);
	snprintf(j->id, sizeof j->id, "%s-%llu", kind == JOB_CHAT ? "chatcmpl" : "cmpl", ++s->next_id);
	{
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		j->s.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (s->next_id << 44);
	}
	const cJSON *v;
	double d;
	int rc = 0;

	if (kind == JOB_CHAT) {
		const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
		int n = cJSON_IsArray(msgs) ? cJSON_GetArraySize(msgs) : -1;
		if (n <= 0 || n > MSGS_MAX) {
			snprintf(err, errlen, "'messages' must be a list of 1 to %d messages", MSGS_MAX);
			goto bad;
		}
		j->msgs = calloc((size_t)n, sizeof *j->msgs);
		j->msg_json = calloc((size_t)n, sizeof *j->msg_json);
		if (!j->msgs || !j->msg_json)
			goto nomem;
		for (const cJSON *m = msgs->child; m; m = m->next) {
			const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
			if (!cJSON_IsObject(m) || !cJSON_IsString(role) || !role->valuestring[0] ||
			    strlen(role->valuestring) > 32) {
				snprintf(err, errlen, "message %zu: needs a 'role' string", j->n_msgs + 1);
				goto bad;
			}
			char *text = content_text(cJSON_GetObjectItemCaseSensitive(m, "content"), err, errlen);
			if (!text)
				goto bad;
			const char *r = role->valuestring;
			/* "developer" is OpenAI's newer name for "system" */
			j->msgs[j->n_msgs].role = strdup(strcmp(r, "developer") == 0 ? "system" : r);
			j->msgs[j->n_msgs].content = text;
			j->n_msgs++;
			if (!j->msgs[j->n_msgs - 1].role)
				goto nomem;
			char *mj = NULL;
			if ((rc = msg_json(m, j->msgs[j->n_msgs - 1].role, text, &mj, err, errlen)) < 0)
				goto bad;
			if (rc > 0)
				goto nomem;
			j->msg_json[j->n_msgs - 1] = mj;
			if (mj)
				j->g.msg_json = (const char *const *)j->msg_json;
		}
	} else {
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
		if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1)
			p = p->child;
		if (!cJSON_IsString(p)) {
			snprintf(err, errlen, "'prompt' must be a string (one prompt per request)");
			goto bad;
		}
		if (!p->valuestring[0]) {
			snprintf(err, errlen, "'prompt' is empty");
			goto bad;
		}
		j->msgs = calloc(1, sizeof *j->msgs);
		if (!j->msgs)
			goto nomem;
		j->msgs[0].role = strdup("user");
		j->msgs[0].content = strdup(p->valuestring);
		j->n_msgs = 1;
		if (!j->msgs[0].role || !j->msgs[0].content)
			goto nomem;
	}

	v = cJSON_GetObjectItemCaseSensitive(root, "stream");
	if (v && !cJSON_IsBool(v) && !cJSON_IsNull(v)) {
		snprintf(err, errlen, "'stream' must be true or false");
		goto bad;
	}
	j->stream = cJSON_IsTrue(v);
	v = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
	j->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "include_usage"));
	if ((rc = get_number(root, "n", 1, 1, true, &d, err, errlen)) < 0)
		goto bad;
	const char *mt = cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens") ? "max_completion_tokens"
											   : "max_tokens";
	if ((rc = get_number(root, mt, 1, 1 << 24, true, &d, err, errlen)) < 0)
		goto bad;
	if (rc)
		j->g.max_tokens = (int32_t)d;
	if ((rc = get_number(root, "temperature", 0, 100, false, &d, err, errlen)) < 0)
		goto bad;
	if (rc)
		j->s.temperature = (float)d;
	if ((rc = get_number(root, "top_p", 0, 1, false, &d, err, errlen)) < 0)
		goto bad;
	if (rc)
		j->s.top_p = (float)d;
	if ((rc = get_number(root, "top_k", 0, 1 << 24, true, &d, err, errlen)) < 0)
		goto bad;
	if (rc)
		j->s.top_k = (int32_t)d;
	if ((rc = get_number(root, "min_p", 0, 1, false, &d, err, errlen)) < 0)
		goto bad;
	if (rc)
		j->s.min_p = (float)d;
	const char *rp = cJSON_GetObjectItemCaseSensitive(root, "repeat_penalty") ? "repeat_penalty" : "repetition_penalty";
	if ((rc = get_number(root, rp, 0.01, 100, false, &d, err, errlen)) < 0)
		goto bad;
	if (rc)
		j->s.repeat_penalty = (float)d;
	if ((rc = get_number(root, "presence_penalty", -2, 2, false, &d, err, errlen)) < 0)
		goto bad;
	if (rc)
		j->s.presence_penalty = (float)d;
	if ((rc = get_number(root, "frequency_penalty", -2, 2, false, &d, err, errlen)) < 0)
		goto bad;
	if (rc)
		j->s.frequency_penalty = (float)d;
	if ((rc = get_number(root, "seed", -9007199254740991.0, 9007199254740991.0, true, &d, err, errlen)) < 0)
		goto bad;
	if (rc)
		j->s.seed = (uint64_t)(long long)d;
	/* thinking models: the template variables that switch it, a budget */
	v = cJSON_GetObjectItemCaseSensitive(root, "reasoning_effort");
	if (v && !cJSON_IsNull(v)) {
		if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) > 16 ||
		    strspn(v->valuestring, "abcdefghijklmnopqrstuvwxyz") != strlen(v->valuestring)) {
			snprintf(err, errlen, "'reasoning_effort' must be a word such as low, medium or high");
			goto bad;
		}
		if (!(j->effort = strdup(v->valuestring)))
			goto nomem;
		j->g.reasoning_effort = j->effort;
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "chat_template_kwargs");
	if (v && !cJSON_IsNull(v)) {
		if (!cJSON_IsObject(v)) {
			snprintf(err, errlen, "'chat_template_kwargs' must be an object");
			goto bad;
		}
		if (!(j->kwargs = cJSON_PrintUnformatted(v)))
			goto nomem;
		j->g.template_vars = j->kwargs;
		/* the request's own switch wins over the server's default */
		if (cJSON_GetObjectItemCaseSensitive(v, "enable_thinking"))
			j->g.think = ENGINE_THINK_DEFAULT;
		if (cJSON_GetObjectItemCaseSensitive(v, "reasoning_effort") &&
		    !cJSON_GetObjectItemCaseSensitive(root, "reasoning_effort"))
			j->g.reasoning_effort = NULL;
	}
	if ((rc = get_number(root, "reasoning_budget", 0, 1 << 24, true, &d, err, errlen)) < 0)
		goto bad;
	if (rc)
		j->g.reasoning_budget = (int32_t)d;
	v = cJSON_GetObjectItemCaseSensitive(root, "ignore_eos");
	if (v && !cJSON_IsBool(v) && !cJSON_IsNull(v)) {
		snprintf(err, errlen, "'ignore_eos' must be true or false");
		goto bad;
	}
	j->g.ignore_eos = cJSON_IsTrue(v);
	v = cJSON_GetObjectItemCaseSensitive(root, "stop");
	if (cJSON_IsString(v)) {
		if (v->valuestring[0] && !(j->stops[0] = strdup(v->valuestring)))
			goto nomem;
	} else if (cJSON_IsArray(v)) {
		int k = 0;
		for (const cJSON *x = v->child; x; x = x->next) {
			if (!cJSON_IsString(x) || k == STOPS_MAX || strlen(x->valuestring) > 1024) {
				snprintf(err, errlen, "'stop' must be a string or a list of at most %d strings", STOPS_MAX);
				goto bad;
			}
			if (x->valuestring[0] && !(j->stops[k++] = strdup(x->valuestring)))
				goto nomem;
		}
	} else if (v && !cJSON_IsNull(v)) {
		snprintf(err, errlen, "'stop' must be a string or a list of strings");
		goto bad;
	}
	if ((rc = job_grammar(j, root, err, errlen)) < 0)
		goto bad;
	if (rc > 0)
		goto nomem;
	if ((rc = job_tools(s, j, root, err, errlen)) < 0)
		goto bad;
	if (rc > 0)
		goto nomem;
	cJSON_Delete(root);
	return j;
nomem:
	snprintf(err, errlen, "out of memory");
bad:
	cJSON_Delete(root);
	job_free(j);
	return NULL;
}

/* ---- routing ------------------------------------------------------------------ */

static bool auth_ok(const struct server *s, const char *auth)
{
	if (!s->key)
		return true;
	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
		return false;
	const char *given = auth + 7;
	given += strspn(given, " ");
	size_t a = strlen(given), b = strlen(s->key);
	/* constant time in the key's length */
	unsigned char diff = (unsigned char)(a != b);
	for (size_t i = 0; i < b; i++)
		diff |= (unsigned char)(s->key[i] ^ (i < a ? given[i] : 0));
	return diff == 0;
}

static void answer_models(struct server *s, struct conn *c)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "object", "list");
	cJSON *arr = cJSON_AddArrayToObject(o, "data");
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "id", s->o.model_name);
	cJSON_AddStringToObject(m, "object", "model");
	cJSON_AddNumberToObject(m, "created", 0);
	cJSON_AddStringToObject(m, "owned_by", "ttychat");
	if (s->ready) {
		cJSON_AddNumberToObject(m, "max_model_len", s->info.n_ctx);
		cJSON *meta = cJSON_AddObjectToObject(m, "meta");
		cJSON_AddStringToObject(meta, "arch", s->info.arch);
		cJSON_AddStringToObject(meta, "quant", s->info.quant);
		cJSON_AddNumberToObject(meta, "n_ctx", s->info.n_ctx);
		cJSON_AddNumberToObject(meta, "n_ctx_train", s->info.n_ctx_train);
		cJSON_AddNumberToObject(meta, "n_params", (double)s->info.n_params);
		cJSON_AddNumberToObject(meta, "n_vocab", s->info.n_vocab);
		cJSON_AddNumberToObject(meta, "size", (double)s->info.file_bytes);
	}
	cJSON_AddItemToArray(arr, m);
	send_json(c, 200, o, NULL);
}

struct request {
	char method[16];
	char path[256];
	size_t head_len, body_len;
};

/* Handles one complete request whose head is Q and body B. */
static void route(struct server *s, struct conn *c, const struct request *q, const char *b)
{
	const char *p = q->path;
	if (strncmp(p, "/v1/", 4) == 0)
		p += 3;
	bool get = strcmp(q->method, "GET") == 0, post = strcmp(q->method, "POST") == 0;
	if (strcmp(p, "/health") == 0) {
		if (!get) {
			send_error(c, 405, "invalid_request_error", NULL, "Allow: GET\r\n", "use GET");
			return;
		}
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "status", s->ready ? "ok" : "loading model");
		send_json(c, s->ready ? 200 : 503, o, s->ready ? NULL : "Retry-After: 1\r\n");
		return;
	}
	bool known = strcmp(p, "/models") == 0 || strcmp(p, "/chat/completions") == 0 || strcmp(p, "/completions") == 0;
	if (!known) {
		send_error(c, 404, "invalid_request_error", NULL, NULL, "no endpoint %s %.100s", q->method, q->path);
		return;
	}
	if (strcmp(p, "/models") == 0) {
		if (!get)
			send_error(c, 405, "invalid_request_error", NULL, "Allow: GET\r\n", "use GET");
		else if (!s->ready)
			send_error(c, 503, "unavailable", NULL, "Retry-After: 1\r\n", "the model is loading; try again shortly");
		else
			answer_models(s, c);
		return;
	}
	if (!post) {
		send_error(c, 405, "invalid_request_error", NULL, "Allow: POST\r\n", "use POST");
		return;
	}
	if (!s->ready) {
		send_error(c, 503, "unavailable", NULL, "Retry-After: 1\r\n", "the model is loading; try again shortly");
		return;
	}
	if (s->n_queued >= s->o.max_queue && s->running) {
		send_error(c, 429, "rate_limit_error", "queue_full", "Retry-After: 1\r\n",
			   "server busy: %d requests already wait (ttychat serve --max-queue %d)", s->n_queued,
			   s->o.max_queue);
		return;
	}
	char err[512];
	struct job *j = job_parse(s, strcmp(p, "/completions") == 0 ? JOB_COMPLETION : JOB_CHAT, b, q->body_len, err,
				  sizeof err);
	if (!j) {
		send_error(c, 400, "invalid_request_error", NULL, NULL, "%s", err);
		return;
	}
	j->c = c;
	c->busy = true;
	c->job = j;
	if (s->q_tail)
		s->q_tail->next = j;
	else
		s->q_head = j;
	s->q_tail = j;
	s->n_queued++;
	dispatch(s);
}

/* Value of header NAME in the head H (NUL-terminated lines joined by
 * "\r\n"), or NULL; copies at most N-1 bytes.  With BUF NULL: how many
 * times it occurs, as a non-NULL answer's address is of no use then. */
static const char *header_find(const char *h, const char *name, char *buf, size_t n, int *count)
{
	size_t nl = strlen(name);
	const char *found = NULL;
	for (const char *l = strstr(h, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
		const char *k = l + 2;
		if (strncasecmp(k, name, nl) != 0 || k[nl] != ':')
			continue;
		if (count)
			++*count;
		if (found)
			continue;
		const char *v = k + nl + 1;
		v += strspn(v, " \t");
		size_t vl = strcspn(v, "\r\n");
		while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			vl--;
		if (vl >= n)
			vl = n - 1;
		memcpy(buf, v, vl);
		buf[vl] = '\0';
		found = buf;
	}
	return found;
}

static const char *header(const char *h, const char *name, char *buf, size_t n)
{
	return header_find(h, name, buf, n, NULL);
}

/* Whether PATH is an endpoint that needs the key (all but /health). */
static bool needs_key(const char *path)
{
	const char *p = strncmp(path, "/v1/", 4) == 0 ? path + 3 : path;
	return strcmp(p, "/models") == 0 || strcmp(p, "/chat/completions") == 0 || strcmp(p, "/completions") == 0;
}

/* An error that ends the connection once answered; false. */
static bool reject(struct conn *c, int st, const char *msg)
{
	c->close_after = true;
	send_error(c, st, "invalid_request_error", NULL, NULL, "%s", msg);
	return false;
}

enum head_result { HEAD_BAD = -1, HEAD_OK, HEAD_NO_KEY };

/* The request line and the headers that matter, from HEAD into Q; HEAD_BAD
 * when answered with an error.  The key is checked here, before any body
 * is waited for. */
static enum head_result parse_head(struct server *s, struct conn *c, const char *head, struct request *q,
				   bool *expect)
{
	char version[16] = "", hb[600];
	int ok = sscanf(head, "%15s %255s %15s", q->method, q->path, version) == 3;
	if (!ok || head[0] == ' ' || (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0))
		return reject(c, ok && strncmp(version, "HTTP/", 5) == 0 ? 505 : 400,
			      ok && strncmp(version, "HTTP/", 5) == 0 ? "HTTP/1.1 only" : "malformed request line")
			       ? HEAD_OK : HEAD_BAD;
	char *qm = strchr(q->path, '?');
	if (qm)
		*qm = '\0';
	bool http10 = strcmp(version, "HTTP/1.0") == 0;
	const char *conn_h = header(head, "Connection", hb, sizeof hb);
	c->keep_alive = conn_h ? strcasecmp(conn_h, "close") != 0 && (!http10 || strcasecmp(conn_h, "keep-alive") == 0)
			       : !http10;
	if (header(head, "Transfer-Encoding", hb, sizeof hb) && strcasecmp(hb, "identity") != 0) {
		c->close_after = true;
		send_error(c, 411, "invalid_request_error", NULL, NULL, "chunked request bodies are not supported; send Content-Length");
		return HEAD_BAD;
	}
	int n_len = 0;
	header_find(head, "Content-Length", hb, sizeof hb, &n_len);
	if (n_len > 1) /* RFC 9112 6.3: a request smuggling hazard */
		return reject(c, 400, "more than one Content-Length") ? HEAD_OK : HEAD_BAD;
	if (n_len == 1) {
		char *e;
		errno = 0;
		unsigned long long v = strtoull(hb, &e, 10);
		if (errno || *e || e == hb || hb[0] == '-' || hb[0] == '+')
			return reject(c, 400, "bad Content-Length") ? HEAD_OK : HEAD_BAD;
		if (v > BODY_MAX) {
			c->close_after = true;
			send_error(c, 413, "invalid_request_error", NULL, NULL, "request body larger than %u bytes", BODY_MAX);
			return HEAD_BAD;
		}
		q->body_len = (size_t)v;
	}
	*expect = header(head, "Expect", hb, sizeof hb) && strcasecmp(hb, "100-continue") == 0;
	if (!needs_key(q->path))
		return HEAD_OK;
	char auth[600];
	bool good = auth_ok(s, header(head, "Authorization", auth, sizeof auth));
	memset(auth, 0, sizeof auth);
	return good ? HEAD_OK : HEAD_NO_KEY;
}

/* Drops N parsed bytes; the next request's clock starts. */
static void conn_consume(struct conn *c, size_t n)
{
	c->in_off += n;
	c->head_done = c->continued = false;
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
	else
		c->t_head = now_ms();
}

/* Parses what C has read: answers a complete request and consumes it.
 * Returns true when it did (more may follow).  Input is consumed by moving
 * an offset, so a long pipeline costs linear time; a client that does not
 * read its answers is not parsed further until they drain. */
static bool parse_one(struct server *s, struct conn *c)
{
	if (c->busy || c->dead || c->close_after || c->out_len - c->out_off > OUT_HIGH)
		return false;
	const char *in = c->in + c->in_off;
	size_t avail = c->in_len - c->in_off, scan = avail < HEAD_MAX + 4 ? avail : HEAD_MAX + 4;
	const char *end = scan ? memmem(in, scan, "\r\n\r\n", 4) : NULL;
	if (!end || (size_t)(end - in) + 4 > HEAD_MAX) {
		if (avail > HEAD_MAX) {
			c->close_after = true;
			send_error(c, 431, "invalid_request_error", NULL, NULL, "request head larger than %u bytes", HEAD_MAX);
		}
		return false;
	}
	struct request q = {.head_len = (size_t)(end - in) + 4};
	if (memchr(in, '\0', q.head_len))
		return reject(c, 400, "a NUL byte in the request head");
	char *head = strndup(in, q.head_len - 2); /* keeps one "\r\n" after the last line */
	if (!head) {
		c->dead = true;
		return false;
	}
	bool expect = false;
	enum head_result hr = parse_head(s, c, head, &q, &expect);
	free(head);
	bool whole = avail >= q.head_len + q.body_len;
	if (hr == HEAD_BAD)
		return false;
	if (hr == HEAD_NO_KEY) {
		if (whole)
			conn_consume(c, q.head_len + q.body_len);
		else
			c->close_after = true; /* its body is not worth waiting for */
		send_error(c, 401, "authentication_error", "invalid_api_key", "WWW-Authenticate: Bearer\r\n",
			   "invalid or missing API key (Authorization: Bearer KEY)");
		return whole;
	}
	if (!whole) {
		c->head_done = true;
		if (expect && !c->continued && avail == q.head_len) {
			out_fmt(c, "HTTP/1.1 100 Continue\r\n\r\n");
			c->continued = true;
		}
		return false;
	}
	char *body = malloc(q.body_len + 1);
	if (!body) {
		c->dead = true;
		return false;
	}
	memcpy(body, in + q.head_len, q.body_len);
	body[q.body_len] = '\0';
	conn_consume(c, q.head_len + q.body_len);
	route(s, c, &q, body);
	free(body);
	return true;
}

/* ---- connections ---------------------------------------------------------------- */

static void conn_close(struct server *s, size_t i)
{
	struct conn *c = s->conns[i];
	if (c->job)
		job_abandon(s, c->job);
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
	s->conns[i] = s->conns[--s->n_conns];
}

/* Whether C's input is worth reading now: not once it half-closed, nor
 * while its unparsed input or unread answers are at their bounds (the
 * socket then pushes back on the client). */
static bool conn_wants_read(const struct conn *c)
{
	return !c->eof && !c->dead && !c->close_after && c->in_len - c->in_off < IN_CAP - (64u << 10) &&
	       c->out_len - c->out_off <= OUT_HIGH;
}

/* Reads up to READ_PER_PASS, so that one client never holds the loop. */
static void conn_read(struct conn *c)
{
	if (c->in_off > 0) { /* compact once per read, never once per request */
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	size_t got = 0;
	while (got < READ_PER_PASS && conn_wants_read(c)) {
		if (c->in_len + (64u << 10) > c->in_cap) {
			size_t nc = c->in_cap ? c->in_cap * 2 : (128u << 10);
			char *ni = realloc(c->in, nc < IN_CAP ? nc : IN_CAP);
			if (!ni) {
				c->dead = true;
				return;
			}
			c->in = ni;
			c->in_cap = nc < IN_CAP ? nc : IN_CAP;
		}
		size_t room = c->in_cap - c->in_len;
		if (room > READ_PER_PASS - got)
			room = READ_PER_PASS - got;
		ssize_t r = recv(c->fd, c->in + c->in_len, room, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r == 0) {
			c->eof = true; /* perhaps only a half-close: what it sent still gets its answer */
			return;
		}
		if (r < 0) {
			c->dead = true;
			return;
		}
		if (c->in_len == c->in_off)
			c->t_head = now_ms();
		c->in_len += (size_t)r;
		got += (size_t)r;
		c->t_last = now_ms();
	}
}

/* With every slot taken: closes the keep-alive connection idle longest,
 * else the one whose request head has been trickling in longest.  False
 * when every connection is at work. */
static bool conn_evict(struct server *s)
{
	size_t best = SIZE_MAX;
	bool best_idle = false;
	for (size_t i = 0; i < s->n_conns; i++) {
		struct conn *c = s->conns[i];
		if (c->busy || c->out_len > c->out_off || c->head_done)
			continue;
		bool idle = c->in_len == c->in_off;
		double t = idle ? c->t_last : c->t_head;
		if (best == SIZE_MAX || (idle && !best_idle) ||
		    (idle == best_idle && t < (best_idle ? s->conns[best]->t_last : s->conns[best]->t_head))) {
			best = i;
			best_idle = idle;
		}
	}
	if (best == SIZE_MAX)
		return false;
	struct conn *c = s->conns[best];
	if (!best_idle) {
		c->close_after = true;
		send_error(c, 408, "invalid_request_error", NULL, NULL, "request not complete in time");
		out_flush(c);
	}
	logf_(s, "%s: closed to make room (%s)", c->peer, best_idle ? "idle" : "slow request head");
	conn_close(s, best);
	return true;
}

static void accept_all(struct server *s)
{
	for (;;) {
		struct sockaddr_storage sa;
		socklen_t sl = sizeof sa;
		int fd = accept4(s->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
			if (s->n_conns > 0 && conn_evict(s))
				continue;
			/* the pending connection stays readable: rest rather than spin */
			s->accept_paused = now_ms() + 250;
			logf_(s, "out of file descriptors: not accepting for 250 ms");
			return;
		}
		if (fd < 0)
			return;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->t_last = c->t_head = now_ms();
		char host[INET6_ADDRSTRLEN] = "?", port[8] = "";
		getnameinfo((struct sockaddr *)&sa, sl, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
		snprintf(c->peer, sizeof c->peer, "%s:%s", host, port);
		if (s->n_conns >= (size_t)s->o.max_clients && !conn_evict(s)) {
			/* over the limit: one answer, then the door */
			c->close_after = true;
			send_error(c, 503, "unavailable", NULL, "Retry-After: 1\r\n",
				   "too many connections (%d); try again shortly", s->o.max_clients);
			out_flush(c);
			close(fd);
			free(c->out);
			free(c);
			continue;
		}
		if (s->n_conns == s->cap_conns) {
			size_t nc = s->cap_conns ? s->cap_conns * 2 : 16;
			struct conn **ncs = realloc(s->conns, nc * sizeof *ncs);
			if (!ncs) {
				close(fd);
				free(c);
				continue;
			}
			s->conns = ncs;
			s->cap_conns = nc;
		}
		s->conns[s->n_conns++] = c;
	}
}

/* ---- engine events -------------------------------------------------------------- */

static int on_engine(struct server *s, int load_req, char *err, size_t errlen)
{
	struct engine_event ev;
	while (engine_event_next(s->e, &ev)) {
		if (ev.request == load_req) {
			if (ev.type == ENGINE_EV_LOADED) {
				s->info = ev.info;
				s->ready = true;
				logf_(s, "model %s ready (%s, %s, context %u)", s->o.model_name, ev.info.arch, ev.info.quant,
				      ev.info.n_ctx);
				dispatch(s);
			} else if (ev.type == ENGINE_EV_ERROR) {
				snprintf(err, errlen, "%s", ev.message);
				engine_event_clear(&ev);
				return -1;
			}
		} else if (s->running && ev.request == s->running->req) {
			struct job *j = s->running;
			if (ev.type == ENGINE_EV_TOKEN) {
				job_token(s, j, ev.text, ev.text_len, ev.part == ENGINE_PART_REASONING);
			} else if (ev.type == ENGINE_EV_DONE || ev.type == ENGINE_EV_ERROR) {
				s->running = NULL;
				if (ev.type == ENGINE_EV_DONE)
					job_finish(s, j, 0, NULL, &ev.stats, ev.stop);
				else
					job_finish(s, j, ev.code < 0 ? ev.code : ENGINE_E_INVAL, ev.message, NULL, ENGINE_STOP_EOG);
				dispatch(s);
			}
		}
		engine_event_clear(&ev);
	}
	return 0;
}

/* ---- the server ------------------------------------------------------------------ */

struct server *serve_open(engine *e, const struct serve_opts *o, char *err, size_t errlen)
{
	struct server *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->e = e;
	s->o = *o;
	s->lfd = -1;
	if (!s->o.host)
		s->o.host = "127.0.0.1";
	if (s->o.max_queue < 0)
		s->o.max_queue = 16;
	if (s->o.max_clients <= 0)
		s->o.max_clients = 64;
	if (s->o.head_timeout_ms <= 0)
		s->o.head_timeout_ms = HEAD_TIMEOUT_MS;
	if (s->o.slots <= 0)
		s->o.slots = 8;
	if (!s->o.model_name)
		s->o.model_name = "ttychat";
	s->slots = calloc((size_t)s->o.slots, sizeof *s->slots);
	if (!s->slots || (o->api_key && !(s->key = strdup(o->api_key)))) {
		snprintf(err, errlen, "out of memory");
		serve_close(s);
		return NULL;
	}
	s->o.api_key = NULL;
	for (int i = 0; i < s->o.slots; i++)
		s->slots[i].conv = 0x5e7e000000000000ull + (uint64_t)i;

	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res = NULL;
	char port[16];
	snprintf(port, sizeof port, "%d", o->port);
	int rc = getaddrinfo(s->o.host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "--host %s: %s", s->o.host, gai_strerror(rc));
		serve_close(s);
		return NULL;
	}
	int last = 0;
	for (struct addrinfo *a = res; a && s->lfd < 0; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0) {
			last = errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
			last = errno;
			close(fd);
			continue;
		}
		s->lfd = fd;
	}
	freeaddrinfo(res);
	if (s->lfd < 0) {
		snprintf(err, errlen, "cannot listen on %s port %d: %s", s->o.host, o->port, strerror(last));
		serve_close(s);
		return NULL;
	}
	struct sockaddr_storage sa;
	socklen_t sl = sizeof sa;
	getsockname(s->lfd, (struct sockaddr *)&sa, &sl);
	s->port = sa.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
					   : ntohs(((struct sockaddr_in *)&sa)->sin_port);
	return s;
}

int serve_port(const struct server *s)
{
	return s->port;
}

/* One pass over connection C after poll(): read, parse a bounded number of
 * requests, write, time out.  False when C is to be closed. */
static bool conn_step(struct server *s, struct conn *c, double t)
{
	short re = c->revents;
	c->revents = 0;
	if ((re & (POLLIN | POLLHUP | POLLERR)) && conn_wants_read(c))
		conn_read(c);
	else if ((re & (POLLHUP | POLLERR)) && !(re & POLLIN))
		c->dead = true;
	int k = 0;
	while (k < PARSE_PER_PASS && parse_one(s, c))
		k++;
	if (k == PARSE_PER_PASS)
		s->more = true; /* the rest on the next pass, after everyone else */
	out_flush(c);
	bool idle = !c->busy && c->out_len == 0;
	size_t pending = c->in_len - c->in_off;
	bool late = c->head_done ? t - c->t_last > BODY_TIMEOUT_MS : t - c->t_head > s->o.head_timeout_ms;
	if (idle && pending > 0 && late && !c->close_after) {
		c->close_after = true;
		send_error(c, 408, "invalid_request_error", NULL, NULL, "request not complete in time");
		out_flush(c);
		c->dead = true;
	}
	if (idle && pending == 0 && t - c->t_last > IDLE_TIMEOUT_MS)
		c->dead = true;
	if (idle && (c->close_after || c->eof))
		c->dead = true; /* after a half-close, nothing more can come */
	return !c->dead;
}

/* At a stop: every open answer gets a proper end (a stream its [DONE] and
 * last chunk, a waiting request a 503), written for at most a second. */
static void serve_drain(struct server *s)
{
	if (s->running) {
		struct job *j = s->running;
		s->running = NULL;
		engine_cancel(s->e);
		job_finish(s, j, ENGINE_E_CANCELLED, "the server is shutting down", NULL, ENGINE_STOP_CANCELLED);
	}
	while (s->q_head) {
		struct job *j = s->q_head;
		s->q_head = j->next;
		s->n_queued--;
		job_finish(s, j, ENGINE_E_CANCELLED, "the server is shutting down", NULL, ENGINE_STOP_CANCELLED);
	}
	s->q_tail = NULL;
	double end = now_ms() + 1000;
	for (;;) {
		struct pollfd pf[64];
		nfds_t n = 0;
		for (size_t i = 0; i < s->n_conns && n < 64; i++) {
			out_flush(s->conns[i]);
			if (!s->conns[i]->dead && s->conns[i]->out_len > s->conns[i]->out_off)
				pf[n++] = (struct pollfd){.fd = s->conns[i]->fd, .events = POLLOUT};
		}
		double left = end - now_ms();
		if (n == 0 || left <= 0 || poll(pf, n, (int)left) <= 0)
			break;
	}
}

/* Fills PF[3...] for the connections; how many. */
static size_t poll_conns(struct server *s, struct pollfd *pf)
{
	for (size_t i = 0; i < s->n_conns; i++) {
		struct conn *c = s->conns[i];
		short ev = conn_wants_read(c) ? POLLIN : 0;
		if (c->out_len > c->out_off)
			ev |= POLLOUT;
		pf[3 + i] = (struct pollfd){.fd = c->fd, .events = ev};
	}
	return s->n_conns;
}

int serve_run(struct server *s, int load_req, int stop_fd, char *err, size_t errlen)
{
	struct pollfd *pf = NULL;
	size_t pf_cap = 0;
	int status = 0;
	for (;;) {
		size_t need = s->n_conns + 3;
		if (need > pf_cap) {
			struct pollfd *np = realloc(pf, need * 2 * sizeof *np);
			if (!np) {
				snprintf(err, errlen, "out of memory");
				status = -1;
				break;
			}
			pf = np;
			pf_cap = need * 2;
		}
		pf[0] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
		pf[1] = (struct pollfd){.fd = engine_event_fd(s->e), .events = POLLIN};
		bool resting = now_ms() < s->accept_paused;
		pf[2] = (struct pollfd){.fd = s->lfd, .events = resting ? 0 : POLLIN};
		size_t polled = poll_conns(s, pf);
		int n = poll(pf, 3 + polled, s->more ? 0 : resting ? 250 : 1000);
		s->more = false;
		if (n < 0 && errno != EINTR) {
			snprintf(err, errlen, "poll: %s", strerror(errno));
			status = -1;
			break;
		}
		for (size_t i = 0; i < polled; i++)
			s->conns[i]->revents = n > 0 ? pf[3 + i].revents : 0;
		if (n > 0 && (pf[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			serve_drain(s);
			break;
		}
		if (n > 0 && (pf[1].revents & POLLIN) && on_engine(s, load_req, err, errlen) != 0) {
			status = -1;
			break;
		}
		if (n > 0 && (pf[2].revents & POLLIN))
			accept_all(s);
		double t = now_ms();
		for (size_t i = 0; i < s->n_conns;) {
			if (!conn_step(s, s->conns[i], t))
				conn_close(s, i);
			else
				i++;
		}
		if (s->running == NULL)
			dispatch(s);
	}
	free(pf);
	return status;
}

void serve_close(struct server *s)
{
	if (!s)
		return;
	while (s->n_conns)
		conn_close(s, s->n_conns - 1);
	free(s->conns);
	if (s->running) {
		engine_cancel(s->e);
		job_free(s->running);
	}
	for (struct job *j = s->q_head; j;) {
		struct job *n = j->next;
		job_free(j);
		j = n;
	}
	for (int i = 0; s->slots && i < s->o.slots; i++)
		msgs_free(s->slots[i].msgs, s->slots[i].n);
	free(s->slots);
	if (s->key) {
		volatile char *k = s->key;
		for (size_t i = 0; k[i]; i++)
			k[i] = 0;
		free(s->key);
	}
	if (s->lfd >= 0)
		close(s->lfd);
	free(s);
}
