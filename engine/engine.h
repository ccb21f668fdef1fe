/*
 * engine.h - the ttychat inference engine: the one public header.
 *
 * An engine is a worker thread that owns every model, tensor, KV cache and
 * scratch buffer.  Callers (the TUI, one-shot mode, the benchmark, tests)
 * never touch model state: they post requests, which return at once, and
 * read events from a queue.  engine_event_fd() becomes readable whenever
 * events are waiting, so a UI can poll() it beside the terminal.
 *
 * A conversation is identified by a caller-chosen 64-bit id.  Each submit
 * carries the WHOLE conversation (all messages so far); the engine renders it
 * with the model's chat template, tokenises it, and reuses the longest
 * prefix already in that conversation's KV cache, so appending a turn
 * prefills only the new tokens and regenerating or editing an earlier
 * message truncates the cache to the common prefix.
 *
 * Threads: every function here may be called from any ONE thread (the
 * owner) except engine_cancel(), which any thread or signal-safe context
 * may call.  Strings passed in are copied before the call returns.
 *
 * Return codes: functions returning int give 0 (or a positive request id)
 * on success and a negative enum engine_status on failure; the message of
 * the last failure is in engine_last_error().
 *
 * Every request but engine_drop_conv() ends in one event that is never
 * lost, out of memory included: LOADED, UNLOADED, DONE, CONV_EXPORT or
 * CONV_IMPORT, or ERROR (its room is set aside when the request is queued;
 * a request that cannot have it returns ENGINE_E_NOMEM at once).  Memory
 * running out during a request is an ERROR with ENGINE_E_NOMEM, never a
 * stop: the TOKENs delivered before it are the partial reply, and the
 * engine takes the next request as usual.  TOKEN text that cannot be
 * queued goes out with the next piece; a progress event may be dropped.
 *
 * Remote models: engine_load() with a path "remote:" followed by a JSON
 * object ({"base_url": "http://host:8080/v1", "model": "NAME", "api_key_env":
 * "VAR" or "api_key_file": "FILE", "headers": {...}, "timeout_s": N, ...};
 * engine/remote.h lists the keys) serves replies from an OpenAI-compatible
 * server instead of a local file.  The API is the same: LOADED carries info
 * with arch "remote", name = the server's model id and backend "remote:
 * HOST"; a submit streams TOKEN events and ends with DONE (stats from the
 * server's usage/timings, else measured here: TTFT, tok/s) or ERROR.  The
 * chat template is the server's; there is no KV cache here (export gives
 * an empty blob, import restores 0 tokens).  A network failure after some
 * TOKEN events (a stream cut mid-reply, a stalled stream, a malformed event)
 * is an ERROR event (ENGINE_E_NETWORK or ENGINE_E_SERVER): the TOKENs already
 * delivered are the partial reply, for the caller to keep and mark.
 */
#ifndef TTYCHAT_ENGINE_H
#define TTYCHAT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum engine_status {
	ENGINE_OK = 0,
	ENGINE_E_INVAL = -1,    /* bad argument */
	ENGINE_E_NOMEM = -2,    /* out of memory */
	ENGINE_E_IO = -3,       /* cannot open/read a file */
	ENGINE_E_FORMAT = -4,   /* malformed or unsupported model file */
	ENGINE_E_NOMODEL = -5,  /* no model loaded */
	ENGINE_E_BUSY = -6,     /* (unused by the queueing API; kept for ABI) */
	ENGINE_E_CONTEXT = -7,  /* the prompt does not fit the context */
	ENGINE_E_TEMPLATE = -8, /* chat template failed and no fallback */
	ENGINE_E_CANCELLED = -9,
	ENGINE_E_THREAD = -10,  /* could not start a thread */
	ENGINE_E_NETWORK = -11, /* remote: cannot reach the server, TLS, timeout, stream cut */
	ENGINE_E_SERVER = -12,  /* remote: the server answered an error or malformed data */
};

typedef struct engine engine;

/* KV cache types, for K and V each.  F16 and Q8_0 .. IQ4_NL are ggml's
 * block formats (32 elements a block); Q3R is ttychat's own 3-bit type
 * (64 elements a block, 3.25 bits an element, engine/kvquant.h).  The
 * quantised ones are stored rotated by a seeded Walsh-Hadamard transform
 * per head unless the load asks otherwise.  A model whose head size is not
 * a multiple of the type's block cannot use it: the load fails with one
 * line saying so. */
enum engine_kv_type {
	ENGINE_KV_F16 = 0, ENGINE_KV_Q8_0 = 1, ENGINE_KV_Q5_0 = 2, ENGINE_KV_Q5_1 = 3,
	ENGINE_KV_Q4_0 = 4, ENGINE_KV_Q4_1 = 5, ENGINE_KV_IQ4_NL = 6, ENGINE_KV_Q3R = 7,
	ENGINE_KV_COUNT = 8
};
/* "f16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1", "iq4_nl", "q3r"; "?" else. */
const char *engine_kv_type_name(int type);
/* The type NAME names (as above), or -1. */
int engine_kv_type_parse(const char *name);
/* The names above, comma separated ("f16, q8_0, ...") for messages. */
#define ENGINE_KV_TYPE_NAMES "f16, q8_0, q5_0, q5_1, q4_0, q4_1, iq4_nl, q3r"
/* Bytes of one element of TYPE in sixty-fourths (F16 128, Q8_0 68, Q3R 26),
 * 0 for an unknown type: bytes per position of a cache scale by it. */
uint32_t engine_kv_type_bytes64(int type);

/* Where a local model runs.  AUTO: on a CUDA GPU when one is usable, else
 * on the CPU without a word.  CUDA: the same, but when no GPU can be used
 * the model still loads, on the CPU, and LOADED carries a one-line notice
 * (info.notice, "no CUDA device: ...; running on the CPU"): never a
 * failure.  CPU: never touches the GPU. */
enum engine_device { ENGINE_DEVICE_AUTO = 0, ENGINE_DEVICE_CPU = 1, ENGINE_DEVICE_CUDA = 2 };
#define ENGINE_GPU_LAYERS_AUTO 0   /* as many layers as fit free VRAM */
#define ENGINE_GPU_LAYERS_NONE (-1)
enum engine_overflow { ENGINE_OVERFLOW_DROP_OLDEST = 0, ENGINE_OVERFLOW_ERROR = 1 };

struct engine_params {
	int n_threads;             /* compute threads; 0 = number of cores */
	size_t kv_budget_bytes;    /* all conversations' KV caches; 0 = 1 GiB */
};

struct engine_load_opts {
	uint32_t n_ctx;            /* 0 = min(model's training context, 4096) */
	enum engine_kv_type kv_type;   /* K's cache type, and V's unless kv_type_v is set */
	int kv_type_v;                 /* V's: 0 = as kv_type, else an engine_kv_type + 1 */
	bool kv_no_rotate;             /* store quantised K/V unrotated (default: rotated) */
	enum engine_overflow overflow;
	const char *template_override; /* Jinja text replacing the file's; NULL = file's */
	enum engine_device device;  /* AUTO (0) by default */
	/* layers on the GPU, from the first: ENGINE_GPU_LAYERS_AUTO (0, the
	 * default) = as many as fit free VRAM with a safety margin (512 MiB +
	 * 5% of the device), the KV cache for n_ctx included; N > 0 = the
	 * first N (fewer when they do not fit, with a notice);
	 * ENGINE_GPU_LAYERS_NONE (-1) = none, as device CPU.  (The command
	 * line's --gpu-layers counts -1 as auto and 0 as none.)  With every
	 * layer on the GPU the output norm and matrix run there too. */
	int gpu_layers;
	/* A GGUF whose vocabulary is the model's, loaded beside it as the
	 * drafter of speculative decoding (engine_gen_opts.spec); NULL: none.
	 * A vocabulary that differs fails the load with one line naming the
	 * first difference. */
	const char *draft;
};

/* Speculative decoding: guessed tokens verified in one batched pass of the
 * model.  Replies are the same tokens (temperature 0) or the same
 * distribution (above) as without: only the speed changes.
 *   AUTO   the draft model when one is loaded, else n-gram lookup (tokens
 *          copied from the prompt and the reply so far); it switches itself
 *          off in a conversation while the measured speed-up stays under 1
 *          (engine_stats.spec_paused), and back on when a new turn brings a
 *          long new prompt, or after 256 tokens, to measure again;
 *   OFF    plain decoding;
 *   NGRAM, DRAFT  that drafter, never switched off (DRAFT without a draft
 *          model is NGRAM). */
enum engine_spec { ENGINE_SPEC_AUTO = 0, ENGINE_SPEC_OFF, ENGINE_SPEC_NGRAM, ENGINE_SPEC_DRAFT };
/* "auto", "off", "ngram", "draft" as an enum engine_spec, or -1. */
int engine_spec_parse(const char *name);

struct engine_sampling {
	float temperature;         /* <= 0: greedy */
	int32_t top_k;             /* <= 0: off */
	float top_p;               /* >= 1: off */
	float min_p;               /* <= 0: off */
	float repeat_penalty;      /* 1: off */
	float presence_penalty;    /* 0: off */
	float frequency_penalty;   /* 0: off */
	int32_t penalty_last_n;    /* window for the penalties; 0 = 64 */
	uint64_t seed;
};
/* Neutral defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05. */
void engine_sampling_default(struct engine_sampling *s);

struct engine_msg {
	const char *role;          /* "system", "user", "assistant", "tool" */
	const char *content;       /* UTF-8 */
};

/* Thinking: DEFAULT leaves enable_thinking undefined (the template's own
 * default, as transformers renders it); ON and OFF set it true or false.
 * OFF also closes any reasoning block the model opens at once (a budget of
 * 0), for templates that cannot switch thinking off. */
enum engine_think { ENGINE_THINK_DEFAULT = 0, ENGINE_THINK_ON = 1, ENGINE_THINK_OFF = 2 };

struct engine_gen_opts {
	int32_t max_tokens;        /* <= 0: until end of generation or context */
	bool raw;                  /* no template: messages' contents concatenated */
	bool add_generation_prompt;/* normally true */
	const char *const *stop;   /* NULL-terminated stop strings, or NULL; matched in the answer */
	/* NULL, or one entry per message of the submit: NULL, or that whole
	 * message as the template sees it, a JSON object with role, content and
	 * more (an assistant's tool_calls, a tool result's tool_call_id and
	 * name).  The messages' role and content still count for everything
	 * else (context shifts, built-in formats, remote models, which send
	 * only those). */
	const char *const *msg_json;
	/* GBNF grammar (llama.cpp's notation, `root` the start), copied: every
	 * token of the reply keeps it a prefix of a sentence, and the reply
	 * ends (ENGINE_STOP_EOG) only where the sentence is complete.  NULL:
	 * free text.  A grammar that does not compile is an ERROR
	 * (ENGINE_E_INVAL, "grammar: line N: ...") before any prefill; a
	 * remote model refuses it (ENGINE_E_INVAL); a reply that reaches a
	 * point where no token is allowed ends with ENGINE_E_INVAL.  A control
	 * token the grammar admits (a token element such as <[TOOL_CALLS]>) is
	 * written into the answer, which otherwise never shows control tokens. */
	const char *grammar;
	/* With grammar: NULL applies it from the answer's first token.  Else
	 * the grammar is lazy: the answer is free until one of these triggers
	 * (lines of this text; one starting with "^" counts only at the
	 * answer's start, after white space, the "^" not part of it) appears
	 * in it, a tool call's opener such as "<tool_call>"; the grammar's
	 * sentences start with the triggers, so from there the rest must
	 * follow the grammar.  A trigger that is one control token of the
	 * vocabulary (hidden text otherwise) is written into the answer when
	 * sampled.  At most 8 triggers.  When the text from a trigger on is
	 * refused by the grammar (a harmony call whose tool, named before the
	 * trigger, is not one of the grammar's), the reply goes on free. */
	const char *grammar_trigger;
	/* ---- thinking models (see "Reasoning" below) ---- */
	enum engine_think think;
	const char *reasoning_effort; /* template variable reasoning_effort ("low", "medium",
					 "high"), or NULL: undefined */
	const char *template_vars; /* a JSON object of more template variables (an API's
				      chat_template_kwargs), or NULL; think and reasoning_effort
				      override its members of those names */
	int32_t reasoning_budget;  /* > 0: reasoning tokens before the block is closed; <= 0: none */
	const char *reasoning_wrapup; /* written into the reasoning before a budget or
					 engine_answer_now() closes it; NULL: ENGINE_WRAPUP_DEFAULT,
					 "": nothing */
	bool ignore_eos;           /* the model's end-of-turn tokens are never sampled (tests,
				      benchmarks): the reply ends at max_tokens or a stop */
	enum engine_spec spec;     /* speculative decoding; AUTO (0) by default */
	int32_t draft_max;         /* tokens guessed per pass at most: 0 = 8 (the cap; the
				      length adapts to the acceptance below it), at most 16 */
};
#define ENGINE_WRAPUP_DEFAULT "\n\nConsidering the limited time, I have to give the answer based on the thinking so far.\n"

enum engine_event_type {
	ENGINE_EV_LOAD_PROGRESS,   /* progress 0..1 */
	ENGINE_EV_LOADED,          /* model ready: info valid */
	ENGINE_EV_PREFILL_PROGRESS,/* progress 0..1 of this turn's prompt */
	ENGINE_EV_TOKEN,           /* text: next piece of the reply (valid UTF-8) */
	ENGINE_EV_CONTEXT_SHIFT,   /* dropped_turns oldest turns were dropped */
	ENGINE_EV_DONE,            /* reply finished: stats, stop reason */
	ENGINE_EV_ERROR,           /* code + message; the request failed */
	ENGINE_EV_UNLOADED,
	ENGINE_EV_CONV_EXPORT,     /* blob: a conversation's KV cache snapshot */
	ENGINE_EV_CONV_IMPORT,     /* position: tokens restored (0: snapshot not usable) */
	ENGINE_EV_NOTICE,          /* message: something the user should know that is not an
				      error (the GPU failed mid-reply and the engine went on on
				      the CPU); the request goes on */
};

/* Which part of the reply a TOKEN is (see "Reasoning" below). */
enum engine_part { ENGINE_PART_ANSWER = 0, ENGINE_PART_REASONING = 1 };

/* Why the reasoning block ended, when the model did not end it itself. */
enum engine_reasoning_end {
	ENGINE_REASONING_END_MODEL = 0, /* the model closed it, or there was none */
	ENGINE_REASONING_END_BUDGET,    /* reasoning_budget tokens */
	ENGINE_REASONING_END_NOW,       /* engine_answer_now() */
	ENGINE_REASONING_END_LOOP,      /* the same span repeated (a NOTICE says so) */
	ENGINE_REASONING_END_OFF,       /* think OFF and the model opened a block */
};

enum engine_stop_reason {
	ENGINE_STOP_EOG = 0,       /* the model ended its turn */
	ENGINE_STOP_LENGTH,        /* max_tokens reached */
	ENGINE_STOP_STRING,        /* a stop string matched */
	ENGINE_STOP_CANCELLED,     /* engine_cancel() */
	ENGINE_STOP_CONTEXT,       /* context full mid-reply */
};

struct engine_stats {
	uint32_t prompt_tokens;    /* tokens in the rendered prompt */
	uint32_t prompt_reused;    /* of those, found in the KV cache */
	uint32_t prompt_computed;  /* of those, prefilled now */
	uint32_t gen_tokens;
	uint32_t reasoning_tokens; /* of gen_tokens, those sampled inside the reasoning */
	enum engine_reasoning_end reasoning_end;
	double prefill_tps;        /* computed prompt tokens per second */
	double decode_tps;
	double ttft_ms;            /* submit to first token */
	double prefill_ms, decode_ms;
	uint32_t ctx_used, ctx_size;
	uint64_t weights_bytes;    /* mapped weights + repacked copies */
	uint64_t kv_bytes;         /* all conversations' caches */
	uint64_t scratch_bytes;
	/* GPU memory (all 0 on the CPU): the whole device's total and free
	 * bytes (cudaMemGetInfo) and ttychat's own share (weights, KV cache,
	 * scratch).  Also filled in the LOADED event's stats. */
	uint64_t vram_total, vram_free, vram_ours;
	/* With engine_gen_opts.grammar (else 0): compiling it (and, on the
	 * model's first grammar, indexing its vocabulary; counted in ttft_ms),
	 * the time the decode loop spent checking and masking tokens (part of
	 * decode_ms), and the steps whose first pick the grammar refused,
	 * which needed the whole vocabulary masked. */
	double grammar_setup_ms, grammar_ms;
	uint32_t grammar_masks;
	/* Speculative decoding in this reply: the drafter ("ngram", "draft";
	 * "" none ran), verification passes, tokens guessed and accepted
	 * (acceptance = accepted / drafted; tokens per pass = (accepted +
	 * passes) / passes), and the speed-up: tokens per second through the
	 * passes against plain steps timed in the same reply (0: not
	 * measured).  spec_paused: AUTO switched it off, it did not pay. */
	char spec[8];
	uint32_t spec_passes, spec_drafted, spec_accepted;
	double spec_speedup;
	bool spec_paused;
	uint64_t draft_bytes;      /* the draft model's weights, scratch and cache */
};

struct engine_model_info {
	char arch[32];
	char name[128];
	char quant[32];            /* dominant weight type, e.g. "Q4_1" */
	uint64_t n_params;
	uint64_t file_bytes;
	uint32_t n_ctx_train, n_ctx;
	uint32_t n_layer, n_embd, n_head, n_head_kv, n_vocab;
	char template_family[32];  /* "jinja" or the fallback used */
	char tool_format[16];      /* how the template renders and the model writes tool calls
				      (engine_tools_format()); "" when the template takes none */
	char reasoning[16];        /* how replies mark reasoning: "think", "bracket", "gemma4",
				      "harmony"; "" when the model does not think */
	char model_id[33];         /* hex: file size + hash of the GGUF header; names KV snapshots ("" remote) */
	char backend[80];          /* where it runs: "cpu", "cuda: DEVICE (N/M layers)" (the first N
				      of M on the GPU, the rest on the CPU), or "remote: HOST[:PORT]" */
	char draft[128];           /* the draft model's name (engine_load_opts.draft), or "" */
	char notice[256];          /* "" or one line the UIs show: CUDA asked for but not usable
				      ("no CUDA device: ...; running on the CPU"), fewer GPU
				      layers than asked, or than the model has */
};

struct engine_event {
	enum engine_event_type type;
	int request;               /* the id returned by the request */
	uint64_t conv;
	float progress;
	char *text;                /* TOKEN: piece; owned by the event */
	size_t text_len;
	int32_t token;             /* TOKEN: the id (-1: text the engine wrote, a wrap-up phrase) */
	enum engine_part part;     /* TOKEN: reasoning or answer */
	bool drafted;              /* TOKEN: token was a drafter's guess, accepted (speculative
				      decoding; the transcript may tint it) */
	uint32_t position;
	uint32_t dropped_turns;
	enum engine_stop_reason stop;
	struct engine_stats stats;        /* DONE: all; TOKEN: the prompt figures, prefill
					     speed and time to first token so far */
	struct engine_model_info info;
	int code;                  /* ERROR: enum engine_status */
	char message[512];
	void *blob;                /* CONV_EXPORT: snapshot; owned by the event */
	size_t blob_len;
};

/* Starts the worker thread.  NULL on failure, with a message in err. */
engine *engine_create(const struct engine_params *p, char *err, size_t errlen);
/* Cancels whatever runs, stops the thread, frees everything. */
void engine_free(engine *e);

/* Readable while events are queued.  Owned by the engine. */
int engine_event_fd(const engine *e);
/* Pops one event without blocking: true when one was stored in *ev.  Free
 * its payload with engine_event_clear() when done. */
bool engine_event_next(engine *e, struct engine_event *ev);
/* Waits up to timeout_ms (-1: forever) for an event.  False on timeout. */
bool engine_event_wait(engine *e, struct engine_event *ev, int timeout_ms);
void engine_event_clear(struct engine_event *ev);

/* Requests.  Each returns a request id (> 0) whose events carry it, or a
 * negative status when the request itself is malformed. */
int engine_load(engine *e, const char *path, const struct engine_load_opts *o);
int engine_unload(engine *e);
int engine_submit(engine *e, uint64_t conv, const struct engine_msg *msgs, size_t n,
		  const struct engine_sampling *s, const struct engine_gen_opts *g);
/* GBNF grammars (engine_gen_opts.grammar) without a model; any thread.
 * engine_grammar_check(): 0 when grammar[0..len) compiles, else
 * ENGINE_E_INVAL with "line N: ..." in err, or ENGINE_E_NOMEM.  Token
 * texts (<think>) are taken on trust: only a loaded vocabulary resolves
 * them.  engine_grammar_match(): 1 when text[0..tlen) is a complete
 * sentence of the grammar, 0 when not (err says where it stops
 * matching), ENGINE_E_INVAL when the grammar does not compile or names
 * tokens (text alone cannot show a token), ENGINE_E_NOMEM. */
int engine_grammar_check(const char *grammar, size_t len, char *err, size_t errlen);
int engine_grammar_match(const char *grammar, size_t len, const char *text, size_t tlen, char *err, size_t errlen);
/* JSON Schema to a GBNF grammar for engine_gen_opts.grammar: every reply
 * the grammar allows is a JSON value valid under the schema.  0 with *out
 * (malloc'd, the caller frees), or ENGINE_E_INVAL with the reason in err
 * (not JSON; a keyword or a form it cannot honour, named with its place:
 * "at /properties/tags: keyword 'uniqueItems' is not supported") or
 * ENGINE_E_NOMEM.  Any thread; no model needed. */
int engine_json_schema_grammar(const char *schema, size_t len, char **out, char *err, size_t errlen);

/* ---- tool calls (OpenAI "tools") ------------------------------------------
 * A model family writes its calls in its own way; the format names it:
 *   "hermes"  <tool_call>\n{"name": N, "arguments": {...}}\n</tool_call>
 *             (Qwen 2.5/3, Hermes 2/3, SmolLM3, Granite 4)
 *   "llama3"  {"name": N, "parameters": {...}} as the whole reply (Llama 3.x)
 *   "mistral" [TOOL_CALLS][{"name": N, "arguments": {...}, "id": "9 alnum"}]
 *             (Mistral v3 / Nemo; the marker is a control token)
 *   "harmony" <|channel|>commentary to=functions.N<|message|>{...} (gpt-oss;
 *             the answer text the reasoning parser makes of a call's header;
 *             the call's header tokens come before the grammar can apply,
 *             so a call is constrained from its arguments on, and a
 *             "required" choice cannot be forced)
 * engine_tools_format(): the format a chat template renders tools for,
 * read from its text; "" when it takes no tools or writes calls some
 * other way (no template: ""). */
const char *engine_tools_format(const char *template_text);
/* The GBNF grammar that makes FORMAT's calls of the tools in TOOLS_JSON
 * (an OpenAI tools array: [{"type": "function", "function": {"name",
 * "parameters": JSON Schema}}]) valid by construction: every call names one
 * of them (ONLY: just that one, or NULL) and its arguments are valid under
 * its parameters' schema.  PARALLEL allows several calls in a row.  The
 * grammar starts at a call opener; *triggers (static) lists the openers
 * for engine_gen_opts.grammar_trigger (a lazy grammar lets the model answer
 * in text instead): for "hermes" <tool_call> anywhere, and at the start a
 * ```json fence or a bare call object, which small models of the family
 * write.  0, ENGINE_E_INVAL with the reason in err (a tool without a name,
 * a schema it cannot honour: "tool 'x': at /properties/...") or
 * ENGINE_E_NOMEM.  *grammar is malloc'd, the caller's.  Any thread. */
int engine_tools_grammar(const char *format, const char *tools_json, size_t len, const char *only, bool parallel,
			 char **grammar, const char **triggers, char *err, size_t errlen);
/* Splits a reply of FORMAT into its text (*content) and its calls
 * (*calls: a JSON array [{"name": N, "arguments": "JSON text"}, with "id"
 * when the model wrote one], "[]" when none).  A call that does not parse
 * stays in the text: the caller sees what the model wrote.  With
 * TOOLS_JSON (the tools array, or NULL: no check) every call must name
 * one of the tools with arguments valid under its parameters, else the
 * whole reply is text (a call the grammar made always is; one written
 * past it, like a bare JSON object from a small Hermes-family model, may
 * not be).  0, ENGINE_E_INVAL (unknown format) or ENGINE_E_NOMEM; both
 * strings malloc'd, the caller's.  Any thread. */
int engine_tools_parse(const char *format, const char *tools_json, const char *text, size_t len, char **content,
		       char **calls);
/* Forgets a conversation's KV cache. */
int engine_drop_conv(engine *e, uint64_t conv);

/* KV cache snapshots, so a conversation can come back after a restart
 * without recomputing it.  engine_conv_export() answers with a
 * CONV_EXPORT event whose blob holds the conversation's tokens and K/V rows
 * for the loaded model (blob_len 0 when the conversation has no cache);
 * engine_conv_import() copies BLOB and answers with CONV_IMPORT, position =
 * tokens restored, or 0 with a message when the snapshot belongs to another
 * model or is malformed (it is only a cache: the next submit then simply
 * prefills).  Out of memory is an ERROR (ENGINE_E_NOMEM) for either.  The
 * blob is plain data: callers encrypt it before it touches the disk. */
int engine_conv_export(engine *e, uint64_t conv);
int engine_conv_import(engine *e, uint64_t conv, const void *blob, size_t len);

/* Stops the running generation or load within one token and drops queued
 * submits.  Async-signal-safe. */
void engine_cancel(engine *e);

/* Closes the running reply's reasoning now, as a budget would (the wrap-up
 * phrase, then the family's end of the block), so the model answers.  No
 * effect when the reply is not inside reasoning; a call while no reply
 * runs is forgotten (the next reply does not see it).  Async-signal-safe;
 * any thread. */
void engine_answer_now(engine *e);

/* ---- Reasoning ------------------------------------------------------------
 * A thinking model's reply is split into reasoning and answer by the
 * format its chat template writes (info.reasoning): <think>...</think>,
 * [THINK]...[/THINK], Gemma 4's thought channel, gpt-oss harmony channels
 * (analysis is reasoning; final and commentary are answer).  Markers are
 * matched as the vocabulary's tokens when it has them, else in the text;
 * they and channel headers never appear in TOKEN text.  A template that
 * opens the block in the generation prompt starts the reply inside it.
 * Raw prompts (gen.raw) of a model whose template has no format use
 * <think> tags.  A remote model's server splits it itself: its deltas'
 * reasoning_content (or reasoning) become REASONING TOKENs, and the
 * template variables go to it as chat_template_kwargs (reasoning_effort
 * also as itself); budget and answer-now are local-only.  Each TOKEN
 * says its part; one sampled token may give two TOKENs (the end of the
 * reasoning and the start of the answer).  Stop
 * strings are matched in the answer only.  A budget, engine_answer_now()
 * or a loop (a span of up to 256 tokens three times over, at least 64
 * tokens) closes the block: the wrap-up phrase goes out as reasoning
 * (token -1), the family's closing text is fed to the model, and sampling
 * goes on in the answer.  DONE's stats count the reasoning tokens and say
 * how the reasoning ended.  engine_submit() refuses template_vars that
 * are not a JSON object (ENGINE_E_INVAL). */

const char *engine_status_str(int status);
const char *engine_last_error(const engine *e);

/* ---- benchmark ------------------------------------------------------------
 * engine_bench() measures the loaded model the way a chat runs it: in the
 * worker, through the same forward pass, prefill batcher, thread pool and
 * device placement as a reply's (the same evaluation step, with its CPU
 * fallback when the GPU fails), on token ids drawn from SEED, so that no
 * tokenizer or template is in the way:
 *   PP: n_prompt tokens prefilled into an empty cache, in batches sized as a
 *       reply's prefill sizes them (from 64 tokens, doubled up to
 *       ENGINE_BATCH_MAX while a batch is fast, halved down to
 *       ENGINE_BATCH_MIN while one is slow) or of BATCH tokens, then the
 *       first token chosen from the logits (greedy): a time to first token;
 *   TG: n_gen tokens decoded one at a time into an empty cache.
 * An untimed warm-up comes first (the whole prompt once, then up to four
 * decode steps: it faults the weights in and settles the batch size), then
 * REPS timed runs of PP, then of TG.  The request ends with DONE, whose
 * blob holds the timed runs, blob_len / sizeof(struct engine_bench_run)
 * of them in the order they ran (stop EOG; CANCELLED after engine_cancel(),
 * with the runs done so far), or with ERROR: ENGINE_E_NOMODEL (nothing
 * loaded, or a remote model), ENGINE_E_CONTEXT (the loaded context holds
 * fewer than max(n_prompt, n_gen) positions), ENGINE_E_NOMEM, or the
 * forward pass's status.  NOTICE events may come first (the GPU failed and
 * the runs went on on the CPU).  The runs use a KV cache of their own,
 * freed at the end; conversations' caches are left as they were. */
#define ENGINE_BATCH_MIN 16
#define ENGINE_BATCH_MAX 256

struct engine_bench_opts {
	uint32_t n_prompt;         /* tokens of the PP test; 0 skips it */
	uint32_t n_gen;            /* tokens of the TG test; 0 skips it */
	uint32_t reps;             /* timed runs of each test; 0 = 1 */
	uint32_t batch;            /* 0: sized as a reply's prefill; else fixed, <= ENGINE_BATCH_MAX */
	uint64_t seed;             /* of the token ids (never 0 ids); 0 = a fixed default */
};

enum engine_bench_test {
	ENGINE_BENCH_PP = 0,       /* prefill of n_prompt tokens and the choice of the first */
	ENGINE_BENCH_TG = 1,       /* n_gen tokens decoded one at a time */
};

/* One timed run, as the DONE event's blob holds them. */
struct engine_bench_run {
	enum engine_bench_test test;
	uint32_t rep;              /* 0 .. reps-1 (the warm-up is not reported) */
	uint32_t n_tokens;         /* n_prompt or n_gen */
	double ms;                 /* PP: time to first token; TG: the n_gen steps */
	uint32_t n_batch;          /* PP: the prefill batch after this run (where the sizing
				      settled, or the fixed one); TG: 1 */
	uint32_t gpu_layers;       /* layers that ran on the GPU (0: all on the CPU) */
	/* the same in every run of a loaded model: */
	double load_ms;            /* engine_load(): mapping and checking the file */
	double prepare_ms;         /* engine_load(): scratch, packed weight copies, GPU upload */
	uint64_t packed_bytes;     /* memory of the packed weight copies */
	uint64_t decode_bytes;     /* weight bytes one decode step reads */
	char cpu_level[16];        /* CPU kernels in use: "scalar", "avx2", "avx512", ... */
};

/* A request id, or ENGINE_E_INVAL (no test, or a batch over
 * ENGINE_BATCH_MAX) / ENGINE_E_NOMEM. */
int engine_bench(engine *e, const struct engine_bench_opts *o);

/* ---- an evaluator: the logits of token sequences, no engine thread --------
 * What `ttychat perplexity` needs: a local model loaded on the caller's
 * thread as engine_load() loads it (the same forward pass, compute thread
 * pool and device placement; load opts' n_ctx, kv_type, device and
 * gpu_layers count, the rest is ignored), and token sequences evaluated
 * each from an empty KV cache of the handle's own, with the logits of
 * every position.  No tokenizer, template or sampler is in the way: the
 * caller brings ids (engine_vocab_encode() makes them) and reads logits.
 * Each call blocks until done.  Threads: a handle belongs to one thread
 * at a time, except engine_evaluator_cancel(), which any thread or a
 * signal handler may call. */
typedef struct engine_evaluator engine_evaluator;

struct engine_evaluator_info {
	uint32_t n_vocab;          /* logits per row: the vocabulary's tokens (llama_vocab_n_tokens) */
	uint32_t n_ctx;            /* the longest sequence a run takes */
	uint32_t n_ctx_train;
	int32_t bos;               /* the BOS id, -1 when the vocabulary has none */
	bool add_bos;              /* the model wants BOS in front of a text (llama_vocab_get_add_bos) */
	bool add_eos;              /* ... and EOS after it */
	char backend[80];          /* as engine_model_info's */
	char notice[256];          /* "" or one line: CUDA asked for but unusable, fewer GPU layers,
				      or the GPU failed during a run and the runs went on on the CPU */
};

/* Loads the model at PATH (a file: no remote models) with O's n_ctx (>= 2,
 * required), kv_type, device and gpu_layers on N_THREADS compute threads
 * (0: every core).  NULL on failure with a one-line message naming PATH in
 * err. */
engine_evaluator *engine_evaluator_open(const char *path, const struct engine_load_opts *o, int n_threads,
					char *err, size_t errlen);
void engine_evaluator_close(engine_evaluator *ev);  /* NULL is a no-op */
const struct engine_evaluator_info *engine_evaluator_info(const engine_evaluator *ev);

/* Evaluates IDS[0..n) (0 < n <= n_ctx, each id < n_vocab) from an empty
 * cache, in forward passes of at most BATCH tokens (0: ENGINE_BATCH_MAX;
 * at most ENGINE_BATCH_MAX), and writes the logits of positions FIRST ..
 * n-1 to OUT: (n - first) rows of n_vocab floats, row r predicting the
 * token after position first + r.  A GPU failure redoes the sequence on
 * the CPU (info's notice says so).  0, or with a message in err:
 * ENGINE_E_INVAL (bad arguments), ENGINE_E_CANCELLED (after
 * engine_evaluator_cancel(); OUT incomplete), ENGINE_E_NOMEM, or the
 * forward pass's status. */
int engine_evaluator_run(engine_evaluator *ev, const int32_t *ids, uint32_t n, uint32_t first, uint32_t batch,
			 float *out, char *err, size_t errlen);
/* Stops the running evaluation within one layer, and every later one at
 * once (ENGINE_E_CANCELLED).  Async-signal-safe. */
void engine_evaluator_cancel(engine_evaluator *ev);

/* ---- model files, read without loading them -------------------------------
 * An engine_file is a GGUF file opened for its header: the model picker,
 * the catalogue and `inspect` show and size a model with it, no engine
 * needed.  The file is mapped but only the header's pages are read, and it
 * is validated as the loader validates it (every count, length, offset and
 * shape checked against the file size and overflow), so every accessor is
 * safe on a handle engine_file_open() returned.  Strings from the file
 * point into the mapping: NOT NUL-terminated, valid while the handle is
 * open, and hostile (escape them before they reach a terminal).
 * Threads: a handle is immutable after open; any thread may read it, and
 * engine_file_close() must not race with readers. */
typedef struct engine_file engine_file;

#define ENGINE_TYPE_COUNT 43       /* tensor type numbers are below this */

/* What the header says, gathered at open. */
struct engine_file_info {
	uint32_t gguf_version;
	uint32_t alignment;
	uint64_t file_bytes;
	uint64_t data_offset;      /* where the tensor data starts */
	uint64_t n_keys, n_tensors;
	uint64_t n_params;         /* elements of every tensor (UINT64_MAX past 2^64) */
	uint64_t tensor_bytes;     /* bytes of every tensor */
	char arch[32];             /* general.architecture when present and shorter than
				      32 bytes (as stored: may hold control bytes), else "" */
	char quant[32];            /* general.file_type's name ("Q4_K_M"), else the type holding
				      most bytes of the matrices, else "?" */
	char quant_mix[48];        /* the two types holding most matrix bytes with their
				      shares, "Q4_K 71% Q6_K 22%" ("" when no matrix) */
	/* the shape, from the "<arch>." keys as the file states them (0 when
	 * absent or arch is ""): */
	uint64_t n_ctx_train, n_layer, n_embd, n_head;
	uint64_t n_head_kv;        /* n_head when absent; the largest when per layer */
	uint64_t head_dim_k;       /* attention.key_length, else n_embd / n_head */
	uint64_t head_dim_v;       /* attention.value_length, else head_dim_k */
	/* F16 K and V rows of one position over all layers, the KV cache's
	 * bytes per position of context (0 when a factor is 0 or absurd,
	 * >= 2^20); times n_ctx it is the cache a load at n_ctx holds.  Each
	 * layer counts its own KV heads and head sizes (Gemma 4's sliding-
	 * window layers are narrower); layers that read an earlier layer's
	 * K/V (attention.shared_kv_layers) count nothing.  Sliding-window
	 * layers keep every position (as the engine does). */
	uint64_t kv_bytes_per_pos;
	/* hybrid recurrent models (qwen35): layers with a recurrent state
	 * instead of KV rows (not counted in kv_bytes_per_pos), and the bytes
	 * a conversation's states take whatever its length: the current
	 * state, the one a batch writes, and KV_MAX_CKPT checkpoints (0 for
	 * other models) */
	uint64_t n_recurrent;
	uint64_t rec_state_bytes;
};

struct engine_tensor_info {
	const char *name;          /* NOT NUL-terminated: name_len bytes */
	size_t name_len;
	uint32_t type;             /* tensor type number, < ENGINE_TYPE_COUNT */
	const char *type_name;     /* "Q4_K", "F16", ... (static) */
	uint32_t n_dims;           /* 1..4 */
	uint64_t ne[4];            /* ne[0] is the row length; unused dimensions are 1 */
	uint64_t n_elements;
	uint64_t offset;           /* from the start of the file */
	uint64_t size;             /* bytes */
};

/* Opens and validates PATH.  NULL on failure with a one-line message
 * ("FILE: offset N: problem") in err. */
engine_file *engine_file_open(const char *path, char *err, size_t errlen);
void engine_file_close(engine_file *f);  /* NULL is a no-op */
const char *engine_file_path(const engine_file *f);  /* as given to open */
const struct engine_file_info *engine_file_info(const engine_file *f);
/* IN's kv_bytes_per_pos for a cache of K of TYPE_K and V of TYPE_V
 * (enum engine_kv_type): the f16 figure scaled by each side's bytes per
 * element, K's share by head_dim_k and V's by head_dim_v.  Exact for head
 * sizes that are multiples of 64; 0 for an unknown type. */
uint64_t engine_kv_bytes_per_pos(const struct engine_file_info *in, int type_k, int type_v);

/* Metadata by key.  Each returns true and stores the value only when KEY
 * exists with a fitting type; otherwise false, *out untouched.
 * engine_file_get_uint takes any unsigned or non-negative signed integer
 * type (files disagree on u32 vs i32). */
bool engine_file_get_str(const engine_file *f, const char *key, const char **s, size_t *len);
bool engine_file_get_uint(const engine_file *f, const char *key, uint64_t *out);
bool engine_file_get_f32(const engine_file *f, const char *key, float *out);
/* A string array: its length, and element I (false when out of range). */
bool engine_file_get_strs(const engine_file *f, const char *key, uint64_t *n);
bool engine_file_get_strs_at(const engine_file *f, const char *key, uint64_t i, const char **s,
			     size_t *len);

/* Tensor I (0 .. n_tensors-1), in file order: false when out of range. */
bool engine_file_tensor(const engine_file *f, uint64_t i, struct engine_tensor_info *t);

/* ---- a model's vocabulary, without its weights ----------------------------
 * What `ttychat tokenize` and `detokenize` need: the tokenizer the engine
 * builds from the file's tokenizer.ggml.* keys (the same ids as
 * llama_tokenize), nothing else loaded.  A vocab is immutable: any thread
 * may encode and look up with it; engine_vocab_free() must not race with
 * them.  A detokenizer belongs to one thread at a time. */
typedef struct engine_vocab engine_vocab;
typedef struct engine_detok engine_detok;

/* NULL on failure with a one-line message in err: the file's ("FILE:
 * offset N: problem") or "PATH: what the tokenizer lacks". */
engine_vocab *engine_vocab_open(const char *path, char *err, size_t errlen);
void engine_vocab_free(engine_vocab *v);  /* NULL is a no-op */
uint32_t engine_vocab_size(const engine_vocab *v);  /* ids are 0 .. size-1 */

/* Tokenizes text[0..len) (any bytes), appending the ids to the caller's
 * growable array *ids (capacity *cap; *ids may be NULL with *cap 0; it is
 * realloc'd as needed and stays the caller's to free(); *n counts the ids
 * kept).  ADD_SPECIAL adds BOS and EOS where the model asks for them
 * (llama.cpp's add_special); PARSE_SPECIAL recognises control tokens such
 * as <|im_start|> written in the text.  0, or with *n unchanged and a
 * message in err: ENGINE_E_NOMEM, ENGINE_E_INVAL (input too large),
 * ENGINE_E_FORMAT (the vocabulary cannot encode the text, or its
 * pre-tokenizer's regex gave up). */
int engine_vocab_encode(const engine_vocab *v, const char *text, size_t len, bool add_special,
			bool parse_special, int32_t **ids, size_t *n, size_t *cap, char *err,
			size_t errlen);
/* The bytes ID stands for (a control token's text; one byte of a byte
 * token, so maybe not UTF-8 alone), not NUL-terminated; NULL when ID is
 * out of range. */
const char *engine_vocab_piece(const engine_vocab *v, int32_t id, size_t *len);

/* A streaming detokenizer: feed ids as they come, get valid UTF-8 out (a
 * character split across tokens is held back until complete; invalid
 * bytes become U+FFFD).  Control tokens are hidden unless SPECIAL; the
 * space a SentencePiece model puts before the text is taken off again.
 * The vocab must outlive it.  NULL when out of memory. */
engine_detok *engine_detok_new(const engine_vocab *v, bool special);
void engine_detok_free(engine_detok *d);  /* NULL is a no-op */
/* Feeds ID (out of range: adds nothing) and writes the text it completes
 * into buf (at most size bytes, never part of a character): the count.
 * What does not fit comes out first on the next call. */
size_t engine_detok_feed(engine_detok *d, int32_t id, char *buf, size_t size);
/* Ends the stream (a held-back partial character becomes U+FFFD) and
 * writes what is queued, as feed does; call until it returns 0. */
size_t engine_detok_flush(engine_detok *d, char *buf, size_t size);

/* ---- chat templates, without a model --------------------------------------
 * What `ttychat template` needs: render a conversation with a Jinja chat
 * template as transformers does (the engine's own renderer, bounded in
 * depth, steps, output, memory and time), or with a built-in format, and
 * fall back to the built-in of the template's family as the chat does.
 * No global state; any thread. */
typedef struct engine_chat engine_chat;

/* Parses a JSON array of message objects (Python json semantics, every
 * byte of the strings kept, NUL included).  Messages with keys besides
 * role and content, or content neither a string nor null, are rendered
 * from the JSON as it is, so templates see what transformers would.  0 and
 * *out, or ENGINE_E_INVAL (bad JSON, a message without a role string) /
 * ENGINE_E_NOMEM with *out NULL and a message in err.  Free with
 * engine_chat_free(). */
int engine_chat_parse(const char *json, engine_chat **out, char *err, size_t errlen);
void engine_chat_free(engine_chat *c);  /* NULL is a no-op */

struct engine_chat_opts {
	const char *template_text; /* Jinja text; NULL or "": none */
	const char *builtin;       /* a built-in format's name: rendered instead of any template */
	const char *arch;          /* general.architecture (may be NULL): picks the built-in that
				      stands in for a missing or failing template */
	bool strict;               /* render template_text or fail: no built-in stands in */
	bool add_generation_prompt;
	const char *bos_token;     /* special token texts; NULL: undefined */
	const char *eos_token;
	const char *vars_json;     /* a JSON object of extra template variables, or NULL */
	int64_t now;               /* what strftime_now() formats, seconds since the epoch; 0: now */
};

#define ENGINE_CHAT_FALLBACK 1     /* engine_chat_render(): a built-in format stood in */

/* Renders C into *out (malloc'd, NUL-terminated; *out_len its length,
 * OUT_LEN may be NULL).  Returns 0 (the template, or the built-in asked
 * for, rendered), ENGINE_CHAT_FALLBACK (a built-in stood in; MSG holds a
 * one-line warning naming why and which), or with *out NULL and "KIND:
 * message" in MSG (KIND: "template syntax error", "template error",
 * "bad arguments", ...): ENGINE_E_INVAL (an unknown built-in, bad
 * vars_json), ENGINE_E_TEMPLATE (no template in strict mode, the template
 * failed or refused the conversation, a cap was hit), ENGINE_E_NOMEM. */
int engine_chat_render(const engine_chat *c, const struct engine_chat_opts *o, char **out,
		       size_t *out_len, char *msg, size_t msglen);
/* The built-in family of a template and an architecture (either may be
 * NULL): "chatml", "llama3", ...; "unknown" when neither says. */
const char *engine_chat_family(const char *template_text, const char *arch);
/* Whether NAME is a built-in format ("chatml", "llama2", "mistral", ...). */
bool engine_chat_builtin_known(const char *name);

/* ---- memory (memory.c) ------------------------------------------------------ */

/* One accounting for the model picker's fit estimate and the load's
 * refusal of a model that cannot fit.  Bytes a model needs in RAM: its
 * weights (tensor bytes of the file; read in place, or packed with the
 * mapped pages given back: one copy either way), its KV cache at the
 * context it loads with, and scratch (engine_mem_scratch: 5% of the
 * weights, at least 32 MiB). */
uint64_t engine_mem_need(uint64_t weight_bytes, uint64_t kv_bytes);
uint64_t engine_mem_scratch(uint64_t weight_bytes);
/* Bytes this process can still take: MemAvailable, lowered to the room
 * under its cgroup's memory limit and to TTYCHAT_MEM_LIMIT (bytes, or
 * with a K/M/G suffix) when set; 0 when unknown. */
uint64_t engine_mem_available(void);

#endif
