/*
 * cuda_dequant.cuh - one 32-element unit of a row of every weight type,
 * dequantised exactly as the CPU engine's scalar reference does
 * (engine/quant.c), for the kernels of cuda_quant.cu.
 *
 * The unit is one block of Q4_0 .. Q8_0 or one eighth of a K-quant
 * super-block (units 8b .. 8b+7 share super-block b).  Every function is
 * __host__ __device__: the kernels call them on the GPU, and
 * tests/test_cuda_dequant checks them on the host against
 * quant_dequant_row() bit for bit, so the block layouts are verified on
 * machines without a GPU.  CU_FMUL/CU_FADD/CU_FSUB are the
 * round-to-nearest operations without fused multiply-add on the device
 * (__fmul_rn ...) and plain operators on the host (x86-64 without -mfma
 * has no fused multiply-add to contract into); CU_UNROLL unrolls on the
 * device only.
 */
#ifndef TTYCHAT_CUDA_DEQUANT_CUH
#define TTYCHAT_CUDA_DEQUANT_CUH

#include "cuda_impl.cuh"

#define CU_HD __host__ __device__ __forceinline__

#ifdef __CUDA_ARCH__
#define CU_UNROLL _Pragma("unroll")
#define CU_FMUL(a, b) __fmul_rn((a), (b))
#define CU_FADD(a, b) __fadd_rn((a), (b))
#define CU_FSUB(a, b) __fsub_rn((a), (b))
#else
#define CU_UNROLL
#define CU_FMUL(a, b) ((a) * (b))
#define CU_FADD(a, b) ((a) + (b))
#define CU_FSUB(a, b) ((a) - (b))
#endif

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. */
CU_HD void k4_scale(const uint8_t *s, int j, int *sc, int *mn)
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
CU_HD int q3k_scale(const uint8_t *s, int i)
{
	int lo = i < 8 ? (s[i] & 0xf) : (s[i - 8] >> 4);
	int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
	return (lo | (hi << 4)) - 32;
}

/* Elements 32*u .. 32*u+31 of a row of block type T, as floats. */
template <uint32_t T>
CU_HD void deq_unit(const uint8_t *__restrict__ row, int64_t u, float v[32])
{
	if constexpr (T == GGML_TYPE_Q4_0) {
		const uint8_t *b = row + u * 18;
		const float d = cu_ld_h(b);
		const uint8_t *qs = b + 2;
CU_UNROLL
		for (int j = 0; j < 16; j++) {
			v[j] = CU_FMUL((float)((qs[j] & 0xf) - 8), d);
			v[j + 16] = CU_FMUL((float)((qs[j] >> 4) - 8), d);
		}
	} else if constexpr (T == GGML_TYPE_Q4_1) {
		const uint8_t *b = row + u * 20;
		const float d = cu_ld_h(b), m = cu_ld_h(b + 2);
		const uint8_t *qs = b + 4;
CU_UNROLL
		for (int j = 0; j < 16; j++) {
			v[j] = CU_FADD(CU_FMUL((float)(qs[j] & 0xf), d), m);
			v[j + 16] = CU_FADD(CU_FMUL((float)(qs[j] >> 4), d), m);
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
CU_UNROLL
		for (int j = 0; j < 16; j++) {
			const int q0 = ((qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4)) - off;
			const int q1 = ((qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - off;
			if (has_m) {
				v[j] = CU_FADD(CU_FMUL((float)q0, d), m);
				v[j + 16] = CU_FADD(CU_FMUL((float)q1, d), m);
			} else {
				v[j] = CU_FMUL((float)q0, d);
				v[j + 16] = CU_FMUL((float)q1, d);
			}
		}
	} else if constexpr (T == GGML_TYPE_Q8_0) {
		const uint8_t *b = row + u * 34;
		const float d = cu_ld_h(b);
		const int8_t *qs = (const int8_t *)(b + 2);
CU_UNROLL
		for (int j = 0; j < 32; j++)
			v[j] = CU_FMUL((float)qs[j], d);
	} else if constexpr (T == GGML_TYPE_Q2_K) {
		/* element 128h + 32j + l of the super-block; sub = 4h + j */
		const uint8_t *b = row + (u >> 3) * 84;
		const int sub = (int)(u & 7), h = sub >> 2, j = sub & 3;
		const float d = cu_ld_h(b + 80), dmin = cu_ld_h(b + 82);
		const uint8_t *qs = b + 16 + 32 * h;
CU_UNROLL
		for (int hf = 0; hf < 2; hf++) {
			const uint8_t sc = b[2 * sub + hf];
			const float dl = CU_FMUL(d, (float)(sc & 0xf)), ml = CU_FMUL(dmin, (float)(sc >> 4));
CU_UNROLL
			for (int l = 16 * hf; l < 16 * hf + 16; l++)
				v[l] = CU_FSUB(CU_FMUL(dl, (float)((qs[l] >> (2 * j)) & 3)), ml);
		}
	} else if constexpr (T == GGML_TYPE_Q3_K) {
		/* hmask[32] qs[64] scales[12] d; the CPU's "- dmin*min" is an
		 * exact "- 0" here */
		const uint8_t *b = row + (u >> 3) * 110;
		const int sub = (int)(u & 7), h = sub >> 2, j = sub & 3;
		const float d = cu_ld_h(b + 108);
		const uint8_t *hm = b, *qs = b + 32 + 32 * h, *sc = b + 96;
CU_UNROLL
		for (int hf = 0; hf < 2; hf++) {
			const float dl = CU_FMUL(d, (float)q3k_scale(sc, 2 * sub + hf));
CU_UNROLL
			for (int l = 16 * hf; l < 16 * hf + 16; l++) {
				const int lo = (qs[l] >> (2 * j)) & 3;
				const int hi = (hm[l] >> sub) & 1;
				v[l] = CU_FMUL(dl, (float)(lo - (hi ? 0 : 4)));
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
		const float dl = CU_FMUL(d, (float)sc), ml = CU_FMUL(dmin, (float)mn);
		const uint8_t *qh = b + 16, *qs = b + (five ? 48 : 16) + 32 * c;
CU_UNROLL
		for (int l = 0; l < 32; l++) {
			int q = (qs[l] >> shift) & 0xf;
			if (five)
				q |= ((qh[l] >> sub) & 1) << 4;
			v[l] = CU_FSUB(CU_FMUL(dl, (float)q), ml);
		}
	} else if constexpr (T == GGML_TYPE_Q6_K) {
		/* ql[128] qh[64] scales[16] d; element 128h + 32k + l */
		const uint8_t *b = row + (u >> 3) * 210;
		const int sub = (int)(u & 7), h = sub >> 2, k = sub & 3;
		const float d = cu_ld_h(b + 208);
		const uint8_t *ql = b + 64 * h + 32 * (k & 1), *qh = b + 128 + 32 * h;
		const int8_t *scales = (const int8_t *)(b + 192);
CU_UNROLL
		for (int hf = 0; hf < 2; hf++) {
			const float dl = CU_FMUL(d, (float)scales[8 * h + 2 * k + hf]);
CU_UNROLL
			for (int l = 16 * hf; l < 16 * hf + 16; l++) {
				const int lo = (k >> 1) ? (ql[l] >> 4) : (ql[l] & 0xf);
				const int hi = (qh[l] >> (2 * k)) & 3;
				v[l] = CU_FMUL(dl, (float)((lo | (hi << 4)) - 32));
			}
		}
	}
}

/* Element i of a float-type row. */
template <uint32_t T>
CU_HD float deq_elem(const uint8_t *__restrict__ row, int64_t i)
{
	if constexpr (T == GGML_TYPE_F32)
		return ((const float *)row)[i];
	else if constexpr (T == GGML_TYPE_F16)
		return cu_h2f(((const uint16_t *)row)[i]);
	else
		return cu_bf2f(((const uint16_t *)row)[i]);
}

#endif
