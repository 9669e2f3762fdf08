"""LLaVA-Bench-in-the-Wild, scored from GPT judge review files (MM-Vet's grades: `hub_llava.eval.metrics.mm_vet`).

LLaVA-Bench (LLaVA's `summarize_gpt_review.py`): each review holds `tuple` = (GPT-4 reference score, model score);
per category and overall, the means (rounded to 3 decimals) give relative = round(model / reference * 100, 1).
Reviews whose first line did not parse carry (-1, -1) and are kept, as the original does; they are counted.
"""

from collections import defaultdict

import numpy as np


def parse_review_scores(content: str) -> list[float]:
    """The two scores on the first line of a judge review ("8 6" or "8,6"), or [-1, -1] when it does not parse
    (LLaVA's rule: exactly two space-separated fields)."""
    try:
        first = content.split("\n")[0].replace(",", " ").split(" ")
        if len(first) == 2:
            return [float(first[0]), float(first[1])]
    except ValueError:
        pass
    return [-1.0, -1.0]


def llava_bench_summary(reviews: list[dict]) -> dict:
    """Relative score, reference and model score (x10) per category and "all", from one review run."""
    scores: dict[str, list] = defaultdict(list)
    for review in reviews:
        pair = review["tuple"] if "tuple" in review else parse_review_scores(review["content"])
        if "category" in review:
            scores[review["category"]].append(pair)
        scores["all"].append(pair)
    summary = {}
    for key, values in sorted(scores.items()):
        reference, model = (round(x, 3) for x in np.asarray(values, dtype=float).mean(axis=0).tolist())
        summary[key] = {
            "relative": round(model / reference * 100, 1),
            "reference": round(reference * 10, 1),
            "model": round(model * 10, 1),
            "n": len(values),
            "unparsed": sum(1 for v in values if list(v) == [-1.0, -1.0]),
        }
    return summary
