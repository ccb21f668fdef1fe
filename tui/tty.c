/*
 * tty.c - the terminal under curses (see tty.h).
 *
 * The emergency restore is precomputed when the terminal is taken over,
 * because a fatal signal handler may only call async-signal-safe
 * functions: tcsetattr() with the saved settings and one write() of the
 * reset capabilities.  The normal handlers only write a byte to the pipe.
 *
 * Paste: \e[200~ and \e[201~ are defined as keys of their own, so curses
 * decodes them like any function key; the bytes between them are kept
 * (up to 8 MiB) and handed over at the end as one TTY_KEY_PASTE.
 */
#include "config.h"

#include "tty.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#define KEY_PASTE_BEGIN (KEY_MAX + 1)
#define KEY_PASTE_END (KEY_MAX + 2)
#define PASTE_MAX (8u << 20)

/* ---- signals: the self-pipe, and the emergency restore ---------------------- */

static int sig_pipe_wr = -1;

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char b = (unsigned char)sig;
	ssize_t w = write(sig_pipe_wr, &b, 1);
	(void)w;
	errno = saved;
}

/* What a fatal signal handler needs to give the terminal back. */
static struct {
	volatile sig_atomic_t armed;
	struct termios tio;
	char reset[256];
	size_t reset_len;
} rescue;

static void on_fatal(int sig)
{
	if (rescue.armed) {
		tcsetattr(STDIN_FILENO, TCSANOW, &rescue.tio);
		ssize_t w = write(STDOUT_FILENO, rescue.reset, rescue.reset_len);
		(void)w;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void rescue_add(const char *capname)
{
	const char *s = tigetstr(capname);
	if (!s || s == (char *)-1)
		return;
	size_t l = strlen(s);
	if (rescue.reset_len + l < sizeof rescue.reset) {
		memcpy(rescue.reset + rescue.reset_len, s, l);
		rescue.reset_len += l;
	}
}

static void install_signals(void)
{
	struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	const int sigs[] = {SIGWINCH, SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGTSTP, SIGCONT};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaction(sigs[i], &sa, NULL);
	struct sigaction fa = {.sa_handler = on_fatal, .sa_flags = SA_RESETHAND};
	sigemptyset(&fa.sa_mask);
	const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
	for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
		sigaction(fatal[i], &fa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void restore_signals(void)
{
	const int sigs[] = {SIGWINCH, SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGTSTP, SIGCONT,
			    SIGSEGV,  SIGBUS,  SIGFPE, SIGILL, SIGABRT};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		signal(sigs[i], SIG_DFL);
}

int tty_pipe(int sp[2], char *err, size_t errlen)
{
	if (pipe(sp) != 0) {
		snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		fcntl(sp[i], F_SETFL, fcntl(sp[i], F_GETFL) | O_NONBLOCK);
		fcntl(sp[i], F_SETFD, FD_CLOEXEC);
	}
	return 0;
}

/* ---- taking the terminal over and giving it back ------------------------------ */

/* putp() goes through stdio, not through curses' own buffer: flush at once
 * so that it lands in order */
static void put_cap(const char *cap)
{
	if (cap) {
		putp(cap);
		fflush(stdout);
	}
}

/* What common terminals send when TERM names another one. */
static void define_keys(void)
{
	static const struct {
		const char *seq;
		int key;
	} alt_keys[] = {
		{"\033[1~", KEY_HOME}, {"\033[4~", KEY_END},   {"\033[H", KEY_HOME},  {"\033[F", KEY_END},
		{"\033OH", KEY_HOME},  {"\033OF", KEY_END},    {"\033[7~", KEY_HOME}, {"\033[8~", KEY_END},
		{"\033[5~", KEY_PPAGE}, {"\033[6~", KEY_NPAGE}, {"\033[3~", KEY_DC},  {"\033[A", KEY_UP},
		{"\033[B", KEY_DOWN},  {"\033[C", KEY_RIGHT},  {"\033[D", KEY_LEFT},  {"\033OA", KEY_UP},
		{"\033OB", KEY_DOWN},  {"\033OC", KEY_RIGHT},  {"\033OD", KEY_LEFT},  {"\033OP", KEY_F(1)},
		{"\033OQ", KEY_F(2)},  {"\033OR", KEY_F(3)},   {"\033[11~", KEY_F(1)}, {"\033[12~", KEY_F(2)},
		{"\033[13~", KEY_F(3)}, {"\033[[A", KEY_F(1)}, {"\033[[B", KEY_F(2)}, {"\033[[C", KEY_F(3)},
	};
	define_key("\033[200~", KEY_PASTE_BEGIN);
	define_key("\033[201~", KEY_PASTE_END);
	for (size_t i = 0; i < sizeof alt_keys / sizeof alt_keys[0]; i++)
		if (key_defined(alt_keys[i].seq) == 0)
			define_key(alt_keys[i].seq, alt_keys[i].key);
}

int tty_open(struct tty *t, int sig_wr, char *err, size_t errlen)
{
	memset(t, 0, sizeof *t);
	if (tcgetattr(STDIN_FILENO, &rescue.tio) != 0) {
		snprintf(err, errlen, "cannot read the terminal settings: %s", strerror(errno));
		return -1;
	}
	t->scr = newterm(NULL, stdout, stdin);
	if (!t->scr) {
		snprintf(err, errlen, "cannot use the terminal (TERM=%s)", getenv("TERM") ? getenv("TERM") : "");
		return -1;
	}
	set_term(t->scr);
	rescue.reset_len = 0;
	rescue_add("rmkx");
	rescue_add("sgr0");
	rescue_add("cnorm");
	rescue_add("BD");
	rescue_add("rmcup");
	rescue.armed = 1;
	sig_pipe_wr = sig_wr;
	install_signals();

	raw();
	noecho();
	nonl();
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	meta(stdscr, TRUE);
	set_escdelay(25);
	define_keys();
	const char *be = tigetstr("BE"), *bd = tigetstr("BD");
	if (be && be != (char *)-1 && bd && bd != (char *)-1) {
		t->paste_on = be;
		t->paste_off = bd;
		put_cap(be);
	}
	return 0;
}

void tty_close(struct tty *t)
{
	put_cap(t->paste_off);
	endwin();
	delscreen(t->scr);
	t->scr = NULL;
	rescue.armed = 0;
	restore_signals();
	sig_pipe_wr = -1;
	free(t->paste);
	t->paste = NULL;
	t->paste_len = t->paste_cap = 0;
}

void tty_suspend(struct tty *t, bool stop)
{
	put_cap(t->paste_off);
	endwin();
	if (stop) {
		signal(SIGTSTP, SIG_DFL);
		kill(getpid(), SIGTSTP);
		struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
		sigemptyset(&sa.sa_mask);
		sigaction(SIGTSTP, &sa, NULL);
	}
}

void tty_resume(struct tty *t)
{
	reset_prog_mode();
	put_cap(t->paste_on);
	tty_resize();
	clearok(curscr, TRUE);
}

void tty_resize(void)
{
	struct winsize ws;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
		resizeterm(ws.ws_row, ws.ws_col);
}

/* ---- keys ------------------------------------------------------------------------ */

static void paste_byte(struct tty *t, int k)
{
	if (k < 0 || k > 255 || t->paste_len >= PASTE_MAX)
		return;
	if (t->paste_len == t->paste_cap) {
		size_t nc = t->paste_cap ? t->paste_cap * 2 : 1024;
		char *np = realloc(t->paste, nc);
		if (!np)
			return;
		t->paste = np;
		t->paste_cap = nc;
	}
	t->paste[t->paste_len++] = (char)k;
}

/* After an Esc: 27 (a lone Esc), TTY_ALT | key, or 0 when an unknown
 * escape sequence was swallowed. */
static int after_esc(void)
{
	int n = wgetch(stdscr);
	if (n == ERR || n == 27 || n >= KEY_MIN) {
		/* a lone Esc; a second Esc or a function key right after it is
		 * a key of its own */
		if (n != ERR)
			ungetch(n);
		return 27;
	}
	if (n == '[' || n == 'O') {
		/* a CSI or SS3 sequence curses did not know: swallow it whole
		 * rather than type its tail into the input */
		int c, got = 0;
		while ((c = wgetch(stdscr)) != ERR && got++ < 32)
			if (c >= 0x40 && c <= 0x7e && !(n == '[' && got == 1 && c == '['))
				break;
		if (got > 0)
			return 0;
	}
	return TTY_ALT | n;
}

int tty_key(struct tty *t)
{
	for (;;) {
		int k = wgetch(stdscr);
		if (k == ERR)
			return ERR;
		if (t->pasting) {
			if (k == KEY_PASTE_END) {
				t->pasting = false;
				return TTY_KEY_PASTE;
			}
			paste_byte(t, k);
		} else if (k == KEY_PASTE_BEGIN) {
			t->pasting = true;
			t->paste_len = 0;
		} else if (k == 27) {
			k = after_esc();
			if (k)
				return k;
		} else if (k != KEY_RESIZE) { /* SIGWINCH reaches the loop through the pipe */
			return k;
		}
	}
}

/* ---- clipboard ------------------------------------------------------------------- */

static size_t base64(const unsigned char *s, size_t n, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? tab[v & 63] : '=';
	}
	return o;
}

int tty_osc52(const char *s, size_t n, bool tmux_wrap)
{
	if (n > (SIZE_MAX - 64) / 4 * 3 - 3)
		return -1;
	size_t cap = (n + 2) / 3 * 4 + 64;
	char *seq = malloc(cap);
	if (!seq)
		return -1;
	size_t o = 0;
	/* inside a passthrough, tmux wants every ESC doubled */
	const char *head = tmux_wrap ? "\033Ptmux;\033\033]52;c;" : "\033]52;c;";
	memcpy(seq, head, strlen(head));
	o += strlen(head);
	o += base64((const unsigned char *)s, n, seq + o);
	seq[o++] = '\a';
	if (tmux_wrap) {
		memcpy(seq + o, "\033\\", 2);
		o += 2;
	}
	int rc = 0;
	for (size_t w = 0; w < o;) {
		ssize_t k = write(STDOUT_FILENO, seq + w, o - w);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = -1;
			break;
		}
		w += (size_t)k;
	}
	free(seq);
	return rc;
}
