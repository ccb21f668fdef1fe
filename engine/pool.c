/*
 * pool.c - see pool.h.
 *
 * A job is one 64-bit word, `claim` = generation (32 bits) | task count
 * (16) | next unclaimed index (16), plus fn/ctx written before it.  A
 * thread claims index i with a compare-and-swap that also checks the
 * generation, so a late worker can never take a task of a newer job, and
 * once it holds a claimed index of the current job that job cannot end
 * (the caller waits until `done` counts every index), so fn/ctx stay valid
 * while it runs.  Waking is separate: workers watch `wake_gen`, spin for a
 * while when nothing new is there, then sleep on `wake`.
 *
 * The caller claims tasks like any worker and, when none are left, waits
 * for `done`: spinning first (jobs are short), then yielding the CPU, which
 * on an oversubscribed machine is what lets the worker it waits for run.
 * Counters live on separate cache lines.
 *
 * pool_set_active() lets the owner run jobs on fewer threads than the pool
 * has (the forward pass does so when it measures that the machine is
 * oversubscribed: a worker preempted while it holds a task stalls the
 * caller for a scheduler time slice); idle workers then fall asleep.
 */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_WORKER 20000   /* pause rounds before a worker sleeps (~0.1-0.5 ms) */
#define SPIN_CALLER 4096    /* pause rounds before the caller starts yielding */
#define MAX_TASKS 65535

struct pool {
	int n;
	pthread_t *threads;
	pool_fn fn;
	void *ctx;
	uint32_t gen;                   /* caller's copy of the last generation */
	int active;                     /* threads taking part in jobs */
	_Alignas(64) _Atomic uint64_t claim;
	_Alignas(64) atomic_int done;
	_Alignas(64) atomic_uint wake_gen;
	_Alignas(64) atomic_int sleepers;
	pthread_mutex_t mu;
	pthread_cond_t wake;
	atomic_bool quit;
};

struct worker_arg {
	pool *p;
};

/* Runs tasks of generation GEN until none is left to claim; returns how
 * many this thread ran. */
static int claim_and_run(pool *p, uint32_t gen)
{
	int ran = 0;
	uint64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
	for (;;) {
		uint32_t n = (uint32_t)(c >> 16) & 0xffff, i = (uint32_t)c & 0xffff;
		if ((uint32_t)(c >> 32) != gen || i >= n)
			return ran;
		if (!atomic_compare_exchange_weak_explicit(&p->claim, &c, c + 1, memory_order_acq_rel,
							   memory_order_acquire))
			continue;
		p->fn(p->ctx, (int)i, (int)n);
		ran++;
		atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
		c = atomic_load_explicit(&p->claim, memory_order_acquire);
	}
}

static void *worker(void *arg)
{
	struct worker_arg *wa = arg;
	pool *p = wa->p;
	free(wa);
	/* wake_gen is 0 when the pool is created; reading it here instead
	 * would miss a job published before this thread got to run */
	unsigned seen = 0;
	for (;;) {
		unsigned g;
		int spins = 0;
		while ((g = atomic_load_explicit(&p->wake_gen, memory_order_acquire)) == seen) {
			if (++spins < SPIN_WORKER) {
				cpu_relax();
				continue;
			}
			pthread_mutex_lock(&p->mu);
			atomic_fetch_add(&p->sleepers, 1);
			while (atomic_load(&p->wake_gen) == seen && !atomic_load(&p->quit))
				pthread_cond_wait(&p->wake, &p->mu);
			atomic_fetch_sub(&p->sleepers, 1);
			pthread_mutex_unlock(&p->mu);
			spins = 0;
		}
		seen = g;
		if (atomic_load(&p->quit))
			return NULL;
		(void)claim_and_run(p, g);
	}
}

pool *pool_create(int n_threads)
{
	if (n_threads < 1)
		n_threads = 1;
	if (n_threads > MAX_TASKS)
		n_threads = MAX_TASKS;
	pool *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->n = n_threads;
	p->active = n_threads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->wake, NULL);
	if (n_threads > 1) {
		p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
		if (!p->threads) {
			pthread_mutex_destroy(&p->mu);
			pthread_cond_destroy(&p->wake);
			free(p);
			return NULL;
		}
	}
	/* compute threads never take signals: the UI thread handles them */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 1; i < n_threads; i++) {
		struct worker_arg *wa = malloc(sizeof *wa);
		if (wa)
			wa->p = p;
		if (!wa || pthread_create(&p->threads[i - 1], NULL, worker, wa) != 0) {
			free(wa);
			p->n = i;
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			pool_free(p);
			return NULL;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return p;
}

void pool_free(pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	atomic_store(&p->quit, true);
	atomic_fetch_add(&p->wake_gen, 1);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->threads[i - 1], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->wake);
	free(p->threads);
	free(p);
}

int pool_size(const pool *p)
{
	return p->n;
}

void pool_set_active(pool *p, int n)
{
	p->active = n < 1 ? 1 : n > p->n ? p->n : n;
}

int pool_active(const pool *p)
{
	return p->active;
}

void pool_run_tasks(pool *p, pool_fn fn, void *ctx, int n_tasks)
{
	if (n_tasks < 1 || n_tasks > MAX_TASKS)
		return;
	if (p->active == 1 || n_tasks == 1) {
		for (int i = 0; i < n_tasks; i++)
			fn(ctx, i, n_tasks);
		return;
	}
	p->fn = fn;
	p->ctx = ctx;
	p->gen++;
	atomic_store_explicit(&p->done, 0, memory_order_relaxed);
	atomic_store_explicit(&p->claim, (uint64_t)p->gen << 32 | (uint64_t)n_tasks << 16,
			      memory_order_release);
	atomic_store(&p->wake_gen, p->gen); /* seq_cst: pairs with the sleepers check */
	if (atomic_load(&p->sleepers) > 0) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->wake);
		pthread_mutex_unlock(&p->mu);
	}
	(void)claim_and_run(p, p->gen);
	/* spin, then yield: on an oversubscribed machine the worker we wait
	 * for may need our core */
	for (unsigned spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks; spins++) {
		if (spins < SPIN_CALLER)
			cpu_relax();
		else
			sched_yield();
	}
}

void pool_run(pool *p, pool_fn fn, void *ctx)
{
	pool_run_tasks(p, fn, ctx, p->n);
}
