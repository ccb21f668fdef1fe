/*
 * oneshot_hist.h - `--save` and `--continue ID` for the one-shot mode: the
 * bridge between oneshot.c and the encrypted history (history.h).
 *
 * It lives apart from oneshot.c because history.h and GNU readline's
 * <readline/history.h> (the line chat) declare functions of the same names
 * (history_conv_list, history_conv_search) and cannot share a translation unit.
 *
 * The store is unlocked with the passphrase from TTYCHAT_PASSPHRASE_FD /
 * _FILE, else from the terminal, except with NO_TTY set (CI): then a
 * missing environment source is an error, never a prompt.
 *
 * Functions return 0 or a process exit status (EXIT_HISTORY for every
 * history failure: no key, wrong passphrase, locked, not found, cannot
 * write; EXIT_FAIL for out of memory) with a one-line message in ERR.
 * One thread; the handle owns everything it returns until closed.
 */
#ifndef TTYCHAT_ONESHOT_HIST_H
#define TTYCHAT_ONESHOT_HIST_H

#include <stdbool.h>
#include <stddef.h>

struct oneshot_hist;

/* What a conversation was held with (strings owned by the handle or the
 * caller; negative / 0 / NULL = not set). */
struct oneshot_settings {
	const char *model;
	const char *system_prompt;
	float temperature, top_p, min_p, repeat_penalty;
	int top_k;
	unsigned context_size;
};

/* Opens the store (creating the key file when CREATE) and, when
 * CONTINUE_ID is not NULL, that conversation for appending. */
int oneshot_hist_open(const char *continue_id, bool create, bool no_tty, struct oneshot_hist **out, char *err,
		      size_t errlen);
/* The continued conversation's settings (all unset for a new one). */
void oneshot_hist_settings(const struct oneshot_hist *h, struct oneshot_settings *s);
/* Its messages as they stand, as the TUI shows them: the rewinds of /regen
 * and /edit applied (replaced versions left out), system messages and
 * empty texts left out.  Role "user" or "assistant", and the text. */
size_t oneshot_hist_count(const struct oneshot_hist *h);
void oneshot_hist_msg(const struct oneshot_hist *h, size_t i, const char **role, const char **text);
/* Commits the user's message: creates the conversation with S (or, when
 * continuing, records S if the model or system prompt changed). */
int oneshot_hist_user(struct oneshot_hist *h, const struct oneshot_settings *s, const char *text, char *err,
		      size_t errlen);
/* Commits the reply (CANCELLED: cut short by a signal).  An empty reply is
 * not saved. */
int oneshot_hist_reply(struct oneshot_hist *h, const char *text, size_t len, bool cancelled, char *err,
		       size_t errlen);
/* The conversation's KV cache snapshot for the model MODEL_ID (engine
 * model_id): 0 with *BLOB (malloc'd, the caller frees it) when there is
 * one, nonzero when not (it is only a cache; nothing to report). */
int oneshot_hist_kv_load(struct oneshot_hist *h, const char *model_id, void **blob, size_t *len);
/* Files the snapshot (encrypted, within the kv/ size budget). */
int oneshot_hist_kv_save(struct oneshot_hist *h, const char *model_id, const void *blob, size_t len, char *err,
			 size_t errlen);
/* The conversation ID, or NULL before oneshot_hist_user() of a new one. */
const char *oneshot_hist_id(const struct oneshot_hist *h);
void oneshot_hist_close(struct oneshot_hist *h);

#endif
