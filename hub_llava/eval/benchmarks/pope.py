"""POPE (LLaVA-1.5's `llava_pope_test.jsonl` + the `coco_pope_<category>.json` annotation files).

Answers are matched to annotation labels BY POSITION within each category, as LLaVA's `eval_pope.py` does. Later
POPE annotation files no longer line up with LLaVA's question file, so the alignment is checked: the counts and, at
every position, the image and the question text must agree; anything else is an error, not a wrong score.
"""

from pathlib import Path

import numpy as np

from hub_llava.eval.docs import llava_question_docs as load_docs  # noqa: F401
from hub_llava.eval.files import align, read_jsonl, write_jsonl
from hub_llava.eval.hub_source import write_image
from hub_llava.eval.metrics.pope import pope_parse, pope_scores

SCORE_ARGUMENTS = {
    "questions": {"required": True, "help": "LLaVA's llava_pope_test.jsonl (question ids and categories)."},
    "annotations": {"required": True, "help": "Folder with the coco_pope_<category>.json annotation files."},
}


def load_labels(questions: list[dict], annotations) -> dict[str, str]:
    """{question_id: label} from the annotation files, after checking they align with the question file."""
    by_category: dict[str, list[dict]] = {}
    for question in questions:
        by_category.setdefault(question["category"], []).append(question)
    labels = {}
    for category, items in by_category.items():
        path = Path(annotations) / f"coco_pope_{category}.json"
        if not path.is_file():
            raise FileNotFoundError(f"No POPE annotation file for category {category!r}: {path}")
        rows = read_jsonl(path)
        if len(rows) != len(items):
            raise ValueError(
                f"{path} has {len(rows)} annotations but the question file has {len(items)} {category!r} questions: "
                "the annotation file is another POPE version and does not align by position."
            )
        for position, (question, row) in enumerate(zip(items, rows)):
            same_image = row.get("image", question.get("image")) == question.get("image")
            if not same_image or not question["text"].startswith(row.get("text", "")):
                raise ValueError(
                    f"{path} line {position + 1} ({row.get('image')}: {row.get('text')!r}) does not match question "
                    f"{question['question_id']} ({question.get('image')}: {question['text']!r}): "
                    "another POPE version; its labels would be matched to the wrong questions."
                )
            labels[str(question["question_id"])] = row["label"]
    return labels


def score(answers, *, questions, annotations, missing: str = "error"):
    question_rows = read_jsonl(questions)
    labels = load_labels(question_rows, annotations)
    alignment = align(answers, [q["question_id"] for q in question_rows], missing=missing)
    category = {str(q["question_id"]): q["category"] for q in question_rows}
    per_category: dict[str, tuple[list, list]] = {}
    for qid, text in zip(alignment.ids, alignment.texts):
        preds, truth = per_category.setdefault(category[qid], ([], []))
        preds.append(text if text is not None else "")
        truth.append(labels[qid])
    details = {name: _percent(pope_scores(preds, truth)) for name, (preds, truth) in sorted(per_category.items())}
    f1 = sum(d["f1"] for d in details.values()) / len(details)
    rows = [
        {
            "question_id": qid,
            "prediction": pope_parse(t or ""),
            "target": labels[qid],
            "score": float(pope_parse(t or "") == labels[qid]),
        }
        for qid, t in zip(alignment.ids, alignment.texts)
    ]
    result = {"score": round(f1, 2), "metric": "f1", "n": len(alignment.ids), "details": details}
    result["details"].update(alignment.report())
    return result, rows


def _percent(scores: dict) -> dict:
    fractions = ("accuracy", "precision", "recall", "f1", "yes_ratio")
    return {k: 100 * v if k in fractions else v for k, v in scores.items()}


def from_hub(benchmark, tables: dict, folder: Path) -> None:
    """lmms-lab/POPE rows -> LLaVA's question file, the POPE annotation files and the COCO val2014 images."""
    hub = benchmark.config["hub"]
    offsets = hub["question_id_offsets"]
    questions, annotations = [], {}
    for row in tables["questions"]:
        if row["category"] not in offsets:
            raise ValueError(
                f"POPE question {row['question_id']} has category {row['category']!r}, not one of {sorted(offsets)}."
            )
        name = row["image_source"] if row["image_source"].endswith(".jpg") else row["image_source"] + ".jpg"
        write_image(folder / benchmark.config["image_folder"] / name, row["image"])
        number = int(row["question_id"])  # POPE's number of the question within its category
        questions.append({"question_id": offsets[row["category"]] + number, "image": name,
                          "text": row["question"] + hub["suffix"], "category": row["category"]})  # fmt: skip
        annotations.setdefault(row["category"], []).append(
            {"question_id": number, "image": name, "text": row["question"], "label": row["answer"]}
        )
    write_jsonl(folder / benchmark.config["data_files"]["questions"], questions)
    for category, rows in annotations.items():
        write_jsonl(folder / benchmark.config["ground_truth"]["annotations"] / f"coco_pope_{category}.json", rows)


def compare_stats(rows: list[dict]) -> dict:
    """Per category: true/false positives, false negatives and questions (for `hub-llava compare`)."""
    stats = {}
    for row in rows:
        predicted, truth = row["prediction"] == "yes", row["target"] != "no"
        for name, value in (("tp", predicted and truth), ("fp", predicted and not truth),
                            ("fn", not predicted and truth), ("n", True)):  # fmt: skip
            stats[f"{row['category']}/{name}"] = stats.get(f"{row['category']}/{name}", 0) + value
    return stats


def compare_score(totals: dict):
    """The headline: the mean F1 (%) of the categories present, F1 = 2 TP / (2 TP + FP + FN)."""
    categories = sorted({name.split("/")[0] for name in totals if totals[name].max() > 0 and name.endswith("/n")})
    f1 = [2 * totals[f"{c}/tp"] / np.maximum(2 * totals[f"{c}/tp"] + totals[f"{c}/fp"] + totals[f"{c}/fn"], 1)
          for c in categories]  # fmt: skip
    return 100 * sum(f1) / len(f1)
