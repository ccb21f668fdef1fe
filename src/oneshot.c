/*
 * oneshot.c - `ttychat [-m MODEL] -p TEXT`, the scripted one-shot mode, and
 * the plain line chat (a terminal on stdin only).
 *
 * Both drive the engine through engine.h exactly as the TUI does: load,
 * submit the whole conversation, stream TOKEN events; and both decide the
 * model's settings through src/session.h as every front end does.  A
 * one-shot run is a straight line of small steps: the prompt (-p, stdin,
 * or both: stdin goes after the prompt) -> the history (only with --save /
 * --continue, through src/chats.h as the TUI keeps it) -> the model and
 * its settings -> load -> one reply -> exit status.  Each failure kind has
 * its own exit status (commands.h, ttychat(1)).
 *
 * Output is for pipes first: to a pipe or file only the model's text is
 * written, with terminal control characters removed (--json keeps every
 * byte, escaped); to a terminal controls are shown as visible symbols.
 * Diagnostics go to stderr and only with -v, except errors and the notice
 * that the context overflowed.  Nothing here waits for input that cannot
 * come: a closed stdin reads as empty, and with CI set (or no terminal)
 * there is neither an interactive chat nor a passphrase prompt.
 *
 * SIGINT (also SIGTERM, SIGHUP) cancels the engine from the handler; the
 * reply stops within one token, what was generated is printed (and saved
 * with --save), and the exit status is 128 + the signal (130 for Ctrl-C).
 * The full-screen chat is not started from here: main.c picks it
 * (chatopts_wants_tui()).
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "catalog.h"
#include "chatopts.h"
#include "chats.h"
#include "commands.h"
#include "termsafe.h"
#include "engine.h"
#include "history.h"
#include "passphrase.h"
#include "session.h"
#include "text.h"

#define PROMPT_MAX ((size_t)64 << 20) /* bytes of prompt read from stdin */

/* signal flags: the only mutable globals (DESIGN: signal handlers only set
 * a flag, or cancel the engine, which is async-signal-safe) */
static volatile sig_atomic_t got_signal;
static engine *volatile sig_engine;

static void on_signal(int sig)
{
	got_signal = sig;
	engine *e = sig_engine;
	if (e)
		engine_cancel(e);
}

/* ---- output ---------------------------------------------------------------- */

/* Writes model text.  To a terminal, C0/C1 controls (but newline and tab)
 * become visible symbols; to anything else they are dropped, so that
 * piped output never carries escape sequences.  Pieces are whole UTF-8
 * characters (the engine guarantees it), so a C1 control never straddles
 * two calls. */
static void put_text_to(FILE *f, const char *s, size_t n, bool tty)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n' || c == '\t') {
			putc(c, f);
		} else if (c < 0x20 || c == 0x7f) {
			if (tty) {
				/* U+2400 block: "control pictures" */
				unsigned cp = c == 0x7f ? 0x2421 : 0x2400 + c;
				putc((int)(0xe0 | (cp >> 12)), f);
				putc((int)(0x80 | ((cp >> 6) & 0x3f)), f);
				putc((int)(0x80 | (cp & 0x3f)), f);
			}
		} else if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
			   (unsigned char)s[i + 1] < 0xa0) {
			/* C1 controls (U+0080..U+009F) */
			if (tty)
				fputs("\xef\xbf\xbd", f);
			i++;
		} else {
			putc(c, f);
		}
	}
}

static void put_text(const char *s, size_t n, bool tty)
{
	put_text_to(stdout, s, n, tty);
}

/* One JSON line.  cJSON escapes C0 controls; DEL and the C1 controls
 * (U+0080..U+009F, which some terminals obey) are escaped here too, so
 * JSON output carries no control bytes either.  Outside strings they
 * cannot occur. */
static void json_print(cJSON *o)
{
	char *t = o ? cJSON_PrintUnformatted(o) : NULL;
	if (t) {
		for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
			if (*p == 0x7f)
				fputs("\\u007f", stdout);
			else if (*p == 0xc2 && p[1] >= 0x80 && p[1] < 0xa0)
				printf("\\u00%02x", p[1]), p++;
			else
				putchar(*p);
		}
		putchar('\n');
		fflush(stdout);
	}
	free(t);
	cJSON_Delete(o);
}

/* Why the reasoning ended, for the summary ("" when the model ended it). */
static const char *reasoning_end_name(enum engine_reasoning_end r)
{
	switch (r) {
	case ENGINE_REASONING_END_MODEL: return "";
	case ENGINE_REASONING_END_BUDGET: return "budget";
	case ENGINE_REASONING_END_NOW: return "answer-now";
	case ENGINE_REASONING_END_LOOP: return "loop";
	case ENGINE_REASONING_END_OFF: return "think-off";
	}
	return "?";
}

/* Model text S[0..N) as the string KEY of J: a NUL byte (cJSON strings
 * end at one) becomes U+FFFD, so that every piece and the summary keep
 * the same characters. */
static void json_add_text(cJSON *j, const char *key, const char *s, size_t n)
{
	size_t nul = 0;
	for (size_t i = 0; i < n; i++)
		nul += s[i] == '\0';
	char *t = malloc(n + 2 * nul + 1);
	if (!t) {
		cJSON_AddStringToObject(j, key, "");
		return;
	}
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\0') {
			memcpy(t + o, "\xef\xbf\xbd", 3);
			o += 3;
		} else {
			t[o++] = s[i];
		}
	}
	t[o] = '\0';
	cJSON_AddStringToObject(j, key, t);
	free(t);
}

static const char *stop_name(enum engine_stop_reason r)
{
	switch (r) {
	case ENGINE_STOP_EOG: return "eog";
	case ENGINE_STOP_LENGTH: return "length";
	case ENGINE_STOP_STRING: return "stop";
	case ENGINE_STOP_CANCELLED: return "cancelled";
	case ENGINE_STOP_CONTEXT: return "context";
	}
	return "?";
}

/* An error as the last line of a JSON run (the message also goes to
 * stderr). */
static void json_error(const struct chat_opts *o, int status, const char *msg, const char *partial)
{
	if (o->out == CHAT_OUT_TEXT)
		return;
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "type", "error");
	cJSON_AddStringToObject(j, "message", msg);
	cJSON_AddNumberToObject(j, "exit", status);
	if (partial)
		cJSON_AddStringToObject(j, "text", partial);
	json_print(j);
}

/* Prints "ttychat: MSG" on stderr and, in JSON modes, an error object;
 * returns STATUS. */
static int fail(const struct chat_opts *o, int status, const char *msg)
{
	fprintf(stderr, "ttychat: %s\n", msg);
	json_error(o, status, msg, NULL);
	return status;
}

/* ---- the conversation ------------------------------------------------------- */

struct convo {
	struct engine_msg *m;
	size_t n, cap;
};

static int convo_add(struct convo *c, const char *role, const char *content)
{
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 8;
		struct engine_msg *nm = realloc(c->m, nc * sizeof *nm);
		if (!nm)
			return -1;
		c->m = nm;
		c->cap = nc;
	}
	char *r = strdup(role), *t = strdup(content);
	if (!r || !t) {
		free(r);
		free(t);
		return -1;
	}
	c->m[c->n].role = r;
	c->m[c->n].content = t;
	c->n++;
	return 0;
}

/* Appends TEXT to the last message (two user turns in a row, left by a
 * reply that failed, are sent as one). */
static int convo_extend_last(struct convo *c, const char *text)
{
	const char *old = c->m[c->n - 1].content;
	size_t a = strlen(old), b = strlen(text);
	char *t = malloc(a + b + 3);
	if (!t)
		return -1;
	memcpy(t, old, a);
	memcpy(t + a, "\n\n", 2);
	memcpy(t + a + 2, text, b + 1);
	free((char *)old);
	c->m[c->n - 1].content = t;
	return 0;
}

static void convo_free(struct convo *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free((char *)c->m[i].role);
		free((char *)c->m[i].content);
	}
	free(c->m);
	c->m = NULL;
	c->n = c->cap = 0;
}

/* ---- engine ------------------------------------------------------------------ */

static bool wait_loaded(engine *e, int req, const char *path, bool verbose, struct engine_model_info *info,
			char *err, size_t errlen)
{
	struct engine_event ev;
	for (;;) {
		if (!engine_event_wait(e, &ev, -1))
			continue;
		if (ev.request != req) {
			engine_event_clear(&ev);
			continue;
		}
		if (ev.type == ENGINE_EV_LOADED) {
			*info = ev.info;
			engine_event_clear(&ev);
			return true;
		}
		if (ev.type == ENGINE_EV_ERROR) {
			snprintf(err, errlen, "%s", ev.message);
			engine_event_clear(&ev);
			return false;
		}
		if (verbose && ev.type == ENGINE_EV_LOAD_PROGRESS)
			fprintf(stderr, "loading %s: %3.0f%%\n", path, ev.progress * 100.0);
		engine_event_clear(&ev);
	}
}

/* The answer to request REQ (the first event of it that is not progress). */
static void wait_answer(engine *e, int req, struct engine_event *out)
{
	for (;;) {
		if (!engine_event_wait(e, out, -1))
			continue;
		if (out->request == req && out->type != ENGINE_EV_LOAD_PROGRESS &&
		    out->type != ENGINE_EV_PREFILL_PROGRESS)
			return;
		engine_event_clear(out);
	}
}

/* The answer (text) and, apart, the reasoning (think). */
struct reply {
	char *text;
	size_t len, cap;
	char *think;
	size_t think_len, think_cap;
	bool shown_split;          /* --show-reasoning: the newline after it went out */
	bool oom;
	enum engine_stop_reason stop;
	struct engine_stats stats;
	bool failed;
	char error[512];
};

static void buf_add(struct reply *r, char **text, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (r->oom)
		return;
	if (*len + n + 1 > *cap) {
		size_t nc = *cap ? *cap : 1024;
		while (nc < *len + n + 1)
			nc *= 2;
		char *nt = realloc(*text, nc);
		if (!nt) {
			r->oom = true;
			return;
		}
		*text = nt;
		*cap = nc;
	}
	memcpy(*text + *len, s, n);
	*len += n;
	(*text)[*len] = '\0';
}

static void reply_add(struct reply *r, const char *s, size_t n)
{
	buf_add(r, &r->text, &r->len, &r->cap, s, n);
}

/* One piece of the reply: kept, and written in mode OUT.  Reasoning goes
 * to stderr with SHOW, never to stdout's text. */
static void emit_piece(struct reply *r, enum chat_out out, bool tty, const char *text, size_t len, int32_t id,
		       enum engine_part part, bool show)
{
	if (part == ENGINE_PART_REASONING) {
		buf_add(r, &r->think, &r->think_len, &r->think_cap, text, len);
		if (show) {
			put_text_to(stderr, text, len, isatty(STDERR_FILENO));
			fflush(stderr);
		}
	} else {
		reply_add(r, text, len);
	}
	if (out == CHAT_OUT_TEXT) {
		if (part == ENGINE_PART_ANSWER) {
			if (show && r->think_len && !r->shown_split) {
				/* the reasoning on stderr ends before the answer starts */
				fputc('\n', stderr);
				r->shown_split = true;
			}
			put_text(text, len, tty);
			fflush(stdout);
		}
	} else if (out == CHAT_OUT_JSON_LINES) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "type", "token");
		cJSON_AddStringToObject(j, "part", part == ENGINE_PART_REASONING ? "reasoning" : "answer");
		json_add_text(j, "text", text, len);
		cJSON_AddNumberToObject(j, "id", id);
		json_print(j);
	}
}

/* Streams one reply of request REQ to stdout in mode OUT (the final JSON
 * object is the caller's).  INJECT (the TTYCHAT_TEST_INJECT test hook, or
 * NULL) goes first, as if the model had produced it.  Returns when the
 * reply is done, failed or stopped. */
static void stream_reply(engine *e, int req, enum chat_out out, bool verbose, bool show, const char *inject,
			 size_t inject_len, struct reply *r)
{
	bool tty = isatty(STDOUT_FILENO);
	struct engine_event ev;
	r->stop = ENGINE_STOP_EOG;
	reply_add(r, "", 0);
	if (inject && inject_len)
		emit_piece(r, out, tty, inject, inject_len, -1, ENGINE_PART_ANSWER, show);
	for (;;) {
		if (!engine_event_wait(e, &ev, -1))
			continue;
		if (ev.request != req) {
			engine_event_clear(&ev);
			continue;
		}
		switch (ev.type) {
		case ENGINE_EV_TOKEN:
			emit_piece(r, out, tty, ev.text, ev.text_len, ev.token, ev.part, show);
			break;
		case ENGINE_EV_CONTEXT_SHIFT:
			fprintf(stderr, "ttychat: %s\n", ev.message);
			if (out == CHAT_OUT_JSON_LINES) {
				cJSON *j = cJSON_CreateObject();
				cJSON_AddStringToObject(j, "type", "context_shift");
				cJSON_AddNumberToObject(j, "dropped_turns", ev.dropped_turns);
				cJSON_AddStringToObject(j, "message", ev.message);
				json_print(j);
			}
			break;
		case ENGINE_EV_PREFILL_PROGRESS:
			if (verbose)
				fprintf(stderr, "prefill: %3.0f%%\n", ev.progress * 100.0);
			break;
		case ENGINE_EV_NOTICE:
			fprintf(stderr, "ttychat: %s\n", ev.message);
			break;
		case ENGINE_EV_DONE:
			r->stop = ev.stop;
			r->stats = ev.stats;
			engine_event_clear(&ev);
			return;
		case ENGINE_EV_ERROR:
			r->failed = true;
			if (ev.code == ENGINE_E_CANCELLED)
				r->stop = ENGINE_STOP_CANCELLED;
			snprintf(r->error, sizeof r->error, "%s", ev.message);
			engine_event_clear(&ev);
			return;
		default:
			break;
		}
		engine_event_clear(&ev);
	}
}

static void print_stats(const struct engine_stats *s)
{
	fprintf(stderr,
		"[prompt %u tokens (%u reused, %u computed) %.1f tok/s | reply %u tokens %.1f tok/s | "
		"first token %.0f ms | context %u/%u]\n",
		s->prompt_tokens, s->prompt_reused, s->prompt_computed, s->prefill_tps, s->gen_tokens, s->decode_tps,
		s->ttft_ms, s->ctx_used, s->ctx_size);
	if (s->grammar_setup_ms > 0)
		fprintf(stderr, "[grammar: %.1f ms to compile | %.1f ms of %.0f ms decoding (%.1f%%) | vocabulary masked %u times]\n",
			s->grammar_setup_ms, s->grammar_ms, s->decode_ms,
			s->decode_ms > 0 ? 100.0 * s->grammar_ms / s->decode_ms : 0.0, s->grammar_masks);
	if (s->spec_passes)
		fprintf(stderr, "[speculative (%s): %u passes, %u of %u guesses accepted (%.0f%%), %.2f tokens per pass, "
				"speed-up %.2fx%s]\n",
			s->spec, s->spec_passes, s->spec_accepted, s->spec_drafted,
			s->spec_drafted ? 100.0 * s->spec_accepted / s->spec_drafted : 0.0,
			(double)(s->spec_accepted + s->spec_passes) / s->spec_passes, s->spec_speedup,
			s->spec_paused ? "; paused: it did not pay" : "");
	if (s->reasoning_tokens)
		fprintf(stderr, "[reasoning %u tokens, answer %u tokens%s%s]\n", s->reasoning_tokens,
			s->gen_tokens - s->reasoning_tokens, s->reasoning_end ? ", reasoning ended by " : "",
			reasoning_end_name(s->reasoning_end));
}

static cJSON *stats_json(const struct engine_stats *s)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddNumberToObject(j, "prompt_tokens", s->prompt_tokens);
	cJSON_AddNumberToObject(j, "prompt_reused", s->prompt_reused);
	cJSON_AddNumberToObject(j, "prompt_computed", s->prompt_computed);
	cJSON_AddNumberToObject(j, "gen_tokens", s->gen_tokens);
	cJSON_AddNumberToObject(j, "reasoning_tokens", s->reasoning_tokens);
	if (s->reasoning_end)
		cJSON_AddStringToObject(j, "reasoning_end", reasoning_end_name(s->reasoning_end));
	cJSON_AddNumberToObject(j, "prefill_tps", s->prefill_tps);
	cJSON_AddNumberToObject(j, "decode_tps", s->decode_tps);
	cJSON_AddNumberToObject(j, "ttft_ms", s->ttft_ms);
	cJSON_AddNumberToObject(j, "prefill_ms", s->prefill_ms);
	cJSON_AddNumberToObject(j, "decode_ms", s->decode_ms);
	cJSON_AddNumberToObject(j, "ctx_used", s->ctx_used);
	cJSON_AddNumberToObject(j, "ctx_size", s->ctx_size);
	cJSON_AddNumberToObject(j, "weights_bytes", (double)s->weights_bytes);
	cJSON_AddNumberToObject(j, "kv_bytes", (double)s->kv_bytes);
	if (s->grammar_setup_ms > 0) {
		cJSON_AddNumberToObject(j, "grammar_setup_ms", s->grammar_setup_ms);
		cJSON_AddNumberToObject(j, "grammar_ms", s->grammar_ms);
		cJSON_AddNumberToObject(j, "grammar_masks", s->grammar_masks);
	}
	if (s->spec[0]) {
		cJSON *sp = cJSON_AddObjectToObject(j, "speculative");
		cJSON_AddStringToObject(sp, "drafter", s->spec);
		cJSON_AddNumberToObject(sp, "passes", s->spec_passes);
		cJSON_AddNumberToObject(sp, "drafted", s->spec_drafted);
		cJSON_AddNumberToObject(sp, "accepted", s->spec_accepted);
		cJSON_AddNumberToObject(sp, "acceptance", s->spec_drafted ? (double)s->spec_accepted / s->spec_drafted : 0);
		cJSON_AddNumberToObject(sp, "tokens_per_pass",
					s->spec_passes ? (double)(s->spec_accepted + s->spec_passes) / s->spec_passes : 0);
		cJSON_AddNumberToObject(sp, "speedup", s->spec_speedup);
		cJSON_AddBoolToObject(sp, "paused", s->spec_paused);
		if (s->draft_bytes)
			cJSON_AddNumberToObject(sp, "draft_bytes", (double)s->draft_bytes);
	}
	if (s->vram_total) {
		cJSON_AddNumberToObject(j, "vram_total", (double)s->vram_total);
		cJSON_AddNumberToObject(j, "vram_free", (double)s->vram_free);
		cJSON_AddNumberToObject(j, "vram_ours", (double)s->vram_ours);
	}
	return j;
}

/* ---- the one-shot run ------------------------------------------------------------ */

struct run {
	struct chat_opts *o;
	char *system_flag;     /* --system's text (malloc'd) or NULL */
	char *grammar;         /* --grammar's text, or --json-schema's or --tools' grammar (malloc'd), or NULL */
	/* --tools: the template variables ({"tools": [...]}), the model's call
	 * format, the call opener when the grammar is lazy (tool choice auto),
	 * and the reply's calls once parsed (OpenAI tool_calls) */
	char *tools_vars;
	char *tools_text;      /* the tools array as read */
	char *tool_fmt;
	const char *tool_trigger;
	cJSON *calls;
	char *content;
	char *stdin_text;
	char *prompt;          /* the user message (malloc'd); NULL for the line chat */
	struct chats *hist;    /* --save / --continue */
	struct passphrase_src pass;
	char pass_err[256];
	struct chats_settings held; /* the continued conversation's settings */
	struct engine_gen_opts g;  /* the reply's options (thinking settings are saved from it) */
	bool continued;
	struct session_decision d; /* settings.json, the model's entry, the settings */
	struct convo cv;
	engine *e;
	struct engine_model_info info;
	char err[1024];
};

/* Reads stdin to its end into r->stdin_text.  0 or an exit status; WHAT
 * names it in messages. */
static int read_stdin(struct run *r, const char *what)
{
	char msg[256];
	size_t len;
	int e = chatopts_read_fd(STDIN_FILENO, PROMPT_MAX, &got_signal, &r->stdin_text, &len);
	if (e == EINTR)
		return 128 + got_signal;
	if (e) {
		snprintf(msg, sizeof msg, "cannot read %s: %s", what, e == EFBIG ? "more than 64 MiB" : strerror(e));
		return fail(r->o, EXIT_FAIL, msg);
	}
	if (strlen(r->stdin_text) != len) {
		snprintf(msg, sizeof msg, "%s contains NUL bytes (not text)", what);
		return fail(r->o, EXIT_FAIL, msg);
	}
	return 0;
}

/* The user message: -p TEXT, stdin ("-p -", or a pipe after TEXT or
 * alone).  Decided before anything slow.  0 with r->prompt, 0 without
 * one for the line chat (a terminal on stdin), or an exit status. */
static int read_prompt(struct run *r)
{
	const struct chat_opts *o = r->o;
	int st;
	if (o->prompt && strcmp(o->prompt, "-") == 0) {
		if ((st = read_stdin(r, "the prompt from stdin")))
			return st;
		if (!r->stdin_text[0])
			return fail(o, EXIT_USAGE, "-p -: stdin is empty");
		r->prompt = strdup(r->stdin_text);
	} else if (!isatty(STDIN_FILENO)) {
		/* a pipe or file: its text is (or follows) the prompt; a closed
		 * or /dev/null stdin reads as empty at once */
		if ((st = read_stdin(r, "stdin")))
			return st;
		size_t len = strlen(r->stdin_text);
		if (o->prompt && len) {
			size_t a = strlen(o->prompt);
			if ((r->prompt = malloc(a + len + 3))) {
				memcpy(r->prompt, o->prompt, a);
				memcpy(r->prompt + a, "\n\n", 2);
				memcpy(r->prompt + a + 2, r->stdin_text, len + 1);
			}
		} else if (o->prompt || len) {
			r->prompt = strdup(o->prompt ? o->prompt : r->stdin_text);
		} else {
			return fail(o, EXIT_USAGE, "no prompt: give -p TEXT or text on stdin");
		}
	} else if (o->prompt) {
		r->prompt = strdup(o->prompt);
	} else if (o->out != CHAT_OUT_TEXT || o->save || o->continue_id || o->f.raw || chatopts_in_ci()) {
		return fail(o, EXIT_USAGE, chatopts_in_ci() ? "no prompt: give -p TEXT or text on stdin (CI is set: no interactive chat)"
							    : "no prompt: give -p TEXT or text on stdin");
	} else {
		return 0; /* the line chat */
	}
	return r->prompt ? 0 : fail(o, EXIT_FAIL, "out of memory");
}

static bool env_set(const char *name)
{
	const char *v = getenv(name);
	return v && v[0];
}

/* The history's passphrase: passphrase_get(), but in CI never from the
 * terminal. */
static int hist_pass(void *ctx, enum chats_pass why, char *buf, size_t cap)
{
	struct run *r = ctx;
	r->pass_err[0] = '\0';
	if (chatopts_in_ci()) {
		bool have = env_set("TTYCHAT_PASSPHRASE_FD") || env_set("TTYCHAT_PASSPHRASE_FILE") ||
			    (why == CHATS_PASS_NEW &&
			     (env_set("TTYCHAT_NEW_PASSPHRASE_FD") || env_set("TTYCHAT_NEW_PASSPHRASE_FILE")));
		if (!have) {
			snprintf(r->pass_err, sizeof r->pass_err,
				 "the history needs a passphrase and CI is set: give it in TTYCHAT_PASSPHRASE_FILE or TTYCHAT_PASSPHRASE_FD");
			return -1;
		}
	}
	int rc = passphrase_get(&r->pass, why == CHATS_PASS_NEW ? HISTORY_PASS_NEW : HISTORY_PASS_UNLOCK, buf, cap);
	if (rc != 0)
		snprintf(r->pass_err, sizeof r->pass_err, "%s", r->pass.err);
	return rc;
}

/* --save / --continue: the store, and the conversation continued.  First
 * of all, so that a wrong passphrase fails before the model loads. */
static int open_history(struct run *r)
{
	const struct chat_opts *o = r->o;
	if (!r->prompt || (!o->save && !o->continue_id))
		return 0;
	passphrase_src_init(&r->pass);
	struct chats_opts co = {.passphrase = hist_pass, .pass_ctx = r, .no_create = !o->save, .no_remember = true};
	char msg[512];
	int rc = chats_open(&co, &r->hist, msg, sizeof msg);
	if (got_signal)
		return 128 + got_signal;
	if (rc != 0) {
		snprintf(r->err, sizeof r->err, "history: %s", rc == CHATS_E_CANCELLED && r->pass_err[0] ? r->pass_err : msg);
		return fail(o, rc == HISTORY_E_NOMEM ? EXIT_FAIL : EXIT_HISTORY, r->err);
	}
	if (!o->continue_id)
		return 0;
	rc = chats_load(r->hist, o->continue_id);
	if (rc < 0) {
		snprintf(r->err, sizeof r->err, "history: %s", chats_errmsg(r->hist));
		return fail(o, rc == HISTORY_E_NOMEM ? EXIT_FAIL : EXIT_HISTORY, r->err);
	}
	r->continued = true;
	chats_settings_of(r->hist, &r->held);
	return 0;
}

/* The model and its settings (src/session.h): flags > the continued
 * conversation > models.d > settings.json > defaults. */
static int decide_settings(struct run *r)
{
	static const int status[] = {
		[SESSION_E_SETTINGS] = EXIT_FAIL, [SESSION_E_NAME] = EXIT_USAGE,
		[SESSION_E_MODEL] = EXIT_MODEL, [SESSION_E_NOMEM] = EXIT_FAIL,
	};
	struct chat_opts *o = r->o;
	int st = session_decide(&o->f, r->continued ? &r->held : NULL, &r->d, r->err, sizeof r->err);
	if (r->d.prefs.d.warnings[0] && o->verbose)
		fprintf(stderr, "ttychat: warning: %s\n", r->d.prefs.d.warnings);
	if (r->d.have_me && r->d.me.warnings[0] && o->verbose)
		fprintf(stderr, "ttychat: warning: %s\n", r->d.me.warnings);
	if (st != SESSION_DECIDED)
		return fail(o, status[st], r->err);
	unsigned advised = session_fields_of(&r->d.cfg, SESSION_FILE);
	if (advised && o->verbose) {
		char names[64];
		session_fields_str(advised, names, sizeof names);
		fprintf(stderr, "ttychat: sampling as the model file advises: %s\n", names);
	}
	return 0;
}

static int load_model(struct run *r)
{
	const struct chat_opts *o = r->o;
	char msg[4400];
	struct engine_params ep = {.n_threads = r->d.cfg.n_threads};
	r->e = engine_create(&ep, r->err, sizeof r->err);
	if (!r->e)
		return fail(o, EXIT_FAIL, r->err);
	sig_engine = r->e;
	if (got_signal)
		return 128 + got_signal;
	int req = engine_load(r->e, r->d.me.path, &r->d.cfg.load);
	if (req <= 0) {
		snprintf(msg, sizeof msg, "%s: %s", r->d.me.path, engine_last_error(r->e));
		return fail(o, EXIT_MODEL, msg);
	}
	if (got_signal)
		engine_cancel(r->e);
	if (!wait_loaded(r->e, req, r->d.me.path, o->verbose, &r->info, r->err, sizeof r->err)) {
		if (got_signal)
			return 128 + got_signal;
		return fail(o, EXIT_MODEL, r->err);
	}
	/* CUDA asked for but not usable, or fewer GPU layers: one line */
	if (r->info.notice[0])
		fprintf(stderr, "ttychat: %s\n", r->info.notice);
	if (o->verbose)
		fprintf(stderr, "model: %s (%s, %s, %.0fM params), context %u, template %s, on %s\n", r->info.name,
			r->info.arch, r->info.quant, (double)r->info.n_params / 1e6, r->info.n_ctx,
			r->d.me.template_text ? "from models.d" : r->info.template_family, r->info.backend);
	return 0;
}

/* Builds the messages: system, the saved ones (for --continue), the
 * prompt.  Two user messages in a row (a saved turn whose reply failed)
 * are sent as one. */
static int build_convo(struct run *r)
{
	if (r->d.cfg.system && convo_add(&r->cv, "system", r->d.cfg.system))
		return -1;
	size_t n = r->continued ? chats_count(r->hist) : 0;
	for (size_t i = 0; i <= n; i++) {
		const char *role = "user", *text = r->prompt;
		if (i < n) {
			const struct chats_msg *m = chats_msg(r->hist, i);
			role = m->role == CHATS_ASSISTANT ? "assistant" : "user";
			text = m->text;
		}
		bool merge = r->cv.n > 0 && strcmp(role, "user") == 0 && strcmp(r->cv.m[r->cv.n - 1].role, "user") == 0;
		if (merge ? convo_extend_last(&r->cv, text) : convo_add(&r->cv, role, text))
			return -1;
	}
	return 0;
}

/* Commits a message to the history; 0 or an exit status.  A message the
 * store keeps in memory for a later retry (a full disk) is a failure here:
 * one-shot mode has no later. */
static int save_msg(struct run *r, enum chats_role role, const char *text, size_t len, const char *reasoning,
		    size_t rlen, bool cancelled)
{
	const struct engine_sampling *s = &r->d.cfg.sampling;
	struct chats_settings m = {
		.model = r->d.me.source[0] ? r->d.me.name : r->d.me.path,
		.system_prompt = r->d.cfg.system,
		.temperature = s->temperature,
		.top_k = s->top_k,
		.top_p = s->top_p,
		.min_p = s->min_p,
		.repeat_penalty = s->repeat_penalty,
		.context_size = r->info.n_ctx,
		.think = (int)r->g.think,
		.reasoning_effort = r->g.reasoning_effort,
		.reasoning_budget = r->g.reasoning_budget > 0 ? (unsigned)r->g.reasoning_budget : 0,
	};
	int rc = chats_commit_reasoned(r->hist, &m, role, text, len, reasoning, rlen, cancelled);
	if (rc == 0)
		return 0;
	snprintf(r->err, sizeof r->err, "history: cannot save%s: %s", role == CHATS_USER ? "" : " the reply",
		 chats_errmsg(r->hist));
	return rc == HISTORY_E_NOMEM ? EXIT_FAIL : EXIT_HISTORY;
}

/* A continued conversation's KV cache: only the new turn is prefilled. */
static void kv_restore(struct run *r)
{
	void *blob;
	size_t len;
	if (!r->continued || chats_kv_load(r->hist, r->info.model_id, &blob, &len) != 0)
		return;
	int req = engine_conv_import(r->e, 1, blob, len);
	free(blob);
	if (req <= 0)
		return;
	struct engine_event ev;
	wait_answer(r->e, req, &ev);
	if (r->o->verbose)
		fprintf(stderr, "KV snapshot: %u tokens restored%s%s\n", ev.position, ev.position ? "" : ": ",
			ev.position ? "" : ev.message);
	engine_event_clear(&ev);
}

/* The KV cache for the next --continue (only a cache: a failure is no
 * error). */
static void kv_file(struct run *r)
{
	int xr = engine_conv_export(r->e, 1);
	if (xr <= 0)
		return;
	struct engine_event ev;
	wait_answer(r->e, xr, &ev);
	if (ev.type == ENGINE_EV_CONV_EXPORT && ev.blob_len &&
	    chats_kv_save(r->hist, chats_id(r->hist), r->info.model_id, ev.blob, ev.blob_len) != 0 && r->o->verbose)
		fprintf(stderr, "ttychat: %s\n", chats_errmsg(r->hist));
	engine_event_clear(&ev);
}

/* The generation options of the flags. */
static void gen_opts(const struct chat_opts *o, struct engine_gen_opts *g)
{
	*g = (struct engine_gen_opts){.max_tokens = o->n_predict, .add_generation_prompt = true, .raw = o->f.raw,
				      .stop = o->n_stop ? o->stop : NULL, .think = (enum engine_think)o->think,
				      .reasoning_effort = o->reasoning_effort,
				      .reasoning_budget = o->reasoning_budget, .ignore_eos = o->ignore_eos};
}

/* The last line of a JSON run. */
static void json_summary(struct run *r, const struct reply *rep, bool cancelled, int status)
{
	const char *conv_id = r->hist ? chats_id(r->hist) : NULL;
	if (rep->failed && !cancelled) {
		json_error(r->o, status, rep->error, rep->text ? rep->text : "");
		return;
	}
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "type", "done");
	json_add_text(j, "text", rep->text, rep->len);
	/* the answer and the reasoning apart ("text" is the answer too, and
	 * "content" is it without the tool calls) */
	if (r->calls)
		json_add_text(j, "content", r->content, strlen(r->content));
	else
		json_add_text(j, "content", rep->text, rep->len);
	if (r->calls)
		cJSON_AddItemToObject(j, "tool_calls", cJSON_Duplicate(r->calls, 1));
	json_add_text(j, "reasoning", rep->think, rep->think_len);
	cJSON_AddStringToObject(j, "stop", stop_name(cancelled ? ENGINE_STOP_CANCELLED : rep->stop));
	cJSON_AddNumberToObject(j, "exit", status);
	cJSON *m = cJSON_AddObjectToObject(j, "model");
	cJSON_AddStringToObject(m, "name", r->d.me.remote ? r->info.name : r->d.me.name);
	cJSON_AddStringToObject(m, "path", r->d.me.path);
	cJSON_AddStringToObject(m, "arch", r->info.arch);
	cJSON_AddStringToObject(m, "quant", r->info.quant);
	cJSON_AddStringToObject(m, "backend", r->info.backend);
	cJSON_AddItemToObject(j, "stats", stats_json(&rep->stats));
	if (conv_id)
		cJSON_AddStringToObject(j, "conversation", conv_id);
	json_print(j);
}

/* Whether a reply under --grammar completed it: the model ended its turn
 * where the grammar allowed it, and the text is a sentence of it (checked
 * again apart from the engine, unless the grammar names tokens, which text
 * cannot show).  False with the reason in ERR. */
static bool grammar_complete(const struct run *r, const struct reply *rep, char *err, size_t errlen)
{
	if (rep->stop != ENGINE_STOP_EOG) {
		snprintf(err, errlen, "the reply stopped (%s) before the grammar was complete", stop_name(rep->stop));
		return false;
	}
	char why[512] = "";
	int m = engine_grammar_match(r->grammar, strlen(r->grammar), rep->text ? rep->text : "", rep->len, why,
				     sizeof why);
	if (m == 0)
		snprintf(err, errlen, "the reply does not match the grammar: %s", why);
	return m != 0;
}

/* --tools FILE after the model loaded (its template decides the format):
 * the template variables and, unless --tool-choice none, the grammar that
 * makes the calls valid.  0 or an exit status with the message in r->err. */
static int read_tools(struct run *r)
{
	const struct chat_opts *o = r->o;
	const char *choice = o->tool_choice ? o->tool_choice : "auto";
	int fd = open(o->tools_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(r->err, sizeof r->err, "--tools: cannot read %s: %s", o->tools_file, strerror(errno));
		return EXIT_FAIL;
	}
	char *text = NULL;
	size_t len;
	int e = chatopts_read_fd(fd, (size_t)4 << 20, &got_signal, &text, &len);
	close(fd);
	if (e) {
		snprintf(r->err, sizeof r->err, "--tools: cannot read %s: %s", o->tools_file, strerror(e));
		return e == EINTR ? 128 + got_signal : EXIT_FAIL;
	}
	cJSON *tools = cJSON_ParseWithLength(text, len);
	int rc = EXIT_FAIL;
	if (!cJSON_IsArray(tools) || cJSON_GetArraySize(tools) == 0) {
		snprintf(r->err, sizeof r->err, "--tools %s: not a JSON list of tools", o->tools_file);
		goto out;
	}
	if (!r->info.tool_format[0]) {
		snprintf(r->err, sizeof r->err, "--tools: the chat template of %s cannot render tools (no tool-call "
						"format ttychat knows)", r->d.me.display_name);
		goto out;
	}
	cJSON *vars = cJSON_CreateObject();
	cJSON_AddItemToObject(vars, "tools", tools);
	tools = NULL;
	char *v = cJSON_PrintUnformatted(vars);
	cJSON_Delete(vars);
	r->tools_vars = v ? strdup(v) : NULL;
	cJSON_free(v);
	r->tool_fmt = strdup(r->info.tool_format);
	if (!r->tools_vars || !r->tool_fmt) {
		snprintf(r->err, sizeof r->err, "out of memory");
		goto out;
	}
	rc = 0;
	if (!strcmp(choice, "none"))
		goto out;
	/* harmony calls start with header tokens no grammar can force */
	bool lazy = !strcmp(choice, "auto") || !strcmp(r->tool_fmt, "harmony");
	const char *only = lazy || !strcmp(choice, "required") ? NULL : choice;
	char msg[512] = "";
	const char *trigger = NULL;
	int g = engine_tools_grammar(r->tool_fmt, text, len, only, true, &r->grammar, &trigger, msg, sizeof msg);
	if (g) {
		snprintf(r->err, sizeof r->err, "--tools %s: %s", o->tools_file, msg);
		rc = EXIT_FAIL;
		goto out;
	}
	if (lazy)
		r->tool_trigger = trigger;
out:
	cJSON_Delete(tools);
	if (rc == 0)
		r->tools_text = text;
	else
		free(text);
	return rc;
}

/* The calls in a --tools reply: the text without them goes to stdout,
 * then each call as one JSON line (OpenAI's tool_call object), unless the
 * output is JSON, whose summary carries them. */
static void print_calls(struct run *r, const struct reply *rep)
{
	char *calls = NULL;
	if (engine_tools_parse(r->tool_fmt, r->tools_text, rep->text ? rep->text : "", rep->len, &r->content, &calls))
		return;
	cJSON *arr = cJSON_Parse(calls);
	free(calls);
	if (cJSON_GetArraySize(arr) > 0) {
		r->calls = cJSON_CreateArray();
		int i = 0;
		for (const cJSON *x = arr->child; x; x = x->next, i++) {
			cJSON *tc = cJSON_CreateObject();
			char id[32];
			snprintf(id, sizeof id, "call_%d", i);
			const cJSON *mid = cJSON_GetObjectItemCaseSensitive(x, "id");
			cJSON_AddStringToObject(tc, "id", cJSON_IsString(mid) ? mid->valuestring : id);
			cJSON_AddStringToObject(tc, "type", "function");
			cJSON *f = cJSON_AddObjectToObject(tc, "function");
			cJSON_AddStringToObject(f, "name", cJSON_GetObjectItemCaseSensitive(x, "name")->valuestring);
			cJSON_AddStringToObject(f, "arguments", cJSON_GetObjectItemCaseSensitive(x, "arguments")->valuestring);
			cJSON_AddItemToArray(r->calls, tc);
		}
	}
	cJSON_Delete(arr);
	if (r->o->out != CHAT_OUT_TEXT)
		return;
	const char *t = r->calls ? r->content : rep->text ? rep->text : "";
	put_text(t, strlen(t), isatty(STDOUT_FILENO));
	if (t[0] && t[strlen(t) - 1] != '\n')
		putchar('\n');
	for (const cJSON *tc = r->calls ? r->calls->child : NULL; tc; tc = tc->next) {
		char *line = cJSON_PrintUnformatted(tc);
		if (line)
			printf("%s\n", line);
		cJSON_free(line);
	}
	fflush(stdout);
}

/* The reply to the prompt, streamed, saved and summed up. */
static int one_reply(struct run *r)
{
	const struct chat_opts *o = r->o;
	struct engine_gen_opts g;
	gen_opts(o, &g);
	g.spec = r->d.cfg.spec;
	g.draft_max = r->d.cfg.draft_max;
	g.grammar = r->grammar;
	g.grammar_trigger = r->tool_trigger;
	g.template_vars = r->tools_vars;
	if (r->d.have_me) {
		/* the models.d entry's thinking defaults (the conversation and the flags override them) */
		const struct model_entry *me = &r->d.me;
		if (!o->think && me->think)
			g.think = (enum engine_think)me->think;
		if (!o->reasoning_effort && me->reasoning_effort[0])
			g.reasoning_effort = me->reasoning_effort;
		if (!o->reasoning_budget && me->reasoning_budget > 0)
			g.reasoning_budget = me->reasoning_budget;
	}
	if (r->continued) {
		/* thinking as the conversation was held, unless the flags say */
		const struct chats_settings *h = &r->held;
		if (!o->think && (h->think == ENGINE_THINK_ON || h->think == ENGINE_THINK_OFF))
			g.think = (enum engine_think)h->think;
		if (!o->reasoning_effort && h->reasoning_effort && h->reasoning_effort[0])
			g.reasoning_effort = h->reasoning_effort;
		if (!o->reasoning_budget && h->reasoning_budget && h->reasoning_budget <= (1u << 24))
			g.reasoning_budget = (int32_t)h->reasoning_budget;
	}
	r->g = g;
	if (build_convo(r))
		return fail(o, EXIT_FAIL, "out of memory");
	int st = r->hist ? save_msg(r, CHATS_USER, r->prompt, strlen(r->prompt), NULL, 0, false) : 0;
	if (st)
		return fail(o, st, r->err);
	kv_restore(r);

	int req = engine_submit(r->e, 1, r->cv.m, r->cv.n, &r->d.cfg.sampling, &g);
	if (req <= 0) {
		snprintf(r->err, sizeof r->err, "cannot submit: %s", engine_last_error(r->e));
		return fail(o, EXIT_GENERATE, r->err);
	}
	if (got_signal)
		engine_cancel(r->e);
	struct reply rep = {0};
	const char *inj = getenv("TTYCHAT_TEST_INJECT");
	size_t inject_len = 0;
	char *inject = inj && inj[0] ? text_unescape(inj, &inject_len) : NULL;
	/* with tools the text is printed once the calls are known */
	enum chat_out out = r->tool_fmt && o->out == CHAT_OUT_TEXT ? CHAT_OUT_JSON_FINAL : o->out;
	stream_reply(r->e, req, out, o->verbose, o->show_reasoning, inject, inject_len, &rep);
	free(inject);
	bool cancelled = rep.stop == ENGINE_STOP_CANCELLED || got_signal;
	int status = EXIT_OK;
	if (cancelled)
		status = got_signal ? 128 + got_signal : EXIT_INTERRUPT;
	else if (rep.failed)
		status = EXIT_GENERATE;
	if (rep.oom && status == EXIT_OK)
		status = EXIT_FAIL;
	char gerr[600] = "";
	/* a lazy grammar (tools, choice auto) need not be entered */
	if (r->grammar && !r->tool_trigger && status == EXIT_OK && !grammar_complete(r, &rep, gerr, sizeof gerr))
		status = EXIT_GENERATE;
	if (r->tool_fmt && !rep.failed)
		print_calls(r, &rep);

	if (o->out == CHAT_OUT_TEXT && !r->tool_fmt) {
		if (rep.len > 0 && (isatty(STDOUT_FILENO) || rep.text[rep.len - 1] != '\n'))
			putchar('\n');
		fflush(stdout);
	}
	if (rep.failed && !cancelled) {
		fprintf(stderr, "ttychat: %s\n", rep.error);
	} else {
		if (gerr[0])
			fprintf(stderr, "ttychat: %s: %s\n",
				o->grammar_file ? "--grammar" : o->schema_file ? "--json-schema" : "--tools", gerr);
		if (o->verbose)
			print_stats(&rep.stats);
	}

	if (r->hist) {
		int hs = rep.len ? save_msg(r, CHATS_ASSISTANT, rep.text, rep.len, rep.think, rep.think_len, cancelled) : 0;
		if (hs) {
			fprintf(stderr, "ttychat: %s\n", r->err);
			if (status == EXIT_OK)
				status = hs;
		}
		if (!hs && !rep.failed)
			kv_file(r);
	}
	const char *conv_id = r->hist ? chats_id(r->hist) : NULL;
	if (conv_id && (o->save || o->verbose) && o->out == CHAT_OUT_TEXT)
		fprintf(stderr, "ttychat: saved as conversation %s\n", conv_id);
	if (o->out != CHAT_OUT_TEXT)
		json_summary(r, &rep, cancelled, status);
	free(rep.text);
	free(rep.think);
	return status;
}

/* The plain line chat (stdin a terminal, stdout not). */
static int line_chat(struct run *r, const struct engine_gen_opts *g)
{
	struct chat_opts *o = r->o;
	/* stdout is not a terminal: it gets the replies only; the prompt, the
	 * echo and the notices go to the terminal on stderr */
	rl_outstream = termsafe_raw_stderr(); /* readline needs the terminal's descriptor */
	if (!isatty(STDERR_FILENO))
		rl_variable_bind("enable-bracketed-paste", "off");
	fprintf(stderr, "ttychat: chatting with %s. Ctrl-D or Ctrl-C at the prompt quits; Ctrl-C during a reply stops it.\n",
		r->d.me.display_name);
	int status = EXIT_OK;
	for (;;) {
		got_signal = 0;
		char *line = readline("> ");
		if (!line)
			break;
		if (!line[0]) {
			free(line);
			continue;
		}
		add_history(line);
		int rc = convo_add(&r->cv, "user", line);
		free(line);
		if (rc != 0)
			return fail(o, EXIT_FAIL, "out of memory");
		int req = engine_submit(r->e, 1, r->cv.m, r->cv.n, &r->d.cfg.sampling, g);
		struct reply rep = {0};
		if (req > 0)
			stream_reply(r->e, req, CHAT_OUT_TEXT, o->verbose, o->show_reasoning, NULL, 0, &rep);
		putchar('\n');
		if (req <= 0 || (rep.failed && rep.stop != ENGINE_STOP_CANCELLED)) {
			fprintf(stderr, "ttychat: %s\n", req <= 0 ? engine_last_error(r->e) : rep.error);
			free(rep.text);
			free(rep.think);
			status = EXIT_GENERATE;
			break;
		}
		if (o->verbose)
			print_stats(&rep.stats);
		if (rep.stop == ENGINE_STOP_CANCELLED)
			fprintf(stderr, "[stopped]\n");
		rc = convo_add(&r->cv, "assistant", rep.text ? rep.text : "");
		free(rep.text);
		free(rep.think);
		if (rc != 0)
			return fail(o, EXIT_FAIL, "out of memory");
	}
	return status;
}

/* Everything after the options; returns the exit status. */
static int run(struct run *r)
{
	int st = read_prompt(r);
	if (st)
		return st;
	if ((st = chatopts_read_system(r->o, &got_signal, &r->system_flag, r->err, sizeof r->err)))
		return st > 128 ? st : fail(r->o, st, r->err);
	if ((st = chatopts_read_grammar(r->o, &got_signal, &r->grammar, r->err, sizeof r->err)))
		return st > 128 ? st : fail(r->o, st, r->err);
	if ((st = open_history(r)) || (st = decide_settings(r)) || (st = load_model(r)))
		return st;
	if (r->o->tools_file && (st = read_tools(r)))
		return st > 128 ? st : fail(r->o, st, r->err);
	if (r->prompt)
		return one_reply(r);
	struct engine_gen_opts g;
	gen_opts(r->o, &g);
	g.spec = r->d.cfg.spec;
	g.draft_max = r->d.cfg.draft_max;
	g.grammar = r->grammar;
	g.raw = false;
	if (r->d.cfg.system && convo_add(&r->cv, "system", r->d.cfg.system))
		return fail(r->o, EXIT_FAIL, "out of memory");
	return line_chat(r, &g);
}

/* stdin, stdout and stderr open (on /dev/null if they were closed), so that
 * no descriptor the engine opens can take their place. */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
			int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
			if (n >= 0 && n != fd) {
				dup2(n, fd);
				close(n);
			}
		}
	}
}

int oneshot_main(struct chat_opts *o)
{
	ensure_std_fds();
	struct run *r = calloc(1, sizeof *r);
	if (!r) {
		fprintf(stderr, "ttychat: out of memory\n");
		return EXIT_FAIL;
	}
	r->o = o;
	got_signal = 0;
	struct sigaction sa = {.sa_handler = on_signal}, old[3];
	sigemptyset(&sa.sa_mask); /* no SA_RESTART: a blocked read must stop */
	static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, &old[i]);

	int status = run(r);

	fflush(stdout);
	sig_engine = NULL;
	if (r->e)
		engine_free(r->e);
	if (r->hist)
		chats_close(r->hist);
	convo_free(&r->cv);
	session_decision_free(&r->d);
	free(r->system_flag);
	free(r->grammar);
	free(r->tools_vars);
	free(r->tools_text);
	free(r->tool_fmt);
	free(r->content);
	cJSON_Delete(r->calls);
	free(r->stdin_text);
	free(r->prompt);
	free(r);
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &old[i], NULL);
	if (status == EXIT_OK && ferror(stdout)) {
		fprintf(stderr, "ttychat: error writing the output\n");
		status = EXIT_FAIL;
	}
	return status;
}
