/*
 * cmd_template.c - `ttychat template`: render a conversation with a chat
 * template, the way the chat front ends do before tokenising.
 *
 * The conversation is a JSON array of messages on stdin, read by the
 * engine's chat template reader (engine_chat_parse: Python json semantics,
 * NUL bytes kept; anything richer than role/content is rendered from the
 * JSON as it is, so templates see exactly what transformers would).  The
 * template comes from the model's GGUF header (`tokenizer.chat_template`,
 * with bos/eos texts looked up in the vocabulary; read with the model-file
 * probe, no weights or tokenizer loaded), from --template FILE, or is a
 * named built-in format.  By
 * default a failing or missing template falls back to the built-in format
 * of its family with a warning on stderr, as in chat; --strict makes that
 * an error instead (the conformance tests use it).  SOURCE_DATE_EPOCH, when
 * set, fixes the time strftime_now() formats.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "engine.h"

#define MAX_TEMPLATE_FILE ((size_t)4 << 20)
#define MAX_STDIN ((size_t)256 << 20)

static void template_usage(FILE *out)
{
	fprintf(out,
		"usage: ttychat template (-m FILE | --template FILE | --builtin FAMILY) [options] < messages.json\n"
		"  -m FILE                 take the template and bos/eos from this GGUF model\n"
		"  --template FILE         render this Jinja template file instead\n"
		"  --builtin FAMILY        render a built-in format (chatml, llama2, mistral,\n"
		"                          mistral-nemo, llama3, gemma, phi3, deepseek, zephyr,\n"
		"                          command-r, vicuna)\n"
		"  --no-generation-prompt  do not open an assistant turn at the end\n"
		"  --strict                fail instead of falling back to a built-in format\n"
		"  --vars JSON             extra template variables, e.g. '{\"tools\": null}'\n"
		"  --bos TEXT, --eos TEXT  special token texts (override the model's)\n"
		"  --detect                print the detected family and exit\n"
		"stdin: a JSON array of {\"role\": ..., \"content\": ...} objects.\n");
}

/* Reads a whole stream; NULL on error or when larger than max. */
static char *read_stream(FILE *f, size_t max, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		return NULL;
	for (;;) {
		if (n + 1 >= cap) {
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
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0) {
			if (ferror(f)) {
				free(buf);
				return NULL;
			}
			break;
		}
	}
	buf[n] = 0;
	*len = n;
	return buf;
}

static char *read_file(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *s = read_stream(f, max, len);
	fclose(f);
	return s;
}

static char *dup_mem(const char *s, size_t len)
{
	char *p = malloc(len + 1);
	if (!p)
		return NULL;
	memcpy(p, s, len);
	p[len] = 0;
	return p;
}

/* The string under KEY, copied; NULL when absent. */
static char *file_str(const engine_file *g, const char *key)
{
	const char *s;
	size_t len;
	return engine_file_get_str(g, key, &s, &len) ? dup_mem(s, len) : NULL;
}

/* Text of special token KEY_ID ("tokenizer.ggml.bos_token_id"); NULL when
 * the model has none. */
static char *special_text(const engine_file *g, const char *key_id)
{
	uint64_t id, n;
	const char *s;
	size_t len;
	if (!engine_file_get_uint(g, key_id, &id) || !engine_file_get_strs(g, "tokenizer.ggml.tokens", &n) ||
	    id >= n || !engine_file_get_strs_at(g, "tokenizer.ggml.tokens", id, &s, &len))
		return NULL;
	return dup_mem(s, len);
}

int cmd_template(int argc, char **argv)
{
	const char *model = NULL, *tfile = NULL, *builtin = NULL, *vars = NULL;
	const char *bos_arg = NULL, *eos_arg = NULL;
	bool agp = true, strict = false, detect = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has_val = i + 1 < argc;
		if (!strcmp(a, "-m") && has_val)
			model = argv[++i];
		else if (!strcmp(a, "--template") && has_val)
			tfile = argv[++i];
		else if (!strcmp(a, "--builtin") && has_val)
			builtin = argv[++i];
		else if (!strcmp(a, "--vars") && has_val)
			vars = argv[++i];
		else if (!strcmp(a, "--bos") && has_val)
			bos_arg = argv[++i];
		else if (!strcmp(a, "--eos") && has_val)
			eos_arg = argv[++i];
		else if (!strcmp(a, "--no-generation-prompt"))
			agp = false;
		else if (!strcmp(a, "--strict"))
			strict = true;
		else if (!strcmp(a, "--detect"))
			detect = true;
		else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			template_usage(stdout);
			return EXIT_OK;
		} else {
			fprintf(stderr, "ttychat template: unknown or incomplete option '%s'\n", a);
			template_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (!model && !tfile && !builtin) {
		template_usage(stderr);
		return EXIT_USAGE;
	}
	if (builtin && !engine_chat_builtin_known(builtin)) {
		fprintf(stderr, "ttychat template: unknown built-in format '%s'\n", builtin);
		return EXIT_USAGE;
	}

	int status = EXIT_FAIL;
	char *ttext = NULL, *arch = NULL, *bos = NULL, *eos = NULL, *input = NULL, *out = NULL;
	engine_file *g = NULL;
	engine_chat *chat = NULL;
	char err[1024];

	if (model) {
		g = engine_file_open(model, err, sizeof err);
		if (!g) {
			fprintf(stderr, "ttychat template: %s\n", err);
			status = EXIT_MODEL;
			goto done;
		}
		if (!tfile)
			ttext = file_str(g, "tokenizer.chat_template");
		arch = file_str(g, "general.architecture");
		bos = special_text(g, "tokenizer.ggml.bos_token_id");
		eos = special_text(g, "tokenizer.ggml.eos_token_id");
	}
	if (tfile) {
		size_t tl;
		ttext = read_file(tfile, MAX_TEMPLATE_FILE, &tl);
		if (!ttext) {
			fprintf(stderr, "ttychat template: cannot read %s: %s\n", tfile, strerror(errno));
			goto done;
		}
		if (strlen(ttext) != tl) {
			fprintf(stderr, "ttychat template: %s contains a NUL byte\n", tfile);
			goto done;
		}
	}
	if (detect) {
		printf("%s\n", engine_chat_family(ttext, arch));
		status = EXIT_OK;
		goto done;
	}

	size_t inlen;
	input = read_stream(stdin, MAX_STDIN, &inlen);
	if (!input) {
		fprintf(stderr, "ttychat template: cannot read stdin: %s\n", strerror(errno));
		goto done;
	}
	if (engine_chat_parse(input, &chat, err, sizeof err) != 0) {
		fprintf(stderr, "ttychat template: stdin: %s\n", err);
		status = EXIT_USAGE;
		goto done;
	}

	struct engine_chat_opts opt = {
		.template_text = ttext,
		.builtin = builtin,
		.arch = arch,
		.strict = strict,
		.add_generation_prompt = agp,
		.bos_token = bos_arg ? bos_arg : bos,
		.eos_token = eos_arg ? eos_arg : eos,
		.vars_json = vars,
	};
	const char *epoch = getenv("SOURCE_DATE_EPOCH");
	if (epoch && *epoch) {
		char *end;
		errno = 0;
		long long t = strtoll(epoch, &end, 10);
		if (errno || *end || t <= 0) {
			fprintf(stderr, "ttychat template: bad SOURCE_DATE_EPOCH\n");
			status = EXIT_USAGE;
			goto done;
		}
		opt.now = t;
	}

	if (!builtin && strict && (!ttext || !*ttext)) {
		fprintf(stderr, "ttychat template: %s has no chat template\n", model);
		goto done;
	}
	size_t outlen = 0;
	int rc = engine_chat_render(chat, &opt, &out, &outlen, err, sizeof err);
	if (rc == ENGINE_CHAT_FALLBACK)
		fprintf(stderr, "ttychat template: warning: %s\n", err);
	if (rc < 0) {
		fprintf(stderr, "ttychat template: %s\n", err);
		status = rc == ENGINE_E_INVAL ? EXIT_USAGE : EXIT_FAIL;
		goto done;
	}
	if (fwrite(out, 1, outlen, stdout) != outlen || fflush(stdout) != 0) {
		fprintf(stderr, "ttychat template: write error\n");
		goto done;
	}
	status = EXIT_OK;
done:
	free(out);
	engine_chat_free(chat);
	free(input);
	free(ttext);
	free(arch);
	free(bos);
	free(eos);
	engine_file_close(g);
	return status;
}
