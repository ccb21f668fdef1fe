/*
 * model.c - from a validated GGUF file to a struct model.
 *
 * The GGUF reader has already checked that every tensor lies inside the file
 * with a consistent size; here we check that the tensors are the ones the
 * architecture needs, with the shapes the hyper-parameters imply, in types
 * the kernels can compute with.  Every check happens before anything large
 * is allocated: the only allocations are the layer table and a few small f32
 * copies of norm weights and biases stored as F16/BF16.
 *
 * Tensor names and metadata keys follow the GGUF conventions of llama.cpp
 * ("blk.N.attn_q.weight", "<arch>.attention.head_count", ...).
 *
 * Families are rows of arch_table: a name, the rope style, the gated
 * activation, the router's gating and a set of AF_ flags naming the blocks
 * and rules the family's layers use (biases, per-head norms, post-norms,
 * sliding windows, mixture of experts, granite's scales, ...).  A family
 * made of known blocks is one row; a new kind of block is a flag here, a
 * field in struct layer or struct hparams, and a step of the pass that
 * reads it.  Every tensor of the file must be read by some block: one that
 * is not would change the computation if llama.cpp read it, so the file is
 * refused naming it (the blocks of multi-token prediction are the one
 * known exception: skipped, as llama.cpp skips them).
 */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "engine.h"
#include "quant.h"

/* What each family's layers hold, as flags: load_hparams() and
 * load_tensors() read this table, never the family's name, so a family
 * made of known blocks is one row here (and its template, tokenizer and
 * tests).  The forward pass reads the result, struct model. */
enum {
	AF_QKV_BIAS = 1 << 0,   /* attn_q/k/v.bias required (qwen2; optional for all) */
	AF_QK_NORM = 1 << 1,    /* per-head attn_q_norm / attn_k_norm */
	AF_FUSED = 1 << 2,      /* attn_qkv (optional) and ffn_up holding gate|up (phi3) */
	AF_GEMMA = 1 << 3,      /* post-norms, embeddings * sqrt(n_embd), GELU, sliding
				 * window and its rope base, logit soft-capping */
	AF_LONGROPE = 1 << 4,   /* rope_factors_long / _short */
	AF_MOE = 1 << 5,        /* every layer's FFN a mixture of experts */
	AF_OSS = 1 << 6,        /* gpt-oss: attention output bias, attention sinks,
				 * biases on the router and experts, sliding window on
				 * every other layer sharing the global rope */
	AF_NOPE4 = 1 << 7,      /* every 4th layer without rope (smollm3) */
	AF_GRANITE = 1 << 8,    /* logit, residual, embedding and attention scales;
				 * rope.scaling.finetuned false: no rope at all */
	AF_ATTN_TEMP = 1 << 9,  /* attention.temperature_scale (mistral3) */
	AF_OUT_BIAS = 1 << 10,  /* an optional attention output bias */
	AF_IMROPE = 1 << 11,    /* Qwen3-VL's rope sections (text: see hparams.imrope) */
	AF_MOE_KEYS = 1 << 12,  /* routing from the file: expert_gating_func,
				 * expert_weights_norm / _scale, shared experts by count,
				 * leading dense layers, a selection bias (glm4moe) */
	AF_POST_ATTN_NORM = 1 << 13, /* the FFN norm stored as post_attention_norm */
	AF_GDN = 1 << 14,       /* qwen35: Gated DeltaNet layers between gated attention
				 * layers (every full_attention_interval-th, or the file's
				 * attention.recurrent_layers) */
	AF_SHORTCONV = 1 << 16, /* lfm2: short-convolution layers where the per-layer
				 * attention.head_count_kv is 0, the output norm stored as
				 * token_embd_norm, an optional window on the attention layers */
	AF_SHEXP = 1 << 15,     /* qwen35moe: a shared expert (expert_shared_feed_forward_length,
				 * default feed_forward_length) weighed by a sigmoid gate */
	AF_GEMMA4 = 1 << 17,    /* Gemma 4's block: shapes by layer, shared K/V, V as K,
				 * per-layer inputs, experts beside the dense FFN
				 * (load_gemma4_*; the rows' other flags still apply) */
};

static const struct arch_desc {
	const char *name;
	enum arch arch;
	enum rope_style rope;
	unsigned flags;
	enum ffn_act act;
	enum moe_gating gating;  /* AF_MOE */
	bool norm_w;             /* AF_MOE: renormalise the chosen weights */
} arch_table[] = {
	{"llama", ARCH_LLAMA, ROPE_NORM, 0, ACT_SILU, 0, false},
	{"qwen2", ARCH_QWEN2, ROPE_NEOX, AF_QKV_BIAS, ACT_SILU, 0, false},
	{"qwen3", ARCH_QWEN3, ROPE_NEOX, AF_QK_NORM, ACT_SILU, 0, false},
	{"phi3", ARCH_PHI3, ROPE_NEOX, AF_FUSED | AF_LONGROPE, ACT_SILU, 0, false},
	{"gemma3", ARCH_GEMMA3, ROPE_NEOX, AF_QK_NORM | AF_GEMMA, ACT_GELU, 0, false},
	{"qwen3moe", ARCH_QWEN3MOE, ROPE_NEOX, AF_QK_NORM | AF_MOE, ACT_SILU, MOE_SOFTMAX, true},
	{"gpt-oss", ARCH_GPT_OSS, ROPE_NEOX, AF_MOE | AF_OSS | AF_POST_ATTN_NORM, ACT_SWIGLU_OAI, MOE_SOFTMAX_WEIGHT, false},
	{"smollm3", ARCH_SMOLLM3, ROPE_NORM, AF_NOPE4, ACT_SILU, 0, false},
	{"granite", ARCH_GRANITE, ROPE_NORM, AF_GRANITE | AF_OUT_BIAS, ACT_SILU, 0, false},
	{"granitemoe", ARCH_GRANITEMOE, ROPE_NORM, AF_GRANITE | AF_OUT_BIAS | AF_MOE, ACT_SILU, MOE_SOFTMAX, true},
	{"mistral3", ARCH_MISTRAL3, ROPE_NORM, AF_ATTN_TEMP | AF_OUT_BIAS, ACT_SILU, 0, false},
	{"qwen3vl", ARCH_QWEN3VL, ROPE_NEOX, AF_QK_NORM | AF_IMROPE, ACT_SILU, 0, false},
	{"qwen3vlmoe", ARCH_QWEN3VLMOE, ROPE_NEOX, AF_QK_NORM | AF_IMROPE | AF_MOE, ACT_SILU, MOE_SOFTMAX, true},
	{"glm4moe", ARCH_GLM4MOE, ROPE_NEOX, AF_MOE | AF_MOE_KEYS | AF_POST_ATTN_NORM, ACT_SILU, MOE_SIGMOID, false},
	{"qwen35", ARCH_QWEN35, ROPE_NEOX, AF_QK_NORM | AF_IMROPE | AF_POST_ATTN_NORM | AF_GDN, ACT_SILU, 0, false},
	{"lfm2", ARCH_LFM2, ROPE_NEOX, AF_QK_NORM | AF_SHORTCONV, ACT_SILU, 0, false},
	{"lfm2moe", ARCH_LFM2MOE, ROPE_NEOX, AF_QK_NORM | AF_SHORTCONV | AF_MOE | AF_MOE_KEYS, ACT_SILU, MOE_SIGMOID, true},
	{"qwen35moe", ARCH_QWEN35MOE, ROPE_NEOX, AF_QK_NORM | AF_IMROPE | AF_POST_ATTN_NORM | AF_GDN | AF_MOE | AF_SHEXP,
	 ACT_SILU, MOE_SOFTMAX, true},
	{"gemma4", ARCH_GEMMA4, ROPE_NEOX, AF_QK_NORM | AF_GEMMA | AF_GEMMA4, ACT_GELU, MOE_SOFTMAX, true},
};

const float *model_rope_factors(const struct model *m, uint32_t n_ctx)
{
	if (m->rope_freqs.data)
		return m->rope_freqs.data;
	if (m->rope_long.data && n_ctx > m->hp.n_ctx_orig)
		return m->rope_long.data;
	return m->rope_short.data;
}

const char *arch_name(enum arch a)
{
	for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
		if (arch_table[i].arch == a)
			return arch_table[i].name;
	return "?";
}

struct loader {
	struct model *m;
	char *err;
	size_t errlen;
	const char *path;
	const struct arch_desc *desc;
	uint8_t *seen;      /* [n_tensors]: looked up by the loader (all must be) */
	bool rope_off;      /* granite with rope.scaling.finetuned false */
	uint32_t n_layer_all; /* block_count: n_layer plus the nextn blocks */
	uint32_t k_swa, rot_swa, n_kv_shared;  /* gemma4's sliding-window head size, rope dims, shared-KV layers */
	/* small f32 vectors converted from F16/BF16 go here */
	size_t owned_used, owned_cap;
};

static int fail(struct loader *L, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct loader *L, int code, const char *fmt, ...)
{
	if (L->errlen == 0)
		return code;
	int n = snprintf(L->err, L->errlen, "%s: ", L->path);
	if (n < 0 || (size_t)n >= L->errlen)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(L->err + n, L->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return code;
}

/* Key "<arch>.<suffix>" as an unsigned integer. */
static bool get_arch_uint(struct loader *L, const char *suffix, uint64_t *out)
{
	char key[128];
	snprintf(key, sizeof key, "%s.%s", L->m->arch_name, suffix);
	return gguf_get_uint(L->m->gguf, key, out);
}

static bool get_arch_f32(struct loader *L, const char *suffix, float *out)
{
	char key[128];
	snprintf(key, sizeof key, "%s.%s", L->m->arch_name, suffix);
	return gguf_get_f32(L->m->gguf, key, out);
}

/* "<arch>.<suffix>" into *out, checked against [lo, hi]; a missing key is
 * an error when REQUIRED, else leaves *out alone. */
static int read_u32(struct loader *L, const char *suffix, uint32_t *out, uint32_t lo, uint32_t hi,
		    bool required)
{
	uint64_t v;
	if (!get_arch_uint(L, suffix, &v))
		return required ? fail(L, ENGINE_E_FORMAT, "key '%s.%s': missing or not an integer",
				       L->m->arch_name, suffix)
				: 0;
	if (v < lo || v > hi)
		return fail(L, ENGINE_E_FORMAT, "key '%s.%s': %llu outside [%u, %u]",
			    L->m->arch_name, suffix, (unsigned long long)v, lo, hi);
	*out = (uint32_t)v;
	return 0;
}

static int need_u32(struct loader *L, const char *suffix, uint32_t *out, uint32_t lo, uint32_t hi)
{
	return read_u32(L, suffix, out, lo, hi, true);
}

static int opt_u32(struct loader *L, const char *suffix, uint32_t *out, uint32_t lo, uint32_t hi)
{
	return read_u32(L, suffix, out, lo, hi, false);
}

static int opt_f32(struct loader *L, const char *suffix, float *out, float lo, float hi);

static int need_f32(struct loader *L, const char *suffix, float *out, float lo, float hi)
{
	float v;
	if (!get_arch_f32(L, suffix, &v))
		return fail(L, ENGINE_E_FORMAT, "key '%s.%s': missing or not a number", L->m->arch_name, suffix);
	return opt_f32(L, suffix, out, lo, hi);
}

static int opt_f32(struct loader *L, const char *suffix, float *out, float lo, float hi)
{
	float v;
	if (!get_arch_f32(L, suffix, &v))
		return 0;
	if (!(v >= lo && v <= hi))
		return fail(L, ENGINE_E_FORMAT, "key '%s.%s': %g outside [%g, %g]",
			    L->m->arch_name, suffix, (double)v, (double)lo, (double)hi);
	*out = v;
	return 0;
}

static const struct gguf_tensor *find(struct loader *L, const char *fmt, int il)
{
	char name[96];
	if (il >= 0)
		snprintf(name, sizeof name, fmt, il);
	else
		snprintf(name, sizeof name, "%s", fmt);
	const struct gguf_tensor *t = gguf_find_tensor(L->m->gguf, name);
	if (t)
		L->seen[t - gguf_tensor_at(L->m->gguf, 0)] = 1;
	return t;
}

static void tensor_name(char *buf, size_t n, const char *fmt, int il)
{
	if (il >= 0)
		snprintf(buf, n, fmt, il);
	else
		snprintf(buf, n, "%s", fmt);
}

/* A 2-D weight with ne[0] == cols and ne[1] == rows, or (n_mat > 0) a
 * stack of n_mat of them (ne = [cols, rows, n_mat]): the experts of a
 * mixture. */
static int get_weight_n(struct loader *L, struct weight *w, const char *fmt, int il, int64_t cols,
			int64_t rows, uint32_t n_mat, bool required)
{
	char name[96];
	tensor_name(name, sizeof name, fmt, il);
	const struct gguf_tensor *t = find(L, fmt, il);
	memset(w, 0, sizeof *w);
	if (!t) {
		if (required)
			return fail(L, ENGINE_E_FORMAT, "tensor '%s' is missing", name);
		return 0;
	}
	if (n_mat == 0 && (t->n_dims > 2 || (int64_t)t->ne[0] != cols || (int64_t)t->ne[1] != rows))
		return fail(L, ENGINE_E_FORMAT,
			    "tensor '%s' has shape [%llu, %llu], expected [%lld, %lld]", name,
			    (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
			    (long long)cols, (long long)rows);
	if (n_mat > 0 && (t->n_dims != 3 || (int64_t)t->ne[0] != cols || (int64_t)t->ne[1] != rows || t->ne[2] != n_mat))
		return fail(L, ENGINE_E_FORMAT,
			    "tensor '%s' has shape [%llu, %llu, %llu], expected [%lld, %lld, %u]", name,
			    (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
			    (unsigned long long)t->ne[2], (long long)cols, (long long)rows, n_mat);
	if (!quant_supported(t->type))
		return fail(L, ENGINE_E_FORMAT, "tensor '%s' has type %s, which ttychat cannot compute with",
			    name, ggml_type_name(t->type));
	w->data = t->data;
	w->type = t->type;
	w->rows = rows;
	w->cols = cols;
	w->row_bytes = ggml_row_bytes(t->type, (uint64_t)cols);
	w->n_mat = n_mat ? n_mat : 1;
	L->m->n_params += t->n_elements;
	return 0;
}

static int get_weight(struct loader *L, struct weight *w, const char *fmt, int il, int64_t cols, int64_t rows,
		      bool required)
{
	return get_weight_n(L, w, fmt, il, cols, rows, 0, required);
}

static int get_weight3(struct loader *L, struct weight *w, const char *fmt, int il, int64_t cols,
		       int64_t rows, uint32_t n)
{
	return get_weight_n(L, w, fmt, il, cols, rows, n, true);
}

/* Sizes the f32 arena: the total of every 1-D tensor that is not F32. */
static size_t vec_bytes_needed(const gguf_file *f)
{
	size_t total = 0;
	for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
		const struct gguf_tensor *t = gguf_tensor_at(f, i);
		/* vectors, and the 2-D bias tables of experts */
		const bool bias = t->name.len > 5 && memcmp(t->name.ptr + t->name.len - 5, ".bias", 5) == 0;
		const bool conv = (t->name.len > 17 && memcmp(t->name.ptr + t->name.len - 17, "ssm_conv1d.weight", 17) == 0) ||
				  (t->name.len > 21 && memcmp(t->name.ptr + t->name.len - 21, "shortconv.conv.weight", 21) == 0);
		if ((t->n_dims == 1 || (t->n_dims == 2 && (bias || conv))) && t->type != GGML_TYPE_F32)
			total += t->n_elements * sizeof(float);
	}
	return total;
}

/* A vector of n0 (rows == 0) or a [rows][n0] table of them, e.g. the
 * experts' biases, as f32. */
static int get_vec2(struct loader *L, struct vec *v, const char *fmt, int il, int64_t n0, int64_t rows,
		    bool required)
{
	char name[96];
	tensor_name(name, sizeof name, fmt, il);
	const struct gguf_tensor *t = find(L, fmt, il);
	memset(v, 0, sizeof *v);
	if (!t) {
		if (required)
			return fail(L, ENGINE_E_FORMAT, "tensor '%s' is missing", name);
		return 0;
	}
	const int64_t n = rows ? n0 * rows : n0;
	if (t->n_dims != (rows ? 2u : 1u) || (int64_t)t->ne[0] != n0 || (rows && (int64_t)t->ne[1] != rows)) {
		if (rows)
			return fail(L, ENGINE_E_FORMAT, "tensor '%s' has shape [%llu, %llu], expected [%lld, %lld]", name,
				    (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (long long)n0,
				    (long long)rows);
		return fail(L, ENGINE_E_FORMAT, "tensor '%s' has %llu elements in %u dims, expected %lld",
			    name, (unsigned long long)t->n_elements, t->n_dims, (long long)n);
	}
	L->m->n_params += t->n_elements;
	if (t->type == GGML_TYPE_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
		v->data = t->data;
		v->n = n;
		return 0;
	}
	if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16)
		return fail(L, ENGINE_E_FORMAT, "tensor '%s' has type %s; a vector must be F32, F16 or BF16",
			    name, ggml_type_name(t->type));
	size_t need = (size_t)n * sizeof(float);
	if (L->owned_used + need > L->owned_cap)
		return fail(L, ENGINE_E_FORMAT, "tensor '%s': internal arena overflow", name);
	float *dst = (float *)((char *)L->m->owned_f32 + L->owned_used);
	L->owned_used += need;
	quant_dequant_row(t->type, t->data, dst, n);
	v->data = dst;
	v->n = n;
	return 0;
}

static int get_vec(struct loader *L, struct vec *v, const char *fmt, int il, int64_t n, bool required)
{
	return get_vec2(L, v, fmt, il, n, 0, required);
}

static const char *dominant_type(const gguf_file *f)
{
	uint64_t bytes[GGML_TYPE_COUNT] = {0};
	for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
		const struct gguf_tensor *t = gguf_tensor_at(f, i);
		if (t->n_dims >= 2 && t->type < GGML_TYPE_COUNT)
			bytes[t->type] += t->size;
	}
	uint32_t best = 0;
	for (uint32_t ty = 0; ty < GGML_TYPE_COUNT; ty++)
		if (bytes[ty] > bytes[best])
			best = ty;
	return ggml_type_name(best);
}

/* YaRN's attention scale for a context extended FACTOR times. */
static float yarn_mscale(float factor, float m)
{
	return factor <= 1.0f ? 1.0f : 0.1f * m * logf(factor) + 1.0f;
}

static bool arch_key_present(struct loader *L, const char *suffix)
{
	char key[128];
	snprintf(key, sizeof key, "%s.%s", L->m->arch_name, suffix);
	return gguf_find_key(L->m->gguf, key) >= 0;
}

/* rope.scaling.type as llama.cpp names it; an absent key means linear. */
static int rope_scaling_type(struct loader *L, int *type)
{
	static const char *const names[] = {"none", "linear", "yarn", "longrope"};
	char key[128];
	struct gguf_str st;
	*type = 1;
	snprintf(key, sizeof key, "%s.rope.scaling.type", L->m->arch_name);
	if (!gguf_get_str(L->m->gguf, key, &st))
		return arch_key_present(L, "rope.scaling.type")
			       ? fail(L, ENGINE_E_FORMAT, "key '%s': not a string", key)
			       : 0;
	for (int i = 0; i < 4; i++)
		if (gguf_str_eq(st, names[i])) {
			*type = i;
			return 0;
		}
	return fail(L, ENGINE_E_FORMAT, "key '%s': rope scaling '%.*s' is not supported", key, (int)st.len,
		    st.ptr);
}

/* Base, position scale and YaRN parameters, as llama.cpp derives its
 * context's rope parameters from the file (llama_context's constructor):
 * the attention factor of YaRN is folded in here, except the factor
 * 1 + 0.1 ln(1/scale) that ggml's rope applies itself (forward.c). */
static int load_rope(struct loader *L)
{
	struct hparams *hp = &L->m->hp;
	int type, rc;
	float factor = 0.0f, attn_factor = 1.0f, ext = -1.0f, log_mul = 0.0f;

	hp->rope_base = 10000.0f;
	hp->n_ctx_orig = hp->n_ctx_train;
	hp->yarn_beta_fast = 32.0f;
	hp->yarn_beta_slow = 1.0f;
	hp->rope_mscale = 1.0f;
	if ((rc = opt_f32(L, "rope.freq_base", &hp->rope_base, 1.0f, 1e12f)) ||
	    (rc = rope_scaling_type(L, &type)) ||
	    (rc = opt_f32(L, "rope.scaling.factor", &factor, 0.0f, 1e6f)) ||
	    (!arch_key_present(L, "rope.scaling.factor") &&
	     (rc = opt_f32(L, "rope.scale_linear", &factor, 0.0f, 1e6f))) ||
	    (rc = opt_f32(L, "rope.scaling.attn_factor", &attn_factor, 0.0f, 1e3f)) ||
	    (rc = opt_u32(L, "rope.scaling.original_context_length", &hp->n_ctx_orig, 1, 1u << 24)) ||
	    (rc = opt_f32(L, "rope.scaling.yarn_beta_fast", &hp->yarn_beta_fast, 0.0f, 1e6f)) ||
	    (rc = opt_f32(L, "rope.scaling.yarn_beta_slow", &hp->yarn_beta_slow, 0.0f, 1e6f)) ||
	    (rc = opt_f32(L, "rope.scaling.yarn_ext_factor", &ext, 0.0f, 1e3f)) ||
	    (rc = opt_f32(L, "rope.scaling.yarn_attn_factor", &hp->rope_mscale, 0.0f, 1e3f)) ||
	    (rc = opt_f32(L, "rope.scaling.yarn_log_multiplier", &log_mul, 0.0f, 1e3f)))
		return rc;
	hp->rope_base_swa = hp->rope_base;
	hp->rope_scale = (factor == 0.0f || type == 0) ? 1.0f : 1.0f / factor;
	if (ext < 0.0f)
		ext = type == 2 ? 1.0f : 0.0f;
	hp->rope_ext_factor = ext;
	if (ext != 0.0f) {
		const float f = 1.0f / hp->rope_scale;
		hp->rope_mscale = log_mul != 0.0f ? yarn_mscale(f, 1.0f) / yarn_mscale(f, log_mul)
						  : yarn_mscale(f, 1.0f);
		hp->rope_mscale *= 1.0f / (1.0f + 0.1f * logf(f));
	}
	hp->rope_mscale *= attn_factor;
	return 0;
}

/* The mixture of experts of an AF_MOE family: expert counts and the
 * experts' FFN width (llama.cpp falls back to n_ff / n_expert_used when
 * expert_feed_forward_length is absent), gating as the table says. */
static int load_moe(struct loader *L)
{
	struct hparams *hp = &L->m->hp;
	int rc;

	hp->moe_w_scale = 1.0f;
	if (!(L->desc->flags & AF_MOE))
		return 0;
	if ((rc = need_u32(L, "expert_count", &hp->n_expert, 1, 4096)) ||
	    (rc = need_u32(L, "expert_used_count", &hp->n_expert_used, 1, hp->n_expert)))
		return rc;
	if (hp->n_expert_used > 64)
		return fail(L, ENGINE_E_FORMAT, "key '%s.expert_used_count': %u experts per token (at most 64 are supported)",
			    L->m->arch_name, hp->n_expert_used);
	hp->n_ff_exp = hp->n_ff / hp->n_expert_used;
	/* granitemoe's experts are feed_forward_length wide (llama.cpp reads
	 * no other key for it) */
	if (L->desc->flags & AF_GRANITE)
		hp->n_ff_exp = hp->n_ff;
	else if ((rc = opt_u32(L, "expert_feed_forward_length", &hp->n_ff_exp, 1, 1u << 20)))
		return rc;
	if (hp->n_ff_exp == 0)
		return fail(L, ENGINE_E_FORMAT, "key '%s.expert_feed_forward_length': missing", L->m->arch_name);
	hp->moe_gating = L->desc->gating;
	hp->moe_norm_w = L->desc->norm_w;
	/* a shared expert beside the routed ones (granitemoe) */
	if ((L->desc->flags & AF_GRANITE) &&
	    (rc = opt_u32(L, "expert_shared_feed_forward_length", &hp->n_ff_shexp, 0, 1u << 20)))
		return rc;
	/* expert groups: llama.cpp reads these for every family */
	if ((rc = opt_u32(L, "expert_group_count", &hp->n_expert_groups, 0, hp->n_expert)) ||
	    (rc = opt_u32(L, "expert_group_used_count", &hp->n_group_used, 0, hp->n_expert)))
		return rc;
	if (hp->n_expert_groups > 1 &&
	    (hp->n_expert_groups > 256 || hp->n_expert % hp->n_expert_groups != 0 || hp->n_group_used == 0 ||
	     hp->n_group_used > hp->n_expert_groups ||
	     hp->n_group_used * (hp->n_expert / hp->n_expert_groups) < hp->n_expert_used ||
	     hp->n_expert / hp->n_expert_groups < 2))
		return fail(L, ENGINE_E_FORMAT, "keys '%s.expert_group_*': %u groups, %u used, of %u experts (%u chosen) do not fit",
			    L->m->arch_name, hp->n_expert_groups, hp->n_group_used, hp->n_expert, hp->n_expert_used);
	if (L->desc->flags & AF_MOE_KEYS) {
		uint32_t func = 0, n_shared = 0;
		bool norm = hp->moe_norm_w;
		float scale = 0.0f;
		char key[128];
		if ((rc = opt_u32(L, "expert_gating_func", &func, 0, 3)) ||
		    (rc = opt_u32(L, "expert_shared_count", &n_shared, 0, 64)) ||
		    (rc = opt_u32(L, "leading_dense_block_count", &hp->n_dense_lead, 0, hp->n_layer)) ||
		    (rc = opt_f32(L, "expert_weights_scale", &scale, 0.0f, 1e6f)))
			return rc;
		snprintf(key, sizeof key, "%s.expert_weights_norm", L->m->arch_name);
		if (gguf_find_key(L->m->gguf, key) >= 0 && !gguf_get_bool(L->m->gguf, key, &norm))
			return fail(L, ENGINE_E_FORMAT, "key '%s': not a bool", key);
		hp->moe_norm_w = norm;
		if (scale != 0.0f)
			hp->moe_w_scale = scale;
		/* llama_expert_gating_func_type: 0 none (the family's), 1 softmax,
		 * 2 sigmoid, 3 softmax over the chosen */
		if (func == 1)
			hp->moe_gating = MOE_SOFTMAX;
		else if (func == 2)
			hp->moe_gating = MOE_SIGMOID;
		else if (func == 3)
			hp->moe_gating = MOE_SOFTMAX_WEIGHT;
		hp->n_ff_shexp = hp->n_ff_exp * n_shared;
	}
	/* expert_weights_scale, _norm, the gating function: the families
	 * that read them (AF_MOE_KEYS) below; llama.cpp ignores them for the
	 * others */
	return 0;
}

bool model_recurrent_layers(const gguf_file *g, const char *arch, uint32_t n_layer, uint32_t interval, bool *rec)
{
	char key[128];
	uint64_t n;
	const void *data;
	size_t size = 1;

	snprintf(key, sizeof key, "%s.attention.recurrent_layers", arch);
	if (gguf_find_key(g, key) < 0) {
		for (uint32_t i = 0; i < n_layer; i++)
			rec[i] = (i + 1) % interval != 0;
		return true;
	}
	if (!gguf_get_arr(g, key, GGUF_VT_BOOL, &n, &data)) {
		if (!gguf_get_arr(g, key, GGUF_VT_INT32, &n, &data))
			return false;
		size = 4;
	}
	if (n < n_layer)
		return false;
	for (uint32_t i = 0; i < n_layer; i++) {
		int32_t v = 0;
		memcpy(&v, (const char *)data + (size_t)i * size, size);
		rec[i] = v != 0;
	}
	return true;
}

/* The Gated DeltaNet layers of an AF_GDN family: their sizes, and which
 * layers they are (llama.cpp's rule: the file's attention.recurrent_layers,
 * else every layer but each full_attention_interval-th, default 4). */
static int load_gdn(struct loader *L)
{
	struct hparams *hp = &L->m->hp;
	uint32_t inner, interval = 4;
	int rc;

	if (!(L->desc->flags & AF_GDN))
		return 0;
	if ((rc = need_u32(L, "ssm.conv_kernel", &hp->ssm_conv_k, 2, 64)) ||
	    (rc = need_u32(L, "ssm.inner_size", &inner, 1, 1u << 20)) ||
	    (rc = need_u32(L, "ssm.state_size", &hp->ssm_state, 1, 1024)) ||
	    (rc = need_u32(L, "ssm.time_step_rank", &hp->ssm_heads_v, 1, 1024)) ||
	    (rc = need_u32(L, "ssm.group_count", &hp->ssm_heads_k, 1, 1024)) ||
	    (rc = opt_u32(L, "full_attention_interval", &interval, 1, 1024)))
		return rc;
	if (hp->ssm_heads_v % hp->ssm_heads_k != 0)
		return fail(L, ENGINE_E_FORMAT, "key '%s.ssm.time_step_rank': %u value heads are not a multiple of %u key heads",
			    L->m->arch_name, hp->ssm_heads_v, hp->ssm_heads_k);
	if (inner != hp->ssm_heads_v * hp->ssm_state)
		return fail(L, ENGINE_E_FORMAT, "key '%s.ssm.inner_size': %u is not %u value heads of %u",
			    L->m->arch_name, inner, hp->ssm_heads_v, hp->ssm_state);
	if (!model_recurrent_layers(L->m->gguf, L->m->arch_name, hp->n_layer, interval, hp->rec_layer))
		return fail(L, ENGINE_E_FORMAT, "key '%s.attention.recurrent_layers': not one bool per layer",
			    L->m->arch_name);
	for (uint32_t i = 0; i < hp->n_layer; i++)
		hp->n_recurrent += hp->rec_layer[i];
	return 0;
}

/* lfm2: attention.head_count_kv per layer (0: a short-convolution
 * layer, else the KV heads, the same for every attention layer), the
 * convolution's taps, and an optional window on the attention layers. */
static int load_shortconv(struct loader *L)
{
	struct hparams *hp = &L->m->hp;
	char key[128];
	uint64_t n;
	const void *data;
	int rc;

	if ((rc = need_u32(L, "shortconv.l_cache", &hp->sc_l, 2, 64)) ||
	    (rc = opt_u32(L, "attention.sliding_window", &hp->n_swa, 0, 1u << 24)))
		return rc;
	snprintf(key, sizeof key, "%s.attention.head_count_kv", L->m->arch_name);
	if (!gguf_get_arr(L->m->gguf, key, GGUF_VT_UINT32, &n, &data) &&
	    !gguf_get_arr(L->m->gguf, key, GGUF_VT_INT32, &n, &data))
		return fail(L, ENGINE_E_FORMAT, "key '%s': not an array of KV heads per layer", key);
	if (n < hp->n_layer)
		return fail(L, ENGINE_E_FORMAT, "key '%s': %llu entries for %u layers", key, (unsigned long long)n,
			    hp->n_layer);
	uint32_t kvh = 0;
	for (uint32_t i = 0; i < hp->n_layer; i++) {
		uint32_t v;
		memcpy(&v, (const char *)data + (size_t)i * 4, 4);
		if (v > 1024 || (v && kvh && v != kvh))
			return fail(L, ENGINE_E_FORMAT, "key '%s': layer %u has %u KV heads (attention layers must agree)",
				    key, i, v);
		if (v)
			kvh = v;
		hp->rec_layer[i] = v == 0;
		hp->n_recurrent += v == 0;
	}
	hp->n_head_kv = kvh ? kvh : hp->n_head;
	return 0;
}

/* "<arch>.<suffix>" as one integer or one per layer (llama.cpp's
 * get_key_or_arr) into out[n_layer_all], each in [lo, hi]; an absent key
 * leaves out alone. */
static int layer_u32s(struct loader *L, const char *suffix, uint32_t *out, uint32_t lo, uint32_t hi)
{
	char key[128];
	uint64_t n, v;
	const void *data;
	bool i32 = true;
	snprintf(key, sizeof key, "%s.%s", L->m->arch_name, suffix);
	if (gguf_get_uint(L->m->gguf, key, &v)) {
		if (v < lo || v > hi)
			return fail(L, ENGINE_E_FORMAT, "key '%s': %llu outside [%u, %u]", key, (unsigned long long)v, lo, hi);
		for (uint32_t i = 0; i < L->n_layer_all; i++)
			out[i] = (uint32_t)v;
		return 0;
	}
	if (!gguf_get_arr(L->m->gguf, key, GGUF_VT_INT32, &n, &data) &&
	    !(i32 = false, gguf_get_arr(L->m->gguf, key, GGUF_VT_UINT32, &n, &data)))
		return gguf_find_key(L->m->gguf, key) >= 0
			       ? fail(L, ENGINE_E_FORMAT, "key '%s': not an integer nor an array of them", key)
			       : 0;
	if (n != L->n_layer_all)
		return fail(L, ENGINE_E_FORMAT, "key '%s': %llu entries for %u layers", key, (unsigned long long)n,
			    L->n_layer_all);
	for (uint32_t i = 0; i < L->n_layer_all; i++) {
		int32_t x;
		memcpy(&x, (const char *)data + (size_t)i * 4, 4);
		v = i32 ? (uint64_t)(int64_t)x : (uint64_t)(uint32_t)x;
		if (i32 && x < 0)
			v = UINT64_MAX;
		if (v < lo || v > hi)
			return fail(L, ENGINE_E_FORMAT, "key '%s': layer %u: %llu outside [%u, %u]", key, i,
				    (unsigned long long)v, lo, hi);
		out[i] = (uint32_t)v;
	}
	return 0;
}

/* feed_forward_length, one or one per layer: the widest (the layers'
 * tensors say their own; scratch is sized by this). */
static int need_ff(struct loader *L, uint32_t *n_ff)
{
	uint32_t ff[1024];
	uint64_t n = 0;
	int rc;
	L->n_layer_all = 0;
	if ((rc = read_u32(L, "block_count", &L->n_layer_all, 1, 1024, true)))
		return rc;
	ff[0] = 0;
	if ((rc = layer_u32s(L, "feed_forward_length", ff, 1, 1u << 20)))
		return rc;
	if (ff[0] == 0)
		return fail(L, ENGINE_E_FORMAT, "key '%s.feed_forward_length': missing", L->m->arch_name);
	for (uint32_t i = 0; i < L->n_layer_all; i++)
		n = ff[i] > n ? ff[i] : n;
	*n_ff = (uint32_t)n;
	return 0;
}

static int load_gemma4_hparams(struct loader *L);

static int load_hparams(struct loader *L)
{
	struct model *m = L->m;
	struct hparams *hp = &m->hp;
	int rc;

	if ((rc = need_u32(L, "embedding_length", &hp->n_embd, 1, 1u << 16)) ||
	    (rc = need_u32(L, "block_count", &hp->n_layer, 1, 1024)) ||
	    (rc = need_u32(L, "attention.head_count", &hp->n_head, 1, 1024)) ||
	    (rc = need_ff(L, &hp->n_ff)))
		return rc;
	/* the last nextn_predict_layers blocks predict further tokens
	 * (multi-token prediction): not part of the pass, their tensors
	 * skipped, as llama.cpp does without a draft context */
	uint32_t nextn = 0;
	if ((rc = opt_u32(L, "nextn_predict_layers", &nextn, 0, hp->n_layer - 1)))
		return rc;
	L->n_layer_all = hp->n_layer;
	hp->n_layer -= nextn;
	hp->n_head_kv = hp->n_head;
	if ((L->desc->flags & AF_SHORTCONV) && (rc = load_shortconv(L)))
		return rc;
	else if (!(L->desc->flags & AF_SHORTCONV) && (rc = opt_u32(L, "attention.head_count_kv", &hp->n_head_kv, 1, 1024)))
		return rc;
	if (hp->n_head % hp->n_head_kv != 0)
		return fail(L, ENGINE_E_FORMAT, "%u attention heads are not a multiple of %u KV heads",
			    hp->n_head, hp->n_head_kv);
	hp->head_dim = hp->n_embd / hp->n_head;
	if ((rc = opt_u32(L, "attention.key_length", &hp->head_dim, 1, 1024)))
		return rc;
	uint32_t vlen = hp->head_dim;
	if ((rc = opt_u32(L, "attention.value_length", &vlen, 1, 1024)))
		return rc;
	if (vlen != hp->head_dim)
		return fail(L, ENGINE_E_FORMAT, "key length %u differs from value length %u (unsupported)",
			    hp->head_dim, vlen);
	if (hp->head_dim == 0 || hp->head_dim % 2 != 0)
		return fail(L, ENGINE_E_FORMAT, "head size %u must be even and non-zero", hp->head_dim);
	if (hp->head_dim > 512)
		return fail(L, ENGINE_E_FORMAT, "head size %u is larger than 512 (unsupported)", hp->head_dim);
	hp->n_rot = hp->head_dim;
	if ((rc = opt_u32(L, "rope.dimension_count", &hp->n_rot, 2, hp->head_dim)))
		return rc;
	if (hp->n_rot % 2 != 0)
		return fail(L, ENGINE_E_FORMAT, "rope dimension count %u is odd", hp->n_rot);
	hp->n_ctx_train = 2048;
	if ((rc = opt_u32(L, "context_length", &hp->n_ctx_train, 1, 1u << 24)))
		return rc;
	if ((rc = load_rope(L)))
		return rc;
	hp->norm_eps = 1e-5f;
	if ((rc = opt_f32(L, "attention.layer_norm_rms_epsilon", &hp->norm_eps, 0.0f, 1.0f)))
		return rc;
	hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
	hp->embd_scale = 1.0f;
	hp->rope_style = L->desc->rope;
	hp->act = L->desc->act;

	if (L->desc->flags & AF_OSS) {
		/* every other layer slides over attention.sliding_window
		 * positions, with the global rope unless rope.freq_base_swa */
		if ((rc = need_u32(L, "attention.sliding_window", &hp->n_swa, 1, 1u << 24)) ||
		    (rc = opt_f32(L, "rope.freq_base_swa", &hp->rope_base_swa, 1.0f, 1e12f)))
			return rc;
	}
	if (L->desc->flags & AF_GEMMA) {
		hp->embd_scale = sqrtf((float)hp->n_embd);
		hp->rope_base_swa = 10000.0f;
		if ((rc = opt_f32(L, "rope.freq_base_swa", &hp->rope_base_swa, 1.0f, 1e12f)))
			return rc;
		hp->n_swa = 0;
		if ((rc = opt_u32(L, "attention.sliding_window", &hp->n_swa, 0, 1u << 24)))
			return rc;
		if ((rc = opt_f32(L, "final_logit_softcapping", &hp->final_softcap, 0.0f, 1e6f)))
			return rc;
		/* llama.cpp's rule: the 27B (62 layers) scales queries by
		 * 1/sqrt(n_embd / n_head), the others by 1/sqrt(head_dim) */
		if (hp->n_layer == 62)
			hp->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
	}
	if (L->desc->flags & AF_GRANITE) {
		float scale = 0.0f, kq = 0.0f;
		bool ft = true;
		char key[128];
		if ((rc = need_f32(L, "logit_scale", &hp->logit_scale, 1e-6f, 1e6f)) ||
		    (rc = opt_f32(L, "residual_scale", &hp->res_scale, 0.0f, 1e6f)) ||
		    (rc = opt_f32(L, "embedding_scale", &scale, 0.0f, 1e6f)) ||
		    (rc = opt_f32(L, "attention.scale", &kq, 0.0f, 1e6f)))
			return rc;
		/* 0 means "not set" for each of them, as in llama.cpp */
		if (scale != 0.0f)
			hp->embd_scale = scale;
		if (kq != 0.0f)
			hp->attn_scale = kq;
		/* rope.scaling.finetuned (a bool) switches rope off */
		snprintf(key, sizeof key, "%s.rope.scaling.finetuned", L->m->arch_name);
		if (gguf_find_key(L->m->gguf, key) >= 0 && !gguf_get_bool(L->m->gguf, key, &ft))
			return fail(L, ENGINE_E_FORMAT, "key '%s': not a bool", key);
		L->rope_off = !ft;
	}
	if (L->desc->flags & AF_IMROPE) {
		char key[128];
		uint64_t n;
		const void *data;
		snprintf(key, sizeof key, "%s.rope.dimension_sections", L->m->arch_name);
		if (!gguf_get_arr(L->m->gguf, key, GGUF_VT_INT32, &n, &data) || n < 3 || n > 4)
			return fail(L, ENGINE_E_FORMAT, "key '%s': missing or not 3-4 integers", key);
		int64_t total = 0;
		for (uint64_t i = 0; i < n; i++) {
			int32_t v;
			memcpy(&v, (const char *)data + i * 4, 4);
			if (v < 0 || v > 1024)
				return fail(L, ENGINE_E_FORMAT, "key '%s': section %d out of range", key, v);
			hp->rope_sections[i] = v;
			total += v;
		}
		if (total == 0 || total > hp->head_dim)
			return fail(L, ENGINE_E_FORMAT, "key '%s': %lld sections for a head of %u", key,
				    (long long)total, hp->head_dim);
		hp->imrope = true;
		/* deepstack layers add the vision tower's features to image
		 * positions only; a text token's are zero (llama.cpp pads them) */
		uint32_t deepstack = 0;
		if ((rc = opt_u32(L, "n_deepstack_layers", &deepstack, 0, 1024)))
			return rc;
	}
	if ((L->desc->flags & AF_ATTN_TEMP) &&
	    (rc = opt_f32(L, "attention.temperature_scale", &hp->attn_temp_scale, 0.0f, 1e6f)))
		return rc;
	if ((rc = load_moe(L)) || (rc = load_gdn(L)))
		return rc;
	if (L->desc->flags & AF_SHEXP) {
		hp->n_ff_shexp = hp->n_ff;   /* llama.cpp's default */
		if ((rc = opt_u32(L, "expert_shared_feed_forward_length", &hp->n_ff_shexp, 1, 1u << 20)))
			return rc;
	}
	if ((L->desc->flags & AF_GEMMA4) && (rc = load_gemma4_hparams(L)))
		return rc;

	/* the vocabulary size comes from the embedding matrix */
	const struct gguf_tensor *te = gguf_find_tensor(m->gguf, "token_embd.weight");
	if (!te)
		return fail(L, ENGINE_E_FORMAT, "tensor 'token_embd.weight' is missing");
	if (te->n_dims != 2 || te->ne[0] != hp->n_embd || te->ne[1] == 0 || te->ne[1] > (1u << 24))
		return fail(L, ENGINE_E_FORMAT, "tensor 'token_embd.weight' has shape [%llu, %llu], expected [%u, n_vocab]",
			    (unsigned long long)te->ne[0], (unsigned long long)te->ne[1], hp->n_embd);
	hp->n_vocab = (uint32_t)te->ne[1];
	return 0;
}

/* Which layers attend through the sliding window (gemma3): the file's
 * attention.sliding_window_pattern, a period N (layer i slides unless
 * i % N == N - 1; 0: all slide) or one bool per layer; default period 6. */
static int load_swa_pattern(struct loader *L, bool swa[1024])
{
	const struct hparams *hp = &L->m->hp;
	char key[128];
	uint64_t n;
	const void *data;
	uint32_t period = 6;
	int rc;

	snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", L->m->arch_name);
	if (gguf_get_arr(L->m->gguf, key, GGUF_VT_BOOL, &n, &data)) {
		if (n != hp->n_layer)
			return fail(L, ENGINE_E_FORMAT, "key '%s': %llu entries for %u layers", key,
				    (unsigned long long)n, hp->n_layer);
		for (uint32_t i = 0; i < hp->n_layer; i++)
			swa[i] = ((const uint8_t *)data)[i] != 0;
		return 0;
	}
	if (L->desc->flags & AF_OSS)
		period = 2;
	if ((L->desc->flags & (AF_GEMMA | AF_OSS)) &&
	    (rc = opt_u32(L, "attention.sliding_window_pattern", &period, 0, 1024)))
		return rc;
	for (uint32_t i = 0; i < hp->n_layer; i++)
		swa[i] = period == 0 || i % period < period - 1;
	return 0;
}

/* Keys llama.cpp reads for every architecture that would change the
 * computation in ways not implemented here: refused unless neutral. */
static int refuse_unimplemented(struct loader *L)
{
	const struct hparams *hp = &L->m->hp;
	uint32_t n_expert = 0, k_swa = hp->head_dim, v_swa = hp->head_dim, rot_swa = hp->n_rot;
	int rc;

	if ((rc = opt_u32(L, "expert_count", &n_expert, 0, 1u << 16)) ||
	    (rc = opt_u32(L, "attention.key_length_swa", &k_swa, 1, 1024)) ||
	    (rc = opt_u32(L, "attention.value_length_swa", &v_swa, 1, 1024)) ||
	    (rc = opt_u32(L, "rope.dimension_count_swa", &rot_swa, 2, 1024)))
		return rc;
	if (L->desc->flags & AF_GEMMA4)
		return 0;   /* load_gemma4_hparams read them all */
	if (n_expert > 0 && !(L->desc->flags & AF_MOE))
		return fail(L, ENGINE_E_FORMAT, "key '%s.expert_count': %u experts (mixtures of experts are not supported for this architecture)",
			    L->m->arch_name, n_expert);
	if (k_swa != hp->head_dim || v_swa != hp->head_dim || rot_swa != hp->n_rot)
		return fail(L, ENGINE_E_FORMAT, "keys '%s.attention.*_length_swa' / 'rope.dimension_count_swa': sliding-window layers with other head sizes are not supported",
			    L->m->arch_name);
	return 0;
}

/* The tensors of a Gated DeltaNet layer (llama.cpp's qwen35 shapes). */
static int load_gdn_layer(struct loader *L, struct layer *l, int il)
{
	const struct hparams *hp = &L->m->hp;
	const int64_t E = hp->n_embd, C = (int64_t)ssm_conv_dim(hp);
	const int64_t VD = (int64_t)hp->ssm_heads_v * hp->ssm_state, HV = hp->ssm_heads_v;
	int rc;

	if ((rc = get_weight(L, &l->ssm_qkv, "blk.%d.attn_qkv.weight", il, E, C, true)) ||
	    (rc = get_weight(L, &l->ssm_z, "blk.%d.attn_gate.weight", il, E, VD, true)) ||
	    (rc = get_weight(L, &l->ssm_alpha, "blk.%d.ssm_alpha.weight", il, E, HV, true)) ||
	    (rc = get_weight(L, &l->ssm_beta, "blk.%d.ssm_beta.weight", il, E, HV, true)) ||
	    (rc = get_weight(L, &l->ssm_out, "blk.%d.ssm_out.weight", il, VD, E, true)) ||
	    (rc = get_vec2(L, &l->ssm_conv, "blk.%d.ssm_conv1d.weight", il, hp->ssm_conv_k, C, true)) ||
	    (rc = get_vec(L, &l->ssm_dt, "blk.%d.ssm_dt.bias", il, HV, true)) ||
	    (rc = get_vec(L, &l->ssm_a, "blk.%d.ssm_a", il, HV, true)) ||
	    (rc = get_vec(L, &l->ssm_norm, "blk.%d.ssm_norm.weight", il, hp->ssm_state, true)))
		return rc;
	return 0;
}
static int check_all_read(struct loader *L);
static int load_gemma4_tensors(struct loader *L, const bool *swa_pattern);

static int load_tensors(struct loader *L)
{
	struct model *m = L->m;
	const struct hparams *hp = &m->hp;
	int64_t E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
	int64_t QD = (int64_t)hp->n_head * hp->head_dim;
	int64_t KD = (int64_t)hp->n_head_kv * hp->head_dim;
	int rc;

	const char *onorm = (L->desc->flags & AF_SHORTCONV) ? "token_embd_norm.weight" : "output_norm.weight";
	if ((rc = get_weight(L, &m->tok_embd, "token_embd.weight", -1, E, V, true)) ||
	    (rc = get_vec(L, &m->output_norm, onorm, -1, E, true)) ||
	    (rc = get_weight(L, &m->output, "output.weight", -1, E, V, false)))
		return rc;
	if (!m->output.data)
		m->output = m->tok_embd; /* tied */
	if ((rc = get_vec(L, &m->rope_freqs, "rope_freqs.weight", -1, hp->n_rot / 2, false)))
		return rc;
	if ((L->desc->flags & AF_LONGROPE) &&
	    ((rc = get_vec(L, &m->rope_long, "rope_factors_long.weight", -1, hp->n_rot / 2, false)) ||
	     (rc = get_vec(L, &m->rope_short, "rope_factors_short.weight", -1, hp->n_rot / 2, false))))
		return rc;
	bool swa_pattern[1024];
	if ((rc = load_swa_pattern(L, swa_pattern)))
		return rc;
	if (L->desc->flags & AF_GEMMA4) {
		if ((rc = load_gemma4_tensors(L, swa_pattern)))
			return rc;
		return check_all_read(L);
	}

	uint32_t n_rec = 0;
	for (uint32_t i = 0; i < hp->n_layer; i++) {
		struct layer *l = &m->layers[i];
		int il = (int)i;
		l->rope_base = hp->rope_base;
		l->rope_scale = hp->rope_scale;
		const bool oss = L->desc->flags & AF_OSS;
		const bool pan = L->desc->flags & AF_POST_ATTN_NORM;
		l->recurrent = hp->rec_layer[i];
		if (l->recurrent)
			l->rec_idx = n_rec++;   /* its state's place in the cache */
		if ((rc = get_vec(L, &l->attn_norm, "blk.%d.attn_norm.weight", il, E, true)) ||
		    (rc = get_vec(L, &l->ffn_norm, pan ? "blk.%d.post_attention_norm.weight" : "blk.%d.ffn_norm.weight",
				  il, E, true)))
			return rc;
		if (l->recurrent && (L->desc->flags & AF_SHORTCONV)) {
			l->shortconv = true;
			if ((rc = get_weight(L, &l->sc_in, "blk.%d.shortconv.in_proj.weight", il, E, 3 * E, true)) ||
			    (rc = get_weight(L, &l->sc_out, "blk.%d.shortconv.out_proj.weight", il, E, E, true)) ||
			    (rc = get_vec2(L, &l->sc_conv, "blk.%d.shortconv.conv.weight", il, hp->sc_l, E, true)))
				return rc;
		} else if (l->recurrent) {
			if ((rc = load_gdn_layer(L, l, il)))
				return rc;
		} else if ((rc = get_weight(L, &l->wo, "blk.%d.attn_output.weight", il, QD, E, true))) {
			return rc;
		}
		l->no_rope = L->rope_off || ((L->desc->flags & AF_NOPE4) && (i + 1) % 4 == 0);
		if ((L->desc->flags & AF_OUT_BIAS) &&
		    (rc = get_vec(L, &l->bo, "blk.%d.attn_output.bias", il, E, false)))
			return rc;
		if (oss) {
			const int64_t NE = hp->n_expert, FE = hp->n_ff_exp;
			if ((rc = get_vec(L, &l->bo, "blk.%d.attn_output.bias", il, E, true)) ||
			    (rc = get_vec(L, &l->sinks, "blk.%d.attn_sinks.weight", il, hp->n_head, true)) ||
			    (rc = get_vec(L, &l->router_b, "blk.%d.ffn_gate_inp.bias", il, NE, true)) ||
			    (rc = get_vec2(L, &l->gate_exps_b, "blk.%d.ffn_gate_exps.bias", il, FE, NE, true)) ||
			    (rc = get_vec2(L, &l->up_exps_b, "blk.%d.ffn_up_exps.bias", il, FE, NE, true)) ||
			    (rc = get_vec2(L, &l->down_exps_b, "blk.%d.ffn_down_exps.bias", il, E, NE, true)))
				return rc;
			l->swa = swa_pattern[i];
			if (l->swa)
				l->rope_base = hp->rope_base_swa;
		}
		if (L->desc->flags & AF_FUSED) {
			l->ffn = FFN_FUSED;
			if ((rc = get_weight(L, &l->wqkv, "blk.%d.attn_qkv.weight", il, E, QD + 2 * KD, false)) ||
			    (rc = get_weight(L, &l->w_up, "blk.%d.ffn_up.weight", il, E, 2 * F, true)) ||
			    (rc = get_weight(L, &l->w_down, "blk.%d.ffn_down.weight", il, F, E, true)))
				return rc;
		} else if ((L->desc->flags & AF_MOE) && i >= hp->n_dense_lead) {
			const int64_t FE = hp->n_ff_exp;
			const uint32_t NE = hp->n_expert;
			l->ffn = FFN_MOE;
			if ((rc = get_weight(L, &l->ffn_gate_inp, "blk.%d.ffn_gate_inp.weight", il, E, NE, true)) ||
			    (rc = get_weight3(L, &l->gate_exps, "blk.%d.ffn_gate_exps.weight", il, E, FE, NE)) ||
			    (rc = get_weight3(L, &l->up_exps, "blk.%d.ffn_up_exps.weight", il, E, FE, NE)) ||
			    (rc = get_weight3(L, &l->down_exps, "blk.%d.ffn_down_exps.weight", il, FE, E, NE)))
				return rc;
			if ((L->desc->flags & AF_MOE_KEYS) &&
			    (rc = get_vec(L, &l->exp_probs_b, "blk.%d.exp_probs_b.bias", il, NE, false)))
				return rc;
		} else {
			l->ffn = FFN_DENSE;
			if ((rc = get_weight(L, &l->w_gate, "blk.%d.ffn_gate.weight", il, E, F, true)) ||
			    (rc = get_weight(L, &l->w_up, "blk.%d.ffn_up.weight", il, E, F, true)) ||
			    (rc = get_weight(L, &l->w_down, "blk.%d.ffn_down.weight", il, F, E, true)))
				return rc;
		}
		if (hp->n_ff_shexp > 0 && l->ffn == FFN_MOE &&
		    ((rc = get_weight(L, &l->gate_shexp, "blk.%d.ffn_gate_shexp.weight", il, E, hp->n_ff_shexp, true)) ||
		     (rc = get_weight(L, &l->up_shexp, "blk.%d.ffn_up_shexp.weight", il, E, hp->n_ff_shexp, true)) ||
		     (rc = get_weight(L, &l->down_shexp, "blk.%d.ffn_down_shexp.weight", il, hp->n_ff_shexp, E, true))))
			return rc;
		if ((L->desc->flags & AF_SHORTCONV) && hp->n_swa > 0)
			l->swa = !l->recurrent;
		/* qwen35's attention: each head's q rows followed by its gate's */
		l->q_gated = (L->desc->flags & AF_GDN) && !l->recurrent;
		if (l->recurrent) {
			/* no attention projections */
		} else if (!l->wqkv.data) {
			if ((rc = get_weight(L, &l->wq, "blk.%d.attn_q.weight", il, E, l->q_gated ? 2 * QD : QD, true)) ||
			    (rc = get_weight(L, &l->wk, "blk.%d.attn_k.weight", il, E, KD, true)) ||
			    (rc = get_weight(L, &l->wv, "blk.%d.attn_v.weight", il, E, KD, true)))
				return rc;
		}
		if (!l->wqkv.data && !l->recurrent) {
			/* q/k/v biases: any family may carry them (llama.cpp
			 * reads them where present); qwen2 must */
			const bool need = L->desc->flags & AF_QKV_BIAS;
			if ((rc = get_vec(L, &l->bq, "blk.%d.attn_q.bias", il, QD, need)) ||
			    (rc = get_vec(L, &l->bk, "blk.%d.attn_k.bias", il, KD, need)) ||
			    (rc = get_vec(L, &l->bv, "blk.%d.attn_v.bias", il, KD, need)))
				return rc;
		}
		if ((L->desc->flags & AF_SHEXP) && l->ffn == FFN_MOE &&
		    (rc = get_weight(L, &l->shexp_gate, "blk.%d.ffn_gate_inp_shexp.weight", il, E, 1, true)))
			return rc;
		if ((L->desc->flags & (AF_QK_NORM | AF_MOE_KEYS)) && !l->recurrent) {
			/* required where the table says, optional for glm4moe */
			const bool need = L->desc->flags & AF_QK_NORM;
			if ((rc = get_vec(L, &l->q_norm, "blk.%d.attn_q_norm.weight", il, hp->head_dim, need)) ||
			    (rc = get_vec(L, &l->k_norm, "blk.%d.attn_k_norm.weight", il, hp->head_dim, need)))
				return rc;
			if (!l->q_norm.data != !l->k_norm.data)
				return fail(L, ENGINE_E_FORMAT, "layer %d has only one of attn_q_norm and attn_k_norm", il);
		}
		if (L->desc->flags & AF_GEMMA) {
			if ((rc = get_vec(L, &l->attn_post_norm, "blk.%d.post_attention_norm.weight", il, E, true)) ||
			    (rc = get_vec(L, &l->ffn_post_norm, "blk.%d.post_ffw_norm.weight", il, E, true)))
				return rc;
			/* sliding-window layers use the local rope base and no
			 * position scale (llama.cpp's rope_freq_scale_train_swa) */
			l->swa = hp->n_swa > 0 && swa_pattern[i];
			if (l->swa) {
				l->rope_base = hp->rope_base_swa;
				l->rope_scale = 1.0f;
			}
		}
	}
	return check_all_read(L);
}

/* Every tensor of the file was read (the nextn blocks' are skipped). */
static int check_all_read(struct loader *L)
{
	struct model *m = L->m;
	const struct hparams *hp = &m->hp;
	for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
		const struct gguf_tensor *t = gguf_tensor_at(m->gguf, i);
		unsigned b;
		int len = 0;
		char nm[32];
		snprintf(nm, sizeof nm, "%.*s", (int)(t->name.len < 31 ? t->name.len : 31), t->name.ptr);
		if (sscanf(nm, "blk.%u.%n", &b, &len) == 1 && len > 0 && b >= hp->n_layer && b < L->n_layer_all)
			L->seen[i] = 1;
	}
	/* a tensor nothing reads would change the maths if read: refused */
	for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
		const struct gguf_tensor *t = gguf_tensor_at(m->gguf, i);
		if (!L->seen[i])
			return fail(L, ENGINE_E_FORMAT, "tensor '%.*s' is not part of the %s architecture as ttychat knows it (refused rather than ignored)",
				    (int)(t->name.len > 80 ? 80 : t->name.len), t->name.ptr, m->arch_name);
	}
	return 0;
}

/* ---- Gemma 4 ---------------------------------------------------------------
 * llama.cpp's src/models/gemma4.cpp: sliding-window layers (the file's
 * per-layer pattern) with their own head size, rope dims and base; global
 * layers with a larger head and a partial ("proportional") rope made of
 * rope_freqs factors of 1e30 for the unrotated pairs; per-layer KV head
 * counts and FFN widths; the last shared_kv_layers layers attend over the
 * K/V of the last earlier layer of their kind; a missing attn_v means V is
 * K's projection; V is RMS-normed without weight; q.k unscaled; per-layer
 * inputs (E2B/E4B); a mixture of experts beside the dense FFN (26B-A4B);
 * an optional scale on each layer's output. */

static int load_gemma4_hparams(struct loader *L)
{
	struct hparams *hp = &L->m->hp;
	uint32_t v_swa = 0;
	char key[128];
	int rc;

	hp->layer_shapes = true;
	hp->attn_scale = 1.0f;   /* Gemma4Attention's scaling = 1: the q norm does it */
	L->rot_swa = hp->n_rot;
	if ((rc = need_u32(L, "attention.key_length_swa", &L->k_swa, 2, 512)) ||
	    (rc = need_u32(L, "attention.value_length_swa", &v_swa, 2, 512)) ||
	    (rc = need_u32(L, "embedding_length_per_layer_input", &hp->n_embd_pl, 0, 1u << 16)) ||
	    (rc = need_u32(L, "attention.sliding_window", &hp->n_swa, 1, 1u << 24)) ||
	    (rc = opt_u32(L, "attention.shared_kv_layers", &L->n_kv_shared, 0, hp->n_layer)) ||
	    (rc = opt_u32(L, "rope.dimension_count_swa", &L->rot_swa, 2, L->k_swa)))
		return rc;
	if (v_swa != L->k_swa || L->k_swa % 2 || L->rot_swa % 2)
		return fail(L, ENGINE_E_FORMAT, "sliding-window key length %u, value length %u, rope dims %u: must be equal and even",
			    L->k_swa, v_swa, L->rot_swa);
	if (L->n_kv_shared > 0 && hp->n_layer - L->n_kv_shared < 2)
		return fail(L, ENGINE_E_FORMAT, "key '%s.attention.shared_kv_layers': %u of %u layers leave no layers of both kinds to share",
			    L->m->arch_name, L->n_kv_shared, hp->n_layer);
	snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", L->m->arch_name);
	if (gguf_find_key(L->m->gguf, key) < 0)
		return fail(L, ENGINE_E_FORMAT, "key '%s': missing", key);
	uint32_t ne = 0;
	if ((rc = opt_u32(L, "expert_count", &ne, 0, 4096)))
		return rc;
	if (ne == 0)
		return 0;
	/* the experts of the 26B-A4B: a softmax router choosing K, renormalised */
	uint32_t fe[1024];
	fe[0] = 0;
	hp->n_expert = ne;
	if ((rc = need_u32(L, "expert_used_count", &hp->n_expert_used, 1, ne < 64 ? ne : 64)) ||
	    (rc = layer_u32s(L, "expert_feed_forward_length", fe, 1, 1u << 20)))
		return rc;
	for (uint32_t i = 1; i < L->n_layer_all; i++)
		if (fe[i] != fe[0])
			return fail(L, ENGINE_E_FORMAT, "key '%s.expert_feed_forward_length': widths that vary by layer are not supported",
				    L->m->arch_name);
	if (fe[0] == 0)
		return fail(L, ENGINE_E_FORMAT, "key '%s.expert_feed_forward_length': missing", L->m->arch_name);
	hp->n_ff_exp = fe[0];
	hp->moe_gating = MOE_SOFTMAX;
	hp->moe_norm_w = true;
	hp->moe_w_scale = 1.0f;
	return 0;
}

/* The experts of layer i, beside its dense FFN. */
static int load_gemma4_moe(struct loader *L, struct layer *l, int il)
{
	const struct hparams *hp = &L->m->hp;
	const int64_t E = hp->n_embd, FE = hp->n_ff_exp, NE = hp->n_expert;
	int rc;
	if ((rc = get_weight(L, &l->ffn_gate_inp, "blk.%d.ffn_gate_inp.weight", il, E, NE, false)))
		return rc;
	if (!l->ffn_gate_inp.data)
		return 0;
	if (NE == 0)
		return fail(L, ENGINE_E_FORMAT, "layer %d has a router but the file no %s.expert_count", il,
			    L->m->arch_name);
	l->ffn = FFN_MOE;
	if ((rc = get_vec(L, &l->router_s, "blk.%d.ffn_gate_inp.scale", il, E, true)) ||
	    (rc = get_vec(L, &l->pre_norm_2, "blk.%d.pre_ffw_norm_2.weight", il, E, true)) ||
	    (rc = get_vec(L, &l->post_norm_1, "blk.%d.post_ffw_norm_1.weight", il, E, true)) ||
	    (rc = get_vec(L, &l->post_norm_2, "blk.%d.post_ffw_norm_2.weight", il, E, true)) ||
	    (rc = get_weight3(L, &l->gate_exps, "blk.%d.ffn_gate_exps.weight", il, E, FE, (uint32_t)NE)) ||
	    (rc = get_weight3(L, &l->up_exps, "blk.%d.ffn_up_exps.weight", il, E, FE, (uint32_t)NE)) ||
	    (rc = get_weight3(L, &l->down_exps, "blk.%d.ffn_down_exps.weight", il, FE, E, (uint32_t)NE)) ||
	    (rc = get_vec(L, &l->down_exps_s, "blk.%d.ffn_down_exps.scale", il, NE, false)))
		return rc;
	return 0;
}

/* Attention, FFN and per-layer input tensors of layer i. */
static int load_gemma4_layer(struct loader *L, struct layer *l, int il)
{
	const struct hparams *hp = &L->m->hp;
	const int64_t E = hp->n_embd, D = l->head_dim, QD = (int64_t)hp->n_head * D;
	const int64_t KD = (int64_t)l->n_head_kv * D, F = l->n_ff, P = hp->n_embd_pl;
	const bool own = l->kv_src == il;
	int rc;
	/* a layer that reads another's K/V may still carry its own (llama.cpp
	 * loads and never uses them): read, and left out of the pass */
	struct weight unused_k, unused_v;
	struct vec unused_kn;
	if ((rc = get_vec(L, &l->attn_norm, "blk.%d.attn_norm.weight", il, E, true)) ||
	    (rc = get_weight(L, &l->wq, "blk.%d.attn_q.weight", il, E, QD, true)) ||
	    (rc = get_weight(L, own ? &l->wk : &unused_k, "blk.%d.attn_k.weight", il, E, KD, own)) ||
	    (rc = get_weight(L, own ? &l->wv : &unused_v, "blk.%d.attn_v.weight", il, E, KD, false)) ||
	    (rc = get_weight(L, &l->wo, "blk.%d.attn_output.weight", il, QD, E, true)) ||
	    (rc = get_vec(L, &l->q_norm, "blk.%d.attn_q_norm.weight", il, D, true)) ||
	    (rc = get_vec(L, own ? &l->k_norm : &unused_kn, "blk.%d.attn_k_norm.weight", il, D, own)) ||
	    (rc = get_vec(L, &l->attn_post_norm, "blk.%d.post_attention_norm.weight", il, E, true)) ||
	    (rc = get_vec(L, &l->out_scale, "blk.%d.layer_output_scale.weight", il, 1, false)) ||
	    (rc = get_vec(L, &l->ffn_norm, "blk.%d.ffn_norm.weight", il, E, true)) ||
	    (rc = get_weight(L, &l->w_gate, "blk.%d.ffn_gate.weight", il, E, F, true)) ||
	    (rc = get_weight(L, &l->w_up, "blk.%d.ffn_up.weight", il, E, F, true)) ||
	    (rc = get_weight(L, &l->w_down, "blk.%d.ffn_down.weight", il, F, E, true)) ||
	    (rc = get_vec(L, &l->ffn_post_norm, "blk.%d.post_ffw_norm.weight", il, E, true)))
		return rc;
	l->v_is_k = own && !l->wv.data;
	l->ffn = FFN_DENSE;
	if ((rc = load_gemma4_moe(L, l, il)))
		return rc;
	if (P > 0 &&
	    ((rc = get_weight(L, &l->ple_gate, "blk.%d.inp_gate.weight", il, E, P, true)) ||
	     (rc = get_weight(L, &l->ple_proj, "blk.%d.proj.weight", il, P, E, true)) ||
	     (rc = get_vec(L, &l->ple_post_norm, "blk.%d.post_norm.weight", il, E, true))))
		return rc;
	return 0;
}

static int load_gemma4_tensors(struct loader *L, const bool *swa_pattern)
{
	struct model *m = L->m;
	struct hparams *hp = &m->hp;
	uint32_t kvh[1024], ff[1024];
	const uint32_t n_kv = hp->n_layer - L->n_kv_shared, d_full = hp->head_dim, rot_full = hp->n_rot;
	int rc;

	for (uint32_t i = 0; i < L->n_layer_all; i++) {
		kvh[i] = hp->n_head_kv;
		ff[i] = hp->n_ff;
	}
	if ((rc = layer_u32s(L, "attention.head_count_kv", kvh, 1, hp->n_head)) ||
	    (rc = layer_u32s(L, "feed_forward_length", ff, 1, 1u << 20)))
		return rc;
	m->kv_src = eng_calloc(hp->n_layer, sizeof *m->kv_src);
	m->kv_dims = eng_calloc(hp->n_layer, sizeof *m->kv_dims);
	if (!m->kv_src || !m->kv_dims)
		return fail(L, ENGINE_E_NOMEM, "out of memory for the layer table");
	hp->kv_src = m->kv_src;
	hp->kv_dims = m->kv_dims;
	if (hp->n_embd_pl > 0) {
		const int64_t PL = (int64_t)hp->n_embd_pl * hp->n_layer;
		if ((rc = get_weight(L, &m->ple_embd, "per_layer_token_embd.weight", -1, PL, hp->n_vocab, true)) ||
		    (rc = get_weight(L, &m->ple_model_proj, "per_layer_model_proj.weight", -1, hp->n_embd, PL, true)) ||
		    (rc = get_vec(L, &m->ple_proj_norm, "per_layer_proj_norm.weight", -1, hp->n_embd_pl, true)))
			return rc;
	}
	uint32_t max_d = 0, max_kvd = 0, max_rot = 0, max_g = 0;
	for (uint32_t i = 0; i < hp->n_layer; i++) {
		struct layer *l = &m->layers[i];
		const bool swa = swa_pattern[i];
		if (hp->n_head % kvh[i] != 0)
			return fail(L, ENGINE_E_FORMAT, "layer %u: %u attention heads are not a multiple of %u KV heads", i,
				    hp->n_head, kvh[i]);
		l->swa = swa;
		l->head_dim = swa ? L->k_swa : d_full;
		l->n_rot = swa ? L->rot_swa : rot_full;
		l->n_head_kv = kvh[i];
		l->n_ff = ff[i];
		l->rope_ff = !swa;
		l->rope_base = swa ? hp->rope_base_swa : hp->rope_base;
		l->rope_scale = swa ? 1.0f : hp->rope_scale;
		/* llama.cpp's layer_reuse_cb: the last own layer of its kind */
		l->kv_src = i < n_kv ? (int32_t)i : (int32_t)(n_kv - (swa ? 2 : 1));
		m->kv_src[i] = l->kv_src;
		m->kv_dims[i] = l->n_head_kv * l->head_dim;
		const struct layer *src = &m->layers[l->kv_src];
		if (src->swa != swa || src->head_dim != l->head_dim || src->n_head_kv != l->n_head_kv)
			return fail(L, ENGINE_E_FORMAT, "layer %u would share the K/V of layer %d, which is of another kind or shape",
				    i, l->kv_src);
		if ((rc = load_gemma4_layer(L, l, (int)i)))
			return rc;
		max_d = l->head_dim > max_d ? l->head_dim : max_d;
		max_rot = l->n_rot > max_rot ? l->n_rot : max_rot;
		max_g = l->n_head_kv > max_g ? l->n_head_kv : max_g;
		max_kvd = l->n_head_kv * l->head_dim > max_kvd ? l->n_head_kv * l->head_dim : max_kvd;
	}
	hp->head_dim = max_d;
	hp->n_rot = max_rot;
	hp->n_head_kv = max_g;
	hp->kv_dim = max_kvd;
	return 0;
}

int model_load(struct model *m, const char *path, const volatile int *abort_flag,
	       char *err, size_t errlen)
{
	struct loader L = {.m = m, .err = err, .errlen = errlen, .path = path};
	int rc;

	memset(m, 0, sizeof *m);
	if (errlen)
		err[0] = '\0';
	m->gguf = gguf_open_model(path, err, errlen);
	if (!m->gguf)
		return errno == ENOMEM ? ENGINE_E_NOMEM : ENGINE_E_FORMAT;

	struct gguf_str a;
	if (!gguf_get_str(m->gguf, "general.architecture", &a)) {
		rc = fail(&L, ENGINE_E_FORMAT, "key 'general.architecture': missing");
		goto bad;
	}
	for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
		if (gguf_str_eq(a, arch_table[i].name))
			L.desc = &arch_table[i];
	if (!L.desc) {
		char list[256] = "";
		for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
			snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
				 arch_table[i].name);
		rc = fail(&L, ENGINE_E_FORMAT, "architecture '%.*s' is not supported (supported: %s)",
			  (int)(a.len > 64 ? 64 : a.len), a.ptr, list);
		goto bad;
	}
	m->hp.arch = L.desc->arch;
	snprintf(m->arch_name, sizeof m->arch_name, "%.*s", (int)a.len, a.ptr);
	struct gguf_str nm;
	if (gguf_get_str(m->gguf, "general.name", &nm))
		snprintf(m->name, sizeof m->name, "%.*s", (int)(nm.len > 127 ? 127 : nm.len), nm.ptr);
	snprintf(m->quant, sizeof m->quant, "%s", dominant_type(m->gguf));

	if ((rc = load_hparams(&L)) || (rc = refuse_unimplemented(&L)))
		goto bad;
	if (abort_flag && *abort_flag) {
		rc = fail(&L, ENGINE_E_CANCELLED, "loading cancelled");
		goto bad;
	}

	m->layers = eng_calloc(m->hp.n_layer, sizeof *m->layers);
	L.owned_cap = vec_bytes_needed(m->gguf);
	m->owned_f32 = L.owned_cap ? eng_malloc(L.owned_cap) : NULL;
	if (!m->layers || (L.owned_cap && !m->owned_f32)) {
		rc = fail(&L, ENGINE_E_NOMEM, "out of memory for the layer table");
		goto bad;
	}
	m->owned_f32_bytes = L.owned_cap;
	L.seen = eng_calloc(gguf_n_tensors(m->gguf) + 1, 1);
	if (!L.seen) {
		rc = fail(&L, ENGINE_E_NOMEM, "out of memory for the tensor table");
		goto bad;
	}
	if ((rc = load_tensors(&L)))
		goto bad;
	free(L.seen);
	return 0;
bad:
	free(L.seen);
	model_free(m);
	return rc;
}

void model_free(struct model *m)
{
	if (m->gguf)
		gguf_close(m->gguf);
	free(m->layers);
	free(m->kv_src);
	free(m->kv_dims);
	free(m->owned_f32);
	memset(m, 0, sizeof *m);
}
