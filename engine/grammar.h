/*
 * grammar.h - grammar-constrained generation: which tokens a compiled GBNF
 * grammar (gbnf.h) allows next, and the state after each accepted token
 * (engine-internal).
 *
 * The matcher keeps the set of parse stacks that the text so far leaves
 * open (a top-down, all-alternatives-at-once parse, as llama.cpp's grammar
 * sampler does): each stack is a list of positions in the grammar's
 * symbols, its top always a terminal (a character class or a token), an
 * empty stack meaning the grammar may end here.  Text is fed as UTF-8
 * bytes; a token that ends inside a multi-byte character leaves the
 * character pending, allowed when some stack's class admits a character
 * that begins that way, and the next token must finish it.
 *
 * Which tokens: control tokens other than end-of-generation ones are not
 * text; only <[id]> / !<[id]> elements admit them.  End-of-generation tokens
 * are allowed when the grammar may end here (and no character is pending)
 * or when a token element names them.  Tokens with empty text never are.
 *
 * grammar_mask() walks a byte trie of the vocabulary (grammar_vocab, built
 * once per tokenizer), feeding each prefix once, so the tokens sharing a
 * prefix share its work and a dead prefix prunes all of them.
 *
 * Limits (hostile grammars): an ambiguous grammar can multiply stacks; a
 * step that would hold over GRAMMAR_MAX_STACKS stacks, or a stack deeper
 * than GRAMMAR_MAX_DEPTH, fails with GRAMMAR_E_LIMIT instead of growing.
 *
 * Ownership and threads: a grammar_vocab is immutable after creation and
 * may be shared; a grammar belongs to one thread and must not outlive the
 * gbnf and the vocab it was made with.  Nothing here prints or exits.
 */
#ifndef TTYCHAT_GRAMMAR_H
#define TTYCHAT_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gbnf.h"
#include "tokenizer.h"

#define GRAMMAR_MAX_STACKS 4096u
#define GRAMMAR_MAX_DEPTH 4096u

enum {
	GRAMMAR_OK = 0,
	GRAMMAR_E_NOMEM = -1,
	GRAMMAR_E_REJECT = -2, /* the grammar does not allow that token or text */
	GRAMMAR_E_LIMIT = -3,  /* too many stacks or too deep (see above) */
	GRAMMAR_E_RANGE = -4,  /* token id out of the vocabulary */
};

/* What a token is to the grammar. */
enum grammar_tok_kind {
	GRAMMAR_TOK_TEXT = 0,     /* its bytes are text */
	GRAMMAR_TOK_EOG = 1,      /* ends the generation */
	GRAMMAR_TOK_CONTROL = 2,  /* not text (only token elements admit it) */
};

typedef struct grammar_vocab grammar_vocab;
typedef struct grammar grammar;

/* A vocabulary of N tokens: PIECE[i] (LEN[i] bytes, copied) and KIND[i]
 * (enum grammar_tok_kind).  NULL when out of memory. */
grammar_vocab *grammar_vocab_new(uint32_t n, const char *const *piece, const uint32_t *len, const uint8_t *kind);
/* The same from a tokenizer: tok_piece() bytes; tok_is_eog() and
 * tok_is_control() decide the kinds.  NULL when out of memory. */
grammar_vocab *grammar_vocab_from_tok(const tokenizer *tk);
void grammar_vocab_free(grammar_vocab *v);
uint32_t grammar_vocab_size(const grammar_vocab *v);

/* A matcher at the start of G (VOCAB may be NULL for text-only use:
 * grammar_accept_text() and grammar_can_end()).  NULL when out of memory
 * or when the start already exceeds the limits; *rc (may be NULL) says
 * which. */
grammar *grammar_new(const struct gbnf *g, const grammar_vocab *vocab, int *rc);
void grammar_free(grammar *m);

/* Whether token ID may come next (false also for ids out of range or when
 * checking hit a limit or ran out of memory). */
bool grammar_token_ok(grammar *m, int32_t id);
/* Advances past token ID: GRAMMAR_OK, or GRAMMAR_E_REJECT (state
 * unchanged), _LIMIT, _NOMEM, _RANGE.  An end-of-generation token that is
 * allowed leaves the state as it is. */
int grammar_accept_token(grammar *m, int32_t id);
/* Advances past text s[0..n) as if it were generated: GRAMMAR_OK, or
 * GRAMMAR_E_REJECT (state unchanged), _LIMIT, _NOMEM. */
int grammar_accept_text(grammar *m, const char *s, size_t n);
/* True when the text so far is a complete sentence of the grammar. */
bool grammar_can_end(const grammar *m);
/* True when nothing more can be accepted (no stack left open but empty
 * ones): the grammar must end here. */
bool grammar_must_end(const grammar *m);

/* Sets logits[i] to -INFINITY for every token the grammar does not allow
 * next (LOGITS has the vocab's size).  Returns the count of allowed
 * tokens (0: none is, a dead end), or a negative GRAMMAR_E_*. */
int64_t grammar_mask(grammar *m, float *logits);

#endif
