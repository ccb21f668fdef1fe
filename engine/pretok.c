/*
 * pretok.c - BPE pre-tokenizers, split-for-split identical to llama.cpp.
 *
 * A pre-tokenizer is a list of steps; each step cuts every segment left by
 * the previous step into matches and the gaps between them (both become
 * segments), so a later regex never sees across an earlier cut.  This is
 * llama.cpp's unicode_regex_split(), and these are its quirks kept on
 * purpose because token ids depend on them:
 *  - text is first decoded leniently (a bad byte becomes U+FFFD, overlong
 *    forms and surrogates pass), and words are re-encoded from the code
 *    points;
 *  - the three regexes llama.cpp runs through hand-written code (gpt2,
 *    llama3, qwen2) are hand-written here too, with the same behaviour at
 *    segment ends;
 *  - every other regex that uses \p{..} runs on a "collapsed" copy of the
 *    text, one byte per code point: ASCII stays, other whitespace becomes
 *    \v, other code points become 0xD0 + a category number, and \p{L} etc.
 *    are rewritten into classes over those bytes.  llama.cpp hands this to
 *    std::regex (ECMAScript); we hand it to PCRE2 (8-bit, no UTF, JIT), which
 *    has the same leftmost-first backtracking semantics for these patterns.
 *  - regexes without \p{..} run on the code points with non-ASCII
 *    whitespace turned into \v (PCRE2 in UTF mode without UCP, so \s is
 *    ASCII only, like std::wregex in the C locale).
 * The gpt-4o/tekken lookahead groups ((?=[\p{L}])([^a-z])) are rewritten to
 * the single class they are equivalent to over collapsed text, so that PCRE2
 * needs no stack per repetition.  tests/test_tokenizer.c checks the
 * hand-written splitters against PCRE2 running the original regexes.
 */
#include "pretok.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "unicode.h"

/* ---- the pre-tokenizer table ---- */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3 RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* qwen35: qwen2's with combining marks (\\p{M}) kept inside words */
#define RE_QWEN35 RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_UPPER "((?=[\\p{L}])([^a-z]))"
#define RE_LOWER "((?=[\\p{L}])([^A-Z]))"
#define RE_POROLIKE " ?[^(\\s|.,!?…。，、।۔،)]+"
#define RE_CJK "[一-龥ࠀ-一가-퟿]+"

/* Character classes from the published tokenizer.json files, verbatim. */
#define DEEPSEEK_LLM_LETTERS "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"
#define DEEPSEEK_LLM_PUNCT "\\s?[!-/:-~！-／：-～‘-‟　-。]+"
#define DEEPSEEK_V3_CJK "[一-龥぀-ゟ゠-ヿ]+"

#define MAX_STEPS 8

struct pretok_def {
	const char *names;           /* '|'-separated names */
	unsigned flags;
	const char *re[MAX_STEPS];   /* NULL-terminated */
};

static const struct pretok_def pretok_defs[] = {
	{"default", 0,
	 {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
	{"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano",
	 PRETOK_IGNORE_MERGES | PRETOK_ADD_BOS, {RE_LLAMA3}},
	{"dbrx|smaug-bpe", 0, {RE_LLAMA3}},
	{"deepseek-llm", 0,
	 {"[\r\n]",
	  DEEPSEEK_LLM_LETTERS,
	  DEEPSEEK_LLM_PUNCT,
	  "\\s+$",
	  RE_CJK,
	  "\\p{N}+"}},
	{"deepseek-coder", 0,
	 {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK, "\\p{N}"}},
	{"deepseek-v3", 0,
	 {"\\p{N}{1,3}",
	  DEEPSEEK_V3_CJK,
	  "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}},
	{"falcon", 0,
	 {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
	{"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b|mellum2", 0,
	 {"\\p{N}", RE_GPT2}},
	{"gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum|modern-bert|"
	 "exaone4|jina-v1-en|jina-v2-code|roberta-bpe|mpt|olmo|jais|trillion|granite-docling", 0,
	 {RE_GPT2}},
	{"qwen2|deepseek-r1-qwen|kormo|f2llmv2|megrez|stablelm2|hunyuan|solar-open|grok-2", 0,
	 {RE_QWEN2}},
	{"qwen35", 0, {RE_QWEN35}},
	{"poro-chat|bloom|gpt3-finnish", 0, {RE_POROLIKE}},
	{"viking", 0, {RE_POROLIKE, "\\p{N}"}},
	{"chatglm-bpe", PRETOK_NO_BOS, {RE_LLAMA3}},
	{"glm4|glm5", PRETOK_NO_BOS | PRETOK_IGNORE_MERGES, {RE_LLAMA3}},
	{"tekken", PRETOK_IGNORE_MERGES | PRETOK_ADD_BOS,
	 {"[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "*" RE_LOWER "+|[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "+" RE_LOWER
	  "*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
	{"chameleon", PRETOK_ADD_BOS,
	 {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
	  "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2}},
	{"gpt-4o|llama4|kanana2|talkie|minimax-m2", 0,
	 {"[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "*" RE_LOWER "+" RE_CONTRACTIONS "?|[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER
	  "+" RE_LOWER "*" RE_CONTRACTIONS "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
	{"seed-coder", 0,
	 {RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
	{"bailingmoe|bailingmoe2|llada-moe", 0,
	 {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"}},
	{"laguna", 0, {"[^\\n]+|[\\n]+", RE_QWEN2}},
	{"gemma4|granite-embed-multi-311m", PRETOK_SPM_BPE | PRETOK_ADD_BOS, {"[^\\n]+|[\\n]+"}},
};

/* ---- compiling ---- */

enum step_kind { STEP_GPT2, STEP_LLAMA3, STEP_QWEN2, STEP_COLLAPSED, STEP_WIDE };

struct step {
	enum step_kind kind;
	pcre2_code *code;
};

struct pretok {
	char name[64];
	unsigned flags;
	int n_steps;
	bool need_collapsed, need_wide;
	struct step steps[MAX_STEPS];
};

/* The byte each category becomes in collapsed text, and the ASCII members
 * of the category that the class must keep matching. */
struct ucat {
	const char *prop;
	unsigned char code;
	const char *ascii;
};

static const struct ucat ucats[] = {
	{"\\p{N}", 0xD1, "0-9"},
	{"\\p{L}", 0xD2, "A-Za-z"},
	{"\\p{P}", 0xD3, "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"},
	{"\\p{M}", 0xD4, ""},
	{"\\p{S}", 0xD5, "\\$\\+<->^`\\|\\~"},
	{"\\p{Lu}", 0xD2, "A-Za-z"},
	{"\\p{Ll}", 0xD2, "A-Za-z"},
	{"\\p{Lt}", 0xD2, "A-Za-z"},
	{"\\p{Lm}", 0xD2, "A-Za-z"},
	{"\\p{Lo}", 0xD2, "A-Za-z"},
};

static const struct ucat *ucat_at(const char *re, size_t i, size_t n, size_t *plen)
{
	for (size_t k = 0; k < sizeof ucats / sizeof ucats[0]; k++) {
		size_t l = strlen(ucats[k].prop);
		if (i + l <= n && memcmp(re + i, ucats[k].prop, l) == 0) {
			*plen = l;
			return &ucats[k];
		}
	}
	return NULL;
}

static bool uses_categories(const char *re)
{
	for (size_t k = 0; k < sizeof ucats / sizeof ucats[0]; k++)
		if (strstr(re, ucats[k].prop))
			return true;
	return false;
}

/* Appends s to buf (cap bytes); false when it does not fit. */
static bool put(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
	if (n >= cap - *len)
		return false;
	memcpy(buf + *len, s, n);
	*len += n;
	buf[*len] = 0;
	return true;
}

/* Replaces every occurrence of FROM in buf with TO (TO no longer). */
static void replace_all(char *buf, size_t *len, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to);
	char *p = buf;
	while ((p = strstr(p, from)) != NULL) {
		memcpy(p, to, tl);
		memmove(p + tl, p + fl, (size_t)(buf + *len - (p + fl)) + 1);
		*len -= fl - tl;
		p += tl;
	}
}

/* The collapsed form of regex RE, built the way llama.cpp builds it: a
 * \p{X} outside brackets becomes a bracket of its own, inside brackets it
 * is spliced in.  Then the lookahead groups are folded (see the top). */
static bool collapse_regex(const char *re, char *out, size_t cap)
{
	size_t n = strlen(re), len = 0;
	bool inside = false;

	out[0] = 0;
	for (size_t i = 0; i < n; i++) {
		char c = re[i];
		if (c == '[' && (i == 0 || re[i - 1] != '\\')) {
			inside = true;
		} else if (inside && c == ']' && re[i - 1] != '\\') {
			inside = false;
		} else if (c == '\\') {
			size_t plen;
			const struct ucat *u = ucat_at(re, i, n, &plen);
			if (u) {
				char code = (char)u->code;
				if ((!inside && !put(out, cap, &len, "[", 1)) || !put(out, cap, &len, &code, 1) ||
				    !put(out, cap, &len, u->ascii, strlen(u->ascii)) ||
				    (!inside && !put(out, cap, &len, "]", 1)))
					return false;
				i += plen - 1;
				continue;
			}
		}
		if (!put(out, cap, &len, &c, 1))
			return false;
	}
	replace_all(out, &len, "((?=[\xD2" "A-Za-z])([^a-z]))", "[\xD2" "A-Z]");
	replace_all(out, &len, "((?=[\xD2" "A-Za-z])([^A-Z]))", "[\xD2" "a-z]");
	return true;
}

static bool name_in(const char *names, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = names;;) {
		const char *bar = strchr(p, '|');
		size_t l = bar ? (size_t)(bar - p) : strlen(p);
		if (l == n && memcmp(p, name, n) == 0)
			return true;
		if (!bar)
			return false;
		p = bar + 1;
	}
}

const char *const *pretok_names(void)
{
	static const char *const names[] = {
		"default", "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
		"midm-2.0", "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe", "deepseek-llm",
		"deepseek-coder", "deepseek-v3", "falcon", "starcoder", "refact", "command-r",
		"smollm", "codeshell", "exaone", "minerva-7b", "mellum2", "gpt-2", "phi-2",
		"jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
		"modern-bert", "exaone4", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo",
		"jais", "trillion", "granite-docling", "qwen2", "deepseek-r1-qwen", "kormo",
		"f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open", "grok-2", "qwen35", "poro-chat",
		"bloom", "gpt3-finnish", "viking", "chatglm-bpe", "glm4", "glm5", "tekken",
		"chameleon", "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2", "seed-coder",
		"bailingmoe", "bailingmoe2", "llada-moe", "laguna", "gemma4", "granite-embed-multi-311m", NULL,
	};
	return names;
}

static void seterr(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
	if (err && errlen)
		snprintf(err, errlen, fmt, a, b);
}

static pretok *pretok_build(const char *name, bool regex_only, char *err, size_t errlen)
{
	const struct pretok_def *def = NULL;

	if (!name || !*name)
		name = "default";
	for (size_t i = 0; i < sizeof pretok_defs / sizeof pretok_defs[0]; i++)
		if (name_in(pretok_defs[i].names, name)) {
			def = &pretok_defs[i];
			break;
		}
	if (!def) {
		seterr(err, errlen, "unknown or unsupported pre-tokenizer '%.60s' (tokenizer.ggml.pre)%s", name, "");
		return NULL;
	}

	pretok *pt = eng_calloc(1, sizeof *pt);
	if (!pt) {
		seterr(err, errlen, "out of memory%s%s", "", "");
		errno = ENOMEM;
		return NULL;
	}
	snprintf(pt->name, sizeof pt->name, "%s", name);
	pt->flags = def->flags;
	for (int i = 0; i < MAX_STEPS && def->re[i]; i++) {
		const char *re = def->re[i];
		struct step *st = &pt->steps[pt->n_steps++];
		if (!regex_only && strcmp(re, RE_GPT2) == 0) {
			st->kind = STEP_GPT2;
			continue;
		}
		if (!regex_only && strcmp(re, RE_LLAMA3) == 0) {
			st->kind = STEP_LLAMA3;
			continue;
		}
		if (!regex_only && strcmp(re, RE_QWEN2) == 0) {
			st->kind = STEP_QWEN2;
			continue;
		}

		char buf[4096];
		uint32_t opts = PCRE2_DOLLAR_ENDONLY | PCRE2_NO_AUTO_CAPTURE;
		const char *pat = re;
		if (uses_categories(re)) {
			st->kind = STEP_COLLAPSED;
			pt->need_collapsed = true;
			if (!collapse_regex(re, buf, sizeof buf)) {
				seterr(err, errlen, "pre-tokenizer '%.60s': regex too long%s", name, "");
				pretok_free(pt);
				return NULL;
			}
			pat = buf;
		} else {
			st->kind = STEP_WIDE;
			pt->need_wide = true;
			opts |= PCRE2_UTF;
		}
		int ecode;
		PCRE2_SIZE eoff;
		st->code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &ecode, &eoff, NULL);
		if (!st->code) {
			char msg[128];
			pcre2_get_error_message(ecode, (PCRE2_UCHAR *)msg, sizeof msg);
			seterr(err, errlen, "pre-tokenizer '%.60s': regex does not compile: %.100s", name, msg);
			pretok_free(pt);
			return NULL;
		}
		/* Without JIT (unsupported platform) pcre2_match interprets. */
		(void)pcre2_jit_compile(st->code, PCRE2_JIT_COMPLETE);
	}
	return pt;
}

pretok *pretok_new(const char *name, char *err, size_t errlen)
{
	return pretok_build(name, false, err, errlen);
}

pretok *pretok_new_regex_only(const char *name, char *err, size_t errlen)
{
	return pretok_build(name, true, err, errlen);
}

void pretok_free(pretok *pt)
{
	if (!pt)
		return;
	for (int i = 0; i < pt->n_steps; i++)
		pcre2_code_free(pt->steps[i].code);
	free(pt);
}

const char *pretok_name(const pretok *pt)
{
	return pt->name;
}

unsigned pretok_flags(const pretok *pt)
{
	return pt->flags;
}

/* ---- splitting ---- */

void pretok_work_free(struct pretok_work *w)
{
	if (!w)
		return;
	free(w->cpts);
	free(w->off);
	free(w->seg_a);
	free(w->seg_b);
	free(w->flags);
	free(w->collapsed);
	free(w->u8);
	free(w->wide);
	free(w->words);
	pcre2_match_data_free(w->md);
	pcre2_match_context_free(w->mctx);
	pcre2_jit_stack_free(w->jit);
	memset(w, 0, sizeof *w);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return true;
	size_t n = need + need / 4 + 64;
	void *q = eng_realloc(*p, n * elem);
	if (!q)
		return false;
	*p = q;
	*cap = n;
	return true;
}

#define F_NONE 0xF0  /* "no code point here": past the segment (no class, not \s) */
#define IS_L(f) (((f) & UNICODE_CAT_MASK) == UNICODE_LETTER)
#define IS_N(f) (((f) & UNICODE_CAT_MASK) == UNICODE_NUMBER)
#define IS_WS(f) (((f) & UNICODE_WHITESPACE) != 0)

/* Splitter state over one segment [.., end) of code points. */
struct cut {
	const uint32_t *cpt;
	const uint8_t *fl;
	size_t end, prev;
	uint32_t *out;
	size_t n_out;
};

static inline uint8_t cut_flags(const struct cut *c, size_t i)
{
	return i < c->end ? c->fl[i] : F_NONE;
}

static inline uint32_t cut_cpt(const struct cut *c, size_t i)
{
	return i < c->end ? c->cpt[i] : 0xFFFFFFFFu;
}

static inline void cut_at(struct cut *c, size_t end)
{
	if (end > c->prev)
		c->out[c->n_out++] = (uint32_t)(end - c->prev);
	c->prev = end;
}

static inline bool is_other(uint8_t f)  /* [^\s\p{L}\p{N}], and a code point */
{
	return f != F_NONE && !IS_WS(f) && !IS_L(f) && !IS_N(f);
}

static inline uint32_t ascii_lower(uint32_t c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's|'t|'re|'ve|'m|'ll|'d at pos (case-folded when FOLD): its length or 0. */
static size_t contraction(const struct cut *c, size_t pos, bool fold)
{
	if (c->cpt[pos] != '\'' || pos + 1 >= c->end)
		return 0;
	uint32_t a = c->cpt[pos + 1];
	if (fold)
		a = ascii_lower(a);
	if (a == 's' || a == 't' || a == 'm' || a == 'd')
		return 2;
	if (pos + 2 >= c->end)
		return 0;
	uint32_t b = c->cpt[pos + 2];
	if (fold)
		b = ascii_lower(b);
	if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
		return 3;
	return 0;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
static void split_gpt2(struct cut *c, size_t pos)
{
	while (pos < c->end) {
		uint32_t cp = c->cpt[pos];
		size_t k = contraction(c, pos, false);
		if (k) {
			pos += k;
			cut_at(c, pos);
			continue;
		}
		uint8_t f2 = cp == ' ' ? cut_flags(c, pos + 1) : c->fl[pos];
		if (f2 != F_NONE && (IS_L(f2) || IS_N(f2) || is_other(f2))) {
			pos += cp == ' ';
			if (IS_L(f2))
				while (IS_L(cut_flags(c, pos)))
					pos++;
			else if (IS_N(f2))
				while (IS_N(cut_flags(c, pos)))
					pos++;
			else
				while (is_other(cut_flags(c, pos)))
					pos++;
			cut_at(c, pos);
			continue;
		}
		size_t ws = 0;
		while (IS_WS(cut_flags(c, pos + ws)))
			ws++;
		if (ws > 1 && pos + ws < c->end)
			pos += ws - 1;   /* \s+(?!\S): leave one for the next word */
		else if (ws > 0)
			pos += ws;
		else
			pos++;
		cut_at(c, pos);
	}
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,MAXDIG}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static void split_llama3(struct cut *c, size_t pos, size_t maxdig)
{
	while (pos < c->end) {
		uint32_t cp = c->cpt[pos];
		uint8_t f = c->fl[pos];
		size_t k = contraction(c, pos, true);
		if (k) {
			pos += k;
			cut_at(c, pos);
			continue;
		}
		if (cp != '\r' && cp != '\n' && !IS_N(f) && (IS_L(f) || IS_L(cut_flags(c, pos + 1)))) {
			pos++;
			while (IS_L(cut_flags(c, pos)))
				pos++;
			cut_at(c, pos);
			continue;
		}
		if (IS_N(f)) {
			size_t ini = pos;
			while (IS_N(cut_flags(c, pos))) {
				pos++;
				if (pos - ini >= maxdig) {
					cut_at(c, pos);
					ini = pos;
				}
			}
			cut_at(c, pos);
			continue;
		}
		uint8_t f2 = cp == ' ' ? cut_flags(c, pos + 1) : f;
		/* llama.cpp tests the current code point for existence here, so a
		 * space at the end of a segment takes this branch alone */
		if (f2 == F_NONE || is_other(f2)) {
			pos += cp == ' ';
			while (is_other(cut_flags(c, pos)))
				pos++;
			while (cut_cpt(c, pos) == '\r' || cut_cpt(c, pos) == '\n')
				pos++;
			cut_at(c, pos);
			continue;
		}
		size_t ws = 0, last_nl = 0;
		while (pos + ws < c->end && IS_WS(c->fl[pos + ws])) {
			if (c->cpt[pos + ws] == '\r' || c->cpt[pos + ws] == '\n')
				last_nl = pos + ws + 1;
			ws++;
		}
		if (last_nl)
			pos = last_nl;
		else if (ws > 1 && pos + ws < c->end)
			pos += ws - 1;
		else if (ws > 0)
			pos += ws;
		else
			pos++;
		cut_at(c, pos);
	}
}

/* Runs regex step ST over every segment of [in, in+n_in) (lengths in code
 * points), appending the pieces to out.  Returns the new count or -1. */
static long split_regex(const struct step *st, struct pretok_work *w, const uint32_t *in, size_t n_in,
			uint32_t *out, char *err, size_t errlen)
{
	pcre2_match_data *md = w->md;
	size_t n_out = 0, cpt_start = 0, byte_start = 0;
	const bool wide = st->kind == STEP_WIDE;
	const unsigned char *subject_base = wide ? (const unsigned char *)w->wide : w->collapsed;

	for (size_t s = 0; s < n_in; s++) {
		size_t seg = in[s];
		size_t seg_bytes;
		if (wide) {
			/* byte length of this segment in the wide text: count its
			 * code points' lead bytes */
			size_t b = byte_start, k = 0;
			while (k < seg) {
				b++;
				while (((unsigned char)w->wide[b] & 0xc0) == 0x80)
					b++;
				k++;
			}
			seg_bytes = b - byte_start;
		} else {
			seg_bytes = seg;
		}
		const unsigned char *subj = subject_base + byte_start;
		size_t at = 0;          /* bytes into the segment */
		size_t at_cpt = 0;      /* the same position in code points */
		for (;;) {
			int rc = pcre2_match(st->code, subj, seg_bytes, at, wide ? PCRE2_NO_UTF_CHECK : 0, md,
					     w->mctx);
			if (rc == PCRE2_ERROR_NOMATCH)
				break;
			if (rc < 0) {
				char msg[128];
				pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof msg);
				if (err && errlen)
					snprintf(err, errlen, "pre-tokenizer: %s", msg);
				return -1;
			}
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
			size_t m0 = ov[0], m1 = ov[1];
			if (m1 <= m0) {
				/* none of our patterns matches empty; never loop */
				if (m0 >= seg_bytes)
					break;
				at = m0 + 1;
				while (wide && at < seg_bytes && (subj[at] & 0xc0) == 0x80)
					at++;
				continue;
			}
			size_t c0 = m0, c1 = m1;
			if (wide) {
				c0 = at_cpt;
				for (size_t b = at; b < m0; b++)
					c0 += (subj[b] & 0xc0) != 0x80;
				c1 = c0;
				for (size_t b = m0; b < m1; b++)
					c1 += (subj[b] & 0xc0) != 0x80;
			}
			if (c0 > at_cpt)
				out[n_out++] = (uint32_t)(c0 - at_cpt);
			out[n_out++] = (uint32_t)(c1 - c0);
			at = m1;
			at_cpt = c1;
		}
		if (at_cpt < seg)
			out[n_out++] = (uint32_t)(seg - at_cpt);
		cpt_start += seg;
		byte_start += seg_bytes;
	}
	(void)cpt_start;
	return (long)n_out;
}

static int fail(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
	return PRETOK_ERR_NOMEM;
}

int pretok_split(const pretok *pt, struct pretok_work *w, const char *text, size_t len,
		 char *err, size_t errlen)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t n = 0, u = 0;

	w->n_words = 0;
	w->text = "";
	w->text_len = 0;
	if (len == 0)
		return 0;
	if (len > (1u << 30))
		return fail(err, errlen, "text too long to tokenize (over 1 GiB)") == PRETOK_ERR_NOMEM ? PRETOK_ERR_LIMIT : 0;

	/* decode: at most one code point per byte, at most 3 output bytes per
	 * input byte (a lone bad byte becomes U+FFFD) */
	if (!grow((void **)&w->cpts, &w->cap_cpts, len + 1, sizeof *w->cpts) ||
	    !grow((void **)&w->u8, &w->cap_u8, 3 * len + 4, 1))
		return fail(err, errlen, "out of memory");
	size_t cap = w->cap_cpts;
	uint32_t *p;
	if (!(p = eng_realloc(w->off, cap * sizeof *p)))
		return fail(err, errlen, "out of memory");
	w->off = p;
	if (!(p = eng_realloc(w->seg_a, cap * sizeof *p)))
		return fail(err, errlen, "out of memory");
	w->seg_a = p;
	if (!(p = eng_realloc(w->seg_b, cap * sizeof *p)))
		return fail(err, errlen, "out of memory");
	w->seg_b = p;
	uint8_t *fl = eng_realloc(w->flags, cap);
	if (!fl)
		return fail(err, errlen, "out of memory");
	w->flags = fl;
	/* each word is at least one byte of text: 2 words per byte is ample */
	if (!(p = eng_realloc(w->words, 2 * cap * sizeof *p)))
		return fail(err, errlen, "out of memory");
	w->words = p;

	for (size_t i = 0; i < len;) {
		uint32_t c;
		size_t used;
		if (s[i] < 0x80) {
			c = s[i];
			used = 1;
		} else {
			c = unicode_decode_lenient(s + i, len - i, &used);
		}
		w->cpts[n] = c;
		w->flags[n] = unicode_flags(c);
		w->off[n] = (uint32_t)u;
		n++;
		if (c < 0x80)
			w->u8[u++] = (char)c;
		else
			u += unicode_encode(c, w->u8 + u);
		i += used;
	}
	w->off[n] = (uint32_t)u;
	w->text = w->u8;
	w->text_len = u;

	if (pt->need_collapsed) {
		unsigned char *cl = eng_realloc(w->collapsed, cap);
		if (!cl)
			return fail(err, errlen, "out of memory");
		w->collapsed = cl;
		for (size_t i = 0; i < n; i++) {
			uint32_t c = w->cpts[i];
			uint8_t f = w->flags[i];
			if (c < 0x80)
				cl[i] = (unsigned char)c;
			else if (IS_WS(f))
				cl[i] = 0x0B;
			else
				switch (f & UNICODE_CAT_MASK) {
				case UNICODE_NUMBER: cl[i] = 0xD1; break;
				case UNICODE_LETTER: cl[i] = 0xD2; break;
				case UNICODE_PUNCT: cl[i] = 0xD3; break;
				case UNICODE_MARK: cl[i] = 0xD4; break;
				case UNICODE_SYMBOL: cl[i] = 0xD5; break;
				default: cl[i] = 0xD0; break;
				}
		}
	}
	if (pt->need_wide) {
		if (!grow((void **)&w->wide, &w->cap_wide, 4 * n + 4, 1))
			return fail(err, errlen, "out of memory");
		size_t b = 0;
		for (size_t i = 0; i < n; i++) {
			uint32_t c = w->cpts[i];
			if (c > 0x7f && IS_WS(w->flags[i]))
				c = 0x0B;
			else if ((c >= 0xD800 && c <= 0xDFFF) || c >= UNICODE_MAX_CPT)
				c = UNICODE_REPLACEMENT;  /* PCRE2 cannot hold these */
			b += unicode_encode(c, w->wide + b);
		}
		w->wide[b] = 0;
	}
	if ((pt->need_collapsed || pt->need_wide) && !w->md) {
		w->md = pcre2_match_data_create(1, NULL);
		w->mctx = pcre2_match_context_create(NULL);
		w->jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
		if (!w->md || !w->mctx || !w->jit)
			return fail(err, errlen, "out of memory");
		pcre2_jit_stack_assign(w->mctx, NULL, w->jit);
	}

	uint32_t *in = w->seg_a, *out = w->seg_b;
	size_t n_in = 1;
	in[0] = (uint32_t)n;
	for (int k = 0; k < pt->n_steps; k++) {
		const struct step *st = &pt->steps[k];
		long n_out;
		if (st->kind == STEP_COLLAPSED || st->kind == STEP_WIDE) {
			n_out = split_regex(st, w, in, n_in, out, err, errlen);
			if (n_out < 0)
				return PRETOK_ERR_LIMIT;
		} else {
			struct cut c = {w->cpts, w->flags, 0, 0, out, 0};
			size_t start = 0;
			for (size_t i = 0; i < n_in; i++) {
				c.end = start + in[i];
				c.prev = start;
				if (st->kind == STEP_GPT2)
					split_gpt2(&c, start);
				else
					split_llama3(&c, start, st->kind == STEP_LLAMA3 ? 3 : 1);
				start = c.end;
			}
			n_out = (long)c.n_out;
		}
		uint32_t *t = in;
		in = out;
		out = t;
		n_in = (size_t)n_out;
	}

	size_t start = 0;
	for (size_t i = 0; i < n_in; i++) {
		size_t b0 = w->off[start], b1 = w->off[start + in[i]];
		w->words[2 * i] = (uint32_t)b0;
		w->words[2 * i + 1] = (uint32_t)(b1 - b0);
		start += in[i];
	}
	w->n_words = n_in;
	return 0;
}
