#!/usr/bin/python3
"""test_pull_hf.py - `ttychat pull ORG/REPO:QUANT` against a fake Hugging Face hub.

A small HTTP server on 127.0.0.1 speaks the Hub API's shape: the listing
GET /api/models/ORG/REPO/tree/main?recursive=true (a JSON array of
{"type", "path", "size", "oid", "lfs": {"oid": SHA256, "size"}}, in pages
linked by `Link: <...>; rel="next"`) and GET /ORG/REPO/resolve/main/PATH,
which redirects to /cdn/... (as the real hub redirects to its CDN) where
the bytes are served with Range support.  A gated repository wants
"Authorization: Bearer" and redirects to the same server under the name
"localhost" (another host: the token must not follow).  Checked: the
default, an explicit and the closest quant; a split model (3 parts);
a connection cut mid-file (resumed at once with a Range request) and a
part left by an earlier run (resumed); a bad checksum (exit 6, nothing
left, no entry); a gated repository without a token (401: one line that
says to set HF_TOKEN), with one (HF_TOKEN, HF_TOKEN_FILE; a file others
may read is refused); a repository without GGUF files, one that does not
exist, an unreachable hub; the models.d entries; and, when the real
SmolLM2 file is there, `ttychat -m ORG/REPO:QUANT -p` on the pulled model.
"""
import hashlib
import http.server
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.parse

from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", "")
BUILD = os.environ.get("TTYCHAT_BUILDDIR", ".")
SMOL = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
TOKEN = "hf_testTOKEN0123456789"


def sha256_of(data=None, path=None):
    h = hashlib.sha256()
    if path:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    else:
        h.update(data)
    return h.hexdigest()


class Repo:
    """FILES: {path: bytes, or ("file", local path)}; LFS for *.gguf and
    *.safetensors; BAD_SHA: paths whose listed SHA-256 is wrong."""

    def __init__(self, files, gated=False, page=0, bad_sha=()):
        self.files, self.gated, self.page, self.bad_sha = files, gated, page, set(bad_sha)
        self.meta = {}
        for path, data in files.items():
            if isinstance(data, tuple):
                size, digest = os.path.getsize(data[1]), sha256_of(path=data[1])
            else:
                size, digest = len(data), sha256_of(data)
            if path in self.bad_sha:
                digest = "0" * 64
            self.meta[path] = (size, digest)

    def listing(self):
        out, dirs = [], set()
        for path in sorted(self.files):
            d = os.path.dirname(path)
            if d and d not in dirs:
                dirs.add(d)
                out.append({"type": "directory", "oid": "1" * 40, "size": 0, "path": d})
            size, digest = self.meta[path]
            e = {"type": "file", "oid": "2" * 40, "size": size, "path": path}
            if path.endswith((".gguf", ".safetensors")):
                e["lfs"] = {"oid": digest, "size": size, "pointerSize": 134}
            out.append(e)
        return out

    def read(self, path):
        data = self.files[path]
        if isinstance(data, tuple):
            with open(data[1], "rb") as f:
                return f.read()
        return data


class Hub(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.repos = {}
        self.log = []          # (path, Range, Authorization, Host)
        self.cut_after = {}    # CDN path -> bytes before the next response is cut
        self.lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", ctype="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def denied(self, name):
        msg = {"error": "Access to model %s is restricted. You must have access to it and be authenticated "
                        "to access it. Please log in." % name}
        self.reply(401, json.dumps(msg).encode())

    def do_GET(self):
        srv = self.server
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        auth = self.headers.get("Authorization")
        with srv.lock:
            srv.log.append((path, self.headers.get("Range"), auth, self.headers.get("Host", "").split(":")[0]))
        parts = path.strip("/").split("/")
        # the listing
        if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4:6] == ["tree", "main"]:
            name = "/".join(parts[2:4])
            repo = srv.repos.get(name)
            if repo is None:
                return self.reply(404, json.dumps({"error": "Repository not found"}).encode())
            if repo.gated and auth != "Bearer " + TOKEN:
                return self.denied(name)
            items = repo.listing()
            if repo.page:
                q = urllib.parse.parse_qs(url.query)
                start = int(q.get("cursor", ["0"])[0])
                page = items[start:start + repo.page]
                headers = []
                if start + repo.page < len(items):
                    nxt = "http://127.0.0.1:%d/api/models/%s/tree/main?recursive=true&cursor=%d" % (
                        srv.server_address[1], name, start + repo.page)
                    headers.append(("Link", '<%s>; rel="next"' % nxt))
                return self.reply(200, json.dumps(page).encode(), headers=headers)
            return self.reply(200, json.dumps(items).encode())
        # a file: redirect to the CDN
        if len(parts) >= 5 and parts[2:4] == ["resolve", "main"]:
            name, fpath = "/".join(parts[:2]), "/".join(parts[4:])
            repo = srv.repos.get(name)
            if repo is None or fpath not in repo.files:
                return self.reply(404, b'{"error": "Entry not found"}')
            if repo.gated and auth != "Bearer " + TOKEN:
                return self.denied(name)
            host = "localhost" if repo.gated else "127.0.0.1"
            loc = "http://%s:%d/cdn/%s/%s?signature=x" % (host, srv.server_address[1], name,
                                                           urllib.parse.quote(fpath))
            return self.reply(302, b"", headers=[("Location", loc)])
        # the CDN: bytes with Range
        if parts[0] == "cdn" and len(parts) >= 4:
            name, fpath = "/".join(parts[1:3]), "/".join(parts[3:])
            repo = srv.repos.get(name)
            if repo is None or fpath not in repo.files:
                return self.reply(404)
            data = repo.read(fpath)
            size, start = len(data), 0
            rng = self.headers.get("Range")
            with srv.lock:
                cut = srv.cut_after.pop(path, None)
            if rng:
                start = int(rng.split("=", 1)[1].split("-", 1)[0])
                if start >= size:
                    return self.reply(416, headers=[("Content-Range", "bytes */%d" % size)])
                self.send_response(206)
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, size - 1, size))
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(size - start))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            body = data[start:] if cut is None else data[start:start + cut]
            try:
                for i in range(0, len(body), 1 << 20):
                    self.wfile.write(body[i:i + (1 << 20)])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
            if cut is not None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return
        self.reply(404)


def blob(seed, n):
    r = random.Random(seed)
    return b"GGUF" + bytes(r.getrandbits(8) for _ in range(n - 4))


def hub_name(spec):
    """The models.d name of a reference, as hub.c makes it."""
    for p in ("hf:", "hf.co/"):
        if spec.startswith(p):
            spec = spec[len(p):]
    org, rest = spec.split("/", 1)
    repo, _, quant = rest.partition(":")
    return "--".join([org, repo] + ([quant.upper()] if quant else []))


def main():
    if not os.access(BIN, os.X_OK):
        print("SKIP: %s is not built" % BIN)
        return 77
    hub = Hub()
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    port = hub.server_address[1]
    endpoint = "http://127.0.0.1:%d" % port

    tiny = {q: blob(q, 40000 + i * 1000) for i, q in enumerate(["Q2_K", "Q4_K_M", "Q8_0", "IQ4_XS"])}
    files = {"tiny-%s.gguf" % q: d for q, d in tiny.items()}
    files.update({"README.md": b"# tiny\n", "mmproj-tiny-f16.gguf": blob("mm", 5000), ".gitattributes": b"*\n"})
    hub.repos["acme/tiny-GGUF"] = Repo(files, page=3)
    split = [blob("s%d" % i, 30000 + i) for i in range(3)]
    hub.repos["acme/split-GGUF"] = Repo({
        "Q4_K_M/split-Q4_K_M-%05d-of-00003.gguf" % (i + 1): split[i] for i in range(3)} | {
        "split-Q8_0.gguf": blob("s8", 9000)})
    hub.repos["unsloth/x-GGUF"] = Repo({"x-UD-Q4_K_XL.gguf": blob("ud", 3000), "x-Q8_0.gguf": blob("u8", 3000),
                                        "BF16/x-BF16-00001-of-00002.gguf": blob("b1", 2000),
                                        "BF16/x-BF16-00002-of-00002.gguf": blob("b2", 2000)})
    big = os.urandom(3 << 20)
    hub.repos["acme/cut-GGUF"] = Repo({"cut-Q4_K_M.gguf": big})
    hub.repos["acme/bad-GGUF"] = Repo({"bad-Q4_K_M.gguf": blob("bad", 20000)}, bad_sha=["bad-Q4_K_M.gguf"])
    gated = blob("gated", 25000)
    hub.repos["acme/gated-GGUF"] = Repo({"gated-Q4_K_M.gguf": gated}, gated=True)
    hub.repos["acme/plain-model"] = Repo({"config.json": b"{}", "model.safetensors": b"x" * 100,
                                          "README.md": b"hi"})
    have_smol = os.path.isfile(SMOL)
    if have_smol:
        hub.repos["HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"] = Repo({
            "smollm2-135m-instruct-q4_1.gguf": ("file", SMOL), "README.md": b"smol"})

    tmp = tempfile.mkdtemp(prefix="test_pull_hf.", dir=BUILD if os.path.isdir(BUILD) else None)
    try:
        conf = os.path.join(tmp, "config")
        mdir = os.path.join(tmp, "models")
        modelsd = os.path.join(conf, "ttychat", "models.d")
        env = dict(os.environ)
        for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                  "HF_TOKEN", "HF_TOKEN_FILE"):
            env.pop(k, None)
        env.update(XDG_CONFIG_HOME=conf, XDG_DATA_HOME=os.path.join(tmp, "data"), TTYCHAT_MODELS_DIR=mdir,
                   HF_ENDPOINT=endpoint + "/", no_proxy="*", NO_PROXY="*", CI="true")

        def run(args, extra=None, timeout=60):
            p = subprocess.run([BIN] + args, env=dict(env, **(extra or {})), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
            return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

        def pull(*args, **extra):
            return run(["pull"] + list(args), extra)

        def local(repo, path):
            return os.path.join(mdir, "hf", repo, path)

        def entry(name):
            try:
                with open(os.path.join(modelsd, name + ".json")) as f:
                    return json.load(f)
            except (OSError, ValueError):
                return None

        def cdn_gets(repo):
            return [e for e in hub.log if e[0].startswith("/cdn/" + repo + "/")]

        def one_line(err):
            return len(err.strip().splitlines()) == 1

        # 1. the default quant: Q4_K_M; pages of the listing followed
        rc, out, err = pull("hf:acme/tiny-GGUF")
        f = local("acme/tiny-GGUF", "tiny-Q4_K_M.gguf")
        check(rc == 0, "default: exit 0 (%d, %s)" % (rc, err.strip()))
        check(os.path.isfile(f) and open(f, "rb").read() == tiny["Q4_K_M"], "default: Q4_K_M saved byte for byte")
        check("default" in err and "Q4_K_M" in err, "default: says it took Q4_K_M by default: %r" % err)
        check(out == "", "pull writes nothing on stdout")
        listing_gets = [e for e in hub.log if e[0] == "/api/models/acme/tiny-GGUF/tree/main"]
        pages = -(-len(hub.repos["acme/tiny-GGUF"].listing()) // 3)
        check(pages > 1 and len(listing_gets) == pages,
              "the listing's %d pages are read: %d" % (pages, len(listing_gets)))
        check(not os.path.exists(local("acme/tiny-GGUF", "mmproj-tiny-f16.gguf")), "the projector is not pulled")
        e = entry("acme--tiny-GGUF")
        check(e is not None and e.get("name") == "acme--tiny-GGUF" and e.get("file") == f and
              e.get("sha256") == sha256_of(tiny["Q4_K_M"]) and e.get("quant") == "Q4_K_M" and
              e.get("url", "").endswith("/acme/tiny-GGUF/resolve/main/tiny-Q4_K_M.gguf"),
              "default: the models.d entry acme--tiny-GGUF.json: %r" % e)
        if os.path.exists(f):
            check(os.stat(f).st_mode & 0o777 == 0o600, "the model file is 0600")
            check(os.stat(os.path.join(modelsd, "acme--tiny-GGUF.json")).st_mode & 0o777 == 0o600,
                  "the entry is 0600")

        # 2. an explicit quant (any case), and the entry -m finds
        rc, out, err = pull("acme/tiny-GGUF:q8_0")
        check(rc == 0 and open(local("acme/tiny-GGUF", "tiny-Q8_0.gguf"), "rb").read() == tiny["Q8_0"],
              "explicit: Q8_0 saved (%d, %s)" % (rc, err.strip()))
        check("as asked" in err, "explicit: says so: %r" % err)
        e = entry("acme--tiny-GGUF--Q8_0")
        check(e is not None and e.get("quant") == "Q8_0" and e.get("display_name") == "acme/tiny-GGUF:Q8_0",
              "explicit: entry acme--tiny-GGUF--Q8_0: %r" % e)
        rc, out, err = run(["models", "--names"])
        check("acme--tiny-GGUF--Q8_0" in out.split() and "acme--tiny-GGUF" in out.split(),
              "models --names lists the pulled entries: %r" % out)
        rc, out, err = run(["-m", "acme/tiny-GGUF:Q8_0", "-p", "hi", "-n", "1"])
        check(rc == 3 and "no such model file" not in err and "not downloaded" not in err,
              "-m ORG/REPO:QUANT finds the entry (a fake file: fails to load, exit 3): %d %r" % (rc, err[-300:]))
        rc, out, err = run(["-m", "hf:acme/tiny-GGUF", "-p", "hi", "-n", "1"])
        check(rc == 3 and "no such model file" not in err and "not downloaded" not in err,
              "-m hf:ORG/REPO finds the entry of the pull without a quant (%d, %r)" % (rc, err[-300:]))
        rc, out, err = run(["-m", "acme/tiny-GGUF:Q6_K", "-p", "hi"])
        check(rc == 3 and "ttychat pull acme/tiny-GGUF:Q6_K" in err,
              "-m ORG/REPO:QUANT not pulled: says which pull to run (%d, %r)" % (rc, err))

        # 3. the closest: no Q5_K_M here; Q4_K_M is nearest, already present
        hub.log.clear()
        rc, out, err = pull("hf.co/acme/tiny-GGUF:Q5_K_M")
        check(rc == 0 and "closest" in err and "tiny-Q4_K_M.gguf" in err,
              "closest: Q5_K_M -> Q4_K_M, and says why (%d, %r)" % (rc, err))
        check("already present and verified" in err and not cdn_gets("acme/tiny-GGUF"),
              "closest: the file already there is verified, not fetched again: %r" % err)
        e = entry("acme--tiny-GGUF--Q5_K_M")
        check(e is not None and e.get("quant") == "Q4_K_M" and e.get("file") == f,
              "closest: the entry named as asked points at the Q4_K_M file: %r" % e)

        # 4. a split model: all 3 parts, the entry names the first
        rc, out, err = pull("acme/split-GGUF:Q4_K_M")
        paths = [local("acme/split-GGUF", "Q4_K_M/split-Q4_K_M-%05d-of-00003.gguf" % (i + 1)) for i in range(3)]
        check(rc == 0 and all(os.path.isfile(p) and open(p, "rb").read() == split[i] for i, p in enumerate(paths)),
              "split: the 3 parts saved byte for byte (%d, %s)" % (rc, err.strip()))
        check("3 parts" in err, "split: says 3 parts: %r" % err)
        e = entry("acme--split-GGUF--Q4_K_M")
        check(e is not None and e.get("file") == paths[0] and "url" not in e, "split: entry file is part 1: %r" % e)

        # Unsloth's names: UD- quants, a split file in a folder
        for spec, want in (("hf:unsloth/x-GGUF", "x-UD-Q4_K_XL.gguf"), ("unsloth/x-GGUF:Q4_K_XL", "x-UD-Q4_K_XL.gguf"),
                           ("unsloth/x-GGUF:bf16", "BF16/x-BF16-00001-of-00002.gguf")):
            rc, out, err = pull(spec)
            e = entry(hub_name(spec))
            check(rc == 0 and e is not None and e.get("file") == local("unsloth/x-GGUF", want),
                  "%s: takes %s (%d, %r, %r)" % (spec, want, rc, err, e))
        check(os.path.isfile(local("unsloth/x-GGUF", "BF16/x-BF16-00002-of-00002.gguf")),
              "the second part of the BF16 split file is there")

        # 5. a connection cut mid-file: resumed at once with Range
        hub.log.clear()
        hub.cut_after["/cdn/acme/cut-GGUF/cut-Q4_K_M.gguf"] = 1 << 20
        rc, out, err = pull("acme/cut-GGUF:Q4_K_M")
        cf = local("acme/cut-GGUF", "cut-Q4_K_M.gguf")
        gets = cdn_gets("acme/cut-GGUF")
        check(rc == 0 and os.path.isfile(cf) and sha256_of(path=cf) == sha256_of(big),
              "cut: completed and verified (%d, %s)" % (rc, err.strip()))
        check(len(gets) == 2 and gets[0][1] is None and gets[1][1] == "bytes=%d-" % (1 << 20),
              "cut: the second request resumes at the cut: %r" % [g[:2] for g in gets])
        check("resuming" in err, "cut: says it resumes: %r" % err)
        # a part left by an earlier run
        q2 = local("acme/tiny-GGUF", "tiny-Q2_K.gguf")
        with open(q2 + ".part", "wb") as fp:
            fp.write(tiny["Q2_K"][:15000])
        hub.log.clear()
        rc, out, err = pull("acme/tiny-GGUF:Q2_K")
        gets = cdn_gets("acme/tiny-GGUF")
        check(rc == 0 and open(q2, "rb").read() == tiny["Q2_K"] and not os.path.exists(q2 + ".part"),
              "earlier part: completed (%d, %s)" % (rc, err.strip()))
        check(len(gets) == 1 and gets[0][1] == "bytes=15000-" and "resumed" in err,
              "earlier part: one Range request from its end: %r" % [g[:2] for g in gets])

        # 6. a bad checksum: exit 6, nothing left behind, no entry
        rc, out, err = pull("acme/bad-GGUF:Q4_K_M")
        bf = local("acme/bad-GGUF", "bad-Q4_K_M.gguf")
        check(rc == 6 and "checksum" in err, "bad checksum: exit 6 (%d, %r)" % (rc, err))
        check(not os.path.exists(bf) and not os.path.exists(bf + ".part"), "bad checksum: nothing left behind")
        check(entry("acme--bad-GGUF--Q4_K_M") is None, "bad checksum: no entry written")

        # 7. a gated repository: without a token one line; with one the token
        # goes to the hub but not to the CDN's other host
        rc, out, err = pull("acme/gated-GGUF:Q4_K_M")
        check(rc == 6 and "HF_TOKEN" in err and "401" in err and one_line(err),
              "gated, no token: exit 6, one line naming HF_TOKEN (%d, %r)" % (rc, err))
        hub.log.clear()
        rc, out, err = pull("acme/gated-GGUF:Q4_K_M", HF_TOKEN=TOKEN)
        gf = local("acme/gated-GGUF", "gated-Q4_K_M.gguf")
        check(rc == 0 and open(gf, "rb").read() == gated, "gated, HF_TOKEN: pulled (%d, %s)" % (rc, err.strip()))
        api = [x for x in hub.log if not x[0].startswith("/cdn/")]
        cdn = cdn_gets("acme/gated-GGUF")
        check(api and all(x[2] == "Bearer " + TOKEN for x in api), "gated: the hub got the token: %r" % api)
        check(cdn and all(x[2] is None and x[3] == "localhost" for x in cdn),
              "gated: the CDN on another host got no token: %r" % cdn)
        check(TOKEN not in err, "the token is never printed")
        e = entry("acme--gated-GGUF--Q4_K_M")
        check(e is not None and "url" not in e, "gated: the entry has no url: %r" % e)
        tokfile = os.path.join(tmp, "token")
        with open(tokfile, "w") as fp:
            fp.write(TOKEN + "\n")
        os.chmod(tokfile, 0o644)
        rc, out, err = pull("acme/gated-GGUF:Q4_K_M", "--force", HF_TOKEN_FILE=tokfile)
        check(rc == 1 and "chmod 600" in err and one_line(err),
              "a token file others may read is refused (%d, %r)" % (rc, err))
        os.chmod(tokfile, 0o600)
        rc, out, err = pull("acme/gated-GGUF:Q4_K_M", "--force", HF_TOKEN_FILE=tokfile)
        check(rc == 0, "HF_TOKEN_FILE 0600: pulled (%d, %s)" % (rc, err.strip()))
        os.makedirs(os.path.join(conf, "ttychat"), exist_ok=True)
        shutil.copy(tokfile, os.path.join(conf, "ttychat", "hf-token"))
        os.chmod(os.path.join(conf, "ttychat", "hf-token"), 0o600)
        rc, out, err = pull("acme/gated-GGUF:Q4_K_M")
        check(rc == 0, "the hf-token file of the config folder is used (%d, %s)" % (rc, err.strip()))
        os.unlink(os.path.join(conf, "ttychat", "hf-token"))

        # 8. no GGUF files; no such repository; a hub that cannot be reached
        rc, out, err = pull("hf:acme/plain-model")
        check(rc == 3 and one_line(err) and "no GGUF" in err and "model.safetensors" in err and
              "config.json" in err, "no GGUF files: exit 3, one line listing them (%d, %r)" % (rc, err))
        rc, out, err = pull("acme/nothing-GGUF:Q4_K_M")
        check(rc == 3 and one_line(err) and "no such repository" in err, "404: exit 3, one line (%d, %r)" % (rc, err))
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        s.close()
        rc, out, err = pull("acme/tiny-GGUF:Q8_0", HF_ENDPOINT="http://127.0.0.1:%d" % dead)
        check(rc == 6 and one_line(err) and "offline" in err, "refused: exit 6, one line (%d, %r)" % (rc, err))
        rc, out, err = pull("acme/tiny-GGUF:Q8_0", HF_ENDPOINT="ftp://example.org")
        check(rc == 2 and "HF_ENDPOINT" in err, "a bad HF_ENDPOINT: exit 2 (%d, %r)" % (rc, err))
        for bad in ("hf:acme", "acme/../x:Q4_K_M", "hf:acme/tiny--x", "a/b/c:Q4"):
            rc, out, err = pull(bad)
            check(rc == 2, "%s: exit 2 (%d, %r)" % (bad, rc, err))
        rc, out, err = pull("acme/tiny-GGUF:Q4_K_M", "-o", os.path.join(tmp, "x.gguf"))
        check(rc == 2, "-o with a hub repository: exit 2 (%d)" % rc)

        # 9. the real model: pulled, then loaded by the name the pull took
        if have_smol:
            spec = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_1"
            rc, out, err = run(["-m", spec, "-p", "hi"])
            check(rc == 3 and "ttychat pull " + spec in err, "-m before the pull: exit 3 (%d, %r)" % (rc, err))
            rc, out, err = pull(spec)
            check(rc == 0 and "-m " + spec in err, "real model pulled (%d, %s)" % (rc, err.strip()))
            rc, out, err = run(["-m", spec, "-p", "hi", "-n", "4", "--temp", "0"], timeout=120)
            check(rc == 0 and out.strip(), "-m %s -p hi generates (%d, %r, %r)" % (spec, rc, out, err[-300:]))
        else:
            print("note: %s is absent; the load of a pulled real model was skipped" % SMOL)
    finally:
        hub.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
