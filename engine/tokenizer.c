/*
 * tokenizer.c - GGUF vocabularies, encoding and streaming decoding, made to
 * give the same ids as llama.cpp (src/llama-vocab.cpp) for the same text.
 *
 * Load: every token text goes into one arena and one open-addressing hash
 * table of interned strings (a duplicate text maps to its last id, as in
 * llama.cpp).  For byte-level BPE the merges are interned too, and each
 * merge becomes an entry (left id, right id) -> (rank, result id) in a hash
 * table keyed by the pair, so merging never hashes or compares strings.
 * Token attributes are then adjusted exactly as llama.cpp adjusts them by
 * token text (end-of-generation tokens become control tokens, and so on),
 * and the detokenized piece of every token is computed once.
 *
 * Encode: special tokens are cut out first (tokenizer_st_partition in
 * llama.cpp: longest tokens first, each one's occurrences left to right;
 * here one pass over the text with a trie finds where special tokens start,
 * and a sweep over the token lengths, longest first, claims them in the
 * same order).  The raw text between them goes to SentencePiece BPE
 * (symbols are UTF-8 characters; the best-scored adjacent pair whose
 * concatenation is a token merges first; the text is cut into chunks
 * before word starts that no token spans, which changes nothing but keeps
 * the work local) or to the pre-tokenizer and byte-level BPE (the
 * lowest-ranked pair inside each word merges first).  Small chunks and
 * words scan for the best pair, large ones use a heap; both pick exactly
 * what llama.cpp's priority queue picks.  All scratch memory belongs to one
 * call and is reused from word to word.
 *
 * Decode: pieces are looked up; the decoder object validates UTF-8 across
 * token boundaries.
 */
#include "tokenizer.h"

#include <inttypes.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "pretok.h"
#include "unicode.h"

#define ATTR_EOG (1u << 16)   /* internal: in the end-of-generation set */

/* ---- hashing and interned strings ---- */

static uint64_t hash_bytes(const char *p, size_t n)
{
	const uint64_t k = 0x9E3779B97F4A7C15ull;
	uint64_t h = 0x243F6A8885A308D3ull ^ (n * k);
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		h = (h ^ v) * k;
		h ^= h >> 29;
		p += 8;
		n -= 8;
	}
	if (n) {
		uint64_t v = 0;
		memcpy(&v, p, n);
		h = (h ^ v ^ ((uint64_t)n << 56)) * k;
	}
	h ^= h >> 32;
	h *= 0xD6E8FEB86659FD93ull;
	h ^= h >> 32;
	return h;
}

struct strtab {
	char *arena;
	size_t arena_len, arena_cap;
	uint32_t *off, *len, *hash;   /* per string id */
	int32_t *token;               /* per string id: token with this text or -1 */
	size_t n, cap;
	uint64_t *slot;               /* hash << 32 | (string id + 1); 0 = empty */
	size_t mask;
};

static void strtab_free(struct strtab *t)
{
	free(t->arena);
	free(t->off);
	free(t->len);
	free(t->hash);
	free(t->token);
	free(t->slot);
}

static bool strtab_rehash(struct strtab *t, size_t nslots)
{
	uint64_t *slot = eng_calloc(nslots, sizeof *slot);
	if (!slot)
		return false;
	for (size_t i = 0; i < t->n; i++) {
		size_t j = t->hash[i] & (nslots - 1);
		while (slot[j])
			j = (j + 1) & (nslots - 1);
		slot[j] = (uint64_t)t->hash[i] << 32 | (i + 1);
	}
	free(t->slot);
	t->slot = slot;
	t->mask = nslots - 1;
	return true;
}

static int64_t strtab_find_h(const struct strtab *t, const char *s, size_t n, uint32_t h)
{
	if (!t->slot)
		return -1;
	for (size_t j = h & t->mask;; j = (j + 1) & t->mask) {
		uint64_t e = t->slot[j];
		if (!e)
			return -1;
		if ((uint32_t)(e >> 32) != h)
			continue;
		uint32_t id = (uint32_t)e - 1;
		if (t->len[id] == n && memcmp(t->arena + t->off[id], s, n) == 0)
			return id;
	}
}

static inline int64_t strtab_find(const struct strtab *t, const char *s, size_t n)
{
	return strtab_find_h(t, s, n, (uint32_t)hash_bytes(s, n));
}

/* Id of s[0..n), added when new; -1 when out of memory or too big. */
static int64_t strtab_intern(struct strtab *t, const char *s, size_t n)
{
	uint32_t h = (uint32_t)hash_bytes(s, n);
	int64_t e = strtab_find_h(t, s, n, h);
	if (e >= 0)
		return e;
	if (t->n >= UINT32_MAX / 2 || n > UINT32_MAX - t->arena_len)
		return -1;
	if (t->n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 1024;
		uint32_t *a = eng_realloc(t->off, cap * sizeof *a);
		if (!a)
			return -1;
		t->off = a;
		if (!(a = eng_realloc(t->len, cap * sizeof *a)))
			return -1;
		t->len = a;
		if (!(a = eng_realloc(t->hash, cap * sizeof *a)))
			return -1;
		t->hash = a;
		int32_t *tk = eng_realloc(t->token, cap * sizeof *tk);
		if (!tk)
			return -1;
		t->token = tk;
		t->cap = cap;
	}
	if ((t->n + 1) * 2 > t->mask + 1 || !t->slot) {
		size_t ns = t->slot ? (t->mask + 1) * 2 : 2048;
		while (ns < (t->n + 1) * 2)
			ns *= 2;
		if (!strtab_rehash(t, ns))
			return -1;
	}
	if (t->arena_len + n + 1 > t->arena_cap) {
		size_t cap = t->arena_cap ? t->arena_cap : 65536;
		while (cap < t->arena_len + n + 1)
			cap *= 2;
		char *a = eng_realloc(t->arena, cap);
		if (!a)
			return -1;
		t->arena = a;
		t->arena_cap = cap;
	}
	memcpy(t->arena + t->arena_len, s, n);
	t->arena[t->arena_len + n] = 0;
	size_t id = t->n++;
	t->off[id] = (uint32_t)t->arena_len;
	t->len[id] = (uint32_t)n;
	t->hash[id] = h;
	t->token[id] = -1;
	t->arena_len += n + 1;
	size_t j = h & t->mask;
	while (t->slot[j])
		j = (j + 1) & t->mask;
	t->slot[j] = (uint64_t)h << 32 | (id + 1);
	return (int64_t)id;
}

/* ---- BPE merge pairs: (left string id, right string id) -> rank, result ---- */

struct pair_entry {
	uint64_t key;     /* left << 32 | right; UINT64_MAX = empty */
	int32_t rank;
	uint32_t result;  /* string id of left+right */
};

struct pairtab {
	struct pair_entry *e;
	size_t mask;
};

static inline size_t pair_slot(uint64_t key, size_t mask)
{
	uint64_t h = key * 0x9E3779B97F4A7C15ull;
	return (size_t)(h >> 32 ^ h) & mask;
}

static inline const struct pair_entry *pair_find(const struct pairtab *p, uint32_t l, uint32_t r)
{
	uint64_t key = (uint64_t)l << 32 | r;
	for (size_t j = pair_slot(key, p->mask);; j = (j + 1) & p->mask) {
		const struct pair_entry *e = &p->e[j];
		if (e->key == key)
			return e;
		if (e->key == UINT64_MAX)
			return NULL;
	}
}

/* ---- special-token trie ---- */

struct trie_node {
	int32_t child;     /* first child or -1 */
	int32_t sibling;   /* next sibling or -1 */
	int32_t tok[2];    /* token ending here: [0] without parse_special
			      (user-defined ones), [1] with it; -1 if none */
	int32_t up[2];     /* nearest ancestor with tok[k] >= 0, or -1: the
			      next shorter special token at the same place */
	uint32_t depth;    /* bytes from the root */
	unsigned char ch;
};

/* ---- the tokenizer ---- */

/* A token whose text has U+2581 at byte K > 0: it can join text across a
 * word start, so a word start where it occurs is no place to cut. */
struct spm_inner {
	uint32_t sid;
	uint32_t k;
};

struct token {
	uint32_t sid;        /* its text in strs */
	uint32_t piece_off;  /* detokenized bytes (special rendering) in pieces */
	uint32_t piece_len;
	uint32_t attr;       /* enum tok_attr | ATTR_EOG */
	float score;
};

struct tokenizer {
	enum tok_model_kind model;
	int32_t n_vocab;
	struct token *tok;
	struct strtab strs;
	char *pieces;
	size_t pieces_len;
	size_t max_piece;
	size_t max_token;             /* longest token text */
	int32_t role[TOK_ROLE_COUNT];
	bool add_bos, add_eos, add_space_prefix, ignore_merges, has_strip;
	bool spm_bpe;                 /* gemma4: BPE over U+2581-escaped UTF-8 */

	/* byte-level BPE */
	pretok *pre;
	struct pairtab pairs;
	int32_t byte_sid[256];        /* string id of the byte's symbol, or -1 */
	int32_t byte_fallback[256][2];/* tokens for a byte whose symbol is no token */
	char byte_enc[256][2];        /* the byte's symbol: 1 or 2 bytes of UTF-8 */
	uint8_t byte_enc_len[256];

	/* SentencePiece */
	int32_t byte_token[256];      /* <0xNN>, else the byte itself, else unk; -1 */
	struct spm_inner *inner;      /* tokens with a U+2581 after their start */
	size_t n_inner;
	bool spm_chunks;              /* false: too many such tokens to check */

	/* special tokens */
	struct trie_node *trie;
	size_t n_trie;
	int32_t root[256];            /* trie node for each first byte, or -1 */
	bool any_plain;               /* some special token matches without parse_special */
	uint32_t *lens[2];            /* distinct special token lengths, longest first */
	size_t n_lens[2];
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void tok_free(tokenizer *tk)
{
	if (!tk)
		return;
	free(tk->tok);
	strtab_free(&tk->strs);
	free(tk->pieces);
	pretok_free(tk->pre);
	free(tk->pairs.e);
	free(tk->trie);
	free(tk->lens[0]);
	free(tk->lens[1]);
	free(tk->inner);
	free(tk);
}

static bool reserve_n(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return true;
	if (need > SIZE_MAX / 2 / elem)
		return false;
	size_t n = *cap ? *cap : 16;
	while (n < need)
		n *= 2;
	void *q = eng_realloc(*p, n * elem);
	if (!q)
		return false;
	*p = q;
	*cap = n;
	return true;
}

/* ---- loading ---- */

static int32_t find_token(const tokenizer *tk, const char *s)
{
	int64_t sid = strtab_find(&tk->strs, s, strlen(s));
	return sid < 0 ? -1 : tk->strs.token[sid];
}

static const char *token_text(const tokenizer *tk, int32_t id, size_t *len)
{
	uint32_t sid = tk->tok[id].sid;
	*len = tk->strs.len[sid];
	return tk->strs.arena + tk->strs.off[sid];
}

static bool token_text_is(const tokenizer *tk, int32_t id, const char *s)
{
	size_t len;
	const char *t = token_text(tk, id, &len);
	return len == strlen(s) && memcmp(t, s, len) == 0;
}

static bool load_tokens(tokenizer *tk, const gguf_file *f, char *err, size_t errlen)
{
	uint64_t n;
	int64_t key = gguf_find_key(f, "tokenizer.ggml.tokens");
	if (key < 0 || !gguf_get_arr_str_n(f, "tokenizer.ggml.tokens", &n)) {
		seterr(err, errlen, "no vocabulary: tokenizer.ggml.tokens is %s",
		       key < 0 ? "missing" : "not an array of strings");
		return false;
	}
	if (n == 0 || n > INT32_MAX / 2) {
		seterr(err, errlen, "tokenizer.ggml.tokens: bad token count %llu", (unsigned long long)n);
		return false;
	}
	tk->n_vocab = (int32_t)n;

	const void *scores = NULL;
	bool int_scores = false;
	uint64_t ns;
	if (gguf_find_key(f, "tokenizer.ggml.scores") >= 0) {
		if (gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, &ns, &scores)) {
			int_scores = false;
		} else if (gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_VT_INT32, &ns, &scores)) {
			int_scores = true;
		} else {
			seterr(err, errlen, "tokenizer.ggml.scores: not an array of float32 or int32");
			return false;
		}
		if (ns < n) {
			seterr(err, errlen, "tokenizer.ggml.scores: %llu scores for %llu tokens",
			       (unsigned long long)ns, (unsigned long long)n);
			return false;
		}
	}
	const void *types = NULL;
	uint64_t nt;
	if (gguf_find_key(f, "tokenizer.ggml.token_type") >= 0) {
		if (!gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_VT_INT32, &nt, &types)) {
			seterr(err, errlen, "tokenizer.ggml.token_type: not an array of int32");
			return false;
		}
		if (nt < n) {
			seterr(err, errlen, "tokenizer.ggml.token_type: %llu types for %llu tokens",
			       (unsigned long long)nt, (unsigned long long)n);
			return false;
		}
	}

	tk->tok = eng_calloc(n, sizeof *tk->tok);
	if (!tk->tok)
		goto nomem;
	for (uint64_t i = 0; i < n; i++) {
		struct gguf_str s = gguf_arr_str_at(f, key, i);
		char empty[32];
		const char *p = s.ptr;
		size_t len = (size_t)s.len;
		if (len == 0) {
			/* llama.cpp renames empty tokens so that they stay distinct */
			len = (size_t)snprintf(empty, sizeof empty, "[EMPTY_%llu]", (unsigned long long)i);
			p = empty;
		}
		int64_t sid = strtab_intern(&tk->strs, p, len);
		if (sid < 0)
			goto nomem;
		tk->strs.token[sid] = (int32_t)i;  /* a repeated text maps to its last id */
		if (len > tk->max_token)
			tk->max_token = len;
		struct token *t = &tk->tok[i];
		t->sid = (uint32_t)sid;
		if (scores) {
			if (int_scores) {
				int32_t v;
				memcpy(&v, (const char *)scores + 4 * i, 4);
				t->score = (float)v;
			} else {
				memcpy(&t->score, (const char *)scores + 4 * i, 4);
			}
		}
		t->attr = TOK_ATTR_NORMAL;
		if (types) {
			int32_t ty;
			memcpy(&ty, (const char *)types + 4 * i, 4);
			switch (ty) {
			case 1: t->attr = TOK_ATTR_NORMAL; break;
			case 2: t->attr = TOK_ATTR_UNKNOWN; break;
			case 3: t->attr = TOK_ATTR_CONTROL; break;
			case 4: t->attr = TOK_ATTR_USER_DEFINED; break;
			case 5: t->attr = TOK_ATTR_UNUSED; break;
			case 6: t->attr = TOK_ATTR_BYTE; break;
			default: t->attr = TOK_ATTR_UNDEFINED; break;
			}
		}
	}
	return true;
nomem:
	seterr(err, errlen, "out of memory loading %llu tokens", (unsigned long long)n);
	errno = ENOMEM;
	return false;
}

/* GPT-2's reversible map from bytes to printable code points: printable
 * Latin-1 stays, the other 68 bytes go to U+0100.. in byte order. */
static void gpt2_byte_map(uint32_t map[256])
{
	uint32_t n = 0;
	for (unsigned b = 0; b < 256; b++) {
		bool keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
		map[b] = keep ? b : 256 + n++;
	}
}

static bool load_merges(tokenizer *tk, const gguf_file *f, char *err, size_t errlen)
{
	uint64_t n;
	int64_t key = gguf_find_key(f, "tokenizer.ggml.merges");
	if (key < 0 || !gguf_get_arr_str_n(f, "tokenizer.ggml.merges", &n)) {
		seterr(err, errlen, "tokenizer.ggml.merges is %s (a 'gpt2' vocabulary needs it)",
		       key < 0 ? "missing" : "not an array of strings");
		return false;
	}
	if (n > INT32_MAX / 4) {
		seterr(err, errlen, "tokenizer.ggml.merges: too many merges (%llu)", (unsigned long long)n);
		return false;
	}
	size_t slots = 1024;
	while (slots < 2 * n)
		slots *= 2;
	tk->pairs.e = eng_malloc(slots * sizeof *tk->pairs.e);
	if (!tk->pairs.e)
		goto nomem;
	tk->pairs.mask = slots - 1;
	for (size_t i = 0; i < slots; i++)
		tk->pairs.e[i].key = UINT64_MAX;

	char *buf = NULL;
	size_t cap = 0;
	for (uint64_t i = 0; i < n; i++) {
		struct gguf_str s = gguf_arr_str_at(f, key, i);
		const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', (size_t)s.len - 1) : NULL;
		if (!sp)
			continue;  /* llama.cpp files it under ("", ""): never matches */
		size_t l1 = (size_t)(sp - s.ptr), l2 = (size_t)s.len - l1 - 1;
		if (l1 + l2 > cap) {
			cap = 2 * (l1 + l2) + 16;
			char *nb = eng_realloc(buf, cap);
			if (!nb) {
				free(buf);
				goto nomem;
			}
			buf = nb;
		}
		memcpy(buf, s.ptr, l1);
		memcpy(buf + l1, sp + 1, l2);
		int64_t a = strtab_intern(&tk->strs, s.ptr, l1);
		int64_t b = a < 0 ? -1 : strtab_intern(&tk->strs, sp + 1, l2);
		int64_t r = b < 0 ? -1 : strtab_intern(&tk->strs, buf, l1 + l2);
		if (r < 0) {
			free(buf);
			goto nomem;
		}
		uint64_t k = (uint64_t)a << 32 | (uint64_t)b;
		size_t j = pair_slot(k, tk->pairs.mask);
		while (tk->pairs.e[j].key != UINT64_MAX && tk->pairs.e[j].key != k)
			j = (j + 1) & tk->pairs.mask;
		if (tk->pairs.e[j].key == k)
			continue;  /* the first rank of a repeated merge wins */
		tk->pairs.e[j].key = k;
		tk->pairs.e[j].rank = (int32_t)i;
		tk->pairs.e[j].result = (uint32_t)r;
	}
	free(buf);

	uint32_t map[256];
	gpt2_byte_map(map);
	for (unsigned b = 0; b < 256; b++) {
		char enc[4];
		size_t l = unicode_encode(map[b], enc);
		memcpy(tk->byte_enc[b], enc, l);
		tk->byte_enc_len[b] = (uint8_t)l;
		int64_t sid = strtab_find(&tk->strs, enc, l);
		tk->byte_sid[b] = sid < 0 ? -1 : (int32_t)sid;
		for (size_t j = 0; j < 2; j++) {
			int64_t s1 = j < l ? strtab_find(&tk->strs, enc + j, 1) : -1;
			tk->byte_fallback[b][j] = s1 < 0 ? -1 : tk->strs.token[s1];
		}
	}
	return true;
nomem:
	seterr(err, errlen, "out of memory loading %llu merges", (unsigned long long)n);
	errno = ENOMEM;
	return false;
}

/* The (token, offset) pairs of U+2581 inside token texts (not at 0). */
static bool load_spm_inner(tokenizer *tk)
{
	size_t cap = 0;
	tk->spm_chunks = true;
	for (int32_t id = 0; id < tk->n_vocab; id++) {
		size_t len;
		const char *t = token_text(tk, id, &len);
		if (tk->strs.token[tk->tok[id].sid] != id)
			continue;  /* a repeated text: its last id stands for it */
		for (size_t k = 1; k + 3 <= len; k++) {
			if (memcmp(t + k, "\xe2\x96\x81", 3) != 0)
				continue;
			if (tk->n_inner == 4096) {
				tk->spm_chunks = false;  /* not worth checking: never cut */
				return true;
			}
			if (!reserve_n((void **)&tk->inner, &cap, tk->n_inner + 1, sizeof *tk->inner))
				return false;
			tk->inner[tk->n_inner++] = (struct spm_inner){tk->tok[id].sid, (uint32_t)k};
		}
	}
	return true;
}

static void load_spm_bytes(tokenizer *tk)
{
	static const char hex[] = "0123456789ABCDEF";
	for (unsigned b = 0; b < 256; b++) {
		char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
		int32_t id = find_token(tk, name);
		if (id < 0) {
			char one = (char)b;
			int64_t sid = strtab_find(&tk->strs, &one, 1);
			id = sid < 0 ? -1 : tk->strs.token[sid];
		}
		tk->byte_token[b] = id >= 0 ? id : tk->role[TOK_UNK];
	}
}

/* SentencePiece-style BPE falls back to <0xNN> only (no byte symbols). */
static void load_spbpe_bytes(tokenizer *tk)
{
	static const char hex[] = "0123456789ABCDEF";
	for (unsigned b = 0; b < 256; b++) {
		char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
		tk->byte_fallback[b][0] = find_token(tk, name);
		tk->byte_fallback[b][1] = -1;
	}
}

static const char *const role_keys[TOK_ROLE_COUNT] = {
	[TOK_BOS] = "tokenizer.ggml.bos_token_id",
	[TOK_EOS] = "tokenizer.ggml.eos_token_id",
	[TOK_EOT] = "tokenizer.ggml.eot_token_id",
	[TOK_EOM] = "tokenizer.ggml.eom_token_id",
	[TOK_UNK] = "tokenizer.ggml.unknown_token_id",
	[TOK_SEP] = "tokenizer.ggml.seperator_token_id",  /* sic, as written by gguf-py */
	[TOK_PAD] = "tokenizer.ggml.padding_token_id",
	[TOK_MASK] = "tokenizer.ggml.mask_token_id",
	[TOK_FIM_PRE] = "tokenizer.ggml.fim_pre_token_id",
	[TOK_FIM_SUF] = "tokenizer.ggml.fim_suf_token_id",
	[TOK_FIM_MID] = "tokenizer.ggml.fim_mid_token_id",
	[TOK_FIM_PAD] = "tokenizer.ggml.fim_pad_token_id",
	[TOK_FIM_REP] = "tokenizer.ggml.fim_rep_token_id",
	[TOK_FIM_SEP] = "tokenizer.ggml.fim_sep_token_id",
};

/* Reads role R's id from KEY.  An id outside the vocabulary is refused
 * for the roles the engine acts on (BOS, EOS, EOT, UNK, PAD: false, with
 * the message in ERR) and ignored for the others, as llama.cpp does. */
static bool read_role(tokenizer *tk, const gguf_file *f, enum tok_role r, const char *key, char *err, size_t errlen)
{
	uint64_t v;
	if (!gguf_get_uint(f, key, &v))
		return true;
	if (v < (uint64_t)tk->n_vocab) {
		tk->role[r] = (int32_t)v;
		return true;
	}
	if (r == TOK_BOS || r == TOK_EOS || r == TOK_EOT || r == TOK_UNK || r == TOK_PAD) {
		seterr(err, errlen, "%s is %" PRIu64 ", outside the vocabulary (%" PRId32 " tokens)", key, v,
		       tk->n_vocab);
		return false;
	}
	return true;
}

/* Roles that llama.cpp finds by token text when the file names none; the
 * token found becomes a control token.  NULL-terminated lists. */
static const char *const eot_texts[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
	"<EOT>", "_<EOT>", "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
	"<end_of_utterance>", NULL};
static const char *const eom_texts[] = {"<|eom_id|>", NULL};
static const char *const fim_pre_texts[] = {
	"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
	"<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
static const char *const fim_suf_texts[] = {
	"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>",
	"<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
static const char *const fim_mid_texts[] = {
	"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
	"<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL};
static const char *const fim_pad_texts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
static const char *const fim_rep_texts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL};
static const char *const fim_sep_texts[] = {"<|file_sep|>", NULL};

/* Tokens that end generation, by text. */
static const char *const eog_texts[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
	"<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
	"<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
	"<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[", NULL};

static void detect_role(tokenizer *tk, enum tok_role r, const char *const *texts)
{
	if (tk->role[r] >= 0)
		return;
	/* llama.cpp takes the first candidate in its hash map's order, which
	 * is no order; we take the lowest id (the same for the real models) */
	int32_t best = -1;
	for (size_t i = 0; texts[i]; i++) {
		int32_t id = find_token(tk, texts[i]);
		if (id >= 0 && (best < 0 || id < best))
			best = id;
	}
	if (best >= 0) {
		tk->role[r] = best;
		tk->tok[best].attr |= TOK_ATTR_CONTROL;
	}
}

/* Token attributes and end-of-generation set, adjusted by text exactly as
 * llama.cpp's llama_vocab::impl::load() does after reading the file. */
static void adjust_attrs(tokenizer *tk)
{
	detect_role(tk, TOK_EOT, eot_texts);
	detect_role(tk, TOK_EOM, eom_texts);
	detect_role(tk, TOK_FIM_PRE, fim_pre_texts);
	detect_role(tk, TOK_FIM_SUF, fim_suf_texts);
	detect_role(tk, TOK_FIM_MID, fim_mid_texts);
	detect_role(tk, TOK_FIM_PAD, fim_pad_texts);
	detect_role(tk, TOK_FIM_REP, fim_rep_texts);
	detect_role(tk, TOK_FIM_SEP, fim_sep_texts);

	/* control tokens named "unused" are unused */
	for (int32_t id = 0; id < tk->n_vocab; id++) {
		struct token *t = &tk->tok[id];
		if (tk->strs.token[t->sid] != id || !(t->attr & TOK_ATTR_CONTROL))
			continue;
		if (strstr(tk->strs.arena + tk->strs.off[t->sid], "unused"))
			t->attr |= TOK_ATTR_UNUSED;
	}

	static const enum tok_role eog_roles1[] = {TOK_FIM_PAD, TOK_FIM_REP, TOK_FIM_SEP};
	for (size_t i = 0; i < 3; i++)
		if (tk->role[eog_roles1[i]] >= 0)
			tk->tok[tk->role[eog_roles1[i]]].attr |= ATTR_EOG;
	for (size_t i = 0; eog_texts[i]; i++) {
		int32_t id = find_token(tk, eog_texts[i]);
		if (id >= 0)
			tk->tok[id].attr |= ATTR_EOG | TOK_ATTR_CONTROL;
	}
	/* gpt-oss: these structure tokens are always rendered */
	static const char *const harmony[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};
	for (size_t i = 0; i < 4; i++) {
		int32_t id = find_token(tk, harmony[i]);
		if (id >= 0)
			tk->tok[id].attr = TOK_ATTR_USER_DEFINED | (tk->tok[id].attr & ATTR_EOG);
	}
	static const enum tok_role eog_roles2[] = {TOK_EOS, TOK_EOT, TOK_EOM};
	for (size_t i = 0; i < 3; i++)
		if (tk->role[eog_roles2[i]] >= 0)
			tk->tok[tk->role[eog_roles2[i]]].attr |= ATTR_EOG;

	/* o200k_harmony / solar-open: <|end|> is not the end when <|return|>
	 * and <|call|> (or <|calls|> and <|flush|>) are there */
	bool has_return = false, has_call = false, has_flush = false;
	int32_t end_id = -1;
	for (int32_t id = 0; id < tk->n_vocab; id++) {
		if (!(tk->tok[id].attr & ATTR_EOG))
			continue;
		if (token_text_is(tk, id, "<|return|>"))
			has_return = true;
		else if (token_text_is(tk, id, "<|call|>") || token_text_is(tk, id, "<|calls|>"))
			has_call = true;
		else if (token_text_is(tk, id, "<|flush|>"))
			has_flush = true;
		else if (token_text_is(tk, id, "<|end|>"))
			end_id = id;
	}
	if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush)))
		tk->tok[end_id].attr = TOK_ATTR_USER_DEFINED;

	/* gemma4 and plamo: </s> is an ordinary token */
	bool normal_s = false;
	int32_t s_id = -1;
	for (int32_t id = 0; id < tk->n_vocab; id++) {
		if (!(tk->tok[id].attr & ATTR_EOG))
			continue;
		if (token_text_is(tk, id, "<|tool_response>") || token_text_is(tk, id, "<|plamo:eos|>"))
			normal_s = true;
		else if (token_text_is(tk, id, "</s>"))
			s_id = id;
	}
	if (normal_s && s_id >= 0)
		tk->tok[s_id].attr = TOK_ATTR_NORMAL;
}

#define PIECE_MAX ((size_t)1 << 20)

/* Room for EXTRA more bytes in the piece buffer. */
static bool piece_room(char **out, size_t *cap, size_t len, size_t extra)
{
	if (extra > UINT32_MAX - len)
		return false;  /* offsets are 32-bit */
	if (len + extra <= *cap)
		return true;
	size_t n = *cap;
	while (n < len + extra)
		n *= 2;
	char *p = eng_realloc(*out, n);
	if (!p)
		return false;
	*out = p;
	*cap = n;
	return true;
}

/* SPM and BPE pieces, as llama.cpp's token_to_piece(special = true). */
static bool make_pieces(tokenizer *tk)
{
	size_t cap = tk->strs.arena_len + 16, len = 0;
	int16_t unmap[256 + 68];  /* GPT-2 symbol code point -> byte */
	uint32_t map[256];
	gpt2_byte_map(map);
	memset(unmap, 0xff, sizeof unmap);
	for (unsigned b = 0; b < 256; b++)
		unmap[map[b]] = (int16_t)b;
	char *out = eng_malloc(cap);
	if (!out)
		return false;
	for (int32_t id = 0; id < tk->n_vocab; id++) {
		struct token *t = &tk->tok[id];
		size_t tl;
		const char *text = token_text(tk, id, &tl);
		size_t start = len;
		uint32_t a = t->attr;
		if (!piece_room(&out, &cap, len, tl + 1))
			goto fail;
		if (a & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) {
			memcpy(out + len, text, tl);
			len += tl;
		} else if ((a & TOK_ATTR_NORMAL) && (tk->model == TOK_MODEL_SPM || tk->spm_bpe)) {
			for (size_t i = 0; i < tl;) {
				if (i + 3 <= tl && memcmp(text + i, "\xe2\x96\x81", 3) == 0) {
					out[len++] = ' ';
					i += 3;
				} else {
					out[len++] = text[i++];
				}
			}
		} else if (a & TOK_ATTR_NORMAL) {
			for (size_t i = 0; i < tl;) {
				size_t used;
				uint32_t c = unicode_decode_lenient((const unsigned char *)text + i, tl - i, &used);
				i += used;
				int b = c < 256 + 68 ? unmap[c] : -1;
				if (b >= 0) {
					out[len++] = (char)b;
					continue;
				}
				/* llama.cpp's llama_decode_text() marks a code point
				 * that is no byte symbol like this (repeating the whole
				 * text each time: a hostile token could make that
				 * quadratic, so a piece stops growing at PIECE_MAX) */
				char enc[4];
				size_t el = unicode_encode(c, enc);
				if (len - start + 12 + 2 * el + tl + 1 > PIECE_MAX)
					break;
				if (!piece_room(&out, &cap, len, 12 + 2 * el + tl + 1 + tl))
					goto fail;
				memcpy(out + len, "[UNK_BYTE_0x", 12);
				len += 12;
				for (size_t k = 0; k < el; k++) {
					static const char hex[] = "0123456789abcdef";
					out[len++] = hex[(unsigned char)enc[k] >> 4];
					out[len++] = hex[(unsigned char)enc[k] & 15];
				}
				memcpy(out + len, text, tl);
				len += tl;
				out[len++] = ']';
			}
		} else if ((a & TOK_ATTR_BYTE) && tl >= 3) {
			/* "<0xNN>": strtol over the two characters after "<0x" */
			char hx[3] = {tl > 3 ? text[3] : 0, tl > 4 ? text[4] : 0, 0};
			out[len++] = (char)strtol(hx, NULL, 16);
		}
		t->piece_off = (uint32_t)start;
		t->piece_len = (uint32_t)(len - start);
		if (len - start > tk->max_piece)
			tk->max_piece = len - start;
	}
	tk->pieces = out;
	tk->pieces_len = len;
	return true;
fail:
	free(out);
	return false;
}

static int32_t trie_child(const tokenizer *tk, int32_t node, unsigned char c)
{
	for (int32_t k = tk->trie[node].child; k >= 0; k = tk->trie[k].sibling)
		if (tk->trie[k].ch == c)
			return k;
	return -1;
}

static int cmp_desc(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x > y ? -1 : x < y;
}

/* The trie of special tokens (control, user-defined, unknown).  Where two
 * such tokens share a text the lower id is used. */
static bool build_trie(tokenizer *tk)
{
	size_t cap = 1024;
	for (int i = 0; i < 256; i++)
		tk->root[i] = -1;
	tk->trie = eng_malloc(cap * sizeof *tk->trie);
	if (!tk->trie)
		return false;
	int32_t *parent = NULL;
	size_t cap_parent = 0;
	for (int32_t id = 0; id < tk->n_vocab; id++) {
		uint32_t a = tk->tok[id].attr;
		if (!(a & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)))
			continue;
		bool plain = !(a & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN));
		size_t len;
		const unsigned char *s = (const unsigned char *)token_text(tk, id, &len);
		int32_t node = -1;
		for (size_t i = 0; i < len; i++) {
			int32_t next = node < 0 ? tk->root[s[i]] : trie_child(tk, node, s[i]);
			if (next < 0) {
				if (tk->n_trie == cap) {
					cap *= 2;
					struct trie_node *t = eng_realloc(tk->trie, cap * sizeof *t);
					if (!t)
						goto nomem;
					tk->trie = t;
				}
				if (!reserve_n((void **)&parent, &cap_parent, tk->n_trie + 1, sizeof *parent))
					goto nomem;
				next = (int32_t)tk->n_trie++;
				tk->trie[next] = (struct trie_node){-1, -1, {-1, -1}, {-1, -1}, (uint32_t)i + 1, s[i]};
				parent[next] = node;
				if (node < 0) {
					tk->root[s[i]] = next;
				} else {
					tk->trie[next].sibling = tk->trie[node].child;
					tk->trie[node].child = next;
				}
			}
			node = next;
		}
		if (tk->trie[node].tok[1] < 0)
			tk->trie[node].tok[1] = id;
		if (plain && tk->trie[node].tok[0] < 0) {
			tk->trie[node].tok[0] = id;
			tk->any_plain = true;
		}
	}
	/* a parent is always created before its children */
	uint32_t *lens[2] = {NULL, NULL};
	size_t n_lens[2] = {0, 0};
	for (size_t n = 0; n < tk->n_trie; n++) {
		int32_t p = parent[n];
		for (int k = 0; k < 2; k++) {
			tk->trie[n].up[k] = p < 0 ? -1 : tk->trie[p].tok[k] >= 0 ? p : tk->trie[p].up[k];
			if (tk->trie[n].tok[k] < 0)
				continue;
			size_t c = n_lens[k];
			if (!reserve_n((void **)&lens[k], &c, n_lens[k] + 1, sizeof *lens[k]))
				goto nomem2;
			lens[k][n_lens[k]++] = tk->trie[n].depth;
		}
	}
	for (int k = 0; k < 2; k++) {
		if (n_lens[k])
			qsort(lens[k], n_lens[k], sizeof *lens[k], cmp_desc);
		size_t u = 0;
		for (size_t i = 0; i < n_lens[k]; i++)
			if (!u || lens[k][u - 1] != lens[k][i])
				lens[k][u++] = lens[k][i];
		tk->lens[k] = lens[k];
		tk->n_lens[k] = u;
	}
	free(parent);
	return true;
nomem2:
	free(lens[0]);
	free(lens[1]);
nomem:
	free(parent);
	return false;
}

static void lower_ascii(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s += 32;
}

static bool copy_str(const gguf_file *f, const char *key, char *buf, size_t len)
{
	struct gguf_str s;
	buf[0] = 0;
	if (!gguf_get_str(f, key, &s))
		return false;
	size_t n = s.len < len - 1 ? (size_t)s.len : len - 1;
	memcpy(buf, s.ptr, n);
	buf[n] = 0;
	return true;
}

/* Per-model token attributes that GGUF files do not carry (llama.cpp sets
 * them by model name). */
static void name_attrs(tokenizer *tk, const gguf_file *f, const char *pre)
{
	char name[256], arch[64];
	copy_str(f, "general.name", name, sizeof name);
	copy_str(f, "general.architecture", arch, sizeof arch);
	lower_ascii(name);
	int32_t id;
	if (strstr(pre, "jina-v2-de") || strstr(pre, "jina-v2-es") || strstr(pre, "jina-v2-code") ||
	    strstr(arch, "nomic-bert-moe") || strstr(arch, "jina-bert-v3")) {
		if ((id = find_token(tk, "<mask>")) >= 0)
			tk->tok[id].attr |= TOK_ATTR_LSTRIP;
	} else if (strstr(name, "phi-3") || strstr(name, "phi3")) {
		for (id = 0; id < tk->n_vocab; id++)
			if (tk->tok[id].attr & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
				tk->tok[id].attr |= TOK_ATTR_RSTRIP;
		if ((id = find_token(tk, "</s>")) >= 0)
			tk->tok[id].attr |= TOK_ATTR_RSTRIP;
		static const char *const off[] = {"<unk>", "<s>", "<|endoftext|>"};
		for (size_t i = 0; i < 3; i++)
			if ((id = find_token(tk, off[i])) >= 0)
				tk->tok[id].attr &= ~(uint32_t)TOK_ATTR_RSTRIP;
	} else if (strstr(name, "modern-bert")) {
		if ((id = find_token(tk, "[MASK]")) >= 0)
			tk->tok[id].attr |= TOK_ATTR_LSTRIP;
	}
}

tokenizer *tok_load_opts(const gguf_file *f, const struct tok_load_opts *opts, char *err, size_t errlen)
{
	char model[64], pre[64];

	if (err && errlen)
		err[0] = 0;
	errno = 0;   /* the failures for want of memory set ENOMEM */
	if (!copy_str(f, "tokenizer.ggml.model", model, sizeof model)) {
		errno = EINVAL;
		seterr(err, errlen, "no tokenizer: tokenizer.ggml.model is missing");
		return NULL;
	}
	if (opts && opts->pre)
		snprintf(pre, sizeof pre, "%s", opts->pre);
	else
		copy_str(f, "tokenizer.ggml.pre", pre, sizeof pre);

	tokenizer *tk = eng_calloc(1, sizeof *tk);
	if (!tk) {
		seterr(err, errlen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	for (int i = 0; i < TOK_ROLE_COUNT; i++)
		tk->role[i] = -1;
	unsigned pflags = 0;
	if (strcmp(model, "llama") == 0) {
		tk->model = TOK_MODEL_SPM;
		tk->role[TOK_BOS] = 1;
		tk->role[TOK_EOS] = 2;
		tk->role[TOK_UNK] = 0;
		tk->add_bos = true;
		tk->add_space_prefix = true;
	} else if (strcmp(model, "gpt2") == 0 || strcmp(model, "gemma4") == 0) {
		tk->model = TOK_MODEL_BPE;
		if (strcmp(model, "gemma4") == 0)
			snprintf(pre, sizeof pre, "gemma4");  /* llama.cpp ignores the file's */
		else
			tk->role[TOK_BOS] = tk->role[TOK_EOS] = 11;
		tk->pre = pretok_new(pre, err, errlen);
		if (!tk->pre)
			goto fail;
		pflags = pretok_flags(tk->pre);
		tk->ignore_merges = pflags & PRETOK_IGNORE_MERGES;
		tk->add_bos = pflags & PRETOK_ADD_BOS;
		if (pflags & PRETOK_NO_BOS)
			tk->role[TOK_BOS] = -1;
		tk->spm_bpe = pflags & PRETOK_SPM_BPE;
	} else {
		seterr(err, errlen, "unsupported tokenizer model '%s' (tokenizer.ggml.model; "
		       "ttychat knows 'llama', 'gpt2' and 'gemma4')", model);
		goto fail;
	}

	if (!load_tokens(tk, f, err, errlen))
		goto fail;
	if (tk->model == TOK_MODEL_BPE && !load_merges(tk, f, err, errlen))
		goto fail;

	bool b;
	if (gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &b))
		tk->add_space_prefix = b;
	for (int i = 0; i < TOK_ROLE_COUNT; i++)
		if (tk->role[i] >= tk->n_vocab)
			tk->role[i] = -1;
	for (int i = 0; i < TOK_ROLE_COUNT; i++)
		if (!read_role(tk, f, (enum tok_role)i, role_keys[i], err, errlen))
			goto fail;
	read_role(tk, f, TOK_FIM_PRE, "tokenizer.ggml.prefix_token_id", err, errlen);
	read_role(tk, f, TOK_FIM_SUF, "tokenizer.ggml.suffix_token_id", err, errlen);
	read_role(tk, f, TOK_FIM_MID, "tokenizer.ggml.middle_token_id", err, errlen);
	if (gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b))
		tk->add_bos = b;
	if (gguf_get_bool(f, "tokenizer.ggml.add_eos_token", &b))
		tk->add_eos = b;
	if (tk->spm_bpe)
		tk->add_bos = true;  /* llama.cpp overrides a false add_bos_token for Gemma 4 */
	if (tk->spm_bpe)
		load_spbpe_bytes(tk);
	if (tk->model == TOK_MODEL_SPM) {
		load_spm_bytes(tk);
		if (!load_spm_inner(tk)) {
			seterr(err, errlen, "out of memory");
			errno = ENOMEM;
			goto fail;
		}
	}

	adjust_attrs(tk);
	if (!build_trie(tk) || !make_pieces(tk)) {
		seterr(err, errlen, "out of memory");
		errno = ENOMEM;
		goto fail;
	}
	name_attrs(tk, f, tk->pre ? pretok_name(tk->pre) : "");
	for (int32_t id = 0; id < tk->n_vocab; id++)
		if (tk->tok[id].attr & (TOK_ATTR_LSTRIP | TOK_ATTR_RSTRIP))
			tk->has_strip = true;
	return tk;
fail: {
	const int why = errno == ENOMEM ? ENOMEM : EINVAL;
	tok_free(tk);
	errno = why;
	return NULL;
}
}

tokenizer *tok_load(const gguf_file *f, char *err, size_t errlen)
{
	return tok_load_opts(f, NULL, err, errlen);
}

/* ---- accessors ---- */

uint32_t tok_n_vocab(const tokenizer *tk)
{
	return (uint32_t)tk->n_vocab;
}

enum tok_model_kind tok_model(const tokenizer *tk)
{
	return tk->model;
}

const char *tok_pre_name(const tokenizer *tk)
{
	return tk->pre ? pretok_name(tk->pre) : "";
}

int32_t tok_special(const tokenizer *tk, enum tok_role role)
{
	return (unsigned)role < TOK_ROLE_COUNT ? tk->role[role] : -1;
}

int32_t tok_bos(const tokenizer *tk)
{
	return tk->role[TOK_BOS];
}

int32_t tok_eos(const tokenizer *tk)
{
	return tk->role[TOK_EOS];
}

int32_t tok_eot(const tokenizer *tk)
{
	return tk->role[TOK_EOT];
}

bool tok_add_bos(const tokenizer *tk)
{
	return tk->add_bos;
}

bool tok_add_eos(const tokenizer *tk)
{
	return tk->add_eos;
}

bool tok_add_space_prefix(const tokenizer *tk)
{
	return tk->add_space_prefix;
}

static inline bool valid_id(const tokenizer *tk, int32_t id)
{
	return id >= 0 && id < tk->n_vocab;
}

uint32_t tok_attr(const tokenizer *tk, int32_t id)
{
	return valid_id(tk, id) ? tk->tok[id].attr & ~ATTR_EOG : 0;
}

bool tok_is_control(const tokenizer *tk, int32_t id)
{
	return valid_id(tk, id) && (tk->tok[id].attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN));
}

bool tok_is_eog(const tokenizer *tk, int32_t id)
{
	return valid_id(tk, id) && (tk->tok[id].attr & ATTR_EOG);
}

float tok_score(const tokenizer *tk, int32_t id)
{
	return valid_id(tk, id) ? tk->tok[id].score : 0.0f;
}

const char *tok_text(const tokenizer *tk, int32_t id, size_t *len)
{
	if (!valid_id(tk, id)) {
		*len = 0;
		return NULL;
	}
	return token_text(tk, id, len);
}

const char *tok_piece(const tokenizer *tk, int32_t id, size_t *len)
{
	if (!valid_id(tk, id)) {
		*len = 0;
		return NULL;
	}
	*len = tk->tok[id].piece_len;
	return tk->pieces + tk->tok[id].piece_off;
}

int32_t tok_find(const tokenizer *tk, const char *text, size_t len)
{
	int64_t sid = strtab_find(&tk->strs, text, len);
	return sid < 0 ? -1 : tk->strs.token[sid];
}

/* ---- encoding ---- */

struct sym {
	uint32_t start, n;  /* bytes of the working text */
	int32_t prev, next;
	int32_t sid;        /* BPE: interned text, -1 when not interned */
	/* small inputs: the pair this symbol starts with its next one */
	bool has_pair;
	float score;        /* SPM */
	int32_t rank;       /* BPE */
	uint32_t result;    /* BPE */
};

/* Up to this many symbols, merging scans for the best pair instead of
 * keeping a heap: the same choice (best score or rank, then leftmost, among
 * the adjacent pairs that are tokens) without the heap's cost. */
#define SCAN_MAX 48

struct bigram {
	uint64_t key;       /* smaller pops first: score or rank, then left */
	int32_t left, right;
	uint32_t size;
	uint32_t result;    /* BPE: string id after merging */
};

/* llama.cpp's orders as one integer: SPM wants the highest score, BPE the
 * lowest rank, both the leftmost pair on a tie. */
static inline uint64_t spm_key(float score, int32_t left)
{
	uint32_t u;
	if (score == 0.0f)
		score = 0.0f;  /* -0 and +0 tie, as in a float comparison */
	memcpy(&u, &score, 4);
	u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  /* ascending with score */
	return (uint64_t)~u << 32 | (uint32_t)left;
}

static inline uint64_t bpe_key(int32_t rank, int32_t left)
{
	return (uint64_t)(uint32_t)rank << 32 | (uint32_t)left;
}

struct hot {                  /* a text position where special tokens match */
	uint32_t pos;
	int32_t node;         /* trie node of the longest one not yet tried */
};

struct claim {
	uint32_t pos, len;
	int32_t tok;
};

struct enc_work {
	struct pretok_work pw;
	struct sym *sym;
	size_t cap_sym;
	struct bigram *heap;
	size_t cap_heap, n_heap;
	char *buf;
	size_t cap_buf;
	char *esc;             /* spm_bpe: the fragment with spaces escaped */
	size_t cap_esc;
	unsigned char *claimed;
	struct hot *hot;
	struct claim *claims;
	size_t n_hot, n_claims, cap_hot, cap_claims;
	int32_t *ids;          /* the output: n of cap used */
	size_t n, cap;
};

static void work_free(struct enc_work *w)
{
	pretok_work_free(&w->pw);
	free(w->sym);
	free(w->heap);
	free(w->buf);
	free(w->esc);
	free(w->claimed);
	free(w->hot);
	free(w->claims);
}

static inline bool emit(struct enc_work *w, int32_t id)
{
	if (w->n == w->cap && !reserve_n((void **)&w->ids, &w->cap, w->n + 1, sizeof *w->ids))
		return false;
	w->ids[w->n++] = id;
	return true;
}

/* Binary heap of bigrams, smallest key on top. */
static void heap_push(struct enc_work *w, const struct bigram *g)
{
	size_t i = w->n_heap++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (w->heap[p].key <= g->key)
			break;
		w->heap[i] = w->heap[p];
		i = p;
	}
	w->heap[i] = *g;
}

static struct bigram heap_pop(struct enc_work *w)
{
	struct bigram top = w->heap[0];
	struct bigram last = w->heap[--w->n_heap];
	size_t n = w->n_heap, i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		c += c + 1 < n && w->heap[c + 1].key < w->heap[c].key;
		if (w->heap[c].key >= last.key)
			break;
		w->heap[i] = w->heap[c];
		i = c;
	}
	if (n)
		w->heap[i] = last;
	return top;
}

/* -- SentencePiece -- */

static void spm_try(const tokenizer *tk, struct enc_work *w, int32_t l, int32_t r)
{
	if (l < 0 || r < 0)
		return;
	const struct sym *a = &w->sym[l], *b = &w->sym[r];
	if (a->n + b->n > tk->max_token)
		return;
	int64_t sid = strtab_find(&tk->strs, w->buf + a->start, a->n + b->n);
	if (sid < 0 || tk->strs.token[sid] < 0)
		return;
	struct bigram g = {spm_key(tk->tok[tk->strs.token[sid]].score, l), l, r, a->n + b->n, 0};
	heap_push(w, &g);
}

/* The pair symbol l starts, for the scanning merge. */
static void spm_pair(const tokenizer *tk, struct enc_work *w, int32_t l)
{
	struct sym *a = &w->sym[l];
	a->has_pair = false;
	if (a->next < 0)
		return;
	const struct sym *b = &w->sym[a->next];
	if (a->n + b->n > tk->max_token)
		return;
	int64_t sid = strtab_find(&tk->strs, w->buf + a->start, a->n + b->n);
	if (sid < 0 || tk->strs.token[sid] < 0)
		return;
	a->has_pair = true;
	a->score = tk->tok[tk->strs.token[sid]].score;
}

static void spm_merge_scan(const tokenizer *tk, struct enc_work *w, int32_t ns)
{
	for (int32_t i = 0; i < ns; i++)
		spm_pair(tk, w, i);
	for (;;) {
		int32_t best = -1;
		for (int32_t i = 0; i != -1; i = w->sym[i].next)
			if (w->sym[i].has_pair && (best < 0 || w->sym[i].score > w->sym[best].score))
				best = i;
		if (best < 0)
			return;
		struct sym *a = &w->sym[best], *b = &w->sym[a->next];
		a->n += b->n;
		b->n = 0;
		a->next = b->next;
		if (b->next >= 0)
			w->sym[b->next].prev = best;
		spm_pair(tk, w, best);
		if (a->prev >= 0)
			spm_pair(tk, w, a->prev);
	}
}

/* Merges w->sym[0..ns) (a chunk that no token spans out of) and emits. */
static int spm_chunk(const tokenizer *tk, struct enc_work *w, int32_t ns)
{
	if (ns == 0)
		return TOK_OK;
	w->sym[0].prev = -1;
	w->sym[ns - 1].next = -1;
	if (ns <= SCAN_MAX) {
		spm_merge_scan(tk, w, ns);
	} else {
		w->n_heap = 0;
		for (int32_t i = 1; i < ns; i++)
			spm_try(tk, w, i - 1, i);
		while (w->n_heap) {
			struct bigram g = heap_pop(w);
			struct sym *a = &w->sym[g.left], *b = &w->sym[g.right];
			if (a->n == 0 || b->n == 0 || a->n + b->n != g.size)
				continue;  /* stale */
			a->n += b->n;
			b->n = 0;
			a->next = b->next;
			if (b->next >= 0)
				w->sym[b->next].prev = g.left;
			spm_try(tk, w, a->prev, g.left);
			spm_try(tk, w, g.left, a->next);
		}
	}
	for (int32_t i = 0; i != -1; i = w->sym[i].next) {
		const struct sym *a = &w->sym[i];
		int64_t sid = strtab_find(&tk->strs, w->buf + a->start, a->n);
		int32_t id = sid < 0 ? -1 : tk->strs.token[sid];
		if (id >= 0) {
			if (!emit(w, id))
				return TOK_ERR_NOMEM;
			continue;
		}
		for (uint32_t j = 0; j < a->n; j++) {
			int32_t bt = tk->byte_token[(unsigned char)w->buf[a->start + j]];
			if (bt < 0)
				return TOK_ERR_VOCAB;
			if (!emit(w, bt))
				return TOK_ERR_NOMEM;
		}
	}
	return TOK_OK;
}

/* Whether the escaped text may be cut before the U+2581 at byte b: true
 * when no token containing U+2581 after its start occurs across b.  Every
 * merged symbol is a token occurring in the text, so then no merge joins
 * the two sides, and merging them apart gives what merging them together
 * gives (the heap orders each side's pairs the same way). */
static bool spm_cut_ok(const tokenizer *tk, const char *buf, size_t len, size_t b)
{
	if (!tk->spm_chunks)
		return false;
	for (size_t i = 0; i < tk->n_inner; i++) {
		const struct spm_inner *in = &tk->inner[i];
		size_t tl = tk->strs.len[in->sid];
		if (in->k > b || b - in->k + tl > len)
			continue;
		const char *t = tk->strs.arena + tk->strs.off[in->sid];
		if (buf[b - 1] == t[in->k - 1] && memcmp(buf + b - in->k, t, tl) == 0)
			return false;
	}
	return true;
}

static int spm_fragment(const tokenizer *tk, struct enc_work *w, const char *s, size_t n, bool prefix)
{
	/* the text with a leading space if asked and every space as U+2581 */
	size_t len = 0;
	if (!reserve_n((void **)&w->buf, &w->cap_buf, 3 * n + 3, 1))
		return TOK_ERR_NOMEM;
	if (prefix) {
		memcpy(w->buf, "\xe2\x96\x81", 3);
		len = 3;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ') {
			memcpy(w->buf + len, "\xe2\x96\x81", 3);
			len += 3;
		} else {
			w->buf[len++] = s[i];
		}
	}

	/* symbols are UTF-8 characters by their lead byte; merge chunk by
	 * chunk, cutting before a U+2581 where no token can span the cut */
	int32_t ns = 0;
	for (size_t off = 0; off < len;) {
		size_t cl = unicode_len_utf8((unsigned char)w->buf[off]);
		if (cl > len - off)
			cl = len - off;
		if (ns > 0 && cl == 3 && memcmp(w->buf + off, "\xe2\x96\x81", 3) == 0 &&
		    spm_cut_ok(tk, w->buf, len, off)) {
			int rc = spm_chunk(tk, w, ns);
			if (rc)
				return rc;
			ns = 0;
		}
		if (!reserve_n((void **)&w->sym, &w->cap_sym, (size_t)ns + 1, sizeof *w->sym) ||
		    !reserve_n((void **)&w->heap, &w->cap_heap, 3 * ((size_t)ns + 1), sizeof *w->heap))
			return TOK_ERR_NOMEM;
		w->sym[ns] = (struct sym){.start = (uint32_t)off, .n = (uint32_t)cl, .prev = ns - 1,
					  .next = ns + 1, .sid = -1};
		ns++;
		off += cl;
	}
	return spm_chunk(tk, w, ns);
}

/* -- byte-level BPE -- */

static inline void bpe_try(const tokenizer *tk, struct enc_work *w, int32_t l, int32_t r)
{
	if (l < 0 || r < 0)
		return;
	const struct sym *a = &w->sym[l], *b = &w->sym[r];
	if (a->sid < 0 || b->sid < 0)
		return;
	const struct pair_entry *e = pair_find(&tk->pairs, (uint32_t)a->sid, (uint32_t)b->sid);
	if (!e)
		return;
	struct bigram g = {bpe_key(e->rank, l), l, r, a->n + b->n, e->result};
	heap_push(w, &g);
}

static void bpe_pair(const tokenizer *tk, struct enc_work *w, int32_t l)
{
	struct sym *a = &w->sym[l];
	a->has_pair = false;
	if (a->next < 0 || a->sid < 0 || w->sym[a->next].sid < 0)
		return;
	const struct pair_entry *e = pair_find(&tk->pairs, (uint32_t)a->sid, (uint32_t)w->sym[a->next].sid);
	if (!e)
		return;
	a->has_pair = true;
	a->rank = e->rank;
	a->result = e->result;
}

static void bpe_merge_scan(const tokenizer *tk, struct enc_work *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bpe_pair(tk, w, (int32_t)i);
	for (;;) {
		int32_t best = -1;
		for (int32_t i = 0; i != -1; i = w->sym[i].next)
			if (w->sym[i].has_pair && (best < 0 || w->sym[i].rank < w->sym[best].rank))
				best = i;
		if (best < 0)
			return;
		struct sym *a = &w->sym[best], *b = &w->sym[a->next];
		a->n += b->n;
		a->sid = (int32_t)a->result;
		b->n = 0;
		a->next = b->next;
		if (b->next >= 0)
			w->sym[b->next].prev = best;
		bpe_pair(tk, w, best);
		if (a->prev >= 0)
			bpe_pair(tk, w, a->prev);
	}
}

static int bpe_merge_emit(const tokenizer *tk, struct enc_work *w, const unsigned char *s, size_t n);

static int bpe_word(const tokenizer *tk, struct enc_work *w, const unsigned char *s, size_t n)
{
	if (tk->ignore_merges) {
		size_t len = 0;
		for (size_t i = 0; i < n; i++) {
			memcpy(w->buf + len, tk->byte_enc[s[i]], tk->byte_enc_len[s[i]]);
			len += tk->byte_enc_len[s[i]];
		}
		int64_t sid = strtab_find(&tk->strs, w->buf, len);
		if (sid >= 0 && tk->strs.token[sid] >= 0)
			return emit(w, tk->strs.token[sid]) ? TOK_OK : TOK_ERR_NOMEM;
	}
	/* one symbol per byte: each byte is one GPT-2 symbol character */
	for (size_t i = 0; i < n; i++)
		w->sym[i] = (struct sym){.start = (uint32_t)i, .n = 1, .prev = (int32_t)i - 1,
					 .next = i + 1 == n ? -1 : (int32_t)i + 1, .sid = tk->byte_sid[s[i]]};
	return bpe_merge_emit(tk, w, s, n);
}

/* Merges the n symbols in w->sym over the word s, then emits their tokens. */
static int bpe_merge_emit(const tokenizer *tk, struct enc_work *w, const unsigned char *s, size_t n)
{
	if (n <= SCAN_MAX) {
		bpe_merge_scan(tk, w, n);
	} else {
		w->n_heap = 0;
		for (size_t i = 1; i < n; i++)
			bpe_try(tk, w, (int32_t)i - 1, (int32_t)i);
		while (w->n_heap) {
			struct bigram g = heap_pop(w);
			struct sym *a = &w->sym[g.left], *b = &w->sym[g.right];
			if (a->n == 0 || b->n == 0 || a->n + b->n != g.size)
				continue;  /* stale */
			a->n += b->n;
			a->sid = (int32_t)g.result;
			b->n = 0;
			a->next = b->next;
			if (b->next >= 0)
				w->sym[b->next].prev = g.left;
			bpe_try(tk, w, a->prev, g.left);
			bpe_try(tk, w, g.left, a->next);
		}
	}
	for (int32_t i = 0; i != -1; i = w->sym[i].next) {
		const struct sym *a = &w->sym[i];
		int32_t id = a->sid >= 0 ? tk->strs.token[a->sid] : -1;
		if (id >= 0) {
			if (!emit(w, id))
				return TOK_ERR_NOMEM;
			continue;
		}
		/* llama.cpp then tries each byte of the symbol's text alone */
		for (uint32_t j = 0; j < a->n; j++)
			for (int k = 0; k < 2; k++) {
				int32_t fb = tk->byte_fallback[s[a->start + j]][k];
				if (fb >= 0 && !emit(w, fb))
					return TOK_ERR_NOMEM;
			}
	}
	return TOK_OK;
}

/* SentencePiece-style BPE (gemma4): symbols are the word's UTF-8
 * characters (spaces already U+2581), and a symbol that is no token falls
 * back to <0xNN> tokens for its bytes.  A word of newlines only that is a
 * token as a whole is taken whole (llama.cpp's fix for Gemma 4). */
static int spbpe_word(const tokenizer *tk, struct enc_work *w, const unsigned char *s, size_t n)
{
	size_t nl = 0;
	while (nl < n && s[nl] == '\n')
		nl++;
	if (nl == n) {
		int32_t id = tok_find(tk, (const char *)s, n);
		if (id >= 0)
			return emit(w, id) ? TOK_OK : TOK_ERR_NOMEM;
	}
	size_t ns = 0;
	for (size_t i = 0; i < n;) {
		size_t cl = unicode_len_utf8(s[i]);
		if (cl > n - i)
			cl = n - i;
		int64_t sid = strtab_find(&tk->strs, (const char *)s + i, cl);
		w->sym[ns] = (struct sym){.start = (uint32_t)i, .n = (uint32_t)cl, .prev = (int32_t)ns - 1,
					  .next = i + cl == n ? -1 : (int32_t)ns + 1, .sid = sid < 0 ? -1 : (int32_t)sid};
		ns++;
		i += cl;
	}
	return bpe_merge_emit(tk, w, s, ns);
}

/* llama.cpp's llama_escape_whitespace(): every ' ' becomes U+2581. */
static const char *escape_spaces(struct enc_work *w, const char *s, size_t *n)
{
	size_t sp = 0;
	for (size_t i = 0; i < *n; i++)
		sp += s[i] == ' ';
	if (!sp)
		return s;
	if (!reserve_n((void **)&w->esc, &w->cap_esc, *n + 2 * sp + 1, 1))
		return NULL;
	size_t len = 0;
	for (size_t i = 0; i < *n; i++) {
		if (s[i] == ' ') {
			memcpy(w->esc + len, "\xe2\x96\x81", 3);
			len += 3;
		} else {
			w->esc[len++] = s[i];
		}
	}
	*n = len;
	return w->esc;
}

static int bpe_fragment(const tokenizer *tk, struct enc_work *w, const char *s, size_t n)
{
	if (tk->spm_bpe && !(s = escape_spaces(w, s, &n)))
		return TOK_ERR_NOMEM;
	int prc = pretok_split(tk->pre, &w->pw, s, n, NULL, 0);
	if (prc < 0)
		return prc == PRETOK_ERR_NOMEM ? TOK_ERR_NOMEM : TOK_ERR_REGEX;
	size_t maxw = 0;
	for (size_t i = 0; i < w->pw.n_words; i++)
		if (w->pw.words[2 * i + 1] > maxw)
			maxw = w->pw.words[2 * i + 1];
	if (!reserve_n((void **)&w->sym, &w->cap_sym, maxw + 1, sizeof *w->sym) ||
	    !reserve_n((void **)&w->heap, &w->cap_heap, 3 * maxw + 1, sizeof *w->heap) ||
	    !reserve_n((void **)&w->buf, &w->cap_buf, 2 * maxw + 1, 1))
		return TOK_ERR_NOMEM;
	for (size_t i = 0; i < w->pw.n_words; i++) {
		const unsigned char *word = (const unsigned char *)w->pw.text + w->pw.words[2 * i];
		size_t wl = w->pw.words[2 * i + 1];
		int rc = tk->spm_bpe ? spbpe_word(tk, w, word, wl) : bpe_word(tk, w, word, wl);
		if (rc)
			return rc;
	}
	return TOK_OK;
}

/* -- special tokens -- */

static inline bool is_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static int cmp_claim(const void *a, const void *b)
{
	const struct claim *x = a, *y = b;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Finds the special tokens to cut out of text[0..n), as llama.cpp's
 * tokenizer_st_partition: tokens by decreasing length, each one's
 * occurrences left to right, skipping occurrences that overlap text already
 * taken (and the whitespace that LSTRIP/RSTRIP tokens swallow).  Leaves
 * w->claims sorted by position and w->claimed marking every byte taken. */
static int partition(const tokenizer *tk, struct enc_work *w, const char *text, size_t n, bool special)
{
	const unsigned char *s = (const unsigned char *)text;
	const int k = special;

	w->n_hot = w->n_claims = 0;
	if (!tk->n_trie || (!special && !tk->any_plain))
		return TOK_OK;
	/* where a special token starts, the longest one there */
	for (size_t p = 0; p < n; p++) {
		int32_t node = tk->root[s[p]], best = -1;
		for (size_t d = 1; node >= 0; d++) {
			if (tk->trie[node].tok[k] >= 0)
				best = node;
			if (p + d >= n)
				break;
			node = trie_child(tk, node, s[p + d]);
		}
		if (best < 0)
			continue;
		if (!reserve_n((void **)&w->hot, &w->cap_hot, w->n_hot + 1, sizeof *w->hot))
			return TOK_ERR_NOMEM;
		w->hot[w->n_hot++] = (struct hot){(uint32_t)p, best};
	}
	if (!w->n_hot)
		return TOK_OK;

	w->claimed = eng_calloc(n, 1);
	if (!w->claimed)
		return TOK_ERR_NOMEM;
	unsigned char *cl = w->claimed;
	for (size_t li = 0; li < tk->n_lens[k] && w->n_hot; li++) {
		uint32_t L = tk->lens[k][li];
		size_t keep = 0;
		for (size_t h = 0; h < w->n_hot; h++) {
			struct hot hp = w->hot[h];
			if (cl[hp.pos])
				continue;  /* taken: nothing can start here any more */
			const struct trie_node *nd = &tk->trie[hp.node];
			if (nd->depth == L) {
				bool free_run;
				if (tk->has_strip) {
					free_run = true;
					for (size_t q = 0; q < L && free_run; q++)
						free_run = !cl[hp.pos + q];
				} else {
					/* taken runs are at least L long, so one
					 * overlapping [pos, pos+L) covers an end */
					free_run = !cl[hp.pos + L - 1];
				}
				if (free_run) {
					if (!reserve_n((void **)&w->claims, &w->cap_claims, w->n_claims + 1,
						       sizeof *w->claims))
						return TOK_ERR_NOMEM;
					int32_t t = nd->tok[k];
					w->claims[w->n_claims++] = (struct claim){hp.pos, L, t};
					memset(cl + hp.pos, 1, L);
					uint32_t a = tk->tok[t].attr;
					if (a & TOK_ATTR_LSTRIP)
						for (size_t q = hp.pos; q > 0 && !cl[q - 1] && is_space(s[q - 1]); q--)
							cl[q - 1] = 2;
					if (a & TOK_ATTR_RSTRIP)
						for (size_t q = hp.pos + L; q < n && !cl[q] && is_space(s[q]); q++)
							cl[q] = 2;
					continue;
				}
				hp.node = nd->up[k];  /* the next shorter one here */
				if (hp.node < 0)
					continue;
			}
			w->hot[keep++] = hp;
		}
		w->n_hot = keep;
	}
	if (w->n_claims)
		qsort(w->claims, w->n_claims, sizeof *w->claims, cmp_claim);
	return TOK_OK;
}

static int encode_raw(const tokenizer *tk, struct enc_work *w, const char *s, size_t n, bool *prev_special)
{
	int rc;
	if (tk->model == TOK_MODEL_SPM)
		rc = spm_fragment(tk, w, s, n, tk->add_space_prefix && *prev_special);
	else
		rc = bpe_fragment(tk, w, s, n);
	*prev_special = false;
	return rc;
}

const char *tok_strerror(int status)
{
	switch (status) {
	case TOK_OK: return "success";
	case TOK_ERR_NOMEM: return "out of memory while tokenizing";
	case TOK_ERR_INPUT: return "text too long to tokenize (over 1 GiB)";
	case TOK_ERR_VOCAB: return "the vocabulary has no byte token and no <unk> for a byte of the text";
	case TOK_ERR_REGEX: return "the pre-tokenizer's regex engine hit a limit";
	default: return "tokenizer error";
	}
}

int tok_encode(const tokenizer *tk, const char *text, size_t len, bool add_bos, bool parse_special,
	       int32_t **ids, size_t *n, size_t *cap)
{
	struct enc_work w = {0};
	bool prev_special = true;  /* SPM: a space prefix before the first text */
	int rc = TOK_OK;

	if (len > (1u << 30))
		return TOK_ERR_INPUT;
	if (*n > *cap)
		return TOK_ERR_INPUT;
	w.ids = *ids;
	w.n = *n;
	w.cap = *ids ? *cap : 0;
	if (add_bos && tk->role[TOK_BOS] >= 0 && !emit(&w, tk->role[TOK_BOS])) {
		rc = TOK_ERR_NOMEM;
		goto done;
	}
	if (len) {
		rc = partition(tk, &w, text, len, parse_special);
		if (rc)
			goto done;
		size_t at = 0;
		for (size_t c = 0; c <= w.n_claims && !rc; c++) {
			size_t end = c < w.n_claims ? w.claims[c].pos : len;
			/* the raw text before this token, minus swallowed spaces */
			while (at < end) {
				if (w.claimed && w.claimed[at]) {
					at++;
					continue;
				}
				size_t e = at;
				while (e < end && !(w.claimed && w.claimed[e]))
					e++;
				rc = encode_raw(tk, &w, text + at, e - at, &prev_special);
				if (rc)
					break;
				at = e;
			}
			if (!rc && c < w.n_claims) {
				if (!emit(&w, w.claims[c].tok))
					rc = TOK_ERR_NOMEM;
				prev_special = true;
				at = w.claims[c].pos + w.claims[c].len;
			}
		}
	}
done:
	/* the array is the caller's, grown or not */
	*ids = w.ids;
	*cap = w.cap;
	if (!rc)
		*n = w.n;
	work_free(&w);
	return rc;
}

/* ---- streaming decoding ---- */

struct tok_decoder {
	const tokenizer *tk;
	unsigned flags;
	bool first;
	unsigned char hold[4];  /* start of a UTF-8 character split across tokens */
	size_t n_hold;
	unsigned char *in;      /* hold + the next piece */
	char *q;                /* validated text not yet handed out */
	size_t q_off, q_len, q_cap;
	bool nomem;             /* text was lost: the queue could not grow */
};

tok_decoder *tok_decoder_new(const tokenizer *tk)
{
	tok_decoder *d = eng_calloc(1, sizeof *d);
	if (!d)
		return NULL;
	d->tk = tk;
	d->first = true;
	/* every input byte becomes at most 3 output bytes (U+FFFD) */
	d->q_cap = 3 * (tk->max_piece + sizeof d->hold) + 16;
	d->q = eng_malloc(d->q_cap);
	d->in = eng_malloc(tk->max_piece + sizeof d->hold);
	if (!d->q || !d->in) {
		tok_decoder_free(d);
		return NULL;
	}
	return d;
}

void tok_decoder_free(tok_decoder *d)
{
	if (!d)
		return;
	free(d->q);
	free(d->in);
	free(d);
}

void tok_decoder_options(tok_decoder *d, unsigned flags)
{
	d->flags = flags;
}

void tok_decoder_reset(tok_decoder *d)
{
	d->nomem = false;
	d->n_hold = 0;
	d->q_off = d->q_len = 0;
	d->first = true;
}

/* Room for EXTRA more queued bytes; false when out of memory. */
static bool queue_room(tok_decoder *d, size_t extra)
{
	if (d->q_off && d->q_off == d->q_len)
		d->q_off = d->q_len = 0;
	if (d->q_len + extra <= d->q_cap)
		return true;
	if (d->q_off) {
		memmove(d->q, d->q + d->q_off, d->q_len - d->q_off);
		d->q_len -= d->q_off;
		d->q_off = 0;
		if (d->q_len + extra <= d->q_cap)
			return true;
	}
	size_t cap = 2 * (d->q_len + extra);
	char *q = eng_realloc(d->q, cap);
	if (!q) {
		d->nomem = true;
		return false;
	}
	d->q = q;
	d->q_cap = cap;
	return true;
}

static void queue_bytes(tok_decoder *d, const char *s, size_t n)
{
	memcpy(d->q + d->q_len, s, n);
	d->q_len += n;
}

/* Hands out queued text: as much as fits in size without cutting a
 * character (the queue holds valid UTF-8 only). */
static size_t drain(tok_decoder *d, char *buf, size_t size)
{
	size_t avail = d->q_len - d->q_off, k = avail < size ? avail : size;
	if (k < avail)
		while (k > 0 && ((unsigned char)d->q[d->q_off + k] & 0xc0) == 0x80)
			k--;
	memcpy(buf, d->q + d->q_off, k);
	d->q_off += k;
	if (d->q_off == d->q_len)
		d->q_off = d->q_len = 0;
	return k;
}

size_t tok_decoder_feed(tok_decoder *d, int32_t id, char *buf, size_t size)
{
	size_t pl;
	const char *piece = tok_piece(d->tk, id, &pl);

	if (!piece)
		return drain(d, buf, size);
	if (!(d->flags & TOK_DECODE_SPECIAL) && tok_is_control(d->tk, id))
		pl = 0;
	if (d->first && pl) {
		if ((d->flags & TOK_DECODE_STRIP_SPACE) && piece[0] == ' ') {
			piece++;
			pl--;
		}
		d->first = false;
	}
	size_t n = d->n_hold + pl;
	/* worst case every byte is invalid: 3 bytes out for each */
	if (!pl || !queue_room(d, 3 * n))
		return drain(d, buf, size);
	memcpy(d->in, d->hold, d->n_hold);
	memcpy(d->in + d->n_hold, piece, pl);
	d->n_hold = 0;
	for (size_t i = 0; i < n;) {
		int r = unicode_utf8_check(d->in + i, n - i);
		if (r > 0) {
			queue_bytes(d, (const char *)d->in + i, (size_t)r);
			i += (size_t)r;
		} else if (r == 0) {
			/* a valid start cut by the end of the piece: wait */
			memcpy(d->hold, d->in + i, n - i);
			d->n_hold = n - i;
			break;
		} else {
			queue_bytes(d, "\xef\xbf\xbd", 3);
			i += (size_t)-r;
		}
	}
	return drain(d, buf, size);
}

bool tok_decoder_nomem(const tok_decoder *d)
{
	return d->nomem;
}

size_t tok_decoder_flush(tok_decoder *d, char *buf, size_t size)
{
	if (d->n_hold && queue_room(d, 3))
		queue_bytes(d, "\xef\xbf\xbd", 3);
	d->n_hold = 0;
	d->first = true;
	return drain(d, buf, size);
}
