#!/usr/bin/env python3
"""Writes tests/fixtures/quant-dequant.bin: random blocks of each ggml type
with the values the PyPI `gguf` package's dequantisers give for them, an
oracle independent of our C code.  Run with the pyenv python3 that has
`gguf` and numpy; the output is committed, so `make check` never needs them.

    python3 scripts/gen-quant-fixtures.py [OUT]

File format (little-endian):
    "TTQF" u32 version=1 u32 n_records
    per record: u32 type, u32 n_elements, u32 n_bytes,
                n_bytes of blocks, n_elements float32 expected values
"""
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import GGML_QUANT_SIZES, dequantize

# byte offsets of the fp16 scale fields inside one block
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
BLOCKS = {T.Q4_0: 8, T.Q4_1: 8, T.Q5_0: 8, T.Q5_1: 8, T.Q8_0: 8,
          T.Q2_K: 3, T.Q3_K: 3, T.Q4_K: 3, T.Q5_K: 3, T.Q6_K: 3}


def random_halves(rng, k):
    """Scales spanning normal and subnormal fp16 values, both signs."""
    mag = np.exp2(rng.uniform(-26.0, 3.0, size=k))
    sign = np.where(rng.random(k) < 0.2, -1.0, 1.0)
    return (mag * sign).astype(np.float16)


def quant_record(rng, qtype):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    nb = BLOCKS[qtype]
    raw = rng.integers(0, 256, size=(nb, block_bytes), dtype=np.uint8)
    for off in HALF_FIELDS[qtype]:
        raw[:, off:off + 2] = random_halves(rng, nb).view(np.uint8).reshape(nb, 2)
    data = raw.reshape(-1)
    want = dequantize(data, qtype).astype(np.float32).reshape(-1)
    assert want.size == nb * block_elems
    return qtype, want.size, data.tobytes(), want


def f16_record(rng):
    bits = rng.integers(0, 1 << 16, size=192, dtype=np.uint16)
    special = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff,
                        0xfbff, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe00, 0x3c00,
                        0x3555, 0x0200], dtype=np.uint16)
    bits = np.concatenate([special, bits])
    want = dequantize(bits.view(np.uint8), T.F16).astype(np.float32).reshape(-1)
    return T.F16, bits.size, bits.tobytes(), want


def bf16_record(rng):
    bits = rng.integers(0, 1 << 16, size=120, dtype=np.uint16)
    special = np.array([0x0000, 0x8000, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x3f80, 0x4049],
                       dtype=np.uint16)
    bits = np.concatenate([special, bits])
    want = dequantize(bits.view(np.uint8), T.BF16).astype(np.float32).reshape(-1)
    return T.BF16, bits.size, bits.tobytes(), want


def f32_record(rng):
    vals = rng.standard_normal(37).astype(np.float32)
    want = dequantize(vals.view(np.uint8), T.F32).astype(np.float32).reshape(-1)
    return T.F32, vals.size, vals.tobytes(), want


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/quant-dequant.bin"
    rng = np.random.default_rng(20240611)
    records = [f32_record(rng), f16_record(rng), bf16_record(rng)]
    records += [quant_record(rng, t) for t in BLOCKS]
    with open(out, "wb") as f:
        f.write(b"TTQF" + struct.pack("<II", 1, len(records)))
        for qtype, n, data, want in records:
            f.write(struct.pack("<III", int(qtype), n, len(data)))
            f.write(data)
            f.write(want.astype("<f4").tobytes())
    print(f"{out}: {len(records)} records")


if __name__ == "__main__":
    main()
