/*
 * passphrase.c - passphrase sources for the command line (see
 * passphrase.h).  Reads use read(2) into the caller's secure buffer, one
 * byte at a time from a descriptor so that nothing after the line is
 * consumed.  The terminal prompt turns echo off and always restores it:
 * SIGINT, SIGTERM, SIGHUP and SIGQUIT during the prompt interrupt the
 * read, the terminal is restored, and the signal is raised again with
 * the handler the program had (the way OpenBSD's readpassphrase does).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "passphrase.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

/* The signal that interrupted a terminal prompt (a signal flag). */
static volatile sig_atomic_t prompt_signal;

static void on_prompt_signal(int sig)
{
	prompt_signal = sig;
}

void passphrase_src_init(struct passphrase_src *s)
{
	memset(s, 0, sizeof *s);
}

/* Reads one line from FD into BUF (CAP bytes, NUL-terminated, newline
 * dropped).  0, or -1 with a message in S->err. */
static int read_line(struct passphrase_src *s, int fd, const char *what, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		char ch;
		ssize_t r = read(fd, &ch, 1);
		if (r < 0 && errno == EINTR && !prompt_signal)
			continue;
		if (r < 0) {
			snprintf(s->err, sizeof s->err, "reading the passphrase from %s: %s", what, strerror(errno));
			sodium_memzero(buf, cap);
			return -1;
		}
		if (r == 0 || ch == '\n')
			break;
		if (n + 1 >= cap) {
			snprintf(s->err, sizeof s->err, "the passphrase from %s is too long", what);
			sodium_memzero(buf, cap);
			return -1;
		}
		buf[n++] = ch;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return 0;
}

/* Tries $PREFIX_FD then $PREFIX_FILE: 1 if one was set and read, 0 if
 * neither is set, -1 on error. */
static int from_env(struct passphrase_src *s, const char *prefix, char *buf, size_t cap)
{
	char name[64];
	snprintf(name, sizeof name, "%s_FD", prefix);
	const char *v = getenv(name);
	if (v && v[0]) {
		char *end;
		errno = 0;
		long fd = strtol(v, &end, 10);
		if (errno || *end || fd < 0 || fd > INT_MAX) {
			snprintf(s->err, sizeof s->err, "%s is not a file descriptor number", name);
			return -1;
		}
		return read_line(s, (int)fd, name, buf, cap) == 0 ? 1 : -1;
	}
	snprintf(name, sizeof name, "%s_FILE", prefix);
	v = getenv(name);
	if (v && v[0]) {
		int fd = open(v, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			snprintf(s->err, sizeof s->err, "%s: cannot open %s: %s", name, v, strerror(errno));
			return -1;
		}
		int rc = read_line(s, fd, v, buf, cap);
		close(fd);
		return rc == 0 ? 1 : -1;
	}
	return 0;
}

/* Prompts on the terminal with echo off. */
static int ask_tty(struct passphrase_src *s, const char *prompt, char *buf, size_t cap, int echo)
{
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(s->err, sizeof s->err,
			 "no terminal to ask for the passphrase; set TTYCHAT_PASSPHRASE_FILE or TTYCHAT_PASSPHRASE_FD");
		return -1;
	}
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
	struct sigaction sa = {.sa_handler = on_prompt_signal}, saved[4];
	sigemptyset(&sa.sa_mask); /* no SA_RESTART: the read must stop */
	prompt_signal = 0;
	for (int i = 0; i < 4; i++)
		sigaction(sigs[i], &sa, &saved[i]);
	struct termios old, quiet;
	int have = tcgetattr(fd, &old) == 0;
	if (have && !echo) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		quiet.c_lflag |= ICANON;
		tcsetattr(fd, TCSAFLUSH, &quiet);
	}
	if (write(fd, prompt, strlen(prompt)) < 0) {
		/* the read below reports a dead terminal */
	}
	int rc = read_line(s, fd, "the terminal", buf, cap);
	if (have && !echo) {
		tcsetattr(fd, TCSAFLUSH, &old);
		if (write(fd, "\n", 1) < 0) {
			/* nothing to do */
		}
	}
	close(fd);
	for (int i = 0; i < 4; i++)
		sigaction(sigs[i], &saved[i], NULL);
	if (prompt_signal) {
		int sig = prompt_signal;
		prompt_signal = 0;
		snprintf(s->err, sizeof s->err, "interrupted");
		raise(sig); /* the program's own handling, now that echo is back */
		return -1;
	}
	return rc;
}

static int new_from_tty(struct passphrase_src *s, char *buf, size_t cap)
{
	char *again = sodium_malloc(cap);
	if (!again) {
		snprintf(s->err, sizeof s->err, "out of secure memory");
		return -1;
	}
	int rc = -1;
	for (int tries = 0; tries < 3; tries++) {
		if (ask_tty(s, "New history passphrase (empty for none): ", buf, cap, 0) != 0)
			break;
		if (ask_tty(s, "Repeat it: ", again, cap, 0) != 0)
			break;
		if (strcmp(buf, again) != 0) {
			snprintf(s->err, sizeof s->err, "the passphrases did not match");
			continue;
		}
		if (!buf[0] && !s->allow_empty) {
			char yn[8];
			if (ask_tty(s, "Keep history without a passphrase (anyone who can read the key file can read it)? [y/N] ",
				    yn, sizeof yn, 1) != 0)
				break;
			if (yn[0] != 'y' && yn[0] != 'Y') {
				snprintf(s->err, sizeof s->err, "no passphrase chosen");
				continue;
			}
		}
		rc = 0;
		break;
	}
	sodium_free(again);
	return rc;
}

int passphrase_get(void *ctx, enum history_pass_purpose why, char *buf, size_t cap)
{
	struct passphrase_src *s = ctx;
	s->err[0] = '\0';
	if (why == HISTORY_PASS_NEW) {
		int r = from_env(s, "TTYCHAT_NEW_PASSPHRASE", buf, cap);
		if (r == 0 && !s->for_passwd)
			r = from_env(s, "TTYCHAT_PASSPHRASE", buf, cap);
		if (r != 0)
			return r > 0 ? 0 : -1;
		return new_from_tty(s, buf, cap);
	}
	int r = from_env(s, "TTYCHAT_PASSPHRASE", buf, cap);
	if (r != 0)
		return r > 0 ? 0 : -1;
	return ask_tty(s, "History passphrase: ", buf, cap, 0);
}
