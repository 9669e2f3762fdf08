"""`hub-llava eval`: answer benchmarks with a checkpoint, write LLaVA answer files, score them, write results.json.

    hub-llava eval --model PATH_OR_ID --benchmarks pope,mme --data_dir D --output_dir O [--limit N] [--batch_size B]
    accelerate launch --num_processes 8 -m hub_llava.cli eval ...     # a shard of the questions per process

Per benchmark, `O/<benchmark>/answers.jsonl` (LLaVA's answer format, in question order, readable by the official
scripts) and `O/<benchmark>/details.jsonl` (one scored row per question); `O/results.json` for all benchmarks.
A rerun skips questions already answered (resume); each process appends to its own part file, merged at the end.
"""

import argparse
import datetime
import json
import logging
import uuid
from pathlib import Path

from tqdm.auto import tqdm

import hub_llava
from hub_llava.eval import registry
from hub_llava.eval.backend import BackendConfig, BackendError
from hub_llava.eval.docs import image_file
from hub_llava.eval.files import read_jsonl, write_jsonl
from hub_llava.eval.identity import model_identity, run_identity

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


def generation_settings(benchmark, max_new_tokens: int | None = None) -> dict:
    """The benchmark's generation kwargs, with `--max_new_tokens` applied."""
    kwargs = benchmark.generation_kwargs
    if max_new_tokens:
        kwargs["max_new_tokens"] = max_new_tokens
    return kwargs


def answer_benchmark(backend, benchmark, docs: list[dict], folder: Path, *, model_id: str,
                     max_new_tokens: int | None = None, run: dict | None = None):  # fmt: skip
    """Answers the docs not answered yet (this process's shard) with `backend`, then merges all parts in question
    order. Answers are appended to this process's part file as they arrive, so an interrupted run keeps them.

    `run` (`hub_llava.eval.identity.run_identity`) keys the resume: answers in `folder` made by another model,
    backend, dtype, generation settings or question set are refused, naming what differs."""
    from accelerate import PartialState

    from hub_llava.eval.identity import check_resume, record_run

    generation_kwargs = generation_settings(benchmark, max_new_tokens)
    state = PartialState()
    existing = _existing_answers(folder)
    others = {row.get("model_id") for row in existing} - {model_id}
    if others:
        raise ValueError(
            f"{folder} holds answers of another model ({sorted(map(str, others))}); use another --output_dir."
        )
    if run is not None:
        check_resume(folder, run, has_answers=bool(existing))
    done = {doc_key(row) for row in existing}
    pending = [doc for doc in docs if doc_key(doc) not in done]
    state.wait_for_everyone()  # every process has read the same state before anyone writes
    if run is not None and state.is_main_process:
        record_run(folder, run)
    shard = pending[backend.shard_index :: backend.num_shards]
    logger.info(
        "%s: %d questions, %d answered already, %d to answer", benchmark.key, len(docs), len(done), len(pending)
    )
    requests = [{"question_id": d["question_id"], "text": benchmark.text(d["question"]), "image": d["image"]}
                for d in shard]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with (
            open(folder / f"answers.part{state.process_index}.jsonl", "a", encoding="utf-8") as handle,
            tqdm(total=len(shard), desc=benchmark.key, disable=not state.is_main_process) as bar,
        ):
            for index, text in backend.answer(requests, generation_kwargs):
                doc = shard[index]
                row = {"question_id": doc["question_id"], "prompt": doc["prompt"], "text": text,
                       "answer_id": uuid.uuid4().hex[:22], "model_id": model_id, "metadata": {}}  # fmt: skip
                if backend.writes:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    handle.flush()
                bar.update(1)
    except BackendError as error:
        raise BackendError(f"{benchmark.key}: {error}") from None
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
            "category": row.get("category", row.get("type", doc.get("category"))),  # per-category comparisons
        })  # fmt: skip
    write_jsonl(folder / "details.jsonl", details)
    return {"name": benchmark.name, **result}


def results_entries(benchmark, result: dict, *, limit: int | None = None, answered: int | None = None,
                    total: int | None = None) -> dict:  # fmt: skip
    """The results.json entries of one benchmark (MME also gives `mme_cognition`), each with how much of the
    benchmark it covers: `limit` (the `--limit`, or None), `answered` (questions asked and answered) and `total`
    (questions in the benchmark); `n` stays what the score counts (ScienceQA-IMG: the image questions). A score that
    could not be computed (e.g. MME-Cognition when no cognition task was answered) has no entry at all: it is not
    evaluated, never 0."""
    coverage = {"limit": limit, "answered": answered, "total": total}
    scores = {benchmark.key: (result["score"], result["metric"], result["name"], result["details"])}
    for key, extra in (benchmark.config.get("extra_results") or {}).items():
        scores[key] = (result["details"].get(extra["details_key"]), extra["metric"], extra["name"], {})
    entries = {}
    for key, (score, metric, name, details) in scores.items():
        if score is None:
            logger.warning("%s: not evaluated (nothing to score); left out of results.json", name)
            continue
        entries[key] = {"score": round(score, 2), "metric": metric, "name": name, "n": result["n"], **coverage,
                        "details": details}  # fmt: skip
    return entries


def load_model(model_path: str, dtype: str = "float16"):
    """The model in `dtype` (float16 by default, as LLaVA's loader evaluated the published models) and its
    processor. float16 also runs on CPU (torch 2.13)."""
    import torch
    from accelerate import PartialState
    from transformers import LlavaForConditionalGeneration

    state = PartialState()
    model = LlavaForConditionalGeneration.from_pretrained(model_path, dtype=getattr(torch, dtype))
    return model.to(state.device).eval(), load_processor(model_path)


def load_processor(model_path: str):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_path)


def _read_summary(path: Path, model_path: str, dtype: str, backend: str) -> dict:
    """An existing results.json to add to, refused when it was made by another model, dtype or backend."""
    summary = json.loads(path.read_text()) if path.is_file() else {"results": {}}
    checks = [
        (summary.get("model"), model_path, f"results of {summary.get('model')}, not {model_path}"),
        (summary.get("dtype"), dtype, f"results evaluated in {summary.get('dtype')}, not {dtype}"),
        ((summary.get("backend") or {}).get("name"), backend,
         f"answers of the {(summary.get('backend') or {}).get('name')} backend, not {backend}"),
    ]  # fmt: skip
    for recorded, value, what in checks:
        if recorded not in (None, value):
            raise ValueError(f"{path} holds {what}; use another --output_dir.")
    return summary


def check_benchmark_files(benchmark, root, docs: list[dict]) -> None:
    """Raises naming what is missing: the ground-truth files of `benchmark` under `root`, or images its questions
    refer to (all of them are looked for: ~1 s per 100K questions)."""
    for name, paths in benchmark.ground_truth(root).items():
        for path in paths if isinstance(paths, list) else [paths]:
            if not Path(path).exists():
                raise FileNotFoundError(f"{benchmark.key}: its {name} file is missing: {path}")
    missing = [
        doc["image"] for doc in docs if isinstance(doc["image"], str | Path) and image_file(doc["image"]) is None
    ]
    if missing:
        raise FileNotFoundError(
            f"{benchmark.key}: {len(missing)} of {len(docs)} questions refer to images that do not exist "
            f"(e.g. {missing[0]}); check --data_dir."
        )


def benchmark_data(benchmark, data_dir, output_dir: Path):
    """The data root of `benchmark`: `--data_dir` (LLaVA's playground/data/eval layout), else its Hub dataset written
    in that layout under `output_dir/hub_data` (once, by the main process)."""
    if data_dir is not None:
        return data_dir
    from accelerate import PartialState

    from hub_llava.eval.hub_source import materialise

    with PartialState().main_process_first():
        return materialise(benchmark, output_dir / "hub_data")


def evaluate(model_path: str, benchmarks: list[str], data_dir, output_dir, *, limit: int | None = None,
             batch_size: int = 1, dtype: str = "float16", model_name: str | None = None,
             max_new_tokens: int | None = None, judge=None, judge_runs: int | None = None,
             backend: BackendConfig | None = None, parity: int = 0, model=None, processor=None,
             identity: dict | None = None, lockstep: bool = False) -> dict:  # fmt: skip
    """Runs the benchmarks and returns (and writes, on the main process) results.json's content.

    `backend` chooses how questions are answered (default: the HF backend); `parity` > 0 also answers the first
    `parity` questions of each benchmark with the HF backend and records the agreement and both scores. `model` and
    `processor` (HF backend): a model already in memory (e.g. the one training,
    `hub_llava.training.eval_callback`) answers instead of loading `model_path`, in its own dtype (`dtype` then says
    which it is); `identity` (`hub_llava.eval.identity.model_identity`'s dict) then names its weights; `lockstep`
    when its weights are sharded over the processes (ZeRO-3, see `HFBackend`)."""
    import torch  # torch, accelerate and transformers load only when the command runs
    from accelerate import PartialState

    from hub_llava.eval.backend import HFBackend, load_backend
    from hub_llava.eval.generation import Generator
    from hub_llava.eval.parity import parity_report, print_parity

    # Without a GPU, processes started by `accelerate launch` only form a (gloo) group when asked for the CPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    config = backend or BackendConfig()
    if parity and config.name == "hf":
        raise ValueError("--parity compares another backend with the hf backend; choose --backend vllm or openai.")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive number of questions, got {limit}.")
    if batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {batch_size}.")
    output_dir = Path(output_dir)
    selected = [registry.load(key) for key in benchmarks]  # unknown keys fail before the model loads
    results_path = output_dir / "results.json"
    summary = _read_summary(results_path, model_path, dtype, config.name)
    # Every benchmark's files are read and checked before anything is answered: a missing second benchmark (or one
    # of its images) is found now, not after the first benchmark has run.
    prepared = []
    for benchmark in selected:
        root = benchmark_data(benchmark, data_dir, output_dir)
        all_docs = benchmark.helper.load_docs(benchmark, root)
        check_benchmark_files(benchmark, root, all_docs)
        prepared.append((benchmark, root, all_docs))
    if config.name == "hf" and model is None:
        model, processor = load_model(model_path, dtype)
    elif config.name == "vllm":
        processor = load_processor(model_path)
    answering = load_backend(config, model_path, dtype, batch_size, model, processor, lockstep)
    identity = identity or model_identity(model_path)
    model_name = model_name or Path(model_path.rstrip("/")).name
    summary.update({
        "model": model_path, "model_name": model_name, "dtype": dtype, "hub_llava_version": hub_llava.__version__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generation": {"temperature": 0, "num_beams": 1}, "backend": answering.describe(), "batch_size": batch_size,
    })  # fmt: skip
    if max_new_tokens:
        summary["generation"]["max_new_tokens"] = max_new_tokens
    summary["limit"] = limit
    summary["model_identity"] = identity
    runs = []
    for benchmark, root, all_docs in prepared:
        docs = all_docs[:limit] if limit else all_docs
        runs.append((benchmark, root, docs, output_dir / benchmark.key))
        settings = generation_settings(benchmark, max_new_tokens)
        run = run_identity(identity, answering.describe(), dtype, settings, all_docs)
        answer_benchmark(answering, benchmark, docs, runs[-1][3], model_id=model_name, max_new_tokens=max_new_tokens,
                         run=run)  # fmt: skip
        if state.is_main_process:
            judged = judge_runs or benchmark.config.get("judge_runs", 1)
            result = score_benchmark(benchmark, root, runs[-1][3], docs, partial=bool(limit), judge=judge,
                                     judge_runs=judged)  # fmt: skip
            if result is not None:
                cut = limit if len(docs) < len(all_docs) else None  # a limit above the benchmark's size cuts nothing
                entries = results_entries(benchmark, result, limit=cut, answered=len(docs), total=len(all_docs))
                summary["results"].update(entries)
                logger.info("%s: %s = %s", benchmark.name, result["metric"], result["score"])
    answering.close()  # a vLLM engine gives its GPU memory back before the HF reference loads
    if parity:
        reference = HFBackend(Generator(*load_model(model_path, dtype)), batch_size)
        for benchmark, root, docs, folder in runs:
            answer_benchmark(reference, benchmark, docs[:parity], folder / "parity" / "hf", model_id=model_name,
                             max_new_tokens=max_new_tokens)  # fmt: skip
            if state.is_main_process:
                report = parity_report(benchmark, docs[:parity], folder, root, config.name)
                summary.setdefault("parity", {})[benchmark.key] = report
                print_parity(benchmark.key, report, config.name)
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (`--limit 0`, `--batch_size 0` are mistakes, not "everything")."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parser(subparsers):
    from hub_llava.eval import backend, parity

    parser = subparsers.add_parser("eval", help="Answer and score benchmarks (LLaVA-1.5 protocol).")
    parser.add_argument("--model", required=True, help="Checkpoint folder or Hub id (llava-hf layout).")
    parser.add_argument(
        "--benchmarks", required=True, help=f"Comma-separated keys: {', '.join(registry.available())}."
    )
    parser.add_argument("--data_dir", help="LLaVA's playground/data/eval layout (one folder per benchmark); "
                        "without it, benchmarks are read from their Hub datasets (lmms-lab).")  # fmt: skip
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--limit", type=positive_int, help="Only the first N questions of each benchmark (scored on "
                        "those; results.json and pushed cards say so).")  # fmt: skip
    parser.add_argument("--batch_size", type=positive_int, default=1)
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
    parser.add_argument("--judge_cache", help="Folder of cached judge replies (default: ~/.cache/hub_llava/judge; "
                        "'none' disables the cache).")  # fmt: skip
    parser.add_argument("--model_name", help="model_id written in the answer files (default: the folder name).")
    backend.add_arguments(parser)
    parity.add_arguments(parser)
    parser.set_defaults(func=main)
    return parser


def _judge(args):
    if not args.judge_base_url:
        return None
    from hub_llava.eval.judge import JudgeClient, default_cache_dir

    cache = None if args.judge_cache == "none" else (args.judge_cache or default_cache_dir())
    return JudgeClient(args.judge_base_url, args.judge_model, api_key_env=args.judge_api_key_env, cache_dir=cache)


def main(args) -> int:
    import sys

    from accelerate import PartialState

    from hub_llava.eval.backend import config_from_args
    from hub_llava.eval.hub_source import HubSourceError

    benchmarks = [k.strip() for k in args.benchmarks.split(",") if k.strip()]
    try:
        if args.check_invariance:
            from hub_llava.eval.parity import invariance_command

            return invariance_command(args, benchmarks)
        summary = evaluate(
            args.model, benchmarks, args.data_dir, args.output_dir, limit=args.limit, batch_size=args.batch_size,
            dtype=args.dtype, model_name=args.model_name, max_new_tokens=args.max_new_tokens, judge=_judge(args),
            judge_runs=args.judge_runs, backend=config_from_args(args), parity=args.parity,
        )  # fmt: skip
    except (BackendError, HubSourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if PartialState().is_main_process:
        print(json.dumps({k: v["score"] for k, v in summary["results"].items()}, indent=2))
    return 0
