/*
 * tty.h - the terminal under curses: taking it over and giving it back on
 * every way out, signals turned into bytes on a self-pipe, keys as the
 * main loop wants them, suspend and resume.
 *
 * Signals: SIGWINCH, SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGTSTP and SIGCONT
 * write their number as one byte to the pipe given to tty_open(); the
 * loop reads them there.  A fatal signal (SEGV, BUS, FPE, ILL, ABRT)
 * restores the saved termios, writes the precomputed reset sequence
 * (keypad off, attributes off, cursor on, bracketed paste off, main
 * screen) and re-raises.  SIGPIPE is ignored.
 *
 * Keys: tty_key() returns curses key codes and bytes, with three
 * differences: a bracketed paste comes back whole as TTY_KEY_PASTE (its
 * bytes in t->paste), Alt-X (Esc then X) comes back as TTY_ALT | X, and
 * an escape sequence curses does not know (a terminal that differs from
 * its TERM) is swallowed rather than typed.  A lone Esc is 27.
 *
 * One terminal per process (signal handlers are process-wide).  UI thread
 * only; tty_open() after input_init() (readline reads terminfo too).
 */
#ifndef TTYCHAT_TUI_TTY_H
#define TTYCHAT_TUI_TTY_H

#include <curses.h>
#include <stdbool.h>
#include <stddef.h>

#define TTY_KEY_PASTE (KEY_MAX + 3) /* a bracketed paste ended: t->paste */
#define TTY_ALT (1 << 24)           /* ORed into the key that followed Esc */

struct tty {
	SCREEN *scr;
	const char *paste_on, *paste_off; /* bracketed paste mode, or NULL */
	bool pasting;                     /* inside a bracketed paste */
	char *paste;                      /* its bytes so far, or of the last one */
	size_t paste_len, paste_cap;
};

/* Makes the self-pipe (both ends non-blocking, close-on-exec): 0, or -1
 * with the reason in ERR. */
int tty_pipe(int sp[2], char *err, size_t errlen);

/* Takes the terminal (stdin, stdout) over: curses in raw mode without
 * echo, keypad and nodelay on, extra key sequences defined, bracketed
 * paste on; the signal handlers write to SIG_WR.  0, or -1 with the
 * reason in ERR and nothing changed. */
int tty_open(struct tty *t, int sig_wr, char *err, size_t errlen);
/* Gives the terminal back as it was, and the signals their defaults. */
void tty_close(struct tty *t);

/* The next key (see above), or ERR when no more wait. */
int tty_key(struct tty *t);

/* Steps aside for another program (STOP: stop the process too, as Ctrl-Z
 * does; it returns when continued), and comes back: the whole screen must
 * be drawn again after tty_resume(). */
void tty_suspend(struct tty *t, bool stop);
void tty_resume(struct tty *t);
/* After SIGWINCH: curses learns the terminal's new size. */
void tty_resize(void);

/* Puts S[0..N) on the terminal's clipboard with OSC 52 (ESC ] 52 ; c ;
 * BASE64 BEL), written straight to the terminal: call it between two
 * doupdate() calls (it moves no cursor, so curses' idea of the screen
 * stays right).  TMUX_WRAP: inside tmux whose set-clipboard is off, wrap
 * it as a DCS passthrough so that tmux hands it to the outer terminal.
 * 0, or -1 when memory runs out or the write fails. */
int tty_osc52(const char *s, size_t n, bool tmux_wrap);

#endif
