#!/bin/sh
# test_history_damage.sh - damaged and hostile history files (issue 24), on
# a store written by test_history_fixture:
#  - one damaged byte at the end of a conversation: show prints the
#    messages before the damage and marks it (exit 1), list marks it
#    [damaged], search finds its first messages and says it was not
#    searched in full; `history repair` copies the file to ID.tch.damaged
#    and keeps the good prefix, after which show is clean (exit 0);
#  - a FIFO where a conversation, its lock or the key is expected is
#    refused at once instead of hanging;
#  - a missing key file beside existing conversations is not "no
#    conversations yet", and --save cannot make a new key beside them.
set -u
bin=${TTYCHAT_BIN:-./ttychat}
fixture=${TTYCHAT_BUILDDIR:-.}/tests/test_history_fixture
if [ ! -x "$bin" ]; then echo "SKIP: $bin is not built"; exit 77; fi
if [ ! -x "$fixture" ]; then echo "SKIP: $fixture is not built"; exit 77; fi
py=/usr/bin/python3
[ -x "$py" ] || py=python3

tmp=$(mktemp -d "${TTYCHAT_BUILDDIR:-.}/test_history_damage.XXXXXX") || exit 99
tmp=$(cd "$tmp" && pwd)
pass=0 fail=0
finish() {
	echo "$pass passed, $fail failed"
	if [ "$fail" -eq 0 ]; then rm -rf "$tmp"; else echo "files kept in $tmp"; fi
}
trap finish EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
# expect STATUS DESCRIPTION -- COMMAND...: runs it (no terminal, at most 10 s)
expect() {
	want=$1 what=$2; shift 3
	timeout 10 "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
	got=$?
	if [ "$got" -eq "$want" ]; then ok; else bad "$what: exit $got, wanted $want; stderr: $(cat "$tmp/err")"; fi
}
has() { # has FILE TEXT DESCRIPTION
	if grep -q -F -- "$2" "$1"; then ok; else bad "$3: '$2' not in $(cat "$1")"; fi
}
hasnt() {
	if grep -q -F -- "$2" "$1"; then bad "$3: '$2' found"; else ok; fi
}

export HOME="$tmp/home" XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config"
unset TTYCHAT_PASSPHRASE_FD
mkdir -p "$HOME"
printf 'open sesame\n' >"$tmp/pw"
export TTYCHAT_PASSPHRASE_FILE="$tmp/pw"
store=$XDG_DATA_HOME/ttychat
"$fixture" "$store" "$tmp/pw" >"$tmp/ids" || { bad "fixture failed"; exit 1; }
id1=$(sed -n 1p "$tmp/ids") id2=$(sed -n 2p "$tmp/ids") id3=$(sed -n 3p "$tmp/ids")
log1=$store/history/$id1.tch

# one flipped byte at the very end: the last record no longer authenticates
$py -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-1] ^= 0x55; open(p, "wb").write(b)' "$log1"
cp "$log1" "$tmp/damaged-copy"
expect 1 "show a damaged conversation" -- "$bin" history show "$id1"
has "$tmp/out" "What is the capital of France?" "show: the message before the damage"
hasnt "$tmp/out" "Paris." "show: nothing from the damaged record"
has "$tmp/out" "[damaged" "show: marked damaged"
has "$tmp/err" "history repair" "show: says how to repair"
expect 1 "list with a damaged conversation" -- "$bin" history list
has "$tmp/out" "[damaged] What is the capital" "list: marked damaged, title still shown"
has "$tmp/out" "Sorting" "list: the others"
expect 1 "search with a damaged conversation" -- "$bin" history search "capital"
has "$tmp/out" "What is the capital of France?" "search: the damaged one's first messages are searched"
has "$tmp/err" "not searched in full: $(printf %s "$id1" | cut -c1-12)" "search: reports the damaged one"
expect 0 "repair" -- "$bin" history repair "$(printf %s "$id1" | cut -c1-6)"
has "$tmp/err" "copied to $log1.damaged" "repair: names the backup"
cmp -s "$log1.damaged" "$tmp/damaged-copy" && ok || bad "repair: the backup is the damaged file"
expect 0 "show after repair" -- "$bin" history show "$id1"
has "$tmp/out" "What is the capital of France?" "repair kept the good prefix"
hasnt "$tmp/out" "[damaged" "repaired: no longer damaged"
expect 0 "repair an intact conversation" -- "$bin" history repair "$id1"
has "$tmp/err" "nothing to repair" "repair: intact"
[ ! -e "$log1.damaged.1" ] && ok || bad "repair of an intact file made a backup"
expect 0 "list after repair" -- "$bin" history list
hasnt "$tmp/out" "[damaged]" "list after repair"

# FIFOs where regular files are expected: refused, never waited on
rm -f "$store/history/$id2.lock" && mkfifo "$store/history/$id2.lock"
expect 0 "list with a FIFO lock file" -- "$bin" history list
expect 0 "show with a FIFO lock file" -- "$bin" history show "$id2"
mv "$store/history/$id3.tch" "$tmp/log3" && mkfifo "$store/history/$id3.tch"
expect 1 "list with a FIFO conversation" -- "$bin" history list
has "$tmp/err" "not a regular file" "FIFO conversation: refused"
expect 1 "show a FIFO conversation" -- "$bin" history show "$id3"
has "$tmp/err" "not a regular file" "show FIFO: refused"
rm "$store/history/$id3.tch" && mv "$tmp/log3" "$store/history/$id3.tch"
mv "$store/key" "$tmp/key" && mkfifo "$store/key"
expect 1 "a FIFO key file" -- "$bin" history list
has "$tmp/err" "not a regular file" "FIFO key: refused"
rm "$store/key"

# the key file lost: said, and no new key beside the old conversations
expect 1 "list without the key file" -- "$bin" history list
hasnt "$tmp/err" "no conversations yet" "missing key: not 'no conversations'"
has "$tmp/err" "restore the key file" "missing key: says how to restore"
expect 1 "passwd without the key file" -- env TTYCHAT_NEW_PASSPHRASE_FILE="$tmp/pw" "$bin" history passwd
[ ! -e "$store/key" ] && ok || bad "passwd made a new key beside unreadable history"
expect 5 "--save without the key file" -- env CI=true "$bin" --save -m /nonexistent/model.gguf -p "hello"
has "$tmp/err" "restore the key file" "--save: says the key is missing"
[ ! -e "$store/key" ] && ok || bad "--save made a new key beside unreadable history"
mv "$tmp/key" "$store/key"
expect 0 "list with the key restored" -- "$bin" history list
has "$tmp/out" "Sorting" "key restored: readable again"
[ "$fail" -eq 0 ]
