/*
 * kvstore.c - see kvstore.h.  Eviction scans <data dir>/kv/ (the folders of
 * the conversations, and the loose files of the earlier layout) and removes
 * the files with the oldest modification time first; a snapshot is
 * rewritten whenever its conversation is left, so "oldest written" is
 * "least recently used" closely enough for a cache.  A conversation's
 * folder is removed once it is empty.
 */
#include "config.h"

#include "kvstore.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "history.h"

#define HASH_HEX 64
/* "kv/" C "/" M ".kv" */
#define SNAP_NAME_MAX (3 + HASH_HEX + 1 + HASH_HEX + 3 + 1)

/* The keyed hash of "TAG\n" A ["\n" B]; IDs too long to be ours are cut
 * (they still hash to a fixed, private name). */
static void hash_name(struct history *h, const char *tag, const char *a, const char *b, char out[HASH_HEX + 1])
{
	char id[600];
	int n = b ? snprintf(id, sizeof id, "%s\n%s\n%s", tag, a, b) : snprintf(id, sizeof id, "%s\n%s", tag, a);
	history_blob_name(h, id, n > 0 && (size_t)n < sizeof id ? (size_t)n : sizeof id - 1, out);
}

static void conv_dir(struct history *h, const char *conv_id, char out[3 + HASH_HEX + 1])
{
	char c[HASH_HEX + 1];
	hash_name(h, "kvconv", conv_id, NULL, c);
	snprintf(out, 3 + HASH_HEX + 1, "kv/%s", c);
}

static void snap_name(struct history *h, const char *conv_id, const char *model_id, char out[SNAP_NAME_MAX])
{
	char d[3 + HASH_HEX + 1], m[HASH_HEX + 1];
	conv_dir(h, conv_id, d);
	hash_name(h, "kvsnap", conv_id, model_id, m);
	snprintf(out, SNAP_NAME_MAX, "%s/%s.kv", d, m);
}

static bool is_hash(const char *s, size_t n)
{
	return n == HASH_HEX && strspn(s, "0123456789abcdef") == HASH_HEX;
}

/* A snapshot's file name: 64 hex digits and ".kv". */
static bool is_snap(const char *s)
{
	size_t l = strlen(s);
	return l == HASH_HEX + 3 && strcmp(s + HASH_HEX, ".kv") == 0 && is_hash(s, HASH_HEX);
}

struct snapfile {
	char name[SNAP_NAME_MAX];
	time_t mtime;
	off_t size;
};

struct scan {
	struct snapfile *f;
	size_t n, cap, total;
	bool oom;
};

static void scan_add(struct scan *s, const char *path, const char *name)
{
	struct stat st;
	if (s->oom || lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return;
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 32;
		struct snapfile *nf = realloc(s->f, nc * sizeof *nf);
		if (!nf) {
			s->oom = true;
			return;
		}
		s->f = nf;
		s->cap = nc;
	}
	snprintf(s->f[s->n].name, sizeof s->f[s->n].name, "%s", name);
	s->f[s->n].mtime = st.st_mtime;
	s->f[s->n].size = st.st_size;
	s->total += (size_t)st.st_size;
	s->n++;
}

/* Every snapshot under kv/: in conversation folders and loose. */
static void scan_all(struct history *h, struct scan *s)
{
	char dir[4096];
	if (snprintf(dir, sizeof dir, "%s/kv", history_dir(h)) >= (int)sizeof dir)
		return;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) && !s->oom) {
		char path[8192], name[SNAP_NAME_MAX];
		if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path)
			continue;
		if (is_snap(de->d_name)) {
			if (snprintf(name, sizeof name, "kv/%s", de->d_name) < (int)sizeof name)
				scan_add(s, path, name);
			continue;
		}
		if (!is_hash(de->d_name, strlen(de->d_name)))
			continue;
		DIR *sub = opendir(path);
		if (!sub)
			continue;
		struct dirent *se;
		while ((se = readdir(sub)) && !s->oom) {
			if (!is_snap(se->d_name))
				continue;
			char fpath[8300];
			if (snprintf(fpath, sizeof fpath, "%s/%s", path, se->d_name) < (int)sizeof fpath &&
			    snprintf(name, sizeof name, "kv/%s/%s", de->d_name, se->d_name) < (int)sizeof name)
				scan_add(s, fpath, name);
		}
		closedir(sub);
	}
	closedir(d);
}

static int by_age(const void *a, const void *b)
{
	const struct snapfile *x = a, *y = b;
	return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

/* Removes the folder of NAME ("kv/C/M.kv") if it is empty now. */
static void remove_empty_dir(struct history *h, const char *name)
{
	const char *slash = strrchr(name, '/');
	if (!slash || slash - name != 3 + HASH_HEX)
		return;
	char path[4096];
	if (snprintf(path, sizeof path, "%s/%.*s", history_dir(h), (int)(slash - name), name) < (int)sizeof path)
		rmdir(path); /* fails, as it should, while it holds anything */
}

static void evict(struct history *h, size_t budget)
{
	struct scan s = {0};
	scan_all(h, &s);
	if (s.n > 1)
		qsort(s.f, s.n, sizeof *s.f, by_age);
	char err[256];
	/* keep at least the newest snapshot, however large */
	for (size_t i = 0; i + 1 < s.n && s.total > budget; i++) {
		if (history_blob_remove(h, s.f[i].name, err, sizeof err) == 0) {
			s.total -= (size_t)s.f[i].size;
			remove_empty_dir(h, s.f[i].name);
		}
	}
	free(s.f);
}

int kvstore_save(struct history *h, const char *conv_id, const char *model_id, const void *blob,
		 size_t len, size_t budget, char *err, size_t errlen)
{
	char name[SNAP_NAME_MAX];
	snap_name(h, conv_id, model_id, name);
	int rc = history_blob_save(h, name, blob, len, err, errlen);
	if (rc == 0)
		evict(h, budget ? budget : KVSTORE_DEFAULT_BUDGET);
	return rc;
}

int kvstore_load(struct history *h, const char *conv_id, const char *model_id, void **blob,
		 size_t *len, char *err, size_t errlen)
{
	char name[SNAP_NAME_MAX];
	snap_name(h, conv_id, model_id, name);
	int rc = history_blob_load(h, name, blob, len, err, errlen);
	if (rc == HISTORY_E_CORRUPT) {
		char e2[256];
		history_blob_remove(h, name, e2, sizeof e2);
		return HISTORY_E_NOTFOUND;
	}
	return rc;
}

int kvstore_remove(struct history *h, const char *conv_id, const char *model_id, char *err, size_t errlen)
{
	char name[SNAP_NAME_MAX];
	snap_name(h, conv_id, model_id, name);
	int rc = history_blob_remove(h, name, err, errlen);
	if (rc == 0)
		remove_empty_dir(h, name);
	return rc;
}

int kvstore_remove_conv(struct history *h, const char *conv_id, char *err, size_t errlen)
{
	char rel[3 + HASH_HEX + 1], dir[4096];
	conv_dir(h, conv_id, rel);
	if (snprintf(dir, sizeof dir, "%s/%s", history_dir(h), rel) >= (int)sizeof dir) {
		snprintf(err, errlen, "data directory path too long");
		return HISTORY_E_INVAL;
	}
	DIR *d = opendir(dir);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return HISTORY_E_IO;
	}
	int removed = 0, rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char name[SNAP_NAME_MAX];
		if (is_snap(de->d_name)) {
			if (snprintf(name, sizeof name, "%s/%s", rel, de->d_name) >= (int)sizeof name)
				continue;
			int r = history_blob_remove(h, name, err, errlen);
			if (r == 0)
				removed++;
			else if (r != HISTORY_E_NOTFOUND)
				rc = r;
		} else if (de->d_name[0] == '.' && strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			/* a temporary left by a write that died (".M.kv.<hex>.tmp") */
			char path[8300];
			if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) < (int)sizeof path)
				unlink(path);
		}
	}
	closedir(d);
	if (rmdir(dir) != 0 && errno != ENOENT && rc == 0) {
		snprintf(err, errlen, "cannot remove %s: %s", dir, strerror(errno));
		rc = HISTORY_E_IO;
	}
	return rc < 0 ? rc : removed;
}
