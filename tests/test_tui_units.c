/*
 * test_tui_units.c - the TUI's pure parts: theme files (the stock themes
 * match their built-in copies, every malformed line is refused), the key
 * and command tables, /set, and the model list (fit rule, context rule,
 * GGUF facts of the real models, the remembered last model).
 */
#include "config.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chatlist.h"
#include "cmds.h"
#include "help.h"
#include "models.h"
#include "session.h"
#include "status.h"
#include "testutil.h"
#include "theme.h"
#include "transcript.h"

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = malloc(1 << 16);
	*len = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
	fclose(f);
	if (buf)
		buf[*len] = 0;
	return buf;
}

static void test_themes(void)
{
	const char *src = getenv("TTYCHAT_SRCDIR");
	static const char *const names[] = {"default", "light", "mono"};
	for (size_t i = 0; i < 3; i++) {
		const char *bt = theme_builtin_text(names[i]);
		CHECK(bt != NULL, "built-in %s", names[i]);
		struct theme t;
		char err[256] = "";
		memset(&t, 0, sizeof t);
		CHECK(bt && theme_parse(bt, strlen(bt), &t, err, sizeof err) == 0, "built-in %s parses: %s", names[i], err);
		/* every role is given by every stock theme */
		for (int r = 0; r < ROLE_COUNT && bt; r++) {
			char key[64];
			snprintf(key, sizeof key, "\n%s ", theme_role_name(r));
			CHECK(strstr(bt, key) != NULL, "%s sets %s", names[i], theme_role_name(r));
		}
		if (src) {
			char path[4096];
			size_t len = 0;
			snprintf(path, sizeof path, "%s/themes/%s.theme", src, names[i]);
			char *file = slurp(path, &len);
			CHECK(file && bt && strcmp(file, bt) == 0, "%s matches its built-in copy", path);
			free(file);
		}
	}
	struct theme t;
	CHECK(theme_builtin("mono", &t) && strcmp(t.name, "mono") == 0, "mono built in");
	CHECK(t.role[ROLE_USER_HEAD].attrs == (THEME_BOLD | THEME_REVERSE), "mono user header is bold reverse");
	CHECK(t.role[ROLE_TEXT].fg.c16 == -1 && t.role[ROLE_TEXT].bg.c256 == -1, "mono uses default colours");
	CHECK(!theme_builtin("nope", &t) && strcmp(t.name, "default") == 0, "unknown name gives default");

	char err[256];
	theme_builtin("default", &t);
	const char *good = "# c\n\nuser  214/yellow  bright-blue bold underline\ncode 7 default none\n";
	CHECK(theme_parse(good, strlen(good), &t, err, sizeof err) == 0, "good theme: %s", err);
	CHECK(t.role[ROLE_USER].fg.c256 == 214 && t.role[ROLE_USER].fg.c16 == 3, "N/NAME colour");
	CHECK(t.role[ROLE_USER].bg.c256 == 12 && t.role[ROLE_USER].bg.c16 == 12, "bright name");
	CHECK(t.role[ROLE_USER].attrs == (THEME_BOLD | THEME_UNDERLINE), "attributes");
	CHECK(t.role[ROLE_CODE].fg.c16 == 7 && t.role[ROLE_CODE].attrs == 0, "number below 16 serves both");
	static const char *const bad[] = {
		"nosuchrole red blue\n", "user red\n", "user 256 blue\n", "user -1 blue\n", "user red/blue blue\n",
		"user 12/nosuch blue\n", "user red blue blink\n", "user red blue bold x y z a b c d e f g\n",
		"user 1x blue\n", "user red\0blue\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t len = i == 9 ? 14 : strlen(bad[i]);
		err[0] = 0;
		CHECK(theme_parse(bad[i], len, &t, err, sizeof err) == -1 && strncmp(err, "line 1:", 7) == 0,
		      "bad theme line %zu refused (%s)", i, err);
	}
	char longline[700];
	memset(longline, 'a', sizeof longline - 1);
	longline[sizeof longline - 1] = 0;
	CHECK(theme_parse(longline, strlen(longline), &t, err, sizeof err) == -1, "long line refused");
	CHECK(theme_load("../etc/passwd", &t, err, sizeof err) == -1, "path-like theme names refused");
	CHECK(theme_load("light", &t, err, sizeof err) == 0 && strcmp(t.name, "light") == 0, "light loads");
	CHECK(theme_load("no-such-theme", &t, err, sizeof err) == -1, "missing theme is an error");

	/* a theme of the user's own, and a broken one named with its line */
	char tmp[] = "/tmp/ttychat-tui-themes-XXXXXX", path[200];
	CHECK(mkdtemp(tmp) != NULL, "tmp dir");
	setenv("XDG_CONFIG_HOME", tmp, 1);
	snprintf(path, sizeof path, "%s/ttychat", tmp);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/ttychat/themes", tmp);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/ttychat/themes/mine.theme", tmp);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs("# mine\nuser 208/yellow default bold\n", f);
		fclose(f);
	}
	CHECK(theme_load("mine", &t, err, sizeof err) == 0 && t.role[ROLE_USER].fg.c256 == 208 &&
		      t.role[ROLE_CODE].fg.c256 == 223,
	      "user theme over the default: %s", err);
	unlink(path);
	snprintf(path, sizeof path, "%s/ttychat/themes/broken.theme", tmp);
	f = fopen(path, "w");
	if (f) {
		fputs("user red default\ncode purple default\n", f);
		fclose(f);
	}
	CHECK(theme_load("broken", &t, err, sizeof err) == -1 && strstr(err, "broken.theme: line 2:"),
	      "broken theme: %s", err);
	unlink(path);
	snprintf(path, sizeof path, "%s/ttychat/themes", tmp);
	rmdir(path);
	snprintf(path, sizeof path, "%s/ttychat", tmp);
	rmdir(path);
	rmdir(tmp);
	unsetenv("XDG_CONFIG_HOME");
}

static void test_cmds(void)
{
	const char *args;
	size_t al;
	const struct tui_cmd *c = cmds_find("/set  temp 0.5  ", &args, &al);
	CHECK(c && c->act == ACT_SET && al == 8 && strncmp(args, "temp 0.5", al) == 0, "find /set with args");
	c = cmds_find("/exit", &args, &al);
	CHECK(c && c->act == ACT_QUIT && al == 0, "alias /exit");
	CHECK(cmds_find("/settle", &args, &al) == NULL, "no prefix matching");
	CHECK(cmds_find("hello", &args, &al) == NULL, "not a command");
	c = cmds_find("/system be brief", &args, &al);
	CHECK(c && c->act == ACT_SYSTEM && strncmp(args, "be brief", al) == 0, "/system text");

	CHECK(cmds_key('?', true) && cmds_key('?', true)->act == ACT_HELP, "? is help on an empty input");
	CHECK(cmds_key('?', false) == NULL, "? is text otherwise");
	CHECK(cmds_key(KEY_F(2), false)->act == ACT_PICKER, "F2 picker");
	CHECK(cmds_key(KEY_HOME, false) == NULL && cmds_key(KEY_HOME, true)->act == ACT_TOP, "Home scrolls when empty");
	CHECK(cmds_key(0, true) == NULL, "code 0 is documentation only");
	/* every action key and command has help text; names are unique */
	for (size_t i = 0; i < tui_n_keys; i++)
		CHECK(!tui_keys[i].name || (tui_keys[i].help && tui_keys[i].help[0]), "key %zu documented", i);
	for (size_t i = 0; i < tui_n_cmds; i++)
		for (size_t j = i + 1; j < tui_n_cmds; j++)
			CHECK(strcmp(tui_cmds[i].name, tui_cmds[j].name) != 0, "command names unique");

	struct tui_settings st = {.wrap_code = true};
	engine_sampling_default(&st.s);
	char msg[512];
	CHECK(cmds_set(&st, "temp 0.7", msg, sizeof msg) == 0 && st.s.temperature > 0.69f && st.s.temperature < 0.71f &&
		      (st.user_set & SET_TEMP),
	      "set temp: %s", msg);
	CHECK(cmds_set(&st, "top-k 20", msg, sizeof msg) == 0 && st.s.top_k == 20 && (st.user_set & SET_TOPK), "top-k");
	CHECK(cmds_set(&st, "top-p 0.5", msg, sizeof msg) == 0 && st.s.top_p == 0.5f, "top-p");
	CHECK(cmds_set(&st, "min-p 0", msg, sizeof msg) == 0 && st.s.min_p == 0.0f, "min-p");
	CHECK(cmds_set(&st, "repeat-penalty 1.2", msg, sizeof msg) == 0, "repeat-penalty");
	CHECK(cmds_set(&st, "seed 42", msg, sizeof msg) == 0 && st.s.seed == 42, "seed");
	CHECK(cmds_set(&st, "max-tokens 100", msg, sizeof msg) == 0 && st.max_tokens == 100, "max-tokens");
	CHECK(cmds_set(&st, "wrap-code off", msg, sizeof msg) == 0 && !st.wrap_code, "wrap-code");
	CHECK(cmds_set(&st, "ctrl-c stop", msg, sizeof msg) == 0 && !st.ctrl_c_quits, "ctrl-c");
	static const char *const bad[] = {"temp", "temp -1", "temp 101", "temp nan", "temp 0.5x", "top-k 1.5",
					  "top-p 2", "seed -3", "wrap-code maybe", "colour red", "temp 1 2",
					  "max-tokens 99999999999"};
	float t0 = st.s.temperature;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK(cmds_set(&st, bad[i], msg, sizeof msg) == -1, "'/set %s' refused", bad[i]);
	CHECK(st.s.temperature == t0, "refused values change nothing");
	CHECK(cmds_set(&st, "", msg, sizeof msg) == 0 && strstr(msg, "temp 0.70") && strstr(msg, "wrap-code off"),
	      "listing: %s", msg);
}

static void test_models(void)
{
	CHECK(models_fit(800, 1000) == FIT_YES && models_fit(801, 1000) == FIT_TIGHT &&
		      models_fit(1000, 1000) == FIT_TIGHT && models_fit(1001, 1000) == FIT_NO &&
		      models_fit(5, 0) == FIT_UNKNOWN,
	      "fit thresholds");
	char b[32];
	models_fmt_bytes(3u << 20, b, sizeof b);
	CHECK(strcmp(b, "3.0 MiB") == 0, "fmt MiB: %s", b);
	models_fmt_params(134515008, b, sizeof b);
	CHECK(strcmp(b, "135M") == 0, "fmt params: %s", b);
	CHECK(models_mem_available() > 0, "MemAvailable read");

	char path[8192];
	if (tu_model("SmolLM2-135M-Instruct.Q4_1.gguf", path, sizeof path)) {
		struct model_item it = {0};
		char err[256];
		snprintf(it.path, sizeof it.path, "%.4000s", path);
		struct session_flags f;
		session_flags_init(&f);
		f.n_ctx = 2048;
		CHECK(models_probe(&it, &f, NULL, NULL, err, sizeof err) == 0, "probe smollm2: %s", err);
		CHECK(strcmp(it.arch, "llama") == 0, "arch %s", it.arch);
		CHECK(it.n_params > 130000000 && it.n_params < 140000000, "params %llu", (unsigned long long)it.n_params);
		CHECK(strncmp(it.quant, "Q4_1", 4) == 0, "quant mix %s", it.quant);
		/* 30 layers x 3 KV heads x (64 + 64) x 2 bytes per token */
		CHECK(it.n_ctx == 2048 && it.kv_bytes == 30ull * 3 * 128 * 2 * 2048, "kv %llu",
		      (unsigned long long)it.kv_bytes);
		CHECK(it.need_bytes > it.file_bytes + it.kv_bytes && it.present, "need");
	} else {
		printf("note: SmolLM2 not found, its probe is skipped\n");
	}
	if (tu_model("gemma-3-270m-it-Q4_K_M.gguf", path, sizeof path)) {
		struct model_item it = {0};
		char err[256];
		snprintf(it.path, sizeof it.path, "%.4000s", path);
		struct session_flags f;
		session_flags_init(&f);
		CHECK(models_probe(&it, &f, NULL, NULL, err, sizeof err) == 0, "probe gemma: %s", err);
		CHECK(strcmp(it.arch, "gemma3") == 0 && it.n_ctx == 4096, "gemma arch %s ctx %u", it.arch, it.n_ctx);
		CHECK(it.n_params > 260000000 && it.n_params < 280000000, "gemma params %llu",
		      (unsigned long long)it.n_params);
	}
	struct model_item bad = {0};
	char err[256];
	snprintf(bad.path, sizeof bad.path, "/nonexistent/x.gguf");
	struct session_flags nf;
	session_flags_init(&nf);
	CHECK(models_probe(&bad, &nf, NULL, NULL, err, sizeof err) == -1 && !bad.present, "missing file");

	/* the scan sees the models directory's files */
	char tmp[] = "/tmp/ttychat-tui-units-XXXXXX";
	CHECK(mkdtemp(tmp) != NULL, "tmp dir");
	setenv("XDG_CONFIG_HOME", tmp, 1);
	setenv("XDG_STATE_HOME", tmp, 1);
	struct model_list l;
	if (tu_model("SmolLM2-135M-Instruct.Q4_1.gguf", path, sizeof path)) {
		CHECK(models_scan(&l, 0, 1ull << 34, err, sizeof err) == 0, "scan: %s", err);
		bool found = false;
		for (size_t i = 0; i < l.n; i++)
			if (strstr(l.v[i].path, "SmolLM2-135M-Instruct.Q4_1.gguf") && l.v[i].present &&
			    l.v[i].fit == FIT_YES)
				found = true;
		CHECK(found, "SmolLM2 listed, present and fitting in 16 GiB (%zu models)", l.n);
		models_free(&l);
	}
	/* a remote entry is listed as such, never probed as a GGUF file */
	char md[4200];
	snprintf(md, sizeof md, "%s/ttychat", tmp);
	mkdir(md, 0700);
	snprintf(md, sizeof md, "%s/ttychat/models.d", tmp);
	mkdir(md, 0700);
	snprintf(md, sizeof md, "%s/ttychat/models.d/lab.json", tmp);
	FILE *f = fopen(md, "w");
	if (f) {
		fputs("{\"name\": \"lab\", \"remote\": {\"base_url\": \"http://127.0.0.1:9/v1\", \"model\": \"big\"}}\n", f);
		fclose(f);
	}
	CHECK(models_scan(&l, 0, 1ull << 34, err, sizeof err) == 0, "scan with a remote entry: %s", err);
	const struct model_item *lab = NULL;
	for (size_t i = 0; i < l.n; i++)
		if (strcmp(l.v[i].name, "lab") == 0)
			lab = &l.v[i];
	CHECK(lab && lab->remote && lab->present && lab->from_models_d, "the remote entry is listed, usable");
	if (lab) {
		CHECK(strcmp(lab->arch, "remote") == 0 && lab->fit == FIT_UNKNOWN && lab->n_params == 0 &&
			      lab->n_ctx == 0,
		      "nothing probed or estimated: arch %s fit %d ctx %u", lab->arch, lab->fit, lab->n_ctx);
		CHECK(strcmp(lab->note, "remote: http://127.0.0.1:9/v1 (model big)") == 0, "where: %s", lab->note);
		CHECK(strncmp(lab->path, "remote:{", 8) == 0, "path is the engine's spec: %.40s", lab->path);
	}
	models_free(&l);
	unlink(md);
	snprintf(md, sizeof md, "%s/ttychat/models.d", tmp);
	rmdir(md);
	snprintf(md, sizeof md, "%s/ttychat", tmp);
	rmdir(md);

	char buf[256];
	CHECK(models_last_read(buf, sizeof buf) == -1 && buf[0] == 0, "no last model yet");
	CHECK(models_last_write("gemma3-270m", err, sizeof err) == 0, "remember: %s", err);
	CHECK(models_last_read(buf, sizeof buf) == 0 && strcmp(buf, "gemma3-270m") == 0, "recall %s", buf);
	char p2[4200];
	struct stat st;
	snprintf(p2, sizeof p2, "%s/ttychat/last-model", tmp);
	CHECK(stat(p2, &st) == 0 && (st.st_mode & 0777) == 0600, "last-model is 0600");
	snprintf(p2, sizeof p2, "%s/ttychat", tmp);
	CHECK(stat(p2, &st) == 0 && (st.st_mode & 0777) == 0700, "state dir is 0700");
	snprintf(p2, sizeof p2, "%s/ttychat/last-model", tmp);
	unlink(p2);
	snprintf(p2, sizeof p2, "%s/ttychat", tmp);
	rmdir(p2);
	rmdir(tmp);
}

/* /think and /budget, and the keys F5 and F6. */
static void test_think_cmds(void)
{
	struct tui_settings st = {0};
	char msg[256];
	CHECK(cmds_think(&st, "", msg, sizeof msg) == 0 && strstr(msg, "model default"), "/think: %s", msg);
	CHECK(cmds_think(&st, "high", msg, sizeof msg) == 0 && st.think == ENGINE_THINK_ON &&
		      strcmp(st.effort, "high") == 0 && strcmp(msg, "thinking: on, effort high") == 0,
	      "/think high: %s", msg);
	CHECK(cmds_think(&st, "off", msg, sizeof msg) == 0 && st.think == ENGINE_THINK_OFF, "/think off");
	CHECK(cmds_think(&st, "sideways", msg, sizeof msg) == -1 && st.think == ENGINE_THINK_OFF &&
		      strstr(msg, "'sideways'"),
	      "/think sideways: %s", msg);
	CHECK(cmds_think(&st, "default", msg, sizeof msg) == 0 && st.think == ENGINE_THINK_DEFAULT && !st.effort[0],
	      "/think default");
	CHECK(cmds_budget(&st, "512", msg, sizeof msg) == 0 && st.budget == 512 && strstr(msg, "512 tokens"),
	      "/budget 512: %s", msg);
	static const char *const bad[] = {"0", "-3", "1.5", "x", "99999999999", "16777217"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK(cmds_budget(&st, bad[i], msg, sizeof msg) == -1 && st.budget == 512, "/budget %s refused", bad[i]);
	CHECK(cmds_budget(&st, "off", msg, sizeof msg) == 0 && st.budget == 0 && strstr(msg, "none"), "/budget off");
	const struct tui_key *k5 = cmds_key(KEY_F(5), false), *k6 = cmds_key(KEY_F(6), true);
	CHECK(k5 && k5->act == ACT_ANSWER_NOW && k6 && k6->act == ACT_FOLD, "F5 answers now, F6 folds");
	const char *args;
	size_t al;
	const struct tui_cmd *c = cmds_find("/budget 64", &args, &al);
	CHECK(c && c->act == ACT_BUDGET && al == 2, "/budget is a command");
	c = cmds_find("/think on", &args, &al);
	CHECK(c && c->act == ACT_THINK, "/think is a command");
}

/* The messages a submit sends: system first, notices left out, empty
 * replies left out, consecutive turns of one role joined. */
static void test_messages(void)
{
	struct transcript t;
	tr_init(&t);
	tr_add(&t, TR_NOTICE, "loaded", 6, 0);
	tr_add(&t, TR_USER, "one", 3, 0);
	tr_add(&t, TR_ASSISTANT, "", 0, TRF_STOPPED);
	tr_add(&t, TR_USER, "two", 3, 0);
	tr_add(&t, TR_ERROR, "oops", 4, 0);
	tr_add(&t, TR_ASSISTANT, "reply", 5, 0);
	tr_add(&t, TR_USER, "three", 5, 0);
	struct tr_msgs m;
	CHECK(tr_messages(&t, t.n, "be brief", &m) == 0, "messages built");
	CHECK(m.n == 4, "system + joined user + reply + user (%zu)", m.n);
	if (m.n == 4) {
		CHECK(strcmp(m.v[0].role, "system") == 0 && strcmp(m.v[0].content, "be brief") == 0, "system first");
		CHECK(strcmp(m.v[1].role, "user") == 0 && strcmp(m.v[1].content, "one\n\ntwo") == 0,
		      "two user turns around an empty reply are joined: '%s'", m.v[1].content);
		CHECK(strcmp(m.v[2].role, "assistant") == 0 && strcmp(m.v[2].content, "reply") == 0, "the reply");
		CHECK(strcmp(m.v[3].content, "three") == 0, "the last turn");
	}
	tr_msgs_free(&m);
	CHECK(tr_messages(&t, 2, "", &m) == 0 && m.n == 1 && strcmp(m.v[0].role, "user") == 0,
	      "no system prompt when empty; UPTO counts items");
	tr_msgs_free(&m);
	CHECK(tr_count_msgs(&t, t.n) == 4, "count: user, user, reply, user (%zu)", tr_count_msgs(&t, t.n));
	CHECK(tr_count_msgs(&t, 3) == 1, "count up to the empty reply");
	tr_free(&t);
}

/* A reply's tool call shows as a call item below it; the reply keeps
 * its text for the model and shows the rest. */
static void test_tool_calls(void)
{
	struct transcript t;
	tr_init(&t);
	tr_add(&t, TR_USER, "Weather?", 8, 0);
	const char *r = "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
	tr_add(&t, TR_ASSISTANT, r, strlen(r), 0);
	tr_add(&t, TR_USER, "Thanks", 6, 0);
	CHECK(tr_tool_calls(&t, 1, "") == 0 && t.n == 3, "no format: no calls");
	CHECK(tr_tool_calls(&t, 1, "hermes") == 1 && t.n == 4, "one call item");
	if (t.n == 4) {
		CHECK(t.v[2].kind == TR_TOOLCALL && strstr(t.v[2].label, "get_weather") &&
		      strcmp(t.v[2].text, "{\"city\": \"Oslo\"}") == 0, "the call: '%s' '%s'", t.v[2].label, t.v[2].text);
		CHECK(t.v[1].view && strcmp(t.v[1].view, "Checking.") == 0 && strcmp(t.v[1].text, r) == 0,
		      "the reply shows its text without the call and keeps it whole");
		CHECK(t.v[3].kind == TR_USER, "the next turn after the call");
	}
	struct tr_msgs m;
	CHECK(tr_messages(&t, t.n, NULL, &m) == 0 && m.n == 3 && strcmp(m.v[1].content, r) == 0,
	      "the call item is not sent; the reply goes as written");
	tr_msgs_free(&m);
	tr_resize(&t, 40, 20, 0);
	tr_layout(&t);
	CHECK(t.total > 0, "laid out");
	tr_free(&t);
}

/* The help box scrolls with its keys and closes with any other. */
static void test_help_box(void)
{
	struct tui_settings set = {.wrap_code = true, .ctrl_c_quits = true};
	engine_sampling_default(&set.s);
	struct overlay *h = help_open(&set);
	CHECK(h != NULL, "help opens");
	if (!h)
		return;
	int rows = 0, cols = 0;
	h->cls->size(h, 100, 200, &rows, &cols);
	CHECK(rows > (int)tui_n_cmds && rows <= 98 && cols == 110, "help's box: %dx%d", cols, rows);
	CHECK(h->cls->key(h, KEY_DOWN) == OV_KEEP && h->cls->key(h, ' ') == OV_KEEP && h->cls->key(h, 'k') == OV_KEEP,
	      "scrolling keeps it open");
	CHECK(h->cls->key(h, KEY_F(1)) == OV_CLOSE && h->cls->key(h, 27) == OV_CLOSE, "F1 and Esc close it");
	struct ov_hint hint[8];
	CHECK(h->cls->hints(h, hint, 8) == 2 && strcmp(hint[1].key, "Esc") == 0, "help's hints");
	overlay_close(h);
}

/* The conversation list's keys, on its own state (no history needed). */
static void test_chatlist_keys(void)
{
	struct chatlist l = {0};
	CHECK(chatlist_key(&l, '\r') == CLA_NONE, "Enter on an empty list does nothing");
	CHECK(chatlist_key(&l, 'd') == CLA_NONE && l.mode == CL_BROWSE, "nothing to delete");
	CHECK(chatlist_key(&l, '/') == CLA_NONE && l.mode == CL_SEARCH, "/ starts a search");
	chatlist_key(&l, 'a');
	chatlist_key(&l, 0xc3);
	chatlist_key(&l, 0xa9);
	CHECK(strcmp(l.field, "a\xc3\xa9") == 0, "the field takes UTF-8 bytes");
	chatlist_key(&l, KEY_BACKSPACE);
	CHECK(strcmp(l.field, "a") == 0, "Backspace removes a whole character");
	CHECK(chatlist_key(&l, '\r') == CLA_SEARCH && l.mode == CL_BROWSE, "Enter runs the search");
	snprintf(l.filter, sizeof l.filter, "a");
	CHECK(chatlist_key(&l, 27) == CLA_SEARCH && l.field[0] == 0, "Esc clears a search first");
	l.filter[0] = 0;
	CHECK(chatlist_key(&l, 27) == CLA_CLOSE, "then closes");
	struct chats_entry *v = calloc(2, sizeof *v);
	if (!v)
		return;
	snprintf(v[0].id, sizeof v[0].id, "one");
	snprintf(v[1].id, sizeof v[1].id, "two");
	v[0].title = strdup("First");
	v[1].title = strdup("");
	v[0].model = strdup("");
	v[1].model = strdup("");
	chatlist_set(&l, v, 2, "two");
	CHECK(l.sel == 1 && strcmp(chatlist_selected(&l)->id, "two") == 0, "the selection follows the id");
	CHECK(chatlist_key(&l, KEY_UP) == CLA_NONE && l.sel == 0, "Up moves");
	CHECK(chatlist_key(&l, 'r') == CLA_NONE && l.mode == CL_RENAME && strcmp(l.field, "First") == 0,
	      "r edits the title");
	CHECK(chatlist_key(&l, '\r') == CLA_RENAME, "Enter renames");
	CHECK(chatlist_key(&l, 'd') == CLA_NONE && l.mode == CL_CONFIRM, "d asks first");
	CHECK(chatlist_key(&l, 'n') == CLA_NONE && l.mode == CL_BROWSE && strcmp(l.note, "not deleted") == 0,
	      "anything but y keeps it");
	chatlist_key(&l, 'd');
	CHECK(chatlist_key(&l, 'y') == CLA_DELETE, "y deletes");
	CHECK(chatlist_key(&l, '\r') == CLA_OPEN && chatlist_key(&l, 'n') == CLA_NEW, "Enter opens, n starts one");
	chatlist_free(&l);
}

/* The live numbers from a reply's events. */
static void test_status(void)
{
	struct tui_status st = {.phase = PH_IDLE, .have_info = true};
	status_submit(&st, 1000);
	CHECK(st.phase == PH_PREFILL && st.ttft_ms < 0 && st.decode_tps < 0 && !st.have_prompt, "submit clears");
	struct engine_event ev = {.type = ENGINE_EV_TOKEN, .position = 41};
	ev.stats.prompt_tokens = 40;
	ev.stats.prompt_reused = 30;
	ev.stats.prompt_computed = 10;
	ev.stats.prefill_tps = 500;
	CHECK(status_token(&st, &ev, 1250), "the first token is the first");
	CHECK(st.phase == PH_STREAM && st.ttft_ms == 250 && st.ctx_used == 42 && st.have_prompt &&
		      st.prompt_reused == 30 && st.prefill_tps == 500,
	      "first token: ttft %.0f, context %u", st.ttft_ms, st.ctx_used);
	ev.stats.prompt_tokens = 0;
	CHECK(!status_token(&st, &ev, 1350) && !status_token(&st, &ev, 1450), "later tokens");
	CHECK(st.gen_tokens == 3 && st.decode_tps == 10, "two tokens in 200 ms after the first: %.1f tok/s",
	      st.decode_tps);
	struct engine_stats done = {.ctx_size = 2048, .ctx_used = 44, .gen_tokens = 3, .decode_tps = 12,
				    .prompt_computed = 0, .ttft_ms = 240};
	status_done(&st, &done);
	CHECK(st.phase == PH_IDLE && st.decode_tps == 12 && st.ttft_ms == 240 && st.prefill_tps < 0 &&
		      st.ctx_size == 2048,
	      "done: the engine's figures (nothing prefilled: no prefill speed)");
	st.vram_total = 1;
	snprintf(st.info.backend, sizeof st.info.backend, "cuda");
	status_gpu_lost(&st, "CUDA failed");
	CHECK(strcmp(st.info.backend, "cpu") == 0 && st.vram_total == 0, "the GPU lost");
}

int main(void)
{
	test_themes();
	test_cmds();
	test_think_cmds();
	test_models();
	test_messages();
	test_tool_calls();
	test_help_box();
	test_chatlist_keys();
	test_status();
	return tu_finish();
}
