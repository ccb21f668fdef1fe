/*
 * test_toolcall.c - tool calls per family (engine/toolcall.c) through
 * engine.h: the format read from a template's text (the real templates of
 * the llama.cpp tree when $TTYCHAT_LLAMACPP_DIR or its default path has
 * them), the grammar made from a tools array (calls it must accept and
 * refuse, per format, with several tools whose schemas share rule names,
 * a named function, one call or several), the refusals (a bad name, a
 * schema it cannot honour, an unknown function), and the parser (text
 * around calls, calls that do not parse left as text, arguments kept as
 * written, the check against the tools).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "testutil.h"

static const char TOOLS[] =
	"[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
	"\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":20},\"unit\":{\"enum\":[\"c\",\"f\"]}},"
	"\"required\":[\"city\"],\"additionalProperties\":false}}},"
	"{\"type\":\"function\",\"function\":{\"name\":\"add\",\"parameters\":{\"type\":\"object\","
	"\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9}},"
	"\"required\":[\"a\",\"b\"]}}},"
	"{\"type\":\"function\",\"function\":{\"name\":\"now\"}}]";

static int match(const char *g, const char *text)
{
	char err[256];
	return engine_grammar_match(g, strlen(g), text, strlen(text), err, sizeof err);
}

static void formats(void)
{
	CHECK(!strcmp(engine_tools_format(NULL), ""), "no template");
	CHECK(!strcmp(engine_tools_format("{{ messages }}"), ""), "no tools");
	CHECK(!strcmp(engine_tools_format("{% if tools %}<tool_call>{% endif %}"), "hermes"), "hermes");
	CHECK(!strcmp(engine_tools_format("{% if tools %}[TOOL_CALLS][{% endif %}"), "mistral"), "mistral");
	CHECK(!strcmp(engine_tools_format("{% if tools %}[TOOL_CALLS]{{ n }}[ARGS]{% endif %}"), ""),
	      "mistral v11 notation is not taken");
	CHECK(!strcmp(engine_tools_format("{% if tools %}<tool_call>\n<function={{n}}>{% endif %}"), ""),
	      "qwen3-coder XML is not taken");
	CHECK(!strcmp(engine_tools_format("<|start_header_id|>{% if tools %}{\"name\": x, \"parameters\": y{% endif %}"),
		      "llama3"),
	      "llama3");

	/* the real templates */
	const char *dir = getenv("TTYCHAT_LLAMACPP_DIR");
	char base[1024];
	snprintf(base, sizeof base, "%s/models/templates",
		 dir && dir[0] ? dir : "/work/oracle/llama_cpp_python-0.3.36/vendor/llama.cpp");
	static const struct {
		const char *file, *want;
	} real[] = {
		{"Qwen-Qwen2.5-7B-Instruct", "hermes"},
		{"Qwen-Qwen3-0.6B", "hermes"},
		{"NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "hermes"},
		{"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "hermes"},
		{"ibm-granite-granite-4.0", "hermes"},
		{"meta-llama-Llama-3.1-8B-Instruct", "llama3"},
		{"meta-llama-Llama-3.2-3B-Instruct", "llama3"},
		{"meta-llama-Llama-3.3-70B-Instruct", "llama3"},
		{"mistralai-Mistral-Nemo-Instruct-2407", "mistral"},
		{"openai-gpt-oss-120b", "harmony"},
		{"Qwen3-Coder", ""},
		{"microsoft-Phi-3.5-mini-instruct", ""},
		{"google-gemma-2-2b-it", ""},
	};
	int seen = 0;
	for (size_t i = 0; i < sizeof real / sizeof real[0]; i++) {
		char path[1200];
		snprintf(path, sizeof path, "%s/%s.jinja", base, real[i].file);
		FILE *f = fopen(path, "rb");
		if (!f)
			continue;
		static char buf[1 << 20];
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[n] = '\0';
		const char *got = engine_tools_format(buf);
		CHECK(!strcmp(got, real[i].want), "%s: format '%s', want '%s'", real[i].file, got, real[i].want);
		seen++;
	}
	if (!seen)
		printf("note: no llama.cpp templates under %s: only the inline ones were read\n", base);
}

static void grammars(void)
{
	char err[512] = "", *g = NULL;
	const char *trig = NULL;
	int rc = engine_tools_grammar("hermes", TOOLS, strlen(TOOLS), NULL, true, &g, &trig, err, sizeof err);
	CHECK(rc == 0 && g, "hermes grammar: %d %s", rc, err);
	if (g) {
		CHECK(!strcmp(trig, "<tool_call>\n^```json\n^{\""), "hermes triggers %s", trig);
		CHECK(engine_grammar_check(g, strlen(g), err, sizeof err) == 0, "hermes grammar compiles: %s", err);
		CHECK(match(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>") == 1,
		      "one call");
		CHECK(match(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", \"unit\": \"f\"}}\n"
			       "</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": -12, \"b\": 9}}\n</tool_call>") == 1,
		      "two calls");
		CHECK(match(g, "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>") == 1, "no parameters");
		CHECK(match(g, "<tool_call>\n{\"name\": \"nope\", \"arguments\": {}}\n</tool_call>") == 0, "unknown name");
		CHECK(match(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"unit\": \"c\"}}\n</tool_call>") == 0,
		      "missing required");
		CHECK(match(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", \"x\": 1}}\n</tool_call>") == 0,
		      "extra property");
		CHECK(match(g, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 10}}\n</tool_call>") == 0,
		      "out of range");
		CHECK(match(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}\n</tool_call>") == 0,
		      "unclosed object");
		CHECK(match(g, "Sure.") == 0, "text is no call");
		CHECK(match(g, "```json\n{\"name\": \"now\", \"arguments\": {}}\n```") == 1, "a fenced call");
		CHECK(match(g, "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}") == 1, "a bare call");
		CHECK(match(g, "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>") == 0,
		      "a bare call is the whole reply");
		CHECK(match(g, "<tool_call>\n{\"name\": \"now\", \"arguments\": {\"x\": 1}}\n</tool_call>") == 0,
		      "a tool without parameters takes {}");
		free(g);
	}
	/* one call only, one function only */
	g = NULL;
	rc = engine_tools_grammar("hermes", TOOLS, strlen(TOOLS), "add", false, &g, &trig, err, sizeof err);
	CHECK(rc == 0 && g, "named: %d %s", rc, err);
	if (g) {
		CHECK(match(g, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>") == 1,
		      "named call");
		CHECK(match(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>") == 0,
		      "other function refused");
		CHECK(match(g, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>\n<tool_call>\n"
			       "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>") == 0,
		      "not parallel: one call");
		free(g);
	}
	g = NULL;
	rc = engine_tools_grammar("llama3", TOOLS, strlen(TOOLS), NULL, true, &g, &trig, err, sizeof err);
	CHECK(rc == 0 && g && !strcmp(trig, "^{\""), "llama3: %d %s", rc, err);
	if (g) {
		CHECK(match(g, "{\"name\": \"add\", \"parameters\": {\"a\": 5, \"b\": 0}}") == 1, "llama3 call");
		CHECK(match(g, "{\"name\": \"add\", \"arguments\": {\"a\": 5, \"b\": 0}}") == 0, "llama3 says parameters");
		free(g);
	}
	g = NULL;
	rc = engine_tools_grammar("mistral", TOOLS, strlen(TOOLS), NULL, true, &g, &trig, err, sizeof err);
	CHECK(rc == 0 && g && !strcmp(trig, "[TOOL_CALLS]"), "mistral: %d %s", rc, err);
	if (g) {
		/* its marker is a token: the grammar compiles, text cannot show it */
		CHECK(engine_grammar_check(g, strlen(g), err, sizeof err) == 0, "mistral grammar compiles: %s", err);
		CHECK(strstr(g, "<[TOOL_CALLS]>") != NULL, "the marker is a token element");
		free(g);
	}

	g = NULL;
	rc = engine_tools_grammar("harmony", TOOLS, strlen(TOOLS), NULL, true, &g, &trig, err, sizeof err);
	CHECK(rc == 0 && g && !strcmp(trig, "<|channel|>commentary to=functions."), "harmony: %d %s", rc, err);
	if (g) {
		CHECK(match(g, "<|channel|>commentary to=functions.add<|message|>{\"a\": 1, \"b\": 2}") == 1, "harmony call");
		CHECK(match(g, "<|channel|>commentary to=functions.rm<|message|>{}") == 0, "harmony: unknown tool");
		CHECK(match(g, "<|channel|>commentary to=functions.add<|message|>{\"a\": 1}") == 0, "harmony: bad arguments");
		free(g);
	}

	/* refusals */
	static const struct {
		const char *fmt, *tools, *only, *want;
	} bad[] = {
		{"nope", TOOLS, NULL, "no tool-call format"},
		{"hermes", "[]", NULL, "list of 1 to"},
		{"hermes", "{}", NULL, "list of 1 to"},
		{"hermes", "[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]", NULL, "name must be"},
		{"hermes", "[{\"type\":\"function\",\"function\":{\"name\":\"a\\\"b\"}}]", NULL, "name must be"},
		{"hermes", "[{\"type\":\"retrieval\"}]", NULL, "\"type\": \"function\""},
		{"hermes", "[{\"type\":\"function\",\"function\":{\"name\":\"u\",\"parameters\":{\"type\":\"array\",\"uniqueItems\":true}}}]",
		 NULL, "tool 'u': "},
		{"hermes", TOOLS, "missing", "no tool is named 'missing'"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		g = NULL;
		err[0] = '\0';
		rc = engine_tools_grammar(bad[i].fmt, bad[i].tools, strlen(bad[i].tools), bad[i].only, true, &g, &trig, err,
					  sizeof err);
		CHECK(rc == ENGINE_E_INVAL && !g && strstr(err, bad[i].want), "refusal %zu: %d '%s'", i, rc, err);
		free(g);
	}
}

static void parse_one(const char *fmt, const char *tools, const char *text, const char *want_content,
		      const char *want_calls)
{
	char *content = NULL, *calls = NULL;
	int rc = engine_tools_parse(fmt, tools, text, strlen(text), &content, &calls);
	CHECK(rc == 0 && content && calls && !strcmp(content, want_content) && !strcmp(calls, want_calls),
	      "%s parse of %s:\n  content %s (want %s)\n  calls %s (want %s)", fmt, text, content, want_content, calls,
	      want_calls);
	free(content);
	free(calls);
}

static void parsers(void)
{
	parse_one("hermes", NULL, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
		  "Let me check.", "[{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Oslo\\\"}\"}]");
	parse_one("hermes", NULL,
		  "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1.50000000000000000001, \"b\": 2}}\n</tool_call>\n"
		  "<tool_call>{\"arguments\": \"{\\\"a\\\":3}\", \"name\": \"add\"}</tool_call>",
		  "", "[{\"name\":\"add\",\"arguments\":\"{\\\"a\\\": 1.50000000000000000001, \\\"b\\\": 2}\"},"
		      "{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":3}\"}]");
	parse_one("hermes", NULL, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1\n</tool_call>",
		  "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1\n</tool_call>", "[]");
	parse_one("hermes", NULL, "no calls here", "no calls here", "[]");
	parse_one("hermes", NULL, "```json\n{\"name\": \"now\", \"arguments\": {}}\n```", "",
		  "[{\"name\":\"now\",\"arguments\":\"{}\"}]");
	parse_one("hermes", NULL, "{\"name\": \"now\"} and more", "{\"name\": \"now\"} and more", "[]");
	/* checked against the tools */
	parse_one("hermes", TOOLS, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>", "",
		  "[{\"name\":\"add\",\"arguments\":\"{\\\"a\\\": 1, \\\"b\\\": 2}\"}]");
	parse_one("hermes", TOOLS, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 99}}\n</tool_call>",
		  "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 99}}\n</tool_call>", "[]");
	parse_one("hermes", TOOLS, "<tool_call>\n{\"name\": \"rm\", \"arguments\": {}}\n</tool_call>",
		  "<tool_call>\n{\"name\": \"rm\", \"arguments\": {}}\n</tool_call>", "[]");
	parse_one("llama3", NULL, "{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}", "",
		  "[{\"name\":\"add\",\"arguments\":\"{\\\"a\\\": 1, \\\"b\\\": 2}\"}]");
	parse_one("llama3", NULL, "<|python_tag|>{\"name\": \"now\", \"parameters\": {}}", "",
		  "[{\"name\":\"now\",\"arguments\":\"{}\"}]");
	parse_one("llama3", NULL, "The answer is {\"name\": \"x\"}.", "The answer is {\"name\": \"x\"}.", "[]");
	parse_one("llama3", NULL, "{\"name\": \"x\", \"parameters\": {}} trailing", "{\"name\": \"x\", \"parameters\": {}} trailing",
		  "[]");
	parse_one("mistral", NULL,
		  "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}, \"id\": \"abcDEF123\"}, "
		  "{\"name\": \"now\", \"arguments\": {}, \"id\": \"zzzzzzzzz\"}]",
		  "", "[{\"name\":\"add\",\"arguments\":\"{\\\"a\\\": 1, \\\"b\\\": 2}\",\"id\":\"abcDEF123\"},"
		      "{\"name\":\"now\",\"arguments\":\"{}\",\"id\":\"zzzzzzzzz\"}]");
	parse_one("mistral", NULL, "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {}}, 5]",
		  "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {}}, 5]", "[]");
	parse_one("harmony", TOOLS,
		  "<|channel|>commentary to=functions.add<|message|>{\"a\": 1, \"b\": 2}", "",
		  "[{\"name\":\"add\",\"arguments\":\"{\\\"a\\\": 1, \\\"b\\\": 2}\"}]");
	parse_one("harmony", NULL, "<|channel|>commentary to=functions.add<|message|>{\"a\": 1",
		  "<|channel|>commentary to=functions.add<|message|>{\"a\": 1", "[]");
	char *c = NULL, *k = NULL;
	CHECK(engine_tools_parse("nope", NULL, "x", 1, &c, &k) == ENGINE_E_INVAL && !c && !k, "unknown format");
}

int main(void)
{
	formats();
	grammars();
	parsers();
	return tu_finish();
}
