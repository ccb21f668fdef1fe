#!/usr/bin/python3
"""test_tools_cli.py - one-shot `--tools FILE` and `--tool-choice`.

A random-weight Qwen2 given the real Qwen 2.5 template (a models.d entry;
skipped without the llama.cpp tree's templates), at temperature 1 over
several seeds: with --tool-choice required or a tool's name, the exit
status is 0 and stdout has one OpenAI tool call per line, each naming a
tool (the named one) with arguments valid under its schema, or the reply
was cut by -n and the exit status is 4; with --json=final the summary
carries the same calls as "tool_calls".  Refusals: a model whose template
takes no tools (exit 1), a file that is not a tools list or a schema that
cannot be honoured (exit 1), --tool-choice without --tools and --tools
with --grammar (exit 2).
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
RANDOM = os.path.join(SRC, "tests", "fixtures", "engine", "random")
LLAMACPP = os.environ.get("TTYCHAT_LLAMACPP_DIR", "/work/oracle/llama_cpp_python-0.3.36/vendor/llama.cpp")
TEMPLATE = os.path.join(LLAMACPP, "models", "templates", "Qwen-Qwen2.5-7B-Instruct.jinja")

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string", "maxLength": 12},
                                      "unit": {"type": "string", "enum": ["c", "f"]}},
                       "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "add",
        "parameters": {"type": "object",
                       "properties": {"a": {"type": "integer", "minimum": -99, "maximum": 99},
                                      "b": {"type": "integer", "minimum": 0, "maximum": 9}},
                       "required": ["a", "b"], "additionalProperties": False}}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}

try:
    import jsonschema

    def valid(doc, schema):
        return jsonschema.validate(doc, schema) is None
except ImportError:
    print("no jsonschema package: arguments are only parsed")

    def valid(doc, schema):
        return True


def call_ok(c, only=None):
    try:
        f = c["function"]
        args = json.loads(f["arguments"])
        return (c["type"] == "function" and c["id"] and f["name"] in SCHEMAS and (not only or f["name"] == only)
                and isinstance(args, dict) and valid(args, SCHEMAS[f["name"]]))
    except Exception:
        return False


def main():
    if not os.path.exists(BIN) or not os.path.isdir(RANDOM):
        print("SKIP: no ttychat binary or no random-weight models")
        return 77
    tmp = tempfile.mkdtemp(prefix="ttychat-tools-cli-")
    env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(tmp, "config"), XDG_DATA_HOME=os.path.join(tmp, "data"))
    env.pop("CI", None)
    tools = os.path.join(tmp, "tools.json")
    with open(tools, "w") as f:
        json.dump(TOOLS, f)

    def run(args):
        p = subprocess.run([BIN, "-t", "1"] + args, capture_output=True, env=env, timeout=300,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    try:
        plain = os.path.join(RANDOM, "llama3-f16.gguf")
        rc, out, err = run(["-m", plain, "-p", "x", "--tools", tools])
        check(rc == 1 and "cannot render tools" in err, "no tool template: %d %r" % (rc, err))
        rc, out, err = run(["-m", plain, "-p", "x", "--tool-choice", "required"])
        check(rc == 2 and "--tool-choice needs --tools" in err, "--tool-choice alone: %d %r" % (rc, err))
        rc, out, err = run(["-m", plain, "-p", "x", "--tools", tools, "--grammar", tools])
        check(rc == 2 and "cannot be combined" in err, "--tools with --grammar: %d %r" % (rc, err))

        if not os.path.exists(TEMPLATE):
            print("note: %s absent: the calls are not tried" % TEMPLATE)
            return report()
        mdir = os.path.join(tmp, "config", "ttychat", "models.d")
        os.makedirs(mdir)
        with open(os.path.join(mdir, "rq.json"), "w") as f:
            json.dump({"name": "rq", "file": os.path.abspath(os.path.join(RANDOM, "qwen2-f16.gguf")),
                       "template_file": os.path.abspath(TEMPLATE)}, f)
        bad = os.path.join(tmp, "bad.json")
        for content, want in [({"tools": []}, "not a JSON list of tools"),
                              ([{"type": "function", "function": {"name": "u", "parameters": {
                                  "type": "array", "uniqueItems": True}}}], "tool 'u'")]:
            with open(bad, "w") as f:
                json.dump(content, f)
            rc, out, err = run(["-m", "rq", "-p", "x", "--tools", bad])
            check(rc == 1 and want in err, "bad tools %r: %d %r" % (content, rc, err))

        done = 0
        # several calls may follow each other (one-shot allows parallel
        # calls): random weights often go on until -n, exit 4
        for seed in range(1, 17):
            only = "add" if seed % 2 else None
            args = ["-m", "rq", "-p", "Weather in Oslo?", "--tools", tools, "--tool-choice", only or "required",
                    "--temp", "1", "--seed", str(seed), "-n", "200"]
            rc, out, err = run(args)
            if rc == 4:
                check("stopped" in err, "seed %d: exit 4 says why: %r" % (seed, err))
                continue
            lines = [x for x in out.splitlines() if x.strip()]
            calls = []
            for x in lines:
                try:
                    calls.append(json.loads(x))
                except ValueError:
                    pass
            check(rc == 0 and calls and len(calls) == len(lines) and all(call_ok(c, only) for c in calls),
                  "seed %d: %d %r %r" % (seed, rc, out, err))
            rc, out, err = run(args + ["--json=final"])
            try:
                summary = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                summary = {}
            check(rc == 0 and summary.get("tool_calls") and
                  [c["function"] for c in summary["tool_calls"]] == [c["function"] for c in calls],
                  "seed %d --json=final: %d %r" % (seed, rc, out[-400:]))
            done += 1
        check(done >= 4, "too few replies finished: %d of 16" % done)
        print("%d of 16 replies finished, every call valid" % done)
    finally:
        if not os.environ.get("TTYCHAT_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
