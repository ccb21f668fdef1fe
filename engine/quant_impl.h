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

#endif
