/*
 * history_impl.h - the store handle, shared by history.c (conversations)
 * and history_blob.c (encrypted blobs).  Internal: nothing outside
 * src/history*.c includes it.
 */
#ifndef TTYCHAT_HISTORY_IMPL_H
#define TTYCHAT_HISTORY_IMPL_H

#include <limits.h>

#include "history.h"

#define HK_BYTES 32
/* Sub-keys derived from the master key with crypto_kdf (context
 * "ttychat1"); the index is the subkey id.  Index 0 is the master key. */
enum { HK_MASTER = 0, HK_RECORD = 1, HK_SLOT = 2, HK_BLOB = 3, HK_NAME = 4, HK_COUNT = 5 };
#define HK_ID_KEYID 5 /* subkey id of the 16-byte key id (not secret) */
#define HK_CONTEXT "ttychat1"

struct history {
	char dir[PATH_MAX];  /* data directory */
	char hdir[PATH_MAX]; /* DIR/history */
	char keypath[PATH_MAX];
	struct history_io io;
	unsigned char *keys; /* sodium_malloc'd, HK_COUNT * HK_BYTES, read-only after open */
	unsigned char key_id[16];
	int has_pass;
	unsigned long long kdf_ops, kdf_mem;
	char err[512];
};

static inline const unsigned char *history_key(const struct history *h, int which)
{
	return h->keys + (size_t)which * HK_BYTES;
}

#endif
