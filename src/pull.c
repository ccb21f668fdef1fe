/*
 * pull.c - resumable, verified model downloads with libcurl (see pull.h).
 *
 * The body goes straight from curl's write callback into DEST.part with
 * pwrite() at a tracked offset, and into a running SHA-256, so the file is
 * read back only when a download is resumed (to hash the prefix that is
 * already there) or when a 416 says the part is complete.  The response
 * status and Content-Range are checked on the first body byte, before
 * anything is written: a 206 must start exactly where the part ends, a 200
 * replaces the part from byte zero.  Everything that can go wrong ends in
 * one status and one message; the caller decides what to print.
 */
#include "config.h"

#include "pull.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 20)

struct xfer {
	int fd;
	uint64_t start;          /* bytes already in the part when the request began */
	uint64_t off;            /* next byte to write */
	uint64_t total;          /* size of the whole file, 0 = unknown */
	crypto_hash_sha256_state h;
	bool began;              /* the response was examined */
	bool restarted;
	long status;             /* of the latest response head */
	int64_t range_start, range_total;
	int why;                 /* a local reason to abort: PULL_E_* or 0 */
	char msg[512];
	const char *dir;         /* for the free-space check */
	CURL *c;
	pull_progress_fn progress;
	void *ctx;
	double last_ms;
	bool cancelled;
	long http_status;        /* of the last answer */
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void hex(const unsigned char *d, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Hashes bytes [0, LEN) of FD into H. */
static int hash_prefix(int fd, uint64_t len, crypto_hash_sha256_state *h, pull_progress_fn progress, void *ctx,
		       char *err, size_t errlen)
{
	unsigned char *buf = malloc(CHUNK);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return PULL_E_IO;
	}
	uint64_t off = 0;
	double last = 0;
	while (off < len) {
		size_t want = len - off < CHUNK ? (size_t)(len - off) : CHUNK;
		ssize_t r = pread(fd, buf, want, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, errlen, "read error: %s", r < 0 ? strerror(errno) : "file shrank while reading");
			free(buf);
			return PULL_E_IO;
		}
		crypto_hash_sha256_update(h, buf, (unsigned long long)r);
		off += (uint64_t)r;
		if (progress && (now_ms() - last >= 100 || off == len)) {
			last = now_ms();
			if (progress(ctx, off, len)) {
				free(buf);
				snprintf(err, errlen, "cancelled");
				return PULL_E_CANCELLED;
			}
		}
	}
	free(buf);
	return PULL_OK;
}

int pull_sha256_file(const char *path, char out[65], uint64_t *size, pull_progress_fn progress, void *ctx,
		     char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		return PULL_E_IO;
	}
	crypto_hash_sha256_state h;
	crypto_hash_sha256_init(&h);
	char msg[256];
	int rc = hash_prefix(fd, (uint64_t)st.st_size, &h, progress, ctx, msg, sizeof msg);
	close(fd);
	if (rc != PULL_OK) {
		snprintf(err, errlen, "%s: %s", path, msg);
		return rc;
	}
	unsigned char d[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_final(&h, d);
	hex(d, sizeof d, out);
	*size = (uint64_t)st.st_size;
	return PULL_OK;
}

/* mkdir -p for the folders of PATH (0700 for the ones it creates) */
static int make_parents(const char *path, char *err, size_t errlen)
{
	char buf[PATH_MAX];
	int w = snprintf(buf, sizeof buf, "%s", path);
	if (w < 0 || (size_t)w >= sizeof buf) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "cannot create %s: %s", buf, strerror(errno));
			return -1;
		}
		*p = '/';
	}
	return 0;
}

static size_t on_header(char *line, size_t size, size_t n, void *p)
{
	struct xfer *x = p;
	size_t len = size * n;
	char buf[256];
	size_t l = len < sizeof buf - 1 ? len : sizeof buf - 1;
	memcpy(buf, line, l);
	buf[l] = '\0';
	if (strncmp(buf, "HTTP/", 5) == 0) {
		/* a new response head (redirects and 100-continue come first) */
		const char *sp = strchr(buf, ' ');
		x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		x->range_start = x->range_total = -1;
	} else if (strncasecmp(buf, "content-range:", 14) == 0) {
		unsigned long long a, b, t;
		const char *v = buf + 14;
		while (*v == ' ')
			v++;
		if (sscanf(v, "bytes %llu-%llu/%llu", &a, &b, &t) == 3) {
			x->range_start = (int64_t)a;
			x->range_total = (int64_t)t;
		} else if (sscanf(v, "bytes %llu-%llu/*", &a, &b) == 2) {
			x->range_start = (int64_t)a;
		}
	}
	return len;
}

/* The first body byte: decide where the body goes. */
static int begin_body(struct xfer *x)
{
	x->began = true;
	if (x->status == 206) {
		if (x->range_start != (int64_t)x->start) {
			snprintf(x->msg, sizeof x->msg, "the server resumed at byte %" PRId64 ", not at %" PRIu64,
				 x->range_start, x->start);
			x->why = PULL_E_HTTP;
			return -1;
		}
		if (x->range_total > 0)
			x->total = (uint64_t)x->range_total;
	} else {
		/* the whole file: start over */
		if (x->start > 0) {
			if (ftruncate(x->fd, 0) != 0) {
				snprintf(x->msg, sizeof x->msg, "cannot truncate: %s", strerror(errno));
				x->why = PULL_E_IO;
				return -1;
			}
			crypto_hash_sha256_init(&x->h);
			x->restarted = true;
		}
		x->start = x->off = 0;
	}
	curl_off_t cl = -1;
	if (!x->total && curl_easy_getinfo(x->c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK && cl >= 0)
		x->total = x->start + (uint64_t)cl;
	if (x->total > x->off) {
		struct statvfs vs;
		if (statvfs(x->dir, &vs) == 0) {
			uint64_t avail = (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize;
			if (avail < x->total - x->off) {
				snprintf(x->msg, sizeof x->msg,
					 "not enough free space in %s: %" PRIu64 " bytes needed, %" PRIu64 " available",
					 x->dir, x->total - x->off, avail);
				x->why = PULL_E_SPACE;
				return -1;
			}
		}
	}
	return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *p)
{
	struct xfer *x = p;
	size_t len = size * n;
	if (!x->began && begin_body(x) != 0)
		return 0;
	size_t done = 0;
	while (done < len) {
		ssize_t w = pwrite(x->fd, data + done, len - done, (off_t)(x->off + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(x->msg, sizeof x->msg, "write error: %s", w < 0 ? strerror(errno) : "short write");
			x->why = errno == ENOSPC || errno == EDQUOT ? PULL_E_SPACE : PULL_E_IO;
			return 0;
		}
		done += (size_t)w;
	}
	crypto_hash_sha256_update(&x->h, (const unsigned char *)data, len);
	x->off += len;
	return len;
}

static int on_progress(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = p;
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	if (!x->progress)
		return 0;
	double t = now_ms();
	if (t - x->last_ms < 100)
		return 0;
	x->last_ms = t;
	if (x->progress(x->ctx, x->off, x->total)) {
		x->cancelled = true;
		return 1;
	}
	return 0;
}

static int finish(struct xfer *x, const struct pull_opts *o, const char *part, struct pull_result *r, char *err,
		  size_t errlen)
{
	unsigned char d[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_final(&x->h, d);
	hex(d, sizeof d, r->sha256);
	r->bytes = x->off;
	if (o->sha256 && strcasecmp(o->sha256, r->sha256) != 0) {
		unlink(part);
		snprintf(err, errlen, "checksum mismatch for %s: expected SHA-256 %s, got %s (the download was removed)",
			 o->url, o->sha256, r->sha256);
		return PULL_E_CHECKSUM;
	}
	if (fsync(x->fd) != 0) {
		snprintf(err, errlen, "%s: fsync: %s", part, strerror(errno));
		return PULL_E_IO;
	}
	if (rename(part, o->dest) != 0) {
		snprintf(err, errlen, "cannot rename %s to %s: %s", part, o->dest, strerror(errno));
		return PULL_E_IO;
	}
	int dfd = open(x->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return PULL_OK;
}

/* What every request of this file has in common: the URL, http(s) only
 * (redirects too, at most 10), errors as statuses, timeouts, the token. */
static void setup(CURL *c, const char *url, const char *bearer, char *cerr, long connect_s, long stall_s)
{
	curl_easy_setopt(c, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
	curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "ttychat/" PACKAGE_VERSION);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, connect_s > 0 ? connect_s : 30L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stall_s > 0 ? stall_s : 60L);
	if (bearer) {
		/* libcurl sends it to this host only, never after a redirect to
		 * another host, port or scheme (CURLOPT_UNRESTRICTED_AUTH stays off) */
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, bearer);
	}
}

/* One line for a request that got no answer; says "offline?" where the
 * network is the likely reason. */
static void net_message(CURLcode cr, const char *url, const char *cerr, const char *kept, char *err, size_t errlen)
{
	const char *why = NULL;
	switch (cr) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY: why = "cannot resolve the host name; offline?"; break;
	case CURLE_COULDNT_CONNECT: why = "cannot connect (refused or unreachable); offline?"; break;
	case CURLE_OPERATION_TIMEDOUT: why = "timed out; offline?"; break;
	default: break;
	}
	const char *detail = cerr[0] ? cerr : curl_easy_strerror(cr);
	if (why)
		snprintf(err, errlen, "%s: %s (%s)%s", url, why, detail, kept);
	else
		snprintf(err, errlen, "%s: %s%s", url, detail, kept);
}

/* One request from x->start; returns a status, or 1 when the server said
 * 416 (the part may already be complete). */
static int transfer(struct xfer *x, const struct pull_opts *o, char *err, size_t errlen)
{
	CURL *c = curl_easy_init();
	if (!c) {
		snprintf(err, errlen, "cannot start libcurl");
		return PULL_E_IO;
	}
	x->c = c;
	x->began = false;
	x->status = 0;
	x->range_start = x->range_total = -1;
	char cerr[CURL_ERROR_SIZE] = "";
	char range[64];
	snprintf(range, sizeof range, "%" PRIu64 "-", x->start);
	setup(c, o->url, o->bearer, cerr, o->connect_timeout_s, o->stall_timeout_s);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	if (x->start > 0)
		curl_easy_setopt(c, CURLOPT_RANGE, range);
	CURLcode cr = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	x->c = NULL;
	x->http_status = status;
	if (cr == CURLE_OK && !x->began) {
		/* an empty body: still a response to examine */
		x->status = status;
		if (begin_body(x) != 0)
			cr = CURLE_WRITE_ERROR;
	}
	if (cr == CURLE_OK)
		return PULL_OK;
	if (x->why) {
		snprintf(err, errlen, "%s", x->msg);
		return x->why;
	}
	if (cr == CURLE_ABORTED_BY_CALLBACK || x->cancelled) {
		snprintf(err, errlen, "cancelled");
		return PULL_E_CANCELLED;
	}
	if (cr == CURLE_HTTP_RETURNED_ERROR) {
		if (status == 416 && x->start > 0)
			return 1;
		snprintf(err, errlen, "%s: the server answered HTTP %ld", o->url, status);
		return PULL_E_HTTP;
	}
	char kept[200] = "";
	if (x->off > 0)
		snprintf(kept, sizeof kept, " (%" PRIu64 " bytes kept; run the same command again to resume)", x->off);
	if (cr == CURLE_PARTIAL_FILE && x->total)
		snprintf(err, errlen, "%s: the connection was closed after %" PRIu64 " of %" PRIu64 " bytes%s", o->url,
			 x->off, x->total, kept);
	else
		net_message(cr, o->url, cerr, kept, err, errlen);
	return PULL_E_NET;
}

int pull_download(const struct pull_opts *o, struct pull_result *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof *r);
	if (!o->url || (strncasecmp(o->url, "http://", 7) != 0 && strncasecmp(o->url, "https://", 8) != 0)) {
		snprintf(err, errlen, "%s: only http:// and https:// URLs can be pulled", o->url ? o->url : "(null)");
		return PULL_E_INVAL;
	}
	if (o->sha256 && (strlen(o->sha256) != 64 || strspn(o->sha256, "0123456789abcdefABCDEF") != 64)) {
		snprintf(err, errlen, "the expected SHA-256 '%s' is not 64 hexadecimal digits", o->sha256);
		return PULL_E_INVAL;
	}
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium failed to start");
		return PULL_E_IO;
	}
	char part[PATH_MAX], dir[PATH_MAX];
	int w = snprintf(part, sizeof part, "%s.part", o->dest);
	int w2 = snprintf(dir, sizeof dir, "%s", o->dest);
	if (w < 0 || (size_t)w >= sizeof part || w2 < 0 || (size_t)w2 >= sizeof dir) {
		snprintf(err, errlen, "%s: path too long", o->dest);
		return PULL_E_INVAL;
	}
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof dir, ".");
	if (make_parents(o->dest, err, errlen) != 0)
		return PULL_E_IO;
	int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", part, strerror(errno));
		return PULL_E_IO;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		snprintf(err, errlen, "%s is being downloaded by another process", o->dest);
		close(fd);
		return PULL_E_BUSY;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", part);
		close(fd);
		return PULL_E_IO;
	}
	fchmod(fd, 0600);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "libcurl failed to start");
		close(fd);
		return PULL_E_IO;
	}
	struct xfer x = {.fd = fd, .dir = dir, .progress = o->progress, .ctx = o->ctx};
	int rc = PULL_OK;
	for (int attempt = 0; attempt < 2; attempt++) {
		crypto_hash_sha256_init(&x.h);
		x.start = x.off = 0;
		x.total = 0;
		if (attempt == 0 && st.st_size > 0) {
			rc = hash_prefix(fd, (uint64_t)st.st_size, &x.h, NULL, NULL, err, errlen);
			if (rc != PULL_OK)
				break;
			x.start = x.off = (uint64_t)st.st_size;
			r->resumed_from = x.start;
		} else if (attempt > 0 && ftruncate(fd, 0) != 0) {
			snprintf(err, errlen, "cannot truncate %s: %s", part, strerror(errno));
			rc = PULL_E_IO;
			break;
		}
		rc = transfer(&x, o, err, errlen);
		if (rc == 1) {
			/* 416: nothing after the part; if it is not the file, start over */
			x.total = x.off;
			unsigned char d[crypto_hash_sha256_BYTES];
			crypto_hash_sha256_state copy = x.h;
			crypto_hash_sha256_final(&copy, d);
			hex(d, sizeof d, r->sha256);
			if (!o->sha256 || strcasecmp(o->sha256, r->sha256) == 0) {
				rc = PULL_OK;
				break;
			}
			r->resumed_from = 0;
			x.restarted = true;
			rc = PULL_E_CHECKSUM;
			continue;
		}
		break;
	}
	r->restarted = x.restarted;
	r->http_status = x.http_status;
	if (rc == PULL_E_CHECKSUM) {
		snprintf(err, errlen, "%s: the server has no more bytes after %" PRIu64 " and they do not match the expected SHA-256",
			 o->url, x.off);
		unlink(part);
	}
	if (rc == PULL_OK) {
		if (o->progress)
			o->progress(o->ctx, x.off, x.total ? x.total : x.off);
		rc = finish(&x, o, part, r, err, errlen);
	}
	close(fd);
	curl_global_cleanup();
	return rc;
}

/* ---- a small answer into memory -------------------------------------------- */

struct fetch {
	struct pull_body *b;
	size_t cap, max;
	bool too_big;
};

/* The target of rel="next" in a Link header value ("" when none). */
static void link_next(const char *v, char *out, size_t n)
{
	out[0] = '\0';
	while ((v = strchr(v, '<'))) {
		const char *end = strchr(v, '>');
		if (!end)
			return;
		size_t params = strcspn(end, ",");
		const char *rel = strstr(end, "rel=");
		bool next = rel && rel < end + params &&
			    (strncmp(rel + 4, "\"next\"", 6) == 0 || strncmp(rel + 4, "next", 4) == 0);
		if (next && (size_t)(end - v - 1) < n) {
			memcpy(out, v + 1, (size_t)(end - v - 1));
			out[end - v - 1] = '\0';
			return;
		}
		v = end + params;
	}
}

static size_t fetch_header(char *line, size_t size, size_t n, void *p)
{
	struct fetch *f = p;
	size_t len = size * n;
	char buf[4096];
	size_t l = len < sizeof buf - 1 ? len : sizeof buf - 1;
	memcpy(buf, line, l);
	buf[l] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (strncmp(buf, "HTTP/", 5) == 0)
		f->b->next[0] = '\0'; /* a new response head (after a redirect) */
	else if (strncasecmp(buf, "link:", 5) == 0)
		link_next(buf + 5, f->b->next, sizeof f->b->next);
	return len;
}

static size_t fetch_body(char *data, size_t size, size_t n, void *p)
{
	struct fetch *f = p;
	size_t len = size * n;
	struct pull_body *b = f->b;
	if (len > f->max - b->len) {
		f->too_big = true;
		return 0;
	}
	if (b->len + len + 1 > f->cap) {
		size_t cap = f->cap ? f->cap : 65536;
		while (cap < b->len + len + 1)
			cap *= 2;
		char *nb = realloc(b->body, cap);
		if (!nb)
			return 0;
		b->body = nb;
		f->cap = cap;
	}
	memcpy(b->body + b->len, data, len);
	b->len += len;
	b->body[b->len] = '\0';
	return len;
}

int pull_fetch(const char *url, const char *bearer, size_t max, struct pull_body *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (!url || (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)) {
		snprintf(err, errlen, "%s: only http:// and https:// URLs can be fetched", url ? url : "(null)");
		return PULL_E_INVAL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "libcurl failed to start");
		return PULL_E_IO;
	}
	CURL *c = curl_easy_init();
	if (!c) {
		curl_global_cleanup();
		snprintf(err, errlen, "cannot start libcurl");
		return PULL_E_IO;
	}
	char cerr[CURL_ERROR_SIZE] = "";
	struct fetch f = {.b = out, .max = max};
	setup(c, url, bearer, cerr, 0, 0);
	/* an error answer is read too: its body says why */
	curl_easy_setopt(c, CURLOPT_FAILONERROR, 0L);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, fetch_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &f);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
	curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
	CURLcode cr = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	curl_easy_cleanup(c);
	curl_global_cleanup();
	int rc = PULL_OK;
	if (cr != CURLE_OK) {
		if (f.too_big)
			snprintf(err, errlen, "%s: the answer is larger than %zu bytes", url, max);
		else if (cr == CURLE_WRITE_ERROR)
			snprintf(err, errlen, "%s: out of memory", url);
		else
			net_message(cr, url, cerr, "", err, errlen);
		rc = cr == CURLE_WRITE_ERROR && !f.too_big ? PULL_E_IO : PULL_E_NET;
	} else if (out->status < 200 || out->status > 299) {
		snprintf(err, errlen, "%s: the server answered HTTP %ld", url, out->status);
		rc = PULL_E_HTTP;
	}
	if (!out->body && rc != PULL_E_IO && (out->body = malloc(1)))
		out->body[0] = '\0';
	if (!out->body) {
		snprintf(err, errlen, "out of memory");
		return PULL_E_IO;
	}
	return rc;
}

void pull_body_free(struct pull_body *b)
{
	free(b->body);
	b->body = NULL;
	b->len = 0;
}
