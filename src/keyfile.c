/*
 * keyfile.c - wrapping and unwrapping the master key (see keyfile.h).
 *
 * The file is 120 bytes: a header (magic, version, KDF id, Argon2id
 * opslimit/memlimit, salt), a 24-byte nonce and the master key sealed with
 * XChaCha20-Poly1305 whose associated data is everything before it, so a
 * changed parameter fails authentication like a wrong passphrase does.
 * KDF parameters read from a file are bounded (HISTORY_KDF_MAX_*) before
 * use: a planted key file cannot make us allocate or spin without limit.
 * Derived keys live in sodium_malloc memory and are wiped before freeing.
 */
/* src/config.h shadows the autoconf config.h here; we need the GNU
 * extensions (OFD locks) whatever the build defines. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "keyfile.h"
#include "histio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#define KF_MAGIC "TTCHKEY1"
#define KF_VERSION 1
#define KF_KDF_NONE 0
#define KF_KDF_ARGON2ID13 1
#define KF_OFF_OPS 16
#define KF_OFF_MEM 24
#define KF_OFF_SALT 32
#define KF_OFF_NONCE 48
#define KF_OFF_BOX 72
#define KF_HDR KF_OFF_BOX /* associated data: bytes 0..71 */

_Static_assert(crypto_pwhash_SALTBYTES == 16, "salt size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == 24, "nonce size");
_Static_assert(KF_OFF_BOX + KEYFILE_KEYBYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES == KEYFILE_SIZE,
	       "key file size");

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

int keyfile_read(const char *path, unsigned char file[KEYFILE_SIZE], char *err, size_t errlen)
{
	int fd = histio_open_regular(path, O_RDONLY, 0);
	if (fd < 0) {
		if (errno == EINVAL) {
			snprintf(err, errlen, "key file %s is not a regular file; refused", path);
			return HISTORY_E_IO;
		}
		if (errno == ENOENT) {
			snprintf(err, errlen, "no key file at %s (no history yet)", path);
			return HISTORY_E_NOKEY;
		}
		snprintf(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
		return HISTORY_E_IO;
	}
	unsigned char extra;
	size_t got = 0;
	while (got < KEYFILE_SIZE) {
		ssize_t r = read(fd, file + got, KEYFILE_SIZE - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	ssize_t more = got == KEYFILE_SIZE ? read(fd, &extra, 1) : 0;
	close(fd);
	if (got != KEYFILE_SIZE || more != 0 || memcmp(file, KF_MAGIC, 8) != 0) {
		snprintf(err, errlen, "%s is not a ttychat key file", path);
		return HISTORY_E_CORRUPT;
	}
	if (file[8] != KF_VERSION) {
		snprintf(err, errlen, "%s: unsupported key file version %u", path, file[8]);
		return HISTORY_E_CORRUPT;
	}
	for (int i = 10; i < 16; i++)
		if (file[i]) {
			snprintf(err, errlen, "%s: damaged key file (reserved bytes)", path);
			return HISTORY_E_CORRUPT;
		}
	uint64_t ops = get64(file + KF_OFF_OPS), mem = get64(file + KF_OFF_MEM);
	if (file[9] == KF_KDF_NONE) {
		if (ops || mem) {
			snprintf(err, errlen, "%s: damaged key file (parameters)", path);
			return HISTORY_E_CORRUPT;
		}
	} else if (file[9] == KF_KDF_ARGON2ID13) {
		if (ops < crypto_pwhash_argon2id_OPSLIMIT_MIN || ops > HISTORY_KDF_MAX_OPSLIMIT ||
		    mem < crypto_pwhash_argon2id_MEMLIMIT_MIN || mem > HISTORY_KDF_MAX_MEMLIMIT) {
			snprintf(err, errlen,
				 "%s: Argon2id parameters out of bounds (opslimit %llu, memlimit %llu)", path,
				 (unsigned long long)ops, (unsigned long long)mem);
			return HISTORY_E_CORRUPT;
		}
	} else {
		snprintf(err, errlen, "%s: unknown key derivation %u", path, file[9]);
		return HISTORY_E_CORRUPT;
	}
	return HISTORY_OK;
}

int keyfile_has_passphrase(const unsigned char file[KEYFILE_SIZE])
{
	return file[9] != KF_KDF_NONE;
}

/* The wrapping key for FILE's header and PASS into WK (32 bytes). */
static int wrapping_key(const unsigned char *file, const char *pass, size_t len, unsigned char *wk,
			char *err, size_t errlen)
{
	if (file[9] == KF_KDF_NONE) {
		memset(wk, 0, KEYFILE_KEYBYTES);
		return HISTORY_OK;
	}
	if (crypto_pwhash(wk, KEYFILE_KEYBYTES, pass, len, file + KF_OFF_SALT, get64(file + KF_OFF_OPS),
			  (size_t)get64(file + KF_OFF_MEM), crypto_pwhash_ALG_ARGON2ID13) != 0) {
		snprintf(err, errlen, "key derivation failed (out of memory?)");
		return HISTORY_E_NOMEM;
	}
	return HISTORY_OK;
}

int keyfile_unlock(const unsigned char file[KEYFILE_SIZE], const char *pass, size_t len,
		   unsigned char *master, char *err, size_t errlen)
{
	unsigned char *wk = sodium_malloc(KEYFILE_KEYBYTES);
	if (!wk) {
		snprintf(err, errlen, "out of secure memory");
		return HISTORY_E_NOMEM;
	}
	int rc = wrapping_key(file, pass, len, wk, err, errlen);
	if (rc == HISTORY_OK &&
	    crypto_aead_xchacha20poly1305_ietf_decrypt(master, NULL, NULL, file + KF_OFF_BOX,
						       KEYFILE_SIZE - KF_OFF_BOX, file, KF_HDR,
						       file + KF_OFF_NONCE, wk) != 0) {
		sodium_memzero(master, KEYFILE_KEYBYTES);
		if (keyfile_has_passphrase(file))
			snprintf(err, errlen, "wrong passphrase (or a damaged key file)");
		else
			snprintf(err, errlen, "the key file is damaged");
		rc = keyfile_has_passphrase(file) ? HISTORY_E_PASSPHRASE : HISTORY_E_CORRUPT;
	}
	sodium_free(wk); /* wipes */
	return rc;
}

int keyfile_wrap(const unsigned char *master, const char *pass, size_t len, unsigned long long ops,
		 unsigned long long mem, unsigned char file[KEYFILE_SIZE], char *err, size_t errlen)
{
	memset(file, 0, KEYFILE_SIZE);
	memcpy(file, KF_MAGIC, 8);
	file[8] = KF_VERSION;
	if (len > 0) {
		if (ops < crypto_pwhash_argon2id_OPSLIMIT_MIN || ops > HISTORY_KDF_MAX_OPSLIMIT ||
		    mem < crypto_pwhash_argon2id_MEMLIMIT_MIN || mem > HISTORY_KDF_MAX_MEMLIMIT) {
			snprintf(err, errlen, "Argon2id parameters out of bounds");
			return HISTORY_E_INVAL;
		}
		file[9] = KF_KDF_ARGON2ID13;
		put64(file + KF_OFF_OPS, ops);
		put64(file + KF_OFF_MEM, mem);
		randombytes_buf(file + KF_OFF_SALT, crypto_pwhash_SALTBYTES);
	}
	randombytes_buf(file + KF_OFF_NONCE, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	unsigned char *wk = sodium_malloc(KEYFILE_KEYBYTES);
	if (!wk) {
		snprintf(err, errlen, "out of secure memory");
		return HISTORY_E_NOMEM;
	}
	int rc = wrapping_key(file, pass, len, wk, err, errlen);
	if (rc == HISTORY_OK)
		crypto_aead_xchacha20poly1305_ietf_encrypt(file + KF_OFF_BOX, NULL, master, KEYFILE_KEYBYTES,
							   file, KF_HDR, NULL, file + KF_OFF_NONCE, wk);
	sodium_free(wk);
	return rc;
}
