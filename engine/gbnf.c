/*
 * gbnf.c - see gbnf.h.  A recursive-descent parser over the bytes of the
 * grammar.  Each rule's alternatives are gathered in scratch vectors and
 * appended to the flat tables when the rule ends, so the symbols of one
 * alternative are contiguous; groups and repetitions become helper rules
 * committed before the rule that uses them.  Rule names are looked up in a
 * linear table: grammars have tens to a few thousand rules, parsed once per
 * request.  Recursion follows the nesting of parentheses only, and that is
 * bounded (MAX_DEPTH), so a hostile grammar cannot exhaust the C stack.
 */
#include "gbnf.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define MAX_DEPTH 64

struct symvec {
	struct gbnf_sym *v;
	uint32_t n, cap;
};

struct altlist {
	struct symvec *v;
	uint32_t n, cap;
};

struct parser {
	const char *s, *end, *p;
	struct gbnf *g;
	uint32_t cap_syms, cap_alts, cap_rules, cap_classes, cap_ranges;
	bool *defined;      /* per rule: has a body */
	uint32_t *ref_line; /* per rule: line of the first reference */
	uint32_t *hash;     /* open addressing: rule index + 1, 0 = free */
	uint32_t hash_cap;  /* a power of two, over twice n_rules */
	uint32_t n_helpers; /* numbers helper rules */
	const char *line_at; /* line_of()'s memory */
	uint32_t line;
	int depth;
	int rc;
	gbnf_token_lookup lookup;
	void *lookup_ctx;
	uint32_t n_vocab;
	char *err;
	size_t errlen;
};

/* Line of AT, counted on from the last answer (the parser moves forward). */
static uint32_t line_of(struct parser *ps, const char *at)
{
	if (!ps->line_at || at < ps->line_at) {
		ps->line_at = ps->s;
		ps->line = 1;
	}
	for (; ps->line_at < at && ps->line_at < ps->end; ps->line_at++)
		ps->line += *ps->line_at == '\n';
	return ps->line;
}

static bool fail_at(struct parser *ps, const char *at, const char *fmt, ...)
{
	if (ps->rc)
		return false;
	ps->rc = GBNF_E_SYNTAX;
	int k = snprintf(ps->err, ps->errlen, "line %u: ", line_of(ps, at));
	if (k >= 0 && (size_t)k < ps->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(ps->err + k, ps->errlen - (size_t)k, fmt, ap);
		va_end(ap);
	}
	return false;
}

static bool nomem(struct parser *ps)
{
	if (!ps->rc) {
		ps->rc = GBNF_E_NOMEM;
		snprintf(ps->err, ps->errlen, "out of memory for the grammar");
	}
	return false;
}

/* Grows *v (capacity *cap elements of size sz) to hold n. */
static bool grow(struct parser *ps, void **v, uint32_t *cap, uint32_t n, size_t sz)
{
	if (n <= *cap)
		return true;
	uint32_t nc = *cap ? *cap : 16;
	while (nc < n)
		nc = nc > UINT32_MAX / 2 ? n : nc * 2;
	void *nv = eng_realloc(*v, (size_t)nc * sz);
	if (!nv)
		return nomem(ps);
	*v = nv;
	*cap = nc;
	return true;
}

static bool sym_push(struct parser *ps, struct symvec *sv, uint32_t kind, uint32_t arg)
{
	if (sv->n >= GBNF_MAX_SYMS)
		return fail_at(ps, ps->p, "the grammar is too large (over %u symbols)", GBNF_MAX_SYMS);
	if (!grow(ps, (void **)&sv->v, &sv->cap, sv->n + 1, sizeof *sv->v))
		return false;
	sv->v[sv->n++] = (struct gbnf_sym){kind, arg};
	return true;
}

static void altlist_free(struct altlist *al)
{
	for (uint32_t i = 0; i < al->n; i++)
		free(al->v[i].v);
	free(al->v);
	memset(al, 0, sizeof *al);
}

static struct symvec *alt_new(struct parser *ps, struct altlist *al)
{
	if (!grow(ps, (void **)&al->v, &al->cap, al->n + 1, sizeof *al->v))
		return NULL;
	memset(&al->v[al->n], 0, sizeof al->v[al->n]);
	return &al->v[al->n++];
}

/* ---- rules ---- */

static uint32_t name_hash(const char *name, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 16777619u;
	return h;
}

static int64_t rule_find(const struct parser *ps, const char *name, size_t len)
{
	if (!ps->hash_cap)
		return -1;
	for (uint32_t i = name_hash(name, len) & (ps->hash_cap - 1);; i = (i + 1) & (ps->hash_cap - 1)) {
		uint32_t r = ps->hash[i];
		if (!r)
			return -1;
		const char *nm = ps->g->rules[r - 1].name;
		if (strlen(nm) == len && memcmp(nm, name, len) == 0)
			return r - 1;
	}
}

static void hash_put(struct parser *ps, uint32_t r)
{
	const char *nm = ps->g->rules[r].name;
	uint32_t i = name_hash(nm, strlen(nm)) & (ps->hash_cap - 1);
	while (ps->hash[i])
		i = (i + 1) & (ps->hash_cap - 1);
	ps->hash[i] = r + 1;
}

/* Keeps the name table under half full. */
static bool hash_reserve(struct parser *ps, uint32_t n_rules)
{
	if ((uint64_t)n_rules * 2 < ps->hash_cap)
		return true;
	uint32_t cap = ps->hash_cap ? ps->hash_cap * 2 : 64;
	uint32_t *h = eng_calloc(cap, sizeof *h);
	if (!h)
		return nomem(ps);
	free(ps->hash);
	ps->hash = h;
	ps->hash_cap = cap;
	for (uint32_t r = 0; r < ps->g->n_rules; r++)
		hash_put(ps, r);
	return true;
}

static int64_t rule_add(struct parser *ps, const char *name, size_t len)
{
	struct gbnf *g = ps->g;
	uint32_t cap = ps->cap_rules;
	if (!grow(ps, (void **)&g->rules, &ps->cap_rules, g->n_rules + 1, sizeof *g->rules))
		return -1;
	uint32_t c2 = cap;
	if (!grow(ps, (void **)&ps->defined, &c2, ps->cap_rules, sizeof *ps->defined))
		return -1;
	c2 = cap;
	if (!grow(ps, (void **)&ps->ref_line, &c2, ps->cap_rules, sizeof *ps->ref_line))
		return -1;
	char *nm = eng_malloc(len + 1);
	if (!nm || !hash_reserve(ps, g->n_rules + 1))
		return free(nm), nomem(ps), -1;
	memcpy(nm, name, len);
	nm[len] = '\0';
	g->rules[g->n_rules] = (struct gbnf_rule){0, 0, nm};
	ps->defined[g->n_rules] = false;
	ps->ref_line[g->n_rules] = line_of(ps, ps->p);
	hash_put(ps, g->n_rules);
	return g->n_rules++;
}

/* A helper rule named after BASE: base_1, base_2, ... */
static int64_t rule_helper(struct parser *ps, uint32_t base)
{
	char name[96];
	const char *b = ps->g->rules[base].name;
	for (;;) {
		int n = snprintf(name, sizeof name, "%.60s_%u", b, ++ps->n_helpers);
		if (n < 0 || (size_t)n >= sizeof name)
			return fail_at(ps, ps->p, "rule name too long"), -1;
		if (rule_find(ps, name, (size_t)n) < 0) {
			int64_t r = rule_add(ps, name, (size_t)n);
			if (r >= 0)
				ps->defined[r] = true;
			return r;
		}
	}
}

/* Appends the alternatives of AL to the flat tables as rule R's body. */
static bool rule_commit(struct parser *ps, uint32_t r, const struct altlist *al)
{
	struct gbnf *g = ps->g;
	uint64_t need = g->n_syms;
	for (uint32_t i = 0; i < al->n; i++)
		need += al->v[i].n + 1ull;
	if (need > GBNF_MAX_SYMS)
		return fail_at(ps, ps->p, "the grammar is too large (over %u symbols)", GBNF_MAX_SYMS);
	if (!grow(ps, (void **)&g->syms, &ps->cap_syms, (uint32_t)need, sizeof *g->syms) ||
	    !grow(ps, (void **)&g->alts, &ps->cap_alts, g->n_alts + al->n, sizeof *g->alts))
		return false;
	g->rules[r].first_alt = g->n_alts;
	g->rules[r].n_alts = al->n;
	for (uint32_t i = 0; i < al->n; i++) {
		g->alts[g->n_alts++] = g->n_syms;
		if (al->v[i].n)
			memcpy(g->syms + g->n_syms, al->v[i].v, al->v[i].n * sizeof *g->syms);
		g->n_syms += al->v[i].n;
		g->syms[g->n_syms++] = (struct gbnf_sym){GBNF_END, 0};
	}
	ps->defined[r] = true;
	return true;
}

/* A helper rule with the given alternatives (each a slice of symbols; a
 * NULL slice is the empty alternative).  Returns its index or -1. */
static int64_t helper_of(struct parser *ps, uint32_t base, const struct gbnf_sym *const *alt, const uint32_t *n,
			 uint32_t n_alts)
{
	int64_t r = rule_helper(ps, base);
	if (r < 0)
		return -1;
	struct altlist al = {0};
	bool ok = true;
	for (uint32_t i = 0; i < n_alts && ok; i++) {
		struct symvec *sv = alt_new(ps, &al);
		ok = sv != NULL;
		for (uint32_t j = 0; ok && j < n[i]; j++)
			ok = sym_push(ps, sv, alt[i][j].kind, alt[i][j].arg);
	}
	ok = ok && rule_commit(ps, (uint32_t)r, &al);
	altlist_free(&al);
	return ok ? r : -1;
}

/* ---- characters ---- */

static bool is_word(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Skips blanks and comments; newlines too when NL. */
static void skip_space(struct parser *ps, bool nl)
{
	while (ps->p < ps->end) {
		char c = *ps->p;
		if (c == ' ' || c == '\t' || (nl && (c == '\n' || c == '\r'))) {
			ps->p++;
		} else if (c == '#') {
			while (ps->p < ps->end && *ps->p != '\n')
				ps->p++;
		} else {
			break;
		}
	}
}

/* Decodes one UTF-8 character; false on invalid input. */
static bool utf8_next(struct parser *ps, uint32_t *cp)
{
	const unsigned char *q = (const unsigned char *)ps->p;
	size_t left = (size_t)(ps->end - ps->p);
	if (!left)
		return fail_at(ps, ps->p, "unexpected end of the grammar");
	unsigned char c = q[0];
	uint32_t n, v;
	if (c < 0x80) {
		n = 1, v = c;
	} else if ((c & 0xe0) == 0xc0 && c >= 0xc2) {
		n = 2, v = c & 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3, v = c & 0x0f;
	} else if ((c & 0xf8) == 0xf0 && c <= 0xf4) {
		n = 4, v = c & 0x07;
	} else {
		return fail_at(ps, ps->p, "invalid UTF-8");
	}
	if (left < n)
		return fail_at(ps, ps->p, "invalid UTF-8");
	for (uint32_t i = 1; i < n; i++) {
		if ((q[i] & 0xc0) != 0x80)
			return fail_at(ps, ps->p, "invalid UTF-8");
		v = v << 6 | (q[i] & 0x3f);
	}
	if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10ffff)) || (v >= 0xd800 && v <= 0xdfff))
		return fail_at(ps, ps->p, "invalid UTF-8");
	ps->p += n;
	*cp = v;
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* One character of a literal or class, escapes decoded. */
static bool char_next(struct parser *ps, uint32_t *cp)
{
	if (ps->p >= ps->end)
		return fail_at(ps, ps->p, "unexpected end of the grammar");
	if (*ps->p != '\\')
		return utf8_next(ps, cp);
	const char *at = ps->p++;
	if (ps->p >= ps->end)
		return fail_at(ps, at, "unexpected end of the grammar after '\\'");
	char c = *ps->p++;
	int digits = 0;
	switch (c) {
	case 'x': digits = 2; break;
	case 'u': digits = 4; break;
	case 'U': digits = 8; break;
	case 'n': *cp = '\n'; return true;
	case 'r': *cp = '\r'; return true;
	case 't': *cp = '\t'; return true;
	case '\\': case '"': case '[': case ']': case '-': case '^':
		*cp = (unsigned char)c;
		return true;
	default:
		return fail_at(ps, at, "unknown escape '\\%c'", c);
	}
	uint32_t v = 0;
	for (int i = 0; i < digits; i++) {
		int h = ps->p < ps->end ? hexval(*ps->p) : -1;
		if (h < 0)
			return fail_at(ps, at, "'\\%c' needs %d hex digits", c, digits);
		v = v << 4 | (uint32_t)h;
		ps->p++;
	}
	if (v > 0x10ffff)
		return fail_at(ps, at, "code point U+%X is past U+10FFFF", v);
	*cp = v;
	return true;
}

static int64_t class_add(struct parser *ps, bool negated)
{
	struct gbnf *g = ps->g;
	if (!grow(ps, (void **)&g->classes, &ps->cap_classes, g->n_classes + 1, sizeof *g->classes))
		return -1;
	g->classes[g->n_classes] = (struct gbnf_class){g->n_ranges, 0, negated};
	return g->n_classes++;
}

static bool range_add(struct parser *ps, uint32_t c, uint32_t lo, uint32_t hi)
{
	struct gbnf *g = ps->g;
	if (g->n_ranges >= GBNF_MAX_SYMS)
		return fail_at(ps, ps->p, "the grammar is too large (over %u ranges)", GBNF_MAX_SYMS);
	if (!grow(ps, (void **)&g->ranges, &ps->cap_ranges, g->n_ranges + 1, sizeof *g->ranges))
		return false;
	g->ranges[g->n_ranges++] = (struct gbnf_range){lo, hi};
	g->classes[c].n_ranges++;
	return true;
}

/* ---- items ---- */

static bool parse_alternates(struct parser *ps, uint32_t rule, bool in_group);

static bool parse_uint(struct parser *ps, uint32_t *v)
{
	const char *at = ps->p;
	uint64_t x = 0;
	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
		x = x * 10 + (uint64_t)(*ps->p++ - '0');
		if (x > UINT32_MAX)
			return fail_at(ps, at, "number too large");
	}
	if (ps->p == at)
		return fail_at(ps, at, "expected a number");
	*v = (uint32_t)x;
	return true;
}

static bool parse_token(struct parser *ps, struct symvec *sv, bool negated)
{
	const char *at = ps->p;
	ps->p++; /* '<' */
	int32_t id;
	/* <[123]> is an id; <[TOOL_CALLS]> the text of a token that has brackets */
	if (ps->p + 1 < ps->end && *ps->p == '[' && ps->p[1] >= '0' && ps->p[1] <= '9') {
		ps->p++;
		uint32_t v;
		if (!parse_uint(ps, &v))
			return false;
		if (ps->p + 1 >= ps->end || ps->p[0] != ']' || ps->p[1] != '>')
			return fail_at(ps, at, "expected ']>' after a token id");
		ps->p += 2;
		if (ps->n_vocab && v >= ps->n_vocab)
			return fail_at(ps, at, "token id %u is past the vocabulary (%u tokens)", v, ps->n_vocab);
		id = (int32_t)(v & 0x7fffffff);
	} else {
		const char *q = ps->p;
		while (q < ps->end && *q != '>' && *q != '\n')
			q++;
		if (q >= ps->end || *q != '>')
			return fail_at(ps, at, "unterminated token '<...>'");
		/* the angle brackets are part of the token's text */
		size_t len = (size_t)(q + 1 - at);
		id = ps->lookup ? ps->lookup(ps->lookup_ctx, at, len) : -1;
		if (id < 0)
			return fail_at(ps, at, "'%.*s' is not a single token of this vocabulary", (int)(len > 80 ? 80 : len),
				       at);
		ps->p = q + 1;
	}
	return sym_push(ps, sv, negated ? GBNF_TOKEN_NOT : GBNF_TOKEN, (uint32_t)id);
}

/* Applies a repetition {lo, hi} (hi UINT32_MAX: unbounded) to the item
 * sv->v[start..n) of rule RULE. */
static bool repeat(struct parser *ps, uint32_t rule, struct symvec *sv, uint32_t start, uint32_t lo, uint32_t hi)
{
	if (sv->n == start)
		return fail_at(ps, ps->p, "a repetition needs something before it");
	struct gbnf_sym x = sv->v[start];
	if (sv->n - start > 1) {
		const struct gbnf_sym *a[1] = {sv->v + start};
		uint32_t n[1] = {sv->n - start};
		int64_t h = helper_of(ps, rule, a, n, 1);
		if (h < 0)
			return false;
		x = (struct gbnf_sym){GBNF_REF, (uint32_t)h};
	}
	sv->n = start;
	for (uint32_t i = 0; i < lo; i++)
		if (!sym_push(ps, sv, x.kind, x.arg))
			return false;
	if (hi == UINT32_MAX) {
		/* R ::= x R | empty */
		int64_t r = rule_helper(ps, rule);
		if (r < 0)
			return false;
		struct altlist al = {0};
		struct symvec *a = alt_new(ps, &al);
		bool ok = a && sym_push(ps, a, x.kind, x.arg) && sym_push(ps, a, GBNF_REF, (uint32_t)r) &&
			  alt_new(ps, &al) && rule_commit(ps, (uint32_t)r, &al);
		altlist_free(&al);
		return ok && sym_push(ps, sv, GBNF_REF, (uint32_t)r);
	}
	/* R_1 ::= x | empty; R_k ::= x R_{k-1} | empty */
	int64_t prev = -1;
	for (uint32_t k = lo; k < hi; k++) {
		struct gbnf_sym seq[2] = {x, {GBNF_REF, (uint32_t)prev}};
		const struct gbnf_sym *a[2] = {seq, NULL};
		uint32_t n[2] = {prev < 0 ? 1u : 2u, 0};
		prev = helper_of(ps, rule, a, n, 2);
		if (prev < 0)
			return false;
	}
	return prev < 0 || sym_push(ps, sv, GBNF_REF, (uint32_t)prev);
}

/* One sequence of items, up to '|', ')' or (outside groups) a newline. */
static bool parse_sequence(struct parser *ps, uint32_t rule, struct symvec *sv, bool in_group)
{
	uint32_t last = UINT32_MAX; /* start of the last item, for repetitions */
	for (;;) {
		skip_space(ps, in_group);
		if (ps->p >= ps->end)
			return true;
		const char *at = ps->p;
		char c = *ps->p;
		if (c == '"') {
			ps->p++;
			last = sv->n;
			while (ps->p < ps->end && *ps->p != '"') {
				uint32_t cp;
				int64_t k;
				if (*ps->p == '\n')
					return fail_at(ps, at, "unterminated string literal");
				if (!char_next(ps, &cp) || (k = class_add(ps, false)) < 0 ||
				    !range_add(ps, (uint32_t)k, cp, cp) || !sym_push(ps, sv, GBNF_CLASS, (uint32_t)k))
					return false;
			}
			if (ps->p >= ps->end)
				return fail_at(ps, at, "unterminated string literal");
			ps->p++;
			if (sv->n == last)
				last = UINT32_MAX; /* "" is nothing to repeat */
		} else if (c == '[') {
			ps->p++;
			bool neg = ps->p < ps->end && *ps->p == '^';
			ps->p += neg;
			int64_t k = class_add(ps, neg);
			if (k < 0)
				return false;
			while (ps->p < ps->end && *ps->p != ']') {
				uint32_t lo, hi;
				if (!char_next(ps, &lo))
					return false;
				hi = lo;
				if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
					ps->p++;
					if (!char_next(ps, &hi))
						return false;
					if (hi < lo)
						return fail_at(ps, at, "character range U+%X-U+%X is reversed", lo, hi);
				}
				if (!range_add(ps, (uint32_t)k, lo, hi))
					return false;
			}
			if (ps->p >= ps->end)
				return fail_at(ps, at, "unterminated character class");
			ps->p++;
			last = sv->n;
			if (!sym_push(ps, sv, GBNF_CLASS, (uint32_t)k))
				return false;
		} else if (c == '.') {
			ps->p++;
			int64_t k = class_add(ps, true);
			last = sv->n;
			if (k < 0 || !sym_push(ps, sv, GBNF_CLASS, (uint32_t)k))
				return false;
		} else if (c == '<' || (c == '!' && ps->p + 1 < ps->end && ps->p[1] == '<')) {
			ps->p += c == '!';
			last = sv->n;
			if (!parse_token(ps, sv, c == '!'))
				return false;
		} else if (is_word((unsigned char)c)) {
			const char *q = ps->p;
			while (q < ps->end && is_word((unsigned char)*q))
				q++;
			/* a name followed by ::= starts the next rule: the
			 * sequence ended at the newline before it */
			const char *t = q;
			while (t < ps->end && (*t == ' ' || *t == '\t'))
				t++;
			if (t + 2 < ps->end && t[0] == ':' && t[1] == ':' && t[2] == '=')
				return fail_at(ps, at, "a rule definition inside another rule (missing newline or ')'?)");
			int64_t r = rule_find(ps, ps->p, (size_t)(q - ps->p));
			if (r < 0)
				r = rule_add(ps, ps->p, (size_t)(q - ps->p));
			if (r < 0)
				return false;
			ps->p = q;
			last = sv->n;
			if (!sym_push(ps, sv, GBNF_REF, (uint32_t)r))
				return false;
		} else if (c == '(') {
			ps->p++;
			if (++ps->depth > MAX_DEPTH)
				return fail_at(ps, at, "groups nested over %d deep", MAX_DEPTH);
			int64_t h = rule_helper(ps, rule);
			if (h < 0 || !parse_alternates(ps, (uint32_t)h, true))
				return false;
			ps->depth--;
			skip_space(ps, true);
			if (ps->p >= ps->end || *ps->p != ')')
				return fail_at(ps, at, "unclosed '('");
			ps->p++;
			last = sv->n;
			if (!sym_push(ps, sv, GBNF_REF, (uint32_t)h))
				return false;
		} else if (c == '*' || c == '+' || c == '?') {
			ps->p++;
			if (last == UINT32_MAX)
				return fail_at(ps, at, "'%c' with nothing before it to repeat", c);
			uint32_t lo = c == '+', hi = c == '?' ? 1 : UINT32_MAX;
			if (!repeat(ps, rule, sv, last, lo, hi))
				return false;
			last = UINT32_MAX;
		} else if (c == '{') {
			ps->p++;
			if (last == UINT32_MAX)
				return fail_at(ps, at, "'{' with nothing before it to repeat");
			uint32_t lo, hi;
			skip_space(ps, false);
			if (!parse_uint(ps, &lo))
				return false;
			skip_space(ps, false);
			hi = lo;
			if (ps->p < ps->end && *ps->p == ',') {
				ps->p++;
				skip_space(ps, false);
				hi = UINT32_MAX;
				if (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9' && !parse_uint(ps, &hi))
					return false;
				skip_space(ps, false);
			}
			if (ps->p >= ps->end || *ps->p != '}')
				return fail_at(ps, at, "expected '}' to close a repetition");
			ps->p++;
			if (lo > GBNF_MAX_REPEAT || (hi != UINT32_MAX && hi > GBNF_MAX_REPEAT))
				return fail_at(ps, at, "repetition count over %u", GBNF_MAX_REPEAT);
			if (hi < lo)
				return fail_at(ps, at, "repetition {%u,%u} has its maximum below its minimum", lo, hi);
			if (!repeat(ps, rule, sv, last, lo, hi))
				return false;
			last = UINT32_MAX;
		} else if (c == '|' || c == ')' || c == '\n' || c == '\r') {
			return true;
		} else {
			return fail_at(ps, at, "unexpected '%c'", c);
		}
	}
}

static bool parse_alternates(struct parser *ps, uint32_t rule, bool in_group)
{
	struct altlist al = {0};
	bool ok = true;
	for (;;) {
		struct symvec *sv = alt_new(ps, &al);
		if (!sv || !parse_sequence(ps, rule, sv, in_group)) {
			ok = false;
			break;
		}
		if (ps->p < ps->end && *ps->p == '|') {
			ps->p++;
			skip_space(ps, true);
			continue;
		}
		break;
	}
	ok = ok && rule_commit(ps, rule, &al);
	altlist_free(&al);
	return ok;
}

static bool parse_rule(struct parser *ps)
{
	const char *at = ps->p;
	const char *q = ps->p;
	while (q < ps->end && is_word((unsigned char)*q))
		q++;
	if (q == ps->p)
		return fail_at(ps, at, "expected a rule name");
	size_t len = (size_t)(q - ps->p);
	ps->p = q;
	skip_space(ps, false);
	if (ps->end - ps->p < 3 || memcmp(ps->p, "::=", 3) != 0)
		return fail_at(ps, at, "expected '::=' after '%.*s'", (int)(len > 60 ? 60 : len), at);
	ps->p += 3;
	skip_space(ps, true);
	int64_t r = rule_find(ps, at, len);
	if (r >= 0 && ps->defined[r])
		return fail_at(ps, at, "rule '%.*s' is defined twice", (int)(len > 60 ? 60 : len), at);
	if (r < 0 && (r = rule_add(ps, at, len)) < 0)
		return false;
	if (!parse_alternates(ps, (uint32_t)r, false))
		return false;
	if (ps->p < ps->end && *ps->p == ')')
		return fail_at(ps, ps->p, "')' without '('");
	return true;
}

/* ---- checks ---- */

/* Refuses left recursion: an edge r -> s where rule s can come first in
 * r (after nullable symbols); a cycle of such edges loops a top-down
 * matcher for ever.  Iterative depth-first search with colours. */
static bool check_left_recursion(struct parser *ps)
{
	struct gbnf *g = ps->g;
	uint32_t n = g->n_rules;
	bool *nullable = eng_calloc(n ? n : 1, sizeof *nullable);
	uint8_t *color = eng_calloc(n ? n : 1, 1);
	struct frame { uint32_t rule, alt, sym; } *st = eng_malloc((size_t)(n ? n : 1) * sizeof *st);
	bool ok = nullable && color && st;
	if (!ok) {
		nomem(ps);
		goto out;
	}
	for (bool changed = true; changed;) {
		changed = false;
		for (uint32_t r = 0; r < n; r++) {
			if (nullable[r])
				continue;
			for (uint32_t a = 0; a < g->rules[r].n_alts && !nullable[r]; a++) {
				const struct gbnf_sym *s = g->syms + g->alts[g->rules[r].first_alt + a];
				while (s->kind == GBNF_REF && nullable[s->arg])
					s++;
				if (s->kind == GBNF_END)
					nullable[r] = changed = true;
			}
		}
	}
	for (uint32_t root = 0; root < n && ok; root++) {
		if (color[root])
			continue;
		uint32_t sp = 0;
		st[sp++] = (struct frame){root, 0, 0};
		color[root] = 1;
		while (sp && ok) {
			struct frame *f = &st[sp - 1];
			const struct gbnf_rule *R = &g->rules[f->rule];
			if (f->alt >= R->n_alts) {
				color[f->rule] = 2;
				sp--;
				continue;
			}
			const struct gbnf_sym *s = g->syms + g->alts[R->first_alt + f->alt] + f->sym;
			if (s->kind != GBNF_REF) {
				f->alt++, f->sym = 0;
				continue;
			}
			/* visit s->arg, then move past it only if it is nullable */
			if (nullable[s->arg])
				f->sym++;
			else
				f->alt++, f->sym = 0;
			if (color[s->arg] == 1) {
				ps->rc = GBNF_E_SYNTAX;
				snprintf(ps->err, ps->errlen, "rule '%s' is left-recursive (it can reach itself before any character)",
					 g->rules[s->arg].name);
				ok = false;
			} else if (color[s->arg] == 0) {
				color[s->arg] = 1;
				st[sp++] = (struct frame){s->arg, 0, 0};
			}
		}
	}
out:
	free(nullable);
	free(color);
	free(st);
	return ok;
}

void gbnf_free(struct gbnf *g)
{
	if (!g)
		return;
	for (uint32_t i = 0; i < g->n_rules; i++)
		free(g->rules[i].name);
	free(g->rules);
	free(g->syms);
	free(g->alts);
	free(g->classes);
	free(g->ranges);
	free(g);
}

int gbnf_parse(const char *text, size_t len, gbnf_token_lookup lookup, void *ctx, uint32_t n_vocab,
	       struct gbnf **out, char *err, size_t errlen)
{
	char dummy[1];
	if (!err || !errlen)
		err = dummy, errlen = sizeof dummy;
	err[0] = '\0';
	*out = NULL;
	if (len > GBNF_MAX_TEXT) {
		snprintf(err, errlen, "the grammar is too large (over %u bytes)", GBNF_MAX_TEXT);
		return GBNF_E_SYNTAX;
	}
	struct parser ps = {.s = text, .end = text + len, .p = text, .lookup = lookup, .lookup_ctx = ctx,
			    .n_vocab = n_vocab, .err = err, .errlen = errlen};
	if (!(ps.g = eng_calloc(1, sizeof *ps.g))) {
		snprintf(err, errlen, "out of memory for the grammar");
		return GBNF_E_NOMEM;
	}
	for (;;) {
		skip_space(&ps, true);
		if (ps.p >= ps.end || !parse_rule(&ps))
			break;
	}
	struct gbnf *g = ps.g;
	if (!ps.rc) {
		int64_t root = rule_find(&ps, "root", 4);
		if (root < 0) {
			snprintf(err, errlen, "the grammar has no 'root' rule");
			ps.rc = GBNF_E_SYNTAX;
		} else {
			g->root = (uint32_t)root;
		}
	}
	for (uint32_t i = 0; !ps.rc && i < g->n_rules; i++)
		if (!ps.defined[i]) {
			snprintf(err, errlen, "line %u: rule '%s' is used but not defined", ps.ref_line[i], g->rules[i].name);
			ps.rc = GBNF_E_SYNTAX;
		}
	if (!ps.rc)
		check_left_recursion(&ps);
	free(ps.defined);
	free(ps.ref_line);
	free(ps.hash);
	if (ps.rc) {
		gbnf_free(g);
		return ps.rc;
	}
	*out = g;
	return GBNF_OK;
}
