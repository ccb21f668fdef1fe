/*
 * test_reasoning.c - the reasoning parser on rendered transcripts of each
 * family, fed split at every possible point (text markers) or token by
 * token (markers that are vocabulary tokens), and the loop detector.
 */
#include <stdio.h>
#include <string.h>

#include "reasoning.h"
#include "testutil.h"

/* The output as merged runs: "T:text|A:text|..." */
struct sink {
	char runs[4096];
	size_t n;
	int last;                  /* -1 none, else the part of the open run */
};

static void sink_emit(void *ctx, enum reasoning_part part, const char *s, size_t n)
{
	struct sink *k = ctx;
	if (n == 0)
		return;
	if (k->last != (int)part) {
		if (k->last >= 0 && k->n + 1 < sizeof k->runs)
			k->runs[k->n++] = '|';
		if (k->n + 2 < sizeof k->runs) {
			k->runs[k->n++] = part == REASONING_THOUGHT ? 'T' : 'A';
			k->runs[k->n++] = ':';
		}
		k->last = (int)part;
	}
	for (size_t i = 0; i < n && k->n + 1 < sizeof k->runs; i++)
		k->runs[k->n++] = s[i];
	k->runs[k->n] = '\0';
}

static void sink_reset(struct sink *k)
{
	k->n = 0;
	k->runs[0] = '\0';
	k->last = -1;
}

/* TEXT fed in three pieces cut at every pair of points, all markers in
 * text; each split must give EXPECT. */
static void check_splits(enum reasoning_format f, const char *prompt, const char *text, const char *expect)
{
	size_t n = strlen(text);
	int bad = 0;
	struct sink k;
	for (size_t i = 0; i <= n; i++)
		for (size_t j = i; j <= n; j++) {
			struct reasoning p;
			reasoning_init(&p, f, 0);
			reasoning_begin(&p, prompt, prompt ? strlen(prompt) : 0);
			sink_reset(&k);
			reasoning_feed(&p, text, i, false, sink_emit, &k);
			reasoning_feed(&p, text + i, j - i, false, sink_emit, &k);
			reasoning_feed(&p, text + j, n - j, false, sink_emit, &k);
			reasoning_flush(&p, sink_emit, &k);
			if (strcmp(k.runs, expect) != 0 && bad++ == 0)
				CHECK(0, "%s split %zu/%zu of \"%s\": got \"%s\", want \"%s\"", reasoning_format_name(f), i,
				      j, text, k.runs, expect);
		}
	CHECK(bad == 0, "%s: %d splits of \"%s\" differ", reasoning_format_name(f), bad, text);
	/* and byte by byte */
	struct reasoning p;
	reasoning_init(&p, f, 0);
	reasoning_begin(&p, prompt, prompt ? strlen(prompt) : 0);
	sink_reset(&k);
	for (size_t i = 0; i < n; i++)
		reasoning_feed(&p, text + i, 1, false, sink_emit, &k);
	reasoning_flush(&p, sink_emit, &k);
	CHECK(strcmp(k.runs, expect) == 0, "%s byte by byte: got \"%s\"", reasoning_format_name(f), k.runs);
}

/* Tokens: NULL-terminated pieces, a leading '\1' marks a special one. */
static void check_tokens(enum reasoning_format f, unsigned mask, const char *prompt, const char *const *toks,
			 const char *expect)
{
	struct reasoning p;
	struct sink k;
	reasoning_init(&p, f, mask);
	reasoning_begin(&p, prompt, prompt ? strlen(prompt) : 0);
	sink_reset(&k);
	for (size_t i = 0; toks[i]; i++) {
		bool sp = toks[i][0] == '\1';
		const char *s = toks[i] + sp;
		reasoning_feed(&p, s, strlen(s), sp, sink_emit, &k);
	}
	reasoning_flush(&p, sink_emit, &k);
	CHECK(strcmp(k.runs, expect) == 0, "%s tokens: got \"%s\", want \"%s\"", reasoning_format_name(f), k.runs,
	      expect);
}

static void test_detect(void)
{
	CHECK(reasoning_detect(NULL) == REASONING_NONE, "NULL");
	CHECK(reasoning_detect("{{ '<|im_start|>' }}") == REASONING_NONE, "chatml");
	CHECK(reasoning_detect("{{ '<think>\\n' }}") == REASONING_THINK, "think");
	CHECK(reasoning_detect("{% if x %}</think>{% endif %}") == REASONING_THINK, "close only");
	CHECK(reasoning_detect("'[THINK]' + t + '[/THINK]'") == REASONING_BRACKET, "bracket");
	CHECK(reasoning_detect("'<|channel>thought\\n<channel|>'") == REASONING_GEMMA4, "gemma4");
	CHECK(reasoning_detect("<|start|>assistant<|channel|>final<|message|>") == REASONING_HARMONY, "harmony");
	CHECK(strcmp(reasoning_close_text(REASONING_BRACKET), "[/THINK]") == 0, "close text");
	CHECK(reasoning_marker(REASONING_THINK, 2) == NULL && reasoning_n_markers(REASONING_HARMONY) == 4,
	      "markers");
}

static void test_think(void)
{
	/* the model opens the block itself */
	check_splits(REASONING_THINK, "<|im_start|>assistant\n", "<think>\nplan A</think>\n\nThe answer <b>.",
		     "T:\nplan A|A:\n\nThe answer <b>.");
	/* the template opened it (Qwen3 with enable_thinking, DeepSeek-R1) */
	check_splits(REASONING_THINK, "<｜Assistant｜><think>\n", "Let me see: 2<3.</think>\n\nYes.",
		     "T:Let me see: 2<3.|A:\n\nYes.");
	/* the template closed it (enable_thinking false): all answer */
	check_splits(REASONING_THINK, "<|im_start|>assistant\n<think>\n\n</think>\n\n", "Hello <thinking> x",
		     "A:Hello <thinking> x");
	/* near misses and a marker cut off at the end */
	check_splits(REASONING_THINK, NULL, "a<<think>b</thin", "A:a<|T:b</thin");
	check_splits(REASONING_THINK, NULL, "</think", "A:</think");
	/* past turns closed in the prompt: the reply starts as answer */
	check_splits(REASONING_THINK, "<think>old</think>done<|im_start|>assistant\n", "x", "A:x");
	/* markers that are tokens: the same characters in text stay text */
	static const char *const toks[] = {"\1<think>", "I", " wrote </think>", " in text", "\1</think>", "ok",
					   NULL};
	check_tokens(REASONING_THINK, 3, "", toks, "T:I wrote </think> in text|A:ok");
}

static void test_bracket(void)
{
	check_splits(REASONING_BRACKET, "[/SYSTEM_PROMPT][INST]hi[/INST]", "[THINK]hmm [x][/THINK]Hi [/TH",
		     "T:hmm [x]|A:Hi [/TH");
}

static void test_gemma4(void)
{
	check_splits(REASONING_GEMMA4, "<|turn>model\n", "<|channel>thought\nstep 1\nstep 2<channel|>Answer.",
		     "T:step 1\nstep 2|A:Answer.");
	/* thinking off: the template wrote an empty thought channel */
	check_splits(REASONING_GEMMA4, "<|turn>model\n<|channel>thought\n<channel|>", "Plain.", "A:Plain.");
	static const char *const toks[] = {"\1<|channel>", "thought", "\n", "a", "b", "\1<channel|>", "c", NULL};
	check_tokens(REASONING_GEMMA4, 3, "<|turn>model\n", toks, "T:ab|A:c");
}

static void test_harmony(void)
{
	const char *gp = "<|start|>user<|message|>hi<|end|><|start|>assistant";
	check_splits(REASONING_HARMONY, gp,
		     "<|channel|>analysis<|message|>User says hi.<|end|><|start|>assistant<|channel|>final<|message|>Hello!",
		     "T:User says hi.|A:Hello!");
	check_splits(REASONING_HARMONY, gp,
		     "<|channel|>commentary<|message|>Checking.<|end|><|start|>assistant<|channel|>analysis<|message|>x<|end|>",
		     "A:Checking.|T:x");
	static const char *const toks[] = {"\1<|channel|>", "analysis", "\1<|message|>", "think", "ing",
					   "\1<|end|>",     "\1<|start|>", "assistant",  "\1<|channel|>",
					   "final",         "\1<|message|>", "Done",     NULL};
	check_tokens(REASONING_HARMONY, 15, gp, toks, "T:thinking|A:Done");
	/* a tool call: its recipient goes into the answer with its arguments,
	 * named in the channel header or in the <|start|> header before it */
	check_splits(REASONING_HARMONY, gp,
		     "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
		     "to=functions.get_weather json<|message|>{\"city\":\"Oslo\"}",
		     "T:Need weather.|A:<|channel|>commentary to=functions.get_weather<|message|>{\"city\":\"Oslo\"}");
	check_splits(REASONING_HARMONY, gp,
		     "<|channel|>analysis<|message|>x<|end|><|start|>assistant to=functions.add<|channel|>commentary "
		     "json<|message|>{}",
		     "T:x|A:<|channel|>commentary to=functions.add<|message|>{}");
	/* a final channel already opened in the prompt */
	check_splits(REASONING_HARMONY, "<|start|>assistant<|channel|>final<|message|>", "abc", "A:abc");
}

static void test_none_and_force(void)
{
	check_splits(REASONING_NONE, "<think>", "<think>x</think>", "A:<think>x</think>");
	struct reasoning p;
	struct sink k;
	reasoning_init(&p, REASONING_THINK, 0);
	reasoning_begin(&p, "<think>", 7);
	CHECK(reasoning_thinking(&p), "begins thinking");
	sink_reset(&k);
	reasoning_feed(&p, "abc</th", 7, false, sink_emit, &k);
	reasoning_force_answer(&p, sink_emit, &k);
	CHECK(!reasoning_thinking(&p), "forced to the answer");
	reasoning_feed(&p, "ans", 3, false, sink_emit, &k);
	reasoning_flush(&p, sink_emit, &k);
	CHECK(strcmp(k.runs, "T:abc</th|A:ans") == 0, "force: %s", k.runs);
}

static void test_loop(void)
{
	struct reasoning_loop l;
	/* a span of 40 tokens: found when its third copy completes */
	reasoning_loop_init(&l);
	uint32_t found = 0, at = 0;
	for (uint32_t i = 0; i < 400 && !found; i++) {
		int32_t id = i < 10 ? (int32_t)(1000 + i) : (int32_t)((i - 10) % 40);
		found = reasoning_loop_add(&l, id);
		at = i;
	}
	CHECK(found == 40 && at == 10 + 3 * 40 - 1, "period 40: found %u at %u", found, at);
	/* one token over and over: after 64 */
	reasoning_loop_init(&l);
	found = 0;
	for (at = 0; at < 200 && !found; at++)
		found = reasoning_loop_add(&l, 7);
	CHECK(found == 1 && at == 64, "period 1: found %u after %u", found, at);
	/* a short span repeated three times is not yet a loop */
	reasoning_loop_init(&l);
	found = 0;
	for (uint32_t i = 0; i < 15; i++)
		found |= reasoning_loop_add(&l, (int32_t)(i % 5));
	CHECK(found == 0, "3 x 5 tokens is no loop");
	/* no repetition: never */
	reasoning_loop_init(&l);
	found = 0;
	uint32_t x = 12345;
	for (uint32_t i = 0; i < 5000; i++) {
		x = x * 1103515245u + 12345u;
		found |= reasoning_loop_add(&l, (int32_t)(x >> 8));
	}
	CHECK(found == 0, "random ids: no loop");
}

int main(void)
{
	test_detect();
	test_think();
	test_bracket();
	test_gemma4();
	test_harmony();
	test_none_and_force();
	test_loop();
	return tu_finish();
}
