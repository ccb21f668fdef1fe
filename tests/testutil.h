/*
 * testutil.h - tiny helpers shared by the C tests: checks that count
 * failures instead of aborting, the closing "N passed, N failed" line, and
 * locating the real models and shared test data (exit 77 = skip when
 * absent).
 */
#ifndef TTYCHAT_TESTUTIL_H
#define TTYCHAT_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int tu_pass, tu_fail;

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (cond) {                                               \
			tu_pass++;                                        \
		} else {                                                  \
			tu_fail++;                                        \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                     \
			fputc('\n', stderr);                              \
		}                                                         \
	} while (0)

static inline int tu_finish(void)
{
	printf("%d passed, %d failed\n", tu_pass, tu_fail);
	return tu_fail ? 1 : 0;
}

/* Path of a real model file in $TTYCHAT_MODELS_DIR (or the XDG default);
 * NULL when absent. */
static inline const char *tu_model(const char *file, char *buf, size_t n)
{
	const char *dir = getenv("TTYCHAT_MODELS_DIR");
	char def[4096];
	if (!dir || !dir[0]) {
		const char *home = getenv("HOME");
		snprintf(def, sizeof def, "%s/.local/share/ttychat/models", home ? home : "/nonexistent");
		dir = def;
	}
	if (snprintf(buf, n, "%s/%s", dir, file) >= (int)n)
		return NULL;
	struct stat st;
	return stat(buf, &st) == 0 ? buf : NULL;
}

static inline void tu_skip(const char *why)
{
	printf("SKIP: %s\n", why);
	exit(77);
}

#define SMOLLM2_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"
#define GEMMA3_FILE "gemma-3-270m-it-Q4_K_M.gguf"

#endif
