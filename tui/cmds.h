/*
 * cmds.h - the TUI's keys and slash commands, as tables.
 *
 * One table of keys and one of commands drive everything about them: the
 * key dispatch in the main loop, the F1 help screen, the hints line, and
 * `ttychat keys` (which prints them for the manual).  Keys that readline
 * handles (editing, history) are listed with code 0: documentation only.
 *
 * `/set` settings live here too because they are parsed from command text;
 * the parsing is pure and unit-tested.  UI thread only; no state.
 */
#ifndef TTYCHAT_TUI_CMDS_H
#define TTYCHAT_TUI_CMDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

enum tui_act {
	ACT_NONE,     /* documentation only: readline does it */
	ACT_HELP,
	ACT_PICKER,
	ACT_CHATS,
	ACT_SIDEBAR,
	ACT_CANCEL,   /* Esc: stop the reply, close a box, cancel /edit */
	ACT_INTERRUPT,/* Ctrl-C: stop the reply, or quit at the prompt */
	ACT_PGUP,
	ACT_PGDN,
	ACT_TOP,
	ACT_BOTTOM,
	ACT_REDRAW,
	ACT_SUSPEND,
	ACT_ANSWER_NOW, /* a thinking model: close its reasoning now */
	ACT_FOLD,       /* fold or unfold every reply's reasoning */
	/* commands */
	ACT_QUIT,
	ACT_MODEL,
	ACT_REGEN,
	ACT_EDIT,
	ACT_NEW,
	ACT_CLEAR,
	ACT_SYSTEM,
	ACT_SET,
	ACT_THEME,
	ACT_RENAME,
	ACT_COPY,
	ACT_THINK,
	ACT_BUDGET,
};

enum {
	KEYF_EMPTY = 1 << 0, /* only when the input line is empty (else it is text) */
};

struct tui_key {
	int code;            /* curses key code or byte; 0: handled by readline */
	const char *name;    /* as shown in help; NULL: an alias of the row above */
	const char *help;
	enum tui_act act;
	unsigned flags;
};

struct tui_cmd {
	const char *name;    /* without the slash */
	const char *alias;   /* or NULL */
	const char *args;
	const char *help;
	enum tui_act act;
};

extern const struct tui_key tui_keys[];
extern const size_t tui_n_keys;
extern const struct tui_cmd tui_cmds[];
extern const size_t tui_n_cmds;

/* The key row for CODE (with input empty or not), or NULL. */
const struct tui_key *cmds_key(int code, bool input_empty);
/* LINE starts with '/': the command it names (NULL if none) and, in *ARGS,
 * the argument text with surrounding blanks removed (points into LINE). */
const struct tui_cmd *cmds_find(const char *line, const char **args, size_t *args_len);

/* Settings changed by /set. */
enum {
	SET_TEMP = 1 << 0,
	SET_TOPK = 1 << 1,
	SET_TOPP = 1 << 2,
	SET_MINP = 1 << 3,
	SET_REP = 1 << 4,
};

struct tui_settings {
	struct engine_sampling s;
	int32_t max_tokens;        /* <= 0: no limit */
	bool wrap_code;            /* wrap long lines in code blocks */
	bool ctrl_c_quits;         /* Ctrl-C at an idle prompt quits */
	unsigned user_set;         /* SET_* the user chose (model defaults leave them) */
	/* thinking models (/think, /budget) */
	enum engine_think think;
	char effort[8];            /* reasoning_effort: "low", "medium", "high"; "" template's */
	int32_t budget;            /* reasoning tokens; <= 0: no limit */
	bool think_set;            /* chosen (/think, /budget, a reopened conversation): models.d
				      defaults leave them */
};

/* Applies "/set KEY VALUE" (ARGS is "KEY VALUE").  Returns 0 with a short
 * confirmation in MSG, or -1 with the problem in MSG.  Empty ARGS lists
 * the settings in MSG and returns 0. */
int cmds_set(struct tui_settings *st, const char *args, char *msg, size_t msglen);
/* Applies "/think on|off|low|medium|high|default" (low, medium and high
 * also turn thinking on) and "/budget N|off".  0 with a confirmation in
 * MSG, or -1 with the problem in MSG; empty ARGS says the current value. */
int cmds_think(struct tui_settings *st, const char *args, char *msg, size_t msglen);
int cmds_budget(struct tui_settings *st, const char *args, char *msg, size_t msglen);
/* The thinking settings in a few words ("on, effort high, budget 512"). */
void cmds_think_str(const struct tui_settings *st, char *buf, size_t n);

/* One line describing the settings. */
void cmds_settings_str(const struct tui_settings *st, char *buf, size_t n);

#endif
