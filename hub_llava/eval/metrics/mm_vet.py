"""MM-Vet: the judge's grade parsing and the scores, computed as the official evaluator does.

The official evaluator (yuweihao/MM-Vet, `mm-vet_evaluator.py`, unchanged in substance since its first release)
grades every item 0.0-1.0 once per run. Per run it sums the grades in file order and divides: the total by the number
of items, a capability (`rec`, `ocr`, ...) by the number of items having it, a capability integration (the exact set
of an item's capabilities, e.g. `ocr_math`) by the number of items having exactly that set; x 100. It then reports
the mean over the runs of each, the population std of the per-run totals and the per-run totals, all rounded to one
decimal with numpy (so 3 runs of 31.2 / 30.8 / 31.2 report 31.1, the mean of the unrounded totals).
"""

import math
from collections import Counter

import numpy as np

DECIMALS = 1


def parse_grade(text: str) -> float | None:
    """The grade in a judge reply, read as the official grader does: the first space-separated field, stripped,
    as a number in [0, 1]; None when it is not one (" 0.5" and "0.5." are not; "0.5\\n" is).

    NaN is refused too: the official check (`score > 1.0 or score < 0.0`) lets a "nan" reply through, which would
    make every total NaN.
    """
    try:
        value = float(text.split(" ")[0].strip())
    except ValueError:
        return None
    return None if math.isnan(value) or value > 1.0 or value < 0.0 else value


def _round(value) -> float:
    # `round(np.float64, 1)` as the official script calls it is numpy's rounding (half to even on the scaled value).
    return float(np.round(value, DECIMALS))


def _columns(capabilities: dict[str, list[str]]) -> tuple[list[str], dict[str, str]]:
    """The capabilities, most frequent first (the official column order; ties in first-seen order), and each item's
    capability integration, named by its capabilities in that order joined with "_" ("" for an item with none)."""
    counts = Counter(cap for caps in capabilities.values() for cap in dict.fromkeys(caps))
    order = [cap for cap, _ in counts.most_common()]
    return order, {key: "_".join(cap for cap in order if cap in caps) for key, caps in capabilities.items()}


def mm_vet_scores(runs: list[dict[str, float]], capabilities: dict[str, list[str]]) -> dict:
    """The official MM-Vet figures from grade runs.

    Args:
        runs (`list[dict[str, float]]`): one `{item id: grade}` per judge run, items in grade-file order.
        capabilities (`dict[str, list[str]]`): the items scored (the denominators) and their capabilities, from
            `mm-vet.json`; empty lists when only the total is wanted. An item without a grade in a run adds 0.

    Returns:
        `dict`: `total` (the headline), `std` and `runs` (per-run totals), `capabilities` and
        `capability_integrations` (name -> score, most frequent first), `n` (items) and `num_runs`.
    """
    if not runs or not capabilities:
        raise ValueError("MM-Vet needs at least one grade run and one item to score.")
    unknown = [key for run in runs for key in run if key not in capabilities]
    if unknown:
        raise ValueError(f"MM-Vet grades for items that are not scored: {unknown[:3]}.")
    order, integration = _columns(capabilities)
    # Two tables, as the official script keeps: ("cap", c) per capability, ("int", name) per integration (a single
    # capability is also an integration of its own name).
    columns = {key: {("total", ""), *(("cap", c) for c in set(caps))} for key, caps in capabilities.items()}
    for key, name in integration.items():
        if name:
            columns[key].add(("int", name))
    counts = Counter(column for item in columns.values() for column in item)
    sums = {column: [0.0] * len(runs) for column in counts}
    for index, run in enumerate(runs):
        for key, grade in run.items():  # summed in file order, as the official loop does
            for column in columns[key]:
                sums[column][index] += grade
    per_run = {column: np.array(values) / counts[column] * 100 for column, values in sums.items()}
    integrations = [name for name, _ in Counter(n for n in integration.values() if n).most_common()]
    return {
        "total": _round(per_run["total", ""].mean()),
        "std": _round(per_run["total", ""].std()),
        "runs": [_round(value) for value in per_run["total", ""]],
        "capabilities": {cap: _round(per_run["cap", cap].mean()) for cap in order},
        "capability_integrations": {name: _round(per_run["int", name].mean()) for name in integrations},
        "n": len(capabilities),
        "num_runs": len(runs),
    }
