/*
 * md.h - a reply's Markdown laid out as styled display lines, with md4c as
 * the parser.  No curses here: lines are runs of bytes with a colour role
 * (theme.h) and attribute bits, tested without a screen
 * (tests/test_tui_md.c); transcript.c draws them through tr_put_text(),
 * which still sanitises every byte, so nothing a model writes reaches the
 * terminal raw.
 *
 * What it shows: headings and emphasis as attributes, lists and block
 * quotes indented under their markers, tables aligned to the width (cells
 * wrapped when too wide), links as their text and the URL, inline code and
 * code blocks in the code role with the block's language on its first line
 * and syntax classes from lex.h.  MD_PLAIN (no colours: TERM=linux,
 * NO_COLOR) keeps the Markdown markers (#, *, `, ```, >) so that the text
 * reads the same where attributes are missing.
 *
 * Streaming: a document is cut into chunks at blank lines (outside fenced
 * code) followed by an unindented line; a cut depends only on the text
 * before it, so it never moves as text arrives.  md_doc_update() keeps the
 * lines of finished chunks and re-parses only the last one, and gives the
 * same lines as a fresh render of the whole text (tests check this).
 *
 * Ownership: a struct md_doc owns its lines; zero-initialise it, free with
 * md_doc_free().  UI thread only (no shared state).
 */
#ifndef TTYCHAT_TUI_MD_H
#define TTYCHAT_TUI_MD_H

#include <stddef.h>
#include <stdint.h>

enum {
	MD_ASCII = 1 << 0,  /* ASCII markers and rules (as TEXT_ASCII) */
	MD_PLAIN = 1 << 1,  /* keep the Markdown markers: no colours to show them */
	MD_NOWRAP = 1 << 2, /* code lines are cut at the edge, not wrapped */
};

enum { MDA_BOLD = 1, MDA_ITALIC = 2, MDA_UNDER = 4, MDA_DIM = 8 };

struct md_span {
	uint32_t off, len;   /* bytes of md_doc.buf */
	uint8_t role;        /* enum role */
	uint8_t attr;        /* MDA_* */
};

enum { MDL_CODE = 1, MDL_TRUNC = 2 };

struct md_line {
	uint32_t sp, nsp;    /* spans [sp, sp + nsp) */
	uint8_t flags;       /* MDL_CODE: fill to the edge in the code role; MDL_TRUNC: cut */
};

struct md_doc {
	char *buf;
	size_t blen, bcap;
	struct md_span *sp;
	size_t nsp, csp;
	struct md_line *ln;
	size_t nln, cln;
	/* streaming state */
	int width;
	unsigned flags;
	size_t len;                  /* text covered */
	size_t chunk;                /* where the last chunk starts */
	size_t mark_b, mark_s, mark_l; /* sizes before the last chunk */
	size_t scan;                 /* start of the first line not yet scanned */
	int fence;                   /* inside ``` (1) or ~~~ (2) */
	int prev_blank;
};

/* Lays out S[0..LEN) at WIDTH columns.  When the doc holds a layout of a
 * prefix of S at the same width and flags, only the last chunk is redone.
 * Returns 0, or -1 when memory runs out (the doc is then empty). */
int md_doc_update(struct md_doc *d, const char *s, size_t len, int width, unsigned flags);
void md_doc_free(struct md_doc *d);

/* The text of the last code block of S[0..LEN), malloc'd (NUL-terminated,
 * length in *OUTLEN), or NULL when there is none. */
char *md_last_code(const char *s, size_t len, size_t *outlen);

#endif
