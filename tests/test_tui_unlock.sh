#!/bin/sh
# test_tui_unlock.sh - the history passphrase in the full-screen chat, in
# tmux: a new store asks for a passphrase on the screen (twice, echo off;
# an empty one only after a yes); a wrong one from TTYCHAT_PASSPHRASE_FILE
# or typed is said plainly and asked again, and changes no file; Esc goes
# on without history (and says so), the right passphrase opens the last
# conversation, Ctrl-C quits and gives the terminal back; a store that
# cannot be opened leaves a working chat that says history is off.

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init

printf 'pass one\n' >"$TMPD/right"
printf 'not it\n' >"$TMPD/wrong"
chmod 600 "$TMPD/right" "$TMPD/wrong"
TUI_DIRS=store
export TUI_DIRS

# what the store holds, to compare after failed unlocks
digest() {
	(cd "$TUI_DATA/ttychat" && find . -type f | sort | xargs sha256sum)
}

# 1. a new store, no passphrase in the environment: chosen on the screen
S=new
tui_start $S 100 30 xterm-256color TTYCHAT_PASSPHRASE_FILE= -- -m "$SMOL" --temp 0 -n 8
tui_wait $S 20 'New encrypted history'
tui_wait $S 5 'New passphrase:'
tui_type $S "pass one"
tui_keys $S Enter
tui_wait $S 5 'Repeat it:'
tui_screen $S | grep -q 'pass one' && fail "the passphrase was shown"
tui_type $S "pass two"
tui_keys $S Enter
tui_wait $S 5 'The two passphrases differ'
# an empty one asks first; "n" goes back
tui_keys $S Enter
tui_wait $S 5 'Keep the history without one'
tui_keys $S n
tui_wait $S 5 'New passphrase:'
tui_type $S "pass one"
tui_keys $S Enter
tui_wait $S 5 'Repeat it:'
tui_type $S "pass one"
tui_keys $S Enter
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
tui_turn $S 60 "Hello from the unlock test."
tui_send $S "/quit"
tui_check_restored $S
# the command line opens it with that passphrase, and only with it
env XDG_DATA_HOME="$TUI_DATA" TTYCHAT_PASSPHRASE_FILE="$TMPD/right" "$TTYCHAT_BIN" history list |
	grep -q 'Hello from the unlock test' || fail "the store was not made with the typed passphrase"
env XDG_DATA_HOME="$TUI_DATA" TTYCHAT_PASSPHRASE_FILE="$TMPD/wrong" "$TTYCHAT_BIN" history list >/dev/null 2>&1 &&
	fail "the store opens with a wrong passphrase"
digest >"$TMPD/before"

# 2. a wrong passphrase from the environment, then a wrong one typed, then Esc
S=wrong
tui_start $S 100 30 xterm-256color TTYCHAT_PASSPHRASE_FILE=$TMPD/wrong -- -m "$SMOL" --temp 0 -n 8
tui_wait $S 30 'passphrase from TTYCHAT_PASSPHRASE_FILE is wrong'
tui_wait $S 5 'Passphrase:'
tui_type $S "still not it"
tui_keys $S Enter
tui_wait $S 30 'Wrong passphrase. Try again.'
tui_screen $S | grep -q 'still not it' && fail "the typed passphrase was shown"
tui_keys $S Escape
tui_wait $S 10 'history is off'
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
tui_turn $S 60 "This is not saved."
tui_keys $S F3
tui_wait $S 5 'there are no saved'
tui_send $S "/quit"
tui_check_restored $S
digest >"$TMPD/after"
cmp -s "$TMPD/before" "$TMPD/after" || fail "a failed unlock changed the store: $(diff "$TMPD/before" "$TMPD/after")"

# 3. wrong from the environment, right when typed: the last conversation
S=right
tui_start $S 100 30 xterm-256color TTYCHAT_PASSPHRASE_FILE=$TMPD/wrong -- -m "$SMOL" --temp 0 -n 8
tui_wait $S 30 'passphrase from TTYCHAT_PASSPHRASE_FILE is wrong'
tui_type $S "pass one"
tui_keys $S Enter
tui_wait $S 30 'conversation "Hello from the unlock test.'
tui_wait_text $S 10 "Hello from the unlock test."
tui_wait $S 60 'loaded SmolLM2'
tui_send $S "/quit"
tui_check_restored $S

# 4. Ctrl-C at the passphrase quits
digest >"$TMPD/before"
S=quit
tui_start $S 100 30 xterm-256color TTYCHAT_PASSPHRASE_FILE= -- -m "$SMOL" --temp 0 -n 8
tui_wait $S 30 'Unlock history'
tui_keys $S C-c
tui_check_restored $S
tui_screen $S | grep -q '^EXIT=130$' || fail "Ctrl-C at the passphrase: exit status not 130"
digest >"$TMPD/after"
cmp -s "$TMPD/before" "$TMPD/after" || fail "quitting at the passphrase changed the store"
# 5. a store that cannot be opened: the chat works and says history is off
: >"$TMPD/not-a-dir"
S=off
tui_start $S 100 30 xterm-256color XDG_DATA_HOME=$TMPD/not-a-dir/data -- -m "$SMOL" --temp 0 -n 8
tui_wait $S 30 'history is off: '
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
tui_turn $S 60 "Still chatting without history."
tui_send $S "/quit"
tui_check_restored $S
tui_screen $S | grep -q '^EXIT=0$' || fail "exit status was not 0 without history"
echo "PASS"
