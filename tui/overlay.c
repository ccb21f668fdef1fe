/*
 * overlay.c - what every box over the chat shares (see overlay.h): its
 * window, centred on the screen, and its frame.  The components live in
 * help.c, picker.c, chatlist.c and unlock.c.
 */
#include "config.h"

#include "overlay.h"

#include "theme.h"

void overlay_close(struct overlay *ov)
{
	if (ov && ov->cls->free)
		ov->cls->free(ov);
}

WINDOW *overlay_window(const struct overlay *ov, int lines, int cols)
{
	int h = 0, w = 0;
	ov->cls->size(ov, lines, cols, &h, &w);
	if (h < 1 || w < 1)
		return NULL;
	int y = (lines - h) / 2, x = (cols - w) / 2;
	return newwin(h, w, y < 0 ? 0 : y, x < 0 ? 0 : x);
}

int overlay_resized(const struct overlay *ov, WINDOW *w, int lines, int cols)
{
	int h = 0, wd = 0;
	ov->cls->size(ov, lines, cols, &h, &wd);
	return !w || getmaxy(w) != h || getmaxx(w) != wd;
}

void overlay_frame(WINDOW *w, const char *title, const struct ov_style *st)
{
	werase(w);
	wattrset(w, (attr_t)st->attrs[ROLE_BORDER]);
	box(w, 0, 0);
	wattrset(w, (attr_t)st->attrs[ROLE_TITLE]);
	mvwprintw(w, 0, 2, " %s ", title);
	wattrset(w, A_NORMAL);
}

void overlay_list_size(int lines, int cols, int want, int *h, int *w)
{
	*w = cols - 4 < 110 ? cols - 4 : 110;
	*h = lines - 2;
	if (want < *h)
		*h = want;
}
