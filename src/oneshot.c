/*
 * oneshot.c - `ttychat -m MODEL -p TEXT` and the plain line chat.
 *
 * Both drive the engine through engine.h exactly as the TUI does: load,
 * submit the whole conversation, stream TOKEN events to stdout.  With -p
 * (or text on a non-tty stdin) one reply is printed and the process exits;
 * with neither, on a terminal, a readline loop keeps a conversation going
 * (its KV cache is reused turn after turn).
 *
 * SIGINT cancels a running reply (the engine stops within one token; what
 * was generated stays printed) and then exits with 130; at the line prompt
 * it just quits.  Output to a terminal is filtered so that control
 * characters from the model show as visible placeholders instead of acting
 * on the terminal.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "catalog.h"
#include "commands.h"
#include "engine.h"
#include "tui.h"

static volatile sig_atomic_t got_sigint;
static engine *volatile sig_engine;

static void on_sigint(int sig)
{
	(void)sig;
	got_sigint = 1;
	if (sig_engine)
		engine_cancel(sig_engine);
}

struct opts {
	const char *model;
	const char *prompt;
	const char *system;
	int n_predict;
	int n_ctx;
	int n_threads;
	bool verbose;
	bool kv_q8;
	const char *theme;
	struct engine_sampling s;
	bool temp_set, topk_set, topp_set, minp_set, rep_set;
};

/* Writes model text to a terminal with C0/C1 controls (but newline and tab)
 * shown as visible symbols; to a pipe it goes through untouched. */
static void put_text(const char *s, size_t n, bool tty)
{
	if (!tty) {
		fwrite(s, 1, n, stdout);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n' || c == '\t') {
			putchar(c);
		} else if (c < 0x20 || c == 0x7f) {
			/* U+2400 block: "control pictures" */
			unsigned cp = c == 0x7f ? 0x2421 : 0x2400 + c;
			putchar((int)(0xe0 | (cp >> 12)));
			putchar((int)(0x80 | ((cp >> 6) & 0x3f)));
			putchar((int)(0x80 | (cp & 0x3f)));
		} else if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
			   (unsigned char)s[i + 1] < 0xa0) {
			/* C1 controls (U+0080..U+009F) become U+FFFD */
			fputs("\xef\xbf\xbd", stdout);
			i++;
		} else {
			putchar(c);
		}
	}
}

static int parse_int(const char *s, const char *flag, long lo, long hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi) {
		fprintf(stderr, "ttychat: %s: '%s' is not an integer in [%ld, %ld]\n", flag, s, lo, hi);
		return -1;
	}
	*out = (int)v;
	return 0;
}

static int parse_float(const char *s, const char *flag, double lo, double hi, float *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || end == s || !(v >= lo && v <= hi)) {
		fprintf(stderr, "ttychat: %s: '%s' is not a number in [%g, %g]\n", flag, s, lo, hi);
		return -1;
	}
	*out = (float)v;
	return 0;
}

void oneshot_usage(FILE *out)
{
	fprintf(out,
		"usage: ttychat [-m MODEL] [-p TEXT] [options]\n"
		"  -m, --model MODEL      model file or models.d name (default: %s)\n"
		"  -p, --prompt TEXT      prompt; '-' reads it from stdin\n"
		"      --system TEXT      system message\n"
		"  -n, --max-tokens N     stop after N tokens (default: until the model ends its turn)\n"
		"      --temp T           temperature (0 = greedy)\n"
		"      --top-k K, --top-p P, --min-p P, --repeat-penalty R\n"
		"      --seed N           sampling seed\n"
		"  -c, --ctx-size N       context size in tokens\n"
		"  -t, --threads N        compute threads (default: all cores)\n"
		"      --kv-type TYPE     f16 (default) or q8_0\n"
		"      --theme NAME       colours of the full-screen chat: default, light, mono, or yours\n"
		"  -v, --verbose          progress and statistics on stderr\n",
		config_default_model());
}

/* Reads all of stdin (bounded). */
static char *read_stdin(size_t max)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		return NULL;
	for (;;) {
		if (n + 1 >= cap) {
			if (cap >= max) {
				free(buf);
				return NULL;
			}
			cap *= 2;
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				return NULL;
			}
			buf = nb;
		}
		size_t r = fread(buf + n, 1, cap - 1 - n, stdin);
		n += r;
		if (r == 0)
			break;
	}
	buf[n] = '\0';
	return buf;
}

static bool wait_loaded(engine *e, const char *path, bool verbose, struct engine_model_info *info)
{
	struct engine_event ev;
	for (;;) {
		if (!engine_event_wait(e, &ev, -1))
			continue;
		if (ev.type == ENGINE_EV_LOADED) {
			*info = ev.info;
			return true;
		}
		if (ev.type == ENGINE_EV_ERROR) {
			fprintf(stderr, "ttychat: %s\n", ev.message);
			return false;
		}
		if (verbose && ev.type == ENGINE_EV_LOAD_PROGRESS)
			fprintf(stderr, "loading %s: %3.0f%%\n", path, ev.progress * 100.0);
		engine_event_clear(&ev);
	}
}

/* Streams one reply; returns its text (malloc'd) or NULL on error.
 * *stop receives the stop reason. */
static char *stream_reply(engine *e, int req, bool verbose, enum engine_stop_reason *stop, int *status)
{
	bool tty = isatty(STDOUT_FILENO);
	size_t cap = 1024, len = 0;
	char *text = malloc(cap);
	struct engine_event ev;
	*status = EXIT_OK;
	for (;;) {
		if (!engine_event_wait(e, &ev, -1))
			continue;
		if (ev.request != req) {
			engine_event_clear(&ev);
			continue;
		}
		switch (ev.type) {
		case ENGINE_EV_TOKEN:
			put_text(ev.text, ev.text_len, tty);
			fflush(stdout);
			if (text && len + ev.text_len + 1 > cap) {
				while (len + ev.text_len + 1 > cap)
					cap *= 2;
				char *nt = realloc(text, cap);
				if (!nt) {
					free(text);
					text = NULL;
				} else {
					text = nt;
				}
			}
			if (text) {
				memcpy(text + len, ev.text, ev.text_len);
				len += ev.text_len;
				text[len] = '\0';
			}
			break;
		case ENGINE_EV_CONTEXT_SHIFT:
			fprintf(stderr, "ttychat: %s\n", ev.message);
			break;
		case ENGINE_EV_PREFILL_PROGRESS:
			if (verbose)
				fprintf(stderr, "prefill: %3.0f%%\n", ev.progress * 100.0);
			break;
		case ENGINE_EV_DONE:
			*stop = ev.stop;
			if (verbose) {
				const struct engine_stats *s = &ev.stats;
				fprintf(stderr,
					"\n[prompt %u tokens (%u reused, %u computed) %.1f tok/s | reply %u tokens %.1f tok/s | "
					"first token %.0f ms | context %u/%u]\n",
					s->prompt_tokens, s->prompt_reused, s->prompt_computed, s->prefill_tps,
					s->gen_tokens, s->decode_tps, s->ttft_ms, s->ctx_used, s->ctx_size);
			}
			if (text && len == 0)
				text[0] = '\0';
			return text ? text : strdup("");
		case ENGINE_EV_ERROR:
			fprintf(stderr, "ttychat: %s\n", ev.message);
			*status = EXIT_GENERATE;
			free(text);
			return NULL;
		default:
			break;
		}
		engine_event_clear(&ev);
	}
}

struct convo {
	struct engine_msg *m;
	size_t n, cap;
};

static int convo_add(struct convo *c, const char *role, const char *content)
{
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 8;
		struct engine_msg *nm = realloc(c->m, nc * sizeof *nm);
		if (!nm)
			return -1;
		c->m = nm;
		c->cap = nc;
	}
	char *r = strdup(role), *t = strdup(content);
	if (!r || !t) {
		free(r);
		free(t);
		return -1;
	}
	c->m[c->n].role = r;
	c->m[c->n].content = t;
	c->n++;
	return 0;
}

static void convo_free(struct convo *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free((char *)c->m[i].role);
		free((char *)c->m[i].content);
	}
	free(c->m);
}

int cmd_oneshot(int argc, char **argv)
{
	struct opts o = {.model = NULL, .n_predict = -1};
	engine_sampling_default(&o.s);
	/* a fresh seed per run unless --seed fixes one */
	{
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		o.s.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
	}
	enum { O_SYSTEM = 1000, O_TEMP, O_SEED, O_TOPK, O_TOPP, O_MINP, O_REP, O_KV, O_THEME, O_HELP };
	static const struct option longopts[] = {
		{"model", required_argument, NULL, 'm'},
		{"prompt", required_argument, NULL, 'p'},
		{"max-tokens", required_argument, NULL, 'n'},
		{"ctx-size", required_argument, NULL, 'c'},
		{"threads", required_argument, NULL, 't'},
		{"verbose", no_argument, NULL, 'v'},
		{"system", required_argument, NULL, O_SYSTEM},
		{"temp", required_argument, NULL, O_TEMP},
		{"seed", required_argument, NULL, O_SEED},
		{"top-k", required_argument, NULL, O_TOPK},
		{"top-p", required_argument, NULL, O_TOPP},
		{"min-p", required_argument, NULL, O_MINP},
		{"repeat-penalty", required_argument, NULL, O_REP},
		{"kv-type", required_argument, NULL, O_KV},
		{"theme", required_argument, NULL, O_THEME},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:p:n:c:t:vh", longopts, NULL)) != -1) {
		int iv;
		switch (c) {
		case 'm': o.model = optarg; break;
		case 'p': o.prompt = optarg; break;
		case 'n':
			if (parse_int(optarg, "-n", -1, INT_MAX, &o.n_predict))
				return EXIT_USAGE;
			break;
		case 'c':
			if (parse_int(optarg, "-c", 16, 1 << 24, &o.n_ctx))
				return EXIT_USAGE;
			break;
		case 't':
			if (parse_int(optarg, "-t", 1, 1024, &o.n_threads))
				return EXIT_USAGE;
			break;
		case 'v': o.verbose = true; break;
		case O_SYSTEM: o.system = optarg; break;
		case O_TEMP:
			if (parse_float(optarg, "--temp", 0, 100, &o.s.temperature))
				return EXIT_USAGE;
			o.temp_set = true;
			break;
		case O_SEED:
			if (parse_int(optarg, "--seed", 0, INT_MAX, &iv))
				return EXIT_USAGE;
			o.s.seed = (uint64_t)iv;
			break;
		case O_TOPK:
			if (parse_int(optarg, "--top-k", 0, 1 << 24, &o.s.top_k))
				return EXIT_USAGE;
			o.topk_set = true;
			break;
		case O_TOPP:
			if (parse_float(optarg, "--top-p", 0, 1, &o.s.top_p))
				return EXIT_USAGE;
			o.topp_set = true;
			break;
		case O_MINP:
			if (parse_float(optarg, "--min-p", 0, 1, &o.s.min_p))
				return EXIT_USAGE;
			o.minp_set = true;
			break;
		case O_REP:
			if (parse_float(optarg, "--repeat-penalty", 0.01, 100, &o.s.repeat_penalty))
				return EXIT_USAGE;
			o.rep_set = true;
			break;
		case O_KV:
			if (strcmp(optarg, "f16") == 0)
				o.kv_q8 = false;
			else if (strcmp(optarg, "q8_0") == 0)
				o.kv_q8 = true;
			else {
				fprintf(stderr, "ttychat: --kv-type: '%s' is not f16 or q8_0\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case O_THEME: o.theme = optarg; break;
		case 'h':
		case O_HELP:
			oneshot_usage(stdout);
			return EXIT_OK;
		default:
			oneshot_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ttychat: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}

	char err[1024];
	struct model_entry me;
	if (config_resolve_model(o.model ? o.model : config_default_model(), &me, err, sizeof err) != 0) {
		fprintf(stderr, "ttychat: %s\n", err);
		return EXIT_MODEL;
	}
	/* models.d defaults, then flags */
	if (!o.temp_set && me.temperature >= 0)
		o.s.temperature = me.temperature;
	if (!o.topk_set && me.top_k >= 0)
		o.s.top_k = me.top_k;
	if (!o.topp_set && me.top_p >= 0)
		o.s.top_p = me.top_p;
	if (!o.minp_set && me.min_p >= 0)
		o.s.min_p = me.min_p;
	if (!o.rep_set && me.repeat_penalty > 0)
		o.s.repeat_penalty = me.repeat_penalty;
	const char *system = o.system ? o.system : me.system_prompt;

	bool interactive = false;
	char *stdin_text = NULL;
	const char *prompt = o.prompt;
	if (prompt && strcmp(prompt, "-") == 0) {
		stdin_text = read_stdin((size_t)64 << 20);
		if (!stdin_text) {
			fprintf(stderr, "ttychat: cannot read the prompt from stdin\n");
			config_entry_free(&me);
			return EXIT_FAIL;
		}
		prompt = stdin_text;
	} else if (!prompt) {
		if (isatty(STDIN_FILENO)) {
			interactive = true;
		} else {
			stdin_text = read_stdin((size_t)64 << 20);
			if (!stdin_text || !stdin_text[0]) {
				fprintf(stderr, "ttychat: no prompt: give -p TEXT or text on stdin\n");
				free(stdin_text);
				config_entry_free(&me);
				return EXIT_USAGE;
			}
			prompt = stdin_text;
		}
	}

	/* no prompt, and a terminal on both ends: the full-screen chat */
	if (interactive && isatty(STDOUT_FILENO)) {
		struct tui_opts to = {
			.model_spec = o.model, .model = &me, .sampling = o.s,
			.sampling_set = (o.temp_set ? TUI_SET_TEMP : 0) | (o.topk_set ? TUI_SET_TOPK : 0) |
					(o.topp_set ? TUI_SET_TOPP : 0) | (o.minp_set ? TUI_SET_MINP : 0) |
					(o.rep_set ? TUI_SET_REP : 0),
			.max_tokens = o.n_predict, .n_ctx = (uint32_t)(o.n_ctx > 0 ? o.n_ctx : 0),
			.n_threads = o.n_threads, .kv_q8 = o.kv_q8, .system = o.system, .theme = o.theme};
		int st = tui_run(&to);
		config_entry_free(&me);
		return st;
	}

	struct engine_params ep = {.n_threads = o.n_threads};
	engine *e = engine_create(&ep, err, sizeof err);
	if (!e) {
		fprintf(stderr, "ttychat: %s\n", err);
		free(stdin_text);
		config_entry_free(&me);
		return EXIT_FAIL;
	}
	sig_engine = e;
	struct sigaction sa = {.sa_handler = on_sigint};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);

	struct engine_load_opts lo = {.n_ctx = (uint32_t)(o.n_ctx > 0 ? o.n_ctx : 0),
				      .kv_type = o.kv_q8 ? ENGINE_KV_Q8_0 : ENGINE_KV_F16};
	if (!o.n_ctx && me.context_size)
		lo.n_ctx = me.context_size < 4096 ? me.context_size : 4096;
	engine_load(e, me.path, &lo);
	struct engine_model_info info;
	int status = EXIT_OK;
	if (!wait_loaded(e, me.path, o.verbose, &info)) {
		status = got_sigint ? EXIT_INTERRUPT : EXIT_MODEL;
		goto out;
	}
	if (o.verbose)
		fprintf(stderr, "model: %s (%s, %s, %.0fM params), context %u\n", info.name, info.arch,
			info.quant, (double)info.n_params / 1e6, info.n_ctx);

	struct convo cv = {0};
	if (system && system[0] && convo_add(&cv, "system", system) != 0)
		goto oom;
	struct engine_gen_opts g = {.max_tokens = o.n_predict, .add_generation_prompt = true};
	if (!interactive) {
		if (convo_add(&cv, "user", prompt) != 0)
			goto oom;
		int req = engine_submit(e, 1, cv.m, cv.n, &o.s, &g);
		enum engine_stop_reason stop = ENGINE_STOP_EOG;
		char *reply = req > 0 ? stream_reply(e, req, o.verbose, &stop, &status) : NULL;
		if (reply && isatty(STDOUT_FILENO))
			putchar('\n');
		else if (reply && reply[0] && reply[strlen(reply) - 1] != '\n')
			putchar('\n');
		if (req <= 0)
			status = EXIT_GENERATE;
		if (stop == ENGINE_STOP_CANCELLED || got_sigint)
			status = EXIT_INTERRUPT;
		free(reply);
	} else {
		printf("ttychat: chatting with %s. Ctrl-D or Ctrl-C at the prompt quits; Ctrl-C during a reply stops it.\n",
		       me.display_name);
		for (;;) {
			got_sigint = 0;
			char *line = readline("> ");
			if (!line)
				break;
			if (!line[0]) {
				free(line);
				continue;
			}
			add_history(line);
			int rc = convo_add(&cv, "user", line);
			free(line);
			if (rc != 0)
				goto oom;
			int req = engine_submit(e, 1, cv.m, cv.n, &o.s, &g);
			enum engine_stop_reason stop = ENGINE_STOP_EOG;
			char *reply = req > 0 ? stream_reply(e, req, o.verbose, &stop, &status) : NULL;
			putchar('\n');
			if (!reply)
				break;
			if (stop == ENGINE_STOP_CANCELLED)
				printf("[stopped]\n");
			rc = convo_add(&cv, "assistant", reply);
			free(reply);
			if (rc != 0)
				goto oom;
		}
	}
	convo_free(&cv);
	goto out;
oom:
	fprintf(stderr, "ttychat: out of memory\n");
	convo_free(&cv);
	status = EXIT_FAIL;
out:
	fflush(stdout);
	sig_engine = NULL;
	engine_free(e);
	free(stdin_text);
	config_entry_free(&me);
	return status;
}
