/*
 * catalog.c - XDG paths, the models.d catalogue and model-name resolution
 * (see catalog.h).
 *
 * A models.d file is read whole (at most 1 MiB) and parsed with cJSON.
 * Validation walks the object's members once: each known key has a small
 * checker that converts and range-checks it into the entry; a key given
 * twice is an error (cJSON would silently keep the first); an unknown key
 * becomes a warning line in the entry.  Errors read "FILE: key 'K': what is
 * wrong" so that a user can fix the file without reading the source.
 *
 * A "remote" entry (an OpenAI-compatible server) is checked here key by key
 * and turned into the engine's "remote:{...}" spec in the entry's path; its
 * API key is never read here (the engine reads it from the named variable
 * or file when it loads the model).
 *
 * Folders are searched in a fixed order and the first entry of a name wins;
 * config_list_models() walks the same folders in the same order, so the
 * catalogue and `-m NAME` never disagree.
 */
#include "config.h"
#include "catalog.h"
#include "engine.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "hub.h"

#ifndef TTYCHAT_DATADIR
#define TTYCHAT_DATADIR "/usr/local/share/ttychat"
#endif

#define MODELSD_MAX_BYTES (1u << 20)
#define MODELSD_MAX_FILES 1000
#define MAX_DIRS 4

const char *config_default_model(void)
{
	return "smollm2";
}

static int xdg_dir(const char *var, const char *fallback, const char *leaf, char *buf, size_t n)
{
	const char *base = getenv(var);
	int w;
	if (base && base[0] == '/')
		w = snprintf(buf, n, "%s/ttychat%s%s", base, leaf[0] ? "/" : "", leaf);
	else {
		const char *home = getenv("HOME");
		if (!home || !home[0])
			return -1;
		w = snprintf(buf, n, "%s/%s/ttychat%s%s", home, fallback, leaf[0] ? "/" : "", leaf);
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

int config_config_dir(char *buf, size_t n)
{
	return xdg_dir("XDG_CONFIG_HOME", ".config", "", buf, n);
}

int config_state_file(const char *name, bool make_dirs, char *buf, size_t n)
{
	char dir[PATH_MAX];
	if (xdg_dir("XDG_STATE_HOME", ".local/state", "", dir, sizeof dir) != 0)
		return -1;
	if (make_dirs) {
		for (char *p = dir + 1; *p; p++) {
			if (*p != '/')
				continue;
			*p = '\0';
			if (mkdir(dir, 0700) != 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			return -1;
	}
	int w = snprintf(buf, n, "%s/%s", dir, name);
	return w < 0 || (size_t)w >= n ? -1 : 0;
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

/* Reads a whole regular file of at most MAX bytes; *LEN gets its length.
 * NULL with errno set (EFBIG when too large). */
static char *slurp(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		errno = EISDIR;
		return NULL;
	}
	char *buf = malloc(max + 1);
	size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
	int bad = ferror(f);
	fclose(f);
	if (!buf || bad || n > max) {
		free(buf);
		errno = !buf ? ENOMEM : bad ? EIO : EFBIG;
		return NULL;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

/* The models.d folders in search order; returns how many. */
static int modelsd_dirs(char dirs[MAX_DIRS][PATH_MAX], enum config_origin origin[MAX_DIRS])
{
	int nd = 0;
	if (xdg_dir("XDG_CONFIG_HOME", ".config", "models.d", dirs[nd], PATH_MAX) == 0)
		origin[nd++] = CONFIG_USER;
	if (fmt_path(dirs[nd], PATH_MAX, TTYCHAT_DATADIR, "models.d") == 0)
		origin[nd++] = CONFIG_SYSTEM;
	char exe[PATH_MAX];
	ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (el > 0) {
		exe[el] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			if (fmt_path(dirs[nd], PATH_MAX, exe, "models.d") == 0)
				origin[nd++] = CONFIG_BUILD;
			if (fmt_path(dirs[nd], PATH_MAX, exe, "../models.d") == 0)
				origin[nd++] = CONFIG_BUILD;
		}
	}
	/* the same folder twice (e.g. an installed binary whose datadir is
	 * its parent's models.d) is searched once */
	for (int i = 1; i < nd; i++) {
		char a[PATH_MAX], b[PATH_MAX];
		for (int j = 0; j < i; j++) {
			if (realpath(dirs[i], a) && realpath(dirs[j], b) && strcmp(a, b) == 0) {
				memmove(dirs + i, dirs + i + 1, (size_t)(nd - i - 1) * sizeof dirs[0]);
				memmove(origin + i, origin + i + 1, (size_t)(nd - i - 1) * sizeof origin[0]);
				nd--;
				i--;
				break;
			}
		}
	}
	return nd;
}

/* An entry with nothing set. */
static void entry_init(struct model_entry *e)
{
	memset(e, 0, sizeof *e);
	e->temperature = e->top_p = e->min_p = e->repeat_penalty = -1;
	e->top_k = -1;
	e->kv_type = e->cache_k = e->cache_v = -1;
	e->kv_rotation = -1;
	e->device = -1;
	e->gpu_layers = -2;
	e->spec = -1;
}

int config_device(const char *name)
{
	if (strcmp(name, "auto") == 0)
		return ENGINE_DEVICE_AUTO;
	if (strcmp(name, "cpu") == 0)
		return ENGINE_DEVICE_CPU;
	if (strcmp(name, "cuda") == 0)
		return ENGINE_DEVICE_CUDA;
	return -1;
}

int config_gpu_layers(int n)
{
	return n < 0 ? ENGINE_GPU_LAYERS_AUTO : n == 0 ? ENGINE_GPU_LAYERS_NONE : n;
}

/* ---- validation ----------------------------------------------------------- */

struct parse {
	const char *path;          /* the models.d file */
	struct model_entry *e;
	char *err;
	size_t errlen;
	const char *template_file; /* relative to the file's folder */
	bool have_file, have_template;
	const cJSON *remote;
};

static int fail(struct parse *p, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct parse *p, const char *key, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "%s: key '%s': %s", p->path, key, what);
	return -1;
}

static void warn(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct parse *p, const char *fmt, ...)
{
	size_t l = strlen(p->e->warnings);
	if (l + 2 >= sizeof p->e->warnings)
		return;
	int w = snprintf(p->e->warnings + l, sizeof p->e->warnings - l, "%s%s: ", l ? "\n" : "", p->path);
	if (w < 0 || (size_t)w >= sizeof p->e->warnings - l) {
		p->e->warnings[l] = '\0';
		return;
	}
	l += (size_t)w;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->e->warnings + l, sizeof p->e->warnings - l, fmt, ap);
	va_end(ap);
}

/* A JSON string of 1..MAX-1 bytes without NUL or control characters. */
static int get_str(struct parse *p, const cJSON *v, const char *key, char *out, size_t max, bool allow_nl)
{
	if (!cJSON_IsString(v))
		return fail(p, key, "must be a string");
	const char *s = v->valuestring;
	size_t l = strlen(s);
	if (l == 0)
		return fail(p, key, "must not be empty");
	if (out && l >= max)
		return fail(p, key, "longer than %zu bytes", max - 1);
	for (size_t i = 0; i < l; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && !(allow_nl && (c == '\n' || c == '\t' || c == '\r'))) || c == 0x7f)
			return fail(p, key, "contains a control character");
	}
	if (out)
		memcpy(out, s, l + 1);
	return 0;
}

static int get_num(struct parse *p, const cJSON *v, const char *key, double lo, double hi, bool integer,
		   double *out)
{
	if (!cJSON_IsNumber(v))
		return fail(p, key, "must be a number");
	double d = v->valuedouble;
	if (!isfinite(d) || d < lo || d > hi || (integer && d != floor(d))) {
		if (integer)
			return fail(p, key, "must be an integer in [%.0f, %.0f]", lo, hi);
		return fail(p, key, "must be a number in [%g, %g]", lo, hi);
	}
	*out = d;
	return 0;
}

static bool valid_name(const char *s)
{
	size_t l = strlen(s);
	if (l == 0 || l > 100 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < l; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* A relative path of sane components: no "..", no leading '/', no empty
 * component. */
static bool valid_relpath(const char *s)
{
	if (!s[0] || s[0] == '/')
		return false;
	const char *c = s;
	while (*c) {
		const char *end = strchr(c, '/');
		size_t n = end ? (size_t)(end - c) : strlen(c);
		if (n == 0 || (n == 2 && c[0] == '.' && c[1] == '.') || (n == 1 && c[0] == '.'))
			return false;
		c += n;
		if (*c == '/')
			c++;
	}
	return true;
}

static int check_sampling(struct parse *p, const cJSON *obj)
{
	if (!cJSON_IsObject(obj))
		return fail(p, "sampling", "must be an object");
	static const char *const known[] = {"temperature", "top_k", "top_p", "min_p", "repeat_penalty"};
	for (const cJSON *m = obj->child; m; m = m->next) {
		char key[160];
		snprintf(key, sizeof key, "sampling.%.100s", m->string ? m->string : "");
		for (const cJSON *o = obj->child; o != m; o = o->next)
			if (o->string && m->string && strcmp(o->string, m->string) == 0)
				return fail(p, key, "given twice");
		double d;
		if (!m->string) {
			continue;
		} else if (strcmp(m->string, "temperature") == 0) {
			if (get_num(p, m, key, 0, 100, false, &d))
				return -1;
			p->e->temperature = (float)d;
		} else if (strcmp(m->string, "top_k") == 0) {
			if (get_num(p, m, key, 0, 1 << 24, true, &d))
				return -1;
			p->e->top_k = (int)d;
		} else if (strcmp(m->string, "top_p") == 0) {
			if (get_num(p, m, key, 0, 1, false, &d))
				return -1;
			p->e->top_p = (float)d;
		} else if (strcmp(m->string, "min_p") == 0) {
			if (get_num(p, m, key, 0, 1, false, &d))
				return -1;
			p->e->min_p = (float)d;
		} else if (strcmp(m->string, "repeat_penalty") == 0) {
			if (get_num(p, m, key, 0.01, 100, false, &d))
				return -1;
			p->e->repeat_penalty = (float)d;
		} else {
			warn(p, "unknown key '%s' (ignored; known: %s, %s, %s, %s, %s)", key, known[0], known[1],
			     known[2], known[3], known[4]);
		}
	}
	return 0;
}

static int check_member(struct parse *p, const cJSON *m)
{
	struct model_entry *e = p->e;
	const char *k = m->string;
	double d;
	if (strcmp(k, "name") == 0) {
		if (get_str(p, m, k, e->name, sizeof e->name, false))
			return -1;
		if (!valid_name(e->name))
			return fail(p, k, "'%s' is not a valid name (letters, digits, '.', '_', '-'; at most 100)",
				    e->name);
	} else if (strcmp(k, "display_name") == 0) {
		return get_str(p, m, k, e->display_name, sizeof e->display_name, false);
	} else if (strcmp(k, "file") == 0) {
		char file[PATH_MAX];
		if (get_str(p, m, k, file, sizeof file, false))
			return -1;
		if (file[0] == '/') {
			snprintf(e->path, sizeof e->path, "%s", file);
		} else if (file[0] == '~' && file[1] == '/') {
			const char *home = getenv("HOME");
			if (!home || !home[0])
				return fail(p, k, "'%s' starts with ~/ but HOME is not set", file);
			if (fmt_path(e->path, sizeof e->path, home, file + 2))
				return fail(p, k, "path too long");
		} else {
			if (!valid_relpath(file))
				return fail(p, k, "'%s': a relative path must not contain '.' or '..' components", file);
			char dir[PATH_MAX];
			if (config_models_dir(dir, sizeof dir) != 0)
				return fail(p, k, "cannot find the models directory (HOME unset?)");
			if (fmt_path(e->path, sizeof e->path, dir, file))
				return fail(p, k, "path too long");
		}
		p->have_file = true;
	} else if (strcmp(k, "url") == 0) {
		if (get_str(p, m, k, e->url, sizeof e->url, false))
			return -1;
		if (strncmp(e->url, "https://", 8) != 0 && strncmp(e->url, "http://", 7) != 0)
			return fail(p, k, "'%s' is not an http:// or https:// URL", e->url);
		if (strchr(e->url, ' '))
			return fail(p, k, "must not contain spaces");
	} else if (strcmp(k, "sha256") == 0) {
		if (get_str(p, m, k, e->sha256, sizeof e->sha256, false))
			return -1;
		if (strlen(e->sha256) != 64 || strspn(e->sha256, "0123456789abcdefABCDEF") != 64)
			return fail(p, k, "must be 64 hexadecimal digits");
		for (char *c = e->sha256; *c; c++)
			if (*c >= 'A' && *c <= 'F')
				*c = (char)(*c - 'A' + 'a');
	} else if (strcmp(k, "think") == 0) {
		if (!cJSON_IsString(m) || (strcmp(m->valuestring, "on") && strcmp(m->valuestring, "off")))
			return fail(p, k, "must be \"on\" or \"off\"");
		e->think = strcmp(m->valuestring, "on") == 0 ? 1 : 2;
	} else if (strcmp(k, "reasoning_effort") == 0) {
		if (!cJSON_IsString(m) ||
		    (strcmp(m->valuestring, "low") && strcmp(m->valuestring, "medium") && strcmp(m->valuestring, "high")))
			return fail(p, k, "must be \"low\", \"medium\" or \"high\"");
		snprintf(e->reasoning_effort, sizeof e->reasoning_effort, "%s", m->valuestring);
	} else if (strcmp(k, "draft") == 0) {
		return get_str(p, m, k, e->draft, sizeof e->draft, false);
	} else if (strcmp(k, "speculative") == 0) {
		if (!cJSON_IsString(m) || engine_spec_parse(m->valuestring) < 0)
			return fail(p, k, "must be \"auto\", \"off\", \"ngram\" or \"draft\"");
		e->spec = engine_spec_parse(m->valuestring);
	} else if (strcmp(k, "draft_max") == 0) {
		if (get_num(p, m, k, 1, 16, true, &d))
			return -1;
		e->draft_max = (int)d;
	} else if (strcmp(k, "reasoning_budget") == 0) {
		if (get_num(p, m, k, 1, 1 << 24, true, &d))
			return -1;
		e->reasoning_budget = (int)d;
	} else if (strcmp(k, "context_size") == 0) {
		if (get_num(p, m, k, 16, 1 << 24, true, &d))
			return -1;
		e->context_size = (unsigned)d;
	} else if (strcmp(k, "sampling") == 0) {
		return check_sampling(p, m);
	} else if (strcmp(k, "system_prompt") == 0) {
		if (get_str(p, m, k, NULL, 0, true))
			return -1;
		if (!(e->system_prompt = strdup(m->valuestring)))
			return fail(p, k, "out of memory");
	} else if (strcmp(k, "template") == 0) {
		if (get_str(p, m, k, NULL, 0, true))
			return -1;
		if (!(e->template_text = strdup(m->valuestring)))
			return fail(p, k, "out of memory");
		p->have_template = true;
	} else if (strcmp(k, "template_file") == 0) {
		if (get_str(p, m, k, NULL, 0, false))
			return -1;
		p->template_file = m->valuestring;
	} else if (strcmp(k, "kv_type") == 0 || strcmp(k, "cache_type_k") == 0 || strcmp(k, "cache_type_v") == 0) {
		const int t = cJSON_IsString(m) ? engine_kv_type_parse(m->valuestring) : -1;
		if (t < 0)
			return fail(p, k, "must be one of " ENGINE_KV_TYPE_NAMES);
		*(k[0] == 'k' ? &e->kv_type : k[11] == 'k' ? &e->cache_k : &e->cache_v) = t;
	} else if (strcmp(k, "kv_rotation") == 0) {
		if (!cJSON_IsBool(m))
			return fail(p, k, "must be true or false");
		e->kv_rotation = cJSON_IsTrue(m);
	} else if (strcmp(k, "device") == 0) {
		if (!cJSON_IsString(m) || config_device(m->valuestring) < 0)
			return fail(p, k, "must be \"auto\", \"cpu\" or \"cuda\"");
		e->device = config_device(m->valuestring);
	} else if (strcmp(k, "gpu_layers") == 0) {
		if (get_num(p, m, k, -1, 1 << 20, true, &d))
			return -1;
		e->gpu_layers = (int)d;
	} else if (strcmp(k, "threads") == 0) {
		if (get_num(p, m, k, 1, 1024, true, &d))
			return -1;
		e->threads = (int)d;
	} else if (strcmp(k, "size") == 0) {
		if (get_num(p, m, k, 1, 9007199254740992.0, true, &d))
			return -1;
		e->size = (uint64_t)d;
	} else if (strcmp(k, "quant") == 0) {
		return get_str(p, m, k, e->quant, sizeof e->quant, false);
	} else if (strcmp(k, "remote") == 0) {
		if (!cJSON_IsObject(m))
			return fail(p, k, "must be an object (base_url, model, api_key_env or api_key_file, headers, timeout_s)");
		p->remote = m;
	} else if (strcmp(k, "source") == 0 || strcmp(k, "comment") == 0) {
		return get_str(p, m, k, NULL, 0, true); /* free text for people */
	} else {
		warn(p, "unknown key '%s' (ignored)", k);
	}
	return 0;
}

/* Checks a "remote" object and writes the engine's spec into e->path. */
static int check_remote(struct parse *p, const cJSON *obj)
{
	struct model_entry *e = p->e;
	cJSON *spec = cJSON_CreateObject();
	if (!spec)
		return fail(p, "remote", "out of memory");
	int rc = 0;
	bool have_base = false, have_key_env = false, have_key_file = false;
	for (const cJSON *m = obj->child; m && rc == 0; m = m->next) {
		char key[160];
		snprintf(key, sizeof key, "remote.%.100s", m->string ? m->string : "");
		for (const cJSON *o = obj->child; o != m && rc == 0; o = o->next)
			if (o->string && m->string && strcmp(o->string, m->string) == 0)
				rc = fail(p, key, "given twice");
		const char *k = m->string ? m->string : "";
		char val[PATH_MAX];
		double d;
		if (rc) {
			break;
		} else if (strcmp(k, "base_url") == 0) {
			if ((rc = get_str(p, m, key, val, sizeof val, false)) == 0) {
				if (strncmp(val, "https://", 8) != 0 && strncmp(val, "http://", 7) != 0)
					rc = fail(p, key, "'%s' is not an http:// or https:// URL", val);
				else if (strchr(val, ' '))
					rc = fail(p, key, "must not contain spaces");
				else
					cJSON_AddStringToObject(spec, k, val), have_base = true;
			}
		} else if (strcmp(k, "model") == 0) {
			if ((rc = get_str(p, m, key, val, 256, false)) == 0)
				cJSON_AddStringToObject(spec, k, val);
		} else if (strcmp(k, "api_key_env") == 0) {
			if ((rc = get_str(p, m, key, val, 128, false)) == 0) {
				if (strspn(val, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != strlen(val) ||
				    (val[0] >= '0' && val[0] <= '9'))
					rc = fail(p, key, "'%s' is not an environment variable name", val);
				else
					cJSON_AddStringToObject(spec, k, val), have_key_env = true;
			}
		} else if (strcmp(k, "api_key_file") == 0) {
			char file[PATH_MAX];
			if ((rc = get_str(p, m, key, file, sizeof file, false)) == 0) {
				char dir[PATH_MAX];
				snprintf(dir, sizeof dir, "%s", p->path);
				char *slash = strrchr(dir, '/');
				if (slash)
					*slash = '\0';
				else
					snprintf(dir, sizeof dir, ".");
				const char *home = getenv("HOME");
				if (file[0] == '/')
					snprintf(val, sizeof val, "%s", file);
				else if (file[0] == '~' && file[1] == '/' && home && home[0])
					rc = fmt_path(val, sizeof val, home, file + 2) ? fail(p, key, "path too long") : 0;
				else if (!valid_relpath(file) || fmt_path(val, sizeof val, dir, file))
					rc = fail(p, key, "'%s' is not a usable path", file);
				if (rc == 0)
					cJSON_AddStringToObject(spec, k, val), have_key_file = true;
			}
		} else if (strcmp(k, "headers") == 0) {
			if (!cJSON_IsObject(m)) {
				rc = fail(p, key, "must be an object of \"Header-Name\": \"value\"");
				break;
			}
			int nh = 0;
			for (const cJSON *h = m->child; h && rc == 0; h = h->next) {
				char hk[300];
				snprintf(hk, sizeof hk, "remote.headers.%.100s", h->string ? h->string : "");
				const char *hn = h->string ? h->string : "";
				if (!hn[0] || strspn(hn, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(hn))
					rc = fail(p, hk, "not a header name");
				else if (strcasecmp(hn, "Authorization") == 0)
					rc = fail(p, hk, "the API key goes in api_key_env or api_key_file, not in a header");
				else if (++nh > 32)
					rc = fail(p, hk, "more than 32 headers");
				else
					rc = get_str(p, h, hk, val, sizeof val, false);
			}
			if (rc == 0)
				cJSON_AddItemToObject(spec, k, cJSON_Duplicate(m, 1));
		} else if (strcmp(k, "timeout_s") == 0 || strcmp(k, "connect_timeout_s") == 0) {
			if ((rc = get_num(p, m, key, 1, 86400, true, &d)) == 0)
				cJSON_AddNumberToObject(spec, k, d);
		} else if (strcmp(k, "extra_sampling") == 0) {
			if (!cJSON_IsBool(m))
				rc = fail(p, key, "must be true or false");
			else
				cJSON_AddBoolToObject(spec, k, cJSON_IsTrue(m));
		} else {
			warn(p, "unknown key '%s' (ignored; known: base_url, model, api_key_env, api_key_file, headers, "
				"timeout_s, connect_timeout_s, extra_sampling)", key);
		}
	}
	if (rc == 0 && !have_base)
		rc = fail(p, "remote.base_url", "missing (the server's URL, e.g. http://host:8080/v1)");
	if (rc == 0 && have_key_env && have_key_file)
		rc = fail(p, "remote", "give api_key_env or api_key_file, not both");
	if (rc == 0 && e->context_size)
		cJSON_AddNumberToObject(spec, "n_ctx", e->context_size);
	char *text = rc == 0 ? cJSON_PrintUnformatted(spec) : NULL;
	cJSON_Delete(spec);
	if (rc == 0 && !text)
		return fail(p, "remote", "out of memory");
	if (rc == 0 && snprintf(e->path, sizeof e->path, "remote:%s", text) >= (int)sizeof e->path)
		rc = fail(p, "remote", "longer than %zu bytes", sizeof e->path - 8);
	free(text);
	if (rc == 0)
		e->remote = true;
	return rc;
}

/* The file name a URL would be saved as: its last path component. */
static int url_basename(const char *url, char *out, size_t n)
{
	const char *s = strstr(url, "://");
	s = s ? s + 3 : url;
	const char *path = strchr(s, '/');
	if (!path)
		return -1;
	size_t end = strcspn(path, "?#");
	const char *last = path;
	for (size_t i = 0; i < end; i++)
		if (path[i] == '/')
			last = path + i + 1;
	size_t l = (size_t)(path + end - last);
	if (l == 0 || l >= n || l > 255)
		return -1;
	memcpy(out, last, l);
	out[l] = '\0';
	/* only plain file-name characters: no '%' escapes, no dot files */
	if (out[0] == '.' || strspn(out, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-") != l)
		return -1;
	return 0;
}

/* Reads PATH (at most MAX bytes) as one JSON object; NULL with ERR (the
 * file and, for bad JSON, the line and column) on failure.  A missing file
 * sets errno ENOENT. */
static cJSON *read_json_object(const char *path, size_t max, char *err, size_t errlen)
{
	size_t len = 0;
	char *text = slurp(path, max, &len);
	if (!text) {
		int e = errno;
		if (e == EFBIG)
			snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
		else
			snprintf(err, errlen, "%s: %s", path, strerror(e));
		errno = e;
		return NULL;
	}
	if (strlen(text) != len) {
		free(text);
		snprintf(err, errlen, "%s: contains a NUL byte (not a JSON text file)", path);
		errno = EINVAL;
		return NULL;
	}
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithOpts(text, &end, 1);
	if (!j) {
		/* line and column of the error */
		size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
		unsigned line = 1, col = 1;
		for (size_t i = 0; i < off; i++) {
			if (text[i] == '\n') {
				line++;
				col = 1;
			} else {
				col++;
			}
		}
		snprintf(err, errlen, "%s: line %u, column %u: not valid JSON", path, line, col);
		free(text);
		errno = EINVAL;
		return NULL;
	}
	free(text);
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		snprintf(err, errlen, "%s: not a JSON object", path);
		errno = EINVAL;
		return NULL;
	}
	return j;
}

/* Calls FN on each member of object J, in order, after checking that its
 * key was not given before; stops at the first failure (0 or -1). */
static int each_member(struct parse *p, const cJSON *j, int (*fn)(struct parse *, const cJSON *, void *), void *ctx)
{
	for (const cJSON *m = j->child; m; m = m->next) {
		if (!m->string)
			continue;
		for (const cJSON *o = j->child; o != m; o = o->next)
			if (o->string && strcmp(o->string, m->string) == 0)
				return fail(p, m->string, "given twice");
		if (fn(p, m, ctx) != 0)
			return -1;
	}
	return 0;
}

static int check_member_cb(struct parse *p, const cJSON *m, void *ctx)
{
	(void)ctx;
	return check_member(p, m);
}

int config_entry_parse(const char *path, struct model_entry *out, char *err, size_t errlen)
{
	entry_init(out);
	snprintf(out->source, sizeof out->source, "%s", path);
	cJSON *j = read_json_object(path, MODELSD_MAX_BYTES, err, errlen);
	if (!j)
		return -1;
	struct parse p = {.path = path, .e = out, .err = err, .errlen = errlen};
	int rc = each_member(&p, j, check_member_cb, NULL);
	/* the template file, read now that the folder is known */
	if (rc == 0 && p.template_file) {
		if (p.have_template) {
			rc = fail(&p, "template_file", "give either 'template' or 'template_file', not both");
		} else {
			char tpath[PATH_MAX];
			if (p.template_file[0] == '/') {
				snprintf(tpath, sizeof tpath, "%s", p.template_file);
			} else {
				char dir[PATH_MAX];
				snprintf(dir, sizeof dir, "%s", path);
				char *slash = strrchr(dir, '/');
				if (slash)
					*slash = '\0';
				else
					snprintf(dir, sizeof dir, ".");
				if (!valid_relpath(p.template_file) || fmt_path(tpath, sizeof tpath, dir, p.template_file))
					rc = fail(&p, "template_file", "'%s' is not a usable path", p.template_file);
			}
			size_t tl = 0;
			if (rc == 0 && !(out->template_text = slurp(tpath, MODELSD_MAX_BYTES, &tl)))
				rc = fail(&p, "template_file", "%s: %s", tpath,
					  errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
			else if (rc == 0 && (strlen(out->template_text) != tl || tl == 0))
				rc = fail(&p, "template_file", "%s: empty or contains a NUL byte", tpath);
		}
	}
	if (rc == 0 && !out->name[0])
		rc = fail(&p, "name", "missing (every entry needs a name)");
	if (rc == 0 && p.remote && (p.have_file || out->url[0] || p.have_template))
		rc = fail(&p, "remote", "a remote entry has no 'file', 'url' or 'template' (the server owns them)");
	if (rc == 0 && p.remote)
		rc = check_remote(&p, p.remote);
	if (rc == 0 && !p.remote && !p.have_file && !out->url[0])
		rc = fail(&p, "file", "missing (give 'file', or 'url' with 'sha256')");
	if (rc == 0 && out->url[0] && !out->sha256[0])
		rc = fail(&p, "sha256", "missing ('url' needs the file's SHA-256 to verify the download)");
	if (rc == 0 && !p.have_file && !p.remote) {
		char base[256], dir[PATH_MAX];
		if (url_basename(out->url, base, sizeof base))
			rc = fail(&p, "url", "has no usable file name at its end; give 'file' too");
		else if (config_models_dir(dir, sizeof dir) != 0)
			rc = fail(&p, "url", "cannot find the models directory (HOME unset?)");
		else if (fmt_path(out->path, sizeof out->path, dir, base))
			rc = fail(&p, "url", "path too long");
	}
	if (rc == 0 && !out->display_name[0])
		snprintf(out->display_name, sizeof out->display_name, "%s", out->name);
	cJSON_Delete(j);
	if (rc != 0)
		config_entry_free(out);
	return rc;
}

/* Just the "name" of a models.d file, without validating the rest (for
 * the scan of other files in a folder).  False when it has none. */
static bool peek_name(const char *path, char *name, size_t n)
{
	char *text = slurp(path, MODELSD_MAX_BYTES, NULL);
	if (!text)
		return false;
	cJSON *j = cJSON_Parse(text);
	free(text);
	const cJSON *nm = cJSON_GetObjectItemCaseSensitive(j, "name");
	bool ok = cJSON_IsString(nm) && strlen(nm->valuestring) < n;
	if (ok)
		memcpy(name, nm->valuestring, strlen(nm->valuestring) + 1);
	cJSON_Delete(j);
	return ok;
}

static bool has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

/* NAME is a later part of a model split by gguf-split ("...-00002-of-00003.gguf"):
 * its first part stands for the whole model in listings. */
static bool later_split_part(const char *name)
{
	size_t n = strlen(name);
	unsigned k, total;
	char tail[32];
	if (n < 20 || sscanf(name + n - 20, "-%5u-of-%5u.gguf", &k, &total) != 2)
		return false;
	snprintf(tail, sizeof tail, "-%05u-of-%05u.gguf", k, total);
	return strcmp(name + n - 20, tail) == 0 && k > 1 && k <= total;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.json files of DIR, sorted; NULL-terminated array of malloc'd names
 * (NULL when the folder cannot be read). */
static char **dir_json_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	size_t n = 0, cap = 16;
	char **v = malloc(cap * sizeof *v);
	struct dirent *de;
	while (v && (de = readdir(d)) && n < MODELSD_MAX_FILES) {
		if (de->d_name[0] == '.' || !has_suffix(de->d_name, ".json"))
			continue;
		if (n + 1 >= cap) {
			char **nv = realloc(v, cap * 2 * sizeof *v);
			if (!nv)
				break;
			v = nv;
			cap *= 2;
		}
		if (!(v[n] = strdup(de->d_name)))
			break;
		n++;
	}
	closedir(d);
	if (!v)
		return NULL;
	v[n] = NULL;
	qsort(v, n, sizeof *v, cmp_str);
	return v;
}

static void free_names(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* Looks for entry NAME in DIR: 1 found, 0 not there, -1 bad file. */
static int search_dir(const char *dir, const char *name, struct model_entry *out, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int w = snprintf(path, sizeof path, "%s/%s.json", dir, name);
	if (w > 0 && (size_t)w < sizeof path && file_exists(path)) {
		if (config_entry_parse(path, out, err, errlen) != 0)
			return -1;
		if (strcmp(out->name, name) == 0)
			return 1;
		config_entry_free(out);
	}
	/* an entry whose file is named differently */
	char **files = dir_json_files(dir);
	int found = 0;
	for (size_t i = 0; files && files[i] && !found; i++) {
		char nm[128];
		if (fmt_path(path, sizeof path, dir, files[i]) || !peek_name(path, nm, sizeof nm) || strcmp(nm, name))
			continue;
		found = config_entry_parse(path, out, err, errlen) == 0 ? 1 : -1;
	}
	free_names(files);
	return found;
}

int config_find_entry(const char *name, struct model_entry *out, char *err, size_t errlen)
{
	entry_init(out);
	if (!name || !valid_name(name)) {
		snprintf(err, errlen, "%s: not a model name", name ? name : "(null)");
		return -1;
	}
	char dirs[MAX_DIRS][PATH_MAX];
	enum config_origin origin[MAX_DIRS];
	int nd = modelsd_dirs(dirs, origin);
	for (int i = 0; i < nd; i++) {
		int rc = search_dir(dirs[i], name, out, err, errlen);
		if (rc < 0)
			return -1;
		if (rc == 1)
			return 0;
	}
	snprintf(err, errlen, "%s: no models.d entry of that name ('ttychat models' lists them)", name);
	return 1;
}

int config_resolve_model(const char *spec, struct model_entry *out, char *err, size_t errlen)
{
	entry_init(out);
	if (!spec || !spec[0]) {
		snprintf(err, errlen, "no model given");
		return -1;
	}
	if (strncmp(spec, "remote:", 7) == 0) {
		/* a remote spec as the engine takes it (saved with a chat) */
		cJSON *j = cJSON_Parse(spec + 7);
		const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
		const cJSON *base = cJSON_GetObjectItemCaseSensitive(j, "base_url");
		bool ok = cJSON_IsObject(j) && cJSON_IsString(base) && strlen(spec) < sizeof out->path;
		if (ok) {
			snprintf(out->path, sizeof out->path, "%s", spec);
			snprintf(out->name, sizeof out->name, "%.100s", cJSON_IsString(model) ? model->valuestring : "remote");
			snprintf(out->display_name, sizeof out->display_name, "%s @ %.120s", out->name, base->valuestring);
			out->remote = true;
		}
		cJSON_Delete(j);
		if (!ok)
			snprintf(err, errlen, "%.60s...: not a remote model spec", spec);
		return ok ? 0 : -1;
	}
	/* "ORG/REPO:QUANT", "hf:ORG/REPO": the entry `ttychat pull` wrote (hub.h) */
	struct hub_ref hr;
	char hname[sizeof out->name];
	if (!file_exists(spec) && hub_ref_parse(spec, false, &hr) && hub_ref_name(&hr, hname, sizeof hname) == 0) {
		int rc = config_find_entry(hname, out, err, errlen);
		if (rc == 0 && !out->remote && !file_exists(out->path)) {
			config_entry_free(out);
			rc = 1;
		}
		if (rc == 1)
			snprintf(err, errlen, "%s: not downloaded; run 'ttychat pull %s'", spec, spec);
		return rc == 0 ? 0 : -1;
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
	if (!valid_name(spec)) {
		snprintf(err, errlen, "%s: not a model name or file", spec);
		return -1;
	}
	int rc = config_find_entry(spec, out, err, errlen);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		if (!out->remote && !file_exists(out->path)) {
			snprintf(err, errlen, "%s: model '%s' (from %s) is not downloaded; run 'ttychat pull %s'%s",
				 out->path, spec, out->source, spec,
				 out->url[0] ? "" : " (the entry has no url: fetch the file yourself)");
			config_entry_free(out);
			return -1;
		}
		return 0;
	}
	entry_init(out);
	char dir[PATH_MAX];
	if (config_models_dir(dir, sizeof dir) == 0) {
		if (fmt_path(out->path, sizeof out->path, dir, spec) == 0 && file_exists(out->path)) {
			snprintf(out->name, sizeof out->name, "%s", spec);
			snprintf(out->display_name, sizeof out->display_name, "%s", spec);
			return 0;
		}
	}
	snprintf(err, errlen, "%s: no such model file or models.d entry ('ttychat models' lists them)", spec);
	return -1;
}

void config_entry_free(struct model_entry *e)
{
	free(e->system_prompt);
	e->system_prompt = NULL;
	free(e->template_text);
	e->template_text = NULL;
}

/* settings.json takes the keys of a models.d entry that are settings
 * (not what names or finds a file), plus "model" and "theme". */
static int check_setting(struct parse *p, const cJSON *m, struct config_settings *out)
{
	static const char *const entry_keys[] = {"context_size", "sampling", "system_prompt", "kv_type",
						 "cache_type_k", "cache_type_v", "kv_rotation", "device", "gpu_layers", "threads"};
	const char *k = m->string;
	if (strcmp(k, "model") == 0)
		return get_str(p, m, k, out->model, sizeof out->model, false);
	if (strcmp(k, "theme") == 0)
		return get_str(p, m, k, out->theme, sizeof out->theme, false);
	for (size_t i = 0; i < sizeof entry_keys / sizeof entry_keys[0]; i++)
		if (strcmp(k, entry_keys[i]) == 0)
			return check_member(p, m);
	warn(p, "unknown key '%s' (ignored)", k);
	return 0;
}

static int check_setting_cb(struct parse *p, const cJSON *m, void *ctx)
{
	return check_setting(p, m, ctx);
}

int config_settings_read(struct config_settings *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	entry_init(&out->d);
	char dir[PATH_MAX];
	if (config_config_dir(dir, sizeof dir) != 0 || fmt_path(out->path, sizeof out->path, dir, "settings.json"))
		return 0; /* no home: nothing to read */
	cJSON *j = read_json_object(out->path, 1 << 16, err, errlen);
	if (!j) {
		int e = errno;
		out->path[0] = '\0';
		return e == ENOENT ? 0 : -1;
	}
	struct parse p = {.path = out->path, .e = &out->d, .err = err, .errlen = errlen};
	int rc = each_member(&p, j, check_setting_cb, out);
	cJSON_Delete(j);
	if (rc != 0) { /* empty settings, as documented */
		config_settings_free(out);
		memset(out, 0, sizeof *out);
		entry_init(&out->d);
	}
	return rc;
}

void config_settings_free(struct config_settings *s)
{
	config_entry_free(&s->d);
}

/* ---- listing ---------------------------------------------------------------- */

const char *config_origin_name(enum config_origin o)
{
	switch (o) {
	case CONFIG_USER: return "user";
	case CONFIG_SYSTEM: return "system";
	case CONFIG_BUILD: return "build";
	case CONFIG_LOOSE: return "file";
	}
	return "?";
}

static int list_push(struct config_list *l, size_t *cap, const struct config_item *it)
{
	if (l->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct config_item *nv = realloc(l->v, nc * sizeof *nv);
		if (!nv)
			return -1;
		l->v = nv;
		*cap = nc;
	}
	l->v[l->n++] = *it;
	return 0;
}

int config_list_models(struct config_list *out, char *err, size_t errlen)
{
	out->v = NULL;
	out->n = 0;
	size_t cap = 0;
	char dirs[MAX_DIRS][PATH_MAX];
	enum config_origin origin[MAX_DIRS];
	int nd = modelsd_dirs(dirs, origin);
	struct config_item *it = malloc(sizeof *it);
	if (!it)
		goto oom;
	for (int d = 0; d < nd; d++) {
		char **files = dir_json_files(dirs[d]);
		for (size_t i = 0; files && files[i]; i++) {
			char path[PATH_MAX];
			if (fmt_path(path, sizeof path, dirs[d], files[i]))
				continue;
			memset(it, 0, sizeof *it);
			it->origin = origin[d];
			it->ok = config_entry_parse(path, &it->e, it->error, sizeof it->error) == 0;
			if (!it->ok) {
				snprintf(it->e.source, sizeof it->e.source, "%s", path);
				char base[128];
				snprintf(base, sizeof base, "%s", files[i]);
				base[strlen(base) - 5] = '\0'; /* ".json" */
				snprintf(it->e.name, sizeof it->e.name, "%s", base);
			} else {
				it->present = it->e.remote || file_exists(it->e.path);
				for (size_t k = 0; k < out->n; k++)
					if (out->v[k].ok && strcmp(out->v[k].e.name, it->e.name) == 0)
						it->shadowed = true;
			}
			if (list_push(out, &cap, it)) {
				config_entry_free(&it->e);
				free_names(files);
				goto oom;
			}
		}
		free_names(files);
	}
	/* loose GGUF files in the models directory */
	char mdir[PATH_MAX];
	DIR *dir = config_models_dir(mdir, sizeof mdir) == 0 ? opendir(mdir) : NULL;
	struct dirent *de;
	size_t count = 0;
	while (dir && (de = readdir(dir)) && count < MODELSD_MAX_FILES) {
		if (de->d_name[0] == '.' || !has_suffix(de->d_name, ".gguf") || later_split_part(de->d_name))
			continue;
		count++;
		memset(it, 0, sizeof *it);
		entry_init(&it->e);
		if (fmt_path(it->e.path, sizeof it->e.path, mdir, de->d_name))
			continue;
		char rp[PATH_MAX];
		bool named = false;
		if (realpath(it->e.path, rp)) {
			for (size_t k = 0; k < out->n && !named; k++) {
				char rq[PATH_MAX];
				named = out->v[k].ok && out->v[k].origin != CONFIG_LOOSE &&
					realpath(out->v[k].e.path, rq) && strcmp(rp, rq) == 0;
			}
		}
		if (named)
			continue;
		snprintf(it->e.name, sizeof it->e.name, "%.*s", (int)sizeof it->e.name - 1, de->d_name);
		snprintf(it->e.display_name, sizeof it->e.display_name, "%s", it->e.name);
		it->ok = true;
		it->present = file_exists(it->e.path);
		it->origin = CONFIG_LOOSE;
		if (list_push(out, &cap, it)) {
			closedir(dir);
			goto oom;
		}
	}
	if (dir)
		closedir(dir);
	free(it);
	return 0;
oom:
	free(it);
	config_list_free(out);
	snprintf(err, errlen, "out of memory");
	return -1;
}

void config_list_free(struct config_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		config_entry_free(&l->v[i].e);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

int config_probe_model(const char *path, uint64_t *size, char *quant, size_t qn, char *err, size_t errlen)
{
	engine_file *f = engine_file_open(path, err, errlen);
	if (!f)
		return -1;
	const struct engine_file_info *in = engine_file_info(f);
	*size = in->file_bytes;
	snprintf(quant, qn, "%s", in->quant);
	engine_file_close(f);
	return 0;
}
