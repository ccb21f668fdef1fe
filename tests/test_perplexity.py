#!/usr/bin/python3
"""test_perplexity.py - `ttychat perplexity` on the real SmolLM2 and Gemma 3.

The text is the tree's README.md and man page, scored at -c 128 over four
chunks.  The perplexity must be within 1% of one computed by
llama-cpp-python (the same tokens, the same BOS rule, each chunk from an
empty cache, the mean negative log-likelihood of the second halves, in
numpy), and the most likely token of each row ttychat saved with
--kl-divergence-base must agree with llama-cpp-python's argmax in at
least 95% of the rows; the same for Gemma 3, the model that adds BOS
(against llama.cpp's flash-attention pass, 90%: see gemma_vs_llama).
llama-cpp-python runs in a subprocess under the Python that has it
(TTYCHAT_PYTHON, else `python3` on PATH); where none does, those checks
are skipped with a note.  Where tests/bench-vs-llamacpp built llama.cpp,
llama-perplexity's own PPL, and each tool reading the other's logits
file.  Then the logits file: its layout and size, a round trip through
--kl-divergence on the same model (KLD about 0, the same top token
everywhere), another SmolLM2 quant in the models folder when there is
one, and the bad inputs: a missing text, a text too short, bad numbers, a
base file truncated, not a logits file, holding tokens outside the
vocabulary, or made with another context or vocabulary; each one line
naming the file, non-zero exit.  Ctrl-C mid-run: exit 130, the incomplete
logits file removed.
"""
import glob
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
SRC = os.environ.get("TTYCHAT_SRCDIR", ".")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", "")
SMOL = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
GEMMA = os.path.join(MODELS, "gemma-3-270m-it-Q4_K_M.gguf")
CTX, CHUNKS = 128, 4
ENV = dict(os.environ)

# llama-cpp-python's side: the same chunks, the same BOS rule, numpy's
# mean NLL over the second halves and each scored row's argmax.
ORACLE = r'''
import json, sys
import numpy as np
import llama_cpp
model, text_path, n_ctx, chunks, fa = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
text = open(text_path, "rb").read()
if text.endswith(b"\n"):
    text = text[:-1]
llm = llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, n_threads=2,
                      flash_attn=fa, verbose=False)
vocab = llama_cpp.llama_model_get_vocab(llm.model)
add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
bos = llama_cpp.llama_vocab_bos(vocab)
toks = llm.tokenize(text, add_bos=True, special=False)
n_chunk = min(chunks, len(toks) // n_ctx)
first = n_ctx // 2
nll, count, argmax = 0.0, 0, []
for c in range(n_chunk):
    seq = list(toks[c * n_ctx:(c + 1) * n_ctx])
    if add_bos:
        seq[0] = bos
    llm.reset()
    llm.eval(seq)
    lg = np.array(llm.scores[first:n_ctx - 1], dtype=np.float64)
    mx = lg.max(axis=1, keepdims=True)
    lsm = lg - mx - np.log(np.exp(lg - mx).sum(axis=1, keepdims=True))
    nxt = np.array(toks[c * n_ctx + first + 1:(c + 1) * n_ctx])
    nll -= lsm[np.arange(len(nxt)), nxt].sum()
    count += len(nxt)
    argmax += [int(i) for i in lg.argmax(axis=1)]
print(json.dumps({"ppl": float(np.exp(nll / count)), "argmax": argmax, "tokens": [int(t) for t in toks],
                  "n_vocab": int(llm.n_vocab())}))
'''


def run(args, timeout=600):
    p = subprocess.run([BIN, "perplexity"] + args, capture_output=True, env=ENV, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def oracle_python():
    """A Python that imports llama_cpp and numpy, or None."""
    for py in [os.environ.get("TTYCHAT_PYTHON"), shutil.which("python3", path=os.environ.get("PATH"))]:
        if not py:
            continue
        r = subprocess.run([py, "-c", "import llama_cpp, numpy"], capture_output=True)
        if r.returncode == 0:
            return py
    return None


def read_base(path):
    """The header, tokens and packed rows (lists of uint16 lists) of a logits file."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:8]
    n_ctx, n_vocab, n_chunk = struct.unpack_from("<iii", data, 8)
    tokens = list(struct.unpack_from("<%di" % (n_ctx * n_chunk), data, 20))
    nv = 2 * ((n_vocab + 1) // 2) + 4
    rows = n_ctx - 1 - n_ctx // 2
    return magic, n_ctx, n_vocab, n_chunk, tokens, nv, rows, data


def base_argmax(path):
    """The first most likely token of every packed row, and the file's size check."""
    import array
    magic, n_ctx, n_vocab, n_chunk, tokens, nv, rows, data = read_base(path)
    off = 20 + 4 * n_ctx * n_chunk
    words = array.array("H")
    words.frombytes(data[off:])
    out = []
    for r in range(n_chunk * rows):
        row = words[r * nv + 4:r * nv + 4 + n_vocab]
        mx = max(row)
        out.append(row.index(mx))
    return out


def ppl_of(out):
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out)
    return (float(m.group(1)), float(m.group(2))) if m else (None, None)


def stat(out, label):
    m = re.search(re.escape(label) + r"\s*:\s*(-?[0-9.]+)", out)
    return float(m.group(1)) if m else None


def one_error(rc, err, want_rc, *words):
    """A refusal: exit WANT_RC (or any non-zero for None), the last stderr line naming WORDS."""
    lines = [l for l in err.strip().splitlines() if l]
    last = lines[-1] if lines else ""
    ok = (rc != 0 if want_rc is None else rc == want_rc) and all(w in last for w in words)
    return ok, "rc %d, stderr %r" % (rc, err[-400:])


def check_against_llama(model, text, base, ours_ppl, flash_attn=False, min_agree=0.95):
    py = oracle_python()
    if not py:
        print("note: no Python with llama_cpp and numpy: the llama-cpp-python comparison is skipped")
        return
    p = subprocess.run([py, "-c", ORACLE, model, text, str(CTX), str(CHUNKS), "1" if flash_attn else "0"],
                       capture_output=True, timeout=900)
    check(p.returncode == 0, "llama-cpp-python ran: %s" % p.stderr.decode(errors="replace")[-600:])
    if p.returncode != 0:
        return
    ref = json.loads(p.stdout.decode().strip().splitlines()[-1])
    magic, n_ctx, n_vocab, n_chunk, tokens, nv, rows, data = read_base(base)
    check(tokens == ref["tokens"][:n_chunk * n_ctx], "the same tokens as llama.cpp's tokenizer")
    check(n_vocab == ref["n_vocab"], "n_vocab %d, llama.cpp %d" % (n_vocab, ref["n_vocab"]))
    rel = abs(ours_ppl - ref["ppl"]) / ref["ppl"]
    print("%s, flash attention %s" % (os.path.basename(model), "on" if flash_attn else "off"))
    print("PPL: ttychat %.4f, llama-cpp-python %.4f (%.3f%% apart)" % (ours_ppl, ref["ppl"], 100 * rel))
    check(rel < 0.01, "PPL within 1%% of llama-cpp-python's: %.4f vs %.4f" % (ours_ppl, ref["ppl"]))
    ours = base_argmax(base)
    same = sum(1 for a, b in zip(ours, ref["argmax"]) if a == b)
    agree = same / max(1, len(ref["argmax"]))
    print("top-1 agreement with llama-cpp-python: %d/%d = %.2f%%" % (same, len(ref["argmax"]), 100 * agree))
    check(len(ours) == len(ref["argmax"]), "as many rows as llama-cpp-python's")
    check(agree >= min_agree, "top-1 agreement %.2f%% >= %g%%" % (100 * agree, 100 * min_agree))


def check_file(base):
    magic, n_ctx, n_vocab, n_chunk, tokens, nv, rows, data = read_base(base)
    check(magic == b"_logits_", "the logits file's magic")
    check((n_ctx, n_chunk) == (CTX, CHUNKS), "header n_ctx %d, n_chunk %d" % (n_ctx, n_chunk))
    want = 20 + 4 * n_ctx * n_chunk + 2 * nv * rows * n_chunk
    check(len(data) == want, "file size %d, the format's %d" % (len(data), want))
    scale, min_lp = struct.unpack_from("<ff", data, 20 + 4 * n_ctx * n_chunk)
    check(scale > 0 and -60 < min_lp < 0, "first row's scale %g and min log-prob %g" % (scale, min_lp))


def check_round_trip(base):
    rc, out, err = run(["-m", SMOL, "--kl-divergence-base", base, "--kl-divergence", "-t", "2"])
    check(rc == 0, "--kl-divergence on the same model: rc %d %s" % (rc, err[-400:]))
    q, b, kld = stat(out, "Mean PPL(Q)"), stat(out, "Mean PPL(base)"), stat(out, "Mean    KLD")
    top, mx = stat(out, "Same top p"), stat(out, "Maximum KLD")
    print("round trip: PPL(Q) %s, PPL(base) %s, mean KLD %s, max KLD %s, same top %s%%" % (q, b, kld, mx, top))
    check(q is not None and b is not None and abs(q - b) / b < 1e-3, "PPL(Q) == PPL(base)")
    check(kld is not None and abs(kld) < 1e-4 and mx is not None and mx < 1e-3, "KLD about 0")
    check(top == 100.0, "same top token in every row")
    check(re.search(r"^   1 .*\n   2 .*\n   3 .*\n   %d " % CHUNKS, out, re.M) is not None, "a line per chunk")
    for label in ("Median  KLD", "99.0%   KLD", "RMS Δp"):
        check(stat(out, label) is not None, "prints %s" % label)
    return q


def check_other_quant(base, ppl):
    others = [p for p in glob.glob(os.path.join(MODELS, "SmolLM2-135M-Instruct*.gguf")) if p != SMOL]
    if not others:
        print("note: no other SmolLM2 quant in %s: the cross-quant comparison is skipped" % MODELS)
        return
    rc, out, err = run(["-m", others[0], "--kl-divergence-base", base, "--kl-divergence", "-t", "2"])
    check(rc == 0, "--kl-divergence of %s: rc %d %s" % (others[0], rc, err[-400:]))
    kld, top = stat(out, "Mean    KLD"), stat(out, "Same top p")
    print("%s vs Q4_1: mean KLD %s, same top %s%%" % (os.path.basename(others[0]), kld, top))
    check(kld is not None and 0 < kld < 1.0, "a small, non-zero KLD between quants")
    check(stat(out, "Mean PPL(base)") is not None and abs(stat(out, "Mean PPL(base)") - ppl) / ppl < 1e-3,
          "PPL(base) is the Q4_1's")


def bad_base_files(tmp, base):
    with open(base, "rb") as f:
        data = f.read()
    cut = os.path.join(tmp, "cut.bin")
    with open(cut, "wb") as f:
        f.write(data[:len(data) - 1000])
    notlog = os.path.join(SRC, "README.md")
    badtok = os.path.join(tmp, "badtok.bin")
    with open(badtok, "wb") as f:
        f.write(data[:20] + struct.pack("<i", 10 ** 8) + data[24:])
    hugehdr = os.path.join(tmp, "huge.bin")
    with open(hugehdr, "wb") as f:
        f.write(b"_logits_" + struct.pack("<iii", 1 << 20, 1 << 24, 2 ** 31 - 1) + data[20:200])
    for path, word in ((cut, "truncated"), (notlog, "not a logits file"), (badtok, "outside"),
                       (hugehdr, "truncated"), (os.path.join(tmp, "absent.bin"), "No such file")):
        rc, out, err = run(["-m", SMOL, "--kl-divergence-base", path, "--kl-divergence"])
        ok, why = one_error(rc, err, 1, path, word)
        check(ok and out == "", "base file %s refused (%s): %s" % (os.path.basename(path), word, why))
    rc, out, err = run(["-m", SMOL, "--kl-divergence-base", base, "--kl-divergence", "-c", "64"])
    ok, why = one_error(rc, err, 2, base, "128")
    check(ok, "another context refused: %s" % why)
    if os.path.exists(GEMMA):
        rc, out, err = run(["-m", GEMMA, "--kl-divergence-base", base, "--kl-divergence"])
        ok, why = one_error(rc, err, 2, base, "vocabulary")
        check(ok, "another vocabulary refused: %s" % why)


def bad_inputs(tmp, text):
    short = os.path.join(tmp, "short.txt")
    with open(short, "w") as f:
        f.write("Only a few words of text.\n")
    rc, out, err = run(["-m", SMOL, "-f", short, "-c", str(CTX)])
    ok, why = one_error(rc, err, 1, short, "needs at least %d" % (2 * CTX))
    check(ok, "a text too short: %s" % why)
    missing = os.path.join(tmp, "missing.txt")
    rc, out, err = run(["-m", SMOL, "-f", missing])
    ok, why = one_error(rc, err, 1, missing, "No such file")
    check(ok, "a missing text: %s" % why)
    for args, word in ((["-c", "abc"], "-c"), (["-c", "0"], "-c"), (["-b", "999"], "-b"), (["--chunks", "0"], "--chunks"),
                       (["-t", "x"], "-t"), (["--kl-divergence"], "--kl-divergence-base"), ([], "-f")):
        full = ["-m", SMOL] + (["-f", text] if args and args[0] != "--kl-divergence" else []) + args
        rc, out, err = run(full)
        ok, why = one_error(rc, err, 2, word)
        check(ok, "bad arguments %s refused: %s" % (args, why))


def interrupt(tmp, text):
    base = os.path.join(tmp, "interrupted.bin")
    p = subprocess.Popen([BIN, "perplexity", "-m", SMOL, "-f", text, "-c", str(CTX), "-t", "2",
                          "--kl-divergence-base", base], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    got = b""
    end = time.time() + 300
    while b"[1]" not in got and time.time() < end and p.poll() is None:
        got += os.read(p.stdout.fileno(), 64)
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    check(p.returncode == 130, "Ctrl-C: exit %s (130): %s" % (p.returncode, err.decode(errors="replace")[-300:]))
    check(not os.path.exists(base), "the incomplete logits file is removed")


def llama_perplexity_files(tmp, text, base, ppl):
    """llama.cpp's own tool, where tests/bench-vs-llamacpp built it: its PPL
    and each side reading the other's logits file."""
    cache = os.environ.get("TTYCHAT_BENCH_CACHE", os.path.expanduser("~/.cache/ttychat-bench"))
    tool = os.path.join(cache, "llama-build", "bin", "llama-perplexity")
    if not os.access(tool, os.X_OK):
        print("note: no %s: the comparison with llama-perplexity is skipped" % tool)
        return
    theirs = os.path.join(tmp, "llama.bin")
    p = subprocess.run([tool, "-m", SMOL, "-f", text, "-c", str(CTX), "--chunks", str(CHUNKS), "-t", "2",
                        "--kl-divergence-base", theirs], capture_output=True, timeout=900)
    lp, _ = ppl_of(p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))
    print("llama-perplexity: PPL = %s" % lp)
    check(p.returncode == 0 and lp is not None and abs(lp - ppl) / lp < 0.01,
          "PPL within 1%% of llama-perplexity's: %s vs %s" % (ppl, lp))
    if lp is None:
        return
    rc, out, err = run(["-m", SMOL, "--kl-divergence-base", theirs, "--kl-divergence", "-t", "2"])
    b = stat(out, "Mean PPL(base)")
    check(rc == 0 and b is not None and abs(b - lp) / lp < 1e-4, "ttychat reads llama-perplexity's file: %s" % b)
    p = subprocess.run([tool, "-m", SMOL, "-c", str(CTX), "-t", "2", "--kl-divergence-base", base,
                        "--kl-divergence"], capture_output=True, timeout=900)
    b = stat(p.stdout.decode(errors="replace"), "Mean PPL(base)")
    check(p.returncode == 0 and b is not None and abs(b - ppl) / ppl < 1e-4,
          "llama-perplexity reads ttychat's file: %s" % b)


def gemma_vs_llama(tmp, text):
    """Gemma adds BOS: each chunk's first token is replaced by it (leaving
    it out gives 3.5 times the perplexity on this text).  Compared with
    llama.cpp's flash-attention pass, llama-perplexity's default on the
    CPU: the engine rounds queries to f16 as that pass does, and Gemma 3
    is sensitive to it (llama.cpp's own PPL here moves 1.4% between
    flash attention on and off; SmolLM2 0.06%).  Its two passes agree on
    the top token in only 94.8% of these rows (SmolLM2 95.2%), so the
    bound on top-1 agreement is 90% here: a row off by one position or a
    wrong first token falls far below it."""
    if not os.path.exists(GEMMA):
        print("note: %s is absent: the BOS case is not compared" % GEMMA)
        return
    base = os.path.join(tmp, "gemma.bin")
    rc, out, err = run(["-m", GEMMA, "-f", text, "-c", str(CTX), "--chunks", str(CHUNKS), "-t", "2",
                        "--kl-divergence-base", base])
    ppl, unc = ppl_of(out)
    check(rc == 0 and ppl is not None, "gemma perplexity ran: rc %d %s" % (rc, err[-400:]))
    if ppl is not None:
        check_against_llama(GEMMA, text, base, ppl, flash_attn=True, min_agree=0.90)


def main():
    if not os.path.exists(SMOL):
        print("SKIP: %s is absent (scripts/fetch-models)" % SMOL)
        return 77
    tmp = tempfile.mkdtemp(prefix="ttychat-ppl-")
    try:
        ENV["XDG_CONFIG_HOME"] = os.path.join(tmp, "config")
        ENV["XDG_DATA_HOME"] = os.path.join(tmp, "data")
        text = os.path.join(tmp, "text.txt")
        with open(text, "wb") as out:
            for name in ("README.md", "man/ttychat.1"):
                with open(os.path.join(SRC, name), "rb") as f:
                    out.write(f.read())
        base = os.path.join(tmp, "base.bin")
        rc, out, err = run(["-m", SMOL, "-f", text, "-c", str(CTX), "--chunks", str(CHUNKS), "-t", "2",
                            "--kl-divergence-base", base])
        check(rc == 0, "perplexity ran: rc %d %s" % (rc, err[-600:]))
        ppl, unc = ppl_of(out)
        print("ttychat: PPL = %s +/- %s" % (ppl, unc))
        check(ppl is not None and 1 < ppl < 1000 and unc > 0, "a final estimate: %r" % out[-300:])
        check(re.search(r"^\[1\][0-9.]+,\[2\][0-9.]+,\[3\][0-9.]+,\[4\]([0-9.]+),$", out, re.M) is not None,
              "running PPL per chunk: %r" % out[:200])
        if ppl is None:
            return report()
        rc, out2, err = run(["-m", SMOL, "-f", text, "-c", str(CTX), "--chunks", str(CHUNKS), "-t", "2", "-b", "48"])
        p2, _ = ppl_of(out2)
        check(p2 is not None and abs(p2 - ppl) / ppl < 1e-3, "-b 48 without a file gives the same PPL: %s" % p2)
        check_file(base)
        check_against_llama(SMOL, text, base, ppl)
        gemma_vs_llama(tmp, text)
        llama_perplexity_files(tmp, text, base, ppl)
        q = check_round_trip(base)
        check_other_quant(base, q or ppl)
        bad_base_files(tmp, base)
        bad_inputs(tmp, text)
        interrupt(tmp, text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
