/*
 * jsonschema.c - see jsonschema.h.  One recursive pass over the parsed
 * schema (cJSON) writes one GBNF rule per schema node; $ref targets get
 * their rule name before their body is written, so recursive schemas
 * become recursive rules.  The JSON primitives (string, number, ...) are
 * written once, at the end, only when used.  Every value rule ends with
 * `ws`, so a container writes `"{" ws key ":" ws value ("," ws ...)`.
 *
 * Integer ranges are written digit by digit: the n-digit strings between
 * two n-digit bounds a and b share a's and b's common prefix, then take
 * a's next digit followed by anything >= the rest of a, b's next digit
 * followed by anything <= the rest of b, or a digit strictly between
 * followed by any n-1 digits.  Regular expressions (pattern) are
 * translated by a small recursive-descent parser of the common subset.
 */
#include "jsonschema.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "engine.h"
#include "gbnf.h"

#define MAX_DEPTH 64
#define MAX_OUT ((size_t)8 << 20)
#define MAX_REFS 1024

struct sb {
	char *s;
	size_t n, cap;
	bool oom;
};

struct ref {
	const cJSON *target;
	char name[64];
};

struct conv {
	const cJSON *root;
	struct sb rules;
	struct ref refs[MAX_REFS];
	unsigned n_refs;
	unsigned counter;
	int depth;
	bool need_string, need_number, need_integer, need_value, need_char, need_ws;
	char path[256]; /* JSON pointer of the node being converted */
	int rc;
	char *err;
	size_t errlen;
};

static void sb_add(struct sb *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n + 1)
			cap *= 2;
		char *t = cap > MAX_OUT ? NULL : eng_realloc(b->s, cap);
		if (!t) {
			b->oom = true;
			return;
		}
		b->s = t;
		b->cap = cap;
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = '\0';
}

static void sb_str(struct sb *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof buf) {
		b->oom = true;
		return;
	}
	sb_add(b, buf, (size_t)n);
}

/* A GBNF literal for the bytes s[0..n): "..." with escapes. */
static void sb_literal(struct sb *b, const char *s, size_t n)
{
	sb_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			sb_add(b, e, 2);
		} else if (c < 0x20 || c == 0x7f) {
			sb_printf(b, "\\x%02X", c);
		} else {
			sb_add(b, (const char *)&c, 1);
		}
	}
	sb_add(b, "\"", 1);
}

static bool fail(struct conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(struct conv *c, const char *fmt, ...)
{
	if (c->rc)
		return false;
	c->rc = JSONSCHEMA_E_SCHEMA;
	int k = snprintf(c->err, c->errlen, "at %s: ", c->path[0] ? c->path : "the top");
	if (k >= 0 && (size_t)k < c->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
		va_end(ap);
	}
	return false;
}

/* ---- names ---- */

/* A fresh rule name from HINT: letters, digits and '-' kept. */
static void new_name(struct conv *c, const char *hint, char *out, size_t cap)
{
	char clean[32];
	size_t k = 0;
	for (const char *p = hint; p && *p && k + 1 < sizeof clean; p++) {
		char ch = *p;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-')
			clean[k++] = ch;
		else if (ch == '_' || ch == ' ')
			clean[k++] = '-';
	}
	clean[k] = '\0';
	snprintf(out, cap, "%s%s%u", k ? clean : "v", k ? "-" : "", ++c->counter);
}

/* ---- the path, for messages ---- */

static size_t path_push(struct conv *c, const char *seg)
{
	size_t old = strlen(c->path);
	snprintf(c->path + old, sizeof c->path - old, "/%s", seg);
	return old;
}

static void path_pop(struct conv *c, size_t old)
{
	c->path[old] = '\0';
}

/* ---- integers ---- */

/* n-digit strings s with a <= s <= b (a, b n-digit strings). */
static void digits_between(struct sb *b, const char *lo, const char *hi, size_t n)
{
	if (n == 0) {
		sb_str(b, "\"\"");
		return;
	}
	if (lo[0] == hi[0]) {
		sb_printf(b, "\"%c\" ", lo[0]);
		digits_between(b, lo + 1, hi + 1, n - 1);
		return;
	}
	char nines[24], zeros[24];
	memset(nines, '9', n - 1);
	memset(zeros, '0', n - 1);
	nines[n - 1] = zeros[n - 1] = '\0';
	sb_printf(b, "(\"%c\" (", lo[0]);
	digits_between(b, lo + 1, nines, n - 1);
	sb_str(b, ")");
	if (lo[0] + 1 <= hi[0] - 1) {
		sb_printf(b, " | [%c-%c]", lo[0] + 1, hi[0] - 1);
		if (n > 1)
			sb_printf(b, " [0-9]{%zu}", n - 1);
	}
	sb_printf(b, " | \"%c\" (", hi[0]);
	digits_between(b, zeros, hi + 1, n - 1);
	sb_str(b, "))");
}

/* Non-negative integers in [lo, hi] (hi < 0: no upper bound), without
 * leading zeros, at most 18 digits. */
static void uint_range(struct sb *b, uint64_t lo, int64_t hi)
{
	char los[24], his[24];
	int nl = snprintf(los, sizeof los, "%llu", (unsigned long long)lo);
	int nh = hi >= 0 ? snprintf(his, sizeof his, "%lld", (long long)hi) : 18;
	sb_str(b, "(");
	bool first = true;
	for (int d = nl; d <= nh; d++) {
		if (!first)
			sb_str(b, " | ");
		first = false;
		if (hi < 0 && d > nl) {
			/* all longer numbers at once */
			sb_printf(b, "[1-9] [0-9]{%d,17}", d - 1);
			break;
		}
		char a[24], z[24];
		if (d == nl) {
			memcpy(a, los, (size_t)d + 1);
		} else {
			a[0] = '1';
			memset(a + 1, '0', (size_t)d - 1);
			a[d] = '\0';
		}
		if (hi >= 0 && d == nh) {
			memcpy(z, his, (size_t)d + 1);
		} else {
			memset(z, '9', (size_t)d);
			z[d] = '\0';
		}
		digits_between(b, a, z, (size_t)d);
	}
	sb_str(b, ")");
}

#define INT_LIMIT 999999999999999999LL /* 18 digits */

/* Integers in [lo, hi]; has_lo/has_hi false: unbounded that way. */
static bool int_range(struct conv *c, struct sb *b, bool has_lo, int64_t lo, bool has_hi, int64_t hi)
{
	if ((has_lo && (lo > INT_LIMIT || lo < -INT_LIMIT)) || (has_hi && (hi > INT_LIMIT || hi < -INT_LIMIT)))
		return fail(c, "integer bounds past 18 digits are not supported");
	if (has_lo && has_hi && lo > hi)
		return fail(c, "minimum %lld is above maximum %lld", (long long)lo, (long long)hi);
	sb_str(b, "(");
	bool alt = false;
	/* negative part: "-" then 1..|lo| (or all when unbounded) */
	if (!has_lo || lo < 0) {
		uint64_t nlo = has_hi && hi < 0 ? (uint64_t)(-hi) : 1;
		int64_t nhi = has_lo ? -lo : -1;
		sb_str(b, "\"-\" ");
		uint_range(b, nlo, nhi);
		alt = true;
	}
	if (!has_hi || hi >= 0) {
		if (alt)
			sb_str(b, " | ");
		uint_range(b, has_lo && lo > 0 ? (uint64_t)lo : 0, has_hi ? hi : -1);
	}
	sb_str(b, ") ws");
	c->need_ws = true;
	return true;
}

/* ---- regular expressions (pattern) ---- */

struct rx {
	const char *p, *end;
	struct conv *c;
	struct sb *b;
	int depth;
};

#define RX_MAX_RANGES 256

struct rx_set {
	uint32_t lo[RX_MAX_RANGES], hi[RX_MAX_RANGES];
	int n;
};

static bool rx_alts(struct rx *r);

static bool rx_add(struct rx *r, struct rx_set *set, uint32_t lo, uint32_t hi)
{
	if (set->n == RX_MAX_RANGES)
		return fail(r->c, "pattern class too large");
	set->lo[set->n] = lo;
	set->hi[set->n++] = hi;
	return true;
}

/* One UTF-8 character of the pattern. */
static bool rx_utf8(struct rx *r, uint32_t *cp)
{
	const unsigned char *q = (const unsigned char *)r->p;
	size_t left = (size_t)(r->end - r->p);
	unsigned n = q[0] < 0x80 ? 1 : (q[0] & 0xe0) == 0xc0 ? 2 : (q[0] & 0xf0) == 0xe0 ? 3 : (q[0] & 0xf8) == 0xf0 ? 4 : 0;
	if (!n || n > left)
		return fail(r->c, "pattern is not valid UTF-8");
	uint32_t v = n == 1 ? q[0] : q[0] & (0x7fu >> n);
	for (unsigned i = 1; i < n; i++) {
		if ((q[i] & 0xc0) != 0x80)
			return fail(r->c, "pattern is not valid UTF-8");
		v = v << 6 | (q[i] & 0x3fu);
	}
	r->p += n;
	*cp = v;
	return true;
}

/* One character or escape into SET; *single says it was one character
 * (*cp), which a class range may start or end with. */
static bool rx_item(struct rx *r, struct rx_set *set, bool *single, uint32_t *cp)
{
	*single = false;
	if (*r->p != '\\') {
		if (!rx_utf8(r, cp))
			return false;
		*single = true;
		return rx_add(r, set, *cp, *cp);
	}
	r->p++;
	if (r->p >= r->end)
		return fail(r->c, "pattern ends with '\\'");
	char e = *r->p++;
	switch (e) {
	case 'd': return rx_add(r, set, '0', '9');
	case 'w':
		return rx_add(r, set, 'a', 'z') && rx_add(r, set, 'A', 'Z') && rx_add(r, set, '0', '9') &&
		       rx_add(r, set, '_', '_');
	case 's': return rx_add(r, set, ' ', ' '); /* the space only: other blanks need JSON escapes */
	default:
		if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
			return fail(r->c, "pattern escape '\\%c' is not supported", e);
		*single = true;
		*cp = (unsigned char)e;
		return rx_add(r, set, *cp, *cp);
	}
}

/* Writes SET as a GBNF class of what a JSON string can hold unescaped:
 * controls, '"' and '\\' are left out (a positive set loses them, a
 * negated one adds them to what it excludes). */
static bool rx_emit(struct rx *r, const struct rx_set *set, bool neg)
{
	static const uint32_t ex_lo[] = {0x00, 0x22, 0x5c, 0x7f}, ex_hi[] = {0x1f, 0x22, 0x5c, 0x7f};
	struct sb *b = r->b;
	sb_str(b, neg ? "[^" : "[");
	int written = 0;
	for (int i = 0; i < set->n; i++) {
		uint32_t lo = set->lo[i], hi = set->hi[i];
		if (lo > hi)
			return fail(r->c, "pattern range is reversed");
		if (neg) {
			sb_printf(b, "\\U%08X-\\U%08X", lo, hi);
			written++;
			continue;
		}
		/* cut the excluded points out of [lo, hi] */
		uint32_t x = lo;
		for (int k = 0; k < 4 && x <= hi; k++) {
			if (ex_hi[k] < x)
				continue;
			if (ex_lo[k] > x) {
				uint32_t e = ex_lo[k] - 1 < hi ? ex_lo[k] - 1 : hi;
				sb_printf(b, "\\U%08X-\\U%08X", x, e);
				written++;
			}
			x = ex_hi[k] + 1;
		}
		if (x <= hi && x > ex_hi[3]) {
			sb_printf(b, "\\U%08X-\\U%08X", x, hi);
			written++;
		}
	}
	if (neg)
		sb_str(b, "\\x00-\\x1F\\x22\\x5C\\x7F");
	else if (!written)
		return fail(r->c, "pattern needs characters a JSON string holds only escaped (not supported)");
	sb_str(b, "]");
	return true;
}

static bool rx_atom(struct rx *r)
{
	char ch = *r->p;
	struct rx_set set = {.n = 0};
	bool single;
	uint32_t cp;
	if (ch == '(') {
		r->p++;
		if (r->p + 1 < r->end && r->p[0] == '?') {
			if (r->p[1] != ':')
				return fail(r->c, "pattern group '(?%c' is not supported", r->p[1]);
			r->p += 2;
		}
		if (++r->depth > 32)
			return fail(r->c, "pattern nested too deep");
		sb_str(r->b, "(");
		if (!rx_alts(r))
			return false;
		if (r->p >= r->end || *r->p != ')')
			return fail(r->c, "pattern has an unclosed '('");
		r->p++;
		r->depth--;
		sb_str(r->b, ")");
		return true;
	}
	if (ch == '[') {
		r->p++;
		bool neg = r->p < r->end && *r->p == '^';
		r->p += neg;
		bool first = true;
		while (r->p < r->end && (*r->p != ']' || first)) {
			first = false;
			if (!rx_item(r, &set, &single, &cp))
				return false;
			if (single && r->p + 1 < r->end && *r->p == '-' && r->p[1] != ']') {
				r->p++;
				uint32_t hi;
				bool s2;
				struct rx_set one = {.n = 0};
				if (!rx_item(r, &one, &s2, &hi))
					return false;
				if (!s2)
					return fail(r->c, "pattern range ends in a class escape");
				set.hi[set.n - 1] = hi;
			}
		}
		if (r->p >= r->end)
			return fail(r->c, "pattern has an unclosed '['");
		r->p++;
		return rx_emit(r, &set, neg);
	}
	if (ch == '.') {
		r->p++;
		return rx_emit(r, &set, true);
	}
	if (ch == '^' || ch == '$')
		return fail(r->c, "pattern anchor '%c' inside the pattern is not supported", ch);
	if (ch == '*' || ch == '+' || ch == '?' || ch == '{')
		return fail(r->c, "pattern quantifier '%c' with nothing before it", ch);
	if (!rx_item(r, &set, &single, &cp))
		return false;
	return rx_emit(r, &set, false);
}

static bool rx_seq(struct rx *r)
{
	bool any = false;
	while (r->p < r->end && *r->p != '|' && *r->p != ')') {
		if (!rx_atom(r))
			return false;
		any = true;
		if (r->p < r->end) {
			char q = *r->p;
			if (q == '*' || q == '+' || q == '?') {
				sb_add(r->b, &q, 1);
				r->p++;
			} else if (q == '{') {
				const char *e = memchr(r->p, '}', (size_t)(r->end - r->p));
				if (!e || e - r->p > 24)
					return fail(r->c, "pattern has a bad '{'");
				for (const char *k = r->p + 1; k < e; k++)
					if (!((*k >= '0' && *k <= '9') || *k == ','))
						return fail(r->c, "pattern has a bad '{'");
				sb_add(r->b, r->p, (size_t)(e + 1 - r->p));
				r->p = e + 1;
			}
			if (r->p < r->end && (*r->p == '?' || *r->p == '+'))
				return fail(r->c, "lazy or possessive pattern quantifiers are not supported");
		}
		sb_str(r->b, " ");
	}
	if (!any)
		sb_str(r->b, "\"\"");
	return true;
}

static bool rx_alts(struct rx *r)
{
	if (!rx_seq(r))
		return false;
	while (r->p < r->end && *r->p == '|') {
		r->p++;
		sb_str(r->b, " | ");
		if (!rx_seq(r))
			return false;
	}
	return true;
}

/* ---- schema nodes ---- */

static bool gen(struct conv *c, const cJSON *s, const char *hint, char *name, size_t cap);

static const char *const annotations[] = {"title", "description", "default", "examples", "$schema", "$id",
					  "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions",
					  "format", "contentMediaType", "contentEncoding", "discriminator", NULL};

static bool known_keyword(const char *k, const char *const *extra)
{
	for (const char *const *a = annotations; *a; a++)
		if (!strcmp(*a, k))
			return true;
	for (const char *const *a = extra; a && *a; a++)
		if (!strcmp(*a, k))
			return true;
	return false;
}

/* Refuses keywords that constrain values and that this converter does
 * not write. */
static bool check_keywords(struct conv *c, const cJSON *s)
{
	static const char *const handled[] = {
		"type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems",
		"maxItems", "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
		"exclusiveMaximum", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "nullable", NULL};
	for (const cJSON *k = s->child; k; k = k->next)
		if (!known_keyword(k->string, handled))
			return fail(c, "keyword '%s' is not supported", k->string);
	return true;
}

/* Writes NAME ::= BODY. */
static void emit_rule(struct conv *c, const char *name, const struct sb *body)
{
	sb_printf(&c->rules, "%s ::= ", name);
	sb_add(&c->rules, body->s ? body->s : "\"\"", body->s ? body->n : 2);
	sb_str(&c->rules, "\n");
	if (body->oom)
		c->rules.oom = true;
}

static bool resolve_ref(struct conv *c, const char *ref, const cJSON **out)
{
	if (!strcmp(ref, "#")) {
		*out = c->root;
		return true;
	}
	const char *p = NULL;
	const cJSON *defs = NULL;
	if (!strncmp(ref, "#/$defs/", 8)) {
		p = ref + 8;
		defs = cJSON_GetObjectItemCaseSensitive(c->root, "$defs");
	} else if (!strncmp(ref, "#/definitions/", 14)) {
		p = ref + 14;
		defs = cJSON_GetObjectItemCaseSensitive(c->root, "definitions");
	}
	if (!p || strchr(p, '/') || strchr(p, '~') || strchr(p, '%'))
		return fail(c, "$ref '%.80s' is not supported (only #, #/$defs/NAME, #/definitions/NAME)", ref);
	const cJSON *t = defs ? cJSON_GetObjectItemCaseSensitive(defs, p) : NULL;
	if (!t)
		return fail(c, "$ref '%.80s' names nothing in the schema", ref);
	*out = t;
	return true;
}

static bool gen_object(struct conv *c, const cJSON *s, struct sb *b, const char *hint)
{
	const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
	const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
	const cJSON *addl = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
	if (props && !cJSON_IsObject(props))
		return fail(c, "properties is not an object");
	if (req && !cJSON_IsArray(req))
		return fail(c, "required is not an array");
	for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
		if (!cJSON_IsString(r) || !cJSON_GetObjectItemCaseSensitive(props, r->valuestring))
			return fail(c, "required names '%.60s', which properties do not define",
				    cJSON_IsString(r) ? r->valuestring : "?");
	c->need_ws = true;
	if (!props || !props->child) {
		if (cJSON_IsObject(addl) || cJSON_IsTrue(addl) || !addl) {
			/* a map: string keys, values of the additional schema */
			char vn[64];
			if (cJSON_IsObject(addl)) {
				size_t old = path_push(c, "additionalProperties");
				bool ok = gen(c, addl, hint, vn, sizeof vn);
				path_pop(c, old);
				if (!ok)
					return false;
			} else {
				snprintf(vn, sizeof vn, "value");
				c->need_value = true;
			}
			c->need_string = true;
			sb_printf(b, "\"{\" ws (string \":\" ws %s (\",\" ws string \":\" ws %s)*)? \"}\" ws", vn, vn);
			return true;
		}
		if (!cJSON_IsFalse(addl))
			return fail(c, "additionalProperties must be a boolean or a schema");
		sb_str(b, "\"{\" ws \"}\" ws");
		return true;
	}
	/* key-value rules, required ones first in declared order, then the
	 * optional ones (any subset, in declared order) */
	size_t n = 0;
	for (const cJSON *p = props->child; p; p = p->next)
		n++;
	char (*kv)[64] = eng_malloc((n ? n : 1) * sizeof *kv);
	bool *is_req = eng_calloc(n ? n : 1, sizeof *is_req);
	if (!kv || !is_req) {
		free(kv);
		free(is_req);
		b->oom = true;
		return false;
	}
	size_t i = 0;
	bool ok = true;
	for (const cJSON *p = props->child; p && ok; p = p->next, i++) {
		for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
			if (cJSON_IsString(r) && !strcmp(r->valuestring, p->string))
				is_req[i] = true;
		char vn[64];
		char seg[200];
		snprintf(seg, sizeof seg, "properties/%.180s", p->string);
		size_t old = path_push(c, seg);
		ok = gen(c, p, p->string, vn, sizeof vn);
		path_pop(c, old);
		if (!ok)
			break;
		new_name(c, p->string, kv[i], sizeof kv[i]);
		struct sb body = {0};
		char *key = cJSON_PrintUnformatted(&(cJSON){.type = cJSON_String, .valuestring = p->string});
		if (!key) {
			b->oom = true;
			ok = false;
			break;
		}
		sb_literal(&body, key, strlen(key));
		free(key);
		sb_printf(&body, " ws \":\" ws %s", vn);
		emit_rule(c, kv[i], &body);
		free(body.s);
	}
	if (ok) {
		sb_str(b, "\"{\" ws ");
		bool any_req = false;
		for (i = 0; i < n; i++)
			if (is_req[i]) {
				sb_printf(b, "%s%s ", any_req ? "\",\" ws " : "", kv[i]);
				any_req = true;
			}
		/* optional ones: after a required one each is ("," ws kv)?;
		 * without one, the first present has no comma */
		size_t n_opt = 0;
		for (i = 0; i < n; i++)
			n_opt += !is_req[i];
		if (n_opt) {
			char (*tail)[64] = eng_malloc((n + 1) * sizeof *tail);
			if (!tail) {
				b->oom = true;
				ok = false;
			} else {
				/* tail_i ::= ("," ws kv_i)? tail_{i+1} over the optional ones */
				tail[n][0] = '\0';
				for (size_t k = n; k-- > 0;) {
					if (is_req[k]) {
						memcpy(tail[k], tail[k + 1], sizeof tail[k]);
						continue;
					}
					new_name(c, "rest", tail[k], sizeof tail[k]);
					struct sb body = {0};
					sb_printf(&body, "(\",\" ws %s)? %s", kv[k], tail[k + 1]);
					emit_rule(c, tail[k], &body);
					free(body.s);
				}
				if (any_req) {
					sb_printf(b, "%s ", tail[0]);
				} else {
					/* first present optional k, then tail_{k+1} */
					sb_str(b, "(");
					bool first = true;
					for (size_t k = 0; k < n; k++) {
						if (is_req[k])
							continue;
						sb_printf(b, "%s%s %s", first ? "" : " | ", kv[k], tail[k + 1]);
						first = false;
					}
					sb_str(b, ")? ");
				}
				free(tail);
			}
		}
		sb_str(b, "\"}\" ws");
	}
	free(kv);
	free(is_req);
	return ok;
}

static bool get_count(struct conv *c, const cJSON *s, const char *key, int64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
	if (!v)
		return true;
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e6 ||
	    v->valuedouble != (double)(int64_t)v->valuedouble)
		return fail(c, "%s must be a non-negative integer up to 1000000", key);
	*out = (int64_t)v->valuedouble;
	return true;
}

/* X repeated lo..hi times (hi < 0: unbounded), separated by SEP. */
static void repeat_sep(struct sb *b, const char *x, const char *sep, int64_t lo, int64_t hi)
{
	if (hi == 0) {
		sb_str(b, "\"\"");
		return;
	}
	if (lo == 0)
		sb_str(b, "(");
	sb_printf(b, "%s (%s %s)", x, sep, x);
	int64_t l1 = lo > 0 ? lo - 1 : 0;
	if (hi < 0)
		sb_printf(b, "{%lld,}", (long long)l1);
	else
		sb_printf(b, "{%lld,%lld}", (long long)l1, (long long)(hi - 1));
	if (lo == 0)
		sb_str(b, ")?");
}

static bool gen_array(struct conv *c, const cJSON *s, struct sb *b, const char *hint)
{
	int64_t lo = 0, hi = -1;
	if (!get_count(c, s, "minItems", &lo) || !get_count(c, s, "maxItems", &hi))
		return false;
	if (hi >= 0 && lo > hi)
		return fail(c, "minItems is above maxItems");
	if (lo > 10000 || hi > 10000)
		return fail(c, "minItems/maxItems over 10000 are not supported");
	const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
	const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(s, "prefixItems");
	c->need_ws = true;
	char in[64];
	if (prefix) {
		if (!cJSON_IsArray(prefix))
			return fail(c, "prefixItems is not an array");
		int np = cJSON_GetArraySize(prefix);
		if (items && !cJSON_IsFalse(items))
			return fail(c, "items beside prefixItems is only supported as false");
		if (lo > np || (hi >= 0 && hi < np))
			return fail(c, "minItems/maxItems beside prefixItems are not supported");
		/* a tuple: all prefix items (the schema allows fewer only when
		 * minItems says so; it does not here) */
		sb_str(b, "\"[\" ws ");
		int k = 0;
		for (const cJSON *it = prefix->child; it; it = it->next, k++) {
			char seg[32];
			snprintf(seg, sizeof seg, "prefixItems/%d", k);
			size_t old = path_push(c, seg);
			bool ok = gen(c, it, hint, in, sizeof in);
			path_pop(c, old);
			if (!ok)
				return false;
			sb_printf(b, "%s%s ", k ? "\",\" ws " : "", in);
		}
		sb_str(b, "\"]\" ws");
		return true;
	}
	if (items && cJSON_IsFalse(items)) {
		sb_str(b, "\"[\" ws \"]\" ws");
		return lo == 0 || fail(c, "minItems above 0 with items false");
	}
	if (items && !cJSON_IsObject(items) && !cJSON_IsTrue(items))
		return fail(c, "items must be a schema");
	if (items && cJSON_IsObject(items)) {
		size_t old = path_push(c, "items");
		bool ok = gen(c, items, hint, in, sizeof in);
		path_pop(c, old);
		if (!ok)
			return false;
	} else {
		snprintf(in, sizeof in, "value");
		c->need_value = true;
	}
	sb_str(b, "\"[\" ws ");
	repeat_sep(b, in, "\",\" ws", lo, hi);
	sb_str(b, " \"]\" ws");
	return true;
}

static bool gen_string(struct conv *c, const cJSON *s, struct sb *b)
{
	int64_t lo = 0, hi = -1;
	if (!get_count(c, s, "minLength", &lo) || !get_count(c, s, "maxLength", &hi))
		return false;
	if (hi >= 0 && lo > hi)
		return fail(c, "minLength is above maxLength");
	if (lo > 10000 || hi > 10000)
		return fail(c, "minLength/maxLength over 10000 are not supported");
	const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern");
	const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(s, "format");
	c->need_ws = true;
	if (pat) {
		if (!cJSON_IsString(pat))
			return fail(c, "pattern is not a string");
		if (lo || hi >= 0)
			return fail(c, "pattern beside minLength/maxLength is not supported");
		const char *p = pat->valuestring;
		size_t n = strlen(p);
		/* JSON Schema patterns search; only anchored ones (^...$)
		 * say what the whole string is */
		if (n < 2 || p[0] != '^' || p[n - 1] != '$' || (n >= 3 && p[n - 2] == '\\'))
			return fail(c, "pattern '%.60s' is not anchored with ^ and $ (not supported)", p);
		struct rx r = {p + 1, p + n - 1, c, b, 0};
		sb_str(b, "\"\\\"\" (");
		if (!rx_alts(&r))
			return false;
		if (r.p != r.end)
			return fail(c, "pattern has an unmatched ')'");
		sb_str(b, ") \"\\\"\" ws");
		return true;
	}
	if (cJSON_IsString(fmt) && !lo && hi < 0) {
		const char *f = fmt->valuestring;
		static const char date[] = "[0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])";
		static const char time_[] = "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? "
					    "(\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])";
		if (!strcmp(f, "date")) {
			sb_printf(b, "\"\\\"\" %s \"\\\"\" ws", date);
			return true;
		}
		if (!strcmp(f, "time")) {
			sb_printf(b, "\"\\\"\" %s \"\\\"\" ws", time_);
			return true;
		}
		if (!strcmp(f, "date-time")) {
			sb_printf(b, "\"\\\"\" %s \"T\" %s \"\\\"\" ws", date, time_);
			return true;
		}
		if (!strcmp(f, "uuid")) {
			sb_str(b, "\"\\\"\" [0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{12} "
				  "\"\\\"\" ws");
			return true;
		}
		/* other formats are annotations: any string is valid */
	}
	c->need_char = true;
	if (!lo && hi < 0) {
		c->need_string = true;
		sb_str(b, "string");
	} else if (hi < 0) {
		sb_printf(b, "\"\\\"\" char{%lld,} \"\\\"\" ws", (long long)lo);
	} else {
		sb_printf(b, "\"\\\"\" char{%lld,%lld} \"\\\"\" ws", (long long)lo, (long long)hi);
	}
	return true;
}

static bool get_bound(struct conv *c, const cJSON *s, const char *key, bool *has, double *v)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, key);
	if (!x)
		return true;
	if (!cJSON_IsNumber(x))
		return fail(c, "%s is not a number", key);
	*has = true;
	*v = x->valuedouble;
	return true;
}

static bool gen_number(struct conv *c, const cJSON *s, struct sb *b, bool integer)
{
	bool hmin = false, hmax = false, hxmin = false, hxmax = false;
	double vmin = 0, vmax = 0, vxmin = 0, vxmax = 0;
	if (!get_bound(c, s, "minimum", &hmin, &vmin) || !get_bound(c, s, "maximum", &hmax, &vmax) ||
	    !get_bound(c, s, "exclusiveMinimum", &hxmin, &vxmin) ||
	    !get_bound(c, s, "exclusiveMaximum", &hxmax, &vxmax))
		return false;
	c->need_ws = true;
	if (integer) {
		if (!hmin && !hmax && !hxmin && !hxmax) {
			c->need_integer = true;
			sb_str(b, "integer");
			return true;
		}
		/* the tightest integer bounds */
		bool has_lo = false, has_hi = false;
		double lo = 0, hi = 0;
		if (hmin)
			has_lo = true, lo = vmin;
		if (hxmin && (!has_lo || vxmin >= lo))
			has_lo = true, lo = vxmin + (vxmin == (double)(int64_t)vxmin ? 1 : 0);
		if (hmax)
			has_hi = true, hi = vmax;
		if (hxmax && (!has_hi || vxmax <= hi))
			has_hi = true, hi = vxmax - (vxmax == (double)(int64_t)vxmax ? 1 : 0);
		if ((has_lo && (lo > 1e18 || lo < -1e18)) || (has_hi && (hi > 1e18 || hi < -1e18)))
			return fail(c, "integer bounds past 18 digits are not supported");
		/* fractional bounds round inwards */
		int64_t ilo = 0, ihi = 0;
		if (has_lo) {
			ilo = (int64_t)lo;
			if ((double)ilo < lo)
				ilo++;
		}
		if (has_hi) {
			ihi = (int64_t)hi;
			if ((double)ihi > hi)
				ihi--;
		}
		return int_range(c, b, has_lo, ilo, has_hi, ihi);
	}
	if (hmax || hxmax || hxmin)
		return fail(c, "number bounds other than minimum 0 are not supported (integer bounds are)");
	if (hmin && vmin != 0)
		return fail(c, "number bounds other than minimum 0 are not supported (integer bounds are)");
	if (hmin) {
		/* non-negative: the number rule without its sign */
		sb_str(b, "([0] | [1-9] [0-9]{0,15}) (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})? ws");
		return true;
	}
	c->need_number = true;
	sb_str(b, "number");
	return true;
}

/* A JSON literal for a const / enum value. */
static bool gen_literal(struct conv *c, const cJSON *v, struct sb *b)
{
	char *t = cJSON_PrintUnformatted(v);
	if (!t) {
		b->oom = true;
		return false;
	}
	sb_literal(b, t, strlen(t));
	free(t);
	sb_str(b, " ws");
	c->need_ws = true;
	return true;
}

static bool gen_type(struct conv *c, const cJSON *s, const char *type, struct sb *b, const char *hint)
{
	if (!strcmp(type, "object"))
		return gen_object(c, s, b, hint);
	if (!strcmp(type, "array"))
		return gen_array(c, s, b, hint);
	if (!strcmp(type, "string"))
		return gen_string(c, s, b);
	if (!strcmp(type, "integer"))
		return gen_number(c, s, b, true);
	if (!strcmp(type, "number"))
		return gen_number(c, s, b, false);
	if (!strcmp(type, "boolean")) {
		c->need_ws = true;
		sb_str(b, "(\"true\" | \"false\") ws");
		return true;
	}
	if (!strcmp(type, "null")) {
		c->need_ws = true;
		sb_str(b, "\"null\" ws");
		return true;
	}
	return fail(c, "type '%.40s' is not a JSON Schema type", type);
}

/* Alternatives of the schemas in array ARR (anyOf / oneOf). */
static bool gen_alts(struct conv *c, const cJSON *arr, const char *key, struct sb *b, const char *hint)
{
	if (!cJSON_IsArray(arr) || !arr->child)
		return fail(c, "%s must be a non-empty array", key);
	sb_str(b, "(");
	int k = 0;
	for (const cJSON *it = arr->child; it; it = it->next, k++) {
		char seg[32], n[64];
		snprintf(seg, sizeof seg, "%s/%d", key, k);
		size_t old = path_push(c, seg);
		bool ok = gen(c, it, hint, n, sizeof n);
		path_pop(c, old);
		if (!ok)
			return false;
		sb_printf(b, "%s%s", k ? " | " : "", n);
	}
	sb_str(b, ")");
	return true;
}

/* Converts schema S into a rule; its name goes to NAME. */
static bool gen(struct conv *c, const cJSON *s, const char *hint, char *name, size_t cap)
{
	if (c->rc)
		return false;
	if (++c->depth > MAX_DEPTH) {
		c->depth--;
		return fail(c, "the schema nests over %d deep", MAX_DEPTH);
	}
	bool ok = true;
	struct sb b = {0};
	if (cJSON_IsTrue(s) || (cJSON_IsObject(s) && !s->child)) {
		c->need_value = true;
		snprintf(name, cap, "value");
		goto out;
	}
	if (cJSON_IsFalse(s)) {
		ok = fail(c, "the schema false admits no value");
		goto out;
	}
	if (!cJSON_IsObject(s)) {
		ok = fail(c, "a schema must be an object or a boolean");
		goto out;
	}
	if (!(ok = check_keywords(c, s)))
		goto out;
	const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
	if (ref) {
		const cJSON *t = NULL;
		if (!cJSON_IsString(ref)) {
			ok = fail(c, "$ref is not a string");
			goto out;
		}
		for (const cJSON *k = s->child; k; k = k->next)
			if (strcmp(k->string, "$ref") && !known_keyword(k->string, NULL)) {
				ok = fail(c, "'%s' beside $ref is not supported", k->string);
				goto out;
			}
		if (!(ok = resolve_ref(c, ref->valuestring, &t)))
			goto out;
		for (unsigned i = 0; i < c->n_refs; i++)
			if (c->refs[i].target == t) {
				snprintf(name, cap, "%s", c->refs[i].name);
				goto out;
			}
		if (c->n_refs == MAX_REFS) {
			ok = fail(c, "over %d $ref targets", MAX_REFS);
			goto out;
		}
		struct ref *r = &c->refs[c->n_refs++];
		r->target = t;
		const char *slash = strrchr(ref->valuestring, '/');
		new_name(c, slash ? slash + 1 : "root", r->name, sizeof r->name);
		snprintf(name, cap, "%s", r->name);
		/* the body under the reserved name: a rule that refers to itself */
		char inner[64];
		if (!(ok = gen(c, t, slash ? slash + 1 : "root", inner, sizeof inner)))
			goto out;
		sb_str(&b, inner);
		emit_rule(c, r->name, &b);
		goto out;
	}
	const cJSON *cst = cJSON_GetObjectItemCaseSensitive(s, "const");
	const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
	const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
	const cJSON *one = cJSON_GetObjectItemCaseSensitive(s, "oneOf");
	const cJSON *all = cJSON_GetObjectItemCaseSensitive(s, "allOf");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
	const cJSON *nullable = cJSON_GetObjectItemCaseSensitive(s, "nullable");
	int kinds = !!cst + !!en + !!any + !!one + !!all;
	if (kinds > 1 || (kinds && type && !cst && !en)) {
		ok = fail(c, "const, enum, anyOf, oneOf, allOf and type together are not supported");
		goto out;
	}
	if (cst) {
		ok = gen_literal(c, cst, &b);
	} else if (en) {
		if (!cJSON_IsArray(en) || !en->child) {
			ok = fail(c, "enum must be a non-empty array");
			goto out;
		}
		sb_str(&b, "(");
		for (const cJSON *v = en->child; v && ok; v = v->next) {
			if (v != en->child)
				sb_str(&b, " | ");
			ok = gen_literal(c, v, &b);
		}
		sb_str(&b, ")");
	} else if (any || one) {
		ok = gen_alts(c, any ? any : one, any ? "anyOf" : "oneOf", &b, hint);
	} else if (all) {
		if (!cJSON_IsArray(all) || cJSON_GetArraySize(all) != 1) {
			ok = fail(c, "allOf is supported with one schema only");
			goto out;
		}
		size_t old = path_push(c, "allOf/0");
		char n[64];
		ok = gen(c, all->child, hint, n, sizeof n);
		path_pop(c, old);
		sb_str(&b, n);
	} else if (cJSON_IsString(type)) {
		ok = gen_type(c, s, type->valuestring, &b, hint);
	} else if (cJSON_IsArray(type) && type->child) {
		sb_str(&b, "(");
		for (const cJSON *t = type->child; t && ok; t = t->next) {
			if (!cJSON_IsString(t)) {
				ok = fail(c, "type lists must hold strings");
				break;
			}
			if (t != type->child)
				sb_str(&b, " | ");
			struct sb one_b = {0};
			ok = gen_type(c, s, t->valuestring, &one_b, hint);
			sb_str(&b, "(");
			if (one_b.s)
				sb_add(&b, one_b.s, one_b.n);
			sb_str(&b, ")");
			if (one_b.oom)
				b.oom = true;
			free(one_b.s);
		}
		sb_str(&b, ")");
	} else if (type) {
		ok = fail(c, "type must be a string or a list of strings");
	} else if (cJSON_GetObjectItemCaseSensitive(s, "properties") ||
		   cJSON_GetObjectItemCaseSensitive(s, "additionalProperties") ||
		   cJSON_GetObjectItemCaseSensitive(s, "required")) {
		ok = gen_object(c, s, &b, hint);
	} else if (cJSON_GetObjectItemCaseSensitive(s, "items") || cJSON_GetObjectItemCaseSensitive(s, "prefixItems")) {
		ok = gen_array(c, s, &b, hint);
	} else {
		/* only annotations or type-specific keywords without a type:
		 * those apply only to their type, so any value is valid except
		 * where one constrains; refuse rather than guess */
		for (const cJSON *k = s->child; k; k = k->next)
			if (!known_keyword(k->string, NULL) && strcmp(k->string, "nullable")) {
				ok = fail(c, "'%s' without a type is not supported", k->string);
				goto out;
			}
		c->need_value = true;
		sb_str(&b, "value");
	}
	if (ok && cJSON_IsTrue(nullable)) {
		struct sb w = {0};
		sb_str(&w, "(");
		if (b.s)
			sb_add(&w, b.s, b.n);
		sb_str(&w, ") | \"null\" ws");
		c->need_ws = true;
		free(b.s);
		b = w;
	}
	if (ok) {
		new_name(c, hint, name, cap);
		emit_rule(c, name, &b);
	}
out:
	free(b.s);
	c->depth--;
	return ok && !c->rc;
}

int jsonschema_to_gbnf(const char *text, size_t len, char **out, char *err, size_t errlen)
{
	char dummy[1];
	if (!err || !errlen)
		err = dummy, errlen = sizeof dummy;
	err[0] = '\0';
	*out = NULL;
	cJSON *root = cJSON_ParseWithLength(text, len);
	if (!root) {
		snprintf(err, errlen, "not valid JSON");
		return JSONSCHEMA_E_SCHEMA;
	}
	struct conv *c = eng_calloc(1, sizeof *c);
	if (!c) {
		cJSON_Delete(root);
		snprintf(err, errlen, "out of memory");
		return JSONSCHEMA_E_NOMEM;
	}
	c->root = root;
	c->err = err;
	c->errlen = errlen;
	char top[64];
	/* the root may be referenced as "#": reserve its name */
	c->refs[c->n_refs].target = root;
	snprintf(c->refs[c->n_refs++].name, sizeof c->refs[0].name, "root");
	bool ok = gen(c, root, "root-value", top, sizeof top);
	int rc = JSONSCHEMA_OK;
	struct sb g = {0};
	if (ok) {
		sb_printf(&g, "root ::= %s\n", top);
		if (c->rules.s)
			sb_add(&g, c->rules.s, c->rules.n);
		if (c->need_value) {
			c->need_string = c->need_number = c->need_ws = true;
			sb_str(&g, "value ::= (\"{\" ws (string \":\" ws value (\",\" ws string \":\" ws value)*)? \"}\" | "
				   "\"[\" ws (value (\",\" ws value)*)? \"]\" | \"true\" | \"false\" | \"null\") ws | "
				   "string | number\n");
		}
		if (c->need_string) {
			c->need_char = true;
			sb_str(&g, "string ::= \"\\\"\" char* \"\\\"\" ws\n");
		}
		if (c->need_char)
			/* one character of a JSON string; \u escapes of surrogates are left out,
			 * so that a character is one code point (minLength, maxLength) */
			sb_str(&g, "char ::= [^\"\\\\\\x00-\\x1F\\x7F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-CefEF] "
				   "[0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))\n");
		if (c->need_number)
			sb_str(&g, "number ::= \"-\"? ([0] | [1-9] [0-9]{0,15}) (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})? ws\n");
		if (c->need_integer)
			sb_str(&g, "integer ::= \"-\"? ([0] | [1-9] [0-9]{0,15}) ws\n");
		sb_str(&g, "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n");
		if (g.oom || c->rules.oom) {
			snprintf(err, errlen, "out of memory (or a grammar over %zu MiB)", MAX_OUT >> 20);
			rc = JSONSCHEMA_E_NOMEM;
		} else {
			/* what we wrote must compile; the one way it cannot is a
			 * $ref cycle that reaches itself before any value */
			struct gbnf *gg = NULL;
			char gerr[256];
			int prc = gbnf_parse(g.s, g.n, NULL, NULL, 0, &gg, gerr, sizeof gerr);
			gbnf_free(gg);
			if (prc == GBNF_E_NOMEM) {
				snprintf(err, errlen, "out of memory");
				rc = JSONSCHEMA_E_NOMEM;
			} else if (prc) {
				snprintf(err, errlen, "%s", strstr(gerr, "left-recursive")
								 ? "a $ref cycle reaches the same schema before any value is written"
								 : gerr);
				rc = JSONSCHEMA_E_SCHEMA;
			}
		}
	} else {
		rc = c->rc ? c->rc : JSONSCHEMA_E_NOMEM;
		if (!c->rc)
			snprintf(err, errlen, "out of memory");
	}
	if (rc)
		free(g.s);
	else
		*out = g.s;
	free(c->rules.s);
	free(c);
	cJSON_Delete(root);
	return rc;
}

int engine_json_schema_grammar(const char *schema, size_t len, char **out, char *err, size_t errlen)
{
	int rc = jsonschema_to_gbnf(schema, len, out, err, errlen);
	return rc == JSONSCHEMA_OK ? 0 : rc == JSONSCHEMA_E_NOMEM ? ENGINE_E_NOMEM : ENGINE_E_INVAL;
}
