/*
 * quant_x86.h - x86 SIMD kernels, written once and compiled per CPU level.
 *
 * Not a normal header: quant_avx2.c and quant_avx512.c each include it once
 * after defining
 *   QX_TARGET  the target attribute string for every function here,
 *   QX(name)   the level's name for a kernel (name##_avx2, ...),
 *   QX_VNNI    1 to form u8*s8 dot products with VPDPBUSD, 0 for
 *              VPMADDUBSW + VPMADDWD.
 * so the same source yields an AVX2 and an AVX-512 (VL+VNNI, 256-bit
 * vectors) build in one binary without global -m flags.
 *
 * Each weight type has one "step" function that adds one block's product
 * to a vector accumulator (integer sums exact, then one FMA with the
 * block's float scale) and to a side sum, read from lane 1 of a 128-bit
 * accumulator (Q4_1/Q5_1 offsets, K-quant mins).  dot (four independent accumulators) and matmul (4 tokens at a
 * time against one weight row; the compiler shares the weight unpacking)
 * are generated from it by QX_KERNELS.  matvec is a loop of dot over the
 * rows on purpose: one sequential stream per thread is what the hardware
 * prefetcher follows best, and interleaving four rows measured up to 3x
 * slower on matrices that do not fit in cache.
 */

#include <immintrin.h>
#include <string.h>

#define QX_RN (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define QX_FN static inline __attribute__((target(QX_TARGET), always_inline))
#define QX_API static __attribute__((target(QX_TARGET)))

QX_FN float QX(hsum)(__m256 v)
{
	__m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
	r = _mm_add_ps(r, _mm_movehl_ps(r, r));
	r = _mm_add_ss(r, _mm_movehdup_ps(r));
	return _mm_cvtss_f32(r);
}

QX_FN float QX(lane1)(__m128 v)
{
	return _mm_cvtss_f32(_mm_movehdup_ps(v));
}

QX_FN float QX(h2f)(uint16_t h)
{
	return _cvtsh_ss(h);
}

/* 32 nibbles: bytes 0..15 the low nibbles of p[0..15], 16..31 the high
 * ones, i.e. element order of Q4_0/Q4_1/Q5_x blocks. */
QX_FN __m256i QX(nibbles)(const uint8_t *p)
{
	__m128i t = _mm_loadu_si128((const __m128i *)p);
	__m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
	return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

/* 32 bits -> 32 bytes, 0xff where bit e of the little-endian word is set */
QX_FN __m256i QX(bits_to_bytes)(const uint8_t *p)
{
	uint32_t w;
	memcpy(&w, p, 4);
	const __m256i sel = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
					      0x0101010101010101LL, 0);
	const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
	__m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w), sel);
	return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* sum of u8*s8 over groups of four bytes, 8 int32 lanes */
QX_FN __m256i QX(dot_us)(__m256i u, __m256i s)
{
#if QX_VNNI
	return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
	return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

/* signed x signed bytes via |a| and sign(b, a) */
QX_FN __m256i QX(dot_ss)(__m256i a, __m256i b)
{
	return QX(dot_us)(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

/* (d, m) of a weight block times (d, s) of a Q8_1 block, both fp16 pairs
 * at the block start: lane 0 = d*d', lane 1 = m*s, in one conversion each */
QX_FN __m128 QX(pair_products)(const uint16_t *wdm, const uint16_t *xds)
{
	uint32_t a, b;
	memcpy(&a, wdm, 4);
	memcpy(&b, xds, 4);
	return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)a)),
			  _mm_cvtph_ps(_mm_cvtsi32_si128((int)b)));
}

/* ---- steps: one weight block times one activation block ---------------- */

QX_FN void QX(step_q4_0)(const struct quant_block_q4_0 *w, const struct quant_block_q8_0 *x,
			 __m256 *acc, __m128 *side4)
{
	__m256i q = QX(nibbles)(w->qs);
	__m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
	__m256i p = _mm256_sub_epi32(QX(dot_us)(q, y), QX(dot_us)(_mm256_set1_epi8(8), y));
	__m256 d = _mm256_set1_ps(QX(h2f)(w->d) * QX(h2f)(x->d));
	*acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc);
	(void)side4;
}

QX_FN void QX(step_q4_1)(const struct quant_block_q4_1 *w, const struct quant_block_q8_1 *x,
			 __m256 *acc, __m128 *side4)
{
	__m256i q = QX(nibbles)(w->qs);
	__m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
	__m256i p = QX(dot_us)(q, y);
	__m128 dm = QX(pair_products)(&w->d, &x->d);
	*acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm), _mm256_cvtepi32_ps(p), *acc);
	*side4 = _mm_add_ps(*side4, dm);
}

QX_FN void QX(step_q5_0)(const struct quant_block_q5_0 *w, const struct quant_block_q8_0 *x,
			 __m256 *acc, __m128 *side4)
{
	__m256i hb = _mm256_and_si256(QX(bits_to_bytes)(w->qh), _mm256_set1_epi8(0x10));
	__m256i q = _mm256_or_si256(QX(nibbles)(w->qs), hb);
	__m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
	__m256i p = _mm256_sub_epi32(QX(dot_us)(q, y), QX(dot_us)(_mm256_set1_epi8(16), y));
	__m256 d = _mm256_set1_ps(QX(h2f)(w->d) * QX(h2f)(x->d));
	*acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc);
	(void)side4;
}

QX_FN void QX(step_q5_1)(const struct quant_block_q5_1 *w, const struct quant_block_q8_1 *x,
			 __m256 *acc, __m128 *side4)
{
	__m256i hb = _mm256_and_si256(QX(bits_to_bytes)(w->qh), _mm256_set1_epi8(0x10));
	__m256i q = _mm256_or_si256(QX(nibbles)(w->qs), hb);
	__m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
	__m256i p = QX(dot_us)(q, y);
	__m128 dm = QX(pair_products)(&w->d, &x->d);
	*acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm), _mm256_cvtepi32_ps(p), *acc);
	*side4 = _mm_add_ps(*side4, dm);
}

QX_FN void QX(step_q8_0)(const struct quant_block_q8_0 *w, const struct quant_block_q8_0 *x,
			 __m256 *acc, __m128 *side4)
{
	__m256i q = _mm256_loadu_si256((const __m256i *)w->qs);
	__m256i y = _mm256_loadu_si256((const __m256i *)x->qs);
	__m256i p = QX(dot_ss)(q, y);
	__m256 d = _mm256_set1_ps(QX(h2f)(w->d) * QX(h2f)(x->d));
	*acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc);
	(void)side4;
}

/* Shuffle mask that spreads int16 element j over all 16 lanes of a 256-bit
 * vector holding the same eight int16 in both halves. */
QX_FN __m256i QX(bcast16_mask)(int j)
{
	return _mm256_set1_epi16((short)(((2 * j + 1) << 8) | (2 * j)));
}

/* Shuffle masks putting int16 element 2k in the low half and 2k + 1 in
 * the high half (both halves holding the same eight int16). */
static const uint8_t QX(pair_masks)[4][32] = {
	{ 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3 },
	{ 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7 },
	{ 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9,
	  10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11 },
	{ 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13,
	  14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15 },
};

/* Q4_K/Q5_K: the eight 6-bit scales as int16 in both halves of a vector,
 * and sum_k mins[k] * (bsums[2k] + bsums[2k+1]). */
QX_FN __m256i QX(k4_scales)(const uint8_t s[12], const int16_t bsums[16], int *minsum)
{
	uint32_t u0, u1, u2;
	memcpy(&u0, s, 4);
	memcpy(&u1, s + 4, 4);
	memcpy(&u2, s + 8, 4);
	uint32_t sc_lo = u0 & 0x3f3f3f3fu, mn_lo = u1 & 0x3f3f3f3fu;
	uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
	uint32_t mn_hi = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
	__m128i sc = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sc_hi, (int)sc_lo));
	__m128i mn = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)mn_hi, (int)mn_lo));
	__m128i b0 = _mm_loadu_si128((const __m128i *)bsums);
	__m128i b1 = _mm_loadu_si128((const __m128i *)(bsums + 8));
	__m128i m = _mm_madd_epi16(mn, _mm_hadd_epi16(b0, b1));
	m = _mm_add_epi32(m, _mm_shuffle_epi32(m, 0x4e));
	m = _mm_add_epi32(m, _mm_shuffle_epi32(m, 0xb1));
	*minsum = _mm_cvtsi128_si32(m);
	return _mm256_broadcastsi128_si256(sc);
}

QX_FN void QX(step_q4_k)(const struct quant_block_q4_k *w, const struct quant_block_q8_k *x,
			 __m256 *acc, __m128 *side4)
{
	int minsum;
	__m256i sc = QX(k4_scales)(w->scales, x->bsums, &minsum);
	__m256i sum = _mm256_setzero_si256();
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	for (int c = 0; c < 4; c++) {
		__m256i b = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * c));
		__m256i lo = _mm256_and_si256(b, m4);
		__m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
		__m256i y0 = _mm256_loadu_si256((const __m256i *)(x->qs + 64 * c));
		__m256i y1 = _mm256_loadu_si256((const __m256i *)(x->qs + 64 * c + 32));
		__m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0),
					       _mm256_shuffle_epi8(sc, QX(bcast16_mask)(2 * c)));
		__m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1),
					       _mm256_shuffle_epi8(sc, QX(bcast16_mask)(2 * c + 1)));
		sum = _mm256_add_epi32(sum, _mm256_add_epi32(p0, p1));
	}
	*acc = _mm256_fmadd_ps(_mm256_set1_ps(x->d * QX(h2f)(w->d)), _mm256_cvtepi32_ps(sum), *acc);
	*side4 = _mm_sub_ps(*side4, _mm_set1_ps((x->d * QX(h2f)(w->dmin)) * (float)minsum));
}

QX_FN void QX(step_q5_k)(const struct quant_block_q5_k *w, const struct quant_block_q8_k *x,
			 __m256 *acc, __m128 *side4)
{
	int minsum;
	__m256i sc = QX(k4_scales)(w->scales, x->bsums, &minsum);
	__m256i sum = _mm256_setzero_si256();
	const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
	__m256i qh = _mm256_loadu_si256((const __m256i *)w->qh);
	for (int c = 0; c < 4; c++) {
		__m256i b = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * c));
		__m256i h0 = _mm256_slli_epi16(_mm256_and_si256(qh, one), 4);
		__m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 1), one), 4);
		qh = _mm256_srli_epi16(qh, 2);
		__m256i lo = _mm256_or_si256(_mm256_and_si256(b, m4), h0);
		__m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), m4), h1);
		__m256i y0 = _mm256_loadu_si256((const __m256i *)(x->qs + 64 * c));
		__m256i y1 = _mm256_loadu_si256((const __m256i *)(x->qs + 64 * c + 32));
		__m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0),
					       _mm256_shuffle_epi8(sc, QX(bcast16_mask)(2 * c)));
		__m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1),
					       _mm256_shuffle_epi8(sc, QX(bcast16_mask)(2 * c + 1)));
		sum = _mm256_add_epi32(sum, _mm256_add_epi32(p0, p1));
	}
	*acc = _mm256_fmadd_ps(_mm256_set1_ps(x->d * QX(h2f)(w->d)), _mm256_cvtepi32_ps(sum), *acc);
	*side4 = _mm_sub_ps(*side4, _mm_set1_ps((x->d * QX(h2f)(w->dmin)) * (float)minsum));
}

/* Q2_K: value = d*sc*q - dmin*mn per 16-element sub-block, q 2-bit */
QX_FN void QX(step_q2_k)(const struct quant_block_q2_k *w, const struct quant_block_q8_k *x,
			 __m256 *acc, __m128 *side4)
{
	const __m128i m4 = _mm_set1_epi8(0x0f);
	const __m256i m3 = _mm256_set1_epi8(3);
	__m128i raw = _mm_loadu_si128((const __m128i *)w->scales);
	__m128i sc8 = _mm_and_si128(raw, m4), mn8 = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
	/* mins against the 16 bsums */
	__m128i b0 = _mm_loadu_si128((const __m128i *)x->bsums);
	__m128i b1 = _mm_loadu_si128((const __m128i *)(x->bsums + 8));
	__m128i m = _mm_add_epi32(_mm_madd_epi16(_mm_cvtepu8_epi16(mn8), b0),
				  _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_srli_si128(mn8, 8)), b1));
	m = _mm_add_epi32(m, _mm_shuffle_epi32(m, 0x4e));
	m = _mm_add_epi32(m, _mm_shuffle_epi32(m, 0xb1));
	__m256i scv[2] = { _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc8)),
			   _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128(sc8, 8))) };
	__m256i sum = _mm256_setzero_si256();
	for (int h = 0; h < 2; h++) {
		__m256i q = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * h));
		for (int j = 0; j < 4; j++) {
			__m256i qj = _mm256_and_si256(q, m3);
			q = _mm256_srli_epi16(q, 2);
			__m256i y = _mm256_loadu_si256((const __m256i *)(x->qs + 128 * h + 32 * j));
			__m256i scp = _mm256_shuffle_epi8(scv[h], _mm256_loadu_si256(
				(const __m256i *)QX(pair_masks)[j]));
			sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(qj, y), scp));
		}
	}
	*acc = _mm256_fmadd_ps(_mm256_set1_ps(x->d * QX(h2f)(w->d)), _mm256_cvtepi32_ps(sum), *acc);
	*side4 = _mm_sub_ps(*side4, _mm_set1_ps((x->d * QX(h2f)(w->dmin)) *
						 (float)_mm_cvtsi128_si32(m)));
}

/* Q3_K: value = d*(sc-32)*(q - 4*(1-hbit)), q 2-bit; computed as
 * sum sc*(q + 4*hbit)*y - 4 * sum sc*bsum so the byte products stay
 * unsigned x signed */
QX_FN void QX(step_q3_k)(const struct quant_block_q3_k *w, const struct quant_block_q8_k *x,
			 __m256 *acc, __m128 *side4)
{
	uint32_t a0, a1, t;
	memcpy(&a0, w->scales, 4);
	memcpy(&a1, w->scales + 4, 4);
	memcpy(&t, w->scales + 8, 4);
	uint32_t o0 = (a0 & 0x0f0f0f0fu) | ((t & 0x03030303u) << 4);
	uint32_t o1 = (a1 & 0x0f0f0f0fu) | (((t >> 2) & 0x03030303u) << 4);
	uint32_t o2 = ((a0 >> 4) & 0x0f0f0f0fu) | (((t >> 4) & 0x03030303u) << 4);
	uint32_t o3 = ((a1 >> 4) & 0x0f0f0f0fu) | (((t >> 6) & 0x03030303u) << 4);
	__m128i sc8 = _mm_sub_epi8(_mm_set_epi32((int)o3, (int)o2, (int)o1, (int)o0),
				   _mm_set1_epi8(32));
	__m128i s0 = _mm_cvtepi8_epi16(sc8), s1 = _mm_cvtepi8_epi16(_mm_srli_si128(sc8, 8));
	__m128i b0 = _mm_loadu_si128((const __m128i *)x->bsums);
	__m128i b1 = _mm_loadu_si128((const __m128i *)(x->bsums + 8));
	__m128i cb = _mm_add_epi32(_mm_madd_epi16(s0, b0), _mm_madd_epi16(s1, b1));
	cb = _mm_add_epi32(cb, _mm_shuffle_epi32(cb, 0x4e));
	cb = _mm_add_epi32(cb, _mm_shuffle_epi32(cb, 0xb1));
	__m256i scv[2] = { _mm256_broadcastsi128_si256(s0), _mm256_broadcastsi128_si256(s1) };
	const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
	__m256i hm = _mm256_loadu_si256((const __m256i *)w->hmask);
	__m256i sum = _mm256_setzero_si256();
	for (int h = 0; h < 2; h++) {
		__m256i q = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * h));
		for (int j = 0; j < 4; j++) {
			__m256i hb = _mm256_slli_epi16(_mm256_and_si256(hm, one), 2);
			hm = _mm256_srli_epi16(hm, 1);
			__m256i qj = _mm256_or_si256(_mm256_and_si256(q, m3), hb);
			q = _mm256_srli_epi16(q, 2);
			__m256i y = _mm256_loadu_si256((const __m256i *)(x->qs + 128 * h + 32 * j));
			__m256i scp = _mm256_shuffle_epi8(scv[h], _mm256_loadu_si256(
				(const __m256i *)QX(pair_masks)[j]));
			sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(qj, y), scp));
		}
	}
	sum = _mm256_sub_epi32(sum, _mm256_set_epi32(0, 0, 0, 0, 0, 0, 0, 4 * _mm_cvtsi128_si32(cb)));
	*acc = _mm256_fmadd_ps(_mm256_set1_ps(x->d * QX(h2f)(w->d)), _mm256_cvtepi32_ps(sum), *acc);
	(void)side4;
}

QX_FN void QX(step_q6_k)(const struct quant_block_q6_k *w, const struct quant_block_q8_k *x,
			 __m256 *acc, __m128 *side4)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
	const __m256i c32 = _mm256_set1_epi8(32);
	__m128i sc8 = _mm_loadu_si128((const __m128i *)w->scales);
	__m256i scv[2] = { _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc8)),
			   _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(sc8, 8))) };
	__m256i sum = _mm256_setzero_si256();
	for (int h = 0; h < 2; h++) {
		__m256i l0 = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h));
		__m256i l1 = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h + 32));
		__m256i hb = _mm256_loadu_si256((const __m256i *)(w->qh + 32 * h));
		__m256i q[4];
		q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
				       _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
		q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
				       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
		q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
				       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
		q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
				       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
		for (int k = 0; k < 4; k++) {
			__m256i y = _mm256_loadu_si256((const __m256i *)(x->qs + 128 * h + 32 * k));
			__m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[k], y),
						     _mm256_maddubs_epi16(c32, y));
			__m256i scp = _mm256_shuffle_epi8(scv[h], _mm256_loadu_si256(
				(const __m256i *)QX(pair_masks)[k]));
			sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, scp));
		}
	}
	*acc = _mm256_fmadd_ps(_mm256_set1_ps(x->d * QX(h2f)(w->d)), _mm256_cvtepi32_ps(sum), *acc);
	(void)side4;
}

/* ---- dot / matvec / matmul from a step ---------------------------------- */

#define QX_KERNELS(sfx, WBT, YBT, QKB)                                                      \
	QX_API float QX(dot_##sfx)(const void *w, const void *x, int64_t n)                 \
	{                                                                                   \
		const WBT *a = w;                                                           \
		const YBT *b = x;                                                           \
		__m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;                 \
		__m128 s0 = _mm_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                    \
		int64_t nb = n / (QKB), i = 0;                                              \
		for (; i + 4 <= nb; i += 4) {                                               \
			QX(step_##sfx)(&a[i], &b[i], &c0, &s0);                             \
			QX(step_##sfx)(&a[i + 1], &b[i + 1], &c1, &s1);                     \
			QX(step_##sfx)(&a[i + 2], &b[i + 2], &c2, &s2);                     \
			QX(step_##sfx)(&a[i + 3], &b[i + 3], &c3, &s3);                     \
		}                                                                           \
		for (; i < nb; i++)                                                         \
			QX(step_##sfx)(&a[i], &b[i], &c0, &s0);                             \
		c0 = _mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3));           \
		return QX(hsum)(c0) + QX(lane1)(_mm_add_ps(_mm_add_ps(s0, s1), _mm_add_ps(s2, s3))); \
	}                                                                                   \
	QX_API void QX(matmul_##sfx)(const void *w, size_t ws, int64_t r0, int64_t r1,      \
				     const void *x, size_t xs, int64_t nt, int64_t n,       \
				     float *y, int64_t ys)                                  \
	{                                                                                   \
		int64_t nb = n / (QKB);                                                     \
		int64_t tile = (int64_t)(16384 / (ws ? ws : 1));                            \
		if (tile < 1)                                                               \
			tile = 1;                                                           \
		for (int64_t ra = r0; ra < r1; ra += tile) {                                \
			int64_t rb = ra + tile < r1 ? ra + tile : r1, t = 0;                \
			for (; t + 4 <= nt; t += 4) {                                       \
				const YBT *b0 = (const YBT *)((const char *)x + (size_t)t * xs); \
				const YBT *b1 = (const YBT *)((const char *)b0 + xs);       \
				const YBT *b2 = (const YBT *)((const char *)b1 + xs);       \
				const YBT *b3 = (const YBT *)((const char *)b2 + xs);       \
				for (int64_t r = ra; r < rb; r++) {                         \
					const WBT *a = (const WBT *)((const char *)w + (size_t)r * ws); \
					__m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0; \
					__m128 s0 = _mm_setzero_ps(), s1 = s0, s2 = s0, s3 = s0; \
					for (int64_t i = 0; i < nb; i++) {                  \
						QX(step_##sfx)(&a[i], &b0[i], &c0, &s0);    \
						QX(step_##sfx)(&a[i], &b1[i], &c1, &s1);    \
						QX(step_##sfx)(&a[i], &b2[i], &c2, &s2);    \
						QX(step_##sfx)(&a[i], &b3[i], &c3, &s3);    \
					}                                                   \
					y[t * ys + r] = QX(hsum)(c0) + QX(lane1)(s0);                  \
					y[(t + 1) * ys + r] = QX(hsum)(c1) + QX(lane1)(s1);            \
					y[(t + 2) * ys + r] = QX(hsum)(c2) + QX(lane1)(s2);            \
					y[(t + 3) * ys + r] = QX(hsum)(c3) + QX(lane1)(s3);            \
				}                                                           \
			}                                                                   \
			for (; t < nt; t++)                                                 \
				for (int64_t r = ra; r < rb; r++)                           \
					y[t * ys + r] = QX(dot_##sfx)((const char *)w + (size_t)r * ws, \
								      (const char *)x + (size_t)t * xs, n); \
		}                                                                           \
	}

QX_KERNELS(q4_0, struct quant_block_q4_0, struct quant_block_q8_0, 32)
QX_KERNELS(q4_1, struct quant_block_q4_1, struct quant_block_q8_1, 32)
QX_KERNELS(q5_0, struct quant_block_q5_0, struct quant_block_q8_0, 32)
QX_KERNELS(q5_1, struct quant_block_q5_1, struct quant_block_q8_1, 32)
QX_KERNELS(q8_0, struct quant_block_q8_0, struct quant_block_q8_0, 32)
QX_KERNELS(q2_k, struct quant_block_q2_k, struct quant_block_q8_k, 256)
QX_KERNELS(q3_k, struct quant_block_q3_k, struct quant_block_q8_k, 256)
QX_KERNELS(q4_k, struct quant_block_q4_k, struct quant_block_q8_k, 256)
QX_KERNELS(q5_k, struct quant_block_q5_k, struct quant_block_q8_k, 256)
QX_KERNELS(q6_k, struct quant_block_q6_k, struct quant_block_q8_k, 256)

/* ---- float formats --------------------------------------------------------- */

QX_API float QX(dot_f32)(const void *w, const void *x, int64_t n)
{
	const float *a = w, *b = x;
	__m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
	int64_t i = 0;
	for (; i + 32 <= n; i += 32) {
		c0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), c0);
		c1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), c1);
		c2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), c2);
		c3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), c3);
	}
	for (; i + 8 <= n; i += 8)
		c0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), c0);
	float s = QX(hsum)(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)));
	for (; i < n; i++)
		s += a[i] * b[i];
	return s;
}

QX_FN __m256 QX(load_f16)(const uint16_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

QX_FN __m256 QX(load_bf16)(const uint16_t *p)
{
	__m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
	return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

#define QX_HALF_DOT(sfx, LOAD, CONV)                                                         \
	QX_API float QX(dot_##sfx)(const void *w, const void *x, int64_t n)                  \
	{                                                                                    \
		const uint16_t *a = w, *b = x;                                               \
		__m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;                  \
		int64_t i = 0;                                                               \
		for (; i + 32 <= n; i += 32) {                                               \
			c0 = _mm256_fmadd_ps(LOAD(a + i), LOAD(b + i), c0);                  \
			c1 = _mm256_fmadd_ps(LOAD(a + i + 8), LOAD(b + i + 8), c1);          \
			c2 = _mm256_fmadd_ps(LOAD(a + i + 16), LOAD(b + i + 16), c2);        \
			c3 = _mm256_fmadd_ps(LOAD(a + i + 24), LOAD(b + i + 24), c3);        \
		}                                                                            \
		for (; i + 8 <= n; i += 8)                                                   \
			c0 = _mm256_fmadd_ps(LOAD(a + i), LOAD(b + i), c0);                  \
		float s = QX(hsum)(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3))); \
		for (; i < n; i++) {                                                         \
			uint16_t u, v;                                                       \
			memcpy(&u, a + i, 2);                                                \
			memcpy(&v, b + i, 2);                                                \
			s += CONV(u) * CONV(v);                                              \
		}                                                                            \
		return s;                                                                    \
	}

QX_HALF_DOT(f16, QX(load_f16), quant_fp16_to_fp32)
QX_HALF_DOT(bf16, QX(load_bf16), quant_bf16_to_fp32)

QX_API void QX(dequant_f16)(const void *src, float *dst, int64_t n)
{
	const uint16_t *a = src;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i, QX(load_f16)(a + i));
	for (; i < n; i++)
		dst[i] = quant_fp16_to_fp32(a[i]);
}

/* ---- activation quantisation (bytes identical to the scalar reference) --- */

/* One 32-float block: d = amax/127, q = rne(x * 127/amax) saturated, as
 * quant_q8_0_quantize_ref.  Returns the q sum (for Q8_1). */
QX_FN int QX(q8_block)(const float *x, float *d_out, int8_t *qs)
{
	__m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
	__m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256 m = _mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1));
	m = _mm256_max_ps(m, _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
	__m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
	m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
	m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
	float amax = _mm_cvtss_f32(m4);
	float d = amax / 127.0f;
	float id = amax != 0.0f ? 127.0f / amax : 0.0f;
	*d_out = d;
	__m256 mul = _mm256_set1_ps(id);
	__m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, mul), QX_RN));
	__m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, mul), QX_RN));
	__m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, mul), QX_RN));
	__m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, mul), QX_RN));
	/* sum of the saturated bytes, taken after packing */
	__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
	p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
	_mm256_storeu_si256((__m256i *)qs, p);
	__m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), p);
	__m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
	__m128i s = _mm_add_epi32(_mm256_extracti128_si256(s32, 1), _mm256_castsi256_si128(s32));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
	return _mm_cvtsi128_si32(s);
}

QX_API void QX(act_q8_0)(const float *x, void *dst, int64_t n)
{
	struct quant_block_q8_0 *y = dst;
	for (int64_t i = 0; i < n / 32; i++, x += 32) {
		float d;
		(void)QX(q8_block)(x, &d, y[i].qs);
		y[i].d = quant_fp32_to_fp16(d);
	}
}

QX_API void QX(act_q8_1)(const float *x, void *dst, int64_t n)
{
	struct quant_block_q8_1 *y = dst;
	for (int64_t i = 0; i < n / 32; i++, x += 32) {
		float d;
		int sum = QX(q8_block)(x, &d, y[i].qs);
		y[i].d = quant_fp32_to_fp16(d);
		y[i].s = quant_fp32_to_fp16(d * (float)sum);
	}
}

/* Q8_K: the signed value of largest magnitude (the first one on a tie)
 * sets d = max / -127; q = round-to-nearest-even(x * -127 / max) saturated
 * to int8, as quant_q8_k_quantize_ref; bsums from the packed bytes. */
QX_API void QX(act_q8_k)(const float *x, void *dst, int64_t n)
{
	struct quant_block_q8_k *y = dst;
	const __m256 sign = _mm256_set1_ps(-0.0f);
	for (int64_t i = 0; i < n / 256; i++, x += 256) {
		__m256 m = _mm256_setzero_ps();
		for (int j = 0; j < 256; j += 8)
			m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
		__m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
		m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
		m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
		const float amax = _mm_cvtss_f32(m4);
		if (amax == 0.0f) {
			memset(&y[i], 0, sizeof y[i]);
			continue;
		}
		float max = 0.0f;
		for (int j = 0; j < 256; j += 8) {
			int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)),
								   _mm256_set1_ps(amax), _CMP_EQ_OQ));
			if (hit) {
				max = x[j + __builtin_ctz((unsigned)hit)];
				break;
			}
		}
		const float iscale = -127.0f / max;
		const __m256 mul = _mm256_set1_ps(iscale);
		for (int j = 0; j < 256; j += 32) {
			__m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j), mul));
			__m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8), mul));
			__m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 16), mul));
			__m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 24), mul));
			__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
			p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
			_mm256_storeu_si256((__m256i *)(y[i].qs + j), p);
			/* two sub-blocks of 16: sums of the saturated bytes */
			__m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), p);
			__m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
			__m128i lo = _mm256_castsi256_si128(s32), hi = _mm256_extracti128_si256(s32, 1);
			lo = _mm_add_epi32(lo, _mm_shuffle_epi32(lo, 0x4e));
			lo = _mm_add_epi32(lo, _mm_shuffle_epi32(lo, 0xb1));
			hi = _mm_add_epi32(hi, _mm_shuffle_epi32(hi, 0x4e));
			hi = _mm_add_epi32(hi, _mm_shuffle_epi32(hi, 0xb1));
			y[i].bsums[j / 16] = (int16_t)_mm_cvtsi128_si32(lo);
			y[i].bsums[j / 16 + 1] = (int16_t)_mm_cvtsi128_si32(hi);
		}
		y[i].d = 1.0f / iscale;
	}
}

/* F16 activations: vcvtps2ph rounds to nearest even like
 * quant_fp32_to_fp16 (and keeps a NaN a quiet NaN with its top payload) */
QX_API void QX(act_f16)(const float *x, void *dst, int64_t n)
{
	uint8_t *p = dst;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(p + 2 * i),
				 _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
	for (; i < n; i++) {
		uint16_t h = quant_fp32_to_fp16(x[i]);
		memcpy(p + 2 * i, &h, 2);
	}
}

