/*
 * perplexity.h - the arithmetic of `ttychat perplexity` and its logits
 * file, as llama.cpp's llama-perplexity has them (tools/perplexity), so
 * that the figures and the files of the two agree.
 *
 * Rows: one row is the logits a model gave at one position, n_vocab
 * floats, scored against the token that came next.  A packed row is how
 * the logits file keeps a row's log-softmax: nv = ppl_row_words(n_vocab)
 * uint16 words, the first four holding two floats (scale, then the
 * smallest log-probability kept, at least the largest minus 16), then one
 * word per token, (log p - min) / scale rounded, 0 for anything below min,
 * then a pad word when n_vocab is odd.
 *
 * The file (host byte order, as llama.cpp writes it): "_logits_", int32
 * n_ctx, int32 n_vocab, int32 n_chunk, int32 tokens[n_chunk * n_ctx],
 * then per chunk n_ctx - 1 - n_ctx/2 packed rows: those of positions
 * n_ctx/2 .. n_ctx-2, each scored against the token after it.
 *
 * Pure functions but the file's, which read or write the FILE given;
 * errors come back as one line naming the file.  Any thread.
 */
#ifndef TTYCHAT_PERPLEXITY_H
#define TTYCHAT_PERPLEXITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PPL_MAGIC "_logits_"
#define PPL_MAX_VOCAB (1u << 24)
#define PPL_MAX_CTX (1u << 20)

/* Packed words per row. */
size_t ppl_row_words(uint32_t n_vocab);
/* Rows a chunk of N_CTX tokens scores: n_ctx - 1 - n_ctx/2. */
uint32_t ppl_chunk_rows(uint32_t n_ctx);

/* -log p(TOK) under the softmax of LOGITS. */
double ppl_row_nll(const float *logits, uint32_t n_vocab, int32_t tok);
/* The same, and the row packed into OUT (ppl_row_words() words). */
double ppl_row_pack(const float *logits, uint32_t n_vocab, int32_t tok, uint16_t *out);

/* Sums over the rows compared with a base file's. */
struct ppl_kld {
	double sum_nll, sum_nll2;            /* -log p(token), this model */
	double sum_nll_base, sum_nll_base2;  /* the same, the base */
	double sum_nll_nll_base;
	double sum_kld, sum_kld2;            /* KL(base || this) per row */
	double sum_p_diff, sum_p_diff2, sum_p_diff4;  /* p(token) - p_base(token) */
	float max_p_diff;
	size_t n_same_top;                   /* rows whose most likely token agrees */
	size_t count;
};

/* Adds one row: LOGITS of this model, BASE its packed row in the base
 * file, TOK the token scored.  *KLD and *P_DIFF get the row's values. */
void ppl_row_kld(const float *logits, uint32_t n_vocab, const uint16_t *base, int32_t tok, struct ppl_kld *k,
		 float *kld, float *p_diff);

/* Mean of COUNT values from their sum and sum of squares, and the
 * uncertainty of the mean (0 for 10 values or fewer). */
void ppl_mean_unc(double sum, double sum2, size_t count, double *mean, double *unc);
/* Covariance of the means of two series (0 below 10 values). */
double ppl_cov(double suma, double sumb, double sumab, size_t count);
/* Of N sorted values (N > 0): the FRACTION percentile, linearly
 * interpolated, and the median. */
float ppl_percentile(const float *sorted, size_t n, float fraction);
float ppl_median(const float *sorted, size_t n);

/* A logits file open for reading: the header and the tokens. */
struct ppl_base {
	FILE *f;
	const char *path;
	uint32_t n_ctx, n_vocab, n_chunk;
	int32_t *tokens;                     /* [n_chunk * n_ctx], malloc'd */
	uint32_t next_chunk;
};

/* Opens PATH and reads its header and tokens: checked against the file's
 * size (truncated or longer files refused) and each token against
 * n_vocab.  0, or -1 with one line naming PATH in err (B is then closed). */
int ppl_base_open(struct ppl_base *b, const char *path, char *err, size_t errlen);
/* The packed rows of the next chunk into ROWS (ppl_chunk_rows(n_ctx) *
 * ppl_row_words(n_vocab) words).  0 or -1 with a message. */
int ppl_base_read_chunk(struct ppl_base *b, uint16_t *rows, char *err, size_t errlen);
void ppl_base_close(struct ppl_base *b);

/* Writes the header and the tokens of N_CHUNK chunks to F.  0 or -1
 * (errno set). */
int ppl_file_write_header(FILE *f, uint32_t n_ctx, uint32_t n_vocab, uint32_t n_chunk, const int32_t *tokens);

#endif
