#!/bin/sh
# test_tui_reasoning.sh - a thinking model in the full-screen chat, in tmux
# at 120x40: the random-weight qwen3 fixture with a thinking chat template
# from models.d (<think> opened by the generation prompt unless
# enable_thinking is false), decoded greedily.  /budget closes the
# reasoning at N tokens: the reasoning is drawn under its own header with
# the count and folded once the answer starts; F6 unfolds and folds it;
# the sidebar counts reasoning and answer tokens apart; /think off renders
# the block closed (no reasoning at all); bad values are one error line;
# reopened, the conversation shows its saved reasoning folded and keeps
# its thinking settings.  Then the real SmolLM2 under a template that
# opens <think>: F5 mid-stream closes the reasoning and it answers.

. "${TTYCHAT_SRCDIR:-.}/tests/test_tui_lib.sh"
tui_init
FIXTURE="${TTYCHAT_SRCDIR:-.}/tests/fixtures/engine/random/qwen3-f16.gguf"
[ -r "$FIXTURE" ] || skip "the random qwen3 fixture is missing"
FIXTURE=$(cd "$(dirname "$FIXTURE")" && pwd)/$(basename "$FIXTURE")

S=think
mkdir -p "$TMPD/$S/config/ttychat/models.d"
cat >"$TMPD/$S/config/ttychat/models.d/thinker.json" <<JSON
{"name": "thinker", "file": "$FIXTURE", "context_size": 1024,
 "template": "{%- for m in messages %}{{ '<|im_start|>' + m.role + '\\\\n' + m.content + '<|im_end|>\\\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\\\n<think>\\\\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{ '\\\\n</think>\\\\n\\\\n' }}{%- endif %}{%- endif %}"}
JSON
tui_start $S 120 40 xterm-256color -- -m thinker --temp 0 -n 20 -t 2
tui_wait $S 60 'loaded thinker'
tui_ready $S 10

tui_send $S "/think maybe"
tui_wait $S 5 "/think: 'maybe' is not on, off"
tui_send $S "/budget 6"
tui_wait $S 5 'reasoning budget: 6 tokens'
tui_send $S "/think high"
tui_wait $S 5 'thinking: on, effort high, budget 6'

tui_send $S "What is 2+2?"
tui_wait $S 60 'Reasoning: 6 tokens, [0-9.]+ s, closed by the budget \(F6 unfolds\)'
tui_ready $S 10
tui_screen $S | grep -q 'Considering the limited time' && fail "the reasoning is not folded once the answer came"
tui_screen $S | grep -Eq 'reason +6 tok' || fail "the sidebar does not count 6 reasoning tokens"
tui_screen $S | grep -Eq 'answer +1[0-9] tok' || fail "the sidebar does not count the answer's tokens"

# F6 unfolds every reasoning, and folds it again
tui_keys $S F6
tui_wait $S 5 'Considering the limited time'
tui_screen $S | grep -q '(F6 unfolds)' && fail "the unfolded header still says F6 unfolds it"
tui_keys $S F6
tui_wait_not $S 5 'Considering the limited time'

# thinking off: the template closes the block, nothing is drawn as reasoning
tui_send $S "/think off"
tui_wait $S 5 'thinking: off, effort high, budget 6'
tui_turn $S 60 "And 3+3?"
[ "$(tui_screen $S | grep -c 'Reasoning:')" -eq 1 ] || fail "a reasoning header with thinking off"
tui_screen $S | grep -Eq 'reply +20 tok' || fail "the sidebar does not show a plain reply of 20 tokens"

tui_send $S "/quit"
tui_check_restored $S
tui_screen $S | grep -q '^EXIT=0$' || fail "exit status was not 0"

# the conversation reopens with its reasoning (folded, saved apart from
# the answer) and the thinking settings it was held with
TUI_DIRS=$S
S2=again
tui_start $S2 120 40 xterm-256color -- -m thinker --temp 0 -n 20 -t 2
tui_wait $S2 60 'loaded thinker'
tui_wait $S2 10 'Reasoning: [0-9]+ bytes \(F6 unfolds\)'
tui_screen $S2 | grep -q 'Considering the limited time' && fail "the reopened reasoning is not folded"
tui_keys $S2 F6
tui_wait $S2 5 'Considering the limited time'
tui_send $S2 "/think"
tui_wait $S2 5 'thinking: off, effort high, budget 6'
tui_send $S2 "/quit"
tui_check_restored $S2

# F5 mid-stream: the real SmolLM2 with a template that opens <think> writes
# inside the block until F5 closes it, then answers
unset TUI_DIRS
S3=answer
mkdir -p "$TMPD/$S3/config/ttychat/models.d"
cat >"$TMPD/$S3/config/ttychat/models.d/smolthink.json" <<JSON
{"name": "smolthink", "file": "$SMOL",
 "template": "{%- for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"}
JSON
tui_start $S3 120 40 xterm-256color -- -m smolthink --temp 0 -n 80 -t 2
tui_wait $S3 60 'loaded smolthink'
tui_ready $S3 10
tui_send $S3 "Write a very long story about a dragon who learns to bake bread."
tui_wait $S3 60 'Thinking\.\.\. ([2-9]|[1-9][0-9]+) tokens'
tui_keys $S3 F5
tui_wait $S3 60 'Reasoning: [0-9]+ tokens, [0-9.]+ s, closed by F5'
tui_ready $S3 60
tui_screen $S3 | grep -Eq 'answer +[1-9][0-9]* tok' || fail "no answer after F5"
tui_send $S3 "/quit"
tui_check_restored $S3
echo "ok"
