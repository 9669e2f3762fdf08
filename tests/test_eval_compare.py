"""`hub-llava compare RUN_A RUN_B` on details files written here, with known differences."""

import json
import math
from fractions import Fraction

import pytest

from hub_llava.cli import main
from hub_llava.eval.compare import compare_runs, mcnemar_exact


def _write_run(folder, benchmarks: dict):
    """A `hub-llava eval` output folder: results.json + <benchmark>/details.jsonl for each benchmark."""
    folder.mkdir(parents=True)
    results = {
        key: {"score": 0.0, "metric": "m", "name": key, "n": len(rows), "details": {}}
        for key, rows in benchmarks.items()
    }
    (folder / "results.json").write_text(json.dumps({"results": results}))
    for key, rows in benchmarks.items():
        (folder / key).mkdir()
        (folder / key / "details.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _gqa(correct: set[int], n=200):
    return [{"question_id": str(i), "prompt": f"q{i}", "prediction": "x", "target": "x", "score": float(i in correct),
             "category": "default"} for i in range(n)]  # fmt: skip


def _pope(flip: set[int] = frozenset()):
    """3 categories x 40 questions; label yes on even numbers; the model says yes on even numbers except `flip`."""
    rows = []
    for c, category in enumerate(("adversarial", "popular", "random")):
        for i in range(40):
            qid = c * 100 + i
            label = "yes" if i % 2 == 0 else "no"
            prediction = label if qid not in flip else ("no" if label == "yes" else "yes")
            rows.append({"question_id": qid, "prompt": f"Is there a thing {qid}?", "prediction": prediction,
                         "target": label, "score": float(prediction == label), "category": category})  # fmt: skip
    return rows


@pytest.fixture
def runs(tmp_path):
    # GQA: A right on 0-99; B right on 0-89 and 100-159 -> 50% vs 75%: +25 points; 10 questions only A got right,
    # 60 only B. POPE: identical answers (B - A = 0 exactly) except that B misses two "yes" of popular.
    a = _write_run(tmp_path / "run_a", {"gqa": _gqa(set(range(100))), "pope": _pope()})
    b = _write_run(tmp_path / "run_b", {"gqa": _gqa(set(range(90)) | set(range(100, 160))), "pope": _pope({100, 102})})
    return a, b


def test_known_accuracy_difference_has_the_expected_interval_and_mcnemar(runs):
    rows = compare_runs(*runs, n_bootstrap=4000, seed=1)
    (gqa,) = [r for r in rows if r["benchmark"] == "gqa"]
    assert (gqa["category"], gqa["n"], gqa["a"], gqa["b"], gqa["diff"]) == ("all", 200, 50.0, 75.0, 25.0)
    # Paired differences d_i in {-1, 0, 1}: mean 0.25, E[d^2] = 70/200, so the standard error of the mean difference
    # is sqrt((0.35 - 0.25^2) / 200) = 3.79 points and the normal-theory 95% interval [17.57, 32.43].
    se = 100 * math.sqrt((70 / 200 - 0.25**2) / 200)
    assert gqa["low"] == pytest.approx(25 - 1.96 * se, abs=1.0) and gqa["high"] == pytest.approx(
        25 + 1.96 * se, abs=1.0
    )
    assert gqa["significant"]
    # Exact McNemar: 2 * P(X <= 10), X ~ Binomial(70, 1/2).
    exact = 2 * sum(Fraction(math.comb(70, k), 2**70) for k in range(11))
    assert gqa["mcnemar_p"] == pytest.approx(float(exact), rel=1e-9) and gqa["mcnemar_p"] < 1e-9


def test_per_category_rows_and_a_difference_that_is_noise(runs):
    rows = {(r["benchmark"], r["category"]): r for r in compare_runs(*runs, n_bootstrap=2000)}
    assert set(rows) >= {("pope", "all"), ("pope", "adversarial"), ("pope", "popular"), ("pope", "random")}
    adversarial = rows[("pope", "adversarial")]
    assert adversarial["diff"] == 0.0 and (adversarial["low"], adversarial["high"]) == (0.0, 0.0)
    assert not adversarial["significant"] and adversarial["mcnemar_p"] == 1.0
    # popular: B says "no" to 2 of the 20 "yes" questions: F1 100 -> 2*18/(2*18+0+2) = 94.74.
    popular = rows[("pope", "popular")]
    assert popular["a"] == 100.0 and popular["b"] == pytest.approx(100 * 36 / 38)
    assert popular["low"] < 0 and popular["high"] == 0.0 and not popular["significant"]  # 2 questions: noise
    # The headline is the mean F1 of the three categories.
    assert rows[("pope", "all")]["b"] == pytest.approx((100 + 100 * 36 / 38 + 100) / 3)
    assert ("gqa", "default") not in rows  # one category: no breakdown


def test_mcnemar_edge_cases():
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)


def test_cli_prints_markdown_and_plots(runs, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "diff.png"
    assert (
        main(["compare", str(runs[0]), str(runs[1]), "--plot", str(plot), "--json", str(tmp_path / "rows.json")]) == 0
    )
    out = capsys.readouterr().out
    assert "A = run_a, B = run_b" in out
    assert "| gqa | all | 200 | 50.00 | 75.00 | **+25.00** |" in out
    assert "| pope | adversarial | 40 | 100.00 | 100.00 | +0.00 | [+0.00, +0.00] | 1 |" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads((tmp_path / "rows.json").read_text())) == 5


def test_plot_without_matplotlib_is_one_error_line(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if the extra were not installed
    assert main(["compare", str(runs[0]), str(runs[1]), "--plot", str(tmp_path / "x.png")]) == 1
    assert capsys.readouterr().err.strip() == "error: --plot needs matplotlib: pip install hub_llava[plot]"


def test_runs_without_common_benchmarks_are_refused(tmp_path, capsys):
    a = _write_run(tmp_path / "a", {"gqa": _gqa({1})})
    b = _write_run(tmp_path / "b", {"pope": _pope()})
    assert main(["compare", str(a), str(b)]) == 1
    assert "have no scored benchmark in common" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path / "nowhere")]) == 1
    assert "is not a `hub-llava eval` output folder" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_statistics_equal_the_scorers_headlines(tmp_path, capsys):
    """On real eval runs (tiny model, bundled samples), compare's recomputed scores are results.json's headlines."""
    from pathlib import Path

    from hub_llava.testing import tiny_llava, tiny_processor
    from hub_llava.token_stream import TokenStream

    processor = tiny_processor()
    for seed in (0, 1):
        tiny_llava(processor.tokenizer, seed=seed).save_pretrained(tmp_path / f"m{seed}")
        processor.save_pretrained(tmp_path / f"m{seed}")
        TokenStream.from_processor(processor).save_pretrained(tmp_path / f"m{seed}")
        samples = Path(__file__).parent.parent / "samples" / "eval"
        assert main(["eval", "--model", str(tmp_path / f"m{seed}"), "--benchmarks", "pope,mme,scienceqa,mmbench",
                     "--data_dir", str(samples), "--output_dir", str(tmp_path / f"run{seed}"), "--max_new_tokens", "3",
                     "--batch_size", "4"]) == 0  # fmt: skip
    rows = {
        (r["benchmark"], r["category"]): r for r in compare_runs(tmp_path / "run0", tmp_path / "run1", n_bootstrap=200)
    }
    for seed, side in ((0, "a"), (1, "b")):
        results = json.loads((tmp_path / f"run{seed}" / "results.json").read_text())["results"]
        for key in ("pope", "mme", "scienceqa", "mmbench"):
            assert rows[(key, "all")][side] == pytest.approx(results[key]["score"], abs=0.01), (key, seed)


@pytest.mark.parametrize("key", ["pope", "mme", "scienceqa", "mmbench"])
def test_statistic_equals_the_scorer_on_mixed_answers(key, tmp_path):
    """Answers right and wrong in a fixed pattern, scored by the real scorer (details.jsonl as `hub-llava eval` writes
    it): compare's statistic on those rows is the scorer's headline."""
    from pathlib import Path

    from hub_llava.eval import registry
    from hub_llava.eval.compare import Paired
    from hub_llava.eval.files import write_jsonl
    from hub_llava.eval.run import score_benchmark

    samples = Path(__file__).parent.parent / "samples" / "eval"
    benchmark = registry.load(key)
    docs = benchmark.helper.load_docs(benchmark, samples)
    texts = {
        "pope": ["Yes", "No", "No"],
        "mme": ["Yes", "Yes", "No"],
        "scienceqa": ["B"],
        "mmbench": ["A", "C", "A"],
    }
    answers = [{"question_id": d["question_id"], "prompt": d["prompt"], "text": texts[key][i % len(texts[key])]}
               for i, d in enumerate(docs)]  # fmt: skip
    write_jsonl(tmp_path / "answers.jsonl", answers)
    result = score_benchmark(benchmark, samples, tmp_path, docs, partial=False)
    rows = [json.loads(line) for line in (tmp_path / "details.jsonl").read_text().splitlines()]
    paired = Paired(key, rows, rows)
    names, a, _ = paired.matrices(paired.units)
    statistic = float(paired.score_of(dict(zip(names, a.sum(0, keepdims=True).T)))[0])
    assert 0 < result["score"] < (2000 if key == "mme" else 100)  # a mixed result, not all right or all wrong
    assert statistic == pytest.approx(result["score"], abs=0.005)
