/*
 * cuda_quant.cu - dequantisation and the dequantising matrix-vector
 * product over weights stored as in the GGUF file.
 *
 * The unit of work is 32 consecutive elements of a row: one block of
 * Q4_0 .. Q8_0, or one eighth of a K-quant super-block (whose d, dmin and
 * packed scales the eight threads of that super-block read alike).  A
 * per-type function (cuda_dequant.cuh) turns one unit into 32 floats; the
 * matvec gives
 * each row one warp, lane l taking units l, l+32, ..., and sums the lanes
 * with shuffles.  F32/F16/BF16 rows go element by element instead, since
 * their rows may have any length.
 *
 * Dequantised values are bit-identical to the CPU engine's scalar
 * reference (engine/quant.c): the same float expressions, and the
 * __fmul_rn/__fadd_rn/__fsub_rn intrinsics keep nvcc from contracting
 * d*q + m into one fused multiply-add (checked on the host by
 * tests/test_cuda_dequant, on the device by test_cuda_kernels).  The dot products sum in f32 in a
 * different order than the CPU, so a matvec matches to float summation
 * error, not bit for bit.
 *
 * Memory access is plain (byte loads of quants, blocks of 18..34 bytes
 * packed back to back, x read through L1/L2): correct first, tuned later
 * against the measured bandwidth of a device.
 */
#include "cuda_dequant.cuh"

#define WARPS_PER_BLOCK 8

/* ---- kernels --------------------------------------------------------------------- */

/* One warp per row; x is 16-byte aligned (32 floats per unit). */
template <uint32_t T>
__global__ void __launch_bounds__(32 * WARPS_PER_BLOCK)
k_matvec_blocks(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows, int64_t units,
		const float *__restrict__ x, float *__restrict__ y)
{
	const int64_t r = (int64_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32;
	const int lane = (int)(threadIdx.x & 31);
	if (r >= rows)
		return;
	const uint8_t *row = w + (size_t)r * row_bytes;
	float acc = 0.0f;
	for (int64_t u = lane; u < units; u += 32) {
		float v[32];
		deq_unit<T>(row, u, v);
		const float4 *xv = (const float4 *)(x + u * 32);
#pragma unroll
		for (int k = 0; k < 8; k++) {
			const float4 a = xv[k];
			acc += v[4 * k] * a.x + v[4 * k + 1] * a.y + v[4 * k + 2] * a.z + v[4 * k + 3] * a.w;
		}
	}
	acc = cu_warp_sum(acc);
	if (lane == 0)
		y[r] = acc;
}

template <uint32_t T>
__global__ void __launch_bounds__(32 * WARPS_PER_BLOCK)
k_matvec_float(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows, int64_t cols,
	       const float *__restrict__ x, float *__restrict__ y)
{
	const int64_t r = (int64_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32;
	const int lane = (int)(threadIdx.x & 31);
	if (r >= rows)
		return;
	const uint8_t *row = w + (size_t)r * row_bytes;
	float acc = 0.0f;
	for (int64_t i = lane; i < cols; i += 32)
		acc += deq_elem<T>(row, i) * x[i];
	acc = cu_warp_sum(acc);
	if (lane == 0)
		y[r] = acc;
}

/* One thread per unit of the n_rows x units grid, grid-stride. */
template <uint32_t T>
__global__ void k_dequant_blocks(const uint8_t *__restrict__ w, size_t row_bytes, int64_t n_rows,
				 int64_t units, float *__restrict__ y)
{
	const int64_t total = n_rows * units;
	for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
	     t += (int64_t)gridDim.x * blockDim.x) {
		const int64_t r = t / units, u = t % units;
		float v[32];
		deq_unit<T>(w + (size_t)r * row_bytes, u, v);
		float *dst = y + (size_t)r * (size_t)units * 32 + (size_t)u * 32;
#pragma unroll
		for (int j = 0; j < 32; j++)
			dst[j] = v[j];
	}
}

template <uint32_t T>
__global__ void k_dequant_float(const uint8_t *__restrict__ w, size_t row_bytes, int64_t n_rows,
				int64_t cols, float *__restrict__ y)
{
	const int64_t total = n_rows * cols;
	for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
	     t += (int64_t)gridDim.x * blockDim.x) {
		const int64_t r = t / cols, i = t % cols;
		y[t] = deq_elem<T>(w + (size_t)r * row_bytes, i);
	}
}

/* ---- launchers ---------------------------------------------------------------------- */

int cu_quant_supported(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16:
	case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
	case GGML_TYPE_Q8_0: case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
		return 1;
	default:
		return 0;
	}
}

template <uint32_t T>
static void matvec_blocks(cudaStream_t s, const void *w, size_t rb, int64_t rows, int64_t cols,
			  const float *x, float *y)
{
	const unsigned grid = (unsigned)((rows + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
	k_matvec_blocks<T><<<grid, 32 * WARPS_PER_BLOCK, 0, s>>>((const uint8_t *)w, rb, rows, cols / 32, x, y);
}

template <uint32_t T>
static void matvec_float(cudaStream_t s, const void *w, size_t rb, int64_t rows, int64_t cols,
			 const float *x, float *y)
{
	const unsigned grid = (unsigned)((rows + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
	k_matvec_float<T><<<grid, 32 * WARPS_PER_BLOCK, 0, s>>>((const uint8_t *)w, rb, rows, cols, x, y);
}

void cu_launch_matvec(cudaStream_t s, uint32_t type, const void *w, size_t rb, int64_t rows, int64_t cols,
		      const float *x, float *y)
{
	switch (type) {
	case GGML_TYPE_F32: matvec_float<GGML_TYPE_F32>(s, w, rb, rows, cols, x, y); break;
	case GGML_TYPE_F16: matvec_float<GGML_TYPE_F16>(s, w, rb, rows, cols, x, y); break;
	case GGML_TYPE_BF16: matvec_float<GGML_TYPE_BF16>(s, w, rb, rows, cols, x, y); break;
	case GGML_TYPE_Q4_0: matvec_blocks<GGML_TYPE_Q4_0>(s, w, rb, rows, cols, x, y); break;
	case GGML_TYPE_Q4_1: matvec_blocks<GGML_TYPE_Q4_1>(s, w, rb, rows, cols, x, y); break;
	case GGML_TYPE_Q5_0: matvec_blocks<GGML_TYPE_Q5_0>(s, w, rb, rows, cols, x, y); break;
	case GGML_TYPE_Q5_1: matvec_blocks<GGML_TYPE_Q5_1>(s, w, rb, rows, cols, x, y); break;
	case GGML_TYPE_Q8_0: matvec_blocks<GGML_TYPE_Q8_0>(s, w, rb, rows, cols, x, y); break;
	case GGML_TYPE_Q2_K: matvec_blocks<GGML_TYPE_Q2_K>(s, w, rb, rows, cols, x, y); break;
	case GGML_TYPE_Q3_K: matvec_blocks<GGML_TYPE_Q3_K>(s, w, rb, rows, cols, x, y); break;
	case GGML_TYPE_Q4_K: matvec_blocks<GGML_TYPE_Q4_K>(s, w, rb, rows, cols, x, y); break;
	case GGML_TYPE_Q5_K: matvec_blocks<GGML_TYPE_Q5_K>(s, w, rb, rows, cols, x, y); break;
	case GGML_TYPE_Q6_K: matvec_blocks<GGML_TYPE_Q6_K>(s, w, rb, rows, cols, x, y); break;
	default: break;
	}
}

/* Enough blocks to fill any current GPU; the kernels loop over the rest. */
static unsigned grid_for(int64_t work, unsigned threads)
{
	int64_t g = (work + threads - 1) / threads;
	return (unsigned)(g < 1 ? 1 : g > 65535 ? 65535 : g);
}

template <uint32_t T>
static void dequant_blocks(cudaStream_t s, const void *w, size_t rb, int64_t n_rows, int64_t cols, float *y)
{
	k_dequant_blocks<T><<<grid_for(n_rows * (cols / 32), 256), 256, 0, s>>>((const uint8_t *)w, rb, n_rows,
										 cols / 32, y);
}

template <uint32_t T>
static void dequant_float(cudaStream_t s, const void *w, size_t rb, int64_t n_rows, int64_t cols, float *y)
{
	k_dequant_float<T><<<grid_for(n_rows * cols, 256), 256, 0, s>>>((const uint8_t *)w, rb, n_rows, cols, y);
}

void cu_launch_dequant_rows(cudaStream_t s, uint32_t type, const void *w, size_t rb, int64_t n_rows,
			    int64_t cols, float *y)
{
	switch (type) {
	case GGML_TYPE_F32: dequant_float<GGML_TYPE_F32>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_F16: dequant_float<GGML_TYPE_F16>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_BF16: dequant_float<GGML_TYPE_BF16>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q4_0: dequant_blocks<GGML_TYPE_Q4_0>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q4_1: dequant_blocks<GGML_TYPE_Q4_1>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q5_0: dequant_blocks<GGML_TYPE_Q5_0>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q5_1: dequant_blocks<GGML_TYPE_Q5_1>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q8_0: dequant_blocks<GGML_TYPE_Q8_0>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q2_K: dequant_blocks<GGML_TYPE_Q2_K>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q3_K: dequant_blocks<GGML_TYPE_Q3_K>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q4_K: dequant_blocks<GGML_TYPE_Q4_K>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q5_K: dequant_blocks<GGML_TYPE_Q5_K>(s, w, rb, n_rows, cols, y); break;
	case GGML_TYPE_Q6_K: dequant_blocks<GGML_TYPE_Q6_K>(s, w, rb, n_rows, cols, y); break;
	default: break;
	}
}
