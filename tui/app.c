/*
 * app.c - the TUI's main loop, its layout and drawing, and the model the
 * open conversation runs on (see tui.h, app.h); the conversation's
 * history is convo.c's, a reply reply.c's, what keys do actions.c's.
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
 * own keys come from the table in cmds.c and do what actions.c says,
 * everything else goes to readline (input.c), whose lines actions.c takes
 * too.  A lone Esc (no byte following within ESCDELAY) stops the reply;
 * Esc followed by a byte is Alt-that-byte.  Bracketed paste is inserted as
 * text, so a pasted block never sends itself line by line.  While a box
 * (overlay.h: help, picker, conversations) is open, every key is the
 * box's, and what it asks for is done here.  Engine events go to reply.c.
 *
 * The terminal is restored on every exit path: normal quit, SIGTERM and
 * SIGHUP (through the loop), and fatal signals (tty.c: a handler that
 * restores the saved termios and writes the precomputed reset sequence,
 * then re-raises).
 */
#include "config.h"

#include "tui.h"
#include "app.h"

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
#include "session.h"
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

/* ---- small helpers --------------------------------------------------------- */

void notice(struct app *a, enum tr_kind kind, const char *fmt, ...)
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

void set_preset(struct app *a, const char *text)
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
void close_picker(struct app *a)
{
	if (a->over && a->over->cls == &picker_class)
		close_overlay(a);
}

/* The command line's settings, with what /set, /system and a reopened
 * conversation chose since: the strongest source of src/session.h. */
static void app_flags(const struct app *a, struct session_flags *f)
{
	*f = a->o->flags;
	f->sampling = a->set.s;
	f->set = a->set.user_set;
	f->system = a->system_user ? (a->system ? a->system : "") : NULL;
}

/* The settings for model ME (NULL: a file without a models.d entry; its
 * file's advice is a->advice), as every front end decides them; 0, or -1
 * when out of memory. */
static int app_resolve(struct app *a, const struct model_entry *me, struct session_config *c)
{
	struct session_flags f;
	app_flags(a, &f);
	if (session_resolve(&f, NULL, me, &a->prefs, &a->advice, c) != 0) {
		notice(a, TR_ERROR, "out of memory");
		return -1;
	}
	char err[600];
	if (session_resolve_draft(c, err, sizeof err) != 0) {
		notice(a, TR_ERROR, "%s", err);
		session_config_free(c);
		return -1;
	}
	return 0;
}

/* The model's sampling defaults and system prompt as C decided them,
 * under what the user chose. */
static void apply_defaults(struct app *a, const struct session_config *c)
{
	a->set.s = c->sampling;
	if (!a->system_user) {
		free(a->system);
		a->system = c->system ? strdup(c->system) : NULL;
	}
	/* the sidebar names what the model file advised */
	a->advice_set = session_fields_of(c, SESSION_FILE);
	a->spec = c->spec;
	a->draft_max = c->draft_max;
}

/* Starts loading a model; ME (may be NULL for a bare file) gives defaults.
 * CTX: the context to load it with (a reopened conversation's), or 0 for
 * the one src/session.h decides. */
static void load_model(struct app *a, const char *spec, const char *path, const char *display, uint32_t ctx,
		       const struct model_entry *me)
{
	if (busy(a) || a->st.phase == PH_LOADING)
		engine_cancel(a->eng);
	/* the conversation's cache in the model being left is filed first
	 * (requests run in order), then freed */
	convo_export_kv(a);
	engine_drop_conv(a->eng, a->conv);
	/* context, KV type, device, GPU layers, template: src/session.h */
	session_file_read(path, &a->advice);
	struct session_config c;
	if (app_resolve(a, me, &c) != 0)
		return;
	if (ctx && !a->o->flags.n_ctx)
		c.load.n_ctx = ctx;
	int r = engine_load(a->eng, path, &c.load);
	if (r <= 0) {
		session_config_free(&c);
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
	apply_defaults(a, &c);
	session_config_free(&c);
	if (me && !a->set.think_set) {
		/* the models.d entry's thinking defaults */
		a->set.think = (enum engine_think)me->think;
		snprintf(a->set.effort, sizeof a->set.effort, "%s", me->reasoning_effort);
		a->set.budget = me->reasoning_budget;
	}
	a->dirty |= D_SIDE | D_STATUS | D_HINT;
}

void app_load_spec(struct app *a, const char *spec)
{
	struct model_entry me;
	char err[1024];
	if (config_resolve_model(spec, &me, err, sizeof err) != 0) {
		notice(a, TR_ERROR, "%s", err);
		return;
	}
	load_model(a, spec, me.path, me.display_name, 0, &me);
	config_entry_free(&me);
}

/* ---- conversations: leaving one, starting one, opening one ------------------------ */

/* /new (and /clear, which keeps the system prompt).  False when refused. */
bool app_reset_conversation(struct app *a, bool keep_system)
{
	if (!convo_leave(a))
		return false;
	if (a->ch)
		chats_new(a->ch);
	convo_clear_view(a);
	if (!keep_system) {
		const char *flag = a->o->flags.system;
		a->system_user = flag != NULL;
		free(a->system);
		a->system = flag && flag[0] ? strdup(flag) : NULL;
		if (!a->system_user) {
			struct model_entry me;
			char err[256];
			bool have = a->load_spec[0] && config_resolve_model(a->load_spec, &me, err, sizeof err) == 0;
			struct session_config c;
			if (app_resolve(a, have ? &me : NULL, &c) == 0) {
				a->system = c.system ? strdup(c.system) : NULL;
				session_config_free(&c);
			}
			if (have)
				config_entry_free(&me);
		}
	}
	hist_update_state(a);
	return true;
}

/* ---- the conversation list (F3) ------------------------------------------------ */

void open_chats(struct app *a, const char *needle)
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
		convo_clear_view(a);
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
			convo_open(a, id);
		break;
	case CHATLIST_NEW:
		close_overlay(a);
		if (app_reset_conversation(a, false))
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

void open_help(struct app *a)
{
	open_overlay(a, help_open(&a->set));
}

void open_picker(struct app *a)
{
	char err[256];
	a->st.mem_avail = models_mem_available();
	/* on a GPU the fit is against its memory: what is free there plus
	 * what the model being replaced holds (as of the last engine figures;
	 * a model that does not fit still runs, split with the CPU) */
	uint64_t avail = a->st.mem_avail;
	if (a->st.vram_total && a->o->flags.device != ENGINE_DEVICE_CPU)
		avail = a->st.vram_free + a->st.vram_ours;
	struct overlay *p = picker_open(a->o->flags.n_ctx, avail, &a->st, a->model_path, err, sizeof err);
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
			load_model(a, m->name, me.path, me.display_name, 0, &me);
			config_entry_free(&me);
		} else {
			notice(a, TR_ERROR, "%s", err);
		}
	} else {
		load_model(a, m->path, m->path, m->display, 0, NULL);
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


/* The sampling fields the model file advised that the user has not set
 * since, for the sidebar. */
static void advice_note(struct app *a)
{
	session_fields_str(a->advice_set & ~a->set.user_set, a->st.advice, sizeof a->st.advice);
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
	advice_note(a);
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

void resume_screen(struct app *a)
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
		actions_do(a, ACT_CANCEL, "");
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
			actions_do(a, ACT_INTERRUPT, "");
		return;
	}
	if (a->over) {
		overlay_key(a, k);
		return;
	}
	/* during an incremental search every key is the search's */
	const struct tui_key *row = input_searching() && k != 3 ? NULL : cmds_key(k, input_empty());
	if (row && row->act != ACT_NONE) {
		actions_do(a, row->act, "");
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
		convo_retry(a);
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
				reply_on_event(a, &ev);
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

static void app_free(struct app *a)
{
	tr_free(&a->tr);
	free(a->system);
	free(a->preset);
	free(a->inject);
	overlay_close(a->over);
	a->over = NULL;
	config_settings_free(&a->prefs);
}

/* The model at start (src/session.h): -m, else the reopened conversation's
 * (HELD, NULL when none; with the context it was held with, so that its KV
 * cache fits), else the one used last, else settings.json's, else the
 * default.  One that cannot be found gives way to the next. */
static void load_first_model(struct app *a, const struct chats_settings *held)
{
	char lastbuf[4096], spec[4096], err[1024];
	const char *last = models_last_read(lastbuf, sizeof lastbuf) == 0 ? lastbuf : NULL;
	struct model_entry me;
	enum session_source from = SESSION_DEFAULT;
	const struct chats_settings *h = held && held->model && held->model[0] ? held : NULL;
	bool ok = false;
	/* a source whose model cannot be found gives way to the weaker ones */
	while (!ok && session_pick_model(&a->o->flags, h, last, &a->prefs, spec, sizeof spec, &from) == 0) {
		ok = config_resolve_model(spec, &me, err, sizeof err) == 0;
		if (ok)
			break;
		if (from == SESSION_CONV) {
			notice(a, TR_NOTICE, "this conversation's model is not available (%s)", err);
			h = NULL;
		} else if (last && strcmp(spec, last) == 0) {
			last = NULL;
		} else {
			break; /* the flag's, settings.json's or the default's: nothing weaker is tried */
		}
	}
	if (!ok) {
		a->st.phase = PH_NOMODEL;
		return;
	}
	uint32_t ctx = 0;
	if (from == SESSION_CONV && held->context_size >= 16 && held->context_size <= (1u << 24))
		ctx = held->context_size;
	load_model(a, spec, me.path, me.display_name[0] ? me.display_name : me.name, ctx, &me);
	config_entry_free(&me);
}

/* The UI root before anything is set up: the command line's settings, the
 * locale's character set. */
static void app_init(struct app *a, const struct tui_opts *o)
{
	setlocale(LC_ALL, "");
	setlocale(LC_NUMERIC, "C");
	const char *cs = nl_langinfo(CODESET);
	bool utf8 = cs && (strcmp(cs, "UTF-8") == 0 || strcmp(cs, "utf8") == 0);
	memset(a, 0, sizeof *a);
	a->o = o;
	a->reply = -1;
	a->think = -1;
	a->editing = -1;
	a->conv = 1;
	a->sidebar_on = true;
	a->ascii = !utf8;
	a->set.s = o->flags.sampling;
	a->set.max_tokens = o->max_tokens;
	a->set.wrap_code = true;
	a->set.ctrl_c_quits = true;
	a->set.user_set = o->flags.set;
	a->text_flags = a->ascii ? TEXT_ASCII : 0;
	a->st.prefill_tps = a->st.decode_tps = a->st.ttft_ms = -1;
	a->st.s = a->set.s;
	tr_init(&a->tr);
	if (o->flags.system) {
		a->system = o->flags.system[0] ? strdup(o->flags.system) : NULL;
		a->system_user = true;
	}
	const char *inj = getenv("TTYCHAT_TEST_INJECT");
	if (inj && inj[0])
		a->inject = text_unescape(inj, &a->inject_len);
}

/* Readline, the terminal and the colours; SIG_WR is the signal pipe's
 * end for the handlers.  0, or -1 with the reason printed. */
static int open_screen(struct app *a, int sig_wr)
{
	char err[1024];
	struct input_hooks ih = {.on_line = actions_on_line, .on_suspend = on_suspend, .ctx = a};
	if (input_init(&ih) != 0) {
		fprintf(stderr, "ttychat: cannot set up readline\n");
		return -1;
	}
	if (tty_open(&a->tty, sig_wr, err, sizeof err) != 0) {
		fprintf(stderr, "ttychat: %s\n", err);
		return -1;
	}
	a->cursor_on = true;
	const char *nc = getenv("NO_COLOR");
	a->use_color = has_colors() && !(nc && nc[0]);
	if (a->use_color && start_color() != OK)
		a->use_color = false;
	a->tr.plain = !a->use_color;
	char tname[128];
	snprintf(tname, sizeof tname, "%.120s", a->o->theme ? a->o->theme : a->prefs.theme);
	if (!tname[0])
		snprintf(tname, sizeof tname, "%s", a->use_color ? "default" : "mono");
	if (theme_load(tname, &a->theme, err, sizeof err) != 0)
		notice(a, TR_ERROR, "%s", err);
	theme_apply(&a->theme, a->use_color, a->attrs);
	notice(a, TR_NOTICE, "ttychat: type a message and press Enter; F1 help, F2 models, F3 conversations, Ctrl-C quits");
	return 0;
}

/* On the way out: what is complete is committed (a reply still coming is
 * stopped and kept as partial), the history saved, the terminal given
 * back.  Returns the exit status. */
static int close_app(struct app *a, int sp[2])
{
	if (busy(a)) {
		engine_cancel(a->eng);
		struct tr_item *it = &a->tr.v[a->reply];
		a->reply = -1;
		if (it->len)
			commit(a, "assistant", it->text, it->len, true);
	}
	char unsaved[600] = "";
	convo_finish_history(a, unsaved, sizeof unsaved);
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
}

int tui_run(const struct tui_opts *o)
{
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		fprintf(stderr, "ttychat: the full-screen chat needs a terminal on stdin and stdout\n");
		return EXIT_FAILURE;
	}
	static struct app app; /* the UI root */
	struct app *a = &app;
	app_init(a, o);
	/* settings.json: a bad one is said once the screen is up */
	char prefs_err[1024] = "";
	if (config_settings_read(&a->prefs, prefs_err, sizeof prefs_err) == 0)
		prefs_err[0] = '\0';

	char err[1024];
	struct engine_params ep = {.n_threads = o->flags.n_threads ? o->flags.n_threads : a->prefs.d.threads};
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
	if (open_screen(a, sp[1]) != 0)
		goto fail_early;
	if (prefs_err[0])
		notice(a, TR_ERROR, "%s (its settings are not used)", prefs_err);
	else if (a->prefs.d.warnings[0])
		notice(a, TR_NOTICE, "%s", a->prefs.d.warnings);

	/* the history first: the conversation reopened decides the model */
	struct chats_settings held;
	chats_settings_init(&held);
	convo_start_history(a, sp[0]);
	if (a->ch && chats_id(a->ch))
		chats_settings_of(a->ch, &held);

	if (!a->quit)
		load_first_model(a, a->ch && chats_id(a->ch) ? &held : NULL);
	a->st.mem_avail = models_mem_available();
	a->dirty = D_ALL;

	loop(a, sp[0]);
	return close_app(a, sp);

fail_early:
	input_done();
	engine_free(a->eng);
	close(sp[0]);
	close(sp[1]);
	app_free(a);
	return EXIT_FAILURE;
}
