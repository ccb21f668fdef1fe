/*
 * oneshot.c - `ttychat [-m MODEL] -p TEXT`, the scripted one-shot mode, and
 * the plain line chat.
 *
 * Both drive the engine through engine.h exactly as the TUI does: load,
 * submit the whole conversation, stream TOKEN events.  A one-shot run is a
 * straight line: options -> model entry (models.d defaults, then flags) ->
 * prompt (-p, stdin, or both: stdin goes after the prompt) -> history
 * (only with --save / --continue) -> load -> one reply -> exit status.
 * Each failure kind has its own exit status (commands.h, ttychat(1)).
 *
 * Output is for pipes first: to a pipe or file only the model's text is
 * written, with terminal control characters removed (--json keeps every
 * byte, escaped); to a terminal controls are shown as visible symbols.
 * Diagnostics go to stderr and only with -v, except errors and the notice
 * that the context overflowed.  Nothing here waits for input that cannot
 * come: a closed stdin reads as empty, and with CI set (or no terminal)
 * there is neither an interactive chat nor a passphrase prompt.
 *
 * SIGINT (also SIGTERM, SIGHUP) cancels the engine from the handler; the
 * reply stops within one token, what was generated is printed (and saved
 * with --save), and the exit status is 128 + the signal (130 for Ctrl-C).
 * With no prompt and a terminal on both ends, the full-screen chat
 * (tui_run) takes over instead; with a terminal only on stdin, a readline
 * line chat keeps a conversation going.
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "catalog.h"
#include "commands.h"
#include "engine.h"
#include "oneshot_hist.h"
#include "text.h"
#include "tui.h"

#define PROMPT_MAX ((size_t)64 << 20) /* bytes of prompt read from stdin */
#define SYSTEM_MAX ((size_t)1 << 20)  /* bytes of a --system @FILE */
#define STOP_MAX 32                   /* --stop strings */

/* signal flags: the only mutable globals (DESIGN: signal handlers only set
 * a flag, or cancel the engine, which is async-signal-safe) */
static volatile sig_atomic_t got_signal;
static engine *volatile sig_engine;

static void on_signal(int sig)
{
	got_signal = sig;
	engine *e = sig_engine;
	if (e)
		engine_cancel(e);
}

enum out_mode { OUT_TEXT, OUT_JSON_LINES, OUT_JSON_FINAL };

struct opts {
	const char *model;
	const char *prompt;
	const char *system;        /* TEXT or @FILE as given */
	const char *theme;
	const char *continue_id;
	const char *remote;        /* --remote URL: -m names the server's model */
	int n_predict;
	int n_ctx;
	int n_threads;
	int device;                /* enum engine_device, -1 not given */
	int gpu_layers;            /* as --gpu-layers: -1 auto, 0 none, N; -2 not given */
	bool verbose, raw, save, kv_set, kv_q8;
	enum out_mode out;
	struct engine_sampling s;
	bool temp_set, topk_set, topp_set, minp_set, rep_set, pres_set, freq_set, seed_set;
	const char *stop[STOP_MAX + 1];
	int n_stop;
};

/* CI=true (or any value but "", "0", "false"): never interactive. */
static bool in_ci(void)
{
	const char *ci = getenv("CI");
	return ci && ci[0] && strcmp(ci, "0") != 0 && strcmp(ci, "false") != 0;
}

/* ---- output ---------------------------------------------------------------- */

/* Writes model text.  To a terminal, C0/C1 controls (but newline and tab)
 * become visible symbols; to anything else they are dropped, so that
 * piped output never carries escape sequences.  Pieces are whole UTF-8
 * characters (the engine guarantees it), so a C1 control never straddles
 * two calls. */
static void put_text(const char *s, size_t n, bool tty)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n' || c == '\t') {
			putchar(c);
		} else if (c < 0x20 || c == 0x7f) {
			if (tty) {
				/* U+2400 block: "control pictures" */
				unsigned cp = c == 0x7f ? 0x2421 : 0x2400 + c;
				putchar((int)(0xe0 | (cp >> 12)));
				putchar((int)(0x80 | ((cp >> 6) & 0x3f)));
				putchar((int)(0x80 | (cp & 0x3f)));
			}
		} else if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
			   (unsigned char)s[i + 1] < 0xa0) {
			/* C1 controls (U+0080..U+009F) */
			if (tty)
				fputs("\xef\xbf\xbd", stdout);
			i++;
		} else {
			putchar(c);
		}
	}
}

/* One JSON line.  cJSON escapes C0 controls; DEL and the C1 controls
 * (U+0080..U+009F, which some terminals obey) are escaped here too, so
 * JSON output carries no control bytes either.  Outside strings they
 * cannot occur. */
static void json_print(cJSON *o)
{
	char *t = o ? cJSON_PrintUnformatted(o) : NULL;
	if (t) {
		for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
			if (*p == 0x7f)
				fputs("\\u007f", stdout);
			else if (*p == 0xc2 && p[1] >= 0x80 && p[1] < 0xa0)
				printf("\\u00%02x", p[1]), p++;
			else
				putchar(*p);
		}
		putchar('\n');
		fflush(stdout);
	}
	free(t);
	cJSON_Delete(o);
}

static const char *stop_name(enum engine_stop_reason r)
{
	switch (r) {
	case ENGINE_STOP_EOG: return "eog";
	case ENGINE_STOP_LENGTH: return "length";
	case ENGINE_STOP_STRING: return "stop";
	case ENGINE_STOP_CANCELLED: return "cancelled";
	case ENGINE_STOP_CONTEXT: return "context";
	}
	return "?";
}

/* An error as the last line of a JSON run (the message also goes to
 * stderr). */
static void json_error(const struct opts *o, int status, const char *msg, const char *partial)
{
	if (o->out == OUT_TEXT)
		return;
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "type", "error");
	cJSON_AddStringToObject(j, "message", msg);
	cJSON_AddNumberToObject(j, "exit", status);
	if (partial)
		cJSON_AddStringToObject(j, "text", partial);
	json_print(j);
}

/* Prints "ttychat: MSG" on stderr and, in JSON modes, an error object;
 * returns STATUS. */
static int fail(const struct opts *o, int status, const char *msg)
{
	fprintf(stderr, "ttychat: %s\n", msg);
	json_error(o, status, msg, NULL);
	return status;
}

/* ---- options --------------------------------------------------------------- */

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

static int parse_u64(const char *s, const char *flag, uint64_t *out)
{
	char *end;
	errno = 0;
	if (s[0] == '-' || s[0] == '+') {
		fprintf(stderr, "ttychat: %s: '%s' is not a non-negative integer\n", flag, s);
		return -1;
	}
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || end == s) {
		fprintf(stderr, "ttychat: %s: '%s' is not a non-negative integer\n", flag, s);
		return -1;
	}
	*out = (uint64_t)v;
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
		"chat and one-shot options:\n"
		"  -m, --model MODEL        model file or models.d name (default: settings.json \"model\", else %s)\n"
		"  -p, --prompt TEXT        prompt; '-' reads it from stdin; stdin that is not a\n"
		"                           terminal is appended after TEXT (or is the prompt)\n"
		"      --system TEXT|@FILE  system message (@FILE reads it from FILE)\n"
		"  -n, --max-tokens N       stop after N tokens (default: until the model ends its turn)\n"
		"      --temp T             temperature (0 = greedy)\n"
		"      --top-k K            sample from the K most likely tokens (0 = off)\n"
		"      --top-p P            nucleus sampling (1 = off)\n"
		"      --min-p P            drop tokens below P times the best one (0 = off)\n"
		"      --repeat-penalty R   penalise recently used tokens (1 = off)\n"
		"      --presence-penalty P, --frequency-penalty F   (0 = off)\n"
		"      --seed N             sampling seed (default: a fresh one per run)\n"
		"      --stop STR           stop when the reply contains STR (repeatable)\n"
		"      --no-template        raw completion: the prompt without the chat template\n"
		"      --remote URL         an OpenAI-compatible server (-m: its model; API key\n"
		"                           from $TTYCHAT_API_KEY when set)\n"
		"  -c, --ctx-size N         context size in tokens\n"
		"  -t, --threads N          compute threads (default: all cores)\n"
		"      --kv-type TYPE       KV cache type: f16 (default) or q8_0\n"
		"      --device DEV         where the model runs: auto (default: a CUDA GPU when one\n"
		"                           is usable, else the CPU), cpu, or cuda\n"
		"      --gpu-layers N       layers on the GPU: -1 as many as fit (default), 0 none\n"
		"      --json[=final]       JSON lines: one per token, then a summary (final: only that)\n"
		"      --save               save the exchange in the encrypted history\n"
		"      --continue ID        add this turn to saved conversation ID (and save it)\n"
		"      --theme NAME         colours of the full-screen chat: default, light, mono, or yours\n"
		"  -v, --verbose            progress and statistics on stderr\n"
		"  -h, --help               this help;  --version  the version\n"
		"exit status: 0 ok, 1 failure, 2 usage, 3 model not found or not loadable,\n"
		"  4 generation failed, 5 history locked, passphrase wrong or conversation not found,\n"
		"  6 download failed (pull), 130 interrupted (Ctrl-C)\n",
		config_default_model());
}

/* Returns -1 to go on, else the exit status. */
static int parse_opts(int argc, char **argv, struct opts *o)
{
	enum {
		O_SYSTEM = 1000, O_TEMP, O_SEED, O_TOPK, O_TOPP, O_MINP, O_REP, O_PRES, O_FREQ, O_KV, O_THEME,
		O_HELP, O_STOP, O_RAW, O_JSON, O_SAVE, O_CONT, O_VERSION, O_REMOTE, O_DEVICE, O_GPU_LAYERS
	};
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
		{"presence-penalty", required_argument, NULL, O_PRES},
		{"frequency-penalty", required_argument, NULL, O_FREQ},
		{"kv-type", required_argument, NULL, O_KV},
		{"device", required_argument, NULL, O_DEVICE},
		{"gpu-layers", required_argument, NULL, O_GPU_LAYERS},
		{"stop", required_argument, NULL, O_STOP},
		{"no-template", no_argument, NULL, O_RAW},
		{"json", optional_argument, NULL, O_JSON},
		{"save", no_argument, NULL, O_SAVE},
		{"continue", required_argument, NULL, O_CONT},
		{"theme", required_argument, NULL, O_THEME},
		{"remote", required_argument, NULL, O_REMOTE},
		{"help", no_argument, NULL, O_HELP},
		{"version", no_argument, NULL, O_VERSION},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "m:p:n:c:t:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'p': o->prompt = optarg; break;
		case 'n':
			if (parse_int(optarg, "--max-tokens", -1, INT_MAX, &o->n_predict))
				return EXIT_USAGE;
			break;
		case 'c':
			if (parse_int(optarg, "--ctx-size", 16, 1 << 24, &o->n_ctx))
				return EXIT_USAGE;
			break;
		case 't':
			if (parse_int(optarg, "--threads", 1, 1024, &o->n_threads))
				return EXIT_USAGE;
			break;
		case 'v': o->verbose = true; break;
		case O_SYSTEM: o->system = optarg; break;
		case O_TEMP:
			if (parse_float(optarg, "--temp", 0, 100, &o->s.temperature))
				return EXIT_USAGE;
			o->temp_set = true;
			break;
		case O_SEED:
			if (parse_u64(optarg, "--seed", &o->s.seed))
				return EXIT_USAGE;
			o->seed_set = true;
			break;
		case O_TOPK:
			if (parse_int(optarg, "--top-k", 0, 1 << 24, &o->s.top_k))
				return EXIT_USAGE;
			o->topk_set = true;
			break;
		case O_TOPP:
			if (parse_float(optarg, "--top-p", 0, 1, &o->s.top_p))
				return EXIT_USAGE;
			o->topp_set = true;
			break;
		case O_MINP:
			if (parse_float(optarg, "--min-p", 0, 1, &o->s.min_p))
				return EXIT_USAGE;
			o->minp_set = true;
			break;
		case O_REP:
			if (parse_float(optarg, "--repeat-penalty", 0.01, 100, &o->s.repeat_penalty))
				return EXIT_USAGE;
			o->rep_set = true;
			break;
		case O_PRES:
			if (parse_float(optarg, "--presence-penalty", -10, 10, &o->s.presence_penalty))
				return EXIT_USAGE;
			o->pres_set = true;
			break;
		case O_FREQ:
			if (parse_float(optarg, "--frequency-penalty", -10, 10, &o->s.frequency_penalty))
				return EXIT_USAGE;
			o->freq_set = true;
			break;
		case O_KV:
			if (strcmp(optarg, "f16") == 0) {
				o->kv_q8 = false;
			} else if (strcmp(optarg, "q8_0") == 0) {
				o->kv_q8 = true;
			} else {
				fprintf(stderr, "ttychat: --kv-type: '%s' is not f16 or q8_0\n", optarg);
				return EXIT_USAGE;
			}
			o->kv_set = true;
			break;
		case O_DEVICE:
			if ((o->device = config_device(optarg)) < 0) {
				fprintf(stderr, "ttychat: --device: '%s' is not auto, cpu or cuda\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case O_GPU_LAYERS:
			if (parse_int(optarg, "--gpu-layers", -1, 1 << 20, &o->gpu_layers))
				return EXIT_USAGE;
			break;
		case O_STOP:
			if (!optarg[0] || strlen(optarg) > 1024) {
				fprintf(stderr, "ttychat: --stop: the string must have 1 to 1024 bytes\n");
				return EXIT_USAGE;
			}
			if (o->n_stop == STOP_MAX) {
				fprintf(stderr, "ttychat: --stop: at most %d stop strings\n", STOP_MAX);
				return EXIT_USAGE;
			}
			o->stop[o->n_stop++] = optarg;
			o->stop[o->n_stop] = NULL;
			break;
		case O_RAW: o->raw = true; break;
		case O_JSON:
			if (!optarg || strcmp(optarg, "lines") == 0) {
				o->out = OUT_JSON_LINES;
			} else if (strcmp(optarg, "final") == 0) {
				o->out = OUT_JSON_FINAL;
			} else {
				fprintf(stderr, "ttychat: --json=%s: use --json or --json=final\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case O_SAVE: o->save = true; break;
		case O_CONT:
			if (strlen(optarg) < 4 || strlen(optarg) > 32 ||
			    strspn(optarg, "0123456789abcdef") != strlen(optarg)) {
				fprintf(stderr, "ttychat: --continue: '%s' is not a conversation ID ('ttychat history list' shows them)\n",
					optarg);
				return EXIT_USAGE;
			}
			o->continue_id = optarg;
			break;
		case O_THEME: o->theme = optarg; break;
		case O_REMOTE:
			if (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0) {
				fprintf(stderr, "ttychat: --remote: '%s' is not an http:// or https:// URL\n", optarg);
				return EXIT_USAGE;
			}
			o->remote = optarg;
			break;
		case 'h':
		case O_HELP:
			printf("usage: ttychat [-m MODEL] [-p TEXT] [OPTIONS]\n");
			oneshot_usage(stdout);
			return EXIT_OK;
		case O_VERSION:
			printf("ttychat %s\n", PACKAGE_VERSION);
			return EXIT_OK;
		default:
			fprintf(stderr, "ttychat: try 'ttychat --help'\n");
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ttychat: unexpected argument '%s' (a prompt goes after -p)\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (o->raw && (o->save || o->continue_id)) {
		fprintf(stderr, "ttychat: --no-template cannot be combined with --save or --continue\n");
		return EXIT_USAGE;
	}
	return -1;
}

/* ---- input ----------------------------------------------------------------- */

/* Reads FD to its end (at most MAX bytes) into *OUT (NUL-terminated).
 * 0, or an errno value; EINTR when a signal arrived.  A closed descriptor
 * reads as empty. */
static int read_fd_all(int fd, size_t max, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		return ENOMEM;
	for (;;) {
		if (got_signal) {
			free(buf);
			return EINTR;
		}
		if (n + 1 >= cap) {
			if (cap > max) {
				free(buf);
				return EFBIG;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EBADF)
			r = 0;
		if (r < 0) {
			int e = errno;
			free(buf);
			return e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* The text of --system: TEXT, or the contents of FILE for "@FILE" ("@@"
 * starts a literal "@").  Returns 0 or an exit status. */
static int load_system(const struct opts *o, char **out)
{
	*out = NULL;
	const char *arg = o->system;
	if (!arg)
		return 0;
	if (arg[0] != '@' || arg[1] == '@') {
		*out = strdup(arg[0] == '@' ? arg + 1 : arg);
		return *out ? 0 : fail(o, EXIT_FAIL, "out of memory");
	}
	char msg[4200];
	int fd = open(arg + 1, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
		snprintf(msg, sizeof msg, "--system: cannot read %s: %s", arg + 1,
			 fd < 0 ? strerror(errno) : "is a folder");
		if (fd >= 0)
			close(fd);
		return fail(o, EXIT_FAIL, msg);
	}
	size_t len;
	int e = read_fd_all(fd, SYSTEM_MAX, out, &len);
	close(fd);
	if (e == EINTR)
		return 128 + got_signal;
	if (e) {
		snprintf(msg, sizeof msg, "--system: cannot read %s: %s", arg + 1,
			 e == EFBIG ? "larger than 1 MiB" : strerror(e));
		return fail(o, EXIT_FAIL, msg);
	}
	if (strlen(*out) != len) {
		free(*out);
		*out = NULL;
		snprintf(msg, sizeof msg, "--system: %s contains NUL bytes (not text)", arg + 1);
		return fail(o, EXIT_FAIL, msg);
	}
	/* a file's last newline is not part of the message */
	while (len > 0 && ((*out)[len - 1] == '\n' || (*out)[len - 1] == '\r'))
		(*out)[--len] = '\0';
	return 0;
}

/* ---- the conversation ------------------------------------------------------- */

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

/* Appends TEXT to the last message (two user turns in a row, left by a
 * reply that failed, are sent as one). */
static int convo_extend_last(struct convo *c, const char *text)
{
	const char *old = c->m[c->n - 1].content;
	size_t a = strlen(old), b = strlen(text);
	char *t = malloc(a + b + 3);
	if (!t)
		return -1;
	memcpy(t, old, a);
	memcpy(t + a, "\n\n", 2);
	memcpy(t + a + 2, text, b + 1);
	free((char *)old);
	c->m[c->n - 1].content = t;
	return 0;
}

static void convo_free(struct convo *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free((char *)c->m[i].role);
		free((char *)c->m[i].content);
	}
	free(c->m);
	c->m = NULL;
	c->n = c->cap = 0;
}

/* ---- engine ------------------------------------------------------------------ */

static bool wait_loaded(engine *e, int req, const char *path, bool verbose, struct engine_model_info *info,
			char *err, size_t errlen)
{
	struct engine_event ev;
	for (;;) {
		if (!engine_event_wait(e, &ev, -1))
			continue;
		if (ev.request != req) {
			engine_event_clear(&ev);
			continue;
		}
		if (ev.type == ENGINE_EV_LOADED) {
			*info = ev.info;
			engine_event_clear(&ev);
			return true;
		}
		if (ev.type == ENGINE_EV_ERROR) {
			snprintf(err, errlen, "%s", ev.message);
			engine_event_clear(&ev);
			return false;
		}
		if (verbose && ev.type == ENGINE_EV_LOAD_PROGRESS)
			fprintf(stderr, "loading %s: %3.0f%%\n", path, ev.progress * 100.0);
		engine_event_clear(&ev);
	}
}

/* The answer to request REQ (the first event of it that is not progress). */
static void wait_answer(engine *e, int req, struct engine_event *out)
{
	for (;;) {
		if (!engine_event_wait(e, out, -1))
			continue;
		if (out->request == req && out->type != ENGINE_EV_LOAD_PROGRESS &&
		    out->type != ENGINE_EV_PREFILL_PROGRESS)
			return;
		engine_event_clear(out);
	}
}

struct reply {
	char *text;
	size_t len, cap;
	bool oom;
	enum engine_stop_reason stop;
	struct engine_stats stats;
	bool failed;
	char error[512];
};

static void reply_add(struct reply *r, const char *s, size_t n)
{
	if (r->oom)
		return;
	if (r->len + n + 1 > r->cap) {
		size_t nc = r->cap ? r->cap : 1024;
		while (nc < r->len + n + 1)
			nc *= 2;
		char *nt = realloc(r->text, nc);
		if (!nt) {
			r->oom = true;
			return;
		}
		r->text = nt;
		r->cap = nc;
	}
	memcpy(r->text + r->len, s, n);
	r->len += n;
	r->text[r->len] = '\0';
}

/* One piece of the reply: kept, and written in mode OUT. */
static void emit_piece(struct reply *r, enum out_mode out, bool tty, const char *text, size_t len, int32_t id)
{
	reply_add(r, text, len);
	if (out == OUT_TEXT) {
		put_text(text, len, tty);
		fflush(stdout);
	} else if (out == OUT_JSON_LINES) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "type", "token");
		/* pieces are valid UTF-8; a NUL byte would end the string */
		char *piece = strndup(text, len);
		cJSON_AddStringToObject(j, "text", piece ? piece : "");
		free(piece);
		cJSON_AddNumberToObject(j, "id", id);
		json_print(j);
	}
}

/* Streams one reply of request REQ to stdout in mode OUT (the final JSON
 * object is the caller's).  INJECT (the TTYCHAT_TEST_INJECT test hook, or
 * NULL) goes first, as if the model had produced it.  Returns when the
 * reply is done, failed or stopped. */
static void stream_reply(engine *e, int req, enum out_mode out, bool verbose, const char *inject,
			 size_t inject_len, struct reply *r)
{
	bool tty = isatty(STDOUT_FILENO);
	struct engine_event ev;
	r->stop = ENGINE_STOP_EOG;
	reply_add(r, "", 0);
	if (inject && inject_len)
		emit_piece(r, out, tty, inject, inject_len, -1);
	for (;;) {
		if (!engine_event_wait(e, &ev, -1))
			continue;
		if (ev.request != req) {
			engine_event_clear(&ev);
			continue;
		}
		switch (ev.type) {
		case ENGINE_EV_TOKEN:
			emit_piece(r, out, tty, ev.text, ev.text_len, ev.token);
			break;
		case ENGINE_EV_CONTEXT_SHIFT:
			fprintf(stderr, "ttychat: %s\n", ev.message);
			if (out == OUT_JSON_LINES) {
				cJSON *j = cJSON_CreateObject();
				cJSON_AddStringToObject(j, "type", "context_shift");
				cJSON_AddNumberToObject(j, "dropped_turns", ev.dropped_turns);
				cJSON_AddStringToObject(j, "message", ev.message);
				json_print(j);
			}
			break;
		case ENGINE_EV_PREFILL_PROGRESS:
			if (verbose)
				fprintf(stderr, "prefill: %3.0f%%\n", ev.progress * 100.0);
			break;
		case ENGINE_EV_NOTICE:
			fprintf(stderr, "ttychat: %s\n", ev.message);
			break;
		case ENGINE_EV_DONE:
			r->stop = ev.stop;
			r->stats = ev.stats;
			engine_event_clear(&ev);
			return;
		case ENGINE_EV_ERROR:
			r->failed = true;
			if (ev.code == ENGINE_E_CANCELLED)
				r->stop = ENGINE_STOP_CANCELLED;
			snprintf(r->error, sizeof r->error, "%s", ev.message);
			engine_event_clear(&ev);
			return;
		default:
			break;
		}
		engine_event_clear(&ev);
	}
}

static void print_stats(const struct engine_stats *s)
{
	fprintf(stderr,
		"[prompt %u tokens (%u reused, %u computed) %.1f tok/s | reply %u tokens %.1f tok/s | "
		"first token %.0f ms | context %u/%u]\n",
		s->prompt_tokens, s->prompt_reused, s->prompt_computed, s->prefill_tps, s->gen_tokens, s->decode_tps,
		s->ttft_ms, s->ctx_used, s->ctx_size);
}

static cJSON *stats_json(const struct engine_stats *s)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddNumberToObject(j, "prompt_tokens", s->prompt_tokens);
	cJSON_AddNumberToObject(j, "prompt_reused", s->prompt_reused);
	cJSON_AddNumberToObject(j, "prompt_computed", s->prompt_computed);
	cJSON_AddNumberToObject(j, "gen_tokens", s->gen_tokens);
	cJSON_AddNumberToObject(j, "prefill_tps", s->prefill_tps);
	cJSON_AddNumberToObject(j, "decode_tps", s->decode_tps);
	cJSON_AddNumberToObject(j, "ttft_ms", s->ttft_ms);
	cJSON_AddNumberToObject(j, "prefill_ms", s->prefill_ms);
	cJSON_AddNumberToObject(j, "decode_ms", s->decode_ms);
	cJSON_AddNumberToObject(j, "ctx_used", s->ctx_used);
	cJSON_AddNumberToObject(j, "ctx_size", s->ctx_size);
	cJSON_AddNumberToObject(j, "weights_bytes", (double)s->weights_bytes);
	cJSON_AddNumberToObject(j, "kv_bytes", (double)s->kv_bytes);
	if (s->vram_total) {
		cJSON_AddNumberToObject(j, "vram_total", (double)s->vram_total);
		cJSON_AddNumberToObject(j, "vram_free", (double)s->vram_free);
		cJSON_AddNumberToObject(j, "vram_ours", (double)s->vram_ours);
	}
	return j;
}

/* ---- the one-shot run ------------------------------------------------------------ */

struct run {
	struct opts o;
	struct model_entry me;
	bool have_me;
	char *system;          /* resolved system prompt (malloc'd) or NULL */
	char *stdin_text;
	char *prompt;          /* the user message (malloc'd) */
	struct oneshot_hist *hist;
	struct convo cv;
	engine *e;
	char err[1024];
};

static void apply_entry_defaults(struct run *r)
{
	struct opts *o = &r->o;
	const struct model_entry *me = &r->me;
	if (!o->temp_set && me->temperature >= 0)
		o->s.temperature = me->temperature;
	if (!o->topk_set && me->top_k >= 0)
		o->s.top_k = me->top_k;
	if (!o->topp_set && me->top_p >= 0)
		o->s.top_p = me->top_p;
	if (!o->minp_set && me->min_p >= 0)
		o->s.min_p = me->min_p;
	if (!o->rep_set && me->repeat_penalty > 0)
		o->s.repeat_penalty = me->repeat_penalty;
	if (!o->kv_set && me->kv_type >= 0)
		o->kv_q8 = me->kv_type == 1;
	if (!o->n_threads && me->threads > 0)
		o->n_threads = me->threads;
}

/* The model of a continued conversation and its settings, under the flags. */
static void apply_conv_settings(struct run *r)
{
	struct oneshot_settings m;
	oneshot_hist_settings(r->hist, &m);
	struct opts *o = &r->o;
	if (!o->temp_set && m.temperature >= 0)
		o->s.temperature = m.temperature, o->temp_set = true;
	if (!o->topk_set && m.top_k >= 0)
		o->s.top_k = m.top_k, o->topk_set = true;
	if (!o->topp_set && m.top_p >= 0)
		o->s.top_p = m.top_p, o->topp_set = true;
	if (!o->minp_set && m.min_p >= 0)
		o->s.min_p = m.min_p, o->minp_set = true;
	if (!o->rep_set && m.repeat_penalty > 0)
		o->s.repeat_penalty = m.repeat_penalty, o->rep_set = true;
	if (!o->n_ctx && m.context_size >= 16 && m.context_size <= (1u << 24))
		o->n_ctx = (int)m.context_size;
}

/* Builds the messages: system, the saved ones (for --continue), the
 * prompt.  Two user messages in a row (a saved turn whose reply failed)
 * are sent as one. */
static int build_convo(struct run *r)
{
	if (r->system && r->system[0] && convo_add(&r->cv, "system", r->system))
		return -1;
	size_t n = r->hist ? oneshot_hist_count(r->hist) : 0;
	for (size_t i = 0; i <= n; i++) {
		const char *role = "user", *text = r->prompt;
		if (i < n)
			oneshot_hist_msg(r->hist, i, &role, &text);
		bool merge = r->cv.n > 0 && strcmp(role, "user") == 0 && strcmp(r->cv.m[r->cv.n - 1].role, "user") == 0;
		if (merge ? convo_extend_last(&r->cv, text) : convo_add(&r->cv, role, text))
			return -1;
	}
	return 0;
}

/* Commits the user message before the reply.  0 or an exit status. */
static int save_user(struct run *r, uint32_t n_ctx)
{
	if (!r->hist)
		return 0;
	struct opts *o = &r->o;
	struct oneshot_settings m = {
		.model = r->me.source[0] ? r->me.name : r->me.path,
		.system_prompt = r->system,
		.temperature = o->s.temperature,
		.top_k = o->s.top_k,
		.top_p = o->s.top_p,
		.min_p = o->s.min_p,
		.repeat_penalty = o->s.repeat_penalty,
		.context_size = n_ctx,
	};
	int st = oneshot_hist_user(r->hist, &m, r->prompt, r->err, sizeof r->err);
	return st ? fail(o, st, r->err) : 0;
}

/* The plain line chat (stdin a terminal, stdout not). */
static int line_chat(struct run *r, const struct engine_gen_opts *g)
{
	struct opts *o = &r->o;
	/* stdout is not a terminal: it gets the replies only; the prompt, the
	 * echo and the notices go to the terminal on stderr */
	rl_outstream = stderr;
	if (!isatty(STDERR_FILENO))
		rl_variable_bind("enable-bracketed-paste", "off");
	fprintf(stderr, "ttychat: chatting with %s. Ctrl-D or Ctrl-C at the prompt quits; Ctrl-C during a reply stops it.\n",
		r->me.display_name);
	int status = EXIT_OK;
	for (;;) {
		got_signal = 0;
		char *line = readline("> ");
		if (!line)
			break;
		if (!line[0]) {
			free(line);
			continue;
		}
		add_history(line);
		int rc = convo_add(&r->cv, "user", line);
		free(line);
		if (rc != 0)
			return fail(o, EXIT_FAIL, "out of memory");
		int req = engine_submit(r->e, 1, r->cv.m, r->cv.n, &o->s, g);
		struct reply rep = {0};
		if (req > 0)
			stream_reply(r->e, req, OUT_TEXT, o->verbose, NULL, 0, &rep);
		putchar('\n');
		if (req <= 0 || (rep.failed && rep.stop != ENGINE_STOP_CANCELLED)) {
			fprintf(stderr, "ttychat: %s\n", req <= 0 ? engine_last_error(r->e) : rep.error);
			free(rep.text);
			status = EXIT_GENERATE;
			break;
		}
		if (o->verbose)
			print_stats(&rep.stats);
		if (rep.stop == ENGINE_STOP_CANCELLED)
			fprintf(stderr, "[stopped]\n");
		rc = convo_add(&r->cv, "assistant", rep.text ? rep.text : "");
		free(rep.text);
		if (rc != 0)
			return fail(o, EXIT_FAIL, "out of memory");
	}
	return status;
}

/* Everything after the options; returns the exit status. */
static int run(struct run *r)
{
	struct opts *o = &r->o;
	char msg[4400];

	/* the model: -m, else the conversation's (--continue), else settings */
	char spec[4096];
	if (o->remote) {
		/* the engine's remote spec; the key stays in the environment */
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "base_url", o->remote);
		if (o->model)
			cJSON_AddStringToObject(j, "model", o->model);
		const char *key = getenv("TTYCHAT_API_KEY");
		if (key && key[0])
			cJSON_AddStringToObject(j, "api_key_env", "TTYCHAT_API_KEY");
		char *t = cJSON_PrintUnformatted(j);
		cJSON_Delete(j);
		if (!t || snprintf(spec, sizeof spec, "remote:%s", t) >= (int)sizeof spec) {
			free(t);
			return fail(o, EXIT_USAGE, "--remote: URL or model name too long");
		}
		free(t);
	} else if (o->model)
		snprintf(spec, sizeof spec, "%s", o->model);
	else
		config_settings_model(spec, sizeof spec);

	/* the prompt: decided before anything slow */
	bool stdin_tty = isatty(STDIN_FILENO);
	bool interactive = false;
	if (o->prompt && strcmp(o->prompt, "-") == 0) {
		size_t len;
		int e = read_fd_all(STDIN_FILENO, PROMPT_MAX, &r->stdin_text, &len);
		if (e == EINTR)
			return 128 + got_signal;
		if (e) {
			snprintf(msg, sizeof msg, "cannot read the prompt from stdin: %s",
				 e == EFBIG ? "more than 64 MiB" : strerror(e));
			return fail(o, EXIT_FAIL, msg);
		}
		if (strlen(r->stdin_text) != len)
			return fail(o, EXIT_FAIL, "the prompt on stdin contains NUL bytes (not text)");
		if (!r->stdin_text[0])
			return fail(o, EXIT_USAGE, "-p -: stdin is empty");
		r->prompt = strdup(r->stdin_text);
	} else if (!stdin_tty) {
		/* a pipe or file: its text is (or follows) the prompt; a closed
		 * or /dev/null stdin reads as empty at once */
		size_t len;
		int e = read_fd_all(STDIN_FILENO, PROMPT_MAX, &r->stdin_text, &len);
		if (e == EINTR)
			return 128 + got_signal;
		if (e) {
			snprintf(msg, sizeof msg, "cannot read stdin: %s", e == EFBIG ? "more than 64 MiB" : strerror(e));
			return fail(o, EXIT_FAIL, msg);
		}
		if (strlen(r->stdin_text) != len)
			return fail(o, EXIT_FAIL, "stdin contains NUL bytes (not text)");
		if (o->prompt && r->stdin_text[0]) {
			size_t a = strlen(o->prompt);
			if (!(r->prompt = malloc(a + len + 3)))
				return fail(o, EXIT_FAIL, "out of memory");
			memcpy(r->prompt, o->prompt, a);
			memcpy(r->prompt + a, "\n\n", 2);
			memcpy(r->prompt + a + 2, r->stdin_text, len + 1);
		} else if (o->prompt) {
			r->prompt = strdup(o->prompt);
		} else if (r->stdin_text[0]) {
			r->prompt = strdup(r->stdin_text);
		} else {
			return fail(o, EXIT_USAGE, "no prompt: give -p TEXT or text on stdin");
		}
	} else if (o->prompt) {
		r->prompt = strdup(o->prompt);
	} else if (o->out != OUT_TEXT || o->save || o->continue_id || o->raw || in_ci()) {
		return fail(o, EXIT_USAGE, in_ci() ? "no prompt: give -p TEXT or text on stdin (CI is set: no interactive chat)"
						   : "no prompt: give -p TEXT or text on stdin");
	} else {
		interactive = true;
	}
	if (!interactive && !r->prompt)
		return fail(o, EXIT_FAIL, "out of memory");

	int st = load_system(o, &r->system);
	if (st)
		return st;

	/* history first: a wrong passphrase fails before the model loads */
	if (!interactive && (o->save || o->continue_id)) {
		st = oneshot_hist_open(o->continue_id, o->save, in_ci(), &r->hist, r->err, sizeof r->err);
		if (got_signal)
			return 128 + got_signal;
		if (st)
			return fail(o, st, r->err);
		if (o->continue_id) {
			struct oneshot_settings m;
			oneshot_hist_settings(r->hist, &m);
			apply_conv_settings(r);
			if (!o->model && !o->remote && m.model && m.model[0])
				snprintf(spec, sizeof spec, "%s", m.model);
		}
	}

	if (config_resolve_model(spec, &r->me, r->err, sizeof r->err) != 0) {
		/* no model: the full-screen chat still opens (its picker) */
		if (interactive && isatty(STDOUT_FILENO) && !o->model)
			goto tui;
		return fail(o, EXIT_MODEL, r->err);
	}
	r->have_me = true;
	if (r->me.warnings[0] && o->verbose)
		fprintf(stderr, "ttychat: warning: %s\n", r->me.warnings);
	apply_entry_defaults(r);
	if (!r->system && !o->system) {
		struct oneshot_settings m = {0};
		if (r->hist)
			oneshot_hist_settings(r->hist, &m);
		const char *sys = o->continue_id ? m.system_prompt : o->raw ? NULL : r->me.system_prompt;
		if (sys && !(r->system = strdup(sys)))
			return fail(o, EXIT_FAIL, "out of memory");
	}

tui:
	/* no prompt, and a terminal on both ends: the full-screen chat */
	if (interactive && isatty(STDOUT_FILENO)) {
		struct tui_opts to = {
			.model_spec = o->remote && r->have_me ? r->me.path : o->model, .model = r->have_me ? &r->me : NULL, .sampling = o->s,
			.sampling_set = (o->temp_set ? TUI_SET_TEMP : 0) | (o->topk_set ? TUI_SET_TOPK : 0) |
					(o->topp_set ? TUI_SET_TOPP : 0) | (o->minp_set ? TUI_SET_MINP : 0) |
					(o->rep_set ? TUI_SET_REP : 0),
			.max_tokens = o->n_predict, .n_ctx = (uint32_t)(o->n_ctx > 0 ? o->n_ctx : 0),
			.n_threads = o->n_threads, .kv_q8 = o->kv_q8, .system = o->system ? r->system : NULL,
			.theme = o->theme, .device = o->device, .gpu_layers = o->gpu_layers};
		return tui_run(&to);
	}

	struct engine_params ep = {.n_threads = o->n_threads};
	r->e = engine_create(&ep, r->err, sizeof r->err);
	if (!r->e)
		return fail(o, EXIT_FAIL, r->err);
	sig_engine = r->e;
	if (got_signal)
		return 128 + got_signal;

	struct engine_load_opts lo = {.n_ctx = (uint32_t)(o->n_ctx > 0 ? o->n_ctx : 0),
				      .kv_type = o->kv_q8 ? ENGINE_KV_Q8_0 : ENGINE_KV_F16,
				      .template_override = r->me.template_text,
				      .device = ENGINE_DEVICE_AUTO};
	/* --device and --gpu-layers, else the models.d entry's */
	if (o->device >= 0 || r->me.device >= 0)
		lo.device = (enum engine_device)(o->device >= 0 ? o->device : r->me.device);
	lo.gpu_layers = config_gpu_layers(o->gpu_layers != -2 ? o->gpu_layers : r->me.gpu_layers);
	if (!o->n_ctx && r->me.context_size)
		lo.n_ctx = r->me.context_size < 4096 ? r->me.context_size : 4096;
	int req = engine_load(r->e, r->me.path, &lo);
	struct engine_model_info info;
	if (req <= 0) {
		snprintf(msg, sizeof msg, "%s: %s", r->me.path, engine_last_error(r->e));
		return fail(o, EXIT_MODEL, msg);
	}
	if (got_signal)
		engine_cancel(r->e);
	if (!wait_loaded(r->e, req, r->me.path, o->verbose, &info, r->err, sizeof r->err)) {
		if (got_signal)
			return 128 + got_signal;
		return fail(o, EXIT_MODEL, r->err);
	}
	/* CUDA asked for but not usable, or fewer GPU layers: one line */
	if (info.notice[0])
		fprintf(stderr, "ttychat: %s\n", info.notice);
	if (o->verbose)
		fprintf(stderr, "model: %s (%s, %s, %.0fM params), context %u, template %s, on %s\n", info.name,
			info.arch, info.quant, (double)info.n_params / 1e6, info.n_ctx,
			r->me.template_text ? "from models.d" : info.template_family, info.backend);

	struct engine_gen_opts g = {.max_tokens = o->n_predict, .add_generation_prompt = true, .raw = o->raw,
				    .stop = o->n_stop ? o->stop : NULL};
	if (interactive) {
		if (r->system && r->system[0] && convo_add(&r->cv, "system", r->system))
			return fail(o, EXIT_FAIL, "out of memory");
		return line_chat(r, &g);
	}
	if (build_convo(r))
		return fail(o, EXIT_FAIL, "out of memory");
	st = save_user(r, info.n_ctx);
	if (st)
		return st;
	/* a saved conversation's KV cache: only the new turn is prefilled */
	void *blob;
	size_t blob_len;
	if (o->continue_id && oneshot_hist_kv_load(r->hist, info.model_id, &blob, &blob_len) == 0) {
		req = engine_conv_import(r->e, 1, blob, blob_len);
		free(blob);
		if (req > 0) {
			struct engine_event ev;
			wait_answer(r->e, req, &ev);
			if (o->verbose)
				fprintf(stderr, "KV snapshot: %u tokens restored%s%s\n", ev.position,
					ev.position ? "" : ": ", ev.position ? "" : ev.message);
			engine_event_clear(&ev);
		}
	}

	req = engine_submit(r->e, 1, r->cv.m, r->cv.n, &o->s, &g);
	if (req <= 0) {
		snprintf(msg, sizeof msg, "cannot submit: %s", engine_last_error(r->e));
		return fail(o, EXIT_GENERATE, msg);
	}
	if (got_signal)
		engine_cancel(r->e);
	struct reply rep = {0};
	const char *inj = getenv("TTYCHAT_TEST_INJECT");
	size_t inject_len = 0;
	char *inject = inj && inj[0] ? text_unescape(inj, &inject_len) : NULL;
	stream_reply(r->e, req, o->out, o->verbose, inject, inject_len, &rep);
	free(inject);
	bool cancelled = rep.stop == ENGINE_STOP_CANCELLED || got_signal;
	int status = EXIT_OK;
	if (cancelled)
		status = got_signal ? 128 + got_signal : EXIT_INTERRUPT;
	else if (rep.failed)
		status = EXIT_GENERATE;
	if (rep.oom && status == EXIT_OK)
		status = EXIT_FAIL;

	if (o->out == OUT_TEXT) {
		if (rep.len > 0 && (isatty(STDOUT_FILENO) || rep.text[rep.len - 1] != '\n'))
			putchar('\n');
		fflush(stdout);
	}
	if (rep.failed && !cancelled)
		fprintf(stderr, "ttychat: %s\n", rep.error);
	else if (o->verbose)
		print_stats(&rep.stats);

	if (r->hist) {
		int hs = oneshot_hist_reply(r->hist, rep.text, rep.len, cancelled, r->err, sizeof r->err);
		if (hs) {
			fprintf(stderr, "ttychat: %s\n", r->err);
			if (status == EXIT_OK)
				status = hs;
		}
		/* the KV cache for the next --continue (only a cache: a failure
		 * is no error) */
		int xr = hs || rep.failed ? -1 : engine_conv_export(r->e, 1);
		if (xr > 0) {
			struct engine_event ev;
			wait_answer(r->e, xr, &ev);
			if (ev.type == ENGINE_EV_CONV_EXPORT &&
			    oneshot_hist_kv_save(r->hist, info.model_id, ev.blob, ev.blob_len, r->err, sizeof r->err) &&
			    o->verbose)
				fprintf(stderr, "ttychat: %s\n", r->err);
			engine_event_clear(&ev);
		}
	}
	const char *conv_id = r->hist ? oneshot_hist_id(r->hist) : NULL;
	if (conv_id && (o->save || o->verbose) && o->out == OUT_TEXT)
		fprintf(stderr, "ttychat: saved as conversation %s\n", conv_id);

	if (o->out != OUT_TEXT) {
		if (rep.failed && !cancelled) {
			json_error(o, status, rep.error, rep.text ? rep.text : "");
		} else {
			cJSON *j = cJSON_CreateObject();
			cJSON_AddStringToObject(j, "type", "done");
			cJSON_AddStringToObject(j, "text", rep.text ? rep.text : "");
			cJSON_AddStringToObject(j, "stop", stop_name(cancelled ? ENGINE_STOP_CANCELLED : rep.stop));
			cJSON_AddNumberToObject(j, "exit", status);
			cJSON *m = cJSON_AddObjectToObject(j, "model");
			cJSON_AddStringToObject(m, "name", r->me.remote ? info.name : r->me.name);
			cJSON_AddStringToObject(m, "path", r->me.path);
			cJSON_AddStringToObject(m, "arch", info.arch);
			cJSON_AddStringToObject(m, "quant", info.quant);
			cJSON_AddStringToObject(m, "backend", info.backend);
			cJSON_AddItemToObject(j, "stats", stats_json(&rep.stats));
			if (conv_id)
				cJSON_AddStringToObject(j, "conversation", conv_id);
			json_print(j);
		}
	}
	free(rep.text);
	return status;
}

/* stdin, stdout and stderr open (on /dev/null if they were closed), so that
 * no descriptor the engine opens can take their place. */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
			int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
			if (n >= 0 && n != fd) {
				dup2(n, fd);
				close(n);
			}
		}
	}
}

int cmd_oneshot(int argc, char **argv)
{
	ensure_std_fds();
	struct run *r = calloc(1, sizeof *r);
	if (!r) {
		fprintf(stderr, "ttychat: out of memory\n");
		return EXIT_FAIL;
	}
	struct opts *o = &r->o;
	o->n_predict = -1;
	o->device = -1;
	o->gpu_layers = -2;
	engine_sampling_default(&o->s);
	/* a fresh seed per run unless --seed fixes one */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	o->s.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);

	int status = parse_opts(argc, argv, o);
	if (status >= 0) {
		free(r);
		return status;
	}

	got_signal = 0;
	struct sigaction sa = {.sa_handler = on_signal}, old[3];
	sigemptyset(&sa.sa_mask); /* no SA_RESTART: a blocked read must stop */
	static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, &old[i]);

	status = run(r);

	fflush(stdout);
	sig_engine = NULL;
	if (r->e)
		engine_free(r->e);
	oneshot_hist_close(r->hist);
	convo_free(&r->cv);
	free(r->system);
	free(r->stdin_text);
	free(r->prompt);
	config_entry_free(&r->me);
	free(r);
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &old[i], NULL);
	if (status == EXIT_OK && ferror(stdout)) {
		fprintf(stderr, "ttychat: error writing the output\n");
		status = EXIT_FAIL;
	}
	return status;
}
