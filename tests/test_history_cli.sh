#!/bin/sh
# test_history_cli.sh - `ttychat history list|show|search|export|rm|passwd`
# on a store written by test_history_fixture: output, exit statuses,
# passphrase sources (file, descriptor, none without a terminal), wrong
# passphrases, passphrase change and removal (real MODERATE Argon2id, a few
# seconds), permissions under umask 000, no plaintext in the data directory.
# A conversation with /regen and /edit rewinds: show, export and search see
# it as it stands (--all: every version, marked), list counts what stands,
# rm takes its KV snapshots (every model's) with it.
set -u
bin=${TTYCHAT_BIN:-./ttychat}
fixture=${TTYCHAT_BUILDDIR:-.}/tests/test_history_fixture
if [ ! -x "$bin" ]; then echo "SKIP: $bin is not built"; exit 77; fi
if [ ! -x "$fixture" ]; then echo "SKIP: $fixture is not built"; exit 77; fi
command -v setsid >/dev/null 2>&1 || { echo "SKIP: setsid(1) not found"; exit 77; }
py=/usr/bin/python3
[ -x "$py" ] || py=python3

tmp=$(mktemp -d "${TTYCHAT_BUILDDIR:-.}/test_history_cli.XXXXXX") || exit 99
tmp=$(cd "$tmp" && pwd)
pass=0 fail=0
finish() {
	echo "$pass passed, $fail failed"
	if [ "$fail" -eq 0 ]; then rm -rf "$tmp"; else echo "files kept in $tmp"; fi
}
trap finish EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
# expect STATUS DESCRIPTION -- COMMAND...: runs it (no terminal), output in $tmp/out
expect() {
	want=$1 what=$2; shift 3
	setsid -w "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
	got=$?
	if [ "$got" -eq "$want" ]; then ok; else bad "$what: exit $got, wanted $want; stderr: $(cat "$tmp/err")"; fi
}
has() { # has FILE TEXT DESCRIPTION
	if grep -q -F -- "$2" "$1"; then ok; else bad "$3: '$2' not in $(cat "$1")"; fi
}
hasnt() {
	if grep -q -F -- "$2" "$1"; then bad "$3: '$2' found"; else ok; fi
}

export HOME="$tmp/home" XDG_DATA_HOME="$tmp/data"
unset TTYCHAT_PASSPHRASE_FD TTYCHAT_NEW_PASSPHRASE_FD TTYCHAT_NEW_PASSPHRASE_FILE
mkdir -p "$HOME"
printf 'open sesame\n' >"$tmp/pw"
printf 'not it\n' >"$tmp/wrong"
printf 'new secret\n' >"$tmp/new"
: >"$tmp/empty"
export TTYCHAT_PASSPHRASE_FILE="$tmp/pw"

# no store yet: list says so and creates nothing
expect 0 "list without a store" -- "$bin" history list
has "$tmp/err" "no conversations yet" "empty list"
[ ! -e "$XDG_DATA_HOME" ] && ok || bad "list created the data dir"

"$fixture" "$XDG_DATA_HOME/ttychat" "$tmp/pw" >"$tmp/ids" || { bad "fixture failed"; exit 1; }
id1=$(sed -n 1p "$tmp/ids") id2=$(sed -n 2p "$tmp/ids") id3=$(sed -n 3p "$tmp/ids")

expect 0 "list" -- "$bin" history list
[ "$(wc -l <"$tmp/out")" -eq 4 ] && ok || bad "list: header + 3 rows: $(cat "$tmp/out")"
sed -n 2p "$tmp/out" | grep -q "Sorting" && ok || bad "renamed conversation first: $(cat "$tmp/out")"
has "$tmp/out" "What is the capital of France?" "title from the first message"
has "$tmp/out" "gemma-3-270m-it" "model column (file name only)"
hasnt "$tmp/out" "/models/" "model column without the directory"
expect 0 "list --json" -- "$bin" history list --json
$py -c 'import json,sys; v=json.load(open(sys.argv[1])); assert [e["id"] for e in v]==[sys.argv[3],sys.argv[4],sys.argv[2]], v; assert v[0]["messages"]==4' \
	"$tmp/out" "$id1" "$id2" "$id3" && ok || bad "list --json content"

short=$(printf %s "$id1" | cut -c1-6)
expect 0 "show by prefix" -- "$bin" history show "$short"
has "$tmp/out" "Paris." "show: reply"
has "$tmp/out" "be brief" "show: system prompt"
has "$tmp/out" "$id1" "show: full id"
expect 0 "show to a pipe" -- "$bin" history show "$id3"
has "$tmp/out" "$(printf '\033[31mred')" "text untouched to a pipe"
expect 1 "show unknown" -- "$bin" history show 0123456789abcdef
has "$tmp/err" "no conversation" "unknown id message"
expect 1 "show non-hex" -- "$bin" history show 'zz;rm'

expect 0 "search" -- "$bin" history search PIVOT
[ "$(wc -l <"$tmp/out")" -eq 1 ] && ok || bad "search: one hit: $(cat "$tmp/out")"
has "$tmp/out" "$(printf %s "$id2" | cut -c1-12)" "search: conversation id"
has "$tmp/out" "Pick a pivot" "search: snippet"
expect 1 "search without hits" -- "$bin" history search "nothing like this"

expect 0 "export json" -- "$bin" history export "$id2" --format json
$py -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["title"]=="Sorting"; m=d["messages"]; assert len(m)==4 and m[3]["cancelled"] and m[1]["role"]=="assistant", d; assert d["sampling"]["temperature"]==0.5' \
	"$tmp/out" && ok || bad "export json content: $(cat "$tmp/out")"
expect 0 "export md" -- "$bin" history export "$id2"
has "$tmp/out" "# Sorting" "md title"
has "$tmp/out" "## Assistant" "md roles"
expect 0 "export --format=md" -- "$bin" history export "$id2" --format=md
expect 2 "export bad format" -- "$bin" history export "$id2" --format xml

# usage errors; there is no way to give the passphrase as an argument
expect 2 "no subcommand" -- "$bin" history
expect 2 "unknown subcommand" -- "$bin" history frobnicate
expect 2 "show without id" -- "$bin" history show
expect 2 "passphrase flag" -- "$bin" history list --passphrase "open sesame"
expect 0 "help" -- "$bin" history --help

# passphrase sources
expect 5 "wrong passphrase" -- env TTYCHAT_PASSPHRASE_FILE="$tmp/wrong" "$bin" history list
has "$tmp/err" "wrong passphrase" "clear message"
expect 0 "passphrase from a descriptor" -- sh -c 'exec 3<"$1"; shift; TTYCHAT_PASSPHRASE_FILE= TTYCHAT_PASSPHRASE_FD=3 "$@"' sh "$tmp/pw" "$bin" history list
expect 5 "bad descriptor variable" -- env TTYCHAT_PASSPHRASE_FD=abc "$bin" history list
expect 5 "no source, no terminal" -- env -u TTYCHAT_PASSPHRASE_FILE "$bin" history list
has "$tmp/err" "no terminal" "explains where to put it"
expect 5 "missing passphrase file" -- env TTYCHAT_PASSPHRASE_FILE="$tmp/nope" "$bin" history list

expect 0 "rm" -- "$bin" history rm "$id3"
[ ! -e "$XDG_DATA_HOME/ttychat/history/$id3.tch" ] && ok || bad "rm left the file"
expect 1 "rm again" -- "$bin" history rm "$id3"
expect 0 "list after rm" -- "$bin" history list
[ "$(wc -l <"$tmp/out")" -eq 3 ] && ok || bad "two left: $(cat "$tmp/out")"

# rewinds (docs/history-format.md): as it stands, "Name a colour", "Green,
# second try", "Name a tasty fruit", "Mango"; "Blue, first try", "Name a
# fruit" and "Apple" were replaced
idr=$("$fixture" "$XDG_DATA_HOME/ttychat" "$tmp/pw" rewind) || bad "rewind fixture failed"
kvfiles() { find "$XDG_DATA_HOME/ttychat/kv" -type f -name '*.kv' 2>/dev/null | wc -l; }
[ "$(kvfiles)" -eq 2 ] && ok || bad "the fixture filed two KV snapshots: $(kvfiles)"
expect 0 "show a rewound conversation" -- "$bin" history show "$idr"
for t in "Name a colour" "Green, second try" "Name a tasty fruit" "Mango" "system note"; do
	has "$tmp/out" "$t" "show: standing message"
done
for t in "Blue, first try" "Name a fruit" "Apple" "replaced"; do
	hasnt "$tmp/out" "$t" "show: replaced versions left out"
done
expect 0 "show --all" -- "$bin" history show "$idr" --all
for t in "Blue, first try" "Name a fruit" "Apple" "Mango"; do
	has "$tmp/out" "$t" "show --all: every version"
done
[ "$(grep -c ', replaced\]' "$tmp/out")" -eq 3 ] && ok || bad "show --all: three marked replaced: $(cat "$tmp/out")"
grep -A1 ', replaced\]' "$tmp/out" | grep -q '^Green' && bad "show --all: a standing message marked replaced" || ok
expect 0 "export json of a rewound conversation" -- "$bin" history export "$idr" --format json
$py -c 'import json,sys; m=json.load(open(sys.argv[1]))["messages"]; got=[(x["role"],x["text"]) for x in m if x["role"]!="system"]; assert got==[("user","Name a colour"),("assistant","Green, second try"),("user","Name a tasty fruit"),("assistant","Mango")], got; assert not any(x["replaced"] for x in m)' \
	"$tmp/out" && ok || bad "export json: as it stands: $(cat "$tmp/out")"
expect 0 "export json --all" -- "$bin" history export "$idr" --format json --all
$py -c 'import json,sys; m=json.load(open(sys.argv[1]))["messages"]; got=[(x["text"],x["replaced"]) for x in m]; assert got==[("Name a colour",False),("Blue, first try",True),("Green, second try",False),("system note",False),("Name a fruit",True),("Apple",True),("Name a tasty fruit",False),("Mango",False)], got; assert m[5]["cancelled"]' \
	"$tmp/out" && ok || bad "export json --all: every version, marked: $(cat "$tmp/out")"
expect 0 "export md" -- "$bin" history export "$idr"
hasnt "$tmp/out" "Apple" "export md: replaced left out"
has "$tmp/out" "Mango" "export md: standing"
expect 0 "export md --all" -- "$bin" history export "$idr" --all
has "$tmp/out" "## Assistant (replaced)" "export md --all: marked"
expect 1 "search skips replaced versions" -- "$bin" history search "first try"
expect 0 "search --all" -- "$bin" history search "first try" --all
has "$tmp/out" "(replaced)" "search --all: the hit is marked"
expect 0 "search finds what stands" -- "$bin" history search "second try"
hasnt "$tmp/out" "(replaced)" "search: a standing hit is not marked"
expect 0 "list --json counts what stands" -- "$bin" history list --json
$py -c 'import json,sys; v={e["id"]:e for e in json.load(open(sys.argv[1]))}; assert v[sys.argv[2]]["messages"]==5, v[sys.argv[2]]; assert v[sys.argv[2]]["title"]=="Name a colour"' \
	"$tmp/out" "$idr" && ok || bad "list: 5 messages stand (4 and the system note): $(cat "$tmp/out")"
expect 0 "rm a conversation with KV snapshots" -- "$bin" history rm "$(printf %s "$idr" | cut -c1-8)"
[ "$(kvfiles)" -eq 0 ] && ok || bad "rm left $(kvfiles) KV snapshots"
[ -z "$(ls -A "$XDG_DATA_HOME/ttychat/kv" 2>/dev/null)" ] && ok || bad "rm left in kv/: $(ls -A "$XDG_DATA_HOME/ttychat/kv")"

# passphrase change, then removal, with a permissive umask
umask 000
before=$(cksum <"$XDG_DATA_HOME/ttychat/history/$id1.tch")
expect 0 "passwd" -- env TTYCHAT_NEW_PASSPHRASE_FILE="$tmp/new" "$bin" history passwd
expect 5 "old passphrase refused" -- "$bin" history list
expect 0 "new passphrase works" -- env TTYCHAT_PASSPHRASE_FILE="$tmp/new" "$bin" history show "$id1"
has "$tmp/out" "Paris." "history readable after passwd"
[ "$(cksum <"$XDG_DATA_HOME/ttychat/history/$id1.tch")" = "$before" ] && ok || bad "history re-encrypted by passwd"
expect 2 "empty new passphrase" -- env TTYCHAT_PASSPHRASE_FILE="$tmp/new" TTYCHAT_NEW_PASSPHRASE_FILE="$tmp/empty" "$bin" history passwd
expect 0 "passwd --remove" -- env TTYCHAT_PASSPHRASE_FILE="$tmp/new" "$bin" history passwd --remove
expect 0 "no passphrase needed now" -- env -u TTYCHAT_PASSPHRASE_FILE "$bin" history show "$id1"
has "$tmp/out" "Paris." "readable without a passphrase"
[ "$(stat -c %a "$XDG_DATA_HOME/ttychat/key")" = 600 ] && ok || bad "key file mode $(stat -c %a "$XDG_DATA_HOME/ttychat/key")"

# a fresh store made by passwd: empty new passphrase = none (scripted)
expect 0 "passwd on a fresh store" -- env XDG_DATA_HOME="$tmp/fresh" TTYCHAT_NEW_PASSPHRASE_FILE="$tmp/empty" "$bin" history passwd
has "$tmp/err" "without a passphrase" "fresh key"
[ "$(stat -c %a "$tmp/fresh/ttychat")" = 700 ] && ok || bad "fresh dir mode"
[ "$(stat -c %a "$tmp/fresh/ttychat/history")" = 700 ] && ok || bad "fresh history dir mode"
[ "$(stat -c %a "$tmp/fresh/ttychat/key")" = 600 ] && ok || bad "fresh key mode"
umask 022

# nothing readable in the data directory
for word in Paris pivot "capital of France" Sorting "be brief"; do
	if grep -r -q -F "$word" "$XDG_DATA_HOME"; then bad "plaintext '$word' in the data dir"; else ok; fi
done
[ "$fail" -eq 0 ]
