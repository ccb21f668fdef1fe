#!/usr/bin/env python3
"""Writes the quant test fixtures; run with the pyenv python3 that has the
PyPI packages `gguf`, numpy and (for the second file) llama-cpp-python.  The
outputs are committed, so `make check` never needs any of them.

    python3 scripts/gen-quant-fixtures.py [FIXTURE_DIR]

quant-dequant.bin: random blocks of each ggml type with the values the
`gguf` package's dequantisers give for them, an oracle independent of our C
code (for the types the package cannot dequantise, Q1_0 and Q2_0,
llama.cpp's own to_float from llama-cpp-python's libggml-base).
Little-endian:
    "TTQF" u32 version=1 u32 n_records
    per record: u32 type, u32 n_elements, u32 n_bytes,
                n_bytes of blocks, n_elements float32 expected values

quant-llama.bin: llama.cpp's own CPU kernels (from the libggml-cpu that
llama-cpp-python ships) on random rows: the activation bytes its
quantize_row for the weight type's vec_dot_type writes, and its vec_dot
result.  Little-endian:
    "TTQL" u32 version=1 u32 n_records
    per record: u32 weight type, u32 n, u32 weight bytes, u32 act bytes,
                n float32 activations, weight bytes, act bytes,
                float32 llama.cpp dot
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

# grid-based i-quants (engine/quant_iq.c): every byte pattern is a valid
# block once the fp16 scale is finite.  IQ1_M has no scale field: its fp16
# scale is the top nibbles of the four little-endian u16 at bytes 48..55
# (IQ1M_SCALE_WORDS), set by set_half().
IQ1M_SCALE_WORDS = 48
HALF_FIELDS.update({
    T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ2_S: [0], T.IQ3_XXS: [0], T.IQ3_S: [0],
    T.IQ1_S: [0], T.IQ1_M: [IQ1M_SCALE_WORDS],
})
BLOCKS.update({T.IQ2_XXS: 3, T.IQ2_XS: 3, T.IQ2_S: 3, T.IQ3_XXS: 3, T.IQ3_S: 3,
               T.IQ1_S: 3, T.IQ1_M: 3})


def set_half(raw, qtype, off, halves):
    """Stores one fp16 value per block (row of raw) at byte offset off."""
    bits = halves.astype(np.float16).view(np.uint16)
    if qtype != T.IQ1_M:
        raw[:, off:off + 2] = bits.view(np.uint8).reshape(-1, 2)
        return
    for k in range(4):  # nibble k of the half -> top nibble of scale word k
        hi = off + 2 * k + 1
        nib = ((bits >> (4 * k)) & 0xF).astype(np.uint8)
        raw[:, hi] = (raw[:, hi] & 0x0F) | (nib << 4)
# The non-linear, ternary and binary types (engine/quant_nl.c), by ggml
# number since the PyPI gguf package lacks some:
#   number: (name, block elements, block bytes, fp16 scale offsets, blocks)
NL_TYPES = {
    20: ("IQ4_NL", 32, 18, [0], 8),
    23: ("IQ4_XS", 256, 136, [0], 3),
    39: ("MXFP4", 32, 17, [], 8),
    40: ("NVFP4", 64, 36, [], 5),
    34: ("TQ1_0", 256, 54, [52], 3),
    35: ("TQ2_0", 256, 66, [64], 3),
    41: ("Q1_0", 128, 18, [0], 5),
    42: ("Q2_0", 64, 18, [0], 5),
}
# dequantised by llama.cpp's to_float rather than the gguf package
NL_GGML_ORACLE = {41, 42}


def type_sizes(qtype):
    if int(qtype) in NL_TYPES:
        return NL_TYPES[int(qtype)][1:3]
    return GGML_QUANT_SIZES[qtype]


def half_fields(qtype):
    if int(qtype) in NL_TYPES:
        return NL_TYPES[int(qtype)][3]
    return HALF_FIELDS[qtype]


def nl_scale_bytes(rng, qtype, raw, small):
    """MXFP4's E8M0 and NVFP4's UE4M3 scale bytes.  SMALL: scales near the
    fp16 ones of the other types (0.001 .. 0.02); else a wide range, kept
    where every product stays finite (E8M0 up to 250: 12 * 2^122)."""
    nb = raw.shape[0]
    if int(qtype) == 39:
        e = rng.integers(117, 122, nb) if small else rng.integers(0, 251, nb)
        if not small:
            e[:5] = [0, 1, 2, 127, 250][:nb]
        raw[:, 0] = e
    elif int(qtype) == 40 and small:
        raw[:, :4] = (rng.integers(1, 4, (nb, 4)) << 3) | rng.integers(0, 8, (nb, 4))


def random_halves(rng, k):
    """Scales spanning normal and subnormal fp16 values, both signs."""
    mag = np.exp2(rng.uniform(-26.0, 3.0, size=k))
    sign = np.where(rng.random(k) < 0.2, -1.0, 1.0)
    return (mag * sign).astype(np.float16)


def quant_record(rng, qtype):
    block_elems, block_bytes = type_sizes(qtype)
    nb = NL_TYPES[qtype][4] if qtype in NL_TYPES else BLOCKS[qtype]
    raw = rng.integers(0, 256, size=(nb, block_bytes), dtype=np.uint8)
    for off in half_fields(qtype):
        set_half(raw, qtype, off, random_halves(rng, nb))
    nl_scale_bytes(rng, qtype, raw, False)
    data = raw.reshape(-1)
    if qtype in NL_GGML_ORACLE:
        want = ggml_to_float(qtype, data, nb * block_elems)
    else:
        want = dequantize(data, T(qtype)).astype(np.float32).reshape(-1)
    assert want.size == nb * block_elems and np.all(np.isfinite(want))
    return qtype, want.size, data.tobytes(), want


def ggml_libs():
    import ctypes
    import os

    import llama_cpp

    lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    base = ctypes.CDLL(os.path.join(lib, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    cpu = ctypes.CDLL(os.path.join(lib, "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    return base, cpu


def ggml_to_float(qtype, data, n):
    """llama.cpp's own dequantiser (ggml_get_type_traits(type)->to_float)."""
    import ctypes

    base, _ = ggml_libs()

    class Traits(ctypes.Structure):
        _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                    ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                    ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                    ("from_float_ref", ctypes.c_void_p)]

    base.ggml_get_type_traits.restype = ctypes.POINTER(Traits)
    tr = base.ggml_get_type_traits(int(qtype)).contents
    assert (tr.blck_size, tr.type_size) == type_sizes(qtype), tr.type_name
    to_float_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    data = np.ascontiguousarray(data)
    out = np.zeros(n, dtype=np.float32)
    to_float_t(tr.to_float)(data.ctypes.data, out.ctypes.data, n)
    return out


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


def llama_records(rng):
    """(wtype, n, x, w bytes, act bytes, dot) from llama.cpp's CPU kernels."""
    import ctypes

    _, cpu = ggml_libs()
    cpu.ggml_cpu_init()

    class Traits(ctypes.Structure):
        _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                    ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]

    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(Traits)
    from_float_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    vec_dot_t = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(ctypes.c_float),
                                 ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                                 ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    out = []
    wtypes = [T.F32, T.F16, T.BF16] + list(BLOCKS)
    wtypes += list(NL_TYPES)
    for wt in wtypes:
        traits = cpu.ggml_get_type_traits_cpu(int(wt)).contents
        at = traits.vec_dot_type
        for trial in range(2):
            n = 512 if trial == 0 else 256
            x = (rng.standard_normal(n) * rng.uniform(0.1, 10.0)).astype(np.float32)
            x[rng.integers(0, n, 4)] *= 25.0
            if trial == 1:
                # exact ties for the rounding rule: amax 127 makes the multiplier 1
                x[:8] = [127.0, 2.5, 3.5, -2.5, 0.5, -1.5, 126.5, -0.5]
            if wt in BLOCKS or wt in NL_TYPES:
                w = quant_record_bytes(rng, wt, n // type_sizes(wt)[0])
            elif wt == T.F16:
                w = rng.standard_normal(n).astype(np.float16).view(np.uint8)
            elif wt == T.BF16:
                w = (rng.standard_normal(n).astype(np.float32).view(np.uint32) >> 16) \
                    .astype(np.uint16).view(np.uint8)
            else:
                w = rng.standard_normal(n).astype(np.float32).view(np.uint8)
            w = np.ascontiguousarray(w)
            at_elems, at_bytes = GGML_QUANT_SIZES[T(at)]
            if at == T.Q8_1:
                at_bytes = 36  # gguf-py still lists an old 40-byte Q8_1; ggml's is fp16 d, s + 32
            act = np.zeros(n // at_elems * at_bytes, dtype=np.uint8)
            ff = cpu.ggml_get_type_traits_cpu(at).contents.from_float
            if ff:
                from_float_t(ff)(x.ctypes.data, act.ctypes.data, n)
            else:
                act[:] = x.view(np.uint8)
            s = ctypes.c_float()
            vec_dot_t(traits.vec_dot)(n, ctypes.byref(s), 0, w.ctypes.data, 0,
                                      act.ctypes.data, 0, 1)
            assert np.isfinite(s.value)
            out.append((wt, n, x, w.tobytes(), act.tobytes(), s.value))
    return out


def quant_record_bytes(rng, qtype, nb):
    block_bytes = type_sizes(qtype)[1]
    raw = rng.integers(0, 256, size=(nb, block_bytes), dtype=np.uint8)
    for off in half_fields(qtype):
        set_half(raw, qtype, off, rng.uniform(0.001, 0.02, size=nb))
    nl_scale_bytes(rng, qtype, raw, True)
    return raw.reshape(-1)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    out = outdir + "/quant-dequant.bin"
    rng = np.random.default_rng(20240611)
    records = [f32_record(rng), f16_record(rng), bf16_record(rng)]
    records += [quant_record(rng, t) for t in BLOCKS]
    records += [quant_record(rng, t) for t in NL_TYPES]
    with open(out, "wb") as f:
        f.write(b"TTQF" + struct.pack("<II", 1, len(records)))
        for qtype, n, data, want in records:
            f.write(struct.pack("<III", int(qtype), n, len(data)))
            f.write(data)
            f.write(want.astype("<f4").tobytes())
    print(f"{out}: {len(records)} records")

    out = outdir + "/quant-llama.bin"
    try:
        recs = llama_records(np.random.default_rng(7))
    except ImportError as e:
        print(f"{out}: not rewritten ({e}); install llama-cpp-python to refresh it")
        return
    with open(out, "wb") as f:
        f.write(b"TTQL" + struct.pack("<II", 1, len(recs)))
        for wt, n, x, w, act, dot in recs:
            f.write(struct.pack("<IIII", int(wt), n, len(w), len(act)))
            f.write(x.astype("<f4").tobytes())
            f.write(w)
            f.write(act)
            f.write(struct.pack("<f", dot))
    print(f"{out}: {len(recs)} records")


if __name__ == "__main__":
    main()
