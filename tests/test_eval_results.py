"""results.json -> model-index entries and `.eval_results/*.yaml` entries."""

import yaml
from huggingface_hub import eval_result_entries_to_yaml, parse_eval_result_entries
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

from hub_llava.eval.results import to_eval_result_entries, to_eval_results

RESULTS = {
    "model": "out/llava-tiny", "model_name": "llava-tiny", "hub_llava_version": "0.1.0.dev0",
    "date": "2026-11-21T23:59:00Z", "dtype": "float16", "generation": {"temperature": 0, "num_beams": 1},
    "results": {
        "pope": {"score": 85.95, "metric": "f1", "name": "POPE", "n": 8910, "limit": None, "answered": 8910,
                 "total": 8910, "details": {}},
        "mme": {"score": 1531.3, "metric": "perception", "name": "MME-Perception", "n": 2374, "limit": None,
                "answered": 2374, "total": 2374, "details": {}},
        "my_bench": {"score": 12.5, "metric": "accuracy", "name": "My Bench", "n": 10, "limit": None, "answered": 10,
                     "total": 10, "details": {}},
    },
}  # fmt: skip


def test_model_index_round_trip():
    entries = to_eval_results(RESULTS, source_name="details", source_url="https://huggingface.co/datasets/o/details_x")
    by_name = {e.dataset_name: e for e in entries}
    assert by_name["POPE"].dataset_type == "lmms-lab/POPE" and by_name["POPE"].metric_type == "f1"
    assert by_name["POPE"].metric_value == 85.95 and by_name["POPE"].metric_name == "POPE (hub_llava)"
    assert by_name["MME-Perception"].metric_value == 1531.3
    assert by_name["My Bench"].dataset_type == "hub_llava/my_bench"
    model_index = eval_results_to_model_index("llava-tiny", entries)
    name, parsed = model_index_to_eval_results(model_index)
    assert name == "llava-tiny"
    assert sorted((e.dataset_name, e.metric_value) for e in parsed) == [
        ("MME-Perception", 1531.3), ("My Bench", 12.5), ("POPE", 85.95)
    ]  # fmt: skip


def test_eval_results_yaml_entries():
    entries = to_eval_result_entries(RESULTS)
    assert set(entries) == {"pope", "mme", "my_bench"}
    data = yaml.safe_load(yaml.safe_dump(eval_result_entries_to_yaml(entries["pope"])))
    assert data[0]["dataset"] == {"id": "lmms-lab/POPE", "task_id": "pope"}
    assert data[0]["value"] == 85.95 and data[0]["date"] == "2026-11-21T23:59:00Z"
    assert "n=8910; weights in float16;" in data[0]["notes"] and "source" not in data[0]
    assert parse_eval_result_entries(data)[0].value == 85.95
    linked = to_eval_result_entries(RESULTS, source_url="https://example.org/d", source_name="details")
    assert eval_result_entries_to_yaml(linked["mme"])[0]["source"] == {
        "url": "https://example.org/d",
        "name": "details",
    }
