/*
 * input.c - readline inside curses (see input.h).
 *
 * readline reads keys through rl_getc_function, which pops a small queue
 * that input_feed() fills and then drains by calling
 * rl_callback_read_char() until the queue is empty; rl_input_available_hook
 * tells readline whether the rest of an escape sequence is already queued.
 * If readline ever wants a key the queue does not have (it should not in
 * callback mode), the getc function reads the terminal directly, which is
 * what readline itself would have done.
 *
 * The prompt and the line are laid out with the same clusters as the
 * transcript (text.h), so control characters typed with Ctrl-V show as
 * placeholders and wide characters wrap correctly; rows after the first
 * are indented by two columns.
 */
#include "config.h"

#include "input.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "text.h"
#include "transcript.h"

#define QUEUE 512
#define CONT_INDENT 2

/* readline's callbacks carry no context: this is the UI root's input state */
static struct input_state {
	struct input_hooks hooks;
	unsigned char q[QUEUE];
	size_t qhead, qlen;
	bool dirty;
	FILE *devnull;
} *self;

static int q_getc(FILE *f)
{
	(void)f;
	if (self->qlen > 0) {
		unsigned char c = self->q[self->qhead];
		self->qhead = (self->qhead + 1) % QUEUE;
		self->qlen--;
		return c;
	}
	unsigned char c;
	for (;;) {
		ssize_t r = read(STDIN_FILENO, &c, 1);
		if (r == 1)
			return c;
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		return EOF;
	}
}

static int q_avail(void)
{
	return self->qlen > 0;
}

static void mark_dirty(void)
{
	self->dirty = true;
}

static void prep_noop(int meta)
{
	(void)meta;
}

static void deprep_noop(void)
{
}

static void on_line(char *line)
{
	if (line && line[0])
		add_history(line);
	self->dirty = true;
	self->hooks.on_line(self->hooks.ctx, line);
}

static int insert_newline(int count, int key)
{
	(void)key;
	for (int i = 0; i < (count > 0 && count < 100 ? count : 1); i++)
		rl_insert_text("\n");
	return 0;
}

/* Ctrl-X Ctrl-E: the line goes through $VISUAL / $EDITOR. */
static int edit_in_editor(int count, int key)
{
	(void)count;
	(void)key;
	/* the draft is conversation text: a memory-backed folder when there
	 * is one, so that it never reaches a disk */
	const char *dir = getenv("XDG_RUNTIME_DIR");
	struct stat st;
	if (!dir || dir[0] != '/' || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		dir = NULL;
	if (!dir && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
		dir = "/dev/shm";
	if (!dir)
		dir = getenv("TMPDIR");
	if (!dir || dir[0] != '/')
		dir = "/tmp";
	char path[PATH_MAX];
	int w = snprintf(path, sizeof path, "%s/ttychat-input-XXXXXX", dir);
	if (w < 0 || (size_t)w >= sizeof path)
		return 1;
	int fd = mkstemp(path); /* 0600 */
	if (fd < 0)
		return 1;
	size_t len = (size_t)rl_end;
	bool ok = write(fd, rl_line_buffer, len) == (ssize_t)len;
	close(fd);
	if (!ok) {
		unlink(path);
		return 1;
	}
	self->hooks.on_suspend(self->hooks.ctx, true);
	struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_quit;
	sigemptyset(&ign.sa_mask);
	sigaction(SIGINT, &ign, &old_int);
	sigaction(SIGQUIT, &ign, &old_quit);
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGQUIT, SIG_DFL);
		execl("/bin/sh", "sh", "-c", "exec ${VISUAL:-${EDITOR:-vi}} \"$1\"", "sh", path, (char *)NULL);
		_exit(127);
	}
	int status = 0;
	if (pid > 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGQUIT, &old_quit, NULL);
	char *buf = NULL;
	if (pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		fd = open(path, O_RDONLY | O_NOFOLLOW);
		if (fd >= 0) {
			const size_t max = 1 << 20;
			buf = malloc(max + 1);
			ssize_t r = buf ? read(fd, buf, max) : -1;
			if (r >= 0) {
				buf[r] = '\0';
				/* editors end files with a newline the user did not mean */
				if (r > 0 && buf[r - 1] == '\n')
					buf[r - 1] = '\0';
			} else {
				free(buf);
				buf = NULL;
			}
			close(fd);
		}
	}
	unlink(path);
	if (buf) {
		rl_replace_line(buf, 0);
		rl_point = rl_end;
		free(buf);
	}
	self->hooks.on_suspend(self->hooks.ctx, false);
	self->dirty = true;
	return 0;
}

int input_init(const struct input_hooks *h)
{
	static struct input_state state;
	memset(&state, 0, sizeof state);
	state.hooks = *h;
	self = &state;
	state.devnull = fopen("/dev/null", "w");
	if (!state.devnull)
		return -1;
	rl_readline_name = "ttychat";
	rl_catch_signals = 0;
	rl_catch_sigwinch = 0;
	rl_change_environment = 0;
	rl_prep_term_function = prep_noop;
	rl_deprep_term_function = deprep_noop;
	rl_getc_function = q_getc;
	rl_input_available_hook = q_avail;
	rl_redisplay_function = mark_dirty;
	rl_outstream = state.devnull;
	rl_instream = stdin;
	rl_inhibit_completion = 1;
	if (rl_initialize() != 0)
		return -1;
	rl_variable_bind("enable-bracketed-paste", "off");
	rl_variable_bind("bell-style", "none");
	rl_variable_bind("horizontal-scroll-mode", "off");
	/* the sequences input_key_bytes() produces */
	rl_bind_keyseq("\033[A", rl_get_previous_history);
	rl_bind_keyseq("\033[B", rl_get_next_history);
	rl_bind_keyseq("\033[C", rl_forward_char);
	rl_bind_keyseq("\033[D", rl_backward_char);
	rl_bind_keyseq("\033[H", rl_beg_of_line);
	rl_bind_keyseq("\033[F", rl_end_of_line);
	rl_bind_keyseq("\033[3~", rl_delete);
	rl_bind_keyseq("\033[1;5C", rl_forward_word);
	rl_bind_keyseq("\033[1;5D", rl_backward_word);
	rl_bind_key('\n', insert_newline);
	rl_bind_keyseq("\033\r", insert_newline);
	rl_bind_keyseq("\033\n", insert_newline);
	rl_bind_keyseq("\030\005", edit_in_editor);
	rl_bind_key('\t', rl_insert);
	using_history();
	stifle_history(1000);
	rl_callback_handler_install("> ", on_line);
	state.dirty = true;
	return 0;
}

void input_done(void)
{
	if (!self)
		return;
	rl_callback_handler_remove();
	clear_history();
	if (self->devnull)
		fclose(self->devnull);
	rl_outstream = NULL;
	self = NULL;
}

void input_feed(const char *bytes, size_t n)
{
	for (size_t i = 0; i < n && self->qlen < QUEUE; i++) {
		self->q[(self->qhead + self->qlen) % QUEUE] = (unsigned char)bytes[i];
		self->qlen++;
	}
	while (self && self->qlen > 0)
		rl_callback_read_char();
}

size_t input_key_bytes(int key, char *buf, size_t n)
{
	const char *s = NULL;
	switch (key) {
	case KEY_UP: s = "\033[A"; break;
	case KEY_DOWN: s = "\033[B"; break;
	case KEY_RIGHT: s = "\033[C"; break;
	case KEY_LEFT: s = "\033[D"; break;
	case KEY_HOME: s = "\033[H"; break;
	case KEY_END: s = "\033[F"; break;
	case KEY_DC: s = "\033[3~"; break;
	case KEY_BACKSPACE: s = "\177"; break;
	case KEY_ENTER: s = "\r"; break;
	default: {
		const char *kn = keyname(key);
		if (kn && strcmp(kn, "kRIT5") == 0)
			s = "\033[1;5C";
		else if (kn && strcmp(kn, "kLFT5") == 0)
			s = "\033[1;5D";
		break;
	}
	}
	if (!s) {
		if (key >= 0 && key < 256 && n > 0) {
			buf[0] = (char)key;
			return 1;
		}
		return 0;
	}
	size_t l = strlen(s);
	if (l > n)
		return 0;
	memcpy(buf, s, l);
	return l;
}

void input_insert(const char *s, size_t n)
{
	char chunk[257];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\r') {
			if (i + 1 < n && s[i + 1] == '\n')
				continue;
			c = '\n';
		}
		if (c == '\0')
			continue;
		chunk[k++] = c;
		if (k == sizeof chunk - 1) {
			chunk[k] = '\0';
			rl_insert_text(chunk);
			k = 0;
		}
	}
	chunk[k] = '\0';
	if (k)
		rl_insert_text(chunk);
	self->dirty = true;
}

void input_set(const char *text)
{
	rl_replace_line(text, 1);
	rl_point = rl_end;
	self->dirty = true;
}

bool input_empty(void)
{
	return rl_end == 0;
}

bool input_searching(void)
{
	return RL_ISSTATE(RL_STATE_ISEARCH | RL_STATE_NSEARCH) != 0;
}

bool input_take_dirty(void)
{
	bool d = self->dirty;
	self->dirty = false;
	return d;
}

/* Lays the prompt and line out at WIDTH; draws rows [top, top+h) into W
 * when W is not NULL.  Returns the row count; the cursor goes to *crow, *ccol. */
static int layout(WINDOW *w, int top, int h, int width, unsigned flags, unsigned long pattr, unsigned long tattr,
		  unsigned long cattr, int *crow, int *ccol)
{
	const char *prompt = rl_display_prompt ? rl_display_prompt : "> ";
	size_t plen = strlen(prompt);
	int pw = text_width(prompt, plen, flags);
	if (pw > width - 1)
		pw = width - 1;
	if (w && top == 0) {
		wmove(w, 0, 0);
		tr_put_text(w, prompt, plen, pw, flags, pattr, cattr);
	}
	const char *s = rl_line_buffer ? rl_line_buffer : "";
	size_t len = (size_t)(rl_end > 0 ? rl_end : 0);
	size_t point = (size_t)(rl_point > 0 ? rl_point : 0);
	int row = 0, col = pw, indent = pw < CONT_INDENT ? pw : CONT_INDENT;
	*crow = -1;
	struct text_cluster c;
	for (size_t p = 0;;) {
		size_t q = text_cluster_next(s, len, p, flags, &c);
		if (*crow < 0 && point < q && point >= p) {
			*crow = row;
			*ccol = col;
		}
		if (c.kind == TC_END)
			break;
		if (c.kind == TC_NEWLINE) {
			row++;
			col = indent;
			p = q;
			continue;
		}
		int cw = c.kind == TC_TAB ? TEXT_TAB - (col - indent) % TEXT_TAB : c.width;
		if (col + cw > width && col > indent) {
			row++;
			col = indent;
			if (*crow >= 0 && point >= p && point < q) {
				*crow = row;
				*ccol = col;
			}
		}
		if (w && row >= top && row < top + h) {
			wmove(w, row - top, col);
			if (c.kind == TC_TAB) {
				for (int k = 0; k < cw && col + k < width; k++)
					waddch(w, ' ');
			} else {
				tr_put_text(w, s + p, c.len, width - col, flags, tattr, cattr);
			}
		}
		col += cw;
		p = q;
	}
	if (*crow < 0) {
		*crow = row;
		*ccol = col;
	}
	if (*ccol >= width) {
		/* the cursor after a full row sits at the start of the next */
		(*crow)++;
		*ccol = indent;
		if (*crow > row)
			row = *crow;
	}
	return row + 1;
}

int input_rows(int width, unsigned text_flags)
{
	int r, c;
	return layout(NULL, 0, 0, width, text_flags, 0, 0, 0, &r, &c);
}

void input_draw(WINDOW *w, unsigned text_flags, unsigned long prompt_attr, unsigned long text_attr,
		unsigned long ctrl_attr)
{
	int h, width;
	getmaxyx(w, h, width);
	int crow, ccol;
	int rows = layout(NULL, 0, 0, width, text_flags, 0, 0, 0, &crow, &ccol);
	/* keep the cursor's row in view */
	int top = 0;
	if (rows > h)
		top = crow - h + 1 > 0 ? crow - h + 1 : 0;
	werase(w);
	layout(w, top, h, width, text_flags, prompt_attr, text_attr, ctrl_attr, &crow, &ccol);
	wmove(w, crow - top, ccol < width ? ccol : width - 1);
}
