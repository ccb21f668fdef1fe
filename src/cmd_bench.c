/*
 * cmd_bench.c - `ttychat bench -m MODEL [-p 512] [-n 128] [-t THREADS]
 * [-r REPS] [-b BATCH] [--json]`: prefill and decode speed of the CPU
 * engine, printed like llama-bench so the numbers line up with llama.cpp's.
 *
 * The benchmark drives the engine internals (model.h, forward.h, pool.h)
 * rather than the public engine API, as llama-bench drives llama_decode():
 * what it times is the forward pass alone, on token ids drawn at random
 * (fixed seed) without tokenizer, chat template or event queue in the way.
 *   pp<P>: a fresh KV cache, P prompt tokens evaluated in batches of BATCH
 *          tokens, or by default sized as the engine sizes them (struct
 *          fwd_batcher: doubling while a batch is fast, settled during the
 *          warm-up run); t/s = P / time.
 *   tg<N>: a fresh KV cache, N tokens evaluated one at a time, as in a
 *          reply; t/s = N / time.
 * Every test runs REPS times after an untimed warm-up (the whole prompt,
 * four decode steps) and reports the mean and sample standard deviation of
 * t/s.  Two more figures come with
 * them: time to first token (prefill of the P-token prompt plus the choice
 * of the first token from its logits) and the decode memory traffic in GB/s,
 * counted as the weight bytes one decode step reads (every matrix once, the
 * token embedding as one row unless it doubles as the output matrix) times
 * the decode rate.  THREADS may list several counts ("1,2"): one pool and
 * one set of rows per count.  The footer gives the load time (mapping and
 * checking the file) and the preparation time (fwd_init: scratch, packing
 * the weights) with the extra memory of the packed copies.
 *
 * --device and --gpu-layers place the layers as the engine does
 * (fwd_init_device, forward_cuda.h): with CUDA asked for and no usable GPU
 * the benchmark says so on stderr and runs on the CPU.  The backend column
 * names where the layers ran ("cpu avx2", "cuda 32/32").
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
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "commands.h"
#include "engine.h"
#include "forward.h"
#include "forward_cuda.h"
#include "gguf.h"
#include "model.h"
#include "pool.h"
#include "quant.h"

#define BENCH_MAX_THREADS 8      /* entries in a -t list */

struct bench_opts {
	const char *model;
	int n_prompt, n_gen, reps, batch;
	int threads[BENCH_MAX_THREADS];
	int n_threads;
	bool json;
	int device;                  /* enum engine_device */
	int gpu_layers;              /* engine_load_opts.gpu_layers */
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
	int batch;                   /* pp tests: the prefill batch (the last, when sized as the engine does) */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

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
		"                     [--gpu-layers N] [--json]\n"
		"  -m, --model MODEL    model file or models.d name\n"
		"  -p, --n-prompt N     prompt tokens of the prefill test (default 512; 0 skips it)\n"
		"  -n, --n-gen N        tokens of the decode test (default 128; 0 skips it)\n"
		"  -t, --threads LIST   compute threads, e.g. 2 or 1,2 (default: all cores)\n"
		"  -r, --repetitions N  timed runs per test (default 5)\n"
		"  -b, --batch N        prefill batch (default: sized as the engine does, %d to %d\n"
		"                       tokens by how fast a batch runs)\n"
		"      --device DEV     auto (default), cpu or cuda: where the layers run\n"
		"      --gpu-layers N   layers on the GPU: -1 as many as fit (default), 0 none\n"
		"      --json           one JSON array instead of the table\n",
		FWD_BATCH_MIN, FWD_BATCH_MAX);
}

/* Weight bytes one decode step reads. */
static uint64_t decode_bytes(const struct model *m)
{
	uint64_t b = 0;
	for (uint32_t il = 0; il < m->hp.n_layer; il++) {
		const struct layer *l = &m->layers[il];
		const struct weight *lw[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->wqkv,
					     &l->w_gate, &l->w_up, &l->w_down};
		for (size_t i = 0; i < sizeof lw / sizeof lw[0]; i++)
			if (lw[i]->data)
				b += (uint64_t)lw[i]->rows * lw[i]->row_bytes;
	}
	b += (uint64_t)m->output.rows * m->output.row_bytes;
	if (m->output.data != m->tok_embd.data)
		b += m->tok_embd.row_bytes;
	return b;
}

static uint64_t tensor_bytes(const struct model *m)
{
	uint64_t b = 0;
	for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++)
		b += gguf_tensor_at(m->gguf, i)->size;
	return b;
}

/* Deterministic token ids (xorshift), never 0 so a BOS-less model sees
 * ordinary text-like ids. */
static void fill_tokens(int32_t *tok, int n, uint32_t n_vocab, uint64_t *state)
{
	for (int i = 0; i < n; i++) {
		uint64_t x = *state;
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		*state = x;
		tok[i] = n_vocab > 1 ? (int32_t)(1 + x % (n_vocab - 1)) : 0;
	}
}

static int argmax(const float *v, uint32_t n)
{
	uint32_t best = 0;
	for (uint32_t i = 1; i < n; i++)
		if (v[i] > v[best])
			best = i;
	return (int)best;
}

/* Prefill of n tokens in batches of BATCH, or (batch 0) as the engine
 * sizes them with B; returns 0 or an engine status. */
static int run_prefill(struct fwd *f, struct kv_cache *kv, const int32_t *tok, int n, int batch,
		       struct fwd_batcher *b)
{
	for (int p = 0; p < n;) {
		const int nb = batch > 0 ? (n - p < batch ? n - p : batch) : fwd_batch_next(b, n - p);
		const double t0 = now_s();
		int rc = fwd_eval(f, kv, tok + p, nb, false);
		if (rc)
			return rc;
		if (batch == 0)
			fwd_batch_done(b, nb, (now_s() - t0) * 1e3);
		p += nb;
	}
	return 0;
}

static int run_decode(struct fwd *f, struct kv_cache *kv, const int32_t *tok, int n)
{
	for (int i = 0; i < n; i++) {
		int rc = fwd_eval(f, kv, &tok[i], 1, false);
		if (rc)
			return rc;
	}
	return 0;
}

struct bench_ctx {
	struct model m;
	int32_t *tok;               /* n_prompt + n_gen ids */
	uint64_t dec_bytes, size_bytes;
	double load_ms;
	double prep_ms;             /* fwd_init of the first thread count */
	uint64_t packed_bytes;
	char backend[80];           /* "cpu" or "cuda: NAME (N/M layers)" */
	uint32_t gpu_layers;
	bool noticed;               /* the device notice was printed */
};

static int bench_threads(struct bench_ctx *c, const struct bench_opts *o, int nth,
			 struct bench_result *pp, struct bench_result *tg, char *err, size_t errlen)
{
	struct fwd f;
	struct kv_cache kv;
	uint32_t n_ctx = (uint32_t)(o->n_prompt > o->n_gen ? o->n_prompt : o->n_gen) + 1;
	pool *p = pool_create(nth);
	if (!p) {
		snprintf(err, errlen, "cannot start %d threads", nth);
		return -1;
	}
	double tp = now_s();
	struct fwd_device_opts d = {.device = o->device, .gpu_layers = o->gpu_layers, .kv_type = GGML_TYPE_F16};
	char notice[256];
	struct fwd_batcher batcher = {0};
	if (fwd_init_device(&f, &c->m, p, n_ctx, o->batch > 0 ? o->batch : FWD_BATCH_MAX, &d, c->backend, sizeof c->backend, notice, sizeof notice)) {
		snprintf(err, errlen, "out of memory for scratch buffers");
		pool_free(p);
		return -1;
	}
	c->gpu_layers = f.cpu_first;
	if (notice[0] && !c->noticed) {
		fprintf(stderr, "ttychat bench: %s\n", notice);
		c->noticed = true;
	}
	if (c->prep_ms == 0.0) {
		c->prep_ms = (now_s() - tp) * 1e3;
		c->packed_bytes = f.packed_bytes;
	}
	if (kv_init(&kv, &c->m.hp, GGML_TYPE_F16, n_ctx)) {
		snprintf(err, errlen, "cannot set up the KV cache");
		fwd_free(&f);
		pool_free(p);
		return -1;
	}
	int rc = 0;
	/* warm-up, as llama-bench does: the whole prompt once (faults the
	 * weights in, and the forward pass settles its thread count), a few
	 * decode steps */
	if (o->n_prompt > 0)
		rc = run_prefill(&f, &kv, c->tok, o->n_prompt, o->batch, &batcher);
	if (!rc && o->n_gen > 0) {
		kv_truncate(&kv, 0);
		rc = run_decode(&f, &kv, c->tok, o->n_gen < 4 ? o->n_gen : 4);
	}
	for (int r = 0; !rc && o->n_prompt > 0 && r < o->reps; r++) {
		kv_truncate(&kv, 0);
		double t0 = now_s();
		rc = run_prefill(&f, &kv, c->tok, o->n_prompt, o->batch, &batcher);
		(void)argmax(f.logits, c->m.hp.n_vocab);
		double t1 = now_s();
		pp->tps[r] = (double)o->n_prompt / (t1 - t0);
		pp->ttft_ms[r] = (t1 - t0) * 1e3;
	}
	if (o->n_prompt > 0)
		pp->batch = o->batch > 0 ? o->batch : batcher.cur;
	for (int r = 0; !rc && o->n_gen > 0 && r < o->reps; r++) {
		kv_truncate(&kv, 0);
		double t0 = now_s();
		rc = run_decode(&f, &kv, c->tok + o->n_prompt, o->n_gen);
		double t1 = now_s();
		tg->tps[r] = (double)o->n_gen / (t1 - t0);
	}
	if (rc)
		snprintf(err, errlen, "forward pass failed: %s", engine_status_str(rc));
	kv_free(&kv);
	fwd_free(&f);
	pool_free(p);
	return rc ? -1 : 0;
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
	snprintf(model, sizeof model, "%s %s", c->m.arch_name, c->m.quant);
	human_bytes(size, sizeof size, c->size_bytes);
	human_params(params, sizeof params, c->m.n_params);
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
		if (c->gpu_layers)
			snprintf(backend, sizeof backend, "cuda %u/%u", c->gpu_layers, c->m.hp.n_layer);
		else
			snprintf(backend, sizeof backend, "cpu %s", quant_level_name(quant_level()));
		/* "±" is two bytes and one column: one more byte of width */
		printf("| %-24s | %10s | %10s | %-10s | %7d | %8s | %21s | %-*s |\n", model, size, params,
		       backend, r->threads, r->name, ts, r->n_prompt > 0 ? 23 : 22, extra);
	}
	printf("\nload %.1f ms, prepare %.1f ms (%.2f MiB of packed weight copies); decode reads %.2f MiB "
	       "of weights per token; ttft = prefill of the prompt + first token\n",
	       c->load_ms, c->prep_ms, (double)c->packed_bytes / (double)(1 << 20),
	       (double)c->dec_bytes / (double)(1 << 20));
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
		cJSON_AddStringToObject(t, "model_arch", c->m.arch_name);
		cJSON_AddStringToObject(t, "model_type", c->m.quant);
		cJSON_AddNumberToObject(t, "model_size", (double)c->size_bytes);
		cJSON_AddNumberToObject(t, "model_n_params", (double)c->m.n_params);
		cJSON_AddStringToObject(t, "cpu_level", quant_level_name(quant_level()));
		cJSON_AddStringToObject(t, "backend", c->backend);
		cJSON_AddNumberToObject(t, "gpu_layers", c->gpu_layers);
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
			cJSON_AddNumberToObject(t, "decode_bytes_per_token", (double)c->dec_bytes);
			cJSON_AddNumberToObject(t, "decode_gbps", r->gbps);
		}
		cJSON_AddNumberToObject(t, "load_ms", c->load_ms);
		cJSON_AddNumberToObject(t, "prepare_ms", c->prep_ms);
		cJSON_AddNumberToObject(t, "packed_bytes", (double)c->packed_bytes);
	}
	char *txt = cJSON_Print(arr);
	cJSON_Delete(arr);
	if (!txt)
		return -1;
	printf("%s\n", txt);
	free(txt);
	return 0;
}

int cmd_bench(int argc, char **argv)
{
	struct bench_opts o = {.n_prompt = 512, .n_gen = 128, .reps = 5, .batch = 0,
			       .device = ENGINE_DEVICE_AUTO, .gpu_layers = ENGINE_GPU_LAYERS_AUTO};
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
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "m:p:n:t:r:b:h", longopts, NULL)) != -1) {
		int bad = 0;
		switch (ch) {
		case 'm': o.model = optarg; break;
		case 'p': bad = parse_int(optarg, 0, 1 << 20, &o.n_prompt); break;
		case 'n': bad = parse_int(optarg, 0, 1 << 20, &o.n_gen); break;
		case 't': bad = parse_threads(optarg, &o); break;
		case 'r': bad = parse_int(optarg, 1, 1000, &o.reps); break;
		case 'b': bad = parse_int(optarg, 1, 4096, &o.batch); break;
		case 'j': o.json = true; break;
		case 'D':
			if ((o.device = config_device(optarg)) < 0) {
				fprintf(stderr, "ttychat bench: --device: '%s' is not auto, cpu or cuda\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'G': {
			int n = 0;
			if (parse_int(optarg, -1, 1 << 20, &n)) {
				fprintf(stderr, "ttychat bench: --gpu-layers: '%s' is not an integer in [-1, %d]\n", optarg,
					1 << 20);
				return EXIT_USAGE;
			}
			o.gpu_layers = config_gpu_layers(n);
			break;
		}
		case 'h': bench_usage(stdout); return EXIT_OK;
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
	if (!o.model)
		o.model = config_default_model();
	if (o.n_threads == 0) {
		long nc = sysconf(_SC_NPROCESSORS_ONLN);
		o.threads[0] = nc > 0 && nc <= 1024 ? (int)nc : 1;
		o.n_threads = 1;
	}

	char err[512];
	struct model_entry me;
	if (config_resolve_model(o.model, &me, err, sizeof err)) {
		fprintf(stderr, "ttychat bench: %s\n", err);
		return EXIT_MODEL;
	}
	struct bench_ctx c;
	memset(&c, 0, sizeof c);
	double t0 = now_s();
	int rc = model_load(&c.m, me.path, NULL, err, sizeof err);
	config_entry_free(&me);
	if (rc) {
		fprintf(stderr, "ttychat bench: %s\n", err);
		return EXIT_MODEL;
	}
	gguf_prefetch(c.m.gguf);
	c.load_ms = (now_s() - t0) * 1e3;
	c.dec_bytes = decode_bytes(&c.m);
	c.size_bytes = tensor_bytes(&c.m);

	const int n_res = 2 * o.n_threads;
	struct bench_result *res = calloc((size_t)n_res, sizeof *res);
	double *samples = calloc((size_t)n_res * 2 * (size_t)o.reps, sizeof *samples);
	c.tok = malloc(((size_t)o.n_prompt + (size_t)o.n_gen + 1) * sizeof *c.tok);
	int status = EXIT_OK;
	if (!res || !samples || !c.tok) {
		fprintf(stderr, "ttychat bench: out of memory\n");
		status = EXIT_FAIL;
		goto out;
	}
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	fill_tokens(c.tok, o.n_prompt + o.n_gen, c.m.hp.n_vocab, &seed);

	int n_out = 0;
	for (int i = 0; i < o.n_threads; i++) {
		struct bench_result *pp = &res[2 * i], *tg = &res[2 * i + 1];
		pp->tps = samples + (size_t)(4 * i) * (size_t)o.reps;
		pp->ttft_ms = pp->tps + o.reps;
		tg->tps = pp->ttft_ms + o.reps;
		tg->ttft_ms = tg->tps + o.reps;
		if (bench_threads(&c, &o, o.threads[i], pp, tg, err, sizeof err)) {
			fprintf(stderr, "ttychat bench: %s\n", err);
			status = EXIT_GENERATE;
			goto out;
		}
		pp->threads = tg->threads = o.threads[i];
		tg->batch = 1;   /* decode: one token per step */
		pp->reps = tg->reps = o.reps;
		snprintf(pp->name, sizeof pp->name, "pp%d", o.n_prompt);
		pp->n_prompt = o.n_prompt;
		snprintf(tg->name, sizeof tg->name, "tg%d", o.n_gen);
		tg->n_gen = o.n_gen;
		mean_sd(pp->tps, o.reps, &pp->mean, &pp->sd);
		mean_sd(pp->ttft_ms, o.reps, &pp->ttft_mean, &pp->ttft_sd);
		mean_sd(tg->tps, o.reps, &tg->mean, &tg->sd);
		tg->gbps = tg->mean * (double)c.dec_bytes * 1e-9;
	}
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
	free(c.tok);
	free(samples);
	free(res);
	model_free(&c.m);
	return status;
}
