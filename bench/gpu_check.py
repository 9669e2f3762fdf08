"""Stage-2 training steps on one GPU, padded vs padding-free, at LLaVA-1.5's batch geometry.

A LLaVA-1.5-7B-shaped model (`hub_llava.testing.llava_7b_shaped_config`: CLIP ViT-L/14-336, GELU projector, Llama
hidden 4096, 32 heads, vocabulary 32064) with `--layers` decoder layers instead of 32 and random weights, in bf16, is
trained as stage 2 trains (vision tower frozen, LLM and projector trained, AdamW) for `--steps` steps of `--rows` rows
per device (LLaVA-1.5: 16), each batch once padded (the Trainer's layout) and once packed (`padding_free: true`),
built by hub_llava's collator from the same token rows. Row lengths follow mix665k (94% image rows: 576 image tokens +
text of median ~180 tokens; 6% text-only rows of median ~960; capped at 2048), in LLaVA's modality-grouped order.

Per attention implementation (`sdpa`, and `flash_attention_2` when `flash_attn` is installed) and layout it prints:
tokens/s (real tokens, padding not counted), the padding fraction of the computed tokens, peak GPU memory, and MFU:
model FLOPs of the real tokens (6 x trained parameters x tokens for the LLM and projector, 2 x parameters x patches
for the frozen vision tower's forward, plus causal attention 6 x layers x hidden x sum(row length^2)) per second,
over the GPU's dense bf16 peak (`--peak_tflops`, else the datasheet figure of the GPU `torch.cuda` names).

    bench/gpu_check.sh                                   # what a one-GPU machine runs (< 8 minutes)
    python bench/gpu_check.py --device cpu --tiny --steps 2 --rows 4   # a CPU run of the same script (tests)
"""

import argparse
import importlib.util
import json
import time

import numpy as np
import torch

from hub_llava.testing import llava_7b_shaped_config
from hub_llava.token_stream import IGNORE_INDEX
from hub_llava.training.collator import pack_rows, pad_rows
from hub_llava.training.sampler import modality_grouped_indices

IMAGE_TOKEN_ID, PAD_TOKEN_ID = 32000, 32001
# Dense bf16 tensor-core peaks from the vendors' datasheets (SXM parts), TFLOP/s: matched on the name torch reports.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}


def peak_tflops(device: str, given: float | None) -> float | None:
    if given or device != "cuda":
        return given
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def mix665k_rows(n: int, n_image_tokens: int, seed: int = 0) -> list[dict]:
    """`n` token rows with mix665k-like lengths: `ids` (an image row has `n_image_tokens` image ids after a 35-token
    system prompt), `labels` (the last 40% of the text trained), `words` (the modality sampler's length, negative for
    text-only rows)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        text_only = rng.random() < 0.06
        text = int(rng.lognormal(np.log(900), 0.6) if text_only else rng.lognormal(np.log(120), 0.8)) + 60
        text = min(text, 2048 - (0 if text_only else n_image_tokens))
        body = rng.integers(3, IMAGE_TOKEN_ID, text).tolist()
        ids = [1] + body[:35] + ([] if text_only else [IMAGE_TOKEN_ID] * n_image_tokens) + body[35:]
        trained = int(0.4 * text)
        labels = [IGNORE_INDEX] * (len(ids) - trained) + ids[len(ids) - trained :]
        rows.append({"ids": ids, "labels": labels, "words": -text if text_only else text})
    return rows


def batches(rows: list[dict], per_device: int, seed: int = 0) -> list[list[dict]]:
    order = modality_grouped_indices([row["words"] for row in rows], per_device, 1, torch.Generator().manual_seed(seed))
    return [[rows[i] for i in order[start : start + per_device]] for start in range(0, len(order), per_device)]


def build_model(args, attn: str):
    from transformers import LlavaForConditionalGeneration

    config = llava_7b_shaped_config(args.layers, IMAGE_TOKEN_ID, PAD_TOKEN_ID, tiny=args.tiny)
    config._attn_implementation = attn
    torch.manual_seed(0)
    with torch.device(args.device):
        model = LlavaForConditionalGeneration(config).to(torch.bfloat16)
    model.model.vision_tower.requires_grad_(False)
    model.train()
    return model


def model_flops(model, batch_rows: list[list[dict]], n_image_tokens: int) -> float:
    """FLOPs of the real tokens of all steps (see the module docstring)."""
    config = model.config.get_text_config()
    vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trained -= model.get_input_embeddings().weight.numel()  # a lookup, not a matmul
    flops = 0.0
    for rows in batch_rows:
        for row in rows:
            length = len(row["ids"])
            flops += 6 * trained * length + 6 * config.num_hidden_layers * config.hidden_size * length**2
            if row["words"] > 0:
                flops += 2 * vision * (n_image_tokens + 1)
    return flops


def run(args, attn: str, layout: str, steps: list[list[dict]], n_image_tokens: int, peak: float | None) -> dict:
    model = build_model(args, attn)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5)
    size = model.config.vision_config.image_size
    build = pack_rows if layout == "padding_free" else pad_rows
    computed = real = 0
    timed = steps[args.warmup :]
    if args.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    for step, rows in enumerate(steps):
        if step == args.warmup:
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        batch = build([row["ids"] for row in rows], [row["labels"] for row in rows], PAD_TOKEN_ID)
        n_images = sum(row["words"] > 0 for row in rows)
        if n_images:  # the same pixels in both layouts
            pixels = torch.randn(n_images, 3, size, size, generator=torch.Generator().manual_seed(step))
            batch["pixel_values"] = pixels.to(torch.bfloat16)
        batch = {key: value.to(args.device) for key, value in batch.items()}
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= args.warmup:
            computed += batch["input_ids"].numel()
            real += sum(len(row["ids"]) for row in rows)
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    flops = model_flops(model, timed, n_image_tokens)
    result = {
        "attn_implementation": attn,
        "layout": layout,
        "steps": len(timed),
        "tokens_per_s": real / seconds,
        "padding_fraction": 1 - real / computed,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None,
        "model_tflops_per_s": flops / seconds / 1e12,
        "mfu": flops / seconds / (peak * 1e12) if peak else None,
        "final_loss": float(loss),
    }
    del model, optimizer
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--layers", type=int, default=4, help="Decoder layers (LLaVA-1.5-7B has 32).")
    parser.add_argument("--rows", type=int, default=16, help="Rows per device batch (LLaVA-1.5: 16).")
    parser.add_argument("--steps", type=int, default=30, help="Timed steps per run.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps before them.")
    parser.add_argument("--peak_tflops", type=float, help="The GPU's dense bf16 peak (default: its datasheet's).")
    parser.add_argument("--attn", help="Comma-separated attention implementations (default: sdpa + flash if installed).")
    parser.add_argument("--tiny", action="store_true", help="Tiny widths and 28 px images (a CPU check of the script).")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device (use --device cpu --tiny for a CPU check)")
    attns = args.attn.split(",") if args.attn else ["sdpa"] + ["flash_attention_2"] * bool(
        importlib.util.find_spec("flash_attn")
    )
    n_image_tokens = (28 if args.tiny else 336) // 14
    n_image_tokens *= n_image_tokens
    rows = mix665k_rows(args.rows * (args.steps + args.warmup) * 4, n_image_tokens)
    steps = batches(rows, args.rows)[: args.steps + args.warmup]
    peak = peak_tflops(args.device, args.peak_tflops)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device: {name}; bf16 peak: {peak} TFLOP/s; {args.layers} layers; {args.rows} rows/step", flush=True)
    results = []
    for attn in attns:
        for layout in ("padded", "padding_free"):
            result = run(args, attn, layout, steps, n_image_tokens, peak)
            results.append(result)
            mfu = f"{100 * result['mfu']:.1f}%" if result["mfu"] is not None else "n/a (unknown peak)"
            memory = f"{result['peak_memory_gib']:.1f} GiB" if result["peak_memory_gib"] is not None else "n/a"
            print(
                f"{attn:>17} {layout:>12}: {result['tokens_per_s']:,.0f} tokens/s, padding "
                f"{100 * result['padding_fraction']:.1f}%, peak memory {memory}, MFU {mfu}",
                flush=True,
            )
    for attn in attns:
        padded, packed = [r for r in results if r["attn_implementation"] == attn]
        print(
            f"{attn}: padding-free tokens/s x{packed['tokens_per_s'] / padded['tokens_per_s']:.2f} of padded; "
            f"last loss {packed['final_loss']:.4f} vs {padded['final_loss']:.4f} (same rows, same init; bf16)"
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
