/*
 * quant.c - scalar reference kernels for the ggml tensor formats, and the
 * run-time dispatch to the SIMD levels (quant_avx2.c, quant_avx512.c).
 *
 * The scalar code is written to be obviously right rather than fast: the
 * K-quants are first unpacked into plain integers (one quant per element,
 * one scale and one min per sub-block, element order), and dequantisation
 * and the dot products are both computed from that unpacked form.  Float
 * expressions keep llama.cpp's order of roundings: dequantised values are
 * (d*scale)*q - (dmin*min), and a block's dot product is its exact integer
 * sum times (d_weight*d_activation).  Activation quantisation follows
 * llama.cpp's x86 build bit for bit (scale amax/127 as fp16, multiplier
 * 127/amax, round to nearest even), since the activation bytes decide
 * which integers get summed.
 *
 * Dispatch: each level has a per-type table of kernels; a NULL entry falls
 * back to the level below.  The level in use is computed once (CPUID, then
 * TTYCHAT_CPU) and cached in atomic ints: the only mutable statics here,
 * caches of a fact about the machine.
 */
#include "quant.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quant_impl.h"
#include "quant_iq.h"

#if QUANT_X86
#include <cpuid.h>
#endif

_Static_assert(sizeof(struct quant_block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(struct quant_block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(struct quant_block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(struct quant_block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(struct quant_block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(struct quant_block_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(struct quant_block_q2_k) == 84, "q2_k layout");
_Static_assert(sizeof(struct quant_block_q3_k) == 110, "q3_k layout");
_Static_assert(sizeof(struct quant_block_q4_k) == 144, "q4_k layout");
_Static_assert(sizeof(struct quant_block_q5_k) == 176, "q5_k layout");
_Static_assert(sizeof(struct quant_block_q6_k) == 210, "q6_k layout");
_Static_assert(sizeof(struct quant_block_q8_k) == 292, "q8_k layout");

/* ---- conversions ------------------------------------------------------------ */

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

float quant_fp16_to_fp32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;

	if (e == 0) {
		/* zero or subnormal: m * 2^-24, exact in binary32 */
		float v = (float)m * 0x1p-24f;
		return bits_f32(f32_bits(v) | sign);
	}
	if (e == 31)
		return bits_f32(sign | 0x7f800000u | (m << 13));
	return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t quant_fp32_to_fp16(float f)
{
	uint32_t x = f32_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
	uint32_t ax = x & 0x7fffffffu;

	if (ax > 0x7f800000u)       /* NaN: quiet, keep the top payload bits */
		return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
	if (ax >= 0x477ff000u)      /* >= 65520 rounds to infinity */
		return (uint16_t)(sign | 0x7c00);
	if (ax < 0x38800000u) {
		/* below 2^-14: half subnormal.  Adding 0.5 (ulp 2^-24) makes the
		 * FPU round |f| to a multiple of 2^-24, ties to even; the low
		 * mantissa bits are then the half's (possibly 0x400 = the
		 * smallest normal, which is the right encoding too). */
		float r = bits_f32(ax) + 0.5f;
		return (uint16_t)(sign | (f32_bits(r) - 0x3f000000u));
	}
	/* normal: rebias the exponent, round the 13 dropped bits to even */
	ax -= 0x38000000u;
	ax += 0x0fffu + ((ax >> 13) & 1);
	return (uint16_t)(sign | (ax >> 13));
}

float quant_bf16_to_fp32(uint16_t h)
{
	return bits_f32((uint32_t)h << 16);
}

uint16_t quant_fp32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);

	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 64);
	return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

#define H2F(h) quant_fp16_to_fp32(h)

/* ---- dequantisation, 32-element blocks ------------------------------------- */

static void dequant_f32(const void *src, float *dst, int64_t n)
{
	memcpy(dst, src, (size_t)n * sizeof(float));
}

static void dequant_f16(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;

	for (int64_t i = 0; i < n; i++) {
		uint16_t h;
		memcpy(&h, p + 2 * i, 2);
		dst[i] = quant_fp16_to_fp32(h);
	}
}

static void dequant_bf16(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;

	for (int64_t i = 0; i < n; i++) {
		uint16_t h;
		memcpy(&h, p + 2 * i, 2);
		dst[i] = quant_bf16_to_fp32(h);
	}
}

/* The 32-element formats: unpack into integer quants q[32] and the block's
 * float scale d and offset m, value = d*q + m (m = 0 where there is none,
 * and Q4_0/Q5_0's "- 8" / "- 16" is folded into q). */
static void unpack_q4_0(const struct quant_block_q4_0 *b, int q[32], float *d)
{
	*d = H2F(b->d);
	for (int j = 0; j < 16; j++) {
		q[j] = (b->qs[j] & 0xf) - 8;
		q[j + 16] = (b->qs[j] >> 4) - 8;
	}
}

static void unpack_q4_1(const struct quant_block_q4_1 *b, int q[32], float *d, float *m)
{
	*d = H2F(b->d);
	*m = H2F(b->m);
	for (int j = 0; j < 16; j++) {
		q[j] = b->qs[j] & 0xf;
		q[j + 16] = b->qs[j] >> 4;
	}
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void unpack_q5(const uint8_t qh4[4], const uint8_t qs[16], int q[32], int off)
{
	uint32_t qh = le32(qh4);

	for (int j = 0; j < 16; j++) {
		q[j] = ((qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4)) - off;
		q[j + 16] = ((qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - off;
	}
}

static void dequant_q4_0(const void *src, float *dst, int64_t n)
{
	const struct quant_block_q4_0 *b = src;
	int q[32];
	float d;

	for (int64_t i = 0; i < n / 32; i++, dst += 32) {
		unpack_q4_0(&b[i], q, &d);
		for (int j = 0; j < 32; j++)
			dst[j] = (float)q[j] * d;
	}
}

static void dequant_q4_1(const void *src, float *dst, int64_t n)
{
	const struct quant_block_q4_1 *b = src;
	int q[32];
	float d, m;

	for (int64_t i = 0; i < n / 32; i++, dst += 32) {
		unpack_q4_1(&b[i], q, &d, &m);
		for (int j = 0; j < 32; j++)
			dst[j] = (float)q[j] * d + m;
	}
}

static void dequant_q5_0(const void *src, float *dst, int64_t n)
{
	const struct quant_block_q5_0 *b = src;
	int q[32];

	for (int64_t i = 0; i < n / 32; i++, dst += 32) {
		float d = H2F(b[i].d);
		unpack_q5(b[i].qh, b[i].qs, q, 16);
		for (int j = 0; j < 32; j++)
			dst[j] = (float)q[j] * d;
	}
}

static void dequant_q5_1(const void *src, float *dst, int64_t n)
{
	const struct quant_block_q5_1 *b = src;
	int q[32];

	for (int64_t i = 0; i < n / 32; i++, dst += 32) {
		float d = H2F(b[i].d), m = H2F(b[i].m);
		unpack_q5(b[i].qh, b[i].qs, q, 0);
		for (int j = 0; j < 32; j++)
			dst[j] = (float)q[j] * d + m;
	}
}

static void dequant_q8_0(const void *src, float *dst, int64_t n)
{
	const struct quant_block_q8_0 *b = src;

	for (int64_t i = 0; i < n / 32; i++, dst += 32) {
		float d = H2F(b[i].d);
		for (int j = 0; j < 32; j++)
			dst[j] = (float)b[i].qs[j] * d;
	}
}

static void dequant_q8_1(const void *src, float *dst, int64_t n)
{
	const struct quant_block_q8_1 *b = src;

	for (int64_t i = 0; i < n / 32; i++, dst += 32) {
		float d = H2F(b[i].d);
		for (int j = 0; j < 32; j++)
			dst[j] = (float)b[i].qs[j] * d;
	}
}

/* ---- K-quants: unpacked form ---------------------------------------------- */

/* value(e) = (d * sc[k]) * q[e] - (dmin * mn[k]),  k = e / (256 / nsub) */
struct kblock {
	int8_t q[256];
	int sc[16];
	int mn[16];
	int nsub;        /* 16 sub-blocks of 16, or 8 of 32 */
	float d, dmin;
};

static void unpack_q2_k(const struct quant_block_q2_k *b, struct kblock *k)
{
	k->nsub = 16;
	k->d = H2F(b->d);
	k->dmin = H2F(b->dmin);
	for (int s = 0; s < 16; s++) {
		k->sc[s] = b->scales[s] & 0xf;
		k->mn[s] = b->scales[s] >> 4;
	}
	for (int h = 0; h < 2; h++)
		for (int j = 0; j < 4; j++)
			for (int l = 0; l < 32; l++)
				k->q[128 * h + 32 * j + l] = (int8_t)((b->qs[32 * h + l] >> (2 * j)) & 3);
}

static void unpack_q3_k(const struct quant_block_q3_k *b, struct kblock *k)
{
	const uint8_t *s = b->scales;

	k->nsub = 16;
	k->d = H2F(b->d);
	k->dmin = 0.0f;
	/* 16 six-bit scales: low nibbles in bytes 0..7, two high bits each in
	 * bytes 8..11; stored with an offset of 32 */
	for (int i = 0; i < 4; i++) {
		k->sc[i] = ((s[i] & 0xf) | (((s[8 + i] >> 0) & 3) << 4)) - 32;
		k->sc[4 + i] = ((s[4 + i] & 0xf) | (((s[8 + i] >> 2) & 3) << 4)) - 32;
		k->sc[8 + i] = ((s[i] >> 4) | (((s[8 + i] >> 4) & 3) << 4)) - 32;
		k->sc[12 + i] = ((s[4 + i] >> 4) | (((s[8 + i] >> 6) & 3) << 4)) - 32;
	}
	memset(k->mn, 0, sizeof k->mn);
	for (int h = 0; h < 2; h++)
		for (int j = 0; j < 4; j++) {
			int bit = 4 * h + j;
			for (int l = 0; l < 32; l++) {
				int lo = (b->qs[32 * h + l] >> (2 * j)) & 3;
				int hi = (b->hmask[l] >> bit) & 1;
				k->q[128 * h + 32 * j + l] = (int8_t)(lo - (hi ? 0 : 4));
			}
		}
}

/* The 12-byte packing of eight 6-bit scales and eight 6-bit mins shared by
 * Q4_K and Q5_K. */
static void unpack_scales_k4(const uint8_t s[12], int sc[8], int mn[8])
{
	for (int j = 0; j < 8; j++) {
		if (j < 4) {
			sc[j] = s[j] & 63;
			mn[j] = s[j + 4] & 63;
		} else {
			sc[j] = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
			mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
		}
	}
}

static void unpack_q4_k(const struct quant_block_q4_k *b, struct kblock *k)
{
	k->nsub = 8;
	k->d = H2F(b->d);
	k->dmin = H2F(b->dmin);
	unpack_scales_k4(b->scales, k->sc, k->mn);
	for (int c = 0; c < 4; c++)
		for (int l = 0; l < 32; l++) {
			k->q[64 * c + l] = (int8_t)(b->qs[32 * c + l] & 0xf);
			k->q[64 * c + 32 + l] = (int8_t)(b->qs[32 * c + l] >> 4);
		}
}

static void unpack_q5_k(const struct quant_block_q5_k *b, struct kblock *k)
{
	k->nsub = 8;
	k->d = H2F(b->d);
	k->dmin = H2F(b->dmin);
	unpack_scales_k4(b->scales, k->sc, k->mn);
	for (int c = 0; c < 4; c++)
		for (int l = 0; l < 32; l++) {
			int h0 = (b->qh[l] >> (2 * c)) & 1, h1 = (b->qh[l] >> (2 * c + 1)) & 1;
			k->q[64 * c + l] = (int8_t)((b->qs[32 * c + l] & 0xf) | (h0 << 4));
			k->q[64 * c + 32 + l] = (int8_t)((b->qs[32 * c + l] >> 4) | (h1 << 4));
		}
}

static void unpack_q6_k(const struct quant_block_q6_k *b, struct kblock *k)
{
	k->nsub = 16;
	k->d = H2F(b->d);
	k->dmin = 0.0f;
	for (int s = 0; s < 16; s++) {
		k->sc[s] = b->scales[s];
		k->mn[s] = 0;
	}
	for (int h = 0; h < 2; h++) {
		const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
		int8_t *q = k->q + 128 * h;
		for (int l = 0; l < 32; l++) {
			q[l] = (int8_t)(((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32);
			q[l + 32] = (int8_t)(((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32);
			q[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
			q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
		}
	}
}

static void unpack_k(uint32_t type, const void *blk, struct kblock *k)
{
	switch (type) {
	case GGML_TYPE_Q2_K: unpack_q2_k(blk, k); break;
	case GGML_TYPE_Q3_K: unpack_q3_k(blk, k); break;
	case GGML_TYPE_Q4_K: unpack_q4_k(blk, k); break;
	case GGML_TYPE_Q5_K: unpack_q5_k(blk, k); break;
	default: unpack_q6_k(blk, k); break;
	}
}

static size_t kblock_bytes(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q2_K: return sizeof(struct quant_block_q2_k);
	case GGML_TYPE_Q3_K: return sizeof(struct quant_block_q3_k);
	case GGML_TYPE_Q4_K: return sizeof(struct quant_block_q4_k);
	case GGML_TYPE_Q5_K: return sizeof(struct quant_block_q5_k);
	default: return sizeof(struct quant_block_q6_k);
	}
}

static void dequant_k(uint32_t type, const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;
	size_t bb = kblock_bytes(type);
	struct kblock k;

	for (int64_t i = 0; i < n / 256; i++, p += bb, dst += 256) {
		unpack_k(type, p, &k);
		int len = 256 / k.nsub;
		for (int s = 0; s < k.nsub; s++) {
			float dl = k.d * (float)k.sc[s], ml = k.dmin * (float)k.mn[s];
			for (int l = 0; l < len; l++)
				dst[s * len + l] = dl * (float)k.q[s * len + l] - ml;
		}
	}
}

static void dequant_q2_k(const void *s, float *d, int64_t n) { dequant_k(GGML_TYPE_Q2_K, s, d, n); }
static void dequant_q3_k(const void *s, float *d, int64_t n) { dequant_k(GGML_TYPE_Q3_K, s, d, n); }
static void dequant_q4_k(const void *s, float *d, int64_t n) { dequant_k(GGML_TYPE_Q4_K, s, d, n); }
static void dequant_q5_k(const void *s, float *d, int64_t n) { dequant_k(GGML_TYPE_Q5_K, s, d, n); }
static void dequant_q6_k(const void *s, float *d, int64_t n) { dequant_k(GGML_TYPE_Q6_K, s, d, n); }

static void dequant_q8_k(const void *src, float *dst, int64_t n)
{
	const struct quant_block_q8_k *b = src;

	for (int64_t i = 0; i < n / 256; i++, dst += 256)
		for (int j = 0; j < 256; j++)
			dst[j] = b[i].d * (float)b[i].qs[j];
}

/* ---- activation quantisation ------------------------------------------------ */

/* Round to nearest even and saturate to int8 the way x86's cvtps2dq +
 * packsswb do (NaN and anything below -128 become -128). */
static int8_t q8_round(float v)
{
	if (!(v > -128.5f))
		return -128;
	if (v >= 127.5f)
		return 127;
	/* |v| < 2^22: adding 1.5*2^23 leaves an integer, rounded to even */
	float r = (v + 12582912.0f) - 12582912.0f;
	return (int8_t)(int)r;
}

static float amax32(const float *x)
{
	float amax = 0.0f;

	for (int j = 0; j < 32; j++) {
		float a = fabsf(x[j]);
		amax = a > amax ? a : amax;
	}
	return amax;
}

void quant_q8_0_quantize_ref(const float *x, void *dst, int64_t n)
{
	struct quant_block_q8_0 *y = dst;

	for (int64_t i = 0; i < n / 32; i++, x += 32) {
		float amax = amax32(x);
		float d = amax / 127.0f;
		float id = amax != 0.0f ? 127.0f / amax : 0.0f;
		y[i].d = quant_fp32_to_fp16(d);
		for (int j = 0; j < 32; j++)
			y[i].qs[j] = q8_round(x[j] * id);
	}
}

void quant_q8_1_quantize_ref(const float *x, void *dst, int64_t n)
{
	struct quant_block_q8_1 *y = dst;

	for (int64_t i = 0; i < n / 32; i++, x += 32) {
		float amax = amax32(x);
		float d = amax / 127.0f;
		float id = amax != 0.0f ? 127.0f / amax : 0.0f;
		int sum = 0;
		y[i].d = quant_fp32_to_fp16(d);
		for (int j = 0; j < 32; j++) {
			y[i].qs[j] = q8_round(x[j] * id);
			sum += y[i].qs[j];
		}
		y[i].s = quant_fp32_to_fp16(d * (float)sum);
	}
}

/* llama.cpp's nearest_int: round to nearest even through the float adder;
 * meaningful for |v| <= 2^22 and free of undefined behaviour otherwise. */
static int nearest_int(float v)
{
	float t = v + 12582912.0f;
	uint32_t u = f32_bits(t);
	return (int)(u & 0x007fffffu) - 0x00400000;
}

void quant_q8_k_quantize_ref(const float *x, void *dst, int64_t n)
{
	struct quant_block_q8_k *y = dst;

	for (int64_t i = 0; i < n / 256; i++, x += 256) {
		float max = 0.0f, amax = 0.0f;
		for (int j = 0; j < 256; j++) {
			float a = fabsf(x[j]);
			if (a > amax) {
				amax = a;
				max = x[j];
			}
		}
		if (amax == 0.0f) {
			y[i].d = 0.0f;
			memset(y[i].qs, 0, sizeof y[i].qs);
			memset(y[i].bsums, 0, sizeof y[i].bsums);
			continue;
		}
		float iscale = -127.0f / max;
		for (int j = 0; j < 256; j++) {
			int v = nearest_int(iscale * x[j]);
			y[i].qs[j] = (int8_t)(v < 127 ? (v > -128 ? v : -128) : 127);
		}
		for (int s = 0; s < 16; s++) {
			int sum = 0;
			for (int l = 0; l < 16; l++)
				sum += y[i].qs[16 * s + l];
			y[i].bsums[s] = (int16_t)sum;
		}
		y[i].d = 1.0f / iscale;
	}
}

static void act_f32(const float *x, void *dst, int64_t n)
{
	memcpy(dst, x, (size_t)n * sizeof(float));
}

static void act_f16(const float *x, void *dst, int64_t n)
{
	uint8_t *p = dst;

	for (int64_t i = 0; i < n; i++) {
		uint16_t h = quant_fp32_to_fp16(x[i]);
		memcpy(p + 2 * i, &h, 2);
	}
}

static void act_bf16(const float *x, void *dst, int64_t n)
{
	uint8_t *p = dst;

	for (int64_t i = 0; i < n; i++) {
		uint16_t h = quant_fp32_to_bf16(x[i]);
		memcpy(p + 2 * i, &h, 2);
	}
}

/* ---- scalar dot products -------------------------------------------------- */

static float dot_f32(const void *w, const void *x, int64_t n)
{
	const uint8_t *a = w, *b = x;
	double sum = 0.0;

	for (int64_t i = 0; i < n; i++) {
		float u, v;
		memcpy(&u, a + 4 * i, 4);
		memcpy(&v, b + 4 * i, 4);
		sum += (double)(u * v);
	}
	return (float)sum;
}

static float dot_f16(const void *w, const void *x, int64_t n)
{
	const uint8_t *a = w, *b = x;
	double sum = 0.0;

	for (int64_t i = 0; i < n; i++) {
		uint16_t u, v;
		memcpy(&u, a + 2 * i, 2);
		memcpy(&v, b + 2 * i, 2);
		sum += (double)(H2F(u) * H2F(v));
	}
	return (float)sum;
}

static float dot_bf16(const void *w, const void *x, int64_t n)
{
	const uint8_t *a = w, *b = x;
	double sum = 0.0;

	for (int64_t i = 0; i < n; i++) {
		uint16_t u, v;
		memcpy(&u, a + 2 * i, 2);
		memcpy(&v, b + 2 * i, 2);
		sum += (double)(quant_bf16_to_fp32(u) * quant_bf16_to_fp32(v));
	}
	return (float)sum;
}

static int isum32(const int q[32], const int8_t y[32])
{
	int s = 0;

	for (int j = 0; j < 32; j++)
		s += q[j] * y[j];
	return s;
}

static float dot_q4_0(const void *w, const void *x, int64_t n)
{
	const struct quant_block_q4_0 *b = w;
	const struct quant_block_q8_0 *y = x;
	float sum = 0.0f, d;
	int q[32];

	for (int64_t i = 0; i < n / 32; i++) {
		unpack_q4_0(&b[i], q, &d);
		sum += (d * H2F(y[i].d)) * (float)isum32(q, y[i].qs);
	}
	return sum;
}

static float dot_q4_1(const void *w, const void *x, int64_t n)
{
	const struct quant_block_q4_1 *b = w;
	const struct quant_block_q8_1 *y = x;
	float sum = 0.0f, d, m;
	int q[32];

	for (int64_t i = 0; i < n / 32; i++) {
		unpack_q4_1(&b[i], q, &d, &m);
		sum += (d * H2F(y[i].d)) * (float)isum32(q, y[i].qs) + m * H2F(y[i].s);
	}
	return sum;
}

static float dot_q5_0(const void *w, const void *x, int64_t n)
{
	const struct quant_block_q5_0 *b = w;
	const struct quant_block_q8_0 *y = x;
	float sum = 0.0f;
	int q[32];

	for (int64_t i = 0; i < n / 32; i++) {
		unpack_q5(b[i].qh, b[i].qs, q, 16);
		sum += (H2F(b[i].d) * H2F(y[i].d)) * (float)isum32(q, y[i].qs);
	}
	return sum;
}

static float dot_q5_1(const void *w, const void *x, int64_t n)
{
	const struct quant_block_q5_1 *b = w;
	const struct quant_block_q8_1 *y = x;
	float sum = 0.0f;
	int q[32];

	for (int64_t i = 0; i < n / 32; i++) {
		unpack_q5(b[i].qh, b[i].qs, q, 0);
		sum += (H2F(b[i].d) * H2F(y[i].d)) * (float)isum32(q, y[i].qs) +
		       H2F(b[i].m) * H2F(y[i].s);
	}
	return sum;
}

static float dot_q8_0(const void *w, const void *x, int64_t n)
{
	const struct quant_block_q8_0 *b = w;
	const struct quant_block_q8_0 *y = x;
	float sum = 0.0f;

	for (int64_t i = 0; i < n / 32; i++) {
		int s = 0;
		for (int j = 0; j < 32; j++)
			s += b[i].qs[j] * y[i].qs[j];
		sum += (H2F(b[i].d) * H2F(y[i].d)) * (float)s;
	}
	return sum;
}

/* sum over blocks of (d*yd) * sum_k sc[k]*sum(q*y) - (dmin*yd) * sum_k mn[k]*sum(y) */
static float dot_k(uint32_t type, const void *w, const void *x, int64_t n)
{
	const uint8_t *p = w;
	const struct quant_block_q8_k *y = x;
	size_t bb = kblock_bytes(type);
	struct kblock k;
	float sum = 0.0f;

	for (int64_t i = 0; i < n / 256; i++, p += bb) {
		unpack_k(type, p, &k);
		int len = 256 / k.nsub, isum = 0, msum = 0;
		for (int s = 0; s < k.nsub; s++) {
			int qy = 0, ys = 0;
			for (int l = 0; l < len; l++) {
				qy += k.q[s * len + l] * y[i].qs[s * len + l];
				ys += y[i].qs[s * len + l];
			}
			isum += k.sc[s] * qy;
			msum += k.mn[s] * ys;
		}
		sum += (y[i].d * k.d) * (float)isum - (y[i].d * k.dmin) * (float)msum;
	}
	return sum;
}

static float dot_q2_k(const void *w, const void *x, int64_t n) { return dot_k(GGML_TYPE_Q2_K, w, x, n); }
static float dot_q3_k(const void *w, const void *x, int64_t n) { return dot_k(GGML_TYPE_Q3_K, w, x, n); }
static float dot_q4_k(const void *w, const void *x, int64_t n) { return dot_k(GGML_TYPE_Q4_K, w, x, n); }
static float dot_q5_k(const void *w, const void *x, int64_t n) { return dot_k(GGML_TYPE_Q5_K, w, x, n); }
static float dot_q6_k(const void *w, const void *x, int64_t n) { return dot_k(GGML_TYPE_Q6_K, w, x, n); }

/* ---- generic drivers ---------------------------------------------------------- */

void quant_matvec_by_dot(quant_dot_fn dot, const void *w, size_t ws, int64_t r0,
			 int64_t r1, const void *x, int64_t n, float *y)
{
	const char *p = (const char *)w + (size_t)r0 * ws;

	for (int64_t r = r0; r < r1; r++, p += ws)
		y[r] = dot(p, x, n);
}

void quant_matmul_by_matvec(quant_matvec_fn mv, const void *w, size_t ws, int64_t r0,
			    int64_t r1, const void *x, size_t xs, int64_t nt, int64_t n,
			    float *y, int64_t ys)
{
	/* rows per tile: about 16 KiB of weights, which stay in L1/L2 while
	 * every token's activations stream past them */
	int64_t tile = ws > 0 ? (int64_t)(16384 / ws) : 1;

	if (tile < 1)
		tile = 1;
	for (int64_t a = r0; a < r1; a += tile) {
		int64_t b = a + tile < r1 ? a + tile : r1;
		for (int64_t t = 0; t < nt; t++)
			mv(w, ws, a, b, (const char *)x + (size_t)t * xs, n, y + t * ys);
	}
}

/* ---- tables -------------------------------------------------------------------- */

static const struct quant_kern k_f32 = { dequant_f32, act_f32, dot_f32, NULL, NULL };
static const struct quant_kern k_f16 = { dequant_f16, act_f16, dot_f16, NULL, NULL };
static const struct quant_kern k_bf16 = { dequant_bf16, act_bf16, dot_bf16, NULL, NULL };
static const struct quant_kern k_q4_0 = { dequant_q4_0, quant_q8_0_quantize_ref, dot_q4_0, NULL, NULL };
static const struct quant_kern k_q4_1 = { dequant_q4_1, quant_q8_1_quantize_ref, dot_q4_1, NULL, NULL };
static const struct quant_kern k_q5_0 = { dequant_q5_0, quant_q8_0_quantize_ref, dot_q5_0, NULL, NULL };
static const struct quant_kern k_q5_1 = { dequant_q5_1, quant_q8_1_quantize_ref, dot_q5_1, NULL, NULL };
static const struct quant_kern k_q8_0 = { dequant_q8_0, quant_q8_0_quantize_ref, dot_q8_0, NULL, NULL };
static const struct quant_kern k_q2_k = { dequant_q2_k, quant_q8_k_quantize_ref, dot_q2_k, NULL, NULL };
static const struct quant_kern k_q3_k = { dequant_q3_k, quant_q8_k_quantize_ref, dot_q3_k, NULL, NULL };
static const struct quant_kern k_q4_k = { dequant_q4_k, quant_q8_k_quantize_ref, dot_q4_k, NULL, NULL };
static const struct quant_kern k_q5_k = { dequant_q5_k, quant_q8_k_quantize_ref, dot_q5_k, NULL, NULL };
static const struct quant_kern k_q6_k = { dequant_q6_k, quant_q8_k_quantize_ref, dot_q6_k, NULL, NULL };

const struct quant_kern *quant_kern_scalar(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F32: return &k_f32;
	case GGML_TYPE_F16: return &k_f16;
	case GGML_TYPE_BF16: return &k_bf16;
	case GGML_TYPE_Q4_0: return &k_q4_0;
	case GGML_TYPE_Q4_1: return &k_q4_1;
	case GGML_TYPE_Q5_0: return &k_q5_0;
	case GGML_TYPE_Q5_1: return &k_q5_1;
	case GGML_TYPE_Q8_0: return &k_q8_0;
	case GGML_TYPE_Q2_K: return &k_q2_k;
	case GGML_TYPE_Q3_K: return &k_q3_k;
	case GGML_TYPE_Q4_K: return &k_q4_k;
	case GGML_TYPE_Q5_K: return &k_q5_k;
	case GGML_TYPE_Q6_K: return &k_q6_k;
	QUANT_IQ_CASES return quant_iq_kern_scalar(type);
	QUANT_NL_CASES: return quant_kern_nl_scalar(type);
	default: return NULL;
	}
}

/* ---- types ------------------------------------------------------------------------ */

int quant_supported(uint32_t type)
{
	return quant_kern_scalar(type) != NULL;
}

int quant_dequant_supported(uint32_t type)
{
	return quant_supported(type) || type == GGML_TYPE_Q8_1 || type == GGML_TYPE_Q8_K;
}

uint32_t quant_act_type(uint32_t wtype)
{
	switch (wtype) {
	case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16:
		return wtype;
	case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: case GGML_TYPE_Q8_0:
		return GGML_TYPE_Q8_0;
	case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1:
		return GGML_TYPE_Q8_1;
	case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
		return GGML_TYPE_Q8_K;
	QUANT_IQ_CASES
		return GGML_TYPE_Q8_K;
	QUANT_NL_CASES:
		return quant_nl_act_type(wtype);
	default:
		return GGML_TYPE_COUNT;
	}
}

/* Block size of the formats this module knows (kept here rather than
 * taken from gguf.c so the kernels' own checks do not depend on it). */
static int64_t blk_elems(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16:
		return 1;
	case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0:
	case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0: case GGML_TYPE_Q8_1:
		return 32;
	case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K: case GGML_TYPE_Q8_K:
		return 256;
	QUANT_IQ_CASES
		return 256;
	QUANT_NL_CASES:
		return quant_nl_blk_elems(type);
	default:
		return 0;
	}
}

static size_t blk_bytes(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F32: return 4;
	case GGML_TYPE_F16: case GGML_TYPE_BF16: return 2;
	case GGML_TYPE_Q4_0: return sizeof(struct quant_block_q4_0);
	case GGML_TYPE_Q4_1: return sizeof(struct quant_block_q4_1);
	case GGML_TYPE_Q5_0: return sizeof(struct quant_block_q5_0);
	case GGML_TYPE_Q5_1: return sizeof(struct quant_block_q5_1);
	case GGML_TYPE_Q8_0: return sizeof(struct quant_block_q8_0);
	case GGML_TYPE_Q8_1: return sizeof(struct quant_block_q8_1);
	case GGML_TYPE_Q8_K: return sizeof(struct quant_block_q8_k);
	case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
		return kblock_bytes(type);
	QUANT_IQ_CASES return quant_iq_block_bytes(type);
	QUANT_NL_CASES: return quant_nl_blk_bytes(type);
	default: return 0;
	}
}

static int n_ok(uint32_t type, int64_t n)
{
	int64_t b = blk_elems(type);

	return b > 0 && n > 0 && n % b == 0 && n <= INT64_MAX / 8;
}

/* n valid for a weight type and its activation type */
static int wn_ok(uint32_t wtype, int64_t n)
{
	return quant_supported(wtype) && n_ok(wtype, n) && n_ok(quant_act_type(wtype), n);
}

size_t quant_act_row_bytes(uint32_t wtype, int64_t n)
{
	if (!wn_ok(wtype, n))
		return 0;
	uint32_t at = quant_act_type(wtype);
	return (size_t)(n / blk_elems(at)) * blk_bytes(at);
}

/* ---- CPU level -------------------------------------------------------------------- */

#if QUANT_X86
/* F16C from CPUID leaf 1 (ECX bit 29): not every compiler's
 * __builtin_cpu_supports knows the name. */
static int cpu_has_f16c(void)
{
	unsigned a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	return (c >> 29) & 1;
}
#endif

static int level_detect_uncached(void)
{
#if QUANT_X86
	__builtin_cpu_init();
	int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
	if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
		return QUANT_LEVEL_AVX512;
	if (avx2)
		return QUANT_LEVEL_AVX2;
#endif
	return QUANT_LEVEL_SCALAR;
}

/* CPUID is slow (it traps in a VM): asked once, like quant_level(). */
int quant_level_detect(void)
{
	static _Atomic int cached = -1;
	int l = atomic_load_explicit(&cached, memory_order_relaxed);

	if (l < 0) {
		l = level_detect_uncached();
		atomic_store_explicit(&cached, l, memory_order_relaxed);
	}
	return l;
}

const char *quant_level_name(int level)
{
	switch (level) {
	case QUANT_LEVEL_SCALAR: return "scalar";
	case QUANT_LEVEL_AVX2: return "avx2";
	case QUANT_LEVEL_AVX512: return "avx512";
	default: return "?";
	}
}

int quant_level(void)
{
	static _Atomic int cached = -1;
	int l = atomic_load_explicit(&cached, memory_order_relaxed);

	if (l >= 0)
		return l;
	l = quant_level_detect();
	const char *env = getenv("TTYCHAT_CPU");
	if (env) {
		for (int i = 0; i < QUANT_LEVEL_COUNT; i++)
			if (strcmp(env, quant_level_name(i)) == 0 && i < l)
				l = i;
	}
	atomic_store_explicit(&cached, l, memory_order_relaxed);
	return l;
}

/* ---- dispatch ------------------------------------------------------------------------ */

static const struct quant_kern *kern_at(int level, uint32_t type)
{
	switch (level) {
	case QUANT_LEVEL_AVX512: return quant_kern_avx512(type);
	case QUANT_LEVEL_AVX2: return quant_kern_avx2(type);
	default: return quant_kern_scalar(type);
	}
}

/* The best non-NULL entry FIELD for TYPE at LEVEL or below. */
#define RESOLVE(level, type, field, out)                                        \
	do {                                                                    \
		(out) = NULL;                                                   \
		for (int lv_ = (level); lv_ >= 0 && !(out); lv_--) {            \
			const struct quant_kern *k_ = kern_at(lv_, (type));     \
			if (k_)                                                 \
				(out) = k_->field;                              \
		}                                                               \
	} while (0)

static quant_dequant_fn dequant_fn_for(uint32_t type, int level)
{
	quant_dequant_fn f;

	switch (type) {
	case GGML_TYPE_Q8_1: return dequant_q8_1;
	case GGML_TYPE_Q8_K: return dequant_q8_k;
	default: RESOLVE(level, type, dequant, f); return f;
	}
}

static int dequant_row_at(int level, uint32_t type, const void *src, float *dst, int64_t n)
{
	quant_dequant_fn f = dequant_fn_for(type, level);

	if (!f || !n_ok(type, n))
		return -1;
	f(src, dst, n);
	return 0;
}

quant_act_fn quant_act_fn_at(int level, uint32_t wtype)
{
	quant_act_fn f;

	if (!quant_supported(wtype))
		return NULL;
	RESOLVE(level, wtype, act, f);
	return f;
}

static int act_quantize_at(int level, uint32_t wtype, const float *x, void *dst, int64_t n)
{
	quant_act_fn f;

	if (!wn_ok(wtype, n))
		return -1;
	RESOLVE(level, wtype, act, f);
	f(x, dst, n);
	return 0;
}

static float vec_dot_at(int level, uint32_t wtype, const void *w, const void *x, int64_t n)
{
	quant_dot_fn f;

	if (!wn_ok(wtype, n))
		return NAN;
	RESOLVE(level, wtype, dot, f);
	return f(w, x, n);
}

static void matmul_by_dot(quant_dot_fn dot, const void *w, size_t ws, int64_t r0, int64_t r1,
			  const void *x, size_t xs, int64_t nt, int64_t n, float *y, int64_t ys)
{
	int64_t tile = ws > 0 ? (int64_t)(16384 / ws) : 1;

	if (tile < 1)
		tile = 1;
	for (int64_t a = r0; a < r1; a += tile) {
		int64_t b = a + tile < r1 ? a + tile : r1;
		for (int64_t t = 0; t < nt; t++)
			quant_matvec_by_dot(dot, w, ws, a, b, (const char *)x + (size_t)t * xs, n,
					    y + t * ys);
	}
}

/* The highest level that has anything for an operation wins: its own
 * matvec, else its dot product in the generic driver. */
static int matvec_at(int level, uint32_t wtype, const void *w, size_t ws, int64_t r0,
		     int64_t r1, const void *x, int64_t n, float *y)
{
	if (!wn_ok(wtype, n) || r0 < 0 || r1 < r0)
		return -1;
	for (int lv = level; lv >= 0; lv--) {
		const struct quant_kern *k = kern_at(lv, wtype);
		if (k && k->matvec) {
			k->matvec(w, ws, r0, r1, x, n, y);
			return 0;
		}
		if (k && k->dot) {
			quant_matvec_by_dot(k->dot, w, ws, r0, r1, x, n, y);
			return 0;
		}
	}
	return -1;
}

static int matmul_at(int level, uint32_t wtype, const void *w, size_t ws, int64_t r0,
		     int64_t r1, const void *x, size_t xs, int64_t nt, int64_t n, float *y,
		     int64_t ys)
{
	if (!wn_ok(wtype, n) || r0 < 0 || r1 < r0 || nt < 0)
		return -1;
	for (int lv = level; lv >= 0; lv--) {
		const struct quant_kern *k = kern_at(lv, wtype);
		if (k && k->matmul) {
			k->matmul(w, ws, r0, r1, x, xs, nt, n, y, ys);
			return 0;
		}
		if (k && k->matvec) {
			quant_matmul_by_matvec(k->matvec, w, ws, r0, r1, x, xs, nt, n, y, ys);
			return 0;
		}
		if (k && k->dot) {
			matmul_by_dot(k->dot, w, ws, r0, r1, x, xs, nt, n, y, ys);
			return 0;
		}
	}
	return -1;
}

#define LEVEL_WRAPPERS(L, sfx)                                                            \
	static int dequant_row_##sfx(uint32_t t, const void *s, float *d, int64_t n)       \
	{ return dequant_row_at(L, t, s, d, n); }                                          \
	static int act_quantize_##sfx(uint32_t t, const float *x, void *d, int64_t n)      \
	{ return act_quantize_at(L, t, x, d, n); }                                         \
	static float vec_dot_##sfx(uint32_t t, const void *w, const void *x, int64_t n)    \
	{ return vec_dot_at(L, t, w, x, n); }                                              \
	static int matvec_##sfx(uint32_t t, const void *w, size_t ws, int64_t r0,          \
				int64_t r1, const void *x, int64_t n, float *y)            \
	{ return matvec_at(L, t, w, ws, r0, r1, x, n, y); }                                \
	static int matmul_##sfx(uint32_t t, const void *w, size_t ws, int64_t r0,          \
				int64_t r1, const void *x, size_t xs, int64_t nt,          \
				int64_t n, float *y, int64_t ys)                           \
	{ return matmul_at(L, t, w, ws, r0, r1, x, xs, nt, n, y, ys); }

LEVEL_WRAPPERS(QUANT_LEVEL_SCALAR, l0)
LEVEL_WRAPPERS(QUANT_LEVEL_AVX2, l1)
LEVEL_WRAPPERS(QUANT_LEVEL_AVX512, l2)

static const struct quant_ops ops_table[QUANT_LEVEL_COUNT] = {
	{ QUANT_LEVEL_SCALAR, dequant_row_l0, act_quantize_l0, vec_dot_l0, matvec_l0, matmul_l0 },
	{ QUANT_LEVEL_AVX2, dequant_row_l1, act_quantize_l1, vec_dot_l1, matvec_l1, matmul_l1 },
	{ QUANT_LEVEL_AVX512, dequant_row_l2, act_quantize_l2, vec_dot_l2, matvec_l2, matmul_l2 },
};

const struct quant_ops *quant_ops_at(int level)
{
	if (level < 0 || level >= QUANT_LEVEL_COUNT || level > quant_level_detect())
		return NULL;
	return &ops_table[level];
}

/* ---- public entry points at the current level ------------------------------------------ */

int quant_dequant_row(uint32_t type, const void *src, float *dst, int64_t n)
{
	return dequant_row_at(quant_level(), type, src, dst, n);
}

int quant_act_quantize(uint32_t wtype, const float *x, void *dst, int64_t n)
{
	return act_quantize_at(quant_level(), wtype, x, dst, n);
}

int quant_quantize_row(uint32_t type, const float *x, void *dst, int64_t n)
{
	switch (type) {
	case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: case GGML_TYPE_Q8_0:
		return quant_act_quantize(type, x, dst, n);
	case GGML_TYPE_Q8_1:
		return quant_act_quantize(GGML_TYPE_Q4_1, x, dst, n);
	case GGML_TYPE_Q8_K:
		return quant_act_quantize(GGML_TYPE_Q4_K, x, dst, n);
	default:
		return -1;
	}
}

float quant_vec_dot(uint32_t wtype, const void *wrow, const void *xact, int64_t n)
{
	return vec_dot_at(quant_level(), wtype, wrow, xact, n);
}

quant_vec_dot_fn quant_get_vec_dot(uint32_t wtype)
{
	quant_dot_fn f;

	if (!quant_supported(wtype))
		return NULL;
	RESOLVE(quant_level(), wtype, dot, f);
	return f;
}

int quant_matvec(uint32_t wtype, const void *w, size_t row_stride_bytes, int64_t rows_begin,
		 int64_t rows_end, const void *xact, int64_t n, float *y)
{
	return matvec_at(quant_level(), wtype, w, row_stride_bytes, rows_begin, rows_end, xact,
			 n, y);
}

int quant_matmul(uint32_t wtype, const void *w, size_t row_stride_bytes, int64_t rows_begin,
		 int64_t rows_end, const void *xact, size_t xact_stride_bytes, int64_t n_tokens,
		 int64_t n, float *y, int64_t y_stride)
{
	return matmul_at(quant_level(), wtype, w, row_stride_bytes, rows_begin, rows_end, xact,
			 xact_stride_bytes, n_tokens, n, y, y_stride);
}
