/*
 * chatlist.c - the conversation list box (see chatlist.h).
 *
 * Keys in the list: Up/Down (k/j), PgUp/PgDn, Home/End move; Enter opens;
 * n starts a new conversation; r renames; d or Delete deletes after a
 * y/N question; / searches (Enter runs the search, an empty one lists
 * everything again); Esc clears a search, then closes, as do q and F3.
 * The two text fields (search, rename) take UTF-8 bytes; Backspace removes
 * a whole character, Ctrl-U the whole field.
 *
 * chatlist_key() turns a key into an action on the box's own state; the
 * overlay's key function carries out what needs the history (search,
 * rename) and passes the rest to the holder.
 */
#include "config.h"

#include "chatlist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text.h"
#include "theme.h"
#include "transcript.h"

void chatlist_set(struct chatlist *l, struct chats_entry *v, size_t n, const char *select_id)
{
	chats_list_free(l->v, l->n);
	l->v = v;
	l->n = n;
	if (l->sel >= n)
		l->sel = n ? n - 1 : 0;
	for (size_t i = 0; select_id && i < n; i++)
		if (strcmp(v[i].id, select_id) == 0)
			l->sel = i;
}

void chatlist_free(struct chatlist *l)
{
	chats_list_free(l->v, l->n);
	l->v = NULL;
	l->n = 0;
}

const struct chats_entry *chatlist_selected(const struct chatlist *l)
{
	return l->sel < l->n ? &l->v[l->sel] : NULL;
}

static void field_set(struct chatlist *l, const char *s)
{
	size_t n = strlen(s);
	if (n > CHATLIST_FIELD_MAX)
		n = CHATLIST_FIELD_MAX;
	/* never end inside a character */
	while (n > 0 && n < strlen(s) && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	memcpy(l->field, s, n);
	l->field[n] = '\0';
	l->field_len = n;
}

/* A key for a text field: 1 Enter, -1 Esc, 0 otherwise. */
static int field_key(struct chatlist *l, int k)
{
	if (k == '\r' || k == '\n' || k == KEY_ENTER)
		return 1;
	if (k == 27 || k == 3)
		return -1;
	if (k == KEY_BACKSPACE || k == 127 || k == 8) {
		while (l->field_len > 0 && ((unsigned char)l->field[l->field_len - 1] & 0xc0) == 0x80)
			l->field_len--;
		if (l->field_len > 0)
			l->field_len--;
		l->field[l->field_len] = '\0';
	} else if (k == 21) {
		l->field_len = 0;
		l->field[0] = '\0';
	} else if (k >= 0x20 && k <= 0xff && k != 0x7f && l->field_len < CHATLIST_FIELD_MAX) {
		l->field[l->field_len++] = (char)k;
		l->field[l->field_len] = '\0';
	}
	return 0;
}

/* A key while a field is edited or the question asked. */
static enum chatlist_action mode_key(struct chatlist *l, int k)
{
	switch (l->mode) {
	case CL_SEARCH: {
		int r = field_key(l, k);
		if (r == 0)
			return CLA_NONE;
		l->mode = CL_BROWSE;
		return r > 0 ? CLA_SEARCH : CLA_NONE;
	}
	case CL_RENAME: {
		int r = field_key(l, k);
		if (r == 0)
			return CLA_NONE;
		l->mode = CL_BROWSE;
		return r > 0 && l->n ? CLA_RENAME : CLA_NONE;
	}
	case CL_CONFIRM:
		l->mode = CL_BROWSE;
		if (k == 'y' || k == 'Y')
			return CLA_DELETE;
		snprintf(l->note, sizeof l->note, "not deleted");
		l->note_bad = false;
		return CLA_NONE;
	case CL_BROWSE:
		break;
	}
	return CLA_NONE;
}

enum chatlist_action chatlist_key(struct chatlist *l, int k)
{
	if (l->mode != CL_BROWSE)
		return mode_key(l, k);
	l->note[0] = '\0';
	switch (k) {
	case KEY_UP:
	case 'k':
		if (l->sel > 0)
			l->sel--;
		return CLA_NONE;
	case KEY_DOWN:
	case 'j':
		if (l->sel + 1 < l->n)
			l->sel++;
		return CLA_NONE;
	case KEY_PPAGE:
		l->sel = l->sel > 10 ? l->sel - 10 : 0;
		return CLA_NONE;
	case KEY_NPAGE:
		l->sel = l->sel + 10 < l->n ? l->sel + 10 : l->n ? l->n - 1 : 0;
		return CLA_NONE;
	case KEY_HOME:
		l->sel = 0;
		return CLA_NONE;
	case KEY_END:
		l->sel = l->n ? l->n - 1 : 0;
		return CLA_NONE;
	case '\r':
	case '\n':
	case KEY_ENTER:
		return l->n ? CLA_OPEN : CLA_NONE;
	case 'n':
		return CLA_NEW;
	case 'r':
		if (!l->n)
			return CLA_NONE;
		field_set(l, l->v[l->sel].title);
		l->mode = CL_RENAME;
		return CLA_NONE;
	case 'd':
	case KEY_DC:
		if (!l->n)
			return CLA_NONE;
		l->mode = CL_CONFIRM;
		return CLA_NONE;
	case '/':
	case 's':
		field_set(l, l->filter);
		l->mode = CL_SEARCH;
		return CLA_NONE;
	case 27:
		if (l->filter[0]) {
			field_set(l, "");
			return CLA_SEARCH;
		}
		return CLA_CLOSE;
	case 'q':
	case 3:
	case KEY_F(3):
		return CLA_CLOSE;
	default:
		return CLA_NONE;
	}
}

void chatlist_fmt_time(long long ms, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000), now = time(NULL);
	struct tm tm, tn;
	if (ms <= 0 || !localtime_r(&t, &tm) || !localtime_r(&now, &tn)) {
		snprintf(buf, n, "-");
		return;
	}
	if (tm.tm_year == tn.tm_year && tm.tm_yday == tn.tm_yday)
		strftime(buf, n, "today %H:%M", &tm);
	else
		strftime(buf, n, "%Y-%m-%d %H:%M", &tm);
}

/* Draws S in at most MAXW columns, showing its end when it is wider. */
static int put_tail(WINDOW *w, const char *s, size_t len, int maxw, unsigned flags, unsigned long at,
		    unsigned long ctrl)
{
	size_t p = 0;
	while (p < len && text_width(s + p, len - p, flags) > maxw) {
		struct text_cluster c;
		size_t q = text_cluster_next(s, len, p, flags, &c);
		if (q == p)
			break;
		p = q;
	}
	return tr_put_text(w, s + p, len - p, maxw, flags, at, ctrl);
}

static void pad(WINDOW *w, int from, int to, unsigned long at)
{
	wattrset(w, (attr_t)at);
	for (int i = from; i < to; i++)
		waddch(w, ' ');
}

/* The row of entry I at line Y (INNER columns inside the border). */
static void draw_entry(WINDOW *w, const struct chatlist *l, size_t i, int y, int inner, const char *current_id,
		       const struct ov_style *st)
{
	const unsigned long *attrs = st->attrs;
	const unsigned flags = st->text_flags;
	const int when_w = 17;
	const struct chats_entry *e = &l->v[i];
	const bool sel = i == l->sel;
	const bool cur = current_id && strcmp(current_id, e->id) == 0;
	unsigned long at = attrs[sel ? ROLE_SELECT : ROLE_SIDE];
	wmove(w, y, 1);
	wattrset(w, (attr_t)at);
	waddch(w, cur ? '*' : ' ');
	waddch(w, ' ');
	int col = 2;
	char when[32], info[96];
	chatlist_fmt_time(e->updated_ms, when, sizeof when);
	const char *title = e->readable ? (e->title[0] ? e->title : "(untitled)") : "(unreadable)";
	int title_w = inner - when_w - 1;
	if (title_w < 8)
		title_w = inner;
	const char *extra = !e->readable ? (e->error ? e->error : "") : e->match ? e->match : NULL;
	if (!extra && e->model[0]) {
		const char *slash = strrchr(e->model, '/');
		snprintf(info, sizeof info, "%s", slash && slash[1] ? slash + 1 : e->model);
		extra = info;
	}
	int used = tr_put_text(w, title, strlen(title), title_w - 2, flags, at, attrs[ROLE_CTRL]);
	col += used;
	if (extra && extra[0] && col + 4 < title_w) {
		wattrset(w, (attr_t)at);
		waddstr(w, "  ");
		col += 2;
		unsigned long ea = sel ? at : attrs[e->readable ? ROLE_NOTICE : ROLE_BAD];
		col += tr_put_text(w, extra, strlen(extra), title_w - col, flags, ea, attrs[ROLE_CTRL]);
	}
	pad(w, col, title_w, at);
	if (title_w < inner) {
		wattrset(w, (attr_t)at);
		wprintw(w, " %*s", when_w, when);
		col = title_w + 1 + when_w;
		pad(w, col, inner + 1, at);
	}
}

/* The line under the list, at row FY: the field, the question or the
 * note.  *CY, *CX: the cursor in the field. */
static void draw_field(WINDOW *w, const struct chatlist *l, int fy, int inner, const struct ov_style *st, int *cy,
		       int *cx)
{
	const unsigned long *attrs = st->attrs;
	const unsigned flags = st->text_flags;
	wmove(w, fy, 2);
	if (l->mode == CL_SEARCH || l->mode == CL_RENAME) {
		const char *label = l->mode == CL_SEARCH ? "Search: " : "New title: ";
		int lw = tr_put_text(w, label, strlen(label), inner, flags, attrs[ROLE_PROMPT], attrs[ROLE_CTRL]);
		int fw = put_tail(w, l->field, l->field_len, inner - lw - 1, flags, attrs[ROLE_INPUT], attrs[ROLE_CTRL]);
		*cy = fy;
		*cx = 2 + lw + fw;
	} else if (l->mode == CL_CONFIRM && l->sel < l->n) {
		char q[512];
		snprintf(q, sizeof q, "Delete \"%.60s\"? Its file is removed. y/N",
			 l->v[l->sel].title[0] ? l->v[l->sel].title : "(untitled)");
		tr_put_text(w, q, strlen(q), inner, flags, attrs[ROLE_WARN], attrs[ROLE_CTRL]);
	} else if (l->note[0]) {
		tr_put_text(w, l->note, strlen(l->note), inner, flags, attrs[l->note_bad ? ROLE_BAD : ROLE_NOTICE],
			    attrs[ROLE_CTRL]);
	}
	wattrset(w, A_NORMAL);
}

static void cl_draw(struct overlay *ov, WINDOW *w, const struct ov_style *st, int *cy, int *cx)
{
	struct chatlist *l = (struct chatlist *)ov;
	int h, wd;
	getmaxyx(w, h, wd);
	*cy = -1;
	*cx = 0;
	char title[128];
	if (l->filter[0])
		snprintf(title, sizeof title, "Conversations: %zu with \"%.40s\"", l->n, l->filter);
	else
		snprintf(title, sizeof title, "Conversations (%zu)", l->n);
	overlay_frame(w, title, st);
	const int inner = wd - 4;
	const int list_h = h - 4 > 1 ? h - 4 : 1; /* rows 1..h-4; h-3 blank; h-2 field/note */
	int top = l->top;
	if ((int)l->sel < top)
		top = (int)l->sel;
	if ((int)l->sel >= top + list_h)
		top = (int)l->sel - list_h + 1;
	l->top = top;
	if (l->n == 0) {
		const char *e = l->filter[0] ? "No conversation contains that text." : "No saved conversations yet.";
		wmove(w, 1, 2);
		tr_put_text(w, e, strlen(e), inner, st->text_flags, st->attrs[ROLE_SIDE], st->attrs[ROLE_CTRL]);
	}
	const char *current_id = chats_id(l->ch);
	for (int r = 0; r < list_h && top + r < (int)l->n; r++)
		draw_entry(w, l, (size_t)(top + r), 1 + r, inner, current_id, st);
	wattrset(w, A_NORMAL);
	draw_field(w, l, h - 2, inner, st, cy, cx);
}

static void cl_size(const struct overlay *ov, int lines, int cols, int *h, int *w)
{
	const struct chatlist *l = (const struct chatlist *)ov;
	int want = (int)l->n + 5;
	overlay_list_size(lines, cols, want < 8 ? 8 : want, h, w);
}

/* Lists again (with the filter), selecting SELECT_ID when given. */
static void relist(struct chatlist *l, const char *select_id)
{
	struct chats_entry *v;
	size_t n;
	if (chats_list(l->ch, l->filter, &v, &n) != 0) {
		snprintf(l->note, sizeof l->note, "%s", chats_errmsg(l->ch));
		l->note_bad = true;
		return;
	}
	chatlist_set(l, v, n, select_id);
}

static void note(struct chatlist *l, bool bad, const char *what, const char *why)
{
	snprintf(l->note, sizeof l->note, "%s%s%s", what, why ? ": " : "", why ? why : "");
	l->note_bad = bad;
}

static int cl_key(struct overlay *ov, int k)
{
	struct chatlist *l = (struct chatlist *)ov;
	enum chatlist_action act = chatlist_key(l, k);
	const struct chats_entry *e = chatlist_selected(l);
	char id[CHATS_ID_LEN + 1] = "";
	if (e)
		snprintf(id, sizeof id, "%s", e->id);
	switch (act) {
	case CLA_NONE:
		break;
	case CLA_CLOSE:
		return OV_CLOSE;
	case CLA_OPEN:
		if (e && !e->readable)
			note(l, true, "cannot open it", e->error ? e->error : "unreadable");
		else if (e)
			return CHATLIST_OPEN;
		break;
	case CLA_NEW:
		return CHATLIST_NEW;
	case CLA_RENAME:
		if (!e)
			break;
		if (chats_rename(l->ch, id, l->field) < 0) {
			note(l, true, "not renamed", chats_errmsg(l->ch));
			break;
		}
		note(l, false, "renamed", NULL);
		relist(l, id);
		return CHATLIST_RENAMED;
	case CLA_DELETE:
		return e ? CHATLIST_DELETE : OV_KEEP;
	case CLA_SEARCH:
		snprintf(l->filter, sizeof l->filter, "%s", l->field);
		l->sel = 0;
		l->top = 0;
		relist(l, NULL);
		break;
	}
	return OV_KEEP;
}

static size_t cl_hints(const struct overlay *ov, struct ov_hint *h, size_t max)
{
	const struct chatlist *l = (const struct chatlist *)ov;
	static const struct ov_hint field[] = {{"Enter", NULL}, {"Esc", "cancel"}};
	static const struct ov_hint confirm[] = {{"y", "delete"}, {"n", "keep"}};
	static const struct ov_hint browse[] = {{"Enter", "open"}, {"n", "new"},    {"r", "rename"},
						{"d", "delete"},  {"/", "search"}, {"Esc", "close"}};
	const struct ov_hint *src = browse;
	size_t n = sizeof browse / sizeof browse[0];
	if (l->mode == CL_SEARCH || l->mode == CL_RENAME)
		src = field, n = 2;
	else if (l->mode == CL_CONFIRM)
		src = confirm, n = 2;
	n = n < max ? n : max;
	memcpy(h, src, n * sizeof *h);
	if (src == field && n > 0)
		h[0].what = l->mode == CL_SEARCH ? "search" : "rename";
	return n;
}

static void cl_free(struct overlay *ov)
{
	struct chatlist *l = (struct chatlist *)ov;
	chatlist_free(l);
	free(l);
}

const struct overlay_class chatlist_class = {
	.name = "chats",
	.size = cl_size,
	.draw = cl_draw,
	.key = cl_key,
	.hints = cl_hints,
	.free = cl_free,
};

struct overlay *chatlist_open(struct chats *ch, const char *needle)
{
	struct chatlist *l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	l->ov.cls = &chatlist_class;
	l->ch = ch;
	snprintf(l->filter, sizeof l->filter, "%s", needle ? needle : "");
	relist(l, chats_id(ch));
	return &l->ov;
}

struct chatlist *chatlist_of(struct overlay *ov)
{
	return ov && ov->cls == &chatlist_class ? (struct chatlist *)ov : NULL;
}

int chatlist_remove(struct chatlist *l, const char *id)
{
	if (chats_delete(l->ch, id) != 0) {
		note(l, true, "not deleted", chats_errmsg(l->ch));
		return -1;
	}
	note(l, false, "deleted", NULL);
	relist(l, NULL);
	return 0;
}
