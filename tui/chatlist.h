/*
 * chatlist.h - the conversation list (F3, /chats): a box over the chat that
 * lists the saved conversations, most recent first, and lets the user
 * open one, start a new one, rename, delete (after a y/N question) or
 * search them.
 *
 * This module keeps the box's state and turns keys into actions; the main
 * loop carries the actions out with chats.h and refills the list.  UI
 * thread only; no engine, no history calls here.
 */
#ifndef TTYCHAT_TUI_CHATLIST_H
#define TTYCHAT_TUI_CHATLIST_H

#include <curses.h>
#include <stdbool.h>
#include <stddef.h>

#include "chats.h"

enum chatlist_mode {
	CL_BROWSE,  /* moving in the list */
	CL_SEARCH,  /* typing the search text */
	CL_RENAME,  /* typing the new title */
	CL_CONFIRM, /* "delete? y/N" */
};

enum chatlist_action {
	CLA_NONE,
	CLA_CLOSE,
	CLA_OPEN,   /* open the selected one */
	CLA_NEW,    /* start a new conversation */
	CLA_RENAME, /* rename the selected one to field */
	CLA_DELETE, /* delete the selected one (confirmed) */
	CLA_SEARCH, /* list again with filter = field ("" = all) */
};

#define CHATLIST_FIELD_MAX 400

struct chatlist {
	struct chats_entry *v; /* owned */
	size_t n;
	size_t sel;
	int top;
	enum chatlist_mode mode;
	char field[CHATLIST_FIELD_MAX + 1]; /* the text being typed */
	size_t field_len;
	char filter[CHATLIST_FIELD_MAX + 1]; /* the search the list shows */
	char note[256];                      /* one line under the list (errors) */
	bool note_bad;
};

/* Replaces the entries (taking V), keeping the selection on SELECT_ID when
 * given and present. */
void chatlist_set(struct chatlist *l, struct chats_entry *v, size_t n, const char *select_id);
void chatlist_free(struct chatlist *l);
/* The selected entry, or NULL. */
const struct chats_entry *chatlist_selected(const struct chatlist *l);

/* One key (a curses code or byte).  Returns what to do. */
enum chatlist_action chatlist_key(struct chatlist *l, int key);

/* Draws into W (the box, border included) and keeps the scroll position;
 * CURRENT_ID marks the open conversation (may be NULL).  *CY, *CX: where
 * the cursor belongs while a field is edited, else *CY = -1. */
void chatlist_draw(WINDOW *w, struct chatlist *l, const char *current_id, const unsigned long *attrs,
		   unsigned text_flags, int *cy, int *cx);

/* "today 14:03", "2024-11-21 14:03" */
void chatlist_fmt_time(long long ms, char *buf, size_t n);

#endif
