/*
 * cuda_gemm.cu - the batched matrix products of a prefill: a weight as
 * stored (quantised) is dequantised into f16 tiles, and cuBLAS's GemmEx
 * multiplies each tile with the f16 activations on the tensor cores,
 * accumulating in f32 and writing f32.
 *
 * cuBLAS is not linked: libcublas.so.<major of the headers> (or the file
 * named by $TTYCHAT_CUBLAS) is loaded with dlopen() the first time a
 * context asks for it, so a machine without the library (or without a
 * GPU) starts as before; without it cuda_gemm_available() says why and
 * the forward pass runs its prefill token by token.  The library handle
 * and the resolved entry points are process-wide and written once under
 * pthread_once (they never change after); the cublasHandle_t belongs to
 * the context, bound to its stream.
 *
 * Layout: y[t][r] = sum_j W[r][j] x[t][j] for T tokens.  cuBLAS is
 * column-major, so W's rows (cols halves each) are a cols x rows
 * column-major matrix used transposed, x ([T][cols] halves) a cols x T
 * one, and y ([T][rows] floats) a rows x T one: C = op_T(A) * B with
 * m = rows of the tile, n = T, k = cols, and the tile of rows r0.. writes
 * C + r0 with ldc = rows.  F16 weights are used in place (no tile).
 *
 * Dequantisation into f16 uses the same per-unit functions as the matvec
 * (cuda_dequant.cuh): each value is the CPU's f32 value rounded to the
 * nearest f16 (relative error 2^-11; values beyond 65504 become
 * infinite, which no quantised block produces: its f16 scales bound it).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <cublas_api.h>

#include "cuda_dequant.cuh"

/* ---- loading cuBLAS ---------------------------------------------------------------- */

typedef cublasStatus_t (*fn_create)(cublasHandle_t *);
typedef cublasStatus_t (*fn_destroy)(cublasHandle_t);
typedef cublasStatus_t (*fn_set_stream)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*fn_gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
				     const void *, const void *, cudaDataType, int, const void *, cudaDataType,
				     int, const void *, void *, cudaDataType, int, cublasComputeType_t,
				     cublasGemmAlgo_t);
typedef const char *(*fn_status_string)(cublasStatus_t);

static struct {
	void *lib;
	fn_create create;
	fn_destroy destroy;
	fn_set_stream set_stream;
	fn_gemm_ex gemm_ex;
	fn_status_string status_string;
	char err[200];
} blas;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

#define STR2(x) #x
#define STR(x) STR2(x)

static void blas_load(void)
{
	const char *env = getenv("TTYCHAT_CUBLAS");
	const char *names[] = {env && env[0] ? env : NULL, "libcublas.so." STR(CUBLAS_VER_MAJOR)};
	const char *tried = names[1];
	for (int i = 0; i < 2 && !blas.lib; i++)
		if (names[i]) {
			blas.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
			tried = names[i];
		}
	if (!blas.lib) {
		const char *e = dlerror();
		snprintf(blas.err, sizeof blas.err, "cuBLAS not loaded (%.120s): %s", tried, e ? e : "dlopen failed");
		return;
	}
	blas.create = (fn_create)dlsym(blas.lib, "cublasCreate_v2");
	blas.destroy = (fn_destroy)dlsym(blas.lib, "cublasDestroy_v2");
	blas.set_stream = (fn_set_stream)dlsym(blas.lib, "cublasSetStream_v2");
	blas.gemm_ex = (fn_gemm_ex)dlsym(blas.lib, "cublasGemmEx");
	blas.status_string = (fn_status_string)dlsym(blas.lib, "cublasGetStatusString");
	if (!blas.create || !blas.destroy || !blas.set_stream || !blas.gemm_ex) {
		snprintf(blas.err, sizeof blas.err, "cuBLAS (%.120s) lacks cublasCreate_v2/cublasGemmEx", tried);
		dlclose(blas.lib);
		blas.lib = NULL;
	}
}

static const char *blas_status(cublasStatus_t s)
{
	return blas.status_string ? blas.status_string(s) : "cuBLAS error";
}

int cu_blas_ready(cuda_ctx *c, char *err, size_t errlen)
{
	if (c->blas)
		return 0;
	if (c->blas_failed) {
		snprintf(err, errlen, "%s", c->blas_err);
		return -1;
	}
	pthread_once(&blas_once, blas_load);
	cublasHandle_t h = NULL;
	cublasStatus_t s = CUBLAS_STATUS_NOT_INITIALIZED;
	if (!blas.lib) {
		snprintf(c->blas_err, sizeof c->blas_err, "%s", blas.err);
	} else if ((s = blas.create(&h)) != CUBLAS_STATUS_SUCCESS ||
		   (s = blas.set_stream(h, c->stream)) != CUBLAS_STATUS_SUCCESS) {
		snprintf(c->blas_err, sizeof c->blas_err, "cuBLAS: %s", blas_status(s));
		if (h)
			blas.destroy(h);
		h = NULL;
	}
	if (!h) {
		c->blas_failed = 1;
		snprintf(err, errlen, "%s", c->blas_err);
		return -1;
	}
	c->blas = h;
	return 0;
}

void cu_blas_release(cuda_ctx *c)
{
	if (c->blas && blas.destroy)
		blas.destroy((cublasHandle_t)c->blas);
	c->blas = NULL;
}

/* ---- dequantisation into f16 ------------------------------------------------------------ */

template <uint32_t T>
__global__ void k_dequant_f16_blocks(const uint8_t *__restrict__ w, size_t row_bytes, int64_t n_rows,
				     int64_t units, __half *__restrict__ y)
{
	const int64_t total = n_rows * units;
	for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
	     t += (int64_t)gridDim.x * blockDim.x) {
		const int64_t r = t / units, u = t % units;
		float v[32];
		deq_unit<T>(w + (size_t)r * row_bytes, u, v);
		/* 16-byte stores: a unit is 64 bytes of f16, 64-byte aligned */
		uint4 *dst = (uint4 *)(y + (size_t)r * (size_t)units * 32 + (size_t)u * 32);
#pragma unroll
		for (int j = 0; j < 4; j++) {
			__half2 h[4];
#pragma unroll
			for (int k = 0; k < 4; k++)
				h[k] = __floats2half2_rn(v[8 * j + 2 * k], v[8 * j + 2 * k + 1]);
			dst[j] = *(const uint4 *)h;
		}
	}
}

template <uint32_t T>
__global__ void k_dequant_f16_float(const uint8_t *__restrict__ w, size_t row_bytes, int64_t n_rows,
				    int64_t cols, __half *__restrict__ y)
{
	const int64_t total = n_rows * cols;
	for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
	     t += (int64_t)gridDim.x * blockDim.x) {
		const int64_t r = t / cols, i = t % cols;
		y[t] = __float2half_rn(deq_elem<T>(w + (size_t)r * row_bytes, i));
	}
}

static unsigned gemm_grid(int64_t work)
{
	const int64_t g = (work + 255) / 256;
	return (unsigned)(g < 1 ? 1 : g > 65535 ? 65535 : g);
}

template <uint32_t T>
static void deq_blocks(cudaStream_t s, const void *w, size_t rb, int64_t n_rows, int64_t cols, void *y)
{
	k_dequant_f16_blocks<T><<<gemm_grid(n_rows * (cols / 32)), 256, 0, s>>>((const uint8_t *)w, rb, n_rows,
										  cols / 32, (__half *)y);
}

template <uint32_t T>
static void deq_float(cudaStream_t s, const void *w, size_t rb, int64_t n_rows, int64_t cols, void *y)
{
	k_dequant_f16_float<T><<<gemm_grid(n_rows * cols), 256, 0, s>>>((const uint8_t *)w, rb, n_rows, cols,
									  (__half *)y);
}

void cu_launch_dequant_f16(cudaStream_t s, uint32_t type, const void *w, size_t rb, int64_t n_rows, int64_t cols,
			   void *y)
{
	switch (type) {
	case GGML_TYPE_F32: deq_float<GGML_TYPE_F32>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_F16: deq_float<GGML_TYPE_F16>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_BF16: deq_float<GGML_TYPE_BF16>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q4_0: deq_blocks<GGML_TYPE_Q4_0>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q4_1: deq_blocks<GGML_TYPE_Q4_1>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q5_0: deq_blocks<GGML_TYPE_Q5_0>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q5_1: deq_blocks<GGML_TYPE_Q5_1>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q8_0: deq_blocks<GGML_TYPE_Q8_0>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q2_K: deq_blocks<GGML_TYPE_Q2_K>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q3_K: deq_blocks<GGML_TYPE_Q3_K>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q4_K: deq_blocks<GGML_TYPE_Q4_K>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q5_K: deq_blocks<GGML_TYPE_Q5_K>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q6_K: deq_blocks<GGML_TYPE_Q6_K>(s, w, rb, n_rows, cols, y); break;
	default: break;
	}
}

/* ---- the product ----------------------------------------------------------------------- */

int cu_gemm(cuda_ctx *c, uint32_t type, const void *w, size_t rb, int64_t rows, int64_t cols, const void *x16,
	    int64_t n_tok, float *y, void *tile, int64_t tile_rows, char *err, size_t errlen)
{
	const float one = 1.0f, zero = 0.0f;
	for (int64_t r0 = 0; r0 < rows; r0 += tile_rows) {
		const int64_t nr = rows - r0 < tile_rows ? rows - r0 : tile_rows;
		const void *a;
		if (type == GGML_TYPE_F16) {
			a = (const char *)w + (size_t)r0 * rb;
		} else {
			cu_launch_dequant_f16(c->stream, type, (const char *)w + (size_t)r0 * rb, rb, nr, cols, tile);
			a = tile;
		}
		cublasStatus_t s = blas.gemm_ex((cublasHandle_t)c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, (int)n_tok,
						(int)cols, &one, a, CUDA_R_16F, (int)cols, x16, CUDA_R_16F, (int)cols,
						&zero, y + r0, CUDA_R_32F, (int)rows, CUBLAS_COMPUTE_32F,
						CUBLAS_GEMM_DEFAULT);
		if (s != CUBLAS_STATUS_SUCCESS) {
			snprintf(err, errlen, "cublasGemmEx (%lld x %lld x %lld): %s", (long long)nr, (long long)n_tok,
				 (long long)cols, blas_status(s));
			return -1;
		}
	}
	return 0;
}
