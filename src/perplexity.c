/*
 * perplexity.c - per-row scores, the KL-divergence sums and the logits
 * file of `ttychat perplexity` (perplexity.h).
 *
 * The formulas are llama-perplexity's, precision included where it shows
 * in the figures: softmax sums in double over float exponentials, a packed
 * row's log-sum-exp in float, the base file's log-probabilities rebuilt in
 * float, rows whose base log-probability is -16 or less left out of the
 * KL sum, percentiles interpolated in float.  A file is read as hostile:
 * its header's counts are bounded before any product, the file's size must
 * be exactly what they give, and every token must be in the vocabulary.
 */
#include "perplexity.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

size_t ppl_row_words(uint32_t n_vocab)
{
	return 2 * (((size_t)n_vocab + 1) / 2) + 4;
}

uint32_t ppl_chunk_rows(uint32_t n_ctx)
{
	return n_ctx - 1 - n_ctx / 2;
}

static float row_max(const float *logits, uint32_t n, uint32_t *imax)
{
	float mx = logits[0];
	uint32_t im = 0;
	for (uint32_t i = 1; i < n; i++)
		if (logits[i] > mx) {
			mx = logits[i];
			im = i;
		}
	if (imax)
		*imax = im;
	return mx;
}

static double sum_exp(const float *logits, uint32_t n, float mx)
{
	double s = 0.0;
	for (uint32_t i = 0; i < n; i++)
		s += expf(logits[i] - mx);
	return s;
}

double ppl_row_nll(const float *logits, uint32_t n_vocab, int32_t tok)
{
	const float mx = row_max(logits, n_vocab, NULL);
	return -((double)(logits[tok] - mx) - log(sum_exp(logits, n_vocab, mx)));
}

double ppl_row_pack(const float *logits, uint32_t n_vocab, int32_t tok, uint16_t *out)
{
	const float mx = row_max(logits, n_vocab, NULL);
	float mn = logits[0];
	for (uint32_t i = 1; i < n_vocab; i++)
		mn = logits[i] < mn ? logits[i] : mn;
	if (mn < mx - 16)
		mn = mx - 16;
	const float lse = (float)log(sum_exp(logits, n_vocab, mx));
	const float min_log_prob = mn - mx - lse;
	const float scale = (mx - mn) / 65535.f;
	memcpy(out, &scale, sizeof scale);
	memcpy(out + 2, &min_log_prob, sizeof min_log_prob);
	uint16_t *w = out + 4;
	memset(w, 0, (ppl_row_words(n_vocab) - 4) * sizeof *w);
	if (scale != 0.f) {
		const float inv = 1 / scale;
		for (uint32_t i = 0; i < n_vocab; i++) {
			if (!(logits[i] > mn))
				continue;
			long q = lrintf(inv * (logits[i] - mn));  /* to nearest, ties to even */
			w[i] = (uint16_t)(q < 0 ? 0 : q > 65535 ? 65535 : q);
		}
	}
	return (double)(mx + lse - logits[tok]);
}

void ppl_row_kld(const float *logits, uint32_t n_vocab, const uint16_t *base, int32_t tok, struct ppl_kld *k,
		 float *kld, float *p_diff)
{
	uint32_t imax;
	float mx = row_max(logits, n_vocab, &imax);
	const float lse = (float)log(sum_exp(logits, n_vocab, mx));
	float scale, min_log_prob;
	memcpy(&scale, base, sizeof scale);
	memcpy(&min_log_prob, base + 2, sizeof min_log_prob);
	const uint16_t *w = base + 4;

	const float nll = mx + lse - logits[tok];
	const float nll_base = -(scale * w[tok] + min_log_prob);
	k->sum_nll += nll;
	k->sum_nll2 += (double)(nll * nll);
	k->sum_nll_base += nll_base;
	k->sum_nll_base2 += (double)(nll_base * nll_base);
	k->sum_nll_nll_base += (double)(nll * nll_base);

	mx += lse;   /* log p(i) = logits[i] - mx */
	double sum = 0.0;
	uint32_t imax_base = 0;
	float lp_base_max = 0.f;
	for (uint32_t i = 0; i < n_vocab; i++) {
		const float lp_base = scale * w[i] + min_log_prob;
		if (i == 0 || lp_base > lp_base_max) {
			lp_base_max = lp_base;
			imax_base = i;
		}
		if (lp_base > -16.f)
			sum += expf(lp_base) * (lp_base - logits[i] + mx);
	}
	k->sum_kld += sum;
	k->sum_kld2 += sum * sum;
	k->count++;
	k->n_same_top += imax == imax_base;

	const float pd = expf(-nll) - expf(-nll_base);
	const double pd2 = (double)(pd * pd);
	k->sum_p_diff += pd;
	k->sum_p_diff2 += pd2;
	k->sum_p_diff4 += pd2 * pd2;
	if (fabsf(pd) > k->max_p_diff)
		k->max_p_diff = fabsf(pd);
	*kld = (float)sum;
	*p_diff = pd;
}

void ppl_mean_unc(double sum, double sum2, size_t count, double *mean, double *unc)
{
	*mean = *unc = 0.0;
	if (count < 1)
		return;
	const double f = sum / (double)count;
	const double df = sum2 / (double)count - f * f;
	*mean = f;
	*unc = df > 0 && count > 10 ? sqrt(df / (double)(count - 1)) : 0.0;
}

double ppl_cov(double suma, double sumb, double sumab, size_t count)
{
	if (count < 10)
		return 0.0;
	const double n = (double)count;
	return (sumab / n - (suma / n) * (sumb / n)) / (n - 1);
}

float ppl_percentile(const float *sorted, size_t n, float fraction)
{
	if (fraction <= 0)
		return sorted[0];
	if (fraction >= 1)
		return sorted[n - 1];
	float p = fraction * (float)(n - 1);
	const size_t ip = (size_t)p;
	p -= (float)ip;
	return (1 - p) * sorted[ip] + p * sorted[ip + 1 < n ? ip + 1 : n - 1];
}

float ppl_median(const float *sorted, size_t n)
{
	return n % 2 == 0 ? 0.5f * (sorted[n / 2] + sorted[n / 2 - 1]) : sorted[n / 2];
}

int ppl_file_write_header(FILE *f, uint32_t n_ctx, uint32_t n_vocab, uint32_t n_chunk, const int32_t *tokens)
{
	const int32_t h[3] = {(int32_t)n_ctx, (int32_t)n_vocab, (int32_t)n_chunk};
	const size_t nt = (size_t)n_chunk * n_ctx;
	if (fwrite(PPL_MAGIC, 1, 8, f) != 8 || fwrite(h, sizeof h[0], 3, f) != 3 ||
	    fwrite(tokens, sizeof *tokens, nt, f) != nt)
		return -1;
	return 0;
}

void ppl_base_close(struct ppl_base *b)
{
	if (b->f)
		fclose(b->f);
	free(b->tokens);
	b->f = NULL;
	b->tokens = NULL;
}

/* The header's counts, bounded, and the file's size they give. */
static int check_header(struct ppl_base *b, const int32_t h[3], uint64_t size, char *err, size_t errlen)
{
	if (h[0] < 3 || (uint32_t)h[0] > PPL_MAX_CTX || h[1] < 1 || (uint32_t)h[1] > PPL_MAX_VOCAB || h[2] < 1) {
		snprintf(err, errlen, "%s: not a logits file: its header says n_ctx %d, n_vocab %d, %d chunks", b->path,
			 h[0], h[1], h[2]);
		return -1;
	}
	b->n_ctx = (uint32_t)h[0];
	b->n_vocab = (uint32_t)h[1];
	b->n_chunk = (uint32_t)h[2];
	/* per chunk at most 2^20 * 4 + 2^19 * (2^24 + 6) * 2 < 2^45 bytes, times < 2^31 chunks: < 2^76, so
	 * check the chunk count against the size before the product */
	const uint64_t per_chunk = (uint64_t)b->n_ctx * 4 + (uint64_t)ppl_chunk_rows(b->n_ctx) * ppl_row_words(b->n_vocab) * 2;
	if (b->n_chunk > (size - 20) / per_chunk) {
		snprintf(err, errlen, "%s: truncated: %llu bytes, but its header says %u chunks of %u tokens (%llu bytes each)",
			 b->path, (unsigned long long)size, b->n_chunk, b->n_ctx, (unsigned long long)per_chunk);
		return -1;
	}
	const uint64_t want = 20 + per_chunk * b->n_chunk;
	if (size != want) {
		snprintf(err, errlen, "%s: %llu bytes, but its header says %llu (%u chunks of %u tokens, %u in the vocabulary)",
			 b->path, (unsigned long long)size, (unsigned long long)want, b->n_chunk, b->n_ctx, b->n_vocab);
		return -1;
	}
	return 0;
}

int ppl_base_open(struct ppl_base *b, const char *path, char *err, size_t errlen)
{
	memset(b, 0, sizeof *b);
	b->path = path;
	b->f = fopen(path, "rb");
	struct stat st;
	if (!b->f || fstat(fileno(b->f), &st) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		ppl_base_close(b);
		return -1;
	}
	char magic[8];
	int32_t h[3];
	if (!S_ISREG(st.st_mode) || st.st_size < 20 || fread(magic, 1, 8, b->f) != 8 || memcmp(magic, PPL_MAGIC, 8) != 0) {
		snprintf(err, errlen, "%s: not a logits file (no \"%s\" header)", path, PPL_MAGIC);
		ppl_base_close(b);
		return -1;
	}
	if (fread(h, sizeof h[0], 3, b->f) != 3 || check_header(b, h, (uint64_t)st.st_size, err, errlen) != 0) {
		ppl_base_close(b);
		return -1;
	}
	const size_t nt = (size_t)b->n_chunk * b->n_ctx;
	b->tokens = malloc(nt * sizeof *b->tokens);
	if (!b->tokens || fread(b->tokens, sizeof *b->tokens, nt, b->f) != nt) {
		snprintf(err, errlen, "%s: %s", path, b->tokens ? "cannot read its tokens" : "out of memory for its tokens");
		ppl_base_close(b);
		return -1;
	}
	for (size_t i = 0; i < nt; i++)
		if (b->tokens[i] < 0 || (uint32_t)b->tokens[i] >= b->n_vocab) {
			snprintf(err, errlen, "%s: token %zu is %d, outside its vocabulary of %u", path, i, b->tokens[i],
				 b->n_vocab);
			ppl_base_close(b);
			return -1;
		}
	return 0;
}

int ppl_base_read_chunk(struct ppl_base *b, uint16_t *rows, char *err, size_t errlen)
{
	const size_t n = (size_t)ppl_chunk_rows(b->n_ctx) * ppl_row_words(b->n_vocab);
	if (b->next_chunk >= b->n_chunk || fread(rows, sizeof *rows, n, b->f) != n) {
		snprintf(err, errlen, "%s: cannot read the log-probabilities of chunk %u", b->path, b->next_chunk + 1);
		return -1;
	}
	b->next_chunk++;
	return 0;
}
