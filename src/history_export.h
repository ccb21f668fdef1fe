/*
 * history_export.h - a conversation as Markdown or JSON (for `ttychat
 * history export` and the TUI).  The output is plaintext by nature: it goes
 * where the caller sends it, never to a file the library chooses.
 *
 * The conversation is written as it stands (the rewinds of /regen and
 * /edit applied, history.h), or with HISTORY_EXPORT_ALL every version,
 * the replaced ones marked ("(replaced)" after the Markdown heading,
 * "replaced": true in JSON).
 *
 * JSON: {"id", "title", "model", "system_prompt" (or null), "created_ms",
 * "updated_ms", "created", "updated" (ISO 8601 UTC), "sampling": {only the
 * settings that were set}, "messages": [{"role", "text", "time_ms",
 * "time", "cancelled", "replaced"}]}.  In both formats, text that is not
 * valid UTF-8 (and NUL bytes) is replaced with U+FFFD, so JSON output
 * always parses.
 */
#ifndef TTYCHAT_HISTORY_EXPORT_H
#define TTYCHAT_HISTORY_EXPORT_H

#include <stdio.h>

#include "history.h"

enum history_export_format { HISTORY_EXPORT_MD, HISTORY_EXPORT_JSON };

#define HISTORY_EXPORT_ALL 1u /* every version, replaced ones marked */

/* Writes C to OUT as it stands.  0, or -1 with errno set (write error,
 * ENOMEM). */
int history_export(const struct history_conv *c, enum history_export_format f, FILE *out);
/* The same with HISTORY_EXPORT_* FLAGS. */
int history_export_with(const struct history_conv *c, enum history_export_format f, unsigned flags, FILE *out);

/* A malloc'd copy of S (N bytes) with invalid UTF-8 and NULs replaced by
 * U+FFFD; NULL when out of memory. */
char *history_utf8_clean(const char *s, size_t n);

/* Formats a Unix time in milliseconds as "YYYY-MM-DDTHH:MM:SSZ" (UTC) or,
 * with LOCAL set, "YYYY-MM-DD HH:MM" in local time.  BUF holds 32 bytes. */
void history_format_time(int64_t ms, int local, char buf[32]);

#endif
