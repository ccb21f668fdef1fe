/*
 * hub.c - a Hugging Face hub's references, listing, quant choice, token
 * and the models.d entry of a pull (see hub.h).
 *
 * The listing is the Hub API's JSON array (type, path, size, lfs.oid),
 * read through pull_fetch() and treated as hostile: a path with an empty,
 * "." or ".." component, a leading '/', or a byte outside printable ASCII
 * is dropped, sizes must be integers below 2^53 and an LFS oid 64 hex
 * digits.  A file's quant is read from its name: the last '-' or '.'
 * separated word that looks like one (Q4_K_M, IQ4_XS, F16, MXFP4 ...),
 * with Unsloth's "UD-" kept in front; failing that, the name of its
 * folder.  "Closest" is by a table of nominal bits per weight (llama.cpp's
 * figures, rounded), so that a missing Q4_K_M falls back to Q4_K_S or
 * IQ4_XS before Q8_0.  The token lives in sodium_malloc'd memory.
 */
#include "config.h"

#include "hub.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "pull.h"

#define DEFAULT_ENDPOINT "https://huggingface.co"
#define DEFAULT_QUANT "Q4_K_M"
#define LISTING_MAX (32u << 20) /* bytes of one page of the listing */
#define LISTING_PAGES 200
#define LISTING_FILES 200000

/* ---- references ------------------------------------------------------------ */

/* The Hub's rule for ORG and REPO: [A-Za-z0-9._-], no "--" or "..", not
 * starting or ending with '-' or '.', at most 96 characters. */
static bool valid_id(const char *s, size_t n)
{
	if (n == 0 || n > HUB_ID_MAX || s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '.' && c != '_' && c != '-')
			return false;
		if (i > 0 && (c == '-' || c == '.') && s[i - 1] == c)
			return false;
	}
	return true;
}

bool hub_ref_parse(const char *spec, bool bare_ok, struct hub_ref *r)
{
	static const char *const prefixes[] = {"hf:", "hf.co/", "huggingface.co/"};
	memset(r, 0, sizeof *r);
	if (!spec)
		return false;
	bool prefixed = false;
	for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
		size_t l = strlen(prefixes[i]);
		if (strncasecmp(spec, prefixes[i], l) == 0) {
			spec += l;
			prefixed = true;
			break;
		}
	}
	const char *slash = strchr(spec, '/');
	if (!slash)
		return false;
	const char *repo = slash + 1;
	size_t rl = strcspn(repo, ":");
	const char *quant = repo[rl] == ':' ? repo + rl + 1 : NULL;
	if (!valid_id(spec, (size_t)(slash - spec)) || !valid_id(repo, rl))
		return false;
	if (quant) {
		size_t ql = strlen(quant);
		if (ql == 0 || ql >= sizeof r->quant || strspn(quant, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
								   "0123456789._-") != ql)
			return false;
		memcpy(r->quant, quant, ql + 1);
	} else if (!prefixed && !bare_ok) {
		return false;
	}
	memcpy(r->org, spec, (size_t)(slash - spec));
	memcpy(r->repo, repo, rl);
	return true;
}

int hub_ref_name(const struct hub_ref *r, char *buf, size_t n)
{
	int w = r->quant[0] ? snprintf(buf, n, "%s--%s--%s", r->org, r->repo, r->quant)
			    : snprintf(buf, n, "%s--%s", r->org, r->repo);
	if (w < 0 || (size_t)w >= n || w > 100)
		return -1;
	if (r->quant[0])
		for (char *c = buf + w - strlen(r->quant); *c; c++)
			*c = (char)toupper((unsigned char)*c);
	return 0;
}

int hub_endpoint(char *buf, size_t n, char *err, size_t errlen)
{
	const char *e = getenv("HF_ENDPOINT");
	if (!e || !e[0])
		e = DEFAULT_ENDPOINT;
	size_t l = strlen(e);
	while (l > 0 && e[l - 1] == '/')
		l--;
	bool ok = (strncasecmp(e, "http://", 7) == 0 && l > 7) || (strncasecmp(e, "https://", 8) == 0 && l > 8);
	for (size_t i = 0; ok && i < l; i++)
		if ((unsigned char)e[i] <= ' ' || e[i] == 0x7f || e[i] == '?' || e[i] == '#')
			ok = false;
	if (!ok || l >= n) {
		snprintf(err, errlen, "HF_ENDPOINT '%.200s' is not an http:// or https:// address", e);
		return HUB_E_INVAL;
	}
	memcpy(buf, e, l);
	buf[l] = '\0';
	return HUB_OK;
}

/* ---- the token ------------------------------------------------------------- */

/* A token is one word of visible ASCII (it goes into a header). */
static bool valid_token(const char *t)
{
	if (!t[0])
		return false;
	for (const char *c = t; *c; c++)
		if (*c < 0x21 || *c > 0x7e)
			return false;
	return true;
}

static int token_from_file(const char *path, bool must_exist, char **token, char *err, size_t errlen)
{
	/* a link is followed (to huggingface-cli's token, say): the file it
	 * reaches is what fstat() checks */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT && !must_exist)
			return HUB_OK;
		snprintf(err, errlen, "token file %s: %s", path, strerror(errno));
		return HUB_E_TOKEN;
	}
	struct stat st;
	const char *bad = NULL;
	if (fstat(fd, &st) != 0)
		bad = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		bad = "not a regular file";
	else if (st.st_uid != geteuid())
		bad = "owned by another user";
	else if (st.st_mode & 077)
		bad = "others may read it (chmod 600 it)";
	else if (st.st_size > 4096)
		bad = "larger than 4 KiB";
	if (bad) {
		close(fd);
		snprintf(err, errlen, "token file %s: %s", path, bad);
		return HUB_E_TOKEN;
	}
	char *buf = sodium_malloc(4097);
	if (!buf) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return HUB_E_IO;
	}
	size_t len = 0;
	while (len < 4096) {
		ssize_t r = read(fd, buf + len, 4096 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	/* surrounding blanks */
	size_t s = strspn(buf, " \t"), e = strlen(buf);
	while (e > s && (buf[e - 1] == ' ' || buf[e - 1] == '\t'))
		e--;
	memmove(buf, buf + s, e - s);
	sodium_memzero(buf + (e - s), 4097 - (e - s));
	if (!valid_token(buf)) {
		sodium_free(buf);
		snprintf(err, errlen, "token file %s: the first line is not a token (empty, or spaces inside)", path);
		return HUB_E_TOKEN;
	}
	*token = buf;
	return HUB_OK;
}

int hub_token_load(char **token, char *from, size_t fromlen, char *err, size_t errlen)
{
	*token = NULL;
	from[0] = '\0';
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium failed to start");
		return HUB_E_IO;
	}
	const char *env = getenv("HF_TOKEN");
	if (env && env[0]) {
		if (!valid_token(env)) {
			snprintf(err, errlen, "HF_TOKEN holds spaces or control characters: not a token");
			return HUB_E_TOKEN;
		}
		size_t l = strlen(env);
		if (l > 4096 || !(*token = sodium_malloc(l + 1))) {
			snprintf(err, errlen, l > 4096 ? "HF_TOKEN is longer than 4 KiB" : "out of memory");
			return l > 4096 ? HUB_E_TOKEN : HUB_E_IO;
		}
		memcpy(*token, env, l + 1);
		snprintf(from, fromlen, "HF_TOKEN");
		return HUB_OK;
	}
	const char *file = getenv("HF_TOKEN_FILE");
	if (file && file[0]) {
		int rc = token_from_file(file, true, token, err, errlen);
		if (rc == HUB_OK)
			snprintf(from, fromlen, "%s", file);
		return rc;
	}
	char dir[PATH_MAX], path[PATH_MAX + 16];
	if (config_config_dir(dir, sizeof dir) != 0)
		return HUB_OK;
	snprintf(path, sizeof path, "%s/hf-token", dir);
	int rc = token_from_file(path, false, token, err, errlen);
	if (rc == HUB_OK && *token)
		snprintf(from, fromlen, "%s", path);
	return rc;
}

void hub_token_free(char *token)
{
	if (token)
		sodium_free(token); /* wipes it */
}

/* ---- the listing ----------------------------------------------------------- */

/* A repository path that is safe to use below a local folder. */
static bool valid_path(const char *s)
{
	size_t l = strlen(s);
	if (l == 0 || l >= sizeof ((struct hub_file *)0)->path || s[0] == '/')
		return false;
	for (size_t i = 0; i < l; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '\\')
			return false;
	for (const char *c = s; *c;) {
		size_t n = strcspn(c, "/");
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c += n;
		if (*c == '/')
			c++;
		else
			break;
	}
	return s[l - 1] != '/';
}

/* The "error" string of a Hub API answer, printable and short ("" if none). */
static void api_error(const char *body, char *out, size_t n)
{
	out[0] = '\0';
	cJSON *j = cJSON_Parse(body);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	if (cJSON_IsString(e)) {
		size_t k = 0;
		for (const char *c = e->valuestring; *c && k + 1 < n && k < 200; c++)
			out[k++] = (unsigned char)*c >= 0x20 && *c != 0x7f ? *c : ' ';
		out[k] = '\0';
	}
	cJSON_Delete(j);
}

static int add_file(struct hub_listing *l, size_t *cap, const struct hub_file *f)
{
	if (l->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct hub_file *nv = realloc(l->v, nc * sizeof *nv);
		if (!nv)
			return -1;
		l->v = nv;
		*cap = nc;
	}
	l->v[l->n++] = *f;
	return 0;
}

/* One page of the listing into L. */
static int parse_page(const char *body, struct hub_listing *l, size_t *cap, char *err, size_t errlen)
{
	cJSON *j = cJSON_Parse(body);
	if (!cJSON_IsArray(j)) {
		cJSON_Delete(j);
		snprintf(err, errlen, "the hub's file listing is not a JSON array");
		return HUB_E_REPLY;
	}
	int rc = HUB_OK;
	for (const cJSON *it = j->child; it && rc == HUB_OK; it = it->next) {
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "type");
		const cJSON *path = cJSON_GetObjectItemCaseSensitive(it, "path");
		const cJSON *size = cJSON_GetObjectItemCaseSensitive(it, "size");
		const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(it, "lfs");
		if (!cJSON_IsString(type) || strcmp(type->valuestring, "file") != 0)
			continue; /* folders */
		if (!cJSON_IsString(path) || !valid_path(path->valuestring))
			continue; /* nothing we could save under that name */
		struct hub_file f = {0};
		snprintf(f.path, sizeof f.path, "%s", path->valuestring);
		double d = cJSON_IsNumber(size) ? size->valuedouble : -1;
		if (!(d >= 0 && d <= 9007199254740992.0 && d == floor(d))) {
			snprintf(err, errlen, "the hub's listing gives %s no usable size", f.path);
			rc = HUB_E_REPLY;
			break;
		}
		f.size = (uint64_t)d;
		if (cJSON_IsObject(lfs)) {
			const cJSON *oid = cJSON_GetObjectItemCaseSensitive(lfs, "oid");
			const char *o = cJSON_IsString(oid) ? oid->valuestring : "";
			if (strncmp(o, "sha256:", 7) == 0)
				o += 7;
			if (strlen(o) != 64 || strspn(o, "0123456789abcdefABCDEF") != 64) {
				snprintf(err, errlen, "the hub's listing gives %s no SHA-256 (lfs.oid)", f.path);
				rc = HUB_E_REPLY;
				break;
			}
			for (int i = 0; i < 64; i++)
				f.sha256[i] = (char)tolower((unsigned char)o[i]);
		}
		if (l->n >= LISTING_FILES) {
			snprintf(err, errlen, "the repository lists more than %d files", LISTING_FILES);
			rc = HUB_E_REPLY;
		} else if (add_file(l, cap, &f) != 0) {
			snprintf(err, errlen, "out of memory");
			rc = HUB_E_IO;
		}
	}
	cJSON_Delete(j);
	return rc;
}

/* "scheme://host[:port]" of an endpoint: its length. */
static size_t origin_len(const char *endpoint)
{
	const char *h = strstr(endpoint, "://");
	return h ? (size_t)(h + 3 - endpoint) + strcspn(h + 3, "/") : strlen(endpoint);
}

int hub_list(const char *endpoint, const struct hub_ref *r, const char *token, struct hub_listing *out, char *err,
	     size_t errlen)
{
	memset(out, 0, sizeof *out);
	char url[4096];
	int w = snprintf(url, sizeof url, "%s/api/models/%s/%s/tree/main?recursive=true", endpoint, r->org, r->repo);
	if (w < 0 || (size_t)w >= sizeof url) {
		snprintf(err, errlen, "HF_ENDPOINT is too long");
		return HUB_E_INVAL;
	}
	size_t cap = 0, olen = origin_len(endpoint);
	int rc = HUB_OK;
	for (int page = 0; rc == HUB_OK; page++) {
		if (page == LISTING_PAGES) {
			snprintf(err, errlen, "the listing has more than %d pages", LISTING_PAGES);
			rc = HUB_E_REPLY;
			break;
		}
		struct pull_body b;
		char msg[1024];
		int prc = pull_fetch(url, token, LISTING_MAX, &b, msg, sizeof msg);
		if (prc == PULL_E_HTTP) {
			char why[256];
			api_error(b.body, why, sizeof why);
			char more[300] = "";
			if (why[0])
				snprintf(more, sizeof more, " (the hub: %s)", why);
			if ((b.status == 401 || b.status == 403) && !token) {
				snprintf(err, errlen,
					 "%s/%s: HTTP %ld: a gated or private repository, or none of that name: set HF_TOKEN "
					 "to an access token (or put it in a 0600 file named by HF_TOKEN_FILE)%s",
					 r->org, r->repo, b.status, more);
				rc = HUB_E_AUTH;
			} else if (b.status == 401 || b.status == 403) {
				snprintf(err, errlen,
					 "%s/%s: HTTP %ld with the token: %s%s", r->org, r->repo, b.status,
					 b.status == 401 ? "the token was refused (expired or mistyped?), or there is no such repository"
							 : "this account has no access yet (accept the model's terms on its page)",
					 more);
				rc = HUB_E_AUTH;
			} else if (b.status == 404) {
				snprintf(err, errlen, "%s/%s: no such repository (or no main branch) at %s%s", r->org,
					 r->repo, endpoint, more);
				rc = HUB_E_NOTFOUND;
			} else {
				snprintf(err, errlen, "%s%s", msg, more);
				rc = HUB_E_HTTP;
			}
		} else if (prc == PULL_E_NET) {
			snprintf(err, errlen, "%s", msg);
			rc = HUB_E_NET;
		} else if (prc != PULL_OK) {
			snprintf(err, errlen, "%s", msg);
			rc = prc == PULL_E_INVAL ? HUB_E_INVAL : HUB_E_IO;
		} else {
			rc = parse_page(b.body, out, &cap, err, errlen);
			if (rc == HUB_OK && b.next[0]) {
				/* the next page, from the same hub only (the token goes there) */
				if (b.next[0] == '/' && olen + strlen(b.next) < sizeof url) {
					snprintf(url, sizeof url, "%.*s%s", (int)olen, endpoint, b.next);
				} else if (strncmp(b.next, endpoint, olen) == 0 && b.next[olen] == '/' &&
					   strlen(b.next) < sizeof url) {
					snprintf(url, sizeof url, "%s", b.next);
				} else {
					snprintf(err, errlen, "the listing's next page is not on %.*s", (int)olen, endpoint);
					rc = HUB_E_REPLY;
				}
			} else if (rc == HUB_OK) {
				pull_body_free(&b);
				break;
			}
		}
		pull_body_free(&b);
	}
	if (rc != HUB_OK)
		hub_listing_free(out);
	return rc;
}

void hub_listing_free(struct hub_listing *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

int hub_file_url(const char *endpoint, const struct hub_ref *r, const char *path, char *buf, size_t n)
{
	int w = snprintf(buf, n, "%s/%s/%s/resolve/main/", endpoint, r->org, r->repo);
	if (w < 0 || (size_t)w >= n)
		return -1;
	size_t k = (size_t)w;
	static const char hexd[] = "0123456789ABCDEF";
	for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
		bool plain = isalnum(*c) || *c == '-' || *c == '.' || *c == '_' || *c == '~' || *c == '/';
		if (k + (plain ? 1 : 3) >= n)
			return -1;
		if (plain) {
			buf[k++] = (char)*c;
		} else {
			buf[k++] = '%';
			buf[k++] = hexd[*c >> 4];
			buf[k++] = hexd[*c & 15];
		}
	}
	buf[k] = '\0';
	return 0;
}

/* ---- which file ------------------------------------------------------------ */

/* Nominal bits per weight of llama.cpp's quant types (mixes included), for
 * "the closest"; Unsloth's and bartowski's _XL/_L variants keep more
 * tensors at 8 bits. */
static const struct {
	const char *name;
	double bits;
} quant_bits[] = {
	{"F32", 32},      {"F16", 16},      {"FP16", 16},     {"BF16", 16},     {"Q8_0", 8.5},
	{"Q8_K_XL", 9.0}, {"Q6_K_XL", 7.0}, {"Q6_K_L", 6.8},  {"Q6_K", 6.56},   {"Q5_1", 6.0},
	{"Q5_K_XL", 6.0}, {"Q5_K_L", 5.9},  {"Q5_K_M", 5.69}, {"Q5_K_S", 5.54}, {"Q5_0", 5.5},
	{"Q4_K_XL", 5.0}, {"Q4_K_L", 5.0},  {"Q4_1", 5.0},    {"Q4_K_M", 4.89}, {"Q4_K_S", 4.58},
	{"Q4_0", 4.5},    {"IQ4_NL", 4.5},  {"Q3_K_XL", 4.4}, {"Q3_K_L", 4.27}, {"IQ4_XS", 4.25},
	{"MXFP4", 4.25},  {"MXFP4_MOE", 4.25}, {"Q3_K_M", 3.91}, {"IQ3_M", 3.66}, {"Q3_K_S", 3.5},
	{"IQ3_S", 3.44},  {"IQ3_XS", 3.3},  {"Q2_K_XL", 3.2}, {"Q2_K_L", 3.2},  {"IQ3_XXS", 3.06},
	{"Q2_K", 2.96},   {"IQ2_M", 2.7},   {"Q2_K_S", 2.6},  {"IQ2_S", 2.5},   {"IQ2_XS", 2.31},
	{"IQ2_XXS", 2.06}, {"TQ2_0", 2.06}, {"IQ1_M", 1.75},  {"TQ1_0", 1.69},  {"IQ1_S", 1.56},
};

/* Bits per weight of a quant label (upper case), or -1 when unknown. */
static double label_bits(const char *label)
{
	if (strncmp(label, "UD-", 3) == 0)
		label += 3;
	size_t best = 0;
	double bits = -1;
	for (size_t i = 0; i < sizeof quant_bits / sizeof quant_bits[0]; i++) {
		size_t l = strlen(quant_bits[i].name);
		if (strncmp(label, quant_bits[i].name, l) == 0 && (label[l] == '\0' || label[l] == '_') && l > best) {
			best = l;
			bits = quant_bits[i].bits;
		}
	}
	if (bits < 0) {
		/* an unknown mix: its digit says most */
		const char *d = label[0] == 'I' ? label + 1 : label;
		if (d[0] == 'Q' && isdigit((unsigned char)d[1]))
			bits = (d[1] - '0') + (d == label ? 0.6 : 0.3);
	}
	return bits;
}

/* Whether an (upper-cased) word of a file name is a quant type. */
static bool is_quant_word(const char *w)
{
	for (size_t i = 0; i < sizeof quant_bits / sizeof quant_bits[0]; i++)
		if (strcmp(w, quant_bits[i].name) == 0)
			return true;
	const char *d = w[0] == 'I' || w[0] == 'T' ? w + 1 : w;
	return d[0] == 'Q' && isdigit((unsigned char)d[1]) &&
	       strspn(d, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == strlen(d);
}

/* The quant in NAME (a file name without ".gguf" and the split suffix, or
 * a folder name): upper case into OUT, "" when none. */
static void name_quant(const char *name, char *out, size_t n)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", name);
	for (char *c = buf; *c; c++)
		*c = (char)toupper((unsigned char)*c);
	out[0] = '\0';
	char *words[128];
	size_t nw = 0;
	for (char *s = buf; nw < 128;) {
		words[nw++] = s;
		size_t l = strcspn(s, "-.");
		if (!s[l])
			break;
		s[l] = '\0';
		s += l + 1;
	}
	for (size_t i = nw; i-- > 0;) {
		if (!is_quant_word(words[i]))
			continue;
		if (i > 0 && strcmp(words[i - 1], "UD") == 0)
			snprintf(out, n, "UD-%s", words[i]);
		else
			snprintf(out, n, "%s", words[i]);
		return;
	}
}

static bool has_suffix_ci(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcasecmp(s + a - b, suf) == 0;
}

/* One GGUF file (or one part) of the listing, read from its path. */
struct cand {
	size_t idx;
	char stem[512];     /* path without ".gguf" and the split suffix */
	unsigned part, of;  /* 1-based part of OF; 0 of 0 for a whole file */
	char quant[48];
	double bits;
};

static void read_cand(const struct hub_file *f, size_t idx, struct cand *c)
{
	memset(c, 0, sizeof *c);
	c->idx = idx;
	snprintf(c->stem, sizeof c->stem, "%s", f->path);
	c->stem[strlen(c->stem) - 5] = '\0'; /* ".gguf" */
	size_t l = strlen(c->stem);
	unsigned a, b;
	char tail[32];
	/* NAME-00001-of-00003 (llama.cpp's gguf-split names) */
	if (l > 15 && sscanf(c->stem + l - 15, "-%5u-of-%5u%31s", &a, &b, tail) == 2 &&
	    strspn(c->stem + l - 14, "0123456789") == 5 && strspn(c->stem + l - 5, "0123456789") == 5 && a >= 1 &&
	    b >= 1 && a <= b) {
		c->part = a;
		c->of = b;
		c->stem[l - 15] = '\0';
	}
	const char *base = strrchr(c->stem, '/');
	name_quant(base ? base + 1 : c->stem, c->quant, sizeof c->quant);
	if (!c->quant[0] && base) {
		/* the folder: Q4_K_M/Model-00001-of-00002.gguf */
		char dir[512];
		snprintf(dir, sizeof dir, "%.*s", (int)(base - c->stem), c->stem);
		const char *d = strrchr(dir, '/');
		name_quant(d ? d + 1 : dir, c->quant, sizeof c->quant);
	}
	c->bits = c->quant[0] ? label_bits(c->quant) : -1;
}

/* "A, B, C and 4 more" from the distinct QUANT of the groups, or from paths. */
static void list_quants(const struct cand *g, size_t ng, char *out, size_t n)
{
	size_t k = 0, shown = 0;
	out[0] = '\0';
	for (size_t i = 0; i < ng; i++) {
		const char *q = g[i].quant[0] ? g[i].quant : g[i].stem;
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(q, g[j].quant[0] ? g[j].quant : g[j].stem) == 0;
		if (seen)
			continue;
		if (shown == 12) {
			snprintf(out + k, n - k, " ...");
			return;
		}
		int w = snprintf(out + k, n - k, "%s%s", shown ? ", " : "", q);
		if (w < 0 || (size_t)w >= n - k)
			return;
		k += (size_t)w;
		shown++;
	}
}

int hub_pick_file(const struct hub_listing *l, const char *quant, struct hub_pick *p, char *err, size_t errlen)
{
	memset(p, 0, sizeof *p);
	char want[48];
	snprintf(want, sizeof want, "%s", quant && quant[0] ? quant : DEFAULT_QUANT);
	for (char *c = want; *c; c++)
		*c = (char)toupper((unsigned char)*c);
	bool by_default = !(quant && quant[0]);

	/* the groups: whole files and the first part seen of each split file */
	struct cand *g = calloc(l->n ? l->n : 1, sizeof *g);
	if (!g) {
		snprintf(err, errlen, "out of memory");
		return HUB_E_IO;
	}
	size_t ng = 0, projectors = 0;
	for (size_t i = 0; i < l->n; i++) {
		const char *path = l->v[i].path, *base = strrchr(path, '/');
		base = base ? base + 1 : path;
		if (!has_suffix_ci(path, ".gguf") || strlen(path) <= 5)
			continue;
		if (strncasecmp(base, "mmproj", 6) == 0) {
			projectors++;
			continue;
		}
		struct cand c;
		read_cand(&l->v[i], i, &c);
		bool seen = false;
		for (size_t j = 0; j < ng && !seen; j++)
			seen = c.of && g[j].of == c.of && strcmp(g[j].stem, c.stem) == 0;
		if (!seen)
			g[ng++] = c;
	}
	if (ng == 0) {
		char some[600] = "";
		size_t k = 0;
		for (size_t i = 0; i < l->n && i < 10; i++) {
			int w = snprintf(some + k, sizeof some - k, "%s%s", i ? ", " : "", l->v[i].path);
			if (w < 0 || (size_t)w >= sizeof some - k)
				break;
			k += (size_t)w;
		}
		if (l->n == 0)
			snprintf(err, errlen, "no GGUF model file: the repository is empty");
		else
			snprintf(err, errlen, "no GGUF model file%s; it has %zu file%s: %s%s",
				 projectors ? " (only vision projectors, mmproj*)" : "", l->n, l->n == 1 ? "" : "s", some,
				 l->n > 10 ? ", ..." : "");
		free(g);
		return HUB_E_NOGGUF;
	}

	/* the quant asked for; else Unsloth's dynamic one of it; else the closest */
	ptrdiff_t pick = -1;
	size_t same = 0;
	char have[400], reason[600];
	list_quants(g, ng, have, sizeof have);
	for (size_t i = 0; i < ng; i++)
		if (strcmp(g[i].quant, want) == 0 && same++ == 0)
			pick = (ptrdiff_t)i;
	if (pick >= 0) {
		p->exact = true;
		snprintf(reason, sizeof reason, "%s%s", by_default ? "Q4_K_M, the default (no quant given)" : "as asked",
			 same > 1 ? " (the first of the files of that quant)" : "");
	}
	for (size_t i = 0; pick < 0 && i < ng; i++) {
		if (strncmp(g[i].quant, "UD-", 3) == 0 && strcmp(g[i].quant + 3, want) == 0) {
			pick = (ptrdiff_t)i;
			snprintf(reason, sizeof reason, "%s, Unsloth's dynamic version of %s", g[i].quant, want);
		}
	}
	if (pick < 0) {
		double target = label_bits(want);
		if (target < 0) {
			snprintf(err, errlen, "no file is %s, and %s is not a quant type known here; there are: %s", want,
				 want, have);
			free(g);
			return HUB_E_NOQUANT;
		}
		for (size_t i = 0; i < ng; i++) {
			if (g[i].bits < 0)
				continue;
			double d = fabs(g[i].bits - target), bd = pick >= 0 ? fabs(g[pick].bits - target) : 1e9;
			if (pick < 0 || d < bd - 1e-9 || (fabs(d - bd) <= 1e-9 && g[i].bits < g[pick].bits))
				pick = (ptrdiff_t)i;
		}
		if (pick >= 0) {
			snprintf(reason, sizeof reason,
				 "no %s file here; %s is the closest (%.1f bits per weight against %.1f; there are %s)", want,
				 g[pick].quant, g[pick].bits, target, have);
		} else if (ng == 1) {
			pick = 0;
			snprintf(reason, sizeof reason, "the only GGUF file (its name gives no quant)");
		} else {
			snprintf(err, errlen, "no file is %s, and the names of its GGUF files give no quant: %s", want,
				 have);
			free(g);
			return HUB_E_NOQUANT;
		}
	}
	const struct cand *c = &g[pick];
	snprintf(p->quant, sizeof p->quant, "%s", c->quant);

	/* every part of a split file, in order */
	int rc = HUB_OK;
	if (c->of == 0) {
		p->part[0] = c->idx;
		p->nparts = 1;
		p->bytes = l->v[c->idx].size;
	} else if (c->of > HUB_MAX_PARTS) {
		snprintf(err, errlen, "%s is split into %u parts; at most %d are taken", c->stem, c->of, HUB_MAX_PARTS);
		rc = HUB_E_REPLY;
	} else {
		for (unsigned k = 1; k <= c->of && rc == HUB_OK; k++) {
			bool found = false;
			for (size_t i = 0; i < l->n && !found; i++) {
				if (!has_suffix_ci(l->v[i].path, ".gguf") || strlen(l->v[i].path) <= 5)
					continue;
				struct cand o;
				read_cand(&l->v[i], i, &o);
				if (o.of == c->of && o.part == k && strcmp(o.stem, c->stem) == 0) {
					p->part[k - 1] = i;
					p->bytes += l->v[i].size;
					found = true;
				}
			}
			if (!found) {
				snprintf(err, errlen, "part %u of the %u parts of %s is not in the repository", k, c->of,
					 c->stem);
				rc = HUB_E_REPLY;
			}
		}
		p->nparts = c->of;
	}
	if (rc == HUB_OK) {
		char parts[32] = "";
		if (p->nparts > 1)
			snprintf(parts, sizeof parts, " (%u parts)", p->nparts);
		snprintf(p->why, sizeof p->why, "%.400s%s: %.500s", l->v[p->part[0]].path, parts, reason);
	}
	free(g);
	return rc;
}

/* ---- the models.d entry ---------------------------------------------------- */

static int set_str(cJSON *o, const char *key, const char *v)
{
	cJSON_DeleteItemFromObjectCaseSensitive(o, key);
	if (!v || !v[0])
		return 0;
	return cJSON_AddStringToObject(o, key, v) ? 0 : -1;
}

static int make_dirs(const char *dir)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
		return -1;
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -1;
		if (!c)
			return 0;
		*p = c;
	}
}

int hub_write_entry(const struct hub_entry *e, char *path, size_t pathlen, char *err, size_t errlen)
{
	char conf[PATH_MAX], dir[PATH_MAX + 16];
	if (config_config_dir(conf, sizeof conf) != 0) {
		snprintf(err, errlen, "cannot find the configuration folder (HOME unset?)");
		return HUB_E_IO;
	}
	snprintf(dir, sizeof dir, "%s/models.d", conf);
	int w = snprintf(path, pathlen, "%s/%s.json", dir, e->name);
	if (w < 0 || (size_t)w >= pathlen) {
		snprintf(err, errlen, "%s: path too long", dir);
		return HUB_E_IO;
	}
	if (make_dirs(dir) != 0) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return HUB_E_IO;
	}
	/* an earlier pull's entry: keep what the user added to it */
	cJSON *o = NULL;
	FILE *f = fopen(path, "re");
	if (f) {
		char *text = malloc(1 << 20);
		size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
		if (text) {
			text[n] = '\0';
			o = cJSON_Parse(text);
			if (!cJSON_IsObject(o)) {
				cJSON_Delete(o);
				o = NULL;
			}
		}
		free(text);
		fclose(f);
	}
	if (!o)
		o = cJSON_CreateObject();
	int rc = o ? 0 : -1;
	rc |= set_str(o, "name", e->name);
	rc |= set_str(o, "display_name", e->display_name);
	rc |= set_str(o, "file", e->file);
	rc |= set_str(o, "quant", e->quant);
	rc |= set_str(o, "sha256", e->sha256);
	rc |= set_str(o, "url", e->url);
	rc |= set_str(o, "source", e->source);
	if (o) {
		cJSON_DeleteItemFromObjectCaseSensitive(o, "size");
		if (e->size && !cJSON_AddNumberToObject(o, "size", (double)e->size))
			rc = -1;
	}
	char *text = rc == 0 ? cJSON_Print(o) : NULL;
	cJSON_Delete(o);
	if (!text) {
		snprintf(err, errlen, "out of memory");
		return HUB_E_IO;
	}
	char tmp[PATH_MAX + 32];
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	size_t len = strlen(text), done = 0;
	while (fd >= 0 && done < len) {
		ssize_t k = write(fd, text + done, len - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		done += (size_t)k;
	}
	free(text);
	bool ok = fd >= 0 && done == len && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
	int e2 = errno;
	if (fd >= 0 && close(fd) != 0 && ok) {
		ok = false;
		e2 = errno;
	}
	if (ok && rename(tmp, path) != 0) {
		ok = false;
		e2 = errno;
	}
	if (!ok) {
		if (fd >= 0)
			unlink(tmp);
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(e2));
		return HUB_E_IO;
	}
	return HUB_OK;
}
