/*
 * pool.h - a persistent pool of compute threads for the forward pass
 * (engine-internal).
 *
 * pool_run(p, fn, ctx) calls fn(ctx, ith, nth) once on each of the nth
 * threads (the caller is thread 0) and returns when all have finished.
 * Workers spin briefly on a generation counter between jobs, then sleep on
 * a condition variable, so back-to-back jobs of a decode step cost a cache
 * line transfer rather than a futex round trip, and an idle engine costs no
 * CPU.  Only the thread that created the pool may call pool_run().
 */
#ifndef TTYCHAT_POOL_H
#define TTYCHAT_POOL_H

typedef struct pool pool;
typedef void (*pool_fn)(void *ctx, int ith, int nth);

/* n_threads >= 1 (1: no extra threads).  NULL on failure. */
pool *pool_create(int n_threads);
void pool_free(pool *p);
int pool_size(const pool *p);
void pool_run(pool *p, pool_fn fn, void *ctx);

#endif
