"""ScienceQA-IMG: LLaVA's `eval_science_qa.py` letter parsing; the headline is accuracy on questions with an image.

Ground truth: LLaVA's `llava_test_CQM-A.json` (the answer letter is the gpt turn, choices are the "X. ..." lines of
the question) or the official `problems.json` + `pid_splits.json` (split `test`).
"""

import json
import re
from pathlib import Path

from hub_llava.eval.files import align, read_json_or_jsonl
from hub_llava.eval.hub_source import write_image
from hub_llava.eval.metrics import rounded
from hub_llava.eval.metrics.choice import SCIENCEQA_OPTIONS, scienceqa_correct, scienceqa_parse

SCORE_ARGUMENTS = {
    "questions": {"help": "LLaVA's llava_test_CQM-A.json."},
    "problems": {"help": "The official problems.json (with --pid_splits)."},
    "pid_splits": {"help": "The official pid_splits.json."},
    "split": {"default": "test", "help": "Split of pid_splits.json (default: test)."},
}
_OPTION_LINE = re.compile(r"^([A-E])\. ", re.MULTILINE)


def load_problems(questions=None, problems=None, pid_splits=None, split: str = "test") -> dict[str, dict]:
    """{id: {"answer": index, "num_choices": n, "has_image": bool}} in the file's order."""
    if questions:
        out = {}
        for record in read_json_or_jsonl(questions):
            human, gpt = record["conversations"][0]["value"], record["conversations"][1]["value"].strip()
            letters = _OPTION_LINE.findall(human)
            if gpt not in SCIENCEQA_OPTIONS:
                raise ValueError(f"{questions}: record {record['id']} answer {gpt!r} is not a letter.")
            out[str(record["id"])] = {
                "answer": SCIENCEQA_OPTIONS.index(gpt),
                "num_choices": len(letters),
                "has_image": "image" in record,
            }
        return out
    if not (problems and pid_splits):
        raise ValueError("ScienceQA needs --questions llava_test_CQM-A.json, or --problems and --pid_splits.")
    all_problems = json.loads(Path(problems).read_text(encoding="utf-8"))
    ids = json.loads(Path(pid_splits).read_text(encoding="utf-8"))[split]
    return {
        str(pid): {
            "answer": all_problems[pid]["answer"],
            "num_choices": len(all_problems[pid]["choices"]),
            "has_image": bool(all_problems[pid].get("image")),
        }
        for pid in ids
    }


def load_docs(benchmark, data_dir) -> list[dict]:
    """LLaVA's `model_vqa_science` prompts: the human turn without `<image>`, "<image>\\n" recorded for image items."""
    folder = benchmark.folder(data_dir)
    docs = []
    for record in read_json_or_jsonl(folder / benchmark.config["data_files"]["questions"]):
        question = record["conversations"][0]["value"].replace("<image>", "").strip()
        image = folder / benchmark.config["image_folder"] / record["image"] if "image" in record else None
        prompt = ("<image>\n" if image else "") + benchmark.text(question)
        category = "image" if image else "no image"  # the headline (IMG accuracy) is over the image questions
        docs.append({"question_id": record["id"], "image": image, "question": question, "prompt": prompt,
                     "category": category})  # fmt: skip
    return docs


def score(answers, *, questions=None, problems=None, pid_splits=None, split="test", missing: str = "error"):
    truth = load_problems(questions, problems, pid_splits, split)
    alignment = align(answers, list(truth), missing=missing)
    rows = []
    for qid, text in zip(alignment.ids, alignment.texts):
        item = truth[qid]
        correct = text is not None and scienceqa_correct(text, item["answer"], item["num_choices"])
        rows.append(
            {
                "question_id": qid,
                "prediction": scienceqa_parse(text) if text is not None else "FAILED",
                "target": SCIENCEQA_OPTIONS[item["answer"]],
                "score": float(correct),
                "has_image": item["has_image"],
            }
        )
    image_rows = [r for r in rows if r["has_image"]]
    img_acc = 100 * sum(r["score"] for r in image_rows) / len(image_rows) if image_rows else None
    details = {
        "accuracy": 100 * sum(r["score"] for r in rows) / len(rows) if rows else None,
        "img_accuracy": img_acc,
        "img_n": len(image_rows),
        "failed_parses": sum(r["prediction"] == "FAILED" for r in rows),
        **alignment.report(),
    }
    return {"score": rounded(img_acc), "metric": "img_accuracy", "n": len(image_rows), "details": details}, rows


def from_hub(benchmark, tables: dict, folder: Path) -> None:
    """lmms-lab/ScienceQA (ScienceQA-IMG) rows -> LLaVA's llava_test_CQM-A.json records and their images."""
    records = []
    for number, row in enumerate(tables["questions"]):
        context = f"Context: {row['hint']}\n" if row["hint"] else ""
        options = "".join(f"\n{SCIENCEQA_OPTIONS[i]}. {choice}" for i, choice in enumerate(row["choices"]))
        human = context + row["question"] + options
        record = {"id": str(number), "conversations": [{"from": "human", "value": human},
                                                       {"from": "gpt", "value": SCIENCEQA_OPTIONS[row["answer"]]}]}  # fmt: skip
        if row["image"] is not None:
            record["image"] = f"{number}/image.png"
            record["conversations"][0]["value"] = "<image>\n" + human
            write_image(folder / benchmark.config["image_folder"] / record["image"], row["image"])
        records.append(record)
    path = folder / benchmark.config["data_files"]["questions"]
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")


def compare_stats(rows: list[dict]) -> dict:
    image = [r for r in rows if r.get("category") == "image"]
    return {"right": sum(r["score"] for r in image), "n": len(image), "right_all": sum(r["score"] for r in rows),
            "n_all": len(rows)}  # fmt: skip


def compare_score(totals: dict):
    """The headline, accuracy (%) on the questions with an image (on all of them when none has one)."""
    if totals["n"].max() > 0:
        return 100 * totals["right"] / totals["n"]
    return 100 * totals["right_all"] / totals["n_all"]
