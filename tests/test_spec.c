/*
 * test_spec.c - speculative decoding through the engine's API.
 *
 *  - the n-gram drafter: what it copies and when it finds nothing;
 *  - greedy replies with speculation off, with n-gram lookup and with a
 *    draft model (the model itself: every guess should be right) are the
 *    same tokens, on a dense model and on a hybrid recurrent one (whose
 *    states are rolled back by copy and recompute);
 *  - at temperature 0.9 a reply with the same seed is the same text (one
 *    draw per position, in order), and over 400 seeds each the distribution
 *    of the first tokens under speculation matches plain sampling (a
 *    chi-square test on the 512-token vocabulary of the fixture);
 *  - TOKEN events flag the accepted guesses and the stats add up.
 * Random-weight fixtures: always runs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "spec.h"
#include "testutil.h"

struct reply {
	char *text;
	size_t len;
	int32_t ids[512];
	int n_ids;
	uint32_t drafted_flags;
	struct engine_event done;
};

static void wait_req(engine *e, int req, struct reply *out)
{
	struct engine_event ev;
	memset(out, 0, sizeof *out);
	out->text = calloc(1, 1);
	while (engine_event_wait(e, &ev, 120000)) {
		if (ev.request == req) {
			if (ev.type == ENGINE_EV_TOKEN) {
				out->text = realloc(out->text, out->len + ev.text_len + 1);
				memcpy(out->text + out->len, ev.text, ev.text_len);
				out->len += ev.text_len;
				out->text[out->len] = '\0';
				if (ev.token >= 0 && out->n_ids < 512)
					out->ids[out->n_ids++] = ev.token;
				if (ev.drafted)
					out->drafted_flags++;
			} else if (ev.type == ENGINE_EV_DONE || ev.type == ENGINE_EV_ERROR ||
				   ev.type == ENGINE_EV_LOADED) {
				out->done = ev;
				out->done.text = NULL;
				out->done.blob = NULL;
				engine_event_clear(&ev);
				return;
			}
		}
		engine_event_clear(&ev);
	}
	out->done.type = ENGINE_EV_ERROR;
	snprintf(out->done.message, sizeof out->done.message, "timeout");
}

static engine *start(const char *model, const char *draft, char *msg, size_t msglen)
{
	char err[256];
	struct engine_params ep = {.n_threads = 2};
	engine *e = engine_create(&ep, err, sizeof err);
	CHECK(e != NULL, "engine_create: %s", err);
	struct engine_load_opts lo = {.n_ctx = 2048, .draft = draft};
	struct reply r;
	wait_req(e, engine_load(e, model, &lo), &r);
	free(r.text);
	if (r.done.type != ENGINE_EV_LOADED) {
		snprintf(msg, msglen, "%s", r.done.message);
		engine_free(e);
		return NULL;
	}
	return e;
}

static void ngram_unit(void)
{
	int32_t out[SPEC_MAX_DRAFT];
	const int32_t h[] = {5, 6, 7, 8, 9, 5, 6};
	int k = spec_ngram_draft(h, 7, 7, 4, out);
	CHECK(k == 4 && out[0] == 8 && out[1] == 9 && out[2] == 5 && out[3] == 6, "ngram: k=%d", k);
	/* the continuation may run into the last token itself */
	k = spec_ngram_draft(h, 7, 7, 16, out);
	CHECK(k == 5 && out[4] == 7, "ngram to the end: k=%d", k);
	/* no earlier occurrence of "6 1" nor "1": nothing */
	k = spec_ngram_draft(h, 7, 1, 4, out);
	CHECK(k == 0, "ngram without a match: k=%d", k);
	/* the longest match wins: "1 2 3" -> 9, not "2 3" -> 4 */
	const int32_t h2[] = {1, 2, 3, 9, 0, 2, 3, 4, 0, 1, 2};
	k = spec_ngram_draft(h2, 11, 3, 1, out);
	CHECK(k == 1 && out[0] == 9, "ngram longest: k=%d out=%d", k, out[0]);
	/* the newest occurrence of the same length wins */
	const int32_t h3[] = {1, 2, 7, 1, 2, 8, 0, 1};
	k = spec_ngram_draft(h3, 8, 2, 1, out);
	CHECK(k == 1 && out[0] == 8, "ngram newest: k=%d out=%d", k, out[0]);
	CHECK(spec_ngram_draft(h, 7, 7, 0, out) == 0, "ngram max 0");
}

static void reply_of(engine *e, const struct engine_sampling *s, enum engine_spec spec, int max_tokens,
		     const char *prompt, struct reply *r)
{
	struct engine_msg m[1] = {{"user", prompt}};
	struct engine_gen_opts g = {.max_tokens = max_tokens, .add_generation_prompt = true, .ignore_eos = true,
				    .spec = spec};
	/* a fresh conversation each time: nothing reused */
	static uint64_t conv = 100;
	wait_req(e, engine_submit(e, ++conv, m, 1, s, &g), r);
	engine_drop_conv(e, conv);
}

static const char *PROMPT =
	"Copy this list exactly: alpha beta gamma delta, alpha beta gamma delta, alpha beta gamma delta, "
	"one two three four five six seven eight nine ten, one two three four five six seven eight nine ten.";

/* Greedy: OFF, NGRAM and DRAFT (a draft model loaded) give the same text.
 * The model drafting for itself should be right nearly always; a quantised
 * copy of it is wrong often enough that rejections, and so the rollbacks,
 * happen. */
static void greedy_same(const char *model, const char *quant, const char *name)
{
	char msg[512];
	engine *plain = start(model, NULL, msg, sizeof msg);
	engine *drafted = start(model, model, msg, sizeof msg);
	engine *qdrafted = start(model, quant, msg, sizeof msg);
	CHECK(plain && drafted && qdrafted, "%s: load: %s", name, msg);
	if (!plain || !drafted || !qdrafted)
		return;
	struct engine_sampling s;
	engine_sampling_default(&s);
	s.temperature = 0;
	struct reply off, ng, dr, qd;
	reply_of(plain, &s, ENGINE_SPEC_OFF, 160, PROMPT, &off);
	reply_of(plain, &s, ENGINE_SPEC_NGRAM, 160, PROMPT, &ng);
	reply_of(drafted, &s, ENGINE_SPEC_DRAFT, 160, PROMPT, &dr);
	reply_of(qdrafted, &s, ENGINE_SPEC_DRAFT, 160, PROMPT, &qd);
	CHECK(strcmp(off.text, qd.text) == 0, "%s: quantised-draft reply differs:\n  off:   %s\n  draft: %s", name,
	      off.text, qd.text);
	const struct engine_stats *q = &qd.done.stats;
	CHECK(q->spec_passes > 0 && q->spec_accepted < q->spec_drafted, "%s: quantised draft: %u of %u accepted",
	      name, q->spec_accepted, q->spec_drafted);
	CHECK(off.done.type == ENGINE_EV_DONE && ng.done.type == ENGINE_EV_DONE && dr.done.type == ENGINE_EV_DONE,
	      "%s: replies: %s %s %s", name, off.done.message, ng.done.message, dr.done.message);
	CHECK(off.done.stats.spec[0] == '\0' && off.done.stats.spec_passes == 0, "%s: OFF drafted", name);
	CHECK(strcmp(off.text, ng.text) == 0, "%s: n-gram reply differs:\n  off:   %s\n  ngram: %s", name, off.text,
	      ng.text);
	CHECK(strcmp(off.text, dr.text) == 0, "%s: draft reply differs:\n  off:   %s\n  draft: %s", name, off.text,
	      dr.text);
	const struct engine_stats *a = &ng.done.stats, *b = &dr.done.stats;
	CHECK(strcmp(a->spec, "ngram") == 0 && a->spec_accepted <= a->spec_drafted,
	      "%s: n-gram stats: %s %u passes %u/%u", name, a->spec, a->spec_passes, a->spec_accepted,
	      a->spec_drafted);
	CHECK(ng.drafted_flags <= a->spec_accepted && ng.drafted_flags + 8 >= a->spec_accepted,
	      "%s: %u TOKENs flagged drafted, %u accepted", name, ng.drafted_flags, a->spec_accepted);
	CHECK(strcmp(b->spec, "draft") == 0 && b->spec_passes > 0, "%s: draft stats: %s %u passes", name, b->spec,
	      b->spec_passes);
	/* the model drafting for itself: batched and single-token passes
	 * round apart only at near-ties, so nearly every guess holds */
	CHECK(b->spec_drafted > 0 && b->spec_accepted * 10 >= b->spec_drafted * 9,
	      "%s: self-draft accepted %u of %u", name, b->spec_accepted, b->spec_drafted);
	CHECK(b->draft_bytes > 0, "%s: draft memory not counted", name);
	CHECK(off.done.stats.gen_tokens == 160 && ng.done.stats.gen_tokens == 160 && dr.done.stats.gen_tokens == 160,
	      "%s: token counts %u %u %u", name, off.done.stats.gen_tokens, ng.done.stats.gen_tokens,
	      dr.done.stats.gen_tokens);
	printf("%s greedy: same 160 tokens off / ngram (%u passes, %u of %u accepted) / self-draft (%u passes, %u of "
	       "%u accepted) / quantised draft (%u passes, %u of %u accepted)\n",
	       name, a->spec_passes, a->spec_accepted, a->spec_drafted, b->spec_passes, b->spec_accepted,
	       b->spec_drafted, q->spec_passes, q->spec_accepted, q->spec_drafted);

	/* a second turn in the same conversation: the cache the guesses left
	 * behind is the committed text (the reply continues identically) */
	struct engine_msg m2[3] = {{"user", PROMPT}, {"assistant", off.text}, {"user", "Again, the same list."}};
	struct engine_gen_opts g = {.max_tokens = 48, .add_generation_prompt = true, .ignore_eos = true,
				    .spec = ENGINE_SPEC_OFF};
	struct reply t1, t2, t3;
	wait_req(plain, engine_submit(plain, 7, m2, 1, &s, &g), &t1);   /* turn 1, plain */
	g.spec = ENGINE_SPEC_NGRAM;
	wait_req(drafted, engine_submit(drafted, 7, m2, 1, &s, &g), &t2); /* turn 1, speculated */
	g.spec = ENGINE_SPEC_OFF;
	wait_req(plain, engine_submit(plain, 7, m2, 3, &s, &g), &t3);
	struct reply t4;
	g.spec = ENGINE_SPEC_DRAFT;
	wait_req(drafted, engine_submit(drafted, 7, m2, 3, &s, &g), &t4);
	CHECK(t3.done.type == ENGINE_EV_DONE && t4.done.type == ENGINE_EV_DONE && strcmp(t3.text, t4.text) == 0,
	      "%s: second turn after speculation differs", name);
	CHECK(t4.done.stats.prompt_reused > 0, "%s: second turn reused nothing", name);
	free(t1.text);
	free(t2.text);
	free(t3.text);
	free(t4.text);
	free(off.text);
	free(ng.text);
	free(dr.text);
	free(qd.text);
	engine_free(plain);
	engine_free(drafted);
	engine_free(qdrafted);
}

/* Temperature > 0: same seed, same text; and the distributions agree. */
static void sampled_same(const char *model)
{
	char msg[512];
	engine *e = start(model, model, msg, sizeof msg);
	CHECK(e != NULL, "load: %s", msg);
	if (!e)
		return;
	struct engine_sampling s;
	engine_sampling_default(&s);
	s.temperature = 0.9f;
	s.top_k = 0;
	s.top_p = 1;
	s.min_p = 0;
	int same = 0;
	for (int i = 0; i < 8; i++) {
		struct reply a, b;
		s.seed = 1000 + (uint64_t)i;
		reply_of(e, &s, ENGINE_SPEC_OFF, 40, PROMPT, &a);
		reply_of(e, &s, ENGINE_SPEC_DRAFT, 40, PROMPT, &b);
		same += strcmp(a.text, b.text) == 0;
		free(a.text);
		free(b.text);
	}
	CHECK(same == 8, "temperature 0.9, same seeds: %d of 8 replies equal", same);

	/* two-sample chi-square on the replies of 3 tokens (their text is the
	 * category): plain with seeds 1..N, speculation with seeds N+1..2N
	 * (independent samples) */
	enum { N = 400, V = 2 * N };
	static char *cat[V];
	static int ca[V], cb[V];
	int nc = 0, na = 0, nb = 0;
	for (int i = 0; i < 2 * N; i++) {
		struct reply a;
		s.seed = 1 + (uint64_t)i;
		reply_of(e, &s, i < N ? ENGINE_SPEC_OFF : ENGINE_SPEC_DRAFT, 3, PROMPT, &a);
		if (a.done.type != ENGINE_EV_DONE || a.done.stats.gen_tokens != 3) {
			free(a.text);
			continue;
		}
		int c = 0;
		while (c < nc && strcmp(cat[c], a.text) != 0)
			c++;
		if (c == nc)
			cat[nc++] = strdup(a.text);
		if (i < N)
			ca[c]++, na++;
		else
			cb[c]++, nb++;
		free(a.text);
	}
	/* pool the rare tokens into one bin (expected counts >= 5) */
	double chi = 0;
	int df = -1, ra = 0, rb = 0;
	for (int v = 0; v < nc; v++) {
		if (ca[v] + cb[v] < 10) {
			ra += ca[v];
			rb += cb[v];
			continue;
		}
		const double t = ca[v] + cb[v];
		chi += (ca[v] - cb[v]) * (double)(ca[v] - cb[v]) / t;
		df++;
	}
	if (ra + rb > 0) {
		chi += (ra - rb) * (double)(ra - rb) / (ra + rb);
		df++;
	}
	/* the 0.001 critical value, Wilson-Hilferty */
	const double z = 3.09, k = df > 0 ? df : 1;
	const double crit = k * pow(1 - 2 / (9 * k) + z * sqrt(2 / (9 * k)), 3);
	printf("temperature 0.9: 8/8 seeds give the same text; 3-token replies over %d+%d samples (%d distinct): "
	       "chi2 %.1f on %d df (0.001 critical %.1f)\n",
	       na, nb, nc, chi, df, crit);
	for (int c = 0; c < nc; c++)
		free(cat[c]);
	CHECK(na == N && nb == N, "samples %d %d", na, nb);
	CHECK(df >= 1 && chi < crit, "distributions differ: chi2 %.1f >= %.1f", chi, crit);
	engine_free(e);
}

int main(void)
{
	char dense[4096], hybrid[4096];
	const char *src = getenv("TTYCHAT_SRCDIR");
	snprintf(dense, sizeof dense, "%s/tests/fixtures/engine/random/llama3-f16.gguf", src ? src : ".");
	snprintf(hybrid, sizeof hybrid, "%s/tests/fixtures/engine/random/qwen35-f16.gguf", src ? src : ".");

	ngram_unit();
	char dq[4096], hq[4096];
	snprintf(dq, sizeof dq, "%s/tests/fixtures/engine/random/llama3-q4_0.gguf", src ? src : ".");
	snprintf(hq, sizeof hq, "%s/tests/fixtures/engine/random/qwen35-q4_k_m.gguf", src ? src : ".");
	greedy_same(dense, dq, "llama3");
	greedy_same(hybrid, hq, "qwen35");
	sampled_same(dense);
	/* (a draft of another vocabulary: tests/test_spec_cli.py, real files) */
	return tu_finish();
}
