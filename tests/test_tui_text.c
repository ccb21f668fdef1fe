/*
 * test_tui_text.c - display clusters, sanitising and wrapping by display
 * width (tui/text.c): control characters and escapes become placeholders,
 * invalid UTF-8 becomes U+FFFD, wide and combining characters have the
 * right widths, words wrap, fences mark code, and wrapping a streamed text
 * line by line equals wrapping it whole.
 */
#include "config.h"

#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "text.h"

static struct text_cluster one(const char *s, unsigned flags)
{
	struct text_cluster c;
	text_cluster_next(s, strlen(s), 0, flags, &c);
	return c;
}

static void test_clusters(void)
{
	struct text_cluster c = one("a", 0);
	CHECK(c.kind == TC_PRINT && c.width == 1 && c.len == 1 && !c.shown[0], "plain a");
	c = one("\x1b[2J", 0);
	CHECK(c.kind == TC_CTRL && strcmp(c.shown, "^[") == 0 && c.width == 2 && c.len == 1, "ESC -> ^[ (%s)", c.shown);
	c = one("\x07", 0);
	CHECK(c.kind == TC_CTRL && strcmp(c.shown, "^G") == 0, "BEL -> ^G");
	c = one("\x7f", 0);
	CHECK(c.kind == TC_CTRL && strcmp(c.shown, "^?") == 0, "DEL -> ^?");
	c = one("\xc2\x9b" "31m", 0);
	CHECK(c.kind == TC_CTRL && strcmp(c.shown, "<U+009B>") == 0 && c.len == 2 && c.width == 8,
	      "C1 CSI -> <U+009B> (%s)", c.shown);
	c = one("\xe2\x80\xae", 0);
	CHECK(c.kind == TC_CTRL && strcmp(c.shown, "<U+202E>") == 0, "RLO is a placeholder");
	c = one("\xff", 0);
	CHECK(c.kind == TC_BAD && strcmp(c.shown, "\xef\xbf\xbd") == 0 && c.len == 1 && c.width == 1, "0xff -> U+FFFD");
	c = one("\xc0\xaf", 0);
	CHECK(c.kind == TC_BAD && c.len == 1, "overlong is invalid");
	c = one("\xed\xa0\x80", 0);
	CHECK(c.kind == TC_BAD && c.len == 1, "surrogate is invalid");
	c = one("\xf4\x90\x80\x80", 0);
	CHECK(c.kind == TC_BAD && c.len == 1, "above U+10FFFF is invalid");
	c = one("\xe4\xb8", 0);
	CHECK(c.kind == TC_BAD && c.len == 1, "cut sequence is invalid");
	c = one("\r\n", 0);
	CHECK(c.kind == TC_NEWLINE && c.len == 2, "CRLF is one newline");
	c = one("\rx", 0);
	CHECK(c.kind == TC_CTRL && strcmp(c.shown, "^M") == 0, "lone CR -> ^M");
	c = one("\t", 0);
	CHECK(c.kind == TC_TAB, "tab");
	c = one("\xe4\xb8\xad", 0); /* 中 */
	CHECK(c.kind == TC_PRINT && c.width == 2 && c.len == 3, "CJK is 2 wide (%d)", c.width);
	c = one("\xf0\x9f\x98\x80", 0); /* grinning face */
	CHECK(c.kind == TC_PRINT && c.width == 2 && c.len == 4, "emoji is 2 wide (%d)", c.width);
	c = one("e\xcc\x81x", 0); /* e + combining acute */
	CHECK(c.kind == TC_PRINT && c.width == 1 && c.len == 3, "combining mark joins its base (len %zu)", c.len);
	/* man ZWJ woman ZWJ girl: one cluster */
	c = one("\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7!", 0);
	CHECK(c.kind == TC_PRINT && c.width == 2 && c.len == 18, "ZWJ sequence is one 2-wide cluster (len %zu)", c.len);
	c = one("\xcc\x81", 0);
	CHECK(c.kind == TC_ZERO && c.width == 0, "lone combining mark is zero width");
	c = one("\xc3\xa9", TEXT_ASCII);
	CHECK(c.kind == TC_PRINT && strcmp(c.shown, "?") == 0 && c.width == 1, "ASCII mode: e-acute -> ?");
	c = one("e\xcc\x81", TEXT_ASCII);
	CHECK(c.kind == TC_PRINT && strcmp(c.shown, "e") == 0 && c.width == 1 && c.len == 3,
	      "ASCII mode: e + combining acute -> e");
	c = one("\xff", TEXT_ASCII);
	CHECK(c.kind == TC_BAD && strcmp(c.shown, "?") == 0, "ASCII mode: bad byte -> ?");
	c = one("", 0);
	CHECK(c.kind == TC_END, "end");

	/* a flood of combining marks is split, not one endless cell */
	char zalgo[1 + 2 * 100 + 1];
	zalgo[0] = 'a';
	for (int i = 0; i < 100; i++)
		memcpy(zalgo + 1 + 2 * i, "\xcc\x81", 2);
	zalgo[sizeof zalgo - 1] = 0;
	c = one(zalgo, 0);
	CHECK(c.len <= 66 && c.width == 1, "combining flood capped (len %zu)", c.len);

	CHECK(text_width("ab\tc", 4, 0) == 5, "tab to column 4");
	CHECK(text_width("\xe4\xb8\xad\xe6\x96\x87", 6, 0) == 4, "two CJK = 4 columns");
	CHECK(text_width("a\x1b[0m", 5, 0) == 6, "ESC shown as ^[ counts 2");

	/* every byte of a nasty string is covered by exactly one cluster and
	 * nothing shown contains a control byte */
	const char nasty[] = "x\x1b]0;title\x07\x9b\xc2\x9b\x1b[?1049h\r\n\xed\xa0\x80\xe2\x80\xae\x00z";
	size_t n = sizeof nasty - 1, p = 0, covered = 0;
	bool clean = true;
	for (;;) {
		size_t q = text_cluster_next(nasty, n, p, 0, &c);
		if (c.kind == TC_END)
			break;
		CHECK(c.off == p && q == p + c.len && c.len > 0, "clusters tile the input");
		covered += c.len;
		const char *shown = c.shown[0] ? c.shown : nasty + c.off;
		size_t sl = c.shown[0] ? strlen(c.shown) : c.len;
		if (c.kind == TC_PRINT)
			for (size_t i = 0; i < sl; i++)
				if ((unsigned char)shown[i] < 0x20 || shown[i] == 0x7f)
					clean = false;
		p = q;
	}
	CHECK(covered == n, "all %zu bytes covered (%zu)", n, covered);
	CHECK(clean, "no control byte is ever drawn as text");
}

/* Wraps S at WIDTH and compares the lines with EXPECT ("|" separated). */
static void wrap_is(const char *s, int width, unsigned flags, const char *expect, const char *what)
{
	struct text_lines l = {0};
	int rc = text_wrap(s, strlen(s), NULL, width, flags, &l);
	char got[1024] = "";
	size_t o = 0;
	for (size_t i = 0; i < l.n && o < sizeof got - 1; i++) {
		int w = snprintf(got + o, sizeof got - o, "%s%.*s", i ? "|" : "", (int)(l.v[i].end - l.v[i].start),
				 s + l.v[i].start);
		if (w < 0)
			break;
		o += (size_t)w;
		CHECK(l.v[i].width <= width, "%s: line %zu width %d > %d", what, i, l.v[i].width, width);
		CHECK(l.v[i].width == text_width(s + l.v[i].start, l.v[i].end - l.v[i].start, flags) ||
			      (l.v[i].flags & TL_CONT),
		      "%s: line %zu width matches its text", what, i);
	}
	CHECK(rc == 0 && strcmp(got, expect) == 0, "%s: got '%s' want '%s'", what, got, expect);
	text_lines_free(&l);
}

static void test_wrap(void)
{
	wrap_is("hello world foo", 11, 0, "hello world|foo", "fits exactly");
	wrap_is("hello world foo", 5, 0, "hello|world|foo", "one word a line");
	wrap_is("hello world", 8, 0, "hello|world", "word moves down");
	wrap_is("abcdefghij", 4, 0, "abcd|efgh|ij", "long word breaks");
	wrap_is("a   b", 2, 0, "a|b", "space run eaten at the break");
	wrap_is("a\n\nb", 10, 0, "a||b", "empty line kept");
	wrap_is("abc\n", 10, 0, "abc|", "trailing newline gives an empty line");
	wrap_is("", 10, 0, "", "empty text is one empty line");
	wrap_is("  indented\n", 20, 0, "  indented|", "indentation kept");
	wrap_is("\xe4\xb8\xad\xe6\x96\x87\xe4\xb8\xad\xe6\x96\x87\xe4\xb8\xad", 5, 0,
		"\xe4\xb8\xad\xe6\x96\x87|\xe4\xb8\xad\xe6\x96\x87|\xe4\xb8\xad", "CJK breaks between characters");
	wrap_is("ab\xe4\xb8\xad", 3, 0, "ab|\xe4\xb8\xad", "wide char never straddles the edge");
	wrap_is("abc \xe4\xb8\xad\xe6\x96\x87x", 6, 0, "abc \xe4\xb8\xad|\xe6\x96\x87x", "break after a wide char");
	wrap_is("x\x1b[31mred", 4, 0, "x\x1b|[31m|red", "placeholder width counts");
	wrap_is("a\tb", 10, 0, "a\tb", "tab");

	/* fences and code flags */
	const char *md = "x\n```c\nint a;\n```\ny";
	struct text_lines l = {0};
	text_wrap(md, strlen(md), NULL, 40, 0, &l);
	CHECK(l.n == 5, "fence lines: %zu", l.n);
	if (l.n == 5) {
		CHECK(l.v[0].flags == 0, "text before");
		CHECK((l.v[1].flags & (TL_FENCE | TL_CODE)) == (TL_FENCE | TL_CODE) && !(l.v[1].flags & TL_OPEN), "open fence");
		CHECK((l.v[2].flags & (TL_CODE | TL_OPEN)) == (TL_CODE | TL_OPEN) && !(l.v[2].flags & TL_FENCE), "code line");
		CHECK((l.v[3].flags & (TL_FENCE | TL_OPEN)) == (TL_FENCE | TL_OPEN), "closing fence");
		CHECK(!(l.v[4].flags & TL_CODE), "text after");
	}
	text_lines_free(&l);
	const char *cut = "```\n0123456789\nab\n```";
	text_wrap(cut, strlen(cut), NULL, 5, TEXT_NOWRAP_CODE, &l);
	CHECK(l.n == 4 && l.v[1].flags & TL_TRUNC && l.v[1].end - l.v[1].start == 4 && l.v[1].width == 4,
	      "no-wrap code is cut with room for a marker");
	CHECK(l.n == 4 && !(l.v[2].flags & TL_TRUNC), "short code line not cut");
	text_lines_free(&l);
	text_wrap(cut, strlen(cut), NULL, 5, 0, &l);
	CHECK(l.n == 5, "wrapped code by default (%zu)", l.n);
	text_lines_free(&l);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

/* Streams random text in random code-point chunks, re-wrapping from the
 * last line each time as the transcript does; the result must equal one
 * wrap of the whole text, at every step. */
static void test_incremental(void)
{
	static const char *const atoms[] = {
		"a", "bc", "word", " ", "  ", "\n", "\t", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xcc\x81", "\xe2\x80\x8d",
		"```", "~~~", "\x1b", "[0m", "\r", "\xff", "-", "longerwordhere", "\r\n", "x", "\xc3\xa9",
	};
	int bad = 0;
	for (int round = 0; round < 400; round++) {
		char text[800];
		size_t len = 0;
		int width = 1 + (int)rnd(30);
		unsigned flags = rnd(2) ? TEXT_NOWRAP_CODE : 0;
		struct text_lines inc = {0};
		while (len < 600) {
			const char *a = atoms[rnd(sizeof atoms / sizeof atoms[0])];
			size_t al = strlen(a);
			memcpy(text + len, a, al);
			len += al;
			size_t stable = text_stable_len(text, len);
			/* resume from the last line, as a streaming reply does */
			struct text_line resume;
			bool have = inc.n > 0;
			if (have) {
				resume = inc.v[inc.n - 1];
				inc.n--;
			}
			if (text_wrap(text, stable, have ? &resume : NULL, width, flags, &inc) != 0)
				bad++;
			struct text_lines full = {0};
			text_wrap(text, stable, NULL, width, flags, &full);
			bool same = full.n == inc.n;
			for (size_t i = 0; same && i < full.n; i++)
				same = full.v[i].start == inc.v[i].start && full.v[i].end == inc.v[i].end &&
				       full.v[i].width == inc.v[i].width && full.v[i].flags == inc.v[i].flags;
			if (!same) {
				if (bad++ < 3) {
					fprintf(stderr, "incremental wrap differs: round %d width %d len %zu (%zu vs %zu lines)\n",
						round, width, stable, inc.n, full.n);
					for (size_t i = 0; i < full.n || i < inc.n; i++)
						fprintf(stderr, "  %zu: full %zu-%zu w%d f%u | inc %zu-%zu w%d f%u\n", i,
							i < full.n ? full.v[i].start : 0, i < full.n ? full.v[i].end : 0,
							i < full.n ? full.v[i].width : 0, i < full.n ? full.v[i].flags : 0,
							i < inc.n ? inc.v[i].start : 0, i < inc.n ? inc.v[i].end : 0,
							i < inc.n ? inc.v[i].width : 0, i < inc.n ? inc.v[i].flags : 0);
				}
			}
			/* only a single cluster wider than the line may overflow it */
			for (size_t i = 0; i < full.n; i++) {
				struct text_cluster c;
				int wide = 0;
				for (size_t q = full.v[i].start; q < full.v[i].end;) {
					q = text_cluster_next(text, full.v[i].end, q, flags, &c);
					wide += c.width > 0 || c.kind == TC_TAB;
				}
				if (full.v[i].width > width && wide > 1) {
					if (bad++ < 3)
						fprintf(stderr, "overflow: width %d line %zu-%zu w%d f%u: '%.*s'\n", width,
							full.v[i].start, full.v[i].end, full.v[i].width, full.v[i].flags,
							(int)(full.v[i].end - full.v[i].start), text + full.v[i].start);
				}
			}
			text_lines_free(&full);
		}
		text_lines_free(&inc);
	}
	CHECK(bad == 0, "streamed wrapping equals whole wrapping (%d mismatches)", bad);
}

static void test_misc(void)
{
	size_t n;
	char *u = text_unescape("a\\e[2J\\x07\\\\\\n\\q\\xZ", &n);
	CHECK(u && n == 12 && memcmp(u, "a\x1b[2J\x07\\\n\\qxZ", 12) == 0 && u[n] == 0, "unescape (%zu)", n);
	free(u);
	CHECK(text_stable_len("ab\r", 3) == 2, "trailing CR held back");
	CHECK(text_stable_len("ab\xe4\xb8", 4) == 2, "cut sequence held back");
	CHECK(text_stable_len("ab\xe4\xb8\xad", 5) == 5, "complete sequence kept");
	CHECK(text_stable_len("\xf0\x9f\x98", 3) == 0, "cut 4-byte held back");
	CHECK(text_stable_len("a\x80", 2) == 2, "stray continuation is not held (it is just bad)");
}

int main(void)
{
	if (!setlocale(LC_CTYPE, "C.UTF-8") && !setlocale(LC_CTYPE, "C.utf8")) {
		printf("SKIP: no C.UTF-8 locale\n");
		return 77;
	}
	test_clusters();
	test_wrap();
	test_incremental();
	test_misc();
	return tu_finish();
}
