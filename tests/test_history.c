/*
 * test_history.c - the encrypted history store: round trip, passphrases
 * (wrong, change, add, remove), permissions under umask 000, tampering
 * (every byte flipped, records deleted, duplicated, swapped, spliced from
 * another conversation, truncation at every record boundary), torn tails,
 * fault injection (ENOSPC and EIO on write, fsync and rename, at every
 * operation, once and sticky, plus short writes), writer locks, KDF
 * bounds, export, blobs, and a scan for plaintext on disk.
 *
 * Key files are made with the cheapest Argon2id setting through the
 * test-only test_kdf_* options; production code never sets them.  All
 * files live in a fresh directory under the current directory.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "history.h"
#include "history_export.h"
#include "testutil.h"

#define LOG_DATA 192
#define REC_HDR 28

static char root[4096];
static int tamper_cases, tamper_detected, fault_cases;

/* ---- helpers ------------------------------------------------------------ */

static int pass_cb(void *ctx, enum history_pass_purpose why, char *buf, size_t cap)
{
	(void)why;
	const char *p = ctx;
	if (!p)
		return -1;
	snprintf(buf, cap, "%s", p);
	return 0;
}

static int open_store(const char *dir, const char *pass, unsigned flags, const struct history_io *io,
		      struct history **h, char *err, size_t errlen)
{
	struct history_opts o = {.dir = dir,
				 .flags = flags,
				 .passphrase = pass_cb,
				 .pass_ctx = (void *)pass,
				 .io = io,
				 .test_kdf_opslimit = crypto_pwhash_argon2id_OPSLIMIT_MIN,
				 .test_kdf_memlimit = crypto_pwhash_argon2id_MEMLIMIT_MIN};
	return history_open(&o, h, err, errlen);
}

static struct history *must_open(const char *dir, const char *pass, unsigned flags)
{
	char err[512];
	struct history *h = NULL;
	int rc = open_store(dir, pass, flags, NULL, &h, err, sizeof err);
	CHECK(rc == HISTORY_OK, "open %s: %d %s", dir, rc, err);
	return h;
}

static char *subdir(const char *name)
{
	static char buf[8][4200];
	static int k;
	char *b = buf[k++ % 8];
	snprintf(b, sizeof buf[0], "%.4000s/%s", root, name);
	return b;
}

static unsigned char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
	*n = b ? fread(b, 1, (size_t)sz, f) : 0;
	fclose(f);
	return b;
}

static void spit(const char *path, const void *d, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(d, 1, n, f) != n) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(99);
	}
	fclose(f);
}

static void conv_path(struct history *h, const char *id, char *buf, size_t n)
{
	snprintf(buf, n, "%s/history/%s.tch", history_dir(h), id);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void rm_rf(const char *p)
{
	nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Offsets of the records in log BUF: the count, with starts in OFF and the
 * end of the last record in OFF[count]. */
static size_t rec_offsets(const unsigned char *b, size_t n, size_t *off, size_t max)
{
	size_t k = 0, o = LOG_DATA;
	while (o + REC_HDR <= n && k < max) {
		uint32_t clen = (uint32_t)b[o] | (uint32_t)b[o + 1] << 8 | (uint32_t)b[o + 2] << 16 |
				(uint32_t)b[o + 3] << 24;
		if (clen > n - o - REC_HDR)
			break;
		off[k++] = o;
		o += REC_HDR + clen;
	}
	off[k] = o;
	return k;
}

/* The texts a conversation was written with, to compare against. */
struct expect {
	const char *text[16];
	size_t len[16];
	int role[16];
	size_t n;
};

/* Checks that C holds a prefix of E (all of it when FULL) and nothing
 * else: no text that was not written ever comes back. */
static bool conv_matches(const struct history_conv *c, const struct expect *e, bool full)
{
	size_t n = history_conv_count(c);
	if (n > e->n || (full && n != e->n))
		return false;
	for (size_t i = 0; i < n; i++) {
		const struct history_msg *m = history_conv_msg(c, i);
		if (m->len != e->len[i] || memcmp(m->text, e->text[i], m->len) != 0 || (int)m->role != e->role[i])
			return false;
	}
	return true;
}

/* A small conversation: META + the messages of E. */
static void write_conv(struct history *h, const struct expect *e, const char *model, char id[HISTORY_ID_LEN + 1])
{
	struct history_meta m;
	history_meta_init(&m);
	m.model = model;
	m.system_prompt = "be brief";
	m.temperature = 0.7f;
	m.top_k = 40;
	struct history_conv *c = NULL;
	int rc = history_conv_create(h, &m, &c);
	CHECK(rc == HISTORY_OK, "create: %s", history_errmsg(h));
	if (!c)
		exit(1);
	for (size_t i = 0; i < e->n; i++) {
		rc = history_append(c, (enum history_role)e->role[i], e->text[i], e->len[i], 0);
		CHECK(rc == HISTORY_OK, "append %zu: %s", i, history_errmsg(h));
	}
	memcpy(id, history_conv_id(c), HISTORY_ID_LEN + 1);
	CHECK(history_conv_close(c) == HISTORY_OK, "close");
}

static const struct expect small = {
	.text = {"hello there", "hi! how can I help?", "what is 2+2?", "4"},
	.len = {11, 19, 12, 1},
	.role = {HISTORY_ROLE_USER, HISTORY_ROLE_ASSISTANT, HISTORY_ROLE_USER, HISTORY_ROLE_ASSISTANT},
	.n = 4,
};

/* ---- round trip --------------------------------------------------------- */

static int match_count;
static int count_match(void *ctx, const struct history_conv *c, size_t i)
{
	(void)c;
	(void)i;
	(void)ctx;
	match_count++;
	return 0;
}

/* A reply's reasoning kept apart from its text, and the thinking
 * settings (/think, /budget) in the metadata; both survive a reload; a
 * user message cannot carry reasoning; exports show it. */
static void test_reasoning(void)
{
	const char *dir = subdir("reasoning");
	struct history *h = must_open(dir, "correct horse", HISTORY_OPEN_CREATE);
	if (!h)
		return;
	struct history_meta m;
	history_meta_init(&m);
	m.model = "qwen3";
	m.think = 1;
	m.reasoning_effort = "high";
	m.reasoning_budget = 512;
	struct history_conv *c;
	CHECK(history_conv_create(h, &m, &c) == HISTORY_OK, "create: %s", history_errmsg(h));
	static const char think[] = "The user asks 2+2.\0Four.";
	CHECK(history_append(c, HISTORY_ROLE_USER, "What is 2+2?", 12, 0) == HISTORY_OK, "user");
	CHECK(history_append_reasoned(c, HISTORY_ROLE_ASSISTANT, "4", 1, think, sizeof think - 1, 0) == HISTORY_OK,
	      "reply with reasoning: %s", history_errmsg(h));
	CHECK(history_append_reasoned(c, HISTORY_ROLE_USER, "x", 1, "y", 1, 0) == HISTORY_E_INVAL,
	      "a user message has no reasoning");
	CHECK(history_append_reasoned(c, HISTORY_ROLE_ASSISTANT, "plain", 5, NULL, 0, 0) == HISTORY_OK, "no reasoning");
	char id[HISTORY_ID_LEN + 1];
	memcpy(id, history_conv_id(c), sizeof id);
	history_conv_close(c);
	history_close(h);

	h = must_open(dir, "correct horse", 0);
	if (!h)
		return;
	CHECK(history_conv_load(h, id, 0, &c) == HISTORY_OK, "load: %s", history_errmsg(h));
	if (!c) {
		history_close(h);
		return;
	}
	const struct history_meta *lm = history_conv_meta(c);
	CHECK(lm->think == 1 && lm->reasoning_effort && strcmp(lm->reasoning_effort, "high") == 0 &&
		      lm->reasoning_budget == 512,
	      "thinking settings kept: %d %s %u", lm->think, lm->reasoning_effort ? lm->reasoning_effort : "-",
	      lm->reasoning_budget);
	const struct history_msg *r = history_conv_count(c) == 3 ? history_conv_msg(c, 1) : NULL;
	CHECK(r && r->len == 1 && r->text[0] == '4' && r->reasoning_len == sizeof think - 1 &&
		      memcmp(r->reasoning, think, sizeof think - 1) == 0,
	      "the reply and its reasoning apart");
	const struct history_msg *p = history_conv_count(c) == 3 ? history_conv_msg(c, 2) : NULL;
	CHECK(p && !p->reasoning && p->reasoning_len == 0, "a reply without reasoning has none");
	char *buf = NULL;
	size_t blen = 0;
	FILE *f = open_memstream(&buf, &blen);
	CHECK(f && history_export(c, HISTORY_EXPORT_JSON, f) == 0, "export");
	if (f)
		fclose(f);
	CHECK(buf && strstr(buf, "\"reasoning\":\t\"The user asks 2+2.") && strstr(buf, "\"text\":\t\"4\"") &&
		      strstr(buf, "\"reasoning_budget\":\t512"),
	      "the JSON export has the reasoning apart: %s", buf ? buf : "");
	free(buf);
	history_conv_close(c);
	history_close(h);
}

static void test_roundtrip(void)
{
	const char *dir = subdir("rt");
	struct history *h = must_open(dir, "correct horse", HISTORY_OPEN_CREATE);
	if (!h)
		return;
	CHECK(history_has_passphrase(h) == 1, "passphrase by default");
	static const char nul_text[] = "binary\0inside\xff\xfe";
	char big[70000];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)('a' + i % 26);
	struct expect e = {
		.text = {"Tell me about the Ölfjörð 🦀 crabs", "Crabs are decapods.", nul_text, "", big,
			 "cut short"},
		.len = {strlen("Tell me about the Ölfjörð 🦀 crabs"), 19, sizeof nul_text - 1, 0, sizeof big, 9},
		.role = {HISTORY_ROLE_USER, HISTORY_ROLE_ASSISTANT, HISTORY_ROLE_USER, HISTORY_ROLE_ASSISTANT,
			 HISTORY_ROLE_USER, HISTORY_ROLE_ASSISTANT},
		.n = 6,
	};
	struct history_meta m;
	history_meta_init(&m);
	m.model = "smollm2";
	m.system_prompt = "You are a helpful assistant.";
	m.temperature = 0.8f;
	m.top_p = 0.95f;
	m.min_p = 0.05f;
	m.repeat_penalty = 1.1f;
	m.top_k = 40;
	m.context_size = 4096;
	struct history_conv *c;
	CHECK(history_conv_create(h, &m, &c) == HISTORY_OK, "create: %s", history_errmsg(h));
	CHECK(strcmp(history_conv_title(c), "") == 0, "no title before the first message");
	for (size_t i = 0; i < e.n; i++)
		CHECK(history_append(c, (enum history_role)e.role[i], e.text[i], e.len[i],
				     i == 5 ? HISTORY_MSG_CANCELLED : 0) == HISTORY_OK,
		      "append %zu: %s", i, history_errmsg(h));
	CHECK(strcmp(history_conv_title(c), "Tell me about the Ölfjörð 🦀 crabs") == 0, "derived title '%s'",
	      history_conv_title(c));
	CHECK(history_conv_pending(c) == 0, "nothing pending");
	char id[HISTORY_ID_LEN + 1];
	memcpy(id, history_conv_id(c), sizeof id);
	CHECK(history_append(c, 7, "x", 1, 0) == HISTORY_E_INVAL, "bad role refused");
	history_conv_close(c);

	/* a second conversation, to list and search */
	char id2[HISTORY_ID_LEN + 1];
	write_conv(h, &small, "gemma3", id2);
	history_close(h);

	h = must_open(dir, "correct horse", 0);
	if (!h)
		return;
	CHECK(history_conv_load(h, id, 0, &c) == HISTORY_OK, "load: %s", history_errmsg(h));
	CHECK(conv_matches(c, &e, true), "messages round trip");
	CHECK(history_conv_msg(c, 5)->flags == HISTORY_MSG_CANCELLED, "cancelled flag kept");
	CHECK(history_conv_msg(c, 0)->time_ms > 1600000000000LL, "message time");
	CHECK(history_conv_msg(c, 2)->text[sizeof nul_text - 1] == '\0', "NUL-terminated");
	const struct history_meta *mm = history_conv_meta(c);
	CHECK(strcmp(mm->model, "smollm2") == 0 && strcmp(mm->system_prompt, "You are a helpful assistant.") == 0,
	      "meta strings");
	CHECK(mm->temperature == 0.8f && mm->top_p == 0.95f && mm->min_p == 0.05f && mm->repeat_penalty == 1.1f &&
		      mm->top_k == 40 && mm->context_size == 4096,
	      "sampling settings");
	CHECK(history_conv_created(c) <= history_conv_updated(c), "times");
	CHECK(history_append(c, HISTORY_ROLE_USER, "x", 1, 0) == HISTORY_E_READONLY, "read-only handle");
	history_conv_close(c);

	/* prefix lookup, rename, list order */
	char pre[9];
	memcpy(pre, id, 8);
	pre[8] = '\0';
	CHECK(history_conv_load(h, pre, HISTORY_LOAD_WRITE, &c) == HISTORY_OK, "prefix load: %s",
	      history_errmsg(h));
	CHECK(history_rename(c, "Crab facts") == HISTORY_OK, "rename");
	CHECK(strcmp(history_conv_title(c), "Crab facts") == 0, "renamed title");
	history_conv_close(c);
	CHECK(history_conv_load(h, "zz", 0, &c) == HISTORY_E_NOTFOUND, "bad id");
	CHECK(history_conv_load(h, "0000000000000000000000000000000f", 0, &c) == HISTORY_E_NOTFOUND, "absent id");

	struct history_entry *v;
	size_t n;
	CHECK(history_conv_list(h, &v, &n) == HISTORY_OK && n == 2, "list");
	if (n == 2) {
		CHECK(strcmp(v[0].id, id) == 0, "most recent first");
		CHECK(strcmp(v[0].title, "Crab facts") == 0 && v[0].n_messages == 6, "list entry");
		CHECK(strcmp(v[1].model, "gemma3") == 0 && strcmp(v[1].title, "hello there") == 0, "second entry");
		CHECK(v[0].status == HISTORY_OK && !v[0].error, "status ok");
	}
	history_list_free(v, n);

	match_count = 0;
	CHECK(history_conv_search(h, "CRAB", count_match, NULL) == HISTORY_OK, "search");
	CHECK(match_count == 3, "search hits: title + 2 messages, got %d", match_count);
	match_count = 0;
	history_conv_search(h, "no such text anywhere", count_match, NULL);
	CHECK(match_count == 0, "no false hits");

	/* export */
	CHECK(history_conv_load(h, id, 0, &c) == HISTORY_OK, "load for export");
	char *mem = NULL;
	size_t memlen = 0;
	FILE *f = open_memstream(&mem, &memlen);
	CHECK(history_export(c, HISTORY_EXPORT_JSON, f) == 0, "export json");
	fclose(f);
	cJSON *j = cJSON_Parse(mem);
	CHECK(j != NULL, "export is JSON");
	cJSON *msgs = cJSON_GetObjectItem(j, "messages");
	CHECK(cJSON_GetArraySize(msgs) == 6, "6 messages in JSON");
	cJSON *m2 = cJSON_GetArrayItem(msgs, 2);
	CHECK(m2 && strcmp(cJSON_GetObjectItem(m2, "text")->valuestring, "binary\xef\xbf\xbdinside\xef\xbf\xbd\xef\xbf\xbd") == 0,
	      "invalid UTF-8 and NUL replaced");
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 5), "cancelled")), "cancelled in JSON");
	CHECK(strcmp(cJSON_GetObjectItem(j, "title")->valuestring, "Crab facts") == 0, "title in JSON");
	cJSON_Delete(j);
	free(mem);
	f = open_memstream(&mem, &memlen);
	CHECK(history_export(c, HISTORY_EXPORT_MD, f) == 0, "export md");
	fclose(f);
	CHECK(mem && strstr(mem, "# Crab facts") && strstr(mem, "## Assistant\n\nCrabs are decapods.") &&
		      strstr(mem, "*(reply cancelled)*"),
	      "markdown content:\n%s", mem);
	free(mem);
	history_conv_close(c);

	/* delete */
	char path[4200];
	conv_path(h, id2, path, sizeof path);
	CHECK(history_delete(h, id2) == HISTORY_OK, "delete: %s", history_errmsg(h));
	CHECK(access(path, F_OK) != 0, "file removed");
	CHECK(history_conv_load(h, id2, 0, &c) == HISTORY_E_NOTFOUND, "deleted conversation gone");
	CHECK(history_delete(h, id2) == HISTORY_E_NOTFOUND, "delete twice");
	history_close(h);
}

/* ---- passphrases -------------------------------------------------------- */

static void test_passphrases(void)
{
	const char *dir = subdir("pw");
	char err[512], key[4200], id[HISTORY_ID_LEN + 1], path[4200];
	struct history *h = must_open(dir, "first", HISTORY_OPEN_CREATE);
	if (!h)
		return;
	write_conv(h, &small, "m", id);
	conv_path(h, id, path, sizeof path);
	history_close(h);
	snprintf(key, sizeof key, "%s/key", dir);
	size_t kn, kn2, ln, ln2;
	unsigned char *k1 = slurp(key, &kn), *log1 = slurp(path, &ln);
	struct stat st1, st2;
	stat(key, &st1);

	int rc = open_store(dir, "wrong", 0, NULL, &h, err, sizeof err);
	CHECK(rc == HISTORY_E_PASSPHRASE && !h, "wrong passphrase: %d", rc);
	CHECK(strstr(err, "wrong passphrase") != NULL, "clear message: %s", err);
	rc = open_store(dir, "", 0, NULL, &h, err, sizeof err);
	CHECK(rc == HISTORY_E_PASSPHRASE, "empty passphrase refused");
	rc = open_store(dir, NULL, 0, NULL, &h, err, sizeof err);
	CHECK(rc == HISTORY_E_CANCELLED, "callback gives up");
	unsigned char *k2 = slurp(key, &kn2);
	stat(key, &st2);
	CHECK(kn == kn2 && memcmp(k1, k2, kn) == 0 && st1.st_ino == st2.st_ino, "key file untouched");
	free(k2);

	/* change */
	h = must_open(dir, "first", 0);
	CHECK(history_set_passphrase(h, "second", 6) == HISTORY_OK, "change: %s", history_errmsg(h));
	history_close(h);
	CHECK(open_store(dir, "first", 0, NULL, &h, err, sizeof err) == HISTORY_E_PASSPHRASE, "old one refused");
	h = must_open(dir, "second", 0);
	struct history_conv *c;
	CHECK(h && history_conv_load(h, id, 0, &c) == HISTORY_OK && conv_matches(c, &small, true),
	      "history readable after change");
	history_conv_close(c);

	/* remove, then add back */
	CHECK(history_set_passphrase(h, NULL, 0) == HISTORY_OK, "remove");
	CHECK(history_has_passphrase(h) == 0, "no passphrase now");
	history_close(h);
	h = must_open(dir, NULL, 0); /* the callback would fail if asked */
	CHECK(h && history_has_passphrase(h) == 0, "opens without a passphrase");
	CHECK(history_conv_load(h, id, 0, &c) == HISTORY_OK && conv_matches(c, &small, true), "readable");
	history_conv_close(c);
	CHECK(history_set_passphrase(h, "third", 5) == HISTORY_OK, "add");
	history_close(h);
	CHECK(open_store(dir, NULL, 0, NULL, &h, err, sizeof err) == HISTORY_E_CANCELLED, "needs one again");
	h = must_open(dir, "third", 0);
	CHECK(h && history_conv_load(h, id, 0, &c) == HISTORY_OK && conv_matches(c, &small, true), "readable");
	history_conv_close(c);
	history_close(h);
	unsigned char *log2 = slurp(path, &ln2);
	CHECK(ln == ln2 && memcmp(log1, log2, ln) == 0, "history not re-encrypted by passphrase changes");
	free(log2);

	/* the key file is authenticated as a whole */
	unsigned char *kf = slurp(key, &kn);
	for (size_t i = 0; i < kn; i++) {
		kf[i] ^= 0x04;
		spit(key, kf, kn);
		rc = open_store(dir, "third", 0, NULL, &h, err, sizeof err);
		CHECK(rc < 0 && !h, "key file byte %zu flipped: %d", i, rc);
		if (h)
			history_close(h);
		kf[i] ^= 0x04;
	}
	spit(key, kf, kn);
	/* Argon2id parameters above the caps are refused before any work */
	unsigned char big[120];
	memcpy(big, kf, 120);
	big[16] = 200; /* opslimit */
	spit(key, big, 120);
	rc = open_store(dir, "third", 0, NULL, &h, err, sizeof err);
	CHECK(rc == HISTORY_E_CORRUPT && strstr(err, "out of bounds"), "opslimit cap: %s", err);
	memcpy(big, kf, 120);
	big[24 + 4] = 1; /* memlimit 4 GiB + */
	spit(key, big, 120);
	rc = open_store(dir, "third", 0, NULL, &h, err, sizeof err);
	CHECK(rc == HISTORY_E_CORRUPT, "memlimit cap: %s", err);
	spit(key, kf, kn);
	free(kf);
	free(k1);
	free(log1);

	/* a store created without a passphrase */
	const char *d2 = subdir("nopw");
	h = must_open(d2, "", HISTORY_OPEN_CREATE);
	CHECK(h && history_has_passphrase(h) == 0, "created without a passphrase");
	history_close(h);
	/* no key, no create: nothing is made */
	const char *d3 = subdir("nokey");
	rc = open_store(d3, "x", 0, NULL, &h, err, sizeof err);
	CHECK(rc == HISTORY_E_NOKEY && access(d3, F_OK) != 0, "no key: nothing created");

	/* production default is at least MODERATE */
	const char *d4 = subdir("moderate");
	struct history_opts o = {.dir = d4, .flags = HISTORY_OPEN_CREATE, .passphrase = pass_cb, .pass_ctx = "p"};
	rc = history_open(&o, &h, err, sizeof err);
	CHECK(rc == HISTORY_OK, "default KDF open: %s", err);
	history_close(h);
	snprintf(key, sizeof key, "%s/key", d4);
	kf = slurp(key, &kn);
	uint64_t ops = 0, memlim = 0;
	for (int i = 7; i >= 0; i--) {
		ops = ops << 8 | kf[16 + i];
		memlim = memlim << 8 | kf[24 + i];
	}
	CHECK(kf[9] == 1 && ops >= crypto_pwhash_argon2id_OPSLIMIT_MODERATE &&
		      memlim >= crypto_pwhash_argon2id_MEMLIMIT_MODERATE,
	      "default Argon2id MODERATE or stronger (ops %llu mem %llu)", (unsigned long long)ops,
	      (unsigned long long)memlim);
	free(kf);
}

/* ---- permissions -------------------------------------------------------- */

static void check_modes(const char *path, int *files, int *dirs)
{
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char p[4200];
		struct stat st;
		snprintf(p, sizeof p, "%s/%s", path, e->d_name);
		if (lstat(p, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			CHECK((st.st_mode & 0777) == 0700, "%s is %o", p, st.st_mode & 0777);
			++*dirs;
			check_modes(p, files, dirs);
		} else {
			CHECK((st.st_mode & 0777) == 0600, "%s is %o", p, st.st_mode & 0777);
			++*files;
		}
	}
	closedir(d);
}

static void test_permissions(void)
{
	mode_t old = umask(0);
	const char *dir = subdir("perm/deeper/ttychat");
	struct history *h = must_open(dir, "p", HISTORY_OPEN_CREATE);
	if (h) {
		char id[HISTORY_ID_LEN + 1], err[256];
		write_conv(h, &small, "m", id);
		CHECK(history_blob_save(h, "kv/model/x.kv", "abc", 3, err, sizeof err) == HISTORY_OK, "blob: %s", err);
		CHECK(history_set_passphrase(h, "q", 1) == HISTORY_OK, "rewrap");
		history_close(h);
	}
	struct stat st;
	stat(dir, &st);
	CHECK((st.st_mode & 0777) == 0700, "data dir is %o", st.st_mode & 0777);
	int files = 0, dirs = 0;
	check_modes(dir, &files, &dirs);
	CHECK(files >= 4 && dirs >= 3, "checked %d files, %d dirs", files, dirs);
	/* an existing data directory with loose permissions is narrowed */
	const char *d2 = subdir("perm/loose");
	mkdir(d2, 0755);
	h = must_open(d2, "p", HISTORY_OPEN_CREATE);
	history_close(h);
	stat(d2, &st);
	CHECK((st.st_mode & 0777) == 0700, "loose dir narrowed to %o", st.st_mode & 0777);
	umask(old);
}

/* ---- tampering ---------------------------------------------------------- */

/* Loads ID read-only and checks the verdict: the load must not be a plain
 * success (WANT_ERROR: must be an error) and nothing but original text may
 * come back. */
static void expect_detected(struct history *h, const char *id, const struct expect *e, bool want_error,
			    const char *what, size_t arg)
{
	struct history_conv *c = NULL;
	int rc = history_conv_load(h, id, 0, &c);
	tamper_cases++;
	if (rc != HISTORY_OK && (!want_error || rc < 0))
		tamper_detected++;
	CHECK(rc != HISTORY_OK, "%s %zu: not detected", what, arg);
	if (want_error)
		CHECK(rc < 0, "%s %zu: expected an error, got %d", what, arg, rc);
	if (rc >= 0) {
		CHECK(c && conv_matches(c, e, false), "%s %zu: tampered text returned", what, arg);
		history_conv_close(c);
	} else {
		CHECK(c == NULL, "%s %zu: handle on error", what, arg);
	}
}

static void test_tamper(void)
{
	const char *dir = subdir("tamper");
	struct history *h = must_open(dir, "p", HISTORY_OPEN_CREATE);
	if (!h)
		return;
	char id[HISTORY_ID_LEN + 1], idb[HISTORY_ID_LEN + 1], path[4200], pathb[4200];
	write_conv(h, &small, "m", id);
	struct expect other = {.text = {"other one", "other two", "other three", "other four"},
			       .len = {9, 9, 11, 10},
			       .role = {2, 3, 2, 3},
			       .n = 4};
	write_conv(h, &other, "m", idb);
	conv_path(h, id, path, sizeof path);
	conv_path(h, idb, pathb, sizeof pathb);
	size_t n, nb;
	unsigned char *orig = slurp(path, &n), *ob = slurp(pathb, &nb);
	size_t off[32], offb[32];
	size_t k = rec_offsets(orig, n, off, 30), kb = rec_offsets(ob, nb, offb, 30);
	CHECK(k == 5 && off[k] == n, "5 records (meta + 4), %zu found", k);
	CHECK(kb == 5, "other has 5");
	struct history_conv *c;
	CHECK(history_conv_load(h, id, 0, &c) == HISTORY_OK, "untampered loads");
	history_conv_close(c);

	/* every byte, two different bit flips each */
	unsigned char *t = malloc(n + 4096);
	for (size_t i = 0; i < n; i++) {
		for (int b = 0; b < 2; b++) {
			memcpy(t, orig, n);
			t[i] ^= b ? 0x80 : 0x01;
			spit(path, t, n);
			/* a flipped byte in the newest commit slot looks exactly
			 * like a slot torn by a crash: reported, not fatal */
			bool newest_slot = i >= 64 && i < 192;
			expect_detected(h, id, &small, !newest_slot, "flip byte", i);
		}
	}
	/* truncation at every record boundary (and inside the header) */
	for (size_t r = 0; r < k; r++) {
		spit(path, orig, off[r]);
		expect_detected(h, id, &small, true, "truncate before record", r);
	}
	for (size_t cut = 0; cut < LOG_DATA; cut += 16) {
		spit(path, orig, cut);
		expect_detected(h, id, &small, true, "truncate header at", cut);
	}
	/* truncation inside a committed record */
	for (size_t r = 0; r < k; r++) {
		spit(path, orig, off[r] + 10);
		expect_detected(h, id, &small, true, "truncate inside record", r);
	}
	/* delete record r */
	for (size_t r = 0; r < k; r++) {
		size_t m = 0;
		memcpy(t, orig, off[r]);
		m = off[r];
		memcpy(t + m, orig + off[r + 1], n - off[r + 1]);
		m += n - off[r + 1];
		spit(path, t, m);
		expect_detected(h, id, &small, true, "delete record", r);
	}
	/* duplicate record r (the copy right after it) */
	for (size_t r = 0; r < k; r++) {
		size_t len = off[r + 1] - off[r], m = off[r + 1];
		memcpy(t, orig, m);
		memcpy(t + m, orig + off[r], len);
		memcpy(t + m + len, orig + off[r + 1], n - off[r + 1]);
		spit(path, t, n + len);
		/* a copy of the last record appended at the end is an extra,
		 * uncommitted record that fails: dropped with a notice */
		expect_detected(h, id, &small, r + 1 < k, "duplicate record", r);
	}
	/* swap records r and r+1 */
	for (size_t r = 0; r + 1 < k; r++) {
		size_t l1 = off[r + 1] - off[r], l2 = off[r + 2] - off[r + 1];
		memcpy(t, orig, n);
		memcpy(t + off[r], orig + off[r + 1], l2);
		memcpy(t + off[r] + l2, orig + off[r], l1);
		spit(path, t, n);
		expect_detected(h, id, &small, true, "swap records", r);
	}
	/* splice: record r replaced by the other conversation's record r */
	for (size_t r = 0; r < k; r++) {
		size_t m = off[r], lb = offb[r + 1] - offb[r];
		memcpy(t, orig, m);
		memcpy(t + m, ob + offb[r], lb);
		memcpy(t + m + lb, orig + off[r + 1], n - off[r + 1]);
		spit(path, t, m + lb + n - off[r + 1]);
		expect_detected(h, id, &small, true, "splice record", r);
	}
	/* the other conversation's slots and records under our header */
	memcpy(t, orig, 64);
	memcpy(t + 64, ob + 64, nb - 64);
	spit(path, t, nb);
	expect_detected(h, id, &small, true, "foreign body", 0);
	/* the other conversation's whole file under our name */
	spit(path, ob, nb);
	expect_detected(h, id, &small, true, "foreign file", 0);
	/* an older version of the file (rollback) is valid but shorter: the
	 * one thing a local store cannot detect; documented */

	/* a corrupt file opened for writing is not "repaired" */
	memcpy(t, orig, n);
	t[off[2] + 40] ^= 1;
	spit(path, t, n);
	CHECK(history_conv_load(h, id, HISTORY_LOAD_WRITE, &c) == HISTORY_E_CORRUPT, "write-load refuses");
	size_t n2;
	unsigned char *after = slurp(path, &n2);
	CHECK(n2 == n && memcmp(after, t, n) == 0, "corrupt file left as it was");
	free(after);

	/* another key: a file copied from a different store */
	const char *d2 = subdir("tamper2");
	struct history *h2 = must_open(d2, "p", HISTORY_OPEN_CREATE);
	char path2[4200];
	snprintf(path2, sizeof path2, "%s/history/%s.tch", d2, id);
	spit(path2, orig, n);
	CHECK(history_conv_load(h2, id, 0, &c) == HISTORY_E_WRONGKEY, "wrong key detected");
	history_close(h2);

	spit(path, orig, n);
	CHECK(history_conv_load(h, id, 0, &c) == HISTORY_OK && conv_matches(c, &small, true), "restored loads");
	history_conv_close(c);
	free(t);
	free(orig);
	free(ob);
	history_close(h);
}

/* ---- torn tails (what a crash leaves) ----------------------------------- */

struct fault {
	int count;     /* operations of the kinds in WHICH seen so far */
	int fail_at;   /* the operation to fail; -1: none */
	bool sticky;   /* fail every operation from FAIL_AT on */
	unsigned which; /* 1 pwrite, 2 fsync, 4 rename */
	int err;
	bool partial;  /* a failing pwrite first writes half of the data */
	bool short_writes;
	int injected;
};

static bool fault_hit(struct fault *f, unsigned kind)
{
	if (!(f->which & kind))
		return false;
	int i = f->count++;
	if (f->fail_at < 0 || i < f->fail_at || (!f->sticky && i > f->fail_at))
		return false;
	f->injected++;
	return true;
}

static ssize_t f_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
	struct fault *f = ctx;
	if (fault_hit(f, 1)) {
		if (f->partial && n > 1 && pwrite(fd, buf, n / 2, off) < 0)
			return -1;
		errno = f->err;
		return -1;
	}
	if (f->short_writes && n > 7)
		n = 7;
	return pwrite(fd, buf, n, off);
}

static int f_fsync(void *ctx, int fd)
{
	struct fault *f = ctx;
	if (fault_hit(f, 2)) {
		errno = f->err;
		return -1;
	}
	return fsync(fd);
}

static int f_rename(void *ctx, const char *a, const char *b)
{
	struct fault *f = ctx;
	if (fault_hit(f, 4)) {
		errno = f->err;
		return -1;
	}
	return rename(a, b);
}

static void test_torn(void)
{
	const char *dir = subdir("torn");
	struct history *h = must_open(dir, "p", HISTORY_OPEN_CREATE);
	if (!h)
		return;
	char id[HISTORY_ID_LEN + 1], path[4200];
	write_conv(h, &small, "m", id);
	conv_path(h, id, path, sizeof path);
	size_t n;
	unsigned char *orig = slurp(path, &n);
	unsigned char *t = malloc(n + 300);
	struct history_conv *c;
	/* a partial record after the committed ones: dropped with a notice */
	for (size_t extra = 1; extra < 200; extra += 13) {
		memcpy(t, orig, n);
		randombytes_buf(t + n, extra);
		t[n] = 100; /* a length that runs past the end */
		t[n + 1] = t[n + 2] = t[n + 3] = 0;
		spit(path, t, n + extra);
		int rc = history_conv_load(h, id, 0, &c);
		CHECK(rc == HISTORY_RECOVERED && conv_matches(c, &small, true), "torn tail of %zu bytes: %d", extra,
		      rc);
		CHECK(strstr(history_errmsg(h), "incomplete last record") != NULL, "notice: %s", history_errmsg(h));
		history_conv_close(c);
	}
	/* opened for writing, the tail is repaired at once */
	CHECK(history_conv_load(h, id, HISTORY_LOAD_WRITE, &c) == HISTORY_RECOVERED, "write-load recovers");
	CHECK(history_append(c, HISTORY_ROLE_USER, "after the crash", 15, 0) == HISTORY_OK, "append after repair");
	history_conv_close(c);
	CHECK(history_conv_load(h, id, 0, &c) == HISTORY_OK && history_conv_count(c) == 5, "clean after repair");
	history_conv_close(c);
	spit(path, orig, n);
	history_close(h);

	/* a record written and synced, its commit slot not: the record
	 * counts (it is complete and authentic), nothing is lost */
	struct fault f = {.fail_at = 3, .which = 1, .err = EIO};
	struct history_io io = {.ctx = &f, .pwrite = f_pwrite, .fsync = f_fsync, .rename = f_rename};
	char err[256];
	open_store(dir, "p", 0, &io, &h, err, sizeof err);
	CHECK(history_conv_load(h, id, HISTORY_LOAD_WRITE, &c) == HISTORY_OK, "load");
	f.count = 0;
	f.fail_at = 1; /* 0: the record, 1: the slot */
	int rc = history_append(c, HISTORY_ROLE_USER, "slot write fails", 16, 0);
	CHECK(rc == HISTORY_E_IO && history_conv_pending(c) == 1, "slot failure reported: %d", rc);
	struct history *r = must_open(dir, "p", 0);
	struct history_conv *rc2;
	CHECK(history_conv_load(r, id, 0, &rc2) == HISTORY_OK && history_conv_count(rc2) == 5,
	      "uncommitted complete record is kept");
	history_conv_close(rc2);
	f.fail_at = -1;
	CHECK(history_conv_flush(c) == HISTORY_OK && history_conv_pending(c) == 0, "flush");
	history_conv_close(c);
	CHECK(history_conv_load(r, id, 0, &rc2) == HISTORY_OK && history_conv_count(rc2) == 5, "no duplicate");
	history_conv_close(rc2);
	history_close(r);
	history_close(h);
	free(t);
	free(orig);
}

/* ---- fault injection ---------------------------------------------------- */

/* One scenario: 2 saved messages, then with the fault armed 4 more
 * appends and a rename; then checks what a fresh reader sees, clears the
 * fault, flushes, and checks again.  Returns whether the fault fired. */
static bool fault_scenario(const char *dir, unsigned which, int err, int fail_at, bool sticky, bool partial)
{
	struct fault f = {.fail_at = -1, .which = which, .err = err, .partial = partial};
	struct history_io io = {.ctx = &f, .pwrite = f_pwrite, .fsync = f_fsync, .rename = f_rename};
	struct history *h;
	char e[256];
	if (open_store(dir, "p", 0, &io, &h, e, sizeof e) != HISTORY_OK)
		return false;
	static const char *texts[6] = {"m0", "m1", "m2", "m3", "m4", "m5"};
	struct history_conv *c;
	history_conv_create(h, NULL, &c);
	for (int i = 0; i < 2; i++)
		history_append(c, HISTORY_ROLE_USER, texts[i], 2, 0);
	f.count = 0;
	f.fail_at = fail_at;
	bool acked[6] = {true, true};
	for (int i = 2; i < 6; i++) {
		int rc = history_append(c, HISTORY_ROLE_USER, texts[i], 2, 0);
		acked[i] = rc == HISTORY_OK;
		if (!acked[i]) {
			CHECK(rc == (err == ENOSPC ? HISTORY_E_NOSPACE : HISTORY_E_IO), "error code %d", rc);
			CHECK(history_conv_pending(c) > 0, "pending after failure");
			CHECK(history_conv_count(c) == (size_t)i + 1, "kept in memory");
		}
		if (i == 3)
			history_rename(c, "renamed");
	}
	/* what a reader (or the next run, after a crash) finds */
	struct history *r = must_open(dir, "p", 0);
	struct history_conv *rc;
	int lr = history_conv_load(r, history_conv_id(c), 0, &rc);
	CHECK(lr >= 0, "reader after fault (which %u err %d at %d): %d %s", which, err, fail_at, lr,
	      history_errmsg(r));
	if (lr >= 0) {
		size_t n = history_conv_count(rc), j = 0;
		/* every acked message present; only written ones, in order */
		for (size_t i = 0; i < n; i++) {
			const struct history_msg *m = history_conv_msg(rc, i);
			while (j < 6 && strcmp(m->text, texts[j]) != 0) {
				CHECK(!acked[j], "acked message %zu lost", j);
				j++;
			}
			CHECK(j < 6, "unexpected text '%s'", m->text);
			j++;
		}
		for (; j < 6; j++)
			CHECK(!acked[j], "acked message %zu lost at the end", j);
		history_conv_close(rc);
	}
	/* the fault clears: everything is saved exactly once */
	f.fail_at = -1;
	CHECK(history_conv_flush(c) == HISTORY_OK && history_conv_pending(c) == 0, "flush after fault: %s",
	      history_errmsg(h));
	lr = history_conv_load(r, history_conv_id(c), 0, &rc);
	CHECK(lr == HISTORY_OK, "clean after flush: %d %s", lr, history_errmsg(r));
	if (lr == HISTORY_OK) {
		CHECK(history_conv_count(rc) == 6, "all 6, no duplicates (%zu)", history_conv_count(rc));
		for (size_t i = 0; i < 6 && i < history_conv_count(rc); i++)
			CHECK(strcmp(history_conv_msg(rc, i)->text, texts[i]) == 0, "order");
		CHECK(strcmp(history_conv_title(rc), "renamed") == 0, "rename kept");
		history_conv_close(rc);
	}
	history_conv_close(c);
	history_close(r);
	history_close(h);
	fault_cases++;
	return f.injected > 0;
}

static void test_faults(void)
{
	const char *dir = subdir("faults");
	struct history *h = must_open(dir, "p", HISTORY_OPEN_CREATE);
	history_close(h);
	const int errs[2] = {ENOSPC, EIO};
	for (int e = 0; e < 2; e++)
		for (unsigned which = 1; which <= 4; which <<= 1)
			for (int sticky = 0; sticky < 2; sticky++)
				for (int at = 0; at < 64; at++)
					if (!fault_scenario(dir, which, errs[e], at, sticky, which == 1 && at % 2))
						break;
	/* short writes everywhere: still correct */
	struct fault f = {.fail_at = -1, .which = 0, .short_writes = true};
	struct history_io io = {.ctx = &f, .pwrite = f_pwrite};
	char err[256], id[HISTORY_ID_LEN + 1];
	CHECK(open_store(dir, "p", 0, &io, &h, err, sizeof err) == HISTORY_OK, "open");
	write_conv(h, &small, "short", id);
	struct history_conv *c;
	CHECK(history_conv_load(h, id, 0, &c) == HISTORY_OK && conv_matches(c, &small, true), "short writes");
	history_conv_close(c);
	/* conversation creation under faults: all or nothing */
	for (unsigned which = 1; which <= 4; which <<= 1)
		for (int at = 0; at < 8; at++) {
			f = (struct fault){.fail_at = at, .which = which, .err = EIO};
			struct history_entry *v;
			size_t before, after;
			history_conv_list(h, &v, &before);
			history_list_free(v, before);
			int rc = history_conv_create(h, NULL, &c);
			history_conv_list(h, &v, &after);
			history_list_free(v, after);
			if (rc == HISTORY_OK) {
				CHECK(after == before + 1, "created");
				history_conv_close(c);
			} else {
				CHECK(after == before, "failed create leaves nothing (which %u at %d)", which, at);
			}
			fault_cases++;
		}
	history_close(h);
}

/* ---- locks -------------------------------------------------------------- */

static void test_locks(void)
{
	const char *dir = subdir("locks");
	struct history *h = must_open(dir, "p", HISTORY_OPEN_CREATE), *h2 = must_open(dir, "p", 0);
	char id[HISTORY_ID_LEN + 1];
	write_conv(h, &small, "m", id);
	struct history_conv *a, *b;
	CHECK(history_conv_load(h, id, HISTORY_LOAD_WRITE, &a) == HISTORY_OK, "writer 1");
	CHECK(history_conv_load(h2, id, HISTORY_LOAD_WRITE, &b) == HISTORY_E_BUSY, "writer 2 refused");
	CHECK(history_delete(h2, id) == HISTORY_E_BUSY, "delete refused while open");
	CHECK(history_conv_load(h2, id, 0, &b) == HISTORY_OK, "reader allowed");
	history_conv_close(b);
	/* in another process, too */
	pid_t pid = fork();
	if (pid == 0) {
		struct history *hc = must_open(dir, "p", 0);
		struct history_conv *x;
		_exit(history_conv_load(hc, id, HISTORY_LOAD_WRITE, &x) == HISTORY_E_BUSY ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "busy across processes");
	history_conv_close(a);
	CHECK(history_conv_load(h2, id, HISTORY_LOAD_WRITE, &b) == HISTORY_OK, "free after close");
	history_conv_close(b);
	history_close(h);
	history_close(h2);
}

/* ---- blobs -------------------------------------------------------------- */

static void test_blobs(void)
{
	const char *dir = subdir("blobs");
	struct history *h = must_open(dir, "p", HISTORY_OPEN_CREATE);
	if (!h)
		return;
	char err[256];
	const size_t sizes[] = {0, 1, 1000, (1u << 20) - 1, 1u << 20, (1u << 20) + 1, 3u << 20 | 12345};
	unsigned char *data = malloc(4u << 20);
	randombytes_buf(data, 4u << 20);
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		void *back;
		size_t n;
		CHECK(history_blob_save(h, "kv/a.kv", data, sizes[i], err, sizeof err) == HISTORY_OK, "save %zu: %s",
		      sizes[i], err);
		int rc = history_blob_load(h, "kv/a.kv", &back, &n, err, sizeof err);
		CHECK(rc == HISTORY_OK && n == sizes[i] && memcmp(back, data, n) == 0, "blob %zu round trip: %s",
		      sizes[i], err);
		free(back);
	}
	/* streaming, odd pieces */
	struct history_blob_writer *w;
	CHECK(history_blob_begin(h, "kv/s.kv", &w, err, sizeof err) == HISTORY_OK, "begin");
	for (size_t off = 0, step = 1; off < (2u << 20); off += step, step = step * 3 + 7) {
		size_t take = step < (2u << 20) - off ? step : (2u << 20) - off;
		history_blob_write(w, data + off, take, err, sizeof err);
	}
	CHECK(history_blob_commit(w, err, sizeof err) == HISTORY_OK, "commit: %s", err);
	struct history_blob_reader *rd;
	CHECK(history_blob_open(h, "kv/s.kv", &rd, err, sizeof err) == HISTORY_OK, "open");
	unsigned char *back = malloc(2u << 20);
	size_t tot = 0, got;
	int rc;
	while ((rc = history_blob_read(rd, back + tot, 777, &got, err, sizeof err)) == HISTORY_OK && got)
		tot += got;
	CHECK(rc == HISTORY_OK && tot == (2u << 20) && memcmp(back, data, tot) == 0, "streamed read");
	history_blob_close(rd);
	free(back);

	/* tampering: every byte of a small blob, truncation, other names */
	history_blob_save(h, "kv/t.kv", "secret kv bytes", 15, err, sizeof err);
	char path[4200], other[4200];
	snprintf(path, sizeof path, "%s/kv/t.kv", dir);
	size_t n;
	unsigned char *orig = slurp(path, &n), *t = malloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		memcpy(t, orig, n);
		t[i] ^= 0x20;
		spit(path, t, n);
		void *d = NULL;
		size_t dn;
		rc = history_blob_load(h, "kv/t.kv", &d, &dn, err, sizeof err);
		tamper_cases++;
		tamper_detected += rc < 0;
		CHECK(rc < 0 && !d, "blob byte %zu flipped: %d", i, rc);
	}
	for (size_t cut = 0; cut < n; cut++) {
		spit(path, orig, cut);
		void *d = NULL;
		size_t dn;
		rc = history_blob_load(h, "kv/t.kv", &d, &dn, err, sizeof err);
		tamper_cases++;
		tamper_detected += rc < 0;
		CHECK(rc < 0 && !d, "blob truncated to %zu: %d", cut, rc);
	}
	memcpy(t, orig, n);
	t[n] = 0;
	spit(path, t, n + 1);
	void *d = NULL;
	size_t dn;
	CHECK(history_blob_load(h, "kv/t.kv", &d, &dn, err, sizeof err) == HISTORY_E_CORRUPT, "trailing byte");
	snprintf(other, sizeof other, "%s/kv/u.kv", dir);
	spit(other, orig, n);
	CHECK(history_blob_load(h, "kv/u.kv", &d, &dn, err, sizeof err) == HISTORY_E_CORRUPT, "renamed blob");
	spit(path, orig, n);
	CHECK(history_blob_load(h, "kv/t.kv", &d, &dn, err, sizeof err) == HISTORY_OK && dn == 15, "restored");
	free(d);
	CHECK(history_blob_load(h, "kv/none.kv", &d, &dn, err, sizeof err) == HISTORY_E_NOTFOUND, "absent");
	CHECK(history_blob_remove(h, "kv/t.kv", err, sizeof err) == HISTORY_OK && access(path, F_OK) != 0, "remove");
	const char *bad[] = {"", "/abs", "../up", "kv/../key", "kv/.hidden", "key", "history/x", "a//b", "kv/",
			     "sp ace", "kv/x\n"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK(history_blob_save(h, bad[i], "x", 1, err, sizeof err) == HISTORY_E_INVAL, "bad name '%s'",
		      bad[i]);
	char name1[65], name2[65];
	history_blob_name(h, "model+tokens", 12, name1);
	history_blob_name(h, "model+tokens", 12, name2);
	CHECK(strlen(name1) == 64 && strcmp(name1, name2) == 0, "blob names are stable");
	history_blob_name(h, "model+tokenz", 12, name2);
	CHECK(strcmp(name1, name2) != 0, "and distinct");
	free(orig);
	free(t);
	free(data);
	history_close(h);
}

/* ---- no plaintext on disk ----------------------------------------------- */

static int scanned_files;
static bool file_contains(const char *path, const char *needle)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return false;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (64 << 20)) {
		close(fd);
		return false;
	}
	scanned_files++;
	size_t nl = strlen(needle), keep = 0;
	char buf[65536 + 128];
	bool found = false;
	ssize_t r;
	while (!found && (r = read(fd, buf + keep, 65536)) > 0) {
		size_t n = keep + (size_t)r;
		found = memmem(buf, n, needle, nl) != NULL;
		keep = n < nl ? n : nl - 1;
		memmove(buf, buf + n - keep, keep);
	}
	close(fd);
	return found;
}

static const char *marker;
static int hits;
static int scan_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)f;
	if (flag == FTW_F && file_contains(p, marker)) {
		hits++;
		fprintf(stderr, "FAIL: plaintext marker found in %s\n", p);
	}
	return 0;
}

static void test_no_plaintext(void)
{
	unsigned char r[16];
	char mk[40];
	randombytes_buf(r, sizeof r);
	memcpy(mk, "MRK", 3);
	sodium_bin2hex(mk + 3, sizeof mk - 3, r, sizeof r);
	marker = mk;
	const char *dir = subdir("plain");
	struct history *h = must_open(dir, mk, HISTORY_OPEN_CREATE); /* even the passphrase */
	if (!h)
		return;
	char text[200], err[256];
	snprintf(text, sizeof text, "my secret is %s, keep it", mk);
	struct history_meta m;
	history_meta_init(&m);
	m.model = mk;
	m.system_prompt = text;
	m.title = text;
	struct history_conv *c;
	history_conv_create(h, &m, &c);
	history_append(c, HISTORY_ROLE_USER, text, strlen(text), 0);
	history_append(c, HISTORY_ROLE_ASSISTANT, mk, strlen(mk), 0);
	history_rename(c, mk);
	/* a crash-recovery rewrite, too */
	char path[4200];
	conv_path(h, history_conv_id(c), path, sizeof path);
	history_conv_close(c);
	history_blob_save(h, "kv/p.kv", text, strlen(text), err, sizeof err);
	history_set_passphrase(h, mk, strlen(mk));
	history_close(h);
	/* the recovery paths too: a failed fsync (whole-file rewrite) and a
	 * torn tail repaired on load */
	struct fault f = {.fail_at = 0, .which = 2, .err = EIO};
	struct history_io io = {.ctx = &f, .pwrite = f_pwrite, .fsync = f_fsync, .rename = f_rename};
	CHECK(open_store(dir, mk, 0, &io, &h, err, sizeof err) == HISTORY_OK, "reopen: %s", err);
	struct history_entry *v;
	size_t n;
	history_conv_list(h, &v, &n);
	char id[HISTORY_ID_LEN + 1] = "";
	if (n == 1)
		memcpy(id, v[0].id, sizeof id);
	history_list_free(v, n);
	CHECK(n == 1 && history_conv_load(h, id, HISTORY_LOAD_WRITE, &c) == HISTORY_OK, "load for writing");
	f.count = 0;
	CHECK(history_append(c, HISTORY_ROLE_USER, text, strlen(text), 0) == HISTORY_E_IO, "fsync fails");
	f.fail_at = -1;
	CHECK(history_conv_flush(c) == HISTORY_OK, "rewrite");
	history_conv_close(c);
	size_t ln;
	unsigned char *log = slurp(path, &ln), *torn = malloc(ln + 40);
	memcpy(torn, log, ln);
	memset(torn + ln, 'x', 40);
	spit(path, torn, ln + 40);
	CHECK(history_conv_load(h, id, HISTORY_LOAD_WRITE, &c) == HISTORY_RECOVERED, "torn tail repaired");
	history_conv_close(c);
	free(log);
	free(torn);
	history_close(h);
	hits = 0;
	scanned_files = 0;
	nftw(dir, scan_one, 16, FTW_PHYS);
	int in_dir = scanned_files;
	nftw("/tmp", scan_one, 16, FTW_PHYS);
	CHECK(hits == 0, "plaintext marker on disk (%d files)", hits);
	CHECK(in_dir >= 3, "scanned %d files in the data dir", in_dir);
	printf("no-plaintext scan: %d files in the data dir, %d in /tmp\n", in_dir, scanned_files - in_dir);
}

/* ---- two stores, meta ---------------------------------------------------- */

static void test_misc(void)
{
	struct history *a = must_open(subdir("a"), "1", HISTORY_OPEN_CREATE);
	struct history *b = must_open(subdir("b"), "2", HISTORY_OPEN_CREATE);
	char ia[HISTORY_ID_LEN + 1], ib[HISTORY_ID_LEN + 1];
	write_conv(a, &small, "A", ia);
	write_conv(b, &small, "B", ib);
	struct history_conv *c;
	CHECK(history_conv_load(a, ia, 0, &c) == HISTORY_OK && strcmp(history_conv_meta(c)->model, "A") == 0,
	      "store a");
	history_conv_close(c);
	CHECK(history_conv_load(b, ia, 0, &c) == HISTORY_E_NOTFOUND, "stores are separate");
	/* meta replacement and long titles */
	CHECK(history_conv_load(b, ib, HISTORY_LOAD_WRITE, &c) == HISTORY_OK, "load b");
	struct history_meta m;
	history_meta_init(&m);
	m.model = "new-model";
	CHECK(history_conv_set_meta(c, &m) == HISTORY_OK, "set meta");
	char longt[300];
	memset(longt, 'x', sizeof longt);
	memcpy(longt + 99, "é", 2); /* a 2-byte character across the 100-byte cut */
	longt[299] = '\0';
	history_append(c, HISTORY_ROLE_USER, "ignored for title", 17, 0);
	history_conv_close(c);
	CHECK(history_conv_load(b, ib, 0, &c) == HISTORY_OK, "reload");
	CHECK(strcmp(history_conv_meta(c)->model, "new-model") == 0 && history_conv_meta(c)->system_prompt == NULL,
	      "meta replaced");
	CHECK(strcmp(history_conv_title(c), "hello there") == 0, "title from first user message");
	history_conv_close(c);
	struct history_conv *d;
	history_conv_create(b, NULL, &d);
	history_append(d, HISTORY_ROLE_SYSTEM, "sys", 3, 0);
	history_append(d, HISTORY_ROLE_USER, longt, 299, 0);
	CHECK(strlen(history_conv_title(d)) == 99, "title cut before a split character: %zu",
	      strlen(history_conv_title(d)));
	history_append(d, HISTORY_ROLE_USER, "  \n first line\nsecond", 21, 0);
	history_conv_close(d);
	history_conv_create(b, NULL, &d);
	history_append(d, HISTORY_ROLE_USER, "  \n first line\nsecond", 21, 0);
	CHECK(strcmp(history_conv_title(d), "first line") == 0, "first line only: '%s'", history_conv_title(d));
	history_conv_close(d);
	history_close(a);
	history_close(b);
}

int main(void)
{
	if (sodium_init() < 0)
		return 99;
	snprintf(root, sizeof root, "test_history.XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 99;
	}
	test_roundtrip();
	test_reasoning();
	test_passphrases();
	test_permissions();
	test_tamper();
	test_torn();
	test_faults();
	test_locks();
	test_blobs();
	test_no_plaintext();
	test_misc();
	printf("tamper cases: %d (%d detected as errors or notices)\n", tamper_cases, tamper_detected);
	printf("fault-injection scenarios: %d\n", fault_cases);
	if (!tu_fail)
		rm_rf(root);
	else
		printf("files kept in %s\n", root);
	return tu_finish();
}
