/*
 * cmd_models.c - `ttychat models` (the models.d catalogue and the loose
 * GGUF files, with size, quantisation and whether each file is present)
 * and `ttychat pull NAME|URL` (a verified, resumable download; pull.h).
 *
 * Both only print: the catalogue comes from catalog.c and the transfer
 * from pull.c.  The progress bar is drawn on stderr when it is a terminal,
 * at most ten times a second, and erased line by line with "\r...\e[K";
 * without a terminal nothing is drawn.
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "commands.h"
#include "pull.h"

static volatile sig_atomic_t pull_sig;

static void on_pull_signal(int sig)
{
	pull_sig = sig;
}

static void fmt_bytes(uint64_t b, char *buf, size_t n)
{
	double d = (double)b;
	if (d >= 1024.0 * 1024 * 1024)
		snprintf(buf, n, "%.1f GiB", d / (1024.0 * 1024 * 1024));
	else if (d >= 1024.0 * 1024)
		snprintf(buf, n, "%.1f MiB", d / (1024.0 * 1024));
	else if (d >= 1024.0)
		snprintf(buf, n, "%.0f KiB", d / 1024.0);
	else
		snprintf(buf, n, "%" PRIu64 " B", b);
}

/* ---- models ---------------------------------------------------------------- */

static void models_usage(FILE *out)
{
	fprintf(out, "usage: ttychat models [--json] [--names]\n"
		     "  --json    one JSON array, one object per entry\n"
		     "  --names   only the usable names, one per line (for shell completion)\n"
		     "Lists the models.d entries (user, then system) and the GGUF files of the models\n"
		     "directory, with size, quantisation and whether the file is present.  Invalid\n"
		     "models.d files are reported on stderr and make the exit status 1.\n");
}

struct shown {
	uint64_t size;
	char quant[32];
	char note[300];
};

static void probe(const struct config_item *it, struct shown *s)
{
	memset(s, 0, sizeof *s);
	if (!it->ok)
		return;
	s->size = it->e.size;
	snprintf(s->quant, sizeof s->quant, "%s", it->e.quant);
	if (it->e.remote) /* served elsewhere: nothing to probe here */
		snprintf(s->quant, sizeof s->quant, "remote");
	else if (it->present) {
		char err[300];
		if (config_probe_model(it->e.path, &s->size, s->quant, sizeof s->quant, err, sizeof err) != 0) {
			struct stat st;
			if (stat(it->e.path, &st) == 0)
				s->size = (uint64_t)st.st_size;
			snprintf(s->quant, sizeof s->quant, "?");
			snprintf(s->note, sizeof s->note, "%s", err);
		}
	}
}

int cmd_models(int argc, char **argv)
{
	bool json = false, names = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--names") == 0) {
			names = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			models_usage(stdout);
			return EXIT_OK;
		} else {
			fprintf(stderr, "ttychat models: unknown argument '%s'\n", argv[i]);
			models_usage(stderr);
			return EXIT_USAGE;
		}
	}
	struct config_list l;
	char err[256];
	if (config_list_models(&l, err, sizeof err) != 0) {
		fprintf(stderr, "ttychat models: %s\n", err);
		return EXIT_FAIL;
	}
	int status = EXIT_OK;
	for (size_t i = 0; i < l.n; i++) {
		if (!l.v[i].ok) {
			status = EXIT_FAIL;
			if (!names)
				fprintf(stderr, "ttychat: %s\n", l.v[i].error);
		} else if (l.v[i].e.warnings[0] && !names) {
			/* one line per warning */
			const char *w = l.v[i].e.warnings;
			while (*w) {
				size_t n = strcspn(w, "\n");
				fprintf(stderr, "ttychat: warning: %.*s\n", (int)n, w);
				w += n + (w[n] == '\n');
			}
		}
	}
	if (names) {
		for (size_t i = 0; i < l.n; i++)
			if (l.v[i].ok && !l.v[i].shadowed)
				printf("%s\n", l.v[i].e.name);
		config_list_free(&l);
		return status;
	}
	if (json) {
		cJSON *arr = cJSON_CreateArray();
		for (size_t i = 0; arr && i < l.n; i++) {
			const struct config_item *it = &l.v[i];
			struct shown s;
			probe(it, &s);
			cJSON *o = cJSON_CreateObject();
			if (!o)
				break;
			cJSON_AddItemToArray(arr, o);
			cJSON_AddStringToObject(o, "name", it->e.name);
			cJSON_AddStringToObject(o, "origin", config_origin_name(it->origin));
			cJSON_AddBoolToObject(o, "valid", it->ok);
			if (it->origin != CONFIG_LOOSE)
				cJSON_AddStringToObject(o, "source", it->e.source);
			if (!it->ok) {
				cJSON_AddStringToObject(o, "error", it->error);
				continue;
			}
			cJSON_AddStringToObject(o, "display_name", it->e.display_name);
			cJSON_AddStringToObject(o, "path", it->e.path);
			cJSON_AddBoolToObject(o, "present", it->present);
			cJSON_AddBoolToObject(o, "shadowed", it->shadowed);
			if (s.size)
				cJSON_AddNumberToObject(o, "size", (double)s.size);
			else
				cJSON_AddNullToObject(o, "size");
			if (s.quant[0])
				cJSON_AddStringToObject(o, "quant", s.quant);
			else
				cJSON_AddNullToObject(o, "quant");
			if (it->e.context_size)
				cJSON_AddNumberToObject(o, "context_size", it->e.context_size);
			if (it->e.url[0])
				cJSON_AddStringToObject(o, "url", it->e.url);
			if (it->e.sha256[0])
				cJSON_AddStringToObject(o, "sha256", it->e.sha256);
			cJSON_AddBoolToObject(o, "template_override", it->e.template_text != NULL);
			if (s.note[0])
				cJSON_AddStringToObject(o, "note", s.note);
			if (it->e.warnings[0])
				cJSON_AddStringToObject(o, "warnings", it->e.warnings);
		}
		char *text = arr ? cJSON_PrintUnformatted(arr) : NULL;
		if (!text) {
			fprintf(stderr, "ttychat models: out of memory\n");
			status = EXIT_FAIL;
		} else {
			printf("%s\n", text);
		}
		free(text);
		cJSON_Delete(arr);
		config_list_free(&l);
		return status;
	}
	printf("%-16s %-6s %-10s %-7s %-8s %s\n", "NAME", "FROM", "SIZE", "QUANT", "PRESENT", "DESCRIPTION");
	for (size_t i = 0; i < l.n; i++) {
		const struct config_item *it = &l.v[i];
		if (!it->ok) {
			printf("%-16s %-6s %-10s %-7s %-8s invalid: see the error above\n", it->e.name,
			       config_origin_name(it->origin), "-", "-", "-");
			continue;
		}
		struct shown s;
		probe(it, &s);
		char size[32] = "?";
		if (s.size)
			fmt_bytes(s.size, size, sizeof size);
		char desc[600];
		snprintf(desc, sizeof desc, "%s%s%s%s", it->e.display_name, it->shadowed ? " (hidden by an earlier entry)" : "",
			 s.note[0] ? "; " : "", s.note);
		printf("%-16s %-6s %-10s %-7s %-8s %s\n", it->e.name, config_origin_name(it->origin), size,
		       s.quant[0] ? s.quant : "?", it->present ? "yes" : it->e.url[0] ? "no (pull)" : "no", desc);
	}
	char dir[4096];
	if (config_models_dir(dir, sizeof dir) == 0)
		printf("\nmodels directory: %s\n", dir);
	config_list_free(&l);
	return status;
}

/* ---- pull ------------------------------------------------------------------ */

static void pull_usage(FILE *out)
{
	fprintf(out, "usage: ttychat pull NAME|URL [-o FILE] [--sha256 HEX] [--force] [-q]\n"
		     "  NAME            a models.d entry with \"url\" and \"sha256\"\n"
		     "  URL             an http:// or https:// address of a GGUF file\n"
		     "  -o, --output FILE  where to save it (default: the models directory)\n"
		     "      --sha256 HEX   the expected SHA-256 (overrides the entry's)\n"
		     "      --force        download again even if the file is present\n"
		     "  -q, --quiet        no progress bar and no summary line\n"
		     "A partial download is kept as FILE.part and resumed by the next pull.\n");
}

struct bar {
	bool tty;
	const char *label;
	double t0;
	uint64_t have0;
};

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int draw_bar(void *ctx, uint64_t have, uint64_t total)
{
	struct bar *b = ctx;
	if (pull_sig)
		return 1;
	if (!b->tty)
		return 0;
	double dt = mono_s() - b->t0;
	double rate = dt > 0.2 && have > b->have0 ? (double)(have - b->have0) / dt : 0;
	char h[32], t[32], r[32], eta[32] = "";
	fmt_bytes(have, h, sizeof h);
	fmt_bytes(total, t, sizeof t);
	fmt_bytes((uint64_t)rate, r, sizeof r);
	char barbuf[32];
	int width = 24, fill = total ? (int)((double)have / (double)total * width) : 0;
	if (fill > width)
		fill = width;
	for (int i = 0; i < width; i++)
		barbuf[i] = i < fill ? '#' : '.';
	barbuf[width] = '\0';
	if (rate > 0 && total > have) {
		double s = (double)(total - have) / rate;
		snprintf(eta, sizeof eta, "  %d:%02d left", (int)(s / 60), (int)s % 60);
	}
	if (total)
		fprintf(stderr, "\r%s [%s] %3.0f%%  %s / %s  %s/s%s\033[K", b->label, barbuf,
			100.0 * (double)have / (double)total, h, t, r, eta);
	else
		fprintf(stderr, "\r%s %s  %s/s\033[K", b->label, h, r);
	fflush(stderr);
	return 0;
}

static void end_bar(struct bar *b)
{
	if (b->tty) {
		fprintf(stderr, "\r\033[K");
		fflush(stderr);
	}
}

static int pull_exit(int rc)
{
	switch (rc) {
	case PULL_OK: return EXIT_OK;
	case PULL_E_CANCELLED: return EXIT_INTERRUPT;
	case PULL_E_INVAL: return EXIT_USAGE;
	case PULL_E_IO: return EXIT_FAIL;
	default: return EXIT_DOWNLOAD;
	}
}

int cmd_pull(int argc, char **argv)
{
	const char *output = NULL, *sha = NULL;
	bool force = false, quiet = false;
	enum { O_SHA = 1000, O_FORCE, O_HELP };
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'}, {"sha256", required_argument, NULL, O_SHA},
		{"force", no_argument, NULL, O_FORCE},    {"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, O_HELP},      {NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': output = optarg; break;
		case O_SHA: sha = optarg; break;
		case O_FORCE: force = true; break;
		case 'q': quiet = true; break;
		case 'h':
		case O_HELP: pull_usage(stdout); return EXIT_OK;
		default: pull_usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "ttychat pull: give one model name or URL\n");
		pull_usage(stderr);
		return EXIT_USAGE;
	}
	const char *what = argv[optind];
	if (sha && (strlen(sha) != 64 || strspn(sha, "0123456789abcdefABCDEF") != 64)) {
		fprintf(stderr, "ttychat pull: --sha256: '%s' is not 64 hexadecimal digits\n", sha);
		return EXIT_USAGE;
	}
	char err[1024];
	char dest[4096], url[2048], expect[65] = "";
	bool is_url = strstr(what, "://") != NULL;
	if (is_url) {
		snprintf(url, sizeof url, "%s", what);
		if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
			fprintf(stderr, "ttychat pull: %s: only http:// and https:// URLs can be pulled\n", what);
			return EXIT_USAGE;
		}
		if (output) {
			snprintf(dest, sizeof dest, "%s", output);
		} else {
			/* the last path component, if it is a plain file name */
			const char *p = strchr(strstr(url, "://") + 3, '/');
			size_t end = p ? strcspn(p, "?#") : 0;
			const char *last = p;
			for (size_t i = 0; p && i < end; i++)
				if (p[i] == '/')
					last = p + i + 1;
			size_t l = p ? (size_t)(p + end - last) : 0;
			char dir[4096];
			if (l == 0 || l > 255 || last[0] == '.' ||
			    strspn(last, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-") < l) {
				fprintf(stderr, "ttychat pull: %s: no plain file name at the end of the URL; give -o FILE\n", what);
				return EXIT_USAGE;
			}
			if (config_models_dir(dir, sizeof dir) != 0) {
				fprintf(stderr, "ttychat pull: cannot find the models directory (HOME unset?)\n");
				return EXIT_FAIL;
			}
			int w = snprintf(dest, sizeof dest, "%s/%.*s", dir, (int)l, last);
			if (w < 0 || (size_t)w >= sizeof dest) {
				fprintf(stderr, "ttychat pull: path too long\n");
				return EXIT_USAGE;
			}
		}
	} else {
		struct model_entry me;
		int rc = config_find_entry(what, &me, err, sizeof err);
		if (rc != 0) {
			fprintf(stderr, "ttychat pull: %s\n", err);
			return rc < 0 && strstr(err, "not a model name") ? EXIT_USAGE : EXIT_MODEL;
		}
		if (!me.url[0]) {
			fprintf(stderr, "ttychat pull: %s: the entry has no \"url\" to download from (%s)\n", what,
				me.source);
			config_entry_free(&me);
			return EXIT_MODEL;
		}
		snprintf(url, sizeof url, "%s", me.url);
		snprintf(expect, sizeof expect, "%s", me.sha256);
		snprintf(dest, sizeof dest, "%s", output ? output : me.path);
		config_entry_free(&me);
	}
	if (sha)
		snprintf(expect, sizeof expect, "%s", sha);

	struct sigaction sa = {.sa_handler = on_pull_signal}, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	struct bar b = {.tty = !quiet && isatty(STDERR_FILENO), .label = "verifying", .t0 = mono_s()};
	int status = EXIT_OK;

	struct stat st;
	if (!force && stat(dest, &st) == 0) {
		if (!expect[0]) {
			if (!quiet)
				fprintf(stderr, "ttychat pull: %s is already present (no checksum to verify; --force downloads again)\n",
					dest);
			goto out;
		}
		char got[65];
		uint64_t size;
		int rc = pull_sha256_file(dest, got, &size, draw_bar, &b, err, sizeof err);
		end_bar(&b);
		if (rc != PULL_OK) {
			fprintf(stderr, "ttychat pull: %s\n", err);
			status = pull_exit(rc);
		} else if (strcasecmp(got, expect) != 0) {
			fprintf(stderr, "ttychat pull: %s is present but its SHA-256 is %s, not %s; remove it or use --force\n",
				dest, got, expect);
			status = EXIT_DOWNLOAD;
		} else if (!quiet) {
			fprintf(stderr, "ttychat pull: %s is already present and verified\n", dest);
		}
		goto out;
	}

	b.label = "downloading";
	b.t0 = mono_s();
	struct pull_opts po = {.url = url, .dest = dest, .sha256 = expect[0] ? expect : NULL,
			       .progress = draw_bar, .ctx = &b};
	struct pull_result res;
	int rc = pull_download(&po, &res, err, sizeof err);
	end_bar(&b);
	if (rc != PULL_OK) {
		fprintf(stderr, "ttychat pull: %s\n", err);
		status = pull_exit(rc);
		if (rc == PULL_E_CANCELLED)
			fprintf(stderr, "ttychat pull: interrupted; the next pull resumes it\n");
		goto out;
	}
	if (!quiet) {
		char size[32];
		fmt_bytes(res.bytes, size, sizeof size);
		fprintf(stderr, "ttychat pull: saved %s (%s%s%s), SHA-256 %s%s\n", dest, size,
			res.resumed_from && !res.restarted ? ", resumed" : "",
			res.restarted ? ", restarted: the server does not resume" : "", res.sha256,
			expect[0] ? " (verified)" : " (not verified: no checksum given)");
	}
out:
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (pull_sig && status == EXIT_OK)
		status = EXIT_INTERRUPT;
	return status;
}
