/*
 * cuda_testutil.h - what the CUDA tests share: a small xorshift
 * generator and random weights in every supported format (random quants,
 * f16 scales of a few hundredths so that values stay O(1)).
 */
#ifndef TTYCHAT_CUDA_TESTUTIL_H
#define TTYCHAT_CUDA_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quant.h"

struct rng {
	uint64_t s;
};

static inline uint32_t rng_u32(struct rng *r)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return (uint32_t)(r->s >> 16);
}

/* uniform in [lo, hi) */
static inline float rng_f(struct rng *r, float lo, float hi)
{
	return lo + (hi - lo) * (float)(rng_u32(r) >> 8) * 0x1p-24f;
}

static inline void fill_f(struct rng *r, float *x, size_t n, float lo, float hi)
{
	for (size_t i = 0; i < n; i++)
		x[i] = rng_f(r, lo, hi);
}

static inline void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "out of memory (%zu bytes)\n", n);
		exit(2);
	}
	return p;
}

/* Byte offsets of the f16 scale fields in a block of TYPE; count in *n. */
static inline const size_t *half_fields(uint32_t type, int *n)
{
	static const size_t d0[] = {0}, dm[] = {0, 2}, q2k[] = {80, 82}, q3k[] = {108}, q6k[] = {208};
	switch (type) {
	case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: case GGML_TYPE_Q8_0: *n = 1; return d0;
	case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: *n = 2; return dm;
	case GGML_TYPE_Q2_K: *n = 2; return q2k;
	case GGML_TYPE_Q3_K: *n = 1; return q3k;
	case GGML_TYPE_Q6_K: *n = 1; return q6k;
	default: *n = 0; return NULL;
	}
}

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* ROWS rows of COLS elements of TYPE, STRIDE bytes apart (padding filled
 * with 0xA5): random quants and scales, floats in [-1, 1).  With
 * special_scales, one scale in eight is instead one of -0, the smallest
 * subnormal, 1 or 65504. */
static inline void make_weight(struct rng *r, uint32_t type, int64_t rows, int64_t cols, uint8_t *w,
			       size_t stride, int special_scales)
{
	static const uint16_t special[] = {0x8000, 0x0001, 0x3c00, 0x7bff};
	const size_t rb = ggml_row_bytes(type, (uint64_t)cols);
	for (int64_t i = 0; i < rows; i++) {
		uint8_t *row = w + (size_t)i * stride;
		if (type == GGML_TYPE_F32) {
			for (int64_t j = 0; j < cols; j++) {
				float f = rng_f(r, -1.0f, 1.0f);
				memcpy(row + 4 * j, &f, 4);
			}
		} else if (type == GGML_TYPE_F16 || type == GGML_TYPE_BF16) {
			for (int64_t j = 0; j < cols; j++) {
				float f = rng_f(r, -1.0f, 1.0f);
				put16(row + 2 * j, type == GGML_TYPE_F16 ? quant_fp32_to_fp16(f) : quant_fp32_to_bf16(f));
			}
		} else {
			for (size_t j = 0; j < rb; j++)
				row[j] = (uint8_t)rng_u32(r);
			const size_t bb = ggml_type_block_bytes(type);
			int nf;
			const size_t *off = half_fields(type, &nf);
			for (size_t b = 0; b < rb / bb; b++)
				for (int k = 0; k < nf; k++) {
					uint16_t h = quant_fp32_to_fp16(rng_f(r, -0.05f, 0.05f));
					if (special_scales && rng_u32(r) % 8 == 0)
						h = special[rng_u32(r) % 4];
					put16(row + b * bb + off[k], h);
				}
		}
		memset(row + rb, 0xA5, stride - rb);
	}
}

#endif
