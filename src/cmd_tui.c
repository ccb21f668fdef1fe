/*
 * cmd_tui.c - the full-screen chat as a mode of main.c (tui_main: what
 * must fail before the screen is taken fails here, with one line on
 * stderr), and `ttychat keys [--man]`: the chat's keys and commands,
 * printed from the very tables that drive the chat and its F1 help
 * (tui/cmds.c), as plain text or as man(7) source for ttychat(1).
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "chatopts.h"
#include "cmds.h"
#include "commands.h"
#include "tui.h"

int tui_main(struct chat_opts *o)
{
	static volatile sig_atomic_t no_stop;
	char *system = NULL, err[4400];
	int st = chatopts_read_system(o, &no_stop, &system, err, sizeof err);
	if (st) {
		fprintf(stderr, "ttychat: %s\n", err);
		return st;
	}
	/* a model named with -m that cannot be found: said before the screen
	 * is taken (without -m the chat opens anyway, with its picker) */
	if (o->f.model) {
		struct model_entry me;
		if (config_resolve_model(o->f.model, &me, err, sizeof err) != 0) {
			fprintf(stderr, "ttychat: %s\n", err);
			free(system);
			return EXIT_MODEL;
		}
		config_entry_free(&me);
	}
	struct tui_opts to = {.flags = o->f, .max_tokens = o->n_predict, .theme = o->theme};
	st = tui_run(&to);
	free(system);
	return st;
}

/* man(7) text: a leading dot or quote would be a request; backslashes
 * are escapes */
static void man_text(const char *s)
{
	if (s[0] == '.' || s[0] == '\'')
		fputs("\\&", stdout);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", stdout);
		else if (*s == '-')
			fputs("\\-", stdout);
		else
			putchar(*s);
	}
}

int cmd_keys(int argc, char **argv)
{
	bool man = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--man") == 0) {
			man = true;
		} else {
			fprintf(stderr, "usage: ttychat keys [--man]\n");
			return EXIT_USAGE;
		}
	}
	if (man) {
		printf(".SS Keys\n");
		for (size_t i = 0; i < tui_n_keys; i++) {
			if (!tui_keys[i].name)
				continue;
			printf(".TP\n.B ");
			man_text(tui_keys[i].name);
			printf("\n");
			man_text(tui_keys[i].help);
			printf("\n");
		}
		printf(".SS Commands\n");
		for (size_t i = 0; i < tui_n_cmds; i++) {
			printf(".TP\n.BR /");
			man_text(tui_cmds[i].name);
			if (tui_cmds[i].args[0]) {
				printf(" \" ");
				man_text(tui_cmds[i].args);
				printf("\"");
			}
			printf("\n");
			man_text(tui_cmds[i].help);
			if (tui_cmds[i].alias) {
				printf("; also /");
				man_text(tui_cmds[i].alias);
			}
			printf("\n");
		}
		return EXIT_OK;
	}
	printf("Keys of the full-screen chat:\n");
	for (size_t i = 0; i < tui_n_keys; i++)
		if (tui_keys[i].name)
			printf("  %-18s %s\n", tui_keys[i].name, tui_keys[i].help);
	printf("\nCommands (type them at the prompt):\n");
	for (size_t i = 0; i < tui_n_cmds; i++) {
		char name[64];
		snprintf(name, sizeof name, "/%s%s%s", tui_cmds[i].name, tui_cmds[i].args[0] ? " " : "",
			 tui_cmds[i].args);
		printf("  %-18s %s%s%s\n", name, tui_cmds[i].help, tui_cmds[i].alias ? "; also /" : "",
		       tui_cmds[i].alias ? tui_cmds[i].alias : "");
	}
	return EXIT_OK;
}
