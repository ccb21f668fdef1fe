/*
 * forward.h - the transformer forward pass, its KV cache, and how the
 * layers split between the CPU and a GPU (engine-internal; owned by the
 * engine thread).
 *
 * Each architecture is a description, not code of its own: model.c's
 * table of families (which blocks a family's layers hold) turns every
 * supported file into one struct model (hyper-parameters, rope style,
 * sliding window, and per layer the weights it has: biases, per-head q/k
 * norms, post-norms, fused qkv, and its feed-forward block: dense, fused
 * gate|up, or a routed mixture of experts), and the passes compose a layer
 * from those blocks; no pass tests a family's name.  Gemma 4's layer, whose
 * shapes vary by layer and whose blocks interleave differently (shared
 * K/V, experts beside the dense FFN, per-layer inputs), is one function of
 * its own (gemma4_layer, chosen by hparams.layer_shapes; CPU only).  Each backend has its own pass over it:
 * fwd_eval() in forward.c runs the CPU's, forward_cuda.c the GPU's
 * (fwd_cuda_eval), the same steps in the same order (each GPU step names
 * the CPU step it mirrors; tests/test_cuda_forward compares them).  The
 * CPU pass calls its operations through a table private to forward.c
 * (struct backend, whose one instance is the CPU's), which keeps the pass
 * apart from the kernels; the GPU does not plug into that table (the top
 * of forward_cuda.c says why).
 *
 * A KV cache belongs to one conversation: per layer, K and V rows for each
 * position, [pos][kv_head][head_dim], in one of kvquant.h's types (K and V
 * each their own; quantised rows rotated per head, kvquant.h), grown on demand up to
 * n_ctx positions, plus the token ids they were computed from.  Where
 * head sizes vary by layer (gemma4) each layer's rows are as wide as its
 * own KV heads (kv_row); a layer that shares an earlier layer's K/V has no
 * rows of its own (k[l] aliases them).
 *
 * With a GPU (forward_cuda.h) the first gpu_layers layers run on the
 * device: fwd_init_split() prepares CPU weights only for the layers from
 * cpu_first on, and fwd_eval() hands the device part to fwd_cuda_eval()
 * before it runs the remaining layers here.  The host KV rows stay the
 * authoritative copy of every layer (snapshots read them); the device
 * keeps a mirror of the layers it runs, for the cache it last ran.
 */
#ifndef TTYCHAT_FORWARD_H
#define TTYCHAT_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "pool.h"

/* A copy of the recurrent states at one position (hybrid models). */
struct kv_ckpt {
	uint32_t pos;
	float *rs;          /* n_rec * rs_floats */
};

/* Checkpoints kept per conversation (llama.cpp's server keeps 8 by default);
 * when full, the one whose loss leaves the smallest gap goes, never the
 * newest. */
#define KV_MAX_CKPT 8
/* A long prefill takes a checkpoint at least every this many tokens. */
#define KV_CKPT_EVERY 1024

struct kv_cache {
	uint32_t type_k, type_v; /* kvquant.h's types (F16, Q8_0, ..., KVQ_Q3R) */
	uint32_t rot_seed;  /* 0: no rotation; else the seed of the sign vector */
	bool rot_k, rot_v;  /* K (V) rows stored rotated (rot_seed and a quantised type) */
	uint32_t n_layer;
	uint32_t kv_dim;    /* n_head_kv * head_dim */
	size_t row_k, row_v; /* one position of one layer, K and V */
	uint32_t n_ctx;     /* hard limit */
	uint32_t cap;       /* positions allocated */
	uint32_t n;         /* positions filled */
	void **k, **v;      /* [n_layer] arrays of cap rows */
	int32_t *tokens;    /* [cap] */
	const int32_t *src; /* [n_layer]: k[l]/v[l] alias layer src[l]'s when not l
			       (gemma4's shared K/V; the model's hp.kv_src), or NULL */
	size_t *lrow_k, *lrow_v; /* [n_layer]: each layer's row bytes where they
			       differ (gemma4; row_k/row_v are then the widest), or NULL */
	float *rot_signs;   /* [KVQ_MAX_HEAD] signs of the rotation, or NULL */
	uint64_t dev_tag;   /* which device mirror holds this cache's GPU layers (0: none) */
	/* Hybrid recurrent models (qwen35): the recurrent layers have no
	 * rows (k[l], v[l] NULL) but a state (ssm_state_floats floats each)
	 * that holds the whole history up to position n.  A pass writes the
	 * new states into rs_next and swaps it in only when the whole batch
	 * succeeded, so a cancelled batch leaves the cache as it was.  Such a
	 * state cannot be cut at any position: kv_truncate() goes back to the
	 * newest checkpoint at or before the position asked for. */
	uint32_t n_rec;
	size_t rs_floats;
	float *rs, *rs_next;        /* [n_rec][rs_floats] */
	struct kv_ckpt ck[KV_MAX_CKPT];
	int n_ck;
};

/* 0 or a negative engine_status.  No positions are allocated yet.
 * kv_init_types: K rows of TYPE_K, V rows of TYPE_V (kvquant.h), the
 * quantised ones rotated with ROT_SEED (0: none).  ENGINE_E_FORMAT when a
 * type is not a KV type or the model's head sizes are not a multiple of its
 * block.  kv_init: both TYPE, rotated (KVQ_ROT_SEED) unless F16. */
int kv_init(struct kv_cache *kv, const struct hparams *hp, uint32_t type, uint32_t n_ctx);
int kv_init_types(struct kv_cache *kv, const struct hparams *hp, uint32_t type_k, uint32_t type_v,
		  uint32_t rot_seed, uint32_t n_ctx);
/* The head sizes of HP that TYPE cannot hold: 0 when every layer's head
 * fits TYPE's blocks, else the first head size that does not. */
uint32_t kv_bad_head(const struct hparams *hp, uint32_t type);
/* Makes room for n positions (<= n_ctx).  0 or ENGINE_E_NOMEM/INVAL. */
int kv_reserve(struct kv_cache *kv, uint32_t n);
/* Forgets positions from n on.  With recurrent layers the cache goes
 * back to the newest checkpoint at or before n (or to empty), so kv->n
 * may end below n: the caller recomputes from kv->n. */
void kv_truncate(struct kv_cache *kv, uint32_t n);
/* Keeps a copy of the recurrent states at kv->n (nothing for models
 * without recurrent layers).  0, or ENGINE_E_NOMEM (the cache is intact). */
int kv_checkpoint(struct kv_cache *kv);
/* Snapshots: the bytes of the cache's positions and states in one flat
 * blob (rows of the attention layers, then the recurrent states and
 * checkpoints), and back; kv_unpack takes a cache from kv_init and
 * returns 0 or ENGINE_E_FORMAT (LEN does not fit) / ENGINE_E_NOMEM. */
size_t kv_pack_bytes(const struct kv_cache *kv, uint32_t n, int n_ck);
void kv_pack(const struct kv_cache *kv, unsigned char *out);
int kv_unpack(struct kv_cache *kv, uint32_t n, int n_ck, const unsigned char *in, size_t len);
size_t kv_bytes(const struct kv_cache *kv);
/* Whether layer keeps rows of its own (false: it reads another's). */
bool kv_owns(const struct kv_cache *kv, uint32_t layer);
/* Bytes of one position of layer's K (V). */
size_t kv_row_k(const struct kv_cache *kv, uint32_t layer);
size_t kv_row_v(const struct kv_cache *kv, uint32_t layer);
/* What a cache of n_ctx positions with K of TYPE_K and V of TYPE_V takes
 * for the model of HP (the layers with rows of their own), or 0 for a
 * type the heads cannot use. */
uint64_t kv_bytes_for(const struct hparams *hp, uint32_t type_k, uint32_t type_v, uint32_t n_ctx);
void kv_free(struct kv_cache *kv);

struct backend;   /* forward.c: the CPU pass's operations */

struct fwd {
	const struct model *m;
	const struct backend *be;
	pool *pool;
	int max_batch;
	uint32_t n_ctx;
	/* activations, max_batch rows each */
	float *x, *xn, *q, *k, *v, *att, *o, *gate, *up;
	float *logits;      /* logits_rows * n_vocab (grown when all logits are asked) */
	int logits_rows;
	void *xact;         /* quantised activations */
	size_t xact_row_cap;
	float *scores;      /* n_threads * n_ctx */
	float *vrow;        /* n_threads * head_dim (a decoded K or V row) */
	float *qrot;        /* n_threads * a work item's rotated queries and sums */
	size_t bytes;          /* everything allocated here, packed_bytes included */
	struct fwd_mats *mats; /* the weights prepared for the kernels (forward.c) */
	size_t packed_bytes;   /* interleaved copies of weights (extra weight memory) */
	/* Optional, polled before each layer of a batch (T > 1) on the CPU:
	 * true stops the pass with ENGINE_E_CANCELLED and nothing appended to
	 * the cache, so a cancel waits for one layer, not a whole batch. */
	bool (*stop)(void *ctx);
	void *stop_ctx;
	uint32_t cpu_first;    /* first layer run here; those below run on the GPU */
	struct fwd_cuda *cuda; /* the GPU part (forward_cuda.c), or NULL */
};

/* Prefill batch sizes.  A bigger batch reads every weight fewer times
 * (1B F16, 512 tokens: 64 -> 128 -> 256 tokens per batch gave +10% and
 * +17%; SmolLM2 +36% at 256), but the engine reports progress per batch
 * (a cancel is polled per layer, fwd.stop): the batcher starts at
 * FWD_BATCH_START tokens and doubles while a full batch takes under
 * FWD_BATCH_FAST_MS, halves while one takes over FWD_BATCH_SLOW_MS,
 * between FWD_BATCH_MIN and FWD_BATCH_MAX (the max_batch to give
 * fwd_init). */
#define FWD_BATCH_MIN 16
#define FWD_BATCH_START 64
#define FWD_BATCH_MAX 256
#define FWD_BATCH_FAST_MS 1000.0
#define FWD_BATCH_SLOW_MS 4000.0

struct fwd_batcher {
	int cur;   /* tokens of the next full batch; 0 = FWD_BATCH_START */
};

/* Tokens to evaluate next out of REMAINING (> 0). */
int fwd_batch_next(struct fwd_batcher *b, int remaining);
/* Reports that a batch of N tokens took MS milliseconds. */
void fwd_batch_done(struct fwd_batcher *b, int n, double ms);

/* Scratch for batches of up to max_batch tokens and contexts up to n_ctx. */
int fwd_init(struct fwd *f, const struct model *m, pool *p, uint32_t n_ctx, int max_batch);
/* The same, preparing CPU weights only for layers cpu_first .. n_layer-1
 * (and the output matrix only when cpu_first < n_layer): the layers below
 * must be given to fwd_cuda_attach() before the first fwd_eval(). */
int fwd_init_split(struct fwd *f, const struct model *m, pool *p, uint32_t n_ctx, int max_batch,
		   uint32_t cpu_first);
void fwd_free(struct fwd *f);
/* Makes room for n rows of logits in f->logits.  0 or ENGINE_E_NOMEM. */
int fwd_logits_reserve(struct fwd *f, int n);

/* Runs n tokens at positions kv->n .. kv->n+n-1 (n <= max_batch), appending
 * their K/V to the cache.  Logits of the last token (all_logits: of every
 * token, row t at logits + t*n_vocab) are left in f->logits.  Returns 0 or a
 * negative engine_status (ENGINE_E_CONTEXT when the cache is full). */
int fwd_eval(struct fwd *f, struct kv_cache *kv, const int32_t *tokens, int n, bool all_logits);

#endif
