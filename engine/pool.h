/*
 * pool.h - a persistent pool of compute threads for the forward pass
 * (engine-internal).
 *
 * pool_run(p, fn, ctx) calls fn(ctx, i, n) once for every task index
 * i < n = pool_size(p) and returns when all calls have returned;
 * pool_run_tasks() does the same for any number of tasks.  The calling
 * thread takes part.  Tasks are claimed dynamically: whichever thread is
 * free takes the next index, so a worker that the OS has not scheduled
 * yet (an oversubscribed machine) delays nothing, the caller runs its
 * share; and the calls for different indices may run on any thread, one
 * at a time per index.  Per-task scratch must therefore be indexed by the
 * task index, never by the identity of the thread.
 *
 * Between jobs workers spin briefly on a generation counter, then sleep on
 * a condition variable, so back-to-back jobs of a decode step cost a cache
 * line transfer rather than a futex round trip, and an idle engine costs no
 * CPU.  Only the thread that created the pool may call pool_run*().
 */
#ifndef TTYCHAT_POOL_H
#define TTYCHAT_POOL_H

typedef struct pool pool;
typedef void (*pool_fn)(void *ctx, int i, int n);

/* n_threads >= 1 (1: no extra threads).  NULL on failure. */
pool *pool_create(int n_threads);
void pool_free(pool *p);
int pool_size(const pool *p);
/* Jobs run on n threads from now on (1..pool_size; 1: the caller alone,
 * the workers sleep); pool_size() is unchanged.  Only 1 or all threads are
 * implemented: any n > 1 means all. */
void pool_set_active(pool *p, int n);
int pool_active(const pool *p);
/* pool_run_tasks(p, fn, ctx, pool_size(p)). */
void pool_run(pool *p, pool_fn fn, void *ctx);
/* fn(ctx, i, n_tasks) for 0 <= i < n_tasks (1 <= n_tasks <= 65535; other
 * values run nothing). */
void pool_run_tasks(pool *p, pool_fn fn, void *ctx, int n_tasks);

#endif
