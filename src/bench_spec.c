/*
 * bench_spec.c - `ttychat bench --spec MODE [--draft MODEL]`: whether
 * speculative decoding pays on this machine and model.
 *
 * Unlike pp/tg, guesses depend on the text, so this benchmark runs real
 * replies through the chat's own path (template, sampler, decode loop):
 * for each task, REPS greedy replies with speculation off and REPS with
 * MODE, alternating, each in a fresh conversation, and compares decode
 * speed (the engine's decode_tps), the acceptance and tokens per pass, and
 * whether the two replies are the same text (they should be, greedy; a
 * difference can only come from a near-tie rounded apart by the batched
 * and the one-token kernels).  Tasks: writing code from a description, and
 * rewriting a given file with one change (where n-gram lookup copies
 * most of the reply from the prompt); --prompt-file adds one of the
 * user's.
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_spec.h"
#include "commands.h"

static const char EDIT_FILE[] =
	"import json\n"
	"import sys\n"
	"\n"
	"\n"
	"def load_items(path):\n"
	"    with open(path) as f:\n"
	"        return json.load(f)\n"
	"\n"
	"\n"
	"def total_price(items):\n"
	"    total = 0\n"
	"    for item in items:\n"
	"        total += item[\"price\"] * item[\"quantity\"]\n"
	"    return total\n"
	"\n"
	"\n"
	"def cheapest(items):\n"
	"    best = None\n"
	"    for item in items:\n"
	"        if best is None or item[\"price\"] < best[\"price\"]:\n"
	"            best = item\n"
	"    return best\n"
	"\n"
	"\n"
	"def report(items):\n"
	"    print(\"items:\", len(items))\n"
	"    print(\"total:\", total_price(items))\n"
	"    c = cheapest(items)\n"
	"    if c is not None:\n"
	"        print(\"cheapest:\", c[\"name\"], c[\"price\"])\n"
	"\n"
	"\n"
	"if __name__ == \"__main__\":\n"
	"    report(load_items(sys.argv[1]))\n";

struct task {
	const char *name;
	char *prompt;
};

struct side {
	double tps_sum;
	int n;
	uint32_t passes, drafted, accepted, tokens;
	double speedup_sum;
};

static int one_reply(engine *e, uint64_t conv, const char *prompt, enum engine_spec spec, int max_tokens,
		     int draft_max, struct engine_stats *st, char **text, char *err, size_t errlen)
{
	struct engine_sampling s;
	engine_sampling_default(&s);
	s.temperature = 0;
	s.repeat_penalty = 1;
	struct engine_msg m = {"user", prompt};
	struct engine_gen_opts g = {.max_tokens = max_tokens, .add_generation_prompt = true, .spec = spec,
				    .draft_max = draft_max};
	int req = engine_submit(e, conv, &m, 1, &s, &g);
	if (req <= 0) {
		snprintf(err, errlen, "%s", engine_last_error(e));
		return -1;
	}
	size_t len = 0;
	*text = calloc(1, 1);
	struct engine_event ev;
	for (;;) {
		if (!engine_event_wait(e, &ev, -1))
			continue;
		if (ev.request != req) {
			engine_event_clear(&ev);
			continue;
		}
		if (ev.type == ENGINE_EV_TOKEN && ev.part == ENGINE_PART_ANSWER) {
			char *t = realloc(*text, len + ev.text_len + 1);
			if (t) {
				memcpy(t + len, ev.text, ev.text_len);
				len += ev.text_len;
				t[len] = '\0';
				*text = t;
			}
		} else if (ev.type == ENGINE_EV_DONE) {
			*st = ev.stats;
			engine_event_clear(&ev);
			engine_drop_conv(e, conv);
			return 0;
		} else if (ev.type == ENGINE_EV_ERROR) {
			snprintf(err, errlen, "%s", ev.message);
			engine_event_clear(&ev);
			return -1;
		}
		engine_event_clear(&ev);
	}
}

int bench_spec_run(engine *e, const struct bench_spec_opts *o, char *err, size_t errlen)
{
	struct task tasks[3];
	int n_tasks = 0;
	tasks[n_tasks++] = (struct task){"write", strdup("Write a Python module with a function that parses a CSV file of "
							 "orders (id, customer, amount, date) and returns the total "
							 "amount per customer, with docstrings and type hints.")};
	const char *ask = "Rewrite this file with one change: rename the function total_price to order_total "
			  "everywhere. Output the whole file and nothing else.\n\n```python\n";
	char *edit = malloc(strlen(ask) + sizeof EDIT_FILE + 8);
	if (edit)
		sprintf(edit, "%s%s```\n", ask, EDIT_FILE);
	tasks[n_tasks++] = (struct task){"edit", edit};
	if (o->prompt)
		tasks[n_tasks++] = (struct task){"prompt-file", strdup(o->prompt)};
	for (int t = 0; t < n_tasks; t++)
		if (!tasks[t].prompt) {
			snprintf(err, errlen, "out of memory");
			return EXIT_FAIL;
		}

	cJSON *arr = o->json ? cJSON_CreateArray() : NULL;
	if (!o->json) {
		printf("| task        | plain t/s | %-9s | speed-up | accepted | tok/pass | same text |\n", o->mode_name);
		printf("| ----------- | --------: | --------: | -------: | -------: | -------: | --------- |\n");
	}
	int status = 0;
	uint64_t conv = 1000;
	for (int t = 0; t < n_tasks && !status; t++) {
		struct side sd[2];
		memset(sd, 0, sizeof sd);
		int same = 0;
		for (int r = 0; r < o->reps && !status; r++) {
			char *txt[2] = {NULL, NULL};
			for (int k = 0; k < 2; k++) {
				/* alternate which goes first, so a drift of the
				 * machine falls on both */
				const int which = (r & 1) ? 1 - k : k;
				struct engine_stats st;
				if (one_reply(e, ++conv, tasks[t].prompt, which ? o->spec : ENGINE_SPEC_OFF, o->n_gen,
					      o->draft_max, &st,
					      &txt[which], err, errlen)) {
					status = EXIT_GENERATE;
					break;
				}
				sd[which].tps_sum += st.decode_tps;
				sd[which].n++;
				sd[which].passes += st.spec_passes;
				sd[which].drafted += st.spec_drafted;
				sd[which].accepted += st.spec_accepted;
				sd[which].tokens += st.gen_tokens;
				sd[which].speedup_sum += st.spec_speedup;
			}
			if (!status)
				same += strcmp(txt[0], txt[1]) == 0;
			free(txt[0]);
			free(txt[1]);
		}
		if (status)
			break;
		const double plain = sd[0].tps_sum / sd[0].n, spec = sd[1].tps_sum / sd[1].n;
		const double acc = sd[1].drafted ? (double)sd[1].accepted / sd[1].drafted : 0;
		const double tpp = sd[1].passes ? (double)(sd[1].accepted + sd[1].passes) / sd[1].passes : 0;
		if (o->json) {
			cJSON *j = cJSON_CreateObject();
			cJSON_AddStringToObject(j, "task", tasks[t].name);
			cJSON_AddStringToObject(j, "spec", o->mode_name);
			cJSON_AddNumberToObject(j, "reps", o->reps);
			cJSON_AddNumberToObject(j, "plain_tps", plain);
			cJSON_AddNumberToObject(j, "spec_tps", spec);
			cJSON_AddNumberToObject(j, "speedup", plain > 0 ? spec / plain : 0);
			cJSON_AddNumberToObject(j, "acceptance", acc);
			cJSON_AddNumberToObject(j, "tokens_per_pass", tpp);
			cJSON_AddNumberToObject(j, "passes", sd[1].passes);
			cJSON_AddNumberToObject(j, "drafted", sd[1].drafted);
			cJSON_AddNumberToObject(j, "accepted", sd[1].accepted);
			cJSON_AddNumberToObject(j, "gen_tokens_plain", sd[0].tokens / (double)sd[0].n);
			cJSON_AddNumberToObject(j, "gen_tokens_spec", sd[1].tokens / (double)sd[1].n);
			cJSON_AddNumberToObject(j, "same_text", same);
			cJSON_AddItemToArray(arr, j);
		} else {
			printf("| %-11s | %9.2f | %9.2f | %7.2fx | %7.0f%% | %8.2f | %d of %-4d |\n", tasks[t].name, plain,
			       spec, plain > 0 ? spec / plain : 0, 100 * acc, tpp, same, o->reps);
		}
	}
	if (o->json && !status) {
		char *s = cJSON_Print(arr);
		if (s)
			printf("%s\n", s);
		cJSON_free(s);
	}
	cJSON_Delete(arr);
	for (int t = 0; t < n_tasks; t++)
		free(tasks[t].prompt);
	return status;
}
