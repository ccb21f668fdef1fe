/*
 * sampler.h - choosing the next token from logits (engine-internal).
 *
 * Order of operations, as in llama.cpp's default chain: penalties over the
 * last penalty_last_n tokens (repetition, presence, frequency), then top-k,
 * top-p, min-p, temperature, and a draw from the resulting distribution
 * with the sampler's own RNG (seeded; reproducible).  Temperature <= 0 is
 * greedy argmax on the penalised logits.  One sampler per generation; not
 * thread-safe.
 */
#ifndef TTYCHAT_SAMPLER_H
#define TTYCHAT_SAMPLER_H

#include <stdint.h>

#include "engine.h"
#include "grammar.h"

struct sampler {
	struct engine_sampling p;
	uint64_t rng;
	uint32_t n_vocab;
	/* scratch: candidates sorted by logit */
	struct cand { float logit; int32_t id; } *cand;
	uint32_t n_masks;   /* sampler_sample_grammar() steps that masked the vocabulary */
};

int sampler_init(struct sampler *s, const struct engine_sampling *p, uint32_t n_vocab);
void sampler_free(struct sampler *s);
/* Picks a token from LOGITS (modified in place by the penalties) given the
 * history HIST of n_hist tokens (prompt and reply so far). */
int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *hist, uint32_t n_hist);
/* The same under grammar G, the way llama.cpp's common sampler does it:
 * the token the unconstrained chain picks is kept when G allows it (the
 * common case, one check of one token); otherwise every token G rejects is
 * masked (grammar_mask(), LOGITS modified) and the chain picks again.
 * Greedy decoding is therefore exact; at a temperature, a kept first pick
 * weighs the allowed tokens as the unconstrained chain did.  Returns the
 * token, or -1 with *grc set: 0 when G allows no token at all, else the
 * GRAMMAR_E_* that stopped the check.  G is not advanced: the caller
 * accepts the token it keeps. */
int32_t sampler_sample_grammar(struct sampler *s, grammar *g, float *logits, const int32_t *hist, uint32_t n_hist,
			       int *grc);
/* Index of the largest logit (lowest index on ties). */
int32_t sampler_argmax(const float *logits, uint32_t n);

#endif
