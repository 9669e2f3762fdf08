"""MM-Vet: GPT-graded correctness (0.0-1.0 per item, one grade per judge run), scored as the official evaluator does.

Grade files, in any mix:
- the official grader's `*_gpt-4-grade-Nruns.json`: `{"v1_0": {"model": [...], "content": [...], "score": [...]}}`,
  one list entry per run (LLaVA-1.5's own files, e.g. `llava-v1.5-7b_gpt-4-grade-3runs.json`);
- ours, `grades_run<k>.jsonl` (`hub_llava.eval.judge.grade_mm_vet`): one run per file, rows `{"question_id": "v1_0",
  "score": ...}`.
All runs of all files are averaged (`hub_llava.eval.metrics.mm_vet`). With the official `mm-vet.json` the scores per
capability and capability integration are given too, and every item of it must be graded (or `--missing`).
"""

import json
import numbers
from pathlib import Path

from hub_llava.eval.docs import llava_question_docs as load_docs  # noqa: F401
from hub_llava.eval.files import read_jsonl, write_jsonl
from hub_llava.eval.hub_source import write_image
from hub_llava.eval.metrics.mm_vet import mm_vet_scores

SCORE_ARGUMENTS = {
    "reviews": {
        "required": True,
        "nargs": "+",
        "help": "Grade files: the official grader's *-grade-Nruns.json (all its runs) or ours (grades_run<k>.jsonl, "
        "one run each); every run is averaged.",
    },
    "questions": {"help": "The official mm-vet.json (per-capability scores; every item must be graded)."},
}


def _grade(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{where}: the grade {value!r} is not a number in [0, 1].")
    return float(value)


def _official_runs(path: Path, data) -> list[dict[str, float]]:
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: not an official MM-Vet grade file (an object of 'v1_<i>' entries).")
    width = None
    for key, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("score"), list):
            raise ValueError(f"{path}: {key} is not an official grade entry {{'model': [...], 'score': [...]}}.")
        if width is None:
            width, first = len(entry["score"]), key
        elif len(entry["score"]) != width:
            raise ValueError(f"{path}: {key} has {len(entry['score'])} runs, {first} has {width}.")
    runs = [{} for _ in range(width)]
    for key, entry in data.items():
        for run, value in zip(runs, entry["score"]):
            run[str(key)] = _grade(value, f"{path}: {key}")
    return runs


def read_grade_runs(path) -> list[dict[str, float]]:
    """The runs of one grade file, each `{item id ("v1_<i>"): grade}` in file order."""
    path = Path(path)
    if path.suffix == ".json":
        return _official_runs(path, json.loads(path.read_text(encoding="utf-8")))
    run = {}
    for number, row in enumerate(read_jsonl(path), 1):
        if "question_id" not in row or "score" not in row:
            raise ValueError(f"{path}:{number}: a grade row needs 'question_id' and 'score'.")
        key = _key(row["question_id"])
        if key in run:
            raise ValueError(f"{path}:{number}: {key} is graded twice.")
        run[key] = _grade(row["score"], f"{path}:{number}")
    return [run]


def _key(question_id) -> str:
    """LLaVA's answer files number the items 0..217; the official files call them "v1_0".."v1_217"."""
    return str(question_id) if str(question_id).startswith("v1_") else f"v1_{question_id}"


def _runs(reviews) -> tuple[list[dict[str, float]], dict[str, int]]:
    runs, files = [], {}
    for path in reviews:
        file_runs = read_grade_runs(path)
        files[str(path)] = len(file_runs)
        for number, run in enumerate(file_runs, 1):
            if runs and run.keys() != runs[0].keys():
                other = sorted(run.keys() ^ runs[0].keys())
                raise ValueError(
                    f"{path}: run {number} grades {len(run)} items, the first run {len(runs[0])}; they differ on "
                    f"{other[:3]}. Every run must grade the same items."
                )
            runs.append(run)
    return runs, files


def score(answers=None, *, reviews, questions=None, missing: str = "error"):
    runs, files = _runs(reviews)
    graded = runs[0]
    truth = json.loads(Path(questions).read_text(encoding="utf-8")) if questions else None
    absent = []
    if truth is None:
        capabilities = {key: [] for key in graded}
    else:
        unknown = [key for key in graded if key not in truth]
        if unknown:
            raise ValueError(f"{reviews[0]}: grades for items not in {questions}: {unknown[:3]}.")
        absent = [key for key in truth if key not in graded]
        if absent and missing == "error":
            raise ValueError(
                f"{len(absent)} of {len(truth)} MM-Vet items have no grade (e.g. {absent[:3]}); "
                "pass --missing wrong to score them 0 or --missing skip to leave them out."
            )
        kept = [key for key in truth if key in graded or missing == "wrong"]
        capabilities = {key: truth[key]["capability"] for key in kept}
    summary = mm_vet_scores(runs, capabilities)
    details = {
        **{k: summary[k] for k in ("std", "runs", "capabilities", "capability_integrations", "num_runs")},
        "files": files,
        "answered": len(graded),
        "missing": len(absent),
    }
    result = {"score": summary["total"], "metric": "gpt_score", "n": summary["n"], "details": details}
    return result, _rows(answers, runs, truth or {}) if answers else []


def _rows(answers, runs: list[dict[str, float]], truth: dict) -> list[dict]:
    """Per answered item: the model's answer and its grade averaged over the runs."""
    rows = []
    for answer in read_jsonl(answers):
        key = _key(answer["question_id"])
        if key in runs[0]:
            rows.append({
                "question_id": answer["question_id"], "prompt": answer["prompt"], "prediction": answer["text"],
                "target": truth.get(key, {}).get("answer"), "score": sum(run[key] for run in runs) / len(runs),
            })  # fmt: skip
    return rows


def judge(benchmark, data_dir, folder, client, runs: int) -> dict:
    """Writes `grades_run<k>.jsonl` for k = 1..runs (existing runs are kept) and returns `score()`'s keywords."""
    from hub_llava.eval.judge import grade_mm_vet

    truth_path = benchmark.folder(data_dir) / benchmark.config["data_files"]["ground_truth"]
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    answers = read_jsonl(folder / "answers.jsonl")
    paths = []
    for run in range(1, runs + 1):
        path = folder / f"grades_run{run}.jsonl"
        if not path.is_file():
            write_jsonl(path, grade_mm_vet(client, truth, answers, run))
        paths.append(path)
    return {"reviews": paths, "questions": truth_path}


def from_hub(benchmark, tables: dict, folder: Path) -> None:
    """lmms-lab/MMVet rows -> LLaVA's llava-mm-vet.jsonl, the official mm-vet.json, the images."""
    questions, truth = [], {}
    for row in tables["questions"]:
        key = _key(row["question_id"])
        write_image(folder / benchmark.config["image_folder"] / f"{key}.png", row["image"])
        capability = row["capability"]
        capability = [c.strip() for c in capability.split(",")] if isinstance(capability, str) else list(capability)
        questions.append({"image": f"{key}.png", "text": row["question"], "category": "conv",
                          "question_id": int(key.removeprefix("v1_"))})  # fmt: skip
        truth[key] = {"imagename": f"{key}.png", "capability": capability, "question": row["question"],
                      "answer": row["answer"]}  # fmt: skip
    write_jsonl(folder / benchmark.config["data_files"]["questions"], questions)
    (folder / benchmark.config["data_files"]["ground_truth"]).write_text(json.dumps(truth, ensure_ascii=False))
