/*
 * termsafe.c - the filtered stderr (see termsafe.h).
 *
 * A fopencookie() stream over a duplicate of the original stderr: each
 * write is passed through text_visible(), which may hold back up to three
 * bytes of a UTF-8 sequence cut between two writes (putc loops); those are
 * written, as U+FFFD if still incomplete, when the stream is flushed at
 * close.  Unbuffered, so that a prompt without a newline shows at once and
 * each fprintf() reaches the filter as one write.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "termsafe.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "text.h"

struct filter {
	int fd;
	char carry[4];
	size_t n_carry;
	int failed;
};

static FILE *raw_err;  /* the original stderr; set once in termsafe_install */
static struct filter the_filter;

static void emit_fd(void *ctx, const char *s, size_t n)
{
	struct filter *f = ctx;
	while (n && !f->failed) {
		ssize_t w = write(f->fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			f->failed = 1;
			return;
		}
		s += w;
		n -= (size_t)w;
	}
}

static ssize_t filter_write(void *cookie, const char *buf, size_t size)
{
	struct filter *f = cookie;
	f->failed = 0;
	size_t done = 0;
	if (f->n_carry) {
		/* complete the held sequence with the first few new bytes */
		char tmp[8];
		size_t take = size < 4 ? size : 4;
		memcpy(tmp, f->carry, f->n_carry);
		memcpy(tmp + f->n_carry, buf, take);
		size_t used = text_visible(tmp, f->n_carry + take, false, emit_fd, f);
		if (used < f->n_carry) { /* still incomplete: all of it held */
			memcpy(f->carry + f->n_carry, buf, take);
			f->n_carry += take;
			return f->failed ? -1 : (ssize_t)size;
		}
		done = used - f->n_carry;
		f->n_carry = 0;
	}
	done += text_visible(buf + done, size - done, false, emit_fd, f);
	f->n_carry = size - done; /* at most 3 bytes */
	memcpy(f->carry, buf + done, f->n_carry);
	return f->failed ? -1 : (ssize_t)size;
}

static int filter_close(void *cookie)
{
	struct filter *f = cookie;
	if (f->n_carry)
		text_visible(f->carry, f->n_carry, true, emit_fd, f);
	f->n_carry = 0;
	return 0; /* descriptor 2 stays open */
}

int termsafe_install(void)
{
	if (raw_err)
		return 0;
	int fd = dup(STDERR_FILENO);
	if (fd < 0)
		return -1;
	FILE *raw = fdopen(fd, "w");
	if (!raw) {
		close(fd);
		return -1;
	}
	setvbuf(raw, NULL, _IONBF, 0);
	the_filter.fd = STDERR_FILENO;
	cookie_io_functions_t io = {.write = filter_write, .close = filter_close};
	FILE *f = fopencookie(&the_filter, "w", io);
	if (!f) {
		fclose(raw);
		return -1;
	}
	setvbuf(f, NULL, _IONBF, 0);
	raw_err = raw;
	stderr = f;
	return 0;
}

FILE *termsafe_raw_stderr(void)
{
	return raw_err ? raw_err : stderr;
}
