"""Scorers as plain functions: a per-sample function and a corpus aggregation per metric (lighteval style).

They take already-aligned predictions and ground truths; reading and aligning the official files is done by the
benchmark helpers in `hub_llava/eval/benchmarks/`.
"""


def rounded(value: float | None, digits: int = 2) -> float | None:
    """A headline score on the published scale; `None` (not evaluated: nothing to score) stays `None`, never 0."""
    return None if value is None else round(value, digits)
