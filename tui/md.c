/*
 * md.c - Markdown to styled display lines (see md.h).
 *
 * md4c calls back for each block, span and run of text.  Inline content is
 * gathered into a "leaf" (the text of one paragraph, heading, code block
 * or table cell, plus runs saying where the style changes); when the leaf
 * ends it is wrapped with text_wrap() at the width left by the prefix of
 * its containers (quote bars, list markers) and written out as lines of
 * spans.  Containers are a small stack; a list item shows its marker on
 * its first line only.  Tables keep every cell until the table ends, then
 * size their columns: natural widths when they fit, else a fair share
 * (narrow columns keep their width, wide ones split what is left) and
 * cells wrap inside their column.
 *
 * Failures to allocate set a flag checked once at the end of a chunk.
 */
#include "config.h"

#include "md.h"

#include <md4c.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lex.h"
#include "text.h"
#include "theme.h"

#define MD_DEPTH 32

struct run {
	uint32_t off;
	uint8_t role, attr;
};

struct leaf {
	char *t;
	size_t n, cap;
	struct run *r;
	size_t nr, cr;
};

enum leaf_kind { L_NONE, L_PARA, L_HEAD, L_CODE, L_RAW, L_CELL };
enum box_kind { B_QUOTE, B_UL, B_OL, B_LI };

struct box {
	enum box_kind kind;
	unsigned num;        /* OL: the next item's number */
	char mark;           /* UL: '-', '*', '+'; OL: '.' or ')' */
	bool first;          /* LI: its marker is still to be shown */
	char bullet[24];     /* LI: "• ", "12. " */
};

struct cell {
	struct leaf l;
	unsigned row, col;
	int align;
};

struct ctx {
	struct md_doc *d;
	int width;
	unsigned flags, tflags;
	bool oom, gap, any;
	struct box box[MD_DEPTH];
	int depth, skipped;  /* boxes past MD_DEPTH are counted, not kept */
	enum leaf_kind kind;
	unsigned hlevel;
	char lang[32];
	struct leaf leaf;
	int em, strong, del, under, code, link;
	size_t link_from;
	char href[512];
	/* the table being read */
	struct cell *cells;
	size_t ncells, ccells;
	unsigned ncols, row, col;
	bool in_table;
	int align;
};

/* ---- output ------------------------------------------------------------ */

static void *grow(struct ctx *c, void *v, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return v;
	size_t nc = *cap ? *cap : 16;
	while (nc < need)
		nc *= 2;
	if (nc > UINT32_MAX / size) {
		c->oom = true;
		return NULL;
	}
	void *nv = realloc(v, nc * size);
	if (!nv) {
		c->oom = true;
		return NULL;
	}
	*cap = nc;
	return nv;
}

static void out_line(struct ctx *c, unsigned flags)
{
	struct md_doc *d = c->d;
	struct md_line *nl = grow(c, d->ln, &d->cln, d->nln + 1, sizeof *nl);
	if (!nl)
		return;
	d->ln = nl;
	d->ln[d->nln++] = (struct md_line){.sp = (uint32_t)d->nsp, .nsp = 0, .flags = (uint8_t)flags};
	c->any = true;
}

static void out_span(struct ctx *c, const char *s, size_t n, int role, int attr)
{
	struct md_doc *d = c->d;
	if (n == 0 || d->nln == 0)
		return;
	char *nb = grow(c, d->buf, &d->bcap, d->blen + n, 1);
	if (!nb)
		return;
	d->buf = nb;
	struct md_span *ns = grow(c, d->sp, &d->csp, d->nsp + 1, sizeof *ns);
	if (!ns)
		return;
	d->sp = ns;
	memcpy(d->buf + d->blen, s, n);
	d->sp[d->nsp++] = (struct md_span){(uint32_t)d->blen, (uint32_t)n, (uint8_t)role, (uint8_t)attr};
	d->blen += n;
	d->ln[d->nln - 1].nsp++;
}

static void out_spaces(struct ctx *c, int n, int role)
{
	static const char sp[] = "                                ";
	while (n > 0) {
		int k = n < 32 ? n : 32;
		out_span(c, sp, (size_t)k, role, 0);
		n -= k;
	}
}

/* ---- containers -------------------------------------------------------- */

static const char *quote_bar(const struct ctx *c)
{
	return c->flags & (MD_ASCII | MD_PLAIN) ? "> " : "\xe2\x94\x82 ";
}

static int prefix_width(const struct ctx *c)
{
	int w = 0;
	for (int i = 0; i < c->depth; i++)
		if (c->box[i].kind == B_QUOTE)
			w += 2;
		else if (c->box[i].kind == B_LI)
			w += text_width(c->box[i].bullet, strlen(c->box[i].bullet), 0);
	return w;
}

/* Opens a line and writes the containers' prefix; BLANK: quote bars only. */
static void open_line(struct ctx *c, unsigned flags, bool blank)
{
	out_line(c, flags);
	for (int i = 0; i < c->depth; i++) {
		struct box *b = &c->box[i];
		if (b->kind == B_QUOTE) {
			out_span(c, quote_bar(c), strlen(quote_bar(c)), ROLE_MD_MARK, 0);
		} else if (b->kind == B_LI && !blank) {
			int w = text_width(b->bullet, strlen(b->bullet), 0);
			if (b->first)
				out_span(c, b->bullet, strlen(b->bullet), ROLE_MD_MARK, 0);
			else
				out_spaces(c, w, ROLE_TEXT);
			b->first = false;
		}
	}
}

/* A blank line between blocks, when one ended before and this is not the
 * first thing in the chunk. */
static void before_block(struct ctx *c)
{
	if (c->gap && c->any)
		open_line(c, 0, true);
	c->gap = false;
}

static int avail(const struct ctx *c)
{
	int w = c->width - prefix_width(c);
	return w > 1 ? w : 1;
}

/* ---- leaves ------------------------------------------------------------ */

static void leaf_put(struct ctx *c, const char *s, size_t n, int role, int attr)
{
	struct leaf *l = &c->leaf;
	if (n == 0)
		return;
	if (l->nr == 0 || l->r[l->nr - 1].role != role || l->r[l->nr - 1].attr != attr) {
		struct run *nr = grow(c, l->r, &l->cr, l->nr + 1, sizeof *nr);
		if (!nr)
			return;
		l->r = nr;
		l->r[l->nr++] = (struct run){(uint32_t)l->n, (uint8_t)role, (uint8_t)attr};
	}
	char *nt = grow(c, l->t, &l->cap, l->n + n * TEXT_TAB + 1, 1);
	if (!nt)
		return;
	l->t = nt;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\t') {
			l->t[l->n++] = s[i];
			continue;
		}
		/* tabs become spaces here: spans are drawn one by one, so a tab
		 * could not know its column */
		size_t col = 0;
		while (col < l->n && l->t[l->n - 1 - col] != '\n')
			col++;
		size_t k = c->kind == L_CODE || c->kind == L_RAW ? TEXT_TAB - col % TEXT_TAB : 1;
		while (k--)
			l->t[l->n++] = ' ';
	}
}

static int cur_role(const struct ctx *c)
{
	return c->code || c->kind == L_CODE ? ROLE_CODE : c->kind == L_HEAD ? ROLE_HEADING : ROLE_TEXT;
}

static int cur_attr(const struct ctx *c)
{
	int a = (c->strong ? MDA_BOLD : 0) | (c->em ? MDA_ITALIC : 0) | (c->under || c->link ? MDA_UNDER : 0) |
		(c->del ? MDA_DIM : 0);
	if (c->kind == L_HEAD)
		a |= MDA_BOLD | (c->hlevel <= 1 ? MDA_UNDER : 0);
	return a;
}

static void put_text(struct ctx *c, const char *s, size_t n)
{
	if (c->kind == L_NONE)
		c->kind = L_PARA; /* the text of a tight list item */
	leaf_put(c, s, n, cur_role(c), cur_attr(c));
}

/* Writes the leaf's text [from, to) as spans, by its runs; *R is the run
 * index to start looking from (lines come in order). */
static void out_runs(struct ctx *c, const struct leaf *l, size_t from, size_t to, size_t *r)
{
	while (*r + 1 < l->nr && l->r[*r + 1].off <= from)
		(*r)++;
	for (size_t p = from, k = *r; p < to && k < l->nr; k++) {
		size_t e = k + 1 < l->nr ? l->r[k + 1].off : l->n;
		if (e > to)
			e = to;
		if (e > p)
			out_span(c, l->t + p, e - p, l->r[k].role, l->r[k].attr);
		p = e > p ? e : p;
	}
}

/* The end of the cut of line S[0..N) to WIDTH - 1 columns, or N when the
 * line fits in WIDTH. */
static size_t cut_at(const char *s, size_t n, int width, unsigned tflags)
{
	if (text_width(s, n, tflags) <= width)
		return n;
	int col = 0;
	struct text_cluster k;
	for (size_t p = 0;;) {
		size_t q = text_cluster_next(s, n, p, tflags, &k);
		if (k.kind == TC_END || col + k.width > width - 1)
			return p;
		col += k.width;
		p = q;
	}
}

static void wrap_leaf(struct ctx *c, const struct leaf *l, unsigned lflags)
{
	const int w = avail(c);
	size_t r = 0;
	if ((lflags & MDL_CODE) && (c->flags & MD_NOWRAP)) {
		for (size_t p = 0; p <= l->n;) {
			const char *nl = p < l->n ? memchr(l->t + p, '\n', l->n - p) : NULL;
			size_t e = nl ? (size_t)(nl - l->t) : l->n;
			size_t cut = cut_at(l->t + p, e - p, w, c->tflags);
			open_line(c, lflags | (p + cut < e ? MDL_TRUNC : 0), false);
			out_runs(c, l, p, p + cut, &r);
			if (!nl)
				break;
			p = e + 1;
		}
		return;
	}
	struct text_lines tl = {0};
	if (text_wrap(l->t ? l->t : "", l->n, NULL, w, c->tflags, &tl) != 0) {
		c->oom = true;
		return;
	}
	for (size_t i = 0; i < tl.n; i++) {
		open_line(c, lflags, false);
		out_runs(c, l, tl.v[i].start, tl.v[i].end, &r);
	}
	text_lines_free(&tl);
}

static const int lex_role[] = {
	[LEX_PLAIN] = ROLE_CODE,        [LEX_KEYWORD] = ROLE_CODE_KW,  [LEX_STRING] = ROLE_CODE_STR,
	[LEX_COMMENT] = ROLE_CODE_COMMENT, [LEX_NUMBER] = ROLE_CODE_NUM, [LEX_ADD] = ROLE_DIFF_ADD,
	[LEX_DEL] = ROLE_DIFF_DEL,
};

/* Replaces the code leaf's runs by the lexer's classes. */
static void classify_code(struct ctx *c)
{
	struct leaf *l = &c->leaf;
	const struct lex_lang *lang = c->flags & MD_PLAIN ? NULL : lex_find(c->lang, strlen(c->lang));
	if (!lang || l->n == 0)
		return;
	unsigned char *cls = malloc(l->n);
	if (!cls) {
		c->oom = true;
		return;
	}
	lex_classify(lang, l->t, l->n, cls);
	l->nr = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (i > 0 && cls[i] == cls[i - 1])
			continue;
		struct run *nr = grow(c, l->r, &l->cr, l->nr + 1, sizeof *nr);
		if (!nr)
			break;
		l->r = nr;
		l->r[l->nr++] = (struct run){(uint32_t)i, (uint8_t)lex_role[cls[i]], 0};
	}
	free(cls);
}

static void flush_code(struct ctx *c)
{
	struct leaf *l = &c->leaf;
	if (l->n && l->t[l->n - 1] == '\n')
		l->n--;
	const bool plain = c->flags & MD_PLAIN;
	if (plain || c->lang[0]) {
		open_line(c, MDL_CODE, false);
		if (plain)
			out_span(c, "```", 3, ROLE_CODE, 0);
		out_span(c, c->lang, strlen(c->lang), ROLE_CODE, plain ? 0 : MDA_BOLD);
	}
	if (l->nr == 0)
		leaf_put(c, "", 0, ROLE_CODE, 0);
	classify_code(c);
	if (l->n || !plain)
		wrap_leaf(c, l, MDL_CODE);
	if (plain) {
		open_line(c, MDL_CODE, false);
		out_span(c, "```", 3, ROLE_CODE, 0);
	}
}

static void flush_leaf(struct ctx *c)
{
	if (c->kind == L_NONE || c->kind == L_CELL)
		return;
	if (c->kind == L_CODE || c->leaf.n > 0) {
		before_block(c);
		if (c->kind == L_CODE)
			flush_code(c);
		else
			wrap_leaf(c, &c->leaf, 0);
	}
	c->leaf.n = c->leaf.nr = 0;
	c->kind = L_NONE;
}

/* ---- tables ------------------------------------------------------------ */

/* Column widths for ROOM columns of text: natural widths when they fit,
 * else columns narrower than a fair share keep theirs and the others split
 * what is left. */
static void fit_columns(const int *natural, int *w, unsigned n, int room)
{
	int total = 0;
	for (unsigned i = 0; i < n; i++)
		total += w[i] = natural[i];
	if (total <= room)
		return;
	bool fixed[64] = {0};
	int left = (int)n, rest = room;
	for (bool changed = true; changed && left > 0;) {
		changed = false;
		int share = rest / left;
		for (unsigned i = 0; i < n; i++)
			if (!fixed[i] && natural[i] <= share) {
				fixed[i] = changed = true;
				rest -= natural[i];
				left--;
			}
	}
	for (unsigned i = 0, k = 0; i < n; i++)
		if (!fixed[i]) {
			w[i] = rest / left + ((int)k < rest % left ? 1 : 0);
			if (w[i] < 1)
				w[i] = 1;
			k++;
		}
}

static void out_rule(struct ctx *c, const int *w, unsigned n)
{
	const bool ascii = c->flags & (MD_ASCII | MD_PLAIN);
	const char *h = ascii ? "-" : "\xe2\x94\x80", *x = ascii ? "-+-" : "\xe2\x94\x80\xe2\x94\xbc\xe2\x94\x80";
	open_line(c, 0, false);
	for (unsigned i = 0; i < n; i++) {
		for (int k = 0; k < w[i]; k++)
			out_span(c, h, strlen(h), ROLE_MD_MARK, 0);
		if (i + 1 < n)
			out_span(c, x, strlen(x), ROLE_MD_MARK, 0);
	}
}

/* One table row: its cells wrapped in their columns, side by side. */
static void out_row(struct ctx *c, struct cell **row, const int *w, unsigned n)
{
	struct text_lines tl[64] = {{0}};
	size_t h = 1, r[64] = {0};
	for (unsigned i = 0; i < n; i++) {
		if (row[i] && text_wrap(row[i]->l.t ? row[i]->l.t : "", row[i]->l.n, NULL, w[i], c->tflags, &tl[i]))
			c->oom = true;
		if (tl[i].n > h)
			h = tl[i].n;
	}
	const char *bar = c->flags & (MD_ASCII | MD_PLAIN) ? " | " : " \xe2\x94\x82 ";
	for (size_t k = 0; k < h && !c->oom; k++) {
		open_line(c, 0, false);
		for (unsigned i = 0; i < n; i++) {
			const struct text_line *ln = row[i] && k < tl[i].n ? &tl[i].v[k] : NULL;
			int pad = w[i] - (ln ? ln->width : 0), lpad = 0;
			if (ln && row[i]->align == MD_ALIGN_RIGHT)
				lpad = pad;
			else if (ln && row[i]->align == MD_ALIGN_CENTER)
				lpad = pad / 2;
			out_spaces(c, lpad, ROLE_TEXT);
			if (ln)
				out_runs(c, &row[i]->l, ln->start, ln->end, &r[i]);
			if (i + 1 < n) {
				out_spaces(c, pad - lpad, ROLE_TEXT);
				out_span(c, bar, strlen(bar), ROLE_MD_MARK, 0);
			}
		}
	}
	for (unsigned i = 0; i < n; i++)
		text_lines_free(&tl[i]);
}

static void flush_table(struct ctx *c)
{
	unsigned n = c->ncols > 64 ? 64 : c->ncols;
	int natural[64] = {0}, w[64];
	unsigned rows = 0;
	for (size_t i = 0; i < c->ncells; i++) {
		struct cell *k = &c->cells[i];
		if (k->col < n) {
			int tw = text_width(k->l.t ? k->l.t : "", k->l.n, c->tflags);
			natural[k->col] = tw > natural[k->col] ? tw : natural[k->col];
		}
		rows = k->row + 1 > rows ? k->row + 1 : rows;
	}
	if (n == 0)
		return;
	fit_columns(natural, w, n, avail(c) - 3 * ((int)n - 1));
	before_block(c);
	for (unsigned r = 0; r < rows; r++) {
		struct cell *row[64] = {0};
		for (size_t i = 0; i < c->ncells; i++)
			if (c->cells[i].row == r && c->cells[i].col < n)
				row[c->cells[i].col] = &c->cells[i];
		out_row(c, row, w, n);
		if (r == 0)
			out_rule(c, w, n);
	}
}

static void free_cells(struct ctx *c)
{
	for (size_t i = 0; i < c->ncells; i++) {
		free(c->cells[i].l.t);
		free(c->cells[i].l.r);
	}
	c->ncells = 0;
}

static void end_cell(struct ctx *c, bool head)
{
	if (head) /* header cells are bold throughout */
		for (size_t i = 0; i < c->leaf.nr; i++)
			c->leaf.r[i].attr |= MDA_BOLD;
	struct cell *nc = grow(c, c->cells, &c->ccells, c->ncells + 1, sizeof *nc);
	if (nc) {
		c->cells = nc;
		c->cells[c->ncells++] = (struct cell){c->leaf, c->row, c->col, c->align};
		c->leaf = (struct leaf){0};
	}
	c->leaf.n = c->leaf.nr = 0;
	c->kind = L_NONE;
	c->col++;
}

/* ---- md4c callbacks ----------------------------------------------------- */

static void push_box(struct ctx *c, struct box b)
{
	if (c->depth < MD_DEPTH)
		c->box[c->depth++] = b;
	else
		c->skipped++;
}

static void pop_box(struct ctx *c)
{
	if (c->skipped)
		c->skipped--;
	else if (c->depth > 0)
		c->depth--;
}

static void start_item(struct ctx *c, const MD_BLOCK_LI_DETAIL *li)
{
	struct box b = {.kind = B_LI, .first = true};
	struct box *list = c->depth > 0 && !c->skipped ? &c->box[c->depth - 1] : NULL;
	int level = 0;
	for (int i = 0; i < c->depth; i++)
		level += c->box[i].kind == B_UL || c->box[i].kind == B_OL;
	if (list && list->kind == B_OL) {
		snprintf(b.bullet, sizeof b.bullet, "%u%c ", list->num++, list->mark);
	} else if (c->flags & (MD_PLAIN | MD_ASCII)) {
		snprintf(b.bullet, sizeof b.bullet, "%c ", list ? list->mark : '-');
	} else {
		static const char *const dots[] = {"\xe2\x80\xa2 ", "\xe2\x97\xa6 ", "\xe2\x96\xaa "};
		snprintf(b.bullet, sizeof b.bullet, "%s", dots[(level > 0 ? level - 1 : 0) % 3]);
	}
	if (li->is_task) {
		size_t k = strlen(b.bullet);
		snprintf(b.bullet + k, sizeof b.bullet - k, "[%c] ", li->task_mark == ' ' ? ' ' : 'x');
	}
	push_box(c, b);
}

static bool in_item(const struct ctx *c)
{
	for (int i = 0; i < c->depth; i++)
		if (c->box[i].kind == B_LI)
			return true;
	return false;
}

static int on_enter_block(MD_BLOCKTYPE type, void *detail, void *u)
{
	struct ctx *c = u;
	if (type != MD_BLOCK_TH && type != MD_BLOCK_TD && type != MD_BLOCK_TR)
		flush_leaf(c);
	switch (type) {
	case MD_BLOCK_QUOTE: push_box(c, (struct box){.kind = B_QUOTE}); break;
	case MD_BLOCK_UL:
		push_box(c, (struct box){.kind = B_UL, .mark = ((MD_BLOCK_UL_DETAIL *)detail)->mark});
		break;
	case MD_BLOCK_OL: {
		const MD_BLOCK_OL_DETAIL *ol = detail;
		push_box(c, (struct box){.kind = B_OL, .num = ol->start, .mark = ol->mark_delimiter});
		break;
	}
	case MD_BLOCK_LI: start_item(c, detail); break;
	case MD_BLOCK_HR: {
		before_block(c);
		open_line(c, 0, false);
		const char *h = c->flags & (MD_ASCII | MD_PLAIN) ? "-" : "\xe2\x94\x80";
		for (int k = avail(c); k > 0; k--)
			out_span(c, h, strlen(h), ROLE_MD_MARK, 0);
		c->gap = true;
		break;
	}
	case MD_BLOCK_H:
		c->kind = L_HEAD;
		c->hlevel = ((MD_BLOCK_H_DETAIL *)detail)->level;
		if (c->flags & MD_PLAIN)
			leaf_put(c, "###### " + 6 - (c->hlevel < 6 ? c->hlevel : 6), (c->hlevel < 6 ? c->hlevel : 6) + 1,
				 ROLE_HEADING, cur_attr(c));
		break;
	case MD_BLOCK_CODE: {
		const MD_ATTRIBUTE *lang = &((MD_BLOCK_CODE_DETAIL *)detail)->lang;
		size_t n = lang->size < sizeof c->lang - 1 ? lang->size : sizeof c->lang - 1;
		memcpy(c->lang, lang->text ? lang->text : "", n);
		c->lang[n] = '\0';
		c->kind = L_CODE;
		break;
	}
	case MD_BLOCK_HTML: c->kind = L_RAW; break;
	case MD_BLOCK_P: c->kind = L_PARA; break;
	case MD_BLOCK_TABLE:
		c->in_table = true;
		c->ncols = ((MD_BLOCK_TABLE_DETAIL *)detail)->col_count;
		c->row = 0;
		free_cells(c);
		break;
	case MD_BLOCK_TR: c->col = 0; break;
	case MD_BLOCK_TH:
	case MD_BLOCK_TD:
		c->kind = L_CELL;
		c->leaf.n = c->leaf.nr = 0;
		c->align = ((MD_BLOCK_TD_DETAIL *)detail)->align;
		break;
	default: break;
	}
	return 0;
}

static int on_leave_block(MD_BLOCKTYPE type, void *detail, void *u)
{
	struct ctx *c = u;
	(void)detail;
	switch (type) {
	case MD_BLOCK_TH:
	case MD_BLOCK_TD: end_cell(c, type == MD_BLOCK_TH); return 0;
	case MD_BLOCK_TR: c->row++; return 0;
	case MD_BLOCK_TABLE:
		flush_table(c);
		free_cells(c);
		c->in_table = false;
		c->gap = true;
		return 0;
	default: break;
	}
	flush_leaf(c);
	switch (type) {
	case MD_BLOCK_QUOTE: pop_box(c); c->gap = true; break;
	case MD_BLOCK_UL:
	case MD_BLOCK_OL:
		pop_box(c);
		if (!in_item(c))
			c->gap = true;
		break;
	case MD_BLOCK_LI: pop_box(c); break;
	case MD_BLOCK_H:
	case MD_BLOCK_P:
	case MD_BLOCK_CODE:
	case MD_BLOCK_HTML: c->gap = true; break;
	default: break;
	}
	return 0;
}

/* The markers MD_PLAIN keeps around a span. */
static const char *plain_marker(MD_SPANTYPE type)
{
	switch (type) {
	case MD_SPAN_EM: return "*";
	case MD_SPAN_STRONG: return "**";
	case MD_SPAN_DEL: return "~~";
	case MD_SPAN_CODE: return "`";
	default: return NULL;
	}
}

static int on_enter_span(MD_SPANTYPE type, void *detail, void *u)
{
	struct ctx *c = u;
	const char *m = c->flags & MD_PLAIN ? plain_marker(type) : NULL;
	if (m)
		put_text(c, m, strlen(m));
	switch (type) {
	case MD_SPAN_EM: c->em++; break;
	case MD_SPAN_STRONG: c->strong++; break;
	case MD_SPAN_DEL: c->del++; break;
	case MD_SPAN_U: c->under++; break;
	case MD_SPAN_CODE: c->code++; break;
	case MD_SPAN_A:
	case MD_SPAN_IMG: {
		const MD_ATTRIBUTE *h = type == MD_SPAN_A ? &((MD_SPAN_A_DETAIL *)detail)->href
							  : &((MD_SPAN_IMG_DETAIL *)detail)->src;
		size_t n = h->size < sizeof c->href - 1 ? h->size : sizeof c->href - 1;
		memcpy(c->href, h->text ? h->text : "", n);
		c->href[n] = '\0';
		if (type == MD_SPAN_IMG)
			put_text(c, "[image: ", 8);
		c->link++;
		c->link_from = c->leaf.n;
		break;
	}
	default: break;
	}
	return 0;
}

static int on_leave_span(MD_SPANTYPE type, void *detail, void *u)
{
	struct ctx *c = u;
	(void)detail;
	switch (type) {
	case MD_SPAN_EM: c->em--; break;
	case MD_SPAN_STRONG: c->strong--; break;
	case MD_SPAN_DEL: c->del--; break;
	case MD_SPAN_U: c->under--; break;
	case MD_SPAN_CODE: c->code--; break;
	case MD_SPAN_A:
	case MD_SPAN_IMG: {
		c->link--;
		if (type == MD_SPAN_IMG)
			put_text(c, "]", 1);
		size_t hl = strlen(c->href), tl = c->leaf.n - c->link_from;
		/* an autolink already shows its URL */
		if (hl && !(type == MD_SPAN_A && tl == hl && memcmp(c->leaf.t + c->link_from, c->href, hl) == 0)) {
			leaf_put(c, " <", 2, ROLE_LINK, 0);
			leaf_put(c, c->href, hl, ROLE_LINK, 0);
			leaf_put(c, ">", 1, ROLE_LINK, 0);
		}
		break;
	}
	default: break;
	}
	const char *m = c->flags & MD_PLAIN ? plain_marker(type) : NULL;
	if (m)
		put_text(c, m, strlen(m));
	return 0;
}

/* &amp; and friends, and numeric references, as UTF-8; others as written. */
static void put_entity(struct ctx *c, const char *s, size_t n)
{
	static const struct {
		const char *name, *utf8;
	} named[] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"},
		     {"&nbsp;", " "}, {"&copy;", "\xc2\xa9"}, {"&mdash;", "\xe2\x80\x94"}};
	for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
		if (strlen(named[i].name) == n && memcmp(named[i].name, s, n) == 0) {
			put_text(c, named[i].utf8, strlen(named[i].utf8));
			return;
		}
	unsigned long cp = 0;
	if (n > 3 && s[1] == '#') {
		char tmp[16];
		size_t k = n - 3 < sizeof tmp - 1 ? n - 3 : sizeof tmp - 1;
		bool hex = s[2] == 'x' || s[2] == 'X';
		memcpy(tmp, s + (hex ? 3 : 2), hex ? k - 1 : k);
		tmp[hex ? k - 1 : k] = '\0';
		cp = strtoul(tmp, NULL, hex ? 16 : 10);
	}
	char u[4];
	size_t k = 0;
	if (cp >= 0x20 && cp < 0x80) {
		u[k++] = (char)cp;
	} else if (cp >= 0xa0 && cp < 0x800) {
		u[k++] = (char)(0xc0 | (cp >> 6));
		u[k++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp >= 0x800 && cp < 0x10000 && !(cp >= 0xd800 && cp <= 0xdfff)) {
		u[k++] = (char)(0xe0 | (cp >> 12));
		u[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[k++] = (char)(0x80 | (cp & 0x3f));
	}
	/* controls and the rest stay as written: text.c shows them safely */
	if (k)
		put_text(c, u, k);
	else
		put_text(c, s, n);
}

static int on_text(MD_TEXTTYPE type, const MD_CHAR *s, MD_SIZE n, void *u)
{
	struct ctx *c = u;
	switch (type) {
	case MD_TEXT_NULLCHAR: put_text(c, "\xef\xbf\xbd", 3); break;
	case MD_TEXT_BR: put_text(c, "\n", 1); break;
	/* a reply's single newlines are the model's line breaks (verse,
	 * addresses, short lines): kept, as chat front ends do */
	case MD_TEXT_SOFTBR: put_text(c, c->kind == L_CELL ? " " : "\n", 1); break;
	case MD_TEXT_ENTITY: put_entity(c, s, n); break;
	default: put_text(c, s, n); break;
	}
	return 0;
}

/* ---- documents ---------------------------------------------------------- */

/* GitHub's dialect without its permissive autolinks: md4c 0.4.8 (Debian
 * 12) reads out of bounds on a bare URL cut by the end of the text, which
 * is what a streaming reply looks like between two tokens. */
static const unsigned md_parser_flags =
	MD_FLAG_TABLES | MD_FLAG_STRIKETHROUGH | MD_FLAG_TASKLISTS | MD_FLAG_NOINDENTEDCODEBLOCKS;

/* Lays out one chunk, S[0..N), after what the doc holds. */
static void render_chunk(struct md_doc *d, const char *s, size_t n, bool first)
{
	struct ctx c = {.d = d, .width = d->width, .flags = d->flags};
	c.tflags = d->flags & MD_ASCII ? TEXT_ASCII : 0;
	if (!first)
		out_line(&c, 0); /* the blank line that separated the chunks */
	MD_PARSER p = {
		.abi_version = 0,
		.flags = md_parser_flags,
		.enter_block = on_enter_block,
		.leave_block = on_leave_block,
		.enter_span = on_enter_span,
		.leave_span = on_leave_span,
		.text = on_text,
	};
	const size_t b0 = d->blen, s0 = d->nsp, l0 = d->nln;
	/* md4c 0.4.8 (Debian 12) reads past its buffers on a link destination
	 * cut by the end of the input ("[a](h"), which is what a reply looks
	 * like between two tokens: it always gets a text ending in a newline */
	char *copy = NULL;
	if (n > 0 && s[n - 1] != '\n' && n < UINT32_MAX - 1 && (copy = malloc(n + 1)) != NULL) {
		memcpy(copy, s, n);
		copy[n++] = '\n';
		s = copy;
	}
	if (n > 0 && (!copy && s[n - 1] != '\n')) {
		c.oom = true;
	} else if (n > 0 && (md_parse(s, (MD_SIZE)n, &p, &c) != 0 || c.oom)) {
		/* md4c gave up on this text, or called back with sizes we could
		 * not hold (md4c 0.4.8 over-reads on some cut links): show the
		 * chunk as it came */
		c.oom = false;
		free_cells(&c);
		c.in_table = false;
		d->blen = b0;
		d->nsp = s0;
		d->nln = l0;
		c.depth = c.skipped = 0;
		c.kind = L_PARA;
		c.leaf.n = c.leaf.nr = 0;
		leaf_put(&c, s, n, ROLE_TEXT, 0);
	}
	flush_leaf(&c);
	free(copy);
	free_cells(&c);
	free(c.cells);
	free(c.leaf.t);
	free(c.leaf.r);
	if (c.oom)
		d->blen = d->nsp = d->nln = SIZE_MAX; /* checked by the caller */
}

static void doc_reset(struct md_doc *d)
{
	d->blen = d->nsp = d->nln = 0;
	d->len = d->chunk = d->scan = 0;
	d->mark_b = d->mark_s = d->mark_l = 0;
	d->fence = d->prev_blank = 0;
}

/* Redoes the last chunk, S[d->chunk, END).  0 or -1. */
static int redo_last(struct md_doc *d, const char *s, size_t end)
{
	d->blen = d->mark_b;
	d->nsp = d->mark_s;
	d->nln = d->mark_l;
	render_chunk(d, s + d->chunk, end - d->chunk, d->chunk == 0);
	if (d->nln == SIZE_MAX) {
		doc_reset(d);
		return -1;
	}
	return 0;
}

/* Reads the line at S[P..E) into the scanner: blank, or a fence. */
static void scan_line(struct md_doc *d, const char *s, size_t p, size_t e)
{
	size_t i = p;
	while (i < e && (s[i] == ' ' || s[i] == '\t'))
		i++;
	d->prev_blank = i >= e || s[i] == '\n' || s[i] == '\r';
	if (e - i >= 3 && (s[i] == '`' || s[i] == '~') && s[i + 1] == s[i] && s[i + 2] == s[i]) {
		int kind = s[i] == '`' ? 1 : 2;
		if (!d->fence)
			d->fence = kind;
		else if (d->fence == kind)
			d->fence = 0;
	}
}

int md_doc_update(struct md_doc *d, const char *s, size_t len, int width, unsigned flags)
{
	if (width != d->width || flags != d->flags || len < d->len)
		doc_reset(d);
	d->width = width;
	d->flags = flags;
	for (;;) {
		const size_t p = d->scan;
		if (p >= len)
			break;
		if (!d->fence && d->prev_blank && p > d->chunk && s[p] != ' ' && s[p] != '\t' && s[p] != '\n' &&
		    s[p] != '\r') {
			/* the chunk before is finished: its lines stay from now on */
			if (redo_last(d, s, p) != 0)
				return -1;
			d->mark_b = d->blen;
			d->mark_s = d->nsp;
			d->mark_l = d->nln;
			d->chunk = p;
		}
		const char *nl = memchr(s + p, '\n', len - p);
		if (!nl)
			break;
		scan_line(d, s, p, (size_t)(nl - s));
		d->scan = (size_t)(nl - s) + 1;
	}
	d->len = len;
	return redo_last(d, s, len);
}

void md_doc_free(struct md_doc *d)
{
	free(d->buf);
	free(d->sp);
	free(d->ln);
	memset(d, 0, sizeof *d);
}

/* ---- the last code block ------------------------------------------------- */

struct code_grab {
	char *t;
	size_t n, cap;
	bool in, oom;
	char *last;
	size_t last_n;
};

static int grab_enter(MD_BLOCKTYPE type, void *detail, void *u)
{
	struct code_grab *g = u;
	(void)detail;
	if (type == MD_BLOCK_CODE) {
		g->in = true;
		g->n = 0;
	}
	return 0;
}

static int grab_leave(MD_BLOCKTYPE type, void *detail, void *u)
{
	struct code_grab *g = u;
	(void)detail;
	if (type == MD_BLOCK_CODE && g->in && !g->oom) {
		g->in = false;
		char *t = malloc(g->n + 1);
		if (!t) {
			g->oom = true;
			return 0;
		}
		memcpy(t, g->t ? g->t : "", g->n);
		t[g->n] = '\0';
		free(g->last);
		g->last = t;
		g->last_n = g->n;
	}
	return 0;
}

static int grab_span(MD_SPANTYPE type, void *detail, void *u)
{
	(void)type;
	(void)detail;
	(void)u;
	return 0;
}

static int grab_text(MD_TEXTTYPE type, const MD_CHAR *s, MD_SIZE n, void *u)
{
	struct code_grab *g = u;
	(void)type;
	if (!g->in || g->oom)
		return 0;
	if (g->n + n + 1 > g->cap) {
		size_t nc = (g->n + n + 1) * 2;
		char *nt = realloc(g->t, nc);
		if (!nt) {
			g->oom = true;
			return 0;
		}
		g->t = nt;
		g->cap = nc;
	}
	memcpy(g->t + g->n, s, n);
	g->n += n;
	return 0;
}

char *md_last_code(const char *s, size_t len, size_t *outlen)
{
	struct code_grab g = {0};
	MD_PARSER p = {
		.flags = md_parser_flags,
		.enter_block = grab_enter,
		.leave_block = grab_leave,
		.enter_span = grab_span,
		.leave_span = grab_span,
		.text = grab_text,
	};
	char *copy = len < UINT32_MAX - 1 ? malloc(len + 1) : NULL; /* newline-terminated: see render_chunk() */
	if (!copy)
		return NULL;
	memcpy(copy, s, len);
	copy[len] = '\n';
	md_parse(copy, (MD_SIZE)(len + 1), &p, &g);
	free(copy);
	free(g.t);
	if (g.oom) {
		free(g.last);
		return NULL;
	}
	*outlen = g.last_n;
	return g.last;
}
