/*
 * forward.c - the CPU's forward pass for every architecture, and its KV
 * cache.
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
 * A layer is attention then one feed-forward block chosen by the layer's
 * ffn kind (dense, fused gate|up, mixture of experts: moe_ffn below);
 * the pass reads the architecture description of struct model and calls
 * its operations through struct backend, a table with one instance (the
 * CPU's, cpu_be) that keeps the pass apart from the kernels.  The GPU is
 * not another instance: forward_cuda.c has its own pass over the same
 * description, step for step, and fwd_eval() hands it the first
 * cpu_first layers (forward.h).
 *
 * CPU speed: fwd_init prepares every weight matrix as a struct
 * quant_matrix, packed (16 rows interleaved, quant.h) where the CPU level
 * has packed kernels, all packed copies in one arena of huge pages in the
 * order the pass reads them (decode streams it front to back); the
 * packing runs on the pool.  Products that share an input run as one pool
 * job (q/k/v, gate/up) on one quantisation of it; a prefill batch is
 * quantised in parallel.  Attention over an F16 cache runs per (token, KV
 * head) so a group's query heads share each K/V row read
 * (quant_attn_f16); over a quantised cache (kvquant.h) the same way,
 * each K/V row decoded once per work item into one head of floats (the
 * rotation folded into q and the output); rope angles are computed once
 * per position, SiLU uses
 * the vector e^x.  Reported memory: fwd.packed_bytes of packed copies.
 */
#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "alloc.h"
#include "engine.h"
#include "forward_cuda.h"
#include "gdn.h"
#include "gguf.h"
#include "kvquant.h"
#include "quant.h"

/* One matrix product of a fused group: y[t * y_stride + r] = W_r . x_t. */
struct mm_part {
	const struct quant_matrix *w;
	float *y;
	int64_t y_stride;
};

struct backend {
	const char *name;
	/* products of up to 3 matrices with the same input x (T rows of
	 * x_stride floats), one job: q/k/v, gate/up */
	void (*matmul)(struct fwd *f, const struct mm_part *parts, int n_parts, const float *x, int T,
		       int64_t x_stride);
	void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
	/* cs, sn: cos and sin of the n_rot/2 angles of the position */
	void (*rope)(float *x, int n_heads, int head_dim, int n_rot, const float *cs, const float *sn,
		     enum rope_style style);
	void (*attention)(struct fwd *f, struct kv_cache *kv, uint32_t layer, uint32_t pos0, int T,
			  uint32_t window);
	void (*glu)(struct fwd *f, float *gate, const float *up, int64_t n, bool gelu);
	/* gate_up[0].y = act(gate) * up, from the two products of one input */
	void (*matmul_glu)(struct fwd *f, const struct mm_part *gate_up, const float *x, int T,
			   int64_t x_stride, bool gelu);
};

/* ---- CPU operations ------------------------------------------------------ */

static void cpu_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
	const double sum = quant_sum_squares(x, n);
	const float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
	if (w)
		for (int64_t i = 0; i < n; i++)
			y[i] = x[i] * scale * w[i];
	else
		for (int64_t i = 0; i < n; i++)
			y[i] = x[i] * scale;
}

/* One rope: the base and position scale of a layer, with the model's YaRN
 * parameters and frequency factors (ggml's rope_ext). */
struct rope_cfg {
	int n_rot;            /* rotated dims (gemma4: by layer kind) */
	float base, freq_scale, ext_factor, mscale;
	float corr[2];        /* YaRN correction dims */
	const float *ff;      /* per-pair frequency divisors, or NULL */
	const uint8_t *still; /* per pair: 1 = position 0 (imrope's fourth axis), or NULL */
};

/* ggml_rope_yarn_corr_dims: the dims whose wavelength spans BETA_FAST and
 * BETA_SLOW rotations over the original context. */
static void rope_corr_dims(struct rope_cfg *c, int n_rot, uint32_t n_ctx_orig, float beta_fast,
			   float beta_slow)
{
	const float two_pi = 2.0f * (float)M_PI;
	const float lo = (float)n_rot * logf((float)n_ctx_orig / (beta_fast * two_pi)) / (2.0f * logf(c->base));
	const float hi = (float)n_rot * logf((float)n_ctx_orig / (beta_slow * two_pi)) / (2.0f * logf(c->base));
	c->corr[0] = fmaxf(0.0f, floorf(lo));
	c->corr[1] = fminf((float)(n_rot - 1), ceilf(hi));
}

/* cos and sin of the n_rot/2 rope angles of position POS, as ggml's rope
 * cache: theta advances by repeated multiplication, is divided by the
 * frequency factor, scaled, and with YaRN mixed with the unscaled angle by
 * a ramp over the correction dims; both are multiplied by the attention
 * factor (with YaRN's 1 + 0.1 ln(1/scale) on top). */
static void rope_angles(float *cs, float *sn, int n_rot, uint32_t pos, const struct rope_cfg *c)
{
	const float theta_scale = powf(c->base, -2.0f / (float)n_rot);
	float mscale = c->mscale;
	if (c->ext_factor != 0.0f)
		mscale *= 1.0f + 0.1f * logf(1.0f / c->freq_scale);
	float theta = (float)pos;
	for (int i = 0; i < n_rot / 2; i++) {
		const float extrap = c->ff ? theta / c->ff[i] : theta;
		float t = c->freq_scale * extrap;
		if (c->ext_factor != 0.0f) {
			const float y = ((float)i - c->corr[0]) / fmaxf(0.001f, c->corr[1] - c->corr[0]);
			const float mix = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * c->ext_factor;
			t = t * (1.0f - mix) + extrap * mix;
		}
		if (c->still && c->still[i]) {
			cs[i] = mscale;   /* cos 0, sin 0 */
			sn[i] = 0.0f;
		} else {
			cs[i] = cosf(t) * mscale;
			sn[i] = sinf(t) * mscale;
		}
		theta *= theta_scale;
	}
}

static void cpu_rope(float *x, int n_heads, int head_dim, int n_rot, const float *cs, const float *sn,
		     enum rope_style style)
{
	const int half = n_rot / 2;
	for (int h = 0; h < n_heads; h++) {
		float *v = x + (size_t)h * (size_t)head_dim;
		for (int i = 0; i < half; i++) {
			int a, b;
			if (style == ROPE_NORM) {
				a = 2 * i;
				b = 2 * i + 1;
			} else {
				a = i;
				b = i + half;
			}
			const float x0 = v[a], x1 = v[b];
			v[a] = x0 * cs[i] - x1 * sn[i];
			v[b] = x0 * sn[i] + x1 * cs[i];
		}
	}
}

static float f16_round(float x)
{
	return quant_fp16_to_fp32(quant_fp32_to_fp16(x));
}

/* tanh-approximated GELU, evaluated on f16 inputs with an f16 result as
 * ggml's lookup table does; tabulated at init over every fp16 input (the
 * range -10 < x < 10 the formula is used for) */
#define GELU_LO (-10.0f)
#define GELU_HI 10.0f

static float gelu_f16(float x)
{
	const float c = 0.7978845608028654f; /* sqrt(2/pi) */
	x = f16_round(x);
	return f16_round(0.5f * x * (1.0f + tanhf(c * x * (1.0f + 0.044715f * x * x))));
}

static float *gelu_table(void)
{
	float *tab = eng_malloc(65536 * sizeof *tab);
	if (!tab)
		return NULL;
	for (uint32_t h = 0; h < 65536; h++) {
		const float x = quant_fp16_to_fp32((uint16_t)h);
		tab[h] = x > -10.5f && x < 10.5f ? gelu_f16(x) : 0.0f;   /* never read outside */
	}
	return tab;
}

struct glu_job {
	float *gate;
	const float *up;
	int64_t n;
	const float *gelu;   /* table, or NULL for SiLU */
};

static void glu_task(void *ctx, int i, int n)
{
	const struct glu_job *j = ctx;
	/* chunks of 64 floats: every split starts a vector */
	const int64_t nc = (j->n + 63) / 64, c0 = nc * i / n, c1 = nc * (i + 1) / n;
	const int64_t a = c0 * 64, b = c1 * 64 < j->n ? c1 * 64 : j->n;
	if (a >= b)
		return;
	if (j->gelu)
		quant_table_mul(j->gate + a, j->up + a, b - a, j->gelu, GELU_LO, GELU_HI);
	else
		quant_silu_mul(j->gate + a, j->up + a, b - a);
}

#define FWD_MAX_BASES 4

/* Prepared weights: a struct quant_matrix per weight, packed where the
 * kernels have a packed layout for its type (see quant.h). */
struct fwd_layer_mats {
	struct quant_matrix wq, wk, wv, wo, wqkv, w_gate, w_up, w_down;
	/* FFN_MOE: the router, and each expert's matrices ([n_expert]) */
	struct quant_matrix router;
	struct quant_matrix *gate_e, *up_e, *down_e;
	struct quant_matrix sh_gate, sh_up, sh_down;   /* a shared expert (granitemoe) */
	struct quant_matrix sh_w;                      /* its sigmoid gate row (qwen35moe) */
	/* a Gated DeltaNet layer (qwen35) */
	struct quant_matrix ssm_qkv, ssm_z, ssm_alpha, ssm_beta, ssm_out;
	struct quant_matrix sc_in, sc_out;             /* a short-convolution layer (lfm2) */
	struct quant_matrix ple_gate, ple_proj;        /* gemma4's per-layer input */
};

/* Scratch of the Gated DeltaNet layers and of gated attention (qwen35),
 * max_batch rows each. */
struct fwd_gdn {
	float *qkv;     /* [B][C]: the projection, then the convolution's output */
	float *z;       /* [B][HV*S] */
	float *alpha;   /* [B][HV]: then the log-decay */
	float *beta;    /* [B][HV] */
	float *o;       /* [B][HV*S] */
	float *qfull;   /* [B][2*QD]: gated attention's [q | gate] rows */
	float *qgate;   /* [B][QD] */
	float *shw;     /* [B]: the shared expert's gate */
	float *bcx;     /* [B][3E]: lfm2's [b | c | x], then y over b */
};

struct fwd_mats {
	struct fwd_layer_mats *L;   /* [n_layer] */
	struct quant_matrix output;
	struct fwd_moe *moe;        /* scratch of the MoE block, or NULL */
	struct fwd_gdn gdn;         /* scratch of qwen35's blocks (NULLs otherwise) */
	void *arena;                /* every packed copy, in the order the pass reads them */
	size_t arena_bytes;
	float *gelu;                /* GELU over every fp16 input (gemma) */
	/* rope angles of the batch's positions, per distinct rope of the
	 * layers (base and scale): [rope][t][cos n_rot/2 | sin n_rot/2] */
	struct rope_cfg ropes[FWD_MAX_BASES];
	int n_bases;
	uint8_t still[256];         /* imrope: the pairs of the fourth axis (ggml's mrope cache) */
	float *rope;
	/* gemma4: the projection of per-layer inputs, the batch's inputs
	 * [t][n_layer][n_embd_pl], the gate of one layer's [t][n_embd_pl], and
	 * [t][n_embd] rows for the router's and experts' inputs and the dense
	 * FFN's output beside the experts */
	struct quant_matrix ple_model_proj;
	float *ple, *ple_g, *g4_xr, *g4_xe, *g4_dn;
	/* thread-count tuning, [0] one-token steps, [1] batches: seconds per
	 * token with all threads (t[0]) and with the caller alone (t[1]) */
	struct {
		double t[2];
		int have[2];
		uint32_t steps, probe_every;
	} tune[2];
};

/* every 16th one-token step runs the other thread count, up to every
 * 256th while it keeps losing by more than a third.  A prefill batch run
 * alone costs far more (tens of milliseconds, and a batch's pool jobs are
 * long enough that a preempted worker stalls them proportionally less), so
 * batches try the caller alone only after 64 batches on all threads, and
 * then at most every 64th (up to every 1024th) batch. */
#define TUNE_PROBE(kind) ((kind) ? 64u : 16u)
#define TUNE_PROBE_MAX(kind) ((kind) ? 1024u : 256u)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Thread count of this step: on a quiet machine all threads win; on an
 * oversubscribed one (a worker preempted while it holds a task stalls the
 * step for a time slice) the caller alone does.  Measured, not guessed:
 * the faster mode so far, and the other one every TUNE_PROBE steps so a
 * change of load is noticed.  Returns the mode (0 all, 1 alone). */
static int tune_begin(struct fwd *f, int kind)
{
	if (pool_size(f->pool) == 1)
		return 0;
	__typeof__(f->mats->tune[0]) *tn = &f->mats->tune[kind];
	int mode;
	if (tn->have[0] < 2)
		mode = 0;   /* all threads first: a warm-up step, then a real one */
	else if (tn->have[1] < 2)
		/* then one step alone (batches: only after TUNE_PROBE of them) */
		mode = kind == 0 || ++tn->steps >= TUNE_PROBE(kind);
	else {
		int best = tn->t[1] < tn->t[0];
		if (tn->probe_every == 0)
			tn->probe_every = TUNE_PROBE(kind);
		mode = ++tn->steps % tn->probe_every == 0 ? !best : best;
	}
	pool_set_active(f->pool, mode ? 1 : pool_size(f->pool));
	return mode;
}

static void tune_end(struct fwd *f, int kind, int mode, double seconds_per_token)
{
	if (pool_size(f->pool) == 1)
		return;
	__typeof__(f->mats->tune[0]) *tn = &f->mats->tune[kind];
	if (tn->have[mode] == 0)   /* the very first step pays for warm-up: replaced next time */
		tn->t[mode] = seconds_per_token, tn->have[mode] = mode == 0 ? 1 : 2;
	else if (tn->have[mode] == 1)
		tn->t[mode] = seconds_per_token, tn->have[mode] = 2;
	else
		tn->t[mode] = 0.5 * tn->t[mode] + 0.5 * seconds_per_token;
	if (tn->have[0] && tn->have[1] && tn->probe_every) {
		const double lose = tn->t[mode] / tn->t[!mode];
		const int best = tn->t[1] < tn->t[0];
		if (mode != best && lose > 1.33)
			tn->probe_every = tn->probe_every * 2 < TUNE_PROBE_MAX(kind) ? tn->probe_every * 2
										: TUNE_PROBE_MAX(kind);
		else if (lose <= 1.33)
			tn->probe_every = TUNE_PROBE(kind);
	}
}

static void cpu_glu(struct fwd *f, float *gate, const float *up, int64_t n, bool gelu)
{
	struct glu_job j = {gate, up, n, gelu ? f->mats->gelu : NULL};
	if (n <= 4096)
		glu_task(&j, 0, 1);
	else
		pool_run_tasks(f->pool, glu_task, &j, pool_size(f->pool) * 2);
}

#define MM_MAX_PARTS 3

struct matmul_job {
	const struct mm_part *parts;
	int n_parts;
	const void *xact[MM_MAX_PARTS];   /* activation rows of each part */
	size_t xs[MM_MAX_PARTS];
	int64_t g_end[MM_MAX_PARTS];      /* cumulative row groups */
	int T;
	/* activation quantisation (T > 1: a job of its own) */
	const float *x;
	int64_t x_stride;
	int n_kinds;
	const struct quant_matrix *kind_w[MM_MAX_PARTS];
	void *kind_buf[MM_MAX_PARTS];
	size_t kind_xs[MM_MAX_PARTS];
	/* gate/up products fused with their gated activation (parts[0]
	 * gate, parts[1] up, same rows): gelu table or NULL for SiLU */
	bool glu_gate;
	const float *gelu;
};

/* Start of task I of N over TOTAL row groups: task sizes fall
 * geometrically, the last about 1/64 of the first, so the first tasks
 * claimed stream long contiguous runs of weights and the last ones even
 * out the threads' finishing times (with equal shares, a thread slowed by
 * anything idles the other one for up to a share at the end).  Up to 4
 * tasks split evenly. */
static int64_t task_start(int64_t total, int i, int n)
{
	if (i <= 0)
		return 0;
	if (i >= n)
		return total;
	if (n <= 4)
		return total * i / n;
	const double r = pow(1.0 / 64.0, 1.0 / (n > 1 ? n - 1 : 1));
	const int64_t g = (int64_t)((double)total * (1.0 - pow(r, i)) / (1.0 - pow(r, n)) + 0.5);
	return g < total ? g : total;
}

static void matmul_task(void *ctx, int i, int n)
{
	const struct matmul_job *j = ctx;
	if (j->glu_gate) {
		/* gate and up over the same rows, then the gated product of
		 * those rows: no separate pass over gate/up, no extra barrier */
		const struct mm_part *g = &j->parts[0], *u = &j->parts[1];
		const int64_t total = j->g_end[0];
		const int64_t r0 = task_start(total, i, n) * QUANT_ROW_GROUP;
		int64_t r1 = task_start(total, i + 1, n) * QUANT_ROW_GROUP;
		if (r1 > g->w->rows)
			r1 = g->w->rows;
		if (r0 >= r1)
			return;
		quant_matrix_mul(g->w, r0, r1, j->xact[0], j->xs[0], j->T, g->y, g->y_stride);
		quant_matrix_mul(u->w, r0, r1, j->xact[1], j->xs[1], j->T, u->y, u->y_stride);
		for (int t = 0; t < j->T; t++) {
			float *gy = g->y + (size_t)t * (size_t)g->y_stride + r0;
			const float *uy = u->y + (size_t)t * (size_t)u->y_stride + r0;
			if (j->gelu)
				quant_table_mul(gy, uy, r1 - r0, j->gelu, GELU_LO, GELU_HI);
			else
				quant_silu_mul(gy, uy, r1 - r0);
		}
		return;
	}
	const int64_t total = j->g_end[j->n_parts - 1];
	int64_t g0 = task_start(total, i, n), g1 = task_start(total, i + 1, n);
	int64_t base = 0;
	for (int k = 0; k < j->n_parts && g0 < g1; k++) {
		const int64_t end = j->g_end[k];
		if (g0 < end) {
			const struct mm_part *p = &j->parts[k];
			int64_t a = g0 - base, b = (g1 < end ? g1 : end) - base;
			int64_t r0 = a * QUANT_ROW_GROUP, r1 = b * QUANT_ROW_GROUP;
			if (r1 > p->w->rows)
				r1 = p->w->rows;
			quant_matrix_mul(p->w, r0, r1, j->xact[k], j->xs[k], j->T, p->y, p->y_stride);
			g0 = end < g1 ? end : g1;
		}
		base = end;
	}
}

static void quantize_task(void *ctx, int i, int n)
{
	const struct matmul_job *j = ctx;
	const int64_t rows = (int64_t)j->T * j->n_kinds;
	for (int64_t r = rows * i / n; r < rows * (i + 1) / n; r++) {
		int k = (int)(r / j->T), t = (int)(r % j->T);
		quant_matrix_act_quantize(j->kind_w[k], j->x + (size_t)t * (size_t)j->x_stride,
					  (char *)j->kind_buf[k] + (size_t)t * j->kind_xs[k]);
	}
}

static size_t act_stride(const struct quant_matrix *w)
{
	return (quant_matrix_act_bytes(w) + 63) & ~(size_t)63;
}

static void cpu_matmul_job(struct fwd *f, struct matmul_job *jp)
{
	struct matmul_job j = *jp;
	const struct mm_part *parts = j.parts;
	const int n_parts = j.n_parts, T = j.T;
	int64_t groups = 0;
	for (int k = 0; k < n_parts; k++) {
		const struct quant_matrix *w = parts[k].w;
		int kind = quant_matrix_act_kind(w), found = -1;
		for (int q = 0; q < j.n_kinds; q++)
			if (quant_matrix_act_kind(j.kind_w[q]) == kind)
				found = q;
		if (found < 0) {
			found = j.n_kinds++;
			j.kind_w[found] = w;
			j.kind_xs[found] = act_stride(w);
			j.kind_buf[found] = (char *)f->xact + (size_t)found * (size_t)f->max_batch * f->xact_row_cap;
		}
		j.xact[k] = j.kind_buf[found];
		j.xs[k] = j.kind_xs[found];
		groups += (w->rows + QUANT_ROW_GROUP - 1) / QUANT_ROW_GROUP;
		j.g_end[k] = groups;
	}
	if (T == 1)
		quantize_task(&j, 0, 1);
	else
		pool_run_tasks(f->pool, quantize_task, &j, T * j.n_kinds < 64 ? T * j.n_kinds : 64);
	/* a few tasks per thread, claimed dynamically, balance the load */
	if (j.glu_gate)
		groups = j.g_end[0];
	int64_t tasks = (int64_t)pool_size(f->pool) * 4;
	if (tasks > groups)
		tasks = groups;
	pool_run_tasks(f->pool, matmul_task, &j, (int)tasks);
}

static void cpu_matmul(struct fwd *f, const struct mm_part *parts, int n_parts, const float *x, int T,
		       int64_t x_stride)
{
	struct matmul_job j = {.parts = parts, .n_parts = n_parts, .T = T, .x = x, .x_stride = x_stride};
	cpu_matmul_job(f, &j);
}

/* gate = act(W_gate x) * (W_up x), one job (model.c gives both matrices
 * the shape [n_ff][n_embd]) */
static void cpu_matmul_glu(struct fwd *f, const struct mm_part *gate_up, const float *x, int T,
			   int64_t x_stride, bool gelu)
{
	struct matmul_job j = {.parts = gate_up, .n_parts = 2, .T = T, .x = x, .x_stride = x_stride,
			       .glu_gate = true, .gelu = gelu ? f->mats->gelu : NULL};
	cpu_matmul_job(f, &j);
}

static void matmul1(struct fwd *f, const struct quant_matrix *w, const float *x, int T, int64_t x_stride,
		    float *y, int64_t y_stride)
{
	struct mm_part p = {w, y, y_stride};
	f->be->matmul(f, &p, 1, x, T, x_stride);
}

/* ---- mixture of experts ----------------------------------------------------- */

/*
 * One MoE feed-forward block over a batch of T tokens, from xn (NE experts,
 * K chosen per token, FE the experts' width):
 *   logits [T][NE] = router . xn, probabilities by softmax or sigmoid, the
 *     K largest chosen (in falling order), their weights renormalised and
 *     scaled as the family says (model.h);
 *   the T*K (token, slot) pairs sorted by expert into R rows, expert e's at
 *     rows row0[e] .. row0[e] + cnt[e] - 1;
 *   h [R][FE] = act(gate_e . x) * (up_e . x), one pool job over the row
 *     groups of every chosen expert, then y [R][E] = down_e . h, another:
 *     decode reads the K chosen experts' rows once, and a prefill batch
 *     reads each expert once for all the tokens that chose it, through the
 *     same (packed) kernels as a dense matrix;
 *   o[t] = y[t,0] w[t,0] + y[t,1] w[t,1] + ..., summed in slot order as
 *     ggml adds its views.
 */
static void *alloc_track(struct fwd *f, size_t n);
static int gemma4_init(struct fwd *f);

struct fwd_moe {
	uint32_t NE, K, FE;
	float *logits;          /* [B][NE] */
	float *choose;          /* [NE] the scores the experts are chosen by */
	int32_t *sel;           /* [B][K] chosen experts */
	float *w;               /* [B][K] their weights */
	int32_t *row;           /* [B][K] sorted row of each (token, slot) */
	int32_t *tok;           /* [R] token of each sorted row */
	int32_t *cnt, *row0;    /* [NE] */
	int32_t *act;           /* [NE] experts with rows, in order */
	int64_t *g_end;         /* [NE] cumulative row groups of the chosen experts */
	void *xa_g, *xa_u, *ha; /* quantised inputs of gate, up (or NULL: xa_g) and down */
	size_t xs_g, xs_u, hs;
	float *h, *u;           /* [R][FE] */
	float *y;               /* [R][E] */
	float *sh_out;          /* [B][E] the shared expert's output */
};

struct moe_job {
	struct fwd *f;
	const struct fwd_layer_mats *L;
	const struct layer *l;
	struct fwd_moe *M;
	const void *xa_u;       /* up's input: M->xa_g when gate's quantisation serves it */
	size_t xs_u;
	int n_act;
	int R;
	int64_t total;          /* row groups of this phase */
	int phase;              /* 0 gate/up, 1 down */
	const float *xn;
	const float *gelu;
};

/* gpt-oss's gated unit, as ggml_swiglu_oai (alpha 1.702, limit 7) */
static void swiglu_oai(float *g, const float *u, int64_t n)
{
	const float alpha = 1.702f, limit = 7.0f;
	for (int64_t i = 0; i < n; i++) {
		const float x = g[i] < limit ? g[i] : limit;
		const float y = u[i] < -limit ? -limit : u[i] > limit ? limit : u[i];
		g[i] = x / (1.0f + expf(alpha * (-x))) * (y + 1.0f);
	}
}

static void moe_quantize_task(void *ctx, int i, int n)
{
	const struct moe_job *j = ctx;
	struct fwd_moe *M = j->M;
	const int64_t E = j->f->m->hp.n_embd;
	for (int r = j->R * i / n; r < j->R * (i + 1) / n; r++) {
		if (j->phase == 0) {
			const float *x = j->xn + (size_t)M->tok[r] * (size_t)E;
			quant_matrix_act_quantize(&j->L->gate_e[0], x, (char *)M->xa_g + (size_t)r * M->xs_g);
			if (j->xa_u != M->xa_g)
				quant_matrix_act_quantize(&j->L->up_e[0], x, (char *)M->xa_u + (size_t)r * M->xs_u);
		} else {
			quant_matrix_act_quantize(&j->L->down_e[0], M->h + (size_t)r * M->FE,
						  (char *)M->ha + (size_t)r * M->hs);
		}
	}
}

static void moe_task(void *ctx, int i, int n)
{
	const struct moe_job *j = ctx;
	struct fwd_moe *M = j->M;
	const int64_t E = j->f->m->hp.n_embd, FE = M->FE;
	int64_t g0 = task_start(j->total, i, n), g1 = task_start(j->total, i + 1, n), base = 0;
	for (int a = 0; a < j->n_act && g0 < g1; a++) {
		const int64_t end = M->g_end[a];
		if (g0 < end) {
			const int e = M->act[a], r0w = M->row0[e], cnt = M->cnt[e];
			const int64_t b = g1 < end ? g1 : end;
			int64_t r0 = (g0 - base) * QUANT_ROW_GROUP, r1 = (b - base) * QUANT_ROW_GROUP;
			if (j->phase == 0) {
				if (r1 > FE)
					r1 = FE;
				float *h = M->h + (size_t)r0w * (size_t)FE, *u = M->u + (size_t)r0w * (size_t)FE;
				quant_matrix_mul(&j->L->gate_e[e], r0, r1, (const char *)M->xa_g + (size_t)r0w * M->xs_g,
						 M->xs_g, cnt, h, FE);
				quant_matrix_mul(&j->L->up_e[e], r0, r1, (const char *)j->xa_u + (size_t)r0w * j->xs_u,
						 j->xs_u, cnt, u, FE);
				const struct layer *l = j->l;
				for (int t = 0; t < cnt; t++) {
					float *hy = h + (size_t)t * (size_t)FE + r0;
					float *uy = u + (size_t)t * (size_t)FE + r0;
					if (l->gate_exps_b.data) {
						const float *gb = l->gate_exps_b.data + (size_t)e * (size_t)FE + r0;
						const float *ub = l->up_exps_b.data + (size_t)e * (size_t)FE + r0;
						for (int64_t r = 0; r < r1 - r0; r++) {
							hy[r] += gb[r];
							uy[r] += ub[r];
						}
					}
					if (j->f->m->hp.act == ACT_SWIGLU_OAI)
						swiglu_oai(hy, uy, r1 - r0);
					else if (j->gelu)
						quant_table_mul(hy, uy, r1 - r0, j->gelu, GELU_LO, GELU_HI);
					else
						quant_silu_mul(hy, uy, r1 - r0);
				}
			} else {
				if (r1 > E)
					r1 = E;
				float *y = M->y + (size_t)r0w * (size_t)E;
				quant_matrix_mul(&j->L->down_e[e], r0, r1, (const char *)M->ha + (size_t)r0w * M->hs,
						 M->hs, cnt, y, E);
				if (j->l->down_exps_b.data) {
					const float *db = j->l->down_exps_b.data + (size_t)e * (size_t)E;
					for (int t = 0; t < cnt; t++)
						for (int64_t r = r0; r < r1; r++)
							y[(size_t)t * (size_t)E + r] += db[r];
				}
			}
			g0 = b;
		}
		base = end;
	}
}

/* x = softmax(x) in place as ggml_soft_max: e^(x - max), the sum in double,
 * each multiplied by the float of its inverse */
static void softmax_ggml(float *x, uint32_t n)
{
	float mx = -INFINITY;
	for (uint32_t i = 0; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	double sum = 0.0;
	for (uint32_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - mx);
		sum += (double)x[i];
	}
	const float inv = (float)(1.0 / sum);
	for (uint32_t i = 0; i < n; i++)
		x[i] *= inv;
}

/* The experts of a token and their weights, from its router logits lg[NE]
 * (and the router's bias, or NULL; the selection bias, or NULL), as
 * llama.cpp's build_moe_ffn: probabilities p by the gating function; the
 * choice on p + selection bias, within the n_group_used groups whose two
 * best choices sum highest when the experts come in groups; the weights
 * from p. */
static void moe_route(const struct hparams *hp, float *lg, const float *bias, const float *sel_bias,
		      float *choose, int32_t *sel, float *w)
{
	const uint32_t NE = hp->n_expert, K = hp->n_expert_used;
	if (bias)
		for (uint32_t e = 0; e < NE; e++)
			lg[e] += bias[e];
	if (hp->moe_gating == MOE_SOFTMAX) {
		softmax_ggml(lg, NE);
	} else if (hp->moe_gating == MOE_SIGMOID) {
		for (uint32_t e = 0; e < NE; e++)
			lg[e] = 1.0f / (1.0f + expf(-lg[e]));
	}
	for (uint32_t e = 0; e < NE; e++)
		choose[e] = sel_bias ? lg[e] + sel_bias[e] : lg[e];
	if (hp->n_expert_groups > 1) {
		const uint32_t G = hp->n_expert_groups, per = NE / G;
		float score[256];
		bool keep[256];
		for (uint32_t g = 0; g < G && g < 256; g++) {
			float a = -INFINITY, b = -INFINITY;
			for (uint32_t e = g * per; e < (g + 1) * per; e++) {
				if (choose[e] > a) {
					b = a;
					a = choose[e];
				} else if (choose[e] > b) {
					b = choose[e];
				}
			}
			score[g] = a + b;
			keep[g] = false;
		}
		for (uint32_t n = 0; n < hp->n_group_used; n++) {
			int best = -1;
			for (uint32_t g = 0; g < G && g < 256; g++)
				if (!keep[g] && (best < 0 || score[g] > score[best]))
					best = (int)g;
			keep[best] = true;
		}
		for (uint32_t e = 0; e < NE; e++)
			if (!keep[e / per])
				choose[e] = -INFINITY;
	}
	/* the K largest, largest first (lowest index on ties) */
	for (uint32_t k = 0; k < K; k++) {
		int32_t best = -1;
		for (uint32_t e = 0; e < NE; e++) {
			bool taken = false;
			for (uint32_t q = 0; q < k; q++)
				taken |= sel[q] == (int32_t)e;
			if (!taken && (best < 0 || choose[e] > choose[best]))
				best = (int32_t)e;
		}
		sel[k] = best;
		w[k] = lg[best];
	}
	if (hp->moe_gating == MOE_SOFTMAX_WEIGHT)
		softmax_ggml(w, K);   /* over the chosen logits */
	if (hp->moe_norm_w) {
		double sum = 0.0;
		for (uint32_t k = 0; k < K; k++)
			sum += (double)w[k];
		float s = (float)sum;
		if (s < 6.103515625e-5f)
			s = 6.103515625e-5f;
		for (uint32_t k = 0; k < K; k++)
			w[k] /= s;
	}
	if (hp->moe_w_scale != 1.0f)
		for (uint32_t k = 0; k < K; k++)
			w[k] *= hp->moe_w_scale;
}

/* o = the MoE block of layer IL over the T rows of xe, routed by the rows
 * of xr (both [T][n_embd]); each expert's output multiplied by the
 * layer's per-expert scale where it has one (gemma4). */
static void moe_ffn_in(struct fwd *f, uint32_t il, int T, const float *xr, const float *xe)
{
	const struct hparams *hp = &f->m->hp;
	const struct fwd_layer_mats *L = &f->mats->L[il];
	struct fwd_moe *M = f->mats->moe;
	const uint32_t NE = M->NE, K = M->K;
	const int64_t E = hp->n_embd;

	matmul1(f, &L->router, xr, T, E, M->logits, NE);
	memset(M->cnt, 0, NE * sizeof *M->cnt);
	for (int t = 0; t < T; t++) {
		moe_route(hp, M->logits + (size_t)t * NE, f->m->layers[il].router_b.data,
			  f->m->layers[il].exp_probs_b.data, M->choose, M->sel + (size_t)t * K, M->w + (size_t)t * K);
		for (uint32_t k = 0; k < K; k++)
			M->cnt[M->sel[(size_t)t * K + k]]++;
	}
	struct moe_job j = {.f = f, .L = L, .l = &f->m->layers[il], .M = M, .R = T * (int)K, .xn = xe,
			    .gelu = hp->act == ACT_GELU ? f->mats->gelu : NULL, .xa_u = M->xa_u, .xs_u = M->xs_u};
	if (quant_matrix_act_kind(&L->gate_e[0]) == quant_matrix_act_kind(&L->up_e[0])) {
		j.xa_u = M->xa_g;
		j.xs_u = M->xs_g;
	}
	int32_t next = 0;
	for (uint32_t e = 0; e < NE; e++) {
		M->row0[e] = next;
		if (M->cnt[e] > 0)
			M->act[j.n_act++] = (int32_t)e;
		next += M->cnt[e];
	}
	/* rows in (expert, token) order: fill each expert's range in turn */
	memset(M->cnt, 0, NE * sizeof *M->cnt);
	for (int t = 0; t < T; t++)
		for (uint32_t k = 0; k < K; k++) {
			const int32_t e = M->sel[(size_t)t * K + k], r = M->row0[e] + M->cnt[e]++;
			M->row[(size_t)t * K + k] = r;
			M->tok[r] = t;
		}
	const int64_t tasks_max = (int64_t)pool_size(f->pool) * 4;
	for (int phase = 0; phase < 2; phase++) {
		const int64_t rows = phase == 0 ? (int64_t)M->FE : E;
		j.phase = phase;
		j.total = 0;
		for (int a = 0; a < j.n_act; a++) {
			j.total += (rows + QUANT_ROW_GROUP - 1) / QUANT_ROW_GROUP;
			M->g_end[a] = j.total;
		}
		if (j.R <= 16)
			moe_quantize_task(&j, 0, 1);
		else
			pool_run_tasks(f->pool, moe_quantize_task, &j, j.R < 64 ? j.R : 64);
		pool_run_tasks(f->pool, moe_task, &j, (int)(tasks_max < j.total ? tasks_max : j.total));
	}
	const float *es = f->m->layers[il].down_exps_s.data;
	if (es)
		for (size_t r = 0; r < (size_t)T * K; r++)
			M->w[r] *= es[M->sel[r]];
	for (int t = 0; t < T; t++) {
		float *o = f->o + (size_t)t * (size_t)E;
		const float *w = M->w + (size_t)t * K;
		const int32_t *row = M->row + (size_t)t * K;
		const float *y0 = M->y + (size_t)row[0] * (size_t)E;
		for (int64_t i = 0; i < E; i++)
			o[i] = y0[i] * w[0];
		for (uint32_t k = 1; k < K; k++) {
			const float *y = M->y + (size_t)row[k] * (size_t)E;
			for (int64_t i = 0; i < E; i++)
				o[i] += y[i] * w[k];
		}
	}
}

/* o = the MoE block of layer IL over the T rows of xn. */
static void moe_ffn(struct fwd *f, uint32_t il, int T)
{
	moe_ffn_in(f, il, T, f->xn, f->xn);
}

/* The MoE block's scratch for batches of up to f->max_batch tokens. */
static int moe_init(struct fwd *f)
{
	const struct hparams *hp = &f->m->hp;
	const struct fwd_layer_mats *L = NULL;
	for (uint32_t il = f->cpu_first; il < hp->n_layer && !L; il++)
		if (f->mats->L[il].gate_e)
			L = &f->mats->L[il];
	if (!L)
		return 0;
	struct fwd_moe *M = eng_calloc(1, sizeof *M);
	if (!M)
		return ENGINE_E_NOMEM;
	f->mats->moe = M;
	const size_t B = (size_t)f->max_batch, NE = hp->n_expert, K = hp->n_expert_used;
	const size_t R = B * K, FE = hp->n_ff_exp, E = hp->n_embd;
	M->NE = (uint32_t)NE;
	M->K = (uint32_t)K;
	M->FE = (uint32_t)FE;
	/* every expert of every layer has the types of layer L's first (the
	 * strides below must hold for all of them) */
	M->xs_g = act_stride(&L->gate_e[0]);
	M->xs_u = act_stride(&L->up_e[0]);
	M->hs = act_stride(&L->down_e[0]);
	for (uint32_t il = f->cpu_first; il < hp->n_layer; il++) {
		const struct fwd_layer_mats *Li = &f->mats->L[il];
		if (Li->gate_e && (act_stride(&Li->gate_e[0]) > M->xs_g || act_stride(&Li->up_e[0]) > M->xs_u ||
				   act_stride(&Li->down_e[0]) > M->hs)) {
			M->xs_g = M->xs_g > act_stride(&Li->gate_e[0]) ? M->xs_g : act_stride(&Li->gate_e[0]);
			M->xs_u = M->xs_u > act_stride(&Li->up_e[0]) ? M->xs_u : act_stride(&Li->up_e[0]);
			M->hs = M->hs > act_stride(&Li->down_e[0]) ? M->hs : act_stride(&Li->down_e[0]);
		}
	}
	M->logits = alloc_track(f, B * NE * sizeof(float));
	M->choose = alloc_track(f, NE * sizeof(float));
	M->sel = alloc_track(f, R * sizeof(int32_t));
	M->w = alloc_track(f, R * sizeof(float));
	M->row = alloc_track(f, R * sizeof(int32_t));
	M->tok = alloc_track(f, R * sizeof(int32_t));
	M->cnt = alloc_track(f, NE * sizeof(int32_t));
	M->row0 = alloc_track(f, NE * sizeof(int32_t));
	M->act = alloc_track(f, NE * sizeof(int32_t));
	M->g_end = alloc_track(f, NE * sizeof(int64_t));
	M->xa_g = alloc_track(f, R * M->xs_g);
	M->xa_u = alloc_track(f, R * M->xs_u);
	M->ha = alloc_track(f, R * M->hs);
	M->h = alloc_track(f, R * FE * sizeof(float));
	M->u = alloc_track(f, R * FE * sizeof(float));
	M->y = alloc_track(f, R * E * sizeof(float));
	M->sh_out = alloc_track(f, B * E * sizeof(float));
	if (!M->logits || !M->choose || !M->sel || !M->w || !M->row || !M->tok || !M->cnt || !M->row0 || !M->act ||
	    !M->g_end || !M->xa_g || !M->xa_u || !M->ha || !M->h || !M->u || !M->y || !M->sh_out)
		return ENGINE_E_NOMEM;
	return 0;
}

static void moe_free(struct fwd_moe *M)
{
	if (!M)
		return;
	free(M->logits);
	free(M->choose);
	free(M->sel);
	free(M->w);
	free(M->row);
	free(M->tok);
	free(M->cnt);
	free(M->row0);
	free(M->act);
	free(M->g_end);
	free(M->xa_g);
	free(M->xa_u);
	free(M->ha);
	free(M->h);
	free(M->u);
	free(M->y);
	free(M->sh_out);
	free(M);
}

/* tokens per attention work item of a batch */
#define ATTN_TOKS 8

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
	const struct layer *ly = &f->m->layers[j->layer];
	const int H = (int)hp->n_head, G = (int)(ly->n_head_kv ? ly->n_head_kv : hp->n_head_kv);
	const int D = (int)(ly->head_dim ? ly->head_dim : hp->head_dim);
	const int group = H / G;
	float *scores = f->scores + (size_t)ith * f->n_ctx * (size_t)group * ATTN_TOKS;
	float *vrow = f->vrow + (size_t)ith * (size_t)D;
	float *qrot = f->qrot + (size_t)ith * ATTN_TOKS * (size_t)group * (size_t)(D + 1);
	const char *kbase = kv->k[j->layer], *vbase = kv->v[j->layer];
	const size_t khead = kvq_row_bytes(kv->type_k, (uint64_t)D), krow_bytes = kv_row_k(kv, j->layer);
	const size_t vhead = kvq_row_bytes(kv->type_v, (uint64_t)D), vrow_bytes = kv_row_v(kv, j->layer);
	const float *sinks = f->m->layers[j->layer].sinks.data;   /* [H] or NULL */

	if (kv->type_k == GGML_TYPE_F16 && kv->type_v == GGML_TYPE_F16) {
		/* work items of (KV head, up to ATTN_TOKS tokens): the group's
		 * query heads of those tokens share every K/V row read */
		const int chunks = (j->T + ATTN_TOKS - 1) / ATTN_TOKS;
		for (int task = ith; task < chunks * G; task += nth) {
			const int c = task / G, g = task % G;
			const int t0 = c * ATTN_TOKS, nt = j->T - t0 < ATTN_TOKS ? j->T - t0 : ATTN_TOKS;
			const size_t qoff = (size_t)t0 * (size_t)(H * D) + (size_t)(g * group) * (size_t)D;
			struct quant_attn_args a = {
				.k = (const uint16_t *)(const void *)(kbase + (size_t)g * khead),
				.v = (const uint16_t *)(const void *)(vbase + (size_t)g * vhead),
				.stride = krow_bytes / 2,
				.n_pos = (int)(j->pos0 + (uint32_t)t0 + 1),
				.d = D,
				.q = f->q + qoff,
				.q_stride = D,
				.n_q = group,
				.scale = hp->attn_scale,
				.out = f->att + qoff,
				.out_stride = D,
				.scratch = scores,
				.n_tok = nt,
				.q_tok_stride = H * D,
				.out_tok_stride = H * D,
				.window = (int)j->window,
				.sinks = sinks ? sinks + g * group : NULL,
			};
			quant_attn_f16(&a);
		}
		return;
	}
	/* Any other pair of types: work items of (KV head, up to ATTN_TOKS
	 * tokens) as above, so that the group's query heads of those tokens
	 * share every row read.  Each K row is decoded once into a scratch
	 * head and dotted in f32 with every query (rotated as the keys were),
	 * each V row decoded once and weighted into every query's sum; the
	 * sums are rotated back when the values were stored rotated.  No
	 * copy of the cache is made: one row of each at a time. */
	const int chunks = (j->T + ATTN_TOKS - 1) / ATTN_TOKS;
	for (int task = ith; task < chunks * G; task += nth) {
		const int c = task / G, g = task % G;
		const int t0 = c * ATTN_TOKS, nt = j->T - t0 < ATTN_TOKS ? j->T - t0 : ATTN_TOKS, nq = nt * group;
		float *qb = qrot;                                 /* [nq][D] */
		float *inv = qb + (size_t)nq * (size_t)D;         /* [nq] */
		uint32_t qlo[ATTN_TOKS], qhi[ATTN_TOKS];          /* each token's visible positions */
		for (int tt = 0; tt < nt; tt++) {
			qhi[tt] = j->pos0 + (uint32_t)(t0 + tt);
			qlo[tt] = j->window && qhi[tt] + 1 > j->window ? qhi[tt] + 1 - j->window : 0;
			for (int hh = 0; hh < group; hh++) {
				float *qd = qb + (size_t)(tt * group + hh) * (size_t)D;
				memcpy(qd, f->q + (size_t)(t0 + tt) * (size_t)(H * D) + (size_t)(g * group + hh) * (size_t)D,
				       (size_t)D * sizeof(float));
				if (kv->rot_k)
					kvq_rotate(qd, D, kv->rot_signs);
			}
		}
		const uint32_t lo = qlo[0], hi = qhi[nt - 1], np = hi + 1 - lo;
		for (uint32_t p = lo; p <= hi; p++) {
			kvq_dequant_row(kv->type_k, kbase + (size_t)p * krow_bytes + (size_t)g * khead, vrow, D);
			for (int i = 0; i < nq; i++) {
				const int tt = i / group;
				scores[(size_t)i * np + (p - lo)] = p >= qlo[tt] && p <= qhi[tt]
					? kvq_dot_f32(qb + (size_t)i * (size_t)D, vrow, D) * hp->attn_scale : -INFINITY;
			}
		}
		for (int i = 0; i < nq; i++) {
			const int tt = i / group, h = g * group + i % group;
			float *sc = scores + (size_t)i * np;
			float mx = -INFINITY;
			for (uint32_t p = qlo[tt] - lo; p <= qhi[tt] - lo; p++)
				mx = sc[p] > mx ? sc[p] : mx;
			/* a sink joins the softmax as a logit with no value */
			if (sinks)
				mx = sinks[h] > mx ? sinks[h] : mx;
			double sum = 0.0;
			for (uint32_t p = qlo[tt] - lo; p <= qhi[tt] - lo; p++) {
				const float e = expf(sc[p] - mx);
				sc[p] = e;
				sum += e;
			}
			if (sinks)
				sum += (double)expf(sinks[h] - mx);
			inv[i] = (float)(1.0 / sum);
			memset(f->att + (size_t)(t0 + tt) * (size_t)(H * D) + (size_t)h * (size_t)D, 0,
			       (size_t)D * sizeof(float));
		}
		for (uint32_t p = lo; p <= hi; p++) {
			kvq_dequant_row(kv->type_v, vbase + (size_t)p * vrow_bytes + (size_t)g * vhead, vrow, D);
			for (int i = 0; i < nq; i++) {
				const int tt = i / group;
				if (p < qlo[tt] || p > qhi[tt])
					continue;
				float *out = f->att + (size_t)(t0 + tt) * (size_t)(H * D) + (size_t)(g * group + i % group) * (size_t)D;
				kvq_axpy(out, vrow, f16_round(scores[(size_t)i * np + (p - lo)] * inv[i]), D);
			}
		}
		if (kv->rot_v)
			for (int tt = 0; tt < nt; tt++)
				for (int hh = 0; hh < group; hh++)
					kvq_unrotate(f->att + (size_t)(t0 + tt) * (size_t)(H * D) + (size_t)(g * group + hh) * (size_t)D,
						     D, kv->rot_signs);
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
	.matmul_glu = cpu_matmul_glu,
};

/* ---- KV cache ------------------------------------------------------------ */

/* What k[l] and v[l] of a recurrent layer point at. */
static char kv_no_rows;
uint64_t kv_bytes_for(const struct hparams *hp, uint32_t type_k, uint32_t type_v, uint32_t n_ctx)
{
	uint64_t row = 0;
	if (kv_bad_head(hp, type_k) || kv_bad_head(hp, type_v))
		return 0;
	for (uint32_t l = 0; l < hp->n_layer; l++) {
		if ((hp->kv_src && hp->kv_src[l] != (int32_t)l) || hp->rec_layer[l])
			continue;
		const uint32_t d = hp->kv_dims ? hp->kv_dims[l] : hp->n_head_kv * hp->head_dim;
		row += (uint64_t)kvq_row_bytes(type_k, d) + (uint64_t)kvq_row_bytes(type_v, d);
	}
	/* a hybrid's recurrent states: current, next, checkpoints */
	return row * n_ctx + (uint64_t)ssm_state_floats(hp) * sizeof(float) * hp->n_recurrent * (2 + KV_MAX_CKPT);
}

uint32_t kv_bad_head(const struct hparams *hp, uint32_t type)
{
	const int bk = kvq_block(type);
	if (bk <= 0 || hp->head_dim == 0)
		return hp->head_dim ? hp->head_dim : 1;
	if (hp->head_dim % (uint32_t)bk != 0 || hp->head_dim > KVQ_MAX_HEAD)
		return hp->head_dim;
	for (uint32_t l = 0; hp->kv_dims && l < hp->n_layer; l++)
		if (hp->kv_dims[l] % (uint32_t)bk != 0)
			return hp->head_dim;
	return 0;
}

size_t kv_row_k(const struct kv_cache *kv, uint32_t layer)
{
	return kv->lrow_k ? kv->lrow_k[layer] : kv->row_k;
}

size_t kv_row_v(const struct kv_cache *kv, uint32_t layer)
{
	return kv->lrow_v ? kv->lrow_v[layer] : kv->row_v;
}

bool kv_owns(const struct kv_cache *kv, uint32_t layer)
{
	return !kv->src || kv->src[layer] == (int32_t)layer;
}

/* Whether layer L allocates K/V rows: not a recurrent layer (qwen35,
 * lfm2), nor one reading another layer's (gemma4). */
static bool kv_has_rows(const struct kv_cache *kv, uint32_t l)
{
	return kv->k[l] != &kv_no_rows && kv_owns(kv, l);
}

int kv_init(struct kv_cache *kv, const struct hparams *hp, uint32_t type, uint32_t n_ctx)
{
	return kv_init_types(kv, hp, type, type, type == GGML_TYPE_F16 ? 0 : KVQ_ROT_SEED, n_ctx);
}

int kv_init_types(struct kv_cache *kv, const struct hparams *hp, uint32_t type_k, uint32_t type_v,
		  uint32_t rot_seed, uint32_t n_ctx)
{
	memset(kv, 0, sizeof *kv);
	kv->type_k = type_k;
	kv->type_v = type_v;
	kv->n_layer = hp->n_layer;
	kv->kv_dim = hp->layer_shapes ? hp->kv_dim : hp->n_head_kv * hp->head_dim;
	kv->src = hp->kv_src;
	if (kv_bad_head(hp, type_k) || kv_bad_head(hp, type_v))
		return ENGINE_E_FORMAT;
	kv->row_k = kvq_row_bytes(type_k, kv->kv_dim);
	kv->row_v = kvq_row_bytes(type_v, kv->kv_dim);
	if (kv->row_k == 0 || kv->row_v == 0)
		return ENGINE_E_FORMAT;
	kv->rot_seed = rot_seed;
	kv->rot_k = rot_seed != 0 && type_k != GGML_TYPE_F16;
	kv->rot_v = rot_seed != 0 && type_v != GGML_TYPE_F16;
	if (kv->rot_k || kv->rot_v) {
		if (!(kv->rot_signs = eng_malloc(KVQ_MAX_HEAD * sizeof(float))))
			return ENGINE_E_NOMEM;
		kvq_rot_signs(rot_seed, kv->rot_signs, KVQ_MAX_HEAD);
	}
	if (hp->kv_dims) {
		kv->lrow_k = eng_calloc(hp->n_layer, sizeof *kv->lrow_k);
		kv->lrow_v = eng_calloc(hp->n_layer, sizeof *kv->lrow_v);
		if (!kv->lrow_k || !kv->lrow_v) {
			kv_free(kv);
			return ENGINE_E_NOMEM;
		}
		for (uint32_t l = 0; l < hp->n_layer; l++) {
			kv->lrow_k[l] = kvq_row_bytes(type_k, hp->kv_dims[l]);
			kv->lrow_v[l] = kvq_row_bytes(type_v, hp->kv_dims[l]);
			if (kv->lrow_k[l] == 0 || kv->lrow_v[l] == 0) {
				kv_free(kv);
				return ENGINE_E_FORMAT;
			}
		}
	}
	kv->n_ctx = n_ctx;
	kv->k = eng_calloc(hp->n_layer, sizeof *kv->k);
	kv->v = eng_calloc(hp->n_layer, sizeof *kv->v);
	if (!kv->k || !kv->v) {
		kv_free(kv);
		return ENGINE_E_NOMEM;
	}
	if (hp->n_recurrent > 0) {
		kv->n_rec = hp->n_recurrent;
		kv->rs_floats = ssm_state_floats(hp);
		kv->rs = eng_calloc((size_t)kv->n_rec * kv->rs_floats, sizeof(float));
		kv->rs_next = eng_calloc((size_t)kv->n_rec * kv->rs_floats, sizeof(float));
		if (!kv->rs || !kv->rs_next) {
			kv_free(kv);
			return ENGINE_E_NOMEM;
		}
		/* recurrent layers keep no rows: k[l] and v[l] point at a
		 * mark that kv_reserve() and kv_free() skip */
		for (uint32_t l = 0; l < hp->n_layer; l++)
			if (hp->rec_layer[l])
				kv->k[l] = kv->v[l] = &kv_no_rows;
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
	int32_t *tok = eng_realloc(kv->tokens, (size_t)cap * sizeof *tok);
	if (!tok)
		return ENGINE_E_NOMEM;
	kv->tokens = tok;
	for (uint32_t l = 0; l < kv->n_layer; l++) {
		if (!kv_has_rows(kv, l))
			continue;
		void *k = eng_realloc(kv->k[l], (size_t)cap * kv_row_k(kv, l));
		if (!k)
			return ENGINE_E_NOMEM;
		kv->k[l] = k;
		void *v = eng_realloc(kv->v[l], (size_t)cap * kv_row_v(kv, l));
		if (!v)
			return ENGINE_E_NOMEM;
		kv->v[l] = v;
	}
	/* gemma4: a layer sharing another's K/V reads (and snapshots) its rows */
	for (uint32_t l = 0; l < kv->n_layer; l++)
		if (!kv_owns(kv, l)) {
			kv->k[l] = kv->k[kv->src[l]];
			kv->v[l] = kv->v[kv->src[l]];
		}
	kv->cap = cap;
	return 0;
}

static size_t rs_bytes(const struct kv_cache *kv)
{
	return (size_t)kv->n_rec * kv->rs_floats * sizeof(float);
}

void kv_truncate(struct kv_cache *kv, uint32_t n)
{
	if (n >= kv->n)
		return;
	if (kv->n_rec == 0) {
		kv->n = n;
		return;
	}
	/* the newest checkpoint at or before n, else the empty state; the
	 * checkpoints past it describe positions about to be recomputed */
	int best = -1;
	for (int i = 0; i < kv->n_ck; i++)
		if (kv->ck[i].pos <= n && (best < 0 || kv->ck[i].pos > kv->ck[best].pos))
			best = i;
	if (best >= 0) {
		memcpy(kv->rs, kv->ck[best].rs, rs_bytes(kv));
		kv->n = kv->ck[best].pos;
	} else {
		memset(kv->rs, 0, rs_bytes(kv));
		kv->n = 0;
	}
	int w = 0;
	for (int i = 0; i < kv->n_ck; i++) {
		if (kv->ck[i].pos <= kv->n)
			kv->ck[w++] = kv->ck[i];
		else
			free(kv->ck[i].rs);
	}
	kv->n_ck = w;
}

int kv_checkpoint(struct kv_cache *kv)
{
	if (kv->n_rec == 0 || kv->n == 0)
		return 0;
	for (int i = 0; i < kv->n_ck; i++)
		if (kv->ck[i].pos == kv->n)
			return 0;
	float *buf;
	if (kv->n_ck == KV_MAX_CKPT) {
		/* checkpoints are kept in position order: drop the one (never
		 * the newest) whose neighbours are closest */
		int drop = 0;
		uint32_t gap = UINT32_MAX;
		for (int i = 0; i + 1 < kv->n_ck; i++) {
			const uint32_t lo = i > 0 ? kv->ck[i - 1].pos : 0, g = kv->ck[i + 1].pos - lo;
			if (g < gap) {
				gap = g;
				drop = i;
			}
		}
		buf = kv->ck[drop].rs;
		memmove(&kv->ck[drop], &kv->ck[drop + 1], (size_t)(kv->n_ck - drop - 1) * sizeof kv->ck[0]);
		kv->n_ck--;
	} else if (!(buf = eng_malloc(rs_bytes(kv)))) {
		return ENGINE_E_NOMEM;
	}
	/* positions only grow between truncations: the new one is the newest */
	memcpy(buf, kv->rs, rs_bytes(kv));
	kv->ck[kv->n_ck].pos = kv->n;
	kv->ck[kv->n_ck].rs = buf;
	kv->n_ck++;
	return 0;
}

size_t kv_bytes(const struct kv_cache *kv)
{
	size_t rows = 0;
	for (uint32_t l = 0; l < kv->n_layer; l++)
		rows += kv_has_rows(kv, l) ? kv_row_k(kv, l) + kv_row_v(kv, l) : 0;
	return (size_t)kv->cap * (rows + sizeof(int32_t)) + rs_bytes(kv) * (2 + (size_t)kv->n_ck);
}

size_t kv_pack_bytes(const struct kv_cache *kv, uint32_t n, int n_ck)
{
	size_t rows = 0;
	for (uint32_t l = 0; l < kv->n_layer; l++)
		rows += kv_has_rows(kv, l) ? (size_t)n * (kv_row_k(kv, l) + kv_row_v(kv, l)) : 0;
	if (kv->n_rec == 0)
		return (size_t)n * 4 + rows;
	return (size_t)n * 4 + rows + rs_bytes(kv) + (size_t)n_ck * (4 + rs_bytes(kv));
}

void kv_pack(const struct kv_cache *kv, unsigned char *o)
{
	memcpy(o, kv->tokens, (size_t)kv->n * 4);
	o += (size_t)kv->n * 4;
	for (uint32_t l = 0; l < kv->n_layer; l++) {
		if (!kv_has_rows(kv, l))
			continue;
		const size_t rk = (size_t)kv->n * kv_row_k(kv, l), rv = (size_t)kv->n * kv_row_v(kv, l);
		memcpy(o, kv->k[l], rk);
		o += rk;
		memcpy(o, kv->v[l], rv);
		o += rv;
	}
	if (kv->n_rec == 0)
		return;
	memcpy(o, kv->rs, rs_bytes(kv));
	o += rs_bytes(kv);
	for (int i = 0; i < kv->n_ck; i++) {
		memcpy(o, &kv->ck[i].pos, 4);
		memcpy(o + 4, kv->ck[i].rs, rs_bytes(kv));
		o += 4 + rs_bytes(kv);
	}
}

int kv_unpack(struct kv_cache *kv, uint32_t n, int n_ck, const unsigned char *in, size_t len)
{
	if (n == 0 || n > kv->n_ctx || n_ck < 0 || n_ck > KV_MAX_CKPT || (kv->n_rec == 0 && n_ck != 0) ||
	    len != kv_pack_bytes(kv, n, n_ck))
		return ENGINE_E_FORMAT;
	int rc = kv_reserve(kv, n);
	if (rc)
		return rc;
	memcpy(kv->tokens, in, (size_t)n * 4);
	in += (size_t)n * 4;
	for (uint32_t l = 0; l < kv->n_layer; l++) {
		if (!kv_has_rows(kv, l))
			continue;
		const size_t rk = (size_t)n * kv_row_k(kv, l), rv = (size_t)n * kv_row_v(kv, l);
		memcpy(kv->k[l], in, rk);
		in += rk;
		memcpy(kv->v[l], in, rv);
		in += rv;
	}
	kv->n = n;
	if (kv->n_rec == 0)
		return 0;
	memcpy(kv->rs, in, rs_bytes(kv));
	in += rs_bytes(kv);
	uint32_t prev = 0;
	for (int i = 0; i < n_ck; i++) {
		uint32_t pos;
		memcpy(&pos, in, 4);
		if (pos == 0 || pos > n || pos <= prev)
			return ENGINE_E_FORMAT;
		prev = pos;
		float *buf = eng_malloc(rs_bytes(kv));
		if (!buf)
			return ENGINE_E_NOMEM;
		memcpy(buf, in + 4, rs_bytes(kv));
		kv->ck[kv->n_ck].pos = pos;
		kv->ck[kv->n_ck].rs = buf;
		kv->n_ck++;
		in += 4 + rs_bytes(kv);
	}
	return 0;
}

void kv_free(struct kv_cache *kv)
{
	for (uint32_t l = 0; kv->k && l < kv->n_layer; l++)
		if (kv_has_rows(kv, l))
			free(kv->k[l]);
	for (uint32_t l = 0; kv->v && l < kv->n_layer; l++)
		if (kv->v[l] != &kv_no_rows && kv_owns(kv, l))   /* kv->k may be NULL here */
			free(kv->v[l]);
	free(kv->k);
	free(kv->v);
	free(kv->lrow_k);
	free(kv->lrow_v);
	free(kv->rot_signs);
	free(kv->tokens);
	free(kv->rs);
	free(kv->rs_next);
	for (int i = 0; i < kv->n_ck; i++)
		free(kv->ck[i].rs);
	memset(kv, 0, sizeof *kv);
}

/* ---- scratch ------------------------------------------------------------- */

static void *alloc_track(struct fwd *f, size_t n)
{
	f->bytes += n;
	return eng_malloc(n ? n : 1);
}

/* Packing job: the row groups of every packed matrix, split evenly. */
struct pack_job {
	struct quant_matrix **mats;
	int n;
	int64_t total;     /* row groups of all of them */
	const gguf_file *g; /* the mapping the original rows are in */
};

static void pack_task(void *ctx, int i, int n)
{
	const struct pack_job *j = ctx;
	int64_t g0 = j->total * i / n, g1 = j->total * (i + 1) / n, base = 0;
	for (int k = 0; k < j->n && g0 < g1; k++) {
		int64_t ng = (j->mats[k]->rows + QUANT_ROW_GROUP - 1) / QUANT_ROW_GROUP;
		if (g0 < base + ng) {
			int64_t b = g1 < base + ng ? g1 : base + ng;
			const struct quant_matrix *q = j->mats[k];
			const int64_t r0 = (g0 - base) * QUANT_ROW_GROUP, r1 = (b - base) * QUANT_ROW_GROUP;
			quant_matrix_pack_rows(j->mats[k], r0, r1);
			/* one copy of the weights: the packed rows are what the
			 * kernels read, so their mapped pages go back to the page
			 * cache (a later read, e.g. an embedding row of a tied
			 * output, faults them in again) */
			gguf_release(j->g, (const char *)q->data + (size_t)r0 * q->row_bytes,
				     (size_t)((r1 < q->rows ? r1 : q->rows) - r0) * q->row_bytes);
			g0 = b;
		}
		base += ng;
	}
}

/* Rotated dims of layer L, and whether the model's frequency factors
 * apply to it (all layers, but gemma4's sliding-window ones). */
static int layer_rot(const struct model *m, const struct layer *l)
{
	return l->n_rot ? (int)l->n_rot : (int)m->hp.n_rot;
}

static bool layer_ff(const struct model *m, const struct layer *l)
{
	return !m->hp.layer_shapes || l->rope_ff;
}

/* Index of the rope of layer L (its base, scale, dims and factors) among
 * M's, or -1. */
static int find_rope(const struct fwd *f, const struct layer *l)
{
	const struct fwd_mats *M = f->mats;
	const float *ff = layer_ff(f->m, l) ? model_rope_factors(f->m, f->n_ctx) : NULL;
	for (int b = 0; b < M->n_bases; b++)
		if (M->ropes[b].base == l->rope_base && M->ropes[b].freq_scale == l->rope_scale &&
		    M->ropes[b].n_rot == layer_rot(f->m, l) && M->ropes[b].ff == ff)
			return b;
	return -1;
}

/* Registers the rope of layer L (its base and scale, the model's YaRN
 * parameters and the factors for this context) unless one like it is
 * already there. */
static void add_rope(struct fwd *f, const struct layer *l)
{
	struct fwd_mats *M = f->mats;
	const struct hparams *hp = &f->m->hp;
	if (find_rope(f, l) >= 0 || M->n_bases == FWD_MAX_BASES)
		return;
	struct rope_cfg *c = &M->ropes[M->n_bases++];
	c->n_rot = layer_rot(f->m, l);
	c->base = l->rope_base;
	c->freq_scale = l->rope_scale;
	c->ext_factor = hp->rope_ext_factor;
	c->mscale = hp->rope_mscale;
	c->ff = layer_ff(f->m, l) ? model_rope_factors(f->m, f->n_ctx) : NULL;
	c->still = hp->imrope ? M->still : NULL;
	rope_corr_dims(c, c->n_rot, hp->n_ctx_orig, hp->yarn_beta_fast, hp->yarn_beta_slow);
}


static int prepare_weights(struct fwd *f)
{
	const struct model *m = f->m;
	const uint32_t nl = m->hp.n_layer;
	f->mats = eng_calloc(1, sizeof *f->mats);
	if (!f->mats)
		return ENGINE_E_NOMEM;
	f->mats->L = eng_calloc(nl ? nl : 1, sizeof *f->mats->L);
	const size_t per_layer = 22 + 3 * (size_t)m->hp.n_expert;
	struct quant_matrix **all = eng_calloc((size_t)nl * per_layer + 1, sizeof *all);
	if (!f->mats->L || !all) {
		free(all);
		return ENGINE_E_NOMEM;
	}
	int n = 0;
	/* layers below cpu_first run on the GPU: nothing to prepare here */
	for (uint32_t il = f->cpu_first; il < nl; il++) {
		const struct layer *l = &m->layers[il];
		struct fwd_layer_mats *L = &f->mats->L[il];
		const struct weight *src[] = {&l->sc_in, &l->sc_out, &l->ssm_qkv, &l->ssm_z, &l->ssm_beta, &l->ssm_alpha, &l->ssm_out,
					      &l->wq, &l->wk, &l->wv, &l->wo, &l->wqkv, &l->w_gate, &l->w_up, &l->w_down,
					      &l->ffn_gate_inp, &l->gate_shexp, &l->up_shexp, &l->down_shexp, &l->shexp_gate,
					      &l->ple_gate, &l->ple_proj};
		struct quant_matrix *dst[] = {&L->sc_in, &L->sc_out, &L->ssm_qkv, &L->ssm_z, &L->ssm_beta, &L->ssm_alpha, &L->ssm_out,
					      &L->wq, &L->wk, &L->wv, &L->wo, &L->wqkv, &L->w_gate, &L->w_up, &L->w_down,
					      &L->router, &L->sh_gate, &L->sh_up, &L->sh_down, &L->sh_w, &L->ple_gate, &L->ple_proj};
		for (size_t i = 0; i < sizeof src / sizeof src[0]; i++) {
			if (!src[i]->data)
				continue;
			if (quant_matrix_init(dst[i], src[i]->type, src[i]->data, src[i]->row_bytes, src[i]->rows,
					      src[i]->cols)) {
				free(all);
				return ENGINE_E_FORMAT;
			}
			all[n++] = dst[i];
		}
		if (l->ffn != FFN_MOE)
			continue;
		/* one matrix per expert, in the file's order: a batch reads
		 * each chosen expert's three matrices once */
		const struct weight *ew[3] = {&l->gate_exps, &l->up_exps, &l->down_exps};
		struct quant_matrix **ed[3] = {&L->gate_e, &L->up_e, &L->down_e};
		for (int k = 0; k < 3; k++) {
			*ed[k] = eng_calloc(ew[k]->n_mat, sizeof **ed[k]);
			if (!*ed[k]) {
				free(all);
				return ENGINE_E_NOMEM;
			}
		}
		for (uint32_t e = 0; e < m->hp.n_expert; e++)
			for (int k = 0; k < 3; k++) {
				const struct weight *w = ew[k];
				const char *data = (const char *)w->data + (size_t)e * (size_t)w->rows * w->row_bytes;
				if (quant_matrix_init(&(*ed[k])[e], w->type, data, w->row_bytes, w->rows, w->cols)) {
					free(all);
					return ENGINE_E_FORMAT;
				}
				all[n++] = &(*ed[k])[e];
			}
	}
	if (f->cpu_first < nl) {
		if (quant_matrix_init(&f->mats->output, m->output.type, m->output.data, m->output.row_bytes,
				      m->output.rows, m->output.cols)) {
			free(all);
			return ENGINE_E_FORMAT;
		}
		all[n++] = &f->mats->output;
	}
	if (m->ple_model_proj.data) {
		const struct weight *w = &m->ple_model_proj;
		if (quant_matrix_init(&f->mats->ple_model_proj, w->type, w->data, w->row_bytes, w->rows, w->cols)) {
			free(all);
			return ENGINE_E_FORMAT;
		}
		all[n++] = &f->mats->ple_model_proj;
	}
	if (m->hp.imrope) {
		/* ggml_mrope_cache_init, interleaved: pair i's sector s = i mod
		 * the sections' total takes h if s % 3 == 1 and s < 3 h, w if
		 * s % 3 == 2 and s < 3 w, t if s % 3 == 0 and s < 3 t, else
		 * the fourth axis */
		const int32_t *sec = m->hp.rope_sections;
		const int total = sec[0] + sec[1] + sec[2] + sec[3];
		for (uint32_t i = 0; i < m->hp.n_rot / 2 && i < 256; i++) {
			const int s = (int)i % total;
			const bool txyz = (s % 3 == 1 && s < 3 * sec[1]) || (s % 3 == 2 && s < 3 * sec[2]) ||
					  (s % 3 == 0 && s < 3 * sec[0]);
			f->mats->still[i] = !txyz;
		}
	}
	for (uint32_t il = 0; il < nl; il++)
		add_rope(f, &m->layers[il]);
	{
		size_t rb = (size_t)f->max_batch * (m->hp.n_rot / 2) * 2 * (size_t)f->mats->n_bases * sizeof(float);
		f->mats->rope = eng_malloc(rb ? rb : 1);
		if (!f->mats->rope) {
			free(all);
			return ENGINE_E_NOMEM;
		}
		f->bytes += rb;
	}
	if (m->hp.act == ACT_GELU) {
		f->mats->gelu = gelu_table();
		if (!f->mats->gelu) {
			free(all);
			return ENGINE_E_NOMEM;
		}
		f->bytes += 65536 * sizeof(float);
	}
	/* one arena of huge pages: decode streams it front to back */
	size_t total = 0;
	for (int k = 0; k < n; k++)
		total += (quant_matrix_pack_bytes(all[k]) + 63) & ~(size_t)63;
	struct pack_job j = {.mats = all, .n = 0, .g = m->gguf};
	if (total > 0) {
		const size_t huge = 2u << 20;
		size_t alloc = (total + huge - 1) / huge * huge;
		if (eng_posix_memalign(&f->mats->arena, huge, alloc) != 0) {
			f->mats->arena = NULL;
			free(all);
			return ENGINE_E_NOMEM;
		}
		f->mats->arena_bytes = alloc;
#ifdef MADV_HUGEPAGE
		madvise(f->mats->arena, alloc, MADV_HUGEPAGE);
#endif
	}
	size_t off = 0;
	for (int k = 0; k < n; k++) {
		size_t b = (quant_matrix_pack_bytes(all[k]) + 63) & ~(size_t)63;
		if (b == 0)
			continue;
		quant_matrix_pack_at(all[k], (char *)f->mats->arena + off);
		off += b;
		f->packed_bytes += all[k]->packed_bytes;
		all[j.n++] = all[k];
		j.total += (all[k]->rows + QUANT_ROW_GROUP - 1) / QUANT_ROW_GROUP;
	}
	if (j.n > 0)
		pool_run_tasks(f->pool, pack_task, &j, pool_size(f->pool) * 8);
	f->bytes += f->packed_bytes;
	free(all);
	return 0;
}

/* Scratch of qwen35's blocks: the Gated DeltaNet layers, gated
 * attention's [q | gate] rows, the shared expert's gate. */
static int gdn_init(struct fwd *f)
{
	const struct hparams *hp = &f->m->hp;
	struct fwd_gdn *G = &f->mats->gdn;
	const size_t B = (size_t)f->max_batch, QD = (size_t)hp->n_head * hp->head_dim;
	bool gated = false, shw = false;
	for (uint32_t il = 0; il < hp->n_layer; il++) {
		gated = gated || f->m->layers[il].q_gated;
		shw = shw || f->m->layers[il].shexp_gate.data;
	}
	if (hp->n_recurrent > 0 && hp->sc_l > 0) {
		if (!(G->bcx = alloc_track(f, B * 3 * hp->n_embd * sizeof(float))))
			return ENGINE_E_NOMEM;
	} else if (hp->n_recurrent > 0) {
		const size_t C = ssm_conv_dim(hp), VD = (size_t)hp->ssm_heads_v * hp->ssm_state;
		G->qkv = alloc_track(f, B * C * sizeof(float));
		G->z = alloc_track(f, B * VD * sizeof(float));
		G->alpha = alloc_track(f, B * hp->ssm_heads_v * sizeof(float));
		G->beta = alloc_track(f, B * hp->ssm_heads_v * sizeof(float));
		G->o = alloc_track(f, B * VD * sizeof(float));
		if (!G->qkv || !G->z || !G->alpha || !G->beta || !G->o)
			return ENGINE_E_NOMEM;
	}
	if (gated) {
		G->qfull = alloc_track(f, B * 2 * QD * sizeof(float));
		G->qgate = alloc_track(f, B * QD * sizeof(float));
		if (!G->qfull || !G->qgate)
			return ENGINE_E_NOMEM;
	}
	if (shw && !(G->shw = alloc_track(f, B * sizeof(float))))
		return ENGINE_E_NOMEM;
	return 0;
}

int fwd_init(struct fwd *f, const struct model *m, pool *p, uint32_t n_ctx, int max_batch)
{
	return fwd_init_split(f, m, p, n_ctx, max_batch, 0);
}

int fwd_init_split(struct fwd *f, const struct model *m, pool *p, uint32_t n_ctx, int max_batch,
		   uint32_t cpu_first)
{
	const struct hparams *hp = &m->hp;
	memset(f, 0, sizeof *f);
	if (cpu_first > hp->n_layer)
		return ENGINE_E_INVAL;
	f->cpu_first = cpu_first;
	f->m = m;
	f->be = &cpu_be;
	f->pool = p;
	f->max_batch = max_batch;
	f->n_ctx = n_ctx;
	const size_t B = (size_t)max_batch;
	const size_t E = hp->n_embd, QD = (size_t)hp->n_head * hp->head_dim;
	const size_t KD = hp->layer_shapes ? hp->kv_dim : (size_t)hp->n_head_kv * hp->head_dim;
	size_t group = hp->n_head / hp->n_head_kv;
	for (uint32_t il = 0; hp->layer_shapes && il < hp->n_layer; il++)
		if (hp->n_head / m->layers[il].n_head_kv > group)
			group = hp->n_head / m->layers[il].n_head_kv;
	const size_t F = hp->n_ff > hp->n_ff_shexp ? hp->n_ff : hp->n_ff_shexp, D = hp->head_dim;
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
	int rc = prepare_weights(f);
	if (!rc)
		rc = moe_init(f);
	if (!rc)
		rc = gdn_init(f);
	if (!rc && hp->layer_shapes)
		rc = gemma4_init(f);
	if (rc) {
		fwd_free(f);
		return rc;
	}
	/* the largest activation row (F32 weights keep activations in f32),
	 * one buffer per activation format of a fused product */
	f->xact_row_cap = widest * sizeof(float) + 64;
	for (uint32_t il = 0; il < hp->n_layer; il++) {
		const struct quant_matrix *lw[] = {&f->mats->L[il].wq, &f->mats->L[il].wk, &f->mats->L[il].wv,
						   &f->mats->L[il].wo, &f->mats->L[il].wqkv, &f->mats->L[il].w_gate,
						   &f->mats->L[il].w_up, &f->mats->L[il].w_down, &f->mats->L[il].router,
						   &f->mats->L[il].sh_down, &f->mats->L[il].ssm_out, &f->mats->L[il].ple_proj};
		for (size_t i = 0; i < sizeof lw / sizeof lw[0]; i++)
			if (lw[i]->data && act_stride(lw[i]) > f->xact_row_cap)
				f->xact_row_cap = act_stride(lw[i]);
	}
	if (f->mats->output.data && act_stride(&f->mats->output) > f->xact_row_cap)
		f->xact_row_cap = act_stride(&f->mats->output);
	f->xact = alloc_track(f, MM_MAX_PARTS * B * f->xact_row_cap);
	f->scores = alloc_track(f, nth * n_ctx * group * ATTN_TOKS * sizeof(float));
	/* the widest query row of any KV type: F16 (2 bytes an element) */
	f->vrow = alloc_track(f, nth * D * sizeof(float));
	/* the rotated queries of a work item and their softmax sums */
	f->qrot = alloc_track(f, nth * ATTN_TOKS * group * (D + 1) * sizeof(float));
	if (!f->x || !f->xn || !f->q || !f->k || !f->v || !f->att || !f->o || !f->gate || !f->up ||
	    !f->logits || !f->xact || !f->scores || !f->vrow || !f->qrot) {
		fwd_free(f);
		return ENGINE_E_NOMEM;
	}
	return 0;
}

void fwd_free(struct fwd *f)
{
	fwd_cuda_detach(f);
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
	free(f->qrot);
	free(f->vrow);
	if (f->mats) {
		for (uint32_t il = 0; f->mats->L && il < f->m->hp.n_layer; il++) {
			struct fwd_layer_mats *L = &f->mats->L[il];
			struct quant_matrix *lw[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wqkv, &L->w_gate, &L->w_up, &L->w_down,
						     &L->router, &L->sh_gate, &L->sh_up, &L->sh_down, &L->sh_w,
						     &L->ssm_qkv, &L->ssm_z, &L->ssm_alpha, &L->ssm_beta, &L->ssm_out,
						     &L->sc_in, &L->sc_out, &L->ple_gate, &L->ple_proj};
			for (size_t i = 0; i < sizeof lw / sizeof lw[0]; i++)
				quant_matrix_free(lw[i]);
			struct quant_matrix *ex[] = {L->gate_e, L->up_e, L->down_e};
			for (int k = 0; k < 3; k++) {
				for (uint32_t e = 0; ex[k] && e < f->m->hp.n_expert; e++)
					quant_matrix_free(&ex[k][e]);
				free(ex[k]);
			}
		}
		quant_matrix_free(&f->mats->output);
		quant_matrix_free(&f->mats->ple_model_proj);
		free(f->mats->ple);
		free(f->mats->ple_g);
		free(f->mats->g4_xr);
		free(f->mats->g4_xe);
		free(f->mats->g4_dn);
		moe_free(f->mats->moe);
		struct fwd_gdn *G = &f->mats->gdn;
		float *gb[] = {G->qkv, G->z, G->alpha, G->beta, G->o, G->qfull, G->qgate, G->shw, G->bcx};
		for (size_t i = 0; i < sizeof gb / sizeof gb[0]; i++)
			free(gb[i]);
		free(f->mats->arena);
		free(f->mats->gelu);
		free(f->mats->rope);
		free(f->mats->L);
		free(f->mats);
	}
	memset(f, 0, sizeof *f);
}

/* ---- prefill batch sizes -------------------------------------------------- */

int fwd_batch_next(struct fwd_batcher *b, int remaining)
{
	if (b->cur < FWD_BATCH_MIN || b->cur > FWD_BATCH_MAX)
		b->cur = FWD_BATCH_START;
	return remaining < b->cur ? remaining : b->cur;
}

void fwd_batch_done(struct fwd_batcher *b, int n, double ms)
{
	if (n != b->cur)   /* a prompt's short tail says little */
		return;
	if (ms < FWD_BATCH_FAST_MS && b->cur * 2 <= FWD_BATCH_MAX)
		b->cur *= 2;
	else if (ms > FWD_BATCH_SLOW_MS && b->cur / 2 >= FWD_BATCH_MIN)
		b->cur /= 2;
}

/* ---- the pass ------------------------------------------------------------ */

/* K and V of N values (the row's prefix) at position pos of layer */
static void store_row(uint32_t type, bool rot, const float *signs, const float *x, char *dst, int64_t n,
		      int64_t D)
{
	if (!rot) {
		kvq_quantize_row(type, x, dst, n);
		return;
	}
	/* each head rotated on its own, then quantised into its place */
	float h[KVQ_MAX_HEAD];
	const size_t hb = kvq_row_bytes(type, (uint64_t)D);
	for (int64_t o = 0; o < n; o += D, dst += hb) {
		memcpy(h, x + o, (size_t)D * sizeof(float));
		kvq_rotate(h, (int)D, signs);
		kvq_quantize_row(type, h, dst, D);
	}
}

/* K and V of N values (the row's prefix; heads of D) at position pos of layer */
static void store_kv_n(struct kv_cache *kv, uint32_t layer, uint32_t pos, const float *k, const float *v,
		       int64_t n, int64_t D)
{
	store_row(kv->type_k, kv->rot_k, kv->rot_signs, k, (char *)kv->k[layer] + (size_t)pos * kv_row_k(kv, layer),
		  n, D);
	store_row(kv->type_v, kv->rot_v, kv->rot_signs, v, (char *)kv->v[layer] + (size_t)pos * kv_row_v(kv, layer),
		  n, D);
}

static void store_kv(struct kv_cache *kv, uint32_t layer, uint32_t pos, const float *k, const float *v,
		     int64_t D)
{
	store_kv_n(kv, layer, pos, k, v, kv->kv_dim, D);
}

/* ---- per-token steps, run over the batch on the pool ------------------------ */

struct tok_job {
	struct fwd *f;
	struct kv_cache *kv;
	uint32_t il, pos0;
	int T;
	float *q, *k, *v;
	int64_t qs, ks;
	const float *cs;      /* rope table of this layer's base */
	const float *qfull;   /* gated attention: [q | gate] rows of 2 * n_head * head_dim */
	const int32_t *tokens;
	void (*step)(const struct tok_job *j, int t);
};

static void tok_task(void *ctx, int i, int n)
{
	const struct tok_job *j = ctx;
	for (int t = j->T * i / n; t < j->T * (i + 1) / n; t++)
		j->step(j, t);
}

/* One step for every token of the batch: inline for a single token, else
 * a pool job (the steps of different tokens are independent). */
static void for_tokens(struct tok_job *j, void (*step)(const struct tok_job *, int))
{
	j->step = step;
	if (j->T == 1)
		step(j, 0);
	else
		pool_run_tasks(j->f->pool, tok_task, j, j->T < 2 * pool_size(j->f->pool) ? j->T : 2 * pool_size(j->f->pool));
}

static void add_bias1(float *x, const struct vec *b)
{
	if (b->data)
		for (int64_t i = 0; i < b->n; i++)
			x[i] += b->data[i];
}

/* layer input: xn = attn_norm(x) */
static void step_attn_norm(const struct tok_job *j, int t)
{
	const struct hparams *hp = &j->f->m->hp;
	const int64_t E = hp->n_embd;
	j->f->be->rmsnorm(j->f->xn + (size_t)t * (size_t)E, j->f->x + (size_t)t * (size_t)E,
			  j->f->m->layers[j->il].attn_norm.data, E, hp->norm_eps);
}

/* after q/k/v: biases, per-head norms, rope, K/V into the cache, q dense */
static void step_qk(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const struct layer *l = &f->m->layers[j->il];
	const int64_t D = hp->head_dim, QD = (int64_t)hp->n_head * D;
	float *qt = j->q + (size_t)t * (size_t)j->qs, *kt = j->k + (size_t)t * (size_t)j->ks;
	float *vt = j->v + (size_t)t * (size_t)j->ks;
	if (l->q_gated) {
		/* each head's q then its gate: q dense here, the gates apart */
		const float *src = j->qfull + (size_t)t * (size_t)(2 * QD);
		float *g = f->mats->gdn.qgate + (size_t)t * (size_t)QD;
		for (uint32_t h = 0; h < hp->n_head; h++) {
			memcpy(qt + h * D, src + 2 * h * D, (size_t)D * sizeof(float));
			memcpy(g + h * D, src + 2 * h * D + D, (size_t)D * sizeof(float));
		}
	}
	add_bias1(qt, &l->bq);
	add_bias1(kt, &l->bk);
	add_bias1(vt, &l->bv);
	if (l->q_norm.data) {
		for (uint32_t h = 0; h < hp->n_head; h++)
			f->be->rmsnorm(qt + h * D, qt + h * D, l->q_norm.data, D, hp->norm_eps);
		for (uint32_t h = 0; h < hp->n_head_kv; h++)
			f->be->rmsnorm(kt + h * D, kt + h * D, l->k_norm.data, D, hp->norm_eps);
	}
	if (!l->no_rope) {
		const float *cs = j->cs + (size_t)t * hp->n_rot, *sn = cs + hp->n_rot / 2;
		f->be->rope(qt, (int)hp->n_head, (int)D, (int)hp->n_rot, cs, sn, hp->rope_style);
		f->be->rope(kt, (int)hp->n_head_kv, (int)D, (int)hp->n_rot, cs, sn, hp->rope_style);
	}
	if (hp->attn_temp_scale != 0.0f) {
		/* mistral3's temperature, by position (llama_graph's attn_temp) */
		const double p = (double)(j->pos0 + (uint32_t)t);
		const float sc = (float)(log(floor(p / (double)hp->n_ctx_orig) + 1.0) * hp->attn_temp_scale + 1.0);
		for (int64_t i = 0; i < QD; i++)
			qt[i] *= sc;
	}
	store_kv(j->kv, j->il, j->pos0 + (uint32_t)t, kt, vt, D);
	/* the attention reads q densely from f->q (a fused qkv row holds it
	 * first, so the move never overwrites a later token's row) */
	if (j->qs != QD)
		memmove(f->q + (size_t)t * (size_t)QD, qt, (size_t)QD * sizeof(float));
}

/* gated attention: each head's output times sigmoid(its gate) */
static void step_attn_gate(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const size_t QD = (size_t)f->m->hp.n_head * f->m->hp.head_dim;
	float *a = f->att + (size_t)t * QD;
	const float *g = f->mats->gdn.qgate + (size_t)t * QD;
	for (size_t i = 0; i < QD; i++)
		a[i] *= 1.0f / (1.0f + expf(-g[i]));
}

/* ---- a Gated DeltaNet layer (qwen35; gdn.h) ---- */

struct gdn_job {
	struct fwd *f;
	const struct layer *l;
	struct gdn_dims d;
	int T;
	const float *st_in;   /* the layer's state before the batch */
	float *st_out;        /* and after it (the cache's rs_next) */
};

static void gdn_conv_task(void *ctx, int i, int n)
{
	const struct gdn_job *j = ctx;
	gdn_conv(&j->d, j->f->mats->gdn.qkv, j->T, j->l->ssm_conv.data, j->st_in, j->st_out, j->d.C * i / n,
		 j->d.C * (i + 1) / n);
}

static void gdn_prep_task(void *ctx, int i, int n)
{
	const struct gdn_job *j = ctx;
	const struct fwd_gdn *G = &j->f->mats->gdn;
	const size_t C = (size_t)j->d.C, HV = (size_t)j->d.HV;
	for (int t = j->T * i / n; t < j->T * (i + 1) / n; t++)
		gdn_prep(&j->d, G->qkv + (size_t)t * C, G->alpha + (size_t)t * HV, G->beta + (size_t)t * HV,
			 j->l->ssm_dt.data, j->l->ssm_a.data, j->f->m->hp.norm_eps);
}

static void gdn_recur_task(void *ctx, int i, int n)
{
	const struct gdn_job *j = ctx;
	const struct fwd_gdn *G = &j->f->mats->gdn;
	const size_t conv = (size_t)j->d.C * (size_t)(j->d.K - 1), SS = (size_t)j->d.S * (size_t)j->d.S;
	for (int h = j->d.HV * i / n; h < j->d.HV * (i + 1) / n; h++)
		gdn_recur(&j->d, h, G->qkv, j->T, G->alpha, G->beta, j->st_in + conv + (size_t)h * SS,
			  j->st_out + conv + (size_t)h * SS, G->o);
}

static void gdn_norm_task(void *ctx, int i, int n)
{
	const struct gdn_job *j = ctx;
	const struct fwd_gdn *G = &j->f->mats->gdn;
	const size_t VD = (size_t)j->d.HV * (size_t)j->d.S;
	for (int t = j->T * i / n; t < j->T * (i + 1) / n; t++)
		gdn_gate_norm(&j->d, G->o + (size_t)t * VD, G->z + (size_t)t * VD, j->l->ssm_norm.data,
			      j->f->m->hp.norm_eps);
}

static void sc_task(void *ctx, int i, int n)
{
	const struct gdn_job *j = ctx;
	const int E = (int)j->f->m->hp.n_embd;
	shortconv(E, (int)j->f->m->hp.sc_l, j->f->mats->gdn.bcx, j->T, j->l->sc_conv.data, j->st_in, j->st_out,
		  E * i / n, E * (i + 1) / n);
}

/* lfm2's short-convolution layer: output into f->o, state as gdn_layer. */
static void shortconv_layer(struct fwd *f, struct kv_cache *kv, uint32_t il, int T)
{
	const struct hparams *hp = &f->m->hp;
	const struct layer *l = &f->m->layers[il];
	const struct fwd_layer_mats *L = &f->mats->L[il];
	const int64_t E = hp->n_embd;
	float *bcx = f->mats->gdn.bcx;

	matmul1(f, &L->sc_in, f->xn, T, E, bcx, 3 * E);
	struct gdn_job j = {.f = f, .l = l, .T = T,
			    .st_in = kv->rs + (size_t)l->rec_idx * kv->rs_floats,
			    .st_out = kv->rs_next + (size_t)l->rec_idx * kv->rs_floats};
	pool_run_tasks(f->pool, sc_task, &j, pool_size(f->pool));
	matmul1(f, &L->sc_out, bcx, T, 3 * E, f->o, E);
}

/* The layer's output into f->o from xn, its state from kv->rs to
 * kv->rs_next. */
static void gdn_layer(struct fwd *f, struct kv_cache *kv, uint32_t il, int T)
{
	const struct hparams *hp = &f->m->hp;
	const struct layer *l = &f->m->layers[il];
	const struct fwd_layer_mats *L = &f->mats->L[il];
	const struct fwd_gdn *G = &f->mats->gdn;
	const int64_t E = hp->n_embd, C = (int64_t)ssm_conv_dim(hp), HV = hp->ssm_heads_v;
	const int64_t VD = HV * (int64_t)hp->ssm_state;
	const int nth = pool_size(f->pool);

	const struct mm_part p3[3] = {{&L->ssm_qkv, G->qkv, C}, {&L->ssm_z, G->z, VD}, {&L->ssm_beta, G->beta, HV}};
	f->be->matmul(f, p3, 3, f->xn, T, E);
	matmul1(f, &L->ssm_alpha, f->xn, T, E, G->alpha, HV);
	struct gdn_job j = {.f = f, .l = l, .T = T,
			    .d = {.C = (int)C, .K = (int)hp->ssm_conv_k, .S = (int)hp->ssm_state,
				  .HK = (int)hp->ssm_heads_k, .HV = (int)HV},
			    .st_in = kv->rs + (size_t)l->rec_idx * kv->rs_floats,
			    .st_out = kv->rs_next + (size_t)l->rec_idx * kv->rs_floats};
	pool_run_tasks(f->pool, gdn_conv_task, &j, nth);
	pool_run_tasks(f->pool, gdn_prep_task, &j, T < nth ? T : nth);
	pool_run_tasks(f->pool, gdn_recur_task, &j, (int)HV);
	pool_run_tasks(f->pool, gdn_norm_task, &j, T < nth ? T : nth);
	matmul1(f, &L->ssm_out, G->o, T, VD, f->o, E);
}

/* after the output projection: post norm, residual, ffn norm */
static void step_post_attn(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const struct layer *l = &f->m->layers[j->il];
	const int64_t E = hp->n_embd;
	float *o = f->o + (size_t)t * (size_t)E, *x = f->x + (size_t)t * (size_t)E;
	add_bias1(o, &l->bo);
	if (l->attn_post_norm.data)
		f->be->rmsnorm(o, o, l->attn_post_norm.data, E, hp->norm_eps);
	if (hp->res_scale != 0.0f)
		for (int64_t i = 0; i < E; i++)
			o[i] *= hp->res_scale;
	for (int64_t i = 0; i < E; i++)
		x[i] += o[i];
	f->be->rmsnorm(f->xn + (size_t)t * (size_t)E, x, l->ffn_norm.data, E, hp->norm_eps);
}

/* after the down projection: post norm, residual, next layer's input norm */
static void step_post_ffn(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const struct layer *l = &f->m->layers[j->il];
	const int64_t E = hp->n_embd;
	float *o = f->o + (size_t)t * (size_t)E, *x = f->x + (size_t)t * (size_t)E;
	if (l->ffn_post_norm.data)
		f->be->rmsnorm(o, o, l->ffn_post_norm.data, E, hp->norm_eps);
	if (hp->res_scale != 0.0f)
		for (int64_t i = 0; i < E; i++)
			o[i] *= hp->res_scale;
	for (int64_t i = 0; i < E; i++)
		x[i] += o[i];
	if (j->il + 1 < hp->n_layer)
		f->be->rmsnorm(f->xn + (size_t)t * (size_t)E, x, f->m->layers[j->il + 1].attn_norm.data, E,
			       hp->norm_eps);
}

/* x = embedding row (scaled for gemma), then the first layer's norm */
static void step_embed(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct model *m = f->m;
	const int64_t E = m->hp.n_embd;
	float *x = f->x + (size_t)t * (size_t)E;
	const int32_t id = j->tokens[t];
	quant_dequant_row(m->tok_embd.type, (const char *)m->tok_embd.data + (size_t)id * m->tok_embd.row_bytes, x, E);
	if (m->hp.embd_scale != 1.0f)
		for (int64_t i = 0; i < E; i++)
			x[i] *= m->hp.embd_scale;
	step_attn_norm(j, t);
}

/* rope angles of the batch's positions for every distinct base */
static void rope_task(void *ctx, int i, int n)
{
	const struct tok_job *j = ctx;
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const int rows = j->T * f->mats->n_bases;
	for (int r = rows * i / n; r < rows * (i + 1) / n; r++) {
		const int b = r / j->T, t = r % j->T;
		/* rows hp->n_rot apart (the largest); this rope's n_rot filled */
		const int nr = f->mats->ropes[b].n_rot;
		float *cs = f->mats->rope + ((size_t)b * (size_t)f->max_batch + (size_t)t) * hp->n_rot;
		rope_angles(cs, cs + nr / 2, nr, j->pos0 + (uint32_t)t, &f->mats->ropes[b]);
	}
}

static const float *rope_table(struct fwd *f, const struct layer *l)
{
	const int b = find_rope(f, l);
	return b < 0 ? NULL : f->mats->rope + (size_t)b * (size_t)f->max_batch * f->m->hp.n_rot;
}

/* logits = cap * tanh(logits / cap), as ggml: scaled by 1/cap, tanh, scaled
 * by cap (gemma's final_logit_softcapping) */
static void softcap(float *x, size_t n, float cap)
{
	const float inv = 1.0f / cap;
	for (size_t i = 0; i < n; i++)
		x[i] = tanhf(x[i] * inv) * cap;
}

int fwd_logits_reserve(struct fwd *f, int nl)
{
	const size_t V = f->m->hp.n_vocab;
	if (nl > f->logits_rows) {
		float *lg = eng_realloc(f->logits, (size_t)nl * V * sizeof(float));
		if (!lg)
			return ENGINE_E_NOMEM;
		f->bytes += (size_t)(nl - f->logits_rows) * V * sizeof(float);
		f->logits = lg;
		f->logits_rows = nl;
	}
	return 0;
}

/* ---- Gemma 4's layer (hparams.layer_shapes) -----------------------------------
 * llama.cpp's src/models/gemma4.cpp step by step (model.c says what its
 * blocks are).  Shapes come from the layer: D its head size, G its KV
 * heads, F its FFN width, its rope's dims.  x is the residual stream, xn
 * the layer's normed input, as in eval_layers(). */

static int gemma4_init(struct fwd *f)
{
	const struct hparams *hp = &f->m->hp;
	struct fwd_mats *M = f->mats;
	const size_t B = (size_t)f->max_batch, E = hp->n_embd, P = hp->n_embd_pl, NL = hp->n_layer;
	if (P > 0) {
		M->ple = alloc_track(f, 2 * B * NL * P * sizeof(float));  /* inputs, then embedding rows */
		M->ple_g = alloc_track(f, B * P * sizeof(float));
		if (!M->ple || !M->ple_g)
			return ENGINE_E_NOMEM;
	}
	if (hp->n_expert > 0) {
		M->g4_xr = alloc_track(f, B * E * sizeof(float));
		M->g4_xe = alloc_track(f, B * E * sizeof(float));
		M->g4_dn = alloc_track(f, B * E * sizeof(float));
		if (!M->g4_xr || !M->g4_xe || !M->g4_dn)
			return ENGINE_E_NOMEM;
	}
	return 0;
}

/* per-layer inputs of token t, from proj(x) [NL][P] already in ple:
 * (rmsnorm(proj / sqrt(E)) + row(token) * sqrt(P)) / sqrt(2) per layer */
static void step_g4_ple(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct model *m = f->m;
	const struct hparams *hp = &m->hp;
	const size_t P = hp->n_embd_pl, NP = (size_t)hp->n_layer * P;
	float *pl = f->mats->ple + (size_t)t * NP;
	float *row = f->mats->ple + ((size_t)f->max_batch + (size_t)t) * NP;
	const float ps = 1.0f / sqrtf((float)hp->n_embd), es = sqrtf((float)P), is2 = 1.0f / sqrtf(2.0f);
	quant_dequant_row(m->ple_embd.type, (const char *)m->ple_embd.data + (size_t)j->tokens[t] * m->ple_embd.row_bytes,
			  row, (int64_t)NP);
	for (size_t i = 0; i < NP; i++)
		pl[i] *= ps;
	for (uint32_t il = 0; il < hp->n_layer; il++)
		f->be->rmsnorm(pl + il * P, pl + il * P, m->ple_proj_norm.data, (int64_t)P, hp->norm_eps);
	for (size_t i = 0; i < NP; i++)
		pl[i] = (pl[i] + row[i] * es) * is2;
}

static void gemma4_ple_inputs(struct fwd *f, struct tok_job *j)
{
	const struct hparams *hp = &f->m->hp;
	const int64_t NP = (int64_t)hp->n_layer * hp->n_embd_pl;
	matmul1(f, &f->mats->ple_model_proj, f->x, j->T, hp->n_embd, f->mats->ple, NP);
	for_tokens(j, step_g4_ple);
}

/* q norm and rope; for a layer with K/V of its own: V (K's projection
 * where there is no attn_v) RMS-normed without weight, K normed and
 * roped, both into the cache */
static void step_g4_qk(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const struct layer *l = &f->m->layers[j->il];
	const int64_t D = l->head_dim, H = hp->n_head, G = l->n_head_kv, KD = G * D;
	const int nr = (int)l->n_rot;
	const float *cs = j->cs + (size_t)t * hp->n_rot, *sn = cs + nr / 2;
	float *qt = f->q + (size_t)t * (size_t)(H * D);
	for (int64_t h = 0; h < H; h++)
		f->be->rmsnorm(qt + h * D, qt + h * D, l->q_norm.data, D, hp->norm_eps);
	f->be->rope(qt, (int)H, (int)D, nr, cs, sn, hp->rope_style);
	if (l->kv_src != (int32_t)j->il)
		return;
	float *kt = f->k + (size_t)t * (size_t)KD, *vt = f->v + (size_t)t * (size_t)KD;
	if (l->v_is_k)
		memcpy(vt, kt, (size_t)KD * sizeof(float));
	for (int64_t h = 0; h < G; h++) {
		f->be->rmsnorm(vt + h * D, vt + h * D, NULL, D, hp->norm_eps);
		f->be->rmsnorm(kt + h * D, kt + h * D, l->k_norm.data, D, hp->norm_eps);
	}
	f->be->rope(kt, (int)G, (int)D, nr, cs, sn, hp->rope_style);
	store_kv_n(j->kv, j->il, j->pos0 + (uint32_t)t, kt, vt, KD, D);
}

/* attention output: post norm, residual; the FFN's input norm, and the
 * experts' input and the router's (rmsnorm / sqrt(E) * scale) */
static void step_g4_post_attn(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const struct layer *l = &f->m->layers[j->il];
	const int64_t E = hp->n_embd;
	float *o = f->o + (size_t)t * (size_t)E, *x = f->x + (size_t)t * (size_t)E;
	f->be->rmsnorm(o, o, l->attn_post_norm.data, E, hp->norm_eps);
	for (int64_t i = 0; i < E; i++)
		x[i] += o[i];
	f->be->rmsnorm(f->xn + (size_t)t * (size_t)E, x, l->ffn_norm.data, E, hp->norm_eps);
	if (l->ffn != FFN_MOE)
		return;
	float *xr = f->mats->g4_xr + (size_t)t * (size_t)E;
	f->be->rmsnorm(f->mats->g4_xe + (size_t)t * (size_t)E, x, l->pre_norm_2.data, E, hp->norm_eps);
	f->be->rmsnorm(xr, x, NULL, E, hp->norm_eps);
	const float s = 1.0f / sqrtf((float)E);
	for (int64_t i = 0; i < E; i++)
		xr[i] = xr[i] * s * l->router_s.data[i];
}

/* the dense FFN's output beside the experts: post norm 1, kept aside */
static void step_g4_dense_out(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const int64_t E = hp->n_embd;
	f->be->rmsnorm(f->mats->g4_dn + (size_t)t * (size_t)E, f->o + (size_t)t * (size_t)E,
		       f->m->layers[j->il].post_norm_1.data, E, hp->norm_eps);
}

/* the experts' output: post norm 2, plus the dense one */
static void step_g4_moe_out(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const int64_t E = hp->n_embd;
	float *o = f->o + (size_t)t * (size_t)E;
	const float *dn = f->mats->g4_dn + (size_t)t * (size_t)E;
	f->be->rmsnorm(o, o, f->m->layers[j->il].post_norm_2.data, E, hp->norm_eps);
	for (int64_t i = 0; i < E; i++)
		o[i] = dn[i] + o[i];
}

/* the layer's end: its output scale, the next layer's input norm */
static void g4_layer_end(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const struct layer *l = &f->m->layers[j->il];
	const int64_t E = hp->n_embd;
	float *x = f->x + (size_t)t * (size_t)E;
	if (l->out_scale.data)
		for (int64_t i = 0; i < E; i++)
			x[i] *= l->out_scale.data[0];
	if (j->il + 1 < hp->n_layer)
		f->be->rmsnorm(f->xn + (size_t)t * (size_t)E, x, f->m->layers[j->il + 1].attn_norm.data, E,
			       hp->norm_eps);
}

/* FFN output: post norm, residual (then the per-layer input, or the end) */
static void step_g4_post_ffn(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const int64_t E = hp->n_embd;
	float *o = f->o + (size_t)t * (size_t)E, *x = f->x + (size_t)t * (size_t)E;
	f->be->rmsnorm(o, o, f->m->layers[j->il].ffn_post_norm.data, E, hp->norm_eps);
	for (int64_t i = 0; i < E; i++)
		x[i] += o[i];
	if (!hp->n_embd_pl)
		g4_layer_end(j, t);
}

/* the per-layer input's gate: gelu(gate) * this layer's input */
static void step_g4_ple_gate(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const size_t P = hp->n_embd_pl;
	const float *in = f->mats->ple + ((size_t)t * hp->n_layer + j->il) * P;
	quant_table_mul(f->mats->ple_g + (size_t)t * P, in, (int64_t)P, f->mats->gelu, GELU_LO, GELU_HI);
}

/* its projection: post norm, residual, then the layer's end */
static void step_g4_ple_out(const struct tok_job *j, int t)
{
	struct fwd *f = j->f;
	const struct hparams *hp = &f->m->hp;
	const int64_t E = hp->n_embd;
	float *o = f->o + (size_t)t * (size_t)E, *x = f->x + (size_t)t * (size_t)E;
	f->be->rmsnorm(o, o, f->m->layers[j->il].ple_post_norm.data, E, hp->norm_eps);
	for (int64_t i = 0; i < E; i++)
		x[i] += o[i];
	g4_layer_end(j, t);
}

/* One Gemma 4 layer over the batch in j (j->il set). */
static void gemma4_layer(struct fwd *f, struct tok_job *j)
{
	const struct model *m = f->m;
	const struct hparams *hp = &m->hp;
	const struct layer *l = &m->layers[j->il];
	const struct fwd_layer_mats *L = &f->mats->L[j->il];
	const int T = j->T;
	const int64_t E = hp->n_embd, D = l->head_dim, QD = (int64_t)hp->n_head * D;
	const int64_t KD = (int64_t)l->n_head_kv * D, F = l->n_ff, P = hp->n_embd_pl;

	if (l->kv_src == (int32_t)j->il) {
		const struct mm_part qkv[3] = {{&L->wq, f->q, QD}, {&L->wk, f->k, KD}, {&L->wv, f->v, KD}};
		f->be->matmul(f, qkv, l->v_is_k ? 2 : 3, f->xn, T, E);
	} else {
		matmul1(f, &L->wq, f->xn, T, E, f->q, QD);
	}
	j->cs = rope_table(f, l);
	for_tokens(j, step_g4_qk);
	f->be->attention(f, j->kv, j->il, j->pos0, T, l->swa ? hp->n_swa : 0);
	matmul1(f, &L->wo, f->att, T, QD, f->o, E);
	for_tokens(j, step_g4_post_attn);

	const struct mm_part gu[2] = {{&L->w_gate, f->gate, F}, {&L->w_up, f->up, F}};
	f->be->matmul_glu(f, gu, f->xn, T, E, true);
	matmul1(f, &L->w_down, f->gate, T, F, f->o, E);
	if (l->ffn == FFN_MOE) {
		for_tokens(j, step_g4_dense_out);
		moe_ffn_in(f, j->il, T, f->mats->g4_xr, f->mats->g4_xe);
		for_tokens(j, step_g4_moe_out);
	}
	for_tokens(j, step_g4_post_ffn);
	if (P > 0) {
		matmul1(f, &L->ple_gate, f->x, T, E, f->mats->ple_g, P);
		for_tokens(j, step_g4_ple_gate);
		matmul1(f, &L->ple_proj, f->mats->ple_g, T, P, f->o, E);
		for_tokens(j, step_g4_ple_out);
	}
}

/* Layers l0 .. l1-1 of the batch in j, from xn = attn_norm(x) of layer l0
 * to the residual stream x after layer l1-1 (and xn = the next layer's
 * input norm). */
static int eval_layers(struct fwd *f, struct tok_job *jp, uint32_t l0, uint32_t l1)
{
	const struct model *m = f->m;
	const struct hparams *hp = &m->hp;
	const struct backend *be = f->be;
	const int64_t E = hp->n_embd, F = hp->n_ff, D = hp->head_dim;
	const int64_t QD = (int64_t)hp->n_head * D, KD = (int64_t)hp->n_head_kv * D;
	struct tok_job j = *jp;
	const int T = j.T;
	const uint32_t pos0 = j.pos0;
	struct kv_cache *kv = j.kv;

	for (uint32_t il = l0; il < l1; il++) {
		const struct layer *l = &m->layers[il];
		const struct fwd_layer_mats *L = &f->mats->L[il];
		j.il = il;
		if (T > 1 && f->stop && f->stop(f->stop_ctx))
			return ENGINE_E_CANCELLED;
		if (hp->layer_shapes) {
			gemma4_layer(f, &j);
			continue;
		}

		if (l->shortconv) {
			shortconv_layer(f, kv, il, T);
			goto post_attn;
		}
		if (l->recurrent) {
			gdn_layer(f, kv, il, T);
			goto post_attn;
		}
		j.q = f->q;
		j.k = f->k;
		j.v = f->v;
		j.qs = QD;
		j.ks = KD;
		j.qfull = f->mats->gdn.qfull;
		if (l->q_gated) {
			const struct mm_part qkv[3] = {{&L->wq, f->mats->gdn.qfull, 2 * QD}, {&L->wk, j.k, KD},
						       {&L->wv, j.v, KD}};
			be->matmul(f, qkv, 3, f->xn, T, E);
		} else if (l->wqkv.data) {
			/* fused [q|k|v] rows: read the parts in place */
			matmul1(f, &L->wqkv, f->xn, T, E, f->q, QD + 2 * KD);
			j.k = f->q + QD;
			j.v = f->q + QD + KD;
			j.qs = j.ks = QD + 2 * KD;
		} else {
			const struct mm_part qkv[3] = {{&L->wq, j.q, QD}, {&L->wk, j.k, KD}, {&L->wv, j.v, KD}};
			be->matmul(f, qkv, 3, f->xn, T, E);
		}
		j.cs = rope_table(f, l);
		if (l->wqkv.data && T > 1) {
			/* the dense q rows overlap other tokens' fused rows: in order */
			j.step = step_qk;
			for (int t = 0; t < T; t++)
				step_qk(&j, t);
		} else {
			for_tokens(&j, step_qk);
		}
		be->attention(f, kv, il, pos0, T, l->swa ? hp->n_swa : 0);
		if (l->q_gated)
			for_tokens(&j, step_attn_gate);
		matmul1(f, &L->wo, f->att, T, QD, f->o, E);
post_attn:
		for_tokens(&j, step_post_attn);

		const bool gelu = hp->act == ACT_GELU;
		switch (l->ffn) {
		case FFN_FUSED:
			/* fused [gate|up] rows */
			matmul1(f, &L->w_up, f->xn, T, E, f->gate, 2 * F);
			for (int t = 0; t < T; t++) {
				float *g = f->gate + (size_t)t * (size_t)(2 * F);
				be->glu(f, g, g + F, F, false);
				memmove(f->gate + (size_t)t * (size_t)F, g, (size_t)F * sizeof(float));
			}
			matmul1(f, &L->w_down, f->gate, T, F, f->o, E);
			break;
		case FFN_DENSE: {
			const struct mm_part gu[2] = {{&L->w_gate, f->gate, F}, {&L->w_up, f->up, F}};
			be->matmul_glu(f, gu, f->xn, T, E, gelu);
			matmul1(f, &L->w_down, f->gate, T, F, f->o, E);
			break;
		}
		case FFN_MOE:
			moe_ffn(f, il, T);
			if (L->sh_gate.data) {
				/* the shared expert, added to the routed ones' sum */
				const int64_t FS = hp->n_ff_shexp;
				float *sh = f->mats->moe->sh_out;
				const struct mm_part gu[2] = {{&L->sh_gate, f->gate, FS}, {&L->sh_up, f->up, FS}};
				be->matmul_glu(f, gu, f->xn, T, E, gelu);
				matmul1(f, &L->sh_down, f->gate, T, FS, sh, E);
				if (L->sh_w.data) {
					/* qwen35moe: weighed by sigmoid(w . x) */
					float *sw = f->mats->gdn.shw;
					matmul1(f, &L->sh_w, f->xn, T, E, sw, 1);
					for (int t = 0; t < T; t++) {
						const float g = 1.0f / (1.0f + expf(-sw[t]));
						for (int64_t i = 0; i < E; i++)
							sh[(size_t)t * (size_t)E + (size_t)i] *= g;
					}
				}
				for (size_t i = 0; i < (size_t)T * (size_t)E; i++)
					f->o[i] += sh[i];
			}
			break;
		}
		for_tokens(&j, step_post_ffn);
	}
	return 0;
}

int fwd_eval(struct fwd *f, struct kv_cache *kv, const int32_t *tokens, int T, bool all_logits)
{
	const struct model *m = f->m;
	const struct hparams *hp = &m->hp;
	const int64_t E = hp->n_embd;
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

	const int tkind = T > 1, tmode = tune_begin(f, tkind);
	const double t_start = now_s();
	struct tok_job j = {.f = f, .kv = kv, .pos0 = pos0, .T = T, .tokens = tokens};
	const int first = all_logits ? 0 : T - 1;
	const int nl = T - first;
	if ((rc = fwd_logits_reserve(f, nl)) != 0)
		return rc;
	if (f->cpu_first > 0) {
		/* layers 0 .. cpu_first-1 on the GPU: x comes back for the
		 * rest, or (all layers there) the logits do */
		if ((rc = fwd_cuda_eval(f, kv, tokens, T, all_logits)) != 0)
			return rc;
		if (f->cpu_first == hp->n_layer)
			goto done;
	}
	if (T == 1)
		rope_task(&j, 0, 1);
	else
		pool_run_tasks(f->pool, rope_task, &j, pool_size(f->pool));
	if (f->cpu_first == 0) {
		for_tokens(&j, step_embed);
		if (m->ple_embd.data)
			gemma4_ple_inputs(f, &j);
	} else {
		j.il = f->cpu_first;
		for_tokens(&j, step_attn_norm);
	}
	if ((rc = eval_layers(f, &j, f->cpu_first, hp->n_layer)) != 0)
		return rc;   /* stopped: kv->n is still pos0, the rows written past it unused */

	for (int t = first; t < T; t++)
		f->be->rmsnorm(f->xn + (size_t)(t - first) * (size_t)E, f->x + (size_t)t * (size_t)E,
			       m->output_norm.data, E, hp->norm_eps);
	matmul1(f, &f->mats->output, f->xn, nl, E, f->logits, hp->n_vocab);
	if (hp->logit_scale != 0.0f) {
		const float inv = 1.0f / hp->logit_scale;
		for (size_t i = 0; i < (size_t)nl * hp->n_vocab; i++)
			f->logits[i] *= inv;
	}
done:
	if (hp->final_softcap > 0.0f)
		softcap(f->logits, (size_t)nl * hp->n_vocab, hp->final_softcap);
	if (kv->n_rec > 0) {
		/* the batch is complete: its recurrent states become current */
		float *cur = kv->rs;
		kv->rs = kv->rs_next;
		kv->rs_next = cur;
	}
	for (int t = 0; t < T; t++)
		kv->tokens[pos0 + (uint32_t)t] = tokens[t];
	kv->n = pos0 + (uint32_t)T;
	tune_end(f, tkind, tmode, (now_s() - t_start) / T);
	return 0;
}
