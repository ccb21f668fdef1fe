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

/* Block layouts: 256 weights each, little-endian, packed; "d" is the fp16
 * block scale.  Per sub-block ib of 32 weights (groups of 8 weights l):
 *   IQ2_XXS qs[8ib..+3] grid indexes, u32 at qs[8ib+4]: four 7-bit sign
 *           indexes (quant_iq_ksigns), scale in bits 28..31
 *   IQ2_XS  u16 at qs[8ib+2l]: 9-bit grid index | 7-bit sign index << 9;
 *           scales[ib]: low nibble weights 0..15, high 16..31
 *   IQ2_S   qs[4ib+l] | 2 bits of qh[ib] << 8 index; signs[4ib+l] plain
 *           sign bits; scales as IQ2_XS
 *   IQ3_XXS qs[8ib..+7] grid indexes (4 weights each); u32 sas[4ib..]
 *           as IQ2_XXS's second word
 *   IQ3_S   qs[8ib+m] | bit m of qh[ib] << 8 index (4 weights each);
 *           signs[4ib+l]; nibble ib%2 of scales[ib/2]
 *   IQ1_S   u16 at qh[2ib]: 4 x 3 index bits over qs[4ib+l], 3-bit scale
 *           at 12, delta sign at 15
 *   IQ1_M   qh[2ib + l/2] nibble l%2: 3 index bits and the delta sign;
 *           two 3-bit scales per sub-block in the u16 scale words, whose
 *           top nibbles hold the fp16 block scale */
struct quant_block_iq2_xxs { uint16_t d; uint8_t qs[64]; };
struct quant_block_iq2_xs { uint16_t d; uint8_t qs[64], scales[8]; };
struct quant_block_iq2_s { uint16_t d; uint8_t qs[32], signs[32], qh[8], scales[8]; };
struct quant_block_iq3_xxs { uint16_t d; uint8_t qs[64], sas[32]; };
struct quant_block_iq3_s { uint16_t d; uint8_t qs[64], qh[8], signs[32], scales[4]; };
struct quant_block_iq1_s { uint16_t d; uint8_t qs[32], qh[16]; };
struct quant_block_iq1_m { uint8_t qs[32], qh[16], scales[8]; };

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
