/*
 * catalog.h - where ttychat's files live and how a model name is resolved.
 *
 * Paths follow XDG: config in $XDG_CONFIG_HOME/ttychat (default
 * ~/.config/ttychat), data in $XDG_DATA_HOME/ttychat (default
 * ~/.local/share/ttychat).  Models are looked up as:
 *   1. an existing file path;
 *   2. a models.d entry by "name": the user's models.d, then the system one
 *      (installed with ttychat), then a models.d beside the binary or in its
 *      parent directory (a build tree);
 *   3. a file of that name in the models directory ($TTYCHAT_MODELS_DIR, else
 *      $XDG_DATA_HOME/ttychat/models).
 * Functions return 0 or -1 with a one-line message in err.  No globals; the
 * caller owns every returned buffer.
 */
#ifndef TTYCHAT_CATALOG_H
#define TTYCHAT_CATALOG_H

#include <stddef.h>

struct model_entry {
	char name[128];
	char display_name[256];
	char path[4096];           /* resolved file path */
	char source[4096];         /* the models.d file it came from ("" if none) */
	unsigned context_size;     /* 0: not given */
	/* sampling defaults; negative = not given */
	float temperature, top_p, min_p, repeat_penalty;
	int top_k;
	char *system_prompt;       /* malloc'd or NULL */
};

/* "$XDG_DATA_HOME/ttychat/models" or the $TTYCHAT_MODELS_DIR override. */
int config_models_dir(char *buf, size_t n);
/* Resolves SPEC (path or name) as described above. */
int config_resolve_model(const char *spec, struct model_entry *out, char *err, size_t errlen);
void config_entry_free(struct model_entry *e);
/* The default model name: "smollm2". */
const char *config_default_model(void);

#endif
