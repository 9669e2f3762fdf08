"""Evaluation results for the Hub: the details dataset (lighteval layout) and the merged model-index."""

import json
import shutil

import pytest
import yaml
from datasets import load_dataset
from huggingface_hub import EvalResult, EvalResultEntry, ModelCard, ModelCardData, parse_eval_result_entries
from test_hub import save_tiny_checkpoint
from test_hub_standin import installed

from hub_llava.hub import PushError, push_model, push_results
from hub_llava.hub_checks import HubCheckError, check_card
from hub_llava.hub_results import details_repo_id, merge_model_index, model_index, run_split, stage_details
from hub_llava.model_card import PublishedResults, render_model_card

DETAILS_REPO = "hub_llava/details_tiny-llava"


def write_run(folder, date="2026-11-21T23:59:00Z", pope_prediction="Yes", limit=None):
    """A results.json as `hub-llava eval` writes it (shared contract), with its per-sample rows beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    pope_coverage = {"limit": limit, "answered": limit or 3, "total": 3}
    mme_coverage = {"limit": None, "answered": 2, "total": 2}
    results = {
        "model": "hub_llava/tiny-llava",
        "model_name": "tiny-llava",
        "hub_llava_version": "0.1.0.dev0",
        "date": date,
        "dtype": "float16",
        "generation": {"temperature": 0, "num_beams": 1},
        "results": {
            "pope": {
                "score": 66.67,
                "metric": "f1",
                "name": "POPE",
                "n": limit or 3,
                **pope_coverage,
                "details": {"adversarial": {"f1": 66.67}},
            },
            "mme": {
                "score": 150.0,
                "metric": "perception",
                "name": "MME-Perception",
                "n": 2,
                **mme_coverage,
                "details": {},
            },  # fmt: skip
            "mme_cognition": {
                "score": 50.0,
                "metric": "cognition",
                "name": "MME-Cognition",
                "n": 2,
                **mme_coverage,
                "details": {},
            },  # fmt: skip
        },
    }
    (folder / "results.json").write_text(json.dumps(results))
    pope = [
        {"question_id": 1, "question": "Is there a dog?", "prompt": "USER: <image>\nIs there a dog? ASSISTANT:",
         "prediction": pope_prediction, "target": "yes", "score": 1.0, "category": "adversarial"},
        {"question_id": 2, "question": "Is there a cat?", "prompt": "USER: <image>\nIs there a cat? ASSISTANT:",
         "prediction": "No", "target": "yes", "score": 0, "category": "adversarial"},
        {"question_id": 3, "question": "Is there a car?", "prompt": "USER: <image>\nIs there a car? ASSISTANT:",
         "prediction": "No", "target": "no", "score": 1, "category": "random"},
    ]  # fmt: skip
    mme = [
        {"question_id": "code/0001.png", "question": "Q1", "prompt": "P1", "prediction": "Yes", "target": ["yes"],
         "score": 1.0},
        {"question_id": "code/0001.png#2", "question": "Q2", "prompt": "P2", "prediction": "No", "target": ["no"],
         "score": 1.0},
    ]  # fmt: skip
    for key, rows in (("pope", pope), ("mme", mme)):
        (folder / key).mkdir(exist_ok=True)
        (folder / key / "details.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder / "results.json"


def load_staged(folder, tmp_path, monkeypatch, config, split):
    work = tmp_path / "load"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(folder, work / DETAILS_REPO)
    monkeypatch.chdir(work)
    return load_dataset(DETAILS_REPO, config, split=split, cache_dir=str(tmp_path / "cache"))


def test_run_split_and_repo_name():
    assert run_split("2026-11-21T23:59:00Z") == "2026_11_21T23_59_00"
    assert details_repo_id("hub_llava/tiny-llava", "tiny llava/v1") == "hub_llava/details_tiny_llava_v1"


def test_details_dataset_loads_back(tmp_path, monkeypatch):
    results_json = write_run(tmp_path / "eval")
    staged = stage_details(results_json, DETAILS_REPO, tmp_path / "staged")
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == [
        "README.md", "mme/details_2026_11_21T23_59_00.parquet", "pope/details_2026_11_21T23_59_00.parquet",
        "results_2026_11_21T23_59_00.parquet",
    ]  # fmt: skip
    card = (staged / "README.md").read_text()
    check_card(card, "README.md", "dataset")
    assert "| MME-Cognition | — | 50.0 | cognition | 2 | — |" in card
    assert "| POPE | `pope` | 66.67 | f1 | 3 | 3 |" in card
    assert "Per-sample outputs of [`hub_llava/tiny-llava`](https://huggingface.co/hub_llava/tiny-llava) on 3" in card
    assert "generation temperature=0, num_beams=1, weights in `float16`\n(LLaVA evaluated in `float16`)" in card

    pope = load_staged(staged, tmp_path, monkeypatch, "pope", "latest")
    assert pope["question_id"] == ["1", "2", "3"] and pope["score"] == [1.0, 0.0, 1.0]
    assert pope[0]["prompt"] == "USER: <image>\nIs there a dog? ASSISTANT:" and pope[0]["target"] == "yes"
    assert json.loads(pope[2]["extra"]) == {"category": "random"}
    mme = load_staged(staged, tmp_path, monkeypatch, "mme", "2026_11_21T23_59_00")
    assert mme["target"] == ['["yes"]', '["no"]']
    results = load_staged(staged, tmp_path, monkeypatch, "results", "latest")
    assert results["benchmark"] == ["pope", "mme", "mme_cognition"] and results["score"] == [66.67, 150.0, 50.0]
    assert (
        json.loads(results[0]["details"]) == {"adversarial": {"f1": 66.67}}
        and results[0]["model_name"] == "tiny-llava"
    )
    assert results["dtype"] == ["float16"] * 3


def test_card_of_a_run_without_a_recorded_dtype(tmp_path):
    results_json = write_run(tmp_path / "eval")
    results = json.loads(results_json.read_text())
    del results["dtype"]  # a results.json written before eval recorded it
    results_json.write_text(json.dumps(results))
    card = (stage_details(results_json, DETAILS_REPO, tmp_path / "staged") / "README.md").read_text()
    assert "weights dtype not recorded" in card and "weights in" not in card


def test_earlier_runs_stay_as_splits(tmp_path, monkeypatch):
    first = stage_details(write_run(tmp_path / "run1"), DETAILS_REPO, tmp_path / "first")
    results_json = write_run(tmp_path / "run2", date="2026-11-22T08:00:00Z", pope_prediction="No")
    staged = stage_details(results_json, DETAILS_REPO, tmp_path / "second", previous_dir=first)
    old = load_staged(staged, tmp_path, monkeypatch, "pope", "2026_11_21T23_59_00")
    latest = load_staged(staged, tmp_path, monkeypatch, "pope", "latest")
    assert old[0]["prediction"] == "Yes" and latest[0]["prediction"] == "No"
    assert "- `2026_11_21T23_59_00`\n- `2026_11_22T08_00_00` (latest)" in (staged / "README.md").read_text()


def test_bad_details_line_names_file_and_line(tmp_path):
    results_json = write_run(tmp_path / "eval")
    details = tmp_path / "eval" / "pope" / "details.jsonl"
    lines = details.read_text().splitlines()
    lines[1] = json.dumps({"question_id": 2, "question": "Q", "prompt": "P", "prediction": "No", "score": 0})
    details.write_text("\n".join(lines) + "\n")
    with pytest.raises(HubCheckError, match=f"{details}:2: missing field\\(s\\) \\['target'\\]"):
        stage_details(results_json, DETAILS_REPO, tmp_path / "staged")
    (tmp_path / "eval" / "results.json").write_text('{"model": "m", "model_name": "m", "date": "d", "results": {}}')
    with pytest.raises(HubCheckError, match="'results' is empty"):
        stage_details(results_json, DETAILS_REPO, tmp_path / "staged")


def _result(dataset, name, metric, value, source=None):
    return EvalResult(
        task_type="image-text-to-text", dataset_type=dataset, dataset_name=name, dataset_split="test",
        metric_type=metric, metric_value=value, source_name=source, source_url="https://x.org" if source else None,
    )  # fmt: skip


def test_merge_model_index_replaces_own_results_and_keeps_published():
    published = _result("lmms-lab/POPE", "POPE", "f1", 85.9, source="LLaVA-1.5 (Liu et al., 2023)")
    old_measured = _result("lmms-lab/POPE", "POPE", "f1", 80.0)
    metadata = {"license": "llama2", "model-index": model_index("tiny-llava", [published, old_measured])}
    card = f"---\n{yaml.safe_dump(metadata)}---\n\n# tiny-llava\n\nBody kept.\n"
    measured = [
        _result("lmms-lab/POPE", "POPE", "f1", 66.67),
        _result("lmms-lab/MME", "MME-Perception", "perception", 150.0),
    ]
    merged = merge_model_index(card, measured, "ignored: the card's model-index names the model")
    check_card(merged, "README.md", "model")
    parsed = ModelCard(merged)  # how the Hub and users read it back
    assert parsed.data.eval_results == [published, *measured]
    assert parsed.data.model_name == "tiny-llava" and parsed.data.license == "llama2"
    assert merged.endswith("---\n\n# tiny-llava\n\nBody kept.\n")


def test_model_index_keeps_each_score_with_its_own_source():
    """ModelCardData groups by task + dataset under the first source: the measured 66.67 would read as the authors'."""
    published = _result("lmms-lab/POPE", "POPE", "f1", 85.9, source="LLaVA-1.5 (Liu et al., 2023)")
    measured = _result("lmms-lab/POPE", "POPE", "f1", 66.67)
    grouped = ModelCard(f"---\n{ModelCardData(model_name='m', eval_results=[published, measured]).to_yaml()}\n---\n")
    assert grouped.data.eval_results[1].source_name == "LLaVA-1.5 (Liu et al., 2023)"  # the pitfall
    ours = ModelCard(f"---\n{yaml.safe_dump({'model-index': model_index('m', [published, measured])})}---\n")
    assert ours.data.eval_results == [published, measured]


# --------------------------------------------------------------------------- push_results against the Hub stand-in
@pytest.fixture
def hub(monkeypatch, tmp_path):
    yield from installed(monkeypatch, tmp_path)


def _entries(value):
    return {"pope": [EvalResultEntry(dataset_id="lmms-lab/POPE", task_id="default", value=value)]}


def test_push_results_details_then_card(hub, tmp_path, monkeypatch):
    published = PublishedResults({"pope": 85.9}, "LLaVA-1.5 (Liu et al., 2023)", "https://arxiv.org/abs/2310.03744")
    checkpoint = tmp_path / "ckpt"
    save_tiny_checkpoint(checkpoint)
    card = render_model_card("tiny-llava", license="apache-2.0", published=published, framework_versions={})
    (checkpoint / "README.md").write_text(card)
    push_model(checkpoint, "hub_llava/tiny-llava")
    weights = (hub.tree("hub_llava/tiny-llava") / "model.safetensors").read_bytes()

    results_json = write_run(tmp_path / "eval")
    measured = [_result("lmms-lab/POPE", "POPE", "f1", 66.67)]
    push = push_results(
        results_json, "hub_llava/tiny-llava", eval_results=measured, eval_result_entries=_entries(66.67)
    )
    assert [(p.repo_type, p.repo_id) for p in (push, *push.extra)] == [
        ("model", "hub_llava/tiny-llava"), ("dataset", DETAILS_REPO),
    ]  # fmt: skip
    # The details dataset went first; then the model repo: .eval_results, then the card.
    order = [(c.repo[1], c.added) for c in hub.commits if c.message.startswith("Evaluation results")]
    assert order == [
        (DETAILS_REPO, ["mme/details_2026_11_21T23_59_00.parquet", "pope/details_2026_11_21T23_59_00.parquet",
                        "results_2026_11_21T23_59_00.parquet"]),
        (DETAILS_REPO, ["README.md"]),
        ("hub_llava/tiny-llava", [".eval_results/pope.yaml"]),
        ("hub_llava/tiny-llava", ["README.md"]),
    ]  # fmt: skip
    model_tree = hub.tree("hub_llava/tiny-llava")
    assert (model_tree / "model.safetensors").read_bytes() == weights  # the checkpoint is untouched
    entries = parse_eval_result_entries(yaml.safe_load((model_tree / ".eval_results" / "pope.yaml").read_text()))
    assert entries == _entries(66.67)["pope"]
    model_card = ModelCard.load(model_tree / "README.md")
    assert model_card.data.eval_results == [*published.to_eval_results(), *measured]
    # The body is kept; `push model` made its quick start name the repo it was pushed to.
    assert model_card.text == ModelCard(card).text.replace(
        'model_id = "tiny-llava"', 'model_id = "hub_llava/tiny-llava"'
    )
    pope = load_staged(hub.tree(DETAILS_REPO, "dataset"), tmp_path, monkeypatch, "pope", "latest")
    assert pope["prediction"] == ["Yes", "No", "No"]

    # A second run: the first stays as a split of the details dataset; its measured POPE is replaced in the card.
    results_json = write_run(tmp_path / "eval2", date="2026-11-22T08:00:00Z", pope_prediction="No")
    measured = [_result("lmms-lab/POPE", "POPE", "f1", 70.0)]
    push_results(results_json, "hub_llava/tiny-llava", eval_results=measured, eval_result_entries=_entries(70.0))
    tree = hub.tree(DETAILS_REPO, "dataset")
    assert load_staged(tree, tmp_path, monkeypatch, "pope", "2026_11_21T23_59_00")["prediction"][0] == "Yes"
    assert load_staged(tree, tmp_path, monkeypatch, "pope", "latest")["prediction"][0] == "No"
    assert load_staged(tree, tmp_path, monkeypatch, "results", "2026_11_21T23_59_00")["score"][0] == 66.67
    model_card = ModelCard.load(hub.tree("hub_llava/tiny-llava") / "README.md")
    assert model_card.data.eval_results == [*published.to_eval_results(), *measured]


def test_push_results_needs_the_model_card(hub, tmp_path):
    results_json = write_run(tmp_path / "eval")
    with pytest.raises(PushError, match="Cannot read the model card of 'hub_llava/tiny-llava'.*push the model first"):
        push_results(results_json, "hub_llava/tiny-llava", eval_results=[], eval_result_entries={})
    assert hub.commits == []


def test_push_results_dry_run_with_a_local_card(hub, tmp_path):
    results_json = write_run(tmp_path / "eval")
    card = tmp_path / "README.md"
    card.write_text(render_model_card("tiny-llava", license="apache-2.0", framework_versions={}))
    measured = [_result("lmms-lab/POPE", "POPE", "f1", 66.67)]
    push = push_results(
        results_json, "hub_llava/tiny-llava", model_card=card, dry_run=True, eval_results=measured,
        eval_result_entries=_entries(66.67),
    )  # fmt: skip
    assert hub.requests == []
    assert (
        push.files == [".eval_results/pope.yaml", "README.md"]
        and push.folder == tmp_path / "eval" / "hub_staging" / "model"
    )
    assert "value: 66.67" in push.card
    assert push.extra[0].repo_id == DETAILS_REPO and "README.md" in push.extra[0].files


def test_push_results_with_the_eval_helpers_entries(hub, tmp_path):
    """Defaults: model-index and `.eval_results/` from `hub_llava.eval.results`, attributed to the details dataset."""
    checkpoint = tmp_path / "ckpt"
    save_tiny_checkpoint(checkpoint)
    push_model(checkpoint, "hub_llava/tiny-llava")
    push_results(write_run(tmp_path / "eval"), "hub_llava/tiny-llava")
    tree = hub.tree("hub_llava/tiny-llava")
    assert sorted(p.name for p in (tree / ".eval_results").iterdir()) == [
        "mme.yaml",
        "mme_cognition.yaml",
        "pope.yaml",
    ]
    (pope,) = parse_eval_result_entries(yaml.safe_load((tree / ".eval_results" / "pope.yaml").read_text()))
    assert (pope.dataset_id, pope.task_id, pope.value) == ("lmms-lab/POPE", "pope", 66.67)
    assert pope.source_url == f"https://huggingface.co/datasets/{DETAILS_REPO}"
    results = {r.metric_type: r for r in ModelCard.load(tree / "README.md").data.eval_results}
    assert results["f1"].metric_value == 66.67 and results["cognition_score"].metric_value == 50.0
    assert results["f1"].source_name == f"hub_llava evaluation ({DETAILS_REPO})"


def test_partial_results_are_refused_unless_allowed_and_then_labelled(hub, tmp_path):
    """`eval --limit 2` then `push results` published a POPE F1 from 2 of 12 questions as if complete: refused now,
    and with --allow_partial labelled wherever the number goes."""
    results_json = write_run(tmp_path / "eval", limit=2)
    card = tmp_path / "README.md"
    card.write_text(render_model_card("tiny-llava", base_model="hub_llava/tiny-base"))
    with pytest.raises(HubCheckError, match=r"pope: partial: 2 of 3 questions \(--limit 2\).*--allow_partial"):
        push_results(results_json, "hub_llava/tiny-llava", model_card=card, dry_run=True)
    push = push_results(results_json, "hub_llava/tiny-llava", model_card=card, dry_run=True, allow_partial=True)
    names = [r.metric_name for r in ModelCard(push.card).data.eval_results if r.dataset_type == "lmms-lab/POPE"]
    assert names == ["POPE (hub_llava, partial: 2 of 3 questions (--limit 2))"]
    notes = (push.folder / ".eval_results" / "pope.yaml").read_text()
    assert "PARTIAL: 2 OF 3 QUESTIONS" in notes
    details_card = (push.extra[0].folder / "README.md").read_text()
    assert "66.67 (**partial: 2 of 3 questions (--limit 2)**)" in details_card
    assert "MME-Perception | `mme` | 150.0 | perception" in details_card  # a full benchmark carries no label


def test_results_without_recorded_coverage_are_not_published_as_full(hub, tmp_path):
    results_json = write_run(tmp_path / "eval")
    results = json.loads(results_json.read_text())
    for entry in results["results"].values():
        del entry["limit"], entry["answered"], entry["total"]  # a results.json from before coverage was recorded
    results_json.write_text(json.dumps(results))
    card = tmp_path / "README.md"
    card.write_text(render_model_card("tiny-llava", base_model="hub_llava/tiny-base"))
    with pytest.raises(HubCheckError, match="coverage not recorded"):
        push_results(results_json, "hub_llava/tiny-llava", model_card=card, dry_run=True)
