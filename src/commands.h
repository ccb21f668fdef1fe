/*
 * commands.h - the subcommands of the ttychat binary.
 *
 * Each subcommand is one function with the shape of main(): it receives the
 * arguments after the subcommand name (argv[0] is the subcommand itself),
 * prints its own errors to stderr and returns the process exit status.
 * main.c owns the table that maps names to these functions and feeds --help.
 */
#ifndef TTYCHAT_COMMANDS_H
#define TTYCHAT_COMMANDS_H

#include <stdio.h>

/* Exit statuses shared by every mode (documented in ttychat(1)). */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,       /* generic failure (bad input file, I/O error) */
	EXIT_USAGE = 2,      /* bad flags or arguments */
	EXIT_MODEL = 3,      /* model not found or failed to load */
	EXIT_GENERATE = 4,   /* generation failed */
	EXIT_HISTORY = 5,    /* history locked or passphrase wrong */
	EXIT_DOWNLOAD = 6,   /* pull: download failed or checksum mismatch */
	EXIT_INTERRUPT = 130 /* SIGINT */
};

int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_history(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);

/* The chat's three modes, after main.c parsed its options (chatopts.h):
 * the full-screen chat (src/cmd_tui.c), and one-shot with the plain line
 * chat (src/oneshot.c). */
struct chat_opts;
int tui_main(struct chat_opts *o);
int oneshot_main(struct chat_opts *o);

#endif
