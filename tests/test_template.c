/*
 * test_template.c - unit tests for engine/template.c.
 *
 * Golden renders (expected strings produced once with python3-jinja2
 * configured as transformers does; the broad comparison against Jinja
 * lives in test_template.py), the caps (recursion, steps, time, output,
 * memory, parser nesting) ending in clean errors, error codes and
 * messages, the built-in formats and family detection, the fallback
 * policy, JSON inputs, concurrent renders of one parsed template, locale
 * independence, and a mutation fuzz pass over real-looking templates that
 * must never crash (run it under --enable-sanitizers).
 */
#include "config.h"

#include <locale.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "template.h"
#include "testutil.h"

static const struct tmpl_message conv[] = {
	{"system", "sys", 3},
	{"user", "h\xc3\xa9llo", 6},
	{"assistant", " hi ", 4},
	{"user", "bye", 3},
};
#define NCONV (sizeof conv / sizeof conv[0])

/* Renders src over conv; returns the code, output in *out (or NULL). */
static int render(const char *src, const struct tmpl_options *opt, char **out, char *err, size_t errlen)
{
	size_t len = 0;
	int rc = tmpl_render_text(src, strlen(src), conv, NCONV, opt, out, &len, err, errlen);
	if (rc == TMPL_OK && *out && strlen(*out) != len)
		rc = -100;
	return rc;
}

static struct tmpl_options base_opts(void)
{
	struct tmpl_options o = {0};
	o.add_generation_prompt = true;
	o.bos_token = "<s>";
	o.eos_token = "</s>";
	o.now = 1721995200;     /* 26 Jul 2024 12:00 UTC */
	return o;
}

/* ---- golden renders (expected output from python3-jinja2) ---- */

static const struct {
	const char *src, *want;
} golden[] = {
	{"{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
	 "<system>sys\n<user>h\xc3\xa9llo\n<assistant> hi \n<user>bye\n<assistant>"},
	{"a\n  {% if true %}\n  b\n  {% endif %}\nc",
	 "a\n  b\nc"},
	{"a  {%- if true -%}  b  {%- endif -%}  c",
	 "abc"},
	{"{% for i in [1, 2, 3] %}\n  {{ i }}\n{% endfor %}\n",
	 "  1\n  2\n  3\n"},
	{"x {# comment #}\ny\n  {# own line #}\nz",
	 "x y\nz"},
	{"{{ missing }}|{{ 'u' if missing is defined else 'd' }}|{{ none }}|{{ [1, 'a', none] }}",
	 "|d|None|[1, 'a', None]"},
	{"{% set ns = namespace(n=0) %}{% for m in messages if m.role != 'system' %}{% set ns.n = ns.n + loop.length %}{% endfor %}{{ ns.n }}",
	 "9"},
	{"{% macro t(m) %}[{{ m.role|upper }}:{{ m.content|trim }}]{% endmacro %}{% for m in messages %}{{ t(m) }}{% endfor %}",
	 "[SYSTEM:sys][USER:h\xc3\xa9llo][ASSISTANT:hi][USER:bye]"},
	{"{{ messages|map(attribute='role')|join(',') }} {{ messages|selectattr('role', 'equalto', 'user')|list|length }}",
	 "system,user,assistant,user 2"},
	{"{{ messages[1:]|length }} {{ messages[::-1][0].content }} {{ messages[-1]['content'][::-1] }}",
	 "3 bye eyb"},
	{"{{ {'k': 'v\xc3\xa9', 'n': [1, 2.5, none, true]}|tojson }} {{ {'k': 'v'}|tojson(indent=2) }}",
	 "{\"k\": \"v\xc3\xa9\", \"n\": [1, 2.5, null, true]} {\n  \"k\": \"v\"\n}"},
	{"{{ 1.0 }} {{ 1e16 }} {{ 0.1 + 0.2 }} {{ 10 / 4 }} {{ 7 // -2 }} {{ -7 % 3 }} {{ 2 ** 10 }}",
	 "1.0 1e+16 0.30000000000000004 2.5 -4 2 1024"},
	{"{{ '  x  '|trim }}|{{ '\xce\xa3\xce\x91\xce\xa3'|lower }}|{{ 'stra\xc3\x9f" "e'|upper }}|{{ 'hello world'|title }}|{{ 'x'|center(5) }}|",
	 "x|\xcf\x83\xce\xb1\xcf\x82|STRASSE|Hello World|  x  |"},
	{"{% raw %}{{ raw }}{% endraw %}",
	 "{{ raw }}"},
	{"{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}",
	 "<s></s>True"},
	{"{{ strftime_now('%d %b %Y') }}",
	 "26 Jul 2024"},
};

static void test_golden(void)
{
	struct tmpl_options o = base_opts();
	char err[256];
	for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
		char *out = NULL;
		int rc = render(golden[i].src, &o, &out, err, sizeof err);
		CHECK(rc == TMPL_OK, "golden %zu: rc %d (%s)", i, rc, err);
		if (rc == TMPL_OK)
			CHECK(!strcmp(out, golden[i].want), "golden %zu:\n  got  [%s]\n  want [%s]", i, out,
			      golden[i].want);
		free(out);
	}
}

/* ---- errors ---- */

static void expect_code(const char *src, const struct tmpl_options *o, int want, const char *msg_part)
{
	char err[256] = "";
	char *out = NULL;
	int rc = render(src, o, &out, err, sizeof err);
	CHECK(rc == want, "[%.60s]: rc %d, want %d (%s)", src, rc, want, err);
	CHECK(out == NULL || rc == TMPL_OK, "[%.60s]: output on failure", src);
	if (msg_part)
		CHECK(strstr(err, msg_part) != NULL, "[%.60s]: message [%s] lacks [%s]", src, err, msg_part);
	CHECK(strchr(err, '\n') == NULL, "[%.60s]: message is not one line", src);
	free(out);
}

static void test_errors(void)
{
	struct tmpl_options o = base_opts();
	expect_code("{{ raise_exception('System role not supported') }}", &o, TMPL_ERR_RAISED,
		    "System role not supported");
	expect_code("ok\n{% if x %}\nunclosed", &o, TMPL_ERR_SYNTAX, "endif");
	expect_code("line1\nline2 {{ 1 + }}", &o, TMPL_ERR_SYNTAX, "line 2");
	expect_code("{{ x|no_such_filter }}", &o, TMPL_ERR_SYNTAX, "no_such_filter");
	expect_code("{% break %}", &o, TMPL_ERR_SYNTAX, "outside loop");
	expect_code("{{ missing.attr }}", &o, TMPL_ERR_RUNTIME, "'missing' is undefined");
	expect_code("{{ 'a' + 1 }}", &o, TMPL_ERR_RUNTIME, "concatenate");
	expect_code("{{ 1 / 0 }}", &o, TMPL_ERR_RUNTIME, "division by zero");
	expect_code("{{ messages.append(1) }}", &o, TMPL_ERR_RUNTIME, NULL);
	expect_code("{{ range(200000)|length }}", &o, TMPL_ERR_RUNTIME, "Range too big");
	expect_code("{{ 9223372036854775807 + 1 }}", &o, TMPL_ERR_RUNTIME, "overflow");
	expect_code("{{ x|pprint }}", &o, TMPL_ERR_RUNTIME, "not supported");
	/* Jinja's laziness: an unknown filter or test inside an if or a
	 * conditional expression fails only when evaluated */
	expect_code("{% if true %}{{ 1|from_yaml }}{% endif %}", &o, TMPL_ERR_RUNTIME, "No filter named 'from_yaml' found");
	expect_code("{% if 1 is odd_ish %}{% endif %}", &o, TMPL_ERR_RUNTIME, "No test named 'odd_ish' found");
	expect_code("{% if false %}{% for i in l %}{{ i|nope }}{% endfor %}{% endif %}", &o, TMPL_ERR_SYNTAX,
		    "No filter named 'nope'");
	expect_code("{{ ('[1,' | from_json) }}", &o, TMPL_ERR_RUNTIME, "from_json");
	char *lz = NULL;
	char lerr[256];
	CHECK(render("{% if false %}{{ x|from_yaml }}{% elif false and x is nosuch %}{% endif %}"
		     "{{ 1|nope if false else 'a' }}{{ ('{\"k\": [1, \"v\"]}'|from_json).k[1] }}",
		     &o, &lz, lerr, sizeof lerr) == TMPL_OK &&
		      lz && strcmp(lz, "av") == 0,
	      "lazy unknown names, from_json: %s", lz ? lz : lerr);
	free(lz);

	struct tmpl_options bad = o;
	bad.vars_json = "{\"tools\": [1, 2";
	expect_code("x", &bad, TMPL_ERR_ARG, "vars_json");
	bad.vars_json = "[1]";
	expect_code("x", &bad, TMPL_ERR_ARG, "not an object");

	char *out = (char *)1;
	char err[128];
	CHECK(tmpl_render_text("x", 1, NULL, 3, &o, &out, NULL, err, sizeof err) == TMPL_ERR_ARG,
	      "NULL messages with n > 0");
	CHECK(out == NULL, "out cleared on error");
	tmpl *t = (tmpl *)1;
	CHECK(tmpl_parse(NULL, 5, &t, err, sizeof err) == TMPL_ERR_ARG && t == NULL, "NULL source");
	CHECK(tmpl_parse("", 0, &t, err, sizeof err) == TMPL_OK && t, "empty template parses");
	char *o2 = NULL;
	CHECK(tmpl_render(t, NULL, 0, NULL, &o2, NULL, err, sizeof err) == TMPL_OK && o2 && !*o2,
	      "empty template renders empty");
	free(o2);
	tmpl_free(t);
	tmpl_free(NULL);
	CHECK(strcmp(tmpl_strerror(TMPL_ERR_LIMIT), "unknown error") != 0, "strerror");
}

/* ---- caps ---- */

static void test_caps(void)
{
	struct tmpl_options o = base_opts();
	/* unbounded recursion */
	expect_code("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", &o, TMPL_ERR_LIMIT, "recursion");
	/* nested loops that would run 10^10 iterations: the step cap */
	o.limits.max_steps = 200000;
	expect_code("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", &o,
		    TMPL_ERR_LIMIT, "step");
	/* the same with a huge step budget: the time cap */
	o = base_opts();
	o.limits.max_steps = UINT64_MAX;
	o.limits.max_time_ms = 100;
	expect_code("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", &o,
		    TMPL_ERR_LIMIT, "time");
	/* huge output */
	o = base_opts();
	o.limits.max_output = 1 << 20;
	expect_code("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", &o, TMPL_ERR_LIMIT, "output");
	/* exponential string growth inside a namespace */
	o = base_opts();
	o.limits.max_memory = 32 << 20;
	expect_code("{% set ns = namespace(s='xy') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
		    &o, TMPL_ERR_LIMIT, NULL);
	/* memory: many live lists */
	expect_code("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] %}{% endfor %}",
		    &o, TMPL_ERR_LIMIT, "memory");
	/* deeply nested values built at run time: printing, tojson and
	 * comparison recurse, and must stop at the depth cap */
	o = base_opts();
	const char *deep = "{% set ns = namespace(l=[]) %}{% for i in range(5000) %}{% set ns.l = [ns.l] %}{% endfor %}";
	char src[1024];
	snprintf(src, sizeof src, "%s{{ ns.l|tojson }}", deep);
	expect_code(src, &o, TMPL_ERR_LIMIT, "recursion");
	snprintf(src, sizeof src, "%s{{ ns.l }}", deep);
	expect_code(src, &o, TMPL_ERR_LIMIT, "recursion");
	snprintf(src, sizeof src, "%s{%% set a = ns.l %%}%s{{ a == ns.l }}", deep, deep);
	expect_code(src, &o, TMPL_ERR_LIMIT, "recursion");
	/* parser nesting */
	size_t depth = 5000;
	char *nest = malloc(depth * 2 + 16);
	size_t k = 0;
	memcpy(nest, "{{ ", 3);
	k = 3;
	for (size_t i = 0; i < depth; i++)
		nest[k++] = '(';
	nest[k++] = '1';
	for (size_t i = 0; i < depth; i++)
		nest[k++] = ')';
	memcpy(nest + k, " }}", 4);
	expect_code(nest, &o, TMPL_ERR_LIMIT, "nested");
	k = 0;
	for (size_t i = 0; i < 1000; i++) {
		memcpy(nest + k, "{%if 1%}", 8);
		k += 8;
		if (k + 16 > depth * 2)
			break;
	}
	nest[k] = 0;
	expect_code(nest, &o, TMPL_ERR_LIMIT, "nested");
	free(nest);
	/* a very long elif chain is fine within the cap */
	char *chain = malloc(64 * 150 + 64);
	k = 0;
	k += (size_t)sprintf(chain + k, "{%% if false %%}");
	for (int i = 0; i < 150; i++)
		k += (size_t)sprintf(chain + k, "{%% elif %d == 149 %%}%d", i, i);
	sprintf(chain + k, "{%% endif %%}");
	char *out = NULL;
	char err[256];
	CHECK(render(chain, &o, &out, err, sizeof err) == TMPL_OK && out && !strcmp(out, "149"),
	      "elif chain: %s", out ? out : err);
	free(out);
	free(chain);
}

/* ---- inputs: messages, vars, JSON ---- */

static void test_inputs(void)
{
	char err[256];
	char *out = NULL;
	size_t len = 0;
	struct tmpl_options o = base_opts();
	/* NUL bytes and none content survive */
	const struct tmpl_message m[] = {{"user", "a\0b", 3}, {"assistant", NULL, 0}};
	const char *src = "{% for x in messages %}[{{ x.content }}|{{ x.content is none }}|{{ x.content|string|length }}]{% endfor %}";
	CHECK(tmpl_render_text(src, strlen(src), m, 2, &o, &out, &len, err, sizeof err) == TMPL_OK, "%s", err);
	CHECK(len == 26 && !memcmp(out, "[a\0b|False|3][None|True|4]", 26), "NUL content: %zu", len);
	free(out);
	/* vars_json: Python json semantics, overrides */
	o.vars_json = "{\"tools\": null, \"n\": 1, \"f\": 1.0, \"u\": \"\\u00e9\\ud83d\\ude00\", \"bos_token\": \"B\"}";
	CHECK(render("{{ tools is none }} {{ n }} {{ f }} {{ u }} {{ bos_token }}", &o, &out, err, sizeof err) == TMPL_OK, "%s", err);
	CHECK(out && !strcmp(out, "True 1 1.0 \xc3\xa9\xf0\x9f\x98\x80 B"), "vars: %s", out);
	free(out);
	/* messages_json replaces msgs */
	o = base_opts();
	o.messages_json = "[{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1}}}]}]";
	CHECK(render("{{ messages[0].tool_calls[0].function.arguments|tojson }}", &o, &out, err, sizeof err) == TMPL_OK, "%s", err);
	CHECK(out && !strcmp(out, "{\"a\": 1}"), "messages_json: %s", out);
	free(out);
	/* tmpl_messages_from_json */
	struct tmpl_message *msgs = NULL;
	size_t n = 0;
	bool structured = true;
	CHECK(tmpl_messages_from_json("[{\"role\": \"user\", \"content\": \"x\\u0000y\"}, {\"role\": \"assistant\", \"content\": null}]",
				      &msgs, &n, &structured, err, sizeof err) == TMPL_OK, "%s", err);
	CHECK(n == 2 && !structured && msgs[0].content_len == 3 && !memcmp(msgs[0].content, "x\0y", 3) &&
	      msgs[1].content == NULL && !strcmp(msgs[1].role, "assistant"), "messages_from_json");
	free(msgs);
	CHECK(tmpl_messages_from_json("[{\"role\": \"user\", \"content\": [1]}]", &msgs, &n, &structured, err, sizeof err) == TMPL_OK &&
	      structured && msgs[0].content == NULL, "structured content");
	free(msgs);
	CHECK(tmpl_messages_from_json("[{\"content\": \"x\"}]", &msgs, &n, NULL, err, sizeof err) == TMPL_ERR_ARG && !msgs,
	      "no role");
	CHECK(tmpl_messages_from_json("{\"role\": 1", &msgs, &n, NULL, err, sizeof err) == TMPL_ERR_ARG, "bad JSON");
	/* nesting in JSON is bounded */
	char *deep = malloc(20000);
	memset(deep, '[', 10000);
	memset(deep + 10000, ']', 9999);
	deep[19999] = 0;
	o = base_opts();
	o.messages_json = deep;
	CHECK(render("x", &o, &out, err, sizeof err) == TMPL_ERR_ARG && strstr(err, "deep"), "deep JSON: %s", err);
	free(deep);
}

/* ---- built-in formats and the fallback policy ---- */

static const struct {
	const char *family, *want;
} builtin_golden[] = {
	{"chatml", "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n U1 <|im_end|>\n<|im_start|>assistant\n<think>r</think>A1<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n"},
	{"llama2", "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\n U1 [/INST] <think>r</think>A1 </s><s>[INST] U2 [/INST]"},
	{"mistral", "<s>[INST] S\n\n U1  [/INST]<think>r</think>A1</s>[INST] U2 [/INST]"},
	{"mistral-nemo", "<s>[INST] U1 [/INST]<think>r</think>A1</s>[INST]S\n\nU2[/INST]"},
	{"llama3", "<s><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n<think>r</think>A1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
	{"gemma", "<s><start_of_turn>user\nS\n\nU1<end_of_turn>\n<start_of_turn>model\n<think>r</think>A1<end_of_turn>\n<start_of_turn>user\nU2<end_of_turn>\n<start_of_turn>model\n"},
	{"phi3", "<|system|>\nS<|end|>\n<|user|>\n U1 <|end|>\n<|assistant|>\n<think>r</think>A1<|end|>\n<|user|>\nU2<|end|>\n<|assistant|>\n"},
	{"deepseek", "<s>S<\xef\xbd\x9cUser\xef\xbd\x9c> U1 <\xef\xbd\x9c" "Assistant\xef\xbd\x9c>A1<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c><\xef\xbd\x9cUser\xef\xbd\x9c>U2<\xef\xbd\x9c" "Assistant\xef\xbd\x9c><think>\n"},
	{"zephyr", "<|system|>\nS</s>\n<|user|>\n U1 </s>\n<|assistant|>\n<think>r</think>A1</s>\n<|user|>\nU2</s>\n<|assistant|>\n"},
	{"command-r", "<s><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>S<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>U1<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><think>r</think>A1<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>U2<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"},
	{"vicuna", "S\n\nUSER:  U1 \nASSISTANT: <think>r</think>A1</s>\nUSER: U2\nASSISTANT:"},
};

static void test_builtins(void)
{
	const struct tmpl_message m[] = {
		{"system", "S", 1}, {"user", " U1 ", 4}, {"assistant", "<think>r</think>A1", 18}, {"user", "U2", 2},
	};
	struct tmpl_options o = base_opts();
	char err[256];
	for (size_t i = 0; i < sizeof builtin_golden / sizeof builtin_golden[0]; i++) {
		enum tmpl_family f = tmpl_family_from_name(builtin_golden[i].family);
		CHECK(f != TMPL_FAMILY_UNKNOWN && !strcmp(tmpl_family_name(f), builtin_golden[i].family),
		      "family name %s", builtin_golden[i].family);
		char *out = NULL;
		size_t len;
		int rc = tmpl_render_builtin(f, m, 4, &o, &out, &len, err, sizeof err);
		CHECK(rc == TMPL_OK && out && len == strlen(builtin_golden[i].want) &&
		      !strcmp(out, builtin_golden[i].want), "builtin %s:\n  got  [%s]\n  want [%s]",
		      builtin_golden[i].family, out ? out : err, builtin_golden[i].want);
		free(out);
		/* empty conversation, no options */
		out = NULL;
		CHECK(tmpl_render_builtin(f, NULL, 0, NULL, &out, &len, err, sizeof err) == TMPL_OK && out,
		      "builtin %s: empty", builtin_golden[i].family);
		free(out);
		/* output cap */
		struct tmpl_options small = o;
		small.limits.max_output = 10;
		out = NULL;
		CHECK(tmpl_render_builtin(f, m, 4, &small, &out, &len, err, sizeof err) == TMPL_ERR_LIMIT && !out,
		      "builtin %s: cap", builtin_golden[i].family);
	}
	CHECK(tmpl_family_from_name("nope") == TMPL_FAMILY_UNKNOWN, "unknown family");
	CHECK(!strcmp(tmpl_family_name((enum tmpl_family)99), "unknown"), "family name out of range");

	/* detection from template text, then from the architecture */
	static const struct {
		const char *text, *arch;
		enum tmpl_family want;
	} det[] = {
		{"{{ '<|im_start|>' + m.role }}", NULL, TMPL_FAMILY_CHATML},
		{"<|start_header_id|>x<|end_header_id|>", "llama", TMPL_FAMILY_LLAMA3},
		{"[INST] <<SYS>>", NULL, TMPL_FAMILY_LLAMA2},
		{"{{ '[INST] ' + c + ' [/INST]' }}", NULL, TMPL_FAMILY_MISTRAL},
		{"{{ '[INST]' + c + '[/INST]' }}", NULL, TMPL_FAMILY_MISTRAL_NEMO},
		{"<start_of_turn>", NULL, TMPL_FAMILY_GEMMA},
		{"<|user|>\n<|end|><|assistant|>", NULL, TMPL_FAMILY_PHI3},
		{"<\xef\xbd\x9cUser\xef\xbd\x9c>", NULL, TMPL_FAMILY_DEEPSEEK},
		{"<|user|>\n</s><|assistant|>", NULL, TMPL_FAMILY_ZEPHYR},
		{"<|START_OF_TURN_TOKEN|>", NULL, TMPL_FAMILY_COMMAND_R},
		{"USER: x ASSISTANT:", NULL, TMPL_FAMILY_VICUNA},
		{NULL, "gemma3", TMPL_FAMILY_GEMMA},
		{"", "phi3", TMPL_FAMILY_PHI3},
		{"no markers", "qwen2", TMPL_FAMILY_CHATML},
		{NULL, "llama", TMPL_FAMILY_UNKNOWN},
		{NULL, NULL, TMPL_FAMILY_UNKNOWN},
	};
	for (size_t i = 0; i < sizeof det / sizeof det[0]; i++)
		CHECK(tmpl_detect_family(det[i].text, det[i].arch) == det[i].want, "detect %zu", i);

	/* the policy: template ok / template fails / no template */
	char *out = NULL;
	size_t len;
	enum tmpl_family used = TMPL_FAMILY_COUNT;
	CHECK(tmpl_format_chat("{{ messages|length }}", "gemma3", m, 4, &o, &out, &len, &used, err, sizeof err) == TMPL_OK &&
	      !strcmp(out, "4") && used == TMPL_FAMILY_UNKNOWN, "policy: template used");
	free(out);
	out = NULL;
	CHECK(tmpl_format_chat("<start_of_turn>{{ raise_exception('no system') }}", NULL, m, 4, &o, &out, &len, &used,
			       err, sizeof err) == TMPL_FALLBACK && used == TMPL_FAMILY_GEMMA && strstr(err, "no system") &&
	      strstr(err, "gemma") && !strcmp(out, builtin_golden[5].want), "policy: raise -> gemma (%s)", err);
	free(out);
	out = NULL;
	CHECK(tmpl_format_chat(NULL, "gemma3", m, 4, &o, &out, &len, &used, err, sizeof err) == TMPL_FALLBACK &&
	      used == TMPL_FAMILY_GEMMA && strstr(err, "no chat template"), "policy: no template");
	free(out);
	out = NULL;
	CHECK(tmpl_format_chat("{% for %}", "llama", m, 4, &o, &out, &len, &used, err, sizeof err) == TMPL_FALLBACK &&
	      used == TMPL_FAMILY_CHATML && !strcmp(out, builtin_golden[0].want), "policy: syntax error -> chatml");
	free(out);
	out = NULL;
	struct tmpl_options capped = o;
	capped.limits.max_steps = 1000;
	CHECK(tmpl_format_chat("{% for i in range(100000) %}{% endfor %}<|im_start|>", NULL, m, 4, &capped, &out, &len,
			       &used, err, sizeof err) == TMPL_FALLBACK && used == TMPL_FAMILY_CHATML &&
	      strstr(err, "limit"), "policy: cap -> chatml (%s)", err);
	free(out);
}

/* ---- one parsed template, many threads ---- */

struct thread_arg {
	const tmpl *t;
	const char *want;
	int ok;
};

static void *render_thread(void *p)
{
	struct thread_arg *a = p;
	struct tmpl_options o = base_opts();
	a->ok = 1;
	for (int i = 0; i < 50; i++) {
		char *out = NULL;
		char err[128];
		if (tmpl_render(a->t, conv, NCONV, &o, &out, NULL, err, sizeof err) != TMPL_OK || strcmp(out, a->want))
			a->ok = 0;
		free(out);
	}
	return NULL;
}

static void test_threads(void)
{
	tmpl *t;
	char err[128];
	const char *src = golden[7].src;
	CHECK(tmpl_parse(src, strlen(src), &t, err, sizeof err) == TMPL_OK, "%s", err);
	pthread_t th[4];
	struct thread_arg a[4];
	for (int i = 0; i < 4; i++) {
		a[i] = (struct thread_arg){t, golden[7].want, 0};
		pthread_create(&th[i], NULL, render_thread, &a[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(a[i].ok, "thread %d", i);
	}
	tmpl_free(t);
}

/* ---- locale: numbers stay Python's whatever LC_NUMERIC says ---- */

static void test_locale(void)
{
	const char *locs[] = {"de_DE.UTF-8", "fr_FR.UTF-8", "C.UTF-8"};
	for (size_t i = 0; i < sizeof locs / sizeof locs[0]; i++) {
		if (!setlocale(LC_ALL, locs[i]))
			continue;
		struct tmpl_options o = base_opts();
		o.vars_json = "{\"f\": 2.5}";
		char *out = NULL;
		char err[128];
		CHECK(render("{{ 1.5 }} {{ f }} {{ '0.25'|float }} {{ 1.5|tojson }} {{ '%.2f'|format(0.5) }}", &o, &out,
			     err, sizeof err) == TMPL_OK && !strcmp(out, "1.5 2.5 0.25 1.5 0.50"),
		      "locale %s: %s", locs[i], out ? out : err);
		free(out);
	}
	setlocale(LC_ALL, "C");
}

/* ---- mutation fuzz: never crash, always a clean code ---- */

static const char *const fuzz_seeds[] = {
	"{%- for message in messages %}{%- if message['role'] == 'system' %}{{- '<|im_start|>system\\n' + message['content'] + '<|im_end|>\\n' }}{%- else %}{{ '<|im_start|>' + message.role + '\\n' + message.content|trim + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}",
	"{% set ns = namespace(a=0, s='') %}{% for m in messages[::-1] if m.role != 'x' %}{% set ns.a = ns.a + loop.index %}{% set ns.s = ns.s ~ m.content[:2] %}{% endfor %}{{ ns.a }}{{ ns.s|tojson(indent=2) }}",
	"{% macro f(x, y=2) %}{{ x * y }}{{ varargs|length }}{% endmacro %}{{ f(3) }}{{ f('a', 3, 4, k=1) }}{{ messages|map(attribute='role')|unique|list }}",
	"{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('no') }}{% endif %}{% for m in messages %}{{ m.content.split(' ')|join('_') ~ (m.content|length) }}{% endfor %}",
	"{% raw %}{{x}}{% endraw %}{# c #}{{ {'a': [1, 2.5, none]}|dictsort }}{{ 'x%sy'|format(1) }}{{ '{}'.format(2) }}{{ strftime_now('%Y') }}",
};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void test_fuzz(void)
{
	static const char *const frags[] = {"{{", "}}", "{%", "%}", "{#", "#}", "-", "'", "\"", "(", ")", "[", "]",
					    "{", "}", "|", ".", ",", ":", "~", "if ", "for ", "endfor", "endif",
					    " in ", "not ", "\\", "\n", "\xff", "\xc3", "0", "-1", "**", "//", "%"};
	struct tmpl_options o = base_opts();
	o.limits.max_steps = 20000;
	o.limits.max_output = 1 << 16;
	o.limits.max_memory = 8 << 20;
	o.limits.max_time_ms = 200;
	int ok = 0, failed_clean = 0, bad = 0;
	char buf[4096];
	for (int iter = 0; iter < 3000; iter++) {
		const char *seed = fuzz_seeds[rnd() % (sizeof fuzz_seeds / sizeof fuzz_seeds[0])];
		size_t n = strlen(seed);
		if (n >= sizeof buf - 64)
			n = sizeof buf - 64;
		memcpy(buf, seed, n);
		int muts = 1 + (int)(rnd() % 4);
		for (int k = 0; k < muts; k++) {
			size_t at = n ? rnd() % n : 0;
			switch (rnd() % 3) {
			case 0: /* delete a span */
				if (n) {
					size_t l = 1 + rnd() % 8;
					if (at + l > n)
						l = n - at;
					memmove(buf + at, buf + at + l, n - at - l);
					n -= l;
				}
				break;
			case 1: { /* insert a fragment */
				const char *f = frags[rnd() % (sizeof frags / sizeof frags[0])];
				size_t l = strlen(f);
				if (n + l < sizeof buf - 1) {
					memmove(buf + at + l, buf + at, n - at);
					memcpy(buf + at, f, l);
					n += l;
				}
				break;
			}
			default: /* flip a byte */
				if (n)
					buf[at] = (char)(rnd() & 0xff);
			}
		}
		buf[n] = 0;
		char *out = NULL;
		size_t len = 0;
		char err[256];
		int rc = tmpl_render_text(buf, n, conv, NCONV, &o, &out, &len, err, sizeof err);
		if (rc == TMPL_OK && out)
			ok++;
		else if (rc < 0 && rc >= TMPL_ERR_ARG && !out && err[0])
			failed_clean++;
		else
			bad++;
		free(out);
	}
	CHECK(bad == 0, "fuzz: %d renders ended badly", bad);
	CHECK(ok > 0 && failed_clean > 0, "fuzz: %d ok, %d clean failures", ok, failed_clean);
	printf("fuzz: %d rendered, %d failed cleanly\n", ok, failed_clean);
}

/* ---- expression fuzz: random well-formed expressions over values of
 * every type, so the evaluator's type checks are exercised ---- */

static void gen_expr(char *buf, size_t cap, size_t *n, int depth)
{
	static const char *const atoms[] = {
		"x", "s", "l", "d", "n", "1", "-2.5", "'str'", "[1, 'a', none]", "{'k': [1], 'j': 'v'}",
		"none", "true", "messages", "messages[0]", "range(3)", "ns", "ns.v", "loop", "missing",
		"''", "[]", "{}", "0", "'\xc3\xa9\xe2\x80\xa8'", "9223372036854775807", "1e308",
	};
	static const char *const binops[] = {
		" + ", " - ", " * ", " / ", " // ", " % ", " ** ", " ~ ", " == ", " < ", " in ",
		" and ", " or ", " != ", " >= ", " not in ",
	};
	static const char *const posts[] = {
		".upper()", ".split()", "[0]", "[1:]", "[::-1]", ".items()", ".get('k')", "|length",
		"|tojson", "|first", "|last", "|list", "|sort", "|join(',')", "|trim", "|int", "|float",
		"|string", "|map('string')", "|select('odd')", "|selectattr('role')", "|dictsort",
		"|items", "|unique", "|reverse", "|round(1)", "|abs", "|title", "|capitalize",
		"|center(5)", "|indent(2)", "|truncate(5)", "|batch(2)|list", "|sum", "|min", "|max",
		"|format(1)", "|replace('a', 'b')", "|e", "|wordcount", " is string", " is mapping",
		" is iterable", " is defined", "|default('z')", "|tojson(indent=1)", ".startswith('a')",
		".format(1)", ".count('a')", ".strip('a')", "|attr('upper')", ".keys()",
		"|dictsort(by='value')", "|map(attribute='role')|list", "|rejectattr('k')|list", "[-1]",
		".index(1)", "|upper", ".splitlines()", ".zfill(4)", "|lower", "[1:-1:2]", "()",
		"|tojson(sort_keys=true)", " is divisibleby 2", " is odd", ".title()", "|slice(2)",
	};
	size_t left = cap - *n;
	int r = (int)(rnd() % 10);
	if (depth > 3 || r < 3) {
		*n += (size_t)snprintf(buf + *n, left, "%s", atoms[rnd() % (sizeof atoms / sizeof atoms[0])]);
	} else if (r < 6) {
		*n += (size_t)snprintf(buf + *n, left, "(");
		gen_expr(buf, cap, n, depth + 1);
		if (*n < cap)
			*n += (size_t)snprintf(buf + *n, cap - *n, "%s",
					       binops[rnd() % (sizeof binops / sizeof binops[0])]);
		if (*n < cap)
			gen_expr(buf, cap, n, depth + 1);
		if (*n < cap)
			*n += (size_t)snprintf(buf + *n, cap - *n, ")");
	} else if (r < 9) {
		gen_expr(buf, cap, n, depth + 1);
		if (*n < cap)
			*n += (size_t)snprintf(buf + *n, cap - *n, "%s",
					       posts[rnd() % (sizeof posts / sizeof posts[0])]);
	} else {
		*n += (size_t)snprintf(buf + *n, left, "(not ");
		if (*n < cap)
			gen_expr(buf, cap, n, depth + 1);
		if (*n < cap)
			*n += (size_t)snprintf(buf + *n, cap - *n, ")");
	}
	if (*n >= cap)
		*n = cap - 1;
}

static void test_expr_fuzz(void)
{
	struct tmpl_options o = base_opts();
	o.limits.max_steps = 50000;
	o.limits.max_output = 1 << 18;
	o.limits.max_memory = 16 << 20;
	o.limits.max_time_ms = 500;
	o.vars_json = "{\"x\": 7, \"s\": \"Hello \u00e9 World\", \"l\": [3, 1, 2], \"n\": null, "
		      "\"d\": {\"b\": 1, \"a\": [1, 2], \"k\": \"v\"}}";
	int ok = 0, clean = 0, bad = 0;
	double slowest = 0;
	for (int iter = 0; iter < 4000; iter++) {
		char expr[1024], src[2400];
		size_t n = 0;
		gen_expr(expr, sizeof expr, &n, 0);
		expr[n] = 0;
		if (iter % 3 == 0)
			snprintf(src, sizeof src, "{%% set ns = namespace(v=[1]) %%}{{ %s }}", expr);
		else if (iter % 3 == 1)
			snprintf(src, sizeof src, "{%% set ns = namespace(v='ab') %%}{%% for a in %s %%}[{{ a }}|{{ loop.index }}]{%% endfor %%}", expr);
		else
			snprintf(src, sizeof src, "{%% set ns = namespace(v={}) %%}{%% if %s %%}T{%% else %%}F{%% endif %%}{%% set ns.v = %s %%}{{ ns.v }}", expr, expr);
		char *out = NULL;
		char err[256] = "";
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		int rc = render(src, &o, &out, err, sizeof err);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
		if (ms > slowest)
			slowest = ms;
		if (rc == TMPL_OK && out)
			ok++;
		else if (rc < 0 && rc >= TMPL_ERR_ARG && !out && err[0])
			clean++;
		else {
			bad++;
			fprintf(stderr, "expr fuzz: rc %d for %s\n", rc, src);
		}
		free(out);
	}
	CHECK(bad == 0, "expr fuzz: %d renders ended badly", bad);
	/* every render ends by the time cap (500 ms) plus slack for a loaded
	 * machine: no operation may run unbounded between two checks */
	CHECK(slowest < 2000, "expr fuzz: slowest render took %.0f ms", slowest);
	CHECK(ok > 500 && clean > 500, "expr fuzz: %d ok, %d clean failures", ok, clean);
	printf("expr fuzz: %d rendered, %d failed cleanly\n", ok, clean);
}

int main(void)
{
	setenv("TZ", "UTC", 1);
	test_golden();
	test_errors();
	test_caps();
	test_inputs();
	test_builtins();
	test_threads();
	test_locale();
	test_fuzz();
	test_expr_fuzz();
	return tu_finish();
}
