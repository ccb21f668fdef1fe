/*
 * test_pool.c - tests of engine/pool: every task index runs exactly once
 * per job and its writes are visible when pool_run*() returns, over many
 * back-to-back jobs (the decode pattern), task counts below, at and far
 * above the thread count, pools of 1..4 threads, jobs after the workers
 * went to sleep, and a job whose tasks take very different times.
 * Exit 0 when all pass; prints "N passed, M failed".
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"

static int n_pass, n_fail;

#define CHECK(cond, ...)                                                    \
	do {                                                                \
		if (cond) {                                                 \
			n_pass++;                                           \
		} else {                                                    \
			n_fail++;                                           \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                       \
			fputc('\n', stderr);                                \
		}                                                           \
	} while (0)

struct job {
	int *hits;          /* [n] times index i ran */
	int *value;         /* [n] written by task i */
	int n_seen_bad;     /* n argument not what was asked (only task 0 writes) */
	int expect_n;
	int round;
	atomic_int calls;
	int slow;           /* task 0 sleeps this many microseconds */
};

static void task(void *ctx, int i, int n)
{
	struct job *j = ctx;
	if (n != j->expect_n && i == 0)
		j->n_seen_bad++;
	if (i == 0 && j->slow) {
		struct timespec ts = {0, j->slow * 1000L};
		nanosleep(&ts, NULL);
	}
	j->hits[i]++;
	j->value[i] = j->round * 1000 + i;
	atomic_fetch_add(&j->calls, 1);
}

static void run_jobs(int threads, int n_tasks, int rounds, int slow)
{
	pool *p = pool_create(threads);
	CHECK(p != NULL && pool_size(p) == threads, "pool_create(%d)", threads);
	if (!p)
		return;
	struct job j;
	memset(&j, 0, sizeof j);
	j.hits = calloc((size_t)n_tasks, sizeof *j.hits);
	j.value = calloc((size_t)n_tasks, sizeof *j.value);
	if (!j.hits || !j.value)
		abort();
	j.slow = slow;
	int bad_hits = 0, bad_vals = 0;
	for (int r = 1; r <= rounds; r++) {
		j.round = r;
		j.expect_n = n_tasks;
		if (n_tasks == threads && r % 2)
			pool_run(p, task, &j);
		else
			pool_run_tasks(p, task, &j, n_tasks);
		for (int i = 0; i < n_tasks; i++) {
			bad_hits += j.hits[i] != r;
			bad_vals += j.value[i] != r * 1000 + i;
		}
	}
	CHECK(bad_hits == 0 && bad_vals == 0 && j.n_seen_bad == 0 &&
	      atomic_load(&j.calls) == rounds * n_tasks,
	      "%d threads, %d tasks, %d rounds: %d wrong counts, %d wrong values, %d calls", threads,
	      n_tasks, rounds, bad_hits, bad_vals, atomic_load(&j.calls));
	free(j.hits);
	free(j.value);
	pool_free(p);
}

/* Jobs separated by pauses long enough for the workers to fall asleep. */
static void test_sleepers(void)
{
	pool *p = pool_create(3);
	struct job j;
	memset(&j, 0, sizeof j);
	int hits[7] = {0}, value[7] = {0};
	j.hits = hits;
	j.value = value;
	j.expect_n = 7;
	int bad = 0;
	for (int r = 1; r <= 5; r++) {
		struct timespec ts = {0, 30 * 1000 * 1000};
		nanosleep(&ts, NULL);
		j.round = r;
		pool_run_tasks(p, task, &j, 7);
		for (int i = 0; i < 7; i++)
			bad += hits[i] != r || value[i] != r * 1000 + i;
	}
	CHECK(bad == 0, "jobs after the workers slept: %d wrong", bad);
	pool_free(p);
}

static pthread_t task_thread[64];

static void where_task(void *ctx, int i, int n)
{
	(void)ctx;
	(void)n;
	task_thread[i] = pthread_self();
}

/* pool_set_active(1): every task on the caller; back to all threads */
static void test_active(void)
{
	pool *p = pool_create(3);
	CHECK(pool_active(p) == 3, "active starts at the pool size");
	pool_set_active(p, 1);
	CHECK(pool_active(p) == 1, "set_active(1)");
	int off = 0;
	for (int r = 0; r < 50; r++) {
		pool_run_tasks(p, where_task, NULL, 64);
		for (int i = 0; i < 64; i++)
			off += !pthread_equal(task_thread[i], pthread_self());
	}
	CHECK(off == 0, "solo jobs ran %d tasks off the caller", off);
	pool_set_active(p, 99);
	CHECK(pool_active(p) == 3, "set_active clamps to the size");
	run_jobs(3, 9, 1, 0);
	struct job j;
	memset(&j, 0, sizeof j);
	int hits[9] = {0}, value[9] = {0};
	j.hits = hits;
	j.value = value;
	j.expect_n = 9;
	j.round = 1;
	pool_run_tasks(p, task, &j, 9);
	int bad = 0;
	for (int i = 0; i < 9; i++)
		bad += hits[i] != 1;
	CHECK(bad == 0, "all threads again after solo");
	pool_set_active(p, 0);
	CHECK(pool_active(p) == 1, "set_active(0) means 1");
	pool_free(p);
}

static void test_edges(void)
{
	pool *p = pool_create(0);
	CHECK(p && pool_size(p) == 1, "pool_create(0) gives one thread");
	struct job j;
	memset(&j, 0, sizeof j);
	int hits[2] = {0}, value[2] = {0};
	j.hits = hits;
	j.value = value;
	j.round = 1;
	pool_run_tasks(p, task, &j, 0);
	pool_run_tasks(p, task, &j, -3);
	pool_run_tasks(p, task, &j, 70000);
	CHECK(atomic_load(&j.calls) == 0, "0, negative and too many tasks run nothing");
	pool_free(p);
	pool_free(NULL);
}

int main(void)
{
	for (int t = 1; t <= 4; t++) {
		run_jobs(t, t, 2000, 0);
		run_jobs(t, 1, 200, 0);
		run_jobs(t, 3, 500, 0);
		run_jobs(t, 257, 100, 0);
	}
	run_jobs(2, 2, 20, 2000);   /* one slow task: the other threads wait, no task is lost */
	run_jobs(4, 9, 20, 1000);
	test_sleepers();
	test_active();
	test_edges();
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
