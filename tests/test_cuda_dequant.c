/*
 * test_cuda_dequant.c - the parts of the CUDA backend that can be checked
 * without a GPU (make check, when configure found nvcc).
 *
 *   - The kernels' dequantisation (engine/cuda/cuda_dequant.cuh, run on
 *     the host through tests/cuda_dequant_host.cu) equals the CPU
 *     engine's scalar quant_dequant_row() bit for bit, for every weight
 *     type, on random blocks with ordinary and special scales (-0, the
 *     smallest subnormal, 1, 65504).  This pins every block layout; the
 *     device build of the same functions is checked by make check-cuda.
 *   - The flash-decoding chunk arithmetic never needs more workspace than
 *     cuda_attn_decode_workspace() reports and never exceeds shared
 *     memory, for every context length up to 70000 on shapes from one to
 *     forty query heads per KV head.
 *   - The public calls that touch no device (cuda_type_supported,
 *     cuda_attn_decode_workspace, cuda_backend_available's message) behave.
 * Prints "N passed, N failed".
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cuda/cuda_backend.h"
#include "gguf.h"
#include "quant.h"
#include "cuda_testutil.h"
#include "testutil.h"

/* tests/cuda_dequant_host.cu */
int cuda_host_dequant_row(uint32_t type, const void *src, float *dst, int64_t cols);
long cuda_host_attn_splits_check(int group, int head_dim, int n_head_kv, uint32_t n_ctx, char *msg,
				 size_t msglen);

static const uint32_t types[] = {
	GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
	GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
	GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
};

static void test_dequant(struct rng *r)
{
	const struct quant_ops *ref = quant_ops_at(QUANT_LEVEL_SCALAR);
	for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
		const uint32_t type = types[t];
		const int64_t bs = ggml_type_block_size(type);
		const int64_t cols = bs == 1 ? 999 : bs == 32 ? 32 * 37 : 256 * 5, rows = 64;
		const size_t rb = ggml_row_bytes(type, (uint64_t)cols);
		uint8_t *w = xmalloc(rb * (size_t)rows);
		float *a = xmalloc(sizeof(float) * (size_t)cols), *b = xmalloc(sizeof(float) * (size_t)cols);
		long bad = 0, first = -1;
		make_weight(r, type, rows, cols, w, rb, 1);
		for (int64_t i = 0; i < rows; i++) {
			const uint8_t *row = w + (size_t)i * rb;
			ref->dequant_row(type, row, a, cols);
			if (cuda_host_dequant_row(type, row, b, cols) != 0) {
				bad++;
				break;
			}
			for (int64_t j = 0; j < cols; j++)
				if (memcmp(&a[j], &b[j], sizeof(float)) != 0 && !(isnan(a[j]) && isnan(b[j]))) {
					if (first < 0) {
						first = (long)(i * cols + j);
						fprintf(stderr, "  %s row %lld element %lld: cuda %a cpu %a\n",
							ggml_type_name(type), (long long)i, (long long)j, (double)b[j],
							(double)a[j]);
					}
					bad++;
				}
		}
		CHECK(bad == 0, "%s: %ld of %lld values differ from the CPU", ggml_type_name(type), bad,
		      (long long)(rows * cols));
		CHECK(cuda_type_supported(type) == 1, "%s not supported", ggml_type_name(type));
		free(w);
		free(a);
		free(b);
	}
	CHECK(cuda_type_supported(GGML_TYPE_Q8_K) == 0, "Q8_K is not a weight type");
	CHECK(cuda_type_supported(GGML_TYPE_IQ4_XS) == 0, "IQ4_XS has no kernel");
	CHECK(cuda_type_supported(GGML_TYPE_COUNT + 5) == 0, "an unknown type is supported");
	float dummy[32];
	uint8_t blk[64] = {0};
	CHECK(cuda_host_dequant_row(GGML_TYPE_Q8_K, blk, dummy, 32) == -1, "Q8_K dequantised");
}

static void test_attn_splits(void)
{
	static const struct {
		int group, head_dim, n_head_kv;
		uint32_t n_ctx;
	} cs[] = {
		{1, 64, 1, 20000}, {3, 80, 3, 5000}, {8, 128, 1, 70000}, {1, 256, 4, 3000},
		{4, 256, 1, 9000}, {16, 256, 1, 2000}, {32, 256, 2, 4000}, {40, 256, 1, 3000},
		{7, 64, 5, 33333},
	};
	char msg[200];
	for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
		msg[0] = '\0';
		long bad = cuda_host_attn_splits_check(cs[k].group, cs[k].head_dim, cs[k].n_head_kv, cs[k].n_ctx, msg,
						       sizeof msg);
		CHECK(bad == 0, "attention chunks, group %d head_dim %d: %ld violations (%s)", cs[k].group,
		      cs[k].head_dim, bad, msg);
		const int H = cs[k].group * cs[k].n_head_kv, G = cs[k].n_head_kv, D = cs[k].head_dim;
		const size_t ws = cuda_attn_decode_workspace(H, G, D, cs[k].n_ctx);
		/* at least one chunk's partials, at most one per 32 positions */
		const size_t per = (size_t)H * (size_t)(D + 2) * sizeof(float);
		CHECK(ws >= per && ws <= per * ((cs[k].n_ctx + 31) / 32 + 1) && ws % per == 0,
		      "workspace %zu for H %d G %d D %d n_ctx %u", ws, H, G, D, cs[k].n_ctx);
	}
	CHECK(cuda_host_attn_splits_check(64, 1024, 1, 10, msg, sizeof msg) == -1, "group 64 x 1024 dims has a chunk");
	CHECK(cuda_attn_decode_workspace(64, 1, 1024, 100) == 0, "workspace for a group beyond shared memory");
	CHECK(cuda_attn_decode_workspace(6, 4, 64, 100) == 0, "workspace for 6 heads on 4 KV heads");
	CHECK(cuda_attn_decode_workspace(8, 2, 0, 100) == 0, "workspace for head_dim 0");
	CHECK(cuda_attn_decode_workspace(8, 2, 64, 0) == 0, "workspace for 0 positions");
	CHECK(cuda_attn_decode_workspace(8, 2, 2048, 100) == 0, "workspace for head_dim 2048");
}

int main(void)
{
	struct rng r = {0x2545F4914F6CDD1Dull};
	char err[256];

	test_dequant(&r);
	test_attn_splits();
	/* with or without a device, the answer is clean */
	err[0] = 'x';
	err[1] = '\0';
	int n = cuda_backend_available(err, sizeof err);
	CHECK(n > 0 ? err[0] == '\0' : strncmp(err, "no CUDA device: ", 16) == 0,
	      "cuda_backend_available: %d, '%s'", n, err);
	printf("cuda_backend_available: %d%s%s\n", n, n > 0 ? "" : ", ", err);
	return tu_finish();
}
