/*
 * test_tui_md.c - the Markdown layout of replies (tui/md.c) and the code
 * lexer (tui/lex.c), without a screen: each construct's lines at a few
 * widths (golden text), the roles and attributes on them, the plain
 * rendering for terminals without colours, streaming a reply byte by byte
 * giving the same lines as laying it out whole, the lexer's classes per
 * language, and the lexer's cost per token (printed).
 */
#include "config.h"

#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lex.h"
#include "md.h"
#include "testutil.h"
#include "text.h"
#include "theme.h"

/* The doc's lines as text, one per line, trailing blanks dropped. */
static char *dump(const struct md_doc *d)
{
	size_t cap = d->blen + d->nln * 2 + 1, n = 0;
	char *o = malloc(cap);
	for (size_t i = 0; i < d->nln; i++) {
		size_t start = n;
		for (uint32_t k = 0; k < d->ln[i].nsp; k++) {
			const struct md_span *sp = &d->sp[d->ln[i].sp + k];
			memcpy(o + n, d->buf + sp->off, sp->len);
			n += sp->len;
		}
		while (n > start && o[n - 1] == ' ')
			n--;
		o[n++] = '\n';
	}
	o[n] = '\0';
	return o;
}

static char *render(const char *md, int width, unsigned flags)
{
	struct md_doc d = {0};
	md_doc_update(&d, md, strlen(md), width, flags);
	char *s = dump(&d);
	md_doc_free(&d);
	return s;
}

#define GOLDEN(md, width, flags, want)                                                         \
	do {                                                                                   \
		char *got_ = render(md, width, flags);                                         \
		CHECK(strcmp(got_, want) == 0, "%s at %d:\n--- got\n%s--- want\n%s", #md, width, got_, want); \
		free(got_);                                                                    \
	} while (0)

/* The span holding text WHAT: its role and attributes (-1 when none). */
static int span_of(const char *md, int width, unsigned flags, const char *what, int *attr)
{
	struct md_doc d = {0};
	md_doc_update(&d, md, strlen(md), width, flags);
	int role = -1;
	for (size_t i = 0; i < d.nsp; i++)
		if (d.sp[i].len == strlen(what) && memcmp(d.buf + d.sp[i].off, what, d.sp[i].len) == 0) {
			role = d.sp[i].role;
			*attr = d.sp[i].attr;
			break;
		}
	md_doc_free(&d);
	return role;
}

static void test_blocks(void)
{
	const unsigned A = MD_ASCII;
	GOLDEN("# Title\n\nSome text here.", 40, A, "Title\n\nSome text here.\n");
	GOLDEN("# Title\n\nSome text here.", 40, MD_PLAIN, "# Title\n\nSome text here.\n");
	GOLDEN("## Sub", 40, MD_PLAIN, "## Sub\n");
	GOLDEN("a **b** *c* ~~d~~ `e`", 40, A, "a b c d e\n");
	GOLDEN("a **b** *c* ~~d~~ `e`", 40, MD_PLAIN, "a **b** *c* ~~d~~ `e`\n");
	GOLDEN("one two three four five", 10, A, "one two\nthree four\nfive\n");
	GOLDEN("- one\n- two\n  - inner\n- three", 40, A, "- one\n- two\n  - inner\n- three\n");
	GOLDEN("- one\n- two", 40, 0, "\xe2\x80\xa2 one\n\xe2\x80\xa2 two\n");
	GOLDEN("- alpha beta gamma delta", 12, A, "- alpha beta\n  gamma\n  delta\n");
	GOLDEN("1. first\n2. second\n10. tenth", 40, A, "1. first\n2. second\n3. tenth\n");
	GOLDEN("3) x\n4) y", 40, A, "3) x\n4) y\n");
	GOLDEN("- [x] done\n- [ ] todo", 40, A, "- [x] done\n- [ ] todo\n");
	GOLDEN("> quoted text that wraps", 12, A, "> quoted\n> text that\n> wraps\n");
	GOLDEN("line one\nline two", 40, A, "line one\nline two\n");
	GOLDEN("> a\n>\n> b", 40, A, "> a\n>\n> b\n");
	GOLDEN("> - x\n> - y", 40, A, "> - x\n> - y\n");
	GOLDEN("para\n\n---\n\nafter", 10, A, "para\n\n----------\n\nafter\n");
	GOLDEN("see [the docs](http://x.y/z) now", 40, A, "see the docs <http://x.y/z> now\n");
	GOLDEN("<http://x.y>", 40, A, "http://x.y\n");
	GOLDEN("a &amp; b &lt; &#65;", 40, A, "a & b < A\n");
	GOLDEN("line one  \nline two", 40, A, "line one\nline two\n");
}

static void test_tables(void)
{
	const char *t = "| a | bb |\n|---|---:|\n| 1 | 2 |\n| 333 | 4 |";
	GOLDEN(t, 40, MD_ASCII, "a   | bb\n----+---\n1   |  2\n333 |  4\n");
	GOLDEN(t, 40, 0, "a   \xe2\x94\x82 bb\n\xe2\x94\x80\xe2\x94\x80\xe2\x94\x80\xe2\x94\x80\xe2\x94\xbc"
			 "\xe2\x94\x80\xe2\x94\x80\xe2\x94\x80\n1   \xe2\x94\x82  2\n333 \xe2\x94\x82  4\n");
	/* too wide: the narrow column keeps its width, the wide one wraps */
	const char *w = "| k | text |\n|---|---|\n| x | one two three four five six |";
	GOLDEN(w, 20, MD_ASCII, "k | text\n--+-----------------\nx | one two three\n  | four five six\n");
	GOLDEN(w, 12, MD_ASCII, "k | text\n--+---------\nx | one two\n  | three\n  | four\n  | five six\n");
	GOLDEN("| c |\n|:-:|\n| x |\n| yyy |", 40, MD_ASCII, " c\n---\n x\nyyy\n");
	int attr = 0;
	CHECK(span_of(t, 40, 0, "bb", &attr) == ROLE_TEXT && (attr & MDA_BOLD), "header cells are bold");
}

static void test_code(void)
{
	const char *c = "```c\nint x = 1; // one\n```";
	GOLDEN(c, 40, MD_ASCII, "c\nint x = 1; // one\n");
	GOLDEN(c, 40, MD_PLAIN, "```c\nint x = 1; // one\n```\n");
	GOLDEN("```\nplain\n```", 40, MD_ASCII, "plain\n");
	GOLDEN("```\na\tb\n```", 40, MD_ASCII, "a   b\n");
	GOLDEN("```\n0123456789abc\n```", 10, MD_ASCII, "0123456789\nabc\n");
	GOLDEN("```\n0123456789abc\n```", 10, MD_ASCII | MD_NOWRAP, "012345678\n");
	GOLDEN("- item\n\n  ```py\n  x = 1\n  ```", 40, MD_ASCII, "- item\n\n  py\n  x = 1\n");
	int attr = 0;
	CHECK(span_of(c, 40, 0, "int", &attr) == ROLE_CODE_KW, "a C keyword");
	CHECK(span_of(c, 40, 0, "// one", &attr) == ROLE_CODE_COMMENT, "a C comment");
	CHECK(span_of(c, 40, 0, "1", &attr) == ROLE_CODE_NUM, "a number");
	CHECK(span_of(c, 40, MD_PLAIN, "int x = 1; // one", &attr) == ROLE_CODE, "no classes when plain");
	CHECK(span_of("a `b` c", 40, 0, "b", &attr) == ROLE_CODE, "inline code in the code role");
	CHECK(span_of("# T", 40, 0, "T", &attr) == ROLE_HEADING && (attr & MDA_BOLD), "heading");
	CHECK(span_of("*i*", 40, 0, "i", &attr) == ROLE_TEXT && attr == MDA_ITALIC, "italic");
	CHECK(span_of("[t](u)", 40, 0, " <u>", &attr) == ROLE_LINK, "the URL in the link role");
	struct md_doc d = {0};
	md_doc_update(&d, c, strlen(c), 40, 0);
	CHECK(d.nln == 2 && (d.ln[0].flags & MDL_CODE) && (d.ln[1].flags & MDL_CODE), "code lines fill");
	md_doc_free(&d);
	size_t n = 0;
	static const char two[] = "```\na\n```\n\ntext\n\n~~~sh\nls -l\necho\n~~~\n";
	char *last = md_last_code(two, strlen(two), &n);
	CHECK(last && n == 11 && memcmp(last, "ls -l\necho\n", 11) == 0, "the last code block");
	free(last);
	CHECK(md_last_code("no code", 7, &n) == NULL, "no code block");
}

static const char sample[] =
	"# Plan\n\nHere is **the** plan, with `code` and a [link](http://example.com).\n\n"
	"1. First step that is long enough to wrap around\n2. Second\n   - nested *one*\n   - nested two\n\n"
	"> A quote\n> over lines\n\n| name | value | note |\n|------|------:|:----:|\n| a | 1 | x |\n"
	"| longer name | 22 | a long note that wraps |\n\n```python\ndef f(x):\n    # comment\n\n"
	"    return \"s\" + 1\n```\n\nAfter the code.\n\n- a\n\n- b\n\n---\n\nEnd ~~done~~.\n";

static bool same_doc(const struct md_doc *a, const struct md_doc *b)
{
	if (a->nln != b->nln || a->nsp != b->nsp || a->blen != b->blen)
		return false;
	for (size_t i = 0; i < a->nln; i++)
		if (a->ln[i].sp != b->ln[i].sp || a->ln[i].nsp != b->ln[i].nsp || a->ln[i].flags != b->ln[i].flags)
			return false;
	for (size_t i = 0; i < a->nsp; i++)
		if (a->sp[i].off != b->sp[i].off || a->sp[i].len != b->sp[i].len || a->sp[i].role != b->sp[i].role ||
		    a->sp[i].attr != b->sp[i].attr)
			return false;
	return memcmp(a->buf, b->buf, a->blen) == 0;
}

static void test_streaming(void)
{
	const int widths[] = {12, 30, 80};
	const unsigned flags[] = {0, MD_ASCII | MD_PLAIN, MD_NOWRAP};
	for (size_t wi = 0; wi < 3; wi++) {
		struct md_doc whole = {0}, st = {0};
		md_doc_update(&whole, sample, sizeof sample - 1, widths[wi], flags[wi]);
		size_t kept_ok = 1;
		for (size_t n = 1; n <= sizeof sample - 1; n++) {
			size_t before = st.mark_l;
			size_t nb = st.mark_b;
			char *first = malloc(nb + 1);
			memcpy(first, st.buf ? st.buf : "", nb);
			md_doc_update(&st, sample, text_stable_len(sample, n), widths[wi], flags[wi]);
			/* finished chunks keep their lines */
			if (st.mark_l < before || st.mark_b < nb || (nb && memcmp(first, st.buf, nb) != 0))
				kept_ok = 0;
			free(first);
		}
		CHECK(kept_ok, "finished blocks keep their layout at width %d", widths[wi]);
		CHECK(same_doc(&whole, &st), "streamed = whole at width %d", widths[wi]);
		CHECK(st.chunk > 0, "the sample is cut into chunks");
		md_doc_free(&whole);
		md_doc_free(&st);
	}
}

/* Each byte's class as a letter: . keyword string comment number + - */
static char *classes(const char *lang, const char *s)
{
	size_t n = strlen(s);
	unsigned char *cls = malloc(n + 1);
	char *out = malloc(n + 1);
	lex_classify(lex_find(lang, strlen(lang)), s, n, cls);
	for (size_t i = 0; i < n; i++)
		out[i] = (s[i] == ' ' && cls[i] == LEX_PLAIN) || s[i] == '\n' ? s[i] : ".ksc#+-"[cls[i]];
	out[n] = '\0';
	free(cls);
	return out;
}

#define CLASSES(lang, s, want)                                                              \
	do {                                                                                \
		char *got_ = classes(lang, s);                                              \
		CHECK(strcmp(got_, want) == 0, "%s: %s\n got %s\nwant %s", lang, s, got_, want); \
		free(got_);                                                                 \
	} while (0)

static void test_lexer(void)
{
	CLASSES("c", "int x = 42; // hi", "kkk . . ##. ccccc");
	CLASSES("c", "/* a */ return \"s\\\"\";", "ccccccc kkkkkk sssss.");
	CLASSES("c", "#include <x.h>", "kkkkkkkk .....");
	CLASSES("python", "def f(): # c\n  return 'x'", "kkk .... ccc\n  kkkkkk sss");
	CLASSES("py", "s = \"\"\"a\nb\"\"\"", ". . ssss\nssss");
	CLASSES("bash", "if [ -n \"$x\" ]; then echo ok # done\nfi", "kk . .. ssss .. kkkk kkkk .. cccccc\nkk");
	CLASSES("json", "{\"a\": [1.5, true, null]}", ".sss. .###. kkkk. kkkk..");
	CLASSES("js", "const s = `t`; // c", "kkkkk . . sss. cccc");
	CLASSES("rust", "fn main() { let v = 0x1f; }", "kk ...... . kkk . . ####. .");
	CLASSES("go", "func f() { return nil }", "kkkk ... . kkkkkk kkk .");
	CLASSES("diff", "@@ -1 +1 @@\n-old\n+new\n ctx", "kkkkkkkkkkk\n----\n++++\n ...");
	CHECK(lex_find("cobol", 5) == NULL, "unknown language");
	CHECK(lex_find("Python", 6) == lex_find("py", 2), "names are case-insensitive aliases");
}

/* The lexer's cost per token on a C block (printed for the record). */
static void bench_lexer(void)
{
	const char *line = "static int add(int a, int b) { return a + b * 42; /* sum */ } // \"x\"\n";
	size_t ll = strlen(line), reps = 4000, n = ll * reps;
	char *s = malloc(n);
	unsigned char *cls = malloc(n);
	for (size_t i = 0; i < reps; i++)
		memcpy(s + i * ll, line, ll);
	const struct lex_lang *c = lex_find("c", 1);
	struct timespec t0, t1;
	size_t tokens = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int r = 0; r < 10; r++)
		tokens += lex_classify(c, s, n, cls);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
	printf("lexer: %zu tokens, %.1f ns per token (%.2f ns per byte)\n", tokens, ns / (double)tokens,
	       ns / (double)(n * 10));
	CHECK(tokens > 0, "the bench lexed something");
	free(s);
	free(cls);
}

int main(void)
{
	if (!setlocale(LC_CTYPE, "C.UTF-8") && !setlocale(LC_CTYPE, "C.utf8")) {
		printf("SKIP: no C.UTF-8 locale\n");
		return 77;
	}
	test_blocks();
	test_tables();
	test_code();
	test_streaming();
	test_lexer();
	bench_lexer();
	return tu_finish();
}
