/*
 * test_perplexity_unit.c - the pieces under `ttychat perplexity`: the row
 * arithmetic and statistics of src/perplexity.c against direct double
 * computations, and engine_evaluator (engine.h) on the real SmolLM2: the
 * logits of a sequence do not depend on how it is cut into passes, the
 * rows kept are those from FIRST on, bad arguments and a cancel are
 * refused with their codes.  The model part skips (the arithmetic still
 * runs) when SmolLM2 is absent.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine.h"
#include "perplexity.h"
#include "testutil.h"

#define NV 1001   /* odd: the packed row has a pad word */

static void fill_row(float *row, uint32_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (uint32_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		row[i] = (float)(x % 20000) / 1000.0f - 10.0f;   /* -10 .. 10 */
	}
}

/* log p(tok) in double, the reference. */
static double ref_logp(const float *row, uint32_t n, int32_t tok)
{
	double mx = row[0], s = 0.0;
	for (uint32_t i = 1; i < n; i++)
		mx = row[i] > mx ? row[i] : mx;
	for (uint32_t i = 0; i < n; i++)
		s += exp(row[i] - mx);
	return row[tok] - mx - log(s);
}

static void test_rows(void)
{
	float row[NV], other[NV];
	uint16_t packed[NV + 5];
	CHECK(ppl_row_words(NV) == NV + 5, "words %zu", ppl_row_words(NV));
	CHECK(ppl_row_words(1000) == 1004, "words %zu", ppl_row_words(1000));
	CHECK(ppl_chunk_rows(512) == 255 && ppl_chunk_rows(128) == 63, "rows");
	fill_row(row, NV, 1);
	const double nll = ppl_row_nll(row, NV, 17), ref = -ref_logp(row, NV, 17);
	CHECK(fabs(nll - ref) < 1e-5, "nll %f vs %f", nll, ref);
	const double nll_p = ppl_row_pack(row, NV, 17, packed);
	CHECK(fabs(nll_p - ref) < 1e-4, "packed nll %f vs %f", nll_p, ref);
	float scale, min_lp;
	memcpy(&scale, packed, 4);
	memcpy(&min_lp, packed + 2, 4);
	int worst = 0;
	for (uint32_t i = 0; i < NV; i++) {
		const double lp = ref_logp(row, NV, (int32_t)i);
		const double back = scale * packed[4 + i] + min_lp;
		if (lp > min_lp && fabs(back - lp) > scale)
			worst++;
	}
	CHECK(worst == 0 && scale > 0, "%d log-probabilities unpack more than one step off", worst);
	CHECK(packed[4 + NV] == 0, "the pad word is 0");

	/* the same logits against their own packed row: KLD ~ 0, same top */
	struct ppl_kld k;
	memset(&k, 0, sizeof k);
	float kld, pd;
	ppl_row_kld(row, NV, packed, 17, &k, &kld, &pd);
	CHECK(fabsf(kld) < 1e-4f && fabsf(pd) < 1e-4f && k.n_same_top == 1 && k.count == 1,
	      "self KLD %g, dp %g, same top %zu", (double)kld, (double)pd, k.n_same_top);
	/* other logits: the KLD is KL(base || other) over the kept rows */
	fill_row(other, NV, 2);
	ppl_row_kld(other, NV, packed, 17, &k, &kld, &pd);
	double ref_kld = 0.0;
	for (uint32_t i = 0; i < NV; i++) {
		const double lpb = ref_logp(row, NV, (int32_t)i);
		if (lpb > -16)
			ref_kld += exp(lpb) * (lpb - ref_logp(other, NV, (int32_t)i));
	}
	CHECK(fabs(kld - ref_kld) < 1e-3 * (1 + ref_kld), "KLD %f vs %f", (double)kld, ref_kld);
	CHECK(k.count == 2 && fabs(k.sum_nll - (ref - ref_logp(other, NV, 17))) < 1e-3, "sums");
}

static void test_stats(void)
{
	const float v[] = {1, 2, 3, 4, 5};
	CHECK(ppl_median(v, 5) == 3 && ppl_median(v, 4) == 2.5f, "median");
	CHECK(ppl_percentile(v, 5, 0.5f) == 3 && ppl_percentile(v, 5, 1.0f) == 5 && ppl_percentile(v, 5, 0) == 1,
	      "percentile ends");
	CHECK(fabsf(ppl_percentile(v, 5, 0.9f) - 4.6f) < 1e-5f, "percentile 0.9 %f", (double)ppl_percentile(v, 5, 0.9f));
	double m, u;
	ppl_mean_unc(10.0, 30.0, 5, &m, &u);
	CHECK(m == 2.0 && u == 0.0, "below 11 values no uncertainty");
	/* 20 values, 0 and 2 alternating: mean 1, variance 1, unc sqrt(1/19) */
	ppl_mean_unc(20.0, 40.0, 20, &m, &u);
	CHECK(m == 1.0 && fabs(u - sqrt(1.0 / 19)) < 1e-12, "mean %f unc %f", m, u);
}

static void test_evaluator(const char *path)
{
	char err[512];
	struct engine_load_opts o = {.n_ctx = 1};
	CHECK(engine_evaluator_open(path, &o, 2, err, sizeof err) == NULL && strstr(err, path), "n_ctx 1: %s", err);
	o.n_ctx = 48;
	CHECK(engine_evaluator_open("/nonexistent.gguf", &o, 2, err, sizeof err) == NULL &&
		      strstr(err, "/nonexistent.gguf"), "missing file: %s", err);
	o.device = ENGINE_DEVICE_CPU;
	engine_evaluator *ev = engine_evaluator_open(path, &o, 2, err, sizeof err);
	CHECK(ev != NULL, "open: %s", err);
	if (!ev)
		return;
	const struct engine_evaluator_info *in = engine_evaluator_info(ev);
	CHECK(in->n_vocab == 49152 && in->n_ctx == 48 && in->bos >= 0, "info %u %u %d", in->n_vocab, in->n_ctx, in->bos);
	int32_t ids[48];
	for (int i = 0; i < 48; i++)
		ids[i] = 100 + 37 * i;
	const size_t nv = in->n_vocab;
	float *a = malloc(48 * nv * sizeof *a), *b = malloc(48 * nv * sizeof *b);
	CHECK(engine_evaluator_run(ev, ids, 48, 0, 0, a, err, sizeof err) == 0, "run: %s", err);
	CHECK(engine_evaluator_run(ev, ids, 48, 20, 16, b, err, sizeof err) == 0, "run from 20: %s", err);
	double worst = 0.0;
	for (size_t i = 0; i < 28 * nv; i++)
		worst = fmax(worst, fabs((double)a[20 * nv + i] - b[i]));
	CHECK(worst < 1e-2, "rows 20.. cut in passes of 16 differ by %g", worst);
	/* a run starts from an empty cache: the same again */
	CHECK(engine_evaluator_run(ev, ids, 48, 20, 16, a, err, sizeof err) == 0 && memcmp(a, b, 28 * nv * 4) == 0,
	      "a second run gives the same logits");
	CHECK(engine_evaluator_run(ev, ids, 49, 0, 0, a, err, sizeof err) == ENGINE_E_INVAL, "past n_ctx");
	CHECK(engine_evaluator_run(ev, ids, 10, 10, 0, a, err, sizeof err) == ENGINE_E_INVAL, "first == n");
	CHECK(engine_evaluator_run(ev, ids, 10, 0, ENGINE_BATCH_MAX + 1, a, err, sizeof err) == ENGINE_E_INVAL, "batch");
	ids[3] = (int32_t)in->n_vocab;
	CHECK(engine_evaluator_run(ev, ids, 10, 0, 0, a, err, sizeof err) == ENGINE_E_INVAL, "id past the vocabulary");
	ids[3] = 5;
	engine_evaluator_cancel(ev);
	CHECK(engine_evaluator_run(ev, ids, 10, 0, 0, a, err, sizeof err) == ENGINE_E_CANCELLED, "cancelled");
	free(a);
	free(b);
	engine_evaluator_close(ev);
	engine_evaluator_close(NULL);
}

int main(void)
{
	test_rows();
	test_stats();
	char path[4096];
	if (tu_model(SMOLLM2_FILE, path, sizeof path))
		test_evaluator(path);
	else
		printf("note: %s absent: the evaluator is not tested\n", SMOLLM2_FILE);
	return tu_finish();
}
