/*
 * sidebar.h - the live numbers: a sidebar on wide terminals, one status
 * line on narrow ones.  Both draw the same struct tui_status, which the
 * main loop fills from engine events (at most four times a second while a
 * reply streams) and from /proc/meminfo.  UI thread only.
 */
#ifndef TTYCHAT_TUI_SIDEBAR_H
#define TTYCHAT_TUI_SIDEBAR_H

#include <curses.h>
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
	uint32_t ctx_used, ctx_size;
	uint32_t prompt_reused, prompt_computed;
	bool have_prompt;
	uint64_t weights_bytes, kv_bytes, mem_avail;
	uint64_t vram_total, vram_free, vram_ours;  /* GPU memory; all 0 on the CPU */
	struct engine_sampling s;
	int32_t max_tokens;
	const char *note;            /* short state text for the status line, or NULL */
	const char *chat_title;      /* the conversation's title ("" new), or NULL */
	const char *chat_state;      /* its history state ("saved, encrypted", "off") or NULL */
	bool chat_bad;               /* the state is a problem (unsaved, off) */
};

/* WIDE: the sidebar (first column is its border).  Draws only what fits. */
void sidebar_draw(WINDOW *w, const struct tui_status *st, const unsigned long *attrs, unsigned text_flags);
/* The status line: in NARROW mode the key numbers, else the state text. */
void statusbar_draw(WINDOW *w, const struct tui_status *st, bool narrow, const unsigned long *attrs,
		    unsigned text_flags);

#endif
