#!/usr/bin/python3
"""test_remote_llama.py - the remote backend against an independent server.

The server is llama-cpp-python's OpenAI-compatible server (PyPI
`llama-cpp-python[server]`, which builds llama.cpp) serving the real
SmolLM2 model on 127.0.0.1 with an API key.  The client is the real
binary in one-shot mode.  Checked: the model list (no -m takes the served
model; a wrong name is refused with the server's list), a streamed reply
(several pieces, figures measured client-side since this server sends no
timings), cancel (SIGINT mid-reply exits at once and the server serves
the next request), a wrong API key (HTTP 401 at load time), and the server
killed mid-stream (exit 4, the partial reply kept, one line naming the
host).  The server is always killed at the end.

Skips (77) when no Python interpreter with `llama_cpp.server` is found
($TTYCHAT_PYTHON, python3 on PATH, /usr/bin/python3) or the model is absent.
"""
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", "")
MODEL_FILE = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
KEY = "llama-test-key-31c"


def find_python():
    cands = [os.environ.get("TTYCHAT_PYTHON"), shutil.which("python3"), "/usr/bin/python3"]
    for py in cands:
        if not py or not os.path.exists(py):
            continue
        try:
            r = subprocess.run([py, "-c", "import llama_cpp.server.app"], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return py
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def env_for(key):
    env = dict(os.environ)
    for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        env.pop(v, None)
    env["XDG_CONFIG_HOME"] = TMP + "/config"
    env["XDG_DATA_HOME"] = TMP + "/data"
    env["CI"] = "true"
    if key:
        env["TTYCHAT_API_KEY"] = key
    else:
        env.pop("TTYCHAT_API_KEY", None)
    return env


def run(args, key=KEY, timeout=120):
    p = subprocess.run([BIN] + args, capture_output=True, timeout=timeout, env=env_for(key), stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def json_lines(out):
    res = []
    for line in out.splitlines():
        try:
            res.append(json.loads(line))
        except ValueError:
            pass
    return res


def start_server(py, port):
    log = open(os.path.join(TMP, "server.log"), "wb")
    p = subprocess.Popen([py, "-m", "llama_cpp.server", "--model", MODEL_FILE, "--host", "127.0.0.1", "--port",
                          str(port), "--model_alias", "smollm2", "--n_ctx", "2048", "--n_threads", "2",
                          "--api_key", KEY, "--verbose", "False"],
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and p.poll() is None:
        try:
            req = urllib.request.Request("http://127.0.0.1:%d/v1/models" % port,
                                         headers={"Authorization": "Bearer " + KEY})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return p
        except OSError:
            time.sleep(0.3)
    return p if p.poll() is None else None


def stop(p):
    if p and p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def read_until(p, want, seconds):
    got = b""
    deadline = time.monotonic() + seconds
    while not want(got) and time.monotonic() < deadline and p.poll() is None:
        r, _, _ = select.select([p.stdout], [], [], 0.2)
        if r:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            got += chunk
    return got


def main():
    global TMP
    if not os.path.exists(BIN):
        print("SKIP: no ttychat binary at", BIN)
        return 77
    if not os.path.exists(MODEL_FILE):
        print("SKIP: %s is absent (make models)" % MODEL_FILE)
        return 77
    py = find_python()
    if not py:
        print("SKIP: no Python with llama_cpp.server (pip install 'llama-cpp-python[server]'; "
              "or set TTYCHAT_PYTHON)")
        return 77
    TMP = tempfile.mkdtemp(prefix="ttychat-llama-")
    port = free_port()
    url = "http://127.0.0.1:%d/v1" % port
    srv = None
    try:
        t0 = time.monotonic()
        srv = start_server(py, port)
        if not srv:
            print(open(os.path.join(TMP, "server.log"), errors="replace").read()[-2000:])
            check(False, "llama-cpp-python's server starts")
            return 1
        print("llama-cpp-python server (%s) up after %.1f s" % (py, time.monotonic() - t0))
        tests(url, port, srv)
    finally:
        stop(srv)
        shutil.rmtree(TMP, ignore_errors=True)
    return report()


def tests(url, port, srv):
    host = "127.0.0.1:%d" % port
    # the model list: no -m takes the served model
    rc, out, err = run(["--remote", url, "-p", "Say hello.", "-n", "8", "--temp", "0", "--json"])
    lines = json_lines(out)
    done = lines[-1] if lines else {}
    check(rc == 0 and done.get("type") == "done", "no -m: a reply (%d %r)" % (rc, err))
    check(done.get("model", {}).get("name") == "smollm2", "no -m: the served model %r" % done.get("model"))
    rc, out, err = run(["--remote", url, "-m", "nosuch", "-p", "hi"])
    check(rc == 3 and "no model 'nosuch'" in err and "smollm2" in err, "unknown model: (%d %r)" % (rc, err))

    # a streamed reply
    rc, out, err = run(["--remote", url, "-m", "smollm2", "-p", "Count from one to ten.", "-n", "24", "--temp", "0",
                        "--json"])
    lines = json_lines(out)
    toks = [l for l in lines if l.get("type") == "token"]
    done = lines[-1] if lines else {}
    check(rc == 0 and len(toks) >= 4, "stream: several pieces (%d, %d pieces, %r)" % (rc, len(toks), err))
    check(done.get("text") == "".join(t["text"] for t in toks) and done["text"].strip(),
          "stream: the pieces make the reply")
    st = done.get("stats", {})
    check(st.get("gen_tokens", 0) >= 4 and st.get("ttft_ms", 0) > 0 and st.get("decode_tps", 0) > 0,
          "stream: figures measured (%r)" % st)
    check(done.get("stop") in ("length", "eog"), "stream: stop reason %r" % done.get("stop"))
    print("llama-cpp-python: %d tokens, first token %.0f ms, %.1f tok/s" %
          (st.get("gen_tokens", 0), st.get("ttft_ms", 0), st.get("decode_tps", 0)))

    # the wrong API key
    rc, out, err = run(["--remote", url, "-m", "smollm2", "-p", "hi"], key="not-the-key")
    check(rc == 3 and "HTTP 401" in err and host in err, "wrong key: (%d %r)" % (rc, err))

    # cancel mid-reply; the server then serves the next request
    p = subprocess.Popen([BIN, "--remote", url, "-m", "smollm2", "--no-template", "-n", "400", "-p",
                          "Once upon a time, in a land far away,"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=env_for(KEY))
    got = read_until(p, lambda g: len(g) >= 12, 60)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        rest, errb = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        rest, errb = p.communicate()
    dt = time.monotonic() - t0
    check(p.returncode == 130 and len(got) >= 12, "cancel: exit 130 after some text (%s, %r)" % (p.returncode, errb))
    check(dt < 1.0, "cancel: exits within 1 s (%.2f s)" % dt)
    rc, out, err = run(["--remote", url, "-m", "smollm2", "-p", "Say hi.", "-n", "4"])
    check(rc == 0 and out.strip(), "after a cancel the server answers (%d %r)" % (rc, err))

    # the server killed mid-stream
    p = subprocess.Popen([BIN, "--remote", url, "-m", "smollm2", "--no-template", "-n", "400", "--json", "-p",
                          "Once upon a time, in a land far away,"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=env_for(KEY))
    got = read_until(p, lambda g: g.count(b'"type":"token"') >= 3, 60)
    stop(srv)
    try:
        rest, errb = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        rest, errb = p.communicate()
    lines = json_lines((got + rest).decode(errors="replace"))
    last = lines[-1] if lines else {}
    err = errb.decode(errors="replace")
    check(p.returncode == 4, "server killed: exit 4 (%s %r)" % (p.returncode, err))
    check(last.get("type") == "error" and len(last.get("text", "")) > 0,
          "server killed: the partial reply is kept (%r)" % last)
    check(host in err and err.count("\n") == 1 and ("mid-reply" in err or "connection lost" in err),
          "server killed: one line naming the host (%r)" % err)


if __name__ == "__main__":
    sys.exit(main())
