/*
 * spec.h - speculative decoding: the drafters.
 *
 * Decode of a dense model reads every weight once per token; verifying k
 * guessed tokens in one batched pass reads them once for up to k+1 tokens.
 * The guesses come from a drafter:
 *
 *   n-gram lookup   the tokens that followed the most recent earlier
 *                   occurrence of the text's last 2..4 tokens (prompt
 *                   lookup): free, and right whenever the reply copies
 *                   from the prompt or the conversation (edits, quotes);
 *   draft model     a small model with the target's vocabulary, decoded
 *                   greedily, stopping where its own confidence drops.
 *
 * Both drafters are deterministic (a point-mass draft distribution), so
 * the standard accept/reject rule (accept d with probability p(d)/q(d),
 * else sample the residual max(p - q, 0)) reduces to: sample the target's
 * own distribution at each position and accept while the sample equals the
 * draft.  The reply is then distributed exactly as without speculation, at
 * any temperature, with any sampler or grammar; engine.c's decode loop
 * does the verification and the rollback.
 */
#ifndef TTYCHAT_SPEC_H
#define TTYCHAT_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "model.h"
#include "pool.h"
#include "tokenizer.h"

#define SPEC_MAX_DRAFT 16      /* tokens drafted per pass, at most */
#define SPEC_NGRAM_MIN 2
#define SPEC_NGRAM_MAX 4
#define SPEC_DRAFT_PMIN 0.35f  /* the draft model stops below this confidence */

/* Up to MAX (<= SPEC_MAX_DRAFT) tokens into OUT: those that followed the
 * most recent earlier occurrence of the last SPEC_NGRAM_MAX .. MIN tokens
 * of the text hist[0..n) + last.  Returns how many (0: no match). */
int spec_ngram_draft(const int32_t *hist, uint32_t n, int32_t last, int max, int32_t *out);

/* Whether a draft model's vocabulary is the target's: the same tokenizer
 * kind, the same BOS and EOS, at most 128 ids more or fewer, and the same
 * text for every id both have.  0, or -1 with the first difference in why. */
int spec_vocab_check(const tokenizer *target, const tokenizer *draft, char *why, size_t whylen);

struct spec_draft_model {
	struct model m;
	tokenizer *tok;
	struct fwd f;
	struct kv_cache kv;
	uint64_t conv;        /* whose text kv holds (any, when kv.n == 0) */
	bool loaded, fwd_ready, kv_ready;
};

/* Loads PATH as the drafter for the model of TARGET_TOK, on pool P, with
 * a cache of N_CTX positions.  0, or a negative engine_status with one
 * line in err ("PATH: ..."). */
int spec_draft_load(struct spec_draft_model *d, const char *path, const tokenizer *target_tok, pool *p,
		    uint32_t n_ctx, char *err, size_t errlen);
void spec_draft_free(struct spec_draft_model *d);
/* Weights and scratch the drafter holds, its cache included. */
uint64_t spec_draft_bytes(const struct spec_draft_model *d);

/* Up to MAX tokens after hist[0..n) + last (conversation CONV), greedily
 * from the draft model, stopping before a pick whose probability is under
 * SPEC_DRAFT_PMIN.  The draft's cache keeps what it shares with the text
 * and computes the rest (a prefill of the draft: *CATCHUP_MS says how long
 * it took, so that it is not counted against the guesses).  Returns how
 * many (>= 0), or a negative engine_status (the cache is then emptied). */
int spec_draft_run(struct spec_draft_model *d, uint64_t conv, const int32_t *hist, uint32_t n, int32_t last,
		   int max, int32_t *out, double *catchup_ms);

#endif
