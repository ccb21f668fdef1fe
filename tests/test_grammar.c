/*
 * test_grammar.c - GBNF parsing (engine/gbnf.c) and the grammar matcher
 * (engine/grammar.c).
 *
 *  - refusals: each malformed grammar gives GBNF_E_SYNTAX and a message
 *    naming the problem (and its line where it has one);
 *  - sentences: accept/reject tables of strings for small grammars that
 *    cover every construct (literals, escapes, classes, negation, `.`,
 *    groups, * + ? {m} {m,} {m,n}, empty alternatives, Unicode);
 *  - UTF-8 split across tokens: a pending character is allowed only when
 *    some class can still complete it;
 *  - the token mask: on a synthetic vocabulary (ASCII pieces, multi-byte
 *    characters, lone lead and continuation bytes, control and
 *    end-of-generation tokens, long tokens), grammar_mask() equals
 *    grammar_token_ok() for every token at every step of random walks, and
 *    the text each walk produces is a sentence of the grammar;
 *  - tokens <[id]> and !<[id]>;
 *  - limits: a deep nesting stops with GRAMMAR_E_LIMIT, not a crash;
 *  - every .gbnf file under grammars/ of the llama.cpp tree ($TTYCHAT_LLAMACPP_SRC)
 *    parses, accepts a sample sentence where we have one, and survives
 *    random walks (that part is skipped without the tree).
 */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gbnf.h"
#include "gguf.h"
#include "grammar.h"
#include "sampler.h"
#include "tokenizer.h"
#include "testutil.h"

static struct gbnf *parse(const char *text, char *err, size_t errlen)
{
	struct gbnf *g = NULL;
	int rc = gbnf_parse(text, strlen(text), NULL, NULL, 0, &g, err, errlen);
	return rc == GBNF_OK ? g : NULL;
}

/* Whether TEXT is a complete sentence of grammar G. */
static int sentence(const struct gbnf *g, const char *text, size_t len)
{
	grammar *m = grammar_new(g, NULL, NULL);
	if (!m)
		return -1;
	int ok = grammar_accept_text(m, text, len) == GRAMMAR_OK && grammar_can_end(m);
	grammar_free(m);
	return ok;
}

static void check_refusals(void)
{
	static const struct {
		const char *text, *want;
	} bad[] = {
		{"root ::= foo\n", "line 1: rule 'foo' is used but not defined"},
		{"item ::= \"a\"\n", "no 'root' rule"},
		{"root ::= root \"a\" | \"b\"\n", "left-recursive"},
		{"root ::= x\nx ::= y? root \"a\"\ny ::= \"b\"\n", "left-recursive"},
		{"root ::= ([ ]*)*\n", "left-recursive"},
		{"root ::= \"a\\q\"\n", "unknown escape"},
		{"root ::= \"abc\n", "line 1: unterminated string literal"},
		{"root ::= [abc\n", "unterminated character class"},
		{"root ::= [z-a]\n", "reversed"},
		{"root ::= \"a\"{20000}\n", "repetition count over"},
		{"root ::= \"a\"{3,2}\n", "maximum below its minimum"},
		{"root ::= \"a\"\nroot ::= \"b\"\n", "line 2: rule 'root' is defined twice"},
		{"root ::= (\"a\"\n\nother ::= \"b\"\n", "line 3"},
		{"root ::= \"a\" )\n", "')' without '('"},
		{"root ::= * \"a\"\n", "nothing before it"},
		{"root ::= \"\\x4\"\n", "hex digits"},
		{"root ::= \"\\U00110000\"\n", "past U+10FFFF"},
		{"root ::= \"\xc3\x28\"\n", "invalid UTF-8"},
		{"root \"a\"\n", "expected '::='"},
		{"root ::= <think>\n", "not a single token"},
		{"\n\nroot ::= \"a\" @\n", "line 3: unexpected '@'"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char err[256] = "";
		struct gbnf *g = parse(bad[i].text, err, sizeof err);
		CHECK(!g, "grammar %zu was accepted: %s", i, bad[i].text);
		CHECK(strstr(err, bad[i].want), "grammar %zu: message '%s' lacks '%s'", i, err, bad[i].want);
		gbnf_free(g);
	}
	/* ids past the vocabulary */
	struct gbnf *g = NULL;
	char err[256];
	const char *t = "root ::= <[70000]>\n";
	CHECK(gbnf_parse(t, strlen(t), NULL, NULL, 1000, &g, err, sizeof err) == GBNF_E_SYNTAX && !g &&
		      strstr(err, "past the vocabulary"),
	      "token id past the vocabulary: %s", err);
}

struct case_ {
	const char *grammar;
	const char *yes[8];
	const char *no[8];
};

static void check_sentences(void)
{
	static const struct case_ cases[] = {
		{"root ::= \"ab\" | \"c\"\n", {"ab", "c"}, {"", "a", "abc", "b", "cc"}},
		{"root ::= [a-c]+ \"!\"?\n", {"a", "abc!", "cccc"}, {"", "!", "ad", "a!!"}},
		{"root ::= [^a-c\\n]*\n", {"", "xyz", "\xc3\xa9\xe6\x97\xa5"}, {"a", "xa", "\n"}},
		{"root ::= .\n", {"a", "\xe6\x97\xa5", "\xf0\x9f\x98\x80"}, {"", "ab"}},
		{"root ::= \"x\"{3}\n", {"xxx"}, {"xx", "xxxx"}},
		{"root ::= \"x\"{2,}\n", {"xx", "xxxxxxx"}, {"x", ""}},
		{"root ::= \"x\"{0,2} \"y\"\n", {"y", "xy", "xxy"}, {"xxxy", "x"}},
		{"root ::= (\"ab\" | \"c\"){1,3}\n", {"ab", "cab", "abcab"}, {"", "abcabc", "a"}},
		{"root ::= \"a\" (\n  \"b\" |\n  \"c\" # comment\n)* \"d\"\n", {"ad", "abcbd"}, {"a", "abd d"}},
		{"root ::= | x\nx ::= \"1\"\n", {"", "1"}, {"11"}},
		{"root ::= \"\\x41\\u00e9\\U0001F600\\n\\t\\\\\\\"\"\n", {"A\xc3\xa9\xf0\x9f\x98\x80\n\t\\\""}, {"A"}},
		{"root ::= [\\]\\[\\-]+\n", {"[]-", "]"}, {"a"}},
		{"root ::= [\xe3\x81\x81-\xe3\x82\x9f]+\n", {"\xe3\x81\x82\xe3\x81\x84"}, {"a", "\xe3\x82\xa2"}},
		{"root ::= ws \"{\" ws \"}\" ws\nws ::= [ \\t\\n]*\n", {"{}", " { \n} "}, {"{", "}"}},
		{"root-rule_2 ::= \"a\"\nroot ::= root-rule_2 root-rule_2\n", {"aa"}, {"a"}},
		{"root ::= (\"a\" | \"a\" \"b\" | \"a\")*\n", {"", "aab", "ababa"}, {"b", "abb"}},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char err[256] = "";
		struct gbnf *g = parse(cases[i].grammar, err, sizeof err);
		CHECK(g, "case %zu does not parse: %s", i, err);
		if (!g)
			continue;
		for (int k = 0; k < 8 && cases[i].yes[k]; k++)
			CHECK(sentence(g, cases[i].yes[k], strlen(cases[i].yes[k])) == 1, "case %zu rejects '%s'", i,
			      cases[i].yes[k]);
		for (int k = 0; k < 8 && cases[i].no[k]; k++)
			CHECK(sentence(g, cases[i].no[k], strlen(cases[i].no[k])) == 0, "case %zu accepts '%s'", i,
			      cases[i].no[k]);
		gbnf_free(g);
	}
}

static void check_split_utf8(void)
{
	struct gbnf *g = parse("root ::= \"\xc3\xa9\" \"x\"\n", NULL, 0);
	CHECK(g, "é grammar");
	if (!g)
		return;
	grammar *m = grammar_new(g, NULL, NULL);
	CHECK(grammar_accept_text(m, "\xc3", 1) == GRAMMAR_OK, "lead byte of é pending");
	CHECK(!grammar_can_end(m), "a pending character cannot end");
	CHECK(grammar_accept_text(m, "\xa8", 1) == GRAMMAR_E_REJECT, "è is not é");
	CHECK(grammar_accept_text(m, "\xa9x", 2) == GRAMMAR_OK && grammar_can_end(m), "é then x");
	grammar_free(m);
	m = grammar_new(g, NULL, NULL);
	CHECK(grammar_accept_text(m, "\xe3", 1) == GRAMMAR_E_REJECT, "a 3-byte lead cannot start é");
	CHECK(grammar_accept_text(m, "\xa9", 1) == GRAMMAR_E_REJECT, "a lone continuation byte");
	CHECK(grammar_accept_text(m, "\xc0\x80", 2) == GRAMMAR_E_REJECT, "an overlong NUL");
	grammar_free(m);
	gbnf_free(g);

	/* a negated class: the pending lead byte of any 2-byte character is
	 * fine, of a character the class excludes too unless all are excluded */
	g = parse("root ::= [^\\u0080-\\u07FF]\n", NULL, 0);
	m = grammar_new(g, NULL, NULL);
	CHECK(grammar_accept_text(m, "\xc3", 1) == GRAMMAR_E_REJECT, "every 2-byte character is excluded");
	CHECK(grammar_accept_text(m, "\xe6\x97", 2) == GRAMMAR_OK, "3-byte characters remain");
	grammar_free(m);
	gbnf_free(g);
}

/* ---- synthetic vocabulary and random walks ---- */

static uint64_t rng = 0x1234567;
static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

struct vocab {
	uint32_t n;
	char *piece[4096];
	uint32_t len[4096];
	uint8_t kind[4096];
};

static void vadd(struct vocab *v, const char *s, uint32_t len, uint8_t kind)
{
	v->piece[v->n] = malloc(len ? len : 1);
	memcpy(v->piece[v->n], s, len);
	v->len[v->n] = len;
	v->kind[v->n++] = kind;
}

static void make_vocab(struct vocab *v)
{
	static const char *words[] = {"{", "}", "[", "]", "\"", ":", ",", " ", "\n", "\": ", "\",", "{\"",
				      "true", "false", "null", "-", ".", "e", "E", "+", "\\", "\\n", "\\\"", "u",
				      "x", "=", "(", ")", "*", "/", "1.", "e4", "Nf3", "O-O", "- ", "int", "return",
				      ";", "a", "ab", "abc", "hello", " world", "12", "3", "0", "07", "\xc3\xa9",
				      "\xe6\x97\xa5\xe6\x9c\xac", "\xe3\x81\x82", "\xf0\x9f\x98\x80", "\t", "  ",
				      "\"}", "\"]", "}\n", "if", "while", "\xe3\x80\x81"};
	v->n = 0;
	for (size_t i = 0; i < sizeof words / sizeof *words; i++)
		vadd(v, words[i], (uint32_t)strlen(words[i]), GRAMMAR_TOK_TEXT);
	/* every single byte: lone lead and continuation bytes too */
	for (int b = 1; b < 256; b++) {
		char c = (char)b;
		vadd(v, &c, 1, GRAMMAR_TOK_TEXT);
	}
	/* random short strings over a JSON-ish alphabet */
	const char alpha[] = "abc{}[]\":, 0123456789.-e\\n";
	for (int i = 0; i < 600; i++) {
		char s[8];
		uint32_t l = 1 + rnd(6);
		for (uint32_t k = 0; k < l; k++)
			s[k] = alpha[rnd(sizeof alpha - 1)];
		vadd(v, s, l, GRAMMAR_TOK_TEXT);
	}
	/* a long token (outside the trie) */
	char lng[300];
	memset(lng, ' ', sizeof lng);
	vadd(v, lng, sizeof lng, GRAMMAR_TOK_TEXT);
	vadd(v, "<|im_start|>", 12, GRAMMAR_TOK_CONTROL);
	vadd(v, "<|im_end|>", 10, GRAMMAR_TOK_EOG);
	vadd(v, "", 0, GRAMMAR_TOK_TEXT);
}

static void free_vocab(struct vocab *v)
{
	for (uint32_t i = 0; i < v->n; i++)
		free(v->piece[i]);
}

/* Random walks through G: at each step the mask must equal the one-by-one
 * checks; the tokens chosen must make a sentence when the walk ends. */
static void walks(const struct gbnf *g, const grammar_vocab *gv, const struct vocab *v, const char *name, int n_walks,
		  int max_steps)
{
	float *logits = malloc(v->n * sizeof *logits);
	char *text = malloc(64 * 1024);
	int mism = 0, bad_text = 0, ended = 0;
	for (int w = 0; w < n_walks; w++) {
		grammar *m = grammar_new(g, gv, NULL);
		if (!m) {
			CHECK(0, "%s: grammar_new", name);
			break;
		}
		size_t tl = 0;
		for (int step = 0; step < max_steps; step++) {
			for (uint32_t i = 0; i < v->n; i++)
				logits[i] = 0;
			int64_t na = grammar_mask(m, logits);
			if (na <= 0) {
				CHECK(na == 0, "%s: mask error %lld", name, (long long)na);
				CHECK(0, "%s: dead end after '%.*s'", name, (int)tl, text);
				break;
			}
			int64_t count = 0;
			uint32_t pick = 0;
			for (uint32_t i = 0; i < v->n; i++) {
				bool ok = grammar_token_ok(m, (int32_t)i);
				if (ok != (logits[i] == 0)) {
					if (mism++ < 5)
						fprintf(stderr, "%s: token %u '%.*s': mask %d, check %d after '%.*s'\n", name,
							i, (int)v->len[i], v->piece[i], logits[i] == 0, ok, (int)tl, text);
				}
				/* reservoir pick among the allowed */
				if (logits[i] == 0 && rnd((uint32_t)++count) == 0)
					pick = i;
			}
			CHECK(count == na, "%s: mask count %lld, %lld allowed", name, (long long)na, (long long)count);
			if (v->kind[pick] == GRAMMAR_TOK_EOG) {
				ended++;
				bad_text += sentence(g, text, tl) != 1;
				if (sentence(g, text, tl) != 1)
					fprintf(stderr, "%s: ended on a non-sentence '%.*s'\n", name, (int)tl, text);
				break;
			}
			CHECK(grammar_accept_token(m, (int32_t)pick) == GRAMMAR_OK, "%s: accept %u", name, pick);
			if (tl + v->len[pick] < 64 * 1024) {
				memcpy(text + tl, v->piece[pick], v->len[pick]);
				tl += v->len[pick];
			}
		}
		grammar_free(m);
	}
	CHECK(mism == 0, "%s: %d mask/check mismatches", name, mism);
	CHECK(bad_text == 0, "%s: %d walks ended on text that is not a sentence", name, bad_text);
	printf("%s: %d walks, %d ended by the grammar\n", name, n_walks, ended);
	free(logits);
	free(text);
}

static const char *const json_gbnf =
	"root   ::= object\n"
	"value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
	"object ::= \"{\" ws ( string \":\" ws value (\",\" ws string \":\" ws value)* )? \"}\" ws\n"
	"array  ::= \"[\" ws ( value (\",\" ws value)* )? \"]\" ws\n"
	"string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4}) )* \"\\\"\" ws\n"
	"number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws\n"
	"ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

static void check_walks(const struct vocab *v, const grammar_vocab *gv)
{
	static const char *const grammars[] = {
		"root ::= \"a\" [0-9]{1,3} (\",\" [0-9]+)* \"\\n\"\n",
		"root ::= [\xe3\x81\x81-\xe3\x82\x9f\xe4\xb8\x80-\xe9\xbf\xbf]+ \"\\n\"\n",
		"root ::= (\"\xc3\xa9\" | \"\xf0\x9f\x98\x80\" | [a-c])* \"!\"\n",
		"root ::= \"x\" .{2,5}\n",
	};
	char err[256];
	for (size_t i = 0; i < sizeof grammars / sizeof *grammars; i++) {
		struct gbnf *g = parse(grammars[i], err, sizeof err);
		CHECK(g, "walk grammar %zu: %s", i, err);
		char name[32];
		snprintf(name, sizeof name, "walk grammar %zu", i);
		if (g)
			walks(g, gv, v, name, 20, 40);
		gbnf_free(g);
	}
	struct gbnf *g = parse(json_gbnf, err, sizeof err);
	CHECK(g, "json grammar: %s", err);
	if (g) {
		CHECK(sentence(g, "{\"a\": [1, 2.5, \"x\\n\\u00e9\"], \"b\": {}}", 37) == 1, "json sample");
		CHECK(sentence(g, "{\"a\": [1, 2.5,]}", 16) == 0, "json trailing comma");
		walks(g, gv, v, "json", 30, 60);
	}
	gbnf_free(g);
}

static void check_tokens(const struct vocab *v, const grammar_vocab *gv)
{
	/* ids: 0 "{", 1 "}", control <|im_start|> and eog <|im_end|> at the end */
	uint32_t ctl = v->n - 3, eog = v->n - 2;
	char text[256];
	snprintf(text, sizeof text, "root ::= <[%u]> \"a\" !<[%u]>{2} <[%u]>\n", ctl, 0u, eog);
	char err[256];
	struct gbnf *g = NULL;
	CHECK(gbnf_parse(text, strlen(text), NULL, NULL, v->n, &g, err, sizeof err) == GBNF_OK, "token grammar: %s",
	      err);
	if (!g)
		return;
	grammar *m = grammar_new(g, gv, NULL);
	CHECK(grammar_token_ok(m, (int32_t)ctl) && !grammar_token_ok(m, 0) && !grammar_token_ok(m, (int32_t)eog),
	      "only the control token first");
	CHECK(grammar_accept_token(m, (int32_t)ctl) == GRAMMAR_OK, "accept control");
	CHECK(grammar_accept_text(m, "a", 1) == GRAMMAR_OK, "then a");
	CHECK(!grammar_token_ok(m, 0) && grammar_token_ok(m, 1) && grammar_token_ok(m, (int32_t)ctl),
	      "!<[0]>: anything but token 0");
	CHECK(!grammar_token_ok(m, (int32_t)eog), "!<[0]> does not admit end of generation");
	float *logits = calloc(v->n, sizeof *logits);
	CHECK(grammar_mask(m, logits) == (int64_t)v->n - 2 && isinf(logits[0]) && isinf(logits[eog]),
	      "mask of !<[0]>: all but token 0 and end of generation");
	CHECK(grammar_accept_token(m, 1) == GRAMMAR_OK && grammar_accept_token(m, 5) == GRAMMAR_OK, "two tokens");
	CHECK(grammar_token_ok(m, (int32_t)eog) && !grammar_can_end(m), "<[eog]> named");
	CHECK(grammar_accept_token(m, (int32_t)eog) == GRAMMAR_OK && grammar_can_end(m) && grammar_must_end(m),
	      "the end");
	free(logits);
	grammar_free(m);
	gbnf_free(g);

	/* a text token that spells "<|im_start|>" is not the control token */
	snprintf(text, sizeof text, "root ::= \"<|im_start|>\"\n");
	g = parse(text, err, sizeof err);
	m = grammar_new(g, gv, NULL);
	int32_t lt = -1;
	for (uint32_t i = 0; i < v->n && lt < 0; i++)
		if (v->len[i] == 1 && v->piece[i][0] == '<')
			lt = (int32_t)i;
	CHECK(!grammar_token_ok(m, (int32_t)ctl) && grammar_token_ok(m, lt), "control tokens are not text");
	grammar_free(m);
	gbnf_free(g);
}

static void check_limits(const grammar_vocab *gv)
{
	struct gbnf *g = parse("root ::= \"(\" root \")\" | \"x\"\n", NULL, 0);
	grammar *m = grammar_new(g, gv, NULL);
	int rc = GRAMMAR_OK;
	for (int i = 0; i < 10000 && rc == GRAMMAR_OK; i++)
		rc = grammar_accept_text(m, "(", 1);
	CHECK(rc == GRAMMAR_E_LIMIT, "deep nesting stops with a limit: %d", rc);
	grammar_free(m);
	gbnf_free(g);

	/* many alternatives that stay apart: capped, not exhausted */
	g = parse("root ::= x*\nx ::= [a-z] | [a-z] [a-z] | [a-z] [a-z] [a-z] | [a-z]{4} | [a-z]{5}\n", NULL, 0);
	m = grammar_new(g, gv, NULL);
	rc = GRAMMAR_OK;
	for (int i = 0; i < 200 && rc == GRAMMAR_OK; i++)
		rc = grammar_accept_text(m, "a", 1);
	CHECK(rc == GRAMMAR_OK, "right recursion with merging stacks stays small: %d", rc);
	grammar_free(m);
	gbnf_free(g);

	/* a counting grammar: every position is a new state of the mask's
	 * automaton, so it outgrows its limit and starts afresh, and the
	 * masks stay right */
	g = parse("root ::= [a-c]{0,9990} \"!\"\n", NULL, 0);
	m = grammar_new(g, gv, NULL);
	uint32_t nv = grammar_vocab_size(gv);
	float *logits = malloc(nv * sizeof *logits);
	int bad = 0;
	for (int i = 0; i < 3300 && m; i++) {
		for (uint32_t k = 0; k < nv; k++)
			logits[k] = 0;
		int64_t na = grammar_mask(m, logits);
		bad += na <= 0;
		if (i % 500 == 0 || i > 3290)
			for (uint32_t k = 0; k < nv; k++)
				bad += grammar_token_ok(m, (int32_t)k) != (logits[k] == 0);
		bad += grammar_accept_text(m, "abc", 3) != GRAMMAR_OK;
	}
	CHECK(bad == 0, "counting grammar past the automaton's limit: %d wrong", bad);
	CHECK(m && grammar_accept_text(m, "!", 1) == GRAMMAR_OK && grammar_can_end(m), "9900 letters then !");
	free(logits);
	grammar_free(m);
	gbnf_free(g);

	/* big repetition counts parse and match without deep recursion */
	g = parse("root ::= \"a\"{0,10000} \"b\"\n", NULL, 0);
	CHECK(g, "{0,10000}");
	char *s = malloc(10001);
	memset(s, 'a', 10000);
	s[10000] = 'b';
	CHECK(g && sentence(g, s, 10001) == 1 && sentence(g, s + 1, 10000) == 1, "10000 a then b");
	free(s);
	gbnf_free(g);
}

/* ---- hostile grammar texts ---- */

/* Mutations of a real grammar (bytes flipped, deleted, duplicated, cut):
 * each either compiles or is refused with a message; what compiles
 * matches text and masks without crashing (the sanitizer build checks
 * the memory). */
static void check_mutations(const grammar_vocab *gv)
{
	size_t base = strlen(json_gbnf);
	char *buf = malloc(base * 2 + 16);
	float *logits = malloc(grammar_vocab_size(gv) * sizeof *logits);
	int compiled = 0, refused = 0, silent = 0;
	static const char bytes[] = "()[]{}|*+?\"\\-^.:=# \n\t<>!x09a";
	for (int it = 0; it < 3000; it++) {
		memcpy(buf, json_gbnf, base);
		size_t n = base;
		for (int k = 0, nm = 1 + (int)rnd(4); k < nm; k++) {
			size_t at = rnd((uint32_t)n);
			switch (rnd(4)) {
			case 0: buf[at] = bytes[rnd(sizeof bytes - 1)]; break;
			case 1: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
			case 2: memmove(buf + at + 1, buf + at, n - at); buf[at] = bytes[rnd(sizeof bytes - 1)]; n++; break;
			case 3: n = at + 1; break;
			}
		}
		char err[256] = "";
		struct gbnf *g = NULL;
		int rc = gbnf_parse(buf, n, NULL, NULL, 0, &g, err, sizeof err);
		if (rc) {
			refused++;
			silent += !err[0];
			continue;
		}
		compiled++;
		grammar *m = grammar_new(g, gv, NULL);
		if (m) {
			(void)grammar_accept_text(m, "{\"a\": [1, \"x\"]}", 15);
			for (uint32_t i = 0; i < grammar_vocab_size(gv); i++)
				logits[i] = 0;
			(void)grammar_mask(m, logits);
			grammar_free(m);
		}
		gbnf_free(g);
	}
	CHECK(silent == 0, "%d refusals without a message", silent);
	CHECK(compiled > 0 && refused > 0, "mutations: %d compiled, %d refused", compiled, refused);
	printf("mutated grammars: %d compiled, %d refused\n", compiled, refused);
	free(buf);
	free(logits);
}

/* ---- the sampler under a grammar ---- */

/* sampler_sample_grammar() over random logits, at several temperatures
 * and truncations: the token it returns is always one the grammar
 * allows; greedy picks the best allowed token; a dead end says so. */
static void check_sampler(const struct vocab *v, const grammar_vocab *gv)
{
	char err[256];
	struct gbnf *g = parse(json_gbnf, err, sizeof err);
	float *logits = malloc(v->n * sizeof *logits), *copy = malloc(v->n * sizeof *copy);
	static const struct { float temp; int top_k; float top_p, min_p; } cfg[] = {
		{0, 0, 1, 0}, {1, 0, 1, 0}, {1, 40, 0.95f, 0.05f}, {2, 5, 1, 0}, {0.7f, 0, 0.5f, 0.2f},
	};
	int bad = 0, greedy_bad = 0, masked = 0, steps = 0;
	for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
		struct engine_sampling p;
		engine_sampling_default(&p);
		p.temperature = cfg[c].temp;
		p.top_k = cfg[c].top_k;
		p.top_p = cfg[c].top_p;
		p.min_p = cfg[c].min_p;
		p.seed = 42 + c;
		struct sampler smp;
		CHECK(sampler_init(&smp, &p, v->n) == 0, "sampler_init");
		grammar *m = grammar_new(g, gv, NULL);
		for (int step = 0; step < 200 && m; step++) {
			for (uint32_t i = 0; i < v->n; i++)
				logits[i] = copy[i] = (float)rnd(1000) / 100.0f;
			int grc = 0;
			int32_t id = sampler_sample_grammar(&smp, m, logits, NULL, 0, &grc);
			steps++;
			if (id < 0) {
				CHECK(0, "sampler: dead end (%d)", grc);
				break;
			}
			bad += !grammar_token_ok(m, id);
			if (cfg[c].temp <= 0) {
				/* the best allowed token (lowest id on ties) */
				int32_t best = -1;
				for (uint32_t i = 0; i < v->n; i++)
					if (grammar_token_ok(m, (int32_t)i) && (best < 0 || copy[i] > copy[best]))
						best = (int32_t)i;
				greedy_bad += id != best;
			}
			if (v->kind[id] == GRAMMAR_TOK_EOG) {
				grammar_free(m);
				m = grammar_new(g, gv, NULL);
				continue;
			}
			CHECK(grammar_accept_token(m, id) == GRAMMAR_OK, "sampler: accept");
		}
		masked += (int)smp.n_masks;
		grammar_free(m);
		sampler_free(&smp);
	}
	CHECK(bad == 0, "sampler returned %d tokens the grammar refuses", bad);
	CHECK(greedy_bad == 0, "greedy missed the best allowed token %d times", greedy_bad);
	CHECK(masked > 0, "the mask path was never taken");
	printf("sampler: %d steps, %d masked, all allowed\n", steps, masked);

	/* a grammar no token can continue: "\x01" is in no piece but the
	 * single byte, which the vocab has; take a code point none has */
	struct gbnf *g2 = parse("root ::= \"\\U0010FFFF\"\n", err, sizeof err);
	grammar *m = grammar_new(g2, gv, NULL);
	struct engine_sampling p;
	engine_sampling_default(&p);
	struct sampler smp;
	sampler_init(&smp, &p, v->n);
	for (uint32_t i = 0; i < v->n; i++)
		logits[i] = 0;
	int grc = 1;
	/* U+10FFFF is \xf4\x8f\xbf\xbf: the lone bytes can spell it */
	int32_t id = sampler_sample_grammar(&smp, m, logits, NULL, 0, &grc);
	CHECK(id >= 0 && v->len[id] == 1 && (uint8_t)v->piece[id][0] == 0xf4, "a 4-byte character from byte tokens");
	grammar_free(m);
	gbnf_free(g2);
	g2 = parse("root ::= \"a\" | \"\\x00\"\n", err, sizeof err);
	m = grammar_new(g2, gv, NULL);
	CHECK(grammar_accept_text(m, "a", 1) == GRAMMAR_OK && grammar_must_end(m), "must end");
	for (uint32_t i = 0; i < v->n; i++)
		logits[i] = 0;
	id = sampler_sample_grammar(&smp, m, logits, NULL, 0, &grc);
	CHECK(id >= 0 && v->kind[id] == GRAMMAR_TOK_EOG, "only the end is left: %d", id);
	grammar_free(m);
	gbnf_free(g2);
	/* a dead end: NUL is in no token */
	g2 = parse("root ::= \"\\x00\"\n", err, sizeof err);
	m = grammar_new(g2, gv, NULL);
	for (uint32_t i = 0; i < v->n; i++)
		logits[i] = 0;
	id = sampler_sample_grammar(&smp, m, logits, NULL, 0, &grc);
	CHECK(id == -1 && grc == 0, "a dead end: %d %d", id, grc);
	grammar_free(m);
	gbnf_free(g2);
	sampler_free(&smp);
	free(logits);
	free(copy);
	gbnf_free(g);
}

/* ---- real vocabularies (../shared/testdata/vocab) ---- */

/* Tokenizes a JSON text with vocabulary FILE and walks its tokens through
 * the JSON grammar: each is allowed by the mask and by the one-token
 * check, and the mask equals the one-token checks on a stride of the
 * vocabulary.  Then random walks over the allowed tokens end in sentences. */
static void check_real_vocab(const char *file)
{
	const char *dir = getenv("TTYCHAT_TESTDATA");
	char path[4096];
	snprintf(path, sizeof path, "%s/vocab/%s", dir && dir[0] ? dir : "../shared/testdata", file);
	char err[256];
	gguf_file *f = gguf_open(path, err, sizeof err);
	if (!f) {
		printf("skipping %s: %s\n", file, err);
		return;
	}
	tokenizer *tk = tok_load(f, err, sizeof err);
	gguf_close(f);
	CHECK(tk, "%s: %s", file, err);
	if (!tk)
		return;
	grammar_vocab *gv = grammar_vocab_from_tok(tk);
	CHECK(gv && grammar_vocab_size(gv) == tok_n_vocab(tk), "%s: vocab", file);
	/* SPM pieces carry the word's leading space: allow one */
	char gtext[2048];
	snprintf(gtext, sizeof gtext, "root ::= \" \"? object\n%s", strchr(json_gbnf, '\n') + 1);
	struct gbnf *g = parse(gtext, err, sizeof err);
	CHECK(g, "%s: grammar: %s", file, err);
	const char *json = "{\"name\": \"Zo\u00e9 \u65e5\u672c \U0001F600\", \"n\": [1, -2.5e3, true, null], "
			   "\"s\": \"a\\nb\\u00e9\"}";
	int32_t *ids = NULL;
	size_t n = 0, cap = 0;
	CHECK(tok_encode(tk, json, strlen(json), false, false, &ids, &n, &cap) == TOK_OK, "%s: encode", file);
	uint32_t nv = tok_n_vocab(tk);
	float *logits = malloc(nv * sizeof *logits);
	if (g && gv && logits) {
		grammar *m = grammar_new(g, gv, NULL);
		int mism = 0;
		for (size_t i = 0; i < n; i++) {
			for (uint32_t k = 0; k < nv; k++)
				logits[k] = 0;
			int64_t na = grammar_mask(m, logits);
			CHECK(na > 0 && logits[ids[i]] == 0, "%s: token %zu (%d) masked", file, i, ids[i]);
			CHECK(grammar_token_ok(m, ids[i]), "%s: token %zu (%d) refused", file, i, ids[i]);
			for (uint32_t k = (uint32_t)i % 7; k < nv; k += 7)
				mism += grammar_token_ok(m, (int32_t)k) != (logits[k] == 0);
			CHECK(grammar_accept_token(m, ids[i]) == GRAMMAR_OK, "%s: accept %zu", file, i);
		}
		CHECK(mism == 0, "%s: %d mask/check mismatches", file, mism);
		CHECK(grammar_can_end(m) && grammar_token_ok(m, tok_eos(tk)), "%s: the end of the object", file);
		grammar_free(m);

		/* random walks: biased towards short tokens so they can end */
		int ended = 0, bad = 0;
		for (int w = 0; w < 12; w++) {
			m = grammar_new(g, gv, NULL);
			char text[4096];
			size_t tl = 0;
			for (int step = 0; step < 150 && m; step++) {
				for (uint32_t k = 0; k < nv; k++)
					logits[k] = 0;
				if (grammar_mask(m, logits) <= 0) {
					CHECK(0, "%s: dead end", file);
					break;
				}
				uint32_t pick = 0, count = 0;
				for (uint32_t k = 0; k < nv; k++)
					if (logits[k] == 0 && rnd(++count) == 0)
						pick = k;
				/* after 60 steps prefer ending: closers and the end */
				if (step > 60 && grammar_can_end(m))
					pick = (uint32_t)tok_eos(tk);
				if (step > 60)
					for (const char *c = "\"]}"; *c && !grammar_can_end(m); c++) {
						int32_t id = tok_find(tk, c, 1);
						if (id >= 0 && logits[id] == 0) {
							pick = (uint32_t)id;
							break;
						}
					}
				if (tok_is_eog(tk, (int32_t)pick)) {
					ended++;
					bad += sentence(g, text, tl) != 1;
					break;
				}
				CHECK(grammar_accept_token(m, (int32_t)pick) == GRAMMAR_OK, "%s: walk accept", file);
				size_t pl;
				const char *pc = tok_piece(tk, (int32_t)pick, &pl);
				if (tl + pl < sizeof text) {
					memcpy(text + tl, pc, pl);
					tl += pl;
				}
			}
			grammar_free(m);
		}
		CHECK(bad == 0, "%s: %d walks ended outside the grammar", file, bad);
		printf("%s: %zu tokens of JSON followed; %d of 12 random walks ended\n", file, n, ended);
	}
	free(logits);
	free(ids);
	gbnf_free(g);
	grammar_vocab_free(gv);
	tok_free(tk);
}

/* ---- llama.cpp's grammars ---- */

static const struct {
	const char *file, *sample;
} samples[] = {
	{"arithmetic.gbnf", "x = 1\n(a)*b = 3\n"},
	{"c.gbnf", "int main(int argc){return argc;}"},
	{"chess.gbnf", "1. e4 e5\n2. Nf3 Nc6\n3. O-O a6\n"},
	{"english.gbnf", "Hello, world. 42!"},
	{"japanese.gbnf", "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf \xe6\x97\xa5\xe6\x9c\xac"},
	{"json.gbnf", "{\"a\": [1, -2.5e3, \"x\\\"\"], \"b\": null}"},
	{"json_arr.gbnf", "[\n1,\n{\"k\": true}]"},
	{"list.gbnf", "- one\n- two\n"},
};

static void check_llamacpp(const struct vocab *v, const grammar_vocab *gv)
{
	const char *src = getenv("TTYCHAT_LLAMACPP_SRC");
	if (!src || !src[0]) {
		printf("skipping llama.cpp's grammars: TTYCHAT_LLAMACPP_SRC is not set\n");
		return;
	}
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/grammars", src);
	DIR *d = opendir(dir);
	CHECK(d, "cannot open %s", dir);
	if (!d)
		return;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l < 5 || strcmp(e->d_name + l - 5, ".gbnf"))
			continue;
		char path[8192];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		FILE *f = fopen(path, "rb");
		CHECK(f, "open %s", path);
		if (!f)
			continue;
		static char buf[1 << 20];
		size_t len = fread(buf, 1, sizeof buf, f);
		fclose(f);
		char err[256] = "";
		struct gbnf *g = NULL;
		int rc = gbnf_parse(buf, len, NULL, NULL, 0, &g, err, sizeof err);
		CHECK(rc == GBNF_OK, "%s: %s", e->d_name, err);
		if (!g)
			continue;
		n++;
		for (size_t i = 0; i < sizeof samples / sizeof *samples; i++)
			if (!strcmp(samples[i].file, e->d_name))
				CHECK(sentence(g, samples[i].sample, strlen(samples[i].sample)) == 1, "%s rejects '%s'",
				      e->d_name, samples[i].sample);
		walks(g, gv, v, e->d_name, 10, 40);
		gbnf_free(g);
	}
	closedir(d);
	CHECK(n >= 8, "only %d grammars in %s", n, dir);
	printf("llama.cpp grammars: %d\n", n);
}

int main(void)
{
	check_refusals();
	check_sentences();
	check_split_utf8();
	static struct vocab v;
	make_vocab(&v);
	grammar_vocab *gv = grammar_vocab_new(v.n, (const char *const *)v.piece, v.len, v.kind);
	CHECK(gv, "vocab");
	if (gv) {
		check_walks(&v, gv);
		check_tokens(&v, gv);
		check_limits(gv);
		check_sampler(&v, gv);
		check_mutations(gv);
		check_llamacpp(&v, gv);
	}
	check_real_vocab("ggml-vocab-llama-spm.gguf");
	check_real_vocab("ggml-vocab-gpt-2.gguf");
	grammar_vocab_free(gv);
	free_vocab(&v);
	return tu_finish();
}
