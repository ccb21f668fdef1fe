"""serveproc.py - `ttychat serve` as the Python tests run it: start it on a
free port (waiting for its listening line, then for /health to answer
200), stop it with SIGTERM, and one HTTP request at a time.  Scripts
import it from their own folder, tests/, as they do checks.py."""
import http.client
import json
import os
import signal
import subprocess
import time


def start(binary, args, env, logdir):
    """Starts `BINARY serve --port 0 ARGS`; returns (process, port, log
    path).  PORT is None when no listening line came within a minute."""
    log = os.path.join(logdir, "serve-%d.log" % time.monotonic_ns())
    lf = open(log, "wb")
    p = subprocess.Popen([binary, "serve", "--port", "0"] + args, stdout=lf, stderr=lf, stdin=subprocess.DEVNULL,
                         env=env)
    port = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None and port is None:
        with open(log, errors="replace") as f:
            for line in f:
                if "listening on http://" in line:
                    port = int(line.split("listening on http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        time.sleep(0.05)
    while port and time.monotonic() < deadline:
        st, _, _ = request(port, "GET", "/health")
        if st == 200:
            break
        time.sleep(0.1)
    return p, port, log


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def request(port, method, path, body=None, key=None, conn=None, timeout=120):
    """One request; (status, headers, JSON body or text), or (None, {},
    the error) when the connection failed."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {}
    if key:
        headers["Authorization"] = "Bearer " + key
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
        hdrs = dict(r.getheaders())
    except OSError as e:
        return None, {}, str(e)
    finally:
        if own:
            c.close()
    try:
        return r.status, hdrs, json.loads(raw)
    except ValueError:
        return r.status, hdrs, raw.decode(errors="replace")
