/*
 * catalog.h - where ttychat's files live, the models.d catalogue, and how a
 * model name is resolved.
 *
 * Paths follow XDG: config in $XDG_CONFIG_HOME/ttychat (default
 * ~/.config/ttychat), data in $XDG_DATA_HOME/ttychat (default
 * ~/.local/share/ttychat).  models.d folders are searched in this order
 * (the first entry of a name wins):
 *   1. the user's  $XDG_CONFIG_HOME/ttychat/models.d
 *   2. the system's TTYCHAT_DATADIR/models.d (installed with ttychat)
 *   3. a models.d beside the binary or in its parent directory (a build tree)
 * A model SPEC is resolved as:
 *   0. "remote:{...}": a remote model spec (engine.h), taken as it is;
 *      "ORG/REPO:QUANT" or "hf:ORG/REPO[:QUANT]" that is not a file: the
 *      entry `ttychat pull` wrote for it (hub.h names it ORG--REPO--QUANT);
 *   1. an existing file path (or anything with a '/');
 *   2. a models.d entry whose "name" is SPEC (NAME.json first, then any
 *      other *.json of that folder, folder by folder);
 *   3. a file of that name in the models directory ($TTYCHAT_MODELS_DIR,
 *      else $XDG_DATA_HOME/ttychat/models).
 *
 * A models.d file is one JSON object (ttychat(1), section MODELS.D, lists
 * the keys).  It is treated as hostile: every key is type- and
 * range-checked; an error names the file and the key ("FILE: key
 * 'sampling.top_k': ..."); unknown keys are not errors but are reported in
 * the entry's warnings.
 *
 * Library code: functions return 0 or -1 with a one-line message in ERR,
 * never print and never exit.  No globals; the caller owns every returned
 * buffer and frees entries with config_entry_free().  Any thread may call
 * these functions (they only read the environment and files).
 */
#ifndef TTYCHAT_CATALOG_H
#define TTYCHAT_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct model_entry {
	char name[128];
	char display_name[256];
	char path[4096];           /* resolved file path, or "remote:{...}" for a remote entry */
	char source[4096];         /* the models.d file it came from ("" if none) */
	char url[2048];            /* where `ttychat pull` fetches it ("" if none) */
	char sha256[65];           /* expected SHA-256, lowercase hex ("" if none) */
	char quant[32];            /* declared quantisation ("" if not given) */
	uint64_t size;             /* declared size in bytes (0 if not given) */
	unsigned context_size;     /* 0: not given */
	/* sampling defaults; negative = not given */
	float temperature, top_p, min_p, repeat_penalty;
	int top_k;
	char *system_prompt;       /* malloc'd or NULL */
	char *template_text;       /* malloc'd Jinja chat template override or NULL */
	int kv_type;               /* "kv_type": K and V; -1 not given, else an enum engine_kv_type */
	int cache_k, cache_v;      /* "cache_type_k" / "cache_type_v" (beat kv_type); -1 not given */
	int kv_rotation;           /* "kv_rotation": -1 not given, 0 false, 1 true */
	int threads;               /* 0: not given */
	int device;                /* -1 not given, else an enum engine_device ("auto", "cpu", "cuda") */
	int gpu_layers;            /* as --gpu-layers: -1 auto, 0 none, N; -2 not given */
	/* thinking models: defaults of --think, --reasoning-effort, --reasoning-budget */
	int think;                 /* 0 not given, else an enum engine_think (1 on, 2 off) */
	char reasoning_effort[8];  /* "low", "medium", "high"; "" not given */
	int reasoning_budget;      /* tokens; 0 not given */
	/* speculative decoding: "draft" (a draft model's path or models.d
	 * name; "" not given), "speculative" ("auto", "off", "ngram",
	 * "draft": an enum engine_spec; -1 not given), "draft_max" (0 not
	 * given) */
	char draft[4096];
	int spec;
	int draft_max;
	char warnings[1024];       /* unknown keys and the like, "\n"-separated; "" if none */
	bool remote;               /* a "remote" entry: path is the engine's remote spec */
};

/* "auto", "cpu" or "cuda" (--device, models.d "device") as an enum
 * engine_device, or -1 for anything else. */
int config_device(const char *name);
/* A layer count as --gpu-layers and models.d "gpu_layers" give it (-1
 * auto, 0 none, N > 0) as engine_load_opts.gpu_layers. */
int config_gpu_layers(int n);

/* "$XDG_DATA_HOME/ttychat/models" or the $TTYCHAT_MODELS_DIR override. */
int config_models_dir(char *buf, size_t n);
/* "$XDG_CONFIG_HOME/ttychat" (default ~/.config/ttychat). */
int config_config_dir(char *buf, size_t n);
/* "$XDG_STATE_HOME/ttychat/NAME" (default ~/.local/state/ttychat/NAME);
 * with MAKE_DIRS the missing directories on the way are made, 0700.  0, or
 * -1 when there is no home, the path is too long or a directory cannot be
 * made. */
int config_state_file(const char *name, bool make_dirs, char *buf, size_t n);

/* Resolves SPEC (path or name) as described above.  A models.d entry whose
 * file is absent is an error that suggests `ttychat pull`. */
int config_resolve_model(const char *spec, struct model_entry *out, char *err, size_t errlen);
/* Like config_resolve_model() for models.d names only, but succeeds when
 * the entry's file is absent (for `ttychat pull`).  Returns 1 when no entry
 * has that name (ERR says so), 0 when found, -1 on a bad file. */
int config_find_entry(const char *name, struct model_entry *out, char *err, size_t errlen);
/* Parses and validates one models.d file (errors name PATH and the key). */
int config_entry_parse(const char *path, struct model_entry *out, char *err, size_t errlen);
void config_entry_free(struct model_entry *e);

/* settings.json ($XDG_CONFIG_HOME/ttychat/settings.json): the user's
 * defaults under every models.d entry.  Keys: "model" (the default model),
 * "theme", and the settings keys of a models.d entry with the same types
 * and ranges ("context_size", "sampling", "system_prompt", "kv_type",
 * "device", "gpu_layers", "threads"), kept in D as an entry's (unset
 * fields as config_entry_parse() leaves them).  Unknown keys are warnings
 * in d.warnings. */
struct config_settings {
	char path[4096];           /* the file read ("" when none) */
	char model[128 + 4096];    /* "" when not given */
	char theme[64];
	struct model_entry d;
};
/* 0 (an absent file reads as empty settings), or -1 with a line naming
 * the file and the key in ERR and OUT holding empty settings (nothing of
 * a bad file is used).  Free OUT with config_settings_free() either way. */
int config_settings_read(struct config_settings *out, char *err, size_t errlen);
void config_settings_free(struct config_settings *s);

/* The built-in default model name: "smollm2". */
const char *config_default_model(void);

/* ---- the whole catalogue (`ttychat models`) ---------------------------- */

enum config_origin { CONFIG_USER = 0, CONFIG_SYSTEM = 1, CONFIG_BUILD = 2, CONFIG_LOOSE = 3 };

struct config_item {
	struct model_entry e;      /* valid when ok */
	bool ok;                   /* false: the file is invalid; error says why */
	char error[768];
	enum config_origin origin;
	bool shadowed;             /* an earlier folder has an entry of this name */
	bool present;              /* the model file exists */
};

struct config_list {
	struct config_item *v;
	size_t n;
};

/* Every models.d file of every folder (in search order, files sorted by
 * name), then the *.gguf files of the models directory that no entry
 * names (origin CONFIG_LOOSE).  Invalid files are listed with ok = false.
 * 0, or -1 on out of memory. */
int config_list_models(struct config_list *out, char *err, size_t errlen);
void config_list_free(struct config_list *l);
const char *config_origin_name(enum config_origin o);

/* Reads a GGUF file's header: its size and quantisation ("Q4_K_M" from
 * general.file_type, else the type holding most matrix bytes).  0 or -1. */
int config_probe_model(const char *path, uint64_t *size, char *quant, size_t qn, char *err, size_t errlen);

#endif
