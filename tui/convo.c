/*
 * convo.c - the full-screen chat's open conversation and its history: what
 * a committed message, a rewind, opening, leaving and the KV snapshots do
 * through src/chats.h, the unlock at start and the last save on the way
 * out (see app.h).  The history is written by the UI thread only (DESIGN
 * rule 4); a write that fails leaves the message in memory, retried every
 * HIST_RETRY_MS and said in the sidebar.
 */
#include "config.h"

#include "app.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chats.h"
#include "session.h"
#include "sidebar.h"
#include "status.h"
#include "transcript.h"
#include "unlock.h"

#define HIST_RETRY_MS 10000.0    /* between retries of unsaved messages */
#define EXIT_SAVE_WAIT_MS 30000  /* for the KV snapshots on the way out */

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
	s->think = (int)a->set.think;
	s->reasoning_effort = a->set.effort[0] ? a->set.effort : NULL;
	s->reasoning_budget = a->set.budget > 0 ? (unsigned)a->set.budget : 0;
}

/* The sidebar's "Chat" lines. */
void hist_update_state(struct app *a)
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

void commit(struct app *a, const char *role, const char *text, size_t len, bool partial)
{
	commit_reasoned(a, role, text, len, NULL, 0, partial);
}

void commit_reasoned(struct app *a, const char *role, const char *text, size_t len, const char *reasoning,
		     size_t rlen, bool partial)
{
	if (a->o->on_commit)
		a->o->on_commit(a->o->hook_ctx, a->conv, role, text, partial);
	if (!a->ch)
		return;
	struct chats_settings s;
	hist_settings(a, &s);
	int rc = chats_commit_reasoned(a->ch, &s, strcmp(role, "user") == 0 ? CHATS_USER : CHATS_ASSISTANT, text, len,
				       reasoning, rlen, partial);
	if (rc == CHATS_UNSAVED) {
		notice(a, TR_ERROR, "history: not saved yet: %s (kept in memory, retrying)", chats_errmsg(a->ch));
		a->retry_at = now_ms() + HIST_RETRY_MS;
	} else if (rc < 0) {
		notice(a, TR_ERROR, "history: %s", chats_errmsg(a->ch));
	}
	hist_update_state(a);
}

void rewind_to(struct app *a, size_t items_kept)
{
	size_t n = tr_count_msgs(&a->tr, items_kept);
	if (a->o->on_rewind)
		a->o->on_rewind(a->o->hook_ctx, a->conv, n);
	if (a->ch)
		chats_rewind(a->ch, n);
}

/* Retries unsaved messages when it is time. */
void convo_retry(struct app *a)
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
void convo_export_kv(struct app *a)
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
void on_export(struct app *a, const struct engine_event *ev)
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
void import_kv(struct app *a)
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

/* Leaves the open conversation: a reply still coming is stopped and saved
 * as cut short, unsaved messages are retried (leaving them behind is
 * refused once, with a warning), and the KV cache is filed.  False when
 * refused. */
bool convo_leave(struct app *a)
{
	if (busy(a)) {
		engine_cancel(a->eng);
		struct tr_item *it = &a->tr.v[a->reply];
		it->flags = (it->flags & ~(unsigned)TRF_STREAMING) | TRF_STOPPED;
		if (a->think >= 0)
			a->tr.v[a->think].flags &= ~(unsigned)TRF_STREAMING;
		a->think = -1;
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
	convo_export_kv(a);
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
void convo_clear_view(struct app *a)
{
	tr_truncate(&a->tr, 0);
	a->st.ctx_used = 0;
	a->st.have_prompt = false;
	a->tr.follow = true;
	a->dirty |= D_ALL & ~D_LAYOUT;
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
		if (!user && m->reasoning_len) {
			/* the reply's reasoning, folded above it */
			long r = tr_add(&a->tr, TR_REASONING, m->reasoning, m->reasoning_len, TRF_FOLDED);
			if (r >= 0)
				snprintf(a->tr.v[r].label, sizeof a->tr.v[r].label, "Reasoning: %zu bytes (F6 unfolds)",
					 m->reasoning_len);
		}
		long k = tr_add(&a->tr, user ? TR_USER : TR_ASSISTANT, m->text, m->len,
				!user && m->cancelled ? TRF_STOPPED : 0);
		if (k >= 0 && !user) {
			snprintf(a->tr.v[k].label, sizeof a->tr.v[k].label, "%s", label);
			if (a->st.have_info)
				tr_tool_calls(&a->tr, (size_t)k, a->st.info.tool_format);
		}
	}
	if (!a->o->flags.system) {
		free(a->system);
		a->system = s.system_prompt && s.system_prompt[0] ? strdup(s.system_prompt) : NULL;
		a->system_user = true;
	}
	const unsigned given = a->o->flags.set;
	struct engine_sampling *e = &a->set.s;
	if (s.temperature >= 0 && !(given & SESSION_SET_TEMP))
		e->temperature = s.temperature, a->set.user_set |= SET_TEMP;
	if (s.top_k >= 0 && !(given & SESSION_SET_TOPK))
		e->top_k = s.top_k, a->set.user_set |= SET_TOPK;
	if (s.top_p >= 0 && !(given & SESSION_SET_TOPP))
		e->top_p = s.top_p, a->set.user_set |= SET_TOPP;
	if (s.min_p >= 0 && !(given & SESSION_SET_MINP))
		e->min_p = s.min_p, a->set.user_set |= SET_MINP;
	if (s.repeat_penalty > 0 && !(given & SESSION_SET_REP))
		e->repeat_penalty = s.repeat_penalty, a->set.user_set |= SET_REP;
	/* /think and /budget as the conversation was held */
	a->set.think = s.think == 1 || s.think == 2 ? (enum engine_think)s.think : ENGINE_THINK_DEFAULT;
	snprintf(a->set.effort, sizeof a->set.effort, "%s", s.reasoning_effort ? s.reasoning_effort : "");
	if (strcmp(a->set.effort, "low") && strcmp(a->set.effort, "medium") && strcmp(a->set.effort, "high"))
		a->set.effort[0] = '\0';
	a->set.budget = s.reasoning_budget <= (1u << 24) ? (int32_t)s.reasoning_budget : 0;
	if (s.think || s.reasoning_budget || a->set.effort[0])
		a->set.think_set = true;
	notice(a, TR_NOTICE, "conversation \"%s\": %zu message%s (F3 lists the others, /new starts one)",
	       chats_title(a->ch), n, n == 1 ? "" : "s");
	a->tr.follow = true;
	a->dirty |= D_ALL & ~D_LAYOUT;
}

/* Opens saved conversation ID in place of the current one. */
bool convo_open(struct app *a, const char *id)
{
	if (!a->ch || !convo_leave(a))
		return false;
	convo_clear_view(a);
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

/* Opens the history (asking for the passphrase) and reopens the
 * conversation held last. */
void convo_start_history(struct app *a, int sig_fd)
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
void convo_finish_history(struct app *a, char *msg, size_t msglen)
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
	convo_export_kv(a);
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
