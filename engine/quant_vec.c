/*
 * quant_vec.c - element-wise and attention kernels on float / fp16 vectors
 * (quant.h, "attention and element-wise helpers"): e^x, SiLU-gated
 * products and the attention of a few query heads over one head of an F16
 * KV cache.  A scalar reference first, then AVX-512 (and AVX2 for the
 * element-wise ones) versions with per-function target attributes, picked
 * by quant_level().
 *
 * The table product applies a function tabulated over all fp16 inputs
 * (GELU, as ggml evaluates it) with the F16C conversion and a gather.
 *
 * e^x is Cephes' single-precision scheme: n = round(x log2 e), r = x - n
 * ln 2 in two parts, a degree-6 polynomial, times 2^n.  Every level runs
 * the same operations with fused multiply-adds, so the levels agree bit
 * for bit; the error against the correctly rounded e^x stays under 2 ulp
 * (test_quant measures it).  Below -87.3365 (e^x under FLT_MIN) the result
 * is 0; above 88 it is e^88.
 *
 * Attention (one KV head, a group of query heads): scores s_p = (f16(q) .
 * k_p) * scale in float, softmax with the sum of e^(s - max) in double and
 * the weights rounded to f16 before they weight V, as llama.cpp's CPU
 * path does.  AVX-512: one token reduces 16 positions' partial dot
 * products at once; several tokens multiply 8 query rows against a
 * transposed block of 16 keys; K/V blocks are converted from fp16 once
 * for every head that uses them.  AVX2: a dot product per position with
 * F16C and the vector e^x.
 */
#include "quant.h"

#include <math.h>
#include <string.h>

#include "quant_impl.h"

#define EXP_LO (-87.33654f)
#define EXP_HI 88.0f
/* e^x = 2^n e^r, n = round(x log2 e), r = x - n ln 2 with ln 2 split in a
 * high and a low part, e^r by a degree-7 polynomial: one set of constants
 * for every level, so the levels give the same bits */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI (-0.693359375f)
#define EXP_LN2_LO 2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

/* ---- scalar reference ------------------------------------------------------ */

float quant_expf(float x)
{
	if (!(x >= EXP_LO))
		return x != x ? x : 0.0f;   /* NaN stays NaN */
	if (x > EXP_HI)
		x = EXP_HI;
	float n = nearbyintf(x * EXP_LOG2E);
	float r = fmaf(n, EXP_LN2_HI, x);
	r = fmaf(n, EXP_LN2_LO, r);
	float z = r * r;
	float y = EXP_P0;
	y = fmaf(y, r, EXP_P1);
	y = fmaf(y, r, EXP_P2);
	y = fmaf(y, r, EXP_P3);
	y = fmaf(y, r, EXP_P4);
	y = fmaf(y, r, EXP_P5);
	y = fmaf(y, z, r);
	y = y + 1.0f;
	return ldexpf(y, (int)n);
}

static void silu_mul_ref(float *g, const float *u, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		g[i] = g[i] / (1.0f + quant_expf(-g[i])) * u[i];
}

static void table_mul_ref(float *g, const float *u, int64_t n, const float *tab, float lo, float hi)
{
	for (int64_t i = 0; i < n; i++) {
		const float x = g[i];
		const float y = x <= lo ? 0.0f : x >= hi ? x : tab[quant_fp32_to_fp16(x)];
		g[i] = y * u[i];
	}
}

static double sum_squares_ref(const float *x, int64_t n)
{
	double s = 0.0;
	for (int64_t i = 0; i < n; i++)
		s += (double)x[i] * (double)x[i];
	return s;
}

static float f16r(float x)
{
	return quant_fp16_to_fp32(quant_fp32_to_fp16(x));
}

static void attn_one_ref(const struct quant_attn_args *a)
{
	const int d = a->d;
	for (int i = 0; i < a->n_q; i++) {
		const float *q = a->q + (size_t)i * (size_t)a->q_stride;
		float *out = a->out + (size_t)i * (size_t)a->out_stride;
		float *s = a->scratch + (size_t)i * (size_t)a->n_pos;
		float mx = -INFINITY;
		for (int p = 0; p < a->n_pos; p++) {
			const uint16_t *k = a->k + (size_t)p * a->stride;
			float dot = 0.0f;
			for (int c = 0; c < d; c++)
				dot += f16r(q[c]) * quant_fp16_to_fp32(k[c]);
			s[p] = dot * a->scale;
			mx = s[p] > mx ? s[p] : mx;
		}
		if (a->sinks)
			mx = a->sinks[i] > mx ? a->sinks[i] : mx;
		double sum = 0.0;
		for (int p = 0; p < a->n_pos; p++) {
			s[p] = quant_expf(s[p] - mx);
			sum += s[p];
		}
		if (a->sinks)
			sum += (double)expf(a->sinks[i] - mx);
		const float inv = (float)(1.0 / sum);
		memset(out, 0, (size_t)d * sizeof *out);
		for (int p = 0; p < a->n_pos; p++) {
			const uint16_t *v = a->v + (size_t)p * a->stride;
			const float w = f16r(s[p] * inv);
			for (int c = 0; c < d; c++)
				out[c] += w * quant_fp16_to_fp32(v[c]);
		}
	}
}

/* Token r of a multi-token call as a one-token call (k/v from first_r). */
static struct quant_attn_args attn_token(const struct quant_attn_args *a, int r)
{
	struct quant_attn_args t = *a;
	const int P = a->n_pos + r;
	const int first = a->window > 0 && P > a->window ? P - a->window : 0;
	t.k = a->k + (size_t)first * a->stride;
	t.v = a->v + (size_t)first * a->stride;
	t.n_pos = P - first;
	t.q = a->q + (size_t)r * (size_t)a->q_tok_stride;
	t.out = a->out + (size_t)r * (size_t)a->out_tok_stride;
	t.n_tok = 1;
	t.window = 0;
	return t;
}

static void attn_f16_ref(const struct quant_attn_args *a)
{
	const int nt = a->n_tok > 0 ? a->n_tok : 1;
	for (int r = 0; r < nt; r++) {
		struct quant_attn_args t = attn_token(a, r);
		attn_one_ref(&t);
	}
}

/* ---- x86 ---------------------------------------------------------------------- */

#if QUANT_X86
#include <immintrin.h>

#define T512 "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq"
#define T256 "avx2,fma,f16c"

static inline __attribute__((target(T512), always_inline)) __m512 exp512(__m512 x)
{
	__mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_LO), _CMP_LT_OQ);
	x = _mm512_min_ps(x, _mm512_set1_ps(EXP_HI));
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)),
					_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(EXP_LN2_HI), x);
	r = _mm512_fmadd_ps(n, _mm512_set1_ps(EXP_LN2_LO), r);
	__m512 z = _mm512_mul_ps(r, r);
	__m512 y = _mm512_set1_ps(EXP_P0);
	y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P1));
	y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P2));
	y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P3));
	y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P4));
	y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P5));
	y = _mm512_fmadd_ps(y, z, r);
	y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
	y = _mm512_scalef_ps(y, n);
	/* below the range: 0, except NaN which passes through */
	__mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
	y = _mm512_mask_mov_ps(y, tiny, _mm512_setzero_ps());
	return _mm512_mask_mov_ps(y, nan, x);
}

__attribute__((target(T512))) static void silu_mul_avx512(float *g, const float *u, int64_t n)
{
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512 x = _mm512_loadu_ps(g + i);
		__m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
		__m512 s = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
		_mm512_storeu_ps(g + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
	}
	silu_mul_ref(g + i, u + i, n - i);
}

/* 16 vectors -> one vector of their 16 horizontal sums */
static inline __attribute__((target(T512), always_inline)) __m512 reduce16(const __m512 v[16])
{
	__m512 s2[8], s4[4];
	#pragma GCC unroll 16
	for (int i = 0; i < 8; i++)
		s2[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
				      _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
	#pragma GCC unroll 16
	for (int i = 0; i < 4; i++)
		s4[i] = _mm512_add_ps(_mm512_shuffle_ps(s2[2 * i], s2[2 * i + 1], 0x44),
				      _mm512_shuffle_ps(s2[2 * i], s2[2 * i + 1], 0xee));
	/* s4[g], 128-bit lane L: partial sums over lane L of positions 4g..4g+3 */
	__m512 w01 = _mm512_add_ps(_mm512_shuffle_f32x4(s4[0], s4[1], 0x44),
				   _mm512_shuffle_f32x4(s4[0], s4[1], 0xee));
	__m512 w23 = _mm512_add_ps(_mm512_shuffle_f32x4(s4[2], s4[3], 0x44),
				   _mm512_shuffle_f32x4(s4[2], s4[3], 0xee));
	return _mm512_add_ps(_mm512_shuffle_f32x4(w01, w23, 0x88), _mm512_shuffle_f32x4(w01, w23, 0xdd));
}

static inline __attribute__((target(T512), always_inline)) __m512 ld_h(const uint16_t *p)
{
	return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

#define ATTN_KF_MAX 256   /* head sizes up to this stage K rows as floats */

/* Softmax of one head's scores in place: s = f16(e^(s - max) / sum). */
static inline __attribute__((target(T512), always_inline)) void softmax_f16w(float *s, int np, __m512 vmax,
										   const float *sink)
{
	float mxs = _mm512_reduce_max_ps(vmax);
	if (sink)
		mxs = *sink > mxs ? *sink : mxs;
	const __m512 mx = _mm512_set1_ps(mxs);
	__m512d sum0 = _mm512_setzero_pd(), sum1 = _mm512_setzero_pd();
	for (int p0 = 0; p0 < np; p0 += 16) {
		const int cnt = np - p0 < 16 ? np - p0 : 16;
		const __mmask16 m = (__mmask16)((1u << cnt) - 1);
		__m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + p0), mx));
		e = _mm512_maskz_mov_ps(m, e);
		_mm512_mask_storeu_ps(s + p0, m, e);
		sum0 = _mm512_add_pd(sum0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
		sum1 = _mm512_add_pd(sum1, _mm512_cvtps_pd(_mm256_castpd_ps(
			_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
	}
	double sum = _mm512_reduce_add_pd(_mm512_add_pd(sum0, sum1));
	if (sink)
		sum += (double)expf(*sink - mxs);
	const __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
	for (int p0 = 0; p0 < np; p0 += 16) {
		const int cnt = np - p0 < 16 ? np - p0 : 16;
		const __mmask16 m = (__mmask16)((1u << cnt) - 1);
		__m512 w = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + p0), inv);
		w = _mm512_cvtph_ps(_mm512_cvtps_ph(w, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
		_mm512_mask_storeu_ps(s + p0, m, w);
	}
}

/* Heads i0 .. i0+nh-1 (nh <= 4) of the group: K and V rows are converted
 * from fp16 once per block and used by every head of the block. */
__attribute__((target(T512))) static void attn_heads_avx512(const struct quant_attn_args *a, int i0, int nh)
{
	const int d = a->d, np = a->n_pos, nc = d / 16;
	const __m512 scale = _mm512_set1_ps(a->scale);
	float kf[16 * ATTN_KF_MAX];
	const int stage = d <= ATTN_KF_MAX;
	__m512 vmax[4];

	#pragma GCC unroll 16
	for (int i = 0; i < nh; i++) {
		const float *q = a->q + (size_t)(i0 + i) * (size_t)a->q_stride;
		float *out = a->out + (size_t)(i0 + i) * (size_t)a->out_stride;
		/* q rounded to f16, kept in out until the V pass */
		#pragma GCC unroll 16
		for (int c = 0; c < nc; c++)
			_mm512_storeu_ps(out + 16 * c, _mm512_cvtph_ps(_mm512_cvtps_ph(
				_mm512_loadu_ps(q + 16 * c), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
		vmax[i] = _mm512_set1_ps(-INFINITY);
	}
	for (int p0 = 0; p0 < np; p0 += 16) {
		const int cnt = np - p0 < 16 ? np - p0 : 16;
		const __mmask16 m = (__mmask16)((1u << cnt) - 1);
		if (stage)
			#pragma GCC unroll 16
			for (int j = 0; j < cnt; j++) {
				const uint16_t *k = a->k + (size_t)(p0 + j) * a->stride;
				#pragma GCC unroll 16
				for (int c = 0; c < nc; c++)
					_mm512_storeu_ps(kf + j * d + 16 * c, ld_h(k + 16 * c));
			}
		#pragma GCC unroll 16
		for (int i = 0; i < nh; i++) {
			const float *qr = a->out + (size_t)(i0 + i) * (size_t)a->out_stride;
			float *s = a->scratch + (size_t)(i0 + i) * (size_t)np;
			__m512 acc[16];
			#pragma GCC unroll 16
			for (int j = 0; j < 16; j++) {
				acc[j] = _mm512_setzero_ps();
				if (j >= cnt)
					continue;
				if (stage)
					#pragma GCC unroll 16
					for (int c = 0; c < nc; c++)
						acc[j] = _mm512_fmadd_ps(_mm512_loadu_ps(qr + 16 * c),
									 _mm512_loadu_ps(kf + j * d + 16 * c), acc[j]);
				else
					#pragma GCC unroll 16
					for (int c = 0; c < nc; c++)
						acc[j] = _mm512_fmadd_ps(_mm512_loadu_ps(qr + 16 * c),
									 ld_h(a->k + (size_t)(p0 + j) * a->stride + 16 * c), acc[j]);
			}
			__m512 sc = _mm512_mul_ps(reduce16(acc), scale);
			_mm512_mask_storeu_ps(s + p0, m, sc);
			vmax[i] = _mm512_mask_max_ps(vmax[i], m, vmax[i], sc);
		}
	}
	#pragma GCC unroll 16
	for (int i = 0; i < nh; i++)
		softmax_f16w(a->scratch + (size_t)(i0 + i) * (size_t)np, np, vmax[i],
			     a->sinks ? a->sinks + i0 + i : NULL);
	/* out_i = sum_p w_ip v_p: 4 chunks of 16 values at a time, each V chunk
	 * converted once for the nh heads */
	const float *w[4] = {NULL, NULL, NULL, NULL};
	#pragma GCC unroll 16
	for (int i = 0; i < nh; i++)
		w[i] = a->scratch + (size_t)(i0 + i) * (size_t)np;
	for (int c0 = 0; c0 < nc; c0 += 4) {
		const int cn = nc - c0 < 4 ? nc - c0 : 4;
		__m512 o[4][4];
		#pragma GCC unroll 16
		for (int i = 0; i < 4; i++)
			#pragma GCC unroll 16
			for (int c = 0; c < 4; c++)
				o[i][c] = _mm512_setzero_ps();
		for (int p = 0; p < np; p++) {
			const uint16_t *v = a->v + (size_t)p * a->stride + 16 * c0;
			__m512 vc[4];
			#pragma GCC unroll 16
			for (int c = 0; c < 4; c++)
				vc[c] = c < cn ? ld_h(v + 16 * c) : _mm512_setzero_ps();
			#pragma GCC unroll 16
			for (int i = 0; i < 4; i++) {
				if (i >= nh)
					break;
				const __m512 wi = _mm512_set1_ps(w[i][p]); /* i < nh: set */
				#pragma GCC unroll 16
				for (int c = 0; c < 4; c++)
					o[i][c] = _mm512_fmadd_ps(wi, vc[c], o[i][c]);
			}
		}
		#pragma GCC unroll 16
		for (int i = 0; i < nh; i++) {
			float *out = a->out + (size_t)(i0 + i) * (size_t)a->out_stride;
			#pragma GCC unroll 16
			for (int c = 0; c < cn; c++)
				_mm512_storeu_ps(out + 16 * (c0 + c), o[i][c]);
		}
	}
}

__attribute__((target(T512))) static void attn_one_avx512(const struct quant_attn_args *a)
{
	for (int i0 = 0; i0 < a->n_q; i0 += 4)
		attn_heads_avx512(a, i0, a->n_q - i0 < 4 ? a->n_q - i0 : 4);
}

/* In place: r[m][j] = old r[j][m] (16 x 16 floats). */
static inline __attribute__((target(T512), always_inline)) void transpose16(__m512 r[16])
{
	__m512 t[16], u[16];
#pragma GCC unroll 8
	for (int i = 0; i < 8; i++) {
		t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
	}
	/* u[4i + k], 128-bit lane L: column 4L + k of rows 4i..4i+3 */
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
		u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
		u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
		u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
	}
	/* t[k] (k < 4): columns k and k + 8 of rows 0..7; t[k + 4]: columns
	 * k + 4 and k + 12; t[8..15] the same for rows 8..15 */
#pragma GCC unroll 4
	for (int k = 0; k < 4; k++) {
		t[k] = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88);
		t[k + 4] = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xdd);
		t[k + 8] = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
		t[k + 12] = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xdd);
	}
#pragma GCC unroll 8
	for (int k = 0; k < 8; k++) {
		r[k] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0x88);
		r[k + 8] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0xdd);
	}
}

/* Several tokens: q.k for 8 query rows (of any tokens) at a time against
 * a block of 16 positions held transposed (kt[c][j] = k of position p0+j,
 * component c), so each FMA gives 16 positions' partial sums of one row
 * and no horizontal reduction is needed; then softmax per row and the V
 * sums per token as in the one-token path. */
__attribute__((target(T512))) static void attn_multi_avx512(const struct quant_attn_args *a)
{
	const int d = a->d, nc = d / 16, nq = a->n_q, nt = a->n_tok;
	const int rows = nt * nq, pmax = a->n_pos + nt - 1;
	const __m512 scale = _mm512_set1_ps(a->scale);
	float kt[16 * ATTN_KF_MAX];
	int first0 = a->window > 0 && a->n_pos > a->window ? a->n_pos - a->window : 0;

	/* rounded queries into the output rows (kept there until the V pass) */
	for (int r = 0; r < nt; r++)
		for (int i = 0; i < nq; i++) {
			const float *q = a->q + (size_t)r * (size_t)a->q_tok_stride + (size_t)i * (size_t)a->q_stride;
			float *o = a->out + (size_t)r * (size_t)a->out_tok_stride + (size_t)i * (size_t)a->out_stride;
			for (int c = 0; c < nc; c++)
				_mm512_storeu_ps(o + 16 * c, _mm512_cvtph_ps(_mm512_cvtps_ph(
					_mm512_loadu_ps(q + 16 * c), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
		}
	for (int p0 = first0 & ~15; p0 < pmax; p0 += 16) {
		const int cnt = pmax - p0 < 16 ? pmax - p0 : 16;
		/* 16 rows x 16 components at a time, converted and transposed */
		for (int c = 0; c < nc; c++) {
			__m512 r[16];
#pragma GCC unroll 16
			for (int j = 0; j < 16; j++)
				r[j] = ld_h(a->k + (size_t)(p0 + (j < cnt ? j : 0)) * a->stride + 16 * c);
			transpose16(r);
#pragma GCC unroll 16
			for (int m = 0; m < 16; m++)
				_mm512_storeu_ps(kt + 16 * (16 * c + m), r[m]);
		}
		for (int r0 = 0; r0 < rows; r0 += 8) {
			const int nr = rows - r0 < 8 ? rows - r0 : 8;
			const float *qr[8];
			__mmask16 m[8];
			int any = 0;
#pragma GCC unroll 8
			for (int rr = 0; rr < 8; rr++) {
				const int row = r0 + (rr < nr ? rr : 0), r = row / nq, i = row % nq;
				const int P = a->n_pos + r;
				const int first = a->window > 0 && P > a->window ? P - a->window : 0;
				int lo = first - p0, hi = P - p0;
				lo = lo < 0 ? 0 : lo;
				hi = hi > 16 ? 16 : hi;
				m[rr] = rr < nr && hi > lo ? (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1)) : 0;
				any |= m[rr];
				qr[rr] = a->out + (size_t)r * (size_t)a->out_tok_stride + (size_t)i * (size_t)a->out_stride;
			}
			if (!any)
				continue;
			__m512 acc[8];
#pragma GCC unroll 8
			for (int rr = 0; rr < 8; rr++)
				acc[rr] = _mm512_setzero_ps();
			for (int c = 0; c < d; c++) {
				const __m512 kc = _mm512_loadu_ps(kt + 16 * c);
#pragma GCC unroll 8
				for (int rr = 0; rr < 8; rr++)
					acc[rr] = _mm512_fmadd_ps(_mm512_set1_ps(qr[rr][c]), kc, acc[rr]);
			}
#pragma GCC unroll 8
			for (int rr = 0; rr < 8; rr++)
				if (m[rr])
					_mm512_mask_storeu_ps(a->scratch + (size_t)(r0 + rr) * (size_t)pmax + p0, m[rr],
							      _mm512_mul_ps(acc[rr], scale));
		}
	}
	/* softmax per row over its positions, then V per token */
	for (int r = 0; r < nt; r++) {
		const int P = a->n_pos + r;
		const int first = a->window > 0 && P > a->window ? P - a->window : 0;
		const int np = P - first;
		for (int i = 0; i < nq; i++) {
			float *s = a->scratch + (size_t)(r * nq + i) * (size_t)pmax + first;
			__m512 vmax = _mm512_set1_ps(-INFINITY);
			for (int p = 0; p < np; p += 16) {
				const int c = np - p < 16 ? np - p : 16;
				vmax = _mm512_mask_max_ps(vmax, (__mmask16)((1u << c) - 1), vmax,
							  _mm512_maskz_loadu_ps((__mmask16)((1u << c) - 1), s + p));
			}
			softmax_f16w(s, np, vmax, a->sinks ? a->sinks + i : NULL);
		}
		/* out rows of this token = sum_p w p v_p (4 heads x 4 chunks at a time) */
		for (int i0 = 0; i0 < nq; i0 += 4) {
			const int nh = nq - i0 < 4 ? nq - i0 : 4;
			const float *w[4] = {NULL, NULL, NULL, NULL};
			for (int i = 0; i < nh; i++)
				w[i] = a->scratch + (size_t)(r * nq + i0 + i) * (size_t)pmax + first;
			for (int c0 = 0; c0 < nc; c0 += 4) {
				const int cn = nc - c0 < 4 ? nc - c0 : 4;
				__m512 o[4][4];
#pragma GCC unroll 4
				for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
					for (int c = 0; c < 4; c++)
						o[i][c] = _mm512_setzero_ps();
				for (int p = 0; p < np; p++) {
					const uint16_t *v = a->v + (size_t)(first + p) * a->stride + 16 * c0;
					__m512 vc[4];
#pragma GCC unroll 4
					for (int c = 0; c < 4; c++)
						vc[c] = c < cn ? ld_h(v + 16 * c) : _mm512_setzero_ps();
#pragma GCC unroll 4
					for (int i = 0; i < 4; i++) {
						if (i >= nh)
							break;
						const __m512 wi = _mm512_set1_ps(w[i][p]);
#pragma GCC unroll 4
						for (int c = 0; c < 4; c++)
							o[i][c] = _mm512_fmadd_ps(wi, vc[c], o[i][c]);
					}
				}
				for (int i = 0; i < nh; i++) {
					float *out = a->out + (size_t)r * (size_t)a->out_tok_stride +
						     (size_t)(i0 + i) * (size_t)a->out_stride;
					for (int c = 0; c < cn; c++)
						_mm512_storeu_ps(out + 16 * (c0 + c), o[i][c]);
				}
			}
		}
	}
}

__attribute__((target(T512))) static void attn_f16_avx512(const struct quant_attn_args *a)
{
	const int nt = a->n_tok > 0 ? a->n_tok : 1;
	if (nt * a->n_q >= 8 && a->d <= ATTN_KF_MAX) {
		attn_multi_avx512(a);
		return;
	}
	for (int r = 0; r < nt; r++) {
		struct quant_attn_args t = attn_token(a, r);
		attn_one_avx512(&t);
	}
}

static inline __attribute__((target(T256), always_inline)) __m256 exp256(__m256 x)
{
	__m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ);
	__m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
	__m256 xc = _mm256_min_ps(x, _mm256_set1_ps(EXP_HI));
	xc = _mm256_max_ps(xc, _mm256_set1_ps(EXP_LO));
	__m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(EXP_LOG2E)),
				   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), xc);
	r = _mm256_fmadd_ps(n, _mm256_set1_ps(EXP_LN2_LO), r);
	__m256 z = _mm256_mul_ps(r, r);
	__m256 y = _mm256_set1_ps(EXP_P0);
	y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P1));
	y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P2));
	y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P3));
	y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P4));
	y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P5));
	y = _mm256_fmadd_ps(y, z, r);
	y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
	/* 2^n for n in [-126, 127]: the exponent field directly */
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
	y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
	y = _mm256_andnot_ps(tiny, y);
	return _mm256_blendv_ps(y, x, nan);
}

__attribute__((target(T256))) static void silu_mul_avx2(float *g, const float *u, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 x = _mm256_loadu_ps(g + i);
		__m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), x));
		__m256 s = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
		_mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
	}
	silu_mul_ref(g + i, u + i, n - i);
}

__attribute__((target(T512))) static void table_mul_avx512(float *g, const float *u, int64_t n,
							       const float *tab, float lo, float hi)
{
	const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512 x = _mm512_loadu_ps(g + i);
		__m512i h = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
		__m512 y = _mm512_i32gather_ps(h, tab, 4);
		y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, vhi, _CMP_GE_OQ), x);
		y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, vlo, _CMP_LE_OQ), _mm512_setzero_ps());
		_mm512_storeu_ps(g + i, _mm512_mul_ps(y, _mm512_loadu_ps(u + i)));
	}
	table_mul_ref(g + i, u + i, n - i, tab, lo, hi);
}

__attribute__((target(T512))) static double sum_squares_avx512(const float *x, int64_t n)
{
	__m512d a0 = _mm512_setzero_pd(), a1 = a0;
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512d lo = _mm512_cvtps_pd(_mm256_loadu_ps(x + i)), hi = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
		a0 = _mm512_fmadd_pd(lo, lo, a0);
		a1 = _mm512_fmadd_pd(hi, hi, a1);
	}
	return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1)) + sum_squares_ref(x + i, n - i);
}

__attribute__((target(T512))) static void exp_avx512(float *y, const float *x, int64_t n)
{
	int64_t i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, exp512(_mm512_loadu_ps(x + i)));
	for (; i < n; i++)
		y[i] = quant_expf(x[i]);
}

static inline __attribute__((target(T256), always_inline)) float hsum256(__m256 v)
{
	__m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
	r = _mm_add_ps(r, _mm_movehl_ps(r, r));
	r = _mm_add_ss(r, _mm_movehdup_ps(r));
	return _mm_cvtss_f32(r);
}

static inline __attribute__((target(T256), always_inline)) __m256 ld_h8(const uint16_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __attribute__((target(T256), always_inline)) __m256 round_h8(__m256 x)
{
	return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* One token, AVX2 + F16C: a dot product per position, the vector e^x,
 * V rows converted once per head (d a multiple of 8). */
__attribute__((target(T256))) static void attn_one_avx2(const struct quant_attn_args *a)
{
	const int d = a->d, np = a->n_pos;
	for (int i = 0; i < a->n_q; i++) {
		const float *q = a->q + (size_t)i * (size_t)a->q_stride;
		float *out = a->out + (size_t)i * (size_t)a->out_stride;
		float *s = a->scratch + (size_t)i * (size_t)np;
		for (int c = 0; c < d; c += 8)
			_mm256_storeu_ps(out + c, round_h8(_mm256_loadu_ps(q + c)));
		float mx = -INFINITY;
		for (int p = 0; p < np; p++) {
			const uint16_t *k = a->k + (size_t)p * a->stride;
			__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
			int c = 0;
			for (; c + 16 <= d; c += 16) {
				acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(out + c), ld_h8(k + c), acc0);
				acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(out + c + 8), ld_h8(k + c + 8), acc1);
			}
			if (c < d)
				acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(out + c), ld_h8(k + c), acc0);
			s[p] = hsum256(_mm256_add_ps(acc0, acc1)) * a->scale;
			mx = s[p] > mx ? s[p] : mx;
		}
		if (a->sinks)
			mx = a->sinks[i] > mx ? a->sinks[i] : mx;
		double sum = 0.0;
		int p = 0;
		for (; p + 8 <= np; p += 8) {
			__m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + p), _mm256_set1_ps(mx)));
			_mm256_storeu_ps(s + p, e);
		}
		for (; p < np; p++)
			s[p] = quant_expf(s[p] - mx);
		for (p = 0; p < np; p++)
			sum += s[p];
		if (a->sinks)
			sum += (double)expf(a->sinks[i] - mx);
		const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
		for (p = 0; p + 8 <= np; p += 8)
			_mm256_storeu_ps(s + p, round_h8(_mm256_mul_ps(_mm256_loadu_ps(s + p), inv)));
		for (; p < np; p++)
			s[p] = f16r(s[p] * (float)(1.0 / sum));
		for (int c0 = 0; c0 < d; c0 += 32) {
			const int cn = d - c0 < 32 ? (d - c0) / 8 : 4;
			__m256 o[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
			for (p = 0; p < np; p++) {
				const uint16_t *v = a->v + (size_t)p * a->stride + c0;
				const __m256 w = _mm256_set1_ps(s[p]);
				for (int c = 0; c < cn; c++)
					o[c] = _mm256_fmadd_ps(w, ld_h8(v + 8 * c), o[c]);
			}
			for (int c = 0; c < cn; c++)
				_mm256_storeu_ps(out + c0 + 8 * c, o[c]);
		}
	}
}

__attribute__((target(T256))) static void exp_avx2(float *y, const float *x, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, exp256(_mm256_loadu_ps(x + i)));
	for (; i < n; i++)
		y[i] = quant_expf(x[i]);
}
#endif

/* ---- dispatch ------------------------------------------------------------------- */

void quant_exp_at(int level, float *y, const float *x, int64_t n)
{
#if QUANT_X86
	if (level >= QUANT_LEVEL_AVX512 && quant_level_detect() >= QUANT_LEVEL_AVX512) {
		exp_avx512(y, x, n);
		return;
	}
	if (level >= QUANT_LEVEL_AVX2 && quant_level_detect() >= QUANT_LEVEL_AVX2) {
		exp_avx2(y, x, n);
		return;
	}
#endif
	(void)level;
	for (int64_t i = 0; i < n; i++)
		y[i] = quant_expf(x[i]);
}

void quant_silu_mul_at(int level, float *g, const float *u, int64_t n)
{
#if QUANT_X86
	if (level >= QUANT_LEVEL_AVX512 && quant_level_detect() >= QUANT_LEVEL_AVX512) {
		silu_mul_avx512(g, u, n);
		return;
	}
	if (level >= QUANT_LEVEL_AVX2 && quant_level_detect() >= QUANT_LEVEL_AVX2) {
		silu_mul_avx2(g, u, n);
		return;
	}
#endif
	(void)level;
	silu_mul_ref(g, u, n);
}

void quant_table_mul_at(int level, float *g, const float *u, int64_t n, const float *tab, float lo,
			float hi)
{
#if QUANT_X86
	if (level >= QUANT_LEVEL_AVX512 && quant_level_detect() >= QUANT_LEVEL_AVX512) {
		table_mul_avx512(g, u, n, tab, lo, hi);
		return;
	}
#endif
	(void)level;
	table_mul_ref(g, u, n, tab, lo, hi);
}

double quant_sum_squares_at(int level, const float *x, int64_t n)
{
#if QUANT_X86
	if (level >= QUANT_LEVEL_AVX512 && quant_level_detect() >= QUANT_LEVEL_AVX512)
		return sum_squares_avx512(x, n);
#endif
	(void)level;
	return sum_squares_ref(x, n);
}

double quant_sum_squares(const float *x, int64_t n)
{
	return quant_sum_squares_at(quant_level(), x, n);
}

void quant_table_mul(float *g, const float *u, int64_t n, const float *tab, float lo, float hi)
{
	quant_table_mul_at(quant_level(), g, u, n, tab, lo, hi);
}

int quant_attn_f16_at(int level, const struct quant_attn_args *a)
{
	if (a->n_pos < 1 || a->n_q < 1 || a->d < 1 || a->n_tok < 0 || a->window < 0)
		return -1;
#if QUANT_X86
	if (level >= QUANT_LEVEL_AVX512 && quant_level_detect() >= QUANT_LEVEL_AVX512 && a->d % 16 == 0) {
		attn_f16_avx512(a);
		return 0;
	}
	if (level >= QUANT_LEVEL_AVX2 && quant_level_detect() >= QUANT_LEVEL_AVX2 && a->d % 8 == 0) {
		const int nt = a->n_tok > 0 ? a->n_tok : 1;
		for (int r = 0; r < nt; r++) {
			struct quant_attn_args t = attn_token(a, r);
			attn_one_avx2(&t);
		}
		return 0;
	}
#endif
	(void)level;
	attn_f16_ref(a);
	return 0;
}

void quant_silu_mul(float *g, const float *u, int64_t n)
{
	quant_silu_mul_at(quant_level(), g, u, n);
}

int quant_attn_f16(const struct quant_attn_args *a)
{
	return quant_attn_f16_at(quant_level(), a);
}
