/*
 * theme.h - colour roles and theme files.
 *
 * Code never names a colour: it draws with a role (user text, code, the
 * context bar ...) and the theme maps roles to colours and attributes.  A
 * theme file is plain text, one role per line:
 *
 *     # comment
 *     role   FG   BG   [ATTR ...]
 *
 * FG and BG are `default`, one of the 8 names (black red green yellow blue
 * magenta cyan white), `bright-NAME` (16-colour terminals; bold on 8), a
 * number 0-255 for 256-colour terminals, or `N/NAME` (N on 256 colours,
 * NAME on fewer).  ATTR is bold, dim, reverse, underline, italic or
 * standout.  Roles a file does not mention keep the built-in default's
 * style.  Themes are looked up as NAME.theme in the user's config dir
 * ($XDG_CONFIG_HOME/ttychat/themes), the installed data dir, a themes/
 * folder beside the binary or its parent (a build tree), and finally the
 * built-in copies of "default", "light" and "mono".
 *
 * Without colours (NO_COLOR set, or a terminal that has none) only the
 * attributes are used.  Parsing is pure (tests call it); theme_apply()
 * needs curses.  UI thread only.
 */
#ifndef TTYCHAT_TUI_THEME_H
#define TTYCHAT_TUI_THEME_H

#include <stdbool.h>
#include <stddef.h>

enum role {
	ROLE_TEXT,        /* assistant text, and the default */
	ROLE_USER,        /* the user's text */
	ROLE_USER_HEAD,   /* "You" above a user turn */
	ROLE_BOT_HEAD,    /* the model's name above a reply */
	ROLE_CODE,        /* code blocks and inline code */
	ROLE_NOTICE,      /* notices in the transcript (model loaded, context shift) */
	ROLE_ERROR,       /* errors in the transcript */
	ROLE_CTRL,        /* placeholders for control characters and bad UTF-8 */
	ROLE_MARK,        /* "[stopped]" and other marks on a reply */
	ROLE_SIDE,        /* sidebar text */
	ROLE_SIDE_TITLE,  /* sidebar section titles */
	ROLE_STATUS,      /* the status line above the input */
	ROLE_HINT,        /* the key hints at the bottom */
	ROLE_HINT_KEY,    /* a key name in the hints */
	ROLE_BAR_USED,    /* context bar, used part */
	ROLE_BAR_FREE,    /* context bar, free part */
	ROLE_PROMPT,      /* the input prompt */
	ROLE_INPUT,       /* the input text */
	ROLE_SELECT,      /* the selected row of a list */
	ROLE_BORDER,      /* lines between panes, box borders */
	ROLE_TITLE,       /* titles of boxes */
	ROLE_GOOD,        /* "fits" */
	ROLE_WARN,        /* "tight" */
	ROLE_BAD,         /* "does not fit" */
	ROLE_NEW_BELOW,   /* the "new output below" marker */
	ROLE_HEADING,     /* Markdown headings in a reply */
	ROLE_MD_MARK,     /* list markers, quote bars, table rules */
	ROLE_LINK,        /* the URL shown after a link's text */
	ROLE_CODE_KW,     /* code blocks: keywords */
	ROLE_CODE_STR,    /* code blocks: strings */
	ROLE_CODE_COMMENT,/* code blocks: comments */
	ROLE_CODE_NUM,    /* code blocks: numbers */
	ROLE_DIFF_ADD,    /* code blocks: a diff's added lines */
	ROLE_DIFF_DEL,    /* code blocks: a diff's removed lines */
	ROLE_COUNT
};

enum {
	THEME_BOLD = 1 << 0,
	THEME_DIM = 1 << 1,
	THEME_REVERSE = 1 << 2,
	THEME_UNDERLINE = 1 << 3,
	THEME_ITALIC = 1 << 4,
	THEME_STANDOUT = 1 << 5,
};

/* One colour: c256 for 256-colour terminals, c16 (0-15) for fewer; -1 is
 * the terminal's default. */
struct theme_color {
	short c256, c16;
};

struct theme_style {
	struct theme_color fg, bg;
	unsigned attrs;
};

struct theme {
	char name[64];
	struct theme_style role[ROLE_COUNT];
};

/* The role's name in theme files ("user-header"), or NULL. */
const char *theme_role_name(int role);

/* Fills T with a built-in theme ("default", "light", "mono"): true, or
 * false when NAME is not built in (T is then the default). */
bool theme_builtin(const char *name, struct theme *t);
/* The built-in text of a theme, as it would be in a file (tests compare it
 * with themes/NAME.theme). NULL when not built in. */
const char *theme_builtin_text(const char *name);

/* Parses a theme file's text over T (roles not mentioned are left alone).
 * Returns 0, or -1 with "line N: problem" in err. */
int theme_parse(const char *text, size_t len, struct theme *t, char *err, size_t errlen);

/* Finds and parses theme NAME as described above into T (starting from the
 * built-in default).  Returns 0, or -1 with a message in err (T is then the
 * built-in default, or mono when NAME was "mono"). */
int theme_load(const char *name, struct theme *t, char *err, size_t errlen);

/* Curses side: initialises colour pairs for T and stores each role's
 * attributes (pair included) in ATTRS[ROLE_COUNT] (curses attr_t values as
 * unsigned long).  USE_COLOR false: attributes only.  Call after
 * start_color() when colours are used. */
void theme_apply(const struct theme *t, bool use_color, unsigned long *attrs);

#endif
