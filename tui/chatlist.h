/*
 * chatlist.h - the conversation list (F3, /chats): a box over the chat that
 * lists the saved conversations, most recent first, and lets the user
 * open one, start a new one, rename, delete (after a y/N question) or
 * search them.
 *
 * An overlay (overlay.h).  It lists, searches and renames through the
 * history handle it is given (chats.h); what touches the open conversation
 * or the engine comes back to the holder as an action: CHATLIST_OPEN and
 * CHATLIST_DELETE (of chatlist_selected()), CHATLIST_NEW, and
 * CHATLIST_RENAMED (a title changed: the sidebar may show it).  UI thread
 * only.
 *
 * chatlist_key() and chatlist_set() are the pure part (keys to actions on
 * the box's own state), kept public for tests.
 */
#ifndef TTYCHAT_TUI_CHATLIST_H
#define TTYCHAT_TUI_CHATLIST_H

#include <curses.h>
#include <stdbool.h>
#include <stddef.h>

#include "chats.h"
#include "overlay.h"

enum {
	CHATLIST_OPEN = OV_ACTION, /* open the selected conversation (a readable one) */
	CHATLIST_NEW,              /* start a new conversation */
	CHATLIST_DELETE,           /* delete the selected one: the user said yes */
	CHATLIST_RENAMED,          /* a conversation was renamed */
};

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

extern const struct overlay_class chatlist_class;

struct chatlist {
	struct overlay ov;
	struct chats *ch;      /* the holder's history; not owned */
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

/* The box over history CH (which must outlive it), listing the
 * conversations that contain NEEDLE (NULL: all), the open one selected.
 * A listing that fails is said in the box.  NULL when out of memory. */
struct overlay *chatlist_open(struct chats *ch, const char *needle);
/* OV as a conversation list, or NULL when it is another overlay. */
struct chatlist *chatlist_of(struct overlay *ov);
/* The selected entry, or NULL. */
const struct chats_entry *chatlist_selected(const struct chatlist *l);
/* Deletes conversation ID from the history and lists again; 0, or -1
 * with the reason in the box's note. */
int chatlist_remove(struct chatlist *l, const char *id);

/* Replaces the entries (taking V), keeping the selection on SELECT_ID when
 * given and present. */
void chatlist_set(struct chatlist *l, struct chats_entry *v, size_t n, const char *select_id);
void chatlist_free(struct chatlist *l);
/* One key (a curses code or byte) on the box's state.  Returns what the
 * key asks for. */
enum chatlist_action chatlist_key(struct chatlist *l, int key);

/* "today 14:03", "2024-11-21 14:03" */
void chatlist_fmt_time(long long ms, char *buf, size_t n);

#endif
