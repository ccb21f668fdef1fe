#!/bin/sh
# test_tui_spec.sh - speculative decoding in the full-screen chat, in tmux
# at 120x40 (sidebar shown): a random-weight model with a quantised copy of
# itself as --draft; after a reply the sidebar names the draft model, counts
# its memory, and shows the Speculative section (drafter, share of guesses
# accepted, tokens per pass).  Then with --spec off no such section.

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init

R="${TTYCHAT_SRCDIR:-.}/tests/fixtures/engine/random"
S=spec
tui_start $S 120 40 xterm-256color -- -m "$R/llama3-f16.gguf" --draft "$R/llama3-q4_0.gguf" --spec draft \
	--temp 0 -n 64
tui_ready $S 60
tui_screen $S | grep -Eq 'draft: ' || fail "the sidebar does not name the draft model"
tui_turn $S 60 "one two three one two three one two three"
tui_screen $S | grep -q 'Speculative' || fail "no Speculative section after a reply"
tui_screen $S | grep -Eq 'draft +[0-9]+% of [1-9][0-9]*' || fail "no acceptance shown"
tui_screen $S | grep -Eq '[0-9]+\.[0-9] tok/pass' || fail "no tokens per pass shown"
tui_screen $S | grep -Eq 'draft +[0-9.]+ [KMG]iB' || fail "no draft memory shown"
tui_send $S "/quit"
sleep 1

S=plain
tui_start $S 120 40 xterm-256color -- -m "$R/llama3-f16.gguf" --spec off --temp 0 -n 16
tui_ready $S 60
tui_turn $S 60 "one two three one two three"
tui_screen $S | grep -q 'Speculative' && fail "a Speculative section with --spec off"
echo "ok"
exit 0
