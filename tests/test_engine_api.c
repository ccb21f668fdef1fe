/*
 * test_engine_api.c - the engine's threaded API on the real SmolLM2 model:
 * bad files, requests before and while loading, a sensible answer, KV reuse
 * across turns (same tokens as a from-scratch run), cancellation within a
 * token, two conversations alternating, and context overflow handling.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "testutil.h"

struct turn {
	char *text;
	struct engine_stats st;
	enum engine_stop_reason stop;
	int code;                 /* ENGINE_EV_ERROR code, 0 if none */
	char msg[512];
	unsigned shifts;          /* CONTEXT_SHIFT events seen */
	unsigned pieces;
};

/* Waits for the events of request REQ; cancels after CANCEL_AFTER pieces
 * when > 0. */
static void collect(engine *e, int req, int cancel_after, struct turn *t)
{
	memset(t, 0, sizeof *t);
	size_t len = 0;
	t->text = calloc(1, 1);
	struct engine_event ev;
	for (;;) {
		if (!engine_event_wait(e, &ev, 60000)) {
			snprintf(t->msg, sizeof t->msg, "timeout");
			t->code = -1000;
			return;
		}
		if (ev.request != req) {
			engine_event_clear(&ev);
			continue;
		}
		if (ev.type == ENGINE_EV_TOKEN) {
			t->text = realloc(t->text, len + ev.text_len + 1);
			memcpy(t->text + len, ev.text, ev.text_len);
			len += ev.text_len;
			t->text[len] = '\0';
			t->pieces++;
			if (cancel_after > 0 && t->pieces == (unsigned)cancel_after)
				engine_cancel(e);
		} else if (ev.type == ENGINE_EV_CONTEXT_SHIFT) {
			t->shifts++;
		} else if (ev.type == ENGINE_EV_DONE) {
			t->st = ev.stats;
			t->stop = ev.stop;
			return;
		} else if (ev.type == ENGINE_EV_ERROR) {
			t->code = ev.code;
			snprintf(t->msg, sizeof t->msg, "%s", ev.message);
			return;
		}
		engine_event_clear(&ev);
	}
}

static int load_wait(engine *e, const char *path, const struct engine_load_opts *lo, char *msg, size_t n)
{
	int req = engine_load(e, path, lo);
	struct engine_event ev;
	while (engine_event_wait(e, &ev, 60000)) {
		if (ev.request == req && ev.type == ENGINE_EV_LOADED)
			return 0;
		if (ev.request == req && ev.type == ENGINE_EV_ERROR) {
			snprintf(msg, n, "%s", ev.message);
			return ev.code;
		}
		engine_event_clear(&ev);
	}
	return -1000;
}

static struct engine_sampling greedy(void)
{
	struct engine_sampling s;
	engine_sampling_default(&s);
	s.temperature = 0;
	return s;
}

int main(void)
{
	char path[4096], err[512];
	if (!tu_model(SMOLLM2_FILE, path, sizeof path))
		tu_skip("SmolLM2 model not found (run scripts/fetch-models)");

	struct engine_params ep = {.n_threads = 2};
	engine *e = engine_create(&ep, err, sizeof err);
	CHECK(e != NULL, "engine_create: %s", err);
	if (!e)
		return tu_finish();
	struct engine_sampling s = greedy();
	struct engine_gen_opts g = {.max_tokens = 24, .add_generation_prompt = true};
	struct turn t;

	/* a submit before any model is an error event, not a crash */
	struct engine_msg q1[] = {{"user", "Tell me the capital of France."}};
	collect(e, engine_submit(e, 1, q1, 1, &s, &g), 0, &t);
	CHECK(t.code == ENGINE_E_NOMODEL, "submit without model: code %d", t.code);
	free(t.text);

	/* a file that is not GGUF: a one-line error naming it */
	char bad[] = "/tmp/ttychat-test-bad-XXXXXX";
	int fd = mkstemp(bad);
	CHECK(fd >= 0 && write(fd, "this is not a model file at all", 31) == 31, "mkstemp");
	close(fd);
	char msg[512] = "";
	int rc = load_wait(e, bad, NULL, msg, sizeof msg);
	CHECK(rc == ENGINE_E_FORMAT && strstr(msg, bad) && !strchr(msg, '\n'), "bad file: rc %d msg '%s'", rc, msg);
	unlink(bad);

	/* a request queued while the model loads runs after the load */
	int lreq = engine_load(e, path, NULL);
	int sreq = engine_submit(e, 1, q1, 1, &s, &g);
	CHECK(lreq > 0 && sreq > lreq, "request ids %d %d", lreq, sreq);
	collect(e, sreq, 0, &t);
	CHECK(t.code == 0, "submit while loading: %s", t.msg);
	CHECK(t.text && strstr(t.text, "Paris"), "capital of France: '%s'", t.text);
	CHECK(t.st.gen_tokens > 0 && t.st.decode_tps > 0 && t.st.ttft_ms > 0, "stats");
	CHECK(t.st.prompt_reused == 0 && t.st.prompt_computed == t.st.prompt_tokens, "first turn computes all");
	char *r1 = t.text;

	/* second turn: only the new tokens are prefilled */
	struct engine_msg q2[] = {{"user", "Tell me the capital of France."},
				  {"assistant", r1},
				  {"user", "And of Germany?"}};
	collect(e, engine_submit(e, 1, q2, 3, &s, &g), 0, &t);
	CHECK(t.code == 0, "turn 2: %s", t.msg);
	CHECK(t.st.prompt_reused > 0 && t.st.prompt_computed < 20 &&
	      t.st.prompt_reused + t.st.prompt_computed == t.st.prompt_tokens,
	      "turn 2 reuse: %u reused, %u computed of %u", t.st.prompt_reused, t.st.prompt_computed,
	      t.st.prompt_tokens);
	char *r2 = t.text;
	/* the same conversation from scratch in another slot gives the same reply */
	collect(e, engine_submit(e, 2, q2, 3, &s, &g), 0, &t);
	CHECK(t.st.prompt_reused == 0, "fresh conversation reuses nothing");
	CHECK(t.text && strcmp(t.text, r2) == 0, "reused vs from scratch:\n  '%s'\n  '%s'", r2, t.text);
	free(t.text);

	/* two conversations alternating keep their own caches */
	struct engine_msg a1[] = {{"user", "Name a colour."}};
	struct engine_msg b1[] = {{"user", "Name an animal."}};
	struct turn ta, tb;
	collect(e, engine_submit(e, 10, a1, 1, &s, &g), 0, &ta);
	collect(e, engine_submit(e, 11, b1, 1, &s, &g), 0, &tb);
	struct engine_msg a2[] = {{"user", "Name a colour."}, {"assistant", ta.text}, {"user", "Another one."}};
	struct engine_msg b2[] = {{"user", "Name an animal."}, {"assistant", tb.text}, {"user", "Another one."}};
	collect(e, engine_submit(e, 10, a2, 3, &s, &g), 0, &t);
	CHECK(t.code == 0 && t.st.prompt_reused > 5, "conv A turn 2 reused %u", t.st.prompt_reused);
	free(t.text);
	collect(e, engine_submit(e, 11, b2, 3, &s, &g), 0, &t);
	CHECK(t.code == 0 && t.st.prompt_reused > 5, "conv B turn 2 reused %u", t.st.prompt_reused);
	free(t.text);
	free(ta.text);
	free(tb.text);

	/* cancel mid-reply: stops within one token */
	struct engine_gen_opts glong = {.max_tokens = 300, .add_generation_prompt = true};
	struct engine_msg story[] = {{"user", "Write a long story about a dragon and a knight."}};
	collect(e, engine_submit(e, 20, story, 1, &s, &glong), 3, &t);
	CHECK(t.code == 0 && t.stop == ENGINE_STOP_CANCELLED, "cancel: stop %d code %d", t.stop, t.code);
	CHECK(t.st.gen_tokens <= 4, "cancel took %u tokens", t.st.gen_tokens);
	free(t.text);
	/* the engine is usable after a cancel */
	collect(e, engine_submit(e, 1, q1, 1, &s, &g), 0, &t);
	CHECK(t.code == 0 && t.text && strstr(t.text, "Paris"), "after cancel: '%s'", t.text);
	free(t.text);

	/* context overflow: oldest turns dropped with a notice ... */
	struct engine_load_opts small = {.n_ctx = 160};
	rc = load_wait(e, path, &small, msg, sizeof msg);
	CHECK(rc == 0, "reload small ctx: %s", msg);
	const char *filler = "Please remember this sentence, it is part of a long conversation about nothing.";
	struct engine_msg many[9] = {{"system", "You are terse."}};
	for (int i = 1; i < 9; i++)
		many[i] = (struct engine_msg){i % 2 ? "user" : "assistant", filler};
	collect(e, engine_submit(e, 30, many, 9, &s, &g), 0, &t);
	CHECK(t.code == 0 && t.shifts == 1, "overflow drop: code %d shifts %u (%s)", t.code, t.shifts, t.msg);
	CHECK(t.st.prompt_tokens + 24 <= 160, "fits after drop: %u", t.st.prompt_tokens);
	free(t.text);
	/* ... or an error when asked */
	small.overflow = ENGINE_OVERFLOW_ERROR;
	rc = load_wait(e, path, &small, msg, sizeof msg);
	collect(e, engine_submit(e, 30, many, 9, &s, &g), 0, &t);
	CHECK(t.code == ENGINE_E_CONTEXT, "overflow error: code %d", t.code);
	free(t.text);

	free(r1);
	free(r2);
	engine_free(e);

	/* a KV budget too small for two conversations: the least recently used
	 * one is evicted and re-prefilled, with the same reply */
	struct engine_params tight = {.n_threads = 2, .kv_budget_bytes = 1};
	e = engine_create(&tight, err, sizeof err);
	rc = load_wait(e, path, NULL, msg, sizeof msg);
	CHECK(rc == 0, "load: %s", msg);
	collect(e, engine_submit(e, 40, a1, 1, &s, &g), 0, &ta);
	collect(e, engine_submit(e, 41, b1, 1, &s, &g), 0, &tb);
	struct engine_msg a3[] = {{"user", "Name a colour."}, {"assistant", ta.text}, {"user", "Another one."}};
	collect(e, engine_submit(e, 40, a3, 3, &s, &g), 0, &t);
	CHECK(t.code == 0 && t.st.prompt_reused == 0 && t.st.prompt_computed == t.st.prompt_tokens,
	      "evicted conversation re-prefilled: %u reused", t.st.prompt_reused);
	free(t.text);
	free(ta.text);
	free(tb.text);
	engine_free(e);
	return tu_finish();
}
