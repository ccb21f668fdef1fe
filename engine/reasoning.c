/*
 * reasoning.c - the reasoning/answer split of a thinking model's reply.
 *
 * One small state machine serves every family: ANSWER, THOUGHT, and HEADER
 * (a channel name being read, hidden).  Each format is a table of markers,
 * each with the move it makes: open a block, close it, start a header, or
 * end a header and enter the channel it names.  Gemma 4's header ends at
 * its first newline instead of at a marker.
 *
 * Text is scanned byte by byte with a hold-back buffer: a byte that may
 * start a marker matched in the text waits until the marker completes or
 * cannot; every other byte goes out at once, gathered into runs of one
 * part so that a token's text is one callback, not one per byte.  Markers
 * are all shorter than the hold buffer, so it never overflows.
 */
#include "reasoning.h"

#include <stdio.h>
#include <string.h>

enum move { MV_OPEN, MV_CLOSE, MV_HEADER, MV_BODY };

struct marker {
	const char *text;
	enum move move;
};

struct format {
	const char *name;
	struct marker m[REASONING_MAX_MARKERS];
	unsigned n;
	bool header_nl;            /* the header ends at a newline (Gemma 4) */
	const char *close;
};

static const struct format formats[REASONING_FORMAT_COUNT] = {
	[REASONING_NONE] = {"", {{NULL, MV_OPEN}}, 0, false, ""},
	[REASONING_THINK] = {"think", {{"<think>", MV_OPEN}, {"</think>", MV_CLOSE}}, 2, false, "\n</think>\n\n"},
	[REASONING_BRACKET] = {"bracket", {{"[THINK]", MV_OPEN}, {"[/THINK]", MV_CLOSE}}, 2, false, "[/THINK]"},
	[REASONING_GEMMA4] = {"gemma4", {{"<|channel>", MV_HEADER}, {"<channel|>", MV_CLOSE}}, 2, true, "<channel|>"},
	[REASONING_HARMONY] = {"harmony",
			       {{"<|start|>", MV_HEADER},
				{"<|channel|>", MV_HEADER},
				{"<|message|>", MV_BODY},
				{"<|end|>", MV_CLOSE}},
			       4,
			       false,
			       "<|end|><|start|>assistant<|channel|>final<|message|>"},
};

static const struct format *fmt_of(enum reasoning_format f)
{
	return (unsigned)f < REASONING_FORMAT_COUNT ? &formats[f] : &formats[REASONING_NONE];
}

enum reasoning_format reasoning_detect(const char *t)
{
	if (!t)
		return REASONING_NONE;
	if (strstr(t, "<|channel|>") && strstr(t, "<|message|>"))
		return REASONING_HARMONY;
	if (strstr(t, "<|channel>") && strstr(t, "<channel|>"))
		return REASONING_GEMMA4;
	if (strstr(t, "[THINK]") && strstr(t, "[/THINK]"))
		return REASONING_BRACKET;
	if (strstr(t, "<think>") || strstr(t, "</think>"))
		return REASONING_THINK;
	return REASONING_NONE;
}

const char *reasoning_format_name(enum reasoning_format f) { return fmt_of(f)->name; }

unsigned reasoning_n_markers(enum reasoning_format f) { return fmt_of(f)->n; }

const char *reasoning_marker(enum reasoning_format f, unsigned i)
{
	const struct format *F = fmt_of(f);
	return i < F->n ? F->m[i].text : NULL;
}

const char *reasoning_close_text(enum reasoning_format f) { return fmt_of(f)->close; }

void reasoning_init(struct reasoning *p, enum reasoning_format f, unsigned token_mask)
{
	memset(p, 0, sizeof *p);
	p->fmt = (unsigned)f < REASONING_FORMAT_COUNT ? f : REASONING_NONE;
	p->token_mask = token_mask;
}

/* Output gathered into runs of one part. */
struct out {
	reasoning_emit_fn emit;
	void *ctx;
	enum reasoning_part part;
	size_t n;
	char buf[256];
};

static void out_flush(struct out *o)
{
	if (o->n && o->emit)
		o->emit(o->ctx, o->part, o->buf, o->n);
	o->n = 0;
}

static void put(struct reasoning *p, struct out *o, char c);

/* Harmony: the tool a header H[0..N) calls ("to=functions.NAME"): NAME's
 * length (0: none), *NAME where it starts. */
static size_t recipient(const char *h, size_t n, const char **name)
{
	for (size_t i = 0; i + 13 <= n; i++)
		if (memcmp(h + i, "to=functions.", 13) == 0) {
			size_t e = i + 13;
			while (e < n && h[e] != ' ' && h[e] != '<' && h[e] != '\n')
				e++;
			*name = h + i + 13;
			return e - (i + 13);
		}
	return 0;
}

static void enter_channel(struct reasoning *p, struct out *o)
{
	/* harmony's "analysis", Gemma 4's "thought"; any other is the answer */
	const char *h = p->header;
	size_t n = p->header_len;
	bool thought = (n >= 8 && memcmp(h, "analysis", 8) == 0) || (n >= 7 && memcmp(h, "thought", 7) == 0);
	const char *name = NULL;
	size_t nl = recipient(h, n, &name);
	if (!nl) {
		name = p->to;
		nl = p->to_len;
	}
	p->state = thought ? RS_THOUGHT : RS_ANSWER;
	p->header_len = 0;
	p->to_len = 0;
	if (nl && !thought) {
		/* a tool call: its recipient goes with its arguments */
		char call[sizeof p->header + 64];
		int k = snprintf(call, sizeof call, "<|channel|>commentary to=functions.%.*s<|message|>", (int)nl, name);
		for (int i = 0; i < k && (size_t)i < sizeof call; i++)
			put(p, o, call[i]);
	}
}

/* One byte of text in the current state. */
static void put(struct reasoning *p, struct out *o, char c)
{
	if (p->state == RS_HEADER) {
		if (fmt_of(p->fmt)->header_nl && c == '\n')
			enter_channel(p, o);
		else if (p->header_len < sizeof p->header)
			p->header[p->header_len++] = c;
		return;
	}
	enum reasoning_part part = p->state == RS_THOUGHT ? REASONING_THOUGHT : REASONING_ANSWER;
	if (o->n && (o->part != part || o->n == sizeof o->buf))
		out_flush(o);
	o->part = part;
	o->buf[o->n++] = c;
}

static void act(struct reasoning *p, struct out *o, enum move mv)
{
	switch (mv) {
	case MV_OPEN:
		p->state = RS_THOUGHT;
		break;
	case MV_CLOSE:
		p->state = RS_ANSWER;
		break;
	case MV_HEADER: {
		/* harmony: <|start|>assistant to=functions.X<|channel|>...: the
		 * tool named before the channel header */
		const char *name = NULL;
		size_t nl = p->state == RS_HEADER ? recipient(p->header, p->header_len, &name) : 0;
		if (nl && nl <= sizeof p->to) {
			memcpy(p->to, name, nl);
			p->to_len = nl;
		} else if (p->state != RS_HEADER) {
			p->to_len = 0;
		}
		p->state = RS_HEADER;
		p->header_len = 0;
		break;
	}
	case MV_BODY:
		if (p->state == RS_HEADER)
			enter_channel(p, o);
		else
			p->state = RS_ANSWER;
		break;
	}
}

/* Bit i of the markers matched in text. */
static unsigned text_markers(const struct reasoning *p, bool all)
{
	unsigned n = fmt_of(p->fmt)->n;
	unsigned every = (1u << n) - 1;
	return all ? every : every & ~p->token_mask;
}

static void scan(struct reasoning *p, struct out *o, const char *s, size_t n, unsigned tm)
{
	const struct format *F = fmt_of(p->fmt);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (p->hold_len == 0) {
			bool may = false;
			for (unsigned k = 0; k < F->n && !may; k++)
				may = (tm >> k & 1) && F->m[k].text[0] == c;
			if (!may) {
				put(p, o, c);
				continue;
			}
		}
		p->hold[p->hold_len++] = c;
		while (p->hold_len) {
			bool partial = false;
			int full = -1;
			for (unsigned k = 0; k < F->n; k++) {
				if (!(tm >> k & 1))
					continue;
				size_t ml = strlen(F->m[k].text);
				if (p->hold_len > ml || memcmp(F->m[k].text, p->hold, p->hold_len) != 0)
					continue;
				if (p->hold_len == ml)
					full = (int)k;
				else
					partial = true;
			}
			if (full >= 0) {
				p->hold_len = 0;
				act(p, o, F->m[full].move);
				break;
			}
			if (partial)
				break;
			put(p, o, p->hold[0]);
			memmove(p->hold, p->hold + 1, --p->hold_len);
		}
	}
}

static void release_hold(struct reasoning *p, struct out *o)
{
	size_t n = p->hold_len;
	p->hold_len = 0;
	for (size_t i = 0; i < n; i++)
		put(p, o, p->hold[i]);
}

void reasoning_begin(struct reasoning *p, const char *text, size_t len)
{
	struct out o = {0};
	p->state = RS_ANSWER;
	p->hold_len = 0;
	p->header_len = 0;
	p->to_len = 0;
	if (p->fmt == REASONING_NONE || !text)
		return;
	scan(p, &o, text, len, text_markers(p, true));
	p->hold_len = 0;   /* a marker cut off at the end of the prompt is prompt */
}

void reasoning_feed(struct reasoning *p, const char *s, size_t n, bool special, reasoning_emit_fn emit,
		    void *ctx)
{
	struct out o = {.emit = emit, .ctx = ctx};
	const struct format *F = fmt_of(p->fmt);
	if (p->fmt == REASONING_NONE) {
		if (emit && n)
			emit(ctx, REASONING_ANSWER, s, n);
		return;
	}
	if (special) {
		release_hold(p, &o);
		for (unsigned k = 0; k < F->n; k++)
			if (strlen(F->m[k].text) == n && memcmp(F->m[k].text, s, n) == 0) {
				out_flush(&o);
				act(p, &o, F->m[k].move);
				out_flush(&o);
				return;
			}
		for (size_t i = 0; i < n; i++)
			put(p, &o, s[i]);
	} else {
		scan(p, &o, s, n, text_markers(p, false));
	}
	out_flush(&o);
}

void reasoning_flush(struct reasoning *p, reasoning_emit_fn emit, void *ctx)
{
	struct out o = {.emit = emit, .ctx = ctx};
	release_hold(p, &o);
	out_flush(&o);
}

bool reasoning_thinking(const struct reasoning *p) { return p->state == RS_THOUGHT; }

void reasoning_force_answer(struct reasoning *p, reasoning_emit_fn emit, void *ctx)
{
	reasoning_flush(p, emit, ctx);
	p->state = RS_ANSWER;
	p->header_len = 0;
}

void reasoning_loop_init(struct reasoning_loop *l) { memset(l, 0, sizeof *l); }

uint32_t reasoning_loop_add(struct reasoning_loop *l, int32_t id)
{
	const uint32_t P = REASONING_LOOP_MAX_PERIOD;
	uint32_t found = 0;
	for (uint32_t p = 1; p <= P; p++) {
		if (p <= l->n && l->ring[(l->n - p) % P] == id)
			l->run[p]++;
		else
			l->run[p] = 0;
		if (!found && l->run[p] >= 2 * p && l->run[p] + p >= REASONING_LOOP_MIN_SPAN)
			found = p;
	}
	l->ring[l->n % P] = id;
	l->n++;
	return found;
}
