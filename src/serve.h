/*
 * serve.h - `ttychat serve`: a small OpenAI-compatible HTTP/1.1 server on
 * the in-process engine.
 *
 * Endpoints: POST /v1/chat/completions and /v1/completions (streamed as
 * server-sent events, or not), GET /v1/models, GET /health (the /v1 prefix
 * is optional).  Requests run one at a time on the engine, in arrival
 * order, from a bounded queue: a request that finds the queue full gets
 * 429, one that arrives while the model loads, or with every connection
 * at work and none idle to close, gets 503 (both with Retry-After).  Each request is mapped to one of
 * a few conversation slots (the engine's KV caches) by the longest common
 * prefix of its messages, so a client that resends its growing chat only
 * has its new turn prefilled.
 *
 * One thread: the caller's.  serve_run() is a poll() loop over the
 * listening socket, the clients, the engine's event fd and STOP_FD; it
 * owns the engine while it runs (the engine API's single owner).
 *
 * Return codes: serve_open() returns NULL with a one-line message in ERR;
 * serve_run() returns 0 when STOP_FD became readable, -1 with ERR set when
 * the model failed to load.
 */
#ifndef TTYCHAT_SERVE_H
#define TTYCHAT_SERVE_H

#include <stdbool.h>
#include <stdio.h>

#include "engine.h"

struct serve_opts {
	const char *host;          /* address to bind; NULL = "127.0.0.1" */
	int port;                  /* 0 = any free port (serve_port() tells) */
	const char *api_key;       /* NULL = no auth; else "Authorization: Bearer KEY" required (copied) */
	int max_queue;             /* requests waiting behind the running one (0: none); < 0 = 16 */
	int max_clients;           /* open connections; 0 = 64 (idle ones are closed first when more come) */
	int head_timeout_ms;       /* a request head must be complete this soon after its first byte; 0 = 10 s */
	int slots;                 /* conversation slots (KV caches); 0 = 8 */
	const char *model_name;    /* the id /v1/models shows */
	struct engine_sampling sampling; /* defaults for fields a request leaves out */
	/* thinking defaults (models.d) for requests that leave them out: enum
	 * engine_think, reasoning_effort (NULL none; must outlive the server),
	 * a budget (<= 0 none) */
	int think;
	const char *reasoning_effort;
	int32_t reasoning_budget;
	/* speculative decoding of every request (--spec, --draft-max) */
	enum engine_spec spec;
	int draft_max;
	FILE *log;                 /* one line per request (no content), or NULL */
};

struct server;

/* Binds and listens.  E must outlive the server. */
struct server *serve_open(engine *e, const struct serve_opts *o, char *err, size_t errlen);
/* The port it listens on. */
int serve_port(const struct server *s);
/* Serves until STOP_FD is readable.  LOAD_REQ is the engine_load() request
 * whose LOADED event makes the model available (until then: 503). */
int serve_run(struct server *s, int load_req, int stop_fd, char *err, size_t errlen);
/* Closes every connection and the socket; the key is wiped. */
void serve_close(struct server *s);

#endif
