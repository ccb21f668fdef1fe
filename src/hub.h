/*
 * hub.h - models from a Hugging Face hub: the "ORG/REPO:QUANT" names,
 * the repository's file listing, which GGUF file a quant names, the
 * access token, and the models.d entry that `ttychat pull` leaves behind.
 *
 * A reference is "hf:ORG/REPO[:QUANT]", "hf.co/ORG/REPO[:QUANT]",
 * "huggingface.co/ORG/REPO[:QUANT]" or "ORG/REPO:QUANT" (the forms of
 * llama.cpp's -hf and Ollama's hf.co/).  Its models.d name is
 * "ORG--REPO--QUANT" ("ORG--REPO" without a quant; the quant upper-cased):
 * models.d names allow no '/' or ':', and the Hub allows no "--" in
 * ORG or REPO, so the mapping is one to one.  config_resolve_model()
 * maps a reference the same way, so `ttychat -m ORG/REPO:QUANT` finds
 * the entry.
 *
 * The endpoint is $HF_ENDPOINT (default https://huggingface.co); the
 * listing is GET {endpoint}/api/models/ORG/REPO/tree/main?recursive=true
 * (pages followed through Link rel="next" on the same origin), a file is
 * GET {endpoint}/ORG/REPO/resolve/main/PATH.
 *
 * Library code: statuses and a one-line message in ERR; no printing, no
 * exit.  No globals; call from one thread at a time (libcurl, pull.h).
 */
#ifndef TTYCHAT_HUB_H
#define TTYCHAT_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum hub_status {
	HUB_OK = 0,
	HUB_E_NET = -1,      /* the hub cannot be reached (offline, refused, timeout) */
	HUB_E_AUTH = -2,     /* 401/403: gated or private (ERR says whether a token was sent) */
	HUB_E_NOTFOUND = -3, /* 404: no such repository */
	HUB_E_HTTP = -4,     /* another error status */
	HUB_E_REPLY = -5,    /* the listing is not what the Hub API answers */
	HUB_E_NOGGUF = -6,   /* the repository has no GGUF model file (ERR lists what it has) */
	HUB_E_NOQUANT = -7,  /* no file can be told to be that quant (ERR lists the quants) */
	HUB_E_INVAL = -8,    /* a bad reference, endpoint or path */
	HUB_E_TOKEN = -9,    /* a token file that is unsafe or unreadable */
	HUB_E_IO = -10,      /* local file error, out of memory */
};

#define HUB_ID_MAX 96    /* the Hub's limit for ORG and REPO */
#define HUB_MAX_PARTS 256

struct hub_ref {
	char org[HUB_ID_MAX + 1];
	char repo[HUB_ID_MAX + 1];
	char quant[48];      /* as given, "" when none */
};

/* True when SPEC is a reference (see above) and fills R.  Without a
 * prefix SPEC needs a quant unless BARE_OK (for `ttychat pull`, where a
 * name with a '/' can mean nothing else; for -m, "dir/file" is a path). */
bool hub_ref_parse(const char *spec, bool bare_ok, struct hub_ref *r);
/* The models.d name "ORG--REPO[--QUANT]"; -1 when longer than the 100
 * characters a name may have, or N is too small. */
int hub_ref_name(const struct hub_ref *r, char *buf, size_t n);

/* $HF_ENDPOINT without a trailing '/', or https://huggingface.co.
 * HUB_E_INVAL when it is not a plain http:// or https:// address. */
int hub_endpoint(char *buf, size_t n, char *err, size_t errlen);

/* The access token: $HF_TOKEN, else the file $HF_TOKEN_FILE, else
 * $XDG_CONFIG_HOME/ttychat/hf-token when it exists.  A file must be a
 * regular file of this user that no one else may read (0600 or 0400),
 * its first line the token.  *TOKEN is sodium_malloc'd (hub_token_free()
 * wipes it), or NULL when there is none; FROM names where it came from.
 * HUB_OK, or HUB_E_TOKEN with ERR (never the token itself). */
int hub_token_load(char **token, char *from, size_t fromlen, char *err, size_t errlen);
void hub_token_free(char *token);

struct hub_file {
	char path[512];      /* in the repository: checked sane components */
	uint64_t size;
	char sha256[65];     /* from the LFS metadata, lowercase; "" when not in LFS */
};

struct hub_listing {
	struct hub_file *v;
	size_t n;
};

/* Lists the files of R's main branch.  TOKEN may be NULL.  HUB_OK, or a
 * status with a one-line ERR (HUB_E_AUTH says to set HF_TOKEN when no
 * token was sent). */
int hub_list(const char *endpoint, const struct hub_ref *r, const char *token, struct hub_listing *out, char *err,
	     size_t errlen);
void hub_listing_free(struct hub_listing *l);

/* The GGUF file for QUANT ("" = the default, Q4_K_M): the file whose name
 * carries that quant (case-insensitive), else the closest by bits per
 * weight; every part of a split file (NAME-00001-of-000NN.gguf), in
 * order.  Projector files (mmproj*) are never picked. */
struct hub_pick {
	size_t part[HUB_MAX_PARTS]; /* indexes into the listing */
	unsigned nparts;
	uint64_t bytes;             /* all parts */
	char quant[48];             /* the picked file's quant, "" when its name has none */
	bool exact;                 /* the quant asked for (or the default) itself */
	char why[1000];             /* one line: what was picked and why */
};
/* HUB_OK; HUB_E_NOGGUF (ERR lists some of the files there are),
 * HUB_E_NOQUANT, or HUB_E_REPLY for a split file with parts missing. */
int hub_pick_file(const struct hub_listing *l, const char *quant, struct hub_pick *p, char *err, size_t errlen);

/* The URL of a file of R. */
int hub_file_url(const char *endpoint, const struct hub_ref *r, const char *path, char *buf, size_t n);

/* Writes (or updates) the user's models.d entry NAME.json
 * ($XDG_CONFIG_HOME/ttychat/models.d, 0600 through a temporary file and
 * rename): "name", "display_name", "file" (FILE, absolute), "quant",
 * "size", "sha256" and "url" when given, and "source".  Keys of an
 * existing entry of that name that these do not set (context_size,
 * sampling, system_prompt ...) are kept.  PATH receives the file's path.
 * HUB_OK or HUB_E_IO. */
struct hub_entry {
	const char *name, *display_name, *file, *quant, *sha256, *url, *source;
	uint64_t size;
};
int hub_write_entry(const struct hub_entry *e, char *path, size_t pathlen, char *err, size_t errlen);

#endif
