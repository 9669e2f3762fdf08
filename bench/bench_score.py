"""Scoring and runner throughput.

1. VQA accuracy over 214K synthetic questions x 10 human answers (VQAv2 val size): hub_llava's vectorised
   `vqa_accuracy` (cold caches) against a straightforward per-question loop written the way the official VQA script
   is (normalise every answer of every question, list comprehensions for the leave-one-out), same data, same run.
   Targets: < 1 s and >= 20x.
2. `hub-llava eval` throughput on the tiny model, batch 1 vs batch 8 (sample POPE questions, repeated).

    python bench/bench_score.py [--questions 214354] [--runner_questions 48]
"""

import argparse
import random
import re
import tempfile
import time
from pathlib import Path

from hub_llava.eval.metrics import vqa

WORDS = ["yes", "no", "two", "2", "red", "blue", "dog", "a dog", "the cat", "t-shirt", "1,000", "don't", "tennis",
         "frisbee", "3.5", "left", "man's", "none", "black and white", "pizza"]  # fmt: skip


def synthetic(n: int, seed: int = 0):
    """Answers drawn from a long-tailed vocabulary with case/punctuation variants, like VQAv2's."""
    rng = random.Random(seed)
    vocab = WORDS + [f"object {i}" for i in range(5000)]
    variants = lambda w: rng.choice([w, w.capitalize(), w + ".", w.upper(), " " + w])  # noqa: E731
    answers, predictions = [], []
    for _ in range(n):
        common = rng.choice(vocab if rng.random() < 0.3 else WORDS)
        row = [common if rng.random() < 0.6 else variants(rng.choice(WORDS)) for _ in range(10)]
        answers.append(row)
        predictions.append(variants(common) if rng.random() < 0.5 else rng.choice(WORDS))
    return predictions, answers


# --- the baseline: one question at a time, as the official VQA evaluation script reads ---------------------------
_COMMA = re.compile(r"(\d)(\,)(\d)")
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")


def _punct(text):
    out = text
    for p in vqa.PUNCTUATION:
        if (p + " " in text or " " + p in text) or (re.search(_COMMA, text) is not None):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out, re.UNICODE)


def _digit_article(text):
    out = []
    for word in text.lower().split():
        word = vqa.NUMBER_WORDS.setdefault(word, word)
        if word not in vqa.ARTICLES:
            out.append(word)
    for i, word in enumerate(out):
        if word in vqa.CONTRACTIONS:
            out[i] = vqa.CONTRACTIONS[word]
    return " ".join(out)


def baseline(predictions, answers):
    scores = []
    for prediction, row in zip(predictions, answers):
        gts = [{"answer": a.replace("\n", " ").replace("\t", " ").strip(), "answer_id": i} for i, a in enumerate(row)]
        res = prediction.replace("\n", " ").replace("\t", " ").strip()
        if len(set(g["answer"] for g in gts)) > 1:
            for g in gts:  # vqaEval.py as fixed in 2021: the answers get the digit/article step too
                g["answer"] = _digit_article(_punct(g["answer"]))
            res = _digit_article(_punct(res))
        accs = []
        for gt in gts:
            others = [item for item in gts if item != gt]
            matching = [item for item in others if item["answer"] == res]
            accs.append(min(1, float(len(matching)) / 3))
        scores.append(sum(accs) / len(accs))
    return scores


def machine_load() -> str:
    """The load average and a calibration loop, so figures from a shared machine can be read."""
    import os

    start = time.perf_counter()
    sum(range(10**7))
    return f"load average {os.getloadavg()[0]:.1f}; sum(range(1e7)) {time.perf_counter() - start:.2f} s (~0.2 s when idle)"


def bench_vqa(n: int, baseline_n: int | None) -> None:
    predictions, answers = synthetic(n)
    print(machine_load())
    for cached in (vqa.process_punctuation, vqa.process_digit_article, vqa.evalai_normalize):
        cached.cache_clear()
    start = time.perf_counter()
    fast = vqa.vqa_accuracy(predictions, answers, mode="vqa")
    fast_s = time.perf_counter() - start
    m = min(baseline_n or n, n)
    start = time.perf_counter()
    slow = baseline(predictions[:m], answers[:m])
    slow_s = (time.perf_counter() - start) * n / m  # the loop is linear in the questions; extrapolated when m < n
    max_diff = max(abs(a - b) for a, b in zip(fast, slow))
    print(f"VQA accuracy, {n} questions x 10 answers: vectorised {fast_s:.3f} s; per-question loop "
          f"{slow_s:.2f} s ({'measured' if m == n else f'{m} questions measured, scaled'}); speed-up {slow_s / fast_s:.1f}x; "
          f"accuracy {100 * fast.mean():.4f}%, max |vectorised - loop| {max_diff:.1e}")  # fmt: skip
    print(machine_load())


def bench_runner(questions: int) -> None:
    import json

    from hub_llava.eval.run import evaluate
    from hub_llava.testing import tiny_llava, tiny_processor

    samples = Path(__file__).resolve().parent.parent / "samples" / "eval"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        processor = tiny_processor()
        tiny_llava(processor.tokenizer).save_pretrained(tmp / "tiny")
        processor.save_pretrained(tmp / "tiny")
        # A bigger POPE split: the sample questions repeated with new ids (images reused).
        data = tmp / "data" / "pope"
        (data / "coco").mkdir(parents=True)
        (data / "val2014").symlink_to(samples / "pope" / "val2014")
        base = [json.loads(x) for x in (samples / "pope" / "llava_pope_test.jsonl").read_text().splitlines()]
        rows = [dict(q, question_id=i + 1, category="random") for i, q in enumerate((base * questions)[:questions])]
        (data / "llava_pope_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        labels = [
            {"question_id": i + 1, "image": r["image"], "text": r["text"].split("\n")[0], "label": "no"}
            for i, r in enumerate(rows)
        ]
        (data / "coco" / "coco_pope_random.json").write_text("".join(json.dumps(r) + "\n" for r in labels))
        timings = {}
        for batch_size in (1, 8):
            start = time.perf_counter()
            evaluate(
                str(tmp / "tiny"),
                ["pope"],
                tmp / "data",
                tmp / f"out{batch_size}",
                batch_size=batch_size,
                max_new_tokens=16,
            )
            timings[batch_size] = time.perf_counter() - start
        texts = {
            b: [json.loads(x)["text"] for x in (tmp / f"out{b}" / "pope" / "answers.jsonl").read_text().splitlines()]
            for b in (1, 8)
        }
        same = len(texts[1]) == questions and texts[1] == texts[8]
        print(f"Runner, tiny model, {questions} POPE questions, 16 new tokens: batch 1 {questions / timings[1]:.1f} q/s, "
              f"batch 8 {questions / timings[8]:.1f} q/s, ratio {timings[1] / timings[8]:.2f}x (all answered, batch 8 == batch 1: {same})")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=214354, help="VQAv2 val has 214,354 questions.")
    parser.add_argument("--baseline_questions", type=int, help="Time the loop on the first N only (default: all).")
    parser.add_argument("--runner_questions", type=int, default=48)
    args = parser.parse_args()
    bench_vqa(args.questions, args.baseline_questions)
    bench_runner(args.runner_questions)
