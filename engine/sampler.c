/*
 * sampler.c - see sampler.h.  Candidates are partially selected (top-k by a
 * k-sized min-heap) before the full sort, so a 262k vocabulary
 * costs a linear scan plus a sort of k entries when top-k is on.
 */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void engine_sampling_default(struct engine_sampling *s)
{
	memset(s, 0, sizeof *s);
	s->temperature = 0.8f;
	s->top_k = 40;
	s->top_p = 0.95f;
	s->min_p = 0.05f;
	s->repeat_penalty = 1.0f;
	s->penalty_last_n = 64;
	s->seed = 0x5eed;
}

/* splitmix64: small, fast, good enough for sampling */
static uint64_t rng_next(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *x)
{
	return (double)(rng_next(x) >> 11) * (1.0 / 9007199254740992.0);
}

int sampler_init(struct sampler *s, const struct engine_sampling *p, uint32_t n_vocab)
{
	memset(s, 0, sizeof *s);
	s->p = *p;
	if (s->p.penalty_last_n <= 0)
		s->p.penalty_last_n = 64;
	s->rng = p->seed;
	s->n_vocab = n_vocab;
	s->cand = eng_malloc((size_t)n_vocab * sizeof *s->cand);
	return s->cand ? 0 : ENGINE_E_NOMEM;
}

void sampler_free(struct sampler *s)
{
	free(s->cand);
	s->cand = NULL;
}

int32_t sampler_argmax(const float *logits, uint32_t n)
{
	uint32_t best = 0;
	for (uint32_t i = 1; i < n; i++)
		if (logits[i] > logits[best])
			best = i;
	return (int32_t)best;
}

static void apply_penalties(const struct sampler *s, float *logits, const int32_t *hist, uint32_t n_hist)
{
	const struct engine_sampling *p = &s->p;
	if (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f)
		return;
	uint32_t start = n_hist > (uint32_t)p->penalty_last_n ? n_hist - (uint32_t)p->penalty_last_n : 0;
	/* count occurrences in the window; small windows, so a quadratic
	 * de-duplication is cheaper than a vocabulary-sized table */
	for (uint32_t i = start; i < n_hist; i++) {
		int32_t id = hist[i];
		if (id < 0 || (uint32_t)id >= s->n_vocab)
			continue;
		bool seen = false;
		for (uint32_t j = start; j < i; j++)
			if (hist[j] == id) {
				seen = true;
				break;
			}
		if (seen)
			continue;
		uint32_t count = 0;
		for (uint32_t j = i; j < n_hist; j++)
			count += hist[j] == id;
		float *l = &logits[id];
		if (*l <= 0)
			*l *= p->repeat_penalty;
		else
			*l /= p->repeat_penalty;
		*l -= (float)count * p->frequency_penalty + p->presence_penalty;
	}
}

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->logit != y->logit)
		return x->logit < y->logit ? 1 : -1;
	return x->id - y->id;
}

static void sift_down(struct cand *h, uint32_t n, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && h[l].logit < h[m].logit)
			m = l;
		if (r < n && h[r].logit < h[m].logit)
			m = r;
		if (m == i)
			return;
		struct cand t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

/* Moves the k largest candidates to the front (unordered): a min-heap of
 * the best k seen so far, one pass over the rest. */
static void select_top(struct cand *c, uint32_t n, uint32_t k)
{
	for (uint32_t i = k / 2; i-- > 0;)
		sift_down(c, k, i);
	for (uint32_t i = k; i < n; i++) {
		if (c[i].logit > c[0].logit) {
			c[0] = c[i];
			sift_down(c, k, 0);
		}
	}
}

/* The chain after the penalties.  Masked logits (-INFINITY) never win
 * while any finite one is left. */
static int32_t pick(struct sampler *s, const float *logits)
{
	const struct engine_sampling *p = &s->p;
	if (p->temperature <= 0.0f)
		return sampler_argmax(logits, s->n_vocab);

	uint32_t n = s->n_vocab;
	for (uint32_t i = 0; i < n; i++) {
		s->cand[i].logit = logits[i];
		s->cand[i].id = (int32_t)i;
	}
	if (p->top_k > 0 && (uint32_t)p->top_k < n) {
		select_top(s->cand, n, (uint32_t)p->top_k);
		n = (uint32_t)p->top_k;
	}
	qsort(s->cand, n, sizeof *s->cand, cand_cmp);
	while (n > 1 && s->cand[n - 1].logit == -INFINITY)
		n--;

	/* probabilities at temperature 1 decide top-p and min-p */
	const float mx = s->cand[0].logit;
	double sum = 0.0;
	for (uint32_t i = 0; i < n; i++)
		sum += exp((double)(s->cand[i].logit - mx));
	if (p->top_p > 0.0f && p->top_p < 1.0f) {
		double cum = 0.0;
		for (uint32_t i = 0; i < n; i++) {
			cum += exp((double)(s->cand[i].logit - mx)) / sum;
			if (cum >= p->top_p) {
				n = i + 1;
				break;
			}
		}
	}
	if (p->min_p > 0.0f) {
		/* p_i >= min_p * p_max  <=>  logit_i >= max + log(min_p) */
		const float floor_logit = mx + logf(p->min_p);
		uint32_t keep = 1;
		while (keep < n && s->cand[keep].logit >= floor_logit)
			keep++;
		n = keep;
	}
	double total = 0.0;
	for (uint32_t i = 0; i < n; i++)
		total += exp((double)((s->cand[i].logit - mx) / p->temperature));
	double r = rng_uniform(&s->rng) * total;
	for (uint32_t i = 0; i < n; i++) {
		r -= exp((double)((s->cand[i].logit - mx) / p->temperature));
		if (r <= 0.0)
			return s->cand[i].id;
	}
	return s->cand[n - 1].id;
}

int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *hist, uint32_t n_hist)
{
	apply_penalties(s, logits, hist, n_hist);
	return pick(s, logits);
}

int32_t sampler_sample_grammar(struct sampler *s, grammar *g, float *logits, const int32_t *hist, uint32_t n_hist,
			       int *grc)
{
	*grc = 0;
	apply_penalties(s, logits, hist, n_hist);
	int32_t id = pick(s, logits);
	if (grammar_token_ok(g, id))
		return id;
	s->n_masks++;
	int64_t n = grammar_mask(g, logits);
	if (n <= 0) {
		*grc = (int)n;
		return -1;
	}
	return pick(s, logits);
}
