/*
 * gbnf.h - GBNF grammars (llama.cpp's notation) compiled into flat rule
 * tables (engine-internal).
 *
 * The notation: `name ::= alternatives` rules; alternatives separated by
 * `|`; sequences of "literals" (with \n \r \t \\ \" \[ \] \xXX \uXXXX
 * \UXXXXXXXX escapes), [character classes] with ranges and ^ negation, `.`
 * (any character), rule names, ( groups ), the repetitions * + ? {m} {m,}
 * {m,n}, tokens <[id]>, <text> (<[TEXT]> too when TEXT does not start with a
 * digit), and their negations !<[id]>, !<text>;
 * # comments; newlines inside groups and after `|`.  `root` is the start.
 *
 * The compiled form: every rule is a list of alternatives, every
 * alternative a run of symbols in syms[] closed by a GBNF_END symbol, so a
 * position in syms[] is "what comes next" and a matcher's stack is a list of
 * positions.  Repetitions become helper rules (x* -> R ::= x R | empty;
 * x{m,n} -> m copies of x and a chain of n-m nested optional ones), groups
 * become helper rules named after their rule (name_1, name_2, ...).
 *
 * Refused with a message naming the line: syntax errors, undefined or twice
 * defined rules, no root, left recursion (a rule that can reach itself
 * before consuming a character, which no top-down matcher can run),
 * repetition counts over GBNF_MAX_REPEAT, a grammar over GBNF_MAX_SYMS
 * symbols, invalid UTF-8, code points past U+10FFFF, and token texts the
 * vocabulary does not have as one token.
 *
 * Ownership: gbnf_parse() returns a grammar the caller frees with
 * gbnf_free(); it is immutable afterwards and may be shared by any number
 * of matchers and threads.  Nothing here prints or exits.
 */
#ifndef TTYCHAT_GBNF_H
#define TTYCHAT_GBNF_H

#include <stddef.h>
#include <stdint.h>

#define GBNF_MAX_REPEAT 10000u
#define GBNF_MAX_SYMS (1u << 22)
#define GBNF_MAX_TEXT (16u << 20)

enum gbnf_kind {
	GBNF_END = 0,    /* end of an alternative */
	GBNF_REF,        /* arg: rule index */
	GBNF_CLASS,      /* arg: class index; one character */
	GBNF_TOKEN,      /* arg: token id; one token */
	GBNF_TOKEN_NOT,  /* arg: token id; one token other than that one */
};

struct gbnf_sym {
	uint32_t kind;
	uint32_t arg;
};

/* A class matches code point c when some range lo <= c <= hi holds,
 * inverted when negated.  `.` is a negated class with no ranges. */
struct gbnf_class {
	uint32_t first_range, n_ranges;
	uint32_t negated;
};

struct gbnf_range {
	uint32_t lo, hi;
};

struct gbnf_rule {
	uint32_t first_alt, n_alts;
	char *name;      /* as written, or name_N for helper rules */
};

struct gbnf {
	struct gbnf_sym *syms;
	uint32_t n_syms;
	uint32_t *alts;  /* start of each alternative in syms[] */
	uint32_t n_alts;
	struct gbnf_rule *rules;
	uint32_t n_rules;
	struct gbnf_class *classes;
	uint32_t n_classes;
	struct gbnf_range *ranges;
	uint32_t n_ranges;
	uint32_t root;   /* rule index of `root` */
};

/* Looks TEXT (len bytes) up as a single token: its id, or -1. */
typedef int32_t (*gbnf_token_lookup)(void *ctx, const char *text, size_t len);

/* Return codes of gbnf_parse(). */
enum {
	GBNF_OK = 0,
	GBNF_E_NOMEM = -1,
	GBNF_E_SYNTAX = -2,   /* any refusal listed above; message in err */
};

/* Compiles text[0..len).  LOOKUP resolves <text> tokens and N_VOCAB bounds
 * <[id]> (both may be 0/NULL: token texts are then refused, and ids are
 * not bounded - for checking a grammar before a model is loaded, pass a
 * lookup that answers 0).  Returns GBNF_OK with *out set, or a negative
 * code with *out NULL and a one-line message in err ("line 3: ..."). */
int gbnf_parse(const char *text, size_t len, gbnf_token_lookup lookup, void *ctx, uint32_t n_vocab,
	       struct gbnf **out, char *err, size_t errlen);
void gbnf_free(struct gbnf *g);

/* True when class C admits code point CP. */
static inline int gbnf_class_has(const struct gbnf *g, uint32_t c, uint32_t cp)
{
	const struct gbnf_class *k = &g->classes[c];
	int in = 0;
	for (uint32_t i = 0; i < k->n_ranges && !in; i++)
		in = g->ranges[k->first_range + i].lo <= cp && cp <= g->ranges[k->first_range + i].hi;
	return in != (int)k->negated;
}

#endif
