/*
 * test_remote.c - the engine API with a remote model, against `ttychat
 * serve` (the built binary, started here on 127.0.0.1 with --port 0 and
 * killed at the end).
 *
 * What the TUI and one-shot mode rely on, checked at the API level: the
 * LOADED event of a "remote:{...}" path (arch "remote", the server's model
 * id, backend "remote: HOST:PORT", the server's context size), a greedy
 * reply identical to the local engine's for the same conversation, the
 * server's figures in DONE (prompt tokens reused on the second turn),
 * engine_cancel() mid-reply ending with DONE/CANCELLED quickly, KV
 * snapshots that are empty for a remote model, a bad spec refused with a
 * message, and a load against a closed port failing with ENGINE_E_NETWORK.
 * Skips when the model or the binary is absent.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "testutil.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Starts `BIN serve --port 0 -m MODEL`; returns its pid and the port. */
static pid_t start_serve(const char *bin, const char *model, int *port)
{
	int fds[2];
	if (pipe(fds) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[1], 2);
		close(fds[0]);
		close(fds[1]);
		int dn = open("/dev/null", O_RDWR);
		dup2(dn, 0);
		dup2(dn, 1);
		execl(bin, bin, "serve", "--port", "0", "-m", model, "-c", "1024", "-t", "2", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	char buf[4096];
	size_t len = 0;
	*port = 0;
	double deadline = now_ms() + 60000;
	while (!*port && now_ms() < deadline && len < sizeof buf - 1) {
		struct pollfd p = {.fd = fds[0], .events = POLLIN};
		if (poll(&p, 1, 500) <= 0)
			continue;
		ssize_t r = read(fds[0], buf + len, sizeof buf - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = '\0';
		const char *at = strstr(buf, "127.0.0.1:");
		if (at && strchr(at, '/'))
			*port = atoi(at + 10);
	}
	close(fds[0]); /* its later lines go nowhere (it writes none without -v) */
	return pid;
}

struct reply {
	char text[4096];
	size_t len;
	int n_tokens;
	bool done, error;
	int code;
	enum engine_stop_reason stop;
	struct engine_stats st;
	char message[512];
};

static void collect(engine *e, int req, struct reply *r, int cancel_after)
{
	memset(r, 0, sizeof *r);
	struct engine_event ev;
	double deadline = now_ms() + 120000;
	while (now_ms() < deadline) {
		if (!engine_event_wait(e, &ev, 1000))
			continue;
		if (ev.request != req) {
			engine_event_clear(&ev);
			continue;
		}
		if (ev.type == ENGINE_EV_TOKEN) {
			if (r->len + ev.text_len < sizeof r->text) {
				memcpy(r->text + r->len, ev.text, ev.text_len);
				r->len += ev.text_len;
				r->text[r->len] = '\0';
			}
			if (++r->n_tokens == cancel_after)
				engine_cancel(e);
		} else if (ev.type == ENGINE_EV_DONE) {
			r->done = true;
			r->stop = ev.stop;
			r->st = ev.stats;
		} else if (ev.type == ENGINE_EV_ERROR) {
			r->error = true;
			r->code = ev.code;
			snprintf(r->message, sizeof r->message, "%s", ev.message);
		}
		engine_event_clear(&ev);
		if (r->done || r->error)
			return;
	}
}

static int load(engine *e, const char *path, struct engine_model_info *info, char *msg, size_t n)
{
	int req = engine_load(e, path, NULL);
	struct engine_event ev;
	for (;;) {
		if (!engine_event_wait(e, &ev, 60000))
			return -100;
		if (ev.request != req || ev.type == ENGINE_EV_LOAD_PROGRESS) {
			engine_event_clear(&ev);
			continue;
		}
		int rc = ev.type == ENGINE_EV_LOADED ? 0 : ev.code;
		if (info)
			*info = ev.info;
		snprintf(msg, n, "%s", ev.message);
		engine_event_clear(&ev);
		return rc;
	}
}

int main(void)
{
	char model[4096];
	if (!tu_model(SMOLLM2_FILE, model, sizeof model))
		tu_skip("SmolLM2 model absent");
	const char *bin = getenv("TTYCHAT_BIN");
	if (!bin || access(bin, X_OK) != 0)
		tu_skip("no ttychat binary (TTYCHAT_BIN)");
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	int port = 0;
	pid_t pid = start_serve(bin, model, &port);
	if (pid <= 0 || port <= 0) {
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
		CHECK(0, "ttychat serve starts");
		return tu_finish();
	}

	char err[512], msg[512], spec[256];
	engine *e = engine_create(&(struct engine_params){.n_threads = 2}, err, sizeof err);
	engine *local = engine_create(&(struct engine_params){.n_threads = 2}, err, sizeof err);
	CHECK(e && local, "engines start: %s", err);
	if (!e || !local)
		goto out;

	snprintf(spec, sizeof spec, "remote:{\"base_url\":\"http://127.0.0.1:%d\"}", port);
	struct engine_model_info info;
	int rc = load(e, spec, &info, msg, sizeof msg);
	char host[64];
	snprintf(host, sizeof host, "remote: 127.0.0.1:%d", port);
	CHECK(rc == 0, "remote load: %s", msg);
	CHECK(strcmp(info.arch, "remote") == 0 && strcmp(info.name, SMOLLM2_FILE) == 0, "info: %s %s", info.arch,
	      info.name);
	CHECK(strcmp(info.backend, host) == 0, "backend '%s'", info.backend);
	CHECK(info.n_ctx == 1024 && info.n_params > 100000000ull, "server's figures: ctx %u params %llu", info.n_ctx,
	      (unsigned long long)info.n_params);
	rc = load(local, model, NULL, msg, sizeof msg);
	CHECK(rc == 0, "local load: %s", msg);

	/* the same greedy reply as the local engine */
	struct engine_sampling s;
	engine_sampling_default(&s);
	s.temperature = 0;
	struct engine_gen_opts g = {.max_tokens = 12, .add_generation_prompt = true};
	struct engine_msg m[3] = {{"user", "What is the capital of France?"}, {"assistant", ""}, {"user", "And of Italy?"}};
	struct reply a, b;
	collect(e, engine_submit(e, 7, m, 1, &s, &g), &a, 0);
	collect(local, engine_submit(local, 7, m, 1, &s, &g), &b, 0);
	CHECK(a.done && b.done && a.len > 0 && strcmp(a.text, b.text) == 0, "remote '%s' vs local '%s' (%s)", a.text,
	      b.text, a.message);
	CHECK(a.stop == b.stop, "stop reasons %d %d", a.stop, b.stop);
	CHECK(a.st.prompt_tokens == b.st.prompt_tokens && a.st.gen_tokens == b.st.gen_tokens,
	      "usage: prompt %u/%u gen %u/%u", a.st.prompt_tokens, b.st.prompt_tokens, a.st.gen_tokens, b.st.gen_tokens);
	CHECK(a.st.ttft_ms > 0 && a.st.decode_tps > 0 && a.st.ctx_size == 1024, "DONE figures: ttft %.1f tps %.1f ctx %u",
	      a.st.ttft_ms, a.st.decode_tps, a.st.ctx_size);

	/* second turn: the server reuses the first turn's cache */
	m[1].content = a.text;
	collect(e, engine_submit(e, 7, m, 3, &s, &g), &b, 0);
	CHECK(b.done && b.st.prompt_reused >= a.st.prompt_tokens, "second turn reuses %u of %u", b.st.prompt_reused,
	      a.st.prompt_tokens);

	/* cancel mid-reply */
	struct engine_gen_opts glong = {.max_tokens = 2000, .raw = true};
	struct engine_msg story = {"user", "Once upon a time, in a land far away, there lived"};
	s.temperature = 0.8f;
	double t0 = now_ms();
	collect(e, engine_submit(e, 8, &story, 1, &s, &glong), &a, 3);
	double dt = now_ms() - t0;
	CHECK(a.done && a.stop == ENGINE_STOP_CANCELLED && a.n_tokens >= 3 && a.n_tokens < 60,
	      "cancel: DONE/CANCELLED after %d tokens (%s)", a.n_tokens, a.message);
	/* the next request is served at once: the server stopped that reply */
	g.max_tokens = 4;
	t0 = now_ms();
	collect(e, engine_submit(e, 9, m, 1, &s, &g), &b, 0);
	CHECK(b.done && b.len > 0, "after a cancel: a reply (%s)", b.message);
	printf("cancel: %d tokens in %.0f ms; next reply in %.0f ms\n", a.n_tokens, dt, now_ms() - t0);

	/* KV snapshots: none for a remote model */
	int xr = engine_conv_export(e, 7);
	struct engine_event ev;
	while (engine_event_wait(e, &ev, 10000) && ev.request != xr)
		engine_event_clear(&ev);
	CHECK(ev.type == ENGINE_EV_CONV_EXPORT && ev.blob_len == 0, "export: empty blob");
	engine_event_clear(&ev);

	/* a bad spec; a closed port */
	rc = load(e, "remote:{\"base_url\":\"ftp://x\"}", NULL, msg, sizeof msg);
	CHECK(rc == ENGINE_E_INVAL && strstr(msg, "base_url"), "bad spec: %d %s", rc, msg);
	rc = load(e, "remote:{\"base_url\":\"http://127.0.0.1:1\",\"model\":\"m\",\"nope\":1}", NULL, msg, sizeof msg);
	CHECK(rc == ENGINE_E_INVAL && strstr(msg, "unknown key 'nope'"), "unknown key: %d %s", rc, msg);
	rc = load(e, "remote:{\"base_url\":\"http://127.0.0.1:1\",\"model\":\"m\"}", NULL, msg, sizeof msg);
	CHECK(rc == ENGINE_E_NETWORK && strstr(msg, "cannot connect"), "closed port: %d %s", rc, msg);
	/* and after that, nothing is loaded */
	collect(e, engine_submit(e, 1, m, 1, &s, &g), &a, 0);
	CHECK(a.error && a.code == ENGINE_E_NOMODEL, "submit without a model: %d", a.code);
out:
	engine_free(e);
	engine_free(local);
	kill(pid, SIGTERM);
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "serve exits 0 on SIGTERM (%d)", status);
	return tu_finish();
}
