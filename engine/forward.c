/*
 * forward.c - one forward pass for every architecture, and the CPU backend.
 *
 * Shapes (T tokens in a batch, E = n_embd, H = n_head, G = n_head_kv,
 * D = head_dim, F = n_ff, V = n_vocab):
 *   x    [T][E]   residual stream
 *   q    [T][H*D] k, v [T][G*D]
 *   att  [T][H*D] attention output before wo
 *   gate, up [T][F] (phi3: gate holds [T][2F] from the fused matrix)
 *
 * Numerics follow llama.cpp's CPU path where it matters for token-identical
 * greedy output: RMS norms sum in double, rope angles advance by repeated
 * multiplication, q is rounded to f16 before q.k against an F16 cache and
 * the softmax weights are rounded to f16 before they weight V, and the
 * GELU of gemma goes through f16 as ggml's table does.
 *
 * The backend table holds every operation the pass performs, so another
 * backend (CUDA) swaps the table and keeps this file's pass.
 */
#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "gguf.h"
#include "quant.h"

struct backend {
	const char *name;
	void (*matmul)(struct fwd *f, const struct weight *w, const float *x, int T, int64_t x_stride,
		       float *y, int64_t y_stride);
	void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
	void (*rope)(float *x, int n_heads, int head_dim, int n_rot, uint32_t pos, float base,
		     float scale, const float *freq_factors, enum rope_style style);
	void (*attention)(struct fwd *f, struct kv_cache *kv, uint32_t layer, uint32_t pos0, int T,
			  uint32_t window);
	void (*glu)(float *gate, const float *up, int64_t n, bool gelu);
};

/* ---- CPU operations ------------------------------------------------------ */

static void cpu_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
	double sum = 0.0;
	for (int64_t i = 0; i < n; i++)
		sum += (double)x[i] * (double)x[i];
	const float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
	if (w)
		for (int64_t i = 0; i < n; i++)
			y[i] = x[i] * scale * w[i];
	else
		for (int64_t i = 0; i < n; i++)
			y[i] = x[i] * scale;
}

static void cpu_rope(float *x, int n_heads, int head_dim, int n_rot, uint32_t pos, float base,
		     float scale, const float *ff, enum rope_style style)
{
	const float theta_scale = powf(base, -2.0f / (float)n_rot);
	for (int h = 0; h < n_heads; h++) {
		float *v = x + (size_t)h * (size_t)head_dim;
		float theta = (float)pos * scale;
		for (int i0 = 0; i0 < n_rot; i0 += 2) {
			const float t = ff ? theta / ff[i0 / 2] : theta;
			const float c = cosf(t), s = sinf(t);
			int a, b;
			if (style == ROPE_NORM) {
				a = i0;
				b = i0 + 1;
			} else {
				a = i0 / 2;
				b = i0 / 2 + n_rot / 2;
			}
			const float x0 = v[a], x1 = v[b];
			v[a] = x0 * c - x1 * s;
			v[b] = x0 * s + x1 * c;
			theta *= theta_scale;
		}
	}
}

static float f16_round(float x)
{
	return quant_fp16_to_fp32(quant_fp32_to_fp16(x));
}

static void cpu_glu(float *gate, const float *up, int64_t n, bool gelu)
{
	if (gelu) {
		/* tanh-approximated GELU, evaluated on f16 inputs with an f16
		 * result as ggml's lookup table does */
		const float c = 0.7978845608028654f; /* sqrt(2/pi) */
		for (int64_t i = 0; i < n; i++) {
			float x = gate[i], g;
			if (x <= -10.0f)
				g = 0.0f;
			else if (x >= 10.0f)
				g = x;
			else {
				x = f16_round(x);
				g = f16_round(0.5f * x * (1.0f + tanhf(c * x * (1.0f + 0.044715f * x * x))));
			}
			gate[i] = g * up[i];
		}
	} else {
		for (int64_t i = 0; i < n; i++) {
			const float x = gate[i];
			gate[i] = x / (1.0f + expf(-x)) * up[i];
		}
	}
}

struct matmul_job {
	const struct weight *w;
	const void *xact;
	size_t act_bytes;
	int T;
	float *y;
	int64_t y_stride;
};

static void matmul_task(void *ctx, int ith, int nth)
{
	const struct matmul_job *j = ctx;
	const int64_t rows = j->w->rows;
	/* split rows in chunks of 16 so every thread's share stays block-aligned */
	const int64_t chunks = (rows + 15) / 16;
	const int64_t c0 = chunks * ith / nth, c1 = chunks * (ith + 1) / nth;
	const int64_t r0 = c0 * 16, r1 = c1 * 16 < rows ? c1 * 16 : rows;
	if (r0 >= r1)
		return;
	if (j->T == 1)
		quant_matvec(j->w->type, j->w->data, j->w->row_bytes, r0, r1, j->xact, j->w->cols, j->y);
	else
		quant_matmul(j->w->type, j->w->data, j->w->row_bytes, r0, r1, j->xact, j->act_bytes,
			     j->T, j->w->cols, j->y, j->y_stride);
}

static void cpu_matmul(struct fwd *f, const struct weight *w, const float *x, int T, int64_t x_stride,
		       float *y, int64_t y_stride)
{
	const size_t ab = quant_act_row_bytes(w->type, w->cols);
	for (int t = 0; t < T; t++)
		quant_act_quantize(w->type, x + (size_t)t * (size_t)x_stride,
				   (char *)f->xact + (size_t)t * ab, w->cols);
	struct matmul_job j = {.w = w, .xact = f->xact, .act_bytes = ab, .T = T, .y = y, .y_stride = y_stride};
	pool_run(f->pool, matmul_task, &j);
}

struct attn_job {
	struct fwd *f;
	struct kv_cache *kv;
	uint32_t layer, pos0, window;
	int T;
};

static void attn_task(void *ctx, int ith, int nth)
{
	const struct attn_job *j = ctx;
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const struct kv_cache *kv = j->kv;
	const int H = (int)hp->n_head, G = (int)hp->n_head_kv, D = (int)hp->head_dim;
	const int group = H / G;
	float *scores = f->scores + (size_t)ith * f->n_ctx;
	uint16_t *qh = f->qh + (size_t)ith * (size_t)D;
	float *vrow = f->vrow + (size_t)ith * (size_t)D;
	const size_t qq_bytes = quant_act_row_bytes(GGML_TYPE_Q8_0, D);
	void *qq = (char *)f->qq + (size_t)ith * qq_bytes;
	const char *kbase = kv->k[j->layer], *vbase = kv->v[j->layer];
	const size_t head_bytes = kv->row_bytes / (size_t)G;

	for (int task = ith; task < j->T * H; task += nth) {
		const int t = task / H, h = task % H, g = h / group;
		const uint32_t pos = j->pos0 + (uint32_t)t;
		uint32_t first = 0;
		if (j->window && pos + 1 > j->window)
			first = pos + 1 - j->window;
		const float *q = f->q + (size_t)t * (size_t)(H * D) + (size_t)h * (size_t)D;
		float *out = f->att + (size_t)t * (size_t)(H * D) + (size_t)h * (size_t)D;

		float mx = -INFINITY;
		if (kv->type == GGML_TYPE_F16) {
			for (int d = 0; d < D; d++)
				qh[d] = quant_fp32_to_fp16(q[d]);
			for (uint32_t p = first; p <= pos; p++) {
				const void *krow = kbase + (size_t)p * kv->row_bytes + (size_t)g * head_bytes;
				float s = quant_vec_dot(GGML_TYPE_F16, krow, qh, D) * hp->attn_scale;
				scores[p] = s;
				mx = s > mx ? s : mx;
			}
		} else {
			quant_act_quantize(GGML_TYPE_Q8_0, q, qq, D);
			for (uint32_t p = first; p <= pos; p++) {
				const void *krow = kbase + (size_t)p * kv->row_bytes + (size_t)g * head_bytes;
				float s = quant_vec_dot(GGML_TYPE_Q8_0, krow, qq, D) * hp->attn_scale;
				scores[p] = s;
				mx = s > mx ? s : mx;
			}
		}
		double sum = 0.0;
		for (uint32_t p = first; p <= pos; p++) {
			const float e = expf(scores[p] - mx);
			scores[p] = e;
			sum += e;
		}
		const float inv = (float)(1.0 / sum);
		memset(out, 0, (size_t)D * sizeof(float));
		for (uint32_t p = first; p <= pos; p++) {
			const float w = f16_round(scores[p] * inv);
			const void *vr = vbase + (size_t)p * kv->row_bytes + (size_t)g * head_bytes;
			quant_dequant_row(kv->type, vr, vrow, D);
			for (int d = 0; d < D; d++)
				out[d] += w * vrow[d];
		}
	}
}

static void cpu_attention(struct fwd *f, struct kv_cache *kv, uint32_t layer, uint32_t pos0, int T,
			  uint32_t window)
{
	struct attn_job j = {.f = f, .kv = kv, .layer = layer, .pos0 = pos0, .window = window, .T = T};
	pool_run(f->pool, attn_task, &j);
}

static const struct backend cpu_be = {
	.name = "cpu",
	.matmul = cpu_matmul,
	.rmsnorm = cpu_rmsnorm,
	.rope = cpu_rope,
	.attention = cpu_attention,
	.glu = cpu_glu,
};

/* ---- KV cache ------------------------------------------------------------ */

int kv_init(struct kv_cache *kv, const struct hparams *hp, uint32_t type, uint32_t n_ctx)
{
	memset(kv, 0, sizeof *kv);
	kv->type = type;
	kv->n_layer = hp->n_layer;
	kv->kv_dim = hp->n_head_kv * hp->head_dim;
	if (type == GGML_TYPE_Q8_0 && hp->head_dim % 32 != 0)
		return ENGINE_E_INVAL;
	kv->row_bytes = ggml_row_bytes(type, kv->kv_dim);
	if (kv->row_bytes == 0)
		return ENGINE_E_INVAL;
	kv->n_ctx = n_ctx;
	kv->k = calloc(hp->n_layer, sizeof *kv->k);
	kv->v = calloc(hp->n_layer, sizeof *kv->v);
	if (!kv->k || !kv->v) {
		kv_free(kv);
		return ENGINE_E_NOMEM;
	}
	return 0;
}

int kv_reserve(struct kv_cache *kv, uint32_t n)
{
	if (n > kv->n_ctx)
		return ENGINE_E_CONTEXT;
	if (n <= kv->cap)
		return 0;
	uint32_t cap = kv->cap ? kv->cap : 256;
	while (cap < n)
		cap = cap > kv->n_ctx / 2 ? kv->n_ctx : cap * 2;
	if (cap > kv->n_ctx)
		cap = kv->n_ctx;
	int32_t *tok = realloc(kv->tokens, (size_t)cap * sizeof *tok);
	if (!tok)
		return ENGINE_E_NOMEM;
	kv->tokens = tok;
	for (uint32_t l = 0; l < kv->n_layer; l++) {
		void *k = realloc(kv->k[l], (size_t)cap * kv->row_bytes);
		if (!k)
			return ENGINE_E_NOMEM;
		kv->k[l] = k;
		void *v = realloc(kv->v[l], (size_t)cap * kv->row_bytes);
		if (!v)
			return ENGINE_E_NOMEM;
		kv->v[l] = v;
	}
	kv->cap = cap;
	return 0;
}

void kv_truncate(struct kv_cache *kv, uint32_t n)
{
	if (n < kv->n)
		kv->n = n;
}

size_t kv_bytes(const struct kv_cache *kv)
{
	return (size_t)kv->cap * (kv->row_bytes * 2 * kv->n_layer + sizeof(int32_t));
}

void kv_free(struct kv_cache *kv)
{
	for (uint32_t l = 0; kv->k && l < kv->n_layer; l++)
		free(kv->k[l]);
	for (uint32_t l = 0; kv->v && l < kv->n_layer; l++)
		free(kv->v[l]);
	free(kv->k);
	free(kv->v);
	free(kv->tokens);
	memset(kv, 0, sizeof *kv);
}

/* ---- scratch ------------------------------------------------------------- */

static void *alloc_track(struct fwd *f, size_t n)
{
	f->bytes += n;
	return malloc(n ? n : 1);
}

int fwd_init(struct fwd *f, const struct model *m, pool *p, uint32_t n_ctx, int max_batch)
{
	const struct hparams *hp = &m->hp;
	memset(f, 0, sizeof *f);
	f->m = m;
	f->be = &cpu_be;
	f->pool = p;
	f->max_batch = max_batch;
	f->n_ctx = n_ctx;
	const size_t B = (size_t)max_batch;
	const size_t E = hp->n_embd, QD = (size_t)hp->n_head * hp->head_dim;
	const size_t KD = (size_t)hp->n_head_kv * hp->head_dim;
	const size_t F = hp->n_ff, D = hp->head_dim;
	const size_t nth = (size_t)pool_size(p);
	size_t widest = E > QD ? E : QD;
	widest = widest > F ? widest : F;

	f->x = alloc_track(f, B * E * sizeof(float));
	f->xn = alloc_track(f, B * E * sizeof(float));
	f->q = alloc_track(f, B * (QD + 2 * KD) * sizeof(float)); /* room for fused qkv */
	f->k = alloc_track(f, B * KD * sizeof(float));
	f->v = alloc_track(f, B * KD * sizeof(float));
	f->att = alloc_track(f, B * QD * sizeof(float));
	f->o = alloc_track(f, B * E * sizeof(float));
	f->gate = alloc_track(f, B * 2 * F * sizeof(float));
	f->up = alloc_track(f, B * F * sizeof(float));
	f->logits = alloc_track(f, hp->n_vocab * sizeof(float));
	f->logits_rows = 1;
	/* the largest activation row: F32 weights keep activations in f32 */
	f->xact_row_cap = widest * sizeof(float) + 64;
	f->xact = alloc_track(f, B * f->xact_row_cap);
	f->scores = alloc_track(f, nth * n_ctx * sizeof(float));
	f->qh = alloc_track(f, nth * D * sizeof(uint16_t));
	f->qq = alloc_track(f, nth * (quant_act_row_bytes(GGML_TYPE_Q8_0, (int64_t)D) + 64));
	f->vrow = alloc_track(f, nth * D * sizeof(float));
	if (!f->x || !f->xn || !f->q || !f->k || !f->v || !f->att || !f->o || !f->gate || !f->up ||
	    !f->logits || !f->xact || !f->scores || !f->qh || !f->qq || !f->vrow) {
		fwd_free(f);
		return ENGINE_E_NOMEM;
	}
	return 0;
}

void fwd_free(struct fwd *f)
{
	free(f->x);
	free(f->xn);
	free(f->q);
	free(f->k);
	free(f->v);
	free(f->att);
	free(f->o);
	free(f->gate);
	free(f->up);
	free(f->logits);
	free(f->xact);
	free(f->scores);
	free(f->qh);
	free(f->qq);
	free(f->vrow);
	memset(f, 0, sizeof *f);
}

/* ---- the pass ------------------------------------------------------------ */

static void store_kv(struct kv_cache *kv, uint32_t layer, uint32_t pos, const float *k, const float *v)
{
	quant_quantize_row(kv->type, k, (char *)kv->k[layer] + (size_t)pos * kv->row_bytes, kv->kv_dim);
	quant_quantize_row(kv->type, v, (char *)kv->v[layer] + (size_t)pos * kv->row_bytes, kv->kv_dim);
}

static void add_bias(float *x, const struct vec *b, int T, int64_t stride)
{
	if (!b->data)
		return;
	for (int t = 0; t < T; t++)
		for (int64_t i = 0; i < b->n; i++)
			x[(size_t)t * (size_t)stride + (size_t)i] += b->data[i];
}

int fwd_eval(struct fwd *f, struct kv_cache *kv, const int32_t *tokens, int T, bool all_logits)
{
	const struct model *m = f->m;
	const struct hparams *hp = &m->hp;
	const struct backend *be = f->be;
	const int64_t E = hp->n_embd, F = hp->n_ff, D = hp->head_dim;
	const int64_t QD = (int64_t)hp->n_head * D, KD = (int64_t)hp->n_head_kv * D;
	const uint32_t pos0 = kv->n;

	if (T <= 0 || T > f->max_batch)
		return ENGINE_E_INVAL;
	if ((uint64_t)pos0 + (uint64_t)T > kv->n_ctx || pos0 + (uint32_t)T > f->n_ctx)
		return ENGINE_E_CONTEXT;
	int rc = kv_reserve(kv, pos0 + (uint32_t)T);
	if (rc)
		return rc;
	for (int t = 0; t < T; t++)
		if (tokens[t] < 0 || (uint32_t)tokens[t] >= hp->n_vocab)
			return ENGINE_E_INVAL;

	/* x = embedding rows (scaled for gemma) */
	for (int t = 0; t < T; t++) {
		float *x = f->x + (size_t)t * (size_t)E;
		quant_dequant_row(m->tok_embd.type,
				  (const char *)m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.row_bytes, x, E);
		if (hp->embd_scale != 1.0f)
			for (int64_t i = 0; i < E; i++)
				x[i] *= hp->embd_scale;
	}

	for (uint32_t il = 0; il < hp->n_layer; il++) {
		const struct layer *l = &m->layers[il];
		for (int t = 0; t < T; t++)
			be->rmsnorm(f->xn + (size_t)t * (size_t)E, f->x + (size_t)t * (size_t)E, l->attn_norm.data, E,
				    hp->norm_eps);

		float *q = f->q, *k = f->k, *v = f->v;
		int64_t qs = QD, ks = KD;
		if (l->wqkv.data) {
			/* fused [q|k|v] rows: read the parts in place */
			be->matmul(f, &l->wqkv, f->xn, T, E, f->q, QD + 2 * KD);
			k = f->q + QD;
			v = f->q + QD + KD;
			qs = ks = QD + 2 * KD;
		} else {
			be->matmul(f, &l->wq, f->xn, T, E, q, QD);
			be->matmul(f, &l->wk, f->xn, T, E, k, KD);
			be->matmul(f, &l->wv, f->xn, T, E, v, KD);
		}
		add_bias(q, &l->bq, T, qs);
		add_bias(k, &l->bk, T, ks);
		add_bias(v, &l->bv, T, ks);

		for (int t = 0; t < T; t++) {
			float *qt = q + (size_t)t * (size_t)qs, *kt = k + (size_t)t * (size_t)ks;
			float *vt = v + (size_t)t * (size_t)ks;
			if (l->q_norm.data) {
				for (uint32_t h = 0; h < hp->n_head; h++)
					be->rmsnorm(qt + h * D, qt + h * D, l->q_norm.data, D, hp->norm_eps);
				for (uint32_t h = 0; h < hp->n_head_kv; h++)
					be->rmsnorm(kt + h * D, kt + h * D, l->k_norm.data, D, hp->norm_eps);
			}
			const uint32_t pos = pos0 + (uint32_t)t;
			be->rope(qt, (int)hp->n_head, (int)D, (int)hp->n_rot, pos, l->rope_base, hp->rope_scale,
				 m->rope_freqs.data, hp->rope_style);
			be->rope(kt, (int)hp->n_head_kv, (int)D, (int)hp->n_rot, pos, l->rope_base, hp->rope_scale,
				 m->rope_freqs.data, hp->rope_style);
			store_kv(kv, il, pos, kt, vt);
			/* the attention reads q densely from f->q */
			if (qs != QD)
				memmove(f->q + (size_t)t * (size_t)QD, qt, (size_t)QD * sizeof(float));
		}
		be->attention(f, kv, il, pos0, T, l->swa ? hp->n_swa : 0);
		be->matmul(f, &l->wo, f->att, T, QD, f->o, E);
		for (int t = 0; t < T; t++) {
			float *o = f->o + (size_t)t * (size_t)E, *x = f->x + (size_t)t * (size_t)E;
			if (l->attn_post_norm.data)
				be->rmsnorm(o, o, l->attn_post_norm.data, E, hp->norm_eps);
			for (int64_t i = 0; i < E; i++)
				x[i] += o[i];
			be->rmsnorm(f->xn + (size_t)t * (size_t)E, x, l->ffn_norm.data, E, hp->norm_eps);
		}

		const bool gelu = hp->arch == ARCH_GEMMA3;
		if (hp->arch == ARCH_PHI3) {
			/* fused [gate|up] rows */
			be->matmul(f, &l->w_up, f->xn, T, E, f->gate, 2 * F);
			for (int t = 0; t < T; t++) {
				float *g = f->gate + (size_t)t * (size_t)(2 * F);
				be->glu(g, g + F, F, false);
				memmove(f->gate + (size_t)t * (size_t)F, g, (size_t)F * sizeof(float));
			}
		} else {
			be->matmul(f, &l->w_gate, f->xn, T, E, f->gate, F);
			be->matmul(f, &l->w_up, f->xn, T, E, f->up, F);
			be->glu(f->gate, f->up, (int64_t)T * F, gelu);
		}
		be->matmul(f, &l->w_down, f->gate, T, F, f->o, E);
		for (int t = 0; t < T; t++) {
			float *o = f->o + (size_t)t * (size_t)E, *x = f->x + (size_t)t * (size_t)E;
			if (l->ffn_post_norm.data)
				be->rmsnorm(o, o, l->ffn_post_norm.data, E, hp->norm_eps);
			for (int64_t i = 0; i < E; i++)
				x[i] += o[i];
		}
	}
	for (int t = 0; t < T; t++)
		kv->tokens[pos0 + (uint32_t)t] = tokens[t];
	kv->n = pos0 + (uint32_t)T;

	const int first = all_logits ? 0 : T - 1;
	const int nl = T - first;
	if (nl > f->logits_rows) {
		float *lg = realloc(f->logits, (size_t)nl * hp->n_vocab * sizeof(float));
		if (!lg)
			return ENGINE_E_NOMEM;
		f->bytes += (size_t)(nl - f->logits_rows) * hp->n_vocab * sizeof(float);
		f->logits = lg;
		f->logits_rows = nl;
	}
	for (int t = first; t < T; t++)
		be->rmsnorm(f->xn + (size_t)(t - first) * (size_t)E, f->x + (size_t)t * (size_t)E,
			    m->output_norm.data, E, hp->norm_eps);
	be->matmul(f, &m->output, f->xn, nl, E, f->logits, hp->n_vocab);
	return 0;
}
