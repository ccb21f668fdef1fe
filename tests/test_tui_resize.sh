#!/bin/sh
# test_tui_resize.sh - resizing at any moment, while a reply streams:
# 120x40 with the sidebar, down to 40x12 (the sidebar collapses into the
# status line), below that ("terminal too small"), and back; the reply keeps
# streaming throughout, and at the end the screen equals a full repaint.

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init

S=resize
tui_start $S 120 40 xterm-256color -- -m "$SMOL" --temp 0 -n 600
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
tui_send $S "Tell me a long story about the sea, with many details."
tui_wait $S 60 'replying, Esc stops'
tui_wait $S 60 'reply +[1-9][0-9]* tok'

$T resize-window -t $S -x 40 -y 12
tui_wait $S 10 'tok/s \| ctx [0-9]+/4096|ctx [0-9]+/4096'
tui_screen $S | grep -q '^ replying' || fail "the reply was not streaming any more when resized"
tui_screen $S | grep -q 'Speed' && fail "the sidebar did not collapse at 40x12"
lines=$(tui_screen $S | wc -l)
[ "$lines" -eq 12 ] || fail "expected 12 rows, got $lines"

$T resize-window -t $S -x 39 -y 11
tui_wait $S 10 'terminal too small'
tui_wait $S 10 '39x11, need 40x12'
$T resize-window -t $S -x 60 -y 8
tui_wait $S 10 '60x8, need 40x12'

$T resize-window -t $S -x 120 -y 40
tui_wait $S 10 'Speed'
tui_wait_not $S 5 'terminal too small'
# the reply went on meanwhile; stop it and let the screen settle
tui_keys $S Escape
tui_wait $S 30 'max tokens reached|\[stopped\]'
tui_ready $S 30
tui_redraw_same $S

# and once more, idle, to a narrow width: wrapped lines reflow
$T resize-window -t $S -x 50 -y 20
tui_wait $S 10 'ctx [0-9]+/4096'
tui_redraw_same $S
$T resize-window -t $S -x 120 -y 40
tui_wait $S 10 'Speed'
tui_redraw_same $S

tui_keys $S C-c
tui_check_restored $S
echo "PASS"
