/*
 * bench_grammar.c - what grammar-constrained sampling costs per token, on
 * the vocabularies of the real models (`make bench-grammar`; not in check).
 *
 * For each model file present: the time to build the vocabulary's trie;
 * then a JSON reply, tokenized by the model's own tokenizer, is followed
 * through the JSON grammar, timing at each token (1) the fast path the
 * sampler takes when the model's pick is allowed (grammar_token_ok() of
 * that token, then grammar_accept_token()) and (2) the full mask
 * (grammar_mask() over the whole vocabulary), which the sampler needs only
 * when the pick is refused.  Compare them with the model's time per
 * decoded token (ttychat bench).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gbnf.h"
#include "gguf.h"
#include "grammar.h"
#include "testutil.h"
#include "tokenizer.h"

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: the machine may be shared */
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static const char *const json_gbnf =
	"root   ::= object\n"
	"value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
	"object ::= \"{\" ws ( string \":\" ws value (\",\" ws string \":\" ws value)* )? \"}\" ws\n"
	"array  ::= \"[\" ws ( value (\",\" ws value)* )? \"]\" ws\n"
	"string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4}) )* \"\\\"\" ws\n"
	"number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws\n"
	"ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

static const char *const reply =
	"{\n  \"name\": \"Mercury\",\n  \"radius_km\": 2439.7,\n  \"moons\": [],\n  \"description\": \"The smallest "
	"planet, closest to the Sun; a day there lasts 176 Earth days.\",\n  \"visited\": true,\n  \"missions\": "
	"[\"Mariner 10\", \"MESSENGER\", \"BepiColombo\"],\n  \"notes\": {\"caf\\u00e9\": null, \"temp_c\": [-173, 427]}\n}";

static void bench(const char *file)
{
	char path[4096], err[256];
	if (!tu_model(file, path, sizeof path)) {
		printf("%-40s absent\n", file);
		return;
	}
	gguf_file *f = gguf_open(path, err, sizeof err);
	tokenizer *tk = f ? tok_load(f, err, sizeof err) : NULL;
	if (f)
		gguf_close(f);
	if (!tk) {
		printf("%-40s %s\n", file, err);
		return;
	}
	double t0 = now_us();
	grammar_vocab *gv = grammar_vocab_from_tok(tk);
	double t_vocab = now_us() - t0;
	struct gbnf *g = NULL;
	gbnf_parse(json_gbnf, strlen(json_gbnf), NULL, NULL, 0, &g, err, sizeof err);
	int32_t *ids = NULL;
	size_t n = 0, cap = 0;
	tok_encode(tk, reply, strlen(reply), false, false, &ids, &n, &cap);
	uint32_t nv = tok_n_vocab(tk);
	float *logits = calloc(nv, sizeof *logits);
	if (!gv || !g || !logits || !n) {
		printf("%-40s setup failed\n", file);
		goto out;
	}
	grammar *m = grammar_new(g, gv, NULL);
	double t_fast = 0, t_mask = 0, mask_max = 0;
	int64_t allowed_sum = 0;
	for (size_t i = 0; i < n; i++) {
		double a = now_us();
		int64_t na = grammar_mask(m, logits);
		double b = now_us();
		bool ok = grammar_token_ok(m, ids[i]);
		int rc = grammar_accept_token(m, ids[i]);
		double c = now_us();
		if (na <= 0 || !ok || rc) {
			printf("%-40s token %zu refused\n", file, i);
			break;
		}
		allowed_sum += na;
		t_mask += b - a;
		t_fast += c - b;
		if (b - a > mask_max)
			mask_max = b - a;
	}
	printf("%-40s vocab %6u: trie %6.1f ms; per token: pick check+accept %6.1f us, full mask %7.2f ms "
	       "(max %6.2f; %5.1f%% of the vocabulary allowed on average) over %zu tokens\n",
	       file, nv, t_vocab / 1e3, t_fast / (double)n, t_mask / (double)n / 1e3, mask_max / 1e3,
	       100.0 * (double)allowed_sum / (double)n / nv, n);
	grammar_free(m);
out:
	free(logits);
	free(ids);
	gbnf_free(g);
	grammar_vocab_free(gv);
	tok_free(tk);
}

int main(void)
{
	bench(SMOLLM2_FILE);
	bench(GEMMA3_FILE);
	bench("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
	return 0;
}
