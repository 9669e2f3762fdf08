"""Staging evaluation results for the Hub: the details dataset, and the model card's merged `model-index`.

The details dataset (`<org>/details_<model_name>`) follows lighteval's convention: one config per benchmark holding
the per-sample rows of `<output_dir>/<benchmark>/details.jsonl`, one split per run named after its date, `latest` for
the most recent run, and a `results` config with each run's scores (one row per benchmark). Earlier runs already on the Hub are kept:
the caller passes their files in `previous_dir` and the configs are rebuilt from every file present.
"""

import json
import logging
import re
import shutil
from pathlib import Path

import yaml
from datasets import Dataset, Features, Value
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData, EvalResult, constants
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

import hub_llava
from hub_llava.cards import render
from hub_llava.eval.results import coverage
from hub_llava.hub_checks import HubCheckError, split_card

logger = logging.getLogger(__name__)

DETAIL_COLUMNS = ("question_id", "question", "prompt", "prediction", "target", "score")
DETAIL_FEATURES = Features(
    {
        "question_id": Value("string"),
        "question": Value("string"),
        "prompt": Value("string"),
        "prediction": Value("string"),
        "target": Value("string"),
        "score": Value("float64"),
        "extra": Value("string"),
    }
)
RUN_FILE = re.compile(r"^(?P<key>[^/]+)/details_(?P<run>\w+)\.parquet$")
RESULTS_FILE = re.compile(r"^results_(?P<run>\w+)\.parquet$")
RESULT_FEATURES = Features(
    {
        "benchmark": Value("string"),
        "name": Value("string"),
        "metric": Value("string"),
        "score": Value("float64"),
        "n": Value("int64"),
        "details": Value("string"),
        "model": Value("string"),
        "model_name": Value("string"),
        "date": Value("string"),
        "hub_llava_version": Value("string"),
        "dtype": Value("string"),
        "generation": Value("string"),
    }
)


def load_results(results_json) -> dict:
    """Reads a `results.json` written by `hub-llava eval`, checking the fields publishing relies on."""
    path = Path(results_json)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise HubCheckError(f"{path}: cannot read results ({err}).") from None
    for key in ("model", "model_name", "date", "results"):
        if key not in results:
            raise HubCheckError(f"{path}: no {key!r} field; is it a results.json from `hub-llava eval`?")
    if not isinstance(results["results"], dict) or not results["results"]:
        raise HubCheckError(f"{path}: 'results' is empty; nothing to publish.")
    for benchmark, entry in results["results"].items():
        missing = [field for field in ("score", "metric", "name", "n") if field not in entry]
        if missing or not isinstance(entry["score"], int | float):
            raise HubCheckError(f"{path}: benchmark {benchmark!r} lacks {missing or ['a numeric score']}.")
    return results


def run_split(date: str) -> str:
    """The split name of a run: its ISO date with `-`/`:` as `_` (`2026-11-21T23:59:00Z` -> `2026_11_21T23_59_00`)."""
    return re.sub(r"\W", "_", date.removesuffix("Z"))


def details_repo_id(repo_id: str, model_name: str) -> str:
    """`<namespace of repo_id>/details_<model_name>`, the lighteval name of a model's details dataset."""
    return f"{repo_id.split('/')[0]}/details_{re.sub(r'[^A-Za-z0-9._-]', '_', model_name)}"


def read_details(path: Path) -> list[dict]:
    """Reads one benchmark's `details.jsonl` into rows of `DETAIL_FEATURES` (other fields kept in `extra`)."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
                missing = [column for column in DETAIL_COLUMNS if column not in sample]
            except json.JSONDecodeError as err:
                raise HubCheckError(f"{path}:{number}: invalid JSON ({err}).") from None
            if missing:
                raise HubCheckError(f"{path}:{number}: missing field(s) {missing}.")
            target = sample["target"]
            rows.append(
                {
                    "question_id": str(sample["question_id"]),
                    "question": sample["question"],
                    "prompt": sample["prompt"],
                    "prediction": sample["prediction"],
                    "target": target if isinstance(target, str) else json.dumps(target, ensure_ascii=False),
                    "score": float(sample["score"]),
                    "extra": json.dumps(
                        {k: v for k, v in sample.items() if k not in DETAIL_COLUMNS}, ensure_ascii=False
                    ),
                }
            )
    return rows


def stage_details(results_json, repo_id: str, out_dir, previous_dir=None, model_repo_id: str | None = None) -> Path:
    """Stages the details dataset of a run as a Hub dataset repo folder (parquet + README with `configs:`).

    Args:
        results_json (`str` or `Path`):
            The run's `results.json`; the per-sample rows are read from `<its folder>/<benchmark>/details.jsonl`.
        repo_id (`str`):
            The details dataset's repo id (for the card's loading snippet).
        out_dir (`str` or `Path`):
            Emptied, then receives the repo folder.
        previous_dir (`str` or `Path`, *optional*):
            Files of earlier runs already on the Hub (`<benchmark>/details_<run>.parquet`, `results_<run>.parquet`).
        model_repo_id (`str`, *optional*):
            The model repo the results are published with (the card links it); defaults to results.json's `model`.
    """
    results = load_results(results_json)
    split = run_split(results["date"])
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    if previous_dir is not None:
        shutil.copytree(previous_dir, out, ignore=shutil.ignore_patterns(".cache", "README.md", ".gitattributes"))
    out.mkdir(parents=True, exist_ok=True)
    rows_per_benchmark = {}
    for key in results["results"]:
        path = Path(results_json).parent / key / "details.jsonl"
        if not path.is_file():  # e.g. mme_cognition (scored from mme's rows), or server/judge-scored benchmarks
            logger.warning("%s: no per-sample rows for %s; the card says so.", path, key)
            continue
        rows = read_details(path)
        rows_per_benchmark[key] = len(rows)
        (out / key).mkdir(exist_ok=True)
        Dataset.from_list(rows, features=DETAIL_FEATURES).to_parquet(str(out / key / f"details_{split}.parquet"))
    if not rows_per_benchmark:
        raise HubCheckError(f"{results_json}: no <benchmark>/details.jsonl beside it; nothing for a details dataset.")
    # One row per benchmark; parquet too, as `load_dataset` reads a whole repo with one builder.
    run = {key: results.get(key) for key in ("model", "model_name", "date", "hub_llava_version", "dtype")}
    run["generation"] = json.dumps(results.get("generation") or {})
    rows = [
        {
            "benchmark": key,
            **{f: e[f] for f in ("name", "metric", "score", "n")},
            "details": json.dumps(e.get("details") or {}),
            **run,
        }
        for key, e in results["results"].items()
    ]
    Dataset.from_list(rows, features=RESULT_FEATURES).to_parquet(str(out / f"results_{split}.parquet"))
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    card = _details_card(results, repo_id, split, files, rows_per_benchmark, model_repo_id)
    (out / "README.md").write_text(card, encoding="utf-8")
    return out


def _details_card(results: dict, repo_id: str, split: str, files: list[str], rows: dict, model_repo_id) -> str:
    runs_by_config: dict[str, list[tuple[str, str]]] = {}
    for file in files:
        if match := RUN_FILE.match(file):
            runs_by_config.setdefault(match["key"], []).append((match["run"], file))
        elif match := RESULTS_FILE.match(file):
            runs_by_config.setdefault("results", []).append((match["run"], file))
    configs = {}
    for name, runs in sorted(runs_by_config.items()):
        latest = max(runs)[1]
        configs[name] = {"data_files": [{"split": run, "path": file} for run, file in sorted(runs)]}
        configs[name]["data_files"].append({"split": "latest", "path": latest})
    card_data = DatasetCardData(
        pretty_name=f"Evaluation details of {results['model_name']}", tags=["evaluation", "hub_llava"]
    )
    MetadataConfigs(configs).to_dataset_card_data(card_data)
    generation = results.get("generation") or {}
    model = model_repo_id or results["model"]
    is_repo_id = "/" in model and not model.startswith((".", "/")) and not Path(model).exists()
    return render(
        "benchmark_card.md.jinja",
        card_data=card_data.to_yaml(),
        model_name=results["model_name"],
        model_link=f"[`{model}`]({constants.ENDPOINT}/{model})" if is_repo_id else f"`{model}`",
        hub_llava_version=results.get("hub_llava_version", hub_llava.__version__),
        generation_text=", ".join(f"{k}={v}" for k, v in generation.items()) or "greedy",
        dtype=results.get("dtype"),
        date=results["date"],
        split=split,
        repo_id=repo_id,
        runs=sorted({run for runs in runs_by_config.values() for run, _ in runs}),
        first_config=next(iter(rows)),
        benchmarks=[
            {
                "key": key,
                "name": e["name"],
                "score": e["score"],
                "metric": e["metric"],
                "n": e["n"],
                "rows": rows.get(key),
                "coverage": coverage(e),
            }
            for key, e in results["results"].items()
        ],
    )


def model_index(model_name: str, eval_results: list[EvalResult]) -> list[dict]:
    """`model-index` entries with one result per (task, dataset, source).

    `ModelCardData` groups results by task and dataset only, under the FIRST result's source: a measured score next
    to the authors' published one on the same benchmark would be shown as the authors'. Grouping by source too keeps
    each number with its own attribution.
    """
    groups: dict[tuple, list[EvalResult]] = {}
    for result in eval_results:
        groups.setdefault((result.unique_identifier, result.source_name, result.source_url), []).append(result)
    results = [eval_results_to_model_index(model_name, group)[0]["results"][0] for group in groups.values()]
    return [{"name": model_name, "results": results}]


def merge_model_index(card_text: str, eval_results: list[EvalResult], model_name: str) -> str:
    """Puts `eval_results` into a model card's `model-index`, replacing earlier entries of the same benchmark, metric
    and source (a re-run replaces its own numbers; results attributed to others, e.g. the authors', are kept). The
    rest of the metadata and the card's body are kept as they are."""

    def key(result: EvalResult):
        return (result.unique_identifier, result.metric_type, result.source_name)

    metadata, body = split_card(card_text, "README.md")
    existing = []
    if metadata.get("model-index"):
        model_name, existing = model_index_to_eval_results(metadata["model-index"])
    new_keys = {key(result) for result in eval_results}
    kept = [result for result in existing if key(result) not in new_keys]
    metadata["model-index"] = model_index(model_name, kept + list(eval_results))
    return f"---\n{yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)}---\n{body}"
