"""Benchmark: the training data path of `recipes/sft.py`, at LLaVA-1.5's real geometry.

    python bench/bench_collate.py [--rows 256] [--batch_size 16] [--skip_steps]

Four measurements, each with its baseline in the same run:

1. Collate CPU time per sample (one thread) at 336 px / 576 image tokens: hub_llava's collator (LLaVA's token
   stream from `tokenizer.model` + pad-to-square image processor, as the trainer builds it) vs TRL's stock path
   (`DataCollatorForVisionLanguageModeling`, CLIP preprocessing without padding, full-sequence loss), and the text
   part of ours alone (`ours_text_only_ms`).
   Rows: COCO-sized images (640x480, 480x640, 500x375) and 1-4 rounds of LLaVA-Instruct-like text. Both use the
   tiny local SentencePiece tokenizer (same for both paths; Vicuna's is not available offline). Target: <= 10 ms/sample/core.
2. Padding fraction of per-device batches on a synthetic mix665k-like length mix (94% image rows: 576 image tokens +
   log-normal text of median 120 tokens; 6% text-only rows of median 900 tokens, capped at 2048), 8 devices x 16:
   random order (the Trainer's default) vs `group_by_modality_length`, padded vs padding-free (`padding_free`: the
   rows of a batch concatenated; padding only to reach `pad_to_multiple_of`, here none and 64).
3. Padding-free collation on the rows of 1.: the padded collator (baseline) vs the padding-free one, ms per sample,
   and the padding fraction of their batches (`hub_llava.training.collator.padding_fraction`).
4. Token budget (`max_tokens_per_batch`) on the length mix of 2., 8 devices: rows and tokens per per-device batch
   (mean, min, max, max/min) and rows per optimizer step, fixed 16-row padding-free batches (the order of
   `group_by_modality_length`) vs a budget of 16 x the mean row length (`TokenBudgetBatchSampler`'s batches, with and
   without sorting each window by length), and the time to plan one epoch.
5. Tiny-model training step time of the smoke recipe (4 epochs, per-device batch 2) with 1 process and with 2
   processes (gloo DDP on CPU), one thread per process.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from hub_llava.processing import build_processor, padding_image_processor
from hub_llava.testing import tiny_tokenizer
from hub_llava.training.collator import build_collator, padding_fraction, row_ids
from hub_llava.training.configs import LlavaSFTConfig
from hub_llava.training.sampler import modality_grouped_indices, token_budget_batches
from hub_llava.training.tiny_model import make_tiny_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "what is the man doing on the red bus near a street with cars and people walking in front of it".split()
SIZES = [(640, 480), (480, 640), (500, 375)]


def sentence(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def rows(n, seed=0):
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        width, height = SIZES[i % len(SIZES)]
        image = Image.fromarray(np_rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        messages = []
        for _ in range(rng.randint(1, 4)):
            messages += [
                {"role": "user", "content": sentence(rng, rng.randint(6, 20)) + "?"},
                {"role": "assistant", "content": sentence(rng, rng.randint(5, 60))},
            ]
        out.append({"messages": messages, "images": [image]})
    return out


def time_collator(collator, data, batch_size, repeats=2):
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for i in range(0, len(data), batch_size):
            collator([dict(row) for row in data[i : i + batch_size]])
        best = min(best, time.process_time() - start)
    return 1000 * best / len(data)


def bench_collate(n_rows, batch_size):
    torch.set_num_threads(1)
    data = rows(n_rows)
    ours = build_processor(tiny_tokenizer())  # 336 px, 14 px patches -> 576 tokens, pad to square
    args = LlavaSFTConfig(output_dir="unused", bf16=False, use_cpu=True, report_to="none")
    our_collator = build_collator(ours, args)
    stock = build_processor(tiny_tokenizer(), padding_image_processor(336, do_pad=False))
    stock_collator = DataCollatorForVisionLanguageModeling(stock, max_length=2048)
    batch = our_collator([dict(row) for row in data[:2]])
    assert int((batch["input_ids"][0] == ours.tokenizer.convert_tokens_to_ids("<image>")).sum()) == 576
    stock_ms = time_collator(stock_collator, data, batch_size)
    our_ms = time_collator(our_collator, data, batch_size)
    trl_masks = DataCollatorForVisionLanguageModeling(ours, max_length=2048, assistant_only_loss=True)
    trl_masks_ms = time_collator(trl_masks, data[: 2 * batch_size], batch_size, repeats=1)
    images = [row["images"][0] for row in data]
    start = time.process_time()
    for row in data:
        row_ids(our_collator.stream, row["messages"], 1, our_collator.n_image_tokens)
    text_ms = 1000 * (time.process_time() - start) / len(data)
    return {
        "rows": n_rows,
        "batch_size": batch_size,
        "ours_ms": our_ms,
        "stock_ms": stock_ms,
        "ratio": our_ms / stock_ms,
        "trl_collator_with_assistant_masks_ms": trl_masks_ms,
        "ours_text_only_ms": text_ms,  # token_stream: template, SentencePiece ids, labels, image expansion
        "image_processor_only_ms": {
            "pad_to_square": time_images(ours.image_processor, images),
            "no_pad": time_images(stock.image_processor, images),
        },
        "image_backend": type(ours.image_processor).__name__,
    }


def bench_packed(n_rows, batch_size):
    torch.set_num_threads(1)
    data = rows(n_rows)
    processor = build_processor(tiny_tokenizer())
    args = LlavaSFTConfig(output_dir="unused", bf16=False, use_cpu=True, report_to="none")
    padded = build_collator(processor, args)
    args.padding_free = True
    packed = build_collator(processor, args)
    # interleaved, best of 3 each: the two differ by much less than this shared machine's noise between runs
    times = [
        (time_collator(padded, data, batch_size, 1), time_collator(packed, data, batch_size, 1)) for _ in range(3)
    ]
    padded_ms, packed_ms = min(t[0] for t in times), min(t[1] for t in times)
    batches = [[dict(row) for row in data[i : i + batch_size]] for i in range(0, len(data), batch_size)]
    pad_id = processor.tokenizer.pad_token_id
    return {
        "padded_ms": padded_ms,
        "packed_ms": packed_ms,
        "ratio": packed_ms / padded_ms,
        "padding_fraction_padded": padding_fraction([padded(batch) for batch in batches], pad_id),
        "padding_fraction_packed": padding_fraction([packed(batch) for batch in batches], pad_id),
    }


def time_images(image_processor, images):
    start = time.process_time()
    for image in images:
        image_processor(image, return_tensors="pt")
    return 1000 * (time.process_time() - start) / len(images)


def length_padding_fraction(order, tokens, batch_size, padding_free=False, pad_to_multiple_of=1):
    """Padding / computed tokens of the batches of `order`: padded to the longest row, or (`padding_free`) one
    sequence per batch padded to a multiple of `pad_to_multiple_of`."""
    computed = real = 0
    for i in range(0, len(order), batch_size):
        lengths = [tokens[j] for j in order[i : i + batch_size]]
        computed += (
            -(-sum(lengths) // pad_to_multiple_of) * pad_to_multiple_of
            if padding_free
            else max(lengths) * len(lengths)
        )
        real += sum(lengths)
    return 1 - real / computed


def length_mix(n, seed):
    """The mix665k-like rows: per row its tokens (image expanded, capped at 2048), its sampler length (words,
    negative for text-only rows) and whether it is text-only."""
    rng = np.random.default_rng(seed)
    is_text = rng.random(n) < 0.06
    text_tokens = np.where(is_text, rng.lognormal(np.log(900), 0.6, n), rng.lognormal(np.log(120), 0.8, n))
    tokens = np.minimum(np.where(is_text, 0, 576) + 60 + text_tokens, 2048).astype(int).tolist()
    words = [max(1, int(t / 1.4)) * (-1 if text else 1) for t, text in zip(text_tokens, is_text)]
    return tokens, words, is_text


def bench_padding(n=100_000, batch_size=16, devices=8, seed=0):
    tokens, words, is_text = length_mix(n, seed)
    random_order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    grouped = modality_grouped_indices(words, batch_size, devices, torch.Generator().manual_seed(seed))
    base = length_padding_fraction(random_order, tokens, batch_size)
    ours = length_padding_fraction(grouped, tokens, batch_size)
    packed = length_padding_fraction(grouped, tokens, batch_size, padding_free=True)
    packed_64 = length_padding_fraction(grouped, tokens, batch_size, padding_free=True, pad_to_multiple_of=64)
    return {
        "rows": n,
        "text_only": float(is_text.mean()),
        "random": base,
        "grouped": ours,
        "ratio": ours / base,
        "grouped_padding_free": packed,
        "grouped_padding_free_multiple_of_64": packed_64,
        "computed_tokens_padding_free_over_padded": (1 - ours) / (1 - packed),
    }


def spread(values):
    """Mean, extremes and 5th / 95th percentiles (a modality's last, underfull batch sets the minimum alone)."""
    p5, p95 = np.percentile(values, [5, 95])
    return {"mean": float(np.mean(values)), "min": int(min(values)), "p5": float(p5), "p95": float(p95),
            "max": int(max(values)), "max_over_min": max(values) / min(values), "p95_over_p5": p95 / p5}  # fmt: skip


def slowest_over_mean(steps, cost):
    """Per optimizer step, the costliest per-device batch over the step's mean (a step waits for its slowest rank),
    averaged over the steps."""
    ratios = []
    for step in steps:
        costs = [cost(batch) for batch in step]
        ratios.append(max(costs) / np.mean(costs))
    return float(np.mean(ratios))


def batch_figures(batches, tokens, devices):
    """Rows and tokens per per-device batch, rows per optimizer step (`devices` batches), over full steps only."""
    full = len(batches) - len(batches) % devices
    steps = [batches[i : i + devices] for i in range(0, full, devices)]
    return {
        "batches": len(batches),
        "rows_per_batch": spread([len(batch) for batch in batches]),
        "tokens_per_batch": spread([sum(tokens[i] for i in batch) for batch in batches]),
        "rows_per_step": spread([sum(len(batch) for batch in step) for step in steps]),
        # rank balance: tokens (the MLPs, projections) and sum of squared row lengths (varlen attention)
        "step_slowest_over_mean_tokens": slowest_over_mean(steps, lambda batch: sum(tokens[i] for i in batch)),
        "step_slowest_over_mean_attention": slowest_over_mean(steps, lambda batch: sum(tokens[i] ** 2 for i in batch)),
    }


def bench_budget(n=100_000, batch_size=16, devices=8, seed=0):
    tokens, words, _ = length_mix(n, seed)
    budget = batch_size * round(float(np.mean(tokens)))
    grouped = modality_grouped_indices(words, batch_size, devices, torch.Generator().manual_seed(seed))
    fixed = [grouped[i : i + batch_size] for i in range(0, n, batch_size)]
    results = {
        "budget": budget,
        "mean_row_tokens": float(np.mean(tokens)),
        "fixed_16_rows": batch_figures(fixed, tokens, devices),
    }
    for name, sort in (("budget_sorted_windows", True), ("budget_unsorted", False)):
        start = time.perf_counter()
        batches = token_budget_batches(tokens, words, budget, devices, torch.Generator().manual_seed(seed), sort=sort)
        results[name] = {**batch_figures(batches, tokens, devices), "plan_s": time.perf_counter() - start}
        results[name]["fill"] = results[name]["tokens_per_batch"]["mean"] / budget
    return results


def run_smoke(n_processes, tiny_dir, output_dir):
    recipe = ["recipes/sft.py", "--config", "recipes/tiny/sft/config_smoke.yaml", "--model_name_or_path", tiny_dir]
    recipe += ["--output_dir", output_dir, "--num_train_epochs", "4"]
    bin_dir = os.path.dirname(sys.executable)
    if n_processes == 1:
        command = [sys.executable, *recipe]
    else:
        command = [os.path.join(bin_dir, "accelerate"), "launch", "--multi_gpu", "--num_processes", str(n_processes)]
        command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *recipe]
    # accelerate launch gives each of its processes OMP_NUM_THREADS=1; do the same for the single process (with the
    # default thread count the tiny model's step is 3-4x slower on this shared 2-core machine).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, env=env)
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        state = json.load(f)
    with open(os.path.join(output_dir, "all_results.json")) as f:
        runtime = json.load(f)["train_runtime"]
    return {"steps": state["global_step"], "s_per_step": runtime / state["global_step"], "samples_per_s": 64 / runtime}


def bench_steps():
    with tempfile.TemporaryDirectory() as tmp:
        tiny = make_tiny_model(os.path.join(tmp, "tiny"))
        one = run_smoke(1, tiny, os.path.join(tmp, "one"))
        two = run_smoke(2, tiny, os.path.join(tmp, "two"))
    return {"1_process": one, "2_processes": two, "throughput_ratio": two["samples_per_s"] / one["samples_per_s"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--skip_steps", action="store_true", help="Skip the 1- vs 2-process training runs.")
    args = parser.parse_args()
    results = {"collate": bench_collate(args.rows, args.batch_size), "padding": bench_padding()}
    results["token_budget"] = bench_budget(batch_size=args.batch_size)
    results["padding_free_collate"] = bench_packed(args.rows, args.batch_size)
    if not args.skip_steps:
        results["steps"] = bench_steps()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
