#!/usr/bin/python3
"""test_serve.py - `ttychat serve` with the real SmolLM2 model on 127.0.0.1.

Three clients: raw HTTP/1.1 (http.client and sockets, stdlib), the PyPI
`openai` package (the standard client; these checks are skipped with a
note when no Python has it), and ttychat's own remote backend.  Checked:
/health, /v1/models, auth (401 without or with a wrong key, /health open),
non-streamed and streamed chat and text completions (a greedy reply is the
same streamed or not, and the same as the local engine's), the usage and
timings figures, KV reuse of a resent conversation (cache_n), malformed
requests (400/404/405), keep-alive, the queue limit (429 with Retry-After
while one request runs and one waits), a client that disconnects
mid-stream (its reply stops and the queued request runs), the refusal to
bind beyond loopback without a key, and a clean stop on SIGTERM.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import serveproc
from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", "")
MODEL_FILE = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
MODEL_ID = os.path.basename(MODEL_FILE)
KEY = "serve-test-key-9d2e"


def python_with(module):
    for py in (os.environ.get("TTYCHAT_PYTHON"), shutil.which("python3"), "/usr/bin/python3"):
        if py and os.path.exists(py):
            try:
                if subprocess.run([py, "-c", "import " + module], capture_output=True, timeout=60).returncode == 0:
                    return py
            except (OSError, subprocess.TimeoutExpired):
                pass
    return None


def base_env():
    env = dict(os.environ)
    for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        env.pop(v, None)
    env["XDG_CONFIG_HOME"] = os.path.join(TMP, "config")
    env["XDG_DATA_HOME"] = os.path.join(TMP, "data")
    env["CI"] = "true"
    return env


def start_serve(args):
    """Starts `ttychat serve ARGS --port 0`; returns (process, port, log path)."""
    return serveproc.start(BIN, args, base_env(), TMP)


stop_serve = serveproc.stop
request = serveproc.request


def sse_events(raw):
    """The data payloads of an SSE body (already de-chunked)."""
    out = []
    for block in raw.split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                out.append(line[6:])
    return out


def stream_request(port, path, body, key=KEY):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", path, body=json.dumps(body).encode(),
              headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read().decode()
    c.close()
    return r.status, dict(r.getheaders()), sse_events(raw)


def open_stream(port, body, key=KEY):
    """A raw socket with a streaming request sent; returns the socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    data = json.dumps(body).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    return s


def recv_some(s, want, seconds):
    got = b""
    s.settimeout(0.5)
    deadline = time.monotonic() + seconds
    while want not in got and time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        got += chunk
    return got


CHAT = {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "Name three colours."}],
        "temperature": 0, "max_tokens": 16, "seed": 1}


def tests_http(port):
    st, _, body = request(port, "GET", "/health")
    check(st == 200 and body == {"status": "ok"}, "/health without a key: 200 ok (%s %r)" % (st, body))
    st, hdrs, body = request(port, "GET", "/v1/models")
    check(st == 401 and "API key" in body["error"]["message"], "/v1/models without a key: 401 (%s %r)" % (st, body))
    st, _, body = request(port, "GET", "/v1/models", key="wrong-key")
    check(st == 401, "/v1/models with a wrong key: 401 (%s)" % st)
    st, _, body = request(port, "GET", "/v1/models", key=KEY)
    check(st == 200 and body["data"][0]["id"] == MODEL_ID and body["data"][0]["max_model_len"] == 2048,
          "/v1/models: the model (%s %r)" % (st, body))

    st, _, body = request(port, "POST", "/v1/chat/completions", b"{not json", key=KEY)
    check(st == 400 and "JSON" in body["error"]["message"], "malformed JSON: 400 (%s %r)" % (st, body))
    st, _, body = request(port, "POST", "/v1/chat/completions", {"messages": []}, key=KEY)
    check(st == 400, "no messages: 400 (%s %r)" % (st, body))
    st, _, body = request(port, "POST", "/v1/chat/completions", dict(CHAT, temperature="hot"), key=KEY)
    check(st == 400 and "temperature" in body["error"]["message"], "bad temperature: 400 (%s %r)" % (st, body))
    st, _, body = request(port, "GET", "/v1/chat/completions", key=KEY)
    check(st == 405, "GET on completions: 405 (%s)" % st)
    st, _, body = request(port, "GET", "/v1/nothing", key=KEY)
    check(st == 404, "unknown path: 404 (%s)" % st)

    # a whole reply, then the same streamed: the same greedy text.  The
    # first one prefills the whole prompt, later ones only its last token
    # (the rest is cached); batches of another shape may round differently
    # and flip a near tie, so the texts compared all take the second path.
    st, _, whole = request(port, "POST", "/v1/chat/completions", CHAT, key=KEY)
    check(st == 200 and whole["timings"]["cache_n"] == 0, "chat: a cold first reply (%s %r)" % (st, whole))
    st, _, whole = request(port, "POST", "/v1/chat/completions", CHAT, key=KEY)
    text = whole["choices"][0]["message"]["content"] if st == 200 else ""
    check(st == 200 and whole["timings"]["cache_n"] == whole["usage"]["prompt_tokens"] - 1,
          "chat: the second reply reuses the prompt (%r)" % (whole.get("timings"),))
    check(st == 200 and text.strip() and whole["object"] == "chat.completion", "chat: a reply (%s %r)" % (st, whole))
    check(st == 200 and 0 < whole["usage"]["completion_tokens"] <= 16 and whole["usage"]["prompt_tokens"] > 10,
          "chat: usage (%r)" % (whole.get("usage"),))
    st, hdrs, events = stream_request(port, "/v1/chat/completions",
                                      dict(CHAT, stream=True, stream_options={"include_usage": True}))
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    check(st == 200 and hdrs.get("Content-Type") == "text/event-stream" and events and events[-1] == "[DONE]",
          "stream: an event stream ending in [DONE] (%s %r)" % (st, hdrs))
    check(chunks and chunks[0]["choices"][0]["delta"].get("role") == "assistant", "stream: the first delta has the role")
    check(streamed == text, "stream: the same greedy text (%r vs %r)" % (streamed, text))
    check(chunks and chunks[-1].get("usage", {}).get("completion_tokens") == whole["usage"]["completion_tokens"],
          "stream: the usage chunk")
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    check(finish in (["stop"], ["length"]), "stream: one finish_reason %r" % finish)

    # the conversation resent with one more turn reuses the KV cache
    follow = dict(CHAT, messages=CHAT["messages"] + [{"role": "assistant", "content": text},
                                                    {"role": "user", "content": "And three more?"}])
    st, _, body = request(port, "POST", "/v1/chat/completions", follow, key=KEY)
    t = body.get("timings", {}) if st == 200 else {}
    # the whole earlier prompt and reply (but its last token, never fed back)
    earlier = whole["usage"]["prompt_tokens"] + whole["usage"]["completion_tokens"] - 1
    check(st == 200 and t.get("cache_n", 0) >= earlier,
          "KV reuse: cache_n %r, earlier prompt and reply %r" % (t.get("cache_n"), earlier))
    print("KV reuse: %d of %d prompt tokens from the cache" % (t.get("cache_n", 0), body["usage"]["prompt_tokens"]))

    # text completions, whole and streamed
    comp = {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
    st, _, body = request(port, "POST", "/v1/completions", comp, key=KEY)
    ctext = body["choices"][0]["text"] if st == 200 else ""
    check(st == 200 and ctext and body["object"] == "text_completion", "completions: (%s %r)" % (st, body))
    st, _, events = stream_request(port, "/v1/completions", dict(comp, stream=True))
    s2 = "".join(json.loads(e)["choices"][0]["text"] for e in events if e != "[DONE]")
    check(st == 200 and s2 == ctext, "completions stream: same text (%r vs %r)" % (s2, ctext))

    # keep-alive: two requests on one connection
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    st1, _, _ = request(port, "GET", "/v1/models", key=KEY, conn=c)
    st2, _, b2 = request(port, "POST", "/v1/chat/completions", dict(CHAT, max_tokens=2), key=KEY, conn=c)
    c.close()
    check(st1 == 200 and st2 == 200, "keep-alive: two answers on one connection (%s %s)" % (st1, st2))
    return text


def tests_queue(port, openai_py):
    """--max-queue 1: one runs, one waits, the third gets 429."""
    long_req = dict(CHAT, max_tokens=1500, temperature=0.8, stream=True,
                    messages=[{"role": "user", "content": "Write a very long story about a dragon."}])
    a = open_stream(port, long_req)
    first = recv_some(a, b"data: ", 60)
    check(b"200 OK" in first and b"data: " in first, "queue: A streams (%r)" % first[:80])
    b = open_stream(port, dict(CHAT, max_tokens=4, stream=True))
    time.sleep(0.3)
    st, hdrs, body = request(port, "POST", "/v1/chat/completions", dict(CHAT, max_tokens=4), key=KEY)
    check(st == 429 and hdrs.get("Retry-After") == "1" and body["error"]["code"] == "queue_full",
          "queue: C gets 429 with Retry-After (%s %r)" % (st, body))
    if openai_py:
        code = ("import openai,sys\nc=openai.OpenAI(base_url=sys.argv[1],api_key=sys.argv[2],max_retries=0)\n"
                "try:\n c.chat.completions.create(model='x',messages=[{'role':'user','content':'hi'}],max_tokens=2)\n"
                " print('no error')\nexcept openai.RateLimitError as e:\n print('RateLimitError', e.status_code)\n")
        r = subprocess.run([openai_py, "-c", code, "http://127.0.0.1:%d/v1" % port, KEY], capture_output=True,
                           timeout=60, env=base_env())
        check(r.stdout.decode().strip() == "RateLimitError 429", "openai: RateLimitError on a full queue (%r %r)" %
              (r.stdout, r.stderr[-300:]))
    # A's client goes away: its reply stops and B runs at once
    t0 = time.monotonic()
    a.close()
    got = recv_some(b, b"data: [DONE]", 30)
    dt = time.monotonic() - t0
    b.close()
    check(b"data: [DONE]" in got and dt < 10, "queue: B completes once A disconnects (%.1f s)" % dt)
    print("queue: the waiting request finished %.2f s after the running one's client left" % dt)


OPENAI_CODE = r'''
import json, sys, openai
url, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
c = openai.OpenAI(base_url=url, api_key=key, max_retries=0)
res = {}
res["models"] = [m.id for m in c.models.list().data]
msgs = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Name three colours."}]
r = c.chat.completions.create(model=model, messages=msgs, temperature=0, max_tokens=16, seed=1)
res["whole"] = r.choices[0].message.content
res["usage"] = r.usage.completion_tokens
s = c.chat.completions.create(model=model, messages=msgs, temperature=0, max_tokens=16, seed=1, stream=True)
res["streamed"] = "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)
t = c.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
res["completion"] = t.choices[0].text
try:
    openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
    res["auth"] = "no error"
except openai.AuthenticationError as e:
    res["auth"] = "AuthenticationError %d" % e.status_code
print(json.dumps(res))
'''


def tests_openai(port, py, text):
    if not py:
        print("note: no Python with the openai package: its checks are skipped (pip install openai)")
        return
    r = subprocess.run([py, "-c", OPENAI_CODE, "http://127.0.0.1:%d/v1" % port, KEY, MODEL_ID], capture_output=True,
                       timeout=300, env=base_env())
    try:
        res = json.loads(r.stdout)
    except ValueError:
        check(False, "openai client: %r %r" % (r.stdout, r.stderr[-800:]))
        return
    check(res["models"] == [MODEL_ID], "openai: models.list %r" % res["models"])
    check(res["whole"] == text, "openai: chat reply %r vs %r" % (res["whole"], text))
    check(res["streamed"] == text, "openai: streamed chat %r" % res["streamed"])
    check(0 < res["usage"] <= 16, "openai: usage %r" % res["usage"])
    check(res["completion"].strip() != "", "openai: text completion %r" % res["completion"])
    check(res["auth"] == "AuthenticationError 401", "openai: wrong key %r" % res["auth"])


def tests_remote(port):
    url = "http://127.0.0.1:%d/v1" % port
    # a conversation that shares no start with the earlier ones: a cold
    # prefill on the server, as in the local run
    args = ["-p", "List two fruits.", "--system", "Be brief.", "--temp", "0", "-n", "16"]
    env = base_env()
    local = subprocess.run([BIN, "-m", MODEL_FILE, "-c", "2048"] + args, capture_output=True, timeout=120, env=env,
                           stdin=subprocess.DEVNULL)
    env["TTYCHAT_API_KEY"] = KEY
    remote = subprocess.run([BIN, "--remote", url] + args + ["--json"], capture_output=True, timeout=120, env=env,
                            stdin=subprocess.DEVNULL)
    lines = [json.loads(l) for l in remote.stdout.decode().splitlines() if l.startswith("{")]
    done = lines[-1] if lines else {}
    check(local.returncode == 0 and remote.returncode == 0, "ttychat --remote: runs (%d %d %r)" %
          (local.returncode, remote.returncode, remote.stderr[-300:]))
    check(done.get("text", "").strip() == local.stdout.decode().strip() and done.get("text"),
          "ttychat --remote: the same greedy reply as the local engine (%r vs %r)" % (done.get("text"), local.stdout))
    st = done.get("stats", {})
    check(st.get("prompt_reused", -1) == 0 and st.get("prompt_computed", 0) == st.get("prompt_tokens", -1) > 0 and
          st.get("decode_tps", 0) > 0, "ttychat --remote: the server's figures (%r)" % st)
    remote = subprocess.run([BIN, "--remote", url] + args + ["--json"], capture_output=True, timeout=120, env=env,
                            stdin=subprocess.DEVNULL)
    lines = [json.loads(l) for l in remote.stdout.decode().splitlines() if l.startswith("{")]
    st = lines[-1].get("stats", {}) if lines else {}
    check(st.get("prompt_reused", 0) == st.get("prompt_tokens", 0) - 1 > 0,
          "ttychat --remote: the same chat again reuses the server's cache (%r)" % st)
    check(done.get("model", {}).get("name") == MODEL_ID, "ttychat --remote: the served model's id")
    env["TTYCHAT_API_KEY"] = "wrong"
    r = subprocess.run([BIN, "--remote", url] + args, capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    check(r.returncode == 3 and b"HTTP 401" in r.stderr, "ttychat --remote: wrong key (%d %r)" % (r.returncode, r.stderr))


def main():
    global TMP
    if not os.path.exists(BIN):
        print("SKIP: no ttychat binary at", BIN)
        return 77
    if not os.path.exists(MODEL_FILE):
        print("SKIP: %s is absent (make models)" % MODEL_FILE)
        return 77
    TMP = tempfile.mkdtemp(prefix="ttychat-serve-")
    procs = []
    try:
        keyfile = os.path.join(TMP, "key")
        with open(keyfile, "w") as f:
            f.write(KEY + "\n")
        os.chmod(keyfile, 0o600)
        openai_py = python_with("openai")

        # beyond loopback without a key: refused
        r = subprocess.run([BIN, "serve", "--host", "0.0.0.0", "--port", "0", "-m", MODEL_FILE], capture_output=True,
                           timeout=30, env=base_env(), stdin=subprocess.DEVNULL)
        check(r.returncode == 2 and b"--api-key-file" in r.stderr, "0.0.0.0 without a key refused (%d)" % r.returncode)

        p, port, log = start_serve(["-m", MODEL_FILE, "-c", "2048", "--api-key-file", keyfile, "--max-queue", "1",
                                    "--slots", "4", "-v"])
        procs.append(p)
        if not port:
            print(open(log, errors="replace").read()[-2000:])
            check(False, "ttychat serve starts")
            return 1
        text = tests_http(port)
        tests_openai(port, openai_py, text)
        tests_remote(port)
        tests_queue(port, openai_py)

        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == 0 and time.monotonic() - t0 < 5, "SIGTERM: exit 0 promptly (%s)" % rc)
        logtext = open(log, errors="replace").read()
        check(KEY not in logtext and "colours" not in logtext, "the log has neither the key nor the content")
        check("chatcmpl-" in logtext, "the log has a line per request")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(TMP, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
