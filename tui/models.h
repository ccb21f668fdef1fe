/*
 * models.h - what the model picker lists, and whether each model fits.
 *
 * The list is the catalogue of catalog.h (every models.d entry, first name
 * wins, and every *.gguf file in the models directory that no entry points
 * at).  Remote entries are listed as they are (no file to read).  For each
 * file present, the
 * GGUF header gives architecture, parameter count and quant mix, and the
 * memory needed at the context the model would load with is estimated as
 * weights (file size) + KV cache (f16 K and V for every layer) + a small
 * scratch allowance, against MemAvailable from /proc/meminfo.
 *
 * The last model loaded is remembered in $XDG_STATE_HOME/ttychat/last-model
 * (a name or a path, nothing from a conversation; 0600 in a 0700 dir).
 *
 * UI thread; every function returns 0 or -1 with a message in err, and the
 * caller owns what it gets.
 */
#ifndef TTYCHAT_TUI_MODELS_H
#define TTYCHAT_TUI_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum models_fit { FIT_UNKNOWN, FIT_YES, FIT_TIGHT, FIT_NO };

struct model_item {
	char name[128];            /* models.d name, or the file name */
	char display[256];
	char path[4096];
	bool from_models_d;
	bool present;              /* the file exists and its header parsed (remote: true) */
	bool remote;               /* an OpenAI-compatible server: path is the engine's
				      "remote:{...}" spec, arch "remote", nothing probed,
				      fit unknown, note "remote: URL (model NAME)" */
	char note[768];            /* why not present / not readable; where a remote one runs */
	char arch[32];
	char quant[48];            /* e.g. "Q4_K 71% Q6_K 22%" */
	uint64_t n_params;
	uint64_t file_bytes;
	uint32_t n_ctx;            /* the context it would load with */
	uint64_t kv_bytes;         /* f16 KV cache at n_ctx */
	uint64_t need_bytes;       /* file + KV + scratch (with the draft model's, when one is set) */
	uint64_t draft_bytes;      /* of need_bytes, the draft model's weights and KV (0: none) */
	enum models_fit fit;
};

struct model_list {
	struct model_item *v;
	size_t n;
};

/* Builds the list.  CTX_OVERRIDE > 0 is the -c flag (else a models.d
 * context_size capped at 4096, else min(training context, 4096));
 * MEM_AVAIL is the memory to compare with (0: unknown). */
int models_scan(struct model_list *out, uint32_t ctx_override, uint64_t mem_avail, char *err, size_t errlen);
void models_free(struct model_list *l);

/* Reads one GGUF's facts into IT (path set by the caller), with the
 * context it would load with and the KV cache that takes, decided as the
 * chat decides them (session_context() of src/session.h: the flags F, its
 * models.d entry ME and settings.json PREFS, each may be NULL but F). */
struct session_flags;
struct model_entry;
struct config_settings;
int models_probe(struct model_item *it, const struct session_flags *f, const struct model_entry *me,
		 const struct config_settings *prefs, char *err, size_t errlen);

/* fits: need <= 80% of available; tight: <= available; else no. */
enum models_fit models_fit(uint64_t need, uint64_t avail);
const char *models_fit_str(enum models_fit f);

/* MemAvailable in bytes (0 when unknown). */
uint64_t models_mem_available(void);

/* "1.2 GiB", "86.0 MiB", "512 KiB" */
void models_fmt_bytes(uint64_t b, char *buf, size_t n);
/* "135M", "1.2B" */
void models_fmt_params(uint64_t p, char *buf, size_t n);

/* The remembered model name/path (buf empty when none), and remembering. */
int models_last_read(char *buf, size_t n);
int models_last_write(const char *spec, char *err, size_t errlen);

#endif
