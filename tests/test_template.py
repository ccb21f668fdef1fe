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
(skip) when the binary or jinja2 is missing; without test templates or
models only the built-in feature corpus runs (and says so).
"""
import datetime
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile

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
# The llama.cpp tree vendored by llama-cpp-python 0.3.36 (the project's
# oracle): its models/templates hold the chat templates of the thinking
# families, rendered here with the variables that switch thinking.
LLAMACPP = os.environ.get("TTYCHAT_LLAMACPP_DIR",
                          "/work/oracle/llama_cpp_python-0.3.36/vendor/llama.cpp")

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
    # llama.cpp's template engine adds from_json (json.loads); the
    # DeepSeek-V3.2 and V4 templates parse tool-call arguments with it
    env.filters["from_json"] = json.loads
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


# Feature corpus: small templates covering the Jinja subset, rendered with
# FEATURE_VARS (plus messages) by both engines.
FEATURE_VARS = {
    "x": 5, "f": 2.5, "neg": -7, "big": 12345678901, "s": "Hello World", "e": "",
    "l": [3, 1, 2], "d": {"b": 1, "a": [1, 2], "c": {"k": "v"}}, "u": "héllo ΣΑΣ ǆ ß ﬁ",
    "n": None, "t": True, "fl": False, "ws": " \t\n x y \n ",
    "people": [{"name": "bob", "age": 30, "tags": ["a"]}, {"name": "Alice", "age": 25},
               {"name": "carol", "age": 35, "tags": []}],
    "strs": ["b", "A", "c", "a"], "nums": [1.5, 2, -3, 0.1],
    "schema": {"properties": {"city": {"type": "string", "description": " The city "},
                              "days": {"type": "array", "items": {"type": "integer"}},
                              "opts": {"type": "object"}}},
    "tools": [{"type": "function", "function": {
        "name": "search", "parameters": {"type": "object", "properties": {
            "q": {"type": "string"}, "n": {"type": "integer"}}}}}],
}

FEATURES = [
    # literals, numbers, str() of values
    "{{ 1 }} {{ -1 }} {{ 1.0 }} {{ 1.5e3 }} {{ 1e16 }} {{ 1e-5 }} {{ 0.1 + 0.2 }} {{ 1_000 }}",
    "{{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 3.14159 }} {{ 1/3 }} {{ 2/2 }} {{ -0.0 }}",
    "{{ none }} {{ None }} {{ true }} {{ False }} {{ n }} {{ t }}",
    "{{ [1, 'a', none, true, 1.5, [2], {'k': 'v'}] }}",
    "{{ {'a': 1, 'b': 'x', 'c': none} }} {{ d }} {{ (1, 2) }} {{ (1,) }} {{ () }}",
    "{{ 'it\\'s' }} {{ \"say \\\"hi\\\"\" }} {{ ['it\\'s', 'q\"'] }} {{ ['a\\nb\\t\\\\'] }}",
    "{{ '\\x41\\u00e9\\U0001F600\\101\\d\\n' }}|{{ 'a' 'b' \"c\" }}",
    "{{ [u, 'é\\u200b\\x7f\\x00'] }}",
    # operators and precedence
    "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 7 // 2 }} {{ -7 // 2 }}",
    "{{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 7.5 % 2 }} {{ -7.5 // 2 }} {{ 2 ** -1 }} {{ 10 / 4 }}",
    "{{ 'a' ~ 1 ~ none ~ true ~ 1.5 ~ missing }} {{ 'a' + 'b' }} {{ [1] + [2] }} {{ 'ab' * 3 }}",
    "{{ 1 + 2 ~ 3 }} {{ 1 ~ 2 + 3 }} {{ 'x' ~ 2 * 3 }}",
    "{{ not true }} {{ not 0 }} {{ not missing }} {{ true and 'yes' }} {{ 0 or 'no' }} {{ '' or [] }}",
    "{{ 1 and 2 and 3 }} {{ none or 0 or 'last' }} {{ not 1 == 2 }} {{ not (1 == 2) }}",
    "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' != 'b' }} {{ [1,2] == [1,2] }}",
    "{{ 'a' < 'b' }} {{ 'B' < 'a' }} {{ [1, 2] < [1, 3] }} {{ 2 >= 2.0 }} {{ (1,) == [1] }}",
    "{{ 'ell' in s }} {{ 'z' not in s }} {{ 2 in l }} {{ 'a' in d }} {{ 'zz' in d }} {{ 1 in missing }}",
    "{{ x if x > 3 else 'small' }} {{ 'yes' if t }}|{{ 'a' if fl else 'b' if t else 'c' }}",
    "{{ -x }} {{ +x }} {{ -f }} {{ - -x }} {{ -x|abs }} {{ (-x)|abs }}",
    "{{ x|string + 'a' }} {{ x * 2 + 1 }} {{ l[0] + l[-1] }} {{ big * 3 }}",
    # attribute / item access
    "{{ d.a }} {{ d['a'][1] }} {{ d.c.k }} {{ d['c']['k'] }} {{ d.zz }}|{{ d['zz'] }}|{{ l[10] }}|{{ l.0 }}",
    "{{ people[0].name }} {{ people[1]['age'] }} {{ people[-1].tags }} {{ people[0].missing }}|",
    "{{ s[0] }} {{ s[-1] }} {{ s[1:4] }} {{ s[::-1] }} {{ s[::2] }} {{ s[-3:] }} {{ s[:-3] }} {{ s[10:2:-2] }}",
    "{{ l[::-1] }} {{ l[1:] }} {{ l[:1] }} {{ l[5:] }} {{ l[-10:10] }} {{ l[::-2] }} {{ u[::-1] }} {{ u[1:4] }}",
    "{{ d['items'] is defined }} {{ d.items is defined }} {{ s.upper is defined }} {{ n.x }}|{{ x.y }}|",
    # tests
    "{{ x is defined }} {{ missing is defined }} {{ missing is undefined }} {{ n is none }} {{ x is none }}",
    "{{ s is string }} {{ x is string }} {{ x is number }} {{ f is number }} {{ t is number }} {{ x is integer }} {{ f is float }}",
    "{{ d is mapping }} {{ l is mapping }} {{ l is iterable }} {{ s is iterable }} {{ x is iterable }} {{ missing is iterable }}",
    "{{ l is sequence }} {{ d is sequence }} {{ x is sequence }} {{ t is boolean }} {{ t is true }} {{ fl is false }} {{ 1 is true }}",
    "{{ x is odd }} {{ x is even }} {{ 10 is divisibleby 5 }} {{ 10 is divisibleby(3) }} {{ x is eq 5 }} {{ x is equalto 5 }}",
    "{{ x is gt 3 }} {{ x is lt 3 }} {{ x is ge 5 }} {{ x is le 4 }} {{ x is ne 5 }} {{ 2 is in l }} {{ 'abc' is lower }} {{ 'ABC' is upper }}",
    "{{ x is not none }} {{ not x is none }} {{ missing is not defined }} {{ none is sameas none }} {{ range is callable }}",
    "{{ 'upper' is filter }} {{ 'nope' is filter }} {{ 'odd' is test }} {{ x is == 5 }} {{ x is != 5 }}",
    # filters
    "{{ ws|trim }}|{{ '--x--'|trim('-') }}|{{ s|upper }} {{ s|lower }} {{ u|upper }} {{ u|lower }} {{ 'ΑΣ ΣΑΣ.'|lower }}",
    "{{ 'hello wORLD-foo (bar [baz <q {x'|title }}|{{ 'hELLO wORLD'|capitalize }} {{ u|title }} {{ u|capitalize }}",
    "{{ s|length }} {{ u|length }} {{ l|length }} {{ d|length }} {{ missing|length }} {{ l|count }}",
    "{{ missing|default('dflt') }} {{ n|default('dflt') }} {{ ''|default('dflt', true) }} {{ 0|d(7, boolean=true) }} {{ x|default }}",
    "{{ l|join }} {{ l|join(', ') }} {{ people|join(' | ', attribute='name') }} {{ [1, none, 'a']|join('-') }}",
    "{{ s|replace('o', '0') }} {{ s|replace('o', '0', 1) }} {{ 'aaa'|replace('', '-') }} {{ 'ab'|replace('', '.', 2) }}",
    "{{ l|first }} {{ l|last }} {{ s|first }} {{ s|last }} {{ []|first }}|{{ d|first }} {{ d|last }}",
    "{{ s|list }} {{ d|list }} {{ l|reverse|list }} {{ s|reverse }} {{ missing|list }}",
    "{{ x|string }} {{ f|string }} {{ n|string }} {{ l|string }} {{ missing|string }}|",
    "{{ '42'|int }} {{ ' -7 '|int }} {{ '3.9'|int }} {{ 'x'|int }} {{ 'x'|int(9) }} {{ 3.9|int }} {{ -3.9|int }} {{ n|int }} {{ t|int }} {{ '1_0'|int }}",
    "{{ '2.5'|float }} {{ 'x'|float }} {{ x|float }} {{ ' 1e3 '|float }} {{ 'inf'|float }} {{ 'x'|float(1.5) }}",
    "{{ d|items|list }} {{ missing|items|list }} {% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}",
    "{{ people|selectattr('age', 'gt', 26)|map(attribute='name')|list }} {{ people|rejectattr('tags')|map(attribute='name')|join(',') }}",
    "{{ people|selectattr('tags', 'defined')|list|length }} {{ people|selectattr('name', 'equalto', 'bob')|first }}",
    "{{ l|select('odd')|list }} {{ l|reject('odd')|list }} {{ [0, 1, '', 'a', none]|select|list }} {{ l|map('string')|join }}",
    "{{ strs|map('upper')|list }} {{ people|map(attribute='tags', default='-')|list }} {{ people|map(attribute='tags.0', default='?')|list }}",
    "{{ l|sort }} {{ l|sort(reverse=true) }} {{ strs|sort }} {{ strs|sort(case_sensitive=true) }} {{ people|sort(attribute='age')|map(attribute='name')|list }}",
    "{{ people|sort(attribute='name')|map(attribute='name')|join(',') }} {{ d|dictsort }} {{ {'b': 1, 'A': 2, 'a': 0}|dictsort }} {{ {'x': 2, 'y': 1}|dictsort(by='value') }}",
    "{{ strs|unique|list }} {{ strs|unique(case_sensitive=true)|list }} {{ l|min }} {{ l|max }} {{ strs|min }} {{ strs|max(case_sensitive=true) }} {{ people|max(attribute='age') }}",
    "{{ l|sum }} {{ nums|sum }} {{ people|sum(attribute='age') }} {{ l|sum(start=10) }} {{ -2.5|abs }} {{ neg|abs }}",
    "{{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ 2.5|round(0, 'floor') }} {{ 2.1|round(0, 'ceil') }} {{ x|round }} {{ 1234.5678|round(-2) }}",
    "{{ d|tojson }} {{ l|tojson }} {{ u|tojson }} {{ 'a\"b\\\\c\\n\\t\\u0001'|tojson }} {{ [none, true, 1.5, 1e20]|tojson }}",
    "{{ d|tojson(indent=2) }}|{{ []|tojson(indent=2) }}|{{ {}|tojson(indent=1) }}|{{ people|tojson(indent=1) }}",
    "{{ d|tojson(sort_keys=true) }} {{ d|tojson(separators=(',', ':')) }} {{ u|tojson(ensure_ascii=true) }} {{ '😀'|tojson(true) }}",
    "{{ {1: 'a', true: 'b', none: 'c', 2.5: 'd'}|tojson }} {{ (1, 2)|tojson }} {{ d|tojson(indent='\\t') }}",
    "{{ s|center(21) }}|{{ 'ab'|center(7) }}|{{ 'abc'|center(8) }}|{{ s|wordcount }} {{ 'one, two-three  four'|wordcount }}",
    "{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb\\n\\nc'|indent(2, true) }}|{{ 'a\\nb\\n\\nc'|indent(2, blank=true) }}|{{ 'x'|indent('>> ', first=true) }}",
    "{{ ('word ' * 60)|truncate(20) }}|{{ 'short'|truncate(20) }}|{{ 'abcdefghijklmnopqrstuvwxyz'|truncate(10, true) }}|{{ 'abcdefghijklmnopqrstuvwxyz'|truncate(10, false, '!', 0) }}",
    "{{ '<a href=\"x\">&\\'</a>'|e }} {{ '<b>'|escape }} {{ x|e }} {{ '<i>'|safe }} {{ n|safe }}",
    "{{ '%s and %s'|format('a', 'b') }} {{ '%d%%'|format(50) }} {{ '%5.2f|%-4s|%04d'|format(3.14159, 'ab', 7) }} {{ '%(k)s'|format(k='v') }}",
    "{{ l|batch(2)|list }} {{ l|batch(2, 0)|list }} {{ s|attr('upper') is defined }} {{ d|attr('items') is defined }} {{ d|attr('b') }}|",
    # string methods
    "{{ ws.strip() }}|{{ ws.lstrip() }}|{{ ws.rstrip() }}|{{ 'xxaxx'.strip('x') }}|{{ 'abcba'.lstrip('ab') }}|{{ 'abcba'.rstrip('ab') }}",
    "{{ 'a b  c '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a b c'.split(' ', 1) }} {{ ' a b c '.split(None, 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ' a b c '.rsplit(None, 1) }} {{ ''.split() }} {{ ''.split(',') }}",
    "{{ s.startswith('He') }} {{ s.startswith(('x', 'Hel')) }} {{ s.endswith('ld') }} {{ s.startswith('World', 6) }} {{ s.endswith('Hello', 0, 5) }}",
    "{{ s.upper() }} {{ s.lower() }} {{ 'hello world'.title() }} {{ \"they're bill's\".title() }} {{ 'hELLO'.capitalize() }} {{ 'aBc'.swapcase() }}",
    "{{ s.replace('l', 'L') }} {{ s.replace('l', 'L', 2) }} {{ s.find('o') }} {{ s.rfind('o') }} {{ s.find('z') }} {{ s.index('W') }} {{ s.count('l') }} {{ u.find('Σ') }}",
    "{{ '-'.join(['a', 'b']) }} {{ ', '.join(strs) }} {{ '{} and {}'.format('x', 'y') }} {{ '{1}{0}'.format('a', 'b') }} {{ '{n}!'.format(n=3) }} {{ '{{x}}'.format() }} {{ '{:>5}|{:<4}|{:^5}|{:.2f}'.format('a', 'b', 'c', 3.14159) }}",
    "{{ '123'.isdigit() }} {{ '12a'.isdigit() }} {{ 'abc'.isalpha() }} {{ 'ab1'.isalnum() }} {{ '  '.isspace() }} {{ 'ABC'.isupper() }} {{ 'abc'.islower() }} {{ ''.isdigit() }}",
    "{{ 'a\\nb\\r\\nc'.splitlines() }} {{ '42'.zfill(5) }} {{ '-42'.zfill(5) }} {{ 'ab'.center(6, '*') }} {{ 'ab'.ljust(4, '.') }}|{{ 'ab'.rjust(4) }} {{ 'a=b=c'.partition('=') }} {{ 'a=b=c'.rpartition('=') }}",
    "{{ 'prefix_body'.removeprefix('prefix_') }} {{ 'body.txt'.removesuffix('.txt') }} {{ '%s-%d' % ('a', 3) }} {{ '%s' % 'x' }} {{ '%.1f' % 2.25 }}",
    # dict and list methods
    "{{ d.items()|list }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.get('b') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ l.index(1) }} {{ l.count(3) }}",
    "{% for k, v in d.items() %}{{ loop.index }}:{{ k }}={{ v }} {% endfor %}",
    # loops
    "{% for i in l %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }} {% endfor %}",
    "{% for i in l %}{{ loop.previtem }}-{{ i }}-{{ loop.nextitem }} {{ loop.cycle('odd', 'even') }};{% endfor %}",
    "{% for i in l if i > 1 %}{{ i }}{{ loop.length }}{% else %}none{% endfor %}|{% for i in [] %}x{% else %}empty{% endfor %}",
    "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %}",
    "{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %} {% for c in 'héllo' %}[{{ c }}]{% endfor %} {% for k in d %}{{ k }}{% endfor %}",
    "{{ range(5)|list }} {{ range(2, 8, 2)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }}",
    "{% for i in l %}{{ loop.changed(i > 1) }}{% endfor %}",
    # set, scoping, namespace
    "{% set a = 1 %}{% set b, c = 2, 3 %}{{ a }}{{ b }}{{ c }}{% set t2 = 1, 2 %}{{ t2 }}",
    "{% set v = 1 %}{% for i in l %}{% set v = v + i %}{{ v }}{% endfor %}|{{ v }}",
    "{% set ns = namespace(total=0, names=[]) %}{% for p in people %}{% set ns.total = ns.total + p.age %}{% set ns.names = ns.names + [p.name] %}{% endfor %}{{ ns.total }} {{ ns.names }} {{ ns }}",
    "{% set ns = namespace() %}{% set ns.a = 1 %}{{ ns.a }}{{ ns['a'] }}{{ ns.b }}|{% set ns2 = namespace({'k': 2}, j=3) %}{{ ns2.k }}{{ ns2.j }}",
    "{% if t %}{% set inner = 'in' %}{% endif %}{{ inner }}|{% for i in [1] %}{% set loopvar = 'lv' %}{% endfor %}{{ loopvar }}|",
    "{% set block %}  captured {{ x }}\n{% endset %}[{{ block }}]{% set up | upper | trim %} low {% endset %}[{{ up }}]",
    "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a }}|{% filter upper %}shout {{ s }}{% endfilter %}",
    "{{ dict(a=1, b=2) }} {{ dict(d) }}",
    # macros
    "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', '?') }} {{ greet(punct='.', name='Cy') }}",
    "{% macro m(a, b=a ~ '2') %}{{ a }}{{ b }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1) }}|{{ m(1, 2, 3, k=4) }}",
    "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(10) }}",
    "{% macro show(v) %}{% if v is mapping %}{{ '{' }}{% for k, x in v.items() %}{{ k }}:{{ show(x) }},{% endfor %}{{ '}' }}{% elif v is iterable and v is not string %}[{% for x in v %}{{ show(x) }} {% endfor %}]{% else %}{{ v }}{% endif %}{% endmacro %}{{ show(d) }}",
    "{% set y = 1 %}{% macro see() %}{{ y }}{% endmacro %}{% set y = 2 %}{{ see() }}{% for y in [9] %}{{ see() }}{% endfor %}",
    # whitespace control, comments, raw
    "a  {%- if t %}  b  {%- endif %}  c\n  {%- for i in l -%}\n   {{ i }}\n  {%- endfor %}\nd {# comment #} e {#- c2 -#} f",
    "line1\n    {% if t %}\n    indented\n    {% endif %}\nline2\n  {# note #}\nline3\n\t{% for i in [1,2] %}\n\t- {{ i }}\n\t{% endfor %}\nend",
    "a\n  {%+ if t %}keep{% endif %}\n{% if t +%}\nno-trim{% endif %}\n  {{ x }}\n  {%- if t %}x{% endif %}",
    "{% raw %}{{ not rendered }} {% if %}{% endraw %}|{%- raw -%}   {{ x }}   {%- endraw -%}  |",
    "{{- '  lead' -}}  \n  {{- 'trail  ' -}}\n{{ x }}",
    "windows\r\nline\rends\r\n{% if t %}\r\nx\r\n{% endif %}\r\n",
    "{# only a comment #}",
    "trailing newline kept?\n",
    "{{ '{{' }} {{ '}}' }} {{ {'a': {'b': 1}} }}",
    # strftime and globals
    "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M:%S %A %B %j %p %I %y %a %e') }} {{ strftime_now('%-d/%-m') }} [{{ strftime_now('%z%Z') }}]",
    "{{ raise_exception is defined }} {{ strftime_now is defined }} {{ namespace is defined }} {{ loop is defined }}",
    # composite patterns seen in real chat templates
    """{%- set ns = namespace(multi_step=true, last_query=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step = false %}
        {%- set ns.last_query = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- set content = message.content if message.content is string else '' %}
    {%- if message.role == "assistant" %}
        {%- set reasoning = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query %}
            {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}""",
    """{%- macro json_to_python_type(spec) %}
{%- set basic = {"string": "str", "number": "float", "integer": "int", "boolean": "bool"} %}
{%- if basic[spec.type] is defined %}
    {{- basic[spec.type] }}
{%- elif spec.type == "array" %}
    {{- "list[" + json_to_python_type(spec['items']) + "]" }}
{%- elif spec.type == "object" %}
    {%- if spec.additionalProperties is defined %}
        {{- "dict[str, " + json_to_python_type(spec.additionalProperties) + ']' }}
    {%- else %}
        {{- "dict" }}
    {%- endif %}
{%- elif spec.type is iterable and spec.type is not string %}
    {{- "Union[" }}
    {%- for t in spec.type %}
        {{- json_to_python_type({"type": t}) }}
        {%- if not loop.last %}{{- "," }}{%- endif %}
    {%- endfor %}
    {{- "]" }}
{%- else %}
    {{- "Any" }}
{%- endif %}
{%- endmacro %}
{{- json_to_python_type({"type": "array", "items": {"type": "object", "additionalProperties": {"type": ["string", "integer", "boolean"]}}}) }}
{% for name, p in schema.properties|items %}
    {{- name }}: {{ json_to_python_type(p) }}{% if p.description is defined %} # {{ p.description|trim }}{% endif %}

{% endfor %}""",
    """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- if messages[0]['content'] is string %}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' %}
    {%- else %}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' %}
    {%- endif %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set first_user_prefix = "" %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'assistant') %}{% set role = "model" %}{% else %}{% set role = message['role'] %}{% endif %}
    {{- '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string %}
        {{- message['content'] | trim }}
    {%- elif message['content'] is iterable %}
        {%- for item in message['content'] %}
            {%- if item['type'] == 'image' %}{{ '<start_of_image>' }}{%- elif item['type'] == 'text' %}{{ item['text'] | trim }}{%- endif %}
        {%- endfor %}
    {%- endif %}
    {{- '<end_of_turn>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{%- endif %}""",
    """{% for message in messages %}{% if message.role == 'user' %}{{ '### Instruction:\\n' + message.content|trim + '\\n\\n' }}{% elif message.role == 'assistant' %}{{ '### Response:\\n' + message.content|trim + eos_token + '\\n\\n' }}{% else %}{{ message.content + '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}### Response:\\n{% endif %}""",
    """{%- if tools %}{%- for t in tools %}{{ t.function.name }}({{ t.function.parameters.properties.keys()|join(', ') }}){{ t|tojson(indent=4) }}{% endfor %}{% endif %}{{ tools|length if tools else 'no tools' }}""",
    "{% for m in messages %}{{ loop.index ~ '/' ~ loop.length ~ ':' ~ m.role|capitalize ~ (', ' if not loop.last) }}{% endfor %}",
    "{{ (messages|selectattr('role', 'in', ['user', 'system'])|map(attribute='content')|map('length')|sum) }} {{ messages|rejectattr('role', 'ne', 'user')|list|count }}",
    "{{ [1e-7, 123456789.0, 1e22, 2.5e-5, 100.0, 1/3, -0.5]|tojson }} {{ [1e-7, 123456789.0, 1e22, 1e15, 1e16] }}",
    "{{ '%s|%r|%d' % (none, 'q', 3.9) }} {{ ['é', 'a\\u00a0b', '\\u2028', '\\x85']|string }}",
    "{{ 'Ǆ ǅ ǆ ﬁ ŉ'|title }}|{{ 'ǆemal ﬁsh'.title() }}|{{ 'ǉ'|capitalize }}|{{ 'İ'|lower|length }}|{{ 'ﬃ'|upper }}",
    "{{ '  \\u3000x\\u00a0 '|trim|length }} {{ '\\u2003a b\\u2003'.split() }} {{ 'a\\u0085b'.splitlines() }}",
    "{% for a in [3, 1, 2]|sort %}{% for b in 'ab' if b != a|string %}{{ loop.index }}{{ b }}{{ loop.length }}{% endfor %}{% endfor %}",
    "{% set d2 = {'z': 1, 'y': 2} %}{% for k in d2|sort %}{{ k }}{% endfor %}{{ d2|dictsort(reverse=true) }}{{ d2.items()|list|sort }}",
    "{{ messages[0] }}",
    "{{ messages|tojson }}",
    "{% if messages %}yes{% endif %}{% if not [] %}empty{% endif %}{% if {} %}no{% endif %}{% if '0' %}str0{% endif %}{% if 0.0 %}no{% endif %}",
    "{{ x > 3 and x < 10 or fl }} {{ not fl and not n }} {{ (x > 3) == true }} {{ x in [5, 6] and 'ok' }}",
    "{% set a = 'outer' %}{% macro m() %}{% set a = 'inner' %}{{ a }}{% endmacro %}{{ m() }}{{ a }}",
    "{% for i in range(3) %}{% set x = i * 10 %}{{ x }}{% endfor %}{{ x }}",
    "{{ '{%' }}{{ '%}' }}{{ '#}' }} {# {{ x }} #}",
    "{{ u|e }} {{ 'a&b'|escape|length }} {{ ('<' ~ 'b>')|e }}",
    "{{ range(3)|map('string')|join('-') }} {{ range(1, 4)|sum }} {{ range(5)|select('even')|list }} {{ range(5)|batch(2)|map('sum')|list }}",
    "{{ l|map('tojson')|join(';') }} {{ people|map(attribute='name')|map('upper')|sort|join }}",
    "{{ x|float / 2 }} {{ (x / 2)|int }} {{ x|string|int + 1 }} {{ '7'|int * '3'|int }}",
    "{%- set msg = \"line one.\\\nline two \\\"quoted\\\"\\\n\\\nend\" %}{{ msg }}|{{ 'a\\\nb' }}",
    "{%- set filtered = [] %}{%- for m in messages %}{%- if m['role'] not in ['tool', 'x'] and not m.get('tool_calls') %}{%- set filtered = filtered + [m] %}{%- endif %}{%- endfor %}{{ filtered|length }} {{ 'abcdefghijk'[-9:] }} {{ people[0].get('name') }} {{ people[2].get('tags', 'd') }}",
    """[gMASK]<sop>
{%- macro visible(content) -%}
    {%- if content is string -%}
        {{- content }}
    {%- elif content is iterable and content is not mapping -%}
        {%- for item in content -%}
            {%- if item is mapping and item.type == 'text' -%}
                {{- item.text }}
            {%- elif item is string -%}
                {{- item }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{- content }}
    {%- endif -%}
{%- endmacro -%}
{%- set ns = namespace(last_user=-1) %}
{%- for m in messages %}
    {%- if m.role == 'user' %}
        {% set ns.last_user = loop.index0 -%}
    {%- endif %}
{%- endfor %}
{% for m in messages %}
{%- if m.role == 'user' -%}<|user|>
{%- set uc = visible(m.content) -%}
{{ uc }}
{{- '/nothink' if (enable_thinking is defined and not enable_thinking and not uc.endswith("/nothink")) else '' -}}
{%- elif m.role == 'assistant' -%}
<|assistant|>
{%- set content = visible(m.content) %}
{%- set parts = content.split('</think>') -%}
{%- set first_part = parts | first -%}
{{ '\\n' + (parts | last).strip() }}
{%- for k, v in {'a': 1, 'b': 'two', 'c': [1]}.items() -%}

<arg_key>{{ k }}</arg_key>
<arg_value>{{ v | tojson if v is not string else v }}</arg_value>
{%- endfor -%}
{%- elif m.role == 'system' -%}
<|system|>
{{ visible([{'type': 'text', 'text': m.content}, 'plain', {'type': 'image'}]) }}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    <|assistant|>{{- '\\n<think></think>' if (enable_thinking is defined and not enable_thinking) else '' -}}
{%- endif -%}""",
    "{% for c in [{'type': 'image'}, {'text': 'hi'}, {'image_url': 'u'}] %}{% if c['type'] == 'image' or 'image' in c or 'image_url' in c %}[IMG]{% else %}{{ c['text'] }}{% endif %}{% endfor %}",
    "{% set out = people[0]|tojson %}{{ out[:-1] }}, \"id\": 1}} {{ (tools[0]['function'] | tojson) }}",
    "{{- '<|system|>' -}}\n  {% for t in tools %}\n    {{- t.function.name -}}\n  {% endfor %}\n{{- '<|end|>' -}}",
    "  {% if true %}x{% endif %}|\n\t \t{%- if true %}y{% endif %}|{% if true %}  \n  z{% endif %}",
    "x {%+ if true %}a{% endif %}|{#- c #}  y|{{ 1 }}  {% if true %}b{% endif %}\n  {% if true %}c{% endif %}",
    "\u3000{% if true %}u{% endif %}|{% if true -%} \u3000\u2028 v{% endif %}|a \u00a0{%- if true %}w{% endif %}",
    "{% raw %}r{% endraw %}\n  {% if true %}after-raw{% endif %}\n{% raw -%}\n  x  \n  {%- endraw %}",
    "{% for i in [1, 2] %}\n{{ i }}\n{% endfor %}\n\n{% for i in [1, 2] -%}\n{{ i }}\n{%- endfor %}",
    "a {# multi\nline\ncomment #}\nb {#- x -#} c\n{# y #}\n\nd",
    "{%- macro m() -%}\n  inside  \n{%- endmacro -%}\n[{{ m() }}]\n  {{- m() -}}\n[x]",
    # errors that must fail in both
    "{{ 'a' + 1 }}",
    "{{ missing.attr }}",
    "{{ missing['k'] }}",
    "{{ missing + 1 }}",
    "{{ 1 / 0 }}",
    "{{ 1 < 'a' }}",
    "{{ x|tojson }}{{ missing|tojson }}",
    "{{ n|length }}",
    "{{ l.append(4) }}",
    "{% set a, b = [1] %}",
    "{% set x.y = 1 %}",
    "{{ range(200000)|length }}",
    "{{ raise_exception('custom message ü') }}",
    "{{ 'a' in 1 }}",
    "{{ 1 in 'abc' }}",
    "{{ undefined_fn() }}",
    "{% for i in 5 %}{% endfor %}",
    "{{ ''.split('') }}",
    "{{ [1, 2]|sum(start='x') }}",
]

# Templates that must fail to parse in both.
# Jinja's laziness about unknown filters and tests: inside an if (its
# tests and bodies) or a conditional expression the name fails only when
# evaluated; for, macro, filter, with and set blocks are strict again.
LAZY = [
    "{% if false %}{{ x | no_such_filter }}{% endif %}ok",
    "{% if t %}{{ 'a' | no_such_filter }}{% endif %}ok",
    "{% if false %}a{% elif false %}{{ 1 | nope }}{% else %}b{{ 2 if true else 3 | nope2 }}{% endif %}",
    "{{ 'a' | no_such_filter if false else 'b' }}|{{ 'c' if true else 'd' | nope }}",
    "{{ 'a' | no_such_filter if true else 'b' }}",
    "{% set y = 1 | nope if false else 2 %}{{ y }}",
    "{% if false %}{% set y = 1 | nope %}{% endif %}ok",
    "{% if x is no_such_test %}a{% endif %}b",
    "{% if false %}{% if x is no_such_test %}a{% endif %}{% endif %}b",
    "{% if false %}{% for i in [1] | nope %}{% endfor %}{% endif %}ok",
    "{% if false %}{% for i in [1] %}{{ i | nope }}{% endfor %}{% endif %}ok",
    "{% if false %}{% macro m() %}{{ 1 | nope }}{% endmacro %}{% endif %}ok",
    "{% if false %}{% set b %}{{ 1 | nope }}{% endset %}{% endif %}ok",
    "{% if false %}{% filter nope %}x{% endfilter %}{% endif %}ok",
    "{% if false %}{% with a = 1 | nope %}{% endwith %}{% endif %}ok",
    "{% if false %}{% with a = 1 %}{{ a | nope }}{% endwith %}{% endif %}ok",
    "{{ (1 | nope) if false }}ok",
    "{% for m in messages %}{% if m.role == 'nobody' %}{{ m | nope }}{% endif %}{% endfor %}ok",
    # from_json
    "{{ '{\"a\": [1, 2.5, \"x\", null, true, {\"b\": \"\\u00e9\"}]}' | from_json | tojson }}",
    "{% set o = '{\"name\": \"f\", \"k\": 1}' | from_json %}{% for k, v in o.items() %}{{ k }}={{ v }};{% endfor %}",
    "{{ ('[1, 2' | from_json) }}",
    "{{ 1 | from_json }}",
    "{{ '\"s\"' | from_json }}|{{ ' 12 ' | from_json + 1 }}",
]

SYNTAX_ERRORS = [
    "{% if x %}unclosed",
    "{{ 1 + }}",
    "{% for %}{% endfor %}",
    "{{ x|no_such_filter }}",
    "{{ x is no_such_test }}",
    "{% break %}",
    "{% endif %}",
    "{{ (1 }}",
    "{{ 'unterminated }}",
    "{% do x %}",
    "{# unterminated comment",
    "{% set %}",
    "{{ }}",
    "{% macro m(a=1, b) %}{% endmacro %}",
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


TOOL_CONVS = {"single", "system", "multi", "unicode", "empty"} | set(RICH)


def conformance(name, source, args, bos, eos, env):
    """Each conversation: no extra variables (as llama.cpp renders) with and
    without the generation prompt; tools=None/documents=None (as
    transformers renders); a tool list where the template takes one.  The
    combinations are trimmed to keep the test quick under sanitizers."""
    for conv_name, conv in list(PLAIN.items()) + list(RICH.items()):
        for var_name, extra in VARIANTS:
            if var_name == "tools" and ("tools" not in source or conv_name not in TOOL_CONVS):
                continue
            agps = (True, False) if var_name == "plain" else (conv_name != "ends_with_assistant",)
            for agp in agps:
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


def features(env, tmpdir):
    """Every FEATURES/SYNTAX_ERRORS snippet through both engines."""
    path = os.path.join(tmpdir, "feature.jinja")
    n_before = passed, failed
    for i, src in enumerate(FEATURES + LAZY + SYNTAX_ERRORS):
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(src)
        label = "feature[%d] %r" % (i, src[:60])
        compare(label, src, ["--template", path, "--bos", "<s>", "--eos", "</s>"],
                PLAIN["multi"], True, "<s>", "</s>", FEATURE_VARS, env)
    print("%-48s %4d passed, %d failed" % ("feature corpus", passed - n_before[0],
                                            failed - n_before[1]))


THINKING_TEMPLATES = [
    "Qwen-Qwen3-0.6B", "Qwen3.5-4B", "Qwen-QwQ-32B", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B", "deepseek-ai-DeepSeek-V3.1", "deepseek-ai-DeepSeek-V3.2",
    "deepseek-ai-DeepSeek-V4", "openai-gpt-oss-120b", "google-gemma-4-31B-it",
    "mistralai-Ministral-3-14B-Reasoning-2512", "HuggingFaceTB-SmolLM3-3B", "GLM-4.6", "GLM-4.7-Flash",
    "MiniMax-M2", "Kimi-K2-Thinking", "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "ByteDance-Seed-OSS",
]
NEWER_TEMPLATES = ["google-gemma-4-31B-it"]
THINKING_VARS = [{}, {"enable_thinking": True}, {"enable_thinking": False},
                 {"reasoning_effort": "low"}, {"reasoning_effort": "high", "enable_thinking": True}]
THINKING_CONVS = [
    PLAIN["multi"],
    [m(U, "hi"), m(A, "<think>\nThe user greets.\n</think>\n\nHello!"), m(U, "again")],
    [m(U, "hi"), dict(role=A, content="Hello!", reasoning_content="The user greets."), m(U, "again")],
]


def thinking(env):
    """The thinking families' templates with enable_thinking and
    reasoning_effort, past reasoning in the content or apart."""
    tdir = os.path.join(LLAMACPP, "models", "templates")
    if not os.path.isdir(tdir):
        print("note: no llama.cpp templates in %r (TTYCHAT_LLAMACPP_DIR)" % tdir)
        return
    for name in THINKING_TEMPLATES:
        path = os.path.join(tdir, name + ".jinja")
        if not os.path.exists(path):
            fail("%s: missing from %s" % (name, tdir))
            continue
        with open(path, encoding="utf-8") as f:
            source = f.read()
        before = passed, failed
        for ci, conv in enumerate(THINKING_CONVS):
            for v in THINKING_VARS:
                for agp in ((True, False) if not v else (True,)):
                    compare("%s conv%d %s agp=%s" % (name, ci, json.dumps(v), agp), source,
                            ["--template", path, "--bos", "<s>", "--eos", "</s>"], conv, agp, "<s>", "</s>",
                            v, env)
        print("%-48s %4d passed, %d failed" % ("thinking " + name, passed - before[0], failed - before[1]))


# Gemma 4's own constructs: nested tool parameters (enum, array items,
# nested objects, nullable), arguments of every JSON kind, reasoning kept
# beside a tool call, tool results by tool_call_id or embedded
# (tool_responses), a thought channel stripped from past answers, content
# parts, a system turn carrying the thinking switch.
GEMMA4_TOOLS = TOOLS + [{
    "type": "function",
    "function": {
        "name": "plan_trip",
        "description": "Plan a trip",
        "parameters": {
            "type": "object",
            "properties": {
                "stops": {"type": "array", "description": "Stops",
                          "items": {"type": "object", "properties": {
                              "city": {"type": "string"}, "nights": {"type": "integer"}},
                              "required": ["city"]}},
                "mode": {"type": "string", "enum": ["rail", "road"], "nullable": True},
                "budget": {"type": "object", "properties": {"max": {"type": "number"}},
                           "required": ["max"]},
                "tags": {"type": "array", "items": {"type": ["string", "null"]}},
            },
            "required": ["stops"],
        },
        "response": {"type": "object", "description": "The plan"},
    },
}]
GEMMA4_CONVS = [
    [m(S, "  Be brief. "), m(U, "Plan Lyon then Nice"),
     {"role": A, "content": "", "reasoning_content": "Two stops.",
      "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "plan_trip", "arguments": {
          "stops": [{"city": "Lyon", "nights": 2}, {"city": "Nice"}], "mode": None,
          "budget": {"max": 1200.5, "flex": True}, "tags": ["food", "sea"]}}}]},
     {"role": "tool", "tool_call_id": "c1", "content": "{\"ok\": true}"},
     m(A, "<|channel>thought\nDone.<channel|>Booked: Lyon, Nice."), m(U, "Thanks!")],
    [m(U, "Weather?"),
     {"role": A, "content": None, "tool_calls": [
         {"id": "w1", "function": {"name": "get_weather", "arguments": {"city": "Oslo", "days": 3}}},
         {"id": "w2", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
     {"role": "tool", "tool_call_id": "w2", "content": [{"type": "text", "text": "hot"}]},
     {"role": "tool", "tool_call_id": "w1", "name": "get_weather", "content": "cold"}],
    [m(U, "Legacy"),
     {"role": A, "content": "Here.", "tool_responses": [
         {"name": "get_weather", "response": {"temp": -3, "sky": "snow", "alerts": [True, False]}},
         {"name": "get_weather", "response": "n/a"}]},
     {"role": U, "content": [{"type": "text", "text": " look "}, {"type": "image"}, {"type": "audio"}]}],
]


def gemma4_extra(env):
    path = os.path.join(LLAMACPP, "models", "templates", "google-gemma-4-31B-it.jinja")
    if not os.path.exists(path):
        print("note: no google-gemma-4-31B-it.jinja in %r" % LLAMACPP)
        return
    with open(path, encoding="utf-8") as f:
        source = f.read()
    before = passed, failed
    for ci, conv in enumerate(GEMMA4_CONVS):
        for v in ({}, {"tools": GEMMA4_TOOLS}, {"tools": GEMMA4_TOOLS, "enable_thinking": True},
                  {"enable_thinking": False}):
            for agp in (True, False):
                compare("gemma-4 conv%d %s agp=%s" % (ci, json.dumps(sorted(v)), agp), source,
                        ["--template", path, "--bos", "<bos>", "--eos", "<eos>"], conv, agp, "<bos>", "<eos>",
                        v, env)
    print("%-48s %4d passed, %d failed" % ("gemma-4 tools and channels", passed - before[0],
                                            failed - before[1]))
# Tool calls as `ttychat serve` passes them on: the request's tools, an
# assistant turn whose calls carry ids and arguments parsed into objects,
# the tool's results with their call ids and names.
SERVE_TOOLS = [m(S, "You are a weather bot."), m(U, "Weather in Oslo and Lima?"),
               {"role": A, "content": None,
                "tool_calls": [{"id": "abcDEF123", "type": "function",
                                "function": {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}},
                               {"id": "xyzXYZ789", "type": "function",
                                "function": {"name": "get_weather", "arguments": {"city": "Lima"}}}]},
               {"role": "tool", "tool_call_id": "abcDEF123", "name": "get_weather", "content": "{\"temp\": -3}"},
               {"role": "tool", "tool_call_id": "xyzXYZ789", "name": "get_weather", "content": "{\"temp\": 19}"},
               m(A, "Cold in Oslo, mild in Lima."), m(U, "Thanks. And Rome?")]
TOOL_TEMPLATES = [
    "Qwen-Qwen2.5-7B-Instruct", "Qwen-Qwen3-0.6B", "Qwen3.5-4B", "Qwen-QwQ-32B",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
    "ibm-granite-granite-4.0", "meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct",
    "meta-llama-Llama-3.3-70B-Instruct", "mistralai-Mistral-Nemo-Instruct-2407", "HuggingFaceTB-SmolLM3-3B",
    "openai-gpt-oss-120b", "Mistral-Small-3.2-24B-Instruct-2506", "Qwen3-Coder",
    "deepseek-ai-DeepSeek-V3.1", "GLM-4.6", "Kimi-K2-Instruct", "MiniMax-M2", "meetkai-functionary-medium-v3.2",
    "fireworks-ai-llama-3-firefunction-v2", "CohereForAI-c4ai-command-r7b-12-2024-tool_use",
    "ibm-granite-granite-3.3-2B-Instruct", "google-gemma-4-31B-it", "LFM2-8B-A1B",
]
# (of the tree's 69 templates all render these conversations as Jinja does
# but two: functionary v3.1 concatenates '...'|safe + str, where Python's
# Markup escapes the str, and llama.cpp's own deepseek-r1 passes a generator
# to tojson, which Python cannot serialise)


def tool_templates(env):
    """The tool-taking templates of the llama.cpp tree with tools in the
    variables and past calls and results in the conversation."""
    tdir = os.path.join(LLAMACPP, "models", "templates")
    if not os.path.isdir(tdir):
        print("note: no llama.cpp templates in %r (TTYCHAT_LLAMACPP_DIR)" % tdir)
        return
    convs = [("serve_tools", SERVE_TOOLS), ("single", PLAIN["single"]), ("system", PLAIN["system"])] + \
        [(k, RICH[k]) for k in ("qwen_tools", "mistral_tools", "llama_tools")]
    for name in TOOL_TEMPLATES:
        path = os.path.join(tdir, name + ".jinja")
        if not os.path.exists(path):
            fail("%s: missing from %s" % (name, tdir))
            continue
        with open(path, encoding="utf-8") as f:
            source = f.read()
        before = passed, failed
        for conv_name, conv in convs:
            for v in ({"tools": TOOLS}, {"tools": TOOLS, "tool_choice": "auto"}, {"tools": None}):
                compare("%s tools/%s %s" % (name, conv_name, json.dumps(v)[:30]), source,
                        ["--template", path, "--bos", "<s>", "--eos", "</s>"], conv, True, "<s>", "</s>", v, env)
        print("%-48s %4d passed, %d failed" % ("tools " + name, passed - before[0], failed - before[1]))


def main():
    if not BIN or not os.access(BIN, os.X_OK):
        print("SKIP: ttychat binary not found (TTYCHAT_BIN=%r)" % BIN)
        return 77
    env = make_env()
    ran = False
    with tempfile.TemporaryDirectory() as tmpdir:
        features(env, tmpdir)
    thinking(env)
    gemma4_extra(env)
    tool_templates(env)

    templates = sorted(glob.glob(os.path.join(TESTDATA, "templates", "*.jinja"))) if TESTDATA else []
    if not templates:
        print("note: no test templates in %r" % TESTDATA)
    # templates of families newer than that folder, from llama.cpp's tree:
    # the whole conformance corpus (tools, refusals), not only thinking
    for name in NEWER_TEMPLATES:
        path = os.path.join(LLAMACPP, "models", "templates", name + ".jinja")
        if os.path.exists(path) and not any(os.path.basename(t) == name + ".jinja" for t in templates):
            templates.append(path)
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
        print("note: no test templates and no models found: only the feature corpus ran")
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
