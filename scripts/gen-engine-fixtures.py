#!/usr/bin/env python3
"""gen-engine-fixtures.py - reference outputs of llama.cpp for the real models.

For each development model (SmolLM2 135M Q4_1, Gemma 3 270M Q4_K_M) this runs a
fixed set of chat prompts through llama.cpp (PyPI llama-cpp-python) and writes
tests/fixtures/engine/<model-stem>.json, which the engine tests compare with:

  1. the conversation is rendered with the model's chat template the way
     Hugging Face does it (jinja2, trim_blocks, lstrip_blocks,
     add_generation_prompt=True, bos_token/eos_token from the vocabulary);
     a GGUF without an embedded template gets the model family's official
     template (recorded in the fixture, with where it came from);
  2. the text is tokenised as llama.cpp's chat CLI does it: a leading BOS text
     emitted by the template is dropped when the vocabulary adds BOS itself,
     then tokenize(add_special=True, parse_special=True);
  3. 64 tokens are generated greedily (pure argmax, no penalties), one token
     per decode after a single prompt batch, ignoring end-of-generation tokens;
     the index of the first end-of-generation token is recorded;
  4. prompt + the 64 generated tokens are evaluated again in one batch
     (teacher forcing) and at the last prompt position and at each generated
     position the top-16 (id, logit) pairs are kept (logits rounded to 4
     decimals).

This is a developer tool: run it once, commit its output.  It needs the pyenv
python with llama_cpp, jinja2 and gguf; `make check` never runs it.

Usage: scripts/gen-engine-fixtures.py [--models-dir DIR] [--out DIR] [MODEL...]
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np

try:
	import llama_cpp
	from llama_cpp import Llama
except ImportError:
	sys.exit("gen-engine-fixtures: needs llama-cpp-python (pip install llama-cpp-python)")
import gguf
import jinja2
import jinja2.sandbox

N_GEN = 64
TOP_K = 16
N_CTX = 2048
N_THREADS = 2
SEED = 1234

MODELS = [
	"SmolLM2-135M-Instruct.Q4_1.gguf",
	"gemma-3-270m-it-Q4_K_M.gguf",
]

# The Gemma 3 instruct template as published in google/gemma-3-*-it
# tokenizer_config.json.  The Gemma 3 270M GGUF we ship has no
# tokenizer.chat_template, so llama.cpp would fall back to ChatML, which the
# model was never trained on; ttychat must use this one (models.d override).
GEMMA3_TEMPLATE = (
	"{{ bos_token }}\n"
	"{%- if messages[0]['role'] == 'system' -%}\n"
	"    {%- if messages[0]['content'] is string -%}\n"
	"        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
	"    {%- else -%}\n"
	"        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n"
	"    {%- endif -%}\n"
	"    {%- set loop_messages = messages[1:] -%}\n"
	"{%- else -%}\n"
	"    {%- set first_user_prefix = \"\" -%}\n"
	"    {%- set loop_messages = messages -%}\n"
	"{%- endif -%}\n"
	"{%- for message in loop_messages -%}\n"
	"    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
	"        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
	"    {%- endif -%}\n"
	"    {%- if (message['role'] == 'assistant') -%}\n"
	"        {%- set role = \"model\" -%}\n"
	"    {%- else -%}\n"
	"        {%- set role = message['role'] -%}\n"
	"    {%- endif -%}\n"
	"    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
	"    {%- if message['content'] is string -%}\n"
	"        {{ message['content'] | trim }}\n"
	"    {%- elif message['content'] is iterable -%}\n"
	"        {%- for item in message['content'] -%}\n"
	"            {%- if item['type'] == 'image' -%}\n"
	"                {{ '<start_of_image>' }}\n"
	"            {%- elif item['type'] == 'text' -%}\n"
	"                {{ item['text'] | trim }}\n"
	"            {%- endif -%}\n"
	"        {%- endfor -%}\n"
	"    {%- else -%}\n"
	"        {{ raise_exception(\"Invalid content type\") }}\n"
	"    {%- endif -%}\n"
	"    {{ '<end_of_turn>\n' }}\n"
	"{%- endfor -%}\n"
	"{%- if add_generation_prompt -%}\n"
	"    {{'<start_of_turn>model\n'}}\n"
	"{%- endif -%}\n"
)
FALLBACK_TEMPLATES = {
	"gemma3": (GEMMA3_TEMPLATE,
		"google/gemma-3-270m-it tokenizer_config.json chat_template "
		"(the GGUF has no tokenizer.chat_template)"),
}

LONG_TEXT = (
	"The printing press was invented in the fifteenth century by Johannes "
	"Gutenberg, a goldsmith from Mainz. Before his invention, books were copied "
	"by hand, usually by monks working in monasteries, and a single book could "
	"take months or even years to finish. Gutenberg combined several existing "
	"technologies: the screw press used for making wine and olive oil, oil-based "
	"inks, and a system of movable metal type that could be cast quickly and "
	"reused many times. His most famous work, the Gutenberg Bible, was printed "
	"around 1455 and is still admired for its quality. Within fifty years, "
	"printing shops had spread to more than two hundred cities across Europe, "
	"and millions of books were in circulation. The lower cost of books helped "
	"spread literacy, supported the Renaissance and the Reformation, and made it "
	"possible for scientists to share their discoveries accurately and quickly. "
	"Historians often describe the printing press as one of the most important "
	"inventions of the second millennium."
)

CASES = [
	("fact_capital", [
		{"role": "user", "content": "What is the capital of France?"}]),
	("code_prime", [
		{"role": "user", "content": "Write a Python function that checks whether a number is prime."}]),
	("list_fruits", [
		{"role": "user", "content": "List five fruits that are red."}]),
	("translate_fr", [
		{"role": "user", "content": "Translate to French: The weather is nice today and I would like to go for a walk in the park."}]),
	("arithmetic", [
		{"role": "user", "content": "What is 17 multiplied by 23? Show your steps."}]),
	("unicode_emoji", [
		{"role": "user", "content": "What does the emoji \U0001F389 mean? Also repeat these words: na\u00efve caf\u00e9, \u65e5\u672c\u8a9e, \u00fcber, \u0645\u0631\u062d\u0628\u0627 \U0001F44B\U0001F3FD."}]),
	("multi_turn_system", [
		{"role": "system", "content": "You are a concise assistant. Answer in one or two sentences."},
		{"role": "user", "content": "Who wrote Hamlet?"},
		{"role": "assistant", "content": "Hamlet was written by William Shakespeare."},
		{"role": "user", "content": "Roughly when was it written, and what is it about?"}]),
	("long_summary", [
		{"role": "user", "content": LONG_TEXT + "\n\nSummarize the text above in two sentences."}]),
	("one_word", [
		{"role": "user", "content": "Hello"}]),
	("creative_poem", [
		{"role": "user", "content": "Write a short poem about the sea at night."}]),
	("explain_recursion", [
		{"role": "user", "content": "Explain recursion to a five-year-old."}]),
	("whitespace_code", [
		{"role": "user", "content": "  Fix the indentation of this code:\n\ndef add(a, b):\nreturn a + b\n\n\t "}]),
]


def sha256_file(path):
	h = hashlib.sha256()
	with open(path, "rb") as f:
		for chunk in iter(lambda: f.read(1 << 20), b""):
			h.update(chunk)
	return h.hexdigest()


def gguf_meta(path):
	"""The few metadata values we need, read with the gguf package."""
	r = gguf.GGUFReader(path)
	out = {}
	for key in ("general.architecture", "tokenizer.chat_template",
			"tokenizer.ggml.add_bos_token", "tokenizer.ggml.bos_token_id",
			"tokenizer.ggml.eos_token_id"):
		f = r.fields.get(key)
		out[key] = f.contents() if f is not None else None
	return out


def raise_exception(msg):
	raise jinja2.exceptions.TemplateError(msg)


def render_template(src, messages, bos, eos):
	env = jinja2.sandbox.ImmutableSandboxedEnvironment(
		trim_blocks=True, lstrip_blocks=True)
	env.globals["raise_exception"] = raise_exception
	tmpl = env.from_string(src)
	return tmpl.render(messages=messages, add_generation_prompt=True,
		bos_token=bos, eos_token=eos)


def llama_cpp_version():
	lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
	ggml = sorted(n for n in os.listdir(lib) if n.startswith("libggml-base.so."))
	ggml_v = ggml[-1][len("libggml-base.so."):] if ggml else "?"
	return "llama-cpp-python %s (ggml %s)" % (llama_cpp.__version__, ggml_v)


def token_piece(llm, tok):
	return llm.detokenize([tok], special=True).decode("utf-8", "replace")


def rounded(x):
	return round(float(x), 4)


# Reference configuration: F32 KV cache, no flash attention, the settings
# closest to exact arithmetic.  llama.cpp's default F16 KV cache moves the
# logits of these small models noticeably (see the README), so a second run
# with an F16 cache is recorded beside it (case["kv_f16"]) for an engine that
# keeps F16 keys and values.
KV_REF = llama_cpp.GGML_TYPE_F32
KV_F16 = llama_cpp.GGML_TYPE_F16


def open_llama(path, kv_type):
	return Llama(model_path=path, n_ctx=N_CTX, n_threads=N_THREADS,
		n_threads_batch=N_THREADS, n_batch=N_CTX, n_ubatch=512,
		logits_all=True, seed=SEED, flash_attn=False,
		type_k=kv_type, type_v=kv_type, verbose=False)


def reference_run(llm, prompt, eog_ids):
	"""Greedy generation, then teacher-forced top-k at each position."""
	llm.reset()
	llm.eval(prompt)
	gen = []
	for _ in range(N_GEN):
		tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
		gen.append(tok)
		llm.eval([tok])
	first_eog = next((i for i, t in enumerate(gen) if t in eog_ids), None)

	llm.reset()
	llm.eval(prompt + gen)
	scores = np.array(llm.scores[:len(prompt) + N_GEN], dtype=np.float32)
	positions = []
	mismatch = 0
	for k in range(N_GEN + 1):
		row = scores[len(prompt) - 1 + k]
		top = np.argsort(-row, kind="stable")[:TOP_K]
		pos = {"top": [[int(t), rounded(row[t])] for t in top]}
		if k < N_GEN:
			pos["next_id"] = gen[k]
			pos["next_logit"] = rounded(row[gen[k]])
			if int(top[0]) != gen[k]:
				mismatch += 1
		positions.append(pos)
	return {"gen_ids": gen, "first_eog_index": first_eog,
		"teacher_forced_top1_mismatches": mismatch, "positions": positions}


def run_model(path, out_dir):
	meta = gguf_meta(path)
	arch = meta["general.architecture"]
	tmpl_src = meta["tokenizer.chat_template"]
	tmpl_origin = "embedded tokenizer.chat_template"
	if tmpl_src is None:
		if arch not in FALLBACK_TEMPLATES:
			sys.exit("%s: no chat template and no fallback for %s" % (path, arch))
		tmpl_src, tmpl_origin = FALLBACK_TEMPLATES[arch]

	llm = open_llama(path, KV_REF)
	llm16 = open_llama(path, KV_F16)
	vocab = llm._model.vocab
	n_vocab = llm.n_vocab()
	bos_id = llm.token_bos()
	eos_id = llm.token_eos()
	bos_text = token_piece(llm, bos_id) if bos_id >= 0 else ""
	eos_text = token_piece(llm, eos_id) if eos_id >= 0 else ""
	add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
	eog_ids = [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]

	cases = []
	for name, messages in CASES:
		text = render_template(tmpl_src, messages, bos_text, eos_text)
		# llama.cpp's chat path drops a template-emitted BOS when the
		# vocabulary adds one itself, then tokenises with add_special.
		tok_text = text
		if add_bos and bos_text and tok_text.startswith(bos_text):
			tok_text = tok_text[len(bos_text):]
		prompt = llm.tokenize(tok_text.encode("utf-8"), add_bos=True, special=True)
		if len(prompt) + N_GEN > N_CTX:
			sys.exit("%s: prompt too long" % name)

		ref = reference_run(llm, prompt, eog_ids)
		alt = reference_run(llm16, prompt, eog_ids)
		div = next((i for i, (a, b) in enumerate(zip(ref["gen_ids"], alt["gen_ids"])) if a != b), None)
		gen_text = llm.detokenize(ref["gen_ids"], special=True).decode("utf-8", "replace")
		case = {"name": name, "messages": messages, "prompt_text": text,
			"prompt_ids": [int(t) for t in prompt]}
		case.update(ref)
		case["gen_text"] = gen_text
		alt["first_divergence_from_gen_ids"] = div
		case["kv_f16"] = alt
		cases.append(case)
		print("  %-18s prompt %3d tok, eog at %s, f16-kv diverges at %s: %r" % (
			name, len(prompt), ref["first_eog_index"], div, gen_text[:50]))

	doc = {
		"model_file": os.path.basename(path),
		"model_sha256": sha256_file(path),
		"llama_cpp_version": llama_cpp_version(),
		"architecture": arch,
		"settings": {"n_ctx": N_CTX, "n_threads": N_THREADS, "seed": SEED,
			"kv_cache": "f32 (case.kv_f16: f16)", "flash_attn": False,
			"n_gen": N_GEN, "top_k": TOP_K, "sampling": "greedy argmax, no penalties, EOG ignored"},
		"chat_template": tmpl_src,
		"chat_template_source": tmpl_origin,
		"bos_id": bos_id, "eos_id": eos_id, "add_bos": add_bos,
		"eog_ids": eog_ids,
		"cases": cases,
	}
	stem = os.path.splitext(os.path.basename(path))[0]
	out = os.path.join(out_dir, stem + ".json")
	with open(out, "w", encoding="utf-8") as f:
		json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
		f.write("\n")
	print("wrote %s (%d bytes)" % (out, os.path.getsize(out)))


def main():
	here = os.path.dirname(os.path.abspath(__file__))
	ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	ap.add_argument("--models-dir", default=os.environ.get("TTYCHAT_MODELS_DIR",
		os.path.join(os.environ.get("XDG_DATA_HOME",
			os.path.expanduser("~/.local/share")), "ttychat", "models")))
	ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "engine"))
	ap.add_argument("models", nargs="*", default=MODELS)
	args = ap.parse_args()
	os.makedirs(args.out, exist_ok=True)
	for m in args.models:
		path = m if os.path.sep in m else os.path.join(args.models_dir, m)
		print(path)
		run_model(path, args.out)


if __name__ == "__main__":
	main()
