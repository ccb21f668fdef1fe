/*
 * sidebar.c - the sidebar and the status line (see sidebar.h).
 *
 * Everything is formatted into short fixed-width fields so that a value
 * changing from 143 to 151 tok/s changes three cells on the terminal, not
 * the line.  The most live sections (speed, context) come first so that a
 * short terminal still shows them.
 */
#include "config.h"

#include "sidebar.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "models.h"
#include "text.h"
#include "theme.h"
#include "transcript.h"

struct pen {
	WINDOW *w;
	int row, h, width;
	const unsigned long *attrs;
	unsigned flags;
};

static bool line(struct pen *p, int role, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool line(struct pen *p, int role, const char *fmt, ...)
{
	if (p->row >= p->h)
		return false;
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	wmove(p->w, p->row, 2);
	tr_put_text(p->w, buf, strlen(buf), p->width - 3, p->flags, p->attrs[role], p->attrs[ROLE_CTRL]);
	p->row++;
	return true;
}

static void title(struct pen *p, const char *t)
{
	if (p->row > 0 && p->row < p->h)
		p->row++; /* a blank line before each section */
	if (p->row >= p->h)
		return;
	wmove(p->w, p->row, 1);
	tr_put_text(p->w, t, strlen(t), p->width - 2, p->flags, p->attrs[ROLE_SIDE_TITLE], p->attrs[ROLE_CTRL]);
	p->row++;
}

static void fmt_tps(double v, char *buf, size_t n)
{
	if (v < 0)
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, "%.1f tok/s", v);
}

static void bar(struct pen *p, uint32_t used, uint32_t size)
{
	if (p->row >= p->h)
		return;
	int bw = p->width - 4;
	if (bw < 4)
		return;
	int fill = size ? (int)((uint64_t)used * (uint64_t)bw / size) : 0;
	if (fill > bw)
		fill = bw;
	if (used > 0 && fill == 0)
		fill = 1;
	wmove(p->w, p->row, 2);
	wattrset(p->w, (attr_t)p->attrs[ROLE_BAR_USED]);
	for (int i = 0; i < fill; i++)
		waddch(p->w, ' ');
	wattrset(p->w, (attr_t)p->attrs[ROLE_BAR_FREE]);
	for (int i = fill; i < bw; i++)
		waddch(p->w, '.');
	wattrset(p->w, A_NORMAL);
	p->row++;
}

/* TEXT on at most MAX_LINES lines. */
static void wrapped(struct pen *p, const char *text, size_t max_lines)
{
	struct text_lines tl = {0};
	if (text_wrap(text, strlen(text), NULL, p->width - 3, p->flags, &tl) == 0) {
		for (size_t i = 0; i < tl.n && i < max_lines; i++)
			line(p, ROLE_SIDE, "%.*s", (int)(tl.v[i].end - tl.v[i].start), text + tl.v[i].start);
	}
	text_lines_free(&tl);
}

static void section_model(struct pen *p, const struct tui_status *st)
{
	title(p, "Model");
	if (st->phase == PH_NOMODEL && !st->have_info) {
		line(p, ROLE_SIDE, "none (F2 picks one)");
		return;
	}
	wrapped(p, st->model, 2); /* a long name takes two lines */
	if (!st->have_info) {
		if (st->phase == PH_LOADING)
			line(p, ROLE_SIDE, "loading %3.0f%%", (double)st->progress * 100.0);
		return;
	}
	/* where it runs: "remote: HOST:PORT" as the engine says, else on this machine */
	const char *be = st->info.backend[0] ? st->info.backend : "cpu";
	bool remote = strncmp(be, "remote", 6) == 0;
	char where[128], par[64];
	snprintf(where, sizeof where, remote ? "%s" : "local, %s", be);
	wrapped(p, where, 2);
	/* what is known: a server may not say its size or quantisation */
	models_fmt_params(st->info.n_params, par, sizeof par);
	if (!remote)
		line(p, ROLE_SIDE, "%s, %s, %s", st->info.arch, par, st->info.quant);
	else if (st->info.n_params)
		line(p, ROLE_SIDE, "%s, %s", par, st->info.quant);
	if (remote)
		line(p, ROLE_SIDE, "context %" PRIu32 ", server-side", st->info.n_ctx);
	else
		line(p, ROLE_SIDE, "context %" PRIu32 ", %s", st->info.n_ctx, st->info.template_family);
	if (st->info.draft[0]) {
		char d[160];
		snprintf(d, sizeof d, "draft: %s", st->info.draft);
		wrapped(p, d, 2);
	}
}

/* Speculative decoding: how many guesses held, tokens per pass, and the
 * speed against plain steps; shown once a reply used it. */
static void section_spec(struct pen *p, const struct tui_status *st)
{
	if (!st->spec[0])
		return;
	title(p, "Speculative");
	if (st->spec_drafted)
		line(p, ROLE_SIDE, "%s  %.0f%% of %" PRIu32, st->spec, 100.0 * st->spec_accepted / st->spec_drafted,
		     st->spec_drafted);
	else
		line(p, ROLE_SIDE, "%s  no guesses yet", st->spec);
	if (st->spec_passes) {
		if (st->spec_speedup > 0)
			line(p, ROLE_SIDE, "%.1f tok/pass  %.2fx",
			     (double)(st->spec_accepted + st->spec_passes) / st->spec_passes, st->spec_speedup);
		else
			line(p, ROLE_SIDE, "%.1f tok/pass",
			     (double)(st->spec_accepted + st->spec_passes) / st->spec_passes);
	}
	if (st->spec_paused)
		line(p, ROLE_WARN, "off here: did not pay");
}

static void section_speed(struct pen *p, const struct tui_status *st)
{
	char a[64];
	title(p, "Speed");
	fmt_tps(st->prefill_tps, a, sizeof a);
	line(p, ROLE_SIDE, "prefill  %s", a);
	fmt_tps(st->decode_tps, a, sizeof a);
	line(p, ROLE_SIDE, "decode   %s", a);
	if (st->ttft_ms >= 0)
		line(p, ROLE_SIDE, "1st tok  %.0f ms", st->ttft_ms);
	else
		line(p, ROLE_SIDE, "1st tok  -");
	if (st->think_tokens) {
		/* a thinking model: reasoning and answer apart, the budget as a bar */
		line(p, ROLE_SIDE, "reason   %" PRIu32 " tok", st->think_tokens);
		if (st->think_budget > 0)
			bar(p, st->think_tokens, (uint32_t)st->think_budget);
		line(p, ROLE_SIDE, "answer   %" PRIu32 " tok",
		     st->gen_tokens > st->think_tokens ? st->gen_tokens - st->think_tokens : 0);
	} else {
		line(p, ROLE_SIDE, "reply    %" PRIu32 " tok", st->gen_tokens);
	}
}

static void section_context(struct pen *p, const struct tui_status *st)
{
	title(p, "Context");
	uint32_t size = st->ctx_size ? st->ctx_size : st->have_info ? st->info.n_ctx : 0;
	bar(p, st->ctx_used, size);
	line(p, ROLE_SIDE, "%" PRIu32 " / %" PRIu32 " (%.0f%%)", st->ctx_used, size,
	     size ? 100.0 * st->ctx_used / size : 0.0);
	if (st->have_prompt)
		line(p, ROLE_SIDE, "prompt: %" PRIu32 " reused, %" PRIu32 " new", st->prompt_reused,
		     st->prompt_computed);
	else
		line(p, ROLE_SIDE, "prompt: -");
}

static void section_memory(struct pen *p, const struct tui_status *st)
{
	char a[64], b[64], c[64];
	title(p, "Memory");
	models_fmt_bytes(st->weights_bytes, a, sizeof a);
	models_fmt_bytes(st->kv_bytes, b, sizeof b);
	models_fmt_bytes(st->mem_avail, c, sizeof c);
	line(p, ROLE_SIDE, "weights  %s", st->weights_bytes ? a : "-");
	line(p, ROLE_SIDE, "KV cache %s", st->kv_bytes ? b : "-");
	if (st->draft_bytes) {
		models_fmt_bytes(st->draft_bytes, c, sizeof c);
		line(p, ROLE_SIDE, "draft    %s", c);
	}
	line(p, ROLE_SIDE, "free RAM %s", st->mem_avail ? c : "-");
	if (st->vram_total) {
		/* the whole device's use, and ttychat's weights + KV + scratch */
		models_fmt_bytes(st->vram_total > st->vram_free ? st->vram_total - st->vram_free : 0, a, sizeof a);
		models_fmt_bytes(st->vram_total, b, sizeof b);
		models_fmt_bytes(st->vram_ours, c, sizeof c);
		line(p, ROLE_SIDE, "VRAM %s/%s", a, b);
		line(p, ROLE_SIDE, "  (ours %s)", c);
	}
}

static void section_sampling(struct pen *p, const struct tui_status *st)
{
	title(p, "Sampling");
	line(p, ROLE_SIDE, "temp %.2f  top-k %" PRId32, (double)st->s.temperature, st->s.top_k);
	line(p, ROLE_SIDE, "top-p %.2f  min-p %.2f", (double)st->s.top_p, (double)st->s.min_p);
	if (st->max_tokens > 0)
		line(p, ROLE_SIDE, "repeat %.2f  max %" PRId32, (double)st->s.repeat_penalty, st->max_tokens);
	else
		line(p, ROLE_SIDE, "repeat %.2f", (double)st->s.repeat_penalty);
	if (st->advice[0])
		line(p, ROLE_SIDE, "model's: %s", st->advice);
}

void sidebar_draw(WINDOW *w, const struct tui_status *st, const unsigned long *attrs, unsigned text_flags)
{
	struct pen p = {.w = w, .attrs = attrs, .flags = text_flags};
	getmaxyx(w, p.h, p.width);
	werase(w);
	wattrset(w, (attr_t)attrs[ROLE_BORDER]);
	mvwvline(w, 0, 0, ACS_VLINE, p.h);
	wattrset(w, A_NORMAL);
	section_model(&p, st);
	section_speed(&p, st);
	section_spec(&p, st);
	section_context(&p, st);
	section_memory(&p, st);
	section_sampling(&p, st);
	if (st->chat_state) {
		title(&p, "Chat");
		if (st->chat_title)
			line(&p, ROLE_SIDE, "%s", st->chat_title[0] ? st->chat_title : "(new)");
		line(&p, st->chat_bad ? ROLE_WARN : ROLE_SIDE, "%s", st->chat_state);
	}
}

static const char *phase_text(const struct tui_status *st, bool narrow, char *buf, size_t n)
{
	switch (st->phase) {
	case PH_NOMODEL: return narrow ? "no model (F2)" : "no model: F2 picks one";
	case PH_LOADING:
		snprintf(buf, n, narrow ? "loading %.0f%%" : "loading %.0f%%, Esc cancels", (double)st->progress * 100.0);
		return buf;
	case PH_PREFILL:
		if (st->progress > 0 && st->progress < 1)
			snprintf(buf, n, narrow ? "reading prompt %.0f%%" : "reading the prompt %.0f%%, Esc stops",
				 (double)st->progress * 100.0);
		else
			snprintf(buf, n, narrow ? "reading prompt" : "reading the prompt, Esc stops");
		return buf;
	case PH_STREAM: return narrow ? "replying" : "replying, Esc stops";
	case PH_IDLE: return "ready";
	}
	return "";
}

void statusbar_draw(WINDOW *w, const struct tui_status *st, bool narrow, const unsigned long *attrs,
		    unsigned text_flags)
{
	int h, width;
	getmaxyx(w, h, width);
	(void)h;
	char buf[512], ph[96], a[32], m[32];
	const char *state = st->note ? st->note : phase_text(st, narrow, ph, sizeof ph);
	if (narrow) {
		fmt_tps(st->decode_tps, a, sizeof a);
		models_fmt_bytes(st->mem_avail, m, sizeof m);
		uint32_t size = st->ctx_size ? st->ctx_size : st->have_info ? st->info.n_ctx : 0;
		/* most wanted first: a 40-column terminal shows up to the context */
		snprintf(buf, sizeof buf, " %s | %s | ctx %" PRIu32 "/%" PRIu32 " | %" PRIu32 " tok | %s | free %s", state,
			 a, st->ctx_used, size, st->gen_tokens, st->model, st->mem_avail ? m : "-");
	} else if (!st->note && st->phase == PH_IDLE && st->have_info && st->info.notice[0]) {
		/* a load notice (CUDA asked for but not usable, fewer GPU
		 * layers) stays beside "ready" */
		snprintf(buf, sizeof buf, " %s; %.255s", state, st->info.notice);
	} else {
		snprintf(buf, sizeof buf, " %s", state);
	}
	wattrset(w, (attr_t)attrs[ROLE_STATUS]);
	wmove(w, 0, 0);
	int used = tr_put_text(w, buf, strlen(buf), width, text_flags, attrs[ROLE_STATUS], attrs[ROLE_CTRL]);
	wattrset(w, (attr_t)attrs[ROLE_STATUS]);
	for (int i = used; i < width; i++)
		waddch(w, ' ');
	wattrset(w, A_NORMAL);
}
