"""LLaVA-Bench-in-the-Wild: relative scores from GPT judge review files (several runs averaged).

The runner writes the answer file; `hub-llava eval --judge_base_url ...` (or `hub_llava.eval.judge`) writes a review
file per run; scoring reads the review files only.
"""

from pathlib import Path

from hub_llava.eval.docs import llava_question_docs as load_docs  # noqa: F401
from hub_llava.eval.files import read_jsonl, write_jsonl
from hub_llava.eval.hub_source import write_image
from hub_llava.eval.metrics.reviews import llava_bench_summary

SCORE_ARGUMENTS = {
    "reviews": {"required": True, "nargs": "+", "help": "Judge review files (JSONL), one per run; averaged."},
}


def score(answers=None, *, reviews, missing: str = "error"):
    runs = {str(path): read_jsonl(path) for path in reviews}
    summaries = {path: llava_bench_summary(rows) for path, rows in runs.items()}
    relative = [run["all"]["relative"] for run in summaries.values()]
    counts = {run["all"]["n"] for run in summaries.values()}
    if len(counts) != 1:
        raise ValueError(f"The review runs cover different numbers of questions: {sorted(counts)}.")
    mean = round(sum(relative) / len(relative), 1)
    categories = sorted({c for run in summaries.values() for c in run if c != "all"})
    per_category = {c: round(sum(run[c]["relative"] for run in summaries.values()) / len(runs), 1) for c in categories}
    details = {"runs": summaries, "relative_per_run": relative, "categories": per_category}
    result = {"score": mean, "metric": "relative_score", "n": counts.pop(), "details": details}
    return result, _rows(answers, runs) if answers else []


def _rows(answers, runs: dict[str, list[dict]]) -> list[dict]:
    """Per question: the model's answer, its judge score (1-10) and the reference (GPT-4) answer's, each averaged over
    the runs."""
    scores: dict[str, list[tuple]] = {}
    for reviews in runs.values():
        for review in reviews:
            scores.setdefault(str(review["question_id"]), []).append(review["tuple"])
    rows = []
    for answer in read_jsonl(answers):
        values = scores.get(str(answer["question_id"]))
        if values:
            rows.append({
                "question_id": answer["question_id"], "prompt": answer["prompt"], "prediction": answer["text"],
                "target": sum(v[0] for v in values) / len(values), "score": sum(v[1] for v in values) / len(values),
            })  # fmt: skip
    return rows


def compare_stats(rows: list[dict]) -> dict:
    return {"model": sum(r["score"] for r in rows), "reference": sum(r["target"] for r in rows)}


def compare_score(totals: dict):
    """`hub-llava compare`'s statistic: the relative score of the run-averaged judge scores (100 * model /
    reference), close to the headline (which averages the relative score of each run)."""
    return 100 * totals["model"] / totals["reference"]


def judge(benchmark, data_dir, folder, client, runs: int) -> dict:
    """Writes `reviews_run<k>.jsonl` for k = 1..runs (existing runs are kept) and returns `score()`'s keywords."""
    from hub_llava.eval.judge import review_llava_bench

    files = benchmark.config["data_files"]
    root = benchmark.folder(data_dir)
    answers = read_jsonl(folder / "answers.jsonl")
    answered = {str(a["question_id"]) for a in answers}
    questions = [q for q in read_jsonl(root / files["questions"]) if str(q["question_id"]) in answered]
    paths = []
    for run in range(1, runs + 1):
        path = folder / f"reviews_run{run}.jsonl"
        if not path.is_file():
            reviews = review_llava_bench(
                client,
                questions,
                read_jsonl(root / files["context"]),
                read_jsonl(root / files["reference_answers"]),
                answers,
                run,
            )
            write_jsonl(path, reviews)
        paths.append(path)
    return {"reviews": paths}


def from_hub(benchmark, tables: dict, folder: Path) -> None:
    """lmms-lab/llava-bench-in-the-wild rows -> LLaVA's questions, contexts (captions) and GPT-4 reference answers.
    Images are named by their caption's position (the Hub rows carry one image each, LLaVA names them 001.jpg...)."""
    files = benchmark.config["data_files"]
    questions, contexts, references, names = [], [], [], {}
    for row in tables["questions"]:
        caption = "\n".join(row["caption"]) if isinstance(row["caption"], list) else row["caption"]
        if caption not in names:  # one context per image, as LLaVA's context.jsonl
            names[caption] = f"{len(names) + 1:03d}"
            write_image(folder / benchmark.config["image_folder"] / f"{names[caption]}.jpg", row["image"])
            contexts.append({"id": names[caption], "image": f"{names[caption]}.jpg", "caption": caption})
        qid = int(row["question_id"]) if str(row["question_id"]).isdigit() else row["question_id"]
        questions.append({"image": f"{names[caption]}.jpg", "text": row["question"], "category": row["category"],
                          "question_id": qid})  # fmt: skip
        references.append({"question_id": qid, "prompt": row["question"], "text": row["gpt_answer"]})
    write_jsonl(folder / files["questions"], questions)
    write_jsonl(folder / files["context"], contexts)
    write_jsonl(folder / files["reference_answers"], references)
