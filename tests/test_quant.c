/*
 * test_quant.c - tests of engine/quant: conversions, dequantisation
 * against the PyPI gguf package's values (llama.cpp's own for Q1_0/Q2_0;
 * tests/fixtures/quant-dequant.bin, made by scripts/gen-quant-fixtures.py)
 * and hand-made blocks, activation
 * quantisation rules, llama.cpp's own activation bytes and dot products
 * (tests/fixtures/quant-llama.bin), and every CPU level's dot/matvec/matmul
 * against the
 * scalar reference on odd sizes, unaligned buffers and padded strides.
 *
 * Tolerances: dequantisation is exact (the oracle does the same float
 * operations); a dot product may differ from the scalar one only by float
 * summation order, |a - b| <= 1e-5 * sum|w_i * x_i|; against the float dot
 * of unquantised activations the difference must stay within
 * sum|w_i| * |x_i - xq_i| (the activation rounding) plus that.
 *
 * Runs every level the CPU supports.  Exit 0 when all pass; prints
 * "N passed, M failed".
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gguf.h"
#include "quant.h"

static int n_pass, n_fail;

#define CHECK(cond, ...)                                                    \
	do {                                                                \
		if (cond) {                                                 \
			n_pass++;                                           \
		} else {                                                    \
			n_fail++;                                           \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                       \
			fputc('\n', stderr);                                \
		}                                                           \
	} while (0)

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static float frand(void)   /* uniform in [-1, 1) */
{
	return (float)((double)(rnd() >> 11) * 0x1p-53 * 2.0 - 1.0);
}

static uint32_t fbits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float bitsf(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* local copy of the block table (the weight types tested here) */
static uint32_t t_blk(uint32_t t)
{
	switch (t) {
	case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: return 1;
	case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K: case GGML_TYPE_Q8_K: return 256;
	case GGML_TYPE_IQ2_XXS: case GGML_TYPE_IQ2_XS: case GGML_TYPE_IQ2_S: case GGML_TYPE_IQ3_XXS:
	case GGML_TYPE_IQ3_S: case GGML_TYPE_IQ1_S: case GGML_TYPE_IQ1_M: return 256;
	case GGML_TYPE_IQ4_XS: case GGML_TYPE_TQ1_0: case GGML_TYPE_TQ2_0: return 256;
	case GGML_TYPE_NVFP4: case GGML_TYPE_Q2_0: return 64;
	case GGML_TYPE_Q1_0: return 128;
	default: return 32;
	}
}

static size_t t_bytes(uint32_t t)
{
	switch (t) {
	case GGML_TYPE_F32: return 4;
	case GGML_TYPE_F16: case GGML_TYPE_BF16: return 2;
	case GGML_TYPE_Q4_0: return 18;
	case GGML_TYPE_Q4_1: return 20;
	case GGML_TYPE_Q5_0: return 22;
	case GGML_TYPE_Q5_1: return 24;
	case GGML_TYPE_Q8_0: return 34;
	case GGML_TYPE_Q8_1: return 36;
	case GGML_TYPE_Q2_K: return 84;
	case GGML_TYPE_Q3_K: return 110;
	case GGML_TYPE_Q4_K: return 144;
	case GGML_TYPE_Q5_K: return 176;
	case GGML_TYPE_Q6_K: return 210;
	case GGML_TYPE_Q8_K: return 292;
	case GGML_TYPE_IQ2_XXS: return 66;
	case GGML_TYPE_IQ2_XS: return 74;
	case GGML_TYPE_IQ2_S: return 82;
	case GGML_TYPE_IQ3_XXS: return 98;
	case GGML_TYPE_IQ3_S: return 110;
	case GGML_TYPE_IQ1_S: return 50;
	case GGML_TYPE_IQ1_M: return 56;
	case GGML_TYPE_IQ4_NL: return 18;
	case GGML_TYPE_IQ4_XS: return 136;
	case GGML_TYPE_MXFP4: return 17;
	case GGML_TYPE_NVFP4: return 36;
	case GGML_TYPE_TQ1_0: return 54;
	case GGML_TYPE_TQ2_0: return 66;
	case GGML_TYPE_Q1_0: return 18;
	case GGML_TYPE_Q2_0: return 18;
	default: return 0;
	}
}

static const char *tname(uint32_t t)
{
	static const char *const names[] = {
		[GGML_TYPE_F32] = "F32", [GGML_TYPE_F16] = "F16", [GGML_TYPE_Q4_0] = "Q4_0",
		[GGML_TYPE_Q4_1] = "Q4_1", [GGML_TYPE_Q5_0] = "Q5_0", [GGML_TYPE_Q5_1] = "Q5_1",
		[GGML_TYPE_Q8_0] = "Q8_0", [GGML_TYPE_Q8_1] = "Q8_1", [GGML_TYPE_Q2_K] = "Q2_K",
		[GGML_TYPE_Q3_K] = "Q3_K", [GGML_TYPE_Q4_K] = "Q4_K", [GGML_TYPE_Q5_K] = "Q5_K",
		[GGML_TYPE_Q6_K] = "Q6_K", [GGML_TYPE_Q8_K] = "Q8_K", [GGML_TYPE_BF16] = "BF16",
		[GGML_TYPE_IQ2_XXS] = "IQ2_XXS", [GGML_TYPE_IQ2_XS] = "IQ2_XS", [GGML_TYPE_IQ2_S] = "IQ2_S",
		[GGML_TYPE_IQ3_XXS] = "IQ3_XXS", [GGML_TYPE_IQ3_S] = "IQ3_S", [GGML_TYPE_IQ1_S] = "IQ1_S",
		[GGML_TYPE_IQ1_M] = "IQ1_M",
		[GGML_TYPE_IQ4_NL] = "IQ4_NL", [GGML_TYPE_IQ4_XS] = "IQ4_XS", [GGML_TYPE_MXFP4] = "MXFP4",
		[GGML_TYPE_NVFP4] = "NVFP4", [GGML_TYPE_TQ1_0] = "TQ1_0", [GGML_TYPE_TQ2_0] = "TQ2_0",
		[GGML_TYPE_Q1_0] = "Q1_0", [GGML_TYPE_Q2_0] = "Q2_0",
	};
	return t < sizeof names / sizeof names[0] && names[t] ? names[t] : "?";
}

static size_t row_bytes(uint32_t t, int64_t n)
{
	return (size_t)(n / t_blk(t)) * t_bytes(t);
}

static const uint32_t weight_types[] = {
	GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
	GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
	GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
	GGML_TYPE_IQ2_XXS, GGML_TYPE_IQ2_XS, GGML_TYPE_IQ2_S, GGML_TYPE_IQ3_XXS, GGML_TYPE_IQ3_S,
	GGML_TYPE_IQ1_S, GGML_TYPE_IQ1_M,
	GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS, GGML_TYPE_MXFP4, GGML_TYPE_NVFP4,
	GGML_TYPE_TQ1_0, GGML_TYPE_TQ2_0, GGML_TYPE_Q1_0, GGML_TYPE_Q2_0,
};
#define N_WTYPES (sizeof weight_types / sizeof weight_types[0])

static void put_half(uint8_t *p, float f)
{
	uint16_t h = quant_fp32_to_fp16(f);
	memcpy(p, &h, 2);
}

/* IQ1_M keeps its fp16 scale in the top nibbles of the four u16 scale
 * words at bytes 48..55 */
static void put_iq1m_scale(uint8_t *blk, float f)
{
	uint16_t h = quant_fp32_to_fp16(f);
	for (int k = 0; k < 4; k++)
		blk[48 + 2 * k + 1] = (uint8_t)((blk[48 + 2 * k + 1] & 0x0f) | ((h >> (4 * k)) & 0xf) << 4);
}

/* Random but well-formed weights: random quant bytes, scales of a sane
 * size so sums are not dominated by one block. */
static void random_weights(uint32_t t, uint8_t *dst, int64_t n)
{
	size_t bb = t_bytes(t), nb = (size_t)(n / t_blk(t));

	for (size_t i = 0; i < nb * bb; i++)
		dst[i] = (uint8_t)rnd();
	for (size_t b = 0; b < nb; b++) {
		uint8_t *p = dst + b * bb;
		float s = 0.001f + 0.01f * fabsf(frand());
		switch (t) {
		case GGML_TYPE_F32: { float v = frand(); memcpy(p, &v, 4); break; }
		case GGML_TYPE_F16: put_half(p, frand()); break;
		case GGML_TYPE_BF16: { uint16_t h = quant_fp32_to_bf16(frand()); memcpy(p, &h, 2); break; }
		case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: case GGML_TYPE_Q8_0:
			put_half(p, s);
			break;
		case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1:
			put_half(p, s);
			put_half(p + 2, -8 * s * fabsf(frand()));
			break;
		case GGML_TYPE_Q2_K: put_half(p + 80, s); put_half(p + 82, s * 0.5f); break;
		case GGML_TYPE_Q3_K: put_half(p + 108, s * 0.1f); break;
		case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K:
			put_half(p, s * 0.1f);
			put_half(p + 2, s * 0.1f);
			break;
		case GGML_TYPE_Q6_K: put_half(p + 208, s * 0.05f); break;
		case GGML_TYPE_IQ2_XXS: case GGML_TYPE_IQ2_XS: case GGML_TYPE_IQ2_S:
		case GGML_TYPE_IQ3_XXS: case GGML_TYPE_IQ3_S: case GGML_TYPE_IQ1_S:
			put_half(p, s * 0.1f);
			break;
		case GGML_TYPE_IQ1_M: put_iq1m_scale(p, s * 0.1f); break;
		case GGML_TYPE_IQ4_NL: put_half(p, s * 0.1f); break;
		case GGML_TYPE_IQ4_XS: put_half(p, s * 0.005f); break;
		case GGML_TYPE_MXFP4: p[0] = (uint8_t)(117 + rnd() % 5); break;  /* 2^-11 .. 2^-7 */
		case GGML_TYPE_NVFP4:   /* E4M3 scales with exponents 1..3 */
			for (int k = 0; k < 4; k++)
				p[k] = (uint8_t)(((1 + rnd() % 3) << 3) | (rnd() & 7));
			break;
		case GGML_TYPE_TQ1_0: put_half(p + 52, s); break;
		case GGML_TYPE_TQ2_0: put_half(p + 64, s); break;
		case GGML_TYPE_Q1_0: case GGML_TYPE_Q2_0: put_half(p, s); break;
		}
	}
}

static void random_acts(float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		x[i] = frand() * 2.0f;
		if (rnd() % 97 == 0)
			x[i] *= 30.0f;   /* an outlier now and then, as in real activations */
	}
}

static int levels_available(void)
{
	return quant_level_detect() + 1;
}

/* ---- conversions ---------------------------------------------------------- */

static void test_fp16(void)
{
	int bad = 0;

	/* every half survives half -> float -> half (NaNs come back quiet) */
	for (uint32_t h = 0; h < 65536; h++) {
		float f = quant_fp16_to_fp32((uint16_t)h);
		uint16_t back = quant_fp32_to_fp16(f);
		int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
		uint16_t want = is_nan ? (uint16_t)(h | 0x200) : (uint16_t)h;
		if (back != want || (is_nan && !isnan(f)))
			bad++;
	}
	CHECK(bad == 0, "fp16 round trip: %d halves wrong", bad);

	/* rounding: midpoints between neighbouring positive halves tie to the
	 * even one, one float ulp either side goes to the nearer */
	bad = 0;
	for (uint32_t h = 0; h < 0x7c00; h++) {
		float a = quant_fp16_to_fp32((uint16_t)h), b = quant_fp16_to_fp32((uint16_t)(h + 1));
		if (h == 0x7bff)
			b = 65536.0f;    /* the "next half" past the largest is infinity */
		float mid = (float)(((double)a + (double)b) / 2.0);
		uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
		if (quant_fp32_to_fp16(mid) != even)
			bad++;
		if (quant_fp32_to_fp16(nextafterf(mid, 0.0f)) != h)
			bad++;
		if (quant_fp32_to_fp16(nextafterf(mid, INFINITY)) != h + 1)
			bad++;
		if (quant_fp32_to_fp16(-mid) != (even | 0x8000))
			bad++;
	}
	CHECK(bad == 0, "fp16 rounding: %d wrong", bad);

	CHECK(quant_fp32_to_fp16(1e-8f) == 0 && quant_fp32_to_fp16(-1e-8f) == 0x8000,
	      "tiny values flush to signed zero");
	CHECK(quant_fp32_to_fp16(0x1p-25f) == 0 && quant_fp32_to_fp16(0x1.000002p-25f) == 1,
	      "2^-25 ties to 0, just above rounds to the smallest subnormal");
	CHECK(quant_fp32_to_fp16(65519.0f) == 0x7bff && quant_fp32_to_fp16(65520.0f) == 0x7c00,
	      "overflow threshold 65520");
	CHECK(quant_fp32_to_fp16(1e30f) == 0x7c00 && quant_fp32_to_fp16(-INFINITY) == 0xfc00,
	      "infinities");
	CHECK((quant_fp32_to_fp16(NAN) & 0x7e00) == 0x7e00, "NaN stays a quiet NaN");
	CHECK(quant_fp16_to_fp32(0x0001) == 0x1p-24f && quant_fp16_to_fp32(0x3c00) == 1.0f &&
	      quant_fp16_to_fp32(0xc000) == -2.0f && quant_fp16_to_fp32(0x7bff) == 65504.0f,
	      "fp16 known values");
	CHECK(fbits(quant_fp16_to_fp32(0x8000)) == 0x80000000u, "negative zero");
}

static void test_bf16(void)
{
	int bad = 0;

	for (uint32_t h = 0; h < 65536; h++) {
		float f = quant_bf16_to_fp32((uint16_t)h);
		uint16_t back = quant_fp32_to_bf16(f);
		int is_nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
		if (back != (is_nan ? (h | 0x40) : h))
			bad++;
	}
	CHECK(bad == 0, "bf16 round trip: %d wrong", bad);
	CHECK(quant_fp32_to_bf16(bitsf(0x3f808000u)) == 0x3f80, "bf16 tie to even (down)");
	CHECK(quant_fp32_to_bf16(bitsf(0x3f818000u)) == 0x3f82, "bf16 tie to even (up)");
	CHECK(quant_fp32_to_bf16(bitsf(0x3f808001u)) == 0x3f81, "bf16 above tie");
	CHECK(quant_fp32_to_bf16(bitsf(0x7f7fffffu)) == 0x7f80, "bf16 overflow to inf");
	CHECK(quant_bf16_to_fp32(0x4049) == bitsf(0x40490000u), "bf16 widening");
}

static double abs_terms(uint32_t t, const float *w, const float *xq, int64_t n);

/* ---- dequantisation ------------------------------------------------------- */

static int same_value(float a, float b)
{
	return a == b || (isnan(a) && isnan(b));
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	uint8_t *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 65536;
			uint8_t *nb = realloc(buf, nc);
			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
			cap = nc;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		if (r == 0)
			break;
		n += r;
	}
	fclose(f);
	*len = n;
	return buf;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Every weight type has records in a fixture file (SEEN: records per type). */
static int all_types_seen(const int *seen)
{
	for (size_t k = 0; k < N_WTYPES; k++)
		if (!seen[weight_types[k]])
			return 0;
	return 1;
}

static void test_fixtures(const char *srcdir)
{
	char path[4096];
	size_t len = 0;
	int by_type[GGML_TYPE_COUNT] = {0};

	snprintf(path, sizeof path, "%s/tests/fixtures/quant-dequant.bin", srcdir);
	uint8_t *buf = read_file(path, &len);
	CHECK(buf != NULL, "cannot read %s", path);
	if (!buf)
		return;
	CHECK(len >= 12 && memcmp(buf, "TTQF", 4) == 0 && rd32(buf + 4) == 1, "fixture header");
	uint32_t nrec = rd32(buf + 8);
	size_t off = 12;
	int seen = 0;
	for (uint32_t r = 0; r < nrec; r++) {
		if (off + 12 > len)
			break;
		uint32_t type = rd32(buf + off), n = rd32(buf + off + 4), nbytes = rd32(buf + off + 8);
		off += 12;
		if (n == 0 || n > (1u << 20) || nbytes > len - off || (size_t)n * 4 > len - off - nbytes)
			break;
		const uint8_t *data = buf + off, *want_raw = buf + off + nbytes;
		off += nbytes + (size_t)n * 4;
		CHECK(row_bytes(type, n) == nbytes, "%s fixture size", tname(type));
		float *want = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
		uint8_t *copy = malloc(nbytes + 4);
		if (!want || !got || !copy)
			abort();
		memcpy(want, want_raw, (size_t)n * 4);
		for (int lv = 0; lv < levels_available(); lv++) {
			const struct quant_ops *ops = quant_ops_at(lv);
			/* 2 (F32: 4) bytes off any larger alignment on purpose */
			size_t o = type == GGML_TYPE_F32 ? 4 : 2;
			memcpy(copy + o, data, nbytes);
			int rc = ops->dequant_row(type, copy + o, got, n);
			uint32_t bad = 0, first = 0;
			for (uint32_t i = 0; i < n; i++)
				if (!same_value(got[i], want[i]) && bad++ == 0)
					first = i;
			CHECK(rc == 0 && bad == 0, "%s dequant (%s): %u of %u differ, first [%u] %g vs %g",
			      tname(type), quant_level_name(lv), bad, n, first, got[first], want[first]);
		}
		free(want);
		free(got);
		free(copy);
		if (type < GGML_TYPE_COUNT)
			by_type[type]++;
		seen++;
	}
	CHECK(seen == (int)nrec && off == len, "fixture file fully read (%d records)", seen);
	CHECK(all_types_seen(by_type), "every weight type in %s", path);
	free(buf);
}

/* llama.cpp's own kernels (quant-llama.bin): identical activation bytes at
 * every level, dot products within summation-order tolerance. */
static void test_llama(const char *srcdir)
{
	char path[4096];
	size_t len = 0;
	int by_type[GGML_TYPE_COUNT] = {0};

	snprintf(path, sizeof path, "%s/tests/fixtures/quant-llama.bin", srcdir);
	uint8_t *buf = read_file(path, &len);
	CHECK(buf != NULL, "cannot read %s", path);
	if (!buf)
		return;
	CHECK(len >= 12 && memcmp(buf, "TTQL", 4) == 0 && rd32(buf + 4) == 1, "llama fixture header");
	uint32_t nrec = rd32(buf + 8);
	size_t off = 12;
	int seen = 0;
	for (uint32_t r = 0; r < nrec && off + 16 <= len; r++) {
		uint32_t wt = rd32(buf + off), n = rd32(buf + off + 4);
		uint32_t wb = rd32(buf + off + 8), ab = rd32(buf + off + 12);
		off += 16;
		if (n == 0 || n > 65536 || wb > 65536 || ab > 65536 ||
		    (size_t)n * 4 + wb + ab + 4 > len - off)
			break;
		float *x = malloc((size_t)n * 4), *wf = malloc((size_t)n * 4), *xq = malloc((size_t)n * 4);
		uint8_t *w = malloc(wb + 4), *ref = malloc(ab + 4), *act = malloc(ab + 4);
		if (!x || !wf || !xq || !w || !ref || !act)
			abort();
		memcpy(x, buf + off, (size_t)n * 4);
		memcpy(w, buf + off + (size_t)n * 4, wb);
		memcpy(ref, buf + off + (size_t)n * 4 + wb, ab);
		float want;
		memcpy(&want, buf + off + (size_t)n * 4 + wb + ab, 4);
		off += (size_t)n * 4 + wb + ab + 4;
		CHECK(quant_act_row_bytes(wt, n) == ab && row_bytes(wt, n) == wb, "%s llama sizes",
		      tname(wt));
		quant_dequant_row(wt, w, wf, n);
		quant_dequant_row(quant_act_type(wt), ref, xq, n);
		double S = abs_terms(wt, wf, xq, n);
		for (int lv = 0; lv < levels_available(); lv++) {
			const struct quant_ops *ops = quant_ops_at(lv);
			memset(act, 0xaa, ab);
			ops->act_quantize(wt, x, act, n);
			CHECK(memcmp(act, ref, ab) == 0, "%s n=%u %s: activation bytes differ from llama.cpp",
			      tname(wt), n, quant_level_name(lv));
			float got = ops->vec_dot(wt, w, ref, n);
			CHECK(fabs(got - want) <= 1e-5 * S, "%s n=%u %s: dot %.9g vs llama.cpp %.9g",
			      tname(wt), n, quant_level_name(lv), got, want);
		}
		free(x);
		free(wf);
		free(xq);
		free(w);
		free(ref);
		free(act);
		if (wt < GGML_TYPE_COUNT)
			by_type[wt]++;
		seen++;
	}
	CHECK(seen == (int)nrec && off == len, "llama fixture fully read (%d records)", seen);
	CHECK(all_types_seen(by_type), "every weight type in %s", path);
	free(buf);
}

/* hand-made blocks with values worked out on paper */
static void test_handmade(void)
{
	float out[256];

	{
		struct quant_block_q4_0 b = {0};
		b.d = quant_fp32_to_fp16(0.5f);
		b.qs[0] = 0x1f;   /* elem 0: 15, elem 16: 1 */
		b.qs[15] = 0x80;  /* elem 15: 0, elem 31: 8 */
		quant_dequant_row(GGML_TYPE_Q4_0, &b, out, 32);
		CHECK(out[0] == 3.5f && out[16] == -3.5f && out[15] == -4.0f && out[31] == 0.0f &&
		      out[1] == -4.0f, "Q4_0 by hand");
	}
	{
		struct quant_block_q4_1 b = {0};
		b.d = quant_fp32_to_fp16(0.25f);
		b.m = quant_fp32_to_fp16(-1.0f);
		b.qs[3] = 0xa4;
		quant_dequant_row(GGML_TYPE_Q4_1, &b, out, 32);
		CHECK(out[3] == 0.0f && out[19] == 1.5f && out[0] == -1.0f, "Q4_1 by hand");
	}
	{
		struct quant_block_q5_0 b = {0};
		b.d = quant_fp32_to_fp16(1.0f);
		b.qh[0] = 0x01;   /* bit 0: elem 0 */
		b.qh[2] = 0x02;   /* bit 17: elem 17 */
		b.qs[0] = 0x0f;
		b.qs[1] = 0xf0;
		quant_dequant_row(GGML_TYPE_Q5_0, &b, out, 32);
		CHECK(out[0] == 15.0f && out[16] == -16.0f && out[17] == 15.0f && out[1] == -16.0f,
		      "Q5_0 by hand: %g %g %g %g", out[0], out[16], out[17], out[1]);
	}
	{
		struct quant_block_q5_1 b = {0};
		b.d = quant_fp32_to_fp16(2.0f);
		b.m = quant_fp32_to_fp16(0.5f);
		b.qh[3] = 0x80;   /* bit 31: elem 31 */
		b.qs[15] = 0x30;
		quant_dequant_row(GGML_TYPE_Q5_1, &b, out, 32);
		CHECK(out[31] == 38.5f && out[15] == 0.5f, "Q5_1 by hand");
	}
	{
		struct quant_block_q8_0 b = {0};
		b.d = quant_fp32_to_fp16(0.125f);
		b.qs[5] = -128;
		b.qs[6] = 127;
		quant_dequant_row(GGML_TYPE_Q8_0, &b, out, 32);
		CHECK(out[5] == -16.0f && out[6] == 15.875f, "Q8_0 by hand");
	}
	{
		struct quant_block_q2_k b = {0};
		b.d = quant_fp32_to_fp16(1.0f);
		b.dmin = quant_fp32_to_fp16(0.5f);
		b.scales[0] = 0x32;    /* sub-block 0: scale 2, min 3 */
		b.scales[5] = 0x01;    /* sub-block 5 (elems 80..95): scale 1, min 0 */
		b.qs[0] = 0x03;        /* elem 0: q 3 */
		b.qs[16] = 0x0c;       /* bits 2..3 of byte 16: elem 32+16 = 48 (sub-block 3) */
		b.qs[32 + 16] = 0x0c;  /* half 1, shift 2: elem 128+32+16 = 176 */
		b.qs[16 + 0] |= 0x30;  /* shift 4 of byte 16: elem 64+16 = 80, q 3 */
		quant_dequant_row(GGML_TYPE_Q2_K, &b, out, 256);
		CHECK(out[0] == 4.5f && out[1] == -1.5f && out[80] == 3.0f && out[48] == 0.0f,
		      "Q2_K by hand: %g %g %g %g", out[0], out[1], out[80], out[48]);
	}
	{
		struct quant_block_q3_k b = {0};
		b.d = quant_fp32_to_fp16(1.0f);
		/* scale 0 = 33 -> 1; scale 13 = low nibble from byte 5 high,
		 * high bits from byte 9 >> 6: 0x2 | (2 << 4) = 34 -> 2 */
		b.scales[0] = 0x01;
		b.scales[8] = 0x02;
		b.scales[5] = 0x20;
		b.scales[9] = 0x80;
		memset(b.hmask, 0xff, sizeof b.hmask);
		b.qs[0] = 0x03;     /* elem 0: q 3, hmask set -> 3 */
		b.hmask[1] = 0xfe;  /* elem 1: hmask bit 0 clear -> q 0 - 4 */
		/* elem 208 = half 1, j 2 (shift 4), l 16: sub-block 13 */
		b.qs[32 + 16] = 0x10;
		quant_dequant_row(GGML_TYPE_Q3_K, &b, out, 256);
		CHECK(out[0] == 3.0f && out[1] == -4.0f && out[208] == 2.0f && out[16] == -0.0f * 0,
		      "Q3_K by hand: %g %g %g %g", out[0], out[1], out[208], out[16]);
	}
	{
		struct quant_block_q4_k b = {0};
		b.d = quant_fp32_to_fp16(1.0f);
		b.dmin = quant_fp32_to_fp16(1.0f);
		b.scales[0] = 0x40 | 2;   /* sc0 = 2, top bits 1 -> sc4 += 16 */
		b.scales[4] = 0x80 | 1;   /* mn0 = 1, top bits 2 -> mn4 += 32 */
		b.scales[8] = 0x53;       /* sc4 low = 3, mn4 low = 5 */
		b.qs[0] = 0x21;           /* elem 0: 1, elem 32: 2 */
		b.qs[64] = 0x07;          /* chunk 2 (elems 128..191): elem 128, sub-block 4 */
		quant_dequant_row(GGML_TYPE_Q4_K, &b, out, 256);
		/* elem 0: 2*1 - 1; elem 128: (16+3)*7 - (32+5) */
		CHECK(out[0] == 1.0f && out[32] == 0.0f && out[128] == 96.0f,
		      "Q4_K by hand: %g %g %g", out[0], out[32], out[128]);
	}
	{
		struct quant_block_q5_k b = {0};
		b.d = quant_fp32_to_fp16(0.5f);
		b.dmin = quant_fp32_to_fp16(0.0f);
		b.scales[1] = 4;          /* sc1 = 4: elems 32..63 */
		b.qs[0] = 0x30;           /* elem 32: low 3 */
		b.qh[0] = 0x02;           /* bit 1: elem 32 high bit */
		quant_dequant_row(GGML_TYPE_Q5_K, &b, out, 256);
		CHECK(out[32] == 38.0f && out[0] == 0.0f, "Q5_K by hand: %g", out[32]);
	}
	{
		struct quant_block_q6_k b = {0};
		b.d = quant_fp32_to_fp16(0.5f);
		for (int i = 0; i < 16; i++)
			b.scales[i] = (int8_t)(i - 8);
		b.ql[0] = 0x2f;   /* elem 0 low 15, elem 64 low 2 */
		b.qh[0] = 0x13;   /* elem 0 high 3, elem 64 high 1 */
		quant_dequant_row(GGML_TYPE_Q6_K, &b, out, 256);
		/* elem 0: (63-32)*0.5*(-8); elem 64: (18-32)*0.5*(4-8); elem 255:
		 * ql[127]=0, qh[63]=0 -> -32 * 0.5 * (15-8) */
		CHECK(out[0] == -124.0f && out[64] == 28.0f && out[255] == -112.0f,
		      "Q6_K by hand: %g %g %g", out[0], out[64], out[255]);
	}
	{
		struct quant_block_q8_k b;
		memset(&b, 0, sizeof b);
		b.d = -0.25f;
		b.qs[7] = 100;
		quant_dequant_row(GGML_TYPE_Q8_K, &b, out, 256);
		CHECK(out[7] == -25.0f, "Q8_K by hand");
	}
}

/* grid i-quants by hand: grid rows are facts of the format (iq2xxs_grid[0]
 * = all 8s, iq3s_grid[0] = all 1s, iq3s_grid[256] = 7 5 9 5, iq1s_grid[0]
 * = all -1); the dot products against a Q8_K row of ones over the first
 * eight elements at every level */
static void test_handmade_iq(void)
{
	uint8_t b[110];
	float out[256];
	struct quant_block_q8_k y;

	memset(&y, 0, sizeof y);
	y.d = 1.0f;
	memset(y.qs, 1, 8);
	y.bsums[0] = 8;

	memset(b, 0, sizeof b);
	put_half(b, 1.0f);
	b[6] = 0x01;   /* sub-block 0: group 0 sign index 1 = bits 0 and 7 */
	b[9] = 0x30;   /* scale 3: d * 3.5 * 0.25 */
	quant_dequant_row(GGML_TYPE_IQ2_XXS, b, out, 256);
	CHECK(out[0] == -7.0f && out[1] == 7.0f && out[7] == -7.0f && out[8] == 7.0f && out[32] == 1.0f,
	      "IQ2_XXS by hand: %g %g %g %g %g", out[0], out[1], out[7], out[8], out[32]);
	for (int lv = 0; lv < levels_available(); lv++)
		CHECK(quant_ops_at(lv)->vec_dot(GGML_TYPE_IQ2_XXS, b, &y, 256) == 28.0f, "IQ2_XXS dot %s",
		      quant_level_name(lv));

	memset(b, 0, sizeof b);
	put_half(b, 0.5f);
	b[66] = 0x01;    /* qh of sub-block 0: ninth index bit of its first 4 */
	b[74] = 0x02;    /* signs: element 1 */
	b[106] = 0x21;   /* sub-block 0 scale 1 (ls 3), sub-block 1 scale 2 (ls 5) */
	quant_dequant_row(GGML_TYPE_IQ3_S, b, out, 256);
	CHECK(out[0] == 10.5f && out[1] == -7.5f && out[2] == 13.5f && out[3] == 7.5f &&
	      out[4] == 1.5f && out[32] == 2.5f && out[64] == 0.5f,
	      "IQ3_S by hand: %g %g %g %g %g %g", out[0], out[1], out[2], out[3], out[4], out[32]);
	for (int lv = 0; lv < levels_available(); lv++)
		CHECK(quant_ops_at(lv)->vec_dot(GGML_TYPE_IQ3_S, b, &y, 256) == 30.0f, "IQ3_S dot %s",
		      quant_level_name(lv));

	/* IQ1_M: d = 0.25 = fp16 0x3400 in the top nibbles of the scale words */
	memset(b, 0, sizeof b);
	b[48] = 0x02;    /* sub-block 0: first half scale 2 (ls 5), second 0 (ls 1) */
	b[53] = 0x40;
	b[55] = 0x30;
	b[32] = 0x08;    /* qh: group 0 shifted by -1/8, group 1 by +1/8 */
	quant_dequant_row(GGML_TYPE_IQ1_M, b, out, 256);
	CHECK(out[0] == -1.40625f && out[8] == -1.09375f && out[16] == -0.21875f,
	      "IQ1_M by hand: %g %g %g", out[0], out[8], out[16]);
	for (int lv = 0; lv < levels_available(); lv++)
		CHECK(quant_ops_at(lv)->vec_dot(GGML_TYPE_IQ1_M, b, &y, 256) == -11.25f, "IQ1_M dot %s",
		      quant_level_name(lv));
}

/* ---- activation quantisation ---------------------------------------------------- */

/* quant_nl.c's formats: blocks worked out on paper (levels, scale
 * decoding including subnormal and special scale bytes, element order) */
static void test_handmade_nl(void)
{
	float out[256];

	{
		struct quant_block_iq4_nl b = {0};
		b.d = quant_fp32_to_fp16(0.5f);
		b.qs[0] = 0x0f;   /* elem 0: level 15, elem 16: level 0 */
		b.qs[1] = 0x78;
		quant_dequant_row(GGML_TYPE_IQ4_NL, &b, out, 32);
		CHECK(out[0] == 56.5f && out[16] == -63.5f && out[1] == 0.5f && out[17] == -5.0f,
		      "IQ4_NL by hand");
	}
	{
		struct quant_block_iq4_xs b = {0};
		b.d = quant_fp32_to_fp16(1.0f);
		b.scales_l[0] = 0x21;                         /* sub-blocks 0, 1: low bits 1, 2 */
		b.scales_h = (uint16_t)(2 | 1 << 2 | 3 << 14); /* high bits 2, 1; sub-block 7: 3 */
		b.qs[0] = 0x8f;
		quant_dequant_row(GGML_TYPE_IQ4_XS, &b, out, 256);
		/* scales 33, 18, 0 .. 0, 48 minus 32 */
		CHECK(out[0] == 113.0f && out[16] == 1.0f && out[1] == -127.0f && out[32] == 1778.0f &&
		      out[64] == 4064.0f && out[255] == -2032.0f, "IQ4_XS by hand");
	}
	{
		struct quant_block_mxfp4 b[3] = {{0}};
		b[0].e = 128;      /* 2^0 */
		b[0].qs[0] = 0x97; /* elem 0: 12 (E2M1 6.0 doubled), elem 16: -1 */
		b[1].e = 0;        /* 2^-128 and 2^-127: subnormal */
		b[1].qs[0] = 0x01;
		b[2].e = 1;
		b[2].qs[0] = 0x07;
		quant_dequant_row(GGML_TYPE_MXFP4, b, out, 96);
		CHECK(out[0] == 12.0f && out[16] == -1.0f && out[1] == 0.0f && out[32] == 0x1p-128f &&
		      out[64] == 12.0f * 0x1p-127f, "MXFP4 by hand");
	}
	{
		struct quant_block_nvfp4 b = {0};
		b.d[0] = 0x38;     /* E4M3 1.0, halved */
		b.d[1] = 0x01;     /* subnormal 2^-9, halved */
		b.d[2] = 0x7f;     /* decodes to 0 */
		b.d[3] = 0x7e;     /* 448, halved */
		b.qs[0] = 0x7f;    /* elem 0: -12, elem 8: 12 */
		b.qs[8] = 0x01;
		b.qs[16] = 0x77;
		b.qs[24] = 0x05;
		quant_dequant_row(GGML_TYPE_NVFP4, &b, out, 64);
		CHECK(out[0] == -6.0f && out[8] == 6.0f && out[16] == 0x1p-10f && out[24] == 0.0f &&
		      out[32] == 0.0f && out[40] == 0.0f && out[48] == 1344.0f, "NVFP4 by hand");
	}
	{
		/* 188 holds the trits 2, 0, 1, 2, 1 (values +1, -1, 0, +1, 0) */
		struct quant_block_tq1_0 b = {0};
		memset(b.qs, 128, sizeof b.qs);   /* 128: every trit 1 (value 0) */
		memset(b.qh, 128, sizeof b.qh);
		b.qs[0] = b.qs[32] = b.qh[0] = 188;
		b.d = quant_fp32_to_fp16(1.0f);
		quant_dequant_row(GGML_TYPE_TQ1_0, &b, out, 256);
		CHECK(out[0] == 1.0f && out[32] == -1.0f && out[64] == 0.0f && out[96] == 1.0f &&
		      out[128] == 0.0f && out[160] == 1.0f && out[176] == -1.0f && out[208] == 1.0f &&
		      out[240] == 1.0f && out[244] == -1.0f && out[252] == 1.0f && out[1] == 0.0f &&
		      out[255] == 0.0f, "TQ1_0 by hand");
	}
	{
		struct quant_block_tq2_0 b;
		memset(b.qs, 0x55, sizeof b.qs);   /* every code 1: value 0 */
		b.qs[0] = 0xe4;                     /* codes 0, 1, 2, 3 in elems 0, 32, 64, 96 */
		b.qs[37] = 0x56;
		b.d = quant_fp32_to_fp16(2.0f);
		quant_dequant_row(GGML_TYPE_TQ2_0, &b, out, 256);
		CHECK(out[0] == -2.0f && out[32] == 0.0f && out[64] == 2.0f && out[96] == 4.0f &&
		      out[133] == 2.0f && out[1] == 0.0f, "TQ2_0 by hand");
	}
	{
		struct quant_block_q1_0 b = {0};
		b.d = quant_fp32_to_fp16(0.25f);
		b.qs[0] = 0x01;
		b.qs[15] = 0x80;
		quant_dequant_row(GGML_TYPE_Q1_0, &b, out, 128);
		CHECK(out[0] == 0.25f && out[1] == -0.25f && out[127] == 0.25f && out[120] == -0.25f,
		      "Q1_0 by hand");
	}
	{
		struct quant_block_q2_0 b = {0};
		b.d = quant_fp32_to_fp16(3.0f);
		b.qs[0] = 0xe4;
		b.qs[15] = 0x40;
		quant_dequant_row(GGML_TYPE_Q2_0, &b, out, 64);
		CHECK(out[0] == -3.0f && out[1] == 0.0f && out[2] == 3.0f && out[3] == 6.0f &&
		      out[63] == 0.0f && out[60] == -3.0f, "Q2_0 by hand");
	}
}

static void test_activations(void)
{
	/* llama.cpp x86 rules: multiplier 127/amax, round half to even */
	float x[256] = { 127.0f, 2.5f, 3.5f, -2.5f, 0.5f, 1.5f, -127.0f, 126.5f };
	struct quant_block_q8_0 q0;
	struct quant_block_q8_1 q1;

	quant_quantize_row(GGML_TYPE_Q8_0, x, &q0, 32);
	CHECK(quant_fp16_to_fp32(q0.d) == 1.0f && q0.qs[0] == 127 && q0.qs[1] == 2 &&
	      q0.qs[2] == 4 && q0.qs[3] == -2 && q0.qs[4] == 0 && q0.qs[5] == 2 &&
	      q0.qs[6] == -127 && q0.qs[7] == 126,
	      "Q8_0 rounding: %d %d %d %d %d %d", q0.qs[1], q0.qs[2], q0.qs[3], q0.qs[4],
	      q0.qs[5], q0.qs[7]);
	quant_quantize_row(GGML_TYPE_Q8_1, x, &q1, 32);
	CHECK(quant_fp16_to_fp32(q1.s) == 127.0f + 2 + 4 - 2 + 0 + 2 - 127 + 126, "Q8_1 sum");

	struct quant_block_q8_k qk;
	x[0] = -127.0f;
	x[6] = 100.0f;
	quant_quantize_row(GGML_TYPE_Q8_K, x, &qk, 256);
	CHECK(qk.d == 1.0f && qk.qs[0] == -127 && qk.qs[1] == 2 && qk.qs[2] == 4 &&
	      qk.bsums[0] == -127 + 2 + 4 - 2 + 0 + 2 + 100 + 126, "Q8_K signed max");
	x[0] = 127.0f;
	quant_quantize_row(GGML_TYPE_Q8_K, x, &qk, 256);
	CHECK(qk.d == -1.0f && qk.qs[0] == -127 && qk.qs[1] == -2 && qk.qs[3] == 2,
	      "Q8_K positive max flips the sign");
	/* a tie of magnitudes: the first one sets the sign, at every level */
	x[0] = 3.0f;
	x[6] = -127.0f;
	x[200] = 127.0f;
	for (int lv = 0; lv < levels_available(); lv++) {
		memset(&qk, 0x5a, sizeof qk);
		quant_ops_at(lv)->act_quantize(GGML_TYPE_Q4_K, x, &qk, 256);
		CHECK(qk.d == 1.0f && qk.qs[6] == -127 && qk.qs[200] == 127 && qk.bsums[12] == 127,
		      "Q8_K tie %s: d %g", quant_level_name(lv), qk.d);
	}
	memset(x, 0, sizeof x);
	quant_quantize_row(GGML_TYPE_Q8_K, x, &qk, 256);
	CHECK(qk.d == 0.0f && qk.bsums[3] == 0 && qk.qs[9] == 0, "Q8_K all zero");
	quant_quantize_row(GGML_TYPE_Q8_0, x, &q0, 32);
	CHECK(q0.d == 0 && q0.qs[0] == 0, "Q8_0 all zero");

	/* random rows: every level writes the same bytes, values within half a step */
	static const uint32_t wt[] = { GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q4_K,
				       GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_F32 };
	for (size_t k = 0; k < sizeof wt / sizeof wt[0]; k++) {
		const int64_t n = 768;
		float xs[768], back[768];
		random_acts(xs, n);
		xs[5] = 0.0f;
		size_t rb = quant_act_row_bytes(wt[k], n);
		uint8_t *ref = malloc(rb), *got = malloc(rb + 4);
		if (!ref || !got)
			abort();
		quant_ops_at(0)->act_quantize(wt[k], xs, ref, n);
		for (int lv = 1; lv < levels_available(); lv++) {
			memset(got, 0x55, rb + 4);
			quant_ops_at(lv)->act_quantize(wt[k], xs, got + 4, n);
			CHECK(memcmp(ref, got + 4, rb) == 0, "%s activations: %s bytes differ from scalar",
			      tname(wt[k]), quant_level_name(lv));
		}
		uint32_t at = wt[k] == GGML_TYPE_Q4_0 ? GGML_TYPE_Q8_0 :
			      wt[k] == GGML_TYPE_Q4_1 ? GGML_TYPE_Q8_1 :
			      wt[k] == GGML_TYPE_Q4_K ? GGML_TYPE_Q8_K : wt[k];
		CHECK(quant_act_type(wt[k]) == at, "%s act type", tname(wt[k]));
		quant_dequant_row(at, ref, back, n);
		int bad = 0;
		for (int64_t b = 0; b < n; b += t_blk(at) > 1 ? t_blk(at) : 32) {
			int64_t len = t_blk(at) > 1 ? t_blk(at) : 32;
			float amax = 0;
			for (int64_t i = b; i < b + len; i++)
				amax = fmaxf(amax, fabsf(xs[i]));
			float step = at == GGML_TYPE_F32 ? 0.0f :
				     at == GGML_TYPE_F16 ? 0x1p-10f * amax :
				     at == GGML_TYPE_BF16 ? 0x1p-7f * amax : amax / 127.0f;
			/* half a step, plus the fp16 rounding of the scale */
			for (int64_t i = b; i < b + len; i++)
				if (fabsf(back[i] - xs[i]) > step * 0.5f * 1.01f + 127 * step * 0x1p-11f)
					bad++;
		}
		CHECK(bad == 0, "%s activations: %d values off by more than half a step",
		      tname(wt[k]), bad);
		if (at == GGML_TYPE_Q8_1) {
			const struct quant_block_q8_1 *q = (const void *)ref;
			int sbad = 0;
			for (int64_t b = 0; b < n / 32; b++) {
				int s = 0;
				float amax = 0;
				for (int j = 0; j < 32; j++) {
					s += q[b].qs[j];
					amax = fmaxf(amax, fabsf(xs[32 * b + j]));
				}
				float d = amax / 127.0f;
				sbad += q[b].d != quant_fp32_to_fp16(d) ||
					q[b].s != quant_fp32_to_fp16(d * (float)s);
			}
			CHECK(sbad == 0, "Q8_1 d = amax/127, s = d * sum(q): %d blocks wrong", sbad);
		}
		if (at == GGML_TYPE_Q8_K) {
			const struct quant_block_q8_k *q = (const void *)ref;
			int sbad = 0;
			for (int64_t b = 0; b < n / 256; b++)
				for (int s = 0; s < 16; s++) {
					int sum = 0;
					for (int j = 0; j < 16; j++)
						sum += q[b].qs[16 * s + j];
					sbad += sum != q[b].bsums[s];
				}
			CHECK(sbad == 0, "Q8_K bsums");
		}
		free(ref);
		free(got);
	}
}

/* ---- dot products, matvec, matmul ---------------------------------------------- */

/* Sum of |w_i * xq_i| over a row (scale for tolerances) and, for the Q8_1
 * pairs, the extra allowance for s being stored as fp16. */
static double abs_terms(uint32_t t, const float *w, const float *xq, int64_t n)
{
	double s = 0.0;
	for (int64_t i = 0; i < n; i++)
		s += fabs((double)w[i] * (double)xq[i]);
	/* a floor only for all-zero rows: tiny sums (MXFP4's subnormal
	 * scales) keep their own relative tolerance */
	return s > 0.0 ? s : 1e-30;
}

static double q8_1_allowance(uint32_t t, const uint8_t *w, const uint8_t *xa, int64_t n)
{
	if (t != GGML_TYPE_Q4_1 && t != GGML_TYPE_Q5_1)
		return 0.0;
	double a = 0.0;
	size_t wb = t_bytes(t);
	for (int64_t b = 0; b < n / 32; b++) {
		uint16_t m, s;
		memcpy(&m, w + b * wb + 2, 2);
		memcpy(&s, xa + b * 36 + 2, 2);
		a += fabs((double)quant_fp16_to_fp32(m) * quant_fp16_to_fp32(s)) * 0x1p-10;
	}
	return a;
}

static void test_dot(uint32_t t, int64_t n)
{
	size_t wb = row_bytes(t, n), ab = quant_act_row_bytes(t, n);
	uint8_t *w = malloc(wb), *xa = malloc(ab);
	float *x = malloc((size_t)n * 4), *wf = malloc((size_t)n * 4), *xq = malloc((size_t)n * 4);
	if (!w || !xa || !x || !wf || !xq)
		abort();
	random_weights(t, w, n);
	random_acts(x, n);
	CHECK(ab > 0 && quant_ops_at(0)->act_quantize(t, x, xa, n) == 0, "%s act n=%lld", tname(t),
	      (long long)n);
	quant_dequant_row(t, w, wf, n);
	quant_dequant_row(quant_act_type(t), xa, xq, n);

	double exact = 0.0, full = 0.0, rounding = 0.0;
	for (int64_t i = 0; i < n; i++) {
		exact += (double)wf[i] * (double)xq[i];
		full += (double)wf[i] * (double)x[i];
		rounding += fabs((double)wf[i]) * fabs((double)x[i] - (double)xq[i]);
	}
	double S = abs_terms(t, wf, xq, n), tol = 1e-5 * S + q8_1_allowance(t, w, xa, n);
	float ref = quant_ops_at(0)->vec_dot(t, w, xa, n);
	CHECK(fabs(ref - exact) <= tol, "%s n=%lld scalar dot %.9g vs dequantised %.9g (tol %.3g)",
	      tname(t), (long long)n, ref, exact, tol);
	CHECK(fabs(ref - full) <= tol + rounding * 1.0001,
	      "%s n=%lld dot %.9g vs float dot %.9g beyond activation rounding %.3g", tname(t),
	      (long long)n, ref, full, rounding);
	for (int lv = 1; lv < levels_available(); lv++) {
		float got = quant_ops_at(lv)->vec_dot(t, w, xa, n);
		CHECK(fabs(got - ref) <= 1e-5 * S, "%s n=%lld %s dot %.9g vs scalar %.9g", tname(t),
		      (long long)n, quant_level_name(lv), got, ref);
	}
	free(w);
	free(xa);
	free(x);
	free(wf);
	free(xq);
}

/* rows x n weights off any alignment above 2 (F32: 4) with padded rows;
 * nt tokens of activations with padded strides; every level against
 * scalar vec_dot. */
static void test_mat(uint32_t t, int64_t rows, int64_t n, int64_t nt)
{
	size_t wo = t == GGML_TYPE_F32 ? 4 : 2;
	size_t rb = row_bytes(t, n), ws = rb + wo, ab = quant_act_row_bytes(t, n), xs = ab + 4;
	int64_t ys = rows + 2;
	uint8_t *wbuf = malloc(ws * (size_t)rows + wo), *xbuf = malloc(xs * (size_t)nt + 4);
	float *x = malloc((size_t)n * 4), *wf = malloc((size_t)n * 4), *xq = malloc((size_t)n * 4);
	float *ref = malloc(sizeof(float) * (size_t)(ys * nt)), *S = malloc(sizeof(float) * (size_t)(ys * nt));
	float *y = malloc(sizeof(float) * (size_t)(ys * nt));
	if (!wbuf || !xbuf || !x || !wf || !xq || !ref || !S || !y)
		abort();
	uint8_t *w = wbuf + wo, *xa = xbuf + 4;
	for (int64_t r = 0; r < rows; r++)
		random_weights(t, w + (size_t)r * ws, n);
	for (int64_t k = 0; k < nt; k++) {
		random_acts(x, n);
		quant_ops_at(0)->act_quantize(t, x, xa + (size_t)k * xs, n);
	}
	for (int64_t k = 0; k < nt; k++) {
		quant_dequant_row(quant_act_type(t), xa + (size_t)k * xs, xq, n);
		for (int64_t r = 0; r < rows; r++) {
			quant_dequant_row(t, w + (size_t)r * ws, wf, n);
			ref[k * ys + r] = quant_ops_at(0)->vec_dot(t, w + (size_t)r * ws,
								   xa + (size_t)k * xs, n);
			S[k * ys + r] = (float)abs_terms(t, wf, xq, n);
		}
	}
	int64_t r0 = rows > 2 ? 1 : 0, r1 = rows;
	for (int lv = 0; lv < levels_available(); lv++) {
		const struct quant_ops *ops = quant_ops_at(lv);
		int bad = 0, touched = 0;
		/* matvec, one token at a time */
		for (int64_t k = 0; k < nt; k++) {
			for (int64_t i = 0; i < ys; i++)
				y[i] = 12345.0f;
			CHECK(ops->matvec(t, w, ws, r0, r1, xa + (size_t)k * xs, n, y) == 0, "matvec rc");
			for (int64_t r = 0; r < ys; r++) {
				if (r < r0 || r >= r1)
					touched += y[r] != 12345.0f;
				else
					bad += !(fabsf(y[r] - ref[k * ys + r]) <= 1e-5f * S[k * ys + r]);
			}
		}
		CHECK(bad == 0 && touched == 0, "%s %s matvec %lldx%lld: %d wrong, %d outside written",
		      tname(t), quant_level_name(lv), (long long)rows, (long long)n, bad, touched);
		/* matmul over all tokens */
		for (int64_t i = 0; i < ys * nt; i++)
			y[i] = 12345.0f;
		CHECK(ops->matmul(t, w, ws, r0, r1, xa, xs, nt, n, y, ys) == 0, "matmul rc");
		bad = touched = 0;
		for (int64_t k = 0; k < nt; k++)
			for (int64_t r = 0; r < ys; r++) {
				float v = y[k * ys + r];
				if (r < r0 || r >= r1)
					touched += v != 12345.0f;
				else
					bad += !(fabsf(v - ref[k * ys + r]) <= 1e-5f * S[k * ys + r]);
			}
		CHECK(bad == 0 && touched == 0,
		      "%s %s matmul %lldx%lld x %lld tokens: %d wrong, %d outside written", tname(t),
		      quant_level_name(lv), (long long)rows, (long long)n, (long long)nt, bad, touched);
	}
	free(wbuf);
	free(xbuf);
	free(x);
	free(wf);
	free(xq);
	free(ref);
	free(S);
	free(y);
}

static void test_kernels(void)
{
	for (size_t k = 0; k < N_WTYPES; k++) {
		uint32_t t = weight_types[k];
		static const int64_t n32[] = { 32, 96, 224, 576 }, n256[] = { 256, 768, 1280 };
		static const int64_t nflt[] = { 1, 7, 33, 100, 257, 576 };
		static const int64_t n64[] = { 64, 192, 448, 960 }, n128[] = { 128, 384, 640 };
		const int64_t *ns = t_blk(t) == 1 ? nflt : t_blk(t) == 32 ? n32 : n256;
		size_t nn = t_blk(t) == 1 ? 6 : t_blk(t) == 32 ? 4 : 3;
		if (t_blk(t) == 64 || t_blk(t) == 128) {
			ns = t_blk(t) == 64 ? n64 : n128;
			nn = t_blk(t) == 64 ? 4 : 3;
		}
		for (size_t i = 0; i < nn; i++)
			test_dot(t, ns[i]);
		test_mat(t, 1, ns[0], 1);
		test_mat(t, 6, ns[1], 3);
		test_mat(t, 9, ns[nn - 1], 7);
		test_mat(t, 13, ns[1], 9);
	}
}

/* ---- packed matrices ----------------------------------------------------------------- */

/* the types quant.h lists as packed at LEVEL (AVX-512 takes AVX2's
 * packed kernels for the types it has none of its own) */
static int packed_at(int level, uint32_t t)
{
	int avx2 = 0, avx512 = 0;
	switch (t) {
	case GGML_TYPE_F16:
		avx512 = 1;
		break;
	case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
	case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_K: case GGML_TYPE_Q6_K:
		avx2 = avx512 = 1;
		break;
	case GGML_TYPE_Q5_K: case GGML_TYPE_IQ4_XS: case GGML_TYPE_IQ4_NL: case GGML_TYPE_MXFP4:
		avx2 = 1;
		break;
	default:
		break;
	}
	return level == QUANT_LEVEL_AVX2 ? avx2 : level == QUANT_LEVEL_AVX512 ? avx2 || avx512 : 0;
}

/* One matrix of rows x n at every level: packing is lossless (the blocks
 * read back byte for byte), and quant_matrix_mul over row ranges and token
 * counts that exercise every tile shape matches the scalar vec_dot of the
 * original rows within float summation order, writing nothing else. */
static void test_packed_fixed(uint32_t t, int64_t rows, int64_t n, void (*fix)(uint8_t *row, int64_t r, int64_t n))
{
	size_t rb = row_bytes(t, n), ws = rb + 2;
	const int64_t ntok = 27, ys = rows + 3;
	uint8_t *wbuf = malloc(ws * (size_t)rows + 2), *back = malloc(rb);
	float *x = malloc(sizeof(float) * (size_t)(n * ntok)), *wf = malloc((size_t)n * 4);
	float *xq = malloc((size_t)n * 4), *ref = malloc(sizeof(float) * (size_t)(ys * ntok));
	float *S = malloc(sizeof(float) * (size_t)(ys * ntok)), *y = malloc(sizeof(float) * (size_t)(ys * ntok));
	size_t ab = quant_act_row_bytes(t, n);
	uint8_t *xa = malloc(ab * (size_t)ntok);
	if (!wbuf || !back || !x || !wf || !xq || !ref || !S || !y || !xa)
		abort();
	uint8_t *w = wbuf + 2;   /* only 2-byte aligned, rows padded */
	for (int64_t r = 0; r < rows; r++) {
		random_weights(t, w + (size_t)r * ws, n);
		if (fix)
			fix(w + (size_t)r * ws, r, n);
	}
	for (int64_t k = 0; k < ntok; k++) {
		random_acts(x + k * n, n);
		quant_ops_at(0)->act_quantize(t, x + k * n, xa + (size_t)k * ab, n);
		quant_dequant_row(quant_act_type(t), xa + (size_t)k * ab, xq, n);
		for (int64_t r = 0; r < rows; r++) {
			quant_dequant_row(t, w + (size_t)r * ws, wf, n);
			ref[k * ys + r] = quant_ops_at(0)->vec_dot(t, w + (size_t)r * ws, xa + (size_t)k * ab, n);
			S[k * ys + r] = (float)abs_terms(t, wf, xq, n);
		}
	}
	for (int lv = 0; lv < levels_available(); lv++) {
		struct quant_matrix m;
		CHECK(quant_matrix_init(&m, t, w, ws, rows, n) == 0, "%s matrix init", tname(t));
		m.level = lv;
		CHECK(quant_matrix_pack(&m) == 0, "%s pack", tname(t));
		CHECK((m.packed != NULL) == packed_at(lv, t), "%s packed=%d at %s", tname(t), m.packed != NULL,
		      quant_level_name(lv));
		if (m.packed)
			CHECK(m.packed_bytes >= rb * (size_t)rows, "%s packed size", tname(t));
		if (m.packed) {
			int diff = 0;
			for (int64_t r = 0; r < rows; r++) {
				memset(back, 0xa5, rb);
				diff += quant_matrix_unpack_row(&m, r, back) != 0 ||
					memcmp(back, w + (size_t)r * ws, rb) != 0;
			}
			CHECK(diff == 0, "%s %lldx%lld: %d rows do not unpack to the original", tname(t),
			      (long long)rows, (long long)n, diff);
			CHECK(quant_matrix_unpack_row(&m, rows, back) == -1, "unpack past the end");
		}
		size_t mab = quant_matrix_act_bytes(&m), xs = mab + 64;
		uint8_t *mx = aligned_alloc(64, (xs * (size_t)ntok + 63) / 64 * 64);
		if (!mx)
			abort();
		for (int64_t k = 0; k < ntok; k++)
			CHECK(quant_matrix_act_quantize(&m, x + k * n, mx + (size_t)k * xs) == 0, "act");
		/* token counts covering every tile width; a range starting at a
		 * later group and one ending before the last */
		static const int64_t nts[] = { 1, 2, 3, 4, 5, 6, 7, 11, 14, 15, 23, 27 };
		for (size_t i = 0; i < sizeof nts / sizeof nts[0]; i++) {
			int64_t nt = nts[i];
			int64_t r0 = rows > 16 ? 16 : 0, r1 = rows;
			if (i % 2 == 1 && rows > 32)
				r1 = 32;
			for (int64_t j = 0; j < ys * ntok; j++)
				y[j] = 12345.0f;
			CHECK(quant_matrix_mul(&m, r0, r1, mx, xs, nt, y, ys) == 0, "mul rc");
			int bad = 0, touched = 0;
			for (int64_t k = 0; k < ntok; k++)
				for (int64_t r = 0; r < ys; r++) {
					float v = y[k * ys + r];
					if (k >= nt || r < r0 || r >= r1)
						touched += v != 12345.0f;
					else
						bad += !(fabsf(v - ref[k * ys + r]) <= 1e-5f * S[k * ys + r]);
				}
			CHECK(bad == 0 && touched == 0,
			      "%s %s packed=%d %lldx%lld rows %lld..%lld x %lld tokens: %d wrong, %d outside written",
			      tname(t), quant_level_name(lv), m.packed != NULL, (long long)rows, (long long)n,
			      (long long)r0, (long long)r1, (long long)nt, bad, touched);
		}
		if (m.packed && strcmp(quant_level_name(lv), "avx2") == 0 &&
		    (t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q6_K) && ntok >= 4) {
			/* small batches (speculative verification) go through the
			 * decode kernel two tokens at a time: each token's row is
			 * bit for bit its one-token product */
			float *y1 = malloc(sizeof(float) * (size_t)ys * 4);
			if (!y1)
				abort();
			for (int64_t k = 0; k < 4; k++)
				quant_matrix_mul(&m, 0, rows, mx + (size_t)k * xs, xs, 1, y1 + k * ys, ys);
			for (int64_t nt = 2; nt <= 4; nt++) {
				quant_matrix_mul(&m, 0, rows, mx, xs, nt, y, ys);
				int same = 1;
				for (int64_t k = 0; k < nt; k++)
					same &= memcmp(y + k * ys, y1 + k * ys, sizeof(float) * (size_t)rows) == 0;
				CHECK(same, "%s avx2 %lld tokens: not the one-token products bit for bit", tname(t),
				      (long long)nt);
			}
			free(y1);
		}
		if (m.packed) {
			/* the same packing into caller-owned memory gives the same bytes */
			struct quant_matrix m2;
			quant_matrix_init(&m2, t, w, ws, rows, n);
			m2.level = lv;
			uint8_t *arena = aligned_alloc(64, (m.packed_bytes + 63) / 64 * 64 + 64);
			if (!arena)
				abort();
			CHECK(quant_matrix_pack_at(&m2, arena + 1) == -1, "pack_at wants 64-byte alignment");
			CHECK(quant_matrix_pack_at(&m2, arena) == 0 && m2.packed == arena && !m2.packed_owned,
			      "pack_at");
			quant_matrix_pack_rows(&m2, 0, rows);
			CHECK(memcmp(arena, m.packed, m.packed_bytes) == 0, "%s pack_at bytes", tname(t));
			CHECK(quant_matrix_act_kind(&m2) == quant_matrix_act_kind(&m) &&
			      quant_matrix_act_bytes(&m2) == quant_matrix_act_bytes(&m), "act kind");
			quant_matrix_free(&m2);
			CHECK(m2.packed == NULL, "free of a pack_at matrix leaves the arena alone");
			free(arena);
		}
		if (m.packed)
			CHECK(quant_matrix_mul(&m, 8, rows, mx, xs, 1, y, ys) == -1 &&
			      quant_matrix_mul(&m, 0, rows + 1, mx, xs, 1, y, ys) == -1,
			      "packed mul wants group-aligned ranges inside the matrix");
		free(mx);
		quant_matrix_free(&m);
		CHECK(m.packed == NULL, "free");
	}
	free(wbuf);
	free(back);
	free(x);
	free(wf);
	free(xq);
	free(ref);
	free(S);
	free(y);
	free(xa);
}

static void test_packed(uint32_t t, int64_t rows, int64_t n)
{
	test_packed_fixed(t, rows, n, NULL);
}

/* MXFP4 scales at the ends of the E8M0 range: e = 0 and 1 give
 * subnormal 2^(e - 128) (the packed kernels build the float from e),
 * 254 the largest finite products of these weights */
static void mxfp4_low_scales(uint8_t *row, int64_t r, int64_t n)
{
	for (int64_t b = 0; b < n / 32; b++)
		row[b * 17] = (uint8_t)((r + b) % 4);
}

static void mxfp4_high_scales(uint8_t *row, int64_t r, int64_t n)
{
	for (int64_t b = 0; b < n / 32; b++)
		row[b * 17] = (uint8_t)(200 + (r + b) % 5);
}

static void test_packed_all(void)
{
	/* which matrices share activation rows */
	static uint8_t wb[256 * 210];
	struct quant_matrix a, b;
	int same[4];
	const uint32_t pairs[4][2] = {
		{ GGML_TYPE_Q4_0, GGML_TYPE_Q8_0 }, { GGML_TYPE_Q4_K, GGML_TYPE_Q6_K },
		{ GGML_TYPE_Q4_1, GGML_TYPE_Q4_K }, { GGML_TYPE_F16, GGML_TYPE_Q8_0 },
	};
	for (int k = 0; k < 4; k++) {
		quant_matrix_init(&a, pairs[k][0], wb, 512, 32, 256);
		quant_matrix_init(&b, pairs[k][1], wb, 512, 32, 256);
		quant_matrix_pack(&a);
		quant_matrix_pack(&b);
		/* unpacked (a CPU without the packed kernels' instructions),
		 * the kind is the activation type itself */
		same[k] = quant_matrix_act_kind(&a) == quant_matrix_act_kind(&b);
		quant_matrix_free(&a);
		quant_matrix_free(&b);
	}
	CHECK(same[0] == 1 && same[1] == 1 && same[2] == 0 && same[3] == 0,
	      "activation kinds: Q4_0~Q8_0 %d, Q4_K~Q6_K %d, Q4_1!~Q4_K %d, F16!~Q8_0 %d", same[0], same[1],
	      same[2], same[3]);

	for (size_t k = 0; k < N_WTYPES; k++) {
		uint32_t t = weight_types[k];
		int64_t n = t_blk(t) == 256 ? 512 : t_blk(t) == 32 ? 96 : 64;
		int64_t n_one = t_blk(t) == 256 ? 256 : 32, n_big = t_blk(t) == 256 ? 768 : 576;
		if (t_blk(t) == 64 || t_blk(t) == 128) {   /* 3, 1 and 5 blocks */
			n = 3 * t_blk(t);
			n_one = t_blk(t);
			n_big = 5 * t_blk(t);
		}
		test_packed(t, 1, n_one);
		test_packed(t, 16, n);
		test_packed(t, 45, n);
		test_packed(t, 37, n_big);
	}
	test_packed_fixed(GGML_TYPE_MXFP4, 21, 96, mxfp4_low_scales);
	test_packed_fixed(GGML_TYPE_MXFP4, 21, 96, mxfp4_high_scales);
}

/* ---- element-wise and attention helpers ------------------------------------------------ */

static double ulp_err(float got, double want)
{
	if (want == 0.0)
		return got == 0.0f ? 0.0 : 1e9;
	int e;
	frexp(want, &e);
	double ulp = ldexp(1.0, e - 24);
	if (fabs(want) < 0x1p-126)
		ulp = 0x1p-149;
	return fabs((double)got - want) / ulp;
}

static void test_exp(void)
{
	double worst = 0.0;
	int bad_levels = 0;
	float xs[4096], ys[4096], yl[4096];
	for (int k = 0; k < 4096; k++)
		xs[k] = -87.3f + (float)k * (175.3f / 4096.0f) + frand() * 0.01f;
	xs[0] = 0.0f;
	xs[1] = -0.0f;
	xs[2] = 1.0f;
	xs[3] = -87.33f;
	xs[4] = 88.0f;
	for (int k = 0; k < 4096; k++) {
		ys[k] = quant_expf(xs[k]);
		double e = ulp_err(ys[k], exp((double)xs[k]));
		worst = e > worst ? e : worst;
	}
	CHECK(worst <= 2.0, "quant_expf error %.2f ulp", worst);
	CHECK(quant_expf(0.0f) == 1.0f && quant_expf(-100.0f) == 0.0f && quant_expf(-INFINITY) == 0.0f &&
	      isnan(quant_expf(NAN)) && quant_expf(1000.0f) == quant_expf(88.0f) && isfinite(quant_expf(88.0f)),
	      "quant_expf edges");
	for (int lv = 0; lv < levels_available(); lv++) {
		for (int64_t n = 1; n <= 4096; n = n * 3 + 1) {
			quant_exp_at(lv, yl, xs, n);
			bad_levels += memcmp(yl, ys, (size_t)n * sizeof(float)) != 0;
		}
		float sp[3] = { -INFINITY, NAN, -1000.0f }, so[3];
		quant_exp_at(lv, so, sp, 3);
		bad_levels += !(so[0] == 0.0f && isnan(so[1]) && so[2] == 0.0f);
	}
	CHECK(bad_levels == 0, "exp: %d level mismatches", bad_levels);

	/* SiLU-gated product: same bits at every level, close to the exact value */
	float g[301], u[301], ref[301], got[301];
	for (int i = 0; i < 301; i++) {
		g[i] = frand() * 12.0f;
		u[i] = frand();
	}
	g[0] = -100.0f;
	g[1] = 100.0f;
	memcpy(ref, g, sizeof g);
	quant_silu_mul_at(0, ref, u, 301);
	double werr = 0.0;
	for (int i = 0; i < 301; i++) {
		double x = g[i], want = x / (1.0 + exp(-x)) * u[i];
		double err = fabs(ref[i] - want) / (fabs(want) + 1e-30);
		werr = err > werr ? err : werr;
	}
	CHECK(werr < 1e-6, "silu relative error %.3g", werr);
	for (int lv = 1; lv < levels_available(); lv++)
		for (int64_t n = 1; n <= 301; n += 37) {
			memcpy(got, g, sizeof g);
			quant_silu_mul_at(lv, got, u, n);
			CHECK(memcmp(got, ref, (size_t)n * sizeof(float)) == 0, "silu %s n=%lld",
			      quant_level_name(lv), (long long)n);
		}
}

static void test_attn_sinks(int n_q, int n_pos, int d, size_t stride_extra, int n_tok, int window, bool sinks);

static void test_attn(int n_q, int n_pos, int d, size_t stride_extra, int n_tok, int window)
{
	test_attn_sinks(n_q, n_pos, d, stride_extra, n_tok, window, false);
}

/* Attention over a random F16 cache: every level against the reference
 * (float order only: 1e-5 of the scale of the sums, plus one f16 step of a
 * weight, 2^-10, times |v|, for weights whose rounding a last-bit change
 * of a score can flip). */
static void test_attn_sinks(int n_q, int n_pos, int d, size_t stride_extra, int n_tok, int window, bool sinks)
{
	const int nt = n_tok > 0 ? n_tok : 1, P = n_pos + nt - 1;
	size_t stride = (size_t)d * 3 + stride_extra;
	const int64_t qs = d + 3, os = d + 5, qts = qs * n_q + 7, ots = os * n_q + 9;
	uint16_t *k = malloc(stride * (size_t)P * 2 + 8), *v = malloc(stride * (size_t)P * 2 + 8);
	float *q = malloc(sizeof(float) * (size_t)(qts * nt));
	float *ref = malloc(sizeof(float) * (size_t)(ots * nt)), *got = malloc(sizeof(float) * (size_t)(ots * nt));
	float *scr = malloc(sizeof(float) * (size_t)(nt * n_q * P));
	if (!k || !v || !q || !ref || !got || !scr)
		abort();
	for (size_t i = 0; i < stride * (size_t)P + 4; i++) {
		k[i] = quant_fp32_to_fp16(frand());
		v[i] = quant_fp32_to_fp16(frand() * 3.0f);
	}
	for (int64_t i = 0; i < qts * nt; i++)
		q[i] = frand() * 2.0f;
	struct quant_attn_args a = {
		.k = k + 1, .v = v + 2, .stride = stride, .n_pos = n_pos, .d = d, .q = q, .q_stride = qs,
		.n_q = n_q, .scale = 1.0f / sqrtf((float)d), .out = ref, .out_stride = os, .scratch = scr,
		.n_tok = n_tok, .q_tok_stride = qts, .out_tok_stride = ots, .window = window,
	};
	/* gpt-oss's sinks: a logit per query row in every softmax, some
	 * above every score (most of the weight to the sink), some below */
	float sk[64];
	for (int i = 0; i < n_q && i < 64; i++)
		sk[i] = i % 2 ? frand() * 2.0f : 3.0f + frand();
	a.sinks = sinks ? sk : NULL;
	for (int64_t i = 0; i < ots * nt; i++)
		ref[i] = 777.0f;
	CHECK(quant_attn_f16_at(0, &a) == 0, "attn ref rc");
	/* the reference against a direct double-precision evaluation */
	int rbad = 0;
	for (int r = 0; r < nt; r++) {
		const int Pr = n_pos + r, first = window > 0 && Pr > window ? Pr - window : 0;
		for (int i = 0; i < n_q; i++) {
			const float *qq = q + r * qts + i * qs;
			double sc[700], mx = -1e300, sum = 0.0;
			for (int p = first; p < Pr; p++) {
				double dot = 0.0;
				for (int c = 0; c < d; c++)
					dot += (double)quant_fp16_to_fp32(quant_fp32_to_fp16(qq[c])) *
					       quant_fp16_to_fp32(k[1 + (size_t)p * stride + c]);
				sc[p - first] = dot * a.scale;
				mx = sc[p - first] > mx ? sc[p - first] : mx;
			}
			if (sinks)
				mx = sk[i] > mx ? sk[i] : mx;
			for (int p = first; p < Pr; p++)
				sum += exp(sc[p - first] - mx);
			if (sinks)
				sum += exp(sk[i] - mx);
			for (int c = 0; c < d; c++) {
				double o = 0.0;
				for (int p = first; p < Pr; p++)
					o += exp(sc[p - first] - mx) / sum * quant_fp16_to_fp32(v[2 + (size_t)p * stride + c]);
				rbad += !(fabs(ref[r * ots + i * os + c] - o) <= 3e-3 * 3.0 + 1e-5);
			}
		}
	}
	CHECK(rbad == 0, "attn reference n_q=%d n_pos=%d d=%d n_tok=%d window=%d sinks=%d: %d off the exact value", n_q,
	      n_pos, d, n_tok, window, sinks, rbad);
	for (int lv = 1; lv < levels_available(); lv++) {
		for (int64_t i = 0; i < ots * nt; i++)
			got[i] = 777.0f;
		a.out = got;
		CHECK(quant_attn_f16_at(lv, &a) == 0, "attn rc");
		int bad = 0, touched = 0;
		for (int64_t i = 0; i < ots * nt; i++) {
			const int64_t within = i % ots;
			const int in_row = within < os * n_q && within % os < d;
			if (!in_row)
				touched += got[i] != 777.0f;
			else
				bad += !(fabsf(got[i] - ref[i]) <= 3.0f * 0x1p-10f + 1e-5f);
		}
		CHECK(bad == 0 && touched == 0,
		      "attn %s n_q=%d n_pos=%d d=%d n_tok=%d window=%d sinks=%d: %d off, %d outside written",
		      quant_level_name(lv), n_q, n_pos, d, n_tok, window, sinks, bad, touched);
		a.out = ref;
	}
	/* a one-hot case: one position dominates, out = its value row */
	memset(k, 0, stride * (size_t)P * 2 + 8);
	for (int c = 0; c < d; c++)
		k[1 + (size_t)(n_pos - 1) * stride + c] = quant_fp32_to_fp16(c % 2 ? 4.0f : -4.0f);
	for (int c = 0; c < d; c++)
		q[c] = c % 2 ? 8.0f : -8.0f;
	a.n_q = 1;
	a.n_tok = 1;
	a.window = 0;
	a.scale = 1.0f;
	a.sinks = NULL;
	for (int lv = 0; lv < levels_available(); lv++) {
		a.out = got;
		quant_attn_f16_at(lv, &a);
		int bad = 0;
		for (int c = 0; c < d; c++)
			bad += got[c] != quant_fp16_to_fp32(v[2 + (size_t)(n_pos - 1) * stride + c]);
		CHECK(bad == 0, "attn one-hot %s d=%d: %d wrong", quant_level_name(lv), d, bad);
	}
	a.n_pos = 0;
	CHECK(quant_attn_f16_at(0, &a) == -1, "attn n_pos 0");
	a.n_pos = 1;
	a.n_tok = -1;
	CHECK(quant_attn_f16_at(0, &a) == -1, "attn n_tok < 0");
	free(k);
	free(v);
	free(q);
	free(ref);
	free(got);
	free(scr);
}

static void test_table_mul(void)
{
	static float tab[65536];
	for (int h = 0; h < 65536; h++)
		tab[h] = (float)h * 0.5f - 3.0f;   /* any function of the fp16 code */
	float g[203], u[203], ref[203], got[203];
	for (int i = 0; i < 203; i++) {
		g[i] = frand() * 14.0f;
		u[i] = frand();
	}
	g[0] = -10.0f;
	g[1] = 10.0f;
	g[2] = 9.9995f;   /* rounds to 10.0 in fp16 but is below hi: the table */
	g[3] = 0.0f;
	memcpy(ref, g, sizeof g);
	quant_table_mul_at(0, ref, u, 203, tab, -10.0f, 10.0f);
	int bad = 0;
	for (int i = 0; i < 203; i++) {
		float x = g[i];
		float y = x <= -10.0f ? 0.0f : x >= 10.0f ? x : tab[quant_fp32_to_fp16(x)];
		bad += ref[i] != y * u[i];
	}
	CHECK(bad == 0, "table product reference: %d wrong", bad);
	for (int lv = 1; lv < levels_available(); lv++)
		for (int64_t n = 1; n <= 203; n += 29) {
			memcpy(got, g, sizeof g);
			quant_table_mul_at(lv, got, u, n, tab, -10.0f, 10.0f);
			CHECK(memcmp(got, ref, (size_t)n * sizeof(float)) == 0, "table product %s n=%lld",
			      quant_level_name(lv), (long long)n);
		}
}

static void test_sum_squares(void)
{
	float x[1000];
	for (int i = 0; i < 1000; i++)
		x[i] = frand() * 100.0f;
	for (int64_t n = 0; n <= 1000; n += 111) {
		double ref = quant_sum_squares_at(0, x, n), exact = 0.0;
		for (int64_t i = 0; i < n; i++)
			exact += (double)x[i] * x[i];
		CHECK(ref == exact, "sum of squares reference n=%lld", (long long)n);
		for (int lv = 1; lv < levels_available(); lv++) {
			double got = quant_sum_squares_at(lv, x, n);
			CHECK(fabs(got - ref) <= 1e-13 * ref, "sum of squares %s n=%lld: %.17g vs %.17g",
			      quant_level_name(lv), (long long)n, got, ref);
		}
	}
}

static void test_vec_helpers(void)
{
	test_exp();
	test_sum_squares();
	test_table_mul();
	test_attn(1, 1, 64, 0, 0, 0);
	test_attn(3, 17, 64, 5, 1, 0);
	test_attn(4, 100, 256, 0, 0, 0);
	test_attn(2, 33, 48, 1, 0, 0);
	test_attn(3, 600, 128, 0, 1, 0);
	test_attn(1, 7, 20, 0, 1, 0);    /* not a multiple of 16: the reference at every level */
	test_attn(1, 40, 64, 0, 1, 16);  /* a window */
	/* several tokens: the shared-block path (8+ rows), causal ranges, windows */
	test_attn(3, 1, 64, 0, 5, 0);
	test_attn(4, 20, 256, 3, 9, 0);
	test_attn(2, 50, 32, 0, 13, 24);
	test_attn(1, 5, 64, 0, 17, 7);
	test_attn(1, 1, 64, 0, 3, 0);    /* few rows: token by token */
	test_attn(3, 30, 20, 0, 4, 0);   /* d not a multiple of 16 */
	/* attention sinks (gpt-oss), through each path */
	test_attn_sinks(1, 1, 64, 0, 0, 0, true);
	test_attn_sinks(3, 17, 64, 5, 1, 0, true);
	test_attn_sinks(8, 40, 64, 0, 1, 16, true);
	test_attn_sinks(4, 20, 64, 3, 9, 0, true);
	test_attn_sinks(2, 50, 32, 0, 13, 24, true);
	test_attn_sinks(3, 30, 20, 0, 4, 0, true);
}

static void test_bad_args(void)
{
	float f[64];
	uint8_t b[512] = {0};

	CHECK(quant_dequant_row(GGML_TYPE_Q4_0, b, f, 33) == -1, "dequant n not a block multiple");
	CHECK(quant_dequant_row(GGML_TYPE_Q4_0, b, f, 0) == -1, "dequant n = 0");
	CHECK(quant_dequant_row(GGML_TYPE_I8, b, f, 256) == -1, "dequant unsupported type");
	CHECK(quant_dequant_row(999, b, f, 32) == -1, "dequant unknown type");
	CHECK(quant_act_row_bytes(GGML_TYPE_Q4_K, 128) == 0, "K-quant needs 256");
	CHECK(quant_act_row_bytes(GGML_TYPE_Q4_1, 64) == 72, "Q8_1 row bytes");
	CHECK(quant_act_row_bytes(GGML_TYPE_F16, 3) == 6, "F16 row bytes");
	CHECK(quant_act_row_bytes(GGML_TYPE_Q8_1, 32) == 0, "Q8_1 is not a weight type");
	CHECK(isnan(quant_vec_dot(GGML_TYPE_I8, b, b, 256)), "dot of unsupported type is NaN");
	CHECK(isnan(quant_vec_dot(GGML_TYPE_COUNT, b, b, 256)), "dot of an unknown type is NaN");
	CHECK(quant_act_row_bytes(GGML_TYPE_Q1_0, 64) == 0 && quant_act_row_bytes(GGML_TYPE_Q1_0, 128) == 136,
	      "Q1_0 rows are whole 128-element blocks of Q8_0 activations");
	CHECK(quant_act_row_bytes(GGML_TYPE_IQ4_XS, 256) == 292 && quant_act_row_bytes(GGML_TYPE_MXFP4, 32) == 34,
	      "IQ4_XS takes Q8_K, MXFP4 Q8_0");
	CHECK(quant_matvec(GGML_TYPE_Q8_0, b, 34, 2, 1, b, 32, f) == -1, "matvec empty range reversed");
	CHECK(quant_matvec(GGML_TYPE_Q8_0, b, 34, 1, 1, b, 32, f) == 0, "matvec empty range ok");
	CHECK(quant_act_quantize(GGML_TYPE_Q6_K, f, b, 64) == -1, "act n too small");
	CHECK(quant_quantize_row(GGML_TYPE_Q4_0, f, b, 32) == -1, "no Q4_0 encoder");
	CHECK(quant_ops_at(QUANT_LEVEL_COUNT) == NULL && quant_ops_at(-1) == NULL, "ops_at range");
	CHECK(quant_get_vec_dot(GGML_TYPE_Q4_K) != NULL && quant_get_vec_dot(GGML_TYPE_Q8_1) == NULL,
	      "quant_get_vec_dot");
	{
		float xs[64], wv[64];
		uint8_t xa[64 * 2], wa[64 * 2];
		for (int i = 0; i < 64; i++) {
			xs[i] = frand();
			wv[i] = frand();
		}
		quant_act_quantize(GGML_TYPE_F16, xs, xa, 64);
		quant_act_quantize(GGML_TYPE_F16, wv, wa, 64);
		quant_vec_dot_fn fn = quant_get_vec_dot(GGML_TYPE_F16);
		CHECK(fn && fn(wa, xa, 64) == quant_vec_dot(GGML_TYPE_F16, wa, xa, 64),
		      "quant_get_vec_dot gives the dispatched kernel");
	}
	int n_sup = 0;
	for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++)
		n_sup += quant_supported(t);
	CHECK(n_sup == (int)N_WTYPES, "%d weight types supported (%d)", (int)N_WTYPES, n_sup);
	for (size_t k = 0; k < N_WTYPES; k++)
		CHECK(t_blk(weight_types[k]) == ggml_type_block_size(weight_types[k]) &&
		      t_bytes(weight_types[k]) == ggml_type_block_bytes(weight_types[k]),
		      "%s block geometry as gguf.c's table", tname(weight_types[k]));
}

/* TTYCHAT_CPU=scalar lowers the level; checked in a child so this
 * process's cached level stays the detected one. */
static void test_env_override(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		setenv("TTYCHAT_CPU", "scalar", 1);
		_exit(quant_level() == QUANT_LEVEL_SCALAR ? 0 : 1);
	}
	int st = 0;
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "TTYCHAT_CPU=scalar");
	pid = fork();
	if (pid == 0) {
		setenv("TTYCHAT_CPU", "avx512", 1);   /* never above what the CPU has */
		_exit(quant_level() <= quant_level_detect() ? 0 : 1);
	}
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "TTYCHAT_CPU cannot raise the level");
}

int main(void)
{
	const char *srcdir = getenv("TTYCHAT_SRCDIR");

	if (!srcdir)
		srcdir = ".";
	test_env_override();
	printf("CPU level: detected %s, in use %s\n", quant_level_name(quant_level_detect()),
	       quant_level_name(quant_level()));
	test_fp16();
	test_bf16();
	test_fixtures(srcdir);
	test_llama(srcdir);
	test_handmade();
	test_handmade_iq();
	test_handmade_nl();
	test_activations();
	test_kernels();
	test_packed_all();
	test_vec_helpers();
	test_bad_args();
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
