/*
 * quant_iq_avx2.c - AVX2 kernels of the grid-based i-quants (see
 * quant_iq.h), compiled with per-function target attributes like
 * quant_avx2.c.  At the AVX-512 level these are used too (quant_impl.h:
 * a NULL entry falls back a level).
 *
 * Every type is brought to the same form per sub-block of 32 weights: a
 * vector u of unsigned magnitudes, a vector sg whose byte signs are the
 * weights' signs (VPSIGNB applies them to the activations, so VPMADDUBSW
 * can multiply u by them) and the two odd scales of its halves as int16
 * lanes for VPMADDWD.  The grids are looked up with scalar loads; IQ1_S
 * and IQ1_M fold their +-1/8 shift in as u = |8*grid +- 1| (quant_iq.c
 * does the same).  The integer sums equal the scalar reference's; one FMA
 * per block applies d * d_y, and the type's power-of-two factor comes last,
 * so results differ from the reference only in the order of float
 * additions.  matmul shares each sub-block's unpacking among four tokens.
 */
#include "quant_iq.h"

#if QUANT_X86

#include <immintrin.h>
#include <string.h>

#define IQ_FN static inline __attribute__((target("avx2,fma,f16c"), always_inline))
#define IQ_API static __attribute__((target("avx2,fma,f16c")))

struct iq_sub {
	__m256i u, sg, ls;
};

static inline uint32_t rd16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static inline uint32_t rd32(const uint8_t *p)
{
	return rd16(p) | rd16(p + 2) << 16;
}

/* bit e of w -> byte e: -1 where set, +1 where clear */
IQ_FN __m256i iq_signs(uint32_t w)
{
	const __m256i sel = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
					      0x0101010101010101LL, 0);
	const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
	__m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w), sel);
	__m256i m = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
	return _mm256_or_si256(m, _mm256_set1_epi8(1));
}

/* four 7-bit sign indexes (bits 0..27 of aux) through the sign table */
IQ_FN uint32_t iq_ksigns4(uint32_t aux)
{
	return (uint32_t)quant_iq_ksigns[aux & 127] | (uint32_t)quant_iq_ksigns[(aux >> 7) & 127] << 8 |
	       (uint32_t)quant_iq_ksigns[(aux >> 14) & 127] << 16 |
	       (uint32_t)quant_iq_ksigns[(aux >> 21) & 127] << 24;
}

/* odd scales 2*lo+1 for weights 0..15, 2*hi+1 for 16..31 */
IQ_FN __m256i iq_ls(uint32_t lo, uint32_t hi)
{
	return _mm256_set_m128i(_mm_set1_epi16((short)(2 * hi + 1)), _mm_set1_epi16((short)(2 * lo + 1)));
}

IQ_FN __m256i iq_grid64(const uint64_t *g, uint32_t i0, uint32_t i1, uint32_t i2, uint32_t i3)
{
	return _mm256_set_epi64x((long long)g[i3], (long long)g[i2], (long long)g[i1], (long long)g[i0]);
}

IQ_FN __m256i iq_grid32(const uint32_t *g, const uint32_t idx[8])
{
	return _mm256_set_epi32((int)g[idx[7]], (int)g[idx[6]], (int)g[idx[5]], (int)g[idx[4]],
				(int)g[idx[3]], (int)g[idx[2]], (int)g[idx[1]], (int)g[idx[0]]);
}

IQ_FN struct iq_sub iq2_xxs_sub(const uint8_t *b, int ib)
{
	const uint8_t *idx = ((const struct quant_block_iq2_xxs *)b)->qs + 8 * ib;
	uint32_t aux = rd32(idx + 4);
	struct iq_sub s = {
		iq_grid64(quant_iq2xxs_grid, idx[0], idx[1], idx[2], idx[3]),
		iq_signs(iq_ksigns4(aux)), iq_ls(aux >> 28, aux >> 28),
	};
	return s;
}

IQ_FN struct iq_sub iq2_xs_sub(const uint8_t *b, int ib)
{
	const struct quant_block_iq2_xs *w = (const void *)b;
	const uint8_t *q = w->qs + 8 * ib;
	uint32_t v0 = rd16(q), v1 = rd16(q + 2), v2 = rd16(q + 4), v3 = rd16(q + 6), sc = w->scales[ib];
	uint32_t sw = iq_ksigns4((v0 >> 9) | (v1 >> 9) << 7 | (v2 >> 9) << 14 | (v3 >> 9) << 21);
	struct iq_sub s = {
		iq_grid64(quant_iq2xs_grid, v0 & 511, v1 & 511, v2 & 511, v3 & 511),
		iq_signs(sw), iq_ls(sc & 15, sc >> 4),
	};
	return s;
}

IQ_FN struct iq_sub iq2_s_sub(const uint8_t *b, int ib)
{
	const struct quant_block_iq2_s *w = (const void *)b;
	const uint8_t *qs = w->qs + 4 * ib;
	uint32_t qh = w->qh[ib], sc = w->scales[ib];
	struct iq_sub s = {
		iq_grid64(quant_iq2s_grid, qs[0] | (qh & 3) << 8, qs[1] | (qh >> 2 & 3) << 8,
			  qs[2] | (qh >> 4 & 3) << 8, qs[3] | (qh >> 6 & 3) << 8),
		iq_signs(rd32(w->signs + 4 * ib)), iq_ls(sc & 15, sc >> 4),
	};
	return s;
}

IQ_FN struct iq_sub iq3_xxs_sub(const uint8_t *b, int ib)
{
	const struct quant_block_iq3_xxs *w = (const void *)b;
	const uint8_t *qs = w->qs + 8 * ib;
	uint32_t aux = rd32(w->sas + 4 * ib), idx[8];
	for (int m = 0; m < 8; m++)
		idx[m] = qs[m];
	struct iq_sub s = {
		iq_grid32(quant_iq3xxs_grid, idx), iq_signs(iq_ksigns4(aux)), iq_ls(aux >> 28, aux >> 28),
	};
	return s;
}

IQ_FN struct iq_sub iq3_s_sub(const uint8_t *b, int ib)
{
	const struct quant_block_iq3_s *w = (const void *)b;
	const uint8_t *qs = w->qs + 8 * ib;
	uint32_t qh = w->qh[ib], sc = (uint32_t)(w->scales[ib / 2] >> (4 * (ib % 2))) & 15, idx[8];
	for (int m = 0; m < 8; m++)
		idx[m] = qs[m] | (qh >> m & 1) << 8;
	struct iq_sub s = {
		iq_grid32(quant_iq3s_grid, idx), iq_signs(rd32(w->signs + 4 * ib)), iq_ls(sc, sc),
	};
	return s;
}

/* IQ1: q = 8*grid + delta as signed bytes, u = |q| */
IQ_FN struct iq_sub iq1_sub(__m256i grid, __m256i delta, __m256i ls)
{
	__m256i q = _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), grid), delta);
	struct iq_sub s = { _mm256_abs_epi8(q), q, ls };
	return s;
}

IQ_FN struct iq_sub iq1_s_sub(const uint8_t *b, int ib)
{
	const struct quant_block_iq1_s *w = (const void *)b;
	const uint8_t *qs = w->qs + 4 * ib;
	uint32_t qh = rd16(w->qh + 2 * ib), s = qh >> 12 & 7;
	__m256i grid = iq_grid64(quant_iq1s_grid, qs[0] | (qh & 7) << 8, qs[1] | (qh >> 3 & 7) << 8,
				 qs[2] | (qh >> 6 & 7) << 8, qs[3] | (qh >> 9 & 7) << 8);
	return iq1_sub(grid, _mm256_set1_epi8(qh & 0x8000 ? -1 : 1), iq_ls(s, s));
}

IQ_FN long long iq1_delta8(uint32_t h)
{
	return h & 8 ? -1LL : 0x0101010101010101LL;
}

IQ_FN struct iq_sub iq1_m_sub(const uint8_t *b, int ib)
{
	const struct quant_block_iq1_m *w = (const void *)b;
	const uint8_t *qs = w->qs + 4 * ib;
	uint32_t h0 = w->qh[2 * ib], h1 = w->qh[2 * ib + 1];
	uint32_t sc = rd16(w->scales + 2 * (ib / 2)) >> (6 * (ib % 2));
	__m256i grid = iq_grid64(quant_iq1s_grid, qs[0] | (h0 & 7) << 8, qs[1] | (h0 >> 4 & 7) << 8,
				 qs[2] | (h1 & 7) << 8, qs[3] | (h1 >> 4 & 7) << 8);
	__m256i delta = _mm256_set_epi64x(iq1_delta8(h1 >> 4), iq1_delta8(h1), iq1_delta8(h0 >> 4),
					  iq1_delta8(h0));
	return iq1_sub(grid, delta, iq_ls(sc & 7, sc >> 3 & 7));
}

IQ_FN struct iq_sub iq_sub_of(uint32_t type, const uint8_t *b, int ib)
{
	switch (type) {
	case GGML_TYPE_IQ2_XXS: return iq2_xxs_sub(b, ib);
	case GGML_TYPE_IQ2_XS: return iq2_xs_sub(b, ib);
	case GGML_TYPE_IQ2_S: return iq2_s_sub(b, ib);
	case GGML_TYPE_IQ3_XXS: return iq3_xxs_sub(b, ib);
	case GGML_TYPE_IQ3_S: return iq3_s_sub(b, ib);
	case GGML_TYPE_IQ1_S: return iq1_s_sub(b, ib);
	default: return iq1_m_sub(b, ib);
	}
}

/* the block's fp16 scale; IQ1_M's is the top nibbles of its scale words */
IQ_FN float iq_d(uint32_t type, const uint8_t *b)
{
	uint32_t h = rd16(b);

	if (type == GGML_TYPE_IQ1_M) {
		const uint8_t *sc = ((const struct quant_block_iq1_m *)b)->scales;
		h = rd16(sc) >> 12 | (rd16(sc + 2) >> 8 & 0xf0) | (rd16(sc + 4) >> 4 & 0xf00) |
		    (rd16(sc + 6) & 0xf000);
	}
	return _cvtsh_ss((unsigned short)h);
}

static float iq_mul(uint32_t type)
{
	return type == GGML_TYPE_IQ3_S ? 1.0f : type == GGML_TYPE_IQ3_XXS ? 0.25f : 0.125f;
}

static size_t iq_bytes(uint32_t type)
{
	return quant_iq_block_bytes(type);
}

/* One weight block b against block i of NT (1..4) activation rows y[t]:
 * acc[t] += (d * d_y) * per-lane integer sums. */
IQ_FN void iq_block(uint32_t type, const uint8_t *b, const struct quant_block_q8_k *const *y,
		    int64_t i, int nt, __m256 *acc)
{
	__m256i isum[4] = { _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
			    _mm256_setzero_si256() };

	for (int ib = 0; ib < 8; ib++) {
		struct iq_sub s = iq_sub_of(type, b, ib);
		for (int t = 0; t < nt; t++) {
			__m256i q8 = _mm256_loadu_si256((const __m256i *)(y[t][i].qs + 32 * ib));
			__m256i p = _mm256_maddubs_epi16(s.u, _mm256_sign_epi8(q8, s.sg));
			isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, s.ls));
		}
	}
	float d = iq_d(type, b);
	for (int t = 0; t < nt; t++)
		acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * y[t][i].d), _mm256_cvtepi32_ps(isum[t]), acc[t]);
}

IQ_FN float iq_hsum(__m256 v)
{
	__m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
	r = _mm_add_ps(r, _mm_movehl_ps(r, r));
	r = _mm_add_ss(r, _mm_movehdup_ps(r));
	return _mm_cvtss_f32(r);
}

IQ_FN float iq_dot(uint32_t type, const void *w, const void *x, int64_t n)
{
	const uint8_t *b = w;
	const struct quant_block_q8_k *y = x;
	size_t bb = iq_bytes(type);
	__m256 acc = _mm256_setzero_ps();

	for (int64_t i = 0; i < n / 256; i++)
		iq_block(type, b + (size_t)i * bb, &y, i, 1, &acc);
	return iq_mul(type) * iq_hsum(acc);
}

/* rows in tiles of about 16 KiB that stay in cache while the tokens pass,
 * four tokens per unpacking of a weight block */
IQ_FN void iq_matmul(uint32_t type, const void *w, size_t ws, int64_t r0, int64_t r1,
		     const void *x, size_t xs, int64_t nt, int64_t n, float *y, int64_t ys)
{
	size_t bb = iq_bytes(type);
	int64_t tile = (int64_t)(16384 / (ws ? ws : 1));

	if (tile < 1)
		tile = 1;
	for (int64_t ra = r0; ra < r1; ra += tile) {
		int64_t rb = ra + tile < r1 ? ra + tile : r1, t = 0;
		for (; t + 4 <= nt; t += 4) {
			const struct quant_block_q8_k *yt[4];
			for (int k = 0; k < 4; k++)
				yt[k] = (const void *)((const char *)x + (size_t)(t + k) * xs);
			for (int64_t r = ra; r < rb; r++) {
				const uint8_t *row = (const uint8_t *)w + (size_t)r * ws;
				__m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(),
						  _mm256_setzero_ps(), _mm256_setzero_ps() };
				for (int64_t i = 0; i < n / 256; i++)
					iq_block(type, row + (size_t)i * bb, yt, i, 4, acc);
				for (int k = 0; k < 4; k++)
					y[(t + k) * ys + r] = iq_mul(type) * iq_hsum(acc[k]);
			}
		}
		for (; t < nt; t++)
			for (int64_t r = ra; r < rb; r++)
				y[t * ys + r] = iq_dot(type, (const char *)w + (size_t)r * ws,
						       (const char *)x + (size_t)t * xs, n);
	}
}

/* the Q8_K quantiser the K-quants use at this level (same bytes as the
 * scalar one) */
static void act_q8_k(const float *x, void *dst, int64_t n)
{
	quant_act_fn_at(QUANT_LEVEL_AVX2, GGML_TYPE_Q4_K)(x, dst, n);
}

#define IQ_KERNELS(sfx, TYPE)                                                                 \
	IQ_API float dot_##sfx(const void *w, const void *x, int64_t n)                        \
	{                                                                                      \
		return iq_dot(TYPE, w, x, n);                                                  \
	}                                                                                      \
	IQ_API void matmul_##sfx(const void *w, size_t ws, int64_t r0, int64_t r1, const void *x, \
				 size_t xs, int64_t nt, int64_t n, float *y, int64_t ys)       \
	{                                                                                      \
		iq_matmul(TYPE, w, ws, r0, r1, x, xs, nt, n, y, ys);                           \
	}                                                                                      \
	static const struct quant_kern k_##sfx = { NULL, act_q8_k, dot_##sfx, NULL, matmul_##sfx };

IQ_KERNELS(iq2_xxs, GGML_TYPE_IQ2_XXS)
IQ_KERNELS(iq2_xs, GGML_TYPE_IQ2_XS)
IQ_KERNELS(iq2_s, GGML_TYPE_IQ2_S)
IQ_KERNELS(iq3_xxs, GGML_TYPE_IQ3_XXS)
IQ_KERNELS(iq3_s, GGML_TYPE_IQ3_S)
IQ_KERNELS(iq1_s, GGML_TYPE_IQ1_S)
IQ_KERNELS(iq1_m, GGML_TYPE_IQ1_M)

const struct quant_kern *quant_iq_kern_avx2(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_IQ2_XXS: return &k_iq2_xxs;
	case GGML_TYPE_IQ2_XS: return &k_iq2_xs;
	case GGML_TYPE_IQ2_S: return &k_iq2_s;
	case GGML_TYPE_IQ3_XXS: return &k_iq3_xxs;
	case GGML_TYPE_IQ3_S: return &k_iq3_s;
	case GGML_TYPE_IQ1_S: return &k_iq1_s;
	case GGML_TYPE_IQ1_M: return &k_iq1_m;
	default: return NULL;
	}
}

#else

const struct quant_kern *quant_iq_kern_avx2(uint32_t type)
{
	(void)type;
	return NULL;
}

#endif
