/*
 * test_engine_reasoning.c - thinking through the engine's API on the
 * random-weight qwen3 fixture, its output forced through a thinking chat
 * template (a template override that opens <think> in the generation
 * prompt, as Qwen3 with enable_thinking and DeepSeek-R1 do) and
 * ignore_eos, so that greedy decoding thinks for as long as asked:
 *   - every TOKEN says its part, and the reasoning comes first;
 *   - a budget of N closes the block at exactly N reasoning tokens: the
 *     first answer token sits at prompt + N + the wrap-up phrase and the
 *     closing text, counted with the model's own tokenizer;
 *   - enable_thinking false (think OFF) renders a closed block: no
 *     reasoning; a template that cannot switch it off is closed at once;
 *   - engine_answer_now() mid-reply ends it, and one pressed before a
 *     request does not touch that request;
 *   - harmony's analysis channel opened by the prompt, closed the
 *     harmony way by a budget;
 *   - a reasoning loop (greedy decoding of random weights falls into
 *     one) is closed with a notice;
 *   - raw prompts use <think> tags; bad template variables are refused.
 */
#define _GNU_SOURCE   /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "testutil.h"

#define FIXTURE "tests/fixtures/engine/random/qwen3-f16.gguf"

/* Qwen3's shape, reduced: <think> opened unless enable_thinking is false. */
static const char *THINK_TMPL =
	"{%- for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor %}"
	"{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}"
	"{%- if enable_thinking is defined and enable_thinking is false %}{{ '\\n</think>\\n\\n' }}{%- endif %}"
	"{%- endif %}";
/* DeepSeek-R1's: the block always opened */
static const char *R1_TMPL = "{%- for m in messages %}{{ m.content }}{%- endfor %}"
			     "{%- if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{%- endif %}";
/* gpt-oss's, reduced, with the analysis channel opened by the prompt */
static const char *HARMONY_TMPL =
	"{%- for m in messages %}{{ '<|start|>' + m.role + '<|message|>' + m.content + '<|end|>' }}{%- endfor %}"
	"{%- if add_generation_prompt %}{{ '<|start|>assistant<|channel|>analysis<|message|>' }}{%- endif %}";

struct run {
	char think[8192], answer[8192];
	size_t tl, al;
	struct engine_stats st;
	int stop, code;
	unsigned notices;
	bool order_ok;             /* no reasoning after the answer began */
	uint32_t max_think_pos;    /* position of the last sampled reasoning token */
	uint32_t first_answer_pos; /* of the first sampled answer token */
	bool saw_wrapup_event;     /* a reasoning TOKEN with token -1 */
	char msg[512];
};

static void add(char *buf, size_t *len, size_t cap, const char *s, size_t n)
{
	if (*len + n >= cap)
		n = cap - 1 - *len;
	memcpy(buf + *len, s, n);
	*len += n;
	buf[*len] = '\0';
}

/* Collects request REQ; calls engine_answer_now() at the NOW_AT-th
 * reasoning piece when > 0. */
static void collect(engine *e, int req, unsigned now_at, struct run *t)
{
	memset(t, 0, sizeof *t);
	t->order_ok = true;
	t->first_answer_pos = UINT32_MAX;
	unsigned pieces = 0;
	if (req <= 0) {
		t->code = req;
		return;
	}
	struct engine_event ev;
	for (;;) {
		if (!engine_event_wait(e, &ev, 60000)) {
			t->code = -1000;
			return;
		}
		if (ev.request != req) {
			engine_event_clear(&ev);
			continue;
		}
		if (ev.type == ENGINE_EV_TOKEN) {
			if (ev.part == ENGINE_PART_REASONING) {
				if (t->al)
					t->order_ok = false;
				add(t->think, &t->tl, sizeof t->think, ev.text, ev.text_len);
				if (ev.token >= 0 && ev.position > t->max_think_pos)
					t->max_think_pos = ev.position;
				if (ev.token < 0)
					t->saw_wrapup_event = true;
				if (now_at && ++pieces == now_at)
					engine_answer_now(e);
			} else {
				add(t->answer, &t->al, sizeof t->answer, ev.text, ev.text_len);
				if (ev.token >= 0 && ev.position < t->first_answer_pos)
					t->first_answer_pos = ev.position;
			}
		} else if (ev.type == ENGINE_EV_NOTICE) {
			t->notices++;
		} else if (ev.type == ENGINE_EV_DONE) {
			t->st = ev.stats;
			t->stop = (int)ev.stop;
			engine_event_clear(&ev);
			return;
		} else if (ev.type == ENGINE_EV_ERROR) {
			t->code = ev.code;
			snprintf(t->msg, sizeof t->msg, "%s", ev.message);
			engine_event_clear(&ev);
			return;
		}
		engine_event_clear(&ev);
	}
}

static int load_wait(engine *e, const char *path, const char *tmpl, struct engine_model_info *info)
{
	struct engine_load_opts lo = {.n_ctx = 1024, .template_override = tmpl};
	int req = engine_load(e, path, &lo);
	struct engine_event ev;
	while (engine_event_wait(e, &ev, 60000)) {
		int rc = 1;
		if (ev.request == req && ev.type == ENGINE_EV_LOADED) {
			*info = ev.info;
			rc = 0;
		} else if (ev.request == req && ev.type == ENGINE_EV_ERROR) {
			fprintf(stderr, "load: %s\n", ev.message);
			rc = ev.code;
		}
		engine_event_clear(&ev);
		if (rc <= 0)
			return rc;
	}
	return -1000;
}

/* The first answer token is sampled at WANT; its text may come with the
 * next token or the one after (a byte token that completes no character). */
static bool near(uint32_t pos, uint32_t want) { return pos >= want && pos <= want + 2; }

static uint32_t count_tokens(engine_vocab *v, const char *text, bool special)
{
	int32_t *ids = NULL;
	size_t n = 0, cap = 0;
	char err[256];
	int rc = engine_vocab_encode(v, text, strlen(text), false, special, &ids, &n, &cap, err, sizeof err);
	free(ids);
	return rc ? 0 : (uint32_t)n;
}

int main(void)
{
	const char *src = getenv("TTYCHAT_SRCDIR");
	char path[4096], err[512];
	snprintf(path, sizeof path, "%s/%s", src ? src : ".", FIXTURE);
	FILE *f = fopen(path, "rb");
	if (!f)
		tu_skip("the random qwen3 fixture is missing (set TTYCHAT_SRCDIR)");
	fclose(f);

	struct engine_params ep = {.n_threads = 2};
	engine *e = engine_create(&ep, err, sizeof err);
	engine_vocab *v = engine_vocab_open(path, err, sizeof err);
	CHECK(e && v, "engine_create/vocab: %s", err);
	if (!e || !v)
		return tu_finish();
	struct engine_sampling s;
	engine_sampling_default(&s);
	s.temperature = 0;
	struct engine_msg q[] = {{"user", "What is 2+2?"}};
	struct engine_model_info info;
	struct run t;

	CHECK(load_wait(e, path, THINK_TMPL, &info) == 0, "load");
	CHECK(strcmp(info.reasoning, "think") == 0, "info.reasoning '%s'", info.reasoning);

	/* budget N: the block closes at exactly N reasoning tokens */
	const char *wrap = "\nTime is up.\n";
	for (int32_t N = 1; N <= 25; N += 12) {
		struct engine_gen_opts g = {.max_tokens = N + 20, .add_generation_prompt = true, .ignore_eos = true,
					    .reasoning_budget = N, .reasoning_wrapup = wrap};
		collect(e, engine_submit(e, 1, q, 1, &s, &g), 0, &t);
		uint32_t forced = count_tokens(v, wrap, false) + count_tokens(v, "\n</think>\n\n", true);
		CHECK(t.code == 0, "budget %d: %d %s", N, t.code, t.msg);
		CHECK(t.st.reasoning_tokens == (uint32_t)N && t.st.reasoning_end == ENGINE_REASONING_END_BUDGET,
		      "budget %d: %u reasoning tokens, end %d", N, t.st.reasoning_tokens, t.st.reasoning_end);
		CHECK(t.max_think_pos == t.st.prompt_tokens + (uint32_t)N - 1,
		      "budget %d: last reasoning token at %u, prompt %u", N, t.max_think_pos, t.st.prompt_tokens);
		/* the first answer token sampled right after the forced ones (a
		 * random byte token may complete no character: its text then
		 * comes with the next one) */
		CHECK(near(t.first_answer_pos, t.st.prompt_tokens + (uint32_t)N + forced),
		      "budget %d: first answer token at %u, want %u + %d + %u", N, t.first_answer_pos,
		      t.st.prompt_tokens, N, forced);
		/* everything sampled but the last, and the forced tokens, are in the cache */
		CHECK(t.st.ctx_used == t.st.prompt_tokens + t.st.gen_tokens - 1 + forced, "budget %d: ctx %u", N,
		      t.st.ctx_used);
		CHECK(t.tl >= strlen(wrap) && strcmp(t.think + t.tl - strlen(wrap), wrap) == 0 && t.saw_wrapup_event,
		      "budget %d: the reasoning ends with the wrap-up phrase: '%s'", N, t.think);
		CHECK(t.al > 0 && t.order_ok && !memmem(t.answer, t.al, "</think>", 8) && !memmem(t.think, t.tl, "<think>", 7),
		      "budget %d: answer after reasoning, no markers", N);
		CHECK(t.st.gen_tokens == (uint32_t)N + 20 && t.stop == ENGINE_STOP_LENGTH, "budget %d: %u tokens", N,
		      t.st.gen_tokens);
	}

	/* no budget: all reasoning until max_tokens */
	struct engine_gen_opts g = {.max_tokens = 30, .add_generation_prompt = true, .ignore_eos = true};
	collect(e, engine_submit(e, 2, q, 1, &s, &g), 0, &t);
	CHECK(t.code == 0 && t.st.reasoning_tokens == 30 && t.al == 0 && t.tl > 0 &&
		      t.st.reasoning_end == ENGINE_REASONING_END_MODEL,
	      "no budget: %u reasoning, answer '%s'", t.st.reasoning_tokens, t.answer);
	char first_think[8192];
	snprintf(first_think, sizeof first_think, "%s", t.think);

	/* answer now pressed before the request: no effect on it */
	engine_answer_now(e);
	collect(e, engine_submit(e, 2, q, 1, &s, &g), 0, &t);
	CHECK(t.code == 0 && t.st.reasoning_tokens == 30 && strcmp(t.think, first_think) == 0,
	      "answer now before: %u reasoning", t.st.reasoning_tokens);

	/* answer now mid-reply */
	struct engine_gen_opts gl = {.max_tokens = 400, .add_generation_prompt = true, .ignore_eos = true};
	collect(e, engine_submit(e, 3, q, 1, &s, &gl), 3, &t);
	CHECK(t.code == 0 && t.st.reasoning_end == ENGINE_REASONING_END_NOW && t.st.reasoning_tokens >= 3 &&
		      t.st.reasoning_tokens < 400 && t.al > 0 && t.order_ok &&
		      memmem(t.think, t.tl, "Considering the limited time", 28),
	      "answer now: end %d, %u reasoning tokens, answer %zu bytes", t.st.reasoning_end,
	      t.st.reasoning_tokens, t.al);

	struct engine_gen_opts gx = {.max_tokens = 900, .add_generation_prompt = true, .ignore_eos = true};
	collect(e, engine_submit(e, 9, q, 1, &s, &gx), 0, &t);
	/* greedy decoding of random weights falls into a loop: the detector
	 * closes the reasoning with a notice and the reply goes on as answer */
	CHECK(t.code == 0 && t.st.reasoning_end == ENGINE_REASONING_END_LOOP && t.notices == 1 &&
		      t.st.reasoning_tokens >= 64 && t.st.reasoning_tokens < 900 && t.al > 0 && t.order_ok,
	      "loop: end %d, %u reasoning tokens, %u notices", t.st.reasoning_end, t.st.reasoning_tokens, t.notices);

	/* think OFF: the template closes the block (enable_thinking false) */
	struct engine_gen_opts go = {.max_tokens = 10, .add_generation_prompt = true, .ignore_eos = true,
				     .think = ENGINE_THINK_OFF};
	collect(e, engine_submit(e, 4, q, 1, &s, &go), 0, &t);
	CHECK(t.code == 0 && t.st.reasoning_tokens == 0 && t.tl == 0 && t.al > 0 &&
		      t.st.reasoning_end == ENGINE_REASONING_END_MODEL,
	      "think off: %u reasoning, end %d", t.st.reasoning_tokens, t.st.reasoning_end);
	/* ON renders as the template's default here */
	go.think = ENGINE_THINK_ON;
	collect(e, engine_submit(e, 4, q, 1, &s, &go), 0, &t);
	CHECK(t.code == 0 && t.st.reasoning_tokens == 10 && t.al == 0, "think on: %u", t.st.reasoning_tokens);
	/* chat_template_kwargs say the same; think overrides them */
	go.think = ENGINE_THINK_DEFAULT;
	go.template_vars = "{\"enable_thinking\": false}";
	collect(e, engine_submit(e, 4, q, 1, &s, &go), 0, &t);
	CHECK(t.code == 0 && t.st.reasoning_tokens == 0 && t.al > 0, "kwargs off: %u", t.st.reasoning_tokens);
	go.think = ENGINE_THINK_ON;
	collect(e, engine_submit(e, 4, q, 1, &s, &go), 0, &t);
	CHECK(t.code == 0 && t.st.reasoning_tokens == 10, "think on over kwargs: %u", t.st.reasoning_tokens);
	go.template_vars = "[1, 2]";
	CHECK(engine_submit(e, 4, q, 1, &s, &go) == ENGINE_E_INVAL, "template vars not an object");
	go.template_vars = "{\"x\": ";
	CHECK(engine_submit(e, 4, q, 1, &s, &go) == ENGINE_E_INVAL, "template vars bad JSON");

	/* raw prompts: <think> tags in the text */
	struct engine_msg rq[] = {{"user", "Q: 2+2?\nA: <think>\n"}};
	struct engine_gen_opts gr = {.max_tokens = 12, .raw = true, .ignore_eos = true, .reasoning_budget = 5,
				     .reasoning_wrapup = ""};
	collect(e, engine_submit(e, 5, rq, 1, &s, &gr), 0, &t);
	CHECK(t.code == 0 && t.st.reasoning_tokens == 5 && t.al > 0 && t.st.reasoning_end == ENGINE_REASONING_END_BUDGET,
	      "raw: %u reasoning tokens", t.st.reasoning_tokens);
	CHECK(near(t.first_answer_pos, t.st.prompt_tokens + 5 + count_tokens(v, "\n</think>\n\n", true)),
	      "raw: first answer token at %u", t.first_answer_pos);

	/* a template that always opens the block: think OFF closes it at once */
	CHECK(load_wait(e, path, R1_TMPL, &info) == 0 && strcmp(info.reasoning, "think") == 0, "load R1");
	go.template_vars = NULL;
	go.think = ENGINE_THINK_OFF;
	collect(e, engine_submit(e, 6, q, 1, &s, &go), 0, &t);
	CHECK(t.code == 0 && t.st.reasoning_tokens == 0 && t.tl == 0 && t.al > 0 &&
		      t.st.reasoning_end == ENGINE_REASONING_END_OFF &&
		      near(t.first_answer_pos, t.st.prompt_tokens + count_tokens(v, "\n</think>\n\n", true)),
	      "R1 think off: %u reasoning, end %d, first answer at %u", t.st.reasoning_tokens, t.st.reasoning_end,
	      t.first_answer_pos);

	/* harmony: analysis opened by the prompt, closed the harmony way */
	CHECK(load_wait(e, path, HARMONY_TMPL, &info) == 0 && strcmp(info.reasoning, "harmony") == 0,
	      "load harmony: '%s'", info.reasoning);
	struct engine_gen_opts gh = {.max_tokens = 20, .add_generation_prompt = true, .ignore_eos = true,
				     .reasoning_budget = 7, .reasoning_wrapup = ""};
	collect(e, engine_submit(e, 7, q, 1, &s, &gh), 0, &t);
	const char *hclose = "<|end|><|start|>assistant<|channel|>final<|message|>";
	CHECK(t.code == 0 && t.st.reasoning_tokens == 7 && t.al > 0 &&
		      near(t.first_answer_pos, t.st.prompt_tokens + 7 + count_tokens(v, hclose, true)),
	      "harmony budget: %u reasoning, first answer at %u (prompt %u)", t.st.reasoning_tokens,
	      t.first_answer_pos, t.st.prompt_tokens);

	/* no thinking template: no reasoning at all */
	CHECK(load_wait(e, path, "{%- for m in messages %}{{ m.content }}{%- endfor %}", &info) == 0 &&
		      info.reasoning[0] == '\0',
	      "load plain: '%s'", info.reasoning);
	collect(e, engine_submit(e, 8, q, 1, &s, &gh), 0, &t);
	CHECK(t.code == 0 && t.st.reasoning_tokens == 0 && t.tl == 0 && t.al > 0, "plain: %u",
	      t.st.reasoning_tokens);

	engine_vocab_free(v);
	engine_free(e);
	return tu_finish();
}
