#!/usr/bin/python3
"""test_grammar_cli.py - `ttychat -p ... --grammar FILE` end to end.

1. Refusals before any model loads: a grammar with a syntax error names
   the file and the line (exit 1), an unreadable file (exit 1), --grammar
   with --remote (exit 2).
2. Random-weight models of four families (BPE and SentencePiece
   vocabularies) at temperature 1 over many seeds: every reply exits 0, is
   valid JSON of the grammar's shape (Python's json module, and the
   grammar's own pattern re-checked here with a regular expression), and
   ended with the model's end of turn.
3. A reply cut by --max-tokens before the grammar completes exits 4 and
   says so.
4. The real models (skipped when absent): a JSON grammar (llama.cpp's
   grammars/json.gbnf when TTYCHAT_LLAMACPP_SRC is set, else the same
   grammar written here) gives replies that json.loads() accepts, greedy
   and sampled.
5. --json-schema: a corpus of schemas (objects with required and optional
   properties, integer ranges, enums, patterns, formats, arrays with
   bounds, anyOf, recursive $ref) over random-weight models at
   temperature 1 and many seeds, and the real models: every reply that
   ends is valid under its schema (Python's jsonschema package; json.loads
   alone where it is not installed).  An unsupported keyword is refused
   with its name before the model loads.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
SRC = os.environ.get("TTYCHAT_SRCDIR", ".")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", "")
RANDOM = os.path.join(SRC, "tests", "fixtures", "engine", "random")
LLAMACPP = os.environ.get("TTYCHAT_LLAMACPP_SRC", "")

JSON_GBNF = r'''root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws
array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws
string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
'''

# a bounded object, so that a random model must finish it
OBJ_GBNF = r'''root ::= "{" ws "\"name\"" ws ":" ws str ws "," ws "\"tags\"" ws ":" ws "[" ws (str (ws "," ws str){0,3})? ws "]" ws "}"
str ::= "\"" ([a-zA-Z0-9 _.] | "\\" ["\\nt] | [\u00e0-\u00ff]){0,12} "\""
ws ::= [ \n]{0,2}
'''
OBJ_RE = re.compile(r'\{[ \n]{0,2}"name"[ \n]{0,2}:[ \n]{0,2}(?P<s>"(?:[a-zA-Z0-9 _.]|\\["\\nt]|[\u00e0-\u00ff]){0,12}")'
                    r'[ \n]{0,2},[ \n]{0,2}"tags"[ \n]{0,2}:[ \n]{0,2}\[[ \n]{0,2}'
                    r'(?:(?P=s)|"(?:[a-zA-Z0-9 _.]|\\["\\nt]|[\u00e0-\u00ff]){0,12}")?'
                    r'(?:[ \n]{0,2},[ \n]{0,2}"(?:[a-zA-Z0-9 _.]|\\["\\nt]|[\u00e0-\u00ff]){0,12}"){0,3}'
                    r'[ \n]{0,2}\][ \n]{0,2}\}\Z')


def run(args, timeout=300):
    p = subprocess.run([BIN] + args, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def final(out):
    """The --json=final line, or None."""
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def refusals(tmp, model):
    bad = os.path.join(tmp, "bad.gbnf")
    with open(bad, "w") as f:
        f.write('root ::= "a" item\n\nitem ::= [a-z\n')
    rc, out, err = run(["-m", model, "-p", "x", "--grammar", bad])
    check(rc == 1 and "bad.gbnf" in err and "line 3" in err and "unterminated character class" in err,
          "syntax error: rc %d, %r" % (rc, err))
    check(len(err.strip().splitlines()) == 1, "one error line: %r" % err)
    rc, out, err = run(["-m", "/nonexistent/model.gguf", "-p", "x", "--grammar", bad])
    check(rc == 1 and "line 3" in err, "the grammar is checked before the model loads: rc %d, %r" % (rc, err))
    rc, out, err = run(["-m", model, "-p", "x", "--grammar", os.path.join(tmp, "none.gbnf")])
    check(rc == 1 and "cannot read" in err and "none.gbnf" in err, "unreadable file: rc %d, %r" % (rc, err))
    undef = os.path.join(tmp, "undef.gbnf")
    with open(undef, "w") as f:
        f.write('root ::= "{" body "}"\n')
    rc, out, err = run(["-m", model, "-p", "x", "--grammar", undef])
    check(rc == 1 and "rule 'body' is used but not defined" in err, "undefined rule: %r" % err)
    rc, out, err = run(["--remote", "http://127.0.0.1:9", "-m", "x", "-p", "x", "--grammar", bad])
    check(rc == 2 and "--grammar" in err, "--grammar with --remote: rc %d, %r" % (rc, err))


def random_models(tmp):
    g = os.path.join(tmp, "obj.gbnf")
    with open(g, "w") as f:
        f.write(OBJ_GBNF)
    n = 0
    for name in ["llama3-f16", "qwen2-f16", "gemma3-f16", "phi3-f16"]:
        model = os.path.join(RANDOM, name + ".gguf")
        if not os.path.exists(model):
            print("no %s: skipped" % model)
            continue
        for seed in range(1, 13):
            rc, out, err = run(["-m", model, "-p", "x", "--temp", "1", "--seed", str(seed), "-n", "400",
                                "--grammar", g, "--json=final"])
            d = final(out)
            ok = rc == 0 and d is not None and d["stop"] == "eog"
            text = d["text"] if d else ""
            try:
                obj = json.loads(text)
                ok = ok and isinstance(obj.get("name"), str) and isinstance(obj.get("tags"), list)
            except ValueError:
                ok = False
            ok = ok and OBJ_RE.match(text) is not None
            check(ok, "%s seed %d: rc %d, %r, %r" % (name, seed, rc, text, err[-300:]))
            n += 1
    print("random models: %d replies" % n)
    # cut short: exit 4
    model = os.path.join(RANDOM, "llama3-f16.gguf")
    if os.path.exists(model):
        rc, out, err = run(["-m", model, "-p", "x", "--temp", "1", "--seed", "1", "-n", "3", "--grammar", g])
        check(rc == 4 and "before the grammar was complete" in err, "-n 3: rc %d, %r" % (rc, err))


def real_models(tmp):
    g = os.path.join(LLAMACPP, "grammars", "json.gbnf") if LLAMACPP else ""
    if not g or not os.path.exists(g):
        g = os.path.join(tmp, "json.gbnf")
        with open(g, "w") as f:
            f.write(JSON_GBNF)
    found = 0
    for name in ["SmolLM2-135M-Instruct.Q4_1.gguf", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"]:
        model = os.path.join(MODELS, name)
        if not MODELS or not os.path.exists(model):
            print("no %s: skipped" % name)
            continue
        found += 1
        for temp, seed in [("0", "1"), ("1", "2")]:
            rc, out, err = run(["-m", model, "-t", "2", "--temp", temp, "--seed", seed, "-n", "200",
                                "-p", "Describe a cat as a JSON object with name, age and colors.",
                                "--grammar", g, "--json=final"])
            d = final(out)
            text = d["text"] if d else ""
            try:
                json.loads(text)
                parsed = True
            except ValueError:
                parsed = False
            # a reply cut by -n exits 4; a finished one must parse
            check((rc == 0 and parsed and d["stop"] == "eog") or (rc == 4 and d and d["stop"] == "length"),
                  "%s temp %s: rc %d, stop %s, %r" % (name, temp, rc, d and d["stop"], text[:300]))
    return found


SCHEMAS = [
    {"type": "object",
     "properties": {"name": {"type": "string", "maxLength": 10}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
                    "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
                    "kind": {"const": "cat"}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "array", "items": {"type": "integer", "minimum": -50, "exclusiveMaximum": 50}, "minItems": 1, "maxItems": 4},
    {"type": "object",
     "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{2,3}(x|yz)?$"},
                    "when": {"type": "string", "format": "date"},
                    "id": {"type": "string", "format": "uuid"},
                    "ok": {"type": ["boolean", "null"]}},
     "required": ["code", "when", "ok"]},
    {"anyOf": [{"type": "integer", "minimum": 100, "maximum": 100000}, {"type": "string", "minLength": 1, "maxLength": 3},
               {"type": "null"}]},
    {"$defs": {"t": {"type": "object", "properties": {"v": {"type": "integer", "maximum": 9},
                                                       "kid": {"anyOf": [{"$ref": "#/$defs/t"}, {"type": "null"}]}},
                     "required": ["v", "kid"]}},
     "$ref": "#/$defs/t"},
    {"type": "object", "properties": {"a": {"type": "number", "minimum": 0}, "b": {"type": "boolean"}},
     "additionalProperties": False},
]


def validator():
    try:
        import jsonschema
        return lambda doc, schema: jsonschema.validate(doc, schema) is None
    except ImportError:
        print("no jsonschema package: replies are only parsed")
        return lambda doc, schema: True


def schemas(tmp):
    valid = validator()
    paths = []
    for i, sc in enumerate(SCHEMAS):
        p = os.path.join(tmp, "schema%d.json" % i)
        with open(p, "w") as f:
            json.dump(sc, f)
        paths.append(p)
    # refused before the model loads
    bad = os.path.join(tmp, "bad-schema.json")
    with open(bad, "w") as f:
        json.dump({"type": "object", "properties": {"xs": {"type": "array", "uniqueItems": True}}}, f)
    rc, out, err = run(["-m", "/nonexistent/model.gguf", "-p", "x", "--json-schema", bad])
    check(rc == 1 and "uniqueItems" in err and "/properties/xs" in err and "bad-schema.json" in err,
          "unsupported keyword: rc %d, %r" % (rc, err))
    rc, out, err = run(["-m", "x", "-p", "x", "--json-schema", bad, "--grammar", bad])
    check(rc == 2, "--grammar with --json-schema: rc %d" % rc)

    def one(model, schema_i, extra, what):
        rc, out, err = run(["-m", model, "-p", "Reply with JSON.", "--json-schema", paths[schema_i], "--json=final"]
                           + extra)
        d = final(out)
        if rc == 4 and d and d["stop"] in ("length", "context"):
            return False
        try:
            ok = rc == 0 and d["stop"] == "eog" and valid(json.loads(d["text"]), SCHEMAS[schema_i])
        except Exception as e:  # jsonschema.ValidationError, ValueError, TypeError
            ok = False
            err += " / " + str(e)[:300]
        check(ok, "%s schema %d: rc %d, %r, %r" % (what, schema_i, rc, d and d["text"][:300], err[-300:]))
        return True

    ended = total = 0
    for name in ["llama3-f16", "qwen2-f16", "gemma3-f16"]:
        model = os.path.join(RANDOM, name + ".gguf")
        if not os.path.exists(model):
            continue
        for i in range(len(SCHEMAS)):
            for seed in range(1, 4):
                total += 1
                ended += one(model, i, ["--temp", "1", "--seed", str(seed), "-n", "400"], "%s seed %d" % (name, seed))
    print("schemas on random models: %d of %d replies ended (all valid)" % (ended, total))
    check(total == 0 or ended >= total * 3 // 4, "too few replies ended: %d of %d" % (ended, total))
    for name in ["qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"]:
        model = os.path.join(MODELS, name)
        if not MODELS or not os.path.exists(model):
            continue
        for i in (0, 2, 4):
            one(model, i, ["-t", "2", "--temp", "1", "--seed", "7", "-n", "200"], name)


def main():
    model = os.path.join(RANDOM, "llama3-f16.gguf")
    if not os.path.exists(BIN) or not os.path.exists(model):
        print("SKIP: no ttychat binary or no random-weight model")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        refusals(tmp, model)
        random_models(tmp)
        real_models(tmp)
        schemas(tmp)
    return report()


if __name__ == "__main__":
    sys.exit(main())
