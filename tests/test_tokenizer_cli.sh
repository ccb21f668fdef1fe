#!/bin/sh
# test_tokenizer_cli.sh - `ttychat tokenize` and `ttychat detokenize` on the
# real models: ids as llama.cpp gives them (expected values recorded from
# llama-cpp-python 0.3.36), BOS as the model asks, special tokens only with
# --special, --pieces, round trips, UTF-8-safe output, exit statuses.
# Skips (77) when the models are absent.
set -u

bin=${TTYCHAT_BIN:?TTYCHAT_BIN not set}
models=${TTYCHAT_MODELS_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/ttychat/models}
smol="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
gemma="$models/gemma-3-270m-it-Q4_K_M.gguf"
if [ ! -r "$smol" ] || [ ! -r "$gemma" ]; then
	echo "SKIP: real models not found in $models (run scripts/fetch-models)"
	exit 77
fi

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
pass=0
fail=0

ok() {
	pass=$((pass + 1))
}

bad() {
	fail=$((fail + 1))
	echo "FAIL: $*"
}

# expect NAME WANT GOT
expect() {
	if [ "$2" = "$3" ]; then ok; else bad "$1: got [$3], want [$2]"; fi
}

# status NAME WANT COMMAND...: exit status of COMMAND
status() {
	name=$1 want=$2
	shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	st=$?
	if [ "$st" = "$want" ] && [ -s "$tmp/err" ]; then
		ok
	else
		bad "$name: exit $st (want $want), stderr: $(cat "$tmp/err")"
	fi
}

tok() { # tok MODEL ARGS... < text
	m=$1
	shift
	"$bin" tokenize -m "$m" "$@"
}

# ids, identical to llama_tokenize
expect "smollm2 ids" "19556 905" "$(printf 'Hello world' | tok "$smol")"
expect "smollm2 --no-bos" "19556 905" "$(printf 'Hello world' | tok "$smol" --no-bos)"
expect "gemma adds BOS" "2 9259 1902" "$(printf 'Hello world' | tok "$gemma")"
expect "gemma --no-bos" "9259 1902" "$(printf 'Hello world' | tok "$gemma" --no-bos)"
expect "smollm2 --special" "1 4093 198 26843 2" \
	"$(printf '<|im_start|>user\nHi<|im_end|>' | tok "$smol" --special)"
expect "smollm2 specials as text" "44 108 306 79 3738 108 46 4093 198 26843 44 108 306 79 486 108 46" \
	"$(printf '<|im_start|>user\nHi<|im_end|>' | tok "$smol")"
expect "gemma --special" "2 105 2364 107 10979 106" \
	"$(printf '<start_of_turn>user\nHi<end_of_turn>' | tok "$gemma" --special)"
expect "empty input" "" "$(printf '' | tok "$smol")"
expect "empty input, BOS" "2" "$(printf '' | tok "$gemma")"

# --pieces: id TAB quoted piece, one per line
printf 'Hi\n' | tok "$smol" --pieces >"$tmp/pieces"
expect "--pieces" "$(printf '26843\t"Hi"\n198\t"\\n"')" "$(cat "$tmp/pieces")"
printf '\303\251' | tok "$gemma" --no-bos --pieces >"$tmp/pieces"
expect "--pieces of a character" "$(printf '236859\t"\303\251"')" "$(cat "$tmp/pieces")"

# round trips (the SentencePiece space prefix is removed again, BOS hidden)
text='Grüße, мир! 你好 🙂  code:	x = [1, 2]
end'
for m in "$smol" "$gemma"; do
	printf '%s' "$text" | tok "$m" >"$tmp/ids"
	"$bin" detokenize -m "$m" <"$tmp/ids" >"$tmp/back"
	expect "round trip $(basename "$m")" "$text" "$(cat "$tmp/back")"
	printf '%s' "$text" | cmp -s - "$tmp/back" && ok || bad "round trip bytes $(basename "$m")"
done
printf '<|im_start|>user\nHi<|im_end|>' | tok "$smol" --special >"$tmp/ids"
expect "control tokens hidden" "user
Hi" "$("$bin" detokenize -m "$smol" <"$tmp/ids")"
expect "control tokens --special" "<|im_start|>user
Hi<|im_end|>" "$("$bin" detokenize -m "$smol" --special <"$tmp/ids")"

# byte tokens (gemma <0xC3> = 433, <0xA9> = 407): whole characters only
expect "bytes joined" "$(printf '\303\251')" "$(echo 433 407 | "$bin" detokenize -m "$gemma")"
expect "cut character" "$(printf 'x\357\277\275')" "$(echo 236781 433 | "$bin" detokenize -m "$gemma")"
expect "invalid byte" "$(printf '\357\277\275x')" "$(echo 407 236781 | "$bin" detokenize -m "$gemma")"
expect "ids across lines" "Hello world" "$(printf '19556\n\n  905\n' | "$bin" detokenize -m "$smol")"

# errors
status "no model" 2 "$bin" tokenize
status "unknown option" 2 "$bin" tokenize -m "$smol" --bogus
status "missing model file" 3 "$bin" tokenize -m "$tmp/none.gguf"
printf 'not a gguf' >"$tmp/bad.gguf"
status "not a GGUF" 3 "$bin" tokenize -m "$tmp/bad.gguf"
echo 1 x 2 >"$tmp/in"
status "not an id" 2 sh -c '"$1" detokenize -m "$2" <"$3"' sh "$bin" "$smol" "$tmp/in"
echo 49152 >"$tmp/in"
status "id out of range" 2 sh -c '"$1" detokenize -m "$2" <"$3"' sh "$bin" "$smol" "$tmp/in"
status "detokenize no model" 2 "$bin" detokenize

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
