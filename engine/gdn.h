/*
 * gdn.h - the kernels of a Gated DeltaNet layer (qwen35's linear
 * attention), engine-internal.  forward.c runs them over a batch on the
 * pool; each works on plain f32 arrays and a part of the work (channels,
 * tokens or value heads) so the pool can split it.
 *
 * Sizes: C convolution channels (q | k | v), K taps, S the head size of
 * keys and values, HK key heads, HV value heads (HV a multiple of HK;
 * value head h reads key head h % HK, as llama.cpp's broadcast does).
 *
 * A layer's recurrent state is the last K-1 inputs of each channel,
 * [C][K-1], then per value head an S x S matrix M stored by rows
 * M[j][i] (j a value index, i a key index), the layout of ggml's
 * gated_delta_net state.
 */
#ifndef TTYCHAT_GDN_H
#define TTYCHAT_GDN_H

#include <stddef.h>

struct gdn_dims {
	int C, K, S, HK, HV;
};

/* Channels c0 .. c1-1 of x [T][C] (the projection qkv of each token),
 * replaced by silu(causal convolution) with taps w [C][K]; st_in holds
 * each channel's K-1 inputs before the batch, st_out gets the last K-1
 * (st_out may not alias x; it may alias st_in). */
void gdn_conv(const struct gdn_dims *d, float *x, int T, const float *w, const float *st_in, float *st_out,
	      int c0, int c1);

/* One token: q and k heads of xt (the convolution's output, [C]) scaled
 * to unit L2 norm (x / sqrt(sum x^2 + eps)), alpha [HV] turned into the
 * log-decay softplus(alpha + dt) * a and beta [HV] into sigmoid(beta). */
void gdn_prep(const struct gdn_dims *d, float *xt, float *alpha, float *beta, const float *dt, const float *a,
	      float eps);

/* Value head h over T tokens: the delta rule from state s_in ([S][S]) to
 * s_out (may alias s_in), writing o[t * HV * S + h * S + j].  x is [T][C]
 * after gdn_prep, g and beta [T][HV]. */
void gdn_recur(const struct gdn_dims *d, int h, const float *x, int T, const float *g, const float *beta,
	       const float *s_in, float *s_out, float *o);

/* One token's output [HV][S]: each head RMS-normed with weight w [S],
 * times silu(z). */
void gdn_gate_norm(const struct gdn_dims *d, float *o, const float *z, const float *w, float eps);

/* lfm2's short convolution, channels c0 .. c1-1 of T rows bcx[t] =
 * [b | c | x] (3 E floats each): y = c * conv(b * x) with taps w [E][L]
 * (no activation), written over b; st_in / st_out: each channel's last
 * L-1 values of b * x (st_out may alias st_in, not bcx). */
void shortconv(int E, int L, float *bcx, int T, const float *w, const float *st_in, float *st_out, int c0,
	       int c1);

#endif
