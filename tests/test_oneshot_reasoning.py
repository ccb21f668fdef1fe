#!/usr/bin/python3
"""test_oneshot_reasoning.py - thinking models in one-shot mode.

On the random-weight qwen3 fixture with a thinking chat template from
models.d (the template opens <think> unless enable_thinking is false),
decoded greedily with --ignore-eos so that it thinks as long as asked:
stdout carries only the answer, --show-reasoning writes the reasoning to
stderr, --json token lines say their part and the summary has content and
reasoning apart with the counts, --reasoning-budget N closes the block at
N tokens, --think off renders the block closed.  On the real SmolLM2 with
--no-template, a prompt that opens <think> gets its reasoning kept off
stdout and closed by the budget.  Bad values are usage errors.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
SRC = os.environ.get("TTYCHAT_SRCDIR", ".")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", "")
FIXTURE = os.path.join(SRC, "tests", "fixtures", "engine", "random", "qwen3-f16.gguf")
SMOL = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
THINK_TMPL = ("{%- for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
              "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}"
              "{%- if enable_thinking is defined and enable_thinking is false %}{{ '\\n</think>\\n\\n' }}"
              "{%- endif %}{%- endif %}")
ENV = {}


def run(args, timeout=120):
    p = subprocess.run([BIN] + args, stdin=subprocess.DEVNULL, capture_output=True, env=ENV, timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def json_lines(args):
    rc, out, err = run(args + ["--json"])
    try:
        objs = [json.loads(l) for l in out.decode("utf-8").splitlines()]
    except ValueError:
        objs = []
    return rc, objs, err


def main():
    if not os.access(BIN, os.X_OK):
        print("SKIP: %s is not built" % BIN)
        return 77
    if not os.path.isfile(FIXTURE):
        print("SKIP: %s is absent" % FIXTURE)
        return 77
    tmp = tempfile.mkdtemp(prefix="test_oneshot_reasoning.")
    try:
        conf = os.path.join(tmp, "config")
        md = os.path.join(conf, "ttychat", "models.d")
        os.makedirs(md)
        ENV.update(os.environ, XDG_CONFIG_HOME=conf, XDG_DATA_HOME=os.path.join(tmp, "data"), CI="true",
                   HOME=tmp)
        for k in ("TTYCHAT_PASSPHRASE_FILE", "TTYCHAT_PASSPHRASE_FD", "TTYCHAT_TEST_INJECT"):
            ENV.pop(k, None)
        with open(os.path.join(md, "thinker.json"), "w") as f:
            json.dump({"name": "thinker", "file": FIXTURE, "template": THINK_TMPL, "context_size": 1024}, f)
        with open(os.path.join(md, "budgeted.json"), "w") as f:
            json.dump({"name": "budgeted", "file": FIXTURE, "template": THINK_TMPL, "context_size": 1024,
                       "reasoning_budget": 3, "think": "on"}, f)
        base = ["-m", "thinker", "-p", "What is 2+2?", "--temp", "0", "--ignore-eos", "-t", "2"]

        # --json: every token line says its part; the summary keeps them apart
        rc, objs, err = json_lines(base + ["-n", "24", "--reasoning-budget", "6"])
        toks = [o for o in objs if o.get("type") == "token"]
        done = objs[-1] if objs else {}
        think = "".join(o["text"] for o in toks if o.get("part") == "reasoning")
        answer = "".join(o["text"] for o in toks if o.get("part") == "answer")
        check(rc == 0 and done.get("type") == "done", "budget run: rc %d, %r" % (rc, err))
        check(toks and all(o.get("part") in ("reasoning", "answer") for o in toks), "every token says its part")
        parts = [o["part"] for o in toks]
        check("answer" in parts and "reasoning" in parts and
              parts.index("answer") > max(i for i, p in enumerate(parts) if p == "reasoning"),
              "reasoning first, then the answer: %r" % parts)
        st = done.get("stats", {})
        check(st.get("reasoning_tokens") == 6 and st.get("reasoning_end") == "budget" and st.get("gen_tokens") == 24,
              "budget 6: %r" % st)
        check(done.get("reasoning") == think and done.get("content") == answer and done.get("text") == answer,
              "summary: content and reasoning apart")
        check(think.endswith("Considering the limited time, I have to give the answer based on the thinking so far.\n"),
              "the wrap-up phrase closes the reasoning: %r" % think[-60:])
        check("<think>" not in think + answer and "</think>" not in think + answer, "no markers in the text")

        # text: stdout is the answer only; --show-reasoning puts the reasoning on stderr
        rc, out, err = run(base + ["-n", "24", "--reasoning-budget", "6"])
        check(rc == 0 and out.decode("utf-8", "replace").rstrip("\n") == answer.replace("\x00", "").rstrip("\n"),
              "stdout is the answer: %r vs %r" % (out[:80], answer[:80]))
        check("Considering the limited time" not in err, "no reasoning on stderr without --show-reasoning")
        rc, out2, err = run(base + ["-n", "24", "--reasoning-budget", "6", "--show-reasoning"])
        check(rc == 0 and out2 == out and "Considering the limited time" in err,
              "--show-reasoning: the same stdout, the reasoning on stderr (%r)" % err[-200:])

        # --think off: the template closes the block; --think on: all reasoning
        rc, objs, err = json_lines(base + ["-n", "8", "--think", "off"])
        done = objs[-1] if objs else {}
        check(rc == 0 and done.get("reasoning") == "" and done.get("stats", {}).get("reasoning_tokens") == 0 and
              done.get("content"), "--think off: no reasoning (%r)" % done.get("stats"))
        rc, objs, err = json_lines(base + ["-n", "8", "--think", "on", "--reasoning-effort", "high"])
        done = objs[-1] if objs else {}
        check(rc == 0 and done.get("content") == "" and done.get("stats", {}).get("reasoning_tokens") == 8,
              "--think on: reasoning only within 8 tokens (%r)" % done.get("stats"))
        rc, out, _ = run(base + ["-n", "8", "--think", "on"])
        check(rc == 0 and out.strip() == b"", "stdout stays empty while the model only thinks: %r" % out[:60])

        # --save keeps the reasoning apart from the answer, and the thinking
        # settings with the conversation; --continue goes on with them
        pw = os.path.join(tmp, "pw")
        with open(pw, "w") as f:
            f.write("correct horse\n")
        ENV["TTYCHAT_PASSPHRASE_FILE"] = pw
        rc, objs, err = json_lines(base + ["-n", "16", "--reasoning-budget", "4", "--reasoning-effort", "low",
                                           "--save"])
        done = objs[-1] if objs else {}
        cid = done.get("conversation")
        check(rc == 0 and cid, "--save: a conversation (%r)" % err)
        rc, out, err = run(["history", "export", cid or "none", "--format", "json"])
        conv = json.loads(out) if rc == 0 else {}
        msgs = conv.get("messages", [])
        check(len(msgs) == 2 and msgs[1].get("text") == done.get("content") and
              msgs[1].get("reasoning") == done.get("reasoning") and "reasoning" not in msgs[0],
              "history: the answer and its reasoning apart (%r)" % msgs[-1:])
        samp = conv.get("sampling", {})
        check(samp.get("reasoning_budget") == 4 and samp.get("reasoning_effort") == "low",
              "history: the thinking settings are saved (%r)" % samp)
        rc, out, err = run(["history", "show", cid or "none"])
        check(rc == 0 and "(reasoning)" in out.decode() and "(answer)" in out.decode(),
              "history show marks reasoning and answer")
        rc, objs, err = json_lines(["-m", "thinker", "-p", "And 3+3?", "--temp", "0", "--ignore-eos", "-t", "2",
                                    "-n", "10", "--continue", cid or "none"])
        done = objs[-1] if objs else {}
        check(rc == 0 and done.get("stats", {}).get("reasoning_tokens") == 4 and
              done.get("stats", {}).get("reasoning_end") == "budget",
              "--continue goes on with the saved budget (%r %r)" % (done.get("stats"), err))
        del ENV["TTYCHAT_PASSPHRASE_FILE"]

        # models.d defaults, under the flags
        rc, objs, err = json_lines(["-m", "budgeted", "-p", "Hi", "--temp", "0", "--ignore-eos", "-t", "2", "-n", "10"])
        st = objs[-1].get("stats", {}) if objs else {}
        check(rc == 0 and st.get("reasoning_tokens") == 3 and st.get("reasoning_end") == "budget",
              "models.d reasoning_budget 3: %r" % st)
        rc, objs, err = json_lines(["-m", "budgeted", "-p", "Hi", "--temp", "0", "--ignore-eos", "-t", "2", "-n", "10",
                                    "--reasoning-budget", "5"])
        st = objs[-1].get("stats", {}) if objs else {}
        check(rc == 0 and st.get("reasoning_tokens") == 5, "the flag over models.d: %r" % st)

        # usage errors
        for bad in (["--think", "maybe"], ["--reasoning-effort", "max"], ["--reasoning-budget", "-1"],
                    ["--reasoning-budget", "x"]):
            rc, out, err = run(["-p", "x"] + bad)
            check(rc == 2 and err.count("\n") == 1 and bad[0] in err, "%s: exit 2, one line (%d, %r)" % (bad, rc, err))

        # the real SmolLM2, raw: a prompt that opens <think>
        if os.path.isfile(SMOL):
            prompt = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n"
            rc, objs, err = json_lines(["-m", SMOL, "--no-template", "-p", prompt, "--temp", "0", "-n", "30",
                                        "--ignore-eos", "--reasoning-budget", "8", "-t", "2"])
            done = objs[-1] if objs else {}
            st = done.get("stats", {})
            check(rc == 0 and st.get("reasoning_tokens") == 8 and st.get("reasoning_end") == "budget" and
                  done.get("reasoning") and done.get("content"), "SmolLM2 raw <think>: %r %r" % (st, err))
            rc, out, err = run(["-m", SMOL, "--no-template", "-p", prompt, "--temp", "0", "-n", "30",
                                "--ignore-eos", "--reasoning-budget", "8", "-t", "2"])
            check(rc == 0 and out.decode().rstrip("\n") == done.get("content", "").rstrip("\n") and
                  done.get("reasoning", "")[:20] not in out.decode(),
                  "SmolLM2: stdout has the answer only (%r)" % out[:100])
        else:
            print("note: %s absent: the real-model checks are skipped" % SMOL)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
