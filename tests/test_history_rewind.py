#!/usr/bin/python3
"""test_history_rewind.py - `ttychat --continue ID` sends a conversation as
the TUI shows it: the rewinds that /regen and /edit record (flags bits
8..15, docs/history-format.md "Rewinds") applied, the replaced versions and
system messages left out.

The conversation is written by `test_history_fixture DIR PASSFILE rewind`;
the model is a small OpenAI-compatible server written here (stdlib only,
127.0.0.1) reached with --remote, so the test needs no model file and sees
exactly the messages sent.  The turn added by --continue is saved after
the ones that stand, and a second --continue sends it too.
"""
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

from checks import check, report
from jsonhttp import JsonHandler

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
BUILD = os.environ.get("TTYCHAT_BUILDDIR", ".")
FIXTURE = os.path.join(BUILD, "tests", "test_history_fixture")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.bodies = []


class Handler(JsonHandler):
    def do_GET(self):
        if self.path != "/v1/models":
            self.answer(404, {"detail": "Not Found"})
            return
        self.answer(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def chunk(self, data):
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n))
        with self.server.lock:
            self.server.bodies.append(body)
        reply = "Peach"
        if not body.get("stream"):
            self.answer(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                           "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 10, "completion_tokens": 1}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for obj in ({"choices": [{"index": 0, "delta": {"content": reply}, "finish_reason": None}]},
                    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}):
            self.chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")
        self.chunk(b"data: [DONE]\n\n")
        self.chunk(b"")
        self.close_connection = True


def main():
    for prog in (BIN, FIXTURE):
        if not os.access(prog, os.X_OK):
            print("SKIP: %s is not built" % prog)
            return 77
    tmp = tempfile.mkdtemp(prefix="test_history_rewind.")
    srv = Server()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/v1" % srv.server_address[1]
    try:
        data = os.path.join(tmp, "data")
        pw = os.path.join(tmp, "pw")
        with open(pw, "w") as f:
            f.write("rewind pass\n")
        p = subprocess.run([FIXTURE, os.path.join(data, "ttychat"), pw, "rewind"], capture_output=True, timeout=60)
        cid = p.stdout.decode().strip()
        if p.returncode != 0 or len(cid) != 32:
            print("FAIL: test_history_fixture rewind: %r" % p.stderr)
            return 1
        env = dict(os.environ)
        for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy",
                  "TTYCHAT_PASSPHRASE_FD", "TTYCHAT_API_KEY"):
            env.pop(v, None)
        env.update(XDG_DATA_HOME=data, XDG_CONFIG_HOME=os.path.join(tmp, "config"),
                   XDG_STATE_HOME=os.path.join(tmp, "state"), TTYCHAT_PASSPHRASE_FILE=pw, CI="true", HOME=tmp)

        def cont(prompt):
            srv.bodies.clear()
            p = subprocess.run([BIN, "--remote", url, "-m", "fake", "-p", prompt, "--continue", cid[:8]],
                               stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60)
            posts = list(srv.bodies)
            sent = [(m.get("role"), m.get("content")) for m in posts[-1].get("messages", [])] if posts else None
            return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), sent

        standing = [("user", "Name a colour"), ("assistant", "Green, second try"),
                    ("user", "Name a tasty fruit"), ("assistant", "Mango")]
        rc, out, err, sent = cont("And a vegetable?")
        check(rc == 0 and out.strip() == "Peach", "--continue over --remote: exit 0 (%d, %r, %r)" % (rc, out, err))
        check(sent == standing + [("user", "And a vegetable?")],
              "--continue sends the conversation as it stands: %r" % (sent,))

        # the new turn is saved after what stands, and sent by the next --continue
        rc, out, err, sent = cont("And a nut?")
        check(rc == 0, "second --continue: exit 0 (%d, %r)" % (rc, err))
        check(sent == standing + [("user", "And a vegetable?"), ("assistant", "Peach"), ("user", "And a nut?")],
              "the second --continue sends the first one's turn too: %r" % (sent,))
        p = subprocess.run([BIN, "history", "export", cid, "--format", "json", "--all"], stdin=subprocess.DEVNULL,
                           capture_output=True, env=env, timeout=60)
        msgs = json.loads(p.stdout).get("messages", []) if p.returncode == 0 else []
        check(len(msgs) == 12 and [m["replaced"] for m in msgs].count(True) == 3 and
              msgs[-1]["text"] == "Peach" and not msgs[-1]["replaced"],
              "the file holds every version, three replaced: %r" % [(m["text"], m["replaced"]) for m in msgs])
    finally:
        srv.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
