/*
 * tokenizer.h - text <-> token ids for GGUF models, identical to llama.cpp.
 *
 * A tokenizer is built from the tokenizer.ggml.* metadata of a GGUF file:
 *   'llama' (SentencePiece BPE: score-ordered merges over the whole text,
 *           spaces as U+2581, byte fallback <0xNN>) - llama 2, mistral,
 *           phi-3, gemma;
 *   'gpt2'  (byte-level BPE: ranked merges inside the words that the
 *           pre-tokenizer named by tokenizer.ggml.pre cuts) - gpt-2, llama 3,
 *           qwen, smollm, deepseek, falcon, ...
 *   'gemma4' (SentencePiece-style BPE: spaces become U+2581, ranked merges
 *           over raw UTF-8 characters within newline-separated runs, byte
 *           fallback <0xNN>, BOS always added) - gemma 4.
 * Other tokenizer models, and pre-tokenizers we do not know, are refused at
 * load with a message naming them.
 *
 * Special tokens (control, user-defined, unknown) are matched in text as
 * llama.cpp matches them: user-defined tokens always, control and unknown
 * tokens only when tok_encode() is asked to parse them.
 *
 * Ownership: tok_load() copies everything it needs; the gguf_file may be
 * closed afterwards.  Strings returned by accessors live as long as the
 * tokenizer.
 *
 * Where llama.cpp's behaviour is unspecified or a crash, we choose: an
 * EOT/FIM token found by text is the lowest id among the candidates (its
 * hash-map order); overlapping special tokens of equal length go to the
 * leftmost; a code point past U+10FFFF in the text becomes U+FFFD (llama.cpp
 * throws); a missing byte token falls back to <unk>.  Detokenizing never
 * applies llama.cpp's clean_spaces pass (llama_token_to_piece does not).
 *
 * Thread rules: a tokenizer is immutable after tok_load(); any number of
 * threads may encode, look up and decode with it at the same time.
 * tok_free() must not race with them.  A tok_decoder belongs to one thread
 * at a time.  Nothing here prints or exits.
 */
#ifndef TTYCHAT_TOKENIZER_H
#define TTYCHAT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct tokenizer tokenizer;

/* Return codes of the calls below that return int. */
enum tok_status {
	TOK_OK = 0,
	TOK_ERR_NOMEM = -1,   /* out of memory */
	TOK_ERR_INPUT = -2,   /* input too large or an id out of range */
	TOK_ERR_VOCAB = -3,   /* the vocabulary cannot encode the text (no byte
				 token and no unknown token to fall back to) */
	TOK_ERR_REGEX = -4,   /* the pre-tokenizer's regex engine gave up */
};

enum tok_model_kind {
	TOK_MODEL_SPM = 1,    /* tokenizer.ggml.model = "llama" */
	TOK_MODEL_BPE = 2,    /* tokenizer.ggml.model = "gpt2" or "gemma4" */
};

/* Token attributes (a bit set, llama.cpp's llama_token_attr). */
enum tok_attr {
	TOK_ATTR_UNDEFINED = 0,
	TOK_ATTR_UNKNOWN = 1 << 0,
	TOK_ATTR_UNUSED = 1 << 1,
	TOK_ATTR_NORMAL = 1 << 2,
	TOK_ATTR_CONTROL = 1 << 3,
	TOK_ATTR_USER_DEFINED = 1 << 4,
	TOK_ATTR_BYTE = 1 << 5,
	TOK_ATTR_LSTRIP = 1 << 7,   /* swallows whitespace on its left */
	TOK_ATTR_RSTRIP = 1 << 8,   /* swallows whitespace on its right */
};

/* Well-known token roles; tok_special() returns -1 where the vocab has none. */
enum tok_role {
	TOK_BOS, TOK_EOS, TOK_EOT, TOK_EOM, TOK_UNK, TOK_SEP, TOK_PAD, TOK_MASK,
	TOK_FIM_PRE, TOK_FIM_SUF, TOK_FIM_MID, TOK_FIM_PAD, TOK_FIM_REP, TOK_FIM_SEP,
	TOK_ROLE_COUNT
};

struct tok_load_opts {
	/* Use this pre-tokenizer instead of tokenizer.ggml.pre (NULL: the
	 * file's).  Lets tests run every pre-tokenizer over one vocabulary. */
	const char *pre;
};

/* Builds the tokenizer of GGUF file F.  Returns NULL with a one-line
 * message in err (always NUL-terminated when errlen > 0) when metadata is
 * missing or malformed, the tokenizer model or the pre-tokenizer is
 * unknown, or memory runs out; errno is then ENOMEM when memory ran out,
 * else EINVAL. */
tokenizer *tok_load(const gguf_file *f, char *err, size_t errlen);
/* The same with options (OPTS may be NULL). */
tokenizer *tok_load_opts(const gguf_file *f, const struct tok_load_opts *opts, char *err, size_t errlen);
void tok_free(tokenizer *tk);

/* ---- vocabulary ---- */
uint32_t tok_n_vocab(const tokenizer *tk);  /* ids are 0 .. n_vocab-1 */
enum tok_model_kind tok_model(const tokenizer *tk);
const char *tok_pre_name(const tokenizer *tk);      /* "" for SPM */
/* Id of a role, or -1 where the vocab has none. */
int32_t tok_special(const tokenizer *tk, enum tok_role role);
int32_t tok_bos(const tokenizer *tk);
int32_t tok_eos(const tokenizer *tk);
int32_t tok_eot(const tokenizer *tk);
bool tok_add_bos(const tokenizer *tk);              /* tokenizer.ggml.add_bos_token and defaults */
bool tok_add_eos(const tokenizer *tk);
bool tok_add_space_prefix(const tokenizer *tk);     /* SPM: a space before the text */
/* Attributes of ID (0 when ID is out of range). */
uint32_t tok_attr(const tokenizer *tk, int32_t id);
bool tok_is_control(const tokenizer *tk, int32_t id);  /* control or unknown */
/* End of generation: EOS, EOT, EOM and tokens llama.cpp treats the same way
 * by their text (<|im_end|>, <end_of_turn>, <|eot_id|>, <|endoftext|>, ...). */
bool tok_is_eog(const tokenizer *tk, int32_t id);
float tok_score(const tokenizer *tk, int32_t id);
/* The token's text as stored in the vocabulary (with its U+2581 or GPT-2
 * byte symbols), not NUL-terminated; NULL when ID is out of range. */
const char *tok_text(const tokenizer *tk, int32_t id, size_t *len);
/* The bytes ID stands for when detokenized, control tokens rendered (their
 * text); a byte token is its byte, so a piece may be invalid UTF-8 on its
 * own.  Not NUL-terminated; NULL when ID is out of range.  llama.cpp's
 * token_to_piece(special = true). */
const char *tok_piece(const tokenizer *tk, int32_t id, size_t *len);
/* Id of the token whose text is exactly text[0..len) (special tokens such as
 * "<|im_start|>" included), or -1. */
int32_t tok_find(const tokenizer *tk, const char *text, size_t len);

/* ---- encoding ---- */

/* Tokenizes text[0..len) (any bytes) as llama_tokenize() does, appending
 * the ids to the caller-growable array *ids (capacity *cap, the first *n
 * entries kept; *ids may be NULL with *cap 0; it is realloc'd as needed and
 * stays the caller's to free).  ADD_BOS puts the BOS token first (if the
 * vocab has one; tok_add_bos() says whether the model wants it, and callers
 * that want llama.cpp's add_special also append tok_eos() when
 * tok_add_eos()).  PARSE_SPECIAL recognises control tokens such as
 * <|im_start|> in the text; user-defined tokens are recognised always.
 * Returns TOK_OK and the new count in *n, or a negative tok_status with *n
 * unchanged (tok_strerror() names it). */
int tok_encode(const tokenizer *tk, const char *text, size_t len, bool add_bos, bool parse_special,
	       int32_t **ids, size_t *n, size_t *cap);
const char *tok_strerror(int status);

/* ---- streaming decoding ---- */

typedef struct tok_decoder tok_decoder;

enum {
	TOK_DECODE_SPECIAL = 1 << 0,      /* render control tokens (default: hidden) */
	TOK_DECODE_STRIP_SPACE = 1 << 1,  /* drop one leading space of the text
					     (undoes an SPM space prefix) */
};

/* A decoder turns ids into text one at a time, like printing each piece as
 * it is generated, but what it returns is always valid UTF-8: the start of
 * a character split across tokens is held back until the character is
 * complete, and every invalid sequence becomes U+FFFD (one per maximal
 * invalid subpart).  The tokenizer must outlive it.  NULL when out of
 * memory. */
tok_decoder *tok_decoder_new(const tokenizer *tk);
void tok_decoder_free(tok_decoder *d);
/* TOK_DECODE_* flags for what follows (default 0). */
void tok_decoder_options(tok_decoder *d, unsigned flags);
/* Feeds ID and writes the text it completes into buf (size bytes; at most
 * size are written, never part of a character): returns the count.  Text
 * that does not fit stays queued and comes out first on the next call, so
 * nothing is lost with a small buffer; 64 bytes or more keeps the queue
 * empty for ordinary vocabularies.  An id out of range adds nothing. */
size_t tok_decoder_feed(tok_decoder *d, int32_t id, char *buf, size_t size);
/* Ends the stream: a held-back incomplete character comes out as U+FFFD.
 * Writes queued text into buf as tok_decoder_feed() does and returns the
 * count; call again until it returns 0 if the buffer may be smaller than
 * what is queued.  The decoder is then ready for a new stream. */
size_t tok_decoder_flush(tok_decoder *d, char *buf, size_t size);
/* Drops held-back and queued text and starts a new stream. */
void tok_decoder_reset(tok_decoder *d);
/* True once text was lost because the queue could not grow (out of
 * memory); tok_decoder_reset() clears it. */
bool tok_decoder_nomem(const tok_decoder *d);

#endif
