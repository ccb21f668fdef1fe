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

enum engine_kv_type { ENGINE_KV_F16 = 0, ENGINE_KV_Q8_0 = 1 };

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
	enum engine_kv_type kv_type;
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
};

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
	const char *role;          /* "system", "user", "assistant" */
	const char *content;       /* UTF-8 */
};

struct engine_gen_opts {
	int32_t max_tokens;        /* <= 0: until end of generation or context */
	bool raw;                  /* no template: messages' contents concatenated */
	bool add_generation_prompt;/* normally true */
	const char *const *stop;   /* NULL-terminated stop strings, or NULL */
};

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
	char model_id[33];         /* hex: file size + hash of the GGUF header; names KV snapshots ("" remote) */
	char backend[80];          /* where it runs: "cpu", "cuda: DEVICE (N/M layers)" (the first N
				      of M on the GPU, the rest on the CPU), or "remote: HOST[:PORT]" */
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
	int32_t token;             /* TOKEN: the id */
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
/* Forgets a conversation's KV cache. */
int engine_drop_conv(engine *e, uint64_t conv);

/* KV cache snapshots, so a conversation can come back after a restart
 * without recomputing it.  engine_conv_export() answers with a
 * CONV_EXPORT event whose blob holds the conversation's tokens and K/V rows
 * for the loaded model (blob_len 0 when the conversation has no cache);
 * engine_conv_import() copies BLOB and answers with CONV_IMPORT, position =
 * tokens restored, or 0 with a message when the snapshot belongs to another
 * model or is malformed (it is only a cache: the next submit then simply
 * prefills).  The blob is plain data: callers encrypt it before it touches
 * the disk. */
int engine_conv_export(engine *e, uint64_t conv);
int engine_conv_import(engine *e, uint64_t conv, const void *blob, size_t len);

/* Stops the running generation or load within one token and drops queued
 * submits.  Async-signal-safe. */
void engine_cancel(engine *e);

const char *engine_status_str(int status);
const char *engine_last_error(const engine *e);

#endif
