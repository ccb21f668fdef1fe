/*
 * quant_nl.c - scalar reference kernels of the non-linear 4-bit formats
 * (IQ4_NL, IQ4_XS, MXFP4, NVFP4) and the ternary and binary ones (TQ1_0,
 * TQ2_0, Q1_0, Q2_0).
 *
 * As in quant.c, a block is first unpacked into one small integer per
 * element (the table level, trit or sign the element stands for), and both
 * dequantisation and the dot products are computed from that.  The float
 * expressions follow llama.cpp's generic CPU code (ggml-cpu/quants.c), type
 * by type, so that results agree with llama.cpp up to the order of float
 * additions: a dequantised value is (block scale) * level, and a dot
 * product is an exact integer sum per sub-block scaled in float in the
 * grouping llama.cpp uses (for Q1_0/Q2_0 the activation scale is applied
 * per 32 elements before the weight scale, for IQ4_XS the 6-bit sub-block
 * scale is folded into the float factor).
 *
 * Activations are llama.cpp's vec_dot_type of each format: Q8_0 for
 * IQ4_NL, MXFP4, NVFP4, Q1_0 and Q2_0 (whose blocks span 1, 2, 4 or 2 Q8_0
 * blocks), Q8_K for IQ4_XS, TQ1_0 and TQ2_0.
 *
 * The lookup tables come from scripts/gen-nl-tables.py
 * (quant_nl_tables.h).
 */
#include <string.h>

#include "gguf.h"
#include "quant_impl.h"
#include "quant_nl_tables.h"

_Static_assert(sizeof(struct quant_block_iq4_nl) == 18, "iq4_nl layout");
_Static_assert(sizeof(struct quant_block_iq4_xs) == 136, "iq4_xs layout");
_Static_assert(sizeof(struct quant_block_mxfp4) == 17, "mxfp4 layout");
_Static_assert(sizeof(struct quant_block_nvfp4) == 36, "nvfp4 layout");
_Static_assert(sizeof(struct quant_block_tq1_0) == 54, "tq1_0 layout");
_Static_assert(sizeof(struct quant_block_tq2_0) == 66, "tq2_0 layout");
_Static_assert(sizeof(struct quant_block_q1_0) == 18, "q1_0 layout");
_Static_assert(sizeof(struct quant_block_q2_0) == 18, "q2_0 layout");

#define H2F(h) quant_fp16_to_fp32(h)

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

float quant_e8m0_half(uint8_t e)
{
	/* 2^(e - 128): subnormal for e < 2 */
	return bits_f32(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

float quant_ue4m3_half(uint8_t d)
{
	return bits_f32(quant_ue4m3_half_bits[d]);
}

/* ---- unpacking ---------------------------------------------------------------- */

/* 2 * half nibbles: the low nibbles of qs[0 .. half-1] are elements
 * 0 .. half-1, the high ones half .. 2*half-1; each mapped through LUT. */
static void unpack_nibbles(const uint8_t *qs, int half, const int8_t lut[16], int8_t *q)
{
	for (int j = 0; j < half; j++) {
		q[j] = lut[qs[j] & 0xf];
		q[j + half] = lut[qs[j] >> 4];
	}
}

/* 6-bit scale of sub-block ib (0..7) of an IQ4_XS block, minus 32 */
static int iq4_xs_scale(const struct quant_block_iq4_xs *b, int ib)
{
	int lo = (b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf;
	int hi = (b->scales_h >> (2 * ib)) & 3;
	return (lo | (hi << 4)) - 32;
}

/* The trit in position l (0..4) of a TQ1_0 byte: the byte is a base-3
 * fraction scaled to 256, so multiplying by 3^l (mod 256) shifts trit l to
 * the top and (q * 3) >> 8 reads it. */
static int tq1_trit(uint8_t byte, int l)
{
	static const uint8_t pow3[5] = { 1, 3, 9, 27, 81 };
	uint8_t q = (uint8_t)(byte * pow3[l]);
	return ((uint16_t)q * 3) >> 8;
}

/* TQ1_0 element order: qs[0..31] hold elements 0..159 (trit l of byte m is
 * element 32l + m), qs[32..47] elements 160..239 (160 + 16l + m), qh[0..3]
 * elements 240..255 (240 + 4l + m, four trits a byte). */
static void unpack_tq1_0(const struct quant_block_tq1_0 *b, int8_t q[256])
{
	for (int l = 0; l < 5; l++) {
		for (int m = 0; m < 32; m++)
			q[32 * l + m] = (int8_t)(tq1_trit(b->qs[m], l) - 1);
		for (int m = 0; m < 16; m++)
			q[160 + 16 * l + m] = (int8_t)(tq1_trit(b->qs[32 + m], l) - 1);
	}
	for (int l = 0; l < 4; l++)
		for (int m = 0; m < 4; m++)
			q[240 + 4 * l + m] = (int8_t)(tq1_trit(b->qh[m], l) - 1);
}

/* TQ2_0: bits 2l..2l+1 of qs[32h + m] are element 128h + 32l + m */
static void unpack_tq2_0(const struct quant_block_tq2_0 *b, int8_t q[256])
{
	for (int h = 0; h < 2; h++)
		for (int l = 0; l < 4; l++)
			for (int m = 0; m < 32; m++)
				q[128 * h + 32 * l + m] = (int8_t)(((b->qs[32 * h + m] >> (2 * l)) & 3) - 1);
}

/* Q1_0: bit j % 8 of qs[j / 8] set means +1, clear -1 */
static void unpack_q1_0(const struct quant_block_q1_0 *b, int8_t q[128])
{
	for (int j = 0; j < 128; j++)
		q[j] = (b->qs[j / 8] >> (j % 8)) & 1 ? 1 : -1;
}

/* Q2_0: bits 2(j % 4).. of qs[j / 4], minus 1 */
static void unpack_q2_0(const struct quant_block_q2_0 *b, int8_t q[64])
{
	for (int j = 0; j < 64; j++)
		q[j] = (int8_t)(((b->qs[j / 4] >> (2 * (j % 4))) & 3) - 1);
}

static int isum(const int8_t *q, const int8_t *y, int len)
{
	int s = 0;

	for (int j = 0; j < len; j++)
		s += q[j] * y[j];
	return s;
}

static void scale_out(float *dst, float d, const int8_t *q, int len)
{
	for (int j = 0; j < len; j++)
		dst[j] = d * (float)q[j];
}

/* ---- dequantisation ----------------------------------------------------------- */

static void dequant_iq4_nl(const void *src, float *dst, int64_t n)
{
	const struct quant_block_iq4_nl *b = src;
	int8_t q[32];

	for (int64_t i = 0; i < n / 32; i++, dst += 32) {
		unpack_nibbles(b[i].qs, 16, quant_kvalues_iq4nl, q);
		scale_out(dst, H2F(b[i].d), q, 32);
	}
}

static void dequant_iq4_xs(const void *src, float *dst, int64_t n)
{
	const struct quant_block_iq4_xs *b = src;
	int8_t q[32];

	for (int64_t i = 0; i < n / 256; i++) {
		float d = H2F(b[i].d);
		for (int ib = 0; ib < 8; ib++, dst += 32) {
			unpack_nibbles(b[i].qs + 16 * ib, 16, quant_kvalues_iq4nl, q);
			scale_out(dst, d * (float)iq4_xs_scale(&b[i], ib), q, 32);
		}
	}
}

static void dequant_mxfp4(const void *src, float *dst, int64_t n)
{
	const struct quant_block_mxfp4 *b = src;
	int8_t q[32];

	for (int64_t i = 0; i < n / 32; i++, dst += 32) {
		unpack_nibbles(b[i].qs, 16, quant_kvalues_fp4, q);
		scale_out(dst, quant_e8m0_half(b[i].e), q, 32);
	}
}

static void dequant_nvfp4(const void *src, float *dst, int64_t n)
{
	const struct quant_block_nvfp4 *b = src;
	int8_t q[16];

	for (int64_t i = 0; i < n / 64; i++)
		for (int s = 0; s < 4; s++, dst += 16) {
			unpack_nibbles(b[i].qs + 8 * s, 8, quant_kvalues_fp4, q);
			scale_out(dst, quant_ue4m3_half(b[i].d[s]), q, 16);
		}
}

static void dequant_tq1_0(const void *src, float *dst, int64_t n)
{
	const struct quant_block_tq1_0 *b = src;
	int8_t q[256];

	for (int64_t i = 0; i < n / 256; i++, dst += 256) {
		unpack_tq1_0(&b[i], q);
		scale_out(dst, H2F(b[i].d), q, 256);
	}
}

static void dequant_tq2_0(const void *src, float *dst, int64_t n)
{
	const struct quant_block_tq2_0 *b = src;
	int8_t q[256];

	for (int64_t i = 0; i < n / 256; i++, dst += 256) {
		unpack_tq2_0(&b[i], q);
		scale_out(dst, H2F(b[i].d), q, 256);
	}
}

static void dequant_q1_0(const void *src, float *dst, int64_t n)
{
	const struct quant_block_q1_0 *b = src;
	int8_t q[128];

	for (int64_t i = 0; i < n / 128; i++, dst += 128) {
		unpack_q1_0(&b[i], q);
		scale_out(dst, H2F(b[i].d), q, 128);
	}
}

static void dequant_q2_0(const void *src, float *dst, int64_t n)
{
	const struct quant_block_q2_0 *b = src;
	int8_t q[64];

	for (int64_t i = 0; i < n / 64; i++, dst += 64) {
		unpack_q2_0(&b[i], q);
		scale_out(dst, H2F(b[i].d), q, 64);
	}
}

/* ---- dot products ------------------------------------------------------------- */

static float dot_iq4_nl(const void *w, const void *x, int64_t n)
{
	const struct quant_block_iq4_nl *b = w;
	const struct quant_block_q8_0 *y = x;
	float sum = 0.0f;
	int8_t q[32];

	for (int64_t i = 0; i < n / 32; i++) {
		unpack_nibbles(b[i].qs, 16, quant_kvalues_iq4nl, q);
		sum += (H2F(y[i].d) * H2F(b[i].d)) * (float)isum(q, y[i].qs, 32);
	}
	return sum;
}

/* per 32-element sub-block: ((d_w * d_y) * (ls - 32)) * sum(q * y) */
static float dot_iq4_xs(const void *w, const void *x, int64_t n)
{
	const struct quant_block_iq4_xs *b = w;
	const struct quant_block_q8_k *y = x;
	float sum = 0.0f;
	int8_t q[32];

	for (int64_t i = 0; i < n / 256; i++) {
		float dd = H2F(b[i].d) * y[i].d;
		for (int ib = 0; ib < 8; ib++) {
			unpack_nibbles(b[i].qs + 16 * ib, 16, quant_kvalues_iq4nl, q);
			float dl = dd * (float)iq4_xs_scale(&b[i], ib);
			sum += dl * (float)isum(q, y[i].qs + 32 * ib, 32);
		}
	}
	return sum;
}

static float dot_mxfp4(const void *w, const void *x, int64_t n)
{
	const struct quant_block_mxfp4 *b = w;
	const struct quant_block_q8_0 *y = x;
	float sum = 0.0f;
	int8_t q[32];

	for (int64_t i = 0; i < n / 32; i++) {
		unpack_nibbles(b[i].qs, 16, quant_kvalues_fp4, q);
		sum += (H2F(y[i].d) * quant_e8m0_half(b[i].e)) * (float)isum(q, y[i].qs, 32);
	}
	return sum;
}

/* a block is 4 sub-blocks of 16 = two Q8_0 blocks */
static float dot_nvfp4(const void *w, const void *x, int64_t n)
{
	const struct quant_block_nvfp4 *b = w;
	const struct quant_block_q8_0 *y = x;
	float sum = 0.0f;
	int8_t q[16];

	for (int64_t i = 0; i < n / 64; i++)
		for (int s = 0; s < 4; s++) {
			const struct quant_block_q8_0 *yb = &y[2 * i + s / 2];
			unpack_nibbles(b[i].qs + 8 * s, 8, quant_kvalues_fp4, q);
			float d = H2F(yb->d) * quant_ue4m3_half(b[i].d[s]);
			sum += d * (float)isum(q, yb->qs + 16 * (s % 2), 16);
		}
	return sum;
}

static float dot_tq1_0(const void *w, const void *x, int64_t n)
{
	const struct quant_block_tq1_0 *b = w;
	const struct quant_block_q8_k *y = x;
	float sum = 0.0f;
	int8_t q[256];

	for (int64_t i = 0; i < n / 256; i++) {
		unpack_tq1_0(&b[i], q);
		sum += (float)isum(q, y[i].qs, 256) * (H2F(b[i].d) * y[i].d);
	}
	return sum;
}

static float dot_tq2_0(const void *w, const void *x, int64_t n)
{
	const struct quant_block_tq2_0 *b = w;
	const struct quant_block_q8_k *y = x;
	float sum = 0.0f;
	int8_t q[256];

	for (int64_t i = 0; i < n / 256; i++) {
		unpack_tq2_0(&b[i], q);
		sum += (float)isum(q, y[i].qs, 256) * (y[i].d * H2F(b[i].d));
	}
	return sum;
}

/* A block spanning nq Q8_0 blocks: d_w * sum_k (d_y[k] * sum(q * y)),
 * the inner sum in float as llama.cpp's Q1_0/Q2_0 kernels do. */
static float dot_span_q8_0(float dw, const int8_t *q, const struct quant_block_q8_0 *y, int nq)
{
	float s = 0.0f;

	for (int k = 0; k < nq; k++)
		s += H2F(y[k].d) * (float)isum(q + 32 * k, y[k].qs, 32);
	return dw * s;
}

static float dot_q1_0(const void *w, const void *x, int64_t n)
{
	const struct quant_block_q1_0 *b = w;
	const struct quant_block_q8_0 *y = x;
	float sum = 0.0f;
	int8_t q[128];

	for (int64_t i = 0; i < n / 128; i++) {
		unpack_q1_0(&b[i], q);
		sum += dot_span_q8_0(H2F(b[i].d), q, y + 4 * i, 4);
	}
	return sum;
}

static float dot_q2_0(const void *w, const void *x, int64_t n)
{
	const struct quant_block_q2_0 *b = w;
	const struct quant_block_q8_0 *y = x;
	float sum = 0.0f;
	int8_t q[64];

	for (int64_t i = 0; i < n / 64; i++) {
		unpack_q2_0(&b[i], q);
		sum += dot_span_q8_0(H2F(b[i].d), q, y + 2 * i, 2);
	}
	return sum;
}

/* ---- tables ------------------------------------------------------------------- */

#define Q8_0_ACT quant_q8_0_quantize_ref
#define Q8_K_ACT quant_q8_k_quantize_ref

static const struct quant_kern k_iq4_nl = { dequant_iq4_nl, Q8_0_ACT, dot_iq4_nl, NULL, NULL };
static const struct quant_kern k_iq4_xs = { dequant_iq4_xs, Q8_K_ACT, dot_iq4_xs, NULL, NULL };
static const struct quant_kern k_mxfp4 = { dequant_mxfp4, Q8_0_ACT, dot_mxfp4, NULL, NULL };
static const struct quant_kern k_nvfp4 = { dequant_nvfp4, Q8_0_ACT, dot_nvfp4, NULL, NULL };
static const struct quant_kern k_tq1_0 = { dequant_tq1_0, Q8_K_ACT, dot_tq1_0, NULL, NULL };
static const struct quant_kern k_tq2_0 = { dequant_tq2_0, Q8_K_ACT, dot_tq2_0, NULL, NULL };
static const struct quant_kern k_q1_0 = { dequant_q1_0, Q8_0_ACT, dot_q1_0, NULL, NULL };
static const struct quant_kern k_q2_0 = { dequant_q2_0, Q8_0_ACT, dot_q2_0, NULL, NULL };

const struct quant_kern *quant_kern_nl_scalar(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_IQ4_NL: return &k_iq4_nl;
	case GGML_TYPE_IQ4_XS: return &k_iq4_xs;
	case GGML_TYPE_MXFP4: return &k_mxfp4;
	case GGML_TYPE_NVFP4: return &k_nvfp4;
	case GGML_TYPE_TQ1_0: return &k_tq1_0;
	case GGML_TYPE_TQ2_0: return &k_tq2_0;
	case GGML_TYPE_Q1_0: return &k_q1_0;
	case GGML_TYPE_Q2_0: return &k_q2_0;
	default: return NULL;
	}
}

uint32_t quant_nl_act_type(uint32_t wtype)
{
	switch (wtype) {
	case GGML_TYPE_IQ4_XS: case GGML_TYPE_TQ1_0: case GGML_TYPE_TQ2_0:
		return GGML_TYPE_Q8_K;
	case GGML_TYPE_IQ4_NL: case GGML_TYPE_MXFP4: case GGML_TYPE_NVFP4:
	case GGML_TYPE_Q1_0: case GGML_TYPE_Q2_0:
		return GGML_TYPE_Q8_0;
	default:
		return GGML_TYPE_COUNT;
	}
}

int64_t quant_nl_blk_elems(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_IQ4_NL: case GGML_TYPE_MXFP4: return 32;
	case GGML_TYPE_NVFP4: case GGML_TYPE_Q2_0: return 64;
	case GGML_TYPE_Q1_0: return 128;
	case GGML_TYPE_IQ4_XS: case GGML_TYPE_TQ1_0: case GGML_TYPE_TQ2_0: return 256;
	default: return 0;
	}
}

size_t quant_nl_blk_bytes(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_IQ4_NL: return sizeof(struct quant_block_iq4_nl);
	case GGML_TYPE_IQ4_XS: return sizeof(struct quant_block_iq4_xs);
	case GGML_TYPE_MXFP4: return sizeof(struct quant_block_mxfp4);
	case GGML_TYPE_NVFP4: return sizeof(struct quant_block_nvfp4);
	case GGML_TYPE_TQ1_0: return sizeof(struct quant_block_tq1_0);
	case GGML_TYPE_TQ2_0: return sizeof(struct quant_block_tq2_0);
	case GGML_TYPE_Q1_0: return sizeof(struct quant_block_q1_0);
	case GGML_TYPE_Q2_0: return sizeof(struct quant_block_q2_0);
	default: return 0;
	}
}
