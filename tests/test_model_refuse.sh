#!/bin/sh
# Models the engine must refuse with one clear line (and exit status 3)
# before any large allocation: unsupported architecture, zero heads, heads
# not a multiple of KV heads, missing tensors, shapes that disagree with the
# hyper-parameters, a truncated file, metadata that changes the computation
# in a way the engine does not implement (a rope scaling type, experts,
# other head sizes on sliding-window layers), Gemma 4's required keys and
# shapes, a tensor no block of the
# family reads, inconsistent expert counts, special token ids outside the
# vocabulary, an embedding with more rows than tokens, a model too big for the
# memory.  The files are rewritten from a committed random-weight model
# with the PyPI gguf package (tests/ggufcopy.py; skip without it).
set -u
: "${TTYCHAT_BIN:?}" "${TTYCHAT_SRCDIR:?}"
PY=python3
$PY -c 'import gguf, numpy' 2>/dev/null || { echo "SKIP: python3 lacks the gguf package"; exit 77; }
src="$TTYCHAT_SRCDIR/tests/fixtures/engine/random/llama-tied-f32.gguf"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

$PY - "$src" "$tmp" <<'PYEOF' || { echo "FAIL: cannot write test files"; exit 1; }
import os, sys
sys.path.insert(0, os.path.join(os.environ["TTYCHAT_SRCDIR"], "tests"))
from gguf import GGUFReader, GGUFWriter, GGUFValueType
from ggufcopy import copy_kv, copy_tensors, finish
src, out = sys.argv[1], sys.argv[2]
r = GGUFReader(src)

def write(name, kv_patch=None, drop_tensor=None, arch=None, extra=None, add_tensor=None):
    w = GGUFWriter(f"{out}/{name}.gguf", arch or "llama")
    copy_kv(r, w, arch or "llama", kv_patch)
    for k, (v, vt) in (extra or {}).items():
        w.add_key_value(k, v, vt)
    copy_tensors(r, w, lambda n: n != drop_tensor)
    if add_tensor:
        import numpy as np
        w.add_tensor(add_tensor[0], np.zeros(add_tensor[1], dtype=np.float32))
    finish(w)

write("arch", arch="mamba")
write("zeroheads", kv_patch={"llama.attention.head_count": 0})
write("gqa", kv_patch={"llama.attention.head_count": 3, "llama.attention.head_count_kv": 2})
write("missing", drop_tensor="blk.1.ffn_up.weight")
write("shape", kv_patch={"llama.feed_forward_length": 200})
write("ropetype", extra={"llama.rope.scaling.type": ("dynamic", GGUFValueType.STRING),
                          "llama.rope.scaling.factor": (2.0, GGUFValueType.FLOAT32)})
write("experts", extra={"llama.expert_count": (8, GGUFValueType.UINT32)})
write("swahead", extra={"llama.attention.key_length_swa": (16, GGUFValueType.UINT32)})
# a tensor llama's blocks do not read (an output bias): refused, not ignored
write("extratensor", add_tensor=("blk.0.attn_output.bias", 128))
# a mixture with more experts per token than experts
write("moeused", arch="qwen3moe", extra={"qwen3moe.expert_count": (4, GGUFValueType.UINT32),
                                          "qwen3moe.expert_used_count": (8, GGUFValueType.UINT32)})
write("ok")
# special token ids outside the vocabulary (512 tokens), and an embedding
# with more rows than the vocabulary has tokens
for role in ("bos", "eos", "eot", "unknown", "padding"):
    key = f"tokenizer.ggml.{role}_token_id"
    w = GGUFWriter(f"{out}/tok_{role}.gguf", "llama")
    copy_kv(r, w, "llama", drop=(key,))
    w.add_uint32(key, 512)
    copy_tensors(r, w)
    finish(w)
import numpy as np
w = GGUFWriter(f"{out}/embdrows.gguf", "llama")
copy_kv(r, w, "llama")
copy_tensors(r, w, lambda n: n != "token_embd.weight")
te = [t for t in r.tensors if t.name == "token_embd.weight"][0]
n_embd = int(te.shape[0])
w.add_tensor("token_embd.weight", np.concatenate([te.data.reshape(512, n_embd), np.zeros((88, n_embd), np.float32)]))
finish(w)

# Gemma 4 (the 31B's block): the per-layer window pattern is required, the
# shared-KV layers must leave a layer of each kind, a fused attn_qkv (not
# read) is refused
g4 = GGUFReader(os.path.join(os.path.dirname(src), "gemma4-31b-f16.gguf"))
def write_g4(name, patch=None, drop=(), add_tensor=None):
    w = GGUFWriter(f"{out}/{name}.gguf", "gemma4")
    copy_kv(g4, w, "gemma4", patch, drop)
    copy_tensors(g4, w)
    if add_tensor:
        import numpy as np
        w.add_tensor(add_tensor[0], np.zeros(add_tensor[1], dtype=np.float32))
    finish(w)
write_g4("g4pattern", drop=("gemma4.attention.sliding_window_pattern",))
write_g4("g4shared", patch={"gemma4.attention.shared_kv_layers": 5})
write_g4("g4qkv", add_tensor=("blk.0.attn_qkv.weight", (256, 64)))
write_g4("g4ok")
PYEOF
head -c 3000 "$src" > "$tmp/truncated.gguf"

pass=0 fail=0
check() { # name expected-text
	f="$tmp/$1.gguf"
	"$TTYCHAT_BIN" -m "$f" -p hi -n 1 >"$tmp/out" 2>"$tmp/err"
	rc=$?
	lines=$(wc -l <"$tmp/err")
	if [ $rc -eq 3 ] && [ "$lines" -eq 1 ] && grep -q "$f" "$tmp/err" && grep -qi "$2" "$tmp/err"; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL $1: rc=$rc lines=$lines: $(cat "$tmp/err")"
	fi
}
check arch "architecture 'mamba' is not supported (supported: llama, .*qwen3moe.*gpt-oss"
check zeroheads "head_count': 0 outside"
check gqa "not a multiple"
check missing "blk.1.ffn_up.weight' is missing"
check shape "ffn_.*shape"
check ropetype "rope.scaling.type': rope scaling 'dynamic' is not supported"
check experts "expert_count': 8 experts"
check swahead "_length_swa"
check extratensor "tensor 'blk.0.attn_output.bias' is not part of the llama architecture"
check moeused "expert_used_count': 8 outside \[1, 4\]"
check truncated "truncated\|past the end\|beyond"
check g4pattern "gemma4.attention.sliding_window_pattern': missing"
check g4shared "shared_kv_layers': 5 of 6 layers"
check g4qkv "tensor 'blk.0.attn_qkv.weight' is not part of the gemma4 architecture"
for role in bos eos eot unknown padding; do
	check tok_$role "tokenizer.ggml.${role}_token_id is 512, outside the vocabulary (512 tokens)"
done
check embdrows "vocabulary has 512 tokens but token_embd.weight 600 rows"
# a model that cannot fit the memory this process may take (here a limit
# of 16 MiB, as a cgroup would set it) is refused with the numbers
TTYCHAT_MEM_LIMIT=16M "$TTYCHAT_BIN" -m "$tmp/ok.gguf" -p hi -n 1 >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 3 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "needs [0-9]* MiB of memory (weights .* KV cache .*), 16 MiB available" "$tmp/err"; then
	pass=$((pass + 1))
else
	fail=$((fail + 1))
	echo "FAIL memory: rc=$rc: $(cat "$tmp/err")"
fi
# the unmodified copies load and answer
for ok in ok g4ok; do
	if "$TTYCHAT_BIN" -m "$tmp/$ok.gguf" -p hi -n 4 --temp 0 >"$tmp/out" 2>"$tmp/err"; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL $ok: $(cat "$tmp/err")"
	fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
