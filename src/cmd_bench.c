/*
 * cmd_bench.c - `ttychat bench -m MODEL [-p 512] [-n 128] [-t THREADS]
 * [-r REPS] [-b BATCH] [--json]`: prefill and decode speed of the engine,
 * printed like llama-bench so the numbers line up with llama.cpp's.
 *
 * The benchmark is a front end like the chat: the model and its settings
 * are decided by the session layer (flags > models.d entry > settings.json
 * > defaults: device, GPU layers, threads, KV cache type), the model is
 * loaded with engine_load() and measured with engine_bench(), so what it
 * times is what a reply runs: the engine's forward pass, prefill batcher,
 * thread pool and device placement, on token ids drawn at random (fixed
 * seed) with no tokenizer, chat template or sampler chain in the way.
 *   pp<P>: a fresh KV cache, P prompt tokens evaluated in batches sized as
 *          the chat sizes them (settled during the warm-up run), or of
 *          BATCH tokens; t/s = P / time.
 *   tg<N>: a fresh KV cache, N tokens evaluated one at a time, as in a
 *          reply; t/s = N / time.
 * Every test runs REPS times after an untimed warm-up (the whole prompt,
 * four decode steps) and reports the mean and sample standard deviation of
 * t/s.  Two more figures come with them: time to first token (prefill of
 * the P-token prompt plus the choice of the first token from its logits)
 * and the decode memory traffic in GB/s, counted as the weight bytes one
 * decode step reads times the decode rate.  THREADS may list several
 * counts ("1,2"): one engine (and one load) per count, one set of rows per
 * count.  The footer gives the first load's costs: load (mapping and
 * checking the file) and prepare (scratch, packing the weights, GPU upload)
 * with the extra memory of the packed copies.
 *
 * --device and --gpu-layers place the layers as for the chat: with CUDA
 * asked for and no usable GPU the benchmark says so on stderr (the
 * engine's notice) and runs on the CPU.  The backend column names where
 * the layers ran ("cpu avx2", "cuda 32/32").
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "commands.h"
#include "bench_spec.h"
#include "chatopts.h"
#include "engine.h"
#include "session.h"

#define BENCH_MAX_THREADS 8      /* entries in a -t list */

struct bench_opts {
	const char *model;
	int n_prompt, n_gen, reps, batch;
	int threads[BENCH_MAX_THREADS];
	int n_threads;
	bool json;
	int device;                  /* -1 not given, else an enum engine_device */
	int gpu_layers;              /* as --gpu-layers: -1 auto, 0 none, N; -2 not given */
	/* speculative decoding benchmark (bench_spec.c) */
	int spec;                    /* -1: pp/tg instead */
	const char *draft;
	int draft_max;
	const char *prompt_file;
	bool n_gen_set;
	struct session_flags kv;     /* the KV cache options (kv_type, cache_k/v, kv_rotation) */
};

/* One test's samples and summary. */
struct bench_result {
	char name[32];
	int threads;
	int n_prompt, n_gen;
	double *tps;                 /* [reps] */
	double *ttft_ms;             /* [reps] (pp tests) */
	int reps;
	double mean, sd, ttft_mean, ttft_sd, gbps;
	int batch;                   /* pp tests: the prefill batch (the last, when sized as the chat sizes it) */
};

static void mean_sd(const double *v, int n, double *mean, double *sd)
{
	double s = 0.0, q = 0.0;
	for (int i = 0; i < n; i++)
		s += v[i];
	*mean = n > 0 ? s / n : 0.0;
	for (int i = 0; i < n; i++)
		q += (v[i] - *mean) * (v[i] - *mean);
	*sd = n > 1 ? sqrt(q / (n - 1)) : 0.0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

/* "1,2,4" -> threads[] */
static int parse_threads(const char *s, struct bench_opts *o)
{
	char buf[128];
	if (strlen(s) >= sizeof buf)
		return -1;
	memcpy(buf, s, strlen(s) + 1);
	o->n_threads = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (o->n_threads == BENCH_MAX_THREADS || parse_int(tok, 1, 1024, &o->threads[o->n_threads]))
			return -1;
		o->n_threads++;
	}
	return o->n_threads > 0 ? 0 : -1;
}

static void bench_usage(FILE *out)
{
	fprintf(out,
		"usage: ttychat bench -m MODEL [-p N] [-n N] [-t THREADS] [-r REPS] [-b BATCH] [--device DEV]\n"
		"                     [--gpu-layers N] [--json] [--kv-type TYPE] [--cache-type-k TYPE]\n"
		"                     [--cache-type-v TYPE] [--kv-rotation on|off]\n"
		"       ttychat bench -m MODEL --spec MODE [--draft MODEL] [--draft-max N] [-n N] [-r REPS]\n"
		"                     [--prompt-file FILE] [--json]\n"
		"  -m, --model MODEL    model file or models.d name\n"
		"  -p, --n-prompt N     prompt tokens of the prefill test (default 512; 0 skips it)\n"
		"  -n, --n-gen N        tokens of the decode test (default 128; 0 skips it)\n"
		"  -t, --threads LIST   compute threads, e.g. 2 or 1,2 (default: the model's, else all cores)\n"
		"  -r, --repetitions N  timed runs per test (default 5)\n"
		"  -b, --batch N        prefill batch, at most %2$d (default: sized as the chat does, %1$d to %2$d\n"
		"                       tokens by how fast a batch runs)\n"
		"      --device DEV     auto (default), cpu or cuda: where the layers run\n"
		"      --gpu-layers N   layers on the GPU: -1 as many as fit (default), 0 none\n"
		"      --json           one JSON array instead of the table\n"
		CHATOPTS_KV_HELP
		"speculative decoding (instead of pp/tg): greedy replies to a code-writing and a\n"
		"code-editing task (and FILE's prompt), REPS with speculation off and REPS with MODE\n"
		"(auto, ngram or draft), alternating; decode speed, acceptance, tokens per pass and\n"
		"whether the texts are the same.  -n caps each reply (default 256 here).\n"
		"      --spec MODE      the mode measured against plain decoding\n"
		"      --draft MODEL    the draft model (implies --spec draft unless given)\n"
		"      --draft-max N    tokens guessed per pass at most, 1-16 (default 8)\n"
		"      --prompt-file F  one more task: F's text as the user's message\n",
		ENGINE_BATCH_MIN, ENGINE_BATCH_MAX);
}

/* What the engine said about the model and the runs. */
struct bench_ctx {
	struct engine_model_info info;  /* of the last load */
	uint64_t size_bytes;            /* tensor data (the model-file probe) */
	struct engine_bench_run first;  /* the first run: the first load's costs */
	struct engine_bench_run last;   /* the latest run: GPU layers, CPU level */
	bool have_run;
	bool noticed;                   /* the device notice was printed */
};

/* The timed runs of a DONE event into PP and TG. */
static void take_runs(struct bench_ctx *c, const struct engine_event *ev, struct bench_result *pp,
		      struct bench_result *tg)
{
	const struct engine_bench_run *runs = ev->blob;
	const size_t n = ev->blob ? ev->blob_len / sizeof *runs : 0;
	for (size_t i = 0; i < n; i++) {
		const struct engine_bench_run *r = &runs[i];
		if (!c->have_run)
			c->first = *r;
		c->last = *r;
		c->have_run = true;
		const double s = r->ms > 0 ? r->ms / 1e3 : 1e-9;
		if (r->test == ENGINE_BENCH_PP && r->rep < (uint32_t)pp->reps) {
			pp->tps[r->rep] = (double)r->n_tokens / s;
			pp->ttft_ms[r->rep] = r->ms;
			pp->batch = (int)r->n_batch;
		} else if (r->test == ENGINE_BENCH_TG && r->rep < (uint32_t)tg->reps) {
			tg->tps[r->rep] = (double)r->n_tokens / s;
		}
	}
}

/* Waits for the end of request REQ: 0 on LOADED or DONE (its runs go to
 * PP and TG), -1 on ERROR or a cancel (message in err).  Notices go to
 * stderr, the load's once. */
static int wait_for(engine *e, int req, struct bench_ctx *c, struct bench_result *pp, struct bench_result *tg,
		    char *err, size_t errlen)
{
	for (;;) {
		struct engine_event ev;
		if (!engine_event_wait(e, &ev, -1))
			continue;
		int done = 0;
		if (ev.request != req) {
			/* not ours */
		} else if (ev.type == ENGINE_EV_ERROR) {
			snprintf(err, errlen, "%s", ev.message);
			done = -1;
		} else if (ev.type == ENGINE_EV_LOADED) {
			c->info = ev.info;
			if (ev.info.notice[0] && !c->noticed) {
				fprintf(stderr, "ttychat bench: %s\n", ev.info.notice);
				c->noticed = true;
			}
			done = 1;
		} else if (ev.type == ENGINE_EV_NOTICE) {
			fprintf(stderr, "ttychat bench: %s\n", ev.message);
		} else if (ev.type == ENGINE_EV_DONE) {
			take_runs(c, &ev, pp, tg);
			if (ev.stop == ENGINE_STOP_CANCELLED) {
				snprintf(err, errlen, "cancelled");
				done = -1;
			} else {
				done = 1;
			}
		}
		engine_event_clear(&ev);
		if (done)
			return done > 0 ? 0 : -1;
	}
}

/* One thread count: an engine, a load, the runs.  0, or EXIT_MODEL /
 * EXIT_GENERATE / EXIT_FAIL with a message in err. */
static int bench_threads(struct bench_ctx *c, const struct bench_opts *o, const char *path,
			 const struct engine_load_opts *lo, int nth, struct bench_result *pp, struct bench_result *tg,
			 char *err, size_t errlen)
{
	struct engine_params ep = {.n_threads = nth};
	engine *e = engine_create(&ep, err, errlen);
	if (!e)
		return EXIT_FAIL;
	int status = EXIT_MODEL;
	int req = engine_load(e, path, lo);
	if (req <= 0) {
		snprintf(err, errlen, "%s: %s", path, engine_last_error(e));
		goto out;
	}
	if (wait_for(e, req, c, pp, tg, err, errlen) != 0)
		goto out;
	struct engine_bench_opts bo = {.n_prompt = (uint32_t)o->n_prompt, .n_gen = (uint32_t)o->n_gen,
				       .reps = (uint32_t)o->reps, .batch = (uint32_t)o->batch};
	status = EXIT_GENERATE;
	req = engine_bench(e, &bo);
	if (req <= 0) {
		snprintf(err, errlen, "%s", engine_last_error(e));
		goto out;
	}
	if (wait_for(e, req, c, pp, tg, err, errlen) != 0)
		goto out;
	status = 0;
out:
	engine_free(e);
	return status;
}

static void human_bytes(char *buf, size_t n, uint64_t b)
{
	if (b >= (1ull << 30))
		snprintf(buf, n, "%.2f GiB", (double)b / (double)(1ull << 30));
	else
		snprintf(buf, n, "%.2f MiB", (double)b / (double)(1ull << 20));
}

static void human_params(char *buf, size_t n, uint64_t p)
{
	if (p >= 1000000000ull)
		snprintf(buf, n, "%.2f B", (double)p / 1e9);
	else
		snprintf(buf, n, "%.2f M", (double)p / 1e6);
}

static void print_table(const struct bench_ctx *c, const struct bench_result *res, int n)
{
	char model[96], size[32], params[32];
	snprintf(model, sizeof model, "%s %s", c->info.arch, c->info.quant);
	human_bytes(size, sizeof size, c->size_bytes);
	human_params(params, sizeof params, c->info.n_params);
	printf("| %-24s | %10s | %10s | %-10s | %7s | %8s | %20s | %-22s |\n", "model", "size", "params",
	       "backend", "threads", "test", "t/s", "");
	printf("| %.24s | %.10s | %.10s | %.10s | %.7s | %.8s | %.20s | %.22s |\n",
	       "------------------------", "----------", "----------", "----------", "-------",
	       "--------", "--------------------", "----------------------");
	for (int i = 0; i < n; i++) {
		const struct bench_result *r = &res[i];
		char ts[48], extra[64];
		snprintf(ts, sizeof ts, "%.2f ± %.2f", r->mean, r->sd);
		if (r->n_prompt > 0)
			snprintf(extra, sizeof extra, "ttft %.1f ± %.1f ms", r->ttft_mean, r->ttft_sd);
		else
			snprintf(extra, sizeof extra, "%.1f GB/s", r->gbps);
		char backend[32];
		if (c->last.gpu_layers)
			snprintf(backend, sizeof backend, "cuda %u/%u", c->last.gpu_layers, c->info.n_layer);
		else
			snprintf(backend, sizeof backend, "cpu %s", c->last.cpu_level);
		/* "±" is two bytes and one column: one more byte of width */
		printf("| %-24s | %10s | %10s | %-10s | %7d | %8s | %21s | %-*s |\n", model, size, params,
		       backend, r->threads, r->name, ts, r->n_prompt > 0 ? 23 : 22, extra);
	}
	printf("\nload %.1f ms, prepare %.1f ms (%.2f MiB of packed weight copies); decode reads %.2f MiB "
	       "of weights per token; ttft = prefill of the prompt + first token\n",
	       c->first.load_ms, c->first.prepare_ms, (double)c->first.packed_bytes / (double)(1 << 20),
	       (double)c->last.decode_bytes / (double)(1 << 20));
}

static int print_json(const struct bench_ctx *c, const struct bench_opts *o,
		      const struct bench_result *res, int n)
{
	cJSON *arr = cJSON_CreateArray();
	if (!arr)
		return -1;
	for (int i = 0; i < n; i++) {
		const struct bench_result *r = &res[i];
		cJSON *t = cJSON_CreateObject();
		if (!t) {
			cJSON_Delete(arr);
			return -1;
		}
		cJSON_AddItemToArray(arr, t);
		cJSON_AddStringToObject(t, "model_filename", o->model);
		cJSON_AddStringToObject(t, "model_arch", c->info.arch);
		cJSON_AddStringToObject(t, "model_type", c->info.quant);
		cJSON_AddNumberToObject(t, "model_size", (double)c->size_bytes);
		cJSON_AddNumberToObject(t, "model_n_params", (double)c->info.n_params);
		cJSON_AddStringToObject(t, "cpu_level", c->last.cpu_level);
		cJSON_AddStringToObject(t, "backend", c->info.backend);
		cJSON_AddNumberToObject(t, "gpu_layers", c->last.gpu_layers);
		cJSON_AddNumberToObject(t, "n_threads", r->threads);
		cJSON_AddNumberToObject(t, "n_batch", r->batch);
		cJSON_AddStringToObject(t, "test", r->name);
		cJSON_AddNumberToObject(t, "n_prompt", r->n_prompt);
		cJSON_AddNumberToObject(t, "n_gen", r->n_gen);
		cJSON_AddNumberToObject(t, "avg_ts", r->mean);
		cJSON_AddNumberToObject(t, "stddev_ts", r->sd);
		cJSON *s = cJSON_AddArrayToObject(t, "samples_ts");
		for (int k = 0; s && k < r->reps; k++)
			cJSON_AddItemToArray(s, cJSON_CreateNumber(r->tps[k]));
		if (r->n_prompt > 0) {
			cJSON_AddNumberToObject(t, "ttft_ms", r->ttft_mean);
			cJSON_AddNumberToObject(t, "ttft_sd_ms", r->ttft_sd);
		} else {
			cJSON_AddNumberToObject(t, "decode_bytes_per_token", (double)c->last.decode_bytes);
			cJSON_AddNumberToObject(t, "decode_gbps", r->gbps);
		}
		cJSON_AddNumberToObject(t, "load_ms", c->first.load_ms);
		cJSON_AddNumberToObject(t, "prepare_ms", c->first.prepare_ms);
		cJSON_AddNumberToObject(t, "packed_bytes", (double)c->first.packed_bytes);
	}
	char *txt = cJSON_Print(arr);
	cJSON_Delete(arr);
	if (!txt)
		return -1;
	printf("%s\n", txt);
	free(txt);
	return 0;
}

/* --spec: load once (with the draft model), then bench_spec_run(). */
static int bench_spec(const struct bench_opts *o, struct session_decision *d, char *err, size_t errlen)
{
	static const char *const names[] = {"auto", "off", "ngram", "draft"};
	char *prompt = NULL;
	if (o->prompt_file) {
		FILE *f = fopen(o->prompt_file, "rb");
		if (!f) {
			snprintf(err, errlen, "--prompt-file: cannot read %s: %s", o->prompt_file, strerror(errno));
			return EXIT_FAIL;
		}
		size_t cap = 1 << 16, len = 0;
		prompt = malloc(cap + 1);
		size_t got;
		while (prompt && (got = fread(prompt + len, 1, cap - len, f)) > 0) {
			len += got;
			if (len == cap && cap < ((size_t)1 << 24)) {
				char *np = realloc(prompt, 2 * cap + 1);
				if (!np) {
					free(prompt);
					prompt = NULL;
					break;
				}
				prompt = np;
				cap *= 2;
			} else if (len == cap) {
				break;
			}
		}
		fclose(f);
		if (!prompt) {
			snprintf(err, errlen, "out of memory");
			return EXIT_FAIL;
		}
		prompt[len] = '\0';
	}
	struct engine_params ep = {.n_threads = o->n_threads > 0 ? o->threads[0] : d->cfg.n_threads};
	engine *e = engine_create(&ep, err, errlen);
	if (!e) {
		free(prompt);
		return EXIT_FAIL;
	}
	struct engine_load_opts lo = d->cfg.load;
	if (lo.n_ctx == 0)
		lo.n_ctx = 4096;
	int status = EXIT_MODEL;
	int req = engine_load(e, d->me.path, &lo);
	struct engine_event ev;
	for (bool done = req <= 0; !done;) {
		if (!engine_event_wait(e, &ev, -1))
			continue;
		if (ev.request == req && (ev.type == ENGINE_EV_LOADED || ev.type == ENGINE_EV_ERROR)) {
			done = true;
			if (ev.type == ENGINE_EV_LOADED)
				status = 0;
			else
				snprintf(err, errlen, "%s", ev.message);
		}
		engine_event_clear(&ev);
	}
	if (req <= 0)
		snprintf(err, errlen, "%s: %s", d->me.path, engine_last_error(e));
	if (status == 0) {
		struct bench_spec_opts so = {.spec = (enum engine_spec)o->spec, .mode_name = names[o->spec],
					     .n_gen = o->n_gen_set ? o->n_gen : 256, .reps = o->reps, .prompt = prompt,
					     .json = o->json, .draft_max = o->draft_max};
		status = bench_spec_run(e, &so, err, errlen);
	}
	engine_free(e);
	free(prompt);
	return status;
}

/* The model and how to load it, decided as for the chat
 * (src/session.h).  0, or an exit status with a message in ERR. */
static int decide(const struct bench_opts *o, struct session_decision *d, char *err, size_t errlen)
{
	struct session_flags f;
	session_flags_init(&f);
	f.model = o->model;
	f.device = o->device;
	f.gpu_layers = o->gpu_layers;
	f.draft = o->draft;
	f.draft_max = o->draft_max;
	f.kv_type = o->kv.kv_type;
	f.cache_k = o->kv.cache_k;
	f.cache_v = o->kv.cache_v;
	f.kv_rotation = o->kv.kv_rotation;
	return session_decide_local(&f, d, "the benchmark", err, errlen);
}

int cmd_bench(int argc, char **argv)
{
	struct bench_opts o = {.n_prompt = 512, .n_gen = 128, .reps = 5, .batch = 0, .device = -1, .gpu_layers = -2,
			       .spec = -1};
	static const struct option longopts[] = {
		{"model", required_argument, NULL, 'm'},
		{"n-prompt", required_argument, NULL, 'p'},
		{"n-gen", required_argument, NULL, 'n'},
		{"threads", required_argument, NULL, 't'},
		{"repetitions", required_argument, NULL, 'r'},
		{"batch", required_argument, NULL, 'b'},
		{"json", no_argument, NULL, 'j'},
		{"device", required_argument, NULL, 'D'},
		{"gpu-layers", required_argument, NULL, 'G'},
		{"spec", required_argument, NULL, 'S'},
		{"draft", required_argument, NULL, 'd'},
		{"draft-max", required_argument, NULL, 'X'},
		{"prompt-file", required_argument, NULL, 'P'},
		{"help", no_argument, NULL, 'h'},
		{"kv-type", required_argument, NULL, 1001}, {"cache-type-k", required_argument, NULL, 1002},
		{"cache-type-v", required_argument, NULL, 1003}, {"kv-rotation", required_argument, NULL, 1004},
		{NULL, 0, NULL, 0},
	};
	session_flags_init(&o.kv);
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "m:p:n:t:r:b:h", longopts, NULL)) != -1) {
		int bad = 0;
		switch (ch) {
		case 'm': o.model = optarg; break;
		case 'p': bad = parse_int(optarg, 0, 1 << 20, &o.n_prompt); break;
		case 'n': bad = parse_int(optarg, 0, 1 << 20, &o.n_gen), o.n_gen_set = true; break;
		case 'S':
			if ((o.spec = engine_spec_parse(optarg)) < 0 || o.spec == ENGINE_SPEC_OFF) {
				fprintf(stderr, "ttychat bench: --spec: '%s' is not auto, ngram or draft\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'd': o.draft = optarg; break;
		case 'X': bad = parse_int(optarg, 1, 16, &o.draft_max); break;
		case 'P': o.prompt_file = optarg; break;
		case 't': bad = parse_threads(optarg, &o); break;
		case 'r': bad = parse_int(optarg, 1, 1000, &o.reps); break;
		case 'b': bad = parse_int(optarg, 1, ENGINE_BATCH_MAX, &o.batch); break;
		case 'j': o.json = true; break;
		case 'D':
			if ((o.device = config_device(optarg)) < 0) {
				fprintf(stderr, "ttychat bench: --device: '%s' is not auto, cpu or cuda\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'G':
			if (parse_int(optarg, -1, 1 << 20, &o.gpu_layers)) {
				fprintf(stderr, "ttychat bench: --gpu-layers: '%s' is not an integer in [-1, %d]\n", optarg,
					1 << 20);
				return EXIT_USAGE;
			}
			break;
		case 'h': bench_usage(stdout); return EXIT_OK;
		case 1001: case 1002: case 1003: case 1004:
			if (chatopts_kv_flag(&o.kv, "ttychat bench",
					     ch == 1001 ? "kv-type" : ch == 1002 ? "cache-type-k"
					     : ch == 1003 ? "cache-type-v" : "kv-rotation", optarg))
				return EXIT_USAGE;
			break;
		default: bench_usage(stderr); return EXIT_USAGE;
		}
		if (bad) {
			fprintf(stderr, "ttychat bench: bad value for -%c: '%s'\n", ch, optarg);
			return EXIT_USAGE;
		}
	}
	if (optind < argc || (o.n_prompt == 0 && o.n_gen == 0)) {
		bench_usage(stderr);
		return EXIT_USAGE;
	}

	char err[4400];
	struct session_decision d;
	int status = decide(&o, &d, err, sizeof err);
	if (status) {
		fprintf(stderr, "ttychat bench: %s\n", err);
		session_decision_free(&d);
		return status;
	}
	o.model = d.spec; /* the JSON's model_filename: the spec as given or picked */
	if (o.draft && o.spec < 0)
		o.spec = ENGINE_SPEC_DRAFT;
	if (o.spec >= 0) {
		status = bench_spec(&o, &d, err, sizeof err);
		if (status)
			fprintf(stderr, "ttychat bench: %s\n", err);
		session_decision_free(&d);
		return status;
	}
	if (o.n_threads == 0) {
		long nc = sysconf(_SC_NPROCESSORS_ONLN);
		o.threads[0] = d.cfg.n_threads > 0 ? d.cfg.n_threads : nc > 0 && nc <= 1024 ? (int)nc : 1;
		o.n_threads = 1;
	}
	/* the context the tests need, whatever a chat would hold */
	struct engine_load_opts lo = d.cfg.load;
	lo.n_ctx = (uint32_t)(o.n_prompt > o.n_gen ? o.n_prompt : o.n_gen) + 1;

	struct bench_ctx c;
	memset(&c, 0, sizeof c);
	const int n_res = 2 * o.n_threads;
	struct bench_result *res = calloc((size_t)n_res, sizeof *res);
	double *samples = calloc((size_t)n_res * 2 * (size_t)o.reps, sizeof *samples);
	if (!res || !samples) {
		fprintf(stderr, "ttychat bench: out of memory\n");
		status = EXIT_FAIL;
		goto out;
	}

	int n_out = 0;
	for (int i = 0; i < o.n_threads; i++) {
		struct bench_result *pp = &res[2 * i], *tg = &res[2 * i + 1];
		pp->tps = samples + (size_t)(4 * i) * (size_t)o.reps;
		pp->ttft_ms = pp->tps + o.reps;
		tg->tps = pp->ttft_ms + o.reps;
		tg->ttft_ms = tg->tps + o.reps;
		pp->reps = tg->reps = o.reps;
		status = bench_threads(&c, &o, d.me.path, &lo, o.threads[i], pp, tg, err, sizeof err);
		if (status) {
			fprintf(stderr, "ttychat bench: %s\n", err);
			goto out;
		}
		pp->threads = tg->threads = o.threads[i];
		tg->batch = 1;   /* decode: one token per step */
		snprintf(pp->name, sizeof pp->name, "pp%d", o.n_prompt);
		pp->n_prompt = o.n_prompt;
		snprintf(tg->name, sizeof tg->name, "tg%d", o.n_gen);
		tg->n_gen = o.n_gen;
		mean_sd(pp->tps, o.reps, &pp->mean, &pp->sd);
		mean_sd(pp->ttft_ms, o.reps, &pp->ttft_mean, &pp->ttft_sd);
		mean_sd(tg->tps, o.reps, &tg->mean, &tg->sd);
		tg->gbps = tg->mean * (double)c.last.decode_bytes * 1e-9;
	}
	engine_file *f = engine_file_open(d.me.path, err, sizeof err);
	if (!f) {
		fprintf(stderr, "ttychat bench: %s\n", err);
		status = EXIT_MODEL;
		goto out;
	}
	c.size_bytes = engine_file_info(f)->tensor_bytes;
	engine_file_close(f);
	/* compact: drop the skipped tests */
	for (int i = 0; i < n_res; i++)
		if ((res[i].n_prompt > 0 && o.n_prompt > 0) || (res[i].n_gen > 0 && o.n_gen > 0))
			res[n_out++] = res[i];
	if (o.json) {
		if (print_json(&c, &o, res, n_out)) {
			fprintf(stderr, "ttychat bench: out of memory\n");
			status = EXIT_FAIL;
		}
	} else {
		print_table(&c, res, n_out);
	}
out:
	free(samples);
	free(res);
	session_decision_free(&d);
	return status;
}
