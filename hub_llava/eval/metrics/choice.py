"""Multiple-choice scorers: ScienceQA's letter parsing, MMBench's circular groups, SEED-Bench's exact letters."""

import re
from collections import defaultdict

SCIENCEQA_OPTIONS = ["A", "B", "C", "D", "E"]
_THE_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def scienceqa_parse(text: str) -> str:
    """LLaVA's `eval_science_qa.py` rule: an exact letter, else an "X. ..." prefix, else exactly one
    "The answer is X." match; otherwise "FAILED"."""
    if text in SCIENCEQA_OPTIONS:
        return text
    if len(text) >= 3 and text[0] in SCIENCEQA_OPTIONS and text[1:3] == ". ":
        return text[0]
    found = _THE_ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else "FAILED"


def scienceqa_correct(text: str, answer: int, num_choices: int) -> bool:
    """Whether the parsed letter is the answer index (letters beyond the choices count as wrong)."""
    letter = scienceqa_parse(text)
    valid = SCIENCEQA_OPTIONS[:num_choices]
    return letter in valid and valid.index(letter) == answer


def mmbench_correct(text: str, answer: str, options: dict[str, str]) -> bool:
    """An MMBench answer is right when it is the answer letter or the answer's option text (case-insensitive)."""
    text = text.strip()
    if text.rstrip(".") == answer:
        return True
    return text.rstrip(".").strip().lower() == options.get(answer, "").strip().lower() != ""


def mmbench_circular(rows: list[dict]) -> dict:
    """MMBench circular evaluation: rows (`index`, `correct`) grouped by index % 1,000,000 (rotated copies have
    index >= 1e6); a group counts only if every copy is right. Also reports plain per-row accuracy."""
    groups: dict[int, list[bool]] = defaultdict(list)
    for row in rows:
        groups[int(row["index"]) % 1_000_000].append(bool(row["correct"]))
    passed = sum(all(values) for values in groups.values())
    return {
        "circular": 100 * passed / len(groups) if groups else None,  # None: nothing to score, not 0
        "vanilla": 100 * sum(bool(row["correct"]) for row in rows) / len(rows) if rows else None,
        "groups": len(groups),
        "rows": len(rows),
    }


def accuracy_by(keys: list, correct: list[bool]) -> dict:
    """Accuracy in % per key (e.g. SEED question type) plus the count per key."""
    totals: dict = defaultdict(int)
    right: dict = defaultdict(int)
    for key, ok in zip(keys, correct):
        totals[key] += 1
        right[key] += bool(ok)
    return {key: {"accuracy": 100 * right[key] / totals[key], "n": totals[key]} for key in sorted(totals, key=str)}
