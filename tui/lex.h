/*
 * lex.h - syntax classes for the code blocks of a reply: a small
 * table-driven lexer (keywords, strings, comments, numbers) for C, Python,
 * shell, JSON, JavaScript, Rust, Go and diff.  It only colours: it never
 * rejects input, and it looks at bytes, so any UTF-8 passes through as
 * plain text.  Pure; no state; any thread.
 */
#ifndef TTYCHAT_TUI_LEX_H
#define TTYCHAT_TUI_LEX_H

#include <stddef.h>

enum lex_class {
	LEX_PLAIN,
	LEX_KEYWORD,
	LEX_STRING,
	LEX_COMMENT,
	LEX_NUMBER,
	LEX_ADD, /* diff: an added line */
	LEX_DEL, /* diff: a removed line */
};

/* The lexer for a fence's language name ("c", "py", "bash", "json" ...),
 * or NULL when it has none.  The pointer is to a static table. */
const struct lex_lang *lex_find(const char *name, size_t len);

/* Writes the class of each byte of S[0..N) to CLS[0..N) (one enum
 * lex_class per byte).  Returns the number of tokens (maximal runs of one
 * class that are not blanks), which benches use to give a cost per token. */
size_t lex_classify(const struct lex_lang *l, const char *s, size_t n, unsigned char *cls);

#endif
