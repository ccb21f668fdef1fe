/*
 * cuda_quant.cu - dequantisation and the dequantising matrix-vector
 * product over weights stored as in the GGUF file.
 *
 * The unit of work is 32 consecutive elements of a row: one block of
 * Q4_0 .. Q8_0, or one eighth of a K-quant super-block (whose d, dmin and
 * packed scales the eight threads of that super-block read alike).  A
 * per-type device function turns one unit into 32 floats; the matvec gives
 * each row one warp, lane l taking units l, l+32, ..., and sums the lanes
 * with shuffles.  F32/F16/BF16 rows go element by element instead, since
 * their rows may have any length.
 *
 * Dequantised values are bit-identical to the CPU engine's scalar
 * reference (engine/quant.c): the same float expressions, and the
 * __fmul_rn/__fadd_rn/__fsub_rn intrinsics keep nvcc from contracting
 * d*q + m into one fused multiply-add.  The dot products sum in f32 in a
 * different order than the CPU, so a matvec matches to float summation
 * error, not bit for bit.
 *
 * Memory access is plain (byte loads of quants, blocks of 18..34 bytes
 * packed back to back, x read through L1/L2): correct first, tuned later
 * against the measured bandwidth of a device.
 */
#include "cuda_impl.cuh"

#define WARPS_PER_BLOCK 8

/* ---- one unit of 32 elements -------------------------------------------------- */

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. */
__device__ __forceinline__ void k4_scale(const uint8_t *s, int j, int *sc, int *mn)
{
	if (j < 4) {
		*sc = s[j] & 63;
		*mn = s[j + 4] & 63;
	} else {
		*sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
		*mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
	}
}

/* The 6-bit scale i (0..15) of a Q3_K block, offset 32 removed: low
 * nibbles in bytes 0..7 (high nibble for i >= 8), two high bits in bytes
 * 8..11. */
__device__ __forceinline__ int q3k_scale(const uint8_t *s, int i)
{
	int lo = i < 8 ? (s[i] & 0xf) : (s[i - 8] >> 4);
	int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
	return (lo | (hi << 4)) - 32;
}

/* Elements 32*u .. 32*u+31 of a row of block type T, as floats. */
template <uint32_t T>
__device__ __forceinline__ void deq_unit(const uint8_t *__restrict__ row, int64_t u, float v[32])
{
	if constexpr (T == GGML_TYPE_Q4_0) {
		const uint8_t *b = row + u * 18;
		const float d = cu_ld_h(b);
		const uint8_t *qs = b + 2;
#pragma unroll
		for (int j = 0; j < 16; j++) {
			v[j] = __fmul_rn((float)((qs[j] & 0xf) - 8), d);
			v[j + 16] = __fmul_rn((float)((qs[j] >> 4) - 8), d);
		}
	} else if constexpr (T == GGML_TYPE_Q4_1) {
		const uint8_t *b = row + u * 20;
		const float d = cu_ld_h(b), m = cu_ld_h(b + 2);
		const uint8_t *qs = b + 4;
#pragma unroll
		for (int j = 0; j < 16; j++) {
			v[j] = __fadd_rn(__fmul_rn((float)(qs[j] & 0xf), d), m);
			v[j + 16] = __fadd_rn(__fmul_rn((float)(qs[j] >> 4), d), m);
		}
	} else if constexpr (T == GGML_TYPE_Q5_0 || T == GGML_TYPE_Q5_1) {
		const bool has_m = T == GGML_TYPE_Q5_1;
		const uint8_t *b = row + u * (has_m ? 24 : 22);
		const float d = cu_ld_h(b), m = has_m ? cu_ld_h(b + 2) : 0.0f;
		const uint8_t *h = b + (has_m ? 4 : 2);
		const uint32_t qh = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 |
				    (uint32_t)h[3] << 24;
		const uint8_t *qs = h + 4;
		const int off = has_m ? 0 : 16;
#pragma unroll
		for (int j = 0; j < 16; j++) {
			const int q0 = ((qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4)) - off;
			const int q1 = ((qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - off;
			if (has_m) {
				v[j] = __fadd_rn(__fmul_rn((float)q0, d), m);
				v[j + 16] = __fadd_rn(__fmul_rn((float)q1, d), m);
			} else {
				v[j] = __fmul_rn((float)q0, d);
				v[j + 16] = __fmul_rn((float)q1, d);
			}
		}
	} else if constexpr (T == GGML_TYPE_Q8_0) {
		const uint8_t *b = row + u * 34;
		const float d = cu_ld_h(b);
		const int8_t *qs = (const int8_t *)(b + 2);
#pragma unroll
		for (int j = 0; j < 32; j++)
			v[j] = __fmul_rn((float)qs[j], d);
	} else if constexpr (T == GGML_TYPE_Q2_K) {
		/* element 128h + 32j + l of the super-block; sub = 4h + j */
		const uint8_t *b = row + (u >> 3) * 84;
		const int sub = (int)(u & 7), h = sub >> 2, j = sub & 3;
		const float d = cu_ld_h(b + 80), dmin = cu_ld_h(b + 82);
		const uint8_t *qs = b + 16 + 32 * h;
#pragma unroll
		for (int half = 0; half < 2; half++) {
			const uint8_t sc = b[2 * sub + half];
			const float dl = __fmul_rn(d, (float)(sc & 0xf)), ml = __fmul_rn(dmin, (float)(sc >> 4));
#pragma unroll
			for (int l = 16 * half; l < 16 * half + 16; l++)
				v[l] = __fsub_rn(__fmul_rn(dl, (float)((qs[l] >> (2 * j)) & 3)), ml);
		}
	} else if constexpr (T == GGML_TYPE_Q3_K) {
		/* hmask[32] qs[64] scales[12] d; the CPU's "- dmin*min" is an
		 * exact "- 0" here */
		const uint8_t *b = row + (u >> 3) * 110;
		const int sub = (int)(u & 7), h = sub >> 2, j = sub & 3;
		const float d = cu_ld_h(b + 108);
		const uint8_t *hm = b, *qs = b + 32 + 32 * h, *sc = b + 96;
#pragma unroll
		for (int half = 0; half < 2; half++) {
			const float dl = __fmul_rn(d, (float)q3k_scale(sc, 2 * sub + half));
#pragma unroll
			for (int l = 16 * half; l < 16 * half + 16; l++) {
				const int lo = (qs[l] >> (2 * j)) & 3;
				const int hi = (hm[l] >> sub) & 1;
				v[l] = __fmul_rn(dl, (float)(lo - (hi ? 0 : 4)));
			}
		}
	} else if constexpr (T == GGML_TYPE_Q4_K || T == GGML_TYPE_Q5_K) {
		/* d dmin scales[12] (qh[32]) qs[128]; sub-block 2c takes the
		 * low nibbles of qs[32c..32c+31], 2c+1 the high ones */
		const bool five = T == GGML_TYPE_Q5_K;
		const uint8_t *b = row + (u >> 3) * (five ? 176 : 144);
		const int sub = (int)(u & 7), c = sub >> 1, shift = 4 * (sub & 1);
		const float d = cu_ld_h(b), dmin = cu_ld_h(b + 2);
		int sc, mn;
		k4_scale(b + 4, sub, &sc, &mn);
		const float dl = __fmul_rn(d, (float)sc), ml = __fmul_rn(dmin, (float)mn);
		const uint8_t *qh = b + 16, *qs = b + (five ? 48 : 16) + 32 * c;
#pragma unroll
		for (int l = 0; l < 32; l++) {
			int q = (qs[l] >> shift) & 0xf;
			if (five)
				q |= ((qh[l] >> sub) & 1) << 4;
			v[l] = __fsub_rn(__fmul_rn(dl, (float)q), ml);
		}
	} else if constexpr (T == GGML_TYPE_Q6_K) {
		/* ql[128] qh[64] scales[16] d; element 128h + 32k + l */
		const uint8_t *b = row + (u >> 3) * 210;
		const int sub = (int)(u & 7), h = sub >> 2, k = sub & 3;
		const float d = cu_ld_h(b + 208);
		const uint8_t *ql = b + 64 * h + 32 * (k & 1), *qh = b + 128 + 32 * h;
		const int8_t *scales = (const int8_t *)(b + 192);
#pragma unroll
		for (int half = 0; half < 2; half++) {
			const float dl = __fmul_rn(d, (float)scales[8 * h + 2 * k + half]);
#pragma unroll
			for (int l = 16 * half; l < 16 * half + 16; l++) {
				const int lo = (k >> 1) ? (ql[l] >> 4) : (ql[l] & 0xf);
				const int hi = (qh[l] >> (2 * k)) & 3;
				v[l] = __fmul_rn(dl, (float)((lo | (hi << 4)) - 32));
			}
		}
	}
}

/* Element i of a float-type row. */
template <uint32_t T>
__device__ __forceinline__ float deq_elem(const uint8_t *__restrict__ row, int64_t i)
{
	if constexpr (T == GGML_TYPE_F32)
		return ((const float *)row)[i];
	else if constexpr (T == GGML_TYPE_F16)
		return cu_h2f(((const uint16_t *)row)[i]);
	else
		return cu_bf2f(((const uint16_t *)row)[i]);
}

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
