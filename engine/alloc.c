/*
 * alloc.c - the allocation hook of alloc.h, built only with
 * -DTTYCHAT_ALLOC_HOOK (tests/test_engine_oom).
 *
 * One countdown, armed by eng_alloc_fail_at(): every allocation call takes
 * one from it, and the call that takes the last one fails (and, persistent,
 * every call after it).  A failed call allocates nothing and sets errno to
 * ENOMEM, as the C library does when memory runs out.
 */
#include "alloc.h"

#ifdef TTYCHAT_ALLOC_HOOK

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long left;      /* calls until the failing one; 0: disarmed */
static atomic_int persist_mode;
static atomic_long failed;
static atomic_long calls;

void eng_alloc_fail_at(long n, int persist)
{
	atomic_store(&persist_mode, persist);
	atomic_store(&failed, 0);
	atomic_store(&left, n > 0 ? n : 0);
}

long eng_alloc_failed(void)
{
	return atomic_load(&failed);
}

long eng_alloc_calls(void)
{
	return atomic_load(&calls);
}

/* True when this call is to fail. */
static int fail_now(void)
{
	atomic_fetch_add(&calls, 1);
	long l = atomic_load(&left);
	while (l > 0) {
		long next = l == 1 && atomic_load(&persist_mode) ? 1 : l - 1;
		if (atomic_compare_exchange_weak(&left, &l, next)) {
			if (l != 1)
				return 0;
			atomic_fetch_add(&failed, 1);
			errno = ENOMEM;
			return 1;
		}
	}
	return 0;
}

void *eng_malloc(size_t n)
{
	return fail_now() ? NULL : malloc(n);
}

void *eng_calloc(size_t n, size_t size)
{
	return fail_now() ? NULL : calloc(n, size);
}

void *eng_realloc(void *p, size_t n)
{
	return fail_now() ? NULL : realloc(p, n);
}

char *eng_strdup(const char *s)
{
	return fail_now() ? NULL : strdup(s);
}

int eng_posix_memalign(void **p, size_t align, size_t n)
{
	return fail_now() ? ENOMEM : posix_memalign(p, align, n);
}

#else

/* ISO C wants something in a translation unit */
typedef int eng_alloc_unused;

#endif
