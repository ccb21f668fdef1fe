/*
 * test_hybrid.c - a conversation with a hybrid recurrent model (qwen35:
 * Gated DeltaNet layers whose state cannot be cut at any token) through
 * the engine's API, as the front ends drive it.
 *
 * Over 20 turns, each turn's prompt is the whole conversation again; the
 * engine must compute only what the cache does not hold: at worst the last
 * reply (which the template may rewrite) and the new message, never the
 * history before the previous prompt (the checkpoint before a prompt's
 * last token makes that true).  Regenerating a reply restarts from that
 * checkpoint.  After an export and an import into a second engine (a
 * restart), the next turn reuses the history the same way, and its reply
 * equals the one the first engine gives.  Random-weight fixture: always
 * runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "testutil.h"

static struct engine_event wait_req(engine *e, int req, char **text)
{
	struct engine_event ev;
	size_t len = 0;
	if (text)
		*text = calloc(1, 1);
	while (engine_event_wait(e, &ev, 120000)) {
		if (ev.request == req) {
			if (ev.type == ENGINE_EV_TOKEN && text && ev.part == ENGINE_PART_ANSWER) {
				*text = realloc(*text, len + ev.text_len + 1);
				memcpy(*text + len, ev.text, ev.text_len);
				len += ev.text_len;
				(*text)[len] = '\0';
			} else if (ev.type == ENGINE_EV_DONE || ev.type == ENGINE_EV_ERROR ||
				   ev.type == ENGINE_EV_CONV_EXPORT || ev.type == ENGINE_EV_CONV_IMPORT ||
				   ev.type == ENGINE_EV_LOADED) {
				return ev;
			}
		}
		engine_event_clear(&ev);
	}
	memset(&ev, 0, sizeof ev);
	ev.type = ENGINE_EV_ERROR;
	snprintf(ev.message, sizeof ev.message, "timeout");
	return ev;
}

static engine *start(const char *model)
{
	char err[256];
	struct engine_params ep = {.n_threads = 2};
	engine *e = engine_create(&ep, err, sizeof err);
	CHECK(e != NULL, "engine_create: %s", err);
	struct engine_load_opts lo = {.n_ctx = 4096};
	struct engine_event ev = wait_req(e, engine_load(e, model, &lo), NULL);
	CHECK(ev.type == ENGINE_EV_LOADED, "load %s: %s", model, ev.message);
	return e;
}

int main(void)
{
	char model[4096];
	const char *src = getenv("TTYCHAT_SRCDIR");
	snprintf(model, sizeof model, "%s/tests/fixtures/engine/random/qwen35-f16.gguf", src ? src : ".");
	engine *e = start(model);

	struct engine_sampling s;
	engine_sampling_default(&s);
	s.temperature = 0;
	struct engine_gen_opts g = {.max_tokens = 6, .add_generation_prompt = true};
	static char user[20][128];
	static char *reply[20];
	struct engine_msg msgs[41];
	size_t nm = 0;
	uint32_t prev_prompt = 0, worst_extra = 0, history = 0;
	int turns_ok = 0;
	for (int i = 0; i < 20; i++) {
		snprintf(user[i], sizeof user[i], "Turn %d: tell me about the number %d and the colour of the sky.",
			 i, i * 17 + 3);
		msgs[nm++] = (struct engine_msg){"user", user[i]};
		struct engine_event ev = wait_req(e, engine_submit(e, 1, msgs, nm, &s, &g), &reply[i]);
		CHECK(ev.type == ENGINE_EV_DONE, "turn %d: %s", i, ev.message);
		const struct engine_stats *st = &ev.stats;
		CHECK(st->prompt_computed == st->prompt_tokens - st->prompt_reused, "turn %d: accounting", i);
		/* everything up to the previous prompt's last token is reused */
		if (i > 0 && st->prompt_reused + 1 >= prev_prompt)
			turns_ok++;
		if (i > 0 && st->prompt_computed > worst_extra)
			worst_extra = st->prompt_computed;
		history = st->prompt_tokens;
		prev_prompt = st->prompt_tokens;
		msgs[nm++] = (struct engine_msg){"assistant", reply[i]};
	}
	printf("20 turns, %u prompt tokens at the end: every turn reused the history before the previous prompt's end "
	       "(%d/19), at most %u tokens computed for a turn\n",
	       history, turns_ok, worst_extra);
	CHECK(turns_ok == 19, "only %d of 19 turns reused the history", turns_ok);
	CHECK(worst_extra < 200, "a turn computed %u tokens of a ~2000-token history", worst_extra);

	/* regenerate the last reply: back to the checkpoint before the
	 * prompt's last token, one token computed, the same greedy reply */
	nm--;
	char *again;
	struct engine_event ev = wait_req(e, engine_submit(e, 1, msgs, nm, &s, &g), &again);
	CHECK(ev.type == ENGINE_EV_DONE && ev.stats.prompt_computed == 1,
	      "regenerate: %u tokens computed of %u", ev.stats.prompt_computed, ev.stats.prompt_tokens);
	CHECK(strcmp(again, reply[19]) == 0, "regenerated reply differs");
	free(again);
	msgs[nm++] = (struct engine_msg){"assistant", reply[19]};

	/* a restart: export, import into another engine, one more turn */
	ev = wait_req(e, engine_conv_export(e, 1), NULL);
	CHECK(ev.type == ENGINE_EV_CONV_EXPORT && ev.blob_len > 0, "export");
	void *blob = malloc(ev.blob_len);
	size_t blen = ev.blob_len;
	memcpy(blob, ev.blob, blen);
	const uint32_t pos = ev.position;
	engine_event_clear(&ev);
	static char last[128] = "One more question: what comes after this?";
	msgs[nm++] = (struct engine_msg){"user", last};
	char *live, *restored;
	ev = wait_req(e, engine_submit(e, 1, msgs, nm, &s, &g), &live);
	const uint32_t live_computed = ev.stats.prompt_computed;
	engine_free(e);

	e = start(model);
	ev = wait_req(e, engine_conv_import(e, 5, blob, blen), NULL);
	CHECK(ev.type == ENGINE_EV_CONV_IMPORT && ev.position == pos, "import: %u of %u (%s)", ev.position, pos,
	      ev.message);
	ev = wait_req(e, engine_submit(e, 5, msgs, nm, &s, &g), &restored);
	CHECK(ev.type == ENGINE_EV_DONE && ev.stats.prompt_computed == live_computed,
	      "after the restart %u tokens computed, %u live", ev.stats.prompt_computed, live_computed);
	CHECK(strcmp(live, restored) == 0, "the restored conversation answers differently");
	printf("after a restart: %u of %u prompt tokens computed (as live), same reply\n", ev.stats.prompt_computed,
	       ev.stats.prompt_tokens);

	/* a dense model's snapshot format is refused by name */
	((unsigned char *)blob)[4] = 1;
	ev = wait_req(e, engine_conv_import(e, 6, blob, blen), NULL);
	CHECK(ev.type == ENGINE_EV_CONV_IMPORT && ev.position == 0, "a version 1 snapshot was taken");
	free(blob);
	free(live);
	free(restored);
	for (int i = 0; i < 20; i++)
		free(reply[i]);
	engine_free(e);
	return tu_finish();
}
