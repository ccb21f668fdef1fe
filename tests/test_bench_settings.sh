#!/bin/sh
# test_bench_settings.sh - `ttychat bench` decides the model's settings as
# the chat does (src/session.h): a models.d entry's threads and device
# apply under the flags, settings.json's under the entry's; a broken
# settings.json is an error as in the chat; -b past the engine's largest
# prefill batch is a usage error.  Before issue 14 bench read neither file.
# Needs SmolLM2 (exit 77 without it).
set -u
BIN=${TTYCHAT_BIN:-./ttychat}
MODELS=${TTYCHAT_MODELS_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/ttychat/models}
SMOL="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -x "$BIN" ] || { echo "SKIP: $BIN not built"; exit 77; }
[ -f "$SMOL" ] || { echo "SKIP: $SMOL absent (run scripts/fetch-models)"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_bench_settings.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
export XDG_CONFIG_HOME="$tmp/config" XDG_STATE_HOME="$tmp/state"
mkdir -p "$XDG_CONFIG_HOME/ttychat/models.d"
fails=0 checks=0
check() { # description, then a command that must succeed
	checks=$((checks + 1))
	desc=$1
	shift
	if "$@"; then :; else echo "FAIL: $desc"; fails=$((fails + 1)); fi
}
# the thread counts of a --json run, one per row
threads() { "$BIN" bench -p 4 -n 2 -r 1 --json "$@" 2>"$tmp/err" | sed -n 's/.*"n_threads":[[:space:]]*\([0-9]*\).*/\1/p' | sort -u | tr '\n' ' '; }

printf '{"name": "tsmol", "file": "%s", "threads": 1, "device": "cpu"}\n' "$SMOL" \
	>"$XDG_CONFIG_HOME/ttychat/models.d/tsmol.json"
check "models.d threads 1 (got '$(threads -m tsmol)')" test "$(threads -m tsmol)" = "1 "
check "-t over models.d (got '$(threads -m tsmol -t 2)')" test "$(threads -m tsmol -t 2)" = "2 "
out=$("$BIN" bench -m tsmol -p 4 -n 2 -r 1 --json 2>/dev/null)
check "models.d device cpu: backend cpu" sh -c 'printf "%s" "$1" | grep -q "\"backend\":[[:space:]]*\"cpu\""' sh "$out"
printf '{"threads": 2}\n' >"$XDG_CONFIG_HOME/ttychat/settings.json"
check "settings.json threads under a path" test "$(threads -m "$SMOL")" = "2 "
check "models.d over settings.json" test "$(threads -m tsmol)" = "1 "
printf '{"threads": "x"}\n' >"$XDG_CONFIG_HOME/ttychat/settings.json"
"$BIN" bench -m tsmol -p 4 -n 2 -r 1 >"$tmp/out" 2>"$tmp/err"
rc=$?
check "broken settings.json: error naming it (rc $rc)" sh -c '[ $1 -ne 0 ] && grep -q "settings.json" "$2" && [ ! -s "$3" ]' \
	sh $rc "$tmp/err" "$tmp/out"
rm -f "$XDG_CONFIG_HOME/ttychat/settings.json"
"$BIN" bench -m tsmol -p 4 -n 2 -r 1 -b 257 >"$tmp/out" 2>"$tmp/err"
rc=$?
check "-b 257: usage error (rc $rc)" sh -c '[ $1 -eq 2 ] && grep -q -- "-b" "$2"' sh $rc "$tmp/err"
out=$("$BIN" bench -m tsmol -p 20 -n 2 -r 1 -b 8 --json 2>/dev/null)
check "-b 8: n_batch 8" sh -c 'printf "%s" "$1" | grep -q "\"n_batch\":[[:space:]]*8"' sh "$out"
echo "$((checks - fails)) passed, $fails failed"
[ $fails -eq 0 ]
