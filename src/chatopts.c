/*
 * chatopts.c - the chat's command line (see chatopts.h).
 *
 * One getopt_long() table for the three chat modes; each value is range-
 * checked here so that a mode never sees a bad one.  --remote turns -m
 * into the engine's "remote:{...}" spec (the API key stays in the
 * environment: only the variable's name goes into the spec).
 */
#include "config.h"

#include "chatopts.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "commands.h"

#define SYSTEM_MAX ((size_t)1 << 20) /* bytes of a --system @FILE */
#define GRAMMAR_MAX ((size_t)4 << 20) /* bytes of a --grammar FILE */

bool chatopts_in_ci(void)
{
	const char *ci = getenv("CI");
	return ci && ci[0] && strcmp(ci, "0") != 0 && strcmp(ci, "false") != 0;
}

void chatopts_init(struct chat_opts *o)
{
	memset(o, 0, sizeof *o);
	session_flags_init(&o->f);
	o->n_predict = -1;
	/* a fresh seed per run unless --seed fixes one */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	o->f.sampling.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
}

bool chatopts_wants_tui(const struct chat_opts *o)
{
	return !o->prompt && o->out == CHAT_OUT_TEXT && !o->save && !o->continue_id && !o->f.raw && !o->grammar_file && !o->schema_file && !o->tools_file &&
	       !chatopts_in_ci() && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
}

/* -m, or with --remote the engine's remote spec naming -m as the server's
 * model.  -1 to go on, else the exit status. */
static int remote_spec(struct chat_opts *o)
{
	o->f.model = o->model_arg;
	if (!o->remote)
		return -1;
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "base_url", o->remote);
	if (o->model_arg)
		cJSON_AddStringToObject(j, "model", o->model_arg);
	const char *key = getenv("TTYCHAT_API_KEY");
	if (key && key[0])
		cJSON_AddStringToObject(j, "api_key_env", "TTYCHAT_API_KEY");
	char *t = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	int w = t ? snprintf(o->remote_spec, sizeof o->remote_spec, "remote:%s", t) : -1;
	free(t);
	if (w < 0 || (size_t)w >= sizeof o->remote_spec) {
		fprintf(stderr, "ttychat: --remote: URL or model name too long\n");
		return EXIT_USAGE;
	}
	o->f.model = o->remote_spec;
	return -1;
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

void chatopts_usage(FILE *out)
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
		"      --grammar FILE       constrain the reply to a GBNF grammar (llama.cpp's\n"
		"                           notation); exit 4 unless the reply completes it\n"
		"      --json-schema FILE   constrain the reply to JSON valid under a JSON Schema\n"
		"      --tools FILE         offer the model the tools of FILE (an OpenAI tools array);\n"
		"                           its calls are printed as JSON lines, valid by construction\n"
		"      --tool-choice C      auto (default), none, required, or a tool's name\n"
		"      --no-template        raw completion: the prompt without the chat template\n"
		"      --think on|off       thinking models: think before answering, or not\n"
		"                           (default: as the model's template does)\n"
		"      --reasoning-effort low|medium|high   how hard a thinking model thinks\n"
		"      --reasoning-budget N close the reasoning after N tokens and answer (0 = no limit)\n"
		"      --show-reasoning     write the reasoning to stderr (stdout has only the answer)\n"
		"      --ignore-eos         never end the turn: stop at -n or a --stop string\n"
		"      --remote URL         an OpenAI-compatible server (-m: its model; API key\n"
		"                           from $TTYCHAT_API_KEY when set)\n"
		"  -c, --ctx-size N         context size in tokens\n"
		"  -t, --threads N          compute threads (default: all cores)\n"
		CHATOPTS_KV_HELP
		"      --device DEV         where the model runs: auto (default: a CUDA GPU when one\n"
		"                           is usable, else the CPU), cpu, or cuda\n"
		"      --gpu-layers N       layers on the GPU: -1 as many as fit (default), 0 none\n"
		"      --draft MODEL        a small model with the same vocabulary that guesses\n"
		"                           tokens for the model to verify (speculative decoding)\n"
		"      --spec MODE          speculative decoding: auto (default: the draft model, else\n"
		"                           n-gram lookup, off while it does not pay), off, ngram, draft\n"
		"      --draft-max N        tokens guessed per pass at most, 1-16 (default 8)\n"
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

enum {
	O_SYSTEM = 1000, O_TEMP, O_SEED, O_TOPK, O_TOPP, O_MINP, O_REP, O_PRES, O_FREQ, O_KV, O_KV_K, O_KV_V, O_KV_ROT, O_THEME,
	O_HELP, O_STOP, O_RAW, O_JSON, O_SAVE, O_CONT, O_VERSION, O_REMOTE, O_DEVICE, O_GPU_LAYERS, O_GRAMMAR,
	O_SCHEMA, O_TOOLS, O_TOOL_CHOICE, O_THINK, O_EFFORT, O_BUDGET, O_SHOW_REASONING, O_IGNORE_EOS, O_DRAFT,
	O_SPEC, O_DRAFT_MAX
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
	{"cache-type-k", required_argument, NULL, O_KV_K},
	{"cache-type-v", required_argument, NULL, O_KV_V},
	{"kv-rotation", required_argument, NULL, O_KV_ROT},
	{"device", required_argument, NULL, O_DEVICE},
	{"gpu-layers", required_argument, NULL, O_GPU_LAYERS},
	{"stop", required_argument, NULL, O_STOP},
	{"grammar", required_argument, NULL, O_GRAMMAR},
	{"json-schema", required_argument, NULL, O_SCHEMA},
	{"tools", required_argument, NULL, O_TOOLS},
	{"tool-choice", required_argument, NULL, O_TOOL_CHOICE},
	{"no-template", no_argument, NULL, O_RAW},
	{"think", required_argument, NULL, O_THINK},
	{"reasoning-effort", required_argument, NULL, O_EFFORT},
	{"reasoning-budget", required_argument, NULL, O_BUDGET},
	{"show-reasoning", no_argument, NULL, O_SHOW_REASONING},
	{"ignore-eos", no_argument, NULL, O_IGNORE_EOS},
	{"draft", required_argument, NULL, O_DRAFT},
	{"spec", required_argument, NULL, O_SPEC},
	{"draft-max", required_argument, NULL, O_DRAFT_MAX},
	{"json", optional_argument, NULL, O_JSON},
	{"save", no_argument, NULL, O_SAVE},
	{"continue", required_argument, NULL, O_CONT},
	{"theme", required_argument, NULL, O_THEME},
	{"remote", required_argument, NULL, O_REMOTE},
	{"help", no_argument, NULL, O_HELP},
	{"version", no_argument, NULL, O_VERSION},
	{NULL, 0, NULL, 0},
};

/* The numeric options: where each goes, its range, and the sampling field
 * it marks as given. */
enum num_kind { NUM_INT, NUM_U32, NUM_FLOAT, NUM_U64 };
static const struct numopt {
	int code;
	const char *flag;
	enum num_kind kind;
	size_t off;
	double lo, hi;
	unsigned set;
} numopts[] = {
	{'n', "--max-tokens", NUM_INT, offsetof(struct chat_opts, n_predict), -1, INT_MAX, 0},
	{O_BUDGET, "--reasoning-budget", NUM_INT, offsetof(struct chat_opts, reasoning_budget), 0, INT_MAX, 0},
	{O_DRAFT_MAX, "--draft-max", NUM_INT, offsetof(struct chat_opts, f.draft_max), 1, 16, 0},
	{'c', "--ctx-size", NUM_U32, offsetof(struct chat_opts, f.n_ctx), 16, 1 << 24, 0},
	{'t', "--threads", NUM_INT, offsetof(struct chat_opts, f.n_threads), 1, 1024, 0},
	{O_GPU_LAYERS, "--gpu-layers", NUM_INT, offsetof(struct chat_opts, f.gpu_layers), -1, 1 << 20, 0},
	{O_SEED, "--seed", NUM_U64, offsetof(struct chat_opts, f.sampling.seed), 0, 0, 0},
	{O_TEMP, "--temp", NUM_FLOAT, offsetof(struct chat_opts, f.sampling.temperature), 0, 100, SESSION_SET_TEMP},
	{O_TOPK, "--top-k", NUM_INT, offsetof(struct chat_opts, f.sampling.top_k), 0, 1 << 24, SESSION_SET_TOPK},
	{O_TOPP, "--top-p", NUM_FLOAT, offsetof(struct chat_opts, f.sampling.top_p), 0, 1, SESSION_SET_TOPP},
	{O_MINP, "--min-p", NUM_FLOAT, offsetof(struct chat_opts, f.sampling.min_p), 0, 1, SESSION_SET_MINP},
	{O_REP, "--repeat-penalty", NUM_FLOAT, offsetof(struct chat_opts, f.sampling.repeat_penalty), 0.01, 100,
	 SESSION_SET_REP},
	{O_PRES, "--presence-penalty", NUM_FLOAT, offsetof(struct chat_opts, f.sampling.presence_penalty), -10, 10, 0},
	{O_FREQ, "--frequency-penalty", NUM_FLOAT, offsetof(struct chat_opts, f.sampling.frequency_penalty), -10, 10,
	 0},
};

/* Option C's number into its field: 1 when C is one, 0 when not, -1 on a
 * bad value (said on stderr). */
static int parse_numopt(struct chat_opts *o, int c, const char *arg)
{
	for (size_t i = 0; i < sizeof numopts / sizeof numopts[0]; i++) {
		const struct numopt *n = &numopts[i];
		if (n->code != c)
			continue;
		char *field = (char *)o + n->off;
		int v;
		switch (n->kind) {
		case NUM_INT:
			if (parse_int(arg, n->flag, (long)n->lo, (long)n->hi, &v))
				return -1;
			memcpy(field, &v, sizeof v);
			break;
		case NUM_U32:
			if (parse_int(arg, n->flag, (long)n->lo, (long)n->hi, &v))
				return -1;
			*(uint32_t *)(void *)field = (uint32_t)v;
			break;
		case NUM_FLOAT:
			if (parse_float(arg, n->flag, n->lo, n->hi, (float *)(void *)field))
				return -1;
			break;
		case NUM_U64:
			if (parse_u64(arg, n->flag, (uint64_t *)(void *)field))
				return -1;
			break;
		}
		o->f.set |= n->set;
		return 1;
	}
	return 0;
}

/* One option that is not a number: -1 to go on, else the exit status. */
int chatopts_kv_flag(struct session_flags *f, const char *prog, const char *opt, const char *arg)
{
	if (strcmp(opt, "kv-rotation") == 0) {
		if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0) {
			fprintf(stderr, "%s: --kv-rotation: '%s' is not on or off\n", prog, arg);
			return EXIT_USAGE;
		}
		f->kv_rotation = strcmp(arg, "on") == 0;
		return 0;
	}
	const int t = engine_kv_type_parse(arg);
	if (t < 0) {
		fprintf(stderr, "%s: --%s: '%s' is not one of %s\n", prog, opt, arg, ENGINE_KV_TYPE_NAMES);
		return EXIT_USAGE;
	}
	*(strcmp(opt, "kv-type") == 0 ? &f->kv_type : strcmp(opt, "cache-type-k") == 0 ? &f->cache_k : &f->cache_v) = t;
	return 0;
}

static int parse_other(struct chat_opts *o, int c, const char *arg)
{
	switch (c) {
	case 'm': o->model_arg = arg; break;
	case 'p': o->prompt = arg; break;
	case 'v': o->verbose = true; break;
	case O_SYSTEM: o->system_arg = arg; break;
	case O_KV:
	case O_KV_K:
	case O_KV_V:
	case O_KV_ROT:
		if (chatopts_kv_flag(&o->f, "ttychat",
				     c == O_KV ? "kv-type" : c == O_KV_K ? "cache-type-k"
				     : c == O_KV_V ? "cache-type-v" : "kv-rotation", arg))
			return EXIT_USAGE;
		break;
	case O_DEVICE:
		if ((o->f.device = config_device(arg)) < 0) {
			fprintf(stderr, "ttychat: --device: '%s' is not auto, cpu or cuda\n", arg);
			return EXIT_USAGE;
		}
		break;
	case O_STOP:
		if (!arg[0] || strlen(arg) > 1024) {
			fprintf(stderr, "ttychat: --stop: the string must have 1 to 1024 bytes\n");
			return EXIT_USAGE;
		}
		if (o->n_stop == CHATOPTS_STOP_MAX) {
			fprintf(stderr, "ttychat: --stop: at most %d stop strings\n", CHATOPTS_STOP_MAX);
			return EXIT_USAGE;
		}
		o->stop[o->n_stop++] = arg;
		o->stop[o->n_stop] = NULL;
		break;
	case O_GRAMMAR: o->grammar_file = arg; break;
	case O_SCHEMA: o->schema_file = arg; break;
	case O_TOOLS: o->tools_file = arg; break;
	case O_TOOL_CHOICE: o->tool_choice = arg; break;
	case O_RAW: o->f.raw = true; break;
	case O_THINK:
		if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0) {
			fprintf(stderr, "ttychat: --think: '%s' is not on or off\n", arg);
			return EXIT_USAGE;
		}
		o->think = strcmp(arg, "on") == 0 ? ENGINE_THINK_ON : ENGINE_THINK_OFF;
		break;
	case O_EFFORT:
		if (strcmp(arg, "low") != 0 && strcmp(arg, "medium") != 0 && strcmp(arg, "high") != 0) {
			fprintf(stderr, "ttychat: --reasoning-effort: '%s' is not low, medium or high\n", arg);
			return EXIT_USAGE;
		}
		o->reasoning_effort = arg;
		break;
	case O_SHOW_REASONING: o->show_reasoning = true; break;
	case O_IGNORE_EOS: o->ignore_eos = true; break;
	case O_DRAFT: o->f.draft = arg; break;
	case O_SPEC:
		if ((o->f.spec = engine_spec_parse(arg)) < 0) {
			fprintf(stderr, "ttychat: --spec: '%s' is not auto, off, ngram or draft\n", arg);
			return EXIT_USAGE;
		}
		break;
	case O_JSON:
		if (!arg || strcmp(arg, "lines") == 0) {
			o->out = CHAT_OUT_JSON_LINES;
		} else if (strcmp(arg, "final") == 0) {
			o->out = CHAT_OUT_JSON_FINAL;
		} else {
			fprintf(stderr, "ttychat: --json=%s: use --json or --json=final\n", arg);
			return EXIT_USAGE;
		}
		break;
	case O_SAVE: o->save = true; break;
	case O_CONT:
		if (strlen(arg) < 4 || strlen(arg) > 32 || strspn(arg, "0123456789abcdef") != strlen(arg)) {
			fprintf(stderr, "ttychat: --continue: '%s' is not a conversation ID ('ttychat history list' shows them)\n",
				arg);
			return EXIT_USAGE;
		}
		o->continue_id = arg;
		break;
	case O_THEME: o->theme = arg; break;
	case O_REMOTE:
		if (strncmp(arg, "http://", 7) != 0 && strncmp(arg, "https://", 8) != 0) {
			fprintf(stderr, "ttychat: --remote: '%s' is not an http:// or https:// URL\n", arg);
			return EXIT_USAGE;
		}
		o->remote = arg;
		break;
	case 'h':
	case O_HELP:
		printf("usage: ttychat [-m MODEL] [-p TEXT] [OPTIONS]\n");
		chatopts_usage(stdout);
		return EXIT_OK;
	case O_VERSION: printf("ttychat %s\n", PACKAGE_VERSION); return EXIT_OK;
	default: fprintf(stderr, "ttychat: try 'ttychat --help'\n"); return EXIT_USAGE;
	}
	return -1;
}

/* Returns -1 to go on, else the exit status. */
int chatopts_parse(int argc, char **argv, struct chat_opts *o)
{
	int c;
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "m:p:n:c:t:vh", longopts, NULL)) != -1) {
		int st = parse_numopt(o, c, optarg);
		if (st < 0)
			return EXIT_USAGE;
		if (st == 0 && (st = parse_other(o, c, optarg)) >= 0)
			return st;
	}
	if (optind < argc) {
		fprintf(stderr, "ttychat: unexpected argument '%s' (a prompt goes after -p)\n", argv[optind]);
		return EXIT_USAGE;
	}
	if ((o->grammar_file || o->schema_file) && o->remote) {
		fprintf(stderr, "ttychat: %s needs a local model: a remote server's reply cannot be constrained\n",
			o->grammar_file ? "--grammar" : "--json-schema");
		return EXIT_USAGE;
	}
	if (o->tools_file && (o->grammar_file || o->schema_file || o->remote || o->f.raw || !o->prompt)) {
		fprintf(stderr, "ttychat: --tools needs a prompt (-p) and a local model's template, and cannot be combined "
				"with --grammar, --json-schema or --no-template\n");
		return EXIT_USAGE;
	}
	if (o->tool_choice && !o->tools_file) {
		fprintf(stderr, "ttychat: --tool-choice needs --tools\n");
		return EXIT_USAGE;
	}
	if (o->grammar_file && o->schema_file) {
		fprintf(stderr, "ttychat: --grammar and --json-schema cannot be combined\n");
		return EXIT_USAGE;
	}
	if (o->f.raw && (o->save || o->continue_id)) {
		fprintf(stderr, "ttychat: --no-template cannot be combined with --save or --continue\n");
		return EXIT_USAGE;
	}
	return remote_spec(o);
}

/* ---- input ----------------------------------------------------------------- */

int chatopts_read_fd(int fd, size_t max, volatile sig_atomic_t *stop, char **out, size_t *len)
{
	/* room for MAX bytes, one more to see that there are more, and the NUL */
	size_t cap = max + 2 < 4096 ? max + 2 : 4096, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		return ENOMEM;
	for (;;) {
		if (*stop) {
			free(buf);
			return EINTR;
		}
		if (n > max) {
			free(buf);
			return EFBIG;
		}
		if (n + 1 >= cap) {
			size_t nc = cap > (max + 2) / 2 ? max + 2 : cap * 2;
			char *nb = realloc(buf, nc);
			if (!nb) {
				free(buf);
				return ENOMEM;
			}
			buf = nb;
			cap = nc;
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

int chatopts_read_grammar(const struct chat_opts *o, volatile sig_atomic_t *stop, char **out, char *err,
			  size_t errlen)
{
	*out = NULL;
	const char *path = o->grammar_file ? o->grammar_file : o->schema_file;
	const char *flag = o->grammar_file ? "--grammar" : "--json-schema";
	if (!path)
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: cannot read %s: %s", flag, path, fd < 0 ? strerror(errno) : "is a folder");
		if (fd >= 0)
			close(fd);
		return EXIT_FAIL;
	}
	char *text = NULL;
	size_t len;
	int e = chatopts_read_fd(fd, GRAMMAR_MAX, stop, &text, &len);
	close(fd);
	if (e == EINTR)
		return 128 + (int)*stop;
	if (e) {
		snprintf(err, errlen, "%s: cannot read %s: %s", flag, path, e == EFBIG ? "larger than 4 MiB" : strerror(e));
		return EXIT_FAIL;
	}
	char msg[512] = "";
	int rc;
	if (strlen(text) != len) {
		rc = ENGINE_E_INVAL;
		snprintf(msg, sizeof msg, "contains NUL bytes (not text)");
	} else if (o->schema_file) {
		rc = engine_json_schema_grammar(text, len, out, msg, sizeof msg);
		if (!rc && (rc = engine_grammar_check(*out, strlen(*out), msg, sizeof msg)))
			/* a grammar we wrote that does not compile is our bug */
			snprintf(msg + strlen(msg), sizeof msg - strlen(msg), " (in the grammar made from it)");
	} else {
		rc = engine_grammar_check(text, len, msg, sizeof msg);
		if (!rc) {
			*out = text;
			text = NULL;
		}
	}
	free(text);
	if (rc) {
		snprintf(err, errlen, "%s %s: %s", flag, path, rc == ENGINE_E_NOMEM ? "out of memory" : msg);
		free(*out);
		*out = NULL;
		return EXIT_FAIL;
	}
	return 0;
}

int chatopts_read_system(struct chat_opts *o, volatile sig_atomic_t *stop, char **out, char *err, size_t errlen)
{
	*out = NULL;
	const char *arg = o->system_arg;
	if (!arg)
		return 0;
	if (arg[0] != '@' || arg[1] == '@') {
		if (!(*out = strdup(arg[0] == '@' ? arg + 1 : arg))) {
			snprintf(err, errlen, "out of memory");
			return EXIT_FAIL;
		}
		o->f.system = *out;
		return 0;
	}
	int fd = open(arg + 1, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "--system: cannot read %s: %s", arg + 1, fd < 0 ? strerror(errno) : "is a folder");
		if (fd >= 0)
			close(fd);
		return EXIT_FAIL;
	}
	size_t len;
	int e = chatopts_read_fd(fd, SYSTEM_MAX, stop, out, &len);
	close(fd);
	if (e == EINTR)
		return 128 + (int)*stop;
	if (e) {
		snprintf(err, errlen, "--system: cannot read %s: %s", arg + 1, e == EFBIG ? "larger than 1 MiB" : strerror(e));
		return EXIT_FAIL;
	}
	if (strlen(*out) != len) {
		free(*out);
		*out = NULL;
		snprintf(err, errlen, "--system: %s contains NUL bytes (not text)", arg + 1);
		return EXIT_FAIL;
	}
	/* a file's last newline is not part of the message */
	while (len > 0 && ((*out)[len - 1] == '\n' || (*out)[len - 1] == '\r'))
		(*out)[--len] = '\0';
	o->f.system = *out;
	return 0;
}
