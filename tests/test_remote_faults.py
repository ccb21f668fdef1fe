#!/usr/bin/python3
"""test_remote_faults.py - the remote backend against a misbehaving server.

A small OpenAI-compatible server written here (stdlib only, 127.0.0.1)
answers each request according to the model it names: a clean stream (with
UTF-8 characters split across TCP writes), a stream cut mid-reply, a
stalled stream, a malformed event, an llama.cpp-style "error:" event, an
HTTP 500 with a message, a plain JSON answer to a streaming request, a
stream that ends without its end mark, and a slow stream to cancel.  The
client is the real binary in one-shot mode (`ttychat --remote URL -m NAME`
and models.d "remote" entries), checked for: the reply, exit status, the
one-line error naming the host, the partial reply kept (--json error line
carries it), time to cancel (SIGINT closes the connection at once), and
that the API key never shows in the output.  Also: wrong key (401),
unknown model (the server's list in the message), DNS failure, refused
connection, TLS to a plain-HTTP port, and the extra headers of models.d.
"""
import http.server
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from checks import check, report
from jsonhttp import JsonHandler

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
KEY = "k-remote-test-7f3a9"


MODELS = ["fake", "cut", "stall", "malformed", "errevent", "error500", "plain", "nodone", "trunc", "slow"]


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.headers_seen = []
        self.disconnect_at = None
        self.bodies = []


class Handler(JsonHandler):
    def authorised(self):
        with self.server.lock:
            self.server.headers_seen.append(dict(self.headers))
        if self.headers.get("Authorization") != "Bearer " + KEY:
            self.answer(401, {"error": {"message": "Invalid API key", "type": "auth"}})
            return False
        return True

    def do_GET(self):
        if not self.authorised():
            return
        if self.path != "/v1/models":
            self.answer(404, {"detail": "Not Found"})
            return
        self.answer(200, {"object": "list", "data": [{"id": m, "object": "model", "max_model_len": 4096}
                                                      for m in MODELS]})

    def chunk(self, data):
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def event(self, obj):
        self.chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

    def delta(self, text, finish=None):
        return {"id": "x", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n))
        with self.server.lock:
            self.server.bodies.append(body)
        if not self.authorised():
            return
        model = body.get("model")
        if model == "error500":
            self.answer(500, {"error": {"message": "model exploded", "type": "server_error"}})
            return
        if model == "plain":
            self.answer(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "plain answer"},
                                           "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 7, "completion_tokens": 2}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self.stream(model)
        except (BrokenPipeError, ConnectionResetError):
            with self.server.lock:
                self.server.disconnect_at = time.monotonic()
        self.close_connection = True

    def stream(self, model):
        if model == "fake":
            self.chunk(b": keep-alive comment\n\n")
            self.event(self.delta("Hel"))
            # one event in two TCP writes, cut inside a UTF-8 character
            raw = ("data: " + json.dumps(self.delta("lo wörld ✓"), ensure_ascii=False) + "\n\n").encode()
            cut = raw.index("ö".encode()) + 1
            self.chunk(raw[:cut])
            time.sleep(0.05)
            self.chunk(raw[cut:])
            self.event(self.delta(None, "stop"))
            self.event({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3}})
            self.chunk(b"data: [DONE]\n\n")
            self.chunk(b"")
        elif model == "cut":
            self.event(self.delta("partial "))
            self.event(self.delta("reply"))
            time.sleep(0.1)
            self.connection.shutdown(socket.SHUT_RDWR)
        elif model == "stall":
            self.event(self.delta("waiting"))
            time.sleep(6)
        elif model == "malformed":
            self.event(self.delta("good "))
            self.chunk(b"data: {oops not json\n\n")
            time.sleep(1)
        elif model == "errevent":
            self.event(self.delta("some "))
            self.chunk(b'error: {"code": 500, "message": "slot crashed", "type": "server_error"}\n\n')
            self.chunk(b"")
        elif model == "nodone":
            self.event(self.delta("done "))
            self.event(self.delta("anyway", "stop"))
            self.chunk(b"")
        elif model == "trunc":
            self.event(self.delta("half"))
            self.chunk(b"")
        elif model == "slow":
            for i in range(400):
                self.event(self.delta("tok%d " % i))
                time.sleep(0.05)
            self.chunk(b"data: [DONE]\n\n")
            self.chunk(b"")


def run(args, env_extra=None, timeout=60, key=KEY):
    env = dict(os.environ)
    for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        env.pop(v, None)
    env["XDG_CONFIG_HOME"] = CONFIG
    env["XDG_DATA_HOME"] = DATA
    env["CI"] = "true"
    if key is not None:
        env["TTYCHAT_API_KEY"] = key
    else:
        env.pop("TTYCHAT_API_KEY", None)
    env.update(env_extra or {})
    t = time.monotonic()
    p = subprocess.run([BIN] + args, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), time.monotonic() - t


def json_lines(out):
    res = []
    for line in out.splitlines():
        try:
            res.append(json.loads(line))
        except ValueError:
            pass
    return res


def main():
    global CONFIG, DATA
    if not os.path.exists(BIN):
        print("SKIP: no ttychat binary at", BIN)
        return 77
    tmp = tempfile.mkdtemp(prefix="ttychat-remote-")
    CONFIG = os.path.join(tmp, "config")
    DATA = os.path.join(tmp, "data")
    os.makedirs(os.path.join(CONFIG, "ttychat", "models.d"))
    os.makedirs(DATA)
    srv = Server()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/v1" % srv.server_address[1]
    host = "127.0.0.1:%d" % srv.server_address[1]
    try:
        return tests(srv, url, host, tmp)
    finally:
        srv.shutdown()
        srv.server_close()
        subprocess.run(["rm", "-rf", tmp])


def tests(srv, url, host, tmp):
    # a clean stream: text, UTF-8 split across writes, usage
    rc, out, err, _ = run(["--remote", url, "-m", "fake", "-p", "hi", "--json", "-v"])
    lines = json_lines(out)
    done = lines[-1] if lines else {}
    check(rc == 0, "fake: exit 0 (%d, %r)" % (rc, err))
    check(done.get("type") == "done" and done.get("text") == "Hello wörld ✓", "fake: reply %r" % done)
    check(sum(1 for l in lines if l.get("type") == "token") >= 2, "fake: streamed in pieces")
    st = done.get("stats", {})
    check(st.get("prompt_tokens") == 11 and st.get("gen_tokens") == 3, "fake: usage from the server %r" % st)
    check(st.get("ttft_ms", -1) >= 0, "fake: time to first token measured")
    check(done.get("model", {}).get("arch") == "remote", "fake: arch remote %r" % done.get("model"))
    check(KEY not in out and KEY not in err, "fake: the API key is not in the output")
    body = srv.bodies[-1]
    check(body.get("stream") is True and body["messages"][-1] == {"role": "user", "content": "hi"},
          "fake: request body %r" % body)

    # no -m: the first model the server lists
    rc, out, err, _ = run(["--remote", url, "-p", "hi"])
    check(rc == 0 and out.strip() == "Hello wörld ✓", "no -m: first listed model (%d %r %r)" % (rc, out, err))

    # the wrong key: 401 with the server's message, at load time
    rc, out, err, _ = run(["--remote", url, "-m", "fake", "-p", "hi"], key="wrong")
    check(rc == 3 and "HTTP 401" in err and "Invalid API key" in err and host in err,
          "wrong key: exit 3, HTTP 401 (%d %r)" % (rc, err))
    check("wrong" not in err.replace("wrong or missing", ""), "wrong key: the key is not echoed")
    rc, out, err, _ = run(["--remote", url, "-m", "fake", "-p", "hi"], key=None)
    check(rc == 3 and "HTTP 401" in err, "no key: exit 3, HTTP 401 (%d %r)" % (rc, err))

    # an unknown model: the server's list in the message
    rc, out, err, _ = run(["--remote", url, "-m", "nosuch", "-p", "hi"])
    check(rc == 3 and "no model 'nosuch'" in err and "fake" in err, "unknown model (%d %r)" % (rc, err))

    # a stream cut mid-reply: partial reply kept, exit 4, one line
    rc, out, err, _ = run(["--remote", url, "-m", "cut", "-p", "hi", "--json"])
    lines = json_lines(out)
    last = lines[-1] if lines else {}
    check(rc == 4, "cut: exit 4 (%d %r)" % (rc, err))
    check(last.get("type") == "error" and last.get("text") == "partial reply", "cut: partial reply kept %r" % last)
    check("cut mid-reply" in err and "partial reply kept" in err and err.count("\n") == 1,
          "cut: one clear line %r" % err)
    rc, out, err, _ = run(["--remote", url, "-m", "cut", "-p", "hi"])
    check(rc == 4 and out.startswith("partial reply"), "cut: text mode prints the partial reply %r" % out)

    # a stream that ends without an end mark
    rc, out, err, _ = run(["--remote", url, "-m", "trunc", "-p", "hi"])
    check(rc == 4 and out.startswith("half") and "ended mid-reply" in err, "trunc: (%d %r %r)" % (rc, out, err))
    # ... while a finish_reason without [DONE] is a normal end
    rc, out, err, _ = run(["--remote", url, "-m", "nodone", "-p", "hi"])
    check(rc == 0 and out.strip() == "done anyway", "nodone: (%d %r %r)" % (rc, out, err))

    # a malformed event; an llama.cpp "error:" event; HTTP 500; plain JSON
    rc, out, err, _ = run(["--remote", url, "-m", "malformed", "-p", "hi"])
    check(rc == 4 and out.startswith("good") and "malformed event" in err and "oops" in err,
          "malformed: (%d %r %r)" % (rc, out, err))
    rc, out, err, _ = run(["--remote", url, "-m", "errevent", "-p", "hi"])
    check(rc == 4 and out.startswith("some") and "slot crashed" in err, "error event: (%d %r %r)" % (rc, out, err))
    rc, out, err, _ = run(["--remote", url, "-m", "error500", "-p", "hi"])
    check(rc == 4 and "HTTP 500" in err and "model exploded" in err, "HTTP 500: (%d %r)" % (rc, err))
    rc, out, err, _ = run(["--remote", url, "-m", "plain", "-p", "hi", "--json"])
    last = (json_lines(out) or [{}])[-1]
    check(rc == 0 and last.get("text") == "plain answer" and last["stats"]["prompt_tokens"] == 7,
          "plain JSON answer: (%d %r)" % (rc, last))

    # a stalled stream: models.d timeout_s 1, extra headers, api_key_env
    with open(os.path.join(CONFIG, "ttychat", "models.d", "stally.json"), "w") as f:
        json.dump({"name": "stally", "remote": {"base_url": url, "model": "stall", "api_key_env": "LAB_KEY",
                                                "timeout_s": 1, "headers": {"X-Lab": "blue"}}}, f)
    rc, out, err, dt = run(["-m", "stally", "-p", "hi"], env_extra={"LAB_KEY": KEY}, key=None)
    check(rc == 4 and out.startswith("waiting") and "stalled" in err and "partial reply kept" in err,
          "stall: (%d %r %r)" % (rc, out, err))
    check(dt < 5, "stall: detected after ~1 s (%.1f s)" % dt)
    check(any(h.get("X-Lab") == "blue" for h in srv.headers_seen), "models.d headers are sent")
    # a key file that others may read is refused
    kf = os.path.join(tmp, "key")
    with open(kf, "w") as f:
        f.write(KEY + "\n")
    os.chmod(kf, 0o644)
    with open(os.path.join(CONFIG, "ttychat", "models.d", "keyed.json"), "w") as f:
        json.dump({"name": "keyed", "remote": {"base_url": url, "model": "fake", "api_key_file": kf}}, f)
    rc, out, err, _ = run(["-m", "keyed", "-p", "hi"], key=None)
    check(rc == 3 and "readable by others" in err, "key file 0644 refused (%d %r)" % (rc, err))
    os.chmod(kf, 0o600)
    rc, out, err, _ = run(["-m", "keyed", "-p", "hi"], key=None)
    check(rc == 0 and out.strip() == "Hello wörld ✓", "key file 0600 works (%d %r %r)" % (rc, out, err))
    # a remote entry's context_size is the server's: one-shot takes it as it
    # is, as the full-screen chat does (one-shot capped it at 4096)
    with open(os.path.join(CONFIG, "ttychat", "models.d", "bigctx.json"), "w") as f:
        json.dump({"name": "bigctx", "context_size": 32768,
                   "remote": {"base_url": url, "model": "fake", "api_key_file": kf}}, f)
    rc, out, err, _ = run(["-m", "bigctx", "-p", "hi", "--json=final"], key=None)
    last = json_lines(out)[-1] if json_lines(out) else {}
    check(rc == 0 and last.get("stats", {}).get("ctx_size") == 32768,
          "a remote entry's context_size is not capped (%d %r)" % (rc, last.get("stats")))

    # models.d remote entries in the catalogue; invalid ones named with their key
    with open(os.path.join(CONFIG, "ttychat", "models.d", "badurl.json"), "w") as f:
        json.dump({"name": "badurl", "remote": {"base_url": "gpu:8000"}}, f)
    with open(os.path.join(CONFIG, "ttychat", "models.d", "authhdr.json"), "w") as f:
        json.dump({"name": "authhdr", "remote": {"base_url": url, "headers": {"Authorization": "Bearer x"}}}, f)
    rc, out, err, _ = run(["models"])
    rows = {l.split()[0]: l for l in out.splitlines() if l.strip()}
    check("remote" in rows.get("stally", "") and "yes" in rows.get("stally", ""), "models: a remote entry %r" %
          rows.get("stally"))
    check("key 'remote.base_url'" in err and "not an http://" in err, "models: bad base_url named (%r)" % err)
    check("key 'remote.headers.Authorization'" in err and "api_key_env" in err,
          "models: a key in a header refused (%r)" % err)
    rc, out, err, _ = run(["-m", "authhdr", "-p", "hi"])
    check(rc == 3 and "remote.headers.Authorization" in err, "-m of an invalid remote entry: exit 3 (%d)" % rc)
    for f in ("badurl.json", "authhdr.json"):
        os.unlink(os.path.join(CONFIG, "ttychat", "models.d", f))

    # cancel: SIGINT during a slow stream stops at once and closes the connection
    env = dict(os.environ, XDG_CONFIG_HOME=CONFIG, XDG_DATA_HOME=DATA, CI="true", TTYCHAT_API_KEY=KEY)
    p = subprocess.Popen([BIN, "--remote", url, "-m", "slow", "-p", "hi"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    got = b""
    deadline = time.monotonic() + 20
    while b"tok3 " not in got and time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.5)
        if r:
            got += os.read(p.stdout.fileno(), 4096)
    srv.disconnect_at = None
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        rest, errb = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        rest, errb = p.communicate()
    t_exit = time.monotonic() - t0
    check(p.returncode == 130, "cancel: exit 130 (%s %r)" % (p.returncode, errb))
    check(t_exit < 1.0, "cancel: exits within 1 s (%.2f s)" % t_exit)
    check((got + rest).startswith(b"tok0 tok1 tok2 tok3"), "cancel: the partial reply is printed")
    deadline = time.monotonic() + 2
    while srv.disconnect_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    check(srv.disconnect_at is not None and srv.disconnect_at - t0 < 1.0,
          "cancel: the server sees the stream closed within 1 s (%s)" %
          (None if srv.disconnect_at is None else "%.2f s" % (srv.disconnect_at - t0)))
    print("cancel: exit after %.0f ms, server saw the close after %s ms" %
          (t_exit * 1e3, "-" if srv.disconnect_at is None else "%.0f" % ((srv.disconnect_at - t0) * 1e3)))

    # network faults before any answer
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free_port = s.getsockname()[1]
    s.close()
    rc, out, err, _ = run(["--remote", "http://127.0.0.1:%d/v1" % free_port, "-m", "x", "-p", "hi"])
    check(rc == 3 and "cannot connect" in err and err.count("\n") == 1, "refused: (%d %r)" % (rc, err))
    rc, out, err, dt = run(["--remote", "http://no-such-host.invalid:8080/v1", "-m", "x", "-p", "hi"], timeout=60)
    check(rc == 3 and ("cannot resolve" in err or "no answer" in err), "DNS failure: (%d %r)" % (rc, err))
    rc, out, err, _ = run(["--remote", "https://" + host + "/v1", "-m", "fake", "-p", "hi"])
    check(rc == 3 and "TLS error" in err, "TLS to a plain HTTP port: (%d %r)" % (rc, err))
    rc, out, err, _ = run(["--remote", "ftp://" + host, "-m", "fake", "-p", "hi"])
    check(rc == 2, "--remote ftp:// is a usage error (%d)" % rc)

    return report()


if __name__ == "__main__":
    sys.exit(main())
