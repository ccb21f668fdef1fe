#!/usr/bin/python3
"""test_session_modes.py - one-shot, `serve` and `bench` decide a model's
settings the same way (src/session.h), on the real SmolLM2 model.

A models.d entry asks for a context of 8192 and a q8_0 KV cache; a
settings.json asks for a context of 1024 and a temperature.  Checked:
  - one-shot and serve load the model with the same context (the entry's
    8192 capped by settings.json's 1024; serve took the entry's 8192 as it
    was and ignored the cap before) and the same KV cache size;
  - -c / --ctx-size beats both, in both modes;
  - a greedy reply of one-shot with the entry's sampling equals serve's
    reply to a request that leaves the sampling out;
  - a bad settings.json is one line naming the file and the key, and exit
    status 1, in one-shot and in serve; the chat's default model comes
    from a good one;
  - a model file's general.sampling.* advice (a copy of SmolLM2 with the
    keys added) is taken under settings.json, and said with -v.
The full-screen chat goes through the same session_resolve() (its tmux
tests cover the chat itself).
"""
import json
import os
import struct
import shutil
import subprocess
import sys
import tempfile

import serveproc
from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", "")
MODEL_FILE = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
TMP = None


def env():
    e = dict(os.environ)
    for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        e.pop(v, None)
    e["XDG_CONFIG_HOME"] = os.path.join(TMP, "config")
    e["XDG_DATA_HOME"] = os.path.join(TMP, "data")
    e["XDG_STATE_HOME"] = os.path.join(TMP, "state")
    e["CI"] = "true"
    return e


def run(args):
    p = subprocess.run([BIN] + args, capture_output=True, timeout=300, stdin=subprocess.DEVNULL, env=env())
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def oneshot(args):
    rc, out, err = run(args + ["--json=final"])
    lines = [l for l in out.splitlines() if l.strip()]
    try:
        return rc, json.loads(lines[-1]) if lines else {}, err
    except ValueError:
        return rc, {}, err


def serve_ctx(args):
    """The context serve loaded the model with, and a greedy reply."""
    p, port, log = serveproc.start(BIN, args, env(), TMP)
    ctx, text = None, None
    if port:
        st, _, models = serveproc.request(port, "GET", "/v1/models")
        if st == 200:
            ctx = models["data"][0].get("meta", {}).get("n_ctx")
        st, _, rep = serveproc.request(port, "POST", "/v1/chat/completions",
                                       {"messages": [{"role": "user", "content": "Name a colour."}],
                                        "max_tokens": 8})
        if st == 200:
            text = rep["choices"][0]["message"]["content"]
    serveproc.stop(p)
    return ctx, text, open(log, errors="replace").read()


def with_advice(src, dst, advice):
    """Copies the GGUF file SRC to DST with general.sampling.* keys added
    first in its metadata.  The added bytes are padded (with a
    general.comment string) to a multiple of the data alignment (32, as
    SmolLM2's file has it), so the tensor data only moves as a whole."""
    def kv(key, typ, payload):
        k = key.encode()
        return struct.pack("<Q", len(k)) + k + struct.pack("<I", typ) + payload
    extra = b"".join(kv("general.sampling." + k, 6 if isinstance(v, float) else 5,
                        struct.pack("<f", v) if isinstance(v, float) else struct.pack("<i", v))
                     for k, v in advice.items())
    base = len(extra) + len(kv("general.comment", 8, struct.pack("<Q", 0)))
    pad = (-base) % 32
    extra += kv("general.comment", 8, struct.pack("<Q", pad) + b"x" * pad)
    n_extra = len(advice) + 1
    with open(src, "rb") as f, open(dst, "wb") as g:
        head = f.read(24)
        magic, ver, n_t, n_kv = struct.unpack("<4sIQQ", head)
        g.write(struct.pack("<4sIQQ", magic, ver, n_t, n_kv + n_extra) + extra)
        shutil.copyfileobj(f, g, 1 << 20)


def write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))


def main():
    global TMP
    if not os.path.exists(BIN):
        print("SKIP: no ttychat binary at", BIN)
        return 77
    if not os.path.exists(MODEL_FILE):
        print("SKIP: the SmolLM2 model is not in", MODELS, "(scripts/fetch-models)")
        return 77
    TMP = tempfile.mkdtemp(prefix="ttychat-session-")
    try:
        return tests()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)


def tests():
    conf = os.path.join(TMP, "config", "ttychat")
    settings = os.path.join(conf, "settings.json")
    # the entry is greedy, so the replies of both modes can be compared
    write(os.path.join(conf, "models.d", "bigsmol.json"),
          {"name": "bigsmol", "file": MODEL_FILE, "context_size": 8192, "kv_type": "q8_0",
           "sampling": {"temperature": 0}})
    write(settings, {"context_size": 1024, "sampling": {"temperature": 0.9}})

    rc, one, err = oneshot(["-m", "bigsmol", "-p", "Name a colour.", "-n", "8"])
    st = one.get("stats", {})
    check(rc == 0 and st.get("ctx_size") == 1024, "one-shot: the entry's 8192 capped by settings.json (%d %r %s)" %
          (rc, st.get("ctx_size"), err.strip()))
    ctx, text, log = serve_ctx(["-m", "bigsmol"])
    check(ctx == 1024, "serve: the same context as one-shot (%r; it took the entry's 8192 before) %s" % (ctx, log))
    check(text is not None and text == one.get("text"),
          "serve and one-shot give the same greedy reply with the entry's sampling (%r vs %r)" %
          (text, one.get("text")))

    # the KV cache type of the entry: q8_0 makes the cache smaller than -kv f16
    rc, f16, _ = oneshot(["-m", "bigsmol", "-p", "Hi", "-n", "1", "--kv-type", "f16"])
    kv_q8, kv_f16 = st.get("kv_bytes", 0), f16.get("stats", {}).get("kv_bytes", 0)
    check(rc == 0 and 0 < kv_q8 < kv_f16, "the entry's q8_0 KV cache, --kv-type f16 beats it (%r < %r)" %
          (kv_q8, kv_f16))

    # -c beats the entry and settings.json, in both modes
    rc, one, _ = oneshot(["-m", "bigsmol", "-p", "Hi", "-n", "1", "-c", "512"])
    check(rc == 0 and one.get("stats", {}).get("ctx_size") == 512, "one-shot -c 512 (%r)" % one.get("stats"))
    ctx, _, log = serve_ctx(["-m", "bigsmol", "-c", "512"])
    check(ctx == 512, "serve -c 512 (%r)" % ctx)

    # settings.json's "model" is the default model of every mode
    write(settings, {"model": "bigsmol"})
    rc, one, err = oneshot(["-p", "Hi", "-n", "1"])
    check(rc == 0 and one.get("model", {}).get("name") == "bigsmol" and
          one.get("stats", {}).get("ctx_size") == 4096,
          "settings.json model, the entry capped at 4096 (%d %r %s)" % (rc, one.get("model"), err.strip()))

    # a model file's sampling advice: taken under settings.json, said with -v
    advised = os.path.join(TMP, "advised.gguf")
    with_advice(MODEL_FILE, advised, {"temp": 0.0, "top_k": 1})
    write(settings, {})
    rc, out, err = run(["-m", advised, "-p", "Name a colour.", "-n", "8", "-v"])
    check(rc == 0 and "sampling as the model file advises: temp, top-k" in err,
          "one-shot -v names the file's advice (%d %r)" % (rc, err[-300:]))
    rc2, out2, _ = run(["-m", advised, "-p", "Name a colour.", "-n", "8"])
    check(rc2 == 0 and out2 == out, "the advised greedy sampling gives the same reply twice (%r %r)" % (out, out2))
    write(settings, {"sampling": {"temperature": 0.7}})
    rc, out, err = run(["-m", advised, "-p", "Hi", "-n", "1", "-v"])
    check(rc == 0 and "advises: top-k" in err and "temp" not in err.split("advises:")[-1].splitlines()[0],
          "settings.json's temperature beats the file's (%r)" % err[-300:])

    # a bad settings.json: one line naming the file and the key
    write(settings, {"context_size": "big"})
    rc, out, err = run(["-m", "bigsmol", "-p", "Hi", "-n", "1"])
    check(rc == 1 and settings in err and "key 'context_size'" in err and len(err.strip().splitlines()) == 1,
          "one-shot: a bad settings.json (%d %r)" % (rc, err))
    rc, out, err = run(["serve", "--port", "0", "-m", "bigsmol"])
    check(rc == 1 and settings in err and "key 'context_size'" in err, "serve: a bad settings.json (%d %r)" %
          (rc, err))
    return report()


if __name__ == "__main__":
    sys.exit(main())
