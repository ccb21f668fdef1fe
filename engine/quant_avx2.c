/*
 * quant_avx2.c - the AVX2 + FMA + F16C level of the quant kernels.
 *
 * The kernels themselves live in quant_x86.h, shared with the AVX-512
 * level; this file instantiates them with per-function target attributes
 * (the rest of the build stays plain x86-64) and lists them per type.  On
 * other architectures it provides an empty table.
 */
#include "quant_impl.h"

#include "gguf.h"
#include "quant_iq.h"

#if QUANT_X86

#define QX_TARGET "avx2,fma,f16c"
#define QX(name) name##_avx2
#define QX_VNNI 0
#include "quant_x86.h"

#define KERN(sfx, act) { NULL, act, QX(dot_##sfx), NULL, QX(matmul_##sfx) }

static const struct quant_kern k_q4_0 = KERN(q4_0, QX(act_q8_0));
static const struct quant_kern k_q4_1 = KERN(q4_1, QX(act_q8_1));
static const struct quant_kern k_q5_0 = KERN(q5_0, QX(act_q8_0));
static const struct quant_kern k_q5_1 = KERN(q5_1, QX(act_q8_1));
static const struct quant_kern k_q8_0 = KERN(q8_0, QX(act_q8_0));
static const struct quant_kern k_q2_k = KERN(q2_k, QX(act_q8_k));
static const struct quant_kern k_q3_k = KERN(q3_k, QX(act_q8_k));
static const struct quant_kern k_q4_k = KERN(q4_k, QX(act_q8_k));
static const struct quant_kern k_q5_k = KERN(q5_k, QX(act_q8_k));
static const struct quant_kern k_q6_k = KERN(q6_k, QX(act_q8_k));
static const struct quant_kern k_f32 = { NULL, NULL, QX(dot_f32), NULL, NULL };
static const struct quant_kern k_f16 = { QX(dequant_f16), QX(act_f16), QX(dot_f16), NULL, NULL };
static const struct quant_kern k_bf16 = { NULL, NULL, QX(dot_bf16), NULL, NULL };

const struct quant_kern *quant_kern_avx2(uint32_t type)
{
	switch (type) {
	case GGML_TYPE_F32: return &k_f32;
	case GGML_TYPE_F16: return &k_f16;
	case GGML_TYPE_BF16: return &k_bf16;
	case GGML_TYPE_Q4_0: return &k_q4_0;
	case GGML_TYPE_Q4_1: return &k_q4_1;
	case GGML_TYPE_Q5_0: return &k_q5_0;
	case GGML_TYPE_Q5_1: return &k_q5_1;
	case GGML_TYPE_Q8_0: return &k_q8_0;
	case GGML_TYPE_Q2_K: return &k_q2_k;
	case GGML_TYPE_Q3_K: return &k_q3_k;
	case GGML_TYPE_Q4_K: return &k_q4_k;
	case GGML_TYPE_Q5_K: return &k_q5_k;
	case GGML_TYPE_Q6_K: return &k_q6_k;
	QUANT_IQ_CASES return quant_iq_kern_avx2(type);
	QUANT_NL_CASES: return quant_kern_nl_avx2(type);
	default: return NULL;
	}
}

#else

const struct quant_kern *quant_kern_avx2(uint32_t type)
{
	(void)type;
	return NULL;
}

#endif
