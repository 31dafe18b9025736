#!/usr/bin/env python3
"""Writes the seed corpora for the fuzzers: tests/fuzz/corpus/{gguf,safetensors}/.

Small, valid files that reach every branch of the readers' happy paths (every GGUF value type,
nested arrays, custom alignment, quantized tensor types, version 2; every safetensors dtype,
metadata, zero-size tensors). Deterministic: rerunning rewrites identical bytes.
Usage: python3 tests/fuzz/make_corpus.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- GGUF

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
          U64: "<Q", I64: "<q", F64: "<d"}
# type id -> (block elements, block bytes)
GGML = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
        10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gvalue(t, v):
    if t == STRING:
        return gstr(v)
    if t == ARRAY:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gvalue(et, i) for i in items)
    return struct.pack(SCALAR[t], v)


def align(n, a):
    return (n + a - 1) // a * a


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, ne, type)] (data is a byte pattern)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", t) + gvalue(t, v)
    offset, blobs = 0, []
    for name, ne, t in tensors:
        n = 1
        for d in ne:
            n *= d
        be, bb = GGML[t]
        nbytes = n // be * bb
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", t, offset)
        blobs.append((offset, bytes((i * 7 + 3) & 0xFF for i in range(nbytes))))
        offset = align(offset + nbytes, alignment)
    out += b"\0" * (align(len(out), alignment) - len(out))
    data = bytearray(offset)
    for off, blob in blobs:
        data[off:off + len(blob)] = blob
    # Trim the padding after the last tensor (legal: only its bytes must be present).
    if blobs:
        data = data[:blobs[-1][0] + len(blobs[-1][1])]
    return out + bytes(data)


def gguf_seeds():
    every_type = [
        ("general.architecture", STRING, "llama"),
        ("test.u8", U8, 200), ("test.i8", I8, -100), ("test.u16", U16, 60000), ("test.i16", I16, -30000),
        ("test.u32", U32, 4000000000), ("test.i32", I32, -2000000000), ("test.u64", U64, 1 << 60),
        ("test.i64", I64, -(1 << 60)), ("test.f32", F32, 1.5), ("test.f64", F64, 2.25), ("test.bool", BOOL, 1),
        ("test.str", STRING, "h\u00e9llo"),
        ("test.strs", ARRAY, (STRING, ["a", "", "ccc"])),
        ("test.f32s", ARRAY, (F32, [1.0, -2.0])),
        ("test.bools", ARRAY, (BOOL, [0, 1])),
        ("test.nested", ARRAY, (ARRAY, [(I32, [1, 2]), (I32, [3])])),
        ("test.nested3", ARRAY, (ARRAY, [(ARRAY, [(U8, [1])])])),
    ]
    llama = [
        ("general.architecture", STRING, "llama"), ("general.name", STRING, "tiny"),
        ("llama.block_count", U32, 1), ("llama.embedding_length", U32, 8),
        ("llama.feed_forward_length", U32, 16), ("llama.attention.head_count", U32, 2),
        ("llama.attention.head_count_kv", U32, 1), ("llama.context_length", U32, 64),
        ("llama.rope.freq_base", F32, 10000.0), ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("tokenizer.ggml.model", STRING, "llama"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, ["<unk>", "<s>", "</s>", "a", "b", "ab"])),
        ("tokenizer.ggml.scores", ARRAY, (F32, [0.0, 0.0, 0.0, -1.0, -2.0, -3.0])),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [2, 3, 3, 1, 1, 1])),
        ("tokenizer.ggml.bos_token_id", U32, 1), ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.add_bos_token", BOOL, 1),
    ]
    return {
        "minimal.gguf": gguf([], []),
        "every_type.gguf": gguf(every_type, [("a", [3, 2], 0), ("b", [32], 8), ("c", [16], 1)]),
        "llama_tiny.gguf": gguf(llama, [("token_embd.weight", [8, 6], 0), ("output_norm.weight", [8], 0),
                                        ("blk.0.attn_q.weight", [32, 2], 2), ("blk.0.ffn_down.weight", [256], 12)]),
        "align64_v2.gguf": gguf([("general.alignment", U32, 64)], [("x", [5], 0), ("y", [32], 3), ("z", [4], 30)],
                                version=2, alignment=64),
        "kquants.gguf": gguf([], [("q2", [256], 10), ("q3", [256], 11), ("q5", [256], 13), ("q6", [256], 14),
                                  ("q50", [32], 6), ("q51", [32], 7)]),
    }


# ---- safetensors

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape)]."""
    header, offset, data = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        n = DTYPE_BYTES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        data += bytes((i * 5 + 1) & 0xFF for i in range(n))
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (align(len(text), 8) - len(text))
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    return {
        "empty.safetensors": safetensors([]),
        "mixed.safetensors": safetensors([("a", "F32", [2, 3]), ("b", "BF16", [4]), ("empty", "I64", [0, 5]),
                                          ("c", "U8", [3])], {"format": "pt"}),
        "every_dtype.safetensors": safetensors([(f"t.{d.lower()}", d, [2]) for d in DTYPE_BYTES]),
        "mlx_q4.safetensors": safetensors([("model.layers.0.mlp.up_proj.weight", "U32", [4, 4]),
                                           ("model.layers.0.mlp.up_proj.scales", "F16", [4, 1]),
                                           ("model.layers.0.mlp.up_proj.biases", "F16", [4, 1]),
                                           ("model.norm.weight", "F16", [32]),
                                           ("scalar", "F32", [])]),
    }


def main():
    total = 0
    for sub, seeds in (("gguf", gguf_seeds()), ("safetensors", safetensors_seeds())):
        d = os.path.join(HERE, "corpus", sub)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            assert len(data) < 4096, (name, len(data))
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            total += len(data)
            print(f"{sub}/{name}: {len(data)} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
