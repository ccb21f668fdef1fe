/*
 * passphrase.h - how the command-line front ends obtain the history
 * passphrase (a ready-made history_pass_fn).  Never from the command line:
 *
 *   unlocking:  $TTYCHAT_PASSPHRASE_FD (a file descriptor number; one line
 *               is read from it), else $TTYCHAT_PASSPHRASE_FILE (its first
 *               line), else a prompt on /dev/tty with echo off;
 *   a new one:  $TTYCHAT_NEW_PASSPHRASE_FD / _FILE, else (when creating the
 *               key, not for `history passwd`) the unlocking sources, else
 *               the terminal, asked twice.  An empty new passphrase means
 *               "no passphrase"; on a terminal the user must confirm it.
 *
 * A trailing "\n" or "\r\n" is not part of the passphrase.  The text goes
 * straight into the library's sodium_malloc buffer (no stdio buffering).
 * Front-end code: it talks to /dev/tty, so the TUI uses its own callback.
 */
#ifndef TTYCHAT_PASSPHRASE_H
#define TTYCHAT_PASSPHRASE_H

#include <stddef.h>

#include "history.h"

struct passphrase_src {
	int for_passwd;  /* new passphrase: do not fall back to the unlock sources */
	int allow_empty; /* new passphrase: "" means none without asking */
	char err[256];   /* why the last call failed */
};

void passphrase_src_init(struct passphrase_src *s);
/* A history_pass_fn; CTX is a struct passphrase_src. */
int passphrase_get(void *ctx, enum history_pass_purpose why, char *buf, size_t cap);

#endif
