/*
 * gdn.c - Gated DeltaNet kernels (see gdn.h), numerically as llama.cpp's
 * CPU graph for qwen35: ggml_ssm_conv then ggml_silu, the L2 norm as
 * rms_norm(eps / n) / sqrt(n), softplus with ggml's cut at 20, and the
 * token-by-token form of the delta rule that ggml's fused
 * gated_delta_net runs (decay, S k, the delta, the rank-1 update, S q
 * scaled by 1/sqrt(S)).
 *
 * Prefill runs the same recurrence token by token, not the chunked
 * (parallel) form GPUs use: on a CPU the recurrence is a few passes over
 * an S x S matrix that stays in L1/L2 per head, ~6 S^2 flops per head and
 * token, a few percent of the layer's matrix products, and the value heads
 * already give the pool its parallelism.  The row pass is AVX2/FMA where
 * the CPU has it (chosen at run time), plain C otherwise.
 */
#include "gdn.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GDN_X86 1
#endif

static float silu(float x)
{
	return x / (1.0f + expf(-x));
}

void gdn_conv(const struct gdn_dims *d, float *x, int T, const float *w, const float *st_in, float *st_out,
	      int c0, int c1)
{
	const int K = d->K, C = d->C;
	float win[64 + 1];   /* K <= 64 (model.c) */
	for (int c = c0; c < c1; c++) {
		const float *wc = w + (size_t)c * (size_t)K;
		/* the window of the last K-1 inputs, then the current one */
		memcpy(win, st_in + (size_t)c * (size_t)(K - 1), (size_t)(K - 1) * sizeof(float));
		for (int t = 0; t < T; t++) {
			float *xp = x + (size_t)t * (size_t)C + c;
			win[K - 1] = *xp;
			float sum = 0.0f;
			for (int k = 0; k < K; k++)
				sum += win[k] * wc[k];
			*xp = silu(sum);
			memmove(win, win + 1, (size_t)(K - 1) * sizeof(float));
		}
		memcpy(st_out + (size_t)c * (size_t)(K - 1), win, (size_t)(K - 1) * sizeof(float));
	}
}

void shortconv(int E, int L, float *bcx, int T, const float *w, const float *st_in, float *st_out, int c0,
	       int c1)
{
	float win[64 + 1];   /* L <= 64 (model.c) */
	for (int c = c0; c < c1; c++) {
		const float *wc = w + (size_t)c * (size_t)L;
		memcpy(win, st_in + (size_t)c * (size_t)(L - 1), (size_t)(L - 1) * sizeof(float));
		for (int t = 0; t < T; t++) {
			float *row = bcx + (size_t)t * (size_t)(3 * E);
			win[L - 1] = row[c] * row[2 * E + c];
			float sum = 0.0f;
			for (int k = 0; k < L; k++)
				sum += win[k] * wc[k];
			row[c] = row[E + c] * sum;
			memmove(win, win + 1, (size_t)(L - 1) * sizeof(float));
		}
		memcpy(st_out + (size_t)c * (size_t)(L - 1), win, (size_t)(L - 1) * sizeof(float));
	}
}

static void l2norm(float *v, int n, float eps)
{
	double sum = 0.0;
	for (int i = 0; i < n; i++)
		sum += (double)(v[i] * v[i]);
	/* rms_norm with eps / n, then 1/sqrt(n): the ggml graph's rounding */
	const float mean = (float)(sum / n);
	const float sc = 1.0f / sqrtf(mean + eps / (float)n);
	const float post = 1.0f / sqrtf((float)n);
	for (int i = 0; i < n; i++)
		v[i] = v[i] * sc * post;
}

void gdn_prep(const struct gdn_dims *d, float *xt, float *alpha, float *beta, const float *dt, const float *a,
	      float eps)
{
	const int S = d->S;
	for (int h = 0; h < 2 * d->HK; h++)   /* q heads then k heads */
		l2norm(xt + (size_t)h * (size_t)S, S, eps);
	for (int h = 0; h < d->HV; h++) {
		const float u = alpha[h] + dt[h];
		const float sp = u > 20.0f ? u : logf(1.0f + expf(u));
		alpha[h] = sp * a[h];
		beta[h] = 1.0f / (1.0f + expf(-beta[h]));
	}
}

/* One token for one head: M = src * eg; per row j, d = (v_j - M_j.k)
 * beta, M_j += d k, o_j = scale M_j.q; M written to dst (src on the first
 * token of a batch, dst itself after). */
static void recur_rows_c(const float *src, float *M, int S, const float *q, const float *k, const float *v,
			 float eg, float beta, float scale, float *o)
{
	for (int j = 0; j < S; j++) {
		const float *in = src + (size_t)j * (size_t)S;
		float *row = M + (size_t)j * (size_t)S;
		float sk = 0.0f;
		for (int i = 0; i < S; i++) {
			row[i] = in[i] * eg;
			sk += row[i] * k[i];
		}
		const float dj = (v[j] - sk) * beta;
		float sq = 0.0f;
		for (int i = 0; i < S; i++) {
			row[i] += dj * k[i];
			sq += row[i] * q[i];
		}
		o[j] = sq * scale;
	}
}

#ifdef GDN_X86
__attribute__((target("avx2,fma"))) static float hsum8(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static void recur_rows_avx2(const float *src, float *M, int S, const float *q,
								  const float *k, const float *v, float eg, float beta,
								  float scale, float *o)
{
	const __m256 veg = _mm256_set1_ps(eg);
	for (int j = 0; j < S; j++) {
		const float *in = src + (size_t)j * (size_t)S;
		float *row = M + (size_t)j * (size_t)S;
		__m256 acc = _mm256_setzero_ps();
		for (int i = 0; i < S; i += 8) {
			__m256 r = _mm256_mul_ps(_mm256_loadu_ps(in + i), veg);
			_mm256_storeu_ps(row + i, r);
			acc = _mm256_fmadd_ps(r, _mm256_loadu_ps(k + i), acc);
		}
		const __m256 dj = _mm256_set1_ps((v[j] - hsum8(acc)) * beta);
		acc = _mm256_setzero_ps();
		for (int i = 0; i < S; i += 8) {
			__m256 r = _mm256_fmadd_ps(dj, _mm256_loadu_ps(k + i), _mm256_loadu_ps(row + i));
			_mm256_storeu_ps(row + i, r);
			acc = _mm256_fmadd_ps(r, _mm256_loadu_ps(q + i), acc);
		}
		o[j] = hsum8(acc) * scale;
	}
}

static int have_avx2(void)
{
	static int have = -1;
	if (have < 0)
		have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	return have;
}
#endif

void gdn_recur(const struct gdn_dims *d, int h, const float *x, int T, const float *g, const float *beta,
	       const float *s_in, float *s_out, float *o)
{
	const int S = d->S, C = d->C, hk = h % d->HK;
	const size_t qoff = (size_t)hk * (size_t)S, koff = (size_t)(d->HK + hk) * (size_t)S;
	const size_t voff = (size_t)(2 * d->HK + h) * (size_t)S;
	const float scale = 1.0f / sqrtf((float)S);
	for (int t = 0; t < T; t++) {
		const float *src = t == 0 ? s_in : s_out;
		const float *xt = x + (size_t)t * (size_t)C;
		const float eg = expf(g[(size_t)t * (size_t)d->HV + (size_t)h]);
		const float b = beta[(size_t)t * (size_t)d->HV + (size_t)h];
		float *ot = o + (size_t)t * (size_t)d->HV * (size_t)S + (size_t)h * (size_t)S;
#ifdef GDN_X86
		if (S % 8 == 0 && have_avx2()) {
			recur_rows_avx2(src, s_out, S, xt + qoff, xt + koff, xt + voff, eg, b, scale, ot);
			continue;
		}
#endif
		recur_rows_c(src, s_out, S, xt + qoff, xt + koff, xt + voff, eg, b, scale, ot);
	}
}

void gdn_gate_norm(const struct gdn_dims *d, float *o, const float *z, const float *w, float eps)
{
	const int S = d->S;
	for (int h = 0; h < d->HV; h++) {
		float *oh = o + (size_t)h * (size_t)S;
		const float *zh = z + (size_t)h * (size_t)S;
		double sum = 0.0;
		for (int i = 0; i < S; i++)
			sum += (double)(oh[i] * oh[i]);
		const float sc = 1.0f / sqrtf((float)(sum / S) + eps);
		for (int i = 0; i < S; i++)
			oh[i] = oh[i] * sc * w[i] * silu(zh[i]);
	}
}
