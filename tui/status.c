/*
 * status.c - the live numbers, from the engine's events (see status.h).
 *
 * Speeds: time to first token is measured here from the submit until the
 * engine gives its own figure with the first token (which excludes the
 * queueing before the prompt was read); decode speed is tokens after the
 * first over the time since the first, until DONE gives the engine's.
 * A figure not known yet stays < 0 and is drawn as a dash.
 */
#include "config.h"

#include "status.h"

#include <stdio.h>

void status_loaded(struct tui_status *st, const struct engine_event *ev, bool busy)
{
	st->info = ev->info;
	st->have_info = true;
	st->phase = busy ? PH_PREFILL : PH_IDLE;
	st->weights_bytes = ev->info.file_bytes;
	st->ctx_size = ev->info.n_ctx;
	st->vram_total = ev->stats.vram_total;
	st->vram_free = ev->stats.vram_free;
	st->vram_ours = ev->stats.vram_ours;
	st->draft_bytes = 0;
	st->spec[0] = '\0';
}

void status_submit(struct tui_status *st, double now)
{
	st->t_submit = now;
	st->t_first = st->t_last = 0;
	st->n_tok = 0;
	if (st->phase != PH_LOADING) /* a submit during a load waits for it */
		st->phase = PH_PREFILL;
	st->progress = 0;
	st->decode_tps = st->prefill_tps = st->ttft_ms = -1;
	st->gen_tokens = 0;
	st->think_tokens = 0;
	st->have_prompt = false;
	st->spec[0] = '\0';
	st->spec_passes = st->spec_drafted = st->spec_accepted = 0;
	st->spec_speedup = 0;
}

static void spec_of(struct tui_status *st, const struct engine_stats *s)
{
	snprintf(st->spec, sizeof st->spec, "%s", s->spec);
	st->spec_passes = s->spec_passes;
	st->spec_drafted = s->spec_drafted;
	st->spec_accepted = s->spec_accepted;
	st->spec_speedup = s->spec_speedup;
	st->spec_paused = s->spec_paused;
	if (s->draft_bytes)
		st->draft_bytes = s->draft_bytes;
}

bool status_token(struct tui_status *st, const struct engine_event *ev, double now)
{
	bool first = st->n_tok++ == 0;
	st->t_last = now;
	if (first) {
		st->t_first = now;
		st->ttft_ms = st->t_first - st->t_submit;
		st->phase = PH_STREAM;
	}
	st->gen_tokens = st->n_tok;
	if (ev->part == ENGINE_PART_REASONING && ev->token >= 0)
		st->think_tokens++;
	st->ctx_used = ev->position + 1;
	if (ev->stats.prompt_tokens) {
		/* the prompt's figures are known from the first token on */
		const struct engine_stats *s = &ev->stats;
		st->prompt_reused = s->prompt_reused;
		st->prompt_computed = s->prompt_computed;
		st->have_prompt = true;
		st->prefill_tps = s->prompt_computed ? s->prefill_tps : -1;
		if (s->ttft_ms > 0)
			st->ttft_ms = s->ttft_ms;
	}
	if (st->n_tok > 1 && st->t_last > st->t_first)
		st->decode_tps = (st->n_tok - 1) / ((st->t_last - st->t_first) / 1e3);
	spec_of(st, &ev->stats);
	return first;
}

void status_done(struct tui_status *st, const struct engine_stats *s)
{
	if (s->ctx_size) {
		st->prefill_tps = s->prompt_computed ? s->prefill_tps : -1;
		st->decode_tps = s->gen_tokens > 1 ? s->decode_tps : st->decode_tps;
		st->ttft_ms = s->gen_tokens ? s->ttft_ms : st->ttft_ms;
		st->gen_tokens = s->gen_tokens;
		st->think_tokens = s->reasoning_tokens;
		st->ctx_used = s->ctx_used;
		st->ctx_size = s->ctx_size;
		st->prompt_reused = s->prompt_reused;
		st->prompt_computed = s->prompt_computed;
		st->have_prompt = true;
		st->weights_bytes = s->weights_bytes;
		st->kv_bytes = s->kv_bytes;
		st->vram_total = s->vram_total;
		st->vram_free = s->vram_free;
		st->vram_ours = s->vram_ours;
		spec_of(st, s);
	}
	st->phase = st->have_info ? PH_IDLE : PH_NOMODEL;
}

void status_gpu_lost(struct tui_status *st, const char *msg)
{
	if (!st->have_info)
		return;
	snprintf(st->info.backend, sizeof st->info.backend, "cpu");
	snprintf(st->info.notice, sizeof st->info.notice, "%.255s", msg);
	st->vram_total = st->vram_free = st->vram_ours = 0;
}
