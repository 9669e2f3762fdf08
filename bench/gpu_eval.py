"""Evaluation backends on one GPU: a 7B-shaped LLaVA with few layers and random weights, made on the spot.

The model has LLaVA-1.5-7B's shapes (CLIP ViT-L/14-336 vision tower, 2-layer GELU projector, Llama hidden 4096,
intermediate 11008, 32 heads, vocabulary 32064; `--layers` decoder layers instead of 32), the processor LLaVA-1.5's
geometry (336 px, 576 image tokens, pad to square) around hub_llava's small local SentencePiece tokenizer. Questions
are POPE-shaped, one 640x480 drawn image each. It reports questions/s of the HF backend at batch 1 and 16 and, when
vLLM is installed, of the vllm backend, plus the parity (exact-match agreement) of every backend with HF batch 1.
Random weights make near-tied logits common, so agreement is a lower bound of what a trained model shows.

    bench/gpu_eval.sh                      # what a one-GPU machine runs (< 8 minutes)
    python bench/gpu_eval.py --device cpu --layers 1 --questions 4 --tiny   # a CPU smoke test of the script
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_checkpoint(folder: Path, layers: int, tiny: bool, device: str) -> None:
    import torch
    from transformers import LlavaForConditionalGeneration

    from hub_llava.processing import build_processor
    from hub_llava.testing import llava_7b_shaped_config, tiny_tokenizer
    from hub_llava.token_stream import TokenStream

    size = 28 if tiny else 336
    processor = build_processor(tiny_tokenizer(), patch_size=14, image_size=size)
    tokenizer = processor.tokenizer
    config = llava_7b_shaped_config(
        layers, tokenizer.convert_tokens_to_ids("<image>"), tokenizer.pad_token_id, tiny=tiny
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(config).to(torch.float16)
    with torch.no_grad():  # ids past the small tokenizer are never generated (they could not be decoded)
        model.lm_head.weight[len(tokenizer) :] = 0
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    TokenStream.from_processor(processor).save_pretrained(folder)


def make_questions(root: Path, n: int) -> None:
    """A POPE-shaped benchmark folder (LLaVA's question file + annotations) with one drawn image per question."""
    from PIL import Image, ImageDraw

    folder = root / "pope"
    (folder / "val2014").mkdir(parents=True)
    (folder / "coco").mkdir()
    objects = ["cat", "dog", "car", "bus", "clock", "tree", "sign", "person"]
    questions, labels = [], []
    for i in range(n):
        name = f"COCO_val2014_{i:012d}.jpg"
        image = Image.new("RGB", (640, 480), (i * 37 % 255, i * 91 % 255, 160))
        ImageDraw.Draw(image).ellipse([100 + i % 200, 80, 400, 300 + i % 150], fill=(250, 200, 30))
        image.save(folder / "val2014" / name)
        text = f"Is there a {objects[i % len(objects)]} in the image?"
        questions.append({"question_id": i + 1, "image": name, "category": "random",
                          "text": text + "\nAnswer the question using a single word or phrase."})  # fmt: skip
        labels.append({"question_id": i + 1, "image": name, "text": text, "label": "yes" if i % 2 else "no"})
    (folder / "llava_pope_test.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (folder / "coco" / "coco_pope_random.json").write_text("".join(json.dumps(q) + "\n" for q in labels))


def worker(folder: Path, name: str, backend: str, batch: int, n: int, max_new_tokens: int) -> None:
    """In its own process (GPU memory is the backend's alone): load, warm up, time the answering only."""
    from hub_llava.eval import registry
    from hub_llava.eval.backend import BackendConfig, load_backend
    from hub_llava.eval.run import load_model, load_processor

    model_path = str(folder / "model")
    model, processor = load_model(model_path) if backend == "hf" else (None, load_processor(model_path))
    answering = load_backend(BackendConfig(backend), model_path, "float16", batch, model, processor)
    pope = registry.load("pope")
    docs = pope.helper.load_docs(pope, folder / "data")[:n]
    requests = [{"question_id": d["question_id"], "text": pope.text(d["question"]), "image": d["image"]} for d in docs]
    kwargs = {"max_new_tokens": max_new_tokens}
    list(answering.answer(requests[: min(batch, 8)], kwargs))  # warm-up (kernels, CUDA graphs, allocator)
    texts = [None] * n
    start = time.perf_counter()
    for index, text in answering.answer(requests, kwargs):
        texts[index] = text
    rate = n / (time.perf_counter() - start)
    (folder / f"{name}.json").write_text(json.dumps({"rate": rate, "answers": texts}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2, help="Llama decoder layers (7B has 32).")
    parser.add_argument("--questions", type=int, default=256)
    parser.add_argument("--batch1_questions", type=int, default=64, help="Questions answered at batch 1.")
    parser.add_argument("--max_new_tokens", type=int, default=16)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="Tiny shapes (a CPU smoke test of this script).")
    parser.add_argument("--output_dir", help="Keep the checkpoint and answers here (default: a temporary folder).")
    parser.add_argument("--worker", nargs=4, metavar=("NAME", "BACKEND", "BATCH", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, backend, batch, n = args.worker
        return worker(Path(args.output_dir), name, backend, int(batch), int(n), args.max_new_tokens)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.output_dir or tmp)
        start = time.perf_counter()
        make_checkpoint(out / "model", args.layers, args.tiny, args.device)
        make_questions(out / "data", args.questions)
        print(
            f"checkpoint ({args.layers} layers) and {args.questions} questions made in {time.perf_counter() - start:.0f} s"
        )
        runs = [("hf_batch1", "hf", 1, args.batch1_questions), ("hf_batch16", "hf", 16, args.questions)]
        if importlib.util.find_spec("vllm"):
            runs.append(("vllm", "vllm", 256, args.questions))
        else:
            print("vLLM is not installed: the vllm backend is skipped (pip install hub_llava[vllm])")
        results = {}
        for name, backend, batch, n in runs:
            command = [sys.executable, __file__, "--output_dir", str(out), "--max_new_tokens", str(args.max_new_tokens),
                       "--worker", name, backend, str(batch), str(n)]  # fmt: skip
            subprocess.run(command, check=True)
            results[name] = json.loads((out / f"{name}.json").read_text())
            print(f"{name}: {results[name]['rate']:.2f} questions/s ({n} questions, answering only, after a warm-up)")
        reference = results["hf_batch1"]["answers"]
        for name, *_ in runs[1:]:
            same = sum(a == b for a, b in zip(reference, results[name]["answers"]))
            speed = results[name]["rate"] / results["hf_batch1"]["rate"]
            print(f"parity {name} vs hf_batch1: {same} of {len(reference)} answers identical "
                  f"({100 * same / len(reference):.1f}%); questions/s x{speed:.1f}")  # fmt: skip
        if "vllm" in results:  # the whole path once: the runner, the parity check, results.json
            parity = 32
            subprocess.run(["hub-llava", "eval", "--model", str(out / "model"), "--benchmarks", "pope", "--data_dir",
                            str(out / "data"), "--output_dir", str(out / "eval_vllm"), "--backend", "vllm",
                            "--batch_size", "256", "--max_new_tokens", str(args.max_new_tokens), "--parity",
                            str(parity)], check=True)  # fmt: skip
            report = json.loads((out / "eval_vllm" / "results.json").read_text())["parity"]["pope"]
            print(f"hub-llava eval --backend vllm --parity {parity}: agreement {report['agreement']}%, "
                  f"scores {report['score']}")  # fmt: skip


if __name__ == "__main__":
    main()
