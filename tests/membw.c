/*
 * membw.c - STREAM-like memory read bandwidth, for tests/bench-vs-llamacpp.
 *
 * Reads a buffer far larger than the last-level cache with T threads, each
 * streaming its own contiguous share with wide loads summed into vector
 * accumulators (so the reads cannot be optimised away and the loop is bound
 * by memory, not by the adds), and prints one line per thread count:
 *   threads=T median_gbps=X best_gbps=Y
 * Built by the script with `cc -O2 -march=native -pthread`; not part of
 * the ttychat build.
 *
 *   membw [-m MiB] [-p PASSES] T...      e.g. membw 1 2
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

typedef long long v4 __attribute__((vector_size(32)));

struct share {
	const v4 *p;
	size_t n;        /* vectors */
	long long sum;
	pthread_barrier_t *bar;
	int passes;
	double *t;       /* [passes] seconds, thread 0 only */
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long long read_share(const v4 *p, size_t n)
{
	v4 a = {0}, b = {0}, c = {0}, d = {0};
	for (size_t i = 0; i + 4 <= n; i += 4) {
		a += p[i];
		b += p[i + 1];
		c += p[i + 2];
		d += p[i + 3];
	}
	a += b + c + d;
	return a[0] + a[1] + a[2] + a[3];
}

static void *run(void *arg)
{
	struct share *s = arg;
	for (int k = 0; k < s->passes; k++) {
		pthread_barrier_wait(s->bar);
		double t0 = now();
		s->sum += read_share(s->p, s->n);
		pthread_barrier_wait(s->bar);
		if (s->t)
			s->t[k] = now() - t0;
	}
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	size_t mib = 1024;
	int passes = 10, i = 1;
	for (; i < argc && argv[i][0] == '-'; i += 2) {
		if (i + 1 >= argc)
			return 2;
		if (strcmp(argv[i], "-m") == 0)
			mib = (size_t)strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "-p") == 0)
			passes = (int)strtol(argv[i + 1], NULL, 10);
		else
			return 2;
	}
	if (mib < 64 || passes < 1 || passes > 1000 || i >= argc) {
		fprintf(stderr, "usage: membw [-m MiB >= 64] [-p PASSES] THREADS...\n");
		return 2;
	}
	size_t bytes = mib << 20;
	/* 2 MiB pages where the kernel gives them (THP in madvise mode), as a
	 * large array would get with THP always on: 4 KiB pages cost a TLB
	 * miss per page and stop the hardware prefetchers at every boundary */
	v4 *buf = aligned_alloc(2u << 20, bytes);
	if (!buf)
		return 1;
#ifdef MADV_HUGEPAGE
	madvise(buf, bytes, MADV_HUGEPAGE);
#endif
	memset(buf, 1, bytes);
	long long total = 0;
	for (; i < argc; i++) {
		int nt = (int)strtol(argv[i], NULL, 10);
		if (nt < 1 || nt > 256)
			return 2;
		pthread_t th[256];
		struct share sh[256];
		double *t = calloc((size_t)passes, sizeof *t);
		pthread_barrier_t bar;
		if (!t || pthread_barrier_init(&bar, NULL, (unsigned)nt))
			return 1;
		size_t nv = bytes / sizeof(v4), per = nv / (size_t)nt / 4 * 4;
		for (int k = 0; k < nt; k++) {
			sh[k] = (struct share){buf + (size_t)k * per, per, 0, &bar, passes, k == 0 ? t : NULL};
			if (k > 0 && pthread_create(&th[k], NULL, run, &sh[k]))
				return 1;
		}
		run(&sh[0]);
		for (int k = 1; k < nt; k++)
			pthread_join(th[k], NULL);
		for (int k = 0; k < nt; k++)
			total += sh[k].sum;
		qsort(t, (size_t)passes, sizeof *t, cmp);
		double moved = (double)(per * (size_t)nt * sizeof(v4));
		printf("threads=%d median_gbps=%.2f best_gbps=%.2f\n", nt, moved / t[passes / 2] * 1e-9,
		       moved / t[0] * 1e-9);
		pthread_barrier_destroy(&bar);
		free(t);
	}
	free(buf);
	return total == 42 ? 3 : 0; /* keeps the sums alive */
}
