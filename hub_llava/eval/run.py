"""`hub-llava eval`: answer benchmarks with a checkpoint, write LLaVA answer files, score them, write results.json.

    hub-llava eval --model PATH_OR_ID --benchmarks pope,mme --data_dir D --output_dir O [--limit N] [--batch_size B]
    accelerate launch --num_processes 8 -m hub_llava.cli eval ...     # a shard of the questions per process

Per benchmark, `O/<benchmark>/answers.jsonl` (LLaVA's answer format, in question order, readable by the official
scripts) and `O/<benchmark>/details.jsonl` (one scored row per question); `O/results.json` for all benchmarks.
A rerun skips questions already answered (resume); each process appends to its own part file, merged at the end.
"""

import datetime
import json
import logging
import uuid
from pathlib import Path

from tqdm.auto import tqdm

import hub_llava
from hub_llava.eval import registry
from hub_llava.eval.files import read_jsonl, write_jsonl

logger = logging.getLogger(__name__)
DTYPES = ("float16", "bfloat16", "float32")  # float16 first: the default, as LLaVA evaluated


def doc_key(row: dict) -> tuple[str, str]:
    """Identifies a question: MME and TextVQA share question ids between questions of one image, prompts differ."""
    return str(row["question_id"]), row["prompt"]


def _existing_answers(folder: Path) -> list[dict]:
    rows = []
    for path in [folder / "answers.jsonl", *sorted(folder.glob("answers.part*.jsonl"))]:
        if path.is_file():
            rows += read_jsonl(path)
    return rows


def answer_benchmark(
    generator, benchmark, docs: list[dict], folder: Path, *, batch_size: int, model_id: str,
    max_new_tokens: int | None = None,
):  # fmt: skip
    """Answers the docs not answered yet (this process's shard), then merges all parts in question order."""
    from accelerate import PartialState

    generation_kwargs = benchmark.generation_kwargs
    if max_new_tokens:
        generation_kwargs["max_new_tokens"] = max_new_tokens
    state = PartialState()
    existing = _existing_answers(folder)
    others = {row.get("model_id") for row in existing} - {model_id}
    if others:
        raise ValueError(
            f"{folder} holds answers of another model ({sorted(map(str, others))}); use another --output_dir."
        )
    done = {doc_key(row) for row in existing}
    pending = [doc for doc in docs if doc_key(doc) not in done]
    state.wait_for_everyone()  # every process has read the same state before anyone writes
    shard = pending[state.process_index :: state.num_processes]
    logger.info(
        "%s: %d questions, %d answered already, %d to answer", benchmark.key, len(docs), len(done), len(pending)
    )
    part = folder / f"answers.part{state.process_index}.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    with (
        open(part, "a", encoding="utf-8") as handle,
        tqdm(total=len(shard), desc=benchmark.key, disable=not state.is_main_process) as bar,
    ):
        for start in range(0, len(shard), batch_size):
            batch = shard[start : start + batch_size]
            texts = generator.generate(
                [benchmark.text(d["question"]) for d in batch], [d["image"] for d in batch], generation_kwargs
            )
            for doc, text in zip(batch, texts):
                row = {"question_id": doc["question_id"], "prompt": doc["prompt"], "text": text,
                       "answer_id": uuid.uuid4().hex[:22], "model_id": model_id, "metadata": {}}  # fmt: skip
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            bar.update(len(batch))
    state.wait_for_everyone()
    if state.is_main_process:
        _merge(folder, docs)
    state.wait_for_everyone()


def _merge(folder: Path, docs: list[dict]) -> None:
    rows = {}
    for row in _existing_answers(folder):
        rows.setdefault(doc_key(row), row)
    order = {doc_key(doc): i for i, doc in enumerate(docs)}
    merged = sorted(rows.values(), key=lambda r: order.get(doc_key(r), len(order)))
    write_jsonl(folder / "answers.jsonl", merged)
    for part in folder.glob("answers.part*.jsonl"):
        part.unlink()


def score_benchmark(benchmark, data_dir, folder: Path, docs: list[dict], *, partial: bool, judge=None,
                    judge_runs: int = 1) -> dict | None:  # fmt: skip
    """Scores the merged answer file and writes details.jsonl. Judge-scored benchmarks need `judge` (a
    `JudgeClient`); server-scored ones return None (use `hub-llava submission`)."""
    scored_by = benchmark.config.get("scored_by")
    if scored_by == "judge" and judge is not None:
        ground_truth = benchmark.helper.judge(benchmark, data_dir, folder, judge, judge_runs)
    elif scored_by in ("server", "judge") or not benchmark.config.get("ground_truth"):
        logger.info("%s: answers written to %s; %s", benchmark.key, folder, benchmark.config.get("notes", ""))
        return None
    else:
        ground_truth = benchmark.ground_truth(data_dir)
    result, rows = benchmark.helper.score(
        folder / "answers.jsonl", missing="skip" if partial else "error", **ground_truth
    )
    by_id = {}
    for doc in docs:
        by_id.setdefault(str(doc["question_id"]), doc)
    details = []
    for row in rows:
        doc = by_id.get(str(row["question_id"]), {})
        details.append({
            "question_id": row["question_id"], "question": row.get("question", doc.get("question")),
            "prompt": row.get("prompt", doc.get("prompt")), "prediction": row["prediction"], "target": row["target"], "score": row["score"],
        })  # fmt: skip
    write_jsonl(folder / "details.jsonl", details)
    return {"name": benchmark.name, **result}


def results_entries(benchmark, result: dict) -> dict:
    """The results.json entries of one benchmark (MME also gives `mme_cognition`)."""
    entries = {benchmark.key: {k: result[k] for k in ("score", "metric", "name", "n", "details")}}
    for key, extra in (benchmark.config.get("extra_results") or {}).items():
        value = result["details"][extra["details_key"]]
        entries[key] = {
            "score": round(value, 2),
            "metric": extra["metric"],
            "name": extra["name"],
            "n": result["n"],
            "details": {},
        }
    return entries


def load_model(model_path: str, dtype: str = "float16"):
    """The model in `dtype` (float16 by default, as LLaVA's loader evaluated the published models) and its
    processor. float16 also runs on CPU (torch 2.13)."""
    import torch
    from accelerate import PartialState
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    state = PartialState()
    model = LlavaForConditionalGeneration.from_pretrained(model_path, dtype=getattr(torch, dtype))
    processor = AutoProcessor.from_pretrained(model_path)
    return model.to(state.device).eval(), processor


def evaluate(model_path: str, benchmarks: list[str], data_dir, output_dir, *, limit: int | None = None,
             batch_size: int = 1, dtype: str = "float16", model_name: str | None = None,
             max_new_tokens: int | None = None, judge=None, judge_runs: int | None = None) -> dict:  # fmt: skip
    """Runs the benchmarks and returns (and writes, on the main process) results.json's content."""
    import torch  # torch, accelerate and transformers load only when the command runs
    from accelerate import PartialState

    from hub_llava.eval.generation import Generator

    # Without a GPU, processes started by `accelerate launch` only form a (gloo) group when asked for the CPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    output_dir = Path(output_dir)
    selected = [registry.load(key) for key in benchmarks]  # unknown keys fail before the model loads
    model, processor = load_model(model_path, dtype)
    generator = Generator(model, processor)
    model_name = model_name or Path(model_path.rstrip("/")).name
    results_path = output_dir / "results.json"
    summary = json.loads(results_path.read_text()) if results_path.is_file() else {"results": {}}
    if summary.get("model", model_path) != model_path:
        raise ValueError(
            f"{results_path} holds results of {summary['model']}, not {model_path}; use another --output_dir."
        )
    if summary.get("dtype", dtype) != dtype:
        raise ValueError(
            f"{results_path} holds results evaluated in {summary['dtype']}, not {dtype}; use another --output_dir."
        )
    summary.update({
        "model": model_path, "model_name": model_name, "dtype": dtype, "hub_llava_version": hub_llava.__version__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generation": {"temperature": 0, "num_beams": 1},
    })  # fmt: skip
    if max_new_tokens:
        summary["generation"]["max_new_tokens"] = max_new_tokens
    for benchmark in selected:
        docs = benchmark.helper.load_docs(benchmark, data_dir)
        docs = docs[:limit] if limit else docs
        folder = output_dir / benchmark.key
        answer_benchmark(
            generator,
            benchmark,
            docs,
            folder,
            batch_size=batch_size,
            model_id=model_name,
            max_new_tokens=max_new_tokens,
        )
        if state.is_main_process:
            runs = judge_runs or benchmark.config.get("judge_runs", 1)
            result = score_benchmark(
                benchmark, data_dir, folder, docs, partial=bool(limit), judge=judge, judge_runs=runs
            )
            if result is not None:
                summary["results"].update(results_entries(benchmark, result))
                logger.info("%s: %s = %s", benchmark.name, result["metric"], result["score"])
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def add_parser(subparsers):
    parser = subparsers.add_parser("eval", help="Answer and score benchmarks (LLaVA-1.5 protocol).")
    parser.add_argument("--model", required=True, help="Checkpoint folder or Hub id (llava-hf layout).")
    parser.add_argument(
        "--benchmarks", required=True, help=f"Comma-separated keys: {', '.join(registry.available())}."
    )
    parser.add_argument(
        "--data_dir", required=True, help="LLaVA's playground/data/eval layout (one folder per benchmark)."
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--limit", type=int, help="Only the first N questions of each benchmark (scored on those).")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float16",
        help="Weights dtype (default float16, as LLaVA evaluated; written into results.json).",
    )
    parser.add_argument(
        "--max_new_tokens", type=int, help="Override every benchmark's max_new_tokens (smoke tests; not the protocol)."
    )
    parser.add_argument("--judge_base_url", help="OpenAI-compatible endpoint for LLaVA-Bench / MM-Vet judging.")
    parser.add_argument(
        "--judge_model", help="Judge model (default: the benchmark's, e.g. gpt-4-0314 for LLaVA-Bench)."
    )
    parser.add_argument("--judge_api_key_env", default="OPENAI_API_KEY", help="Environment variable with the key.")
    parser.add_argument(
        "--judge_runs", type=int, help="Judge runs averaged (default: 3 for LLaVA-Bench, 1 for MM-Vet)."
    )
    parser.add_argument("--model_name", help="model_id written in the answer files (default: the folder name).")
    parser.set_defaults(func=main)
    return parser


def _judge(args):
    if not args.judge_base_url:
        return None
    from hub_llava.eval.judge import JudgeClient

    return JudgeClient(args.judge_base_url, args.judge_model, api_key_env=args.judge_api_key_env)


def main(args) -> int:
    summary = evaluate(
        args.model, [k.strip() for k in args.benchmarks.split(",") if k.strip()], args.data_dir, args.output_dir,
        limit=args.limit, batch_size=args.batch_size, dtype=args.dtype, model_name=args.model_name,
        max_new_tokens=args.max_new_tokens,
        judge=_judge(args),
        judge_runs=args.judge_runs,
    )  # fmt: skip
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(json.dumps({k: v["score"] for k, v in summary["results"].items()}, indent=2))
    return 0
