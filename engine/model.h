/*
 * model.h - hyper-parameters and weight views of one loaded model
 * (engine-internal).
 *
 * model_load() maps a GGUF file, recognises its architecture, reads and
 * validates every hyper-parameter and tensor shape, and fills struct model
 * with views into the mapping.  It refuses unsupported architectures, tensor
 * sets and types before any large allocation.  Owned by the engine thread.
 */
#ifndef TTYCHAT_MODEL_H
#define TTYCHAT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

enum arch {
	ARCH_LLAMA,
	ARCH_QWEN2,
	ARCH_QWEN3,
	ARCH_PHI3,
	ARCH_GEMMA3,
	ARCH_QWEN3MOE,
	ARCH_GPT_OSS,
	ARCH_SMOLLM3,
	ARCH_GRANITE,
	ARCH_GRANITEMOE,
	ARCH_MISTRAL3,
	ARCH_QWEN3VL,
	ARCH_QWEN3VLMOE,
	ARCH_GLM4MOE,
	ARCH_QWEN35,
	ARCH_QWEN35MOE,
	ARCH_LFM2,
	ARCH_LFM2MOE,
	ARCH_GEMMA4,
};

/* The feed-forward block of a layer. */
enum ffn_kind {
	FFN_DENSE,      /* down(act(gate x) * up x) */
	FFN_FUSED,      /* phi3: one matrix of [gate | up] rows */
	FFN_MOE,        /* a routed mixture of experts (struct layer's moe) */
};

enum ffn_act {
	ACT_SILU,       /* silu(gate) * up */
	ACT_GELU,       /* gelu(gate) * up (tanh form, through f16 as ggml) */
	ACT_SWIGLU_OAI, /* gpt-oss: g = min(gate, 7), u = clamp(up, -7, 7),
			 * g * sigmoid(1.702 g) * (u + 1) */
};

/* How a mixture of experts weighs its experts (llama.cpp's
 * llama_expert_gating_func_type): probabilities from the router logits by
 * softmax or sigmoid, the top n_expert_used of them chosen. */
enum moe_gating {
	MOE_SOFTMAX,        /* softmax over all experts, the top K chosen */
	MOE_SIGMOID,        /* sigmoid of each, the top K chosen */
	MOE_SOFTMAX_WEIGHT, /* the top K logits chosen, softmax over those (gpt-oss) */
};

enum rope_style {
	ROPE_NORM, /* rotate adjacent pairs (x0,x1),(x2,x3)...: llama */
	ROPE_NEOX, /* rotate (x_i, x_{i+d/2}): qwen, phi3, gemma */
};

/* A 2-D weight: rows of `cols` elements, each row_bytes long.  A stack of
 * experts' matrices (a 3-D tensor) is n_mat such matrices one after the
 * other, matrix e at data + e * rows * row_bytes. */
struct weight {
	const void *data;
	uint32_t type;
	int64_t rows, cols;
	size_t row_bytes;
	uint32_t n_mat;      /* 1, or the experts in a 3-D tensor */
};

/* A 1-D f32 vector (norm weights, biases), converted at load if stored as
 * F16/BF16. */
struct vec {
	const float *data; /* NULL when absent */
	int64_t n;
};

struct layer {
	struct vec attn_norm, attn_post_norm, ffn_norm, ffn_post_norm;
	struct vec q_norm, k_norm;   /* per-head RMS norms (qwen3, gemma3) */
	struct weight wq, wk, wv, wo, wqkv;  /* wqkv: phi3 fused */
	struct vec bq, bk, bv;       /* qwen2 */
	struct weight w_gate, w_up, w_down; /* phi3: w_up holds gate|up (2*n_ff rows) */
	enum ffn_kind ffn;
	/* FFN_MOE: router [n_expert][n_embd], experts' gate/up [n_ff_exp][n_embd]
	 * and down [n_embd][n_ff_exp] each, stacked n_expert deep */
	struct weight ffn_gate_inp, gate_exps, up_exps, down_exps;
	/* optional biases: router [n_expert], experts' gate/up [n_expert][n_ff_exp]
	 * and down [n_expert][n_embd] (gpt-oss) */
	struct vec router_b, gate_exps_b, up_exps_b, down_exps_b;
	struct vec exp_probs_b;      /* added to the probabilities to choose, not to weigh (glm4moe) */
	struct vec bo;               /* attention output bias (gpt-oss) */
	struct vec sinks;            /* per query head, a logit in every softmax (gpt-oss) */
	bool swa;                    /* sliding-window layer (gemma3) */
	bool no_rope;                /* q and k unrotated (smollm3's every 4th layer) */
	/* granitemoe's shared expert, run beside the routed ones */
	struct weight gate_shexp, up_shexp, down_shexp;
	float rope_base;
	float rope_scale;            /* position scale of this layer (gemma3: 1 on SWA layers) */
	/* qwen35's attention: wq gives [q | gate] per head, and the output of
	 * each head is multiplied by sigmoid(gate) before wo */
	bool q_gated;
	/* qwen35moe: the shared expert's output times sigmoid(this row . x) */
	struct weight shexp_gate;
	/* A Gated DeltaNet layer (qwen35; hparams.ssm_*): instead of
	 * attention, a linear attention whose state lives in the cache's
	 * recurrent part, not in KV rows.  Per token: qkv = ssm_qkv x
	 * (conv_dim = 2 * key_dim + value_dim channels) through a causal
	 * convolution of ssm_conv_k taps and SiLU; q, k L2-normed; the delta
	 * rule per value head with decay exp(softplus(alpha x + dt) * a) and
	 * strength sigmoid(beta x); each head's output RMS-normed (ssm_norm)
	 * times silu(ssm_z x), then ssm_out. */
	bool recurrent;
	uint32_t rec_idx;            /* index among the recurrent layers */
	struct weight ssm_qkv, ssm_z, ssm_alpha, ssm_beta, ssm_out;
	struct vec ssm_conv;         /* [conv_dim][ssm_conv_k] taps */
	struct vec ssm_dt, ssm_a;    /* [ssm_heads_v] (a is -exp(A_log), as stored) */
	struct vec ssm_norm;         /* [ssm_state] */
	/* A short-convolution layer (lfm2; also recurrent, rec_idx): [b|c|x]
	 * = sc_in x, y = c * conv(b * x) over sc_l taps, then sc_out. */
	bool shortconv;
	struct weight sc_in, sc_out;
	struct vec sc_conv;          /* [n_embd][sc_l] taps */

	/* Gemma 4's block (hparams.layer_shapes; gemma4_layer() in forward.c) */
	uint32_t head_dim, n_head_kv, n_rot, n_ff;  /* this layer's shapes */
	int32_t kv_src;              /* attends over this earlier layer's K/V (own: itself) */
	bool v_is_k;                 /* no attn_v: V is K's projection (before its norm) */
	bool rope_ff;                /* the model's rope_freqs apply (global layers' partial rope) */
	struct vec out_scale;        /* [1]: the layer's output multiplied by it, or absent */
	/* per-layer input: gate [n_embd_pl rows of n_embd], proj [n_embd rows of n_embd_pl] */
	struct weight ple_gate, ple_proj;
	struct vec ple_post_norm;
	/* a mixture beside the dense FFN: router input scale [n_embd], the
	 * experts' input norm, the two outputs' norms, per-expert scale [n_expert] */
	struct vec router_s, pre_norm_2, post_norm_1, post_norm_2, down_exps_s;
};

struct hparams {
	uint32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff;
	uint32_t head_dim;           /* key/value length per head */
	uint32_t n_rot;              /* rotated dims per head */
	uint32_t n_ctx_train;
	uint32_t n_swa;              /* sliding window (0: none) */
	float rope_base, rope_base_swa;
	float rope_scale;            /* position scale, 1/rope.scaling.factor (1: none) */
	/* YaRN (ggml's rope_yarn): ext_factor 1 mixes extrapolated and
	 * interpolated angles over the dims between the correction dims of
	 * beta_fast and beta_slow at n_ctx_orig; cos and sin are multiplied by
	 * rope_mscale (attention factor), so q.k by its square. */
	float rope_ext_factor;       /* 0: no YaRN ramp */
	float rope_mscale;           /* 1: none */
	float yarn_beta_fast, yarn_beta_slow;
	uint32_t n_ctx_orig;         /* rope.scaling.original_context_length */
	float final_softcap;         /* logits = cap * tanh(logits / cap); 0: none */
	float norm_eps;
	float attn_scale;            /* multiplies q.k */
	float embd_scale;            /* multiplies token embeddings (gemma: sqrt(n_embd)) */
	float res_scale;             /* multiplies attention and FFN outputs before the
				      * residual add (granite; 0: none) */
	float logit_scale;           /* logits multiplied by 1/logit_scale (granite; 0: none) */
	/* mistral3's attention temperature: q of position p multiplied by
	 * 1 + attn_temp_scale * ln(floor(p / n_ctx_orig) + 1) (0: none) */
	float attn_temp_scale;
	uint32_t n_ff_shexp;         /* shared expert width (0: none) */
	/* Qwen3-VL's interleaved multi-axis rope (rope.dimension_sections):
	 * text tokens have the same position on its t, h and w axes and 0 on
	 * the fourth, so a pair the interleave gives that axis stays unrotated
	 * (only scaled by YaRN's factor); the others rotate as NEOX */
	bool imrope;
	int32_t rope_sections[4];
	enum ffn_act act;            /* the gate's activation */
	/* mixture of experts (0 experts: none) */
	uint32_t n_expert, n_expert_used, n_ff_exp;
	enum moe_gating moe_gating;
	uint32_t n_expert_groups, n_group_used;  /* choose among the best groups only (0: no groups) */
	uint32_t n_dense_lead;       /* leading layers with a dense FFN (glm4moe) */
	bool moe_norm_w;             /* renormalise the chosen weights to sum 1 */
	float moe_w_scale;           /* then multiply them (1: none) */
	enum rope_style rope_style;
	enum arch arch;
	/* Gated DeltaNet (qwen35): n_recurrent of the layers are recurrent
	 * (struct layer's recurrent); key heads of ssm_state, value heads of
	 * ssm_state (value head h reads key head h % ssm_heads_k) */
	uint32_t n_recurrent;
	uint32_t ssm_conv_k;         /* convolution taps (ssm.conv_kernel) */
	uint32_t ssm_state;          /* head size of keys and values (ssm.state_size) */
	uint32_t ssm_heads_k;        /* ssm.group_count */
	uint32_t ssm_heads_v;        /* ssm.time_step_rank */
	uint32_t sc_l;               /* lfm2: short convolution taps (shortconv.l_cache; 0: none) */
	bool rec_layer[1024];        /* which layers are recurrent (a copy of
				      * the layers' flags, for the KV cache) */
	/* gemma4: head sizes, KV heads, rope dims and FFN widths vary by layer
	 * (struct layer's; head_dim, n_head_kv, n_rot and n_ff above are then
	 * the largest), K/V shared across layers, per-layer inputs */
	bool layer_shapes;
	uint32_t n_embd_pl;          /* per-layer input width (0: none) */
	uint32_t kv_dim;             /* the widest layer's n_head_kv * head_dim */
	const int32_t *kv_src;       /* [n_layer] the layer whose K/V each attends over, or NULL */
	const uint32_t *kv_dims;     /* [n_layer] each layer's n_head_kv * head_dim, or NULL */
};

/* Channels of a Gated DeltaNet layer's convolution: q, k, v. */
static inline size_t ssm_conv_dim(const struct hparams *hp)
{
	return (size_t)hp->ssm_state * (2u * hp->ssm_heads_k + hp->ssm_heads_v);
}

/* Floats of one recurrent layer's state: the last conv_k - 1 inputs of
 * each convolution channel, then a [ssm_state][ssm_state] matrix per value
 * head. */
static inline size_t ssm_state_floats(const struct hparams *hp)
{
	if (hp->n_recurrent == 0)
		return 0;
	if (hp->sc_l > 0)   /* lfm2: the last sc_l - 1 inputs of each channel */
		return (size_t)hp->n_embd * (hp->sc_l - 1);
	return ssm_conv_dim(hp) * (hp->ssm_conv_k - 1) +
	       (size_t)hp->ssm_heads_v * hp->ssm_state * hp->ssm_state;
}

struct model {
	gguf_file *gguf;
	struct hparams hp;
	struct weight tok_embd, output;  /* output may alias tok_embd (tied) */
	struct vec output_norm;
	struct vec rope_freqs;           /* optional per-dim frequency factors */
	struct vec rope_long, rope_short; /* longrope factors (phi3): long past n_ctx_orig */
	struct layer *layers;
	/* gemma4's per-layer inputs: token rows [n_vocab][n_layer * n_embd_pl],
	 * projection [n_layer * n_embd_pl rows of n_embd], its norm [n_embd_pl] */
	struct weight ple_embd, ple_model_proj;
	struct vec ple_proj_norm;
	int32_t *kv_src;                 /* hp.kv_src's storage */
	uint32_t *kv_dims;               /* hp.kv_dims' storage */
	float *owned_f32;                /* converted small vectors */
	size_t owned_f32_bytes;
	uint64_t n_params;
	char arch_name[32];
	char name[128];
	char quant[32];
};

/* Opens PATH and fills *m.  Returns 0, or a negative engine_status with a
 * one-line message in err (ENGINE_E_NOMEM when memory ran out).  abort_flag
 * (may be NULL) is polled. */
int model_load(struct model *m, const char *path, const volatile int *abort_flag,
	       char *err, size_t errlen);
void model_free(struct model *m);

const char *arch_name(enum arch a);

/* Which of the N_LAYER layers of a Gated DeltaNet family (qwen35) are
 * recurrent, llama.cpp's rule: the file's "<arch>.attention.recurrent_layers"
 * (bools, or int32s), else every layer but each INTERVAL-th.  False when
 * the file's list is there but not one entry per layer. */
bool model_recurrent_layers(const gguf_file *g, const char *arch, uint32_t n_layer, uint32_t interval, bool *rec);

/* The per-pair frequency factors the rope of a context of N_CTX positions
 * divides by (rope_freqs, else longrope's long factors when n_ctx exceeds
 * the original context, else its short ones), or NULL. */
const float *model_rope_factors(const struct model *m, uint32_t n_ctx);

#endif
