/*
 * help.c - the help box (see help.h).
 *
 * The text is built once, when the box opens, as one line per row: a
 * heading (no indent) or an entry (indented).  Drawing shows the rows that
 * fit from the scroll position, which is clamped there, at the only place
 * that knows the box's height.
 */
#include "config.h"

#include "help.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "theme.h"
#include "transcript.h"

struct help {
	struct overlay ov;
	char **line;
	size_t n;
	int top;  /* first row shown */
	int page; /* rows a page scrolls: what the last draw showed, less one */
};

static void add(struct help *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct help *h, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	char **nl = realloc(h->line, (h->n + 1) * sizeof *nl);
	if (!nl)
		return;
	h->line = nl;
	h->line[h->n] = strdup(buf);
	if (h->line[h->n])
		h->n++;
}

static void help_free(struct overlay *ov)
{
	struct help *h = (struct help *)ov;
	for (size_t i = 0; i < h->n; i++)
		free(h->line[i]);
	free(h->line);
	free(h);
}

static void help_size(const struct overlay *ov, int lines, int cols, int *hh, int *w)
{
	const struct help *h = (const struct help *)ov;
	overlay_list_size(lines, cols, (int)h->n + 4, hh, w);
}

static void help_draw(struct overlay *ov, WINDOW *w, const struct ov_style *st, int *cy, int *cx)
{
	struct help *h = (struct help *)ov;
	int wh, wd;
	getmaxyx(w, wh, wd);
	*cy = -1;
	*cx = 0;
	overlay_frame(w, "Help", st);
	int rows = wh - 2;
	h->page = wh - 3;
	if (h->top > (int)h->n - rows)
		h->top = (int)h->n - rows > 0 ? (int)h->n - rows : 0;
	for (int r = 0; r < rows && h->top + r < (int)h->n; r++) {
		const char *s = h->line[h->top + r];
		bool heading = s[0] && s[0] != ' ';
		wmove(w, 1 + r, 2);
		tr_put_text(w, s, strlen(s), wd - 4, st->text_flags, st->attrs[heading ? ROLE_SIDE_TITLE : ROLE_SIDE],
			    st->attrs[ROLE_CTRL]);
	}
}

static int help_key(struct overlay *ov, int k)
{
	struct help *h = (struct help *)ov;
	if (k == KEY_UP || k == 'k')
		h->top -= h->top > 0;
	else if (k == KEY_DOWN || k == 'j')
		h->top++;
	else if (k == KEY_PPAGE)
		h->top = h->top > h->page ? h->top - h->page : 0;
	else if (k == KEY_NPAGE || k == ' ')
		h->top += h->page;
	else
		return OV_CLOSE;
	return OV_KEEP;
}

static size_t help_hints(const struct overlay *ov, struct ov_hint *h, size_t max)
{
	(void)ov;
	static const struct ov_hint hints[] = {{"Up/Down", "scroll"}, {"Esc", "close"}};
	size_t n = sizeof hints / sizeof hints[0] < max ? sizeof hints / sizeof hints[0] : max;
	memcpy(h, hints, n * sizeof *h);
	return n;
}

static const struct overlay_class help_class = {
	.name = "help",
	.size = help_size,
	.draw = help_draw,
	.key = help_key,
	.hints = help_hints,
	.free = help_free,
};

struct overlay *help_open(const struct tui_settings *set)
{
	struct help *h = calloc(1, sizeof *h);
	if (!h)
		return NULL;
	h->ov.cls = &help_class;
	h->page = 10; /* until the box is drawn */
	add(h, "Keys");
	for (size_t i = 0; i < tui_n_keys; i++)
		if (tui_keys[i].name)
			add(h, "  %-18s %s", tui_keys[i].name, tui_keys[i].help);
	add(h, "%s", "");
	add(h, "Commands");
	for (size_t i = 0; i < tui_n_cmds; i++) {
		char name[64];
		snprintf(name, sizeof name, "/%s%s%s", tui_cmds[i].name, tui_cmds[i].args[0] ? " " : "",
			 tui_cmds[i].args);
		add(h, "  %-18s %s%s%s", name, tui_cmds[i].help, tui_cmds[i].alias ? "; also /" : "",
		    tui_cmds[i].alias ? tui_cmds[i].alias : "");
	}
	add(h, "%s", "");
	add(h, "Type a message and press Enter.  Start it with // to send a leading slash.");
	char s[512];
	cmds_settings_str(set, s, sizeof s);
	add(h, "Settings: %s", s);
	return &h->ov;
}
