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

int cmds_set(struct tui_settings *st, const char *args, char *msg, size_t msglen)
{
	char key[32], val[64];
	size_t i = 0, k = 0;
	while (args[i] && blank(args[i]))
		i++;
	if (!args[i]) {
		cmds_settings_str(st, msg, msglen);
		return 0;
	}
	while (args[i] && !blank(args[i]) && k < sizeof key - 1)
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
	if (vl == 0 || vl >= sizeof val) {
		snprintf(msg, msglen, "/set %s: give one value", key);
		return -1;
	}
	memcpy(val, args + i, vl);
	val[vl] = '\0';
	double d;
	if (strcmp(key, "temp") == 0 || strcmp(key, "temperature") == 0) {
		if (parse_num(val, 0, 100, &d))
			goto range;
		st->s.temperature = (float)d;
		st->user_set |= SET_TEMP;
	} else if (strcmp(key, "top-k") == 0 || strcmp(key, "top_k") == 0) {
		if (parse_num(val, 0, 1 << 24, &d) || d != floor(d))
			goto range;
		st->s.top_k = (int32_t)d;
		st->user_set |= SET_TOPK;
	} else if (strcmp(key, "top-p") == 0 || strcmp(key, "top_p") == 0) {
		if (parse_num(val, 0, 1, &d))
			goto range;
		st->s.top_p = (float)d;
		st->user_set |= SET_TOPP;
	} else if (strcmp(key, "min-p") == 0 || strcmp(key, "min_p") == 0) {
		if (parse_num(val, 0, 1, &d))
			goto range;
		st->s.min_p = (float)d;
		st->user_set |= SET_MINP;
	} else if (strcmp(key, "repeat-penalty") == 0 || strcmp(key, "repeat_penalty") == 0 ||
		   strcmp(key, "rep") == 0) {
		if (parse_num(val, 0.01, 100, &d))
			goto range;
		st->s.repeat_penalty = (float)d;
		st->user_set |= SET_REP;
	} else if (strcmp(key, "seed") == 0) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(val, &end, 10);
		if (errno || *end || end == val || val[0] == '-')
			goto range;
		st->s.seed = v;
	} else if (strcmp(key, "max-tokens") == 0 || strcmp(key, "max_tokens") == 0) {
		if (parse_num(val, -1, 1 << 24, &d) || d != floor(d))
			goto range;
		st->max_tokens = (int32_t)d;
	} else if (strcmp(key, "wrap-code") == 0) {
		if (strcmp(val, "on") == 0)
			st->wrap_code = true;
		else if (strcmp(val, "off") == 0)
			st->wrap_code = false;
		else
			goto range;
	} else if (strcmp(key, "ctrl-c") == 0) {
		if (strcmp(val, "quit") == 0)
			st->ctrl_c_quits = true;
		else if (strcmp(val, "stop") == 0)
			st->ctrl_c_quits = false;
		else
			goto range;
	} else {
		snprintf(msg, msglen, "/set: unknown setting '%s' (see /help)", key);
		return -1;
	}
	snprintf(msg, msglen, "%s = %s", key, val);
	return 0;
range:
	snprintf(msg, msglen, "/set %s: '%s' is not a valid value", key, val);
	return -1;
}
