"""VQAv2: test-dev is scored by the EvalAI server (`hub-llava submission vqav2`); val is scored here as the server
would: LLaVA's upload conversion (EvalAI answer processor) then the official VQA accuracy, per answer type too."""

import json
from pathlib import Path

from hub_llava.eval.docs import llava_question_docs as load_docs  # noqa: F401
from hub_llava.eval.files import align
from hub_llava.eval.metrics.choice import accuracy_by
from hub_llava.eval.metrics.vqa import evalai_normalize, vqa_accuracy

SCORE_ARGUMENTS = {"annotations": {"required": True, "help": "v2_mscoco_val2014_annotations.json (official)."}}


def score_vqa(answers, entries: dict[str, dict], missing: str):
    """Scores answers against {question id: {"answers": [10 strings], "answer_type": ...}}."""
    alignment = align(answers, list(entries), missing=missing)
    predictions = [evalai_normalize(t) if t is not None else "" for t in alignment.texts]
    scores = vqa_accuracy(predictions, [entries[q]["answers"] for q in alignment.ids], mode="vqa")
    rows = [
        {"question_id": q, "prediction": p, "target": entries[q]["answers"], "score": float(s)}
        for q, p, s in zip(alignment.ids, predictions, scores)
    ]
    types = accuracy_by([entries[q].get("answer_type", "all") for q in alignment.ids], list(scores))
    accuracy = 100 * float(scores.mean()) if len(scores) else 0.0
    details = {"accuracy": accuracy, "answer_types": types, **alignment.report()}
    return {"score": round(accuracy, 2), "metric": "accuracy", "n": len(rows), "details": details}, rows


def score(answers, *, annotations, missing: str = "error"):
    data = json.loads(Path(annotations).read_text(encoding="utf-8"))["annotations"]
    entries = {
        str(a["question_id"]): {"answers": [x["answer"] for x in a["answers"]], "answer_type": a.get("answer_type")}
        for a in data
    }
    return score_vqa(answers, entries, missing)
