/*
 * quant_impl.h - private to quant*.c: the per-type kernel tables that the
 * dispatch in quant.c resolves, and the scalar pieces SIMD files reuse.
 *
 * Each CPU level provides, per weight type, a table of kernels; a NULL
 * entry falls back to the next lower level and finally to the scalar
 * reference, so a level only implements what it speeds up.
 */
#ifndef TTYCHAT_QUANT_IMPL_H
#define TTYCHAT_QUANT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

#if defined(__x86_64__) || defined(__i386__)
#define QUANT_X86 1
#else
#define QUANT_X86 0
#endif

typedef void (*quant_dequant_fn)(const void *src, float *dst, int64_t n);
typedef void (*quant_act_fn)(const float *x, void *dst, int64_t n);
typedef float (*quant_dot_fn)(const void *w, const void *x, int64_t n);
/* y[r] for r0 <= r < r1 */
typedef void (*quant_matvec_fn)(const void *w, size_t ws, int64_t r0, int64_t r1,
				const void *x, int64_t n, float *y);
/* y[t * ys + r] for t < nt, r0 <= r < r1 */
typedef void (*quant_matmul_fn)(const void *w, size_t ws, int64_t r0, int64_t r1,
				const void *x, size_t xs, int64_t nt, int64_t n,
				float *y, int64_t ys);

struct quant_kern {
	quant_dequant_fn dequant;
	quant_act_fn act;        /* quantises activations into the act type */
	quant_dot_fn dot;
	quant_matvec_fn matvec;
	quant_matmul_fn matmul;
};

/* Kernel table of a weight type at one level (NULL: nothing at this
 * level).  quant_kern_scalar() is complete for every supported type. */
const struct quant_kern *quant_kern_scalar(uint32_t type);
const struct quant_kern *quant_kern_avx2(uint32_t type);
const struct quant_kern *quant_kern_avx512(uint32_t type);

/* Scalar activation quantisers (also the definition of the bytes every
 * level must produce). */
void quant_q8_0_quantize_ref(const float *x, void *dst, int64_t n);
void quant_q8_1_quantize_ref(const float *x, void *dst, int64_t n);
void quant_q8_k_quantize_ref(const float *x, void *dst, int64_t n);

/* Generic drivers built from a dot kernel: y[r] = dot(row r, x). */
void quant_matvec_by_dot(quant_dot_fn dot, const void *w, size_t ws, int64_t r0,
			 int64_t r1, const void *x, int64_t n, float *y);
/* Tiled over rows so a weight tile stays in cache while tokens stream. */
void quant_matmul_by_matvec(quant_matvec_fn mv, const void *w, size_t ws, int64_t r0,
			    int64_t r1, const void *x, size_t xs, int64_t nt, int64_t n,
			    float *y, int64_t ys);

/* ---- non-linear, ternary and binary formats (quant_nl.c, quant_nl_avx2.c) ------- */

/* The weight types of quant_nl.c, as case labels for the dispatch switches. */
#define QUANT_NL_CASES                                                                  \
	case GGML_TYPE_IQ4_NL: case GGML_TYPE_IQ4_XS: case GGML_TYPE_MXFP4:             \
	case GGML_TYPE_NVFP4: case GGML_TYPE_TQ1_0: case GGML_TYPE_TQ2_0:               \
	case GGML_TYPE_Q1_0: case GGML_TYPE_Q2_0

/* Kernel tables, activation type, block elements and bytes of those types
 * (NULL, GGML_TYPE_COUNT, 0 for any other). */
const struct quant_kern *quant_kern_nl_scalar(uint32_t type);
const struct quant_kern *quant_kern_nl_avx2(uint32_t type);
uint32_t quant_nl_act_type(uint32_t wtype);
int64_t quant_nl_blk_elems(uint32_t type);
size_t quant_nl_blk_bytes(uint32_t type);
/* MXFP4's E8M0 scale 2^(e-127) and NVFP4's UE4M3 scale, both halved
 * (their E2M1 table is doubled), exactly as llama.cpp decodes them. */
float quant_e8m0_half(uint8_t e);
float quant_ue4m3_half(uint8_t d);

/* ---- packed matrices (quant_pack.c) ------------------------------------------ */
/*
 * A packed matrix is a sequence of row groups of QUANT_ROW_GROUP rows;
 * group g starts at packed + g * group_bytes (a multiple of 64; of 32 for
 * MXFP4, whose units of two blocks are 544 bytes).  A group
 * is a sequence of units of two blocks (of 32 or 256 elements, or 32
 * columns for F16; a missing second block at the end of a row is zero
 * padding), and a unit holds three segments, each for block 0 then block 1:
 *   qs   qs_bytes each    the quants, as 64-byte vectors of 16 lanes x 4
 *                         bytes: lane r holds 4 consecutive bytes of row r
 *   aux  aux_bytes each   per-type extras (high bits, sub-block scales)
 *   sc   sc_bytes each    scales of the 16 rows (fp16 d[16], then m/dmin[16];
 *                         MXFP4: the E8M0 bytes)
 * so the kernels read one stream in address order and every vector of
 * quants is 64-byte aligned (MXFP4: 32-byte).  The per-type layouts are
 * documented at pack_lane() in quant_pack.c.
 *
 * Activation rows of packed matrices (all offsets from the row start):
 *   A32 (32-element block types): float d[nb]; float s[nb] (Q8_1's fp16 s
 *       as float); int32 qsum[nb] (sum of the block's q); then at
 *       quant_pack_qs_off() the int8 q[n] (same bytes as Q8_0/Q8_1).
 *   AK (K-quants): float d[nb]; int16 bsum16[nb][16]; int16 bsum32[nb][8];
 *       then the int8 q[n] (same bytes as Q8_K).
 *   AF (F16): float x[n], each the float of fp16(x) (llama.cpp's F16 act).
 */
struct quant_pack_desc {
	uint32_t blk;            /* elements per block (F16: 32 columns) */
	uint32_t qs_bytes, aux_bytes, sc_bytes; /* per block of 16 rows */
	uint32_t act;            /* 0 = A32, 1 = AK, 2 = AF */
};
/* NULL when TYPE has no packed layout. */
const struct quant_pack_desc *quant_pack_desc(uint32_t type);
size_t quant_pack_group_bytes(const struct quant_pack_desc *d, int64_t cols);
/* Bytes of one unit (two blocks) and the offsets of block b's segments
 * from the group start. */
static inline size_t quant_pack_unit_bytes(const struct quant_pack_desc *d)
{
	return 2 * (size_t)(d->qs_bytes + d->aux_bytes + d->sc_bytes);
}
static inline size_t quant_pack_qs_at(const struct quant_pack_desc *d, int64_t b)
{
	return (size_t)(b / 2) * quant_pack_unit_bytes(d) + (size_t)(b & 1) * d->qs_bytes;
}
static inline size_t quant_pack_aux_at(const struct quant_pack_desc *d, int64_t b)
{
	return (size_t)(b / 2) * quant_pack_unit_bytes(d) + 2 * (size_t)d->qs_bytes +
	       (size_t)(b & 1) * d->aux_bytes;
}
static inline size_t quant_pack_sc_at(const struct quant_pack_desc *d, int64_t b)
{
	return (size_t)(b / 2) * quant_pack_unit_bytes(d) + 2 * (size_t)(d->qs_bytes + d->aux_bytes) +
	       (size_t)(b & 1) * d->sc_bytes;
}
/* Offset of the int8 quants in an A32/AK activation row of n elements. */
size_t quant_pack_qs_off(const struct quant_pack_desc *d, int64_t n);

/* y[t * ys + r] for the rows of groups [g0, g1) (rows beyond `rows` are
 * padding and not written), tokens t < nt; packed = group 0. */
typedef void (*quant_pmul_fn)(const void *packed, size_t group_bytes, int64_t g0, int64_t g1,
			      int64_t rows, int64_t cols, const void *xact, size_t xs, int64_t nt,
			      float *y, int64_t ys);
/* Packed kernels of one level for TYPE; NULL when none.  The AVX2 ones
 * read each 64-byte vector as two halves of 8 rows (quant_pack_avx2.c). */
quant_pmul_fn quant_pack_kernel_avx512(uint32_t type);
quant_pmul_fn quant_pack_kernel_avx2(uint32_t type);

/* y[i] = float(fp16(x[i])) with F16C (AVX-512 level builds only). */
void quant_round_f16_avx512(const float *x, float *y, int64_t n);

/* The activation quantiser quant_act_quantize would use at LEVEL. */
quant_act_fn quant_act_fn_at(int level, uint32_t wtype);

#endif
