/*
 * quant_pack_avx2.c - AVX2 (+FMA, F16C) kernels for packed matrices: the
 * same 16-row layouts as the AVX-512 level (quant_pack.c, quant_impl.h),
 * read as two halves of 8 rows.
 *
 * Every 64-byte vector of a packed block holds 4 bytes of each of the 16
 * rows; its first 32 bytes are rows 0..7, the last 32 rows 8..15, so one
 * 256-bit load gives 8 rows x 4 quants, lane r = row r.  Against the 4
 * activation bytes of those columns broadcast from memory, one VPMADDUBSW
 * does 32 multiply-adds (pairs summed to int16 per lane), and the row
 * sums never need a horizontal reduction: the 16 lanes of a block's int16
 * or int32 sums are the 16 rows' results, scaled by the rows' scales
 * loaded as vectors.  Against the row layout (quant_x86.h: one row at a
 * time, the block's scales converted one by one, a horizontal sum per
 * row) this removes most of the work that is not a multiply-add, so
 * decode is bound by memory again (`make bench-quant`).
 *
 * Exactness: VPMADDUBSW saturates its int16 pair sums, so each kernel
 * keeps them in range by construction:
 *   unsigned weights (Q4_0 0..15, Q4_K 0..15, Q5_K 0..31, Q6_K 0..63,
 *   MXFP4 levels + 12 = 0..24) times int8 activations (-127..127, as the
 *   quantisers make them) sum a few products in int16 before VPMADDWD
 *   widens them: at most 32767 / (2 * 127 * wmax) of them (8, 8, 4, 2, 5);
 *   signed weights (Q8_0, IQ4_NL and IQ4_XS levels, |w| <= 128) go
 *   through |w| x sign(x, w) and are widened after every VPMADDUBSW.
 * The offsets of unsigned codes (Q4_0 -8, MXFP4 -12, Q6_K -32, the K-quant
 * mins) come from the activation row's block sums, as at the AVX-512
 * level, so every integer sum is exact and only float addition order
 * differs from the row kernels.
 *
 * Loop order: decode (one token) reads each block of a row group once,
 * both halves together so each activation broadcast serves 16 rows, and
 * streams the packed matrix in address order.  Prefill takes one half (8
 * rows) at a time against a tile of up to TILE tokens: each weight vector
 * is unpacked once for the tile, the group's bytes stay in L1/L2 between
 * the two halves and the tiles.
 */
#include "quant_impl.h"

#include <string.h>

#include "gguf.h"
#include "quant_nl_tables.h"

#if QUANT_X86

#include <immintrin.h>

#define TGT "avx2,fma,f16c"
#define INL static inline __attribute__((target(TGT), always_inline))
#define API static __attribute__((target(TGT)))
/* the decode kernels: one call per row group, kept out of line */
#define DEC static __attribute__((target(TGT), noinline))

#define G QUANT_ROW_GROUP

/* Software prefetch distance of the decode kernels, which stream the
 * weights from memory once. */
#ifndef PFD
#define PFD 4096
#endif
#define PREFETCH(p) _mm_prefetch((const char *)(p) + PFD, _MM_HINT_T0)
/* The same for kernels that consume a unit of U bytes in address order:
 * every line is fetched as the same line of the unit before is read, so
 * the whole stream is covered in its own order (a fixed distance that is
 * not a multiple of the unit skips some lines). */
#ifndef PFU
#define PFU 1
#endif
#define PREFETCH_UNIT(p, u) _mm_prefetch((const char *)(p) + PFU * (u), _MM_HINT_T0)

/* Token tiles of prefill: TILE tokens at a time, then the rest; CALL(w)
 * runs a tile of w tokens starting at token t, each width its own
 * unrolled code. */
#define TILES4(CALL)                            \
	do {                                    \
		int64_t t = 0;                  \
		for (; t + 4 <= nt; t += 4)     \
			CALL(4);                \
		switch (nt - t) {               \
		case 3: CALL(3); break;         \
		case 2: CALL(2); break;         \
		case 1: CALL(1); break;         \
		default: break;                 \
		}                               \
	} while (0)

/* Pins V in a register at this point: GCC otherwise rebalances a chain of
 * integer adds into a tree, computing all of a block's products first and
 * spilling them (measured: 2x slower decode). */
#define KEEP(v) __asm__("" : "+x"(v))

INL __m256i bcast4(const int8_t *p)
{
	int32_t v;
	memcpy(&v, p, 4);
	return _mm256_set1_epi32(v);
}

INL __m256i load256(const uint8_t *p)
{
	return _mm256_loadu_si256((const __m256i *)p);
}

/* 8 bytes at P (row r's value at P[r]) as int16 pairs (v, v) in lane r,
 * so VPMADDWD of a lane's two pair sums with it scales their sum */
INL __m256i pairs_u8(const uint8_t *p)
{
	__m128i b = _mm_loadl_epi64((const __m128i *)p);
	return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(b, b));
}

INL __m256i pairs_s8(const uint8_t *p)
{
	__m128i b = _mm_loadl_epi64((const __m128i *)p);
	return _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(b, b));
}

/* 8 fp16 at P as floats */
INL __m256 half8(const uint8_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* Rows of half H of group G that exist (0..8). */
INL int half_rows(int64_t g, int h, int64_t rows)
{
	int64_t left = rows - g * G - 8 * h;
	return left >= 8 ? 8 : left > 0 ? (int)left : 0;
}

INL void store_rows(float *y, __m256 v, int n)
{
	if (n == 8) {
		_mm256_storeu_ps(y, v);
		return;
	}
	const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	_mm256_maskstore_ps(y, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane), v);
}

INL __m256i madd1(__m256i a)
{
	return _mm256_madd_epi16(a, _mm256_set1_epi16(1));
}

/* ---- K-quant activation rows (AK) ------------------------------------------------ */

/* float d[nb]; int16 bsum16[nb][16]; int16 bsum32[nb][8]; q at qoff */
struct ak_row {
	const float *d;
	const int16_t *b16, *b32;
	const int8_t *q;
};

INL struct ak_row ak_row_at(const uint8_t *row, int64_t nb, size_t qoff)
{
	struct ak_row a;
	a.d = (const float *)(const void *)row;
	a.b16 = (const int16_t *)(const void *)(a.d + nb);
	a.b32 = a.b16 + nb * 16;
	a.q = (const int8_t *)(row + qoff);
	return a;
}

INL size_t ak_qoff(int64_t nb)
{
	return ((size_t)nb * 52 + 63) & ~(size_t)63;
}

/* ---- Q4_K ---------------------------------------------------------------------------- */
/*
 * Block b of a group (two blocks per unit of 2 x (2048 + 256 + 64) bytes):
 * Q = 32 vectors, vector 8c + j = bytes 32c + 4j.. of each row (low
 * nibbles: sub-block 2c, elements 4j..; high: sub-block 2c + 1); A =
 * uint8 scale[8][16], then the mins as pairs (sub-blocks 2k, 2k + 1) per
 * row, [4][16][2]; S = fp16 d[16], dmin[16].
 */
struct kblk {
	const uint8_t *Q, *A, *S;
};

INL struct kblk q4k_at(const uint8_t *grp, int64_t b)
{
	const uint8_t *U = grp + (size_t)(b >> 1) * (2 * (2048 + 256 + 64));
	return (struct kblk){U + (b & 1) * 2048, U + 4096 + (b & 1) * 256, U + 4608 + (b & 1) * 64};
}

/* sum over the 8 sub-blocks of mins x the activation's 32-sums, rows of
 * half h (A: the Q4_K/Q5_K scale bytes of the block) */
INL __m256i kmins(const uint8_t *A, int h, const int16_t *b32)
{
	__m256i ms = _mm256_setzero_si256();
#pragma GCC unroll 4
	for (int k = 0; k < 4; k++) {
		__m256i mn = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(A + 128 + 32 * k + 16 * h)));
		ms = _mm256_add_epi32(ms, _mm256_madd_epi16(mn, bcast4((const int8_t *)(b32 + 2 * k))));
	}
	return ms;
}

/* acc += d * xd * isum - dmin * xd * msum, the rows of half h */
INL __m256 kend(__m256 acc, const uint8_t *S, int h, float xd, __m256i isum, __m256i msum)
{
	const __m256 x = _mm256_set1_ps(xd);
	acc = _mm256_fmadd_ps(_mm256_mul_ps(half8(S + 16 * h), x), _mm256_cvtepi32_ps(isum), acc);
	return _mm256_fnmadd_ps(_mm256_mul_ps(half8(S + 32 + 16 * h), x), _mm256_cvtepi32_ps(msum), acc);
}

/* Decode: one token against the 16 rows of a group. */
/* The int16 sums of block b's 8 sub-blocks x 2 halves, S16[4c + 2h + hi]
 * (hi: sub-block 2c + 1), against the activations q of the block. */
INL void q4k_sums(const uint8_t *Q, const int8_t *q, __m256i *S16)
{
	enum { UNIT = 2 * (2048 + 256 + 64) };
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	/* (unrolled, the compiler hoists the broadcasts and spills) */
#pragma GCC unroll 1
	for (int c = 0; c < 4; c++) {
		__m256i l0 = _mm256_setzero_si256(), h0 = l0, l1 = l0, h1 = l0;
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++) {
			const uint8_t *V = Q + (c * 8 + j) * 64;
			PREFETCH_UNIT(V, UNIT);
			const __m256i v0 = load256(V), v1 = load256(V + 32);
			const __m256i xl = bcast4(q + 64 * c + 4 * j), xh = bcast4(q + 64 * c + 32 + 4 * j);
			l0 = _mm256_add_epi16(l0, _mm256_maddubs_epi16(_mm256_and_si256(v0, m4), xl));
			h0 = _mm256_add_epi16(h0, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), m4), xh));
			l1 = _mm256_add_epi16(l1, _mm256_maddubs_epi16(_mm256_and_si256(v1, m4), xl));
			h1 = _mm256_add_epi16(h1, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), m4), xh));
			KEEP(l0);
			KEEP(h0);
			KEEP(l1);
			KEEP(h1);
		}
		S16[4 * c] = l0;
		S16[4 * c + 1] = h0;
		S16[4 * c + 2] = l1;
		S16[4 * c + 3] = h1;
	}
}

/* Both halves' scaled sums of a block from its int16 sums and its scale
 * bytes A: *I0, *I1 the d parts, *M0, *M1 the min parts. */
INL void q4k_scale(const uint8_t *A, const __m256i *S16, const int16_t *b32, __m256i *I0, __m256i *I1, __m256i *M0,
		   __m256i *M1)
{
	__m256i i0 = _mm256_setzero_si256(), i1 = i0;
#pragma GCC unroll 4
	for (int c = 0; c < 4; c++) {
		const uint8_t *sl = A + 32 * c, *sh = sl + 16;
		i0 = _mm256_add_epi32(i0, _mm256_add_epi32(_mm256_madd_epi16(S16[4 * c], pairs_u8(sl)),
							   _mm256_madd_epi16(S16[4 * c + 1], pairs_u8(sh))));
		i1 = _mm256_add_epi32(i1, _mm256_add_epi32(_mm256_madd_epi16(S16[4 * c + 2], pairs_u8(sl + 8)),
							   _mm256_madd_epi16(S16[4 * c + 3], pairs_u8(sh + 8))));
	}
	*I0 = i0;
	*I1 = i1;
	*M0 = kmins(A, 0, b32);
	*M1 = kmins(A, 1, b32);
}

/* A unit's (blocks b and b + 1, N of them) scaled sums from their int16
 * sums S16 into the two halves' accumulators, for the token of row A. */
INL void q4k_unit_end(const struct kblk *k0, const struct kblk *k1, int n, __m256i (*S16)[16],
		      const struct ak_row *a, int64_t b, __m256 *acc0, __m256 *acc1)
{
	__m256i i[2][4];
	q4k_scale(k0->A, S16[0], a->b32 + 8 * b, &i[0][0], &i[0][1], &i[0][2], &i[0][3]);
	if (n == 2)
		q4k_scale(k1->A, S16[1], a->b32 + 8 * b + 8, &i[1][0], &i[1][1], &i[1][2], &i[1][3]);
	*acc0 = kend(*acc0, k0->S, 0, a->d[b], i[0][0], i[0][2]);
	*acc1 = kend(*acc1, k0->S, 1, a->d[b], i[0][1], i[0][3]);
	if (n == 2) {
		*acc0 = kend(*acc0, k1->S, 0, a->d[b + 1], i[1][0], i[1][2]);
		*acc1 = kend(*acc1, k1->S, 1, a->d[b + 1], i[1][1], i[1][3]);
	}
}

/* Decode: one token against the 16 rows of a group, a unit (two blocks)
 * at a time in address order: both blocks' quants, then their scales
 * (the int16 sub-block sums wait in L1).  Streaming in address order
 * measured ~15% faster than scaling each block as it ends (its scales
 * lie 2-4 KiB ahead of the next block's quants). */
DEC void q4k_dec(const uint8_t *grp, int64_t nb, const uint8_t *xrow, float *y, int n0, int n1)
{
	const struct ak_row a = ak_row_at(xrow, nb, ak_qoff(nb));
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
	__m256i S16[2][16];

	for (int64_t b = 0; b < nb; b += 2) {
		const int n = b + 1 < nb ? 2 : 1;
		const struct kblk k0 = q4k_at(grp, b), k1 = q4k_at(grp, b + 1);
		q4k_sums(k0.Q, a.q + 256 * b, S16[0]);
		if (n == 2)
			q4k_sums(k1.Q, a.q + 256 * b + 256, S16[1]);
		/* the unit's scales: A0, A1, S0, S1 (10 lines) */
#pragma GCC unroll 10
		for (int l = 0; l < 10; l++)
			PREFETCH_UNIT(k0.A + 64 * l, 2 * (2048 + 256 + 64));
		q4k_unit_end(&k0, &k1, n, S16, &a, b, &acc0, &acc1);
	}
	store_rows(y, acc0, n0);
	if (n1)
		store_rows(y + 8, acc1, n1);
}

/* q4k_sums for two tokens at once: each weight vector is loaded and
 * unpacked once for both (a verification pass of speculative decoding
 * reads the weights once for its guesses, as decode does for one). */
INL void q4k_sums2(const uint8_t *Q, const int8_t *qa, const int8_t *qb, __m256i *Sa, __m256i *Sb)
{
	enum { UNIT = 2 * (2048 + 256 + 64) };
	const __m256i m4 = _mm256_set1_epi8(0x0f);
#pragma GCC unroll 1
	for (int c = 0; c < 4; c++) {
		__m256i la0 = _mm256_setzero_si256(), ha0 = la0, la1 = la0, ha1 = la0;
		__m256i lb0 = la0, hb0 = la0, lb1 = la0, hb1 = la0;
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++) {
			const uint8_t *V = Q + (c * 8 + j) * 64;
			PREFETCH_UNIT(V, UNIT);
			const __m256i v0 = load256(V), v1 = load256(V + 32);
			const __m256i v0l = _mm256_and_si256(v0, m4), v0h = _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4);
			const __m256i v1l = _mm256_and_si256(v1, m4), v1h = _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4);
			const __m256i xal = bcast4(qa + 64 * c + 4 * j), xah = bcast4(qa + 64 * c + 32 + 4 * j);
			la0 = _mm256_add_epi16(la0, _mm256_maddubs_epi16(v0l, xal));
			ha0 = _mm256_add_epi16(ha0, _mm256_maddubs_epi16(v0h, xah));
			la1 = _mm256_add_epi16(la1, _mm256_maddubs_epi16(v1l, xal));
			ha1 = _mm256_add_epi16(ha1, _mm256_maddubs_epi16(v1h, xah));
			const __m256i xbl = bcast4(qb + 64 * c + 4 * j), xbh = bcast4(qb + 64 * c + 32 + 4 * j);
			lb0 = _mm256_add_epi16(lb0, _mm256_maddubs_epi16(v0l, xbl));
			hb0 = _mm256_add_epi16(hb0, _mm256_maddubs_epi16(v0h, xbh));
			lb1 = _mm256_add_epi16(lb1, _mm256_maddubs_epi16(v1l, xbl));
			hb1 = _mm256_add_epi16(hb1, _mm256_maddubs_epi16(v1h, xbh));
		}
		Sa[4 * c] = la0;
		Sa[4 * c + 1] = ha0;
		Sa[4 * c + 2] = la1;
		Sa[4 * c + 3] = ha1;
		Sb[4 * c] = lb0;
		Sb[4 * c + 1] = hb0;
		Sb[4 * c + 2] = lb1;
		Sb[4 * c + 3] = hb1;
	}
}

/* q4k_dec for two tokens (activation rows XA, XB; outputs YA, YB): the
 * same sums, in the same order, so each token's result is bit for bit
 * the one q4k_dec gives. */
DEC void q4k_dec2(const uint8_t *grp, int64_t nb, const uint8_t *xa, const uint8_t *xb, float *ya, float *yb,
		  int n0, int n1)
{
	const struct ak_row a = ak_row_at(xa, nb, ak_qoff(nb)), bb = ak_row_at(xb, nb, ak_qoff(nb));
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, bcc0 = acc0, bcc1 = acc0;
	__m256i SA[2][16], SB[2][16];

	for (int64_t b = 0; b < nb; b += 2) {
		const int n = b + 1 < nb ? 2 : 1;
		const struct kblk k0 = q4k_at(grp, b), k1 = q4k_at(grp, b + 1);
		q4k_sums2(k0.Q, a.q + 256 * b, bb.q + 256 * b, SA[0], SB[0]);
		if (n == 2)
			q4k_sums2(k1.Q, a.q + 256 * b + 256, bb.q + 256 * b + 256, SA[1], SB[1]);
#pragma GCC unroll 10
		for (int l = 0; l < 10; l++)
			PREFETCH_UNIT(k0.A + 64 * l, 2 * (2048 + 256 + 64));
		q4k_unit_end(&k0, &k1, n, SA, &a, b, &acc0, &acc1);
		q4k_unit_end(&k0, &k1, n, SB, &bb, b, &bcc0, &bcc1);
	}
	store_rows(ya, acc0, n0);
	store_rows(yb, bcc0, n0);
	if (n1) {
		store_rows(ya + 8, acc1, n1);
		store_rows(yb + 8, bcc1, n1);
	}
}

/* Prefill: NT tokens against the 8 rows of half h of a group. */
INL void q4k_pre(const int NT, const uint8_t *grp, int h, int64_t nb, const uint8_t *x0, size_t xs,
		 float *y, int64_t ys, int nr)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	struct ak_row a[NT];
	__m256 acc[NT];
#pragma GCC unroll 8
	for (int t = 0; t < NT; t++) {
		a[t] = ak_row_at(x0 + (size_t)t * xs, nb, ak_qoff(nb));
		acc[t] = _mm256_setzero_ps();
	}
	for (int64_t b = 0; b < nb; b++) {
		const struct kblk k = q4k_at(grp, b);
		__m256i is[NT];
#pragma GCC unroll 8
		for (int t = 0; t < NT; t++)
			is[t] = _mm256_setzero_si256();
#pragma GCC unroll 1
		for (int c = 0; c < 4; c++)
#pragma GCC unroll 2
		for (int s = 2 * c; s < 2 * c + 2; s++) {
			__m256i a16[NT];
#pragma GCC unroll 8
			for (int t = 0; t < NT; t++)
				a16[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
			for (int j = 0; j < 8; j++) {
				__m256i v = load256(k.Q + (c * 8 + j) * 64 + 32 * h);
				if (s & 1)
					v = _mm256_srli_epi16(v, 4);
				v = _mm256_and_si256(v, m4);
#pragma GCC unroll 8
				for (int t = 0; t < NT; t++)
					a16[t] = _mm256_add_epi16(a16[t], _mm256_maddubs_epi16(
									  v, bcast4(a[t].q + 256 * b + 32 * s + 4 * j)));
			}
			const __m256i sc = pairs_u8(k.A + 16 * s + 8 * h);
#pragma GCC unroll 8
			for (int t = 0; t < NT; t++)
				is[t] = _mm256_add_epi32(is[t], _mm256_madd_epi16(a16[t], sc));
		}
#pragma GCC unroll 8
		for (int t = 0; t < NT; t++)
			acc[t] = kend(acc[t], k.S, h, a[t].d[b], is[t], kmins(k.A, h, a[t].b32 + 8 * b));
	}
#pragma GCC unroll 8
	for (int t = 0; t < NT; t++)
		store_rows(y + t * ys, acc[t], nr);
}

/* The kernel entry points: groups [g0, g1), y = row 0 of token 0. */
#define PMUL(name, DEC, PRE, NB)                                                                     \
	API void name(const void *packed, size_t gb, int64_t g0, int64_t g1, int64_t rows, int64_t cols, \
		      const void *xact, size_t xs, int64_t nt, float *y, int64_t ys)                   \
	{                                                                                            \
		const int64_t nb = cols / (NB);                                                      \
		const uint8_t *x = xact;                                                             \
		for (int64_t g = g0; g < g1; g++) {                                                  \
			const uint8_t *grp = (const uint8_t *)packed + (size_t)g * gb;               \
			float *yg = y + g * G;                                                       \
			if (nt == 1) {                                                               \
				DEC(grp, nb, x, yg, half_rows(g, 0, rows), half_rows(g, 1, rows));   \
				continue;                                                            \
			}                                                                            \
			for (int h = 0; h < 2; h++) {                                                \
				const int nr = half_rows(g, h, rows);                                \
				if (nr == 0)                                                         \
					break;                                                       \
				TILES4(PRE##_CALL);                                                  \
			}                                                                            \
		}                                                                                    \
	}

/* The same with a two-token decode kernel: a batch of up to SMALL_NT
 * tokens (a speculative verification pass) goes through it in pairs,
 * reading the weights once per pair, instead of the prefill tiles, whose
 * unpacking pays off only over more tokens. */
#ifndef SMALL_NT
#define SMALL_NT 4
#endif
#define PMUL2(name, DEC, DEC2, PRE, NB)                                                              \
	API void name(const void *packed, size_t gb, int64_t g0, int64_t g1, int64_t rows, int64_t cols, \
		      const void *xact, size_t xs, int64_t nt, float *y, int64_t ys)                   \
	{                                                                                            \
		const int64_t nb = cols / (NB);                                                      \
		const uint8_t *x = xact;                                                             \
		for (int64_t g = g0; g < g1; g++) {                                                  \
			const uint8_t *grp = (const uint8_t *)packed + (size_t)g * gb;               \
			float *yg = y + g * G;                                                       \
			const int n0 = half_rows(g, 0, rows), n1 = half_rows(g, 1, rows);            \
			if (nt <= SMALL_NT) {                                                        \
				int64_t t = 0;                                                       \
				for (; t + 2 <= nt; t += 2)                                          \
					DEC2(grp, nb, x + t * xs, x + (t + 1) * xs, yg + t * ys,     \
					     yg + (t + 1) * ys, n0, n1);                             \
				if (t < nt)                                                          \
					DEC(grp, nb, x + t * xs, yg + t * ys, n0, n1);               \
				continue;                                                            \
			}                                                                            \
			for (int h = 0; h < 2; h++) {                                                \
				const int nr = half_rows(g, h, rows);                                \
				if (nr == 0)                                                         \
					break;                                                       \
				TILES4(PRE##_CALL);                                                  \
			}                                                                            \
		}                                                                                    \
	}

#define q4k_pre_CALL(w) q4k_pre(w, grp, h, nb, x + t * xs, xs, yg + t * ys + 8 * h, ys, nr)
PMUL2(pmul_q4_k, q4k_dec, q4k_dec2, q4k_pre, 256)

/* ---- Q6_K ---------------------------------------------------------------------------- */
/*
 * Block b (two per unit of 2 x (3072 + 256 + 32) bytes): Q = for block
 * half h2 < 2 and j < 8 the three vectors ql[64h2 + 4j..], ql[64h2 + 32 +
 * 4j..], qh[32h2 + 4j..]; A = int8 scale[16][16] (sub-block s, row r); S =
 * fp16 d[16].  Chunk c of (h2, j) holds elements 128h2 + 32c + 4j.. of
 * sub-block 8h2 + 2c + (j >= 4).
 */
INL struct kblk q6k_at(const uint8_t *grp, int64_t b)
{
	const uint8_t *U = grp + (size_t)(b >> 1) * (2 * (3072 + 256 + 32));
	return (struct kblk){U + (b & 1) * 3072, U + 6144 + (b & 1) * 256, U + 6656 + (b & 1) * 32};
}

/* chunk c (0..3) of the 6-bit weights at V (+32 * h for half h): 0..63 */
INL __m256i q6k_chunk(const uint8_t *V, int c)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
	__m256i l = load256(V + 64 * (c & 1)), hb = load256(V + 128);
	if (c >= 2)
		l = _mm256_srli_epi16(l, 4);
	/* bits 2c, 2c+1 of qh to bits 4, 5 */
	hb = c == 0 ? _mm256_slli_epi16(hb, 4) : c == 1 ? _mm256_slli_epi16(hb, 2)
		       : c == 2 ? hb : _mm256_srli_epi16(hb, 2);
	return _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_and_si256(hb, m30));
}

/* -32 x sum over the 16 sub-blocks of scale x the activation's 16-sums,
 * rows of half h */
INL __m256i q6k_offset(const uint8_t *A, int h, const int16_t *b16)
{
	__m256i o = _mm256_setzero_si256();
#pragma GCC unroll 8
	for (int k = 0; k < 8; k++) {
		__m128i s0 = _mm_loadl_epi64((const __m128i *)(A + 32 * k + 8 * h));
		__m128i s1 = _mm_loadl_epi64((const __m128i *)(A + 32 * k + 16 + 8 * h));
		__m256i pr = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(s0, s1));
		o = _mm256_add_epi32(o, _mm256_madd_epi16(pr, bcast4((const int8_t *)(b16 + 2 * k))));
	}
	return _mm256_slli_epi32(o, 5);
}

/* The int16 sums of a block, both halves in one pass (the vectors of a
 * 64-byte line are used together; chunks c and c + 2 come from the same
 * ql vector and share its loads): S16[4v + i], v = (h2 * 4 + jp) * 2 + cp,
 * i = 2 * half + (chunk cp + 2), each the sum of two products (j = 2jp,
 * 2jp + 1) of sub-block 8h2 + 2 * chunk + (jp >= 2). */
INL void q6k_sums(const uint8_t *Q, const int8_t *q, __m256i *S16)
{
	enum { UNIT = 2 * (3072 + 256 + 32) };
	const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
#pragma GCC unroll 1
	for (int h2 = 0; h2 < 2; h2++)
#pragma GCC unroll 1
		for (int jp = 0; jp < 4; jp++)
#pragma GCC unroll 2
			for (int cp = 0; cp < 2; cp++) {
				__m256i s00 = _mm256_setzero_si256(), s01 = s00, s10 = s00, s11 = s00;
#pragma GCC unroll 2
				for (int jj = 0; jj < 2; jj++) {
					const int j = 2 * jp + jj;
					const uint8_t *V = Q + (size_t)((h2 * 8 + j) * 3) * 64;
					if (cp == 0) {
						PREFETCH_UNIT(V, UNIT);
						PREFETCH_UNIT(V + 64, UNIT);
						PREFETCH_UNIT(V + 128, UNIT);
					}
					const __m256i xa = bcast4(q + 128 * h2 + 32 * cp + 4 * j);
					const __m256i xb = bcast4(q + 128 * h2 + 32 * (cp + 2) + 4 * j);
					__m256i l = load256(V + 64 * cp), hb = load256(V + 128);
					__m256i ha = cp ? _mm256_slli_epi16(hb, 2) : _mm256_slli_epi16(hb, 4);
					__m256i hc = cp ? _mm256_srli_epi16(hb, 2) : hb;
					__m256i wa = _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_and_si256(ha, m30));
					__m256i wb = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 4), m4),
								     _mm256_and_si256(hc, m30));
					s00 = _mm256_add_epi16(s00, _mm256_maddubs_epi16(wa, xa));
					s01 = _mm256_add_epi16(s01, _mm256_maddubs_epi16(wb, xb));
					l = load256(V + 64 * cp + 32);
					hb = load256(V + 160);
					ha = cp ? _mm256_slli_epi16(hb, 2) : _mm256_slli_epi16(hb, 4);
					hc = cp ? _mm256_srli_epi16(hb, 2) : hb;
					wa = _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_and_si256(ha, m30));
					wb = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 4), m4),
							     _mm256_and_si256(hc, m30));
					s10 = _mm256_add_epi16(s10, _mm256_maddubs_epi16(wa, xa));
					s11 = _mm256_add_epi16(s11, _mm256_maddubs_epi16(wb, xb));
					KEEP(s00);
					KEEP(s01);
					KEEP(s10);
					KEEP(s11);
				}
				__m256i *o = S16 + 4 * ((h2 * 4 + jp) * 2 + cp);
				o[0] = s00;
				o[1] = s01;
				o[2] = s10;
				o[3] = s11;
			}
}

/* Both halves' integer sums of a block from its int16 sums and its int8
 * scales A (with the -32 offset). */
INL void q6k_scale(const uint8_t *A, const __m256i *S16, const int16_t *b16, __m256i *I0, __m256i *I1)
{
	__m256i is0 = _mm256_sub_epi32(_mm256_setzero_si256(), q6k_offset(A, 0, b16));
	__m256i is1 = _mm256_sub_epi32(_mm256_setzero_si256(), q6k_offset(A, 1, b16));
	/* sub-blocks sa = 8h2 + 2cp + jh and sa + 4 take the sums of jp = 2jh
	 * and 2jh + 1: their scale pairs are made once for both */
#pragma GCC unroll 1
	for (int h2 = 0; h2 < 2; h2++)
#pragma GCC unroll 1
		for (int jh = 0; jh < 2; jh++)
#pragma GCC unroll 2
			for (int cp = 0; cp < 2; cp++) {
				const int sa = 8 * h2 + 2 * cp + jh, sb = sa + 4;
				const __m256i pa0 = pairs_s8(A + 16 * sa), pb0 = pairs_s8(A + 16 * sb);
				const __m256i pa1 = pairs_s8(A + 16 * sa + 8), pb1 = pairs_s8(A + 16 * sb + 8);
#pragma GCC unroll 2
				for (int jp = 2 * jh; jp < 2 * jh + 2; jp++) {
					const __m256i *v = S16 + 4 * ((h2 * 4 + jp) * 2 + cp);
					is0 = _mm256_add_epi32(is0, _mm256_add_epi32(_mm256_madd_epi16(v[0], pa0),
										     _mm256_madd_epi16(v[1], pb0)));
					is1 = _mm256_add_epi32(is1, _mm256_add_epi32(_mm256_madd_epi16(v[2], pa1),
										     _mm256_madd_epi16(v[3], pb1)));
				}
			}
	*I0 = is0;
	*I1 = is1;
}

/* A unit's scaled sums into the halves' accumulators (as q4k_unit_end). */
INL void q6k_unit_end(const struct kblk *k0, const struct kblk *k1, int n, __m256i (*S16)[64],
		      const struct ak_row *a, int64_t b, __m256 *acc0, __m256 *acc1)
{
	__m256i i00, i01, i10 = _mm256_setzero_si256(), i11 = i10;
	q6k_scale(k0->A, S16[0], a->b16 + 16 * b, &i00, &i01);
	if (n == 2)
		q6k_scale(k1->A, S16[1], a->b16 + 16 * b + 16, &i10, &i11);
	__m256 xd = _mm256_set1_ps(a->d[b]);
	*acc0 = _mm256_fmadd_ps(_mm256_mul_ps(half8(k0->S), xd), _mm256_cvtepi32_ps(i00), *acc0);
	*acc1 = _mm256_fmadd_ps(_mm256_mul_ps(half8(k0->S + 16), xd), _mm256_cvtepi32_ps(i01), *acc1);
	if (n == 2) {
		xd = _mm256_set1_ps(a->d[b + 1]);
		*acc0 = _mm256_fmadd_ps(_mm256_mul_ps(half8(k1->S), xd), _mm256_cvtepi32_ps(i10), *acc0);
		*acc1 = _mm256_fmadd_ps(_mm256_mul_ps(half8(k1->S + 16), xd), _mm256_cvtepi32_ps(i11), *acc1);
	}
}

/* Decode: a unit (two blocks) at a time in address order, as q4k_dec. */
DEC void q6k_dec(const uint8_t *grp, int64_t nb, const uint8_t *xrow, float *y, int n0, int n1)
{
	enum { UNIT = 2 * (3072 + 256 + 32) };
	const struct ak_row a = ak_row_at(xrow, nb, ak_qoff(nb));
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
	__m256i S16[2][64];

	for (int64_t b = 0; b < nb; b += 2) {
		const int n = b + 1 < nb ? 2 : 1;
		const struct kblk k0 = q6k_at(grp, b), k1 = q6k_at(grp, b + 1);
		q6k_sums(k0.Q, a.q + 256 * b, S16[0]);
		if (n == 2)
			q6k_sums(k1.Q, a.q + 256 * b + 256, S16[1]);
		/* the unit's scales: A0, A1, S0, S1 (9 lines) */
#pragma GCC unroll 9
		for (int l = 0; l < 9; l++)
			PREFETCH_UNIT(k0.A + 64 * l, UNIT);
		q6k_unit_end(&k0, &k1, n, S16, &a, b, &acc0, &acc1);
	}
	store_rows(y, acc0, n0);
	if (n1)
		store_rows(y + 8, acc1, n1);
}

/* q6k_sums for two tokens: each 6-bit vector is built once for both. */
INL void q6k_sums2(const uint8_t *Q, const int8_t *qa, const int8_t *qb, __m256i *SA, __m256i *SB)
{
	enum { UNIT = 2 * (3072 + 256 + 32) };
	const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
#pragma GCC unroll 1
	for (int h2 = 0; h2 < 2; h2++)
#pragma GCC unroll 1
		for (int jp = 0; jp < 4; jp++)
#pragma GCC unroll 1
			for (int cp = 0; cp < 2; cp++) {
				__m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00;
				__m256i b00 = a00, b01 = a00, b10 = a00, b11 = a00;
#pragma GCC unroll 2
				for (int jj = 0; jj < 2; jj++) {
					const int j = 2 * jp + jj;
					const uint8_t *V = Q + (size_t)((h2 * 8 + j) * 3) * 64;
					if (cp == 0) {
						PREFETCH_UNIT(V, UNIT);
						PREFETCH_UNIT(V + 64, UNIT);
						PREFETCH_UNIT(V + 128, UNIT);
					}
					const int oa = 128 * h2 + 32 * cp + 4 * j, ob = 128 * h2 + 32 * (cp + 2) + 4 * j;
					__m256i l = load256(V + 64 * cp), hb = load256(V + 128);
					__m256i ha = cp ? _mm256_slli_epi16(hb, 2) : _mm256_slli_epi16(hb, 4);
					__m256i hc = cp ? _mm256_srli_epi16(hb, 2) : hb;
					__m256i wa = _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_and_si256(ha, m30));
					__m256i wb = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 4), m4),
								     _mm256_and_si256(hc, m30));
					a00 = _mm256_add_epi16(a00, _mm256_maddubs_epi16(wa, bcast4(qa + oa)));
					a01 = _mm256_add_epi16(a01, _mm256_maddubs_epi16(wb, bcast4(qa + ob)));
					b00 = _mm256_add_epi16(b00, _mm256_maddubs_epi16(wa, bcast4(qb + oa)));
					b01 = _mm256_add_epi16(b01, _mm256_maddubs_epi16(wb, bcast4(qb + ob)));
					l = load256(V + 64 * cp + 32);
					hb = load256(V + 160);
					ha = cp ? _mm256_slli_epi16(hb, 2) : _mm256_slli_epi16(hb, 4);
					hc = cp ? _mm256_srli_epi16(hb, 2) : hb;
					wa = _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_and_si256(ha, m30));
					wb = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 4), m4),
							     _mm256_and_si256(hc, m30));
					a10 = _mm256_add_epi16(a10, _mm256_maddubs_epi16(wa, bcast4(qa + oa)));
					a11 = _mm256_add_epi16(a11, _mm256_maddubs_epi16(wb, bcast4(qa + ob)));
					b10 = _mm256_add_epi16(b10, _mm256_maddubs_epi16(wa, bcast4(qb + oa)));
					b11 = _mm256_add_epi16(b11, _mm256_maddubs_epi16(wb, bcast4(qb + ob)));
				}
				__m256i *o = SA + 4 * ((h2 * 4 + jp) * 2 + cp), *u = SB + 4 * ((h2 * 4 + jp) * 2 + cp);
				o[0] = a00;
				o[1] = a01;
				o[2] = a10;
				o[3] = a11;
				u[0] = b00;
				u[1] = b01;
				u[2] = b10;
				u[3] = b11;
			}
}

/* q6k_dec for two tokens, each bit for bit as q6k_dec gives it. */
DEC void q6k_dec2(const uint8_t *grp, int64_t nb, const uint8_t *xa, const uint8_t *xb, float *ya, float *yb,
		  int n0, int n1)
{
	enum { UNIT = 2 * (3072 + 256 + 32) };
	const struct ak_row ra = ak_row_at(xa, nb, ak_qoff(nb)), rb = ak_row_at(xb, nb, ak_qoff(nb));
	__m256 acc[2][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()}, {_mm256_setzero_ps(), _mm256_setzero_ps()}};
	__m256i SA[2][64], SB[2][64];

	for (int64_t b = 0; b < nb; b += 2) {
		const int n = b + 1 < nb ? 2 : 1;
		const struct kblk k0 = q6k_at(grp, b), k1 = q6k_at(grp, b + 1);
		q6k_sums2(k0.Q, ra.q + 256 * b, rb.q + 256 * b, SA[0], SB[0]);
		if (n == 2)
			q6k_sums2(k1.Q, ra.q + 256 * b + 256, rb.q + 256 * b + 256, SA[1], SB[1]);
#pragma GCC unroll 9
		for (int l = 0; l < 9; l++)
			PREFETCH_UNIT(k0.A + 64 * l, UNIT);
		q6k_unit_end(&k0, &k1, n, SA, &ra, b, &acc[0][0], &acc[0][1]);
		q6k_unit_end(&k0, &k1, n, SB, &rb, b, &acc[1][0], &acc[1][1]);
	}
	store_rows(ya, acc[0][0], n0);
	store_rows(yb, acc[1][0], n0);
	if (n1) {
		store_rows(ya + 8, acc[0][1], n1);
		store_rows(yb + 8, acc[1][1], n1);
	}
}

INL void q6k_pre(const int NT, const uint8_t *grp, int h, int64_t nb, const uint8_t *x0, size_t xs,
		 float *y, int64_t ys, int nr)
{
	struct ak_row a[NT];
	__m256 acc[NT];
#pragma GCC unroll 8
	for (int t = 0; t < NT; t++) {
		a[t] = ak_row_at(x0 + (size_t)t * xs, nb, ak_qoff(nb));
		acc[t] = _mm256_setzero_ps();
	}
	for (int64_t b = 0; b < nb; b++) {
		const struct kblk k = q6k_at(grp, b);
		__m256i is[NT];
#pragma GCC unroll 8
		for (int t = 0; t < NT; t++)
			is[t] = _mm256_sub_epi32(_mm256_setzero_si256(), q6k_offset(k.A, h, a[t].b16 + 16 * b));
#pragma GCC unroll 1
		for (int sb = 0; sb < 16; sb++) {
			/* sub-block sb = 8h2 + 2c + jh: j = 4jh .. 4jh + 3 of chunk c */
			const int h2 = sb >> 3, c = (sb >> 1) & 3, jh = sb & 1;
			const __m256i sc = pairs_s8(k.A + 16 * sb + 8 * h);
#pragma GCC unroll 2
			for (int jp = 0; jp < 2; jp++) {
				__m256i a16[NT];
#pragma GCC unroll 8
				for (int t = 0; t < NT; t++)
					a16[t] = _mm256_setzero_si256();
#pragma GCC unroll 2
				for (int jj = 0; jj < 2; jj++) {
					const int j = 4 * jh + 2 * jp + jj;
					const __m256i w = q6k_chunk(k.Q + (size_t)((h2 * 8 + j) * 3) * 64 + 32 * h, c);
#pragma GCC unroll 8
					for (int t = 0; t < NT; t++)
						a16[t] = _mm256_add_epi16(a16[t], _mm256_maddubs_epi16(
										  w, bcast4(a[t].q + 256 * b + 128 * h2 +
											    32 * c + 4 * j)));
				}
#pragma GCC unroll 8
				for (int t = 0; t < NT; t++)
					is[t] = _mm256_add_epi32(is[t], _mm256_madd_epi16(a16[t], sc));
			}
		}
		const __m256 dw = half8(k.S + 16 * h);
#pragma GCC unroll 8
		for (int t = 0; t < NT; t++)
			acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(a[t].d[b])), _mm256_cvtepi32_ps(is[t]),
						 acc[t]);
	}
#pragma GCC unroll 8
	for (int t = 0; t < NT; t++)
		store_rows(y + t * ys, acc[t], nr);
}

#define q6k_pre_CALL(w) q6k_pre(w, grp, h, nb, x + t * xs, xs, yg + t * ys + 8 * h, ys, nr)
PMUL2(pmul_q6_k, q6k_dec, q6k_dec2, q6k_pre, 256)

/* ---- Q5_K ---------------------------------------------------------------------------- */
/*
 * Block b (two per unit of 2 x (2560 + 256 + 64) bytes): Q = the fifth
 * bits, vector j = qh[4j..] of each row (bit 2c of byte l: element 64c +
 * l, the low nibble of quant vector 8c + l/4; bit 2c + 1: element 64c +
 * 32 + l), then Q4_K's 32 quant vectors; A, S as Q4_K.  Weights 0..31:
 * four products per int16 sum.
 */
INL struct kblk q5k_at(const uint8_t *grp, int64_t b)
{
	const uint8_t *U = grp + (size_t)(b >> 1) * (2 * (2560 + 256 + 64));
	return (struct kblk){U + (b & 1) * 2560, U + 5120 + (b & 1) * 256, U + 5632 + (b & 1) * 64};
}

/* bit 2c (HI: 2c + 1) of each byte of qh moved to bit 4 (other bits junk) */
INL __m256i q5k_bit(__m256i qh, int c, int hi)
{
	const int sh = 4 - 2 * c - hi;
	return sh > 0 ? _mm256_slli_epi16(qh, sh) : sh < 0 ? _mm256_srli_epi16(qh, -sh) : qh;
}

INL __m256i q5k_weights(__m256i v, __m256i qh, int c, int hi)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), m10 = _mm256_set1_epi8(0x10);
	if (hi)
		v = _mm256_srli_epi16(v, 4);
	return _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(q5k_bit(qh, c, hi), m10));
}

/* The int16 sums of a block as q4k_sums, each sub-block in two (j < 4, j
 * >= 4): S16[8c + 4jh + 2h + hi]. */
INL void q5k_sums(const uint8_t *Q, const int8_t *q, __m256i *S16)
{
	enum { UNIT = 2 * (2560 + 256 + 64) };
#pragma GCC unroll 8
	for (int j = 0; j < 8; j++)
		PREFETCH_UNIT(Q + 64 * j, UNIT);
	const __m256i m4 = _mm256_set1_epi8(0x0f), m10 = _mm256_set1_epi8(0x10);
	/* (c rolled: unrolled, the compiler spills) */
#pragma GCC unroll 1
	for (int c = 0; c < 4; c++)
#pragma GCC unroll 2
		for (int jh = 0; jh < 2; jh++) {
			const __m128i sh = _mm_cvtsi32_si128(2 * c);
			__m256i l0 = _mm256_setzero_si256(), h0 = l0, l1 = l0, h1 = l0;
#pragma GCC unroll 4
			for (int jj = 0; jj < 4; jj++) {
				const int j = 4 * jh + jj;
				const uint8_t *V = Q + 512 + (c * 8 + j) * 64;
				PREFETCH_UNIT(V, UNIT);
				const __m256i xl = bcast4(q + 64 * c + 4 * j), xh = bcast4(q + 64 * c + 32 + 4 * j);
				const __m256i v0 = load256(V), v1 = load256(V + 32);
				/* bits 2c, 2c + 1 of the fifth-bit bytes to bits 0, 1 */
				const __m256i b0 = _mm256_srl_epi16(load256(Q + 64 * j), sh);
				const __m256i b1 = _mm256_srl_epi16(load256(Q + 64 * j + 32), sh);
				l0 = _mm256_add_epi16(l0, _mm256_maddubs_epi16(
					_mm256_or_si256(_mm256_and_si256(v0, m4), _mm256_and_si256(_mm256_slli_epi16(b0, 4), m10)), xl));
				h0 = _mm256_add_epi16(h0, _mm256_maddubs_epi16(
					_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v0, 4), m4),
							_mm256_and_si256(_mm256_slli_epi16(b0, 3), m10)), xh));
				l1 = _mm256_add_epi16(l1, _mm256_maddubs_epi16(
					_mm256_or_si256(_mm256_and_si256(v1, m4), _mm256_and_si256(_mm256_slli_epi16(b1, 4), m10)), xl));
				h1 = _mm256_add_epi16(h1, _mm256_maddubs_epi16(
					_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v1, 4), m4),
							_mm256_and_si256(_mm256_slli_epi16(b1, 3), m10)), xh));
				KEEP(l0);
				KEEP(h0);
				KEEP(l1);
				KEEP(h1);
			}
			__m256i *o = S16 + 8 * c + 4 * jh;
			o[0] = l0;
			o[1] = h0;
			o[2] = l1;
			o[3] = h1;
		}
}

INL void q5k_scale(const uint8_t *A, const __m256i *S16, const int16_t *b32, __m256i *I0, __m256i *I1,
		   __m256i *M0, __m256i *M1)
{
	__m256i i0 = _mm256_setzero_si256(), i1 = i0;
#pragma GCC unroll 1
	for (int c = 0; c < 4; c++) {
		const __m256i sl0 = pairs_u8(A + 32 * c), sh0 = pairs_u8(A + 32 * c + 16);
		const __m256i sl1 = pairs_u8(A + 32 * c + 8), sh1 = pairs_u8(A + 32 * c + 24);
#pragma GCC unroll 2
		for (int jh = 0; jh < 2; jh++) {
			const __m256i *v = S16 + 8 * c + 4 * jh;
			i0 = _mm256_add_epi32(i0, _mm256_add_epi32(_mm256_madd_epi16(v[0], sl0), _mm256_madd_epi16(v[1], sh0)));
			i1 = _mm256_add_epi32(i1, _mm256_add_epi32(_mm256_madd_epi16(v[2], sl1), _mm256_madd_epi16(v[3], sh1)));
		}
	}
	*I0 = i0;
	*I1 = i1;
	*M0 = kmins(A, 0, b32);
	*M1 = kmins(A, 1, b32);
}

/* Decode: a unit (two blocks) at a time in address order, as q4k_dec. */
DEC void q5k_dec(const uint8_t *grp, int64_t nb, const uint8_t *xrow, float *y, int n0, int n1)
{
	enum { UNIT = 2 * (2560 + 256 + 64) };
	const struct ak_row a = ak_row_at(xrow, nb, ak_qoff(nb));
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
	__m256i S16[2][32];

	for (int64_t b = 0; b < nb; b += 2) {
		const int n = b + 1 < nb ? 2 : 1;
		const struct kblk k0 = q5k_at(grp, b), k1 = q5k_at(grp, b + 1);
		q5k_sums(k0.Q, a.q + 256 * b, S16[0]);
		if (n == 2)
			q5k_sums(k1.Q, a.q + 256 * b + 256, S16[1]);
		/* the unit's scales: A0, A1, S0, S1 (10 lines) */
#pragma GCC unroll 10
		for (int l = 0; l < 10; l++)
			PREFETCH_UNIT(k0.A + 64 * l, UNIT);
		__m256i i[2][4];
		q5k_scale(k0.A, S16[0], a.b32 + 8 * b, &i[0][0], &i[0][1], &i[0][2], &i[0][3]);
		if (n == 2)
			q5k_scale(k1.A, S16[1], a.b32 + 8 * b + 8, &i[1][0], &i[1][1], &i[1][2], &i[1][3]);
		acc0 = kend(acc0, k0.S, 0, a.d[b], i[0][0], i[0][2]);
		acc1 = kend(acc1, k0.S, 1, a.d[b], i[0][1], i[0][3]);
		if (n == 2) {
			acc0 = kend(acc0, k1.S, 0, a.d[b + 1], i[1][0], i[1][2]);
			acc1 = kend(acc1, k1.S, 1, a.d[b + 1], i[1][1], i[1][3]);
		}
	}
	store_rows(y, acc0, n0);
	if (n1)
		store_rows(y + 8, acc1, n1);
}

INL void q5k_pre(const int NT, const uint8_t *grp, int h, int64_t nb, const uint8_t *x0, size_t xs,
		 float *y, int64_t ys, int nr)
{
	struct ak_row a[NT];
	__m256 acc[NT];
#pragma GCC unroll 8
	for (int t = 0; t < NT; t++) {
		a[t] = ak_row_at(x0 + (size_t)t * xs, nb, ak_qoff(nb));
		acc[t] = _mm256_setzero_ps();
	}
	for (int64_t b = 0; b < nb; b++) {
		const struct kblk k = q5k_at(grp, b);
		__m256i is[NT];
#pragma GCC unroll 8
		for (int t = 0; t < NT; t++)
			is[t] = _mm256_setzero_si256();
#pragma GCC unroll 1
		for (int c = 0; c < 4; c++)
#pragma GCC unroll 2
		for (int hi = 0; hi < 2; hi++) {
			const int s = 2 * c + hi;
			const __m256i sc = pairs_u8(k.A + 16 * s + 8 * h);
#pragma GCC unroll 2
			for (int jh = 0; jh < 2; jh++) {
				__m256i a16[NT];
#pragma GCC unroll 8
				for (int t = 0; t < NT; t++)
					a16[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
				for (int jj = 0; jj < 4; jj++) {
					const int j = 4 * jh + jj;
					const __m256i w = q5k_weights(load256(k.Q + 512 + (c * 8 + j) * 64 + 32 * h),
								      load256(k.Q + 64 * j + 32 * h), c, hi);
#pragma GCC unroll 8
					for (int t = 0; t < NT; t++)
						a16[t] = _mm256_add_epi16(a16[t], _mm256_maddubs_epi16(
										  w, bcast4(a[t].q + 256 * b + 32 * s + 4 * j)));
				}
#pragma GCC unroll 8
				for (int t = 0; t < NT; t++)
					is[t] = _mm256_add_epi32(is[t], _mm256_madd_epi16(a16[t], sc));
			}
		}
#pragma GCC unroll 8
		for (int t = 0; t < NT; t++)
			acc[t] = kend(acc[t], k.S, h, a[t].d[b], is[t], kmins(k.A, h, a[t].b32 + 8 * b));
	}
#pragma GCC unroll 8
	for (int t = 0; t < NT; t++)
		store_rows(y + t * ys, acc[t], nr);
}

#define q5k_pre_CALL(w) q5k_pre(w, grp, h, nb, x + t * xs, xs, yg + t * ys + 8 * h, ys, nr)
PMUL(pmul_q5_k, q5k_dec, q5k_pre, 256)

/* ---- IQ4_XS -------------------------------------------------------------------------- */
/*
 * Block b (2176 bytes, in the order decode reads them): A =
 * scales_l[16][4], then scales_h[16]; S = fp16 d[16]; Q = 32 vectors,
 * vector k = bytes 4k.. of each row (sub-block k / 4; low nibbles elements
 * 32(k/4) + 4(k%4).., high nibbles 16 more).  Levels are signed (|K| <=
 * 127): the sign trick, each VPMADDUBSW widened by VPMADDWD with the
 * sub-block scale.
 */
INL struct kblk iq4xs_at(const uint8_t *grp, int64_t b)
{
	const uint8_t *B = grp + (size_t)b * 2176;
	return (struct kblk){B + 128, B, B + 96};
}

/* The 6-bit scales (0..63) of half h's rows as bytes: lane r of *E holds
 * those of sub-blocks 0, 2, 4, 6 of row r, of *O sub-blocks 1, 3, 5, 7. */
INL void iq4xs_scales(const uint8_t *A, int h, __m256i *E, __m256i *O)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	const __m256i b02 = _mm256_set1_epi32(0x00300030), b13 = _mm256_set1_epi32(0x30003000);
	const __m256i L = load256(A + 32 * h);
	/* scales_h of row r in both bytes of each 16-bit half: byte i of lane r
	 * holds bits 8(i/2).. of it, sub-blocks 2i, 2i+1 in bits 4(i%2).. */
	const __m256i Hs = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(A + 64 + 16 * h)));
	const __m256i S2 = _mm256_shuffle_epi8(Hs, _mm256_setr_epi8(0, 0, 1, 1, 4, 4, 5, 5, 8, 8, 9, 9, 12, 12, 13, 13,
								    0, 0, 1, 1, 4, 4, 5, 5, 8, 8, 9, 9, 12, 12, 13, 13));
	const __m256i he = _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi16(S2, 4), b02), _mm256_and_si256(S2, b13));
	const __m256i ho = _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi16(S2, 2), b02),
					   _mm256_and_si256(_mm256_srli_epi16(S2, 2), b13));
	*E = _mm256_or_si256(_mm256_and_si256(L, m4), he);
	*O = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L, 4), m4), ho);
}

/* int16 pairs (s - 32, s - 32) of sub-block ib from the scale bytes */
INL __m256i iq4xs_pair(__m256i E, __m256i O, int ib)
{
	/* byte ib / 2 of each lane into both int16 of the lane, high bytes 0 */
	const char z = (char)0x80;
	const __m256i sel = _mm256_add_epi8(_mm256_setr_epi8(0, z, 0, z, 4, z, 4, z, 8, z, 8, z, 12, z, 12, z,
							     0, z, 0, z, 4, z, 4, z, 8, z, 8, z, 12, z, 12, z),
					    _mm256_set1_epi8((char)(ib >> 1)));
	return _mm256_sub_epi16(_mm256_shuffle_epi8(ib & 1 ? O : E, sel), _mm256_set1_epi16(32));
}

INL __m256i iq4_lut(void)
{
	return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)quant_kvalues_iq4nl));
}

DEC void iq4xs_dec(const uint8_t *grp, int64_t nb, const uint8_t *xrow, float *y, int n0, int n1)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), lut = iq4_lut();
	const struct ak_row a = ak_row_at(xrow, nb, ak_qoff(nb));
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;

	for (int64_t b = 0; b < nb; b++) {
		const struct kblk k = iq4xs_at(grp, b);
		const int8_t *q = a.q + 256 * b;
		PREFETCH(k.A);
		PREFETCH(k.A + 64);
		__m256i E0, O0, E1, O1;
		iq4xs_scales(k.A, 0, &E0, &O0);
		iq4xs_scales(k.A, 1, &E1, &O1);
		__m256i is0 = _mm256_setzero_si256(), is1 = is0;
#pragma GCC unroll 1
		for (int ip = 0; ip < 8; ip += 2)
#pragma GCC unroll 2
		for (int ib = ip; ib < ip + 2; ib++) {
			const __m256i s0 = iq4xs_pair(E0, O0, ib), s1 = iq4xs_pair(E1, O1, ib);
#pragma GCC unroll 4
			for (int j = 0; j < 4; j++) {
				const uint8_t *V = k.Q + (4 * ib + j) * 64;
				PREFETCH(V);
				const __m256i xl = bcast4(q + 32 * ib + 4 * j), xh = bcast4(q + 32 * ib + 16 + 4 * j);
				const __m256i v0 = load256(V), v1 = load256(V + 32);
				__m256i w = _mm256_shuffle_epi8(lut, _mm256_and_si256(v0, m4));
				is0 = _mm256_add_epi32(is0, _mm256_madd_epi16(_mm256_maddubs_epi16(
					_mm256_sign_epi8(w, w), _mm256_sign_epi8(xl, w)), s0));
				w = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4));
				is0 = _mm256_add_epi32(is0, _mm256_madd_epi16(_mm256_maddubs_epi16(
					_mm256_sign_epi8(w, w), _mm256_sign_epi8(xh, w)), s0));
				w = _mm256_shuffle_epi8(lut, _mm256_and_si256(v1, m4));
				is1 = _mm256_add_epi32(is1, _mm256_madd_epi16(_mm256_maddubs_epi16(
					_mm256_sign_epi8(w, w), _mm256_sign_epi8(xl, w)), s1));
				w = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4));
				is1 = _mm256_add_epi32(is1, _mm256_madd_epi16(_mm256_maddubs_epi16(
					_mm256_sign_epi8(w, w), _mm256_sign_epi8(xh, w)), s1));
				KEEP(is0);
				KEEP(is1);
			}
		}
		const __m256 xd = _mm256_set1_ps(a.d[b]);
		acc0 = _mm256_fmadd_ps(_mm256_mul_ps(half8(k.S), xd), _mm256_cvtepi32_ps(is0), acc0);
		acc1 = _mm256_fmadd_ps(_mm256_mul_ps(half8(k.S + 16), xd), _mm256_cvtepi32_ps(is1), acc1);
	}
	store_rows(y, acc0, n0);
	if (n1)
		store_rows(y + 8, acc1, n1);
}

INL void iq4xs_pre(const int NT, const uint8_t *grp, int h, int64_t nb, const uint8_t *x0, size_t xs,
		   float *y, int64_t ys, int nr)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), lut = iq4_lut();
	struct ak_row a[NT];
	__m256 acc[NT];
#pragma GCC unroll 8
	for (int t = 0; t < NT; t++) {
		a[t] = ak_row_at(x0 + (size_t)t * xs, nb, ak_qoff(nb));
		acc[t] = _mm256_setzero_ps();
	}
	for (int64_t b = 0; b < nb; b++) {
		const struct kblk k = iq4xs_at(grp, b);
		__m256i E, O;
		iq4xs_scales(k.A, h, &E, &O);
		__m256i is[NT];
#pragma GCC unroll 8
		for (int t = 0; t < NT; t++)
			is[t] = _mm256_setzero_si256();
#pragma GCC unroll 1
		for (int ib = 0; ib < 8; ib++) {
			const __m256i sp = iq4xs_pair(E, O, ib);
#pragma GCC unroll 4
			for (int j = 0; j < 4; j++) {
				const __m256i v = load256(k.Q + (4 * ib + j) * 64 + 32 * h);
				const __m256i wl = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, m4));
				const __m256i wh = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
				const __m256i al = _mm256_sign_epi8(wl, wl), ah = _mm256_sign_epi8(wh, wh);
#pragma GCC unroll 8
				for (int t = 0; t < NT; t++) {
					const int8_t *q = a[t].q + 256 * b + 32 * ib + 4 * j;
					is[t] = _mm256_add_epi32(is[t], _mm256_add_epi32(
						_mm256_madd_epi16(_mm256_maddubs_epi16(al, _mm256_sign_epi8(bcast4(q), wl)), sp),
						_mm256_madd_epi16(_mm256_maddubs_epi16(ah, _mm256_sign_epi8(bcast4(q + 16), wh)),
								  sp)));
				}
			}
		}
		const __m256 dw = half8(k.S + 16 * h);
#pragma GCC unroll 8
		for (int t = 0; t < NT; t++)
			acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(a[t].d[b])), _mm256_cvtepi32_ps(is[t]),
						 acc[t]);
	}
#pragma GCC unroll 8
	for (int t = 0; t < NT; t++)
		store_rows(y + t * ys, acc[t], nr);
}

#define iq4xs_pre_CALL(w) iq4xs_pre(w, grp, h, nb, x + t * xs, xs, yg + t * ys + 8 * h, ys, nr)
PMUL(pmul_iq4_xs, iq4xs_dec, iq4xs_pre, 256)

/* ---- 32-element block types ----------------------------------------------------------- */
/*
 * Block b of a group (two blocks per unit): Q = the quants, 4 vectors
 * (vector j = bytes 4j.. of each row: low nibbles elements 4j.., high
 * nibbles 16 + 4j..) or 8 (Q8_0: elements 4j..); H = the Q5 fifth bits
 * (uint64 lo[4], hi[4]: bit 4r + i of lo[j] belongs to element 4j + i of
 * row r, of hi[j] to element 16 + 4j + i; 32 bits per half); S = the 16
 * rows' scales (fp16 d, then fp16 m for Q4_1/Q5_1; MXFP4: E8M0 bytes).
 * Activation rows (A32): float d[nb]; float s[nb]; int32 qsum[nb]; q at
 * qoff.
 */
enum { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0, K_IQ4_NL, K_MXFP4 };

struct a32_row {
	const float *d, *s;
	const int32_t *qsum;
	const int8_t *q;
};

INL struct a32_row a32_row_at(const uint8_t *row, int64_t nb)
{
	struct a32_row a;
	a.d = (const float *)(const void *)row;
	a.s = a.d + nb;
	a.qsum = (const int32_t *)(const void *)(a.d + 2 * nb);
	a.q = (const int8_t *)(row + (((size_t)nb * 12 + 63) & ~(size_t)63));
	return a;
}

INL int a32_has_m(const int kind)
{
	return kind == K_Q4_1 || kind == K_Q5_1;
}

INL int a32_has_h(const int kind)
{
	return kind == K_Q5_0 || kind == K_Q5_1;
}

INL int a32_qs_bytes(const int kind)
{
	return kind == K_Q8_0 ? 512 : 256;
}

struct a32_blk {
	const uint8_t *Q, *H, *S;
};

INL struct a32_blk a32_at(const int kind, const uint8_t *grp, int64_t b)
{
	const int qsb = a32_qs_bytes(kind), hb = a32_has_h(kind) ? 64 : 0;
	const int scb = kind == K_MXFP4 ? 16 : a32_has_m(kind) ? 64 : 32;
	const uint8_t *U = grp + (size_t)(b >> 1) * (size_t)(2 * (qsb + hb + scb));
	return (struct a32_blk){U + (b & 1) * qsb, U + 2 * qsb + (b & 1) * hb, U + 2 * (qsb + hb) + (b & 1) * scb};
}

/* The rows' block scales of half h: fp16 d, or for MXFP4 twice its
 * 2^(e - 128), i.e. the float with exponent field e (2^-127 for e = 0),
 * to be multiplied by half the activation scale (a32_xscale): the product
 * is the real number x_d * quant_e8m0_half(e), rounded once, as the
 * reference computes it. */
INL __m256 a32_scale(const int kind, const uint8_t *S, int h)
{
	if (kind != K_MXFP4)
		return half8(S + 16 * h);
	const __m256i e = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(S + 8 * h)));
	return _mm256_castsi256_ps(_mm256_max_epi32(_mm256_slli_epi32(e, 23), _mm256_set1_epi32(0x00400000)));
}

INL __m256 a32_xscale(const int kind, float xd)
{
	return _mm256_set1_ps(kind == K_MXFP4 ? 0.5f * xd : xd);
}

/* the 16-entry lookup of IQ4_NL (signed levels) and MXFP4 (levels + 12,
 * 0..24: unsigned, so they need no sign trick) in both 128-bit lanes */
INL __m256i a32_lut(const int kind)
{
	if (kind == K_MXFP4)
		return _mm256_broadcastsi128_si256(_mm_add_epi8(
			_mm_loadu_si128((const __m128i *)quant_kvalues_fp4), _mm_set1_epi8(12)));
	return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)quant_kvalues_iq4nl));
}

/* offset of the unsigned codes: x (code - off) = x code - off * qsum */
INL int a32_off(const int kind)
{
	return kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : kind == K_MXFP4 ? 12 : 0;
}

/* |w| x sign(x, w), pairs widened to int32 (signed weights, |w| <= 128) */
INL __m256i dot_signed(__m256i w, __m256i x)
{
	return madd1(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)));
}

/* 0x10 in byte k where bit k of the 32-bit word at P is set */
INL __m256i bit4_bytes(const uint8_t *p)
{
	const __m256i sel = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL);
	const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
	const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(bcast4((const int8_t *)p), sel), bit);
	return _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8(0x10));
}

/* The unsigned codes of vector j of block K, half h: low (HI = 0) or
 * high nibbles, with Q5's fifth bits, MXFP4's levels + 12 */
INL __m256i a32_codes(const int kind, struct a32_blk k, int j, int h, int hi)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	__m256i v = load256(k.Q + 64 * j + 32 * h);
	if (hi)
		v = _mm256_srli_epi16(v, 4);
	v = _mm256_and_si256(v, m4);
	if (kind == K_MXFP4)
		v = _mm256_shuffle_epi8(a32_lut(kind), v);
	if (a32_has_h(kind))
		v = _mm256_or_si256(v, bit4_bytes(k.H + 32 * hi + 8 * j + 4 * h));
	return v;
}

/* Products per int16 sum before it must be widened: 32767 over the
 * largest pair sum 2 x 127 x the largest code */
INL int a32_per16(const int kind)
{
	return kind == K_Q4_0 || kind == K_Q4_1 ? 8 : 4;
}

/* The integer sums of block K for both halves (*I0 rows 0..7, *I1 rows
 * 8..15) against the 32 activations at q, each broadcast serving both. */
INL void a32_isum(const int kind, struct a32_blk k, const int8_t *q, int32_t qsum, __m256i *I0, __m256i *I1)
{
	__m256i i0 = _mm256_setzero_si256(), i1 = i0;
	if (kind == K_Q8_0) {
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++) {
			const __m256i x = bcast4(q + 4 * j);
			i0 = _mm256_add_epi32(i0, dot_signed(load256(k.Q + 64 * j), x));
			i1 = _mm256_add_epi32(i1, dot_signed(load256(k.Q + 64 * j + 32), x));
			KEEP(i0);
			KEEP(i1);
		}
	} else if (kind == K_IQ4_NL) {
		const __m256i lut = a32_lut(kind), m4 = _mm256_set1_epi8(0x0f);
#pragma GCC unroll 4
		for (int j = 0; j < 4; j++) {
			const __m256i xl = bcast4(q + 4 * j), xh = bcast4(q + 16 + 4 * j);
#pragma GCC unroll 2
			for (int h = 0; h < 2; h++) {
				const __m256i v = load256(k.Q + 64 * j + 32 * h);
				const __m256i wl = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, m4));
				const __m256i wh = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
				const __m256i p = _mm256_add_epi32(dot_signed(wl, xl), dot_signed(wh, xh));
				if (h)
					i1 = _mm256_add_epi32(i1, p);
				else
					i0 = _mm256_add_epi32(i0, p);
			}
			KEEP(i0);
			KEEP(i1);
		}
	} else {
		/* unsigned codes: low and high nibbles summed apart (4 products each) */
		__m256i l0 = _mm256_setzero_si256(), u0 = l0, l1 = l0, u1 = l0;
#pragma GCC unroll 4
		for (int j = 0; j < 4; j++) {
			const __m256i xl = bcast4(q + 4 * j), xh = bcast4(q + 16 + 4 * j);
			l0 = _mm256_add_epi16(l0, _mm256_maddubs_epi16(a32_codes(kind, k, j, 0, 0), xl));
			u0 = _mm256_add_epi16(u0, _mm256_maddubs_epi16(a32_codes(kind, k, j, 0, 1), xh));
			l1 = _mm256_add_epi16(l1, _mm256_maddubs_epi16(a32_codes(kind, k, j, 1, 0), xl));
			u1 = _mm256_add_epi16(u1, _mm256_maddubs_epi16(a32_codes(kind, k, j, 1, 1), xh));
			KEEP(l0);
			KEEP(u0);
			KEEP(l1);
			KEEP(u1);
		}
		if (a32_per16(kind) == 8) {
			i0 = madd1(_mm256_add_epi16(l0, u0));
			i1 = madd1(_mm256_add_epi16(l1, u1));
		} else {
			i0 = _mm256_add_epi32(madd1(l0), madd1(u0));
			i1 = _mm256_add_epi32(madd1(l1), madd1(u1));
		}
		if (a32_off(kind)) {
			const __m256i off = _mm256_set1_epi32(a32_off(kind) * qsum);
			i0 = _mm256_sub_epi32(i0, off);
			i1 = _mm256_sub_epi32(i1, off);
		}
	}
	*I0 = i0;
	*I1 = i1;
}

INL void a32_dec(const int kind, const uint8_t *grp, int64_t nb, const uint8_t *xrow, float *y, int n0, int n1)
{
	const struct a32_row a = a32_row_at(xrow, nb);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
	for (int64_t b = 0; b < nb; b++) {
		const struct a32_blk k = a32_at(kind, grp, b);
#pragma GCC unroll 8
		for (int j = 0; j < a32_qs_bytes(kind) / 64; j++)
			PREFETCH(k.Q + 64 * j);
		if (a32_has_h(kind))
			PREFETCH(k.H);
		PREFETCH(k.S);
		__m256i i0, i1;
		a32_isum(kind, k, a.q + 32 * b, a.qsum[b], &i0, &i1);
		const __m256 xd = a32_xscale(kind, a.d[b]);
		acc0 = _mm256_fmadd_ps(_mm256_mul_ps(a32_scale(kind, k.S, 0), xd), _mm256_cvtepi32_ps(i0), acc0);
		acc1 = _mm256_fmadd_ps(_mm256_mul_ps(a32_scale(kind, k.S, 1), xd), _mm256_cvtepi32_ps(i1), acc1);
		if (a32_has_m(kind)) {
			const __m256 xs = _mm256_set1_ps(a.s[b]);
			acc0 = _mm256_fmadd_ps(half8(k.S + 32), xs, acc0);
			acc1 = _mm256_fmadd_ps(half8(k.S + 48), xs, acc1);
		}
	}
	store_rows(y, acc0, n0);
	if (n1)
		store_rows(y + 8, acc1, n1);
}

/* Prefill: the weights of each block unpacked once per tile of NT tokens. */
INL void a32_pre(const int kind, const int NT, const uint8_t *grp, int h, int64_t nb, const uint8_t *x0,
		 size_t xs, float *y, int64_t ys, int nr)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	struct a32_row a[NT];
	__m256 acc[NT];
#pragma GCC unroll 8
	for (int t = 0; t < NT; t++) {
		a[t] = a32_row_at(x0 + (size_t)t * xs, nb);
		acc[t] = _mm256_setzero_ps();
	}
	for (int64_t b = 0; b < nb; b++) {
		const struct a32_blk k = a32_at(kind, grp, b);
		__m256i is[NT];
#pragma GCC unroll 8
		for (int t = 0; t < NT; t++)
			is[t] = _mm256_set1_epi32(-a32_off(kind) * a[t].qsum[b]);
		if (kind == K_Q8_0) {
#pragma GCC unroll 8
			for (int j = 0; j < 8; j++) {
				const __m256i w = load256(k.Q + 64 * j + 32 * h), aw = _mm256_sign_epi8(w, w);
#pragma GCC unroll 8
				for (int t = 0; t < NT; t++)
					is[t] = _mm256_add_epi32(is[t], madd1(_mm256_maddubs_epi16(
									 aw, _mm256_sign_epi8(bcast4(a[t].q + 32 * b + 4 * j), w))));
			}
		} else if (kind == K_IQ4_NL) {
			const __m256i lut = a32_lut(kind);
#pragma GCC unroll 4
			for (int j = 0; j < 4; j++) {
				const __m256i v = load256(k.Q + 64 * j + 32 * h);
				const __m256i wl = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, m4));
				const __m256i wh = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
				const __m256i al = _mm256_sign_epi8(wl, wl), ah = _mm256_sign_epi8(wh, wh);
#pragma GCC unroll 8
				for (int t = 0; t < NT; t++) {
					const int8_t *q = a[t].q + 32 * b + 4 * j;
					__m256i p = _mm256_add_epi32(
						madd1(_mm256_maddubs_epi16(al, _mm256_sign_epi8(bcast4(q), wl))),
						madd1(_mm256_maddubs_epi16(ah, _mm256_sign_epi8(bcast4(q + 16), wh))));
					is[t] = _mm256_add_epi32(is[t], p);
				}
			}
		} else {
			/* unsigned codes: int16 sums of four products per token,
			 * two j at a time */
#pragma GCC unroll 2
			for (int jp = 0; jp < 2; jp++) {
				__m256i s16[NT];
#pragma GCC unroll 8
				for (int t = 0; t < NT; t++)
					s16[t] = _mm256_setzero_si256();
#pragma GCC unroll 2
				for (int jj = 0; jj < 2; jj++) {
					const int j = 2 * jp + jj;
					const __m256i wl = a32_codes(kind, k, j, h, 0), wh = a32_codes(kind, k, j, h, 1);
#pragma GCC unroll 8
					for (int t = 0; t < NT; t++) {
						const int8_t *q = a[t].q + 32 * b + 4 * j;
						s16[t] = _mm256_add_epi16(s16[t], _mm256_add_epi16(
										  _mm256_maddubs_epi16(wl, bcast4(q)),
										  _mm256_maddubs_epi16(wh, bcast4(q + 16))));
					}
				}
#pragma GCC unroll 8
				for (int t = 0; t < NT; t++)
					is[t] = _mm256_add_epi32(is[t], madd1(s16[t]));
			}
		}
		const __m256 dw = a32_scale(kind, k.S, h);
		const __m256 mw = a32_has_m(kind) ? half8(k.S + 32 + 16 * h) : _mm256_setzero_ps();
#pragma GCC unroll 8
		for (int t = 0; t < NT; t++) {
			acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, a32_xscale(kind, a[t].d[b])), _mm256_cvtepi32_ps(is[t]),
						 acc[t]);
			if (a32_has_m(kind))
				acc[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a[t].s[b]), acc[t]);
		}
	}
#pragma GCC unroll 8
	for (int t = 0; t < NT; t++)
		store_rows(y + t * ys, acc[t], nr);
}

#define A32_FNS(sfx, kind)                                                                          \
	DEC void sfx##_dec(const uint8_t *grp, int64_t nb, const uint8_t *xrow, float *y, int n0, int n1) \
	{                                                                                            \
		a32_dec(kind, grp, nb, xrow, y, n0, n1);                                             \
	}
#define A32_PRE(kind, w) a32_pre(kind, w, grp, h, nb, x + t * xs, xs, yg + t * ys + 8 * h, ys, nr)
#define q4_0_pre_CALL(w) A32_PRE(K_Q4_0, w)
#define q4_1_pre_CALL(w) A32_PRE(K_Q4_1, w)
#define q5_0_pre_CALL(w) A32_PRE(K_Q5_0, w)
#define q5_1_pre_CALL(w) A32_PRE(K_Q5_1, w)
#define q8_0_pre_CALL(w) A32_PRE(K_Q8_0, w)
#define iq4_nl_pre_CALL(w) A32_PRE(K_IQ4_NL, w)
#define mxfp4_pre_CALL(w) A32_PRE(K_MXFP4, w)
A32_FNS(q4_0, K_Q4_0)
A32_FNS(q4_1, K_Q4_1)
A32_FNS(q5_0, K_Q5_0)
A32_FNS(q5_1, K_Q5_1)
A32_FNS(q8_0, K_Q8_0)
A32_FNS(iq4_nl, K_IQ4_NL)
A32_FNS(mxfp4, K_MXFP4)
PMUL(pmul_q4_0, q4_0_dec, q4_0_pre, 32)
PMUL(pmul_q4_1, q4_1_dec, q4_1_pre, 32)
PMUL(pmul_q5_0, q5_0_dec, q5_0_pre, 32)
PMUL(pmul_q5_1, q5_1_dec, q5_1_pre, 32)
PMUL(pmul_q8_0, q8_0_dec, q8_0_pre, 32)
PMUL(pmul_iq4_nl, iq4_nl_dec, iq4_nl_pre, 32)
PMUL(pmul_mxfp4, mxfp4_dec, mxfp4_pre, 32)

quant_pmul_fn quant_pack_kernel_avx2(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q4_0: return pmul_q4_0;
	case GGML_TYPE_Q4_1: return pmul_q4_1;
	case GGML_TYPE_Q5_0: return pmul_q5_0;
	case GGML_TYPE_Q5_1: return pmul_q5_1;
	case GGML_TYPE_Q8_0: return pmul_q8_0;
	case GGML_TYPE_IQ4_NL: return pmul_iq4_nl;
	case GGML_TYPE_MXFP4: return pmul_mxfp4;
	case GGML_TYPE_Q4_K: return pmul_q4_k;
	case GGML_TYPE_Q5_K: return pmul_q5_k;
	case GGML_TYPE_Q6_K: return pmul_q6_k;
	case GGML_TYPE_IQ4_XS: return pmul_iq4_xs;
	default: return NULL;
	}
}

#else

quant_pmul_fn quant_pack_kernel_avx2(uint32_t type)
{
	(void)type;
	return NULL;
}

#endif
