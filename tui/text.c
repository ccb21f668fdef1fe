/*
 * text.c - display clusters and wrapping (see text.h).
 *
 * UTF-8 is decoded here by a strict decoder of our own (overlong forms,
 * surrogates and values past U+10FFFF are invalid, one U+FFFD per bad
 * byte) so that nothing the model sends can reach the terminal as a control.
 * Widths and grapheme boundaries come from utf8proc; the C library's
 * wcwidth() is consulted only to refuse characters that curses would place
 * differently from our layout.
 *
 * Wrapping is a single forward scan per display line that remembers the
 * last break opportunity (a space run, or either side of a wide
 * character).  Its decisions depend only on text up to the first cluster
 * that does not fit, which is what makes resuming at the last line of a
 * streaming reply equal to wrapping it all again.
 */
#include "config.h"

#include "text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <wchar.h>

/* Strict UTF-8 decode of one code point: bytes used, or 0 when S does not
 * start with a complete, valid sequence. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	if (n == 0)
		return 0;
	unsigned c = s[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t need;
	uint32_t v, min;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
		v = c & 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		v = c & 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		v = c & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return need;
}

size_t text_utf8_decode(const char *s, size_t n, unsigned *cp)
{
	uint32_t v;
	size_t k = utf8_decode((const unsigned char *)s, n, &v);
	if (k)
		*cp = v;
	return k;
}

static bool is_bidi_control(uint32_t cp)
{
	return (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* A code point that must show as a placeholder: C0, DEL, C1, bidi. */
static bool is_control(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || is_bidi_control(cp);
}

static void set_shown(struct text_cluster *c, const char *s)
{
	snprintf(c->shown, sizeof c->shown, "%s", s);
}

/* Columns of a printable code point as utf8proc sees it, or -1 when the
 * C library (which curses uses to place cells) disagrees. */
static int cp_width(uint32_t cp)
{
	if (cp < 0x7f)
		return 1;
	int uw = utf8proc_charwidth((utf8proc_int32_t)cp);
	int cw = wcwidth((wchar_t)cp);
	if (uw < 0 || cw != uw)
		return -1;
	return uw;
}

size_t text_cluster_next(const char *s, size_t len, size_t pos, unsigned flags, struct text_cluster *c)
{
	const unsigned char *u = (const unsigned char *)s;
	memset(c, 0, sizeof *c);
	c->off = pos;
	if (pos >= len) {
		c->kind = TC_END;
		return pos;
	}
	uint32_t cp;
	size_t n = utf8_decode(u + pos, len - pos, &cp);
	if (n == 0) {
		c->len = 1;
		c->width = 1;
		c->kind = TC_BAD;
		set_shown(c, flags & TEXT_ASCII ? "?" : "\xef\xbf\xbd");
		return pos + 1;
	}
	c->len = n;
	if (cp == '\n' || (cp == '\r' && pos + 1 < len && u[pos + 1] == '\n')) {
		c->len = cp == '\r' ? 2 : 1;
		c->kind = TC_NEWLINE;
		return pos + c->len;
	}
	if (cp == '\t') {
		c->kind = TC_TAB;
		return pos + 1;
	}
	if (is_control(cp)) {
		c->kind = TC_CTRL;
		if (cp < 0x20)
			snprintf(c->shown, sizeof c->shown, "^%c", (char)(cp + 0x40));
		else if (cp == 0x7f)
			set_shown(c, "^?");
		else
			snprintf(c->shown, sizeof c->shown, "<U+%04X>", (unsigned)cp);
		c->width = (int)strlen(c->shown);
		return pos + n;
	}
	int w = cp_width(cp);
	/* extend over the rest of the grapheme cluster; a cluster is capped so
	 * that a flood of combining marks cannot grow one cell without bound */
	utf8proc_int32_t state = 0;
	uint32_t prev = cp;
	size_t end = pos + n;
	while (end < len && end - pos < 64) {
		uint32_t next;
		size_t m = utf8_decode(u + end, len - end, &next);
		if (m == 0 || is_control(next) || next == '\t')
			break;
		if (utf8proc_grapheme_break_stateful((utf8proc_int32_t)prev, (utf8proc_int32_t)next, &state))
			break;
		end += m;
		prev = next;
	}
	c->len = end - pos;
	if (w < 0) {
		c->width = 1;
		c->kind = TC_BAD;
		set_shown(c, flags & TEXT_ASCII ? "?" : "\xef\xbf\xbd");
	} else if (w == 0) {
		c->kind = TC_ZERO;
	} else if ((flags & TEXT_ASCII) && (cp >= 0x80 || c->len > 1)) {
		/* an ASCII base keeps its place without its marks */
		c->width = 1;
		c->kind = TC_PRINT;
		c->shown[0] = cp < 0x80 ? (char)cp : '?';
		c->shown[1] = '\0';
	} else {
		c->width = w;
		c->kind = TC_PRINT;
	}
	return end;
}

/* 1 when S[0..N) (N < 4) is the start of a UTF-8 sequence that the next
 * bytes could complete. */
static bool utf8_prefix(const unsigned char *s, size_t n)
{
	size_t need = s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : s[0] >= 0xe0 && s[0] <= 0xef ? 3
		    : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : 0;
	if (!need || n >= need)
		return false;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return false;
	return true;
}

size_t text_visible(const char *s, size_t len, bool final, text_emit_fn emit, void *ctx)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t pos = 0;
	while (pos < len) {
		if (!final && ((len - pos < 4 && utf8_prefix(u + pos, len - pos)) || (u[pos] == '\r' && pos + 1 == len)))
			break;
		struct text_cluster c;
		size_t next = text_cluster_next(s, len, pos, 0, &c);
		unsigned cp;
		if (c.kind == TC_CTRL || (c.kind == TC_BAD && text_utf8_decode(s + pos, len - pos, &cp) == 0))
			emit(ctx, c.shown, strlen(c.shown));
		else
			emit(ctx, s + pos, next - pos); /* printable, or width unknown to this locale */
		pos = next;
	}
	return pos;
}

int text_width(const char *s, size_t len, unsigned flags)
{
	int col = 0;
	struct text_cluster c;
	for (size_t p = 0;;) {
		p = text_cluster_next(s, len, p, flags, &c);
		if (c.kind == TC_END)
			break;
		if (c.kind == TC_TAB)
			col += TEXT_TAB - col % TEXT_TAB;
		else
			col += c.width;
	}
	return col;
}

void text_lines_free(struct text_lines *l)
{
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static int lines_push(struct text_lines *l, const struct text_line *ln)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 16;
		if (nc > SIZE_MAX / sizeof *l->v)
			return -1;
		struct text_line *nv = realloc(l->v, nc * sizeof *nv);
		if (!nv)
			return -1;
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = *ln;
	return 0;
}

/* ``` or ~~~ after at most three spaces */
static bool is_fence(const char *s, size_t n)
{
	size_t i = 0;
	while (i < 3 && i < n && s[i] == ' ')
		i++;
	if (i + 3 > n)
		return false;
	char f = s[i];
	return (f == '`' || f == '~') && s[i + 1] == f && s[i + 2] == f;
}

static bool is_blank(const char *s, const struct text_cluster *c)
{
	/* a space with marks on it still counts, so that appending a mark
	 * never changes an earlier break */
	return c->kind == TC_TAB || (c->kind == TC_PRINT && s[c->off] == ' ');
}

enum wrap_end { W_ENDED, W_NEWLINE, W_WRAPPED };

/* The rest of a logical line that a cut code line does not show, from R:
 * W_NEWLINE with *NEXT where the next line starts, or W_ENDED. */
static enum wrap_end skip_rest(const char *s, size_t len, size_t r, unsigned flags, size_t *next)
{
	for (;;) {
		struct text_cluster d;
		size_t t = text_cluster_next(s, len, r, flags, &d);
		if (d.kind == TC_END)
			return W_ENDED;
		if (d.kind == TC_NEWLINE) {
			*next = t;
			return W_NEWLINE;
		}
		r = t;
	}
}

/* Past the blanks at P: a wrapped line never starts with the spaces it
 * broke at. */
static size_t skip_blanks(const char *s, size_t len, size_t p, unsigned flags)
{
	for (;;) {
		struct text_cluster c;
		size_t q = text_cluster_next(s, len, p, flags, &c);
		if (c.kind == TC_END || !is_blank(s, &c))
			return p;
		p = q;
	}
}

/* One display line from P, at most WIDTH columns: sets LN's end and width
 * (and TL_TRUNC when NOWRAP cut it) and *NEXT, where the next one starts.
 * A line breaks after the last blank that fits, else before or after a
 * double-width character, else where the width runs out. */
static enum wrap_end wrap_line(const char *s, size_t len, size_t p, int width, unsigned flags, bool nowrap,
			       struct text_line *ln, size_t *next)
{
	int col = 0, brk_col = 0, fit_col = 0;
	size_t brk_end = SIZE_MAX, brk_resume = 0, fit_pos = p;
	bool prev_blank = false;
	enum wrap_end how;
	for (;;) {
		struct text_cluster c;
		size_t q = text_cluster_next(s, len, p, flags, &c);
		if (c.kind == TC_END || c.kind == TC_NEWLINE) {
			ln->end = p;
			*next = q;
			how = c.kind == TC_END ? W_ENDED : W_NEWLINE;
			break;
		}
		int w = c.kind == TC_TAB ? TEXT_TAB - col % TEXT_TAB : c.width;
		if (c.kind == TC_TAB && col + w > width && col < width)
			w = width - col; /* a tab at the edge fills it, no more */
		const bool blank = is_blank(s, &c);
		if (col + w > width && col > 0) {
			how = W_WRAPPED;
			if (nowrap) {
				ln->end = fit_pos;
				col = fit_col;
				ln->flags |= TL_TRUNC;
				/* the rest of the logical line is not shown */
				how = skip_rest(s, len, q, flags, next);
			} else if (blank) {
				ln->end = prev_blank ? brk_end : p;
				if (prev_blank)
					col = brk_col;
				*next = p;
			} else if (brk_end != SIZE_MAX) {
				ln->end = brk_end;
				col = brk_col;
				*next = brk_resume;
			} else {
				ln->end = p;
				*next = p;
			}
			break;
		}
		if (blank) {
			if (!prev_blank) {
				brk_end = p;
				brk_col = col;
			}
			brk_resume = q;
		} else if (c.width == 2 && col > 0) {
			brk_end = p;
			brk_col = col;
			brk_resume = p;
		}
		col += w;
		p = q;
		if (c.width == 2 && !blank) {
			brk_end = p;
			brk_col = col;
			brk_resume = p;
		}
		prev_blank = blank;
		if (col <= width - 1) {
			fit_pos = p;
			fit_col = col;
		}
	}
	ln->width = col;
	return how;
}

int text_wrap(const char *s, size_t len, const struct text_line *resume, int width, unsigned flags,
	      struct text_lines *out)
{
	size_t pos = 0;
	bool open = false, cont = false, fence = false;
	if (width < 1)
		width = 1;
	if (resume) {
		pos = resume->from;
		open = resume->flags & TL_OPEN;
		cont = resume->flags & TL_CONT;
		fence = resume->flags & TL_FENCE;
	}
	const size_t n0 = out->n;
	for (;;) {
		struct text_line ln = {.from = pos, .start = pos};
		if (!cont)
			fence = is_fence(s + pos, len - pos);
		ln.flags = (cont ? TL_CONT : 0) | (open ? TL_OPEN : 0) | (open || fence ? TL_CODE : 0) |
			   (fence ? TL_FENCE : 0);
		const bool nowrap = (flags & TEXT_NOWRAP_CODE) && (ln.flags & TL_CODE);
		if (cont && !nowrap)
			ln.start = skip_blanks(s, len, pos, flags);
		size_t next = 0;
		enum wrap_end how = wrap_line(s, len, ln.start, width, flags, nowrap, &ln, &next);
		if (lines_push(out, &ln) != 0) {
			out->n = n0;
			return -1;
		}
		if (how == W_ENDED)
			return 0;
		if (how == W_NEWLINE) {
			if (fence)
				open = !open;
			fence = false;
			cont = false;
		} else {
			cont = true;
		}
		pos = next;
	}
}

size_t text_stable_len(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	if (len && u[len - 1] == '\r')
		return len - 1;
	/* walk back over continuation bytes to the lead byte */
	size_t i = len, k = 0;
	while (i > 0 && k < 3 && (u[i - 1] & 0xc0) == 0x80) {
		i--;
		k++;
	}
	if (i == 0)
		return len;
	unsigned c = u[i - 1];
	size_t need = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
	if (need && k + 1 < need)
		return i - 1;
	return len;
}

char *text_unescape(const char *s, size_t *outlen)
{
	size_t n = strlen(s);
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\' || i + 1 >= n) {
			out[o++] = s[i];
			continue;
		}
		char e = s[++i];
		switch (e) {
		case 'e': out[o++] = 0x1b; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case '\\': out[o++] = '\\'; break;
		case 'x': {
			unsigned v = 0;
			int k = 0;
			while (k < 2 && i + 1 < n) {
				char h = s[i + 1];
				int d = h >= '0' && h <= '9' ? h - '0'
					: h >= 'a' && h <= 'f' ? h - 'a' + 10
					: h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
				if (d < 0)
					break;
				v = v * 16 + (unsigned)d;
				i++;
				k++;
			}
			out[o++] = k ? (char)v : 'x';
			break;
		}
		default:
			out[o++] = '\\';
			out[o++] = e;
			break;
		}
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}
