/*
 * remote.h - the engine's remote backend: an OpenAI-compatible server
 * (llama.cpp's llama-server, vLLM, SGLang, Ollama, `ttychat serve`, ...)
 * reached over HTTP(S) with libcurl.
 *
 * Private to engine/: engine.c dispatches to it when engine_load() is given
 * a path of the form "remote:" followed by a JSON object (see engine.h), and
 * every call below runs on the engine's worker thread.  The caller's
 * cancellation (the engine's epoch counter and a wake-up pipe) is passed in
 * with each call, so a cancel closes the stream at once, even while the
 * server sends nothing.
 *
 * Spec keys (all strings checked; unknown keys are errors, so a typo in a
 * key name is not silently ignored):
 *   base_url           "http[s]://host[:port][/path]"; a bare host gets "/v1"
 *   model              the server's model id; absent: the first it lists
 *   api_key_env        name of an environment variable holding the key
 *   api_key_file       a file holding the key (0600; first line)
 *   headers            {"Name": "value", ...} sent with every request
 *   timeout_s          seconds without a byte from the server before a
 *                      request fails (a stalled stream); default 120
 *   connect_timeout_s  default 10
 *   n_ctx              context size to show when the server tells none
 *   extra_sampling     false: send only OpenAI's own sampling fields (no
 *                      top_k, min_p, repeat_penalty); default true
 * The API key is read when the spec is opened, kept in this handle only,
 * sent only in the Authorization header and wiped when the handle is freed.
 *
 * Return codes: 0, or a negative enum engine_status with a one-line message
 * in ERR that names the host ("remote 10.0.0.5:8080: ...").
 */
#ifndef TTYCHAT_REMOTE_H
#define TTYCHAT_REMOTE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#define REMOTE_PREFIX "remote:"

struct remote;

/* How a call learns that it is cancelled: *EPOCH != MINE.  WAKE_FD (or -1)
 * becomes readable when the epoch changes; the call drains it. */
struct remote_cancel {
	const atomic_uint *epoch;
	unsigned mine;
	int wake_fd;
};

/* Receives each piece of the reply (valid UTF-8, never empty); REASONING:
 * the server sent it as reasoning ("reasoning_content" or "reasoning" of
 * the delta, as llama-server, vLLM and DeepSeek's API do). */
typedef void (*remote_text_fn)(void *ctx, const char *text, size_t len, bool reasoning);

/* Parses SPEC (the JSON text after "remote:") and reads the API key.
 * N_CTX (0: none) is the context size the caller asked for.  NULL with a
 * message on failure. */
struct remote *remote_open(const char *spec, uint32_t n_ctx, char *err, size_t errlen);
/* Closes connections and wipes the key.  NULL is fine. */
void remote_free(struct remote *rm);

/* GET /models: checks that the server answers and serves the model (or
 * picks the first one), and fills INFO (arch "remote", name = the model,
 * backend "remote: HOST"). */
int remote_probe(struct remote *rm, const struct remote_cancel *c, struct engine_model_info *info, char *err,
		 size_t errlen);

/* One reply: POST /chat/completions (or /completions when G->raw) with
 * stream=true.  Text goes to ON_TEXT as it arrives.  Returns 0 when the
 * reply ended (*STOP: EOG, LENGTH, CANCELLED) with *ST filled from the
 * server's usage/timings where given, else measured here; or a negative
 * status when it failed, also after some text was delivered (the caller
 * keeps that text: a cut or stalled stream is reported that way). */
int remote_chat(struct remote *rm, const struct remote_cancel *c, const struct engine_msg *msgs, size_t n,
		const struct engine_sampling *s, const struct engine_gen_opts *g, char *const *stop,
		remote_text_fn on_text, void *ctx, struct engine_stats *st, enum engine_stop_reason *stop_out,
		char *err, size_t errlen);

#endif
