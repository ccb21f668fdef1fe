/*
 * lex.c - the code-block lexer (see lex.h).
 *
 * One table row per language: its names, its keywords (a sorted-free list
 * searched linearly: a few dozen short words, cheaper than hashing at this
 * size), how comments start, which characters quote strings.  One forward
 * scan over the whole block, so a block comment or a triple-quoted string
 * that spans lines is coloured as one.  diff is line based and has a branch
 * of its own.
 */
#include "config.h"

#include "lex.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

struct lex_lang {
	const char *names;       /* space-separated, first is canonical */
	const char *const *kw;   /* NULL-terminated */
	const char *line_comment;/* "//", "#" or NULL */
	bool block_comment;      /* C-style slash-star comments */
	const char *quotes;      /* string delimiters */
	bool triple;             /* Python's triple quotes */
	bool diff;
};

static const char *const kw_c[] = {"auto", "break", "case", "char", "const", "continue", "default", "do",
	"double", "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
	"return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned",
	"void", "volatile", "while", "bool", "true", "false", "NULL", "size_t", "#include", "#define", "#if",
	"#ifdef", "#ifndef", "#endif", "#else", "class", "namespace", "template", "nullptr", NULL};
static const char *const kw_py[] = {"False", "None", "True", "and", "as", "assert", "async", "await", "break",
	"class", "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if",
	"import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
	"with", "yield", "self", NULL};
static const char *const kw_sh[] = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done",
	"case", "esac", "in", "function", "return", "local", "export", "readonly", "set", "unset", "shift",
	"exit", "echo", "cd", "source", NULL};
static const char *const kw_json[] = {"true", "false", "null", NULL};
static const char *const kw_js[] = {"async", "await", "break", "case", "catch", "class", "const", "continue",
	"default", "delete", "do", "else", "export", "extends", "false", "finally", "for", "function", "if",
	"import", "in", "instanceof", "let", "new", "null", "return", "super", "switch", "this", "throw",
	"true", "try", "typeof", "undefined", "var", "void", "while", "yield", "of", "from", NULL};
static const char *const kw_rs[] = {"as", "async", "await", "break", "const", "continue", "crate", "dyn",
	"else", "enum", "extern", "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod",
	"move", "mut", "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true",
	"type", "unsafe", "use", "where", "while", "Some", "None", "Ok", "Err", NULL};
static const char *const kw_go[] = {"break", "case", "chan", "const", "continue", "default", "defer", "else",
	"fallthrough", "for", "func", "go", "goto", "if", "import", "interface", "map", "package", "range",
	"return", "select", "struct", "switch", "type", "var", "nil", "true", "false", NULL};
static const char *const kw_none[] = {NULL};

static const struct lex_lang langs[] = {
	{"c h cpp c++ cc cxx hpp", kw_c, "//", true, "\"'", false, false},
	{"python py python3", kw_py, "#", false, "\"'", true, false},
	{"sh bash shell zsh console shell-session", kw_sh, "#", false, "\"'", false, false},
	{"json jsonc", kw_json, NULL, false, "\"", false, false},
	{"javascript js jsx typescript ts tsx mjs", kw_js, "//", true, "\"'`", false, false},
	{"rust rs", kw_rs, "//", true, "\"", false, false},
	{"go golang", kw_go, "//", true, "\"'`", false, false},
	{"diff patch udiff", kw_none, NULL, false, "", false, true},
};

const struct lex_lang *lex_find(const char *name, size_t len)
{
	if (len == 0)
		return NULL;
	for (size_t i = 0; i < sizeof langs / sizeof langs[0]; i++) {
		const char *p = langs[i].names;
		while (*p) {
			size_t k = strcspn(p, " ");
			if (k == len && strncasecmp(p, name, len) == 0)
				return &langs[i];
			p += k;
			while (*p == ' ')
				p++;
		}
	}
	return NULL;
}

static bool is_word(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
	       c >= 0x80;
}

static bool is_keyword(const struct lex_lang *l, const char *s, size_t n)
{
	for (const char *const *k = l->kw; *k; k++)
		if ((*k)[0] == s[0] && strncmp(*k, s, n) == 0 && (*k)[n] == '\0')
			return true;
	return false;
}

static size_t lex_diff(const char *s, size_t n, unsigned char *cls)
{
	size_t tokens = 0;
	for (size_t i = 0; i < n;) {
		size_t e = i;
		while (e < n && s[e] != '\n')
			e++;
		unsigned char c = LEX_PLAIN;
		if (e - i >= 2 && (memcmp(s + i, "@@", 2) == 0))
			c = LEX_KEYWORD;
		else if (e - i >= 3 && (memcmp(s + i, "+++", 3) == 0 || memcmp(s + i, "---", 3) == 0))
			c = LEX_COMMENT;
		else if (e > i && s[i] == '+')
			c = LEX_ADD;
		else if (e > i && s[i] == '-')
			c = LEX_DEL;
		memset(cls + i, c, e - i);
		tokens += e > i;
		if (e < n)
			cls[e++] = LEX_PLAIN;
		i = e;
	}
	return tokens;
}

/* The end of the string opened at S[I] (past its closing quote, or the end
 * of the line for an unclosed one-line string). */
static size_t string_end(const struct lex_lang *l, const char *s, size_t n, size_t i)
{
	char q = s[i];
	if (l->triple && i + 2 < n && s[i + 1] == q && s[i + 2] == q) {
		for (size_t j = i + 3; j + 2 < n; j++) {
			if (s[j] == '\\')
				j++;
			else if (s[j] == q && s[j + 1] == q && s[j + 2] == q)
				return j + 3;
		}
		return n;
	}
	for (size_t j = i + 1; j < n; j++) {
		if (s[j] == '\\' && j + 1 < n)
			j++;
		else if (s[j] == q)
			return j + 1;
		else if (s[j] == '\n' && q != '`')
			return j;
	}
	return n;
}

/* The class and end of the token at S[I]. */
static size_t token_at(const struct lex_lang *l, const char *s, size_t n, size_t i, unsigned char *c)
{
	const unsigned char u = (unsigned char)s[i];
	size_t lc = l->line_comment ? strlen(l->line_comment) : 0;
	*c = LEX_PLAIN;
	if (lc && n - i >= lc && memcmp(s + i, l->line_comment, lc) == 0 &&
	    (lc > 1 || i == 0 || !is_word((unsigned char)s[i - 1]))) {
		*c = LEX_COMMENT;
		const char *e = memchr(s + i, '\n', n - i);
		return e ? (size_t)(e - s) : n;
	}
	if (l->block_comment && n - i >= 2 && s[i] == '/' && s[i + 1] == '*') {
		*c = LEX_COMMENT;
		for (size_t j = i + 2; j + 1 < n; j++)
			if (s[j] == '*' && s[j + 1] == '/')
				return j + 2;
		return n;
	}
	if (strchr(l->quotes, u) && u) {
		*c = LEX_STRING;
		return string_end(l, s, n, i);
	}
	if (u >= '0' && u <= '9' && (i == 0 || !is_word((unsigned char)s[i - 1]))) {
		size_t j = i + 1;
		while (j < n && (is_word((unsigned char)s[j]) || s[j] == '.'))
			j++;
		*c = LEX_NUMBER;
		return j;
	}
	if (is_word(u) || (u == '#' && l->kw == kw_c)) {
		size_t j = i + 1;
		while (j < n && is_word((unsigned char)s[j]))
			j++;
		if (is_keyword(l, s + i, j - i))
			*c = LEX_KEYWORD;
		return j;
	}
	return i + 1;
}

size_t lex_classify(const struct lex_lang *l, const char *s, size_t n, unsigned char *cls)
{
	if (!l) {
		memset(cls, LEX_PLAIN, n);
		return 0;
	}
	if (l->diff)
		return lex_diff(s, n, cls);
	size_t tokens = 0;
	for (size_t i = 0; i < n;) {
		unsigned char c;
		if (s[i] == ' ') {
			cls[i++] = LEX_PLAIN;
			continue;
		}
		size_t e = token_at(l, s, n, i, &c);
		memset(cls + i, c, e - i);
		tokens += !(s[i] == ' ' || s[i] == '\t' || s[i] == '\n');
		i = e;
	}
	return tokens;
}
