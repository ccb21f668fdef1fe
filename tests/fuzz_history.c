/*
 * fuzz_history.c - libFuzzer target for the readers of the history store
 * (src/history.c, histio.c, keyfile.c): conversation logs and key files.
 *
 * A store is made once in a temporary directory with the committed key
 * file tests/fuzz/history-key (no passphrase), so that the committed seed
 * logs (written under that key by `fuzz_history --make-seeds DIR`)
 * authenticate and mutations reach every check: header, commit slots,
 * record lengths, the chain, torn tails and the salvage of a damaged file.
 * The first byte picks the mode: even, the rest is a conversation log,
 * written under the name its header gives (bytes 16..31 as hex) and loaded
 * read-only with HISTORY_LOAD_SALVAGE and through history_conv_list();
 * odd, the rest is a key file, read and (without a passphrase) unlocked.
 * Every message shown must be whole; an error must leave one line.
 */
#include "config.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "history.h"
#include "keyfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char dir[256], hdir[300];
static struct history *store;

static int write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	int ok = fwrite(p, 1, n, f) == n;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static void die(const char *what)
{
	fprintf(stderr, "fuzz_history: %s\n", what);
	exit(1);
}

/* --make-seeds OUT: three conversations (one rewound by a replace) as
 * seed inputs for the corpus. */
static void make_seeds(const char *out)
{
	static const char *const texts[] = {"What is the capital of France?", "Paris.", "And of Italy?", "Rome."};
	for (int k = 0; k < 3; k++) {
		struct history_meta m;
		history_meta_init(&m);
		m.model = "fuzz";
		m.system_prompt = k == 1 ? "be brief" : NULL;
		struct history_conv *c;
		if (history_conv_create(store, &m, &c) != HISTORY_OK)
			die(history_errmsg(store));
		for (int i = 0; i <= k + 1 && i < 4; i++)
			history_append(c, i % 2 ? HISTORY_ROLE_ASSISTANT : HISTORY_ROLE_USER, texts[i], strlen(texts[i]), 0);
		if (k == 2)
			history_rename(c, "renamed \x1b[2J");
		char src[512], dst[512];
		snprintf(src, sizeof src, "%s/%s.tch", hdir, history_conv_id(c));
		snprintf(dst, sizeof dst, "%s/seed-log-%d", out, k);
		history_conv_close(c);
		FILE *f = fopen(src, "rb");
		unsigned char buf[1 << 16];
		size_t n = f ? fread(buf + 1, 1, sizeof buf - 1, f) : 0;
		if (f)
			fclose(f);
		buf[0] = 0;
		if (!n || write_file(dst, buf, n + 1))
			die("cannot write a seed");
	}
	unsigned char key[1 + KEYFILE_SIZE];
	char err[256], kp[300];
	snprintf(kp, sizeof kp, "%s/key", dir);
	key[0] = 1;
	if (keyfile_read(kp, key + 1, err, sizeof err) != HISTORY_OK)
		die(err);
	char dst[512];
	snprintf(dst, sizeof dst, "%s/seed-key", out);
	if (write_file(dst, key, sizeof key))
		die("cannot write the key seed");
}

/* The temporary store goes with the process. */
static void cleanup(void)
{
	char p[600];
	static const char *const names[] = {"history", "key", "fuzz-key"};
	DIR *d = opendir(hdir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.' && snprintf(p, sizeof p, "%s/%s", hdir, e->d_name) < (int)sizeof p)
			unlink(p);
	if (d)
		closedir(d);
	for (int i = 2; i >= 0; i--)
		if (snprintf(p, sizeof p, "%s/%s", dir, names[i]) < (int)sizeof p)
			i == 0 ? rmdir(p) : unlink(p);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	snprintf(dir, sizeof dir, "%s/ttychat-fuzz-history.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		die("mkdtemp failed");
	snprintf(hdir, sizeof hdir, "%s/history", dir);
	const char *src = getenv("TTYCHAT_SRCDIR");
	char kp[512], dst[300];
	snprintf(kp, sizeof kp, "%s/tests/fuzz/history-key", src ? src : ".");
	snprintf(dst, sizeof dst, "%s/key", dir);
	FILE *f = fopen(kp, "rb");
	unsigned char key[KEYFILE_SIZE];
	if (!f || fread(key, 1, sizeof key, f) != sizeof key)
		die("cannot read tests/fuzz/history-key (set TTYCHAT_SRCDIR)");
	fclose(f);
	if (write_file(dst, key, sizeof key))
		die("cannot write the key file");
	char err[512];
	struct history_opts o = {.dir = dir, .test_kdf_opslimit = 1, .test_kdf_memlimit = 8192};
	if (history_open(&o, &store, err, sizeof err) != HISTORY_OK)
		die(err);
	atexit(cleanup);
	for (int i = 1; argc && i < *argc; i++)
		if (strcmp((*argv)[i], "--make-seeds") == 0 && i + 1 < *argc) {
			make_seeds((*argv)[i + 1]);
			exit(0);
		}
	return 0;
}

static void one_line(const char *msg)
{
	if (!msg[0] || strchr(msg, '\n'))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	char path[512], err[512];
	if (data[0] % 2) {
		snprintf(path, sizeof path, "%s/fuzz-key", dir);
		if (write_file(path, p, n))
			return 0;
		unsigned char file[KEYFILE_SIZE];
		int rc = keyfile_read(path, file, err, sizeof err);
		if (rc != HISTORY_OK) {
			one_line(err);
		} else if (!keyfile_has_passphrase(file)) {
			unsigned char *master = sodium_malloc(32);
			if (master && keyfile_unlock(file, NULL, 0, master, err, sizeof err) != HISTORY_OK)
				one_line(err);
			sodium_free(master);
		}
		unlink(path);
		return 0;
	}
	char id[HISTORY_ID_LEN + 1] = "00000000000000000000000000000000";
	if (n >= 32)
		sodium_bin2hex(id, sizeof id, p + 16, 16);
	snprintf(path, sizeof path, "%s/%s.tch", hdir, id);
	if (write_file(path, p, n))
		return 0;
	struct history_conv *c;
	int rc = history_conv_load(store, id, HISTORY_LOAD_SALVAGE, &c);
	if (rc < 0) {
		one_line(history_errmsg(store));
	} else {
		if (rc != HISTORY_OK)
			one_line(history_errmsg(store));
		size_t total = 0;
		for (size_t i = 0; i < history_conv_count(c); i++) {
			const struct history_msg *m = history_conv_msg(c, i);
			if (!m || (m->len && !m->text))
				__builtin_trap();
			total += m->len + strlen(history_conv_title(c));
		}
		if (history_conv_count_current(c) > history_conv_count(c))
			__builtin_trap();
		(void)total;
		history_conv_close(c);
	}
	struct history_entry *v;
	size_t nv;
	if (history_conv_list(store, &v, &nv) == HISTORY_OK)
		history_list_free(v, nv);
	unlink(path);
	char lock[520];
	snprintf(lock, sizeof lock, "%s/%s.lock", hdir, id);
	unlink(lock);
	return 0;
}
