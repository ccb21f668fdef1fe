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


def main():
    model = os.path.join(RANDOM, "llama3-f16.gguf")
    if not os.path.exists(BIN) or not os.path.exists(model):
        print("SKIP: no ttychat binary or no random-weight model")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        refusals(tmp, model)
        random_models(tmp)
        real_models(tmp)
    return report()


if __name__ == "__main__":
    sys.exit(main())
