/*
 * bench.c - the benchmark request (engine_bench() in engine.h), run on the
 * engine thread against the loaded model.
 *
 * What it times is what a reply runs: every batch goes through the
 * worker's evaluation step (bench_env.eval: the same forward pass, thread
 * pool and device placement, the cancel poll, the CPU fallback), and the
 * prefill is cut by the worker's own batcher unless a fixed batch is
 * asked for.  Only the tokenizer, the template and the sampler's chain are
 * left out: the ids are drawn at random (xorshift, fixed seed, never 0 so
 * a BOS-less model sees text-like ids) and the first token is the greedy
 * argmax.  The runs use a KV cache of their own at the loaded context and
 * cache type, emptied before each run.
 *
 * The figures that come with the runs: the weight bytes one decode step
 * reads (every matrix once, the token embedding as one row unless it
 * doubles as the output matrix), so that a caller can turn tokens per
 * second into memory traffic; and the load's own costs, measured by
 * engine.c when it loaded the model.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "quant.h"
#include "sampler.h"

_Static_assert(ENGINE_BATCH_MIN == FWD_BATCH_MIN && ENGINE_BATCH_MAX == FWD_BATCH_MAX,
	       "engine.h's batch bounds are forward.h's");

#define BENCH_SEED 0x9e3779b97f4a7c15ull
#define WARMUP_DECODE 4

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Weight bytes one decode step reads. */
static uint64_t decode_bytes(const struct model *m)
{
	uint64_t b = 0;
	for (uint32_t il = 0; il < m->hp.n_layer; il++) {
		const struct layer *l = &m->layers[il];
		const struct weight *lw[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->wqkv,
					     &l->w_gate, &l->w_up, &l->w_down};
		for (size_t i = 0; i < sizeof lw / sizeof lw[0]; i++)
			if (lw[i]->data)
				b += (uint64_t)lw[i]->rows * lw[i]->row_bytes;
		/* a mixture reads its router and the chosen experts' rows */
		const struct weight *ew[] = {&l->gate_exps, &l->up_exps, &l->down_exps};
		if (l->ffn == FFN_MOE) {
			b += (uint64_t)l->ffn_gate_inp.rows * l->ffn_gate_inp.row_bytes;
			for (size_t i = 0; i < 3; i++)
				b += (uint64_t)m->hp.n_expert_used * (uint64_t)ew[i]->rows * ew[i]->row_bytes;
		}
	}
	b += (uint64_t)m->output.rows * m->output.row_bytes;
	if (m->output.data != m->tok_embd.data)
		b += m->tok_embd.row_bytes;
	return b;
}

static void fill_tokens(int32_t *tok, size_t n, uint32_t n_vocab, uint64_t seed)
{
	uint64_t x = seed ? seed : BENCH_SEED;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		tok[i] = n_vocab > 1 ? (int32_t)(1 + x % (n_vocab - 1)) : 0;
	}
}

/* Prefill of N tokens into KV: in batches of BATCH, or (0) as the
 * worker's batcher sizes them. */
static int prefill(const struct bench_env *b, struct kv_cache *kv, const int32_t *tok, uint32_t n, uint32_t batch)
{
	for (uint32_t p = 0; p < n;) {
		const int left = (int)(n - p);
		const int nb = batch ? (left < (int)batch ? left : (int)batch) : fwd_batch_next(b->batcher, left);
		const double t0 = now_ms();
		int rc = b->eval(b->ctx, kv, tok + p, nb);
		if (rc)
			return rc;
		if (!batch)
			fwd_batch_done(b->batcher, nb, now_ms() - t0);
		p += (uint32_t)nb;
	}
	return 0;
}

static int decode(const struct bench_env *b, struct kv_cache *kv, const int32_t *tok, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		if (b->cancelled(b->ctx))
			return ENGINE_E_CANCELLED;
		int rc = b->eval(b->ctx, kv, &tok[i], 1);
		if (rc)
			return rc;
	}
	return 0;
}

static void add_run(const struct bench_env *b, const struct engine_bench_opts *o, struct engine_bench_run *runs,
		    size_t *n_runs, enum engine_bench_test test, uint32_t rep, double ms)
{
	struct engine_bench_run *r = &runs[(*n_runs)++];
	memset(r, 0, sizeof *r);
	r->test = test;
	r->rep = rep;
	r->n_tokens = test == ENGINE_BENCH_PP ? o->n_prompt : o->n_gen;
	r->ms = ms;
	r->n_batch = test == ENGINE_BENCH_TG ? 1u : o->batch ? o->batch : (uint32_t)b->batcher->cur;
	r->load_ms = b->load_ms;
	r->prepare_ms = b->prepare_ms;
	r->packed_bytes = b->fwd->packed_bytes;
	r->decode_bytes = decode_bytes(b->m);
	r->gpu_layers = b->fwd->cpu_first;
	snprintf(r->cpu_level, sizeof r->cpu_level, "%s", quant_level_name(quant_level()));
}

int bench_run(const struct bench_env *b, const struct engine_bench_opts *o, struct engine_bench_run **runs,
	      size_t *n_runs, char *err, size_t errlen)
{
	const uint32_t reps = o->reps ? o->reps : 1;
	*runs = NULL;
	*n_runs = 0;
	const uint32_t need = o->n_prompt > o->n_gen ? o->n_prompt : o->n_gen;
	if (need > b->n_ctx) {
		snprintf(err, errlen, "the benchmark needs %u positions, the context holds %u", need, b->n_ctx);
		return ENGINE_E_CONTEXT;
	}
	if (o->batch > (uint32_t)FWD_BATCH_MAX) {
		snprintf(err, errlen, "a prefill batch holds at most %d tokens", FWD_BATCH_MAX);
		return ENGINE_E_INVAL;
	}
	struct kv_cache kv;
	int32_t *tok = malloc(((size_t)o->n_prompt + o->n_gen + 1) * sizeof *tok);
	*runs = calloc(2 * (size_t)reps, sizeof **runs);
	if (!tok || !*runs || kv_init_types(&kv, &b->m->hp, b->kv_type, b->kv_type_v, b->kv_rot, b->n_ctx) != 0) {
		free(tok);
		snprintf(err, errlen, "out of memory for the benchmark's tokens");
		return ENGINE_E_NOMEM;
	}
	int rc = kv_reserve(&kv, need);
	if (rc) {
		snprintf(err, errlen, "out of memory for a KV cache of %u positions", need);
		goto out;
	}
	fill_tokens(tok, (size_t)o->n_prompt + o->n_gen, b->m->hp.n_vocab, o->seed);

	/* warm-up, as llama-bench does: faults the weights in, and the
	 * batcher and the pass settle their sizes */
	if (o->n_prompt > 0)
		rc = prefill(b, &kv, tok, o->n_prompt, o->batch);
	if (!rc && o->n_gen > 0) {
		kv_truncate(&kv, 0);
		rc = decode(b, &kv, tok, o->n_gen < WARMUP_DECODE ? o->n_gen : WARMUP_DECODE);
	}
	for (uint32_t r = 0; !rc && o->n_prompt > 0 && r < reps; r++) {
		kv_truncate(&kv, 0);
		const double t0 = now_ms();
		rc = prefill(b, &kv, tok, o->n_prompt, o->batch);
		if (rc)
			break;
		(void)sampler_argmax(b->fwd->logits, b->m->hp.n_vocab);
		add_run(b, o, *runs, n_runs, ENGINE_BENCH_PP, r, now_ms() - t0);
	}
	for (uint32_t r = 0; !rc && o->n_gen > 0 && r < reps; r++) {
		kv_truncate(&kv, 0);
		const double t0 = now_ms();
		rc = decode(b, &kv, tok + o->n_prompt, o->n_gen);
		if (!rc)
			add_run(b, o, *runs, n_runs, ENGINE_BENCH_TG, r, now_ms() - t0);
	}
	if (rc && rc != ENGINE_E_CANCELLED)
		snprintf(err, errlen, "forward pass failed: %s", engine_status_str(rc));
out:
	kv_free(&kv);
	free(tok);
	return rc;
}
