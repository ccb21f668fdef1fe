/*
 * cmd_tokenize.c - `ttychat tokenize` and `ttychat detokenize`: text to
 * token ids and back with a model's own vocabulary, the same ids
 * llama.cpp's llama_tokenize gives.
 *
 * tokenize reads all of stdin as bytes (no newline is added or removed)
 * and prints the ids on one line, separated by spaces; --pieces prints one
 * token per line instead, its id and its piece as a quoted string.  By
 * default the special tokens the model asks for are added (add_bos_token,
 * add_eos_token); --no-bos leaves them out.  --special recognises control
 * tokens such as <|im_start|> written in the text.
 *
 * detokenize reads ids separated by whitespace and prints the text through
 * the streaming decoder, so the output is valid UTF-8 however the ids cut
 * characters.  Control tokens are hidden unless --special; the space a
 * SentencePiece model puts before the text is removed again.
 *
 * -m takes a GGUF path or a model name; model_path() is the one place
 * that turns it into a file.  Only the vocabulary is loaded (engine_vocab
 * of engine.h), not the weights.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "commands.h"
#include "engine.h"

#define MAX_INPUT ((size_t)1 << 30)  /* the tokenizer's own limit */

/* Resolves the -m argument (a path or a models.d / models-directory name)
 * to a file path.  Returns 0, or -1 with a message in err. */
static int model_path(const char *spec, char *path, size_t len, char *err, size_t errlen)
{
	struct model_entry me;
	if (config_resolve_model(spec, &me, err, errlen) != 0)
		return -1;
	int n = snprintf(path, len, "%s", me.path);
	config_entry_free(&me);
	if (n < 0 || (size_t)n >= len) {
		snprintf(err, errlen, "%s: model path too long", spec);
		return -1;
	}
	return 0;
}

/* Opens the model's vocabulary; prints why not and returns NULL. */
static engine_vocab *open_vocab(const char *cmd, const char *spec)
{
	char path[4096], err[4096 + 512];
	if (model_path(spec, path, sizeof path, err, sizeof err) != 0) {
		fprintf(stderr, "ttychat %s: %s\n", cmd, err);
		return NULL;
	}
	engine_vocab *v = engine_vocab_open(path, err, sizeof err);
	if (!v)
		fprintf(stderr, "ttychat %s: %s\n", cmd, err);
	return v;
}

/* Reads all of stdin; NULL (errno set) on a read error or past max. */
static char *read_all(size_t max, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		return NULL;
	for (;;) {
		if (n == cap) {
			if (cap >= max) {
				free(buf);
				errno = EFBIG;
				return NULL;
			}
			cap = cap * 2 > max ? max : cap * 2;
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				return NULL;
			}
			buf = nb;
		}
		size_t r = fread(buf + n, 1, cap - n, stdin);
		n += r;
		if (r == 0) {
			if (ferror(stdin)) {
				free(buf);
				errno = EIO;
				return NULL;
			}
			break;
		}
	}
	*len = n;
	return buf;
}

/* A piece as a double-quoted string: printable UTF-8 as is, the rest
 * escaped, so that partial characters and control bytes stay visible. */
static void put_piece(FILE *out, const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	fputc('"', out);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t len = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3 :
			     c >= 0xf0 && c < 0xf5 ? 4 : 0;
		bool whole = len > 0 && i + len <= n;
		for (size_t k = 1; whole && k < len; k++)
			whole = (s[i + k] & 0xc0) == 0x80;
		if (c == '"' || c == '\\') {
			fprintf(out, "\\%c", c);
		} else if (c == '\n') {
			fputs("\\n", out);
		} else if (c == '\t') {
			fputs("\\t", out);
		} else if (c == '\r') {
			fputs("\\r", out);
		} else if (c < 0x20 || c == 0x7f || !whole) {
			fprintf(out, "\\x%02x", c);
			len = 1;
		} else {
			fwrite(s + i, 1, len, out);
		}
		i += len ? len : 1;
	}
	fputc('"', out);
}

static void tokenize_usage(FILE *out)
{
	fprintf(out,
		"usage: ttychat tokenize -m MODEL [--no-bos] [--special] [--pieces] < text\n"
		"  -m MODEL    a GGUF file or a model name\n"
		"  --no-bos    add no BOS/EOS (by default as the model asks)\n"
		"  --special   recognise control tokens such as <|im_start|> in the text\n"
		"  --pieces    one token per line: id and piece\n"
		"Prints the token ids of stdin on one line.\n");
}

static void detokenize_usage(FILE *out)
{
	fprintf(out,
		"usage: ttychat detokenize -m MODEL [--special] < ids\n"
		"  -m MODEL    a GGUF file or a model name\n"
		"  --special   show control tokens (hidden by default)\n"
		"Prints the text of the whitespace-separated token ids on stdin.\n");
}

int cmd_tokenize(int argc, char **argv)
{
	const char *model = NULL;
	bool no_bos = false, special = false, pieces = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
			model = argv[++i];
		} else if (!strcmp(a, "--no-bos")) {
			no_bos = true;
		} else if (!strcmp(a, "--special")) {
			special = true;
		} else if (!strcmp(a, "--pieces")) {
			pieces = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			tokenize_usage(stdout);
			return EXIT_OK;
		} else {
			fprintf(stderr, "ttychat tokenize: unknown or incomplete option '%s'\n", a);
			tokenize_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (!model) {
		fprintf(stderr, "ttychat tokenize: no model: give -m MODEL\n");
		tokenize_usage(stderr);
		return EXIT_USAGE;
	}
	engine_vocab *v = open_vocab("tokenize", model);
	if (!v)
		return EXIT_MODEL;

	int status = EXIT_FAIL;
	size_t len = 0;
	char *text = read_all(MAX_INPUT, &len);
	int32_t *ids = NULL;
	size_t n = 0, cap = 0;
	if (!text) {
		fprintf(stderr, "ttychat tokenize: reading stdin: %s\n", strerror(errno));
		goto done;
	}
	char err[256];
	if (engine_vocab_encode(v, text, len, !no_bos, special, &ids, &n, &cap, err, sizeof err) != 0) {
		fprintf(stderr, "ttychat tokenize: %s\n", err);
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		if (pieces) {
			size_t pl;
			const char *p = engine_vocab_piece(v, ids[i], &pl);
			printf("%d\t", ids[i]);
			put_piece(stdout, p, pl);
			putchar('\n');
		} else {
			printf(i ? " %d" : "%d", ids[i]);
		}
	}
	if (!pieces)
		putchar('\n');
	status = fflush(stdout) == 0 && !ferror(stdout) ? EXIT_OK : EXIT_FAIL;
	if (status != EXIT_OK)
		fprintf(stderr, "ttychat tokenize: writing stdout: %s\n", strerror(errno));
done:
	free(ids);
	free(text);
	engine_vocab_free(v);
	return status;
}

int cmd_detokenize(int argc, char **argv)
{
	const char *model = NULL;
	bool special = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
			model = argv[++i];
		} else if (!strcmp(a, "--special")) {
			special = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			detokenize_usage(stdout);
			return EXIT_OK;
		} else {
			fprintf(stderr, "ttychat detokenize: unknown or incomplete option '%s'\n", a);
			detokenize_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (!model) {
		fprintf(stderr, "ttychat detokenize: no model: give -m MODEL\n");
		detokenize_usage(stderr);
		return EXIT_USAGE;
	}
	engine_vocab *v = open_vocab("detokenize", model);
	if (!v)
		return EXIT_MODEL;
	engine_detok *d = engine_detok_new(v, special);
	if (!d) {
		fprintf(stderr, "ttychat detokenize: out of memory\n");
		engine_vocab_free(v);
		return EXIT_FAIL;
	}

	int status = EXIT_OK;
	char word[32], out[4096];
	size_t wl = 0, k;
	long count = 0;
	for (int c;;) {
		c = getchar();
		bool sep = c == EOF || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
		if (!sep) {
			if (wl + 1 >= sizeof word) {
				word[sizeof word - 1] = 0;
				fprintf(stderr, "ttychat detokenize: not a token id: '%s...'\n", word);
				status = EXIT_USAGE;
				break;
			}
			word[wl++] = (char)c;
			continue;
		}
		if (wl) {
			word[wl] = 0;
			char *end;
			errno = 0;
			long id = strtol(word, &end, 10);
			count++;
			if (*end || errno || id < 0 || id >= (long)engine_vocab_size(v)) {
				fprintf(stderr, "ttychat detokenize: id %ld: '%s' is not a token id (0..%u)\n", count,
					word, engine_vocab_size(v) - 1);
				status = EXIT_USAGE;
				break;
			}
			k = engine_detok_feed(d, (int32_t)id, out, sizeof out);
			fwrite(out, 1, k, stdout);
			wl = 0;
		}
		if (c == EOF)
			break;
	}
	if (ferror(stdin)) {
		fprintf(stderr, "ttychat detokenize: reading stdin: %s\n", strerror(errno));
		status = EXIT_FAIL;
	}
	while ((k = engine_detok_flush(d, out, sizeof out)) > 0)
		fwrite(out, 1, k, stdout);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "ttychat detokenize: writing stdout: %s\n", strerror(errno));
		status = EXIT_FAIL;
	}
	engine_detok_free(d);
	engine_vocab_free(v);
	return status;
}
