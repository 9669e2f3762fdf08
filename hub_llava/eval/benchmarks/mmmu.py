"""MMMU (validation): the official response parsing and checking; random choices drawn from one `Random(42)` in
question order, as the official run seeds once.

Questions: a JSON / JSONL export of the MMMU records (`id`, `question`, `options` (a list or its string form),
`question_type`, `answer`, and `image` (a file name under the benchmark folder) for the runner).
"""

import ast
import random

from hub_llava.eval.files import align, read_json_or_jsonl
from hub_llava.eval.metrics.mmmu import mmmu_correct, parse_multi_choice, parse_open

SCORE_ARGUMENTS = {
    "questions": {"required": True, "help": "MMMU records (JSON/JSONL) with id, options, question_type, answer."}
}
SEED = 42


def _options(record) -> list[str]:
    options = record.get("options") or []
    return ast.literal_eval(options) if isinstance(options, str) else list(options)


def _choices(record) -> dict[str, str]:
    return {chr(ord("A") + i): option for i, option in enumerate(_options(record))}


def load_docs(benchmark, data_dir) -> list[dict]:
    folder = benchmark.folder(data_dir)
    docs = []
    for record in read_json_or_jsonl(folder / benchmark.config["data_files"]["questions"]):
        question = record["question"].replace("<image 1>", "").strip()
        if record["question_type"] == "multiple-choice":
            question += "".join(f"\n{k}. {v}" for k, v in _choices(record).items())
            question += "\nAnswer with the option's letter from the given choices directly."
        else:
            question += "\nAnswer the question using a single word or phrase."
        image = folder / benchmark.config.get("image_folder", "") / record["image"] if record.get("image") else None
        docs.append({"question_id": record["id"], "image": image, "question": question, "prompt": question})
    return docs


def score(answers, *, questions, missing: str = "error"):
    records = {str(r["id"]): r for r in read_json_or_jsonl(questions)}
    alignment = align(answers, list(records), missing=missing)
    rng = random.Random(SEED)
    rows = []
    for qid, text in zip(alignment.ids, alignment.texts):
        record = records[qid]
        if record["question_type"] == "multiple-choice":
            choices = _choices(record)
            parsed = parse_multi_choice(text or "", list(choices), choices, rng)
        else:
            parsed = parse_open(text or "")
        correct = mmmu_correct(parsed, record["answer"], record["question_type"])
        rows.append(
            {
                "question_id": qid,
                "prediction": parsed if isinstance(parsed, str) else str(parsed),
                "target": record["answer"],
                "score": float(correct),
            }
        )
    accuracy = 100 * sum(r["score"] for r in rows) / len(rows) if rows else 0.0
    details = {"accuracy": accuracy, **alignment.report()}
    return {"score": round(accuracy, 2), "metric": "accuracy", "n": len(rows), "details": details}, rows
