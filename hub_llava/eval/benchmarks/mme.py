"""MME: LLaVA's answer file -> the official eval tool's per-task files -> acc + acc+ per task, perception total.

Ground truth in either layout: `MME_Benchmark_release_version/<task>/` (question files `<image>.txt` with lines
`question<TAB>answer`, beside the images or in `questions_answers_YN/`), or the eval tool's templates
(`eval_tool/Your_Results/<task>.txt`, lines `image<TAB>question<TAB>answer`). An answer is matched by task, image
and question, the question rebuilt as LLaVA's `convert_answer_to_mme.py` does.
"""

from collections import defaultdict
from pathlib import Path

from hub_llava.eval.docs import llava_question_docs as load_docs  # noqa: F401
from hub_llava.eval.files import read_jsonl, write_jsonl
from hub_llava.eval.hub_source import write_image
from hub_llava.eval.metrics import rounded
from hub_llava.eval.metrics.mme import COGNITION, PERCEPTION, mme_parse, mme_task_score, mme_totals

SCORE_ARGUMENTS = {
    "ground_truth": {
        "required": True,
        "help": "MME_Benchmark_release_version/ or the eval tool's Your_Results/ templates (or a folder holding one).",
    },
}
SHORT_ANSWER = "Answer the question using a single word or phrase."
YES_NO = "Please answer yes or no."
TASKS = PERCEPTION + COGNITION


def _stem(name: str) -> str:
    return name.split("/")[-1].split(".")[0]


def _read_pairs(path: Path) -> list[list[str]]:
    """Tab-separated fields of each non-empty line, the line stripped first (as LLaVA's `get_gt`)."""
    return [line.strip().split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_ground_truth(folder) -> dict[tuple, str]:
    """{(task, image stem, question): "Yes"/"No"} in file order, from either layout."""
    folder = Path(folder)
    for candidate in (folder / "MME_Benchmark_release_version", folder / "eval_tool" / "Your_Results", folder):
        if any((candidate / t).is_dir() for t in TASKS):
            return _release_layout(candidate)
        if any((candidate / f"{t}.txt").is_file() for t in TASKS):
            return _template_layout(candidate)
    raise FileNotFoundError(
        f"{folder}: neither MME_Benchmark_release_version/<task>/ nor Your_Results/<task>.txt found."
    )


def _release_layout(root: Path) -> dict:
    truth = {}
    for task in TASKS:
        task_dir = root / task
        if not task_dir.is_dir():
            continue
        qa_dir = task_dir / "questions_answers_YN" if (task_dir / "images").is_dir() else task_dir
        for path in sorted(qa_dir.glob("*.txt")):
            for fields in _read_pairs(path):
                if len(fields) != 2:
                    raise ValueError(f"{path}: expected 'question<TAB>answer', got {fields!r}.")
                truth[(task, path.stem, fields[0])] = fields[1]
    return truth


def _template_layout(root: Path) -> dict:
    truth = {}
    for task in TASKS:
        path = root / f"{task}.txt"
        if path.is_file():
            for fields in _read_pairs(path):
                if len(fields) < 3:
                    raise ValueError(f"{path}: expected 'image<TAB>question<TAB>answer', got {fields!r}.")
                truth[(task, _stem(fields[0]), fields[1])] = fields[2]
    return truth


def answer_key(answer: dict, truth: dict) -> tuple:
    """The ground-truth key of a LLaVA answer (`question_id` "task/.../image.ext", `prompt` the question)."""
    qid = str(answer["question_id"])
    task, stem = qid.split("/")[0], _stem(qid)
    question = answer["prompt"]
    if SHORT_ANSWER in question:
        question = question.replace(SHORT_ANSWER, "").strip()
    if YES_NO not in question:
        question = question + " " + YES_NO
        if (task, stem, question) not in truth:
            question = question.replace(" " + YES_NO, "  " + YES_NO)  # some MME files have two spaces
    key = (task, stem, question)
    if key not in truth:
        raise ValueError(f"MME answer {qid!r} ({answer['prompt']!r}) matches no ground-truth question.")
    return key


def score(answers, *, ground_truth, missing: str = "error"):
    truth = load_ground_truth(ground_truth)
    predicted = {}
    for answer in read_jsonl(answers):
        key = answer_key(answer, truth)
        if key in predicted:
            raise ValueError(f"{answers}: MME question {key} is answered twice.")
        predicted[key] = answer
    images: dict[tuple, list] = defaultdict(list)
    for key in truth:
        images[key[:2]].append(key)
    absent = [key for key in truth if key not in predicted]
    if absent and missing == "error":
        raise ValueError(f"{answers}: {len(absent)} MME questions have no answer (e.g. {absent[:2]}).")
    tasks: dict[str, list] = defaultdict(list)
    rows = []
    for (task, stem), keys in images.items():
        if missing == "skip" and any(k not in predicted for k in keys):
            continue
        pairs = [(predicted[k]["text"] if k in predicted else "", truth[k]) for k in keys]
        tasks[task].append(pairs)
        for k, (prediction, target) in zip(keys, pairs):
            answer = predicted.get(k, {"question_id": f"{task}/{stem}", "prompt": None})
            rows.append({
                "question_id": answer["question_id"], "question": k[2], "prompt": answer["prompt"],
                "prediction": prediction, "target": target, "score": float(mme_parse(prediction) == target.lower()),
            })  # fmt: skip
    task_scores = {task: mme_task_score(pairs) for task, pairs in tasks.items()}
    totals = mme_totals(task_scores)
    details = {"tasks": task_scores, **totals, "answered": len(truth) - len(absent), "missing": len(absent)}
    return {"score": rounded(totals["perception"]), "metric": "perception", "n": len(rows), "details": details}, rows


def from_hub(benchmark, tables: dict, folder: Path) -> None:
    """lmms-lab/MME rows -> LLaVA's llava_mme.jsonl and the release folders (images + question files)."""
    hub = benchmark.config["hub"]
    release = folder / benchmark.config["image_folder"]
    questions, pairs = [], defaultdict(list)
    for row in tables["questions"]:
        task, name = row["category"], str(row["question_id"]).split("/")[-1]
        inner = hub["image_subfolder_tasks"]
        llava_id = f"{task}/images/{name}" if task in inner else f"{task}/{name}"
        write_image(release / llava_id, row["image"])
        qa_file = f"{task}/questions_answers_YN/{_stem(name)}.txt" if task in inner else f"{task}/{_stem(name)}.txt"
        pairs[qa_file].append(f"{row['question']}\t{row['answer']}")
        text = row["question"].replace(" " + hub["yes_no"], "").replace(hub["yes_no"], "")  # some have two spaces
        questions.append({"question_id": llava_id, "image": llava_id, "text": text + hub["suffix"], "category": task})
    for qa_file, lines in pairs.items():
        (release / qa_file).parent.mkdir(parents=True, exist_ok=True)
        (release / qa_file).write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_jsonl(folder / benchmark.config["data_files"]["questions"], questions)


def compare_unit(row: dict) -> tuple:
    """MME scores images (acc+ needs both of an image's answers): `hub-llava compare` resamples images."""
    return row["category"], str(row["question_id"])


def compare_stats(rows: list[dict]) -> dict:
    task = rows[0]["category"]
    right = [mme_parse(r["prediction"]) == str(r["target"]).lower() for r in rows]
    return {f"{task}/right": sum(right), f"{task}/both": float(len(rows) == 2 and all(right)), f"{task}/images": 1}


def compare_score(totals: dict):
    """The perception total (acc + acc+ per task, summed), or the cognition total when only cognition is present."""
    present = [t for t in TASKS if f"{t}/images" in totals and totals[f"{t}/images"].max() > 0]
    tasks = [t for t in present if t in PERCEPTION] or present
    return sum(100 * totals[f"{t}/right"] / (2 * totals[f"{t}/images"]) + 100 * totals[f"{t}/both"] / totals[f"{t}/images"]
               for t in tasks)  # fmt: skip
