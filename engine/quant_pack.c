/*
 * quant_pack.c - prepared weight matrices (see quant.h, struct quant_matrix):
 * the interleaved "packed" layouts, packing and unpacking, the activation
 * rows of packed matrices, and the dispatch to the packed kernels
 * (quant_pack_avx512.c) or, for unpacked matrices, to the row kernels.
 *
 * Why pack: in the GGUF layout every 32- or 256-element block of a row
 * carries its own fp16 scale, so a row-at-a-time kernel converts a scale
 * and a block sum to float for every 32 multiply-adds, and a 64-byte
 * vector register holds at most two blocks of one row.  With 16 rows side
 * by side (lane r = row r, 4 bytes of quants per lane), one VPDPBUSD does
 * 4 multiply-adds for each of 16 rows against 4 activation bytes
 * broadcast from memory, the 16 scales of a block load as one vector, and
 * unpacking a block of weights once serves every token of a prefill tile.
 *
 * Packing only moves bytes (and unpacks the 6-bit Q4_K scales into bytes);
 * quant_matrix_unpack_row() rebuilds the original blocks, which the tests
 * compare byte for byte.  The activation rows hold the same int8 values as
 * quant_act_quantize (made by the same level's quantiser), with the scales
 * already in float and the block sums the kernels need for the offsets
 * (Q4_0's -8, Q5_0's -16, Q8_0 read as unsigned with -128, Q6_K's -32).
 */
#include "quant.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gguf.h"
#include "quant_impl.h"

#define G QUANT_ROW_GROUP

/* ---- layouts ------------------------------------------------------------------ */

static const struct quant_pack_desc d_q4_0 = { 32, 256, 0, 32, 0 };
static const struct quant_pack_desc d_q4_1 = { 32, 256, 0, 64, 0 };
static const struct quant_pack_desc d_q5_0 = { 32, 256, 64, 32, 0 };
static const struct quant_pack_desc d_q5_1 = { 32, 256, 64, 64, 0 };
static const struct quant_pack_desc d_q8_0 = { 32, 512, 0, 32, 0 };
static const struct quant_pack_desc d_q4_k = { 256, 2048, 256, 64, 1 };
static const struct quant_pack_desc d_q6_k = { 256, 3072, 256, 32, 1 };
static const struct quant_pack_desc d_f16 = { 32, 1024, 0, 0, 2 };
static const struct quant_pack_desc d_iq4_nl = { 32, 256, 0, 32, 0 };
static const struct quant_pack_desc d_mxfp4 = { 32, 256, 0, 16, 0 };
static const struct quant_pack_desc d_q5_k = { 256, 2560, 256, 64, 1 };
static const struct quant_pack_desc d_iq4_xs = { 256, 2176, 0, 0, 1 };

const struct quant_pack_desc *quant_pack_desc(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q4_0: return &d_q4_0;
	case GGML_TYPE_Q4_1: return &d_q4_1;
	case GGML_TYPE_Q5_0: return &d_q5_0;
	case GGML_TYPE_Q5_1: return &d_q5_1;
	case GGML_TYPE_Q8_0: return &d_q8_0;
	case GGML_TYPE_Q4_K: return &d_q4_k;
	case GGML_TYPE_Q6_K: return &d_q6_k;
	case GGML_TYPE_F16: return &d_f16;
	case GGML_TYPE_IQ4_NL: return &d_iq4_nl;
	case GGML_TYPE_MXFP4: return &d_mxfp4;
	case GGML_TYPE_Q5_K: return &d_q5_k;
	case GGML_TYPE_IQ4_XS: return &d_iq4_xs;
	default: return NULL;
	}
}

size_t quant_pack_group_bytes(const struct quant_pack_desc *d, int64_t cols)
{
	size_t units = (size_t)(cols / d->blk + 1) / 2;
	/* a multiple of 64 for every type but MXFP4 (units of 544 bytes: a
	 * multiple of 32, so no 256-bit vector of a group crosses a line) */
	return units * quant_pack_unit_bytes(d);
}

static size_t round64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

size_t quant_pack_qs_off(const struct quant_pack_desc *d, int64_t n)
{
	size_t nb = (size_t)(n / d->blk);
	switch (d->act) {
	case 0: return round64(nb * 12);                 /* d, s, qsum */
	case 1: return round64(nb * (4 + 32 + 16));      /* d, bsum16, bsum32 */
	default: return 0;
	}
}

static size_t act_bytes(const struct quant_pack_desc *d, int64_t n)
{
	if (d->act == 2)
		return round64((size_t)n * sizeof(float));
	return round64(quant_pack_qs_off(d, n) + (size_t)n);
}

/* Source block size in bytes (F16: 32 columns). */
static size_t src_block_bytes(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q4_0: return sizeof(struct quant_block_q4_0);
	case GGML_TYPE_Q4_1: return sizeof(struct quant_block_q4_1);
	case GGML_TYPE_Q5_0: return sizeof(struct quant_block_q5_0);
	case GGML_TYPE_Q5_1: return sizeof(struct quant_block_q5_1);
	case GGML_TYPE_Q8_0: return sizeof(struct quant_block_q8_0);
	case GGML_TYPE_Q4_K: return sizeof(struct quant_block_q4_k);
	case GGML_TYPE_Q6_K: return sizeof(struct quant_block_q6_k);
	case GGML_TYPE_F16: return 64;
	case GGML_TYPE_IQ4_NL: return sizeof(struct quant_block_iq4_nl);
	case GGML_TYPE_MXFP4: return sizeof(struct quant_block_mxfp4);
	case GGML_TYPE_Q5_K: return sizeof(struct quant_block_q5_k);
	case GGML_TYPE_IQ4_XS: return sizeof(struct quant_block_iq4_xs);
	default: return 0;
	}
}

/* ---- one block of 16 rows ---------------------------------------------------------- */
/*
 * Per type, for block b of a group (src[r]: row r's block, NULL for the
 * padding rows past the end of the matrix, which pack as zeros):
 *   Q4_0  qs[j][r][4] = qs[4j..4j+3] (j < 4): low nibbles elements 4j..,
 *         high nibbles 16+4j..;  sc: d[16]
 *   Q4_1  as Q4_0;  sc: d[16], m[16]
 *   Q5_0  qs as Q4_0;  aux: uint64 lo[4], hi[4], bit 4r+i of lo[j] = the
 *         fifth bit of element 4j+i of row r, of hi[j] element 16+4j+i;
 *         sc: d[16]
 *   Q5_1  as Q5_0;  sc: d[16], m[16]
 *   Q8_0  qs[j][r][4] = qs[4j..4j+3] (j < 8);  sc: d[16]
 *   Q4_K  qs[c][j][r][4] = qs[32c+4j..] (c < 4, j < 8): low nibbles
 *         sub-block 2c, high 2c+1;  aux: uint8 sc[8][16] (scale of
 *         sub-block s, row r), uint8 mn[4][16][2] (mins of sub-blocks 2k,
 *         2k+1);  sc: d[16], dmin[16]
 *   Q6_K  qs: for h < 2, j < 8 the three vectors ql[64h+4j..], ql[64h+32+4j..],
 *         qh[32h+4j..] (lane r: row r's 4 bytes);  aux: int8 sc[16][16];
 *         sc: d[16]
 *   F16   qs: w[k][r] = element 32b+k of row r (k < 32)
 *   IQ4_NL as Q4_0
 *   MXFP4 qs as Q4_0;  sc: uint8 e[16]
 *   Q5_K  qs: the fifth bits first, qh[j][r][4] = qh[4j..4j+3] (j < 8:
 *         bit 2c of byte l is the fifth bit of element 64c + l, bit
 *         2c + 1 of element 64c + 32 + l), then Q4_K's qs;  aux, sc as
 *         Q4_K (a decode kernel reads the bits with the quants they go
 *         with, in address order)
 *   IQ4_XS all in qs, the scales first (a decode kernel needs them
 *         before the quants; this way it reads in address order): the
 *         scale bits as stored, scales_l[16][4] then scales_h[16]
 *         (uint16), d[16], then at 128 q[k][r][4] = qs[4k..4k+3] (k < 32:
 *         sub-block k / 4, low nibbles elements 32(k/4) + 4(k%4).., high
 *         16 more)
 */
static void put4(uint8_t *qs, int j, int r, const uint8_t *src)
{
	memcpy(qs + (size_t)(j * 64 + r * 4), src, 4);
}

static void get4(const uint8_t *qs, int j, int r, uint8_t *dst)
{
	memcpy(dst, qs + (size_t)(j * 64 + r * 4), 4);
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void k4_scale_min(const uint8_t s[12], int j, uint8_t *sc, uint8_t *mn)
{
	if (j < 4) {
		*sc = s[j] & 63;
		*mn = s[j + 4] & 63;
	} else {
		*sc = (uint8_t)((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4));
		*mn = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
	}
}

/* Lane r of block b: S is row r's block, or NULL for a padding row (zeros).
 * Lanes are written in order r = 0..15 (the Q5 high-bit masks start at
 * r = 0 and are or-ed into after). */
static inline void pack_lane(uint32_t type, const uint8_t *S, int r, uint8_t *qs, uint8_t *aux, uint8_t *sc)
{
	static const uint8_t zero[256];
	const uint8_t *s = S ? S : zero;
	uint16_t *d16 = (uint16_t *)(void *)sc;

	switch (type) {
	case GGML_TYPE_Q4_0:
	case GGML_TYPE_IQ4_NL:
	case GGML_TYPE_Q8_0:
		memcpy(&d16[r], s, 2);
		for (int j = 0; j < (type == GGML_TYPE_Q8_0 ? 8 : 4); j++)
			put4(qs, j, r, s + 2 + 4 * j);
		break;
	case GGML_TYPE_MXFP4:
		sc[r] = s[0];
		for (int j = 0; j < 4; j++)
			put4(qs, j, r, s + 1 + 4 * j);
		break;
	case GGML_TYPE_IQ4_XS: {
		const struct quant_block_iq4_xs *k = (const void *)s;
		memcpy(qs + 4 * r, k->scales_l, 4);
		memcpy(qs + 64 + 2 * r, &k->scales_h, 2);
		memcpy(qs + 96 + 2 * r, &k->d, 2);
		for (int j = 0; j < 32; j++)
			put4(qs + 128, j, r, k->qs + 4 * j);
		break;
	}
	case GGML_TYPE_Q4_1:
		memcpy(&d16[r], s, 2);
		memcpy(&d16[G + r], s + 2, 2);
		for (int j = 0; j < 4; j++)
			put4(qs, j, r, s + 4 + 4 * j);
		break;
	case GGML_TYPE_Q5_0:
	case GGML_TYPE_Q5_1: {
		const int one = type == GGML_TYPE_Q5_1, off = one ? 4 : 2;
		memcpy(&d16[r], s, 2);
		if (one)
			memcpy(&d16[G + r], s + 2, 2);
		for (int j = 0; j < 4; j++)
			put4(qs, j, r, s + off + 4 + 4 * j);
		/* bits 4j..4j+3 of qh become bits 4r..4r+3 of lo[j], bits
		 * 16+4j.. of hi[j] */
		const uint32_t qh = rd32(s + off);
		uint64_t lo[4], hi[4];
		if (r == 0) {
			memset(lo, 0, sizeof lo);
			memset(hi, 0, sizeof hi);
		} else {
			memcpy(lo, aux, 32);
			memcpy(hi, aux + 32, 32);
		}
		for (int j = 0; j < 4; j++) {
			lo[j] |= (uint64_t)((qh >> (4 * j)) & 0xf) << (4 * r);
			hi[j] |= (uint64_t)((qh >> (16 + 4 * j)) & 0xf) << (4 * r);
		}
		memcpy(aux, lo, 32);
		memcpy(aux + 32, hi, 32);
		break;
	}
	case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q5_K: {
		/* the two share d, dmin, scales; Q5_K has qh before its qs */
		const struct quant_block_q4_k *k = (const void *)s;
		const uint8_t *kq = type == GGML_TYPE_Q5_K ? s + 48 : k->qs;
		const int q0 = type == GGML_TYPE_Q5_K ? 8 : 0;
		memcpy(&d16[r], &k->d, 2);
		memcpy(&d16[G + r], &k->dmin, 2);
		for (int j = 0; j < q0; j++)
			put4(qs, j, r, s + 16 + 4 * j);
		for (int c = 0; c < 4; c++)
			for (int j = 0; j < 8; j++)
				put4(qs, q0 + c * 8 + j, r, kq + 32 * c + 4 * j);
		for (int j = 0; j < 8; j++) {
			uint8_t a, m;
			k4_scale_min(k->scales, j, &a, &m);
			aux[j * G + r] = a;
			aux[128 + (j / 2) * 32 + r * 2 + (j & 1)] = m;
		}
		break;
	}
	case GGML_TYPE_Q6_K: {
		const struct quant_block_q6_k *k = (const void *)s;
		memcpy(&d16[r], &k->d, 2);
		for (int h = 0; h < 2; h++)
			for (int j = 0; j < 8; j++) {
				int v = (h * 8 + j) * 3;
				put4(qs, v, r, k->ql + 64 * h + 4 * j);
				put4(qs, v + 1, r, k->ql + 64 * h + 32 + 4 * j);
				put4(qs, v + 2, r, k->qh + 32 * h + 4 * j);
			}
		for (int t = 0; t < 16; t++)
			aux[t * G + r] = (uint8_t)k->scales[t];
		break;
	}
	case GGML_TYPE_F16:
		for (int k = 0; k < 32; k++)
			memcpy(qs + (size_t)(k * 32 + r * 2), s + 2 * k, 2);
		break;
	}
}

/* Inverse of pack_lane for row r. */
static void unpack_block(uint32_t type, const uint8_t *qs, const uint8_t *aux, const uint8_t *sc,
			 int r, uint8_t *dst)
{
	const uint16_t *d16 = (const uint16_t *)(const void *)sc;

	switch (type) {
	case GGML_TYPE_Q4_0:
	case GGML_TYPE_IQ4_NL:
	case GGML_TYPE_Q8_0:
		memcpy(dst, &d16[r], 2);
		for (int j = 0; j < (type == GGML_TYPE_Q8_0 ? 8 : 4); j++)
			get4(qs, j, r, dst + 2 + 4 * j);
		break;
	case GGML_TYPE_MXFP4:
		dst[0] = sc[r];
		for (int j = 0; j < 4; j++)
			get4(qs, j, r, dst + 1 + 4 * j);
		break;
	case GGML_TYPE_IQ4_XS: {
		struct quant_block_iq4_xs k;
		memcpy(k.scales_l, qs + 4 * r, 4);
		memcpy(&k.scales_h, qs + 64 + 2 * r, 2);
		memcpy(&k.d, qs + 96 + 2 * r, 2);
		for (int j = 0; j < 32; j++)
			get4(qs + 128, j, r, k.qs + 4 * j);
		memcpy(dst, &k, sizeof k);
		break;
	}
	case GGML_TYPE_Q4_1:
		memcpy(dst, &d16[r], 2);
		memcpy(dst + 2, &d16[G + r], 2);
		for (int j = 0; j < 4; j++)
			get4(qs, j, r, dst + 4 + 4 * j);
		break;
	case GGML_TYPE_Q5_0:
	case GGML_TYPE_Q5_1: {
		int off = type == GGML_TYPE_Q5_0 ? 2 : 4;
		memcpy(dst, &d16[r], 2);
		if (type == GGML_TYPE_Q5_1)
			memcpy(dst + 2, &d16[G + r], 2);
		uint64_t lo[4], hi[4];
		memcpy(lo, aux, 32);
		memcpy(hi, aux + 32, 32);
		uint32_t qh = 0;
		for (int j = 0; j < 4; j++)
			for (int i = 0; i < 4; i++) {
				qh |= (uint32_t)((lo[j] >> (4 * r + i)) & 1) << (4 * j + i);
				qh |= (uint32_t)((hi[j] >> (4 * r + i)) & 1) << (16 + 4 * j + i);
			}
		memcpy(dst + off, &qh, 4);
		for (int j = 0; j < 4; j++)
			get4(qs, j, r, dst + off + 4 + 4 * j);
		break;
	}
	case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q5_K: {
		struct quant_block_q4_k k;
		uint8_t q5[176];
		uint8_t *kq = type == GGML_TYPE_Q5_K ? q5 + 48 : k.qs;
		const int q0 = type == GGML_TYPE_Q5_K ? 8 : 0;
		memcpy(&k.d, &d16[r], 2);
		memcpy(&k.dmin, &d16[G + r], 2);
		for (int j = 0; j < q0; j++)
			get4(qs, j, r, q5 + 16 + 4 * j);
		for (int c = 0; c < 4; c++)
			for (int j = 0; j < 8; j++)
				get4(qs, q0 + c * 8 + j, r, kq + 32 * c + 4 * j);
		/* re-encode the 6-bit scales (the inverse of k4_scale_min) */
		memset(k.scales, 0, sizeof k.scales);
		for (int j = 0; j < 8; j++) {
			uint8_t a = aux[j * G + r], m = aux[128 + (j / 2) * 32 + r * 2 + (j & 1)];
			if (j < 4) {
				k.scales[j] |= a & 63;
				k.scales[j + 4] |= m & 63;
			} else {
				k.scales[j + 4] |= (uint8_t)((a & 0xf) | ((m & 0xf) << 4));
				k.scales[j - 4] |= (uint8_t)((a >> 4) << 6);
				k.scales[j] |= (uint8_t)((m >> 4) << 6);
			}
		}
		if (type == GGML_TYPE_Q5_K) {
			memcpy(q5, &k, 16);   /* d, dmin, scales */
			memcpy(dst, q5, sizeof q5);
		} else {
			memcpy(dst, &k, sizeof k);
		}
		break;
	}
	case GGML_TYPE_Q6_K: {
		struct quant_block_q6_k k;
		memcpy(&k.d, &d16[r], 2);
		for (int h = 0; h < 2; h++)
			for (int j = 0; j < 8; j++) {
				int v = (h * 8 + j) * 3;
				get4(qs, v, r, k.ql + 64 * h + 4 * j);
				get4(qs, v + 1, r, k.ql + 64 * h + 32 + 4 * j);
				get4(qs, v + 2, r, k.qh + 32 * h + 4 * j);
			}
		for (int t = 0; t < 16; t++)
			k.scales[t] = (int8_t)aux[t * G + r];
		memcpy(dst, &k, sizeof k);
		break;
	}
	case GGML_TYPE_F16:
		for (int k = 0; k < 32; k++)
			memcpy(dst + 2 * k, qs + (size_t)(k * 32 + r * 2), 2);
		break;
	}
}

/* ---- matrices ----------------------------------------------------------------------- */

/* The packed kernel of M's type at M's level, falling back to the level
 * below as the row kernels do (the AVX2 ones serve an AVX-512 CPU for the
 * types that have none of their own); NULL: M stays unpacked. */
static quant_pmul_fn kernel_at(const struct quant_matrix *m)
{
	quant_pmul_fn k = NULL;
	if (m->level >= QUANT_LEVEL_AVX512)
		k = quant_pack_kernel_avx512(m->type);
	if (!k && m->level >= QUANT_LEVEL_AVX2)
		k = quant_pack_kernel_avx2(m->type);
	return k;
}

static const struct quant_pack_desc *desc_at(const struct quant_matrix *m)
{
	return kernel_at(m) ? quant_pack_desc(m->type) : NULL;
}

int quant_matrix_init(struct quant_matrix *m, uint32_t type, const void *data, size_t row_bytes,
		      int64_t rows, int64_t cols)
{
	memset(m, 0, sizeof *m);
	size_t rb = quant_act_row_bytes(type, cols) ? ggml_row_bytes(type, (uint64_t)cols) : 0;
	if (!data || rows <= 0 || rb == 0 || row_bytes < rb || rows > INT64_MAX / 2 / (int64_t)row_bytes)
		return -1;
	m->type = type;
	m->rows = rows;
	m->cols = cols;
	m->data = data;
	m->row_bytes = row_bytes;
	m->level = quant_level();
	return 0;
}

size_t quant_matrix_pack_bytes(const struct quant_matrix *m)
{
	const struct quant_pack_desc *d = desc_at(m);
	if (!d || m->cols % d->blk != 0)
		return 0;
	size_t groups = (size_t)((m->rows + G - 1) / G);
	return groups * quant_pack_group_bytes(d, m->cols);
}

int quant_matrix_pack_alloc(struct quant_matrix *m)
{
	size_t bytes = quant_matrix_pack_bytes(m);
	if (bytes == 0 || m->packed)
		return 0;
	size_t align = bytes >= (4u << 20) ? (2u << 20) : 64;
	void *p = NULL;
	if (posix_memalign(&p, align, bytes) != 0)
		return -1;
#ifdef MADV_HUGEPAGE
	if (align > 64)
		madvise(p, bytes, MADV_HUGEPAGE);
#endif
	m->packed = p;
	m->packed_bytes = bytes;
	m->packed_owned = 1;
	return 0;
}

int quant_matrix_pack_at(struct quant_matrix *m, void *mem)
{
	size_t bytes = quant_matrix_pack_bytes(m);
	if (bytes == 0 || m->packed)
		return 0;
	if (!mem || ((uintptr_t)mem & 63) != 0)
		return -1;
	m->packed = mem;
	m->packed_bytes = bytes;
	m->packed_owned = 0;
	return 0;
}

/* One row group, row by row: each source row is read front to back once
 * (16 interleaved row streams measured slower) and the group's packed
 * bytes, a few KiB, stay in L1 while its lanes are written. */
static void pack_group(const struct quant_matrix *m, const struct quant_pack_desc *d, int64_t g)
{
	const int64_t nb = m->cols / d->blk;
	const size_t gb = quant_pack_group_bytes(d, m->cols), sb = src_block_bytes(m->type);
	uint8_t *base = (uint8_t *)m->packed + (size_t)g * gb;
	if (nb & 1)   /* the padding block of the last unit */
		memset(base + quant_pack_qs_at(d, nb - 1), 0, gb - quant_pack_qs_at(d, nb - 1));
	for (int r = 0; r < G; r++) {
		const int64_t row = g * G + r;
		const uint8_t *src = row < m->rows ? (const uint8_t *)m->data + (size_t)row * m->row_bytes : NULL;
		for (int64_t b = 0; b < nb; b++)
			pack_lane(m->type, src ? src + (size_t)b * sb : NULL, r, base + quant_pack_qs_at(d, b),
				  base + quant_pack_aux_at(d, b), base + quant_pack_sc_at(d, b));
	}
}

void quant_matrix_pack_rows(struct quant_matrix *m, int64_t r0, int64_t r1)
{
	const struct quant_pack_desc *d = desc_at(m);
	if (!m->packed || !d)
		return;
	if (r1 > m->rows)
		r1 = m->rows;
	for (int64_t g = r0 / G; g * G < r1; g++)
		pack_group(m, d, g);
}

int quant_matrix_pack(struct quant_matrix *m)
{
	if (quant_matrix_pack_alloc(m))
		return -1;
	quant_matrix_pack_rows(m, 0, m->rows);
	return 0;
}

void quant_matrix_free(struct quant_matrix *m)
{
	if (m->packed_owned)
		free(m->packed);
	m->packed = NULL;
	m->packed_bytes = 0;
	m->packed_owned = 0;
}

int quant_matrix_unpack_row(const struct quant_matrix *m, int64_t r, void *dst)
{
	const struct quant_pack_desc *d = desc_at(m);
	if (!m->packed || !d || r < 0 || r >= m->rows)
		return -1;
	const int64_t nb = m->cols / d->blk;
	const size_t gb = quant_pack_group_bytes(d, m->cols), sb = src_block_bytes(m->type);
	const uint8_t *base = (const uint8_t *)m->packed + (size_t)(r / G) * gb;
	for (int64_t b = 0; b < nb; b++)
		unpack_block(m->type, base + quant_pack_qs_at(d, b), base + quant_pack_aux_at(d, b),
			     base + quant_pack_sc_at(d, b), (int)(r % G), (uint8_t *)dst + (size_t)b * sb);
	return 0;
}

/* ---- activations ---------------------------------------------------------------------- */

size_t quant_matrix_act_bytes(const struct quant_matrix *m)
{
	if (!m->packed)
		return quant_act_row_bytes(m->type, m->cols);
	return act_bytes(quant_pack_desc(m->type), m->cols);
}

int quant_matrix_act_kind(const struct quant_matrix *m)
{
	if (!m->packed)
		return (int)quant_act_type(m->type);
	return 1000 + (int)quant_pack_desc(m->type)->act;
}

int quant_matrix_act_quantize(const struct quant_matrix *m, const float *x, void *dst)
{
	if (!m->packed) {
		const struct quant_ops *ops = quant_ops_at(m->level);
		return ops ? ops->act_quantize(m->type, x, dst, m->cols) : -1;
	}
	const struct quant_pack_desc *d = quant_pack_desc(m->type);
	const int64_t n = m->cols, nb = n / d->blk;
	uint8_t *row = dst;
	if (d->act == 2) {
		/* packed F16 exists at the AVX-512 level only */
		quant_round_f16_avx512(x, dst, n);
		return 0;
	}
	int8_t *q = (int8_t *)(row + quant_pack_qs_off(d, n));
	float *dd = (float *)(void *)row;
	if (d->act == 0) {
		/* the level's Q8_1 quantiser: Q8_0's bytes and d, plus s */
		quant_act_fn f = quant_act_fn_at(m->level, GGML_TYPE_Q4_1);
		float *s = dd + nb;
		int32_t *qsum = (int32_t *)(void *)(s + nb);
		struct quant_block_q8_1 tmp[8];
		for (int64_t b0 = 0; b0 < nb; b0 += 8) {
			int64_t k = nb - b0 < 8 ? nb - b0 : 8;
			f(x + b0 * 32, tmp, k * 32);
			for (int64_t i = 0; i < k; i++) {
				int sum = 0;
				for (int j = 0; j < 32; j++)
					sum += tmp[i].qs[j];
				dd[b0 + i] = quant_fp16_to_fp32(tmp[i].d);
				s[b0 + i] = quant_fp16_to_fp32(tmp[i].s);
				qsum[b0 + i] = sum;
				memcpy(q + (b0 + i) * 32, tmp[i].qs, 32);
			}
		}
		return 0;
	}
	quant_act_fn f = quant_act_fn_at(m->level, GGML_TYPE_Q4_K);
	int16_t *b16 = (int16_t *)(void *)(dd + nb), *b32 = b16 + nb * 16;
	struct quant_block_q8_k tmp;
	for (int64_t b = 0; b < nb; b++) {
		f(x + b * 256, &tmp, 256);
		dd[b] = tmp.d;
		memcpy(b16 + b * 16, tmp.bsums, 32);
		for (int k = 0; k < 8; k++)
			b32[b * 8 + k] = (int16_t)(tmp.bsums[2 * k] + tmp.bsums[2 * k + 1]);
		memcpy(q + b * 256, tmp.qs, 256);
	}
	return 0;
}

/* ---- products ------------------------------------------------------------------------------ */

int quant_matrix_mul(const struct quant_matrix *m, int64_t r0, int64_t r1, const void *xact,
		     size_t xact_stride, int64_t n_tokens, float *y, int64_t y_stride)
{
	if (r0 < 0 || r1 < r0 || r1 > m->rows || n_tokens < 0)
		return -1;
	if (!m->packed) {
		const struct quant_ops *ops = quant_ops_at(m->level);
		if (!ops)
			return -1;
		if (n_tokens == 1)
			return ops->matvec(m->type, m->data, m->row_bytes, r0, r1, xact, m->cols, y);
		return ops->matmul(m->type, m->data, m->row_bytes, r0, r1, xact, xact_stride, n_tokens,
				   m->cols, y, y_stride);
	}
	if (r0 % G != 0 || (r1 % G != 0 && r1 != m->rows))
		return -1;
	if (r0 == r1 || n_tokens == 0)
		return 0;
	quant_pmul_fn k = kernel_at(m);
	const struct quant_pack_desc *d = quant_pack_desc(m->type);
	k(m->packed, quant_pack_group_bytes(d, m->cols), r0 / G, (r1 + G - 1) / G, r1, m->cols, xact,
	  xact_stride, n_tokens, y, y_stride);
	return 0;
}
