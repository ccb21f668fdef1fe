/*
 * quant.h - ggml tensor formats and the numeric kernels of the CPU forward
 * pass: dequantisation, activation quantisation, dot products, matrix-vector
 * and matrix-matrix products over quantised weights.
 *
 * Types are the ggml numbers of enum ggml_type (engine/gguf.h).  Supported
 * weight types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K,
 * IQ4_NL, IQ4_XS, MXFP4, NVFP4, TQ1_0, TQ2_0, Q1_0, Q2_0 (quant_nl.c), and
 * the grid-based i-quants (quant_iq.c): IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S, IQ1_M.
 * Q8_1 and Q8_K exist as activation formats (and can be dequantised).
 *
 * Numerics follow llama.cpp's CPU backend so that greedy generations agree
 * token for token: activations are quantised once per row into the weight
 * type's "activation type" (see quant_act_type), with the same scale and
 * rounding rules as llama.cpp's x86 build (byte-identical, checked by
 * test_quant against llama.cpp's own kernels), and dot products are exact
 * integer sums per block scaled in float.  Only the order of the float
 * additions differs between kernels (and from llama.cpp), so results of
 * different CPU levels agree to a few float ulps of the sum of |terms|.
 *
 * CPU levels: each kernel has a scalar reference; on x86-64 there are also
 * AVX2 (+FMA, F16C) and AVX-512 (F, BW, VL, VNNI) versions, compiled into
 * the same binary with per-function target attributes and picked at run
 * time from CPUID.  The environment variable TTYCHAT_CPU=scalar|avx2|avx512
 * lowers the level (never raises it above what the CPU has); it is read once
 * per process, on the first call that needs the level.  Activation bytes
 * produced by quant_act_quantize are identical at every level.
 *
 * Preconditions (the kernels are hot paths and check only the cheap
 * things: type and n): n is a positive multiple of
 * ggml_type_block_size(type) (of the activation type too, i.e. 256 for the
 * K-quants), pointers are valid for the rows they cover, row ranges are
 * inside the tensor.  Every row and buffer must be 2-byte aligned (4-byte
 * for F32 data and Q8_K activation rows), as GGUF tensor data always is;
 * no larger alignment is needed (MXFP4 and NVFP4 rows, all bytes, need
 * none: MXFP4's 17-byte blocks make odd row lengths).  Functions returning int return 0 on
 * success and -1, writing nothing, when the type is not supported or n is
 * not a positive multiple of the block size.
 *
 * Threads: every function is reentrant and keeps no state besides the
 * cached CPU level; any number of threads may call them at once, e.g. on
 * disjoint row ranges of one matrix.
 */
#ifndef TTYCHAT_QUANT_H
#define TTYCHAT_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* ---- scalar conversions (exact IEEE round to nearest even) ---------------- */

/* binary16 <-> binary32, including subnormals, infinities and NaNs (a NaN
 * stays a NaN: quiet, sign and top payload bits kept). */
float quant_fp16_to_fp32(uint16_t h);
uint16_t quant_fp32_to_fp16(float f);
/* bfloat16 <-> binary32 (as ggml: NaN -> quiet NaN, else round to nearest
 * even; an overflow rounds to infinity). */
float quant_bf16_to_fp32(uint16_t h);
uint16_t quant_fp32_to_bf16(float f);

/* ---- block layouts (little-endian, packed, no padding) -------------------- */
/* Every "d", "m", "dmin", "s" of type uint16_t is an IEEE binary16 value.
 * Value of element j of a block, q its stored integer:
 *   Q4_0  d * (q - 8), q in 0..15
 *   Q4_1  d * q + m
 *   Q5_0  d * (q - 16), q in 0..31 (fifth bit in qh)
 *   Q5_1  d * q + m
 *   Q8_0  d * q, q int8
 *   Q8_1  d * q, with s = d * sum(q) precomputed
 *   K-quants: 256 elements in sub-blocks of 16 or 32 with 6- or 8-bit
 *   scales, see quant.c.  Q8_K: d is a float, bsums[k] = sum of the 16 q
 *   of sub-block k. */
#define QUANT_QK 32     /* elements of a Q4_0 .. Q8_1 block */
#define QUANT_QK_K 256  /* elements of a K-quant block */

struct quant_block_q4_0 { uint16_t d; uint8_t qs[16]; };
struct quant_block_q4_1 { uint16_t d, m; uint8_t qs[16]; };
struct quant_block_q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
struct quant_block_q5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; };
struct quant_block_q8_0 { uint16_t d; int8_t qs[32]; };
struct quant_block_q8_1 { uint16_t d, s; int8_t qs[32]; };
struct quant_block_q2_k { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; };
struct quant_block_q3_k { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; };
struct quant_block_q4_k { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; };
struct quant_block_q5_k { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
struct quant_block_q6_k { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };
struct quant_block_q8_k { float d; int8_t qs[256]; int16_t bsums[16]; };

/* The non-linear and ternary/binary formats (quant_nl.c).  Value of element
 * j, q its stored code:
 *   IQ4_NL  d * K[q], K the 16 IQ4_NL levels (-127 .. 113), 4-bit q
 *   IQ4_XS  d * (ls - 32) * K[q], ls a 6-bit scale per 32 elements
 *   MXFP4   2^(e - 128) * F[q], F the E2M1 values doubled (0 .. +-12)
 *   NVFP4   ue4m3(d[k]) / 2 * F[q], one E4M3 scale per 16 elements
 *   TQ1_0   d * (t - 1), t a trit, five per byte (base-3 fixed point)
 *   TQ2_0   d * (q - 1), 2-bit q
 *   Q1_0    +d or -d by one bit
 *   Q2_0    d * (q - 1), 2-bit q */
struct quant_block_iq4_nl { uint16_t d; uint8_t qs[16]; };
struct quant_block_iq4_xs { uint16_t d, scales_h; uint8_t scales_l[4]; uint8_t qs[128]; };
struct quant_block_mxfp4 { uint8_t e; uint8_t qs[16]; };
struct quant_block_nvfp4 { uint8_t d[4]; uint8_t qs[32]; };
struct quant_block_tq1_0 { uint8_t qs[48]; uint8_t qh[4]; uint16_t d; };
struct quant_block_tq2_0 { uint8_t qs[64]; uint16_t d; };
struct quant_block_q1_0 { uint16_t d; uint8_t qs[16]; };
struct quant_block_q2_0 { uint16_t d; uint8_t qs[16]; };

/* ---- CPU levels ------------------------------------------------------------ */

enum quant_level {
	QUANT_LEVEL_SCALAR = 0,
	QUANT_LEVEL_AVX2 = 1,    /* AVX2 + FMA + F16C */
	QUANT_LEVEL_AVX512 = 2,  /* + AVX-512 F/BW/VL/VNNI */
	QUANT_LEVEL_COUNT = 3,
};

/* Best level this CPU and this build support (ignores TTYCHAT_CPU). */
int quant_level_detect(void);
/* Level the dispatching functions below use: quant_level_detect() lowered
 * by TTYCHAT_CPU when that names a lower level.  Cached after first use. */
int quant_level(void);
/* "scalar", "avx2", "avx512"; "?" for anything else. */
const char *quant_level_name(int level);

/* ---- types ----------------------------------------------------------------- */

/* 1 when TYPE can be a weight here (dequantised, dotted, multiplied). */
int quant_supported(uint32_t type);
/* 1 when TYPE can be dequantised (weights plus Q8_1 and Q8_K). */
int quant_dequant_supported(uint32_t type);
/* The activation type llama.cpp pairs with weight type WTYPE ("vec_dot
 * type"): Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the
 * K-quants and the grid i-quants, F16 for F16, BF16 for BF16, F32 for F32;
 * Q8_0 for IQ4_NL/MXFP4/NVFP4/Q1_0/Q2_0, Q8_K for IQ4_XS/TQ1_0/TQ2_0.
 * GGML_TYPE_COUNT for an unsupported WTYPE. */
uint32_t quant_act_type(uint32_t wtype);

/* ---- rows -------------------------------------------------------------------- */

/* Converts n elements of TYPE at SRC into floats at DST. */
int quant_dequant_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Encodes n floats as TYPE, for the types that have an encoder here: F32,
 * F16, BF16, Q8_0, Q8_1, Q8_K (activations, KV cache).  Same rules as the
 * activation quantisation: for Q8_0/Q8_1 d = amax/127 stored as fp16 and
 * q = round-to-nearest-even(x * (127/amax)); Q8_1 also stores
 * s = fp16(d * sum(q)); Q8_K uses d = max/-127 of the signed extreme, q =
 * min(127, nearest(x * -127/max)) and bsums. */
int quant_quantize_row(uint32_t type, const float *x, void *dst, int64_t n);

/* Bytes one activation row of n elements takes for weight type WTYPE; 0
 * when WTYPE is unsupported or n is not a positive multiple of the block
 * size of both WTYPE and its activation type. */
size_t quant_act_row_bytes(uint32_t wtype, int64_t n);
/* Quantises one activation row (n floats) into quant_act_type(wtype) at DST
 * (quant_act_row_bytes(wtype, n) bytes). */
int quant_act_quantize(uint32_t wtype, const float *x, void *dst, int64_t n);

/* Dot product of one weight row (n elements of WTYPE) with one activation
 * row made by quant_act_quantize(wtype, ...).  Returns NaN for an
 * unsupported type. */
float quant_vec_dot(uint32_t wtype, const void *wrow, const void *xact, int64_t n);

/* The dot kernel quant_vec_dot would run for WTYPE at the current level,
 * for hot loops over short rows (attention over the KV cache): calling it
 * skips the per-call dispatch and argument checks, so the preconditions
 * above are the caller's to keep.  NULL for an unsupported WTYPE. */
typedef float (*quant_vec_dot_fn)(const void *wrow, const void *xact, int64_t n);
quant_vec_dot_fn quant_get_vec_dot(uint32_t wtype);

/* y[r] = dot(row r of W, xact) for rows_begin <= r < rows_end, where row r
 * starts at (const char *)w + r * row_stride_bytes and has n elements.
 * Y points at element 0 of the whole output vector; only y[rows_begin ..
 * rows_end-1] is written, so threads can share Y on disjoint ranges. */
int quant_matvec(uint32_t wtype, const void *w, size_t row_stride_bytes,
		 int64_t rows_begin, int64_t rows_end,
		 const void *xact, int64_t n, float *y);

/* The same for n_tokens activation rows (prefill):
 *   y[t * y_stride + r] = dot(row r of W, token t's activation row)
 * for 0 <= t < n_tokens and rows_begin <= r < rows_end.  Token t's
 * activation row starts at (const char *)xact + t * xact_stride_bytes;
 * y_stride counts floats (usually the number of rows of W).  Weight tiles
 * are reused across tokens while they sit in cache. */
int quant_matmul(uint32_t wtype, const void *w, size_t row_stride_bytes,
		 int64_t rows_begin, int64_t rows_end,
		 const void *xact, size_t xact_stride_bytes, int64_t n_tokens,
		 int64_t n, float *y, int64_t y_stride);

/* ---- explicit levels (tests, benchmarks) ------------------------------------ */

/* The same operations bound to one CPU level.  quant_ops_at() returns NULL
 * when LEVEL is out of range or above quant_level_detect(); the dispatching
 * functions above are quant_ops_at(quant_level()).  Argument rules and
 * return values are those of the functions of the same name. */
struct quant_ops {
	int level;
	int (*dequant_row)(uint32_t type, const void *src, float *dst, int64_t n);
	int (*act_quantize)(uint32_t wtype, const float *x, void *dst, int64_t n);
	float (*vec_dot)(uint32_t wtype, const void *wrow, const void *xact, int64_t n);
	int (*matvec)(uint32_t wtype, const void *w, size_t row_stride_bytes,
		      int64_t rows_begin, int64_t rows_end,
		      const void *xact, int64_t n, float *y);
	int (*matmul)(uint32_t wtype, const void *w, size_t row_stride_bytes,
		      int64_t rows_begin, int64_t rows_end,
		      const void *xact, size_t xact_stride_bytes, int64_t n_tokens,
		      int64_t n, float *y, int64_t y_stride);
};
const struct quant_ops *quant_ops_at(int level);

/* ---- prepared weight matrices ------------------------------------------------ */
/*
 * A struct quant_matrix is one weight matrix made ready for the kernels.
 * quant_matrix_pack() may copy it into an interleaved layout ("packed":
 * groups of QUANT_ROW_GROUP rows stored block by block, the same block of
 * the 16 rows side by side, scales converted where that saves work), which
 * lets one vector instruction work on 16 rows at once and reuse each
 * unpacked weight block for several tokens.  Packing is lossless and
 * changes no integer: results differ from quant_matvec/quant_matmul on the
 * original rows only by the order of float additions (the same tolerance
 * as between CPU levels).  Types and levels without packed kernels stay
 * unpacked and every call below falls through to the row kernels, so
 * callers use one code path.
 *
 * Packed at the AVX2 level: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, MXFP4,
 * Q4_K, Q5_K, Q6_K, IQ4_XS (8 of the 16 rows per 256-bit vector); at the
 * AVX-512 level those and F16 (IQ4_NL, MXFP4, Q5_K and IQ4_XS through the
 * AVX2 kernels).
 * The packed copy has the size of the original rows (Q4_K +2.8%, Q5_K
 * +2.3%, rows padded to a multiple of 16); it is owned by the matrix, and the original
 * rows (data) must stay valid too (they are not read by the packed kernels,
 * but quant_matrix_free() does not own them either).
 *
 * Activations: a packed matrix wants its own activation rows (same int8
 * values as quant_act_quantize, with float scales and block sums in front
 * so the kernels need no conversions): size them with
 * quant_matrix_act_bytes() and fill them with quant_matrix_act_quantize().
 * Rows are 64-byte multiples; buffers need 64-byte alignment only for
 * speed.  An unpacked matrix uses exactly quant_act_quantize's format.
 *
 * Threads: init/pack/free from one thread; quant_matrix_pack_rows() and
 * quant_matrix_mul() may run on several threads at once on disjoint row
 * ranges.  Functions returning int give 0 or -1 (bad arguments, or out of
 * memory in quant_matrix_pack).
 */
#define QUANT_ROW_GROUP 16

struct quant_matrix {
	uint32_t type;          /* GGML type of the weights */
	int64_t rows, cols;
	const void *data;       /* the original rows, row_bytes apart (not owned) */
	size_t row_bytes;
	int level;              /* CPU level whose kernels run (quant_level() at init) */
	void *packed;           /* interleaved copy, or NULL */
	size_t packed_bytes;
	int packed_owned;       /* 1: quant_matrix_free() frees packed */
};

/* Describes a matrix of ROWS rows of COLS elements of TYPE at DATA, rows
 * ROW_BYTES apart (>= the packed row size).  Packs nothing. */
int quant_matrix_init(struct quant_matrix *m, uint32_t type, const void *data,
		      size_t row_bytes, int64_t rows, int64_t cols);
/* Bytes a packed copy would take at m->level; 0 when this type is not
 * packed there (the matrix then stays on the row kernels). */
size_t quant_matrix_pack_bytes(const struct quant_matrix *m);
/* Allocates the packed copy without filling it (then call
 * quant_matrix_pack_rows over all rows, possibly from several threads).
 * 0 also when there is nothing to pack. */
int quant_matrix_pack_alloc(struct quant_matrix *m);
/* Fills rows [r0, r1) of the packed copy; r0 and r1 multiples of
 * QUANT_ROW_GROUP (r1 may be m->rows).  No-op when unpacked. */
void quant_matrix_pack_rows(struct quant_matrix *m, int64_t r0, int64_t r1);
/* Like quant_matrix_pack_alloc, but the copy goes to MEM
 * (quant_matrix_pack_bytes(m) bytes, 64-byte aligned), which stays the
 * caller's: one arena for all of a model's matrices, in the order the
 * forward pass reads them, streams best (one run of huge pages).  0, or -1
 * when MEM is misaligned. */
int quant_matrix_pack_at(struct quant_matrix *m, void *mem);
/* quant_matrix_pack_alloc + quant_matrix_pack_rows over every row. */
int quant_matrix_pack(struct quant_matrix *m);
/* Drops the packed copy, freeing it when the matrix owns it (the matrix
 * falls back to the row kernels). */
void quant_matrix_free(struct quant_matrix *m);

/* Bytes of one token's activation row for M (0 on bad M). */
size_t quant_matrix_act_bytes(const struct quant_matrix *m);
/* A number naming M's activation format: two matrices with the same number
 * (and the same cols) take the same activation rows, so one quantisation
 * serves both (e.g. q, k and v of a layer). */
int quant_matrix_act_kind(const struct quant_matrix *m);
/* Quantises the m->cols floats at X into one activation row at DST. */
int quant_matrix_act_quantize(const struct quant_matrix *m, const float *x, void *dst);
/* y[t * y_stride + r] = row r of M . activation row t, for t < n_tokens and
 * r0 <= r < r1; activation row t at (const char *)xact + t * xact_stride.
 * r0 must be a multiple of QUANT_ROW_GROUP; r1 one too, or m->rows.  Only
 * those elements of Y are written. */
int quant_matrix_mul(const struct quant_matrix *m, int64_t r0, int64_t r1,
		     const void *xact, size_t xact_stride, int64_t n_tokens,
		     float *y, int64_t y_stride);
/* The original blocks of row R (ggml_row_bytes(type, cols) bytes), read
 * back from the packed copy into DST; for tests.  -1 when unpacked or R is
 * out of range. */
int quant_matrix_unpack_row(const struct quant_matrix *m, int64_t r, void *dst);

/* ---- attention and element-wise helpers (quant_vec.c) ----------------------- */

/* e^x by Cephes' single-precision scheme with fused multiply-adds: every
 * CPU level gives the same bits; error under 2 ulp of the true value; 0
 * below -87.33654 (where e^x < FLT_MIN), e^88 above 88, NaN for NaN. */
float quant_expf(float x);
/* y[i] = quant_expf(x[i]) (Y may be X). */
void quant_exp_at(int level, float *y, const float *x, int64_t n);
/* g[i] = g[i] / (1 + quant_expf(-g[i])) * u[i]: the SiLU-gated product of
 * a SwiGLU feed-forward; bit-identical at every level. */
void quant_silu_mul(float *g, const float *u, int64_t n);
void quant_silu_mul_at(int level, float *g, const float *u, int64_t n);

/* sum of x[i]^2 in double (products exact; only the order of the double
 * additions differs between levels). */
double quant_sum_squares(const float *x, int64_t n);
double quant_sum_squares_at(int level, const float *x, int64_t n);

/* g[i] = f(g[i]) * u[i] for a function f tabulated over fp16 inputs:
 * f(x) = 0 for x <= lo, x for x >= hi, else tab[fp16 bits of x] (x rounded
 * to nearest even); tab has 65536 floats.  Bit-identical at every level. */
void quant_table_mul(float *g, const float *u, int64_t n, const float *tab, float lo, float hi);
void quant_table_mul_at(int level, float *g, const float *u, int64_t n, const float *tab, float lo,
			float hi);

/* Attention of n_q query rows (the query heads sharing one KV head) of
 * n_tok consecutive tokens over one head of an F16 KV cache.  Token r
 * (0 <= r < n_tok; n_tok 0 means 1) sees positions first_r .. P_r - 1,
 * P_r = n_pos + r, first_r = max(0, P_r - window) (window 0: no window),
 * and for each of its query rows q:
 *   s_p  = (f16(q) . k_p) * scale, summed in float
 *   w_p  = f16(e^(s_p - max s) / sum_p e^(s_p - max s)), the sum in double
 *   out  = sum_p w_p v_p, in float
 * which is llama.cpp's CPU computation up to the order of float additions.
 * With sinks (one logit per query row i, or NULL), max s also covers
 * sinks[i] and the sum adds e^(sinks[i] - max s), as ggml's soft_max with
 * sinks (gpt-oss).  Position p's key starts at k + p * stride halves, its value at v + p *
 * stride.  Query row i of token r is at q + r * q_tok_stride + i *
 * q_stride, its output at out + r * out_tok_stride + i * out_stride.
 * scratch holds n_tok * n_q * (n_pos + n_tok - 1) floats.  d is any
 * positive size (multiples of 16 up to 256 take the vector paths; several
 * tokens' rows share every converted K block).  0, or -1 with nothing
 * written when n_pos, n_q, d or n_tok is not positive / negative. */
struct quant_attn_args {
	const uint16_t *k, *v;
	size_t stride;
	int n_pos;
	int d;
	const float *q;
	int64_t q_stride;
	int n_q;
	float scale;
	float *out;
	int64_t out_stride;
	float *scratch;
	int n_tok;
	int64_t q_tok_stride, out_tok_stride;
	int window;
	const float *sinks;
};
int quant_attn_f16(const struct quant_attn_args *a);
int quant_attn_f16_at(int level, const struct quant_attn_args *a);

#endif
