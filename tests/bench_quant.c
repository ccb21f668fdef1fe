/*
 * bench_quant.c - single-thread micro benchmark of the quant kernels
 * (`make bench-quant`, not part of make check).
 *
 * For each weight type and each CPU level the machine has it times
 *   - matvec over a matrix of about 64 MiB (streams from memory: GB/s of
 *     weights read, the decode-time figure),
 *   - matvec over a 256 KiB matrix (sits in L2: kernel compute speed),
 *   - matmul of a 4 MiB matrix with 64 tokens (prefill: weight GB/s
 *     equivalent per token and GMAC/s).
 * Each figure is the best of several timed runs of at least 0.2 s total.
 *
 * Levels from AVX2 up (--scalar adds the slow reference); "+p" rows go
 * through a packed struct quant_matrix where the level packs the type.
 *
 *   bench_quant [--scalar] [--cpu-time] [-n ROWLEN] [TYPE...]   e.g. bench_quant Q4_1 Q8_0
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "quant.h"

static const struct {
	uint32_t type;
	const char *name;
	uint32_t blk, bytes;
	int half_off[2];
} types[] = {
	{ GGML_TYPE_F32, "F32", 1, 4, { -1, -1 } },
	{ GGML_TYPE_F16, "F16", 1, 2, { -1, -1 } },
	{ GGML_TYPE_BF16, "BF16", 1, 2, { -1, -1 } },
	{ GGML_TYPE_Q4_0, "Q4_0", 32, 18, { 0, -1 } },
	{ GGML_TYPE_Q4_1, "Q4_1", 32, 20, { 0, 2 } },
	{ GGML_TYPE_Q5_0, "Q5_0", 32, 22, { 0, -1 } },
	{ GGML_TYPE_Q5_1, "Q5_1", 32, 24, { 0, 2 } },
	{ GGML_TYPE_Q8_0, "Q8_0", 32, 34, { 0, -1 } },
	{ GGML_TYPE_Q2_K, "Q2_K", 256, 84, { 80, 82 } },
	{ GGML_TYPE_Q3_K, "Q3_K", 256, 110, { 108, -1 } },
	{ GGML_TYPE_Q4_K, "Q4_K", 256, 144, { 0, 2 } },
	{ GGML_TYPE_Q5_K, "Q5_K", 256, 176, { 0, 2 } },
	{ GGML_TYPE_Q6_K, "Q6_K", 256, 210, { 208, -1 } },
	{ GGML_TYPE_IQ4_NL, "IQ4_NL", 32, 18, { 0, -1 } },
	{ GGML_TYPE_IQ4_XS, "IQ4_XS", 256, 136, { 0, -1 } },
	{ GGML_TYPE_MXFP4, "MXFP4", 32, 17, { -1, -1 } },
	{ GGML_TYPE_NVFP4, "NVFP4", 64, 36, { -1, -1 } },
	{ GGML_TYPE_TQ1_0, "TQ1_0", 256, 54, { 52, -1 } },
	{ GGML_TYPE_TQ2_0, "TQ2_0", 256, 66, { 64, -1 } },
	{ GGML_TYPE_Q1_0, "Q1_0", 128, 18, { 0, -1 } },
	{ GGML_TYPE_Q2_0, "Q2_0", 64, 18, { 0, -1 } },
};

/* --cpu-time: the thread's CPU clock instead of the wall clock, for a
 * shared machine where other processes take the core for whole time
 * slices (the streaming figures still share the memory bus with them) */
static clockid_t clock_id = CLOCK_MONOTONIC;

static double now(void)
{
	struct timespec ts;
	clock_gettime(clock_id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill(size_t ti, uint8_t *w, size_t bytes)
{
	for (size_t i = 0; i < bytes; i += 8) {
		uint64_t r = rnd();
		memcpy(w + i, &r, bytes - i < 8 ? bytes - i : 8);
	}
	uint16_t h = quant_fp32_to_fp16(0.01f);
	if (types[ti].blk == 1) {
		/* float formats: keep values finite */
		for (size_t i = 0; i + 2 <= bytes; i += 2)
			memcpy(w + i, &h, 2);
		return;
	}
	for (size_t b = 0; b + types[ti].bytes <= bytes; b += types[ti].bytes)
		for (int k = 0; k < 2; k++)
			if (types[ti].half_off[k] >= 0)
				memcpy(w + b + types[ti].half_off[k], &h, 2);
}

/* best seconds per call of one matvec / matmul; M non-NULL: through the
 * prepared (packed) matrix with its own activation rows MX */
static double time_mv(const struct quant_ops *ops, uint32_t t, const uint8_t *w, size_t rb,
		      int64_t rows, const void *xa, size_t xs, int64_t nt, int64_t n, float *y,
		      const struct quant_matrix *m, const void *mx, size_t mxs)
{
	double best = 1e30, total = 0.0;
	for (int rep = 0; rep < 50 && (rep < 3 || total < 0.2); rep++) {
		double t0 = now();
		if (m)
			quant_matrix_mul(m, 0, rows, mx, mxs, nt, y, rows);
		else if (nt == 1)
			ops->matvec(t, w, rb, 0, rows, xa, n, y);
		else
			ops->matmul(t, w, rb, 0, rows, xa, xs, nt, n, y, rows);
		double dt = now() - t0;
		total += dt;
		if (dt < best)
			best = dt;
	}
	return best;
}

int main(int argc, char **argv)
{
	int64_t n = 2048;
	const int64_t nt = 64;
	int first = 1, scalar = 0;

	for (;;) {
		if (argc > first && strcmp(argv[first], "--scalar") == 0)
			scalar = 1;
		else if (argc > first && strcmp(argv[first], "--cpu-time") == 0)
			clock_id = CLOCK_THREAD_CPUTIME_ID;
		else
			break;
		first++;
	}
	if (argc > first + 1 && strcmp(argv[first], "-n") == 0) {
		n = strtoll(argv[first + 1], NULL, 10);
		first += 2;
		if (n < 256 || n % 256 != 0 || n > (1 << 20)) {
			fprintf(stderr, "bench_quant: -n wants a multiple of 256\n");
			return 2;
		}
	}

	printf("single thread, n = %lld; CPU level detected: %s\n", (long long)n,
	       quant_level_name(quant_level_detect()));
	printf("%-5s %-9s %12s %14s %16s %10s\n", "type", "level", "matvec GB/s", "in-L2 GB/s",
	       "matmul64 GB/s*", "GMAC/s");
	for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
		uint32_t t = types[ti].type;
		int want = argc <= first;
		for (int a = first; a < argc; a++)
			want |= strcmp(argv[a], types[ti].name) == 0;
		if (!want)
			continue;
		size_t rb = (size_t)(n / types[ti].blk) * types[ti].bytes;
		int64_t rows_big = (int64_t)((64u << 20) / rb), rows_small = (int64_t)((256u << 10) / rb);
		int64_t rows_mm = (int64_t)((4u << 20) / rb);
		size_t xs = quant_act_row_bytes(t, n);
		uint8_t *w = malloc(rb * (size_t)rows_big);
		uint8_t *xa = malloc(xs * (size_t)nt);
		float *x = malloc(sizeof(float) * (size_t)n);
		float *y = malloc(sizeof(float) * (size_t)(rows_big > rows_mm * nt ? rows_big : rows_mm * nt));
		if (!w || !xa || !x || !y) {
			fprintf(stderr, "out of memory\n");
			return 1;
		}
		fill(ti, w, rb * (size_t)rows_big);
		for (int64_t k = 0; k < nt; k++) {
			for (int64_t i = 0; i < n; i++)
				x[i] = (float)((int64_t)(rnd() % 2001) - 1000) * 0.001f;
			quant_act_quantize(t, x, xa + (size_t)k * xs, n);
		}
		for (int lv = scalar ? 0 : 1; lv <= quant_level_detect(); lv++) {
			const struct quant_ops *ops = quant_ops_at(lv);
			for (int packed = 0; packed < 2; packed++) {
				struct quant_matrix mb, ms, mm_;
				struct quant_matrix *pb = NULL, *ps = NULL, *pm = NULL;
				uint8_t *mx = NULL;
				size_t mxs = 0;
				if (packed) {
					quant_matrix_init(&mb, t, w, rb, rows_big, n);
					mb.level = lv;
					if (quant_matrix_pack_bytes(&mb) == 0)
						continue;
					quant_matrix_init(&ms, t, w, rb, rows_small, n);
					quant_matrix_init(&mm_, t, w, rb, rows_mm, n);
					ms.level = mm_.level = lv;
					if (quant_matrix_pack(&mb) || quant_matrix_pack(&ms) || quant_matrix_pack(&mm_)) {
						fprintf(stderr, "out of memory\n");
						return 1;
					}
					pb = &mb;
					ps = &ms;
					pm = &mm_;
					mxs = quant_matrix_act_bytes(&mb);
					mx = aligned_alloc(64, (mxs * (size_t)nt + 63) / 64 * 64);
					if (!mx)
						return 1;
					for (int64_t k = 0; k < nt; k++) {
						for (int64_t i = 0; i < n; i++)
							x[i] = (float)((int64_t)(rnd() % 2001) - 1000) * 0.001f;
						quant_matrix_act_quantize(&mb, x, mx + (size_t)k * mxs);
					}
				}
				double big = time_mv(ops, t, w, rb, rows_big, xa, xs, 1, n, y, pb, mx, mxs);
				double small = time_mv(ops, t, w, rb, rows_small, xa, xs, 1, n, y, ps, mx, mxs);
				double mm = time_mv(ops, t, w, rb, rows_mm, xa, xs, nt, n, y, pm, mx, mxs);
				char lname[32];
				snprintf(lname, sizeof lname, "%s%s", quant_level_name(lv), packed ? "+p" : "");
				printf("%-5s %-9s %12.2f %14.2f %16.2f %10.2f\n", types[ti].name, lname,
				       (double)rb * rows_big / big * 1e-9,
				       (double)rb * rows_small / small * 1e-9,
				       (double)rb * rows_mm * nt / mm * 1e-9,
				       (double)rows_mm * n * nt / mm * 1e-9);
				fflush(stdout);
				if (packed) {
					quant_matrix_free(&mb);
					quant_matrix_free(&ms);
					quant_matrix_free(&mm_);
					free(mx);
				}
			}
		}
		free(w);
		free(xa);
		free(x);
		free(y);
	}
	printf("* matmul64: weight bytes x 64 tokens per second (what 64 matvecs would have to stream)\n");
	return 0;
}
