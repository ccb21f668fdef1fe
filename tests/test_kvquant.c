/*
 * test_kvquant - the KV cache formats of engine/kvquant.c:
 *   - each type's encode -> decode round trip on Gaussian rows, relative
 *     RMS error under a bound per type (the bounds are ~1.3x what the
 *     formats give; a wrong bit layout or scale gives errors near 1);
 *   - the linear types decode exactly at the levels they encode (a row
 *     already on the grid survives a second round trip unchanged);
 *   - the dot product of every type with its query row against the
 *     float dot of the decoded row with the decoded query, and Q3R's
 *     AVX2 kernel against its scalar reference;
 *   - the rotation: R^T R = I, dot products kept, for heads of 64, 128,
 *     256, 512 and 96 (chunks of 32), and rotation shrinking Q3R's error
 *     on a row with outliers.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "kvquant.h"
#include "quant.h"
#include "testutil.h"

static uint64_t rng = 88172645463325252ULL;
static double urand(void)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (double)(rng >> 11) / 9007199254740992.0;
}
static float gauss(void)
{
	double u = urand() + 1e-12, v = urand();
	return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static const uint32_t types[] = {GGML_TYPE_F16, GGML_TYPE_Q8_0, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
				 GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_IQ4_NL, KVQ_Q3R};
/* relative RMS error bounds on N(0,1) rows */
static const double bound[] = {0.001, 0.007, 0.055, 0.05, 0.11, 0.10, 0.10, 0.22};

#define N 512

static double rel_rms(const float *a, const float *b, int n)
{
	double e = 0, s = 0;
	for (int i = 0; i < n; i++) {
		e += (double)(a[i] - b[i]) * (a[i] - b[i]);
		s += (double)a[i] * a[i];
	}
	return sqrt(e / (s > 0 ? s : 1));
}

static void test_round_trip(void)
{
	static float x[N], y[N], z[N];
	static unsigned char buf[4 * N], buf2[4 * N];
	for (int i = 0; i < N; i++)
		x[i] = gauss();
	for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
		const uint32_t ty = types[t];
		CHECK(kvq_parse(kvq_name(ty)) == ty, "%s: name round trip", kvq_name(ty));
		const size_t rb = kvq_row_bytes(ty, N);
		CHECK(rb > 0 && rb <= sizeof buf, "%s: row bytes %zu", kvq_name(ty), rb);
		CHECK(kvq_quantize_row(ty, x, buf, N) == 0 && kvq_dequant_row(ty, buf, y, N) == 0, "%s: codec",
		      kvq_name(ty));
		const double err = rel_rms(x, y, N);
		printf("  %-7s %6.3f bits/elt  rel rms %.4f (bound %.3f)\n", kvq_name(ty), 8.0 * (double)rb / N, err,
		       bound[t]);
		CHECK(err < bound[t], "%s: rel rms %.4f >= %.3f", kvq_name(ty), err, bound[t]);
		/* the decoded row encodes to itself for the linear types */
		if (ty != GGML_TYPE_IQ4_NL && ty != KVQ_Q3R && ty != GGML_TYPE_Q4_1 && ty != GGML_TYPE_Q5_1) {
			kvq_quantize_row(ty, y, buf2, N);
			kvq_dequant_row(ty, buf2, z, N);
			CHECK(rel_rms(y, z, N) < 1e-3, "%s: second round trip moved %.5f", kvq_name(ty),
			      rel_rms(y, z, N));
		}
		/* a zero row stays zero */
		memset(z, 0, sizeof z);
		kvq_quantize_row(ty, z, buf2, N);
		kvq_dequant_row(ty, buf2, y, N);
		int nz = 0;
		for (int i = 0; i < N; i++)
			nz += y[i] != 0.0f;
		CHECK(nz == 0, "%s: zero row decodes to %d non-zeros", kvq_name(ty), nz);
	}
	CHECK(kvq_row_bytes(KVQ_Q3R, 96) == 0 && kvq_row_bytes(KVQ_Q3R, 64) == 26, "q3r takes multiples of 64");
	CHECK(kvq_row_bytes(GGML_TYPE_Q4_0, 80) == 0 && kvq_row_bytes(GGML_TYPE_Q2_K, 256) == 0, "bad rows refused");
	CHECK(kvq_quantize_row(KVQ_Q3R, x, buf, 32) == -1, "q3r: 32 elements refused");
	CHECK(kvq_parse("q4") == 0 && kvq_parse("Q4_0") == 0, "unknown names");
}

static void test_dot(void)
{
	static float k[N], q[N], kd[N], qd[N];
	static unsigned char kb[4 * N], qa[4 * N];
	for (int rep = 0; rep < 4; rep++) {
		for (int i = 0; i < N; i++) {
			k[i] = gauss() * (rep + 1);
			q[i] = gauss();
		}
		for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
			const uint32_t ty = types[t];
			kvq_quantize_row(ty, k, kb, N);
			kvq_dequant_row(ty, kb, kd, N);
			CHECK(kvq_act_bytes(ty, N) > 0 && kvq_act_quantize(ty, q, qa, N) == 0, "%s: act", kvq_name(ty));
			const uint32_t at = quant_act_type(ty == KVQ_Q3R ? GGML_TYPE_Q8_0 : ty);
			quant_dequant_row(at, qa, qd, N);
			double ref = 0, mag = 0;
			for (int i = 0; i < N; i++) {
				ref += (double)kd[i] * qd[i];
				mag += fabs((double)kd[i] * qd[i]);
			}
			const float got = kvq_get_dot(ty)(kb, qa, N);
			/* Q4_1/Q5_1 add m * s, s = fp16(d * sum(q)) of the Q8_1 query:
			 * that rounding (2^-11 relative) is in the kernel, not in ref */
			const int one = ty == GGML_TYPE_Q4_1 || ty == GGML_TYPE_Q5_1;
			CHECK(fabs(got - ref) <= (one ? 2e-3 : 1e-5) * mag + 1e-6, "%s: dot %g vs %g", kvq_name(ty), got, ref);
		}
		/* Q3R at every level against the scalar reference */
		kvq_quantize_row(KVQ_Q3R, k, kb, N);
		kvq_act_quantize(KVQ_Q3R, q, qa, N);
		const float r0 = kvq_q3r_dot_at(QUANT_LEVEL_SCALAR)(kb, qa, N);
		for (int lv = 1; lv < QUANT_LEVEL_COUNT; lv++) {
			kvq_dot_fn fn = kvq_q3r_dot_at(lv);
			if (!fn)
				continue;
			for (int n = 64; n <= N; n += 64) {
				const float a = kvq_q3r_dot_at(QUANT_LEVEL_SCALAR)(kb, qa, n), b = fn(kb, qa, n);
				CHECK(fabsf(a - b) <= 1e-5f * (fabsf(a) + 1.0f), "q3r level %d n %d: %g vs %g", lv, n, b, a);
			}
			/* the decoder at this level: the same floats */
			static float da[N], db[N];
			kvq_q3r_dequant_at(QUANT_LEVEL_SCALAR)(kb, da, N);
			kvq_q3r_dequant_at(lv)(kb, db, N);
			CHECK(memcmp(da, db, sizeof da) == 0, "q3r decode at level %d differs from the reference", lv);
			/* unaligned rows */
			static unsigned char kb2[4 * N + 1], qa2[4 * N + 1];
			memcpy(kb2 + 1, kb, kvq_row_bytes(KVQ_Q3R, N));
			memcpy(qa2 + 1, qa, kvq_act_bytes(KVQ_Q3R, N));
			CHECK(fabsf(fn(kb2 + 1, qa2 + 1, N) - r0) <= 1e-5f * (fabsf(r0) + 1.0f), "q3r unaligned");
		}
	}
}

static void test_rotation(void)
{
	static const int dims[] = {64, 128, 256, 512, 96};
	static float s[KVQ_MAX_HEAD], a[512], b[512], a0[512];
	kvq_rot_signs(KVQ_ROT_SEED, s, KVQ_MAX_HEAD);
	int neg = 0;
	for (int i = 0; i < KVQ_MAX_HEAD; i++)
		neg += s[i] < 0;
	CHECK(neg > 400 && neg < 624, "signs balanced (%d negative of 1024)", neg);
	for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
		const int d = dims[k];
		double dot0 = 0, dot1 = 0, mag = 0;
		for (int i = 0; i < d; i++) {
			a[i] = a0[i] = gauss();
			b[i] = gauss();
			dot0 += (double)a[i] * b[i];
			mag += fabs((double)a[i] * b[i]);
		}
		kvq_rotate(a, d, s);
		kvq_rotate(b, d, s);
		for (int i = 0; i < d; i++)
			dot1 += (double)a[i] * b[i];
		CHECK(fabs(dot0 - dot1) < 1e-5 * mag, "d %d: dot kept (%g vs %g)", d, dot1, dot0);
		CHECK(rel_rms(a0, a, d) > 0.5, "d %d: rotation moves the row", d);
		kvq_unrotate(a, d, s);
		CHECK(rel_rms(a0, a, d) < 1e-6, "d %d: R^T R = I", d);
	}
	/* outliers: rotated Q3R beats plain Q3R */
	static unsigned char kb[512];
	static float y[128];
	for (int i = 0; i < 128; i++)
		a[i] = a0[i] = gauss() * 0.1f;
	a[5] = a0[5] = 8.0f;
	a[77] = a0[77] = -6.0f;
	kvq_quantize_row(KVQ_Q3R, a, kb, 128);
	kvq_dequant_row(KVQ_Q3R, kb, y, 128);
	const double plain = rel_rms(a0, y, 128);
	kvq_rotate(a, 128, s);
	kvq_quantize_row(KVQ_Q3R, a, kb, 128);
	kvq_dequant_row(KVQ_Q3R, kb, y, 128);
	kvq_unrotate(y, 128, s);
	const double rot = rel_rms(a0, y, 128);
	printf("  q3r on a row with outliers: rel rms %.4f plain, %.4f rotated\n", plain, rot);
	CHECK(rot < plain, "rotation helps a row with outliers (%.4f vs %.4f)", rot, plain);
}

int main(void)
{
	test_round_trip();
	test_dot();
	test_rotation();
	return tu_finish();
}
