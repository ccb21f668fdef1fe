/*
 * transcript.h - the conversation pane: items, their wrapped lines, the
 * scroll position, and drawing into a curses window.
 *
 * An item is one user message, one reply, or a notice.  Its text is kept
 * exactly as it was typed or generated (that is what goes back to the
 * engine, so the KV prefix matches); what is drawn is the sanitised,
 * wrapped view from text.h (user text, notices) or the Markdown layout
 * from md.h (replies), cached per item for the current width.  A reply
 * that is still streaming re-lays out only its last block per append.
 *
 * Scrolling: `follow` keeps the end in view.  When new lines push past the
 * bottom, the view jumps by a third of the pane rather than one line at a
 * time: a sidebar beside the pane keeps the terminal from scrolling it with
 * one escape sequence, so each scroll repaints the pane, and jumping makes
 * that happen rarely (this is what keeps bytes per token low).
 *
 * UI thread only.  Functions returning int give 0 or -1 (out of memory).
 */
#ifndef TTYCHAT_TUI_TRANSCRIPT_H
#define TTYCHAT_TUI_TRANSCRIPT_H

#include <stdbool.h>
#include <stddef.h>

#include <curses.h>

#include "engine.h"
#include "md.h"
#include "text.h"

/* TR_REASONING: a thinking model's reasoning, just above its reply:
 * drawn dim under a header (the label: token count and time), folded to
 * that header (TRF_FOLDED); never sent back to the model, never saved. */
/* TR_TOOLCALL: a tool call the model made (tool-taking templates), just
 * below its reply: its name in the header, its arguments as code.  Only
 * shown: the reply's own text carries the call to the model and the
 * history, and nothing runs it. */
enum tr_kind { TR_USER, TR_ASSISTANT, TR_NOTICE, TR_ERROR, TR_REASONING, TR_TOOLCALL };

enum {
	TRF_STREAMING = 1 << 0, /* a reply still arriving */
	TRF_STOPPED = 1 << 1,   /* cancelled: the partial reply is kept */
	TRF_CONTEXT = 1 << 2,   /* cut short by a full context */
	TRF_LENGTH = 1 << 3,    /* cut at max-tokens */
	TRF_FAILED = 1 << 4,    /* the engine reported an error */
	TRF_FOLDED = 1 << 5,    /* reasoning shown as its header only */
};

#define TR_INDENT 2 /* body text is indented under its header */

struct tr_item {
	enum tr_kind kind;
	char *text;
	size_t len, cap;
	unsigned flags;
	char label[128];          /* header of a reply: the model's name */
	struct text_lines lines;  /* wrapped body, valid when wrap_w > 0 */
	struct md_doc md;         /* a reply's body: its Markdown laid out (md.h) */
	char *view;               /* a reply with tool calls: the text it shows without them
				     (text stays what the model wrote), else NULL */
	size_t view_len;
	int wrap_w;
	unsigned wrap_flags;
	size_t wrapped_len;       /* bytes of text the lines cover */
};

struct transcript {
	struct tr_item *v;
	size_t n, cap;
	int width, height;        /* of the pane */
	unsigned text_flags;      /* TEXT_ASCII, TEXT_NOWRAP_CODE */
	bool plain;               /* no colours: replies keep their Markdown markers */
	size_t top;               /* first display line shown */
	bool follow;              /* keep the end in view */
	bool unseen;              /* new lines arrived below the view */
	size_t total;             /* display lines, after tr_layout() */
};

void tr_init(struct transcript *t);
void tr_free(struct transcript *t);

/* Adds an item; returns its index or -1. */
long tr_add(struct transcript *t, enum tr_kind kind, const char *text, size_t len, unsigned flags);
/* Adds an item before item AT (items from AT move down one). */
long tr_insert(struct transcript *t, size_t at, enum tr_kind kind, const char *text, size_t len, unsigned flags);
int tr_append(struct transcript *t, size_t i, const char *s, size_t n);
/* Finds the tool calls in reply I (FORMAT: engine_tools_format()'s name
 * for the model; "" finds none): the reply then shows its text without
 * them, and a TR_TOOLCALL item per call follows it.  Returns the number
 * of calls shown (0 also when out of memory). */
size_t tr_tool_calls(struct transcript *t, size_t i, const char *format);
/* Drops items [i, n). */
void tr_truncate(struct transcript *t, size_t i);
/* Sets the pane size and text flags; wrapping is redone lazily. */
void tr_resize(struct transcript *t, int width, int height, unsigned text_flags);

/* Wraps what changed and updates total, top and unseen. */
void tr_layout(struct transcript *t);

void tr_scroll(struct transcript *t, long delta);
void tr_scroll_top(struct transcript *t);
void tr_scroll_bottom(struct transcript *t);

/* The messages a submit sends for items [0, UPTO): SYSTEM first (unless
 * NULL or empty), then the user and reply items that have text (notices
 * are not sent), consecutive ones of one role joined by a blank line so
 * that strict templates always see alternating turns.  The texts point
 * into the transcript or into MERGED, which the struct owns: it is valid
 * until the transcript changes or tr_msgs_free(). */
struct tr_msgs {
	struct engine_msg *v;
	size_t n;
	char **merged;
	size_t n_merged;
};
int tr_messages(const struct transcript *t, size_t upto, const char *system, struct tr_msgs *out);
void tr_msgs_free(struct tr_msgs *m);
/* How many messages of items [0, UPTO) a submit would send, SYSTEM aside
 * and before joining (the history's count of messages). */
size_t tr_count_msgs(const struct transcript *t, size_t upto);

/* Draws the visible lines into W (the pane's size) with the role
 * attributes ATTRS (see theme.h). */
void tr_draw(struct transcript *t, WINDOW *w, const unsigned long *attrs);

/* Draws one run of text clusters at the cursor of W, at most MAXW columns:
 * the primitive the input line and sidebar share.  Returns columns used. */
int tr_put_text(WINDOW *w, const char *s, size_t len, int maxw, unsigned text_flags, unsigned long attr,
		unsigned long ctrl_attr);

#endif
