/*
 * alloc.h - the engine's allocation calls, and a fault-injection hook for
 * tests (engine-internal).
 *
 * The code on the paths of a load, a submit, generation and KV snapshots
 * allocates through eng_malloc() and its friends.  In a normal build they
 * are the C library's functions, inlined: nothing is counted and nothing
 * costs.  Built with -DTTYCHAT_ALLOC_HOOK (tests/test_engine_oom compiles
 * its own copies of the engine's objects that way; mk/engine.am) every call
 * counts, and eng_alloc_fail_at(N) makes the Nth call from then on fail as
 * a real out-of-memory does (NULL, errno ENOMEM), the way SQLite's and
 * curl's torture tests fail the Nth allocation, so a test can walk every
 * allocation of a request and check that each failure ends in a clean error.
 *
 * Threads: the hook's counters are atomic; any thread may allocate.  The
 * hook is process-wide test state (the only such state in the engine) and
 * exists only in hook builds.
 */
#ifndef TTYCHAT_ALLOC_H
#define TTYCHAT_ALLOC_H

#include <stddef.h>

#ifdef TTYCHAT_ALLOC_HOOK

void *eng_malloc(size_t n);
void *eng_calloc(size_t n, size_t size);
void *eng_realloc(void *p, size_t n);
char *eng_strdup(const char *s);
int eng_posix_memalign(void **p, size_t align, size_t n);

/* Arms the hook: the Nth allocation from now fails (N = 1: the next one),
 * once; with PERSIST every allocation from the Nth on fails.  N = 0
 * disarms it. */
void eng_alloc_fail_at(long n, int persist);
/* Allocations failed by the hook since it was last armed. */
long eng_alloc_failed(void);
/* Allocation calls counted since the process started. */
long eng_alloc_calls(void);

#else

#include <stdlib.h>
#include <string.h>

static inline void *eng_malloc(size_t n) { return malloc(n); }
static inline void *eng_calloc(size_t n, size_t size) { return calloc(n, size); }
static inline void *eng_realloc(void *p, size_t n) { return realloc(p, n); }
static inline char *eng_strdup(const char *s) { return strdup(s); }
static inline int eng_posix_memalign(void **p, size_t align, size_t n) { return posix_memalign(p, align, n); }

#endif

#endif
