/*
 * test_cuda_kernels.c - every CUDA kernel of engine/cuda against the CPU
 * engine's scalar reference, on odd shapes (make check-cuda; needs a GPU).
 *
 * The references are the CPU engine's own code where it is public
 * (quant_ops_at(QUANT_LEVEL_SCALAR)->dequant_row, quant_vec_dot,
 * quant_fp32_to_fp16) and, for the operations that are static in
 * engine/forward.c (RMS norm, RoPE, GLU, attention), a line-for-line copy
 * of their formulas here; softmax, which the CPU engine only has inside
 * attention, is checked against a double-precision sum.
 *
 * Tolerances (each the bound of the numerical difference, not a guess):
 *   dequant rows, add, f32->f16      bit-identical
 *   matvec     |y - ref| <= 1e-5 * sum_j |w_j x_j|  (f32 sums of <= 165
 *              terms per lane, ref in double; dequantised w is exact)
 *   rmsnorm    |y - ref| <= 1e-6 * |ref|  (both sum in double)
 *   rope       |y - ref| <= 2e-6 * (|x0| + |x1|) per pair (theta is
 *              bit-identical; CUDA's cosf/sinf are within 2 ulp); dims
 *              past n_rot untouched
 *   silu       |y - ref| <= 2e-6 * |ref|  (expf within 2 ulp)
 *   gelu       |y - ref| <= (2^-10 |g| + 2^-24) * |up|: one f16 step of
 *              the gate value g = gelu(x), which goes through f16
 *   softmax    |y - ref| <= 1e-5 * ref
 *   attention  against the exact softmax (double, weights not rounded):
 *              |o - ref| <= 1e-5 * sum_p w_p |v_p| + 1e-6; against the CPU
 *              engine's formula (f16-rounded weights) additionally
 *              sum_p |f16(w_p) - w_p| |v_p|, computed per output
 *   dequant to f16 (prefill)        bit-identical to f16(CPU value)
 *   gemm (cuBLAS, f16 x f16 -> f32) |y - ref| <= k 2^-23 sum_j |w_j x_j|
 *              against a double sum of the same f16 operands (k = cols;
 *              worst case of a truncating f32 sum); tile splits exact
 *   prefill attention  as decode attention, per token and head, with the
 *              causal limit and the window
 *   add_rows, copy2d                 bit-identical
 *   decode graph replays  rope and KV rows bit-identical to plain
 *              launches; attention as decode attention
 *   Q8_0 KV    rows stored bit-identical to quant_quantize_row; decode
 *              and prefill attention as above, against the CPU's scalar
 *              Q8_0 scores (q quantised to Q8_0, V = d*q)
 * Shapes: rows 1, 7, 37, 129, 300; columns 1, 33, 1001 (float types),
 * 32 .. 2080 (32-blocks, 1 to 65 blocks so lanes get 0, 1 or 3 units),
 * 256 .. 4096 (K-quants); heads of 64, 80, 128, 256 dims, groups of 1 to
 * 8 query heads per KV head, 1 to 70000 positions (up to hundreds of
 * chunks), windows that start past position 0.
 *
 * Without a usable device it checks that the backend says so cleanly and
 * exits 77 (skip).  Prints "N passed, N failed"; exit 0 when none failed.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_backend.h"
#include "gguf.h"
#include "quant.h"
#include "cuda_testutil.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------ */

static float f16r(float x)
{
	return quant_fp16_to_fp32(quant_fp32_to_fp16(x));
}

/* Device copy of n floats (or an uninitialised buffer when h is NULL);
 * 0 on success, a failed CHECK otherwise. */
static int dev_f(cuda_ctx *c, struct cuda_buf *b, const float *h, size_t n)
{
	int rc = cuda_buf_alloc(c, b, n * sizeof(float), CUDA_MEM_SCRATCH);
	CHECK(rc == 0, "cuda_buf_alloc %zu floats: %s", n, cuda_ctx_error(c));
	if (rc)
		return -1;
	if (h) {
		rc = cuda_upload(c, b->ptr, h, n * sizeof(float));
		CHECK(rc == 0, "cuda_upload: %s", cuda_ctx_error(c));
	}
	return rc ? -1 : 0;
}

static int get_f(cuda_ctx *c, float *h, const struct cuda_buf *b, size_t n)
{
	int rc = cuda_sync(c);
	CHECK(rc == 0, "kernel failed: %s", cuda_ctx_error(c));
	if (rc == 0) {
		rc = cuda_download(c, h, b->ptr, n * sizeof(float));
		CHECK(rc == 0, "cuda_download: %s", cuda_ctx_error(c));
	}
	return rc ? -1 : 0;
}

static void test_matvec_shape(cuda_ctx *c, struct rng *r, uint32_t type, int64_t rows, int64_t cols, size_t pad)
{
	const char *tn = ggml_type_name(type);
	const size_t rb = ggml_row_bytes(type, (uint64_t)cols), stride = rb + pad;
	uint8_t *w = xmalloc(stride * (size_t)rows);
	float *deq = xmalloc(sizeof(float) * (size_t)(rows * cols));
	float *gdeq = xmalloc(sizeof(float) * (size_t)(rows * cols));
	float *x = xmalloc(sizeof(float) * (size_t)cols);
	float *y = xmalloc(sizeof(float) * (size_t)rows);
	const struct quant_ops *ref = quant_ops_at(QUANT_LEVEL_SCALAR);
	struct cuda_weight dw = {0};
	struct cuda_buf bx = {0}, by = {0}, bd = {0};

	make_weight(r, type, rows, cols, w, stride, 0);
	fill_f(r, x, (size_t)cols, -1.0f, 1.0f);
	for (int64_t i = 0; i < rows; i++)
		ref->dequant_row(type, w + (size_t)i * stride, deq + i * cols, cols);

	int rc = cuda_weight_upload(c, &dw, type, rows, cols, w, stride);
	CHECK(rc == 0, "%s %lldx%lld: upload: %s", tn, (long long)rows, (long long)cols, cuda_ctx_error(c));
	if (rc || dev_f(c, &bx, x, (size_t)cols) || dev_f(c, &by, NULL, (size_t)rows) ||
	    dev_f(c, &bd, NULL, (size_t)(rows * cols)))
		goto out;

	/* matvec */
	rc = cuda_matvec(c, &dw, bx.ptr, by.ptr);
	CHECK(rc == 0, "%s: cuda_matvec: %s", tn, cuda_ctx_error(c));
	if (rc == 0 && get_f(c, y, &by, (size_t)rows) == 0) {
		int bad = 0;
		double worst = 0.0;
		for (int64_t i = 0; i < rows; i++) {
			double s = 0.0, sa = 0.0;
			for (int64_t j = 0; j < cols; j++) {
				s += (double)deq[i * cols + j] * (double)x[j];
				sa += fabs((double)deq[i * cols + j] * (double)x[j]);
			}
			const double err = fabs((double)y[i] - s), tol = 1e-5 * sa + 1e-30;
			if (!(err <= tol)) {
				if (!bad)
					fprintf(stderr, "  %s %lldx%lld row %lld: gpu %.9g ref %.9g (tol %.3g)\n", tn,
						(long long)rows, (long long)cols, (long long)i, (double)y[i], s, tol);
				bad++;
			}
			if (sa > 0 && err / sa > worst)
				worst = err / sa;
		}
		CHECK(bad == 0, "%s %lldx%lld: matvec off in %d rows", tn, (long long)rows, (long long)cols, bad);
		printf("  matvec %-5s %4lld x %-5lld max |err|/sum|wx| = %.2e\n", tn, (long long)rows, (long long)cols,
		       worst);
	}

	/* dequantised rows from row0 on: bit-identical */
	const int64_t row0 = rows / 3, nr = rows - row0;
	rc = cuda_dequant_rows(c, &dw, row0, nr, bd.ptr);
	CHECK(rc == 0, "%s: cuda_dequant_rows: %s", tn, cuda_ctx_error(c));
	if (rc == 0 && get_f(c, gdeq, &bd, (size_t)(nr * cols)) == 0) {
		int64_t first_bad = -1;
		for (int64_t k = 0; k < nr * cols && first_bad < 0; k++)
			if (memcmp(&gdeq[k], &deq[row0 * cols + k], sizeof(float)) != 0)
				first_bad = k;
		CHECK(first_bad < 0, "%s %lldx%lld: dequant element %lld: gpu %.9g cpu %.9g", tn, (long long)rows,
		      (long long)cols, (long long)first_bad, first_bad < 0 ? 0.0 : (double)gdeq[first_bad],
		      first_bad < 0 ? 0.0 : (double)deq[row0 * cols + first_bad]);
	}
out:
	cuda_weight_free(c, &dw);
	cuda_buf_free(c, &bx);
	cuda_buf_free(c, &by);
	cuda_buf_free(c, &bd);
	free(w);
	free(deq);
	free(gdeq);
	free(x);
	free(y);
}

static void test_matvec(cuda_ctx *c, struct rng *r)
{
	static const uint32_t f_types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16};
	static const uint32_t b_types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
					   GGML_TYPE_Q8_0};
	static const uint32_t k_types[] = {GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
					   GGML_TYPE_Q6_K};
	static const int64_t f_shapes[][2] = {{1, 1}, {7, 33}, {37, 1001}, {129, 2080}};
	static const int64_t b_shapes[][2] = {{1, 32}, {7, 96}, {37, 1056}, {300, 2080}};
	static const int64_t k_shapes[][2] = {{1, 256}, {7, 768}, {37, 2816}, {129, 4096}};

	for (size_t t = 0; t < 3; t++)
		for (size_t s = 0; s < 4; s++)
			test_matvec_shape(c, r, f_types[t], f_shapes[s][0], f_shapes[s][1], s & 1 ? 6 : 0);
	for (size_t t = 0; t < 5; t++)
		for (size_t s = 0; s < 4; s++)
			test_matvec_shape(c, r, b_types[t], b_shapes[s][0], b_shapes[s][1], s & 1 ? 14 : 0);
	for (size_t t = 0; t < 5; t++)
		for (size_t s = 0; s < 4; s++)
			test_matvec_shape(c, r, k_types[t], k_shapes[s][0], k_shapes[s][1], s & 1 ? 10 : 0);
}

/* ---- RMS norm --------------------------------------------------------------------------- */

/* engine/forward.c cpu_rmsnorm */
static void ref_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
	double sum = 0.0;
	for (int64_t i = 0; i < n; i++)
		sum += (double)x[i] * (double)x[i];
	const float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
	for (int64_t i = 0; i < n; i++)
		y[i] = w ? x[i] * scale * w[i] : x[i] * scale;
}

static void test_rmsnorm(cuda_ctx *c, struct rng *r)
{
	static const int64_t ns[] = {1, 7, 576, 1000, 5003};
	for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
		for (int variant = 0; variant < 3; variant++) {
			/* 0: weight, separate output; 1: no weight; 2: weight, in place */
			const int64_t n = ns[k], rows = 3;
			float *x = xmalloc(sizeof(float) * (size_t)(rows * n)), *w = xmalloc(sizeof(float) * (size_t)n);
			float *y = xmalloc(sizeof(float) * (size_t)(rows * n)), *ref = xmalloc(sizeof(float) * (size_t)n);
			struct cuda_buf bx = {0}, bw = {0}, by = {0};
			fill_f(r, x, (size_t)(rows * n), -3.0f, 3.0f);
			fill_f(r, w, (size_t)n, 0.5f, 1.5f);
			const float *dw = NULL;
			if (dev_f(c, &bx, x, (size_t)(rows * n)) || dev_f(c, &bw, w, (size_t)n) ||
			    dev_f(c, &by, NULL, (size_t)(rows * n)))
				goto next;
			dw = variant == 1 ? NULL : bw.ptr;
			float *out = variant == 2 ? bx.ptr : by.ptr;
			int rc = cuda_rmsnorm(c, out, bx.ptr, dw, rows, n, 1e-6f);
			CHECK(rc == 0, "cuda_rmsnorm: %s", cuda_ctx_error(c));
			if (rc || get_f(c, y, variant == 2 ? &bx : &by, (size_t)(rows * n)))
				goto next;
			int bad = 0, exact = 0;
			for (int64_t i = 0; i < rows; i++) {
				ref_rmsnorm(ref, x + i * n, variant == 1 ? NULL : w, n, 1e-6f);
				for (int64_t j = 0; j < n; j++) {
					const float g = y[i * n + j];
					bad += !(fabsf(g - ref[j]) <= 1e-6f * fabsf(ref[j]) + 1e-37f);
					exact += g == ref[j];
				}
			}
			CHECK(bad == 0, "rmsnorm n=%lld variant %d: %d elements off", (long long)n, variant, bad);
			if (variant == 0)
				printf("  rmsnorm n=%-5lld %d of %lld bit-identical\n", (long long)n, exact,
				       (long long)(rows * n));
next:
			cuda_buf_free(c, &bx);
			cuda_buf_free(c, &bw);
			cuda_buf_free(c, &by);
			free(x);
			free(w);
			free(y);
			free(ref);
		}
}

/* ---- RoPE ---------------------------------------------------------------------------- */

/* engine/forward.c cpu_rope, for one head */
static void ref_rope(float *v, int n_rot, uint32_t pos, float base, float scale, const float *ff, int neox)
{
	const float theta_scale = powf(base, -2.0f / (float)n_rot);
	float theta = (float)pos * scale;
	for (int i0 = 0; i0 < n_rot; i0 += 2) {
		const float t = ff ? theta / ff[i0 / 2] : theta;
		const float cs = cosf(t), sn = sinf(t);
		const int a = neox ? i0 / 2 : i0, b = neox ? i0 / 2 + n_rot / 2 : i0 + 1;
		const float x0 = v[a], x1 = v[b];
		v[a] = x0 * cs - x1 * sn;
		v[b] = x0 * sn + x1 * cs;
		theta *= theta_scale;
	}
}

static void test_rope(cuda_ctx *c, struct rng *r)
{
	static const struct {
		int T, H, D, n_rot;
		uint32_t pos0;
		float base, scale;
		int ff, neox;
	} cs[] = {
		{3, 5, 64, 64, 0, 10000.0f, 1.0f, 0, 0},
		{2, 3, 80, 32, 1234, 10000.0f, 1.0f, 1, 1},
		{1, 9, 256, 256, 40000, 1000000.0f, 1.0f, 0, 1},
		{4, 2, 128, 128, 7, 500000.0f, 0.25f, 1, 0},
		{5, 1, 96, 94, 65530, 10000.0f, 1.0f, 0, 1},
	};
	for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
		const int T = cs[k].T, H = cs[k].H, D = cs[k].D, nr = cs[k].n_rot;
		const size_t n = (size_t)T * (size_t)H * (size_t)D;
		float *x = xmalloc(sizeof(float) * n), *y = xmalloc(sizeof(float) * n), *ref = xmalloc(sizeof(float) * n);
		float ff[128];
		struct cuda_buf bx = {0}, bf = {0};
		fill_f(r, x, n, -2.0f, 2.0f);
		fill_f(r, ff, 128, 1.0f, 8.0f);
		memcpy(ref, x, sizeof(float) * n);
		if (dev_f(c, &bx, x, n) || dev_f(c, &bf, ff, 128))
			goto next;
		int rc = cuda_rope(c, bx.ptr, T, H, D, nr, cs[k].pos0, cs[k].base, cs[k].scale,
				   cs[k].ff ? bf.ptr : NULL, cs[k].neox ? CUDA_ROPE_NEOX : CUDA_ROPE_NORM);
		CHECK(rc == 0, "cuda_rope: %s", cuda_ctx_error(c));
		if (rc || get_f(c, y, &bx, n))
			goto next;
		int bad = 0;
		for (int t = 0; t < T; t++)
			for (int h = 0; h < H; h++) {
				const size_t o = ((size_t)t * (size_t)H + (size_t)h) * (size_t)D;
				ref_rope(ref + o, nr, cs[k].pos0 + (uint32_t)t, cs[k].base, cs[k].scale,
					 cs[k].ff ? ff : NULL, cs[k].neox);
				for (int i = 0; i < nr / 2; i++) {
					const int a = cs[k].neox ? i : 2 * i, b = cs[k].neox ? i + nr / 2 : 2 * i + 1;
					const float tol = 2e-6f * (fabsf(x[o + a]) + fabsf(x[o + b])) + 1e-30f;
					bad += !(fabsf(y[o + a] - ref[o + a]) <= tol);
					bad += !(fabsf(y[o + b] - ref[o + b]) <= tol);
				}
				for (int d = nr; d < D; d++)
					bad += memcmp(&y[o + d], &x[o + d], sizeof(float)) != 0;
			}
		CHECK(bad == 0, "rope case %zu (%s, n_rot %d of %d, pos %u): %d values off", k,
		      cs[k].neox ? "neox" : "norm", nr, D, cs[k].pos0, bad);
next:
		cuda_buf_free(c, &bx);
		cuda_buf_free(c, &bf);
		free(x);
		free(y);
		free(ref);
	}
}

/* ---- GLU ---------------------------------------------------------------------------------- */

/* engine/forward.c cpu_glu, the gate value alone */
static float ref_act(float x, int gelu)
{
	if (!gelu)
		return x / (1.0f + expf(-x));
	if (x <= -10.0f)
		return 0.0f;
	if (x >= 10.0f)
		return x;
	const float c = 0.7978845608028654f;
	x = f16r(x);
	return f16r(0.5f * x * (1.0f + tanhf(c * x * (1.0f + 0.044715f * x * x))));
}

static void test_glu(cuda_ctx *c, struct rng *r)
{
	static const int64_t ns[] = {1, 1000, 100003};
	for (size_t k = 0; k < 3; k++)
		for (int gelu = 0; gelu < 2; gelu++) {
			const int64_t n = ns[k];
			float *g = xmalloc(sizeof(float) * (size_t)n), *u = xmalloc(sizeof(float) * (size_t)n);
			float *y = xmalloc(sizeof(float) * (size_t)n);
			struct cuda_buf bg = {0}, bu = {0};
			fill_f(r, g, (size_t)n, -12.0f, 12.0f);
			fill_f(r, u, (size_t)n, -2.0f, 2.0f);
			if (dev_f(c, &bg, g, (size_t)n) || dev_f(c, &bu, u, (size_t)n))
				goto next;
			int rc = cuda_glu(c, bg.ptr, bu.ptr, n, gelu ? CUDA_ACT_GELU_TANH : CUDA_ACT_SILU);
			CHECK(rc == 0, "cuda_glu: %s", cuda_ctx_error(c));
			if (rc || get_f(c, y, &bg, (size_t)n))
				goto next;
			int bad = 0;
			for (int64_t i = 0; i < n; i++) {
				const float a = ref_act(g[i], gelu), ref = a * u[i];
				const float tol = gelu ? (0x1p-10f * fabsf(a) + 0x1p-24f) * fabsf(u[i]) + 1e-30f
						       : 2e-6f * fabsf(ref) + 1e-30f;
				if (!(fabsf(y[i] - ref) <= tol)) {
					if (!bad)
						fprintf(stderr, "  %s x=%.9g up=%.9g: gpu %.9g ref %.9g\n",
							gelu ? "gelu" : "silu", (double)g[i], (double)u[i], (double)y[i],
							(double)ref);
					bad++;
				}
			}
			CHECK(bad == 0, "%s n=%lld: %d values off", gelu ? "gelu" : "silu", (long long)n, bad);
next:
			cuda_buf_free(c, &bg);
			cuda_buf_free(c, &bu);
			free(g);
			free(u);
			free(y);
		}
}

/* ---- softmax ---------------------------------------------------------------------------------- */

static void test_softmax(cuda_ctx *c, struct rng *r)
{
	static const int64_t ns[] = {1, 5, 1000, 4097};
	for (size_t k = 0; k < 4; k++)
		for (int sc = 0; sc < 2; sc++) {
			const int64_t n = ns[k], rows = 3;
			const float scale = sc ? 0.125f : 1.0f;
			float *x = xmalloc(sizeof(float) * (size_t)(rows * n)), *y = xmalloc(sizeof(float) * (size_t)(rows * n));
			struct cuda_buf bx = {0};
			fill_f(r, x, (size_t)(rows * n), -20.0f, 20.0f);
			if (dev_f(c, &bx, x, (size_t)(rows * n)))
				goto next;
			int rc = cuda_softmax(c, bx.ptr, bx.ptr, rows, n, scale);
			CHECK(rc == 0, "cuda_softmax: %s", cuda_ctx_error(c));
			if (rc || get_f(c, y, &bx, (size_t)(rows * n)))
				goto next;
			int bad = 0;
			for (int64_t i = 0; i < rows; i++) {
				const float *xr = x + i * n;
				double mx = -INFINITY, sum = 0.0;
				for (int64_t j = 0; j < n; j++)
					mx = fmax(mx, (double)xr[j] * scale);
				for (int64_t j = 0; j < n; j++)
					sum += exp((double)xr[j] * scale - mx);
				for (int64_t j = 0; j < n; j++) {
					const double ref = exp((double)xr[j] * scale - mx) / sum;
					bad += !(fabs((double)y[i * n + j] - ref) <= 1e-5 * ref + 1e-30);
				}
			}
			CHECK(bad == 0, "softmax n=%lld scale %g: %d values off", (long long)n, (double)scale, bad);
next:
			cuda_buf_free(c, &bx);
			free(x);
			free(y);
		}
}

/* ---- add, f32 -> f16 ------------------------------------------------------------------------------ */

static void test_elementwise(cuda_ctx *c, struct rng *r)
{
	const int64_t n = 70001;
	float *x = xmalloc(sizeof(float) * (size_t)n), *y = xmalloc(sizeof(float) * (size_t)n);
	float *out = xmalloc(sizeof(float) * (size_t)n);
	uint16_t *h = xmalloc(sizeof(uint16_t) * (size_t)n);
	struct cuda_buf bx = {0}, by = {0}, bh = {0};
	fill_f(r, x, (size_t)n, -1.0f, 1.0f);
	fill_f(r, y, (size_t)n, -1.0f, 1.0f);
	for (int64_t i = 0; i < n; i++) /* magnitudes 2^-30 .. 2^17: subnormal halves to infinity */
		x[i] = ldexpf(x[i], (int)(rng_u32(r) % 48) - 30);
	x[0] = 65504.0f;
	x[1] = 65519.0f;
	x[2] = 65520.0f;
	x[3] = -0.0f;
	x[4] = 0x1p-25f;
	x[5] = 0x1.8p-25f;
	if (dev_f(c, &bx, x, (size_t)n) || dev_f(c, &by, y, (size_t)n))
		goto out;
	int rc = cuda_add(c, by.ptr, bx.ptr, n);
	CHECK(rc == 0, "cuda_add: %s", cuda_ctx_error(c));
	if (rc == 0 && get_f(c, out, &by, (size_t)n) == 0) {
		int bad = 0;
		for (int64_t i = 0; i < n; i++) {
			const float e = y[i] + x[i];
			bad += memcmp(&out[i], &e, sizeof e) != 0;
		}
		CHECK(bad == 0, "add: %d values off", bad);
	}
	if (cuda_buf_alloc(c, &bh, sizeof(uint16_t) * (size_t)n, CUDA_MEM_KV) != 0) {
		CHECK(0, "cuda_buf_alloc: %s", cuda_ctx_error(c));
		goto out;
	}
	rc = cuda_f32_to_f16(c, bh.ptr, bx.ptr, n);
	CHECK(rc == 0, "cuda_f32_to_f16: %s", cuda_ctx_error(c));
	if (rc == 0 && cuda_sync(c) == 0 && cuda_download(c, h, bh.ptr, sizeof(uint16_t) * (size_t)n) == 0) {
		int bad = 0;
		for (int64_t i = 0; i < n; i++)
			if (h[i] != quant_fp32_to_fp16(x[i])) {
				if (!bad)
					fprintf(stderr, "  f16(%a): gpu %04x cpu %04x\n", (double)x[i], h[i],
						quant_fp32_to_fp16(x[i]));
				bad++;
			}
		CHECK(bad == 0, "f32_to_f16: %d values off", bad);
	}
out:
	cuda_buf_free(c, &bx);
	cuda_buf_free(c, &by);
	cuda_buf_free(c, &bh);
	free(x);
	free(y);
	free(out);
	free(h);
}

/* ---- attention ------------------------------------------------------------------------------------- */

static void test_attn_case(cuda_ctx *c, struct rng *r, int H, int G, int D, uint32_t first, uint32_t n)
{
	const uint32_t P = first + n;          /* positions in the cache */
	const size_t row = (size_t)G * (size_t)D; /* halves per position */
	uint16_t *k = xmalloc(sizeof(uint16_t) * row * P), *v = xmalloc(sizeof(uint16_t) * row * P);
	float *q = xmalloc(sizeof(float) * (size_t)(H * D)), *o = xmalloc(sizeof(float) * (size_t)(H * D));
	double *w = xmalloc(sizeof(double) * n);
	float *vf = xmalloc(sizeof(float) * (size_t)D);
	uint16_t *qh = xmalloc(sizeof(uint16_t) * (size_t)D);
	struct cuda_buf bk = {0}, bv = {0}, bq = {0}, bo = {0}, bw = {0};
	const float scale = 1.0f / sqrtf((float)D);

	for (size_t i = 0; i < row * P; i++) {
		/* positions before the window hold values that would show */
		const int outside = i < row * first;
		k[i] = quant_fp32_to_fp16(outside ? 30000.0f : rng_f(r, -1.0f, 1.0f));
		v[i] = quant_fp32_to_fp16(outside ? -30000.0f : rng_f(r, -1.0f, 1.0f));
	}
	fill_f(r, q, (size_t)(H * D), -3.0f, 3.0f);

	const size_t ws = cuda_attn_decode_workspace(H, G, D, P);
	CHECK(ws > 0, "attention workspace for H %d G %d D %d: 0", H, G, D);
	if (ws == 0)
		goto out;
	if (cuda_buf_alloc(c, &bk, sizeof(uint16_t) * row * P, CUDA_MEM_KV) ||
	    cuda_buf_alloc(c, &bv, sizeof(uint16_t) * row * P, CUDA_MEM_KV) ||
	    cuda_buf_alloc(c, &bw, ws, CUDA_MEM_SCRATCH)) {
		CHECK(0, "attention buffers: %s", cuda_ctx_error(c));
		goto out;
	}
	if (cuda_upload(c, bk.ptr, k, sizeof(uint16_t) * row * P) ||
	    cuda_upload(c, bv.ptr, v, sizeof(uint16_t) * row * P) || dev_f(c, &bq, q, (size_t)(H * D)) ||
	    dev_f(c, &bo, NULL, (size_t)(H * D))) {
		CHECK(0, "attention upload: %s", cuda_ctx_error(c));
		goto out;
	}
	struct cuda_attn_args a = {
		.q = bq.ptr, .k = bk.ptr, .v = bv.ptr, .kv_type = GGML_TYPE_F16,
		.n_head = H, .n_head_kv = G, .head_dim = D, .first = first, .n = n,
		.scale = scale, .out = bo.ptr, .workspace = bw.ptr, .workspace_bytes = ws,
	};
	int rc = cuda_attn_decode(c, &a);
	CHECK(rc == 0, "cuda_attn_decode H %d G %d D %d n %u: %s", H, G, D, n, cuda_ctx_error(c));
	if (rc || get_f(c, o, &bo, (size_t)(H * D)))
		goto out;

	int bad_exact = 0, bad_cpu = 0;
	double worst = 0.0;
	for (int h = 0; h < H; h++) {
		const int g = h / (H / G);
		const float *qr = q + (size_t)h * (size_t)D;
		for (int d = 0; d < D; d++)
			qh[d] = quant_fp32_to_fp16(qr[d]);
		/* the CPU engine: f16 q . f16 k in quant_vec_dot, softmax with a
		 * double sum */
		float mx = -INFINITY;
		for (uint32_t p = 0; p < n; p++) {
			const uint16_t *kr = k + (size_t)(first + p) * row + (size_t)g * (size_t)D;
			const float s = quant_vec_dot(GGML_TYPE_F16, kr, qh, D) * scale;
			w[p] = s;
			mx = s > mx ? s : mx;
		}
		double sum = 0.0;
		for (uint32_t p = 0; p < n; p++) {
			w[p] = expf((float)w[p] - mx);
			sum += w[p];
		}
		const float inv = (float)(1.0 / sum);
		for (int d = 0; d < D; d++) {
			double exact = 0.0, cpu = 0.0, mass = 0.0, round = 0.0;
			for (uint32_t p = 0; p < n; p++) {
				const float vv = quant_fp16_to_fp32(v[(size_t)(first + p) * row + (size_t)g * (size_t)D + (size_t)d]);
				const double we = w[p] / sum;
				const float wc = f16r((float)w[p] * inv);
				exact += we * vv;
				cpu += (double)wc * vv;
				mass += we * fabs(vv);
				round += fabs((double)wc - we) * fabs(vv);
			}
			const double got = o[(size_t)h * (size_t)D + (size_t)d];
			const double tol = 1e-5 * mass + 1e-6;
			if (!(fabs(got - exact) <= tol)) {
				if (!bad_exact)
					fprintf(stderr, "  attn H %d G %d D %d n %u head %d dim %d: gpu %.9g exact %.9g\n",
						H, G, D, n, h, d, got, exact);
				bad_exact++;
			}
			bad_cpu += !(fabs(got - cpu) <= tol + round);
			if (mass > 0 && fabs(got - exact) / mass > worst)
				worst = fabs(got - exact) / mass;
		}
	}
	CHECK(bad_exact == 0, "attention H %d G %d D %d first %u n %u: %d outputs off the exact softmax", H, G, D,
	      first, n, bad_exact);
	CHECK(bad_cpu == 0, "attention H %d G %d D %d first %u n %u: %d outputs off the CPU formula", H, G, D,
	      first, n, bad_cpu);
	printf("  attention H %2d G %2d D %3d first %5u n %6u  max |err|/sum w|v| = %.2e\n", H, G, D, first, n,
	       worst);
out:
	cuda_buf_free(c, &bk);
	cuda_buf_free(c, &bv);
	cuda_buf_free(c, &bq);
	cuda_buf_free(c, &bo);
	cuda_buf_free(c, &bw);
	free(k);
	free(v);
	free(q);
	free(o);
	free(w);
	free(vf);
	free(qh);
}

static void test_attention(cuda_ctx *c, struct rng *r)
{
	test_attn_case(c, r, 1, 1, 64, 0, 1);
	test_attn_case(c, r, 9, 3, 80, 0, 37);
	test_attn_case(c, r, 8, 1, 128, 5, 1000);
	test_attn_case(c, r, 4, 4, 256, 0, 300);
	test_attn_case(c, r, 16, 2, 64, 100, 5000);
	test_attn_case(c, r, 4, 1, 256, 512, 513);   /* gemma3-270m shape, sliding window */
	test_attn_case(c, r, 14, 2, 64, 0, 70000);   /* hundreds of chunks */
}

/* ---- prefill: dequantisation to f16, GEMM, bias rows, 2-D copies ------------------------------------- */

/* Every type, odd shapes: the f16 rows are the CPU's f32 values rounded
 * to nearest even, bit for bit. */
static void test_dequant_f16(cuda_ctx *c, struct rng *r)
{
	static const uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q4_0,
					 GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
					 GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
	for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
		const uint32_t type = types[t];
		const int64_t bs = ggml_type_block_size(type);
		const int64_t rows = 37, cols = bs == 1 ? 1001 : bs * (bs == 256 ? 3 : 33);
		const size_t rb = ggml_row_bytes(type, (uint64_t)cols), stride = rb + 6;
		uint8_t *w = xmalloc(stride * (size_t)rows);
		float *deq = xmalloc(sizeof(float) * (size_t)cols);
		uint16_t *got = xmalloc(2 * (size_t)(rows * cols));
		struct cuda_weight dw = {0};
		struct cuda_buf out = {0};
		make_weight(r, type, rows, cols, w, stride, 1);
		if (cuda_weight_upload(c, &dw, type, rows, cols, w, stride) != 0 ||
		    cuda_buf_alloc(c, &out, 2 * (size_t)(rows * cols), CUDA_MEM_SCRATCH) != 0) {
			CHECK(0, "dequant_f16 %s: %s", ggml_type_name(type), cuda_ctx_error(c));
			goto next;
		}
		const int64_t row0 = 5, nr = rows - 5;
		int rc = cuda_dequant_f16(c, &dw, row0, nr, out.ptr);
		CHECK(rc == 0, "cuda_dequant_f16 %s: %s", ggml_type_name(type), cuda_ctx_error(c));
		if (rc || cuda_sync(c) || cuda_download(c, got, out.ptr, 2 * (size_t)(nr * cols))) {
			CHECK(rc != 0, "dequant_f16 %s: %s", ggml_type_name(type), cuda_ctx_error(c));
			goto next;
		}
		int bad = 0;
		for (int64_t i = 0; i < nr; i++) {
			quant_ops_at(QUANT_LEVEL_SCALAR)->dequant_row(type, w + (size_t)(row0 + i) * stride, deq, cols);
			for (int64_t j = 0; j < cols; j++) {
				const uint16_t want = quant_fp32_to_fp16(deq[j]);
				if (got[i * cols + j] != want) {
					if (!bad)
						fprintf(stderr, "  dequant_f16 %s row %lld col %lld: gpu %04x cpu %04x (%.9g)\n",
							ggml_type_name(type), (long long)(row0 + i), (long long)j,
							got[i * cols + j], want, (double)deq[j]);
					bad++;
				}
			}
		}
		CHECK(bad == 0, "dequant_f16 %s %lldx%lld: %d values off", ggml_type_name(type), (long long)nr,
		      (long long)cols, bad);
next:
		cuda_weight_free(c, &dw);
		cuda_buf_free(c, &out);
		free(w);
		free(deq);
		free(got);
	}
}

/* y = W x for T tokens through cuBLAS, against a double sum over the f16
 * values the GEMM multiplies (f16(w), f16(x)): |y - ref| <= k 2^-23
 * sum_j |w_j x_j|, the worst-case bound of an f32 sum of k terms with
 * truncating (round-toward-zero) accumulation; and the tile split (tiles
 * of 1, 7 rows or all of them) must not change a bit. */
static void test_gemm_case(cuda_ctx *c, struct rng *r, uint32_t type, int64_t rows, int64_t cols, int T)
{
	const char *tn = ggml_type_name(type);
	const size_t rb = ggml_row_bytes(type, (uint64_t)cols);
	uint8_t *w = xmalloc(rb * (size_t)rows);
	float *wf = xmalloc(sizeof(float) * (size_t)(rows * cols));
	float *x = xmalloc(sizeof(float) * (size_t)(T * cols));
	uint16_t *x16 = xmalloc(2 * (size_t)(T * cols));
	float *y = xmalloc(sizeof(float) * (size_t)(T * rows)), *y1 = xmalloc(sizeof(float) * (size_t)(T * rows));
	struct cuda_weight dw = {0};
	struct cuda_buf bx = {0}, by = {0}, bt = {0};

	make_weight(r, type, rows, cols, w, rb, 0);
	for (int64_t i = 0; i < rows; i++) {
		quant_ops_at(QUANT_LEVEL_SCALAR)->dequant_row(type, w + (size_t)i * rb, wf + i * cols, cols);
		for (int64_t j = 0; j < cols; j++)
			wf[i * cols + j] = f16r(wf[i * cols + j]);
	}
	fill_f(r, x, (size_t)(T * cols), -1.0f, 1.0f);
	for (int64_t i = 0; i < T * cols; i++)
		x16[i] = quant_fp32_to_fp16(x[i]);
	const size_t full = cuda_gemm_tile_bytes(&(struct cuda_weight){.type = type, .rows = rows, .cols = cols},
						 (size_t)1 << 30);
	if (cuda_weight_upload(c, &dw, type, rows, cols, w, rb) != 0 ||
	    cuda_buf_alloc(c, &bx, 2 * (size_t)(T * cols), CUDA_MEM_SCRATCH) != 0 ||
	    cuda_upload(c, bx.ptr, x16, 2 * (size_t)(T * cols)) != 0 || dev_f(c, &by, NULL, (size_t)(T * rows)) ||
	    (full && cuda_buf_alloc(c, &bt, full, CUDA_MEM_SCRATCH) != 0)) {
		CHECK(0, "gemm %s: setup: %s", tn, cuda_ctx_error(c));
		goto out;
	}
	const size_t tiles[] = {full, full ? (size_t)cols * 2 : 0, full ? (size_t)cols * 14 : 0};
	for (int k = 0; k < 3; k++) {
		int rc = cuda_gemm(c, &dw, bx.ptr, T, by.ptr, full ? bt.ptr : NULL, tiles[k]);
		CHECK(rc == 0, "cuda_gemm %s %lldx%lld T %d: %s", tn, (long long)rows, (long long)cols, T,
		      cuda_ctx_error(c));
		if (rc || get_f(c, k ? y1 : y, &by, (size_t)(T * rows)))
			goto out;
		if (k) {
			CHECK(memcmp(y, y1, sizeof(float) * (size_t)(T * rows)) == 0,
			      "gemm %s: tiles of %zu bytes change the result", tn, tiles[k]);
			if (!full)
				break;
		}
	}
	int bad = 0;
	double worst = 0.0;
	for (int t = 0; t < T; t++)
		for (int64_t i = 0; i < rows; i++) {
			double s = 0.0, sa = 0.0;
			for (int64_t j = 0; j < cols; j++) {
				const double p = (double)wf[i * cols + j] * (double)quant_fp16_to_fp32(x16[t * cols + j]);
				s += p;
				sa += fabs(p);
			}
			const double got = y[(size_t)t * (size_t)rows + (size_t)i];
			const double err = fabs(got - s), tol = (double)cols * 0x1p-23 * sa + 1e-30;
			if (!(err <= tol)) {
				if (!bad)
					fprintf(stderr, "  gemm %s token %d row %lld: gpu %.9g ref %.9g (tol %.3g)\n", tn, t,
						(long long)i, got, s, tol);
				bad++;
			}
			if (sa > 0 && err / sa > worst)
				worst = err / sa;
		}
	CHECK(bad == 0, "gemm %s %lldx%lld T %d: %d values off", tn, (long long)rows, (long long)cols, T, bad);
	printf("  gemm %-5s %4lld x %-5lld T %-3d max |err|/sum|wx| = %.2e\n", tn, (long long)rows, (long long)cols, T,
	       worst);
out:
	cuda_weight_free(c, &dw);
	cuda_buf_free(c, &bx);
	cuda_buf_free(c, &by);
	cuda_buf_free(c, &bt);
	free(w);
	free(wf);
	free(x);
	free(x16);
	free(y);
	free(y1);
}

static void test_gemm(cuda_ctx *c, struct rng *r)
{
	if (cuda_gemm_available(c) != 0) {
		printf("  gemm: SKIPPED (%s); the forward pass prefills token by token without it\n", cuda_ctx_error(c));
		return;
	}
	static const struct {
		uint32_t type;
		int64_t rows, cols;
		int T;
	} cs[] = {
		{GGML_TYPE_F16, 37, 1001, 7}, {GGML_TYPE_F32, 129, 33, 64}, {GGML_TYPE_BF16, 7, 200, 3},
		{GGML_TYPE_Q4_0, 300, 2080, 64}, {GGML_TYPE_Q4_1, 37, 96, 5}, {GGML_TYPE_Q5_0, 129, 1056, 17},
		{GGML_TYPE_Q5_1, 7, 32, 2}, {GGML_TYPE_Q8_0, 300, 4096, 64}, {GGML_TYPE_Q2_K, 37, 768, 9},
		{GGML_TYPE_Q3_K, 129, 2816, 33}, {GGML_TYPE_Q4_K, 300, 4096, 64}, {GGML_TYPE_Q5_K, 7, 256, 2},
		{GGML_TYPE_Q6_K, 129, 2048, 64},
	};
	for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++)
		test_gemm_case(c, r, cs[k].type, cs[k].rows, cs[k].cols, cs[k].T);
}

static void test_batch_ops(cuda_ctx *c, struct rng *r)
{
	const int64_t rows = 13, n = 1001;
	float *y = xmalloc(sizeof(float) * (size_t)(rows * n)), *b = xmalloc(sizeof(float) * (size_t)n);
	float *got = xmalloc(sizeof(float) * (size_t)(rows * n));
	struct cuda_buf by = {0}, bb = {0}, bz = {0};
	fill_f(r, y, (size_t)(rows * n), -1.0f, 1.0f);
	fill_f(r, b, (size_t)n, -1.0f, 1.0f);
	if (dev_f(c, &by, y, (size_t)(rows * n)) || dev_f(c, &bb, b, (size_t)n) || dev_f(c, &bz, NULL, (size_t)(rows * n)))
		goto out;
	int rc = cuda_add_rows(c, by.ptr, bb.ptr, rows, n);
	CHECK(rc == 0, "cuda_add_rows: %s", cuda_ctx_error(c));
	if (rc == 0 && get_f(c, got, &by, (size_t)(rows * n)) == 0) {
		int bad = 0;
		for (int64_t i = 0; i < rows * n; i++) {
			const float e = y[i] + b[i % n];
			bad += memcmp(&got[i], &e, sizeof e) != 0;
		}
		CHECK(bad == 0, "add_rows: %d values off", bad);
	}
	/* columns 100 .. 100+37 of every row into a packed [rows][37] */
	rc = cuda_copy2d(c, bz.ptr, 37 * sizeof(float), (float *)by.ptr + 100, (size_t)n * sizeof(float),
			 37 * sizeof(float), (size_t)rows);
	CHECK(rc == 0, "cuda_copy2d: %s", cuda_ctx_error(c));
	if (rc == 0 && get_f(c, y, &bz, (size_t)(rows * 37)) == 0) {
		int bad = 0;
		for (int64_t i = 0; i < rows; i++)
			bad += memcmp(y + i * 37, got + i * n + 100, 37 * sizeof(float)) != 0;
		CHECK(bad == 0, "copy2d: %d rows off", bad);
	}
out:
	cuda_buf_free(c, &by);
	cuda_buf_free(c, &bb);
	cuda_buf_free(c, &bz);
	free(y);
	free(b);
	free(got);
}

/* ---- prefill attention ------------------------------------------------------------------------------ */

/* One query row against positions first .. first+n-1 of a KV cache of
 * TYPE (rows of row_bytes, the head at byte head_bytes of a row) as the CPU engine
 * computes it: F16 scores f16(q) . k, Q8_0 scores the scalar Q8_0 dot
 * product with q quantised to Q8_0 (which the GPU reproduces bit for
 * bit), V dequantised.  Counts outputs off the exact softmax of those
 * scores (tolerance as the decode test) and off the CPU's formula (its
 * f16-rounded weights), and the largest |err| / sum w|v|. */
static void attn_ref_check_t(uint32_t type, const float *qr, const uint8_t *k, const uint8_t *v, size_t row_bytes,
			     size_t head_bytes, int D, uint32_t first, uint32_t n, float scale, const float *got,
			     int *bad_exact, int *bad_cpu, double *worst)
{
	const struct quant_ops *ref = quant_ops_at(QUANT_LEVEL_SCALAR);
	uint8_t *qa = xmalloc(4 * (size_t)D + 64);
	double *w = xmalloc(sizeof(double) * n);
	float *vv = xmalloc(sizeof(float) * (size_t)n * (size_t)D);
	if (type == GGML_TYPE_F16)
		for (int d = 0; d < D; d++)
			((uint16_t *)qa)[d] = quant_fp32_to_fp16(qr[d]);
	else
		ref->act_quantize(GGML_TYPE_Q8_0, qr, qa, D);
	float mx = -INFINITY;
	for (uint32_t p = 0; p < n; p++) {
		const size_t off = (size_t)(first + p) * row_bytes + head_bytes;
		const float s = ref->vec_dot(type, k + off, qa, D) * scale;
		ref->dequant_row(type, v + off, vv + (size_t)p * (size_t)D, D);
		w[p] = s;
		mx = s > mx ? s : mx;
	}
	double sum = 0.0;
	for (uint32_t p = 0; p < n; p++) {
		w[p] = expf((float)w[p] - mx);
		sum += w[p];
	}
	const float inv = (float)(1.0 / sum);
	for (int d = 0; d < D; d++) {
		double exact = 0.0, cpu = 0.0, mass = 0.0, round = 0.0;
		for (uint32_t p = 0; p < n; p++) {
			const float x = vv[(size_t)p * (size_t)D + (size_t)d];
			const double we = w[p] / sum;
			const float wc = f16r((float)w[p] * inv);
			exact += we * x;
			cpu += (double)wc * x;
			mass += we * fabs(x);
			round += fabs((double)wc - we) * fabs(x);
		}
		const double tol = 1e-5 * mass + 1e-6;
		*bad_exact += !(fabs(got[d] - exact) <= tol);
		*bad_cpu += !(fabs(got[d] - cpu) <= tol + round);
		if (mass > 0 && fabs(got[d] - exact) / mass > *worst)
			*worst = fabs(got[d] - exact) / mass;
	}
	free(qa);
	free(w);
	free(vv);
}

/* The F16 case with caches of `row` halves per position, head g. */
static void attn_ref_check(const float *qr, const uint16_t *k, const uint16_t *v, size_t row, int g, int D,
			   uint32_t first, uint32_t n, float scale, const float *got, int *bad_exact, int *bad_cpu,
			   double *worst)
{
	attn_ref_check_t(GGML_TYPE_F16, qr, (const uint8_t *)k, (const uint8_t *)v, row * 2, (size_t)g * (size_t)D * 2, D,
			 first, n, scale, got, bad_exact, bad_cpu, worst);
}

/* Random Q8_0 caches of P positions (rows of G heads of D), the first
 * ZERO positions' first block all zero (amax 0). */
static void make_q8_cache(struct rng *r, uint8_t *c, uint32_t P, int G, int D)
{
	const size_t n = (size_t)G * (size_t)D;
	float *x = xmalloc(sizeof(float) * n);
	const size_t rb = n / 32 * 34;
	for (uint32_t p = 0; p < P; p++) {
		fill_f(r, x, n, -2.0f, 2.0f);
		if (p % 7 == 3)
			memset(x, 0, 32 * sizeof(float));
		quant_quantize_row(GGML_TYPE_Q8_0, x, c + (size_t)p * rb, (int64_t)n);
	}
	free(x);
}

/* Decode and prefill attention over Q8_0 caches against the CPU. */
static void test_attn_q8_case(cuda_ctx *c, struct rng *r, int H, int G, int D, uint32_t pos0, int T, uint32_t window)
{
	const uint32_t P = pos0 + (uint32_t)T;
	const size_t rb = (size_t)G * (size_t)D / 32 * 34, hb = (size_t)D / 32 * 34;
	const size_t nq = (size_t)T * (size_t)H * (size_t)D;
	uint8_t *k = xmalloc(rb * P), *v = xmalloc(rb * P);
	float *q = xmalloc(sizeof(float) * nq), *o = xmalloc(sizeof(float) * nq);
	struct cuda_buf bk = {0}, bv = {0}, bq = {0}, bo = {0}, bw = {0};
	const float scale = 1.0f / sqrtf((float)D);
	const size_t ws = cuda_attn_decode_workspace(H, G, D, P);
	make_q8_cache(r, k, P, G, D);
	make_q8_cache(r, v, P, G, D);
	fill_f(r, q, nq, -3.0f, 3.0f);
	if (cuda_buf_alloc(c, &bk, rb * P, CUDA_MEM_KV) || cuda_buf_alloc(c, &bv, rb * P, CUDA_MEM_KV) ||
	    cuda_upload(c, bk.ptr, k, rb * P) || cuda_upload(c, bv.ptr, v, rb * P) || dev_f(c, &bq, q, nq) ||
	    dev_f(c, &bo, NULL, nq) || cuda_buf_alloc(c, &bw, ws, CUDA_MEM_SCRATCH)) {
		CHECK(0, "Q8_0 attention setup: %s", cuda_ctx_error(c));
		goto out;
	}
	for (int mode = 0; mode < 2; mode++) {
		/* 0: prefill of the T tokens; 1: decode of the last one */
		int rc;
		if (mode == 0) {
			struct cuda_attn_prefill_args a = {
				.q = bq.ptr, .k = bk.ptr, .v = bv.ptr, .kv_type = GGML_TYPE_Q8_0, .n_head = H,
				.n_head_kv = G, .head_dim = D, .pos0 = pos0, .n_tok = T, .window = window,
				.scale = scale, .out = bo.ptr,
			};
			rc = cuda_attn_prefill(c, &a);
		} else {
			const uint32_t pos = P - 1, first = window && pos + 1 > window ? pos + 1 - window : 0;
			struct cuda_attn_args a = {
				.q = (const float *)bq.ptr + (size_t)(T - 1) * (size_t)H * (size_t)D, .k = bk.ptr,
				.v = bv.ptr, .kv_type = GGML_TYPE_Q8_0, .n_head = H, .n_head_kv = G, .head_dim = D,
				.first = first, .n = pos + 1 - first, .scale = scale, .out = bo.ptr,
				.workspace = bw.ptr, .workspace_bytes = ws,
			};
			rc = cuda_attn_decode(c, &a);
		}
		CHECK(rc == 0, "Q8_0 %s attention H %d G %d D %d: %s", mode ? "decode" : "prefill", H, G, D,
		      cuda_ctx_error(c));
		if (rc || get_f(c, o, &bo, mode ? (size_t)H * (size_t)D : nq))
			continue;
		int bad_exact = 0, bad_cpu = 0;
		double worst = 0.0;
		for (int t = mode ? T - 1 : 0; t < T; t++) {
			const uint32_t pos = pos0 + (uint32_t)t;
			const uint32_t first = window && pos + 1 > window ? pos + 1 - window : 0;
			for (int h = 0; h < H; h++) {
				const size_t qo = ((size_t)t * (size_t)H + (size_t)h) * (size_t)D;
				const size_t oo = mode ? (size_t)h * (size_t)D : qo;
				attn_ref_check_t(GGML_TYPE_Q8_0, q + qo, k, v, rb, (size_t)(h / (H / G)) * hb, D, first,
						 pos + 1 - first, scale, o + oo, &bad_exact, &bad_cpu, &worst);
			}
		}
		CHECK(bad_exact == 0 && bad_cpu == 0,
		      "Q8_0 %s attention H %d G %d D %d pos0 %u T %d window %u: %d off the exact softmax, %d off the CPU",
		      mode ? "decode" : "prefill", H, G, D, pos0, T, window, bad_exact, bad_cpu);
		printf("  Q8_0 %-7s attention H %2d G %d D %3d pos0 %5u T %2d window %3u  max |err|/sum w|v| = %.2e\n",
		       mode ? "decode" : "prefill", H, G, D, pos0, T, window, worst);
	}
out:
	cuda_buf_free(c, &bk);
	cuda_buf_free(c, &bv);
	cuda_buf_free(c, &bq);
	cuda_buf_free(c, &bo);
	cuda_buf_free(c, &bw);
	free(k);
	free(v);
	free(q);
	free(o);
}

/* KV rows stored by cuda_kv_store: Q8_0 bit-identical to the CPU's
 * quant_quantize_row (blocks of zeros, large and tiny values), F16 to
 * quant_fp32_to_fp16, at host and device positions. */
static void test_kv_store(cuda_ctx *c, struct rng *r)
{
	static const uint32_t types[] = {GGML_TYPE_F16, GGML_TYPE_Q8_0};
	const int64_t kd = 320;
	const int T = 7;
	const uint32_t pos = 5, P = 16;
	for (int ti = 0; ti < 2; ti++) {
		const uint32_t type = types[ti];
		const size_t rb = cuda_kv_row_bytes(type, kd);
		float *x = xmalloc(sizeof(float) * (size_t)(T * kd));
		uint8_t *want = xmalloc(rb * P), *got = xmalloc(rb * P);
		struct cuda_buf bx = {0}, bc = {0}, bp = {0};
		fill_f(r, x, (size_t)(T * kd), -1.0f, 1.0f);
		for (int64_t i = 0; i < T * kd; i++)
			x[i] = ldexpf(x[i], (int)(rng_u32(r) % 24) - 12);
		memset(x + 32, 0, 32 * sizeof(float));          /* a block of zeros */
		x[70] = 1e30f;                                   /* one huge value */
		memset(want, 0x5A, rb * P);
		for (int t = 0; t < T; t++)
			quant_quantize_row(type, x + t * kd, want + (size_t)(pos + (uint32_t)t) * rb, kd);
		/* the device-position store writes row 14 from x's first row */
		quant_quantize_row(type, x, want + 14 * rb, kd);
		const uint32_t p14 = 14;
		if (rb == 0 || dev_f(c, &bx, x, (size_t)(T * kd)) || cuda_buf_alloc(c, &bc, rb * P, CUDA_MEM_KV) ||
		    cuda_buf_alloc(c, &bp, 4, CUDA_MEM_SCRATCH) || cuda_upload(c, bp.ptr, &p14, 4)) {
			CHECK(0, "kv_store %s setup: %s", ggml_type_name(type), cuda_ctx_error(c));
			goto next;
		}
		uint8_t *fill = xmalloc(rb * P);
		memset(fill, 0x5A, rb * P);
		cuda_upload(c, bc.ptr, fill, rb * P);
		free(fill);
		int rc = cuda_kv_store(c, bc.ptr, type, kd, pos, NULL, bx.ptr, T);
		if (rc == 0)
			rc = cuda_kv_store(c, bc.ptr, type, kd, 0, bp.ptr, bx.ptr, 1);
		CHECK(rc == 0, "cuda_kv_store %s: %s", ggml_type_name(type), cuda_ctx_error(c));
		if (rc == 0 && cuda_sync(c) == 0 && cuda_download(c, got, bc.ptr, rb * P) == 0) {
			size_t bad = 0;
			for (size_t i = 0; i < rb * P; i++)
				bad += got[i] != want[i];
			CHECK(bad == 0, "kv_store %s: %zu bytes differ from the CPU's rows", ggml_type_name(type), bad);
		}
next:
		cuda_buf_free(c, &bx);
		cuda_buf_free(c, &bc);
		cuda_buf_free(c, &bp);
		free(x);
		free(want);
		free(got);
	}
	CHECK(cuda_kv_row_bytes(GGML_TYPE_Q8_0, 48) == 0, "Q8_0 rows of 48 values accepted");
	CHECK(cuda_kv_row_bytes(GGML_TYPE_Q4_0, 64) == 0, "Q4_0 KV rows accepted");
}

static void test_attention_q8(cuda_ctx *c, struct rng *r)
{
	test_kv_store(c, r);
	test_attn_q8_case(c, r, 1, 1, 64, 0, 1, 0);
	test_attn_q8_case(c, r, 9, 3, 64, 5, 37, 0);
	test_attn_q8_case(c, r, 8, 1, 128, 100, 64, 0);
	test_attn_q8_case(c, r, 4, 4, 256, 0, 33, 0);
	test_attn_q8_case(c, r, 32, 8, 64, 3000, 64, 0);
	test_attn_q8_case(c, r, 4, 1, 256, 600, 64, 512);
	test_attn_q8_case(c, r, 20, 1, 96, 10, 17, 0);
}

static void test_prefill_case(cuda_ctx *c, struct rng *r, int H, int G, int D, uint32_t pos0, int T, uint32_t window)
{
	const uint32_t P = pos0 + (uint32_t)T;
	const size_t row = (size_t)G * (size_t)D;
	uint16_t *k = xmalloc(sizeof(uint16_t) * row * P), *v = xmalloc(sizeof(uint16_t) * row * P);
	const size_t nq = (size_t)T * (size_t)H * (size_t)D;
	float *q = xmalloc(sizeof(float) * nq), *o = xmalloc(sizeof(float) * nq);
	struct cuda_buf bk = {0}, bv = {0}, bq = {0}, bo = {0};
	const float scale = 1.0f / sqrtf((float)D);

	for (size_t i = 0; i < row * P; i++) {
		k[i] = quant_fp32_to_fp16(rng_f(r, -1.0f, 1.0f));
		v[i] = quant_fp32_to_fp16(rng_f(r, -1.0f, 1.0f));
	}
	fill_f(r, q, nq, -3.0f, 3.0f);
	if (cuda_buf_alloc(c, &bk, sizeof(uint16_t) * row * P, CUDA_MEM_KV) ||
	    cuda_buf_alloc(c, &bv, sizeof(uint16_t) * row * P, CUDA_MEM_KV) ||
	    cuda_upload(c, bk.ptr, k, sizeof(uint16_t) * row * P) || cuda_upload(c, bv.ptr, v, sizeof(uint16_t) * row * P) ||
	    dev_f(c, &bq, q, nq) || dev_f(c, &bo, NULL, nq)) {
		CHECK(0, "prefill attention setup: %s", cuda_ctx_error(c));
		goto out;
	}
	struct cuda_attn_prefill_args a = {
		.q = bq.ptr, .k = bk.ptr, .v = bv.ptr, .kv_type = GGML_TYPE_F16, .n_head = H, .n_head_kv = G,
		.head_dim = D, .pos0 = pos0, .n_tok = T, .window = window, .scale = scale, .out = bo.ptr,
	};
	int rc = cuda_attn_prefill(c, &a);
	CHECK(rc == 0, "cuda_attn_prefill H %d G %d D %d T %d: %s", H, G, D, T, cuda_ctx_error(c));
	if (rc || get_f(c, o, &bo, nq))
		goto out;
	int bad_exact = 0, bad_cpu = 0;
	double worst = 0.0;
	for (int t = 0; t < T; t++) {
		const uint32_t pos = pos0 + (uint32_t)t;
		const uint32_t first = window && pos + 1 > window ? pos + 1 - window : 0;
		for (int h = 0; h < H; h++) {
			const size_t off = ((size_t)t * (size_t)H + (size_t)h) * (size_t)D;
			attn_ref_check(q + off, k, v, row, h / (H / G), D, first, pos + 1 - first, scale, o + off,
				       &bad_exact, &bad_cpu, &worst);
		}
	}
	CHECK(bad_exact == 0, "prefill attention H %d G %d D %d pos0 %u T %d window %u: %d outputs off the exact softmax",
	      H, G, D, pos0, T, window, bad_exact);
	CHECK(bad_cpu == 0, "prefill attention H %d G %d D %d pos0 %u T %d window %u: %d outputs off the CPU formula", H,
	      G, D, pos0, T, window, bad_cpu);
	printf("  prefill attention H %2d G %2d D %3d pos0 %5u T %3d window %4u  max |err|/sum w|v| = %.2e\n", H, G, D,
	       pos0, T, window, worst);
out:
	cuda_buf_free(c, &bk);
	cuda_buf_free(c, &bv);
	cuda_buf_free(c, &bq);
	cuda_buf_free(c, &bo);
	free(k);
	free(v);
	free(q);
	free(o);
}

static void test_prefill_attention(cuda_ctx *c, struct rng *r)
{
	test_prefill_case(c, r, 1, 1, 64, 0, 1, 0);
	test_prefill_case(c, r, 9, 3, 80, 5, 37, 0);       /* group 3: 5 tokens a block, a partial block */
	test_prefill_case(c, r, 8, 1, 128, 100, 64, 0);    /* group 8 */
	test_prefill_case(c, r, 4, 4, 256, 0, 33, 0);      /* no GQA, largest head */
	test_prefill_case(c, r, 32, 8, 64, 3000, 64, 0);   /* Llama-3.2-1B shape after 3000 positions */
	test_prefill_case(c, r, 4, 1, 256, 600, 64, 512);  /* gemma3-270m shape, sliding window */
	test_prefill_case(c, r, 20, 1, 64, 10, 17, 0);     /* a group of 20: two blocks per KV head */
	test_prefill_case(c, r, 14, 2, 64, 0, 64, 7);      /* window shorter than the batch */
	test_prefill_case(c, r, 6, 2, 34, 40, 9, 0);       /* head_dim 34 (not a multiple of 4) */
}

/* ---- decode graphs: positions from device memory, capture and replay ------------------------------- */

/* One decode step's position-dependent work captured once: a K row and a
 * V row stored at *pos, rope at *pos, attention over the window ending at
 * *pos with a grid for BUCKET positions; replayed at several positions
 * against plain launches (KV rows and rope bit-identical; attention
 * against the CPU formula with the decode tolerance). */
static void test_graph_case(cuda_ctx *c, struct rng *r, int H, int G, int D, uint32_t bucket, uint32_t window)
{
	const size_t row = (size_t)G * (size_t)D, nq = (size_t)H * (size_t)D;
	const uint32_t P = bucket + 8;
	uint16_t *k = xmalloc(sizeof(uint16_t) * row * P), *v = xmalloc(sizeof(uint16_t) * row * P);
	float *q = xmalloc(sizeof(float) * nq), *qr = xmalloc(sizeof(float) * nq), *o = xmalloc(sizeof(float) * nq);
	float *kx = xmalloc(sizeof(float) * row), *vx = xmalloc(sizeof(float) * row);
	float *q1 = xmalloc(sizeof(float) * nq);
	struct cuda_buf bk = {0}, bv = {0}, bq = {0}, bo = {0}, bw = {0}, bkx = {0}, bvx = {0}, bpos = {0}, bq0 = {0};
	cuda_graph *g = NULL;
	const float scale = 1.0f / sqrtf((float)D);
	const uint32_t n_max = window && window < bucket ? window : bucket;
	const size_t ws = cuda_attn_decode_workspace(H, G, D, P);

	for (size_t i = 0; i < row * P; i++) {
		k[i] = quant_fp32_to_fp16(rng_f(r, -1.0f, 1.0f));
		v[i] = quant_fp32_to_fp16(rng_f(r, -1.0f, 1.0f));
	}
	fill_f(r, q, nq, -3.0f, 3.0f);
	fill_f(r, kx, row, -1.0f, 1.0f);
	fill_f(r, vx, row, -1.0f, 1.0f);
	if (cuda_buf_alloc(c, &bk, 2 * row * P, CUDA_MEM_KV) || cuda_buf_alloc(c, &bv, 2 * row * P, CUDA_MEM_KV) ||
	    cuda_upload(c, bk.ptr, k, 2 * row * P) || cuda_upload(c, bv.ptr, v, 2 * row * P) || dev_f(c, &bq, NULL, nq) ||
	    dev_f(c, &bq0, q, nq) || dev_f(c, &bo, NULL, nq) || cuda_buf_alloc(c, &bw, ws, CUDA_MEM_SCRATCH) ||
	    dev_f(c, &bkx, kx, row) || dev_f(c, &bvx, vx, row) || cuda_buf_alloc(c, &bpos, 4, CUDA_MEM_SCRATCH)) {
		CHECK(0, "graph setup: %s", cuda_ctx_error(c));
		goto out;
	}
	/* q is copied from bq0 inside the graph, then roped in place */
	struct cuda_attn_args a = {
		.q = bq.ptr, .k = bk.ptr, .v = bv.ptr, .kv_type = GGML_TYPE_F16, .n_head = H, .n_head_kv = G,
		.head_dim = D, .first = 0, .n = n_max, .scale = scale, .out = bo.ptr, .workspace = bw.ptr,
		.workspace_bytes = ws, .pos_dev = bpos.ptr, .window = window,
	};
	int rc = cuda_capture_begin(c);
	CHECK(rc == 0, "cuda_capture_begin: %s", cuda_ctx_error(c));
	if (rc)
		goto out;
	int rs = cuda_copy2d(c, bq.ptr, nq * 4, bq0.ptr, nq * 4, nq * 4, 1);
	rs = rs ? rs : cuda_rope_dev(c, bq.ptr, H, D, D, bpos.ptr, 10000.0f, 1.0f, NULL, CUDA_ROPE_NEOX);
	rs = rs ? rs : cuda_kv_store(c, bk.ptr, GGML_TYPE_F16, (int64_t)row, 0, bpos.ptr, bkx.ptr, 1);
	rs = rs ? rs : cuda_kv_store(c, bv.ptr, GGML_TYPE_F16, (int64_t)row, 0, bpos.ptr, bvx.ptr, 1);
	rs = rs ? rs : cuda_attn_decode(c, &a);
	CHECK(rs == 0, "recording the graph: %s", cuda_ctx_error(c));
	rc = cuda_capture_end(c, &g);
	CHECK(rc == 0 && g, "cuda_capture_end: %s", cuda_ctx_error(c));
	if (rc || rs)
		goto out;
	const uint32_t positions[] = {0, 1, bucket / 3, window ? window + 3 : bucket / 2, bucket - 1};
	for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++) {
		const uint32_t pos = positions[pi];
		if (pos >= bucket || cuda_upload(c, bpos.ptr, &pos, 4) || cuda_graph_launch(c, g) || get_f(c, o, &bo, nq) ||
		    get_f(c, q1, &bq, nq)) {
			CHECK(pos >= bucket, "graph replay at %u: %s", pos, cuda_ctx_error(c));
			continue;
		}
		/* the reference: the same steps by plain launches on host copies */
		memcpy(qr, q, sizeof(float) * nq);
		struct cuda_buf tq = {0};
		if (dev_f(c, &tq, q, nq))
			continue;
		rc = cuda_rope(c, tq.ptr, 1, H, D, D, pos, 10000.0f, 1.0f, NULL, CUDA_ROPE_NEOX);
		if (rc == 0)
			get_f(c, qr, &tq, nq);
		cuda_buf_free(c, &tq);
		CHECK(rc == 0 && memcmp(qr, q1, sizeof(float) * nq) == 0, "graph at %u: rope differs from cuda_rope", pos);
		for (size_t i = 0; i < row; i++) {
			k[(size_t)pos * row + i] = quant_fp32_to_fp16(kx[i]);
			v[(size_t)pos * row + i] = quant_fp32_to_fp16(vx[i]);
		}
		uint16_t *kr = xmalloc(2 * row * (pos + 1));
		if (cuda_download(c, kr, bk.ptr, 2 * row * (pos + 1)) == 0)
			CHECK(memcmp(kr, k, 2 * row * (pos + 1)) == 0, "graph at %u: K rows differ", pos);
		free(kr);
		const uint32_t first = window && pos + 1 > window ? pos + 1 - window : 0;
		int bad_exact = 0, bad_cpu = 0;
		double worst = 0.0;
		for (int h = 0; h < H; h++)
			attn_ref_check(q1 + (size_t)h * (size_t)D, k, v, row, h / (H / G), D, first, pos + 1 - first, scale,
				       o + (size_t)h * (size_t)D, &bad_exact, &bad_cpu, &worst);
		CHECK(bad_exact == 0 && bad_cpu == 0, "graph H %d G %d D %d bucket %u window %u at %u: %d/%d outputs off", H,
		      G, D, bucket, window, pos, bad_exact, bad_cpu);
		printf("  graph replay H %2d G %d D %3d bucket %5u window %4u pos %5u  max |err|/sum w|v| = %.2e\n", H, G, D,
		       bucket, window, pos, worst);
	}
out:
	cuda_graph_free(c, g);
	cuda_buf_free(c, &bk);
	cuda_buf_free(c, &bv);
	cuda_buf_free(c, &bq);
	cuda_buf_free(c, &bq0);
	cuda_buf_free(c, &bo);
	cuda_buf_free(c, &bw);
	cuda_buf_free(c, &bkx);
	cuda_buf_free(c, &bvx);
	cuda_buf_free(c, &bpos);
	free(k);
	free(v);
	free(q);
	free(qr);
	free(o);
	free(kx);
	free(vx);
	free(q1);
}

static void test_graphs(cuda_ctx *c, struct rng *r)
{
	test_graph_case(c, r, 8, 2, 64, 256, 0);
	test_graph_case(c, r, 32, 8, 64, 4096, 0);   /* many chunks, most empty early on */
	test_graph_case(c, r, 4, 1, 256, 1024, 512); /* sliding window */
	/* a rejected call during capture fails the capture, and the stream
	 * works normally after */
	cuda_graph *g = NULL;
	if (cuda_capture_begin(c) == 0) {
		CHECK(cuda_rmsnorm(c, NULL, NULL, NULL, 1, 1, 0.0f) == CUDA_BE_EINVAL, "NULL rmsnorm accepted");
		CHECK(cuda_capture_end(c, &g) == 0 || g == NULL, "capture end");
		cuda_graph_free(c, g);
	}
	CHECK(cuda_sync(c) == 0, "stream unusable after a capture: %s", cuda_ctx_error(c));
}

/* ---- the bandwidth copy ---------------------------------------------------------------------------- */

static void test_membw(cuda_ctx *c)
{
	double gbps = 0.0;
	struct cuda_mem_usage u0, u1;
	CHECK(cuda_mem_get_usage(c, &u0) == 0, "cuda_mem_get_usage: %s", cuda_ctx_error(c));
	int rc = cuda_membw(c, (size_t)64 << 20, 5, &gbps);
	CHECK(rc == 0 && gbps > 1.0 && gbps < 1e5, "cuda_membw: rc %d, %.1f GB/s: %s", rc, gbps, cuda_ctx_error(c));
	printf("  copy kernel, 64 MiB: %.0f GB/s (read + write)\n", gbps);
	CHECK(cuda_mem_get_usage(c, &u1) == 0 && u1.ours[CUDA_MEM_SCRATCH] == u0.ours[CUDA_MEM_SCRATCH],
	      "cuda_membw left scratch allocated");
	CHECK(cuda_membw(c, 1000, 5, &gbps) == CUDA_BE_EINVAL, "cuda_membw of 1000 bytes accepted");
	CHECK(cuda_membw(c, (size_t)64 << 20, 0, &gbps) == CUDA_BE_EINVAL, "cuda_membw of 0 reps accepted");
}

/* ---- argument checks and accounting ---------------------------------------------------------------- */

static void test_errors(cuda_ctx *c)
{
	struct cuda_weight w = {0};
	uint8_t blk[4 * 34] = {0};
	struct cuda_buf b = {0};
	struct cuda_mem_usage u0, u1;

	CHECK(cuda_mem_get_usage(c, &u0) == 0 && u0.dev_total > 0, "cuda_mem_get_usage: %s", cuda_ctx_error(c));
	CHECK(cuda_weight_upload(c, &w, GGML_TYPE_Q8_0, 2, 48, blk, 34) == CUDA_BE_EINVAL,
	      "48 columns of Q8_0 accepted");
	CHECK(cuda_ctx_error(c)[0] != '\0', "no message for a rejected upload");
	CHECK(cuda_weight_upload(c, &w, GGML_TYPE_Q8_K, 1, 256, blk, 292) == CUDA_BE_EUNSUPPORTED,
	      "Q8_K weight accepted");
	CHECK(cuda_weight_upload(c, &w, GGML_TYPE_IQ2_XXS, 1, 256, blk, 66) == CUDA_BE_EUNSUPPORTED,
	      "IQ2_XXS weight accepted");
	CHECK(cuda_weight_upload(c, &w, GGML_TYPE_Q8_0, 2, 64, blk, 60) == CUDA_BE_EINVAL,
	      "row stride below the row size accepted");
	CHECK(cuda_weight_upload(c, &w, GGML_TYPE_Q8_0, INT64_MAX / 2, 32, blk, 34) == CUDA_BE_EINVAL,
	      "absurd row count accepted");
	CHECK(w.buf.ptr == NULL, "a rejected upload left a buffer");

	CHECK(cuda_weight_upload(c, &w, GGML_TYPE_Q8_0, 2, 64, blk, 68) == 0, "upload: %s", cuda_ctx_error(c));
	CHECK(cuda_mem_get_usage(c, &u1) == 0 && u1.ours[CUDA_MEM_WEIGHTS] == u0.ours[CUDA_MEM_WEIGHTS] + 136,
	      "weights not counted: %zu -> %zu", u0.ours[CUDA_MEM_WEIGHTS], u1.ours[CUDA_MEM_WEIGHTS]);
	if (cuda_buf_alloc(c, &b, 1024, CUDA_MEM_SCRATCH) == 0 && w.buf.ptr) {
		float *x = b.ptr;
		CHECK(cuda_matvec(c, &w, x + 1, x + 128) == CUDA_BE_EINVAL, "unaligned x accepted for Q8_0");
		CHECK(cuda_matvec(c, &w, x, x + 1) == CUDA_BE_EINVAL, "y overlapping x accepted");
		CHECK(cuda_dequant_rows(c, &w, 1, 2, x) == CUDA_BE_EINVAL, "rows past the end accepted");
		CHECK(cuda_rope(c, x, 1, 1, 8, 7, 0, 10000.0f, 1.0f, NULL, CUDA_ROPE_NORM) == CUDA_BE_EINVAL,
		      "odd n_rot accepted");
		CHECK(cuda_rope(c, x, 1, 1, 8, 16, 0, 10000.0f, 1.0f, NULL, CUDA_ROPE_NORM) == CUDA_BE_EINVAL,
		      "n_rot > head_dim accepted");
		CHECK(cuda_softmax(c, x, x, 0, 8, 1.0f) == CUDA_BE_EINVAL, "0 rows accepted");
		struct cuda_attn_args a = {
			.q = x, .k = x + 64, .v = x + 64, .kv_type = GGML_TYPE_Q8_0, .n_head = 2, .n_head_kv = 1,
			.head_dim = 8, .first = 0, .n = 4, .scale = 1.0f, .out = x + 32, .workspace = x + 128,
			.workspace_bytes = 512,
		};
		CHECK(cuda_attn_decode(c, &a) == CUDA_BE_EUNSUPPORTED, "Q8_0 KV with head_dim 8 accepted");
		a.kv_type = GGML_TYPE_F16;
		a.n_head_kv = 3;
		CHECK(cuda_attn_decode(c, &a) == CUDA_BE_EINVAL, "3 KV heads for 2 heads accepted");
		a.n_head_kv = 1;
		a.workspace_bytes = 8;
		CHECK(cuda_attn_decode(c, &a) == CUDA_BE_EINVAL, "tiny workspace accepted");
		a.workspace_bytes = 512;
		a.out = x + 4;
		CHECK(cuda_attn_decode(c, &a) == CUDA_BE_EINVAL, "out overlapping q accepted");
		CHECK(cuda_sync(c) == 0, "a rejected call left an error: %s", cuda_ctx_error(c));
	}
	CHECK(cuda_attn_decode_workspace(3, 2, 64, 100) == 0, "workspace for 3 heads on 2 KV heads");
	CHECK(cuda_attn_decode_workspace(64, 1, 1024, 100) == 0, "workspace for a group too large for shared memory");
	cuda_buf_free(c, &b);
	cuda_weight_free(c, &w);
	CHECK(cuda_mem_get_usage(c, &u1) == 0 && u1.ours[CUDA_MEM_WEIGHTS] == u0.ours[CUDA_MEM_WEIGHTS] &&
		      u1.ours[CUDA_MEM_SCRATCH] == u0.ours[CUDA_MEM_SCRATCH],
	      "freed bytes still counted");
}

int main(void)
{
	char err[256];
	int n = cuda_backend_available(err, sizeof err);
	if (n <= 0) {
		/* the no-device path itself must be clean */
		cuda_ctx *c = (cuda_ctx *)1;
		int rc = cuda_ctx_create(&c, 0, err, sizeof err);
		if (rc >= 0 || c != NULL || !err[0]) {
			fprintf(stderr, "FAIL: without a device cuda_ctx_create returned %d, ctx %p, message '%s'\n", rc,
				(void *)c, err);
			return 1;
		}
		cuda_backend_available(err, sizeof err);
		printf("SKIP: %s; make check-cuda needs an NVIDIA GPU of compute capability 8.0 or newer and "
		       "its driver\n", err);
		return 77;
	}
	struct cuda_device_info info;
	if (cuda_device_query(0, &info, err, sizeof err) == 0)
		printf("device 0: %s, compute capability %d.%d, %d SMs, %zu of %zu MiB free\n", info.name,
		       info.cc_major, info.cc_minor, info.sm_count, info.free_bytes >> 20, info.total_bytes >> 20);
	cuda_ctx *c = NULL;
	if (cuda_ctx_create(&c, 0, err, sizeof err) != 0) {
		fprintf(stderr, "FAIL: cuda_ctx_create: %s\n", err);
		return 1;
	}
	struct rng r = {0x9E3779B97F4A7C15ull};

	test_errors(c);
	test_matvec(c, &r);
	test_rmsnorm(c, &r);
	test_rope(c, &r);
	test_glu(c, &r);
	test_softmax(c, &r);
	test_elementwise(c, &r);
	test_attention(c, &r);
	test_dequant_f16(c, &r);
	test_gemm(c, &r);
	test_batch_ops(c, &r);
	test_prefill_attention(c, &r);
	test_graphs(c, &r);
	test_attention_q8(c, &r);
	test_membw(c);

	cuda_ctx_free(c);
	return tu_finish();
}
