/*
 * test_tokenizer.c - the tokenizer against llama.cpp.
 *
 * Parts, each reported with its own pass count:
 *  A. a small SentencePiece vocabulary built here as a GGUF in memory:
 *     merging, byte fallback, special tokens on and off (and llama.cpp's
 *     longest-first partition), end-of-generation by text, and the
 *     streaming decoder's edge cases (split UTF-8, invalid bytes, queueing
 *     into small buffers);
 *  B. every case of ../shared/testdata/vocab/NAME.gguf.inp against its .out,
 *     and the vectors of tokenizers newer than that folder (gemma-4) from
 *     the models/ folder of llama.cpp's tree ($TTYCHAT_LLAMACPP_DIR, by
 *     default the oracle's, as tests/test_template.py finds it);
 *  C. both real models against ids, attributes and pieces recorded from
 *     llama.cpp (tests/fixtures/tokenizer/, scripts/gen-tokenizer-fixtures.py);
 *  D. every supported pre-tokenizer name over the gpt-2 vocabulary against
 *     llama.cpp's digests;
 *  E. the hand-written gpt2/llama3/qwen2 splitters against PCRE2 running
 *     the regexes they implement, on random text.
 * B, C and D skip (with a message) when their inputs are absent.
 */
#include "config.h"

#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "pretok.h"
#include "testutil.h"
#include "tokenizer.h"

static const char *srcdir(void)
{
	const char *s = getenv("TTYCHAT_SRCDIR");
	return s && *s ? s : ".";
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 65536, n = 0;
	char *b = malloc(cap + 1);
	size_t r;
	while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			char *nb = realloc(b, 2 * cap + 1);
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
			cap *= 2;
		}
	}
	fclose(f);
	if (!b)
		return NULL;
	b[n] = 0;
	*len = n;
	return b;
}

static uint64_t fnv64(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 0x100000001b3ull;
	return h;
}

static uint32_t fnv32(uint32_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 0x01000193u;
	return h;
}

static uint32_t ids_digest(const int32_t *ids, size_t n)
{
	unsigned char b[4];
	uint32_t cnt = (uint32_t)n, h = 0x811c9dc5u;
	memcpy(b, &cnt, 4);  /* little-endian hosts only, as the fixtures */
	h = fnv32(h, b, 4);
	return fnv32(h, ids, 4 * n);
}

static void ids_str(const int32_t *ids, size_t n, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = 0;
	for (size_t i = 0; i < n && o + 16 < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%d", i ? " " : "", ids[i]);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

/* ---- A. a synthetic vocabulary ---- */

struct gb {
	unsigned char *p;
	size_t n, cap;
};

static void gb_put(struct gb *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = 2 * (b->n + n) + 256;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

static void gb_u32(struct gb *b, uint32_t v)
{
	gb_put(b, &v, 4);
}

static void gb_u64(struct gb *b, uint64_t v)
{
	gb_put(b, &v, 8);
}

static void gb_str(struct gb *b, const char *s)
{
	gb_u64(b, strlen(s));
	gb_put(b, s, strlen(s));
}

static void kv_str(struct gb *b, const char *key, const char *v)
{
	gb_str(b, key);
	gb_u32(b, GGUF_VT_STRING);
	gb_str(b, v);
}

static void kv_u32(struct gb *b, const char *key, uint32_t v)
{
	gb_str(b, key);
	gb_u32(b, GGUF_VT_UINT32);
	gb_u32(b, v);
}

struct syn_token {
	const char *text;
	int type;
	float score;
};

/* SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, then: */
static const struct syn_token syn_tokens[] = {
	{"\xe2\x96\x81", 1, -1.0f},               /* 259 ▁ */
	{"a", 1, -2.0f},                          /* 260 */
	{"b", 1, -2.0f},                          /* 261 */
	{"c", 1, -2.0f},                          /* 262 */
	{"\xe2\x96\x81" "a", 1, -3.0f},           /* 263 ▁a */
	{"ab", 1, -2.5f},                         /* 264 */
	{"abc", 1, -1.5f},                        /* 265 */
	{"\xe2\x96\x81" "abc", 1, -5.0f},         /* 266 ▁abc */
	{"h", 1, -2.0f},                          /* 267 */
	{"i", 1, -2.0f},                          /* 268 */
	{"hi", 1, -1.0f},                         /* 269 */
	{"\xe2\x96\x81hi", 1, -1.0f},             /* 270 ▁hi */
	{"<ctl>", 3, 0.0f},                       /* 271 control */
	{"<ud>", 4, 0.0f},                        /* 272 user-defined */
	{"<|im_end|>", 3, 0.0f},                  /* 273 ends generation by text */
	{"<end_of_turn>", 1, 0.0f},               /* 274 normal, made control by text */
	{"xyzw", 4, 0.0f},                        /* 275 */
	{"zwvut", 4, 0.0f},                       /* 276 */
	{"xy", 4, 0.0f},                          /* 277 */
	{"<unused7>", 3, 0.0f},                   /* 278 */
};
#define SYN_N (259 + (int)(sizeof syn_tokens / sizeof syn_tokens[0]))
enum { T_SP = 259, T_A, T_B, T_C, T_SPA, T_AB, T_ABC, T_SPABC, T_H, T_I, T_HI, T_SPHI, T_CTL, T_UD, T_IMEND,
       T_EOT, T_XYZW, T_ZWVUT, T_XY, T_UNUSED };

static unsigned char *synthetic_gguf(size_t *len)
{
	struct gb b = {0};
	char name[SYN_N][16];
	const char *texts[SYN_N];
	float scores[SYN_N];
	int32_t types[SYN_N];
	for (int i = 0; i < SYN_N; i++) {
		if (i < 3) {
			static const char *const first[] = {"<unk>", "<s>", "</s>"};
			texts[i] = first[i];
			types[i] = i == 0 ? 2 : 3;
			scores[i] = 0;
		} else if (i < 259) {
			snprintf(name[i], sizeof name[i], "<0x%02X>", i - 3);
			texts[i] = name[i];
			types[i] = 6;
			scores[i] = 0;
		} else {
			texts[i] = syn_tokens[i - 259].text;
			types[i] = syn_tokens[i - 259].type;
			scores[i] = syn_tokens[i - 259].score;
		}
	}
	gb_put(&b, "GGUF", 4);
	gb_u32(&b, 3);
	gb_u64(&b, 0);
	gb_u64(&b, 8);
	kv_str(&b, "general.architecture", "llama");
	kv_str(&b, "tokenizer.ggml.model", "llama");
	gb_str(&b, "tokenizer.ggml.tokens");
	gb_u32(&b, GGUF_VT_ARRAY);
	gb_u32(&b, GGUF_VT_STRING);
	gb_u64(&b, SYN_N);
	for (int i = 0; i < SYN_N; i++)
		gb_str(&b, texts[i]);
	gb_str(&b, "tokenizer.ggml.scores");
	gb_u32(&b, GGUF_VT_ARRAY);
	gb_u32(&b, GGUF_VT_FLOAT32);
	gb_u64(&b, SYN_N);
	gb_put(&b, scores, sizeof scores);
	gb_str(&b, "tokenizer.ggml.token_type");
	gb_u32(&b, GGUF_VT_ARRAY);
	gb_u32(&b, GGUF_VT_INT32);
	gb_u64(&b, SYN_N);
	gb_put(&b, types, sizeof types);
	kv_u32(&b, "tokenizer.ggml.bos_token_id", 1);
	kv_u32(&b, "tokenizer.ggml.eos_token_id", 2);
	kv_u32(&b, "tokenizer.ggml.unknown_token_id", 0);
	while (b.n % 32)
		gb_put(&b, "", 1);
	*len = b.n;
	return b.p;
}

static bool encode_is(const tokenizer *tk, const char *text, bool bos, bool special, const int32_t *want,
		      size_t nwant)
{
	int32_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc = tok_encode(tk, text, strlen(text), bos, special, &ids, &n, &cap);
	bool ok = rc == TOK_OK && n == nwant && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
	if (!ok) {
		char got[512], exp[512];
		ids_str(ids, n, got, sizeof got);
		ids_str(want, nwant, exp, sizeof exp);
		fprintf(stderr, "  encode \"%s\" special=%d: got [%s] want [%s] rc=%d\n", text, special, got, exp, rc);
	}
	free(ids);
	return ok;
}

#define ENC(tk, text, bos, special, ...)                                                       \
	do {                                                                                   \
		const int32_t want_[] = {__VA_ARGS__};                                         \
		CHECK(encode_is(tk, text, bos, special, want_, sizeof want_ / sizeof want_[0]), \
		      "encode %s", text);                                                      \
	} while (0)

/* Feeds ids to D and returns everything it writes, flushed, in out. */
static size_t decode_all(tok_decoder *d, const int32_t *ids, size_t n, size_t bufsize, char *out, size_t cap)
{
	char buf[256];
	size_t o = 0, k;
	if (bufsize > sizeof buf)
		bufsize = sizeof buf;
	for (size_t i = 0; i < n; i++) {
		k = tok_decoder_feed(d, ids[i], buf, bufsize);
		if (o + k <= cap) {
			memcpy(out + o, buf, k);
			o += k;
		}
	}
	while ((k = tok_decoder_flush(d, buf, bufsize)) > 0)
		if (o + k <= cap) {
			memcpy(out + o, buf, k);
			o += k;
		}
	return o;
}

static bool decodes_to(tok_decoder *d, const int32_t *ids, size_t n, size_t bufsize, const char *want)
{
	char out[512];
	size_t len = decode_all(d, ids, n, bufsize, out, sizeof out);
	bool ok = len == strlen(want) && memcmp(out, want, len) == 0;
	if (!ok)
		fprintf(stderr, "  decoded \"%.*s\" (%zu bytes), want \"%s\"\n", (int)len, out, len, want);
	return ok;
}

#define DEC(d, bufsize, want, ...)                                                            \
	do {                                                                                  \
		const int32_t ids_[] = {__VA_ARGS__};                                         \
		CHECK(decodes_to(d, ids_, sizeof ids_ / sizeof ids_[0], bufsize, want), "decode to %s", \
		      want);                                                                  \
	} while (0)

#define BYTE(b) (3 + (b))

static void part_robust(const tokenizer *tk, const char *label);

static void part_synthetic(void)
{
	int p0 = tu_pass, f0 = tu_fail;
	size_t len;
	unsigned char *buf = synthetic_gguf(&len);
	char err[256];
	gguf_file *g = gguf_open_memory(buf, len, "synthetic", err, sizeof err);
	CHECK(g != NULL, "synthetic gguf: %s", err);
	if (!g) {
		free(buf);
		return;
	}
	tokenizer *tk = tok_load(g, err, sizeof err);
	gguf_close(g);  /* the tokenizer keeps its own copy */
	free(buf);
	CHECK(tk != NULL, "synthetic vocab: %s", err);
	if (!tk)
		return;

	CHECK(tok_n_vocab(tk) == SYN_N, "n_vocab %u", tok_n_vocab(tk));
	CHECK(tok_model(tk) == TOK_MODEL_SPM, "model");
	CHECK(tok_bos(tk) == 1 && tok_eos(tk) == 2, "bos/eos");
	CHECK(tok_add_bos(tk) && !tok_add_eos(tk) && tok_add_space_prefix(tk), "SPM defaults");
	CHECK(tok_eot(tk) == T_IMEND, "eot found by text: %d", tok_eot(tk));

	/* merges by score: ab (-2.5) before ▁a (-3), then abc (-1.5), then ▁abc */
	ENC(tk, "abc", false, false, T_SPABC);
	ENC(tk, "abc", true, false, 1, T_SPABC);
	ENC(tk, "hi hi", false, false, T_SPHI, T_SPHI);
	ENC(tk, "", true, false, 1);
	/* byte fallback for what no token covers */
	ENC(tk, "\xc3\xa9", false, false, T_SP, BYTE(0xc3), BYTE(0xa9));
	/* control tokens only when asked; user-defined ones always */
	ENC(tk, "a<ctl>b", false, false, T_SPA, BYTE('<'), T_C, BYTE('t'), BYTE('l'), BYTE('>'), T_B);
	ENC(tk, "a<ctl>b", false, true, T_SPA, T_CTL, T_SP, T_B);
	ENC(tk, "a<ud>b", false, false, T_SPA, T_UD, T_SP, T_B);
	ENC(tk, "<|im_end|>", false, true, T_IMEND);
	ENC(tk, "<end_of_turn>hi", false, true, T_EOT, T_SPHI);
	/* longest special token first, wherever it is: zwvut takes 2..7,
	 * so xyzw cannot, and xy is what is left */
	ENC(tk, "xyzwvut", false, false, T_XY, T_ZWVUT);
	ENC(tk, "xyzwxyzw", false, false, T_XYZW, T_XYZW);
	{
		/* the same at scale: 100k copies */
		size_t reps = 100000, n = 0, cap = 0;
		char *big = malloc(7 * reps + 1);
		int32_t *ids = NULL;
		for (size_t i = 0; i < reps; i++)
			memcpy(big + 7 * i, "xyzwvut", 7);
		int rc = tok_encode(tk, big, 7 * reps, false, false, &ids, &n, &cap);
		bool ok = rc == TOK_OK && n == 2 * reps;
		for (size_t i = 0; ok && i < n; i++)
			ok = ids[i] == (i % 2 ? T_ZWVUT : T_XY);
		CHECK(ok, "100k overlapping special tokens: rc %d, %zu ids", rc, n);
		free(ids);
		free(big);
	}

	int32_t *ids = malloc(3 * sizeof *ids);
	size_t n = 1, cap = 3;
	ids[0] = 42;
	CHECK(tok_encode(tk, "hi", 2, false, false, &ids, &n, &cap) == TOK_OK && n == 2 && ids[0] == 42 &&
		      ids[1] == T_SPHI, "encode appends");
	n = 5;
	CHECK(tok_encode(tk, "hi", 2, false, false, &ids, &n, &cap) == TOK_ERR_INPUT && n == 5,
	      "n > cap is refused");
	free(ids);

	CHECK(tok_is_eog(tk, 2) && tok_is_eog(tk, T_IMEND) && tok_is_eog(tk, T_EOT), "eog by role and text");
	CHECK(!tok_is_eog(tk, T_CTL) && !tok_is_eog(tk, T_A) && !tok_is_eog(tk, -1) && !tok_is_eog(tk, SYN_N),
	      "not eog");
	CHECK(tok_attr(tk, T_EOT) & TOK_ATTR_CONTROL, "a normal end-of-turn token becomes control");
	CHECK(tok_attr(tk, T_UNUSED) == (TOK_ATTR_CONTROL | TOK_ATTR_UNUSED), "unused by name");
	CHECK(tok_attr(tk, T_UD) == TOK_ATTR_USER_DEFINED && tok_attr(tk, BYTE(0)) == TOK_ATTR_BYTE, "attrs");
	CHECK(tok_is_control(tk, T_CTL) && tok_is_control(tk, 0) && !tok_is_control(tk, T_UD), "control");
	CHECK(tok_find(tk, "<ud>", 4) == T_UD && tok_find(tk, "<ctl>", 5) == T_CTL &&
		      tok_find(tk, "nope", 4) == -1, "find by text");
	size_t pl;
	const char *p = tok_piece(tk, T_SPHI, &pl);
	CHECK(p && pl == 3 && memcmp(p, " hi", 3) == 0, "piece of ▁hi");
	p = tok_piece(tk, BYTE(0x41), &pl);
	CHECK(p && pl == 1 && p[0] == 'A', "piece of a byte token");
	p = tok_piece(tk, T_CTL, &pl);
	CHECK(p && pl == 5 && memcmp(p, "<ctl>", 5) == 0, "piece of a control token");
	CHECK(tok_piece(tk, SYN_N, &pl) == NULL && tok_text(tk, -1, &pl) == NULL, "out of range");

	tok_decoder *d = tok_decoder_new(tk);
	CHECK(d != NULL, "decoder");
	if (d) {
		char out[16];
		/* a character split over two byte tokens waits for its end */
		CHECK(tok_decoder_feed(d, BYTE(0xc3), out, sizeof out) == 0, "first half held");
		CHECK(tok_decoder_feed(d, BYTE(0xa9), out, sizeof out) == 2 && memcmp(out, "\xc3\xa9", 2) == 0,
		      "completed character");
		tok_decoder_reset(d);
		DEC(d, 64, "\xf0\x9f\x98\x80", BYTE(0xf0), BYTE(0x9f), BYTE(0x98), BYTE(0x80));
		/* invalid bytes: one U+FFFD per maximal invalid subpart */
		DEC(d, 64, "\xef\xbf\xbd", BYTE(0xff));
		DEC(d, 64, "\xef\xbf\xbd a", BYTE(0xc3), T_SPA);
		DEC(d, 64, "\xef\xbf\xbd\xef\xbf\xbd", BYTE(0xc0), BYTE(0xaf));
		DEC(d, 64, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", BYTE(0xed), BYTE(0xa0), BYTE(0x80));
		DEC(d, 64, "\xef\xbf\xbd\xef\xbf\xbd", BYTE(0xf4), BYTE(0x90));  /* past U+10FFFF */
		DEC(d, 64, "\xef\xbf\xbd", BYTE(0xf0), BYTE(0x9f), BYTE(0x98));         /* one cut-off prefix */
		DEC(d, 64, "x\xef\xbf\xbd", BYTE('x'), BYTE(0xe2), BYTE(0x82));  /* cut off by the end */
		/* control tokens hidden unless asked, user-defined always shown */
		DEC(d, 64, " hi<ud>", 1, T_CTL, T_SPHI, T_UD, T_IMEND);
		tok_decoder_options(d, TOK_DECODE_SPECIAL);
		DEC(d, 64, "<s><ctl> hi", 1, T_CTL, T_SPHI);
		tok_decoder_options(d, TOK_DECODE_STRIP_SPACE);
		DEC(d, 64, "hi hi", 1, T_SPHI, T_SPHI);
		tok_decoder_options(d, 0);
		/* a small buffer queues, never cuts a character, loses nothing */
		DEC(d, 2, " abc abc", T_SPABC, T_SPABC);
		DEC(d, 2, "\xc3\xa9\xc3\xa9\xc3\xa9", BYTE(0xc3), BYTE(0xa9), BYTE(0xc3), BYTE(0xa9), BYTE(0xc3),
		    BYTE(0xa9));
		CHECK(tok_decoder_feed(d, BYTE(0xc3), out, 1) == 0 && tok_decoder_feed(d, BYTE(0xa9), out, 1) == 0 &&
			      tok_decoder_flush(d, out, 4) == 2 && memcmp(out, "\xc3\xa9", 2) == 0,
		      "a character larger than the buffer waits");
		CHECK(tok_decoder_feed(d, -5, out, sizeof out) == 0 && tok_decoder_feed(d, SYN_N, out, sizeof out) == 0,
		      "out-of-range ids add nothing");
		tok_decoder_free(d);
	}
	printf("A synthetic vocabulary: %d passed, %d failed\n", tu_pass - p0, tu_fail - f0);
	part_robust(tk, "synthetic SPM");
	tok_free(tk);
}

/* A GGUF with only the keys given: model, pre (NULL: none), N tokens
 * "t0".."tN-1", scores (count, type), token types (count, type), merges. */
struct bad_vocab {
	const char *model, *pre;
	int n_tokens, n_scores, n_types, n_merges;
	uint32_t score_type, type_type;
};

static unsigned char *bad_gguf(const struct bad_vocab *v, size_t *len)
{
	struct gb b = {0};
	int n_kv = 1 + (v->model != NULL) + (v->pre != NULL) + (v->n_scores >= 0) + (v->n_types >= 0) +
		   (v->n_merges >= 0);
	gb_put(&b, "GGUF", 4);
	gb_u32(&b, 3);
	gb_u64(&b, 0);
	gb_u64(&b, (uint64_t)n_kv);
	if (v->model)
		kv_str(&b, "tokenizer.ggml.model", v->model);
	if (v->pre)
		kv_str(&b, "tokenizer.ggml.pre", v->pre);
	gb_str(&b, "tokenizer.ggml.tokens");
	gb_u32(&b, GGUF_VT_ARRAY);
	gb_u32(&b, GGUF_VT_STRING);
	gb_u64(&b, (uint64_t)v->n_tokens);
	for (int i = 0; i < v->n_tokens; i++) {
		char t[16];
		snprintf(t, sizeof t, "t%d", i);
		gb_str(&b, i == 1 ? "" : t);  /* an empty token, renamed as llama.cpp does */
	}
	if (v->n_scores >= 0) {
		gb_str(&b, "tokenizer.ggml.scores");
		gb_u32(&b, GGUF_VT_ARRAY);
		gb_u32(&b, v->score_type);
		gb_u64(&b, (uint64_t)v->n_scores);
		for (int i = 0; i < v->n_scores; i++)
			gb_u32(&b, 0);
	}
	if (v->n_types >= 0) {
		gb_str(&b, "tokenizer.ggml.token_type");
		gb_u32(&b, GGUF_VT_ARRAY);
		gb_u32(&b, v->type_type);
		gb_u64(&b, (uint64_t)v->n_types);
		for (int i = 0; i < v->n_types; i++)
			gb_u32(&b, 1);
	}
	if (v->n_merges >= 0) {
		gb_str(&b, "tokenizer.ggml.merges");
		gb_u32(&b, GGUF_VT_ARRAY);
		gb_u32(&b, GGUF_VT_STRING);
		gb_u64(&b, (uint64_t)v->n_merges);
		for (int i = 0; i < v->n_merges; i++)
			gb_str(&b, i % 2 ? "t0 t2" : "nospace");
	}
	while (b.n % 32)
		gb_put(&b, "", 1);
	*len = b.n;
	return b.p;
}

/* Loads V; returns whether it loaded, with the message in err. */
static bool bad_load(const struct bad_vocab *v, char *err, size_t errlen)
{
	size_t len;
	unsigned char *buf = bad_gguf(v, &len);
	gguf_file *g = gguf_open_memory(buf, len, "bad", err, errlen);
	tokenizer *tk = g ? tok_load(g, err, errlen) : NULL;
	bool ok = tk != NULL;
	if (tk) {
		/* whatever loads must encode and decode anything */
		int32_t *ids = NULL;
		size_t n = 0, cap = 0;
		int rc = tok_encode(tk, "t0 t1 t2 \xff", 10, true, true, &ids, &n, &cap);
		CHECK(rc == TOK_OK || rc == TOK_ERR_VOCAB, "encode on a thin vocab: %d", rc);
		free(ids);
	}
	tok_free(tk);
	gguf_close(g);
	free(buf);
	return ok;
}

static void part_malformed(void)
{
	int p0 = tu_pass, f0 = tu_fail;
	char err[256];
	const struct bad_vocab good = {"gpt2", "gpt-2", 4, -1, 4, 2, GGUF_VT_FLOAT32, GGUF_VT_INT32};
	struct bad_vocab v;

	CHECK(bad_load(&good, err, sizeof err), "minimal gpt2 vocab: %s", err);
	v = good;
	v.model = "bert";
	CHECK(!bad_load(&v, err, sizeof err) && strstr(err, "'bert'"), "unknown model named: %s", err);
	v = good;
	v.model = NULL;
	CHECK(!bad_load(&v, err, sizeof err) && strstr(err, "tokenizer.ggml.model"), "no model: %s", err);
	v = good;
	v.pre = "frobnicate";
	CHECK(!bad_load(&v, err, sizeof err) && strstr(err, "'frobnicate'"), "unknown pre named: %s", err);
	v = good;
	v.pre = NULL;
	CHECK(bad_load(&v, err, sizeof err), "no pre means default: %s", err);
	v = good;
	v.n_merges = -1;
	CHECK(!bad_load(&v, err, sizeof err) && strstr(err, "merges"), "gpt2 without merges: %s", err);
	v = good;
	v.n_types = 3;
	CHECK(!bad_load(&v, err, sizeof err) && strstr(err, "token_type"), "short token types: %s", err);
	v = good;
	v.type_type = GGUF_VT_FLOAT32;
	CHECK(!bad_load(&v, err, sizeof err) && strstr(err, "token_type"), "float token types: %s", err);
	v = good;
	v.model = "llama";
	v.n_scores = 2;
	CHECK(!bad_load(&v, err, sizeof err) && strstr(err, "scores"), "short scores: %s", err);
	v.n_scores = 4;
	v.score_type = GGUF_VT_UINT32;
	CHECK(!bad_load(&v, err, sizeof err) && strstr(err, "scores"), "uint32 scores: %s", err);
	v.score_type = GGUF_VT_INT32;
	CHECK(bad_load(&v, err, sizeof err), "int32 scores load: %s", err);
	v = good;
	v.model = "llama";
	v.n_tokens = 0;
	v.n_types = 0;
	CHECK(!bad_load(&v, err, sizeof err) && strstr(err, "token"), "no tokens: %s", err);
	printf("A malformed vocabularies: %d passed, %d failed\n", tu_pass - p0, tu_fail - f0);
}

/* Whatever the ids, the decoder's output is valid UTF-8; whatever the
 * bytes, encoding succeeds; several threads share one tokenizer. */
struct thread_job {
	const tokenizer *tk;
	const char *text;
	size_t len;
	int32_t *ids;
	size_t n;
	int rc;
};

static void *encode_thread(void *arg)
{
	struct thread_job *j = arg;
	size_t cap = 0;
	j->n = 0;
	j->rc = TOK_OK;
	for (int r = 0; r < 20 && j->rc == TOK_OK; r++) {
		j->n = 0;
		j->rc = tok_encode(j->tk, j->text, j->len, false, r & 1, &j->ids, &j->n, &cap);
	}
	return NULL;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t l = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3 : c >= 0xf0 && c < 0xf5 ? 4 : 0;
		if (!l || i + l > n)
			return false;
		uint32_t cp = l == 1 ? c : c & (0xff >> (l + 1));
		for (size_t k = 1; k < l; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
		if (cp < min[l] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += l;
	}
	return true;
}

static void part_robust(const tokenizer *tk, const char *label)
{
	int p0 = tu_pass, f0 = tu_fail;
	tok_decoder *d = tok_decoder_new(tk);
	CHECK(d != NULL, "decoder");
	int32_t *ids = NULL;
	size_t cap = 0;
	int bad_enc = 0, bad_dec = 0;
	for (int it = 0; d && it < 300; it++) {
		unsigned char text[256];
		size_t len = rnd(sizeof text);
		for (size_t i = 0; i < len; i++)
			text[i] = rnd(4) ? (unsigned char)"<|>a \n\xc3\xa9\xe4\xb8\x96"[rnd(12)] : (unsigned char)rnd(256);
		size_t n = 0;
		if (tok_encode(tk, (const char *)text, len, it & 1, it & 2, &ids, &n, &cap) != TOK_OK)
			bad_enc++;
		/* random ids, mostly byte-ish low ones and some anywhere */
		char out[4096];
		size_t o = 0, k;
		tok_decoder_options(d, (unsigned)rnd(4));
		for (int i = 0; i < 64; i++) {
			int32_t id = rnd(2) ? (int32_t)rnd(600) : (int32_t)rnd(tok_n_vocab(tk) + 10);
			k = tok_decoder_feed(d, id, out + o, rnd(2) ? 8 : sizeof out - o);
			o += k;
			if (o > sizeof out - 64)
				break;
		}
		while ((k = tok_decoder_flush(d, out + o, sizeof out - o)) > 0)
			o += k;
		if (!valid_utf8((const unsigned char *)out, o))
			bad_dec++;
	}
	CHECK(bad_enc == 0, "%s: %d random texts failed to encode", label, bad_enc);
	CHECK(bad_dec == 0, "%s: %d decoded streams are not valid UTF-8", label, bad_dec);
	free(ids);
	tok_decoder_free(d);

	/* threads: same ids as one thread alone */
	static const char text[] = "Shared <|im_start|> tokenizer \xf0\x9f\x98\x80 across threads: 12345 words\n\n";
	struct thread_job one = {tk, text, sizeof text - 1, NULL, 0, 0}, jobs[4];
	encode_thread(&one);
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		jobs[i] = one;
		jobs[i].ids = NULL;
		CHECK(pthread_create(&th[i], NULL, encode_thread, &jobs[i]) == 0, "thread");
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(jobs[i].rc == TOK_OK && jobs[i].n == one.n && !memcmp(jobs[i].ids, one.ids, one.n * 4),
		      "%s: thread %d got other ids", label, i);
		free(jobs[i].ids);
	}
	free(one.ids);
	printf("A robustness (%s): %d passed, %d failed\n", label, tu_pass - p0, tu_fail - f0);
}

/* ---- B. llama.cpp's vocabulary test vectors ---- */

/* The .inp/.out vectors of the vocab files in DIR (only ONLY when not
 * NULL); returns how many files it ran. */
static int vocab_dir(const char *dir, const char *only, int *total_pass, int *total)
{
	DIR *dp = opendir(dir);
	if (!dp)
		return 0;
	struct dirent *de;
	int files = 0;
	while ((de = readdir(dp)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l < 6 || strcmp(de->d_name + l - 5, ".gguf") != 0)
			continue;
		if (only && strcmp(de->d_name, only) != 0)
			continue;
		char path[8192 + 256], ipath[8192 + 300], opath[8192 + 300], err[256];
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		snprintf(ipath, sizeof ipath, "%s.inp", path);
		snprintf(opath, sizeof opath, "%s.out", path);
		size_t ni, no;
		char *inp = slurp(ipath, &ni), *out = slurp(opath, &no);
		if (!inp || !out) {
			free(inp);
			free(out);
			continue;
		}
		files++;
		gguf_file *g = gguf_open(path, err, sizeof err);
		tokenizer *tk = g ? tok_load(g, err, sizeof err) : NULL;
		gguf_close(g);
		CHECK(tk != NULL, "%s: %s", de->d_name, err);
		int pass = 0, n = 0;
		const char *sep = "\n__ggml_vocab_test__\n";
		char *ip = inp, *op = out;
		int32_t *ids = NULL;
		size_t cap = 0;
		while (tk && *ip && *op) {
			char *ie = strstr(ip, sep);
			char *oe = strchr(op, '\n');
			if (!ie || !oe)
				break;
			*oe = 0;
			size_t cnt = 0;
			int rc = tok_encode(tk, ip, (size_t)(ie - ip), false, false, &ids, &cnt, &cap);
			char got[8192];
			ids_str(ids, cnt, got, sizeof got);
			char *want = op;
			while (*want == ' ')
				want++;
			size_t wl = strlen(want);
			while (wl && want[wl - 1] == ' ')
				want[--wl] = 0;
			n++;
			if (rc == TOK_OK && strcmp(got, want) == 0)
				pass++;
			else
				fprintf(stderr, "  %s case %d: got [%s] want [%s]\n", de->d_name, n, got, want);
			ip = ie + strlen(sep);
			op = oe + 1;
		}
		CHECK(n > 0 && pass == n, "%s: %d of %d cases", de->d_name, pass, n);
		printf("B %s: %d/%d cases identical\n", de->d_name, pass, n);
		*total += n;
		*total_pass += pass;
		free(ids);
		tok_free(tk);
		free(inp);
		free(out);
	}
	closedir(dp);
	return files;
}

/* Gemma 4's vocabulary beyond its vectors: BOS always added, its turn and
 * tool tokens end generation, </s> is plain text, pieces unescape U+2581
 * and <0xNN> byte tokens, special tokens parse. */
static void gemma4_facts(const char *path)
{
	char err[256];
	gguf_file *g = gguf_open(path, err, sizeof err);
	tokenizer *tk = g ? tok_load(g, err, sizeof err) : NULL;
	gguf_close(g);
	CHECK(tk != NULL, "%s: %s", path, err);
	if (!tk)
		return;
	int p0 = tu_pass, f0 = tu_fail;
	CHECK(tok_add_bos(tk) && tok_bos(tk) >= 0, "gemma4: BOS is added");
	static const char *const eog[] = {"<eos>", "<turn|>", "<|tool_response>"};
	for (int i = 0; i < 3; i++) {
		int32_t id = tok_find(tk, eog[i], strlen(eog[i]));
		CHECK(id >= 0 && tok_is_eog(tk, id), "gemma4: %s ends generation", eog[i]);
	}
	int32_t s = tok_find(tk, "</s>", 4);
	CHECK(s < 0 || !tok_is_eog(tk, s), "gemma4: </s> is ordinary");
	int32_t *ids = NULL;
	size_t n = 0, cap = 0;
	const char *text = "<|turn>user\n Hi \xf0\x9f\x98\x80<turn|>";
	int rc = tok_encode(tk, text, strlen(text), true, true, &ids, &n, &cap);
	CHECK(rc == TOK_OK && n > 3 && ids[0] == tok_bos(tk), "gemma4: encode with specials");
	char out[256];
	size_t len = 0;
	for (size_t i = 1; rc == TOK_OK && i < n; i++) {
		size_t pl;
		const char *pc = tok_piece(tk, ids[i], &pl);
		if (len + pl < sizeof out) {
			memcpy(out + len, pc, pl);
			len += pl;
		}
	}
	CHECK(len == strlen(text) && !memcmp(out, text, len), "gemma4: pieces give the text back (%.*s)",
	      (int)len, out);
	free(ids);
	tok_free(tk);
	printf("B gemma-4 vocabulary facts: %d passed, %d failed\n", tu_pass - p0, tu_fail - f0);
}

static void part_testdata(const char *testdata)
{
	char dir[8192];
	int total_pass = 0, total = 0, files;
	snprintf(dir, sizeof dir, "%s/vocab", testdata);
	files = vocab_dir(dir, NULL, &total_pass, &total);
	if (!files) {
		printf("B SKIP: no vectors in %s (llama.cpp vocab test vectors)\n", dir);
	}
	/* vocabularies the shared folder does not carry yet */
	static const char *const newer[] = {"ggml-vocab-gemma-4.gguf"};
	const char *src = getenv("TTYCHAT_LLAMACPP_DIR");
	if (!src || !*src)
		src = "/work/oracle/llama_cpp_python-0.3.36/vendor/llama.cpp";
	for (size_t i = 0; i < sizeof newer / sizeof newer[0]; i++) {
		char p[8192 + 64];
		snprintf(p, sizeof p, "%s/%s", dir, newer[i]);
		if (access(p, R_OK) == 0)
			continue;  /* ran above */
		snprintf(dir, sizeof dir, "%s/models", src);
		int got = vocab_dir(dir, newer[i], &total_pass, &total);
		if (got) {
			snprintf(p, sizeof p, "%s/%s", dir, newer[i]);
			gemma4_facts(p);
		}
		if (!got)
			printf("B SKIP: %s: not in %s/vocab nor in $TTYCHAT_LLAMACPP_DIR/models\n", newer[i],
			       testdata);
		files += got;
		snprintf(dir, sizeof dir, "%s/vocab", testdata);
	}
	if (!files)
		return;
	printf("B llama.cpp vocab vectors: %d/%d cases identical in %d files\n", total_pass, total, files);
}

/* ---- C. real models against llama.cpp fixtures ---- */

struct corpus {
	char *data;
	size_t n;
	char *name[128];
	const char *text[128];
	size_t len[128];
};

static bool load_corpus(struct corpus *c)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/corpus.dat", srcdir());
	size_t len;
	c->data = slurp(path, &len);
	c->n = 0;
	if (!c->data)
		return false;
	char *p = c->data, *end = c->data + len;
	while (p < end && c->n < 128) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl || strncmp(p, "case ", 5) != 0)
			return false;
		*nl = 0;
		char *sp = strrchr(p, ' ');
		if (!sp || sp < p + 5)
			return false;
		*sp = 0;
		size_t l = strtoul(sp + 1, NULL, 10);
		if (l > (size_t)(end - nl - 1))
			return false;
		c->name[c->n] = p + 5;
		c->text[c->n] = nl + 1;
		c->len[c->n] = l;
		c->n++;
		p = nl + 1 + l + 1;
	}
	return c->n > 0;
}

static int corpus_find(const struct corpus *c, const char *name)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->name[i], name) == 0)
			return (int)i;
	return -1;
}

/* Parses up to max ints from s; returns the count. */
static size_t parse_ints(const char *s, int32_t *out, size_t max)
{
	size_t n = 0;
	char *e;
	while (n < max) {
		long v = strtol(s, &e, 10);
		if (e == s)
			break;
		out[n++] = (int32_t)v;
		s = e;
	}
	return n;
}

static void part_model(const struct corpus *c, const char *fixture)
{
	char path[4096], mpath[8192], err[256];
	snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/%s", srcdir(), fixture);
	size_t len;
	char *fx = slurp(path, &len);
	CHECK(fx != NULL, "fixture %s missing", path);
	if (!fx)
		return;
	tokenizer *tk = NULL;
	uint32_t *want_attr = NULL;
	bool *want_eog = NULL;
	int32_t *ids = NULL, *want = malloc(65536 * sizeof *want);
	size_t cap = 0;
	int cases = 0, cases_ok = 0, facts = 0, facts_ok = 0;
	const char *model = "?";
	for (char *line = strtok(fx, "\n"); line; line = strtok(NULL, "\n")) {
		char *arg = strchr(line, ' ');
		if (line[0] == '#' || !arg)
			continue;
		*arg++ = 0;
		if (!strcmp(line, "model")) {
			model = arg;
			if (!tu_model(arg, mpath, sizeof mpath)) {
				printf("C SKIP: model %s not in the models directory\n", arg);
				goto out;
			}
			gguf_file *g = gguf_open(mpath, err, sizeof err);
			tk = g ? tok_load(g, err, sizeof err) : NULL;
			gguf_close(g);
			CHECK(tk != NULL, "%s: %s", mpath, err);
			if (!tk)
				goto out;
			want_attr = malloc(tok_n_vocab(tk) * sizeof *want_attr);
			want_eog = calloc(tok_n_vocab(tk), sizeof *want_eog);
			for (uint32_t i = 0; i < tok_n_vocab(tk); i++)
				want_attr[i] = TOK_ATTR_NORMAL;
			continue;
		}
		if (!tk)
			continue;
		long v = strtol(arg, NULL, 10);
		bool ok = true;
		if (!strcmp(line, "n_vocab")) {
			ok = tok_n_vocab(tk) == (uint32_t)v;
		} else if (!strcmp(line, "bos")) {
			ok = tok_bos(tk) == v;
		} else if (!strcmp(line, "eos")) {
			ok = tok_eos(tk) == v;
		} else if (!strcmp(line, "eot")) {
			ok = tok_eot(tk) == v;
		} else if (!strcmp(line, "add_bos")) {
			ok = tok_add_bos(tk) == (v != 0);
		} else if (!strcmp(line, "add_eos")) {
			ok = tok_add_eos(tk) == (v != 0);
		} else if (!strcmp(line, "eog")) {
			size_t k = parse_ints(arg, want, 65536);
			for (size_t i = 0; i < k; i++)
				if (want[i] >= 0 && (uint32_t)want[i] < tok_n_vocab(tk))
					want_eog[want[i]] = true;
			for (uint32_t i = 0; i < tok_n_vocab(tk) && ok; i++)
				ok = tok_is_eog(tk, (int32_t)i) == want_eog[i];
		} else if (!strcmp(line, "attr")) {
			for (char *r = strtok_r(arg, " ", &arg); r; r = strtok_r(NULL, " ", &arg)) {
				unsigned long a, b, at;
				if (sscanf(r, "%lu-%lu:%lu", &a, &b, &at) == 3)
					for (unsigned long i = a; i <= b && i < tok_n_vocab(tk); i++)
						want_attr[i] = (uint32_t)at;
			}
			/* checked once all runs are read: see "pieces" */
			continue;
		} else if (!strcmp(line, "pieces")) {
			int special;
			unsigned long c0;
			unsigned long long h;
			if (sscanf(arg, "%d %lu %llx", &special, &c0, &h) != 3)
				continue;
			if (c0 == 0 && special == 1) {
				/* attributes, all runs read by now */
				uint32_t bad = 0, first = 0;
				for (uint32_t i = 0; i < tok_n_vocab(tk); i++)
					if (tok_attr(tk, (int32_t)i) != want_attr[i] && !bad++)
						first = i;
				facts++;
				facts_ok += bad == 0;
				CHECK(bad == 0, "%s: %u token attributes differ, first %u: %u want %u", model, bad,
				      first, tok_attr(tk, (int32_t)first), want_attr[first]);
			}
			uint64_t hh = 0xcbf29ce484222325ull;
			for (uint32_t i = (uint32_t)c0; i < c0 + 4096 && i < tok_n_vocab(tk); i++) {
				size_t pl;
				const char *pc = tok_piece(tk, (int32_t)i, &pl);
				if (!special && tok_is_control(tk, (int32_t)i))
					pl = 0;
				uint32_t l32 = (uint32_t)pl;
				hh = fnv64(hh, &l32, 4);
				hh = fnv64(hh, pc, pl);
			}
			ok = hh == h;
		} else if (!strcmp(line, "case")) {
			char *name = arg, *mode = strchr(arg, ' ');
			if (!mode)
				continue;
			*mode++ = 0;
			char *rest = strchr(mode, ' ');
			if (rest)
				*rest++ = 0;
			int ci = corpus_find(c, name);
			CHECK(ci >= 0, "corpus has no case %s", name);
			if (ci < 0)
				continue;
			size_t nw = rest ? parse_ints(rest, want, 65536) : 0, n = 0;
			bool special = !strcmp(mode, "special");
			int rc = tok_encode(tk, c->text[ci], c->len[ci], false, special, &ids, &n, &cap);
			cases++;
			if (rc == TOK_OK && n == nw && !memcmp(ids, want, n * sizeof *ids)) {
				cases_ok++;
			} else {
				char got[4096], exp[4096];
				ids_str(ids, n, got, sizeof got);
				ids_str(want, nw, exp, sizeof exp);
				CHECK(false, "%s case %s %s:\n   got  [%s]\n   want [%s]", model, name, mode, got, exp);
			}
			continue;
		} else {
			continue;
		}
		facts++;
		facts_ok += ok;
		CHECK(ok, "%s: %s %s differs (ours: bos %d eos %d eot %d)", model, line, arg, tok_bos(tk),
		      tok_eos(tk), tok_eot(tk));
	}
	printf("C %s: %d/%d cases identical to llama.cpp, %d/%d vocabulary facts\n", model, cases_ok, cases,
	       facts_ok, facts);
out:
	free(ids);
	free(want);
	free(want_attr);
	free(want_eog);
	tok_free(tk);
	free(fx);
}

/* ---- D. pre-tokenizers ---- */

static void part_pre(const struct corpus *c, const char *testdata)
{
	char vpath[8192], path[4096], err[256];
	snprintf(vpath, sizeof vpath, "%s/vocab/ggml-vocab-gpt-2.gguf", testdata);
	gguf_file *g = gguf_open(vpath, err, sizeof err);
	if (!g) {
		printf("D SKIP: %s: %s\n", vpath, err);
		return;
	}
	snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/pre-variants.txt", srcdir());
	size_t len;
	char *fx = slurp(path, &len);
	CHECK(fx != NULL, "fixture %s missing", path);
	int names = 0, names_ok = 0, cases = 0, cases_ok = 0;
	int idx[128], nidx = 0;
	int32_t *ids = NULL;
	size_t cap = 0;
	for (char *save, *line = fx ? strtok_r(fx, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "cases ", 6)) {
			char *s2, *tok = strtok_r(line + 6, " ", &s2);
			for (; tok && nidx < 128; tok = strtok_r(NULL, " ", &s2))
				idx[nidx++] = corpus_find(c, tok);
			continue;
		}
		if (strncmp(line, "pre ", 4) != 0)
			continue;
		char *s2, *name = strtok_r(line + 4, " ", &s2);
		char *first = strtok_r(NULL, " ", &s2);
		if (!name || !first)
			continue;
		struct tok_load_opts o = {.pre = name};
		tokenizer *tk = tok_load_opts(g, &o, err, sizeof err);
		names++;
		if (!strcmp(first, "error")) {
			CHECK(tk == NULL, "pre %s: llama.cpp refuses it, we load it", name);
			names_ok += tk == NULL;
			tok_free(tk);
			continue;
		}
		CHECK(tk != NULL, "pre %s: %s", name, err);
		if (!tk)
			continue;
		int bad = 0;
		char *dg = first;
		for (int k = 0; k < nidx && dg; k++, dg = strtok_r(NULL, " ", &s2)) {
			if (idx[k] < 0)
				continue;
			size_t n = 0;
			int rc = tok_encode(tk, c->text[idx[k]], c->len[idx[k]], false, false, &ids, &n, &cap);
			uint32_t want = (uint32_t)strtoul(dg, NULL, 16);
			cases++;
			if (rc == TOK_OK && ids_digest(ids, n) == want) {
				cases_ok++;
			} else {
				char got[4096];
				ids_str(ids, n, got, sizeof got);
				CHECK(false, "pre %s case %s differs from llama.cpp; ours [%s]", name, c->name[idx[k]], got);
				bad++;
			}
		}
		names_ok += bad == 0;
		tok_free(tk);
	}
	tokenizer *gtk = tok_load(g, err, sizeof err);
	if (gtk)
		part_robust(gtk, "gpt-2 BPE");
	tok_free(gtk);
	/* an unknown name is refused, naming it */
	struct tok_load_opts o = {.pre = "no-such-pre"};
	tokenizer *tk = tok_load_opts(g, &o, err, sizeof err);
	CHECK(tk == NULL && strstr(err, "no-such-pre"), "unknown pre-tokenizer: %s", err);
	tok_free(tk);
	gguf_close(g);
	free(ids);
	free(fx);
	printf("D pre-tokenizers: %d/%d names, %d/%d cases identical to llama.cpp\n", names_ok, names, cases_ok,
	       cases);
}

/* ---- E. hand-written splitters against PCRE2 ---- */

static void part_splitters(void)
{
	static const char *const atoms[] = {
		"a", "b", "Z", "s", "t", "re", "ve", "ll", "d", "m", "S", "T", "RE", "Ve", "LL", "D", "M",
		"'", "'", "0", "7", "42", " ", " ", " ", "  ", "\t", "\n", "\r", "\r\n", "\v", "\f",
		"\xc2\xa0", "\xe3\x80\x80", "\xe2\x80\x83", "\xc2\x85", ".", ",", "!", "?", "-", "_", "$", "+",
		"<", "|", "~", "(", "\xc3\xa9", "\xc3\x89", "\xd0\x96", "\xe4\xb8\x96", "\xd9\xa3", "\xe2\x85\xab",
		"\xc2\xbd", "\xcc\x81", "\xe0\xa5\x8d", "\xf0\x9f\x98\x80", "\xe2\x80\x8d", "\xe2\x80\x99",
		"\xff", "\x80", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\x01", "\x1f", "\x7f", "\xef\xbf\xbe",
	};
	static const char *const names[] = {"gpt-2", "llama3", "qwen2", "smollm", "default"};
	int p0 = tu_pass, f0 = tu_fail, runs = 0;
	for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
		char err[256];
		pretok *a = pretok_new(names[k], err, sizeof err);
		pretok *b = pretok_new_regex_only(names[k], err, sizeof err);
		CHECK(a && b, "pretok %s: %s", names[k], err);
		struct pretok_work wa = {0}, wb = {0};
		int bad = 0;
		for (int it = 0; a && b && it < 3000 && bad < 3; it++) {
			char text[512];
			size_t len = 0, n = rnd(40);
			for (size_t i = 0; i < n; i++) {
				const char *s = atoms[rnd(sizeof atoms / sizeof atoms[0])];
				size_t l = strlen(s);
				memcpy(text + len, s, l);
				len += l;
			}
			int ra = pretok_split(a, &wa, text, len, err, sizeof err);
			int rb = pretok_split(b, &wb, text, len, err, sizeof err);
			bool same = ra == 0 && rb == 0 && wa.n_words == wb.n_words &&
				    (wa.n_words == 0 || !memcmp(wa.words, wb.words, 2 * wa.n_words * sizeof *wa.words));
			runs++;
			if (!same) {
				bad++;
				fprintf(stderr, "  %s: splits differ on \"", names[k]);
				for (size_t i = 0; i < len; i++)
					fprintf(stderr, (unsigned char)text[i] < 0x20 || (unsigned char)text[i] >= 0x7f ?
						"\\x%02x" : "%c", (unsigned char)text[i]);
				fprintf(stderr, "\"\n   hand:");
				for (size_t i = 0; i < wa.n_words; i++)
					fprintf(stderr, " %u+%u", wa.words[2 * i], wa.words[2 * i + 1]);
				fprintf(stderr, "\n   pcre:");
				for (size_t i = 0; i < wb.n_words; i++)
					fprintf(stderr, " %u+%u", wb.words[2 * i], wb.words[2 * i + 1]);
				fputc('\n', stderr);
			}
		}
		CHECK(bad == 0, "%s: hand-written splitter differs from PCRE2", names[k]);
		pretok_work_free(&wa);
		pretok_work_free(&wb);
		pretok_free(a);
		pretok_free(b);
	}
	printf("E splitters vs PCRE2: %d random texts, %d passed, %d failed\n", runs, tu_pass - p0, tu_fail - f0);
}

int main(void)
{
	const char *testdata = getenv("TTYCHAT_TESTDATA");
	char def[4096];
	if (!testdata || !*testdata) {
		snprintf(def, sizeof def, "%s/../shared/testdata", srcdir());
		testdata = def;
	}
	part_synthetic();
	part_malformed();
	part_testdata(testdata);
	struct corpus c;
	if (load_corpus(&c)) {
		part_model(&c, "smollm2.txt");
		part_model(&c, "gemma3.txt");
		part_pre(&c, testdata);
	} else {
		CHECK(false, "tests/fixtures/tokenizer/corpus.dat missing or malformed");
	}
	free(c.data);
	part_splitters();
	return tu_finish();
}
