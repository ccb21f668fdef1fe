#!/bin/sh
# test_tui_history.sh - the full-screen chat keeps its conversations in the
# encrypted history, with the real SmolLM2 model in tmux: chat, quit,
# restart (no -m) and the conversation is back with its model, its KV
# cache restored so that the next turn reuses it; F3 lists, searches,
# opens, renames, deletes and starts conversations; /regen and /edit come
# back as they were left; SIGTERM mid-reply saves the partial reply and
# the KV cache; a full disk (test hook) keeps the message and saves it
# once there is room; no file under the test's directories holds
# a message in plaintext.

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init

MARK="zqx$$-MARKER-$(date +%s)"
OTHER="ocelot$$-SECOND"
printf 'correct horse battery\n' >"$TMPD/pass"
chmod 600 "$TMPD/pass"
: >"$TMPD/start"
PASS="TTYCHAT_PASSPHRASE_FILE=$TMPD/pass"
TUI_DIRS=store
export TUI_DIRS

count_convs() {
	ls "$TUI_DATA/ttychat/history" | grep -c '\.tch$'
}

# the prompt figures of the last turn: "REUSED NEW"
prompt_figures() {
	tui_screen "$1" | sed -n 's/.*prompt: \([0-9][0-9]*\) reused, \([0-9][0-9]*\) new.*/\1 \2/p' | head -1
}

# 1. a conversation, then quit
S=first
tui_start $S 120 40 xterm-256color "$PASS" -- -m "$SMOL" --temp 0 -n 24
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
tui_wait $S 5 'new: saved once you send'
tui_turn $S 60 "Remember the word $MARK please."
tui_wait $S 5 'saved, encrypted'
[ "$(count_convs)" = 1 ] || fail "the first message did not create one conversation file"
tui_turn $S 60 "What is the capital of France?"
# /regen and /edit: what is reopened is what was left
tui_send $S "/regen"
sleep 1 # the reply starts at once: "ready" now means it is done
tui_ready $S 60
tui_send $S "/edit"
tui_wait $S 10 'editing your last message'
tui_keys $S C-u
tui_send $S "What is the capital of Spain?"
tui_wait_text $S 60 "What is the capital of Spain?"
tui_ready $S 60
[ "$(stat -c %a "$TUI_DATA/ttychat/key")" = 600 ] || fail "key file is not 0600"
[ "$(stat -c %a "$TUI_DATA/ttychat/history")" = 700 ] || fail "history dir is not 0700"
tui_send $S "/quit"
tui_check_restored $S
tui_screen $S | grep -q '^EXIT=0$' || fail "exit status was not 0"
ls "$TUI_DATA/ttychat/kv/"*/*.kv >/dev/null 2>&1 || fail "no KV snapshot was filed on quitting"

# 2. restart without -m: the conversation, its model and its KV cache
S=again
tui_start $S 120 40 xterm-256color "$PASS" -- --temp 0 -n 24
tui_wait $S 60 'loaded SmolLM2'
tui_wait_text $S 10 "Remember the word $MARK please."
tui_wait_text $S 10 "What is the capital of Spain?"
tui_screen $S | grep -q 'capital of France' && fail "the edited message came back"
tui_wait $S 30 'KV cache restored: [1-9][0-9]* tokens'
tui_ready $S 10
tui_turn $S 60 "And the capital of Italy?"
set -- $(prompt_figures $S)
reused=${1:-0}
computed=${2:-0}
ttft=$(tui_screen $S | sed -n 's/.*1st tok *\([0-9][0-9]*\) ms.*/\1/p' | head -1)
echo "after the restart: prompt $reused reused, $computed new; first token in ${ttft:-?} ms"
[ "$reused" -gt 0 ] || fail "the first turn after the restart reused no prompt tokens"

# 3. the list: a second conversation, search, open, rename, delete, new
tui_send $S "/new"
tui_wait $S 10 'new conversation'
tui_turn $S 60 "Name a colour, $OTHER here."
[ "$(count_convs)" = 2 ] || fail "the second conversation has no file"
tui_keys $S F3
tui_wait $S 10 'Conversations \(2\)'
tui_keys $S /
tui_wait $S 5 'Search:'
tui_type $S "$MARK"
tui_keys $S Enter
tui_wait $S 20 'Conversations: 1 with'
tui_screen $S | grep -q "Remember the word" || fail "search did not find the first conversation"
tui_keys $S Enter
tui_wait $S 20 'conversation "Remember the word'
tui_screen $S | grep -q "$OTHER" && fail "the other conversation is still shown"
tui_wait_text $S 10 "And the capital of Italy?"
tui_keys $S F3
tui_wait $S 10 'Conversations \(2\)'
tui_keys $S r
tui_wait $S 5 'New title:'
tui_keys $S C-u
tui_type $S "Capital cities"
tui_keys $S Enter
tui_wait $S 10 'renamed'
tui_screen $S | grep -q '\* Capital cities' || fail "the open conversation was not renamed in the list"
tui_keys $S /
tui_wait $S 5 'Search:'
tui_keys $S C-u
tui_type $S "$OTHER"
tui_keys $S Enter
tui_wait $S 20 'Conversations: 1 with'
tui_keys $S d
tui_wait $S 5 'Delete "Name a colour'
tui_keys $S y
tui_wait $S 10 'deleted'
[ "$(count_convs)" = 1 ] || fail "the deleted conversation's file is still there"
tui_keys $S Escape
tui_wait $S 10 'Conversations \(1\)'
tui_keys $S n
tui_wait $S 10 'new conversation'
tui_wait_not $S 5 'Conversations \('
tui_screen $S | grep -q 'Remember the word' && fail "n did not start a new conversation"
tui_send $S "/chats capital"
tui_wait $S 20 'Conversations: 1 with "capital"'
tui_keys $S Enter
tui_wait $S 20 'conversation "Capital cities"'
tui_send $S "/quit"
tui_check_restored $S

# 4. SIGTERM in the middle of a reply: the partial reply is saved, marked,
# and the KV cache filed (as on quitting)
S=term
tui_start $S 120 40 xterm-256color "$PASS" -- --temp 0 -n 300
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
tui_send $S "Write a long poem about the sea."
tui_wait $S 60 'reply +([3-9]|[1-9][0-9]+) tok'
kill -TERM "$(tui_pid $S)"
tui_check_restored $S
tui_screen $S | grep -q '^EXIT=143$' || fail "SIGTERM: exit status not 143"
S=term2
tui_start $S 120 40 xterm-256color "$PASS" -- --temp 0 -n 8
tui_wait $S 60 'loaded SmolLM2'
tui_wait_text $S 10 "Write a long poem about the sea."
tui_wait $S 10 '\[stopped\]'
tui_wait $S 30 'KV cache restored: [1-9][0-9]* tokens'
tui_send $S "/quit"
tui_check_restored $S

# 5. a full disk: the message stays, is said unsaved, and is saved later
S=full
tui_start $S 120 40 xterm-256color "$PASS" TTYCHAT_TEST_HISTORY_FULL=$TMPD/disk-full -- --temp 0 -n 8
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
: >"$TMPD/disk-full"
tui_turn $S 60 "This line meets a full disk."
tui_wait $S 10 'history: not saved yet'
tui_wait $S 5 '[1-9] unsaved, retrying'
rm -f "$TMPD/disk-full"
tui_wait $S 30 'the unsaved messages are saved now'
tui_wait $S 5 'saved, encrypted'
tui_send $S "/quit"
tui_check_restored $S
S=full2
tui_start $S 120 40 xterm-256color "$PASS" -- --temp 0 -n 8
tui_wait $S 60 'loaded SmolLM2'
tui_wait_text $S 10 "This line meets a full disk."
tui_send $S "/quit"
tui_check_restored $S

# 6. no plaintext anywhere the test wrote (the data dir is inside TMPD),
# nor in files that appeared in /tmp meanwhile
for m in "$MARK" "$OTHER" "capital of Spain" "full disk" "poem about the sea"; do
	if grep -rlF -- "$m" "$TMPD" 2>/dev/null | grep -v '\.stty-' | grep -q .; then
		fail "'$m' is in plaintext in $(grep -rlF -- "$m" "$TMPD" | head -3)"
	fi
	if find /tmp -xdev -type f -size -64M -newer "$TMPD/start" 2>/dev/null | grep -v "^$TMPD/" |
		xargs -r grep -lF -- "$m" 2>/dev/null | grep -q .; then
		fail "'$m' is in plaintext under /tmp"
	fi
done
echo "PASS"
