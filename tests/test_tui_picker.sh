#!/bin/sh
# test_tui_picker.sh - F2 lists the models with their size and a fit
# verdict; choosing Gemma 3 (whose GGUF has no chat template, so the engine
# uses its built-in gemma format) reloads while keeping the conversation,
# the next reply comes from Gemma, and the choice is remembered for the
# next start.

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init
[ -r "$GEMMA" ] || skip "no Gemma 3 model in TTYCHAT_MODELS_DIR"

S=picker
tui_start $S 120 40 tmux-256color -- -m "$SMOL" --temp 0 -n 8
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
tui_send $S "My name is Ada. Say hello."
tui_wait $S 60 'max tokens reached'
tui_ready $S 10

tui_keys $S F2
tui_wait $S 10 '─ Models |Models'
tui_wait $S 5 '(Gemma 3 270M|gemma-3-270m).* +gemma3 +268M .* MiB +(fits|tight)'
tui_screen $S | grep -Eq 'SmolLM2.* +llama +135M +Q4_1 [0-9]+%.* MiB +fits' ||
	fail "SmolLM2's row lacks arch, size or fit"
tui_screen $S | grep -Eq 'needs [0-9.]+ MiB \(weights [0-9.]+ MiB \+ KV [0-9.]+ MiB at [0-9]+ tokens\) of [0-9.]+ [MG]iB available' ||
	fail "no memory estimate for the selected model"
# move the selection to Gemma (the details follow the selection)
i=0
while ! tui_screen $S | grep -Eq '^ *│ /.*gemma-3-270m-it-Q4_K_M.gguf'; do
	i=$((i + 1))
	[ $i -le 8 ] || fail "cannot select Gemma in the picker"
	if [ $i -le 4 ]; then tui_keys $S Up; else tui_keys $S Down; fi
	sleep 0.3
done
tui_keys $S Enter
tui_wait $S 60 'loaded (Gemma 3 270M|gemma-3-270m).* \(gemma3'
tui_ready $S 10
tui_wait_not $S 5 '─ Models'
tui_redraw_same $S
tui_screen $S | grep -q 'My name is Ada' || fail "the conversation was not kept"
tui_screen $S | grep -Eq 'gemma3, 268M' || fail "sidebar does not show Gemma"

tui_send $S "What is my name?"
tui_wait $S 90 '^(Gemma 3 270M|gemma-3-270m)'
tui_wait $S 90 'max tokens reached'
tui_ready $S 10
# the whole conversation went to the new model: nothing reused, all new
tui_screen $S | grep -Eq 'prompt: 0 reused, [1-9][0-9]* new' || fail "Gemma did not prefill the conversation"
tui_send $S "/quit"
tui_check_restored $S

# the next start, without -m, comes back with Gemma
S=again
mkdir -p "$TMPD/$S/state"
cp -r "$TMPD/picker/state/." "$TMPD/$S/state/"
tui_start $S 100 30 tmux-256color -- --temp 0 -n 4
tui_wait $S 60 'loaded (Gemma 3 270M|gemma-3-270m)'
tui_send $S "/quit"
tui_check_restored $S
echo "PASS"
