/*
 * catalog.c - XDG paths and models.d lookup (see config.h).  models.d files
 * are small JSON objects parsed with cJSON; every field is type-checked and
 * a bad file is reported with its path and the offending key.
 */
#include "config.h"
#include "catalog.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef TTYCHAT_DATADIR
#define TTYCHAT_DATADIR "/usr/local/share/ttychat"
#endif

const char *config_default_model(void)
{
	return "smollm2";
}

static int xdg_dir(const char *var, const char *fallback, const char *leaf, char *buf, size_t n)
{
	const char *base = getenv(var);
	int w;
	if (base && base[0] == '/')
		w = snprintf(buf, n, "%s/ttychat/%s", base, leaf);
	else {
		const char *home = getenv("HOME");
		if (!home || !home[0])
			return -1;
		w = snprintf(buf, n, "%s/%s/ttychat/%s", home, fallback, leaf);
	}
	return w < 0 || (size_t)w >= n ? -1 : 0;
}

int config_models_dir(char *buf, size_t n)
{
	const char *o = getenv("TTYCHAT_MODELS_DIR");
	if (o && o[0]) {
		int w = snprintf(buf, n, "%s", o);
		return w < 0 || (size_t)w >= n ? -1 : 0;
	}
	return xdg_dir("XDG_DATA_HOME", ".local/share", "models", buf, n);
}

/* snprintf that reports truncation instead of hiding it */
static int fmt_path(char *buf, size_t n, const char *a, const char *b)
{
	int w = snprintf(buf, n, "%s/%s", a, b);
	return w < 0 || (size_t)w >= n ? -1 : 0;
}

static int file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static char *slurp(const char *path, size_t max)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = malloc(max + 1);
	size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
	fclose(f);
	if (!buf || n > max) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

static float num_or(const cJSON *o, const char *k, float dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? (float)v->valuedouble : dflt;
}

/* Fills OUT from the models.d file PATH if its "name" is NAME: 1 when it
 * matched, 0 when not, -1 on a bad file. */
static int try_entry(const char *path, const char *name, struct model_entry *out, char *err, size_t errlen)
{
	char *text = slurp(path, 1 << 20);
	if (!text)
		return 0;
	cJSON *j = cJSON_Parse(text);
	free(text);
	if (!j || !cJSON_IsObject(j)) {
		cJSON_Delete(j);
		snprintf(err, errlen, "%s: not a JSON object", path);
		return -1;
	}
	const cJSON *nm = cJSON_GetObjectItemCaseSensitive(j, "name");
	if (!cJSON_IsString(nm) || strcmp(nm->valuestring, name) != 0) {
		cJSON_Delete(j);
		return 0;
	}
	const cJSON *file = cJSON_GetObjectItemCaseSensitive(j, "file");
	if (!cJSON_IsString(file) || !file->valuestring[0]) {
		snprintf(err, errlen, "%s: key 'file': missing or not a string", path);
		cJSON_Delete(j);
		return -1;
	}
	memset(out, 0, sizeof *out);
	snprintf(out->name, sizeof out->name, "%s", name);
	snprintf(out->source, sizeof out->source, "%s", path);
	const cJSON *dn = cJSON_GetObjectItemCaseSensitive(j, "display_name");
	snprintf(out->display_name, sizeof out->display_name, "%s", cJSON_IsString(dn) ? dn->valuestring : name);
	if (file->valuestring[0] == '/') {
		snprintf(out->path, sizeof out->path, "%s", file->valuestring);
	} else {
		char dir[4096];
		if (config_models_dir(dir, sizeof dir) != 0) {
			snprintf(err, errlen, "cannot find the models directory (HOME unset?)");
			cJSON_Delete(j);
			return -1;
		}
		if (fmt_path(out->path, sizeof out->path, dir, file->valuestring)) {
			snprintf(err, errlen, "%s: key 'file': path too long", path);
			cJSON_Delete(j);
			return -1;
		}
	}
	const cJSON *cs = cJSON_GetObjectItemCaseSensitive(j, "context_size");
	out->context_size = cJSON_IsNumber(cs) && cs->valuedouble > 0 && cs->valuedouble < 1e8
				    ? (unsigned)cs->valuedouble : 0;
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "sampling");
	out->temperature = num_or(s, "temperature", -1);
	out->top_p = num_or(s, "top_p", -1);
	out->min_p = num_or(s, "min_p", -1);
	out->repeat_penalty = num_or(s, "repeat_penalty", -1);
	out->top_k = (int)num_or(s, "top_k", -1);
	const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "system_prompt");
	if (cJSON_IsString(sp))
		out->system_prompt = strdup(sp->valuestring);
	cJSON_Delete(j);
	return 1;
}

static int search_dir(const char *dir, const char *name, struct model_entry *out, char *err, size_t errlen)
{
	char path[4096];
	/* the file is normally NAME.json; other files are not scanned here */
	int w = snprintf(path, sizeof path, "%s/%s.json", dir, name);
	if (w < 0 || (size_t)w >= sizeof path || !file_exists(path))
		return 0;
	return try_entry(path, name, out, err, errlen);
}

int config_resolve_model(const char *spec, struct model_entry *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (!spec || !spec[0]) {
		snprintf(err, errlen, "no model given");
		return -1;
	}
	if (strchr(spec, '/') || file_exists(spec)) {
		if (!file_exists(spec)) {
			snprintf(err, errlen, "%s: no such model file", spec);
			return -1;
		}
		snprintf(out->name, sizeof out->name, "%.*s", (int)sizeof out->name - 1, spec);
		snprintf(out->display_name, sizeof out->display_name, "%s", spec);
		snprintf(out->path, sizeof out->path, "%s", spec);
		return 0;
	}
	if (strlen(spec) > 100 || strstr(spec, "..")) {
		snprintf(err, errlen, "%s: not a model name", spec);
		return -1;
	}
	char dirs[4][4096];
	int nd = 0;
	if (xdg_dir("XDG_CONFIG_HOME", ".config", "models.d", dirs[nd], sizeof dirs[0]) == 0)
		nd++;
	snprintf(dirs[nd++], sizeof dirs[0], "%s/models.d", TTYCHAT_DATADIR);
	char exe[PATH_MAX];
	ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (el > 0) {
		exe[el] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			if (fmt_path(dirs[nd], sizeof dirs[0], exe, "models.d") == 0)
				nd++;
			if (fmt_path(dirs[nd], sizeof dirs[0], exe, "../models.d") == 0)
				nd++;
		}
	}
	for (int i = 0; i < nd; i++) {
		int rc = search_dir(dirs[i], spec, out, err, errlen);
		if (rc < 0)
			return -1;
		if (rc == 1) {
			if (!file_exists(out->path)) {
				snprintf(err, errlen, "%s: model '%s' (from %s) is not downloaded; run scripts/fetch-models or 'ttychat pull %s'",
					 out->path, spec, out->source, spec);
				config_entry_free(out);
				return -1;
			}
			return 0;
		}
	}
	char dir[4096];
	if (config_models_dir(dir, sizeof dir) == 0) {
		if (fmt_path(out->path, sizeof out->path, dir, spec) == 0 && file_exists(out->path)) {
			snprintf(out->name, sizeof out->name, "%s", spec);
			snprintf(out->display_name, sizeof out->display_name, "%s", spec);
			return 0;
		}
	}
	snprintf(err, errlen, "%s: no such model file or models.d entry", spec);
	return -1;
}

void config_entry_free(struct model_entry *e)
{
	free(e->system_prompt);
	e->system_prompt = NULL;
}
