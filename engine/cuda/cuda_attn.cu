/*
 * cuda_attn.cu - decode attention over an F16 or Q8_0 KV cache, split
 * along the sequence (flash decoding).
 *
 * Kernel 1 (k_attn_split), grid (n_split, n_head_kv): a block takes one KV
 * head g and one chunk of positions and serves every query head of g's
 * group, so each K and V row is read from memory once per group.  It
 * rounds the queries to f16 (as the CPU engine does before q.k), computes
 * the chunk's scores (one warp per position, lanes over head_dim), a local
 * softmax (max m, sum l of exp(s - m)) and the partial output
 * o = sum_p exp(s_p - m) v_p (threads over head_dim, so V rows are read
 * coalesced), and writes o, m, l to the workspace.
 *
 * Kernel 2 (k_attn_merge), one block per query head: M = max m_s,
 * out = sum_s o_s exp(m_s - M) / sum_s l_s exp(m_s - M).
 *
 * In a captured decode step (CUDA graph) the position comes from device
 * memory (pos_dev): the grid is sized for the longest range of the
 * graph's context bucket, the range itself is computed in the kernel, and
 * chunks past its end write m = -inf, l = 0, o = 0, which the merge
 * weighs by e^-inf = 0.
 *
 * Shared memory of kernel 1: q [group][head_dim] + scores [group][chunk]
 * + m, l [group] + q's Q8_0 scales [group][head_dim / 32] floats, within CU_ATTN_SMEM (48 KiB, the default limit
 * on every supported architecture).  The chunk is at most 256 positions
 * and shrinks for short contexts, so that there are enough blocks (about
 * 256) to fill the device; it never drops below 64 (or the largest size
 * that fits), which bounds the workspace.
 *
 * A Q8_0 cache is read as the CPU engine reads it: q is quantised to
 * Q8_0 per 32 values (cu_q8_lane, the CPU's rounding), each score is the
 * sum over blocks of (d_k d_q) * (integer dot), block by block in the
 * CPU's order without fused multiply-adds, so the scores match the CPU's
 * scalar dot product bit for bit; V values are d * q exactly.
 *
 * Numerics: unlike the CPU engine, the softmax weights are not rounded to
 * f16 before they weight V (they are only known after the merge), so the
 * two differ by the CPU's own rounding: 2^-11 of each weight while it is a
 * normal f16, up to 2^-25 absolute below 2^-14.  Scores and sums are f32.
 */
#include <math.h>

#include "cuda_impl.cuh"

#define ATTN_THREADS 128
#define ATTN_WARPS (ATTN_THREADS / 32)
#define ATTN_CHUNK_MAX 256
#define ATTN_CHUNK_MIN 64
#define ATTN_TARGET_BLOCKS 256

int cu_attn_chunk(int group, int head_dim, size_t smem)
{
	if (group < 1 || head_dim < 1)
		return 0;
	const size_t avail = smem / sizeof(float),
		     need = (size_t)group * ((size_t)head_dim + 2 + ((size_t)head_dim + 31) / 32);
	if (need >= avail)
		return 0;
	size_t c = (avail - need) / (size_t)group;
	if (c > ATTN_CHUNK_MAX)
		c = ATTN_CHUNK_MAX;
	c &= ~(size_t)31;
	return (int)c;
}

/* Positions per chunk for a call attending n positions; the smallest
 * value it can return is min(ATTN_CHUNK_MIN, max_chunk), which
 * cuda_attn_decode_workspace() sizes for. */
int cu_attn_chunk_for(int max_chunk, uint32_t n, int n_head_kv)
{
	const uint64_t want = ((uint64_t)n * (uint64_t)n_head_kv + ATTN_TARGET_BLOCKS - 1) / ATTN_TARGET_BLOCKS;
	uint64_t c = (want + 31) & ~(uint64_t)31;
	if (c < ATTN_CHUNK_MIN)
		c = ATTN_CHUNK_MIN;
	if (c > (uint64_t)max_chunk)
		c = (uint64_t)max_chunk;
	return (int)c;
}

/* The chunk c of a call is clamp(r, cmin, cmax) with r >= n * G / 256:
 * unclamped or raised to cmin, n / c <= 256 / G; lowered to cmax,
 * n / c = n / cmax. */
uint64_t cu_attn_max_splits(int max_chunk, uint32_t n_ctx, int n_head_kv)
{
	const uint64_t cmax = (uint64_t)max_chunk;
	const uint64_t cmin = cmax < ATTN_CHUNK_MIN ? cmax : ATTN_CHUNK_MIN;
	const uint64_t g = (uint64_t)n_head_kv;
	const uint64_t by_target = (ATTN_TARGET_BLOCKS + g - 1) / g;
	const uint64_t by_max = ((uint64_t)n_ctx + cmax - 1) / cmax;
	const uint64_t by_min = ((uint64_t)n_ctx + cmin - 1) / cmin;
	const uint64_t bound = by_target > by_max ? by_target : by_max;
	return bound < by_min ? bound : by_min;
}

template <bool Q8>
__global__ void __launch_bounds__(ATTN_THREADS)
k_attn_split(const float *__restrict__ q, const uint8_t *__restrict__ k, const uint8_t *__restrict__ v,
	     size_t row_bytes, size_t head_bytes, int n_head, int n_head_kv, int head_dim, uint32_t first, uint32_t n,
	     const uint32_t *__restrict__ pos_dev, uint32_t window, int chunk, float scale, float *__restrict__ po,
	     float *__restrict__ pm, float *__restrict__ pl)
{
	extern __shared__ float sm[];
	const int H = n_head, D = head_dim, group = H / n_head_kv, NB = (D + 31) / 32;
	const int g = (int)blockIdx.y, split = (int)blockIdx.x;
	const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid / 32;
	float *qs = sm;                          /* [group][D] (Q8: the integers) */
	float *sc = qs + (size_t)group * D;      /* [group][chunk] */
	float *stat = sc + (size_t)group * chunk;/* m[group], l[group] */
	float *dq = stat + 2 * group;            /* Q8: [group][NB] scales of q */
	if (pos_dev) {
		/* a captured decode step: the range follows the position in
		 * device memory; the grid was sized for the longest range */
		const uint32_t tot = *pos_dev + 1;
		first = window && tot > window ? tot - window : 0;
		n = tot - first;
	}
	const uint32_t p0 = (uint32_t)split * (uint32_t)chunk;
	if (p0 >= n) {
		/* an empty chunk: weight 0 in the merge (m = -inf, l = 0, o = 0) */
		for (int idx = tid; idx < group * D; idx += ATTN_THREADS)
			po[((size_t)split * H + (size_t)g * group + (size_t)(idx / D)) * D + idx % D] = 0.0f;
		if (tid < group) {
			pm[(size_t)split * H + (size_t)g * group + (size_t)tid] = -INFINITY;
			pl[(size_t)split * H + (size_t)g * group + (size_t)tid] = 0.0f;
		}
		return;
	}
	const int len = (int)min((uint32_t)chunk, n - p0);
	const uint8_t *kb = k + (size_t)(first + p0) * row_bytes + (size_t)g * head_bytes;
	const uint8_t *vb = v + (size_t)(first + p0) * row_bytes + (size_t)g * head_bytes;

	if (Q8) {
		/* q as the CPU quantises it for its Q8_0 dot products */
		for (int ib = warp; ib < group * NB; ib += ATTN_WARPS) {
			const int i = ib / NB, b = ib % NB;
			float d;
			const int qv = cu_q8_lane(q[((size_t)g * group + i) * D + b * 32 + lane], &d);
			qs[i * D + b * 32 + lane] = (float)qv;
			if (lane == 0)
				dq[ib] = d;
		}
	} else {
		for (int i = tid; i < group * D; i += ATTN_THREADS)
			qs[i] = cu_f16_round(q[(size_t)g * group * D + i]);
	}
	__syncthreads();

	for (int p = warp; p < len; p += ATTN_WARPS) {
		const uint8_t *kr = kb + (size_t)p * row_bytes;
		for (int i = 0; i < group; i++) {
			float acc = 0.0f;
			if (Q8) {
				/* block by block in the CPU's order: (dk dq) * isum */
				for (int b = 0; b < NB; b++) {
					const int kq = (int)(int8_t)kr[b * 34 + 2 + lane];
					const int isum = __reduce_add_sync(0xffffffffu, kq * (int)qs[i * D + b * 32 + lane]);
					acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(cu_ld_h(kr + b * 34), dq[i * NB + b]),
								     (float)isum));
				}
			} else {
				const uint16_t *kh = (const uint16_t *)kr;
				for (int d = lane; d < D; d += 32)
					acc += qs[i * D + d] * cu_h2f(kh[d]);
				acc = cu_warp_sum(acc);
			}
			if (lane == 0)
				sc[i * chunk + p] = Q8 ? __fmul_rn(acc, scale) : acc * scale;
		}
	}
	__syncthreads();

	for (int i = warp; i < group; i += ATTN_WARPS) {
		float m = -INFINITY;
		for (int p = lane; p < len; p += 32)
			m = fmaxf(m, sc[i * chunk + p]);
		m = cu_warp_max(m);
		float l = 0.0f;
		for (int p = lane; p < len; p += 32) {
			const float e = expf(sc[i * chunk + p] - m);
			sc[i * chunk + p] = e;
			l += e;
		}
		l = cu_warp_sum(l);
		if (lane == 0) {
			stat[i] = m;
			stat[group + i] = l;
		}
	}
	__syncthreads();

	for (int idx = tid; idx < group * D; idx += ATTN_THREADS) {
		const int i = idx / D, d = idx % D;
		const float *w = sc + (size_t)i * chunk;
		float acc = 0.0f;
		if (Q8) {
			/* v = d * q exactly as the CPU dequantises it */
			const uint8_t *vc = vb + (size_t)(d / 32) * 34;
			for (int p = 0; p < len; p++) {
				const uint8_t *blk = vc + (size_t)p * row_bytes;
				acc += w[p] * __fmul_rn((float)(int8_t)blk[2 + d % 32], cu_ld_h(blk));
			}
		} else {
			const uint16_t *vc = (const uint16_t *)vb + (size_t)d;
			const size_t row = row_bytes / 2;
			for (int p = 0; p < len; p++)
				acc += w[p] * cu_h2f(vc[(size_t)p * row]);
		}
		const size_t h = (size_t)g * group + (size_t)i;
		po[((size_t)split * H + h) * D + d] = acc;
	}
	if (tid < group) {
		const size_t h = (size_t)g * group + (size_t)tid;
		pm[(size_t)split * H + h] = stat[tid];
		pl[(size_t)split * H + h] = stat[group + tid];
	}
}

/* One block per query head; shared: n_split weights. */
__global__ void __launch_bounds__(ATTN_THREADS)
k_attn_merge(const float *__restrict__ po, const float *__restrict__ pm, const float *__restrict__ pl,
	     int n_head, int head_dim, int n_split, float *__restrict__ out)
{
	extern __shared__ float wt[];
	__shared__ float red[ATTN_WARPS];
	__shared__ float total;
	const int h = (int)blockIdx.x, tid = (int)threadIdx.x, lane = tid & 31, warp = tid / 32;

	float mx = -INFINITY;
	for (int s = tid; s < n_split; s += ATTN_THREADS)
		mx = fmaxf(mx, pm[(size_t)s * n_head + h]);
	mx = cu_warp_max(mx);
	if (lane == 0)
		red[warp] = mx;
	__syncthreads();
	mx = red[0];
	for (int w = 1; w < ATTN_WARPS; w++)
		mx = fmaxf(mx, red[w]);
	__syncthreads();

	float l = 0.0f;
	for (int s = tid; s < n_split; s += ATTN_THREADS) {
		const float e = expf(pm[(size_t)s * n_head + h] - mx);
		wt[s] = e;
		l += pl[(size_t)s * n_head + h] * e;
	}
	l = cu_warp_sum(l);
	if (lane == 0)
		red[warp] = l;
	__syncthreads();
	if (tid == 0) {
		float t = 0.0f;
		for (int w = 0; w < ATTN_WARPS; w++)
			t += red[w];
		total = t;
	}
	__syncthreads();

	const float inv = 1.0f / total;
	for (int d = tid; d < head_dim; d += ATTN_THREADS) {
		float acc = 0.0f;
		for (int s = 0; s < n_split; s++)
			acc += po[((size_t)s * n_head + h) * head_dim + d] * wt[s];
		out[(size_t)h * head_dim + d] = acc * inv;
	}
}

void cu_launch_attn_decode(cudaStream_t s, const struct cuda_attn_args *a, int chunk)
{
	const int H = a->n_head, G = a->n_head_kv, D = a->head_dim, group = H / G;
	const int n_split = (int)((a->n + (uint32_t)chunk - 1) / (uint32_t)chunk);
	float *po = (float *)a->workspace;
	float *pm = po + (size_t)n_split * H * D;
	float *pl = pm + (size_t)n_split * H;
	const size_t smem1 = sizeof(float) * ((size_t)group * ((size_t)D + (size_t)chunk + 2 + (size_t)(D + 31) / 32));
	const dim3 grid1((unsigned)n_split, (unsigned)G);
	const bool q8 = a->kv_type == GGML_TYPE_Q8_0;
	const size_t head_bytes = q8 ? (size_t)D / 32 * 34 : (size_t)D * 2, row_bytes = head_bytes * (size_t)G;

	if (q8)
		k_attn_split<true><<<grid1, ATTN_THREADS, smem1, s>>>(
			a->q, (const uint8_t *)a->k, (const uint8_t *)a->v, row_bytes, head_bytes, H, G, D, a->first, a->n,
			a->pos_dev, a->window, chunk, a->scale, po, pm, pl);
	else
		k_attn_split<false><<<grid1, ATTN_THREADS, smem1, s>>>(
			a->q, (const uint8_t *)a->k, (const uint8_t *)a->v, row_bytes, head_bytes, H, G, D, a->first, a->n,
			a->pos_dev, a->window, chunk, a->scale, po, pm, pl);
	k_attn_merge<<<(unsigned)H, ATTN_THREADS, sizeof(float) * (size_t)n_split, s>>>(po, pm, pl, H, D, n_split,
											 a->out);
}
