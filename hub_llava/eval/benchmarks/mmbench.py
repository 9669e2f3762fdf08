"""MMBench (and MMBench-CN): LLaVA's prompts from the OpenCompass TSV, circular evaluation on the dev split.

The TSV rows carry `index`, `question`, `hint`, options `A`..`D`, `answer` (dev only) and a base64 `image`. Rows with
index >= 1,000,000 are option-rotated copies of index % 1,000,000; a question counts only if every copy is right.
The test split has no answers: `hub-llava submission mmbench` writes the xlsx the server takes.
"""

import base64
import csv
import io
import sys
from pathlib import Path

from hub_llava.eval.files import align
from hub_llava.eval.metrics import rounded
from hub_llava.eval.metrics.choice import mmbench_circular, mmbench_correct

SCORE_ARGUMENTS = {"questions": {"required": True, "help": "The mmbench_dev_*.tsv file (with the answer column)."}}
OPTIONS = ["A", "B", "C", "D"]
# pandas' default `na_values`: the fields `pd.read_table` (LLaVA's loader) reads as NaN, compared as written (nothing
# is stripped: " NA" and "  " stay text). LLaVA's `is_none` then also takes "nan" / "none" in any case ("NONE").
PANDAS_NA_VALUES = frozenset(
    ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
     "NULL", "NaN", "None", "n/a", "nan", "null"]
)  # fmt: skip


def is_missing(value: str | None) -> bool:
    """Whether a TSV field is an absent option / hint as LLaVA's `model_vqa_mmbench.py` reads it (None: a short row)."""
    return value is None or value in PANDAS_NA_VALUES or value.lower() in ("nan", "none")


def read_tsv(path) -> list[dict]:
    csv.field_size_limit(sys.maxsize)  # base64 images are large fields
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def row_options(row: dict) -> dict[str, str]:
    """The options up to the first missing one (LLaVA stops there: a later option after a gap is not shown)."""
    options = {}
    for letter in OPTIONS:
        if is_missing(row.get(letter)):
            break
        options[letter] = row[letter]
    return options


def row_question(row: dict) -> str:
    """hint + question + "X. option" lines, as LLaVA's `model_vqa_mmbench.py` builds it."""
    question = row["question"]
    if not is_missing(row.get("hint")):
        question = row["hint"] + "\n" + question
    for letter, option in row_options(row).items():
        question = question + "\n" + letter + ". " + option
    return question


def load_docs(benchmark, data_dir) -> list[dict]:
    from PIL import Image

    docs = []
    for row in read_tsv(benchmark.folder(data_dir) / benchmark.config["data_files"]["questions"]):
        image = Image.open(io.BytesIO(base64.b64decode(row["image"]))).convert("RGB")
        question = row_question(row)
        docs.append({"question_id": int(row["index"]), "image": image, "question": question, "prompt": question,
                     "category": row.get("category")})  # fmt: skip
    return docs


def score(answers, *, questions, missing: str = "error"):
    table = {str(int(row["index"])): row for row in read_tsv(questions)}
    if any(is_missing(row.get("answer")) for row in table.values()):
        raise ValueError(f"{questions} has no answers (a test split?): use `hub-llava submission mmbench`.")
    alignment = align(answers, list(table), missing=missing)
    rows = []
    for qid, text in zip(alignment.ids, alignment.texts):
        row = table[qid]
        correct = text is not None and mmbench_correct(text, row["answer"], row_options(row))
        rows.append(
            {
                "question_id": qid,
                "index": qid,
                "prediction": text,
                "target": row["answer"],
                "score": float(correct),
                "correct": correct,
            }
        )
    summary = mmbench_circular(rows)
    details = {**summary, **alignment.report()}
    for row in rows:
        del row["correct"], row["index"]
    return {
        "score": rounded(summary["circular"]),
        "metric": "circular_accuracy",
        "n": summary["groups"],
        "details": details,
    }, rows


TSV_COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source", "l2-category",
               "comment", "split"]  # fmt: skip


def from_hub(benchmark, tables: dict, folder: Path) -> None:
    """lmms-lab/MMBench rows -> the OpenCompass TSV (absent fields as pandas writes NaN: "nan"; image base64)."""
    from hub_llava.eval.hub_source import image_bytes

    path = folder / benchmark.config["data_files"]["questions"]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(TSV_COLUMNS)
        for row in tables["questions"]:
            row = {**row, "l2-category": row.get("L2-category", row.get("l2-category"))}
            row["image"] = base64.b64encode(image_bytes(row["image"])).decode("ascii")
            writer.writerow(["nan" if row.get(c) is None else str(row[c]) for c in TSV_COLUMNS])


def compare_unit(row: dict) -> int:
    """A question and its option-rotated copies: `hub-llava compare` resamples these circular groups."""
    return int(row["question_id"]) % 1_000_000


def compare_stats(rows: list[dict]) -> dict:
    return {"passed": float(all(r["score"] == 1.0 for r in rows)), "groups": 1}


def compare_score(totals: dict):
    """Circular accuracy (%)."""
    return 100 * totals["passed"] / totals["groups"]
