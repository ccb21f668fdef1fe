/*
 * oneshot_hist.c - --save / --continue on top of history.h (see
 * oneshot_hist.h).
 *
 * The user's message is committed before the reply is generated and the
 * reply when it ends (finished, or cut short and flagged as cancelled), as
 * the TUI does: a crash loses at most the reply.  The conversation's
 * metadata record is rewritten only when the model or the system prompt
 * changed, so a continued conversation does not grow a META record per
 * turn.  The KV cache of a saved conversation is filed through kvstore.h
 * so that the next --continue prefills only the new turn.
 *
 * A continued conversation is sent as the TUI shows it: the rewinds of
 * /regen and /edit applied (history.h, "Rewinds"), system messages and
 * empty texts left out.  The view is taken once, when the conversation is
 * opened.
 */
#include "config.h"

#include "oneshot_hist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "history.h"
#include "kvstore.h"
#include "passphrase.h"

struct oneshot_hist {
	struct history *h;
	struct history_conv *c;
	struct passphrase_src src;
	size_t *view; /* indexes of the messages as they stand */
	size_t n_view;
	bool no_tty;
	char err[256];
};

static bool env_set(const char *name)
{
	const char *v = getenv(name);
	return v && v[0];
}

/* passphrase_get(), but with NO_TTY it never falls back to the terminal */
static int pass_cb(void *ctx, enum history_pass_purpose why, char *buf, size_t cap)
{
	struct oneshot_hist *p = ctx;
	p->err[0] = '\0';
	if (p->no_tty) {
		bool have = env_set("TTYCHAT_PASSPHRASE_FD") || env_set("TTYCHAT_PASSPHRASE_FILE") ||
			    (why == HISTORY_PASS_NEW &&
			     (env_set("TTYCHAT_NEW_PASSPHRASE_FD") || env_set("TTYCHAT_NEW_PASSPHRASE_FILE")));
		if (!have) {
			snprintf(p->err, sizeof p->err,
				 "the history needs a passphrase and CI is set: give it in TTYCHAT_PASSPHRASE_FILE or TTYCHAT_PASSPHRASE_FD");
			return -1;
		}
	}
	int rc = passphrase_get(&p->src, why, buf, cap);
	if (rc != 0)
		snprintf(p->err, sizeof p->err, "%s", p->src.err);
	return rc;
}

int oneshot_hist_open(const char *continue_id, bool create, bool no_tty, struct oneshot_hist **out, char *err,
		      size_t errlen)
{
	*out = NULL;
	struct oneshot_hist *p = calloc(1, sizeof *p);
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return EXIT_FAIL;
	}
	passphrase_src_init(&p->src);
	p->no_tty = no_tty;
	struct history_opts o = {.flags = create ? HISTORY_OPEN_CREATE : 0, .passphrase = pass_cb, .pass_ctx = p};
	char msg[512];
	int rc = history_open(&o, &p->h, msg, sizeof msg);
	if (rc != HISTORY_OK) {
		snprintf(err, errlen, "history: %s", rc == HISTORY_E_CANCELLED && p->err[0] ? p->err : msg);
		free(p);
		return rc == HISTORY_E_NOMEM ? EXIT_FAIL : EXIT_HISTORY;
	}
	if (continue_id) {
		rc = history_conv_load(p->h, continue_id, HISTORY_LOAD_WRITE, &p->c);
		if (rc < 0) {
			snprintf(err, errlen, "history: %s", history_errmsg(p->h));
			history_close(p->h);
			free(p);
			return rc == HISTORY_E_NOMEM ? EXIT_FAIL : EXIT_HISTORY;
		}
		size_t n = history_conv_count(p->c);
		p->view = malloc((n ? n : 1) * sizeof *p->view);
		if (!p->view) {
			snprintf(err, errlen, "out of memory");
			oneshot_hist_close(p);
			return EXIT_FAIL;
		}
		for (size_t i = 0; i < n; i++) {
			const struct history_msg *m = history_conv_msg(p->c, i);
			if ((m->role == HISTORY_ROLE_USER || m->role == HISTORY_ROLE_ASSISTANT) && m->len > 0 &&
			    !m->replaced)
				p->view[p->n_view++] = i;
		}
	}
	*out = p;
	return 0;
}

void oneshot_hist_settings(const struct oneshot_hist *p, struct oneshot_settings *s)
{
	memset(s, 0, sizeof *s);
	s->temperature = s->top_p = s->min_p = s->repeat_penalty = -1;
	s->top_k = -1;
	if (!p->c)
		return;
	const struct history_meta *m = history_conv_meta(p->c);
	s->model = m->model;
	s->system_prompt = m->system_prompt;
	s->temperature = m->temperature;
	s->top_p = m->top_p;
	s->min_p = m->min_p;
	s->repeat_penalty = m->repeat_penalty;
	s->top_k = m->top_k;
	s->context_size = m->context_size;
}

size_t oneshot_hist_count(const struct oneshot_hist *p)
{
	return p->n_view;
}

void oneshot_hist_msg(const struct oneshot_hist *p, size_t i, const char **role, const char **text)
{
	const struct history_msg *m = p->c && i < p->n_view ? history_conv_msg(p->c, p->view[i]) : NULL;
	*role = m && m->role == HISTORY_ROLE_ASSISTANT ? "assistant" : "user";
	*text = m ? m->text : "";
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int oneshot_hist_user(struct oneshot_hist *p, const struct oneshot_settings *s, const char *text, char *err,
		      size_t errlen)
{
	struct history_meta m;
	history_meta_init(&m);
	m.model = s->model;
	m.system_prompt = s->system_prompt && s->system_prompt[0] ? s->system_prompt : NULL;
	m.temperature = s->temperature;
	m.top_p = s->top_p;
	m.min_p = s->min_p;
	m.repeat_penalty = s->repeat_penalty;
	m.top_k = s->top_k;
	m.context_size = s->context_size;
	int rc = HISTORY_OK;
	if (!p->c) {
		rc = history_conv_create(p->h, &m, &p->c);
	} else {
		const struct history_meta *old = history_conv_meta(p->c);
		m.title = old->title;
		if (!same_str(old->system_prompt, m.system_prompt) || !same_str(old->model, m.model))
			rc = history_conv_set_meta(p->c, &m);
	}
	if (rc == HISTORY_OK)
		rc = history_append(p->c, HISTORY_ROLE_USER, text, strlen(text), 0);
	if (rc != HISTORY_OK) {
		snprintf(err, errlen, "history: cannot save: %s", history_errmsg(p->h));
		return rc == HISTORY_E_NOMEM ? EXIT_FAIL : EXIT_HISTORY;
	}
	return 0;
}

int oneshot_hist_reply(struct oneshot_hist *p, const char *text, size_t len, bool cancelled, char *err,
		       size_t errlen)
{
	if (!p->c || !text || len == 0)
		return 0;
	int rc = history_append(p->c, HISTORY_ROLE_ASSISTANT, text, len, cancelled ? HISTORY_MSG_CANCELLED : 0);
	if (rc != HISTORY_OK) {
		snprintf(err, errlen, "history: cannot save the reply: %s", history_errmsg(p->h));
		return rc == HISTORY_E_NOMEM ? EXIT_FAIL : EXIT_HISTORY;
	}
	return 0;
}

int oneshot_hist_kv_load(struct oneshot_hist *p, const char *model_id, void **blob, size_t *len)
{
	char err[256];
	if (!p->c || !model_id || !model_id[0])
		return -1;
	return kvstore_load(p->h, history_conv_id(p->c), model_id, blob, len, err, sizeof err) == 0 ? 0 : -1;
}

int oneshot_hist_kv_save(struct oneshot_hist *p, const char *model_id, const void *blob, size_t len, char *err,
			 size_t errlen)
{
	if (!p->c || !model_id || !model_id[0] || !blob || !len)
		return 0;
	char msg[256];
	if (kvstore_save(p->h, history_conv_id(p->c), model_id, blob, len, 0, msg, sizeof msg) != 0) {
		snprintf(err, errlen, "KV snapshot not saved: %s", msg);
		return EXIT_HISTORY;
	}
	return 0;
}

const char *oneshot_hist_id(const struct oneshot_hist *p)
{
	return p->c ? history_conv_id(p->c) : NULL;
}

void oneshot_hist_close(struct oneshot_hist *p)
{
	if (!p)
		return;
	if (p->c) {
		history_conv_flush(p->c);
		history_conv_close(p->c);
	}
	history_close(p->h);
	free(p->view);
	free(p);
}
