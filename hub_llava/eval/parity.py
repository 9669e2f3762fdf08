"""Is a score the model's, or the backend's? Two checks that answer the same questions twice and compare.

- `--parity N`: the first N questions of each benchmark are answered by the HF backend too (the reference: LLaVA's
  exact token ids through transformers' `generate`); results.json gets, per benchmark, the exact-match agreement of the
  two answer sets and the score of each on those N questions.
- `--check_invariance`: a sample is answered at batch 1 and at the chosen batch size (and in other dtypes when asked);
  the questions whose answers changed are printed. Greedy decoding should not depend on either; when it does
  (padding, kernels, reduced precision), this shows where.
"""

import json
import logging
from pathlib import Path

from hub_llava.eval.files import read_jsonl, write_jsonl

logger = logging.getLogger(__name__)
SHOWN = 20  # differing questions listed per benchmark


def _answers(path: Path) -> dict:
    from hub_llava.eval.run import doc_key

    return {doc_key(row): row for row in read_jsonl(path)} if path.is_file() else {}


def differences(docs: list[dict], first: Path, second: Path) -> tuple[int, list[dict]]:
    """(questions compared, the ones whose answers differ) between two answer files, over `docs`."""
    from hub_llava.eval.run import doc_key

    a, b = _answers(first), _answers(second)
    keys = [doc_key(doc) for doc in docs if doc_key(doc) in a and doc_key(doc) in b]
    changed = [
        {"question_id": a[k]["question_id"], "prompt": a[k]["prompt"], "first": a[k]["text"], "second": b[k]["text"]}
        for k in keys
        if a[k]["text"] != b[k]["text"]
    ]
    return len(keys), changed


def parity_report(benchmark, docs: list[dict], folder: Path, data_dir, backend_name: str) -> dict:
    """Agreement and scores of the backend's answers (`folder/answers.jsonl`) and the HF reference's
    (`folder/parity/hf/answers.jsonl`) on `docs` (the first N questions). Scores are absent where the benchmark is
    scored by a judge or a server."""
    from hub_llava.eval.run import doc_key, score_benchmark

    n, changed = differences(docs, folder / "answers.jsonl", folder / "parity" / "hf" / "answers.jsonl")
    ours = _answers(folder / "answers.jsonl")
    write_jsonl(
        folder / "parity" / backend_name / "answers.jsonl", [ours[doc_key(d)] for d in docs if doc_key(d) in ours]
    )
    report = {"n": n, "agreement": round(100 * (n - len(changed)) / n, 2) if n else None, "score": {}}
    for name in (backend_name, "hf"):
        result = score_benchmark(benchmark, data_dir, folder / "parity" / name, docs, partial=True)
        if result is not None:
            report["score"][name] = result["score"]
    report["differing"] = [
        {"question_id": c["question_id"], backend_name: c["first"], "hf": c["second"]} for c in changed[:SHOWN]
    ]
    return report


def print_parity(key: str, report: dict, backend_name: str) -> None:
    scores = ", ".join(f"{name} {score}" for name, score in report["score"].items()) or "not scored locally"
    print(f"parity {key}: {report['agreement']}% of {report['n']} answers identical to the hf backend's; "
          f"score on them: {scores}")  # fmt: skip
    for row in report["differing"]:
        print(f"  {row['question_id']}: {backend_name} {row[backend_name]!r} | hf {row['hf']!r}")


def check_invariance(model_path: str, benchmarks: list, docs_of, output_dir: Path, *, config, batch_size: int,
                     dtypes: list[str], sample: int, model_id: str, max_new_tokens: int | None) -> dict:  # fmt: skip
    """Answers `sample` questions of each benchmark at batch 1 and `batch_size` in `dtypes[0]`, and at `batch_size` in
    every other dtype; returns {benchmark: [{"variant", "n", "changed": [...]}]}, every variant compared with the
    first. `docs_of(benchmark)` gives a benchmark's docs. Answers go to `output_dir/invariance/<variant>/`."""
    from hub_llava.eval.run import answer_benchmark

    variants = [(1, dtypes[0]), (batch_size, dtypes[0])] + [(batch_size, d) for d in dtypes[1:]]
    names = [f"batch{b}_{d}" for b, d in variants]
    samples = {benchmark.key: docs_of(benchmark)[:sample] for benchmark in benchmarks}
    loaded = {}
    for (batch, dtype), name in zip(variants, names):
        backend = _backend(config, model_path, dtype, batch, loaded)
        for benchmark in benchmarks:
            answer_benchmark(backend, benchmark, samples[benchmark.key], output_dir / "invariance" / name /
                             benchmark.key, model_id=model_id, max_new_tokens=max_new_tokens)  # fmt: skip
    report = {}
    for benchmark in benchmarks:
        first = output_dir / "invariance" / names[0] / benchmark.key / "answers.jsonl"
        report[benchmark.key] = []
        for name in names[1:]:
            second = output_dir / "invariance" / name / benchmark.key / "answers.jsonl"
            n, changed = differences(samples[benchmark.key], first, second)
            report[benchmark.key].append({"variant": f"{names[0]} vs {name}", "n": n, "changed": changed})
    from accelerate import PartialState

    if PartialState().is_main_process:
        (output_dir / "invariance.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def _backend(config, model_path: str, dtype: str, batch: int, loaded: dict):
    """The backend answering at `batch` in `dtype`; one model in memory at a time, reused across batch sizes. The
    openai backend's "batch" is its concurrency: the server batches the requests in flight together."""
    from dataclasses import replace

    from hub_llava.eval.backend import load_backend
    from hub_llava.eval.run import load_model, load_processor

    if config.name == "openai":
        return load_backend(replace(config, concurrency=batch), model_path, dtype, batch)
    if dtype not in loaded:
        loaded.clear()
        model, processor = load_model(model_path, dtype) if config.name == "hf" else (None, load_processor(model_path))
        loaded[dtype] = load_backend(config, model_path, dtype, batch, model, processor)
    loaded[dtype].batch_size = batch
    return loaded[dtype]


def print_invariance(report: dict) -> None:
    for key, comparisons in report.items():
        for comparison in comparisons:
            changed = comparison["changed"]
            print(f"invariance {key}: {len(changed)} of {comparison['n']} answers changed, {comparison['variant']}")
            for row in changed:
                print(f"  {row['question_id']}: {row['first']!r} -> {row['second']!r}")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("parity and invariance checks")
    group.add_argument("--parity", type=int, default=0, metavar="N",
                       help="Also answer the first N questions of each benchmark with the hf backend and report the "
                       "agreement and both scores (results.json `parity`).")  # fmt: skip
    group.add_argument("--check_invariance", action="store_true",
                       help="Answer a sample at batch 1 and at --batch_size (and --invariance_dtypes) and print the "
                       "questions whose answers changed; writes OUTPUT_DIR/invariance.json, scores nothing.")  # fmt: skip
    group.add_argument("--invariance_sample", type=int, default=64, help="Questions per benchmark (default 64).")
    group.add_argument("--invariance_dtypes", nargs="+", metavar="DTYPE",
                       help="Also compare these dtypes at --batch_size with --dtype (e.g. bfloat16 float32).")  # fmt: skip


def invariance_command(args, benchmarks: list[str]) -> int:
    """`hub-llava eval --check_invariance`: answers, compares and prints; scores nothing."""
    from hub_llava.eval import registry
    from hub_llava.eval.backend import config_from_args
    from hub_llava.eval.run import benchmark_data

    config = config_from_args(args)
    if args.invariance_dtypes and config.name == "openai":
        raise ValueError("--invariance_dtypes: an openai server's dtype is set where it is served, not here.")
    selected = [registry.load(key) for key in benchmarks]
    output_dir = Path(args.output_dir)
    report = check_invariance(
        args.model, selected,
        lambda b: b.helper.load_docs(b, benchmark_data(b, args.data_dir, output_dir)),
        output_dir, config=config, batch_size=args.batch_size, dtypes=[args.dtype, *(args.invariance_dtypes or [])],
        sample=args.invariance_sample, model_id=args.model_name or Path(args.model.rstrip("/")).name,
        max_new_tokens=args.max_new_tokens,
    )  # fmt: skip
    from accelerate import PartialState

    if PartialState().is_main_process:
        print_invariance(report)
    return 0
