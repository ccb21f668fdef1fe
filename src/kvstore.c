/*
 * kvstore.c - see kvstore.h.  Eviction scans <data dir>/kv/ and removes the
 * files with the oldest modification time first; a snapshot is rewritten
 * whenever its conversation is left, so "oldest written" is "least recently
 * used" closely enough for a cache.
 */
#include "config.h"

#include "kvstore.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "history.h"

static void snap_name(struct history *h, const char *conv_id, const char *model_id, char out[96])
{
	char id[512], hex[65];
	int n = snprintf(id, sizeof id, "kvsnap\n%s\n%s", conv_id, model_id);
	history_blob_name(h, id, n > 0 && (size_t)n < sizeof id ? (size_t)n : sizeof id - 1, hex);
	snprintf(out, 96, "kv/%s.kv", hex);
}

struct snapfile {
	char name[96];
	time_t mtime;
	off_t size;
};

static int by_age(const void *a, const void *b)
{
	const struct snapfile *x = a, *y = b;
	return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

static void evict(struct history *h, size_t budget)
{
	char dir[4096];
	if (snprintf(dir, sizeof dir, "%s/kv", history_dir(h)) >= (int)sizeof dir)
		return;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct snapfile *f = NULL;
	size_t n = 0, cap = 0, total = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l < 4 || l > 80 || strcmp(de->d_name + l - 3, ".kv") != 0)
			continue;
		char path[8192];
		struct stat st;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		if (stat(path, &st) != 0)
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 32;
			struct snapfile *nf = realloc(f, nc * sizeof *nf);
			if (!nf)
				break;
			f = nf;
			cap = nc;
		}
		if (snprintf(f[n].name, sizeof f[n].name, "kv/%s", de->d_name) >= (int)sizeof f[n].name)
			continue;
		f[n].mtime = st.st_mtime;
		f[n].size = st.st_size;
		total += (size_t)st.st_size;
		n++;
	}
	closedir(d);
	qsort(f, n, sizeof *f, by_age);
	char err[256];
	/* keep at least the newest snapshot, however large */
	for (size_t i = 0; i + 1 < n && total > budget; i++) {
		if (history_blob_remove(h, f[i].name, err, sizeof err) == 0)
			total -= (size_t)f[i].size;
	}
	free(f);
}

int kvstore_save(struct history *h, const char *conv_id, const char *model_id, const void *blob,
		 size_t len, size_t budget, char *err, size_t errlen)
{
	char name[96];
	snap_name(h, conv_id, model_id, name);
	int rc = history_blob_save(h, name, blob, len, err, errlen);
	if (rc == 0)
		evict(h, budget ? budget : KVSTORE_DEFAULT_BUDGET);
	return rc;
}

int kvstore_load(struct history *h, const char *conv_id, const char *model_id, void **blob,
		 size_t *len, char *err, size_t errlen)
{
	char name[96];
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
	char name[96];
	snap_name(h, conv_id, model_id, name);
	return history_blob_remove(h, name, err, errlen);
}
