/*
 * models.c - the model picker's list and fit estimates (see models.h).
 *
 * Entries come from the catalogue (config_list_models()) so that the picker
 * and `-m NAME` can never disagree about where a name points; this file adds
 * what the GGUF header says and the memory estimate.  Headers are read
 * through the engine's model-file probe (engine_file_open), which maps the
 * file but touches only the header pages.  A remote entry (an
 * OpenAI-compatible server) has no file: it is listed as "remote" with its
 * server, never probed.
 */
#include "config.h"

#include "models.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "catalog.h"
#include "engine.h"
#include "session.h"

/* "remote: URL (model NAME)" from an engine "remote:{...}" spec. */
static void remote_where(const char *spec, char *buf, size_t n)
{
	cJSON *j = strncmp(spec, "remote:", 7) == 0 ? cJSON_Parse(spec + 7) : NULL;
	const cJSON *url = cJSON_GetObjectItemCaseSensitive(j, "base_url");
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
	if (cJSON_IsString(model) && model->valuestring[0])
		snprintf(buf, n, "remote: %.500s (model %.200s)", cJSON_IsString(url) ? url->valuestring : "?",
			 model->valuestring);
	else
		snprintf(buf, n, "remote: %.700s", cJSON_IsString(url) ? url->valuestring : "?");
	cJSON_Delete(j);
}

enum models_fit models_fit(uint64_t need, uint64_t avail)
{
	if (avail == 0 || need == 0)
		return FIT_UNKNOWN;
	if (need <= avail / 5 * 4)
		return FIT_YES;
	if (need <= avail)
		return FIT_TIGHT;
	return FIT_NO;
}

const char *models_fit_str(enum models_fit f)
{
	switch (f) {
	case FIT_YES: return "fits";
	case FIT_TIGHT: return "tight";
	case FIT_NO: return "does not fit";
	default: return "?";
	}
}

uint64_t models_mem_available(void)
{
	return engine_mem_available();
}

void models_fmt_bytes(uint64_t b, char *buf, size_t n)
{
	const double k = 1024.0;
	double d = (double)b;
	if (d >= k * k * k)
		snprintf(buf, n, "%.1f GiB", d / (k * k * k));
	else if (d >= k * k)
		snprintf(buf, n, "%.1f MiB", d / (k * k));
	else if (d >= k)
		snprintf(buf, n, "%.0f KiB", d / k);
	else
		snprintf(buf, n, "%" PRIu64 " B", b);
}

void models_fmt_params(uint64_t p, char *buf, size_t n)
{
	double d = (double)p;
	if (d >= 1e9)
		snprintf(buf, n, "%.1fB", d / 1e9);
	else if (d >= 1e6)
		snprintf(buf, n, "%.0fM", d / 1e6);
	else
		snprintf(buf, n, "%.0fK", d / 1e3);
}

int models_probe(struct model_item *it, const struct session_flags *fl, const struct model_entry *me,
		 const struct config_settings *prefs, char *err, size_t errlen)
{
	engine_file *f = engine_file_open(it->path, err, errlen);
	if (!f)
		return -1;
	const struct engine_file_info *in = engine_file_info(f);
	it->file_bytes = in->file_bytes;
	it->n_params = in->n_params;
	snprintf(it->quant, sizeof it->quant, "%s", in->quant_mix);
	snprintf(it->arch, sizeof it->arch, "%s", in->arch[0] ? in->arch : "?");
	/* the name is shown on screen: keep it printable */
	for (char *p = it->arch; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	/* the context it would load with: the rule every front end follows */
	it->n_ctx = session_context(fl, me, prefs, in->n_ctx_train > UINT32_MAX ? UINT32_MAX : (uint32_t)in->n_ctx_train);
	/* K and V of the types it would load with for every attention layer
	 * at the context it would load with, and the recurrent states of a
	 * hybrid model */
	int tk, tv;
	session_kv_types(fl, me, prefs, &tk, &tv);
	it->kv_bytes = engine_kv_bytes_per_pos(in, tk, tv) * it->n_ctx + in->rec_state_bytes;
	/* the load's own accounting (engine_mem_need), which refuses what
	 * does not fit */
	uint64_t w = in->tensor_bytes ? in->tensor_bytes : it->file_bytes, kv = it->kv_bytes;
	engine_file_close(f);
	/* a draft model (the flag's, else the entry's) loads beside it */
	const char *draft = fl->draft ? fl->draft : me && me->draft[0] ? me->draft : NULL;
	struct model_entry de;
	char why[512];
	it->draft_bytes = 0;
	if (draft && config_resolve_model(draft, &de, why, sizeof why) == 0) {
		engine_file *df = de.remote ? NULL : engine_file_open(de.path, why, sizeof why);
		if (df) {
			const struct engine_file_info *di = engine_file_info(df);
			const uint64_t dw = di->tensor_bytes ? di->tensor_bytes : di->file_bytes;
			const uint64_t dkv = di->kv_bytes_per_pos * it->n_ctx + di->rec_state_bytes;
			w += dw;
			kv += dkv;
			it->draft_bytes = dw + dkv;
			engine_file_close(df);
		}
		config_entry_free(&de);
	}
	it->need_bytes = engine_mem_need(w, kv);
	it->present = true;
	return 0;
}

static int push_item(struct model_list *l, size_t *cap, const struct model_item *it)
{
	if (l->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 8;
		struct model_item *nv = realloc(l->v, nc * sizeof *nv);
		if (!nv)
			return -1;
		l->v = nv;
		*cap = nc;
	}
	l->v[l->n++] = *it;
	return 0;
}

static int cmp_items(const void *a, const void *b)
{
	const struct model_item *x = a, *y = b;
	if (x->from_models_d != y->from_models_d)
		return x->from_models_d ? -1 : 1;
	return strcmp(x->name, y->name);
}

int models_scan(struct model_list *out, uint32_t ctx_override, uint64_t mem_avail, char *err, size_t errlen)
{
	out->v = NULL;
	out->n = 0;
	struct config_list cl;
	if (config_list_models(&cl, err, errlen) != 0)
		return -1;
	struct session_flags f;
	session_flags_init(&f);
	f.n_ctx = ctx_override;
	struct config_settings prefs;
	char perr[512];
	config_settings_read(&prefs, perr, sizeof perr); /* a bad one reads as empty, as in the chat */
	size_t cap = 0;
	for (size_t i = 0; i < cl.n; i++) {
		const struct config_item *ci = &cl.v[i];
		if (ci->shadowed)
			continue;
		struct model_item it = {.from_models_d = ci->origin != CONFIG_LOOSE};
		snprintf(it.name, sizeof it.name, "%s", ci->e.name);
		snprintf(it.display, sizeof it.display, "%s", ci->e.display_name[0] ? ci->e.display_name : ci->e.name);
		if (!ci->ok) {
			snprintf(it.note, sizeof it.note, "%s", ci->error);
		} else if (ci->e.remote) {
			/* served elsewhere: nothing here to probe or to fit */
			snprintf(it.path, sizeof it.path, "%s", ci->e.path);
			snprintf(it.arch, sizeof it.arch, "remote");
			remote_where(ci->e.path, it.note, sizeof it.note);
			it.n_ctx = session_context(&f, &ci->e, &prefs, 0);
			it.remote = true;
			it.present = true;
		} else if (!ci->present) {
			snprintf(it.note, sizeof it.note, "not downloaded: ttychat pull %s", ci->e.name);
		} else {
			char msg[512];
			snprintf(it.path, sizeof it.path, "%s", ci->e.path);
			if (models_probe(&it, &f, it.from_models_d ? &ci->e : NULL, &prefs, msg, sizeof msg) != 0)
				snprintf(it.note, sizeof it.note, "%s", msg);
		}
		if (push_item(out, &cap, &it) != 0) {
			snprintf(err, errlen, "out of memory listing models");
			config_list_free(&cl);
			config_settings_free(&prefs);
			models_free(out);
			return -1;
		}
	}
	config_list_free(&cl);
	config_settings_free(&prefs);
	for (size_t i = 0; i < out->n; i++)
		out->v[i].fit = out->v[i].present && !out->v[i].remote ? models_fit(out->v[i].need_bytes, mem_avail)
								       : FIT_UNKNOWN;
	if (out->n > 1)
		qsort(out->v, out->n, sizeof out->v[0], cmp_items);
	return 0;
}

void models_free(struct model_list *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

int models_last_read(char *buf, size_t n)
{
	char path[PATH_MAX];
	buf[0] = '\0';
	if (config_state_file("last-model", false, path, sizeof path) != 0)
		return -1;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, buf, n - 1);
	close(fd);
	if (r <= 0) {
		buf[0] = '\0';
		return -1;
	}
	buf[r] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] ? 0 : -1;
}

int models_last_write(const char *spec, char *err, size_t errlen)
{
	char path[PATH_MAX];
	if (config_state_file("last-model", true, path, sizeof path) != 0) {
		snprintf(err, errlen, "cannot make the state directory");
		return -1;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	size_t l = strlen(spec);
	bool ok = write(fd, spec, l) == (ssize_t)l && write(fd, "\n", 1) == 1;
	if (close(fd) != 0)
		ok = false;
	if (!ok) {
		snprintf(err, errlen, "%s: write failed", path);
		return -1;
	}
	return 0;
}
