/*
 * spec.c - the drafters of speculative decoding (see spec.h).
 */
#include "spec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "engine.h"
#include "gguf.h"

static inline int32_t at(const int32_t *hist, uint32_t n, int32_t last, uint32_t i)
{
	return i < n ? hist[i] : last;
}

int spec_ngram_draft(const int32_t *hist, uint32_t n, int32_t last, int max, int32_t *out)
{
	const uint32_t len = n + 1; /* the text: hist then last */
	if (max > SPEC_MAX_DRAFT)
		max = SPEC_MAX_DRAFT;
	if (max <= 0)
		return 0;
	for (uint32_t g = SPEC_NGRAM_MAX; g >= SPEC_NGRAM_MIN; g--) {
		if (len <= g)
			continue;
		/* the newest earlier start s with text[s..s+g) == the last g
		 * tokens, and at least one token after it */
		const uint32_t tail = len - g;
		for (uint32_t s = tail; s-- > 0;) {
			if (hist[s] != at(hist, n, last, tail))
				continue;
			uint32_t j = 1;
			while (j < g && at(hist, n, last, s + j) == at(hist, n, last, tail + j))
				j++;
			if (j < g)
				continue;
			int k = 0;
			for (uint32_t p = s + g; p < len && k < max; p++)
				out[k++] = at(hist, n, last, p);
			if (k > 0)
				return k;
		}
	}
	return 0;
}

int spec_vocab_check(const tokenizer *target, const tokenizer *draft, char *why, size_t whylen)
{
	const uint32_t nt = tok_n_vocab(target), nd = tok_n_vocab(draft);
	if (tok_model(target) != tok_model(draft)) {
		snprintf(why, whylen, "its tokenizer is of another kind");
		return -1;
	}
	if (nt > nd + 128 || nd > nt + 128) {
		snprintf(why, whylen, "it has %u tokens, the model %u", nd, nt);
		return -1;
	}
	if (tok_bos(target) != tok_bos(draft) || tok_eos(target) != tok_eos(draft)) {
		snprintf(why, whylen, "its BOS/EOS ids %d/%d differ from the model's %d/%d", tok_bos(draft),
			 tok_eos(draft), tok_bos(target), tok_eos(target));
		return -1;
	}
	const uint32_t n = nt < nd ? nt : nd;
	for (uint32_t i = 0; i < n; i++) {
		size_t la, lb;
		const char *a = tok_text(target, (int32_t)i, &la), *b = tok_text(draft, (int32_t)i, &lb);
		if (la != lb || (la && memcmp(a, b, la) != 0)) {
			snprintf(why, whylen, "token %u is '%.*s' there and '%.*s' in the model", i,
				 (int)(lb > 40 ? 40 : lb), b ? b : "", (int)(la > 40 ? 40 : la), a ? a : "");
			return -1;
		}
	}
	return 0;
}

int spec_draft_load(struct spec_draft_model *d, const char *path, const tokenizer *target_tok, pool *p,
		    uint32_t n_ctx, char *err, size_t errlen)
{
	char msg[400];
	memset(d, 0, sizeof *d);
	const volatile int never = 0;
	int rc = model_load(&d->m, path, &never, msg, sizeof msg);
	if (rc) {
		snprintf(err, errlen, "draft model: %s", msg);
		return rc;
	}
	d->loaded = true;
	d->tok = tok_load(d->m.gguf, msg, sizeof msg);
	if (!d->tok) {
		snprintf(err, errlen, "draft model: %s", msg);
		rc = ENGINE_E_FORMAT;
		goto fail;
	}
	if (spec_vocab_check(target_tok, d->tok, msg, sizeof msg)) {
		snprintf(err, errlen, "%s: cannot draft for this model: its vocabulary differs (%s)", path, msg);
		rc = ENGINE_E_FORMAT;
		goto fail;
	}
	if (tok_n_vocab(d->tok) > d->m.hp.n_vocab) {
		snprintf(err, errlen, "%s: vocabulary has %u tokens but the embedding only %u", path,
			 tok_n_vocab(d->tok), d->m.hp.n_vocab);
		rc = ENGINE_E_FORMAT;
		goto fail;
	}
	if ((rc = fwd_init(&d->f, &d->m, p, n_ctx, FWD_BATCH_MAX)) != 0) {
		snprintf(err, errlen, "%s: out of memory for the draft model's scratch buffers", path);
		goto fail;
	}
	d->fwd_ready = true;
	if ((rc = kv_init(&d->kv, &d->m.hp, GGML_TYPE_F16, n_ctx)) != 0) {
		snprintf(err, errlen, "%s: out of memory for the draft model's KV cache", path);
		goto fail;
	}
	d->kv_ready = true;
	gguf_prefetch(d->m.gguf);
	return 0;
fail:
	spec_draft_free(d);
	return rc;
}

void spec_draft_free(struct spec_draft_model *d)
{
	if (d->kv_ready)
		kv_free(&d->kv);
	if (d->fwd_ready)
		fwd_free(&d->f);
	tok_free(d->tok);
	if (d->loaded)
		model_free(&d->m);
	memset(d, 0, sizeof *d);
}

uint64_t spec_draft_bytes(const struct spec_draft_model *d)
{
	if (!d->loaded)
		return 0;
	uint64_t t = d->m.owned_f32_bytes;
	for (uint64_t i = 0; i < gguf_n_tensors(d->m.gguf); i++)
		t += gguf_tensor_at(d->m.gguf, i)->size;
	if (d->fwd_ready)
		t += d->f.bytes;
	if (d->kv_ready)
		t += kv_bytes(&d->kv);
	return t;
}

/* The pick and its probability under the softmax of LOGITS. */
static int32_t argmax_p(const float *logits, uint32_t nv, float *p)
{
	uint32_t best = 0;
	for (uint32_t i = 1; i < nv; i++)
		if (logits[i] > logits[best])
			best = i;
	const float mx = logits[best];
	double s = 0;
	for (uint32_t i = 0; i < nv; i++)
		s += expf(logits[i] - mx);
	*p = (float)(1.0 / s);
	return (int32_t)best;
}

int spec_draft_run(struct spec_draft_model *d, uint64_t conv, const int32_t *hist, uint32_t n, int32_t last,
		   int max, int32_t *out, double *catchup_ms)
{
	struct kv_cache *kv = &d->kv;
	*catchup_ms = 0;
	const uint32_t len = n + 1;
	if (max > SPEC_MAX_DRAFT)
		max = SPEC_MAX_DRAFT;
	if (max <= 0 || len + (uint32_t)max > kv->n_ctx)
		return 0;
	if (d->conv != conv) {
		kv_truncate(kv, 0);
		d->conv = conv;
	}
	/* keep what the cache shares with the text, bar the last token
	 * (its logits are needed) */
	uint32_t keep = 0;
	while (keep < kv->n && keep + 1 < len && kv->tokens[keep] == at(hist, n, last, keep))
		keep++;
	kv_truncate(kv, keep);
	keep = kv->n;
	int rc = 0;
	int32_t buf[FWD_BATCH_MAX];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* a new turn's text is a prefill; the token or two a pass leaves
	 * behind are the guesses' own cost */
	const bool catchup = len - kv->n > SPEC_MAX_DRAFT + 2;
	while (kv->n < len) {
		uint32_t m = len - kv->n;
		if (m > FWD_BATCH_MAX)
			m = FWD_BATCH_MAX;
		for (uint32_t i = 0; i < m; i++)
			buf[i] = at(hist, n, last, kv->n + i);
		if ((rc = fwd_eval(&d->f, kv, buf, (int)m, false)) != 0)
			goto fail;
	}
	/* a recurrent draft cannot be cut back: a copy of its states here is
	 * where the next pass starts over */
	if (kv->n_rec > 0)
		kv_checkpoint(kv);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (catchup)
		*catchup_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
	int k = 0;
	const uint32_t nv = d->m.hp.n_vocab;
	for (;;) {
		float p;
		const int32_t t = argmax_p(d->f.logits, nv, &p);
		if (p < SPEC_DRAFT_PMIN)
			break;
		out[k++] = t;
		/* the last guess goes into the cache too: the next pass then
		 * catches up one token (the target's own), not two in a batch */
		if ((rc = fwd_eval(&d->f, kv, &t, 1, false)) != 0)
			goto fail;
		if (k >= max)
			break;
	}
	return k;
fail:
	kv_truncate(kv, 0);
	return rc;
}
