/*
 * overlay.h - the boxes over the chat: one small interface for every one
 * of them (help F1, the model picker F2, the conversation list F3, the
 * history unlock box), the way htop's panels and tmux's modes are.
 *
 * A component keeps its state in a struct that begins with struct overlay
 * and points at a class of functions.  Its open function allocates it;
 * overlay_close() frees it.  The main loop holds at most one; it asks it
 * for the size of its box when the screen is laid out, hands it every key
 * while it is open, has it draw itself once per loop pass when something
 * changed, and shows its hints on the bottom line.  (The unlock box is
 * held by a loop of its own in unlock.c: the history asks for the
 * passphrase from inside a call, before the chat's loop runs.)  A key never draws: it changes the component's state and returns
 * what the holder must do.
 *
 * What a component cannot do alone (load a model, open a conversation)
 * comes back from key() as an action number of its own (OV_ACTION and up,
 * named in the component's header), which the holder carries out.
 *
 * UI thread only; curses must be set up before anything here draws.
 */
#ifndef TTYCHAT_TUI_OVERLAY_H
#define TTYCHAT_TUI_OVERLAY_H

#include <curses.h>
#include <stddef.h>

/* What key() returns. */
enum {
	OV_KEEP = 0,   /* the key was the overlay's (or nothing): it stays open */
	OV_CLOSE = 1,  /* close it */
	OV_ACTION = 2, /* the first of a component's own actions */
};

/* One entry of the hints line: a key and what it does. */
struct ov_hint {
	const char *key, *what;
};

/* How to draw: the theme's roles (theme.h) and the text flags (text.h). */
struct ov_style {
	const unsigned long *attrs;
	unsigned text_flags;
};

struct overlay;

struct overlay_class {
	const char *name;
	/* The box's size (border included) on a screen of LINES x COLS. */
	void (*size)(const struct overlay *ov, int lines, int cols, int *h, int *w);
	/* Draws the whole box into W (of the size above).  *CY, *CX: where the
	 * cursor belongs while a text field is edited; *CY = -1 hides it. */
	void (*draw)(struct overlay *ov, WINDOW *w, const struct ov_style *st, int *cy, int *cx);
	/* One key (a curses code or a byte): OV_KEEP, OV_CLOSE or an action. */
	int (*key)(struct overlay *ov, int key);
	/* Fills at most MAX hints for the bottom line; returns how many
	 * (NULL: the box shows its own). */
	size_t (*hints)(const struct overlay *ov, struct ov_hint *h, size_t max);
	/* Frees the component, the struct itself included (NULL: not owned). */
	void (*free)(struct overlay *ov);
};

struct overlay {
	const struct overlay_class *cls;
};

/* Frees OV through its class (NULL is fine). */
void overlay_close(struct overlay *ov);

/* A new window for OV's box, centred on a screen of LINES x COLS, or NULL. */
WINDOW *overlay_window(const struct overlay *ov, int lines, int cols);
/* True when W is no longer the size OV wants (its content changed size). */
int overlay_resized(const struct overlay *ov, WINDOW *w, int lines, int cols);

/* Clears W and draws its border with TITLE: the frame every box shares. */
void overlay_frame(WINDOW *w, const char *title, const struct ov_style *st);

/* The usual width and height of a list box: up to 110 columns, the whole
 * height but a row above and below, and no taller than WANT rows. */
void overlay_list_size(int lines, int cols, int want, int *h, int *w);

#endif
