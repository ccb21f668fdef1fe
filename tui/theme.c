/*
 * theme.c - theme files and colour roles (see theme.h).
 *
 * The three stock themes are compiled in as the very text of their files
 * (tests check that themes/NAME.theme matches), so the program looks right
 * with nothing installed.  A theme file is hostile input: its size, its
 * line lengths and every number are bounded before use.
 *
 * theme_apply() maps each role to one colour pair: on 256 colours the 256
 * number, on 16 the bright or plain name, on 8 a bright name becomes the
 * plain one plus bold (foreground only).  "default" needs
 * use_default_colors(); when the terminal lacks it, white on black stands
 * in.
 */
#include "config.h"

#include "theme.h"

#include <curses.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef TTYCHAT_DATADIR
#define TTYCHAT_DATADIR "/usr/local/share/ttychat"
#endif

static const char theme_default_text[] =
	"# ttychat theme \"default\": for terminals with a dark background.\n"
	"# Format: one ROLE FG BG [ATTR...] per line; a colour is default, a\n"
	"# name (black red green yellow blue magenta cyan white), bright-NAME, a\n"
	"# number 0-255 (256-colour terminals) or N/NAME (N on 256 colours, NAME on\n"
	"# fewer).  ATTR: bold dim reverse underline italic standout.\n"
	"text              default        default\n"
	"user              117/cyan       default\n"
	"user-header       81/cyan        default   bold\n"
	"assistant-header  150/green      default   bold\n"
	"code              223/yellow     236/default\n"
	"notice            244/bright-black default\n"
	"error             203/red        default   bold\n"
	"control           213/magenta    default   bold\n"
	"mark              221/yellow     default\n"
	"sidebar           default        default\n"
	"sidebar-title     110/blue       default   bold\n"
	"status            252/white      238/blue\n"
	"hint              246/default    default\n"
	"hint-key          252/white      default   bold\n"
	"bar-used          16/black       71/green\n"
	"bar-free          240/bright-black default\n"
	"prompt            81/cyan        default   bold\n"
	"input             default        default\n"
	"selected          default        default   reverse\n"
	"border            240/bright-black default\n"
	"title             default        default   bold\n"
	"good              114/green      default\n"
	"warn              221/yellow     default\n"
	"bad               203/red        default   bold\n"
	"new-below         16/black       221/yellow bold\n"
	"heading           153/bright-white default   bold\n"
	"md-mark           110/blue       default\n"
	"link              74/cyan        default   underline\n"
	"code-keyword      176/magenta    236/default bold\n"
	"code-string       150/green      236/default\n"
	"code-comment      245/bright-black 236/default\n"
	"code-number       180/yellow     236/default\n"
	"diff-add          114/green      236/default\n"
	"diff-del          210/red        236/default\n";

static const char theme_light_text[] =
	"# ttychat theme \"light\": for terminals with a light background.\n"
	"# Format: see default.theme.\n"
	"text              default        default\n"
	"user              25/blue        default\n"
	"user-header       25/blue        default   bold\n"
	"assistant-header  28/green       default   bold\n"
	"code              90/magenta     254/default\n"
	"notice            242/default    default\n"
	"error             160/red        default   bold\n"
	"control           127/magenta    default   bold\n"
	"mark              130/red        default\n"
	"sidebar           default        default\n"
	"sidebar-title     25/blue        default   bold\n"
	"status            235/black      252/white\n"
	"hint              242/default    default\n"
	"hint-key          235/black      default   bold\n"
	"bar-used          255/white      28/green\n"
	"bar-free          248/default    default\n"
	"prompt            25/blue        default   bold\n"
	"input             default        default\n"
	"selected          default        default   reverse\n"
	"border            248/default    default\n"
	"title             default        default   bold\n"
	"good              28/green       default\n"
	"warn              130/yellow     default   bold\n"
	"bad               160/red        default   bold\n"
	"new-below         255/white      25/blue   bold\n"
	"heading           18/blue        default   bold\n"
	"md-mark           25/blue        default\n"
	"link              25/blue        default   underline\n"
	"code-keyword      90/magenta     254/default bold\n"
	"code-string       28/green       254/default\n"
	"code-comment      244/default    254/default\n"
	"code-number       130/red        254/default\n"
	"diff-add          28/green       254/default\n"
	"diff-del          160/red        254/default\n";

static const char theme_mono_text[] =
	"# ttychat theme \"mono\": attributes only, no colour.  Used when NO_COLOR is\n"
	"# set or the terminal has no colours; fine on TERM=linux and vt100.\n"
	"# Format: see default.theme.\n"
	"text              default        default\n"
	"user              default        default   bold\n"
	"user-header       default        default   bold reverse\n"
	"assistant-header  default        default   reverse\n"
	"code              default        default   dim\n"
	"notice            default        default   dim\n"
	"error             default        default   bold\n"
	"control           default        default   reverse\n"
	"mark              default        default   bold\n"
	"sidebar           default        default\n"
	"sidebar-title     default        default   bold underline\n"
	"status            default        default   reverse\n"
	"hint              default        default\n"
	"hint-key          default        default   bold\n"
	"bar-used          default        default   reverse\n"
	"bar-free          default        default\n"
	"prompt            default        default   bold\n"
	"input             default        default\n"
	"selected          default        default   reverse\n"
	"border            default        default\n"
	"title             default        default   bold\n"
	"good              default        default\n"
	"warn              default        default   bold\n"
	"bad               default        default   bold reverse\n"
	"new-below         default        default   bold reverse\n"
	"heading           default        default   bold\n"
	"md-mark           default        default   bold\n"
	"link              default        default   underline\n"
	"code-keyword      default        default   bold\n"
	"code-string       default        default\n"
	"code-comment      default        default   dim\n"
	"code-number       default        default\n"
	"diff-add          default        default   bold\n"
	"diff-del          default        default   dim\n";

static const char *const role_names[ROLE_COUNT] = {
	[ROLE_TEXT] = "text",
	[ROLE_USER] = "user",
	[ROLE_USER_HEAD] = "user-header",
	[ROLE_BOT_HEAD] = "assistant-header",
	[ROLE_CODE] = "code",
	[ROLE_NOTICE] = "notice",
	[ROLE_ERROR] = "error",
	[ROLE_CTRL] = "control",
	[ROLE_MARK] = "mark",
	[ROLE_SIDE] = "sidebar",
	[ROLE_SIDE_TITLE] = "sidebar-title",
	[ROLE_STATUS] = "status",
	[ROLE_HINT] = "hint",
	[ROLE_HINT_KEY] = "hint-key",
	[ROLE_BAR_USED] = "bar-used",
	[ROLE_BAR_FREE] = "bar-free",
	[ROLE_PROMPT] = "prompt",
	[ROLE_INPUT] = "input",
	[ROLE_SELECT] = "selected",
	[ROLE_BORDER] = "border",
	[ROLE_TITLE] = "title",
	[ROLE_GOOD] = "good",
	[ROLE_WARN] = "warn",
	[ROLE_BAD] = "bad",
	[ROLE_NEW_BELOW] = "new-below",
	[ROLE_HEADING] = "heading",
	[ROLE_MD_MARK] = "md-mark",
	[ROLE_LINK] = "link",
	[ROLE_CODE_KW] = "code-keyword",
	[ROLE_CODE_STR] = "code-string",
	[ROLE_CODE_COMMENT] = "code-comment",
	[ROLE_CODE_NUM] = "code-number",
	[ROLE_DIFF_ADD] = "diff-add",
	[ROLE_DIFF_DEL] = "diff-del",
};

static const char *const color_names[8] = {"black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"};

static const struct {
	const char *name;
	unsigned bit;
} attr_names[] = {
	{"bold", THEME_BOLD},           {"dim", THEME_DIM},       {"reverse", THEME_REVERSE},
	{"underline", THEME_UNDERLINE}, {"italic", THEME_ITALIC}, {"standout", THEME_STANDOUT},
};

const char *theme_role_name(int role)
{
	return role >= 0 && role < ROLE_COUNT ? role_names[role] : NULL;
}

const char *theme_builtin_text(const char *name)
{
	if (!name)
		return NULL;
	if (strcmp(name, "default") == 0)
		return theme_default_text;
	if (strcmp(name, "light") == 0)
		return theme_light_text;
	if (strcmp(name, "mono") == 0)
		return theme_mono_text;
	return NULL;
}

/* A name or bright-name: its 0-15 index, or -2 when unknown, -1 default. */
static int named_color(const char *s, size_t n)
{
	if (n == 7 && strncmp(s, "default", 7) == 0)
		return -1;
	int base = 0;
	if (n > 7 && strncmp(s, "bright-", 7) == 0) {
		base = 8;
		s += 7;
		n -= 7;
	}
	for (int i = 0; i < 8; i++)
		if (strlen(color_names[i]) == n && strncmp(s, color_names[i], n) == 0)
			return base + i;
	return -2;
}

/* Parses one colour word; 0 or -1. */
static int parse_color(const char *w, struct theme_color *c)
{
	const char *slash = strchr(w, '/');
	if (w[0] >= '0' && w[0] <= '9') {
		char *end;
		errno = 0;
		long v = strtol(w, &end, 10);
		if (errno || v < 0 || v > 255 || (end != slash && *end))
			return -1;
		c->c256 = (short)v;
		c->c16 = v < 16 ? (short)v : -1;
		if (slash) {
			int k = named_color(slash + 1, strlen(slash + 1));
			if (k < -1)
				return -1;
			c->c16 = (short)k;
		}
		return 0;
	}
	if (slash)
		return -1;
	int k = named_color(w, strlen(w));
	if (k < -1)
		return -1;
	c->c256 = c->c16 = (short)k;
	return 0;
}

int theme_parse(const char *text, size_t len, struct theme *t, char *err, size_t errlen)
{
	size_t lineno = 0;
	for (size_t p = 0; p < len;) {
		size_t e = p;
		while (e < len && text[e] != '\n')
			e++;
		lineno++;
		char line[512];
		if (e - p >= sizeof line) {
			snprintf(err, errlen, "line %zu: too long", lineno);
			return -1;
		}
		if (memchr(text + p, '\0', e - p)) {
			snprintf(err, errlen, "line %zu: NUL byte", lineno);
			return -1;
		}
		memcpy(line, text + p, e - p);
		line[e - p] = '\0';
		p = e + 1;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *words[12];
		int nw = 0;
		char *save = NULL;
		for (char *w = strtok_r(line, " \t\r", &save); w; w = strtok_r(NULL, " \t\r", &save)) {
			if (nw == (int)(sizeof words / sizeof words[0])) {
				snprintf(err, errlen, "line %zu: too many words", lineno);
				return -1;
			}
			words[nw++] = w;
		}
		if (nw == 0)
			continue;
		if (nw < 3) {
			snprintf(err, errlen, "line %zu: want ROLE FG BG [ATTR...]", lineno);
			return -1;
		}
		int role = -1;
		for (int r = 0; r < ROLE_COUNT; r++)
			if (strcmp(words[0], role_names[r]) == 0)
				role = r;
		if (role < 0) {
			snprintf(err, errlen, "line %zu: unknown role '%.40s'", lineno, words[0]);
			return -1;
		}
		struct theme_style st = {.attrs = 0};
		if (parse_color(words[1], &st.fg) || parse_color(words[2], &st.bg)) {
			snprintf(err, errlen, "line %zu: bad colour (want default, a name, bright-NAME, 0-255 or N/NAME)",
				 lineno);
			return -1;
		}
		for (int i = 3; i < nw; i++) {
			unsigned bit = 0;
			for (size_t a = 0; a < sizeof attr_names / sizeof attr_names[0]; a++)
				if (strcmp(words[i], attr_names[a].name) == 0)
					bit = attr_names[a].bit;
			if (!bit && strcmp(words[i], "none") != 0) {
				snprintf(err, errlen, "line %zu: unknown attribute '%.40s'", lineno, words[i]);
				return -1;
			}
			st.attrs |= bit;
		}
		t->role[role] = st;
	}
	return 0;
}

bool theme_builtin(const char *name, struct theme *t)
{
	char err[128];
	memset(t, 0, sizeof *t);
	theme_parse(theme_default_text, sizeof theme_default_text - 1, t, err, sizeof err);
	snprintf(t->name, sizeof t->name, "default");
	const char *text = theme_builtin_text(name);
	if (!text)
		return false;
	if (text != theme_default_text)
		theme_parse(text, strlen(text), t, err, sizeof err);
	snprintf(t->name, sizeof t->name, "%s", name);
	return true;
}

static int load_file(const char *path, struct theme *t, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 1;
	char *buf = malloc(65536 + 1);
	size_t n = buf ? fread(buf, 1, 65536 + 1, f) : 0;
	fclose(f);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (n > 65536) {
		free(buf);
		snprintf(err, errlen, "%s: larger than 64 KiB", path);
		return -1;
	}
	char msg[256];
	int rc = theme_parse(buf, n, t, msg, sizeof msg);
	free(buf);
	if (rc) {
		snprintf(err, errlen, "%s: %s", path, msg);
		return -1;
	}
	return 0;
}

int theme_load(const char *name, struct theme *t, char *err, size_t errlen)
{
	bool builtin = theme_builtin(name, t);
	if (!name || !name[0] || strlen(name) > 60 || strspn(name, "abcdefghijklmnopqrstuvwxyz"
								    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != strlen(name)) {
		snprintf(err, errlen, "'%.60s' is not a theme name (letters, digits, - and _)", name ? name : "");
		return -1;
	}
	char dirs[4][PATH_MAX];
	int nd = 0;
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	int w = -1;
	if (xdg && xdg[0] == '/')
		w = snprintf(dirs[nd], sizeof dirs[0], "%s/ttychat/themes", xdg);
	else if (home && home[0])
		w = snprintf(dirs[nd], sizeof dirs[0], "%s/.config/ttychat/themes", home);
	if (w > 0 && (size_t)w < sizeof dirs[0])
		nd++;
	w = snprintf(dirs[nd], sizeof dirs[0], "%s/themes", TTYCHAT_DATADIR);
	if (w > 0 && (size_t)w < sizeof dirs[0])
		nd++;
	char exe[PATH_MAX];
	ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (el > 0) {
		exe[el] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			w = snprintf(dirs[nd], sizeof dirs[0], "%s/themes", exe);
			if (w > 0 && (size_t)w < sizeof dirs[0])
				nd++;
			w = snprintf(dirs[nd], sizeof dirs[0], "%s/../themes", exe);
			if (w > 0 && (size_t)w < sizeof dirs[0])
				nd++;
		}
	}
	for (int i = 0; i < nd; i++) {
		char path[PATH_MAX + 80];
		w = snprintf(path, sizeof path, "%s/%s.theme", dirs[i], name);
		if (w < 0 || (size_t)w >= sizeof path)
			continue;
		struct theme tmp;
		theme_builtin("default", &tmp);
		int rc = load_file(path, &tmp, err, errlen);
		if (rc < 0)
			return -1;
		if (rc == 0) {
			*t = tmp;
			snprintf(t->name, sizeof t->name, "%s", name);
			return 0;
		}
	}
	if (builtin)
		return 0;
	snprintf(err, errlen, "no theme '%s' (looked for %s.theme in the config and data dirs)", name, name);
	return -1;
}

/* ---- curses ---------------------------------------------------------------- */

/* Colour number for this terminal, and whether it needs bold to look
 * bright (8-colour terminals). */
static short term_color(struct theme_color c, bool have_default, bool fg, bool *bold)
{
	short v;
	if (COLORS >= 256)
		v = c.c256 >= 0 ? c.c256 : c.c16;
	else
		v = c.c16;
	if (v >= COLORS && v >= 8 && v < 16) {
		if (fg)
			*bold = true;
		v = (short)(v - 8);
	} else if (v >= COLORS) {
		v = -1;
	}
	if (v < 0 && !have_default)
		v = fg ? COLOR_WHITE : COLOR_BLACK;
	return v;
}

void theme_apply(const struct theme *t, bool use_color, unsigned long *attrs)
{
	bool have_default = false;
	if (use_color)
		have_default = use_default_colors() == OK;
	for (int r = 0; r < ROLE_COUNT; r++) {
		const struct theme_style *st = &t->role[r];
		attr_t a = A_NORMAL;
		if (st->attrs & THEME_BOLD)
			a |= A_BOLD;
		if (st->attrs & THEME_DIM)
			a |= A_DIM;
		if (st->attrs & THEME_REVERSE)
			a |= A_REVERSE;
		if (st->attrs & THEME_UNDERLINE)
			a |= A_UNDERLINE;
#ifdef A_ITALIC
		if (st->attrs & THEME_ITALIC)
			a |= A_ITALIC;
#endif
		if (st->attrs & THEME_STANDOUT)
			a |= A_STANDOUT;
		if (use_color && r + 1 < COLOR_PAIRS) {
			bool bold = false;
			short fg = term_color(st->fg, have_default, true, &bold);
			short bg = term_color(st->bg, have_default, false, &bold);
			if (fg == -1 && bg == -1 && have_default) {
				/* the terminal's own colours: no pair needed */
			} else if (init_pair((short)(r + 1), fg, bg) == OK) {
				a |= COLOR_PAIR(r + 1);
			}
			if (bold)
				a |= A_BOLD;
		}
		attrs[r] = (unsigned long)a;
	}
}
