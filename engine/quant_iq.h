/*
 * quant_iq.h - private to quant*.c: the grid-based i-quants of ggml
 * (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M).
 *
 * These formats store, per group of 4 or 8 weights, an index into a fixed
 * table of lattice points ("grid", quant_iq_tables.h, generated from
 * llama.cpp's ggml-common.h) plus sign bits and small odd integer scales
 * per 16 or 32 weights under one fp16 block scale.  All take Q8_K
 * activations.  quant_iq.c has the scalar reference, quant_iq_avx2.c the
 * AVX2 kernels; quant.c and quant_avx2.c route the types here through
 * QUANT_IQ_CASES.
 */
#ifndef TTYCHAT_QUANT_IQ_H
#define TTYCHAT_QUANT_IQ_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "quant_impl.h"

/* the case labels of every type this file covers, for the dispatch switches */
#define QUANT_IQ_CASES                                                          \
	case GGML_TYPE_IQ2_XXS: case GGML_TYPE_IQ2_XS: case GGML_TYPE_IQ2_S:    \
	case GGML_TYPE_IQ3_XXS: case GGML_TYPE_IQ3_S: case GGML_TYPE_IQ1_S:     \
	case GGML_TYPE_IQ1_M:

/* Block layouts (256 weights each, little-endian, packed).  "d" is an fp16
 * scale; IQ1_M spreads its fp16 scale over the top nibbles of scales[]. */
struct quant_block_iq2_xxs { uint16_t d; uint8_t qs[64]; };   /* per 32: 4 idx bytes, u32 signs+scale */
struct quant_block_iq2_xs { uint16_t d; uint8_t qs[64]; uint8_t scales[8]; };  /* u16: idx 9 | sign 7 */
struct quant_block_iq2_s { uint16_t d; uint8_t qs[32]; uint8_t signs[32]; uint8_t qh[8]; uint8_t scales[8]; };
struct quant_block_iq3_xxs { uint16_t d; uint8_t qs[64]; uint8_t sas[32]; }; /* sas: u32 signs+scale */
struct quant_block_iq3_s {
	uint16_t d;
	uint8_t qs[64], qh[8], signs[32], scales[4];
};
struct quant_block_iq1_s { uint16_t d; uint8_t qs[32]; uint8_t qh[16]; };    /* qh: u16 per 32 */
struct quant_block_iq1_m { uint8_t qs[32]; uint8_t qh[16]; uint8_t scales[8]; };

/* Grids (row i: byte j is element j of lattice point i) and the sign table
 * (7 stored sign bits -> 8, the eighth making the count of minus signs
 * even); defined in quant_iq_tables.h, compiled into quant_iq.c. */
extern const uint8_t quant_iq_ksigns[128];
extern const uint64_t quant_iq2xxs_grid[256];
extern const uint64_t quant_iq2xs_grid[512];
extern const uint64_t quant_iq2s_grid[1024];
extern const uint32_t quant_iq3xxs_grid[256];
extern const uint32_t quant_iq3s_grid[512];
extern const uint64_t quant_iq1s_grid[2048];   /* bytes are int8 -1, 0, 1 */

/* Bytes of one block of TYPE; 0 when TYPE is not one of these. */
size_t quant_iq_block_bytes(uint32_t type);
/* Kernel tables (NULL when TYPE is not one of these, or at AVX2 has no
 * kernel of that level yet). */
const struct quant_kern *quant_iq_kern_scalar(uint32_t type);
const struct quant_kern *quant_iq_kern_avx2(uint32_t type);

#endif
