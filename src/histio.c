/*
 * histio.c - file helpers for the history store (see histio.h).
 *
 * Durable writes follow one pattern: write everything (a short write is
 * continued, an error is reported with its errno), fsync the file, and
 * after creating or renaming a file fsync its directory.  An fsync failure
 * is never retried on the same file descriptor and treated as success: the
 * callers recover by writing a fresh file.  Writes, fsyncs and renames go
 * through struct history_io so that tests can fail them.
 */
/* src/config.h shadows the autoconf config.h here; we need the GNU
 * extensions (OFD locks) whatever the build defines. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "histio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

static ssize_t real_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
	(void)ctx;
	return pwrite(fd, buf, n, off);
}

static int real_fsync(void *ctx, int fd)
{
	(void)ctx;
	return fsync(fd);
}

static int real_rename(void *ctx, const char *from, const char *to)
{
	(void)ctx;
	return rename(from, to);
}

void histio_init(struct history_io *io, const struct history_io *src)
{
	memset(io, 0, sizeof *io);
	if (src)
		*io = *src;
	if (!io->pwrite)
		io->pwrite = real_pwrite;
	if (!io->fsync)
		io->fsync = real_fsync;
	if (!io->rename)
		io->rename = real_rename;
}

int histio_errno_status(int e)
{
	return e == ENOSPC || e == EDQUOT ? HISTORY_E_NOSPACE : HISTORY_E_IO;
}

int histio_join(char *buf, size_t n, const char *a, const char *b)
{
	int w = snprintf(buf, n, "%s/%s", a, b);
	return w < 0 || (size_t)w >= n ? -1 : 0;
}

int histio_pwrite_all(const struct history_io *io, int fd, const void *buf, size_t n, off_t off,
		      const char *what, char *err, size_t errlen)
{
	const unsigned char *p = buf;
	while (n > 0) {
		ssize_t w = io->pwrite(io->ctx, fd, p, n, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : ENOSPC; /* 0 bytes written: no room */
			snprintf(err, errlen, "writing %s: %s", what, strerror(e));
			return histio_errno_status(e);
		}
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return HISTORY_OK;
}

int histio_fsync(const struct history_io *io, int fd, const char *what, char *err, size_t errlen)
{
	if (io->fsync(io->ctx, fd) != 0) {
		int e = errno;
		snprintf(err, errlen, "syncing %s to disk: %s", what, strerror(e));
		return histio_errno_status(e);
	}
	return HISTORY_OK;
}

int histio_fsync_dir(const struct history_io *io, const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return HISTORY_E_IO;
	}
	int rc = histio_fsync(io, fd, path, err, errlen);
	close(fd);
	return rc;
}

int histio_mkdir(const char *path, char *err, size_t errlen)
{
	if (mkdir(path, 0700) == 0)
		return HISTORY_OK;
	if (errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return histio_errno_status(errno);
	}
	struct stat st;
	/* stat, not lstat: a data directory may be a symlink to another disk */
	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return HISTORY_E_IO;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a directory", path);
		return HISTORY_E_IO;
	}
	if ((st.st_mode & 077) && st.st_uid == geteuid() && chmod(path, 0700) != 0) {
		snprintf(err, errlen, "cannot make %s private (chmod 0700): %s", path, strerror(errno));
		return HISTORY_E_IO;
	}
	return HISTORY_OK;
}

int histio_mkdirs_under(const char *base, const char *rel, char *err, size_t errlen)
{
	char path[PATH_MAX];
	if (histio_join(path, sizeof path, base, rel) != 0) {
		snprintf(err, errlen, "path too long under %s", base);
		return HISTORY_E_INVAL;
	}
	size_t skip = strlen(base) + 1;
	for (char *p = path + skip; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		int rc = histio_mkdir(path, err, errlen);
		*p = '/';
		if (rc != HISTORY_OK)
			return rc;
	}
	return histio_mkdir(path, err, errlen);
}

int histio_create_tmp(const char *dir, const char *name, char *tmp, size_t tmplen, int *fd, char *err,
		      size_t errlen)
{
	for (int tries = 0; tries < 8; tries++) {
		unsigned char r[6];
		char hex[13];
		randombytes_buf(r, sizeof r);
		sodium_bin2hex(hex, sizeof hex, r, sizeof r);
		int w = snprintf(tmp, tmplen, "%s/.%s.%s.tmp", dir, name, hex);
		if (w < 0 || (size_t)w >= tmplen) {
			snprintf(err, errlen, "path too long in %s", dir);
			return HISTORY_E_INVAL;
		}
		*fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (*fd >= 0)
			return HISTORY_OK;
		if (errno != EEXIST) {
			int e = errno;
			snprintf(err, errlen, "cannot create a file in %s: %s", dir, strerror(e));
			return histio_errno_status(e);
		}
	}
	snprintf(err, errlen, "cannot create a temporary file in %s", dir);
	return HISTORY_E_IO;
}

int histio_replace(const struct history_io *io, const char *dir, const char *path, const void *data,
		   size_t n, char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	int fd;
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	int rc = histio_create_tmp(dir, base, tmp, sizeof tmp, &fd, err, errlen);
	if (rc != HISTORY_OK)
		return rc;
	rc = histio_pwrite_all(io, fd, data, n, 0, path, err, errlen);
	if (rc == HISTORY_OK)
		rc = histio_fsync(io, fd, path, err, errlen);
	if (close(fd) != 0 && rc == HISTORY_OK) {
		int e = errno;
		snprintf(err, errlen, "closing %s: %s", path, strerror(e));
		rc = histio_errno_status(e);
	}
	if (rc == HISTORY_OK && io->rename(io->ctx, tmp, path) != 0) {
		int e = errno;
		snprintf(err, errlen, "renaming into %s: %s", path, strerror(e));
		rc = histio_errno_status(e);
	}
	if (rc != HISTORY_OK) {
		unlink(tmp);
		return rc;
	}
	return histio_fsync_dir(io, dir, err, errlen);
}

int histio_open_regular(const char *path, int flags, mode_t mode)
{
	/* O_NONBLOCK: opening a FIFO for reading would wait for a writer */
	int fd = open(path, flags | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0) {
		if (errno == ENXIO) /* a FIFO without a reader, opened for writing */
			errno = EINVAL;
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		int e = fstat(fd, &st) != 0 ? errno : EINVAL;
		close(fd);
		errno = e;
		return -1;
	}
	if (!(flags & O_NONBLOCK))
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int histio_read_fd(int fd, size_t max, unsigned char **out, size_t *n, const char *what, char *err,
		   size_t errlen)
{
	struct stat st;
	*out = NULL;
	*n = 0;
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: %s", what, strerror(errno));
		return HISTORY_E_IO;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", what);
		return HISTORY_E_CORRUPT;
	}
	/* Read to end of file, not to the size fstat saw: a writer may append
	 * meanwhile, and a commit slot read at the start of the file may
	 * already name the record it appended after our fstat. */
	size_t cap = st.st_size > 0 && (unsigned long long)st.st_size < max ? (size_t)st.st_size + 4096 : 65536;
	size_t got = 0;
	unsigned char *buf = NULL;
	for (;;) {
		if (got == cap || !buf) {
			if (buf) {
				if (cap > max) {
					free(buf);
					snprintf(err, errlen, "%s: larger than %zu bytes", what, max);
					return HISTORY_E_CORRUPT;
				}
				cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
			}
			unsigned char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				snprintf(err, errlen, "%s: out of memory", what);
				return HISTORY_E_NOMEM;
			}
			buf = nb;
		}
		ssize_t r = pread(fd, buf + got, cap - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			snprintf(err, errlen, "reading %s: %s", what, strerror(e));
			return HISTORY_E_IO;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	if (got > max) {
		free(buf);
		snprintf(err, errlen, "%s: larger than %zu bytes", what, max);
		return HISTORY_E_CORRUPT;
	}
	*out = buf;
	*n = got;
	return HISTORY_OK;
}
