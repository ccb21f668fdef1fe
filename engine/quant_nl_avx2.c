/*
 * quant_nl_avx2.c - AVX2 + FMA + F16C kernels of the formats of quant_nl.c
 * (IQ4_NL, IQ4_XS, MXFP4, NVFP4, TQ1_0, TQ2_0, Q1_0, Q2_0).
 *
 * Same scheme as quant_x86.h, with its own per-function target attribute
 * so the rest of the build stays plain x86-64: one "step" per type adds a
 * block's product to a float vector accumulator, the block's integer sums
 * exact and then one FMA with its float scale (NVFP4, Q1_0, Q2_0: one per
 * Q8_0 activation block, whose scales differ).  dot runs four accumulators
 * over consecutive blocks; matmul takes four tokens against one weight row
 * so the unpacking of each weight block is shared (the compiler inlines
 * the step four times).  The AVX-512 level has no entries for these types
 * and falls back to these.
 *
 * Unpacking:
 *   IQ4_NL, IQ4_XS, MXFP4: the nibbles index a 16-byte table, one
 *   VPSHUFB per 32 elements gives the signed levels, multiplied with the
 *   activations by the |a| / sign(b, a) trick of quant_x86.h.
 *   IQ4_XS: the 6-bit sub-block scales multiply the 16-bit pair sums
 *   (VPMADDWD), so a block's integer sum stays exact.
 *   NVFP4: the same table lookup, a scale per 16 elements (128-bit half).
 *   Q1_0: the bits become +-1 bytes that flip the activations' signs.
 *   TQ2_0, TQ1_0, Q2_0: the codes t (value t - 1) are multiplied
 *   unsigned x signed, and sum(y) is subtracted (TQ*: over the block, from
 *   the Q8_K bsums; Q2_0: per Q8_0 block, from the bytes).  A TQ1_0 trit l
 *   of byte b is ((b * 3^l mod 256) * 3) >> 8: VPMULLW by 3^l per 16-bit
 *   lane, VPMULHUW by 3 with the byte moved to the top of its lane.
 */
#include "quant_impl.h"

#include "gguf.h"

#if QUANT_X86

#include <immintrin.h>
#include <string.h>

#include "quant_nl_tables.h"

#define NL_FN static inline __attribute__((target("avx2,fma,f16c"), always_inline))
#define NL_API static __attribute__((target("avx2,fma,f16c")))

NL_FN float nl_hsum(__m256 v)
{
	__m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
	r = _mm_add_ps(r, _mm_movehl_ps(r, r));
	r = _mm_add_ss(r, _mm_movehdup_ps(r));
	return _mm_cvtss_f32(r);
}

NL_FN __m256i nl_lut(const int8_t t[16])
{
	return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
}

/* 32 table values: elements 0..15 from the low nibbles of p[0..15],
 * 16..31 from the high ones */
NL_FN __m256i nl_levels(const uint8_t *p, __m256i lut)
{
	__m128i t = _mm_loadu_si128((const __m128i *)p);
	__m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
	return _mm256_shuffle_epi8(lut, _mm256_and_si256(v, _mm256_set1_epi8(0x0f)));
}

/* signed x signed bytes, pairs summed to int16 (|a| <= 127: no saturation) */
NL_FN __m256i nl_pairs_ss(__m256i a, __m256i b)
{
	return _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

NL_FN __m256i nl_y(const int8_t *p)
{
	return _mm256_loadu_si256((const __m256i *)p);
}

/* ---- steps -------------------------------------------------------------------- */

NL_FN void step_iq4_nl(const struct quant_block_iq4_nl *w, const struct quant_block_q8_0 *x,
		       __m256 *acc)
{
	__m256i v = nl_levels(w->qs, nl_lut(quant_kvalues_iq4nl));
	__m256i p = _mm256_madd_epi16(nl_pairs_ss(v, nl_y(x->qs)), _mm256_set1_epi16(1));
	__m256 d = _mm256_set1_ps(_cvtsh_ss(x->d) * _cvtsh_ss(w->d));
	*acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc);
}

NL_FN void step_mxfp4(const struct quant_block_mxfp4 *w, const struct quant_block_q8_0 *x,
		      __m256 *acc)
{
	__m256i v = nl_levels(w->qs, nl_lut(quant_kvalues_fp4));
	__m256i p = _mm256_madd_epi16(nl_pairs_ss(v, nl_y(x->qs)), _mm256_set1_epi16(1));
	__m256 d = _mm256_set1_ps(_cvtsh_ss(x->d) * quant_e8m0_half(w->e));
	*acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc);
}

NL_FN void step_iq4_xs(const struct quant_block_iq4_xs *w, const struct quant_block_q8_k *x,
		       __m256 *acc)
{
	const __m256i lut = nl_lut(quant_kvalues_iq4nl);
	__m256i sum = _mm256_setzero_si256();
	uint32_t sh = w->scales_h;
	for (int ib = 0; ib < 8; ib++, sh >>= 2) {
		int ls = ((w->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) | (int)((sh & 3) << 4);
		__m256i v = nl_levels(w->qs + 16 * ib, lut);
		__m256i p = nl_pairs_ss(v, nl_y(x->qs + 32 * ib));
		sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, _mm256_set1_epi16((short)(ls - 32))));
	}
	__m256 d = _mm256_set1_ps(_cvtsh_ss(w->d) * x->d);
	*acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), *acc);
}

/* -(sum of the 256 activations of a Q8_K block), spread over int32 lanes */
NL_FN __m256i nl_neg_ysum(const struct quant_block_q8_k *x)
{
	__m256i b = _mm256_loadu_si256((const __m256i *)x->bsums);
	return _mm256_madd_epi16(b, _mm256_set1_epi16(-1));
}

/* codes (unsigned, small) x activations, summed to int32 lanes */
NL_FN __m256i nl_dot_us(__m256i u, const int8_t *y)
{
	return _mm256_madd_epi16(_mm256_maddubs_epi16(u, nl_y(y)), _mm256_set1_epi16(1));
}

NL_FN void step_tq2_0(const struct quant_block_tq2_0 *w, const struct quant_block_q8_k *x,
		      __m256 *acc)
{
	const __m256i m3 = _mm256_set1_epi8(3);
	__m256i sum = nl_neg_ysum(x);
	for (int h = 0; h < 2; h++) {
		__m256i q = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * h));
		for (int l = 0; l < 4; l++) {
			__m256i t = _mm256_and_si256(_mm256_srli_epi16(q, 2 * l), m3);
			sum = _mm256_add_epi32(sum, nl_dot_us(t, x->qs + 128 * h + 32 * l));
		}
	}
	__m256 d = _mm256_set1_ps(x->d * _cvtsh_ss(w->d));
	*acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), *acc);
}

/* The trit each byte of V holds in the position picked by the multiplier
 * M (3^l, per 16-bit lane): ((b * M) mod 256 * 3) >> 8, bytewise. */
NL_FN __m256i nl_trits(__m256i v, __m256i m)
{
	const __m256i three = _mm256_set1_epi16(3);
	__m256i even = _mm256_slli_epi16(_mm256_mullo_epi16(v, m), 8);
	__m256i odd = _mm256_mullo_epi16(_mm256_and_si256(v, _mm256_set1_epi16((short)0xff00)), m);
	__m256i te = _mm256_mulhi_epu16(even, three), to = _mm256_mulhi_epu16(odd, three);
	return _mm256_or_si256(te, _mm256_slli_epi16(to, 8));
}

NL_FN __m256i nl_mul2(short lo, short hi)
{
	return _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo));
}

/* element order as unpack_tq1_0 in quant_nl.c */
NL_FN void step_tq1_0(const struct quant_block_tq1_0 *w, const struct quant_block_q8_k *x,
		      __m256 *acc)
{
	static const short pow3[5] = { 1, 3, 9, 27, 81 };
	__m256i sum = nl_neg_ysum(x);
	__m256i v0 = _mm256_loadu_si256((const __m256i *)w->qs);
	for (int l = 0; l < 5; l++) {
		__m256i t = nl_trits(v0, _mm256_set1_epi16(pow3[l]));
		sum = _mm256_add_epi32(sum, nl_dot_us(t, x->qs + 32 * l));
	}
	/* qs[32..47]: trits 0,1 then 2,3 as the two halves of a vector */
	__m128i q16 = _mm_loadu_si128((const __m128i *)(w->qs + 32));
	__m256i v1 = _mm256_broadcastsi128_si256(q16);
	sum = _mm256_add_epi32(sum, nl_dot_us(nl_trits(v1, nl_mul2(1, 3)), x->qs + 160));
	sum = _mm256_add_epi32(sum, nl_dot_us(nl_trits(v1, nl_mul2(9, 27)), x->qs + 192));
	/* trit 4 of qs[32..47], then qh's four trits of four bytes each */
	uint32_t qh;
	memcpy(&qh, w->qh, 4);
	__m256i v2 = _mm256_set_m128i(_mm_set1_epi32((int)qh), q16);
	__m256i m2 = _mm256_set_epi16(27, 27, 9, 9, 3, 3, 1, 1, 81, 81, 81, 81, 81, 81, 81, 81);
	sum = _mm256_add_epi32(sum, nl_dot_us(nl_trits(v2, m2), x->qs + 224));
	__m256 d = _mm256_set1_ps(_cvtsh_ss(w->d) * x->d);
	*acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), *acc);
}

/* NVFP4: a block is two Q8_0 blocks; the 16 bytes of Q8_0 block k hold
 * sub-blocks 2k (bytes 0..7: elements 0..7 low nibbles, 8..15 high) and
 * 2k + 1, each with its own scale: one per 128-bit half of the sums. */
NL_FN void step_nvfp4(const struct quant_block_nvfp4 *w, const struct quant_block_q8_0 *x,
		      __m256 *acc)
{
	const __m256i lut = nl_lut(quant_kvalues_fp4);
	const __m128i m4 = _mm_set1_epi8(0x0f);
	for (int k = 0; k < 2; k++) {
		__m128i t = _mm_loadu_si128((const __m128i *)(w->qs + 16 * k));
		__m128i lo = _mm_and_si128(t, m4), hi = _mm_and_si128(_mm_srli_epi16(t, 4), m4);
		__m256i idx = _mm256_set_m128i(_mm_unpackhi_epi64(lo, hi), _mm_unpacklo_epi64(lo, hi));
		__m256i v = _mm256_shuffle_epi8(lut, idx);
		__m256i p = _mm256_madd_epi16(nl_pairs_ss(v, nl_y(x[k].qs)), _mm256_set1_epi16(1));
		float dy = _cvtsh_ss(x[k].d);
		__m256 d = _mm256_set_m128(_mm_set1_ps(dy * quant_ue4m3_half(w->d[2 * k + 1])),
					   _mm_set1_ps(dy * quant_ue4m3_half(w->d[2 * k])));
		*acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc);
	}
}

/* 32 bits -> 32 bytes: +1 where bit e of the little-endian word is set,
 * else -1 */
NL_FN __m256i nl_signs(const uint8_t *p)
{
	uint32_t u;
	memcpy(&u, p, 4);
	const __m256i sel = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
					      0x0101010101010101LL, 0);
	const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
	__m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)u), sel);
	__m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
	return _mm256_sub_epi8(_mm256_and_si256(set, _mm256_set1_epi8(2)), _mm256_set1_epi8(1));
}

/* Q1_0: a block is four Q8_0 blocks; sum(+-y) via VPSIGNB */
NL_FN void step_q1_0(const struct quant_block_q1_0 *w, const struct quant_block_q8_0 *x,
		     __m256 *acc)
{
	float dw = _cvtsh_ss(w->d);
	for (int k = 0; k < 4; k++) {
		__m256i sy = _mm256_sign_epi8(nl_y(x[k].qs), nl_signs(w->qs + 4 * k));
		__m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), sy),
					      _mm256_set1_epi16(1));
		*acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * _cvtsh_ss(x[k].d)), _mm256_cvtepi32_ps(p), *acc);
	}
}

/* Q2_0: a block is two Q8_0 blocks; the codes of 8 bytes (element 4b + t
 * is bits 2t.. of byte b) interleaved into element order by two rounds of
 * unpacking, then sum(c * y) - sum(y). */
NL_FN void step_q2_0(const struct quant_block_q2_0 *w, const struct quant_block_q8_0 *x,
		     __m256 *acc)
{
	const __m128i m3 = _mm_set1_epi8(3);
	float dw = _cvtsh_ss(w->d);
	for (int k = 0; k < 2; k++) {
		__m128i v = _mm_loadl_epi64((const __m128i *)(w->qs + 8 * k));
		__m128i c0 = _mm_and_si128(v, m3), c1 = _mm_and_si128(_mm_srli_epi16(v, 2), m3);
		__m128i c2 = _mm_and_si128(_mm_srli_epi16(v, 4), m3), c3 = _mm_and_si128(_mm_srli_epi16(v, 6), m3);
		__m128i c01 = _mm_unpacklo_epi8(c0, c1), c23 = _mm_unpacklo_epi8(c2, c3);
		__m256i c = _mm256_set_m128i(_mm_unpackhi_epi16(c01, c23), _mm_unpacklo_epi16(c01, c23));
		__m256i y = nl_y(x[k].qs);
		__m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(c, y),
					       _mm256_maddubs_epi16(_mm256_set1_epi8(1), y));
		__m256i p = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
		*acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * _cvtsh_ss(x[k].d)), _mm256_cvtepi32_ps(p), *acc);
	}
}

/* ---- dot and matmul from a step ------------------------------------------------- */

/* NY: activation blocks per weight block */
#define NL_KERNELS(sfx, WBT, YBT, QKB, NY)                                                  \
	NL_API float dot_##sfx(const void *w, const void *x, int64_t n)                     \
	{                                                                                   \
		const WBT *a = w;                                                           \
		const YBT *b = x;                                                           \
		__m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;                 \
		int64_t nb = n / (QKB), i = 0;                                              \
		for (; i + 4 <= nb; i += 4) {                                               \
			step_##sfx(&a[i], &b[(NY) * i], &c0);                               \
			step_##sfx(&a[i + 1], &b[(NY) * (i + 1)], &c1);                     \
			step_##sfx(&a[i + 2], &b[(NY) * (i + 2)], &c2);                     \
			step_##sfx(&a[i + 3], &b[(NY) * (i + 3)], &c3);                     \
		}                                                                           \
		for (; i < nb; i++)                                                         \
			step_##sfx(&a[i], &b[(NY) * i], &c0);                               \
		return nl_hsum(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3))); \
	}                                                                                   \
	NL_API void rows4_##sfx(const void *w, size_t ws, int64_t r0, int64_t r1,           \
				const void *x, size_t xs, int64_t n, float *y, int64_t ys)  \
	{                                                                                   \
		const YBT *b0 = x;                                                          \
		const YBT *b1 = (const YBT *)((const char *)x + xs);                        \
		const YBT *b2 = (const YBT *)((const char *)x + 2 * xs);                    \
		const YBT *b3 = (const YBT *)((const char *)x + 3 * xs);                    \
		for (int64_t r = r0; r < r1; r++) {                                         \
			const WBT *a = (const WBT *)((const char *)w + (size_t)r * ws);     \
			__m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;         \
			for (int64_t i = 0; i < n / (QKB); i++) {                           \
				step_##sfx(&a[i], &b0[(NY) * i], &c0);                      \
				step_##sfx(&a[i], &b1[(NY) * i], &c1);                      \
				step_##sfx(&a[i], &b2[(NY) * i], &c2);                      \
				step_##sfx(&a[i], &b3[(NY) * i], &c3);                      \
			}                                                                   \
			y[r] = nl_hsum(c0);                                                 \
			y[ys + r] = nl_hsum(c1);                                            \
			y[2 * ys + r] = nl_hsum(c2);                                        \
			y[3 * ys + r] = nl_hsum(c3);                                        \
		}                                                                           \
	}                                                                                   \
	NL_API void matmul_##sfx(const void *w, size_t ws, int64_t r0, int64_t r1,          \
				 const void *x, size_t xs, int64_t nt, int64_t n, float *y, \
				 int64_t ys)                                                \
	{                                                                                   \
		nl_matmul(rows4_##sfx, dot_##sfx, w, ws, r0, r1, x, xs, nt, n, y, ys);      \
	}

typedef void (*nl_rows4_fn)(const void *w, size_t ws, int64_t r0, int64_t r1, const void *x,
			    size_t xs, int64_t n, float *y, int64_t ys);

/* Row tiles of about 16 KiB that stay in cache while the tokens pass, four
 * tokens at a time, the rest one by one. */
static void nl_matmul(nl_rows4_fn rows4, quant_dot_fn dot, const void *w, size_t ws, int64_t r0,
		      int64_t r1, const void *x, size_t xs, int64_t nt, int64_t n, float *y,
		      int64_t ys)
{
	int64_t tile = (int64_t)(16384 / (ws ? ws : 1));

	if (tile < 1)
		tile = 1;
	for (int64_t ra = r0; ra < r1; ra += tile) {
		int64_t rb = ra + tile < r1 ? ra + tile : r1, t = 0;
		for (; t + 4 <= nt; t += 4)
			rows4(w, ws, ra, rb, (const char *)x + (size_t)t * xs, xs, n, y + t * ys, ys);
		for (; t < nt; t++)
			for (int64_t r = ra; r < rb; r++)
				y[t * ys + r] = dot((const char *)w + (size_t)r * ws,
						    (const char *)x + (size_t)t * xs, n);
	}
}

NL_KERNELS(iq4_nl, struct quant_block_iq4_nl, struct quant_block_q8_0, 32, 1)
NL_KERNELS(mxfp4, struct quant_block_mxfp4, struct quant_block_q8_0, 32, 1)
NL_KERNELS(nvfp4, struct quant_block_nvfp4, struct quant_block_q8_0, 64, 2)
NL_KERNELS(q1_0, struct quant_block_q1_0, struct quant_block_q8_0, 128, 4)
NL_KERNELS(q2_0, struct quant_block_q2_0, struct quant_block_q8_0, 64, 2)
NL_KERNELS(iq4_xs, struct quant_block_iq4_xs, struct quant_block_q8_k, 256, 1)
NL_KERNELS(tq2_0, struct quant_block_tq2_0, struct quant_block_q8_k, 256, 1)
NL_KERNELS(tq1_0, struct quant_block_tq1_0, struct quant_block_q8_k, 256, 1)

/* Activations: quant_avx2.c's Q8_0 and Q8_K quantisers (static there),
 * reached through its table. */
static void act_q8_0(const float *x, void *dst, int64_t n)
{
	quant_kern_avx2(GGML_TYPE_Q8_0)->act(x, dst, n);
}

static void act_q8_k(const float *x, void *dst, int64_t n)
{
	quant_kern_avx2(GGML_TYPE_Q4_K)->act(x, dst, n);
}

#define KERN(sfx, act) { NULL, act, dot_##sfx, NULL, matmul_##sfx }

static const struct quant_kern k_iq4_nl = KERN(iq4_nl, act_q8_0);
static const struct quant_kern k_mxfp4 = KERN(mxfp4, act_q8_0);
static const struct quant_kern k_nvfp4 = KERN(nvfp4, act_q8_0);
static const struct quant_kern k_q1_0 = KERN(q1_0, act_q8_0);
static const struct quant_kern k_q2_0 = KERN(q2_0, act_q8_0);
static const struct quant_kern k_iq4_xs = KERN(iq4_xs, act_q8_k);
static const struct quant_kern k_tq2_0 = KERN(tq2_0, act_q8_k);
static const struct quant_kern k_tq1_0 = KERN(tq1_0, act_q8_k);

const struct quant_kern *quant_kern_nl_avx2(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_IQ4_NL: return &k_iq4_nl;
	case GGML_TYPE_MXFP4: return &k_mxfp4;
	case GGML_TYPE_NVFP4: return &k_nvfp4;
	case GGML_TYPE_Q1_0: return &k_q1_0;
	case GGML_TYPE_Q2_0: return &k_q2_0;
	case GGML_TYPE_IQ4_XS: return &k_iq4_xs;
	case GGML_TYPE_TQ2_0: return &k_tq2_0;
	case GGML_TYPE_TQ1_0: return &k_tq1_0;
	default: return NULL;
	}
}

#else

const struct quant_kern *quant_kern_nl_avx2(uint32_t type)
{
	(void)type;
	return NULL;
}

#endif
