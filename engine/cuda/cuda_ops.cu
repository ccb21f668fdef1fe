/*
 * cuda_ops.cu - the small kernels of a decode step: RMS norm, rotary
 * embedding, gated activations, softmax, residual add (and a bias on
 * every row of a batch), f32 -> f16, KV rows (F16, Q8_0).
 *
 * Each follows the CPU engine's formula (engine/forward.c) in the same
 * order of float operations, with __fmul_rn/__fadd_rn where nvcc would
 * otherwise fuse a multiply and an add, so the remaining differences are
 * those of the math library (CUDA's expf/cosf/sinf/tanhf are within 2 ulp,
 * glibc's within 1) and of summation order:
 *   - RMS norm sums squares in double like the CPU, one block per row;
 *   - RoPE advances theta by repeated multiplication by base^(-2/n_rot)
 *     (the power itself computed on the host with the same powf as the
 *     CPU), each thread repeating the multiplications up to its own pair so
 *     that theta is bit-identical;
 *   - GELU goes through f16 on input and output as ggml's table does.
 * Elementwise kernels use a grid-stride loop over at most 65535 blocks.
 */
#include <math.h>

#include "cuda_impl.cuh"

#define OPS_THREADS 256

static unsigned ops_grid(int64_t n)
{
	int64_t g = (n + OPS_THREADS - 1) / OPS_THREADS;
	return (unsigned)(g < 1 ? 1 : g > 65535 ? 65535 : g);
}

/* Sum over the block of one value per thread; every thread gets the sum.
 * blockDim.x is a multiple of 32, at most 1024. */
__device__ double block_sum_d(double v, double *sh)
{
	const int lane = (int)(threadIdx.x & 31), warp = (int)(threadIdx.x / 32);
	const int nwarps = (int)(blockDim.x / 32);
	v = cu_warp_sum_d(v);
	if (lane == 0)
		sh[warp] = v;
	__syncthreads();
	v = lane < nwarps ? sh[lane] : 0.0;
	v = cu_warp_sum_d(v);
	__syncthreads(); /* sh may be reused right after */
	return v;
}

__device__ float block_sum_f(float v, float *sh)
{
	const int lane = (int)(threadIdx.x & 31), warp = (int)(threadIdx.x / 32);
	const int nwarps = (int)(blockDim.x / 32);
	v = cu_warp_sum(v);
	if (lane == 0)
		sh[warp] = v;
	__syncthreads();
	v = lane < nwarps ? sh[lane] : 0.0f;
	v = cu_warp_sum(v);
	__syncthreads();
	return v;
}

__device__ float block_max_f(float v, float *sh)
{
	const int lane = (int)(threadIdx.x & 31), warp = (int)(threadIdx.x / 32);
	const int nwarps = (int)(blockDim.x / 32);
	v = cu_warp_max(v);
	if (lane == 0)
		sh[warp] = v;
	__syncthreads();
	v = lane < nwarps ? sh[lane] : -INFINITY;
	v = cu_warp_max(v);
	__syncthreads();
	return v;
}

/* ---- RMS norm: one block per row ----------------------------------------------- */

/* y may equal x: each element is read and written by the same thread. */
__global__ void __launch_bounds__(OPS_THREADS)
k_rmsnorm(float *y, const float *x, const float *__restrict__ w, int64_t n, float eps)
{
	__shared__ double sh[32];
	const float *xr = x + (size_t)blockIdx.x * (size_t)n;
	float *yr = y + (size_t)blockIdx.x * (size_t)n;
	double sum = 0.0;
	for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
		sum += (double)xr[i] * (double)xr[i];
	sum = block_sum_d(sum, sh);
	const float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
	if (w)
		for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
			yr[i] = __fmul_rn(__fmul_rn(xr[i], scale), w[i]);
	else
		for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
			yr[i] = __fmul_rn(xr[i], scale);
}

void cu_launch_rmsnorm(cudaStream_t s, float *y, const float *x, const float *w, int64_t rows, int64_t n,
		       float eps)
{
	k_rmsnorm<<<(unsigned)rows, OPS_THREADS, 0, s>>>(y, x, w, n, eps);
}

/* ---- RoPE: one thread per rotated pair ------------------------------------------- */

__global__ void k_rope(float *x, int n_tokens, int n_heads, int head_dim, int n_rot, uint32_t pos0,
		       const uint32_t *__restrict__ pos_dev, float theta_scale, float scale,
		       const float *__restrict__ ff, int neox)
{
	if (pos_dev)
		pos0 = *pos_dev;
	const int half = n_rot / 2;
	const int64_t total = (int64_t)n_tokens * n_heads * half;
	for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
	     t += (int64_t)gridDim.x * blockDim.x) {
		const int i = (int)(t % half);
		const int64_t th = t / half; /* token * n_heads + head */
		const int tok = (int)(th / n_heads);
		float theta = (float)(pos0 + (uint32_t)tok) * scale;
		for (int k = 0; k < i; k++)
			theta *= theta_scale;
		const float a_t = ff ? theta / ff[i] : theta;
		const float c = cosf(a_t), sn = sinf(a_t);
		float *v = x + (size_t)th * (size_t)head_dim;
		const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
		const float x0 = v[a], x1 = v[b];
		v[a] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, sn));
		v[b] = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, c));
	}
}

void cu_launch_rope(cudaStream_t s, float *x, int n_tokens, int n_heads, int head_dim, int n_rot,
		    uint32_t pos0, const uint32_t *pos_dev, float theta_scale, float scale, const float *ff, int neox)
{
	const int64_t total = (int64_t)n_tokens * n_heads * (n_rot / 2);
	k_rope<<<ops_grid(total), OPS_THREADS, 0, s>>>(x, n_tokens, n_heads, head_dim, n_rot, pos0, pos_dev,
							theta_scale, scale, ff, neox);
}

/* ---- gated activations ------------------------------------------------------------- */

__global__ void k_glu(float *gate, const float *up, int64_t n, int gelu)
{
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (int64_t)gridDim.x * blockDim.x) {
		float x = gate[i], g;
		if (!gelu) {
			g = x / (1.0f + expf(-x));
		} else if (x <= -10.0f) {
			g = 0.0f;
		} else if (x >= 10.0f) {
			g = x;
		} else {
			/* 0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2))), on f16 */
			const float c = 0.7978845608028654f;
			x = cu_f16_round(x);
			const float inner = __fadd_rn(1.0f, __fmul_rn(__fmul_rn(0.044715f, x), x));
			const float th = tanhf(__fmul_rn(__fmul_rn(c, x), inner));
			g = cu_f16_round(__fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, th)));
		}
		gate[i] = __fmul_rn(g, up[i]);
	}
}

void cu_launch_glu(cudaStream_t s, float *gate, const float *up, int64_t n, int gelu)
{
	k_glu<<<ops_grid(n), OPS_THREADS, 0, s>>>(gate, up, n, gelu);
}

/* ---- softmax: one block per row ----------------------------------------------------- */

__global__ void __launch_bounds__(OPS_THREADS)
k_softmax(float *y, const float *x, int64_t n, float scale)
{
	__shared__ float sh[32];
	const float *xr = x + (size_t)blockIdx.x * (size_t)n;
	float *yr = y + (size_t)blockIdx.x * (size_t)n;
	float mx = -INFINITY;
	for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
		mx = fmaxf(mx, __fmul_rn(xr[i], scale));
	mx = block_max_f(mx, sh);
	float sum = 0.0f;
	for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
		sum += expf(__fsub_rn(__fmul_rn(xr[i], scale), mx));
	sum = block_sum_f(sum, sh);
	const float inv = 1.0f / sum;
	for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
		yr[i] = expf(__fsub_rn(__fmul_rn(xr[i], scale), mx)) * inv;
}

void cu_launch_softmax(cudaStream_t s, float *y, const float *x, int64_t rows, int64_t n, float scale)
{
	k_softmax<<<(unsigned)rows, OPS_THREADS, 0, s>>>(y, x, n, scale);
}

/* ---- elementwise ------------------------------------------------------------------- */

__global__ void k_add(float *y, const float *x, int64_t n)
{
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (int64_t)gridDim.x * blockDim.x)
		y[i] += x[i];
}

void cu_launch_add(cudaStream_t s, float *y, const float *x, int64_t n)
{
	k_add<<<ops_grid(n), OPS_THREADS, 0, s>>>(y, x, n);
}

/* y[r][i] += b[i]: a bias on every row */
__global__ void k_add_rows(float *y, const float *__restrict__ b, int64_t rows, int64_t n)
{
	const int64_t total = rows * n;
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
	     i += (int64_t)gridDim.x * blockDim.x)
		y[i] += b[i % n];
}

void cu_launch_add_rows(cudaStream_t s, float *y, const float *b, int64_t rows, int64_t n)
{
	k_add_rows<<<ops_grid(rows * n), OPS_THREADS, 0, s>>>(y, b, rows, n);
}

__global__ void k_f32_to_f16(uint16_t *__restrict__ dst, const float *__restrict__ x, int64_t n)
{
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (int64_t)gridDim.x * blockDim.x)
		dst[i] = cu_f2h(x[i]);
}

void cu_launch_f32_to_f16(cudaStream_t s, uint16_t *dst, const float *x, int64_t n)
{
	k_f32_to_f16<<<ops_grid(n), OPS_THREADS, 0, s>>>(dst, x, n);
}

/* KV rows: n_tok rows of kd floats into an F16 cache at row pos (or
 * *pos_dev) */
__global__ void k_kv_store_f16(uint16_t *__restrict__ cache, int64_t kd, uint32_t pos,
			       const uint32_t *__restrict__ pos_dev, const float *__restrict__ x, int64_t n)
{
	if (pos_dev)
		pos = *pos_dev;
	uint16_t *dst = cache + (size_t)pos * (size_t)kd;
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (int64_t)gridDim.x * blockDim.x)
		dst[i] = cu_f2h(x[i]);
}

/* Q8_0 rows: one warp per block of 32 values, quantised as the CPU's
 * quant_quantize_row (cu_q8_lane); rows of kd / 32 blocks of 34 bytes
 * (f16 d, then 32 int8). */
__global__ void k_kv_store_q8_0(uint8_t *__restrict__ cache, int64_t kd, uint32_t pos,
				const uint32_t *__restrict__ pos_dev, const float *__restrict__ x, int64_t n_blocks)
{
	if (pos_dev)
		pos = *pos_dev;
	uint8_t *dst = cache + (size_t)pos * (size_t)(kd / 32) * 34;
	const int lane = (int)(threadIdx.x & 31);
	const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
	for (int64_t b = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; b < n_blocks; b += warps) {
		float d;
		const int q = cu_q8_lane(x[b * 32 + lane], &d);
		uint8_t *blk = dst + (size_t)b * 34;
		blk[2 + lane] = (uint8_t)(int8_t)q;
		if (lane == 0) {
			const uint16_t h = cu_f2h(d);
			blk[0] = (uint8_t)h;
			blk[1] = (uint8_t)(h >> 8);
		}
	}
}

void cu_launch_kv_store(cudaStream_t s, uint32_t type, void *cache, int64_t kd, uint32_t pos,
			const uint32_t *pos_dev, const float *x, int n_tok)
{
	const int64_t n = kd * n_tok;
	if (type == GGML_TYPE_F16)
		k_kv_store_f16<<<ops_grid(n), OPS_THREADS, 0, s>>>((uint16_t *)cache, kd, pos, pos_dev, x, n);
	else if (type == GGML_TYPE_Q8_0)
		k_kv_store_q8_0<<<ops_grid(n), OPS_THREADS, 0, s>>>((uint8_t *)cache, kd, pos, pos_dev, x, n / 32);
}

/* ---- copy (bandwidth) ------------------------------------------------------------------- */

__global__ void k_copy16(uint4 *__restrict__ dst, const uint4 *__restrict__ src, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		dst[i] = src[i];
}

void cu_launch_copy16(cudaStream_t s, void *dst, const void *src, size_t n16, int sm_count)
{
	/* enough resident blocks to keep every SM's loads in flight */
	const unsigned grid = (unsigned)(sm_count > 0 ? sm_count * 8 : 1024);
	k_copy16<<<grid, 512, 0, s>>>((uint4 *)dst, (const uint4 *)src, n16);
}
