/*
 * cmd_serve.c - `ttychat serve`: options, the model, signals; the server
 * itself is serve.c.
 *
 * The model is chosen and its settings decided as for the chat
 * (src/session.h: flags > models.d > settings.json > the file's sampling
 * advice > defaults): a file, a
 * models.d name, or a remote entry (serve then relays to that server); the
 * entry's context, KV type, device and GPU layers apply to the load, and
 * its sampling defaults become the defaults of requests that leave a field
 * out.  A system prompt is the client's to send: the configured ones are
 * not added.  The listening line goes to stderr as soon as the socket is bound (with
 * --port 0 it tells the port chosen), so a script can wait for it; the
 * model then loads while /health answers 503.  SIGINT and SIGTERM stop
 * the server through a self-pipe; the exit status is 0 then.
 *
 * Binding to anything but a loopback address needs --api-key-file: an
 * open server on a network is a choice made explicit, not a default.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "chatopts.h"
#include "commands.h"
#include "engine.h"
#include "serve.h"
#include "session.h"

/* the self-pipe's write end, for the signal handler only */
static volatile int serve_sig_fd = -1;

static void on_signal(int sig)
{
	(void)sig;
	int fd = serve_sig_fd;
	if (fd >= 0) {
		char b = 1;
		ssize_t w = write(fd, &b, 1);
		(void)w;
	}
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ttychat serve [--host ADDR] [--port N] [-m MODEL] [--api-key-file FILE] [--max-queue N]\n"
		"                     [--max-conns N] [--slots N] [-c N] [-t N] [--kv-type TYPE] [--cache-type-k TYPE]\n"
		"                     [--cache-type-v TYPE] [--kv-rotation on|off] [--device DEV] [--gpu-layers N]\n"
		"                     [--draft MODEL] [--spec MODE] [--draft-max N] [-v]\n"
		"An OpenAI-compatible HTTP server on the local model: /v1/chat/completions,\n"
		"/v1/completions, /v1/models, /health.\n"
		"  --host ADDR          address to listen on (default 127.0.0.1; any other needs --api-key-file)\n"
		"  --port N             port (default 8080; 0 picks a free one)\n"
		"  -m, --model MODEL    model file or models.d name (default: as for the chat)\n"
		"  --api-key-file FILE  require \"Authorization: Bearer KEY\", KEY being the file's first line\n"
		"  --max-queue N        requests that may wait behind the running one (default 16; more: 429)\n"
		"  --max-conns N        open connections (default 64; when full, idle ones are closed first)\n"
		"  --slots N            conversations whose KV cache is kept for reuse (default 8)\n"
		"  -c, --ctx-size N     context size in tokens\n"
		"  -t, --threads N      compute threads (default: all cores)\n"
		"  --kv-type TYPE       KV cache type of K and V: f16 (default), q8_0, q5_0, q5_1,\n"
		"                       q4_0, q4_1, iq4_nl, q3r (3.25 bits, ttychat's own)\n"
		"  --cache-type-k TYPE  the K cache's type alone (beats --kv-type)\n"
		"  --cache-type-v TYPE  the V cache's type alone (beats --kv-type)\n"
		"  --kv-rotation on|off rotate K/V rows of the types under 8 bits per head (default on)\n"
		"  --device DEV         where the model runs: auto (default), cpu or cuda\n"
		"  --gpu-layers N       layers on the GPU: -1 as many as fit (default), 0 none\n"
		"  --draft MODEL        draft model for speculative decoding (same vocabulary)\n"
		"  --spec MODE          speculative decoding: auto (default), off, ngram, draft\n"
		"  --draft-max N        tokens guessed per pass at most, 1-16 (default 8)\n"
		"  -v, --verbose        one line per request on stderr (never the content)\n");
}

static int parse_num(const char *s, const char *flag, long lo, long hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi) {
		fprintf(stderr, "ttychat serve: %s: '%s' is not an integer in [%ld, %ld]\n", flag, s, lo, hi);
		return -1;
	}
	*out = (int)v;
	return 0;
}

/* Whether every address HOST resolves to is a loopback one (127.0.0.0/8,
 * ::1): a name is judged by where it leads, never by its spelling.  WHY
 * gets a note when it does not resolve. */
static bool loopback(const char *host, char *why, size_t whylen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	int rc = getaddrinfo(host, NULL, &hints, &res);
	why[0] = '\0';
	if (rc != 0) {
		snprintf(why, whylen, " (it does not resolve: %s)", gai_strerror(rc));
		return false;
	}
	bool ok = res != NULL;
	for (const struct addrinfo *a = res; a; a = a->ai_next) {
		if (a->ai_family == AF_INET) {
			uint32_t ip = ntohl(((const struct sockaddr_in *)(const void *)a->ai_addr)->sin_addr.s_addr);
			ok = ok && (ip >> 24) == 127;
		} else if (a->ai_family == AF_INET6) {
			const struct in6_addr *x = &((const struct sockaddr_in6 *)(const void *)a->ai_addr)->sin6_addr;
			ok = ok && (IN6_IS_ADDR_LOOPBACK(x) || (IN6_IS_ADDR_V4MAPPED(x) && x->s6_addr[12] == 127));
		} else {
			ok = false;
		}
	}
	freeaddrinfo(res);
	return ok;
}

/* The key: the file's first line, blanks trimmed.  The file must be 0600
 * or stricter. */
static char *read_key(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "ttychat serve: --api-key-file %s: %s\n", path, fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (st.st_mode & 077) {
		fprintf(stderr, "ttychat serve: --api-key-file %s: readable by others (chmod 600 %s)\n", path, path);
		close(fd);
		return NULL;
	}
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	char *k = buf + strspn(buf, " \t");
	size_t l = strlen(k);
	while (l > 0 && (k[l - 1] == ' ' || k[l - 1] == '\t'))
		k[--l] = '\0';
	bool ok = l > 0;
	for (size_t i = 0; i < l; i++)
		if ((unsigned char)k[i] < 0x20 || k[i] == 0x7f)
			ok = false;
	char *key = ok ? strdup(k) : NULL;
	memset(buf, 0, sizeof buf);
	if (!ok)
		fprintf(stderr, "ttychat serve: --api-key-file %s: no key on its first line\n", path);
	return key;
}

struct serve_args {
	const char *host, *key_file;
	int port, max_queue, slots, max_conns;
	bool verbose;
	struct session_flags f;
};

/* -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct serve_args *a)
{
	enum { O_HOST = 1000, O_PORT, O_KEY, O_QUEUE, O_SLOTS, O_HELP, O_KV, O_KV_K, O_KV_V, O_KV_ROT, O_DEVICE, O_GPU_LAYERS,
	       O_CONNS, O_DRAFT, O_SPEC, O_DRAFT_MAX };
	static const struct option longopts[] = {
		{"host", required_argument, NULL, O_HOST},
		{"port", required_argument, NULL, O_PORT},
		{"model", required_argument, NULL, 'm'},
		{"api-key-file", required_argument, NULL, O_KEY},
		{"max-queue", required_argument, NULL, O_QUEUE},
		{"slots", required_argument, NULL, O_SLOTS},
		{"max-conns", required_argument, NULL, O_CONNS},
		{"ctx-size", required_argument, NULL, 'c'},
		{"threads", required_argument, NULL, 't'},
		{"kv-type", required_argument, NULL, O_KV},
		{"cache-type-k", required_argument, NULL, O_KV_K},
		{"cache-type-v", required_argument, NULL, O_KV_V},
		{"kv-rotation", required_argument, NULL, O_KV_ROT},
		{"device", required_argument, NULL, O_DEVICE},
		{"gpu-layers", required_argument, NULL, O_GPU_LAYERS},
		{"draft", required_argument, NULL, O_DRAFT},
		{"spec", required_argument, NULL, O_SPEC},
		{"draft-max", required_argument, NULL, O_DRAFT_MAX},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	*a = (struct serve_args){.host = "127.0.0.1", .port = 8080, .max_queue = 16, .slots = 8, .max_conns = 64};
	session_flags_init(&a->f);
	int c, n;
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:c:t:vh", longopts, NULL)) != -1) {
		switch (c) {
		case O_HOST: a->host = optarg; break;
		case O_PORT:
			if (parse_num(optarg, "--port", 0, 65535, &a->port))
				return EXIT_USAGE;
			break;
		case 'm': a->f.model = optarg; break;
		case O_DRAFT: a->f.draft = optarg; break;
		case O_SPEC:
			if ((a->f.spec = engine_spec_parse(optarg)) < 0) {
				fprintf(stderr, "ttychat serve: --spec: '%s' is not auto, off, ngram or draft\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case O_DRAFT_MAX:
			if (parse_num(optarg, "--draft-max", 1, 16, &a->f.draft_max))
				return EXIT_USAGE;
			break;
		case O_KEY: a->key_file = optarg; break;
		case O_QUEUE:
			if (parse_num(optarg, "--max-queue", 0, 100000, &a->max_queue))
				return EXIT_USAGE;
			break;
		case O_SLOTS:
			if (parse_num(optarg, "--slots", 1, 1024, &a->slots))
				return EXIT_USAGE;
			break;
		case O_CONNS:
			if (parse_num(optarg, "--max-conns", 1, 100000, &a->max_conns))
				return EXIT_USAGE;
			break;
		case 'c':
			if (parse_num(optarg, "--ctx-size", 16, 1 << 24, &n))
				return EXIT_USAGE;
			a->f.n_ctx = (uint32_t)n;
			break;
		case 't':
			if (parse_num(optarg, "--threads", 1, 1024, &a->f.n_threads))
				return EXIT_USAGE;
			break;
		case O_KV:
		case O_KV_K:
		case O_KV_V:
		case O_KV_ROT:
			if (chatopts_kv_flag(&a->f, "ttychat serve",
					     c == O_KV ? "kv-type" : c == O_KV_K ? "cache-type-k"
						 : c == O_KV_V ? "cache-type-v" : "kv-rotation", optarg))
				return EXIT_USAGE;
			break;
		case O_DEVICE:
			if ((a->f.device = config_device(optarg)) < 0) {
				fprintf(stderr, "ttychat serve: --device: '%s' is not auto, cpu or cuda\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case O_GPU_LAYERS:
			if (parse_num(optarg, "--gpu-layers", -1, 1 << 20, &a->f.gpu_layers))
				return EXIT_USAGE;
			break;
		case 'v': a->verbose = true; break;
		case 'h':
		case O_HELP: usage(stdout); return EXIT_OK;
		default: fprintf(stderr, "ttychat serve: try 'ttychat serve --help'\n"); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ttychat serve: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	char why[256];
	if (!a->key_file && !loopback(a->host, why, sizeof why)) {
		fprintf(stderr, "ttychat serve: --host %s is not a loopback address%s: give --api-key-file FILE so that "
				"only clients with the key are served\n", a->host, why);
		return EXIT_USAGE;
	}
	return -1;
}

/* Binds, loads and serves until a signal; the exit status. */
static int run_server(const struct serve_args *a, const struct serve_opts *so, const struct model_entry *me,
		      const struct session_config *cfg)
{
	char err[1024];
	int status = EXIT_OK;
	int sp[2] = {-1, -1};
	engine *e = NULL;
	struct server *srv = NULL;
	struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term, old_pipe, ign = {.sa_handler = SIG_IGN};
	sigemptyset(&sa.sa_mask);
	if (pipe(sp) != 0) {
		fprintf(stderr, "ttychat serve: cannot create a pipe: %s\n", strerror(errno));
		return EXIT_FAIL;
	}
	for (int i = 0; i < 2; i++) {
		fcntl(sp[i], F_SETFL, fcntl(sp[i], F_GETFL) | O_NONBLOCK);
		fcntl(sp[i], F_SETFD, FD_CLOEXEC);
	}
	serve_sig_fd = sp[1];
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGPIPE, &ign, &old_pipe);

	struct engine_params ep = {.n_threads = cfg->n_threads};
	int req = 0;
	if (!(e = engine_create(&ep, err, sizeof err)) || !(srv = serve_open(e, so, err, sizeof err))) {
		fprintf(stderr, "ttychat serve: %s\n", err);
		status = EXIT_FAIL;
	} else if ((req = engine_load(e, me->path, &cfg->load)) <= 0) {
		fprintf(stderr, "ttychat serve: %s: %s\n", me->display_name, engine_last_error(e));
		status = EXIT_MODEL;
	} else {
		const char *h = a->host;
		fprintf(stderr, "ttychat serve: listening on http://%s%s%s:%d/v1 (model %s)%s\n", strchr(h, ':') ? "[" : "",
			h, strchr(h, ':') ? "]" : "", serve_port(srv), so->model_name, so->api_key ? ", API key required" : "");
		fflush(stderr);
		if (serve_run(srv, req, sp[0], err, sizeof err) != 0) {
			fprintf(stderr, "ttychat serve: %s\n", err);
			status = EXIT_MODEL;
		} else if (a->verbose) {
			fprintf(stderr, "ttychat serve: stopped\n");
		}
	}
	serve_close(srv);
	engine_free(e);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGPIPE, &old_pipe, NULL);
	serve_sig_fd = -1;
	close(sp[0]);
	close(sp[1]);
	return status;
}

int cmd_serve(int argc, char **argv)
{
	struct serve_args a;
	int status = parse_args(argc, argv, &a);
	if (status >= 0)
		return status;
	char *key = NULL;
	if (a.key_file && !(key = read_key(a.key_file)))
		return EXIT_USAGE;

	/* the model and its settings as the chat decides them (src/session.h) */
	char err[1024];
	struct session_decision d;
	status = session_decide(&a.f, NULL, &d, err, sizeof err);
	if (status == SESSION_DECIDED) {
		const struct model_entry *me = &d.me;
		struct serve_opts so = {.host = a.host, .port = a.port, .api_key = key, .max_queue = a.max_queue,
					.slots = a.slots, .max_clients = a.max_conns, .model_name = me->name, .log = a.verbose ? stderr : NULL};
		/* requests that leave a field out get the decided defaults */
		so.sampling = d.cfg.sampling;
		so.spec = d.cfg.spec;
		so.draft_max = d.cfg.draft_max;
		if (d.have_me) {
			so.think = me->think;
			so.reasoning_effort = me->reasoning_effort[0] ? me->reasoning_effort : NULL;
			so.reasoning_budget = me->reasoning_budget;
		}
		/* for the tests: a head timeout shorter than the 10 s default */
		const char *ht = getenv("TTYCHAT_SERVE_HEAD_TIMEOUT_MS");
		long htv = ht ? strtol(ht, NULL, 10) : 0;
		if (htv > 0 && htv <= 3600000)
			so.head_timeout_ms = (int)htv;
		/* a bare file is served under its base name */
		const char *slash = strrchr(me->name, '/');
		if (!me->remote && slash && slash[1])
			so.model_name = slash + 1;
		status = run_server(&a, &so, me, &d.cfg);
	} else {
		fprintf(stderr, "ttychat serve: %s\n", err);
		status = status == SESSION_E_SETTINGS ? EXIT_FAIL : EXIT_MODEL;
	}
	session_decision_free(&d);
	if (key) {
		volatile char *k = key;
		for (size_t i = 0; k[i]; i++)
			k[i] = 0;
		free(key);
	}
	return status;
}
