/*
 * cmd_tui.c - `ttychat keys [--man]`: the full-screen chat's keys and
 * commands, printed from the very tables that drive the chat and its F1
 * help (tui/cmds.c), as plain text or as man(7) source for ttychat(1).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cmds.h"
#include "commands.h"

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
