/*
 * text.h - turning untrusted UTF-8 (model output, user input) into terminal
 * cells, and wrapping it by display width.  No curses here: everything is
 * pure and unit-tested (tests/test_tui_text.c).
 *
 * Text is walked one display cluster at a time.  A cluster is a grapheme
 * cluster of printable characters (a base and its combining marks, an
 * emoji ZWJ sequence), or one placeholder standing for something that must
 * never reach the terminal as such:
 *   - C0 controls and DEL show as caret notation ("^[", "^M", "^?"),
 *   - C1 controls and bidirectional overrides as "<U+009B>",
 *   - each byte of invalid UTF-8 as U+FFFD,
 *   - a character whose width utf8proc and the C library disagree on (the
 *     terminal library places cells by the latter) as U+FFFD too, so that
 *     the layout computed here is the layout curses draws.
 * Widths follow utf8proc: East Asian wide and emoji are 2 columns,
 * combining marks 0.  "\n" and "\r\n" end a logical line; a tab advances to
 * the next multiple of TEXT_TAB columns of the display line.
 *
 * Thread rules: none (no state); wcwidth() depends on LC_CTYPE, which the
 * caller sets once at start-up.
 */
#ifndef TTYCHAT_TUI_TEXT_H
#define TTYCHAT_TUI_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TEXT_TAB 4

/* Flags for text_cluster_next() and text_wrap(). */
enum {
	TEXT_ASCII = 1 << 0,       /* terminal shows ASCII only: others become '?' */
	TEXT_NOWRAP_CODE = 1 << 1, /* lines inside fenced code are cut, not wrapped */
};

enum text_ckind {
	TC_PRINT,   /* draw the source bytes (or `shown` when set) */
	TC_ZERO,    /* zero-width on its own (a lone mark, ZWSP): draw nothing */
	TC_CTRL,    /* placeholder for a control character: draw `shown` */
	TC_BAD,     /* U+FFFD (or '?' in ASCII mode): draw `shown` */
	TC_TAB,     /* width depends on the column: the caller expands it */
	TC_NEWLINE, /* "\n" or "\r\n" */
	TC_END,     /* no more input */
};

struct text_cluster {
	size_t off, len;           /* source bytes */
	int width;                 /* columns; 0 for TAB, NEWLINE, END */
	enum text_ckind kind;
	char shown[12];            /* NUL-terminated replacement; "" = source bytes */
};

/* Reads the cluster starting at byte POS of S[0..LEN) into *C and returns
 * the position after it (POS itself, with kind TC_END, at the end).  A
 * multi-byte sequence cut short by the end of the buffer is reported as
 * TC_BAD: callers that stream text should wrap only complete input. */
size_t text_cluster_next(const char *s, size_t len, size_t pos, unsigned flags, struct text_cluster *c);

/* Writes S[0..LEN) through EMIT as text that cannot drive a terminal, for
 * lines that are not drawn by curses (error messages, `inspect`): every
 * control but "\n", "\r\n" and "\t" as text_cluster_next()'s placeholder
 * ("^[", "<U+009B>", bidi overrides too), each byte of invalid UTF-8 as
 * U+FFFD, everything else unchanged whatever the locale.  Unless FINAL, an
 * incomplete UTF-8 sequence (or a "\r") at the end is left for the next
 * call: returns the bytes consumed. */
typedef void (*text_emit_fn)(void *ctx, const char *s, size_t n);
size_t text_visible(const char *s, size_t len, bool final, text_emit_fn emit, void *ctx);

/* Strict UTF-8 decode of one code point at S: bytes used (1-4), or 0 when
 * S[0..N) does not start with a complete valid sequence. */
size_t text_utf8_decode(const char *s, size_t n, unsigned *cp);

/* Display width of S[0..LEN) on one line (tabs expanded from column 0,
 * newlines count 0). */
int text_width(const char *s, size_t len, unsigned flags);

/* One display line: bytes [start, end) of the source.  FROM is where its
 * scan began (before the spaces a wrapped line skips): resuming uses it. */
enum {
	TL_CONT = 1 << 0,  /* continues the logical line above (wrapped) */
	TL_CODE = 1 << 1,  /* inside a fenced code block (fence lines included) */
	TL_FENCE = 1 << 2, /* a ``` or ~~~ fence line */
	TL_OPEN = 1 << 3,  /* a code block is open where this line starts */
	TL_TRUNC = 1 << 4, /* cut at the right edge (TEXT_NOWRAP_CODE) */
};

struct text_line {
	size_t from, start, end;
	int width;
	unsigned flags;
};

/* A growable array of lines; zero-initialise, free with text_lines_free(). */
struct text_lines {
	struct text_line *v;
	size_t n, cap;
};

void text_lines_free(struct text_lines *l);

/* Wraps S[0..LEN) into lines of at most WIDTH (>= 1) columns, appending to
 * OUT.  Words move whole to the next line when they fit there; longer
 * words, and runs of wide characters, break between clusters.  Each
 * logical line gives at least one display line; text ending in a newline
 * ends with an empty line.  Lines in TEXT_NOWRAP_CODE mode are cut to
 * WIDTH - 1 columns plus room for a marker and flagged TL_TRUNC.
 *
 * RESUME, when not NULL, is a line this function produced earlier for a
 * prefix of the same text (at the same width and flags): wrapping restarts
 * at it, and OUT must hold exactly the lines before it.  Appending text
 * never changes the lines before the last one, so a streaming reply only
 * re-wraps its last line (tests check this against a full re-wrap).
 * Returns 0, or -1 when memory runs out (OUT keeps what it had). */
int text_wrap(const char *s, size_t len, const struct text_line *resume, int width, unsigned flags,
	      struct text_lines *out);

/* Length of the prefix of S[0..LEN) that can be wrapped now while more
 * text is still arriving: without a trailing incomplete UTF-8 sequence or a
 * trailing CR (which may yet become CRLF). */
size_t text_stable_len(const char *s, size_t len);

/* Decodes a C-style escaped string ("\e[2J\x07\\n") into bytes: \e \n \r
 * \t \\ \xHH.  Returns a malloc'd buffer (NUL-terminated, length in
 * *outlen) or NULL.  Used by the TTYCHAT_TEST_INJECT test hook. */
char *text_unescape(const char *s, size_t *outlen);

#endif
