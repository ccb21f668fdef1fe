/*
 * cmd_template.c - `ttychat template`: render a conversation with a chat
 * template, the way the chat front ends do before tokenising.
 *
 * The conversation is a JSON array of messages on stdin, read with the
 * template module's own JSON reader (Python json semantics, NUL bytes
 * kept).  Plain messages ({"role": str, "content": str|null}) go to the
 * engine as a message array; anything richer (tool_calls, structured
 * content, extra keys) is handed over verbatim as messages_json so that
 * templates see exactly what transformers would.  The template comes from the model's GGUF
 * (`tokenizer.chat_template`, with bos/eos texts looked up in the
 * vocabulary), from --template FILE, or is a named built-in format.  By
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
#include "gguf.h"
#include "template.h"

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

static char *dup_gstr(struct gguf_str s)
{
	if (!s.ptr)
		return NULL;
	char *p = malloc(s.len + 1);
	if (!p)
		return NULL;
	memcpy(p, s.ptr, s.len);
	p[s.len] = 0;
	return p;
}

/* Text of special token KEY_ID ("tokenizer.ggml.bos_token_id"); NULL when
 * the model has none. */
static char *special_text(const gguf_file *g, const char *key_id)
{
	uint64_t id, n;
	if (!gguf_get_uint(g, key_id, &id) || !gguf_get_arr_str_n(g, "tokenizer.ggml.tokens", &n) ||
	    id >= n)
		return NULL;
	return dup_gstr(gguf_arr_str(g, "tokenizer.ggml.tokens", id));
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
	enum tmpl_family fam = TMPL_FAMILY_UNKNOWN;
	if (builtin) {
		fam = tmpl_family_from_name(builtin);
		if (fam == TMPL_FAMILY_UNKNOWN) {
			fprintf(stderr, "ttychat template: unknown built-in format '%s'\n", builtin);
			return EXIT_USAGE;
		}
	}

	int status = EXIT_FAIL;
	char *ttext = NULL, *arch = NULL, *bos = NULL, *eos = NULL, *input = NULL, *out = NULL;
	gguf_file *g = NULL;
	struct tmpl_message *msgs = NULL;
	size_t nmsgs = 0;
	bool structured = false;
	char err[512];

	if (model) {
		g = gguf_open(model, err, sizeof err);
		if (!g) {
			fprintf(stderr, "ttychat template: %s\n", err);
			status = EXIT_MODEL;
			goto done;
		}
		struct gguf_str s;
		if (!tfile && gguf_get_str(g, "tokenizer.chat_template", &s))
			ttext = dup_gstr(s);
		if (gguf_get_str(g, "general.architecture", &s))
			arch = dup_gstr(s);
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
		printf("%s\n", tmpl_family_name(tmpl_detect_family(ttext, arch)));
		status = EXIT_OK;
		goto done;
	}

	size_t inlen;
	input = read_stream(stdin, MAX_STDIN, &inlen);
	if (!input) {
		fprintf(stderr, "ttychat template: cannot read stdin: %s\n", strerror(errno));
		goto done;
	}
	if (tmpl_messages_from_json(input, &msgs, &nmsgs, &structured, err, sizeof err) != TMPL_OK) {
		fprintf(stderr, "ttychat template: stdin: %s\n", err);
		status = EXIT_USAGE;
		goto done;
	}

	struct tmpl_options opt = {
		.add_generation_prompt = agp,
		.bos_token = bos_arg ? bos_arg : bos,
		.eos_token = eos_arg ? eos_arg : eos,
		.vars_json = vars,
		.messages_json = structured ? input : NULL,
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

	size_t outlen = 0;
	int rc;
	if (builtin) {
		rc = tmpl_render_builtin(fam, msgs, nmsgs, &opt, &out, &outlen, err, sizeof err);
	} else if (strict) {
		if (!ttext || !*ttext) {
			fprintf(stderr, "ttychat template: %s has no chat template\n", model);
			goto done;
		}
		rc = tmpl_render_text(ttext, strlen(ttext), msgs, nmsgs, &opt, &out, &outlen, err,
				      sizeof err);
	} else {
		enum tmpl_family used;
		rc = tmpl_format_chat(ttext, arch, msgs, nmsgs, &opt, &out, &outlen, &used, err,
				      sizeof err);
		if (rc == TMPL_FALLBACK)
			fprintf(stderr, "ttychat template: warning: %s\n", err);
	}
	if (rc < 0) {
		fprintf(stderr, "ttychat template: %s: %s\n", tmpl_strerror(rc), err);
		status = rc == TMPL_ERR_ARG ? EXIT_USAGE : EXIT_FAIL;
		goto done;
	}
	if (fwrite(out, 1, outlen, stdout) != outlen || fflush(stdout) != 0) {
		fprintf(stderr, "ttychat template: write error\n");
		goto done;
	}
	status = EXIT_OK;
done:
	free(out);
	free(msgs);
	free(input);
	free(ttext);
	free(arch);
	free(bos);
	free(eos);
	gguf_close(g);
	return status;
}
