/*
 * status.h - the live numbers the sidebar and the status line show
 * (sidebar.h draws them), and how the engine's events fill them: the
 * phase, the loaded model's facts, a reply's speeds and token counts, the
 * context and memory in use.
 *
 * The functions are pure (the caller gives the time and reads the
 * memory), so tests can feed them events.  UI thread only.
 */
#ifndef TTYCHAT_TUI_STATUS_H
#define TTYCHAT_TUI_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

enum tui_phase { PH_NOMODEL, PH_LOADING, PH_IDLE, PH_PREFILL, PH_STREAM };

struct tui_status {
	enum tui_phase phase;
	float progress;              /* loading or prefill, 0..1 */
	char model[128];             /* display name */
	struct engine_model_info info;
	bool have_info;
	/* speeds of the current or last reply; < 0 when not known yet */
	double prefill_tps, decode_tps, ttft_ms;
	uint32_t gen_tokens;
	uint32_t think_tokens;       /* of gen_tokens, a thinking model's reasoning */
	int32_t think_budget;        /* the reply's reasoning budget (<= 0 none), for the sidebar's bar */
	uint32_t ctx_used, ctx_size;
	uint32_t prompt_reused, prompt_computed;
	bool have_prompt;
	uint64_t weights_bytes, kv_bytes, mem_avail;
	uint64_t vram_total, vram_free, vram_ours;  /* GPU memory; all 0 on the CPU */
	/* speculative decoding in the current or last reply (engine_stats's
	 * spec fields; spec[0] == 0: none ran) and the draft model's memory */
	char spec[8];
	uint32_t spec_passes, spec_drafted, spec_accepted;
	double spec_speedup;
	bool spec_paused;
	uint64_t draft_bytes;
	struct engine_sampling s;
	char advice[64];             /* sampling fields the model file advised ("temp, top-p"), "" none */
	int32_t max_tokens;
	const char *note;            /* short state text for the status line, or NULL */
	const char *chat_title;      /* the conversation's title ("" new), or NULL */
	const char *chat_state;      /* its history state ("saved, encrypted", "off") or NULL */
	bool chat_bad;               /* the state is a problem (unsaved, off) */
	/* the reply's clock (ms, any monotonic origin), kept by the functions below */
	double t_submit, t_first, t_last;
	uint32_t n_tok;
};

/* A model is loaded (LOADED event EV).  BUSY: a reply waits for it, so
 * the phase goes on to the prefill. */
void status_loaded(struct tui_status *st, const struct engine_event *ev, bool busy);
/* A reply was asked for at NOW: the last reply's numbers are cleared. */
void status_submit(struct tui_status *st, double now);
/* A TOKEN event EV arrived at NOW.  True for a reply's first token (the
 * phase became PH_STREAM). */
bool status_token(struct tui_status *st, const struct engine_event *ev, double now);
/* The reply ended (DONE): its final figures, when the engine gave them. */
void status_done(struct tui_status *st, const struct engine_stats *s);
/* The GPU failed and the engine went on on the CPU (MSG says so). */
void status_gpu_lost(struct tui_status *st, const char *msg);

#endif
