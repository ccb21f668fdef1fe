/*
 * session.h - what a model is loaded and sampled with, decided one way for
 * every front end: the full-screen chat, one-shot mode, `serve` and `bench`.
 *
 * Six sources can set a setting.  The first that sets it wins:
 *
 *   1. the command line (and, in the full-screen chat, what /set changed);
 *   2. the saved conversation being continued (its META record:
 *      chats_settings of src/chats.h);
 *   3. the model's models.d entry (struct model_entry of src/catalog.h);
 *   4. settings.json (struct config_settings of src/catalog.h);
 *   5. the model file's own advice: its general.sampling.* keys (temp,
 *      top_k, top_p, min_p, penalty_repeat, penalty_last_n, as llama.cpp
 *      reads them), struct session_file below;
 *   6. the built-in defaults (engine_sampling_default(), f16 KV cache,
 *      device auto, all cores, the engine's context).
 * The file's advice comes after settings.json because both are defaults
 * and settings.json is the user's: a temperature the user set there
 * holds for every model.
 *
 * Not every source has every setting:
 *
 *   setting        flags  conversation  models.d  settings.json  file  default
 *   model            x         x           -           x          -    smollm2
 *   sampling (5)     x         x           x           x          x    engine's
 *   penalty window   -         -           -           -          x    engine's
 *   system prompt    x         x           x           x          -    none
 *   context          x         x           x (*)       x          -    engine's
 *   kv_type          x         -           x           x          -    f16
 *   (K, V, rotation: cache_type_k/_v beat kv_type within a source)
 *   device           x         -           x           x          -    auto
 *   gpu_layers       x         -           x           x          -    auto
 *   threads          x         -           x           x          -    all cores
 *   template         -         -           x           -          -    the file's
 *
 * (*) a local model's models.d context_size is the most it is loaded with
 * by default: min(context_size, settings.json's context_size or 4096).  A
 * remote entry's context_size is the server's and is taken as it is.  A
 * conversation's context is the one it was held with, so that its KV
 * cache snapshot fits.
 * --raw leaves the models.d and settings.json system prompts out (a flag
 * or a conversation's own still counts).  A conversation's system prompt
 * is taken even when empty: it was held without one.
 *
 * The model itself is chosen before its entry can be read:
 * session_pick_model() (flags > conversation > the model used last, when
 * the front end remembers one > settings.json > default); the caller
 * resolves the spec with config_resolve_model() and then calls
 * session_resolve() with the entry.
 *
 * Pure functions of their arguments (but session_file_read(), which reads
 * a GGUF header, and session_decide(), which reads settings.json and
 * models.d too): no globals; any thread.
 */
#ifndef TTYCHAT_SESSION_H
#define TTYCHAT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "engine.h"

struct chats_settings;   /* src/chats.h */

/* Sampling fields a source may set (flags.set). */
enum {
	SESSION_SET_TEMP = 1 << 0,
	SESSION_SET_TOPK = 1 << 1,
	SESSION_SET_TOPP = 1 << 2,
	SESSION_SET_MINP = 1 << 3,
	SESSION_SET_REP = 1 << 4,
};

/* What the command line said.  Unset: NULL, 0, or the value named. */
struct session_flags {
	const char *model;               /* -m (or the remote: spec --remote made) */
	const char *system;              /* --system's text ("" = none on purpose) */
	bool raw;                        /* --raw: no configured system prompt */
	struct engine_sampling sampling; /* the fields marked in SET */
	unsigned set;                    /* SESSION_SET_* */
	uint32_t n_ctx;                  /* -c */
	int n_threads;                   /* -t */
	int kv_type;                     /* --kv-type: -1, else an enum engine_kv_type */
	int cache_k, cache_v;            /* --cache-type-k/-v (beat --kv-type): -1 or a type */
	int kv_rotation;                 /* --kv-rotation: -1, 0 off, 1 on */
	int device;                      /* -1, else an enum engine_device */
	int gpu_layers;                  /* -2, else as --gpu-layers: -1 auto, 0 none, N */
	const char *draft;               /* --draft: a draft model's path or models.d name */
	int spec;                        /* -1, else an enum engine_spec (--spec) */
	int draft_max;                   /* --draft-max; 0 not given */
};
void session_flags_init(struct session_flags *f);
/* The KV cache types (enum engine_kv_type) of K and V the flags, models.d
 * entry ME and settings PREFS give (either may be NULL), as
 * session_resolve() decides them. */
void session_kv_types(const struct session_flags *f, const struct model_entry *me,
		      const struct config_settings *prefs, int *type_k, int *type_v);

/* Where a setting came from. */
enum session_source {
	SESSION_DEFAULT = 0,
	SESSION_FILE,                    /* the model file's general.sampling.* */
	SESSION_SETTINGS,                /* settings.json */
	SESSION_ENTRY,                   /* models.d */
	SESSION_CONV,                    /* the saved conversation */
	SESSION_FLAG,
};
const char *session_source_name(enum session_source s);

enum session_field {
	SESSION_F_TEMP, SESSION_F_TOPK, SESSION_F_TOPP, SESSION_F_MINP, SESSION_F_REP,
	SESSION_F_SYSTEM, SESSION_F_CTX, SESSION_F_KV, SESSION_F_DEVICE, SESSION_F_GPU_LAYERS,
	SESSION_F_THREADS, SESSION_F_COUNT
};

/* The sampling a model file advises (general.sampling.*); negative =
 * not given. */
struct session_file {
	float temperature, top_p, min_p, repeat_penalty;
	int top_k;
	int penalty_last_n;
};
void session_file_init(struct session_file *s);
/* Reads the advice from the GGUF header of PATH (a model file; a remote
 * spec or a file that cannot be read leaves all unset; values out of
 * range are left out).  Returns how many it found. */
int session_file_read(const char *path, struct session_file *s);

/* The decision: what to load the model with and how to sample. */
struct session_config {
	struct engine_load_opts load;    /* template_override points at TEMPLATE */
	int n_threads;                   /* engine_params.n_threads; 0 all cores */
	struct engine_sampling sampling; /* seed: the flags' (the caller seeds) */
	char *system;                    /* malloc'd; NULL = no system prompt */
	char *template_text;             /* malloc'd models.d override or NULL */
	enum session_source from[SESSION_F_COUNT];
	/* speculative decoding: the draft model as named (flag, else the
	 * models.d entry's "draft"; malloc'd or NULL), its file once
	 * session_resolve_draft() found it (load.draft points at it), the
	 * mode and the cap on guesses per pass (flag, else entry, else AUTO
	 * and 0) */
	char *draft_spec;
	char draft_path[4096];
	enum engine_spec spec;
	int draft_max;
};

/* The model spec to load, written into SPEC (N bytes): FLAGS->model, else
 * the conversation's (HELD may be NULL), else LAST (the model used last;
 * NULL or "" when none), else settings.json's (PREFS may be NULL), else
 * config_default_model().  *FROM (may be NULL) says which; LAST counts as
 * SESSION_SETTINGS.  Returns -1 when the spec does not fit N. */
int session_pick_model(const struct session_flags *f, const struct chats_settings *held, const char *last,
		       const struct config_settings *prefs, char *spec, size_t n, enum session_source *from);

/* Decides OUT from the sources (any but F may be NULL).  0, or -1 when out
 * of memory (OUT is then empty).  Free OUT with session_config_free(). */
int session_resolve(const struct session_flags *f, const struct chats_settings *held,
		    const struct model_entry *me, const struct config_settings *prefs,
		    const struct session_file *file, struct session_config *out);
/* The sampling fields whose value came from SRC, as SESSION_SET_* bits
 * (bit k is field k of enum session_field). */
unsigned session_fields_of(const struct session_config *c, enum session_source src);
/* BITS as "temp, top-k" in BUF of N bytes ("" when none). */
void session_fields_str(unsigned bits, char *buf, size_t n);
void session_config_free(struct session_config *c);
/* Finds the file of C's draft_spec (a path or a models.d name) and points
 * c->load.draft at it; nothing to do without one.  0, or -1 with a line
 * in ERR ("draft model: ..."). */
int session_resolve_draft(struct session_config *c, char *err, size_t errlen);

/* What session_decide() read and decided. */
struct session_decision {
	char spec[4096];                 /* the model as picked: a models.d name, a path or remote: */
	struct config_settings prefs;    /* settings.json (empty when none or unreadable) */
	struct model_entry me;           /* the model's entry, when have_me */
	bool have_me;
	struct session_config cfg;       /* valid when session_decide() returned 0 */
};

enum session_decide_status {
	SESSION_DECIDED = 0,
	SESSION_E_SETTINGS,              /* settings.json is bad */
	SESSION_E_NAME,                  /* the model spec does not fit */
	SESSION_E_MODEL,                 /* config_resolve_model() failed */
	SESSION_E_NOMEM,
};

/* The whole decision as a command-line front end makes it: settings.json
 * read, the model picked (session_pick_model() with no model used last)
 * and resolved, its file's sampling advice read, then session_resolve().
 * HELD may be NULL.  Returns an enum session_decide_status, with the
 * message in ERR when not SESSION_DECIDED; D holds what was read so far
 * either way (d->prefs.d.warnings, d->me.warnings) and is freed with
 * session_decision_free(). */
int session_decide(const struct session_flags *f, const struct chats_settings *held, struct session_decision *d,
		   char *err, size_t errlen);
void session_decision_free(struct session_decision *d);
/* session_decide() for a command that needs a local model file (bench,
 * perplexity): 0, or the process exit status (commands.h) with the message
 * in ERR; a remote model is refused with WHAT ("the benchmark") named. */
int session_decide_local(const struct session_flags *f, struct session_decision *d, const char *what,
			 char *err, size_t errlen);

/* The context session_resolve() loads a model with when no conversation
 * holds one, as the model picker shows it before loading: the engine's
 * default (min(training context, 4096)) made explicit from N_CTX_TRAIN (0
 * when unknown: 4096); 0 for a remote model the server decides. */
uint32_t session_context(const struct session_flags *f, const struct model_entry *me,
			 const struct config_settings *prefs, uint32_t n_ctx_train);

#endif
