#!/usr/bin/python3
"""test_tools_serve.py - OpenAI tool calls through `ttychat serve`.

Random-weight models (always there) given the real chat templates of the
llama.cpp tree through a models.d entry (Qwen 2.5: Hermes <tool_call>;
Llama 3.2: JSON calls), at temperature 1 over many seeds, with
tool_choice "required", a named function and parallel_tool_calls false:
whatever the weights, every call that finishes names a tool and its
arguments parse and validate against the tool's schema (Python's
jsonschema when installed), whole and streamed (the tool_calls deltas put
together as OpenAI clients do), and finish_reason is "tool_calls".  A
round trip (the call and the tool's result sent back) renders.  Refusals
are 400s with the reason: a model whose template takes no tools, a schema
that cannot be honoured, a bad tool_choice, tools with response_format.
On the real Qwen2.5-Coder-0.5B (skipped when absent): "auto" calls the
weather tool for a weather question, and answers after the tool result.
Not one HTTP 500.
"""
import json
import os
import shutil
import sys
import tempfile

from checks import check, report
import serveproc

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
SRC = os.environ.get("TTYCHAT_SRCDIR", ".")
RANDOM = os.path.join(SRC, "tests", "fixtures", "engine", "random")
LLAMACPP = os.environ.get("TTYCHAT_LLAMACPP_DIR", "/work/oracle/llama_cpp_python-0.3.36/vendor/llama.cpp")
TEMPLATES = os.path.join(LLAMACPP, "models", "templates")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", os.path.expanduser("~/.local/share/ttychat/models"))
QWEN = os.path.join(MODELS, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather of a city",
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string", "maxLength": 12},
                                      "unit": {"type": "string", "enum": ["c", "f"]}},
                       "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "add", "description": "Adds two small numbers",
        "parameters": {"type": "object",
                       "properties": {"a": {"type": "integer", "minimum": -99, "maximum": 99},
                                      "b": {"type": "integer", "minimum": 0, "maximum": 9}},
                       "required": ["a", "b"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "now", "description": "The time"}},
]
SCHEMAS = {t["function"]["name"]: t["function"].get("parameters", {"type": "object"}) for t in TOOLS}


def validator():
    try:
        import jsonschema
        return lambda doc, schema: jsonschema.validate(doc, schema) is None
    except ImportError:
        print("no jsonschema package: arguments are only parsed")
        return lambda doc, schema: True


VALID = validator()


def calls_ok(calls, only=None):
    """Every call names a tool (ONLY when given) and its arguments validate."""
    if not calls:
        return False
    for c in calls:
        f = c.get("function", {})
        if c.get("type") != "function" or not c.get("id") or f.get("name") not in SCHEMAS:
            return False
        if only and f["name"] != only:
            return False
        try:
            args = json.loads(f["arguments"])
            if not isinstance(args, dict) or not VALID(args, SCHEMAS[f["name"]]):
                return False
        except Exception:
            return False
    return True


def from_stream(raw):
    """The content, the calls and the finish reason of an SSE stream, the
    tool_calls deltas merged by index as OpenAI's clients merge them."""
    content, calls, finish = "", {}, None
    for line in raw.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ev = json.loads(line[6:])
        for ch in ev.get("choices", []):
            d = ch.get("delta", {})
            content += d.get("content") or ""
            for tc in d.get("tool_calls") or []:
                c = calls.setdefault(tc["index"], {"id": None, "type": None,
                                                   "function": {"name": "", "arguments": ""}})
                if tc.get("id"):
                    c["id"] = tc["id"]
                if tc.get("type"):
                    c["type"] = tc["type"]
                f = tc.get("function", {})
                c["function"]["name"] += f.get("name") or ""
                c["function"]["arguments"] += f.get("arguments") or ""
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
    return content, [calls[i] for i in sorted(calls)], finish


class Server:
    def __init__(self, model, env, tmp):
        self.p, self.port, self.log = serveproc.start(BIN, ["-m", model, "--threads", "1"], env, tmp)
        self.statuses = []

    def chat(self, body, stream=False):
        body = dict(body)
        body.setdefault("messages", [{"role": "user", "content": "What is the weather in Oslo?"}])
        if stream:
            body["stream"] = True
        st, _, r = serveproc.request(self.port, "POST", "/v1/chat/completions", body)
        self.statuses.append(st)
        return st, r

    def stop(self):
        serveproc.stop(self.p)


def forced(srv, name):
    """tool_choice required / named / parallel off at temperature 1."""
    finished = total = 0
    for seed in range(1, 13):
        for choice, only in (("required", None), ({"type": "function", "function": {"name": "add"}}, "add")):
            body = {"tools": TOOLS, "tool_choice": choice, "temperature": 1, "seed": seed, "max_tokens": 160}
            # parallel calls go on as long as random weights like: most
            # runs ask for one, which the grammar then ends
            if seed % 4:
                body["parallel_tool_calls"] = False
            st, r = srv.chat(body)
            total += 1
            if st == 200 and r["choices"][0]["finish_reason"] == "length":
                continue
            ok = st == 200 and r["choices"][0]["finish_reason"] == "tool_calls"
            calls = r["choices"][0]["message"].get("tool_calls") if ok else None
            ok = ok and calls_ok(calls, only) and (seed % 4 == 0 or len(calls) == 1)
            check(ok, "%s %s seed %d: %s %r" % (name, json.dumps(choice), seed, st, r))
            finished += 1
    check(finished >= total // 2, "%s: too few replies finished: %d of %d" % (name, finished, total))
    print("%s: %d of %d forced replies finished, every call valid" % (name, finished, total))
    # streamed
    sfin = 0
    for seed in range(1, 7):
        st, raw = srv.chat({"tools": TOOLS, "tool_choice": "required", "temperature": 1, "seed": seed,
                            "max_tokens": 160, "parallel_tool_calls": seed % 2 == 0}, stream=True)
        if st != 200 or not isinstance(raw, str):
            check(False, "%s stream seed %d: %s %r" % (name, seed, st, raw))
            continue
        content, calls, finish = from_stream(raw)
        if finish == "length":
            continue
        sfin += 1
        check(finish == "tool_calls" and calls_ok(calls) and content == "",
              "%s stream seed %d: %r %r %r" % (name, seed, finish, calls, content))
    check(sfin >= 2, "%s: too few streams finished: %d" % (name, sfin))


def round_trip(srv, name):
    """A call and its result sent back render, in the template's own way."""
    msgs = [{"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "call_abc123", "type": "function",
                             "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_abc123", "content": "{\"temp\": -3}"}]
    st, r = srv.chat({"messages": msgs, "tools": TOOLS, "temperature": 1, "seed": 1, "max_tokens": 8})
    check(st == 200, "%s round trip: %s %r" % (name, st, r))
    st, r = srv.chat({"messages": msgs, "tools": TOOLS, "tool_choice": "none", "temperature": 1, "seed": 1,
                      "max_tokens": 8})
    check(st == 200 and "tool_calls" not in r["choices"][0]["message"], "%s tool_choice none: %s %r" % (name, st, r))


def refusals(srv):
    bad_schema = [{"type": "function", "function": {"name": "u", "parameters": {"type": "array", "uniqueItems": True}}}]
    for body, want in [
            ({"tools": TOOLS, "tool_choice": "sometimes"}, "'tool_choice' must be"),
            ({"tool_choice": "required"}, "needs 'tools'"),
            ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "rm"}}}, "no tool is named 'rm'"),
            ({"tools": bad_schema}, "tool 'u': "),
            ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "name must be"),
            ({"tools": {"x": 1}}, "'tools' must be a list"),
            ({"tools": TOOLS, "parallel_tool_calls": "yes"}, "'parallel_tool_calls' must be"),
            ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "cannot be combined"),
            ({"messages": [{"role": "assistant", "content": None, "tool_calls": "x"}], "tools": TOOLS},
             "'tool_calls' must be a list")]:
        st, r = srv.chat(dict(body, max_tokens=4))
        msg = r.get("error", {}).get("message", "") if isinstance(r, dict) else str(r)
        check(st == 400 and want in msg, "%r: %s %r" % (body, st, msg))


def real_qwen(env, tmp):
    if not os.path.exists(QWEN):
        print("note: %s absent: the real model's part is skipped" % QWEN)
        return []
    srv = Server(QWEN, env, tmp)
    check(srv.port is not None, "serve qwen started (log %s)" % srv.log)
    if srv.port is None:
        srv.stop()
        return []
    try:
        q = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
        for choice in ("auto", "required"):
            st, r = srv.chat({"messages": q, "tools": TOOLS, "tool_choice": choice, "temperature": 0,
                              "max_tokens": 80})
            calls = r["choices"][0]["message"].get("tool_calls") if st == 200 else None
            check(st == 200 and r["choices"][0]["finish_reason"] == "tool_calls" and calls_ok(calls) and
                  calls[0]["function"]["name"] == "get_weather" and
                  "paris" in json.loads(calls[0]["function"]["arguments"])["city"].lower(),
                  "qwen %s: %s %r" % (choice, st, r))
        st, raw = srv.chat({"messages": q, "tools": TOOLS, "tool_choice": "required", "temperature": 0,
                            "max_tokens": 80}, stream=True)
        content, calls, finish = from_stream(raw) if st == 200 else ("", [], None)
        check(finish == "tool_calls" and calls_ok(calls) and calls[0]["function"]["name"] == "get_weather",
              "qwen stream: %r %r" % (finish, calls))
        st, raw = srv.chat({"messages": q, "tools": TOOLS, "temperature": 0, "max_tokens": 80}, stream=True)
        content, calls, finish = from_stream(raw) if st == 200 else ("", [], None)
        check(finish == "tool_calls" and calls_ok(calls) and content == "",
              "qwen stream auto: %r %r %r" % (finish, calls, content))
        # the answer after the result: text, no call
        st, r = srv.chat({"messages": q + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 21, \"sky\": \"sunny\"}"}],
            "tools": TOOLS, "tool_choice": "none", "temperature": 0, "max_tokens": 60})
        check(st == 200 and r["choices"][0]["message"]["content"], "qwen answer after the result: %s %r" % (st, r))
        try:
            import openai
        except ImportError:
            openai = None
            print("no openai package: its client is not tried")
        if openai:
            cl = openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % srv.port, api_key="x", max_retries=0)
            r = cl.chat.completions.create(model="m", messages=q, tools=TOOLS, tool_choice="required",
                                           temperature=0, max_tokens=80)
            tc = r.choices[0].message.tool_calls
            check(r.choices[0].finish_reason == "tool_calls" and tc and tc[0].function.name == "get_weather" and
                  isinstance(json.loads(tc[0].function.arguments), dict), "openai client: %r" % r)
            st = cl.chat.completions.create(model="m", messages=q, tools=TOOLS, tool_choice="required",
                                            temperature=0, max_tokens=80, stream=True)
            args, name = "", ""
            for chunk in st:
                for d in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
                    name += d.function.name or "" if d.function else ""
                    args += d.function.arguments or "" if d.function else ""
            check(name == "get_weather" and isinstance(json.loads(args), dict),
                  "openai client stream: %r %r" % (name, args))
    finally:
        srv.stop()
    return srv.statuses


def main():
    if not os.path.exists(BIN) or not os.path.isdir(RANDOM):
        print("SKIP: no ttychat binary or no random-weight models")
        return 77
    tmp = tempfile.mkdtemp(prefix="ttychat-tools-serve-")
    env = dict(os.environ)
    for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        env.pop(v, None)
    env["XDG_CONFIG_HOME"] = os.path.join(tmp, "config")
    env["XDG_DATA_HOME"] = os.path.join(tmp, "data")
    mdir = os.path.join(tmp, "config", "ttychat", "models.d")
    os.makedirs(mdir)
    statuses = []
    try:
        # a model whose template takes no tools: a clear 400
        srv = Server(os.path.join(RANDOM, "llama3-f16.gguf"), env, tmp)
        check(srv.port is not None, "serve started (log %s)" % srv.log)
        if srv.port:
            st, r = srv.chat({"tools": TOOLS, "max_tokens": 4})
            msg = r.get("error", {}).get("message", "") if isinstance(r, dict) else str(r)
            check(st == 400 and "cannot render tools" in msg, "no tool template: %s %r" % (st, msg))
        srv.stop()
        statuses += srv.statuses

        # (gpt-oss: harmony calls start with header tokens no grammar can
        # force, so only its rendering and auto replies are tried)
        formats = [("hermes", "qwen2-f16.gguf", "Qwen-Qwen2.5-7B-Instruct.jinja"),
                   ("llama3", "llama3-f16.gguf", "meta-llama-Llama-3.2-3B-Instruct.jinja"),
                   ("harmony", "gpt-oss-f16.gguf", "openai-gpt-oss-120b.jinja")]
        if not os.path.isdir(TEMPLATES):
            print("note: no llama.cpp templates in %s: the random-weight formats are skipped" % TEMPLATES)
            formats = []
        for name, model, tmpl in formats:
            with open(os.path.join(mdir, name + ".json"), "w") as f:
                json.dump({"name": name, "file": os.path.abspath(os.path.join(RANDOM, model)),
                           "template_file": os.path.abspath(os.path.join(TEMPLATES, tmpl))}, f)
            srv = Server(name, env, tmp)
            check(srv.port is not None, "serve %s started (log %s)" % (name, srv.log))
            if srv.port is None:
                srv.stop()
                continue
            try:
                if name != "harmony":
                    forced(srv, name)
                round_trip(srv, name)
                if name == "hermes":
                    refusals(srv)
                # auto at temperature 1: text or valid calls, never broken
                # ones; streamed, the same reply (same seed) in deltas
                for seed in range(1, 9):
                    body = {"tools": TOOLS, "temperature": 1, "seed": seed, "max_tokens": 60}
                    st, r = srv.chat(body)
                    ok = st == 200
                    if ok and r["choices"][0]["finish_reason"] == "tool_calls":
                        ok = calls_ok(r["choices"][0]["message"]["tool_calls"])
                    check(ok, "%s auto seed %d: %s %r" % (name, seed, st, r))
                    if not ok or seed > 4:
                        continue
                    st, raw = srv.chat(body, stream=True)
                    content, calls, finish = from_stream(raw) if st == 200 else (None, None, None)
                    msg = r["choices"][0]["message"]
                    want = [(c["function"]["name"], c["function"]["arguments"]) for c in msg.get("tool_calls") or []]
                    check(finish == r["choices"][0]["finish_reason"] and content == (msg["content"] or "") and
                          [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == want,
                          "%s auto seed %d streamed: %r %r %r vs %r" % (name, seed, finish, content, calls, msg))
            finally:
                srv.stop()
            statuses += srv.statuses
        statuses += real_qwen(env, tmp)
        check(500 not in statuses and None not in statuses,
              "no 500s and no dropped connections: %s" % sorted(set(map(str, statuses))))
        print("%d requests" % len(statuses))
    finally:
        if not os.environ.get("TTYCHAT_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
