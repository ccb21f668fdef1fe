/*
 * test_catalog.c - models.d parsing and name resolution (src/catalog.c).
 *
 * Writes models.d files into a temporary XDG_CONFIG_HOME and checks: every
 * field of a full entry; each kind of bad file is refused with a message
 * naming the file and the key (wrong types, ranges, duplicate keys, both
 * template and template_file, url without sha256, bad names, bad JSON with
 * its line); unknown keys are warnings, not errors; template_file is read
 * relative to the entry; an entry is found by its "name" even when its
 * file is named otherwise; a user entry hides a system one; absent files
 * are refused by config_resolve_model() but found by config_find_entry();
 * settings.json picks the default model; and mutated files never crash.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "session.h"
#include "testutil.h"

static char dir[256], md[600];

static void put(const char *name, const char *text)
{
	char path[2048];
	snprintf(path, sizeof path, "%s/%s", md, name);
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(99);
	}
	fputs(text, f);
	fclose(f);
}

/* Parses models.d/NAME; returns 0/-1 and the message in err. */
static int parse(const char *name, struct model_entry *e, char *err, size_t n)
{
	char path[2048];
	snprintf(path, sizeof path, "%s/%s", md, name);
	err[0] = '\0';
	return config_entry_parse(path, e, err, n);
}

/* A bad file: refused, and the message holds FILE and WANT. */
static void bad(const char *file, const char *text, const char *want)
{
	struct model_entry e;
	char err[1024];
	put(file, text);
	int rc = parse(file, &e, err, sizeof err);
	CHECK(rc == -1 && strstr(err, file) && strstr(err, want), "%s: want an error with '%s', got rc %d: %s",
	      file, want, rc, err);
	if (rc == 0)
		config_entry_free(&e);
	char path[2048];
	snprintf(path, sizeof path, "%s/%s", md, file);
	unlink(path);
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/test_catalog.XXXXXX");
	if (!mkdtemp(dir))
		return 99;
	char conf[400], cmd[2200];
	snprintf(conf, sizeof conf, "%s/config", dir);
	snprintf(md, sizeof md, "%s/ttychat/models.d", conf);
	snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s/models'", md, dir);
	if (system(cmd) != 0)
		return 99;
	setenv("XDG_CONFIG_HOME", conf, 1);
	char models[400];
	snprintf(models, sizeof models, "%s/models", dir);
	setenv("TTYCHAT_MODELS_DIR", models, 1);

	/* a full entry */
	put("full.json", "{\"name\": \"full\", \"display_name\": \"Full One\", \"file\": \"sub/f.gguf\",\n"
			 " \"url\": \"https://example.org/f.gguf\", \"sha256\": \"ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\",\n"
			 " \"context_size\": 2048, \"sampling\": {\"temperature\": 0.7, \"top_k\": 20, \"top_p\": 0.9,\n"
			 " \"min_p\": 0.1, \"repeat_penalty\": 1.2}, \"system_prompt\": \"be\\nbrief\", \"kv_type\": \"q8_0\",\n"
			 " \"cache_type_v\": \"q3r\", \"kv_rotation\": false,\n"
			 " \"threads\": 3, \"size\": 12345, \"quant\": \"Q4_K_M\", \"template\": \"{{ x }}\",\n"
			 " \"source\": \"a test\", \"comment\": \"hello\", \"think\": \"on\", \"reasoning_effort\": \"high\",\n"
			 " \"reasoning_budget\": 512}\n");
	struct model_entry e;
	char err[1024];
	int rc = parse("full.json", &e, err, sizeof err);
	CHECK(rc == 0, "full entry: %s", err);
	if (rc == 0) {
		char want[1024];
		snprintf(want, sizeof want, "%s/sub/f.gguf", models);
		CHECK(strcmp(e.name, "full") == 0 && strcmp(e.display_name, "Full One") == 0, "names");
		CHECK(strcmp(e.path, want) == 0, "relative file under the models dir: %s", e.path);
		CHECK(strcmp(e.sha256, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789") == 0,
		      "sha256 lowercased: %s", e.sha256);
		CHECK(strcmp(e.url, "https://example.org/f.gguf") == 0, "url");
		CHECK(e.context_size == 2048 && e.threads == 3 && e.kv_type == 1 && e.size == 12345, "numbers");
		CHECK(e.cache_v == ENGINE_KV_Q3R && e.cache_k == -1 && e.kv_rotation == 0, "cache_type_v, kv_rotation");
		CHECK(e.temperature > 0.69f && e.temperature < 0.71f && e.top_k == 20 && e.top_p > 0.89f &&
			      e.min_p > 0.09f && e.repeat_penalty > 1.19f,
		      "sampling");
		CHECK(e.system_prompt && strcmp(e.system_prompt, "be\nbrief") == 0, "system prompt");
		CHECK(e.template_text && strcmp(e.template_text, "{{ x }}") == 0, "inline template");
		CHECK(e.think == 1 && strcmp(e.reasoning_effort, "high") == 0 && e.reasoning_budget == 512,
		      "thinking defaults");
		CHECK(strcmp(e.quant, "Q4_K_M") == 0 && e.warnings[0] == '\0', "quant, no warnings: %s", e.warnings);
		config_entry_free(&e);
	}

	/* defaults of a minimal entry; a url names the file */
	put("min.json", "{\"name\": \"min\", \"url\": \"http://h/x/model-Q8_0.gguf?dl=1\", \"sha256\": "
			"\"0000000000000000000000000000000000000000000000000000000000000000\"}");
	rc = parse("min.json", &e, err, sizeof err);
	CHECK(rc == 0, "minimal entry: %s", err);
	if (rc == 0) {
		CHECK(strstr(e.path, "/models/model-Q8_0.gguf") && e.temperature < 0 && e.top_k < 0 &&
			      e.kv_type == -1 && e.threads == 0 && !e.system_prompt && !e.template_text && !e.think &&
			      !e.reasoning_effort[0] && !e.reasoning_budget &&
			      strcmp(e.display_name, "min") == 0,
		      "defaults: %s", e.path);
		config_entry_free(&e);
	}

	/* unknown keys warn */
	put("warn.json", "{\"name\": \"warn\", \"file\": \"/abs/w.gguf\", \"colour\": 1, \"sampling\": {\"temprature\": 1}}");
	rc = parse("warn.json", &e, err, sizeof err);
	CHECK(rc == 0 && strstr(e.warnings, "unknown key 'colour'") && strstr(e.warnings, "unknown key 'sampling.temprature'") &&
		      strstr(e.warnings, "warn.json"),
	      "warnings: rc %d, %s", rc, rc == 0 ? e.warnings : err);
	if (rc == 0) {
		CHECK(strcmp(e.path, "/abs/w.gguf") == 0, "absolute file");
		config_entry_free(&e);
	}

	/* template_file relative to the entry */
	put("t.jinja", "{{ messages }}\n");
	put("tf.json", "{\"name\": \"tf\", \"file\": \"tf.gguf\", \"template_file\": \"t.jinja\"}");
	rc = parse("tf.json", &e, err, sizeof err);
	CHECK(rc == 0 && e.template_text && strcmp(e.template_text, "{{ messages }}\n") == 0, "template_file: %s",
	      rc ? err : "");
	if (rc == 0)
		config_entry_free(&e);

	/* bad files: the file and the key are named */
	bad("b1.json", "{\"name\": \"b1\", \"file\": \"x\", \"context_size\": \"big\"}", "key 'context_size'");
	bad("b2.json", "{\"name\": \"b2\", \"file\": \"x\", \"context_size\": 1.5}", "key 'context_size'");
	bad("b3.json", "{\"name\": \"b3\", \"file\": \"x\", \"sampling\": {\"top_p\": 2}}", "key 'sampling.top_p'");
	bad("b4.json", "{\"name\": \"b4\", \"file\": \"x\", \"sampling\": {\"top_k\": -1}}", "key 'sampling.top_k'");
	bad("b5.json", "{\"name\": \"b5\", \"file\": \"x\", \"sampling\": []}", "key 'sampling'");
	bad("b6.json", "{\"name\": \"b6\", \"file\": \"x\", \"kv_type\": \"q4\"}", "key 'kv_type'");
	bad("b6v.json", "{\"name\": \"b6v\", \"file\": \"x\", \"cache_type_v\": \"q3\"}", "key 'cache_type_v'");
	bad("b6r.json", "{\"name\": \"b6r\", \"file\": \"x\", \"kv_rotation\": \"on\"}", "key 'kv_rotation'");
	bad("b7.json", "{\"name\": \"b7\", \"file\": \"x\", \"threads\": 0}", "key 'threads'");
	bad("b7t.json", "{\"name\": \"b7t\", \"file\": \"x\", \"think\": true}", "key 'think'");
	bad("b7e.json", "{\"name\": \"b7e\", \"file\": \"x\", \"reasoning_effort\": \"max\"}", "key 'reasoning_effort'");
	bad("b7b.json", "{\"name\": \"b7b\", \"file\": \"x\", \"reasoning_budget\": 0}", "key 'reasoning_budget'");
	bad("b8.json", "{\"name\": \"b8\", \"url\": \"https://h/f.gguf\"}", "key 'sha256'");
	bad("b9.json", "{\"name\": \"b9\", \"url\": \"ftp://h/f.gguf\", \"sha256\": \"00\"}", "key 'url'");
	bad("b10.json", "{\"name\": \"b10\", \"file\": \"x\", \"sha256\": \"xyz\"}", "key 'sha256'");
	bad("b11.json", "{\"name\": \"b 11\", \"file\": \"x\"}", "key 'name'");
	bad("b12.json", "{\"file\": \"x\"}", "key 'name'");
	bad("b13.json", "{\"name\": \"b13\"}", "key 'file'");
	bad("b14.json", "{\"name\": \"b14\", \"file\": \"../../etc/passwd\"}", "key 'file'");
	bad("b15.json", "{\"name\": \"b15\", \"file\": \"x\", \"name\": \"other\"}", "given twice");
	bad("b16.json", "{\"name\": \"b16\", \"file\": \"x\", \"template\": \"a\", \"template_file\": \"t.jinja\"}",
	    "key 'template_file'");
	bad("b17.json", "{\"name\": \"b17\", \"file\": \"x\", \"template_file\": \"missing.jinja\"}", "missing.jinja");
	bad("b18.json", "{\n  \"name\": \"b18\",\n  \"file\": }\n", "line 3");
	bad("b19.json", "[1, 2]", "not a JSON object");
	bad("b20.json", "{\"name\": \"b20\", \"file\": \"x\", \"system_prompt\": \"\\u0007\"}", "key 'system_prompt'");
	bad("b21.json", "{\"name\": \"b21\", \"file\": \"x\", \"display_name\": 3}", "key 'display_name'");
	bad("b22.json", "{\"name\": \"b22\", \"url\": \"https://h/\", \"sha256\": "
			"\"0000000000000000000000000000000000000000000000000000000000000000\"}", "key 'url'");

	/* resolution: by name in a differently named file; absent files */
	put("odd-file-name.json", "{\"name\": \"oddname\", \"file\": \"odd.gguf\"}");
	char path[2048];
	snprintf(path, sizeof path, "%s/odd.gguf", models);
	rc = config_resolve_model("oddname", &e, err, sizeof err);
	CHECK(rc == -1 && strstr(err, "ttychat pull oddname"), "absent file: suggests pull: %s", err);
	rc = config_find_entry("oddname", &e, err, sizeof err);
	CHECK(rc == 0 && strcmp(e.path, path) == 0, "find_entry finds the absent entry: %d %s", rc, err);
	if (rc == 0)
		config_entry_free(&e);
	FILE *f = fopen(path, "w");
	if (f)
		fclose(f);
	rc = config_resolve_model("oddname", &e, err, sizeof err);
	CHECK(rc == 0 && strstr(e.source, "odd-file-name.json"), "found by its name key: %s", rc ? err : e.source);
	if (rc == 0)
		config_entry_free(&e);
	rc = config_find_entry("nosuch", &e, err, sizeof err);
	CHECK(rc == 1, "find_entry: no such name gives 1 (%d)", rc);
	rc = config_resolve_model("../etc", &e, err, sizeof err);
	CHECK(rc == -1, "a path that does not exist is refused");
	rc = config_resolve_model("bad name!", &e, err, sizeof err);
	CHECK(rc == -1, "not a name");
	/* a user entry hides the shipped one of the same name */
	put("smollm2.json", "{\"name\": \"smollm2\", \"file\": \"odd.gguf\", \"display_name\": \"mine\"}");
	rc = config_resolve_model("smollm2", &e, err, sizeof err);
	CHECK(rc == 0 && strcmp(e.display_name, "mine") == 0, "the user's entry wins: %s", rc ? err : e.display_name);
	if (rc == 0)
		config_entry_free(&e);

	/* the listing: invalid files listed as such, shadowing, loose files */
	put("broken.json", "{");
	snprintf(path, sizeof path, "%s/loose.gguf", models);
	f = fopen(path, "w");
	if (f)
		fclose(f);
	/* a model split in two: listed by its first part only */
	for (int part = 1; part <= 2; part++) {
		char sp[2200];
		snprintf(sp, sizeof sp, "%s/big-%05d-of-00002.gguf", models, part);
		FILE *g = fopen(sp, "w");
		if (g)
			fclose(g);
	}
	rc = config_resolve_model("loose.gguf", &e, err, sizeof err);
	CHECK(rc == 0 && e.temperature < 0 && e.top_k < 0 && e.kv_type < 0 && !e.source[0],
	      "a file in the models dir: found, with nothing set (%s)", rc ? err : "");
	if (rc == 0)
		config_entry_free(&e);
	rc = config_resolve_model(path, &e, err, sizeof err);
	CHECK(rc == 0 && e.temperature < 0 && e.repeat_penalty < 0, "a path: nothing set (%s)", rc ? err : "");
	if (rc == 0)
		config_entry_free(&e);
	struct config_list l;
	rc = config_list_models(&l, err, sizeof err);
	CHECK(rc == 0, "list: %s", err);
	int seen_broken = 0, seen_loose = 0, seen_full = 0, other_smollm2 = 0, seen_shadowed = 0;
	int split_first = 0, split_later = 0;
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		const struct config_item *it = &l.v[i];
		if (strcmp(it->e.name, "broken") == 0)
			seen_broken = !it->ok && strstr(it->error, "broken.json") != NULL;
		if (strcmp(it->e.name, "loose.gguf") == 0)
			seen_loose = it->ok && it->origin == CONFIG_LOOSE && it->present;
		if (strcmp(it->e.name, "full") == 0)
			seen_full = it->ok && it->origin == CONFIG_USER && !it->present;
		split_first += strcmp(it->e.name, "big-00001-of-00002.gguf") == 0;
		split_later += strcmp(it->e.name, "big-00002-of-00002.gguf") == 0;
		if (it->ok && strcmp(it->e.name, "smollm2") == 0 && it->origin != CONFIG_USER) {
			other_smollm2++;
			seen_shadowed += it->shadowed;
		}
	}
	CHECK(seen_broken && seen_loose && seen_full, "list: broken %d loose %d full %d", seen_broken, seen_loose,
	      seen_full);
	CHECK(split_first == 1 && split_later == 0, "list: a split model by its first part (%d, %d)", split_first,
	      split_later);
	/* a shipped smollm2 (installed, or beside the binary) is hidden */
	CHECK(seen_shadowed == other_smollm2, "list: the shipped smollm2 is hidden by the user's");
	if (rc == 0)
		config_list_free(&l);

	/* settings.json */
	char buf[256];
	struct config_settings cs;
	struct session_flags sf;
	session_flags_init(&sf);
	CHECK(config_settings_read(&cs, err, sizeof err) == 0, "no settings.json: %s", err);
	session_pick_model(&sf, NULL, NULL, &cs, buf, sizeof buf, NULL);
	CHECK(strcmp(buf, "smollm2") == 0, "default model without settings: %s", buf);
	config_settings_free(&cs);
	snprintf(path, sizeof path, "%s/ttychat/settings.json", conf);
	f = fopen(path, "w");
	if (f) {
		fputs("{\"model\": \"oddname\", \"theme\": \"mono\"}", f);
		fclose(f);
	}
	CHECK(config_settings_read(&cs, err, sizeof err) == 0, "settings.json: %s", err);
	session_pick_model(&sf, NULL, NULL, &cs, buf, sizeof buf, NULL);
	CHECK(strcmp(buf, "oddname") == 0, "settings.json model: %s", buf);
	config_settings_free(&cs);

	/* mutations of the full entry never crash and never half-succeed */
	char src[2048];
	snprintf(path, sizeof path, "%s/full.json", md);
	f = fopen(path, "r");
	size_t n = f ? fread(src, 1, sizeof src - 1, f) : 0;
	if (f)
		fclose(f);
	src[n] = '\0';
	srand(7);
	int parsed = 0;
	for (int i = 0; i < 2000; i++) {
		char mut[2048];
		memcpy(mut, src, n + 1);
		for (int k = 0; k < 1 + rand() % 4; k++) {
			size_t at = (size_t)rand() % n;
			mut[at] = (char)(rand() % 2 ? "{}[]\",:0-.e\\ a"[rand() % 14] : rand() % 256);
			if (!mut[at])
				mut[at] = ' ';
		}
		put("mut.json", mut);
		rc = parse("mut.json", &e, err, sizeof err);
		if (rc == 0) {
			parsed++;
			config_entry_free(&e);
		} else if (!strstr(err, "mut.json")) {
			CHECK(0, "a mutated file's error does not name it: %s", err);
			break;
		}
	}
	CHECK(1, "mutations: %d of 2000 still valid", parsed);

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return tu_finish();
}
