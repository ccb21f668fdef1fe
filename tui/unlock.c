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
 * the program.  The box is an overlay (overlay.h) like the chat's others,
 * held by that loop of its own instead of the chat's.
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
#include <unistd.h>

#include <sodium.h>

#include "chats.h"
#include "history.h"
#include "overlay.h"
#include "passphrase.h"
#include "text.h"
#include "theme.h"
#include "transcript.h"
#include "tty.h"

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

/* The box as an overlay (overlay.h), held by run_box() below rather than
 * by the main loop: history_open() asks for the passphrase from inside a
 * call, so the answer is waited for here.  With BUF it edits a secret
 * field (Enter, Esc, Ctrl-C end it); without, it asks y/N. */
struct ubox {
	struct overlay ov;
	const struct box *b;
	char *buf; /* the library's secure buffer, or NULL */
	size_t cap, n;
	unsigned text_flags; /* as drawn: the wrapping depends on them */
};

/* key() results */
enum { UB_ENTER = OV_ACTION, UB_SKIP, UB_QUIT, UB_YES, UB_NO };

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

static int box_width(int cols)
{
	int w = cols - 4 < 72 ? cols - 4 : 72;
	return w < 16 ? cols : w;
}

static void ubox_size(const struct overlay *ov, int lines, int cols, int *h, int *w)
{
	const struct ubox *u = (const struct ubox *)ov;
	const struct box *b = u->b;
	*w = box_width(cols);
	struct text_lines body = {0}, note = {0};
	text_wrap(b->body, strlen(b->body), NULL, *w - 4, u->text_flags, &body);
	if (b->note && b->note[0])
		text_wrap(b->note, strlen(b->note), NULL, *w - 4, u->text_flags, &note);
	*h = 2 + (int)body.n + (note.n ? 1 + (int)note.n : 0) + (b->prompt ? 2 : 0) + 2;
	if (*h > lines)
		*h = lines;
	text_lines_free(&body);
	text_lines_free(&note);
}

/* Wrapped TEXT from row R, while it fits above the bottom border. */
static int put_wrapped(WINDOW *win, int r, const char *text, int role, const struct ov_style *st)
{
	int h, w;
	getmaxyx(win, h, w);
	struct text_lines tl = {0};
	text_wrap(text, strlen(text), NULL, w - 4, st->text_flags, &tl);
	for (size_t i = 0; i < tl.n && r < h - 1; i++, r++) {
		wmove(win, r, 2);
		tr_put_text(win, text + tl.v[i].start, tl.v[i].end - tl.v[i].start, w - 4, st->text_flags,
			    st->attrs[role], st->attrs[ROLE_CTRL]);
	}
	text_lines_free(&tl);
	return r;
}

static void ubox_draw(struct overlay *ov, WINDOW *win, const struct ov_style *st, int *cy, int *cx)
{
	const struct box *b = ((const struct ubox *)ov)->b;
	int h, w;
	getmaxyx(win, h, w);
	overlay_frame(win, b->title, st);
	int r = put_wrapped(win, 1, b->body, ROLE_SIDE, st);
	if (b->note && b->note[0])
		r = put_wrapped(win, r + 1, b->note, ROLE_BAD, st);
	*cy = -1;
	*cx = 0;
	if (b->prompt && r + 1 < h - 1) {
		r++;
		wmove(win, r, 2);
		*cx = 2 + tr_put_text(win, b->prompt, strlen(b->prompt), w - 4, st->text_flags, st->attrs[ROLE_PROMPT],
				      st->attrs[ROLE_CTRL]);
		*cy = r;
		r++;
	}
	if (r + 1 < h) {
		wmove(win, h - 2, 2);
		tr_put_text(win, b->hints, strlen(b->hints), w - 4, st->text_flags, st->attrs[ROLE_HINT],
			    st->attrs[ROLE_CTRL]);
	}
	wattrset(win, A_NORMAL);
}

/* A key in the secret field: the bytes go to the secure buffer, never to
 * the screen. */
static int secret_key(struct ubox *u, int k)
{
	if (k == '\r' || k == '\n' || k == KEY_ENTER)
		return UB_ENTER;
	if (k == 27)
		return UB_SKIP;
	if (k == KEY_BACKSPACE || k == 127 || k == 8) {
		/* one character: back over UTF-8 continuation bytes */
		while (u->n > 0 && ((unsigned char)u->buf[u->n - 1] & 0xc0) == 0x80)
			u->n--;
		if (u->n > 0)
			u->n--;
		u->buf[u->n] = '\0';
	} else if (k == 21) { /* Ctrl-U */
		sodium_memzero(u->buf, u->cap);
		u->n = 0;
	} else if (k >= 0x20 && k <= 0xff && k != 0x7f && u->n + 1 < u->cap) {
		u->buf[u->n++] = (char)k;
		u->buf[u->n] = '\0';
	}
	return OV_KEEP;
}

static int ubox_key(struct overlay *ov, int k)
{
	struct ubox *u = (struct ubox *)ov;
	if (k == 3)
		return UB_QUIT;
	if (u->buf)
		return secret_key(u, k);
	if (k == 'y' || k == 'Y')
		return UB_YES;
	if (k == 'n' || k == 'N' || k == '\r' || k == '\n' || k == KEY_ENTER || k == 27)
		return UB_NO;
	return OV_KEEP;
}

static const struct overlay_class ubox_class = {
	.name = "unlock",
	.size = ubox_size,
	.draw = ubox_draw,
	.key = ubox_key,
	.hints = NULL, /* they are inside the box */
	.free = NULL,  /* held on the stack */
};

/* Draws the box alone on a cleared screen, the cursor after the prompt. */
static void show(const struct ctx *x, struct ubox *u)
{
	const struct ov_style st = {.attrs = x->ui->attrs, .text_flags = x->ui->text_flags};
	int lines, cols;
	getmaxyx(stdscr, lines, cols);
	werase(stdscr);
	u->text_flags = st.text_flags;
	WINDOW *win = overlay_window(&u->ov, lines, cols);
	if (!win) {
		wnoutrefresh(stdscr);
		doupdate();
		return;
	}
	int py, px;
	ubox_draw(&u->ov, win, &st, &py, &px);
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
			tty_resize();
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
static int next_key(struct ctx *x, struct ubox *u)
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
			show(x, u);
		}
		if ((p[0].revents & (POLLHUP | POLLERR)) && !(p[0].revents & POLLIN)) {
			x->outcome = QUIT;
			x->status = 128 + SIGHUP;
			return ERR;
		}
	}
}

/* Shows the box and hands it keys until one ends it: what that key asked
 * for, or -1 when a signal or a lost terminal ended the prompt (outcome
 * QUIT).  A key only changes the box's state: typing redraws nothing. */
static int run_box(struct ctx *x, struct ubox *u)
{
	show(x, u);
	for (;;) {
		int k = next_key(x, u);
		if (k == ERR)
			return -1;
		if (k == KEY_RESIZE) {
			show(x, u);
			continue;
		}
		int r = ubox_key(&u->ov, k);
		if (r == UB_QUIT) {
			x->outcome = QUIT;
			x->status = 128 + SIGINT;
		}
		if (r != OV_KEEP)
			return r;
	}
}

/* Reads a line into BUF (CAP bytes, NUL-terminated) without showing it.
 * 0 on Enter; -1 on Esc (outcome SKIP), Ctrl-C or a signal (QUIT). */
static int read_secret(struct ctx *x, const struct box *b, char *buf, size_t cap)
{
	struct ubox u = {.ov.cls = &ubox_class, .b = b, .buf = buf, .cap = cap};
	buf[0] = '\0';
	int r = run_box(x, &u);
	if (r == UB_ENTER)
		return 0;
	if (r == UB_SKIP)
		x->outcome = SKIP;
	sodium_memzero(buf, cap);
	return -1;
}

/* A yes/no question: 1 yes, 0 no (the default), -1 quit. */
static int ask_yes(struct ctx *x, const struct box *b)
{
	struct ubox u = {.ov.cls = &ubox_class, .b = b};
	int r = run_box(x, &u);
	return r == UB_YES ? 1 : r == UB_NO ? 0 : -1;
}

static void show_working(struct ctx *x, const char *what)
{
	struct box b = {.title = "History", .body = what, .hints = ""};
	struct ubox u = {.ov.cls = &ubox_class, .b = &b};
	show(x, &u);
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
