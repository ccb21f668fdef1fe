#!/bin/sh
# test_tui_md.sh - a reply's Markdown in the real binary, in tmux: the
# model "says" a heading, a list, a table and a code block (through the
# TTYCHAT_TEST_INJECT hook), and they show rendered (no '#', bullets, a
# table rule, the code block's language above it); with NO_COLOR the
# markers stay; /copy code puts the block on the clipboard with OSC 52,
# which tmux (set-clipboard on) turns into a paste buffer.

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init

INJECT='# Title\n\nSome **bold** text.\n\n- one\n- two\n\n| key | value |\n|-----|-------|\n| a | 1 |\n\n\x60\x60\x60c\nint main(void) { return 0; }\n\x60\x60\x60\n\n'

S=md
tui_start $S 100 40 xterm-256color "TTYCHAT_TEST_INJECT='$INJECT'" -- -m "$SMOL" --temp 0 -n 1
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
$T set -g set-clipboard on
tui_send $S "Hi"
tui_wait $S 60 'max tokens reached'
tui_ready $S 10
tui_wait_text $S 5 "Title"
tui_screen $S | grep -q '^  # Title' && fail "the heading kept its marker"
tui_wait_text $S 5 "Some bold text."
tui_wait_text $S 5 "$(printf '\342\200\242') one"
tui_wait_text $S 5 "key $(printf '\342\224\202') value"
tui_screen $S | grep -q "^  $(printf '\342\224\200\342\224\200\342\224\200\342\224\200\342\224\274')" || fail "no table rule"
tui_wait_text $S 5 "c"
tui_wait_text $S 5 "int main(void) { return 0; }"
tui_screen $S | grep -q '```' && fail "a code fence shows"
tui_send $S "/copy code"
tui_wait $S 5 'copied the last code block'
i=0
until $T show-buffer 2>/dev/null | grep -qxF 'int main(void) { return 0; }'; do
	i=$((i + 1))
	[ $i -lt 30 ] || fail "tmux got no OSC 52 for /copy code ($($T show-buffer 2>&1 | head -c 200))"
	sleep 0.1
done
tui_send $S "/copy"
tui_wait $S 5 'copied the last reply'
$T show-buffer | grep -q '^# Title' || fail "/copy did not copy the reply's Markdown"
tui_send $S "/quit"
tui_check_restored $S

# no colours: the markers stay so that the text reads the same
S=plain
tui_start $S 100 40 xterm-256color NO_COLOR=1 "TTYCHAT_TEST_INJECT='$INJECT'" -- -m "$SMOL" --temp 0 -n 1
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
tui_send $S "Hi"
tui_wait $S 60 'max tokens reached'
tui_ready $S 10
tui_wait_text $S 5 "# Title"
tui_wait_text $S 5 "Some **bold** text."
tui_wait_text $S 5 '- one'
tui_wait_text $S 5 '```c'
tui_send $S "/quit"
tui_check_restored $S
echo "PASS"
