/*
 * vocab.c - a model's vocabulary without its weights (engine_vocab and
 * engine_detok in engine.h).
 *
 * The file is opened only long enough for tok_load() to copy what it
 * needs, so a vocab holds no mapping.  Encoding adds llama.cpp's
 * add_special on top of tok_encode() (BOS and EOS where the model asks),
 * and turns the tokenizer's codes into engine statuses with its message;
 * the detokenizer is a tok_decoder that takes off the space a
 * SentencePiece vocabulary puts before the text and shows control tokens
 * only on request.
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>

#include "gguf.h"
#include "tokenizer.h"

struct engine_vocab {
	tokenizer *tk;
};

struct engine_detok {
	tok_decoder *d;
};

engine_vocab *engine_vocab_open(const char *path, char *err, size_t errlen)
{
	engine_vocab *v = calloc(1, sizeof *v);
	if (!v) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	gguf_file *g = gguf_open(path, err, errlen);
	if (!g) {
		free(v);
		return NULL;
	}
	char msg[512];
	v->tk = tok_load(g, msg, sizeof msg);
	gguf_close(g);
	if (!v->tk) {
		snprintf(err, errlen, "%s: %s", path, msg);
		free(v);
		return NULL;
	}
	return v;
}

void engine_vocab_free(engine_vocab *v)
{
	if (!v)
		return;
	tok_free(v->tk);
	free(v);
}

uint32_t engine_vocab_size(const engine_vocab *v)
{
	return tok_n_vocab(v->tk);
}

static int status_of(int tok_rc)
{
	switch (tok_rc) {
	case TOK_OK: return ENGINE_OK;
	case TOK_ERR_NOMEM: return ENGINE_E_NOMEM;
	case TOK_ERR_INPUT: return ENGINE_E_INVAL;
	default: return ENGINE_E_FORMAT;
	}
}

int engine_vocab_encode(const engine_vocab *v, const char *text, size_t len, bool add_special,
			bool parse_special, int32_t **ids, size_t *n, size_t *cap, char *err, size_t errlen)
{
	const tokenizer *tk = v->tk;
	const size_t n0 = *n;
	int rc = tok_encode(tk, text, len, add_special && tok_add_bos(tk), parse_special, ids, n, cap);
	if (rc == TOK_OK && add_special && tok_add_eos(tk) && tok_eos(tk) >= 0) {
		if (*n == *cap) {
			int32_t *nb = realloc(*ids, (*n + 1) * sizeof **ids);
			if (!nb)
				rc = TOK_ERR_NOMEM;
			else {
				*ids = nb;
				*cap = *n + 1;
			}
		}
		if (rc == TOK_OK)
			(*ids)[(*n)++] = tok_eos(tk);
		else
			*n = n0;
	}
	if (rc != TOK_OK)
		snprintf(err, errlen, "%s", tok_strerror(rc));
	return status_of(rc);
}

const char *engine_vocab_piece(const engine_vocab *v, int32_t id, size_t *len)
{
	return tok_piece(v->tk, id, len);
}

engine_detok *engine_detok_new(const engine_vocab *v, bool special)
{
	engine_detok *d = malloc(sizeof *d);
	if (!d)
		return NULL;
	d->d = tok_decoder_new(v->tk);
	if (!d->d) {
		free(d);
		return NULL;
	}
	tok_decoder_options(d->d, (special ? TOK_DECODE_SPECIAL : 0u) |
					  (tok_add_space_prefix(v->tk) ? TOK_DECODE_STRIP_SPACE : 0u));
	return d;
}

void engine_detok_free(engine_detok *d)
{
	if (!d)
		return;
	tok_decoder_free(d->d);
	free(d);
}

size_t engine_detok_feed(engine_detok *d, int32_t id, char *buf, size_t size)
{
	return tok_decoder_feed(d->d, id, buf, size);
}

size_t engine_detok_flush(engine_detok *d, char *buf, size_t size)
{
	return tok_decoder_flush(d->d, buf, size);
}
