/*
 * test_history_fixture.c - writes a small history store for
 * test_history_cli.sh: `test_history_fixture DIR PASSFILE` creates the
 * store in DIR with the passphrase on the first line of PASSFILE (cheapest
 * Argon2id: test-only) and three conversations, and prints their IDs in
 * creation order.  The second one is renamed last, so it lists first.
 *
 * `test_history_fixture DIR PASSFILE rewind` adds, to that store, one
 * conversation written the way the TUI records /regen and /edit (the
 * example of docs/history-format.md, "Rewinds"), with a system note that
 * must not count, and KV snapshots for it under two models; it prints its
 * ID.  As it stands it reads: "Name a colour", "Green, second try",
 * "Name a tasty fruit", "Mango".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "history.h"
#include "kvstore.h"

static int pass_cb(void *ctx, enum history_pass_purpose why, char *buf, size_t cap)
{
	(void)why;
	FILE *f = fopen(ctx, "r");
	if (!f || !fgets(buf, (int)cap, f)) {
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

static void die(struct history *h, const char *what)
{
	fprintf(stderr, "test_history_fixture: %s: %s\n", what, h ? history_errmsg(h) : "");
	exit(99);
}

static struct history_conv *conv(struct history *h, const char *model, const char *sys, const char *const *msgs,
				 int n)
{
	struct history_meta m;
	history_meta_init(&m);
	m.model = model;
	m.system_prompt = sys;
	m.temperature = 0.5f;
	struct history_conv *c;
	if (history_conv_create(h, &m, &c) != HISTORY_OK)
		die(h, "create");
	for (int i = 0; i < n; i++)
		if (history_append(c, i % 2 ? HISTORY_ROLE_ASSISTANT : HISTORY_ROLE_USER, msgs[i], strlen(msgs[i]),
				   i == 3 ? HISTORY_MSG_CANCELLED : 0) != HISTORY_OK)
			die(h, "append");
	printf("%s\n", history_conv_id(c));
	return c;
}

static void add(struct history *h, struct history_conv *c, enum history_role role, const char *text, unsigned flags)
{
	if (history_append(c, role, text, strlen(text), flags) != HISTORY_OK)
		die(h, "append");
}

static void write_rewind(struct history *h)
{
	struct history_meta m;
	history_meta_init(&m);
	m.model = "fake";
	struct history_conv *c;
	if (history_conv_create(h, &m, &c) != HISTORY_OK)
		die(h, "create");
	add(h, c, HISTORY_ROLE_USER, "Name a colour", 0);
	add(h, c, HISTORY_ROLE_ASSISTANT, "Blue, first try", 0);
	add(h, c, HISTORY_ROLE_ASSISTANT, "Green, second try", HISTORY_MSG_REPLACES(1)); /* /regen */
	/* neither counted nor applied: a system note with a count of its own */
	add(h, c, HISTORY_ROLE_SYSTEM, "system note", HISTORY_MSG_REPLACES(3));
	add(h, c, HISTORY_ROLE_USER, "Name a fruit", 0);
	add(h, c, HISTORY_ROLE_ASSISTANT, "Apple", HISTORY_MSG_CANCELLED);
	add(h, c, HISTORY_ROLE_USER, "Name a tasty fruit", HISTORY_MSG_REPLACES(2)); /* /edit */
	add(h, c, HISTORY_ROLE_ASSISTANT, "Mango", 0);
	char err[256];
	if (kvstore_save(h, history_conv_id(c), "model-a", "kv-a", 4, 0, err, sizeof err) != 0 ||
	    kvstore_save(h, history_conv_id(c), "model-b", "kv-b", 4, 0, err, sizeof err) != 0) {
		fprintf(stderr, "test_history_fixture: %s\n", err);
		exit(99);
	}
	printf("%s\n", history_conv_id(c));
	history_conv_close(c);
}

int main(int argc, char **argv)
{
	bool rewind = argc == 4 && strcmp(argv[3], "rewind") == 0;
	if (argc != 3 && !rewind) {
		fprintf(stderr, "usage: test_history_fixture DIR PASSFILE [rewind]\n");
		return 2;
	}
	char err[512];
	struct history *h;
	struct history_opts o = {.dir = argv[1],
				 .flags = HISTORY_OPEN_CREATE,
				 .passphrase = pass_cb,
				 .pass_ctx = argv[2],
				 .test_kdf_opslimit = crypto_pwhash_argon2id_OPSLIMIT_MIN,
				 .test_kdf_memlimit = crypto_pwhash_argon2id_MEMLIMIT_MIN};
	if (history_open(&o, &h, err, sizeof err) != HISTORY_OK) {
		fprintf(stderr, "test_history_fixture: %s\n", err);
		return 99;
	}
	if (rewind) {
		write_rewind(h);
		history_close(h);
		return 0;
	}
	static const char *const a[] = {"What is the capital of France?", "Paris."};
	static const char *const b[] = {"Explain quicksort", "Pick a pivot, partition, recurse on both sides.",
					"thanks", "You're welc"};
	static const char *const c3[] = {"colour test \x1b[31mred\x1b[0m and a bell \x07", "noted"};
	history_conv_close(conv(h, "smollm2", "be brief", a, 2));
	struct history_conv *second = conv(h, "/models/gemma-3-270m-it-Q4_K_M.gguf", NULL, b, 4);
	history_conv_close(conv(h, "smollm2", NULL, c3, 2));
	usleep(5000); /* the rename is the latest write by a clear margin (times are in ms) */
	if (history_rename(second, "Sorting") != HISTORY_OK)
		die(h, "rename");
	history_conv_close(second);
	history_close(h);
	return 0;
}
