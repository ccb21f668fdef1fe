/*
 * main.c - entry point: picks the mode from the first argument.
 *
 * `ttychat SUBCOMMAND ...` runs one of the table's subcommands; anything else
 * (flags, or no argument) is the chat itself, in one of its three modes:
 * the full-screen chat (a terminal on both ends and no prompt), one-shot
 * (a prompt, or text on stdin), or the plain line chat (a terminal on
 * stdin only).  The table below is the single source for the subcommand
 * list in --help.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chatopts.h"
#include "commands.h"
#include "termsafe.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *args;
	const char *summary;
};

static const struct command commands[] = {
	{"inspect", cmd_inspect, "FILE [--tensors] [--json]", "describe a GGUF model file"},
	{"template", cmd_template, "-m FILE [--template FILE] [--no-generation-prompt]", "render a chat (JSON messages on stdin) with a model's template"},
	{"history", cmd_history, "list|show|search|export|rm|repair|passwd", "browse, export, repair or remove saved chats; change the passphrase"},
	{"bench", cmd_bench, "-m MODEL [-p N] [-n N] [-t T] [-r R] [--device DEV] [--json]", "prefill and decode speed, llama-bench style"},
	{"tokenize", cmd_tokenize, "-m MODEL [--no-bos] [--special] [--pieces]", "print the token ids of stdin"},
	{"detokenize", cmd_detokenize, "-m MODEL [--special]", "print the text of token ids on stdin"},
	{"keys", cmd_keys, "[--man]", "the full-screen chat's keys and commands (--man: as man(7) text)"},
	{"models", cmd_models, "[--json] [--names]", "list the models.d entries and model files"},
	{"pull", cmd_pull, "NAME|URL|ORG/REPO:QUANT [-o FILE] [--sha256 HEX] [--force] [-q]", "download a model or a Hugging Face repository's quant (resumable, checksum verified)"},
	{"serve", cmd_serve, "[--host ADDR] [--port N] [-m MODEL] [--api-key-file FILE] [--max-queue N]", "an OpenAI-compatible HTTP server on the local model"},
	{"perplexity", cmd_perplexity, "-m MODEL -f TEXT [-c N] [-b N] [--chunks N] [-t T] [--kl-divergence-base FILE [--kl-divergence]]", "perplexity of a text and KL divergence from a base model, llama-perplexity style"},
	/* more commands */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ttychat [-m MODEL] [OPTIONS]          the full-screen chat (a terminal on both ends)\n"
		"       ttychat [-m MODEL] -p TEXT [OPTIONS]  one-shot: the reply on stdout\n"
		"       ttychat COMMAND [ARGS]                ('ttychat COMMAND --help' for its options)\n"
		"\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(out, "  %s %s\n        %s\n", commands[i].name, commands[i].args, commands[i].summary);
	fprintf(out, "\n");
	chatopts_usage(out);
	fprintf(out, "\nman ttychat: every option and command, the chat's keys, models.d, files,\n"
		     "environment and examples.\n");
}

/* The chat itself: its options, then the mode. */
static int chat(int argc, char **argv)
{
	struct chat_opts *o = malloc(sizeof *o);
	if (!o) {
		fprintf(stderr, "ttychat: out of memory\n");
		return EXIT_FAIL;
	}
	chatopts_init(o);
	int status = chatopts_parse(argc, argv, o);
	if (status < 0)
		status = chatopts_wants_tui(o) ? tui_main(o) : oneshot_main(o);
	free(o);
	return status;
}

int main(int argc, char **argv)
{
	/* first: every line on stderr quotes values from files or argv */
	termsafe_install();
	if (argc >= 2) {
		for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
			if (strcmp(argv[1], commands[i].name) == 0)
				return commands[i].run(argc - 1, argv + 1);
		if (strcmp(argv[1], "--version") == 0) {
			printf("ttychat %s\n", PACKAGE_VERSION);
			return EXIT_OK;
		}
		if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
			usage(stdout);
			return EXIT_OK;
		}
	}
	/* no subcommand: the chat itself */
	if (argc < 2 || argv[1][0] == '-')
		return chat(argc, argv);
	fprintf(stderr, "ttychat: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
