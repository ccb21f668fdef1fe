/*
 * forward_cuda.c - the first layers of the forward pass on the GPU, through
 * the C API of engine/cuda/cuda_backend.h only: the GPU's own pass over
 * the architecture description (struct model) that forward.c's CPU pass
 * also reads (forward.h).
 *
 * Why a second sequence of operations and not a second backend table:
 * forward.c's table (struct backend) works per token on host pointers
 * inside pool jobs (its rmsnorm and rope are called on one row of a
 * host batch, its matmul takes prepared struct quant_matrix weights), so a
 * GPU behind that table would copy every activation across the bus for
 * every operation.  Here the whole layer runs on device buffers and only
 * the embeddings go up and the residual stream (or the logits) and the
 * new K/V rows come down, once per fwd_eval().  The sequence is the same
 * as forward.c's, op for op (biases, per-head q/k norms, rope with the
 * layer's base and the model's frequency factors, the fused qkv and
 * gate|up of phi3, the post-norms and GELU of gemma3, the embedding scale,
 * the sliding window); the comment of each step names the CPU step it
 * mirrors.  Keeping them in step is a cost, paid for a CPU pass that stays
 * as fast as it is.
 *
 * Decode (T = 1) runs one matrix-vector product per weight.  Prefill
 * (T > 1) runs as batched work (layer_batch): every weight is dequantised
 * into f16 tiles and multiplied with the f16 activations of all T tokens
 * by cuBLAS GemmEx on the tensor cores, the small ops run over T rows, and
 * attention is the tiled causal prefill kernel.  Where cuBLAS cannot be
 * loaded, the head size has no prefill kernel, the batch buffers do not
 * fit or TTYCHAT_CUDA_GEMM=0 (setup_batch says why), prefill runs the
 * decode sequence token by token instead.  Either way each token's
 * residual row has its own slot of a [max_batch][E] device buffer, so the
 * host copies happen once per batch.
 *
 * Decode steps replay CUDA graphs (decode_graph): the launches of one
 * step are captured once per context bucket (positions up to 256, 512,
 * ..., n_ctx) and replayed for every token of the bucket; the position is
 * the one value that changes, and the kernels that need it (rope, the KV
 * row stores, attention, whose grid is sized for the bucket and whose
 * empty chunks drop out in the merge) read it from a device word uploaded
 * before each replay.  A graph holds only pointers into this attachment's
 * buffers, so conversations share it (the mirror they bind is the same
 * memory).  If a capture fails, or with TTYCHAT_CUDA_GRAPHS=0, decode runs
 * as plain launches.
 *
 * KV cache: the host cache (struct kv_cache) stays the authoritative copy
 * of every layer.  The device keeps a mirror of the GPU layers (the host
 * cache's type, F16 or Q8_0, in the same row layout; n_ctx positions,
 * allocated at attach so nothing grows mid-conversation) for
 * the cache it last ran, recognised by kv->dev_tag; another cache is
 * uploaded into the mirror when it is run (a conversation switch costs one
 * copy of its rows).  Each new K/V row is written to the mirror and to a
 * staging buffer that comes down once per fwd_eval(), so the host rows are
 * complete after every call: KV snapshots (engine_conv_export/import),
 * truncation and eviction work unchanged.  The price is host memory for
 * the GPU layers' rows, as on the CPU.  Q8_0 rows are quantised on the
 * device exactly as the CPU quantises them, so the host rows are the same
 * bytes either engine would have written.
 *
 * The batched prefill, the decode graphs and the Q8_0 KV cache were
 * written in a session without a GPU (like the rest of this file): they
 * compile warning-free, and their device tests (make check-cuda) have not
 * run yet.
 *
 * Unverified on a device in the session that wrote it (no GPU was lent):
 * it compiles warning-free against cuda_backend.h, whose kernels are
 * tested against the CPU reference by tests/test_cuda_kernels; the pass
 * itself is checked by tests/test_cuda_forward (make check-cuda) where a
 * GPU exists.
 */
#include "config.h"

#include "forward_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "forward.h"
#include "gguf.h"
#include "kvquant.h"
#include "quant.h"

int fwd_init_device(struct fwd *f, const struct model *m, pool *p, uint32_t n_ctx, int max_batch,
		    const struct fwd_device_opts *o, char *backend, size_t backend_len, char *notice,
		    size_t notice_len)
{
	const uint32_t nl = m->hp.n_layer;
	struct fwd_cuda_plan plan;
	uint32_t n_gpu = 0;
	snprintf(backend, backend_len, "cpu");
	snprintf(notice, notice_len, "%s", "");
	memset(&plan, 0, sizeof plan);
	if (o->device != ENGINE_DEVICE_CPU && o->gpu_layers != ENGINE_GPU_LAYERS_NONE) {
		fwd_cuda_plan(m, n_ctx, max_batch, o->kv_type, o->gpu_layers > 0 ? o->gpu_layers : 0, &plan);
		n_gpu = plan.n_layers;
		const uint32_t tv = o->kv_type_v ? o->kv_type_v : o->kv_type;
		if (tv != o->kv_type || o->kv_rotated ||
		    (o->kv_type != GGML_TYPE_F16 && o->kv_type != GGML_TYPE_Q8_0)) {
			n_gpu = 0;
			snprintf(plan.why, sizeof plan.why, "CUDA: no kernel for a K %s / V %s%s KV cache",
				 kvq_name(o->kv_type), kvq_name(tv), o->kv_rotated ? " rotated" : "");
		}
		if (n_gpu == 0) {
			/* AUTO stays quiet when there simply is no usable device */
			if (o->device == ENGINE_DEVICE_CUDA || plan.device[0])
				snprintf(notice, notice_len, "%.200s; running on the CPU",
					 plan.why[0] ? plan.why : "CUDA: no layer fits");
		} else if (plan.why[0]) {
			snprintf(notice, notice_len, "%.200s; the other %u run on the CPU", plan.why, nl - n_gpu);
		}
	}
	for (;;) {
		int rc = fwd_init_split(f, m, p, n_ctx, max_batch, n_gpu);
		if (rc || n_gpu == 0)
			return rc;
		char why[200];
		uint32_t retry = 0;
		if (fwd_cuda_attach(f, o->kv_type, &retry, why, sizeof why) == 0)
			break;
		fwd_free(f);
		if (retry >= n_gpu)
			retry = n_gpu - 1;
		if (retry)
			snprintf(notice, notice_len, "%s; fell back to %u GPU layers", why, retry);
		else
			snprintf(notice, notice_len, "%s; running on the CPU", why);
		n_gpu = retry;
	}
	snprintf(backend, backend_len, "cuda: %.48s (%u/%u layers)", plan.device, n_gpu, nl);
	return 0;
}

#ifdef HAVE_CUDA_TOOLKIT

#include "cuda/cuda_backend.h"

#define MIB ((uint64_t)1 << 20)
#define ALIGN 256u

/* device copies of one layer's weights and vectors, and its KV mirror */
struct fc_layer {
	struct cuda_weight wq, wk, wv, wo, wqkv, w_gate, w_up, w_down;
	float *attn_norm, *attn_post_norm, *ffn_norm, *ffn_post_norm, *q_norm, *k_norm, *bq, *bk, *bv;
	struct cuda_buf k, v;        /* [n_ctx][KD] F16 */
};

struct fwd_cuda {
	cuda_ctx *ctx;
	uint32_t n;                  /* layers here */
	struct fc_layer *L;
	struct cuda_weight output;   /* when all layers are here */
	float *output_norm, *rope_freqs;
	struct cuda_buf vecs;        /* every f32 vector, 256-byte aligned slots */
	struct cuda_buf scratch;
	float *x;                    /* [max_batch][E] residual rows */
	float *xn, *qkv, *att, *o, *gate, *up, *logits;
	void *ws;                    /* attention workspace */
	size_t ws_bytes;
	uint16_t *stage;             /* [layer][K|V][T][KD] new rows of a call */
	void *stage_host;
	size_t stage_bytes;          /* for max_batch tokens */
	uint64_t tag_clock, bound_tag;
	uint32_t mirror_n;           /* rows of the bound cache in the mirror */
	/* prefill (T > 1) as batched work, when cuBLAS and the prefill
	 * attention kernel are usable (see batch_bytes) */
	bool gemm;
	char gemm_why[200];          /* why not ("" when gemm) */
	struct cuda_buf batch;
	uint16_t *bx16;              /* [max_batch][max(E, QD, F)] f16 activations */
	float *bxn, *bq, *bk, *bv, *batt, *bo, *bgate, *bup, *bfused, *blogits;
	void *tile;                  /* f16 tile of a dequantised weight */
	size_t tile_bytes;
	int logit_rows;              /* rows of blogits */
	char mode[240];              /* fwd_cuda_prefill_mode()'s answer */
	/* decode graphs (decode_graph), one per context bucket */
	uint32_t *pos_dev;           /* the position a replay reads */
	cuda_graph *graph[32];
	bool graph_off, capturing;
	char graph_why[240];
	uint32_t kv_type;            /* of the mirror: GGML_TYPE_F16 or GGML_TYPE_Q8_0, as the host cache */
	bool failed;
	char err[256];
};

static uint64_t al(uint64_t n)
{
	return (n + ALIGN - 1) / ALIGN * ALIGN;
}

static uint64_t weight_dev_bytes(const struct weight *w)
{
	return w->data ? al((uint64_t)w->rows * ggml_row_bytes(w->type, (uint64_t)w->cols)) : 0;
}

static const struct vec *layer_vecs(const struct layer *l, int i)
{
	const struct vec *v[] = {&l->attn_norm, &l->attn_post_norm, &l->ffn_norm, &l->ffn_post_norm,
				 &l->q_norm, &l->k_norm, &l->bq, &l->bk, &l->bv};
	return i < 9 ? v[i] : NULL;
}
#define N_LAYER_VECS 9

static const struct weight *layer_weight(const struct layer *l, int i)
{
	const struct weight *w[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->wqkv, &l->w_gate, &l->w_up, &l->w_down};
	return i < 8 ? w[i] : NULL;
}
#define N_LAYER_WEIGHTS 8

static uint64_t vec_dev_bytes(const struct vec *v)
{
	return v->data ? al((uint64_t)v->n * sizeof(float)) : 0;
}

/* Budget of the f16 tile a quantised weight is dequantised into for the
 * prefill GEMM, and the most logit rows computed at once. */
#define TILE_CAP (32 * MIB)
#define LOGIT_ROWS 16

static bool has_fused(const struct model *m)
{
	return m->hp.arch == ARCH_PHI3 || (m->hp.n_layer > 0 && m->layers[0].wqkv.data);
}

/* Device bytes of the batched (prefill) buffers: 0 for batches of 1. */
static uint64_t batch_bytes(const struct model *m, int max_batch, bool output)
{
	const struct hparams *hp = &m->hp;
	if (max_batch <= 1)
		return 0;
	const uint64_t B = (uint64_t)max_batch, E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
	const uint64_t QD = (uint64_t)hp->n_head * hp->head_dim, KD = (uint64_t)hp->n_head_kv * hp->head_dim;
	uint64_t w16 = E > QD ? E : QD;
	w16 = w16 > F ? w16 : F;
	uint64_t b = al(B * w16 * 2) + al(B * E * 4) + al(B * QD * 4) + 2 * al(B * KD * 4) + al(B * QD * 4) +
		     al(B * E * 4) + 2 * al(B * F * 4) + al(TILE_CAP + (uint64_t)hp->n_ff * 2 + E * 2);
	if (has_fused(m)) {
		const uint64_t fw = 2 * F > QD + 2 * KD ? 2 * F : QD + 2 * KD;
		b += al(B * fw * 4);
	}
	if (output)
		b += al((uint64_t)(max_batch < LOGIT_ROWS ? max_batch : LOGIT_ROWS) * V * 4);
	return b;
}

/* Device bytes of the scratch for N layers. */
static uint64_t scratch_bytes(const struct model *m, uint32_t n_ctx, int max_batch, uint32_t n, bool output,
			      uint64_t kvrow)
{
	const struct hparams *hp = &m->hp;
	const uint64_t E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
	const uint64_t QD = (uint64_t)hp->n_head * hp->head_dim, KD = (uint64_t)hp->n_head_kv * hp->head_dim;
	uint64_t b = al((uint64_t)max_batch * E * 4) + al(E * 4) + al((QD + 2 * KD) * 4) + al(QD * 4) +
		     al(E * 4) + al(2 * F * 4) + al(F * 4);
	if (output)
		b += al(V * 4);
	b += al(cuda_attn_decode_workspace((int)hp->n_head, (int)hp->n_head_kv, (int)hp->head_dim, n_ctx));
	b += al(2 * (uint64_t)n * (uint64_t)max_batch * kvrow);
	return b + al(sizeof(uint32_t));
}

static uint64_t layer_bytes(const struct model *m, uint32_t il, uint32_t n_ctx, uint64_t kvrow)
{
	const struct layer *l = &m->layers[il];
	uint64_t b = 2 * al((uint64_t)n_ctx * kvrow);
	for (int i = 0; i < N_LAYER_WEIGHTS; i++)
		b += weight_dev_bytes(layer_weight(l, i));
	for (int i = 0; i < N_LAYER_VECS; i++)
		b += vec_dev_bytes(layer_vecs(l, i));
	return b;
}

/* Device bytes of the first N layers with everything they need. */
static uint64_t need_bytes(const struct model *m, uint32_t n_ctx, int max_batch, uint32_t n, uint64_t kvrow)
{
	const bool output = n == m->hp.n_layer;
	uint64_t b = scratch_bytes(m, n_ctx, max_batch, n, output, kvrow) + batch_bytes(m, max_batch, output) +
		     vec_dev_bytes(&m->rope_freqs);
	for (uint32_t il = 0; il < n; il++)
		b += layer_bytes(m, il, n_ctx, kvrow);
	if (output)
		b += weight_dev_bytes(&m->output) + vec_dev_bytes(&m->output_norm);
	return b;
}

/* The most layers (<= cap) whose bytes fit FREE less the margin. */
static uint32_t fit_layers(const struct model *m, uint32_t n_ctx, int max_batch, uint64_t kvrow, uint64_t free_b,
			   uint64_t total, uint32_t cap, uint64_t *need)
{
	const uint64_t margin = 512 * MIB + total / 20;
	const uint64_t budget = free_b > margin ? free_b - margin : 0;
	uint32_t n = 0;
	*need = 0;
	for (uint32_t k = 1; k <= cap; k++) {
		const uint64_t b = need_bytes(m, n_ctx, max_batch, k, kvrow);
		if (b > budget)
			break;
		n = k;
		*need = b;
	}
	return n;
}

static void fmt_gib(char *buf, size_t n, uint64_t bytes)
{
	snprintf(buf, n, "%.1f GiB", (double)bytes / (double)(1024 * MIB));
}

void fwd_cuda_plan(const struct model *m, uint32_t n_ctx, int max_batch, uint32_t kv_type, int want,
		   struct fwd_cuda_plan *p)
{
	const struct hparams *hp = &m->hp;
	memset(p, 0, sizeof *p);
	if (cuda_backend_available(p->why, sizeof p->why) <= 0)
		return;
	struct cuda_device_info info;
	char err[256];
	if (cuda_device_query(0, &info, err, sizeof err) != 0) {
		snprintf(p->why, sizeof p->why, "no CUDA device: %.200s", err);
		return;
	}
	snprintf(p->device, sizeof p->device, "%s", info.name);
	p->vram_free = info.free_bytes;
	p->vram_total = info.total_bytes;
	if (hp->n_recurrent > 0) {
		snprintf(p->why, sizeof p->why, "CUDA: no Gated DeltaNet (recurrent layer) kernels yet");
		return;
	}
	if (hp->n_expert > 0) {
		snprintf(p->why, sizeof p->why, "CUDA: no mixture-of-experts kernels yet");
		return;
	}
	if (hp->layer_shapes) {
		snprintf(p->why, sizeof p->why, "CUDA: no kernels yet for head sizes that vary by layer, shared K/V or per-layer inputs (gemma4)");
		return;
	}
	bool plain = hp->res_scale == 0.0f && hp->logit_scale == 0.0f && hp->attn_temp_scale == 0.0f && !hp->imrope;
	for (uint32_t il = 0; il < hp->n_layer; il++)
		plain = plain && !m->layers[il].no_rope && !m->layers[il].bo.data && !m->layers[il].sinks.data;
	if (!plain) {
		snprintf(p->why, sizeof p->why,
			 "CUDA: no kernels yet for this family's residual/logit scales, temperature, rope sections, unrotated layers or output bias");
		return;
	}
	if (hp->rope_ext_factor != 0.0f || hp->rope_mscale != 1.0f || m->rope_long.data) {
		snprintf(p->why, sizeof p->why, "CUDA: the GPU rope has no YaRN, attention factor or longrope yet");
		return;
	}
	const uint64_t kvrow = cuda_kv_row_bytes(kv_type, (int64_t)hp->n_head_kv * hp->head_dim);
	if (kvrow == 0 || (kv_type == GGML_TYPE_Q8_0 && hp->head_dim % 32 != 0)) {
		snprintf(p->why, sizeof p->why, "CUDA: no kernel for a %s KV cache with head size %u (use f16)",
			 ggml_type_name(kv_type), hp->head_dim);
		return;
	}
	if (hp->n_rot < 2 || hp->n_rot % 2 || hp->n_rot > hp->head_dim ||
	    cuda_attn_decode_workspace((int)hp->n_head, (int)hp->n_head_kv, (int)hp->head_dim, n_ctx) == 0) {
		snprintf(p->why, sizeof p->why,
			 "CUDA: no kernel for this attention shape (%u heads, %u KV heads, head size %u, %u rotated)",
			 hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_rot);
		return;
	}
	/* the layers up to the first weight of a type without a kernel */
	uint32_t cap = hp->n_layer;
	for (uint32_t il = 0; il < hp->n_layer && cap == hp->n_layer; il++)
		for (int i = 0; i < N_LAYER_WEIGHTS; i++) {
			const struct weight *w = layer_weight(&m->layers[il], i);
			if (w->data && !cuda_type_supported(w->type)) {
				cap = il;
				snprintf(p->why, sizeof p->why, "CUDA: %s weights (layer %u) have no CUDA kernel",
					 ggml_type_name(w->type), il);
				break;
			}
		}
	if (cap == hp->n_layer && !cuda_type_supported(m->output.type)) {
		cap = hp->n_layer - 1;
		snprintf(p->why, sizeof p->why, "CUDA: the %s output matrix has no CUDA kernel",
			 ggml_type_name(m->output.type));
	}
	if (want > 0 && (uint32_t)want < cap)
		cap = (uint32_t)want;
	if (cap == 0)
		return;
	uint64_t need = 0;
	const uint32_t n = fit_layers(m, n_ctx, max_batch, kvrow, info.free_bytes, info.total_bytes, cap, &need);
	if (n < cap) {
		char fr[32], mg[32], one[32];
		fmt_gib(fr, sizeof fr, info.free_bytes);
		fmt_gib(mg, sizeof mg, 512 * MIB + info.total_bytes / 20);
		fmt_gib(one, sizeof one, need_bytes(m, n_ctx, max_batch, n + 1, kvrow));
		snprintf(p->why, sizeof p->why, "CUDA: %u of %u layers fit %s of free VRAM (%s kept free; %u need %s)",
			 n, cap, fr, mg, n + 1, one);
	}
	p->n_layers = n;
	p->output = n == hp->n_layer;
	p->need = need;
}

/* ---- attach / detach ---------------------------------------------------------- */

/* Frees every device buffer (the context stays). */
static void fc_free_buffers(struct fwd_cuda *fc)
{
	for (size_t i = 0; i < sizeof fc->graph / sizeof fc->graph[0]; i++) {
		cuda_graph_free(fc->ctx, fc->graph[i]);
		fc->graph[i] = NULL;
	}
	for (uint32_t il = 0; fc->L && il < fc->n; il++) {
		struct fc_layer *L = &fc->L[il];
		struct cuda_weight *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wqkv, &L->w_gate, &L->w_up, &L->w_down};
		for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
			cuda_weight_free(fc->ctx, w[i]);
		cuda_buf_free(fc->ctx, &L->k);
		cuda_buf_free(fc->ctx, &L->v);
	}
	cuda_weight_free(fc->ctx, &fc->output);
	cuda_buf_free(fc->ctx, &fc->vecs);
	cuda_buf_free(fc->ctx, &fc->scratch);
	cuda_buf_free(fc->ctx, &fc->batch);
}

static void fc_free(struct fwd_cuda *fc)
{
	if (!fc)
		return;
	if (fc->ctx) {
		fc_free_buffers(fc);
		cuda_ctx_free(fc->ctx);
	}
	free(fc->L);
	free(fc->stage_host);
	free(fc);
}

void fwd_cuda_detach(struct fwd *f)
{
	fc_free(f->cuda);
	f->cuda = NULL;
}

static int to_engine_status(int rc)
{
	switch (rc) {
	case CUDA_BE_OK: return 0;
	case CUDA_BE_ENOMEM: return ENGINE_E_NOMEM;
	case CUDA_BE_EINVAL: return ENGINE_E_INVAL;
	case CUDA_BE_EUNSUPPORTED: return ENGINE_E_FORMAT;
	default: return ENGINE_E_IO;
	}
}

/* Carves N bytes (256-aligned) from a device buffer at *off. */
static void *carve(struct cuda_buf *b, uint64_t *off, uint64_t n)
{
	void *p = (char *)b->ptr + *off;
	*off += al(n);
	return p;
}

static int upload_vecs(struct fwd_cuda *fc, const struct model *m, uint32_t n)
{
	uint64_t total = vec_dev_bytes(&m->rope_freqs) + (n == m->hp.n_layer ? vec_dev_bytes(&m->output_norm) : 0);
	for (uint32_t il = 0; il < n; il++)
		for (int i = 0; i < N_LAYER_VECS; i++)
			total += vec_dev_bytes(layer_vecs(&m->layers[il], i));
	if (total == 0)
		return 0;
	char *host = calloc(1, total);
	if (!host)
		return CUDA_BE_ENOMEM;
	int rc = cuda_buf_alloc(fc->ctx, &fc->vecs, total, CUDA_MEM_WEIGHTS);
	if (rc) {
		free(host);
		return rc;
	}
	uint64_t off = 0;
	/* places v in the next slot: its device address, or NULL when absent */
#define PLACE(v, dst)                                                                       \
	do {                                                                                \
		if ((v)->data) {                                                            \
			memcpy(host + off, (v)->data, (size_t)(v)->n * sizeof(float));      \
			(dst) = (float *)(void *)((char *)fc->vecs.ptr + off);              \
			off += vec_dev_bytes(v);                                            \
		}                                                                           \
	} while (0)
	for (uint32_t il = 0; il < n; il++) {
		const struct layer *l = &m->layers[il];
		struct fc_layer *L = &fc->L[il];
		PLACE(&l->attn_norm, L->attn_norm);
		PLACE(&l->attn_post_norm, L->attn_post_norm);
		PLACE(&l->ffn_norm, L->ffn_norm);
		PLACE(&l->ffn_post_norm, L->ffn_post_norm);
		PLACE(&l->q_norm, L->q_norm);
		PLACE(&l->k_norm, L->k_norm);
		PLACE(&l->bq, L->bq);
		PLACE(&l->bk, L->bk);
		PLACE(&l->bv, L->bv);
	}
	PLACE(&m->rope_freqs, fc->rope_freqs);
	if (n == m->hp.n_layer)
		PLACE(&m->output_norm, fc->output_norm);
#undef PLACE
	rc = cuda_upload(fc->ctx, fc->vecs.ptr, host, (size_t)off);
	free(host);
	return rc;
}

static int upload_weight(cuda_ctx *c, struct cuda_weight *dst, const struct weight *w)
{
	if (!w->data)
		return 0;
	return cuda_weight_upload(c, dst, w->type, w->rows, w->cols, w->data, w->row_bytes);
}

/* The batched prefill: cuBLAS, the prefill attention kernel and the
 * buffers of batch_bytes().  Without any of them (gemm_why says why)
 * prefill runs token by token; attaching does not fail for it. */
static void setup_batch(struct fwd_cuda *fc, const struct model *m, int max_batch)
{
	const struct hparams *hp = &m->hp;
	const bool output = fc->n == hp->n_layer;
	fc->gemm = false;
	if (max_batch <= 1) {
		snprintf(fc->gemm_why, sizeof fc->gemm_why, "batches of one token");
		return;
	}
	const char *env = getenv("TTYCHAT_CUDA_GEMM");
	if (env && strcmp(env, "0") == 0) {
		snprintf(fc->gemm_why, sizeof fc->gemm_why, "turned off by TTYCHAT_CUDA_GEMM=0");
		return;
	}
	if (!cuda_attn_prefill_supported((int)hp->n_head, (int)hp->n_head_kv, (int)hp->head_dim, fc->kv_type)) {
		snprintf(fc->gemm_why, sizeof fc->gemm_why, "no prefill attention kernel for head size %u (%s KV cache)",
			 hp->head_dim, ggml_type_name(fc->kv_type));
		return;
	}
	if (cuda_gemm_available(fc->ctx) != 0) {
		snprintf(fc->gemm_why, sizeof fc->gemm_why, "%s", cuda_ctx_error(fc->ctx));
		return;
	}
	/* the tile: a TILE_CAP share of the widest weight's rows */
	size_t tile = 0;
	for (uint32_t il = 0; il < fc->n; il++) {
		const struct fc_layer *L = &fc->L[il];
		const struct cuda_weight *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wqkv, &L->w_gate, &L->w_up, &L->w_down};
		for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
			const size_t t = w[i]->buf.ptr ? cuda_gemm_tile_bytes(w[i], TILE_CAP) : 0;
			tile = t > tile ? t : tile;
		}
	}
	if (output) {
		const size_t t = cuda_gemm_tile_bytes(&fc->output, TILE_CAP);
		tile = t > tile ? t : tile;
	}
	const uint64_t B = (uint64_t)max_batch, E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
	const uint64_t QD = (uint64_t)hp->n_head * hp->head_dim, KD = (uint64_t)hp->n_head_kv * hp->head_dim;
	uint64_t w16 = E > QD ? E : QD;
	w16 = w16 > F ? w16 : F;
	const uint64_t fw = has_fused(m) ? (2 * F > QD + 2 * KD ? 2 * F : QD + 2 * KD) : 0;
	fc->logit_rows = output ? (max_batch < LOGIT_ROWS ? max_batch : LOGIT_ROWS) : 0;
	const uint64_t total = al(B * w16 * 2) + al(B * E * 4) + al(B * QD * 4) + 2 * al(B * KD * 4) +
			       al(B * QD * 4) + al(B * E * 4) + 2 * al(B * F * 4) + al(tile) + al(B * fw * 4) +
			       al((uint64_t)fc->logit_rows * V * 4);
	if (cuda_buf_alloc(fc->ctx, &fc->batch, (size_t)total, CUDA_MEM_SCRATCH) != 0) {
		snprintf(fc->gemm_why, sizeof fc->gemm_why, "%s", cuda_ctx_error(fc->ctx));
		return;
	}
	uint64_t off = 0;
	fc->bx16 = carve(&fc->batch, &off, B * w16 * 2);
	fc->bxn = carve(&fc->batch, &off, B * E * 4);
	fc->bq = carve(&fc->batch, &off, B * QD * 4);
	fc->bk = carve(&fc->batch, &off, B * KD * 4);
	fc->bv = carve(&fc->batch, &off, B * KD * 4);
	fc->batt = carve(&fc->batch, &off, B * QD * 4);
	fc->bo = carve(&fc->batch, &off, B * E * 4);
	fc->bgate = carve(&fc->batch, &off, B * F * 4);
	fc->bup = carve(&fc->batch, &off, B * F * 4);
	fc->tile = tile ? carve(&fc->batch, &off, tile) : NULL;
	fc->tile_bytes = tile;
	fc->bfused = fw ? carve(&fc->batch, &off, B * fw * 4) : NULL;
	fc->blogits = fc->logit_rows ? carve(&fc->batch, &off, (uint64_t)fc->logit_rows * V * 4) : NULL;
	fc->gemm_why[0] = '\0';
	fc->gemm = true;
}

int fwd_cuda_attach(struct fwd *f, uint32_t kv_type, uint32_t *retry, char *why, size_t whylen)
{
	const struct model *m = f->m;
	const struct hparams *hp = &m->hp;
	const uint32_t n = f->cpu_first;
	const uint64_t KD = (uint64_t)hp->n_head_kv * hp->head_dim;
	const uint64_t kvrow = cuda_kv_row_bytes(kv_type, (int64_t)KD);
	*retry = 0;
	if (n == 0 || n > hp->n_layer || f->cuda) {
		snprintf(why, whylen, "CUDA: nothing to attach");
		return ENGINE_E_INVAL;
	}
	if (kvrow == 0 || (kv_type == GGML_TYPE_Q8_0 && hp->head_dim % 32 != 0)) {
		snprintf(why, whylen, "CUDA: no kernel for a %s KV cache with head size %u", ggml_type_name(kv_type),
			 hp->head_dim);
		return ENGINE_E_FORMAT;
	}
	struct fwd_cuda *fc = calloc(1, sizeof *fc);
	if (!fc || !(fc->L = calloc(n, sizeof *fc->L))) {
		free(fc);
		snprintf(why, whylen, "CUDA: out of host memory");
		return ENGINE_E_NOMEM;
	}
	int rc = cuda_ctx_create(&fc->ctx, 0, why, whylen);
	if (rc) {
		fc_free(fc);
		return to_engine_status(rc);
	}
	fc->n = n;
	fc->kv_type = kv_type;
	const char *what = "weights";
	for (uint32_t il = 0; il < n && !rc; il++) {
		const struct layer *l = &m->layers[il];
		struct fc_layer *L = &fc->L[il];
		struct cuda_weight *dst[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wqkv, &L->w_gate, &L->w_up, &L->w_down};
		for (int i = 0; i < N_LAYER_WEIGHTS && !rc; i++)
			rc = upload_weight(fc->ctx, dst[i], layer_weight(l, i));
		if (!rc) {
			rc = cuda_buf_alloc(fc->ctx, &L->k, (size_t)f->n_ctx * kvrow, CUDA_MEM_KV);
			if (!rc)
				rc = cuda_buf_alloc(fc->ctx, &L->v, (size_t)f->n_ctx * kvrow, CUDA_MEM_KV);
			if (rc)
				what = "the KV cache";
		}
	}
	if (!rc && n == hp->n_layer)
		rc = upload_weight(fc->ctx, &fc->output, &m->output);
	if (!rc) {
		what = "norms and biases";
		rc = upload_vecs(fc, m, n);
	}
	if (!rc) {
		what = "scratch buffers";
		const uint64_t E = hp->n_embd, F = hp->n_ff, QD = (uint64_t)hp->n_head * hp->head_dim;
		const bool output = n == hp->n_layer;
		rc = cuda_buf_alloc(fc->ctx, &fc->scratch, (size_t)scratch_bytes(m, f->n_ctx, f->max_batch, n, output, kvrow),
				    CUDA_MEM_SCRATCH);
		if (!rc) {
			uint64_t off = 0;
			fc->x = carve(&fc->scratch, &off, (uint64_t)f->max_batch * E * 4);
			fc->xn = carve(&fc->scratch, &off, E * 4);
			fc->qkv = carve(&fc->scratch, &off, (QD + 2 * KD) * 4);
			fc->att = carve(&fc->scratch, &off, QD * 4);
			fc->o = carve(&fc->scratch, &off, E * 4);
			fc->gate = carve(&fc->scratch, &off, 2 * F * 4);
			fc->up = carve(&fc->scratch, &off, F * 4);
			if (output)
				fc->logits = carve(&fc->scratch, &off, (uint64_t)hp->n_vocab * 4);
			fc->ws_bytes = cuda_attn_decode_workspace((int)hp->n_head, (int)hp->n_head_kv, (int)hp->head_dim,
								  f->n_ctx);
			fc->ws = carve(&fc->scratch, &off, fc->ws_bytes);
			fc->stage_bytes = 2 * (size_t)n * (size_t)f->max_batch * kvrow;
			fc->stage = carve(&fc->scratch, &off, fc->stage_bytes);
			fc->pos_dev = carve(&fc->scratch, &off, sizeof(uint32_t));
			fc->stage_host = malloc(fc->stage_bytes);
			if (!fc->stage_host) {
				snprintf(why, whylen, "CUDA: out of host memory");
				fc_free(fc);
				return ENGINE_E_NOMEM;
			}
		}
	}
	if (rc) {
		snprintf(why, whylen, "CUDA: uploading %s: %s", what, cuda_ctx_error(fc->ctx));
		if (rc == CUDA_BE_ENOMEM) {
			/* what fits now that this attempt is freed again */
			fc_free_buffers(fc);
			struct cuda_mem_usage u;
			uint64_t need = 0;
			if (cuda_mem_get_usage(fc->ctx, &u) == 0)
				*retry = fit_layers(m, f->n_ctx, f->max_batch, kvrow, u.dev_free, u.dev_total, n - 1, &need);
		}
		fc_free(fc);
		return to_engine_status(rc);
	}
	setup_batch(fc, m, f->max_batch);
	const char *genv = getenv("TTYCHAT_CUDA_GRAPHS");
	if (genv && strcmp(genv, "0") == 0) {
		fc->graph_off = true;
		snprintf(fc->graph_why, sizeof fc->graph_why, "turned off by TTYCHAT_CUDA_GRAPHS=0");
	}
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* tags of different attachments never meet */
	fc->tag_clock = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) << 16;
	f->cuda = fc;
	return 0;
}

/* ---- the pass ---------------------------------------------------------------- */

/* A failed call: the device part is not used again (the engine goes on
 * on the CPU); the context's message says what failed. */
static int fc_fail(struct fwd *f, int rc)
{
	struct fwd_cuda *fc = f->cuda;
	const char *msg = cuda_ctx_error(fc->ctx);
	/* a call rejected while capturing fails the capture only: the step
	 * then runs with plain launches (decode_graph) */
	if (!fc->capturing)
		fc->failed = true;
	if (msg[0])
		snprintf(fc->err, sizeof fc->err, "%s", msg);
	else
		snprintf(fc->err, sizeof fc->err, "CUDA error %d", rc);
	return to_engine_status(rc);
}

#define CK(call)                                   \
	do {                                       \
		int rc_ = (call);                  \
		if (rc_)                           \
			return fc_fail(f, rc_);    \
	} while (0)

/* Makes the mirror hold KV's rows of the GPU layers. */
static int bind_cache(struct fwd *f, struct kv_cache *kv)
{
	struct fwd_cuda *fc = f->cuda;
	uint32_t from;
	if (kv->dev_tag != 0 && kv->dev_tag == fc->bound_tag) {
		if (fc->mirror_n > kv->n)
			fc->mirror_n = kv->n;  /* truncated since */
		from = fc->mirror_n;
	} else {
		kv->dev_tag = ++fc->tag_clock;
		fc->bound_tag = kv->dev_tag;
		fc->mirror_n = 0;
		from = 0;
	}
	if (from < kv->n) {
		const size_t off = (size_t)from * kv->row_k, len = (size_t)(kv->n - from) * kv->row_k;
		for (uint32_t il = 0; il < fc->n; il++) {
			CK(cuda_upload(fc->ctx, (char *)fc->L[il].k.ptr + off, (const char *)kv->k[il] + off, len));
			CK(cuda_upload(fc->ctx, (char *)fc->L[il].v.ptr + off, (const char *)kv->v[il] + off, len));
		}
		fc->mirror_n = kv->n;
	}
	return 0;
}

/* One layer for the token whose residual row is X, at position POS, the
 * T_IDX-th of T in this call (its staging slot). */
static int layer_step(struct fwd *f, uint32_t il, float *x, uint32_t pos, int t_idx, int T, const uint32_t *pos_dev,
		      uint32_t bucket)
{
	struct fwd_cuda *fc = f->cuda;
	cuda_ctx *c = fc->ctx;
	const struct model *m = f->m;
	const struct hparams *hp = &m->hp;
	const struct layer *l = &m->layers[il];
	const struct fc_layer *L = &fc->L[il];
	const int64_t E = hp->n_embd, F = hp->n_ff, D = hp->head_dim;
	const int64_t QD = (int64_t)hp->n_head * D, KD = (int64_t)hp->n_head_kv * D;
	float *q = fc->qkv, *k = fc->qkv + QD, *v = fc->qkv + QD + KD;

	/* step_attn_norm / step_post_ffn: xn = attn_norm(x) */
	CK(cuda_rmsnorm(c, fc->xn, x, L->attn_norm, 1, E, hp->norm_eps));
	/* q, k, v (phi3: one fused [q|k|v] product) */
	if (L->wqkv.buf.ptr) {
		CK(cuda_matvec(c, &L->wqkv, fc->xn, fc->qkv));
	} else {
		CK(cuda_matvec(c, &L->wq, fc->xn, q));
		CK(cuda_matvec(c, &L->wk, fc->xn, k));
		CK(cuda_matvec(c, &L->wv, fc->xn, v));
	}
	/* step_qk: biases (qwen2), per-head norms (qwen3, gemma3), rope */
	if (L->bq)
		CK(cuda_add(c, q, L->bq, QD));
	if (L->bk)
		CK(cuda_add(c, k, L->bk, KD));
	if (L->bv)
		CK(cuda_add(c, v, L->bv, KD));
	if (L->q_norm) {
		CK(cuda_rmsnorm(c, q, q, L->q_norm, hp->n_head, D, hp->norm_eps));
		CK(cuda_rmsnorm(c, k, k, L->k_norm, hp->n_head_kv, D, hp->norm_eps));
	}
	const enum cuda_rope_style rs = hp->rope_style == ROPE_NEOX ? CUDA_ROPE_NEOX : CUDA_ROPE_NORM;
	if (pos_dev) {
		/* captured: the position is read from device memory on replay */
		CK(cuda_rope_dev(c, q, (int)hp->n_head, (int)D, (int)hp->n_rot, pos_dev, l->rope_base, l->rope_scale,
				 fc->rope_freqs, rs));
		CK(cuda_rope_dev(c, k, (int)hp->n_head_kv, (int)D, (int)hp->n_rot, pos_dev, l->rope_base,
				 l->rope_scale, fc->rope_freqs, rs));
	} else {
		CK(cuda_rope(c, q, 1, (int)hp->n_head, (int)D, (int)hp->n_rot, pos, l->rope_base, l->rope_scale,
			     fc->rope_freqs, rs));
		CK(cuda_rope(c, k, 1, (int)hp->n_head_kv, (int)D, (int)hp->n_rot, pos, l->rope_base, l->rope_scale,
			     fc->rope_freqs, rs));
	}
	/* store_kv: into the mirror and the staging rows that go to the host */
	const uint32_t kvt = fc->kv_type;
	const size_t srow = cuda_kv_row_bytes(kvt, KD);
	char *sk = (char *)fc->stage + ((size_t)il * 2 * (size_t)T + (size_t)t_idx) * srow;
	char *sv = (char *)fc->stage + (((size_t)il * 2 + 1) * (size_t)T + (size_t)t_idx) * srow;
	CK(cuda_kv_store(c, L->k.ptr, kvt, KD, pos, pos_dev, k, 1));
	CK(cuda_kv_store(c, L->v.ptr, kvt, KD, pos, pos_dev, v, 1));
	CK(cuda_kv_store(c, sk, kvt, KD, 0, NULL, k, 1));
	CK(cuda_kv_store(c, sv, kvt, KD, 0, NULL, v, 1));
	/* attention over the window (gemma3's sliding layers) or everything */
	const uint32_t window = l->swa ? hp->n_swa : 0;
	const uint32_t first = window && pos + 1 > window ? pos + 1 - window : 0;
	struct cuda_attn_args a = {
		.q = q, .k = L->k.ptr, .v = L->v.ptr, .kv_type = kvt,
		.n_head = (int)hp->n_head, .n_head_kv = (int)hp->n_head_kv, .head_dim = (int)D,
		.first = first, .n = pos + 1 - first, .scale = hp->attn_scale, .out = fc->att,
		.workspace = fc->ws, .workspace_bytes = fc->ws_bytes,
	};
	if (pos_dev) {
		/* the graph serves every position up to its bucket */
		a.pos_dev = pos_dev;
		a.window = window;
		a.first = 0;
		a.n = window && window < bucket ? window : bucket;
	}
	CK(cuda_attn_decode(c, &a));
	CK(cuda_matvec(c, &L->wo, fc->att, fc->o));
	/* step_post_attn: post norm (gemma3), residual, ffn norm */
	if (L->attn_post_norm)
		CK(cuda_rmsnorm(c, fc->o, fc->o, L->attn_post_norm, 1, E, hp->norm_eps));
	CK(cuda_add(c, x, fc->o, E));
	CK(cuda_rmsnorm(c, fc->xn, x, L->ffn_norm, 1, E, hp->norm_eps));
	/* feed-forward: phi3's fused [gate|up] rows, else gate and up */
	if (hp->arch == ARCH_PHI3) {
		CK(cuda_matvec(c, &L->w_up, fc->xn, fc->gate));
		CK(cuda_glu(c, fc->gate, fc->gate + F, F, CUDA_ACT_SILU));
	} else {
		CK(cuda_matvec(c, &L->w_gate, fc->xn, fc->gate));
		CK(cuda_matvec(c, &L->w_up, fc->xn, fc->up));
		CK(cuda_glu(c, fc->gate, fc->up, F, hp->arch == ARCH_GEMMA3 ? CUDA_ACT_GELU_TANH : CUDA_ACT_SILU));
	}
	CK(cuda_matvec(c, &L->w_down, fc->gate, fc->o));
	/* step_post_ffn: post norm (gemma3), residual */
	if (L->ffn_post_norm)
		CK(cuda_rmsnorm(c, fc->o, fc->o, L->ffn_post_norm, 1, E, hp->norm_eps));
	CK(cuda_add(c, x, fc->o, E));
	return 0;
}

/* x16 = f16(x) for N floats, then y[t] = W x16[t] for T tokens. */
static int gemm_f32(struct fwd *f, const struct cuda_weight *w, const float *x, int T, float *y)
{
	struct fwd_cuda *fc = f->cuda;
	CK(cuda_f32_to_f16(fc->ctx, fc->bx16, x, (int64_t)T * w->cols));
	CK(cuda_gemm(fc->ctx, w, fc->bx16, T, y, fc->tile, fc->tile_bytes));
	return 0;
}

#define GEMM(w, x, y)                                            \
	do {                                                     \
		int rc_ = gemm_f32(f, (w), (x), T, (y));         \
		if (rc_)                                         \
			return rc_;                              \
	} while (0)

/* One layer for the T tokens of the batch (residual rows at fc->x) at
 * positions pos0 .. pos0+T-1: layer_step's sequence with a GEMM per
 * weight, the small ops over T rows and the prefill attention kernel. */
static int layer_batch(struct fwd *f, uint32_t il, uint32_t pos0, int T)
{
	struct fwd_cuda *fc = f->cuda;
	cuda_ctx *c = fc->ctx;
	const struct model *m = f->m;
	const struct hparams *hp = &m->hp;
	const struct layer *l = &m->layers[il];
	const struct fc_layer *L = &fc->L[il];
	const int64_t E = hp->n_embd, F = hp->n_ff, D = hp->head_dim;
	const int64_t QD = (int64_t)hp->n_head * D, KD = (int64_t)hp->n_head_kv * D;
	float *x = fc->x;

	/* xn = attn_norm(x), [T][E] */
	CK(cuda_rmsnorm(c, fc->bxn, x, L->attn_norm, T, E, hp->norm_eps));
	if (L->wqkv.buf.ptr) {
		/* phi3: [T][QD + 2 KD] split into q, k, v */
		const size_t fs = (size_t)(QD + 2 * KD) * 4;
		GEMM(&L->wqkv, fc->bxn, fc->bfused);
		CK(cuda_copy2d(c, fc->bq, (size_t)QD * 4, fc->bfused, fs, (size_t)QD * 4, (size_t)T));
		CK(cuda_copy2d(c, fc->bk, (size_t)KD * 4, fc->bfused + QD, fs, (size_t)KD * 4, (size_t)T));
		CK(cuda_copy2d(c, fc->bv, (size_t)KD * 4, fc->bfused + QD + KD, fs, (size_t)KD * 4, (size_t)T));
	} else {
		GEMM(&L->wq, fc->bxn, fc->bq);
		GEMM(&L->wk, fc->bxn, fc->bk);
		GEMM(&L->wv, fc->bxn, fc->bv);
	}
	if (L->bq)
		CK(cuda_add_rows(c, fc->bq, L->bq, T, QD));
	if (L->bk)
		CK(cuda_add_rows(c, fc->bk, L->bk, T, KD));
	if (L->bv)
		CK(cuda_add_rows(c, fc->bv, L->bv, T, KD));
	if (L->q_norm) {
		CK(cuda_rmsnorm(c, fc->bq, fc->bq, L->q_norm, (int64_t)T * hp->n_head, D, hp->norm_eps));
		CK(cuda_rmsnorm(c, fc->bk, fc->bk, L->k_norm, (int64_t)T * hp->n_head_kv, D, hp->norm_eps));
	}
	const enum cuda_rope_style rs = hp->rope_style == ROPE_NEOX ? CUDA_ROPE_NEOX : CUDA_ROPE_NORM;
	CK(cuda_rope(c, fc->bq, T, (int)hp->n_head, (int)D, (int)hp->n_rot, pos0, l->rope_base, l->rope_scale,
		     fc->rope_freqs, rs));
	CK(cuda_rope(c, fc->bk, T, (int)hp->n_head_kv, (int)D, (int)hp->n_rot, pos0, l->rope_base, l->rope_scale,
		     fc->rope_freqs, rs));
	/* the T new rows into the mirror and the staging rows */
	const uint32_t kvt = fc->kv_type;
	const size_t srow = cuda_kv_row_bytes(kvt, KD);
	char *sk = (char *)fc->stage + ((size_t)il * 2) * (size_t)T * srow;
	char *sv = (char *)fc->stage + ((size_t)il * 2 + 1) * (size_t)T * srow;
	CK(cuda_kv_store(c, L->k.ptr, kvt, KD, pos0, NULL, fc->bk, T));
	CK(cuda_kv_store(c, L->v.ptr, kvt, KD, pos0, NULL, fc->bv, T));
	CK(cuda_kv_store(c, sk, kvt, KD, 0, NULL, fc->bk, T));
	CK(cuda_kv_store(c, sv, kvt, KD, 0, NULL, fc->bv, T));
	struct cuda_attn_prefill_args a = {
		.q = fc->bq, .k = L->k.ptr, .v = L->v.ptr, .kv_type = kvt,
		.n_head = (int)hp->n_head, .n_head_kv = (int)hp->n_head_kv, .head_dim = (int)D,
		.pos0 = pos0, .n_tok = T, .window = l->swa ? hp->n_swa : 0, .scale = hp->attn_scale,
		.out = fc->batt,
	};
	CK(cuda_attn_prefill(c, &a));
	GEMM(&L->wo, fc->batt, fc->bo);
	if (L->attn_post_norm)
		CK(cuda_rmsnorm(c, fc->bo, fc->bo, L->attn_post_norm, T, E, hp->norm_eps));
	CK(cuda_add(c, x, fc->bo, T * E));
	CK(cuda_rmsnorm(c, fc->bxn, x, L->ffn_norm, T, E, hp->norm_eps));
	if (hp->arch == ARCH_PHI3) {
		/* [T][gate | up] */
		GEMM(&L->w_up, fc->bxn, fc->bfused);
		CK(cuda_copy2d(c, fc->bgate, (size_t)F * 4, fc->bfused, (size_t)F * 8, (size_t)F * 4, (size_t)T));
		CK(cuda_copy2d(c, fc->bup, (size_t)F * 4, fc->bfused + F, (size_t)F * 8, (size_t)F * 4, (size_t)T));
		CK(cuda_glu(c, fc->bgate, fc->bup, T * F, CUDA_ACT_SILU));
	} else {
		GEMM(&L->w_gate, fc->bxn, fc->bgate);
		GEMM(&L->w_up, fc->bxn, fc->bup);
		CK(cuda_glu(c, fc->bgate, fc->bup, T * F, hp->arch == ARCH_GEMMA3 ? CUDA_ACT_GELU_TANH : CUDA_ACT_SILU));
	}
	GEMM(&L->w_down, fc->bgate, fc->bo);
	if (L->ffn_post_norm)
		CK(cuda_rmsnorm(c, fc->bo, fc->bo, L->ffn_post_norm, T, E, hp->norm_eps));
	CK(cuda_add(c, x, fc->bo, T * E));
	return 0;
}

/* The logits of tokens FIRST .. T-1 of the batch into f->logits: one
 * matvec for a single row, GEMMs of up to logit_rows rows otherwise. */
static int logits_batch(struct fwd *f, int first, int T)
{
	struct fwd_cuda *fc = f->cuda;
	const struct hparams *hp = &f->m->hp;
	const int64_t E = hp->n_embd, V = hp->n_vocab;
	if (T - first == 1) {
		float *x = fc->x + (size_t)first * (size_t)E;
		CK(cuda_rmsnorm(fc->ctx, fc->xn, x, fc->output_norm, 1, E, hp->norm_eps));
		CK(cuda_matvec(fc->ctx, &fc->output, fc->xn, fc->logits));
		CK(cuda_download(fc->ctx, f->logits, fc->logits, (size_t)V * sizeof(float)));
		return 0;
	}
	for (int t0 = first; t0 < T; t0 += fc->logit_rows) {
		const int n = T - t0 < fc->logit_rows ? T - t0 : fc->logit_rows;
		CK(cuda_rmsnorm(fc->ctx, fc->bxn, fc->x + (size_t)t0 * (size_t)E, fc->output_norm, n, E, hp->norm_eps));
		CK(cuda_f32_to_f16(fc->ctx, fc->bx16, fc->bxn, (int64_t)n * E));
		CK(cuda_gemm(fc->ctx, &fc->output, fc->bx16, n, fc->blogits, fc->tile, fc->tile_bytes));
		CK(cuda_download(fc->ctx, f->logits + (size_t)(t0 - first) * (size_t)V, fc->blogits,
				 (size_t)n * (size_t)V * sizeof(float)));
	}
	return 0;
}

/* Context buckets of the decode graphs: positions up to 256, 512, ...,
 * capped at n_ctx; a graph serves every position of its bucket. */
static uint32_t bucket_of(uint32_t n_pos, uint32_t n_ctx, int *idx)
{
	uint32_t b = 256;
	int i = 8;
	while (b < n_pos && b < n_ctx && i < 31) {
		b <<= 1;
		i++;
	}
	*idx = i;
	return b < n_ctx ? b : n_ctx;
}

/* The kernels of one decode step at the position in fc->pos_dev, for
 * capture: every layer and (all layers here) the logits into fc->logits. */
static int decode_seq(struct fwd *f, uint32_t bucket)
{
	struct fwd_cuda *fc = f->cuda;
	const struct hparams *hp = &f->m->hp;
	int rc;
	for (uint32_t il = 0; il < fc->n; il++)
		if ((rc = layer_step(f, il, fc->x, 0, 0, 1, fc->pos_dev, bucket)) != 0)
			return rc;
	if (fc->logits) {
		CK(cuda_rmsnorm(fc->ctx, fc->xn, fc->x, fc->output_norm, 1, hp->n_embd, hp->norm_eps));
		CK(cuda_matvec(fc->ctx, &fc->output, fc->xn, fc->logits));
	}
	return 0;
}

/* The decode step (one token at POS, its embedding already in fc->x) as a
 * replay of the graph of POS's bucket, captured on first use.  *done says
 * whether it ran; false (and 0) leaves the step to plain launches: graphs
 * turned off (TTYCHAT_CUDA_GRAPHS=0) or a capture that failed once, which
 * turns them off for this attachment (graph_why). */
static int decode_graph(struct fwd *f, uint32_t pos, bool *done)
{
	struct fwd_cuda *fc = f->cuda;
	*done = false;
	if (fc->graph_off)
		return 0;
	int idx;
	const uint32_t bucket = bucket_of(pos + 1, f->n_ctx, &idx);
	if (!fc->graph[idx]) {
		char why[200] = "";
		int rc = cuda_capture_begin(fc->ctx);
		if (rc == 0) {
			fc->capturing = true;
			const int rs = decode_seq(f, bucket);
			fc->capturing = false;
			if (rs)
				snprintf(why, sizeof why, "%.190s", fc->err);
			rc = cuda_capture_end(fc->ctx, &fc->graph[idx]);
			if (rs && !rc)
				rc = rs;
		}
		if (rc) {
			if (!why[0])
				snprintf(why, sizeof why, "%.190s", cuda_ctx_error(fc->ctx));
			cuda_graph_free(fc->ctx, fc->graph[idx]);
			fc->graph[idx] = NULL;
			fc->graph_off = true;
			snprintf(fc->graph_why, sizeof fc->graph_why, "capture failed: %s", why);
			return 0;
		}
	}
	CK(cuda_upload(fc->ctx, fc->pos_dev, &pos, sizeof pos));
	CK(cuda_graph_launch(fc->ctx, fc->graph[idx]));
	*done = true;
	return 0;
}

int fwd_cuda_eval(struct fwd *f, struct kv_cache *kv, const int32_t *tokens, int T, bool all_logits)
{
	struct fwd_cuda *fc = f->cuda;
	const struct model *m = f->m;
	const struct hparams *hp = &m->hp;
	const int64_t E = hp->n_embd, KD = (int64_t)hp->n_head_kv * hp->head_dim;
	const uint32_t pos0 = kv->n;
	if (!fc || fc->failed)
		return ENGINE_E_INVAL;
	/* a snapshot of another cache type cannot use the mirror */
	if (kv->type_k != fc->kv_type || kv->type_v != fc->kv_type || kv->rot_k || kv->rot_v ||
	    kv->row_k != cuda_kv_row_bytes(fc->kv_type, KD) || T <= 0 || T > f->max_batch || (uint64_t)pos0 + (uint64_t)T > f->n_ctx)
		return ENGINE_E_INVAL;
	int rc = bind_cache(f, kv);
	if (rc)
		return rc;

	/* step_embed on the host (bit for bit the CPU's rows), one upload */
	for (int t = 0; t < T; t++) {
		float *x = f->x + (size_t)t * (size_t)E;
		quant_dequant_row(m->tok_embd.type, (const char *)m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.row_bytes,
				  x, E);
		if (hp->embd_scale != 1.0f)
			for (int64_t i = 0; i < E; i++)
				x[i] *= hp->embd_scale;
	}
	CK(cuda_upload(fc->ctx, fc->x, f->x, (size_t)T * (size_t)E * sizeof(float)));

	const int first = all_logits ? 0 : T - 1;
	bool done = false;
	if (T == 1 && (rc = decode_graph(f, pos0, &done)) != 0)
		return rc;
	if (T > 1 && fc->gemm) {
		for (uint32_t il = 0; il < fc->n; il++)
			if ((rc = layer_batch(f, il, pos0, T)) != 0)
				return rc;
		if (fc->logits && (rc = logits_batch(f, first, T)) != 0)
			return rc;
	}
	if (done && fc->logits)
		CK(cuda_download(fc->ctx, f->logits, fc->logits, (size_t)hp->n_vocab * sizeof(float)));
	for (int t = 0; t < T && !done && !(T > 1 && fc->gemm); t++) {
		float *x = fc->x + (size_t)t * (size_t)E;
		for (uint32_t il = 0; il < fc->n; il++)
			if ((rc = layer_step(f, il, x, pos0 + (uint32_t)t, t, T, NULL, 0)) != 0)
				return rc;
		if (fc->logits && t >= first) {
			CK(cuda_rmsnorm(fc->ctx, fc->xn, x, fc->output_norm, 1, E, hp->norm_eps));
			CK(cuda_matvec(fc->ctx, &fc->output, fc->xn, fc->logits));
			CK(cuda_download(fc->ctx, f->logits + (size_t)(t - first) * hp->n_vocab, fc->logits,
					 (size_t)hp->n_vocab * sizeof(float)));
		}
	}
	if (!fc->logits)
		CK(cuda_download(fc->ctx, f->x, fc->x, (size_t)T * (size_t)E * sizeof(float)));
	/* the new rows of the GPU layers into the host cache */
	const size_t srow = kv->row_k, rows = 2 * (size_t)fc->n * (size_t)T * srow;
	CK(cuda_download(fc->ctx, fc->stage_host, fc->stage, rows));
	for (uint32_t il = 0; il < fc->n; il++)
		for (int t = 0; t < T; t++) {
			const char *sk = (const char *)fc->stage_host + (((size_t)il * 2) * (size_t)T + (size_t)t) * srow;
			const char *sv = (const char *)fc->stage_host + (((size_t)il * 2 + 1) * (size_t)T + (size_t)t) * srow;
			memcpy((char *)kv->k[il] + (size_t)(pos0 + (uint32_t)t) * kv->row_k, sk, kv->row_k);
			memcpy((char *)kv->v[il] + (size_t)(pos0 + (uint32_t)t) * kv->row_k, sv, kv->row_k);
		}
	fc->mirror_n = pos0 + (uint32_t)T;
	return 0;
}

bool fwd_cuda_failed(const struct fwd *f)
{
	return f->cuda && f->cuda->failed;
}

const char *fwd_cuda_error(const struct fwd *f)
{
	return f->cuda ? f->cuda->err : "";
}

const char *fwd_cuda_decode_mode(const struct fwd *f)
{
	struct fwd_cuda *fc = f->cuda;
	if (!fc)
		return "";
	if (!fc->graph_off)
		return "CUDA graphs";
	snprintf(fc->mode, sizeof fc->mode, "plain launches (%.200s)", fc->graph_why);
	return fc->mode;
}

const char *fwd_cuda_prefill_mode(const struct fwd *f)
{
	struct fwd_cuda *fc = f->cuda;
	if (!fc)
		return "";
	if (fc->gemm)
		return "gemm";
	snprintf(fc->mode, sizeof fc->mode, "token by token (%.200s)", fc->gemm_why);
	return fc->mode;
}

void fwd_cuda_usage(struct fwd *f, uint64_t *total, uint64_t *free_bytes, uint64_t *ours)
{
	*total = *free_bytes = *ours = 0;
	struct cuda_mem_usage u;
	if (!f->cuda || f->cuda->failed || cuda_mem_get_usage(f->cuda->ctx, &u) != 0)
		return;
	*total = u.dev_total;
	*free_bytes = u.dev_free;
	for (int k = 0; k < CUDA_MEM_KINDS; k++)
		*ours += u.ours[k];
}

#else /* !HAVE_CUDA_TOOLKIT: a CPU-only build */

void fwd_cuda_plan(const struct model *m, uint32_t n_ctx, int max_batch, uint32_t kv_type, int want,
		   struct fwd_cuda_plan *p)
{
	(void)m, (void)n_ctx, (void)max_batch, (void)kv_type, (void)want;
	memset(p, 0, sizeof *p);
	snprintf(p->why, sizeof p->why, "no CUDA device: this ttychat was built without CUDA (configure found no nvcc)");
}

int fwd_cuda_attach(struct fwd *f, uint32_t kv_type, uint32_t *retry, char *why, size_t whylen)
{
	(void)f, (void)kv_type;
	*retry = 0;
	snprintf(why, whylen, "no CUDA device: this ttychat was built without CUDA");
	return ENGINE_E_INVAL;
}

void fwd_cuda_detach(struct fwd *f)
{
	f->cuda = NULL;
}

int fwd_cuda_eval(struct fwd *f, struct kv_cache *kv, const int32_t *tokens, int T, bool all_logits)
{
	(void)f, (void)kv, (void)tokens, (void)T, (void)all_logits;
	return ENGINE_E_INVAL;
}

bool fwd_cuda_failed(const struct fwd *f)
{
	(void)f;
	return false;
}

const char *fwd_cuda_error(const struct fwd *f)
{
	(void)f;
	return "built without CUDA";
}

const char *fwd_cuda_prefill_mode(const struct fwd *f)
{
	(void)f;
	return "";
}

const char *fwd_cuda_decode_mode(const struct fwd *f)
{
	(void)f;
	return "";
}

void fwd_cuda_usage(struct fwd *f, uint64_t *total, uint64_t *free_bytes, uint64_t *ours)
{
	(void)f;
	*total = *free_bytes = *ours = 0;
}

#endif
