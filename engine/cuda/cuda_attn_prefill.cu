/*
 * cuda_attn_prefill.cu - causal attention of a batch of T tokens over the
 * KV cache (prefill), tiled, without a score matrix.
 *
 * Grid (ceil(T / BQ), n_head_kv * n_hc), 128 threads (4 warps).  A block
 * takes BQ consecutive tokens and HB query heads of one KV head's group
 * (HB = min(group, 16), BQ = max(1, 16 / HB), so at most 16 query rows;
 * n_hc blocks cover a group larger than 16) and walks the positions the
 * earliest of its tokens may see up to the last token's own position in
 * tiles of 32: each tile of K and V rows is read into shared memory once
 * and serves all rows of the block.  Per row (one warp owns rows w, w+4,
 * ...) the online softmax keeps m (running max), l (running sum) and the
 * output accumulator in registers (head_dim / 32 values per lane):
 *   s_p = scale * q.k_p, lane l scoring position tile + l;
 *   m' = max(m, max_p s_p), l = l e^(m-m') + sum_p e^(s_p-m'),
 *   o = o e^(m-m') + sum_p e^(s_p-m') v_p (lanes over head_dim);
 * out = o / l.  Position p is seen by the token at pos when first <= p <=
 * pos, first = pos + 1 - window for a sliding window (else 0).
 *
 * Numerics as the decode kernel (cuda_attn.cu): q rounded to f16 before
 * q.k as on the CPU, f32 scores and sums, softmax weights not rounded to
 * f16 before they weight V (the CPU rounds them).  K rows in shared memory
 * are padded by one 32-bit word so that the 32 lanes, each reading its
 * own row, fall in distinct banks (head_dim a multiple of 4).
 *
 * A Q8_0 cache is read as the decode kernel reads it (q quantised to
 * Q8_0, scores the CPU's block-by-block Q8_0 dot product, here with
 * __dp4a on int8 rows in shared memory padded by one word; V = d * q).
 *
 * Limits (checked by cuda_backend.cu): head_dim even and at most 256
 * (a multiple of 32 for Q8_0).
 */
#include <math.h>

#include "cuda_impl.cuh"

#define PF_THREADS 128
#define PF_WARPS (PF_THREADS / 32)
#define PF_ROWS 16             /* query rows per block */
#define PF_RW (PF_ROWS / PF_WARPS)
#define PF_TILE 32             /* positions per tile */
#define PF_DMAX 256
#define PF_NDL (PF_DMAX / 32)  /* accumulator values per lane */

void cu_attn_prefill_geometry(int group, int *hb, int *bq, int *n_hc)
{
	*hb = group < PF_ROWS ? group : PF_ROWS;
	*bq = PF_ROWS / *hb;
	*n_hc = (group + *hb - 1) / *hb;
}

size_t cu_attn_prefill_smem(int head_dim, int q8)
{
	const size_t D = (size_t)head_dim;
	if (q8) /* int8 q, K (rows padded by a word), V; f32 scales of each */
		return PF_ROWS * D + PF_TILE * (D + 4) + PF_TILE * D + 4 * (PF_ROWS + 2 * PF_TILE) * (D / 32);
	return 2 * (PF_ROWS * D + PF_TILE * (D + 2) + PF_TILE * D);
}

template <bool Q8>
__global__ void __launch_bounds__(PF_THREADS)
k_attn_prefill(const float *__restrict__ q, const uint8_t *__restrict__ k, const uint8_t *__restrict__ v,
	       size_t row_bytes, size_t head_bytes, int n_head, int n_head_kv, int D, uint32_t pos0, int T,
	       uint32_t window, float scale, int hb, int bq, int n_hc, float *__restrict__ out)
{
	extern __shared__ __align__(16) uint8_t smem[];
	const int group = n_head / n_head_kv;
	const int g = (int)blockIdx.y / n_hc, hc = (int)blockIdx.y % n_hc;
	const int h0 = g * group + hc * hb;
	const int nh = min(hb, group - hc * hb);
	const int t0 = (int)blockIdx.x * bq, nt = min(bq, T - t0);
	const int R = nt * nh;
	const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid / 32;
	const int NB = D / 32;
	/* F16: qh [PF_ROWS][D], ks [PF_TILE][D+2], vs [PF_TILE][D] halves.
	 * Q8: qi [PF_ROWS][D], ki [PF_TILE][D+4], vi [PF_TILE][D] int8, then
	 * f32 scales qd [PF_ROWS][NB], kd, vd [PF_TILE][NB]. */
	const int KS = Q8 ? D + 4 : D + 2;
	__half *qh = (__half *)smem;
	__half *ks = qh + (size_t)PF_ROWS * D;
	__half *vs = ks + (size_t)PF_TILE * KS;
	int8_t *qi = (int8_t *)smem;
	int8_t *ki = qi + (size_t)PF_ROWS * D;
	int8_t *vi = ki + (size_t)PF_TILE * KS;
	float *qd = (float *)(vi + (size_t)PF_TILE * D);
	float *kd = qd + (size_t)PF_ROWS * NB;
	float *vd = kd + (size_t)PF_TILE * NB;

	if (Q8) {
		/* q quantised as the CPU does before its Q8_0 dot products */
		for (int rb = warp; rb < R * NB; rb += PF_WARPS) {
			const int r = rb / NB, b = rb % NB, ti = r / nh, hi = r % nh;
			float d;
			const int qv = cu_q8_lane(
				q[((size_t)(t0 + ti) * (size_t)n_head + (size_t)(h0 + hi)) * (size_t)D + b * 32 + lane], &d);
			qi[(size_t)r * D + b * 32 + lane] = (int8_t)qv;
			if (lane == 0)
				qd[rb] = d;
		}
	} else {
		for (int i = tid; i < R * D; i += PF_THREADS) {
			const int r = i / D, d = i % D, ti = r / nh, hi = r % nh;
			qh[i] = __float2half_rn(q[((size_t)(t0 + ti) * (size_t)n_head + (size_t)(h0 + hi)) * (size_t)D + d]);
		}
	}

	/* the positions this block needs: the first token's window start to
	 * the last token's position */
	const uint32_t pos_first = pos0 + (uint32_t)t0, pos_last = pos0 + (uint32_t)(t0 + nt - 1);
	const uint32_t lo = window && pos_first + 1 > window ? pos_first + 1 - window : 0;

	float m[PF_RW], l[PF_RW], o[PF_RW][PF_NDL];
#pragma unroll
	for (int j = 0; j < PF_RW; j++) {
		m[j] = -INFINITY;
		l[j] = 0.0f;
#pragma unroll
		for (int i = 0; i < PF_NDL; i++)
			o[j][i] = 0.0f;
	}

	const int D2 = D / 2;
	for (uint32_t base = lo; base <= pos_last; base += PF_TILE) {
		const int len = (int)min((uint32_t)PF_TILE, pos_last + 1 - base);
		__syncthreads(); /* the previous tile is used up (and q is written) */
		if (Q8) {
			/* one thread per (position, block, quarter): 8 quants and,
			 * for the first quarter, the scale */
			for (int i = tid; i < len * NB * 4; i += PF_THREADS) {
				const int p = i / (NB * 4), b = (i / 4) % NB, qt = i % 4;
				const size_t off = (size_t)(base + (uint32_t)p) * row_bytes + (size_t)g * head_bytes + (size_t)b * 34;
				const uint8_t *kb = k + off, *vb = v + off;
				int8_t *kdst = ki + (size_t)p * KS + b * 32 + qt * 8;
				int8_t *vdst = vi + (size_t)p * D + b * 32 + qt * 8;
#pragma unroll
				for (int j = 0; j < 8; j++) {
					kdst[j] = (int8_t)kb[2 + qt * 8 + j];
					vdst[j] = (int8_t)vb[2 + qt * 8 + j];
				}
				if (qt == 0) {
					kd[p * NB + b] = cu_ld_h(kb);
					vd[p * NB + b] = cu_ld_h(vb);
				}
			}
		} else {
			for (int i = tid; i < len * D2; i += PF_THREADS) {
				const int p = i / D2, d2 = i % D2;
				const size_t off = (size_t)(base + (uint32_t)p) * row_bytes + (size_t)g * head_bytes;
				const __half2 kk = ((const __half2 *)(k + off))[d2];
				const __half2 vv = ((const __half2 *)(v + off))[d2];
				*(__half2 *)(ks + (size_t)p * KS + 2 * d2) = kk;
				*(__half2 *)(vs + (size_t)p * D + 2 * d2) = vv;
			}
		}
		__syncthreads();
#pragma unroll
		for (int j = 0; j < PF_RW; j++) {
			const int r = warp + PF_WARPS * j;
			if (r >= R)
				break;
			const int ti = r / nh;
			const uint32_t pos = pos0 + (uint32_t)(t0 + ti);
			const uint32_t first = window && pos + 1 > window ? pos + 1 - window : 0;
			const uint32_t p = base + (uint32_t)lane;
			const bool ok = lane < len && p >= first && p <= pos;
			float s = -INFINITY;
			if (ok && Q8) {
				/* the CPU's Q8_0 dot product, block by block */
				const int *qw = (const int *)(qi + (size_t)r * D);
				const int *kw = (const int *)(ki + (size_t)lane * KS);
				float acc = 0.0f;
				for (int b = 0; b < NB; b++) {
					int isum = 0;
#pragma unroll
					for (int w = 0; w < 8; w++)
						isum = __dp4a(kw[b * 8 + w], qw[b * 8 + w], isum);
					acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(kd[lane * NB + b], qd[r * NB + b]), (float)isum));
				}
				s = __fmul_rn(acc, scale);
			} else if (ok) {
				const __half2 *qr = (const __half2 *)(qh + (size_t)r * D);
				const __half2 *kr = (const __half2 *)(ks + (size_t)lane * KS);
				float acc = 0.0f;
				for (int d2 = 0; d2 < D2; d2++) {
					const float2 a = __half22float2(qr[d2]), b = __half22float2(kr[d2]);
					acc += a.x * b.x + a.y * b.y;
				}
				s = acc * scale;
			}
			const float tmax = cu_warp_max(s);
			if (tmax == -INFINITY)
				continue; /* nothing this row sees in the tile */
			const float mn = fmaxf(m[j], tmax);
			const float corr = expf(m[j] - mn); /* 0 while m is -inf */
			const float e = ok ? expf(s - mn) : 0.0f;
			l[j] = l[j] * corr + cu_warp_sum(e);
			m[j] = mn;
#pragma unroll
			for (int i = 0; i < PF_NDL; i++)
				o[j][i] *= corr;
			for (int pp = 0; pp < len; pp++) {
				const float wp = __shfl_sync(0xffffffffu, e, pp);
				if (wp == 0.0f)
					continue;
#pragma unroll
				for (int i = 0; i < PF_NDL; i++) {
					const int d = lane + 32 * i;
					if (d < D) {
						const float vv = Q8 ? __fmul_rn((float)vi[(size_t)pp * D + d], vd[pp * NB + d / 32])
								    : __half2float(vs[(size_t)pp * D + d]);
						o[j][i] += wp * vv;
					}
				}
			}
		}
	}
#pragma unroll
	for (int j = 0; j < PF_RW; j++) {
		const int r = warp + PF_WARPS * j;
		if (r >= R)
			break;
		const int ti = r / nh, hi = r % nh;
		float *orow = out + ((size_t)(t0 + ti) * (size_t)n_head + (size_t)(h0 + hi)) * (size_t)D;
		const float inv = 1.0f / l[j];
#pragma unroll
		for (int i = 0; i < PF_NDL; i++) {
			const int d = lane + 32 * i;
			if (d < D)
				orow[d] = o[j][i] * inv;
		}
	}
}

void cu_launch_attn_prefill(cudaStream_t s, const struct cuda_attn_prefill_args *a)
{
	int hb, bq, n_hc;
	cu_attn_prefill_geometry(a->n_head / a->n_head_kv, &hb, &bq, &n_hc);
	const dim3 grid((unsigned)((a->n_tok + bq - 1) / bq), (unsigned)(a->n_head_kv * n_hc));
	const bool q8 = a->kv_type == GGML_TYPE_Q8_0;
	const size_t head_bytes = q8 ? (size_t)a->head_dim / 32 * 34 : (size_t)a->head_dim * 2;
	const size_t row_bytes = head_bytes * (size_t)a->n_head_kv;
	const size_t smem = cu_attn_prefill_smem(a->head_dim, q8);
	if (q8)
		k_attn_prefill<true><<<grid, PF_THREADS, smem, s>>>(
			a->q, (const uint8_t *)a->k, (const uint8_t *)a->v, row_bytes, head_bytes, a->n_head, a->n_head_kv,
			a->head_dim, a->pos0, a->n_tok, a->window, a->scale, hb, bq, n_hc, a->out);
	else
		k_attn_prefill<false><<<grid, PF_THREADS, smem, s>>>(
			a->q, (const uint8_t *)a->k, (const uint8_t *)a->v, row_bytes, head_bytes, a->n_head, a->n_head_kv,
			a->head_dim, a->pos0, a->n_tok, a->window, a->scale, hb, bq, n_hc, a->out);
}
