#!/usr/bin/python3
"""Conformance of `ttychat template` with Jinja as Hugging Face runs it.

Every template in $TTYCHAT_TESTDATA/templates/*.jinja and the chat template
embedded in each real model is rendered twice for a set of conversations
(with and without a system message, several turns, unicode, tool calls,
conversations the template must refuse), with and without
add_generation_prompt: once by python3-jinja2 configured exactly as
transformers configures it (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, raise_exception, strftime_now, a json.dumps
tojson keeping non-ASCII), and once by `ttychat template --strict`.  The
outputs must be equal byte for byte; when Jinja fails, ttychat must fail too
(and repeat the raise_exception message).  The built-in fallback formats are
checked against the templates of their family where the two must agree, and
the fallback path of a model without a template (Gemma 3) is exercised.

Uses only the standard library and Debian's python3-jinja2.  Exits 77
(skip) when neither test templates nor models are present, or when the
binary is missing.
"""
import datetime
import glob
import json
import os
import struct
import subprocess
import sys

try:
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:  # pragma: no cover
    print("SKIP: python3-jinja2 is not installed")
    sys.exit(77)

EPOCH = 1721995200  # 26 Jul 2024 12:00 UTC, fixed for strftime_now
BIN = os.environ.get("TTYCHAT_BIN", "")
TESTDATA = os.environ.get("TTYCHAT_TESTDATA", "")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", "")

passed = 0
failed = 0


def fail(msg):
    global failed
    failed += 1
    if failed <= 40:
        print("FAIL " + msg)


def ok():
    global passed
    passed += 1


# ---------------------------------------------------------------- reference


class GenerationTracker(Extension):
    """transformers' AssistantTracker: {% generation %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.fromtimestamp(EPOCH).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


class Raised(Exception):
    pass


def render_ref(env, source, messages, agp, bos, eos, extra):
    """Returns the rendered text, or raises Raised(msg) / another exception."""
    try:
        tmpl = env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise RuntimeError("syntax: %s" % e)
    kw = dict(messages=messages, add_generation_prompt=agp)
    if bos is not None:
        kw["bos_token"] = bos
    if eos is not None:
        kw["eos_token"] = eos
    kw.update(extra)
    try:
        return tmpl.render(**kw)
    except jinja2.exceptions.TemplateError as e:
        if type(e) is jinja2.exceptions.TemplateError:
            raise Raised(str(e))
        raise


# ---------------------------------------------------------------- ttychat


def run_ttychat(args, messages):
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH), TZ="UTC")
    p = subprocess.run([BIN, "template"] + args, input=json.dumps(messages).encode(),
                       capture_output=True, env=env, timeout=60)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


# ---------------------------------------------------------------- GGUF


def gguf_strings(path, keys):
    """Minimal GGUF metadata reader: returns {key: value} for the wanted
    string/uint keys plus the token list when asked."""
    want = set(keys)
    out = {}
    with open(path, "rb") as f:
        data = f.read(64 << 20)
    if data[:4] != b"GGUF":
        raise ValueError("not GGUF")
    ver, = struct.unpack_from("<I", data, 4)
    pos = 8
    if ver == 1:
        raise ValueError("GGUF v1 not supported")
    n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16
    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
              10: "<Q", 11: "<q", 12: "<d"}

    def rstr(pos):
        n, = struct.unpack_from("<Q", data, pos)
        return data[pos + 8:pos + 8 + n].decode("utf-8", "replace"), pos + 8 + n

    def rval(t, pos, keep):
        if t == 8:
            return rstr(pos)
        if t in scalar:
            v, = struct.unpack_from(scalar[t], data, pos)
            return v, pos + struct.calcsize(scalar[t])
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            items = []
            if et in scalar and not keep:
                return None, pos + n * struct.calcsize(scalar[et])
            for _ in range(n):
                v, pos = rval(et, pos, keep)
                if keep:
                    items.append(v)
            return items, pos
        raise ValueError("bad type %d" % t)

    for _ in range(n_kv):
        key, pos = rstr(pos)
        t, = struct.unpack_from("<I", data, pos)
        pos += 4
        v, pos = rval(t, pos, key in want)
        if key in want:
            out[key] = v
    return out


# ---------------------------------------------------------------- data

U = "user"
A = "assistant"
S = "system"


def m(role, content):
    return {"role": role, "content": content}


UNICODE = ("你好，世界！こんにちは 안녕하세요 👋🏽👨‍👩‍👧 Ünïcödé ß ΣΑΣ "
           "quotes ' \" ` backslash \\ C:\\path\\new line\nsecond\ttab")
TRICKY = "{{ not_a_var }} {% if %} <|im_end|> </s> [INST] \u2028 end"

PLAIN = {
    "single": [m(U, "Hello!")],
    "system": [m(S, "You are a helpful assistant."), m(U, "Hi there")],
    "multi": [m(S, "Be brief."), m(U, "What is 2+2?"), m(A, "4"), m(U, "And 3+3?")],
    "five_turns": [m(U, "one"), m(A, "two"), m(U, "three"), m(A, "four"), m(U, "five")],
    "ends_with_assistant": [m(U, "Ping"), m(A, "Pong")],
    "unicode": [m(S, "Système: réponds en français 🇫🇷"), m(U, UNICODE), m(A, UNICODE[::-1]),
                m(U, TRICKY)],
    "whitespace": [m(S, "  \n padded system \n\t"), m(U, "\n\n  spaced question?  \n"),
                   m(A, "\t answer with spaces \n"), m(U, " last ")],
    "empty_content": [m(S, ""), m(U, ""), m(A, ""), m(U, "x")],
    "think": [m(U, "Solve it"), m(A, "<think>\nlet me think\n</think>\n\nThe answer is 42."),
              m(U, "Sure?")],
    "long": [m(U, ("lorem ipsum dolor sit amet " * 400).strip()), m(A, "ok"), m(U, "again")],
    "nul_and_controls": [m(U, "a\u0000b\u0001c\u001fd\u007fe")],
    "system_only": [m(S, "Only a system prompt")],
    "not_alternating": [m(U, "first"), m(U, "second")],
    "starts_with_assistant": [m(A, "I speak first"), m(U, "ok")],
    "empty": [],
}

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Wetter für eine Stadt — 天气",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
    },
}]

RICH = {
    "qwen_tools": [m(U, "Weather in Paris?"),
                   {"role": A, "content": "",
                    "tool_calls": [{"type": "function",
                                    "function": {"name": "get_weather",
                                                 "arguments": {"city": "Paris", "unit": "c"}}}]},
                   m("tool", "{\"temp\": 21, \"sky\": \"clair\"}"),
                   m("tool", "second result"),
                   m(A, "It is 21°C.")],
    "mistral_tools": [m(U, "Weather?"),
                      {"role": A, "content": None,
                       "tool_calls": [{"id": "abcDEF123", "function":
                                       {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
                      {"role": "tool", "content": "cold", "tool_call_id": "abcDEF123"},
                      m(A, "Cold."), m(U, "Thanks")],
    "llama_tools": [m(S, "sys"), m(U, "Weather in Rome?"),
                    {"role": A, "content": "",
                     "tool_calls": [{"function": {"name": "get_weather",
                                                  "arguments": {"city": "Rome"}}}]},
                    {"role": "tool", "content": {"temp": 30}},
                    m(U, "hot?")],
    "deepseek_tools": [m(U, "Weather?"),
                       {"role": A, "content": None,
                        "tool_calls": [{"type": "function",
                                        "function": {"name": "get_weather",
                                                     "arguments": "{\"city\": \"Lima\"}"}},
                                       {"type": "function",
                                        "function": {"name": "get_weather",
                                                     "arguments": "{\"city\": \"Quito\"}"}}]},
                       m("tool", "warm"), m("tool", "mild"), m(A, "Warm and mild.")],
    "content_parts": [{"role": U, "content": [{"type": "text", "text": " part one "},
                                               {"type": "image"}]}],
}

VARIANTS = [
    ("plain", None),
    ("hf", {"tools": None, "documents": None}),
    ("tools", {"tools": TOOLS}),
]


# ---------------------------------------------------------------- checks


def compare(label, source, args, messages, agp, bos, eos, extra, env):
    try:
        ref = render_ref(env, source, messages, agp, bos, eos, extra or {})
        ref_err = None
    except Raised as e:
        ref, ref_err = None, ("raised", str(e))
    except Exception as e:  # TypeError, UndefinedError, ...
        ref, ref_err = None, ("error", "%s: %s" % (type(e).__name__, e))
    cli = list(args) + ["--strict"]
    if not agp:
        cli.append("--no-generation-prompt")
    if extra is not None:
        cli += ["--vars", json.dumps(extra)]
    rc, out, err = run_ttychat(cli, messages)
    if ref_err is None:
        if rc != 0:
            fail("%s: jinja rendered, ttychat failed (rc %d): %s" % (label, rc, err.strip()))
        elif out != ref.encode("utf-8", "surrogatepass"):
            fail("%s: output differs\n  jinja:   %r\n  ttychat: %r" %
                 (label, ref[:600], out.decode("utf-8", "replace")[:600]))
        else:
            ok()
    else:
        if rc == 0:
            fail("%s: jinja failed (%s), ttychat rendered %r" %
                 (label, ref_err[1], out.decode("utf-8", "replace")[:200]))
        elif ref_err[0] == "raised" and ref_err[1] not in err:
            fail("%s: raise_exception message %r missing from %r" % (label, ref_err[1], err))
        else:
            ok()


def conformance(name, source, args, bos, eos, env):
    for conv_name, conv in list(PLAIN.items()) + list(RICH.items()):
        for var_name, extra in VARIANTS:
            if var_name == "tools" and "tools" not in source:
                continue
            for agp in (True, False):
                label = "%s/%s/%s/agp=%d" % (name, conv_name, var_name, agp)
                compare(label, source, args, conv, agp, bos, eos, extra, env)


# Built-in format of each test template's family, and the conversations on
# which the built-in must equal the template.
def builtin_applies(family, conv):
    roles = [x["role"] for x in conv]
    if not conv or any(r not in (U, A, S) for r in roles):
        return False
    has_sys = roles[0] == S
    rest = roles[1:] if has_sys else roles
    alternating = all(r == (U if i % 2 == 0 else A) for i, r in enumerate(rest))
    if family == "phi3" or family == "deepseek":
        return True
    if family == "gemma":
        return not has_sys and alternating and len(rest) > 0
    if family == "mistral-nemo":
        return alternating and len(rest) > 0
    if family == "chatml":
        return has_sys
    return False


EXPECTED_FAMILY = {
    "Qwen-Qwen2.5-7B-Instruct": "chatml",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": "deepseek",
    "google-gemma-2-2b-it": "gemma",
    "meta-llama-Llama-3.2-3B-Instruct": "llama3",
    "microsoft-Phi-3.5-mini-instruct": "phi3",
    "mistralai-Mistral-Nemo-Instruct-2407": "mistral-nemo",
    "SmolLM2-135M-Instruct": "chatml",
}


def builtin_checks(name, source, args, bos, eos, env):
    rc, out, err = run_ttychat(args + ["--detect"], [])
    fam = out.decode().strip()
    want = EXPECTED_FAMILY.get(name)
    if want is not None:
        if fam != want:
            fail("%s: detected family %r, expected %r" % (name, fam, want))
        else:
            ok()
    for conv_name, conv in PLAIN.items():
        if not builtin_applies(fam, conv):
            continue
        for agp in (True, False):
            label = "%s/builtin-%s/%s/agp=%d" % (name, fam, conv_name, agp)
            try:
                ref = render_ref(env, source, conv, agp, bos, eos, {})
            except Exception as e:
                fail("%s: reference failed: %s" % (label, e))
                continue
            cli = ["--builtin", fam, "--bos", bos or "", "--eos", eos or ""]
            if not agp:
                cli.append("--no-generation-prompt")
            rc, out, err = run_ttychat(cli, conv)
            if rc != 0 or out != ref.encode("utf-8", "surrogatepass"):
                fail("%s: built-in differs (rc %d)\n  jinja:   %r\n  builtin: %r" %
                     (label, rc, ref[:400], out.decode("utf-8", "replace")[:400]))
            else:
                ok()


def main():
    if not BIN or not os.access(BIN, os.X_OK):
        print("SKIP: ttychat binary not found (TTYCHAT_BIN=%r)" % BIN)
        return 77
    env = make_env()
    ran = False

    templates = sorted(glob.glob(os.path.join(TESTDATA, "templates", "*.jinja"))) if TESTDATA else []
    if not templates:
        print("note: no test templates in %r" % TESTDATA)
    for path in templates:
        ran = True
        name = os.path.basename(path)[:-len(".jinja")]
        with open(path, encoding="utf-8") as f:
            source = f.read()
        before = passed, failed
        conformance(name, source, ["--template", path, "--bos", "<s>", "--eos", "</s>"],
                    "<s>", "</s>", env)
        builtin_checks(name, source, ["--template", path], "<s>", "</s>", env)
        print("%-48s %4d passed, %d failed" % (name, passed - before[0], failed - before[1]))

    models_dir = MODELS or os.path.expanduser("~/.local/share/ttychat/models")
    models = sorted(glob.glob(os.path.join(models_dir, "*.gguf")))
    if not models:
        print("note: no models in %r" % models_dir)
    gemma2 = os.path.join(TESTDATA, "templates", "google-gemma-2-2b-it.jinja") if TESTDATA else ""
    for path in models:
        try:
            kv = gguf_strings(path, ["tokenizer.chat_template", "tokenizer.ggml.tokens",
                                     "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                     "general.architecture"])
        except (OSError, ValueError, struct.error) as e:
            fail("%s: cannot read GGUF: %s" % (path, e))
            continue
        ran = True
        name = os.path.basename(path).split(".")[0]
        toks = kv.get("tokenizer.ggml.tokens") or []
        bos_id = kv.get("tokenizer.ggml.bos_token_id")
        eos_id = kv.get("tokenizer.ggml.eos_token_id")
        bos = toks[bos_id] if bos_id is not None and bos_id < len(toks) else None
        eos = toks[eos_id] if eos_id is not None and eos_id < len(toks) else None
        source = kv.get("tokenizer.chat_template")
        before = passed, failed
        if source:
            conformance(name, source, ["-m", path], bos, eos, env)
            builtin_checks(name, source, ["-m", path], bos, eos, env)
        else:
            # No template: strict mode refuses, chat mode falls back to
            # the family's built-in format with a warning.
            rc, out, err = run_ttychat(["-m", path, "--strict"], PLAIN["single"])
            if rc == 0:
                fail("%s: --strict rendered without a template" % name)
            else:
                ok()
            arch = kv.get("general.architecture", "")
            rc, out, err = run_ttychat(["-m", path, "--detect"], [])
            fam = out.decode().strip()
            if arch.startswith("gemma") and fam != "gemma":
                fail("%s: arch %s detected as %r" % (name, arch, fam))
            else:
                ok()
            if os.path.exists(gemma2) and fam == "gemma":
                with open(gemma2, encoding="utf-8") as f:
                    g2 = f.read()
                for conv_name, conv in PLAIN.items():
                    if not builtin_applies("gemma", conv):
                        continue
                    for agp in (True, False):
                        ref = render_ref(env, g2, conv, agp, bos, eos, {})
                        cli = ["-m", path] + ([] if agp else ["--no-generation-prompt"])
                        rc, out, err = run_ttychat(cli, conv)
                        label = "%s/fallback/%s/agp=%d" % (name, conv_name, agp)
                        if rc != 0 or out != ref.encode() or "warning" not in err:
                            fail("%s: rc %d, warning %r\n  want %r\n  got  %r" %
                                 (label, rc, err.strip(), ref[:300], out[:300]))
                        else:
                            ok()
                # with a system message: folded into the first user turn
                conv = PLAIN["system"]
                rc, out, err = run_ttychat(["-m", path], conv)
                want = ("%s<start_of_turn>user\n%s\n\n%s<end_of_turn>\n<start_of_turn>model\n" %
                        (bos or "", conv[0]["content"], conv[1]["content"]))
                if rc != 0 or out != want.encode():
                    fail("%s/fallback/system: got %r want %r" % (name, out, want))
                else:
                    ok()
        print("%-48s %4d passed, %d failed" % (name, passed - before[0], failed - before[1]))

    if not ran:
        print("SKIP: no test templates and no models found")
        return 77
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
