"""Reading and writing evaluation files: JSONL question/answer files and the alignment of answers to questions.

Question ids are compared as strings everywhere (LLaVA files mix ints and strings for the same benchmark).
Answers that do not match the ground truth are never silently dropped: duplicates and unknown ids are errors, and
missing answers are an error unless the caller asks for them to count as wrong (`missing="wrong"`, the official
ScienceQA/SEED behaviour) or to be left out (`missing="skip"`, a `--limit` run); either way they are counted.
"""

import json
from pathlib import Path


def read_jsonl(path) -> list[dict]:
    """Reads a JSON-lines file; a bad line raises an error naming the file and line number."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg}).") from None
    return rows


def read_json_or_jsonl(path) -> list | dict:
    """A `.json` file (array or object) or a JSON-lines file."""
    path = Path(path)
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    return read_jsonl(path)


def write_jsonl(path, rows) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def load_answers(path, key: str = "question_id") -> dict[str, dict]:
    """Reads a LLaVA answer file into {question_id (str): answer}; a duplicated id is an error."""
    answers: dict[str, dict] = {}
    for number, row in enumerate(read_jsonl(path), 1):
        if key not in row or "text" not in row:
            raise ValueError(f"{path}: answer #{number} has no {key!r} or 'text' field.")
        qid = str(row[key])
        if qid in answers:
            raise ValueError(f"{path}: question id {qid!r} is answered twice (answer #{number}).")
        answers[qid] = row
    return answers


class Alignment:
    """Answers put in ground-truth order. `texts[i]` is None for a missing answer (when `missing="wrong"`)."""

    def __init__(self, ids: list[str], texts: list, missing: list[str]):
        self.ids, self.texts, self.missing = ids, texts, missing

    def report(self) -> dict:
        return {"answered": sum(t is not None for t in self.texts), "missing": len(self.missing)}


def align(answers, question_ids: list, *, missing: str = "error", source: str | None = None) -> Alignment:
    """Orders the answers by `question_ids` (the ground truth), checking both sides.

    Answers whose ids the ground truth does not know are reported before anything else (a duplicated id among them
    is a symptom, not the cause): the usual reason is an answer file of another benchmark.

    Args:
        answers (`str`, `Path` or `dict[str, dict]`): an answer file, or answers from `load_answers`.
        question_ids (`list`): the ground-truth ids in their official order.
        missing (`str`, *optional*, defaults to `"error"`): `"error"`, `"wrong"` (kept as None, scored wrong) or
            `"skip"` (left out of the score).
        source (`str`, *optional*): the answer file's name, for error messages (default: the path).
    """
    ids = [str(q) for q in question_ids]
    known = set(ids)
    if not isinstance(answers, dict):
        source = source or str(answers)
        rows = read_jsonl(answers)
        unknown = [str(row.get("question_id")) for row in rows if str(row.get("question_id")) not in known]
        if unknown:
            raise ValueError(
                f"{source}: {len(unknown)} of {len(rows)} answers have question ids this benchmark's ground truth does "
                f"not know (e.g. {unknown[:3]}; its ids look like {ids[:3]}): is this the answer file of another "
                "benchmark, or the wrong ground-truth file?"
            )
        answers = load_answers(answers)
    source = source or "answers"
    unknown = [q for q in answers if q not in known]
    if unknown:
        raise ValueError(
            f"{source}: {len(unknown)} answers have question ids not in the ground truth "
            f"(e.g. {unknown[:3]}); is this the right ground-truth file?"
        )
    absent = [q for q in ids if q not in answers]
    if absent and missing == "error":
        raise ValueError(
            f"{source}: {len(absent)} of {len(ids)} questions have no answer (e.g. {absent[:3]}); "
            "pass --missing wrong to score them as wrong or --missing skip to leave them out."
        )
    if missing == "skip":
        ids = [q for q in ids if q in answers]
    texts = [answers[q]["text"] if q in answers else None for q in ids]
    return Alignment(ids, texts, absent)
