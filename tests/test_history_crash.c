/*
 * test_history_crash.c - every message acknowledged as saved survives a
 * SIGKILL at any point.
 *
 * Each iteration forks a child that opens the store, loads the current
 * conversation for writing (recovering whatever the previous child left)
 * and appends messages, writing the index of each one that history_append
 * reported saved to a pipe.  The child dies by SIGKILL: either from its own
 * I/O layer at a chosen operation (in the middle of a write, after a
 * partial write, just before or after an fsync or a rename) or from the
 * parent after a random delay.  The parent then loads the conversation and
 * checks that every acknowledged message is there, intact and in order,
 * that at most the one message in flight was added beyond them, and that
 * nothing else appeared.  A new conversation is started every 50
 * iterations to keep the files small.
 *
 * TEST_HISTORY_CRASH_ITERATIONS (default 200; `make check-crash-long`:
 * 1000) and TEST_HISTORY_CRASH_SEED (default: from the clock, printed)
 * control the run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "history.h"
#include "testutil.h"

#define MSGS_PER_CHILD 6
#define MAX_ITER 100000

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* The text of message K of iteration IT: a header and deterministic
 * filler; one in eight is large enough that writing it takes a while. */
static char *make_text(int it, int k, size_t *len)
{
	uint64_t s = (uint64_t)it * 1000003u + (uint64_t)k;
	uint64_t r = rng_next(&s);
	size_t n = r % 8 == 0 ? 65536 + r % 200000 : 16 + r % 400;
	char *t = malloc(n + 1);
	int h = snprintf(t, n + 1, "c%d-%d:", it, k);
	for (size_t i = (size_t)h; i < n; i++)
		t[i] = (char)('a' + rng_next(&s) % 26);
	t[n] = '\0';
	*len = n;
	return t;
}

static int pass_cb(void *ctx, enum history_pass_purpose why, char *buf, size_t cap)
{
	(void)ctx;
	(void)why;
	snprintf(buf, cap, "crash");
	return 0;
}

static int open_store(const char *dir, const struct history_io *io, unsigned flags, struct history **h)
{
	char err[256];
	struct history_opts o = {.dir = dir,
				 .flags = flags,
				 .passphrase = pass_cb,
				 .io = io,
				 .test_kdf_opslimit = crypto_pwhash_argon2id_OPSLIMIT_MIN,
				 .test_kdf_memlimit = crypto_pwhash_argon2id_MEMLIMIT_MIN};
	int rc = history_open(&o, h, err, sizeof err);
	if (rc != HISTORY_OK)
		fprintf(stderr, "open: %s\n", err);
	return rc;
}

/* ---- the child: an I/O layer that kills itself at operation CRASH_AT ---- */

struct crasher {
	int ops, crash_at;
	uint64_t rng;
};

static void die(void)
{
	raise(SIGKILL);
	_exit(99); /* not reached */
}

static bool crash_now(struct crasher *c)
{
	return c->ops++ == c->crash_at;
}

static ssize_t c_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
	struct crasher *c = ctx;
	if (crash_now(c)) {
		size_t part = n ? (size_t)(rng_next(&c->rng) % n) : 0; /* a torn write */
		if (part && pwrite(fd, buf, part, off) < 0)
			die();
		die();
	}
	return pwrite(fd, buf, n, off);
}

static int c_fsync(void *ctx, int fd)
{
	struct crasher *c = ctx;
	if (crash_now(c)) {
		if (rng_next(&c->rng) & 1)
			fsync(fd);
		die();
	}
	return fsync(fd);
}

static int c_rename(void *ctx, const char *a, const char *b)
{
	struct crasher *c = ctx;
	if (crash_now(c)) {
		if (rng_next(&c->rng) & 1)
			rename(a, b);
		die();
	}
	return rename(a, b);
}

static void run_child(const char *dir, const char *id, int it, uint64_t seed, int ackfd)
{
	struct crasher cr = {.crash_at = -1, .rng = seed};
	uint64_t r = rng_next(&cr.rng);
	if (r % 4 != 0) /* three in four: die at a chosen operation */
		cr.crash_at = (int)(rng_next(&cr.rng) % (MSGS_PER_CHILD * 4 + 8));
	struct history_io io = {.ctx = &cr, .pwrite = c_pwrite, .fsync = c_fsync, .rename = c_rename};
	struct history *h;
	if (open_store(dir, &io, 0, &h) != HISTORY_OK)
		_exit(3);
	struct history_conv *c;
	int rc = history_conv_load(h, id, HISTORY_LOAD_WRITE, &c);
	if (rc < 0) {
		fprintf(stderr, "child %d: load: %s\n", it, history_errmsg(h));
		_exit(3);
	}
	for (int k = 0; k < MSGS_PER_CHILD; k++) {
		size_t n;
		char *t = make_text(it, k, &n);
		rc = history_append(c, k % 2 ? HISTORY_ROLE_ASSISTANT : HISTORY_ROLE_USER, t, n, 0);
		free(t);
		if (rc != HISTORY_OK) {
			fprintf(stderr, "child %d: append: %s\n", it, history_errmsg(h));
			_exit(4);
		}
		if (write(ackfd, &k, sizeof k) != sizeof k)
			_exit(5);
	}
	history_conv_close(c);
	history_close(h);
	_exit(0);
}

/* ---- the parent ---------------------------------------------------------- */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* Checks the conversation against the acks: ACKS[j] for iterations FIRST..IT. */
static bool verify(struct history *h, const char *id, int first, int it, const int *acks, int *recovered)
{
	struct history_conv *c;
	int rc = history_conv_load(h, id, 0, &c);
	CHECK(rc >= 0, "iteration %d: load failed: %s", it, history_errmsg(h));
	if (rc < 0)
		return false;
	if (rc == HISTORY_RECOVERED)
		++*recovered;
	size_t n = history_conv_count(c), i = 0;
	bool ok = true;
	for (int j = first; j <= it && ok; j++) {
		int k = 0;
		while (i < n) {
			const struct history_msg *m = history_conv_msg(c, i);
			char head[32];
			int hl = snprintf(head, sizeof head, "c%d-%d:", j, k);
			if (m->len < (size_t)hl || memcmp(m->text, head, (size_t)hl) != 0)
				break;
			size_t len;
			char *want = make_text(j, k, &len);
			bool same = len == m->len && memcmp(want, m->text, len) == 0 &&
				    m->role == (k % 2 ? HISTORY_ROLE_ASSISTANT : HISTORY_ROLE_USER);
			free(want);
			CHECK(same, "iteration %d: message c%d-%d altered", it, j, k);
			ok = ok && same;
			i++;
			k++;
		}
		CHECK(k >= acks[j - first], "iteration %d: %d acknowledged messages of child %d, only %d present", it,
		      acks[j - first], j, k);
		CHECK(k <= acks[j - first] + 1, "iteration %d: child %d has %d messages for %d acks", it, j, k,
		      acks[j - first]);
		ok = ok && k >= acks[j - first] && k <= acks[j - first] + 1;
	}
	CHECK(i == n, "iteration %d: %zu unexpected messages", it, n - i);
	ok = ok && i == n;
	history_conv_close(c);
	return ok;
}

int main(void)
{
	if (sodium_init() < 0)
		return 99;
	const char *e = getenv("TEST_HISTORY_CRASH_ITERATIONS");
	int iters = e && atoi(e) > 0 ? atoi(e) : 200;
	if (iters > MAX_ITER)
		iters = MAX_ITER;
	e = getenv("TEST_HISTORY_CRASH_SEED");
	uint64_t seed = e && e[0] ? strtoull(e, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20;
	printf("crash test: %d iterations, seed %llu (TEST_HISTORY_CRASH_SEED to repeat)\n", iters,
	       (unsigned long long)seed);
	fflush(stdout);
	char root[] = "test_history_crash.XXXXXX";
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 99;
	}
	struct history *h;
	if (open_store(root, NULL, HISTORY_OPEN_CREATE, &h) != HISTORY_OK)
		return 99;
	uint64_t rng = seed;
	int *acks = calloc(50, sizeof *acks);
	char id[HISTORY_ID_LEN + 1] = "";
	int first = 0, total_acks = 0, killed_inside = 0, killed_outside = 0, finished = 0, recovered = 0;
	bool ok = true;
	for (int it = 0; it < iters && ok; it++) {
		if (it % 50 == 0) {
			struct history_conv *c;
			if (history_conv_create(h, NULL, &c) != HISTORY_OK) {
				CHECK(0, "create: %s", history_errmsg(h));
				break;
			}
			memcpy(id, history_conv_id(c), sizeof id);
			history_conv_close(c);
			first = it;
			memset(acks, 0, 50 * sizeof *acks);
		}
		int p[2];
		if (pipe(p) != 0)
			return 99;
		uint64_t child_seed = rng_next(&rng);
		uint64_t r = rng_next(&rng);
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0)
			return 99;
		if (pid == 0) {
			close(p[0]);
			run_child(root, id, it, child_seed, p[1]);
		}
		close(p[1]);
		bool outside = r % 2 == 0;
		if (outside) { /* also kill from outside, at a random moment */
			struct timespec ts = {0, (long)(rng_next(&rng) % 40000000)};
			nanosleep(&ts, NULL);
			kill(pid, SIGKILL);
		}
		int k, n = 0;
		ssize_t got;
		while ((got = read(p[0], &k, sizeof k)) == sizeof k) {
			CHECK(k == n, "acks in order");
			n++;
		}
		close(p[0]);
		int st;
		waitpid(pid, &st, 0);
		if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
			outside ? killed_outside++ : killed_inside++;
		else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			finished++;
		else
			CHECK(0, "iteration %d: child failed (status %d)", it, st);
		acks[it - first] = n;
		total_acks += n;
		ok = verify(h, id, first, it, acks, &recovered) && !tu_fail;
	}
	history_close(h);
	printf("crash test: %d children killed by their I/O layer, %d killed from outside, %d finished; "
	       "%d messages acknowledged, all present; %d loads recovered a torn tail\n",
	       killed_inside, killed_outside, finished, total_acks, recovered);
	free(acks);
	if (!tu_fail)
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	else
		printf("files kept in %s\n", root);
	return tu_finish();
}
