/*
 * actions.c - what keys and slash commands do (see app.h).
 *
 * cmds.c's tables name an action for each key and command (enum
 * tui_act); one handler per action is here, in act_fns[], the one
 * dispatch for both.  A command's argument goes to its handler; a key's
 * is empty.  Handlers change the UI root and mark what to draw, as every
 * handler of the loop does; the lines readline hands over (messages,
 * commands, an edited message) arrive through actions_on_line().
 */
#include "config.h"

#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "input.h"

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
		app_load_spec(a, arg);
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
	reply_start(a);
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
	if (app_reset_conversation(a, false))
		notice(a, TR_NOTICE, "new conversation");
}

static void act_clear(struct app *a, const char *arg)
{
	if (app_reset_conversation(a, true))
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

/* F5: a thinking model stops thinking and answers. */
static void act_answer_now(struct app *a, const char *arg)
{
	if (busy(a) && a->think >= 0 && (a->tr.v[a->think].flags & TRF_STREAMING))
		engine_answer_now(a->eng);
}

/* F6: every reply's reasoning folded to its header, or all unfolded. */
static void act_fold(struct app *a, const char *arg)
{
	bool any_folded = false;
	for (size_t i = 0; i < a->tr.n; i++)
		if (a->tr.v[i].kind == TR_REASONING && (a->tr.v[i].flags & TRF_FOLDED))
			any_folded = true;
	for (size_t i = 0; i < a->tr.n; i++) {
		struct tr_item *it = &a->tr.v[i];
		if (it->kind != TR_REASONING || (it->flags & TRF_STREAMING))
			continue;
		if (any_folded)
			it->flags &= ~(unsigned)TRF_FOLDED;
		else
			it->flags |= TRF_FOLDED;
		/* the header's hint follows the fold */
		char *hint = strstr(it->label, " (F6 unfolds)");
		if (hint)
			*hint = '\0';
		else if (!any_folded && strlen(it->label) + 14 < sizeof it->label)
			strcat(it->label, " (F6 unfolds)");
	}
	a->dirty |= D_TRANS;
}

static void act_think(struct app *a, const char *arg)
{
	char msg[256];
	if (cmds_think(&a->set, arg, msg, sizeof msg) == 0)
		notice(a, TR_NOTICE, "%s%s", msg,
		       a->st.have_info && !a->st.info.reasoning[0] ? " (this model's template does not think)" : "");
	else
		notice(a, TR_ERROR, "%s", msg);
	a->dirty |= D_SIDE;
}

static void act_budget(struct app *a, const char *arg)
{
	char msg[256];
	if (cmds_budget(&a->set, arg, msg, sizeof msg) == 0)
		notice(a, TR_NOTICE, "%s", msg);
	else
		notice(a, TR_ERROR, "%s", msg);
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

/* Whether OSC 52 must go through tmux's passthrough: inside tmux, when
 * its set-clipboard option does not take OSC 52 from programs itself. */
static bool tmux_needs_wrap(void)
{
	if (!getenv("TMUX"))
		return false;
	FILE *p = popen("tmux show-options -gv set-clipboard 2>/dev/null", "r");
	if (!p)
		return false;
	char v[32] = "";
	bool got = fgets(v, sizeof v, p) != NULL;
	pclose(p);
	return got && strncmp(v, "on", 2) != 0;
}

static void act_copy(struct app *a, const char *arg)
{
	const bool code = strcmp(arg, "code") == 0;
	if (arg[0] && !code) {
		notice(a, TR_ERROR, "/copy: say /copy for the last reply or /copy code for its last code block");
		return;
	}
	const struct tr_item *it = NULL;
	for (size_t i = a->tr.n; i-- > 0 && !it;)
		if (a->tr.v[i].kind == TR_ASSISTANT && a->tr.v[i].len > 0)
			it = &a->tr.v[i];
	if (!it) {
		notice(a, TR_ERROR, "/copy: no reply to copy yet");
		return;
	}
	size_t n = it->len;
	char *block = code ? md_last_code(it->text, it->len, &n) : NULL;
	if (code && !block) {
		notice(a, TR_ERROR, "/copy code: the last reply has no code block");
		return;
	}
	if (tty_osc52(code ? block : it->text, n, tmux_needs_wrap()) != 0)
		notice(a, TR_ERROR, "/copy: could not write to the terminal");
	else
		notice(a, TR_NOTICE, "copied %s (%zu bytes) to the clipboard (OSC 52: the terminal must allow it)",
		       code ? "the last code block" : "the last reply", n);
	free(block);
}

/* One handler per enum tui_act (cmds.h): the tables of keys and commands
 * name the action, this one does it. */
static act_fn *const act_fns[] = {
	[ACT_HELP] = act_help, [ACT_PICKER] = act_picker, [ACT_CHATS] = act_chats, [ACT_SIDEBAR] = act_sidebar,
	[ACT_CANCEL] = act_cancel, [ACT_INTERRUPT] = act_interrupt, [ACT_PGUP] = act_pgup, [ACT_PGDN] = act_pgdn,
	[ACT_TOP] = act_top, [ACT_BOTTOM] = act_bottom, [ACT_REDRAW] = act_redraw, [ACT_SUSPEND] = act_suspend,
	[ACT_QUIT] = act_quit, [ACT_MODEL] = act_model, [ACT_REGEN] = act_regen, [ACT_EDIT] = act_edit,
	[ACT_NEW] = act_new, [ACT_CLEAR] = act_clear, [ACT_SYSTEM] = act_system, [ACT_SET] = act_set,
	[ACT_THEME] = act_theme, [ACT_RENAME] = act_rename, [ACT_COPY] = act_copy,
	[ACT_ANSWER_NOW] = act_answer_now, [ACT_FOLD] = act_fold, [ACT_THINK] = act_think, [ACT_BUDGET] = act_budget,
};

void actions_do(struct app *a, enum tui_act act, const char *arg)
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
	actions_do(a, c->act, arg);
}

void actions_on_line(void *ctx, char *line)
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
			reply_send(a, line);
		}
		free(line);
		return;
	}
	if (line[0] == '/' && line[1] != '/') {
		run_command(a, line);
	} else {
		const char *text = line[0] == '/' ? line + 1 : line;
		if (text[strspn(text, " \t\n")])
			reply_send(a, text);
	}
	free(line);
}
