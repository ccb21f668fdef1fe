/*
 * transcript.c - the conversation pane (see transcript.h).
 *
 * Each item's display lines are: a header (user and reply turns), the
 * wrapped body indented by TR_INDENT, a mark line for a reply that was
 * stopped or cut, and one blank separator.  Bodies are wrapped lazily in
 * tr_layout(): a width change re-wraps everything, an append re-wraps from
 * the item's last line only.  Finished items are wrapped without trailing
 * blank lines; a streaming one up to text_stable_len() so that a cut UTF-8
 * sequence or a CR waiting for its LF is never drawn half-way.
 *
 * Drawing erases the window and draws the visible lines from state; curses
 * compares with what the terminal shows and sends only the difference.
 */
#include "config.h"

#include "transcript.h"

#include <cjson/cJSON.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "theme.h"

void tr_init(struct transcript *t)
{
	memset(t, 0, sizeof *t);
	t->follow = true;
	t->width = 80;
	t->height = 24;
}

static void item_free(struct tr_item *it)
{
	free(it->text);
	free(it->view);
	text_lines_free(&it->lines);
	md_doc_free(&it->md);
}

void tr_free(struct transcript *t)
{
	for (size_t i = 0; i < t->n; i++)
		item_free(&t->v[i]);
	free(t->v);
	memset(t, 0, sizeof *t);
}

long tr_add(struct transcript *t, enum tr_kind kind, const char *text, size_t len, unsigned flags)
{
	if (t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 16;
		struct tr_item *nv = realloc(t->v, nc * sizeof *nv);
		if (!nv)
			return -1;
		t->v = nv;
		t->cap = nc;
	}
	struct tr_item *it = &t->v[t->n];
	memset(it, 0, sizeof *it);
	it->kind = kind;
	it->flags = flags;
	it->cap = len + 1 > 64 ? len + 1 : 64;
	it->text = malloc(it->cap);
	if (!it->text)
		return -1;
	if (len)
		memcpy(it->text, text, len);
	it->text[len] = '\0';
	it->len = len;
	return (long)t->n++;
}

long tr_insert(struct transcript *t, size_t at, enum tr_kind kind, const char *text, size_t len, unsigned flags)
{
	if (at > t->n)
		at = t->n;
	long i = tr_add(t, kind, text, len, flags);
	if (i < 0)
		return -1;
	struct tr_item tmp = t->v[i];
	memmove(&t->v[at + 1], &t->v[at], ((size_t)i - at) * sizeof tmp);
	t->v[at] = tmp;
	return (long)at;
}

int tr_append(struct transcript *t, size_t i, const char *s, size_t n)
{
	if (i >= t->n)
		return -1;
	struct tr_item *it = &t->v[i];
	if (n > SIZE_MAX / 2 - it->len)
		return -1;
	if (it->len + n + 1 > it->cap) {
		size_t nc = it->cap;
		while (it->len + n + 1 > nc)
			nc *= 2;
		char *nt = realloc(it->text, nc);
		if (!nt)
			return -1;
		it->text = nt;
		it->cap = nc;
	}
	memcpy(it->text + it->len, s, n);
	it->len += n;
	it->text[it->len] = '\0';
	return 0;
}

size_t tr_tool_calls(struct transcript *t, size_t i, const char *format)
{
	if (i >= t->n || t->v[i].kind != TR_ASSISTANT || !format || !format[0])
		return 0;
	char *content = NULL, *calls = NULL;
	if (engine_tools_parse(format, NULL, t->v[i].text, t->v[i].len, &content, &calls) != 0)
		return 0;
	cJSON *arr = cJSON_Parse(calls);
	free(calls);
	size_t n = 0;
	for (const cJSON *c = arr ? arr->child : NULL; c; c = c->next) {
		const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
		const char *args = cJSON_GetObjectItemCaseSensitive(c, "arguments")->valuestring;
		long k = tr_insert(t, i + 1 + n, TR_TOOLCALL, args, strlen(args), 0);
		if (k < 0)
			break;
		snprintf(t->v[k].label, sizeof t->v[k].label, "%s tool call: %s",
			 t->text_flags & TEXT_ASCII ? "->" : "\u2192", name);
		n++;
	}
	cJSON_Delete(arr);
	struct tr_item *it = &t->v[i];
	if (n) {
		free(it->view);
		it->view = content;
		it->view_len = strlen(content);
		/* lay it out afresh: the view is not the text the layout holds */
		md_doc_free(&it->md);
		memset(&it->md, 0, sizeof it->md);
		it->wrap_w = 0;
		it->wrapped_len = 0;
	} else {
		free(content);
	}
	return n;
}

void tr_truncate(struct transcript *t, size_t i)
{
	while (t->n > i)
		item_free(&t->v[--t->n]);
}

void tr_resize(struct transcript *t, int width, int height, unsigned text_flags)
{
	t->width = width > TR_INDENT + 1 ? width : TR_INDENT + 1;
	t->height = height > 1 ? height : 1;
	t->text_flags = text_flags;
	if (t->follow)
		t->top = SIZE_MAX; /* snap to the end at the next layout */
}

/* Bytes of the item's text that its body shows. */
static size_t shown_len(const struct tr_item *it)
{
	if (it->flags & TRF_STREAMING)
		return text_stable_len(it->text, it->len);
	size_t n = it->len;
	while (n > 0 && (it->text[n - 1] == '\n' || it->text[n - 1] == ' ' || it->text[n - 1] == '\r' ||
			 it->text[n - 1] == '\t'))
		n--;
	return n;
}

/* A reply's body goes through the Markdown layout instead. */
static void item_layout_md(struct tr_item *it, int width, unsigned flags, bool plain)
{
	unsigned mf = (flags & TEXT_ASCII ? MD_ASCII : 0) | (flags & TEXT_NOWRAP_CODE ? MD_NOWRAP : 0) |
		      (plain ? MD_PLAIN : 0);
	size_t target = it->view ? it->view_len : shown_len(it);
	if (it->md.nln && target == it->wrapped_len && it->wrap_w == width && it->md.flags == mf)
		return;
	if (md_doc_update(&it->md, it->view ? it->view : it->text, target, width, mf) != 0)
		target = 0; /* out of memory: show the header only, retry later */
	it->wrap_w = width;
	it->wrap_flags = flags;
	it->wrapped_len = target;
}

/* Display lines of the body. */
static size_t body_rows(const struct tr_item *it)
{
	if (it->kind == TR_REASONING && (it->flags & TRF_FOLDED))
		return 0;
	return it->kind == TR_ASSISTANT ? it->md.nln : it->lines.n;
}

static void item_wrap(struct tr_item *it, int width, unsigned flags, bool plain)
{
	if (it->kind == TR_ASSISTANT) {
		item_layout_md(it, width, flags, plain);
		return;
	}
	size_t target = shown_len(it);
	if (it->wrap_w != width || it->wrap_flags != flags || target < it->wrapped_len) {
		it->lines.n = 0;
		it->wrapped_len = 0;
	}
	if (target == 0) {
		it->lines.n = 0;
	} else if (it->lines.n == 0 || target != it->wrapped_len) {
		struct text_line resume;
		bool have = it->lines.n > 0;
		if (have)
			resume = it->lines.v[--it->lines.n];
		if (text_wrap(it->text, target, have ? &resume : NULL, width, flags, &it->lines) != 0) {
			it->lines.n = 0;
			target = 0; /* out of memory: show the header only, retry later */
		}
	}
	it->wrap_w = width;
	it->wrap_flags = flags;
	it->wrapped_len = target;
}

static bool has_header(const struct tr_item *it)
{
	return it->kind == TR_USER || it->kind == TR_ASSISTANT || it->kind == TR_REASONING || it->kind == TR_TOOLCALL;
}

static bool has_mark(const struct tr_item *it)
{
	return it->kind == TR_ASSISTANT &&
	       ((it->flags & (TRF_STOPPED | TRF_CONTEXT | TRF_LENGTH | TRF_FAILED)) ||
		(!(it->flags & TRF_STREAMING) && body_rows(it) == 0));
}

static size_t item_rows(const struct tr_item *it)
{
	return (has_header(it) ? 1 : 0) + body_rows(it) + (has_mark(it) ? 1 : 0) + 1;
}

void tr_layout(struct transcript *t)
{
	const int w = t->width - TR_INDENT;
	size_t total = 0;
	for (size_t i = 0; i < t->n; i++) {
		item_wrap(&t->v[i], w, t->text_flags, t->plain);
		total += item_rows(&t->v[i]);
	}
	const size_t h = (size_t)t->height;
	const size_t jump = h / 3 > 0 ? h / 3 : 1;
	if (total > t->total && !t->follow && t->top + h < total)
		t->unseen = true;
	t->total = total;
	if (t->follow) {
		if (total <= h)
			t->top = 0;
		else if (t->top == SIZE_MAX)
			t->top = total - h;
		else if (t->top + h < total)
			t->top = total - h + jump - 1 < total ? total - h + jump - 1 : total - 1;
		else if (t->top + h > total + jump - 1)
			t->top = total - h;
		t->unseen = false;
	} else {
		size_t max_top = total > h ? total - h : 0;
		if (t->top > max_top)
			t->top = max_top;
		if (t->top + h >= total)
			t->unseen = false;
	}
}

void tr_scroll(struct transcript *t, long delta)
{
	const size_t h = (size_t)t->height;
	size_t max_top = t->total > h ? t->total - h : 0;
	size_t top = t->top == SIZE_MAX ? max_top : t->top;
	if (top > max_top && delta < 0)
		top = max_top;
	if (delta < 0)
		top = (size_t)-delta > top ? 0 : top - (size_t)-delta;
	else
		top += (size_t)delta;
	if (top >= max_top) {
		t->top = max_top;
		t->follow = true;
		t->unseen = false;
	} else {
		t->top = top;
		t->follow = false;
	}
}

void tr_scroll_top(struct transcript *t)
{
	t->top = 0;
	t->follow = t->total <= (size_t)t->height;
}

void tr_scroll_bottom(struct transcript *t)
{
	t->follow = true;
	t->unseen = false;
	t->top = SIZE_MAX;
	tr_layout(t);
}

int tr_put_text(WINDOW *w, const char *s, size_t len, int maxw, unsigned text_flags, unsigned long attr,
		unsigned long ctrl_attr)
{
	int col = 0;
	struct text_cluster c;
	for (size_t p = 0;;) {
		size_t q = text_cluster_next(s, len, p, text_flags, &c);
		if (c.kind == TC_END || c.kind == TC_NEWLINE)
			break;
		if (c.kind == TC_TAB) {
			int tw = TEXT_TAB - col % TEXT_TAB;
			if (col + tw > maxw)
				tw = maxw - col;
			wattrset(w, (attr_t)attr);
			for (int k = 0; k < tw; k++)
				waddch(w, ' ');
			col += tw;
		} else if (c.kind == TC_ZERO) {
			/* nothing to draw */
		} else {
			if (col + c.width > maxw)
				break;
			if (c.shown[0]) {
				wattrset(w, (attr_t)(c.kind == TC_PRINT ? attr : ctrl_attr));
				waddstr(w, c.shown);
			} else if (c.len == 1) {
				wattrset(w, (attr_t)attr);
				waddch(w, (chtype)(unsigned char)s[c.off]);
			} else {
				/* a base and up to CCHARW_MAX - 1 marks */
				wchar_t wch[CCHARW_MAX + 1];
				int k = 0;
				for (size_t r = c.off; r < c.off + c.len && k < CCHARW_MAX;) {
					unsigned cp;
					size_t m = text_utf8_decode(s + r, c.off + c.len - r, &cp);
					if (m == 0)
						break;
					wch[k++] = (wchar_t)cp;
					r += m;
				}
				wch[k] = L'\0';
				cchar_t cc;
				attr_t a = (attr_t)attr;
				if (setcchar(&cc, wch, a & ~A_COLOR, (short)PAIR_NUMBER(a), NULL) == OK)
					wadd_wch(w, &cc);
			}
			col += c.width;
		}
		p = q;
	}
	wattrset(w, A_NORMAL);
	return col;
}

static void fill(WINDOW *w, int n, unsigned long attr)
{
	wattrset(w, (attr_t)attr);
	for (int i = 0; i < n; i++)
		waddch(w, ' ');
	wattrset(w, A_NORMAL);
}

static unsigned long md_attr(const unsigned long *attrs, const struct md_span *sp)
{
	unsigned long a = attrs[sp->role < ROLE_COUNT ? sp->role : ROLE_TEXT];
	if (sp->attr & MDA_BOLD)
		a |= A_BOLD;
	if (sp->attr & MDA_ITALIC)
		a |= A_ITALIC;
	if (sp->attr & MDA_UNDER)
		a |= A_UNDERLINE;
	if (sp->attr & MDA_DIM)
		a |= A_DIM;
	return a;
}

/* One line of a reply's Markdown layout: its spans side by side. */
static void draw_md_line(struct transcript *t, WINDOW *w, int row, const struct md_doc *d, const struct md_line *ln,
			 const unsigned long *attrs)
{
	const int maxw = t->width - TR_INDENT;
	int used = 0;
	wmove(w, row, TR_INDENT);
	for (uint32_t i = 0; i < ln->nsp && used < maxw; i++) {
		const struct md_span *sp = &d->sp[ln->sp + i];
		used += tr_put_text(w, d->buf + sp->off, sp->len, maxw - used, t->text_flags, md_attr(attrs, sp),
				    attrs[ROLE_CTRL]);
	}
	if (ln->flags & MDL_TRUNC) {
		wmove(w, row, t->width - 1);
		wattrset(w, (attr_t)attrs[ROLE_MARK]);
		waddch(w, '>');
		wattrset(w, A_NORMAL);
	} else if ((ln->flags & MDL_CODE) && used < maxw) {
		fill(w, maxw - used, attrs[ROLE_CODE]);
	}
}

static void draw_line(struct transcript *t, WINDOW *w, int row, const struct tr_item *it, size_t k,
		      const unsigned long *attrs)
{
	const int width = t->width;
	wmove(w, row, 0);
	if (has_header(it)) {
		if (k == 0) {
			const char *h = it->kind == TR_USER ? "You" : it->label[0] ? it->label : "Assistant";
			bool sub = it->kind == TR_REASONING || it->kind == TR_TOOLCALL; /* under its reply */
			int role = it->kind == TR_USER ? ROLE_USER_HEAD : sub ? ROLE_MARK : ROLE_BOT_HEAD;
			if (sub)
				wmove(w, row, TR_INDENT);
			tr_put_text(w, h, strlen(h), width - (sub ? TR_INDENT : 0), t->text_flags, attrs[role],
				    attrs[ROLE_CTRL]);
			return;
		}
		k--;
	}
	if (it->kind == TR_ASSISTANT && k < it->md.nln) {
		draw_md_line(t, w, row, &it->md, &it->md.ln[k], attrs);
		return;
	}
	if (it->kind != TR_ASSISTANT && k < it->lines.n) {
		const struct text_line *ln = &it->lines.v[k];
		int role = it->kind == TR_USER ? ROLE_USER : it->kind == TR_ASSISTANT ? ROLE_TEXT
			 : it->kind == TR_NOTICE || it->kind == TR_REASONING ? ROLE_NOTICE : ROLE_ERROR;
		if (((ln->flags & TL_CODE) && (it->kind == TR_USER || it->kind == TR_ASSISTANT)) ||
		    it->kind == TR_TOOLCALL)
			role = ROLE_CODE;
		if (k == 0 && (it->kind == TR_NOTICE || it->kind == TR_ERROR)) {
			wattrset(w, (attr_t)attrs[role]);
			waddstr(w, it->kind == TR_ERROR ? "! " : "- ");
			wattrset(w, A_NORMAL);
		} else {
			wmove(w, row, TR_INDENT);
		}
		int used = tr_put_text(w, it->text + ln->start, ln->end - ln->start, width - TR_INDENT, t->text_flags,
				       attrs[role], attrs[ROLE_CTRL]);
		if (ln->flags & TL_TRUNC) {
			wmove(w, row, width - 1);
			wattrset(w, (attr_t)attrs[ROLE_MARK]);
			waddch(w, '>');
			wattrset(w, A_NORMAL);
		} else if (role == ROLE_CODE && used < width - TR_INDENT) {
			/* a code block is a solid block when the theme gives it a background */
			fill(w, width - TR_INDENT - used, attrs[ROLE_CODE]);
		}
		return;
	}
	k -= body_rows(it);
	if (k == 0 && has_mark(it)) {
		const char *m = it->flags & TRF_STOPPED ? "[stopped]"
			      : it->flags & TRF_CONTEXT ? "[context full]"
			      : it->flags & TRF_LENGTH ? "[max tokens reached]"
			      : it->flags & TRF_FAILED ? "[failed]" : "[empty reply]";
		wmove(w, row, TR_INDENT);
		wattrset(w, (attr_t)attrs[ROLE_MARK]);
		waddstr(w, m);
		wattrset(w, A_NORMAL);
	}
}

void tr_draw(struct transcript *t, WINDOW *w, const unsigned long *attrs)
{
	werase(w);
	const size_t h = (size_t)t->height;
	size_t top = t->top == SIZE_MAX ? 0 : t->top;
	size_t base = 0, row = 0;
	for (size_t i = 0; i < t->n && row < h; i++) {
		const struct tr_item *it = &t->v[i];
		size_t rows = item_rows(it);
		if (base + rows <= top) {
			base += rows;
			continue;
		}
		for (size_t k = top > base ? top - base : 0; k < rows && row < h; k++, row++)
			draw_line(t, w, (int)row, it, k, attrs);
		base += rows;
	}
	if (t->unseen && !t->follow) {
		static const char msg[] = " new output below: End ";
		int len = (int)sizeof msg - 1;
		if (len > t->width)
			len = t->width;
		wmove(w, t->height - 1, t->width - len);
		wattrset(w, (attr_t)attrs[ROLE_NEW_BELOW]);
		waddnstr(w, msg, len);
		wattrset(w, A_NORMAL);
	}
}

int tr_messages(const struct transcript *t, size_t upto, const char *system, struct tr_msgs *out)
{
	size_t cap = upto + 2;
	*out = (struct tr_msgs){.v = calloc(cap, sizeof *out->v), .merged = calloc(cap, sizeof *out->merged)};
	if (!out->v || !out->merged) {
		tr_msgs_free(out);
		return -1;
	}
	struct engine_msg *m = out->v;
	size_t n = 0;
	if (system && system[0])
		m[n++] = (struct engine_msg){"system", system};
	for (size_t i = 0; i < upto && i < t->n; i++) {
		const struct tr_item *it = &t->v[i];
		if ((it->kind != TR_USER && it->kind != TR_ASSISTANT) || it->len == 0)
			continue;
		const char *role = it->kind == TR_USER ? "user" : "assistant";
		if (n > 0 && strcmp(m[n - 1].role, role) == 0) {
			size_t l1 = strlen(m[n - 1].content);
			char *j = malloc(l1 + 2 + it->len + 1);
			if (!j)
				continue;
			memcpy(j, m[n - 1].content, l1);
			memcpy(j + l1, "\n\n", 2);
			memcpy(j + l1 + 2, it->text, it->len + 1);
			out->merged[out->n_merged++] = j;
			m[n - 1].content = j;
			continue;
		}
		m[n++] = (struct engine_msg){role, it->text};
	}
	out->n = n;
	return 0;
}

void tr_msgs_free(struct tr_msgs *m)
{
	for (size_t i = 0; m->merged && i < m->n_merged; i++)
		free(m->merged[i]);
	free(m->merged);
	free(m->v);
	*m = (struct tr_msgs){0};
}

size_t tr_count_msgs(const struct transcript *t, size_t upto)
{
	size_t n = 0;
	for (size_t i = 0; i < upto && i < t->n; i++)
		n += (t->v[i].kind == TR_USER || t->v[i].kind == TR_ASSISTANT) && t->v[i].len > 0;
	return n;
}
