/*
 * chats.c - the conversations of the full-screen chat and one-shot mode on
 * top of the encrypted history (see chats.h).
 *
 * The module keeps three things beside the library's handles: the number
 * of messages of the conversation as it stands (so a rewind knows how many
 * messages the next commit replaces), the drops still to record, and, for
 * a conversation whose file could not be created yet (a full disk at its
 * first message), a queue of the messages committed meanwhile.  The queue
 * is written, in order, as soon as the file can be created; until then
 * chats_pending() counts it, like the library's own unsaved records.
 *
 * Nothing here draws or prints: the UI shows chats_errmsg().
 *
 * Test hook (tests only): while the file named by
 * $TTYCHAT_TEST_HISTORY_FULL exists, every history write and fsync fails
 * with ENOSPC, as on a full disk (through the library's injectable I/O).
 */
#include "config.h"

#include "chats.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "catalog.h"
#include "history.h"
#include "kvstore.h"

_Static_assert(CHATS_REPLACES_SHIFT == HISTORY_MSG_REPLACES_SHIFT && CHATS_REPLACES_MAX == HISTORY_MSG_REPLACES_MAX &&
		       CHATS_CANCELLED == HISTORY_MSG_CANCELLED,
	       "chats.h's message flags are history.h's");

struct qmsg {
	enum history_role role;
	unsigned flags;
	char *text;
	size_t len;
	char *reasoning;           /* NULL: none */
	size_t rlen;
};

struct chats {
	struct history *h;
	struct history_conv *c;   /* the current conversation, NULL while new */
	chats_pass_fn pass;
	void *pass_ctx;
	bool remember;            /* keeps last-chat up to date */

	struct chats_msg *live;   /* as loaded by chats_load() */
	size_t n_loaded, cap_live;
	size_t n_live;            /* messages as they stand now */
	size_t drop;              /* of those before, replaced by the next commit */

	struct qmsg *q;           /* committed before the file could be created */
	size_t nq, capq;
	struct history_meta qmeta; /* the settings to create it with (strings owned) */
	char *qmodel, *qsystem, *qeffort;

	char err[512];

	struct history_io io;     /* the test hook's, when set */
	char full_flag[PATH_MAX];
};

static int fail(struct chats *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct chats *c, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof c->err, fmt, ap);
	va_end(ap);
	return rc;
}

static int lib_fail(struct chats *c, int rc)
{
	return fail(c, rc, "%s", history_errmsg(c->h));
}

static bool disk_full(void *ctx)
{
	const struct chats *c = ctx;
	if (access(c->full_flag, F_OK) != 0)
		return false;
	errno = ENOSPC;
	return true;
}

static ssize_t full_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
	return disk_full(ctx) ? -1 : pwrite(fd, buf, n, off);
}

static int full_fsync(void *ctx, int fd)
{
	return disk_full(ctx) ? -1 : fsync(fd);
}

static int pass_bridge(void *ctx, enum history_pass_purpose why, char *buf, size_t cap)
{
	struct chats *c = ctx;
	if (!c->pass)
		return -1;
	return c->pass(c->pass_ctx, why == HISTORY_PASS_NEW ? CHATS_PASS_NEW : CHATS_PASS_UNLOCK, buf, cap);
}

int chats_open(const struct chats_opts *o, struct chats **out, char *err, size_t errlen)
{
	*out = NULL;
	struct chats *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return HISTORY_E_NOMEM;
	}
	c->pass = o->passphrase;
	c->pass_ctx = o->pass_ctx;
	c->remember = !o->no_remember;
	struct history_opts ho = {
		.dir = o->dir,
		.flags = o->no_create ? 0 : HISTORY_OPEN_CREATE,
		.passphrase = pass_bridge,
		.pass_ctx = c,
	};
	const char *flag = getenv("TTYCHAT_TEST_HISTORY_FULL");
	if (flag && flag[0] && strlen(flag) < sizeof c->full_flag) {
		memcpy(c->full_flag, flag, strlen(flag) + 1);
		c->io = (struct history_io){.ctx = c, .pwrite = full_pwrite, .fsync = full_fsync};
		ho.io = &c->io;
	}
	if (o->test_fast_kdf) {
		ho.test_kdf_opslimit = crypto_pwhash_OPSLIMIT_MIN;
		ho.test_kdf_memlimit = crypto_pwhash_MEMLIMIT_MIN;
	}
	int rc = history_open(&ho, &c->h, err, errlen);
	if (rc != HISTORY_OK) {
		free(c);
		return rc;
	}
	*out = c;
	return 0;
}

static void queue_clear(struct chats *c)
{
	for (size_t i = 0; i < c->nq; i++) {
		sodium_memzero(c->q[i].text, c->q[i].len);
		free(c->q[i].text);
		if (c->q[i].reasoning) {
			sodium_memzero(c->q[i].reasoning, c->q[i].rlen);
			free(c->q[i].reasoning);
		}
	}
	c->nq = 0;
	free(c->qmodel);
	if (c->qsystem) {
		sodium_memzero(c->qsystem, strlen(c->qsystem));
		free(c->qsystem);
	}
	free(c->qeffort);
	c->qmodel = c->qsystem = c->qeffort = NULL;
}

/* Forgets the current conversation (its handle and the views of it). */
static void drop_current(struct chats *c)
{
	if (c->c)
		history_conv_close(c->c);
	c->c = NULL;
	queue_clear(c);
	free(c->q);
	c->q = NULL;
	c->capq = 0;
	c->n_loaded = c->n_live = c->drop = 0;
}

void chats_close(struct chats *c)
{
	if (!c)
		return;
	chats_flush(c);
	drop_current(c);
	free(c->live);
	history_close(c->h);
	sodium_memzero(c->err, sizeof c->err);
	free(c);
}

const char *chats_errmsg(const struct chats *c)
{
	return c->err;
}

const char *chats_dir(const struct chats *c)
{
	return history_dir(c->h);
}

bool chats_has_passphrase(const struct chats *c)
{
	return history_has_passphrase(c->h) != 0;
}

void chats_settings_init(struct chats_settings *s)
{
	memset(s, 0, sizeof *s);
	s->temperature = s->top_p = s->min_p = s->repeat_penalty = -1;
	s->top_k = -1;
}

/* ---- the current conversation -------------------------------------------- */

const char *chats_id(const struct chats *c)
{
	return c->c ? history_conv_id(c->c) : NULL;
}

const char *chats_title(const struct chats *c)
{
	if (c->c)
		return history_conv_title(c->c);
	return "";
}

int chats_new(struct chats *c)
{
	drop_current(c);
	c->err[0] = '\0';
	return 0;
}

static int live_push(struct chats *c, enum chats_role role, bool cancelled, const char *text, size_t len,
		     const char *reasoning, size_t rlen)
{
	if (c->n_loaded == c->cap_live) {
		size_t nc = c->cap_live ? c->cap_live * 2 : 32;
		struct chats_msg *nl = realloc(c->live, nc * sizeof *nl);
		if (!nl)
			return -1;
		c->live = nl;
		c->cap_live = nc;
	}
	c->live[c->n_loaded++] = (struct chats_msg){.role = role, .cancelled = cancelled, .text = text, .len = len,
						    .reasoning = reasoning, .reasoning_len = rlen};
	return 0;
}

int chats_load(struct chats *c, const char *id)
{
	drop_current(c);
	struct history_conv *hc;
	int rc = history_conv_load(c->h, id, HISTORY_LOAD_WRITE, &hc);
	if (rc < 0)
		return lib_fail(c, rc);
	int notice = rc;
	if (notice)
		fail(c, notice, "%s", history_errmsg(c->h));
	c->c = hc;
	/* the conversation as it stands: the library applies the rewinds */
	for (size_t i = 0; i < history_conv_count(hc); i++) {
		const struct history_msg *m = history_conv_msg(hc, i);
		/* system messages and empty texts are not part of the chat
		 * (the TUI never commits them; drops do not count them) */
		if ((m->role != HISTORY_ROLE_USER && m->role != HISTORY_ROLE_ASSISTANT) || m->len == 0 ||
		    m->replaced)
			continue;
		if (live_push(c, (enum chats_role)m->role, (m->flags & HISTORY_MSG_CANCELLED) != 0, m->text, m->len,
			      m->reasoning, m->reasoning_len)) {
			drop_current(c);
			return fail(c, HISTORY_E_NOMEM, "out of memory");
		}
	}
	c->n_live = c->n_loaded;
	if (c->remember)
		if (c->remember)
		chats_last_write(history_conv_id(hc));
	return notice;
}

size_t chats_count(const struct chats *c)
{
	return c->n_loaded;
}

const struct chats_msg *chats_msg(const struct chats *c, size_t i)
{
	return i < c->n_loaded ? &c->live[i] : NULL;
}

static void meta_from(struct history_meta *m, const struct chats_settings *s)
{
	history_meta_init(m);
	m->model = s->model && s->model[0] ? s->model : NULL;
	m->system_prompt = s->system_prompt && s->system_prompt[0] ? s->system_prompt : NULL;
	m->temperature = s->temperature;
	m->top_p = s->top_p;
	m->min_p = s->min_p;
	m->repeat_penalty = s->repeat_penalty;
	m->top_k = s->top_k;
	m->context_size = s->context_size;
	m->think = s->think == 1 || s->think == 2 ? s->think : 0;
	m->reasoning_effort = s->reasoning_effort && s->reasoning_effort[0] ? s->reasoning_effort : NULL;
	m->reasoning_budget = s->reasoning_budget;
}

void chats_settings_of(const struct chats *c, struct chats_settings *s)
{
	chats_settings_init(s);
	if (!c->c)
		return;
	const struct history_meta *m = history_conv_meta(c->c);
	s->model = m->model;
	s->system_prompt = m->system_prompt;
	s->temperature = m->temperature;
	s->top_p = m->top_p;
	s->min_p = m->min_p;
	s->repeat_penalty = m->repeat_penalty;
	s->top_k = m->top_k;
	s->context_size = m->context_size;
	s->think = m->think;
	s->reasoning_effort = m->reasoning_effort;
	s->reasoning_budget = m->reasoning_budget;
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_meta(const struct history_meta *a, const struct history_meta *b)
{
	return same_str(a->model, b->model) && same_str(a->system_prompt, b->system_prompt) &&
	       a->temperature == b->temperature && a->top_p == b->top_p && a->min_p == b->min_p &&
	       a->repeat_penalty == b->repeat_penalty && a->top_k == b->top_k && a->context_size == b->context_size &&
	       a->think == b->think && same_str(a->reasoning_effort, b->reasoning_effort) &&
	       a->reasoning_budget == b->reasoning_budget;
}

static bool write_error(int rc)
{
	return rc == HISTORY_E_IO || rc == HISTORY_E_NOSPACE;
}

/* Creates the file of a new conversation and writes the queue into it. */
static int create_from_queue(struct chats *c)
{
	struct history_conv *hc;
	int rc = history_conv_create(c->h, &c->qmeta, &hc);
	if (rc != HISTORY_OK)
		return lib_fail(c, rc);
	c->c = hc;
	if (c->remember)
		chats_last_write(history_conv_id(hc));
	int last = HISTORY_OK;
	for (size_t i = 0; i < c->nq; i++) {
		/* a record the library could not write stays in its memory
		 * and is retried there: the rest follow it */
		rc = history_append_reasoned(hc, c->q[i].role, c->q[i].text, c->q[i].len, c->q[i].reasoning,
					     c->q[i].rlen, c->q[i].flags);
		if (rc != HISTORY_OK)
			last = lib_fail(c, rc);
	}
	queue_clear(c);
	return last;
}

static int queue_push(struct chats *c, const struct history_meta *m, enum history_role role, const char *text,
		      size_t len, const char *reasoning, size_t rlen, unsigned flags)
{
	if (c->nq == 0) {
		/* the settings the file will be created with */
		free(c->qmodel);
		free(c->qsystem);
		free(c->qeffort);
		c->qmodel = m->model ? strdup(m->model) : NULL;
		c->qsystem = m->system_prompt ? strdup(m->system_prompt) : NULL;
		c->qeffort = m->reasoning_effort ? strdup(m->reasoning_effort) : NULL;
		c->qmeta = *m;
		c->qmeta.model = c->qmodel;
		c->qmeta.system_prompt = c->qsystem;
		c->qmeta.reasoning_effort = c->qeffort;
	}
	if (c->nq == c->capq) {
		size_t nc = c->capq ? c->capq * 2 : 8;
		struct qmsg *nq = realloc(c->q, nc * sizeof *nq);
		if (!nq)
			return -1;
		c->q = nq;
		c->capq = nc;
	}
	char *t = malloc(len + 1);
	char *rt = rlen ? malloc(rlen + 1) : NULL;
	if (!t || (rlen && !rt)) {
		free(t);
		free(rt);
		return -1;
	}
	memcpy(t, text, len);
	t[len] = '\0';
	if (rlen) {
		memcpy(rt, reasoning, rlen);
		rt[rlen] = '\0';
	}
	c->q[c->nq++] = (struct qmsg){.role = role, .flags = flags, .text = t, .len = len, .reasoning = rt, .rlen = rlen};
	return 0;
}

int chats_commit(struct chats *c, const struct chats_settings *s, enum chats_role role, const char *text,
		 size_t len, bool cancelled)
{
	return chats_commit_reasoned(c, s, role, text, len, NULL, 0, cancelled);
}

int chats_commit_reasoned(struct chats *c, const struct chats_settings *s, enum chats_role role, const char *text,
			  size_t len, const char *reasoning, size_t rlen, bool cancelled)
{
	c->err[0] = '\0';
	if (role != CHATS_USER && role != CHATS_ASSISTANT)
		return fail(c, HISTORY_E_INVAL, "bad role");
	if (c->drop > CHATS_REPLACES_MAX)
		return fail(c, HISTORY_E_INVAL, "cannot record replacing %zu messages at once", c->drop);
	unsigned flags = (cancelled ? HISTORY_MSG_CANCELLED : 0u) | HISTORY_MSG_REPLACES(c->drop);
	struct history_meta m;
	meta_from(&m, s);
	int rc;
	if (!c->c) {
		/* the first message creates the file (or waits in the queue
		 * with the ones before it until it can be created) */
		if (queue_push(c, &m, (enum history_role)role, text, len, reasoning, rlen, flags) != 0)
			return fail(c, HISTORY_E_NOMEM, "out of memory");
		c->drop = 0;
		c->n_live++;
		/* whatever failed, the message waits in the queue or in the
		 * library's memory and is retried */
		return create_from_queue(c) == HISTORY_OK ? 0 : CHATS_UNSAVED;
	}
	const struct history_meta *old = history_conv_meta(c->c);
	if (!same_meta(old, &m)) {
		m.title = old->title;
		rc = history_conv_set_meta(c->c, &m);
		if (rc != HISTORY_OK && !write_error(rc))
			return lib_fail(c, rc);
	}
	rc = history_append_reasoned(c->c, (enum history_role)role, text, len, reasoning, rlen, flags);
	if (rc != HISTORY_OK && !write_error(rc))
		return lib_fail(c, rc);
	c->drop = 0;
	c->n_live++;
	if (rc != HISTORY_OK) {
		lib_fail(c, rc);
		return CHATS_UNSAVED;
	}
	return 0;
}

void chats_rewind(struct chats *c, size_t n_kept)
{
	if (n_kept < c->n_live) {
		c->drop += c->n_live - n_kept;
		c->n_live = n_kept;
	}
}

size_t chats_pending(const struct chats *c)
{
	return c->nq + (c->c ? history_conv_pending(c->c) : 0);
}

int chats_flush(struct chats *c)
{
	if (!c->c && c->nq) {
		int rc = create_from_queue(c);
		if (rc != HISTORY_OK && !c->c)
			return rc;
	}
	if (!c->c || history_conv_pending(c->c) == 0)
		return 0;
	int rc = history_conv_flush(c->c);
	if (rc != HISTORY_OK)
		return lib_fail(c, rc);
	return 0;
}

/* ---- the list ---------------------------------------------------------------- */

void chats_list_free(struct chats_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].title);
		free(v[i].model);
		free(v[i].error);
		free(v[i].match);
	}
	free(v);
}

struct search {
	struct chats_entry *v;
	size_t n, cap;
	const char *needle;
	bool oom;
};

static bool ci_eq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y - 'A' + 'a');
		if (x != y)
			return false;
	}
	return true;
}

/* The line of TEXT around the first match, at most about 160 bytes, cut at
 * character boundaries. */
static char *excerpt(const char *text, size_t len, const char *needle)
{
	size_t nl = strlen(needle), at = 0;
	for (size_t i = 0; nl && i + nl <= len; i++)
		if (ci_eq(text + i, needle, nl)) {
			at = i;
			break;
		}
	size_t s = at, e = at + nl;
	while (s > 0 && text[s - 1] != '\n' && at - s < 60)
		s--;
	while (e < len && text[e] != '\n' && e - s < 160)
		e++;
	while (s < at && ((unsigned char)text[s] & 0xc0) == 0x80)
		s++;
	while (e > at + nl && e < len && ((unsigned char)text[e] & 0xc0) == 0x80)
		e--;
	bool pre = s > 0 && text[s - 1] != '\n', post = e < len && text[e] != '\n';
	char *out = malloc(e - s + 8);
	if (!out)
		return NULL;
	size_t o = 0;
	if (pre)
		memcpy(out + o, "...", 3), o += 3;
	for (size_t i = s; i < e; i++)
		out[o++] = text[i] == '\0' ? ' ' : text[i];
	if (post)
		memcpy(out + o, "...", 3), o += 3;
	out[o] = '\0';
	return out;
}

static int on_match(void *ctx, const struct history_conv *hc, size_t k)
{
	struct search *s = ctx;
	const char *id = history_conv_id(hc);
	const struct history_msg *hit = k != (size_t)-1 ? history_conv_msg(hc, k) : NULL;
	if (hit && hit->replaced)
		return 0; /* an earlier version (/regen, /edit): not in the chat any more */
	if (s->n > 0 && strcmp(s->v[s->n - 1].id, id) == 0)
		return 0; /* the first match of a conversation is its excerpt */
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 16;
		struct chats_entry *nv = realloc(s->v, nc * sizeof *nv);
		if (!nv) {
			s->oom = true;
			return 1;
		}
		s->v = nv;
		s->cap = nc;
	}
	struct chats_entry *e = &s->v[s->n];
	memset(e, 0, sizeof *e);
	snprintf(e->id, sizeof e->id, "%s", id);
	const struct history_meta *m = history_conv_meta(hc);
	e->title = strdup(history_conv_title(hc));
	e->model = strdup(m->model ? m->model : "");
	e->created_ms = history_conv_created(hc);
	e->updated_ms = history_conv_updated(hc);
	e->n_messages = history_conv_count_current(hc);
	e->readable = true;
	if (hit)
		e->match = excerpt(hit->text, hit->len, s->needle);
	s->n++;
	if (!e->title || !e->model) {
		s->oom = true;
		return 1;
	}
	return 0;
}

int chats_list(struct chats *c, const char *needle, struct chats_entry **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	c->err[0] = '\0';
	if (needle && needle[0]) {
		struct search s = {.needle = needle};
		int rc = history_conv_search(c->h, needle, on_match, &s);
		if (rc != HISTORY_OK || s.oom) {
			chats_list_free(s.v, s.n);
			return rc != HISTORY_OK ? lib_fail(c, rc) : fail(c, HISTORY_E_NOMEM, "out of memory");
		}
		*out = s.v;
		*n = s.n;
		return 0;
	}
	struct history_entry *he;
	size_t hn;
	int rc = history_conv_list(c->h, &he, &hn);
	if (rc != HISTORY_OK)
		return lib_fail(c, rc);
	struct chats_entry *v = calloc(hn ? hn : 1, sizeof *v);
	bool oom = !v;
	for (size_t i = 0; v && i < hn; i++) {
		snprintf(v[i].id, sizeof v[i].id, "%s", he[i].id);
		v[i].title = strdup(he[i].title ? he[i].title : "");
		v[i].model = strdup(he[i].model ? he[i].model : "");
		v[i].created_ms = he[i].created_ms;
		v[i].updated_ms = he[i].updated_ms;
		v[i].n_messages = he[i].n_messages;
		/* a damaged one opens only read-only (history show) or after a repair */
		v[i].readable = he[i].status >= 0 && he[i].status != HISTORY_DAMAGED;
		v[i].error = he[i].error ? strdup(he[i].error) : NULL;
		oom |= !v[i].title || !v[i].model;
	}
	history_list_free(he, hn);
	if (oom) {
		chats_list_free(v, v ? hn : 0);
		return fail(c, HISTORY_E_NOMEM, "out of memory");
	}
	*out = v;
	*n = hn;
	return 0;
}

static bool is_current(const struct chats *c, const char *id)
{
	return c->c && id && strncmp(history_conv_id(c->c), id, strlen(id)) == 0 && strlen(id) >= 4;
}

int chats_rename(struct chats *c, const char *id, const char *title)
{
	c->err[0] = '\0';
	if (!id || is_current(c, id)) {
		if (!c->c)
			return fail(c, HISTORY_E_INVAL, "this conversation has no messages yet: nothing to rename");
		int rc = history_rename(c->c, title && title[0] ? title : NULL);
		if (rc != HISTORY_OK && !write_error(rc))
			return lib_fail(c, rc);
		if (rc != HISTORY_OK) {
			lib_fail(c, rc);
			return CHATS_UNSAVED;
		}
		return 0;
	}
	struct history_conv *hc;
	int rc = history_conv_load(c->h, id, HISTORY_LOAD_WRITE, &hc);
	if (rc < 0)
		return lib_fail(c, rc);
	rc = history_rename(hc, title && title[0] ? title : NULL);
	if (rc != HISTORY_OK)
		lib_fail(c, rc);
	/* a handle that is closed cannot retry: report what failed */
	history_conv_close(hc);
	return rc;
}

int chats_delete(struct chats *c, const char *id)
{
	c->err[0] = '\0';
	char full[CHATS_ID_LEN + 1];
	int rc;
	if (is_current(c, id)) {
		snprintf(full, sizeof full, "%s", history_conv_id(c->c));
		drop_current(c); /* releases the writer lock */
	} else if ((rc = history_resolve_id(c->h, id, full)) != HISTORY_OK) {
		return lib_fail(c, rc);
	}
	rc = history_delete(c->h, full);
	if (rc != HISTORY_OK)
		return lib_fail(c, rc);
	/* only a cache, but derived from the conversation: every model's goes */
	char err[256];
	kvstore_remove_conv(c->h, full, err, sizeof err);
	char last[CHATS_ID_LEN + 1];
	if (chats_last_read(last) == 0 && strcmp(last, full) == 0)
		chats_last_write("");
	return 0;
}

/* ---- KV snapshots ------------------------------------------------------------- */

int chats_kv_save(struct chats *c, const char *conv_id, const char *model_id, const void *blob, size_t len)
{
	if (!conv_id || !model_id || !model_id[0] || !blob || !len)
		return fail(c, HISTORY_E_INVAL, "nothing to save");
	char err[256];
	int rc = kvstore_save(c->h, conv_id, model_id, blob, len, 0, err, sizeof err);
	if (rc != 0)
		return fail(c, rc, "KV snapshot not saved: %s", err);
	return 0;
}

int chats_kv_load(struct chats *c, const char *model_id, void **blob, size_t *len)
{
	*blob = NULL;
	*len = 0;
	if (!c->c || !model_id || !model_id[0])
		return -1;
	char err[256];
	return kvstore_load(c->h, history_conv_id(c->c), model_id, blob, len, err, sizeof err) == 0 ? 0 : -1;
}

/* ---- the last conversation ----------------------------------------------------- */

int chats_last_read(char id[CHATS_ID_LEN + 1])
{
	char path[PATH_MAX], buf[64];
	id[0] = '\0';
	if (config_state_file("last-chat", false, path, sizeof path) != 0)
		return -1;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (r <= 0)
		return -1;
	buf[r] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (strlen(buf) != CHATS_ID_LEN || strspn(buf, "0123456789abcdef") != CHATS_ID_LEN)
		return -1;
	memcpy(id, buf, CHATS_ID_LEN + 1);
	return 0;
}

int chats_last_write(const char *id)
{
	char path[PATH_MAX];
	if (config_state_file("last-chat", true, path, sizeof path) != 0)
		return -1;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	size_t l = strlen(id);
	bool ok = write(fd, id, l) == (ssize_t)l && write(fd, "\n", 1) == 1;
	if (close(fd) != 0)
		ok = false;
	return ok ? 0 : -1;
}
