/*
 * tui.h - the full-screen chat: the one entry point of tui/.
 *
 * tui_run() takes over the terminal (stdin and stdout must be ttys), starts
 * an engine, loads the model and runs the chat until the user quits or a
 * SIGTERM/SIGHUP arrives; the terminal is restored on every way out,
 * including fatal signals.  It returns a process exit status: 0 when the
 * user quit, EXIT_FAIL (1) when the screen or the engine could not be set
 * up (a message is printed on stderr), 128 + N after signal N.
 *
 * Conversations are kept in the encrypted history (src/chats.h): the store
 * is unlocked at start (tui/unlock.h: the passphrase from the environment
 * or typed into a box, never from the command line), the conversation held
 * last is reopened with its model (unless -m names one) and its KV cache
 * snapshot, every committed message is saved at once, and F3 lists the
 * others.  When the store cannot be opened the chat works without it and
 * says so.  The hooks below are called too, on the UI thread, where a
 * message is committed (the user pressed Enter; a reply finished or was
 * stopped) and where the conversation is rewound (/regen, /edit) or left
 * (/new, /clear, another one opened).
 *
 * Test hooks (for tests only, documented in ttychat(1) as such):
 * TTYCHAT_TEST_INJECT, when set, holds C-escaped bytes ("\e[2J\x07") that
 * the first reply begins with, exactly as if the model had produced them;
 * TTYCHAT_TEST_HISTORY_FULL names a file whose existence makes every
 * history write fail with ENOSPC (a full disk).
 */
#ifndef TTYCHAT_TUI_H
#define TTYCHAT_TUI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "session.h"

struct tui_opts {
	struct session_flags flags;      /* the command line's settings: the strongest source of
					    src/session.h (the model, sampling, context, KV type,
					    device, GPU layers, threads, system prompt) */
	int32_t max_tokens;              /* <= 0: no limit */
	const char *theme;               /* --theme, or NULL (settings.json "theme", else default/mono) */

	/* history plug-in points; any may be NULL */
	void (*on_commit)(void *ctx, uint64_t conv, const char *role, const char *text, bool partial);
	void (*on_rewind)(void *ctx, uint64_t conv, size_t n_messages_kept);
	void *hook_ctx;
};

int tui_run(const struct tui_opts *o);

#endif
