/*
 * history.h - encrypted chat history: the store, conversations, and an
 * encrypted-blob helper for other data under the data directory.
 *
 * Layout (every directory 0700, every file 0600, whatever the umask):
 *
 *   DIR/                 $XDG_DATA_HOME/ttychat (default ~/.local/share/ttychat)
 *     key                the key file: a random 256-bit master key wrapped
 *                        with a passphrase (Argon2id) or, if the user chose
 *                        none, stored unprotected
 *     history/ID.tch     one append-only log per conversation
 *     history/ID.lock    empty; flock()ed while a writer has ID open
 *     kv/ ...            blobs written by history_blob_* (the KV caches,
 *                        kv/<conversation hash>/<model hash>.kv: kvstore.h)
 *
 * docs/history-format.md describes the bytes precisely.  Every record is
 * encrypted and authenticated on its own and chained to the one before it;
 * a torn last record left by a crash is dropped with a warning, any other
 * damage (a flipped byte, a record removed, added, moved, copied from
 * another conversation, or the file cut at a record boundary) is an error
 * and no text from a damaged record is ever returned.
 *
 * Durability: history_append() returns 0 only after the record and the
 * commit slot naming it are on stable storage (fsync).  When a write or an
 * fsync fails the message stays in memory (history_conv_pending() counts
 * it), the call reports HISTORY_E_IO or HISTORY_E_NOSPACE, and the next
 * append or history_conv_flush() retries by rewriting the whole
 * conversation to a fresh file that replaces the old one atomically.  What
 * was saved before the failure is never lost.
 *
 * Threads: a store and all its conversations belong to one thread at a
 * time (the UI thread).  The history_blob_* calls are the exception: they
 * only read the store's keys, report into the caller's buffer, and may run
 * on any thread concurrently with everything but history_close().
 *
 * Errors: functions return HISTORY_OK (0), a positive notice, or a negative
 * HISTORY_E_* code; the one-line message of the last failure (or notice) is
 * history_errmsg().  Library code never prints and never exits.
 *
 * Ownership: the store owns its conversations' memory only through the
 * conversation handles; close conversations before the store.  Strings
 * returned by accessors live until the handle that returned them is closed
 * (or, for history_conv_msg(), forever for that handle).
 */
#ifndef TTYCHAT_HISTORY_H
#define TTYCHAT_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum history_status {
	HISTORY_OK = 0,
	/* notice from history_conv_load(): loaded, but something had to be
	 * recovered (a torn last record dropped after a crash); the message
	 * says what.  Everything returned is authentic. */
	HISTORY_RECOVERED = 1,
	/* notice from history_conv_load() with HISTORY_LOAD_SALVAGE: the file
	 * is damaged after its first records; those that authenticate (the
	 * chain proves them complete up to there) were loaded, the rest is
	 * unreadable.  The message says where and how many. */
	HISTORY_DAMAGED = 2,

	HISTORY_E_IO = -1,         /* read/write/fsync/rename failed (errno in message) */
	HISTORY_E_NOSPACE = -2,    /* ENOSPC or EDQUOT: the disk is full */
	HISTORY_E_PASSPHRASE = -3, /* wrong passphrase (or damaged key file); nothing was changed */
	HISTORY_E_NOKEY = -4,      /* no key file yet (open without HISTORY_OPEN_CREATE) */
	HISTORY_E_CORRUPT = -5,    /* tampered or damaged file; nothing from it was returned */
	HISTORY_E_WRONGKEY = -6,   /* the file was written with a different key file */
	HISTORY_E_NOTFOUND = -7,   /* no conversation with that ID */
	HISTORY_E_AMBIGUOUS = -8,  /* an ID prefix that matches several conversations */
	HISTORY_E_BUSY = -9,       /* the conversation is open for writing in another process */
	HISTORY_E_NOMEM = -10,
	HISTORY_E_INVAL = -11,     /* bad argument (message says which) */
	HISTORY_E_CANCELLED = -12, /* the passphrase callback gave up */
	HISTORY_E_READONLY = -13,  /* append/rename on a conversation loaded read-only */
	HISTORY_E_KEYLOST = -14,   /* no key file, but conversations exist: never a new key then */
};

/* ---- injectable I/O (tests) ------------------------------------------- */

/* Every write that must reach the disk goes through these (NULL members
 * and a NULL table mean the real system calls).  Tests fail them on
 * purpose (ENOSPC, EIO, short writes, a SIGKILL in the middle).  Each
 * function returns what the system call would and sets errno. */
struct history_io {
	void *ctx;
	ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t n, off_t off);
	int (*fsync)(void *ctx, int fd); /* files and directories */
	int (*rename)(void *ctx, const char *from, const char *to);
};

/* ---- the store ---------------------------------------------------------- */

struct history;

/* Why the library asks for a passphrase. */
enum history_pass_purpose {
	HISTORY_PASS_UNLOCK = 1, /* the key file is protected: unlock it */
	HISTORY_PASS_NEW = 2,    /* a key file is being created: choose one ("" = none) */
};

/* Writes a NUL-terminated passphrase of at most CAP-1 bytes into BUF
 * (sodium_malloc'd; the library wipes and frees it).  Returns 0, or -1 to
 * give up: history_open() then fails with HISTORY_E_CANCELLED (the
 * callback keeps its own reason in CTX).  A wrong passphrase is not asked
 * again: history_open() fails and the caller may call it again. */
typedef int (*history_pass_fn)(void *ctx, enum history_pass_purpose why, char *buf, size_t cap);

#define HISTORY_OPEN_CREATE 1u /* create the key file (asking HISTORY_PASS_NEW) if absent */

struct history_opts {
	const char *dir;          /* data directory; NULL = $XDG_DATA_HOME/ttychat */
	unsigned flags;           /* HISTORY_OPEN_* */
	history_pass_fn passphrase; /* may be NULL if no passphrase is ever needed */
	void *pass_ctx;
	const struct history_io *io; /* NULL = real system calls; copied */
	/* Argon2id cost for a key file created or re-wrapped through this
	 * handle.  0 = crypto_pwhash_*_MODERATE; only tests set these (to the
	 * minimum, for speed).  Reading always uses the file's own parameters,
	 * refused above HISTORY_KDF_MAX_*. */
	unsigned long long test_kdf_opslimit, test_kdf_memlimit;
};

/* Upper bounds on Argon2id parameters read from a key file. */
#define HISTORY_KDF_MAX_OPSLIMIT 16ULL
#define HISTORY_KDF_MAX_MEMLIMIT (1ULL << 30)

/* The default data directory into BUF: 0, or -1 when neither
 * $XDG_DATA_HOME nor $HOME gives one or it does not fit. */
int history_default_dir(char *buf, size_t n);

/* Opens the store: creates DIR and DIR/history (0700) if missing, reads the
 * key file and unlocks it (asking the callback for the passphrase if the
 * file has one).  On failure *OUT is NULL and ERR holds a one-line message;
 * a wrong passphrase changes nothing on disk. */
int history_open(const struct history_opts *o, struct history **out, char *err, size_t errlen);
void history_close(struct history *h);

/* The message of the last failure or notice on H or its conversations. */
const char *history_errmsg(const struct history *h);
/* 1 if the key file is protected by a passphrase, else 0. */
int history_has_passphrase(const struct history *h);
/* The data directory in use. */
const char *history_dir(const struct history *h);

/* Re-wraps the master key with a new passphrase (LEN bytes; LEN 0 removes
 * the passphrase) and atomically replaces the key file.  History is not
 * re-encrypted.  Uses MODERATE Argon2id unless the handle was opened with
 * test_kdf_* set. */
int history_set_passphrase(struct history *h, const char *pass, size_t len);

/* ---- conversations ---------------------------------------------------- */

struct history_conv;

#define HISTORY_ID_LEN 32 /* lowercase hex characters of a conversation ID */

enum history_role {
	HISTORY_ROLE_SYSTEM = 1,
	HISTORY_ROLE_USER = 2,
	HISTORY_ROLE_ASSISTANT = 3,
};

#define HISTORY_MSG_CANCELLED 1u /* an assistant reply cut short (Esc) */

/* Rewinds (the TUI's /regen and /edit).  The log is append-only, so a
 * message that takes the place of earlier ones says so itself: bits 8..15
 * of its flags hold how many of the conversation's latest *standing*
 * messages it replaces.  Only user and assistant messages with text
 * (len > 0) take part: they are the ones counted, and only their count is
 * applied (a system or empty message is never replaced and its bits 8..15
 * mean nothing).  A count larger than the messages standing replaces them
 * all.  /regen writes the new reply with HISTORY_MSG_REPLACES(1) (the old
 * reply); /edit writes the edited message with HISTORY_MSG_REPLACES(2)
 * (the old message and its reply).  Every version stays in the file;
 * history_msg.replaced tells a reader which ones the conversation no
 * longer holds.  docs/history-format.md gives the rule precisely. */
#define HISTORY_MSG_REPLACES_SHIFT 8
#define HISTORY_MSG_REPLACES_MAX 255u
#define HISTORY_MSG_REPLACES(n) (((unsigned)(n) & HISTORY_MSG_REPLACES_MAX) << HISTORY_MSG_REPLACES_SHIFT)

/* How many latest standing messages a message with FLAGS replaces. */
static inline unsigned history_msg_replaces(unsigned flags)
{
	return (flags >> HISTORY_MSG_REPLACES_SHIFT) & HISTORY_MSG_REPLACES_MAX;
}

struct history_msg {
	enum history_role role;
	unsigned flags;  /* HISTORY_MSG_* and the replace count, as stored */
	int64_t time_ms; /* Unix time in milliseconds when committed */
	const char *text; /* NUL-terminated (may also contain NULs; see len) */
	size_t len;
	/* an assistant reply's reasoning (a thinking model's), kept apart from
	 * its text; NULL (len 0) when none.  Readers that predate it skip it. */
	const char *reasoning;
	size_t reasoning_len;
	/* set (by the library, never stored) when a later message replaced
	 * this one: the conversation as it stands, which is what the TUI
	 * shows and what a continued conversation sends to the model, skips
	 * it; readers that list every version mark it */
	bool replaced;
};

/* What a conversation was held with.  Strings are copied by the library. */
struct history_meta {
	const char *model;         /* model name or path; NULL = unknown */
	const char *system_prompt; /* NULL = none */
	const char *title;         /* NULL = derived from the first user message that stands */
	float temperature, top_p, min_p, repeat_penalty; /* < 0: not set */
	int top_k;                 /* < 0: not set */
	unsigned context_size;     /* 0: not set */
	/* thinking models (/think, /budget): 0 = not set */
	int think;                 /* 1 on, 2 off (enum engine_think) */
	const char *reasoning_effort; /* NULL = not set */
	unsigned reasoning_budget; /* tokens */
};

/* Fills M with "nothing set". */
void history_meta_init(struct history_meta *m);

/* Creates a new, empty conversation file (atomically: it appears complete
 * or not at all) and returns it open for writing. */
int history_conv_create(struct history *h, const struct history_meta *m, struct history_conv **out);

#define HISTORY_LOAD_WRITE 1u /* open for appending (takes the writer lock) */
#define HISTORY_LOAD_SALVAGE 2u /* a damaged file gives its good records (HISTORY_DAMAGED) */

/* Loads conversation ID (full ID or an unambiguous prefix of at least 4
 * characters), verifying every record.  Returns HISTORY_OK,
 * HISTORY_RECOVERED (a torn tail was dropped; message says so; with
 * HISTORY_LOAD_WRITE the file is repaired at once or, if that fails, at
 * the next append) or an error with *OUT NULL.  Without HISTORY_LOAD_WRITE
 * the handle is read-only, and a tail being written right now by another
 * process is skipped silently. */
int history_conv_load(struct history *h, const char *id, unsigned flags, struct history_conv **out);
/* Without HISTORY_LOAD_SALVAGE a damaged file is HISTORY_E_CORRUPT (the
 * message says how many records `ttychat history repair` would keep).
 * With it, HISTORY_DAMAGED: the handle holds the records before the
 * damage (read-only; with HISTORY_LOAD_WRITE, as history_repair does, the
 * damaged file is first copied to ID.tch.damaged and then rewritten). */

/* Repairs conversation ID: a damaged file is copied beside itself
 * (ID.tch.damaged, .damaged.1, ...) and rewritten with the records that
 * authenticate before the damage; a torn tail is dropped.  HISTORY_OK
 * (nothing to repair; message says so), HISTORY_DAMAGED (repaired: the
 * message says what was kept and where the copy is), HISTORY_RECOVERED,
 * or an error (nothing was changed but perhaps a backup copy written). */
int history_repair(struct history *h, const char *id);

/* Appends one message and makes it durable.  0: saved.  HISTORY_E_IO /
 * HISTORY_E_NOSPACE: not saved yet, kept in memory (it is already visible
 * through history_conv_msg) and retried by the next append or flush. */
int history_append(struct history_conv *c, enum history_role role, const char *text, size_t len,
		   unsigned flags);
/* The same, for an assistant reply with its reasoning apart (REASONING of
 * RLEN bytes; NULL or 0: none). */
int history_append_reasoned(struct history_conv *c, enum history_role role, const char *text, size_t len,
			    const char *reasoning, size_t rlen, unsigned flags);
/* Retries whatever is pending.  0 when nothing is pending afterwards. */
int history_conv_flush(struct history_conv *c);
/* Records in memory that are not yet known to be on disk. */
size_t history_conv_pending(const struct history_conv *c);

/* Sets the title ("" or NULL returns to the derived title). */
int history_rename(struct history_conv *c, const char *title);
/* Replaces model, system prompt, sampling and title (as one record). */
int history_conv_set_meta(struct history_conv *c, const struct history_meta *m);

/* Closes the handle (releasing the writer lock).  Returns 0, or the error
 * of a last flush attempt if records were still pending (they are lost
 * with the handle: callers that care call history_conv_flush first). */
int history_conv_close(struct history_conv *c);

const char *history_conv_id(const struct history_conv *c);
/* The title: the renamed one, else the first line of the first user
 * message that stands (not replaced; at most 100 bytes, cut at a
 * character boundary), else "". */
const char *history_conv_title(const struct history_conv *c);
const struct history_meta *history_conv_meta(const struct history_conv *c);
int64_t history_conv_created(const struct history_conv *c);
int64_t history_conv_updated(const struct history_conv *c);
/* Every message in the file, replaced versions included. */
size_t history_conv_count(const struct history_conv *c);
/* The messages of the conversation as it stands (those not replaced). */
size_t history_conv_count_current(const struct history_conv *c);
/* Message I (0-based, in file order, replaced versions included: check
 * ->replaced); NULL past the end.  The pointer and the text stay valid
 * until the conversation is closed (->replaced may change when a later
 * append replaces the message). */
const struct history_msg *history_conv_msg(const struct history_conv *c, size_t i);

/* ---- listing, search, removal ----------------------------------------- */

struct history_entry {
	char id[HISTORY_ID_LEN + 1];
	char *title;       /* malloc'd; "" when none */
	char *model;       /* malloc'd; "" when unknown */
	int64_t created_ms, updated_ms;
	size_t n_messages; /* as it stands (history_conv_count_current) */
	int status;        /* HISTORY_OK, HISTORY_RECOVERED, HISTORY_DAMAGED (counts what
			      was readable) or the HISTORY_E_* that made it unreadable */
	char *error;       /* malloc'd message when status != HISTORY_OK, else NULL */
};

/* Every conversation, most recently updated first (unreadable ones last).
 * Decrypts each file in memory.  Free with history_list_free. */
int history_conv_list(struct history *h, struct history_entry **out, size_t *n);
void history_list_free(struct history_entry *e, size_t n);

/* Calls FN for every message (and title) containing NEEDLE (ASCII case is
 * ignored), conversation by conversation, most recent first; MSG_INDEX is
 * (size_t)-1 for a title match.  Replaced versions are searched too: FN
 * sees history_conv_msg(c, MSG_INDEX)->replaced and decides (the TUI and
 * `ttychat history search` skip them unless asked for every version).
 * FN returns nonzero to stop.  A damaged conversation is searched in the
 * records before the damage; unreadable ones are skipped.  Returns 0 or an
 * error; after 0, history_errmsg() is "" or a notice naming those not
 * searched in full. */
typedef int (*history_match_fn)(void *ctx, const struct history_conv *c, size_t msg_index);
int history_conv_search(struct history *h, const char *needle, history_match_fn fn, void *ctx);

/* Removes the conversation's file (and its lock file); fails with
 * HISTORY_E_BUSY while another process has it open for writing.  Blobs
 * filed for it (KV snapshots) are the caller's: see kvstore_remove_conv. */
int history_delete(struct history *h, const char *id);
/* The full ID of ID (a full ID or an unambiguous prefix of at least 4 hex
 * digits) into FULL: HISTORY_OK, HISTORY_E_NOTFOUND, HISTORY_E_AMBIGUOUS
 * or HISTORY_E_INVAL (message in history_errmsg). */
int history_resolve_id(struct history *h, const char *id, char full[HISTORY_ID_LEN + 1]);

/* ---- encrypted blobs (KV snapshots and the like) ---------------------- */

/* NAME is a relative path under the data directory such as "kv/ab12.kv":
 * components of [A-Za-z0-9._-], no "..", no leading "/" or ".".  Missing
 * directories are created 0700.  A blob is encrypted with a key derived
 * from the master key, bound to its NAME (a file renamed or copied to
 * another name does not decrypt) and written atomically (temporary file,
 * fsync, rename, directory fsync).  Errors go to ERR (ERRLEN bytes). */
int history_blob_save(struct history *h, const char *name, const void *data, size_t len, char *err,
		      size_t errlen);
/* Reads a whole blob into *DATA (malloc'd, caller frees) of *LEN bytes.
 * HISTORY_E_NOTFOUND when absent, HISTORY_E_CORRUPT when damaged,
 * truncated or written under another name or key. */
int history_blob_load(struct history *h, const char *name, void **data, size_t *len, char *err,
		      size_t errlen);
int history_blob_remove(struct history *h, const char *name, char *err, size_t errlen);

/* Streaming versions for blobs too large to hold twice. */
struct history_blob_writer;
int history_blob_begin(struct history *h, const char *name, struct history_blob_writer **out, char *err,
		       size_t errlen);
int history_blob_write(struct history_blob_writer *w, const void *data, size_t len, char *err,
		       size_t errlen);
/* Finishes, makes durable and renames into place; frees W either way. */
int history_blob_commit(struct history_blob_writer *w, char *err, size_t errlen);
void history_blob_abort(struct history_blob_writer *w);

struct history_blob_reader;
int history_blob_open(struct history *h, const char *name, struct history_blob_reader **out, char *err,
		      size_t errlen);
/* Reads up to CAP bytes into BUF; *GOT = 0 means the verified end.  Data
 * handed out before the end is authentic but the blob may still turn out
 * truncated: use it only once the end was reached without error. */
int history_blob_read(struct history_blob_reader *r, void *buf, size_t cap, size_t *got, char *err,
		      size_t errlen);
void history_blob_close(struct history_blob_reader *r);

/* A file name for secret-derived identities (e.g. model identity + token
 * prefix): 64 hex characters of a keyed BLAKE2b of ID, so that names on
 * disk reveal nothing about what they cover.  OUT has 65 bytes. */
void history_blob_name(const struct history *h, const void *id, size_t len, char out[65]);

/* A static string for a status code. */
const char *history_strstatus(int status);

#endif
