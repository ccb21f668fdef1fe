/*
 * fuzz_replay.c - runs a libFuzzer target's regression corpus without
 * libFuzzer, so that `make check` replays every saved input (seeds and
 * every crash ever found) through the target built by the ordinary
 * compiler, under the sanitizers when configured with them.
 *
 * Usage: fuzz_replay_TARGET FILE|DIR...  Each file is read whole and passed
 * to LLVMFuzzerTestOneInput(); a crash is the failure.  Without
 * arguments, TTYCHAT_SRCDIR/tests/fuzz/TARGET is replayed (FUZZ_TARGET is
 * defined at compile time).
 */
#include "config.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	size_t cap = 4096, n = 0;
	uint8_t *buf = malloc(cap);
	size_t r;
	while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			uint8_t *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	fclose(f);
	if (!buf) {
		fprintf(stderr, "%s: out of memory\n", path);
		return 1;
	}
	/* an exact-size copy, so that ASan sees a read past the input */
	uint8_t *exact = malloc(n ? n : 1);
	if (!exact) {
		free(buf);
		return 1;
	}
	memcpy(exact, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 0;
}

static int replay(const char *path, int *count)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		perror(path);
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return replay_file(path);
	}
	DIR *d = opendir(path);
	if (!d) {
		perror(path);
		return 1;
	}
	int bad = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[4096];
		if (snprintf(p, sizeof p, "%s/%s", path, e->d_name) < (int)sizeof p)
			bad |= replay(p, count);
	}
	closedir(d);
	return bad;
}

int main(int argc, char **argv)
{
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	int bad = 0, count = 0;
	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			bad |= replay(argv[i], &count);
	} else {
		const char *src = getenv("TTYCHAT_SRCDIR");
		char p[4096];
		snprintf(p, sizeof p, "%s/tests/fuzz/%s", src ? src : ".", FUZZ_TARGET);
		bad |= replay(p, &count);
	}
	printf("%d inputs replayed through %s\n", count, FUZZ_TARGET);
	if (count == 0)
		return 77;
	return bad;
}
