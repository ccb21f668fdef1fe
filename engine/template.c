/*
 * template.c - a bounded Jinja subset interpreter for chat templates, plus
 * built-in prompt formats for when a template is missing or fails.
 *
 * Design.  The reference is Jinja 3.1 as Hugging Face transformers runs it
 * (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols,
 * raise_exception, strftime_now, json.dumps-based tojson); every behaviour
 * here copies what that renders, down to Python's str() of floats, lists and
 * dicts.  Templates go through three stages:
 *
 *   lexer   - mirrors Jinja's regex lexer state machine: newline
 *             normalisation, the dropped trailing newline, `-`/`+` markers,
 *             trim_blocks and lstrip_blocks, raw blocks, comments.
 *   parser  - recursive descent with Jinja's precedence ladder (condexpr,
 *             or, and, not, compare, + -, ~, * / // %, **, unary, postfix,
 *             filters/tests), producing an immutable AST.
 *   render  - a tree walker over values with Python semantics (undefined,
 *             truthiness, int/float, code-point strings, ordered dicts) and
 *             Jinja scoping (a fresh scope per loop iteration and per macro
 *             call; namespace() objects for state that must escape).
 *
 * Memory: every allocation goes into an arena owned by the template (AST)
 * or by one render call (values, output); values are immutable once built
 * (the sandbox forbids mutating methods), so nothing is reference counted
 * and everything is released at once.  Errors unwind with longjmp to the
 * entry point, which frees the arena; no other resource is held while
 * evaluating.  The arena has a byte cap, and the renderer counts depth,
 * steps, output bytes and wall time, so a hostile template ends with
 * TMPL_ERR_LIMIT instead of exhausting the process.
 *
 * Strings are UTF-8; bytes that are not valid UTF-8 decode to U+DC80..DCFF
 * (as Python's surrogateescape does) so slicing and length never lose them.
 * Case mapping uses utf8proc plus a table of Python's multi-character
 * mappings (SpecialCasing.txt), generated with:
 *   python3 -c "import sys; [print(hex(c), [hex(ord(x)) for x in chr(c).upper()])
 *               for c in range(0x110000) if len(chr(c).upper()) > 1]"
 * (and the same for title()).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "alloc.h"
#include "template.h"

#define PARSE_MAX_DEPTH 200     /* nesting of expressions and blocks */
#define JSON_MAX_DEPTH 200      /* nesting in vars_json / messages_json */
#define SANDBOX_MAX_RANGE 100000 /* Jinja's sandbox refuses bigger range() */
#define ARENA_CHUNK ((size_t)64 << 10)

/* ======================================================================
 * Failure handling and arenas
 * ====================================================================== */

struct chunk {
	struct chunk *next;
	size_t used, cap;
	max_align_t data[];
};

struct arena {
	struct chunk *head;
	size_t total;   /* bytes obtained from malloc */
	size_t limit;   /* cap on total; 0 = none */
};

/* Shared by the parser and the renderer: where errors jump to. */
struct fail {
	jmp_buf jb;
	int code;
	char msg[320];
};

static void arena_free(struct arena *a)
{
	struct chunk *c = a->head;
	while (c) {
		struct chunk *n = c->next;
		free(c);
		c = n;
	}
	a->head = NULL;
	a->total = 0;
}

__attribute__((noreturn, format(printf, 4, 5)))
static void fail_at(struct fail *f, int code, int line, const char *fmt, ...)
{
	char buf[280];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	/* one line whatever the template quoted (names, raise_exception's
	 * text): line breaks become spaces, other controls '?' */
	for (char *q = buf; *q; q++)
		if (*q == '\n' || *q == '\r' || *q == '\t')
			*q = ' ';
		else if ((unsigned char)*q < 0x20 || *q == 0x7f)
			*q = '?';
	f->code = code;
	if (line > 0)
		snprintf(f->msg, sizeof f->msg, "line %d: %s", line, buf);
	else
		snprintf(f->msg, sizeof f->msg, "%s", buf);
	longjmp(f->jb, 1);
}

/* Allocates n bytes (16-aligned) or fails with TMPL_ERR_LIMIT/NOMEM. */
static void *arena_alloc(struct arena *a, struct fail *f, size_t n)
{
	size_t need = (n + 15) & ~(size_t)15;
	if (need < n)
		fail_at(f, TMPL_ERR_LIMIT, 0, "memory limit exceeded");
	struct chunk *c = a->head;
	if (!c || c->cap - c->used < need) {
		size_t cap = need > ARENA_CHUNK / 2 ? need : ARENA_CHUNK;
		if (cap > SIZE_MAX - sizeof(struct chunk) ||
		    (a->limit && (a->total + cap + sizeof(struct chunk) > a->limit ||
				  a->total + cap < a->total)))
			fail_at(f, TMPL_ERR_LIMIT, 0, "memory limit exceeded (%zu bytes)", a->limit);
		struct chunk *nc = eng_malloc(sizeof(struct chunk) + cap);
		if (!nc)
			fail_at(f, TMPL_ERR_NOMEM, 0, "out of memory");
		nc->used = 0;
		nc->cap = cap;
		a->total += cap + sizeof(struct chunk);
		if (c && need > ARENA_CHUNK / 2) {
			/* big block: keep the current chunk as head for small ones */
			nc->next = c->next;
			c->next = nc;
			nc->used = need;
			return nc->data;
		}
		nc->next = c;
		a->head = nc;
		c = nc;
	}
	void *p = (char *)c->data + c->used;
	c->used += need;
	return p;
}

static size_t mul_or_die(struct fail *f, size_t a, size_t b)
{
	if (b && a > SIZE_MAX / b)
		fail_at(f, TMPL_ERR_LIMIT, 0, "size overflow");
	return a * b;
}

static size_t add_or_die(struct fail *f, size_t a, size_t b)
{
	if (a > SIZE_MAX - b)
		fail_at(f, TMPL_ERR_LIMIT, 0, "size overflow");
	return a + b;
}

/* The pair every allocating helper needs. */
struct mem {
	struct arena *a;
	struct fail *f;
};

static void *mem_alloc(struct mem m, size_t n)
{
	return arena_alloc(m.a, m.f, n);
}

static void *mem_array(struct mem m, size_t n, size_t size)
{
	return arena_alloc(m.a, m.f, mul_or_die(m.f, n ? n : 1, size));
}

/* ======================================================================
 * Strings, UTF-8 and Python's character classes
 * ====================================================================== */

struct str {
	size_t len;
	char s[];       /* NUL-terminated for convenience; may contain NULs */
};

static struct str *str_new(struct mem m, const char *p, size_t n)
{
	struct str *s = mem_alloc(m, add_or_die(m.f, sizeof(struct str) + 1, n));
	s->len = n;
	if (n)
		memcpy(s->s, p, n);
	s->s[n] = 0;
	return s;
}

static struct str *str_c(struct mem m, const char *p)
{
	return str_new(m, p, strlen(p));
}

/* Growable byte buffer inside an arena; cap bounds its length. */
struct sbuf {
	char *p;
	size_t len, cap;
	size_t limit;   /* 0 = none */
};

static void sb_reserve(struct mem m, struct sbuf *b, size_t extra)
{
	size_t need = add_or_die(m.f, b->len, extra);
	if (b->limit && need > b->limit)
		fail_at(m.f, TMPL_ERR_LIMIT, 0, "output limit exceeded (%zu bytes)", b->limit);
	if (need + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need + 1)
		cap = mul_or_die(m.f, cap, 2);
	char *np = mem_alloc(m, cap);
	if (b->len)
		memcpy(np, b->p, b->len);
	b->p = np;
	b->cap = cap;
}

static void sb_put(struct mem m, struct sbuf *b, const void *p, size_t n)
{
	if (!n)
		return;
	sb_reserve(m, b, n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void sb_puts(struct mem m, struct sbuf *b, const char *s)
{
	sb_put(m, b, s, strlen(s));
}

static void sb_putc(struct mem m, struct sbuf *b, char ch)
{
	sb_put(m, b, &ch, 1);
}

__attribute__((format(printf, 3, 4)))
static void sb_printf(struct mem m, struct sbuf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n > 0)
		sb_put(m, b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static struct str *sb_str(struct mem m, const struct sbuf *b)
{
	return str_new(m, b->p, b->len);
}

/* Decodes one code point at s[0..n).  Bytes that do not start a valid,
 * shortest-form sequence decode to U+DC80+byte, one byte long. */
static uint32_t u8_dec(const char *str, size_t n, size_t *adv)
{
	const unsigned char *s = (const unsigned char *)str;
	unsigned c = s[0];
	if (c < 0x80) {
		*adv = 1;
		return c;
	}
	size_t k;
	uint32_t cp, min;
	if ((c & 0xE0) == 0xC0) {
		k = 2;
		cp = c & 0x1F;
		min = 0x80;
	} else if ((c & 0xF0) == 0xE0) {
		k = 3;
		cp = c & 0x0F;
		min = 0x800;
	} else if ((c & 0xF8) == 0xF0) {
		k = 4;
		cp = c & 0x07;
		min = 0x10000;
	} else {
		goto bad;
	}
	if (k > n)
		goto bad;
	for (size_t i = 1; i < k; i++) {
		if ((s[i] & 0xC0) != 0x80)
			goto bad;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		goto bad;
	*adv = k;
	return cp;
bad:
	*adv = 1;
	return 0xDC00 + c;
}

/* Encodes cp into out (4 bytes); U+DC80..DCFF become the raw byte again,
 * other surrogates become U+FFFD. */
static size_t u8_enc(uint32_t cp, char *out)
{
	unsigned char *o = (unsigned char *)out;
	if (cp >= 0xDC80 && cp <= 0xDCFF) {
		o[0] = (unsigned char)(cp - 0xDC00);
		return 1;
	}
	if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		cp = 0xFFFD;
	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xC0 | (cp >> 6));
		o[1] = (unsigned char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (unsigned char)(0xE0 | (cp >> 12));
		o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (unsigned char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (unsigned char)(0xF0 | (cp >> 18));
	o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (unsigned char)(0x80 | (cp & 0x3F));
	return 4;
}

static void sb_cp(struct mem m, struct sbuf *b, uint32_t cp)
{
	char tmp[4];
	sb_put(m, b, tmp, u8_enc(cp, tmp));
}

static size_t u8_count(const char *s, size_t n)
{
	size_t cnt = 0, i = 0, adv;
	while (i < n) {
		if ((unsigned char)s[i] < 0x80) {
			i++;
		} else {
			u8_dec(s + i, n - i, &adv);
			i += adv;
		}
		cnt++;
	}
	return cnt;
}

/* Byte offsets of every code point plus the end: off[0..cnt]. */
static size_t *u8_offsets(struct mem m, const struct str *s, size_t *cnt)
{
	size_t n = u8_count(s->s, s->len);
	size_t *off = mem_array(m, n + 1, sizeof *off);
	size_t i = 0, k = 0, adv;
	while (i < s->len) {
		off[k++] = i;
		u8_dec(s->s + i, s->len - i, &adv);
		i += adv;
	}
	off[k] = s->len;
	*cnt = n;
	return off;
}

/* str.isspace() */
static bool py_isspace(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 ||
	       c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
	       c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Length of the run of Python whitespace starting at s[0..n). */
static size_t ws_span(const char *s, size_t n)
{
	size_t i = 0, adv;
	while (i < n) {
		uint32_t c = u8_dec(s + i, n - i, &adv);
		if (!py_isspace(c))
			break;
		i += adv;
	}
	return i;
}

/* Length of s[0..n) without its trailing Python whitespace. */
static size_t rstrip_len(const char *s, size_t n)
{
	size_t end = n;
	while (end > 0) {
		size_t st = end - 1;
		while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80 && end - st < 4)
			st--;
		size_t adv;
		uint32_t c = u8_dec(s + st, end - st, &adv);
		if (st + adv != end) {
			/* not a clean code point ending here: a lone byte */
			c = 0xDC00 + (unsigned char)s[end - 1];
			st = end - 1;
		}
		if (!py_isspace(c))
			break;
		end = st;
	}
	return end;
}

static bool is_cased_cat(utf8proc_category_t cat)
{
	return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL ||
	       cat == UTF8PROC_CATEGORY_LT;
}

static bool py_iscased(uint32_t c)
{
	if (c > 0x10FFFF)
		return false;
	if (is_cased_cat(utf8proc_category((utf8proc_int32_t)c)))
		return true;
	/* Other_Lowercase / Other_Uppercase letters that are cased in Python */
	return (c >= 0x2160 && c <= 0x217F) || (c >= 0x24B6 && c <= 0x24E9) || c == 0xAA ||
	       c == 0xBA || (c >= 0x2B0 && c <= 0x2B8) || (c >= 0x2C0 && c <= 0x2C1) ||
	       (c >= 0x2E0 && c <= 0x2E4) || c == 0x345 || c == 0x37A ||
	       (c >= 0x1D2C && c <= 0x1D6A) || c == 0x1D78 || (c >= 0x1D9B && c <= 0x1DBF) ||
	       c == 0x2071 || c == 0x207F || (c >= 0x2090 && c <= 0x209C);
}

static bool py_case_ignorable(uint32_t c)
{
	if (c > 0x10FFFF)
		return false;
	switch (utf8proc_category((utf8proc_int32_t)c)) {
	case UTF8PROC_CATEGORY_MN:
	case UTF8PROC_CATEGORY_ME:
	case UTF8PROC_CATEGORY_CF:
	case UTF8PROC_CATEGORY_LM:
	case UTF8PROC_CATEGORY_SK:
		return true;
	default:
		return c == '\'' || c == '.' || c == ':' || c == '^' || c == '`' || c == 0xAD ||
		       c == 0xB7 || c == 0x2019 || c == 0x2018 || c == 0x2024 || c == 0x2027;
	}
}

/* Python's multi-character case mappings (see the file comment). */
struct special_case {
	uint32_t cp;
	uint32_t to[3];
};

static const struct special_case upper_special[] = {
	{0xdf, {0x53, 0x53}}, {0x149, {0x2bc, 0x4e}}, {0x1f0, {0x4a, 0x30c}},
	{0x390, {0x399, 0x308, 0x301}}, {0x3b0, {0x3a5, 0x308, 0x301}}, {0x587, {0x535, 0x552}},
	{0x1e96, {0x48, 0x331}}, {0x1e97, {0x54, 0x308}}, {0x1e98, {0x57, 0x30a}},
	{0x1e99, {0x59, 0x30a}}, {0x1e9a, {0x41, 0x2be}}, {0x1f50, {0x3a5, 0x313}},
	{0x1f52, {0x3a5, 0x313, 0x300}}, {0x1f54, {0x3a5, 0x313, 0x301}},
	{0x1f56, {0x3a5, 0x313, 0x342}}, {0x1f80, {0x1f08, 0x399}}, {0x1f81, {0x1f09, 0x399}},
	{0x1f82, {0x1f0a, 0x399}}, {0x1f83, {0x1f0b, 0x399}}, {0x1f84, {0x1f0c, 0x399}},
	{0x1f85, {0x1f0d, 0x399}}, {0x1f86, {0x1f0e, 0x399}}, {0x1f87, {0x1f0f, 0x399}},
	{0x1f88, {0x1f08, 0x399}}, {0x1f89, {0x1f09, 0x399}}, {0x1f8a, {0x1f0a, 0x399}},
	{0x1f8b, {0x1f0b, 0x399}}, {0x1f8c, {0x1f0c, 0x399}}, {0x1f8d, {0x1f0d, 0x399}},
	{0x1f8e, {0x1f0e, 0x399}}, {0x1f8f, {0x1f0f, 0x399}}, {0x1f90, {0x1f28, 0x399}},
	{0x1f91, {0x1f29, 0x399}}, {0x1f92, {0x1f2a, 0x399}}, {0x1f93, {0x1f2b, 0x399}},
	{0x1f94, {0x1f2c, 0x399}}, {0x1f95, {0x1f2d, 0x399}}, {0x1f96, {0x1f2e, 0x399}},
	{0x1f97, {0x1f2f, 0x399}}, {0x1f98, {0x1f28, 0x399}}, {0x1f99, {0x1f29, 0x399}},
	{0x1f9a, {0x1f2a, 0x399}}, {0x1f9b, {0x1f2b, 0x399}}, {0x1f9c, {0x1f2c, 0x399}},
	{0x1f9d, {0x1f2d, 0x399}}, {0x1f9e, {0x1f2e, 0x399}}, {0x1f9f, {0x1f2f, 0x399}},
	{0x1fa0, {0x1f68, 0x399}}, {0x1fa1, {0x1f69, 0x399}}, {0x1fa2, {0x1f6a, 0x399}},
	{0x1fa3, {0x1f6b, 0x399}}, {0x1fa4, {0x1f6c, 0x399}}, {0x1fa5, {0x1f6d, 0x399}},
	{0x1fa6, {0x1f6e, 0x399}}, {0x1fa7, {0x1f6f, 0x399}}, {0x1fa8, {0x1f68, 0x399}},
	{0x1fa9, {0x1f69, 0x399}}, {0x1faa, {0x1f6a, 0x399}}, {0x1fab, {0x1f6b, 0x399}},
	{0x1fac, {0x1f6c, 0x399}}, {0x1fad, {0x1f6d, 0x399}}, {0x1fae, {0x1f6e, 0x399}},
	{0x1faf, {0x1f6f, 0x399}}, {0x1fb2, {0x1fba, 0x399}}, {0x1fb3, {0x391, 0x399}},
	{0x1fb4, {0x386, 0x399}}, {0x1fb6, {0x391, 0x342}}, {0x1fb7, {0x391, 0x342, 0x399}},
	{0x1fbc, {0x391, 0x399}}, {0x1fc2, {0x1fca, 0x399}}, {0x1fc3, {0x397, 0x399}},
	{0x1fc4, {0x389, 0x399}}, {0x1fc6, {0x397, 0x342}}, {0x1fc7, {0x397, 0x342, 0x399}},
	{0x1fcc, {0x397, 0x399}}, {0x1fd2, {0x399, 0x308, 0x300}},
	{0x1fd3, {0x399, 0x308, 0x301}}, {0x1fd6, {0x399, 0x342}},
	{0x1fd7, {0x399, 0x308, 0x342}}, {0x1fe2, {0x3a5, 0x308, 0x300}},
	{0x1fe3, {0x3a5, 0x308, 0x301}}, {0x1fe4, {0x3a1, 0x313}}, {0x1fe6, {0x3a5, 0x342}},
	{0x1fe7, {0x3a5, 0x308, 0x342}}, {0x1ff2, {0x1ffa, 0x399}}, {0x1ff3, {0x3a9, 0x399}},
	{0x1ff4, {0x38f, 0x399}}, {0x1ff6, {0x3a9, 0x342}}, {0x1ff7, {0x3a9, 0x342, 0x399}},
	{0x1ffc, {0x3a9, 0x399}}, {0xfb00, {0x46, 0x46}}, {0xfb01, {0x46, 0x49}},
	{0xfb02, {0x46, 0x4c}}, {0xfb03, {0x46, 0x46, 0x49}}, {0xfb04, {0x46, 0x46, 0x4c}},
	{0xfb05, {0x53, 0x54}}, {0xfb06, {0x53, 0x54}}, {0xfb13, {0x544, 0x546}},
	{0xfb14, {0x544, 0x535}}, {0xfb15, {0x544, 0x53b}}, {0xfb16, {0x54e, 0x546}},
	{0xfb17, {0x544, 0x53d}},
};

static const struct special_case title_special[] = {
	{0xdf, {0x53, 0x73}}, {0x149, {0x2bc, 0x4e}}, {0x1f0, {0x4a, 0x30c}},
	{0x390, {0x399, 0x308, 0x301}}, {0x3b0, {0x3a5, 0x308, 0x301}}, {0x587, {0x535, 0x582}},
	{0x1e96, {0x48, 0x331}}, {0x1e97, {0x54, 0x308}}, {0x1e98, {0x57, 0x30a}},
	{0x1e99, {0x59, 0x30a}}, {0x1e9a, {0x41, 0x2be}}, {0x1f50, {0x3a5, 0x313}},
	{0x1f52, {0x3a5, 0x313, 0x300}}, {0x1f54, {0x3a5, 0x313, 0x301}},
	{0x1f56, {0x3a5, 0x313, 0x342}}, {0x1fb2, {0x1fba, 0x345}}, {0x1fb4, {0x386, 0x345}},
	{0x1fb6, {0x391, 0x342}}, {0x1fb7, {0x391, 0x342, 0x345}}, {0x1fc2, {0x1fca, 0x345}},
	{0x1fc4, {0x389, 0x345}}, {0x1fc6, {0x397, 0x342}}, {0x1fc7, {0x397, 0x342, 0x345}},
	{0x1fd2, {0x399, 0x308, 0x300}}, {0x1fd3, {0x399, 0x308, 0x301}},
	{0x1fd6, {0x399, 0x342}}, {0x1fd7, {0x399, 0x308, 0x342}},
	{0x1fe2, {0x3a5, 0x308, 0x300}}, {0x1fe3, {0x3a5, 0x308, 0x301}},
	{0x1fe4, {0x3a1, 0x313}}, {0x1fe6, {0x3a5, 0x342}}, {0x1fe7, {0x3a5, 0x308, 0x342}},
	{0x1ff2, {0x1ffa, 0x345}}, {0x1ff4, {0x38f, 0x345}}, {0x1ff6, {0x3a9, 0x342}},
	{0x1ff7, {0x3a9, 0x342, 0x345}}, {0xfb00, {0x46, 0x66}}, {0xfb01, {0x46, 0x69}},
	{0xfb02, {0x46, 0x6c}}, {0xfb03, {0x46, 0x66, 0x69}}, {0xfb04, {0x46, 0x66, 0x6c}},
	{0xfb05, {0x53, 0x74}}, {0xfb06, {0x53, 0x74}}, {0xfb13, {0x544, 0x576}},
	{0xfb14, {0x544, 0x565}}, {0xfb15, {0x544, 0x56b}}, {0xfb16, {0x54e, 0x576}},
	{0xfb17, {0x544, 0x56d}},
};

static const struct special_case *special_find(const struct special_case *t, size_t n, uint32_t cp)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (t[mid].cp == cp)
			return &t[mid];
		if (t[mid].cp < cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

enum casemode { CASE_UPPER, CASE_LOWER, CASE_TITLE };

static void sb_case_cp(struct mem m, struct sbuf *b, uint32_t cp, enum casemode mode)
{
	if (cp < 0x80) {
		if (mode == CASE_LOWER && cp >= 'A' && cp <= 'Z')
			cp += 32;
		else if (mode != CASE_LOWER && cp >= 'a' && cp <= 'z')
			cp -= 32;
		sb_putc(m, b, (char)cp);
		return;
	}
	if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
		sb_cp(m, b, cp);
		return;
	}
	const struct special_case *sc = NULL;
	if (mode == CASE_UPPER)
		sc = special_find(upper_special, sizeof upper_special / sizeof upper_special[0], cp);
	else if (mode == CASE_TITLE)
		sc = special_find(title_special, sizeof title_special / sizeof title_special[0], cp);
	else if (cp == 0x130) {
		sb_cp(m, b, 0x69);
		sb_cp(m, b, 0x307);
		return;
	}
	if (sc) {
		for (int i = 0; i < 3 && sc->to[i]; i++)
			sb_cp(m, b, sc->to[i]);
		return;
	}
	utf8proc_int32_t c = (utf8proc_int32_t)cp;
	if (mode == CASE_UPPER)
		c = utf8proc_toupper(c);
	else if (mode == CASE_LOWER)
		c = utf8proc_tolower(c);
	else
		c = utf8proc_totitle(c);
	sb_cp(m, b, (uint32_t)c);
}

/* Python's lowercase of the code point c found at s[i..i+adv) of the whole
 * string s[0..n), with the final-sigma rule (context: the whole string). */
static void sb_lower_at(struct mem m, struct sbuf *b, const char *s, size_t n, size_t i,
			size_t adv, uint32_t c)
{
	if (c != 0x3A3) {
		sb_case_cp(m, b, c, CASE_LOWER);
		return;
	}
	/* final sigma: preceded by a cased letter, not followed by one
	 * (case-ignorable characters skipped both ways) */
	bool before = false, after = false;
	size_t j = i;
	while (j > 0) {
		size_t st = j - 1;
		while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80 && j - st < 4)
			st--;
		size_t a2;
		uint32_t p = u8_dec(s + st, j - st, &a2);
		if (st + a2 != j) {
			st = j - 1;
			p = 0xDC00 + (unsigned char)s[st];
		}
		j = st;
		if (py_case_ignorable(p))
			continue;
		before = py_iscased(p);
		break;
	}
	j = i + adv;
	while (j < n) {
		size_t a2;
		uint32_t q = u8_dec(s + j, n - j, &a2);
		j += a2;
		if (py_case_ignorable(q))
			continue;
		after = py_iscased(q);
		break;
	}
	sb_cp(m, b, before && !after ? 0x3C2 : 0x3C3);
}

/* str.lower() of s[from..to) where s[0..n) gives the sigma context. */
static void sb_lower(struct mem m, struct sbuf *b, const char *s, size_t n, size_t from, size_t to)
{
	size_t i = from, adv;
	while (i < to) {
		uint32_t c = u8_dec(s + i, to - i, &adv);
		sb_lower_at(m, b, s, n, i, adv, c);
		i += adv;
	}
}

static void sb_upper(struct mem m, struct sbuf *b, const char *s, size_t from, size_t to)
{
	size_t i = from, adv;
	while (i < to) {
		uint32_t c = u8_dec(s + i, to - i, &adv);
		sb_case_cp(m, b, c, CASE_UPPER);
		i += adv;
	}
}

/* str.isprintable() for one code point. */
static bool py_isprintable(uint32_t c)
{
	if (c == ' ')
		return true;
	if (c < 0x20 || c == 0x7F)
		return false;
	if (c < 0x7F)
		return true;
	if (c > 0x10FFFF)
		return false;
	switch (utf8proc_category((utf8proc_int32_t)c)) {
	case UTF8PROC_CATEGORY_CC:
	case UTF8PROC_CATEGORY_CF:
	case UTF8PROC_CATEGORY_CS:
	case UTF8PROC_CATEGORY_CO:
	case UTF8PROC_CATEGORY_CN:
	case UTF8PROC_CATEGORY_ZL:
	case UTF8PROC_CATEGORY_ZP:
	case UTF8PROC_CATEGORY_ZS:
		return false;
	default:
		return true;
	}
}

/* Python float.__repr__: shortest round-trip digits, fixed notation for
 * decimal exponents in [-4, 16), exponent notation otherwise. */
static void fmt_pyfloat(double d, char *out, size_t outlen)
{
	if (isnan(d)) {
		snprintf(out, outlen, "nan");
		return;
	}
	if (isinf(d)) {
		snprintf(out, outlen, d < 0 ? "-inf" : "inf");
		return;
	}
	if (d == 0) {
		snprintf(out, outlen, signbit(d) ? "-0.0" : "0.0");
		return;
	}
	char tmp[40];
	int prec;
	for (prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	/* tmp: [-]D[.DDD]e[+-]XX */
	char digits[24];
	size_t nd = 0;
	const char *p = tmp;
	bool neg = false;
	if (*p == '-') {
		neg = true;
		p++;
	}
	while (*p && *p != 'e') {
		if (*p >= '0' && *p <= '9' && nd < sizeof digits - 1)
			digits[nd++] = *p;
		p++;
	}
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	digits[nd] = 0;
	int exp10 = *p == 'e' ? (int)strtol(p + 1, NULL, 10) : 0;
	int decpt = exp10 + 1;
	char *o = out;
	size_t left = outlen;
#define PUT(ch) do { if (left > 1) { *o++ = (ch); left--; } } while (0)
	if (neg)
		PUT('-');
	if (decpt > -4 && decpt <= 16) {
		if (decpt <= 0) {
			PUT('0');
			PUT('.');
			for (int i = 0; i < -decpt; i++)
				PUT('0');
			for (size_t i = 0; i < nd; i++)
				PUT(digits[i]);
		} else {
			for (int i = 0; i < decpt; i++)
				PUT((size_t)i < nd ? digits[i] : '0');
			PUT('.');
			if ((size_t)decpt < nd)
				for (size_t i = (size_t)decpt; i < nd; i++)
					PUT(digits[i]);
			else
				PUT('0');
		}
	} else {
		PUT(digits[0]);
		if (nd > 1) {
			PUT('.');
			for (size_t i = 1; i < nd; i++)
				PUT(digits[i]);
		}
		PUT('e');
		int e = decpt - 1;
		PUT(e < 0 ? '-' : '+');
		if (e < 0)
			e = -e;
		char eb[16];
		snprintf(eb, sizeof eb, "%02d", e);
		for (char *q = eb; *q; q++)
			PUT(*q);
	}
#undef PUT
	*o = 0;
}

/* ======================================================================
 * Values
 * ====================================================================== */

enum vtype {
	T_UNDEF,        /* Jinja Undefined; u.s is the name it came from (or NULL) */
	T_NONE,
	T_BOOL,
	T_INT,
	T_FLOAT,
	T_STR,
	T_LIST,
	T_TUPLE,
	T_DICT,
	T_NS,           /* namespace(): a dict whose members can be assigned */
	T_LOOP,
	T_FUNC,         /* a global function: u.i is enum gfunc */
	T_MACRO,
	T_METHOD,       /* a bound method of a str/dict/list/loop */
	T_ABSENT,       /* internal: an argument that was not passed */
};

typedef struct value value;
struct list;
struct dict;
struct loopctx;
struct macro;
struct method;

struct value {
	uint8_t t;
	union {
		bool b;
		int64_t i;
		double f;
		struct str *s;
		struct list *l;
		struct dict *d;
		struct loopctx *lp;
		struct macro *m;
		struct method *mt;
	} u;
};

struct list {
	size_t n;
	value *v;
};

/* Ordered map; string keys are hash-indexed once the map grows. */
struct dict {
	size_t n, cap;
	value *k, *v;
	uint32_t *idx;          /* open addressing: entry index + 1, 0 = empty */
	size_t icap;
};

static value v_undef(struct str *name)
{
	value v = {.t = T_UNDEF};
	v.u.s = name;
	return v;
}

static value v_none(void)
{
	return (value){.t = T_NONE};
}

static value v_bool(bool b)
{
	value v = {.t = T_BOOL};
	v.u.b = b;
	return v;
}

static value v_int(int64_t i)
{
	value v = {.t = T_INT};
	v.u.i = i;
	return v;
}

static value v_float(double f)
{
	value v = {.t = T_FLOAT};
	v.u.f = f;
	return v;
}

static value v_str(struct str *s)
{
	value v = {.t = T_STR};
	v.u.s = s;
	return v;
}

static value v_list(struct list *l, bool tuple)
{
	value v = {.t = tuple ? T_TUPLE : T_LIST};
	v.u.l = l;
	return v;
}

static struct list *list_new(struct mem m, size_t n)
{
	struct list *l = mem_alloc(m, sizeof *l);
	l->n = n;
	l->v = mem_array(m, n, sizeof(value));
	return l;
}

/* Growable list under construction. */
struct lbuild {
	value *v;
	size_t n, cap;
};

static void lb_push(struct mem m, struct lbuild *b, value v)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? mul_or_die(m.f, b->cap, 2) : 8;
		value *nv = mem_array(m, cap, sizeof *nv);
		if (b->n)
			memcpy(nv, b->v, b->n * sizeof *nv);
		b->v = nv;
		b->cap = cap;
	}
	b->v[b->n++] = v;
}

static struct list *lb_done(struct mem m, struct lbuild *b)
{
	struct list *l = mem_alloc(m, sizeof *l);
	l->n = b->n;
	l->v = b->v;
	return l;
}

static bool is_num(const value *v)
{
	return v->t == T_BOOL || v->t == T_INT || v->t == T_FLOAT;
}

static int64_t as_int(const value *v)
{
	return v->t == T_BOOL ? (int64_t)v->u.b : v->u.i;
}

static double as_float(const value *v)
{
	return v->t == T_FLOAT ? v->u.f : (double)as_int(v);
}

static bool str_eq(const struct str *a, const struct str *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->s, b->s, a->len) == 0);
}

static bool str_eqc(const struct str *a, const char *b)
{
	size_t n = strlen(b);
	return a->len == n && memcmp(a->s, b, n) == 0;
}

/* Python == between two numbers (bool, int, float mixed). */
static bool num_eq(const value *a, const value *b)
{
	if (a->t != T_FLOAT && b->t != T_FLOAT)
		return as_int(a) == as_int(b);
	if (a->t == T_FLOAT && b->t == T_FLOAT)
		return a->u.f == b->u.f;
	const value *f = a->t == T_FLOAT ? a : b, *i = a->t == T_FLOAT ? b : a;
	double d = f->u.f;
	if (d != d || d < -9.3e18 || d > 9.3e18 || d != floor(d))
		return false;
	return (int64_t)d == as_int(i);
}

/* Key equality for dict lookups: scalars and strings by value, containers
 * by identity (templates never key dicts by containers). */
static bool key_eq(const value *a, const value *b)
{
	if (is_num(a) && is_num(b))
		return num_eq(a, b);
	if (a->t != b->t)
		return false;
	switch (a->t) {
	case T_STR:
		return str_eq(a->u.s, b->u.s);
	case T_NONE:
	case T_UNDEF:
		return true;
	default:
		return a->u.l == b->u.l;
	}
}

static uint64_t hash_bytes(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ull;
	}
	return h;
}

static struct dict *dict_new(struct mem m, size_t cap)
{
	struct dict *d = mem_alloc(m, sizeof *d);
	memset(d, 0, sizeof *d);
	if (cap) {
		d->k = mem_array(m, cap, sizeof(value));
		d->v = mem_array(m, cap, sizeof(value));
		d->cap = cap;
	}
	return d;
}

static void dict_index_put(struct dict *d, size_t i)
{
	const struct str *s = d->k[i].u.s;
	size_t mask = d->icap - 1, h = (size_t)hash_bytes(s->s, s->len) & mask;
	while (d->idx[h])
		h = (h + 1) & mask;
	d->idx[h] = (uint32_t)(i + 1);
}

static void dict_reindex(struct mem m, struct dict *d)
{
	size_t icap = 32;
	while (icap < d->n * 2 + 2)
		icap = mul_or_die(m.f, icap, 2);
	d->idx = mem_array(m, icap, sizeof *d->idx);
	memset(d->idx, 0, icap * sizeof *d->idx);
	d->icap = icap;
	for (size_t i = 0; i < d->n; i++)
		if (d->k[i].t == T_STR)
			dict_index_put(d, i);
}

static value *dict_get(const struct dict *d, const value *key)
{
	if (d->idx && key->t == T_STR) {
		size_t mask = d->icap - 1;
		size_t h = (size_t)hash_bytes(key->u.s->s, key->u.s->len) & mask;
		for (uint32_t e; (e = d->idx[h]) != 0; h = (h + 1) & mask)
			if (str_eq(d->k[e - 1].u.s, key->u.s))
				return &d->v[e - 1];
		return NULL;
	}
	for (size_t i = 0; i < d->n; i++)
		if (key_eq(&d->k[i], key))
			return &d->v[i];
	return NULL;
}

static void dict_set(struct mem m, struct dict *d, value key, value v)
{
	value *slot = dict_get(d, &key);
	if (slot) {
		*slot = v;
		return;
	}
	if (d->n == d->cap) {
		size_t cap = d->cap ? mul_or_die(m.f, d->cap, 2) : 4;
		if (cap > UINT32_MAX - 1)
			fail_at(m.f, TMPL_ERR_LIMIT, 0, "dict too large");
		value *nk = mem_array(m, cap, sizeof *nk), *nv = mem_array(m, cap, sizeof *nv);
		if (d->n) {
			memcpy(nk, d->k, d->n * sizeof *nk);
			memcpy(nv, d->v, d->n * sizeof *nv);
		}
		d->k = nk;
		d->v = nv;
		d->cap = cap;
	}
	d->k[d->n] = key;
	d->v[d->n] = v;
	d->n++;
	if (d->n > 8) {
		if (!d->idx || d->n * 2 > d->icap)
			dict_reindex(m, d);
		else if (key.t == T_STR)
			dict_index_put(d, d->n - 1);
	}
}

static void dict_setc(struct mem m, struct dict *d, const char *key, value v)
{
	dict_set(m, d, v_str(str_c(m, key)), v);
}

/* ======================================================================
 * Render context
 * ====================================================================== */

struct tmpl;
struct frame;

enum ctl { CTL_NONE, CTL_BREAK, CTL_CONTINUE };

struct rctx {
	struct fail f;
	struct arena ar;
	struct mem m;
	struct tmpl_limits lim;
	uint32_t depth;
	uint64_t steps;
	uint64_t deadline_ns;
	struct sbuf *out;
	int ctl;
	int line;
	int64_t now;
	struct frame *root;
};

__attribute__((noreturn, format(printf, 2, 3)))
static void rt_fail(struct rctx *c, const char *fmt, ...)
{
	char buf[260];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	fail_at(&c->f, TMPL_ERR_RUNTIME, c->line, "%s", buf);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Counts one unit of work; checks the step and time caps. */
static void step(struct rctx *c)
{
	if (++c->steps > c->lim.max_steps)
		fail_at(&c->f, TMPL_ERR_LIMIT, c->line, "step limit exceeded (%llu)",
			(unsigned long long)c->lim.max_steps);
	if ((c->steps & 63) == 0 && now_ns() > c->deadline_ns)
		fail_at(&c->f, TMPL_ERR_LIMIT, c->line, "time limit exceeded (%u ms)",
			(unsigned)c->lim.max_time_ms);
}

static void enter(struct rctx *c)
{
	if (++c->depth > c->lim.max_depth)
		fail_at(&c->f, TMPL_ERR_LIMIT, c->line, "recursion limit exceeded (depth %u)",
			(unsigned)c->lim.max_depth);
}

static void leave(struct rctx *c)
{
	c->depth--;
}

static const char *type_name(const value *v)
{
	switch (v->t) {
	case T_UNDEF: return "Undefined";
	case T_NONE: return "NoneType";
	case T_BOOL: return "bool";
	case T_INT: return "int";
	case T_FLOAT: return "float";
	case T_STR: return "str";
	case T_LIST: return "list";
	case T_TUPLE: return "tuple";
	case T_DICT: return "dict";
	case T_NS: return "Namespace";
	case T_LOOP: return "LoopContext";
	case T_FUNC: return "function";
	case T_MACRO: return "Macro";
	case T_METHOD: return "builtin_function_or_method";
	default: return "object";
	}
}

__attribute__((noreturn))
static void undef_fail(struct rctx *c, const value *v)
{
	if (v->u.s)
		rt_fail(c, "'%.100s' is undefined", v->u.s->s);
	rt_fail(c, "undefined value used");
}

static bool truthy(const value *v)
{
	switch (v->t) {
	case T_UNDEF:
	case T_NONE:
	case T_ABSENT:
		return false;
	case T_BOOL:
		return v->u.b;
	case T_INT:
		return v->u.i != 0;
	case T_FLOAT:
		return v->u.f != 0;
	case T_STR:
		return v->u.s->len != 0;
	case T_LIST:
	case T_TUPLE:
		return v->u.l->n != 0;
	case T_DICT:
		return v->u.d->n != 0;
	default:
		return true;
	}
}

/* ---- str() and repr() ---- */

static void py_repr(struct rctx *c, struct sbuf *b, const value *v);

static void repr_str(struct rctx *c, struct sbuf *b, const struct str *s)
{
	bool sq = memchr(s->s, '\'', s->len) != NULL, dq = memchr(s->s, '"', s->len) != NULL;
	char q = sq && !dq ? '"' : '\'';
	sb_putc(c->m, b, q);
	size_t i = 0, adv;
	while (i < s->len) {
		uint32_t cp = u8_dec(s->s + i, s->len - i, &adv);
		if (cp == (uint32_t)q || cp == '\\') {
			sb_putc(c->m, b, '\\');
			sb_putc(c->m, b, (char)cp);
		} else if (cp == '\n') {
			sb_puts(c->m, b, "\\n");
		} else if (cp == '\r') {
			sb_puts(c->m, b, "\\r");
		} else if (cp == '\t') {
			sb_puts(c->m, b, "\\t");
		} else if (py_isprintable(cp)) {
			sb_put(c->m, b, s->s + i, adv);
		} else if (cp < 0x100) {
			sb_printf(c->m, b, "\\x%02x", (unsigned)cp);
		} else if (cp < 0x10000) {
			sb_printf(c->m, b, "\\u%04x", (unsigned)cp);
		} else {
			sb_printf(c->m, b, "\\U%08x", (unsigned)cp);
		}
		i += adv;
	}
	sb_putc(c->m, b, q);
}

static void repr_dict_body(struct rctx *c, struct sbuf *b, const struct dict *d)
{
	sb_putc(c->m, b, '{');
	for (size_t i = 0; i < d->n; i++) {
		if (i)
			sb_puts(c->m, b, ", ");
		py_repr(c, b, &d->k[i]);
		sb_puts(c->m, b, ": ");
		py_repr(c, b, &d->v[i]);
	}
	sb_putc(c->m, b, '}');
}

/* str(v) appended to b; Undefined appends nothing. */
static void py_str_into(struct rctx *c, struct sbuf *b, const value *v)
{
	char num[40];
	switch (v->t) {
	case T_UNDEF:
	case T_ABSENT:
		return;
	case T_NONE:
		sb_puts(c->m, b, "None");
		return;
	case T_BOOL:
		sb_puts(c->m, b, v->u.b ? "True" : "False");
		return;
	case T_INT:
		snprintf(num, sizeof num, "%lld", (long long)v->u.i);
		sb_puts(c->m, b, num);
		return;
	case T_FLOAT:
		fmt_pyfloat(v->u.f, num, sizeof num);
		sb_puts(c->m, b, num);
		return;
	case T_STR:
		sb_put(c->m, b, v->u.s->s, v->u.s->len);
		return;
	default:
		py_repr(c, b, v);
	}
}

static const char *macro_name(const struct macro *m);
static const char *method_name(const struct method *mt);

static void py_repr(struct rctx *c, struct sbuf *b, const value *v)
{
	enter(c);
	switch (v->t) {
	case T_UNDEF:
	case T_ABSENT:
		sb_puts(c->m, b, "Undefined");
		break;
	case T_STR:
		repr_str(c, b, v->u.s);
		break;
	case T_LIST:
	case T_TUPLE: {
		const struct list *l = v->u.l;
		sb_putc(c->m, b, v->t == T_LIST ? '[' : '(');
		for (size_t i = 0; i < l->n; i++) {
			if (i)
				sb_puts(c->m, b, ", ");
			py_repr(c, b, &l->v[i]);
		}
		if (v->t == T_TUPLE && l->n == 1)
			sb_putc(c->m, b, ',');
		sb_putc(c->m, b, v->t == T_LIST ? ']' : ')');
		break;
	}
	case T_DICT:
		repr_dict_body(c, b, v->u.d);
		break;
	case T_NS:
		sb_puts(c->m, b, "<Namespace ");
		repr_dict_body(c, b, v->u.d);
		sb_putc(c->m, b, '>');
		break;
	case T_LOOP:
		sb_puts(c->m, b, "<LoopContext>");
		break;
	case T_FUNC:
		sb_puts(c->m, b, "<function>");
		break;
	case T_MACRO:
		sb_printf(c->m, b, "<Macro '%.60s'>", macro_name(v->u.m));
		break;
	case T_METHOD:
		sb_printf(c->m, b, "<built-in method %.60s>", method_name(v->u.mt));
		break;
	default:
		py_str_into(c, b, v);
	}
	leave(c);
}

static struct str *py_str(struct rctx *c, const value *v)
{
	static const struct str empty = {0};
	if (v->t == T_STR)
		return v->u.s;
	if (v->t == T_UNDEF || v->t == T_ABSENT)
		return (struct str *)&empty;
	struct sbuf b = {0};
	py_str_into(c, &b, v);
	return b.len ? sb_str(c->m, &b) : (struct str *)&empty;
}

/* ---- equality and ordering ---- */

static bool val_eq(struct rctx *c, const value *a, const value *b)
{
	if (is_num(a) && is_num(b))
		return num_eq(a, b);
	if (a->t != b->t)
		return false;
	switch (a->t) {
	case T_UNDEF:
	case T_NONE:
		return true;
	case T_STR:
		return str_eq(a->u.s, b->u.s);
	case T_LIST:
	case T_TUPLE: {
		if (a->u.l == b->u.l)
			return true;
		if (a->u.l->n != b->u.l->n)
			return false;
		enter(c);
		bool eq = true;
		for (size_t i = 0; i < a->u.l->n && eq; i++)
			eq = val_eq(c, &a->u.l->v[i], &b->u.l->v[i]);
		leave(c);
		return eq;
	}
	case T_DICT: {
		if (a->u.d == b->u.d)
			return true;
		if (a->u.d->n != b->u.d->n)
			return false;
		enter(c);
		bool eq = true;
		for (size_t i = 0; i < a->u.d->n && eq; i++) {
			const value *o = dict_get(b->u.d, &a->u.d->k[i]);
			eq = o && val_eq(c, &a->u.d->v[i], o);
		}
		leave(c);
		return eq;
	}
	default:
		return a->u.l == b->u.l;
	}
}

/* Python ordering: -1, 0, 1; TypeError for unorderable pairs. */
static int val_cmp(struct rctx *c, const value *a, const value *b, const char *op)
{
	if (a->t == T_UNDEF)
		undef_fail(c, a);
	if (b->t == T_UNDEF)
		undef_fail(c, b);
	if (is_num(a) && is_num(b)) {
		if (a->t != T_FLOAT && b->t != T_FLOAT) {
			int64_t x = as_int(a), y = as_int(b);
			return x < y ? -1 : x > y;
		}
		double x = as_float(a), y = as_float(b);
		return x < y ? -1 : x > y;
	}
	if (a->t == T_STR && b->t == T_STR) {
		size_t n = a->u.s->len < b->u.s->len ? a->u.s->len : b->u.s->len;
		int r = n ? memcmp(a->u.s->s, b->u.s->s, n) : 0;
		if (r)
			return r < 0 ? -1 : 1;
		return a->u.s->len < b->u.s->len ? -1 : a->u.s->len > b->u.s->len;
	}
	if (a->t == b->t && (a->t == T_LIST || a->t == T_TUPLE)) {
		const struct list *x = a->u.l, *y = b->u.l;
		enter(c);
		for (size_t i = 0; i < x->n && i < y->n; i++) {
			if (!val_eq(c, &x->v[i], &y->v[i])) {
				int r = val_cmp(c, &x->v[i], &y->v[i], op);
				leave(c);
				return r;
			}
		}
		leave(c);
		return x->n < y->n ? -1 : x->n > y->n;
	}
	rt_fail(c, "'%s' not supported between instances of '%s' and '%s'", op, type_name(a),
		type_name(b));
}

/* Materialises anything iterable as a list (dict: keys; str: characters). */
static struct list *iterate(struct rctx *c, const value *v)
{
	switch (v->t) {
	case T_LIST:
	case T_TUPLE:
		return v->u.l;
	case T_UNDEF: {
		return list_new(c->m, 0);
	}
	case T_DICT: {
		struct list *l = list_new(c->m, v->u.d->n);
		if (v->u.d->n)
			memcpy(l->v, v->u.d->k, v->u.d->n * sizeof(value));
		return l;
	}
	case T_STR: {
		size_t n;
		size_t *off = u8_offsets(c->m, v->u.s, &n);
		struct list *l = list_new(c->m, n);
		for (size_t i = 0; i < n; i++)
			l->v[i] = v_str(str_new(c->m, v->u.s->s + off[i], off[i + 1] - off[i]));
		return l;
	}
	default:
		rt_fail(c, "'%s' object is not iterable", type_name(v));
	}
}

static bool contains(struct rctx *c, const value *container, const value *item)
{
	switch (container->t) {
	case T_STR:
		if (item->t != T_STR)
			rt_fail(c, "'in <string>' requires string as left operand, not %s",
				type_name(item));
		if (item->u.s->len == 0)
			return true;
		return memmem(container->u.s->s, container->u.s->len, item->u.s->s,
			      item->u.s->len) != NULL;
	case T_LIST:
	case T_TUPLE:
		for (size_t i = 0; i < container->u.l->n; i++)
			if (val_eq(c, &container->u.l->v[i], item))
				return true;
		return false;
	case T_DICT:
		return dict_get(container->u.d, item) != NULL;
	case T_UNDEF:
		return false;
	default:
		rt_fail(c, "argument of type '%s' is not iterable", type_name(container));
	}
}

/* A stable merge sort of values; cmp may fail (longjmp) on mixed types. */
typedef int (*vcmp_fn)(struct rctx *c, const value *a, const value *b, const void *ctx);

static void vsort(struct rctx *c, value *v, size_t n, vcmp_fn cmp, const void *ctx)
{
	if (n < 2)
		return;
	value *tmp = mem_array(c->m, n, sizeof *tmp);
	for (size_t width = 1; width < n; width *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * width) {
			size_t mid = lo + width < n ? lo + width : n;
			size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
			size_t i = lo, j = mid, k = lo;
			while (i < mid && j < hi) {
				step(c);
				if (cmp(c, &v[j], &v[i], ctx) < 0)
					tmp[k++] = v[j++];
				else
					tmp[k++] = v[i++];
			}
			while (i < mid)
				tmp[k++] = v[i++];
			while (j < hi)
				tmp[k++] = v[j++];
		}
		memcpy(v, tmp, n * sizeof *v);
		if (width > SIZE_MAX / 4)
			break;
	}
}

/* ======================================================================
 * JSON in (vars_json, messages_json) and out (the tojson filter)
 * ====================================================================== */

struct jparse {
	struct rctx *c;
	const char *what;
	const char *s;
	size_t n, i;
	int depth;
	bool runtime;              /* from_json: bad JSON is the template's error */
};

__attribute__((noreturn))
static void jp_fail(struct jparse *p, const char *msg)
{
	if (p->runtime)
		rt_fail(p->c, "%s: offset %zu: %s", p->what, p->i, msg);
	fail_at(&p->c->f, TMPL_ERR_ARG, 0, "%s: offset %zu: %s", p->what, p->i, msg);
}

static void jp_ws(struct jparse *p)
{
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
			       p->s[p->i] == '\r'))
		p->i++;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static uint32_t jp_hex4(struct jparse *p)
{
	if (p->n - p->i < 4)
		jp_fail(p, "truncated \\u escape");
	uint32_t v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hexval(p->s[p->i + (size_t)k]);
		if (h < 0)
			jp_fail(p, "bad \\u escape");
		v = v * 16 + (uint32_t)h;
	}
	p->i += 4;
	return v;
}

static struct str *jp_string(struct jparse *p)
{
	struct sbuf b = {0};
	p->i++;   /* opening quote */
	for (;;) {
		if (p->i >= p->n)
			jp_fail(p, "unterminated string");
		unsigned char ch = (unsigned char)p->s[p->i];
		if (ch == '"') {
			p->i++;
			break;
		}
		if (ch < 0x20)
			jp_fail(p, "control character in string");
		if (ch != '\\') {
			size_t st = p->i;
			while (p->i < p->n && p->s[p->i] != '"' && p->s[p->i] != '\\' &&
			       (unsigned char)p->s[p->i] >= 0x20)
				p->i++;
			sb_put(p->c->m, &b, p->s + st, p->i - st);
			continue;
		}
		if (++p->i >= p->n)
			jp_fail(p, "unterminated string");
		char e = p->s[p->i++];
		switch (e) {
		case '"': sb_putc(p->c->m, &b, '"'); break;
		case '\\': sb_putc(p->c->m, &b, '\\'); break;
		case '/': sb_putc(p->c->m, &b, '/'); break;
		case 'b': sb_putc(p->c->m, &b, '\b'); break;
		case 'f': sb_putc(p->c->m, &b, '\f'); break;
		case 'n': sb_putc(p->c->m, &b, '\n'); break;
		case 'r': sb_putc(p->c->m, &b, '\r'); break;
		case 't': sb_putc(p->c->m, &b, '\t'); break;
		case 'u': {
			uint32_t cp = jp_hex4(p);
			if (cp >= 0xD800 && cp <= 0xDBFF && p->n - p->i >= 6 && p->s[p->i] == '\\' &&
			    p->s[p->i + 1] == 'u') {
				size_t save = p->i;
				p->i += 2;
				uint32_t lo = jp_hex4(p);
				if (lo >= 0xDC00 && lo <= 0xDFFF)
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				else
					p->i = save;
			}
			if (cp >= 0xD800 && cp <= 0xDFFF)
				cp = 0xFFFD;   /* a lone surrogate cannot be UTF-8 */
			sb_cp(p->c->m, &b, cp);
			break;
		}
		default:
			jp_fail(p, "bad escape");
		}
	}
	return sb_str(p->c->m, &b);
}

static value jp_value(struct jparse *p);

static value jp_number(struct jparse *p)
{
	size_t st = p->i;
	bool isf = false;
	if (p->s[p->i] == '-')
		p->i++;
	if (p->i < p->n && p->s[p->i] == 'I' && p->n - p->i >= 8 && !memcmp(p->s + p->i, "Infinity", 8)) {
		p->i += 8;
		return v_float(-INFINITY);
	}
	if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
		jp_fail(p, "bad number");
	if (p->s[p->i] == '0')
		p->i++;
	else
		while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
			p->i++;
	if (p->i + 1 < p->n && p->s[p->i] == '.' && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9') {
		isf = true;
		p->i++;
		while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
			p->i++;
	}
	if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
		size_t save = p->i++;
		if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
			p->i++;
		if (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
			isf = true;
			while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
				p->i++;
		} else {
			p->i = save;
		}
	}
	char buf[400];
	size_t len = p->i - st;
	if (len >= sizeof buf)
		jp_fail(p, "number too long");
	memcpy(buf, p->s + st, len);
	buf[len] = 0;
	if (isf)
		return v_float(strtod(buf, NULL));
	errno = 0;
	long long v = strtoll(buf, NULL, 10);
	if (errno == ERANGE)
		jp_fail(p, "integer out of range");
	return v_int(v);
}

static value jp_value(struct jparse *p)
{
	jp_ws(p);
	if (p->i >= p->n)
		jp_fail(p, "unexpected end of input");
	char ch = p->s[p->i];
	if (ch == '{' || ch == '[') {
		if (++p->depth > JSON_MAX_DEPTH)
			jp_fail(p, "nesting too deep");
		p->i++;
		value out;
		if (ch == '{') {
			struct dict *d = dict_new(p->c->m, 0);
			jp_ws(p);
			if (p->i < p->n && p->s[p->i] == '}') {
				p->i++;
			} else {
				for (;;) {
					jp_ws(p);
					if (p->i >= p->n || p->s[p->i] != '"')
						jp_fail(p, "expected a string key");
					struct str *k = jp_string(p);
					jp_ws(p);
					if (p->i >= p->n || p->s[p->i] != ':')
						jp_fail(p, "expected ':'");
					p->i++;
					value v = jp_value(p);
					dict_set(p->c->m, d, v_str(k), v);
					jp_ws(p);
					if (p->i < p->n && p->s[p->i] == ',') {
						p->i++;
						continue;
					}
					if (p->i < p->n && p->s[p->i] == '}') {
						p->i++;
						break;
					}
					jp_fail(p, "expected ',' or '}'");
				}
			}
			out = (value){.t = T_DICT};
			out.u.d = d;
		} else {
			struct lbuild lb = {0};
			jp_ws(p);
			if (p->i < p->n && p->s[p->i] == ']') {
				p->i++;
			} else {
				for (;;) {
					lb_push(p->c->m, &lb, jp_value(p));
					jp_ws(p);
					if (p->i < p->n && p->s[p->i] == ',') {
						p->i++;
						continue;
					}
					if (p->i < p->n && p->s[p->i] == ']') {
						p->i++;
						break;
					}
					jp_fail(p, "expected ',' or ']'");
				}
			}
			out = v_list(lb_done(p->c->m, &lb), false);
		}
		p->depth--;
		return out;
	}
	if (ch == '"')
		return v_str(jp_string(p));
	if (ch == '-' || (ch >= '0' && ch <= '9'))
		return jp_number(p);
	static const struct {
		const char *w;
		int kind;
	} words[] = {{"true", 1}, {"false", 2}, {"null", 3}, {"NaN", 4}, {"Infinity", 5}};
	for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) {
		size_t wl = strlen(words[k].w);
		if (p->n - p->i >= wl && !memcmp(p->s + p->i, words[k].w, wl)) {
			p->i += wl;
			switch (words[k].kind) {
			case 1: return v_bool(true);
			case 2: return v_bool(false);
			case 3: return v_none();
			case 4: return v_float(NAN);
			default: return v_float(INFINITY);
			}
		}
	}
	jp_fail(p, "unexpected character");
}

static value json_parse(struct rctx *c, const char *what, const char *s)
{
	struct jparse p = {.c = c, .what = what, .s = s, .n = strlen(s)};
	value v = jp_value(&p);
	jp_ws(&p);
	if (p.i != p.n)
		jp_fail(&p, "trailing data");
	return v;
}

struct jopt {
	bool ensure_ascii;
	bool sort_keys;
	bool has_indent;
	struct str *indent;
	struct str *item_sep, *key_sep;
};

static void json_str(struct rctx *c, struct sbuf *b, const struct str *s, bool ensure_ascii)
{
	sb_putc(c->m, b, '"');
	size_t i = 0, adv;
	while (i < s->len) {
		unsigned char ch = (unsigned char)s->s[i];
		if (ch >= 0x20 && ch != '"' && ch != '\\' && ch < 0x80) {
			size_t st = i;
			while (i < s->len && (unsigned char)s->s[i] >= 0x20 && s->s[i] != '"' &&
			       s->s[i] != '\\' && (unsigned char)s->s[i] < 0x80)
				i++;
			sb_put(c->m, b, s->s + st, i - st);
			continue;
		}
		uint32_t cp = u8_dec(s->s + i, s->len - i, &adv);
		switch (cp) {
		case '"': sb_puts(c->m, b, "\\\""); break;
		case '\\': sb_puts(c->m, b, "\\\\"); break;
		case '\n': sb_puts(c->m, b, "\\n"); break;
		case '\r': sb_puts(c->m, b, "\\r"); break;
		case '\t': sb_puts(c->m, b, "\\t"); break;
		case '\b': sb_puts(c->m, b, "\\b"); break;
		case '\f': sb_puts(c->m, b, "\\f"); break;
		default:
			if (cp < 0x20) {
				sb_printf(c->m, b, "\\u%04x", (unsigned)cp);
			} else if (!ensure_ascii) {
				sb_put(c->m, b, s->s + i, adv);
			} else if (cp < 0x10000) {
				sb_printf(c->m, b, "\\u%04x", (unsigned)cp);
			} else {
				uint32_t v = cp - 0x10000;
				sb_printf(c->m, b, "\\u%04x\\u%04x", (unsigned)(0xD800 + (v >> 10)),
					  (unsigned)(0xDC00 + (v & 0x3FF)));
			}
		}
		i += adv;
	}
	sb_putc(c->m, b, '"');
}

static void json_float(struct rctx *c, struct sbuf *b, double d)
{
	char num[40];
	if (isnan(d))
		sb_puts(c->m, b, "NaN");
	else if (isinf(d))
		sb_puts(c->m, b, d < 0 ? "-Infinity" : "Infinity");
	else {
		fmt_pyfloat(d, num, sizeof num);
		sb_puts(c->m, b, num);
	}
}

static void json_newline(struct rctx *c, struct sbuf *b, const struct jopt *o, int level)
{
	sb_putc(c->m, b, '\n');
	for (int i = 0; i < level; i++)
		sb_put(c->m, b, o->indent->s, o->indent->len);
}

static int key_cmp(struct rctx *c, const value *a, const value *b, const void *ctx)
{
	(void)ctx;
	return val_cmp(c, a, b, "<");
}

static void json_dump(struct rctx *c, struct sbuf *b, const value *v, const struct jopt *o, int level)
{
	enter(c);
	step(c);
	char num[40];
	switch (v->t) {
	case T_NONE:
		sb_puts(c->m, b, "null");
		break;
	case T_BOOL:
		sb_puts(c->m, b, v->u.b ? "true" : "false");
		break;
	case T_INT:
		snprintf(num, sizeof num, "%lld", (long long)v->u.i);
		sb_puts(c->m, b, num);
		break;
	case T_FLOAT:
		json_float(c, b, v->u.f);
		break;
	case T_STR:
		json_str(c, b, v->u.s, o->ensure_ascii);
		break;
	case T_LIST:
	case T_TUPLE: {
		const struct list *l = v->u.l;
		if (!l->n) {
			sb_puts(c->m, b, "[]");
			break;
		}
		sb_putc(c->m, b, '[');
		for (size_t i = 0; i < l->n; i++) {
			if (i)
				sb_put(c->m, b, o->item_sep->s, o->item_sep->len);
			if (o->has_indent)
				json_newline(c, b, o, level + 1);
			json_dump(c, b, &l->v[i], o, level + 1);
		}
		if (o->has_indent)
			json_newline(c, b, o, level);
		sb_putc(c->m, b, ']');
		break;
	}
	case T_DICT: {
		const struct dict *d = v->u.d;
		if (!d->n) {
			sb_puts(c->m, b, "{}");
			break;
		}
		size_t *order = mem_array(c->m, d->n, sizeof *order);
		for (size_t i = 0; i < d->n; i++)
			order[i] = i;
		if (o->sort_keys) {
			/* sort the keys, then map back to entries */
			value *keys = mem_array(c->m, d->n, sizeof *keys);
			memcpy(keys, d->k, d->n * sizeof *keys);
			vsort(c, keys, d->n, key_cmp, d);
			for (size_t i = 0; i < d->n; i++)
				for (size_t j = 0; j < d->n; j++)
					if (key_eq(&keys[i], &d->k[j])) {
						order[i] = j;
						break;
					}
		}
		sb_putc(c->m, b, '{');
		for (size_t oi = 0; oi < d->n; oi++) {
			size_t i = order[oi];
			if (oi)
				sb_put(c->m, b, o->item_sep->s, o->item_sep->len);
			if (o->has_indent)
				json_newline(c, b, o, level + 1);
			const value *k = &d->k[i];
			switch (k->t) {
			case T_STR:
				json_str(c, b, k->u.s, o->ensure_ascii);
				break;
			case T_INT:
				sb_printf(c->m, b, "\"%lld\"", (long long)k->u.i);
				break;
			case T_BOOL:
				sb_puts(c->m, b, k->u.b ? "\"true\"" : "\"false\"");
				break;
			case T_NONE:
				sb_puts(c->m, b, "\"null\"");
				break;
			case T_FLOAT:
				sb_putc(c->m, b, '"');
				json_float(c, b, k->u.f);
				sb_putc(c->m, b, '"');
				break;
			default:
				rt_fail(c, "keys must be str, int, float, bool or None, not %s",
					type_name(k));
			}
			sb_put(c->m, b, o->key_sep->s, o->key_sep->len);
			json_dump(c, b, &d->v[i], o, level + 1);
		}
		if (o->has_indent)
			json_newline(c, b, o, level);
		sb_putc(c->m, b, '}');
		break;
	}
	default:
		rt_fail(c, "Object of type %s is not JSON serializable", type_name(v));
	}
	leave(c);
}

/* ======================================================================
 * Lexer
 * ====================================================================== */

enum tok {
	TK_EOF,
	TK_DATA,
	TK_VAR_BEGIN,
	TK_VAR_END,
	TK_BLOCK_BEGIN,
	TK_BLOCK_END,
	TK_NAME,
	TK_STRING,
	TK_INT,
	TK_FLOAT,
	TK_OP,
};

enum op {
	OP_NONE,
	OP_ADD, OP_SUB, OP_DIV, OP_FLOORDIV, OP_MUL, OP_MOD, OP_POW, OP_TILDE,
	OP_LBRACKET, OP_RBRACKET, OP_LPAREN, OP_RPAREN, OP_LBRACE, OP_RBRACE,
	OP_EQ, OP_NE, OP_GT, OP_GE, OP_LT, OP_LE, OP_ASSIGN, OP_DOT, OP_COLON,
	OP_PIPE, OP_COMMA, OP_SEMICOLON,
	/* comparison kinds that are not lexer operators */
	OP_IN, OP_NOTIN,
};

static const struct {
	const char *text;
	uint8_t op;
} op_table[] = {
	/* two-character operators first: the lexer takes the longest match */
	{"//", OP_FLOORDIV}, {"**", OP_POW}, {"==", OP_EQ}, {"!=", OP_NE}, {">=", OP_GE},
	{"<=", OP_LE}, {"+", OP_ADD}, {"-", OP_SUB}, {"/", OP_DIV}, {"*", OP_MUL},
	{"%", OP_MOD}, {"~", OP_TILDE}, {"[", OP_LBRACKET}, {"]", OP_RBRACKET},
	{"(", OP_LPAREN}, {")", OP_RPAREN}, {"{", OP_LBRACE}, {"}", OP_RBRACE},
	{">", OP_GT}, {"<", OP_LT}, {"=", OP_ASSIGN}, {".", OP_DOT}, {":", OP_COLON},
	{"|", OP_PIPE}, {",", OP_COMMA}, {";", OP_SEMICOLON},
};

static const char *op_text(int op)
{
	for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
		if (op_table[i].op == op)
			return op_table[i].text;
	return op == OP_IN ? "in" : op == OP_NOTIN ? "not in" : "?";
}

struct token {
	uint8_t type, op;
	int line;
	struct str *s;          /* DATA, NAME, STRING */
	int64_t i;
	double f;
};

/* An unknown filter or test outside any conditional: a syntax error once
 * the parse ends, unless a conditional expression turns out to hold it. */
struct unknown_name {
	int line;
	const struct str *name;
	bool test;
};

struct parser {
	struct fail *f;
	struct mem m;
	struct token *tk;
	size_t ntk, cap;
	size_t pos;
	int depth;
	int loop_depth;
	/* Jinja's "soft" frames: inside an if (its tests and bodies) or a
	 * conditional expression an unknown filter or test fails only when
	 * evaluated; for, macro, filter, with and set blocks open a frame that
	 * is not soft again */
	bool soft;
	struct unknown_name *unk;
	uint32_t n_unk, unk_cap;
	/* lexer state */
	const char *src;
	size_t n;
	size_t line_pos;
	int line;
};

__attribute__((noreturn, format(printf, 3, 4)))
static void syn_fail(struct parser *p, int line, const char *fmt, ...)
{
	char buf[260];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	fail_at(p->f, TMPL_ERR_SYNTAX, line, "%s", buf);
}

/* Line number of byte offset pos (positions are visited in order). */
static int lex_line(struct parser *p, size_t pos)
{
	while (p->line_pos < pos && p->line_pos < p->n) {
		if (p->src[p->line_pos] == '\n')
			p->line++;
		p->line_pos++;
	}
	return p->line;
}

static struct token *lex_push(struct parser *p, int type, size_t pos)
{
	if (p->ntk == p->cap) {
		size_t cap = p->cap ? mul_or_die(p->f, p->cap, 2) : 256;
		struct token *nt = mem_array(p->m, cap, sizeof *nt);
		if (p->ntk)
			memcpy(nt, p->tk, p->ntk * sizeof *nt);
		p->tk = nt;
		p->cap = cap;
	}
	struct token *t = &p->tk[p->ntk++];
	memset(t, 0, sizeof *t);
	t->type = (uint8_t)type;
	t->line = lex_line(p, pos);
	return t;
}

static bool starts(const char *s, size_t n, size_t at, const char *w)
{
	size_t wl = strlen(w);
	return at <= n && n - at >= wl && memcmp(s + at, w, wl) == 0;
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool is_name_start(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

/* Length of `\d+(_\d+)*` at s[i..n), 0 when absent. */
static size_t digits_span(const char *s, size_t n, size_t i)
{
	size_t j = i;
	if (j >= n || !is_digit(s[j]))
		return 0;
	while (j < n && is_digit(s[j]))
		j++;
	while (j + 1 < n && s[j] == '_' && is_digit(s[j + 1])) {
		j++;
		while (j < n && is_digit(s[j]))
			j++;
	}
	return j - i;
}

/* Jinja's float_re at i: length or 0. */
static size_t float_span(const char *s, size_t n, size_t i)
{
	if (i > 0 && s[i - 1] == '.')
		return 0;
	size_t d = digits_span(s, n, i);
	if (!d)
		return 0;
	size_t j = i + d;
	/* (\.D)?e[+-]?D */
	size_t k = j;
	if (k < n && s[k] == '.') {
		size_t f = digits_span(s, n, k + 1);
		k = f ? k + 1 + f : j;
	}
	if (k < n && (s[k] == 'e' || s[k] == 'E')) {
		size_t e = k + 1;
		if (e < n && (s[e] == '+' || s[e] == '-'))
			e++;
		size_t x = digits_span(s, n, e);
		if (x)
			return e + x - i;
	}
	/* \.D */
	if (j < n && s[j] == '.') {
		size_t f = digits_span(s, n, j + 1);
		if (f)
			return j + 1 + f - i;
	}
	return 0;
}

/* Jinja's integer_re at i: length or 0; *base receives the radix. */
static size_t int_span(const char *s, size_t n, size_t i, int *base)
{
	if (i >= n || !is_digit(s[i]))
		return 0;
	*base = 10;
	if (s[i] == '0' && i + 1 < n) {
		char x = s[i + 1];
		int b = (x == 'b' || x == 'B')   ? 2
			: (x == 'o' || x == 'O') ? 8
			: (x == 'x' || x == 'X') ? 16
						 : 0;
		if (b) {
			size_t j = i + 2, cnt = 0;
			for (;;) {
				size_t k = j;
				if (k < n && s[k] == '_')
					k++;
				if (k >= n)
					break;
				int h = hexval(s[k]);
				if (h < 0 || h >= b)
					break;
				j = k + 1;
				cnt++;
			}
			if (cnt) {
				*base = b;
				return j - i;
			}
		}
	}
	if (s[i] == '0') {
		size_t j = i + 1;
		for (;;) {
			size_t k = j;
			if (k < n && s[k] == '_')
				k++;
			if (k < n && s[k] == '0')
				j = k + 1;
			else
				break;
		}
		return j - i;
	}
	size_t j = i + 1;
	for (;;) {
		size_t k = j;
		if (k < n && s[k] == '_')
			k++;
		if (k < n && is_digit(s[k]))
			j = k + 1;
		else
			break;
	}
	return j - i;
}

/* Decodes a string literal body the way Jinja does: Python
 * unicode-escape applied after backslashreplace. */
static struct str *lex_string_value(struct parser *p, const char *s, size_t n, int line)
{
	struct sbuf b = {0};
	size_t i = 0, adv;
	while (i < n) {
		if (s[i] != '\\') {
			size_t st = i;
			while (i < n && s[i] != '\\')
				i++;
			sb_put(p->m, &b, s + st, i - st);
			continue;
		}
		i++;
		if (i >= n) {
			sb_putc(p->m, &b, '\\');
			break;
		}
		char e = s[i];
		uint32_t cp;
		int want = 0;
		switch (e) {
		case '\n': i++; continue;
		case '\\': sb_putc(p->m, &b, '\\'); i++; continue;
		case '\'': sb_putc(p->m, &b, '\''); i++; continue;
		case '"': sb_putc(p->m, &b, '"'); i++; continue;
		case 'a': sb_putc(p->m, &b, '\a'); i++; continue;
		case 'b': sb_putc(p->m, &b, '\b'); i++; continue;
		case 'f': sb_putc(p->m, &b, '\f'); i++; continue;
		case 'n': sb_putc(p->m, &b, '\n'); i++; continue;
		case 'r': sb_putc(p->m, &b, '\r'); i++; continue;
		case 't': sb_putc(p->m, &b, '\t'); i++; continue;
		case 'v': sb_putc(p->m, &b, '\v'); i++; continue;
		case 'x': want = 2; break;
		case 'u': want = 4; break;
		case 'U': want = 8; break;
		case 'N':
			syn_fail(p, line, "\\N{...} escapes are not supported");
		default:
			if (e >= '0' && e <= '7') {
				cp = 0;
				for (int k = 0; k < 3 && i < n && s[i] >= '0' && s[i] <= '7'; k++)
					cp = cp * 8 + (uint32_t)(s[i++] - '0');
				sb_cp(p->m, &b, cp);
				continue;
			}
			if ((unsigned char)e >= 0x80) {
				/* backslashreplace turned the character into an
				 * escape whose backslash the first one cancels */
				cp = u8_dec(s + i, n - i, &adv);
				i += adv;
				if (cp >= 0xDC80 && cp <= 0xDCFF)
					cp -= 0xDC00;
				sb_putc(p->m, &b, '\\');
				if (cp < 0x100)
					sb_printf(p->m, &b, "x%02x", (unsigned)cp);
				else if (cp < 0x10000)
					sb_printf(p->m, &b, "u%04x", (unsigned)cp);
				else
					sb_printf(p->m, &b, "U%08x", (unsigned)cp);
				continue;
			}
			sb_putc(p->m, &b, '\\');
			continue;   /* the character itself is copied next round */
		}
		i++;
		cp = 0;
		for (int k = 0; k < want; k++, i++) {
			int h = i < n ? hexval(s[i]) : -1;
			if (h < 0)
				syn_fail(p, line, "truncated \\%c escape in string literal", e);
			cp = cp * 16 + (uint32_t)h;
		}
		if (cp > 0x10FFFF)
			syn_fail(p, line, "illegal Unicode character in string literal");
		sb_cp(p->m, &b, cp);
	}
	return sb_str(p->m, &b);
}

/* Appends data src[from..to) after applying the whitespace rules Jinja's
 * OptionalLStrip applies to text before a tag whose marker is sign. */
static void lex_data(struct parser *p, size_t from, size_t to, char sign, bool lstrip_ok,
		     bool line_starting)
{
	size_t len = to - from;
	const char *t = p->src + from;
	if (sign == '-') {
		len = rstrip_len(t, len);
	} else if (sign != '+' && lstrip_ok) {
		size_t l = len;
		while (l > 0 && t[l - 1] != '\n')
			l--;
		if ((l > 0 || line_starting) && l < len && ws_span(t + l, len - l) == len - l)
			len = l;
	}
	if (len) {
		struct token *tk = lex_push(p, TK_DATA, from);
		tk->s = str_new(p->m, t, len);
	}
}

/* Matches a block end (`+%}`, `-%}\s*`, `%}\n?`) at i; returns its end or 0. */
static size_t block_end_at(const struct parser *p, size_t i)
{
	const char *s = p->src;
	size_t n = p->n;
	if (starts(s, n, i, "+%}"))
		return i + 3;
	if (starts(s, n, i, "-%}"))
		return i + 3 + ws_span(s + i + 3, n - i - 3);
	if (starts(s, n, i, "%}"))
		return i + 2 + (i + 2 < n && s[i + 2] == '\n');
	return 0;
}

/* Tokens inside {% %} or {{ }} up to and including the end marker. */
static size_t lex_tag(struct parser *p, size_t i, bool block, bool *line_starting)
{
	const char *s = p->src;
	size_t n = p->n;
	char stack[PARSE_MAX_DEPTH];
	int sp = 0;
	for (;;) {
		if (i >= n)
			syn_fail(p, lex_line(p, i), "unexpected end of template, expected '%s'",
				 block ? "%}" : "}}");
		if (sp == 0) {
			size_t e = 0;
			if (block)
				e = block_end_at(p, i);
			else if (starts(s, n, i, "-}}"))
				e = i + 3 + ws_span(s + i + 3, n - i - 3);
			else if (starts(s, n, i, "}}"))
				e = i + 2;
			if (e) {
				lex_push(p, block ? TK_BLOCK_END : TK_VAR_END, i);
				*line_starting = s[e - 1] == '\n';
				return e;
			}
		}
		size_t w = ws_span(s + i, n - i);
		if (w) {
			i += w;
			continue;
		}
		int base;
		size_t len;
		if ((len = float_span(s, n, i)) != 0) {
			char buf[128];
			size_t k = 0;
			for (size_t j = i; j < i + len && k < sizeof buf - 1; j++)
				if (s[j] != '_')
					buf[k++] = s[j];
			buf[k] = 0;
			struct token *t = lex_push(p, TK_FLOAT, i);
			t->f = strtod(buf, NULL);
			i += len;
			continue;
		}
		if ((len = int_span(s, n, i, &base)) != 0) {
			struct token *t = lex_push(p, TK_INT, i);
			size_t j = i + (base != 10 ? 2 : 0);
			uint64_t v = 0;
			for (; j < i + len; j++) {
				if (s[j] == '_')
					continue;
				uint64_t d = (uint64_t)hexval(s[j]);
				if (v > (UINT64_C(0x7FFFFFFFFFFFFFFF) - d) / (uint64_t)base)
					syn_fail(p, t->line, "integer literal too large");
				v = v * (uint64_t)base + d;
			}
			t->i = (int64_t)v;
			i += len;
			continue;
		}
		if (is_name_start(s[i])) {
			size_t j = i + 1;
			while (j < n && (is_name_start(s[j]) || is_digit(s[j])))
				j++;
			struct token *t = lex_push(p, TK_NAME, i);
			t->s = str_new(p->m, s + i, j - i);
			i = j;
			continue;
		}
		if (s[i] == '\'' || s[i] == '"') {
			char q = s[i];
			size_t j = i + 1;
			while (j < n && s[j] != q) {
				if (s[j] == '\\' && j + 1 < n)
					j++;
				j++;
			}
			if (j >= n)
				syn_fail(p, lex_line(p, i), "unterminated string literal");
			struct token *t = lex_push(p, TK_STRING, i);
			t->s = lex_string_value(p, s + i + 1, j - i - 1, t->line);
			i = j + 1;
			continue;
		}
		size_t k;
		for (k = 0; k < sizeof op_table / sizeof op_table[0]; k++)
			if (starts(s, n, i, op_table[k].text))
				break;
		if (k == sizeof op_table / sizeof op_table[0])
			syn_fail(p, lex_line(p, i), "unexpected char '%c'", s[i]);
		struct token *t = lex_push(p, TK_OP, i);
		t->op = op_table[k].op;
		switch (t->op) {
		case OP_LPAREN:
		case OP_LBRACKET:
		case OP_LBRACE:
			if (sp >= PARSE_MAX_DEPTH)
				fail_at(p->f, TMPL_ERR_LIMIT, t->line, "brackets nested too deeply");
			stack[sp++] = t->op == OP_LPAREN ? ')' : t->op == OP_LBRACKET ? ']' : '}';
			break;
		case OP_RPAREN:
		case OP_RBRACKET:
		case OP_RBRACE:
			if (!sp)
				syn_fail(p, t->line, "unexpected '%s'", op_table[k].text);
			if (stack[--sp] != op_table[k].text[0])
				syn_fail(p, t->line, "unexpected '%s', expected '%c'", op_table[k].text,
					 stack[sp]);
			break;
		default:
			break;
		}
		i += strlen(op_table[k].text);
	}
}

static void lex(struct parser *p, const char *src0, size_t n0)
{
	/* newlines normalised to \n, one trailing newline dropped */
	char *s = mem_alloc(p->m, n0 + 1);
	size_t n = 0;
	for (size_t i = 0; i < n0; i++) {
		if (src0[i] == '\r') {
			s[n++] = '\n';
			if (i + 1 < n0 && src0[i + 1] == '\n')
				i++;
		} else {
			s[n++] = src0[i];
		}
	}
	if (n && s[n - 1] == '\n')
		n--;
	s[n] = 0;
	p->src = s;
	p->n = n;
	p->line = 1;
	p->line_pos = 0;

	size_t pos = 0;
	bool line_starting = true;
	while (pos < n) {
		size_t i = pos;
		const char *hit = NULL;
		while (i + 1 < n) {
			hit = memchr(s + i, '{', n - 1 - i);
			if (!hit)
				break;
			i = (size_t)(hit - s);
			if (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#')
				break;
			i++;
			hit = NULL;
		}
		if (!hit) {
			lex_data(p, pos, n, 0, false, line_starting);
			break;
		}
		char kind = s[i + 1];
		size_t q = i + 2;
		char sign = 0;
		if (q < n && (s[q] == '-' || s[q] == '+'))
			sign = s[q++];
		/* {% raw %} */
		size_t raw_end = 0;
		if (kind == '%') {
			size_t r = q + ws_span(s + q, n - q);
			if (starts(s, n, r, "raw")) {
				r += 3;
				r += ws_span(s + r, n - r);
				if (starts(s, n, r, "-%}"))
					raw_end = r + 3 + ws_span(s + r + 3, n - r - 3);
				else if (starts(s, n, r, "%}"))
					raw_end = r + 2;
			}
		}
		lex_data(p, pos, i, sign, kind != '{', line_starting);
		if (kind == '#') {
			/* the first #}, with the marker just before it if any */
			const char *h = q < n ? memmem(s + q, n - q, "#}", 2) : NULL;
			if (!h)
				syn_fail(p, lex_line(p, i), "missing end of comment tag");
			size_t k = (size_t)(h - s), end = k + 2;
			char esign = 0;
			if (k > q && (s[k - 1] == '-' || s[k - 1] == '+'))
				esign = s[k - 1];
			if (esign == '-')
				end += ws_span(s + end, n - end);
			else if (!esign && end < n && s[end] == '\n')
				end++;
			line_starting = s[end - 1] == '\n';
			pos = end;
			continue;
		}
		if (raw_end) {
			line_starting = s[raw_end - 1] == '\n';
			size_t k = raw_end, end = 0;
			for (;;) {
				const char *h = k < n ? memmem(s + k, n - k, "{%", 2) : NULL;
				if (!h)
					syn_fail(p, lex_line(p, i), "missing end of raw directive");
				size_t a = (size_t)(h - s), r = a + 2;
				char sg = 0;
				if (r < n && (s[r] == '-' || s[r] == '+'))
					sg = s[r++];
				r += ws_span(s + r, n - r);
				if (starts(s, n, r, "endraw")) {
					r += 6;
					r += ws_span(s + r, n - r);
					size_t e = block_end_at(p, r);
					if (e) {
						lex_data(p, raw_end, a, sg, true, line_starting);
						end = e;
						break;
					}
				}
				k = a + 1;
			}
			line_starting = s[end - 1] == '\n';
			pos = end;
			continue;
		}
		lex_push(p, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, i);
		pos = lex_tag(p, q, kind == '%', &line_starting);
	}
	lex_push(p, TK_EOF, n);
}

/* ======================================================================
 * AST
 * ====================================================================== */

enum ekind {
	E_CONST, E_NAME, E_LIST, E_TUPLE, E_DICT, E_ATTR, E_ITEM, E_SLICE, E_CALL,
	E_FILTER, E_TEST, E_NEG, E_POS, E_NOT, E_BIN, E_AND, E_OR, E_CONCAT, E_CMP,
	E_COND,
};

struct expr {
	uint8_t k;
	uint8_t op;             /* E_BIN operator */
	uint16_t fid;           /* E_FILTER / E_TEST: index into the tables */
	int line;
	value cv;               /* E_CONST */
	struct str *name;       /* E_NAME, E_ATTR, E_FILTER, E_TEST */
	struct expr *a, *b, *c; /* operands; E_COND: a if b else c */
	struct expr **args;     /* E_LIST/E_TUPLE items, E_DICT keys, call args,
				   E_CONCAT parts, E_CMP operands, E_SLICE bounds */
	struct expr **vals;     /* E_DICT values */
	uint8_t *ops;           /* E_CMP operators */
	uint32_t nargs;
	struct str **kwn;       /* keyword arguments */
	struct expr **kwv;
	uint32_t nkw;
	struct expr *star, *dstar;
};

enum tkind { TG_NAME, TG_TUPLE, TG_NSATTR };

struct target {
	uint8_t k;
	int line;
	struct str *name, *attr;
	struct target **items;
	uint32_t n;
};

enum skind {
	S_DATA, S_OUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_FILTER, S_WITH,
	S_BREAK, S_CONTINUE, S_BLOCK,
};

struct stmt;

struct body {
	struct stmt **v;
	uint32_t n;
};

struct stmt {
	uint8_t k;
	int line;
	struct str *text;               /* S_DATA */
	struct expr *e;                 /* S_OUT, S_IF test, S_FOR iterable, S_SET value */
	struct expr *cond;              /* S_FOR filter */
	struct expr *filter;            /* S_SETBLOCK, S_FILTER: filter chain */
	struct target *tgt;             /* S_FOR, S_SET, S_SETBLOCK */
	struct body body, else_body;
	/* S_MACRO */
	struct str *name;
	struct str **params;
	struct expr **defaults;         /* NULL entries: no default */
	uint32_t nparams;
	/* S_WITH */
	struct target **wt;
	struct expr **wv;
	uint32_t nw;
};

struct tmpl {
	struct arena ar;
	struct body body;
};

/* ---- filter and test tables ---- */

enum filter_id {
	F_ABS, F_ATTR, F_BATCH, F_CAPITALIZE, F_CENTER, F_COUNT, F_D, F_DEFAULT, F_DICTSORT,
	F_E, F_ESCAPE, F_FILESIZEFORMAT, F_FIRST, F_FLOAT, F_FORCEESCAPE, F_FORMAT, F_GROUPBY,
	F_INDENT, F_INT, F_ITEMS, F_JOIN, F_LAST, F_LENGTH, F_LIST, F_LOWER, F_MAP, F_MAX,
	F_MIN, F_PPRINT, F_RANDOM, F_REJECT, F_REJECTATTR, F_REPLACE, F_REVERSE, F_ROUND,
	F_SAFE, F_SELECT, F_SELECTATTR, F_SLICE, F_SORT, F_STRING, F_STRIPTAGS, F_SUM,
	F_TITLE, F_TOJSON, F_TRIM, F_TRUNCATE, F_UNIQUE, F_UPPER, F_URLENCODE, F_URLIZE,
	F_WORDCOUNT, F_WORDWRAP, F_XMLATTR,
	F_FROM_JSON,
	F_COUNT_
};

/* Every filter Jinja knows, so that an unknown name is an error as in
 * Jinja (a syntax error outside conditionals, else when evaluated) while a
 * known one we do not implement fails only if reached; and from_json,
 * which llama.cpp's template engine adds and DeepSeek-V3.2 / V4 templates
 * use (json.loads). */
static const char *const filter_names[F_COUNT_] = {
	"abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort",
	"e", "escape", "filesizeformat", "first", "float", "forceescape", "format", "groupby",
	"indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max",
	"min", "pprint", "random", "reject", "rejectattr", "replace", "reverse", "round",
	"safe", "select", "selectattr", "slice", "sort", "string", "striptags", "sum",
	"title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "urlize",
	"wordcount", "wordwrap", "xmlattr",
	"from_json",
};

enum test_id {
	X_BOOLEAN, X_CALLABLE, X_DEFINED, X_DIVISIBLEBY, X_EQ, X_EQUALTO, X_ESCAPED, X_EVEN,
	X_FALSE, X_FILTER, X_FLOAT, X_GE, X_GT, X_GREATERTHAN, X_IN, X_INTEGER, X_ITERABLE,
	X_LE, X_LESSTHAN, X_LOWER, X_LT, X_MAPPING, X_NE, X_NONE, X_NUMBER, X_ODD, X_SAMEAS,
	X_SEQUENCE, X_STRING, X_TEST, X_TRUE, X_UNDEFINED, X_UPPER, X_OP_EQ, X_OP_NE, X_OP_LT,
	X_OP_LE, X_OP_GT, X_OP_GE,
	X_COUNT_
};

static const char *const test_names[X_COUNT_] = {
	"boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even",
	"false", "filter", "float", "ge", "gt", "greaterthan", "in", "integer", "iterable",
	"le", "lessthan", "lower", "lt", "mapping", "ne", "none", "number", "odd", "sameas",
	"sequence", "string", "test", "true", "undefined", "upper", "==", "!=", "<",
	"<=", ">", ">=",
};

static int name_index(const char *const *names, int count, const struct str *s)
{
	for (int i = 0; i < count; i++)
		if (str_eqc(s, names[i]))
			return i;
	return -1;
}

/* ======================================================================
 * Parser
 * ====================================================================== */

static struct token *cur(struct parser *p)
{
	return &p->tk[p->pos];
}

static struct token *peek(struct parser *p, size_t k)
{
	size_t i = p->pos + k;
	return &p->tk[i < p->ntk ? i : p->ntk - 1];
}

static void advance(struct parser *p)
{
	if (p->tk[p->pos].type != TK_EOF)
		p->pos++;
}

static bool is_op(struct parser *p, int op)
{
	return cur(p)->type == TK_OP && cur(p)->op == op;
}

static bool is_name(struct parser *p, const char *w)
{
	return cur(p)->type == TK_NAME && str_eqc(cur(p)->s, w);
}

static const char *describe(struct parser *p, const struct token *t, char *buf, size_t len)
{
	(void)p;
	switch (t->type) {
	case TK_EOF: return "end of template";
	case TK_DATA: return "template data";
	case TK_VAR_BEGIN: return "begin of print statement";
	case TK_VAR_END: return "end of print statement";
	case TK_BLOCK_BEGIN: return "begin of statement block";
	case TK_BLOCK_END: return "end of statement block";
	case TK_STRING: return "string";
	case TK_INT: return "integer";
	case TK_FLOAT: return "float";
	case TK_NAME:
		snprintf(buf, len, "%.60s", t->s->s);
		return buf;
	default:
		return op_text(t->op);
	}
}

__attribute__((noreturn))
static void unexpected(struct parser *p, const char *wanted)
{
	char buf[80];
	if (wanted)
		syn_fail(p, cur(p)->line, "expected %s, got '%s'", wanted,
			 describe(p, cur(p), buf, sizeof buf));
	syn_fail(p, cur(p)->line, "unexpected '%s'", describe(p, cur(p), buf, sizeof buf));
}

static void expect_op(struct parser *p, int op)
{
	if (!is_op(p, op)) {
		char w[16];
		snprintf(w, sizeof w, "'%s'", op_text(op));
		unexpected(p, w);
	}
	advance(p);
}

static void expect_type(struct parser *p, int type, const char *what)
{
	if (cur(p)->type != type)
		unexpected(p, what);
	advance(p);
}

static struct str *expect_name(struct parser *p)
{
	if (cur(p)->type != TK_NAME)
		unexpected(p, "a name");
	struct str *s = cur(p)->s;
	advance(p);
	return s;
}

static void deeper(struct parser *p)
{
	if (++p->depth > PARSE_MAX_DEPTH)
		fail_at(p->f, TMPL_ERR_LIMIT, cur(p)->line, "template nested too deeply");
}

static struct expr *enew(struct parser *p, int k, int line)
{
	struct expr *e = mem_alloc(p->m, sizeof *e);
	memset(e, 0, sizeof *e);
	e->k = (uint8_t)k;
	e->line = line;
	return e;
}

/* Growable array of expression pointers. */
struct ebuild {
	struct expr **v;
	uint32_t n, cap;
};

static void eb_push(struct parser *p, struct ebuild *b, struct expr *e)
{
	if (b->n == b->cap) {
		uint32_t cap = b->cap ? b->cap * 2 : 4;
		if (cap > 1u << 24)
			fail_at(p->f, TMPL_ERR_LIMIT, cur(p)->line, "too many items");
		struct expr **nv = mem_array(p->m, cap, sizeof *nv);
		if (b->n)
			memcpy(nv, b->v, b->n * sizeof *nv);
		b->v = nv;
		b->cap = cap;
	}
	b->v[b->n++] = e;
}

static struct expr *parse_expression(struct parser *p, bool with_condexpr);
static struct expr *parse_tuple(struct parser *p, bool simplified, bool with_condexpr,
				const char *extra_end, bool explicit_parens);
static struct expr *parse_unary(struct parser *p, bool with_filter);
static struct expr *parse_postfix(struct parser *p, struct expr *node);
static struct expr *parse_primary(struct parser *p);

static void parse_call_args(struct parser *p, struct expr *e)
{
	int line = cur(p)->line;
	expect_op(p, OP_LPAREN);
	struct ebuild args = {0}, kwv = {0};
	struct str **kwn = NULL;
	uint32_t kwcap = 0;
	bool need_comma = false;
	while (!is_op(p, OP_RPAREN)) {
		if (need_comma) {
			expect_op(p, OP_COMMA);
			if (is_op(p, OP_RPAREN))
				break;
		}
		if (is_op(p, OP_MUL)) {
			if (e->star || e->dstar)
				syn_fail(p, line, "invalid syntax for function call expression");
			advance(p);
			e->star = parse_expression(p, true);
		} else if (is_op(p, OP_POW)) {
			if (e->dstar)
				syn_fail(p, line, "invalid syntax for function call expression");
			advance(p);
			e->dstar = parse_expression(p, true);
		} else if (cur(p)->type == TK_NAME && peek(p, 1)->type == TK_OP &&
			   peek(p, 1)->op == OP_ASSIGN) {
			if (e->dstar)
				syn_fail(p, line, "invalid syntax for function call expression");
			struct str *key = cur(p)->s;
			advance(p);
			advance(p);
			eb_push(p, &kwv, parse_expression(p, true));
			if (kwv.n > kwcap) {
				uint32_t nc = kwv.cap;
				struct str **nk = mem_array(p->m, nc, sizeof *nk);
				if (kwv.n > 1)
					memcpy(nk, kwn, (kwv.n - 1) * sizeof *nk);
				kwn = nk;
				kwcap = nc;
			}
			kwn[kwv.n - 1] = key;
		} else {
			if (e->star || e->dstar || kwv.n)
				syn_fail(p, line, "invalid syntax for function call expression");
			eb_push(p, &args, parse_expression(p, true));
		}
		need_comma = true;
	}
	expect_op(p, OP_RPAREN);
	e->args = args.v;
	e->nargs = args.n;
	e->kwn = kwn;
	e->kwv = kwv.v;
	e->nkw = kwv.n;
}

static void note_unknown(struct parser *p, int line, const struct str *name, bool test)
{
	if (p->soft)
		return;
	if (p->n_unk == p->unk_cap) {
		uint32_t nc = p->unk_cap ? 2 * p->unk_cap : 8;
		struct unknown_name *nu = mem_array(p->m, nc, sizeof *nu);
		if (p->n_unk)
			memcpy(nu, p->unk, p->n_unk * sizeof *nu);
		p->unk = nu;
		p->unk_cap = nc;
	}
	p->unk[p->n_unk++] = (struct unknown_name){line, name, test};
}

static struct expr *parse_filter(struct parser *p, struct expr *node, bool start_inline)
{
	while (is_op(p, OP_PIPE) || start_inline) {
		if (!start_inline)
			advance(p);
		int line = cur(p)->line;
		struct str *name = expect_name(p);
		if (is_op(p, OP_DOT))
			syn_fail(p, line, "No filter named '%.60s.%s'", name->s, "...");
		int fid = name_index(filter_names, F_COUNT_, name);
		if (fid < 0) {
			note_unknown(p, line, name, false);
			fid = F_COUNT_;   /* fails if evaluated */
		}
		struct expr *e = enew(p, E_FILTER, line);
		e->name = name;
		e->fid = (uint16_t)fid;
		e->a = node;
		if (is_op(p, OP_LPAREN))
			parse_call_args(p, e);
		node = e;
		start_inline = false;
	}
	return node;
}

static struct expr *parse_test(struct parser *p, struct expr *node)
{
	int line = cur(p)->line;
	advance(p);   /* is */
	bool negated = false;
	if (is_name(p, "not")) {
		advance(p);
		negated = true;
	}
	struct str *name = expect_name(p);
	if (is_op(p, OP_DOT))
		syn_fail(p, line, "No test named '%.60s...'", name->s);
	int tid = name_index(test_names, X_COUNT_, name);
	if (tid < 0) {
		note_unknown(p, line, name, true);
		tid = X_COUNT_;   /* fails if evaluated */
	}
	struct expr *e = enew(p, E_TEST, line);
	e->name = name;
	e->fid = (uint16_t)tid;
	e->a = node;
	struct token *t = cur(p);
	if (is_op(p, OP_LPAREN)) {
		parse_call_args(p, e);
	} else if ((t->type == TK_NAME || t->type == TK_STRING || t->type == TK_INT ||
		    t->type == TK_FLOAT ||
		    (t->type == TK_OP && (t->op == OP_LPAREN || t->op == OP_LBRACKET ||
					  t->op == OP_LBRACE))) &&
		   !is_name(p, "else") && !is_name(p, "or") && !is_name(p, "and")) {
		if (is_name(p, "is"))
			syn_fail(p, line, "You cannot chain multiple tests with is");
		struct expr *arg = parse_postfix(p, parse_primary(p));
		e->args = mem_array(p->m, 1, sizeof *e->args);
		e->args[0] = arg;
		e->nargs = 1;
	}
	if (negated) {
		struct expr *n = enew(p, E_NOT, line);
		n->a = e;
		return n;
	}
	return e;
}

static struct expr *parse_subscribed(struct parser *p)
{
	int line = cur(p)->line;
	struct expr *bounds[3] = {NULL, NULL, NULL};
	if (is_op(p, OP_COLON)) {
		advance(p);
	} else {
		struct expr *node = parse_expression(p, true);
		if (!is_op(p, OP_COLON))
			return node;
		advance(p);
		bounds[0] = node;
	}
	if (is_op(p, OP_COLON)) {
		/* stop is None */
	} else if (!is_op(p, OP_RBRACKET) && !is_op(p, OP_COMMA)) {
		bounds[1] = parse_expression(p, true);
	}
	if (is_op(p, OP_COLON)) {
		advance(p);
		if (!is_op(p, OP_RBRACKET) && !is_op(p, OP_COMMA))
			bounds[2] = parse_expression(p, true);
	}
	struct expr *e = enew(p, E_SLICE, line);
	e->args = mem_array(p->m, 3, sizeof *e->args);
	memcpy(e->args, bounds, sizeof bounds);
	e->nargs = 3;
	return e;
}

static struct expr *parse_subscript(struct parser *p, struct expr *node)
{
	int line = cur(p)->line;
	if (is_op(p, OP_DOT)) {
		advance(p);
		struct token *t = cur(p);
		if (t->type == TK_NAME) {
			struct expr *e = enew(p, E_ATTR, line);
			e->a = node;
			e->name = t->s;
			advance(p);
			return e;
		}
		if (t->type != TK_INT)
			unexpected(p, "name or number");
		struct expr *k = enew(p, E_CONST, line);
		k->cv = v_int(t->i);
		advance(p);
		struct expr *e = enew(p, E_ITEM, line);
		e->a = node;
		e->b = k;
		return e;
	}
	expect_op(p, OP_LBRACKET);
	struct ebuild args = {0};
	while (!is_op(p, OP_RBRACKET)) {
		if (args.n)
			expect_op(p, OP_COMMA);
		eb_push(p, &args, parse_subscribed(p));
	}
	expect_op(p, OP_RBRACKET);
	if (args.n == 0)
		syn_fail(p, line, "expected subscript expression");
	struct expr *arg;
	if (args.n == 1) {
		arg = args.v[0];
	} else {
		arg = enew(p, E_TUPLE, line);
		arg->args = args.v;
		arg->nargs = args.n;
	}
	if (arg->k == E_SLICE) {
		arg->a = node;
		return arg;
	}
	struct expr *e = enew(p, E_ITEM, line);
	e->a = node;
	e->b = arg;
	return e;
}

static struct expr *parse_postfix(struct parser *p, struct expr *node)
{
	for (;;) {
		if (is_op(p, OP_DOT) || is_op(p, OP_LBRACKET)) {
			node = parse_subscript(p, node);
		} else if (is_op(p, OP_LPAREN)) {
			struct expr *e = enew(p, E_CALL, cur(p)->line);
			e->a = node;
			parse_call_args(p, e);
			node = e;
		} else {
			return node;
		}
	}
}

static struct expr *parse_filter_expr(struct parser *p, struct expr *node)
{
	for (;;) {
		if (is_op(p, OP_PIPE)) {
			node = parse_filter(p, node, false);
		} else if (is_name(p, "is")) {
			node = parse_test(p, node);
		} else if (is_op(p, OP_LPAREN)) {
			struct expr *e = enew(p, E_CALL, cur(p)->line);
			e->a = node;
			parse_call_args(p, e);
			node = e;
		} else {
			return node;
		}
	}
}

static struct expr *parse_primary(struct parser *p)
{
	struct token *t = cur(p);
	struct expr *e;
	deeper(p);
	switch (t->type) {
	case TK_NAME:
		e = enew(p, E_CONST, t->line);
		if (str_eqc(t->s, "true") || str_eqc(t->s, "True"))
			e->cv = v_bool(true);
		else if (str_eqc(t->s, "false") || str_eqc(t->s, "False"))
			e->cv = v_bool(false);
		else if (str_eqc(t->s, "none") || str_eqc(t->s, "None"))
			e->cv = v_none();
		else {
			e->k = E_NAME;
			e->name = t->s;
		}
		advance(p);
		break;
	case TK_STRING: {
		e = enew(p, E_CONST, t->line);
		struct str *s = t->s;
		advance(p);
		if (cur(p)->type == TK_STRING) {
			struct sbuf b = {0};
			sb_put(p->m, &b, s->s, s->len);
			while (cur(p)->type == TK_STRING) {
				sb_put(p->m, &b, cur(p)->s->s, cur(p)->s->len);
				advance(p);
			}
			s = sb_str(p->m, &b);
		}
		e->cv = v_str(s);
		break;
	}
	case TK_INT:
		e = enew(p, E_CONST, t->line);
		e->cv = v_int(t->i);
		advance(p);
		break;
	case TK_FLOAT:
		e = enew(p, E_CONST, t->line);
		e->cv = v_float(t->f);
		advance(p);
		break;
	case TK_OP:
		if (t->op == OP_LPAREN) {
			advance(p);
			e = parse_tuple(p, false, true, NULL, true);
			expect_op(p, OP_RPAREN);
			break;
		}
		if (t->op == OP_LBRACKET) {
			advance(p);
			struct ebuild items = {0};
			while (!is_op(p, OP_RBRACKET)) {
				if (items.n)
					expect_op(p, OP_COMMA);
				if (is_op(p, OP_RBRACKET))
					break;
				eb_push(p, &items, parse_expression(p, true));
			}
			expect_op(p, OP_RBRACKET);
			e = enew(p, E_LIST, t->line);
			e->args = items.v;
			e->nargs = items.n;
			break;
		}
		if (t->op == OP_LBRACE) {
			advance(p);
			struct ebuild keys = {0}, vals = {0};
			while (!is_op(p, OP_RBRACE)) {
				if (keys.n)
					expect_op(p, OP_COMMA);
				if (is_op(p, OP_RBRACE))
					break;
				eb_push(p, &keys, parse_expression(p, true));
				expect_op(p, OP_COLON);
				eb_push(p, &vals, parse_expression(p, true));
			}
			expect_op(p, OP_RBRACE);
			e = enew(p, E_DICT, t->line);
			e->args = keys.v;
			e->vals = vals.v;
			e->nargs = keys.n;
			break;
		}
		unexpected(p, NULL);
	default:
		unexpected(p, NULL);
	}
	p->depth--;
	return e;
}

static struct expr *parse_unary(struct parser *p, bool with_filter)
{
	struct expr *node;
	int line = cur(p)->line;
	deeper(p);
	if (is_op(p, OP_SUB) || is_op(p, OP_ADD)) {
		int k = is_op(p, OP_SUB) ? E_NEG : E_POS;
		advance(p);
		node = enew(p, k, line);
		node->a = parse_unary(p, false);
	} else {
		node = parse_primary(p);
	}
	node = parse_postfix(p, node);
	if (with_filter)
		node = parse_filter_expr(p, node);
	p->depth--;
	return node;
}

static struct expr *binop(struct parser *p, int op, struct expr *l, struct expr *r, int line)
{
	struct expr *e = enew(p, E_BIN, line);
	e->op = (uint8_t)op;
	e->a = l;
	e->b = r;
	return e;
}

static struct expr *parse_pow(struct parser *p)
{
	struct expr *l = parse_unary(p, true);
	while (is_op(p, OP_POW)) {
		int line = cur(p)->line;
		advance(p);
		l = binop(p, OP_POW, l, parse_unary(p, true), line);
	}
	return l;
}

static struct expr *parse_math2(struct parser *p)
{
	struct expr *l = parse_pow(p);
	while (is_op(p, OP_MUL) || is_op(p, OP_DIV) || is_op(p, OP_FLOORDIV) || is_op(p, OP_MOD)) {
		int op = cur(p)->op, line = cur(p)->line;
		advance(p);
		l = binop(p, op, l, parse_pow(p), line);
	}
	return l;
}

static struct expr *parse_concat(struct parser *p)
{
	struct expr *first = parse_math2(p);
	if (!is_op(p, OP_TILDE))
		return first;
	struct ebuild parts = {0};
	eb_push(p, &parts, first);
	int line = cur(p)->line;
	while (is_op(p, OP_TILDE)) {
		advance(p);
		eb_push(p, &parts, parse_math2(p));
	}
	struct expr *e = enew(p, E_CONCAT, line);
	e->args = parts.v;
	e->nargs = parts.n;
	return e;
}

static struct expr *parse_math1(struct parser *p)
{
	struct expr *l = parse_concat(p);
	while (is_op(p, OP_ADD) || is_op(p, OP_SUB)) {
		int op = cur(p)->op, line = cur(p)->line;
		advance(p);
		l = binop(p, op, l, parse_concat(p), line);
	}
	return l;
}

static struct expr *parse_compare(struct parser *p)
{
	int line = cur(p)->line;
	struct expr *first = parse_math1(p);
	struct ebuild operands = {0};
	uint8_t ops[64];
	for (;;) {
		int op;
		struct token *t = cur(p);
		if (t->type == TK_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == OP_LT ||
					 t->op == OP_LE || t->op == OP_GT || t->op == OP_GE)) {
			op = t->op;
			advance(p);
		} else if (is_name(p, "in")) {
			op = OP_IN;
			advance(p);
		} else if (is_name(p, "not") && peek(p, 1)->type == TK_NAME &&
			   str_eqc(peek(p, 1)->s, "in")) {
			op = OP_NOTIN;
			advance(p);
			advance(p);
		} else {
			break;
		}
		if (operands.n >= sizeof ops)
			fail_at(p->f, TMPL_ERR_LIMIT, line, "comparison chain too long");
		ops[operands.n] = (uint8_t)op;
		eb_push(p, &operands, parse_math1(p));
	}
	if (!operands.n)
		return first;
	struct expr *e = enew(p, E_CMP, line);
	e->a = first;
	e->args = operands.v;
	e->nargs = operands.n;
	e->ops = mem_alloc(p->m, operands.n);
	memcpy(e->ops, ops, operands.n);
	return e;
}

static struct expr *parse_not(struct parser *p)
{
	if (is_name(p, "not")) {
		int line = cur(p)->line;
		advance(p);
		deeper(p);
		struct expr *e = enew(p, E_NOT, line);
		e->a = parse_not(p);
		p->depth--;
		return e;
	}
	return parse_compare(p);
}

static struct expr *parse_and(struct parser *p)
{
	struct expr *l = parse_not(p);
	while (is_name(p, "and")) {
		int line = cur(p)->line;
		advance(p);
		struct expr *e = enew(p, E_AND, line);
		e->a = l;
		e->b = parse_not(p);
		l = e;
	}
	return l;
}

static struct expr *parse_or(struct parser *p)
{
	struct expr *l = parse_and(p);
	while (is_name(p, "or")) {
		int line = cur(p)->line;
		advance(p);
		struct expr *e = enew(p, E_OR, line);
		e->a = l;
		e->b = parse_and(p);
		l = e;
	}
	return l;
}

static struct expr *parse_condexpr(struct parser *p)
{
	deeper(p);
	const uint32_t mark = p->n_unk;
	const bool soft = p->soft;
	struct expr *e1 = parse_or(p);
	while (is_name(p, "if")) {
		int line = cur(p)->line;
		advance(p);
		/* the whole conditional expression is soft, its first operand too */
		if (p->n_unk > mark)
			p->n_unk = mark;
		p->soft = true;
		struct expr *e = enew(p, E_COND, line);
		e->a = e1;
		e->b = parse_or(p);
		if (is_name(p, "else")) {
			advance(p);
			e->c = parse_condexpr(p);
		}
		e1 = e;
	}
	p->soft = soft;
	p->depth--;
	return e1;
}

static struct expr *parse_expression(struct parser *p, bool with_condexpr)
{
	return with_condexpr ? parse_condexpr(p) : parse_or(p);
}

static bool is_tuple_end(struct parser *p, const char *extra_end)
{
	struct token *t = cur(p);
	if (t->type == TK_VAR_END || t->type == TK_BLOCK_END || t->type == TK_EOF ||
	    (t->type == TK_OP && t->op == OP_RPAREN))
		return true;
	return extra_end && is_name(p, extra_end);
}

static struct expr *parse_tuple(struct parser *p, bool simplified, bool with_condexpr,
				const char *extra_end, bool explicit_parens)
{
	int line = cur(p)->line;
	struct ebuild args = {0};
	bool is_tuple = false;
	for (;;) {
		if (args.n)
			expect_op(p, OP_COMMA);
		if (is_tuple_end(p, extra_end))
			break;
		eb_push(p, &args, simplified ? parse_primary(p) : parse_expression(p, with_condexpr));
		if (is_op(p, OP_COMMA))
			is_tuple = true;
		else
			break;
	}
	if (!is_tuple) {
		if (args.n)
			return args.v[0];
		if (!explicit_parens)
			unexpected(p, "an expression");
	}
	struct expr *e = enew(p, E_TUPLE, line);
	e->args = args.v;
	e->nargs = args.n;
	return e;
}

static struct target *expr_to_target(struct parser *p, struct expr *e)
{
	struct target *t = mem_alloc(p->m, sizeof *t);
	memset(t, 0, sizeof *t);
	t->line = e->line;
	if (e->k == E_NAME) {
		static const char *const reserved[] = {"true", "false", "none", "True", "False", "None"};
		for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
			if (str_eqc(e->name, reserved[i]))
				syn_fail(p, e->line, "can't assign to '%s'", reserved[i]);
		t->k = TG_NAME;
		t->name = e->name;
		return t;
	}
	if (e->k == E_TUPLE) {
		t->k = TG_TUPLE;
		t->n = e->nargs;
		t->items = mem_array(p->m, e->nargs, sizeof *t->items);
		for (uint32_t i = 0; i < e->nargs; i++)
			t->items[i] = expr_to_target(p, e->args[i]);
		return t;
	}
	syn_fail(p, e->line, "can't assign to this expression");
}

static struct target *parse_assign_target(struct parser *p, const char *extra_end, bool with_ns)
{
	if (with_ns && cur(p)->type == TK_NAME && peek(p, 1)->type == TK_OP &&
	    peek(p, 1)->op == OP_DOT) {
		struct target *t = mem_alloc(p->m, sizeof *t);
		memset(t, 0, sizeof *t);
		t->k = TG_NSATTR;
		t->line = cur(p)->line;
		t->name = expect_name(p);
		advance(p);
		t->attr = expect_name(p);
		return t;
	}
	return expr_to_target(p, parse_tuple(p, true, true, extra_end, false));
}

static struct body parse_body(struct parser *p, const char *const *ends, int nends);

static struct stmt *snew(struct parser *p, int k, int line)
{
	struct stmt *s = mem_alloc(p->m, sizeof *s);
	memset(s, 0, sizeof *s);
	s->k = (uint8_t)k;
	s->line = line;
	return s;
}

/* After a statement header: optional ':' then the block end. */
static void header_end(struct parser *p)
{
	if (is_op(p, OP_COLON))
		advance(p);
	expect_type(p, TK_BLOCK_END, "end of statement block");
}

/* Parses a body up to one of ends; consumes the end name. Returns it. */
static struct str *body_until(struct parser *p, struct body *out, const char *const *ends, int nends)
{
	*out = parse_body(p, ends, nends);
	struct str *name = cur(p)->s;
	advance(p);
	return name;
}

static struct stmt *parse_statement(struct parser *p);

static struct stmt *parse_if(struct parser *p, int line)
{
	static const char *const ends[] = {"elif", "else", "endif"};
	struct stmt *s = snew(p, S_IF, line);
	const bool soft = p->soft;
	p->soft = true;
	s->e = parse_tuple(p, false, false, NULL, false);
	header_end(p);
	struct str *end = body_until(p, &s->body, ends, 3);
	if (str_eqc(end, "elif")) {
		deeper(p);
		struct stmt *inner = parse_if(p, cur(p)->line);
		p->depth--;
		s->else_body.v = mem_array(p->m, 1, sizeof *s->else_body.v);
		s->else_body.v[0] = inner;
		s->else_body.n = 1;
		p->soft = soft;
		return s;   /* the inner if consumed endif */
	}
	if (str_eqc(end, "else")) {
		static const char *const ends2[] = {"endif"};
		header_end(p);
		body_until(p, &s->else_body, ends2, 1);
	}
	p->soft = soft;
	return s;
}

static struct stmt *parse_statement(struct parser *p)
{
	struct token *t = cur(p);
	int line = t->line;
	if (t->type != TK_NAME)
		syn_fail(p, line, "tag name expected");
	struct str *tag = t->s;
	deeper(p);
	advance(p);
	struct stmt *s;
	const bool soft = p->soft;
	if (str_eqc(tag, "if")) {
		s = parse_if(p, line);
	} else if (str_eqc(tag, "for")) {
		static const char *const ends[] = {"endfor", "else"};
		static const char *const ends2[] = {"endfor"};
		s = snew(p, S_FOR, line);
		s->tgt = parse_assign_target(p, "in", false);
		if (!is_name(p, "in"))
			unexpected(p, "'in'");
		advance(p);
		s->e = parse_tuple(p, false, false, "recursive", false);
		p->soft = false;   /* the loop's own frame: its test and bodies */
		if (is_name(p, "if")) {
			advance(p);
			s->cond = parse_expression(p, true);
		}
		if (is_name(p, "recursive"))
			syn_fail(p, line, "recursive loops are not supported");
		header_end(p);
		p->loop_depth++;
		struct str *end = body_until(p, &s->body, ends, 2);
		p->loop_depth--;
		if (str_eqc(end, "else")) {
			header_end(p);
			body_until(p, &s->else_body, ends2, 1);
		}
	} else if (str_eqc(tag, "set")) {
		struct target *tg = parse_assign_target(p, NULL, true);
		if (is_op(p, OP_ASSIGN)) {
			advance(p);
			s = snew(p, S_SET, line);
			s->tgt = tg;
			s->e = parse_tuple(p, false, true, NULL, false);
		} else {
			static const char *const ends[] = {"endset"};
			s = snew(p, S_SETBLOCK, line);
			s->tgt = tg;
			p->soft = false;
			s->filter = parse_filter(p, NULL, false);
			header_end(p);
			body_until(p, &s->body, ends, 1);
		}
	} else if (str_eqc(tag, "macro")) {
		static const char *const ends[] = {"endmacro"};
		s = snew(p, S_MACRO, line);
		s->name = expect_name(p);
		expect_op(p, OP_LPAREN);
		struct ebuild defs = {0}, names = {0};
		bool any_default = false;
		while (!is_op(p, OP_RPAREN)) {
			if (names.n)
				expect_op(p, OP_COMMA);
			struct expr *ne = enew(p, E_NAME, cur(p)->line);
			ne->name = expect_name(p);
			eb_push(p, &names, ne);
			if (is_op(p, OP_ASSIGN)) {
				advance(p);
				eb_push(p, &defs, parse_expression(p, true));
				any_default = true;
			} else {
				if (any_default)
					syn_fail(p, line, "non-default argument follows default argument");
				eb_push(p, &defs, NULL);
			}
		}
		expect_op(p, OP_RPAREN);
		s->nparams = names.n;
		s->params = mem_array(p->m, names.n, sizeof *s->params);
		for (uint32_t i = 0; i < names.n; i++)
			s->params[i] = names.v[i]->name;
		s->defaults = defs.v;
		header_end(p);
		p->soft = false;
		int saved = p->loop_depth;
		p->loop_depth = 0;
		body_until(p, &s->body, ends, 1);
		p->loop_depth = saved;
	} else if (str_eqc(tag, "filter")) {
		static const char *const ends[] = {"endfilter"};
		s = snew(p, S_FILTER, line);
		p->soft = false;
		s->filter = parse_filter(p, NULL, true);
		header_end(p);
		body_until(p, &s->body, ends, 1);
	} else if (str_eqc(tag, "with")) {
		static const char *const ends[] = {"endwith"};
		s = snew(p, S_WITH, line);
		struct ebuild vals = {0};
		struct target **tg = NULL;
		uint32_t cap = 0;
		while (cur(p)->type != TK_BLOCK_END) {
			if (vals.n)
				expect_op(p, OP_COMMA);
			struct target *one = parse_assign_target(p, NULL, false);
			expect_op(p, OP_ASSIGN);
			eb_push(p, &vals, parse_expression(p, true));
			if (vals.n > cap) {
				struct target **nt = mem_array(p->m, vals.cap, sizeof *nt);
				if (vals.n > 1)
					memcpy(nt, tg, (vals.n - 1) * sizeof *nt);
				tg = nt;
				cap = vals.cap;
			}
			tg[vals.n - 1] = one;
		}
		s->wt = tg;
		s->wv = vals.v;
		s->nw = vals.n;
		header_end(p);
		p->soft = false;
		body_until(p, &s->body, ends, 1);
	} else if (str_eqc(tag, "break") || str_eqc(tag, "continue")) {
		if (!p->loop_depth)
			syn_fail(p, line, "'%s' outside loop", tag->s);
		s = snew(p, str_eqc(tag, "break") ? S_BREAK : S_CONTINUE, line);
	} else if (str_eqc(tag, "print")) {
		s = snew(p, S_OUT, line);
		s->e = parse_tuple(p, false, true, NULL, false);
	} else if (str_eqc(tag, "generation")) {
		/* transformers' AssistantTracker: renders its body unchanged */
		static const char *const ends[] = {"endgeneration"};
		s = snew(p, S_BLOCK, line);
		header_end(p);
		body_until(p, &s->body, ends, 1);
	} else {
		syn_fail(p, line, "Encountered unknown or unsupported tag '%.60s'.", tag->s);
	}
	p->soft = soft;
	p->depth--;
	return s;
}

static struct body parse_body(struct parser *p, const char *const *ends, int nends)
{
	struct stmt **v = NULL;
	uint32_t n = 0, cap = 0;
	for (;;) {
		struct token *t = cur(p);
		struct stmt *s = NULL;
		if (t->type == TK_EOF) {
			if (nends) {
				char want[160] = "";
				size_t wl = 0;
				for (int i = 0; i < nends && wl < sizeof want; i++)
					wl += (size_t)snprintf(want + wl, sizeof want - wl, "%s'%s'",
							       i ? " or " : "", ends[i]);
				syn_fail(p, t->line,
					 "Unexpected end of template. Jinja was looking for the "
					 "following tags: %s.", want);
			}
			break;
		}
		if (t->type == TK_DATA) {
			s = snew(p, S_DATA, t->line);
			s->text = t->s;
			advance(p);
		} else if (t->type == TK_VAR_BEGIN) {
			advance(p);
			s = snew(p, S_OUT, t->line);
			s->e = parse_tuple(p, false, true, NULL, false);
			expect_type(p, TK_VAR_END, "end of print statement");
		} else if (t->type == TK_BLOCK_BEGIN) {
			advance(p);
			bool stop = false;
			if (cur(p)->type == TK_NAME)
				for (int i = 0; i < nends; i++)
					if (str_eqc(cur(p)->s, ends[i]))
						stop = true;
			if (stop)
				break;
			s = parse_statement(p);
			expect_type(p, TK_BLOCK_END, "end of statement block");
		} else {
			unexpected(p, NULL);
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			if (cap > 1u << 24)
				fail_at(p->f, TMPL_ERR_LIMIT, t->line, "template too large");
			struct stmt **nv = mem_array(p->m, cap, sizeof *nv);
			if (n)
				memcpy(nv, v, n * sizeof *nv);
			v = nv;
		}
		v[n++] = s;
	}
	return (struct body){v, n};
}

/* ======================================================================
 * Evaluation: scopes, callables, attribute access
 * ====================================================================== */

struct frame {
	struct frame *parent;
	struct dict *vars;
	bool captured;          /* a macro closes over it: never reuse */
};

struct loopctx {
	const struct list *items;
	size_t i, n;
	bool has_changed;
	value last_changed;
};

struct macro {
	const struct stmt *def;
	struct frame *closure;
};

enum gfunc { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME, G_LIPSUM, G_CYCLER, G_JOINER, G_COUNT_ };

static const char *const gfunc_names[G_COUNT_] = {
	"range", "namespace", "dict", "raise_exception", "strftime_now", "lipsum", "cycler", "joiner",
};

enum method_id {
	M_UNSUPPORTED,
	/* str */
	M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_RSPLIT, M_STARTSWITH, M_ENDSWITH, M_UPPER,
	M_LOWER, M_TITLE, M_CAPITALIZE, M_SWAPCASE, M_CASEFOLD, M_REPLACE, M_FIND, M_RFIND,
	M_INDEX, M_RINDEX, M_COUNT, M_JOIN, M_FORMAT, M_ISDIGIT, M_ISALPHA, M_ISALNUM,
	M_ISSPACE, M_ISUPPER, M_ISLOWER, M_ISDECIMAL, M_ISNUMERIC, M_SPLITLINES, M_ZFILL,
	M_CENTER, M_LJUST, M_RJUST, M_PARTITION, M_RPARTITION, M_REMOVEPREFIX, M_REMOVESUFFIX,
	/* dict */
	M_ITEMS, M_KEYS, M_VALUES, M_GET, M_COPY,
	/* loop */
	M_CYCLE, M_CHANGED,
};

enum { R_STR = 1, R_DICT = 2, R_LIST = 4, R_TUPLE = 8, R_LOOP = 16 };

static const struct {
	const char *name;
	uint8_t id;
	uint8_t recv;
} method_table[] = {
	{"strip", M_STRIP, R_STR}, {"lstrip", M_LSTRIP, R_STR}, {"rstrip", M_RSTRIP, R_STR},
	{"split", M_SPLIT, R_STR}, {"rsplit", M_RSPLIT, R_STR},
	{"startswith", M_STARTSWITH, R_STR}, {"endswith", M_ENDSWITH, R_STR},
	{"upper", M_UPPER, R_STR}, {"lower", M_LOWER, R_STR}, {"title", M_TITLE, R_STR},
	{"capitalize", M_CAPITALIZE, R_STR}, {"swapcase", M_SWAPCASE, R_STR},
	{"casefold", M_CASEFOLD, R_STR}, {"replace", M_REPLACE, R_STR},
	{"find", M_FIND, R_STR}, {"rfind", M_RFIND, R_STR},
	{"index", M_INDEX, R_STR | R_LIST | R_TUPLE}, {"rindex", M_RINDEX, R_STR},
	{"count", M_COUNT, R_STR | R_LIST | R_TUPLE}, {"join", M_JOIN, R_STR},
	{"format", M_FORMAT, R_STR}, {"isdigit", M_ISDIGIT, R_STR},
	{"isalpha", M_ISALPHA, R_STR}, {"isalnum", M_ISALNUM, R_STR},
	{"isspace", M_ISSPACE, R_STR}, {"isupper", M_ISUPPER, R_STR},
	{"islower", M_ISLOWER, R_STR}, {"isdecimal", M_ISDECIMAL, R_STR},
	{"isnumeric", M_ISNUMERIC, R_STR}, {"splitlines", M_SPLITLINES, R_STR},
	{"zfill", M_ZFILL, R_STR}, {"center", M_CENTER, R_STR}, {"ljust", M_LJUST, R_STR},
	{"rjust", M_RJUST, R_STR}, {"partition", M_PARTITION, R_STR},
	{"rpartition", M_RPARTITION, R_STR}, {"removeprefix", M_REMOVEPREFIX, R_STR},
	{"removesuffix", M_REMOVESUFFIX, R_STR},
	{"encode", M_UNSUPPORTED, R_STR}, {"expandtabs", M_UNSUPPORTED, R_STR},
	{"format_map", M_UNSUPPORTED, R_STR}, {"isascii", M_UNSUPPORTED, R_STR},
	{"isidentifier", M_UNSUPPORTED, R_STR}, {"isprintable", M_UNSUPPORTED, R_STR},
	{"istitle", M_UNSUPPORTED, R_STR}, {"maketrans", M_UNSUPPORTED, R_STR},
	{"translate", M_UNSUPPORTED, R_STR},
	{"items", M_ITEMS, R_DICT}, {"keys", M_KEYS, R_DICT}, {"values", M_VALUES, R_DICT},
	{"get", M_GET, R_DICT}, {"copy", M_COPY, R_DICT | R_LIST},
	{"fromkeys", M_UNSUPPORTED, R_DICT},
	{"cycle", M_CYCLE, R_LOOP}, {"changed", M_CHANGED, R_LOOP},
	/* mutating methods are refused by the immutable sandbox: they read
	 * as undefined, so calling one fails */
};

struct method {
	value self;
	uint8_t id;
	const char *name;
};

static const char *macro_name(const struct macro *m)
{
	return m->def->name->s;
}

static const char *method_name(const struct method *mt)
{
	return mt->name;
}

static struct frame *frame_new(struct rctx *c, struct frame *parent)
{
	struct frame *f = mem_alloc(c->m, sizeof *f);
	f->parent = parent;
	f->vars = dict_new(c->m, 0);
	f->captured = false;
	return f;
}

static void frame_reset(struct frame *f)
{
	f->vars->n = 0;
	f->vars->idx = NULL;
	f->vars->icap = 0;
}

static value lookup(struct rctx *c, struct frame *fr, struct str *name)
{
	value key = v_str(name);
	for (struct frame *f = fr; f; f = f->parent) {
		value *v = dict_get(f->vars, &key);
		if (v)
			return *v;
	}
	for (int i = 0; i < G_COUNT_; i++)
		if (str_eqc(name, gfunc_names[i])) {
			value v = {.t = T_FUNC};
			v.u.i = i;
			return v;
		}
	(void)c;
	return v_undef(name);
}

static value make_method(struct rctx *c, const value *self, int id, const char *name)
{
	struct method *mt = mem_alloc(c->m, sizeof *mt);
	mt->self = *self;
	mt->id = (uint8_t)id;
	mt->name = name;
	value v = {.t = T_METHOD};
	v.u.mt = mt;
	return v;
}

/* Python getattr(obj, name) for the types templates meet; T_ABSENT when
 * the object has no such attribute. */
static value py_getattr(struct rctx *c, const value *obj, const struct str *name)
{
	int recv = 0;
	switch (obj->t) {
	case T_STR: recv = R_STR; break;
	case T_DICT: recv = R_DICT; break;
	case T_LIST: recv = R_LIST; break;
	case T_TUPLE: recv = R_TUPLE; break;
	case T_LOOP: recv = R_LOOP; break;
	case T_NS: {
		value *v = dict_get(obj->u.d, &(value){.t = T_STR, .u.s = (struct str *)name});
		return v ? *v : (value){.t = T_ABSENT};
	}
	default:
		return (value){.t = T_ABSENT};
	}
	if (recv == R_LOOP) {
		const struct loopctx *lp = obj->u.lp;
		if (str_eqc(name, "index"))
			return v_int((int64_t)lp->i + 1);
		if (str_eqc(name, "index0"))
			return v_int((int64_t)lp->i);
		if (str_eqc(name, "revindex"))
			return v_int((int64_t)(lp->n - lp->i));
		if (str_eqc(name, "revindex0"))
			return v_int((int64_t)(lp->n - lp->i - 1));
		if (str_eqc(name, "first"))
			return v_bool(lp->i == 0);
		if (str_eqc(name, "last"))
			return v_bool(lp->i + 1 == lp->n);
		if (str_eqc(name, "length"))
			return v_int((int64_t)lp->n);
		if (str_eqc(name, "depth"))
			return v_int(1);
		if (str_eqc(name, "depth0"))
			return v_int(0);
		if (str_eqc(name, "previtem"))
			return lp->i > 0 ? lp->items->v[lp->i - 1] : v_undef(str_c(c->m, "previtem"));
		if (str_eqc(name, "nextitem"))
			return lp->i + 1 < lp->n ? lp->items->v[lp->i + 1] : v_undef(str_c(c->m, "nextitem"));
	}
	for (size_t i = 0; i < sizeof method_table / sizeof method_table[0]; i++)
		if ((method_table[i].recv & recv) && str_eqc(name, method_table[i].name))
			return make_method(c, obj, method_table[i].id, method_table[i].name);
	return (value){.t = T_ABSENT};
}

/* Jinja's sandboxed environment.getattr: attribute, then item. */
static value get_attr(struct rctx *c, const value *obj, struct str *name)
{
	if (obj->t == T_UNDEF)
		undef_fail(c, obj);
	value v = py_getattr(c, obj, name);
	if (v.t != T_ABSENT)
		return v;
	if (obj->t == T_DICT) {
		value *x = dict_get(obj->u.d, &(value){.t = T_STR, .u.s = name});
		if (x)
			return *x;
	}
	return v_undef(name);
}

/* Python sequence index with negatives; false when out of range. */
static bool seq_index(int64_t i, size_t n, size_t *out)
{
	if (i < 0)
		i += (int64_t)n;
	if (i < 0 || (uint64_t)i >= n)
		return false;
	*out = (size_t)i;
	return true;
}

/* Jinja's sandboxed environment.getitem: item, then attribute. */
static value get_item(struct rctx *c, const value *obj, const value *key)
{
	if (obj->t == T_UNDEF)
		undef_fail(c, obj);
	bool int_key = key->t == T_INT || key->t == T_BOOL;
	switch (obj->t) {
	case T_DICT: {
		if (key->t == T_LIST || key->t == T_DICT)
			break;   /* unhashable: TypeError, then getattr */
		value *x = dict_get(obj->u.d, key);
		if (x)
			return *x;
		break;
	}
	case T_LIST:
	case T_TUPLE: {
		size_t i;
		if (int_key && seq_index(as_int(key), obj->u.l->n, &i))
			return obj->u.l->v[i];
		break;
	}
	case T_STR: {
		if (!int_key)
			break;
		const struct str *s = obj->u.s;
		int64_t k = as_int(key);
		size_t n = k < 0 ? u8_count(s->s, s->len) : SIZE_MAX, i, pos = 0, adv = 0;
		if (k < 0 && !seq_index(k, n, &i))
			break;
		if (k >= 0)
			i = (size_t)k;
		/* walk to code point i without an offset table */
		for (size_t cp = 0; pos < s->len; cp++, pos += adv) {
			u8_dec(s->s + pos, s->len - pos, &adv);
			if (cp == i)
				return v_str(str_new(c->m, s->s + pos, adv));
		}
		break;
	}
	default:
		break;
	}
	if (key->t == T_STR) {
		value v = py_getattr(c, obj, key->u.s);
		if (v.t != T_ABSENT)
			return v;
		return v_undef(key->u.s);
	}
	return v_undef(NULL);
}

/* Python slice bounds (PySlice_AdjustIndices). */
static size_t slice_indices(struct rctx *c, size_t len, const value *vs, const value *ve,
			    const value *vstep, int64_t *start, int64_t *stepo)
{
	const value *parts[3] = {vs, ve, vstep};
	for (int k = 0; k < 3; k++)
		if (parts[k]->t != T_NONE && parts[k]->t != T_INT && parts[k]->t != T_BOOL &&
		    parts[k]->t != T_ABSENT)
			rt_fail(c, "slice indices must be integers or None");
	int64_t n = (int64_t)len;
	int64_t step = (vstep->t == T_INT || vstep->t == T_BOOL) ? as_int(vstep) : 1;
	if (step == 0)
		rt_fail(c, "slice step cannot be zero");
	if (step < -INT64_MAX)
		step = -INT64_MAX;
	int64_t st, en;
	bool has_s = vs->t == T_INT || vs->t == T_BOOL, has_e = ve->t == T_INT || ve->t == T_BOOL;
	if (step > 0) {
		st = has_s ? as_int(vs) : 0;
		en = has_e ? as_int(ve) : n;
		if (st < 0) {
			st = st < -n ? 0 : st + n;
		} else if (st > n) {
			st = n;
		}
		if (en < 0) {
			en = en < -n ? 0 : en + n;
		} else if (en > n) {
			en = n;
		}
	} else {
		st = has_s ? as_int(vs) : n - 1;
		en = has_e ? as_int(ve) : -1;
		bool en_default = !has_e;
		if (st < 0) {
			st = st < -n ? -1 : st + n;
		} else if (st >= n) {
			st = n - 1;
		}
		if (!en_default) {
			if (en < 0) {
				en = en < -n ? -1 : en + n;
			} else if (en >= n) {
				en = n - 1;
			}
		}
	}
	*start = st;
	*stepo = step;
	if (step > 0)
		return st < en ? (size_t)((en - st - 1) / step + 1) : 0;
	return en < st ? (size_t)((st - en - 1) / (-step) + 1) : 0;
}

static value do_slice(struct rctx *c, const value *obj, const value *vs, const value *ve,
		      const value *vstep)
{
	if (obj->t == T_UNDEF)
		undef_fail(c, obj);
	int64_t st, stp;
	if (obj->t == T_LIST || obj->t == T_TUPLE) {
		size_t cnt = slice_indices(c, obj->u.l->n, vs, ve, vstep, &st, &stp);
		struct list *l = list_new(c->m, cnt);
		for (size_t i = 0; i < cnt; i++)
			l->v[i] = obj->u.l->v[st + (int64_t)i * stp];
		return v_list(l, obj->t == T_TUPLE);
	}
	if (obj->t == T_STR) {
		size_t n;
		size_t *off = u8_offsets(c->m, obj->u.s, &n);
		size_t cnt = slice_indices(c, n, vs, ve, vstep, &st, &stp);
		if (stp == 1)
			return v_str(str_new(c->m, obj->u.s->s + off[st], off[st + (int64_t)cnt] - off[st]));
		struct sbuf b = {0};
		for (size_t i = 0; i < cnt; i++) {
			size_t k = (size_t)(st + (int64_t)i * stp);
			sb_put(c->m, &b, obj->u.s->s + off[k], off[k + 1] - off[k]);
		}
		return v_str(sb_str(c->m, &b));
	}
	return v_undef(NULL);
}

/* ---- arguments ---- */

struct callargs {
	value *pos;
	size_t npos;
	struct str **kwn;
	value *kwv;
	size_t nkw;
};

/* Binds args to params (Python rules); unbound params are T_ABSENT. */
static void bind_args(struct rctx *c, const char *fname, const struct callargs *ca,
		      const char *const *params, int np, value *out)
{
	for (int i = 0; i < np; i++)
		out[i].t = T_ABSENT;
	if (ca->npos > (size_t)np)
		rt_fail(c, "%s() takes at most %d argument%s (%zu given)", fname, np,
			np == 1 ? "" : "s", ca->npos);
	for (size_t i = 0; i < ca->npos; i++)
		out[i] = ca->pos[i];
	for (size_t k = 0; k < ca->nkw; k++) {
		int i;
		for (i = 0; i < np; i++)
			if (str_eqc(ca->kwn[k], params[i]))
				break;
		if (i == np)
			rt_fail(c, "%s() got an unexpected keyword argument '%.60s'", fname,
				ca->kwn[k]->s);
		if (out[i].t != T_ABSENT)
			rt_fail(c, "%s() got multiple values for argument '%s'", fname, params[i]);
		out[i] = ca->kwv[k];
	}
}

static value eval(struct rctx *c, struct frame *fr, const struct expr *e);

static void eval_args(struct rctx *c, struct frame *fr, const struct expr *e, struct callargs *ca)
{
	struct lbuild pos = {0};
	for (uint32_t i = 0; i < e->nargs; i++)
		lb_push(c->m, &pos, eval(c, fr, e->args[i]));
	if (e->star) {
		value sv = eval(c, fr, e->star);
		struct list *l = iterate(c, &sv);
		for (size_t i = 0; i < l->n; i++)
			lb_push(c->m, &pos, l->v[i]);
	}
	size_t nkw = e->nkw;
	value dv = {.t = T_NONE};
	if (e->dstar) {
		dv = eval(c, fr, e->dstar);
		if (dv.t != T_DICT)
			rt_fail(c, "argument after ** must be a mapping, not %s", type_name(&dv));
		nkw = add_or_die(&c->f, nkw, dv.u.d->n);
	}
	ca->pos = pos.v;
	ca->npos = pos.n;
	ca->nkw = 0;
	ca->kwn = mem_array(c->m, nkw, sizeof *ca->kwn);
	ca->kwv = mem_array(c->m, nkw, sizeof *ca->kwv);
	for (uint32_t i = 0; i < e->nkw; i++) {
		ca->kwn[ca->nkw] = e->kwn[i];
		ca->kwv[ca->nkw++] = eval(c, fr, e->kwv[i]);
	}
	if (e->dstar)
		for (size_t i = 0; i < dv.u.d->n; i++) {
			if (dv.u.d->k[i].t != T_STR)
				rt_fail(c, "keywords must be strings");
			ca->kwn[ca->nkw] = dv.u.d->k[i].u.s;
			ca->kwv[ca->nkw++] = dv.u.d->v[i];
		}
}

static int64_t want_int(struct rctx *c, const value *v, const char *what)
{
	if (v->t == T_UNDEF)
		undef_fail(c, v);
	if (v->t != T_INT && v->t != T_BOOL)
		rt_fail(c, "%s: '%s' object cannot be interpreted as an integer", what, type_name(v));
	return as_int(v);
}

static struct str *want_str(struct rctx *c, const value *v, const char *what)
{
	if (v->t == T_UNDEF)
		undef_fail(c, v);
	if (v->t != T_STR)
		rt_fail(c, "%s: expected str, got %s", what, type_name(v));
	return v->u.s;
}

/* ======================================================================
 * Python str operations
 * ====================================================================== */

static bool cp_in_set(uint32_t cp, const struct str *chars)
{
	size_t i = 0, adv;
	while (i < chars->len) {
		if (u8_dec(chars->s + i, chars->len - i, &adv) == cp)
			return true;
		i += adv;
	}
	return false;
}

/* str.strip/lstrip/rstrip; chars NULL means whitespace. */
static struct str *py_strip(struct rctx *c, const struct str *s, const struct str *chars, bool left,
			    bool right)
{
	size_t b = 0, e = s->len, adv;
	if (left) {
		while (b < e) {
			uint32_t cp = u8_dec(s->s + b, e - b, &adv);
			if (chars ? !cp_in_set(cp, chars) : !py_isspace(cp))
				break;
			b += adv;
		}
	}
	if (right) {
		if (!chars) {
			size_t r = rstrip_len(s->s + b, e - b);
			e = b + r;
		} else {
			size_t n;
			size_t *off = u8_offsets(c->m, s, &n);
			size_t k = n;
			while (k > 0 && off[k - 1] >= b) {
				uint32_t cp = u8_dec(s->s + off[k - 1], off[k] - off[k - 1], &adv);
				if (!cp_in_set(cp, chars))
					break;
				k--;
			}
			e = off[k] > b ? off[k] : b;
		}
	}
	if (b == 0 && e == s->len)
		return (struct str *)s;
	return str_new(c->m, s->s + b, e - b);
}

static const char *find_bytes(const char *h, size_t hn, const char *nd, size_t nn)
{
	if (nn == 0)
		return h;
	return memmem(h, hn, nd, nn);
}

static const char *rfind_bytes(const char *h, size_t hn, const char *nd, size_t nn)
{
	if (nn > hn)
		return NULL;
	for (size_t i = hn - nn + 1; i-- > 0;)
		if (memcmp(h + i, nd, nn) == 0)
			return h + i;
	return NULL;
}

/* str.split / str.rsplit. */
static struct list *py_split(struct rctx *c, const struct str *s, const struct str *sep,
			     int64_t maxsplit, bool from_right)
{
	struct lbuild lb = {0};
	if (sep && sep->len == 0)
		rt_fail(c, "empty separator");
	if (maxsplit < 0)
		maxsplit = INT64_MAX;
	if (sep) {
		if (!from_right) {
			size_t pos = 0;
			while (maxsplit-- > 0) {
				const char *h = find_bytes(s->s + pos, s->len - pos, sep->s, sep->len);
				if (!h)
					break;
				size_t at = (size_t)(h - s->s);
				lb_push(c->m, &lb, v_str(str_new(c->m, s->s + pos, at - pos)));
				pos = at + sep->len;
				step(c);
			}
			lb_push(c->m, &lb, v_str(str_new(c->m, s->s + pos, s->len - pos)));
			return lb_done(c->m, &lb);
		}
		size_t end = s->len;
		while (maxsplit-- > 0) {
			const char *h = rfind_bytes(s->s, end, sep->s, sep->len);
			if (!h)
				break;
			size_t at = (size_t)(h - s->s);
			lb_push(c->m, &lb, v_str(str_new(c->m, s->s + at + sep->len, end - at - sep->len)));
			end = at;
			step(c);
		}
		lb_push(c->m, &lb, v_str(str_new(c->m, s->s, end)));
	} else if (!from_right) {
		size_t pos = 0;
		for (;;) {
			pos += ws_span(s->s + pos, s->len - pos);
			if (pos >= s->len)
				break;
			if (maxsplit-- <= 0) {
				lb_push(c->m, &lb, v_str(str_new(c->m, s->s + pos, s->len - pos)));
				break;
			}
			size_t st = pos, adv;
			while (pos < s->len && !py_isspace(u8_dec(s->s + pos, s->len - pos, &adv)))
				pos += adv;
			lb_push(c->m, &lb, v_str(str_new(c->m, s->s + st, pos - st)));
			step(c);
		}
		return lb_done(c->m, &lb);
	} else {
		size_t n;
		size_t *off = u8_offsets(c->m, s, &n);
		size_t k = n, adv;
		for (;;) {
			while (k > 0 && py_isspace(u8_dec(s->s + off[k - 1], off[k] - off[k - 1], &adv)))
				k--;
			if (k == 0)
				break;
			if (maxsplit-- <= 0) {
				lb_push(c->m, &lb, v_str(str_new(c->m, s->s, off[k])));
				break;
			}
			size_t e = k;
			while (k > 0 && !py_isspace(u8_dec(s->s + off[k - 1], off[k] - off[k - 1], &adv)))
				k--;
			lb_push(c->m, &lb, v_str(str_new(c->m, s->s + off[k], off[e] - off[k])));
			step(c);
		}
	}
	/* built back to front */
	for (size_t i = 0; i < lb.n / 2; i++) {
		value t = lb.v[i];
		lb.v[i] = lb.v[lb.n - 1 - i];
		lb.v[lb.n - 1 - i] = t;
	}
	return lb_done(c->m, &lb);
}

static struct str *py_replace(struct rctx *c, const struct str *s, const struct str *old,
			      const struct str *new, int64_t count)
{
	if (count < 0)
		count = INT64_MAX;
	struct sbuf b = {0};
	if (old->len == 0) {
		size_t i = 0, adv;
		while (i <= s->len) {
			if (count > 0) {
				sb_put(c->m, &b, new->s, new->len);
				count--;
			}
			if (i == s->len)
				break;
			u8_dec(s->s + i, s->len - i, &adv);
			sb_put(c->m, &b, s->s + i, adv);
			i += adv;
		}
		return sb_str(c->m, &b);
	}
	size_t pos = 0;
	while (count-- > 0) {
		const char *h = find_bytes(s->s + pos, s->len - pos, old->s, old->len);
		if (!h)
			break;
		size_t at = (size_t)(h - s->s);
		sb_put(c->m, &b, s->s + pos, at - pos);
		sb_put(c->m, &b, new->s, new->len);
		pos = at + old->len;
	}
	sb_put(c->m, &b, s->s + pos, s->len - pos);
	return sb_str(c->m, &b);
}

static struct str *py_upper(struct rctx *c, const struct str *s)
{
	struct sbuf b = {0};
	sb_upper(c->m, &b, s->s, 0, s->len);
	return sb_str(c->m, &b);
}

static struct str *py_lower(struct rctx *c, const struct str *s)
{
	struct sbuf b = {0};
	sb_lower(c->m, &b, s->s, s->len, 0, s->len);
	return sb_str(c->m, &b);
}

/* str.title(): title-case after an uncased character, lower after a cased one. */
static struct str *py_title(struct rctx *c, const struct str *s)
{
	struct sbuf b = {0};
	bool prev_cased = false;
	size_t i = 0, adv;
	while (i < s->len) {
		uint32_t cp = u8_dec(s->s + i, s->len - i, &adv);
		if (prev_cased)
			sb_lower_at(c->m, &b, s->s, s->len, i, adv, cp);
		else
			sb_case_cp(c->m, &b, cp, CASE_TITLE);
		prev_cased = py_iscased(cp);
		i += adv;
	}
	return sb_str(c->m, &b);
}

/* str.capitalize(): first character title-cased, the rest lowered. */
static struct str *py_capitalize(struct rctx *c, const struct str *s)
{
	struct sbuf b = {0};
	if (s->len) {
		size_t adv;
		uint32_t cp = u8_dec(s->s, s->len, &adv);
		sb_case_cp(c->m, &b, cp, CASE_TITLE);
		sb_lower(c->m, &b, s->s, s->len, adv, s->len);
	}
	return sb_str(c->m, &b);
}

static struct str *py_swapcase(struct rctx *c, const struct str *s)
{
	struct sbuf b = {0};
	size_t i = 0, adv;
	while (i < s->len) {
		uint32_t cp = u8_dec(s->s + i, s->len - i, &adv);
		utf8proc_category_t cat = cp <= 0x10FFFF ? utf8proc_category((utf8proc_int32_t)cp) : 0;
		if (cat == UTF8PROC_CATEGORY_LU)
			sb_lower_at(c->m, &b, s->s, s->len, i, adv, cp);
		else if (cat == UTF8PROC_CATEGORY_LL)
			sb_case_cp(c->m, &b, cp, CASE_UPPER);
		else
			sb_put(c->m, &b, s->s + i, adv);
		i += adv;
	}
	return sb_str(c->m, &b);
}

/* Jinja's title filter: each run after `-`, whitespace, or an opening
 * bracket gets item[0].upper() + item[1:].lower(). */
static struct str *jinja_title(struct rctx *c, const struct str *s)
{
	struct sbuf b = {0};
	size_t i = 0, adv;
	bool at_start = true;
	while (i < s->len) {
		uint32_t cp = u8_dec(s->s + i, s->len - i, &adv);
		bool delim = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || py_isspace(cp);
		if (delim) {
			sb_put(c->m, &b, s->s + i, adv);
			at_start = true;
		} else if (at_start) {
			sb_case_cp(c->m, &b, cp, CASE_UPPER);
			at_start = false;
		} else {
			sb_lower_at(c->m, &b, s->s, s->len, i, adv, cp);
		}
		i += adv;
	}
	return sb_str(c->m, &b);
}

static bool cp_cat_in(uint32_t cp, const utf8proc_category_t *cats, int n)
{
	if (cp > 0x10FFFF)
		return false;
	utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
	for (int i = 0; i < n; i++)
		if (cat == cats[i])
			return true;
	return false;
}

static bool py_isalpha_cp(uint32_t cp)
{
	static const utf8proc_category_t L[] = {UTF8PROC_CATEGORY_LU, UTF8PROC_CATEGORY_LL,
		UTF8PROC_CATEGORY_LT, UTF8PROC_CATEGORY_LM, UTF8PROC_CATEGORY_LO};
	return cp_cat_in(cp, L, 5);
}

static bool py_isnumeric_cp(uint32_t cp)
{
	static const utf8proc_category_t N[] = {UTF8PROC_CATEGORY_ND, UTF8PROC_CATEGORY_NL,
		UTF8PROC_CATEGORY_NO};
	return cp_cat_in(cp, N, 3);
}

static bool py_isdecimal_cp(uint32_t cp)
{
	static const utf8proc_category_t N[] = {UTF8PROC_CATEGORY_ND};
	return cp_cat_in(cp, N, 1);
}

enum strpred { P_DIGIT, P_ALPHA, P_ALNUM, P_SPACE, P_DECIMAL, P_NUMERIC };

static bool py_str_all(const struct str *s, enum strpred pr)
{
	if (!s->len)
		return false;
	size_t i = 0, adv;
	while (i < s->len) {
		uint32_t cp = u8_dec(s->s + i, s->len - i, &adv);
		bool ok;
		switch (pr) {
		case P_DIGIT:
		case P_DECIMAL: ok = py_isdecimal_cp(cp); break;
		case P_ALPHA: ok = py_isalpha_cp(cp); break;
		case P_ALNUM: ok = py_isalpha_cp(cp) || py_isnumeric_cp(cp); break;
		case P_SPACE: ok = py_isspace(cp); break;
		default: ok = py_isnumeric_cp(cp); break;
		}
		if (!ok)
			return false;
		i += adv;
	}
	return true;
}

/* str.islower() (want_lower) / str.isupper(). */
static bool py_is_case(const struct str *s, bool want_lower)
{
	bool cased = false;
	size_t i = 0, adv;
	while (i < s->len) {
		uint32_t cp = u8_dec(s->s + i, s->len - i, &adv);
		i += adv;
		if (cp > 0x10FFFF)
			continue;
		utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
		if (cat == UTF8PROC_CATEGORY_LT)
			return false;
		if (cat == UTF8PROC_CATEGORY_LU) {
			if (want_lower)
				return false;
			cased = true;
		} else if (cat == UTF8PROC_CATEGORY_LL) {
			if (!want_lower)
				return false;
			cased = true;
		}
	}
	return cased;
}

static bool is_line_break(uint32_t cp)
{
	return cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D ||
	       cp == 0x1E || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

static struct list *py_splitlines(struct rctx *c, const struct str *s, bool keepends)
{
	struct lbuild lb = {0};
	size_t i = 0, st = 0, adv;
	while (i < s->len) {
		uint32_t cp = u8_dec(s->s + i, s->len - i, &adv);
		if (is_line_break(cp)) {
			size_t eol = i + adv;
			if (cp == '\r' && eol < s->len && s->s[eol] == '\n')
				eol++;
			lb_push(c->m, &lb, v_str(str_new(c->m, s->s + st, (keepends ? eol : i) - st)));
			st = i = eol;
			continue;
		}
		i += adv;
	}
	if (st < s->len)
		lb_push(c->m, &lb, v_str(str_new(c->m, s->s + st, s->len - st)));
	return lb_done(c->m, &lb);
}

/* Byte bounds [*lo, *hi) of s after Python start/end arguments (code-point
 * indexes) and the code-point index of *lo; false when the range is one
 * that never matches (start past the end, or past stop). */
static bool str_range(struct rctx *c, const struct str *s, const value *vs, const value *ve,
		      size_t *lo, size_t *hi, size_t *cp_lo)
{
	bool has_s = vs && vs->t != T_ABSENT && vs->t != T_NONE;
	bool has_e = ve && ve->t != T_ABSENT && ve->t != T_NONE;
	if (!has_s && !has_e) {
		*lo = 0;
		*hi = s->len;
		*cp_lo = 0;
		return true;
	}
	size_t n;
	size_t *off = u8_offsets(c->m, s, &n);
	int64_t len = (int64_t)n;
	int64_t st = has_s ? want_int(c, vs, "slice") : 0;
	int64_t en = has_e ? want_int(c, ve, "slice") : len;
	if (st < 0)
		st = st + len < 0 ? 0 : st + len;
	if (en < 0)
		en = en + len < 0 ? 0 : en + len;
	if (en > len)
		en = len;
	if (st > len || st > en)
		return false;
	*lo = off[st];
	*hi = off[en];
	*cp_lo = (size_t)st;
	return true;
}

static void sb_pad(struct rctx *c, struct sbuf *b, const struct str *fill, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		sb_put(c->m, b, fill->s, fill->len);
		if ((i & 1023) == 1023)
			step(c);
	}
}

/* str.center / ljust / rjust (kind 'c', 'l', 'r'). */
static struct str *py_justify(struct rctx *c, const struct str *s, int64_t width,
			      const struct str *fill, char kind)
{
	size_t n = u8_count(s->s, s->len);
	if (width <= (int64_t)n)
		return (struct str *)s;
	if ((uint64_t)width > c->lim.max_output)
		fail_at(&c->f, TMPL_ERR_LIMIT, c->line, "output limit exceeded");
	size_t marg = (size_t)width - n, left;
	if (kind == 'l')
		left = 0;
	else if (kind == 'r')
		left = marg;
	else
		left = marg / 2 + (marg & (size_t)width & 1);
	struct sbuf b = {0};
	sb_pad(c, &b, fill, left);
	sb_put(c->m, &b, s->s, s->len);
	sb_pad(c, &b, fill, marg - left);
	return sb_str(c->m, &b);
}

/* str.join over an iterable of str. */
static struct str *py_join(struct rctx *c, const struct str *sep, const struct list *l)
{
	struct sbuf b = {0};
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i].t != T_STR)
			rt_fail(c, "sequence item %zu: expected str instance, %s found", i,
				type_name(&l->v[i]));
		if (i)
			sb_put(c->m, &b, sep->s, sep->len);
		sb_put(c->m, &b, l->v[i].u.s->s, l->v[i].u.s->len);
	}
	return sb_str(c->m, &b);
}

/* ======================================================================
 * Formatting: `str % args`, str.format(), strftime
 * ====================================================================== */

static bool to_float_checked(struct rctx *c, const value *v, double *out)
{
	if (v->t == T_UNDEF)
		undef_fail(c, v);
	if (!is_num(v))
		return false;
	*out = as_float(v);
	return true;
}

/* printf-style formatting as Python's str.__mod__ does it. */
static struct str *py_percent(struct rctx *c, const struct str *fmt, const value *args)
{
	const value *items = args;
	size_t nitems = 1, next = 0;
	const struct dict *map = NULL;
	if (args->t == T_TUPLE) {
		items = args->u.l->v;
		nitems = args->u.l->n;
	} else if (args->t == T_DICT) {
		map = args->u.d;
	}
	struct sbuf b = {0};
	size_t i = 0;
	while (i < fmt->len) {
		const char *pc = memchr(fmt->s + i, '%', fmt->len - i);
		size_t stop = pc ? (size_t)(pc - fmt->s) : fmt->len;
		sb_put(c->m, &b, fmt->s + i, stop - i);
		if (!pc)
			break;
		i = stop + 1;
		if (i >= fmt->len)
			rt_fail(c, "incomplete format");
		const value *arg = NULL;
		if (fmt->s[i] == '(') {
			const char *close = memchr(fmt->s + i, ')', fmt->len - i);
			if (!close)
				rt_fail(c, "incomplete format key");
			if (!map)
				rt_fail(c, "format requires a mapping");
			struct str *key = str_new(c->m, fmt->s + i + 1, (size_t)(close - fmt->s) - i - 1);
			arg = dict_get(map, &(value){.t = T_STR, .u.s = key});
			if (!arg)
				rt_fail(c, "format key '%.60s' not found", key->s);
			i = (size_t)(close - fmt->s) + 1;
		}
		char flags[8];
		size_t nf = 0;
		while (i < fmt->len && strchr("-+ #0", fmt->s[i]) && nf < sizeof flags - 1)
			flags[nf++] = fmt->s[i++];
		flags[nf] = 0;
		int width = -1, prec = -1;
		while (i < fmt->len && is_digit(fmt->s[i])) {
			width = (width < 0 ? 0 : width) * 10 + (fmt->s[i++] - '0');
			if (width > 100000)
				rt_fail(c, "format width too large");
		}
		if (i < fmt->len && fmt->s[i] == '.') {
			i++;
			prec = 0;
			while (i < fmt->len && is_digit(fmt->s[i])) {
				prec = prec * 10 + (fmt->s[i++] - '0');
				if (prec > 1000)
					rt_fail(c, "format precision too large");
			}
		}
		while (i < fmt->len && strchr("hlL", fmt->s[i]))
			i++;
		if (i >= fmt->len)
			rt_fail(c, "incomplete format");
		char type = fmt->s[i++];
		if (type == '%') {
			sb_putc(c->m, &b, '%');
			continue;
		}
		if (!arg) {
			if (map)
				arg = args;
			else if (next < nitems)
				arg = &items[next++];
			else
				rt_fail(c, "not enough arguments for format string");
		}
		char cf[32], num[512];
		switch (type) {
		case 's':
		case 'r':
		case 'a': {
			struct sbuf t = {0};
			if (type == 's')
				py_str_into(c, &t, arg);
			else
				py_repr(c, &t, arg);
			size_t n = u8_count(t.p ? t.p : "", t.len), keep = t.len;
			if (prec >= 0 && (size_t)prec < n) {
				size_t k = 0, adv, cnt = 0;
				while (cnt < (size_t)prec) {
					u8_dec(t.p + k, t.len - k, &adv);
					k += adv;
					cnt++;
				}
				keep = k;
				n = (size_t)prec;
			}
			bool left = strchr(flags, '-') != NULL;
			size_t pad = width > 0 && (size_t)width > n ? (size_t)width - n : 0;
			for (size_t k = 0; !left && k < pad; k++)
				sb_putc(c->m, &b, ' ');
			sb_put(c->m, &b, t.p, keep);
			for (size_t k = 0; left && k < pad; k++)
				sb_putc(c->m, &b, ' ');
			continue;
		}
		case 'd':
		case 'i':
		case 'u':
		case 'x':
		case 'X':
		case 'o': {
			double d;
			if (!to_float_checked(c, arg, &d))
				rt_fail(c, "%%%c format: a real number is required, not %s", type,
					type_name(arg));
			long long v = arg->t == T_FLOAT ? (long long)d : (long long)as_int(arg);
			char t2 = type == 'i' || type == 'u' ? 'd' : type;
			snprintf(cf, sizeof cf, "%%%s%s%sll%c", flags, width >= 0 ? "*" : "",
				 prec >= 0 ? ".*" : "", t2);
			if (width >= 0 && prec >= 0)
				snprintf(num, sizeof num, cf, width, prec, v);
			else if (width >= 0)
				snprintf(num, sizeof num, cf, width, v);
			else if (prec >= 0)
				snprintf(num, sizeof num, cf, prec, v);
			else
				snprintf(num, sizeof num, cf, v);
			sb_puts(c->m, &b, num);
			continue;
		}
		case 'f':
		case 'F':
		case 'e':
		case 'E':
		case 'g':
		case 'G': {
			double d;
			if (!to_float_checked(c, arg, &d))
				rt_fail(c, "must be real number, not %s", type_name(arg));
			if (prec < 0)
				prec = 6;
			snprintf(cf, sizeof cf, "%%%s%s.*%c", flags, width >= 0 ? "*" : "", type);
			if (width >= 0)
				snprintf(num, sizeof num, cf, width, prec, d);
			else
				snprintf(num, sizeof num, cf, prec, d);
			sb_puts(c->m, &b, num);
			continue;
		}
		case 'c':
			if (arg->t == T_STR && u8_count(arg->u.s->s, arg->u.s->len) == 1)
				sb_put(c->m, &b, arg->u.s->s, arg->u.s->len);
			else if (arg->t == T_INT && arg->u.i >= 0 && arg->u.i <= 0x10FFFF)
				sb_cp(c->m, &b, (uint32_t)arg->u.i);
			else
				rt_fail(c, "%%c requires int or char");
			continue;
		default:
			rt_fail(c, "unsupported format character '%c'", type);
		}
	}
	if (!map && next < nitems && args->t == T_TUPLE)
		rt_fail(c, "not all arguments converted during string formatting");
	if (!map && args->t != T_TUPLE && next == 0)
		rt_fail(c, "not all arguments converted during string formatting");
	return sb_str(c->m, &b);
}

/* str.format() with auto/explicit indexes, names, .attr/[key] chains,
 * !r/!s conversions and a simple spec ([[fill]align][width][.prec][s|d|f]). */
static struct str *py_format(struct rctx *c, const struct str *fmt, const struct callargs *ca)
{
	struct sbuf b = {0};
	size_t i = 0, auto_idx = 0;
	while (i < fmt->len) {
		char ch = fmt->s[i];
		if (ch == '}') {
			if (i + 1 < fmt->len && fmt->s[i + 1] == '}') {
				sb_putc(c->m, &b, '}');
				i += 2;
				continue;
			}
			rt_fail(c, "Single '}' encountered in format string");
		}
		if (ch != '{') {
			sb_putc(c->m, &b, ch);
			i++;
			continue;
		}
		if (i + 1 < fmt->len && fmt->s[i + 1] == '{') {
			sb_putc(c->m, &b, '{');
			i += 2;
			continue;
		}
		size_t j = i + 1;
		while (j < fmt->len && fmt->s[j] != '}' && fmt->s[j] != '!' && fmt->s[j] != ':' &&
		       fmt->s[j] != '.' && fmt->s[j] != '[')
			j++;
		value v;
		if (j == i + 1) {
			if (auto_idx >= ca->npos)
				rt_fail(c, "Replacement index %zu out of range", auto_idx);
			v = ca->pos[auto_idx++];
		} else if (is_digit(fmt->s[i + 1])) {
			size_t idx = 0;
			for (size_t k = i + 1; k < j; k++) {
				if (!is_digit(fmt->s[k]) || idx > 100000)
					rt_fail(c, "bad format field");
				idx = idx * 10 + (size_t)(fmt->s[k] - '0');
			}
			if (idx >= ca->npos)
				rt_fail(c, "Replacement index %zu out of range", idx);
			v = ca->pos[idx];
		} else {
			size_t k;
			for (k = 0; k < ca->nkw; k++)
				if (ca->kwn[k]->len == j - i - 1 && !memcmp(ca->kwn[k]->s, fmt->s + i + 1, j - i - 1))
					break;
			if (k == ca->nkw)
				rt_fail(c, "format key '%.*s' not found", (int)(j - i - 1 > 60 ? 60 : j - i - 1),
					fmt->s + i + 1);
			v = ca->kwv[k];
		}
		while (j < fmt->len && (fmt->s[j] == '.' || fmt->s[j] == '[')) {
			if (fmt->s[j] == '.') {
				size_t st = ++j;
				while (j < fmt->len && fmt->s[j] != '}' && fmt->s[j] != '!' &&
				       fmt->s[j] != ':' && fmt->s[j] != '.' && fmt->s[j] != '[')
					j++;
				v = get_attr(c, &v, str_new(c->m, fmt->s + st, j - st));
			} else {
				size_t st = ++j;
				while (j < fmt->len && fmt->s[j] != ']')
					j++;
				if (j >= fmt->len)
					rt_fail(c, "Missing ']' in format string");
				value key;
				bool digits = j > st;
				for (size_t k = st; k < j; k++)
					digits = digits && is_digit(fmt->s[k]);
				if (digits && j - st < 18)
					key = v_int(strtoll(str_new(c->m, fmt->s + st, j - st)->s, NULL, 10));
				else
					key = v_str(str_new(c->m, fmt->s + st, j - st));
				v = get_item(c, &v, &key);
				j++;
			}
		}
		char conv = 0;
		if (j < fmt->len && fmt->s[j] == '!') {
			if (j + 1 >= fmt->len)
				rt_fail(c, "unmatched '{' in format string");
			conv = fmt->s[j + 1];
			j += 2;
		}
		size_t spec_b = j, spec_e = j;
		if (j < fmt->len && fmt->s[j] == ':') {
			spec_b = ++j;
			while (j < fmt->len && fmt->s[j] != '}')
				j++;
			spec_e = j;
		}
		if (j >= fmt->len || fmt->s[j] != '}')
			rt_fail(c, "expected '}' before end of string");
		i = j + 1;
		struct sbuf t = {0};
		if (conv == 'r' || conv == 'a')
			py_repr(c, &t, &v);
		else if (conv == 's' || conv == 0)
			py_str_into(c, &t, &v);
		else
			rt_fail(c, "Unknown conversion specifier %c", conv);
		if (spec_b == spec_e) {
			sb_put(c->m, &b, t.p, t.len);
			continue;
		}
		/* [[fill]align][width][.prec][type] */
		const char *sp = fmt->s + spec_b;
		size_t sl = spec_e - spec_b, k = 0;
		uint32_t fill = ' ';
		char align = 0;
		size_t adv = 1;
		if (sl >= 2) {
			uint32_t f0 = u8_dec(sp, sl, &adv);
			if (adv < sl && strchr("<>^", sp[adv])) {
				fill = f0;
				align = sp[adv];
				k = adv + 1;
			}
		}
		if (!align && k < sl && strchr("<>^", sp[k]))
			align = sp[k++];
		long width = 0, prec = -1;
		while (k < sl && is_digit(sp[k]) && width < 100000)
			width = width * 10 + (sp[k++] - '0');
		if (k < sl && sp[k] == '.') {
			k++;
			prec = 0;
			while (k < sl && is_digit(sp[k]) && prec < 1000)
				prec = prec * 10 + (sp[k++] - '0');
		}
		char type = k < sl ? sp[k++] : 0;
		if (k != sl || (type && !strchr("sdf", type)))
			rt_fail(c, "format spec '%.*s' is not supported", (int)(sl > 40 ? 40 : sl), sp);
		struct str *body;
		if (type == 'f' || (type == 0 && prec >= 0 && is_num(&v))) {
			double d;
			if (!to_float_checked(c, &v, &d))
				rt_fail(c, "Unknown format code 'f' for object of type '%s'", type_name(&v));
			char num[512];
			snprintf(num, sizeof num, "%.*f", (int)(prec < 0 ? 6 : prec), d);
			body = str_c(c->m, num);
		} else {
			body = str_new(c->m, t.p ? t.p : "", t.len);
			if (prec >= 0 && type != 'd') {
				size_t n2;
				size_t *off = u8_offsets(c->m, body, &n2);
				if ((size_t)prec < n2)
					body = str_new(c->m, body->s, off[prec]);
			}
		}
		if (!align)
			align = is_num(&v) ? '>' : '<';
		char fb[4];
		struct str *fs = str_new(c->m, fb, u8_enc(fill, fb));
		struct str *out = py_justify(c, body, width, fs, align == '<' ? 'l' : align == '>' ? 'r' : 'c');
		sb_put(c->m, &b, out->s, out->len);
	}
	return sb_str(c->m, &b);
}

static const char *const wday_abbr[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const wday_full[] = {"Sunday", "Monday", "Tuesday", "Wednesday",
					"Thursday", "Friday", "Saturday"};
static const char *const mon_abbr[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
				       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const mon_full[] = {"January", "February", "March", "April", "May", "June",
				       "July", "August", "September", "October", "November",
				       "December"};

/* datetime.now().strftime(fmt) for a naive local time in the C locale. */
static struct str *py_strftime(struct rctx *c, const struct str *fmt)
{
	time_t t = c->now ? (time_t)c->now : time(NULL);
	struct tm tm;
	if (!localtime_r(&t, &tm))
		rt_fail(c, "strftime_now: time out of range");
	struct sbuf b = {0};
	for (size_t i = 0; i < fmt->len; i++) {
		char ch = fmt->s[i];
		if (ch != '%' || i + 1 >= fmt->len) {
			sb_putc(c->m, &b, ch);
			continue;
		}
		char pad = 0;   /* 0: default, '-': none, '_': space, '0': zero */
		size_t j = i + 1;
		if (fmt->s[j] == '-' || fmt->s[j] == '_' || fmt->s[j] == '0') {
			pad = fmt->s[j++];
			if (j >= fmt->len) {
				sb_put(c->m, &b, fmt->s + i, j - i);
				break;
			}
		}
		char d = fmt->s[j];
		int num = -1, w = 2;
		char defpad = '0';
		const char *text = NULL;
		char buf[64];
		switch (d) {
		case 'a': text = wday_abbr[tm.tm_wday % 7]; break;
		case 'A': text = wday_full[tm.tm_wday % 7]; break;
		case 'b':
		case 'h': text = mon_abbr[tm.tm_mon % 12]; break;
		case 'B': text = mon_full[tm.tm_mon % 12]; break;
		case 'd': num = tm.tm_mday; break;
		case 'e': num = tm.tm_mday; defpad = ' '; break;
		case 'H': num = tm.tm_hour; break;
		case 'k': num = tm.tm_hour; defpad = ' '; break;
		case 'I': num = tm.tm_hour % 12 ? tm.tm_hour % 12 : 12; break;
		case 'l': num = tm.tm_hour % 12 ? tm.tm_hour % 12 : 12; defpad = ' '; break;
		case 'j': num = tm.tm_yday + 1; w = 3; break;
		case 'm': num = tm.tm_mon + 1; break;
		case 'M': num = tm.tm_min; break;
		case 'S': num = tm.tm_sec; break;
		case 'y': num = (tm.tm_year + 1900) % 100; break;
		case 'Y': num = tm.tm_year + 1900; w = 1; break;
		case 'C': num = (tm.tm_year + 1900) / 100; break;
		case 'w': num = tm.tm_wday; w = 1; break;
		case 'u': num = tm.tm_wday ? tm.tm_wday : 7; w = 1; break;
		case 'p': text = tm.tm_hour < 12 ? "AM" : "PM"; break;
		case 'P': text = tm.tm_hour < 12 ? "am" : "pm"; break;
		case 'f': text = "000000"; break;
		case 'z':
		case 'Z': text = ""; break;   /* naive datetime: empty */
		case '%': text = "%"; break;
		case 'n': text = "\n"; break;
		case 't': text = "\t"; break;
		case 'D':
			snprintf(buf, sizeof buf, "%02d/%02d/%02d", tm.tm_mon + 1, tm.tm_mday,
				 (tm.tm_year + 1900) % 100);
			text = buf;
			break;
		case 'x':
			snprintf(buf, sizeof buf, "%02d/%02d/%02d", tm.tm_mon + 1, tm.tm_mday,
				 (tm.tm_year + 1900) % 100);
			text = buf;
			break;
		case 'F':
			snprintf(buf, sizeof buf, "%d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
				 tm.tm_mday);
			text = buf;
			break;
		case 'T':
		case 'X':
			snprintf(buf, sizeof buf, "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
			text = buf;
			break;
		case 'R':
			snprintf(buf, sizeof buf, "%02d:%02d", tm.tm_hour, tm.tm_min);
			text = buf;
			break;
		case 'c':
			snprintf(buf, sizeof buf, "%s %s %2d %02d:%02d:%02d %d", wday_abbr[tm.tm_wday % 7],
				 mon_abbr[tm.tm_mon % 12], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
				 tm.tm_year + 1900);
			text = buf;
			break;
		case 's':
			snprintf(buf, sizeof buf, "%lld", (long long)t);
			text = buf;
			break;
		default: {
			/* rarely used (week numbers, ISO years): let the C library do it */
			char f2[4] = {'%', d, 0, 0};
			size_t n = strftime(buf, sizeof buf, f2, &tm);
			buf[n] = 0;
			text = buf;
		}
		}
		if (text) {
			sb_puts(c->m, &b, text);
		} else {
			char nb[32];
			if (pad == '-')
				snprintf(nb, sizeof nb, "%d", num);
			else if ((pad ? pad : defpad) == ' ')
				snprintf(nb, sizeof nb, "%*d", w, num);
			else
				snprintf(nb, sizeof nb, "%0*d", w, num);
			sb_puts(c->m, &b, nb);
		}
		i = j;
	}
	return sb_str(c->m, &b);
}

/* ======================================================================
 * Arithmetic
 * ====================================================================== */

static value arith(struct rctx *c, int op, const value *a, const value *b)
{
	if (a->t == T_UNDEF)
		undef_fail(c, a);
	if (b->t == T_UNDEF)
		undef_fail(c, b);
	bool nums = is_num(a) && is_num(b);
	bool ints = nums && a->t != T_FLOAT && b->t != T_FLOAT;
	int64_t x = 0, y = 0, r;
	if (ints) {
		x = as_int(a);
		y = as_int(b);
	}
	switch (op) {
	case OP_ADD:
		if (ints) {
			if (__builtin_add_overflow(x, y, &r))
				rt_fail(c, "integer overflow");
			return v_int(r);
		}
		if (nums)
			return v_float(as_float(a) + as_float(b));
		if (a->t == T_STR && b->t == T_STR) {
			size_t n = add_or_die(&c->f, a->u.s->len, b->u.s->len);
			if (n > c->lim.max_output)
				fail_at(&c->f, TMPL_ERR_LIMIT, c->line, "string too long");
			struct str *s = mem_alloc(c->m, add_or_die(&c->f, sizeof(struct str) + 1, n));
			s->len = n;
			memcpy(s->s, a->u.s->s, a->u.s->len);
			memcpy(s->s + a->u.s->len, b->u.s->s, b->u.s->len);
			s->s[n] = 0;
			return v_str(s);
		}
		if (a->t == b->t && (a->t == T_LIST || a->t == T_TUPLE)) {
			size_t n = add_or_die(&c->f, a->u.l->n, b->u.l->n);
			struct list *l = list_new(c->m, n);
			if (a->u.l->n)
				memcpy(l->v, a->u.l->v, a->u.l->n * sizeof(value));
			if (b->u.l->n)
				memcpy(l->v + a->u.l->n, b->u.l->v, b->u.l->n * sizeof(value));
			return v_list(l, a->t == T_TUPLE);
		}
		if (a->t == T_STR)
			rt_fail(c, "can only concatenate str (not \"%s\") to str", type_name(b));
		if (a->t == T_LIST)
			rt_fail(c, "can only concatenate list (not \"%s\") to list", type_name(b));
		break;
	case OP_SUB:
		if (ints) {
			if (__builtin_sub_overflow(x, y, &r))
				rt_fail(c, "integer overflow");
			return v_int(r);
		}
		if (nums)
			return v_float(as_float(a) - as_float(b));
		break;
	case OP_MUL:
		if (ints) {
			if (__builtin_mul_overflow(x, y, &r))
				rt_fail(c, "integer overflow");
			return v_int(r);
		}
		if (nums)
			return v_float(as_float(a) * as_float(b));
		{
			const value *seq = NULL, *cnt = NULL;
			bool a_seq = a->t == T_STR || a->t == T_LIST || a->t == T_TUPLE;
			bool b_seq = b->t == T_STR || b->t == T_LIST || b->t == T_TUPLE;
			if ((a->t == T_INT || a->t == T_BOOL) && b_seq) {
				seq = b;
				cnt = a;
			} else if ((b->t == T_INT || b->t == T_BOOL) && a_seq) {
				seq = a;
				cnt = b;
			}
			if (seq) {
				int64_t k = as_int(cnt);
				if (k < 0)
					k = 0;
				if (seq->t == T_STR) {
					if (!seq->u.s->len)
						k = 0;
					size_t n = mul_or_die(&c->f, seq->u.s->len, (size_t)k);
					if (n > c->lim.max_output)
						fail_at(&c->f, TMPL_ERR_LIMIT, c->line, "string too long");
					struct sbuf sb = {0};
					for (int64_t i = 0; i < k; i++)
						sb_put(c->m, &sb, seq->u.s->s, seq->u.s->len);
					return v_str(sb_str(c->m, &sb));
				}
				size_t n = mul_or_die(&c->f, seq->u.l->n, (size_t)k);
				struct list *l = list_new(c->m, n);
				for (size_t i = 0; i < n; i++)
					l->v[i] = seq->u.l->v[i % seq->u.l->n];
				return v_list(l, seq->t == T_TUPLE);
			}
		}
		break;
	case OP_DIV:
		if (nums) {
			if (as_float(b) == 0)
				rt_fail(c, "division by zero");
			if (ints)
				return v_float((double)x / (double)y);
			return v_float(as_float(a) / as_float(b));
		}
		break;
	case OP_FLOORDIV:
	case OP_MOD:
		if (ints) {
			if (y == 0)
				rt_fail(c, "integer division or modulo by zero");
			if (x == INT64_MIN && y == -1)
				rt_fail(c, "integer overflow");
			int64_t q = x / y, m = x % y;
			if (m != 0 && ((m < 0) != (y < 0))) {
				m += y;
				q -= 1;
			}
			return v_int(op == OP_MOD ? m : q);
		}
		if (nums) {
			double fx = as_float(a), fy = as_float(b);
			if (fy == 0)
				rt_fail(c, "float division by zero");
			double m = fmod(fx, fy), q;
			double div = (fx - m) / fy;
			if (m != 0) {
				if ((fy < 0) != (m < 0)) {
					m += fy;
					div -= 1.0;
				}
			} else {
				m = copysign(0.0, fy);
			}
			if (div != 0) {
				q = floor(div);
				if (div - q > 0.5)
					q += 1.0;
			} else {
				q = copysign(0.0, fx / fy);
			}
			return v_float(op == OP_MOD ? m : q);
		}
		if (op == OP_MOD && a->t == T_STR)
			return v_str(py_percent(c, a->u.s, b));
		break;
	case OP_POW:
		if (ints && y >= 0) {
			int64_t acc = 1, base = x, e = y;
			while (e > 0) {
				if (e & 1)
					if (__builtin_mul_overflow(acc, base, &acc))
						rt_fail(c, "integer overflow");
				e >>= 1;
				if (e && __builtin_mul_overflow(base, base, &base))
					rt_fail(c, "integer overflow");
			}
			return v_int(acc);
		}
		if (nums) {
			double fx = as_float(a), fy = as_float(b);
			if (fx == 0 && fy < 0)
				rt_fail(c, "0.0 cannot be raised to a negative power");
			return v_float(pow(fx, fy));
		}
		break;
	default:
		break;
	}
	rt_fail(c, "unsupported operand type(s) for %s: '%s' and '%s'", op_text(op), type_name(a),
		type_name(b));
}

/* ======================================================================
 * Tests
 * ====================================================================== */

static bool apply_test(struct rctx *c, int tid, const value *v, const struct callargs *ca);

static const value *test_arg(struct rctx *c, const struct callargs *ca, const char *tname)
{
	if (ca->npos < 1)
		rt_fail(c, "test '%s' needs an argument", tname);
	return &ca->pos[0];
}

static bool apply_test(struct rctx *c, int tid, const value *v, const struct callargs *ca)
{
	switch (tid) {
	case X_DEFINED: return v->t != T_UNDEF;
	case X_UNDEFINED: return v->t == T_UNDEF;
	case X_NONE: return v->t == T_NONE;
	case X_BOOLEAN: return v->t == T_BOOL;
	case X_TRUE: return v->t == T_BOOL && v->u.b;
	case X_FALSE: return v->t == T_BOOL && !v->u.b;
	case X_INTEGER: return v->t == T_INT;
	case X_FLOAT: return v->t == T_FLOAT;
	case X_NUMBER: return is_num(v);
	case X_STRING: return v->t == T_STR;
	case X_MAPPING: return v->t == T_DICT;
	case X_ITERABLE:
		return v->t == T_STR || v->t == T_LIST || v->t == T_TUPLE || v->t == T_DICT ||
		       v->t == T_UNDEF || v->t == T_LOOP;
	case X_SEQUENCE:
		return v->t == T_STR || v->t == T_LIST || v->t == T_TUPLE || v->t == T_DICT ||
		       v->t == T_UNDEF;
	case X_CALLABLE:
		return v->t == T_FUNC || v->t == T_MACRO || v->t == T_METHOD || v->t == T_UNDEF ||
		       v->t == T_LOOP;
	case X_ESCAPED: return false;
	case X_LOWER: return py_is_case(py_str(c, v), true);
	case X_UPPER: return py_is_case(py_str(c, v), false);
	case X_ODD:
	case X_EVEN: {
		value two = v_int(2);
		value m = arith(c, OP_MOD, v, &two);
		bool zero = !truthy(&m);
		return tid == X_EVEN ? zero : !zero;
	}
	case X_DIVISIBLEBY: {
		value m = arith(c, OP_MOD, v, test_arg(c, ca, "divisibleby"));
		return !truthy(&m);
	}
	case X_EQ:
	case X_EQUALTO:
	case X_OP_EQ: return val_eq(c, v, test_arg(c, ca, "eq"));
	case X_NE:
	case X_OP_NE: return !val_eq(c, v, test_arg(c, ca, "ne"));
	case X_LT:
	case X_LESSTHAN:
	case X_OP_LT: return val_cmp(c, v, test_arg(c, ca, "lt"), "<") < 0;
	case X_LE:
	case X_OP_LE: return val_cmp(c, v, test_arg(c, ca, "le"), "<=") <= 0;
	case X_GT:
	case X_GREATERTHAN:
	case X_OP_GT: return val_cmp(c, v, test_arg(c, ca, "gt"), ">") > 0;
	case X_GE:
	case X_OP_GE: return val_cmp(c, v, test_arg(c, ca, "ge"), ">=") >= 0;
	case X_IN: return contains(c, test_arg(c, ca, "in"), v);
	case X_SAMEAS: {
		const value *o = test_arg(c, ca, "sameas");
		if (v->t != o->t)
			return false;
		switch (v->t) {
		case T_NONE: case T_UNDEF: return v->t == T_NONE;
		case T_BOOL: return v->u.b == o->u.b;
		case T_INT: return v->u.i == o->u.i && v->u.i >= -5 && v->u.i <= 256;
		default: return v->u.l == o->u.l;
		}
	}
	case X_FILTER: {
		const value *o = test_arg(c, ca, "filter");
		return o->t == T_STR && name_index(filter_names, F_COUNT_, o->u.s) >= 0;
	}
	case X_TEST: {
		const value *o = test_arg(c, ca, "test");
		return o->t == T_STR && name_index(test_names, X_COUNT_, o->u.s) >= 0;
	}
	default:
		rt_fail(c, "test '%s' is not supported",
			tid >= 0 && tid < X_COUNT_ ? test_names[tid] : "?");
	}
}

/* Calls the test named by a value (select, selectattr, ...). */
static bool test_by_name(struct rctx *c, const value *name, const value *v, const struct callargs *ca)
{
	if (name->t != T_STR)
		rt_fail(c, "test name must be a string");
	int tid = name_index(test_names, X_COUNT_, name->u.s);
	if (tid < 0)
		rt_fail(c, "No test named '%.60s'", name->u.s->s);
	return apply_test(c, tid, v, ca);
}

/* ======================================================================
 * Filters
 * ====================================================================== */

static value apply_filter(struct rctx *c, int fid, const value *in, const struct callargs *ca);

/* Jinja's make_attrgetter: "a.b.0" walks getitem on each part (digits are
 * integer indexes); default replaces an undefined result. */
static value attr_path(struct rctx *c, const value *item, const value *attr, const value *dflt)
{
	value cur_v = *item;
	if (attr->t == T_INT) {
		cur_v = get_item(c, &cur_v, attr);
	} else if (attr->t == T_STR) {
		const struct str *s = attr->u.s;
		size_t st = 0;
		for (size_t i = 0; i <= s->len; i++) {
			if (i < s->len && s->s[i] != '.')
				continue;
			struct str *part = str_new(c->m, s->s + st, i - st);
			bool digits = part->len > 0 && part->len < 18;
			for (size_t k = 0; k < part->len; k++)
				digits = digits && is_digit(part->s[k]);
			value key = digits ? v_int(strtoll(part->s, NULL, 10)) : v_str(part);
			cur_v = get_item(c, &cur_v, &key);
			if (dflt && dflt->t != T_ABSENT && dflt->t != T_NONE && cur_v.t == T_UNDEF)
				cur_v = *dflt;
			st = i + 1;
		}
	} else if (attr->t != T_NONE && attr->t != T_ABSENT) {
		rt_fail(c, "attribute must be a string or integer");
	}
	return cur_v;
}

static value ignore_case(struct rctx *c, const value *v)
{
	return v->t == T_STR ? v_str(py_lower(c, v->u.s)) : *v;
}

struct keyed_cmp {
	bool reverse;
};

/* Compares element 0 of two (key, item) tuples. */
static int keyed_cmp_fn(struct rctx *c, const value *a, const value *b, const void *ctx)
{
	const struct keyed_cmp *kc = ctx;
	int r = val_cmp(c, &a->u.l->v[0], &b->u.l->v[0], "<");
	return kc->reverse ? -r : r;
}

static value make_pair(struct rctx *c, value a, value b)
{
	struct list *l = list_new(c->m, 2);
	l->v[0] = a;
	l->v[1] = b;
	return v_list(l, true);
}

/* Sort key for sort/unique/min/max: attribute(s), then case folding. */
static value sort_key(struct rctx *c, const value *item, const value *attr, bool case_sensitive)
{
	if (attr->t == T_STR && memchr(attr->u.s->s, ',', attr->u.s->len)) {
		struct lbuild lb = {0};
		const struct str *s = attr->u.s;
		size_t st = 0;
		for (size_t i = 0; i <= s->len; i++) {
			if (i < s->len && s->s[i] != ',')
				continue;
			value part = v_str(py_strip(c, str_new(c->m, s->s + st, i - st), NULL, true, true));
			value k = attr_path(c, item, &part, NULL);
			lb_push(c->m, &lb, case_sensitive ? k : ignore_case(c, &k));
			st = i + 1;
		}
		return v_list(lb_done(c->m, &lb), true);
	}
	value k = attr_path(c, item, attr, NULL);
	return case_sensitive ? k : ignore_case(c, &k);
}

static struct str *html_escape(struct rctx *c, const struct str *s)
{
	struct sbuf b = {0};
	for (size_t i = 0; i < s->len; i++) {
		switch (s->s[i]) {
		case '&': sb_puts(c->m, &b, "&amp;"); break;
		case '<': sb_puts(c->m, &b, "&lt;"); break;
		case '>': sb_puts(c->m, &b, "&gt;"); break;
		case '"': sb_puts(c->m, &b, "&#34;"); break;
		case '\'': sb_puts(c->m, &b, "&#39;"); break;
		default: sb_putc(c->m, &b, s->s[i]);
		}
	}
	return sb_str(c->m, &b);
}

/* Python float(str): surrounding whitespace, sign, digits with single
 * underscores, inf/nan. */
static bool parse_py_float(const struct str *s0, double *out)
{
	size_t b = ws_span(s0->s, s0->len), e = rstrip_len(s0->s, s0->len);
	if (b >= e)
		return false;
	char buf[400];
	size_t n = 0;
	for (size_t i = b; i < e; i++) {
		char ch = s0->s[i];
		if (ch == '_') {
			if (i == b || i + 1 >= e || !is_digit(s0->s[i - 1]) || !is_digit(s0->s[i + 1]))
				return false;
			continue;
		}
		if (n >= sizeof buf - 1 || ch == 'x' || ch == 'X' || ch == 'p' || ch == 'P' ||
		    (unsigned char)ch >= 0x80 || ch == ' ')
			return false;
		buf[n++] = ch;
	}
	buf[n] = 0;
	char *end;
	errno = 0;
	double d = strtod(buf, &end);
	if (*end || end == buf)
		return false;
	*out = d;
	return true;
}

/* Python int(str, 10). */
static bool parse_py_int(const struct str *s0, int64_t *out)
{
	size_t b = ws_span(s0->s, s0->len), e = rstrip_len(s0->s, s0->len);
	if (b >= e)
		return false;
	bool neg = false;
	if (s0->s[b] == '+' || s0->s[b] == '-') {
		neg = s0->s[b] == '-';
		b++;
	}
	if (b >= e)
		return false;
	uint64_t v = 0;
	for (size_t i = b; i < e; i++) {
		char ch = s0->s[i];
		if (ch == '_') {
			if (i == b || i + 1 >= e || !is_digit(s0->s[i + 1]))
				return false;
			continue;
		}
		if (!is_digit(ch))
			return false;
		if (v > (UINT64_C(1) << 63) / 10)
			return false;
		v = v * 10 + (uint64_t)(ch - '0');
	}
	if (v > (UINT64_C(1) << 63) - (neg ? 0 : 1))
		return false;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return true;
}

static int64_t py_len(struct rctx *c, const value *v)
{
	switch (v->t) {
	case T_STR: return (int64_t)u8_count(v->u.s->s, v->u.s->len);
	case T_LIST:
	case T_TUPLE: return (int64_t)v->u.l->n;
	case T_DICT: return (int64_t)v->u.d->n;
	case T_UNDEF: return 0;
	case T_LOOP: return (int64_t)v->u.lp->n;
	default: rt_fail(c, "object of type '%s' has no len()", type_name(v));
	}
}

static double round_half_even(double x, int64_t nd)
{
	if (!isfinite(x))
		return x;
	if (nd > 300)
		return x;
	if (nd >= 0) {
		/* glibc prints the exact binary value correctly rounded, ties to
		 * even: the same answer as Python's round() */
		char buf[512];
		snprintf(buf, sizeof buf, "%.*f", (int)nd, x);
		return strtod(buf, NULL);
	}
	if (nd < -308)
		return copysign(0.0, x);
	double p = pow(10.0, (double)-nd);
	double y = x / p, r = nearbyint(y);
	return r * p;
}

static value f_round(struct rctx *c, const value *v, const value *prec, const value *method)
{
	int64_t nd = prec->t == T_ABSENT ? 0 : want_int(c, prec, "round");
	const char *m = "common";
	if (method->t != T_ABSENT) {
		if (method->t != T_STR)
			rt_fail(c, "round: method must be a string");
		m = method->u.s->s;
	}
	if (v->t == T_UNDEF)
		undef_fail(c, v);
	if (!is_num(v))
		rt_fail(c, "type %s doesn't define __round__ method", type_name(v));
	if (!strcmp(m, "common")) {
		if (v->t != T_FLOAT) {
			if (nd >= 0)
				return v_int(as_int(v));
			double r = round_half_even((double)as_int(v), nd);
			return v_int((int64_t)r);
		}
		return v_float(round_half_even(v->u.f, nd));
	}
	if (strcmp(m, "ceil") && strcmp(m, "floor"))
		rt_fail(c, "method must be common, ceil or floor");
	if (nd > 300 || nd < -300)
		rt_fail(c, "round: precision out of range");
	double p = pow(10.0, (double)nd), x = as_float(v) * p;
	x = !strcmp(m, "ceil") ? ceil(x) : floor(x);
	return v_float(x / p);
}

static value f_indent(struct rctx *c, const value *in, const value *width, const value *first,
		      const value *blank)
{
	struct str *ind;
	if (width->t == T_STR) {
		ind = width->u.s;
	} else {
		int64_t w = width->t == T_ABSENT ? 4 : want_int(c, width, "indent");
		if (w < 0)
			w = 0;
		if ((uint64_t)w > c->lim.max_output)
			fail_at(&c->f, TMPL_ERR_LIMIT, c->line, "output limit exceeded");
		struct sbuf sp = {0};
		for (int64_t i = 0; i < w; i++)
			sb_putc(c->m, &sp, ' ');
		ind = sb_str(c->m, &sp);
	}
	struct str *s0 = py_str(c, in);
	struct sbuf tmp = {0};
	sb_put(c->m, &tmp, s0->s, s0->len);
	sb_putc(c->m, &tmp, '\n');
	struct list *lines = py_splitlines(c, sb_str(c->m, &tmp), false);
	struct sbuf b = {0};
	if (first->t != T_ABSENT && truthy(first))
		sb_put(c->m, &b, ind->s, ind->len);
	bool bl = blank->t != T_ABSENT && truthy(blank);
	for (size_t i = 0; i < lines->n; i++) {
		const struct str *ln = lines->v[i].u.s;
		if (i) {
			sb_putc(c->m, &b, '\n');
			if (bl || ln->len)
				sb_put(c->m, &b, ind->s, ind->len);
		}
		sb_put(c->m, &b, ln->s, ln->len);
	}
	return v_str(sb_str(c->m, &b));
}

static value f_truncate(struct rctx *c, const value *in, const value *lengthv,
			const value *killwords, const value *endv, const value *leewayv)
{
	struct str *s = py_str(c, in);
	int64_t length = lengthv->t == T_ABSENT ? 255 : want_int(c, lengthv, "truncate");
	struct str *end = endv->t == T_ABSENT ? str_c(c->m, "...") : want_str(c, endv, "truncate");
	int64_t leeway = leewayv->t == T_ABSENT || leewayv->t == T_NONE ? 5 : want_int(c, leewayv, "truncate");
	int64_t endlen = (int64_t)u8_count(end->s, end->len);
	if (length < endlen)
		rt_fail(c, "expected length >= %lld, got %lld", (long long)endlen, (long long)length);
	if (leeway < 0)
		rt_fail(c, "expected leeway >= 0, got %lld", (long long)leeway);
	size_t n;
	size_t *off = u8_offsets(c->m, s, &n);
	if ((int64_t)n <= length + leeway)
		return v_str(s);
	size_t cut = off[length - endlen];
	struct sbuf b = {0};
	if (killwords->t != T_ABSENT && truthy(killwords)) {
		sb_put(c->m, &b, s->s, cut);
	} else {
		const char *sp = rfind_bytes(s->s, cut, " ", 1);
		sb_put(c->m, &b, s->s, sp ? (size_t)(sp - s->s) : cut);
	}
	sb_put(c->m, &b, end->s, end->len);
	return v_str(sb_str(c->m, &b));
}

static value f_tojson(struct rctx *c, const value *in, const struct callargs *ca)
{
	static const char *const params[] = {"ensure_ascii", "indent", "separators", "sort_keys"};
	value a[4];
	bind_args(c, "tojson", ca, params, 4, a);
	struct jopt o = {0};
	o.ensure_ascii = a[0].t != T_ABSENT && truthy(&a[0]);
	o.sort_keys = a[3].t != T_ABSENT && truthy(&a[3]);
	if (a[1].t != T_ABSENT && a[1].t != T_NONE) {
		o.has_indent = true;
		if (a[1].t == T_STR) {
			o.indent = a[1].u.s;
		} else {
			int64_t w = want_int(c, &a[1], "tojson indent");
			struct sbuf sp = {0};
			for (int64_t i = 0; i < w && i < 1000; i++)
				sb_putc(c->m, &sp, ' ');
			o.indent = sb_str(c->m, &sp);
		}
	}
	if (a[2].t != T_ABSENT && a[2].t != T_NONE) {
		if ((a[2].t != T_LIST && a[2].t != T_TUPLE) || a[2].u.l->n != 2 ||
		    a[2].u.l->v[0].t != T_STR || a[2].u.l->v[1].t != T_STR)
			rt_fail(c, "tojson: separators must be a pair of strings");
		o.item_sep = a[2].u.l->v[0].u.s;
		o.key_sep = a[2].u.l->v[1].u.s;
	} else {
		o.item_sep = str_c(c->m, o.has_indent ? "," : ", ");
		o.key_sep = str_c(c->m, ": ");
	}
	struct sbuf b = {0};
	json_dump(c, &b, in, &o, 0);
	return v_str(sb_str(c->m, &b));
}

/* select / reject / selectattr / rejectattr */
static value f_select(struct rctx *c, const value *in, const struct callargs *ca, bool want,
		      bool by_attr)
{
	struct lbuild lb = {0};
	if (!truthy(in))
		return v_list(lb_done(c->m, &lb), false);
	struct list *items = iterate(c, in);
	size_t off = 0;
	const value *attr = NULL;
	if (by_attr) {
		if (ca->npos < 1)
			rt_fail(c, "Missing parameter for attribute name");
		attr = &ca->pos[0];
		off = 1;
	}
	struct callargs rest = {0};
	const value *tname = NULL;
	if (ca->npos > off) {
		tname = &ca->pos[off];
		rest.pos = ca->pos + off + 1;
		rest.npos = ca->npos - off - 1;
		rest.kwn = ca->kwn;
		rest.kwv = ca->kwv;
		rest.nkw = ca->nkw;
	}
	for (size_t i = 0; i < items->n; i++) {
		step(c);
		value x = attr ? attr_path(c, &items->v[i], attr, NULL) : items->v[i];
		bool r = tname ? test_by_name(c, tname, &x, &rest) : truthy(&x);
		if (r == want)
			lb_push(c->m, &lb, items->v[i]);
	}
	return v_list(lb_done(c->m, &lb), false);
}

static value f_map(struct rctx *c, const value *in, const struct callargs *ca)
{
	struct list *items = iterate(c, in);
	struct lbuild lb = {0};
	if (ca->npos == 0) {
		const value *attr = NULL, *dflt = NULL;
		for (size_t k = 0; k < ca->nkw; k++) {
			if (str_eqc(ca->kwn[k], "attribute"))
				attr = &ca->kwv[k];
			else if (str_eqc(ca->kwn[k], "default"))
				dflt = &ca->kwv[k];
			else
				rt_fail(c, "Unexpected keyword argument '%.60s'", ca->kwn[k]->s);
		}
		if (!attr)
			rt_fail(c, "map requires a filter name or attribute=");
		for (size_t i = 0; i < items->n; i++) {
			step(c);
			lb_push(c->m, &lb, attr_path(c, &items->v[i], attr, dflt));
		}
		return v_list(lb_done(c->m, &lb), false);
	}
	if (ca->pos[0].t != T_STR)
		rt_fail(c, "map: filter name must be a string");
	int fid = name_index(filter_names, F_COUNT_, ca->pos[0].u.s);
	if (fid < 0)
		rt_fail(c, "No filter named '%.60s'", ca->pos[0].u.s->s);
	struct callargs rest = *ca;
	rest.pos++;
	rest.npos--;
	for (size_t i = 0; i < items->n; i++) {
		step(c);
		lb_push(c->m, &lb, apply_filter(c, fid, &items->v[i], &rest));
	}
	return v_list(lb_done(c->m, &lb), false);
}

static value f_sort(struct rctx *c, const value *in, const value *reverse, const value *cs,
		    const value *attr)
{
	struct list *items = iterate(c, in);
	bool case_sensitive = cs->t != T_ABSENT && truthy(cs);
	value *pairs = mem_array(c->m, items->n, sizeof *pairs);
	for (size_t i = 0; i < items->n; i++)
		pairs[i] = make_pair(c, sort_key(c, &items->v[i], attr, case_sensitive), items->v[i]);
	struct keyed_cmp kc = {.reverse = reverse->t != T_ABSENT && truthy(reverse)};
	vsort(c, pairs, items->n, keyed_cmp_fn, &kc);
	struct list *l = list_new(c->m, items->n);
	for (size_t i = 0; i < items->n; i++)
		l->v[i] = pairs[i].u.l->v[1];
	return v_list(l, false);
}

static value f_minmax(struct rctx *c, const value *in, const value *cs, const value *attr, bool want_max)
{
	struct list *items = iterate(c, in);
	if (!items->n)
		return v_undef(NULL);
	bool case_sensitive = cs->t != T_ABSENT && truthy(cs);
	size_t best = 0;
	value bk = sort_key(c, &items->v[0], attr, case_sensitive);
	for (size_t i = 1; i < items->n; i++) {
		value k = sort_key(c, &items->v[i], attr, case_sensitive);
		int r = val_cmp(c, &k, &bk, "<");
		if (want_max ? r > 0 : r < 0) {
			best = i;
			bk = k;
		}
	}
	return items->v[best];
}

static value apply_filter(struct rctx *c, int fid, const value *in, const struct callargs *ca)
{
	value a[6];
	step(c);
	switch (fid) {
	case F_ABS:
		bind_args(c, "abs", ca, NULL, 0, a);
		if (in->t == T_UNDEF)
			undef_fail(c, in);
		if (in->t == T_FLOAT)
			return v_float(fabs(in->u.f));
		if (in->t == T_INT || in->t == T_BOOL) {
			int64_t x = as_int(in);
			if (x == INT64_MIN)
				rt_fail(c, "integer overflow");
			return v_int(x < 0 ? -x : x);
		}
		rt_fail(c, "bad operand type for abs(): '%s'", type_name(in));
	case F_ATTR: {
		static const char *const p[] = {"name"};
		bind_args(c, "attr", ca, p, 1, a);
		struct str *name = want_str(c, &a[0], "attr");
		if (in->t == T_UNDEF)
			undef_fail(c, in);
		value v = py_getattr(c, in, name);
		return v.t == T_ABSENT ? v_undef(name) : v;
	}
	case F_BATCH: {
		static const char *const p[] = {"linecount", "fill_with"};
		bind_args(c, "batch", ca, p, 2, a);
		int64_t n = want_int(c, &a[0], "batch");
		if (n <= 0)
			rt_fail(c, "batch: linecount must be positive");
		struct list *items = iterate(c, in);
		struct lbuild out = {0}, cur_b = {0};
		for (size_t i = 0; i < items->n; i++) {
			lb_push(c->m, &cur_b, items->v[i]);
			if ((int64_t)cur_b.n == n) {
				lb_push(c->m, &out, v_list(lb_done(c->m, &cur_b), false));
				memset(&cur_b, 0, sizeof cur_b);
			}
		}
		if (cur_b.n) {
			if (a[1].t != T_ABSENT && a[1].t != T_NONE)
				while ((int64_t)cur_b.n < n)
					lb_push(c->m, &cur_b, a[1]);
			lb_push(c->m, &out, v_list(lb_done(c->m, &cur_b), false));
		}
		return v_list(lb_done(c->m, &out), false);
	}
	case F_CAPITALIZE:
		bind_args(c, "capitalize", ca, NULL, 0, a);
		return v_str(py_capitalize(c, py_str(c, in)));
	case F_CENTER: {
		static const char *const p[] = {"width"};
		bind_args(c, "center", ca, p, 1, a);
		int64_t w = a[0].t == T_ABSENT ? 80 : want_int(c, &a[0], "center");
		return v_str(py_justify(c, py_str(c, in), w, str_c(c->m, " "), 'c'));
	}
	case F_COUNT:
	case F_LENGTH:
		bind_args(c, "length", ca, NULL, 0, a);
		return v_int(py_len(c, in));
	case F_D:
	case F_DEFAULT: {
		static const char *const p[] = {"default_value", "boolean"};
		bind_args(c, "default", ca, p, 2, a);
		bool boolean = a[1].t != T_ABSENT && truthy(&a[1]);
		if (in->t == T_UNDEF || (boolean && !truthy(in)))
			return a[0].t == T_ABSENT ? v_str(str_c(c->m, "")) : a[0];
		return *in;
	}
	case F_DICTSORT: {
		static const char *const p[] = {"case_sensitive", "by", "reverse"};
		bind_args(c, "dictsort", ca, p, 3, a);
		if (in->t != T_DICT)
			rt_fail(c, "dictsort: expected a mapping");
		bool cs = a[0].t != T_ABSENT && truthy(&a[0]);
		int pos = 0;
		if (a[1].t != T_ABSENT) {
			struct str *by = want_str(c, &a[1], "dictsort");
			if (str_eqc(by, "value"))
				pos = 1;
			else if (!str_eqc(by, "key"))
				rt_fail(c, "You can only sort by either \"key\" or \"value\"");
		}
		const struct dict *d = in->u.d;
		value *pairs = mem_array(c->m, d->n, sizeof *pairs);
		for (size_t i = 0; i < d->n; i++) {
			value item = make_pair(c, d->k[i], d->v[i]);
			value k = pos ? d->v[i] : d->k[i];
			pairs[i] = make_pair(c, cs ? k : ignore_case(c, &k), item);
		}
		struct keyed_cmp kc = {.reverse = a[2].t != T_ABSENT && truthy(&a[2])};
		vsort(c, pairs, d->n, keyed_cmp_fn, &kc);
		struct list *l = list_new(c->m, d->n);
		for (size_t i = 0; i < d->n; i++)
			l->v[i] = pairs[i].u.l->v[1];
		return v_list(l, false);
	}
	case F_E:
	case F_ESCAPE:
	case F_FORCEESCAPE:
		bind_args(c, "escape", ca, NULL, 0, a);
		return v_str(html_escape(c, py_str(c, in)));
	case F_FIRST: {
		bind_args(c, "first", ca, NULL, 0, a);
		struct list *l = iterate(c, in);
		return l->n ? l->v[0] : v_undef(NULL);
	}
	case F_LAST: {
		bind_args(c, "last", ca, NULL, 0, a);
		struct list *l = iterate(c, in);
		return l->n ? l->v[l->n - 1] : v_undef(NULL);
	}
	case F_FLOAT: {
		static const char *const p[] = {"default"};
		bind_args(c, "float", ca, p, 1, a);
		value dflt = a[0].t == T_ABSENT ? v_float(0.0) : a[0];
		if (in->t == T_UNDEF)
			undef_fail(c, in);
		if (is_num(in))
			return v_float(as_float(in));
		double d;
		if (in->t == T_STR && parse_py_float(in->u.s, &d))
			return v_float(d);
		return dflt;
	}
	case F_INT: {
		static const char *const p[] = {"default", "base"};
		bind_args(c, "int", ca, p, 2, a);
		value dflt = a[0].t == T_ABSENT ? v_int(0) : a[0];
		if (a[1].t != T_ABSENT && want_int(c, &a[1], "int") != 10)
			rt_fail(c, "int: only base 10 is supported");
		if (in->t == T_UNDEF)
			undef_fail(c, in);
		if (in->t == T_INT || in->t == T_BOOL)
			return v_int(as_int(in));
		if (in->t == T_FLOAT) {
			if (isnan(in->u.f))
				return dflt;
			if (!(in->u.f > -9.2e18 && in->u.f < 9.2e18))
				rt_fail(c, "cannot convert float infinity to integer");
			return v_int((int64_t)in->u.f);
		}
		if (in->t == T_STR) {
			int64_t iv;
			double d;
			if (parse_py_int(in->u.s, &iv))
				return v_int(iv);
			if (parse_py_float(in->u.s, &d) && isfinite(d) && d > -9.2e18 && d < 9.2e18)
				return v_int((int64_t)d);
		}
		return dflt;
	}
	case F_ITEMS: {
		bind_args(c, "items", ca, NULL, 0, a);
		if (in->t == T_UNDEF)
			return v_list(list_new(c->m, 0), false);
		if (in->t != T_DICT)
			rt_fail(c, "Can only get item pairs from a mapping.");
		struct list *l = list_new(c->m, in->u.d->n);
		for (size_t i = 0; i < in->u.d->n; i++)
			l->v[i] = make_pair(c, in->u.d->k[i], in->u.d->v[i]);
		return v_list(l, false);
	}
	case F_JOIN: {
		static const char *const p[] = {"d", "attribute"};
		bind_args(c, "join", ca, p, 2, a);
		struct str *sep = a[0].t == T_ABSENT ? str_c(c->m, "") : py_str(c, &a[0]);
		struct list *l = iterate(c, in);
		struct sbuf b = {0};
		for (size_t i = 0; i < l->n; i++) {
			if (i)
				sb_put(c->m, &b, sep->s, sep->len);
			value x = a[1].t != T_ABSENT && a[1].t != T_NONE ? attr_path(c, &l->v[i], &a[1], NULL)
									 : l->v[i];
			py_str_into(c, &b, &x);
		}
		return v_str(sb_str(c->m, &b));
	}
	case F_LIST:
		bind_args(c, "list", ca, NULL, 0, a);
		return v_list(iterate(c, in), false);
	case F_LOWER:
		bind_args(c, "lower", ca, NULL, 0, a);
		return v_str(py_lower(c, py_str(c, in)));
	case F_UPPER:
		bind_args(c, "upper", ca, NULL, 0, a);
		return v_str(py_upper(c, py_str(c, in)));
	case F_MAP:
		return f_map(c, in, ca);
	case F_MAX:
	case F_MIN: {
		static const char *const p[] = {"case_sensitive", "attribute"};
		bind_args(c, fid == F_MAX ? "max" : "min", ca, p, 2, a);
		return f_minmax(c, in, &a[0], &a[1], fid == F_MAX);
	}
	case F_REJECT:
		return f_select(c, in, ca, false, false);
	case F_SELECT:
		return f_select(c, in, ca, true, false);
	case F_REJECTATTR:
		return f_select(c, in, ca, false, true);
	case F_SELECTATTR:
		return f_select(c, in, ca, true, true);
	case F_REPLACE: {
		static const char *const p[] = {"old", "new", "count"};
		bind_args(c, "replace", ca, p, 3, a);
		if (a[0].t == T_ABSENT || a[1].t == T_ABSENT)
			rt_fail(c, "replace() needs old and new");
		int64_t cnt = a[2].t == T_ABSENT || a[2].t == T_NONE ? -1 : want_int(c, &a[2], "replace");
		return v_str(py_replace(c, py_str(c, in), py_str(c, &a[0]), py_str(c, &a[1]), cnt));
	}
	case F_REVERSE: {
		bind_args(c, "reverse", ca, NULL, 0, a);
		if (in->t == T_STR) {
			value none = v_none(), m1 = v_int(-1);
			return do_slice(c, in, &none, &none, &m1);
		}
		struct list *l = iterate(c, in), *r = list_new(c->m, l->n);
		for (size_t i = 0; i < l->n; i++)
			r->v[i] = l->v[l->n - 1 - i];
		return v_list(r, false);
	}
	case F_ROUND: {
		static const char *const p[] = {"precision", "method"};
		bind_args(c, "round", ca, p, 2, a);
		return f_round(c, in, &a[0], &a[1]);
	}
	case F_SAFE:
	case F_STRING:
		bind_args(c, "string", ca, NULL, 0, a);
		return v_str(py_str(c, in));
	case F_SORT: {
		static const char *const p[] = {"reverse", "case_sensitive", "attribute"};
		bind_args(c, "sort", ca, p, 3, a);
		return f_sort(c, in, &a[0], &a[1], &a[2]);
	}
	case F_SUM: {
		static const char *const p[] = {"attribute", "start"};
		bind_args(c, "sum", ca, p, 2, a);
		value acc = a[1].t == T_ABSENT ? v_int(0) : a[1];
		struct list *l = iterate(c, in);
		for (size_t i = 0; i < l->n; i++) {
			value x = a[0].t != T_ABSENT && a[0].t != T_NONE ? attr_path(c, &l->v[i], &a[0], NULL)
									 : l->v[i];
			acc = arith(c, OP_ADD, &acc, &x);
		}
		return acc;
	}
	case F_TITLE:
		bind_args(c, "title", ca, NULL, 0, a);
		return v_str(jinja_title(c, py_str(c, in)));
	case F_TOJSON:
		return f_tojson(c, in, ca);
	case F_FROM_JSON: {
		bind_args(c, "from_json", ca, NULL, 0, a);
		if (in->t == T_UNDEF)
			undef_fail(c, in);
		if (in->t != T_STR)
			rt_fail(c, "from_json: the JSON object must be str, not %s", type_name(in));
		struct jparse jp = {.c = c, .what = "from_json", .s = in->u.s->s, .n = in->u.s->len, .runtime = true};
		value v = jp_value(&jp);
		jp_ws(&jp);
		if (jp.i != jp.n)
			jp_fail(&jp, "trailing data");
		return v;
	}
	case F_TRIM: {
		static const char *const p[] = {"chars"};
		bind_args(c, "trim", ca, p, 1, a);
		const struct str *chars = a[0].t == T_ABSENT || a[0].t == T_NONE ? NULL
							: want_str(c, &a[0], "trim");
		return v_str(py_strip(c, py_str(c, in), chars, true, true));
	}
	case F_TRUNCATE: {
		static const char *const p[] = {"length", "killwords", "end", "leeway"};
		bind_args(c, "truncate", ca, p, 4, a);
		return f_truncate(c, in, &a[0], &a[1], &a[2], &a[3]);
	}
	case F_UNIQUE: {
		static const char *const p[] = {"case_sensitive", "attribute"};
		bind_args(c, "unique", ca, p, 2, a);
		bool cs = a[0].t != T_ABSENT && truthy(&a[0]);
		struct list *l = iterate(c, in);
		struct lbuild keys = {0}, out = {0};
		for (size_t i = 0; i < l->n; i++) {
			value k = sort_key(c, &l->v[i], &a[1], cs);
			bool seen = false;
			for (size_t j = 0; j < keys.n && !seen; j++) {
				step(c);
				seen = val_eq(c, &keys.v[j], &k);
			}
			if (!seen) {
				lb_push(c->m, &keys, k);
				lb_push(c->m, &out, l->v[i]);
			}
		}
		return v_list(lb_done(c->m, &out), false);
	}
	case F_WORDCOUNT: {
		bind_args(c, "wordcount", ca, NULL, 0, a);
		struct str *s = py_str(c, in);
		int64_t words = 0;
		bool inword = false;
		size_t i = 0, adv;
		while (i < s->len) {
			uint32_t cp = u8_dec(s->s + i, s->len - i, &adv);
			bool w = cp == '_' || py_isalpha_cp(cp) || py_isnumeric_cp(cp);
			if (w && !inword)
				words++;
			inword = w;
			i += adv;
		}
		return v_int(words);
	}
	case F_FORMAT: {
		struct str *s = py_str(c, in);
		if (ca->npos && ca->nkw)
			rt_fail(c, "can't handle positional and keyword arguments at the same time");
		value args;
		if (ca->nkw) {
			struct dict *d = dict_new(c->m, ca->nkw);
			for (size_t k = 0; k < ca->nkw; k++)
				dict_set(c->m, d, v_str(ca->kwn[k]), ca->kwv[k]);
			args = (value){.t = T_DICT, .u.d = d};
		} else {
			struct list *l = list_new(c->m, ca->npos);
			if (ca->npos)
				memcpy(l->v, ca->pos, ca->npos * sizeof(value));
			args = v_list(l, true);
		}
		return v_str(py_percent(c, s, &args));
	}
	case F_INDENT: {
		static const char *const p[] = {"width", "first", "blank"};
		bind_args(c, "indent", ca, p, 3, a);
		return f_indent(c, in, &a[0], &a[1], &a[2]);
	}
	default:
		rt_fail(c, "filter '%s' is not supported", filter_names[fid]);
	}
}

/* ======================================================================
 * Calls: global functions, methods, macros
 * ====================================================================== */

static void exec_body(struct rctx *c, struct frame *fr, const struct body *b);

/* dict(*args, **kwargs) as used by namespace() and dict(). */
static struct dict *dict_from_args(struct rctx *c, const struct callargs *ca, const char *fname)
{
	struct dict *d = dict_new(c->m, 0);
	if (ca->npos > 1)
		rt_fail(c, "%s expected at most 1 argument, got %zu", fname, ca->npos);
	if (ca->npos == 1) {
		const value *src = &ca->pos[0];
		if (src->t == T_DICT || src->t == T_NS) {
			for (size_t i = 0; i < src->u.d->n; i++)
				dict_set(c->m, d, src->u.d->k[i], src->u.d->v[i]);
		} else {
			struct list *l = iterate(c, src);
			for (size_t i = 0; i < l->n; i++) {
				struct list *pair = iterate(c, &l->v[i]);
				if (pair->n != 2)
					rt_fail(c, "dictionary update sequence element #%zu has length %zu; 2 is required",
						i, pair->n);
				dict_set(c->m, d, pair->v[0], pair->v[1]);
			}
		}
	}
	for (size_t k = 0; k < ca->nkw; k++)
		dict_set(c->m, d, v_str(ca->kwn[k]), ca->kwv[k]);
	return d;
}

static value call_global(struct rctx *c, int fn, const struct callargs *ca)
{
	value a[3];
	switch (fn) {
	case G_RANGE: {
		if (ca->nkw)
			rt_fail(c, "range() takes no keyword arguments");
		if (ca->npos < 1 || ca->npos > 3)
			rt_fail(c, "range expected 1 to 3 arguments, got %zu", ca->npos);
		int64_t start = 0, stop, stp = 1;
		if (ca->npos == 1) {
			stop = want_int(c, &ca->pos[0], "range");
		} else {
			start = want_int(c, &ca->pos[0], "range");
			stop = want_int(c, &ca->pos[1], "range");
			if (ca->npos == 3)
				stp = want_int(c, &ca->pos[2], "range");
		}
		if (stp == 0)
			rt_fail(c, "range() arg 3 must not be zero");
		/* exact length, as Python computes it, in 128-bit arithmetic */
		__int128 span = stp > 0 ? (__int128)stop - start : (__int128)start - stop;
		__int128 st128 = stp > 0 ? stp : -(__int128)stp;
		__int128 cnt = span > 0 ? (span - 1) / st128 + 1 : 0;
		if (cnt > SANDBOX_MAX_RANGE)
			rt_fail(c, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).",
				SANDBOX_MAX_RANGE);
		struct list *l = list_new(c->m, (size_t)cnt);
		for (size_t i = 0; i < (size_t)cnt; i++)
			l->v[i] = v_int((int64_t)(start + (__int128)i * stp));
		return v_list(l, false);
	}
	case G_NAMESPACE: {
		value v = {.t = T_NS};
		v.u.d = dict_from_args(c, ca, "namespace");
		return v;
	}
	case G_DICT: {
		value v = {.t = T_DICT};
		v.u.d = dict_from_args(c, ca, "dict");
		return v;
	}
	case G_RAISE: {
		static const char *const p[] = {"message"};
		bind_args(c, "raise_exception", ca, p, 1, a);
		struct str *msg = a[0].t == T_ABSENT ? str_c(c->m, "") : py_str(c, &a[0]);
		fail_at(&c->f, TMPL_ERR_RAISED, 0, "%.300s", msg->s);
	}
	case G_STRFTIME: {
		static const char *const p[] = {"format"};
		bind_args(c, "strftime_now", ca, p, 1, a);
		return v_str(py_strftime(c, want_str(c, &a[0], "strftime_now")));
	}
	default:
		rt_fail(c, "%s() is not supported", gfunc_names[fn]);
	}
}

static value str_method(struct rctx *c, const struct method *mt, const struct callargs *ca)
{
	const struct str *s = mt->self.u.s;
	value a[4];
	switch (mt->id) {
	case M_STRIP:
	case M_LSTRIP:
	case M_RSTRIP: {
		static const char *const p[] = {"chars"};
		bind_args(c, mt->name, ca, p, 1, a);
		const struct str *chars = a[0].t == T_ABSENT || a[0].t == T_NONE ? NULL
							: want_str(c, &a[0], mt->name);
		return v_str(py_strip(c, s, chars, mt->id != M_RSTRIP, mt->id != M_LSTRIP));
	}
	case M_SPLIT:
	case M_RSPLIT: {
		static const char *const p[] = {"sep", "maxsplit"};
		bind_args(c, mt->name, ca, p, 2, a);
		const struct str *sep = a[0].t == T_ABSENT || a[0].t == T_NONE ? NULL
							: want_str(c, &a[0], mt->name);
		int64_t maxs = a[1].t == T_ABSENT ? -1 : want_int(c, &a[1], mt->name);
		return v_list(py_split(c, s, sep, maxs, mt->id == M_RSPLIT), false);
	}
	case M_STARTSWITH:
	case M_ENDSWITH: {
		static const char *const p[] = {"prefix", "start", "end"};
		bind_args(c, mt->name, ca, p, 3, a);
		if (a[0].t == T_ABSENT)
			rt_fail(c, "%s() takes at least 1 argument", mt->name);
		size_t lo = 0, hi = 0, cp_lo;
		bool in_range = str_range(c, s, &a[1], &a[2], &lo, &hi, &cp_lo);
		const value *cands = &a[0];
		size_t nc = 1;
		if (a[0].t == T_TUPLE) {
			cands = a[0].u.l->v;
			nc = a[0].u.l->n;
		}
		for (size_t i = 0; i < nc; i++) {
			if (cands[i].t != T_STR)
				rt_fail(c, "%s first arg must be str or a tuple of str, not %s", mt->name,
					type_name(&cands[i]));
			if (!in_range)
				continue;
			const struct str *x = cands[i].u.s;
			if (x->len > hi - lo)
				continue;
			if (mt->id == M_STARTSWITH ? !memcmp(s->s + lo, x->s, x->len)
						   : !memcmp(s->s + hi - x->len, x->s, x->len))
				return v_bool(true);
		}
		return v_bool(false);
	}
	case M_UPPER:
		bind_args(c, mt->name, ca, NULL, 0, a);
		return v_str(py_upper(c, s));
	case M_LOWER:
	case M_CASEFOLD:
		bind_args(c, mt->name, ca, NULL, 0, a);
		return v_str(py_lower(c, s));
	case M_TITLE:
		bind_args(c, mt->name, ca, NULL, 0, a);
		return v_str(py_title(c, s));
	case M_CAPITALIZE:
		bind_args(c, mt->name, ca, NULL, 0, a);
		return v_str(py_capitalize(c, s));
	case M_SWAPCASE:
		bind_args(c, mt->name, ca, NULL, 0, a);
		return v_str(py_swapcase(c, s));
	case M_REPLACE: {
		static const char *const p[] = {"old", "new", "count"};
		bind_args(c, mt->name, ca, p, 3, a);
		if (a[0].t == T_ABSENT || a[1].t == T_ABSENT)
			rt_fail(c, "replace() needs old and new");
		int64_t cnt = a[2].t == T_ABSENT ? -1 : want_int(c, &a[2], "replace");
		return v_str(py_replace(c, s, want_str(c, &a[0], "replace"), want_str(c, &a[1], "replace"),
					cnt));
	}
	case M_FIND:
	case M_RFIND:
	case M_INDEX:
	case M_RINDEX:
	case M_COUNT: {
		static const char *const p[] = {"sub", "start", "end"};
		bind_args(c, mt->name, ca, p, 3, a);
		const struct str *sub = want_str(c, &a[0], mt->name);
		size_t lo, hi, b;
		if (!str_range(c, s, &a[1], &a[2], &lo, &hi, &b)) {
			if (mt->id == M_COUNT)
				return v_int(0);
			if (mt->id == M_INDEX || mt->id == M_RINDEX)
				rt_fail(c, "substring not found");
			return v_int(-1);
		}
		const char *hs = s->s + lo;
		size_t hn = hi - lo;
		if (mt->id == M_COUNT) {
			if (!sub->len)
				return v_int((int64_t)u8_count(hs, hn) + 1);
			int64_t cnt = 0;
			size_t pos = 0;
			const char *h;
			while ((h = find_bytes(hs + pos, hn - pos, sub->s, sub->len)) != NULL) {
				cnt++;
				pos = (size_t)(h - hs) + sub->len;
			}
			return v_int(cnt);
		}
		const char *h = (mt->id == M_FIND || mt->id == M_INDEX) ? find_bytes(hs, hn, sub->s, sub->len)
									 : rfind_bytes(hs, hn, sub->s, sub->len);
		if (!h) {
			if (mt->id == M_INDEX || mt->id == M_RINDEX)
				rt_fail(c, "substring not found");
			return v_int(-1);
		}
		return v_int((int64_t)(b + u8_count(hs, (size_t)(h - hs))));
	}
	case M_JOIN: {
		static const char *const p[] = {"iterable"};
		bind_args(c, mt->name, ca, p, 1, a);
		if (a[0].t == T_ABSENT)
			rt_fail(c, "join() takes exactly one argument");
		return v_str(py_join(c, s, iterate(c, &a[0])));
	}
	case M_FORMAT:
		return v_str(py_format(c, s, ca));
	case M_ISDIGIT:
	case M_ISALPHA:
	case M_ISALNUM:
	case M_ISSPACE:
	case M_ISDECIMAL:
	case M_ISNUMERIC: {
		bind_args(c, mt->name, ca, NULL, 0, a);
		enum strpred pr = mt->id == M_ISDIGIT ? P_DIGIT : mt->id == M_ISALPHA ? P_ALPHA
				  : mt->id == M_ISALNUM ? P_ALNUM : mt->id == M_ISSPACE ? P_SPACE
				  : mt->id == M_ISDECIMAL ? P_DECIMAL : P_NUMERIC;
		return v_bool(py_str_all(s, pr));
	}
	case M_ISUPPER:
	case M_ISLOWER:
		bind_args(c, mt->name, ca, NULL, 0, a);
		return v_bool(py_is_case(s, mt->id == M_ISLOWER));
	case M_SPLITLINES: {
		static const char *const p[] = {"keepends"};
		bind_args(c, mt->name, ca, p, 1, a);
		return v_list(py_splitlines(c, s, a[0].t != T_ABSENT && truthy(&a[0])), false);
	}
	case M_ZFILL: {
		static const char *const p[] = {"width"};
		bind_args(c, mt->name, ca, p, 1, a);
		int64_t w = want_int(c, &a[0], "zfill");
		size_t n = u8_count(s->s, s->len);
		if (w <= (int64_t)n)
			return mt->self;
		if ((uint64_t)w > c->lim.max_output)
			fail_at(&c->f, TMPL_ERR_LIMIT, c->line, "output limit exceeded");
		struct sbuf b = {0};
		size_t skip = s->len && (s->s[0] == '+' || s->s[0] == '-');
		sb_put(c->m, &b, s->s, skip);
		for (int64_t i = 0; i < w - (int64_t)n; i++)
			sb_putc(c->m, &b, '0');
		sb_put(c->m, &b, s->s + skip, s->len - skip);
		return v_str(sb_str(c->m, &b));
	}
	case M_CENTER:
	case M_LJUST:
	case M_RJUST: {
		static const char *const p[] = {"width", "fillchar"};
		bind_args(c, mt->name, ca, p, 2, a);
		int64_t w = want_int(c, &a[0], mt->name);
		const struct str *fill = a[1].t == T_ABSENT ? str_c(c->m, " ") : want_str(c, &a[1], mt->name);
		if (u8_count(fill->s, fill->len) != 1)
			rt_fail(c, "The fill character must be exactly one character long");
		char kind = mt->id == M_CENTER ? 'c' : mt->id == M_LJUST ? 'l' : 'r';
		return v_str(py_justify(c, s, w, fill, kind));
	}
	case M_PARTITION:
	case M_RPARTITION: {
		static const char *const p[] = {"sep"};
		bind_args(c, mt->name, ca, p, 1, a);
		const struct str *sep = want_str(c, &a[0], mt->name);
		if (!sep->len)
			rt_fail(c, "empty separator");
		const char *h = mt->id == M_PARTITION ? find_bytes(s->s, s->len, sep->s, sep->len)
						      : rfind_bytes(s->s, s->len, sep->s, sep->len);
		struct list *l = list_new(c->m, 3);
		struct str *empty = str_c(c->m, "");
		if (!h) {
			l->v[0] = v_str(mt->id == M_PARTITION ? (struct str *)s : empty);
			l->v[1] = v_str(empty);
			l->v[2] = v_str(mt->id == M_PARTITION ? empty : (struct str *)s);
		} else {
			size_t at = (size_t)(h - s->s);
			l->v[0] = v_str(str_new(c->m, s->s, at));
			l->v[1] = v_str((struct str *)sep);
			l->v[2] = v_str(str_new(c->m, s->s + at + sep->len, s->len - at - sep->len));
		}
		return v_list(l, true);
	}
	case M_REMOVEPREFIX:
	case M_REMOVESUFFIX: {
		static const char *const p[] = {"affix"};
		bind_args(c, mt->name, ca, p, 1, a);
		const struct str *x = want_str(c, &a[0], mt->name);
		if (x->len && x->len <= s->len) {
			if (mt->id == M_REMOVEPREFIX && !memcmp(s->s, x->s, x->len))
				return v_str(str_new(c->m, s->s + x->len, s->len - x->len));
			if (mt->id == M_REMOVESUFFIX && !memcmp(s->s + s->len - x->len, x->s, x->len))
				return v_str(str_new(c->m, s->s, s->len - x->len));
		}
		return mt->self;
	}
	default:
		rt_fail(c, "str.%s() is not supported", mt->name);
	}
}

static value call_method(struct rctx *c, const struct method *mt, const struct callargs *ca)
{
	value a[2];
	const value *self = &mt->self;
	if (mt->id == M_UNSUPPORTED)
		rt_fail(c, "%s.%s() is not supported", type_name(self), mt->name);
	if (self->t == T_STR)
		return str_method(c, mt, ca);
	if (self->t == T_DICT) {
		const struct dict *d = self->u.d;
		switch (mt->id) {
		case M_ITEMS:
		case M_KEYS:
		case M_VALUES: {
			bind_args(c, mt->name, ca, NULL, 0, a);
			struct list *l = list_new(c->m, d->n);
			for (size_t i = 0; i < d->n; i++)
				l->v[i] = mt->id == M_ITEMS ? make_pair(c, d->k[i], d->v[i])
					  : mt->id == M_KEYS ? d->k[i] : d->v[i];
			return v_list(l, false);
		}
		case M_GET: {
			static const char *const p[] = {"key", "default"};
			bind_args(c, "get", ca, p, 2, a);
			if (a[0].t == T_ABSENT)
				rt_fail(c, "get expected at least 1 argument, got 0");
			value *x = dict_get(d, &a[0]);
			if (x)
				return *x;
			return a[1].t == T_ABSENT ? v_none() : a[1];
		}
		case M_COPY:
			bind_args(c, mt->name, ca, NULL, 0, a);
			return *self;
		default:
			break;
		}
	}
	if (self->t == T_LIST || self->t == T_TUPLE) {
		const struct list *l = self->u.l;
		if (mt->id == M_COPY) {
			bind_args(c, mt->name, ca, NULL, 0, a);
			return *self;
		}
		static const char *const p[] = {"value"};
		bind_args(c, mt->name, ca, p, 1, a);
		if (a[0].t == T_ABSENT)
			rt_fail(c, "%s() takes exactly one argument", mt->name);
		int64_t cnt = 0;
		for (size_t i = 0; i < l->n; i++)
			if (val_eq(c, &l->v[i], &a[0])) {
				if (mt->id == M_INDEX)
					return v_int((int64_t)i);
				cnt++;
			}
		if (mt->id == M_INDEX)
			rt_fail(c, "value is not in list");
		return v_int(cnt);
	}
	if (self->t == T_LOOP) {
		struct loopctx *lp = self->u.lp;
		if (mt->id == M_CYCLE) {
			if (ca->nkw || !ca->npos)
				rt_fail(c, "no items for cycling given");
			return ca->pos[lp->i % ca->npos];
		}
		if (mt->id == M_CHANGED) {
			struct list *l = list_new(c->m, ca->npos);
			if (ca->npos)
				memcpy(l->v, ca->pos, ca->npos * sizeof(value));
			value now = v_list(l, true);
			if (!lp->has_changed || !val_eq(c, &now, &lp->last_changed)) {
				lp->has_changed = true;
				lp->last_changed = now;
				return v_bool(true);
			}
			return v_bool(false);
		}
	}
	rt_fail(c, "method %s is not supported", mt->name);
}

static void out_str(struct rctx *c, const char *p, size_t n)
{
	sb_put(c->m, c->out, p, n);
}

static value call_macro(struct rctx *c, const struct macro *mv, const struct callargs *ca)
{
	const struct stmt *def = mv->def;
	struct frame *f = frame_new(c, mv->closure);
	uint32_t np = def->nparams;
	bool *set = mem_array(c->m, np, sizeof *set);
	memset(set, 0, np * sizeof *set);
	struct lbuild extra = {0};
	for (size_t i = 0; i < ca->npos; i++) {
		if (i < np) {
			dict_set(c->m, f->vars, v_str(def->params[i]), ca->pos[i]);
			set[i] = true;
		} else {
			lb_push(c->m, &extra, ca->pos[i]);
		}
	}
	struct dict *kw = dict_new(c->m, 0);
	for (size_t k = 0; k < ca->nkw; k++) {
		uint32_t i;
		for (i = 0; i < np; i++)
			if (str_eq(ca->kwn[k], def->params[i]))
				break;
		if (i < np) {
			if (set[i])
				rt_fail(c, "macro '%.60s' got multiple values for argument '%.60s'",
					def->name->s, def->params[i]->s);
			dict_set(c->m, f->vars, v_str(def->params[i]), ca->kwv[k]);
			set[i] = true;
		} else {
			dict_set(c->m, kw, v_str(ca->kwn[k]), ca->kwv[k]);
		}
	}
	for (uint32_t i = 0; i < np; i++) {
		if (set[i])
			continue;
		value dv = def->defaults[i] ? eval(c, f, def->defaults[i]) : v_undef(def->params[i]);
		dict_set(c->m, f->vars, v_str(def->params[i]), dv);
	}
	dict_setc(c->m, f->vars, "varargs", v_list(lb_done(c->m, &extra), true));
	value kwv = {.t = T_DICT};
	kwv.u.d = kw;
	dict_setc(c->m, f->vars, "kwargs", kwv);
	struct sbuf capture = {.limit = c->lim.max_output};
	struct sbuf *saved = c->out;
	c->out = &capture;
	enter(c);
	exec_body(c, f, &def->body);
	leave(c);
	c->out = saved;
	return v_str(sb_str(c->m, &capture));
}

static value call_value(struct rctx *c, const value *callee, const struct callargs *ca)
{
	switch (callee->t) {
	case T_FUNC:
		return call_global(c, (int)callee->u.i, ca);
	case T_METHOD:
		return call_method(c, callee->u.mt, ca);
	case T_MACRO:
		return call_macro(c, callee->u.m, ca);
	case T_UNDEF:
		undef_fail(c, callee);
	default:
		rt_fail(c, "'%s' object is not callable", type_name(callee));
	}
}

/* ======================================================================
 * Expression evaluation
 * ====================================================================== */

static value eval_filter(struct rctx *c, struct frame *fr, const struct expr *e, const value *input)
{
	enter(c);
	value in = e->a ? (e->a->k == E_FILTER && input ? eval_filter(c, fr, e->a, input)
						: eval(c, fr, e->a))
			: *input;
	struct callargs ca;
	eval_args(c, fr, e, &ca);
	int saved = c->line;
	c->line = e->line;
	if (e->fid == F_COUNT_)
		rt_fail(c, "No filter named '%.60s' found.", e->name->s);
	value r = apply_filter(c, e->fid, &in, &ca);
	c->line = saved;
	leave(c);
	return r;
}

static value eval(struct rctx *c, struct frame *fr, const struct expr *e)
{
	value r, a, b;
	enter(c);
	c->line = e->line;
	switch (e->k) {
	case E_CONST:
		r = e->cv;
		break;
	case E_NAME:
		r = lookup(c, fr, e->name);
		break;
	case E_LIST:
	case E_TUPLE: {
		struct list *l = list_new(c->m, e->nargs);
		for (uint32_t i = 0; i < e->nargs; i++)
			l->v[i] = eval(c, fr, e->args[i]);
		r = v_list(l, e->k == E_TUPLE);
		break;
	}
	case E_DICT: {
		struct dict *d = dict_new(c->m, e->nargs);
		for (uint32_t i = 0; i < e->nargs; i++) {
			value k = eval(c, fr, e->args[i]);
			if (k.t == T_LIST || k.t == T_DICT || k.t == T_NS)
				rt_fail(c, "unhashable type: '%s'", type_name(&k));
			dict_set(c->m, d, k, eval(c, fr, e->vals[i]));
		}
		r = (value){.t = T_DICT};
		r.u.d = d;
		break;
	}
	case E_ATTR:
		a = eval(c, fr, e->a);
		c->line = e->line;
		r = get_attr(c, &a, e->name);
		break;
	case E_ITEM:
		a = eval(c, fr, e->a);
		b = eval(c, fr, e->b);
		c->line = e->line;
		r = get_item(c, &a, &b);
		break;
	case E_SLICE: {
		a = eval(c, fr, e->a);
		value bounds[3];
		for (int i = 0; i < 3; i++)
			bounds[i] = e->args[i] ? eval(c, fr, e->args[i]) : v_none();
		c->line = e->line;
		r = do_slice(c, &a, &bounds[0], &bounds[1], &bounds[2]);
		break;
	}
	case E_CALL: {
		a = eval(c, fr, e->a);
		struct callargs ca;
		eval_args(c, fr, e, &ca);
		c->line = e->line;
		r = call_value(c, &a, &ca);
		break;
	}
	case E_FILTER:
		r = eval_filter(c, fr, e, NULL);
		break;
	case E_TEST: {
		a = eval(c, fr, e->a);
		struct callargs ca;
		eval_args(c, fr, e, &ca);
		c->line = e->line;
		if (e->fid == X_COUNT_)
			rt_fail(c, "No test named '%.60s' found.", e->name->s);
		r = v_bool(apply_test(c, e->fid, &a, &ca));
		break;
	}
	case E_NEG:
	case E_POS:
		a = eval(c, fr, e->a);
		c->line = e->line;
		if (a.t == T_UNDEF)
			undef_fail(c, &a);
		if (a.t == T_FLOAT)
			r = v_float(e->k == E_NEG ? -a.u.f : a.u.f);
		else if (a.t == T_INT || a.t == T_BOOL) {
			int64_t x = as_int(&a);
			if (e->k == E_NEG && x == INT64_MIN)
				rt_fail(c, "integer overflow");
			r = v_int(e->k == E_NEG ? -x : x);
		} else {
			rt_fail(c, "bad operand type for unary %c: '%s'", e->k == E_NEG ? '-' : '+',
				type_name(&a));
		}
		break;
	case E_NOT:
		a = eval(c, fr, e->a);
		r = v_bool(!truthy(&a));
		break;
	case E_BIN:
		a = eval(c, fr, e->a);
		b = eval(c, fr, e->b);
		c->line = e->line;
		r = arith(c, e->op, &a, &b);
		break;
	case E_AND:
		a = eval(c, fr, e->a);
		r = truthy(&a) ? eval(c, fr, e->b) : a;
		break;
	case E_OR:
		a = eval(c, fr, e->a);
		r = truthy(&a) ? a : eval(c, fr, e->b);
		break;
	case E_CONCAT: {
		struct sbuf sb = {.limit = c->lim.max_output};
		for (uint32_t i = 0; i < e->nargs; i++) {
			value x = eval(c, fr, e->args[i]);
			py_str_into(c, &sb, &x);
		}
		r = v_str(sb_str(c->m, &sb));
		break;
	}
	case E_CMP: {
		a = eval(c, fr, e->a);
		bool ok = true;
		for (uint32_t i = 0; i < e->nargs && ok; i++) {
			b = eval(c, fr, e->args[i]);
			c->line = e->line;
			switch (e->ops[i]) {
			case OP_EQ: ok = val_eq(c, &a, &b); break;
			case OP_NE: ok = !val_eq(c, &a, &b); break;
			case OP_LT: ok = val_cmp(c, &a, &b, "<") < 0; break;
			case OP_LE: ok = val_cmp(c, &a, &b, "<=") <= 0; break;
			case OP_GT: ok = val_cmp(c, &a, &b, ">") > 0; break;
			case OP_GE: ok = val_cmp(c, &a, &b, ">=") >= 0; break;
			case OP_IN: ok = contains(c, &b, &a); break;
			default: ok = !contains(c, &b, &a); break;
			}
			a = b;
		}
		r = v_bool(ok);
		break;
	}
	case E_COND:
		a = eval(c, fr, e->b);
		if (truthy(&a))
			r = eval(c, fr, e->a);
		else if (e->c)
			r = eval(c, fr, e->c);
		else
			r = v_undef(NULL);
		break;
	default:
		rt_fail(c, "internal error: bad expression");
	}
	leave(c);
	return r;
}

/* ======================================================================
 * Statements
 * ====================================================================== */

static void assign(struct rctx *c, struct frame *fr, const struct target *t, const value *v)
{
	switch (t->k) {
	case TG_NAME:
		dict_set(c->m, fr->vars, v_str(t->name), *v);
		return;
	case TG_TUPLE: {
		struct list *l = iterate(c, v);
		if (l->n > t->n)
			rt_fail(c, "too many values to unpack (expected %u)", (unsigned)t->n);
		if (l->n < t->n)
			rt_fail(c, "not enough values to unpack (expected %u, got %zu)", (unsigned)t->n, l->n);
		for (uint32_t i = 0; i < t->n; i++)
			assign(c, fr, t->items[i], &l->v[i]);
		return;
	}
	case TG_NSATTR: {
		value ns = lookup(c, fr, t->name);
		if (ns.t != T_NS)
			rt_fail(c, "cannot assign attribute on non-namespace object");
		dict_set(c->m, ns.u.d, v_str(t->attr), *v);
		return;
	}
	}
}

static struct str *capture_body(struct rctx *c, struct frame *fr, const struct body *b)
{
	struct sbuf capture = {.limit = c->lim.max_output};
	struct sbuf *saved = c->out;
	c->out = &capture;
	exec_body(c, fr, b);
	c->out = saved;
	return sb_str(c->m, &capture);
}

static void exec_for(struct rctx *c, struct frame *fr, const struct stmt *s)
{
	value it = eval(c, fr, s->e);
	c->line = s->line;
	struct list *items = iterate(c, &it);
	if (s->cond) {
		struct lbuild kept = {0};
		struct frame *tf = NULL;
		for (size_t i = 0; i < items->n; i++) {
			step(c);
			if (!tf || tf->captured)
				tf = frame_new(c, fr);
			else
				frame_reset(tf);
			assign(c, tf, s->tgt, &items->v[i]);
			value cv = eval(c, tf, s->cond);
			if (truthy(&cv))
				lb_push(c->m, &kept, items->v[i]);
		}
		items = lb_done(c->m, &kept);
	}
	if (!items->n) {
		if (s->else_body.n)
			exec_body(c, frame_new(c, fr), &s->else_body);
		return;
	}
	struct loopctx *lp = mem_alloc(c->m, sizeof *lp);
	memset(lp, 0, sizeof *lp);
	lp->items = items;
	lp->n = items->n;
	value lv = {.t = T_LOOP};
	lv.u.lp = lp;
	struct frame *itf = NULL;
	for (size_t i = 0; i < items->n; i++) {
		step(c);
		if (!itf || itf->captured)
			itf = frame_new(c, fr);
		else
			frame_reset(itf);
		lp->i = i;
		dict_setc(c->m, itf->vars, "loop", lv);
		assign(c, itf, s->tgt, &items->v[i]);
		exec_body(c, itf, &s->body);
		if (c->ctl == CTL_BREAK) {
			c->ctl = CTL_NONE;
			break;
		}
		c->ctl = CTL_NONE;
	}
}

static void exec_stmt(struct rctx *c, struct frame *fr, const struct stmt *s)
{
	enter(c);
	step(c);
	c->line = s->line;
	switch (s->k) {
	case S_DATA:
		out_str(c, s->text->s, s->text->len);
		break;
	case S_OUT: {
		value v = eval(c, fr, s->e);
		py_str_into(c, c->out, &v);
		break;
	}
	case S_IF: {
		value v = eval(c, fr, s->e);
		exec_body(c, fr, truthy(&v) ? &s->body : &s->else_body);
		break;
	}
	case S_FOR:
		exec_for(c, fr, s);
		break;
	case S_SET: {
		value v = eval(c, fr, s->e);
		c->line = s->line;
		assign(c, fr, s->tgt, &v);
		break;
	}
	case S_SETBLOCK: {
		value v = v_str(capture_body(c, fr, &s->body));
		if (s->filter)
			v = eval_filter(c, fr, s->filter, &v);
		assign(c, fr, s->tgt, &v);
		break;
	}
	case S_FILTER: {
		value v = v_str(capture_body(c, fr, &s->body));
		v = eval_filter(c, fr, s->filter, &v);
		py_str_into(c, c->out, &v);
		break;
	}
	case S_MACRO: {
		struct macro *m = mem_alloc(c->m, sizeof *m);
		m->def = s;
		m->closure = fr;
		fr->captured = true;
		value v = {.t = T_MACRO};
		v.u.m = m;
		dict_set(c->m, fr->vars, v_str(s->name), v);
		break;
	}
	case S_WITH: {
		struct frame *f = frame_new(c, fr);
		value *vals = mem_array(c->m, s->nw, sizeof *vals);
		for (uint32_t i = 0; i < s->nw; i++)
			vals[i] = eval(c, fr, s->wv[i]);
		for (uint32_t i = 0; i < s->nw; i++)
			assign(c, f, s->wt[i], &vals[i]);
		exec_body(c, f, &s->body);
		break;
	}
	case S_BREAK:
		c->ctl = CTL_BREAK;
		break;
	case S_CONTINUE:
		c->ctl = CTL_CONTINUE;
		break;
	case S_BLOCK:
		exec_body(c, fr, &s->body);
		break;
	}
	leave(c);
}

static void exec_body(struct rctx *c, struct frame *fr, const struct body *b)
{
	for (uint32_t i = 0; i < b->n; i++) {
		exec_stmt(c, fr, b->v[i]);
		if (c->ctl)
			return;
	}
}

/* ======================================================================
 * Public API: parse and render
 * ====================================================================== */

#define TMPL_MAX_SOURCE ((size_t)4 << 20)

static void set_err(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
}

/* Renders and parses in the C locale (strtod, printf of floats). */
struct c_locale {
	locale_t c, old;
};

static void c_locale_enter(struct c_locale *l)
{
	l->c = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	l->old = l->c ? uselocale(l->c) : (locale_t)0;
}

static void c_locale_leave(struct c_locale *l)
{
	if (l->c) {
		uselocale(l->old);
		freelocale(l->c);
	}
}

struct parse_job {
	struct fail f;
	struct parser p;
};

int tmpl_parse(const char *src, size_t len, tmpl **out, char *err, size_t errlen)
{
	if (out)
		*out = NULL;
	if (!out || (!src && len)) {
		set_err(err, errlen, "tmpl_parse: bad arguments");
		return TMPL_ERR_ARG;
	}
	if (len > TMPL_MAX_SOURCE) {
		set_err(err, errlen, "template too large");
		return TMPL_ERR_LIMIT;
	}
	struct tmpl *t = eng_calloc(1, sizeof *t);
	struct parse_job *job = eng_calloc(1, sizeof *job);
	if (!t || !job) {
		free(t);
		free(job);
		set_err(err, errlen, "out of memory");
		return TMPL_ERR_NOMEM;
	}
	t->ar.limit = TMPL_DEFAULT_MAX_MEMORY;
	struct c_locale loc;
	c_locale_enter(&loc);
	int code;
	if (setjmp(job->f.jb) == 0) {
		struct parser *p = &job->p;
		p->f = &job->f;
		p->m = (struct mem){&t->ar, &job->f};
		lex(p, src ? src : "", len);
		t->body = parse_body(p, NULL, 0);
		if (cur(p)->type != TK_EOF)
			unexpected(p, NULL);
		if (p->n_unk)
			syn_fail(p, p->unk[0].line, "No %s named '%.60s'.", p->unk[0].test ? "test" : "filter",
				 p->unk[0].name->s);
		code = TMPL_OK;
	} else {
		code = job->f.code;
		set_err(err, errlen, job->f.msg);
		arena_free(&t->ar);
		free(t);
		t = NULL;
	}
	c_locale_leave(&loc);
	free(job);
	*out = t;
	return code;
}

void tmpl_free(tmpl *t)
{
	if (!t)
		return;
	arena_free(&t->ar);
	free(t);
}

static void limits_fill(struct tmpl_limits *l, const struct tmpl_options *opt)
{
	if (opt)
		*l = opt->limits;
	else
		memset(l, 0, sizeof *l);
	if (!l->max_depth)
		l->max_depth = TMPL_DEFAULT_MAX_DEPTH;
	if (!l->max_steps)
		l->max_steps = TMPL_DEFAULT_MAX_STEPS;
	if (!l->max_output)
		l->max_output = TMPL_DEFAULT_MAX_OUTPUT;
	if (!l->max_memory)
		l->max_memory = TMPL_DEFAULT_MAX_MEMORY;
	if (!l->max_time_ms)
		l->max_time_ms = TMPL_DEFAULT_MAX_TIME_MS;
}

struct render_job {
	struct rctx c;
	char *result;
	size_t result_len;
};

static value messages_value(struct rctx *c, const struct tmpl_message *msgs, size_t n)
{
	struct list *l = list_new(c->m, n);
	for (size_t i = 0; i < n; i++) {
		if (!msgs[i].role)
			fail_at(&c->f, TMPL_ERR_ARG, 0, "message %zu has no role", i);
		struct dict *d = dict_new(c->m, 2);
		dict_setc(c->m, d, "role", v_str(str_c(c->m, msgs[i].role)));
		value content = msgs[i].content ? v_str(str_new(c->m, msgs[i].content, msgs[i].content_len))
						: v_none();
		dict_setc(c->m, d, "content", content);
		l->v[i] = (value){.t = T_DICT, .u.d = d};
	}
	return v_list(l, false);
}

static void render_run(struct render_job *job, const struct tmpl *t,
		       const struct tmpl_message *msgs, size_t n, const struct tmpl_options *opt)
{
	struct rctx *c = &job->c;
	struct frame *root = frame_new(c, NULL);
	c->root = root;
	value msgv;
	if (opt && opt->messages_json) {
		msgv = json_parse(c, "messages_json", opt->messages_json);
		if (msgv.t != T_LIST)
			fail_at(&c->f, TMPL_ERR_ARG, 0, "messages_json: not an array");
	} else {
		msgv = messages_value(c, msgs, n);
	}
	dict_setc(c->m, root->vars, "messages", msgv);
	dict_setc(c->m, root->vars, "add_generation_prompt",
		  v_bool(opt && opt->add_generation_prompt));
	if (opt && opt->bos_token)
		dict_setc(c->m, root->vars, "bos_token", v_str(str_c(c->m, opt->bos_token)));
	if (opt && opt->eos_token)
		dict_setc(c->m, root->vars, "eos_token", v_str(str_c(c->m, opt->eos_token)));
	if (opt && opt->vars_json) {
		value vars = json_parse(c, "vars_json", opt->vars_json);
		if (vars.t != T_DICT)
			fail_at(&c->f, TMPL_ERR_ARG, 0, "vars_json: not an object");
		for (size_t i = 0; i < vars.u.d->n; i++)
			dict_set(c->m, root->vars, vars.u.d->k[i], vars.u.d->v[i]);
	}
	struct sbuf out = {.limit = c->lim.max_output};
	c->out = &out;
	exec_body(c, root, &t->body);
	job->result = eng_malloc(out.len + 1);
	if (!job->result)
		fail_at(&c->f, TMPL_ERR_NOMEM, 0, "out of memory");
	if (out.len)
		memcpy(job->result, out.p, out.len);
	job->result[out.len] = 0;
	job->result_len = out.len;
}

int tmpl_render(const tmpl *t, const struct tmpl_message *msgs, size_t n,
		const struct tmpl_options *opt, char **out, size_t *out_len,
		char *err, size_t errlen)
{
	if (out)
		*out = NULL;
	if (out_len)
		*out_len = 0;
	if (!t || !out || (!msgs && n && !(opt && opt->messages_json))) {
		set_err(err, errlen, "tmpl_render: bad arguments");
		return TMPL_ERR_ARG;
	}
	struct render_job *job = eng_calloc(1, sizeof *job);
	if (!job) {
		set_err(err, errlen, "out of memory");
		return TMPL_ERR_NOMEM;
	}
	struct rctx *c = &job->c;
	limits_fill(&c->lim, opt);
	c->ar.limit = c->lim.max_memory;
	c->m = (struct mem){&c->ar, &c->f};
	c->now = opt ? opt->now : 0;
	c->deadline_ns = now_ns() + (uint64_t)c->lim.max_time_ms * 1000000ull;
	struct c_locale loc;
	c_locale_enter(&loc);
	int code;
	if (setjmp(c->f.jb) == 0) {
		render_run(job, t, msgs, n, opt);
		code = TMPL_OK;
		*out = job->result;
		if (out_len)
			*out_len = job->result_len;
	} else {
		code = c->f.code;
		set_err(err, errlen, c->f.msg);
	}
	c_locale_leave(&loc);
	arena_free(&c->ar);
	free(job);
	return code;
}

int tmpl_render_text(const char *src, size_t len, const struct tmpl_message *msgs,
		     size_t n, const struct tmpl_options *opt, char **out,
		     size_t *out_len, char *err, size_t errlen)
{
	tmpl *t;
	if (out)
		*out = NULL;
	int code = tmpl_parse(src, len, &t, err, errlen);
	if (code != TMPL_OK)
		return code;
	code = tmpl_render(t, msgs, n, opt, out, out_len, err, errlen);
	tmpl_free(t);
	return code;
}

const char *tmpl_strerror(int code)
{
	switch (code) {
	case TMPL_OK: return "ok";
	case TMPL_FALLBACK: return "rendered with a built-in format";
	case TMPL_ERR_SYNTAX: return "template syntax error";
	case TMPL_ERR_RUNTIME: return "template error";
	case TMPL_ERR_RAISED: return "template refused the conversation";
	case TMPL_ERR_LIMIT: return "template limit exceeded";
	case TMPL_ERR_NOMEM: return "out of memory";
	case TMPL_ERR_ARG: return "bad arguments";
	default: return "unknown error";
	}
}

/* ======================================================================
 * Built-in formats
 *
 * Each writes what its family's reference template renders for plain
 * role/content messages.  They never refuse a conversation; where the
 * reference raises (unsupported system role, roles not alternating) the
 * built-in folds the system text into the first user turn and renders the
 * turns in the order given.
 * ====================================================================== */

static const char *const family_names[TMPL_FAMILY_COUNT] = {
	"unknown", "chatml", "llama2", "mistral", "mistral-nemo", "llama3", "gemma", "phi3",
	"deepseek", "zephyr", "command-r", "vicuna",
};

const char *tmpl_family_name(enum tmpl_family f)
{
	return (unsigned)f < TMPL_FAMILY_COUNT ? family_names[f] : "unknown";
}

enum tmpl_family tmpl_family_from_name(const char *name)
{
	if (!name)
		return TMPL_FAMILY_UNKNOWN;
	for (int i = 1; i < TMPL_FAMILY_COUNT; i++)
		if (!strcmp(name, family_names[i]))
			return (enum tmpl_family)i;
	return TMPL_FAMILY_UNKNOWN;
}

enum tmpl_family tmpl_detect_family(const char *text, const char *arch)
{
	if (text && *text) {
		if (strstr(text, "<|im_start|>"))
			return TMPL_FAMILY_CHATML;
		if (strstr(text, "<|start_header_id|>") && strstr(text, "<|end_header_id|>"))
			return TMPL_FAMILY_LLAMA3;
		if (strstr(text, "[INST]")) {
			if (strstr(text, "<<SYS>>"))
				return TMPL_FAMILY_LLAMA2;
			if (strstr(text, " [/INST]") || strstr(text, "[INST] "))
				return TMPL_FAMILY_MISTRAL;
			return TMPL_FAMILY_MISTRAL_NEMO;
		}
		if (strstr(text, "<start_of_turn>"))
			return TMPL_FAMILY_GEMMA;
		if (strstr(text, "<|assistant|>") && strstr(text, "<|end|>"))
			return TMPL_FAMILY_PHI3;
		if (strstr(text, "<\xef\xbd\x9c" "User\xef\xbd\x9c>") ||
		    strstr(text, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"))
			return TMPL_FAMILY_DEEPSEEK;
		if (strstr(text, "<|START_OF_TURN_TOKEN|>"))
			return TMPL_FAMILY_COMMAND_R;
		if (strstr(text, "<|user|>") && strstr(text, "<|assistant|>"))
			return TMPL_FAMILY_ZEPHYR;
		if (strstr(text, "USER: ") && strstr(text, "ASSISTANT:"))
			return TMPL_FAMILY_VICUNA;
	}
	if (arch && *arch) {
		static const struct {
			const char *prefix;
			enum tmpl_family f;
		} archs[] = {
			{"gemma", TMPL_FAMILY_GEMMA}, {"phi3", TMPL_FAMILY_PHI3},
			{"qwen", TMPL_FAMILY_CHATML}, {"smollm", TMPL_FAMILY_CHATML},
			{"command-r", TMPL_FAMILY_COMMAND_R}, {"cohere", TMPL_FAMILY_COMMAND_R},
			{"deepseek", TMPL_FAMILY_DEEPSEEK},
		};
		for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
			if (!strncmp(arch, archs[i].prefix, strlen(archs[i].prefix)))
				return archs[i].f;
	}
	return TMPL_FAMILY_UNKNOWN;
}

/* Output buffer for the built-ins: malloc'd, with a cap. */
struct bbuf {
	char *p;
	size_t len, cap, limit;
	int err;
};

static void bb_put(struct bbuf *b, const char *s, size_t n)
{
	if (b->err || !n)
		return;
	if (n > b->limit || b->len > b->limit - n) {
		b->err = TMPL_ERR_LIMIT;
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *np = eng_realloc(b->p, cap);
		if (!np) {
			b->err = TMPL_ERR_NOMEM;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void bb_puts(struct bbuf *b, const char *s)
{
	if (s)
		bb_put(b, s, strlen(s));
}

/* Message content, optionally with Python whitespace stripped. */
static void bb_content(struct bbuf *b, const struct tmpl_message *m, bool trim)
{
	if (!m->content)
		return;
	const char *s = m->content;
	size_t n = m->content_len;
	if (trim) {
		size_t lead = ws_span(s, n);
		s += lead;
		n = rstrip_len(s, n - lead);
	}
	bb_put(b, s, n);
}

static bool role_is(const struct tmpl_message *m, const char *r)
{
	return m->role && !strcmp(m->role, r);
}

int tmpl_render_builtin(enum tmpl_family f, const struct tmpl_message *msgs, size_t n,
			const struct tmpl_options *opt, char **out, size_t *out_len,
			char *err, size_t errlen)
{
	if (out)
		*out = NULL;
	if (out_len)
		*out_len = 0;
	if (!out || (!msgs && n) || (unsigned)f >= TMPL_FAMILY_COUNT) {
		set_err(err, errlen, "tmpl_render_builtin: bad arguments");
		return TMPL_ERR_ARG;
	}
	for (size_t i = 0; i < n; i++)
		if (!msgs[i].role) {
			set_err(err, errlen, "message without a role");
			return TMPL_ERR_ARG;
		}
	struct tmpl_limits lim;
	limits_fill(&lim, opt);
	struct bbuf b = {.limit = lim.max_output};
	bool agp = opt && opt->add_generation_prompt;
	const char *bos = opt && opt->bos_token ? opt->bos_token : "";
	const char *eos = opt && opt->eos_token ? opt->eos_token : "";
	/* a leading system message, for the families that fold it */
	const struct tmpl_message *sys = n && role_is(&msgs[0], "system") ? &msgs[0] : NULL;
	size_t first = sys ? 1 : 0;

	switch (f) {
	case TMPL_FAMILY_UNKNOWN:
	case TMPL_FAMILY_CHATML:
		for (size_t i = 0; i < n; i++) {
			bb_puts(&b, "<|im_start|>");
			bb_puts(&b, msgs[i].role);
			bb_puts(&b, "\n");
			bb_content(&b, &msgs[i], false);
			bb_puts(&b, "<|im_end|>\n");
		}
		if (agp)
			bb_puts(&b, "<|im_start|>assistant\n");
		break;
	case TMPL_FAMILY_LLAMA2:
		for (size_t i = first; i < n; i++) {
			if (role_is(&msgs[i], "assistant")) {
				bb_puts(&b, " ");
				bb_content(&b, &msgs[i], true);
				bb_puts(&b, " ");
				bb_puts(&b, eos);
				continue;
			}
			bb_puts(&b, bos);
			bb_puts(&b, "[INST] ");
			if (sys && i == first) {
				/* the reference strips the whole "<<SYS>>..." + content */
				struct bbuf t = {.limit = lim.max_output};
				bb_puts(&t, "<<SYS>>\n");
				bb_content(&t, sys, false);
				bb_puts(&t, "\n<</SYS>>\n\n");
				bb_content(&t, &msgs[i], false);
				struct tmpl_message tm = {"user", t.p ? t.p : "", t.len};
				bb_content(&b, &tm, true);
				if (t.err)
					b.err = t.err;
				free(t.p);
			} else {
				bb_content(&b, &msgs[i], true);
			}
			bb_puts(&b, " [/INST]");
		}
		break;
	case TMPL_FAMILY_MISTRAL:
		bb_puts(&b, bos);
		for (size_t i = first; i < n; i++) {
			if (role_is(&msgs[i], "assistant")) {
				bb_content(&b, &msgs[i], false);
				bb_puts(&b, eos);
				continue;
			}
			bb_puts(&b, "[INST] ");
			if (sys && i == first) {
				bb_content(&b, sys, false);
				bb_puts(&b, "\n\n");
			}
			bb_content(&b, &msgs[i], false);
			bb_puts(&b, " [/INST]");
		}
		break;
	case TMPL_FAMILY_MISTRAL_NEMO:
		bb_puts(&b, bos);
		for (size_t i = first; i < n; i++) {
			if (role_is(&msgs[i], "assistant")) {
				bb_content(&b, &msgs[i], false);
				bb_puts(&b, eos);
				continue;
			}
			bb_puts(&b, "[INST]");
			if (sys && i == n - 1) {
				bb_content(&b, sys, false);
				bb_puts(&b, "\n\n");
			}
			bb_content(&b, &msgs[i], false);
			bb_puts(&b, "[/INST]");
		}
		break;
	case TMPL_FAMILY_LLAMA3:
		for (size_t i = 0; i < n; i++) {
			if (i == 0)
				bb_puts(&b, bos);
			bb_puts(&b, "<|start_header_id|>");
			bb_puts(&b, msgs[i].role);
			bb_puts(&b, "<|end_header_id|>\n\n");
			bb_content(&b, &msgs[i], true);
			bb_puts(&b, "<|eot_id|>");
		}
		if (agp)
			bb_puts(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
		break;
	case TMPL_FAMILY_GEMMA:
		bb_puts(&b, bos);
		for (size_t i = first; i < n; i++) {
			bb_puts(&b, "<start_of_turn>");
			bb_puts(&b, role_is(&msgs[i], "assistant") ? "model" : msgs[i].role);
			bb_puts(&b, "\n");
			if (sys && i == first) {
				bb_content(&b, sys, false);
				bb_puts(&b, "\n\n");
			}
			bb_content(&b, &msgs[i], true);
			bb_puts(&b, "<end_of_turn>\n");
		}
		if (agp)
			bb_puts(&b, "<start_of_turn>model\n");
		break;
	case TMPL_FAMILY_PHI3:
		for (size_t i = 0; i < n; i++) {
			const char *tag = NULL;
			if (role_is(&msgs[i], "system") && msgs[i].content && msgs[i].content_len)
				tag = "<|system|>\n";
			else if (role_is(&msgs[i], "user"))
				tag = "<|user|>\n";
			else if (role_is(&msgs[i], "assistant"))
				tag = "<|assistant|>\n";
			if (!tag)
				continue;
			bb_puts(&b, tag);
			bb_content(&b, &msgs[i], false);
			bb_puts(&b, "<|end|>\n");
		}
		bb_puts(&b, agp ? "<|assistant|>\n" : eos);
		break;
	case TMPL_FAMILY_DEEPSEEK: {
		bb_puts(&b, bos);
		const struct tmpl_message *last_sys = NULL;
		for (size_t i = 0; i < n; i++)
			if (role_is(&msgs[i], "system"))
				last_sys = &msgs[i];
		if (last_sys)
			bb_content(&b, last_sys, false);
		for (size_t i = 0; i < n; i++) {
			if (role_is(&msgs[i], "user")) {
				bb_puts(&b, "<\xef\xbd\x9cUser\xef\xbd\x9c>");
				bb_content(&b, &msgs[i], false);
			} else if (role_is(&msgs[i], "assistant")) {
				bb_puts(&b, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>");
				if (msgs[i].content) {
					/* only the text after the last </think> */
					const char *s = msgs[i].content, *end = s + msgs[i].content_len;
					const char *h = rfind_bytes(s, msgs[i].content_len, "</think>", 8);
					if (h)
						s = h + 8;
					bb_put(&b, s, (size_t)(end - s));
				}
				bb_puts(&b, "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
			}
		}
		if (agp)
			bb_puts(&b, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c><think>\n");
		break;
	}
	case TMPL_FAMILY_ZEPHYR:
		for (size_t i = 0; i < n; i++) {
			bb_puts(&b, "<|");
			bb_puts(&b, msgs[i].role);
			bb_puts(&b, "|>\n");
			bb_content(&b, &msgs[i], false);
			bb_puts(&b, eos);
			bb_puts(&b, "\n");
		}
		if (agp)
			bb_puts(&b, "<|assistant|>\n");
		break;
	case TMPL_FAMILY_COMMAND_R:
		bb_puts(&b, bos);
		if (sys) {
			bb_puts(&b, "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>");
			bb_content(&b, sys, false);
			bb_puts(&b, "<|END_OF_TURN_TOKEN|>");
		}
		for (size_t i = first; i < n; i++) {
			bb_puts(&b, role_is(&msgs[i], "assistant")
					    ? "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
					    : "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>");
			bb_content(&b, &msgs[i], true);
			bb_puts(&b, "<|END_OF_TURN_TOKEN|>");
		}
		if (agp)
			bb_puts(&b, "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
		break;
	case TMPL_FAMILY_VICUNA:
		for (size_t i = 0; i < n; i++) {
			if (role_is(&msgs[i], "system")) {
				bb_content(&b, &msgs[i], false);
				bb_puts(&b, "\n\n");
			} else if (role_is(&msgs[i], "assistant")) {
				bb_puts(&b, "ASSISTANT: ");
				bb_content(&b, &msgs[i], false);
				bb_puts(&b, eos);
				bb_puts(&b, "\n");
			} else {
				bb_puts(&b, "USER: ");
				bb_content(&b, &msgs[i], false);
				bb_puts(&b, "\n");
			}
		}
		if (agp)
			bb_puts(&b, "ASSISTANT:");
		break;
	default:
		break;
	}
	if (!b.err && !b.p) {
		/* nothing written: still hand back an empty string */
		b.p = eng_calloc(1, 1);
		if (!b.p)
			b.err = TMPL_ERR_NOMEM;
	}
	if (b.err) {
		free(b.p);
		set_err(err, errlen, b.err == TMPL_ERR_LIMIT ? "output limit exceeded" : "out of memory");
		return b.err;
	}
	*out = b.p;
	if (out_len)
		*out_len = b.len;
	return TMPL_OK;
}

int tmpl_format_chat(const char *template_text, const char *arch,
		     const struct tmpl_message *msgs, size_t n,
		     const struct tmpl_options *opt, char **out, size_t *out_len,
		     enum tmpl_family *family_used, char *err, size_t errlen)
{
	char why[320] = "no chat template";
	if (family_used)
		*family_used = TMPL_FAMILY_UNKNOWN;
	if (!out) {
		set_err(err, errlen, "tmpl_format_chat: bad arguments");
		return TMPL_ERR_ARG;
	}
	if (template_text && *template_text) {
		int code = tmpl_render_text(template_text, strlen(template_text), msgs, n, opt, out,
					    out_len, why, sizeof why);
		if (code == TMPL_OK)
			return TMPL_OK;
		if (code == TMPL_ERR_ARG || code == TMPL_ERR_NOMEM) {
			/* out of memory is no reason to render another format */
			set_err(err, errlen, why);
			return code;
		}
	}
	enum tmpl_family f = tmpl_detect_family(template_text, arch);
	if (f == TMPL_FAMILY_UNKNOWN)
		f = TMPL_FAMILY_CHATML;
	int code = tmpl_render_builtin(f, msgs, n, opt, out, out_len, err, errlen);
	if (code != TMPL_OK)
		return code;
	if (family_used)
		*family_used = f;
	if (err && errlen)
		snprintf(err, errlen, "%.250s; using the built-in %s format", why, tmpl_family_name(f));
	return TMPL_FALLBACK;
}

/* ======================================================================
 * Messages from JSON (for front ends that receive conversations as JSON)
 * ====================================================================== */

struct msgjson_job {
	struct rctx c;
	struct tmpl_message *out;
	size_t n;
	bool structured;
};

static void msgjson_run(struct msgjson_job *job, const char *json)
{
	struct rctx *c = &job->c;
	value v = json_parse(c, "messages", json);
	if (v.t != T_LIST)
		fail_at(&c->f, TMPL_ERR_ARG, 0, "messages: not a JSON array");
	const struct list *l = v.u.l;
	size_t bytes = mul_or_die(&c->f, l->n ? l->n : 1, sizeof(struct tmpl_message));
	for (size_t i = 0; i < l->n; i++) {
		const value *mv = &l->v[i];
		value k_role = v_str(str_c(c->m, "role")), k_content = v_str(str_c(c->m, "content"));
		const value *role = mv->t == T_DICT ? dict_get(mv->u.d, &k_role) : NULL;
		if (!role || role->t != T_STR || memchr(role->u.s->s, 0, role->u.s->len))
			fail_at(&c->f, TMPL_ERR_ARG, 0, "messages: element %zu has no \"role\" string", i);
		const value *content = dict_get(mv->u.d, &k_content);
		if (mv->u.d->n != 2 || !content || (content->t != T_STR && content->t != T_NONE))
			job->structured = true;
		bytes = add_or_die(&c->f, bytes, role->u.s->len + 1);
		if (content && content->t == T_STR)
			bytes = add_or_die(&c->f, bytes, content->u.s->len + 1);
	}
	char *block = eng_malloc(bytes);
	if (!block)
		fail_at(&c->f, TMPL_ERR_NOMEM, 0, "out of memory");
	struct tmpl_message *msgs = (struct tmpl_message *)(void *)block;
	char *p = block + (l->n ? l->n : 1) * sizeof(struct tmpl_message);
	for (size_t i = 0; i < l->n; i++) {
		const struct dict *d = l->v[i].u.d;
		const value *role = dict_get(d, &(value){.t = T_STR, .u.s = str_c(c->m, "role")});
		const value *content = dict_get(d, &(value){.t = T_STR, .u.s = str_c(c->m, "content")});
		memcpy(p, role->u.s->s, role->u.s->len + 1);
		msgs[i].role = p;
		p += role->u.s->len + 1;
		if (content && content->t == T_STR) {
			memcpy(p, content->u.s->s, content->u.s->len + 1);
			msgs[i].content = p;
			msgs[i].content_len = content->u.s->len;
			p += content->u.s->len + 1;
		} else {
			msgs[i].content = NULL;
			msgs[i].content_len = 0;
		}
	}
	job->out = msgs;
	job->n = l->n;
}

int tmpl_messages_from_json(const char *json, struct tmpl_message **msgs, size_t *n,
			    bool *structured, char *err, size_t errlen)
{
	if (!json || !msgs || !n) {
		set_err(err, errlen, "tmpl_messages_from_json: bad arguments");
		return TMPL_ERR_ARG;
	}
	*msgs = NULL;
	*n = 0;
	struct msgjson_job *job = eng_calloc(1, sizeof *job);
	if (!job) {
		set_err(err, errlen, "out of memory");
		return TMPL_ERR_NOMEM;
	}
	struct rctx *c = &job->c;
	limits_fill(&c->lim, NULL);
	c->ar.limit = c->lim.max_memory;
	c->m = (struct mem){&c->ar, &c->f};
	struct c_locale loc;
	c_locale_enter(&loc);
	int code;
	if (setjmp(c->f.jb) == 0) {
		msgjson_run(job, json);
		*msgs = job->out;
		*n = job->n;
		if (structured)
			*structured = job->structured;
		code = TMPL_OK;
	} else {
		code = c->f.code;
		set_err(err, errlen, c->f.msg);
	}
	c_locale_leave(&loc);
	arena_free(&c->ar);
	free(job);
	return code;
}
