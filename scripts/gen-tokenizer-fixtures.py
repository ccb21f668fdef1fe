#!/usr/bin/env python3
"""Generate the tokenizer conformance fixtures under tests/fixtures/tokenizer/
with llama.cpp as the reference (PyPI llama-cpp-python, which builds it).

    python3 scripts/gen-tokenizer-fixtures.py [MODELS_DIR [TESTDATA_DIR]]

MODELS_DIR defaults to $TTYCHAT_MODELS_DIR or ~/.local/share/ttychat/models,
TESTDATA_DIR to ../shared/testdata beside the checkout.  Needs the pyenv
python with llama_cpp and gguf; never run by make check (CI has neither).

Writes:
  corpus.dat        the test texts: "case NAME LEN\\n", LEN raw bytes, "\\n"
  <model>.txt       for each real model: vocabulary facts (roles, flags,
                    end-of-generation ids, token attributes, piece digests)
                    and the ids of every case, without and with special-token
                    parsing (llama_tokenize(add_special=false, parse_special))
  pre-variants.txt  for every pre-tokenizer name ttychat supports: the
                    ggml-vocab-gpt-2 vocabulary with tokenizer.ggml.pre set
                    to that name, a 32-bit digest of each case's ids
"""
import ctypes
import os
import re
import struct
import sys
import tempfile

import gguf
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
OUT = os.path.join(TOP, "tests", "fixtures", "tokenizer")

MODELS = [
    ("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("gemma3", "gemma-3-270m-it-Q4_K_M.gguf"),
]


def corpus():
    c = []

    def add(name, text):
        c.append((name, text.encode() if isinstance(text, str) else text))

    add("en_prose", "The quick brown fox jumps over the lazy dog. It's 5 o'clock; we'll see "
        "what they've done \u2014 isn't it? She'd say: \"I'm fine.\"")
    add("contractions", "I'M HERE. You'RE sure? We'Ve a'lL 'S 'D 'm 're don't DON'T 'tis '")
    add("caps", "HELLO WORLD THIS IS ALL CAPS. CamelCaseIdentifier snake_case_name "
        "SCREAMING_SNAKE_CASE HTTPServer XMLHttpRequest iPhone McDonald's")
    add("code_c", "#include <stdio.h>\n\nint main(int argc, char **argv)\n{\n\tfor (int i = 0; "
        "i < argc; i++) {\n\t\tprintf(\"%d: %s\\n\", i, argv[i]);\n\t}\n\treturn 0; /* done */\n}\n")
    add("code_py", "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
        "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n"
        "print(f\"{fib(30):,}\")  # 832,040\n        \n")
    add("code_js", "const add = (a, b) => a + b;\n{\n  \"key\": [1, 2.5, null, true],\n  "
        "\"nested\": {\"x\": \"y\"}\n}\nif (/^\\s+$/.test(s)) { return s?.trim() ?? ''; }\n")
    add("html", "<table><tr><td>x</td></tr></table> <b>bold</b> <h1>T</h1><div class=\"a\">"
        "<span>s</span></div> <code>x</code>")
    add("markdown", "# Title\n\n- item 1\n- item 2\n\n```bash\nls -la | grep \"*.c\"\n```\n\n"
        "> quote **bold** _it_ `code` [link](http://x.y)\n")
    add("numbers", "0 1 12 123 1234 12345 123456789012 3.14159 -2.5e-10 1,000,000 $19.99 50% "
        "\u00bd \u00b2 \u216b \u0663\u0664\u0665 \u0967\u0968\u0969 \uff11\uff12\uff13 0x1F 007")
    add("long_number", "1234567890" * 10)
    add("german", "Gr\u00f6\u00dfenwahn \u00fcber \u00c4pfel und \u00d6l \u2014 Stra\u00dfe, Fu\u00dfg\u00e4nger")
    add("french", "\u00c7a va? L'\u00e9t\u00e9 \u00e0 No\u00ebl, o\u00f9 est la fen\u00eatre? "
        "\u00abBonjour\u00bb l\u2019homme")
    add("spanish", "\u00bfD\u00f3nde est\u00e1 el ni\u00f1o? \u00a1Ma\u00f1ana!")
    add("russian", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a \u0434\u0435\u043b\u0430? "
        "\u0421\u044a\u0435\u0448\u044c \u0436\u0435 \u0435\u0449\u0451 \u044d\u0442\u0438\u0445 "
        "\u043c\u044f\u0433\u043a\u0438\u0445 \u0444\u0440\u0430\u043d\u0446\u0443\u0437\u0441\u043a"
        "\u0438\u0445 \u0431\u0443\u043b\u043e\u043a.")
    add("greek", "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03ba\u03cc\u03c3\u03bc\u03b5, "
        "\u0391\u0392\u0393\u0394 \u03b1\u03b2\u03b3\u03b4")
    add("arabic", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645\u060c "
        "\u0643\u064a\u0641 \u062d\u0627\u0644\u0643\u061f")
    add("hebrew", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd")
    add("hindi", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e, "
        "\u0906\u092a \u0915\u0948\u0938\u0947 \u0939\u0948\u0902?")
    add("thai", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01")
    add("chinese", "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u6211\u4eec\u4eca\u5929\u53bb\u516c\u56ed"
        "\u6563\u6b65\u5427\u3002")
    add("japanese", "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c\u3001\u30ab\u30bf\u30ab\u30ca\u3068"
        "\u3072\u3089\u304c\u306a\u3001\u6f22\u5b57\u3002\uff76\uff80\uff76\uff85")
    add("korean", "\uc548\ub155\ud558\uc138\uc694 \uc138\uacc4, \ud55c\uad6d\uc5b4 "
        "\ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4.")
    add("vietnamese", "Ti\u1ebfng Vi\u1ec7t c\u00f3 d\u1ea5u: Xin ch\u00e0o th\u1ebf gi\u1edbi")
    add("emoji", "\U0001F600 \U0001F603\U0001F604 \U0001F44D\U0001F3FD "
        "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 \U0001F1FA\U0001F1F8"
        "\U0001F1EF\U0001F1F5 \u2764\ufe0f \u2728\U0001F680 \U0001F916 \u00a9\u00ae\u2122")
    add("math", "\u2200x\u2208\u211d: x\u00b2 \u2265 0, \u2211_{i=1}^{n} i = n(n+1)/2 \u2248 "
        "\u221e \u2260 \u2205")
    add("mixed_script", "Hello\u4e16\u754c\u041f\u0440\u0438\u0432\u0435\u0442123abc!@#\u00e9\u00e8")
    add("combining", "e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937\u093f \u1100\u1161\u11a8")
    add("zero_width", "a\u200bb\u200cc\u200dd\ufeffe\u00adf")
    add("punct", "''''''```````\"\"\"\"......!!!!!!?????? --- ... ;;; ::: @@@ ### $$$ %%% ^^^ "
        "&&& *** ((( ))) ~~~ <<< >>> ||| \\\\ //")
    add("quotes", "don\u2019t it\u2019s \u2018quoted\u2019 \u201cdouble\u201d \u201e\u201f \u2026")
    add("url", "https://example.com/path?query=1&x=%20y#frag user@example.org C:\\Windows\\x.exe")
    add("ws_spaces", "a" + " " * 40 + "b" + " " * 3 + "\n")
    add("ws_only", " " * 70)
    add("ws_mixed", "\t\t  \n\n\n   \r\n\r\n \t x \u00a0 \u3000 y\u2003z\u2028w\u0085v \u00a0\u00a0 ")
    add("newlines", "\n" * 35 + "end\n\n")
    add("tabs", "\t" * 33 + "x\t\ty\t")
    add("indent", "if x:\n" + "".join(" " * (4 * k) + "y\n" for k in range(1, 10)))
    add("leading_space", " Hello")
    add("trailing_space", "Hello   ")
    add("single_letter", "a")
    add("single_space", " ")
    add("single_newline", "\n")
    add("long_word", "a" * 300 + "Supercalifragilisticexpialidocious" * 5)
    add("repeated", "ab" * 100)
    add("invalid_utf8", b"abc\xff\xfe def \x80\x81 ghi \xc3 \xe2\x82 jkl \xc0\xaf \xed\xa0\x80 "
        b"end\xf0\x9f\x98")
    add("control_chars", b"\x01\x07\x1b[31mred\x1b[0m\x7f\x1f\x0b\x0c")
    add("chat_chatml", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n"
        "Hi there!<|im_end|>\n<|im_start|>assistant\n")
    add("chat_gemma", "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"
        "4<end_of_turn>\n")
    add("specials", "<|endoftext|> <s></s><unk> <pad> <eos> [multimodal] <start_of_image> <unused5> "
        "<|im_start|><|im_end|><reponame><file_sep>")
    add("near_specials", "<|im_start <|im_end| <start_of_turn <end_of_turn>> <<bos>> <|im_end|>|>")
    add("fim", "<fim_prefix>def f():<fim_suffix>\n<fim_middle> <|fim_prefix|>")
    return c


def fnv1a64(data, h=0xcbf29ce484222325):
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


def fnv1a32(data, h=0x811c9dc5):
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xffffffff
    return h


def ids_digest(ids):
    return fnv1a32(struct.pack("<I", len(ids)) + b"".join(struct.pack("<i", i) for i in ids))


def load(path):
    return llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)


def piece(vocab, tid, special):
    buf = ctypes.create_string_buffer(1024)
    n = llama_cpp.llama_token_to_piece(vocab, tid, buf, len(buf), 0, special)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, tid, buf, len(buf), 0, special)
    return buf.raw[:n]


def runs(values):
    """(start, end, value) runs of equal values, skipping value 4 (NORMAL)."""
    out = []
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            if values[start] != 4:
                out.append((start, i - 1, values[start]))
            start = i
    return out


def model_fixture(stem, path, cases):
    llm = load(path)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n = llama_cpp.llama_vocab_n_tokens(vocab)
    lines = ["# ids from llama.cpp (llama-cpp-python %s) for %s" % (llama_cpp.__version__,
             os.path.basename(path)),
             "# regenerate with scripts/gen-tokenizer-fixtures.py",
             "model %s" % os.path.basename(path),
             "n_vocab %d" % n]
    for role, fn in (("bos", llama_cpp.llama_vocab_bos), ("eos", llama_cpp.llama_vocab_eos),
                     ("eot", llama_cpp.llama_vocab_eot)):
        lines.append("%s %d" % (role, fn(vocab)))
    lines.append("add_bos %d" % int(llama_cpp.llama_vocab_get_add_bos(vocab)))
    lines.append("add_eos %d" % int(llama_cpp.llama_vocab_get_add_eos(vocab)))
    eog = [i for i in range(n) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    lines.append("eog " + " ".join(map(str, eog)))
    attrs = [int(llama_cpp.llama_vocab_get_attr(vocab, i)) for i in range(n)]
    rr = runs(attrs)
    for k in range(0, len(rr), 16):
        lines.append("attr " + " ".join("%d-%d:%d" % r for r in rr[k:k + 16]))
    # pieces, special rendered and hidden, as FNV-1a 64 over (u32 length, bytes)
    chunk = 4096
    for special in (1, 0):
        for c0 in range(0, n, chunk):
            h = 0xcbf29ce484222325
            for i in range(c0, min(n, c0 + chunk)):
                p = piece(vocab, i, bool(special))
                h = fnv1a64(struct.pack("<I", len(p)) + p, h)
            lines.append("pieces %d %d %016x" % (special, c0, h))
    for name, text in cases:
        for special in (0, 1):
            ids = llm.tokenize(text, add_bos=False, special=bool(special))
            line = "case %s %s %s" % (name, "special" if special else "plain",
                                      " ".join(map(str, ids)))
            lines.append(line.rstrip())
    with open(os.path.join(OUT, stem + ".txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("%s: %d cases, %d eog, %d attr runs" % (stem, len(cases), len(eog), len(rr)))


def supported_pre_names():
    src = open(os.path.join(TOP, "engine", "pretok.c")).read()
    body = src[src.index("pretok_names(void)"):]
    body = body[:body.index("NULL")]
    return re.findall(r'"([^"]+)"', body)


def with_pre(src_path, name, dst):
    """Copy of a vocab-only GGUF with tokenizer.ggml.pre replaced."""
    r = gguf.GGUFReader(src_path)
    assert len(r.tensors) == 0
    f = r.fields["tokenizer.ggml.pre"]
    old = sum(p.nbytes for p in f.parts)
    raw = open(src_path, "rb").read()
    key = b"tokenizer.ggml.pre"
    val = name.encode()
    new = (struct.pack("<Q", len(key)) + key + struct.pack("<I", 8) +
           struct.pack("<Q", len(val)) + val)
    with open(dst, "wb") as o:
        o.write(raw[:f.offset] + new + raw[f.offset + old:])


def pre_fixture(testdata, cases):
    src = os.path.join(testdata, "vocab", "ggml-vocab-gpt-2.gguf")
    lines = ["# per case FNV-1a 32 of (u32 count, i32 ids) from llama.cpp (llama-cpp-python %s)"
             % llama_cpp.__version__,
             "# vocabulary ggml-vocab-gpt-2.gguf with tokenizer.ggml.pre replaced",
             "cases " + " ".join(name for name, _ in cases)]
    with tempfile.TemporaryDirectory() as tmp:
        for name in supported_pre_names():
            path = os.path.join(tmp, "v.gguf")
            with_pre(src, name, path)
            try:
                llm = load(path)
            except Exception as e:  # llama.cpp refuses the name
                lines.append("pre %s error" % name)
                print("pre %s: llama.cpp refuses it: %s" % (name, e))
                continue
            digests = ["%08x" % ids_digest(llm.tokenize(text, add_bos=False, special=False))
                       for _, text in cases]
            lines.append("pre %s %s" % (name, " ".join(digests)))
            del llm
    with open(os.path.join(OUT, "pre-variants.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("pre-variants: %d names" % (len(lines) - 3))


def main():
    models = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "TTYCHAT_MODELS_DIR", os.path.expanduser("~/.local/share/ttychat/models"))
    testdata = sys.argv[2] if len(sys.argv) > 2 else os.path.join(TOP, "..", "shared", "testdata")
    os.makedirs(OUT, exist_ok=True)
    cases = corpus()
    with open(os.path.join(OUT, "corpus.dat"), "wb") as f:
        for name, text in cases:
            f.write(b"case %s %d\n" % (name.encode(), len(text)) + text + b"\n")
    for stem, fname in MODELS:
        model_fixture(stem, os.path.join(models, fname), cases)
    pre_fixture(testdata, cases)


if __name__ == "__main__":
    main()
