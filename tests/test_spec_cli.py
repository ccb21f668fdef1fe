#!/usr/bin/python3
"""test_spec_cli.py - speculative decoding from the command line.

One-shot: --spec ngram and --draft give the same greedy text as --spec off
and say what they did in the --json=final summary ("speculative"); a bad
--spec is a usage error (exit 2); a draft that is missing, or whose
vocabulary is not the model's (the real SmolLM2 against the real Qwen2.5
0.5B), is one line and exit 3.  A models.d entry's "draft" and
"speculative" keys are used, a bad value is refused naming the key.  The
real pair (Qwen2.5-Coder 1.5B with the 0.5B as draft) gives the same
greedy text with and without it on a code-editing prompt, and accepts
guesses.  `ttychat bench --spec` prints its JSON rows.  The random-weight
fixtures always run; the real models are skipped when absent.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import serveproc
from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
SRC = os.environ.get("TTYCHAT_SRCDIR", ".")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", os.path.expanduser("~/.local/share/ttychat/models"))
RANDOM = os.path.join(SRC, "tests", "fixtures", "engine", "random")
DENSE = os.path.join(RANDOM, "llama3-f16.gguf")
DRAFT = os.path.join(RANDOM, "llama3-q4_0.gguf")
SMOL = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
QWEN15 = os.path.join(MODELS, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
QWEN05 = os.path.join(MODELS, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
ENV = {}

EDIT = ("Rewrite this function with one change: call it add_all instead of total. Output only the code.\n\n"
        "def total(values):\n    result = 0\n    for v in values:\n        result += v\n    return result\n")


def run(args, timeout=600):
    p = subprocess.run([BIN] + args, stdin=subprocess.DEVNULL, capture_output=True, env=ENV, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def final(args):
    rc, out, err = run(args + ["--json=final"])
    lines = out.splitlines()
    try:
        return rc, json.loads(lines[-1]), err
    except (ValueError, IndexError):
        return rc, None, err


def main():
    tmp = tempfile.mkdtemp(prefix="ttychat-spec-")
    try:
        conf = os.path.join(tmp, "config")
        md = os.path.join(conf, "ttychat", "models.d")
        os.makedirs(md)
        ENV.update(os.environ, XDG_CONFIG_HOME=conf, XDG_DATA_HOME=os.path.join(tmp, "data"), CI="true", HOME=tmp)
        ENV["TTYCHAT_MODELS_DIR"] = os.path.join(tmp, "models")
        base = ["-m", DENSE, "-p", "one two three one two three one two three", "-n", "48", "--temp", "0",
                "--ignore-eos", "-t", "2"]

        rc, off, err = final(base + ["--spec", "off"])
        check(rc == 0 and off is not None, "plain run (%d, %r)" % (rc, err))
        check(off is not None and "speculative" not in off.get("stats", {}), "--spec off reports no drafter")
        rc, ng, err = final(base + ["--spec", "ngram"])
        check(rc == 0 and ng is not None and ng["text"] == off["text"], "--spec ngram: the same text (%d, %r)" %
              (rc, err))
        sp = ng["stats"].get("speculative", {}) if ng else {}
        check(sp.get("drafter") == "ngram" and {"passes", "drafted", "accepted", "acceptance", "tokens_per_pass",
                                                  "speedup", "paused"} <= set(sp), "ngram summary: %r" % sp)
        rc, dr, err = final(base + ["--draft", DRAFT])
        sp = dr["stats"].get("speculative", {}) if dr else {}
        check(rc == 0 and dr["text"] == off["text"], "--draft: the same text (%d, %r)" % (rc, err))
        check(sp.get("drafter") == "draft" and sp.get("passes", 0) > 0 and sp.get("draft_bytes", 0) > 0,
              "draft summary: %r" % sp)
        rc, out, err = run(base + ["--spec", "draft", "-v"])
        check(rc == 0 and ("[speculative (ngram)" in err or "[speculative" not in err),
              "--spec draft without a draft model is n-gram lookup (%r)" % err[-300:])

        # refusals
        rc, out, err = run(base + ["--spec", "fast"])
        check(rc == 2 and "--spec" in err and "'fast'" in err, "bad --spec: exit 2 (%d, %r)" % (rc, err))
        rc, out, err = run(base + ["--draft-max", "40"])
        check(rc == 2 and "--draft-max" in err, "--draft-max 40: exit 2 (%d, %r)" % (rc, err))
        rc, out, err = run(base + ["--draft", os.path.join(tmp, "nope.gguf")])
        check(rc == 3 and "draft model" in err and len(err.strip().splitlines()) == 1,
              "missing draft: exit 3, one line (%d, %r)" % (rc, err))

        # models.d: "draft" and "speculative"
        with open(os.path.join(md, "spec-test.json"), "w") as f:
            json.dump({"name": "spec-test", "file": os.path.abspath(DENSE), "draft": os.path.abspath(DRAFT), "draft_max": 4}, f)
        rc, j, err = final(["-m", "spec-test"] + base[2:])
        sp = j["stats"].get("speculative", {}) if j else {}
        check(rc == 0 and sp.get("drafter") == "draft", "models.d draft (%d, %r, %r)" % (rc, sp, err))
        rc, j, err = final(["-m", "spec-test", "--spec", "off"] + base[2:])
        check(rc == 0 and j and "speculative" not in j["stats"], "--spec off over models.d's draft")
        with open(os.path.join(md, "spec-bad.json"), "w") as f:
            json.dump({"name": "spec-bad", "file": os.path.abspath(DENSE), "speculative": "always"}, f)
        rc, out, err = run(["-m", "spec-bad"] + base[2:])
        check(rc != 0 and "speculative" in err, "models.d bad speculative value refused (%d, %r)" % (rc, err))
        os.unlink(os.path.join(md, "spec-bad.json"))

        # bench --spec
        rc, out, err = run(["bench", "-m", DENSE, "--spec", "ngram", "-r", "1", "-n", "24", "-t", "2", "--json"])
        try:
            rows = json.loads(out)
        except ValueError:
            rows = None
        check(rc == 0 and isinstance(rows, list) and {r["task"] for r in rows} == {"write", "edit"} and
              all(r["spec"] == "ngram" and r["plain_tps"] > 0 and r["spec_tps"] > 0 for r in rows),
              "bench --spec ngram --json (%d, %r, %r)" % (rc, out[:300], err))

        # serve: the guesses in each response's timings
        sp_, port, log = serveproc.start(BIN, ["-m", DENSE, "--draft", DRAFT, "-t", "2"], ENV, tmp)
        try:
            st, _, body = serveproc.request(port, "POST", "/v1/chat/completions", {
                "messages": [{"role": "user", "content": "one two three one two three"}], "max_tokens": 32,
                "temperature": 0, "ignore_eos": True}) if port else (None, {}, None)
            t = body.get("timings", {}) if isinstance(body, dict) else {}
            check(st == 200 and t.get("draft_n", 0) > 0 and 0 <= t.get("draft_n_accepted", -1) <= t["draft_n"] and
                  "draft_speedup" in t, "serve --draft: timings %r" % t)
        finally:
            serveproc.stop(sp_)

        # real files
        if os.path.exists(SMOL) and os.path.exists(QWEN05):
            rc, out, err = run(["-m", SMOL, "--draft", QWEN05, "-p", "hi", "-n", "4"])
            check(rc == 3 and "vocabulary differs" in err and len(err.strip().splitlines()) == 1,
                  "SmolLM2 with a Qwen draft: one line, exit 3 (%d, %r)" % (rc, err))
        else:
            print("SKIP: SmolLM2 or Qwen2.5-Coder 0.5B absent")
        if os.path.exists(QWEN15) and os.path.exists(QWEN05):
            args = ["-m", QWEN15, "-p", EDIT, "-n", "48", "--temp", "0", "-t", "2"]
            rc, a, err = final(args + ["--spec", "off"])
            rc2, b, err2 = final(args + ["--draft", QWEN05])
            rc3, c, err3 = final(args + ["--spec", "ngram"])
            check(rc == 0 and rc2 == 0 and rc3 == 0, "real pair runs (%d %d %d %r)" % (rc, rc2, rc3, err2))
            if a and b and c:
                sb, sc = b["stats"].get("speculative", {}), c["stats"].get("speculative", {})
                print("real pair, 48 tokens: plain %.1f t/s; draft %.1f t/s (%s of %s accepted); ngram %.1f t/s "
                      "(%s of %s accepted)" % (a["stats"]["decode_tps"], b["stats"]["decode_tps"], sb.get("accepted"),
                                               sb.get("drafted"), c["stats"]["decode_tps"], sc.get("accepted"),
                                               sc.get("drafted")))
                check(a["text"] == b["text"] and a["text"] == c["text"],
                      "real pair: the same greedy text\n off:   %r\n draft: %r\n ngram: %r" %
                      (a["text"], b["text"], c["text"]))
                check(sb.get("accepted", 0) > 0, "the 0.5B draft's guesses were accepted: %r" % sb)
        else:
            print("SKIP: the Qwen2.5-Coder pair is absent")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
