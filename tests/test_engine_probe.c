/*
 * test_engine_probe.c - engine.h's entries for the front ends other than
 * the chat: chat templates alone (engine_chat), and on the real SmolLM2
 * model the model-file probe (engine_file), the vocabulary alone
 * (engine_vocab, engine_detok) and the benchmark request (engine_bench:
 * its runs in DONE's blob, its errors, and a conversation's cache left as
 * it was).  The template checks always run; the model checks skip (77)
 * when the model is absent.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "testutil.h"

static void test_chat(void)
{
	char msg[1024], *out = NULL;
	size_t len = 0;
	engine_chat *c = NULL;

	CHECK(engine_chat_parse("[{\"content\": \"no role\"}]", &c, msg, sizeof msg) == ENGINE_E_INVAL && !c,
	      "a message without a role: INVAL");
	CHECK(engine_chat_parse("[{\"role\": \"user\", \"content\": \"Hi\"}]", &c, msg, sizeof msg) == 0 && c,
	      "parse: %s", msg);
	if (!c)
		return;
	struct engine_chat_opts o = {.builtin = "chatml", .add_generation_prompt = true};
	CHECK(engine_chat_render(c, &o, &out, &len, msg, sizeof msg) == 0 && out &&
		      strcmp(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n") == 0 && len == strlen(out),
	      "chatml: '%s'", out ? out : "(null)");
	free(out);
	o.builtin = "nonesuch";
	CHECK(engine_chat_render(c, &o, &out, &len, msg, sizeof msg) == ENGINE_E_INVAL && !out, "unknown built-in");
	o = (struct engine_chat_opts){.template_text = "{{ messages[0].content }}", .strict = true};
	CHECK(engine_chat_render(c, &o, &out, &len, msg, sizeof msg) == 0 && out && strcmp(out, "Hi") == 0,
	      "strict template: '%s'", out ? out : msg);
	free(out);
	o.template_text = "{% if %}";
	int rc = engine_chat_render(c, &o, &out, &len, msg, sizeof msg);
	CHECK(rc == ENGINE_E_TEMPLATE && !out && strstr(msg, "syntax error"), "strict, broken: %d '%s'", rc, msg);
	o.template_text = NULL;
	CHECK(engine_chat_render(c, &o, &out, &len, msg, sizeof msg) == ENGINE_E_TEMPLATE && !out,
	      "strict, no template");
	o = (struct engine_chat_opts){.template_text = "{% if %}", .arch = "gemma3"};
	rc = engine_chat_render(c, &o, &out, &len, msg, sizeof msg);
	CHECK(rc == ENGINE_CHAT_FALLBACK && out && strstr(out, "<start_of_turn>user") && strstr(msg, "gemma"),
	      "fallback to the family's built-in: %d '%s'", rc, msg);
	free(out);
	CHECK(strcmp(engine_chat_family(NULL, "gemma3"), "gemma") == 0 &&
		      strcmp(engine_chat_family("<|im_start|>", NULL), "chatml") == 0 &&
		      strcmp(engine_chat_family(NULL, NULL), "unknown") == 0,
	      "families");
	CHECK(engine_chat_builtin_known("chatml") && !engine_chat_builtin_known("nonesuch"), "builtin_known");
	engine_chat_free(c);
}

static void test_file(const char *path)
{
	char err[512];
	CHECK(engine_file_open("/nonexistent/x.gguf", err, sizeof err) == NULL && strstr(err, "/nonexistent/x.gguf"),
	      "missing file: '%s'", err);
	engine_file *f = engine_file_open(path, err, sizeof err);
	CHECK(f != NULL, "open: %s", err);
	if (!f)
		return;
	const struct engine_file_info *in = engine_file_info(f);
	CHECK(strcmp(engine_file_path(f), path) == 0, "path");
	CHECK(strcmp(in->arch, "llama") == 0 && strcmp(in->quant, "Q4_1") == 0, "arch %s quant %s", in->arch, in->quant);
	CHECK(strncmp(in->quant_mix, "Q4_1 ", 5) == 0, "mix '%s'", in->quant_mix);
	CHECK(in->n_layer == 30 && in->n_embd == 576 && in->n_head == 9 && in->n_head_kv == 3 && in->head_dim_k == 64 &&
		      in->head_dim_v == 64 && in->n_ctx_train == 8192,
	      "shape %llu %llu %llu %llu %llu", (unsigned long long)in->n_layer, (unsigned long long)in->n_embd,
	      (unsigned long long)in->n_head, (unsigned long long)in->n_head_kv, (unsigned long long)in->n_ctx_train);
	CHECK(in->kv_bytes_per_pos == 30ull * 3 * (64 + 64) * 2, "kv bytes per position %llu",
	      (unsigned long long)in->kv_bytes_per_pos);
	/* the same for quantised caches: 30 layers, 3 KV heads of 64, K and V
	 * each at its type's bytes per 64 elements */
	CHECK(engine_kv_bytes_per_pos(in, ENGINE_KV_F16, ENGINE_KV_F16) == in->kv_bytes_per_pos, "f16 per position");
	CHECK(engine_kv_bytes_per_pos(in, ENGINE_KV_Q8_0, ENGINE_KV_Q8_0) == 30ull * 3 * 2 * 68, "q8_0 per position");
	CHECK(engine_kv_bytes_per_pos(in, ENGINE_KV_Q8_0, ENGINE_KV_Q3R) == 30ull * 3 * (68 + 26),
	      "q8_0 K, q3r V per position %llu",
	      (unsigned long long)engine_kv_bytes_per_pos(in, ENGINE_KV_Q8_0, ENGINE_KV_Q3R));
	CHECK(engine_kv_bytes_per_pos(in, ENGINE_KV_Q4_0, ENGINE_KV_IQ4_NL) == 30ull * 3 * 2 * 36, "q4_0/iq4_nl");
	CHECK(engine_kv_bytes_per_pos(in, ENGINE_KV_COUNT, ENGINE_KV_F16) == 0, "unknown type: 0");
	CHECK(in->n_params > 100000000 && in->n_params < 200000000, "params %llu", (unsigned long long)in->n_params);
	uint64_t bytes = 0, n = 0;
	struct engine_tensor_info t;
	for (uint64_t i = 0; engine_file_tensor(f, i, &t); i++, n++) {
		bytes += t.size;
		if (t.offset < in->data_offset || t.offset + t.size > in->file_bytes || t.type >= ENGINE_TYPE_COUNT)
			break;
	}
	CHECK(n == in->n_tensors && bytes == in->tensor_bytes, "tensors %llu of %llu", (unsigned long long)n,
	      (unsigned long long)in->n_tensors);
	const char *s;
	size_t len;
	uint64_t v, nt;
	CHECK(engine_file_get_str(f, "general.architecture", &s, &len) && len == 5 && memcmp(s, "llama", 5) == 0,
	      "get_str");
	CHECK(!engine_file_get_str(f, "llama.block_count", &s, &len), "get_str of a number");
	CHECK(engine_file_get_uint(f, "llama.block_count", &v) && v == 30, "get_uint");
	CHECK(engine_file_get_strs(f, "tokenizer.ggml.tokens", &nt) && nt == 49152, "string array: %llu",
	      (unsigned long long)nt);
	CHECK(engine_file_get_strs_at(f, "tokenizer.ggml.tokens", 0, &s, &len) && len > 0 &&
		      !engine_file_get_strs_at(f, "tokenizer.ggml.tokens", nt, &s, &len),
	      "string array elements");
	engine_file_close(f);
}

static void test_vocab(const char *path)
{
	char err[512];
	engine_vocab *v = engine_vocab_open(path, err, sizeof err);
	CHECK(v != NULL, "vocab: %s", err);
	if (!v)
		return;
	CHECK(engine_vocab_size(v) == 49152, "size %u", engine_vocab_size(v));
	int32_t *ids = NULL;
	size_t n = 0, cap = 0;
	const char *text = "Hello, world! <|im_start|>";
	CHECK(engine_vocab_encode(v, text, strlen(text), true, true, &ids, &n, &cap, err, sizeof err) == 0 && n > 3,
	      "encode: %s", err);
	engine_detok *d = engine_detok_new(v, true);
	char out[256], buf[64];
	size_t ol = 0, k;
	for (size_t i = 0; d && i < n; i++) {
		k = engine_detok_feed(d, ids[i], buf, sizeof buf);
		memcpy(out + ol, buf, k);
		ol += k;
	}
	while (d && (k = engine_detok_flush(d, buf, sizeof buf)) > 0) {
		memcpy(out + ol, buf, k);
		ol += k;
	}
	out[ol] = '\0';
	CHECK(strcmp(out, text) == 0, "round trip: '%s'", out);
	size_t pl;
	CHECK(engine_vocab_piece(v, ids[0], &pl) != NULL && engine_vocab_piece(v, -1, &pl) == NULL, "pieces");
	engine_detok_free(d);
	free(ids);
	engine_vocab_free(v);
}

/* Waits for the end of request REQ: its DONE (0) or ERROR (the code). */
static int finish(engine *e, int req, struct engine_event *done)
{
	struct engine_event ev;
	for (;;) {
		if (!engine_event_wait(e, &ev, 120000))
			return -100;
		if (ev.request == req && (ev.type == ENGINE_EV_DONE || ev.type == ENGINE_EV_ERROR ||
					  ev.type == ENGINE_EV_LOADED)) {
			*done = ev;
			return ev.type == ENGINE_EV_ERROR ? ev.code : 0;
		}
		engine_event_clear(&ev);
	}
}

static void test_bench(const char *path)
{
	char err[512];
	struct engine_params ep = {.n_threads = 2};
	engine *e = engine_create(&ep, err, sizeof err);
	CHECK(e != NULL, "engine_create: %s", err);
	if (!e)
		return;
	struct engine_event ev;
	struct engine_bench_opts bo = {.n_prompt = 40, .n_gen = 6, .reps = 2};
	CHECK(finish(e, engine_bench(e, &bo), &ev) == ENGINE_E_NOMODEL, "bench without a model");
	engine_event_clear(&ev);
	struct engine_bench_opts none = {0}, big = {.n_prompt = 8, .batch = ENGINE_BATCH_MAX + 1};
	CHECK(engine_bench(e, &none) == ENGINE_E_INVAL && engine_bench(e, &big) == ENGINE_E_INVAL, "bad options");

	struct engine_load_opts lo = {.n_ctx = 64, .device = ENGINE_DEVICE_CPU};
	CHECK(finish(e, engine_load(e, path, &lo), &ev) == 0 && ev.type == ENGINE_EV_LOADED, "load");
	engine_event_clear(&ev);

	/* a conversation's cache survives a benchmark */
	struct engine_sampling s;
	engine_sampling_default(&s);
	s.temperature = 0;
	struct engine_gen_opts g = {.max_tokens = 4, .add_generation_prompt = true};
	struct engine_msg q[] = {{"user", "Name a colour."}};
	CHECK(finish(e, engine_submit(e, 7, q, 1, &s, &g), &ev) == 0, "turn 1");
	engine_event_clear(&ev);

	CHECK(finish(e, engine_bench(e, &bo), &ev) == 0 && ev.type == ENGINE_EV_DONE && ev.stop == ENGINE_STOP_EOG,
	      "bench: %s", ev.message);
	const struct engine_bench_run *r = ev.blob;
	size_t n = ev.blob ? ev.blob_len / sizeof *r : 0;
	CHECK(n == 4, "4 runs, got %zu", n);
	if (n == 4) {
		CHECK(r[0].test == ENGINE_BENCH_PP && r[0].rep == 0 && r[1].rep == 1 && r[2].test == ENGINE_BENCH_TG &&
			      r[3].rep == 1,
		      "order");
		CHECK(r[0].n_tokens == 40 && r[2].n_tokens == 6 && r[0].ms > 0 && r[3].ms > 0, "tokens and times");
		CHECK(r[0].n_batch >= ENGINE_BATCH_MIN && r[0].n_batch <= ENGINE_BATCH_MAX && r[2].n_batch == 1,
		      "batch %u", r[0].n_batch);
		CHECK(r[0].gpu_layers == 0 && r[0].cpu_level[0] && r[0].decode_bytes > 0 && r[0].load_ms > 0 &&
			      r[0].prepare_ms > 0,
		      "figures");
	}
	engine_event_clear(&ev);

	struct engine_bench_opts fixed = {.n_prompt = 20, .reps = 1, .batch = 8};
	CHECK(finish(e, engine_bench(e, &fixed), &ev) == 0 && ev.blob_len == sizeof *r &&
		      ((const struct engine_bench_run *)ev.blob)->n_batch == 8,
	      "fixed batch");
	engine_event_clear(&ev);
	struct engine_bench_opts huge = {.n_prompt = 100, .reps = 1};
	CHECK(finish(e, engine_bench(e, &huge), &ev) == ENGINE_E_CONTEXT, "more than the context: %s", ev.message);
	engine_event_clear(&ev);

	CHECK(finish(e, engine_submit(e, 7, q, 1, &s, &g), &ev) == 0 && ev.stats.prompt_reused + 1 ==
										  ev.stats.prompt_tokens,
	      "the conversation's cache is kept: %u of %u reused", ev.stats.prompt_reused, ev.stats.prompt_tokens);
	engine_event_clear(&ev);
	engine_free(e);
}

/* Gemma 4's KV figure: narrower sliding-window heads, KV heads per layer,
 * the shared layers free (random-weight fixtures of the tree) */
static void test_gemma4_kv(void)
{
	static const struct {
		const char *name;
		uint64_t kv_heads, per_pos;
	} cases[] = {
		/* 5 own layers of 10: 4 sliding (1 head, K and V of 32, F16)
		 * + 1 global (1 head of 64) */
		{"gemma4-e2b-f16.gguf", 1, 4 * 1 * (32 + 32) * 2 + 1 * (64 + 64) * 2},
		/* 6 own layers: 5 sliding of 2 heads + 1 global of 1 */
		{"gemma4-31b-f16.gguf", 2, 5 * 2 * (32 + 32) * 2 + 1 * (64 + 64) * 2},
	};
	const char *src = getenv("TTYCHAT_SRCDIR");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char path[4096], err[512];
		snprintf(path, sizeof path, "%s/tests/fixtures/engine/random/%s", src ? src : ".", cases[i].name);
		engine_file *f = engine_file_open(path, err, sizeof err);
		CHECK(f != NULL, "open: %s", err);
		if (!f)
			continue;
		const struct engine_file_info *in = engine_file_info(f);
		CHECK(in->n_head_kv == cases[i].kv_heads && in->kv_bytes_per_pos == cases[i].per_pos,
		      "%s: %llu KV heads, %llu KV bytes per position, want %llu", cases[i].name,
		      (unsigned long long)in->n_head_kv, (unsigned long long)in->kv_bytes_per_pos,
		      (unsigned long long)cases[i].per_pos);
		engine_file_close(f);
	}
}

/* Hybrid recurrent models: KV rows only for the attention layers, and
 * the states (current, next and KV_MAX_CKPT = 8 checkpoints) apart */
static void test_hybrid_kv(void)
{
	static const struct {
		const char *name;
		uint64_t n_rec, per_pos, state;
	} cases[] = {
		/* 4 layers, the 4th attends (2 KV heads of 64); 3 Gated DeltaNet
		 * layers of 4-tap conv over 32 * (2 * 2 + 4) channels and 4
		 * value heads of 32 x 32 */
		{"qwen35-f16.gguf", 3, 1 * 2 * (64 + 64) * 2, 3 * (256 * 3 + 4 * 32 * 32) * 4 * 10},
		/* 6 layers, 2 attend; 4 short convolutions keep 2 of 3 taps of 128 */
		{"lfm2-f16.gguf", 4, 2 * 2 * (32 + 32) * 2, 4 * 128 * 2 * 4 * 10},
	};
	const char *src = getenv("TTYCHAT_SRCDIR");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char path[4096], err[512];
		snprintf(path, sizeof path, "%s/tests/fixtures/engine/random/%s", src ? src : ".", cases[i].name);
		engine_file *f = engine_file_open(path, err, sizeof err);
		CHECK(f != NULL, "open: %s", err);
		if (!f)
			continue;
		const struct engine_file_info *in = engine_file_info(f);
		CHECK(in->n_recurrent == cases[i].n_rec && in->kv_bytes_per_pos == cases[i].per_pos &&
			      in->rec_state_bytes == cases[i].state,
		      "%s: %llu recurrent layers, %llu KV bytes per position, %llu of states; want %llu, %llu, %llu",
		      cases[i].name, (unsigned long long)in->n_recurrent, (unsigned long long)in->kv_bytes_per_pos,
		      (unsigned long long)in->rec_state_bytes, (unsigned long long)cases[i].n_rec,
		      (unsigned long long)cases[i].per_pos, (unsigned long long)cases[i].state);
		engine_file_close(f);
	}
}

int main(void)
{
	test_chat();
	test_gemma4_kv();
	test_hybrid_kv();
	char path[4096];
	if (!tu_model(SMOLLM2_FILE, path, sizeof path)) {
		if (tu_fail == 0)
			tu_skip("SmolLM2 model not found (run scripts/fetch-models); the template checks passed");
		return tu_finish();
	}
	test_file(path);
	test_vocab(path);
	test_bench(path);
	return tu_finish();
}
