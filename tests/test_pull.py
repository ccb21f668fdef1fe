#!/usr/bin/python3
"""test_pull.py - `ttychat pull` and `ttychat models` against a local server.

A small HTTP server on 127.0.0.1 (written here: python's http.server has no
Range support) serves the real SmolLM2 GGUF file.  It honours Range
requests, answers 416 past the end, and can be told to close the
connection after N bytes of the next response or to ignore Range.  Checked:
a plain download (byte-identical, sha256 verified), an interrupted download
(exit 6, the part kept) resumed with a Range request that starts exactly
where the part ends, a server that ignores Range (the download restarts), a
part that is already complete (416), a bad checksum (exit 6, nothing left
behind), HTTP 404, a refused connection, "already present", unknown names,
bad URLs, and that `ttychat models` and `-m NAME` then see the model.
"""
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", "")
BUILD = os.environ.get("TTYCHAT_BUILDDIR", ".")
MODEL_FILE = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.path = path
        self.size = os.path.getsize(path)
        self.cut_after = None      # bytes of the next body before closing
        self.ignore_range = False
        self.log = []              # (path, Range header or None, status)
        self.lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        with srv.lock:
            cut, srv.cut_after = srv.cut_after, None
        if self.path != "/model.gguf":
            srv.log.append((self.path, rng, 404))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        if rng and not srv.ignore_range:
            spec = rng.split("=", 1)[1]
            start = int(spec.split("-", 1)[0])
            if start >= srv.size:
                srv.log.append((self.path, rng, 416))
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % srv.size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, srv.size - 1, srv.size))
            srv.log.append((self.path, rng, 206))
        else:
            self.send_response(200)
            srv.log.append((self.path, rng, 200))
        self.send_header("Content-Length", str(srv.size - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        left = srv.size - start if cut is None else min(cut, srv.size - start)
        with open(srv.path, "rb") as f:
            f.seek(start)
            try:
                while left > 0:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
        if cut is not None:
            # cut the connection mid-file
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    if not os.path.isfile(MODEL_FILE):
        print("SKIP: %s is absent (run scripts/fetch-models)" % MODEL_FILE)
        return 77
    if not os.access(BIN, os.X_OK):
        print("SKIP: %s is not built" % BIN)
        return 77
    srv = Server(MODEL_FILE)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    base = "http://127.0.0.1:%d" % port
    digest = sha256_of(MODEL_FILE)
    size = srv.size

    tmp = tempfile.mkdtemp(prefix="test_pull.", dir=BUILD if os.path.isdir(BUILD) else None)
    try:
        conf = os.path.join(tmp, "config")
        mdir = os.path.join(tmp, "models")
        os.makedirs(os.path.join(conf, "ttychat", "models.d"))
        env = dict(os.environ)
        for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            env.pop(k, None)
        env.update(XDG_CONFIG_HOME=conf, XDG_DATA_HOME=os.path.join(tmp, "data"), TTYCHAT_MODELS_DIR=mdir,
                   no_proxy="*", NO_PROXY="*", CI="true")

        def entry(name, **kw):
            d = {"name": name}
            d.update(kw)
            with open(os.path.join(conf, "ttychat", "models.d", name + ".json"), "w") as f:
                json.dump(d, f)

        def pull(*args):
            p = subprocess.run([BIN, "pull"] + list(args), env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=120)
            return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

        entry("testpull", url=base + "/model.gguf", sha256=digest, file="smol.gguf", display_name="Test pull")
        entry("badsum", url=base + "/model.gguf", sha256="0" * 64, file="bad.gguf")
        entry("nourl", file="nourl.gguf")
        dest = os.path.join(mdir, "smol.gguf")
        part = dest + ".part"

        # before: listed, not present
        p = subprocess.run([BIN, "models", "--json"], env=env, capture_output=True, timeout=60)
        items = {i["name"]: i for i in json.loads(p.stdout)}
        check(p.returncode == 0 and "testpull" in items and items["testpull"]["present"] is False,
              "models --json lists testpull as absent: %r" % p.stdout[:300])

        # 1. interrupted download: exit 6, the part is kept
        srv.cut_after = 20 << 20
        rc, out, err = pull("testpull")
        check(rc == 6, "cut connection: exit 6, got %d (%s)" % (rc, err.strip()))
        check("resume" in err, "cut connection: the message says how to resume: %r" % err)
        check(not os.path.exists(dest), "cut connection: nothing moved into place")
        check(os.path.exists(part) and os.path.getsize(part) == 20 << 20,
              "cut connection: %s keeps the %d bytes received" % (part, 20 << 20))
        check(out == "", "pull writes nothing on stdout")
        if os.path.exists(part):
            check(oct(os.stat(part).st_mode & 0o777) == oct(0o600), "the part file is 0600")

        # 2. resumed: a Range request from the end of the part
        srv.log.clear()
        rc, out, err = pull("testpull")
        check(rc == 0, "resume: exit 0, got %d (%s)" % (rc, err.strip()))
        check(srv.log and srv.log[0][1] == "bytes=%d-" % (20 << 20) and srv.log[0][2] == 206,
              "resume: one Range request starting at the part's end: %r" % srv.log)
        check(os.path.exists(dest) and sha256_of(dest) == digest, "resume: the file is byte-identical")
        check(not os.path.exists(part), "resume: the part is gone")
        check("resumed" in err and "verified" in err, "resume: summary says resumed and verified: %r" % err)

        # 3. already present: verified, no request
        srv.log.clear()
        rc, out, err = pull("testpull")
        check(rc == 0 and not srv.log and "verified" in err, "already present: verified without a request (%r)" % err)

        # models sees it; -m NAME uses it
        p = subprocess.run([BIN, "models", "--json"], env=env, capture_output=True, timeout=60)
        items = {i["name"]: i for i in json.loads(p.stdout)}
        t = items.get("testpull", {})
        check(t.get("present") is True and t.get("size") == size and t.get("quant") == "Q4_1",
              "models --json: testpull present, size %d, Q4_1: %r" % (size, t))
        p = subprocess.run([BIN, "models"], env=env, capture_output=True, timeout=60)
        line = [l for l in p.stdout.decode().splitlines() if l.startswith("testpull ")]
        check(len(line) == 1 and "yes" in line[0] and "Q4_1" in line[0] and "MiB" in line[0],
              "models table row: %r" % line)
        p = subprocess.run([BIN, "-m", "testpull", "-p", "Hi", "-n", "2", "--temp", "0"], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        check(p.returncode == 0 and p.stdout.strip(), "-m testpull generates (%d, %r)" % (p.returncode, p.stderr))

        # 4. a server that ignores Range: the download starts over
        os.unlink(dest)
        with open(part, "wb") as f:
            f.write(b"garbage" * 1000)
        srv.ignore_range = True
        srv.log.clear()
        rc, out, err = pull("testpull")
        srv.ignore_range = False
        check(rc == 0 and os.path.exists(dest) and sha256_of(dest) == digest,
              "ignored Range: restarted and verified (%d, %s)" % (rc, err.strip()))
        check("restarted" in err, "ignored Range: the summary says it restarted: %r" % err)

        # 5. a complete part: the server answers 416, the checksum decides
        os.unlink(dest)
        shutil.copyfile(MODEL_FILE, part)
        srv.log.clear()
        rc, out, err = pull("testpull")
        check(rc == 0 and sha256_of(dest) == digest and srv.log and srv.log[0][2] == 416,
              "complete part: 416 then verified (%d, %r, %s)" % (rc, srv.log, err.strip()))

        # 6. a bad checksum: exit 6, nothing in place, the bad part removed
        rc, out, err = pull("badsum")
        bad = os.path.join(mdir, "bad.gguf")
        check(rc == 6, "bad checksum: exit 6, got %d" % rc)
        check("checksum" in err and digest in err, "bad checksum: the message names both digests: %r" % err)
        check(not os.path.exists(bad) and not os.path.exists(bad + ".part"), "bad checksum: nothing left behind")

        # 7. a URL with --sha256 and -o
        out_file = os.path.join(tmp, "direct.gguf")
        rc, out, err = pull(base + "/model.gguf", "--sha256", digest.upper(), "-o", out_file, "-q")
        check(rc == 0 and sha256_of(out_file) == digest and err == "",
              "URL with --sha256 and -o, quiet (%d, %r)" % (rc, err))

        # 8. HTTP 404, refused connection, bad input
        rc, out, err = pull(base + "/nothing.gguf", "-o", os.path.join(tmp, "x.gguf"))
        check(rc == 6 and "404" in err, "404: exit 6 and the status in the message (%d, %r)" % (rc, err))
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        s.close()
        rc, out, err = pull("http://127.0.0.1:%d/model.gguf" % dead, "-o", os.path.join(tmp, "y.gguf"))
        check(rc == 6 and err.strip(), "refused connection: exit 6 (%d, %r)" % (rc, err))
        rc, out, err = pull("nosuchmodel")
        check(rc == 3, "unknown name: exit 3, got %d" % rc)
        rc, out, err = pull("nourl")
        check(rc == 3 and "url" in err, "entry without url: exit 3 (%d, %r)" % (rc, err))
        rc, out, err = pull("ftp://127.0.0.1/model.gguf")
        check(rc == 2, "ftp URL: exit 2, got %d" % rc)
        rc, out, err = pull("testpull", "--sha256", "xyz")
        check(rc == 2, "bad --sha256: exit 2, got %d" % rc)
        rc, out, err = pull()
        check(rc == 2, "no argument: exit 2, got %d" % rc)

        # 9. invalid models.d files: named file and key; unknown keys warned
        entry("badtype", file="x.gguf", context_size="big")
        with open(os.path.join(conf, "ttychat", "models.d", "broken.json"), "w") as f:
            f.write('{"name": "broken",\n "file": }')
        entry("typo", file="x.gguf", sampling={"temprature": 0.5}, colour="red")
        p = subprocess.run([BIN, "models"], env=env, capture_output=True, timeout=60)
        err = p.stderr.decode()
        check(p.returncode == 1, "models with invalid files: exit 1, got %d" % p.returncode)
        check("badtype.json: key 'context_size'" in err, "type error names file and key: %r" % err)
        check("broken.json: line 2" in err, "syntax error names file and line: %r" % err)
        check("unknown key 'sampling.temprature'" in err and "unknown key 'colour'" in err,
              "unknown keys warned: %r" % err)
        p = subprocess.run([BIN, "-m", "badtype", "-p", "x"], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)
        check(p.returncode == 3 and b"badtype.json: key 'context_size'" in p.stderr,
              "-m with an invalid entry: exit 3 and the file and key (%d, %r)" % (p.returncode, p.stderr))
        p = subprocess.run([BIN, "models", "--names"], env=env, capture_output=True, timeout=60)
        names = p.stdout.decode().split()
        check("testpull" in names and "typo" in names and "broken" not in names,
              "models --names: %r" % names)
    finally:
        srv.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
