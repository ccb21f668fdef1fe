/*
 * chat.c - chat templates without a model (engine_chat in engine.h).
 *
 * The policy of `ttychat template` over template.h: a conversation parsed
 * once from JSON (kept whole as JSON when a message is richer than
 * role/content, so the template sees it as transformers would), then
 * rendered with a named built-in format, with the template alone (strict),
 * or as the chat renders it: the template, and the built-in of its family
 * where it is missing or fails.  The template module's codes become engine
 * statuses; its message is prefixed with the name of the failure.
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

struct engine_chat {
	struct tmpl_message *msgs; /* one block with its strings */
	size_t n;
	char *json;                /* the JSON as given when a message is structured, else NULL */
};

int engine_chat_parse(const char *json, engine_chat **out, char *err, size_t errlen)
{
	*out = NULL;
	engine_chat *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return ENGINE_E_NOMEM;
	}
	bool structured = false;
	int rc = tmpl_messages_from_json(json, &c->msgs, &c->n, &structured, err, errlen);
	if (rc == TMPL_OK && structured && !(c->json = strdup(json))) {
		snprintf(err, errlen, "out of memory");
		rc = TMPL_ERR_NOMEM;
	}
	if (rc != TMPL_OK) {
		engine_chat_free(c);
		return rc == TMPL_ERR_NOMEM ? ENGINE_E_NOMEM : ENGINE_E_INVAL;
	}
	*out = c;
	return ENGINE_OK;
}

void engine_chat_free(engine_chat *c)
{
	if (!c)
		return;
	free(c->msgs);
	free(c->json);
	free(c);
}

int engine_chat_render(const engine_chat *c, const struct engine_chat_opts *o, char **out, size_t *out_len,
		       char *msg, size_t msglen)
{
	struct tmpl_options opt = {
		.add_generation_prompt = o->add_generation_prompt,
		.bos_token = o->bos_token,
		.eos_token = o->eos_token,
		.vars_json = o->vars_json,
		.messages_json = c->json,
		.now = o->now,
	};
	const char *tt = o->template_text;
	char err[512] = "";
	size_t len = 0;
	int rc;
	*out = NULL;
	if (o->builtin) {
		enum tmpl_family fam = tmpl_family_from_name(o->builtin);
		if (fam == TMPL_FAMILY_UNKNOWN) {
			snprintf(msg, msglen, "%s: unknown built-in format '%s'", tmpl_strerror(TMPL_ERR_ARG),
				 o->builtin);
			return ENGINE_E_INVAL;
		}
		rc = tmpl_render_builtin(fam, c->msgs, c->n, &opt, out, &len, err, sizeof err);
	} else if (o->strict) {
		if (!tt || !*tt) {
			snprintf(msg, msglen, "%s: no chat template", tmpl_strerror(TMPL_ERR_RUNTIME));
			return ENGINE_E_TEMPLATE;
		}
		rc = tmpl_render_text(tt, strlen(tt), c->msgs, c->n, &opt, out, &len, err, sizeof err);
	} else {
		enum tmpl_family used;
		rc = tmpl_format_chat(tt, o->arch, c->msgs, c->n, &opt, out, &len, &used, err, sizeof err);
	}
	if (rc < 0) {
		free(*out);
		*out = NULL;
		snprintf(msg, msglen, "%s: %s", tmpl_strerror(rc), err);
		return rc == TMPL_ERR_ARG ? ENGINE_E_INVAL : rc == TMPL_ERR_NOMEM ? ENGINE_E_NOMEM : ENGINE_E_TEMPLATE;
	}
	if (out_len)
		*out_len = len;
	if (rc == TMPL_FALLBACK) {
		snprintf(msg, msglen, "%s", err);
		return ENGINE_CHAT_FALLBACK;
	}
	return ENGINE_OK;
}

const char *engine_chat_family(const char *template_text, const char *arch)
{
	return tmpl_family_name(tmpl_detect_family(template_text, arch));
}

bool engine_chat_builtin_known(const char *name)
{
	return tmpl_family_from_name(name) != TMPL_FAMILY_UNKNOWN;
}
