/*
 * cuda_dequant_host.cu - host-side entry points into the CUDA code
 * for tests/test_cuda_dequant.c, which runs in make check without a GPU.
 *
 * The dequantisation functions of engine/cuda/cuda_dequant.cuh are
 * __host__ __device__; here they run on the CPU, unit by unit as the
 * kernels call them, so the bit layouts of every block type can be checked
 * against the CPU engine where no device exists.  The attention chunk
 * arithmetic of cuda_attn.cu (host code) is exercised for every context
 * length up to a bound, since a wrong workspace bound would only show as
 * memory corruption on a device.
 */
#include <stdio.h>

#include "cuda_dequant.cuh"

template <uint32_t T>
static void row_blocks(const uint8_t *row, float *dst, int64_t cols)
{
	for (int64_t u = 0; u < cols / 32; u++) {
		float v[32];
		deq_unit<T>(row, u, v);
		memcpy(dst + u * 32, v, sizeof v);
	}
}

template <uint32_t T>
static void row_float(const uint8_t *row, float *dst, int64_t cols)
{
	for (int64_t i = 0; i < cols; i++)
		dst[i] = deq_elem<T>(row, i);
}

/* The kernels' dequantisation of one row of COLS elements (a multiple of
 * the block size) of TYPE; -1 for a type they do not handle. */
extern "C" int cuda_host_dequant_row(uint32_t type, const void *src, float *dst, int64_t cols)
{
	const uint8_t *r = (const uint8_t *)src;
	switch (type) {
	case GGML_TYPE_F32: row_float<GGML_TYPE_F32>(r, dst, cols); return 0;
	case GGML_TYPE_F16: row_float<GGML_TYPE_F16>(r, dst, cols); return 0;
	case GGML_TYPE_BF16: row_float<GGML_TYPE_BF16>(r, dst, cols); return 0;
	case GGML_TYPE_Q4_0: row_blocks<GGML_TYPE_Q4_0>(r, dst, cols); return 0;
	case GGML_TYPE_Q4_1: row_blocks<GGML_TYPE_Q4_1>(r, dst, cols); return 0;
	case GGML_TYPE_Q5_0: row_blocks<GGML_TYPE_Q5_0>(r, dst, cols); return 0;
	case GGML_TYPE_Q5_1: row_blocks<GGML_TYPE_Q5_1>(r, dst, cols); return 0;
	case GGML_TYPE_Q8_0: row_blocks<GGML_TYPE_Q8_0>(r, dst, cols); return 0;
	case GGML_TYPE_Q2_K: row_blocks<GGML_TYPE_Q2_K>(r, dst, cols); return 0;
	case GGML_TYPE_Q3_K: row_blocks<GGML_TYPE_Q3_K>(r, dst, cols); return 0;
	case GGML_TYPE_Q4_K: row_blocks<GGML_TYPE_Q4_K>(r, dst, cols); return 0;
	case GGML_TYPE_Q5_K: row_blocks<GGML_TYPE_Q5_K>(r, dst, cols); return 0;
	case GGML_TYPE_Q6_K: row_blocks<GGML_TYPE_Q6_K>(r, dst, cols); return 0;
	default: return -1;
	}
}

/* For every n in 1..n_ctx: the chunk cuda_attn_decode() would use is a
 * multiple of 32, fits the shared memory budget, and splits n into no
 * more chunks than cu_attn_max_splits(n_ctx), what the workspace is sized
 * for.  Returns the number of violations
 * (first one described in msg), or -1 when the shape has no chunk. */
extern "C" long cuda_host_attn_splits_check(int group, int head_dim, int n_head_kv, uint32_t n_ctx, char *msg,
					    size_t msglen)
{
	const int max_chunk = cu_attn_chunk(group, head_dim, CU_ATTN_SMEM);
	if (max_chunk == 0) {
		snprintf(msg, msglen, "no chunk for group %d head_dim %d", group, head_dim);
		return -1;
	}
	const uint64_t bound = cu_attn_max_splits(max_chunk, n_ctx, n_head_kv);
	long bad = 0;
	for (uint32_t n = 1; n <= n_ctx; n++) {
		const int c = cu_attn_chunk_for(max_chunk, n, n_head_kv);
		const uint64_t splits = ((uint64_t)n + (uint64_t)c - 1) / (uint64_t)c;
		/* q, scores, m and l, and q's Q8_0 scales (cu_launch_attn_decode) */
		const size_t smem =
			sizeof(float) * (size_t)group * ((size_t)head_dim + (size_t)c + 2 + ((size_t)head_dim + 31) / 32);
		if (c < 32 || c % 32 || c > max_chunk || smem > CU_ATTN_SMEM || splits > bound) {
			if (!bad)
				snprintf(msg, msglen, "n %u: chunk %d (max %d), %llu splits (bound %llu), smem %zu", n,
					 c, max_chunk, (unsigned long long)splits, (unsigned long long)bound, smem);
			bad++;
		}
	}
	return bad;
}
