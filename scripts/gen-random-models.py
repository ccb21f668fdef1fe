#!/usr/bin/env python3
"""gen-random-models.py - tiny random-weight GGUF models and llama.cpp references.

Writes tests/fixtures/engine/random/<name>.gguf and <name>.json for the
architectures and tensor types the engine must support, all deterministic
(fixed numpy seed per model):

  llama3-<type>     Llama 3 shape (GQA, rope theta 500000, untied output),
                    one file per tensor type.  The K-quant files use
                    n_embd 256 / n_ff 512 (K-quant rows are multiples of 256);
                    the others a smaller shape so the F16/BF16 files stay
                    small.  Quantised by llama.cpp itself
                    (llama_model_quantize, pure=True so every 2-D weight has
                    that type; 1-D norms stay F32); llama3-q4_k_m is the
                    standard Q4_K_M mix (pure=False).
  llama-tied-f32    llama, tied embeddings (no output.weight), MQA, no
                    rope.freq_base key (default 10000), written in F32.
  qwen2-f16         q/k/v biases, tied, theta 1e6.
  qwen3-f16         q_norm/k_norm, key_length 48 != n_embd/n_head (32).
  phi3-f16          fused attn_qkv, fused ffn_up (gate rows then up rows).
  qwen3moe-*        mixture of experts: qwen3's attention, a softmax router
                    choosing 4 of 16 (F16) or 2 of 8 (Q4_K_M) experts.
  smollm3-f16       every 4th layer without rope.
  granite-f16       granite's embedding, residual, attention and logit scales;
  granitemoe-f16    the same with 2 of 8 experts and a shared expert.
  qwen3vl*-f16      Qwen3-VL's text model: interleaved rope sections.
  glm4moe-f16       GLM-4.5's block, DeepSeek-V3's grouped sigmoid routing.
  mistral3-f16      YaRN and the attention temperature of Ministral 3.
  gpt-oss-*         gpt-oss: biases, attention sinks, sliding window 8 on
                    even layers, YaRN x32 from 64 positions, 4 of 8 experts
                    (softmax over the chosen), clamped SwiGLU; F16 and the
                    MXFP4-experts mix.
  gemma4-*          Gemma 4's E2B, E4B, 26B-A4B and 31B blocks in 10 or 6
                    layers (see MODELS).
  gemma3-f16        6 layers (5 sliding-window + 1 global, default pattern 6),
                    sliding_window 8, rope theta 1e6 global / 10000 local
                    (local base not in the file, as in the real Gemma 3 GGUF),
                    key_length 32 with n_embd 64, pre/post norms, tied.

Every model shares one byte-level BPE vocabulary of 512 tokens (gpt2 model,
pre-tokenizer "default"): 0 = <s> (BOS), 1 = </s> (EOS), 2..257 the 256
bytes, 258..511 merges learnt from a fixed English text.

For each file the JSON holds what llama.cpp computes (F32 KV cache, no flash
attention, 2 threads): full logits (4 decimals) at the last 32 positions of a
fixed 40-token sequence evaluated in one batch, and 32 greedy tokens after a
short prompt (end-of-generation ignored), plus the per-tensor type mix.

Developer tool, needs the pyenv python with gguf, numpy, regex and
llama_cpp; `make check` never runs it.
Usage: scripts/gen-random-models.py [--out DIR] [--keep-masters DIR] [NAME...]
"""

import argparse
import collections
import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import gguf
import regex

try:
	import llama_cpp
	from llama_cpp import Llama
except ImportError:
	sys.exit("gen-random-models: needs llama-cpp-python (pip install llama-cpp-python)")

N_VOCAB = 512
SEQ_LEN = 40
N_LOGIT_POS = 32
N_GEN = 32
PROMPT = "Once upon a time"
SEQ_SEED = 4242
N_THREADS = 2

# ---------------------------------------------------------------- tokenizer

TRAIN_TEXT = """
Once upon a time there was a little robot who lived in a quiet town by the sea.
Every morning the robot walked to the harbour and counted the boats. One, two,
three, four, five. The fishermen waved and the robot waved back. In the evening
the robot read books about the stars, the moon and the weather, and it wrote
short notes in a small blue notebook: "Today the wind was cold. Tomorrow I will
try again." The children of the town loved the robot because it could answer
almost any question. What is the capital of France? Paris. How much is twelve
times twelve? One hundred and forty-four. Where do the birds go in winter? They
fly south, where the days are warm and the food is easy to find. The robot was
happy, and the town was happy, and the sea kept singing its old song.
def hello(name): return "Hello, " + name + "!"  # 2024-01-01 12:00
"""

# GPT-2 pre-tokenizer (llama.cpp's "default" BPE pre-tokenizer).
PRETOK = regex.compile(
	r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def byte_to_unicode():
	"""GPT-2's reversible byte -> printable character map."""
	keep = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD))
		+ list(range(0xAE, 0x100)))
	table = {}
	extra = 0
	for b in range(256):
		if b in keep:
			table[b] = chr(b)
		else:
			table[b] = chr(256 + extra)
			extra += 1
	return table


def train_bpe(text, n_merges):
	"""Plain BPE over pre-tokenized words; ties broken by pair text."""
	b2u = byte_to_unicode()
	words = collections.Counter()
	for piece in PRETOK.findall(text):
		words[tuple(b2u[b] for b in piece.encode("utf-8"))] += 1
	merges = []
	for _ in range(n_merges):
		pairs = collections.Counter()
		for w, c in words.items():
			for a, b in zip(w, w[1:]):
				pairs[(a, b)] += c
		if not pairs:
			break
		best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
		merges.append(best)
		joined = best[0] + best[1]
		nw = collections.Counter()
		for w, c in words.items():
			out = []
			i = 0
			while i < len(w):
				if i + 1 < len(w) and (w[i], w[i + 1]) == best:
					out.append(joined)
					i += 2
				else:
					out.append(w[i])
					i += 1
			nw[tuple(out)] += c
		words = nw
	return merges


def build_vocab():
	b2u = byte_to_unicode()
	tokens = ["<s>", "</s>"] + [b2u[b] for b in range(256)]
	types = [gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.NORMAL] * 256
	merges = train_bpe(TRAIN_TEXT, N_VOCAB - len(tokens))
	for a, b in merges:
		tokens.append(a + b)
		types.append(gguf.TokenType.NORMAL)
	if len(tokens) != N_VOCAB or len(set(tokens)) != N_VOCAB:
		sys.exit("tokenizer: got %d tokens (%d distinct)" % (len(tokens), len(set(tokens))))
	return tokens, types, ["%s %s" % m for m in merges]


VOCAB = None


def add_tokenizer(w):
	tokens, types, merges = VOCAB
	w.add_tokenizer_model("gpt2")
	w.add_tokenizer_pre("default")
	w.add_token_list(tokens)
	w.add_token_types(types)
	w.add_token_merges(merges)
	w.add_bos_token_id(0)
	w.add_eos_token_id(1)
	w.add_add_bos_token(True)
	w.add_add_eos_token(False)

# ---------------------------------------------------------------- models

# Shapes.  head_dim is n_embd/n_head unless key_length is given.
KQ = dict(n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_layer=2)
SMALL = dict(n_embd=128, n_ff=384, n_head=4, n_head_kv=2, n_layer=2)

LLAMA3 = dict(arch="llama", tied=False, rope_base=500000.0, eps=1e-5, ctx=8192)
GEMMA4 = dict(arch="gemma4", tied=True, rope_base=1000000.0, eps=1e-6, ctx=4096, n_embd=64,
	n_ff=128, n_head=4, key_length=64, key_length_swa=32, sliding_window=8, softcap=30.0)
GPT_OSS = dict(arch="gpt-oss", tied=False, rope_base=150000.0, eps=1e-5, ctx=4096,
	n_embd=128, n_ff=256, n_head=4, n_head_kv=2, n_layer=4, key_length=64,
	sliding_window=8, rope_scaling=("yarn", 32.0, 64),
	n_expert=8, n_expert_used=4, n_ff_exp=64)

# name -> (config, output kind).  kind: ("f32",) written directly;
# ("quant", llama_ftype, pure) quantised from the F32 master by llama.cpp.
F = llama_cpp
QWEN35 = dict(arch="qwen35", tied=True, rope_base=100.0, eps=1e-6, ctx=4096, key_length=64,
	rope_dims=16, rope_sections=[3, 3, 2, 0], n_embd=128, n_ff=256, n_head=4, n_head_kv=2,
	n_layer=4, ssm=dict(conv=4, state=32, groups=2, heads_v=4))

MODELS = collections.OrderedDict([
	("llama3-f16",  (dict(LLAMA3, **SMALL), ("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("llama3-bf16", (dict(LLAMA3, **SMALL), ("quant", F.LLAMA_FTYPE_MOSTLY_BF16, True))),
	("llama3-q4_0", (dict(LLAMA3, **SMALL), ("quant", F.LLAMA_FTYPE_MOSTLY_Q4_0, True))),
	("llama3-q4_1", (dict(LLAMA3, **SMALL), ("quant", F.LLAMA_FTYPE_MOSTLY_Q4_1, True))),
	("llama3-q5_0", (dict(LLAMA3, **SMALL), ("quant", F.LLAMA_FTYPE_MOSTLY_Q5_0, True))),
	("llama3-q5_1", (dict(LLAMA3, **SMALL), ("quant", F.LLAMA_FTYPE_MOSTLY_Q5_1, True))),
	("llama3-q8_0", (dict(LLAMA3, **SMALL), ("quant", F.LLAMA_FTYPE_MOSTLY_Q8_0, True))),
	("llama3-q2_k", (dict(LLAMA3, **KQ), ("quant", F.LLAMA_FTYPE_MOSTLY_Q2_K, True))),
	("llama3-q3_k", (dict(LLAMA3, **KQ), ("quant", F.LLAMA_FTYPE_MOSTLY_Q3_K_M, True))),
	("llama3-q4_k", (dict(LLAMA3, **KQ), ("quant", F.LLAMA_FTYPE_MOSTLY_Q4_K_M, True))),
	("llama3-q5_k", (dict(LLAMA3, **KQ), ("quant", F.LLAMA_FTYPE_MOSTLY_Q5_K_M, True))),
	("llama3-q6_k", (dict(LLAMA3, **KQ), ("quant", F.LLAMA_FTYPE_MOSTLY_Q6_K, True))),
	("llama3-q4_k_m", (dict(LLAMA3, **KQ), ("quant", F.LLAMA_FTYPE_MOSTLY_Q4_K_M, False))),
	("llama-tied-f32", (dict(arch="llama", tied=True, rope_base=None, eps=1e-5, ctx=2048,
		n_embd=128, n_ff=192, n_head=4, n_head_kv=1, n_layer=2), ("f32",))),
	("qwen2-f16", (dict(arch="qwen2", tied=True, rope_base=1000000.0, eps=1e-6, ctx=4096,
		**SMALL), ("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("qwen3-f16", (dict(arch="qwen3", tied=True, rope_base=1000000.0, eps=1e-6, ctx=4096,
		key_length=48, **SMALL), ("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("phi3-f16", (dict(arch="phi3", tied=False, rope_base=10000.0, eps=1e-5, ctx=4096,
		n_embd=128, n_ff=256, n_head=4, n_head_kv=4, n_layer=2),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("gemma3-f16", (dict(arch="gemma3", tied=True, rope_base=1000000.0, eps=1e-6, ctx=4096,
		n_embd=64, n_ff=128, n_head=4, n_head_kv=1, n_layer=6, key_length=32,
		sliding_window=8), ("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	# rope scaling as files carry it (issue 16): YaRN on llama and qwen3
	# with an original context below the 40-token sequence's reach
	("llama3-yarn-f16", (dict(LLAMA3, rope_scaling=("yarn", 4.0, 64), **SMALL),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("qwen3-yarn-f16", (dict(arch="qwen3", tied=True, rope_base=1000000.0, eps=1e-6, ctx=4096,
		key_length=48, rope_scaling=("yarn", 2.0, 32), **SMALL),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	# phi3 longrope: long factors when the context (256) exceeds the
	# original context, short ones otherwise; attention factor 1.19
	("phi3-longrope-f16", (dict(arch="phi3", tied=False, rope_base=10000.0, eps=1e-5, ctx=4096,
		n_embd=128, n_ff=256, n_head=4, n_head_kv=4, n_layer=2,
		rope_scaling=("longrope", None, 64), attn_factor=1.19, longrope=True),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("phi3-shortrope-f16", (dict(arch="phi3", tied=False, rope_base=10000.0, eps=1e-5, ctx=4096,
		n_embd=128, n_ff=256, n_head=4, n_head_kv=4, n_layer=2,
		rope_scaling=("longrope", None, 1024), attn_factor=1.19, longrope=True),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	# gemma3 4B+ style: a linear factor on the global layers only, an
	# explicit per-layer window pattern and final logit soft-capping
	("gemma3-scaled-f16", (dict(arch="gemma3", tied=True, rope_base=1000000.0, eps=1e-6, ctx=4096,
		n_embd=64, n_ff=128, n_head=4, n_head_kv=1, n_layer=6, key_length=32,
		sliding_window=8, rope_scaling=("linear", 8.0, None),
		swa_pattern=[True, False, True, True, True, False], softcap=30.0),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	# 62 layers: llama.cpp's Gemma 3 27B rule scales queries by
	# 1/sqrt(n_embd/n_head) (16 here) instead of 1/sqrt(head_dim) (32)
	("gemma3-62l-f16", (dict(arch="gemma3", tied=True, rope_base=1000000.0, eps=1e-6, ctx=4096,
		n_embd=32, n_ff=32, n_head=2, n_head_kv=1, n_layer=62, key_length=32,
		sliding_window=8), ("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	# mixtures of experts (issue 17): Qwen3-30B-A3B's block (q/k norms,
	# softmax router, top-k renormalised), 16 experts of which 4 are used;
	# the Q4_K_M file mixes K-quant types across the experts' matrices
	("qwen3moe-f16", (dict(arch="qwen3moe", tied=False, rope_base=1000000.0, eps=1e-6, ctx=4096,
		key_length=32, n_expert=16, n_expert_used=4, n_ff_exp=64, **SMALL),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("qwen3moe-q4_k_m", (dict(arch="qwen3moe", tied=False, rope_base=1000000.0, eps=1e-6, ctx=4096,
		n_expert=8, n_expert_used=2, n_ff_exp=256, **KQ),
		("quant", F.LLAMA_FTYPE_MOSTLY_Q4_K_M, False))),
	# gpt-oss-20b's block: biases everywhere, attention sinks, a sliding
	# window (8 here, 128 in the file) on every other layer, YaRN, the
	# router's softmax over the chosen logits, the clamped SwiGLU; F16 and
	# the MXFP4 expert file every gpt-oss download is
	("gpt-oss-f16", (dict(GPT_OSS), ("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("gpt-oss-mxfp4", (dict(GPT_OSS), ("quant", F.LLAMA_FTYPE_MOSTLY_MXFP4_MOE, False))),
	# dense families of 2025 that are llama with a twist: smollm3 leaves
	# every 4th layer unrotated (4 layers here: the last), granite scales
	# embeddings, residual branches, attention and logits, mistral3
	# (Ministral 3) raises the attention temperature with the position
	# past the original context and uses YaRN
	("smollm3-f16", (dict(arch="smollm3", tied=True, rope_base=5000000.0, eps=1e-6, ctx=4096,
		n_embd=128, n_ff=384, n_head=4, n_head_kv=2, n_layer=4),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("granite-f16", (dict(arch="granite", tied=True, rope_base=10000.0, eps=1e-5, ctx=4096,
		granite=dict(logit=4.0, residual=0.7, embedding=1.5, attention=0.0625),
		**SMALL), ("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("granitemoe-f16", (dict(arch="granitemoe", tied=True, rope_base=10000.0, eps=1e-5, ctx=4096,
		granite=dict(logit=4.0, residual=0.7, embedding=1.5, attention=0.0625),
		n_embd=128, n_ff=128, n_head=4, n_head_kv=2, n_layer=2,
		n_expert=8, n_expert_used=2, n_ff_exp=128, n_ff_shexp=96),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	# Qwen3-VL as a text model: qwen3 (and qwen3moe) with interleaved
	# rope sections, the real file's proportions (24:20:20 of 64 pairs
	# there, 12:10:10 of 32 here: the last pair stays unrotated), and
	# deepstack layers that add nothing to text; rope base 100 so that the
	# low-frequency pairs the fourth axis takes would turn visibly
	("qwen3vl-f16", (dict(arch="qwen3vl", tied=True, rope_base=100.0, eps=1e-6, ctx=4096,
		key_length=64, rope_sections=[12, 10, 10, 0], deepstack=2, **SMALL),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("qwen3vlmoe-f16", (dict(arch="qwen3vlmoe", tied=False, rope_base=100.0, eps=1e-6, ctx=4096,
		key_length=64, rope_sections=[12, 10, 10, 0], deepstack=2,
		n_expert=8, n_expert_used=2, n_ff_exp=64, **SMALL),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	# GLM-4.5-Air's block with DeepSeek-V3's routing: q/k/v biases, a
	# partial rope (32 of 64 dims), a leading dense layer, a sigmoid
	# router with a selection bias choosing 4 of 16 experts inside the 2
	# best of 4 groups, renormalised and scaled by 2.5, a shared expert,
	# and a multi-token-prediction block that the pass skips
	("glm4moe-f16", (dict(arch="glm4moe", tied=False, rope_base=1000000.0, eps=1e-5, ctx=4096,
		n_embd=128, n_ff=256, n_head=4, n_head_kv=2, n_layer=3, key_length=64, rope_dims=32,
		n_expert=16, n_expert_used=4, n_ff_exp=64, glm=dict(shared=1, dense_lead=1, groups=4,
		groups_used=2, scale=2.5, nextn=1)),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	# Qwen3.5's hybrid block (issue 18): three Gated DeltaNet layers
	# (causal conv of 4 taps, 2 key heads and 4 value heads of 32, the
	# delta rule with decay and strength per value head, the gated RMS
	# norm) then one gated attention layer ([q | gate] per head, q/k
	# norms, a partial interleaved rope: 16 of 64 dims in sections
	# 3:3:2); rope base 100 so that the rotated pairs turn visibly
	("qwen35-f16", (dict(QWEN35), ("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("qwen35-q4_k_m", (dict(QWEN35, n_embd=256, n_ff=512, ssm=dict(QWEN35["ssm"], state=64)),
		("quant", F.LLAMA_FTYPE_MOSTLY_Q4_K_M, False))),
	# Qwen3.6-35B-A3B's: the same layers, every FFN a mixture of 8
	# experts (2 used) beside a shared expert weighed by a sigmoid gate
	("qwen35moe-f16", (dict(QWEN35, arch="qwen35moe", n_expert=8, n_expert_used=2, n_ff_exp=64,
		n_ff_shexp=96, salt=8), ("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	# LFM2-1.2B's block (issue 18): short-convolution layers (in_proj to
	# b, c, x; y = c * conv(b * x) over 3 taps; out_proj) where the
	# per-layer KV head count is 0, attention layers with q/k norms
	# between them; the output norm stored as token_embd_norm
	("lfm2-f16", (dict(arch="lfm2", tied=True, rope_base=1000000.0, eps=1e-5, ctx=4096,
		n_embd=128, n_ff=256, n_head=4, n_head_kv=[0, 0, 2, 0, 2, 0], n_layer=6, key_length=32,
		shortconv=3), ("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	# LFM2-8B-A1B's: the same layers, a dense first layer, then mixtures
	# of 8 experts (2 chosen by sigmoid with a selection bias, renormalised)
	("lfm2moe-f16", (dict(arch="lfm2moe", tied=True, rope_base=1000000.0, eps=1e-5, ctx=4096,
		n_embd=128, n_ff=256, n_head=4, n_head_kv=[0, 0, 2, 0, 2, 0], n_layer=6, key_length=32,
		shortconv=3, n_expert=8, n_expert_used=2, n_ff_exp=64, lfm_dense_lead=1),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("mistral3-f16", (dict(arch="mistral3", tied=False, rope_base=1000000.0, eps=1e-5, ctx=4096,
		rope_scaling=("yarn", 16.0, 16), attn_temp=0.1, **SMALL),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	# Gemma 4 (issue 19), each size's block in fewer layers and small
	# dims: sliding-window layers (window 8, head 32, all 32 dims roped,
	# base 10000) in the file's pattern, global layers with a head of 64
	# roped on a quarter of it (rope_freqs 1e30 on the rest, base 1e6),
	# KV heads by layer kind, logits soft-capped at 30, a scale on every
	# layer's output.  E2B/E4B: per-layer inputs of 16 per layer, the last
	# 5 layers reading the K/V of layers 3 (sliding) and 4 (global); E2B's
	# shared layers twice as wide in the FFN.  26B-A4B: 2 of 8 experts
	# beside the dense FFN, K as V on global layers.  31B: dense, K as V
	# on global layers.
	("gemma4-e2b-f16", (dict(GEMMA4, n_layer=10, n_head_kv=1, n_head_kv_global=1, shared_kv=5,
		n_embd_pl=16, double_wide=True, swa_pattern=[True] * 4 + [False] + [True] * 4 + [False]),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("gemma4-e4b-f16", (dict(GEMMA4, n_layer=10, n_head_kv=2, n_head_kv_global=2, shared_kv=5,
		n_embd_pl=16, swa_pattern=[True] * 4 + [False] + [True] * 4 + [False]),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("gemma4-26b-a4b-f16", (dict(GEMMA4, n_layer=6, n_ff=96, n_head_kv=2, n_head_kv_global=1,
		k_eq_v=True, n_expert=8, n_expert_used=2, n_ff_exp=32, swa_pattern=[True] * 5 + [False]),
		("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	("gemma4-31b-f16", (dict(GEMMA4, n_layer=6, n_head_kv=2, n_head_kv_global=1, k_eq_v=True,
		swa_pattern=[True] * 5 + [False]), ("quant", F.LLAMA_FTYPE_MOSTLY_F16, True))),
	# the standard Q4_K_M mix of the two shapes the issue benchmarks (rows
	# of 64 fall back to the types llama.cpp picks for them: Q5_0, Q8_0,
	# Q4_K, Q6_K, F16).  These random blocks amplify rounding: llama.cpp's
	# own F16 and F32 caches differ by 2 logits here, its two attention
	# paths agree on 82-87% of top tokens, so they prove the types load and
	# run more than they measure closeness (the F16 files do that)
	("gemma4-e2b-q4_k_m", (dict(GEMMA4, n_layer=10, n_head_kv=1, n_head_kv_global=1, shared_kv=5,
		n_embd_pl=16, double_wide=True, swa_pattern=[True] * 4 + [False] + [True] * 4 + [False]),
		("quant", F.LLAMA_FTYPE_MOSTLY_Q4_K_M, False))),
	("gemma4-26b-a4b-q4_k_m", (dict(GEMMA4, n_layer=6, n_ff=96, n_head_kv=2, n_head_kv_global=1,
		k_eq_v=True, n_expert=8, n_expert_used=2, n_ff_exp=32, swa_pattern=[True] * 5 + [False]),
		("quant", F.LLAMA_FTYPE_MOSTLY_Q4_K_M, False))),
])

FILE_TYPE_F32 = 0


def gemma4_layout(cfg):
	"""Per layer of a Gemma 4 config: (sliding, head size, KV heads, FFN
	width, own K/V) as llama.cpp reads them."""
	n = cfg["n_layer"]
	n_kv = n - cfg.get("shared_kv", 0)
	out = []
	for il in range(n):
		swa = cfg["swa_pattern"][il]
		D = cfg["key_length_swa"] if swa else cfg["key_length"]
		G = cfg["n_head_kv"] if swa else cfg["n_head_kv_global"]
		FF = cfg["n_ff"] * (2 if cfg.get("double_wide") and il >= n_kv else 1)
		out.append((swa, D, G, FF, il < n_kv))
	return out


def make_gemma4_weights(cfg, rng, lin, norm):
	E, H, NL = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
	P = cfg.get("n_embd_pl", 0)
	t = collections.OrderedDict()
	t["token_embd.weight"] = rng.normal(0.0, 3.0 / np.sqrt(E), (N_VOCAB, E)).astype(np.float32)
	if P:
		t["per_layer_token_embd.weight"] = rng.normal(0.0, 1.0, (N_VOCAB, NL * P)).astype(np.float32)
		t["per_layer_model_proj.weight"] = lin(NL * P, E)
		t["per_layer_proj_norm.weight"] = norm(P)
	# the proportional rope of global layers: a quarter of the pairs turn
	Dg = cfg["key_length"]
	n_rot = Dg // 8
	t["rope_freqs.weight"] = np.array([1.0] * n_rot + [1e30] * (Dg // 2 - n_rot), dtype=np.float32)
	for il, (swa, D, G, FF, own) in enumerate(gemma4_layout(cfg)):
		p = "blk.%d." % il
		t[p + "attn_norm.weight"] = norm(E)
		t[p + "attn_q.weight"] = lin(H * D, E)
		if own:
			t[p + "attn_k.weight"] = lin(G * D, E)
			if not (cfg.get("k_eq_v") and not swa):
				t[p + "attn_v.weight"] = lin(G * D, E)
			t[p + "attn_k_norm.weight"] = norm(D)
		t[p + "attn_q_norm.weight"] = norm(D)
		t[p + "attn_output.weight"] = lin(E, H * D, 2.0)
		t[p + "post_attention_norm.weight"] = norm(E, 3.0)
		t[p + "layer_output_scale.weight"] = rng.uniform(0.7, 1.3, 1).astype(np.float32)
		t[p + "ffn_norm.weight"] = norm(E)
		t[p + "ffn_gate.weight"] = lin(FF, E)
		t[p + "ffn_up.weight"] = lin(FF, E)
		t[p + "ffn_down.weight"] = lin(E, FF, 2.0)
		t[p + "post_ffw_norm.weight"] = norm(E, 3.0)
		if "n_expert" in cfg:
			NE, FE = cfg["n_expert"], cfg["n_ff_exp"]
			t[p + "ffn_gate_inp.weight"] = lin(NE, E, 8.0 * np.sqrt(E))
			t[p + "ffn_gate_inp.scale"] = norm(E)
			t[p + "pre_ffw_norm_2.weight"] = norm(E)
			t[p + "post_ffw_norm_1.weight"] = norm(E, 2.0)
			t[p + "post_ffw_norm_2.weight"] = norm(E, 2.0)
			t[p + "ffn_gate_exps.weight"] = np.stack([lin(FE, E) for _ in range(NE)])
			t[p + "ffn_up_exps.weight"] = np.stack([lin(FE, E) for _ in range(NE)])
			t[p + "ffn_down_exps.weight"] = np.stack([lin(E, FE, 2.0) for _ in range(NE)])
			t[p + "ffn_down_exps.scale"] = rng.uniform(0.5, 1.5, NE).astype(np.float32)
		if P:
			t[p + "inp_gate.weight"] = lin(P, E)
			t[p + "proj.weight"] = lin(E, P, 2.0)
			t[p + "post_norm.weight"] = norm(E, 2.0)
	t["output_norm.weight"] = norm(E)
	return t


def write_gemma4_keys(w, cfg):
	w.add_key_length_swa(cfg["key_length_swa"])
	w.add_value_length_swa(cfg["key_length_swa"])
	w.add_rope_dimension_count(cfg["key_length"])
	w.add_rope_dimension_count_swa(cfg["key_length_swa"])
	w.add_rope_freq_base_swa(10000.0)
	w.add_shared_kv_layers(cfg.get("shared_kv", 0))
	w.add_embedding_length_per_layer_input(cfg.get("n_embd_pl", 0))


def model_seed(name):
	"""Models of one shape share weights: seed from the config, not the name."""
	return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def make_weights(cfg, rng):
	"""name -> float32 array in GGUF row-major order (rows = ne[1])."""
	E = cfg["n_embd"]
	FF = cfg["n_ff"]
	H = cfg["n_head"]
	HKV = cfg["n_head_kv"]
	D = cfg.get("key_length", E // H)
	arch = cfg["arch"]

	def lin(n_out, n_in, gain=1.0):
		return rng.normal(0.0, gain / np.sqrt(n_in), (n_out, n_in)).astype(np.float32)

	def norm(n, centre=1.0):
		return (centre + rng.normal(0.0, 0.1 * centre, n)).astype(np.float32)

	def bias(n):
		return rng.normal(0.0, 0.1, n).astype(np.float32)

	if arch == "gemma4":
		return make_gemma4_weights(cfg, rng, lin, norm)
	t = collections.OrderedDict()
	out_std = 3.0 / np.sqrt(E)   # logits with std ~3: clear top-1 margins
	if cfg["tied"]:
		t["token_embd.weight"] = rng.normal(0.0, out_std, (N_VOCAB, E)).astype(np.float32)
	else:
		t["token_embd.weight"] = rng.normal(0.0, 1.0, (N_VOCAB, E)).astype(np.float32)
	glm = cfg.get("glm")
	ssm = cfg.get("ssm")
	if arch in ("lfm2", "lfm2moe"):
		return make_lfm2_weights(cfg, t, lin, norm)
	for il in range(cfg["n_layer"] + (glm["nextn"] if glm else 0)):
		p = "blk.%d." % il
		t[p + "attn_norm.weight"] = norm(E)
		if ssm and (il + 1) % 4 != 0:
			# a Gated DeltaNet layer, in place of attention
			S, HK, HV, K = ssm["state"], ssm["groups"], ssm["heads_v"], ssm["conv"]
			C = S * (2 * HK + HV)
			t[p + "attn_qkv.weight"] = lin(C, E)
			t[p + "attn_gate.weight"] = lin(HV * S, E)
			t[p + "ssm_conv1d.weight"] = rng.normal(0.0, 0.5, (C, K)).astype(np.float32)
			t[p + "ssm_dt.bias"] = rng.normal(0.0, 0.5, HV).astype(np.float32)
			# -exp(A_log): decays from fast to slow across the heads
			t[p + "ssm_a"] = (-np.exp(rng.uniform(-2.0, 1.0, HV))).astype(np.float32)
			t[p + "ssm_beta.weight"] = lin(HV, E)
			t[p + "ssm_alpha.weight"] = lin(HV, E)
			t[p + "ssm_norm.weight"] = norm(S)
			t[p + "ssm_out.weight"] = lin(E, HV * S, 2.0)
		elif ssm:
			t[p + "attn_q.weight"] = lin(2 * H * D, E)
			t[p + "attn_k.weight"] = lin(HKV * D, E)
			t[p + "attn_v.weight"] = lin(HKV * D, E)
			t[p + "attn_q_norm.weight"] = norm(D)
			t[p + "attn_k_norm.weight"] = norm(D)
			t[p + "attn_output.weight"] = lin(E, H * D, 2.0)
		if ssm:
			t[p + "post_attention_norm.weight"] = norm(E)
			if "n_expert" in cfg:
				NE, FE, FS = cfg["n_expert"], cfg["n_ff_exp"], cfg["n_ff_shexp"]
				add_experts(t, p, NE, FE, E, lin)
				t[p + "ffn_gate_inp_shexp.weight"] = rng.normal(0.0, 2.0 / np.sqrt(E), E).astype(np.float32)
				t[p + "ffn_gate_shexp.weight"] = lin(FS, E)
				t[p + "ffn_up_shexp.weight"] = lin(FS, E)
				t[p + "ffn_down_shexp.weight"] = lin(E, FS, 2.0)
			else:
				t[p + "ffn_gate.weight"] = lin(FF, E)
				t[p + "ffn_up.weight"] = lin(FF, E)
				t[p + "ffn_down.weight"] = lin(E, FF, 2.0)
			continue
		if arch == "phi3":
			t[p + "attn_qkv.weight"] = lin(H * D + 2 * HKV * D, E)
		else:
			t[p + "attn_q.weight"] = lin(H * D, E)
			t[p + "attn_k.weight"] = lin(HKV * D, E)
			t[p + "attn_v.weight"] = lin(HKV * D, E)
		if arch in ("qwen2", "gpt-oss", "glm4moe"):
			t[p + "attn_q.bias"] = bias(H * D)
			t[p + "attn_k.bias"] = bias(HKV * D)
			t[p + "attn_v.bias"] = bias(HKV * D)
		if arch in ("qwen3", "gemma3", "qwen3moe", "qwen3vl", "qwen3vlmoe"):
			t[p + "attn_q_norm.weight"] = norm(D)
			t[p + "attn_k_norm.weight"] = norm(D)
		# gain 2 on the projections back into the residual stream keeps
		# the layers from being drowned by the token's own (tied)
		# embedding, which would make greedy decoding repeat one token
		t[p + "attn_output.weight"] = lin(E, H * D, 2.0)
		if arch == "gemma3":
			t[p + "post_attention_norm.weight"] = norm(E, 3.0)
		if arch == "glm4moe":
			t[p + "post_attention_norm.weight"] = norm(E)
		elif arch == "gpt-oss":
			t[p + "attn_output.bias"] = bias(E)
			# sinks around the scores' scale: some heads give them most
			# of the weight, some little
			t[p + "attn_sinks.weight"] = rng.normal(0.0, 2.0, H).astype(np.float32)
			t[p + "post_attention_norm.weight"] = norm(E)
		else:
			t[p + "ffn_norm.weight"] = norm(E)
		if arch == "phi3":
			t[p + "ffn_up.weight"] = lin(2 * FF, E)
		elif glm and il < glm["dense_lead"]:
			t[p + "ffn_gate.weight"] = lin(FF, E)
			t[p + "ffn_up.weight"] = lin(FF, E)
			t[p + "ffn_down.weight"] = lin(E, FF, 2.0)
		elif "n_expert" in cfg:
			NE, FE = cfg["n_expert"], cfg["n_ff_exp"]
			add_experts(t, p, NE, FE, E, lin)
			if glm:
				t[p + "exp_probs_b.bias"] = rng.normal(0.0, 0.3, NE).astype(np.float32)
				FS = FE * glm["shared"]
				t[p + "ffn_gate_shexp.weight"] = lin(FS, E)
				t[p + "ffn_up_shexp.weight"] = lin(FS, E)
				t[p + "ffn_down_shexp.weight"] = lin(E, FS, 2.0)
			if glm and il >= cfg["n_layer"]:
				t[p + "nextn.eh_proj.weight"] = lin(E, 2 * E)
				t[p + "nextn.enorm.weight"] = norm(E)
				t[p + "nextn.hnorm.weight"] = norm(E)
			if "n_ff_shexp" in cfg:
				FS = cfg["n_ff_shexp"]
				t[p + "ffn_gate_shexp.weight"] = lin(FS, E)
				t[p + "ffn_up_shexp.weight"] = lin(FS, E)
				t[p + "ffn_down_shexp.weight"] = lin(E, FS, 2.0)
			if arch == "gpt-oss":
				t[p + "ffn_gate_inp.bias"] = bias(NE)
				t[p + "ffn_gate_exps.bias"] = rng.normal(0.0, 0.1, (NE, FE)).astype(np.float32)
				t[p + "ffn_up_exps.bias"] = rng.normal(0.0, 0.1, (NE, FE)).astype(np.float32)
				t[p + "ffn_down_exps.bias"] = rng.normal(0.0, 0.1, (NE, E)).astype(np.float32)
		else:
			t[p + "ffn_gate.weight"] = lin(FF, E)
			t[p + "ffn_up.weight"] = lin(FF, E)
		if "n_expert" not in cfg:
			t[p + "ffn_down.weight"] = lin(E, FF, 2.0)
		if arch == "gemma3":
			t[p + "post_ffw_norm.weight"] = norm(E, 3.0)
	t["output_norm.weight"] = norm(E)
	if cfg.get("longrope"):
		# per-pair divisors: long ones stretch the low frequencies
		t["rope_factors_long.weight"] = (1.0 + rng.uniform(0.0, 8.0, D // 2)).astype(np.float32)
		t["rope_factors_short.weight"] = (1.0 + rng.uniform(0.0, 0.5, D // 2)).astype(np.float32)
	if not cfg["tied"]:
		t["output.weight"] = rng.normal(0.0, out_std, (N_VOCAB, E)).astype(np.float32)
	return t


def add_experts(t, p, NE, FE, E, lin):
	"""A router and NE experts of width FE (in this order: the seeds of
	the fixtures depend on it).  Router logits with std ~4: clear choices,
	as trained routers make them (a near tie flips an expert under any
	rounding, llama.cpp's own F16 KV cache included)."""
	t[p + "ffn_gate_inp.weight"] = lin(NE, E, 4.0)
	t[p + "ffn_gate_exps.weight"] = np.stack([lin(FE, E) for _ in range(NE)])
	t[p + "ffn_up_exps.weight"] = np.stack([lin(FE, E) for _ in range(NE)])
	t[p + "ffn_down_exps.weight"] = np.stack([lin(E, FE, 2.0) for _ in range(NE)])


def make_lfm2_weights(cfg, t, lin, norm):
	E, FF, H, D = cfg["n_embd"], cfg["n_ff"], cfg["n_head"], cfg["key_length"]
	rng = np.random.default_rng(model_seed("lfm2-conv"))
	for il in range(cfg["n_layer"]):
		p = "blk.%d." % il
		kvh = cfg["n_head_kv"][il]
		t[p + "attn_norm.weight"] = norm(E)
		if kvh == 0:
			t[p + "shortconv.in_proj.weight"] = lin(3 * E, E, 2.0)
			t[p + "shortconv.conv.weight"] = rng.normal(0.0, 0.6, (E, cfg["shortconv"])).astype(np.float32)
			t[p + "shortconv.out_proj.weight"] = lin(E, E, 2.0)
		else:
			t[p + "attn_q.weight"] = lin(H * D, E)
			t[p + "attn_k.weight"] = lin(kvh * D, E)
			t[p + "attn_v.weight"] = lin(kvh * D, E)
			t[p + "attn_q_norm.weight"] = norm(D)
			t[p + "attn_k_norm.weight"] = norm(D)
			t[p + "attn_output.weight"] = lin(E, H * D, 2.0)
		t[p + "ffn_norm.weight"] = norm(E)
		if "n_expert" in cfg and il >= cfg["lfm_dense_lead"]:
			NE, FE = cfg["n_expert"], cfg["n_ff_exp"]
			add_experts(t, p, NE, FE, E, lin)
			t[p + "exp_probs_b.bias"] = rng.normal(0.0, 0.3, NE).astype(np.float32)
			continue
		t[p + "ffn_gate.weight"] = lin(FF, E)
		t[p + "ffn_up.weight"] = lin(FF, E)
		t[p + "ffn_down.weight"] = lin(E, FF, 2.0)
	t["token_embd_norm.weight"] = norm(E)
	return t


def write_f32(path, cfg, tensors):
	arch = cfg["arch"]
	w = gguf.GGUFWriter(path, arch)
	# general.name stays neutral: llama.cpp inspects it (a name containing
	# "phi3" makes its vocabulary loader look up Phi-3 tokens and fail)
	w.add_name("ttychat random test model")
	w.add_file_type(FILE_TYPE_F32)
	w.add_vocab_size(N_VOCAB)
	w.add_context_length(cfg["ctx"])
	w.add_embedding_length(cfg["n_embd"])
	w.add_block_count(cfg["n_layer"] + (cfg["glm"]["nextn"] if "glm" in cfg else 0))
	g4 = gemma4_layout(cfg) if arch == "gemma4" else None
	w.add_feed_forward_length([x[3] for x in g4] if g4 else cfg["n_ff"])
	w.add_head_count(cfg["n_head"])
	w.add_head_count_kv([x[2] for x in g4] if g4 else cfg["n_head_kv"])
	if g4:
		write_gemma4_keys(w, cfg)
	w.add_layer_norm_rms_eps(cfg["eps"])
	head = cfg.get("key_length", cfg["n_embd"] // cfg["n_head"])
	if "key_length" in cfg:
		w.add_key_length(head)
		w.add_value_length(head)
	if arch in ("llama", "phi3"):
		w.add_rope_dimension_count(head)
	if cfg["rope_base"] is not None:
		w.add_rope_freq_base(cfg["rope_base"])
	if "sliding_window" in cfg:
		w.add_sliding_window(cfg["sliding_window"])
	if "rope_scaling" in cfg:
		kind, factor, orig = cfg["rope_scaling"]
		w.add_rope_scaling_type(gguf.RopeScalingType(kind))
		if factor is not None:
			w.add_rope_scaling_factor(factor)
		if orig is not None:
			w.add_rope_scaling_orig_ctx_len(orig)
	if "attn_factor" in cfg:
		w.add_rope_scaling_attn_factors(cfg["attn_factor"])
	if "swa_pattern" in cfg:
		w.add_sliding_window_pattern(cfg["swa_pattern"])
	if "softcap" in cfg:
		w.add_final_logit_softcapping(cfg["softcap"])
	if "granite" in cfg:
		g = cfg["granite"]
		w.add_logit_scale(g["logit"])
		w.add_residual_scale(g["residual"])
		w.add_embedding_scale(g["embedding"])
		w.add_attention_scale(g["attention"])
	if "glm" in cfg:
		g = cfg["glm"]
		w.add_expert_shared_count(g["shared"])
		w.add_leading_dense_block_count(g["dense_lead"])
		w.add_expert_group_count(g["groups"])
		w.add_expert_group_used_count(g["groups_used"])
		w.add_expert_weights_scale(g["scale"])
		w.add_expert_weights_norm(True)
		w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
		w.add_nextn_predict_layers(g["nextn"])
	if "rope_dims" in cfg:
		w.add_rope_dimension_count(cfg["rope_dims"])
	if "rope_sections" in cfg:
		w.add_rope_dimension_sections(cfg["rope_sections"])
	if "deepstack" in cfg:
		w.add_num_deepstack_layers(cfg["deepstack"])
	if "attn_temp" in cfg:
		w.add_attn_temperature_scale(cfg["attn_temp"])
	if "n_ff_shexp" in cfg:
		w.add_expert_shared_feed_forward_length(cfg["n_ff_shexp"])
	if "shortconv" in cfg:
		w.add_shortconv_l_cache(cfg["shortconv"])
	if "lfm_dense_lead" in cfg:
		w.add_leading_dense_block_count(cfg["lfm_dense_lead"])
		w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
	if "ssm" in cfg:
		s = cfg["ssm"]
		w.add_ssm_conv_kernel(s["conv"])
		w.add_ssm_state_size(s["state"])
		w.add_ssm_group_count(s["groups"])
		w.add_ssm_time_step_rank(s["heads_v"])
		w.add_ssm_inner_size(s["state"] * s["heads_v"])
		w.add_full_attention_interval(4)
	if "n_expert" in cfg:
		w.add_expert_count(cfg["n_expert"])
		w.add_expert_used_count(cfg["n_expert_used"])
		w.add_expert_feed_forward_length(cfg["n_ff_exp"])
	add_tokenizer(w)
	for tname, arr in tensors.items():
		w.add_tensor(tname, arr)
	w.write_header_to_file()
	w.write_kv_data_to_file()
	w.write_tensors_to_file()
	w.close()


def quantize(src, dst, ftype, pure):
	params = llama_cpp.llama_model_quantize_default_params()
	params.nthread = N_THREADS
	params.ftype = ftype
	params.pure = pure
	rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
	if rc != 0:
		sys.exit("llama_model_quantize(%s) failed: %d" % (dst, rc))


def tensor_types(path):
	r = gguf.GGUFReader(path)
	return collections.OrderedDict((t.name, t.tensor_type.name) for t in r.tensors)


def sha256_file(path):
	with open(path, "rb") as f:
		return hashlib.sha256(f.read()).hexdigest()


def fixed_sequence():
	rng = np.random.default_rng(SEQ_SEED)
	return [0] + [int(x) for x in rng.integers(2, N_VOCAB, SEQ_LEN - 1)]


def open_llama(path, kv_type):
	return Llama(model_path=path, n_ctx=256, n_threads=N_THREADS,
		n_threads_batch=N_THREADS, n_batch=256, n_ubatch=256,
		logits_all=True, seed=1234, flash_attn=False,
		type_k=kv_type, type_v=kv_type, verbose=False)


def reference(path):
	llm = open_llama(path, llama_cpp.GGML_TYPE_F32)
	seq = fixed_sequence()
	llm.reset()
	llm.eval(seq)
	logits = np.array(llm.scores[:SEQ_LEN], dtype=np.float32)
	last = logits[SEQ_LEN - N_LOGIT_POS:]
	srt = np.sort(last, axis=1)
	margins = srt[:, -1] - srt[:, -2]

	prompt = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
	llm.reset()
	llm.eval(prompt)
	gen = []
	for _ in range(N_GEN):
		tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
		gen.append(tok)
		llm.eval([tok])
	del llm

	# how far llama.cpp itself moves with its default F16 KV cache
	llm16 = open_llama(path, llama_cpp.GGML_TYPE_F16)
	llm16.eval(seq)
	l16 = np.array(llm16.scores[SEQ_LEN - N_LOGIT_POS:SEQ_LEN], dtype=np.float32)
	del llm16
	return {
		"sequence": seq,
		"logits_first_pos": SEQ_LEN - N_LOGIT_POS,
		"logits": [[round(float(v), 4) for v in row] for row in last],
		"argmax": [int(np.argmax(row)) for row in last],
		"min_top1_margin": round(float(margins.min()), 4),
		"median_top1_margin": round(float(np.median(margins)), 4),
		"kv_f16_max_abs_diff": round(float(np.abs(l16 - last).max()), 4),
		"kv_f16_top1_agree": int(np.sum(np.argmax(l16, 1) == np.argmax(last, 1))),
		"prompt_text": PROMPT,
		"prompt_ids": [int(t) for t in prompt],
		"gen_ids": gen,
	}


def llama_cpp_version():
	lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
	ggml = sorted(n for n in os.listdir(lib) if n.startswith("libggml-base.so."))
	ggml_v = ggml[-1][len("libggml-base.so."):] if ggml else "?"
	return "llama-cpp-python %s (ggml %s)" % (llama_cpp.__version__, ggml_v)


def hparams_doc(cfg):
	d = {k: v for k, v in cfg.items()}
	d["head_dim"] = cfg.get("key_length", cfg["n_embd"] // cfg["n_head"])
	d["n_vocab"] = N_VOCAB
	if cfg["rope_base"] is None:
		d["rope_base"] = "absent (llama.cpp default 10000)"
	return d


def main():
	global VOCAB
	here = os.path.dirname(os.path.abspath(__file__))
	ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "engine", "random"))
	ap.add_argument("--keep-masters", default=None, help="keep the F32 masters in this folder")
	ap.add_argument("names", nargs="*", default=list(MODELS))
	args = ap.parse_args()
	os.makedirs(args.out, exist_ok=True)
	VOCAB = build_vocab()
	llama_cpp.llama_backend_init()

	tmp = tempfile.TemporaryDirectory(prefix="ttychat-random-")
	mdir = args.keep_masters or tmp.name
	os.makedirs(mdir, exist_ok=True)
	masters = {}
	total = 0
	for name in args.names:
		if name not in MODELS:
			sys.exit("unknown model %s (have: %s)" % (name, " ".join(MODELS)))
		cfg, kind = MODELS[name]
		key = json.dumps(cfg, sort_keys=True)
		if key not in masters:
			tensors = make_weights(cfg, np.random.default_rng(model_seed(key)))
			mpath = os.path.join(mdir, "master-%d-%s.gguf" % (len(masters), cfg["arch"]))
			write_f32(mpath, cfg, tensors)
			masters[key] = mpath
		master = masters[key]
		out = os.path.join(args.out, name + ".gguf")
		if kind[0] == "f32":
			with open(master, "rb") as fi, open(out, "wb") as fo:
				fo.write(fi.read())
			how = "written by gguf-py GGUFWriter (F32)"
		else:
			quantize(master, out, kind[1], kind[2])
			how = "llama_model_quantize(ftype=%d, pure=%s) from an F32 master" % (kind[1], kind[2])
		types = tensor_types(out)
		ref = reference(out)
		size = os.path.getsize(out)
		total += size
		doc = collections.OrderedDict([
			("model_file", os.path.basename(out)),
			("model_sha256", sha256_file(out)),
			("llama_cpp_version", llama_cpp_version()),
			("architecture", cfg["arch"]),
			("made_by", how),
			("hparams", hparams_doc(cfg)),
			("type_mix", dict(collections.Counter(types.values()))),
			("tensor_types", types),
			("settings", {"kv_cache": "f32", "flash_attn": False, "n_threads": N_THREADS,
				"batch": "whole sequence in one decode",
				"greedy": "argmax, one token per decode, EOG ignored"}),
		])
		doc.update(ref)
		with open(os.path.join(args.out, name + ".json"), "w") as f:
			json.dump(doc, f, separators=(",", ":"))
			f.write("\n")
		print("%-16s %8d bytes  %-28s margin min %.3f med %.3f  f16kv diff %.4f  gen %s" % (
			name, size, " ".join("%s:%d" % kv for kv in doc["type_mix"].items()),
			ref["min_top1_margin"], ref["median_top1_margin"], ref["kv_f16_max_abs_diff"],
			ref["gen_ids"][:8]))
	print("total gguf bytes: %d" % total)


if __name__ == "__main__":
	main()
