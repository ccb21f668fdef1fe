#!/usr/bin/python3
"""test_serve_reasoning.py - `ttychat serve` with a thinking model.

The random-weight qwen3 fixture with a thinking chat template (models.d:
<think> opened by the generation prompt unless enable_thinking is false),
decoded greedily with ignore_eos so that it thinks as long as asked:
responses carry reasoning_content apart from content, stream deltas too
(joined, they equal the whole response), usage counts the reasoning
tokens, reasoning_budget closes it, chat_template_kwargs and
reasoning_effort reach the template, bad values are 400.  With a Python
that has the `openai` package, its client parses the stream into
reasoning and content (skipped with a note otherwise).
"""
import http.client
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
FIXTURE = os.path.join(SRC, "tests", "fixtures", "engine", "random", "qwen3-f16.gguf")
THINK_TMPL = ("{%- for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
              "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}"
              "{%- if enable_thinking is defined and enable_thinking is false %}{{ '\\n</think>\\n\\n' }}"
              "{%- endif %}{%- endif %}")
WRAP = "Considering the limited time, I have to give the answer based on the thinking so far."
REQ = {"model": "thinker", "messages": [{"role": "user", "content": "What is 2+2?"}], "temperature": 0,
       "max_tokens": 16, "ignore_eos": True, "reasoning_budget": 5}


def python_with(module):
    for py in (os.environ.get("TTYCHAT_PYTHON"), shutil.which("python3"), "/usr/bin/python3"):
        if py and os.path.exists(py):
            try:
                if subprocess.run([py, "-c", "import " + module], capture_output=True, timeout=60).returncode == 0:
                    return py
            except (OSError, subprocess.TimeoutExpired):
                pass
    return None


def stream(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/chat/completions", body=json.dumps(dict(body, stream=True)).encode(),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read().decode()
    c.close()
    events = [l[6:] for l in raw.split("\n") if l.startswith("data: ")]
    think = content = ""
    for e in events:
        if e == "[DONE]":
            continue
        for ch in json.loads(e).get("choices", []):
            d = ch.get("delta", {})
            think += d.get("reasoning_content") or ""
            content += d.get("content") or ""
    return r.status, think, content, events


OPENAI = r"""
import json, sys, openai
c = openai.OpenAI(base_url=sys.argv[1], api_key="none", max_retries=0)
think = content = ""
s = c.chat.completions.create(model="thinker", messages=[{"role": "user", "content": "What is 2+2?"}],
                              temperature=0, max_tokens=16, stream=True,
                              extra_body={"ignore_eos": True, "reasoning_budget": 5})
for ch in s:
    if ch.choices:
        d = ch.choices[0].delta
        think += getattr(d, "reasoning_content", None) or ""
        content += d.content or ""
w = c.chat.completions.create(model="thinker", messages=[{"role": "user", "content": "What is 2+2?"}],
                              temperature=0, max_tokens=16, reasoning_effort="low",
                              extra_body={"ignore_eos": True, "reasoning_budget": 5})
m = w.choices[0].message
print(json.dumps({"think": think, "content": content, "whole_think": getattr(m, "reasoning_content", None),
                  "whole_content": m.content,
                  "reasoning_tokens": w.usage.completion_tokens_details.reasoning_tokens}))
"""


def main():
    if not os.access(BIN, os.X_OK):
        print("SKIP: %s is not built" % BIN)
        return 77
    if not os.path.isfile(FIXTURE):
        print("SKIP: %s is absent" % FIXTURE)
        return 77
    tmp = tempfile.mkdtemp(prefix="test_serve_reasoning.")
    p = None
    try:
        md = os.path.join(tmp, "config", "ttychat", "models.d")
        os.makedirs(md)
        with open(os.path.join(md, "thinker.json"), "w") as f:
            json.dump({"name": "thinker", "file": FIXTURE, "template": THINK_TMPL, "context_size": 1024}, f)
        with open(os.path.join(md, "budgeted.json"), "w") as f:
            json.dump({"name": "budgeted", "file": FIXTURE, "template": THINK_TMPL, "context_size": 1024,
                       "reasoning_budget": 3}, f)
        env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(tmp, "config"), XDG_DATA_HOME=os.path.join(tmp, "data"),
                   CI="true")
        for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            env.pop(v, None)
        p, port, log = serveproc.start(BIN, ["-m", "thinker", "-t", "2"], env, tmp)
        if not port:
            print(open(log, errors="replace").read()[-2000:])
            check(False, "serve starts")
            return report()

        st, _, body = serveproc.request(port, "POST", "/v1/chat/completions", REQ)
        msg = body.get("choices", [{}])[0].get("message", {}) if isinstance(body, dict) else {}
        think, content = msg.get("reasoning_content", ""), msg.get("content", "")
        check(st == 200 and think.endswith(WRAP + "\n") and content, "whole: reasoning and content apart (%r)" % msg)
        usage = body.get("usage", {}) if isinstance(body, dict) else {}
        check(usage.get("completion_tokens_details", {}).get("reasoning_tokens") == 5 and
              usage.get("completion_tokens") == 16, "usage counts 5 reasoning tokens: %r" % usage)
        check("<think>" not in think + content and "</think>" not in think + content, "no markers")

        st, sthink, scontent, events = stream(port, REQ)
        check(st == 200 and sthink == think and scontent == content,
              "stream deltas join into the whole response (%r %r)" % (sthink[-40:], scontent[:40]))
        first = json.loads(events[0])["choices"][0]["delta"] if events else {}
        check(first.get("role") == "assistant" and "reasoning_content" in first and "content" not in first,
              "the first delta is reasoning: %r" % first)

        # the template's switch through chat_template_kwargs, and reasoning_effort
        st, _, body = serveproc.request(port, "POST", "/v1/chat/completions",
                                        dict(REQ, chat_template_kwargs={"enable_thinking": False}))
        msg = body.get("choices", [{}])[0].get("message", {}) if isinstance(body, dict) else {}
        check(st == 200 and "reasoning_content" not in msg and msg.get("content") and
              body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0,
              "chat_template_kwargs enable_thinking false: no reasoning (%r)" % msg)
        st, _, body = serveproc.request(port, "POST", "/v1/chat/completions", dict(REQ, reasoning_effort="high"))
        check(st == 200, "reasoning_effort accepted (%s)" % st)
        for bad in ({"reasoning_effort": 3}, {"reasoning_effort": "x y"}, {"chat_template_kwargs": [1]},
                    {"reasoning_budget": -1}, {"ignore_eos": "yes"}):
            st, _, body = serveproc.request(port, "POST", "/v1/chat/completions", dict(REQ, **bad))
            check(st == 400 and body.get("error", {}).get("type") == "invalid_request_error",
                  "%r: 400 (%s %r)" % (bad, st, body))

        # models.d's reasoning_budget for requests that leave it out
        serveproc.stop(p)
        p, port, log = serveproc.start(BIN, ["-m", "budgeted", "-t", "2"], env, tmp)
        req = {k: v for k, v in REQ.items() if k != "reasoning_budget"}
        st, _, body = serveproc.request(port, "POST", "/v1/chat/completions", req)
        check(st == 200 and body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 3,
              "models.d reasoning_budget 3 (%s %r)" % (st, body.get("usage") if isinstance(body, dict) else body))
        st, _, body = serveproc.request(port, "POST", "/v1/chat/completions", REQ)
        check(st == 200 and body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 5,
              "the request's budget over models.d")
        serveproc.stop(p)
        p, port, log = serveproc.start(BIN, ["-m", "thinker", "-t", "2"], env, tmp)

        # ttychat's remote backend against it: the parts arrive apart, and
        # --think off travels as chat_template_kwargs
        def remote(extra):
            r = subprocess.run([BIN, "--remote", "http://127.0.0.1:%d/v1" % port, "-m", "thinker", "-p",
                                "What is 2+2?", "--temp", "0", "-n", "12", "--json"] + extra,
                               capture_output=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
            try:
                objs = [json.loads(l) for l in r.stdout.decode().splitlines()]
            except ValueError:
                objs = []
            return r.returncode, objs, r.stderr.decode(errors="replace")
        rc, objs, err = remote([])
        parts = [o.get("part") for o in objs if o.get("type") == "token"]
        done = objs[-1] if objs else {}
        check(rc == 0 and "reasoning" in parts and done.get("reasoning") and
              "".join(o["text"] for o in objs if o.get("part") == "reasoning") == done.get("reasoning"),
              "remote: reasoning TOKENs from reasoning_content (%r %r)" % (parts[:5], err[-300:]))
        rc, objs, err = remote(["--think", "off"])
        done = objs[-1] if objs else {}
        check(rc == 0 and done.get("reasoning") == "" and done.get("content"),
              "remote: --think off reaches the server's template (%r)" % done.get("reasoning"))

        py = python_with("openai")
        if py:
            r = subprocess.run([py, "-c", OPENAI, "http://127.0.0.1:%d/v1" % port], capture_output=True,
                               timeout=120, env=env)
            try:
                res = json.loads(r.stdout.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                res = None
            check(res is not None, "openai client ran: %r %r" % (r.stdout[-300:], r.stderr[-800:]))
            if res:
                check(res["think"] == think and res["content"] == content,
                      "openai: the stream parses into reasoning and content")
                check(res["whole_think"] == think and res["whole_content"] == content and res["reasoning_tokens"] == 5,
                      "openai: message.reasoning_content, usage details (%r)" % res)
        else:
            print("note: no Python with the openai package: its checks are skipped (pip install openai)")
    finally:
        if p:
            serveproc.stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
