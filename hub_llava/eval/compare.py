"""`hub-llava compare RUN_A RUN_B`: is B better than A, or is it noise?

For every benchmark both runs scored (`<run>/<benchmark>/details.jsonl`), the questions both answered are paired and,
per benchmark and per category: the two scores, the difference B - A with its paired-bootstrap 95% interval
(questions resampled with replacement within each category, the same draw for both runs; MME resamples images,
MMBench its circular groups, as those scores are computed per image / group), flagged when the interval excludes 0,
and for benchmarks scored right/wrong per question the exact McNemar test on the discordant questions. Markdown on stdout;
`--plot out.png` draws the differences with their intervals (matplotlib: `pip install hub_llava[plot]`).

Scores are recomputed from the paired rows with the benchmark's own statistic (POPE: mean F1 of the categories; MME:
the perception sum of acc + acc+; MMBench: circular accuracy; ScienceQA: accuracy on image questions; LLaVA-Bench:
relative score; others: mean accuracy), so they equal results.json's headline when both runs answered everything.
A helper module may define `compare_unit(row)`, `compare_stats(rows)` (additive statistics of one unit) and
`compare_score(totals)` (the score from summed statistics, vectorised over resamples); the default is the mean.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np

from hub_llava.eval import registry
from hub_llava.eval.files import read_jsonl

CHUNK = 100  # resamples computed at once (bounds memory: CHUNK x units)


def _mean_stats(rows: list[dict]) -> dict:
    return {"score": sum(float(r["score"]) for r in rows), "n": len(rows)}


def _mean_score(totals: dict) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100 * totals["score"] / totals["n"]


def row_key(row: dict) -> tuple[str, str]:
    """A question in details.jsonl: its id and prompt (MME and TextVQA share ids between questions)."""
    return str(row["question_id"]), str(row.get("prompt") or row.get("question") or "")


def load_run(folder) -> dict[str, list[dict]]:
    """{benchmark: details rows} of a `hub-llava eval` output folder."""
    folder = Path(folder)
    if not (folder / "results.json").is_file():
        raise ValueError(f"{folder} is not a `hub-llava eval` output folder (no results.json).")
    results = json.loads((folder / "results.json").read_text())["results"]
    return {
        key: read_jsonl(folder / key / "details.jsonl")
        for key in results
        if (folder / key / "details.jsonl").is_file()
    }


class Paired:
    """Two runs' rows of one benchmark on the questions both answered, grouped into resampling units."""

    def __init__(self, key: str, rows_a: list[dict], rows_b: list[dict]):
        helper = registry.load(key).helper
        self.stats_of = getattr(helper, "compare_stats", _mean_stats)
        self.score_of = getattr(helper, "compare_score", _mean_score)
        unit_of = getattr(helper, "compare_unit", row_key)
        b = {row_key(r): r for r in rows_b}
        pairs = [(r, b[row_key(r)]) for r in rows_a if row_key(r) in b]
        units: dict = {}
        for ra, rb in pairs:
            units.setdefault(unit_of(ra), []).append((ra, rb))
        self.units = list(units.values())
        self.n = len(pairs)
        self.binary = all(float(r["score"]) in (0.0, 1.0) for pair in pairs for r in pair)

    def matrices(self, units: list) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The statistics of every unit as two (units x statistics) matrices, for A and B."""
        stats_a = [self.stats_of([ra for ra, _ in unit]) for unit in units]
        stats_b = [self.stats_of([rb for _, rb in unit]) for unit in units]
        names = sorted({name for s in stats_a + stats_b for name in s})
        matrix = lambda stats: np.array([[s.get(n, 0.0) for n in names] for s in stats], dtype=float)  # noqa: E731
        return names, matrix(stats_a), matrix(stats_b)

    def compare(self, units: list, n_bootstrap: int, rng) -> dict:
        names, a, b = self.matrices(units)
        score = lambda m: self.score_of(dict(zip(names, m.T)))  # noqa: E731
        score_a, score_b = float(score(a.sum(0, keepdims=True))[0]), float(score(b.sum(0, keepdims=True))[0])
        strata = {}
        for i, unit in enumerate(units):
            strata.setdefault(str(unit[0][0].get("category")), []).append(i)
        diffs = []
        for start in range(0, n_bootstrap, CHUNK):
            size = min(CHUNK, n_bootstrap - start)
            counts = np.zeros((size, len(units)))
            for members in strata.values():  # within each category: its size is part of the benchmark's design
                draws = np.asarray(members)[rng.integers(0, len(members), size=(size, len(members)))]
                np.add.at(counts, (np.arange(size)[:, None], draws), 1)  # how often each unit was drawn
            with np.errstate(invalid="ignore", divide="ignore"):
                diffs.append(score(counts @ b) - score(counts @ a))
        diffs = np.concatenate(diffs)
        low, high = np.nanpercentile(diffs, [2.5, 97.5]) if np.isfinite(diffs).any() else (math.nan, math.nan)
        return {"a": score_a, "b": score_b, "diff": score_b - score_a, "low": float(low), "high": float(high)}

    def mcnemar(self, units: list) -> float | None:
        if not self.binary:
            return None
        pairs = [pair for unit in units for pair in unit]
        only_a = sum(float(ra["score"]) == 1.0 and float(rb["score"]) == 0.0 for ra, rb in pairs)
        only_b = sum(float(ra["score"]) == 0.0 and float(rb["score"]) == 1.0 for ra, rb in pairs)
        return mcnemar_exact(only_a, only_b)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the discordant questions as a binomial(only_a + only_b, 1/2)."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)
    ]
    top = max(log_terms)
    return min(1.0, 2 * math.exp(top) * sum(math.exp(t - top) for t in log_terms))


def compare_runs(run_a, run_b, *, n_bootstrap: int = 2000, seed: int = 0) -> list[dict]:
    """Rows `{benchmark, category, n, a, b, diff, low, high, mcnemar_p, significant}`: one `all` row per benchmark
    both runs scored, then one per category when the benchmark has several."""
    details_a, details_b = load_run(run_a), load_run(run_b)
    common = [key for key in details_a if key in details_b]
    if not common:
        raise ValueError(
            f"{run_a} and {run_b} have no scored benchmark in common (no shared <benchmark>/details.jsonl)."
        )
    rng = np.random.default_rng(seed)
    rows = []
    for key in common:
        paired = Paired(key, details_a[key], details_b[key])
        if not paired.units:
            continue
        categories = sorted({str(unit[0][0].get("category")) for unit in paired.units})
        groups = [("all", paired.units)] + (
            [(c, [u for u in paired.units if str(u[0][0].get("category")) == c]) for c in categories]
            if len(categories) > 1 else []
        )  # fmt: skip
        for category, units in groups:
            result = paired.compare(units, n_bootstrap, rng)
            significant = bool(result["low"] > 0 or result["high"] < 0)
            rows.append({"benchmark": key, "category": category, "n": sum(len(u) for u in units), **result,
                         "mcnemar_p": paired.mcnemar(units), "significant": significant})  # fmt: skip
    return rows


def to_markdown(rows: list[dict], name_a: str, name_b: str) -> str:
    lines = [
        f"A = {name_a}, B = {name_b}; paired questions; 95% interval of B - A by paired bootstrap; "
        "**bold**: the interval excludes 0.",
        "",
        "| benchmark | category | n | A | B | B - A | 95% interval | McNemar p |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in rows:
        diff = f"{r['diff']:+.2f}"
        diff = f"**{diff}**" if r["significant"] else diff
        p = "" if r["mcnemar_p"] is None else f"{r['mcnemar_p']:.3g}"
        lines.append(f"| {r['benchmark']} | {r['category']} | {r['n']} | {r['a']:.2f} | {r['b']:.2f} | {diff} | "
                     f"[{r['low']:+.2f}, {r['high']:+.2f}] | {p} |")  # fmt: skip
    return "\n".join(lines)


def plot(rows: list[dict], path, name_a: str, name_b: str) -> None:
    """A horizontal error-bar chart of B - A per benchmark and category (flagged ones in red)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install hub_llava[plot]") from None
    labels = [f"{r['benchmark']} / {r['category']}" for r in rows][::-1]
    rows = rows[::-1]
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    for y, r in enumerate(rows):
        colour = "tab:red" if r["significant"] else "tab:blue"
        axis.errorbar(r["diff"], y, xerr=[[r["diff"] - r["low"]], [r["high"] - r["diff"]]], fmt="o", color=colour)
    axis.axvline(0, color="grey", linewidth=0.8)
    axis.set_yticks(range(len(rows)), labels)
    axis.set_xlabel(f"{name_b} - {name_a} (points, 95% paired-bootstrap interval)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "compare", help="Compare two eval runs: differences with paired-bootstrap intervals."
    )
    parser.add_argument("run_a", help="A `hub-llava eval` output folder (the baseline).")
    parser.add_argument("run_b", help="Another one (the candidate).")
    parser.add_argument("--n_bootstrap", type=int, default=2000, help="Bootstrap resamples (default 2000).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="Also draw the differences into this image file (needs matplotlib).")
    parser.add_argument("--json", help="Also write the rows as JSON to this file.")
    parser.set_defaults(func=main)
    return parser


def main(args) -> int:
    try:
        rows = compare_runs(args.run_a, args.run_b, n_bootstrap=args.n_bootstrap, seed=args.seed)
        names = Path(args.run_a).name, Path(args.run_b).name
        if args.plot:
            plot(rows, args.plot, *names)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(to_markdown(rows, *names))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0
