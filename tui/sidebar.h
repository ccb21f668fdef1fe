/*
 * sidebar.h - the live numbers: a sidebar on wide terminals, one status
 * line on narrow ones.  Both draw the same struct tui_status (status.h),
 * which the main loop fills from engine events and from /proc/meminfo and
 * has drawn at most four times a second while a reply streams.  UI thread
 * only.
 */
#ifndef TTYCHAT_TUI_SIDEBAR_H
#define TTYCHAT_TUI_SIDEBAR_H

#include <curses.h>
#include <stdbool.h>
#include <stdint.h>

#include "status.h"

/* WIDE: the sidebar (first column is its border).  Draws only what fits. */
void sidebar_draw(WINDOW *w, const struct tui_status *st, const unsigned long *attrs, unsigned text_flags);
/* The status line: in NARROW mode the key numbers, else the state text. */
void statusbar_draw(WINDOW *w, const struct tui_status *st, bool narrow, const unsigned long *attrs,
		    unsigned text_flags);

#endif
