/*
 * kvstore.h - KV cache snapshots on disk, encrypted, so a conversation comes
 * back after a restart without being recomputed.
 *
 * The engine produces and consumes snapshots as plain blobs
 * (engine_conv_export / engine_conv_import); this module files them through
 * the history store's encrypted blobs under <data dir>/kv/:
 *
 *   kv/<C>/<M>.kv   C = history_blob_name("kvconv\n" conv_id),
 *                   M = history_blob_name("kvsnap\n" conv_id "\n" model_id)
 *
 * one folder per conversation, one file per model it was held with, so
 * that every snapshot of a conversation can be found (and removed with
 * it) while the names on disk reveal neither the conversation nor the
 * model.  A size budget evicts the least recently written snapshots.
 * Snapshots of an earlier layout (kv/<hash>.kv, no folder) are never
 * loaded; they count against the budget and are evicted first by age.
 *
 * Everything here runs on the UI thread; it never prints.  Functions
 * return 0 or a negative HISTORY_E_* code with a message in err.
 */
#ifndef TTYCHAT_KVSTORE_H
#define TTYCHAT_KVSTORE_H

#include <stddef.h>

struct history;

/* Default budget for all snapshots together. */
#define KVSTORE_DEFAULT_BUDGET ((size_t)2 << 30)

/* Saves BLOB for (conv_id, model_id), then removes the oldest snapshots
 * until their total size is within budget (0 = the default). */
int kvstore_save(struct history *h, const char *conv_id, const char *model_id, const void *blob,
		 size_t len, size_t budget, char *err, size_t errlen);
/* Loads the snapshot for (conv_id, model_id) into *blob (malloc'd).
 * HISTORY_E_NOTFOUND when there is none; a damaged one is removed and
 * reported as HISTORY_E_NOTFOUND too (it is only a cache). */
int kvstore_load(struct history *h, const char *conv_id, const char *model_id, void **blob,
		 size_t *len, char *err, size_t errlen);
/* Removes the snapshot of (conv_id, model_id) if any (HISTORY_E_NOTFOUND
 * when there was none). */
int kvstore_remove(struct history *h, const char *conv_id, const char *model_id, char *err, size_t errlen);
/* Removes every snapshot of conversation CONV_ID (its full ID), whatever
 * the model, and its folder: the number of snapshots removed (0 when it
 * had none), or a negative HISTORY_E_* code when one could not be removed
 * (the others are removed all the same). */
int kvstore_remove_conv(struct history *h, const char *conv_id, char *err, size_t errlen);

#endif
