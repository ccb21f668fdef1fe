#!/bin/sh
# test_inspect.sh - `ttychat inspect` on the real models (text, --json parsed
# by Python's json module, --tensors) and on malformed files (one-line error,
# non-zero exit, nothing on stdout).  The malformed cases always run; the
# real-model cases are skipped (exit 77 at the end) when the models are absent.
set -u

BIN=${TTYCHAT_BIN:-./ttychat}
MODELS=${TTYCHAT_MODELS_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/ttychat/models}
PY=/usr/bin/python3
fails=0
checks=0

if [ ! -x "$BIN" ]; then
	echo "SKIP: $BIN not built"
	exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_inspect.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }

# expect_error NAME FILE [WANT]: non-zero exit, one line on stderr naming FILE
expect_error() {
	"$BIN" inspect "$2" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	lines=$(wc -l <"$tmp/err")
	if [ "$rc" -ne 0 ] && [ "$lines" -eq 1 ] && [ ! -s "$tmp/out" ] &&
		grep -q "^ttychat inspect: $2: " "$tmp/err" &&
		{ [ $# -lt 3 ] || grep -q -- "$3" "$tmp/err"; }; then
		ok
	else
		bad "$1: rc=$rc lines=$lines: $(head -c 300 "$tmp/err")"
	fi
}

# ---- malformed files (always) ----
printf 'GGUG\003\000\000\000' >"$tmp/magic.gguf"
expect_error "bad magic" "$tmp/magic.gguf" "bad magic"
printf 'GGUF\001\000\000\000\000\000\000\000\000\000\000\000' >"$tmp/v1.gguf"
expect_error "version 1" "$tmp/v1.gguf" "version 1"
printf 'GGUF\003\000\000\000\377\377\377\377\377\377\377\377\000\000\000\000\000\000\000\000' >"$tmp/count.gguf"
expect_error "huge tensor count" "$tmp/count.gguf" "tensor count"
: >"$tmp/empty.gguf"
expect_error "empty file" "$tmp/empty.gguf"
expect_error "missing file" "$tmp/does-not-exist.gguf" "No such file"

"$BIN" inspect >/dev/null 2>&1
[ $? -eq 2 ] && ok || bad "no file: exit status should be 2"
"$BIN" inspect "$tmp/magic.gguf" --bogus >/dev/null 2>&1
[ $? -eq 2 ] && ok || bad "unknown flag: exit status should be 2"

# ---- a mixture of experts (a committed random-weight file; always) ----
# the experts line, and the parameters one token reads: every tensor but
# the stacks of experts, whose chosen share (4 of 16) counts
moe="${TTYCHAT_SRCDIR:-.}/tests/fixtures/engine/random/qwen3moe-f16.gguf"
if [ -f "$moe" ]; then
	if "$BIN" inspect "$moe" >"$tmp/moe.txt" 2>&1 && grep -q '^experts  *16, 4 per token, 64 wide$' "$tmp/moe.txt"; then
		ok
	else
		bad "moe text: $(head -c 400 "$tmp/moe.txt")"
	fi
	if "$BIN" inspect --json --tensors "$moe" >"$tmp/moe.json" 2>&1 && $PY - "$tmp/moe.json" <<'PYEOF'; then
import json, sys
j = json.load(open(sys.argv[1]))
n = 1
active = 0
for t in j["tensors"]:
    e = 1
    for d in t["shape"]:
        e *= d
    active += e * 4 // 16 if "_exps." in t["name"] else e
assert j["expert_count"] == 16 and j["expert_used_count"] == 4, j
assert j["active_parameters"] == active < j["parameters"], (j["active_parameters"], active)
PYEOF
		ok
	else
		bad "moe json: $(head -c 400 "$tmp/moe.json")"
	fi
fi

# ---- real models ----
# check_model FILE ARCH N_TENSORS LAYERS VOCAB BOS EOS CTX EMBD HEADS KVHEADS TEMPLATE
n_models=0
check_model() {
	f="$MODELS/$1"
	if [ ! -r "$f" ]; then
		echo "SKIP: $f not present"
		return
	fi
	n_models=$((n_models + 1))

	if "$BIN" inspect "$f" >"$tmp/text" 2>"$tmp/err"; then ok; else bad "$1: text exit $?: $(cat "$tmp/err")"; fi
	for want in "architecture     $2" "layers           $4" "vocab size       $5" \
		"BOS id           $6" "EOS id           $7" "context length   $8" \
		"embedding size   $9" "heads            ${10}" "KV heads         ${11}" \
		"chat template    ${12}" "tensor types:" "parameters" "rope base" "file size"; do
		if grep -q "^$want" "$tmp/text"; then ok; else bad "$1: text lacks '$want'"; fi
	done

	if "$BIN" inspect "$f" --json >"$tmp/json" 2>"$tmp/err"; then ok; else bad "$1: --json exit $?"; fi
	if $PY - "$tmp/json" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "${10}" "${11}" "${12}" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
arch, nt, layers, vocab, bos, eos, ctx, embd, heads, kvh, tmpl = sys.argv[2:]
assert j["architecture"] == arch, j["architecture"]
assert j["n_tensors"] == int(nt)
assert j["block_count"] == int(layers)
assert j["vocab_size"] == int(vocab)
assert j["bos_token_id"] == int(bos) and j["eos_token_id"] == int(eos)
assert j["context_length"] == int(ctx) and j["embedding_length"] == int(embd)
assert j["head_count"] == int(heads) and j["head_count_kv"] == int(kvh)
assert j["chat_template"] == tmpl.startswith("yes")
assert j["rope_freq_base"] > 0
assert sum(t["count"] for t in j["tensor_types"].values()) == int(nt)
assert sum(t["bytes"] for t in j["tensor_types"].values()) == j["tensor_bytes"]
assert j["tensor_bytes"] < j["file_size"]
assert "tensors" not in j
EOF
	then ok; else bad "$1: --json content"; fi

	if "$BIN" inspect "$f" --tensors >"$tmp/tensors" 2>"$tmp/err"; then ok; else bad "$1: --tensors exit $?"; fi
	n=$(grep -c ' offset [0-9]*  size [0-9]*$' "$tmp/tensors")
	[ "$n" -eq "$3" ] && ok || bad "$1: --tensors listed $n of $3 tensors"
	grep -q '^ *[0-9]* token_embd.weight  Q8_0  \[' "$tmp/tensors" && ok || bad "$1: no token_embd line"

	if "$BIN" inspect --json "$f" --tensors >"$tmp/tj" 2>"$tmp/err"; then ok; else bad "$1: --json --tensors exit $?"; fi
	if $PY - "$tmp/tj" "$3" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
ts = j["tensors"]
assert len(ts) == int(sys.argv[2])
assert len({t["name"] for t in ts}) == len(ts)
end = 0
for t in sorted(ts, key=lambda t: t["offset"]):
    assert t["offset"] >= end and 1 <= len(t["shape"]) <= 4
    end = t["offset"] + t["size"]
assert end <= j["file_size"]
EOF
	then ok; else bad "$1: --json --tensors content"; fi

	# a header cut short is a clean one-line error
	head -c 4096 "$f" >"$tmp/cut.gguf"
	expect_error "$1 cut at 4096" "$tmp/cut.gguf" "offset"
}

check_model SmolLM2-135M-Instruct.Q4_1.gguf llama 272 30 49152 1 2 8192 576 9 3 yes
check_model gemma-3-270m-it-Q4_K_M.gguf gemma3 236 18 262144 2 1 32768 640 4 1 no

echo "test_inspect: $checks checks, $fails failed, $n_models real models"
[ "$fails" -eq 0 ] || exit 1
[ "$n_models" -gt 0 ] || exit 77
exit 0
