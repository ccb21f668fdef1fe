/*
 * evaluator.c - the logits of token sequences on the caller's thread
 * (engine_evaluator in engine.h).
 *
 * A handle holds what engine_load() builds for a local model (the mapped
 * model, its tokenizer for the vocabulary's size and BOS rule, a compute
 * pool, the forward pass placed on the device asked for) and one KV cache
 * of n_ctx positions, but no worker thread: a run is a plain call.  Each
 * run empties the cache, evaluates the sequence in forward passes of at
 * most BATCH tokens with every position's logits asked for, and copies the
 * rows from FIRST on into the caller's buffer (the pass's rows are the
 * model's embedding width; the caller's are the vocabulary's, which may be
 * narrower).  A GPU failure mid-run rebuilds the pass on the CPU and runs
 * the sequence again from the start, as the worker redoes a step.
 *
 * Cancel: a sticky atomic flag, polled by the pass before each layer of a
 * batch and here between batches, so Ctrl-C stops a run within one layer.
 */
#include "engine.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "forward.h"
#include "kvquant.h"
#include "forward_cuda.h"
#include "gguf.h"
#include "model.h"
#include "pool.h"
#include "tokenizer.h"

struct engine_evaluator {
	struct model model;
	bool have_model;
	tokenizer *tok;
	pool *pool;
	struct fwd fwd;
	bool have_fwd;
	struct kv_cache kv;
	bool have_kv;
	struct engine_evaluator_info info;
	atomic_int cancel;
};

static bool stop_polled(void *ctx)
{
	engine_evaluator *ev = ctx;
	return atomic_load(&ev->cancel) != 0;
}

void engine_evaluator_cancel(engine_evaluator *ev)
{
	if (ev)
		atomic_store(&ev->cancel, 1);
}

void engine_evaluator_close(engine_evaluator *ev)
{
	if (!ev)
		return;
	if (ev->have_kv)
		kv_free(&ev->kv);
	if (ev->have_fwd)
		fwd_free(&ev->fwd);
	pool_free(ev->pool);
	tok_free(ev->tok);
	if (ev->have_model)
		model_free(&ev->model);
	free(ev);
}

const struct engine_evaluator_info *engine_evaluator_info(const engine_evaluator *ev)
{
	return &ev->info;
}

/* The tokenizer's facts into info.  0, or a status with a message. */
static int open_vocab(engine_evaluator *ev, const char *path, char *err, size_t errlen)
{
	char msg[512];
	ev->tok = tok_load(ev->model.gguf, msg, sizeof msg);
	if (!ev->tok) {
		snprintf(err, errlen, "%s: %s", path, msg);
		return ENGINE_E_FORMAT;
	}
	struct engine_evaluator_info *in = &ev->info;
	in->n_vocab = tok_n_vocab(ev->tok);
	if (in->n_vocab == 0 || in->n_vocab != ev->model.hp.n_vocab) {
		snprintf(err, errlen, "%s: the vocabulary has %u tokens but token_embd.weight %u rows", path, in->n_vocab,
			 ev->model.hp.n_vocab);
		return ENGINE_E_FORMAT;
	}
	in->bos = tok_bos(ev->tok);
	in->add_bos = tok_add_bos(ev->tok) && in->bos >= 0;
	in->add_eos = tok_add_eos(ev->tok);
	in->n_ctx_train = ev->model.hp.n_ctx_train;
	return 0;
}

/* The pool, the pass on its device and the cache.  0, or a status with a
 * message. */
static int open_forward(engine_evaluator *ev, const char *path, const struct engine_load_opts *o, int n_threads,
			char *err, size_t errlen)
{
	int nt = n_threads > 0 ? n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	ev->pool = pool_create(nt > 0 ? nt : 1);
	if (!ev->pool) {
		snprintf(err, errlen, "%s: cannot start %d compute threads", path, nt);
		return ENGINE_E_THREAD;
	}
	const uint32_t kv_type = kvq_from_engine((int)o->kv_type);
	const uint32_t kv_type_v = o->kv_type_v ? kvq_from_engine(o->kv_type_v - 1) : kv_type;
	if (!kv_type || !kv_type_v) {
		snprintf(err, errlen, "unknown KV cache type (types: %s)", ENGINE_KV_TYPE_NAMES);
		return ENGINE_E_INVAL;
	}
	for (int side = 0; side < 2; side++) {
		const uint32_t t = side ? kv_type_v : kv_type;
		if (kv_bad_head(&ev->model.hp, t)) {
			snprintf(err, errlen, "%s: head size %u cannot hold a %s %s cache (blocks of %d)", path,
				 kv_bad_head(&ev->model.hp, t), kvq_name(t), side ? "V" : "K", kvq_block(t));
			return ENGINE_E_INVAL;
		}
	}
	const uint32_t rot = o->kv_no_rotate || (kv_type == GGML_TYPE_F16 && kv_type_v == GGML_TYPE_F16) ? 0
													  : KVQ_ROT_SEED;
	int dev = o->device == ENGINE_DEVICE_CPU || o->device == ENGINE_DEVICE_CUDA ? (int)o->device
										    : ENGINE_DEVICE_AUTO;
	struct fwd_device_opts d = {.device = dev, .gpu_layers = o->gpu_layers, .kv_type = kv_type,
				    .kv_type_v = kv_type_v, .kv_rotated = rot != 0};
	int rc = fwd_init_device(&ev->fwd, &ev->model, ev->pool, o->n_ctx, FWD_BATCH_MAX, &d, ev->info.backend,
				 sizeof ev->info.backend, ev->info.notice, sizeof ev->info.notice);
	if (rc) {
		snprintf(err, errlen, "%s: %s", path,
			 rc == ENGINE_E_NOMEM ? "out of memory for the weights and scratch buffers" : engine_status_str(rc));
		return rc;
	}
	ev->have_fwd = true;
	if (kv_init_types(&ev->kv, &ev->model.hp, kv_type, kv_type_v, rot, o->n_ctx) != 0) {
		snprintf(err, errlen, "%s: out of memory for the KV cache", path);
		return ENGINE_E_NOMEM;
	}
	ev->have_kv = true;
	if ((rc = kv_reserve(&ev->kv, o->n_ctx)) != 0 || (rc = fwd_logits_reserve(&ev->fwd, FWD_BATCH_MAX)) != 0) {
		snprintf(err, errlen, "%s: out of memory for a KV cache of %u positions and %d rows of logits", path,
			 o->n_ctx, FWD_BATCH_MAX);
		return rc;
	}
	ev->fwd.stop = stop_polled;
	ev->fwd.stop_ctx = ev;
	return 0;
}

engine_evaluator *engine_evaluator_open(const char *path, const struct engine_load_opts *o, int n_threads,
					char *err, size_t errlen)
{
	if (!o || o->n_ctx < 2) {
		snprintf(err, errlen, "%s: an evaluator needs a context of at least 2 positions", path);
		return NULL;
	}
	if (strncmp(path, "remote:", 7) == 0) {
		snprintf(err, errlen, "a remote model cannot be evaluated here: it needs a local model file");
		return NULL;
	}
	engine_evaluator *ev = eng_calloc(1, sizeof *ev);
	if (!ev) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	atomic_init(&ev->cancel, 0);
	const volatile int abort_never = 0;
	if (model_load(&ev->model, path, &abort_never, err, errlen) != 0) {
		free(ev);
		return NULL;
	}
	ev->have_model = true;
	ev->info.n_ctx = o->n_ctx;
	if (open_vocab(ev, path, err, errlen) || open_forward(ev, path, o, n_threads, err, errlen)) {
		engine_evaluator_close(ev);
		return NULL;
	}
	gguf_prefetch(ev->model.gguf);
	return ev;
}

/* One pass over the sequence.  0 or a negative status. */
static int run_once(engine_evaluator *ev, const int32_t *ids, uint32_t n, uint32_t first, uint32_t batch,
		    float *out)
{
	const uint32_t nv = ev->info.n_vocab, stride = ev->model.hp.n_vocab;
	kv_truncate(&ev->kv, 0);
	for (uint32_t p = 0; p < n;) {
		if (atomic_load(&ev->cancel))
			return ENGINE_E_CANCELLED;
		const uint32_t nb = n - p < batch ? n - p : batch;
		int rc = fwd_eval(&ev->fwd, &ev->kv, ids + p, (int)nb, true);
		if (rc)
			return rc;
		/* rows p .. p+nb-1 of the sequence; keep those from FIRST on */
		for (uint32_t t = p < first ? first - p : 0; t < nb; t++)
			memcpy(out + (size_t)(p + t - first) * nv, ev->fwd.logits + (size_t)t * stride, nv * sizeof *out);
		p += nb;
	}
	return 0;
}

/* The GPU failed: the pass again, every layer on the CPU.  0 or the
 * status of preparing it. */
static int fall_back_to_cpu(engine_evaluator *ev)
{
	struct fwd cpu;
	int rc = fwd_init(&cpu, &ev->model, ev->pool, ev->info.n_ctx, FWD_BATCH_MAX);
	if (rc)
		return rc;
	if ((rc = fwd_logits_reserve(&cpu, FWD_BATCH_MAX)) != 0) {
		fwd_free(&cpu);
		return rc;
	}
	snprintf(ev->info.notice, sizeof ev->info.notice, "CUDA failed (%.200s); running on the CPU from here on",
		 fwd_cuda_error(&ev->fwd));
	fwd_free(&ev->fwd);
	ev->fwd = cpu;
	ev->fwd.stop = stop_polled;
	ev->fwd.stop_ctx = ev;
	snprintf(ev->info.backend, sizeof ev->info.backend, "cpu");
	return 0;
}

int engine_evaluator_run(engine_evaluator *ev, const int32_t *ids, uint32_t n, uint32_t first, uint32_t batch,
			 float *out, char *err, size_t errlen)
{
	if (batch == 0)
		batch = FWD_BATCH_MAX;
	if (n == 0 || n > ev->info.n_ctx || first >= n || batch > FWD_BATCH_MAX || !ids || !out) {
		snprintf(err, errlen, "bad evaluation: %u tokens from %u (context %u) in batches of %u", n, first,
			 ev->info.n_ctx, batch);
		return ENGINE_E_INVAL;
	}
	for (uint32_t i = 0; i < n; i++)
		if (ids[i] < 0 || (uint32_t)ids[i] >= ev->info.n_vocab) {
			snprintf(err, errlen, "token %u is %d, outside the vocabulary of %u", i, ids[i],
				 ev->info.n_vocab);
			return ENGINE_E_INVAL;
		}
	int rc = run_once(ev, ids, n, first, batch, out);
	if (rc && rc != ENGINE_E_CANCELLED && fwd_cuda_failed(&ev->fwd) && fall_back_to_cpu(ev) == 0)
		rc = run_once(ev, ids, n, first, batch, out);
	if (rc == ENGINE_E_CANCELLED)
		snprintf(err, errlen, "cancelled");
	else if (rc)
		snprintf(err, errlen, "forward pass failed: %s", engine_status_str(rc));
	return rc;
}
