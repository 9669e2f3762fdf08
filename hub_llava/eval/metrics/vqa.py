"""VQA accuracy (VQAv2, VizWiz, TextVQA), exactly as the official scorers compute it.

Two answer normalisations exist and both are reproduced:

- `"vqa"`, the official VQA evaluation (GT-Vision-Lab/VQA `vqaEval.py` as fixed in 2021, a013f00): newlines and
  tabs become spaces, then ONLY when the 10 human answers are not all identical are the answers and the prediction
  punctuation + digit/article/contraction-processed (before that fix the prediction was always processed and the
  answers only punctuation-processed, a mix no single version runs).
- `"evalai"`, EvalAI's answer processor as TextVQA's evaluator (and LLaVA's submission converters) apply it to every
  answer: lower-case, drop "," and "?", punctuation, digits/articles/contractions.

The score of one question is the mean over its 10 leave-one-out subsets of min(1, #matches / 3).
`vqa_accuracy` computes it for a whole corpus with numpy (each distinct string normalised once);
`vqa_sample_accuracy` is the per-question reference, written the way the official scripts read.
"""

import itertools
import json
import re
from functools import cache
from pathlib import Path

import numpy as np

_TABLES = json.loads((Path(__file__).parent / "vqa_normalization.json").read_text(encoding="utf-8"))
PUNCTUATION = _TABLES["punctuation"]
NUMBER_WORDS = _TABLES["number_words"]
ARTICLES = set(_TABLES["articles"])
CONTRACTIONS = _TABLES["contractions"]
# The official lookahead typo "(?!<=\d)" is kept: it is what the scorers run.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
# The official scripts call `periodStrip.sub("", text, re.UNICODE)`: the flag lands in `count` (= 32 replacements).
_PERIOD_COUNT = int(re.UNICODE)
MODES = ("vqa", "evalai")


def clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


@cache
def process_punctuation(text: str) -> str:
    """Removes or spaces out punctuation as the official VQA script does (commas between digits make it drop all)."""
    out = text
    drop_all = _COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        if drop_all or p + " " in text or " " + p in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, _PERIOD_COUNT)


@cache
def process_digit_article(text: str) -> str:
    """Lower-cases, maps number words to digits, drops articles, restores contractions."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


@cache
def evalai_normalize(text: str) -> str:
    """EvalAI's answer processor (TextVQA's evaluator, LLaVA's VQAv2/VizWiz upload converters)."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = clean_whitespace(text)
    return process_digit_article(process_punctuation(text))


def vqa_sample_accuracy(prediction: str, answers: list[str], mode: str = "vqa") -> float:
    """The accuracy of one prediction against its human answers (reference implementation, one question).

    Args:
        prediction (`str`): the model's answer.
        answers (`list[str]`): the human answers (10 for VQAv2, VizWiz and TextVQA).
        mode (`str`, *optional*, defaults to `"vqa"`): `"vqa"` (official VQA script) or `"evalai"` (TextVQA).
    """
    if mode == "evalai":
        prediction = evalai_normalize(prediction)
        answers = [evalai_normalize(answer) for answer in answers]
    else:
        prediction = clean_whitespace(prediction)
        answers = [clean_whitespace(answer) for answer in answers]
        if len(set(answers)) > 1:
            answers = [process_digit_article(process_punctuation(answer)) for answer in answers]
            prediction = process_digit_article(process_punctuation(prediction))
    scores = []
    for left_out in range(len(answers)):
        matches = sum(1 for j, answer in enumerate(answers) if j != left_out and answer == prediction)
        scores.append(min(1.0, matches / 3))
    return sum(scores) / len(scores)


def _intern(strings: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """Ids of `strings` (the index of each string's first occurrence, computed in C by `map`) and the distinct
    strings with their ids."""
    first: dict[str, int] = {}
    ids = np.fromiter(map(first.setdefault, strings, itertools.count()), dtype=np.int64, count=len(strings))
    return ids, first


def _canonical(ids: np.ndarray, distinct: dict[str, int], normalise, canon: dict[str, int]) -> np.ndarray:
    """Maps interned ids to ids of the normalised strings (shared through `canon`), normalising each distinct string once."""
    table = np.zeros(len(ids), dtype=np.int64)
    table[np.fromiter(distinct.values(), dtype=np.int64, count=len(distinct))] = np.fromiter(
        (canon.setdefault(normalise(s), len(canon)) for s in distinct), dtype=np.int64, count=len(distinct)
    )
    return table[ids]


def _official(text: str) -> str:
    return process_digit_article(process_punctuation(clean_whitespace(text)))


def vqa_accuracy(predictions: list[str], answers: list[list[str]], mode: str = "vqa") -> np.ndarray:
    """Per-question VQA accuracy (0..1) for a whole corpus, vectorised; equal to `vqa_sample_accuracy` per question.

    Each distinct string is normalised once; the leave-one-out matching is done on integer ids with numpy.

    Args:
        predictions (`list[str]`): one answer per question.
        answers (`list[list[str]]`): the human answers per question; every question must have the same count.
        mode (`str`, *optional*, defaults to `"vqa"`): `"vqa"` or `"evalai"`, see the module docstring.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown VQA accuracy mode {mode!r}; expected one of {MODES}.")
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} questions.")
    if not predictions:
        return np.zeros(0)
    width = len(answers[0])
    if len(set(map(len, answers))) > 1:
        index = next(i for i, row in enumerate(answers) if len(row) != width)
        raise ValueError(f"Question #{index} has {len(answers[index])} ground-truth answers, the others {width}.")
    gt_ids, gt_distinct = _intern(list(itertools.chain.from_iterable(answers)))
    pred_ids, pred_distinct = _intern(list(predictions))
    canon: dict[str, int] = {}
    if mode == "evalai":
        gts = _canonical(gt_ids, gt_distinct, evalai_normalize, canon).reshape(-1, width)
        preds = _canonical(pred_ids, pred_distinct, evalai_normalize, canon)
    else:
        # The official script normalises only questions whose answers are not all identical.
        gts_clean = _canonical(gt_ids, gt_distinct, clean_whitespace, canon).reshape(-1, width)
        differ = (gts_clean != gts_clean[:, :1]).any(axis=1)
        gts_processed = _canonical(gt_ids, gt_distinct, _official, canon).reshape(-1, width)
        gts = np.where(differ[:, None], gts_processed, gts_clean)
        preds = np.where(
            differ,
            _canonical(pred_ids, pred_distinct, _official, canon),
            _canonical(pred_ids, pred_distinct, clean_whitespace, canon),
        )
    equal = gts == preds[:, None]
    matches = equal.sum(axis=1, keepdims=True)
    return np.minimum(1.0, (matches - equal) / 3).mean(axis=1)
