#!/bin/sh
# test_tui_term.sh - the same short chat on TERM=linux, vt100, screen,
# tmux-256color and xterm-256color, and with NO_COLOR: colours match what
# the terminal has (256, 8, none), and a reply that begins with escape
# sequences, control characters and invalid UTF-8 (injected through the
# TTYCHAT_TEST_INJECT test hook, as if the model had produced them) shows
# them as placeholders and leaves the screen, the title and the alternate
# screen alone.  Each run must quit with the terminal restored.

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init

# clear screen, leave the alternate screen, set the title, C1 CSI, bell,
# bad bytes, a bidi override, then wide characters (CJK, an emoji) and a
# combining accent, which must take the columns the layout gave them
INJECT='\e[2J\e[?1049l\e]0;pwned\x07\xc2\x9b31mRED\xff\xfe\xe2\x80\xaeEND\r\n\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 e\xcc\x81t\xc3\xa9|\n'

run() {
	local S=$1 term=$2 cols=$3 rows=$4 colours=$5
	shift 5
	tui_start $S "$cols" "$rows" "$term" "TTYCHAT_TEST_INJECT='$INJECT'" "$@" -- -m "$SMOL" --temp 0 -n 6
	tui_wait $S 60 'loaded SmolLM2'
	tui_ready $S 10
	local title alt
	title=$($T display -p -t $S '#{pane_title}')
	alt=$($T display -p -t $S '#{alternate_on}') # 0 where terminfo has no alternate screen (linux, vt100)
	tui_send $S "Hi"
	tui_wait $S 60 'max tokens reached'
	tui_ready $S 10
	tui_screen $S | grep -qF '^[[2J^[[?1049l^[]0;pwned^G<U+009B>31mRED' || fail "$S: escapes not shown as placeholders"
	tui_screen $S | grep -qF '<U+202E>END' || fail "$S: bidi override not shown as a placeholder"
	if [ "$S" = ascii ]; then
		tui_screen $S | grep -q '^  ?? ? et?|' || fail "$S: non-ASCII text not shown as ?"
	else
		tui_screen $S | grep -q "^  $(printf '\344\270\255\346\226\207 \360\237\230\200 e\314\201t\303\251|')" ||
			fail "$S: wide or combining characters misplaced"
	fi
	if [ "$S" = ascii ]; then
		tui_screen $S | grep -qF 'RED??' || fail "$S: invalid UTF-8 not shown as ?"
	else
		tui_screen $S | grep -qF "RED$(printf '\357\277\275\357\277\275')" || fail "$S: invalid UTF-8 not shown as U+FFFD"
	fi
	[ "$($T display -p -t $S '#{alternate_on}')" = "$alt" ] || fail "$S: the model's escape left the alternate screen"
	[ "$($T display -p -t $S '#{pane_title}')" = "$title" ] || fail "$S: the model's escape set the title"
	tui_screen $S | grep -q '^You' || fail "$S: the transcript was cleared"
	tui_redraw_same $S
	local e out
	e=$(printf '\033')
	out=$($T capture-pane -p -e -t $S)
	case $colours in
	256) echo "$out" | grep -q "${e}\[38;5;" || fail "$S: no 256-colour output" ;;
	8) echo "$out" | grep -q "${e}\[38;5;" && fail "$S: 256 colours on an 8-colour terminal"
	   echo "$out" | grep -Eq "${e}\[3[1-7]m" || fail "$S: no colours on an 8-colour terminal" ;;
	none) echo "$out" | grep -Eq "${e}\[(3[0-7]|4[0-7]|38;5;[0-9]+|48;5;[0-9]+)m" &&
		fail "$S: colours although there should be none"
	      echo "$out" | grep -Eq "${e}\[7m" || fail "$S: no reverse video in the mono theme" ;;
	esac
	tui_send $S "/quit"
	tui_check_restored $S
	echo "$S: ok"
}

run xterm xterm-256color 100 30 256
run tmux tmux-256color 100 30 256
run screen screen 80 24 8
run linux linux 80 24 8
run vt100 vt100 80 24 none
run nocolor xterm-256color 80 24 none NO_COLOR=1
run ascii xterm-256color 80 24 256 LANG=C
echo "PASS"
