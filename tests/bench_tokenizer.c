/*
 * bench_tokenizer.c - tokenizer throughput: `make bench-tokenizer`.
 *
 * Builds about 1 MiB of mixed text by cycling through the conformance
 * corpus (prose in a dozen scripts, code, numbers, emoji, whitespace runs,
 * chat markup) and tokenizes it whole with each vocabulary it finds: the
 * two real models and llama.cpp's gpt-2 and llama-spm test vocabularies.
 * Prints the best of five runs in MB/s (10^6 bytes per second), by the wall
 * clock and by the process's CPU time (the same on an idle machine; on a
 * busy one the CPU-time figure is the tokenizer's own speed).  Not part of
 * make check.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "testutil.h"
#include "tokenizer.h"

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

static double cpu_now(void)
{
	return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

static char *mixed_text(size_t want, size_t *len)
{
	const char *src = getenv("TTYCHAT_SRCDIR");
	char path[4096];
	snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/corpus.dat", src && *src ? src : ".");
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	static char corpus[1 << 16];
	size_t n = fread(corpus, 1, sizeof corpus, f);
	fclose(f);

	/* the cases' texts, without the "case NAME LEN" headers */
	char *text = malloc(want + 4096);
	size_t o = 0;
	while (text && o < want) {
		for (size_t p = 0; p < n && o < want;) {
			char *nl = memchr(corpus + p, '\n', n - p);
			char *sp = nl ? memrchr(corpus + p, ' ', (size_t)(nl - corpus - (long)p)) : NULL;
			if (!sp)
				break;
			size_t l = strtoul(sp + 1, NULL, 10);
			size_t start = (size_t)(nl - corpus) + 1;
			if (start + l > n)
				break;
			memcpy(text + o, corpus + start, l);
			o += l;
			text[o++] = '\n';
			p = start + l + 1;
		}
	}
	*len = o;
	return text;
}

static void bench(const char *label, const char *path, const char *text, size_t len)
{
	char err[256];
	gguf_file *g = gguf_open(path, err, sizeof err);
	if (!g) {
		printf("%-30s skipped: %s\n", label, err);
		return;
	}
	double t0 = now();
	tokenizer *tk = tok_load(g, err, sizeof err);
	double t_load = now() - t0;
	gguf_close(g);
	if (!tk) {
		printf("%-30s skipped: %s\n", label, err);
		return;
	}
	int32_t *ids = NULL;
	size_t cap = 0, n = 0;
	double best = 1e30, best_cpu = 1e30;
	for (int r = 0; r < 5; r++) {
		n = 0;
		t0 = now();
		double c0 = cpu_now();
		int rc = tok_encode(tk, text, len, false, true, &ids, &n, &cap);
		double t = now() - t0, c = cpu_now() - c0;
		if (rc != TOK_OK) {
			printf("%-30s failed: %s\n", label, tok_strerror(rc));
			break;
		}
		if (t < best)
			best = t;
		if (c < best_cpu)
			best_cpu = c;
	}
	printf("%-30s %6.1f MB/s wall %6.1f MB/s cpu %9.0f tokens/s  %zu tokens  (load %.0f ms)\n", label,
	       len / best / 1e6, len / best_cpu / 1e6, n / best_cpu, n, t_load * 1e3);
	free(ids);
	tok_free(tk);
}

int main(void)
{
	size_t len;
	char *text = mixed_text(1 << 20, &len);
	if (!text) {
		fprintf(stderr, "bench_tokenizer: tests/fixtures/tokenizer/corpus.dat not found (set TTYCHAT_SRCDIR)\n");
		return 1;
	}
	printf("tokenizing %zu bytes of mixed text (best of 5)\n", len);
	char path[8192];
	if (tu_model(SMOLLM2_FILE, path, sizeof path))
		bench("SmolLM2 (gpt2 BPE, smollm)", path, text, len);
	if (tu_model(GEMMA3_FILE, path, sizeof path))
		bench("Gemma 3 (SentencePiece BPE)", path, text, len);
	const char *td = getenv("TTYCHAT_TESTDATA");
	if (td && *td) {
		snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", td);
		bench("ggml-vocab-gpt-2 (gpt-2)", path, text, len);
		snprintf(path, sizeof path, "%s/vocab/ggml-vocab-llama-spm.gguf", td);
		bench("ggml-vocab-llama-spm (SPM)", path, text, len);
	}
	free(text);
	return 0;
}
