#!/usr/bin/python3
"""test_serve_load.py - a bounded load test of `ttychat serve` on loopback.

N concurrent clients (threads, raw HTTP/1.1 keep-alive connections) each
hold a conversation of R turns with the real SmolLM2 model, streaming every
reply: each turn resends the whole conversation with one more question, so
the KV slots are shared between N conversations under load.  The request
count is bounded (N * R) and so is the time (each reply at most T tokens;
the sizes shrink when a warm-up reply shows a slow build, e.g. under
sanitizers).  Checked: no error, every reply streamed to its [DONE] with a
finish_reason, and the resent conversations reuse their caches.  Printed:
throughput (generated tokens/s and replies/s over the wall time) and the
p50/p99 time to first token (from sending the request to the first text,
queueing included).
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", "")
MODEL_FILE = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
TOPICS = ["cats", "the sea", "mountains", "bread", "trains", "music", "winter", "gardens", "rivers", "stars",
          "bees", "clocks", "maps", "rain", "bridges", "tea"]


def percentile(v, p):
    if not v:
        return 0.0
    v = sorted(v)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def stream_turn(conn, messages, max_tokens):
    """One streamed reply on CONN: (text, ttft s, finish, usage, timings, error)."""
    body = json.dumps({"messages": messages, "stream": True, "max_tokens": max_tokens, "temperature": 0.7,
                       "stream_options": {"include_usage": True}}).encode()
    t0 = time.monotonic()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        return None, 0, None, None, None, "HTTP %d %r" % (r.status, r.read()[:200])
    text, ttft, finish, usage, timings, done = "", None, None, None, None, False
    buf = b""
    while True:
        line = r.readline()
        if not line:
            break
        line = line.rstrip(b"\r\n")
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            done = True
            continue
        ev = json.loads(data)
        if "error" in ev:
            return text, ttft, None, None, None, "error event %r" % ev
        for ch in ev.get("choices", []):
            piece = ch.get("delta", {}).get("content")
            if piece:
                if ttft is None:
                    ttft = time.monotonic() - t0
                text += piece
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
        usage = ev.get("usage") or usage
        timings = ev.get("timings") or timings
    del buf
    if not done:
        return text, ttft, finish, usage, timings, "no [DONE]"
    return text, ttft if ttft is not None else time.monotonic() - t0, finish, usage, timings, None


def client(port, idx, turns, max_tokens, results, lock):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    messages = [{"role": "user", "content": "Tell me something about %s." % TOPICS[idx % len(TOPICS)]}]
    for t in range(turns):
        try:
            text, ttft, finish, usage, timings, err = stream_turn(conn, messages, max_tokens)
        except (OSError, ValueError, http.client.HTTPException) as e:
            text, ttft, finish, usage, timings, err = None, 0, None, None, None, repr(e)
        with lock:
            results.append({"client": idx, "turn": t, "ttft": ttft, "finish": finish, "usage": usage,
                            "timings": timings, "error": err})
        if err:
            break
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": "Tell me more."}]
    conn.close()


def main():
    if not os.path.exists(BIN):
        print("SKIP: no ttychat binary at", BIN)
        return 77
    if not os.path.exists(MODEL_FILE):
        print("SKIP: %s is absent (make models)" % MODEL_FILE)
        return 77
    tmp = tempfile.mkdtemp(prefix="ttychat-load-")
    env = dict(os.environ, XDG_CONFIG_HOME=tmp, XDG_DATA_HOME=tmp, CI="true")
    log = os.path.join(tmp, "serve.log")
    lf = open(log, "wb")
    n_clients, turns, max_tokens = 8, 3, 32
    p = subprocess.Popen([BIN, "serve", "--port", "0", "-m", MODEL_FILE, "-c", "1024", "--max-queue", "32",
                          "--slots", str(n_clients)], stdout=lf, stderr=lf, stdin=subprocess.DEVNULL, env=env)
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline and p.poll() is None:
            for line in open(log, errors="replace"):
                if "listening on http://" in line:
                    port = int(line.split("http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
            time.sleep(0.05)
        if not port:
            print(open(log, errors="replace").read()[-2000:])
            check(False, "ttychat serve starts")
            return 1
        # warm-up (also waits for the model): sizes for a slow build
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < deadline:
            conn.request("GET", "/health")
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                break
            time.sleep(0.1)
        t0 = time.monotonic()
        text, ttft, finish, usage, timings, err = stream_turn(conn, [{"role": "user", "content": "Hello!"}], 16)
        warm = time.monotonic() - t0
        conn.close()
        check(err is None, "warm-up reply (%r)" % err)
        tps = (timings or {}).get("predicted_per_second", 0) or 1
        budget = 25.0 * tps  # tokens that fit in ~25 s
        while n_clients * turns * max_tokens > budget and (turns > 1 or n_clients > 2 or max_tokens > 8):
            if turns > 2:
                turns -= 1
            elif max_tokens > 16:
                max_tokens //= 2
            elif n_clients > 4:
                n_clients -= 2
            elif turns > 1:
                turns -= 1
            elif max_tokens > 8:
                max_tokens //= 2
            else:
                n_clients -= 1
        print("load: warm-up %.2f s at %.0f tok/s; %d clients x %d turns, at most %d tokens each" %
              (warm, tps, n_clients, turns, max_tokens))

        results, lock = [], threading.Lock()
        threads = [threading.Thread(target=client, args=(port, i, turns, max_tokens, results, lock))
                   for i in range(n_clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        wall = time.monotonic() - t0
        check(not any(t.is_alive() for t in threads), "load: every client finished within 240 s")
        errors = [r for r in results if r["error"]]
        check(not errors, "load: no errors (%r)" % errors[:3])
        check(len(results) == n_clients * turns, "load: %d of %d replies" % (len(results), n_clients * turns))
        check(all(r["finish"] in ("stop", "length") for r in results if not r["error"]),
              "load: every reply has a finish_reason")
        gen = sum((r["usage"] or {}).get("completion_tokens", 0) for r in results)
        reused = [(r["timings"] or {}).get("cache_n", 0) for r in results if r["turn"] > 0]
        check(turns == 1 or sum(1 for c in reused if c > 0) >= len(reused) // 2,
              "load: resent conversations reuse their KV cache (%r)" % reused)
        ttfts = [r["ttft"] * 1e3 for r in results if r["ttft"] is not None]
        print("load: %d replies, %d tokens in %.2f s: %.1f tok/s, %.2f replies/s; time to first token "
              "p50 %.0f ms, p99 %.0f ms; KV reuse on %d of %d follow-up turns" %
              (len(results), gen, wall, gen / wall if wall else 0, len(results) / wall if wall else 0,
               percentile(ttfts, 50), percentile(ttfts, 99), sum(1 for c in reused if c > 0), len(reused)))
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == 0, "load: the server stops cleanly (%s)" % rc)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
