/*
 * pool.c - see pool.h.  A job is published by bumping `gen`; each worker
 * remembers the last generation it ran, spins for a while when it sees no
 * new one, then waits on `wake`.  Completion is a countdown of `pending`
 * that the caller spins on (jobs are short and the caller has its own share
 * of the work to do first).  Counters live on separate cache lines.
 */
#include "pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_ROUNDS 20000

struct pool {
	int n;
	pthread_t *threads;
	_Alignas(64) atomic_uint gen;
	_Alignas(64) atomic_int pending;
	_Alignas(64) atomic_int sleepers;
	pthread_mutex_t mu;
	pthread_cond_t wake;
	pool_fn fn;
	void *ctx;
	bool quit;
};

struct worker_arg {
	pool *p;
	int ith;
};

static void *worker(void *arg)
{
	struct worker_arg *wa = arg;
	pool *p = wa->p;
	int ith = wa->ith;
	free(wa);
	unsigned seen = atomic_load(&p->gen);
	for (;;) {
		unsigned g;
		int spins = 0;
		while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
			if (++spins < SPIN_ROUNDS) {
				cpu_relax();
				continue;
			}
			pthread_mutex_lock(&p->mu);
			atomic_fetch_add(&p->sleepers, 1);
			while (atomic_load(&p->gen) == seen && !p->quit)
				pthread_cond_wait(&p->wake, &p->mu);
			atomic_fetch_sub(&p->sleepers, 1);
			pthread_mutex_unlock(&p->mu);
			spins = 0;
		}
		seen = g;
		if (p->quit)
			return NULL;
		p->fn(p->ctx, ith, p->n);
		atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
	}
}

pool *pool_create(int n_threads)
{
	if (n_threads < 1)
		n_threads = 1;
	pool *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->n = n_threads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->wake, NULL);
	if (n_threads > 1) {
		p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
		if (!p->threads)
			goto fail;
	}
	/* compute threads never take signals: the UI thread handles them */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 1; i < n_threads; i++) {
		struct worker_arg *wa = malloc(sizeof *wa);
		if (wa) {
			wa->p = p;
			wa->ith = i;
		}
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
fail:
	free(p);
	return NULL;
}

void pool_free(pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->quit = true;
	atomic_fetch_add(&p->gen, 1);
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

void pool_run(pool *p, pool_fn fn, void *ctx)
{
	if (p->n == 1) {
		fn(ctx, 0, 1);
		return;
	}
	p->fn = fn;
	p->ctx = ctx;
	atomic_store(&p->pending, p->n - 1);
	atomic_fetch_add(&p->gen, 1); /* seq_cst: pairs with the sleepers check */
	if (atomic_load(&p->sleepers) > 0) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->wake);
		pthread_mutex_unlock(&p->mu);
	}
	fn(ctx, 0, p->n);
	while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0)
		cpu_relax();
}
