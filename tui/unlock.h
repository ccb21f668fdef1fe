/*
 * unlock.h - opening the encrypted history from the full-screen chat.
 *
 * The passphrase never comes from the command line: TTYCHAT_PASSPHRASE_FD
 * or TTYCHAT_PASSPHRASE_FILE (and TTYCHAT_NEW_PASSPHRASE_* for a new key
 * file) as src/passphrase.h reads them, else a box on the curses screen
 * with echo off.  Typed characters go straight into the library's secure
 * buffer (not through readline, which would keep them in its history).
 *
 * A new store asks whether to protect the history with a passphrase
 * (recommended; an empty one means none, after a confirmation).  A wrong
 * passphrase is said plainly and asked again (an environment source that
 * was wrong is not read twice); nothing on disk changes.  Esc goes on
 * without history, Ctrl-C (or SIGTERM/SIGHUP) quits.
 *
 * Needs curses set up (raw, noecho, keypad, nodelay) and the main loop's
 * signal self-pipe.  UI thread only.
 */
#ifndef TTYCHAT_TUI_UNLOCK_H
#define TTYCHAT_TUI_UNLOCK_H

#include <stdbool.h>
#include <stddef.h>

struct chats;

struct unlock_ui {
	int sig_fd;                 /* the self-pipe signal handlers write to */
	const unsigned long *attrs; /* theme roles */
	unsigned text_flags;
	const char *dir;            /* data directory (NULL: the default); tests */
};

enum unlock_result {
	UNLOCK_OPEN,    /* *out is the store */
	UNLOCK_OFF,     /* go on without history (why in msg) */
	UNLOCK_QUIT,    /* quit: *status is the exit status */
};

enum unlock_result unlock_history(const struct unlock_ui *ui, struct chats **out, int *status, char *msg,
				  size_t msglen);

#endif
