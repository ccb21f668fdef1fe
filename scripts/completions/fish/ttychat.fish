# fish completion for ttychat(1): commands, every option of the chat and of
# each command (tests/test_doc.py checks them against --help), model names
# from models.d (`ttychat models --names`), GGUF files, themes and values.
# Installed into fish's vendor completions folder.

# the ttychat being completed, else the one on PATH
function __ttychat_bin
    set -l bin (commandline -opc)[1]
    command -q -- $bin; and echo $bin; or echo ttychat
end

function __ttychat_models
    set -l bin (__ttychat_bin)
    $bin models --names 2>/dev/null
end

function __ttychat_themes
    printf '%s\n' default light mono
    set -l conf $HOME/.config
    set -q XDG_CONFIG_HOME; and set conf $XDG_CONFIG_HOME
    for f in $conf/ttychat/themes/*.theme
        basename $f .theme
    end
end

# no command given: the chat's options
function __ttychat_chat
    set -l w (commandline -opc)
    not contains -- "$w[2]" inspect template history bench perplexity tokenize detokenize keys models pull serve
end

# the command is $argv[1]
function __ttychat_cmd
    set -l w (commandline -opc)
    test "$w[2]" = "$argv[1]"
end

# `ttychat history $argv[1]`
function __ttychat_history
    set -l w (commandline -opc)
    test "$w[2]" = history; and test "$w[3]" = "$argv[1]"
end

complete -c ttychat -f

# the commands
complete -c ttychat -n '__fish_is_first_arg' -a inspect -d 'describe a GGUF model file'
complete -c ttychat -n '__fish_is_first_arg' -a template -d "render a chat with a model's template"
complete -c ttychat -n '__fish_is_first_arg' -a history -d 'browse, export or remove saved chats'
complete -c ttychat -n '__fish_is_first_arg' -a bench -d 'prefill and decode speed'
complete -c ttychat -n '__fish_is_first_arg' -a perplexity -d 'perplexity and KL divergence'
complete -c ttychat -n '__fish_is_first_arg' -a tokenize -d 'print the token ids of stdin'
complete -c ttychat -n '__fish_is_first_arg' -a detokenize -d 'print the text of token ids on stdin'
complete -c ttychat -n '__fish_is_first_arg' -a keys -d "the full-screen chat's keys and commands"
complete -c ttychat -n '__fish_is_first_arg' -a models -d 'list the models.d entries and model files'
complete -c ttychat -n '__fish_is_first_arg' -a pull -d 'download a model (also ORG/REPO:QUANT from Hugging Face)'
complete -c ttychat -n '__fish_is_first_arg' -a serve -d 'an OpenAI-compatible HTTP server on the local model'

# the chat and one-shot options
complete -c ttychat -n __ttychat_chat -s m -l model -r -F -a '(__ttychat_models)' -d 'model file or models.d name'
complete -c ttychat -n __ttychat_chat -s p -l prompt -r -d 'prompt (- reads stdin)'
complete -c ttychat -n __ttychat_chat -l system -r -d 'system message, or @FILE'
complete -c ttychat -n __ttychat_chat -s n -l max-tokens -x -d 'stop after N tokens'
complete -c ttychat -n __ttychat_chat -l temp -x -d temperature
complete -c ttychat -n __ttychat_chat -l top-k -x -d 'top-k sampling'
complete -c ttychat -n __ttychat_chat -l top-p -x -d 'nucleus sampling'
complete -c ttychat -n __ttychat_chat -l min-p -x -d 'min-p sampling'
complete -c ttychat -n __ttychat_chat -l repeat-penalty -x -d 'repetition penalty'
complete -c ttychat -n __ttychat_chat -l presence-penalty -x -d 'presence penalty'
complete -c ttychat -n __ttychat_chat -l frequency-penalty -x -d 'frequency penalty'
complete -c ttychat -n __ttychat_chat -l seed -x -d 'sampling seed'
complete -c ttychat -n __ttychat_chat -l stop -x -d 'stop string (repeatable)'
complete -c ttychat -n __ttychat_chat -l grammar -r -F -d 'GBNF grammar the reply must follow'
complete -c ttychat -n __ttychat_chat -l json-schema -r -F -d 'JSON Schema the reply must be valid under'
complete -c ttychat -n __ttychat_chat -l tools -r -F -d 'OpenAI tools array the model may call'
complete -c ttychat -n __ttychat_chat -l tool-choice -x -a 'auto none required' -d 'which calls: auto, none, required or a name'
complete -c ttychat -n __ttychat_chat -l no-template -d 'raw completion'
complete -c ttychat -n __ttychat_chat -l think -x -a 'on off' -d 'thinking models: think or not'
complete -c ttychat -n __ttychat_chat -l reasoning-effort -x -a 'low medium high' -d 'how hard a thinking model thinks'
complete -c ttychat -n __ttychat_chat -l reasoning-budget -x -d 'close the reasoning after N tokens'
complete -c ttychat -n __ttychat_chat -l show-reasoning -d 'reasoning to stderr'
complete -c ttychat -n __ttychat_chat -l ignore-eos -d 'never end the turn'
complete -c ttychat -n __ttychat_chat -l remote -x -d 'OpenAI-compatible server URL'
complete -c ttychat -n __ttychat_chat -s c -l ctx-size -x -d 'context size'
complete -c ttychat -n __ttychat_chat -s t -l threads -x -d 'compute threads'
complete -c ttychat -n __ttychat_chat -l kv-type -x -a 'f16 q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl q3r' -d 'KV cache type of K and V'
complete -c ttychat -n __ttychat_chat -l cache-type-k -x -a 'f16 q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl q3r' -d 'K cache type'
complete -c ttychat -n __ttychat_chat -l cache-type-v -x -a 'f16 q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl q3r' -d 'V cache type'
complete -c ttychat -n __ttychat_chat -l kv-rotation -x -a 'on off' -d 'rotate quantised K/V rows'
complete -c ttychat -n __ttychat_chat -l device -x -a 'auto cpu cuda' -d 'where the model runs'
complete -c ttychat -n __ttychat_chat -l gpu-layers -x -d 'layers on the GPU (-1 as many as fit, 0 none)'
complete -c ttychat -n __ttychat_chat -l draft -r -d 'draft model for speculative decoding'
complete -c ttychat -n __ttychat_chat -l spec -x -a 'auto off ngram draft' -d 'speculative decoding'
complete -c ttychat -n __ttychat_chat -l draft-max -x -d 'tokens guessed per pass'
complete -c ttychat -n __ttychat_chat -l json -d 'JSON lines (--json=final: only the summary)'
complete -c ttychat -n __ttychat_chat -l save -d 'save in the history'
complete -c ttychat -n __ttychat_chat -l continue -x -d 'continue saved conversation ID'
complete -c ttychat -n __ttychat_chat -l theme -x -a '(__ttychat_themes)' -d 'colour theme'
complete -c ttychat -n __ttychat_chat -s v -l verbose -d 'progress and statistics on stderr'
complete -c ttychat -n __ttychat_chat -s h -l help -d help
complete -c ttychat -n __ttychat_chat -l version -d version

# inspect FILE
complete -c ttychat -n '__ttychat_cmd inspect' -F
complete -c ttychat -n '__ttychat_cmd inspect' -l tensors -d 'list every tensor'
complete -c ttychat -n '__ttychat_cmd inspect' -l json -d 'one JSON object'

# template
complete -c ttychat -n '__ttychat_cmd template' -s m -r -F -d 'take the template from this GGUF file'
complete -c ttychat -n '__ttychat_cmd template' -l template -r -F -d 'render this Jinja template file'
complete -c ttychat -n '__ttychat_cmd template' -l builtin -x -a 'chatml llama2 mistral mistral-nemo llama3 gemma phi3 deepseek zephyr command-r vicuna' -d 'render a built-in format'
complete -c ttychat -n '__ttychat_cmd template' -l no-generation-prompt -d 'do not open an assistant turn'
complete -c ttychat -n '__ttychat_cmd template' -l strict -d 'fail instead of falling back'
complete -c ttychat -n '__ttychat_cmd template' -l vars -x -d 'extra template variables (JSON)'
complete -c ttychat -n '__ttychat_cmd template' -l bos -x -d 'BOS token text'
complete -c ttychat -n '__ttychat_cmd template' -l eos -x -d 'EOS token text'
complete -c ttychat -n '__ttychat_cmd template' -l detect -d 'print the detected family'

# history
complete -c ttychat -n '__ttychat_cmd history; and __fish_is_nth_token 2' -a 'list show search export rm repair passwd'
complete -c ttychat -n '__ttychat_history list' -l json -d 'as JSON'
complete -c ttychat -n '__ttychat_history show' -l all -d 'also the versions replaced by /regen and /edit'
complete -c ttychat -n '__ttychat_history search' -l all -d 'also the versions replaced by /regen and /edit'
complete -c ttychat -n '__ttychat_history export' -l format -x -a 'md json' -d 'output format'
complete -c ttychat -n '__ttychat_history export' -l all -d 'also the versions replaced by /regen and /edit'
complete -c ttychat -n '__ttychat_history passwd' -l remove -d 'remove the passphrase'

# bench
complete -c ttychat -n '__ttychat_cmd bench' -s m -l model -r -F -a '(__ttychat_models)' -d model
complete -c ttychat -n '__ttychat_cmd bench' -s p -l n-prompt -x -d 'prompt tokens'
complete -c ttychat -n '__ttychat_cmd bench' -s n -l n-gen -x -d 'generated tokens'
complete -c ttychat -n '__ttychat_cmd bench' -s t -l threads -x -d threads
complete -c ttychat -n '__ttychat_cmd bench' -s r -l repetitions -x -d 'runs per test'
complete -c ttychat -n '__ttychat_cmd bench' -s b -l batch -x -d 'prefill batch'
complete -c ttychat -n '__ttychat_cmd bench' -l device -x -a 'auto cpu cuda' -d 'where the layers run'
complete -c ttychat -n '__ttychat_cmd bench' -l gpu-layers -x -d 'layers on the GPU'
complete -c ttychat -n '__ttychat_cmd bench' -l spec -x -a 'auto ngram draft' -d 'measure speculative decoding'
complete -c ttychat -n '__ttychat_cmd bench' -l draft -r -d 'draft model'
complete -c ttychat -n '__ttychat_cmd bench' -l draft-max -x -d 'tokens guessed per pass'
complete -c ttychat -n '__ttychat_cmd bench' -l prompt-file -r -d 'one more task'
complete -c ttychat -n '__ttychat_cmd bench' -l json -d 'JSON output'
complete -c ttychat -n '__ttychat_cmd bench' -l kv-type -x -a 'f16 q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl q3r' -d 'KV cache type of K and V'
complete -c ttychat -n '__ttychat_cmd bench' -l cache-type-k -x -a 'f16 q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl q3r' -d 'K cache type'
complete -c ttychat -n '__ttychat_cmd bench' -l cache-type-v -x -a 'f16 q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl q3r' -d 'V cache type'
complete -c ttychat -n '__ttychat_cmd bench' -l kv-rotation -x -a 'on off' -d 'rotate quantised K/V rows'
# perplexity
complete -c ttychat -n '__ttychat_cmd perplexity' -s m -l model -r -F -a '(__ttychat_models)' -d model
complete -c ttychat -n '__ttychat_cmd perplexity' -s f -l file -r -F -d 'text to score'
complete -c ttychat -n '__ttychat_cmd perplexity' -s c -l ctx-size -x -d 'tokens per chunk'
complete -c ttychat -n '__ttychat_cmd perplexity' -s b -l batch -x -d 'tokens per forward pass'
complete -c ttychat -n '__ttychat_cmd perplexity' -l chunks -x -d 'chunks to score'
complete -c ttychat -n '__ttychat_cmd perplexity' -s t -l threads -x -d threads
complete -c ttychat -n '__ttychat_cmd perplexity' -l kl-divergence-base -r -F -d 'logits file'
complete -c ttychat -n '__ttychat_cmd perplexity' -l kl-divergence -d 'compare with the logits file'
complete -c ttychat -n '__ttychat_cmd perplexity' -l kv-type -x -a 'f16 q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl q3r' -d 'KV cache type of K and V'
complete -c ttychat -n '__ttychat_cmd perplexity' -l cache-type-k -x -a 'f16 q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl q3r' -d 'K cache type'
complete -c ttychat -n '__ttychat_cmd perplexity' -l cache-type-v -x -a 'f16 q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl q3r' -d 'V cache type'
complete -c ttychat -n '__ttychat_cmd perplexity' -l kv-rotation -x -a 'on off' -d 'rotate quantised K/V rows'

# tokenize, detokenize
complete -c ttychat -n '__ttychat_cmd tokenize' -s m -r -F -a '(__ttychat_models)' -d model
complete -c ttychat -n '__ttychat_cmd tokenize' -l no-bos -d 'add no BOS/EOS'
complete -c ttychat -n '__ttychat_cmd tokenize' -l special -d 'recognise control tokens'
complete -c ttychat -n '__ttychat_cmd tokenize' -l pieces -d 'one token per line'
complete -c ttychat -n '__ttychat_cmd detokenize' -s m -r -F -a '(__ttychat_models)' -d model
complete -c ttychat -n '__ttychat_cmd detokenize' -l special -d 'show control tokens'

# keys, models
complete -c ttychat -n '__ttychat_cmd keys' -l man -d 'as man(7) source'
complete -c ttychat -n '__ttychat_cmd models' -l json -d 'one JSON array'
complete -c ttychat -n '__ttychat_cmd models' -l names -d 'only the names'

# pull NAME|URL|ORG/REPO:QUANT
complete -c ttychat -n '__ttychat_cmd pull; and __fish_is_nth_token 2' -a '(__ttychat_models)' -d 'models.d entry'
complete -c ttychat -n '__ttychat_cmd pull' -s o -l output -r -F -d 'save as FILE'
complete -c ttychat -n '__ttychat_cmd pull' -l sha256 -x -d 'expected SHA-256'
complete -c ttychat -n '__ttychat_cmd pull' -l force -d 'download again'
complete -c ttychat -n '__ttychat_cmd pull' -s q -l quiet -d 'no progress bar'

# serve
complete -c ttychat -n '__ttychat_cmd serve' -l host -x -d 'address to listen on'
complete -c ttychat -n '__ttychat_cmd serve' -l port -x -d port
complete -c ttychat -n '__ttychat_cmd serve' -s m -l model -r -F -a '(__ttychat_models)' -d model
complete -c ttychat -n '__ttychat_cmd serve' -l api-key-file -r -F -d 'file holding the API key'
complete -c ttychat -n '__ttychat_cmd serve' -l max-queue -x -d 'requests that may wait'
complete -c ttychat -n '__ttychat_cmd serve' -l max-conns -x -d 'open connections'
complete -c ttychat -n '__ttychat_cmd serve' -l slots -x -d 'conversations with a kept KV cache'
complete -c ttychat -n '__ttychat_cmd serve' -s c -l ctx-size -x -d 'context size'
complete -c ttychat -n '__ttychat_cmd serve' -s t -l threads -x -d 'compute threads'
complete -c ttychat -n '__ttychat_cmd serve' -l kv-type -x -a 'f16 q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl q3r' -d 'KV cache type of K and V'
complete -c ttychat -n '__ttychat_cmd serve' -l cache-type-k -x -a 'f16 q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl q3r' -d 'K cache type'
complete -c ttychat -n '__ttychat_cmd serve' -l cache-type-v -x -a 'f16 q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl q3r' -d 'V cache type'
complete -c ttychat -n '__ttychat_cmd serve' -l kv-rotation -x -a 'on off' -d 'rotate quantised K/V rows'
complete -c ttychat -n '__ttychat_cmd serve' -l device -x -a 'auto cpu cuda' -d 'where the model runs'
complete -c ttychat -n '__ttychat_cmd serve' -l gpu-layers -x -d 'layers on the GPU'
complete -c ttychat -n '__ttychat_cmd serve' -l draft -r -d 'draft model'
complete -c ttychat -n '__ttychat_cmd serve' -l spec -x -a 'auto off ngram draft' -d 'speculative decoding'
complete -c ttychat -n '__ttychat_cmd serve' -l draft-max -x -d 'tokens guessed per pass'
complete -c ttychat -n '__ttychat_cmd serve' -s v -l verbose -d 'one line per request'
