"""VizWiz: test is scored by the EvalAI server (`hub-llava submission vizwiz`); val locally with the official VQA
accuracy. LLaVA's VizWiz question ids are positions in the annotation list, which is how val answers are keyed."""

import json
from pathlib import Path

from hub_llava.eval.benchmarks.vqav2 import score_vqa
from hub_llava.eval.docs import llava_question_docs as load_docs  # noqa: F401
from hub_llava.eval.files import write_jsonl
from hub_llava.eval.hub_source import write_image

SCORE_ARGUMENTS = {"annotations": {"required": True, "help": "The official VizWiz val.json (a list of questions)."}}


def score(answers, *, annotations, missing: str = "error"):
    data = json.loads(Path(annotations).read_text(encoding="utf-8"))
    entries = {
        str(i): {"answers": [x["answer"] for x in a["answers"]], "answer_type": a.get("answer_type")}
        for i, a in enumerate(data)
    }
    return score_vqa(answers, entries, missing)


def from_hub(benchmark, tables: dict, folder: Path) -> None:
    """lmms-lab/VizWiz-VQA rows -> LLaVA's question file (ids are the numbers of VizWiz's names) and the images."""
    suffix = benchmark.config["hub"]["suffix"]
    questions = []
    for row in tables["questions"]:
        name = str(row["question_id"]).removesuffix(".jpg")
        write_image(folder / benchmark.config["image_folder"] / f"{name}.jpg", row["image"])
        questions.append({"question_id": int(name.rsplit("_", 1)[-1]), "image": f"{name}.jpg",
                          "text": row["question"] + suffix, "category": "default"})  # fmt: skip
    write_jsonl(folder / benchmark.config["data_files"]["questions"], questions)
