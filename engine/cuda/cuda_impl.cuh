/*
 * cuda_impl.cuh - what the .cu files of engine/cuda share: the context
 * struct, device helpers (f16/bf16 conversion, warp sums) and the kernel
 * launchers that cuda_backend.cu calls after it has checked the
 * arguments.
 *
 * Each launcher lives in the same .cu as its kernels (no relocatable
 * device code: every kernel is launched from its own translation unit), so
 * the files link as plain host objects.  A launcher trusts its arguments
 * (cuda_backend.cu validated them), queues on the given stream and returns
 * without checking for launch errors; the caller reads cudaGetLastError().
 */
#ifndef TTYCHAT_CUDA_IMPL_CUH
#define TTYCHAT_CUDA_IMPL_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cuda_backend.h"

extern "C" {
#include "gguf.h"
#include "quant.h"
}

struct cuda_ctx {
	int device;
	cudaStream_t stream;
	size_t used[CUDA_MEM_KINDS];
	size_t smem_per_block;
	int sm_count;
	char err[256];
	void *blas;               /* cublasHandle_t on this stream, made on first use */
	int blas_failed;          /* cuBLAS could not be loaded or set up: blas_err says why */
	char blas_err[200];
};

/* ---- device helpers ---------------------------------------------------------- */

__host__ __device__ __forceinline__ float cu_h2f(uint16_t h)
{
	return __half2float(__ushort_as_half(h));
}

/* IEEE round to nearest even, as quant_fp32_to_fp16 (NaN payloads aside). */
__device__ __forceinline__ uint16_t cu_f2h(float f)
{
	return __half_as_ushort(__float2half_rn(f));
}

__device__ __forceinline__ float cu_f16_round(float f)
{
	return __half2float(__float2half_rn(f));
}

__host__ __device__ __forceinline__ float cu_bf2f(uint16_t h)
{
#ifdef __CUDA_ARCH__
	return __uint_as_float((uint32_t)h << 16);
#else
	const uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
#endif
}

/* A little-endian half at a 2-byte aligned address. */
__host__ __device__ __forceinline__ float cu_ld_h(const uint8_t *p)
{
	return cu_h2f(*(const uint16_t *)p);
}

__device__ __forceinline__ float cu_warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ __forceinline__ double cu_warp_sum_d(double v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ __forceinline__ float cu_warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/* Q8_0 rounding of v = x * (127 / amax), as the CPU's q8_round (round to
 * nearest even, clamped). */
__device__ __forceinline__ int cu_q8_round(float v)
{
	if (!(v > -128.5f))
		return -128;
	if (v >= 127.5f)
		return 127;
	return __float2int_rn(v);
}

/* Q8_0 quantisation of one 32-value block held one value per lane, as the
 * CPU's quant_q8_0_quantize_ref: the lane's integer and (every lane) the
 * block's scale as the f16 the block stores, widened. */
__device__ __forceinline__ int cu_q8_lane(float x, float *d_out)
{
	const float amax = cu_warp_max(fabsf(x));
	const float d = amax / 127.0f;
	const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
	*d_out = cu_h2f(cu_f2h(d));
	return cu_q8_round(__fmul_rn(x, id));
}

/* ---- launchers (cuda_quant.cu) ------------------------------------------------- */

/* 1 when the quant kernels handle TYPE. */
int cu_quant_supported(uint32_t type);
void cu_launch_matvec(cudaStream_t s, uint32_t type, const void *w, size_t row_bytes, int64_t rows,
		      int64_t cols, const float *x, float *y);
void cu_launch_dequant_rows(cudaStream_t s, uint32_t type, const void *w, size_t row_bytes,
			    int64_t n_rows, int64_t cols, float *y);

/* ---- launchers (cuda_ops.cu) --------------------------------------------------- */

void cu_launch_rmsnorm(cudaStream_t s, float *y, const float *x, const float *w, int64_t rows,
		       int64_t n, float eps);
void cu_launch_rope(cudaStream_t s, float *x, int n_tokens, int n_heads, int head_dim, int n_rot,
		    uint32_t pos0, const uint32_t *pos_dev, float theta_scale, float scale, const float *ff, int neox);
void cu_launch_glu(cudaStream_t s, float *gate, const float *up, int64_t n, int gelu);
void cu_launch_softmax(cudaStream_t s, float *y, const float *x, int64_t rows, int64_t n, float scale);
void cu_launch_add(cudaStream_t s, float *y, const float *x, int64_t n);
void cu_launch_add_rows(cudaStream_t s, float *y, const float *b, int64_t rows, int64_t n);
/* dst[i] = src[i] for n16 16-byte words (the bandwidth copy). */
void cu_launch_copy16(cudaStream_t s, void *dst, const void *src, size_t n16, int sm_count);
void cu_launch_f32_to_f16(cudaStream_t s, uint16_t *dst, const float *x, int64_t n);
/* n_tok rows of kd floats into a cache of TYPE at row pos (*pos_dev when
 * pos_dev is not NULL). */
void cu_launch_kv_store(cudaStream_t s, uint32_t type, void *cache, int64_t kd, uint32_t pos,
			const uint32_t *pos_dev, const float *x, int n_tok);

/* ---- cuda_gemm.cu ------------------------------------------------------------- */

/* 0 when c->blas is usable (cuBLAS loaded, a handle on c's stream), else
 * -1 with the reason in err (remembered: later calls fail at once). */
int cu_blas_ready(cuda_ctx *c, char *err, size_t errlen);
void cu_blas_release(cuda_ctx *c);
/* Rows of a weight of TYPE as f16 (n_rows * cols halves at y, 16-byte
 * aligned). */
void cu_launch_dequant_f16(cudaStream_t s, uint32_t type, const void *w, size_t rb, int64_t n_rows,
			   int64_t cols, void *y);
/* y[t][r] = W[r] . x16[t] through tiles of TILE_ROWS rows; cu_blas_ready()
 * first.  0, or -1 with a message in err. */
int cu_gemm(cuda_ctx *c, uint32_t type, const void *w, size_t rb, int64_t rows, int64_t cols, const void *x16,
	    int64_t n_tok, float *y, void *tile, int64_t tile_rows, char *err, size_t errlen);

/* ---- cuda_attn_prefill.cu ------------------------------------------------------- */

/* Query heads per block (hb), tokens per block (bq) and blocks per group
 * (n_hc) for GROUP query heads per KV head. */
void cu_attn_prefill_geometry(int group, int *hb, int *bq, int *n_hc);
/* Dynamic shared memory of the prefill kernel for HEAD_DIM (<= 256) and
 * an F16 (q8 0) or Q8_0 (q8 1) cache. */
size_t cu_attn_prefill_smem(int head_dim, int q8);
void cu_launch_attn_prefill(cudaStream_t s, const struct cuda_attn_prefill_args *a);

/* ---- launchers (cuda_attn.cu) -------------------------------------------------- */

/* Positions per chunk for a group of GROUP query heads of HEAD_DIM within
 * SMEM bytes of shared memory; 0 when even the smallest chunk does not fit. */
int cu_attn_chunk(int group, int head_dim, size_t smem);
/* The chunk a call attending N positions uses (MAX_CHUNK from
 * cu_attn_chunk()): never below min(64, max_chunk). */
int cu_attn_chunk_for(int max_chunk, uint32_t n, int n_head_kv);
/* Most chunks any call attending up to N_CTX positions uses. */
uint64_t cu_attn_max_splits(int max_chunk, uint32_t n_ctx, int n_head_kv);
/* Largest number of chunks the merge kernel's shared memory holds. */
#define CU_ATTN_MAX_SPLITS 8192
/* The default shared memory budget the chunk is sized for. */
#define CU_ATTN_SMEM (48u * 1024u)
void cu_launch_attn_decode(cudaStream_t s, const struct cuda_attn_args *a, int chunk);

#endif
