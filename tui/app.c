/*
 * app.c - the TUI's main loop and state (see tui.h).
 *
 * One poll() waits on three things: the terminal, the engine's event fd and
 * a self-pipe that signal handlers write one byte to (SIGWINCH, SIGTERM,
 * SIGHUP, SIGINT, SIGTSTP, SIGCONT).  Handlers of all three only change
 * state and mark parts of the screen dirty; once per pass the dirty parts
 * are drawn from state with wnoutrefresh() and sent with one doupdate().
 * The poll timeout is infinite unless the sidebar owes an update (live
 * numbers are redrawn at most four times a second), so an idle ttychat
 * uses no CPU.
 *
 * Keys: curses decodes function keys (tty.c adds pastes and Alt keys); our
 * own keys come from the table in cmds.c, everything else goes to readline
 * (input.c).  A lone Esc (no byte following within ESCDELAY) stops the
 * reply; Esc followed by a byte is Alt-that-byte.  Bracketed paste is
 * inserted as text, so a pasted block never sends itself line by line.
 * While a box (overlay.h) is open, every key is the box's.
 *
 * Conversation: the transcript holds every item; the messages sent to the
 * engine are the system prompt plus the user and reply items (notices are
 * not sent), with consecutive messages of one role merged so that strict
 * templates always see alternating turns.  Each submit sends the whole
 * conversation and the engine reuses the KV prefix it already has.
 *
 * The terminal is restored on every exit path: normal quit, SIGTERM and
 * SIGHUP (through the loop), and fatal signals (tty.c: a handler that
 * restores the saved termios and writes the precomputed reset sequence,
 * then re-raises).
 */
#include "config.h"

#include "tui.h"

#include <cjson/cJSON.h>
#include <curses.h>
#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "chatlist.h"
#include "chats.h"
#include "cmds.h"
#include "help.h"
#include "input.h"
#include "models.h"
#include "overlay.h"
#include "picker.h"
#include "sidebar.h"
#include "status.h"
#include "text.h"
#include "theme.h"
#include "transcript.h"
#include "tty.h"
#include "unlock.h"

#define MIN_COLS 40
#define MIN_LINES 12
#define SIDEBAR_MIN_COLS 96
#define STATS_INTERVAL_MS 250.0
#define MAX_REPLY_BYTES (16u << 20)
#define HIST_RETRY_MS 10000.0
#define MAX_EXPORTS 8
#define EXIT_SAVE_WAIT_MS 30000

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

/* ---- small helpers --------------------------------------------------------- */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void notice(struct app *a, enum tr_kind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void notice(struct app *a, enum tr_kind kind, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	/* a notice goes above a reply that has not started yet */
	if (a->reply >= 0 && a->tr.v[a->reply].len == 0) {
		if (tr_insert(&a->tr, (size_t)a->reply, kind, buf, strlen(buf), 0) >= 0)
			a->reply++;
	} else {
		tr_add(&a->tr, kind, buf, strlen(buf), 0);
	}
	a->dirty |= D_TRANS;
}

static bool busy(const struct app *a)
{
	return a->reply >= 0;
}

static void set_preset(struct app *a, const char *text)
{
	free(a->preset);
	a->preset = strdup(text);
}

/* Closes the box over the chat (if one is open); the screen is laid out
 * again without it. */
static void close_overlay(struct app *a)
{
	overlay_close(a->over);
	a->over = NULL;
	a->dirty |= D_LAYOUT;
}

/* Opens OV (NULL: out of memory, nothing opens) in place of any other. */
static void open_overlay(struct app *a, struct overlay *ov)
{
	close_overlay(a);
	a->over = ov;
}

/* A load ended: the picker that started it has done its job. */
static void close_picker(struct app *a)
{
	if (a->over && a->over->cls == &picker_class)
		close_overlay(a);
}

/* ---- history ---------------------------------------------------------------- */

/* What the conversation is held with, for its history record. */
static void hist_settings(const struct app *a, struct chats_settings *s)
{
	chats_settings_init(s);
	s->model = a->load_spec[0] ? a->load_spec : a->model_path[0] ? a->model_path : NULL;
	s->system_prompt = a->system;
	s->temperature = a->set.s.temperature;
	s->top_p = a->set.s.top_p;
	s->min_p = a->set.s.min_p;
	s->repeat_penalty = a->set.s.repeat_penalty;
	s->top_k = a->set.s.top_k;
	s->context_size = a->st.ctx_size ? a->st.ctx_size : a->st.have_info ? a->st.info.n_ctx : 0;
}

/* The sidebar's "Chat" lines. */
static void hist_update_state(struct app *a)
{
	size_t pending = a->ch ? chats_pending(a->ch) : 0;
	a->st.chat_bad = !a->ch || pending > 0;
	if (!a->ch)
		snprintf(a->hist_state, sizeof a->hist_state, "history off");
	else if (pending)
		snprintf(a->hist_state, sizeof a->hist_state, "%zu unsaved, retrying", pending);
	else if (!chats_id(a->ch))
		snprintf(a->hist_state, sizeof a->hist_state, "new: saved once you send");
	else
		snprintf(a->hist_state, sizeof a->hist_state, "saved, encrypted");
	if (pending == 0)
		a->unsaved_warned = false;
	snprintf(a->chat_title, sizeof a->chat_title, "%s", a->ch ? chats_title(a->ch) : "");
	a->st.chat_title = a->ch ? a->chat_title : NULL;
	a->st.chat_state = a->hist_state;
	a->dirty |= D_SIDE;
}

static void commit(struct app *a, const char *role, const char *text, size_t len, bool partial)
{
	if (a->o->on_commit)
		a->o->on_commit(a->o->hook_ctx, a->conv, role, text, partial);
	if (!a->ch)
		return;
	struct chats_settings s;
	hist_settings(a, &s);
	int rc = chats_commit(a->ch, &s, strcmp(role, "user") == 0 ? CHATS_USER : CHATS_ASSISTANT, text, len, partial);
	if (rc == CHATS_UNSAVED) {
		notice(a, TR_ERROR, "history: not saved yet: %s (kept in memory, retrying)", chats_errmsg(a->ch));
		a->retry_at = now_ms() + HIST_RETRY_MS;
	} else if (rc < 0) {
		notice(a, TR_ERROR, "history: %s", chats_errmsg(a->ch));
	}
	hist_update_state(a);
}

static void rewind_to(struct app *a, size_t items_kept)
{
	size_t n = tr_count_msgs(&a->tr, items_kept);
	if (a->o->on_rewind)
		a->o->on_rewind(a->o->hook_ctx, a->conv, n);
	if (a->ch)
		chats_rewind(a->ch, n);
}

/* Retries unsaved messages when it is time. */
static void hist_retry(struct app *a)
{
	if (!a->ch || chats_pending(a->ch) == 0 || now_ms() < a->retry_at)
		return;
	if (chats_flush(a->ch) == 0 && chats_pending(a->ch) == 0)
		notice(a, TR_NOTICE, "history: the unsaved messages are saved now");
	else
		a->retry_at = now_ms() + HIST_RETRY_MS;
	hist_update_state(a);
}

/* Asks the engine for the conversation's KV cache, to file it when the
 * answer comes (only when it changed since it was opened). */
static void export_kv(struct app *a)
{
	const char *id = a->ch ? chats_id(a->ch) : NULL;
	if (!id || !a->conv_touched || !a->st.have_info || !a->st.info.model_id[0] || a->n_exports >= MAX_EXPORTS)
		return;
	int req = engine_conv_export(a->eng, a->conv);
	if (req <= 0)
		return;
	a->exports[a->n_exports].req = req;
	snprintf(a->exports[a->n_exports].conv_id, sizeof a->exports[0].conv_id, "%s", id);
	snprintf(a->exports[a->n_exports].model_id, sizeof a->exports[0].model_id, "%s", a->st.info.model_id);
	a->n_exports++;
	a->conv_touched = false;
}

/* A CONV_EXPORT answer: file the snapshot. */
static void on_export(struct app *a, const struct engine_event *ev)
{
	for (size_t i = 0; i < a->n_exports; i++) {
		if (a->exports[i].req != ev->request)
			continue;
		if (a->ch && a->exports[i].conv_id[0] && ev->type == ENGINE_EV_CONV_EXPORT && ev->blob && ev->blob_len &&
		    chats_kv_save(a->ch, a->exports[i].conv_id, a->exports[i].model_id, ev->blob, ev->blob_len) != 0 &&
		    !a->quit)
			notice(a, TR_NOTICE, "%s", chats_errmsg(a->ch));
		a->exports[i] = a->exports[--a->n_exports];
		return;
	}
}

/* Restores the open conversation's KV snapshot for the loaded model, if
 * there is one, before the next submit (requests run in order). */
static void import_kv(struct app *a)
{
	void *blob;
	size_t len;
	if (!a->ch || !chats_id(a->ch) || !a->st.have_info || !a->st.info.model_id[0] || busy(a) ||
	    chats_kv_load(a->ch, a->st.info.model_id, &blob, &len) != 0)
		return;
	int req = engine_conv_import(a->eng, a->conv, blob, len);
	free(blob);
	if (req > 0)
		a->import_req = req;
}

/* ---- the conversation and the engine -------------------------------------- */

static void start_reply(struct app *a)
{
	if (a->st.phase == PH_NOMODEL) {
		notice(a, TR_ERROR, "no model is loaded: F2 picks one");
		return;
	}
	size_t upto = a->tr.n;
	long i = tr_add(&a->tr, TR_ASSISTANT, "", 0, TRF_STREAMING);
	if (i < 0) {
		notice(a, TR_ERROR, "out of memory");
		return;
	}
	snprintf(a->tr.v[i].label, sizeof a->tr.v[i].label, "%s", a->st.model);
	struct tr_msgs m;
	if (tr_messages(&a->tr, upto, a->system, &m) != 0) {
		tr_truncate(&a->tr, (size_t)i);
		notice(a, TR_ERROR, "out of memory");
		return;
	}
	struct engine_gen_opts g = {.max_tokens = a->set.max_tokens, .add_generation_prompt = true};
	int req = m.n ? engine_submit(a->eng, a->conv, m.v, m.n, &a->set.s, &g) : ENGINE_E_INVAL;
	tr_msgs_free(&m);
	if (req <= 0) {
		tr_truncate(&a->tr, (size_t)i);
		notice(a, TR_ERROR, "cannot send: %s", engine_last_error(a->eng));
		return;
	}
	a->reply = i;
	a->req = req;
	a->conv_touched = true;
	status_submit(&a->st, now_ms());
	a->tr.follow = true;
	a->dirty |= D_TRANS | D_SIDE | D_STATUS | D_HINT;
	if (a->inject) {
		tr_append(&a->tr, (size_t)i, a->inject, a->inject_len);
		free(a->inject);
		a->inject = NULL;
	}
}

static void send_message(struct app *a, const char *text)
{
	if (busy(a)) {
		notice(a, TR_NOTICE, "a reply is still coming: Esc stops it (your text is back in the input)");
		set_preset(a, text);
		return;
	}
	if (a->st.phase == PH_NOMODEL) {
		notice(a, TR_ERROR, "no model is loaded: F2 picks one (your text is back in the input)");
		set_preset(a, text);
		return;
	}
	if (tr_add(&a->tr, TR_USER, text, strlen(text), 0) < 0) {
		notice(a, TR_ERROR, "out of memory");
		return;
	}
	commit(a, "user", text, strlen(text), false);
	start_reply(a);
}

static void apply_entry_defaults(struct app *a, const struct model_entry *me)
{
	struct engine_sampling d;
	engine_sampling_default(&d);
	if (me) {
		if (me->temperature >= 0)
			d.temperature = me->temperature;
		if (me->top_k >= 0)
			d.top_k = me->top_k;
		if (me->top_p >= 0)
			d.top_p = me->top_p;
		if (me->min_p >= 0)
			d.min_p = me->min_p;
		if (me->repeat_penalty > 0)
			d.repeat_penalty = me->repeat_penalty;
	}
	unsigned keep = a->set.user_set;
	struct engine_sampling *s = &a->set.s;
	if (!(keep & SET_TEMP))
		s->temperature = d.temperature;
	if (!(keep & SET_TOPK))
		s->top_k = d.top_k;
	if (!(keep & SET_TOPP))
		s->top_p = d.top_p;
	if (!(keep & SET_MINP))
		s->min_p = d.min_p;
	if (!(keep & SET_REP))
		s->repeat_penalty = d.repeat_penalty;
	if (!a->system_user) {
		free(a->system);
		a->system = me && me->system_prompt ? strdup(me->system_prompt) : NULL;
	}
}

/* Starts loading a model; ME (may be NULL for a bare file) gives defaults. */
static void load_model(struct app *a, const char *spec, const char *path, const char *display, uint32_t ctx,
		       const struct model_entry *me, bool apply_defaults)
{
	if (busy(a) || a->st.phase == PH_LOADING)
		engine_cancel(a->eng);
	/* the conversation's cache in the model being left is filed first
	 * (requests run in order), then freed */
	export_kv(a);
	engine_drop_conv(a->eng, a->conv);
	/* a models.d entry may carry a chat template and a KV cache type */
	struct engine_load_opts lo = {
		.n_ctx = ctx,
		.kv_type = a->o->kv_q8 || (me && me->kv_type == 1) ? ENGINE_KV_Q8_0 : ENGINE_KV_F16,
		.template_override = me ? me->template_text : NULL,
	};
	/* --device and --gpu-layers, else the models.d entry's */
	const int dev = a->o->device >= 0 ? a->o->device : me ? me->device : -1;
	if (dev >= 0)
		lo.device = (enum engine_device)dev;
	lo.gpu_layers = config_gpu_layers(a->o->gpu_layers != -2 ? a->o->gpu_layers : me ? me->gpu_layers : -1);
	int r = engine_load(a->eng, path, &lo);
	if (r <= 0) {
		notice(a, TR_ERROR, "cannot load %s: %s", display, engine_last_error(a->eng));
		return;
	}
	a->load_req = r;
	snprintf(a->load_spec, sizeof a->load_spec, "%s", spec);
	snprintf(a->model_path, sizeof a->model_path, "%s", path);
	/* a bare file is shown by its name, not its whole path */
	const char *slash = strrchr(display, '/');
	snprintf(a->st.model, sizeof a->st.model, "%s", slash && slash[1] ? slash + 1 : display);
	a->st.phase = PH_LOADING;
	a->st.progress = 0;
	a->st.have_info = false;
	a->st.ctx_used = 0;
	a->st.ctx_size = 0;
	a->st.kv_bytes = 0;
	if (apply_defaults)
		apply_entry_defaults(a, me);
	a->dirty |= D_SIDE | D_STATUS | D_HINT;
}

static void load_spec(struct app *a, const char *spec)
{
	struct model_entry me;
	char err[1024];
	if (config_resolve_model(spec, &me, err, sizeof err) != 0) {
		notice(a, TR_ERROR, "%s", err);
		return;
	}
	load_model(a, spec, me.path, me.display_name, models_entry_ctx(a->o->n_ctx, me.context_size, me.remote), &me,
		   true);
	config_entry_free(&me);
}

/* ---- the engine's events ---------------------------------------------------- */

/* The model being loaded is ready. */
static void ev_loaded(struct app *a, const struct engine_event *ev)
{
	status_loaded(&a->st, ev, busy(a));
	a->st.mem_avail = models_mem_available();
	char p[32];
	models_fmt_params(ev->info.n_params, p, sizeof p);
	notice(a, TR_NOTICE, "loaded %s (%s, %s parameters, %s), context %u tokens, on %s", a->st.model, ev->info.arch,
	       p, ev->info.quant, ev->info.n_ctx, ev->info.backend);
	/* CUDA asked for but not usable, or fewer GPU layers (also in the status line) */
	if (ev->info.notice[0])
		notice(a, TR_NOTICE, "%s", ev->info.notice);
	if (a->load_spec[0]) {
		char err[256];
		models_last_write(a->load_spec, err, sizeof err);
	}
	a->dirty |= D_ALL & ~D_LAYOUT;
	close_picker(a);
	/* the open conversation may have a snapshot for this model */
	import_kv(a);
}

/* A piece of the reply. */
static void ev_token(struct app *a, const struct engine_event *ev)
{
	if (a->tr.v[a->reply].len + ev->text_len > MAX_REPLY_BYTES) {
		engine_cancel(a->eng);
		return;
	}
	tr_append(&a->tr, (size_t)a->reply, ev->text, ev->text_len);
	if (status_token(&a->st, ev, now_ms()))
		a->dirty |= D_STATUS | D_SIDE | D_HINT;
	a->side_owed = true;
	a->dirty |= D_TRANS;
}

/* The reply ended: it is marked with why and committed. */
static void ev_done(struct app *a, const struct engine_event *ev)
{
	struct tr_item *it = &a->tr.v[a->reply];
	it->flags &= ~(unsigned)TRF_STREAMING;
	if (ev->stop == ENGINE_STOP_CANCELLED)
		it->flags |= TRF_STOPPED;
	else if (ev->stop == ENGINE_STOP_CONTEXT)
		it->flags |= TRF_CONTEXT;
	else if (ev->stop == ENGINE_STOP_LENGTH && a->set.max_tokens > 0)
		it->flags |= TRF_LENGTH;
	status_done(&a->st, &ev->stats);
	a->st.mem_avail = models_mem_available();
	a->reply = -1;
	a->side_owed = false;
	if (it->len)
		commit(a, "assistant", it->text, it->len, (it->flags & (TRF_STOPPED | TRF_CONTEXT)) != 0);
	a->dirty |= D_TRANS | D_SIDE | D_STATUS | D_HINT | D_INPUT;
}

/* The load failed: no model, and a reply that waited for it goes. */
static void ev_load_failed(struct app *a, const struct engine_event *ev)
{
	notice(a, TR_ERROR, "%s", ev->message);
	a->load_req = 0;
	close_picker(a);
	a->st.phase = PH_NOMODEL;
	a->st.have_info = false;
	if (a->reply >= 0) {
		tr_truncate(&a->tr, (size_t)a->reply);
		a->reply = -1;
	}
	a->dirty |= D_ALL & ~D_LAYOUT;
}

/* The reply failed: what arrived is kept, and saved as a reply cut short. */
static void ev_reply_failed(struct app *a, const struct engine_event *ev)
{
	struct tr_item *it = &a->tr.v[a->reply];
	size_t at = (size_t)a->reply;
	a->reply = -1;
	if (it->len == 0) {
		tr_truncate(&a->tr, at);
	} else {
		it->flags = (it->flags & ~(unsigned)TRF_STREAMING) | TRF_FAILED;
		commit(a, "assistant", it->text, it->len, true);
	}
	notice(a, TR_ERROR, "%s", ev->message);
	a->st.phase = a->st.have_info ? PH_IDLE : PH_NOMODEL;
	a->dirty |= D_ALL & ~D_LAYOUT;
}

static void ev_import(struct app *a, const struct engine_event *ev)
{
	if (ev->request != a->import_req)
		return;
	/* a snapshot that does not fit is only a cache: nothing to say */
	if (ev->position > 0)
		notice(a, TR_NOTICE, "KV cache restored: %u tokens of this conversation need no prefill", ev->position);
	a->import_req = 0;
}

/* One event: handlers change state and mark what to draw. */
static void on_event(struct app *a, struct engine_event *ev)
{
	const bool mine = ev->request == a->req && a->reply >= 0;
	const bool load = ev->request == a->load_req;
	switch (ev->type) {
	case ENGINE_EV_LOAD_PROGRESS:
		if (load) {
			a->st.progress = ev->progress;
			a->dirty |= D_SIDE | D_STATUS | D_OVER;
		}
		break;
	case ENGINE_EV_PREFILL_PROGRESS:
		if (mine) {
			a->st.progress = ev->progress;
			a->dirty |= D_STATUS;
		}
		break;
	case ENGINE_EV_LOADED:
		if (load)
			ev_loaded(a, ev);
		break;
	case ENGINE_EV_TOKEN:
		if (mine)
			ev_token(a, ev);
		break;
	case ENGINE_EV_CONTEXT_SHIFT:
		if (mine)
			notice(a, TR_NOTICE, "%s", ev->message);
		break;
	case ENGINE_EV_DONE:
		if (mine)
			ev_done(a, ev);
		break;
	case ENGINE_EV_ERROR:
		on_export(a, ev); /* a failed export is no longer awaited */
		if (ev->request == a->import_req)
			a->import_req = 0;
		if (load)
			ev_load_failed(a, ev);
		else if (mine)
			ev_reply_failed(a, ev);
		break;
	case ENGINE_EV_CONV_EXPORT:
		on_export(a, ev);
		break;
	case ENGINE_EV_CONV_IMPORT:
		ev_import(a, ev);
		break;
	case ENGINE_EV_NOTICE:
		/* the GPU failed and the engine went on on the CPU */
		notice(a, TR_NOTICE, "%s", ev->message);
		status_gpu_lost(&a->st, ev->message);
		a->dirty |= D_SIDE | D_STATUS;
		break;
	case ENGINE_EV_UNLOADED:
		break;
	}
}

/* ---- conversations: leaving one, starting one, opening one ------------------------ */

/* Leaves the open conversation: a reply still coming is stopped and saved
 * as cut short, unsaved messages are retried (leaving them behind is
 * refused once, with a warning), and the KV cache is filed.  False when
 * refused. */
static bool leave_conv(struct app *a)
{
	if (busy(a)) {
		engine_cancel(a->eng);
		struct tr_item *it = &a->tr.v[a->reply];
		it->flags = (it->flags & ~(unsigned)TRF_STREAMING) | TRF_STOPPED;
		a->reply = -1;
		if (it->len)
			commit(a, "assistant", it->text, it->len, true);
		if (a->st.phase != PH_LOADING)
			a->st.phase = a->st.have_info ? PH_IDLE : PH_NOMODEL;
	}
	if (a->ch && chats_pending(a->ch)) {
		chats_flush(a->ch);
		size_t left = chats_pending(a->ch);
		if (left && !a->unsaved_warned) {
			a->unsaved_warned = true;
			notice(a, TR_ERROR,
			       "history: %zu message%s of this conversation %s not saved yet (%s); do it again to "
			       "leave %s unsaved",
			       left, left == 1 ? "" : "s", left == 1 ? "is" : "are", chats_errmsg(a->ch),
			       left == 1 ? "it" : "them");
			hist_update_state(a);
			return false;
		}
	}
	export_kv(a);
	if (a->o->on_rewind)
		a->o->on_rewind(a->o->hook_ctx, a->conv, 0);
	engine_drop_conv(a->eng, a->conv);
	a->conv++;
	a->editing = -1;
	a->import_req = 0;
	a->conv_touched = false;
	return true;
}

/* The transcript and the numbers of a conversation that starts empty. */
static void clear_view(struct app *a)
{
	tr_truncate(&a->tr, 0);
	a->st.ctx_used = 0;
	a->st.have_prompt = false;
	a->tr.follow = true;
	a->dirty |= D_ALL & ~D_LAYOUT;
}

/* /new (and /clear, which keeps the system prompt).  False when refused. */
static bool reset_conversation(struct app *a, bool keep_system)
{
	if (!leave_conv(a))
		return false;
	if (a->ch)
		chats_new(a->ch);
	clear_view(a);
	if (!keep_system) {
		a->system_user = a->o->system != NULL;
		free(a->system);
		a->system = a->o->system ? strdup(a->o->system) : NULL;
		if (!a->system_user) {
			struct model_entry me;
			char err[256];
			if (a->load_spec[0] && config_resolve_model(a->load_spec, &me, err, sizeof err) == 0) {
				a->system = me.system_prompt ? strdup(me.system_prompt) : NULL;
				config_entry_free(&me);
			}
		}
	}
	hist_update_state(a);
	return true;
}

/* Shows the conversation chats_load() opened and takes its settings
 * (flags given on the command line stay). */
static void show_loaded(struct app *a)
{
	struct chats_settings s;
	chats_settings_of(a->ch, &s);
	char label[128];
	const char *slash = s.model ? strrchr(s.model, '/') : NULL;
	snprintf(label, sizeof label, "%s", slash && slash[1] ? slash + 1 : s.model ? s.model : a->st.model);
	size_t n = chats_count(a->ch);
	for (size_t i = 0; i < n; i++) {
		const struct chats_msg *m = chats_msg(a->ch, i);
		bool user = m->role == CHATS_USER;
		long k = tr_add(&a->tr, user ? TR_USER : TR_ASSISTANT, m->text, m->len,
				!user && m->cancelled ? TRF_STOPPED : 0);
		if (k >= 0 && !user)
			snprintf(a->tr.v[k].label, sizeof a->tr.v[k].label, "%s", label);
	}
	if (!a->o->system) {
		free(a->system);
		a->system = s.system_prompt && s.system_prompt[0] ? strdup(s.system_prompt) : NULL;
		a->system_user = true;
	}
	const unsigned given = a->o->sampling_set;
	struct engine_sampling *e = &a->set.s;
	if (s.temperature >= 0 && !(given & TUI_SET_TEMP))
		e->temperature = s.temperature, a->set.user_set |= SET_TEMP;
	if (s.top_k >= 0 && !(given & TUI_SET_TOPK))
		e->top_k = s.top_k, a->set.user_set |= SET_TOPK;
	if (s.top_p >= 0 && !(given & TUI_SET_TOPP))
		e->top_p = s.top_p, a->set.user_set |= SET_TOPP;
	if (s.min_p >= 0 && !(given & TUI_SET_MINP))
		e->min_p = s.min_p, a->set.user_set |= SET_MINP;
	if (s.repeat_penalty > 0 && !(given & TUI_SET_REP))
		e->repeat_penalty = s.repeat_penalty, a->set.user_set |= SET_REP;
	notice(a, TR_NOTICE, "conversation \"%s\": %zu message%s (F3 lists the others, /new starts one)",
	       chats_title(a->ch), n, n == 1 ? "" : "s");
	a->tr.follow = true;
	a->dirty |= D_ALL & ~D_LAYOUT;
}

/* Opens saved conversation ID in place of the current one. */
static bool open_conv(struct app *a, const char *id)
{
	if (!a->ch || !leave_conv(a))
		return false;
	clear_view(a);
	int rc = chats_load(a->ch, id);
	if (rc < 0) {
		notice(a, TR_ERROR, "cannot open the conversation: %s", chats_errmsg(a->ch));
		chats_new(a->ch);
		hist_update_state(a);
		return false;
	}
	if (rc > 0)
		notice(a, TR_NOTICE, "history: %s", chats_errmsg(a->ch));
	show_loaded(a);
	struct chats_settings s;
	chats_settings_of(a->ch, &s);
	if (s.model && a->load_spec[0] && strcmp(s.model, a->load_spec) != 0)
		notice(a, TR_NOTICE, "it was held with %s; it goes on with %s (F2 switches)", s.model, a->st.model);
	import_kv(a);
	hist_update_state(a);
	return true;
}

/* ---- the conversation list (F3) ------------------------------------------------ */

static void open_chats(struct app *a, const char *needle)
{
	if (!a->ch) {
		notice(a, TR_NOTICE, "history is off (%s): there are no saved conversations to show", a->hist_off);
		return;
	}
	open_overlay(a, chatlist_open(a->ch, needle));
}

static bool is_open(const struct app *a, const char *id)
{
	const char *cur = a->ch ? chats_id(a->ch) : NULL;
	return cur && strcmp(cur, id) == 0;
}

static void delete_conv(struct app *a, struct chatlist *l, const char *id)
{
	const bool cur = is_open(a, id);
	if (cur && busy(a)) {
		/* it goes away: nothing of it is saved any more */
		engine_cancel(a->eng);
		a->reply = -1;
		if (a->st.phase != PH_LOADING)
			a->st.phase = a->st.have_info ? PH_IDLE : PH_NOMODEL;
	}
	for (size_t i = 0; i < a->n_exports; i++)
		if (strcmp(a->exports[i].conv_id, id) == 0)
			a->exports[i].conv_id[0] = '\0';
	if (chatlist_remove(l, id) != 0)
		return;
	if (cur) {
		engine_drop_conv(a->eng, a->conv);
		a->conv++;
		a->editing = -1;
		a->conv_touched = false;
		a->import_req = 0;
		clear_view(a);
		notice(a, TR_NOTICE, "that conversation is deleted; this is a new one");
	}
	hist_update_state(a);
}

/* What the conversation list asks for (CHATLIST_* of chatlist.h). */
static void chats_action(struct app *a, int act)
{
	struct chatlist *l = chatlist_of(a->over);
	const struct chats_entry *e = l ? chatlist_selected(l) : NULL;
	char id[CHATS_ID_LEN + 1] = "";
	if (e)
		snprintf(id, sizeof id, "%s", e->id);
	switch (act) {
	case CHATLIST_OPEN:
		close_overlay(a);
		if (id[0] && !is_open(a, id))
			open_conv(a, id);
		break;
	case CHATLIST_NEW:
		close_overlay(a);
		if (reset_conversation(a, false))
			notice(a, TR_NOTICE, "new conversation");
		break;
	case CHATLIST_DELETE:
		if (l && id[0])
			delete_conv(a, l, id);
		break;
	case CHATLIST_RENAMED:
		hist_update_state(a);
		break;
	}
}

/* ---- help and picker ---------------------------------------------------------- */

static void open_help(struct app *a)
{
	open_overlay(a, help_open(&a->set));
}

static void open_picker(struct app *a)
{
	char err[256];
	a->st.mem_avail = models_mem_available();
	/* on a GPU the fit is against its memory: what is free there plus
	 * what the model being replaced holds (as of the last engine figures;
	 * a model that does not fit still runs, split with the CPU) */
	uint64_t avail = a->st.mem_avail;
	if (a->st.vram_total && a->o->device != ENGINE_DEVICE_CPU)
		avail = a->st.vram_free + a->st.vram_ours;
	struct overlay *p = picker_open(a->o->n_ctx, avail, &a->st, a->model_path, err, sizeof err);
	if (!p) {
		notice(a, TR_ERROR, "%s", err);
		return;
	}
	open_overlay(a, p);
}

/* Enter in the picker: loads the model it shows selected. */
static void pick_load(struct app *a)
{
	const struct model_item *m = picker_selected(a->over);
	if (!m)
		return;
	if (!m->present) {
		notice(a, TR_ERROR, "%s: %s", m->display, m->note[0] ? m->note : "not available");
		close_overlay(a);
		return;
	}
	if (m->from_models_d) {
		struct model_entry me;
		char err[1024];
		if (config_resolve_model(m->name, &me, err, sizeof err) == 0) {
			load_model(a, m->name, me.path, me.display_name, m->n_ctx, &me, true);
			config_entry_free(&me);
		} else {
			notice(a, TR_ERROR, "%s", err);
		}
	} else {
		load_model(a, m->path, m->path, m->display, m->n_ctx, NULL, true);
	}
	a->dirty |= D_OVER;
}

/* ---- layout and drawing ------------------------------------------------------------- */

static void del_windows(struct app *a)
{
	WINDOW **ws[] = {&a->w_trans, &a->w_side, &a->w_status, &a->w_input, &a->w_hint, &a->w_over};
	for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
		if (*ws[i]) {
			delwin(*ws[i]);
			*ws[i] = NULL;
		}
}

static int input_height(struct app *a)
{
	int max = a->lines / 3 < 8 ? a->lines / 3 : 8;
	if (max < 1)
		max = 1;
	int r = input_rows(a->cols, a->text_flags);
	return r < 1 ? 1 : r > max ? max : r;
}

static void layout(struct app *a)
{
	del_windows(a);
	getmaxyx(stdscr, a->lines, a->cols);
	a->too_small = a->lines < MIN_LINES || a->cols < MIN_COLS;
	werase(stdscr);
	wnoutrefresh(stdscr);
	if (a->too_small)
		return;
	a->narrow = a->cols < SIDEBAR_MIN_COLS || !a->sidebar_on;
	a->input_h = input_height(a);
	int th = a->lines - 2 - a->input_h;
	int sw = 0;
	if (!a->narrow) {
		sw = a->cols / 4;
		sw = sw < 30 ? 30 : sw > 38 ? 38 : sw;
	}
	a->w_trans = newwin(th, a->cols - sw, 0, 0);
	a->w_side = sw ? newwin(th, sw, 0, a->cols - sw) : NULL;
	a->w_status = newwin(1, a->cols, th, 0);
	a->w_input = newwin(a->input_h, a->cols, th + 1, 0);
	a->w_hint = newwin(1, a->cols, a->lines - 1, 0);
	if (!a->w_trans || !a->w_status || !a->w_input || !a->w_hint || (sw && !a->w_side)) {
		del_windows(a);
		a->too_small = true;
		return;
	}
	if (a->over)
		a->w_over = overlay_window(a->over, a->lines, a->cols);
	tr_resize(&a->tr, a->cols - sw, th, a->text_flags);
	a->dirty = D_ALL & ~D_LAYOUT;
}

static void draw_hint(struct app *a)
{
	static const struct ov_hint chat[] = {
		/* one line whether idle or replying: repainting it at each
		 * turn would cost more bytes than it tells */
		{"Enter", "send"},   {"Esc", "stop"},		{"F1", "help"},	    {"F2", "model"},
		{"PgUp/PgDn", "scroll"}, {"Alt-Enter", "newline"}, {"Ctrl-C", "quit"},
	};
	static const struct ov_hint edit[] = {{"Enter", "resend edited message"}, {"Esc", "cancel the edit"}};
	struct ov_hint h[8];
	size_t n;
	if (a->over) {
		n = a->over->cls->hints ? a->over->cls->hints(a->over, h, sizeof h / sizeof h[0]) : 0;
	} else {
		n = a->editing >= 0 ? sizeof edit / sizeof edit[0] : sizeof chat / sizeof chat[0];
		memcpy(h, a->editing >= 0 ? edit : chat, n * sizeof h[0]);
	}
	WINDOW *w = a->w_hint;
	werase(w);
	int col = 0;
	for (size_t i = 0; i < n; i++) {
		int need = (int)strlen(h[i].key) + 1 + (int)strlen(h[i].what) + 2;
		if (col + need - 2 > a->cols)
			break;
		wmove(w, 0, col);
		wattrset(w, (attr_t)a->attrs[ROLE_HINT_KEY]);
		waddstr(w, h[i].key);
		wattrset(w, (attr_t)a->attrs[ROLE_HINT]);
		waddch(w, ' ');
		waddstr(w, h[i].what);
		col += need;
	}
	wattrset(w, A_NORMAL);
}

static void draw_too_small(struct app *a)
{
	werase(stdscr);
	char l1[64], l2[64];
	snprintf(l1, sizeof l1, "terminal too small");
	snprintf(l2, sizeof l2, "%dx%d, need %dx%d", a->cols, a->lines, MIN_COLS, MIN_LINES);
	const char *ls[] = {l1, l2};
	for (int i = 0; i < 2 && i < a->lines; i++) {
		int len = (int)strlen(ls[i]);
		if (len > a->cols)
			len = a->cols;
		int y = a->lines / 2 - 1 + i;
		mvwaddnstr(stdscr, y < 0 ? 0 : y, (a->cols - len) / 2, ls[i], len);
	}
	wnoutrefresh(stdscr);
}

static void set_cursor(struct app *a, bool on)
{
	if (on != a->cursor_on) {
		curs_set(on ? 1 : 0);
		a->cursor_on = on;
	}
	if (a->w_input)
		leaveok(a->w_input, !on);
}

static void draw(struct app *a)
{
	/* a box whose content changed size is laid out again */
	if ((a->dirty & D_OVER) && a->over && a->w_over && overlay_resized(a->over, a->w_over, a->lines, a->cols))
		a->dirty |= D_LAYOUT;
	if (a->dirty & D_LAYOUT)
		layout(a);
	if (a->too_small) {
		if (a->dirty) {
			set_cursor(a, false);
			draw_too_small(a);
			doupdate();
		}
		a->dirty = 0;
		return;
	}
	if (!a->dirty)
		return;
	bool any = false;
	if (a->dirty & D_TRANS) {
		tr_layout(&a->tr);
		tr_draw(&a->tr, a->w_trans, a->attrs);
		wnoutrefresh(a->w_trans);
		any = true;
	}
	a->st.s = a->set.s;
	a->st.max_tokens = a->set.max_tokens;
	if ((a->dirty & D_SIDE) && a->w_side) {
		sidebar_draw(a->w_side, &a->st, a->attrs, a->text_flags);
		wnoutrefresh(a->w_side);
		any = true;
	}
	if (a->dirty & (D_STATUS | (a->narrow ? D_SIDE : 0))) {
		a->st.note = a->editing >= 0 ? "editing your last message" : NULL;
		statusbar_draw(a->w_status, &a->st, a->narrow, a->attrs, a->text_flags);
		wnoutrefresh(a->w_status);
		any = true;
	}
	if (a->dirty & D_HINT) {
		draw_hint(a);
		wnoutrefresh(a->w_hint);
		any = true;
	}
	if (a->dirty & D_INPUT) {
		input_draw(a->w_input, a->text_flags, a->attrs[ROLE_PROMPT], a->attrs[ROLE_INPUT], a->attrs[ROLE_CTRL]);
		any = true;
	}
	if (a->w_over && a->over && (any || (a->dirty & D_OVER))) {
		int cy = -1, cx = 0;
		const struct ov_style style = {.attrs = a->attrs, .text_flags = a->text_flags};
		a->over->cls->draw(a->over, a->w_over, &style, &cy, &cx);
		touchwin(a->w_over);
		/* the cursor sits in a text field of the box, if one is edited */
		set_cursor(a, cy >= 0);
		leaveok(a->w_over, cy < 0);
		if (cy >= 0)
			wmove(a->w_over, cy, cx);
		wnoutrefresh(a->w_over);
	} else {
		/* the cursor rests in the input, except while a reply streams
		 * into an empty input: then it stays where the text ends, which
		 * saves two cursor moves per token */
		set_cursor(a, !(busy(a) && input_empty()));
		wnoutrefresh(a->w_input);
	}
	doupdate();
	a->dirty = 0;
}

/* ---- keys ------------------------------------------------------------------------ */

static void resume_screen(struct app *a)
{
	tty_resume(&a->tty);
	a->dirty |= D_ALL;
}

static void on_suspend(void *ctx, bool suspend)
{
	struct app *a = ctx;
	if (suspend)
		tty_suspend(&a->tty, false);
	else
		resume_screen(a);
}

/* ---- actions: what keys (tui_keys) and slash commands (tui_cmds) do ----------- */

/* ARG is the command's argument ("" for a key or none). */
typedef void act_fn(struct app *a, const char *arg);

static void act_help(struct app *a, const char *arg)
{
	open_help(a);
}

static void act_picker(struct app *a, const char *arg)
{
	open_picker(a);
}

static void act_model(struct app *a, const char *arg)
{
	if (arg[0])
		load_spec(a, arg);
	else
		open_picker(a);
}

static void act_chats(struct app *a, const char *arg)
{
	open_chats(a, arg[0] ? arg : NULL);
}

static void act_sidebar(struct app *a, const char *arg)
{
	a->sidebar_on = !a->sidebar_on;
	a->dirty |= D_LAYOUT;
}

/* Esc: stops the reply or the load, else cancels /edit, else scrolls back
 * to the end. */
static void act_cancel(struct app *a, const char *arg)
{
	if (busy(a) || a->st.phase == PH_LOADING) {
		engine_cancel(a->eng);
	} else if (a->editing >= 0) {
		a->editing = -1;
		input_set("");
		a->dirty |= D_STATUS | D_HINT | D_INPUT;
	} else if (!a->tr.follow) {
		tr_scroll_bottom(&a->tr);
		a->dirty |= D_TRANS;
	}
}

static void act_interrupt(struct app *a, const char *arg)
{
	if (busy(a) || a->st.phase == PH_LOADING)
		engine_cancel(a->eng);
	else if (a->set.ctrl_c_quits)
		a->quit = true;
}

static void act_pgup(struct app *a, const char *arg)
{
	tr_scroll(&a->tr, -(long)(a->tr.height > 2 ? a->tr.height - 2 : 1));
	a->dirty |= D_TRANS;
}

static void act_pgdn(struct app *a, const char *arg)
{
	tr_scroll(&a->tr, a->tr.height > 2 ? a->tr.height - 2 : 1);
	a->dirty |= D_TRANS;
}

static void act_top(struct app *a, const char *arg)
{
	tr_scroll_top(&a->tr);
	a->dirty |= D_TRANS;
}

static void act_bottom(struct app *a, const char *arg)
{
	tr_scroll_bottom(&a->tr);
	a->dirty |= D_TRANS;
}

static void act_redraw(struct app *a, const char *arg)
{
	clearok(curscr, TRUE);
	a->dirty |= D_ALL & ~D_LAYOUT;
}

static void act_suspend(struct app *a, const char *arg)
{
	tty_suspend(&a->tty, true);
	resume_screen(a);
}

static void act_quit(struct app *a, const char *arg)
{
	a->quit = true;
}

/* The last user item, or -1. */
static long last_user(const struct app *a)
{
	for (size_t i = a->tr.n; i > 0; i--)
		if (a->tr.v[i - 1].kind == TR_USER)
			return (long)(i - 1);
	return -1;
}

static void act_regen(struct app *a, const char *arg)
{
	if (busy(a)) {
		notice(a, TR_NOTICE, "a reply is still coming: Esc stops it first");
		return;
	}
	long u = last_user(a);
	if (u < 0) {
		notice(a, TR_NOTICE, "nothing to regenerate yet");
		return;
	}
	rewind_to(a, (size_t)u + 1);
	tr_truncate(&a->tr, (size_t)u + 1);
	start_reply(a);
}

static void act_edit(struct app *a, const char *arg)
{
	if (busy(a)) {
		notice(a, TR_NOTICE, "a reply is still coming: Esc stops it first");
		return;
	}
	long u = last_user(a);
	if (u < 0) {
		notice(a, TR_NOTICE, "no message to edit yet");
		return;
	}
	a->editing = u;
	set_preset(a, a->tr.v[u].text);
	a->dirty |= D_STATUS | D_HINT;
}

static void act_new(struct app *a, const char *arg)
{
	if (reset_conversation(a, false))
		notice(a, TR_NOTICE, "new conversation");
}

static void act_clear(struct app *a, const char *arg)
{
	if (reset_conversation(a, true))
		notice(a, TR_NOTICE, "new conversation (system prompt kept)");
}

static void act_rename(struct app *a, const char *arg)
{
	if (!a->ch) {
		notice(a, TR_NOTICE, "history is off (%s): nothing to rename", a->hist_off);
	} else if (!arg[0]) {
		notice(a, TR_ERROR, "/rename: give the new title");
	} else if (chats_rename(a->ch, NULL, arg) < 0) {
		notice(a, TR_ERROR, "not renamed: %s", chats_errmsg(a->ch));
	} else {
		notice(a, TR_NOTICE, "renamed to \"%s\"", chats_title(a->ch));
		hist_update_state(a);
	}
}

static void act_system(struct app *a, const char *arg)
{
	free(a->system);
	a->system = arg[0] ? strdup(arg) : NULL;
	a->system_user = true;
	if (arg[0])
		notice(a, TR_NOTICE, "system prompt: %s", arg);
	else
		notice(a, TR_NOTICE, "system prompt cleared");
}

static void act_set(struct app *a, const char *arg)
{
	char msg[512];
	bool wrap = a->set.wrap_code;
	if (cmds_set(&a->set, arg, msg, sizeof msg) == 0)
		notice(a, TR_NOTICE, "%s", msg);
	else
		notice(a, TR_ERROR, "%s", msg);
	if (wrap != a->set.wrap_code) {
		a->text_flags = (a->text_flags & ~(unsigned)TEXT_NOWRAP_CODE) | (a->set.wrap_code ? 0 : TEXT_NOWRAP_CODE);
		tr_resize(&a->tr, a->tr.width, a->tr.height, a->text_flags);
	}
	a->dirty |= D_SIDE;
}

static void act_theme(struct app *a, const char *arg)
{
	char err[512];
	struct theme t;
	if (!arg[0]) {
		notice(a, TR_NOTICE, "theme: %s", a->theme.name);
	} else if (theme_load(arg, &t, err, sizeof err) != 0) {
		notice(a, TR_ERROR, "%s", err);
	} else {
		a->theme = t;
		theme_apply(&a->theme, a->use_color, a->attrs);
		notice(a, TR_NOTICE, "theme: %s%s", t.name, a->use_color ? "" : " (no colours here)");
		a->dirty |= D_ALL & ~D_LAYOUT;
	}
}

/* One handler per enum tui_act (cmds.h): the tables of keys and commands
 * name the action, this one does it. */
static act_fn *const act_fns[] = {
	[ACT_HELP] = act_help, [ACT_PICKER] = act_picker, [ACT_CHATS] = act_chats, [ACT_SIDEBAR] = act_sidebar,
	[ACT_CANCEL] = act_cancel, [ACT_INTERRUPT] = act_interrupt, [ACT_PGUP] = act_pgup, [ACT_PGDN] = act_pgdn,
	[ACT_TOP] = act_top, [ACT_BOTTOM] = act_bottom, [ACT_REDRAW] = act_redraw, [ACT_SUSPEND] = act_suspend,
	[ACT_QUIT] = act_quit, [ACT_MODEL] = act_model, [ACT_REGEN] = act_regen, [ACT_EDIT] = act_edit,
	[ACT_NEW] = act_new, [ACT_CLEAR] = act_clear, [ACT_SYSTEM] = act_system, [ACT_SET] = act_set,
	[ACT_THEME] = act_theme, [ACT_RENAME] = act_rename,
};

static void do_action(struct app *a, enum tui_act act, const char *arg)
{
	if ((size_t)act < sizeof act_fns / sizeof act_fns[0] && act_fns[act])
		act_fns[act](a, arg);
}

static void run_command(struct app *a, const char *line)
{
	const char *args;
	size_t al;
	const struct tui_cmd *c = cmds_find(line, &args, &al);
	if (!c) {
		size_t nl = strcspn(line, " \t");
		notice(a, TR_ERROR, "unknown command '%.*s': F1 lists them (start with // to send a slash)",
		       (int)(nl < 40 ? nl : 40), line);
		return;
	}
	char arg[4096];
	snprintf(arg, sizeof arg, "%.*s", (int)(al < sizeof arg - 1 ? al : sizeof arg - 1), args);
	do_action(a, c->act, arg);
}

static void on_line(void *ctx, char *line)
{
	struct app *a = ctx;
	a->dirty |= D_INPUT;
	if (!line) {
		/* Ctrl-D on an empty line */
		a->quit = true;
		return;
	}
	if (a->editing >= 0) {
		long u = a->editing;
		a->editing = -1;
		a->dirty |= D_STATUS | D_HINT;
		if (busy(a) || (size_t)u >= a->tr.n || a->tr.v[u].kind != TR_USER) {
			notice(a, TR_NOTICE, "cannot edit now");
		} else if (line[0]) {
			rewind_to(a, (size_t)u);
			tr_truncate(&a->tr, (size_t)u);
			send_message(a, line);
		}
		free(line);
		return;
	}
	if (line[0] == '/' && line[1] != '/') {
		run_command(a, line);
	} else {
		const char *text = line[0] == '/' ? line + 1 : line;
		if (text[strspn(text, " \t\n")])
			send_message(a, text);
	}
	free(line);
}

/* What the picker asks for (PICKER_* of picker.h). */
static void picker_action(struct app *a, int act)
{
	if (act == PICKER_LOAD)
		pick_load(a);
	else if (act == PICKER_STOP)
		engine_cancel(a->eng);
}

/* Who carries out each box's own actions (numbered by each box alone). */
static const struct {
	const struct overlay_class *cls;
	void (*act)(struct app *a, int act);
} overlay_actions[] = {
	{&picker_class, picker_action},
	{&chatlist_class, chats_action},
};

/* A key for the open box; what it asks for is done here. */
static void overlay_key(struct app *a, int k)
{
	a->dirty |= D_OVER | D_HINT;
	int act = a->over->cls->key(a->over, k);
	if (act == OV_CLOSE) {
		close_overlay(a);
		return;
	}
	for (size_t i = 0; act >= OV_ACTION && i < sizeof overlay_actions / sizeof overlay_actions[0]; i++) {
		if (a->over->cls == overlay_actions[i].cls) {
			overlay_actions[i].act(a, act); /* it may close the box */
			break;
		}
	}
}

/* A lone Esc: it belongs to the open box, to readline's search, or
 * stops what is going on. */
static void esc_key(struct app *a)
{
	if (a->over)
		overlay_key(a, 27);
	else if (input_searching())
		input_feed("\033", 1);
	else
		do_action(a, ACT_CANCEL, "");
}

static void handle_key(struct app *a, int k)
{
	if (k == TTY_KEY_PASTE) {
		if (!a->over)
			input_insert(a->tty.paste, a->tty.paste_len);
		a->dirty |= D_INPUT;
		return;
	}
	if (k == 27) {
		esc_key(a);
		return;
	}
	if (k & TTY_ALT) {
		if (a->over)
			return;
		/* Alt-key: Esc then the key's bytes, as readline expects */
		char buf[16] = "\033";
		size_t l = input_key_bytes(k & ~TTY_ALT, buf + 1, sizeof buf - 1);
		input_feed(buf, l + 1);
		a->dirty |= input_take_dirty() ? D_INPUT : 0;
		return;
	}
	if (a->too_small) {
		if (k == 3)
			do_action(a, ACT_INTERRUPT, "");
		return;
	}
	if (a->over) {
		overlay_key(a, k);
		return;
	}
	/* during an incremental search every key is the search's */
	const struct tui_key *row = input_searching() && k != 3 ? NULL : cmds_key(k, input_empty());
	if (row && row->act != ACT_NONE) {
		do_action(a, row->act, "");
		return;
	}
	char buf[16];
	size_t l = input_key_bytes(k, buf, sizeof buf);
	if (l)
		input_feed(buf, l);
}

/* ---- the loop ------------------------------------------------------------------------- */

static void on_signal_byte(struct app *a, int sig)
{
	switch (sig) {
	case SIGWINCH:
		tty_resize();
		a->dirty |= D_ALL;
		break;
	case SIGTSTP:
		tty_suspend(&a->tty, true);
		resume_screen(a);
		break;
	case SIGCONT:
		resume_screen(a);
		break;
	default: /* SIGTERM, SIGHUP, SIGINT, SIGQUIT: end cleanly */
		a->quit = true;
		a->status = 128 + sig;
		break;
	}
}

static void update_side(struct app *a)
{
	double t = now_ms();
	if (!a->side_owed || t < a->side_next)
		return;
	a->side_owed = false;
	a->side_next = t + STATS_INTERVAL_MS;
	a->st.mem_avail = models_mem_available();
	a->dirty |= D_SIDE | (a->narrow ? D_STATUS : 0);
}

static void loop(struct app *a, int sig_rd)
{
	while (!a->quit) {
		if (a->preset) {
			input_set(a->preset);
			free(a->preset);
			a->preset = NULL;
		}
		if (input_take_dirty()) {
			a->dirty |= D_INPUT;
			if (!a->too_small && input_height(a) != a->input_h)
				a->dirty |= D_LAYOUT;
		}
		update_side(a);
		hist_retry(a);
		draw(a);
		int timeout = -1;
		if (a->side_owed) {
			double left = a->side_next - now_ms();
			timeout = left <= 0 ? 0 : (int)left + 1;
		}
		if (a->ch && chats_pending(a->ch)) {
			/* unsaved messages: wake up to retry them */
			double left = a->retry_at - now_ms();
			int t = left <= 0 ? 0 : (int)left + 1;
			if (timeout < 0 || t < timeout)
				timeout = t;
		}
		struct pollfd p[3] = {
			{.fd = STDIN_FILENO, .events = POLLIN},
			{.fd = engine_event_fd(a->eng), .events = POLLIN},
			{.fd = sig_rd, .events = POLLIN},
		};
		int rc = poll(p, 3, timeout);
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			a->status = EXIT_FAILURE;
			break;
		}
		if (p[2].revents & POLLIN) {
			unsigned char b[32];
			ssize_t r = read(sig_rd, b, sizeof b);
			for (ssize_t i = 0; i < r; i++)
				on_signal_byte(a, b[i]);
		}
		if (p[1].revents & POLLIN) {
			struct engine_event ev;
			while (engine_event_next(a->eng, &ev)) {
				on_event(a, &ev);
				engine_event_clear(&ev);
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (p[0].revents & (POLLHUP | POLLERR) && !(p[0].revents & POLLIN)) {
				a->quit = true; /* the terminal went away */
				a->status = 128 + SIGHUP;
				break;
			}
			int k;
			while (!a->quit && (k = tty_key(&a->tty)) != ERR)
				handle_key(a, k);
		}
	}
}

/* Opens the history (asking for the passphrase) and reopens the
 * conversation held last. */
static void start_history(struct app *a, int sig_fd)
{
	struct unlock_ui ui = {.sig_fd = sig_fd, .attrs = a->attrs, .text_flags = a->text_flags};
	char why[512];
	int status = 0;
	switch (unlock_history(&ui, &a->ch, &status, why, sizeof why)) {
	case UNLOCK_QUIT:
		a->quit = true;
		a->status = status;
		return;
	case UNLOCK_OFF:
		snprintf(a->hist_off, sizeof a->hist_off, "%s", why);
		notice(a, TR_ERROR, "history is off: %s. Nothing of this chat is saved.", why);
		hist_update_state(a);
		return;
	case UNLOCK_OPEN:
		break;
	}
	char id[CHATS_ID_LEN + 1] = "";
	if (chats_last_read(id) != 0) {
		/* nothing remembered: the most recent conversation, if any */
		struct chats_entry *v;
		size_t n;
		if (chats_list(a->ch, NULL, &v, &n) == 0) {
			for (size_t i = 0; i < n && !id[0]; i++)
				if (v[i].readable)
					snprintf(id, sizeof id, "%s", v[i].id);
			chats_list_free(v, n);
		}
	}
	if (id[0]) {
		int rc = chats_load(a->ch, id);
		if (rc >= 0) {
			if (rc > 0)
				notice(a, TR_NOTICE, "history: %s", chats_errmsg(a->ch));
			show_loaded(a);
		} else if (rc == CHATS_E_BUSY) {
			notice(a, TR_NOTICE, "the last conversation is open in another ttychat: this is a new one");
		} else if (rc != CHATS_E_NOTFOUND) {
			notice(a, TR_ERROR, "cannot reopen the last conversation: %s", chats_errmsg(a->ch));
		}
		if (rc < 0)
			chats_new(a->ch);
	}
	hist_update_state(a);
}

/* On the way out: unsaved messages get a last try (what is still unsaved
 * is said in MSG for after the screen is gone), and the KV cache of the
 * open conversation is filed, waiting for the engine's answers. */
static void finish_history(struct app *a, char *msg, size_t msglen)
{
	if (!a->ch)
		return;
	if (!a->too_small && a->w_status) {
		a->st.note = "saving...";
		statusbar_draw(a->w_status, &a->st, a->narrow, a->attrs, a->text_flags);
		wnoutrefresh(a->w_status);
		doupdate();
	}
	if (chats_pending(a->ch))
		chats_flush(a->ch);
	size_t left = chats_pending(a->ch);
	if (left)
		snprintf(msg, msglen, "history: %zu message%s could not be saved: %s", left, left == 1 ? "" : "s",
			 chats_errmsg(a->ch));
	export_kv(a);
	const double deadline = now_ms() + EXIT_SAVE_WAIT_MS;
	while (a->n_exports > 0) {
		double ms = deadline - now_ms();
		struct engine_event ev;
		if (ms <= 0 || !engine_event_wait(a->eng, &ev, (int)ms))
			break;
		if (ev.type == ENGINE_EV_CONV_EXPORT || ev.type == ENGINE_EV_ERROR)
			on_export(a, &ev);
		engine_event_clear(&ev);
	}
	chats_close(a->ch);
	a->ch = NULL;
}

/* settings.json's "theme", if any */
static void settings_theme(char *buf, size_t n)
{
	buf[0] = '\0';
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	char path[4096];
	int w;
	if (xdg && xdg[0] == '/')
		w = snprintf(path, sizeof path, "%s/ttychat/settings.json", xdg);
	else if (home && home[0])
		w = snprintf(path, sizeof path, "%s/.config/ttychat/settings.json", home);
	else
		return;
	if (w < 0 || (size_t)w >= sizeof path)
		return;
	FILE *f = fopen(path, "rb");
	if (!f)
		return;
	char *text = malloc(65537);
	size_t len = text ? fread(text, 1, 65536, f) : 0;
	fclose(f);
	if (!text)
		return;
	text[len] = '\0';
	cJSON *j = cJSON_Parse(text);
	free(text);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "theme");
	if (cJSON_IsString(t))
		snprintf(buf, n, "%s", t->valuestring);
	cJSON_Delete(j);
}

static void app_free(struct app *a)
{
	tr_free(&a->tr);
	free(a->system);
	free(a->preset);
	free(a->inject);
	overlay_close(a->over);
	a->over = NULL;
}

int tui_run(const struct tui_opts *o)
{
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		fprintf(stderr, "ttychat: the full-screen chat needs a terminal on stdin and stdout\n");
		return EXIT_FAILURE;
	}
	setlocale(LC_ALL, "");
	setlocale(LC_NUMERIC, "C");
	const char *cs = nl_langinfo(CODESET);
	bool utf8 = cs && (strcmp(cs, "UTF-8") == 0 || strcmp(cs, "utf8") == 0);

	static struct app app; /* the UI root */
	struct app *a = &app;
	memset(a, 0, sizeof *a);
	a->o = o;
	a->reply = -1;
	a->editing = -1;
	a->conv = 1;
	a->sidebar_on = true;
	a->ascii = !utf8;
	a->set.s = o->sampling;
	a->set.max_tokens = o->max_tokens;
	a->set.wrap_code = true;
	a->set.ctrl_c_quits = true;
	a->set.user_set = o->sampling_set;
	a->text_flags = a->ascii ? TEXT_ASCII : 0;
	a->st.prefill_tps = a->st.decode_tps = a->st.ttft_ms = -1;
	a->st.s = a->set.s;
	tr_init(&a->tr);
	if (o->system) {
		a->system = strdup(o->system);
		a->system_user = true;
	} else if (o->model && o->model->system_prompt) {
		a->system = strdup(o->model->system_prompt);
	}
	const char *inj = getenv("TTYCHAT_TEST_INJECT");
	if (inj && inj[0])
		a->inject = text_unescape(inj, &a->inject_len);

	char err[1024];
	struct engine_params ep = {.n_threads = o->n_threads};
	a->eng = engine_create(&ep, err, sizeof err);
	if (!a->eng) {
		fprintf(stderr, "ttychat: %s\n", err);
		app_free(a);
		return EXIT_FAILURE;
	}
	int sp[2];
	if (tty_pipe(sp, err, sizeof err) != 0) {
		fprintf(stderr, "ttychat: %s\n", err);
		engine_free(a->eng);
		app_free(a);
		return EXIT_FAILURE;
	}

	struct input_hooks ih = {.on_line = on_line, .on_suspend = on_suspend, .ctx = a};
	if (input_init(&ih) != 0) {
		fprintf(stderr, "ttychat: cannot set up readline\n");
		goto fail_early;
	}
	if (tty_open(&a->tty, sp[1], err, sizeof err) != 0) {
		fprintf(stderr, "ttychat: %s\n", err);
		goto fail_early;
	}
	a->cursor_on = true;
	const char *nc = getenv("NO_COLOR");
	a->use_color = has_colors() && !(nc && nc[0]);
	if (a->use_color && start_color() != OK)
		a->use_color = false;
	char tname[128];
	if (o->theme)
		snprintf(tname, sizeof tname, "%s", o->theme);
	else
		settings_theme(tname, sizeof tname);
	if (!tname[0])
		snprintf(tname, sizeof tname, "%s", a->use_color ? "default" : "mono");
	if (theme_load(tname, &a->theme, err, sizeof err) != 0)
		notice(a, TR_ERROR, "%s", err);
	theme_apply(&a->theme, a->use_color, a->attrs);
	notice(a, TR_NOTICE, "ttychat: type a message and press Enter; F1 help, F2 models, F3 conversations, Ctrl-C quits");

	/* the history first: the conversation reopened decides the model */
	struct chats_settings held;
	chats_settings_init(&held);
	start_history(a, sp[0]);
	if (a->ch && chats_id(a->ch))
		chats_settings_of(a->ch, &held);

	/* the model: -m, else the reopened conversation's, else the one used
	 * last, else the default */
	struct model_entry last;
	char spec[4096];
	const struct model_entry *me = o->model;
	const char *use_spec = o->model_spec ? o->model_spec : me ? me->name : "";
	bool have_last = false;
	uint32_t ctx = 0;
	if (!o->model_spec && held.model && held.model[0]) {
		if (config_resolve_model(held.model, &last, err, sizeof err) == 0) {
			have_last = true;
			snprintf(spec, sizeof spec, "%s", held.model);
			/* the context it was held with, so its KV cache fits */
			if (!o->n_ctx && held.context_size >= 16 && held.context_size <= (1u << 24))
				ctx = held.context_size;
		} else {
			notice(a, TR_NOTICE, "this conversation's model is not available (%s)", err);
		}
	}
	if (!have_last && !o->model_spec && models_last_read(spec, sizeof spec) == 0 &&
	    config_resolve_model(spec, &last, err, sizeof err) == 0)
		have_last = true;
	if (have_last) {
		me = &last;
		use_spec = spec;
		if (!o->system && !a->system_user) {
			free(a->system);
			a->system = last.system_prompt ? strdup(last.system_prompt) : NULL;
		}
	}
	if (a->quit) {
		/* asked to quit at the passphrase */
	} else if (me) {
		/* the caller applied -m's models.d defaults; the remembered
		 * model's own replace them (flags given stay) */
		load_model(a, use_spec, me->path, me->display_name[0] ? me->display_name : me->name,
			   ctx ? ctx : models_entry_ctx(o->n_ctx, me->context_size, me->remote), me, have_last);
	} else {
		a->st.phase = PH_NOMODEL;
	}
	if (have_last)
		config_entry_free(&last);
	a->st.mem_avail = models_mem_available();
	a->dirty = D_ALL;

	loop(a, sp[0]);

	/* what is complete is committed; a reply still coming is stopped and
	 * kept as partial */
	if (busy(a)) {
		engine_cancel(a->eng);
		struct tr_item *it = &a->tr.v[a->reply];
		a->reply = -1;
		if (it->len)
			commit(a, "assistant", it->text, it->len, true);
	}
	char unsaved[600] = "";
	finish_history(a, unsaved, sizeof unsaved);
	del_windows(a);
	tty_close(&a->tty);
	input_done();
	engine_free(a->eng);
	close(sp[0]);
	close(sp[1]);
	app_free(a);
	if (unsaved[0])
		fprintf(stderr, "ttychat: %s\n", unsaved);
	return a->status;

fail_early:
	input_done();
	engine_free(a->eng);
	close(sp[0]);
	close(sp[1]);
	app_free(a);
	return EXIT_FAILURE;
}
