/*
 * picker.c - the model picker (see picker.h).
 *
 * One row per model: a mark on the one in use, its name, and on wide boxes
 * (90 columns and more) its architecture, parameters, quant and file size,
 * then whether it fits, coloured by the answer.  Under the list, four
 * lines on the selected model: where it is, what it is, what it needs
 * against what is available, and the load in progress.
 */
#include "config.h"

#include "picker.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "theme.h"
#include "transcript.h"

struct picker {
	struct overlay ov;
	struct model_list models;
	size_t sel;
	int top;                     /* first row shown */
	const struct tui_status *st; /* the holder's: loading phase, progress, memory */
	const char *current;         /* the holder's: path of the model in use */
};

#define FIT_W 13 /* the fit column */

static void put(WINDOW *w, int y, const char *s, int maxw, const struct ov_style *st, int role)
{
	wmove(w, y, 2);
	tr_put_text(w, s, strlen(s), maxw, st->text_flags, st->attrs[role], st->attrs[ROLE_CTRL]);
}

/* The row of model I at line Y of a box WD columns wide. */
static void draw_row(struct picker *p, WINDOW *w, int y, int wd, size_t i, const struct ov_style *st)
{
	const struct model_item *m = &p->models.v[i];
	const bool sel = i == p->sel, wide = wd >= 90;
	const bool cur = m->path[0] && strcmp(m->path, p->current) == 0;
	char sz[32], par[32], line[512];
	models_fmt_bytes(m->file_bytes, sz, sizeof sz);
	models_fmt_params(m->n_params, par, sizeof par);
	int name_w = wd - 4 - FIT_W - (wide ? 8 + 7 + 20 + 10 : 0);
	if (name_w < 8)
		name_w = 8;
	if (m->present && wide && !m->remote)
		snprintf(line, sizeof line, "%s %-*.*s %-7.7s %6s %-19.19s %9s", cur ? "*" : " ", name_w - 2, name_w - 2,
			 m->display, m->arch, par, m->quant, sz);
	else if (wide && m->remote)
		snprintf(line, sizeof line, "%s %-*.*s %-7.7s", cur ? "*" : " ", name_w - 2, name_w - 2, m->display,
			 m->arch);
	else
		snprintf(line, sizeof line, "%s %-*.*s", cur ? "*" : " ", wd - 4 - FIT_W - 1, wd - 4 - FIT_W - 1,
			 m->display);
	wmove(w, y, 1);
	unsigned long at = st->attrs[sel ? ROLE_SELECT : ROLE_SIDE];
	int used = tr_put_text(w, line, strlen(line), wd - 2 - FIT_W, st->text_flags, at, st->attrs[ROLE_CTRL]);
	wattrset(w, (attr_t)at);
	for (int k = used; k < wd - 2 - FIT_W; k++)
		waddch(w, ' ');
	int role = m->remote ? ROLE_SIDE : !m->present ? ROLE_BAD : m->fit == FIT_YES ? ROLE_GOOD
		 : m->fit == FIT_TIGHT ? ROLE_WARN : m->fit == FIT_NO ? ROLE_BAD : ROLE_SIDE;
	const char *f = m->remote ? "remote" : m->present ? models_fit_str(m->fit) : "missing";
	wattrset(w, (attr_t)(st->attrs[role] | (sel ? st->attrs[ROLE_SELECT] : 0)));
	wprintw(w, " %-*s", FIT_W - 1, f);
	wattrset(w, A_NORMAL);
}

/* The selected model's lines, from row R of a box WD columns wide. */
static void draw_details(struct picker *p, WINDOW *w, int r, int wd, const struct ov_style *st)
{
	const struct model_item *m = &p->models.v[p->sel];
	const struct tui_status *s = p->st;
	char sz[32], need[32], par[32], mem[32], kv[32], line[512];
	const char *where = m->remote ? m->note : m->path[0] ? m->path : m->name;
	put(w, r++, where, wd - 4, st, ROLE_SIDE);
	if (m->remote) {
		put(w, r++, "served by an OpenAI-compatible server: nothing to load here", wd - 4, st, ROLE_SIDE);
	} else if (m->present) {
		models_fmt_params(m->n_params, par, sizeof par);
		snprintf(line, sizeof line, "%s, %s parameters, %s", m->arch, par, m->quant);
		put(w, r++, line, wd - 4, st, ROLE_SIDE);
	} else {
		put(w, r++, m->note, wd - 4, st, ROLE_BAD);
	}
	if (m->present && !m->remote) {
		models_fmt_bytes(m->file_bytes, sz, sizeof sz);
		models_fmt_bytes(m->kv_bytes, kv, sizeof kv);
		models_fmt_bytes(m->need_bytes, need, sizeof need);
		models_fmt_bytes(s->mem_avail, mem, sizeof mem);
		char dr[48] = "";
		if (m->draft_bytes) {
			char db[32];
			models_fmt_bytes(m->draft_bytes, db, sizeof db);
			snprintf(dr, sizeof dr, " + draft %s", db);
		}
		snprintf(line, sizeof line, "needs %s (weights %s + KV %s at %u tokens%s) of %s available: %s", need, sz,
			 kv, m->n_ctx, dr, s->mem_avail ? mem : "?", models_fit_str(m->fit));
		put(w, r, line, wd - 4, st, ROLE_SIDE);
	}
	r++;
	if (s->phase == PH_LOADING) {
		snprintf(line, sizeof line, "loading %s: %.0f%%  (Esc cancels)", s->model, (double)s->progress * 100.0);
		put(w, r, line, wd - 4, st, ROLE_WARN);
	}
}

static void picker_draw(struct overlay *ov, WINDOW *w, const struct ov_style *st, int *cy, int *cx)
{
	struct picker *p = (struct picker *)ov;
	int h, wd;
	getmaxyx(w, h, wd);
	*cy = -1;
	*cx = 0;
	overlay_frame(w, "Models", st);
	const int list_h = h - 7 > 1 ? h - 7 : 1;
	if ((int)p->sel < p->top)
		p->top = (int)p->sel;
	if ((int)p->sel >= p->top + list_h)
		p->top = (int)p->sel - list_h + 1;
	for (int r = 0; r < list_h && p->top + r < (int)p->models.n; r++)
		draw_row(p, w, 1 + r, wd, (size_t)(p->top + r), st);
	if (p->sel < p->models.n)
		draw_details(p, w, h - 6, wd, st);
}

static void picker_size(const struct overlay *ov, int lines, int cols, int *h, int *w)
{
	const struct picker *p = (const struct picker *)ov;
	overlay_list_size(lines, cols, (int)p->models.n + 9, h, w);
}

static int picker_key(struct overlay *ov, int k)
{
	struct picker *p = (struct picker *)ov;
	if (k == KEY_UP || k == 'k') {
		if (p->sel > 0)
			p->sel--;
	} else if (k == KEY_DOWN || k == 'j') {
		if (p->sel + 1 < p->models.n)
			p->sel++;
	} else if (k == '\r' || k == '\n' || k == KEY_ENTER) {
		return PICKER_LOAD;
	} else if (k == 27 || k == 'q' || k == KEY_F(2) || k == 3) {
		/* Esc and Ctrl-C stop a load first; q and F2 only close */
		if (p->st->phase == PH_LOADING && k != 'q' && k != KEY_F(2))
			return PICKER_STOP;
		return OV_CLOSE;
	}
	return OV_KEEP;
}

static size_t picker_hints(const struct overlay *ov, struct ov_hint *h, size_t max)
{
	const struct picker *p = (const struct picker *)ov;
	const struct ov_hint hints[] = {
		{"Up/Down", "choose"},
		{"Enter", "load"},
		{"Esc", p->st->phase == PH_LOADING ? "cancel loading" : "close"},
	};
	size_t n = sizeof hints / sizeof hints[0] < max ? sizeof hints / sizeof hints[0] : max;
	memcpy(h, hints, n * sizeof *h);
	return n;
}

static void picker_free(struct overlay *ov)
{
	struct picker *p = (struct picker *)ov;
	models_free(&p->models);
	free(p);
}

const struct overlay_class picker_class = {
	.name = "picker",
	.size = picker_size,
	.draw = picker_draw,
	.key = picker_key,
	.hints = picker_hints,
	.free = picker_free,
};

struct overlay *picker_open(uint32_t n_ctx, uint64_t avail, const struct tui_status *st, const char *current,
			    char *err, size_t errlen)
{
	struct picker *p = calloc(1, sizeof *p);
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->ov.cls = &picker_class;
	p->st = st;
	p->current = current;
	if (models_scan(&p->models, n_ctx, avail, err, errlen) != 0) {
		free(p);
		return NULL;
	}
	if (p->models.n == 0) {
		char dir[4096] = "?";
		config_models_dir(dir, sizeof dir);
		snprintf(err, errlen, "no models found (models.d entries, or *.gguf files in %s)", dir);
		picker_free(&p->ov);
		return NULL;
	}
	for (size_t i = 0; i < p->models.n; i++)
		if (strcmp(p->models.v[i].path, current) == 0)
			p->sel = i;
	return &p->ov;
}

const struct model_item *picker_selected(const struct overlay *ov)
{
	if (!ov || ov->cls != &picker_class)
		return NULL;
	const struct picker *p = (const struct picker *)ov;
	return p->sel < p->models.n ? &p->models.v[p->sel] : NULL;
}
