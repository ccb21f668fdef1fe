#!/bin/sh
# test_stdin_limit.sh - a prompt on stdin may be exactly 64 MiB (issue 24):
# one byte more, and a 100 MB prompt, get the size error (before 128 MiB
# went in and failed later as a template error); 64 MiB itself passes the
# read and fails only on the missing model.  No model needed.
set -u
bin=${TTYCHAT_BIN:-./ttychat}
[ -x "$bin" ] || { echo "SKIP: $bin is not built"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_stdin_limit.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
# prompt BYTES: BYTES of 'a' on stdin to a one-shot run on a missing model
prompt() {
	head -c "$1" /dev/zero | tr '\0' a | CI=true "$bin" -m "$tmp/none.gguf" -p - >"$tmp/out" 2>"$tmp/err"
}
prompt $((64 << 20))
if grep -q "no such model file" "$tmp/err" && ! grep -q "64 MiB" "$tmp/err"; then pass=$((pass + 1)); else
	fail=$((fail + 1)); echo "FAIL: exactly 64 MiB: $(cat "$tmp/err")"; fi
for n in $(((64 << 20) + 1)) 100000000; do
	prompt "$n"
	rc=$?
	if [ "$rc" -ne 0 ] && grep -q "more than 64 MiB" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1)); echo "FAIL: $n bytes: rc=$rc $(cat "$tmp/err")"
	fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
