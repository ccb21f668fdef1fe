/*
 * chats.h - the conversations of the full-screen chat and of one-shot mode
 * (--save, --continue): the encrypted history
 * store (src/history.h), the conversation being held, the list behind F3,
 * and the KV cache snapshots that let a conversation come back without
 * being recomputed (src/kvstore.h).
 *
 * The TUI's transcript is what the user sees; this module keeps the
 * history in step with it.  Every committed message (the user's on Enter,
 * a reply when finished or stopped) is appended and made durable with
 * history_append().  A write or fsync that fails leaves the message in
 * memory (chats_pending() counts it) and it is retried by the next commit
 * or chats_flush(); nothing saved before is lost.
 *
 * Edits and regenerations.  The store is append-only, so a rewind is
 * recorded on the message that replaces what was dropped: bits 8..15 of
 * its flags (CHATS_REPLACES) hold how many of the conversation's latest
 * messages it replaces.  /regen appends the new reply replacing the old
 * one (1); /edit appends the edited message replacing the old message and
 * its reply (2).  The record keeps every version; a reader that shows the
 * conversation as it stands applies the drops, counting user and assistant
 * messages with text only (chats_load() does, so a reopened conversation
 * is exactly what the user last saw).
 *
 * A new conversation exists only in memory until its first message is
 * committed (then its file is created with the settings it is held with).
 * Its settings (model, system prompt, sampling, context) are recorded
 * again, as one META record, whenever they changed since the last commit.
 *
 * The conversation open last is remembered by ID in
 * $XDG_STATE_HOME/ttychat/last-chat (an ID only, nothing from the
 * conversation; 0600 in a 0700 directory).
 *
 * This file does not include history.h (GNU readline's <readline/history.h>
 * declares functions of the same prefix); its types are its own.
 *
 * UI thread only.  Functions return 0 on success, CHATS_UNSAVED when a
 * message was accepted but is not on disk yet, or a negative HISTORY_E_*
 * code with the message in chats_errmsg().
 */
#ifndef TTYCHAT_CHATS_H
#define TTYCHAT_CHATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chats;

#define CHATS_UNSAVED 2          /* kept in memory, retried later */
#define CHATS_ID_LEN 32

/* Message flags (stored as the history record's flags). */
#define CHATS_CANCELLED 1u       /* HISTORY_MSG_CANCELLED: a reply cut short */
#define CHATS_REPLACES_SHIFT 8   /* bits 8..15: latest messages this one replaces */
#define CHATS_REPLACES_MAX 255u

/* Error codes callers tell apart (the values of history.h). */
#define CHATS_E_PASSPHRASE (-3)
#define CHATS_E_NOTFOUND (-7)
#define CHATS_E_BUSY (-9)
#define CHATS_E_CANCELLED (-12)

enum chats_pass { CHATS_PASS_UNLOCK = 1, CHATS_PASS_NEW = 2 }; /* = enum history_pass_purpose */

/* The passphrase callback of history_open(): writes a NUL-terminated
 * passphrase into BUF (secure memory of CAP bytes) and returns 0, or -1
 * to give up. */
typedef int (*chats_pass_fn)(void *ctx, enum chats_pass why, char *buf, size_t cap);

struct chats_opts {
	const char *dir;                 /* NULL: $XDG_DATA_HOME/ttychat */
	chats_pass_fn passphrase;
	void *pass_ctx;
	bool test_fast_kdf;              /* tests only: minimal Argon2id cost */
	bool no_create;                  /* no key file yet: fail instead of making one */
	bool no_remember;                /* leave last-chat alone (one-shot mode) */
};

/* Opens the store, creating the key file if there is none (asking for a
 * new passphrase) unless o->no_create.  A wrong passphrase returns CHATS_E_PASSPHRASE and
 * changes nothing; the caller may try again. */
int chats_open(const struct chats_opts *o, struct chats **out, char *err, size_t errlen);
/* Flushes and closes the conversation, then the store. */
void chats_close(struct chats *c);
const char *chats_errmsg(const struct chats *c);
const char *chats_dir(const struct chats *c);
bool chats_has_passphrase(const struct chats *c);

/* What a conversation is held with; strings are the caller's. */
struct chats_settings {
	const char *model;          /* models.d name or file path; NULL unknown */
	const char *system_prompt;  /* NULL or "" = none */
	float temperature, top_p, min_p, repeat_penalty; /* < 0: not set */
	int top_k;                  /* < 0: not set */
	unsigned context_size;      /* 0: not set */
	/* thinking models (/think, /budget): 0 / NULL = not set */
	int think;                  /* 1 on, 2 off (enum engine_think) */
	const char *reasoning_effort;
	unsigned reasoning_budget;
};
void chats_settings_init(struct chats_settings *s);

enum chats_role { CHATS_USER = 2, CHATS_ASSISTANT = 3 };

struct chats_msg {
	enum chats_role role;
	bool cancelled;
	const char *text;           /* valid until the conversation is left */
	size_t len;
	const char *reasoning;      /* a reply's reasoning, apart; NULL (len 0) when none */
	size_t reasoning_len;
};

/* ---- the current conversation ------------------------------------------ */

/* The ID, or NULL while the conversation is new and has no file yet. */
const char *chats_id(const struct chats *c);
/* Its title (renamed, else its first line), "" when new. */
const char *chats_title(const struct chats *c);
/* Leaves the current conversation (flushing it) and starts a new one. */
int chats_new(struct chats *c);
/* Leaves the current conversation and opens ID for writing.  On failure
 * the current conversation is a new one.  Returns 0 or, as a notice, 1
 * (HISTORY_RECOVERED: a torn last record was dropped; chats_errmsg()). */
int chats_load(struct chats *c, const char *id);
/* The conversation as chats_load() read it (drops applied; commits since
 * then are not listed), and its settings (strings valid until it is left). */
size_t chats_count(const struct chats *c);
const struct chats_msg *chats_msg(const struct chats *c, size_t i);
void chats_settings_of(const struct chats *c, struct chats_settings *s);

/* Commits a message: creates the conversation on the first one, records
 * S when it changed, and carries the pending rewind.  0, CHATS_UNSAVED,
 * or an error (then the message is not in the history). */
int chats_commit(struct chats *c, const struct chats_settings *s, enum chats_role role, const char *text,
		 size_t len, bool cancelled);
/* The same for a reply with its reasoning apart (REASONING of RLEN bytes;
 * NULL or 0: none). */
int chats_commit_reasoned(struct chats *c, const struct chats_settings *s, enum chats_role role, const char *text,
			  size_t len, const char *reasoning, size_t rlen, bool cancelled);
/* The transcript now keeps only its first N_KEPT messages: the next
 * commit replaces the rest. */
void chats_rewind(struct chats *c, size_t n_kept);
/* Messages not yet on disk, and retrying them (0 when none is left). */
size_t chats_pending(const struct chats *c);
int chats_flush(struct chats *c);

/* ---- the list ------------------------------------------------------------ */

struct chats_entry {
	char id[CHATS_ID_LEN + 1];
	char *title, *model;        /* malloc'd, "" when none */
	int64_t created_ms, updated_ms;
	size_t n_messages;
	bool readable;              /* false: damaged or another key (error says) */
	char *error;                /* malloc'd or NULL */
	char *match;                /* search: the first matching text (malloc'd, one line) or NULL */
};

/* Every conversation, most recent first; with NEEDLE (not NULL or "")
 * only those whose title or messages contain it (ASCII case ignored). */
int chats_list(struct chats *c, const char *needle, struct chats_entry **out, size_t *n);
void chats_list_free(struct chats_entry *v, size_t n);

/* Renames conversation ID (NULL: the current one; "" title returns to the
 * derived one). */
int chats_rename(struct chats *c, const char *id, const char *title);
/* Removes conversation ID's file (ID: a full ID or a prefix of at least 4
 * hex digits) and its KV snapshots of every model.  Deleting the current
 * conversation makes a new one current. */
int chats_delete(struct chats *c, const char *id);

/* ---- KV cache snapshots ---------------------------------------------------- */

/* Files BLOB as conversation CONV_ID's KV cache for model MODEL_ID. */
int chats_kv_save(struct chats *c, const char *conv_id, const char *model_id, const void *blob, size_t len);
/* The snapshot of the current conversation for MODEL_ID: 0 with *BLOB
 * (malloc'd), or nonzero when there is none (damaged ones are removed). */
int chats_kv_load(struct chats *c, const char *model_id, void **blob, size_t *len);

/* ---- the last conversation ---------------------------------------------------- */

/* 0 with the remembered ID in ID (33 bytes), -1 when none. */
int chats_last_read(char id[CHATS_ID_LEN + 1]);
/* Remembers ID ("" forgets). */
int chats_last_write(const char *id);

#endif
