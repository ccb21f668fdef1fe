/*
 * test_kv_types.c - the KV cache types through the engine's API:
 *   - a model whose head size a type cannot hold is refused with one line
 *     naming the head size and the type (random-weight qwen3, heads of 48);
 *   - SmolLM2 with a q3r K cache and a q4_0 V cache answers, its stats
 *     count the smaller cache, and its snapshot records both types and the
 *     rotation seed (version 3 header);
 *   - that snapshot restores into an engine loaded with the f16 cache (the
 *     conversation takes the snapshot's types) and the conversation goes
 *     on; a snapshot naming an unknown type is refused; a version-1
 *     snapshot (one type, unrotated) still restores.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "testutil.h"

static struct engine_event wait_for(engine *e, int req, int type)
{
	struct engine_event ev;
	while (engine_event_wait(e, &ev, 120000)) {
		if (ev.request == req && ((int)ev.type == type || ev.type == ENGINE_EV_ERROR))
			return ev;
		engine_event_clear(&ev);
	}
	memset(&ev, 0, sizeof ev);
	ev.type = ENGINE_EV_ERROR;
	return ev;
}

/* A greedy reply of a few tokens into CONV: 0 and its stats, or -1. */
static int ask(engine *e, uint64_t conv, const char *text, struct engine_stats *st)
{
	struct engine_sampling s;
	engine_sampling_default(&s);
	s.temperature = 0;
	struct engine_gen_opts g = {.max_tokens = 6, .add_generation_prompt = true};
	struct engine_msg q[] = {{"user", text}};
	struct engine_event ev = wait_for(e, engine_submit(e, conv, q, 1, &s, &g), ENGINE_EV_DONE);
	if (ev.type != ENGINE_EV_DONE) {
		fprintf(stderr, "submit: %s\n", ev.message);
		engine_event_clear(&ev);
		return -1;
	}
	*st = ev.stats;
	engine_event_clear(&ev);
	return 0;
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t import(engine *e, uint64_t conv, const void *blob, size_t len)
{
	struct engine_event ev = wait_for(e, engine_conv_import(e, conv, blob, len), ENGINE_EV_CONV_IMPORT);
	const uint32_t pos = ev.type == ENGINE_EV_CONV_IMPORT ? ev.position : 0;
	engine_event_clear(&ev);
	return pos;
}

int main(void)
{
	char path[4096], err[512];
	const char *src = getenv("TTYCHAT_SRCDIR");
	struct engine_params ep = {.n_threads = 2};
	engine *e = engine_create(&ep, err, sizeof err);
	CHECK(e != NULL, "engine_create: %s", err);
	if (!e)
		return tu_finish();

	/* heads of 48: no 32- or 64-element blocks */
	snprintf(path, sizeof path, "%s/tests/fixtures/engine/random/qwen3-f16.gguf", src ? src : ".");
	static const enum engine_kv_type bad[] = {ENGINE_KV_Q3R, ENGINE_KV_Q4_0, ENGINE_KV_Q8_0};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct engine_load_opts lo = {.n_ctx = 64, .kv_type = ENGINE_KV_F16, .kv_type_v = (int)bad[i] + 1};
		struct engine_event ev = wait_for(e, engine_load(e, path, &lo), ENGINE_EV_LOADED);
		char want[64];
		snprintf(want, sizeof want, "head size 48 cannot hold a %s V cache", engine_kv_type_name((int)bad[i]));
		CHECK(ev.type == ENGINE_EV_ERROR && ev.code == ENGINE_E_INVAL && strstr(ev.message, want) &&
		      !strchr(ev.message, '\n'), "%s refused for heads of 48: '%s'", engine_kv_type_name((int)bad[i]),
		      ev.message);
		engine_event_clear(&ev);
	}

	if (!tu_model(SMOLLM2_FILE, path, sizeof path)) {
		engine_free(e);
		printf("SKIP (the rest): SmolLM2 model not found (run scripts/fetch-models)\n");
		return tu_finish();
	}
	struct engine_stats st_f16 = {0}, st_q = {0};
	struct engine_load_opts f16 = {.n_ctx = 512, .device = ENGINE_DEVICE_CPU};
	struct engine_event ev = wait_for(e, engine_load(e, path, &f16), ENGINE_EV_LOADED);
	CHECK(ev.type == ENGINE_EV_LOADED, "f16 load: %s", ev.message);
	engine_event_clear(&ev);
	CHECK(ask(e, 1, "Name a colour.", &st_f16) == 0, "f16 reply");

	/* legacy snapshot: the f16 export, rewritten as version 1 (no V type, no seed) */
	ev = wait_for(e, engine_conv_export(e, 1), ENGINE_EV_CONV_EXPORT);
	unsigned char *v1 = NULL;
	size_t v1_len = 0;
	if (ev.type == ENGINE_EV_CONV_EXPORT && ev.blob_len > 48) {
		const unsigned char *b = ev.blob;
		CHECK(get32(b + 4) == 3 && get32(b + 32) == 1 && get32(b + 40) == 1 && get32(b + 44) == 0,
		      "f16 snapshot: version 3, F16 K and V, no rotation");
		v1_len = ev.blob_len - 8;
		v1 = malloc(v1_len);
		memcpy(v1, b, 40);
		memcpy(v1 + 40, b + 48, ev.blob_len - 48);
		put32(v1 + 4, 1);
	}
	engine_event_clear(&ev);

	struct engine_load_opts q = {.n_ctx = 512, .device = ENGINE_DEVICE_CPU, .kv_type = ENGINE_KV_Q3R,
				     .kv_type_v = ENGINE_KV_Q4_0 + 1};
	ev = wait_for(e, engine_load(e, path, &q), ENGINE_EV_LOADED);
	CHECK(ev.type == ENGINE_EV_LOADED, "q3r/q4_0 load: %s", ev.message);
	engine_event_clear(&ev);
	CHECK(ask(e, 1, "Name a colour.", &st_q) == 0, "q3r/q4_0 reply");
	/* SmolLM2: 30 layers of 3 KV heads of 64: per position and layer f16
	 * 384 + 384 bytes, q3r 78 + q4_0 108; 4 bytes of token id each */
	CHECK(st_q.kv_bytes > 0 && st_q.kv_bytes * 4 < st_f16.kv_bytes, "q3r/q4_0 cache %llu bytes, f16 %llu",
	      (unsigned long long)st_q.kv_bytes, (unsigned long long)st_f16.kv_bytes);
	printf("  KV cache after one turn: f16 %llu bytes, q3r K + q4_0 V %llu bytes\n",
	       (unsigned long long)st_f16.kv_bytes, (unsigned long long)st_q.kv_bytes);

	ev = wait_for(e, engine_conv_export(e, 1), ENGINE_EV_CONV_EXPORT);
	unsigned char *snap = NULL;
	size_t snap_len = 0;
	CHECK(ev.type == ENGINE_EV_CONV_EXPORT && ev.blob_len > 48, "q3r/q4_0 export");
	if (ev.type == ENGINE_EV_CONV_EXPORT && ev.blob_len > 48) {
		const unsigned char *b = ev.blob;
		const uint32_t n = get32(b + 36);
		CHECK(get32(b + 4) == 3 && get32(b + 32) == 200 && get32(b + 40) == 2 && get32(b + 44) != 0,
		      "snapshot header: version %u, K %u, V %u, seed %u", get32(b + 4), get32(b + 32), get32(b + 40),
		      get32(b + 44));
		CHECK(ev.blob_len == 48 + (size_t)n * 4 + (size_t)n * 30 * (78 + 108), "snapshot of %u positions: %zu bytes",
		      n, ev.blob_len);
		snap_len = ev.blob_len;
		snap = malloc(snap_len);
		memcpy(snap, b, snap_len);
	}
	engine_event_clear(&ev);

	/* back to an f16 engine: the snapshot brings its own types */
	ev = wait_for(e, engine_load(e, path, &f16), ENGINE_EV_LOADED);
	engine_event_clear(&ev);
	if (snap) {
		const uint32_t n = get32(snap + 36);
		CHECK(import(e, 2, snap, snap_len) == n, "q3r/q4_0 snapshot restored into the f16 engine");
		struct engine_stats st;
		CHECK(ask(e, 2, "Name a colour.", &st) == 0 && st.prompt_reused > 0 &&
			      st.prompt_reused + 1 >= st.prompt_tokens,
		      "the same prompt reuses the snapshot (reused %u of %u)", st.prompt_reused, st.prompt_tokens);
		put32(snap + 40, 9999);
		CHECK(import(e, 3, snap, snap_len) == 0, "a snapshot with an unknown V type is refused");
		put32(snap + 40, 2);
		put32(snap + 4, 7);
		CHECK(import(e, 3, snap, snap_len) == 0, "a snapshot of an unknown version is refused");
	}
	if (v1)
		CHECK(import(e, 4, v1, v1_len) == get32(v1 + 36), "a version-1 snapshot still restores");
	free(v1);
	free(snap);
	engine_free(e);
	return tu_finish();
}
