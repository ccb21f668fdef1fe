/*
 * quant_avx512.c - the AVX-512 level (F, BW, VL, VNNI; 256-bit vectors) of the quant kernels.
 *
 * The kernels themselves live in quant_x86.h, shared with the AVX2
 * level; this file instantiates them with per-function target attributes
 * (the rest of the build stays plain x86-64) and lists them per type.  On
 * other architectures it provides an empty table.
 */
#include "quant_impl.h"

#include "gguf.h"

#if QUANT_X86

#define QX_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
#define QX(name) name##_avx512
#define QX_VNNI 1
#include "quant_x86.h"

/* ---- F16 / BF16 rows with 512-bit register tiles ------------------------- */
/*
 * Half-precision weights stay in their rows: MR rows x NR tokens of
 * accumulators, each FMA 16 products along the row, so a converted block
 * of 16 weights serves NR tokens and a converted block of activations MR
 * rows; one horizontal sum per (row, token) at the end of the row.  Used
 * for prefill of unpacked half-precision matrices (BF16 always; F16 is
 * packed where quant_matrix_pack is used); one-token products stay on the
 * row-at-a-time dot kernels, which stream better than several rows at once.
 */
#define HT_TGT __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
#define HT_INL static inline __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq"), always_inline))

HT_INL __m512 ht_load(int bf, const uint8_t *p, __mmask16 m)
{
	__m256i h = _mm256_maskz_loadu_epi16(m, p);
	if (bf)
		return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
	return _mm512_cvtph_ps(h);
}

HT_INL void ht_tile(const int bf, const int MR, const int NR, const uint8_t *w, size_t ws,
		    const uint8_t *x, size_t xs, int64_t n, float *y, int64_t ys)
{
	/* fixed sizes (not [MR][NR], a VLA the compiler keeps in memory) */
	__m512 acc[8][6];
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
		for (int j = 0; j < NR; j++)
			acc[i][j] = _mm512_setzero_ps();
	for (int64_t k = 0; k < n; k += 16) {
		const __mmask16 m = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
		__m512 a[8];
#pragma GCC unroll 8
		for (int i = 0; i < MR; i++)
			a[i] = ht_load(bf, w + (size_t)i * ws + 2 * (size_t)k, m);
#pragma GCC unroll 8
		for (int j = 0; j < NR; j++) {
			const __m512 b = ht_load(bf, x + (size_t)j * xs + 2 * (size_t)k, m);
#pragma GCC unroll 8
			for (int i = 0; i < MR; i++)
				acc[i][j] = _mm512_fmadd_ps(a[i], b, acc[i][j]);
		}
	}
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
		for (int j = 0; j < NR; j++)
			y[j * ys + i] = _mm512_reduce_add_ps(acc[i][j]);
}

HT_INL void ht_rows(const int bf, const int MR, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
		    int64_t nt, int64_t n, float *y, int64_t ys)
{
	int64_t t = 0;
	for (; t + 6 <= nt; t += 6)
		ht_tile(bf, MR, 6, w, ws, x + (size_t)t * xs, xs, n, y + t * ys, ys);
	switch (nt - t) {
	case 5: ht_tile(bf, MR, 5, w, ws, x + (size_t)t * xs, xs, n, y + t * ys, ys); break;
	case 4: ht_tile(bf, MR, 4, w, ws, x + (size_t)t * xs, xs, n, y + t * ys, ys); break;
	case 3: ht_tile(bf, MR, 3, w, ws, x + (size_t)t * xs, xs, n, y + t * ys, ys); break;
	case 2: ht_tile(bf, MR, 2, w, ws, x + (size_t)t * xs, xs, n, y + t * ys, ys); break;
	case 1: ht_tile(bf, MR, 1, w, ws, x + (size_t)t * xs, xs, n, y + t * ys, ys); break;
	default: break;
	}
}

#define HT_KERNELS(sfx, bf)                                                                       \
	HT_TGT static void matmul_##sfx##_t512(const void *w, size_t ws, int64_t r0, int64_t r1,   \
					      const void *x, size_t xs, int64_t nt, int64_t n,     \
					      float *y, int64_t ys)                                \
	{                                                                                         \
		const uint8_t *wb = w;                                                            \
		int64_t r = r0;                                                                   \
		for (; r + 4 <= r1; r += 4)                                                       \
			ht_rows(bf, 4, wb + (size_t)r * ws, ws, x, xs, nt, n, y + r, ys);         \
		for (; r < r1; r++)                                                               \
			ht_rows(bf, 1, wb + (size_t)r * ws, ws, x, xs, nt, n, y + r, ys);         \
	}

HT_KERNELS(f16, 0)
HT_KERNELS(bf16, 1)

#define KERN(sfx, act) { NULL, act, QX(dot_##sfx), NULL, QX(matmul_##sfx) }

static const struct quant_kern k_q4_0 = KERN(q4_0, QX(act_q8_0));
static const struct quant_kern k_q4_1 = KERN(q4_1, QX(act_q8_1));
static const struct quant_kern k_q5_0 = KERN(q5_0, QX(act_q8_0));
static const struct quant_kern k_q5_1 = KERN(q5_1, QX(act_q8_1));
static const struct quant_kern k_q8_0 = KERN(q8_0, QX(act_q8_0));
static const struct quant_kern k_q2_k = KERN(q2_k, QX(act_q8_k));
static const struct quant_kern k_q3_k = KERN(q3_k, QX(act_q8_k));
static const struct quant_kern k_q4_k = KERN(q4_k, QX(act_q8_k));
static const struct quant_kern k_q5_k = KERN(q5_k, QX(act_q8_k));
static const struct quant_kern k_q6_k = KERN(q6_k, QX(act_q8_k));
static const struct quant_kern k_f32 = { NULL, NULL, QX(dot_f32), NULL, NULL };
static const struct quant_kern k_f16 = { QX(dequant_f16), QX(act_f16), QX(dot_f16), NULL, matmul_f16_t512 };
static const struct quant_kern k_bf16 = { NULL, NULL, QX(dot_bf16), NULL, matmul_bf16_t512 };

/* y = float(fp16(x)), the activations of packed F16 matrices */
HT_TGT void quant_round_f16_avx512(const float *x, float *y, int64_t n)
{
	int64_t i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(x + i),
								       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
	for (; i < n; i++)
		y[i] = quant_fp16_to_fp32(quant_fp32_to_fp16(x[i]));
}

const struct quant_kern *quant_kern_avx512(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F32: return &k_f32;
	case GGML_TYPE_F16: return &k_f16;
	case GGML_TYPE_BF16: return &k_bf16;
	case GGML_TYPE_Q4_0: return &k_q4_0;
	case GGML_TYPE_Q4_1: return &k_q4_1;
	case GGML_TYPE_Q5_0: return &k_q5_0;
	case GGML_TYPE_Q5_1: return &k_q5_1;
	case GGML_TYPE_Q8_0: return &k_q8_0;
	case GGML_TYPE_Q2_K: return &k_q2_k;
	case GGML_TYPE_Q3_K: return &k_q3_k;
	case GGML_TYPE_Q4_K: return &k_q4_k;
	case GGML_TYPE_Q5_K: return &k_q5_k;
	case GGML_TYPE_Q6_K: return &k_q6_k;
	default: return NULL;
	}
}

#else

void quant_round_f16_avx512(const float *x, float *y, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = quant_fp16_to_fp32(quant_fp32_to_fp16(x[i]));
}


const struct quant_kern *quant_kern_avx512(uint32_t type)
{
	(void)type;
	return NULL;
}

#endif
