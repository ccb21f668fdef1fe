/*
 * remote.c - the remote backend: an OpenAI-compatible server over libcurl
 * (see remote.h).
 *
 * One easy handle and one multi handle live as long as the loaded remote
 * model, so the connection (and TLS session) is reused from one reply to
 * the next.  A transfer runs in a loop of curl_multi_perform() and
 * curl_multi_poll(); the poll also watches the engine's wake-up pipe, so a
 * cancel closes the connection at once rather than at the next byte.  A
 * stalled server is caught by the same loop: no byte for timeout_s seconds
 * (libcurl's own low-speed limit averages over several seconds, too
 * loosely for a short timeout).
 *
 * Replies are streamed as server-sent events: bytes are cut into lines,
 * "data:" lines gather into one event, a blank line dispatches it (a JSON
 * chunk, or "[DONE]"), ":" lines are keep-alive comments and an "error:"
 * field (llama.cpp) carries a failure.  Text pieces pass a UTF-8 filter
 * that holds back a character split across chunks and replaces invalid
 * bytes with U+FFFD, because the engine promises valid UTF-8 in TOKEN
 * events.  A server that answers a streaming request with plain JSON is
 * understood too.
 *
 * Every failure becomes one line that names the host and says what went
 * wrong in words (DNS, refused, TLS, HTTP status with the server's own
 * message, stream cut, stalled, malformed event); the text received before
 * a failure has already gone to the caller, which keeps it.
 */
#include "remote.h"

#include <ctype.h>
#include <curl/curl.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SPEC_MAX (64u << 10)      /* bytes of a remote spec */
#define KEY_MAX 4096              /* bytes of an API key */
#define HEADERS_MAX 32
#define LINE_MAX_BYTES (8u << 20) /* one SSE line, one event, one JSON answer */
#define ERRBODY_MAX (64u << 10)   /* bytes of an error answer kept */

struct remote {
	char base[2048];          /* ".../v1", no trailing '/' */
	char host[256];           /* host[:port], for messages */
	char model[256];
	struct curl_slist *get_hdrs, *post_hdrs;
	long timeout_s, connect_timeout_s;
	uint32_t n_ctx;
	bool extra_sampling;
	bool global_init;
	CURL *easy;
	CURLM *multi;
	char curl_err[CURL_ERROR_SIZE];
};

/* ---- small helpers ------------------------------------------------------- */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static bool is_cancelled(const struct remote_cancel *c)
{
	return c && c->epoch && atomic_load(c->epoch) != c->mine;
}

static void drain(int fd)
{
	char buf[64];
	while (read(fd, buf, sizeof buf) > 0)
		;
}

/* Copies S into OUT (size N) keeping printable ASCII and UTF-8, with
 * controls as spaces and at most MAXLEN bytes: server text in a message. */
static void clean_copy(char *out, size_t n, const char *s, size_t len, size_t maxlen)
{
	size_t o = 0;
	if (len > maxlen)
		len = maxlen;
	for (size_t i = 0; i < len && o + 1 < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		out[o++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
	}
	/* never end inside a UTF-8 sequence */
	while (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
		o--;
	if (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0xc0)
		o--;
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
}

/* Wipes and frees a header list (one of them carries the API key). */
static void wipe_slist(struct curl_slist *l)
{
	for (struct curl_slist *p = l; p; p = p->next)
		if (p->data) {
			volatile char *d = p->data;
			for (size_t i = 0; d[i]; i++)
				d[i] = 0;
		}
	curl_slist_free_all(l);
}

static bool header_ok(const char *name, const char *value)
{
	if (!name[0] || strlen(name) > 128 || strlen(value) > 4096)
		return false;
	for (const char *p = name; *p; p++)
		if (!(isalnum((unsigned char)*p) || strchr("!#$%&'*+-.^_`|~", *p)))
			return false;
	for (const unsigned char *p = (const unsigned char *)value; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
	return true;
}

/* Reads the key from FILE: first line, surrounding blanks trimmed. */
static int read_key_file(const char *path, char *key, size_t n, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	if (fd < 0) {
		snprintf(err, errlen, "API key file %s: %s", path, strerror(errno));
		return ENGINE_E_IO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(err, errlen, "API key file %s: not a regular file", path);
		return ENGINE_E_IO;
	}
	if (st.st_mode & 077) {
		close(fd);
		snprintf(err, errlen, "API key file %s: readable by others (chmod 600 %s)", path, path);
		return ENGINE_E_IO;
	}
	ssize_t r;
	size_t got = 0;
	while (got + 1 < n && (r = read(fd, key + got, n - 1 - got)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			snprintf(err, errlen, "API key file %s: %s", path, strerror(errno));
			return ENGINE_E_IO;
		}
		got += (size_t)r;
	}
	close(fd);
	key[got] = '\0';
	key[strcspn(key, "\r\n")] = '\0';
	return 0;
}

/* Trims blanks in place; false when the key is empty or has controls. */
static bool key_clean(char *key)
{
	size_t l = strlen(key);
	while (l > 0 && (key[l - 1] == ' ' || key[l - 1] == '\t'))
		key[--l] = '\0';
	size_t s = strspn(key, " \t");
	memmove(key, key + s, l - s + 1);
	if (!key[0])
		return false;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* ---- opening ---------------------------------------------------------------- */

static int spec_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int spec_fail(char *err, size_t errlen, const char *fmt, ...)
{
	char m[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof m, fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "remote model: %s", m);
	return ENGINE_E_INVAL;
}

/* base_url -> rm->base and rm->host */
static int set_base(struct remote *rm, const char *url, char *err, size_t errlen)
{
	size_t skip;
	if (strncasecmp(url, "http://", 7) == 0)
		skip = 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		skip = 8;
	else
		return spec_fail(err, errlen, "base_url '%.200s' is not an http:// or https:// URL", url);
	for (const unsigned char *p = (const unsigned char *)url; *p; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return spec_fail(err, errlen, "base_url must not contain spaces or controls");
	const char *h = url + skip;
	size_t hl = strcspn(h, "/?#");
	if (hl == 0)
		return spec_fail(err, errlen, "base_url '%.200s' has no host", url);
	/* a user:password@ part stays out of messages */
	const char *at = memchr(h, '@', hl);
	const char *shown = at ? at + 1 : h;
	size_t sl = hl - (size_t)(shown - h);
	if (sl == 0 || sl >= sizeof rm->host)
		return spec_fail(err, errlen, "base_url has an empty or too long host");
	memcpy(rm->host, shown, sl);
	rm->host[sl] = '\0';
	if (strchr(url, '?') || strchr(url, '#'))
		return spec_fail(err, errlen, "base_url must not have a query or fragment");
	size_t l = strlen(url);
	while (l > skip + hl && url[l - 1] == '/')
		l--;
	bool bare = l == skip + hl;
	int w = snprintf(rm->base, sizeof rm->base, "%.*s%s", (int)l, url, bare ? "/v1" : "");
	if (w < 0 || (size_t)w >= sizeof rm->base)
		return spec_fail(err, errlen, "base_url is too long");
	return 0;
}

static int add_header(struct curl_slist **l, const char *line)
{
	struct curl_slist *n = curl_slist_append(*l, line);
	if (!n)
		return ENGINE_E_NOMEM;
	*l = n;
	return 0;
}

static int parse_spec(struct remote *rm, const char *spec, uint32_t n_ctx, char *err, size_t errlen)
{
	if (strlen(spec) > SPEC_MAX)
		return spec_fail(err, errlen, "spec longer than %u bytes", SPEC_MAX);
	cJSON *j = cJSON_Parse(spec);
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		return spec_fail(err, errlen, "the spec after \"remote:\" is not a JSON object");
	}
	int rc = 0;
	char key[KEY_MAX] = "";
	const char *key_env = NULL, *key_file = NULL;
	const cJSON *headers = NULL;
	rm->timeout_s = 120;
	rm->connect_timeout_s = 10;
	rm->extra_sampling = true;
	rm->n_ctx = n_ctx;
	bool have_base = false;
	for (const cJSON *m = j->child; m && rc == 0; m = m->next) {
		const char *k = m->string ? m->string : "";
		if (strcmp(k, "base_url") == 0 || strcmp(k, "model") == 0 || strcmp(k, "api_key_env") == 0 ||
		    strcmp(k, "api_key_file") == 0) {
			if (!cJSON_IsString(m) || !m->valuestring[0]) {
				rc = spec_fail(err, errlen, "'%s' must be a non-empty string", k);
			} else if (k[0] == 'b') {
				rc = set_base(rm, m->valuestring, err, errlen);
				have_base = true;
			} else if (k[0] == 'm') {
				if (strlen(m->valuestring) >= sizeof rm->model)
					rc = spec_fail(err, errlen, "'model' is longer than %zu bytes", sizeof rm->model - 1);
				else
					snprintf(rm->model, sizeof rm->model, "%s", m->valuestring);
			} else if (strcmp(k, "api_key_env") == 0) {
				key_env = m->valuestring;
			} else {
				key_file = m->valuestring;
			}
		} else if (strcmp(k, "timeout_s") == 0 || strcmp(k, "connect_timeout_s") == 0 || strcmp(k, "n_ctx") == 0) {
			double d = cJSON_IsNumber(m) ? m->valuedouble : -1;
			double hi = k[0] == 'n' ? 16777216 : 86400;
			if (!(d >= 1 && d <= hi))
				rc = spec_fail(err, errlen, "'%s' must be a number in [1, %.0f]", k, hi);
			else if (k[0] == 't')
				rm->timeout_s = (long)d;
			else if (k[0] == 'c')
				rm->connect_timeout_s = (long)d;
			else if (!n_ctx)
				rm->n_ctx = (uint32_t)d;
		} else if (strcmp(k, "extra_sampling") == 0) {
			if (!cJSON_IsBool(m))
				rc = spec_fail(err, errlen, "'extra_sampling' must be true or false");
			else
				rm->extra_sampling = cJSON_IsTrue(m);
		} else if (strcmp(k, "headers") == 0) {
			headers = m;
		} else {
			rc = spec_fail(err, errlen, "unknown key '%.100s'", k);
		}
	}
	if (rc == 0 && !have_base)
		rc = spec_fail(err, errlen, "no base_url");
	if (rc == 0 && key_env && key_file)
		rc = spec_fail(err, errlen, "give api_key_env or api_key_file, not both");
	if (rc == 0 && key_env) {
		const char *v = getenv(key_env);
		if (!v || !v[0])
			rc = spec_fail(err, errlen, "API key: environment variable %.100s is not set", key_env);
		else if (strlen(v) >= sizeof key)
			rc = spec_fail(err, errlen, "API key in %.100s is too long", key_env);
		else
			snprintf(key, sizeof key, "%s", v);
	}
	if (rc == 0 && key_file && (rc = read_key_file(key_file, key, sizeof key, err, errlen)) == 0 && !key[0])
		rc = spec_fail(err, errlen, "API key file %.200s is empty", key_file);
	if (rc == 0 && (key_env || key_file) && !key_clean(key))
		rc = spec_fail(err, errlen, "the API key is empty or contains control characters");

	/* headers: the caller's, then ours */
	size_t nh = 0;
	for (const cJSON *h = headers ? headers->child : NULL; h && rc == 0; h = h->next) {
		char line[4300];
		if (!cJSON_IsObject(headers) || !cJSON_IsString(h) || !h->string || !header_ok(h->string, h->valuestring)) {
			rc = spec_fail(err, errlen, "'headers' must map header names to printable strings");
		} else if (++nh > HEADERS_MAX) {
			rc = spec_fail(err, errlen, "more than %d headers", HEADERS_MAX);
		} else {
			snprintf(line, sizeof line, "%s: %s", h->string, h->valuestring);
			if (add_header(&rm->get_hdrs, line) || add_header(&rm->post_hdrs, line))
				rc = ENGINE_E_NOMEM;
			memset(line, 0, sizeof line);
		}
	}
	if (rc == 0 && headers && !cJSON_IsObject(headers))
		rc = spec_fail(err, errlen, "'headers' must be an object");
	if (rc == 0 && key[0]) {
		char line[KEY_MAX + 32];
		snprintf(line, sizeof line, "Authorization: Bearer %s", key);
		if (add_header(&rm->get_hdrs, line) || add_header(&rm->post_hdrs, line))
			rc = ENGINE_E_NOMEM;
		volatile char *v = line;
		for (size_t i = 0; i < sizeof line; i++)
			v[i] = 0;
	}
	volatile char *vk = key;
	for (size_t i = 0; i < sizeof key; i++)
		vk[i] = 0;
	if (rc == 0 && (add_header(&rm->get_hdrs, "Accept: application/json") ||
			add_header(&rm->post_hdrs, "Content-Type: application/json") ||
			add_header(&rm->post_hdrs, "Accept: text/event-stream, application/json") ||
			add_header(&rm->post_hdrs, "Expect:")))
		rc = ENGINE_E_NOMEM;
	cJSON_Delete(j);
	if (rc == ENGINE_E_NOMEM)
		snprintf(err, errlen, "remote model: out of memory");
	return rc;
}

struct remote *remote_open(const char *spec, uint32_t n_ctx, char *err, size_t errlen)
{
	struct remote *rm = calloc(1, sizeof *rm);
	if (!rm) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (parse_spec(rm, spec, n_ctx, err, errlen) != 0) {
		remote_free(rm);
		return NULL;
	}
	/* thread-safe since libcurl 7.84; reference counted */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "remote model: cannot initialise libcurl");
		remote_free(rm);
		return NULL;
	}
	rm->global_init = true;
	rm->easy = curl_easy_init();
	rm->multi = curl_multi_init();
	if (!rm->easy || !rm->multi) {
		snprintf(err, errlen, "remote model: out of memory for libcurl");
		remote_free(rm);
		return NULL;
	}
	return rm;
}

void remote_free(struct remote *rm)
{
	if (!rm)
		return;
	if (rm->easy)
		curl_easy_cleanup(rm->easy);
	if (rm->multi)
		curl_multi_cleanup(rm->multi);
	wipe_slist(rm->get_hdrs);
	wipe_slist(rm->post_hdrs);
	if (rm->global_init)
		curl_global_cleanup();
	free(rm);
}

/* ---- one transfer ----------------------------------------------------------- */

struct xfer {
	struct remote *rm;
	bool checked, sse;
	long status;
	char *body;               /* a non-SSE answer (JSON, or an error page) */
	size_t body_len, body_cap;
	bool body_full;
	char *line;               /* SSE: the line being read */
	size_t line_len, line_cap;
	char *data;               /* SSE: the event's data */
	size_t data_len, data_cap;
	bool have_data, error_field;
	bool done, finished;      /* "[DONE]" seen; a finish_reason seen */
	double t_done;
	int fail;                 /* a status: stop and report msg */
	bool stalled;             /* nothing for timeout_s */
	double t_byte;            /* the last byte, or the start */
	char msg[640];
	uint64_t bytes;
	/* the reply */
	bool raw;
	remote_text_fn on_text;
	void *ctx;
	unsigned char hold[4];    /* start of a UTF-8 character split across pieces */
	size_t hold_len;
	bool hold_reasoning;      /* ... of the reasoning, else of the answer */
	uint32_t pieces;
	double t_start, t_first, t_last;
	enum engine_stop_reason stop;
	double usage_prompt, usage_completion;  /* < 0: not given */
	double tm_prompt_n, tm_cache_n, tm_prompt_ms, tm_prompt_tps, tm_pred_n, tm_pred_ms, tm_pred_tps;
	bool have_timings;
};

static void xfer_fail(struct xfer *x, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void xfer_fail(struct xfer *x, int code, const char *fmt, ...)
{
	if (x->fail)
		return;
	char m[360];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof m, fmt, ap);
	va_end(ap);
	x->fail = code;
	snprintf(x->msg, sizeof x->msg, "remote %s: %s", x->rm->host, m);
}

static bool grow(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return true;
	size_t nc = *cap ? *cap : 1024;
	while (nc < need)
		nc *= 2;
	char *nb = realloc(*buf, nc);
	if (!nb)
		return false;
	*buf = nb;
	*cap = nc;
	return true;
}

/* Length of the valid UTF-8 sequence at S (N bytes left): 1..4, 0 when
 * invalid, -1 when it may be valid but is cut short. */
static int utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	int len;
	uint32_t min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, min = 0x10000;
	else
		return 0;
	uint32_t cp = c & (0x3f >> (len - 1));
	for (int i = 1; i < len; i++) {
		if ((size_t)i >= n)
			return -1;
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Delivers a piece of reply text (of the reasoning or the answer) through
 * the UTF-8 filter. */
static void emit(struct xfer *x, const char *s, size_t n, bool final, bool reasoning)
{
	if (x->hold_len && x->hold_reasoning != reasoning)
		emit(x, "", 0, true, x->hold_reasoning); /* a part cut mid-character ends */
	x->hold_reasoning = reasoning;
	size_t total = x->hold_len + n;
	if (total == 0)
		return;
	unsigned char *in = malloc(total), *out = malloc(total * 3 + 1);
	if (!in || !out) {
		free(in);
		free(out);
		xfer_fail(x, ENGINE_E_NOMEM, "out of memory for the reply");
		return;
	}
	memcpy(in, x->hold, x->hold_len);
	if (n)
		memcpy(in + x->hold_len, s, n);
	x->hold_len = 0;
	size_t o = 0;
	for (size_t i = 0; i < total;) {
		int l = utf8_len(in + i, total - i);
		if (l < 0 && !final) {
			x->hold_len = total - i;
			memcpy(x->hold, in + i, x->hold_len);
			break;
		}
		if (l <= 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(out + o, in + i, (size_t)l);
			o += (size_t)l;
			i += (size_t)l;
		}
	}
	if (o > 0) {
		double t = now_ms();
		if (x->pieces == 0)
			x->t_first = t;
		x->t_last = t;
		x->pieces++;
		x->on_text(x->ctx, (const char *)out, o, reasoning);
	}
	free(in);
	free(out);
}

static double num_or(const cJSON *o, const char *key, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* The message of an error answer: {"error": {"message": ...}},
 * {"error": "..."}, {"detail": "..."} (FastAPI), {"message": ...}. */
static bool error_message(const cJSON *j, char *out, size_t n)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	const cJSON *m = NULL;
	if (cJSON_IsObject(e))
		m = cJSON_GetObjectItemCaseSensitive(e, "message");
	else if (cJSON_IsString(e))
		m = e;
	if (!m || !cJSON_IsString(m))
		m = cJSON_GetObjectItemCaseSensitive(j, "detail");
	if (!m || !cJSON_IsString(m)) {
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "detail");
		/* FastAPI validation errors: a list of {"msg": ...} */
		if (cJSON_IsArray(d) && cJSON_IsObject(d->child))
			m = cJSON_GetObjectItemCaseSensitive(d->child, "msg");
	}
	if (!m || !cJSON_IsString(m))
		m = cJSON_GetObjectItemCaseSensitive(j, "message");
	if (!cJSON_IsString(m) || !m->valuestring[0]) {
		if (e && !cJSON_IsNull(e)) {
			snprintf(out, n, "an error without a message");
			return true;
		}
		return false;
	}
	clean_copy(out, n, m->valuestring, strlen(m->valuestring), 240);
	return true;
}

/* One parsed chunk (streamed) or answer (not streamed). */
static void take_chunk(struct xfer *x, const cJSON *j, bool streamed)
{
	char m[256];
	if (!cJSON_IsObject(j)) {
		xfer_fail(x, ENGINE_E_SERVER, "malformed event from the server (not a JSON object)");
		return;
	}
	if (error_message(j, m, sizeof m) && cJSON_GetObjectItemCaseSensitive(j, "choices") == NULL) {
		xfer_fail(x, ENGINE_E_SERVER, "the server reported an error: %s", m);
		return;
	}
	const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choices");
	if (ch && !cJSON_IsArray(ch)) {
		xfer_fail(x, ENGINE_E_SERVER, "malformed event from the server ('choices' is not a list)");
		return;
	}
	const cJSON *c0 = ch ? ch->child : NULL;
	if (c0) {
		if (!cJSON_IsObject(c0)) {
			xfer_fail(x, ENGINE_E_SERVER, "malformed event from the server (a choice is not an object)");
			return;
		}
		const cJSON *text, *think = NULL;
		if (x->raw) {
			text = cJSON_GetObjectItemCaseSensitive(c0, "text");
		} else {
			const cJSON *d = cJSON_GetObjectItemCaseSensitive(c0, streamed ? "delta" : "message");
			if (d && !cJSON_IsObject(d) && !cJSON_IsNull(d)) {
				xfer_fail(x, ENGINE_E_SERVER, "malformed event from the server ('%s' is not an object)",
					  streamed ? "delta" : "message");
				return;
			}
			text = cJSON_GetObjectItemCaseSensitive(d, "content");
			think = cJSON_GetObjectItemCaseSensitive(d, "reasoning_content");
			if (!cJSON_IsString(think))
				think = cJSON_GetObjectItemCaseSensitive(d, "reasoning");
		}
		if (cJSON_IsString(think) && think->valuestring[0])
			emit(x, think->valuestring, strlen(think->valuestring), false, true);
		if (text && !cJSON_IsString(text) && !cJSON_IsNull(text)) {
			xfer_fail(x, ENGINE_E_SERVER, "malformed event from the server (the text is not a string)");
			return;
		}
		if (cJSON_IsString(text) && text->valuestring[0])
			emit(x, text->valuestring, strlen(text->valuestring), false, false);
		const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
		if (cJSON_IsString(fr)) {
			x->finished = true;
			x->stop = strcmp(fr->valuestring, "length") == 0 ? ENGINE_STOP_LENGTH : ENGINE_STOP_EOG;
		}
	}
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
	if (cJSON_IsObject(u)) {
		x->usage_prompt = num_or(u, "prompt_tokens", x->usage_prompt);
		x->usage_completion = num_or(u, "completion_tokens", x->usage_completion);
	}
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "timings");
	if (cJSON_IsObject(t)) {
		x->have_timings = true;
		x->tm_prompt_n = num_or(t, "prompt_n", -1);
		x->tm_cache_n = num_or(t, "cache_n", -1);
		x->tm_prompt_ms = num_or(t, "prompt_ms", -1);
		x->tm_prompt_tps = num_or(t, "prompt_per_second", -1);
		x->tm_pred_n = num_or(t, "predicted_n", -1);
		x->tm_pred_ms = num_or(t, "predicted_ms", -1);
		x->tm_pred_tps = num_or(t, "predicted_per_second", -1);
	}
}

static void dispatch_event(struct xfer *x)
{
	const char *d = x->data ? x->data : "";
	size_t n = x->data_len;
	bool err_field = x->error_field;
	x->data_len = 0;
	x->have_data = false;
	x->error_field = false;
	if (!err_field && n == 6 && memcmp(d, "[DONE]", 6) == 0) {
		x->done = true;
		x->t_done = now_ms();
		return;
	}
	cJSON *j = cJSON_ParseWithLength(d, n);
	if (!j) {
		char shown[100];
		clean_copy(shown, sizeof shown, d, n, 60);
		xfer_fail(x, ENGINE_E_SERVER, "malformed event from the server (not JSON: '%s')", shown);
		return;
	}
	if (err_field) {
		char m[256];
		if (!error_message(j, m, sizeof m))
			clean_copy(m, sizeof m, d, n, 200);
		xfer_fail(x, ENGINE_E_SERVER, "the server reported an error: %s", m);
	} else {
		take_chunk(x, j, true);
	}
	cJSON_Delete(j);
}

static void sse_line(struct xfer *x, char *s, size_t n)
{
	if (n > 0 && s[n - 1] == '\r')
		n--;
	if (n == 0) {
		if (x->have_data)
			dispatch_event(x);
		return;
	}
	if (s[0] == ':')
		return; /* a comment: keep-alive */
	size_t fl = 0;
	while (fl < n && s[fl] != ':')
		fl++;
	const char *v = s + fl;
	size_t vl = 0;
	if (fl < n) {
		v++;
		vl = n - fl - 1;
		if (vl > 0 && *v == ' ')
			v++, vl--;
	}
	bool is_data = fl == 4 && memcmp(s, "data", 4) == 0;
	bool is_error = fl == 5 && memcmp(s, "error", 5) == 0;
	if (!is_data && !is_error)
		return; /* event:, id:, retry: */
	if (is_error)
		x->error_field = true;
	if (x->data_len + vl + 2 > LINE_MAX_BYTES) {
		xfer_fail(x, ENGINE_E_SERVER, "malformed event from the server (larger than %u bytes)", LINE_MAX_BYTES);
		return;
	}
	if (!grow(&x->data, &x->data_cap, x->data_len + vl + 2)) {
		xfer_fail(x, ENGINE_E_NOMEM, "out of memory");
		return;
	}
	if (x->have_data)
		x->data[x->data_len++] = '\n';
	memcpy(x->data + x->data_len, v, vl);
	x->data_len += vl;
	x->data[x->data_len] = '\0';
	x->have_data = true;
}

static void sse_feed(struct xfer *x, const char *p, size_t n)
{
	while (n > 0 && !x->fail && !x->done) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;
		if (x->line_len + take + 1 > LINE_MAX_BYTES) {
			xfer_fail(x, ENGINE_E_SERVER, "malformed stream from the server (a line over %u bytes)",
				  LINE_MAX_BYTES);
			return;
		}
		if (!grow(&x->line, &x->line_cap, x->line_len + take + 1)) {
			xfer_fail(x, ENGINE_E_NOMEM, "out of memory");
			return;
		}
		memcpy(x->line + x->line_len, p, take);
		x->line_len += take;
		p += take;
		n -= take;
		if (nl) {
			p++;
			n--;
			size_t l = x->line_len;
			x->line_len = 0;
			sse_line(x, x->line, l);
		}
	}
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	x->bytes += n;
	x->t_byte = now_ms();
	if (!x->checked) {
		x->checked = true;
		curl_easy_getinfo(x->rm->easy, CURLINFO_RESPONSE_CODE, &x->status);
		char *ct = NULL;
		curl_easy_getinfo(x->rm->easy, CURLINFO_CONTENT_TYPE, &ct);
		x->sse = x->status >= 200 && x->status < 300 && ct && strncasecmp(ct, "text/event-stream", 17) == 0;
	}
	if (x->sse) {
		sse_feed(x, p, n);
		return x->fail ? 0 : n;
	}
	/* a whole answer: JSON, or an error page (kept short) */
	size_t cap = x->status >= 400 ? ERRBODY_MAX : LINE_MAX_BYTES;
	size_t take = n;
	if (x->body_len + take > cap) {
		take = cap - x->body_len;
		x->body_full = true;
		if (x->status < 400) {
			xfer_fail(x, ENGINE_E_SERVER, "answer larger than %u bytes", LINE_MAX_BYTES);
			return 0;
		}
	}
	if (!grow(&x->body, &x->body_cap, x->body_len + take + 1)) {
		xfer_fail(x, ENGINE_E_NOMEM, "out of memory");
		return 0;
	}
	memcpy(x->body + x->body_len, p, take);
	x->body_len += take;
	x->body[x->body_len] = '\0';
	return n;
}

static void xfer_free(struct xfer *x)
{
	free(x->body);
	free(x->line);
	free(x->data);
}

/* Common options; the caller adds the method and body. */
static void setup(struct remote *rm, struct xfer *x, const char *url, struct curl_slist *hdrs)
{
	CURL *h = rm->easy;
	curl_easy_reset(h); /* keeps the live connections */
	rm->curl_err[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, rm->curl_err);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, rm->connect_timeout_s);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(h, CURLOPT_USERAGENT, "ttychat");
}

/* Runs the prepared transfer to its end, a cancel, or X failing.  The
 * libcurl result is in *RESULT (CURLE_OK when it was stopped early). */
static void perform(struct remote *rm, const struct remote_cancel *c, struct xfer *x, bool *cancelled,
		    CURLcode *result)
{
	*cancelled = false;
	*result = CURLE_OK;
	if (c && c->wake_fd >= 0)
		drain(c->wake_fd);
	if (curl_multi_add_handle(rm->multi, rm->easy) != CURLM_OK) {
		*result = CURLE_OUT_OF_MEMORY;
		return;
	}
	const double stall_ms = (double)rm->timeout_s * 1e3;
	x->t_byte = now_ms();
	for (;;) {
		if (is_cancelled(c)) {
			*cancelled = true;
			break;
		}
		int running = 0;
		if (curl_multi_perform(rm->multi, &running) != CURLM_OK) {
			*result = CURLE_OUT_OF_MEMORY;
			break;
		}
		bool ended = false;
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(rm->multi, &left)))
			if (m->msg == CURLMSG_DONE) {
				*result = m->data.result;
				ended = true;
			}
		if (ended || x->fail)
			break;
		/* "[DONE]" is the end even if the server keeps the body open */
		if (x->done && now_ms() - x->t_done > 500)
			break;
		double quiet = now_ms() - x->t_byte;
		if (quiet >= stall_ms) {
			x->stalled = true;
			break;
		}
		struct curl_waitfd w = {.fd = c ? c->wake_fd : -1, .events = CURL_WAIT_POLLIN};
		unsigned nw = c && c->wake_fd >= 0 ? 1 : 0;
		int wait = x->done ? 100 : (int)(stall_ms - quiet) + 1;
		curl_multi_poll(rm->multi, nw ? &w : NULL, nw, wait < 1000 ? wait : 1000, NULL);
		if (nw && w.revents)
			drain(c->wake_fd);
	}
	curl_multi_remove_handle(rm->multi, rm->easy);
}

/* A libcurl failure in words. */
static void transfer_error(struct xfer *x, CURLcode rc, char *err, size_t errlen)
{
	struct remote *rm = x->rm;
	const char *detail = rm->curl_err[0] ? rm->curl_err : curl_easy_strerror(rc);
	char kept[64] = "";
	if (x->pieces)
		snprintf(kept, sizeof kept, " (partial reply kept)");
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
		snprintf(err, errlen, "remote %s: cannot resolve the host name (DNS): %s", rm->host, detail);
		break;
	case CURLE_COULDNT_RESOLVE_PROXY:
		snprintf(err, errlen, "remote %s: cannot resolve the proxy's host name: %s", rm->host, detail);
		break;
	case CURLE_COULDNT_CONNECT:
		snprintf(err, errlen, "remote %s: cannot connect (is the server running?): %s", rm->host, detail);
		break;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_USE_SSL_FAILED:
		snprintf(err, errlen, "remote %s: TLS error: %s", rm->host, detail);
		break;
	case CURLE_OPERATION_TIMEDOUT:
		if (x->bytes == 0 && x->status == 0)
			snprintf(err, errlen, "remote %s: no answer within %ld s (timeout)", rm->host,
				 strstr(detail, "onnect") ? rm->connect_timeout_s : rm->timeout_s);
		else
			snprintf(err, errlen, "remote %s: the stream stalled: nothing received for %ld s%s", rm->host,
				 rm->timeout_s, kept);
		break;
	case CURLE_GOT_NOTHING:
		snprintf(err, errlen, "remote %s: the server closed the connection without an answer", rm->host);
		break;
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		if (x->checked)
			snprintf(err, errlen, "remote %s: the connection was cut mid-reply%s: %s", rm->host, kept, detail);
		else
			snprintf(err, errlen, "remote %s: connection lost: %s", rm->host, detail);
		break;
	default:
		snprintf(err, errlen, "remote %s: %s%s", rm->host, detail, kept);
		break;
	}
}

/* An HTTP error answer in words, with the server's message. */
static void http_error(struct xfer *x, char *err, size_t errlen)
{
	char m[256] = "";
	cJSON *j = x->body ? cJSON_Parse(x->body) : NULL;
	if (!j || !error_message(j, m, sizeof m)) {
		/* a plain-text or HTML error page: its first line */
		const char *b = x->body ? x->body : "";
		b += strspn(b, " \t\r\n");
		clean_copy(m, sizeof m, b, strcspn(b, "\r\n"), 160);
	}
	cJSON_Delete(j);
	const char *what = x->status == 401 || x->status == 403 ? " (wrong or missing API key?)"
			   : x->status == 404 ? " (wrong base_url or model?)" : "";
	snprintf(err, errlen, "remote %s: HTTP %ld%s%s%s", x->rm->host, x->status, what, m[0] ? ": " : "", m);
}

static int xfer_outcome(struct xfer *x, bool cancelled, CURLcode rc, char *err, size_t errlen)
{
	if (cancelled)
		return ENGINE_E_CANCELLED;
	if (x->fail) {
		snprintf(err, errlen, "%s", x->msg);
		return x->fail;
	}
	if (x->stalled)
		rc = CURLE_OPERATION_TIMEDOUT;
	if (x->status >= 400 && (rc == CURLE_OK || x->body_len > 0)) {
		http_error(x, err, errlen);
		return ENGINE_E_SERVER;
	}
	if (rc != CURLE_OK) {
		transfer_error(x, rc, err, errlen);
		return ENGINE_E_NETWORK;
	}
	if (x->status >= 300 && x->status < 400) {
		snprintf(err, errlen, "remote %s: HTTP %ld: redirected (give the final base_url)", x->rm->host, x->status);
		return ENGINE_E_SERVER;
	}
	return 0;
}

/* ---- /models ---------------------------------------------------------------- */

static void fill_from_model(struct engine_model_info *info, const cJSON *m, struct remote *rm)
{
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(m, "meta");
	double ctx = num_or(m, "max_model_len", -1);    /* vLLM, SGLang */
	if (ctx < 0)
		ctx = num_or(m, "context_length", -1);
	if (ctx < 0)
		ctx = num_or(meta, "n_ctx", -1);
	double train = num_or(meta, "n_ctx_train", -1); /* llama.cpp */
	if (ctx < 0)
		ctx = train;
	if (train > 0 && train < 1e9)
		info->n_ctx_train = (uint32_t)train;
	if (!rm->n_ctx && ctx > 0 && ctx < 1e9)
		rm->n_ctx = (uint32_t)ctx;
	double np = num_or(meta, "n_params", -1);
	if (np > 0 && np < 1e16)
		info->n_params = (uint64_t)np;
	double nv = num_or(meta, "n_vocab", -1);
	if (nv > 0 && nv < 1e9)
		info->n_vocab = (uint32_t)nv;
	double sz = num_or(meta, "size", -1);
	if (sz > 0 && sz < 1e16)
		info->file_bytes = (uint64_t)sz;
	const cJSON *q = cJSON_GetObjectItemCaseSensitive(meta, "quant");
	if (cJSON_IsString(q))
		clean_copy(info->quant, sizeof info->quant, q->valuestring, strlen(q->valuestring), 31);
}

int remote_probe(struct remote *rm, const struct remote_cancel *c, struct engine_model_info *info, char *err,
		 size_t errlen)
{
	memset(info, 0, sizeof *info);
	char url[2200];
	snprintf(url, sizeof url, "%s/models", rm->base);
	struct xfer x = {.rm = rm};
	bool cancelled;
	CURLcode rc;
	int st;
	/* a server that is still loading its model answers 503: wait for it
	 * (up to timeout_s) */
	for (const double t0 = now_ms();;) {
		setup(rm, &x, url, rm->get_hdrs);
		curl_easy_setopt(rm->easy, CURLOPT_HTTPGET, 1L);
		perform(rm, c, &x, &cancelled, &rc);
		st = xfer_outcome(&x, cancelled, rc, err, errlen);
		if (st != ENGINE_E_SERVER || x.status != 503 || now_ms() - t0 > (double)rm->timeout_s * 1e3)
			break;
		xfer_free(&x);
		x = (struct xfer){.rm = rm};
		struct pollfd p = {.fd = c ? c->wake_fd : -1, .events = POLLIN};
		poll(&p, 1, 500);
		if (is_cancelled(c)) {
			cancelled = true;
			st = ENGINE_E_CANCELLED;
			break;
		}
	}
	if (st == ENGINE_E_CANCELLED)
		snprintf(err, errlen, "remote %s: loading cancelled", rm->host);
	if (st) {
		/* a server without /models still serves a named model */
		if (st == ENGINE_E_SERVER && x.status == 404 && rm->model[0] && !x.fail)
			st = 0;
		else {
			xfer_free(&x);
			return st;
		}
	}
	cJSON *j = x.status == 404 ? NULL : cJSON_Parse(x.body ? x.body : "");
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
	if (x.status != 404 && !cJSON_IsArray(data)) {
		snprintf(err, errlen, "remote %s: GET %s/models: not an OpenAI model list", rm->host, rm->base);
		cJSON_Delete(j);
		xfer_free(&x);
		return ENGINE_E_SERVER;
	}
	const cJSON *found = NULL;
	char names[200] = "";
	size_t count = 0;
	for (const cJSON *m = data ? data->child : NULL; m; m = m->next) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
		if (!cJSON_IsString(id))
			continue;
		count++;
		if (!found && (!rm->model[0] || strcmp(id->valuestring, rm->model) == 0))
			found = m;
		size_t l = strlen(names);
		if (l < sizeof names - 1)
			snprintf(names + l, sizeof names - l, "%s%.60s", l ? ", " : "", id->valuestring);
	}
	if (x.status != 404 && !found) {
		if (count == 0)
			snprintf(err, errlen, "remote %s: the server lists no models", rm->host);
		else
			snprintf(err, errlen, "remote %s: no model '%.100s' on the server (it serves: %s)", rm->host,
				 rm->model, names);
		cJSON_Delete(j);
		xfer_free(&x);
		return ENGINE_E_NOMODEL;
	}
	if (found) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(found, "id");
		if (!rm->model[0])
			snprintf(rm->model, sizeof rm->model, "%s", id->valuestring);
		fill_from_model(info, found, rm);
	}
	cJSON_Delete(j);
	xfer_free(&x);
	snprintf(info->arch, sizeof info->arch, "remote");
	clean_copy(info->name, sizeof info->name, rm->model, strlen(rm->model), sizeof info->name - 1);
	if (!info->quant[0])
		snprintf(info->quant, sizeof info->quant, "server-side");
	snprintf(info->template_family, sizeof info->template_family, "server");
	snprintf(info->backend, sizeof info->backend, "remote: %.60s", rm->host);
	info->n_ctx = rm->n_ctx;
	return 0;
}

/* ---- a reply ---------------------------------------------------------------- */

static char *request_body(struct remote *rm, const struct engine_msg *msgs, size_t n, const struct engine_sampling *s,
			  const struct engine_gen_opts *g, char *const *stop)
{
	cJSON *j = cJSON_CreateObject();
	if (!j)
		return NULL;
	cJSON_AddStringToObject(j, "model", rm->model);
	if (g->raw) {
		size_t total = 0;
		for (size_t i = 0; i < n; i++)
			total += strlen(msgs[i].content);
		char *p = malloc(total + 1);
		if (!p) {
			cJSON_Delete(j);
			return NULL;
		}
		size_t o = 0;
		for (size_t i = 0; i < n; i++) {
			size_t l = strlen(msgs[i].content);
			memcpy(p + o, msgs[i].content, l);
			o += l;
		}
		p[o] = '\0';
		cJSON_AddStringToObject(j, "prompt", p);
		free(p);
	} else {
		cJSON *arr = cJSON_AddArrayToObject(j, "messages");
		for (size_t i = 0; arr && i < n; i++) {
			cJSON *m = cJSON_CreateObject();
			cJSON_AddStringToObject(m, "role", msgs[i].role);
			cJSON_AddStringToObject(m, "content", msgs[i].content);
			cJSON_AddItemToArray(arr, m);
		}
	}
	/* thinking: the template variables (enable_thinking, reasoning_effort
	 * and the caller's) as chat_template_kwargs, the effort on its own too */
	cJSON *kw = g->template_vars ? cJSON_Parse(g->template_vars) : NULL;
	if (cJSON_IsObject(kw) && kw->child && !g->raw)
		cJSON_AddItemToObject(j, "chat_template_kwargs", kw);
	else
		cJSON_Delete(kw);
	if (g->reasoning_effort && !g->raw)
		cJSON_AddStringToObject(j, "reasoning_effort", g->reasoning_effort);
	cJSON_AddBoolToObject(j, "stream", 1);
	cJSON *so = cJSON_AddObjectToObject(j, "stream_options");
	cJSON_AddBoolToObject(so, "include_usage", 1);
	if (g->max_tokens > 0)
		cJSON_AddNumberToObject(j, "max_tokens", g->max_tokens);
	cJSON_AddNumberToObject(j, "temperature", s->temperature > 0 ? s->temperature : 0);
	if (s->top_p > 0 && s->top_p < 1)
		cJSON_AddNumberToObject(j, "top_p", s->top_p);
	if (s->presence_penalty != 0)
		cJSON_AddNumberToObject(j, "presence_penalty", s->presence_penalty);
	if (s->frequency_penalty != 0)
		cJSON_AddNumberToObject(j, "frequency_penalty", s->frequency_penalty);
	/* JSON numbers are doubles: a seed above 2^53 would be rounded */
	cJSON_AddNumberToObject(j, "seed", (double)(s->seed & ((1ull << 53) - 1)));
	if (rm->extra_sampling) {
		if (s->top_k > 0)
			cJSON_AddNumberToObject(j, "top_k", s->top_k);
		if (s->min_p > 0)
			cJSON_AddNumberToObject(j, "min_p", s->min_p);
		if (s->repeat_penalty > 0 && s->repeat_penalty != 1)
			cJSON_AddNumberToObject(j, "repeat_penalty", s->repeat_penalty);
	}
	if (stop && stop[0]) {
		cJSON *arr = cJSON_AddArrayToObject(j, "stop");
		for (size_t i = 0; arr && stop[i]; i++)
			cJSON_AddItemToArray(arr, cJSON_CreateString(stop[i]));
	}
	char *out = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	return out;
}

static void fill_stats(const struct xfer *x, const struct remote *rm, struct engine_stats *st)
{
	memset(st, 0, sizeof *st);
	double end = now_ms();
	st->ttft_ms = (x->pieces ? x->t_first : end) - x->t_start;
	uint32_t gen = x->usage_completion >= 0 && x->usage_completion < 1e9 ? (uint32_t)x->usage_completion
									      : x->pieces;
	st->gen_tokens = gen;
	if (x->usage_prompt >= 0 && x->usage_prompt < 1e9)
		st->prompt_tokens = (uint32_t)x->usage_prompt;
	st->decode_ms = x->pieces ? x->t_last - x->t_first : 0;
	st->prefill_ms = st->ttft_ms;
	if (x->have_timings) {
		if (x->tm_prompt_n >= 0 && x->tm_prompt_n < 1e9)
			st->prompt_computed = (uint32_t)x->tm_prompt_n;
		if (x->tm_cache_n >= 0 && x->tm_cache_n < 1e9)
			st->prompt_reused = (uint32_t)x->tm_cache_n;
		if (!st->prompt_tokens)
			st->prompt_tokens = st->prompt_computed + st->prompt_reused;
		if (x->tm_prompt_ms >= 0)
			st->prefill_ms = x->tm_prompt_ms;
		if (x->tm_pred_ms >= 0)
			st->decode_ms = x->tm_pred_ms;
		if (x->tm_prompt_tps > 0)
			st->prefill_tps = x->tm_prompt_tps;
		if (x->tm_pred_tps > 0)
			st->decode_tps = x->tm_pred_tps;
	} else {
		st->prompt_computed = st->prompt_tokens;
	}
	/* measured here: tokens after the first over the time they took */
	if (st->decode_tps <= 0 && gen > 1 && x->pieces > 1 && x->t_last > x->t_first)
		st->decode_tps = (gen - 1) / ((x->t_last - x->t_first) / 1e3);
	st->ctx_used = st->prompt_tokens + gen;
	st->ctx_size = rm->n_ctx;
}

int remote_chat(struct remote *rm, const struct remote_cancel *c, const struct engine_msg *msgs, size_t n,
		const struct engine_sampling *s, const struct engine_gen_opts *g, char *const *stop,
		remote_text_fn on_text, void *ctx, struct engine_stats *st, enum engine_stop_reason *stop_out,
		char *err, size_t errlen)
{
	struct xfer x = {.rm = rm, .raw = g->raw, .on_text = on_text, .ctx = ctx, .stop = ENGINE_STOP_EOG,
			 .usage_prompt = -1, .usage_completion = -1, .t_start = now_ms()};
	*stop_out = ENGINE_STOP_EOG;
	memset(st, 0, sizeof *st);
	char *body = request_body(rm, msgs, n, s, g, stop);
	if (!body) {
		snprintf(err, errlen, "out of memory for the request");
		return ENGINE_E_NOMEM;
	}
	char url[2200];
	snprintf(url, sizeof url, "%s/%s", rm->base, g->raw ? "completions" : "chat/completions");
	setup(rm, &x, url, rm->post_hdrs);
	curl_easy_setopt(rm->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(rm->easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(rm->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	bool cancelled;
	CURLcode rc;
	perform(rm, c, &x, &cancelled, &rc);
	free(body);
	int result = xfer_outcome(&x, cancelled, rc, err, errlen);
	if (result == 0 && !x.sse) {
		/* a plain JSON answer to a streaming request */
		cJSON *j = cJSON_Parse(x.body ? x.body : "");
		if (!j) {
			snprintf(err, errlen, "remote %s: malformed answer from the server (neither an event stream nor JSON)",
				 rm->host);
			result = ENGINE_E_SERVER;
		} else {
			take_chunk(&x, j, false);
			cJSON_Delete(j);
			if (x.fail) {
				snprintf(err, errlen, "%s", x.msg);
				result = x.fail;
			}
		}
	} else if (result == 0 && !x.done && !x.finished) {
		snprintf(err, errlen, "remote %s: the stream ended mid-reply (no end mark)%s", rm->host,
			 x.pieces ? "; partial reply kept" : "");
		result = ENGINE_E_NETWORK;
	}
	emit(&x, NULL, 0, true, x.hold_reasoning);
	fill_stats(&x, rm, st);
	if (result == ENGINE_E_CANCELLED) {
		*stop_out = ENGINE_STOP_CANCELLED;
		result = 0;
	} else if (result == 0) {
		*stop_out = x.stop;
	}
	xfer_free(&x);
	return result;
}
