/*
 * history_blob.c - encrypted blobs under the data directory (KV cache
 * snapshots and anything else too large or too different for the
 * conversation logs).  See history.h for the contract and
 * docs/history-format.md for the bytes.
 *
 * A blob is libsodium's secretstream (XChaCha20-Poly1305) in chunks of at
 * most 1 MiB under a key derived from the master key.  Every chunk's
 * associated data holds the blob's name, so a file moved or copied to
 * another name fails to decrypt; the last chunk carries the FINAL tag and
 * must be followed by end of file, so truncation and appended bytes are
 * caught.  Files are written to a temporary name, fsync'ed and renamed
 * into place, then the directory is fsync'ed.  Nothing here touches the
 * store's mutable state, so these calls may run on any thread.
 */
/* src/config.h shadows the autoconf config.h here; we need the GNU
 * extensions (OFD locks) whatever the build defines. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "histio.h"
#include "history.h"
#include "history_impl.h"

#define BLOB_MAGIC "TTCHBLB1"
#define BLOB_HDR (8 + 16 + crypto_secretstream_xchacha20poly1305_HEADERBYTES)
#define CHUNK (1u << 20)
#define CHUNK_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define NAME_MAX_LEN 1024

struct history_blob_writer {
	const struct history *h;
	char path[PATH_MAX], tmp[PATH_MAX], dir[PATH_MAX];
	int fd;
	off_t off;
	crypto_secretstream_xchacha20poly1305_state st;
	unsigned char *plain; /* sodium_malloc'd staging, CHUNK bytes */
	size_t fill;
	unsigned char *ct; /* 4 + CHUNK + ABYTES */
	unsigned char *ad;
	size_t adlen;
};

struct history_blob_reader {
	int fd;
	crypto_secretstream_xchacha20poly1305_state st;
	unsigned char *plain; /* sodium_malloc'd, CHUNK bytes */
	size_t plen, ppos;
	bool final;
	unsigned char *ct;
	unsigned char *ad;
	size_t adlen;
	char name[NAME_MAX_LEN + 1];
};

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Checks NAME (see history.h) and builds its path, its directory and the
 * associated data "TTCHBLB1" || key id || name. */
static int blob_paths(const struct history *h, const char *name, char *path, char *dir, unsigned char **ad,
		      size_t *adlen, char *err, size_t errlen)
{
	size_t n = name ? strlen(name) : 0;
	bool ok = n > 0 && n <= NAME_MAX_LEN;
	size_t comp = 0;
	for (size_t i = 0; ok && i <= n; i++) {
		char ch = name[i];
		if (ch == '/' || ch == '\0') {
			ok = comp > 0 && comp <= 255;
			comp = 0;
			continue;
		}
		if (comp == 0 && ch == '.')
			ok = false; /* no hidden names, no "..", no temporaries */
		ok = ok && ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			    ch == '.' || ch == '_' || ch == '-');
		comp++;
	}
	if (ok && (strcmp(name, "key") == 0 || strncmp(name, "history/", 8) == 0 || strcmp(name, "history") == 0))
		ok = false;
	if (!ok) {
		snprintf(err, errlen, "bad blob name '%.80s'", name ? name : "");
		return HISTORY_E_INVAL;
	}
	if (histio_join(path, PATH_MAX, h->dir, name) != 0) {
		snprintf(err, errlen, "blob path too long");
		return HISTORY_E_INVAL;
	}
	snprintf(dir, PATH_MAX, "%s", path);
	*strrchr(dir, '/') = '\0';
	if (ad) {
		*adlen = 24 + n;
		*ad = malloc(*adlen);
		if (!*ad) {
			snprintf(err, errlen, "out of memory");
			return HISTORY_E_NOMEM;
		}
		memcpy(*ad, BLOB_MAGIC, 8);
		memcpy(*ad + 8, h->key_id, 16);
		memcpy(*ad + 24, name, n);
	}
	return HISTORY_OK;
}

void history_blob_abort(struct history_blob_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0) {
		close(w->fd);
		unlink(w->tmp);
	}
	if (w->plain)
		sodium_free(w->plain);
	free(w->ct);
	free(w->ad);
	sodium_memzero(&w->st, sizeof w->st);
	free(w);
}

int history_blob_begin(struct history *h, const char *name, struct history_blob_writer **out, char *err,
		       size_t errlen)
{
	*out = NULL;
	struct history_blob_writer *w = calloc(1, sizeof *w);
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return HISTORY_E_NOMEM;
	}
	w->h = h;
	w->fd = -1;
	int rc = blob_paths(h, name, w->path, w->dir, &w->ad, &w->adlen, err, errlen);
	if (rc == HISTORY_OK) {
		w->plain = sodium_malloc(CHUNK);
		w->ct = malloc(4 + CHUNK + CHUNK_ABYTES);
		if (!w->plain || !w->ct) {
			snprintf(err, errlen, "out of memory");
			rc = HISTORY_E_NOMEM;
		}
	}
	if (rc == HISTORY_OK && strcmp(w->dir, h->dir) != 0)
		rc = histio_mkdirs_under(h->dir, w->dir + strlen(h->dir) + 1, err, errlen);
	if (rc == HISTORY_OK) {
		const char *base = strrchr(w->path, '/') + 1;
		rc = histio_create_tmp(w->dir, base, w->tmp, sizeof w->tmp, &w->fd, err, errlen);
	}
	if (rc == HISTORY_OK) {
		unsigned char hdr[BLOB_HDR];
		memcpy(hdr, BLOB_MAGIC, 8);
		memcpy(hdr + 8, h->key_id, 16);
		crypto_secretstream_xchacha20poly1305_init_push(&w->st, hdr + 24, history_key(h, HK_BLOB));
		rc = histio_pwrite_all(&h->io, w->fd, hdr, sizeof hdr, 0, w->path, err, errlen);
		w->off = BLOB_HDR;
	}
	if (rc != HISTORY_OK) {
		history_blob_abort(w);
		return rc;
	}
	*out = w;
	return HISTORY_OK;
}

static int blob_push(struct history_blob_writer *w, unsigned char tag, char *err, size_t errlen)
{
	unsigned long long clen;
	crypto_secretstream_xchacha20poly1305_push(&w->st, w->ct + 4, &clen, w->plain, w->fill, w->ad, w->adlen,
						   tag);
	put32(w->ct, (uint32_t)clen);
	sodium_memzero(w->plain, w->fill);
	w->fill = 0;
	int rc = histio_pwrite_all(&w->h->io, w->fd, w->ct, 4 + (size_t)clen, w->off, w->path, err, errlen);
	w->off += (off_t)(4 + clen);
	return rc;
}

int history_blob_write(struct history_blob_writer *w, const void *data, size_t len, char *err, size_t errlen)
{
	const unsigned char *p = data;
	while (len > 0) {
		size_t take = CHUNK - w->fill < len ? CHUNK - w->fill : len;
		memcpy(w->plain + w->fill, p, take);
		w->fill += take;
		p += take;
		len -= take;
		if (w->fill == CHUNK) {
			int rc = blob_push(w, 0, err, errlen);
			if (rc != HISTORY_OK)
				return rc;
		}
	}
	return HISTORY_OK;
}

int history_blob_commit(struct history_blob_writer *w, char *err, size_t errlen)
{
	const struct history_io *io = &w->h->io;
	int rc = blob_push(w, crypto_secretstream_xchacha20poly1305_TAG_FINAL, err, errlen);
	if (rc == HISTORY_OK)
		rc = histio_fsync(io, w->fd, w->path, err, errlen);
	int fd = w->fd;
	w->fd = -1;
	if (close(fd) != 0 && rc == HISTORY_OK) {
		snprintf(err, errlen, "closing %s: %s", w->path, strerror(errno));
		rc = histio_errno_status(errno);
	}
	if (rc == HISTORY_OK && io->rename(io->ctx, w->tmp, w->path) != 0) {
		snprintf(err, errlen, "renaming into %s: %s", w->path, strerror(errno));
		rc = histio_errno_status(errno);
	}
	if (rc != HISTORY_OK)
		unlink(w->tmp);
	else
		rc = histio_fsync_dir(io, w->dir, err, errlen);
	history_blob_abort(w);
	return rc;
}

int history_blob_save(struct history *h, const char *name, const void *data, size_t len, char *err,
		      size_t errlen)
{
	struct history_blob_writer *w;
	int rc = history_blob_begin(h, name, &w, err, errlen);
	if (rc != HISTORY_OK)
		return rc;
	rc = history_blob_write(w, data, len, err, errlen);
	if (rc != HISTORY_OK) {
		history_blob_abort(w);
		return rc;
	}
	return history_blob_commit(w, err, errlen);
}

void history_blob_close(struct history_blob_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	if (r->plain)
		sodium_free(r->plain);
	free(r->ct);
	free(r->ad);
	sodium_memzero(&r->st, sizeof r->st);
	free(r);
}

/* Reads exactly N bytes; 1 at a clean EOF before any byte, 0 when all
 * were read, -1 on a short read or an error (errno; 0 for short). */
static int read_exact(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (unsigned char *)buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			errno = 0;
			return got == 0 ? 1 : -1;
		}
		got += (size_t)r;
	}
	return 0;
}

int history_blob_open(struct history *h, const char *name, struct history_blob_reader **out, char *err,
		      size_t errlen)
{
	*out = NULL;
	char path[PATH_MAX], dir[PATH_MAX];
	struct history_blob_reader *r = calloc(1, sizeof *r);
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return HISTORY_E_NOMEM;
	}
	r->fd = -1;
	int rc = blob_paths(h, name, path, dir, &r->ad, &r->adlen, err, errlen);
	if (rc == HISTORY_OK) {
		snprintf(r->name, sizeof r->name, "%s", name);
		r->plain = sodium_malloc(CHUNK);
		r->ct = malloc(CHUNK + CHUNK_ABYTES);
		if (!r->plain || !r->ct) {
			snprintf(err, errlen, "out of memory");
			rc = HISTORY_E_NOMEM;
		}
	}
	if (rc == HISTORY_OK) {
		r->fd = histio_open_regular(path, O_RDONLY, 0);
		if (r->fd < 0) {
			snprintf(err, errlen, "%s: %s", path, errno == EINVAL ? "not a regular file; refused" : strerror(errno));
			rc = errno == ENOENT ? HISTORY_E_NOTFOUND : HISTORY_E_IO;
		}
	}
	unsigned char hdr[BLOB_HDR];
	if (rc == HISTORY_OK) {
		int e = read_exact(r->fd, hdr, sizeof hdr);
		if (e != 0 || memcmp(hdr, BLOB_MAGIC, 8) != 0) {
			snprintf(err, errlen, "%s: not a ttychat blob", name);
			rc = e < 0 && errno ? HISTORY_E_IO : HISTORY_E_CORRUPT;
		} else if (memcmp(hdr + 8, h->key_id, 16) != 0) {
			snprintf(err, errlen, "%s: written with a different key file", name);
			rc = HISTORY_E_WRONGKEY;
		} else if (crypto_secretstream_xchacha20poly1305_init_pull(&r->st, hdr + 24,
									   history_key(h, HK_BLOB)) != 0) {
			snprintf(err, errlen, "%s: damaged header", name);
			rc = HISTORY_E_CORRUPT;
		}
	}
	if (rc != HISTORY_OK) {
		history_blob_close(r);
		return rc;
	}
	*out = r;
	return HISTORY_OK;
}

static int blob_next_chunk(struct history_blob_reader *r, char *err, size_t errlen)
{
	unsigned char lenb[4];
	int e = read_exact(r->fd, lenb, 4);
	if (e != 0) {
		snprintf(err, errlen, "%s: truncated", r->name);
		return e < 0 && errno ? HISTORY_E_IO : HISTORY_E_CORRUPT;
	}
	uint32_t clen = get32(lenb);
	if (clen < CHUNK_ABYTES || clen > CHUNK + CHUNK_ABYTES) {
		snprintf(err, errlen, "%s: damaged (chunk length)", r->name);
		return HISTORY_E_CORRUPT;
	}
	e = read_exact(r->fd, r->ct, clen);
	if (e != 0) {
		snprintf(err, errlen, "%s: truncated", r->name);
		return e < 0 && errno ? HISTORY_E_IO : HISTORY_E_CORRUPT;
	}
	unsigned long long plen;
	unsigned char tag;
	if (crypto_secretstream_xchacha20poly1305_pull(&r->st, r->plain, &plen, &tag, r->ct, clen, r->ad, r->adlen) !=
	    0) {
		snprintf(err, errlen, "%s: damaged, or written under another name", r->name);
		return HISTORY_E_CORRUPT;
	}
	r->plen = (size_t)plen;
	r->ppos = 0;
	if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
		unsigned char extra;
		if (read_exact(r->fd, &extra, 1) != 1) {
			snprintf(err, errlen, "%s: damaged (data after the end)", r->name);
			return HISTORY_E_CORRUPT;
		}
		r->final = true;
	} else if (tag != 0) {
		snprintf(err, errlen, "%s: damaged (chunk tag)", r->name);
		return HISTORY_E_CORRUPT;
	}
	return HISTORY_OK;
}

int history_blob_read(struct history_blob_reader *r, void *buf, size_t cap, size_t *got, char *err,
		      size_t errlen)
{
	*got = 0;
	while (cap > 0) {
		if (r->ppos == r->plen) {
			if (r->final)
				return HISTORY_OK;
			int rc = blob_next_chunk(r, err, errlen);
			if (rc != HISTORY_OK)
				return rc;
			continue;
		}
		size_t take = r->plen - r->ppos < cap ? r->plen - r->ppos : cap;
		memcpy((unsigned char *)buf + *got, r->plain + r->ppos, take);
		r->ppos += take;
		*got += take;
		cap -= take;
		if (*got)
			return HISTORY_OK;
	}
	return HISTORY_OK;
}

int history_blob_load(struct history *h, const char *name, void **data, size_t *len, char *err, size_t errlen)
{
	*data = NULL;
	*len = 0;
	struct history_blob_reader *r;
	int rc = history_blob_open(h, name, &r, err, errlen);
	if (rc != HISTORY_OK)
		return rc;
	struct stat st;
	size_t cap = fstat(r->fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size : 1;
	unsigned char *buf = malloc(cap);
	size_t n = 0;
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		rc = HISTORY_E_NOMEM;
	}
	while (rc == HISTORY_OK) {
		size_t got;
		if (n == cap) {
			/* plaintext is never longer than the file; this only
			 * happens if the file grew under us */
			snprintf(err, errlen, "%s: changed while being read", name);
			rc = HISTORY_E_CORRUPT;
			break;
		}
		rc = history_blob_read(r, buf + n, cap - n, &got, err, errlen);
		if (rc == HISTORY_OK && got == 0)
			break;
		n += got;
	}
	history_blob_close(r);
	if (rc != HISTORY_OK) {
		if (buf) {
			sodium_memzero(buf, n);
			free(buf);
		}
		return rc;
	}
	*data = buf;
	*len = n;
	return HISTORY_OK;
}

int history_blob_remove(struct history *h, const char *name, char *err, size_t errlen)
{
	char path[PATH_MAX], dir[PATH_MAX];
	int rc = blob_paths(h, name, path, dir, NULL, NULL, err, errlen);
	if (rc != HISTORY_OK)
		return rc;
	if (unlink(path) != 0) {
		snprintf(err, errlen, "cannot remove %s: %s", path, strerror(errno));
		return errno == ENOENT ? HISTORY_E_NOTFOUND : HISTORY_E_IO;
	}
	return histio_fsync_dir(&h->io, dir, err, errlen);
}

void history_blob_name(const struct history *h, const void *id, size_t len, char out[65])
{
	unsigned char d[32];
	crypto_generichash(d, sizeof d, id, len, history_key(h, HK_NAME), HK_BYTES);
	sodium_bin2hex(out, 65, d, sizeof d);
}
