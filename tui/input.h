/*
 * input.h - the input line: GNU readline driven through its callback
 * interface and drawn by us into a curses window.
 *
 * readline never touches the terminal here: its terminal preparation is
 * replaced by no-ops, its output stream is /dev/null, its redisplay only
 * marks the line dirty, and its keys come from a queue the main loop fills
 * (curses key codes are turned back into the escape sequences readline has
 * bindings for).  So emacs keys, ~/.inputrc, history (in memory only) and
 * incremental search all work while curses owns the screen.
 *
 * Multi-line input: Alt-Enter and Ctrl-J insert a newline, Enter sends.
 * Bracketed paste is inserted literally (input_insert()).  Ctrl-X Ctrl-E
 * opens $VISUAL/$EDITOR on a private temporary file (in $XDG_RUNTIME_DIR
 * when set, else /dev/shm: memory, not disk; 0600, removed at once after
 * reading; /tmp only when neither exists).
 *
 * readline is one per process, so this module is too: its state is the UI
 * root's, reached from readline's callbacks through one static pointer.
 * UI thread only.
 */
#ifndef TTYCHAT_TUI_INPUT_H
#define TTYCHAT_TUI_INPUT_H

#include <curses.h>
#include <stdbool.h>
#include <stddef.h>

struct input_hooks {
	/* A line was entered (malloc'd, the callee frees it); NULL on Ctrl-D
	 * at an empty line. */
	void (*on_line)(void *ctx, char *line);
	/* Curses must step aside (SUSPEND true) or come back (false), around
	 * running the editor. */
	void (*on_suspend)(void *ctx, bool suspend);
	void *ctx;
};

/* Sets readline up (call before initscr: readline reads terminfo too).
 * Returns 0 or -1. */
int input_init(const struct input_hooks *h);
void input_done(void);

/* Feeds the bytes of one key (a byte, or an escape sequence) to readline. */
void input_feed(const char *bytes, size_t n);
/* Translates a curses key code (KEY_LEFT ...) to the bytes readline
 * expects; returns the count (0 when the key means nothing to readline). */
size_t input_key_bytes(int key, char *buf, size_t n);
/* Inserts text literally at the cursor (pasted text). */
void input_insert(const char *s, size_t n);
/* Replaces the whole line, cursor at the end. */
void input_set(const char *text);
bool input_empty(void);
/* True while readline runs an incremental search (Esc belongs to it). */
bool input_searching(void);
/* True once after readline changed the line or the prompt. */
bool input_take_dirty(void);

/* Rows needed to show the line at WIDTH columns (>= 1). */
int input_rows(int width, unsigned text_flags);
/* Draws the prompt and line into W and leaves W's cursor at the point. */
void input_draw(WINDOW *w, unsigned text_flags, unsigned long prompt_attr, unsigned long text_attr,
		unsigned long ctrl_attr);

#endif
