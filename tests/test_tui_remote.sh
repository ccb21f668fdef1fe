#!/bin/sh
# test_tui_remote.sh - the full-screen chat on a remote model: `ttychat
# serve` (SmolLM2) on 127.0.0.1 and a models.d "remote" entry naming it.
# The sidebar says where the model runs ("remote: 127.0.0.1:PORT", from
# the engine's backend), a turn streams from the server, and the picker
# (F2) lists the entry as "remote" with its server, never probed as a GGUF
# file (which showed it "missing"), beside the local files.

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy TTYCHAT_API_KEY

"$TTYCHAT_BIN" serve --port 0 -m "$SMOL" -c 1024 -t 2 </dev/null >/dev/null 2>"$TMPD/serve.err" &
SERVE=$!
trap 'kill $SERVE 2>/dev/null; wait $SERVE 2>/dev/null; tmux -L "$TSOCK" kill-server >/dev/null 2>&1; rm -rf "$TMPD"' EXIT
i=0 PORT=
while [ -z "$PORT" ] && [ $i -lt 600 ]; do
	PORT=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\)/v1.*|\1|p' "$TMPD/serve.err")
	kill -0 $SERVE 2>/dev/null || fail "ttychat serve exited: $(cat "$TMPD/serve.err")"
	[ -n "$PORT" ] || sleep 0.1
	i=$((i + 1))
done
[ -n "$PORT" ] || fail "ttychat serve did not say where it listens: $(cat "$TMPD/serve.err")"

S=remote
mkdir -p "$TMPD/$S/config/ttychat/models.d"
cat >"$TMPD/$S/config/ttychat/models.d/lab.json" <<JSON
{"name": "lab", "display_name": "Lab server", "remote": {"base_url": "http://127.0.0.1:$PORT/v1"}}
JSON
tui_start $S 120 40 tmux-256color -- -m lab --temp 0 -n 8
tui_wait $S 60 "remote: 127\.0\.0\.1:$PORT"
tui_ready $S 30
# no -c and no context_size in the entry: the server's context (serve -c 1024)
tui_screen $S | grep -q 'context 1024, server-side' || fail "the sidebar does not show the server's context"
tui_screen $S | grep -q 'local, cpu' && fail "the sidebar says the model runs here"
tui_turn $S 60 "Say hello."
[ "$(tui_reply_tokens $S)" -gt 0 ] 2>/dev/null || fail "no reply tokens counted"

tui_keys $S F2
tui_wait $S 10 '─ Models|Models'
tui_wait $S 10 'Lab server +remote +remote'
tui_screen $S | grep -E 'Lab server' | grep -q 'missing' && fail "the remote entry shows as missing"
tui_screen $S | grep -Eq 'SmolLM2.* +llama +135M .* MiB +(fits|tight)' || fail "the local file is not listed with its facts"
# the selection starts on the model in use: its server, not a file path
tui_screen $S | grep -Fq "remote: http://127.0.0.1:$PORT/v1" || fail "the picker does not name the server"
tui_screen $S | grep -q 'served by an OpenAI-compatible server' || fail "the picker's details are not a remote's"
tui_keys $S Escape
tui_wait_not $S 5 '─ Models'
tui_send $S "/quit"
tui_check_restored $S

# a local model says so
S=local
tui_start $S 100 30 tmux-256color -- -m "$SMOL" --temp 0 -n 4
tui_wait $S 60 'local, cpu'
tui_send $S "/quit"
tui_check_restored $S
echo "PASS"
