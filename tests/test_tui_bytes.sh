#!/bin/sh
# test_tui_bytes.sh - what a streamed reply costs on a slow link: every
# byte ttychat writes to the terminal during a whole turn (the user's line,
# the reply, the sidebar or status updates, the scrolling) is captured from
# the pty with tmux pipe-pane and divided by the tokens generated.  The
# pane is filled with an earlier reply first so that the measured reply
# scrolls.  Must stay under 64 bytes per token, at 100x24 with the sidebar
# (xterm-256color) and at 80x24 with the status line (TERM=linux).

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init
# the figure does not depend on the sanitizers, which only make it slow
ldd "$TTYCHAT_BIN" 2>/dev/null | grep -q libasan && skip "sanitizer build (bytes per token are measured in a plain build)"

LIMIT=64

measure() {
	local S=$1 term=$2 cols=$3 rows=$4
	tui_start $S "$cols" "$rows" "$term" -- -m "$SMOL" --temp 0 -n 80
	tui_wait $S 60 'loaded SmolLM2'
	tui_ready $S 10
	tui_turn $S 120 "Write a long story about a lighthouse keeper and a storm."
	tui_send $S "/set max-tokens 120"
	tui_wait $S 5 'max-tokens = 120'
	$T pipe-pane -t $S -o "cat >'$TMPD/$S.out'"
	tui_turn $S 120 "Continue the story with more details."
	sleep 0.3
	$T pipe-pane -t $S
	local bytes tokens
	bytes=$(wc -c <"$TMPD/$S.out")
	tokens=$(tui_reply_tokens $S)
	[ "${tokens:-0}" -ge 40 ] || fail "$S: the reply was too short to measure (${tokens:-?} tokens)"
	echo "$S ($term ${cols}x$rows): $bytes bytes for $tokens tokens = $((bytes / tokens)) bytes/token"
	cp "$TMPD/$S.out" "${TUI_BYTES_KEEP:-/dev/null}.$S" 2>/dev/null
	[ $((bytes / tokens)) -lt $LIMIT ] || fail "$S: $((bytes / tokens)) bytes per token (limit $LIMIT)"
	tui_send $S "/quit"
	tui_check_restored $S
}

measure wide xterm-256color 100 24
measure narrow linux 80 24
echo "PASS"
