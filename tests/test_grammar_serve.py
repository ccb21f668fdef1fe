#!/usr/bin/python3
"""test_grammar_serve.py - constrained replies from `ttychat serve`.

On a random-weight model (always there) at temperature 1 with many seeds:
response_format json_schema over a corpus of schemas (every reply valid
under its schema, checked with Python's jsonschema when installed),
json_object (a JSON object), the llama.cpp server's 'grammar' field, and
streamed replies (the concatenated deltas valid).  Bad requests are 400s
with the reason, never 500s: a schema with an unsupported keyword, a
grammar that does not compile, an unknown response_format type, a
hostile schema (a $ref cycle, deep nesting, a huge enum).  Not one HTTP
500 over all requests.  With the `openai` package: the same through its
client (response_format, and its BadRequestError for a bad schema).
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
MODEL = os.path.join(SRC, "tests", "fixtures", "engine", "random", "llama3-f16.gguf")

SCHEMAS = [
    {"type": "object",
     "properties": {"name": {"type": "string", "maxLength": 10}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
                    "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "array", "items": {"type": "integer", "minimum": -50, "maximum": 50}, "minItems": 1, "maxItems": 4},
    {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
                                      "ok": {"type": "boolean"}}, "required": ["code", "ok"]},
    {"anyOf": [{"type": "integer", "minimum": 100, "maximum": 999}, {"type": "null"}]},
    {"$defs": {"t": {"type": "object", "properties": {"v": {"type": "integer", "maximum": 9},
                                                       "kid": {"anyOf": [{"$ref": "#/$defs/t"}, {"type": "null"}]}},
                     "required": ["v", "kid"]}}, "$ref": "#/$defs/t"},
]

HOSTILE = [
    ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, None),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "string", "pattern": "(a+)+$"}, "anchored"),
    ({"type": "object", "properties": {"x": {"type": "integer", "minimum": 1e300}}}, "18 digits"),
    ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "allOf"),
    ({"type": "weird"}, "not a JSON Schema type"),
    ({"type": "object", "properties": {"\u0001\"\\": {"type": "string", "maxLength": 1000000}}}, None),
    ({"enum": list(range(3000))}, None),
]


def deep(n):
    s = {"type": "integer"}
    for _ in range(n):
        s = {"type": "array", "items": s, "maxItems": 1}
    return s


def validator():
    try:
        import jsonschema
        return lambda doc, schema: jsonschema.validate(doc, schema) is None
    except ImportError:
        print("no jsonschema package: replies are only parsed")
        return lambda doc, schema: True


def main():
    if not os.path.exists(BIN) or not os.path.exists(MODEL):
        print("SKIP: no ttychat binary or no random-weight model")
        return 77
    valid = validator()
    tmp = tempfile.mkdtemp(prefix="ttychat-grammar-serve-")
    env = dict(os.environ)
    for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        env.pop(v, None)
    env["XDG_CONFIG_HOME"] = os.path.join(tmp, "config")
    env["XDG_DATA_HOME"] = os.path.join(tmp, "data")
    p, port, log = serveproc.start(BIN, ["-m", MODEL], env, tmp)
    check(port is not None, "serve started (log %s)" % log)
    if port is None:
        serveproc.stop(p)
        return report()
    statuses = []

    def chat(body, stream=False):
        body = dict(body)
        body.setdefault("messages", [{"role": "user", "content": "JSON please"}])
        if stream:
            body["stream"] = True
        st, _, r = serveproc.request(port, "POST", "/v1/chat/completions", body)
        statuses.append(st)
        return st, r

    try:
        finished = total = 0
        for i, sc in enumerate(SCHEMAS):
            for seed in range(1, 9):
                st, r = chat({"temperature": 1, "seed": seed, "max_tokens": 400,
                              "response_format": {"type": "json_schema", "json_schema": {"name": "s%d" % i, "schema": sc}}})
                total += 1
                if st == 200 and r["choices"][0]["finish_reason"] == "length":
                    continue
                ok = st == 200
                try:
                    ok = ok and valid(json.loads(r["choices"][0]["message"]["content"]), sc)
                except Exception as e:
                    ok = False
                check(ok, "schema %d seed %d: %s %r" % (i, seed, st, r if not ok else ""))
                finished += 1
        check(finished >= total * 3 // 4, "too few finished: %d of %d" % (finished, total))
        print("json_schema: %d of %d replies finished, all valid" % (finished, total))

        for seed in range(1, 6):
            st, r = chat({"temperature": 1, "seed": seed, "max_tokens": 300, "response_format": {"type": "json_object"}})
            if st == 200 and r["choices"][0]["finish_reason"] == "stop":
                try:
                    check(isinstance(json.loads(r["choices"][0]["message"]["content"]), dict), "json_object %d" % seed)
                except ValueError:
                    check(False, "json_object %d: %r" % (seed, r))
            else:
                check(st == 200, "json_object %d: %s" % (seed, st))

        g = 'root ::= "yes" | "no" | [0-9]{1,3}\n'
        for seed in range(1, 6):
            st, r = chat({"temperature": 1, "seed": seed, "max_tokens": 20, "grammar": g})
            text = r["choices"][0]["message"]["content"] if st == 200 else None
            check(st == 200 and (text in ("yes", "no") or (text.isdigit() and len(text) <= 3)),
                  "grammar field %d: %s %r" % (seed, st, text))

        # streamed: the deltas together are the valid reply
        st, raw = chat({"temperature": 1, "seed": 3, "max_tokens": 400,
                        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMAS[0]}}},
                       stream=True)
        text = ""
        if st == 200 and isinstance(raw, str):
            for line in raw.splitlines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    ch = json.loads(line[6:])["choices"]
                    if ch and ch[0]["delta"].get("content"):
                        text += ch[0]["delta"]["content"]
        try:
            check(st == 200 and valid(json.loads(text), SCHEMAS[0]), "streamed reply: %s %r" % (st, text))
        except Exception:
            check(False, "streamed reply does not parse: %r" % text)

        # refusals: 400 with the reason
        for sc, want in HOSTILE + [(deep(100), "nests over")]:
            st, r = chat({"max_tokens": 50, "temperature": 1, "seed": 1,
                          "response_format": {"type": "json_schema", "json_schema": {"name": "h", "schema": sc}}})
            msg = r.get("error", {}).get("message", "") if isinstance(r, dict) else str(r)
            if want:
                check(st == 400 and want in msg, "hostile %s: %s %r" % (json.dumps(sc)[:80], st, msg))
            else:
                # accepted or refused, but never a 500; accepted replies valid
                ok = st in (200, 400)
                if st == 200 and r["choices"][0]["finish_reason"] == "stop":
                    try:
                        ok = valid(json.loads(r["choices"][0]["message"]["content"]), sc)
                    except Exception:
                        ok = False
                check(ok, "hostile %s: %s %r" % (json.dumps(sc)[:80], st, msg or r))
        for body, want in [({"grammar": "root ::= foo\n"}, "rule 'foo' is used but not defined"),
                           ({"grammar": 5}, "'grammar' must be a string"),
                           ({"response_format": {"type": "xml"}}, "not text, json_object or json_schema"),
                           ({"response_format": {"type": "json_schema"}}, "needs 'json_schema'"),
                           ({"grammar": "root ::= \"a\"\n", "response_format": {"type": "json_object"}},
                            "cannot be combined")]:
            st, r = chat(dict(body, max_tokens=5))
            msg = r.get("error", {}).get("message", "") if isinstance(r, dict) else str(r)
            check(st == 400 and want in msg, "%r: %s %r" % (body, st, msg))
        st, r = chat({"max_tokens": 5, "response_format": {"type": "text"}})
        check(st == 200, "response_format text: %s" % st)

        try:
            import openai
        except ImportError:
            openai = None
            print("no openai package: its client is not tried")
        if openai:
            cl = openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key="x", max_retries=0)
            r = cl.chat.completions.create(model="m", messages=[{"role": "user", "content": "a person"}],
                                           temperature=1, seed=4, max_tokens=400,
                                           response_format={"type": "json_schema",
                                                            "json_schema": {"name": "p", "schema": SCHEMAS[0]}})
            if r.choices[0].finish_reason == "stop":
                check(valid(json.loads(r.choices[0].message.content), SCHEMAS[0]), "openai client reply")
            try:
                cl.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], max_tokens=5,
                                           response_format={"type": "json_schema", "json_schema": {
                                               "name": "p", "schema": {"type": "array", "uniqueItems": True}}})
                check(False, "openai client: a bad schema was accepted")
            except openai.BadRequestError as e:
                check("uniqueItems" in str(e), "openai client: %s" % e)
        check(500 not in statuses and None not in statuses, "no 500s and no dropped connections: %s" %
              sorted(set(map(str, statuses))))
        print("%d requests" % len(statuses))
    finally:
        serveproc.stop(p)
        if not os.environ.get("TTYCHAT_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
