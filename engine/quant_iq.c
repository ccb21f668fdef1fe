/*
 * quant_iq.c - scalar reference kernels of the grid-based i-quants
 * (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M): dequantisation
 * and the dot product with a Q8_K activation row.
 *
 * Every type is first unpacked into one plain form: 256 signed integer
 * weights q (a grid value with its sign applied), an odd integer scale ls
 * per 16 weights and the block's float scale d.  IQ1_S/IQ1_M add a shift
 * of +-1/8 to each grid value in {-1, 0, 1}; they store q = 8*grid +- 1 so
 * that the shift stays an integer too.  Then, with M the type's constant
 * factor (0.125 for IQ2_* and IQ1_*, 0.25 for IQ3_XXS, 1 for IQ3_S):
 *
 *   dot   = M * sum over blocks of (d * d_y) * sum_k ls[k] * sum_16(q * y)
 *   value = the type's sub-block scale (d, ls) times q, in llama.cpp's
 *           order of float roundings (dequant_block below)
 *
 * The integer sums are llama.cpp's (its generic vec_dot sums the same
 * products, and IQ1's delta term through the Q8_K block sums, which is the
 * same integer); the float scaling is the same except that M is applied
 * once at the end, which changes no bits since M is a power of two.
 */
#include "quant_iq.h"

#include <string.h>

#include "quant.h"

#include "quant_iq_tables.h"

_Static_assert(sizeof(struct quant_block_iq2_xxs) == 66, "iq2_xxs layout");
_Static_assert(sizeof(struct quant_block_iq2_xs) == 74, "iq2_xs layout");
_Static_assert(sizeof(struct quant_block_iq2_s) == 82, "iq2_s layout");
_Static_assert(sizeof(struct quant_block_iq3_xxs) == 98, "iq3_xxs layout");
_Static_assert(sizeof(struct quant_block_iq3_s) == 110, "iq3_s layout");
_Static_assert(sizeof(struct quant_block_iq1_s) == 50, "iq1_s layout");
_Static_assert(sizeof(struct quant_block_iq1_m) == 56, "iq1_m layout");

struct iq_block {
	float d;
	int8_t q[256];
	uint8_t ls[16];   /* scale of q[16k .. 16k+15] */
};

static uint32_t rd16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t rd32(const uint8_t *p)
{
	return rd16(p) | rd16(p + 2) << 16;
}

static float half_at(const uint16_t *h)
{
	return quant_fp16_to_fp32((uint16_t)rd16((const uint8_t *)h));
}

/* 8 grid bytes (unsigned lattice values) times 8 sign bits into q */
static void put_signed8(int8_t *q, uint64_t grid, unsigned signs)
{
	for (int j = 0; j < 8; j++) {
		int v = (int)((grid >> (8 * j)) & 0xff);
		q[j] = (int8_t)((signs >> j) & 1 ? -v : v);
	}
}

static void set_ls(struct iq_block *k, int ib32, unsigned s_lo, unsigned s_hi)
{
	k->ls[2 * ib32] = (uint8_t)(2 * s_lo + 1);
	k->ls[2 * ib32 + 1] = (uint8_t)(2 * s_hi + 1);
}

static void unpack_iq2_xxs(const void *blk, struct iq_block *k)
{
	const struct quant_block_iq2_xxs *b = blk;

	k->d = half_at(&b->d);
	for (int ib = 0; ib < 8; ib++) {
		const uint8_t *idx = b->qs + 8 * ib;
		uint32_t aux = rd32(idx + 4);   /* four 7-bit sign indexes, 4-bit scale */
		for (int l = 0; l < 4; l++)
			put_signed8(k->q + 32 * ib + 8 * l, quant_iq2xxs_grid[idx[l]],
				    quant_iq_ksigns[(aux >> (7 * l)) & 127]);
		set_ls(k, ib, aux >> 28, aux >> 28);
	}
}

static void unpack_iq2_xs(const void *blk, struct iq_block *k)
{
	const struct quant_block_iq2_xs *b = blk;

	k->d = half_at(&b->d);
	for (int ib = 0; ib < 8; ib++) {
		for (int l = 0; l < 4; l++) {
			uint32_t v = rd16(b->qs + 8 * ib + 2 * l);   /* 9-bit index, 7-bit signs */
			put_signed8(k->q + 32 * ib + 8 * l, quant_iq2xs_grid[v & 511],
				    quant_iq_ksigns[v >> 9]);
		}
		set_ls(k, ib, b->scales[ib] & 15u, b->scales[ib] >> 4);
	}
}

static void unpack_iq2_s(const void *blk, struct iq_block *k)
{
	const struct quant_block_iq2_s *b = blk;

	k->d = half_at(&b->d);
	for (int ib = 0; ib < 8; ib++) {
		for (int l = 0; l < 4; l++) {
			unsigned idx = b->qs[4 * ib + l] | ((b->qh[ib] >> (2 * l)) & 3u) << 8;
			put_signed8(k->q + 32 * ib + 8 * l, quant_iq2s_grid[idx], b->signs[4 * ib + l]);
		}
		set_ls(k, ib, b->scales[ib] & 15u, b->scales[ib] >> 4);
	}
}

static void unpack_iq3_xxs(const void *blk, struct iq_block *k)
{
	const struct quant_block_iq3_xxs *b = blk;

	k->d = half_at(&b->d);
	for (int ib = 0; ib < 8; ib++) {
		uint32_t aux = rd32(b->sas + 4 * ib);
		for (int l = 0; l < 4; l++) {
			uint64_t g = quant_iq3xxs_grid[b->qs[8 * ib + 2 * l]] |
				     (uint64_t)quant_iq3xxs_grid[b->qs[8 * ib + 2 * l + 1]] << 32;
			put_signed8(k->q + 32 * ib + 8 * l, g, quant_iq_ksigns[(aux >> (7 * l)) & 127]);
		}
		set_ls(k, ib, aux >> 28, aux >> 28);
	}
}

static void unpack_iq3_s(const void *blk, struct iq_block *k)
{
	const struct quant_block_iq3_s *b = blk;

	k->d = half_at(&b->d);
	for (int ib = 0; ib < 8; ib++) {
		for (int l = 0; l < 4; l++) {
			/* index m of the sub-block takes bit m of qh[ib] as its ninth bit */
			unsigned i0 = b->qs[8 * ib + 2 * l] | ((b->qh[ib] >> (2 * l)) & 1u) << 8;
			unsigned i1 = b->qs[8 * ib + 2 * l + 1] | ((b->qh[ib] >> (2 * l + 1)) & 1u) << 8;
			uint64_t g = quant_iq3s_grid[i0] | (uint64_t)quant_iq3s_grid[i1] << 32;
			put_signed8(k->q + 32 * ib + 8 * l, g, b->signs[4 * ib + l]);
		}
		unsigned s = (b->scales[ib / 2] >> (4 * (ib % 2))) & 15u;
		set_ls(k, ib, s, s);
	}
}

/* 8 grid values in {-1, 0, 1} shifted by delta = +-1, in eighths */
static void put_iq1(int8_t *q, unsigned idx, int delta)
{
	uint64_t g = quant_iq1s_grid[idx];

	for (int j = 0; j < 8; j++)
		q[j] = (int8_t)(8 * (int8_t)(uint8_t)(g >> (8 * j)) + delta);
}

static void unpack_iq1_s(const void *blk, struct iq_block *k)
{
	const struct quant_block_iq1_s *b = blk;

	k->d = half_at(&b->d);
	for (int ib = 0; ib < 8; ib++) {
		uint32_t qh = rd16(b->qh + 2 * ib);   /* 4 x 3 index bits, 3-bit scale, delta sign */
		int delta = qh & 0x8000 ? -1 : 1;
		for (int l = 0; l < 4; l++)
			put_iq1(k->q + 32 * ib + 8 * l, b->qs[4 * ib + l] | ((qh >> (3 * l)) & 7u) << 8,
				delta);
		set_ls(k, ib, (qh >> 12) & 7u, (qh >> 12) & 7u);
	}
}

static void unpack_iq1_m(const void *blk, struct iq_block *k)
{
	const struct quant_block_iq1_m *b = blk;
	uint32_t sc[4];

	for (int i = 0; i < 4; i++)
		sc[i] = rd16(b->scales + 2 * i);
	/* the fp16 block scale is the top nibbles of the four scale words */
	uint32_t dh = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
	k->d = quant_fp16_to_fp32((uint16_t)dh);
	for (int ib = 0; ib < 8; ib++) {
		for (int l = 0; l < 4; l++) {
			/* qh byte: low nibble for the even group, high for the odd; in
			 * each, 3 index bits and the delta sign */
			unsigned h = (b->qh[2 * ib + l / 2] >> (4 * (l % 2))) & 15u;
			put_iq1(k->q + 32 * ib + 8 * l, b->qs[4 * ib + l] | (h & 7u) << 8,
				h & 8u ? -1 : 1);
		}
		unsigned s = sc[ib / 2] >> (6 * (ib % 2));
		set_ls(k, ib, s & 7u, (s >> 3) & 7u);
	}
}

typedef void (*iq_unpack_fn)(const void *blk, struct iq_block *k);

struct iq_type {
	uint32_t type;
	size_t bytes;
	iq_unpack_fn unpack;
	float dot_mul;    /* M above */
};

static const struct iq_type iq_types[] = {
	{ GGML_TYPE_IQ2_XXS, sizeof(struct quant_block_iq2_xxs), unpack_iq2_xxs, 0.125f },
	{ GGML_TYPE_IQ2_XS, sizeof(struct quant_block_iq2_xs), unpack_iq2_xs, 0.125f },
	{ GGML_TYPE_IQ2_S, sizeof(struct quant_block_iq2_s), unpack_iq2_s, 0.125f },
	{ GGML_TYPE_IQ3_XXS, sizeof(struct quant_block_iq3_xxs), unpack_iq3_xxs, 0.25f },
	{ GGML_TYPE_IQ3_S, sizeof(struct quant_block_iq3_s), unpack_iq3_s, 1.0f },
	{ GGML_TYPE_IQ1_S, sizeof(struct quant_block_iq1_s), unpack_iq1_s, 0.125f },
	{ GGML_TYPE_IQ1_M, sizeof(struct quant_block_iq1_m), unpack_iq1_m, 0.125f },
};

static const struct iq_type *iq_type(uint32_t type)
{
	for (size_t i = 0; i < sizeof iq_types / sizeof iq_types[0]; i++)
		if (iq_types[i].type == type)
			return &iq_types[i];
	return NULL;
}

size_t quant_iq_block_bytes(uint32_t type)
{
	const struct iq_type *t = iq_type(type);

	return t ? t->bytes : 0;
}

/* llama.cpp's dequantisation, rounding for rounding: IQ2_* scale the grid
 * by d * (s + 0.5) * 0.25, IQ3_XXS by d * (s + 0.5) * 0.5 (s + 0.5 is
 * ls / 2, exact), IQ3_S by d * ls, and IQ1_* compute d * ls * (grid +
 * delta) where grid + delta is q / 8, exact. */
static void dequant_block(uint32_t type, const struct iq_block *k, float *dst)
{
	int iq1 = type == GGML_TYPE_IQ1_S || type == GGML_TYPE_IQ1_M;

	for (int s = 0; s < 16; s++) {
		float ls = (float)k->ls[s], db;
		switch (type) {
		case GGML_TYPE_IQ3_XXS: db = k->d * (ls * 0.5f) * 0.5f; break;
		case GGML_TYPE_IQ3_S: case GGML_TYPE_IQ1_S: case GGML_TYPE_IQ1_M: db = k->d * ls; break;
		default: db = k->d * (ls * 0.5f) * 0.25f; break;
		}
		for (int j = 16 * s; j < 16 * s + 16; j++)
			dst[j] = iq1 ? db * ((float)k->q[j] * 0.125f) : db * (float)k->q[j];
	}
}

static void dequant_iq(uint32_t type, const void *src, float *dst, int64_t n)
{
	const struct iq_type *t = iq_type(type);
	const uint8_t *p = src;
	struct iq_block k;

	for (int64_t i = 0; i < n / 256; i++, p += t->bytes, dst += 256) {
		t->unpack(p, &k);
		dequant_block(type, &k, dst);
	}
}

static float dot_iq(uint32_t type, const void *w, const void *x, int64_t n)
{
	const struct iq_type *t = iq_type(type);
	const uint8_t *p = w;
	const struct quant_block_q8_k *y = x;
	struct iq_block k;
	float sum = 0.0f;

	for (int64_t i = 0; i < n / 256; i++, p += t->bytes) {
		t->unpack(p, &k);
		int32_t isum = 0;
		for (int s = 0; s < 16; s++) {
			int32_t qy = 0;
			for (int j = 16 * s; j < 16 * s + 16; j++)
				qy += k.q[j] * y[i].qs[j];
			isum += k.ls[s] * qy;
		}
		sum += (k.d * y[i].d) * (float)isum;
	}
	return t->dot_mul * sum;
}

#define IQ_WRAPPERS(sfx, TYPE)                                                           \
	static void dequant_##sfx(const void *s, float *d, int64_t n) { dequant_iq(TYPE, s, d, n); } \
	static float dot_##sfx(const void *w, const void *x, int64_t n) { return dot_iq(TYPE, w, x, n); } \
	static const struct quant_kern k_##sfx = { dequant_##sfx, quant_q8_k_quantize_ref, dot_##sfx, \
						   NULL, NULL };

IQ_WRAPPERS(iq2_xxs, GGML_TYPE_IQ2_XXS)
IQ_WRAPPERS(iq2_xs, GGML_TYPE_IQ2_XS)
IQ_WRAPPERS(iq2_s, GGML_TYPE_IQ2_S)
IQ_WRAPPERS(iq3_xxs, GGML_TYPE_IQ3_XXS)
IQ_WRAPPERS(iq3_s, GGML_TYPE_IQ3_S)
IQ_WRAPPERS(iq1_s, GGML_TYPE_IQ1_S)
IQ_WRAPPERS(iq1_m, GGML_TYPE_IQ1_M)

const struct quant_kern *quant_iq_kern_scalar(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_IQ2_XXS: return &k_iq2_xxs;
	case GGML_TYPE_IQ2_XS: return &k_iq2_xs;
	case GGML_TYPE_IQ2_S: return &k_iq2_s;
	case GGML_TYPE_IQ3_XXS: return &k_iq3_xxs;
	case GGML_TYPE_IQ3_S: return &k_iq3_s;
	case GGML_TYPE_IQ1_S: return &k_iq1_s;
	case GGML_TYPE_IQ1_M: return &k_iq1_m;
	default: return NULL;
	}
}
