/*
 * chatopts.h - the command line of the chat itself (`ttychat [-m MODEL]
 * [-p TEXT] [OPTIONS]`), shared by its three modes: the full-screen chat,
 * one-shot, and the plain line chat.  main.c parses it once, asks
 * chatopts_wants_tui() which mode it is, and hands the result to tui_main()
 * (src/cmd_tui.c) or oneshot_main() (src/oneshot.c).
 *
 * The settings among the options (model, sampling, context, KV type,
 * device, threads, system prompt) land in a struct session_flags, the
 * strongest source of src/session.h; the rest is what a mode does with
 * them.  Strings point into argv, or into the struct (the remote spec).
 *
 * Functions print their errors to stderr ("ttychat: --flag: ...") and
 * return exit statuses (commands.h); one thread.
 */
#ifndef TTYCHAT_CHATOPTS_H
#define TTYCHAT_CHATOPTS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "session.h"

#define CHATOPTS_STOP_MAX 32 /* --stop strings */

enum chat_out { CHAT_OUT_TEXT, CHAT_OUT_JSON_LINES, CHAT_OUT_JSON_FINAL };

struct chat_opts {
	struct session_flags f;    /* f.model: -m, or the remote spec --remote makes; f.raw: --no-template;
				      f.system: set by chatopts_read_system() */
	const char *system_arg;    /* --system as given: TEXT or @FILE */
	const char *prompt;        /* -p; "-" reads stdin */
	const char *model_arg;     /* -m as given (the server's model with --remote) */
	const char *theme;
	const char *continue_id;
	const char *remote;        /* --remote URL */
	const char *grammar_file;  /* --grammar FILE */
	const char *schema_file;   /* --json-schema FILE */
	const char *tools_file;    /* --tools FILE: an OpenAI tools array */
	const char *tool_choice;   /* --tool-choice: auto (NULL), none, required, or a function's name */
	int n_predict;             /* -n; -1 no limit */
	bool verbose, save;
	enum chat_out out;
	const char *stop[CHATOPTS_STOP_MAX + 1]; /* NULL-terminated */
	int n_stop;
	/* thinking models: --think, --reasoning-effort, --reasoning-budget
	 * (0 = none), --show-reasoning (to stderr), --ignore-eos */
	int think;                 /* enum engine_think */
	const char *reasoning_effort;
	int reasoning_budget;
	bool show_reasoning, ignore_eos;
	char remote_spec[4096];
};

/* Defaults: nothing set, a fresh sampling seed. */
void chatopts_init(struct chat_opts *o);
/* -1 to go on, else the exit status (0 after --help or --version). */
int chatopts_parse(int argc, char **argv, struct chat_opts *o);
/* The options' help text. */
void chatopts_usage(FILE *out);
/* The KV cache options shared by the chat, serve and perplexity commands:
 * OPT is "kv-type", "cache-type-k", "cache-type-v" or "kv-rotation",
 * ARG its value, stored in F.  0, or EXIT_USAGE after one line on stderr
 * (PROG: "ttychat", "ttychat serve" ...). */
int chatopts_kv_flag(struct session_flags *f, const char *prog, const char *opt, const char *arg);
/* The help lines of those options. */
#define CHATOPTS_KV_HELP \
	"      --kv-type TYPE       KV cache type of K and V: f16 (default), q8_0, q5_0, q5_1,\n" \
	"                           q4_0, q4_1, iq4_nl, q3r (3.25 bits, ttychat's own)\n" \
	"      --cache-type-k TYPE  the K cache's type alone (beats --kv-type)\n" \
	"      --cache-type-v TYPE  the V cache's type alone (beats --kv-type)\n" \
	"      --kv-rotation on|off rotate K/V rows of the types under 8 bits per head (default on)\n"

/* True for the full-screen chat: no prompt, a terminal on both ends, plain
 * text out, nothing to save, and not in CI. */
bool chatopts_wants_tui(const struct chat_opts *o);
/* CI=true (or any value but "", "0", "false"): never interactive. */
bool chatopts_in_ci(void);

/* Reads FD to its end (at most MAX bytes) into *OUT (malloc'd,
 * NUL-terminated).  0, or an errno value: EFBIG past MAX, EINTR when *STOP
 * became nonzero (a signal).  A closed descriptor reads as empty. */
int chatopts_read_fd(int fd, size_t max, volatile sig_atomic_t *stop, char **out, size_t *len);
/* Reads --grammar FILE, or --json-schema FILE turned into a grammar, into
 * *OUT (malloc'd; NULL when neither is given) and checks that it
 * compiles.  0, or an exit status with the message in ERR ("--grammar
 * FILE: line 3: ...", "--json-schema FILE: at /properties/x: ..."). */
int chatopts_read_grammar(const struct chat_opts *o, volatile sig_atomic_t *stop, char **out, char *err,
			  size_t errlen);
/* Resolves --system (TEXT, "@FILE" for a file's contents, "@@" for a
 * literal "@") into *OUT (malloc'd; NULL when not given) and points
 * o->f.system at it.  0, or an exit status with the message in ERR. */
int chatopts_read_system(struct chat_opts *o, volatile sig_atomic_t *stop, char **out, char *err, size_t errlen);

#endif
