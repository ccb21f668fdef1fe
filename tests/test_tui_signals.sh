#!/bin/sh
# test_tui_signals.sh - every way out gives the terminal back: SIGTERM in
# the middle of a reply (exit 143), SIGHUP as when an SSH link drops (exit
# 129), a fatal signal (SIGSEGV: the emergency handler restores the
# terminal, then dies of it), and Ctrl-Z / fg (the screen comes back whole).

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init

S=term
tui_start $S 100 30 xterm-256color -- -m "$SMOL" --temp 0 -n 300
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
tui_send $S "Write a long poem about autumn leaves."
tui_wait $S 60 'reply +[1-9][0-9]* tok'
kill -TERM "$(tui_pid $S)"
tui_check_restored $S
tui_screen $S | grep -q '^EXIT=143$' || fail "SIGTERM: exit status not 143"

S=hup
tui_start $S 100 30 tmux-256color -- -m "$SMOL" --temp 0 -n 8
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
kill -HUP "$(tui_pid $S)"
tui_check_restored $S
tui_screen $S | grep -q '^EXIT=129$' || fail "SIGHUP: exit status not 129"

S=segv
tui_start $S 100 30 xterm-256color -- -m "$SMOL" --temp 0 -n 8
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
kill -SEGV "$(tui_pid $S)"
tui_check_restored $S
tui_screen $S | grep -q '^EXIT=139$' || fail "SIGSEGV: exit status not 139"

# Ctrl-Z needs job control: run ttychat from an interactive bash, as a
# user would, and bring it back with fg
S=suspend
command -v bash >/dev/null 2>&1 || skip "no bash for the job-control part"
TUI_SESSION=$S
$T new-session -d -s $S -x 100 -y 30 "env -u CI -u LC_ALL -u NO_COLOR LANG=C.UTF-8 TERM=xterm-256color \
	INPUTRC=/dev/null PS1='$ ' XDG_CONFIG_HOME=$TMPD/$S XDG_STATE_HOME=$TMPD/$S XDG_DATA_HOME=$TMPD/$S \
	TTYCHAT_PASSPHRASE_FILE=$TMPD/no-passphrase bash --norc --noprofile -i" ||
	fail "cannot start tmux"
tui_wait $S 10 '^[$]'
tui_send $S "'$TTYCHAT_BIN' -m '$SMOL' --temp 0 -n 8"
tui_wait $S 60 'loaded SmolLM2'
tui_ready $S 10
tui_type $S "typed text"
tui_keys $S C-z
tui_wait $S 10 'Stopped'
[ "$($T display -p -t $S '#{alternate_on}')" = 0 ] || fail "Ctrl-Z did not give the terminal back"
[ "$($T display -p -t $S '#{cursor_flag}')" = 1 ] || fail "Ctrl-Z left the cursor hidden"
tui_send $S "fg"
tui_wait $S 10 '^> typed text'
tui_wait $S 10 'loaded SmolLM2'
[ "$($T display -p -t $S '#{alternate_on}')" = 1 ] || fail "fg did not bring the screen back"
tui_redraw_same $S
tui_keys $S C-u
tui_send $S "/quit"
i=0
while [ "$($T display -p -t $S '#{alternate_on}')" != 0 ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "still on the alternate screen after /quit"
	sleep 0.1
done
tui_send $S 'echo "status $?"'
tui_wait $S 10 '^status 0$'
echo "PASS"
