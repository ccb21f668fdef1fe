/*
 * kvquant.h - the formats a KV cache row may take, their encoders, the dot
 * product of a query with a quantised key row, and the rotation applied to
 * K and V before they are quantised (engine-internal).
 *
 * Types are ggml numbers (engine/gguf.h) plus one of our own:
 *   F16, Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, IQ4_NL  ggml's block layouts (quant.h),
 *       32 elements a block; decoding and the dot kernels are quant.c's;
 *       the encoders live here (ggml's rounding rules for the linear
 *       types; IQ4_NL and Q3R pick each block's scale by a small search).
 *   KVQ_Q3R  our 3-bit type: 64 elements a block, one fp16 scale d and a
 *       3-bit code c per element, value d * L[c] with L the 8 Lloyd-Max
 *       levels of a unit Gaussian scaled so the largest is 127
 *       ({-127,-79,-45,-14,14,45,79,127}); 26 bytes per 64 = 3.25 bits per
 *       element (f16/4.9).  A rotated head is close to Gaussian, which is
 *       what the levels are cut for.  Layout: d; ql[16], element j's two
 *       low code bits at bits 2*(j/16) of ql[j%16]; qh[8], its high bit
 *       at bit j%8 of qh[j/8].  Heads must be a multiple of 64 (64, 128,
 *       256, 512 are).
 *
 * Rotation: x -> R x with R = H S / sqrt(c) on each chunk of c elements of
 * a head, S a diagonal of random signs from a 32-bit seed, H the
 * Walsh-Hadamard matrix, c the largest power of two dividing the head size
 * (the whole head for 64..512).  R is orthonormal, so q.k = (Rq).(Rk): keys
 * are stored rotated and the query is rotated the same way; the weighted
 * sum of rotated values is R times the true one, undone by R^T.  Outliers
 * spread over the head, which is what lets 4 and 3 bits keep quality.
 *
 * Threads: every function is reentrant; no state.
 */
#ifndef TTYCHAT_KVQUANT_H
#define TTYCHAT_KVQUANT_H

#include <stddef.h>
#include <stdint.h>

#define KVQ_Q3R 200u            /* our 3-bit rotated type (outside ggml's numbers) */
#define KVQ_Q3R_BLOCK 64
#define KVQ_ROT_SEED 0x9e3779b9u /* the default rotation seed */
#define KVQ_MAX_HEAD 1024       /* largest head the rotation scratch takes */

struct kvq_block_q3r { uint16_t d; uint8_t ql[16]; uint8_t qh[8]; };

/* 1 when TYPE can hold KV rows. */
int kvq_supported(uint32_t type);
/* "f16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1", "iq4_nl", "q3r"; "?" else. */
const char *kvq_name(uint32_t type);
/* The type of NAME (as kvq_name gives it), or 0 (F32, never a KV type). */
uint32_t kvq_parse(const char *name);
/* Elements per block (1 for F16). */
int kvq_block(uint32_t type);
/* Bytes of N elements of TYPE; 0 when TYPE is not a KV type or N is not a
 * positive multiple of its block. */
size_t kvq_row_bytes(uint32_t type, uint64_t n);
/* Encodes N floats (a multiple of the block) as TYPE.  0, or -1 (type, n). */
int kvq_quantize_row(uint32_t type, const float *x, void *dst, int64_t n);
/* Decodes N elements of TYPE.  0 or -1. */
int kvq_dequant_row(uint32_t type, const void *src, float *dst, int64_t n);

/* The query side of a dot product with key rows of TYPE: the activation
 * row of N floats (kvq_act_bytes), and the dot kernel of the current CPU
 * level (NULL for a type that is not a KV type). */
size_t kvq_act_bytes(uint32_t type, int64_t n);
int kvq_act_quantize(uint32_t type, const float *q, void *dst, int64_t n);
typedef float (*kvq_dot_fn)(const void *krow, const void *act, int64_t n);
kvq_dot_fn kvq_get_dot(uint32_t type);
/* Q3R's dot kernel at one CPU level (quant.h's levels; NULL above what the
 * CPU has), for tests. */
kvq_dot_fn kvq_q3r_dot_at(int level);
/* Q3R's decoder at one CPU level (NULL above what the CPU has), for tests;
 * kvq_dequant_row uses the current level's. */
typedef void (*kvq_dequant_fn)(const void *src, float *dst, int64_t n);
kvq_dequant_fn kvq_q3r_dequant_at(int level);

/* sum of a[i] * b[i] for i < n (AVX2 with FMA where the CPU has it). */
float kvq_dot_f32(const float *a, const float *b, int n);
/* y[i] += a * x[i] for i < n (AVX2 with FMA where the CPU has it). */
void kvq_axpy(float *y, const float *x, float a, int n);

/* The kvquant type of an enum engine_kv_type, or 0 for none. */
uint32_t kvq_from_engine(int engine_kv_type);

/* Rotation of one head of D elements (D <= KVQ_MAX_HEAD): SIGNS from
 * kvq_rot_signs (at least D of them).  kvq_rotate applies R, kvq_unrotate
 * R^T, in place. */
void kvq_rot_signs(uint32_t seed, float *signs, int n);
void kvq_rotate(float *x, int d, const float *signs);
void kvq_unrotate(float *x, int d, const float *signs);

#endif
