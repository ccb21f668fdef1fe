/*
 * histio.h - file helpers for the history store (internal to src/history*,
 * src/keyfile.c): writes that go through the injectable struct history_io,
 * full-length writes, directory fsync, 0700 directories, atomic
 * replacement of a small file, bounded whole-file reads.
 *
 * Every function returns 0 or a negative HISTORY_E_* code and writes a
 * one-line message (with strerror) into ERR.  None of them prints.
 */
#ifndef TTYCHAT_HISTIO_H
#define TTYCHAT_HISTIO_H

#include <stddef.h>
#include <sys/types.h>

#include "history.h"

/* Fills the NULL members of IO (or all of them, when SRC is NULL) with the
 * real system calls. */
void histio_init(struct history_io *io, const struct history_io *src);

/* HISTORY_E_NOSPACE for ENOSPC/EDQUOT, else HISTORY_E_IO. */
int histio_errno_status(int e);

/* Writes all N bytes at OFF (looping over short writes). */
int histio_pwrite_all(const struct history_io *io, int fd, const void *buf, size_t n, off_t off,
		      const char *what, char *err, size_t errlen);
int histio_fsync(const struct history_io *io, int fd, const char *what, char *err, size_t errlen);
/* Opens directory PATH and fsyncs it. */
int histio_fsync_dir(const struct history_io *io, const char *path, char *err, size_t errlen);
/* Creates PATH as a 0700 directory if missing; an existing one of ours with
 * wider permissions is narrowed to 0700.  A non-directory is an error. */
int histio_mkdir(const char *path, char *err, size_t errlen);
/* mkdir -p for every component of REL under BASE (BASE must exist). */
int histio_mkdirs_under(const char *base, const char *rel, char *err, size_t errlen);

/* Creates DIR/.NAME.XXXXXX (O_EXCL, 0600) and returns its fd, with its
 * path in TMP (TMPLEN bytes). */
int histio_create_tmp(const char *dir, const char *name, char *tmp, size_t tmplen, int *fd, char *err,
		      size_t errlen);
/* Writes DATA to a temporary file beside PATH, fsyncs it, renames it over
 * PATH and fsyncs DIR.  On failure PATH is untouched (the temporary file
 * is removed). */
int histio_replace(const struct history_io *io, const char *dir, const char *path, const void *data,
		   size_t n, char *err, size_t errlen);

/* Opens PATH (FLAGS as for open(2), O_NOFOLLOW and O_CLOEXEC added;
 * MODE when creating) without blocking on a FIFO and refuses anything
 * but a regular file: -1 then, errno EINVAL for a FIFO, device, socket or
 * directory (say "not a regular file"), else open's errno. */
int histio_open_regular(const char *path, int flags, mode_t mode);

/* Reads the whole of FD (at most MAX bytes, else HISTORY_E_CORRUPT) into a
 * malloc'd buffer. */
int histio_read_fd(int fd, size_t max, unsigned char **out, size_t *n, const char *what, char *err,
		   size_t errlen);

/* Joins A "/" B into BUF; -1 if it does not fit. */
int histio_join(char *buf, size_t n, const char *a, const char *b);

#endif
