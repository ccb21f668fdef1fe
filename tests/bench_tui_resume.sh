#!/bin/sh
# bench_tui_resume.sh - time to first token when the full-screen chat
# resumes a long conversation (about 2,000 tokens with SmolLM2): with its
# KV cache restored from the encrypted snapshot, and re-prefilled (the
# snapshot removed).  The conversation is built with one-shot --save /
# --continue; two copies of the data directory differ only in kv/.  The
# figures are what the chat's sidebar shows for the first turn.
#
#   TTYCHAT_BIN=build/ttychat TTYCHAT_MODELS_DIR=... tests/bench_tui_resume.sh [TURNS]
#
# Not part of make check (it takes a minute); prints one line per case.

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init

TURNS=${1:-4}
printf 'bench passphrase\n' >"$TMPD/pass"
chmod 600 "$TMPD/pass"
mkdir -p "$TMPD/a/data" "$TMPD/a/state" "$TMPD/a/config"

# a long user message (about 450 tokens) for turn N
message() {
	i=0
	printf 'Part %s of my notes. ' "$1"
	while [ $i -lt 14 ]; do
		printf 'On day %s the river near the old mill rose by %s centimetres, the miller wrote, and the %s geese crossed the field again. ' \
			"$((i + 1))" "$((i * 7 % 31 + 3))" "$((i % 5 + 2))"
		i=$((i + 1))
	done
	printf 'Please just say OK.'
}

run1() {
	env XDG_DATA_HOME="$TMPD/a/data" XDG_STATE_HOME="$TMPD/a/state" XDG_CONFIG_HOME="$TMPD/a/config" \
		TTYCHAT_PASSPHRASE_FILE="$TMPD/pass" "$TTYCHAT_BIN" -m "$SMOL" --temp 0 -n 12 "$@"
}

id=$(run1 -p "$(message 1)" --save --json 2>/dev/null | sed -n 's/.*"conversation": *"\([0-9a-f]*\)".*/\1/p' | tail -1)
[ -n "$id" ] || fail "could not save the first turn"
t=2
while [ $t -le "$TURNS" ]; do
	run1 -p "$(message $t)" --continue "$id" >/dev/null 2>&1 || fail "turn $t"
	t=$((t + 1))
done
ls "$TMPD/a/data/ttychat/kv/"*/*.kv >/dev/null 2>&1 || fail "no snapshot was filed"
cp -a "$TMPD/a" "$TMPD/b"
rm -rf "$TMPD/b/data/ttychat/kv/"*

for case in a b; do
	S=$case
	TUI_DIRS=$case
	export TUI_DIRS
	tui_start $S 120 40 xterm-256color TTYCHAT_PASSPHRASE_FILE=$TMPD/pass -- --temp 0 -n 12
	tui_wait $S 60 'loaded SmolLM2'
	tui_ready $S 10
	# the snapshot (if any) is imported right after the load
	sleep 1
	tui_turn $S 120 "Thanks. Summarise my notes in one line."
	line=$(tui_screen $S | sed -n 's/.*prompt: \([0-9]*\) reused, \([0-9]*\) new.*/\1 reused, \2 new/p' | head -1)
	ttft=$(tui_screen $S | sed -n 's/.*1st tok *\([0-9][0-9]*\) ms.*/\1/p' | head -1)
	pf=$(tui_screen $S | sed -n 's/.*prefill *\([0-9.]*\) tok\/s.*/\1/p' | head -1)
	[ $case = a ] && what="KV restored " || what="re-prefilled"
	echo "$what: first token ${ttft:-?} ms, prompt $line, prefill ${pf:--} tok/s"
	tui_send $S "/quit"
	tui_check_restored $S
done
