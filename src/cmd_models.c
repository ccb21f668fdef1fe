/*
 * cmd_models.c - `ttychat models` (the models.d catalogue and the loose
 * GGUF files, with size, quantisation and whether each file is present)
 * and `ttychat pull NAME|URL|ORG/REPO:QUANT` (a verified, resumable
 * download, pull.h; from a Hugging Face hub through hub.h, which picks the
 * file and writes the models.d entry that `-m ORG/REPO:QUANT` then finds).
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
#include "termsafe.h"
#include "hub.h"
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
	int nw = 16; /* the NAME column: as wide as the longest name (hub names are long) */
	for (size_t i = 0; i < l.n; i++)
		if (strlen(l.v[i].e.name) > (size_t)nw)
			nw = strlen(l.v[i].e.name) > 60 ? 60 : (int)strlen(l.v[i].e.name);
	printf("%-*s %-6s %-10s %-7s %-8s %s\n", nw, "NAME", "FROM", "SIZE", "QUANT", "PRESENT", "DESCRIPTION");
	for (size_t i = 0; i < l.n; i++) {
		const struct config_item *it = &l.v[i];
		if (!it->ok) {
			printf("%-*s %-6s %-10s %-7s %-8s invalid: see the error above\n", nw, it->e.name,
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
		printf("%-*s %-6s %-10s %-7s %-8s %s\n", nw, it->e.name, config_origin_name(it->origin), size,
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
	fprintf(out, "usage: ttychat pull NAME|URL|[hf:]ORG/REPO[:QUANT] [-o FILE] [--sha256 HEX] [--force] [-q]\n"
		     "  NAME            a models.d entry with \"url\" and \"sha256\"\n"
		     "  URL             an http:// or https:// address of a GGUF file\n"
		     "  ORG/REPO:QUANT  a Hugging Face repository's GGUF file of that quant (default\n"
		     "                  Q4_K_M, else the closest), every part, checked against the\n"
		     "                  hub's SHA-256, and a models.d entry: the chat loads it by that name\n"
		     "                  (also hf:ORG/REPO[:QUANT], hf.co/ORG/REPO[:QUANT]; HF_TOKEN,\n"
		     "                  HF_TOKEN_FILE and HF_ENDPOINT as in ttychat(1))\n"
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
	/* our own terminal control unfiltered, the label (a name from the
	 * command line) through the filter (termsafe.h) */
	fputs("\r", termsafe_raw_stderr());
	if (total)
		fprintf(stderr, "%s [%s] %3.0f%%  %s / %s  %s/s%s", b->label, barbuf,
			100.0 * (double)have / (double)total, h, t, r, eta);
	else
		fprintf(stderr, "%s %s  %s/s", b->label, h, r);
	fputs("\033[K", termsafe_raw_stderr());
	fflush(stderr);
	return 0;
}

static void end_bar(struct bar *b)
{
	if (b->tty) {
		fputs("\r\033[K", termsafe_raw_stderr());
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

/* ---- pull from a Hugging Face hub ------------------------------------------ */

static int hub_exit(int rc)
{
	switch (rc) {
	case HUB_OK: return EXIT_OK;
	case HUB_E_NOTFOUND:
	case HUB_E_NOGGUF:
	case HUB_E_NOQUANT: return EXIT_MODEL;
	case HUB_E_INVAL: return EXIT_USAGE;
	case HUB_E_TOKEN:
	case HUB_E_IO: return EXIT_FAIL;
	default: return EXIT_DOWNLOAD;
	}
}

/* One file of the pick into DEST: kept when present and verified, else
 * downloaded; a connection lost after some bytes is resumed at once (a
 * few times).  An exit status. */
static int hub_fetch_file(const char *url, const char *dest, const struct hub_file *f, const char *token,
			  const char *label, bool force, bool quiet)
{
	char err[1024];
	struct bar b = {.tty = !quiet && isatty(STDERR_FILENO), .label = "verifying", .t0 = mono_s()};
	struct stat st;
	if (!force && stat(dest, &st) == 0) {
		if (!f->sha256[0]) {
			if ((uint64_t)st.st_size == f->size) {
				if (!quiet)
					fprintf(stderr, "ttychat pull: %s is already present (the hub gives no SHA-256 to check)\n",
						dest);
				return EXIT_OK;
			}
			fprintf(stderr, "ttychat pull: %s is present but has %lld bytes, not %" PRIu64 "; remove it or use --force\n",
				dest, (long long)st.st_size, f->size);
			return EXIT_DOWNLOAD;
		}
		char got[65];
		uint64_t size;
		int rc = pull_sha256_file(dest, got, &size, draw_bar, &b, err, sizeof err);
		end_bar(&b);
		if (rc != PULL_OK) {
			fprintf(stderr, "ttychat pull: %s\n", err);
			return pull_exit(rc);
		}
		if (strcmp(got, f->sha256) != 0) {
			fprintf(stderr, "ttychat pull: %s is present but its SHA-256 is %s, not %s; remove it or use --force\n",
				dest, got, f->sha256);
			return EXIT_DOWNLOAD;
		}
		if (!quiet)
			fprintf(stderr, "ttychat pull: %s is already present and verified\n", dest);
		return EXIT_OK;
	}
	char part[4200];
	snprintf(part, sizeof part, "%s.part", dest);
	struct pull_result res;
	int rc;
	for (int attempt = 0;; attempt++) {
		uint64_t before = stat(part, &st) == 0 ? (uint64_t)st.st_size : 0;
		b.label = label;
		b.t0 = mono_s();
		b.have0 = before;
		struct pull_opts po = {.url = url, .dest = dest, .sha256 = f->sha256[0] ? f->sha256 : NULL,
				       .progress = draw_bar, .ctx = &b, .bearer = token};
		rc = pull_download(&po, &res, err, sizeof err);
		end_bar(&b);
		uint64_t after = stat(part, &st) == 0 ? (uint64_t)st.st_size : 0;
		if (rc != PULL_E_NET || attempt == 4 || after <= before || pull_sig)
			break;
		if (!quiet) {
			char h[32], t[32];
			fmt_bytes(after, h, sizeof h);
			fmt_bytes(f->size, t, sizeof t);
			fprintf(stderr, "ttychat pull: the connection broke after %s of %s; resuming\n", h, t);
		}
	}
	if (rc != PULL_OK) {
		fprintf(stderr, "ttychat pull: %s\n", err);
		if (rc == PULL_E_CANCELLED)
			fprintf(stderr, "ttychat pull: interrupted; the next pull resumes it\n");
		return pull_exit(rc);
	}
	if (res.bytes != f->size) {
		unlink(dest);
		fprintf(stderr, "ttychat pull: %s: %" PRIu64 " bytes came, the hub lists %" PRIu64 "; removed\n", url,
			res.bytes, f->size);
		return EXIT_DOWNLOAD;
	}
	if (!quiet) {
		char size[32];
		fmt_bytes(res.bytes, size, sizeof size);
		fprintf(stderr, "ttychat pull: saved %s (%s%s%s), SHA-256 %s%s\n", dest, size,
			res.resumed_from && !res.restarted ? ", resumed" : "",
			res.restarted ? ", restarted: the server does not resume" : "", res.sha256,
			f->sha256[0] ? " (verified)" : " (not verified: the hub gives no SHA-256 for it)");
	}
	return EXIT_OK;
}

/* `ttychat pull [hf:]ORG/REPO[:QUANT]` */
static int pull_hub(const struct hub_ref *hr, bool force, bool quiet)
{
	char name[128], show[256], endpoint[1024], from[4096], mdir[4096], err[1024];
	char quant[sizeof hr->quant];
	snprintf(quant, sizeof quant, "%s", hr->quant);
	for (char *c = quant; *c; c++)
		*c = (char)(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c);
	if (quant[0])
		snprintf(show, sizeof show, "%s/%s:%s", hr->org, hr->repo, quant);
	else
		snprintf(show, sizeof show, "hf:%s/%s", hr->org, hr->repo);
	if (hub_ref_name(hr, name, sizeof name) != 0) {
		fprintf(stderr, "ttychat pull: %s: too long for a models.d name (100 characters)\n", show);
		return EXIT_USAGE;
	}
	if (hub_endpoint(endpoint, sizeof endpoint, err, sizeof err) != HUB_OK) {
		fprintf(stderr, "ttychat pull: %s\n", err);
		return EXIT_USAGE;
	}
	if (config_models_dir(mdir, sizeof mdir) != 0) {
		fprintf(stderr, "ttychat pull: cannot find the models directory (HOME unset?)\n");
		return EXIT_FAIL;
	}
	char *token = NULL;
	int rc = hub_token_load(&token, from, sizeof from, err, sizeof err);
	if (rc != HUB_OK) {
		fprintf(stderr, "ttychat pull: %s\n", err);
		return hub_exit(rc);
	}
	struct sigaction sa = {.sa_handler = on_pull_signal}, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	int status = EXIT_OK;
	struct hub_listing l = {0};
	struct hub_pick pick;
	char first[4096] = "", first_url[4096] = "";
	rc = hub_list(endpoint, hr, token, &l, err, sizeof err);
	if (rc != HUB_OK) {
		fprintf(stderr, "ttychat pull: %s\n", err);
		status = hub_exit(rc);
		goto out;
	}
	rc = hub_pick_file(&l, quant, &pick, err, sizeof err);
	if (rc != HUB_OK) {
		fprintf(stderr, "ttychat pull: %s/%s: %s\n", hr->org, hr->repo, err);
		status = hub_exit(rc);
		goto out;
	}
	if (!quiet) {
		char size[32];
		fmt_bytes(pick.bytes, size, sizeof size);
		fprintf(stderr, "ttychat pull: %s: %s; %s\n", show, pick.why, size);
	}
	for (unsigned i = 0; i < pick.nparts && status == EXIT_OK && !pull_sig; i++) {
		const struct hub_file *f = &l.v[pick.part[i]];
		char dest[4096], url[4096], label[64];
		int w = snprintf(dest, sizeof dest, "%s/hf/%s/%s/%s", mdir, hr->org, hr->repo, f->path);
		if (w < 0 || (size_t)w >= sizeof dest || hub_file_url(endpoint, hr, f->path, url, sizeof url) != 0) {
			fprintf(stderr, "ttychat pull: %s: path too long\n", f->path);
			status = EXIT_FAIL;
			break;
		}
		if (i == 0) {
			snprintf(first, sizeof first, "%s", dest);
			snprintf(first_url, sizeof first_url, "%s", url);
		}
		if (pick.nparts > 1)
			snprintf(label, sizeof label, "part %u/%u", i + 1, pick.nparts);
		else
			snprintf(label, sizeof label, "downloading");
		status = hub_fetch_file(url, dest, f, token, label, force, quiet);
	}
	if (pull_sig && status == EXIT_OK)
		status = EXIT_INTERRUPT;
	if (status != EXIT_OK)
		goto out;

	/* the entry that -m ORG/REPO:QUANT finds */
	const struct hub_file *f0 = &l.v[pick.part[0]];
	char display[300], source[2600], entry[4096];
	snprintf(display, sizeof display, "%s/%s%s%s", hr->org, hr->repo, pick.quant[0] ? ":" : "", pick.quant);
	if (pick.nparts > 1)
		snprintf(source, sizeof source, "ttychat pull %s: %s/%s/%s and its other %u parts", show, endpoint, hr->org,
			 hr->repo, pick.nparts - 1);
	else
		snprintf(source, sizeof source, "ttychat pull %s: %s/%s/%s", show, endpoint, hr->org, hr->repo);
	/* a url lets `ttychat pull NAME` fetch it again: one public, verified file only */
	bool with_url = pick.nparts == 1 && f0->sha256[0] && !token;
	struct hub_entry he = {.name = name, .display_name = display, .file = first, .quant = pick.quant,
			       .sha256 = f0->sha256, .url = with_url ? first_url : NULL, .source = source,
			       .size = f0->size};
	rc = hub_write_entry(&he, entry, sizeof entry, err, sizeof err);
	if (rc != HUB_OK) {
		fprintf(stderr, "ttychat pull: %s\n", err);
		status = hub_exit(rc);
		goto out;
	}
	struct model_entry me;
	if (config_resolve_model(show, &me, err, sizeof err) != 0) {
		fprintf(stderr, "ttychat pull: wrote %s, but %s does not find it: %s\n", entry, show, err);
		status = EXIT_FAIL;
		goto out;
	}
	config_entry_free(&me);
	if (!quiet)
		fprintf(stderr, "ttychat pull: 'ttychat -m %s' loads it (%s)%s\n", show, entry,
			pick.nparts > 1 ? "; a split model: all its parts are there" : "");
out:
	hub_listing_free(&l);
	hub_token_free(token);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (pull_sig && status == EXIT_OK)
		status = EXIT_INTERRUPT;
	return status;
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
	struct hub_ref hr;
	if (!strstr(what, "://") && hub_ref_parse(what, true, &hr)) {
		if (output || sha) {
			fprintf(stderr, "ttychat pull: -o and --sha256 do not apply to a hub repository (%s)\n", what);
			return EXIT_USAGE;
		}
		return pull_hub(&hr, force, quiet);
	}
	if (!strstr(what, "://") && (strchr(what, '/') || strncasecmp(what, "hf:", 3) == 0)) {
		fprintf(stderr, "ttychat pull: %s: not a model name, URL or ORG/REPO[:QUANT] of a hub\n", what);
		return EXIT_USAGE;
	}
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
