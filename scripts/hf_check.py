#!/usr/bin/env python3
"""vireo against Hugging Face transformers on safetensors and MLX models.

Needs PyTorch, transformers, numpy and safetensors (a GPU is used when present). For each
architecture it builds a model from the real published config (fewer layers) with seeded random
weights, saves it in BF16, runs transformers in float32 on 256 random token ids, runs
`vireo score` on the same folder, and compares the logits. It then writes an MLX 4-bit copy with
`vireo quantize --type mlx-q4`, dequantizes that copy here (MLX's documented affine layout), runs
transformers on the dequantized weights, and compares again.

    python3 scripts/hf_check.py --vireo build/vireo --work /tmp/hf-check [--layers 4] [--json out.json]
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import transformers

CONFIGS = {
    # meta-llama/Llama-3.2-1B config.json
    "llama": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False, "mlp_bias": False,
        "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
        "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072,
        "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1,
        "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": True, "vocab_size": 128256,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    },
    # Qwen/Qwen2.5-0.5B config.json
    "qwen2": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "attention_dropout": 0.0,
        "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896,
        "initializer_range": 0.02, "intermediate_size": 4864, "max_position_embeddings": 32768,
        "max_window_layers": 24, "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
        "use_sliding_window": False, "vocab_size": 151936,
    },
}

N_POSITIONS = 256


def device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def build(arch, layers, seed, out_dir):
    cfg = dict(CONFIGS[arch])
    cfg["num_hidden_layers"] = layers
    config = transformers.AutoConfig.for_model(**cfg)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
    # Norm weights and biases start at 1 and 0: perturb them so that they are exercised too.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * (0.1 if name.endswith("bias") else 0.05))
    model = model.to(torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True)
    # The config exactly as published (transformers may rewrite its rope keys on save).
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump({**cfg, "torch_dtype": "bfloat16"}, f, indent=2)
    return config


def hf_logits(model_dir_or_state, config, ids):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if isinstance(model_dir_or_state, str):
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir_or_state, dtype=torch.float32,
                                                                  attn_implementation="eager")
    else:
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
        missing, unexpected = model.load_state_dict(model_dir_or_state, strict=False)
        missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied
        if missing or unexpected:
            raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        if config.tie_word_embeddings:
            model.tie_weights()
    model = model.to(device()).eval()
    with torch.no_grad():
        out = model(torch.tensor([ids], device=device())).logits[0].float().cpu().numpy()
    return out


def read_safetensors(path):
    """name -> numpy array (BF16/F16 widened to float32, U32 kept)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[b:e]
        dt, shape = info["dtype"], info["shape"]
        if dt == "BF16":
            a = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dt == "F16":
            a = np.frombuffer(raw, np.float16).astype(np.float32)
        elif dt == "F32":
            a = np.frombuffer(raw, np.float32)
        elif dt == "U32":
            a = np.frombuffer(raw, np.uint32)
        else:
            raise SystemExit(f"{path}: {name}: dtype {dt} not handled")
        out[name] = a.reshape(shape)
    return out


def dequantize_mlx(mlx_dir):
    """MLX affine layout: w[r, c] = scales[r, c // G] * q + biases[r, c // G], q packed 32/bits to a word."""
    q = json.load(open(os.path.join(mlx_dir, "config.json")))["quantization"]
    bits, group = q["bits"], q["group_size"]
    t = read_safetensors(os.path.join(mlx_dir, "model.safetensors"))
    state = {}
    for name, a in t.items():
        if name.endswith(".scales") or name.endswith(".biases"):
            continue
        if a.dtype == np.uint32:
            stem = name[: -len(".weight")]
            per = 32 // bits
            shifts = (np.arange(per, dtype=np.uint32) * bits)
            levels = ((a[:, :, None] >> shifts) & ((1 << bits) - 1)).reshape(a.shape[0], -1).astype(np.float32)
            s = np.repeat(t[stem + ".scales"], group, axis=1)
            b = np.repeat(t[stem + ".biases"], group, axis=1)
            a = s * levels + b
        state[name] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return state


def vireo_logits(vireo, model_dir, ids, work):
    out = os.path.join(work, "vireo_logits.f32")
    t0 = time.time()
    subprocess.run([vireo, "score", model_dir, "--prompt-ids", ",".join(map(str, ids)), "--logits-out", out,
                    "--ctx-size", str(len(ids))], check=True, stdout=subprocess.DEVNULL)
    logits = np.fromfile(out, np.float32).reshape(len(ids), -1)
    os.remove(out)
    return logits, time.time() - t0


def compare(want, got):
    want = want.astype(np.float64)
    got = got.astype(np.float64)
    cos = float((want * got).sum() / np.sqrt((want * want).sum() * (got * got).sum()))
    row_cos = (want * got).sum(1) / np.sqrt((want * want).sum(1) * (got * got).sum(1))
    lw = want - want.max(1, keepdims=True)
    lw -= np.log(np.exp(lw).sum(1, keepdims=True))
    lg = got - got.max(1, keepdims=True)
    lg -= np.log(np.exp(lg).sum(1, keepdims=True))
    kl = (np.exp(lw) * (lw - lg)).sum(1)
    top1 = float((want.argmax(1) == got.argmax(1)).mean())
    return {"cosine": cos, "min_row_cosine": float(row_cos.min()), "top1": top1, "mean_kl": float(kl.mean()),
            "max_abs_diff": float(np.abs(want - got).max())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vireo", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--arch", nargs="*", default=["llama", "qwen2"])
    ap.add_argument("--json")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rows = []
    for arch in args.arch:
        src = os.path.join(args.work, arch)
        config = build(arch, args.layers, seed=1, out_dir=src)
        rng = np.random.default_rng(2)
        ids = [int(i) for i in rng.integers(0, config.vocab_size, N_POSITIONS)]
        want = hf_logits(src, config, ids)
        got, secs = vireo_logits(args.vireo, src, ids, args.work)
        rows.append({"model": f"{arch} bf16 safetensors", **compare(want, got), "vireo_s": secs})
        print(json.dumps(rows[-1]), flush=True)

        mlx = os.path.join(args.work, arch + "-mlx-q4")
        subprocess.run([args.vireo, "quantize", src, mlx, "--type", "mlx-q4"], check=True, stdout=subprocess.DEVNULL)
        want = hf_logits(dequantize_mlx(mlx), config, ids)
        got, secs = vireo_logits(args.vireo, mlx, ids, args.work)
        rows.append({"model": f"{arch} mlx-q4 (vireo quantize)", **compare(want, got), "vireo_s": secs})
        print(json.dumps(rows[-1]), flush=True)

    print(f"\ntransformers {transformers.__version__}, torch {torch.__version__}, reference on {device()}, "
          f"{args.layers} layers, {N_POSITIONS} positions")
    print(f"{'model':34} {'cosine':>9} {'min row':>9} {'top-1':>7} {'mean KL':>9}")
    ok = True
    for r in rows:
        print(f"{r['model']:34} {r['cosine']:9.6f} {r['min_row_cosine']:9.6f} {r['top1']:7.3f} {r['mean_kl']:9.2e}")
        ok &= r["cosine"] >= 0.999 and r["top1"] >= 0.99
    if args.json:
        json.dump({"rows": rows, "layers": args.layers, "positions": N_POSITIONS,
                   "transformers": transformers.__version__, "torch": torch.__version__}, open(args.json, "w"), indent=2)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
