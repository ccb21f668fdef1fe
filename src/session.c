/*
 * session.c - the precedence of settings (see session.h).
 *
 * Each setting is decided by walking the sources from the strongest down
 * and taking the first that sets it; the walk records the source in
 * out->from[] so that tests (and -v) can say where a value came from.  The
 * sampling fields share one table of offsets so that the five of them are
 * decided by the same loop.
 */
#include "config.h"

#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "commands.h"
#include "chats.h"

#define CTX_DEFAULT_CAP 4096u

void session_flags_init(struct session_flags *f)
{
	memset(f, 0, sizeof *f);
	engine_sampling_default(&f->sampling);
	f->kv_type = f->cache_k = f->cache_v = f->kv_rotation = -1;
	f->device = -1;
	f->gpu_layers = -2;
	f->spec = -1;
}

const char *session_source_name(enum session_source s)
{
	switch (s) {
	case SESSION_DEFAULT: return "default";
	case SESSION_FILE: return "model file";
	case SESSION_SETTINGS: return "settings.json";
	case SESSION_ENTRY: return "models.d";
	case SESSION_CONV: return "conversation";
	case SESSION_FLAG: return "flag";
	}
	return "?";
}

int session_pick_model(const struct session_flags *f, const struct chats_settings *held, const char *last,
		       const struct config_settings *prefs, char *spec, size_t n, enum session_source *from)
{
	const char *pick = config_default_model();
	enum session_source src = SESSION_DEFAULT;
	if (f->model && f->model[0])
		pick = f->model, src = SESSION_FLAG;
	else if (held && held->model && held->model[0])
		pick = held->model, src = SESSION_CONV;
	else if (last && last[0])
		pick = last, src = SESSION_SETTINGS;
	else if (prefs && prefs->model[0])
		pick = prefs->model, src = SESSION_SETTINGS;
	if (from)
		*from = src;
	int w = snprintf(spec, n, "%s", pick);
	return w >= 0 && (size_t)w < n ? 0 : -1;
}

/* A float setting of a source: the value, or < 0 when the source leaves it
 * unset (repeat_penalty: <= 0). */
static bool float_set(float v, enum session_field k)
{
	return k == SESSION_F_REP ? v > 0 : v >= 0;
}

/* The five sampling fields, as each source keeps them. */
static void sampling_fields(const struct session_flags *f, const struct chats_settings *held,
			    const struct model_entry *me, const struct model_entry *pd,
			    const struct session_file *fl, struct session_config *out)
{
	static const unsigned bit[] = {SESSION_SET_TEMP, SESSION_SET_TOPK, SESSION_SET_TOPP, SESSION_SET_MINP,
				       SESSION_SET_REP};
	struct engine_sampling *s = &out->sampling;
	for (int k = SESSION_F_TEMP; k <= SESSION_F_REP; k++) {
		/* the value in each source: flag, conversation, entry,
		 * settings.json, file (top_k too: a float holds it exactly,
		 * it is at most 2^24) */
		float v[5] = {-1, -1, -1, -1, -1};
		const struct engine_sampling *fs = &f->sampling;
		switch (k) {
		case SESSION_F_TEMP:
			v[0] = fs->temperature, v[1] = held ? held->temperature : -1;
			v[2] = me ? me->temperature : -1, v[3] = pd ? pd->temperature : -1;
			v[4] = fl ? fl->temperature : -1;
			break;
		case SESSION_F_TOPK:
			v[0] = (float)fs->top_k, v[1] = held ? (float)held->top_k : -1;
			v[2] = me ? (float)me->top_k : -1, v[3] = pd ? (float)pd->top_k : -1;
			v[4] = fl ? (float)fl->top_k : -1;
			break;
		case SESSION_F_TOPP:
			v[0] = fs->top_p, v[1] = held ? held->top_p : -1;
			v[2] = me ? me->top_p : -1, v[3] = pd ? pd->top_p : -1;
			v[4] = fl ? fl->top_p : -1;
			break;
		case SESSION_F_MINP:
			v[0] = fs->min_p, v[1] = held ? held->min_p : -1;
			v[2] = me ? me->min_p : -1, v[3] = pd ? pd->min_p : -1;
			v[4] = fl ? fl->min_p : -1;
			break;
		default:
			v[0] = fs->repeat_penalty, v[1] = held ? held->repeat_penalty : -1;
			v[2] = me ? me->repeat_penalty : -1, v[3] = pd ? pd->repeat_penalty : -1;
			v[4] = fl ? fl->repeat_penalty : -1;
			break;
		}
		static const enum session_source src[5] = {SESSION_FLAG, SESSION_CONV, SESSION_ENTRY,
							   SESSION_SETTINGS, SESSION_FILE};
		int i = (f->set & bit[k]) ? 0 : -1;
		for (int j = 1; i < 0 && j < 5; j++)
			if (float_set(v[j], (enum session_field)k))
				i = j;
		if (i < 0)
			continue; /* the default stays */
		out->from[k] = src[i];
		switch (k) {
		case SESSION_F_TEMP: s->temperature = v[i]; break;
		case SESSION_F_TOPK: s->top_k = (int32_t)v[i]; break;
		case SESSION_F_TOPP: s->top_p = v[i]; break;
		case SESSION_F_MINP: s->min_p = v[i]; break;
		default: s->repeat_penalty = v[i]; break;
		}
	}
}

/* The first of the int values set (not equal to its UNSET), with its
 * source; DEF when none is. */
static int first_int(const int *v, const enum session_source *src, int n, int unset, int def,
		     enum session_source *from)
{
	for (int i = 0; i < n; i++)
		if (v[i] != unset) {
			*from = src[i];
			return v[i];
		}
	*from = SESSION_DEFAULT;
	return def;
}

/* K's and V's types: within a source the type of its own key beats
 * kv_type; the strongest source either came from. */
static enum session_source kv_types(const struct session_flags *f, const struct model_entry *me,
				    const struct model_entry *pd, int *tk, int *tv)
{
	static const enum session_source src[6] = {SESSION_FLAG, SESSION_FLAG, SESSION_ENTRY,
						   SESSION_ENTRY, SESSION_SETTINGS, SESSION_SETTINGS};
	const int kvk[6] = {f ? f->cache_k : -1, f ? f->kv_type : -1, me ? me->cache_k : -1, me ? me->kv_type : -1,
			    pd ? pd->cache_k : -1, pd ? pd->kv_type : -1};
	const int kvv[6] = {f ? f->cache_v : -1, f ? f->kv_type : -1, me ? me->cache_v : -1, me ? me->kv_type : -1,
			    pd ? pd->cache_v : -1, pd ? pd->kv_type : -1};
	enum session_source kfrom, vfrom;
	*tk = first_int(kvk, src, 6, -1, ENGINE_KV_F16, &kfrom);
	*tv = first_int(kvv, src, 6, -1, ENGINE_KV_F16, &vfrom);
	return vfrom > kfrom ? vfrom : kfrom;
}

void session_kv_types(const struct session_flags *f, const struct model_entry *me,
		      const struct config_settings *prefs, int *type_k, int *type_v)
{
	kv_types(f, me, prefs ? &prefs->d : NULL, type_k, type_v);
}

static uint32_t pick_ctx(const struct session_flags *f, const struct chats_settings *held,
			 const struct model_entry *me, const struct model_entry *pd, enum session_source *from)
{
	if (f->n_ctx) {
		*from = SESSION_FLAG;
		return f->n_ctx;
	}
	if (held && held->context_size >= 16 && held->context_size <= (1u << 24)) {
		*from = SESSION_CONV;
		return held->context_size;
	}
	const unsigned want = pd && pd->context_size ? pd->context_size : 0;
	if (me && me->context_size) {
		*from = SESSION_ENTRY;
		if (me->remote)
			return me->context_size;
		const unsigned cap = want ? want : CTX_DEFAULT_CAP;
		return me->context_size < cap ? me->context_size : cap;
	}
	if (want) {
		*from = SESSION_SETTINGS;
		return want;
	}
	*from = SESSION_DEFAULT;
	return 0; /* the engine's: min(training context, 4096) */
}

int session_decide(const struct session_flags *f, const struct chats_settings *held, struct session_decision *d,
		   char *err, size_t errlen)
{
	memset(d, 0, sizeof *d);
	if (config_settings_read(&d->prefs, err, errlen) != 0)
		return SESSION_E_SETTINGS;
	if (session_pick_model(f, held, NULL, &d->prefs, d->spec, sizeof d->spec, NULL) != 0) {
		snprintf(err, errlen, "the model name is too long");
		return SESSION_E_NAME;
	}
	if (config_resolve_model(d->spec, &d->me, err, errlen) != 0)
		return SESSION_E_MODEL;
	d->have_me = true;
	struct session_file advice;
	session_file_read(d->me.path, &advice);
	if (session_resolve(f, held, &d->me, &d->prefs, &advice, &d->cfg) != 0) {
		snprintf(err, errlen, "out of memory");
		return SESSION_E_NOMEM;
	}
	if (session_resolve_draft(&d->cfg, err, errlen) != 0)
		return SESSION_E_MODEL;
	return SESSION_DECIDED;
}

void session_decision_free(struct session_decision *d)
{
	config_settings_free(&d->prefs);
	if (d->have_me)
		config_entry_free(&d->me);
	session_config_free(&d->cfg);
	memset(d, 0, sizeof *d);
}

uint32_t session_context(const struct session_flags *f, const struct model_entry *me,
			 const struct config_settings *prefs, uint32_t n_ctx_train)
{
	enum session_source from;
	uint32_t n = pick_ctx(f, NULL, me, prefs ? &prefs->d : NULL, &from);
	if (n || (me && me->remote))
		return n; /* a remote model without one: the server's */
	if (n_ctx_train)
		return n_ctx_train < CTX_DEFAULT_CAP ? n_ctx_train : CTX_DEFAULT_CAP;
	return CTX_DEFAULT_CAP;
}

/* The system prompt and where it came from; NULL = none. */
static const char *pick_system(const struct session_flags *f, const struct chats_settings *held,
			       const struct model_entry *me, const struct model_entry *pd,
			       enum session_source *from)
{
	if (f->system) {
		*from = SESSION_FLAG;
		return f->system;
	}
	if (held) {
		*from = SESSION_CONV;
		return held->system_prompt;
	}
	if (!f->raw && me && me->system_prompt) {
		*from = SESSION_ENTRY;
		return me->system_prompt;
	}
	if (!f->raw && pd && pd->system_prompt) {
		*from = SESSION_SETTINGS;
		return pd->system_prompt;
	}
	*from = SESSION_DEFAULT;
	return NULL;
}

int session_resolve(const struct session_flags *f, const struct chats_settings *held,
		    const struct model_entry *me, const struct config_settings *prefs,
		    const struct session_file *file, struct session_config *out)
{
	memset(out, 0, sizeof *out);
	const struct model_entry *pd = prefs ? &prefs->d : NULL;
	engine_sampling_default(&out->sampling);
	out->sampling.seed = f->sampling.seed;
	out->sampling.presence_penalty = f->sampling.presence_penalty;
	out->sampling.frequency_penalty = f->sampling.frequency_penalty;
	out->sampling.penalty_last_n = f->sampling.penalty_last_n;
	sampling_fields(f, held, me, pd, file, out);
	if (file && file->penalty_last_n >= 0)
		out->sampling.penalty_last_n = file->penalty_last_n;

	static const enum session_source fep[3] = {SESSION_FLAG, SESSION_ENTRY, SESSION_SETTINGS};
	int tk, tv;
	out->from[SESSION_F_KV] = kv_types(f, me, pd, &tk, &tv);
	out->load.kv_type = (enum engine_kv_type)tk;
	out->load.kv_type_v = tv + 1;
	const int rot[3] = {f->kv_rotation, me ? me->kv_rotation : -1, pd ? pd->kv_rotation : -1};
	enum session_source rfrom;
	out->load.kv_no_rotate = first_int(rot, fep, 3, -1, 1, &rfrom) == 0;
	const int dev[3] = {f->device, me ? me->device : -1, pd ? pd->device : -1};
	out->load.device =
		(enum engine_device)first_int(dev, fep, 3, -1, ENGINE_DEVICE_AUTO, &out->from[SESSION_F_DEVICE]);
	const int gl[3] = {f->gpu_layers, me ? me->gpu_layers : -2, pd ? pd->gpu_layers : -2};
	out->load.gpu_layers = config_gpu_layers(first_int(gl, fep, 3, -2, -1, &out->from[SESSION_F_GPU_LAYERS]));
	const int th[3] = {f->n_threads, me ? me->threads : 0, pd ? pd->threads : 0};
	out->n_threads = first_int(th, fep, 3, 0, 0, &out->from[SESSION_F_THREADS]);
	out->load.n_ctx = pick_ctx(f, held, me, pd, &out->from[SESSION_F_CTX]);

	const char *sys = pick_system(f, held, me, pd, &out->from[SESSION_F_SYSTEM]);
	if (sys && sys[0] && !(out->system = strdup(sys)))
		goto nomem;
	if (me && me->template_text && !(out->template_text = strdup(me->template_text)))
		goto nomem;
	out->load.template_override = out->template_text;
	const char *draft = f->draft ? f->draft : me && me->draft[0] ? me->draft : NULL;
	if (draft && draft[0] && !(out->draft_spec = strdup(draft)))
		goto nomem;
	out->spec = f->spec >= 0 ? (enum engine_spec)f->spec
		    : me && me->spec >= 0 ? (enum engine_spec)me->spec : ENGINE_SPEC_AUTO;
	out->draft_max = f->draft_max > 0 ? f->draft_max : me && me->draft_max > 0 ? me->draft_max : 0;
	return 0;
nomem:
	session_config_free(out);
	return -1;
}

_Static_assert(SESSION_SET_TEMP == 1 << SESSION_F_TEMP && SESSION_SET_TOPK == 1 << SESSION_F_TOPK &&
		       SESSION_SET_TOPP == 1 << SESSION_F_TOPP && SESSION_SET_MINP == 1 << SESSION_F_MINP &&
		       SESSION_SET_REP == 1 << SESSION_F_REP,
	       "a sampling field's SESSION_SET_ bit is 1 << its SESSION_F_ index");

unsigned session_fields_of(const struct session_config *c, enum session_source src)
{
	unsigned bits = 0;
	for (int k = SESSION_F_TEMP; k <= SESSION_F_REP; k++)
		if (c->from[k] == src)
			bits |= 1u << k;
	return bits;
}

void session_fields_str(unsigned bits, char *buf, size_t n)
{
	static const char *const names[] = {"temp", "top-k", "top-p", "min-p", "repeat"};
	size_t used = 0;
	if (n)
		buf[0] = '\0';
	for (int k = SESSION_F_TEMP; k <= SESSION_F_REP; k++) {
		if (!(bits & (1u << k)))
			continue;
		int w = snprintf(buf + used, n - used, "%s%s", used ? ", " : "", names[k]);
		if (w < 0 || (size_t)w >= n - used)
			return;
		used += (size_t)w;
	}
}

void session_file_init(struct session_file *s)
{
	s->temperature = s->top_p = s->min_p = s->repeat_penalty = -1;
	s->top_k = s->penalty_last_n = -1;
}

/* One float key into *OUT when it lies in [LO, HI]. */
static int file_f32(const engine_file *g, const char *key, float lo, float hi, float *out)
{
	float v;
	if (!engine_file_get_f32(g, key, &v) || !(v >= lo && v <= hi))
		return 0;
	*out = v;
	return 1;
}

static int file_int(const engine_file *g, const char *key, uint64_t hi, int *out)
{
	uint64_t v;
	if (!engine_file_get_uint(g, key, &v) || v > hi)
		return 0;
	*out = (int)v;
	return 1;
}

int session_file_read(const char *path, struct session_file *s)
{
	session_file_init(s);
	if (!path || strncmp(path, "remote:", 7) == 0)
		return 0;
	char err[256];
	engine_file *g = engine_file_open(path, err, sizeof err);
	if (!g)
		return 0;
	/* the ranges of the command line's flags */
	int n = file_f32(g, "general.sampling.temp", 0, 100, &s->temperature) +
		file_int(g, "general.sampling.top_k", 1 << 24, &s->top_k) +
		file_f32(g, "general.sampling.top_p", 0, 1, &s->top_p) +
		file_f32(g, "general.sampling.min_p", 0, 1, &s->min_p) +
		file_f32(g, "general.sampling.penalty_repeat", 0.01f, 100, &s->repeat_penalty) +
		file_int(g, "general.sampling.penalty_last_n", 1 << 20, &s->penalty_last_n);
	engine_file_close(g);
	return n;
}

void session_config_free(struct session_config *c)
{
	free(c->system);
	free(c->template_text);
	free(c->draft_spec);
	memset(c, 0, sizeof *c);
}

int session_resolve_draft(struct session_config *c, char *err, size_t errlen)
{
	c->load.draft = NULL;
	if (!c->draft_spec)
		return 0;
	struct model_entry me;
	char why[512];
	if (config_resolve_model(c->draft_spec, &me, why, sizeof why) != 0) {
		snprintf(err, errlen, "draft model: %s", why);
		return -1;
	}
	const bool remote = me.remote;
	snprintf(c->draft_path, sizeof c->draft_path, "%s", me.path);
	config_entry_free(&me);
	if (remote) {
		snprintf(err, errlen, "draft model: '%s' is a remote model; a draft runs here", c->draft_spec);
		return -1;
	}
	c->load.draft = c->draft_path;
	return 0;
}

int session_decide_local(const struct session_flags *f, struct session_decision *d, const char *what,
			 char *err, size_t errlen)
{
	static const int status[] = {
		[SESSION_E_SETTINGS] = EXIT_FAIL, [SESSION_E_NAME] = EXIT_USAGE,
		[SESSION_E_MODEL] = EXIT_MODEL, [SESSION_E_NOMEM] = EXIT_FAIL,
	};
	int st = session_decide(f, NULL, d, err, errlen);
	if (st != SESSION_DECIDED)
		return status[st];
	if (d->me.remote) {
		snprintf(err, errlen, "%s is served by a remote server: %s needs a local model file", d->spec, what);
		return EXIT_MODEL;
	}
	return 0;
}
