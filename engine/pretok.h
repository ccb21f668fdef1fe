/*
 * pretok.h - BPE pre-tokenizers: split text into the words that byte-level
 * BPE merges within, exactly as llama.cpp's unicode_regex_split() does for
 * the pre-tokenizer named by the GGUF key tokenizer.ggml.pre.
 *
 * Internal to the tokenizer (engine/tokenizer.c); not part of the engine's
 * public surface.
 *
 * Thread rules: a pretok is immutable after pretok_new() and may be shared
 * by any number of threads; each thread splits with its own pretok_work.
 */
#ifndef TTYCHAT_PRETOK_H
#define TTYCHAT_PRETOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pretok pretok;

/* Per-name behaviour that llama.cpp attaches to a pre-tokenizer besides its
 * regexes. */
enum {
	PRETOK_IGNORE_MERGES = 1 << 0,  /* a word that is a whole token skips BPE */
	PRETOK_ADD_BOS = 1 << 1,        /* default add_bos_token is true */
	PRETOK_NO_BOS = 1 << 2,         /* the vocab has no BOS token */
	PRETOK_SPM_BPE = 1 << 3,        /* gemma4: spaces become U+2581, words
					   stay raw UTF-8 (no GPT-2 byte symbols),
					   bytes fall back to <0xNN>, BOS always */
};

/* Compiles the pre-tokenizer NAME ("" means "default").  Returns NULL with
 * a one-line message naming it when NAME is unknown or unsupported, or when
 * a regex fails to compile (out of memory). */
pretok *pretok_new(const char *name, char *err, size_t errlen);
/* The same, but the regexes that have hand-written splitters run through
 * PCRE2 too: tests compare the two. */
pretok *pretok_new_regex_only(const char *name, char *err, size_t errlen);
void pretok_free(pretok *pt);
const char *pretok_name(const pretok *pt);
unsigned pretok_flags(const pretok *pt);
/* NULL-terminated list of every supported name (for messages and tests). */
const char *const *pretok_names(void);

/* Scratch space for one splitting thread.  Zero-initialise, reuse across
 * calls, release with pretok_work_free(). */
struct pretok_work {
	/* results of the last pretok_split() */
	const char *text;      /* UTF-8 the words index (llama.cpp's re-encoding
				  of the input: bad bytes became U+FFFD) */
	size_t text_len;
	uint32_t *words;       /* n_words pairs (byte offset, byte length) */
	size_t n_words;

	/* internal buffers */
	size_t cap_cpts, cap_u8, cap_wide;
	uint32_t *cpts, *off, *seg_a, *seg_b;
	uint8_t *flags;
	unsigned char *collapsed;
	char *u8, *wide;
	void *md, *mctx, *jit;  /* pcre2 match data, context, JIT stack */
};

void pretok_work_free(struct pretok_work *w);

enum { PRETOK_ERR_NOMEM = -1, PRETOK_ERR_LIMIT = -2 };

/* Splits text[0..len) (any bytes).  Returns 0, or with a message
 * PRETOK_ERR_NOMEM (out of memory) or PRETOK_ERR_LIMIT (text over 1 GiB, or
 * the regex engine hit a limit). */
int pretok_split(const pretok *pt, struct pretok_work *w, const char *text, size_t len,
		 char *err, size_t errlen);

#endif
