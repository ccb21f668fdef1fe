/*
 * fuzz_tokenizer.c - libFuzzer target for the tokenizer (engine/tokenizer.c,
 * pretok.c, unicode.c): hostile text through tok_encode() and hostile ids
 * through the streaming decoder.
 *
 * Vocabularies are loaded once: the GGUF files in TTYCHAT_FUZZ_VOCABS
 * (colon-separated), else the real models SmolLM2 (BPE), Gemma 3 (SPM)
 * and Qwen2.5-Coder (BPE, qwen2 pre-tokenizer) from TTYCHAT_MODELS_DIR
 * when present, and always the random-weight llama fixture.  The first
 * byte picks the vocabulary and the flags; the rest is the text.  Its ids
 * must be in range, and decoding them (and the input read as raw ids) must
 * give valid UTF-8.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_VOCABS 8
static tokenizer *vocabs[MAX_VOCABS];
static int n_vocabs;

static void load(const char *path)
{
	if (n_vocabs == MAX_VOCABS)
		return;
	char err[512];
	gguf_file *g = gguf_open(path, err, sizeof err);
	if (!g)
		return;
	tokenizer *tk = tok_load(g, err, sizeof err);
	gguf_close(g);
	if (tk)
		vocabs[n_vocabs++] = tk;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char path[4096];
	const char *list = getenv("TTYCHAT_FUZZ_VOCABS");
	if (list && *list) {
		char *copy = strdup(list), *save = NULL;
		for (char *p = copy ? strtok_r(copy, ":", &save) : NULL; p; p = strtok_r(NULL, ":", &save))
			load(p);
		free(copy);
	} else {
		const char *dir = getenv("TTYCHAT_MODELS_DIR");
		static const char *const real[] = {"SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-it-Q4_K_M.gguf",
						   "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"};
		for (size_t i = 0; dir && *dir && i < 3; i++)
			if (snprintf(path, sizeof path, "%s/%s", dir, real[i]) < (int)sizeof path)
				load(path);
	}
	const char *src = getenv("TTYCHAT_SRCDIR");
	snprintf(path, sizeof path, "%s/tests/fixtures/engine/random/llama-tied-f32.gguf", src ? src : ".");
	load(path);
	if (!n_vocabs) {
		fprintf(stderr, "fuzz_tokenizer: no vocabulary could be loaded (set TTYCHAT_SRCDIR)\n");
		exit(1);
	}
	return 0;
}

static bool valid_utf8(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		unsigned c = u[i];
		size_t need = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 4;
		if (need == 4 || need >= n - i)
			return need == 0 && i < n;
		for (size_t k = 1; k <= need; k++)
			if ((u[i + k] & 0xc0) != 0x80)
				return false;
		i += need + 1;
	}
	return true;
}

static void decode(const tokenizer *tk, const int32_t *ids, size_t n, unsigned flags)
{
	tok_decoder *d = tok_decoder_new(tk);
	if (!d)
		return;
	tok_decoder_options(d, flags);
	char buf[96];
	for (size_t i = 0; i < n; i++) {
		size_t w = tok_decoder_feed(d, ids[i], buf, sizeof buf);
		if (w > sizeof buf || !valid_utf8(buf, w))
			__builtin_trap();
	}
	size_t w;
	while ((w = tok_decoder_flush(d, buf, sizeof buf)) > 0)
		if (w > sizeof buf || !valid_utf8(buf, w))
			__builtin_trap();
	tok_decoder_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const tokenizer *tk = vocabs[data[0] % n_vocabs];
	bool add_bos = data[0] & 0x10, special = data[0] & 0x20;
	unsigned dflags = (data[0] & 0x40 ? TOK_DECODE_SPECIAL : 0) | (data[0] & 0x80 ? TOK_DECODE_STRIP_SPACE : 0);
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	int32_t *ids = NULL;
	size_t n = 0, cap = 0;
	if (tok_encode(tk, text, len, add_bos, special, &ids, &n, &cap) == TOK_OK) {
		for (size_t i = 0; i < n; i++)
			if (ids[i] < 0 || (uint32_t)ids[i] >= tok_n_vocab(tk))
				__builtin_trap();
		decode(tk, ids, n, dflags);
	}
	free(ids);
	/* the input as raw ids, out-of-range ones included */
	size_t m = len / 4;
	int32_t *raw = malloc(m ? m * sizeof *raw : 1);
	if (raw) {
		for (size_t i = 0; i < m; i++) {
			uint32_t v;
			memcpy(&v, text + 4 * i, 4);
			raw[i] = (int32_t)(v % (tok_n_vocab(tk) + 16)) - 8;
		}
		decode(tk, raw, m, dflags);
		free(raw);
	}
	return 0;
}
