# test_tui_lib.sh - helpers for the tmux-driven TUI tests; sourced, not run.
#
# Each test runs the real ttychat binary inside a private tmux server (its
# own socket, no config), drives it with send-keys and reads the screen
# with capture-pane.  Waits poll the screen every 0.1 s up to a deadline,
# so a test takes as long as the model needs and no longer.  The binary
# runs under a small wrapper that records the terminal settings before and
# after, and prints EXIT=<status>, so tests can check that quitting gives
# the terminal back.

set -u

skip() {
	echo "SKIP: $*"
	exit 77
}

fail() {
	echo "FAIL: $*"
	if [ -n "${TUI_SESSION:-}" ]; then
		echo "---- screen of $TUI_SESSION ----"
		tui_screen "$TUI_SESSION" 2>/dev/null
		echo "--------------------------------"
	fi
	exit 1
}

# tui_init: checks what the tests need and sets up a scratch dir and a tmux
# server that are removed on exit.
tui_init() {
	command -v tmux >/dev/null 2>&1 || skip "tmux is not installed"
	[ -n "${TTYCHAT_BIN:-}" ] && [ -x "$TTYCHAT_BIN" ] || skip "TTYCHAT_BIN is not built"
	SMOL="${TTYCHAT_MODELS_DIR:-}/SmolLM2-135M-Instruct.Q4_1.gguf"
	GEMMA="${TTYCHAT_MODELS_DIR:-}/gemma-3-270m-it-Q4_K_M.gguf"
	[ -r "$SMOL" ] || skip "no SmolLM2 model in TTYCHAT_MODELS_DIR (run scripts/fetch-models)"
	locale -a 2>/dev/null | grep -qi '^c\.utf-\?8$' || skip "no C.UTF-8 locale"
	TMPD=$(mktemp -d "${TMPDIR:-/tmp}/ttychat-tui.XXXXXX") || exit 1
	TSOCK="ttychat-test-$$"
	T="tmux -L $TSOCK -f /dev/null"
	trap 'tmux -L "$TSOCK" kill-server >/dev/null 2>&1; rm -rf "$TMPD"' EXIT
	# the history: no passphrase unless a test gives one (a later
	# TTYCHAT_PASSPHRASE_FILE=... in tui_start's variables wins)
	: >"$TMPD/no-passphrase"
	cat >"$TMPD/run.sh" <<'EOF'
#!/bin/sh
# runs ttychat, then reports how it left the terminal
out=$1
shift
stty -a >"$out.stty-before" 2>&1
"$@"
echo "EXIT=$?"
stty -a >"$out.stty-after" 2>&1
exec sleep 600
EOF
	chmod +x "$TMPD/run.sh"
}

# tui_start NAME COLS ROWS TERM [VAR=VALUE ...] -- [ttychat args]
# The config, state and data dirs are $TMPD/NAME/..., or $TMPD/$TUI_DIRS/...
# when TUI_DIRS is set (a restart that finds what an earlier run left).
tui_start() {
	local name=$1 cols=$2 rows=$3 term=$4
	shift 4
	local envs=""
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do
		envs="$envs $1"
		shift
	done
	[ $# -gt 0 ] && shift
	local args=""
	for a in "$@"; do
		args="$args '$a'"
	done
	local dirs="$TMPD/${TUI_DIRS:-$name}"
	mkdir -p "$dirs/config" "$dirs/state" "$dirs/data"
	TUI_DATA=$dirs/data
	TUI_SESSION=$name
	$T new-session -d -s "$name" -x "$cols" -y "$rows" \
		"env -u CI -u LC_ALL -u NO_COLOR LANG=C.UTF-8 TERM=$term INPUTRC=/dev/null \
		XDG_CONFIG_HOME=$dirs/config XDG_STATE_HOME=$dirs/state \
		XDG_DATA_HOME=$dirs/data TTYCHAT_MODELS_DIR='$TTYCHAT_MODELS_DIR' \
		TTYCHAT_PASSPHRASE_FILE=$TMPD/no-passphrase $envs \
		$TMPD/run.sh $TMPD/$name '$TTYCHAT_BIN' $args" || fail "cannot start tmux"
}

tui_screen() {
	$T capture-pane -p -t "$1"
}

# tui_wait NAME SECONDS EXTENDED-REGEX: waits until the screen matches
tui_wait() {
	local name=$1 secs=$2 re=$3 i=0 n
	n=$((secs * 10))
	while [ $i -lt $n ]; do
		if tui_screen "$name" | grep -Eq -- "$re"; then
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	fail "timed out after ${secs}s waiting for /$re/ in $name"
}

# tui_wait_not NAME SECONDS REGEX: waits until the screen no longer matches
tui_wait_not() {
	local name=$1 secs=$2 re=$3 i=0 n
	n=$((secs * 10))
	while [ $i -lt $n ]; do
		if ! tui_screen "$name" | grep -Eq -- "$re"; then
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	fail "timed out after ${secs}s waiting for /$re/ to go in $name"
}

tui_type() {
	$T send-keys -t "$1" -l -- "$2"
}

tui_keys() {
	local name=$1
	shift
	$T send-keys -t "$name" "$@"
}

# tui_send NAME TEXT: types a line and presses Enter
tui_send() {
	tui_type "$1" "$2"
	$T send-keys -t "$1" Enter
}

# tui_wait_text NAME SECONDS TEXT: waits for a line of the transcript that
# starts with TEXT (as is, not a pattern)
tui_wait_text() {
	local name=$1 secs=$2 text=$3 i=0 n
	n=$((secs * 10))
	while [ $i -lt $n ]; do
		if tui_screen "$name" | grep -qxF -- "  $text" ||
			tui_screen "$name" | cut -c1-$((${#text} + 2)) | grep -qxF -- "  $text"; then
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	fail "timed out after ${secs}s waiting for the line '$text' in $name"
}

# tui_turn NAME SECONDS TEXT: sends TEXT and waits for the reply to end.
# The message shows in the transcript in the same screen update that
# leaves "ready", so a "ready" seen after it is the reply's end, however
# fast the reply was.
tui_turn() {
	tui_send "$1" "$3"
	tui_wait_text "$1" "$2" "$3"
	tui_ready "$1" "$2"
}

# tui_ready NAME SECONDS: waits for an idle prompt (a reply finished)
tui_ready() {
	tui_wait "$1" "$2" '^ ready'
}

# The sidebar's numbers
tui_reply_tokens() {
	tui_screen "$1" | sed -n -e 's/.*reply *\([0-9][0-9]*\) tok.*/\1/p' \
		-e 's/.* | ctx [0-9]*\/[0-9]* | \([0-9][0-9]*\) tok |.*/\1/p' | head -1
}

tui_pid() {
	local ppid
	ppid=$($T display -p -t "$1" '#{pane_pid}')
	pgrep -P "$ppid" | head -1
}

# tui_check_restored NAME: after ttychat quit, the terminal is as it was
tui_check_restored() {
	local name=$1
	tui_wait "$name" 20 '^EXIT=[0-9]+'
	[ "$($T display -p -t "$name" '#{alternate_on}')" = 0 ] || fail "$name: still on the alternate screen"
	[ "$($T display -p -t "$name" '#{cursor_flag}')" = 1 ] || fail "$name: cursor left hidden"
	local i=0
	while [ ! -s "$TMPD/$name.stty-after" ] && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	cmp -s "$TMPD/$name.stty-before" "$TMPD/$name.stty-after" ||
		fail "$name: terminal modes differ after quitting: $(diff "$TMPD/$name.stty-before" "$TMPD/$name.stty-after")"
}

# tui_redraw_same NAME: the screen equals a full repaint from state (so
# what curses believes is on the terminal is what is on it)
tui_redraw_same() {
	local name=$1 before after
	before=$(tui_screen "$name")
	$T send-keys -t "$name" C-l
	sleep 0.5
	after=$(tui_screen "$name")
	[ "$before" = "$after" ] || {
		echo "$before" >"$TMPD/before"
		echo "$after" >"$TMPD/after"
		fail "$name: the screen changed on a full redraw: $(diff "$TMPD/before" "$TMPD/after")"
	}
}
