/*
 * quant_pack_avx512.c - AVX-512 (F, BW, VL, DQ, VNNI; 512-bit vectors)
 * kernels for packed matrices (layouts in quant_pack.c and quant_impl.h).
 *
 * One zmm lane is one row of a 16-row group.  For a block of weights the
 * kernel unpacks the quants once into byte vectors (4 bytes per lane),
 * then for each token of a tile of up to NT tokens runs VPDPBUSD against
 * that token's activation bytes broadcast from memory, so the unpacking
 * is shared by the tile and each instruction does 64 multiply-adds.
 * Integer block sums are exact; the block scales of the 16 rows load as
 * one vector and the float work is one multiply and one or two FMAs per
 * block and token.  Signed weights are handled with offsets folded into
 * the integer sums: Q8_0 is read as unsigned (q ^ 0x80 = q + 128) with
 * -128 * sum(x) as the starting value, Q4_0/Q5_0 start at -8 / -16 *
 * sum(x), Q6_K at -32 * (sub-block sum of x).
 *
 * Loop order: row groups outside, token tiles inside, blocks innermost:
 * a group's weights (16 rows x cols) stay in L1/L2 while the tiles of a
 * prefill batch pass over them; in decode (one token) the weights stream
 * once, in address order.  (Q6_K prefill puts a chunk of
 * unpacked blocks between the groups and the tiles; see tile_q6k_unpacked.)
 */
#include "quant_impl.h"

#include <string.h>

#include "gguf.h"

#if QUANT_X86

#include <immintrin.h>

#define TGT "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"
#define INL static inline __attribute__((target(TGT), always_inline))
/* Software prefetch distance of the one-token (decode) kernels, which
 * stream the weights from memory once: the hardware prefetchers alone left
 * Q4_K at 2/3 of the read bandwidth, and in a whole model (many small
 * matrices back to back) distances under 8 KiB measured slower. */
#ifndef PFD
#define PFD 4096
#endif
#define PREFETCH(p) _mm_prefetch((const char *)(p) + PFD, _MM_HINT_T0)
#define API static __attribute__((target(TGT)))

enum { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0 };

/* Tiles of W (at most 12) tokens, then one of the remaining width; CALL(w) runs a tile
 * of w tokens starting at token t (a compile-time w, so every tile shape
 * is its own fully unrolled code). */
#define TILES(W, CALL)                                  \
	do {                                            \
		int64_t t = 0;                          \
		for (; t + (W) <= nt; t += (W))         \
			CALL(W);                        \
		switch (nt - t) {                       \
		case 11: if ((W) > 11) CALL(11); break; \
		case 10: if ((W) > 10) CALL(10); break; \
		case 9: if ((W) > 9) CALL(9); break;    \
		case 8: if ((W) > 8) CALL(8); break;    \
		case 7: if ((W) > 7) CALL(7); break;    \
		case 6: if ((W) > 6) CALL(6); break;    \
		case 5: if ((W) > 5) CALL(5); break;    \
		case 4: if ((W) > 4) CALL(4); break;    \
		case 3: CALL(3); break;                 \
		case 2: CALL(2); break;                 \
		case 1: CALL(1); break;                 \
		default: break;                         \
		}                                       \
	} while (0)

INL __m512i bcast4(const int8_t *p)
{
	int32_t v;
	memcpy(&v, p, 4);
	return _mm512_set1_epi32(v);
}

INL __mmask16 row_mask(int64_t g, int64_t rows)
{
	int64_t left = rows - g * QUANT_ROW_GROUP;
	return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* ---- 32-element block types ------------------------------------------------------- */

INL void tile_a32(const int kind, const int NT, const uint8_t *grp, int64_t nb, const uint8_t *x0,
		  size_t xs, size_t qoff, float *y, int64_t ys, __mmask16 mask)
{
	const int qsb = kind == K_Q8_0 ? 512 : 256;
	const int has_m = kind == K_Q4_1 || kind == K_Q5_1;
	const int has_h = kind == K_Q5_0 || kind == K_Q5_1;
	const int scb = has_m ? 64 : 32, auxb = has_h ? 64 : 0;
	const size_t unit = 2 * (size_t)(qsb + auxb + scb);
	const __m512i m4 = _mm512_set1_epi8(0x0f), c16 = _mm512_set1_epi8(16);
	const __m512i x80 = _mm512_set1_epi8((char)0x80);
	const float *xd[NT], *xsum[NT];
	const int32_t *xq[NT];
	const int8_t *xb[NT];
	__m512 acc[NT];

	#pragma GCC unroll 32
	for (int t = 0; t < NT; t++) {
		const uint8_t *row = x0 + (size_t)t * xs;
		xd[t] = (const float *)(const void *)row;
		xsum[t] = xd[t] + nb;
		xq[t] = (const int32_t *)(const void *)(xsum[t] + nb);
		xb[t] = (const int8_t *)(row + qoff);
		acc[t] = _mm512_setzero_ps();
	}
	for (int64_t b = 0; b < nb; b++) {
		const uint8_t *U = grp + (size_t)(b >> 1) * unit, *Q = U + (b & 1) * qsb;
		const uint8_t *S = U + 2 * (qsb + auxb) + (b & 1) * scb;
		if (NT == 1) {
			/* the vector loads below prefetch their own lines ahead;
			 * these are the rest of the unit's lines */
			PREFETCH(S);
			if (has_h)
				PREFETCH(U + 2 * qsb + (b & 1) * 64);
		}
		__m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)S));
		__m512 mw = has_m ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(S + 32)))
				  : _mm512_setzero_ps();
		__m512i W[8];
		if (kind == K_Q8_0) {
			#pragma GCC unroll 32
			for (int j = 0; j < 8; j++) {
				if (NT == 1)
					PREFETCH(Q + 64 * j);
				W[j] = _mm512_xor_si512(_mm512_loadu_si512(Q + 64 * j), x80);
			}
		} else {
			#pragma GCC unroll 32
			for (int j = 0; j < 4; j++) {
				if (NT == 1)
					PREFETCH(Q + 64 * j);
				__m512i v = _mm512_loadu_si512(Q + 64 * j);
				W[j] = _mm512_and_si512(v, m4);
				W[j + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
			}
			if (has_h) {
				const uint8_t *H = U + 2 * qsb + (b & 1) * 64;
				#pragma GCC unroll 32
				for (int j = 0; j < 4; j++) {
					uint64_t lo, hi;
					memcpy(&lo, H + 8 * j, 8);
					memcpy(&hi, H + 32 + 8 * j, 8);
					W[j] = _mm512_mask_add_epi8(W[j], (__mmask64)lo, W[j], c16);
					W[j + 4] = _mm512_mask_add_epi8(W[j + 4], (__mmask64)hi, W[j + 4], c16);
				}
			}
		}
		#pragma GCC unroll 32
		for (int t = 0; t < NT; t++) {
			const int8_t *q = xb[t] + 32 * b;
			int off = kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : kind == K_Q8_0 ? 128 : 0;
			__m512i s0 = _mm512_set1_epi32(-off * xq[t][b]), s1 = _mm512_setzero_si512();
			s0 = _mm512_dpbusd_epi32(s0, W[0], bcast4(q));
			s1 = _mm512_dpbusd_epi32(s1, W[1], bcast4(q + 4));
			s0 = _mm512_dpbusd_epi32(s0, W[2], bcast4(q + 8));
			s1 = _mm512_dpbusd_epi32(s1, W[3], bcast4(q + 12));
			s0 = _mm512_dpbusd_epi32(s0, W[4], bcast4(q + 16));
			s1 = _mm512_dpbusd_epi32(s1, W[5], bcast4(q + 20));
			s0 = _mm512_dpbusd_epi32(s0, W[6], bcast4(q + 24));
			s1 = _mm512_dpbusd_epi32(s1, W[7], bcast4(q + 28));
			__m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
			acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(xd[t][b])), f, acc[t]);
			if (has_m)
				acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xsum[t][b]), acc[t]);
		}
	}
	#pragma GCC unroll 32
	for (int t = 0; t < NT; t++)
		_mm512_mask_storeu_ps(y + t * ys, mask, acc[t]);
}

#ifndef A32_TILE
#define A32_TILE 8
#endif

#define A32_KERNEL(name, kind)                                                                   \
	API void name(const void *packed, size_t gb, int64_t g0, int64_t g1, int64_t rows,        \
		      int64_t cols, const void *xact, size_t xs, int64_t nt, float *y, int64_t ys) \
	{                                                                                        \
		const int64_t nb = cols / 32;                                                    \
		const size_t qoff = ((size_t)nb * 12 + 63) & ~(size_t)63;                        \
		for (int64_t g = g0; g < g1; g++) {                                              \
			const uint8_t *grp = (const uint8_t *)packed + (size_t)g * gb;           \
			const __mmask16 mask = row_mask(g, rows);                                \
			float *yg = y + g * QUANT_ROW_GROUP;                                     \
			const uint8_t *x = xact;                                                 \
			const int kind_ = kind;                                                  \
			TILES(A32_TILE, A32_CALL);                                               \
		}                                                                                \
	}
#define A32_CALL(w) tile_a32(kind_, w, grp, nb, x + t * xs, xs, qoff, yg + t * ys, ys, mask)

A32_KERNEL(pmul_q4_0, K_Q4_0)
A32_KERNEL(pmul_q4_1, K_Q4_1)
A32_KERNEL(pmul_q5_0, K_Q5_0)
A32_KERNEL(pmul_q5_1, K_Q5_1)
A32_KERNEL(pmul_q8_0, K_Q8_0)

/* ---- K-quants -------------------------------------------------------------------------- */

/* AK activation row: float d[nb]; int16 bsum16[nb][16]; int16 bsum32[nb][8]; q at qoff */
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

/* End of Q4_K block b for one row group (aux A, scales S): acc[t] +=
 * d * xd * isum[t] - dmin * xd * (the mins . the activation's 32-sums). */
INL void q4k_block_end(const int NT, const uint8_t *A, const uint8_t *S, const struct ak_row *a, int64_t b,
		       const __m512i *isum, __m512 *acc)
{
	__m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)S));
	__m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(S + 32)));
	__m512i mn[4];
	#pragma GCC unroll 32
	for (int k = 0; k < 4; k++)
		mn[k] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(A + 128 + 32 * k)));
	#pragma GCC unroll 32
	for (int t = 0; t < NT; t++) {
		__m512i ms = _mm512_setzero_si512();
		#pragma GCC unroll 32
		for (int k = 0; k < 4; k++) {
			int32_t pair;
			memcpy(&pair, a[t].b32 + 8 * b + 2 * k, 4);
			ms = _mm512_dpwssd_epi32(ms, mn[k], _mm512_set1_epi32(pair));
		}
		__m512 xd = _mm512_set1_ps(a[t].d[b]);
		acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, xd), _mm512_cvtepi32_ps(isum[t]), acc[t]);
		acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(dm, xd), _mm512_cvtepi32_ps(ms), acc[t]);
	}
}

INL void tile_q4_k(const int NT, const uint8_t *grp, int64_t nb, const uint8_t *x0, size_t xs,
		   size_t qoff, float *y, int64_t ys, __mmask16 mask)
{
	const size_t unit = 2 * (2048 + 256 + 64);
	const __m512i m4 = _mm512_set1_epi8(0x0f);
	struct ak_row a[NT];
	__m512 acc[NT];

	#pragma GCC unroll 32
	for (int t = 0; t < NT; t++) {
		a[t] = ak_row_at(x0 + (size_t)t * xs, nb, qoff);
		acc[t] = _mm512_setzero_ps();
	}
	for (int64_t b = 0; b < nb; b++) {
		const uint8_t *U = grp + (size_t)(b >> 1) * unit, *Q = U + (b & 1) * 2048;
		const uint8_t *A = U + 4096 + (b & 1) * 256, *S = U + 4608 + (b & 1) * 64;
		if (NT == 1) {
#pragma GCC unroll 4
			for (int k = 0; k < 4; k++)
				PREFETCH(A + 64 * k);
			PREFETCH(S);
		}
		__m512i isum[NT];
		#pragma GCC unroll 32
		for (int t = 0; t < NT; t++)
			isum[t] = _mm512_setzero_si512();
		#pragma GCC unroll 32
		for (int c = 0; c < 4; c++) {
			__m512i lo[NT], hi[NT];
			#pragma GCC unroll 32
			for (int t = 0; t < NT; t++)
				lo[t] = hi[t] = _mm512_setzero_si512();
			#pragma GCC unroll 32
			for (int j = 0; j < 8; j++) {
				if (NT == 1)
					PREFETCH(Q + (c * 8 + j) * 64);
				__m512i v = _mm512_loadu_si512(Q + (c * 8 + j) * 64);
				__m512i L = _mm512_and_si512(v, m4);
				__m512i H = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
				#pragma GCC unroll 32
				for (int t = 0; t < NT; t++) {
					const int8_t *q = a[t].q + 256 * b + 64 * c + 4 * j;
					lo[t] = _mm512_dpbusd_epi32(lo[t], L, bcast4(q));
					hi[t] = _mm512_dpbusd_epi32(hi[t], H, bcast4(q + 32));
				}
			}
			__m512i sl = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(A + 32 * c)));
			__m512i sh = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(A + 32 * c + 16)));
			#pragma GCC unroll 32
			for (int t = 0; t < NT; t++)
				isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(lo[t], sl),
										     _mm512_mullo_epi32(hi[t], sh)));
		}
		q4k_block_end(NT, A, S, a, b, isum, acc);
	}
	#pragma GCC unroll 32
	for (int t = 0; t < NT; t++)
		_mm512_mask_storeu_ps(y + t * ys, mask, acc[t]);
}

/* Prefill: two row groups (g and g + 1, gb bytes apart) against NT
 * tokens, so every broadcast activation load feeds two VPDPBUSD: the
 * one-group loop above is bound by those loads (one per VPDPBUSD), not by
 * the multiply-adds.  MASK is the second group's rows. */
INL void tile_q4_k2(const int NT, const uint8_t *grp, size_t gb, int64_t nb, const uint8_t *x0,
		   size_t xs, size_t qoff, float *y, int64_t ys, __mmask16 mask)
{
	enum { NG = 2 };
	const size_t unit = 2 * (2048 + 256 + 64);
	const __m512i m4 = _mm512_set1_epi8(0x0f);
	struct ak_row a[NT];
	__m512 acc[NG][NT];

	#pragma GCC unroll 32
	for (int t = 0; t < NT; t++) {
		a[t] = ak_row_at(x0 + (size_t)t * xs, nb, qoff);
		#pragma GCC unroll 2
		for (int g = 0; g < NG; g++)
			acc[g][t] = _mm512_setzero_ps();
	}
	for (int64_t b = 0; b < nb; b++) {
		const uint8_t *U = grp + (size_t)(b >> 1) * unit, *Q = U + (b & 1) * 2048;
		const uint8_t *A = U + 4096 + (b & 1) * 256, *S = U + 4608 + (b & 1) * 64;
		__m512i isum[NG][NT];
		#pragma GCC unroll 32
		for (int t = 0; t < NT; t++)
			#pragma GCC unroll 2
			for (int g = 0; g < NG; g++)
				isum[g][t] = _mm512_setzero_si512();
		#pragma GCC unroll 32
		for (int c = 0; c < 4; c++) {
			__m512i lo[NG][NT], hi[NG][NT];
			#pragma GCC unroll 32
			for (int t = 0; t < NT; t++)
				#pragma GCC unroll 2
				for (int g = 0; g < NG; g++)
					lo[g][t] = hi[g][t] = _mm512_setzero_si512();
			#pragma GCC unroll 32
			for (int j = 0; j < 8; j++) {
				__m512i L[NG], H[NG];
				#pragma GCC unroll 2
				for (int g = 0; g < NG; g++) {
					const uint8_t *V = Q + (size_t)g * gb + (size_t)(c * 8 + j) * 64;
					__m512i v = _mm512_loadu_si512(V);
					L[g] = _mm512_and_si512(v, m4);
					H[g] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
				}
				#pragma GCC unroll 32
				for (int t = 0; t < NT; t++) {
					const int8_t *q = a[t].q + 256 * b + 64 * c + 4 * j;
					const __m512i xl = bcast4(q), xh = bcast4(q + 32);
					#pragma GCC unroll 2
					for (int g = 0; g < NG; g++) {
						lo[g][t] = _mm512_dpbusd_epi32(lo[g][t], L[g], xl);
						hi[g][t] = _mm512_dpbusd_epi32(hi[g][t], H[g], xh);
					}
				}
			}
			#pragma GCC unroll 2
			for (int g = 0; g < NG; g++) {
				const uint8_t *Ag = A + (size_t)g * gb;
				__m512i sl = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(Ag + 32 * c)));
				__m512i sh = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(Ag + 32 * c + 16)));
				#pragma GCC unroll 32
				for (int t = 0; t < NT; t++)
					isum[g][t] = _mm512_add_epi32(isum[g][t],
								      _mm512_add_epi32(_mm512_mullo_epi32(lo[g][t], sl),
										       _mm512_mullo_epi32(hi[g][t], sh)));
			}
		}
		q4k_block_end(NT, A, S, a, b, isum[0], acc[0]);
		q4k_block_end(NT, A + gb, S + gb, a, b, isum[1], acc[1]);
	}
	#pragma GCC unroll 32
	for (int t = 0; t < NT; t++) {
		_mm512_storeu_ps(y + t * ys, acc[0][t]);
		_mm512_mask_storeu_ps(y + t * ys + QUANT_ROW_GROUP, mask, acc[1][t]);
	}
}

/* The 6-bit weights (0..63) of the packed vectors at V (ql, ql, qh; see
 * quant_pack.c): w[c] = 4 bytes per lane of chunk c. */
INL void q6k_weights(const uint8_t *V, __m512i w[4])
{
	const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
	__m512i v0 = _mm512_loadu_si512(V), v1 = _mm512_loadu_si512(V + 64);
	__m512i hb = _mm512_loadu_si512(V + 128);
	w[0] = _mm512_ternarylogic_epi32(_mm512_and_si512(v0, m4), _mm512_slli_epi16(hb, 4), m30, 0xf8);
	w[1] = _mm512_ternarylogic_epi32(_mm512_and_si512(v1, m4), _mm512_slli_epi16(hb, 2), m30, 0xf8);
	w[2] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(v0, 4), m4), hb, m30, 0xf8);
	w[3] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(v1, 4), m4), _mm512_srli_epi16(hb, 2),
					 m30, 0xf8);
}

/* Where block b of a Q6_K row group lies: its packed quants Q, int8
 * sub-block scales A and fp16 scales S (two blocks per unit, see
 * quant_pack.c). */
struct q6k_block {
	const uint8_t *Q, *A, *S;
};
INL struct q6k_block q6k_block_at(const uint8_t *grp, int64_t b)
{
	const uint8_t *U = grp + (size_t)(b >> 1) * (2 * (3072 + 256 + 32));
	return (struct q6k_block){U + (b & 1) * 3072, U + 6144 + (b & 1) * 256, U + 6656 + (b & 1) * 32};
}

INL void tile_q6_k(const int NT, const uint8_t *grp, int64_t nb, const uint8_t *x0, size_t xs,
		   size_t qoff, float *y, int64_t ys, __mmask16 mask)
{
	struct ak_row a[NT];
	__m512 acc[NT];

#pragma GCC unroll 32
	for (int t = 0; t < NT; t++) {
		a[t] = ak_row_at(x0 + (size_t)t * xs, nb, qoff);
		acc[t] = _mm512_setzero_ps();
	}
	for (int64_t b = 0; b < nb; b++) {
		const struct q6k_block blk = q6k_block_at(grp, b);
		const uint8_t *Q = blk.Q, *A = blk.A, *S = blk.S;
		if (NT == 1) {
#pragma GCC unroll 4
			for (int k = 0; k < 4; k++)
				PREFETCH(A + 64 * k);
			PREFETCH(S);
		}
		__m512i isum[NT];
#pragma GCC unroll 32
		for (int t = 0; t < NT; t++)
			isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 32
		for (int h = 0; h < 2; h++)
#pragma GCC unroll 32
			for (int jh = 0; jh < 2; jh++) {
				/* chunk c of half h: elements 128h + 32c + 4j.. (sub-block
				 * 8h + 2c + jh for j in 4jh..4jh+3): low 4 bits from ql
				 * vector c & 1 (its high nibbles when c >= 2), bits 4-5
				 * from bits 2c, 2c+1 of the qh vector */
				__m512i s[NT][4];
#pragma GCC unroll 32
				for (int t = 0; t < NT; t++)
#pragma GCC unroll 32
					for (int c = 0; c < 4; c++)
						s[t][c] = _mm512_set1_epi32(-32 * a[t].b16[16 * b + 8 * h + 2 * c + jh]);
#pragma GCC unroll 32
				for (int jj = 0; jj < 4; jj++) {
					const int j = 4 * jh + jj;
					const uint8_t *V = Q + (size_t)((h * 8 + j) * 3) * 64;
					if (NT == 1) {
						PREFETCH(V);
						PREFETCH(V + 64);
						PREFETCH(V + 128);
					}
					__m512i w[4];
					q6k_weights(V, w);
#pragma GCC unroll 32
					for (int t = 0; t < NT; t++)
#pragma GCC unroll 32
						for (int c = 0; c < 4; c++)
							s[t][c] = _mm512_dpbusd_epi32(s[t][c], w[c],
										      bcast4(a[t].q + 256 * b + 128 * h + 32 * c + 4 * j));
				}
#pragma GCC unroll 32
				for (int c = 0; c < 4; c++) {
					__m512i scl = _mm512_cvtepi8_epi32(
						_mm_loadu_si128((const __m128i *)(A + 16 * (8 * h + 2 * c + jh))));
#pragma GCC unroll 32
					for (int t = 0; t < NT; t++)
						isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s[t][c], scl));
				}
			}
		__m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)S));
#pragma GCC unroll 32
		for (int t = 0; t < NT; t++)
			acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(a[t].d[b])),
						 _mm512_cvtepi32_ps(isum[t]), acc[t]);
	}
#pragma GCC unroll 32
	for (int t = 0; t < NT; t++)
		_mm512_mask_storeu_ps(y + t * ys, mask, acc[t]);
}

#ifndef Q4K_TILE
#define Q4K_TILE 4
#endif
#ifndef Q6K_TILE
#define Q6K_TILE 3
#endif

#ifndef Q4K2_TILE
#define Q4K2_TILE 4
#endif

API void pmul_q4_k(const void *packed, size_t gb, int64_t g0, int64_t g1, int64_t rows, int64_t cols,
		   const void *xact, size_t xs, int64_t nt, float *y, int64_t ys)
{
	const int64_t nb = cols / 256;
	const size_t qoff = ((size_t)nb * 52 + 63) & ~(size_t)63;
	int64_t g = g0;
	if (nt >= 2)
		for (; g + 1 < g1; g += 2) {   /* pairs of groups (prefill) */
			const uint8_t *grp = (const uint8_t *)packed + (size_t)g * gb;
			const __mmask16 mask = row_mask(g + 1, rows);
			float *yg = y + g * QUANT_ROW_GROUP;
			const uint8_t *x = xact;
#define Q4K2_CALL(w) tile_q4_k2(w, grp, gb, nb, x + t * xs, xs, qoff, yg + t * ys, ys, mask)
			TILES(Q4K2_TILE, Q4K2_CALL);
#undef Q4K2_CALL
		}
	for (; g < g1; g++) {
		const uint8_t *grp = (const uint8_t *)packed + (size_t)g * gb;
		const __mmask16 mask = row_mask(g, rows);
		float *yg = y + g * QUANT_ROW_GROUP;
		const uint8_t *x = xact;
#define Q4K_CALL(w) tile_q4_k(w, grp, nb, x + t * xs, xs, qoff, yg + t * ys, ys, mask)
		TILES(Q4K_TILE, Q4K_CALL);
#undef Q4K_CALL
	}
}
/* ---- Q6_K prefill: unpacked once per row group ------------------------------------ */
/*
 * The one-pass kernel above unpacks the 6-bit weights again for every
 * tile of 3 tokens, starts every sub-block sum of every token from -32 x
 * its activation sum (a scalar multiply and a broadcast each), and needs
 * one activation broadcast per VPDPBUSD; on Zen 5 the broadcasts (about
 * 1.2 a cycle against 2 VPDPBUSD) set its pace at ~225 GMAC/s per thread.
 * In prefill, two row groups' blocks are unpacked Q6K_CHUNK at a time into
 * an L1-resident buffer (weights as bytes 0..63, sub-block scales as
 * int32, the -32 offset folded into int16 scale pairs), which every tile
 * of 4 tokens then reads: each broadcast feeds two VPDPBUSD, and per
 * 16-element sub-block and token there is one VPMULLD and one add, plus
 * one VPDPWSSD per two sub-blocks for the offset.  `make bench-quant`
 * matmul64: 225 -> 270 GMAC/s per thread.
 */
struct q6k_unpacked {
	__m512i w[16][4];   /* sub-block s, bytes 4j..4j+3 of it: lane r = row r */
	__m512i sc[16];     /* lane r: scale of sub-block s of row r, int32 */
	__m512i off[8];     /* lane r: int16 pair -32 x (scale 2k, scale 2k+1) of row r */
	__m512 d;           /* lane r: row r's block scale */
};

#ifndef Q6K_CHUNK
#define Q6K_CHUNK 2
#endif
#ifndef Q6K_PTILE
#define Q6K_PTILE 4
#endif

INL void q6k_unpack(const uint8_t *grp, int64_t b, struct q6k_unpacked *u)
{
	const struct q6k_block blk = q6k_block_at(grp, b);
	const uint8_t *Q = blk.Q, *A = blk.A, *S = blk.S;
#pragma GCC unroll 2
	for (int h = 0; h < 2; h++)
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++) {
			__m512i w[4];
			q6k_weights(Q + (size_t)((h * 8 + j) * 3) * 64, w);
#pragma GCC unroll 4
			for (int c = 0; c < 4; c++)
				u->w[8 * h + 2 * c + (j >> 2)][j & 3] = w[c];
		}
#pragma GCC unroll 16
	for (int s = 0; s < 16; s++)
		u->sc[s] = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(A + 16 * s)));
#pragma GCC unroll 8
	for (int k = 0; k < 8; k++) {
		__m128i lo = _mm_loadu_si128((const __m128i *)(A + 32 * k));
		__m128i hi = _mm_loadu_si128((const __m128i *)(A + 32 * k + 16));
		__m256i pr = _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
		u->off[k] = _mm512_mullo_epi16(_mm512_cvtepi8_epi16(pr), _mm512_set1_epi16(-32));
	}
	u->d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)S));
}

/* Tokens x0.. (NT of them) against blocks b0..b0+n-1 of two row groups
 * unpacked in U (the second's blocks at U + Q6K_CHUNK, its rows at y +
 * 16); adds to y unless FIRST.  MASK is the second group's.  (Two groups
 * because each activation broadcast then feeds two VPDPBUSD: with one
 * group the broadcasts, not the multiply-adds, set the pace.) */
INL void tile_q6k_unpacked(const int NT, const struct q6k_unpacked *U, int n, int64_t b0, const uint8_t *x0,
			   size_t xs, int64_t nb, size_t qoff, float *y, int64_t ys, __mmask16 mask, int first)
{
	struct ak_row a[NT];
	__m512 acc0[NT], acc1[NT];
#pragma GCC unroll 32
	for (int t = 0; t < NT; t++) {
		a[t] = ak_row_at(x0 + (size_t)t * xs, nb, qoff);
		acc0[t] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(y + t * ys);
		acc1[t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, y + t * ys + QUANT_ROW_GROUP);
	}
	for (int i = 0; i < n; i++) {
		const int64_t b = b0 + i;
		const struct q6k_unpacked *u0 = U + i, *u1 = U + Q6K_CHUNK + i;
		__m512i is0[NT], is1[NT];
#pragma GCC unroll 32
		for (int t = 0; t < NT; t++)
			is0[t] = is1[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
		for (int k = 0; k < 8; k++)
#pragma GCC unroll 32
			for (int t = 0; t < NT; t++) {
				const __m512i bs = bcast4((const int8_t *)(a[t].b16 + 16 * b + 2 * k));
				is0[t] = _mm512_dpwssd_epi32(is0[t], u0->off[k], bs);
				is1[t] = _mm512_dpwssd_epi32(is1[t], u1->off[k], bs);
			}
#pragma GCC unroll 2
		for (int sb = 0; sb < 16; sb++) {
			__m512i s0[NT], s1[NT];
#pragma GCC unroll 32
			for (int t = 0; t < NT; t++)
				s0[t] = s1[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
			for (int j = 0; j < 4; j++) {
				const __m512i w0 = u0->w[sb][j], w1 = u1->w[sb][j];
#pragma GCC unroll 32
				for (int t = 0; t < NT; t++) {
					const __m512i xb = bcast4(a[t].q + 256 * b + 16 * sb + 4 * j);
					s0[t] = _mm512_dpbusd_epi32(s0[t], w0, xb);
					s1[t] = _mm512_dpbusd_epi32(s1[t], w1, xb);
				}
			}
#pragma GCC unroll 32
			for (int t = 0; t < NT; t++) {
				is0[t] = _mm512_add_epi32(is0[t], _mm512_mullo_epi32(s0[t], u0->sc[sb]));
				is1[t] = _mm512_add_epi32(is1[t], _mm512_mullo_epi32(s1[t], u1->sc[sb]));
			}
		}
#pragma GCC unroll 32
		for (int t = 0; t < NT; t++) {
			const __m512 xd = _mm512_set1_ps(a[t].d[b]);
			acc0[t] = _mm512_fmadd_ps(_mm512_mul_ps(u0->d, xd), _mm512_cvtepi32_ps(is0[t]), acc0[t]);
			acc1[t] = _mm512_fmadd_ps(_mm512_mul_ps(u1->d, xd), _mm512_cvtepi32_ps(is1[t]), acc1[t]);
		}
	}
#pragma GCC unroll 32
	for (int t = 0; t < NT; t++) {
		_mm512_storeu_ps(y + t * ys, acc0[t]);
		_mm512_mask_storeu_ps(y + t * ys + QUANT_ROW_GROUP, mask, acc1[t]);
	}
}

API void pmul_q6_k(const void *packed, size_t gb, int64_t g0, int64_t g1, int64_t rows, int64_t cols,
		   const void *xact, size_t xs, int64_t nt, float *y, int64_t ys)
{
	const int64_t nb = cols / 256;
	const size_t qoff = ((size_t)nb * 52 + 63) & ~(size_t)63;
	const uint8_t *x = xact;
	int64_t g = g0;
	if (nt >= Q6K_PTILE) {   /* prefill: pairs of groups, unpacked once */
		struct q6k_unpacked U[2 * Q6K_CHUNK];
		for (; g + 1 < g1; g += 2) {
			const uint8_t *grp = (const uint8_t *)packed + (size_t)g * gb;
			const __mmask16 mask = row_mask(g + 1, rows);
			float *yg = y + g * QUANT_ROW_GROUP;
			for (int64_t b0 = 0; b0 < nb; b0 += Q6K_CHUNK) {
				const int n = nb - b0 < Q6K_CHUNK ? (int)(nb - b0) : Q6K_CHUNK;
				for (int i = 0; i < n; i++) {
					q6k_unpack(grp, b0 + i, &U[i]);
					q6k_unpack(grp + gb, b0 + i, &U[Q6K_CHUNK + i]);
				}
#define Q6K_CALL(w) tile_q6k_unpacked(w, U, n, b0, x + t * xs, xs, nb, qoff, yg + t * ys, ys, mask, b0 == 0)
				TILES(Q6K_PTILE, Q6K_CALL);
#undef Q6K_CALL
			}
		}
	}
	for (; g < g1; g++) {   /* decode, and a last odd group */
		const uint8_t *grp = (const uint8_t *)packed + (size_t)g * gb;
		const __mmask16 mask = row_mask(g, rows);
		float *yg = y + g * QUANT_ROW_GROUP;
#define Q6K_CALL(w) tile_q6_k(w, grp, nb, x + t * xs, xs, qoff, yg + t * ys, ys, mask)
		TILES(Q6K_TILE, Q6K_CALL);
#undef Q6K_CALL
	}
}

/* ---- F16 ----------------------------------------------------------------------------------- */

INL void tile_f16(const int NT, const uint8_t *grp, int64_t nb, const uint8_t *x0, size_t xs,
		  float *y, int64_t ys, __mmask16 mask)
{
	/* two accumulators per token below 4 tokens, so there are always at
	 * least 4 independent FMA chains */
	const int NA = NT >= 4 ? 1 : 2;
	__m512 acc[NT][2];
	const float *x[NT];
#pragma GCC unroll 32
	for (int t = 0; t < NT; t++) {
		x[t] = (const float *)(const void *)(x0 + (size_t)t * xs);
		acc[t][0] = acc[t][1] = _mm512_setzero_ps();
	}
	for (int64_t b = 0; b < nb; b++) {
		const uint8_t *Q = grp + (size_t)b * 1024;   /* F16 units have no aux/sc: blocks are contiguous */
#pragma GCC unroll 32
		for (int k = 0; k < 32; k++) {
			if (NT == 1 && (k & 1) == 0)
				PREFETCH(Q + 32 * k);
			__m512 w = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(Q + 32 * k)));
#pragma GCC unroll 32
			for (int t = 0; t < NT; t++)
				acc[t][k % NA] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[t][32 * b + k]), acc[t][k % NA]);
		}
	}
#pragma GCC unroll 32
	for (int t = 0; t < NT; t++)
		_mm512_mask_storeu_ps(y + t * ys, mask, NA == 2 ? _mm512_add_ps(acc[t][0], acc[t][1]) : acc[t][0]);
}

#ifndef F16_TILE
#define F16_TILE 8
#endif

/* Prefill: two row groups (32 rows) against NT tokens, 2*NT accumulators.
 * Each broadcast activation feeds two FMAs and each converted weight
 * vector NT of them, so the loop is bound by the FMA units rather than by
 * loads (one group x 8 tokens needs a load per FMA). */
INL void tile_f16x2(const int NT, const uint8_t *g0p, const uint8_t *g1p, int64_t nb, const uint8_t *x0,
		    size_t xs, float *y, int64_t ys, __mmask16 mask1)
{
	__m512 a0[NT], a1[NT];
	const float *x[NT];
#pragma GCC unroll 32
	for (int t = 0; t < NT; t++) {
		x[t] = (const float *)(const void *)(x0 + (size_t)t * xs);
		a0[t] = a1[t] = _mm512_setzero_ps();
	}
	for (int64_t b = 0; b < nb; b++) {
		const uint8_t *Q0 = g0p + (size_t)b * 1024, *Q1 = g1p + (size_t)b * 1024;
#pragma GCC unroll 4
		for (int k = 0; k < 32; k++) {
			__m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(Q0 + 32 * k)));
			__m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(Q1 + 32 * k)));
#pragma GCC unroll 32
			for (int t = 0; t < NT; t++) {
				__m512 xv = _mm512_set1_ps(x[t][32 * b + k]);
				a0[t] = _mm512_fmadd_ps(w0, xv, a0[t]);
				a1[t] = _mm512_fmadd_ps(w1, xv, a1[t]);
			}
		}
	}
#pragma GCC unroll 32
	for (int t = 0; t < NT; t++) {
		_mm512_storeu_ps(y + t * ys, a0[t]);
		_mm512_mask_storeu_ps(y + t * ys + QUANT_ROW_GROUP, mask1, a1[t]);
	}
}

#ifndef F16X2_TILE
#define F16X2_TILE 12
#endif

API void pmul_f16(const void *packed, size_t gb, int64_t g0, int64_t g1, int64_t rows, int64_t cols,
		  const void *xact, size_t xs, int64_t nt, float *y, int64_t ys)
{
	const int64_t nb = cols / 32;
	int64_t g = g0;
	if (nt >= 4) {
		/* pairs of full groups (the second may be the partial last one) */
		for (; g + 1 < g1; g += 2) {
			const uint8_t *grp = (const uint8_t *)packed + (size_t)g * gb;
			const __mmask16 mask1 = row_mask(g + 1, rows);
			float *yg = y + g * QUANT_ROW_GROUP;
			const uint8_t *x = xact;
#define F16X2_CALL(w) tile_f16x2(w, grp, grp + gb, nb, x + t * xs, xs, yg + t * ys, ys, mask1)
			TILES(F16X2_TILE, F16X2_CALL);
#undef F16X2_CALL
		}
	}
	for (; g < g1; g++) {
		const uint8_t *grp = (const uint8_t *)packed + (size_t)g * gb;
		const __mmask16 mask = row_mask(g, rows);
		float *yg = y + g * QUANT_ROW_GROUP;
		const uint8_t *x = xact;
#define F16_CALL(w) tile_f16(w, grp, nb, x + t * xs, xs, yg + t * ys, ys, mask)
		TILES(F16_TILE, F16_CALL);
#undef F16_CALL
	}
}

quant_pmul_fn quant_pack_kernel_avx512(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_Q4_0: return pmul_q4_0;
	case GGML_TYPE_Q4_1: return pmul_q4_1;
	case GGML_TYPE_Q5_0: return pmul_q5_0;
	case GGML_TYPE_Q5_1: return pmul_q5_1;
	case GGML_TYPE_Q8_0: return pmul_q8_0;
	case GGML_TYPE_Q4_K: return pmul_q4_k;
	case GGML_TYPE_Q6_K: return pmul_q6_k;
	case GGML_TYPE_F16: return pmul_f16;
	default: return NULL;
	}
}

#else

quant_pmul_fn quant_pack_kernel_avx512(uint32_t type)
{
	(void)type;
	return NULL;
}

#endif
