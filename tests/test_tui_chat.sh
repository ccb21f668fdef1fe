#!/bin/sh
# test_tui_chat.sh - the full-screen chat with the real SmolLM2 model, in
# tmux at 120x40 (sidebar shown): a reply streams while the sidebar shows a
# non-zero decode speed, the prompt's figures and context use; Esc stops a
# reply within a token and the partial reply is kept and marked; /regen
# replaces it reusing the KV prefix; an idle chat uses no CPU; /quit gives
# the terminal back.

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init

S=chat
tui_start $S 120 40 xterm-256color -- -m "$SMOL" --temp 0 -n 400
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
tui_wait $S 5 'F1 help'

# a long reply: stop it once it streams
tui_send $S "Write a long story about a dragon who learns to bake bread."
tui_wait $S 60 'replying, Esc stops'
tui_wait $S 60 'reply +([3-9]|[1-9][0-9]+) tok'
tui_screen $S | grep -Eq 'decode +[0-9]*[1-9][0-9]*\.[0-9] tok/s|decode +0\.[1-9]' || fail "no decode speed while streaming"
tui_screen $S | grep -Eq 'prompt: 0 reused, [1-9][0-9]* new' || fail "no prompt figures while streaming"
tui_screen $S | grep -Eq 'prefill +[0-9.]+ tok/s' || fail "no prefill speed while streaming"
tui_keys $S Escape
tui_wait $S 20 '\[stopped\]'
tui_ready $S 10
stopped_at=$(tui_reply_tokens $S)
[ "${stopped_at:-0}" -lt 400 ] || fail "Esc did not stop the reply ($stopped_at tokens)"
tui_screen $S | grep -Eq '[1-9][0-9]* / 4096 \(' || fail "no context use shown"
tui_screen $S | grep -Eq 'prompt: 0 reused, [1-9][0-9]* new' || fail "no prompt token counts"
tui_screen $S | grep -Eq 'weights +[0-9.]+ MiB' || fail "no weights memory"
tui_screen $S | grep -Eq 'KV cache +[0-9.]+ [KM]iB' || fail "no KV memory"
tui_screen $S | grep -Eq 'free RAM +[0-9.]+ [MG]iB' || fail "no free memory"
tui_screen $S | grep -Eq 'prefill +[0-9.]+ tok/s' || fail "no prefill speed"

# idle: no CPU at all for two seconds
pid=$(tui_pid $S)
[ -n "$pid" ] || fail "cannot find the ttychat process"
t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
sleep 2
t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
echo "idle CPU: $((t1 - t0)) ticks in 2 s"
[ $((t1 - t0)) -le 1 ] || fail "idle ttychat used $((t1 - t0)) clock ticks in 2 s"

# /regen: the stopped reply is replaced, and the prompt comes from the cache
tui_send $S "/set max-tokens 12"
tui_wait $S 5 'max-tokens = 12'
tui_send $S "/regen"
tui_wait_not $S 60 '\[stopped\]'
tui_wait $S 60 '\[max tokens reached\]'
tui_ready $S 10
tui_screen $S | grep -Eq 'prompt: [1-9][0-9]* reused, [1-9][0-9]* new' || fail "regenerating did not reuse the KV cache"
[ "$(tui_screen $S | grep -c '^SmolLM2-135M-Instruct.Q4_1.gguf ')" -eq 1 ] || fail "not exactly one reply"

# a second turn, then the screen must survive a full repaint unchanged
tui_turn $S 60 "Thanks! And what is 2+2?"
tui_redraw_same $S

# help lists the keys and commands from the table
tui_keys $S F1
tui_wait $S 5 'Ctrl-X Ctrl-E'
tui_screen $S | grep -q '/regen' || fail "help does not list /regen"
tui_keys $S Escape
tui_wait_not $S 5 'Ctrl-X Ctrl-E'

tui_send $S "/quit"
tui_check_restored $S
tui_screen $S | grep -q '^EXIT=0$' || fail "exit status was not 0"

# a small context fills up: the engine drops the oldest turns and says so
S=small
tui_start $S 100 40 xterm-256color -- -m "$SMOL" --temp 0 -n 24 -c 160
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
for q in "Name three rivers in Europe, please." "Name three mountains in Asia, please." \
	"Name three deserts in Africa, please." "Name three lakes in America, please." \
	"Name three islands in the Pacific, please."; do
	tui_turn $S 60 "$q"
	tui_screen $S | grep -q 'context full: dropped the' && break
done
tui_screen $S | grep -q 'context full: dropped the [0-9]* oldest message' || fail "no notice of the context shift"
tui_send $S "/quit"
tui_check_restored $S
echo "PASS"
