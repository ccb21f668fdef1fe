/*
 * cmd_perplexity.c - `ttychat perplexity -m MODEL -f TEXT [-c 512] [-b N]
 * [--chunks N] [-t THREADS] [--kl-divergence-base FILE [--kl-divergence]]`:
 * the perplexity of a model on a text, and the KL divergence of a model's
 * predictions from a base model's, computed as llama.cpp's
 * llama-perplexity computes them so that the figures line up.
 *
 *   The text (one trailing newline dropped, as llama.cpp reads -f) is
 *   tokenised whole with the model's add_special rule, and cut into chunks
 *   of n_ctx tokens (what does not fill a chunk is left out; at least two
 *   chunks are needed).  Each chunk runs from an empty KV cache, its first
 *   token replaced by BOS when the model adds one, and only its second
 *   half is scored: positions n_ctx/2 .. n_ctx-2, each against the token
 *   after it.  The running perplexity is printed after each chunk,
 *   "[1]12.3456,[2]...", then "Final estimate: PPL = X +/- Y" with
 *   llama.cpp's error estimate (the standard error of the mean negative
 *   log-likelihood, times PPL).
 *   --kl-divergence-base FILE: the same, and the scored rows' log-softmax
 *   saved in llama-perplexity's logits file format (src/perplexity.h).
 *   --kl-divergence: the tokens come from FILE instead of a text, each
 *   chunk is evaluated and compared with FILE's rows; per chunk a line of
 *   running figures, then llama-perplexity's statistics (PPL of both and
 *   their ratio, KL divergence with its percentiles, Δp, same top p).
 *
 * The model is picked and loaded as bench does (src/session.h), and run
 * with an engine_evaluator (engine.h): no engine thread, the caller's
 * thread waits for each chunk.  Results go to stdout, progress and errors
 * to stderr.  SIGINT, SIGTERM and SIGHUP cancel the evaluation within one
 * layer; the figures printed so far stand, a logits file being written is
 * removed (it would be short of its header's chunks), and the exit status
 * is 128 + the signal.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "commands.h"
#include "engine.h"
#include "chatopts.h"
#include "perplexity.h"
#include "session.h"

#define TEXT_MAX (1ull << 30)    /* bytes of text read */

struct ppl_opts {
	const char *model, *text, *base;
	uint32_t n_ctx;              /* 0: not given (512, or the base file's) */
	int batch, chunks, threads;  /* 0: not given */
	bool kld;
	struct session_flags kv;     /* the KV cache options (kv_type, cache_k/v, kv_rotation) */
};

/* What a chunk loop needs. */
struct ppl_run {
	engine_evaluator *ev;
	const struct engine_evaluator_info *in;
	uint32_t n_ctx, n_chunk, batch;
	const int32_t *tokens;       /* [n_chunk * n_ctx] */
	int32_t *seq;                /* [n_ctx]: a chunk as evaluated */
	float *logits;               /* [n_ctx - n_ctx/2][n_vocab] */
	uint16_t *rows;              /* [rows][nv]: packed rows, written or read */
	char err[4400];
};

/* The signal state: the evaluator the handler cancels, and the signal. */
static engine_evaluator *volatile sig_ev;
static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
	if (sig_ev)
		engine_evaluator_cancel(sig_ev);
}

static void ppl_usage(FILE *out)
{
	fprintf(out,
		"usage: ttychat perplexity -m MODEL -f TEXT [-c N] [-b N] [--chunks N] [-t THREADS]\n"
		"                          [--kl-divergence-base FILE [--kl-divergence]]\n"
		"                          [--kv-type TYPE] [--cache-type-k TYPE] [--cache-type-v TYPE]\n"
		"                          [--kv-rotation on|off]\n"
		"  -m, --model MODEL    model file or models.d name\n"
		"  -f, --file TEXT      the text to score (at least two chunks of N tokens)\n"
		"  -c, --ctx-size N     tokens per chunk (default 512; with --kl-divergence the base file's)\n"
		"  -b, --batch N        tokens per forward pass, at most %d (default %d)\n"
		"      --chunks N       score at most N chunks (default: all the text holds)\n"
		"  -t, --threads N      compute threads (default: the model's, else all cores)\n"
		"      --kl-divergence-base FILE\n"
		"                       save the scored log-probabilities to FILE (llama-perplexity's format)\n"
		"      --kl-divergence  instead compare with FILE's: its tokens, no text needed\n"
		CHATOPTS_KV_HELP,
		ENGINE_BATCH_MAX, ENGINE_BATCH_MAX);
}

static int parse_num(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* The options into O.  -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct ppl_opts *o)
{
	static const struct option longopts[] = {
		{"model", required_argument, NULL, 'm'},    {"file", required_argument, NULL, 'f'},
		{"ctx-size", required_argument, NULL, 'c'}, {"batch", required_argument, NULL, 'b'},
		{"chunks", required_argument, NULL, 'C'},   {"threads", required_argument, NULL, 't'},
		{"kl-divergence-base", required_argument, NULL, 'B'},
		{"kl-divergence", no_argument, NULL, 'K'},  {"help", no_argument, NULL, 'h'},
		{"kv-type", required_argument, NULL, 1001}, {"cache-type-k", required_argument, NULL, 1002},
		{"cache-type-v", required_argument, NULL, 1003}, {"kv-rotation", required_argument, NULL, 1004},
		{NULL, 0, NULL, 0},
	};
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "m:f:c:b:t:h", longopts, NULL)) != -1) {
		long v = 0;
		int bad = 0;
		switch (ch) {
		case 'm': o->model = optarg; break;
		case 'f': o->text = optarg; break;
		case 'B': o->base = optarg; break;
		case 'K': o->kld = true; break;
		case 'c': bad = parse_num(optarg, 4, PPL_MAX_CTX, &v); o->n_ctx = (uint32_t)v; break;
		case 'b': bad = parse_num(optarg, 1, ENGINE_BATCH_MAX, &v); o->batch = (int)v; break;
		case 'C': bad = parse_num(optarg, 1, INT32_MAX, &v); o->chunks = (int)v; break;
		case 't': bad = parse_num(optarg, 1, 1024, &v); o->threads = (int)v; break;
		case 'h': ppl_usage(stdout); return EXIT_OK;
		case 1001: case 1002: case 1003: case 1004:
			if (chatopts_kv_flag(&o->kv, "ttychat perplexity",
					     ch == 1001 ? "kv-type" : ch == 1002 ? "cache-type-k"
					     : ch == 1003 ? "cache-type-v" : "kv-rotation", optarg))
				return EXIT_USAGE;
			break;
		default: ppl_usage(stderr); return EXIT_USAGE;
		}
		if (bad) {
			const char *name = ch == 'C' ? "--chunks" : ch == 'c' ? "-c" : ch == 'b' ? "-b" : "-t";
			const long hi = ch == 'C' ? INT32_MAX : ch == 'c' ? PPL_MAX_CTX : ch == 'b' ? ENGINE_BATCH_MAX : 1024;
			fprintf(stderr, "ttychat perplexity: %s: '%s' is not a number from %d to %ld\n", name, optarg,
				ch == 'c' ? 4 : 1, hi);
			return EXIT_USAGE;
		}
	}
	const char *why = optind < argc ? "unexpected argument"
			  : o->kld && !o->base ? "--kl-divergence needs --kl-divergence-base FILE"
			  : !o->kld && !o->text ? "-f TEXT is needed"
			  : NULL;
	if (why) {
		fprintf(stderr, "ttychat perplexity: %s%s%s\n", why, optind < argc ? ": " : "", optind < argc ? argv[optind] : "");
		return EXIT_USAGE;
	}
	return -1;
}

/* TEXT's bytes, one trailing newline dropped.  NULL with a message. */
static char *read_text(const char *path, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > TEXT_MAX) {
		snprintf(err, errlen, "%s: %s", path,
			 !f || errno ? strerror(errno) : !S_ISREG(st.st_mode) ? "not a regular file" : "larger than 1 GiB");
		if (f)
			fclose(f);
		return NULL;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
	if (!buf || ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, buf ? strerror(errno) : "out of memory");
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* TEXT tokenised with MODEL's add_special rule.  0, or an exit status
 * with a message. */
static int tokenize_text(const char *model, const char *path, int32_t **ids, size_t *n, char *err, size_t errlen)
{
	size_t len, cap = 0;
	char *text = read_text(path, &len, err, errlen);
	if (!text)
		return EXIT_FAIL;
	engine_vocab *v = engine_vocab_open(model, err, errlen);
	if (!v) {
		free(text);
		return EXIT_MODEL;
	}
	*ids = NULL;
	*n = 0;
	char msg[512];
	int rc = engine_vocab_encode(v, text, len, true, false, ids, n, &cap, msg, sizeof msg);
	engine_vocab_free(v);
	free(text);
	if (rc) {
		snprintf(err, errlen, "%s: %s", path, msg);
		return EXIT_FAIL;
	}
	return 0;
}

/* The model and how to load it, as bench decides.  0, or an exit status
 * with a message. */
static int decide(const struct ppl_opts *o, struct session_decision *d, char *err, size_t errlen)
{
	struct session_flags f;
	session_flags_init(&f);
	f.model = o->model;
	f.n_threads = o->threads;
	f.kv_type = o->kv.kv_type;
	f.cache_k = o->kv.cache_k;
	f.cache_v = o->kv.cache_v;
	f.kv_rotation = o->kv.kv_rotation;
	return session_decide_local(&f, d, "perplexity", err, errlen);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Evaluates chunk C of R into r->logits.  0, or an exit status with a
 * message in r->err. */
static int eval_chunk(struct ppl_run *r, uint32_t c)
{
	const double t0 = now_s();
	memcpy(r->seq, r->tokens + (size_t)c * r->n_ctx, r->n_ctx * sizeof *r->seq);
	if (r->in->add_bos)
		r->seq[0] = r->in->bos;
	char msg[512];
	int rc = engine_evaluator_run(r->ev, r->seq, r->n_ctx, r->n_ctx / 2, r->batch, r->logits, msg, sizeof msg);
	if (rc == ENGINE_E_CANCELLED || got_signal)
		return 128 + (got_signal ? got_signal : SIGINT);
	if (rc) {
		snprintf(r->err, sizeof r->err, "chunk %u: %s", c + 1, msg);
		return EXIT_GENERATE;
	}
	if (c == 0) {
		const double t = now_s() - t0;
		fprintf(stderr, "perplexity: %.2f seconds per pass - ETA %.2f minutes\n", t, t * r->n_chunk / 60.0);
	}
	return 0;
}

/* The perplexity of R's chunks, printed as they go; with OUT (a logits
 * file, its header written) every scored row packed into it.  0, or an
 * exit status with a message in r->err. */
static int run_ppl(struct ppl_run *r, FILE *out, const char *out_path)
{
	const uint32_t first = r->n_ctx / 2, rows = ppl_chunk_rows(r->n_ctx), nvoc = r->in->n_vocab;
	const size_t nv = ppl_row_words(nvoc);
	double nll = 0.0, nll2 = 0.0;
	size_t count = 0;
	for (uint32_t c = 0; c < r->n_chunk; c++) {
		int st = eval_chunk(r, c);
		if (st) {
			if (count)
				printf("\n");
			return st;
		}
		const int32_t *next = r->tokens + (size_t)c * r->n_ctx + first + 1;
		for (uint32_t i = 0; i < rows; i++) {
			const float *lg = r->logits + (size_t)i * nvoc;
			const double v = out ? ppl_row_pack(lg, nvoc, next[i], r->rows + (size_t)i * nv)
					     : ppl_row_nll(lg, nvoc, next[i]);
			nll += v;
			nll2 += v * v;
		}
		count += rows;
		if (out && fwrite(r->rows, sizeof *r->rows, rows * nv, out) != rows * nv) {
			snprintf(r->err, sizeof r->err, "%s: cannot write: %s", out_path, strerror(errno));
			return EXIT_FAIL;
		}
		printf("[%u]%.4f,", c + 1, exp(nll / (double)count));
		fflush(stdout);
	}
	printf("\n");
	nll /= (double)count;
	nll2 = nll2 / (double)count - nll * nll;
	const double ppl = exp(nll);
	if (nll2 > 0)
		printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, sqrt(nll2 / (double)(count - 1)) * ppl);
	else
		printf("Final estimate: PPL = %.4f (no spread in log(prob): no error estimate)\n", ppl);
	return 0;
}

/* One line of running figures, after each chunk of the KL comparison. */
static void kld_chunk_line(uint32_t c, const struct ppl_kld *k)
{
	double lp, lpu, lb, lbu, kl, klu, mse, mseu;
	ppl_mean_unc(k->sum_nll, k->sum_nll2, k->count, &lp, &lpu);
	ppl_mean_unc(k->sum_nll_base, k->sum_nll_base2, k->count, &lb, &lbu);
	ppl_mean_unc(k->sum_kld, k->sum_kld2, k->count, &kl, &klu);
	ppl_mean_unc(k->sum_p_diff2, k->sum_p_diff4, k->count, &mse, &mseu);
	const double cov = ppl_cov(k->sum_nll, k->sum_nll_base, k->sum_nll_nll_base, k->count);
	const double rms = sqrt(mse), top = (double)k->n_same_top / (double)k->count;
	const double top_unc = k->count > 1 ? sqrt(top * (1 - top) / (double)(k->count - 1)) : 0.0;
	printf("%4u    %9.4f ± %9.4f    %10.5f ± %10.5f    %10.5f ± %10.5f    %6.3f ± %6.3f %%    %6.3f ± %6.3f %%\n",
	       c + 1, exp(lp), exp(lp) * lpu, lp - lb, sqrt(lpu * lpu + lbu * lbu - 2.0 * cov), kl, klu,
	       100.0 * rms, rms > 0 ? 100.0 * 0.5 / rms * mseu : 0.0, 100.0 * top, 100.0 * top_unc);
	fflush(stdout);
}

static void print_ppl_stats(const struct ppl_kld *k)
{
	double lp, lpu, lb, lbu;
	ppl_mean_unc(k->sum_nll, k->sum_nll2, k->count, &lp, &lpu);
	ppl_mean_unc(k->sum_nll_base, k->sum_nll_base2, k->count, &lb, &lbu);
	const double ppl = exp(lp), ppl_unc = ppl * lpu, base = exp(lb), base_unc = base * lbu;
	const double cov = ppl_cov(k->sum_nll, k->sum_nll_base, k->sum_nll_nll_base, k->count);
	const double ratio = lp - lb, ratio_unc = sqrt(lpu * lpu + lbu * lbu - 2.0 * cov);
	printf("====== Perplexity statistics ======\n");
	printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", ppl, ppl_unc);
	printf("Mean PPL(base)                : %10.6f ± %10.6f\n", base, base_unc);
	printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * cov / (lpu * lbu));
	printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", ratio, ratio_unc);
	printf("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", exp(ratio), exp(ratio) * ratio_unc);
	printf("Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n", ppl - base,
	       sqrt(ppl_unc * ppl_unc + base_unc * base_unc - 2.0 * ppl * base * cov));
	printf("\n");
}

static const struct {
	const char *label;
	float fraction;
} kld_points[] = {{"99.9%   ", 0.999f}, {"99.0%   ", 0.990f}, {"95.0%   ", 0.950f}, {"90.0%   ", 0.900f},
		  {"Median  ", -1.0f},  {"10.0%   ", 0.100f}, {" 5.0%   ", 0.050f}, {" 1.0%   ", 0.010f},
		  {" 0.1%   ", 0.001f}},
  pdiff_points[] = {{"99.9%   ", 0.999f}, {"99.0%   ", 0.990f}, {"95.0%   ", 0.950f}, {"90.0%   ", 0.900f},
		    {"75.0%   ", 0.750f}, {"Median  ", -1.0f},  {"25.0%   ", 0.250f}, {"10.0%   ", 0.100f},
		    {" 5.0%   ", 0.050f}, {" 1.0%   ", 0.010f}, {" 0.1%   ", 0.001f}};

static int cmp_float(const void *a, const void *b)
{
	const float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* llama-perplexity's closing statistics over the N rows compared. */
static void print_kld_stats(const struct ppl_kld *k, float *kld, float *pd, size_t n)
{
	qsort(kld, n, sizeof *kld, cmp_float);
	qsort(pd, n, sizeof *pd, cmp_float);
	print_ppl_stats(k);
	double m, u;
	printf("====== KL divergence statistics ======\n");
	ppl_mean_unc(k->sum_kld, k->sum_kld2, k->count, &m, &u);
	printf("Mean    KLD: %10.6f ± %10.6f\n", m, u);
	printf("Maximum KLD: %10.6f\n", (double)kld[n - 1]);
	for (size_t i = 0; i < sizeof kld_points / sizeof kld_points[0]; i++) {
		const float f = kld_points[i].fraction;
		printf("%sKLD: %10.6f\n", kld_points[i].label, (double)(f < 0 ? ppl_median(kld, n) : ppl_percentile(kld, n, f)));
	}
	printf("Minimum KLD: %10.6f\n\n", (double)kld[0]);

	printf("====== Token probability statistics ======\n");
	ppl_mean_unc(k->sum_p_diff, k->sum_p_diff2, k->count, &m, &u);
	printf("Mean    Δp: %6.3f ± %5.3f %%\n", 100.0 * m, 100.0 * u);
	printf("Maximum Δp: %6.3f%%\n", 100.0 * pd[n - 1]);
	for (size_t i = 0; i < sizeof pdiff_points / sizeof pdiff_points[0]; i++) {
		const float f = pdiff_points[i].fraction;
		printf("%sΔp: %6.3f%%\n", pdiff_points[i].label,
		       100.0 * (f < 0 ? ppl_median(pd, n) : ppl_percentile(pd, n, f)));
	}
	printf("Minimum Δp: %6.3f%%\n", 100.0 * pd[0]);
	ppl_mean_unc(k->sum_p_diff2, k->sum_p_diff4, k->count, &m, &u);
	const double rms = sqrt(m), top = (double)k->n_same_top / (double)k->count;
	printf("RMS Δp    : %6.3f ± %5.3f %%\n", 100.0 * rms, rms > 0 ? 100.0 * 0.5 / rms * u : 0.0);
	printf("Same top p: %6.3f ± %5.3f %%\n", 100.0 * top,
	       k->count > 1 ? 100.0 * sqrt(top * (1.0 - top) / (double)(k->count - 1)) : 0.0);
}

/* The KL comparison of R's chunks with base file B.  0, or an exit status
 * with a message in r->err. */
static int run_kld(struct ppl_run *r, struct ppl_base *b)
{
	const uint32_t first = r->n_ctx / 2, rows = ppl_chunk_rows(r->n_ctx), nvoc = r->in->n_vocab;
	const size_t nv = ppl_row_words(nvoc), n = (size_t)rows * r->n_chunk;
	float *kld = malloc(n * sizeof *kld), *pd = malloc(n * sizeof *pd);
	struct ppl_kld k;
	memset(&k, 0, sizeof k);
	int st = 0;
	if (!kld || !pd) {
		snprintf(r->err, sizeof r->err, "out of memory for %zu rows of statistics", n);
		st = EXIT_FAIL;
		goto out;
	}
	printf("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
	       "Δp RMS            Same top p\n");
	for (uint32_t c = 0; c < r->n_chunk && !st; c++) {
		if ((st = eval_chunk(r, c)) != 0)
			break;
		if (ppl_base_read_chunk(b, r->rows, r->err, sizeof r->err) != 0) {
			st = EXIT_FAIL;
			break;
		}
		const int32_t *next = r->tokens + (size_t)c * r->n_ctx + first + 1;
		for (uint32_t i = 0; i < rows; i++) {
			const size_t at = (size_t)c * rows + i;
			ppl_row_kld(r->logits + (size_t)i * nvoc, nvoc, r->rows + (size_t)i * nv, next[i], &k, &kld[at],
				    &pd[at]);
		}
		kld_chunk_line(c, &k);
	}
	if (!st) {
		printf("\n");
		print_kld_stats(&k, kld, pd, n);
	}
out:
	free(kld);
	free(pd);
	return st;
}

/* The tokens to score into R (r->tokens, r->n_ctx, r->n_chunk): the base
 * file's with --kl-divergence (B opened), else the text's (*IDS, the
 * caller's to free).  0, or an exit status with a message in r->err. */
static int take_tokens(const struct ppl_opts *o, const char *model, struct ppl_run *r, struct ppl_base *b,
		       int32_t **ids)
{
	size_t n = 0;
	if (o->kld) {
		if (ppl_base_open(b, o->base, r->err, sizeof r->err) != 0)
			return EXIT_FAIL;
		if (o->n_ctx && o->n_ctx != b->n_ctx) {
			snprintf(r->err, sizeof r->err, "%s was computed with a context of %u, not %u: run with -c %u",
				 o->base, b->n_ctx, o->n_ctx, b->n_ctx);
			return EXIT_USAGE;
		}
		r->n_ctx = b->n_ctx;
		r->tokens = b->tokens;
		n = (size_t)b->n_chunk * b->n_ctx;
	} else {
		int st = tokenize_text(model, o->text, ids, &n, r->err, sizeof r->err);
		if (st)
			return st;
		r->n_ctx = o->n_ctx ? o->n_ctx : 512;
		if (n < 2 * (size_t)r->n_ctx) {
			snprintf(r->err, sizeof r->err,
				 "%s: %zu tokens, but a context of %u needs at least %zu (two chunks): give a longer text "
				 "or a smaller -c", o->text, n, r->n_ctx, 2 * (size_t)r->n_ctx);
			return EXIT_FAIL;
		}
		r->tokens = *ids;
	}
	r->n_chunk = (uint32_t)(n / r->n_ctx);
	if (o->chunks > 0 && (uint32_t)o->chunks < r->n_chunk)
		r->n_chunk = (uint32_t)o->chunks;
	return 0;
}

/* The evaluator and R's buffers.  0, or an exit status with a message. */
static int open_run(const struct ppl_opts *o, const struct session_decision *d, struct ppl_run *r,
		    const struct ppl_base *b)
{
	struct engine_load_opts lo = d->cfg.load;
	lo.n_ctx = r->n_ctx;
	r->ev = engine_evaluator_open(d->me.path, &lo, d->cfg.n_threads, r->err, sizeof r->err);
	if (!r->ev)
		return EXIT_MODEL;
	r->in = engine_evaluator_info(r->ev);
	if (r->in->notice[0])
		fprintf(stderr, "ttychat perplexity: %s\n", r->in->notice);
	if (o->kld && b->n_vocab != r->in->n_vocab) {
		snprintf(r->err, sizeof r->err, "%s was computed with a vocabulary of %u tokens, %s has %u", o->base,
			 b->n_vocab, d->me.path, r->in->n_vocab);
		return EXIT_USAGE;
	}
	if (r->n_ctx > r->in->n_ctx_train && r->in->n_ctx_train > 0)
		fprintf(stderr, "ttychat perplexity: the model was trained on only %u context tokens (%u asked)\n",
			r->in->n_ctx_train, r->n_ctx);
	r->batch = o->batch > 0 ? (uint32_t)o->batch : ENGINE_BATCH_MAX;
	const size_t rows = r->n_ctx - r->n_ctx / 2;
	r->seq = malloc(r->n_ctx * sizeof *r->seq);
	r->logits = malloc(rows * r->in->n_vocab * sizeof *r->logits);
	r->rows = o->base ? malloc(rows * ppl_row_words(r->in->n_vocab) * sizeof *r->rows) : NULL;
	if (!r->seq || !r->logits || (o->base && !r->rows)) {
		snprintf(r->err, sizeof r->err, "out of memory for %zu rows of %u logits", rows, r->in->n_vocab);
		return EXIT_FAIL;
	}
	fprintf(stderr, "perplexity: %u chunks of %u tokens, batch %u, %s\n", r->n_chunk, r->n_ctx, r->batch,
		r->in->backend);
	return 0;
}

/* Perplexity, saving the rows to o->base when given.  A file left
 * incomplete is removed. */
static int write_and_score(const struct ppl_opts *o, struct ppl_run *r)
{
	if (!o->base)
		return run_ppl(r, NULL, NULL);
	FILE *out = NULL;
	int fd = open(o->base, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || !(out = fdopen(fd, "wb"))) {
		snprintf(r->err, sizeof r->err, "%s: %s", o->base, strerror(errno));
		if (fd >= 0)
			close(fd);
		return EXIT_FAIL;
	}
	fprintf(stderr, "perplexity: saving the scored log-probabilities to %s\n", o->base);
	int st = ppl_file_write_header(out, r->n_ctx, r->in->n_vocab, r->n_chunk, r->tokens) ? EXIT_FAIL : 0;
	if (st)
		snprintf(r->err, sizeof r->err, "%s: cannot write: %s", o->base, strerror(errno));
	else
		st = run_ppl(r, out, o->base);
	if (fclose(out) != 0 && !st) {
		snprintf(r->err, sizeof r->err, "%s: cannot write: %s", o->base, strerror(errno));
		st = EXIT_FAIL;
	}
	if (st) {
		unlink(o->base);
		fprintf(stderr, "ttychat perplexity: %s left incomplete: removed\n", o->base);
	}
	return st;
}

int cmd_perplexity(int argc, char **argv)
{
	struct ppl_opts o = {0};
	session_flags_init(&o.kv);
	int st = parse_args(argc, argv, &o);
	if (st >= 0)
		return st;
	struct session_decision d;
	struct ppl_run *r = calloc(1, sizeof *r);
	struct ppl_base b = {0};
	int32_t *ids = NULL;
	if (!r) {
		fprintf(stderr, "ttychat perplexity: out of memory\n");
		return EXIT_FAIL;
	}
	st = decide(&o, &d, r->err, sizeof r->err);
	if (!st)
		st = take_tokens(&o, d.me.path, r, &b, &ids);
	if (!st)
		st = open_run(&o, &d, r, &b);
	if (!st) {
		struct sigaction sa = {.sa_handler = on_signal}, old[3];
		static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
		sigemptyset(&sa.sa_mask);
		sig_ev = r->ev;
		for (int i = 0; i < 3; i++)
			sigaction(sigs[i], &sa, &old[i]);
		st = o.kld ? run_kld(r, &b) : write_and_score(&o, r);
		for (int i = 0; i < 3; i++)
			sigaction(sigs[i], &old[i], NULL);
		sig_ev = NULL;
	}
	if (st > 128)
		fprintf(stderr, "ttychat perplexity: interrupted\n");
	else if (st)
		fprintf(stderr, "ttychat perplexity: %s\n", r->err);
	engine_evaluator_close(r->ev);
	free(r->seq);
	free(r->logits);
	free(r->rows);
	free(r);
	free(ids);
	ppl_base_close(&b);
	session_decision_free(&d);
	return st;
}
