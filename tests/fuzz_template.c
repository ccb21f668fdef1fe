/*
 * fuzz_template.c - libFuzzer target for the chat template engine
 * (engine/template.c): the parser and the renderer on hostile templates,
 * and the messages reader on hostile JSON.
 *
 * The first byte picks the mode: even, the rest is a Jinja template,
 * parsed and (when it parses) rendered for a small conversation with tight
 * caps (depth, steps, output, memory, 200 ms); odd, the rest is a JSON
 * messages array read by tmpl_messages_from_json() and rendered with a
 * ChatML-like template.  A failure must leave a one-line message.  Built
 * by `make fuzz-template` (clang) and, with tests/fuzz_replay.c, by
 * `make check`, which replays tests/fuzz/template/.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char chatml[] =
	"{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
	"{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

static void one_line(int rc, const char *err)
{
	if (rc != TMPL_OK && (err[0] == '\0' || strchr(err, '\n')))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *src = (const char *)data + 1;
	size_t len = size - 1;
	char err[512] = "";
	struct tmpl_options opt = {.add_generation_prompt = true, .now = 1700000000};
	opt.limits = (struct tmpl_limits){.max_depth = 64, .max_steps = 20000, .max_output = 1 << 16,
					  .max_memory = 8 << 20, .max_time_ms = 200};
	char *out = NULL;
	size_t out_len = 0;
	if (data[0] % 2 == 0) {
		static const struct tmpl_message msgs[] = {
			{"system", "be brief", 8}, {"user", "hi\0there", 8}, {"assistant", NULL, 0}, {"user", "", 0}};
		tmpl *t = NULL;
		int rc = tmpl_parse(src, len, &t, err, sizeof err);
		one_line(rc, err);
		if (rc != TMPL_OK)
			return 0;
		err[0] = '\0';
		rc = tmpl_render(t, msgs, 4, &opt, &out, &out_len, err, sizeof err);
		one_line(rc, err);
		if (rc == TMPL_OK && (!out || strlen(out) > out_len))
			__builtin_trap();
		free(out);
		tmpl_free(t);
		return 0;
	}
	char *json = malloc(len + 1);
	if (!json)
		return 0;
	memcpy(json, src, len);
	json[len] = '\0';
	struct tmpl_message *msgs = NULL;
	size_t n = 0;
	bool structured = false;
	int rc = tmpl_messages_from_json(json, &msgs, &n, &structured, err, sizeof err);
	one_line(rc, err);
	if (rc == TMPL_OK) {
		if (structured)
			opt.messages_json = json;
		err[0] = '\0';
		rc = tmpl_render_text(chatml, sizeof chatml - 1, msgs, n, &opt, &out, &out_len, err, sizeof err);
		one_line(rc, err);
		free(out);
		free(msgs);
	}
	free(json);
	return 0;
}
