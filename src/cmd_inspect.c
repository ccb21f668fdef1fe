/*
 * cmd_inspect.c - `ttychat inspect FILE [--tensors] [--json]`.
 *
 * Opens a GGUF file with the engine's model-file probe (engine_file_open:
 * the hardened reader, header only) and summarises it: the model's
 * shape (architecture keys such as <arch>.block_count), its tokenizer, the
 * parameter count and the mix of tensor types with their byte totals.  The
 * facts are gathered once into a struct and then rendered either as aligned
 * text or as one cJSON document, so both outputs always agree.  Strings
 * from the file are hostile: text output escapes control bytes before they
 * reach the terminal; cJSON escapes them in JSON.
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "text.h"
#include "engine.h"

/* An optional unsigned fact. */
struct opt_u64 {
	bool ok;
	uint64_t v;
};

/* A string from the file: NOT NUL-terminated; ptr NULL when absent. */
struct fstr {
	const char *ptr;
	size_t len;
};

struct type_mix {
	const char *name;
	uint64_t count;
	uint64_t bytes;
};

struct inspect_info {
	struct fstr arch, name, tok_model, tok_pre;
	uint64_t n_params;
	uint64_t tensor_bytes;
	struct opt_u64 ctx, embd, layers, heads, heads_kv, vocab, bos, eos, ff;
	struct opt_u64 experts, experts_used, ff_exp;
	uint64_t n_active;             /* parameters one token reads (mixtures: the chosen experts') */
	bool has_rope;
	float rope_base;
	bool has_template;
	uint64_t template_len;
	struct type_mix mix[ENGINE_TYPE_COUNT];
};

static struct opt_u64 get_uint(const engine_file *f, const char *key)
{
	struct opt_u64 o = {false, 0};
	o.ok = engine_file_get_uint(f, key, &o.v);
	return o;
}

static void get_str(const engine_file *f, const char *key, struct fstr *out)
{
	if (!engine_file_get_str(f, key, &out->ptr, &out->len))
		out->ptr = NULL;
}

/* "<arch>.<suffix>" fact; absent when the arch name is unusable. */
static struct opt_u64 get_arch_uint(const engine_file *f, struct fstr arch, const char *suffix)
{
	char key[256];
	struct opt_u64 none = {false, 0};
	if (!arch.ptr || arch.len == 0 || arch.len > 128)
		return none;
	snprintf(key, sizeof key, "%.*s.%s", (int)arch.len, arch.ptr, suffix);
	return get_uint(f, key);
}

static void gather(const engine_file *f, struct inspect_info *in)
{
	memset(in, 0, sizeof *in);
	get_str(f, "general.architecture", &in->arch);
	get_str(f, "general.name", &in->name);
	get_str(f, "tokenizer.ggml.model", &in->tok_model);
	get_str(f, "tokenizer.ggml.pre", &in->tok_pre);
	in->ctx = get_arch_uint(f, in->arch, "context_length");
	in->embd = get_arch_uint(f, in->arch, "embedding_length");
	in->layers = get_arch_uint(f, in->arch, "block_count");
	in->ff = get_arch_uint(f, in->arch, "feed_forward_length");
	in->heads = get_arch_uint(f, in->arch, "attention.head_count");
	in->heads_kv = get_arch_uint(f, in->arch, "attention.head_count_kv");
	in->experts = get_arch_uint(f, in->arch, "expert_count");
	in->experts_used = get_arch_uint(f, in->arch, "expert_used_count");
	in->ff_exp = get_arch_uint(f, in->arch, "expert_feed_forward_length");
	if (in->arch.ptr && in->arch.len > 0 && in->arch.len <= 128) {
		char key[256];
		snprintf(key, sizeof key, "%.*s.rope.freq_base", (int)in->arch.len, in->arch.ptr);
		in->has_rope = engine_file_get_f32(f, key, &in->rope_base);
	}
	in->vocab.ok = engine_file_get_strs(f, "tokenizer.ggml.tokens", &in->vocab.v);
	in->bos = get_uint(f, "tokenizer.ggml.bos_token_id");
	in->eos = get_uint(f, "tokenizer.ggml.eos_token_id");
	struct fstr tmpl;
	get_str(f, "tokenizer.chat_template", &tmpl);
	if (tmpl.ptr) {
		in->has_template = true;
		in->template_len = tmpl.len;
	}
	/* both sums saturate rather than wrap (engine_file_info) */
	in->n_params = engine_file_info(f)->n_params;
	in->tensor_bytes = engine_file_info(f)->tensor_bytes;
	struct engine_tensor_info t;
	const bool moe = in->experts.ok && in->experts.v > 0 && in->experts_used.ok &&
			 in->experts_used.v <= in->experts.v;
	for (uint64_t i = 0; engine_file_tensor(f, i, &t); i++) {
		in->mix[t.type].name = t.type_name;
		in->mix[t.type].count++;
		in->mix[t.type].bytes += t.size;
		/* a stack of experts' matrices ("..._exps.weight"): a token
		 * reads experts_used of its expert_count matrices */
		const bool exps = t.name_len > 12 && memmem(t.name, t.name_len, "_exps.", 6) != NULL;
		uint64_t n = t.n_elements;
		if (moe && exps)
			n = n / in->experts.v * in->experts_used.v;
		in->n_active = in->n_active + n < in->n_active ? UINT64_MAX : in->n_active + n;
	}
}

/* Prints S with controls escaped: C0 and DEL as \xNN, C1 (U+0080..U+009F)
 * and bidirectional overrides as \uNNNN, invalid UTF-8 bytes as \xNN. */
static void put_str(FILE *out, struct fstr s)
{
	if (!s.ptr) {
		fputs("-", out);
		return;
	}
	for (size_t i = 0; i < s.len;) {
		unsigned char c = (unsigned char)s.ptr[i];
		unsigned cp;
		size_t n = c < 0x80 ? 1 : text_utf8_decode(s.ptr + i, s.len - i, &cp);
		if (c < 0x20 || c == 0x7f || n == 0) {
			fprintf(out, "\\x%02x", c);
			i++;
		} else if (n > 1 && (cp <= 0x9f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))) {
			fprintf(out, "\\u%04x", cp);
			i += n;
		} else {
			fwrite(s.ptr + i, 1, n, out);
			i += n;
		}
	}
}

static void put_opt(FILE *out, const char *label, struct opt_u64 o)
{
	fprintf(out, "%-16s ", label);
	if (o.ok)
		fprintf(out, "%" PRIu64 "\n", o.v);
	else
		fputs("-\n", out);
}

/* 134515008 -> "134.5M" */
static void human_count(uint64_t n, char *buf, size_t len)
{
	if (n >= 1000000000ull)
		snprintf(buf, len, "%.2fB", (double)n / 1e9);
	else if (n >= 1000000ull)
		snprintf(buf, len, "%.1fM", (double)n / 1e6);
	else if (n >= 1000ull)
		snprintf(buf, len, "%.1fK", (double)n / 1e3);
	else
		snprintf(buf, len, "%" PRIu64, n);
}

static void human_bytes(uint64_t n, char *buf, size_t len)
{
	if (n >= (1ull << 30))
		snprintf(buf, len, "%.2f GiB", (double)n / (double)(1ull << 30));
	else if (n >= (1ull << 20))
		snprintf(buf, len, "%.1f MiB", (double)n / (double)(1ull << 20));
	else if (n >= (1ull << 10))
		snprintf(buf, len, "%.1f KiB", (double)n / (double)(1ull << 10));
	else
		snprintf(buf, len, "%" PRIu64 " B", n);
}

static void shape_text(const struct engine_tensor_info *t, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (uint32_t d = 0; d < t->n_dims && o < len; d++) {
		int n = snprintf(buf + o, len - o, d ? " x %" PRIu64 : "%" PRIu64, t->ne[d]);
		if (n < 0)
			break;
		o += (size_t)n;
	}
}

static void print_text(const engine_file *f, const struct inspect_info *in, bool tensors)
{
	const struct engine_file_info *fi = engine_file_info(f);
	char a[64], b[64];
	printf("%-16s %s\n", "file", engine_file_path(f));
	human_bytes(fi->file_bytes, a, sizeof a);
	printf("%-16s %" PRIu64 " bytes (%s)\n", "file size", fi->file_bytes, a);
	printf("%-16s GGUF v%" PRIu32 ", %" PRIu64 " keys, %" PRIu64 " tensors, alignment %" PRIu32
	       "\n", "format", fi->gguf_version, fi->n_keys, fi->n_tensors, fi->alignment);
	printf("%-16s ", "architecture");
	put_str(stdout, in->arch);
	printf("\n%-16s ", "name");
	put_str(stdout, in->name);
	human_count(in->n_params, a, sizeof a);
	printf("\n%-16s %" PRIu64 " (%s)\n", "parameters", in->n_params, a);
	put_opt(stdout, "context length", in->ctx);
	put_opt(stdout, "embedding size", in->embd);
	put_opt(stdout, "feed-forward", in->ff);
	if (in->experts.ok && in->experts.v > 0) {
		printf("%-16s %" PRIu64, "experts", in->experts.v);
		if (in->experts_used.ok)
			printf(", %" PRIu64 " per token", in->experts_used.v);
		if (in->ff_exp.ok)
			printf(", %" PRIu64 " wide", in->ff_exp.v);
		human_count(in->n_active, b, sizeof b);
		printf("\n%-16s %" PRIu64 " (%s) per token\n", "active params", in->n_active, b);
	}
	put_opt(stdout, "layers", in->layers);
	put_opt(stdout, "heads", in->heads);
	put_opt(stdout, "KV heads", in->heads_kv);
	printf("%-16s ", "rope base");
	if (in->has_rope)
		printf("%g\n", (double)in->rope_base);
	else
		puts("-");
	printf("%-16s ", "tokenizer");
	put_str(stdout, in->tok_model);
	if (in->tok_pre.ptr) {
		printf(" (pre ");
		put_str(stdout, in->tok_pre);
		printf(")");
	}
	printf("\n");
	put_opt(stdout, "vocab size", in->vocab);
	put_opt(stdout, "BOS id", in->bos);
	put_opt(stdout, "EOS id", in->eos);
	if (in->has_template)
		printf("%-16s yes (%" PRIu64 " bytes)\n", "chat template", in->template_len);
	else
		printf("%-16s no\n", "chat template");
	human_bytes(in->tensor_bytes, a, sizeof a);
	printf("%-16s %" PRIu64 " bytes (%s)\n", "tensor data", in->tensor_bytes, a);
	printf("tensor types:\n");
	for (uint32_t t = 0; t < ENGINE_TYPE_COUNT; t++) {
		if (!in->mix[t].count)
			continue;
		human_bytes(in->mix[t].bytes, b, sizeof b);
		printf("  %-8s %6" PRIu64 " tensors %12" PRIu64 " bytes (%s)\n", in->mix[t].name,
		       in->mix[t].count, in->mix[t].bytes, b);
	}
	if (!tensors)
		return;
	printf("tensors:\n");
	struct engine_tensor_info t;
	for (uint64_t i = 0; engine_file_tensor(f, i, &t); i++) {
		char shape[128];
		shape_text(&t, shape, sizeof shape);
		printf("  %5" PRIu64 " ", i);
		put_str(stdout, (struct fstr){t.name, t.name_len});
		printf("  %s  [%s]  offset %" PRIu64 "  size %" PRIu64 "\n", t.type_name, shape, t.offset,
		       t.size);
	}
}

/* cJSON takes NUL-terminated strings: copy, bounded by the string's size. */
static cJSON *json_str(struct fstr s)
{
	if (!s.ptr)
		return cJSON_CreateNull();
	char *tmp = malloc(s.len + 1);
	if (!tmp)
		return NULL;
	memcpy(tmp, s.ptr, s.len);
	tmp[s.len] = '\0';
	/* An embedded NUL would truncate silently; the key is still useful. */
	cJSON *j = cJSON_CreateString(tmp);
	free(tmp);
	return j;
}

static cJSON *json_opt(struct opt_u64 o)
{
	return o.ok ? cJSON_CreateNumber((double)o.v) : cJSON_CreateNull();
}

static cJSON *build_json(const engine_file *f, const struct inspect_info *in, bool tensors)
{
	const struct engine_file_info *fi = engine_file_info(f);
	cJSON *root = cJSON_CreateObject();
	if (!root)
		return NULL;
	cJSON_AddStringToObject(root, "file", engine_file_path(f));
	cJSON_AddNumberToObject(root, "file_size", (double)fi->file_bytes);
	cJSON_AddNumberToObject(root, "gguf_version", fi->gguf_version);
	cJSON_AddNumberToObject(root, "n_keys", (double)fi->n_keys);
	cJSON_AddNumberToObject(root, "n_tensors", (double)fi->n_tensors);
	cJSON_AddNumberToObject(root, "alignment", fi->alignment);
	cJSON_AddItemToObject(root, "architecture", json_str(in->arch));
	cJSON_AddItemToObject(root, "name", json_str(in->name));
	cJSON_AddNumberToObject(root, "parameters", (double)in->n_params);
	cJSON_AddItemToObject(root, "context_length", json_opt(in->ctx));
	cJSON_AddItemToObject(root, "embedding_length", json_opt(in->embd));
	cJSON_AddItemToObject(root, "feed_forward_length", json_opt(in->ff));
	cJSON_AddItemToObject(root, "expert_count", json_opt(in->experts));
	cJSON_AddItemToObject(root, "expert_used_count", json_opt(in->experts_used));
	cJSON_AddNumberToObject(root, "active_parameters", (double)in->n_active);
	cJSON_AddItemToObject(root, "block_count", json_opt(in->layers));
	cJSON_AddItemToObject(root, "head_count", json_opt(in->heads));
	cJSON_AddItemToObject(root, "head_count_kv", json_opt(in->heads_kv));
	if (in->has_rope)
		cJSON_AddNumberToObject(root, "rope_freq_base", (double)in->rope_base);
	else
		cJSON_AddNullToObject(root, "rope_freq_base");
	cJSON_AddItemToObject(root, "tokenizer_model", json_str(in->tok_model));
	cJSON_AddItemToObject(root, "tokenizer_pre", json_str(in->tok_pre));
	cJSON_AddItemToObject(root, "vocab_size", json_opt(in->vocab));
	cJSON_AddItemToObject(root, "bos_token_id", json_opt(in->bos));
	cJSON_AddItemToObject(root, "eos_token_id", json_opt(in->eos));
	cJSON_AddBoolToObject(root, "chat_template", in->has_template);
	cJSON_AddNumberToObject(root, "tensor_bytes", (double)in->tensor_bytes);
	cJSON *mix = cJSON_AddObjectToObject(root, "tensor_types");
	for (uint32_t t = 0; mix && t < ENGINE_TYPE_COUNT; t++) {
		if (!in->mix[t].count)
			continue;
		cJSON *e = cJSON_AddObjectToObject(mix, in->mix[t].name);
		cJSON_AddNumberToObject(e, "count", (double)in->mix[t].count);
		cJSON_AddNumberToObject(e, "bytes", (double)in->mix[t].bytes);
	}
	if (!tensors)
		return root;
	cJSON *arr = cJSON_AddArrayToObject(root, "tensors");
	struct engine_tensor_info t;
	for (uint64_t i = 0; arr && engine_file_tensor(f, i, &t); i++) {
		cJSON *e = cJSON_CreateObject();
		if (!e)
			break;
		cJSON_AddItemToArray(arr, e);
		cJSON_AddItemToObject(e, "name", json_str((struct fstr){t.name, t.name_len}));
		cJSON_AddStringToObject(e, "type", t.type_name);
		cJSON *shape = cJSON_AddArrayToObject(e, "shape");
		for (uint32_t d = 0; shape && d < t.n_dims; d++)
			cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t.ne[d]));
		cJSON_AddNumberToObject(e, "offset", (double)t.offset);
		cJSON_AddNumberToObject(e, "size", (double)t.size);
	}
	return root;
}

static int usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "ttychat inspect: %s%s\nusage: ttychat inspect FILE [--tensors] [--json]\n",
		msg, arg ? arg : "");
	return EXIT_USAGE;
}

int cmd_inspect(int argc, char **argv)
{
	const char *path = NULL;
	bool tensors = false, json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--tensors") == 0)
			tensors = true;
		else if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: ttychat inspect FILE [--tensors] [--json]\n");
			return EXIT_OK;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0')
			return usage_error("unknown option ", argv[i]);
		else if (path)
			return usage_error("more than one file: ", argv[i]);
		else
			path = argv[i];
	}
	if (!path)
		return usage_error("no file given", NULL);

	char err[512];
	engine_file *f = engine_file_open(path, err, sizeof err);
	if (!f) {
		fprintf(stderr, "ttychat inspect: %s\n", err);
		return EXIT_FAIL;
	}
	struct inspect_info *in = malloc(sizeof *in);
	if (!in) {
		engine_file_close(f);
		fprintf(stderr, "ttychat inspect: out of memory\n");
		return EXIT_FAIL;
	}
	gather(f, in);
	int rc = EXIT_OK;
	if (json) {
		cJSON *root = build_json(f, in, tensors);
		char *text = root ? cJSON_Print(root) : NULL;
		if (text) {
			/* cJSON leaves C1 controls raw: JSON text has them only
			 * inside strings, where \u0080..\u009f mean the same */
			for (const char *p = text; *p; p++) {
				if ((unsigned char)p[0] == 0xc2 && (unsigned char)p[1] >= 0x80 && (unsigned char)p[1] <= 0x9f)
					printf("\\u%04x", (unsigned char)*++p);
				else
					putchar(*p);
			}
			putchar('\n');
			free(text);
		} else {
			fprintf(stderr, "ttychat inspect: out of memory building JSON\n");
			rc = EXIT_FAIL;
		}
		cJSON_Delete(root);
	} else {
		print_text(f, in, tensors);
	}
	free(in);
	engine_file_close(f);
	if (fflush(stdout) != 0 && rc == EXIT_OK) {
		fprintf(stderr, "ttychat inspect: write error on standard output\n");
		rc = EXIT_FAIL;
	}
	return rc;
}
