/*
 * test_tui_chats.c - the TUI's conversations over the encrypted history
 * (src/chats.c), without a screen: passphrases (new, wrong: nothing
 * changes), commits with /regen and /edit rewinds read back as the
 * conversation stands, settings records, the list, search, rename and
 * delete, the remembered last conversation, KV snapshots, a full disk
 * (messages kept and written once there is room, for a new conversation
 * and an existing one), and no plaintext in any file written.
 */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chats.h"
#include "testutil.h"

static char tmp[4096], data[4200], flag[4200];

struct pw {
	const char *unlock, *create;
	int asked;
};

static int pass(void *ctx, enum chats_pass why, char *buf, size_t cap)
{
	struct pw *p = ctx;
	p->asked++;
	const char *s = why == CHATS_PASS_NEW ? p->create : p->unlock;
	if (!s)
		return -1;
	snprintf(buf, cap, "%s", s);
	return 0;
}

static struct chats *open_store(struct pw *p, int *rc)
{
	struct chats_opts o = {.dir = data, .passphrase = pass, .pass_ctx = p, .test_fast_kdf = true};
	struct chats *c = NULL;
	char err[512] = "";
	*rc = chats_open(&o, &c, err, sizeof err);
	return c;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	*len = b ? fread(b, 1, (size_t)n, f) : 0;
	fclose(f);
	return b;
}

/* Files under DIR whose bytes contain NEEDLE (a count). */
static int files_containing(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int found = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[8192];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(p, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			found += files_containing(p, needle);
			continue;
		}
		size_t len;
		char *b = slurp(p, &len);
		size_t nl = strlen(needle);
		for (size_t i = 0; b && i + nl <= len; i++)
			if (memcmp(b + i, needle, nl) == 0) {
				found++;
				fprintf(stderr, "plaintext in %s\n", p);
				break;
			}
		free(b);
	}
	closedir(d);
	return found;
}

/* Regular files under DIR, at any depth. */
static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[8192];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(p, &st) != 0)
			continue;
		n += S_ISDIR(st.st_mode) ? count_files(p) : S_ISREG(st.st_mode);
	}
	closedir(d);
	return n;
}

static void settings(struct chats_settings *s, const char *system)
{
	chats_settings_init(s);
	s->model = "smollm2";
	s->system_prompt = system;
	s->temperature = 0.5f;
	s->top_k = 40;
	s->top_p = 0.9f;
	s->min_p = 0.05f;
	s->repeat_penalty = 1.1f;
	s->context_size = 2048;
}

static int commit(struct chats *c, enum chats_role r, const char *text, bool cancelled)
{
	struct chats_settings s;
	settings(&s, "be brief");
	return chats_commit(c, &s, r, text, strlen(text), cancelled);
}

static void expect_msgs(struct chats *c, const char *const *want, size_t n, const char *what)
{
	CHECK(chats_count(c) == n, "%s: %zu messages, want %zu", what, chats_count(c), n);
	for (size_t i = 0; i < n && i < chats_count(c); i++) {
		const struct chats_msg *m = chats_msg(c, i);
		CHECK(m && strcmp(m->text, want[i]) == 0, "%s: message %zu is '%s', want '%s'", what, i,
		      m ? m->text : "(none)", want[i]);
		CHECK(m && m->role == (i % 2 == 0 ? CHATS_USER : CHATS_ASSISTANT) &&
			      (strstr(want[i], "stopped") != NULL) == m->cancelled,
		      "%s: message %zu role/flag", what, i);
	}
}

static void test_passphrases(void)
{
	struct pw p = {.create = "open sesame"};
	int rc;
	struct chats *c = open_store(&p, &rc);
	CHECK(rc == 0 && c, "a new store opens: %d", rc);
	CHECK(p.asked == 1, "a new passphrase was asked once (%d)", p.asked);
	CHECK(c && chats_has_passphrase(c), "it has the passphrase");
	chats_close(c);

	char key[4400];
	snprintf(key, sizeof key, "%s/key", data);
	size_t l1, l2;
	char *before = slurp(key, &l1);
	struct pw bad = {.unlock = "open sesame!"};
	c = open_store(&bad, &rc);
	CHECK(rc == CHATS_E_PASSPHRASE && !c, "a wrong passphrase is refused: %d", rc);
	struct pw none = {0};
	c = open_store(&none, &rc);
	CHECK(rc == CHATS_E_CANCELLED && !c, "giving up is CANCELLED: %d", rc);
	char *after = slurp(key, &l2);
	CHECK(before && after && l1 == l2 && memcmp(before, after, l1) == 0, "the key file is untouched");
	free(before);
	free(after);
}

static void test_conversation(void)
{
	struct pw p = {.unlock = "open sesame"};
	int rc;
	struct chats *c = open_store(&p, &rc);
	CHECK(rc == 0 && c, "unlocks: %d", rc);
	if (!c)
		return;
	CHECK(chats_id(c) == NULL && chats_count(c) == 0, "a new conversation has no file yet");
	CHECK(commit(c, CHATS_USER, "What is MARK-ALPHA-7?\nSecond line", false) == 0, "user 1");
	const char *id0 = chats_id(c);
	CHECK(id0 && strlen(id0) == CHATS_ID_LEN, "the first message made the file");
	char id[CHATS_ID_LEN + 1];
	snprintf(id, sizeof id, "%s", id0 ? id0 : "");
	char last[CHATS_ID_LEN + 1];
	CHECK(chats_last_read(last) == 0 && strcmp(last, id) == 0, "remembered as the last one");
	CHECK(strcmp(chats_title(c), "What is MARK-ALPHA-7?") == 0, "title is the first line: '%s'", chats_title(c));
	CHECK(commit(c, CHATS_ASSISTANT, "reply one", false) == 0, "reply 1");
	CHECK(commit(c, CHATS_USER, "question two", false) == 0, "user 2");
	CHECK(commit(c, CHATS_ASSISTANT, "reply two stopped", true) == 0, "reply 2 (stopped)");
	/* /regen: keep 3, a new reply */
	chats_rewind(c, 3);
	CHECK(commit(c, CHATS_ASSISTANT, "reply two again", false) == 0, "regenerated reply");
	/* /edit: keep 2, an edited question and its reply */
	chats_rewind(c, 2);
	CHECK(commit(c, CHATS_USER, "question two, edited", false) == 0, "edited question");
	CHECK(commit(c, CHATS_ASSISTANT, "reply to the edit", false) == 0, "its reply");
	CHECK(chats_pending(c) == 0, "nothing pending");

	chats_new(c);
	CHECK(chats_id(c) == NULL, "a new one after chats_new");
	rc = chats_load(c, id);
	CHECK(rc == 0, "reloads: %d %s", rc, chats_errmsg(c));
	static const char *const want[] = {"What is MARK-ALPHA-7?\nSecond line", "reply one", "question two, edited",
					   "reply to the edit"};
	expect_msgs(c, want, 4, "after regen and edit");
	struct chats_settings s;
	chats_settings_of(c, &s);
	CHECK(s.model && strcmp(s.model, "smollm2") == 0 && s.system_prompt && strcmp(s.system_prompt, "be brief") == 0 &&
		      s.temperature == 0.5f && s.top_k == 40 && s.context_size == 2048,
	      "settings recorded");

	/* a failed reply: regen with nothing after it, then the user moves on */
	chats_rewind(c, 3);
	CHECK(commit(c, CHATS_USER, "third question", false) == 0, "user 3 after a dropped reply");
	/* other settings are recorded with the next message */
	struct chats_settings s2;
	settings(&s2, "be verbose");
	s2.model = "gemma3";
	CHECK(chats_commit(c, &s2, CHATS_ASSISTANT, "reply three", 11, false) == 0, "reply 3 with new settings");
	chats_new(c);
	CHECK(chats_load(c, id) == 0, "reloads again");
	static const char *const want2[] = {"What is MARK-ALPHA-7?\nSecond line", "reply one", "question two, edited",
					    "third question", "reply three"};
	CHECK(chats_count(c) == 5, "5 messages (%zu)", chats_count(c));
	for (size_t i = 0; i < 5 && i < chats_count(c); i++)
		CHECK(strcmp(chats_msg(c, i)->text, want2[i]) == 0, "message %zu: %s", i, chats_msg(c, i)->text);
	chats_settings_of(c, &s);
	CHECK(s.model && strcmp(s.model, "gemma3") == 0 && strcmp(s.system_prompt, "be verbose") == 0,
	      "the new settings are the conversation's");

	/* a second conversation, the list, search, rename */
	chats_new(c);
	CHECK(commit(c, CHATS_USER, "Tell me about needle-BRAVO lakes", false) == 0, "second conversation");
	CHECK(commit(c, CHATS_ASSISTANT, "Lakes hold water.", false) == 0, "its reply");
	char id2[CHATS_ID_LEN + 1];
	snprintf(id2, sizeof id2, "%s", chats_id(c));
	struct chats_entry *v;
	size_t n;
	CHECK(chats_list(c, NULL, &v, &n) == 0 && n == 2, "two conversations listed (%zu)", n);
	if (n == 2) {
		CHECK(strcmp(v[0].id, id2) == 0 && strcmp(v[1].id, id) == 0, "most recent first");
		CHECK(v[0].readable && strcmp(v[0].model, "smollm2") == 0, "model listed");
		CHECK(v[1].n_messages == 5, "the count is of the messages as they stand (%zu)", v[1].n_messages);
	}
	chats_list_free(v, n);
	CHECK(chats_list(c, "NEEDLE-bravo", &v, &n) == 0 && n == 1, "search finds one (%zu)", n);
	if (n == 1)
		CHECK(strcmp(v[0].id, id2) == 0 && !v[0].match, "a title match (no excerpt needed)");
	chats_list_free(v, n);
	CHECK(chats_list(c, "reply ONE", &v, &n) == 0 && n == 1, "search in messages (%zu)", n);
	if (n == 1)
		CHECK(strcmp(v[0].id, id) == 0 && v[0].match && strstr(v[0].match, "reply one"), "with its excerpt");
	chats_list_free(v, n);
	CHECK(chats_list(c, "no such text", &v, &n) == 0 && n == 0, "search finds nothing");
	chats_list_free(v, n);
	CHECK(chats_list(c, "reply two AGAIN", &v, &n) == 0 && n == 0, "replaced versions are not found (%zu)", n);
	chats_list_free(v, n);
	CHECK(chats_rename(c, id, "Alpha talk") == 0, "rename another conversation: %s", chats_errmsg(c));
	CHECK(chats_rename(c, NULL, "Bravo talk") == 0, "rename the current one");
	CHECK(strcmp(chats_title(c), "Bravo talk") == 0, "title now '%s'", chats_title(c));
	CHECK(chats_list(c, "alpha TALK", &v, &n) == 0 && n == 1 && strcmp(v[0].title, "Alpha talk") == 0,
	      "renamed title searchable");
	chats_list_free(v, n);

	/* KV snapshots: by conversation and model */
	static const char blob[] = "KVBLOB-CHARLIE-0123456789";
	CHECK(chats_kv_save(c, id2, "00ff", blob, sizeof blob) == 0, "snapshot filed: %s", chats_errmsg(c));
	void *got;
	size_t gl;
	CHECK(chats_kv_load(c, "00ff", &got, &gl) == 0 && gl == sizeof blob && memcmp(got, blob, gl) == 0,
	      "snapshot back");
	free(got);
	CHECK(chats_kv_load(c, "0100", &got, &gl) != 0, "none for another model");
	CHECK(chats_kv_save(c, id2, "0100", blob, sizeof blob) == 0, "a snapshot of another model");
	CHECK(chats_kv_save(c, id, "0100", blob, sizeof blob) == 0, "a snapshot of the other conversation");
	char kvdir[4400];
	snprintf(kvdir, sizeof kvdir, "%s/kv", data);
	CHECK(count_files(kvdir) == 3, "three snapshots filed (%d)", count_files(kvdir));

	/* delete: the current one; its file, snapshots (every model's) and memory go */
	CHECK(chats_delete(c, id2) == 0, "delete: %s", chats_errmsg(c));
	CHECK(count_files(kvdir) == 1, "its snapshots went with it, the other's stayed (%d)", count_files(kvdir));
	CHECK(chats_id(c) == NULL, "deleting the current one makes a new one");
	char path[4400];
	snprintf(path, sizeof path, "%s/history/%s.tch", data, id2);
	CHECK(access(path, F_OK) != 0, "its file is gone");
	CHECK(chats_list(c, NULL, &v, &n) == 0 && n == 1, "one left (%zu)", n);
	chats_list_free(v, n);
	CHECK(chats_load(c, id2) == CHATS_E_NOTFOUND, "it cannot be opened");
	CHECK(chats_load(c, id) == 0, "the other one can");
	CHECK(chats_kv_save(c, id, "00ff", blob, sizeof blob) == 0, "a snapshot of the other");
	CHECK(count_files(kvdir) == 2, "two snapshots of the other (%d)", count_files(kvdir));
	/* delete by prefix, another one than the current: its snapshots go */
	chats_new(c);
	CHECK(commit(c, CHATS_USER, "a third, short-lived", false) == 0, "third conversation");
	char prefix[9];
	snprintf(prefix, sizeof prefix, "%.8s", chats_id(c) ? chats_id(c) : "");
	CHECK(chats_kv_save(c, chats_id(c), "00ff", blob, sizeof blob) == 0 &&
		      chats_kv_save(c, chats_id(c), "0100", blob, sizeof blob) == 0,
	      "two snapshots of the third");
	CHECK(chats_load(c, id) == 0, "back to the first");
	CHECK(count_files(kvdir) == 4, "four snapshots (%d)", count_files(kvdir));
	CHECK(chats_delete(c, prefix) == 0, "delete by prefix: %s", chats_errmsg(c));
	CHECK(count_files(kvdir) == 2, "the other's two are left (%d)", count_files(kvdir));
	CHECK(chats_id(c) && strcmp(chats_id(c), id) == 0, "the current conversation stays");
	CHECK(chats_delete(c, prefix) == CHATS_E_NOTFOUND, "deleting it again: not found");
	chats_close(c);

	CHECK(files_containing(tmp, "MARK-ALPHA") == 0, "no message text in any file");
	CHECK(files_containing(tmp, "needle-BRAVO") == 0, "nor the deleted one's");
	CHECK(files_containing(tmp, "KVBLOB-CHARLIE") == 0, "no snapshot plaintext");
	CHECK(files_containing(tmp, "be verbose") == 0 && files_containing(tmp, "Alpha talk") == 0,
	      "no settings or title");
}

static void test_full_disk(void)
{
	snprintf(flag, sizeof flag, "%s/disk-full", tmp);
	setenv("TTYCHAT_TEST_HISTORY_FULL", flag, 1);
	struct pw p = {.unlock = "open sesame"};
	int rc;
	struct chats *c = open_store(&p, &rc);
	CHECK(rc == 0 && c, "unlocks with the hook: %d", rc);
	if (!c)
		return;
	FILE *f = fopen(flag, "w");
	if (f)
		fclose(f);
	/* a new conversation: its file cannot even be created */
	CHECK(commit(c, CHATS_USER, "full disk one", false) == CHATS_UNSAVED, "unsaved, kept");
	CHECK(strstr(chats_errmsg(c), "space") || strstr(chats_errmsg(c), "full") || strstr(chats_errmsg(c), "ENOSPC") ||
		      strstr(chats_errmsg(c), "No space"),
	      "the message says why: %s", chats_errmsg(c));
	CHECK(chats_pending(c) == 1, "one pending (%zu)", chats_pending(c));
	CHECK(commit(c, CHATS_ASSISTANT, "full disk reply", false) == CHATS_UNSAVED, "the reply waits too");
	CHECK(chats_pending(c) == 2, "two pending (%zu)", chats_pending(c));
	CHECK(chats_flush(c) != 0 && chats_pending(c) == 2, "still full");
	unlink(flag);
	CHECK(chats_flush(c) == 0 && chats_pending(c) == 0, "written once there is room: %s", chats_errmsg(c));
	CHECK(chats_id(c) != NULL, "the file exists now");
	char id[CHATS_ID_LEN + 1];
	snprintf(id, sizeof id, "%s", chats_id(c) ? chats_id(c) : "");
	/* an existing conversation */
	f = fopen(flag, "w");
	if (f)
		fclose(f);
	CHECK(commit(c, CHATS_USER, "full disk two", false) == CHATS_UNSAVED, "unsaved in an existing file");
	CHECK(chats_pending(c) == 1, "one pending (%zu)", chats_pending(c));
	unlink(flag);
	CHECK(commit(c, CHATS_ASSISTANT, "room again", false) == 0, "the next commit writes both");
	CHECK(chats_pending(c) == 0, "none pending");
	chats_new(c);
	CHECK(chats_load(c, id) == 0, "reloads");
	static const char *const want[] = {"full disk one", "full disk reply", "full disk two", "room again"};
	expect_msgs(c, want, 4, "nothing lost");
	chats_close(c);
	unsetenv("TTYCHAT_TEST_HISTORY_FULL");
}

int main(void)
{
	const char *t = getenv("TMPDIR");
	snprintf(tmp, sizeof tmp, "%s/test_tui_chats.XXXXXX", t && t[0] ? t : "/tmp");
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(data, sizeof data, "%s/data", tmp);
	char state[4200];
	snprintf(state, sizeof state, "%s/state", tmp);
	setenv("XDG_STATE_HOME", state, 1);
	unsetenv("TTYCHAT_TEST_HISTORY_FULL");

	test_passphrases();
	test_conversation();
	test_full_disk();

	char cmd[4400];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp);
	return tu_finish();
}
