/*
 * pull.h - downloading a model file: resumable, verified, atomic.
 *
 * pull_download() fetches URL into DEST.part (0600, created with its
 * folders 0700), resuming a partial DEST.part with an HTTP Range request
 * when one is there, hashes every byte with SHA-256 (libsodium) and, only
 * when the digest matches the expected one, makes the file durable and
 * renames it to DEST.  A checksum mismatch removes DEST.part (resuming a
 * bad file could never succeed); any other failure keeps it for the next
 * attempt.  A server that ignores Range (200 instead of 206) restarts the
 * download from zero; one that answers 416 means DEST.part is already
 * complete, which the checksum then decides.  Only http:// and https://
 * are followed, redirects included.  An flock() on DEST.part keeps two
 * pulls of the same file from interleaving.
 *
 * pull_fetch() is the same transport for a small answer kept in memory
 * (a hub's JSON API, hub.h).  Both send an optional token as
 * "Authorization: Bearer" to the host of the URL only: libcurl drops it
 * when a redirect leads to another host, port or scheme (a hub's CDN).
 *
 * Library code: no printing, no exit; a one-line message goes to ERR.
 * Threads: call from one thread at a time (libcurl's global init).
 */
#ifndef TTYCHAT_PULL_H
#define TTYCHAT_PULL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pull_status {
	PULL_OK = 0,
	PULL_E_NET = -1,       /* cannot connect, connection lost, timeout */
	PULL_E_HTTP = -2,      /* the server answered with an error status */
	PULL_E_CHECKSUM = -3,  /* the file's SHA-256 is not the expected one */
	PULL_E_IO = -4,        /* local file error (message has errno text) */
	PULL_E_CANCELLED = -5, /* the progress callback asked to stop */
	PULL_E_BUSY = -6,      /* another process is downloading DEST */
	PULL_E_INVAL = -7,     /* bad argument (URL scheme, expected digest) */
	PULL_E_SPACE = -8,     /* not enough free disk space for the rest */
};

/* Called about every 100 ms and at the end with bytes so far (including
 * what was resumed) and the total (0 when unknown).  Nonzero cancels. */
typedef int (*pull_progress_fn)(void *ctx, uint64_t have, uint64_t total);

struct pull_opts {
	const char *url;
	const char *dest;           /* final path of the file */
	const char *sha256;         /* expected digest (64 hex) or NULL: not checked */
	pull_progress_fn progress;  /* may be NULL */
	void *ctx;
	long connect_timeout_s;     /* 0 = 30 */
	long stall_timeout_s;       /* no byte for this long fails; 0 = 60 */
	const char *bearer;         /* access token for the URL's host, or NULL */
};

struct pull_result {
	char sha256[65];            /* digest of the file, lowercase hex */
	uint64_t bytes;             /* its size */
	uint64_t resumed_from;      /* bytes that were already in DEST.part (0: fresh) */
	bool restarted;             /* the server ignored Range; started over */
	long http_status;           /* of the last answer (0: none came) */
};

int pull_download(const struct pull_opts *o, struct pull_result *r, char *err, size_t errlen);

/* SHA-256 of a whole file into OUT (lowercase hex) and its size.
 * PROGRESS as above (may be NULL).  PULL_OK, PULL_E_IO or PULL_E_CANCELLED. */
int pull_sha256_file(const char *path, char out[65], uint64_t *size, pull_progress_fn progress, void *ctx,
		     char *err, size_t errlen);

/* GET URL into memory (at most MAX bytes of body), with BEARER as above
 * (may be NULL).  BODY is malloc'd and NUL-terminated (free it), NEXT the
 * target of a `Link: <URL>; rel="next"` header ("" when none: the API's
 * next page).  PULL_OK on a 2xx answer; PULL_E_HTTP on another status
 * (STATUS says which; BODY keeps the answer, ERR a line); PULL_E_NET when
 * the host cannot be reached (ERR says whether its name did not resolve,
 * it refused the connection or it timed out) or the answer exceeds MAX;
 * PULL_E_INVAL for a URL that is not http:// or https://. */
struct pull_body {
	char *body;
	size_t len;
	long status;
	char next[2048];
};
int pull_fetch(const char *url, const char *bearer, size_t max, struct pull_body *out, char *err, size_t errlen);
void pull_body_free(struct pull_body *b);

#endif
