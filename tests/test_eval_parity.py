"""`--check_invariance` (batch 1 vs the chosen batch size, and dtypes) and the comparison of two answer files that
`--parity` and the invariance check share."""

import json
from pathlib import Path

import pytest

from hub_llava.cli import main
from hub_llava.eval.files import read_jsonl, write_jsonl
from hub_llava.eval.generation import Generator
from hub_llava.eval.parity import differences, print_invariance
from hub_llava.eval.run import load_model
from hub_llava.eval.standin_server import StandInServer
from hub_llava.testing import tiny_llava, tiny_processor
from hub_llava.token_stream import TokenStream

SAMPLES = Path(__file__).parent.parent / "samples" / "eval"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    processor = tiny_processor()
    tiny_llava(processor.tokenizer).save_pretrained(folder)
    processor.save_pretrained(folder)
    TokenStream.from_processor(processor).save_pretrained(folder)
    return folder


def test_differences_lists_the_changed_answers(tmp_path, capsys):
    docs = [{"question_id": 1, "prompt": "a"}, {"question_id": 1, "prompt": "b"}, {"question_id": 2, "prompt": "c"}]
    first = [{"question_id": d["question_id"], "prompt": d["prompt"], "text": t} for d, t in zip(docs, "xyz")]
    second = [dict(first[0]), dict(first[1], text="Y"), dict(first[2])]
    write_jsonl(tmp_path / "1.jsonl", first)
    write_jsonl(tmp_path / "2.jsonl", second[:2])  # question 2 unanswered: not compared
    n, changed = differences(docs, tmp_path / "1.jsonl", tmp_path / "2.jsonl")
    assert n == 2 and changed == [{"question_id": 1, "prompt": "b", "first": "y", "second": "Y"}]
    print_invariance({"pope": [{"variant": "batch1_float16 vs batch8_float16", "n": n, "changed": changed}]})
    assert capsys.readouterr().out == (
        "invariance pope: 1 of 2 answers changed, batch1_float16 vs batch8_float16\n  1: 'y' -> 'Y'\n"
    )


@pytest.mark.slow
def test_check_invariance_batch_sizes_and_dtypes(checkpoint, tmp_path, capsys):
    args = ["eval", "--model", str(checkpoint), "--benchmarks", "pope,mme", "--data_dir", str(SAMPLES),
            "--output_dir", str(tmp_path), "--max_new_tokens", "6", "--batch_size", "4", "--check_invariance",
            "--invariance_sample", "6", "--invariance_dtypes", "float32"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "invariance pope: 0 of 6 answers changed, batch1_float16 vs batch4_float16" in out  # left padding
    assert "invariance mme: 0 of 6 answers changed, batch1_float16 vs batch4_float16" in out
    report = json.loads((tmp_path / "invariance.json").read_text())
    for key in ("pope", "mme"):
        dtype = report[key][1]
        assert dtype["variant"] == "batch1_float16 vs batch4_float32" and dtype["n"] == 6
        first = read_jsonl(tmp_path / "invariance" / "batch1_float16" / key / "answers.jsonl")
        second = read_jsonl(tmp_path / "invariance" / "batch4_float32" / key / "answers.jsonl")
        assert [c["first"] for c in dtype["changed"]] == [
            a["text"] for a, b in zip(first, second) if a["text"] != b["text"]
        ]
        assert (
            f"invariance {key}: {len(dtype['changed'])} of 6 answers changed, batch1_float16 vs batch4_float32" in out
        )
    assert not (tmp_path / "results.json").exists()  # a check, not an evaluation


@pytest.mark.slow
def test_check_invariance_of_a_server_under_load(checkpoint, tmp_path, capsys):
    """The openai backend's batch is its concurrency: 1 request at a time vs 4 (the server batches them)."""
    with StandInServer(Generator(*load_model(str(checkpoint)))) as server:
        args = ["eval", "--model", str(checkpoint), "--benchmarks", "pope", "--data_dir", str(SAMPLES),
                "--output_dir", str(tmp_path), "--max_new_tokens", "6", "--batch_size", "4", "--check_invariance",
                "--backend", "openai", "--base_url", server.url]  # fmt: skip
        assert main(args) == 0
    assert max(server.batch_sizes) > 1  # concurrent requests were answered together
    assert "invariance pope: 0 of 12 answers changed, batch1_float16 vs batch4_float16" in capsys.readouterr().out
