/*
 * test_jsonschema.c - JSON Schema to GBNF (engine/jsonschema.c), through
 * engine.h's engine_json_schema_grammar() and engine_grammar_match().
 *
 * A table of schemas, each with JSON texts its grammar must accept (valid
 * instances in the form the grammar writes: declared property order) and
 * texts it must refuse (instances the schema rejects: a missing required
 * property, a value out of range, a string too long, a wrong constant,
 * an extra property where none is allowed, ...).  Integer ranges are
 * checked exhaustively around their bounds.  Then the refusals: schemas
 * with keywords or forms the converter cannot honour give ENGINE_E_INVAL
 * and a message naming the keyword and its place.  The sampled replies of
 * real and random-weight models, validated by Python's jsonschema, are in
 * test_grammar_cli.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "testutil.h"

struct case_ {
	const char *schema;
	const char *yes[8];
	const char *no[10];
};

static const struct case_ cases[] = {
	{"{\"type\":\"string\"}", {"\"abc\"", "\"\"", "\"a\\\"b\\\\c\\n\\u00e9\"", "\"\xc3\xa9\""},
	 {"abc", "\"a", "1", "\"\\ud800\"", "\"a\nb\""}},
	{"{\"type\":\"integer\"}", {"0", "-12", "123456"}, {"01", "1.5", "-", "\"1\""}},
	{"{\"type\":\"number\"}", {"0", "-1.25", "3e10", "2.5E-3"}, {"1.", ".5", "+1", "0x10"}},
	{"{\"type\":\"number\",\"minimum\":0}", {"0", "1.5"}, {"-1", "-0.5"}},
	{"{\"type\":\"boolean\"}", {"true", "false"}, {"True", "1"}},
	{"{\"type\":\"null\"}", {"null"}, {"None", "\"null\""}},
	{"{\"type\":[\"string\",\"null\"]}", {"null", "\"x\""}, {"1"}},
	{"{\"enum\":[\"red\",1,null,{\"a\":[true]}]}", {"\"red\"", "1", "null", "{\"a\":[true]}"}, {"\"blue\"", "2"}},
	{"{\"const\":\"cat\"}", {"\"cat\""}, {"\"dog\"", "cat"}},
	{"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", {"\"ab\"", "\"abc\"", "\"\\n\\t\""},
	 {"\"a\"", "\"abcd\""}},
	{"{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d{3}(x|yz)?$\"}", {"\"AB-123\"", "\"QQ-000yz\""},
	 {"\"ab-123\"", "\"AB-12\"", "\"AB-123y\""}},
	{"{\"type\":\"string\",\"pattern\":\"^[^a]+\\\\.(?:txt|md)$\"}", {"\"b.txt\"", "\"x y.md\""},
	 {"\"a.txt\"", "\".txt\"", "\"b\\\"c.txt\""}},
	{"{\"type\":\"string\",\"format\":\"date\"}", {"\"2026-12-07\""}, {"\"2026-13-01\"", "\"26-1-1\""}},
	{"{\"type\":\"string\",\"format\":\"date-time\"}", {"\"2026-12-07T12:30:00Z\"", "\"2026-01-31T23:59:59.5+01:00\""},
	 {"\"2026-12-07 12:30:00\""}},
	{"{\"type\":\"string\",\"format\":\"uuid\"}", {"\"123e4567-e89b-12d3-a456-426614174000\""}, {"\"123\""}},
	{"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":3}", {"[1]", "[1, 2,3]"},
	 {"[]", "[1,2,3,4]", "[1,]", "[\"a\"]"}},
	{"{\"type\":\"array\"}", {"[]", "[1,\"a\",{\"b\":null},[true]]"}, {"[", "{}"}},
	{"{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"integer\"}],\"items\":false}",
	 {"[\"a\",1]"}, {"[\"a\"]", "[\"a\",1,2]", "[1,\"a\"]"}},
	{"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},"
	 "\"nick\":{\"type\":\"string\"}},\"required\":[\"name\"],\"additionalProperties\":false}",
	 {"{\"name\":\"a\"}", "{\"name\": \"a\", \"age\": 3}", "{\"name\":\"a\",\"nick\":\"b\"}",
	  "{\"name\":\"a\",\"age\":3,\"nick\":\"b\"}", "{\n  \"name\": \"a\"\n}"},
	 {"{}", "{\"age\":3}", "{\"name\":\"a\",\"x\":1}", "{\"name\":\"a\",}", "{\"name\":1}"}},
	{"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"}}}",
	 {"{}", "{\"a\":1}", "{\"b\":2}", "{\"a\":1,\"b\":2}"}, {"{,\"b\":2}", "{\"a\":1,}", "{\"b\":2,\"a\":1}"}},
	{"{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}", {"{}", "{\"x\":1,\"y\":-2}"},
	 {"{\"x\":\"1\"}"}},
	{"{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\",\"maxLength\":1}]}", {"5", "\"a\""}, {"\"ab\"", "null"}},
	{"{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"next\":{\"anyOf\":"
	 "[{\"$ref\":\"#/$defs/node\"},{\"type\":\"null\"}]}},\"required\":[\"v\",\"next\"]}},\"$ref\":\"#/$defs/node\"}",
	 {"{\"v\":1,\"next\":null}", "{\"v\":1,\"next\":{\"v\":2,\"next\":{\"v\":3,\"next\":null}}}"},
	 {"{\"v\":1}", "{\"v\":1,\"next\":{\"v\":2}}"}},
	{"{\"type\":\"object\",\"properties\":{\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}}}",
	 {"{}", "{\"kids\":[{},{\"kids\":[]}]}"}, {"{\"kids\":[1]}"}},
	{"{\"title\":\"T\",\"description\":\"d\",\"type\":\"integer\",\"default\":3,\"examples\":[1]}", {"7"}, {"\"7\""}},
	{"true", {"1", "\"x\"", "{\"a\":[]}"}, {"", "x"}},
	{"{\"type\":\"string\",\"nullable\":true}", {"\"x\"", "null"}, {"1"}},
};

#define HUGE_INT 999999999999999999LL /* unbounded: 18 digits */

/* Integer ranges: every value from lo-30 to hi+30 (and around 0) is
 * accepted exactly when it is inside. */
static void check_ranges(void)
{
	static const struct {
		const char *bounds;
		long long lo, hi; /* the expected inclusive range; a huge value: unbounded */
	} r[] = {
		{"\"minimum\":0,\"maximum\":150", 0, 150},
		{"\"minimum\":7", 7, HUGE_INT},
		{"\"minimum\":-5,\"exclusiveMaximum\":1000", -5, 999},
		{"\"exclusiveMinimum\":-120,\"maximum\":-3", -119, -3},
		{"\"minimum\":95,\"maximum\":1005", 95, 1005},
		{"\"maximum\":12", -HUGE_INT, 12},
		{"\"minimum\":1.5,\"maximum\":20.5", 2, 20},
		{"\"minimum\":99999,\"maximum\":100000", 99999, 100000},
	};
	for (size_t i = 0; i < sizeof r / sizeof *r; i++) {
		char schema[256], err[512];
		snprintf(schema, sizeof schema, "{\"type\":\"integer\",%s}", r[i].bounds);
		char *g = NULL;
		int rc = engine_json_schema_grammar(schema, strlen(schema), &g, err, sizeof err);
		CHECK(rc == 0, "%s: %s", schema, err);
		if (rc)
			continue;
		int wrong = 0;
		long long from[] = {r[i].lo - 30, r[i].hi - 30, -40, 9990, -2000, 123456789012345LL, -98765432109876LL};
		for (size_t f = 0; f < sizeof from / sizeof *from; f++) {
			if (from[f] < -HUGE_INT || from[f] + 60 > HUGE_INT)
				continue;
			for (long long v = from[f]; v <= from[f] + 60; v++) {
				char t[32];
				snprintf(t, sizeof t, "%lld", v);
				int m = engine_grammar_match(g, strlen(g), t, strlen(t), err, sizeof err);
				bool in = v >= r[i].lo && v <= r[i].hi;
				if (m != (int)in) {
					if (wrong++ < 3)
						fprintf(stderr, "%s: %lld %s\n", schema, v, in ? "refused" : "accepted");
				}
			}
		}
		CHECK(wrong == 0, "%s: %d values misjudged", schema, wrong);
		free(g);
	}
}

static void check_refusals(void)
{
	static const struct {
		const char *schema, *want;
	} bad[] = {
		{"{\"type\":\"array\",\"uniqueItems\":true}", "keyword 'uniqueItems' is not supported"},
		{"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\",\"multipleOf\":2}}}",
		 "at /properties/n: keyword 'multipleOf'"},
		{"{\"not\":{\"type\":\"string\"}}", "keyword 'not'"},
		{"{\"type\":\"string\",\"pattern\":\"abc\"}", "not anchored"},
		{"{\"type\":\"string\",\"pattern\":\"^(?=a)b$\"}", "'(?='"},
		{"{\"type\":\"string\",\"pattern\":\"^\\\\bx$\"}", "'\\b' is not supported"},
		{"{\"type\":\"number\",\"maximum\":3.5}", "number bounds"},
		{"{\"$ref\":\"#/$defs/missing\"}", "names nothing"},
		{"{\"$ref\":\"http://example.com/s.json\"}", "is not supported"},
		{"{\"type\":\"integer\",\"minimum\":5,\"maximum\":1}", "above maximum"},
		{"{\"type\":\"object\",\"required\":[\"x\"]}", "which properties do not define"},
		{"{\"type\":\"strin\"}", "not a JSON Schema type"},
		{"{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":2}]}", "allOf"},
		{"false", "admits no value"},
		{"{\"type\":", "not valid JSON"},
		{"{\"type\":\"integer\",\"minimum\":1e30}", "18 digits"},
		{"{\"anyOf\":[]}", "non-empty array"},
		{"{\"anyOf\":[{\"type\":\"null\"},{\"$ref\":\"#\"}]}", "$ref cycle"},
		{"{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}", "$ref cycle"},
		{"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"items\":{\"if\":{}}}}}",
		 "at /properties/a/items: keyword 'if'"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char *g = NULL, err[512] = "";
		int rc = engine_json_schema_grammar(bad[i].schema, strlen(bad[i].schema), &g, err, sizeof err);
		CHECK(rc == ENGINE_E_INVAL && !g, "%s was converted", bad[i].schema);
		CHECK(strstr(err, bad[i].want), "%s: message '%s' lacks '%s'", bad[i].schema, err, bad[i].want);
		free(g);
	}
}

/* Mutations of a schema: each is refused with a message or converted
 * into a grammar that compiles (a grammar we write that does not compile
 * is our bug). */
static void check_mutations(void)
{
	const char *base = cases[22].schema; /* the recursive $defs one */
	size_t bl = strlen(base);
	char *buf = malloc(bl * 2 + 16);
	static const char bytes[] = "{}[]\",:0129-.^$()|*+?\\ abtnx";
	uint64_t rng = 77;
	int ok = 0, refused = 0, broken = 0, silent = 0;
	for (int it = 0; it < 4000; it++) {
		memcpy(buf, base, bl);
		size_t n = bl;
		for (int k = 0; k < 1 + (int)(rng % 3); k++) {
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			size_t at = (size_t)(rng >> 33) % n;
			char b = bytes[(rng >> 20) % (sizeof bytes - 1)];
			switch ((rng >> 10) % 3) {
			case 0: buf[at] = b; break;
			case 1: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
			case 2: memmove(buf + at + 1, buf + at, n - at); buf[at] = b; n++; break;
			}
		}
		char *g = NULL, err[512] = "";
		int rc = engine_json_schema_grammar(buf, n, &g, err, sizeof err);
		if (rc) {
			refused++;
			silent += !err[0];
			continue;
		}
		ok++;
		char gerr[512];
		if (engine_grammar_check(g, strlen(g), gerr, sizeof gerr) != 0) {
			if (broken++ < 3)
				fprintf(stderr, "schema %.*s\ngave a grammar that does not compile: %s\n", (int)n, buf, gerr);
		}
		free(g);
	}
	CHECK(broken == 0, "%d converted schemas gave grammars that do not compile", broken);
	CHECK(silent == 0, "%d refusals without a message", silent);
	printf("mutated schemas: %d converted, %d refused\n", ok, refused);
	free(buf);
}

/* Random schemas built from the keywords this converter knows, with
 * ordinary and odd values: each converts into a grammar that compiles or
 * is refused with a message. */
static uint64_t rs = 99;
static unsigned rr(unsigned n)
{
	rs = rs * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)(rs >> 33) % n;
}

static void rand_schema(char *out, size_t cap, int depth)
{
	static const char *const leaf[] = {
		"{\"type\":\"string\"}", "{\"type\":\"integer\",\"minimum\":-3,\"maximum\":1200}",
		"{\"type\":\"integer\",\"exclusiveMinimum\":0}", "{\"type\":\"number\"}", "{\"type\":\"boolean\"}",
		"{\"type\":\"null\"}", "{\"enum\":[1,\"a\",null,[],{}]}", "{\"const\":{\"k\":\"\\u00e9\\\"\"}}",
		"{\"type\":\"string\",\"pattern\":\"^(a|b[0-9]{2,})*[^x]?\\\\.$\"}", "{\"type\":\"string\",\"format\":\"time\"}",
		"{\"type\":\"string\",\"minLength\":3,\"maxLength\":3}", "{\"type\":[\"integer\",\"string\",\"null\"]}",
		"true", "{}", "{\"type\":\"integer\",\"minimum\":-99999999999,\"maximum\":-99999999990}",
		"{\"type\":\"string\",\"pattern\":\"^[\\\\w.-]+@[a-z]+$\"}", "{\"$ref\":\"#\"}",
		"{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "{\"type\":\"array\",\"minItems\":-1}",
		"{\"type\":\"string\",\"pattern\":\"^[\\\"]$\"}",
	};
	if (depth > 3 || rr(3) == 0) {
		snprintf(out, cap, "%s", leaf[rr(sizeof leaf / sizeof *leaf)]);
		return;
	}
	char a[2048], b[2048];
	rand_schema(a, sizeof a, depth + 1);
	rand_schema(b, sizeof b, depth + 1);
	switch (rr(5)) {
	case 0:
		snprintf(out, cap, "{\"type\":\"object\",\"properties\":{\"p\":%s,\"q r\":%s},\"required\":[%s]%s}", a, b,
			 rr(2) ? "\"q r\"" : "", rr(2) ? ",\"additionalProperties\":false" : "");
		break;
	case 1:
		snprintf(out, cap, "{\"type\":\"array\",\"items\":%s,\"minItems\":%u,\"maxItems\":%u}", a, rr(3), 1 + rr(4));
		break;
	case 2: snprintf(out, cap, "{\"anyOf\":[%s,%s]}", a, b); break;
	case 3: snprintf(out, cap, "{\"type\":\"array\",\"prefixItems\":[%s,%s],\"items\":false}", a, b); break;
	case 4: snprintf(out, cap, "{\"$defs\":{\"d\":%s},\"type\":\"object\",\"properties\":{\"x\":{\"$ref\":\"#/$defs/d\"}}}", a); break;
	}
}

static void check_random_schemas(void)
{
	int ok = 0, refused = 0, broken = 0, silent = 0;
	static char sch[1 << 16];
	for (int it = 0; it < 1500; it++) {
		rand_schema(sch, sizeof sch, 0);
		char *g = NULL, err[512] = "", gerr[512] = "";
		int rc = engine_json_schema_grammar(sch, strlen(sch), &g, err, sizeof err);
		if (rc) {
			refused++;
			silent += !err[0];
			continue;
		}
		ok++;
		if (engine_grammar_check(g, strlen(g), gerr, sizeof gerr) != 0 && broken++ < 3)
			fprintf(stderr, "schema %s\ngave a grammar that does not compile: %s\n", sch, gerr);
		free(g);
	}
	CHECK(broken == 0, "%d converted schemas gave grammars that do not compile", broken);
	CHECK(silent == 0, "%d refusals without a message", silent);
	CHECK(ok > 100, "only %d random schemas converted", ok);
	printf("random schemas: %d converted, %d refused\n", ok, refused);
}

int main(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *g = NULL, err[512] = "";
		int rc = engine_json_schema_grammar(cases[i].schema, strlen(cases[i].schema), &g, err, sizeof err);
		CHECK(rc == 0, "schema %zu: %s", i, err);
		if (rc)
			continue;
		char gerr[512] = "";
		CHECK(engine_grammar_check(g, strlen(g), gerr, sizeof gerr) == 0, "schema %zu: its grammar: %s\n%s", i,
		      gerr, g);
		for (int k = 0; k < 8 && cases[i].yes[k]; k++) {
			const char *t = cases[i].yes[k];
			int m = engine_grammar_match(g, strlen(g), t, strlen(t), err, sizeof err);
			CHECK(m == 1, "schema %zu refuses %s (%s)", i, t, err);
		}
		for (int k = 0; k < 10 && cases[i].no[k]; k++) {
			const char *t = cases[i].no[k];
			CHECK(engine_grammar_match(g, strlen(g), t, strlen(t), err, sizeof err) == 0, "schema %zu accepts %s",
			      i, t);
		}
		free(g);
	}
	check_ranges();
	check_refusals();
	check_mutations();
	check_random_schemas();
	return tu_finish();
}
