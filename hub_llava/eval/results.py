"""results.json (written by `hub-llava eval` / `score`) -> the Hub's two result formats.

- model-index entries (`huggingface_hub.EvalResult`), for the model card's YAML;
- `.eval_results/<benchmark>.yaml` entries (`huggingface_hub.EvalResultEntry`, the Hub's newer per-file format:
  `dataset: {id, task_id}`, `value`, `date`, `notes`, `source`).

Benchmarks are named by the shared keys; the Hub dataset, split and metric of each come from the model card's table
(`hub_llava.model_card.BENCHMARKS`), so measured and published entries of the same benchmark line up.
"""

from huggingface_hub import EvalResult, EvalResultEntry

from hub_llava.model_card import BENCHMARKS, TASK

PROTOCOL = "LLaVA-1.5 protocol (vicuna_v1 prompt, greedy), scored by hub_llava with the official rules"


def _benchmark(key: str, entry: dict) -> tuple[str, str, str | None, str]:
    """(display name, Hub dataset id, split, metric type) of a results.json entry."""
    if key in BENCHMARKS:
        return BENCHMARKS[key]
    return entry["name"], f"hub_llava/{key}", None, entry["metric"]


def coverage(entry: dict) -> str | None:
    """None for a benchmark answered in full; otherwise what the score covers, e.g. "partial: 3 of 12 questions
    (--limit 3)", said wherever the number goes (model-index, .eval_results, cards)."""
    if entry.get("total") is None or entry.get("answered") is None:
        return "coverage not recorded (results.json from before hub_llava recorded it)"
    if entry["answered"] >= entry["total"] and entry.get("limit") is None:
        return None
    limit = f" (--limit {entry['limit']})" if entry.get("limit") else ""
    return f"partial: {entry['answered']} of {entry['total']} questions{limit}"


def partial_results(results: dict) -> dict[str, str]:
    """Benchmark key -> `coverage(...)` for every entry of a results.json that is not a full evaluation."""
    return {key: label for key, entry in results["results"].items() if (label := coverage(entry))}


def to_eval_results(
    results: dict, *, source_name: str | None = None, source_url: str | None = None
) -> list[EvalResult]:
    """Model-index entries for every benchmark of a results.json, named "<benchmark> (hub_llava)".

    Args:
        results (`dict`): the content of results.json.
        source_name (`str`, *optional*): attribution shown on the Hub (e.g. the details dataset's name).
        source_url (`str`, *optional*): where the results can be checked (e.g. the details dataset's URL).
    """
    entries = []
    for key, entry in results["results"].items():
        name, dataset, split, metric = _benchmark(key, entry)
        entries.append(
            EvalResult(
                task_type=TASK,
                dataset_type=dataset,
                dataset_name=name,
                dataset_split=split,
                metric_type=metric,
                metric_value=entry["score"],
                metric_name=f"{name} (hub_llava{', ' + coverage(entry) if coverage(entry) else ''})",
                source_name=source_name,
                source_url=source_url,
            )
        )
    return entries


def to_eval_result_entries(
    results: dict, *, source_url: str | None = None, source_name: str | None = None
) -> dict[str, list[EvalResultEntry]]:
    """`.eval_results/<benchmark>.yaml` entries per benchmark key (serialise with
    `huggingface_hub.eval_result_entries_to_yaml`)."""
    out = {}
    for key, entry in results["results"].items():
        _, dataset, split, metric = _benchmark(key, entry)
        dtype = f"; weights in {results['dtype']}" if results.get("dtype") else ""
        partial = f"; {coverage(entry).upper()}" if coverage(entry) else ""
        notes = f"{PROTOCOL}; {metric} on {split or 'the benchmark'}, n={entry['n']}{dtype}{partial}; hub_llava {results.get('hub_llava_version', '')}"
        out[key] = [
            EvalResultEntry(
                dataset_id=dataset,
                task_id=key,
                value=entry["score"],
                date=results.get("date"),
                source_url=source_url,
                source_name=source_name if source_url else None,
                notes=notes.strip(),
            )
        ]
    return out
