/*
 * history.c - the encrypted history store: key handling at open, and one
 * append-only log file per conversation (see history.h for the contract
 * and docs/history-format.md for the bytes).
 *
 * A log is a 64-byte header, two 64-byte commit slots and then records.
 * Each record is sealed on its own with XChaCha20-Poly1305 (random nonce)
 * and its associated data holds the header (conversation id, key id), the
 * record's sequence number and the previous record's tag, so the records
 * form a chain that cannot be reordered, shortened in the middle, padded
 * with copies or mixed with another conversation's records.
 *
 * Truncation at a record boundary is caught with the commit slots: after
 * a record is appended and fsync'ed, the older of the two slots is
 * overwritten with (generation+1, record count, end offset, last tag)
 * under a keyed BLAKE2b MAC and fsync'ed again; only then is the message
 * reported saved.  A reader takes the valid slot with the highest
 * generation and insists that at least that many records are present and
 * that the slot's offset and tag match.  A crash can leave (a) a torn
 * record after the committed ones, dropped with a notice, or (b) a torn
 * slot write, after which the other slot is one record behind; a damaged
 * slot is therefore only accepted when a complete record exists beyond
 * what the surviving slot commits.  Anything else is an error.
 *
 * When a write or fsync fails, the file is never trusted again: the next
 * attempt writes the whole conversation from memory into a fresh file and
 * renames it into place (fsync file, rename, fsync directory).  The same
 * path repairs a file whose tail was dropped.
 *
 * A writer holds an OFD write lock on ID.lock for the life of its handle;
 * readers only test for it (F_OFD_GETLK), so they never block a writer,
 * and they skip silently a tail that a live writer is still writing.
 */
/* src/config.h shadows the autoconf config.h here; we need the GNU
 * extensions (OFD locks) whatever the build defines. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "history.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "histio.h"
#include "history_impl.h"
#include "keyfile.h"

#define LOG_MAGIC "TTCHLOG1"
#define LOG_VERSION 1
#define LOG_HDR 64
#define SLOT_SIZE 64
#define SLOT_MACCED 48 /* slot bytes covered by the MAC */
#define LOG_DATA (LOG_HDR + 2 * SLOT_SIZE) /* first record */
#define REC_HDR 28                         /* u32 length + 24-byte nonce */
#define TAG_BYTES 16
#define PAD_BLOCK 64
#define REC_AD_LEN (8 + LOG_HDR + 8 + TAG_BYTES + 4)
#define MAX_TEXT (16u << 20)                /* one message */
#define MAX_PLAIN (MAX_TEXT + (1u << 20))   /* one record's padded plaintext */
#define MAX_LOG ((size_t)1 << 31)           /* one conversation file */
#define PASS_MAX 1024
#define TITLE_MAX 100

_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == TAG_BYTES, "tag size");
_Static_assert(crypto_kdf_CONTEXTBYTES == sizeof HK_CONTEXT - 1, "kdf context");

enum { REC_META = 1, REC_MSG = 2 };
enum {
	F_TEXT = 1,
	F_REASONING = 2,          /* MSG: an assistant reply's reasoning */
	F_TITLE = 1,
	F_MODEL = 2,
	F_SYSTEM = 3,
	F_TEMPERATURE = 16,
	F_TOP_P = 17,
	F_MIN_P = 18,
	F_REPEAT_PENALTY = 19,
	F_TOP_K = 20,
	F_CONTEXT = 21,
	F_THINK = 22,             /* u32: 1 on, 2 off */
	F_EFFORT = 23,            /* reasoning effort (UTF-8) */
	F_BUDGET = 24,            /* reasoning budget, u32 tokens */
};

/* One record in memory, in file order. */
struct rec {
	int type;
	int64_t time_ms;
	struct history_msg msg;   /* REC_MSG; text malloc'd */
	struct history_meta meta; /* REC_META; strings malloc'd */
};

struct history_conv {
	struct history *h;
	char id[HISTORY_ID_LEN + 1];
	unsigned char header[LOG_HDR];
	char path[PATH_MAX];
	char lockpath[PATH_MAX];
	int fd;      /* the log, open for writing (-1 when read-only) */
	int lock_fd; /* holds the writer lock (-1 when read-only) */
	struct rec **recs;
	size_t n_recs, cap_recs;
	struct history_msg **msgs;
	size_t n_msgs, cap_msgs;
	/* the rewind rule (history.h): indexes into msgs of the counted
	 * messages (user/assistant with text) that stand, oldest first */
	size_t *stand;
	size_t n_stand, cap_stand;
	size_t n_replaced;
	const struct history_meta *meta; /* the latest META record's */
	char title[TITLE_MAX + 1];

	/* what is durable in the file: recs[0 .. n_durable) */
	size_t n_durable;
	uint64_t end; /* offset after the last durable record */
	unsigned char last_tag[TAG_BYTES];
	uint64_t gen; /* generation of the newest commit slot */
	bool needs_rewrite;
	bool damaged; /* only the records before some damage were read (HISTORY_DAMAGED) */
};

/* ---- small helpers ------------------------------------------------------ */

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

__attribute__((format(printf, 3, 4))) static int fail(struct history *h, int rc, const char *fmt, ...);

static int fail(struct history *h, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(h->err, sizeof h->err, fmt, ap);
	va_end(ap);
	return rc;
}

/* Record times, strictly increasing within this process: two records
 * written in the same millisecond still list in the order they were
 * written ("most recently updated first" stays true for a script or a
 * test that acts faster than the clock ticks).  A burst of k records in
 * one millisecond runs at most k-1 ms ahead of the wall clock. */
static int64_t now_ms(void)
{
	static _Atomic int64_t last;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t t = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	int64_t prev = atomic_load(&last);
	for (;;) {
		int64_t want = t > prev ? t : prev + 1;
		if (atomic_compare_exchange_weak(&last, &prev, want))
			return want;
	}
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

const char *history_strstatus(int status)
{
	switch (status) {
	case HISTORY_OK: return "ok";
	case HISTORY_RECOVERED: return "recovered after an interrupted save";
	case HISTORY_DAMAGED: return "damaged: only the records before the damage";
	case HISTORY_E_IO: return "I/O error";
	case HISTORY_E_NOSPACE: return "disk full";
	case HISTORY_E_PASSPHRASE: return "wrong passphrase";
	case HISTORY_E_NOKEY: return "no key file";
	case HISTORY_E_KEYLOST: return "key file missing beside existing history";
	case HISTORY_E_CORRUPT: return "damaged or tampered file";
	case HISTORY_E_WRONGKEY: return "written with another key";
	case HISTORY_E_NOTFOUND: return "not found";
	case HISTORY_E_AMBIGUOUS: return "ambiguous ID";
	case HISTORY_E_BUSY: return "in use by another process";
	case HISTORY_E_NOMEM: return "out of memory";
	case HISTORY_E_INVAL: return "invalid argument";
	case HISTORY_E_CANCELLED: return "cancelled";
	case HISTORY_E_READONLY: return "opened read-only";
	}
	return "unknown status";
}

/* ---- the store ---------------------------------------------------------- */

int history_default_dir(char *buf, size_t n)
{
	const char *x = getenv("XDG_DATA_HOME");
	int w;
	if (x && x[0] == '/')
		w = snprintf(buf, n, "%s/ttychat", x);
	else {
		const char *home = getenv("HOME");
		if (!home || !home[0])
			return -1;
		w = snprintf(buf, n, "%s/.local/share/ttychat", home);
	}
	return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* mkdir -p for the parents of PATH, leaving their permissions alone. */
static int make_parents(const char *path, char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
		return HISTORY_E_INVAL;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
			return histio_errno_status(errno);
		}
		*p = '/';
	}
	return HISTORY_OK;
}

/* Asks the callback for a passphrase into a fresh sodium_malloc buffer. */
static int ask_pass(const struct history_opts *o, enum history_pass_purpose why, char **out, size_t *len,
		    char *err, size_t errlen)
{
	*out = NULL;
	if (!o->passphrase) {
		snprintf(err, errlen, "%s", why == HISTORY_PASS_UNLOCK ? "the history key needs a passphrase"
									: "no way to ask for a passphrase");
		return HISTORY_E_CANCELLED;
	}
	char *buf = sodium_malloc(PASS_MAX);
	if (!buf) {
		snprintf(err, errlen, "out of secure memory");
		return HISTORY_E_NOMEM;
	}
	memset(buf, 0, PASS_MAX);
	if (o->passphrase(o->pass_ctx, why, buf, PASS_MAX) != 0) {
		sodium_free(buf);
		snprintf(err, errlen, "no passphrase given");
		return HISTORY_E_CANCELLED;
	}
	buf[PASS_MAX - 1] = '\0';
	*out = buf;
	*len = strlen(buf);
	return HISTORY_OK;
}

/* Writes a new key file for MASTER at H->keypath, failing if one appeared
 * meanwhile (two first runs at once must not make two master keys). */
static int create_keyfile(struct history *h, const unsigned char *master, const char *pass, size_t len,
			  char *err, size_t errlen)
{
	unsigned char file[KEYFILE_SIZE];
	int rc = keyfile_wrap(master, pass, len, h->kdf_ops, h->kdf_mem, file, err, errlen);
	if (rc != HISTORY_OK)
		return rc;
	char tmp[PATH_MAX];
	int fd;
	rc = histio_create_tmp(h->dir, "key", tmp, sizeof tmp, &fd, err, errlen);
	if (rc != HISTORY_OK)
		return rc;
	rc = histio_pwrite_all(&h->io, fd, file, sizeof file, 0, "the key file", err, errlen);
	if (rc == HISTORY_OK)
		rc = histio_fsync(&h->io, fd, "the key file", err, errlen);
	close(fd);
	/* link() fails if a key file appeared meanwhile; rename() would
	 * silently replace it.  Only where hard links do not exist at all
	 * (some FUSE and FAT file systems) do we fall back to rename(). */
	if (rc == HISTORY_OK && link(tmp, h->keypath) != 0 &&
	    !((errno == EPERM || errno == ENOTSUP || errno == EOPNOTSUPP || errno == ENOSYS) &&
	      access(h->keypath, F_OK) != 0 && h->io.rename(h->io.ctx, tmp, h->keypath) == 0)) {
		if (errno == EEXIST) {
			snprintf(err, errlen, "another ttychat created the key file just now; try again");
			rc = HISTORY_E_BUSY;
		} else {
			snprintf(err, errlen, "cannot create %s: %s", h->keypath, strerror(errno));
			rc = histio_errno_status(errno);
		}
	}
	unlink(tmp);
	if (rc == HISTORY_OK)
		rc = histio_fsync_dir(&h->io, h->dir, err, errlen);
	return rc;
}

/* Removes temporary files older than a day that crashed writers left. */
static void sweep_tmp(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	time_t cutoff = time(NULL) - 86400;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		struct stat st;
		if (e->d_name[0] != '.' || l < 5 || strcmp(e->d_name + l - 4, ".tmp") != 0)
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
		    st.st_mtime < cutoff)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

/* The conversation logs (ID.tch) in HDIR. */
static size_t count_logs(const char *hdir)
{
	DIR *d = opendir(hdir);
	if (!d)
		return 0;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		n += l == HISTORY_ID_LEN + 4 && strcmp(e->d_name + HISTORY_ID_LEN, ".tch") == 0;
	}
	closedir(d);
	return n;
}

int history_open(const struct history_opts *o, struct history **out, char *err, size_t errlen)
{
	*out = NULL;
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium failed to initialise");
		return HISTORY_E_NOMEM;
	}
	struct history *h = calloc(1, sizeof *h);
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return HISTORY_E_NOMEM;
	}
	histio_init(&h->io, o->io);
	h->kdf_ops = o->test_kdf_opslimit ? o->test_kdf_opslimit : crypto_pwhash_argon2id_OPSLIMIT_MODERATE;
	h->kdf_mem = o->test_kdf_memlimit ? o->test_kdf_memlimit : crypto_pwhash_argon2id_MEMLIMIT_MODERATE;
	int rc;
	if (o->dir) {
		if (snprintf(h->dir, sizeof h->dir, "%s", o->dir) >= (int)sizeof h->dir)
			rc = HISTORY_E_INVAL;
		else
			rc = HISTORY_OK;
	} else {
		rc = history_default_dir(h->dir, sizeof h->dir) == 0 ? HISTORY_OK : HISTORY_E_INVAL;
	}
	if (rc != HISTORY_OK || histio_join(h->hdir, sizeof h->hdir, h->dir, "history") ||
	    histio_join(h->keypath, sizeof h->keypath, h->dir, "key")) {
		snprintf(err, errlen, "no usable data directory (set XDG_DATA_HOME or HOME)");
		free(h);
		return HISTORY_E_INVAL;
	}
	h->keys = sodium_malloc(HK_COUNT * HK_BYTES);
	if (!h->keys) {
		snprintf(err, errlen, "out of secure memory");
		free(h);
		return HISTORY_E_NOMEM;
	}
	unsigned char *master = h->keys;
	unsigned char file[KEYFILE_SIZE];
	char *pass = NULL;
	size_t plen = 0;
	rc = keyfile_read(h->keypath, file, err, errlen);
	size_t orphans = rc == HISTORY_E_NOKEY ? count_logs(h->hdir) : 0;
	if (orphans) {
		/* never "no history yet", and never a new key beside logs that
		 * only the lost one opens */
		snprintf(err, errlen,
			 "the key file %s is missing, but %s holds %zu conversation%s that only it can open; "
			 "restore the key file from a backup (nothing was changed)",
			 h->keypath, h->hdir, orphans, orphans == 1 ? "" : "s");
		rc = HISTORY_E_KEYLOST;
	} else if (rc == HISTORY_E_NOKEY && (o->flags & HISTORY_OPEN_CREATE)) {
		rc = ask_pass(o, HISTORY_PASS_NEW, &pass, &plen, err, errlen);
		if (rc == HISTORY_OK)
			rc = make_parents(h->dir, err, errlen);
		if (rc == HISTORY_OK)
			rc = histio_mkdir(h->dir, err, errlen);
		if (rc == HISTORY_OK) {
			randombytes_buf(master, HK_BYTES);
			rc = create_keyfile(h, master, pass, plen, err, errlen);
			h->has_pass = plen > 0;
		}
	} else if (rc == HISTORY_OK) {
		h->has_pass = keyfile_has_passphrase(file);
		if (h->has_pass)
			rc = ask_pass(o, HISTORY_PASS_UNLOCK, &pass, &plen, err, errlen);
		if (rc == HISTORY_OK)
			rc = keyfile_unlock(file, pass, plen, master, err, errlen);
	}
	if (pass)
		sodium_free(pass);
	if (rc == HISTORY_OK) {
		for (int i = 1; i < HK_COUNT; i++)
			crypto_kdf_derive_from_key(h->keys + (size_t)i * HK_BYTES, HK_BYTES, (uint64_t)i,
						   HK_CONTEXT, master);
		crypto_kdf_derive_from_key(h->key_id, sizeof h->key_id, HK_ID_KEYID, HK_CONTEXT, master);
		sodium_mprotect_readonly(h->keys);
		/* only now that the key is ours do we touch the directories */
		rc = histio_mkdir(h->dir, err, errlen);
		if (rc == HISTORY_OK)
			rc = histio_mkdir(h->hdir, err, errlen);
	}
	if (rc != HISTORY_OK) {
		history_close(h);
		return rc;
	}
	sweep_tmp(h->hdir);
	*out = h;
	return HISTORY_OK;
}

void history_close(struct history *h)
{
	if (!h)
		return;
	sodium_free(h->keys);
	free(h);
}

const char *history_errmsg(const struct history *h)
{
	return h->err;
}

int history_has_passphrase(const struct history *h)
{
	return h->has_pass;
}

const char *history_dir(const struct history *h)
{
	return h->dir;
}

int history_set_passphrase(struct history *h, const char *pass, size_t len)
{
	if (len >= PASS_MAX || (len && !pass))
		return fail(h, HISTORY_E_INVAL, "passphrase too long (at most %d bytes)", PASS_MAX - 1);
	unsigned char file[KEYFILE_SIZE];
	int rc = keyfile_wrap(history_key(h, HK_MASTER), pass, len, h->kdf_ops, h->kdf_mem, file, h->err,
			      sizeof h->err);
	if (rc == HISTORY_OK)
		rc = histio_replace(&h->io, h->dir, h->keypath, file, sizeof file, h->err, sizeof h->err);
	if (rc == HISTORY_OK)
		h->has_pass = len > 0;
	return rc;
}

/* ---- record encoding ---------------------------------------------------- */

struct buf {
	unsigned char *p;
	size_t n, cap;
	bool oom;
};

static void buf_add(struct buf *b, const void *src, size_t n)
{
	if (b->oom)
		return;
	if (b->cap - b->n < n) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->n < n) {
			if (cap > SIZE_MAX / 2) {
				b->oom = true;
				return;
			}
			cap *= 2;
		}
		unsigned char *np = malloc(cap);
		if (!np) {
			b->oom = true;
			return;
		}
		if (b->p) {
			memcpy(np, b->p, b->n);
			sodium_memzero(b->p, b->n);
			free(b->p);
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->n, src, n);
	b->n += n;
}

static void buf_field(struct buf *b, unsigned tag, const void *v, size_t n)
{
	unsigned char h[6];
	h[0] = (unsigned char)tag;
	h[1] = (unsigned char)(tag >> 8);
	put32(h + 2, (uint32_t)n);
	buf_add(b, h, sizeof h);
	buf_add(b, v, n);
}

static void buf_str(struct buf *b, unsigned tag, const char *s)
{
	if (s)
		buf_field(b, tag, s, strlen(s));
}

static void buf_f32(struct buf *b, unsigned tag, float v)
{
	if (!(v >= 0))
		return;
	uint32_t u;
	unsigned char p[4];
	memcpy(&u, &v, 4);
	put32(p, u);
	buf_field(b, tag, p, 4);
}

/* Frees plaintext buffer B, wiping it first. */
static void buf_wipe(struct buf *b)
{
	if (b->p) {
		sodium_memzero(b->p, b->n);
		free(b->p);
	}
	b->p = NULL;
	b->n = b->cap = 0;
}

/* The padded plaintext of R (free it with buf_wipe).  Plaintext
 * temporaries live in ordinary memory and are wiped before they are
 * freed; only keys use sodium_malloc (locked pages are a scarce resource
 * and a 16 MiB message would not fit RLIMIT_MEMLOCK). */
static int rec_encode(const struct rec *r, struct buf *b)
{
	unsigned char head[12];
	memset(b, 0, sizeof *b);
	head[0] = (unsigned char)r->type;
	head[1] = r->type == REC_MSG ? (unsigned char)r->msg.role : 0;
	head[2] = r->type == REC_MSG ? (unsigned char)r->msg.flags : 0;
	head[3] = r->type == REC_MSG ? (unsigned char)(r->msg.flags >> 8) : 0;
	put64(head + 4, (uint64_t)r->time_ms);
	buf_add(b, head, sizeof head);
	if (r->type == REC_MSG) {
		buf_field(b, F_TEXT, r->msg.text, r->msg.len);
		if (r->msg.reasoning_len)
			buf_field(b, F_REASONING, r->msg.reasoning, r->msg.reasoning_len);
	} else {
		const struct history_meta *m = &r->meta;
		buf_str(b, F_TITLE, m->title);
		buf_str(b, F_MODEL, m->model);
		buf_str(b, F_SYSTEM, m->system_prompt);
		buf_f32(b, F_TEMPERATURE, m->temperature);
		buf_f32(b, F_TOP_P, m->top_p);
		buf_f32(b, F_MIN_P, m->min_p);
		buf_f32(b, F_REPEAT_PENALTY, m->repeat_penalty);
		if (m->top_k >= 0) {
			unsigned char p[4];
			put32(p, (uint32_t)m->top_k);
			buf_field(b, F_TOP_K, p, 4);
		}
		if (m->context_size) {
			unsigned char p[4];
			put32(p, m->context_size);
			buf_field(b, F_CONTEXT, p, 4);
		}
		if (m->think > 0) {
			unsigned char p[4];
			put32(p, (uint32_t)m->think);
			buf_field(b, F_THINK, p, 4);
		}
		buf_str(b, F_EFFORT, m->reasoning_effort);
		if (m->reasoning_budget) {
			unsigned char p[4];
			put32(p, m->reasoning_budget);
			buf_field(b, F_BUDGET, p, 4);
		}
	}
	/* ISO/IEC 7816-4 padding to a multiple of PAD_BLOCK: hides exact lengths */
	size_t padded = (b->n / PAD_BLOCK + 1) * PAD_BLOCK;
	unsigned char zero[PAD_BLOCK] = {0x80};
	buf_add(b, zero, padded - b->n);
	if (b->oom || b->n > MAX_PLAIN) {
		buf_wipe(b);
		return HISTORY_E_NOMEM;
	}
	return HISTORY_OK;
}

static void rec_free(struct rec *r)
{
	if (!r)
		return;
	if (r->type == REC_MSG && r->msg.text) {
		sodium_memzero((void *)r->msg.text, r->msg.len);
		free((void *)r->msg.text);
	}
	if (r->type == REC_MSG && r->msg.reasoning) {
		sodium_memzero((void *)r->msg.reasoning, r->msg.reasoning_len);
		free((void *)r->msg.reasoning);
	}
	if (r->type == REC_META) {
		const char *s[] = {r->meta.model, r->meta.system_prompt, r->meta.title, r->meta.reasoning_effort};
		for (int i = 0; i < 4; i++)
			if (s[i]) {
				sodium_memzero((void *)s[i], strlen(s[i]));
				free((void *)s[i]);
			}
	}
	free(r);
}

static char *dup_field(const unsigned char *p, uint32_t n)
{
	char *s = malloc((size_t)n + 1);
	if (s) {
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

static float get_f32(const unsigned char *p)
{
	uint32_t u = get32(p);
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* Decodes authenticated plaintext P (N bytes, padding removed) into a new
 * record.  Returns NULL (with *OOM set when that was the reason) if it
 * is malformed. */
static struct rec *rec_decode(const unsigned char *p, size_t n, bool *oom)
{
	*oom = false;
	if (n < 12)
		return NULL;
	struct rec *r = calloc(1, sizeof *r);
	if (!r) {
		*oom = true;
		return NULL;
	}
	r->type = p[0];
	r->time_ms = (int64_t)get64(p + 4);
	history_meta_init(&r->meta);
	unsigned seen = 0; /* bit per known tag, for duplicates */
	bool bad = false;
	if (r->type == REC_MSG) {
		r->msg.role = (enum history_role)p[1];
		r->msg.flags = (unsigned)p[2] | (unsigned)p[3] << 8;
		r->msg.time_ms = r->time_ms;
		if (p[1] < HISTORY_ROLE_SYSTEM || p[1] > HISTORY_ROLE_ASSISTANT)
			bad = true;
	} else if (r->type == REC_META) {
		if (p[1] || p[2] || p[3])
			bad = true;
	} else {
		bad = true;
	}
	size_t off = 12;
	while (!bad && off < n) {
		if (n - off < 6) {
			bad = true;
			break;
		}
		unsigned tag = (unsigned)p[off] | (unsigned)p[off + 1] << 8;
		uint32_t len = get32(p + off + 2);
		off += 6;
		if (len > n - off) {
			bad = true;
			break;
		}
		const unsigned char *v = p + off;
		off += len;
		if (tag < 32) {
			if (seen & (1u << tag)) {
				bad = true;
				break;
			}
			seen |= 1u << tag;
		}
		if (r->type == REC_MSG) {
			if (tag == F_TEXT) {
				if (len > MAX_TEXT) {
					bad = true;
					break;
				}
				r->msg.text = dup_field(v, len);
				r->msg.len = len;
				if (!r->msg.text)
					*oom = bad = true;
			} else if (tag == F_REASONING) {
				if (len > MAX_TEXT || p[1] != HISTORY_ROLE_ASSISTANT) {
					bad = true;
					break;
				}
				r->msg.reasoning = dup_field(v, len);
				r->msg.reasoning_len = len;
				if (!r->msg.reasoning)
					*oom = bad = true;
			}
			continue; /* unknown tags: written by a newer version */
		}
		char **sp = NULL;
		switch (tag) {
		case F_TITLE: sp = (char **)&r->meta.title; break;
		case F_MODEL: sp = (char **)&r->meta.model; break;
		case F_SYSTEM: sp = (char **)&r->meta.system_prompt; break;
		case F_EFFORT: sp = (char **)&r->meta.reasoning_effort; break;
		case F_TEMPERATURE:
		case F_TOP_P:
		case F_MIN_P:
		case F_REPEAT_PENALTY:
		case F_TOP_K:
		case F_CONTEXT:
		case F_THINK:
		case F_BUDGET:
			if (len != 4) {
				bad = true;
				break;
			}
			if (tag == F_TEMPERATURE)
				r->meta.temperature = get_f32(v);
			else if (tag == F_TOP_P)
				r->meta.top_p = get_f32(v);
			else if (tag == F_MIN_P)
				r->meta.min_p = get_f32(v);
			else if (tag == F_REPEAT_PENALTY)
				r->meta.repeat_penalty = get_f32(v);
			else if (tag == F_TOP_K)
				r->meta.top_k = get32(v) > INT32_MAX ? -1 : (int)get32(v);
			else if (tag == F_THINK)
				r->meta.think = get32(v) == 1 || get32(v) == 2 ? (int)get32(v) : 0;
			else if (tag == F_BUDGET)
				r->meta.reasoning_budget = get32(v) <= (1u << 24) ? get32(v) : 0;
			else
				r->meta.context_size = get32(v);
			break;
		default: break;
		}
		if (sp) {
			*sp = dup_field(v, len);
			if (!*sp)
				*oom = bad = true;
		}
	}
	if (!bad && r->type == REC_MSG && !(seen & (1u << F_TEXT)))
		bad = true;
	if (bad) {
		rec_free(r);
		return NULL;
	}
	return r;
}

/* The associated data of record SEQ after PREV_TAG with ciphertext CLEN. */
static void rec_ad(unsigned char ad[REC_AD_LEN], const unsigned char *header, uint64_t seq,
		   const unsigned char *prev_tag, uint32_t clen)
{
	memcpy(ad, "TTCHREC1", 8);
	memcpy(ad + 8, header, LOG_HDR);
	put64(ad + 8 + LOG_HDR, seq);
	memcpy(ad + 16 + LOG_HDR, prev_tag, TAG_BYTES);
	put32(ad + 16 + LOG_HDR + TAG_BYTES, clen);
}

/* Seals R as record SEQ into *OUT (malloc'd, *N bytes, tag copied to TAG). */
static int rec_seal(const struct history_conv *c, const struct rec *r, uint64_t seq, const unsigned char *prev,
		    unsigned char **out, size_t *n, unsigned char tag[TAG_BYTES])
{
	struct buf pt;
	if (rec_encode(r, &pt) != HISTORY_OK)
		return HISTORY_E_NOMEM;
	size_t clen = pt.n + TAG_BYTES;
	unsigned char *rec = malloc(REC_HDR + clen);
	if (!rec) {
		buf_wipe(&pt);
		return HISTORY_E_NOMEM;
	}
	unsigned char ad[REC_AD_LEN];
	put32(rec, (uint32_t)clen);
	randombytes_buf(rec + 4, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	rec_ad(ad, c->header, seq, prev, (uint32_t)clen);
	crypto_aead_xchacha20poly1305_ietf_encrypt(rec + REC_HDR, NULL, pt.p, pt.n, ad, sizeof ad, NULL, rec + 4,
						   history_key(c->h, HK_RECORD));
	buf_wipe(&pt);
	memcpy(tag, rec + REC_HDR + clen - TAG_BYTES, TAG_BYTES);
	*out = rec;
	*n = REC_HDR + clen;
	return HISTORY_OK;
}

/* ---- commit slots ------------------------------------------------------- */

static void slot_mac(const struct history_conv *c, const unsigned char *slot, unsigned char mac[16])
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, history_key(c->h, HK_SLOT), HK_BYTES, 16);
	crypto_generichash_update(&st, (const unsigned char *)"TTCHSLOT", 8);
	crypto_generichash_update(&st, c->header, LOG_HDR);
	crypto_generichash_update(&st, slot, SLOT_MACCED);
	crypto_generichash_final(&st, mac, 16);
	sodium_memzero(&st, sizeof st); /* keyed state */
}

static void slot_make(const struct history_conv *c, unsigned char slot[SLOT_SIZE], uint64_t gen, uint64_t count,
		      uint64_t end, const unsigned char *tag)
{
	memset(slot, 0, SLOT_SIZE);
	put64(slot, gen);
	put64(slot + 8, count);
	put64(slot + 16, end);
	memcpy(slot + 24, tag, TAG_BYTES);
	slot_mac(c, slot, slot + SLOT_MACCED);
}

static bool slot_valid(const struct history_conv *c, const unsigned char *slot, int index)
{
	unsigned char mac[16];
	slot_mac(c, slot, mac);
	if (sodium_memcmp(mac, slot + SLOT_MACCED, 16) != 0)
		return false;
	for (int i = 40; i < SLOT_MACCED; i++)
		if (slot[i])
			return false;
	/* generation g lives in slot g % 2; a slot names at least record 0 */
	return (get64(slot) & 1) == (uint64_t)index && get64(slot + 8) >= 1 && get64(slot + 16) > LOG_DATA;
}

/* ---- conversation handles ----------------------------------------------- */

void history_meta_init(struct history_meta *m)
{
	memset(m, 0, sizeof *m);
	m->temperature = m->top_p = m->min_p = m->repeat_penalty = -1;
	m->top_k = -1;
}

static bool id_valid(const char *s)
{
	for (int i = 0; i < HISTORY_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[HISTORY_ID_LEN] == '\0';
}

static struct history_conv *conv_new(struct history *h, const char *id)
{
	struct history_conv *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->h = h;
	c->fd = c->lock_fd = -1;
	memcpy(c->id, id, HISTORY_ID_LEN + 1);
	char name[HISTORY_ID_LEN + 8];
	snprintf(name, sizeof name, "%s.tch", id);
	histio_join(c->path, sizeof c->path, h->hdir, name);
	snprintf(name, sizeof name, "%s.lock", id);
	histio_join(c->lockpath, sizeof c->lockpath, h->hdir, name);
	memcpy(c->header, LOG_MAGIC, 8);
	put32(c->header + 8, LOG_VERSION);
	sodium_hex2bin(c->header + 16, 16, id, HISTORY_ID_LEN, NULL, NULL, NULL);
	memcpy(c->header + 32, h->key_id, 16);
	return c;
}

static void conv_free(struct history_conv *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_recs; i++)
		rec_free(c->recs[i]);
	free(c->recs);
	free(c->msgs);
	free(c->stand);
	if (c->fd >= 0)
		close(c->fd);
	if (c->lock_fd >= 0)
		close(c->lock_fd); /* releases the OFD lock */
	free(c);
}

static void update_title(struct history_conv *c)
{
	const char *src = NULL;
	size_t n = 0;
	if (c->meta && c->meta->title && c->meta->title[0]) {
		src = c->meta->title;
		n = strlen(src);
	} else {
		for (size_t i = 0; i < c->n_msgs; i++)
			if (c->msgs[i]->role == HISTORY_ROLE_USER && !c->msgs[i]->replaced) {
				src = c->msgs[i]->text;
				n = c->msgs[i]->len;
				break;
			}
	}
	size_t start = 0, end;
	while (src && start < n && (src[start] == ' ' || src[start] == '\n' || src[start] == '\t'))
		start++; /* leading blanks */
	end = start;
	while (src && end < n && src[end] && src[end] != '\n' && src[end] != '\r')
		end++;
	if (end - start > TITLE_MAX) {
		end = start + TITLE_MAX;
		while (end > start && ((unsigned char)src[end] & 0xc0) == 0x80)
			end--; /* do not split a UTF-8 sequence */
	}
	if (end > start)
		memcpy(c->title, src + start, end - start);
	c->title[end - start] = '\0';
}

/* Takes ownership of R and adds it to C's in-memory records. */
static int conv_push(struct history_conv *c, struct rec *r)
{
	if (c->n_recs == c->cap_recs) {
		size_t cap = c->cap_recs ? c->cap_recs * 2 : 16;
		struct rec **nr = realloc(c->recs, cap * sizeof *nr);
		if (!nr)
			return HISTORY_E_NOMEM;
		c->recs = nr;
		c->cap_recs = cap;
	}
	if (r->type == REC_MSG && c->n_msgs == c->cap_msgs) {
		size_t cap = c->cap_msgs ? c->cap_msgs * 2 : 16;
		struct history_msg **nm = realloc(c->msgs, cap * sizeof *nm);
		if (!nm)
			return HISTORY_E_NOMEM;
		c->msgs = nm;
		c->cap_msgs = cap;
	}
	bool counted = r->type == REC_MSG && r->msg.len > 0 &&
		       (r->msg.role == HISTORY_ROLE_USER || r->msg.role == HISTORY_ROLE_ASSISTANT);
	if (counted && c->n_stand == c->cap_stand) {
		size_t cap = c->cap_stand ? c->cap_stand * 2 : 16;
		size_t *ns = realloc(c->stand, cap * sizeof *ns);
		if (!ns)
			return HISTORY_E_NOMEM;
		c->stand = ns;
		c->cap_stand = cap;
	}
	c->recs[c->n_recs++] = r;
	if (r->type == REC_MSG) {
		r->msg.replaced = false;
		if (counted) {
			/* a rewind: the latest standing messages give way to this one */
			size_t d = history_msg_replaces(r->msg.flags);
			for (; d > 0 && c->n_stand > 0; d--) {
				c->msgs[c->stand[--c->n_stand]]->replaced = true;
				c->n_replaced++;
			}
			c->stand[c->n_stand++] = c->n_msgs;
		}
		c->msgs[c->n_msgs++] = &r->msg;
	} else {
		c->meta = &r->meta;
	}
	update_title(c);
	return HISTORY_OK;
}

static struct rec *meta_rec(const struct history_meta *m)
{
	size_t total = 0;
	const char *s[] = {m->model, m->system_prompt, m->title, m->reasoning_effort};
	for (int i = 0; i < 4; i++)
		total += s[i] ? strnlen(s[i], MAX_TEXT + 1) : 0;
	if (total > MAX_TEXT)
		return NULL;
	struct rec *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->type = REC_META;
	r->time_ms = now_ms();
	r->meta = *m;
	r->meta.model = xstrdup(m->model);
	r->meta.system_prompt = xstrdup(m->system_prompt);
	r->meta.title = m->title && m->title[0] ? strdup(m->title) : NULL;
	r->meta.reasoning_effort = m->reasoning_effort && m->reasoning_effort[0] ? strdup(m->reasoning_effort) : NULL;
	if ((m->model && !r->meta.model) || (m->system_prompt && !r->meta.system_prompt) ||
	    (m->title && m->title[0] && !r->meta.title) ||
	    (m->reasoning_effort && m->reasoning_effort[0] && !r->meta.reasoning_effort)) {
		rec_free(r);
		return NULL;
	}
	return r;
}

/* Takes the writer lock on C's lock file. */
static int conv_lock(struct history_conv *c)
{
	c->lock_fd = histio_open_regular(c->lockpath, O_RDWR | O_CREAT, 0600);
	if (c->lock_fd < 0)
		return errno == EINVAL ? fail(c->h, HISTORY_E_IO, "%s: not a regular file; refused", c->lockpath)
				       : fail(c->h, histio_errno_status(errno), "cannot open %s: %s", c->lockpath,
					      strerror(errno));
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (fcntl(c->lock_fd, F_OFD_SETLK, &fl) != 0) {
		int e = errno;
		close(c->lock_fd);
		c->lock_fd = -1;
		if (e == EAGAIN || e == EACCES)
			return fail(c->h, HISTORY_E_BUSY, "conversation %s is open in another ttychat", c->id);
		return fail(c->h, HISTORY_E_IO, "cannot lock %s: %s", c->lockpath, strerror(e));
	}
	return HISTORY_OK;
}

/* 1 if another process holds the writer lock of C. */
static bool writer_active(const struct history_conv *c)
{
	int fd = histio_open_regular(c->lockpath, O_RDONLY, 0);
	if (fd < 0)
		return false;
	struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
	bool busy = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
	close(fd);
	return busy;
}

/* Writes all records of C into a fresh file and renames it over the log:
 * the one recovery path after any failed write or a damaged tail. */
static int conv_rewrite(struct history_conv *c)
{
	struct history *h = c->h;
	char tmp[PATH_MAX];
	int fd;
	char name[HISTORY_ID_LEN + 8];
	snprintf(name, sizeof name, "%s.tch", c->id);
	int rc = histio_create_tmp(h->hdir, name, tmp, sizeof tmp, &fd, h->err, sizeof h->err);
	if (rc != HISTORY_OK)
		return rc;
	unsigned char tag[TAG_BYTES] = {0}, prev[TAG_BYTES] = {0};
	uint64_t off = LOG_DATA;
	rc = histio_pwrite_all(&h->io, fd, c->header, LOG_HDR, 0, c->path, h->err, sizeof h->err);
	for (size_t i = 0; rc == HISTORY_OK && i < c->n_recs; i++) {
		unsigned char *rec;
		size_t n;
		rc = rec_seal(c, c->recs[i], i, prev, &rec, &n, tag);
		if (rc != HISTORY_OK) {
			fail(h, rc, "out of memory");
			break;
		}
		rc = histio_pwrite_all(&h->io, fd, rec, n, (off_t)off, c->path, h->err, sizeof h->err);
		free(rec);
		off += n;
		memcpy(prev, tag, TAG_BYTES);
	}
	unsigned char slots[2 * SLOT_SIZE];
	slot_make(c, slots, 0, c->n_recs, off, tag);
	slot_make(c, slots + SLOT_SIZE, 1, c->n_recs, off, tag);
	if (rc == HISTORY_OK)
		rc = histio_pwrite_all(&h->io, fd, slots, sizeof slots, LOG_HDR, c->path, h->err, sizeof h->err);
	if (rc == HISTORY_OK)
		rc = histio_fsync(&h->io, fd, c->path, h->err, sizeof h->err);
	if (rc == HISTORY_OK && h->io.rename(h->io.ctx, tmp, c->path) != 0)
		rc = fail(h, histio_errno_status(errno), "renaming into %s: %s", c->path, strerror(errno));
	if (rc != HISTORY_OK) {
		close(fd);
		unlink(tmp);
		return rc;
	}
	/* renamed: FD is the log now, even if the directory sync fails */
	if (c->fd >= 0)
		close(c->fd);
	c->fd = fd;
	rc = histio_fsync_dir(&h->io, h->hdir, h->err, sizeof h->err);
	if (rc != HISTORY_OK)
		return rc; /* still needs_rewrite: the rename may not be durable */
	c->n_durable = c->n_recs;
	c->end = off;
	memcpy(c->last_tag, tag, TAG_BYTES);
	c->gen = 1;
	c->needs_rewrite = false;
	return HISTORY_OK;
}

/* Appends recs[n_durable] in place: record, fsync, commit slot, fsync. */
static int conv_append_one(struct history_conv *c)
{
	struct history *h = c->h;
	unsigned char *rec, tag[TAG_BYTES], slot[SLOT_SIZE];
	size_t n;
	if (rec_seal(c, c->recs[c->n_durable], c->n_durable, c->last_tag, &rec, &n, tag) != HISTORY_OK)
		return fail(h, HISTORY_E_NOMEM, "out of memory");
	int rc = histio_pwrite_all(&h->io, c->fd, rec, n, (off_t)c->end, c->path, h->err, sizeof h->err);
	free(rec);
	if (rc == HISTORY_OK)
		rc = histio_fsync(&h->io, c->fd, c->path, h->err, sizeof h->err);
	uint64_t gen = c->gen + 1;
	slot_make(c, slot, gen, c->n_durable + 1, c->end + n, tag);
	if (rc == HISTORY_OK)
		rc = histio_pwrite_all(&h->io, c->fd, slot, SLOT_SIZE, (off_t)(LOG_HDR + SLOT_SIZE * (gen & 1)),
				       c->path, h->err, sizeof h->err);
	if (rc == HISTORY_OK)
		rc = histio_fsync(&h->io, c->fd, c->path, h->err, sizeof h->err);
	if (rc != HISTORY_OK)
		return rc;
	c->n_durable++;
	c->end += n;
	c->gen = gen;
	memcpy(c->last_tag, tag, TAG_BYTES);
	return HISTORY_OK;
}

/* Makes every in-memory record durable. */
static int conv_sync(struct history_conv *c)
{
	if (c->n_durable == c->n_recs && !c->needs_rewrite)
		return HISTORY_OK;
	if (c->needs_rewrite || c->fd < 0)
		return conv_rewrite(c);
	while (c->n_durable < c->n_recs) {
		int rc = conv_append_one(c);
		if (rc != HISTORY_OK) {
			/* never trust this file descriptor's pages again */
			c->needs_rewrite = true;
			return rc;
		}
	}
	return HISTORY_OK;
}

static int new_id(struct history *h, char id[HISTORY_ID_LEN + 1])
{
	unsigned char r[16];
	randombytes_buf(r, sizeof r);
	sodium_bin2hex(id, HISTORY_ID_LEN + 1, r, sizeof r);
	(void)h;
	return HISTORY_OK;
}

int history_conv_create(struct history *h, const struct history_meta *m, struct history_conv **out)
{
	*out = NULL;
	struct history_meta none;
	if (!m) {
		history_meta_init(&none);
		m = &none;
	}
	char id[HISTORY_ID_LEN + 1];
	new_id(h, id);
	struct history_conv *c = conv_new(h, id);
	struct rec *r = c ? meta_rec(m) : NULL;
	if (!r) {
		conv_free(c);
		return fail(h, HISTORY_E_NOMEM, "out of memory");
	}
	int rc = conv_push(c, r);
	if (rc != HISTORY_OK) {
		rec_free(r);
		conv_free(c);
		return fail(h, rc, "out of memory");
	}
	rc = conv_lock(c);
	if (rc == HISTORY_OK)
		rc = conv_rewrite(c);
	if (rc != HISTORY_OK) {
		if (c->fd >= 0)
			unlink(c->path); /* renamed in, but not durably: all or nothing */
		if (c->lock_fd >= 0)
			unlink(c->lockpath);
		conv_free(c);
		return rc;
	}
	*out = c;
	return HISTORY_OK;
}

/* Finds the full ID for ID (a prefix of >= 4 hex digits, any case). */
static int resolve_id(struct history *h, const char *id, char full[HISTORY_ID_LEN + 1])
{
	size_t n = strlen(id);
	char want[HISTORY_ID_LEN + 1];
	if (n < 4 || n > HISTORY_ID_LEN)
		return fail(h, HISTORY_E_NOTFOUND, "'%.40s' is not a conversation ID (4 to 32 hex digits)", id);
	for (size_t i = 0; i < n; i++) {
		if (!isxdigit((unsigned char)id[i]))
			return fail(h, HISTORY_E_NOTFOUND, "'%.40s' is not a conversation ID (4 to 32 hex digits)",
				    id);
		want[i] = (char)tolower((unsigned char)id[i]);
	}
	want[n] = '\0';
	DIR *d = opendir(h->hdir);
	if (!d)
		return fail(h, errno == ENOENT ? HISTORY_E_NOTFOUND : HISTORY_E_IO, "%s: %s", h->hdir,
			    strerror(errno));
	int found = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strlen(e->d_name) != HISTORY_ID_LEN + 4 || strcmp(e->d_name + HISTORY_ID_LEN, ".tch") != 0 ||
		    strncmp(e->d_name, want, n) != 0)
			continue;
		char cand[HISTORY_ID_LEN + 1];
		memcpy(cand, e->d_name, HISTORY_ID_LEN);
		cand[HISTORY_ID_LEN] = '\0';
		if (!id_valid(cand))
			continue;
		if (found++ == 0)
			memcpy(full, cand, sizeof cand);
	}
	closedir(d);
	if (found == 0)
		return fail(h, HISTORY_E_NOTFOUND, "no conversation %s", want);
	if (found > 1)
		return fail(h, HISTORY_E_AMBIGUOUS, "'%s' matches %d conversations; give more digits", want, found);
	return HISTORY_OK;
}

/* Verifies and decodes log BUF (N bytes) into C.  BUSY: a live writer may
 * be appending (an incomplete tail is then no cause for a notice).
 * Damage after the header (a record that fails to authenticate before the
 * committed count, a record that does not match the commit slot, missing
 * records, damaged commit slots) leaves in C every record that
 * authenticates before it, C->damaged set; with SALVAGE that is
 * HISTORY_DAMAGED, else HISTORY_E_CORRUPT (the message says how many
 * records a repair would keep). */
static int conv_parse(struct history_conv *c, const unsigned char *buf, size_t n, bool busy, bool salvage)
{
	struct history *h = c->h;
	if (n < LOG_DATA || memcmp(buf, LOG_MAGIC, 8) != 0)
		return fail(h, HISTORY_E_CORRUPT, "%s: not a ttychat history file (damaged header)", c->id);
	if (get32(buf + 8) != LOG_VERSION || get32(buf + 12) != 0 || !sodium_is_zero(buf + 48, 16))
		return fail(h, HISTORY_E_CORRUPT, "%s: unsupported or damaged header", c->id);
	if (memcmp(buf + 32, h->key_id, 16) != 0)
		return fail(h, HISTORY_E_WRONGKEY, "%s: written with a different key file", c->id);
	if (memcmp(buf, c->header, LOG_HDR) != 0)
		return fail(h, HISTORY_E_CORRUPT, "%s: the file belongs to another conversation", c->id);

	const unsigned char *sl[2] = {buf + LOG_HDR, buf + LOG_HDR + SLOT_SIZE};
	bool ok[2] = {slot_valid(c, sl[0], 0), slot_valid(c, sl[1], 1)};
	int rc = HISTORY_OK;
	int s = !ok[0] ? 1 : !ok[1] ? 0 : get64(sl[1]) > get64(sl[0]) ? 1 : 0;
	if (!ok[0] && !ok[1]) {
		rc = fail(h, HISTORY_E_CORRUPT, "%s: both commit slots are damaged", c->id);
	} else if (ok[0] && ok[1]) {
		const unsigned char *older = sl[1 - s];
		if (get64(older) + 1 != get64(sl[s]) || get64(older + 8) > get64(sl[s] + 8))
			rc = fail(h, HISTORY_E_CORRUPT, "%s: commit slots disagree", c->id);
	}
	/* slots that cannot be trusted commit nothing: the records that
	 * authenticate are still shown, as damaged */
	uint64_t committed = rc == HISTORY_OK ? get64(sl[s] + 8) : 0;
	uint64_t cend = rc == HISTORY_OK ? get64(sl[s] + 16) : 0;
	const unsigned char *ctag = sl[s] + 24;

	unsigned char prev[TAG_BYTES] = {0};
	uint64_t seq = 0;
	size_t off = LOG_DATA;
	size_t dropped = 0;
	unsigned char *pt = NULL;
	size_t pt_cap = 0;
	while (off < n) {
		bool torn = false;
		size_t clen = 0;
		if (n - off < REC_HDR) {
			torn = true;
		} else {
			clen = get32(buf + off);
			if (clen < TAG_BYTES + PAD_BLOCK || clen > MAX_PLAIN + TAG_BYTES ||
			    (clen - TAG_BYTES) % PAD_BLOCK != 0 || clen > n - off - REC_HDR)
				torn = true;
		}
		if (!torn) {
			size_t plen = clen - TAG_BYTES;
			if (plen > pt_cap) {
				free(pt); /* wiped after each record */
				pt = malloc(plen);
				pt_cap = pt ? plen : 0;
				if (!pt) {
					rc = fail(h, HISTORY_E_NOMEM, "out of memory (%zu bytes for a record of %s)", plen,
						  c->id);
					break;
				}
			}
			unsigned char ad[REC_AD_LEN];
			rec_ad(ad, c->header, seq, prev, (uint32_t)clen);
			if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, NULL, NULL, buf + off + REC_HDR, clen, ad,
								       sizeof ad, buf + off + 4,
								       history_key(h, HK_RECORD)) != 0)
				torn = true;
		}
		if (torn) {
			if (seq < committed) {
				rc = fail(h, HISTORY_E_CORRUPT,
					  "%s: record %llu of %llu is damaged, missing or out of place", c->id,
					  (unsigned long long)seq + 1, (unsigned long long)committed);
				break;
			}
			dropped = n - off;
			break;
		}
		size_t plen = clen - TAG_BYTES, ulen;
		bool oom;
		struct rec *r = NULL;
		if (sodium_unpad(&ulen, pt, plen, PAD_BLOCK) == 0)
			r = rec_decode(pt, ulen, &oom);
		else
			oom = false;
		sodium_memzero(pt, plen);
		if (r && seq == 0 && r->type != REC_META) {
			rec_free(r);
			r = NULL;
		}
		if (!r) {
			/* authentic but malformed: a bug, or someone holds the key */
			rc = oom ? fail(h, HISTORY_E_NOMEM, "out of memory decoding a record of %s", c->id)
				 : fail(h, HISTORY_E_CORRUPT, "%s: record %llu is malformed", c->id,
					(unsigned long long)seq + 1);
			break;
		}
		if (conv_push(c, r) != HISTORY_OK) {
			rec_free(r);
			rc = fail(h, HISTORY_E_NOMEM, "out of memory (record %llu of %s)", (unsigned long long)seq + 1,
				  c->id);
			break;
		}
		memcpy(prev, buf + off + REC_HDR + clen - TAG_BYTES, TAG_BYTES);
		off += REC_HDR + clen;
		seq++;
		if (seq == committed && (off != cend || sodium_memcmp(prev, ctag, TAG_BYTES) != 0)) {
			/* the slot names another last record; those read so far
			 * still authenticate on their own (the chain) */
			rc = fail(h, HISTORY_E_CORRUPT, "%s: the records do not match the commit slot", c->id);
			break;
		}
	}
	free(pt);
	bool slot_torn = !(ok[0] && ok[1]);
	if (rc == HISTORY_OK && seq < committed)
		rc = fail(h, HISTORY_E_CORRUPT, "%s: truncated: %llu of %llu saved records present", c->id,
			  (unsigned long long)seq, (unsigned long long)committed);
	if (rc == HISTORY_OK && slot_torn && seq < committed + 1)
		rc = fail(h, HISTORY_E_CORRUPT, "%s: a commit slot is damaged", c->id);
	if (rc == HISTORY_E_CORRUPT) {
		if (seq == 0)
			return rc; /* not even the first record: nothing to show */
		/* the chain authenticates records 1..SEQ by itself (each one's
		 * associated data holds its number and the previous tag) */
		c->damaged = true;
		c->n_durable = seq;
		c->end = off;
		memcpy(c->last_tag, prev, TAG_BYTES);
		c->gen = 0;
		c->needs_rewrite = true;
		char why[sizeof h->err];
		memcpy(why, h->err, sizeof why);
		if (!salvage)
			return fail(h, HISTORY_E_CORRUPT,
				    "%.300s ('ttychat history repair %.12s' keeps the %llu records before the damage)",
				    why, c->id, (unsigned long long)seq);
		return fail(h, HISTORY_DAMAGED, "%.300s; the %llu records before the damage are intact", why,
			    (unsigned long long)seq);
	}
	if (rc != HISTORY_OK)
		return rc;
	c->n_durable = seq;
	c->end = off;
	memcpy(c->last_tag, prev, TAG_BYTES);
	c->gen = get64(sl[s]);
	c->needs_rewrite = dropped || slot_torn || seq > committed;
	if ((dropped || slot_torn) && !busy) {
		if (dropped)
			return fail(h, HISTORY_RECOVERED,
				    "%s: dropped an incomplete last record (%zu bytes), probably from an "
				    "interrupted save; everything before it is intact",
				    c->id, dropped);
		return fail(h, HISTORY_RECOVERED, "%s: a commit slot was damaged by an interrupted save; repaired",
			    c->id);
	}
	return HISTORY_OK;
}

/* Removes temporary files of C left by an interrupted rewrite (we hold
 * C's writer lock, so none of them is in use). */
static void sweep_conv_tmp(const struct history_conv *c)
{
	DIR *d = opendir(c->h->hdir);
	if (!d)
		return;
	char prefix[HISTORY_ID_LEN + 8];
	snprintf(prefix, sizeof prefix, ".%s.tch.", c->id);
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && l > 4 && strcmp(e->d_name + l - 4, ".tmp") == 0)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

/* Saves the N bytes of damaged log BUF beside it as ID.tch.damaged (or
 * .damaged.1, ...; never replacing one) before a repair rewrites it: only
 * ciphertext, as on disk.  HISTORY_DAMAGED with the message naming the
 * copy, or an error (and then nothing is to be rewritten). */
static int conv_backup(struct history_conv *c, const unsigned char *buf, size_t n)
{
	struct history *h = c->h;
	char why[sizeof h->err], path[PATH_MAX];
	memcpy(why, h->err, sizeof why);
	int fd = -1;
	for (int i = 0; i < 100 && fd < 0; i++) {
		int l = i ? snprintf(path, sizeof path, "%s.damaged.%d", c->path, i)
			  : snprintf(path, sizeof path, "%s.damaged", c->path);
		if (l < 0 || (size_t)l >= sizeof path)
			return fail(h, HISTORY_E_IO, "%s: path too long for a backup copy", c->path);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			return fail(h, histio_errno_status(errno), "cannot create the backup copy %s: %s", path,
				    strerror(errno));
	}
	if (fd < 0)
		return fail(h, HISTORY_E_IO, "%s: too many backup copies already (%s.damaged*)", c->path, c->path);
	int rc = histio_pwrite_all(&h->io, fd, buf, n, 0, path, h->err, sizeof h->err);
	if (rc == HISTORY_OK)
		rc = histio_fsync(&h->io, fd, path, h->err, sizeof h->err);
	close(fd);
	if (rc == HISTORY_OK)
		rc = histio_fsync_dir(&h->io, h->hdir, h->err, sizeof h->err);
	if (rc != HISTORY_OK) {
		unlink(path);
		return rc;
	}
	return fail(h, HISTORY_DAMAGED, "%.300s; the damaged file was copied to %.400s", why, path);
}

/* Loads conversation FULL (an exact ID). */
static int conv_load_exact(struct history *h, const char *full, unsigned flags, struct history_conv **out)
{
	*out = NULL;
	struct history_conv *c = conv_new(h, full);
	if (!c)
		return fail(h, HISTORY_E_NOMEM, "out of memory");
	bool write = flags & HISTORY_LOAD_WRITE;
	int rc = write ? conv_lock(c) : HISTORY_OK;
	int fd = -1;
	if (rc == HISTORY_OK) {
		fd = histio_open_regular(c->path, write ? O_RDWR : O_RDONLY, 0);
		if (fd < 0 && errno == EINVAL)
			rc = fail(h, HISTORY_E_CORRUPT, "%s: not a regular file; refused", c->path);
		else if (fd < 0)
			rc = fail(h, errno == ENOENT ? HISTORY_E_NOTFOUND : HISTORY_E_IO, "%s: %s", c->path,
				  strerror(errno));
	}
	unsigned char *buf = NULL;
	size_t n = 0;
	if (rc == HISTORY_OK)
		rc = histio_read_fd(fd, MAX_LOG, &buf, &n, c->path, h->err, sizeof h->err);
	if (rc == HISTORY_OK)
		rc = conv_parse(c, buf, n, !write && writer_active(c), flags & HISTORY_LOAD_SALVAGE);
	if (rc == HISTORY_DAMAGED && write)
		rc = conv_backup(c, buf, n); /* before the rewrite drops the damage */
	free(buf);
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		conv_free(c);
		return rc;
	}
	if (write) {
		c->fd = fd;
		sweep_conv_tmp(c);
		if (c->needs_rewrite) {
			char note[sizeof h->err];
			memcpy(note, h->err, sizeof note);
			int r2 = conv_rewrite(c);
			if (r2 != HISTORY_OK) {
				char why[sizeof h->err];
				memcpy(why, h->err, sizeof why);
				snprintf(h->err, sizeof h->err, "%.250s (repair failed: %.200s; will retry)", note, why);
			} else {
				memcpy(h->err, note, sizeof note);
			}
		}
	} else {
		close(fd);
	}
	*out = c;
	return rc;
}

int history_conv_load(struct history *h, const char *id, unsigned flags, struct history_conv **out)
{
	char full[HISTORY_ID_LEN + 1];
	*out = NULL;
	if (!id)
		return fail(h, HISTORY_E_INVAL, "no conversation ID");
	int rc = resolve_id(h, id, full);
	if (rc != HISTORY_OK)
		return rc;
	return conv_load_exact(h, full, flags, out);
}

int history_append(struct history_conv *c, enum history_role role, const char *text, size_t len,
		   unsigned flags)
{
	return history_append_reasoned(c, role, text, len, NULL, 0, flags);
}

int history_append_reasoned(struct history_conv *c, enum history_role role, const char *text, size_t len,
			    const char *reasoning, size_t rlen, unsigned flags)
{
	struct history *h = c->h;
	if (c->lock_fd < 0)
		return fail(h, HISTORY_E_READONLY, "conversation %s was opened read-only", c->id);
	if (role < HISTORY_ROLE_SYSTEM || role > HISTORY_ROLE_ASSISTANT || (len && !text) || flags > 0xffff)
		return fail(h, HISTORY_E_INVAL, "bad message role or flags");
	if (len > MAX_TEXT || rlen > MAX_TEXT || len + rlen > MAX_TEXT)
		return fail(h, HISTORY_E_INVAL, "message too long (%zu bytes; at most %u)", len + rlen, MAX_TEXT);
	if (rlen && (!reasoning || role != HISTORY_ROLE_ASSISTANT))
		return fail(h, HISTORY_E_INVAL, "only an assistant reply has reasoning");
	struct rec *r = calloc(1, sizeof *r);
	char *t = malloc(len + 1);
	char *rt = rlen ? malloc(rlen + 1) : NULL;
	if (!r || !t || (rlen && !rt)) {
		free(r);
		free(t);
		free(rt);
		return fail(h, HISTORY_E_NOMEM, "out of memory");
	}
	if (len)
		memcpy(t, text, len);
	t[len] = '\0';
	if (rlen) {
		memcpy(rt, reasoning, rlen);
		rt[rlen] = '\0';
	}
	r->type = REC_MSG;
	r->time_ms = now_ms();
	r->msg = (struct history_msg){.role = role, .flags = flags, .time_ms = r->time_ms, .text = t, .len = len,
				      .reasoning = rt, .reasoning_len = rlen};
	if (conv_push(c, r) != HISTORY_OK) {
		rec_free(r);
		return fail(h, HISTORY_E_NOMEM, "out of memory");
	}
	return conv_sync(c);
}

int history_conv_flush(struct history_conv *c)
{
	if (c->lock_fd < 0)
		return HISTORY_OK;
	return conv_sync(c);
}

size_t history_conv_pending(const struct history_conv *c)
{
	return c->n_recs - c->n_durable;
}

int history_conv_set_meta(struct history_conv *c, const struct history_meta *m)
{
	if (c->lock_fd < 0)
		return fail(c->h, HISTORY_E_READONLY, "conversation %s was opened read-only", c->id);
	struct rec *r = meta_rec(m);
	if (!r)
		return fail(c->h, HISTORY_E_NOMEM, "out of memory");
	if (conv_push(c, r) != HISTORY_OK) {
		rec_free(r);
		return fail(c->h, HISTORY_E_NOMEM, "out of memory");
	}
	return conv_sync(c);
}

int history_rename(struct history_conv *c, const char *title)
{
	struct history_meta m = *c->meta;
	m.title = title;
	return history_conv_set_meta(c, &m);
}

int history_conv_close(struct history_conv *c)
{
	if (!c)
		return HISTORY_OK;
	int rc = HISTORY_OK;
	if (c->lock_fd >= 0 && history_conv_pending(c))
		rc = conv_sync(c);
	conv_free(c);
	return rc;
}

const char *history_conv_id(const struct history_conv *c)
{
	return c->id;
}

const char *history_conv_title(const struct history_conv *c)
{
	return c->title;
}

const struct history_meta *history_conv_meta(const struct history_conv *c)
{
	return c->meta;
}

int64_t history_conv_created(const struct history_conv *c)
{
	return c->recs[0]->time_ms;
}

int64_t history_conv_updated(const struct history_conv *c)
{
	int64_t t = 0;
	for (size_t i = 0; i < c->n_recs; i++)
		if (c->recs[i]->time_ms > t)
			t = c->recs[i]->time_ms;
	return t;
}

size_t history_conv_count(const struct history_conv *c)
{
	return c->n_msgs;
}

size_t history_conv_count_current(const struct history_conv *c)
{
	return c->n_msgs - c->n_replaced;
}

const struct history_msg *history_conv_msg(const struct history_conv *c, size_t i)
{
	return i < c->n_msgs ? c->msgs[i] : NULL;
}

/* ---- listing, search, removal ------------------------------------------- */

static int entry_cmp(const void *a, const void *b)
{
	const struct history_entry *x = a, *y = b;
	bool bx = x->status < 0, by = y->status < 0;
	if (bx != by)
		return bx ? 1 : -1;
	if (x->updated_ms != y->updated_ms)
		return x->updated_ms > y->updated_ms ? -1 : 1;
	return strcmp(x->id, y->id);
}

int history_conv_list(struct history *h, struct history_entry **out, size_t *count)
{
	*out = NULL;
	*count = 0;
	DIR *d = opendir(h->hdir);
	if (!d)
		return fail(h, HISTORY_E_IO, "%s: %s", h->hdir, strerror(errno));
	struct history_entry *v = NULL;
	size_t n = 0, cap = 0;
	int rc = HISTORY_OK;
	struct dirent *e;
	char saved[sizeof h->err];
	memcpy(saved, h->err, sizeof saved);
	while ((e = readdir(d))) {
		char id[HISTORY_ID_LEN + 1];
		if (strlen(e->d_name) != HISTORY_ID_LEN + 4 || strcmp(e->d_name + HISTORY_ID_LEN, ".tch") != 0)
			continue;
		memcpy(id, e->d_name, HISTORY_ID_LEN);
		id[HISTORY_ID_LEN] = '\0';
		if (!id_valid(id))
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct history_entry *nv = realloc(v, nc * sizeof *nv);
			if (!nv) {
				rc = fail(h, HISTORY_E_NOMEM, "out of memory");
				break;
			}
			v = nv;
			cap = nc;
		}
		struct history_entry *x = &v[n++];
		memset(x, 0, sizeof *x);
		memcpy(x->id, id, sizeof id);
		struct history_conv *c;
		x->status = conv_load_exact(h, id, HISTORY_LOAD_SALVAGE, &c);
		if (x->status == HISTORY_E_NOTFOUND) { /* removed meanwhile */
			n--;
			continue;
		}
		if (x->status != HISTORY_OK)
			x->error = strdup(h->err);
		if (x->status >= 0) {
			x->title = strdup(history_conv_title(c));
			x->model = strdup(c->meta->model ? c->meta->model : "");
			x->created_ms = history_conv_created(c);
			x->updated_ms = history_conv_updated(c);
			x->n_messages = history_conv_count_current(c);
			conv_free(c);
		} else {
			x->title = strdup("");
			x->model = strdup("");
		}
		if (!x->title || !x->model || (x->status != HISTORY_OK && !x->error)) {
			rc = fail(h, HISTORY_E_NOMEM, "out of memory");
			break;
		}
	}
	closedir(d);
	if (rc != HISTORY_OK) {
		history_list_free(v, n);
		return rc;
	}
	memcpy(h->err, saved, sizeof saved);
	if (n)
		qsort(v, n, sizeof *v, entry_cmp);
	*out = v;
	*count = n;
	return HISTORY_OK;
}

void history_list_free(struct history_entry *e, size_t n)
{
	for (size_t i = 0; e && i < n; i++) {
		free(e[i].title);
		free(e[i].model);
		free(e[i].error);
	}
	free(e);
}

static bool ci_contains(const char *hay, size_t hn, const char *needle, size_t nn)
{
	if (nn == 0)
		return true;
	for (size_t i = 0; i + nn <= hn; i++) {
		size_t j = 0;
		while (j < nn && tolower((unsigned char)hay[i + j]) == tolower((unsigned char)needle[j]))
			j++;
		if (j == nn)
			return true;
	}
	return false;
}

int history_conv_search(struct history *h, const char *needle, history_match_fn fn, void *ctx)
{
	struct history_entry *v;
	size_t n;
	int rc = history_conv_list(h, &v, &n);
	if (rc != HISTORY_OK)
		return rc;
	size_t nn = strlen(needle);
	bool stop = false;
	/* what could not be searched, or only in part, is said, not skipped */
	char note[sizeof h->err];
	size_t n_bad = 0, n_damaged = 0;
	int nl = 0;
	note[0] = '\0';
	for (size_t i = 0; i < n && !stop; i++) {
		struct history_conv *c;
		int st = v[i].status < 0 ? v[i].status : conv_load_exact(h, v[i].id, HISTORY_LOAD_SALVAGE, &c);
		if (st < 0 || st == HISTORY_DAMAGED) {
			st < 0 ? n_bad++ : n_damaged++;
			if (nl >= 0 && (size_t)nl < sizeof note)
				nl += snprintf(note + nl, sizeof note - (size_t)nl, "%s%.12s (%s)", nl ? ", " : "",
					       v[i].id, st < 0 ? "unreadable" : "damaged: only its first records");
		}
		if (st < 0)
			continue;
		if (ci_contains(c->title, strlen(c->title), needle, nn))
			stop = fn(ctx, c, (size_t)-1) != 0;
		for (size_t k = 0; k < c->n_msgs && !stop; k++)
			if (ci_contains(c->msgs[k]->text, c->msgs[k]->len, needle, nn))
				stop = fn(ctx, c, k) != 0;
		conv_free(c);
	}
	history_list_free(v, n);
	h->err[0] = '\0';
	if (n_bad || n_damaged)
		snprintf(h->err, sizeof h->err, "not searched in full: %.400s%s", note,
			 nl < 0 || (size_t)nl >= sizeof note ? ", ..." : "");
	return HISTORY_OK;
}

int history_repair(struct history *h, const char *id)
{
	struct history_conv *c;
	int rc = history_conv_load(h, id, HISTORY_LOAD_WRITE | HISTORY_LOAD_SALVAGE, &c);
	if (rc < 0)
		return rc;
	bool done = !c->needs_rewrite;
	char note[sizeof h->err], cid[HISTORY_ID_LEN + 1];
	memcpy(note, h->err, sizeof note);
	memcpy(cid, c->id, sizeof cid);
	int rc2 = history_conv_close(c);
	if (!done || rc2 != HISTORY_OK)
		return fail(h, HISTORY_E_IO, "%.400s", note);
	if (rc == HISTORY_OK)
		return fail(h, HISTORY_OK, "%s: intact; nothing to repair", cid);
	memcpy(h->err, note, sizeof note);
	return rc;
}

int history_resolve_id(struct history *h, const char *id, char full[HISTORY_ID_LEN + 1])
{
	if (!id)
		return fail(h, HISTORY_E_INVAL, "no conversation ID");
	return resolve_id(h, id, full);
}

int history_delete(struct history *h, const char *id)
{
	char full[HISTORY_ID_LEN + 1];
	int rc = resolve_id(h, id, full);
	if (rc != HISTORY_OK)
		return rc;
	struct history_conv *c = conv_new(h, full);
	if (!c)
		return fail(h, HISTORY_E_NOMEM, "out of memory");
	rc = conv_lock(c);
	if (rc == HISTORY_OK && unlink(c->path) != 0)
		rc = fail(h, errno == ENOENT ? HISTORY_E_NOTFOUND : HISTORY_E_IO, "cannot remove %s: %s", c->path,
			  strerror(errno));
	if (rc == HISTORY_OK) {
		unlink(c->lockpath);
		rc = histio_fsync_dir(&h->io, h->hdir, h->err, sizeof h->err);
	}
	conv_free(c);
	return rc;
}
