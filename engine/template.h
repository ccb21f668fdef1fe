/*
 * template.h - chat templates: a bounded Jinja subset and built-in formats.
 *
 * A GGUF model carries its prompt format as a Jinja template in
 * `tokenizer.chat_template`.  This module renders such a template the way
 * Hugging Face transformers does (a sandboxed, immutable Jinja environment
 * with trim_blocks and lstrip_blocks on, the loop-control extension, the
 * globals raise_exception() and strftime_now(), and a tojson filter that
 * keeps non-ASCII characters; plus llama.cpp's from_json filter, which
 * DeepSeek-V3.2 and V4 templates use), so that the prompt fed to the model is byte
 * for byte the one the model was trained on.
 *
 * Templates are hostile input.  Parsing bounds nesting depth; rendering
 * bounds call depth, loop iterations, output size, memory and wall time
 * (struct tmpl_limits).  Any failure or exceeded cap returns an error code
 * and a one-line message; the caller is expected to fall back to a built-in
 * format for the model's family (tmpl_detect_family, tmpl_render_builtin,
 * or tmpl_format_chat which does both steps).
 *
 * Ownership: a tmpl is created by tmpl_parse and released by tmpl_free.
 * Rendered output is a malloc'd, NUL-terminated string owned by the caller
 * (free()); its length excludes the NUL.  Input strings are only read
 * during the call.
 *
 * Threads: no global state.  A parsed tmpl is immutable: any number of
 * threads may render the same tmpl at once.  All other calls are
 * reentrant.  Nothing here prints or exits.
 *
 * Error buffers: every function taking (err, errlen) writes a one-line,
 * NUL-terminated message there on failure (when errlen > 0).
 */
#ifndef TTYCHAT_TEMPLATE_H
#define TTYCHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes.  Negative values are failures. */
enum tmpl_status {
	TMPL_OK = 0,
	TMPL_FALLBACK = 1,        /* tmpl_format_chat only: rendered with a built-in
				     format; err holds the warning saying why */
	TMPL_ERR_SYNTAX = -1,     /* the template does not parse, or uses an
				     unknown filter/test outside any if or
				     conditional expression (as Jinja rejects;
				     inside one it is a runtime error only when
				     evaluated) */
	TMPL_ERR_RUNTIME = -2,    /* type error, undefined value used, unsupported
				     feature reached while rendering */
	TMPL_ERR_RAISED = -3,     /* the template called raise_exception(msg);
				     err holds msg (e.g. "roles must alternate") */
	TMPL_ERR_LIMIT = -4,      /* a cap in struct tmpl_limits was exceeded */
	TMPL_ERR_NOMEM = -5,      /* malloc failed */
	TMPL_ERR_ARG = -6,        /* bad arguments (NULL pointers, bad JSON in
				     vars_json/messages_json, unknown family) */
};

/* One chat message.  role is NUL-terminated ("system", "user", "assistant",
 * "tool", ...).  content is UTF-8 of content_len bytes and may contain
 * anything, NUL included; content == NULL renders as Jinja `none`. */
struct tmpl_message {
	const char *role;
	const char *content;
	size_t content_len;
};

/* Caps for one render.  A zero field means "use the default". */
struct tmpl_limits {
	uint32_t max_depth;       /* nested evaluation depth, macros included (default 400) */
	uint64_t max_steps;       /* statements + loop iterations (default 10,000,000) */
	size_t max_output;        /* bytes of output, captures included (default 16 MiB) */
	size_t max_memory;        /* bytes of working memory (default 256 MiB) */
	uint32_t max_time_ms;     /* wall time (default 2000 ms) */
};

#define TMPL_DEFAULT_MAX_DEPTH 400u
#define TMPL_DEFAULT_MAX_STEPS 10000000ull
#define TMPL_DEFAULT_MAX_OUTPUT ((size_t)16 << 20)
#define TMPL_DEFAULT_MAX_MEMORY ((size_t)256 << 20)
#define TMPL_DEFAULT_MAX_TIME_MS 2000u

/* Render options.  Zero-initialise and set what you need. */
struct tmpl_options {
	bool add_generation_prompt;
	/* Special token texts; NULL leaves the variable undefined, as when a
	 * tokenizer has no such token. */
	const char *bos_token;
	const char *eos_token;
	/* Optional JSON object whose members become template variables, set
	 * after the ones above (so they can override them), e.g.
	 * {"tools": null, "date_string": "26 Jul 2024"}.  Parsed with Python
	 * json semantics (ints stay ints, member order kept).  NULL: none. */
	const char *vars_json;
	/* Optional JSON array of message objects used as `messages` instead of
	 * the msgs array (for tool calls or structured content).  NULL: use
	 * msgs. */
	const char *messages_json;
	/* Seconds since the epoch that strftime_now() formats (local time);
	 * 0 means the current time. */
	int64_t now;
	struct tmpl_limits limits;
};

typedef struct tmpl tmpl;

/* Parses a Jinja template of len bytes (it need not be NUL-terminated).
 * Returns TMPL_OK and stores the handle in *out, or a negative code
 * (TMPL_ERR_SYNTAX, TMPL_ERR_LIMIT for nesting too deep, TMPL_ERR_NOMEM,
 * TMPL_ERR_ARG) with *out set to NULL. */
int tmpl_parse(const char *src, size_t len, tmpl **out, char *err, size_t errlen);

/* Releases a parsed template; NULL is a no-op. */
void tmpl_free(tmpl *t);

/* Renders a parsed template for the n messages in msgs (msgs may be NULL
 * when n is 0 or opt->messages_json is set).  opt may be NULL (all
 * defaults).  On TMPL_OK, *out is a malloc'd NUL-terminated string and
 * *out_len its length (out_len may be NULL).  On failure *out is NULL and
 * the return code is one of the negative codes above. */
int tmpl_render(const tmpl *t, const struct tmpl_message *msgs, size_t n,
		const struct tmpl_options *opt, char **out, size_t *out_len,
		char *err, size_t errlen);

/* tmpl_parse + tmpl_render + tmpl_free in one call. */
int tmpl_render_text(const char *src, size_t len, const struct tmpl_message *msgs,
		     size_t n, const struct tmpl_options *opt, char **out,
		     size_t *out_len, char *err, size_t errlen);

/* Converts a JSON array of message objects (as `ttychat template` reads
 * on stdin) into a message array, keeping every byte of the strings (NUL
 * included).  On TMPL_OK, *msgs is one malloc'd block holding the array and
 * its strings (free() it); messages whose content is not a string get
 * content NULL.  *structured (may be NULL) is set when a message has keys
 * besides role and content, or content that is neither a string nor null:
 * render such a conversation with opt.messages_json to keep it whole.
 * Returns TMPL_ERR_ARG (bad JSON, a message without a role string) or
 * TMPL_ERR_NOMEM/TMPL_ERR_LIMIT otherwise. */
int tmpl_messages_from_json(const char *json, struct tmpl_message **msgs, size_t *n,
			    bool *structured, char *err, size_t errlen);

/* ---- built-in formats ----------------------------------------------------
 * Each family renders what its reference Hugging Face template renders for
 * plain role/content conversations (bos_token text included where that
 * template includes it), so a built-in can stand in for a template that
 * failed.  Unlike the templates, built-ins never refuse a conversation:
 * a system message a family has no slot for is merged into the first user
 * turn. */
enum tmpl_family {
	TMPL_FAMILY_UNKNOWN = 0,
	TMPL_FAMILY_CHATML,       /* <|im_start|>role\n...<|im_end|>\n (Qwen, SmolLM, Hermes) */
	TMPL_FAMILY_LLAMA2,       /* [INST] <<SYS>>...<</SYS>> ... [/INST] */
	TMPL_FAMILY_MISTRAL,      /* [INST] user [/INST]assistant</s> (v1-v3, spaces) */
	TMPL_FAMILY_MISTRAL_NEMO, /* [INST]user[/INST]assistant</s> (tekken, system
				     folded into the last user turn) */
	TMPL_FAMILY_LLAMA3,       /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
	TMPL_FAMILY_GEMMA,        /* <start_of_turn>user\n...<end_of_turn>\n, model role */
	TMPL_FAMILY_PHI3,         /* <|user|>\n...<|end|>\n */
	TMPL_FAMILY_DEEPSEEK,     /* <｜User｜>...<｜Assistant｜>... (R1 / V3) */
	TMPL_FAMILY_ZEPHYR,       /* <|user|>\n...</s>\n */
	TMPL_FAMILY_COMMAND_R,    /* <|START_OF_TURN_TOKEN|><|USER_TOKEN|>... */
	TMPL_FAMILY_VICUNA,       /* SYSTEM\n\nUSER: ...\nASSISTANT: ...</s> */
	TMPL_FAMILY_COUNT
};

/* Guesses the family from template text (either may be NULL) and, failing
 * that, from the GGUF `general.architecture` name.  Returns
 * TMPL_FAMILY_UNKNOWN when neither says anything; callers usually treat
 * that as TMPL_FAMILY_CHATML (what llama.cpp does too). */
enum tmpl_family tmpl_detect_family(const char *template_text, const char *arch);

/* "chatml", "llama3", ...; "unknown" for anything out of range. */
const char *tmpl_family_name(enum tmpl_family f);

/* Inverse of tmpl_family_name (case-sensitive); TMPL_FAMILY_UNKNOWN when
 * the name is not known. */
enum tmpl_family tmpl_family_from_name(const char *name);

/* Renders msgs in family f (TMPL_FAMILY_UNKNOWN renders chatml).  Uses
 * add_generation_prompt, bos_token and eos_token from opt (NULL tokens
 * render empty); other fields are ignored.  Returns TMPL_OK or
 * TMPL_ERR_NOMEM/TMPL_ERR_ARG/TMPL_ERR_LIMIT (output over max_output). */
int tmpl_render_builtin(enum tmpl_family f, const struct tmpl_message *msgs, size_t n,
			const struct tmpl_options *opt, char **out, size_t *out_len,
			char *err, size_t errlen);

/* The whole policy in one call, as the chat front ends use it: renders
 * template_text (may be NULL or empty: no template) and, when it is
 * missing or fails for any reason but bad arguments or out of memory
 * (TMPL_ERR_ARG, TMPL_ERR_NOMEM: returned as they are), renders the
 * built-in format of the family detected from template_text and arch.
 * Returns TMPL_OK when the template itself rendered, TMPL_FALLBACK when a
 * built-in did (err then holds a one-line warning naming the reason and
 * the family), or a negative code when even the built-in failed.
 * *family_used (may be NULL) receives the built-in family, or
 * TMPL_FAMILY_UNKNOWN when the template was used. */
int tmpl_format_chat(const char *template_text, const char *arch,
		     const struct tmpl_message *msgs, size_t n,
		     const struct tmpl_options *opt, char **out, size_t *out_len,
		     enum tmpl_family *family_used, char *err, size_t errlen);

/* A short name for a return code ("syntax error", "limit exceeded", ...). */
const char *tmpl_strerror(int code);

#endif
