"""The scorers: hand-checked cases per metric (tests/fixtures/eval/cases/*.json) and the corpus functions."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from hub_llava.eval.metrics import choice, gqa, mme, mmmu, pope, reviews, vqa

CASES = Path(__file__).parent / "fixtures" / "eval" / "cases"
MODULES = [vqa, pope, mme, choice, gqa, mmmu, reviews]


def _cases():
    for path in sorted(CASES.glob("*.json")):
        for number, case in enumerate(json.loads(path.read_text(encoding="utf-8"))["cases"]):
            yield pytest.param(case, id=f"{path.stem}-{number}-{case['function']}")


def _function(name):
    for module in MODULES:
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(name)


@pytest.mark.parametrize("case", list(_cases()))
def test_case(case):
    function = _function(case["function"])
    args = list(case["args"])
    if case["function"] == "parse_multi_choice":
        args.append(random.Random(42))
    result = function(*args, **case.get("kwargs", {}))
    assert _close(result, case["expected"]), f"{case['note']}: got {result!r}"


def _close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b)
    return a == b


def test_vectorised_vqa_accuracy_equals_the_per_question_rule():
    rng = random.Random(0)
    vocab = [
        "2",
        "two",
        "Two",
        "yes",
        "Yes",
        "no",
        "a dog",
        "dog",
        "dog.",
        "t-shirt",
        "t shirt",
        "1,000",
        "1000",
        "dont",
    ]
    answers = [[rng.choice(vocab) for _ in range(10)] for _ in range(400)]
    answers += [[word] * 10 for word in vocab]  # identical answers take the no-normalisation branch
    predictions = [rng.choice(vocab) for _ in answers]
    for mode in vqa.MODES:
        expected = [vqa.vqa_sample_accuracy(p, a, mode) for p, a in zip(predictions, answers)]
        np.testing.assert_allclose(vqa.vqa_accuracy(predictions, answers, mode), expected)


def test_vqa_accuracy_rejects_ragged_ground_truth():
    with pytest.raises(ValueError, match="Question #1 has 3 ground-truth answers"):
        vqa.vqa_accuracy(["a", "b"], [["a"] * 10, ["b"] * 3])
    with pytest.raises(ValueError, match="Unknown VQA accuracy mode"):
        vqa.vqa_accuracy(["a"], [["a"] * 10], mode="squad")


def test_mme_totals_sum_perception_and_cognition():
    scores = {"existence": {"score": 190.0}, "OCR": {"score": 140.0}, "code_reasoning": {"score": 70.0}}
    totals = mme.mme_totals(scores)
    assert totals["perception"] == 330.0 and totals["cognition"] == 70.0
    assert "count" in totals["missing_perception_tasks"]
    with pytest.raises(ValueError, match="exactly two questions per image"):
        mme.mme_task_score([[("Yes", "Yes")]])


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # DESIGN §5 / LLaVA's eval_pope.py: keep the text before the first ".", drop commas, split on " "; "no" if
        # one of the words is exactly "No", "no" or "not", else "yes".
        ("No, there is not.", "no"),  # "No there is not": "No" (and "not")
        ("yes.", "yes"),  # "yes": none of the three words
        ("Not sure", "yes"),  # "Not" is capitalised: not one of the three words
        ("Yes, there is a cat.", "yes"),
        ("There is no dog.", "no"),  # "no" as a word
        ("There is not a dog in the image", "no"),  # no period: the whole text; "not"
        ("I don't think so.", "yes"),  # "don't" is not "not"
        ("Yes. No dog is there.", "yes"),  # only the first sentence
        ("No.There is a cat", "no"),  # the first sentence is "No"
        ("Yes, no", "no"),  # commas go first: "Yes no"
        ("nope", "yes"),
        ("NO", "yes"),  # upper case is not in the list
        ("no\nthere is a cat", "yes"),  # split on spaces only: "no\nthere" is one word
        ("It is not.", "no"),
        ("", "yes"),  # an empty answer counts as yes
    ],
)
def test_pope_parse_beyond_bare_yes_no(answer, expected):
    assert pope.pope_parse(answer) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # DESIGN §5 / MME's eval tool: lower-case; exactly "yes"/"no"; else "yes" in the first 4 characters, else
        # "no" in them; else "other".
        ("No, there is not.", "no"),  # "no, " holds "no"
        ("yes.", "yes"),  # "yes." holds "yes"
        ("Not sure", "no"),  # "not " holds "no" (unlike POPE, where "Not" is not a match)
        ("Yes, there is a cat.", "yes"),
        ("There is no dog.", "other"),  # "ther": neither, although the answer means no
        ("YES", "yes"),  # lower-cased first
        ("Y", "other"),
        ("know", "no"),  # "know" holds "no"
        ("ayes", "yes"),
        ("noyes", "no"),  # "noye": no "yes" in the first 4 characters, but "no"
        ("I don't know", "other"),  # "i do"
        ("", "other"),
    ],
)
def test_mme_parse_beyond_bare_yes_no(answer, expected):
    assert mme.mme_parse(answer) == expected
