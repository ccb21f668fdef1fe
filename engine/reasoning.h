/*
 * reasoning.h - splitting a thinking model's reply into reasoning and
 * answer (engine-internal).
 *
 * Each family marks its reasoning its own way:
 *   THINK    <think> ... </think> (Qwen3, DeepSeek-R1, SmolLM3, GLM, MiniMax,
 *            Nemotron ...); the template may open the block itself in the
 *            generation prompt;
 *   BRACKET  [THINK] ... [/THINK] (Ministral / Magistral reasoning);
 *   GEMMA4   <|channel>NAME\n ... <channel|> (Gemma 4: the channel "thought");
 *   HARMONY  <|start|>assistant<|channel|>NAME<|message|> ... <|end|> (gpt-oss:
 *            the channel "analysis" is reasoning; "final" and "commentary"
 *            are the answer; the headers are hidden).
 * The format comes from the chat template (reasoning_detect()), and each
 * marker is matched the way the tokenizer holds it: a marker that is one
 * token of the vocabulary is recognised only when that token is fed as a
 * special piece (so the same characters written in ordinary text stay
 * text), a marker the vocabulary lacks is recognised in the text, with a
 * possible start of one held back until it is decided.
 *
 * A parser is a plain struct, no heap: reasoning_init(), then
 * reasoning_begin() with the generation prompt (a template that opens the
 * block there starts the reply inside it), then reasoning_feed() per
 * piece and reasoning_flush() at the end.  Output goes to a callback as
 * runs of (part, text), in order; markers and headers are not output,
 * but for a harmony header that calls a tool ("to=functions.NAME"): its
 * message is the call's arguments, and the answer gets it as
 * "<|channel|>commentary to=functions.NAME<|message|>" then the arguments
 * (engine_tools_parse()'s "harmony" reads it).
 *
 * A loop detector (struct reasoning_loop) watches token ids for the same
 * span repeating.
 *
 * Threads: none of its own; a parser belongs to one thread.  Nothing here
 * allocates, prints or exits.
 */
#ifndef TTYCHAT_REASONING_H
#define TTYCHAT_REASONING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum reasoning_format {
	REASONING_NONE = 0,        /* no reasoning: everything is answer */
	REASONING_THINK,
	REASONING_BRACKET,
	REASONING_GEMMA4,
	REASONING_HARMONY,
	REASONING_FORMAT_COUNT
};

enum reasoning_part { REASONING_ANSWER = 0, REASONING_THOUGHT = 1 };

#define REASONING_MAX_MARKERS 4

/* The format a chat template writes (NULL: none), from the markers it
 * contains; REASONING_NONE when it has none. */
enum reasoning_format reasoning_detect(const char *template_text);
/* "think", "bracket", "gemma4", "harmony"; "" for NONE. */
const char *reasoning_format_name(enum reasoning_format f);
/* The format's markers: their count, and marker I's text (NULL past the
 * end). */
unsigned reasoning_n_markers(enum reasoning_format f);
const char *reasoning_marker(enum reasoning_format f, unsigned i);
/* What ends a reasoning block and starts the answer, the family's way
 * ("\n</think>\n\n", "[/THINK]", "<channel|>", and for harmony
 * "<|end|><|start|>assistant<|channel|>final<|message|>"); "" for NONE. */
const char *reasoning_close_text(enum reasoning_format f);

typedef void (*reasoning_emit_fn)(void *ctx, enum reasoning_part part, const char *s, size_t n);

enum reasoning_state { RS_ANSWER = 0, RS_THOUGHT, RS_HEADER };

struct reasoning {
	enum reasoning_format fmt;
	unsigned token_mask;       /* bit i: marker i is one vocabulary token */
	enum reasoning_state state;
	char hold[32];             /* text mode: a possible start of a marker */
	size_t hold_len;
	char header[96];           /* a channel header being read (hidden) */
	size_t header_len;
	char to[64];               /* harmony: the tool a <|start|> header named (to=functions.NAME) */
	size_t to_len;
};

/* Resets P for format F.  TOKEN_MASK: bit i set when marker i
 * (reasoning_marker(f, i)) is a single token of the vocabulary. */
void reasoning_init(struct reasoning *p, enum reasoning_format f, unsigned token_mask);
/* Sets the state a reply starts in from the text before it (the
 * generation prompt, or a whole raw prompt), matched as text: inside an
 * opened block the reply starts as reasoning; after "<|start|>assistant"
 * it starts in a harmony header. */
void reasoning_begin(struct reasoning *p, const char *text, size_t len);
/* Feeds a piece of the reply: ordinary text (SPECIAL false) or the text of
 * one special token (SPECIAL true: a marker when it equals one, else
 * text).  EMIT (may be NULL: output dropped) receives the runs it
 * completes. */
void reasoning_feed(struct reasoning *p, const char *s, size_t n, bool special, reasoning_emit_fn emit,
		    void *ctx);
/* Outputs what is held back (the reply ended). */
void reasoning_flush(struct reasoning *p, reasoning_emit_fn emit, void *ctx);
/* True while the reply is inside a reasoning block (or a header that may
 * open one). */
bool reasoning_thinking(const struct reasoning *p);
/* The block is closed from outside (a budget, "answer now"): what is held
 * back goes out as reasoning, and the parser is in the answer from here. */
void reasoning_force_answer(struct reasoning *p, reasoning_emit_fn emit, void *ctx);

/* ---- loops ----------------------------------------------------------------
 * The same span of P tokens (1 <= P <= REASONING_LOOP_MAX_PERIOD) three
 * times in a row, and at least REASONING_LOOP_MIN_SPAN tokens in all. */
#define REASONING_LOOP_MAX_PERIOD 256
#define REASONING_LOOP_MIN_SPAN 64

struct reasoning_loop {
	int32_t ring[REASONING_LOOP_MAX_PERIOD];
	uint32_t run[REASONING_LOOP_MAX_PERIOD + 1]; /* run[p]: latest tokens equal to the one p before */
	uint64_t n;
};

void reasoning_loop_init(struct reasoning_loop *l);
/* Adds token ID; the period of a loop it completes (> 0), else 0. */
uint32_t reasoning_loop_add(struct reasoning_loop *l, int32_t id);

#endif
