"""TextVQA val: LLaVA's `eval_textvqa.py` keying + the EvalAI-normalised VQA accuracy (m4c evaluator).

LLaVA's question ids are image ids, so an answer is keyed by (image id, question.lower()), the question recovered
from the recorded prompt (the line before or after "Reference OCR token: ...").
"""

import json
import re
from pathlib import Path

from hub_llava.eval.docs import llava_question_docs as load_docs  # noqa: F401
from hub_llava.eval.files import read_jsonl, write_jsonl
from hub_llava.eval.hub_source import write_image
from hub_llava.eval.metrics.vqa import evalai_normalize, vqa_accuracy

SCORE_ARGUMENTS = {"annotations": {"required": True, "help": "The official TextVQA_0.5.1_val.json."}}


def prompt_question(prompt: str) -> str:
    """The question inside a LLaVA TextVQA prompt, lower-cased (LLaVA's `prompt_processor`)."""
    lines = prompt.split("\n")
    if prompt.startswith("OCR tokens: "):
        match = re.search(r"Question: (.*?) Short answer:", prompt, re.DOTALL)
        question = match.group(1)
    elif "Reference OCR token: " in prompt and len(lines) == 3:
        question = lines[1] if prompt.startswith("Reference OCR token:") else lines[0]
    elif len(lines) == 2:
        question = lines[0]
    else:
        raise ValueError(f"Cannot find the question in TextVQA prompt {prompt!r}.")
    return question.lower()


def score(answers, *, annotations, missing: str = "error"):
    data = json.loads(Path(annotations).read_text(encoding="utf-8"))["data"]
    truth = {(str(a["image_id"]), a["question"].lower()): a for a in data}
    predicted = {}
    for number, answer in enumerate(read_jsonl(answers), 1):
        key = (str(answer["question_id"]), prompt_question(answer["prompt"]))
        if key not in truth:
            raise ValueError(f"{answers}: answer #{number} {key} matches no question of {annotations}.")
        if key in predicted:
            raise ValueError(f"{answers}: answer #{number} {key} answers a question twice.")
        predicted[key] = answer
    absent = [k for k in truth if k not in predicted]
    if absent and missing == "error":
        raise ValueError(f"{answers}: {len(absent)} TextVQA questions have no answer (e.g. {absent[:2]}).")
    keys = [k for k in truth if k in predicted or missing == "wrong"]
    texts = [predicted[k]["text"] if k in predicted else "" for k in keys]
    scores = vqa_accuracy(texts, [truth[k]["answers"] for k in keys], mode="evalai")
    rows = [
        {
            "question_id": k[0], "question": truth[k]["question"], "prompt": predicted.get(k, {}).get("prompt"),
            "prediction": evalai_normalize(t), "target": truth[k]["answers"], "score": float(s),
        }
        for k, t, s in zip(keys, texts, scores)
    ]  # fmt: skip
    accuracy = 100 * float(scores.mean()) if len(keys) else 0.0
    details = {"accuracy": accuracy, "answered": len(predicted), "missing": len(absent)}
    return {"score": round(accuracy, 2), "metric": "accuracy", "n": len(keys), "details": details}, rows


def from_hub(benchmark, tables: dict, folder: Path) -> None:
    """lmms-lab/textvqa rows -> LLaVA's question file (keyed by image id), the official val annotations, images."""
    suffix = benchmark.config["hub"]["suffix"]
    questions, data = [], []
    for row in tables["questions"]:
        name = f"{row['image_id']}.jpg"
        write_image(folder / benchmark.config["image_folder"] / name, row["image"])
        text = row["question"][:1].upper() + row["question"][1:]
        if row["ocr_tokens"]:
            text += "\nReference OCR token: " + ", ".join(row["ocr_tokens"])
        questions.append({"question_id": row["image_id"], "image": name, "text": text + suffix, "category": "default"})
        data.append({key: row[key] for key in ("image_id", "question_id", "question", "answers")})
    write_jsonl(folder / benchmark.config["data_files"]["questions"], questions)
    path = folder / benchmark.config["ground_truth"]["annotations"]
    path.write_text(json.dumps({"dataset_name": "textvqa", "dataset_type": "val", "data": data}), encoding="utf-8")
