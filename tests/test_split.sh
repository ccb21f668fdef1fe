#!/bin/sh
# Split models (llama.cpp's gguf-split layout: PREFIX-00001-of-0000N.gguf,
# split.no / split.count / split.tensors.count keys, each part a whole GGUF
# file with its own tensor data): the first part loads the whole model and
# computes what the single file computes; a missing part, a part of another
# split, a later part given instead of the first, or a first part that is
# not named by the pattern is one clear line and exit status 3.  The parts
# are written from a committed random-weight model with the PyPI gguf
# package (tests/ggufcopy.py; skip without it).
set -u
: "${TTYCHAT_BIN:?}" "${TTYCHAT_SRCDIR:?}"
PY=python3
$PY -c 'import gguf, numpy' 2>/dev/null || { echo "SKIP: python3 lacks the gguf package"; exit 77; }
src="$TTYCHAT_SRCDIR/tests/fixtures/engine/random/llama3-q4_k_m.gguf"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

$PY - "$src" "$tmp" <<'PYEOF' || { echo "FAIL: cannot write test files"; exit 1; }
import os, sys
sys.path.insert(0, os.path.join(os.environ["TTYCHAT_SRCDIR"], "tests"))
from gguf import GGUFReader, GGUFWriter, GGUFValueType
from ggufcopy import copy_kv, copy_tensors, finish
src, out = sys.argv[1], sys.argv[2]
r = GGUFReader(src)

def split(prefix, groups, count=None, nos=None, skip=()):
    count = count or len(groups)
    ntens = sum(len(g) for g in groups)
    for i, names in enumerate(groups):
        if i in skip:
            continue
        w = GGUFWriter("%s-%05d-of-%05d.gguf" % (prefix, i + 1, count), "llama")
        if i == 0:
            copy_kv(r, w)
            w.add_key_value("split.tensors.count", ntens, GGUFValueType.INT32)
        w.add_key_value("split.no", (nos or {}).get(i, i), GGUFValueType.UINT16)
        w.add_key_value("split.count", count, GGUFValueType.UINT16)
        copy_tensors(r, w, lambda n: n in names)
        finish(w)

names = [t.name for t in r.tensors]
thirds = [names[:5], names[5:14], names[14:]]
split(out + "/good", thirds)
split(out + "/missing", thirds, skip=(2,))
split(out + "/wrongno", thirds, nos={1: 2})
split(out + "/twice", [names[:5], names[4:14], names[14:]])
import shutil
shutil.copy(out + "/good-00001-of-00003.gguf", out + "/renamed.gguf")
PYEOF

pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# the whole file and its split give the same logits: the split's full
# distributions against the whole file's (ttychat perplexity's logits
# file) differ by nothing, and the greedy text is the same
text="$TTYCHAT_SRCDIR/README.md"
"$TTYCHAT_BIN" perplexity -m "$src" -f "$text" -c 64 --chunks 2 -t 2 --kl-divergence-base "$tmp/base" \
	>"$tmp/ppl1" 2>"$tmp/err1" || bad "whole: $(cat "$tmp/err1")"
"$TTYCHAT_BIN" perplexity -m "$tmp/good-00001-of-00003.gguf" --kl-divergence-base "$tmp/base" --kl-divergence -t 2 \
	>"$tmp/ppl2" 2>"$tmp/err2" || bad "split: $(cat "$tmp/err2")"
if grep -Eq 'Same top p: *100\.000' "$tmp/ppl2" && grep -Eq 'Maximum KLD: *-?0\.0000' "$tmp/ppl2"; then
	ok
else
	bad "split logits differ: $(grep -E 'KLD|Same top' "$tmp/ppl2" | tr '\n' ' ')"
fi
"$TTYCHAT_BIN" -m "$src" -p "Once upon a time" -n 24 --temp 0 >"$tmp/whole" 2>"$tmp/err1" || bad "whole: $(cat "$tmp/err1")"
"$TTYCHAT_BIN" -m "$tmp/good-00001-of-00003.gguf" -p "Once upon a time" -n 24 --temp 0 >"$tmp/split" 2>"$tmp/err2" ||
	bad "split: $(cat "$tmp/err2")"
if [ -s "$tmp/whole" ] && cmp -s "$tmp/whole" "$tmp/split"; then ok; else bad "split text differs: '$(cat "$tmp/whole")' vs '$(cat "$tmp/split")'"; fi
# `ttychat inspect` counts the tensors and bytes of every part
n_whole=$($PY -c "import gguf,sys; print(len(gguf.GGUFReader(sys.argv[1]).tensors))" "$src")
"$TTYCHAT_BIN" inspect --json "$tmp/good-00001-of-00003.gguf" >"$tmp/inspect" 2>&1 &&
	$PY - "$tmp/inspect" "$n_whole" <<'PYEOF' && ok || bad "inspect: $(head -c 300 "$tmp/inspect")"
import json, sys
j = json.load(open(sys.argv[1]))
n = j.get("n_tensors", len(j.get("tensors", [])))
sys.exit(0 if int(n) == int(sys.argv[2]) else 1)
PYEOF

check() { # file expected-text
	"$TTYCHAT_BIN" -m "$1" -p hi -n 1 >"$tmp/out" 2>"$tmp/err"
	rc=$?
	lines=$(wc -l <"$tmp/err")
	if [ $rc -eq 3 ] && [ "$lines" -eq 1 ] && grep -q "$1" "$tmp/err" && grep -qi "$2" "$tmp/err"; then
		ok
	else
		bad "$1: rc=$rc lines=$lines: $(cat "$tmp/err")"
	fi
}
check "$tmp/missing-00001-of-00003.gguf" "part 3 of 3.*No such file"
check "$tmp/wrongno-00001-of-00003.gguf" "is not part 2 of 3"
check "$tmp/twice-00001-of-00003.gguf" "in two parts"
check "$tmp/good-00002-of-00003.gguf" "part 2 of 3 of a split model: open the first part"
check "$tmp/renamed.gguf" "not named PREFIX-00001-of-00003.gguf"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
