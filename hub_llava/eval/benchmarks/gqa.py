"""GQA test-dev balanced: LLaVA's prediction conversion + the official accuracy (and binary / open)."""

import json
from pathlib import Path

from hub_llava.eval.docs import llava_question_docs as load_docs  # noqa: F401
from hub_llava.eval.files import align, write_jsonl
from hub_llava.eval.hub_source import write_image
from hub_llava.eval.metrics import rounded
from hub_llava.eval.metrics.gqa import gqa_prediction, gqa_scores

SCORE_ARGUMENTS = {"questions": {"required": True, "help": "The official testdev_balanced_questions.json."}}


def score(answers, *, questions, missing: str = "error"):
    truth = json.loads(Path(questions).read_text(encoding="utf-8"))
    alignment = align(answers, list(truth), missing=missing)
    predictions = [t if t is not None else "" for t in alignment.texts]
    entries = [truth[qid] for qid in alignment.ids]
    scores = gqa_scores(predictions, entries)
    rows = [
        {
            "question_id": q,
            "prediction": gqa_prediction(p),
            "target": e["answer"],
            "score": float(gqa_prediction(p) == e["answer"]),
        }
        for q, p, e in zip(alignment.ids, predictions, entries)
    ]
    details = {**scores, **alignment.report()}
    return {"score": rounded(scores["accuracy"]), "metric": "accuracy", "n": scores["n"], "details": details}, rows


def from_hub(benchmark, tables: dict, folder: Path) -> None:
    """lmms-lab/GQA (questions + images configs) -> LLaVA's question file, the official questions file, images."""
    suffix = benchmark.config["hub"]["suffix"]
    images = {row["id"]: row["image"] for row in tables["images"]}
    questions, truth = [], {}
    for row in tables["questions"]:
        if row["imageId"] not in images:
            raise ValueError(f"GQA question {row['id']}: image {row['imageId']!r} is not in the images table.")
        write_image(folder / benchmark.config["image_folder"] / f"{row['imageId']}.jpg", images[row["imageId"]])
        questions.append({"question_id": str(row["id"]), "image": f"{row['imageId']}.jpg",
                          "text": row["question"] + suffix, "category": "default"})  # fmt: skip
        truth[str(row["id"])] = {key: row[key] for key in ("question", "imageId", "answer", "isBalanced", "types")}
    write_jsonl(folder / benchmark.config["data_files"]["questions"], questions)
    path = folder / benchmark.config["ground_truth"]["questions"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(truth, ensure_ascii=False), encoding="utf-8")
