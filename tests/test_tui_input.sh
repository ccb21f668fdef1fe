#!/bin/sh
# test_tui_input.sh - the input line and the conversation commands:
# multi-line messages (Alt-Enter, Ctrl-J), a bracketed paste that does not
# send itself line by line, Ctrl-X Ctrl-E through $EDITOR, history with Up,
# /edit (the last message is replaced and answered again), /system, /set
# errors, unknown commands, ? for help, scrolling back with PgUp while a
# reply arrives (the "new output below" marker), /new, and Ctrl-D.

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init

cat >"$TMPD/editor.sh" <<'EOF'
#!/bin/sh
# a stand-in editor: appends to the file it is given
printf ' and from the editor' >>"$1"
EOF
chmod +x "$TMPD/editor.sh"

S=input
tui_start $S 100 24 xterm-256color "EDITOR=$TMPD/editor.sh" "VISUAL=" -- -m "$SMOL" --temp 0 -n 6
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10

# two lines in one message, sent once
tui_type $S "first line"
tui_keys $S M-Enter
tui_type $S "second line"
tui_keys $S C-j
tui_type $S "third line"
tui_wait $S 5 '^  third line'
tui_screen $S | grep -q '^You' && fail "a newline key sent the message"
tui_keys $S Enter
tui_wait $S 30 'max tokens reached'
tui_ready $S 10
[ "$(tui_screen $S | grep -c '^You')" -eq 1 ] || fail "the multi-line message was not one message"
tui_screen $S | grep -q '^  second line' || fail "second line missing"
tui_screen $S | grep -q '^  third line' || fail "third line missing"

# a bracketed paste of two lines stays in the input
$T set-buffer -b p "pasted one
pasted two"
$T paste-buffer -p -b p -t $S
tui_wait $S 5 '^  pasted two'
sleep 0.3
[ "$(tui_screen $S | grep -c '^You')" -eq 1 ] || fail "the paste sent a message"
tui_keys $S C-a C-k C-h C-a C-k

# Ctrl-X Ctrl-E runs the editor on the input
tui_type $S "hello"
tui_keys $S C-x C-e
tui_wait $S 10 '^> hello and from the editor'
tui_keys $S C-a C-k

# /edit: the last message comes back; changing it answers again
tui_send $S "/edit"
tui_wait $S 5 'editing your last message'
tui_wait $S 5 '^  third line'
tui_keys $S End
tui_type $S " edited"
tui_keys $S Enter
tui_wait $S 30 '^  third line edited'
tui_wait $S 30 'max tokens reached'
tui_ready $S 10
[ "$(tui_screen $S | grep -c '^You')" -eq 1 ] || fail "/edit did not replace the message"
[ "$(tui_screen $S | grep -c 'max tokens reached')" -eq 1 ] || fail "/edit did not replace the reply"
tui_screen $S | grep -Eq 'prompt: [1-9][0-9]* reused' || fail "/edit did not reuse the KV prefix"

# commands and their errors
tui_send $S "/system You answer in French."
tui_wait $S 5 'system prompt: You answer in French.'
tui_send $S "/set temp hot"
tui_wait $S 5 "/set temp: 'hot' is not a valid value"
tui_send $S "/frobnicate"
tui_wait $S 5 "unknown command '/frobnicate'"
tui_type $S "?"
tui_wait $S 5 'Ctrl-X Ctrl-E'
tui_keys $S Escape
tui_wait_not $S 5 'Ctrl-X Ctrl-E'

# scrolling back while a reply arrives
tui_send $S "/set max-tokens 120"
tui_wait $S 5 'max-tokens = 120'
tui_send $S "Tell me a long story about a cat."
tui_wait_text $S 60 "Tell me a long story about a cat."
tui_keys $S PPage
tui_wait $S 30 'new output below: End'
tui_keys $S End
tui_wait_not $S 5 'new output below'
tui_ready $S 120
tui_redraw_same $S

# /new empties the conversation
tui_send $S "/new"
tui_wait $S 5 'new conversation'
tui_screen $S | grep -q '^You' && fail "/new kept the old messages"

# input history (readline's, in memory): Up brings back the last line
tui_keys $S Up
tui_wait $S 5 '^> /new'
tui_keys $S C-a C-k

# Ctrl-D on an empty line quits
tui_keys $S C-d
tui_check_restored $S
echo "PASS"
