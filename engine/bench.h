/*
 * bench.h - the body of an engine_bench() request (engine-internal; runs
 * on the engine thread).
 *
 * engine.c owns the request and the model; it hands bench_run() the
 * loaded model's forward pass and batcher and two hooks into its own
 * worker: the evaluation step a reply uses (cancel polled per layer, the
 * CPU fallback when the GPU fails) and the cancel check.
 */
#ifndef TTYCHAT_BENCH_H
#define TTYCHAT_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "forward.h"

struct bench_env {
	const struct model *m;
	struct fwd *fwd;              /* the loaded model's pass (may be replaced by eval's fallback) */
	struct fwd_batcher *batcher;  /* the prefill batch sizing replies use */
	uint32_t kv_type, n_ctx;      /* the loaded model's cache type (K) and context */
	uint32_t kv_type_v, kv_rot;   /* V's cache type; the rotation seed (0: none) */
	double load_ms, prepare_ms;   /* what engine_load() took for each part */
	/* runs N tokens into KV as a reply's prefill or decode step does: 0 or
	 * a negative engine_status (ENGINE_E_CANCELLED: stopped, nothing
	 * appended) */
	int (*eval)(void *ctx, struct kv_cache *kv, const int32_t *ids, int n);
	bool (*cancelled)(void *ctx);
	void *ctx;
};

/* Runs the tests of O (engine_bench() in engine.h).  The timed runs go to
 * *runs (malloc'd, the caller's to free, also on failure; *n_runs of
 * them).  0, ENGINE_E_CANCELLED, or a negative engine_status with a
 * message in err. */
int bench_run(const struct bench_env *b, const struct engine_bench_opts *o, struct engine_bench_run **runs,
	      size_t *n_runs, char *err, size_t errlen);

#endif
