/*
 * unlock.c - the history passphrase from the environment or from a box on
 * the curses screen (see unlock.h).
 *
 * history_open() calls back for a passphrase; the callback first tries the
 * environment sources through src/passphrase.c (only when one is set:
 * that module's own fallback is a prompt on /dev/tty, which must not run
 * under curses), then asks on the screen.  The box reads keys itself, one
 * poll() over the terminal and the signal self-pipe, and writes each byte
 * into the secure buffer it was given; nothing typed is drawn.  A resize
 * redraws the box; SIGTERM, SIGHUP, SIGINT and SIGQUIT end the prompt and
 * the program.
 */
#include "config.h"

#include "unlock.h"

#include <curses.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <sodium.h>

#include "chats.h"
#include "history.h"
#include "passphrase.h"
#include "text.h"
#include "theme.h"
#include "transcript.h"

enum outcome { GO, SKIP, QUIT };

struct ctx {
	const struct unlock_ui *ui;
	struct passphrase_src src;
	bool env_failed;   /* the environment's passphrase was wrong: ask here */
	bool used_env;     /* the last one came from the environment */
	char note[256];    /* why we ask again */
	enum outcome outcome;
	int status;        /* exit status when QUIT */
	char err[300];     /* why an environment source failed */
	char dir[4096];
};

/* What the box shows. */
struct box {
	const char *title;
	const char *body;
	const char *note;   /* in the "bad" colour, or NULL */
	const char *prompt; /* the field's label, or NULL */
	const char *hints;
};

static bool env_set(const char *name)
{
	const char *v = getenv(name);
	return v && v[0];
}

static bool env_has(const char *prefix)
{
	char n[64];
	snprintf(n, sizeof n, "%s_FD", prefix);
	if (env_set(n))
		return true;
	snprintf(n, sizeof n, "%s_FILE", prefix);
	return env_set(n);
}

/* Draws the box on a cleared screen, the cursor after the prompt. */
static void draw(const struct ctx *x, const struct box *b)
{
	const unsigned long *at = x->ui->attrs;
	const unsigned flags = x->ui->text_flags;
	int lines, cols;
	getmaxyx(stdscr, lines, cols);
	werase(stdscr);
	int w = cols - 4 < 72 ? cols - 4 : 72;
	if (w < 16)
		w = cols;
	struct text_lines body = {0}, note = {0};
	text_wrap(b->body, strlen(b->body), NULL, w - 4, flags, &body);
	if (b->note && b->note[0])
		text_wrap(b->note, strlen(b->note), NULL, w - 4, flags, &note);
	int h = 2 + (int)body.n + (note.n ? 1 + (int)note.n : 0) + (b->prompt ? 2 : 0) + 2;
	if (h > lines)
		h = lines;
	int y0 = (lines - h) / 2, x0 = (cols - w) / 2;
	WINDOW *win = newwin(h, w, y0 < 0 ? 0 : y0, x0 < 0 ? 0 : x0);
	if (!win) {
		text_lines_free(&body);
		text_lines_free(&note);
		wnoutrefresh(stdscr);
		doupdate();
		return;
	}
	wattrset(win, (attr_t)at[ROLE_BORDER]);
	box(win, 0, 0);
	wattrset(win, (attr_t)at[ROLE_TITLE]);
	mvwprintw(win, 0, 2, " %s ", b->title);
	int r = 1;
	for (size_t i = 0; i < body.n && r < h - 1; i++, r++) {
		wmove(win, r, 2);
		tr_put_text(win, b->body + body.v[i].start, body.v[i].end - body.v[i].start, w - 4, flags,
			    at[ROLE_SIDE], at[ROLE_CTRL]);
	}
	if (note.n) {
		r++;
		for (size_t i = 0; i < note.n && r < h - 1; i++, r++) {
			wmove(win, r, 2);
			tr_put_text(win, b->note + note.v[i].start, note.v[i].end - note.v[i].start, w - 4, flags,
				    at[ROLE_BAD], at[ROLE_CTRL]);
		}
	}
	int py = -1, px = 0;
	if (b->prompt && r + 1 < h - 1) {
		r++;
		wmove(win, r, 2);
		px = 2 + tr_put_text(win, b->prompt, strlen(b->prompt), w - 4, flags, at[ROLE_PROMPT], at[ROLE_CTRL]);
		py = r;
		r++;
	}
	if (r + 1 < h) {
		wmove(win, h - 2, 2);
		tr_put_text(win, b->hints, strlen(b->hints), w - 4, flags, at[ROLE_HINT], at[ROLE_CTRL]);
	}
	wattrset(win, A_NORMAL);
	text_lines_free(&body);
	text_lines_free(&note);
	wnoutrefresh(stdscr);
	if (py >= 0) {
		curs_set(1);
		wmove(win, py, px);
		leaveok(win, FALSE);
	} else {
		curs_set(0);
		leaveok(win, TRUE);
	}
	wnoutrefresh(win);
	doupdate();
	delwin(win);
}

/* Handles the bytes on the signal pipe: false when they end the prompt. */
static bool on_signals(struct ctx *x)
{
	unsigned char b[32];
	ssize_t n = read(x->ui->sig_fd, b, sizeof b);
	bool go_on = true;
	for (ssize_t i = 0; i < n; i++) {
		int sig = b[i];
		if (sig == SIGWINCH) {
			struct winsize ws;
			if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
				resizeterm(ws.ws_row, ws.ws_col);
		} else if (sig == SIGCONT) {
			clearok(curscr, TRUE);
		} else if (sig == SIGTERM || sig == SIGHUP || sig == SIGINT || sig == SIGQUIT) {
			x->outcome = QUIT;
			x->status = 128 + sig;
			go_on = false;
		}
	}
	return go_on;
}

/* Waits for the next key (ERR when a signal ended the prompt). */
static int next_key(struct ctx *x, const struct box *b)
{
	for (;;) {
		int k = wgetch(stdscr);
		if (k != ERR)
			return k;
		struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = x->ui->sig_fd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			x->outcome = QUIT;
			x->status = EXIT_FAILURE;
			return ERR;
		}
		if (p[1].revents & POLLIN) {
			if (!on_signals(x))
				return ERR;
			draw(x, b);
		}
		if ((p[0].revents & (POLLHUP | POLLERR)) && !(p[0].revents & POLLIN)) {
			x->outcome = QUIT;
			x->status = 128 + SIGHUP;
			return ERR;
		}
	}
}

/* Reads a line into BUF (CAP bytes, NUL-terminated) without showing it.
 * 0 on Enter; -1 on Esc (outcome SKIP), Ctrl-C or a signal (QUIT). */
static int read_secret(struct ctx *x, const struct box *b, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = '\0';
	draw(x, b);
	for (;;) {
		int k = next_key(x, b);
		if (k == ERR)
			break;
		if (k == '\r' || k == '\n' || k == KEY_ENTER)
			return 0;
		if (k == 27) {
			x->outcome = SKIP;
			break;
		}
		if (k == 3) {
			x->outcome = QUIT;
			x->status = 128 + SIGINT;
			break;
		}
		if (k == KEY_BACKSPACE || k == 127 || k == 8) {
			/* one character: back over UTF-8 continuation bytes */
			while (n > 0 && ((unsigned char)buf[n - 1] & 0xc0) == 0x80)
				n--;
			if (n > 0)
				n--;
			buf[n] = '\0';
		} else if (k == 21) { /* Ctrl-U */
			sodium_memzero(buf, cap);
			n = 0;
		} else if (k == KEY_RESIZE) {
			draw(x, b);
		} else if (k >= 0x20 && k <= 0xff && k != 0x7f && n + 1 < cap) {
			buf[n++] = (char)k;
			buf[n] = '\0';
		}
	}
	sodium_memzero(buf, cap);
	return -1;
}

/* A yes/no question: 1 yes, 0 no (the default), -1 quit. */
static int ask_yes(struct ctx *x, const struct box *b)
{
	draw(x, b);
	for (;;) {
		int k = next_key(x, b);
		if (k == ERR)
			return -1;
		if (k == 'y' || k == 'Y')
			return 1;
		if (k == 'n' || k == 'N' || k == '\r' || k == '\n' || k == KEY_ENTER || k == 27)
			return 0;
		if (k == 3) {
			x->outcome = QUIT;
			x->status = 128 + SIGINT;
			return -1;
		}
	}
}

static void show_working(struct ctx *x, const char *what)
{
	struct box b = {.title = "History", .body = what, .hints = ""};
	draw(x, &b);
}

static const char HINTS[] = "Enter: OK   Esc: go on without history   Ctrl-C: quit";

static int ask_unlock(struct ctx *x, char *buf, size_t cap)
{
	char body[4400];
	snprintf(body, sizeof body, "Your conversations in %s are encrypted. Type the passphrase to open them "
				    "(nothing is shown as you type).", x->dir);
	struct box b = {.title = "Unlock history", .body = body, .note = x->note, .prompt = "Passphrase: ",
			.hints = HINTS};
	if (read_secret(x, &b, buf, cap) != 0)
		return -1;
	show_working(x, "Unlocking...");
	return 0;
}

static int ask_new(struct ctx *x, char *buf, size_t cap)
{
	char body[4400];
	snprintf(body, sizeof body,
		 "ttychat keeps your conversations encrypted in %s. Choose a passphrase to protect them "
		 "(recommended): you will type it when ttychat starts. Leave it empty for none: the key file "
		 "alone then protects them.",
		 x->dir);
	char *again = sodium_malloc(cap);
	if (!again) {
		snprintf(x->err, sizeof x->err, "out of secure memory");
		return -1;
	}
	int rc = -1;
	x->note[0] = '\0';
	for (;;) {
		struct box b = {.title = "New encrypted history", .body = body, .note = x->note,
				.prompt = "New passphrase: ", .hints = HINTS};
		if (read_secret(x, &b, buf, cap) != 0)
			break;
		if (!buf[0]) {
			struct box q = {.title = "No passphrase?", .body = "Without a passphrase, anyone who can read "
									  "your files can read your conversations. "
									  "Keep the history without one? [y/N]",
					.hints = "y: yes, no passphrase   n, Enter: choose one"};
			int yes = ask_yes(x, &q);
			if (yes < 0)
				break;
			if (yes) {
				rc = 0;
				break;
			}
			x->note[0] = '\0';
			continue;
		}
		b.prompt = "Repeat it: ";
		b.note = NULL;
		if (read_secret(x, &b, again, cap) != 0)
			break;
		if (strcmp(buf, again) != 0) {
			snprintf(x->note, sizeof x->note, "The two passphrases differ. Try again.");
			sodium_memzero(buf, cap);
			continue;
		}
		show_working(x, "Creating the key...");
		rc = 0;
		break;
	}
	sodium_free(again);
	return rc;
}

static int pass_cb(void *ctx, enum chats_pass why, char *buf, size_t cap)
{
	struct ctx *x = ctx;
	x->used_env = false;
	if (!x->env_failed) {
		bool env = why == CHATS_PASS_UNLOCK ? env_has("TTYCHAT_PASSPHRASE")
						    : env_has("TTYCHAT_NEW_PASSPHRASE") || env_has("TTYCHAT_PASSPHRASE");
		if (env) {
			x->used_env = true;
			if (passphrase_get(&x->src, (enum history_pass_purpose)why, buf, cap) != 0) {
				snprintf(x->err, sizeof x->err, "%s", x->src.err);
				return -1;
			}
			return 0;
		}
	}
	return why == CHATS_PASS_UNLOCK ? ask_unlock(x, buf, cap) : ask_new(x, buf, cap);
}

enum unlock_result unlock_history(const struct unlock_ui *ui, struct chats **out, int *status, char *msg,
				  size_t msglen)
{
	*out = NULL;
	*status = 0;
	msg[0] = '\0';
	struct ctx *x = calloc(1, sizeof *x);
	if (!x) {
		snprintf(msg, msglen, "out of memory");
		return UNLOCK_OFF;
	}
	x->ui = ui;
	passphrase_src_init(&x->src);
	if (ui->dir)
		snprintf(x->dir, sizeof x->dir, "%s", ui->dir);
	else if (history_default_dir(x->dir, sizeof x->dir) != 0)
		snprintf(x->dir, sizeof x->dir, "the data directory");
	struct chats_opts o = {.dir = ui->dir, .passphrase = pass_cb, .pass_ctx = x};
	enum unlock_result res;
	char err[512];
	for (;;) {
		x->outcome = GO;
		x->err[0] = '\0';
		int rc = chats_open(&o, out, err, sizeof err);
		if (rc == 0) {
			res = UNLOCK_OPEN;
			break;
		}
		if (rc == CHATS_E_PASSPHRASE) {
			if (x->used_env) {
				x->env_failed = true;
				snprintf(x->note, sizeof x->note, "The passphrase from %s is wrong.",
					 env_set("TTYCHAT_PASSPHRASE_FD") ? "TTYCHAT_PASSPHRASE_FD" : "TTYCHAT_PASSPHRASE_FILE");
			} else {
				snprintf(x->note, sizeof x->note, "Wrong passphrase. Try again.");
			}
			continue;
		}
		if (rc == CHATS_E_CANCELLED && x->outcome == QUIT) {
			*status = x->status;
			res = UNLOCK_QUIT;
		} else if (rc == CHATS_E_CANCELLED && x->outcome == SKIP) {
			snprintf(msg, msglen, "you chose to go on without it");
			res = UNLOCK_OFF;
		} else {
			snprintf(msg, msglen, "%s", rc == CHATS_E_CANCELLED && x->err[0] ? x->err : err);
			res = UNLOCK_OFF;
		}
		break;
	}
	sodium_memzero(x, sizeof *x);
	free(x);
	return res;
}
