/*
 * app.h - the UI root of the full-screen chat, and what the files of tui/
 * that act on it share: app.c (the loop, layout and drawing, the boxes,
 * the conversation with its model and history), reply.c (sending the
 * conversation, and the engine's events) and actions.c (what keys and
 * slash commands do).  Private to those three; tui.h is tui/'s entry.
 *
 * There is one struct app, tui_run()'s.  Handlers change it and set bits
 * in dirty; the loop draws what they marked once per pass.  UI thread
 * only.
 */
#ifndef TTYCHAT_TUI_APP_H
#define TTYCHAT_TUI_APP_H

#include <curses.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "catalog.h"
#include "chats.h"
#include "cmds.h"
#include "engine.h"
#include "overlay.h"
#include "session.h"
#include "status.h"
#include "theme.h"
#include "transcript.h"
#include "tty.h"
#include "tui.h"

#define MAX_EXPORTS 8

/* What to draw on the next pass. */
enum {
	D_TRANS = 1 << 0,
	D_SIDE = 1 << 1,
	D_STATUS = 1 << 2,
	D_INPUT = 1 << 3,
	D_HINT = 1 << 4,
	D_OVER = 1 << 5,
	D_LAYOUT = 1 << 6,
	D_ALL = 0x7f,
};

struct app {
	const struct tui_opts *o;
	engine *eng;
	int status;
	bool quit;

	/* screen */
	struct tty tty;
	int lines, cols;
	bool too_small, narrow, sidebar_on, use_color, ascii, cursor_on;
	WINDOW *w_trans, *w_side, *w_status, *w_input, *w_hint, *w_over;
	int input_h;
	unsigned dirty;
	struct theme theme;
	unsigned long attrs[ROLE_COUNT];
	unsigned text_flags;

	/* conversation */
	struct transcript tr;
	uint64_t conv;
	char *system;             /* the system prompt in use, or NULL */
	bool system_user;         /* set by --system or /system (not the model's) */
	long reply;               /* index of the streaming reply, or -1 */
	int req;                  /* its request id */
	long think;               /* index of its reasoning item (just above it), or -1 */
	uint32_t think_n;         /* reasoning pieces so far (DONE gives the exact count) */
	double think_t0, think_t1;/* first and last reasoning piece (ms) */
	long editing;             /* user item being edited with /edit, or -1 */
	char *preset;             /* text for the input line once readline is done */
	char *inject;             /* TTYCHAT_TEST_INJECT bytes, used once */
	size_t inject_len;

	/* model */
	int load_req;
	char load_spec[4096];     /* what to remember as the last model */
	char model_path[4096];
	struct tui_settings set;
	struct tui_status st;
	struct config_settings prefs; /* settings.json (empty when unreadable) */
	struct session_file advice;   /* the loaded model file's sampling advice */
	unsigned advice_set;          /* SESSION_SET_*: the fields taken from it */
	enum engine_spec spec;        /* speculative decoding as decided (flags > models.d) */
	int draft_max;

	/* live numbers */
	bool side_owed;
	double side_next;

	/* the box over the chat (help, picker, conversations), or NULL */
	struct overlay *over;

	/* history (chats.h): NULL when it is off */
	struct chats *ch;
	char hist_off[512];       /* why it is off */
	char hist_state[96];      /* the sidebar's line */
	char chat_title[512];     /* the conversation's title, for the sidebar */
	bool conv_touched;        /* a reply was asked for since the conversation was opened */
	bool unsaved_warned;      /* leaving with unsaved messages was refused once */
	double retry_at;          /* next retry of unsaved messages */
	int import_req;           /* the KV snapshot import in flight */
	struct {
		int req;
		char conv_id[CHATS_ID_LEN + 1];
		char model_id[33];
	} exports[MAX_EXPORTS];   /* KV snapshot exports in flight */
	size_t n_exports;
};

static inline bool busy(const struct app *a)
{
	return a->reply >= 0;
}

static inline double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- app.c ---- */

/* Adds a notice or an error to the transcript (above a reply that has not
 * started yet). */
void notice(struct app *a, enum tr_kind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* TEXT goes into the input line once readline is done with the key. */
void set_preset(struct app *a, const char *text);
void open_help(struct app *a);
void open_picker(struct app *a);
/* The conversation list, of those containing NEEDLE (NULL: all). */
void open_chats(struct app *a, const char *needle);
/* A load ended: closes the picker if it is open. */
void close_picker(struct app *a);
/* After the terminal was given to another program. */
void resume_screen(struct app *a);
/* ROLE's message is committed: the hooks of tui.h, then the history. */
void commit(struct app *a, const char *role, const char *text, size_t len, bool partial);
/* The same with a reply's reasoning, saved apart (NULL, 0: none). */
void commit_reasoned(struct app *a, const char *role, const char *text, size_t len, const char *reasoning,
		     size_t rlen, bool partial);
/* The conversation goes back to its first ITEMS_KEPT transcript items. */
void rewind_to(struct app *a, size_t items_kept);
/* The sidebar's lines about the conversation and its history. */
void hist_update_state(struct app *a);
/* Restores the open conversation's KV snapshot for the loaded model. */
void import_kv(struct app *a);
/* A KV export answered (CONV_EXPORT or ERROR): the snapshot is filed. */
void on_export(struct app *a, const struct engine_event *ev);
/* ---- convo.c ---- */

/* Retries unsaved messages when it is time. */
void convo_retry(struct app *a);
/* Asks the engine for the conversation's KV cache, filed when it comes
 * (only when it changed since it was opened). */
void convo_export_kv(struct app *a);
/* Leaves the open conversation (a reply still coming is stopped and
 * saved, unsaved messages retried, the KV cache filed); false when
 * refused (unsaved messages, said once). */
bool convo_leave(struct app *a);
/* The transcript and the numbers of a conversation that starts empty. */
void convo_clear_view(struct app *a);
/* Opens saved conversation ID in place of the current one. */
bool convo_open(struct app *a, const char *id);
/* Opens the history (asking for the passphrase on SIG_FD's terms) and
 * reopens the conversation held last. */
void convo_start_history(struct app *a, int sig_fd);
/* On the way out: the last save; what is still unsaved is said in MSG. */
void convo_finish_history(struct app *a, char *msg, size_t msglen);

/* "/model NAME": loads a models.d entry or a file. */
void app_load_spec(struct app *a, const char *spec);
/* /new (and /clear, KEEP_SYSTEM): false when refused. */
bool app_reset_conversation(struct app *a, bool keep_system);

/* ---- reply.c ---- */

/* The user sent TEXT: it is added and committed, and a reply asked for. */
void reply_send(struct app *a, const char *text);
/* Asks the engine for a reply to the conversation as it stands. */
void reply_start(struct app *a);
/* One engine event. */
void reply_on_event(struct app *a, struct engine_event *ev);

/* ---- actions.c ---- */

/* Does ACT (a key's, or a command's with its argument ARG, "" if none). */
void actions_do(struct app *a, enum tui_act act, const char *arg);
/* readline's line handler (input.h): a message, a command, an edit. */
void actions_on_line(void *ctx, char *line);

#endif
