#!/bin/sh
# test_cuda_bench_dryrun.sh - scripts/bench-cuda --dry-run (make check; no
# GPU, network, numpy or llama.cpp needed): it prints the commands of a
# benchmark run without running them, and exits 0.  Checked: the llama.cpp
# build is a CUDA one, every 1B file is generated and quantised, both
# engines run on the GPU for every file, the copy kernel is measured
# around each file's runs, --no-llama drops llama.cpp, a bad --files name
# is refused, and --help works.
set -u
srcdir=${TTYCHAT_SRCDIR:-..}
script="$srcdir/scripts/bench-cuda"
PYTHON=${PYTHON:-python3}
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
has() { # has PATTERN DESCRIPTION: a line of $out matches
	if printf '%s\n' "$out" | grep -Eq -- "$1"; then ok; else bad "$2"; fi
}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
	echo "SKIP: no $PYTHON"
	exit 77
fi
cache=$(mktemp -d) || exit 1
trap 'rm -rf "$cache"' EXIT

out=$("$PYTHON" "$script" --dry-run --cache "$cache" --ttychat /x/ttychat --membw /x/cuda-membw 2>&1)
rc=$?
[ $rc -eq 0 ] && ok || bad "--dry-run exited $rc: $out"
has 'cmake .*-DGGML_CUDA=ON' "no CUDA build of llama.cpp"
has 'cmake --build .*llama-bench llama-quantize' "no llama-bench/llama-quantize build"
has 'write_1b_f16\(.*llama1b-F16\.gguf\)' "the F16 1B file is not written"
for q in Q4_K_M Q8_0; do
	has "llama-quantize .*llama1b-F16\.gguf .*llama1b-$q\.gguf $q\$" "no $q quantisation"
done
for q in Q4_K_M Q8_0 F16; do
	has "llama-bench -m .*llama1b-$q\.gguf .* -ngl 99\$" "llama-bench not on the GPU for $q"
	has "^\+ /x/ttychat bench -m .*llama1b-$q\.gguf .*--json --device cuda\$" "ttychat bench not on the GPU for $q"
done
n=$(printf '%s\n' "$out" | grep -c '^+ /x/cuda-membw ')
[ "$n" -eq 6 ] && ok || bad "copy-kernel bandwidth measured $n times, not before and after each of 3 files"

out=$("$PYTHON" "$script" --dry-run --no-llama --files 1b-q8_0 --cache "$cache" 2>&1)
[ $? -eq 0 ] && ok || bad "--no-llama --dry-run failed: $out"
if printf '%s\n' "$out" | grep -q 'llama-bench'; then bad "--no-llama still runs llama-bench"; else ok; fi
has 'llama-quantize .*llama1b-Q8_0\.gguf Q8_0$' "--no-llama makes no Q8_0 file"

out=$("$PYTHON" "$script" --dry-run --files 1b-q5_9 --cache "$cache" 2>&1)
[ $? -ne 0 ] && ok || bad "an unknown --files name was accepted"
has 'unknown file name' "no message for an unknown file name"
"$PYTHON" "$script" --help >/dev/null 2>&1 && ok || bad "--help failed"
[ -z "$(ls -A "$cache")" ] && ok || bad "--dry-run wrote into the cache: $(ls -A "$cache")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
