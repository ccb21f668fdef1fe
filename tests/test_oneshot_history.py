#!/usr/bin/python3
"""test_oneshot_history.py - one-shot prompts and the encrypted history.

On a store written by test_history_fixture (cheap Argon2id) with the
passphrase in TTYCHAT_PASSPHRASE_FILE: a one-shot prompt is not saved
without --save; --save creates a conversation (its ID on stderr and in the
JSON summary) holding the prompt and the reply; --continue ID appends a
turn to a saved conversation, with its model, system prompt and earlier
turns in the prompt, and reuses the KV cache filed by the previous run; Ctrl-C keeps the partial reply, flagged cancelled;
a wrong or missing passphrase, an unknown ID and a conversation locked by
another process all exit 5 without waiting for a terminal.
"""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
BUILD = os.environ.get("TTYCHAT_BUILDDIR", ".")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", "")
SMOL = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
FIXTURE = os.path.join(BUILD, "tests", "test_history_fixture")
ENV = {}


def run(args, env=None, timeout=120):
    e = dict(ENV)
    e.update(env or {})
    p = subprocess.run([BIN] + args, stdin=subprocess.DEVNULL, capture_output=True, env=e, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def listing():
    rc, out, err = run(["history", "list", "--json"])
    return json.loads(out) if rc == 0 else None


def export(cid):
    rc, out, err = run(["history", "export", cid, "--format", "json"])
    return json.loads(out) if rc == 0 else None


def main():
    if not os.path.isfile(SMOL):
        print("SKIP: %s is absent (run scripts/fetch-models)" % SMOL)
        return 77
    for prog in (BIN, FIXTURE):
        if not os.access(prog, os.X_OK):
            print("SKIP: %s is not built" % prog)
            return 77
    tmp = tempfile.mkdtemp(prefix="test_oneshot_history.")
    try:
        data = os.path.join(tmp, "data")
        conf = os.path.join(tmp, "config")
        os.makedirs(os.path.join(conf, "ttychat", "models.d"))
        # the fixture's conversations were held with "smollm2"
        with open(os.path.join(conf, "ttychat", "models.d", "smollm2.json"), "w") as f:
            json.dump({"name": "smollm2", "file": SMOL}, f)
        pw = os.path.join(tmp, "pw")
        with open(pw, "w") as f:
            f.write("correct horse\n")
        bad = os.path.join(tmp, "bad")
        with open(bad, "w") as f:
            f.write("wrong\n")
        ids = subprocess.run([FIXTURE, os.path.join(data, "ttychat"), pw], capture_output=True, timeout=60)
        if ids.returncode != 0:
            print("FAIL: test_history_fixture: %r" % ids.stderr)
            return 1
        first = ids.stdout.decode().split()[0]
        ENV.update(os.environ, XDG_DATA_HOME=data, XDG_CONFIG_HOME=conf, TTYCHAT_PASSPHRASE_FILE=pw, CI="true",
                   HOME=tmp)
        ENV.pop("TTYCHAT_PASSPHRASE_FD", None)
        before = listing()
        check(before is not None and len(before) == 3, "the fixture has 3 conversations")

        # not saved without --save
        rc, out, err = run(["-m", SMOL, "-p", "Hello there", "-n", "3", "--temp", "0"])
        check(rc == 0 and len(listing() or []) == 3, "a one-shot prompt is not saved (%d, %s)" % (rc, err))

        # --save
        rc, out, err = run(["-m", SMOL, "-p", "Hello there", "-n", "5", "--temp", "0", "--save"])
        after = listing() or []
        new = [c for c in after if c["id"] not in {b["id"] for b in before}]
        check(rc == 0 and len(new) == 1, "--save adds one conversation (%d, %s)" % (rc, err))
        if new:
            cid = new[0]["id"]
            check("saved as conversation " + cid in err, "--save prints the ID: %r" % err)
            conv = export(cid) or {}
            msgs = conv.get("messages", [])
            check([m["role"] for m in msgs] == ["user", "assistant"] and msgs[0]["text"] == "Hello there" and
                  msgs[1]["text"].rstrip("\n") == out.rstrip("\n") and not msgs[1]["cancelled"],
                  "--save: the prompt and the reply are saved: %r" % msgs)
            check(conv.get("model") == SMOL and conv.get("sampling", {}).get("temperature") == 0,
                  "--save: model and sampling recorded: %r" % {k: conv.get(k) for k in ("model", "sampling")})
        rc, out, err = run(["-m", SMOL, "-p", "Hi", "-n", "2", "--save", "--json=final"])
        obj = json.loads(out.splitlines()[-1]) if out.strip() else {}
        check(rc == 0 and len(obj.get("conversation", "")) == 32 and "saved as" not in err,
              "--save --json: the ID is in the summary, not on stderr: %r" % obj.get("conversation"))
        # its KV cache was filed: continuing it prefills only the new turn
        rc, out, err = run(["-p", "And then?", "-n", "2", "--json=final", "--continue", obj.get("conversation", "x")])
        again = json.loads(out.splitlines()[-1]) if out.strip() else {}
        st0, st1 = obj.get("stats", {}), again.get("stats", {})
        check(rc == 0 and st1.get("prompt_reused", 0) >= st0.get("prompt_tokens", 1 << 30),
              "--continue after --save reuses the saved KV cache (%r reused of %r; first prompt %r)" %
              (st1.get("prompt_reused"), st1.get("prompt_tokens"), st0.get("prompt_tokens")))
        check(os.listdir(os.path.join(data, "ttychat", "kv")), "the KV snapshot is filed under kv/")

        # --continue: the earlier turns, the model and the system prompt come along
        rc, out, err = run(["-p", "And Germany?", "-n", "6", "--temp", "0", "--json=final",
                            "--continue", first[:8]])
        cont = json.loads(out.splitlines()[-1]) if out.strip() else {}
        check(rc == 0 and cont.get("conversation") == first, "--continue PREFIX: exit 0 (%d, %s)" % (rc, err))
        check(cont.get("model", {}).get("path") == SMOL, "--continue: the conversation's model is used")
        check(cont.get("stats", {}).get("prompt_reused") == 0, "--continue without a KV snapshot prefills all")
        rc, out, err = run(["-m", SMOL, "-p", "And Germany?", "-n", "1", "--temp", "0", "--json=final",
                            "--system", "be brief"])
        alone = json.loads(out.splitlines()[-1]) if out.strip() else {}
        # the first turn ("What is the capital of France?" / "Paris.") adds tokens
        check(cont.get("stats", {}).get("prompt_tokens", 0) > alone.get("stats", {}).get("prompt_tokens", 1 << 30) + 10,
              "--continue: the earlier turns are in the prompt (%r vs %r tokens)" %
              (cont.get("stats", {}).get("prompt_tokens"), alone.get("stats", {}).get("prompt_tokens")))
        conv = export(first) or {}
        msgs = conv.get("messages", [])
        check(len(msgs) == 4 and msgs[2]["role"] == "user" and msgs[2]["text"] == "And Germany?" and
              msgs[3]["role"] == "assistant" and msgs[3]["text"] == cont.get("text"),
              "--continue: the turn is appended: %r" % msgs[2:])
        check(conv.get("system_prompt") == "be brief" and conv.get("model") == "smollm2",
              "--continue: the metadata is unchanged: %r" % {k: conv.get(k) for k in ("model", "system_prompt")})

        # Ctrl-C: the partial reply is saved, flagged
        p = subprocess.Popen([BIN, "-m", SMOL, "--temp", "0", "-n", "3000", "--save", "-p",
                              "Count from 1 to 1000, separated by commas."], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        got = b""
        while len(got) < 8:
            d = os.read(p.stdout.fileno(), 4096)
            if not d:
                break
            got += d
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=60)
        check(p.returncode == 130, "Ctrl-C with --save: exit 130 (%d, %r)" % (p.returncode, err))
        cid = err.decode().split("saved as conversation ")[-1].strip()[:32]
        msgs = (export(cid) or {}).get("messages", []) if len(cid) == 32 else []
        check(len(msgs) == 2 and msgs[1]["cancelled"] and msgs[1]["text"] and
              (got + rest).decode().startswith(msgs[1]["text"]),
              "Ctrl-C with --save: the partial reply is saved as cancelled: %r" % msgs[1:])

        # failures: exit 5, never a prompt
        rc, out, err = run(["-m", SMOL, "-p", "x", "--continue", first], {"TTYCHAT_PASSPHRASE_FILE": bad})
        check(rc == 5 and "passphrase" in err, "wrong passphrase: exit 5 (%d, %r)" % (rc, err))
        e = dict(ENV)
        e.pop("TTYCHAT_PASSPHRASE_FILE")
        p = subprocess.run([BIN, "-m", SMOL, "-p", "x", "--save"], stdin=subprocess.DEVNULL, capture_output=True,
                           env=e, timeout=60)
        check(p.returncode == 5 and b"TTYCHAT_PASSPHRASE_FILE" in p.stderr,
              "no passphrase under CI: exit 5, says how (%d, %r)" % (p.returncode, p.stderr))
        rc, out, err = run(["-m", SMOL, "-p", "x", "--continue", "ffffffff"])
        check(rc == 5, "unknown conversation: exit 5 (%d, %r)" % (rc, err))
        with open(os.path.join(data, "ttychat", "history", first + ".lock"), "r+") as lk:
            fcntl.lockf(lk, fcntl.LOCK_EX)  # a POSIX lock conflicts with the OFD lock
            rc, out, err = run(["-m", SMOL, "-p", "x", "--continue", first])
            fcntl.lockf(lk, fcntl.LOCK_UN)
        check(rc == 5, "a conversation open elsewhere: exit 5 (%d, %r)" % (rc, err))
        check(len((export(first) or {}).get("messages", [])) == 4, "nothing was added by the failed runs")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
