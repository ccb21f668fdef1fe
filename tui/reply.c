/*
 * reply.c - a reply: the conversation sent to the engine, and the engine's
 * events turned into the transcript, the live numbers and notices (see
 * app.h).
 *
 * Each submit sends the whole conversation (transcript.h builds the
 * messages) and the engine reuses the KV prefix it already has.  Events
 * are matched to what asked for them by request id: the reply streaming
 * (a->req), the model loading (a->load_req), a KV import or export; an
 * event of an older request is dropped.  A reply is committed to the
 * history when it ends, however it ends; one that failed keeps what
 * arrived, marked.
 *
 * A thinking model's reasoning (TOKENs of part REASONING) goes into an
 * item of its own just above the reply, dim under a header that counts
 * its tokens and time while it grows; it folds to that header when the
 * answer starts (F6 unfolds every one).  It is neither sent back to the
 * model (templates drop past reasoning anyway) nor saved.
 */
#include "config.h"

#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models.h"

#define MAX_REPLY_BYTES (16u << 20)

void reply_start(struct app *a)
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
	struct engine_gen_opts g = {.max_tokens = a->set.max_tokens, .add_generation_prompt = true,
				    .think = a->set.think, .reasoning_effort = a->set.effort[0] ? a->set.effort : NULL,
				    .reasoning_budget = a->set.budget, .spec = a->spec, .draft_max = a->draft_max};
	int req = m.n ? engine_submit(a->eng, a->conv, m.v, m.n, &a->set.s, &g) : ENGINE_E_INVAL;
	tr_msgs_free(&m);
	if (req <= 0) {
		tr_truncate(&a->tr, (size_t)i);
		notice(a, TR_ERROR, "cannot send: %s", engine_last_error(a->eng));
		return;
	}
	a->reply = i;
	a->req = req;
	a->think = -1;
	a->think_n = 0;
	a->st.think_budget = a->set.think == ENGINE_THINK_OFF ? 0 : a->set.budget;
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

void reply_send(struct app *a, const char *text)
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
	reply_start(a);
}

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

/* The reasoning item's header: its size and time, live while it grows. */
static void think_label(struct app *a, const char *why)
{
	struct tr_item *it = &a->tr.v[a->think];
	double s = (a->think_t1 - a->think_t0) / 1e3;
	if (it->flags & TRF_STREAMING)
		snprintf(it->label, sizeof it->label, "Thinking... %u tokens, %.0f s (F5: answer now)", a->think_n, s);
	else
		snprintf(it->label, sizeof it->label, "Reasoning: %u tokens, %.1f s%s%s", a->think_n, s, why,
			 it->flags & TRF_FOLDED ? " (F6 unfolds)" : "");
}

/* The reasoning stopped growing: the answer started, or the reply ended. */
static void think_end(struct app *a, bool fold, const char *why)
{
	struct tr_item *it = &a->tr.v[a->think];
	if (!(it->flags & TRF_STREAMING))
		return;
	it->flags &= ~(unsigned)TRF_STREAMING;
	if (fold)
		it->flags |= TRF_FOLDED;
	think_label(a, why);
}

/* A piece of reasoning: into the item above the reply (made at the first). */
static void ev_think(struct app *a, const struct engine_event *ev)
{
	if (a->think < 0) {
		long i = tr_insert(&a->tr, (size_t)a->reply, TR_REASONING, "", 0, TRF_STREAMING);
		if (i < 0)
			return;
		a->think = i;
		a->reply = i + 1;
		a->think_t0 = now_ms();
	}
	if (a->tr.v[a->think].len + ev->text_len > MAX_REPLY_BYTES) {
		engine_cancel(a->eng);
		return;
	}
	tr_append(&a->tr, (size_t)a->think, ev->text, ev->text_len);
	if (ev->token >= 0)
		a->think_n++;
	a->think_t1 = now_ms();
	think_label(a, "");
}

/* A piece of the reply. */
static void ev_token(struct app *a, const struct engine_event *ev)
{
	if (ev->part == ENGINE_PART_REASONING) {
		ev_think(a, ev);
	} else {
		if (a->tr.v[a->reply].len + ev->text_len > MAX_REPLY_BYTES) {
			engine_cancel(a->eng);
			return;
		}
		if (a->think >= 0)
			think_end(a, true, "");
		tr_append(&a->tr, (size_t)a->reply, ev->text, ev->text_len);
	}
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
	if (a->think >= 0) {
		static const char *const why[] = {
			[ENGINE_REASONING_END_MODEL] = "", [ENGINE_REASONING_END_BUDGET] = ", closed by the budget",
			[ENGINE_REASONING_END_NOW] = ", closed by F5", [ENGINE_REASONING_END_LOOP] = ", closed: it looped",
			[ENGINE_REASONING_END_OFF] = ", closed: thinking is off"};
		unsigned w = (unsigned)ev->stats.reasoning_end;
		if (ev->stats.reasoning_tokens)
			a->think_n = ev->stats.reasoning_tokens;
		a->tr.v[a->think].flags |= TRF_STREAMING; /* relabel with the final figures */
		think_end(a, it->len > 0, w < sizeof why / sizeof why[0] ? why[w] : "");
	}
	/* a call the model made shows as one (the text stays as written) */
	if (a->st.have_info)
		tr_tool_calls(&a->tr, (size_t)a->reply, a->st.info.tool_format);
	it = &a->tr.v[a->reply]; /* the items may have moved */
	const struct tr_item *th = a->think >= 0 ? &a->tr.v[a->think] : NULL;
	a->reply = -1;
	a->side_owed = false;
	if (it->len)
		commit_reasoned(a, "assistant", it->text, it->len, th ? th->text : NULL, th ? th->len : 0,
				(it->flags & (TRF_STOPPED | TRF_CONTEXT)) != 0);
	a->think = -1;
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
		tr_truncate(&a->tr, (size_t)(a->think >= 0 ? a->think : a->reply));
		a->reply = -1;
		a->think = -1;
	}
	a->dirty |= D_ALL & ~D_LAYOUT;
}

/* The reply failed: what arrived is kept, and saved as a reply cut short. */
static void ev_reply_failed(struct app *a, const struct engine_event *ev)
{
	struct tr_item *it = &a->tr.v[a->reply];
	size_t at = (size_t)a->reply;
	const struct tr_item *th = a->think >= 0 ? &a->tr.v[a->think] : NULL;
	if (th)
		think_end(a, false, ", cut short");
	a->think = -1;
	a->reply = -1;
	if (it->len == 0) {
		tr_truncate(&a->tr, at);
	} else {
		it->flags = (it->flags & ~(unsigned)TRF_STREAMING) | TRF_FAILED;
		commit_reasoned(a, "assistant", it->text, it->len, th ? th->text : NULL, th ? th->len : 0, true);
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
void reply_on_event(struct app *a, struct engine_event *ev)
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
