/*
 * toolcall.c - OpenAI tool calls in each model family's own notation (see
 * "tool calls" in engine.h): which notation a chat template uses, the
 * GBNF grammar that makes a family's calls valid by construction, and the
 * parser that splits a reply into text and calls.
 *
 * The grammar is built from the tools' parameter schemas with the JSON
 * Schema converter (jsonschema.h), one grammar per tool; their rule names
 * are prefixed ("t0-", "t1-", ...) so that the grammars can live side by
 * side in one, under a rule per family that writes the call's envelope
 * (name first, then the arguments, as the family's template renders past
 * calls, so the model sees its own habits).
 *
 * The parser keeps the arguments' text as the model wrote it (a JSON value
 * found by a small skipper, checked with cJSON): re-printing would change
 * numbers cJSON cannot hold exactly.  A call that does not parse is left in
 * the text rather than dropped, so the caller always sees what came out.
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "jsonschema.h"

#define TOOLS_MAX 128
#define NAME_MAX_LEN 64

enum fmt { FMT_NONE, FMT_HERMES, FMT_LLAMA3, FMT_MISTRAL, FMT_HARMONY };

static enum fmt fmt_of(const char *name)
{
	if (!name)
		return FMT_NONE;
	if (!strcmp(name, "hermes"))
		return FMT_HERMES;
	if (!strcmp(name, "llama3"))
		return FMT_LLAMA3;
	if (!strcmp(name, "mistral"))
		return FMT_MISTRAL;
	if (!strcmp(name, "harmony"))
		return FMT_HARMONY;
	return FMT_NONE;
}

const char *engine_tools_format(const char *t)
{
	if (!t || !strstr(t, "tools"))
		return "";
	/* Qwen3-Coder's XML parameters: another notation, not handled */
	if (strstr(t, "<function="))
		return "";
	if (strstr(t, "<tool_call>"))
		return "hermes";
	/* gpt-oss: calls go to "functions.NAME" and end with <|call|> */
	if (strstr(t, "<|channel|>") && strstr(t, "<|call|>") && strstr(t, "functions."))
		return "harmony";
	/* v3 / Nemo; [ARGS] marks the later name[ARGS]{...} notation */
	if (strstr(t, "[TOOL_CALLS]") && !strstr(t, "[ARGS]"))
		return "mistral";
	if (strstr(t, "<|start_header_id|>") && strstr(t, "\"parameters\": "))
		return "llama3";
	return "";
}

/* ---- a growing string ---------------------------------------------------- */

struct sb {
	char *s;
	size_t n, cap;
	bool oom;
};

static void sb_add(struct sb *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 256;
		while (nc < b->n + n + 1)
			nc *= 2;
		char *t = realloc(b->s, nc);
		if (!t) {
			b->oom = true;
			return;
		}
		b->s = t;
		b->cap = nc;
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = '\0';
}

static void sb_str(struct sb *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* ---- the grammar ----------------------------------------------------------- */

static bool is_word(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Copies the GBNF text G to OUT with every rule name prefixed by PREFIX:
 * names are the words outside literals, classes, tokens, repetition
 * counts and comments. */
static void gbnf_prefix(struct sb *out, const char *g, const char *prefix)
{
	const char *p = g;
	while (*p) {
		char c = *p;
		if (c == '"' || c == '[' || c == '<' || c == '{') {
			char close = c == '"' ? '"' : c == '[' ? ']' : c == '{' ? '}' : '>';
			const char *q = p + 1;
			while (*q && *q != close)
				q += q[0] == '\\' && q[1] ? 2 : 1;
			if (*q)
				q++;
			sb_add(out, p, (size_t)(q - p));
			p = q;
		} else if (c == '#') {
			size_t l = strcspn(p, "\n");
			sb_add(out, p, l);
			p += l;
		} else if (is_word(c)) {
			const char *q = p;
			while (is_word(*q))
				q++;
			sb_str(out, prefix);
			sb_add(out, p, (size_t)(q - p));
			p = q;
		} else {
			sb_add(out, p, 1);
			p++;
		}
	}
}

/* A function name as a literal needs no escaping: we take only these. */
static bool name_ok(const char *n)
{
	size_t l = strlen(n);
	if (l == 0 || l > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < l; i++)
		if (!is_word(n[i]) && n[i] != '.')
			return false;
	return true;
}

/* The call envelope of tool I, its arguments the rule tI-root. */
static void write_call(struct sb *b, enum fmt f, unsigned i, const char *name)
{
	char rule[32];
	snprintf(rule, sizeof rule, "t%u-root", i);
	if (f == FMT_HARMONY) {
		/* the recipient, then the arguments as the message */
		sb_str(b, "\"");
		sb_str(b, name);
		sb_str(b, "<|message|>\" ");
		sb_str(b, rule);
		return;
	}
	sb_str(b, "\"{\\\"name\\\": \\\"");
	sb_str(b, name);
	sb_str(b, f == FMT_LLAMA3 ? "\\\", \\\"parameters\\\": \" " : "\\\", \\\"arguments\\\": \" ");
	sb_str(b, rule);
	if (f == FMT_MISTRAL)
		sb_str(b, " \", \\\"id\\\": \\\"\" [a-zA-Z0-9]{9} \"\\\"}\"");
	else
		sb_str(b, " \"}\"");
}

static void write_root(struct sb *b, enum fmt f, bool parallel)
{
	switch (f) {
	case FMT_HERMES:
		/* the tagged form, or one call fenced or bare as the whole reply */
		sb_str(b, "root ::= tagged | \"```json\\n\" call \"\\n```\" | call\n");
		sb_str(b, "tagged ::= \"<tool_call>\\n\" call \"\\n</tool_call>\"");
		if (parallel)
			sb_str(b, " (\"\\n<tool_call>\\n\" call \"\\n</tool_call>\")*");
		break;
	case FMT_MISTRAL:
		/* the marker is a control token: written as one */
		sb_str(b, "root ::= <[TOOL_CALLS]> \"[\" call");
		if (parallel)
			sb_str(b, " (\", \" call)*");
		sb_str(b, " \"]\"");
		break;
	case FMT_HARMONY:
		/* as the reasoning parser gives a call's header (reasoning.h);
		 * one call a message, which <|call|> ends */
		sb_str(b, "root ::= \"<|channel|>commentary to=functions.\" call");
		break;
	default:
		/* Llama 3.x writes one call as the whole reply */
		sb_str(b, "root ::= call");
		break;
	}
	sb_str(b, "\n");
}

int engine_tools_grammar(const char *format, const char *tools_json, size_t len, const char *only, bool parallel,
			 char **grammar, const char **triggers, char *err, size_t errlen)
{
	*grammar = NULL;
	enum fmt f = fmt_of(format);
	if (f == FMT_NONE) {
		snprintf(err, errlen, "the model's template has no tool-call format ttychat knows");
		return ENGINE_E_INVAL;
	}
	cJSON *tools = cJSON_ParseWithLength(tools_json, len);
	int n = cJSON_IsArray(tools) ? cJSON_GetArraySize(tools) : -1;
	if (n <= 0 || n > TOOLS_MAX) {
		cJSON_Delete(tools);
		snprintf(err, errlen, "'tools' must be a list of 1 to %d tools", TOOLS_MAX);
		return ENGINE_E_INVAL;
	}
	struct sb calls = {0}, rules = {0};
	int rc = 0;
	unsigned k = 0;
	for (const cJSON *t = tools->child; t && !rc; t = t->next) {
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
		if (!cJSON_IsObject(fn) || (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "function")))) {
			snprintf(err, errlen, "each tool must be {\"type\": \"function\", \"function\": {...}}");
			rc = ENGINE_E_INVAL;
			break;
		}
		if (!cJSON_IsString(name) || !name_ok(name->valuestring)) {
			snprintf(err, errlen, "a tool's name must be 1 to %d letters, digits, '_', '-' or '.'", NAME_MAX_LEN);
			rc = ENGINE_E_INVAL;
			break;
		}
		if (only && strcmp(only, name->valuestring))
			continue;
		const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
		/* no parameters: a function of no arguments, {} */
		char *schema = params && !cJSON_IsNull(params) ? cJSON_PrintUnformatted(params)
							       : strdup("{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}");
		char *g = NULL, msg[400] = "";
		int src = schema ? jsonschema_to_gbnf(schema, strlen(schema), &g, msg, sizeof msg) : JSONSCHEMA_E_NOMEM;
		free(schema);
		if (src) {
			if (src == JSONSCHEMA_E_NOMEM)
				snprintf(err, errlen, "out of memory");
			else
				snprintf(err, errlen, "tool '%s': %s", name->valuestring, msg);
			rc = src == JSONSCHEMA_E_NOMEM ? ENGINE_E_NOMEM : ENGINE_E_INVAL;
			break;
		}
		char prefix[16];
		snprintf(prefix, sizeof prefix, "t%u-", k);
		gbnf_prefix(&rules, g, prefix);
		free(g);
		sb_str(&calls, k ? " |\n  " : "call ::= ");
		write_call(&calls, f, k, name->valuestring);
		k++;
	}
	cJSON_Delete(tools);
	if (!rc && k == 0) {
		snprintf(err, errlen, "no tool is named '%.64s'", only ? only : "");
		rc = ENGINE_E_INVAL;
	}
	if (!rc) {
		struct sb out = {0};
		write_root(&out, f, parallel);
		sb_add(&out, calls.s, calls.n);
		sb_str(&out, "\n");
		sb_add(&out, rules.s, rules.n);
		if (out.oom) {
			free(out.s);
			rc = ENGINE_E_NOMEM;
		} else {
			*grammar = out.s;
		}
	}
	if (rc == ENGINE_E_NOMEM || calls.oom || rules.oom) {
		snprintf(err, errlen, "out of memory");
		rc = ENGINE_E_NOMEM;
	}
	free(calls.s);
	free(rules.s);
	if (!rc)
		*triggers = f == FMT_HERMES	? "<tool_call>\n^```json\n^{\""
			    : f == FMT_MISTRAL	? "[TOOL_CALLS]"
			    : f == FMT_HARMONY	? "<|channel|>commentary to=functions."
						: "^{\"";
	return rc;
}

/* ---- the parser ------------------------------------------------------------ */

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* The end of the JSON value at P (its syntax only loosely checked: cJSON
 * checks it later), or NULL when it does not end before END. */
static const char *skip_value(const char *p, const char *end, int depth)
{
	if (p >= end || depth > 128)
		return NULL;
	if (*p == '"') {
		for (p++; p < end; p++) {
			if (*p == '\\')
				p++;
			else if (*p == '"')
				return p + 1;
		}
		return NULL;
	}
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';
		p = skip_ws(p + 1, end);
		if (p < end && *p == close)
			return p + 1;
		for (;;) {
			if (!(p = skip_value(p, end, depth + 1)))
				return NULL;
			p = skip_ws(p, end);
			if (p < end && close == '}' && *p == ':') {
				p = skip_ws(p + 1, end);
				continue;
			}
			if (p < end && *p == ',') {
				p = skip_ws(p + 1, end);
				continue;
			}
			return p < end && *p == close ? p + 1 : NULL;
		}
	}
	const char *q = p;
	while (q < end && (is_word(*q) || *q == '.' || *q == '+'))
		q++;
	return q > p ? q : NULL;
}

/* One call object at P: appended to CALLS as {"name", "arguments" (text)
 * [, "id"]}.  Returns its end, or NULL when it is not a call. */
static const char *parse_call(const char *p, const char *end, cJSON *calls)
{
	const char *e = skip_value(p, end, 0);
	if (!e || *p != '{')
		return NULL;
	cJSON *o = cJSON_ParseWithLength(p, (size_t)(e - p));
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
	if (!cJSON_IsString(name) || !name->valuestring[0]) {
		cJSON_Delete(o);
		return NULL;
	}
	/* the arguments' own text: walk the members */
	const char *args = NULL, *args_end = NULL;
	const char *q = skip_ws(p + 1, e);
	while (q < e && *q == '"') {
		const char *ke = skip_value(q, e, 0);
		if (!ke)
			break;
		bool is_args = (ke - q == 11 && !memcmp(q, "\"arguments\"", 11)) ||
			       (ke - q == 12 && !memcmp(q, "\"parameters\"", 12));
		q = skip_ws(ke, e);
		if (q >= e || *q != ':')
			break;
		q = skip_ws(q + 1, e);
		const char *ve = skip_value(q, e, 0);
		if (!ve)
			break;
		if (is_args) {
			args = q;
			args_end = ve;
		}
		q = skip_ws(ve, e);
		if (q < e && *q == ',')
			q = skip_ws(q + 1, e);
	}
	cJSON *call = cJSON_CreateObject();
	cJSON_AddStringToObject(call, "name", name->valuestring);
	char *text = NULL;
	if (args && *args == '"') {
		/* arguments given as a JSON string of JSON (OpenAI's own form) */
		cJSON *s = cJSON_ParseWithLength(args, (size_t)(args_end - args));
		text = cJSON_IsString(s) ? strdup(s->valuestring) : NULL;
		cJSON_Delete(s);
	} else if (args) {
		text = strndup(args, (size_t)(args_end - args));
	} else {
		text = strdup("{}");
	}
	if (!text || !cJSON_AddStringToObject(call, "arguments", text)) {
		/* out of memory: the call stays in the text */
		free(text);
		cJSON_Delete(call);
		cJSON_Delete(o);
		return NULL;
	}
	if (cJSON_IsString(id))
		cJSON_AddStringToObject(call, "id", id->valuestring);
	free(text);
	cJSON_AddItemToArray(calls, call);
	cJSON_Delete(o);
	return e;
}

static bool starts(const char *p, const char *end, const char *s)
{
	size_t l = strlen(s);
	return (size_t)(end - p) >= l && !memcmp(p, s, l);
}

static const char *memmem_(const char *p, const char *end, const char *s)
{
	for (; p < end; p++)
		if (starts(p, end, s))
			return p;
	return NULL;
}

static void parse_llama3(const char *text, const char *end, cJSON *calls, struct sb *content);

/* Hermes: <tool_call> JSON </tool_call>, anywhere, any number.  Small
 * models of the family also answer a bare call object, or one in a
 * ```json fence, as the whole reply: taken as a call too (unconstrained,
 * so the caller's check against the schemas decides). */
static void parse_hermes(const char *text, const char *end, cJSON *calls, struct sb *content)
{
	const char *p = text;
	if (!memmem_(text, end, "<tool_call>")) {
		const char *a = skip_ws(text, end), *b = end;
		while (b > a && strchr(" \t\r\n", b[-1]))
			b--;
		if (starts(a, b, "```json") && b - a >= 10 && !memcmp(b - 3, "```", 3)) {
			a += 7;
			b -= 3;
		}
		parse_llama3(a, b, calls, content);
		if (cJSON_GetArraySize(calls) > 0)
			return;
		content->n = 0;
		sb_str(content, "");
	}
	for (;;) {
		const char *t = NULL;
		for (const char *q = p; q < end && !t; q++)
			if (*q == '<' && starts(q, end, "<tool_call>"))
				t = q;
		if (!t) {
			sb_add(content, p, (size_t)(end - p));
			return;
		}
		const char *q = skip_ws(t + 11, end);
		const char *e = parse_call(q, end, calls);
		if (!e) {
			sb_add(content, p, (size_t)(t + 11 - p));
			p = t + 11;
			continue;
		}
		sb_add(content, p, (size_t)(t - p));
		e = skip_ws(e, end);
		if (starts(e, end, "</tool_call>"))
			e += 12;
		p = e;
	}
}

/* Llama 3.x: the reply is one call object (after <|python_tag|> maybe). */
static void parse_llama3(const char *text, const char *end, cJSON *calls, struct sb *content)
{
	const char *p = skip_ws(text, end);
	if (starts(p, end, "<|python_tag|>"))
		p += 14;
	p = skip_ws(p, end);
	const char *e = p < end && *p == '{' ? parse_call(p, end, calls) : NULL;
	if (!e || skip_ws(e, end) != end) {
		if (e) /* text after the object: it was not a call */
			cJSON_DeleteItemFromArray(calls, cJSON_GetArraySize(calls) - 1);
		sb_add(content, text, (size_t)(end - text));
	}
}

/* Mistral: [TOOL_CALLS] then a JSON list of calls. */
static void parse_mistral(const char *text, const char *end, cJSON *calls, struct sb *content)
{
	const char *t = NULL;
	for (const char *q = text; q < end && !t; q++)
		if (*q == '[' && starts(q, end, "[TOOL_CALLS]"))
			t = q;
	const char *p = t ? skip_ws(t + 12, end) : NULL;
	const char *e = p && p < end && *p == '[' ? skip_value(p, end, 0) : NULL;
	if (!e) {
		sb_add(content, text, (size_t)(end - text));
		return;
	}
	int before = cJSON_GetArraySize(calls);
	const char *q = skip_ws(p + 1, e);
	while (q < e && *q == '{') {
		const char *ce = parse_call(q, e, calls);
		if (!ce)
			break;
		q = skip_ws(ce, e);
		if (q < e && *q == ',')
			q = skip_ws(q + 1, e);
	}
	if (q != e - 1) { /* not a list of calls only: keep the text */
		while (cJSON_GetArraySize(calls) > before)
			cJSON_DeleteItemFromArray(calls, before);
		sb_add(content, text, (size_t)(end - text));
		return;
	}
	sb_add(content, text, (size_t)(t - text));
	sb_add(content, e, (size_t)(end - e));
}

/* Whether CALL names a tool of TOOLS and its arguments are valid under
 * that tool's parameters (by the grammar made from them, the same that
 * constrains the decode). */
static bool call_valid(const cJSON *tools, const cJSON *call)
{
	const char *name = cJSON_GetObjectItemCaseSensitive(call, "name")->valuestring;
	const cJSON *args = cJSON_GetObjectItemCaseSensitive(call, "arguments");
	if (!cJSON_IsString(args))
		return false;
	for (const cJSON *t = tools ? tools->child : NULL; t; t = t->next) {
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(fn, "name");
		if (!cJSON_IsString(n) || strcmp(n->valuestring, name))
			continue;
		const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
		char *schema = params && !cJSON_IsNull(params) ? cJSON_PrintUnformatted(params)
							       : strdup("{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}");
		char *g = NULL, msg[256];
		bool ok = schema && jsonschema_to_gbnf(schema, strlen(schema), &g, msg, sizeof msg) == 0 &&
			  engine_grammar_match(g, strlen(g), args->valuestring, strlen(args->valuestring), msg,
					       sizeof msg) == 1;
		free(schema);
		free(g);
		return ok;
	}
	return false;
}

/* Harmony: <|channel|>commentary to=functions.NAME<|message|> ARGS, as
 * the reasoning parser writes a call's header. */
static void parse_harmony(const char *text, const char *end, cJSON *calls, struct sb *content)
{
	static const char open[] = "<|channel|>commentary to=functions.";
	const char *p = text;
	for (;;) {
		const char *t = memmem_(p, end, open);
		if (!t) {
			sb_add(content, p, (size_t)(end - p));
			return;
		}
		const char *name = t + sizeof open - 1, *m = memmem_(name, end, "<|message|>");
		const char *a = m ? skip_ws(m + 11, end) : NULL;
		const char *e = a ? skip_value(a, end, 0) : NULL;
		cJSON *args = e ? cJSON_ParseWithLength(a, (size_t)(e - a)) : NULL;
		if (!cJSON_IsObject(args) || m - name > NAME_MAX_LEN) {
			cJSON_Delete(args);
			sb_add(content, p, (size_t)(name - p));
			p = name;
			continue;
		}
		cJSON_Delete(args);
		char nm[NAME_MAX_LEN + 1];
		snprintf(nm, sizeof nm, "%.*s", (int)(m - name), name);
		char *at = strndup(a, (size_t)(e - a));
		cJSON *call = cJSON_CreateObject();
		cJSON_AddStringToObject(call, "name", nm);
		cJSON_AddStringToObject(call, "arguments", at ? at : "{}");
		free(at);
		cJSON_AddItemToArray(calls, call);
		sb_add(content, p, (size_t)(t - p));
		p = e;
	}
}

int engine_tools_parse(const char *format, const char *tools_json, const char *text, size_t len, char **content,
		       char **calls_out)
{
	*content = *calls_out = NULL;
	enum fmt f = fmt_of(format);
	if (f == FMT_NONE)
		return ENGINE_E_INVAL;
	cJSON *calls = cJSON_CreateArray();
	struct sb c = {0};
	sb_str(&c, "");
	const char *end = text + len;
	if (f == FMT_HERMES)
		parse_hermes(text, end, calls, &c);
	else if (f == FMT_LLAMA3)
		parse_llama3(text, end, calls, &c);
	else if (f == FMT_HARMONY)
		parse_harmony(text, end, calls, &c);
	else
		parse_mistral(text, end, calls, &c);
	if (tools_json && cJSON_GetArraySize(calls) > 0) {
		/* one call that is not valid: the reply is text, as written */
		cJSON *tools = cJSON_Parse(tools_json);
		bool ok = true;
		for (const cJSON *x = calls->child; x && ok; x = x->next)
			ok = call_valid(tools, x);
		cJSON_Delete(tools);
		if (!ok) {
			cJSON_Delete(calls);
			calls = cJSON_CreateArray();
			c.n = 0;
			sb_add(&c, text, len);
		}
	}
	char *cs = calls ? cJSON_PrintUnformatted(calls) : NULL;
	cJSON_Delete(calls);
	if (!cs || c.oom) {
		free(cs);
		free(c.s);
		return ENGINE_E_NOMEM;
	}
	/* the text around calls: its blank edges are the calls' separators */
	size_t a = 0, b = c.n;
	if (strcmp(cs, "[]") != 0) {
		while (a < b && strchr(" \t\r\n", c.s[a]))
			a++;
		while (b > a && strchr(" \t\r\n", c.s[b - 1]))
			b--;
	}
	memmove(c.s, c.s + a, b - a);
	c.s[b - a] = '\0';
	*content = c.s;
	*calls_out = strdup(cs);
	cJSON_free(cs);
	if (!*calls_out) {
		free(c.s);
		*content = NULL;
		return ENGINE_E_NOMEM;
	}
	return 0;
}
