/*
 * kvquant.c - KV cache row formats: encoders for the ggml block types a
 * cache may use, our 3-bit type Q3R (kvquant.h gives its layout), the
 * rotation, and the query-side dot products.
 *
 * Decoding and the dot products of the ggml types are quant.c's (scalar,
 * AVX2 and AVX-512 there); only Q3R has its kernels here: a scalar
 * reference and an AVX2 version (the 3-bit codes rebuilt from two planes
 * and looked up in a byte table by VPSHUFB, then multiplied with the
 * query's Q8_0 bytes exactly in integers, one float scale per 32).
 *
 * The linear encoders (Q4_0, Q4_1, Q5_0, Q5_1) follow ggml's reference
 * rounding, so a row encoded here decodes as llama.cpp's would.  The
 * non-linear ones (IQ4_NL, Q3R) try a few scales around amax/127 per block,
 * map each element to its nearest level, refit the scale by least squares
 * and keep the try with the least squared error: rows are encoded once
 * per token, so a little search here is cheap.
 */
#include "kvquant.h"

#include <math.h>
#include <string.h>

#include "engine.h"
#include "gguf.h"
#include "quant.h"
#include "quant_nl_tables.h"

static const int8_t q3r_levels[8] = {-127, -79, -45, -14, 14, 45, 79, 127};

int kvq_supported(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F16: case GGML_TYPE_Q8_0: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
	case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_IQ4_NL: case KVQ_Q3R:
		return 1;
	default:
		return 0;
	}
}

static const struct { uint32_t type; const char *name; } kvq_names[] = {
	{GGML_TYPE_F16, "f16"}, {GGML_TYPE_Q8_0, "q8_0"}, {GGML_TYPE_Q5_0, "q5_0"},
	{GGML_TYPE_Q5_1, "q5_1"}, {GGML_TYPE_Q4_0, "q4_0"}, {GGML_TYPE_Q4_1, "q4_1"},
	{GGML_TYPE_IQ4_NL, "iq4_nl"}, {KVQ_Q3R, "q3r"},
};

const char *kvq_name(uint32_t type)
{
	for (size_t i = 0; i < sizeof kvq_names / sizeof kvq_names[0]; i++)
		if (kvq_names[i].type == type)
			return kvq_names[i].name;
	return "?";
}

uint32_t kvq_parse(const char *name)
{
	for (size_t i = 0; name && i < sizeof kvq_names / sizeof kvq_names[0]; i++)
		if (strcmp(kvq_names[i].name, name) == 0)
			return kvq_names[i].type;
	return 0;
}

int kvq_block(uint32_t type)
{
	if (type == KVQ_Q3R)
		return KVQ_Q3R_BLOCK;
	if (type == GGML_TYPE_F16)
		return 1;
	return kvq_supported(type) ? 32 : 0;
}

size_t kvq_row_bytes(uint32_t type, uint64_t n)
{
	if (!kvq_supported(type) || n == 0 || n % (uint64_t)kvq_block(type) != 0)
		return 0;
	if (type == KVQ_Q3R)
		return (size_t)(n / KVQ_Q3R_BLOCK) * sizeof(struct kvq_block_q3r);
	return (size_t)ggml_row_bytes(type, n);
}

static const uint32_t kvq_of_engine[ENGINE_KV_COUNT] = {
	GGML_TYPE_F16, GGML_TYPE_Q8_0, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
	GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_IQ4_NL, KVQ_Q3R,
};

uint32_t kvq_from_engine(int t)
{
	return t >= 0 && t < ENGINE_KV_COUNT ? kvq_of_engine[t] : 0;
}

const char *engine_kv_type_name(int type)
{
	return kvq_from_engine(type) ? kvq_name(kvq_from_engine(type)) : "?";
}

int engine_kv_type_parse(const char *name)
{
	const uint32_t t = kvq_parse(name);
	for (int i = 0; t && i < ENGINE_KV_COUNT; i++)
		if (kvq_of_engine[i] == t)
			return i;
	return -1;
}

uint32_t engine_kv_type_bytes64(int type)
{
	const uint32_t t = kvq_from_engine(type);
	return t ? (uint32_t)kvq_row_bytes(t, 64) : 0;
}

/* ---- encoders ------------------------------------------------------------- */

static void minmax(const float *x, int n, float *mn, float *mx)
{
	*mn = *mx = x[0];
	for (int j = 1; j < n; j++) {
		*mn = x[j] < *mn ? x[j] : *mn;
		*mx = x[j] > *mx ? x[j] : *mx;
	}
}

/* the element of largest magnitude, with its sign (ggml's "max") */
static float signed_amax(const float *x, int n)
{
	float amax = 0.0f, m = 0.0f;
	for (int j = 0; j < n; j++)
		if (fabsf(x[j]) > amax) {
			amax = fabsf(x[j]);
			m = x[j];
		}
	return m;
}

static int clampi(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static void enc_q4_0(const float *x, struct quant_block_q4_0 *b)
{
	const float d = signed_amax(x, 32) / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
	b->d = quant_fp32_to_fp16(d);
	for (int j = 0; j < 16; j++) {
		const int a = clampi((int)(x[j] * id + 8.5f), 0, 15);
		const int c = clampi((int)(x[j + 16] * id + 8.5f), 0, 15);
		b->qs[j] = (uint8_t)(a | (c << 4));
	}
}

static void enc_q4_1(const float *x, struct quant_block_q4_1 *b)
{
	float mn, mx;
	minmax(x, 32, &mn, &mx);
	const float d = (mx - mn) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
	b->d = quant_fp32_to_fp16(d);
	b->m = quant_fp32_to_fp16(mn);
	for (int j = 0; j < 16; j++) {
		const int a = clampi((int)((x[j] - mn) * id + 0.5f), 0, 15);
		const int c = clampi((int)((x[j + 16] - mn) * id + 0.5f), 0, 15);
		b->qs[j] = (uint8_t)(a | (c << 4));
	}
}

/* the 5-bit codes q[32] into qs (low nibbles) and qh (fifth bits) */
static void put_q5(const int q[32], uint8_t qh4[4], uint8_t qs[16])
{
	uint32_t qh = 0;
	for (int j = 0; j < 16; j++) {
		qs[j] = (uint8_t)((q[j] & 0xf) | ((q[j + 16] & 0xf) << 4));
		qh |= (uint32_t)((q[j] >> 4) & 1) << j;
		qh |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
	}
	for (int i = 0; i < 4; i++)
		qh4[i] = (uint8_t)(qh >> (8 * i));
}

static void enc_q5_0(const float *x, struct quant_block_q5_0 *b)
{
	const float d = signed_amax(x, 32) / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
	int q[32];
	b->d = quant_fp32_to_fp16(d);
	for (int j = 0; j < 32; j++)
		q[j] = clampi((int)(x[j] * id + 16.5f), 0, 31);
	put_q5(q, b->qh, b->qs);
}

static void enc_q5_1(const float *x, struct quant_block_q5_1 *b)
{
	float mn, mx;
	minmax(x, 32, &mn, &mx);
	const float d = (mx - mn) / 31.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
	int q[32];
	b->d = quant_fp32_to_fp16(d);
	b->m = quant_fp32_to_fp16(mn);
	for (int j = 0; j < 32; j++)
		q[j] = clampi((int)((x[j] - mn) * id + 0.5f), 0, 31);
	put_q5(q, b->qh, b->qs);
}

static int nearest(const int8_t *lv, int nl, float v)
{
	int best = 0;
	float bd = fabsf(v - (float)lv[0]);
	for (int i = 1; i < nl; i++) {
		const float e = fabsf(v - (float)lv[i]);
		if (e < bd) {
			bd = e;
			best = i;
		}
	}
	return best;
}

/* Codes c[n] and scale of x[n] on the levels lv[nl] (largest |level| 127):
 * scales amax/127 * (0.70 .. 1.20) each refit by least squares; the least
 * squared error after fp16 rounding of the scale wins. */
static float fit_levels(const float *x, int n, const int8_t *lv, int nl, uint8_t *c)
{
	float amax = 0.0f;
	for (int j = 0; j < n; j++)
		amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
	if (amax == 0.0f) {
		for (int j = 0; j < n; j++)
			c[j] = (uint8_t)nearest(lv, nl, 0.0f);
		return 0.0f;
	}
	uint8_t t[KVQ_Q3R_BLOCK];
	float best_d = amax / 127.0f, best_err = INFINITY;
	for (int k = 0; k <= 10; k++) {
		const float d0 = amax / 127.0f * (0.70f + 0.05f * (float)k), id = 1.0f / d0;
		double sxl = 0.0, sll = 0.0;
		for (int j = 0; j < n; j++) {
			t[j] = (uint8_t)nearest(lv, nl, x[j] * id);
			sxl += (double)x[j] * lv[t[j]];
			sll += (double)lv[t[j]] * lv[t[j]];
		}
		const float d = quant_fp16_to_fp32(quant_fp32_to_fp16(sll > 0 ? (float)(sxl / sll) : d0));
		double err = 0.0;
		for (int j = 0; j < n; j++) {
			const double e = (double)x[j] - (double)d * lv[t[j]];
			err += e * e;
		}
		if (err < best_err) {
			best_err = (float)err;
			best_d = d;
			memcpy(c, t, (size_t)n);
		}
	}
	return best_d;
}

static void enc_iq4_nl(const float *x, struct quant_block_iq4_nl *b)
{
	uint8_t c[32];
	b->d = quant_fp32_to_fp16(fit_levels(x, 32, quant_kvalues_iq4nl, 16, c));
	for (int j = 0; j < 16; j++)
		b->qs[j] = (uint8_t)(c[j] | (c[j + 16] << 4));
}

static void enc_q3r(const float *x, struct kvq_block_q3r *b)
{
	uint8_t c[KVQ_Q3R_BLOCK];
	b->d = quant_fp32_to_fp16(fit_levels(x, KVQ_Q3R_BLOCK, q3r_levels, 8, c));
	memset(b->ql, 0, sizeof b->ql);
	memset(b->qh, 0, sizeof b->qh);
	for (int j = 0; j < KVQ_Q3R_BLOCK; j++) {
		b->ql[j % 16] |= (uint8_t)((c[j] & 3) << (2 * (j / 16)));
		b->qh[j / 8] |= (uint8_t)(((c[j] >> 2) & 1) << (j % 8));
	}
}

int kvq_quantize_row(uint32_t type, const float *x, void *dst, int64_t n)
{
	if (kvq_row_bytes(type, (uint64_t)(n > 0 ? n : 0)) == 0)
		return -1;
	if (type == GGML_TYPE_F16 || type == GGML_TYPE_Q8_0)
		return quant_quantize_row(type, x, dst, n);
	const int bk = kvq_block(type);
	for (int64_t i = 0; i < n / bk; i++, x += bk) {
		switch (type) {
		case GGML_TYPE_Q4_0: enc_q4_0(x, (struct quant_block_q4_0 *)dst + i); break;
		case GGML_TYPE_Q4_1: enc_q4_1(x, (struct quant_block_q4_1 *)dst + i); break;
		case GGML_TYPE_Q5_0: enc_q5_0(x, (struct quant_block_q5_0 *)dst + i); break;
		case GGML_TYPE_Q5_1: enc_q5_1(x, (struct quant_block_q5_1 *)dst + i); break;
		case GGML_TYPE_IQ4_NL: enc_iq4_nl(x, (struct quant_block_iq4_nl *)dst + i); break;
		default: enc_q3r(x, (struct kvq_block_q3r *)dst + i); break;
		}
	}
	return 0;
}

static int q3r_code(const struct kvq_block_q3r *b, int j)
{
	return ((b->ql[j % 16] >> (2 * (j / 16))) & 3) | (((b->qh[j / 8] >> (j % 8)) & 1) << 2);
}

static void dequant_q3r_scalar(const void *src, float *dst, int64_t n)
{
	const struct kvq_block_q3r *b = src;
	for (int64_t i = 0; i < n / KVQ_Q3R_BLOCK; i++, dst += KVQ_Q3R_BLOCK) {
		const float d = quant_fp16_to_fp32(b[i].d);
		for (int j = 0; j < KVQ_Q3R_BLOCK; j++)
			dst[j] = d * (float)q3r_levels[q3r_code(&b[i], j)];
	}
}

static kvq_dequant_fn q3r_dequant_at(int level);

int kvq_dequant_row(uint32_t type, const void *src, float *dst, int64_t n)
{
	if (kvq_row_bytes(type, (uint64_t)(n > 0 ? n : 0)) == 0)
		return -1;
	if (type != KVQ_Q3R)
		return quant_dequant_row(type, src, dst, n);
	q3r_dequant_at(quant_level())(src, dst, n);
	return 0;
}

/* ---- the query side --------------------------------------------------------- */

static uint32_t act_wtype(uint32_t type)
{
	return type == KVQ_Q3R ? GGML_TYPE_Q8_0 : type;
}

size_t kvq_act_bytes(uint32_t type, int64_t n)
{
	if (kvq_row_bytes(type, (uint64_t)(n > 0 ? n : 0)) == 0)
		return 0;
	return quant_act_row_bytes(act_wtype(type), n);
}

int kvq_act_quantize(uint32_t type, const float *q, void *dst, int64_t n)
{
	if (kvq_row_bytes(type, (uint64_t)(n > 0 ? n : 0)) == 0)
		return -1;
	return quant_act_quantize(act_wtype(type), q, dst, n);
}

/* Q3R row . Q8_0 row: per 64-block d * (d0 * sum0 + d1 * sum1), the sums
 * exact in integers */
/* Rows may sit at any byte (a cache row past an odd-sized one, a caller's
 * buffer): blocks are copied out, never read through a misaligned struct. */
static void q3r_blocks_at(const void *krow, const void *act, int64_t i, struct kvq_block_q3r *b,
			  struct quant_block_q8_0 y[2])
{
	memcpy(b, (const unsigned char *)krow + (size_t)i * sizeof *b, sizeof *b);
	memcpy(y, (const unsigned char *)act + (size_t)(2 * i) * sizeof y[0], 2 * sizeof y[0]);
}

static float dot_q3r_scalar(const void *krow, const void *act, int64_t n)
{
	float s = 0.0f;
	for (int64_t i = 0; i < n / KVQ_Q3R_BLOCK; i++) {
		struct kvq_block_q3r b;
		struct quant_block_q8_0 y[2];
		q3r_blocks_at(krow, act, i, &b, y);
		int sum[2] = {0, 0};
		for (int j = 0; j < KVQ_Q3R_BLOCK; j++)
			sum[j / 32] += q3r_levels[q3r_code(&b, j)] * y[j / 32].qs[j % 32];
		s += quant_fp16_to_fp32(b.d) * (quant_fp16_to_fp32(y[0].d) * (float)sum[0] +
						quant_fp16_to_fp32(y[1].d) * (float)sum[1]);
	}
	return s;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KVQ_AVX2 __attribute__((target("avx2,fma,f16c")))

/* 32 bits of p -> 32 bytes, 0xff where the bit is set */
static inline KVQ_AVX2 __m256i q3r_bits(const uint8_t *p)
{
	uint32_t w;
	memcpy(&w, p, 4);
	const __m256i sel = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
					      0x0101010101010101LL, 0);
	const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
	__m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w), sel);
	return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

static KVQ_AVX2 float dot_q3r_avx2(const void *krow, const void *act, int64_t n)
{
	const __m256i lut = _mm256_setr_epi8(-127, -79, -45, -14, 14, 45, 79, 127, 0, 0, 0, 0, 0, 0, 0, 0,
					     -127, -79, -45, -14, 14, 45, 79, 127, 0, 0, 0, 0, 0, 0, 0, 0);
	const __m256i three = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
	const __m256i ones = _mm256_set1_epi16(1);
	__m256 acc = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / KVQ_Q3R_BLOCK; i++) {
		struct kvq_block_q3r bk;
		struct quant_block_q8_0 y[2];
		q3r_blocks_at(krow, act, i, &bk, y);
		const struct kvq_block_q3r *b = &bk;
		const __m128i t = _mm_loadu_si128((const __m128i *)(const void *)b->ql);
		const float d = _cvtsh_ss(b->d);
		for (int h = 0; h < 2; h++) {
			/* elements 32h .. 32h+15 at shift 4h, 32h+16 .. 32h+31 at 4h+2 */
			const __m256i lo = _mm256_and_si256(
				_mm256_set_m128i(_mm_srli_epi16(t, 4 * h + 2), _mm_srli_epi16(t, 4 * h)), three);
			const __m256i hb = _mm256_and_si256(q3r_bits(b->qh + 4 * h), four);
			const __m256i w = _mm256_shuffle_epi8(lut, _mm256_or_si256(lo, hb));
			const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)y[h].qs);
			const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
			const __m256i s = _mm256_madd_epi16(p, ones);
			acc = _mm256_fmadd_ps(_mm256_set1_ps(d * _cvtsh_ss(y[h].d)), _mm256_cvtepi32_ps(s), acc);
		}
	}
	__m128 r = _mm_add_ps(_mm256_extractf128_ps(acc, 1), _mm256_castps256_ps128(acc));
	r = _mm_add_ps(r, _mm_movehl_ps(r, r));
	r = _mm_add_ss(r, _mm_movehdup_ps(r));
	return _mm_cvtss_f32(r);
}

/* the 32 signed levels of half H of block B */
static inline KVQ_AVX2 __m256i q3r_levels_avx2(const struct kvq_block_q3r *b, int h)
{
	const __m256i lut = _mm256_setr_epi8(-127, -79, -45, -14, 14, 45, 79, 127, 0, 0, 0, 0, 0, 0, 0, 0,
					     -127, -79, -45, -14, 14, 45, 79, 127, 0, 0, 0, 0, 0, 0, 0, 0);
	const __m128i t = _mm_loadu_si128((const __m128i *)(const void *)b->ql);
	const __m256i lo = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4 * h + 2), _mm_srli_epi16(t, 4 * h)),
					    _mm256_set1_epi8(3));
	const __m256i hb = _mm256_and_si256(q3r_bits(b->qh + 4 * h), _mm256_set1_epi8(4));
	return _mm256_shuffle_epi8(lut, _mm256_or_si256(lo, hb));
}

static KVQ_AVX2 void dequant_q3r_avx2(const void *src, float *dst, int64_t n)
{
	const struct kvq_block_q3r *b = src;
	for (int64_t i = 0; i < n / KVQ_Q3R_BLOCK; i++) {
		const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d));
		for (int h = 0; h < 2; h++, dst += 32) {
			const __m256i w = q3r_levels_avx2(&b[i], h);
			const __m128i w0 = _mm256_castsi256_si128(w), w1 = _mm256_extracti128_si256(w, 1);
			_mm256_storeu_ps(dst, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w0))));
			_mm256_storeu_ps(dst + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(w0, 8)))));
			_mm256_storeu_ps(dst + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w1))));
			_mm256_storeu_ps(dst + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(w1, 8)))));
		}
	}
}

static KVQ_AVX2 float dot_f32_avx2(const float *a, const float *b, int n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
	s0 = _mm256_add_ps(s0, s1);
	__m128 r = _mm_add_ps(_mm256_extractf128_ps(s0, 1), _mm256_castps256_ps128(s0));
	r = _mm_add_ps(r, _mm_movehl_ps(r, r));
	r = _mm_add_ss(r, _mm_movehdup_ps(r));
	float s = _mm_cvtss_f32(r);
	for (; i < n; i++)
		s += a[i] * b[i];
	return s;
}

static KVQ_AVX2 void axpy_avx2(float *y, const float *x, float a, int n)
{
	const __m256 va = _mm256_set1_ps(a);
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
	for (; i < n; i++)
		y[i] += a * x[i];
}
#endif

float kvq_dot_f32(const float *a, const float *b, int n)
{
#if defined(__x86_64__) || defined(__i386__)
	if (quant_level() >= QUANT_LEVEL_AVX2)
		return dot_f32_avx2(a, b, n);
#endif
	float s = 0.0f;
	for (int i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

void kvq_axpy(float *y, const float *x, float a, int n)
{
#if defined(__x86_64__) || defined(__i386__)
	if (quant_level() >= QUANT_LEVEL_AVX2) {
		axpy_avx2(y, x, a, n);
		return;
	}
#endif
	for (int i = 0; i < n; i++)
		y[i] += a * x[i];
}

static kvq_dequant_fn q3r_dequant_at(int level)
{
#if defined(__x86_64__) || defined(__i386__)
	if (level >= QUANT_LEVEL_AVX2 && quant_level_detect() >= QUANT_LEVEL_AVX2)
		return dequant_q3r_avx2;
#endif
	(void)level;
	return dequant_q3r_scalar;
}

kvq_dequant_fn kvq_q3r_dequant_at(int level)
{
	return level < QUANT_LEVEL_SCALAR || level > quant_level_detect() ? NULL : q3r_dequant_at(level);
}

kvq_dot_fn kvq_q3r_dot_at(int level)
{
	if (level < QUANT_LEVEL_SCALAR || level > quant_level_detect())
		return NULL;
#if defined(__x86_64__) || defined(__i386__)
	if (level >= QUANT_LEVEL_AVX2)
		return dot_q3r_avx2;
#endif
	return dot_q3r_scalar;
}

kvq_dot_fn kvq_get_dot(uint32_t type)
{
	if (!kvq_supported(type))
		return NULL;
	if (type == KVQ_Q3R)
		return kvq_q3r_dot_at(quant_level());
	return quant_get_vec_dot(type);
}

/* ---- rotation ------------------------------------------------------------------ */

void kvq_rot_signs(uint32_t seed, float *signs, int n)
{
	uint64_t s = seed;
	for (int i = 0; i < n; i++) {
		/* splitmix64 */
		uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		z ^= z >> 31;
		signs[i] = (z >> 63) ? -1.0f : 1.0f;
	}
}

/* the chunk the Walsh-Hadamard transform covers: the largest power of two
 * dividing d */
static int rot_chunk(int d)
{
	return d & -d;
}

/* x <- H x / sqrt(c) on each chunk of c */
static void wht(float *x, int d)
{
	const int c = rot_chunk(d);
	const float sc = 1.0f / sqrtf((float)c);
	for (int o = 0; o < d; o += c) {
		float *v = x + o;
		for (int len = 1; len < c; len <<= 1)
			for (int i = 0; i < c; i += 2 * len)
				for (int j = i; j < i + len; j++) {
					const float a = v[j], b = v[j + len];
					v[j] = a + b;
					v[j + len] = a - b;
				}
		for (int j = 0; j < c; j++)
			v[j] *= sc;
	}
}

void kvq_rotate(float *x, int d, const float *signs)
{
	for (int j = 0; j < d; j++)
		x[j] *= signs[j];
	wht(x, d);
}

void kvq_unrotate(float *x, int d, const float *signs)
{
	wht(x, d);
	for (int j = 0; j < d; j++)
		x[j] *= signs[j];
}
