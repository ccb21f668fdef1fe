/*
 * cmds.c - the key and command tables and /set (see cmds.h).
 *
 * The order of the rows is the order help shows them in.  Numbers typed to
 * /set are range-checked like the command-line flags of one-shot mode.
 */
#include "config.h"

#include "cmds.h"

#include <curses.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct tui_key tui_keys[] = {
	{0, "Enter", "send the message", ACT_NONE, 0},
	{0, "Alt-Enter, Ctrl-J", "new line inside the message", ACT_NONE, 0},
	{27, "Esc", "stop the reply; close a box; cancel /edit", ACT_CANCEL, 0},
	{3, "Ctrl-C", "stop the reply; at an idle prompt, quit", ACT_INTERRUPT, 0},
	{KEY_F(1), "F1, ?", "this help (? when the input is empty)", ACT_HELP, 0},
	{'?', NULL, NULL, ACT_HELP, KEYF_EMPTY},
	{KEY_F(2), "F2", "pick a model", ACT_PICKER, 0},
	{KEY_F(3), "F3", "conversations: open, search, rename, delete, new", ACT_CHATS, 0},
	{KEY_F(4), "F4", "show or hide the sidebar", ACT_SIDEBAR, 0},
	{KEY_PPAGE, "PgUp, PgDn", "scroll the conversation", ACT_PGUP, 0},
	{KEY_NPAGE, NULL, NULL, ACT_PGDN, 0},
	{KEY_HOME, "Home, End", "top / bottom of the conversation (input empty)", ACT_TOP, KEYF_EMPTY},
	{KEY_END, NULL, NULL, ACT_BOTTOM, KEYF_EMPTY},
	{12, "Ctrl-L", "redraw the screen", ACT_REDRAW, 0},
	{26, "Ctrl-Z", "suspend (fg resumes)", ACT_SUSPEND, 0},
	{KEY_F(5), "F5", "thinking models: stop thinking and answer now", ACT_ANSWER_NOW, 0},
	{KEY_F(6), "F6", "fold or unfold the reasoning of every reply", ACT_FOLD, 0},
	{0, "Up, Down", "previous / next input (history)", ACT_NONE, 0},
	{0, "Ctrl-R", "search the input history", ACT_NONE, 0},
	{0, "Ctrl-X Ctrl-E", "edit the input in $VISUAL / $EDITOR", ACT_NONE, 0},
	{0, "Ctrl-D", "quit (on an empty input)", ACT_NONE, 0},
	{0, "other keys", "GNU readline (emacs keys, ~/.inputrc)", ACT_NONE, 0},
};
const size_t tui_n_keys = sizeof tui_keys / sizeof tui_keys[0];

const struct tui_cmd tui_cmds[] = {
	{"help", NULL, "", "this help", ACT_HELP},
	{"model", NULL, "[NAME]", "pick a model (F2), or load NAME", ACT_MODEL},
	{"regen", NULL, "", "regenerate the last reply", ACT_REGEN},
	{"edit", NULL, "", "edit the last message and regenerate", ACT_EDIT},
	{"new", NULL, "", "start a new conversation (the current one stays saved)", ACT_NEW},
	{"clear", NULL, "", "start a new conversation with the same system prompt", ACT_CLEAR},
	{"chats", NULL, "[TEXT]", "the saved conversations (F3), or those containing TEXT", ACT_CHATS},
	{"rename", NULL, "TITLE", "rename this conversation", ACT_RENAME},
	{"system", NULL, "[TEXT]", "set (or with no text, clear) the system prompt", ACT_SYSTEM},
	{"set", NULL, "[KEY VALUE]", "temp, top-k, top-p, min-p, repeat-penalty, seed, max-tokens, wrap-code on|off, "
				      "ctrl-c quit|stop; no argument lists them",
	 ACT_SET},
	{"think", NULL, "on|off|low|medium|high|default", "thinking models: think or not, and how hard", ACT_THINK},
	{"budget", NULL, "N|off", "close the reasoning after N tokens so the model answers", ACT_BUDGET},
	{"copy", NULL, "[code]", "copy the last reply (or its last code block) to the clipboard (OSC 52)", ACT_COPY},
	{"theme", NULL, "NAME", "switch the colour theme (default, light, mono, or yours)", ACT_THEME},
	{"quit", "exit", "", "quit", ACT_QUIT},
};
const size_t tui_n_cmds = sizeof tui_cmds / sizeof tui_cmds[0];

const struct tui_key *cmds_key(int code, bool input_empty)
{
	if (code == 0)
		return NULL;
	for (size_t i = 0; i < tui_n_keys; i++)
		if (tui_keys[i].code == code && (!(tui_keys[i].flags & KEYF_EMPTY) || input_empty))
			return &tui_keys[i];
	return NULL;
}

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

const struct tui_cmd *cmds_find(const char *line, const char **args, size_t *args_len)
{
	if (line[0] != '/')
		return NULL;
	const char *name = line + 1;
	size_t nl = 0;
	while (name[nl] && !blank(name[nl]))
		nl++;
	const char *a = name + nl;
	while (*a && blank(*a))
		a++;
	size_t al = strlen(a);
	while (al > 0 && blank(a[al - 1]))
		al--;
	*args = a;
	*args_len = al;
	for (size_t i = 0; i < tui_n_cmds; i++) {
		const struct tui_cmd *c = &tui_cmds[i];
		if ((strlen(c->name) == nl && strncmp(name, c->name, nl) == 0) ||
		    (c->alias && strlen(c->alias) == nl && strncmp(name, c->alias, nl) == 0))
			return c;
	}
	return NULL;
}

static int parse_num(const char *v, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(d) || d < lo || d > hi)
		return -1;
	*out = d;
	return 0;
}

void cmds_settings_str(const struct tui_settings *st, char *buf, size_t n)
{
	char mt[24] = "none";
	if (st->max_tokens > 0)
		snprintf(mt, sizeof mt, "%" PRId32, st->max_tokens);
	snprintf(buf, n,
		 "temp %.2f, top-k %" PRId32 ", top-p %.2f, min-p %.2f, repeat-penalty %.2f, seed %" PRIu64
		 ", max-tokens %s, wrap-code %s, ctrl-c %s",
		 (double)st->s.temperature, st->s.top_k, (double)st->s.top_p, (double)st->s.min_p,
		 (double)st->s.repeat_penalty, st->s.seed, mt, st->wrap_code ? "on" : "off",
		 st->ctrl_c_quits ? "quit" : "stop");
}

/* ---- /set: one row per setting ---------------------------------------------- */

static int set_temp(struct tui_settings *st, const char *v)
{
	double d;
	if (parse_num(v, 0, 100, &d))
		return -1;
	st->s.temperature = (float)d;
	st->user_set |= SET_TEMP;
	return 0;
}

static int set_top_k(struct tui_settings *st, const char *v)
{
	double d;
	if (parse_num(v, 0, 1 << 24, &d) || d != floor(d))
		return -1;
	st->s.top_k = (int32_t)d;
	st->user_set |= SET_TOPK;
	return 0;
}

static int set_top_p(struct tui_settings *st, const char *v)
{
	double d;
	if (parse_num(v, 0, 1, &d))
		return -1;
	st->s.top_p = (float)d;
	st->user_set |= SET_TOPP;
	return 0;
}

static int set_min_p(struct tui_settings *st, const char *v)
{
	double d;
	if (parse_num(v, 0, 1, &d))
		return -1;
	st->s.min_p = (float)d;
	st->user_set |= SET_MINP;
	return 0;
}

static int set_repeat(struct tui_settings *st, const char *v)
{
	double d;
	if (parse_num(v, 0.01, 100, &d))
		return -1;
	st->s.repeat_penalty = (float)d;
	st->user_set |= SET_REP;
	return 0;
}

static int set_seed(struct tui_settings *st, const char *v)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || *end || end == v || v[0] == '-')
		return -1;
	st->s.seed = n;
	return 0;
}

static int set_max_tokens(struct tui_settings *st, const char *v)
{
	double d;
	if (parse_num(v, -1, 1 << 24, &d) || d != floor(d))
		return -1;
	st->max_tokens = (int32_t)d;
	return 0;
}

/* V is ON or OFF: *B becomes true or false. */
static int set_bool(bool *b, const char *v, const char *on, const char *off)
{
	if (strcmp(v, on) == 0)
		*b = true;
	else if (strcmp(v, off) == 0)
		*b = false;
	else
		return -1;
	return 0;
}

static int set_wrap_code(struct tui_settings *st, const char *v)
{
	return set_bool(&st->wrap_code, v, "on", "off");
}

static int set_ctrl_c(struct tui_settings *st, const char *v)
{
	return set_bool(&st->ctrl_c_quits, v, "quit", "stop");
}

static const struct {
	const char *names[3]; /* what /set accepts */
	int (*apply)(struct tui_settings *st, const char *value); /* 0, or -1: not a valid value */
} set_rows[] = {
	{{"temp", "temperature"}, set_temp},
	{{"top-k", "top_k"}, set_top_k},
	{{"top-p", "top_p"}, set_top_p},
	{{"min-p", "min_p"}, set_min_p},
	{{"repeat-penalty", "repeat_penalty", "rep"}, set_repeat},
	{{"seed"}, set_seed},
	{{"max-tokens", "max_tokens"}, set_max_tokens},
	{{"wrap-code"}, set_wrap_code},
	{{"ctrl-c"}, set_ctrl_c},
};

/* ARGS as "KEY VALUE" (blanks around them dropped).  0, or -1 with the
 * problem in MSG. */
static int split_set(const char *args, char key[32], char val[64], char *msg, size_t msglen)
{
	size_t i = 0, k = 0;
	while (args[i] && blank(args[i]))
		i++;
	while (args[i] && !blank(args[i]) && k < 31)
		key[k++] = args[i++];
	key[k] = '\0';
	if (args[i] && !blank(args[i])) {
		snprintf(msg, msglen, "/set: unknown setting (see /help)");
		return -1;
	}
	while (args[i] && blank(args[i]))
		i++;
	size_t vl = strlen(args + i);
	while (vl > 0 && blank(args[i + vl - 1]))
		vl--;
	if (vl == 0 || vl >= 64) {
		snprintf(msg, msglen, "/set %s: give one value", key);
		return -1;
	}
	memcpy(val, args + i, vl);
	val[vl] = '\0';
	return 0;
}

int cmds_set(struct tui_settings *st, const char *args, char *msg, size_t msglen)
{
	size_t i = 0;
	while (args[i] && blank(args[i]))
		i++;
	if (!args[i]) {
		cmds_settings_str(st, msg, msglen);
		return 0;
	}
	char key[32], val[64];
	if (split_set(args, key, val, msg, msglen) != 0)
		return -1;
	for (size_t r = 0; r < sizeof set_rows / sizeof set_rows[0]; r++) {
		for (size_t n = 0; n < 3 && set_rows[r].names[n]; n++) {
			if (strcmp(key, set_rows[r].names[n]) != 0)
				continue;
			if (set_rows[r].apply(st, val) != 0) {
				snprintf(msg, msglen, "/set %s: '%s' is not a valid value", key, val);
				return -1;
			}
			snprintf(msg, msglen, "%s = %s", key, val);
			return 0;
		}
	}
	snprintf(msg, msglen, "/set: unknown setting '%s' (see /help)", key);
	return -1;
}

void cmds_think_str(const struct tui_settings *st, char *buf, size_t n)
{
	char b[32] = "";
	if (st->budget > 0)
		snprintf(b, sizeof b, ", budget %" PRId32, st->budget);
	snprintf(buf, n, "%s%s%s%s",
		 st->think == ENGINE_THINK_ON ? "on" : st->think == ENGINE_THINK_OFF ? "off" : "model default",
		 st->effort[0] ? ", effort " : "", st->effort, b);
}

int cmds_think(struct tui_settings *st, const char *args, char *msg, size_t msglen)
{
	char now[64];
	if (!args[0]) {
		cmds_think_str(st, now, sizeof now);
		snprintf(msg, msglen, "thinking: %s", now);
		return 0;
	}
	if (strcmp(args, "on") == 0) {
		st->think = ENGINE_THINK_ON;
	} else if (strcmp(args, "off") == 0) {
		st->think = ENGINE_THINK_OFF;
	} else if (strcmp(args, "default") == 0) {
		st->think = ENGINE_THINK_DEFAULT;
		st->effort[0] = '\0';
	} else if (strcmp(args, "low") == 0 || strcmp(args, "medium") == 0 || strcmp(args, "high") == 0) {
		st->think = ENGINE_THINK_ON;
		snprintf(st->effort, sizeof st->effort, "%s", args);
	} else {
		snprintf(msg, msglen, "/think: '%.40s' is not on, off, low, medium, high or default", args);
		return -1;
	}
	st->think_set = true;
	cmds_think_str(st, now, sizeof now);
	snprintf(msg, msglen, "thinking: %s", now);
	return 0;
}

int cmds_budget(struct tui_settings *st, const char *args, char *msg, size_t msglen)
{
	double d;
	if (!args[0]) {
	} else if (strcmp(args, "off") == 0) {
		st->budget = 0;
	} else if (parse_num(args, 1, 1 << 24, &d) == 0 && d == (double)(int32_t)d) {
		st->budget = (int32_t)d;
	} else {
		snprintf(msg, msglen, "/budget: '%.40s' is not a number of tokens (1 to 16777216) or off", args);
		return -1;
	}
	if (args[0])
		st->think_set = true;
	if (st->budget > 0)
		snprintf(msg, msglen, "reasoning budget: %" PRId32 " tokens", st->budget);
	else
		snprintf(msg, msglen, "reasoning budget: none");
	return 0;
}
