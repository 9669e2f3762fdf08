"""SEED-Bench: exact letter match (LLaVA's `convert_seed_for_submission.py`), per question type, image, video, all."""

import json
from pathlib import Path

from hub_llava.eval.docs import llava_question_docs as load_docs  # noqa: F401
from hub_llava.eval.files import align, write_jsonl
from hub_llava.eval.hub_source import write_image
from hub_llava.eval.metrics import rounded
from hub_llava.eval.metrics.choice import accuracy_by

SCORE_ARGUMENTS = {"questions": {"required": True, "help": "The official SEED-Bench.json."}}


def score(answers, *, questions, missing: str = "error"):
    data = json.loads(Path(questions).read_text(encoding="utf-8"))
    type_names = {v: k for k, v in data.get("question_type", {}).items()}
    entries = {str(q["question_id"]): q for q in data["questions"]}
    alignment = align(answers, list(entries), missing=missing)
    rows = []
    for qid, text in zip(alignment.ids, alignment.texts):
        entry = entries[qid]
        rows.append(
            {
                "question_id": qid,
                "prediction": text,
                "target": entry["answer"],
                "score": float(text == entry["answer"]),
                "type": type_names.get(entry["question_type_id"], str(entry["question_type_id"])),
                "data_type": entry.get("data_type", "image"),
            }
        )
    correct = [r["score"] == 1.0 for r in rows]
    total = 100 * sum(correct) / len(rows) if rows else None
    details = {
        "question_types": accuracy_by([r["type"] for r in rows], correct),
        "data_types": accuracy_by([r["data_type"] for r in rows], correct),
        "accuracy": total,
        **alignment.report(),
    }
    return {"score": rounded(total), "metric": "accuracy", "n": len(rows), "details": details}, rows


def from_hub(benchmark, tables: dict, folder: Path) -> None:
    """lmms-lab/SEED-Bench rows -> LLaVA's llava-seed-bench.jsonl, the official SEED-Bench.json, the images (a video
    question keeps its middle frame)."""
    hub = benchmark.config["hub"]
    names = {number: name for name, number in hub["question_types"].items()}
    questions, entries = [], []
    for row in tables["questions"]:
        frames = row["image"] if isinstance(row["image"], list) else [row["image"]]
        if not frames:
            raise ValueError(f"SEED-Bench question {row['question_id']} has no image.")
        video = row["data_type"] == "video"
        image = f"SEED-Bench-video-image/{row['question_id']}.png" if video else f"SEED-Bench-image/{row['data_id']}"
        write_image(folder / benchmark.config["image_folder"] / image, frames[len(frames) // 2])
        qid = int(row["question_id"]) if str(row["question_id"]).isdigit() else str(row["question_id"])
        choices = "".join(f"\n{letter}. {row[f'choice_{letter.lower()}']}" for letter in "ABCD")
        questions.append({"question_id": qid, "image": image, "text": row["question"] + choices + hub["suffix"],
                          "category": names.get(int(row["question_type_id"]), str(row["question_type_id"]))})  # fmt: skip
        entries.append({key: row[key] for key in ("answer", "choice_a", "choice_b", "choice_c", "choice_d", "data_id",
                                                  "data_type", "question", "question_id", "question_type_id")})  # fmt: skip
    write_jsonl(folder / benchmark.config["data_files"]["questions"], questions)
    truth = {"questions": entries, "question_type": hub["question_types"]}
    (folder / benchmark.config["ground_truth"]["questions"]).write_text(json.dumps(truth, ensure_ascii=False))
