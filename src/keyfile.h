/*
 * keyfile.h - the key file: a random 32-byte master key wrapped with
 * XChaCha20-Poly1305 under a key derived from the passphrase (Argon2id) or,
 * when the user chose no passphrase, under a fixed all-zero key (the file
 * alone then protects the data, like an SSH key without a passphrase).
 * Internal to the history store; the format is in docs/history-format.md.
 *
 * Functions return 0 or a negative HISTORY_E_* code with a message in ERR.
 * MASTER buffers are KEYFILE_KEYBYTES long and belong to the caller (who
 * keeps them in sodium_malloc memory).
 */
#ifndef TTYCHAT_KEYFILE_H
#define TTYCHAT_KEYFILE_H

#include <stddef.h>

#include "history.h"

#define KEYFILE_SIZE 120
#define KEYFILE_KEYBYTES 32

/* Reads the key file at PATH into FILE and checks its header (magic,
 * version, KDF parameters within bounds).  HISTORY_E_NOKEY when absent. */
int keyfile_read(const char *path, unsigned char file[KEYFILE_SIZE], char *err, size_t errlen);
/* 1 if FILE (already checked by keyfile_read) needs a passphrase. */
int keyfile_has_passphrase(const unsigned char file[KEYFILE_SIZE]);
/* Unwraps the master key.  HISTORY_E_PASSPHRASE when PASS is wrong (or
 * the file was altered). */
int keyfile_unlock(const unsigned char file[KEYFILE_SIZE], const char *pass, size_t len,
		   unsigned char *master, char *err, size_t errlen);
/* Wraps MASTER into FILE: with PASS (LEN > 0) using Argon2id at OPS/MEM,
 * or without a passphrase when LEN is 0. */
int keyfile_wrap(const unsigned char *master, const char *pass, size_t len, unsigned long long ops,
		 unsigned long long mem, unsigned char file[KEYFILE_SIZE], char *err, size_t errlen);

#endif
