"""MM-Vet scoring: grade files in the official grader's shape and ours, with totals worked out by hand here.

The official evaluator (yuweihao/MM-Vet `mm-vet_evaluator.py`): per run, total = sum of grades / items x 100, a
capability = sum over its items / its item count x 100, a capability integration (an item's exact capability set)
likewise; reported = mean over runs rounded to 1 decimal, std = population std of the per-run totals.
"""

import json

import pytest

from hub_llava.cli import main
from hub_llava.eval.benchmarks.mm_vet import read_grade_runs
from hub_llava.eval.files import write_jsonl
from hub_llava.eval.metrics.mm_vet import parse_grade
from hub_llava.eval.score import score_file

# 25 items: v1_0..v1_9 rec; v1_10..v1_19 ocr + math; v1_20..v1_24 know + rec (listed in that order on purpose).
CAPABILITIES = {f"v1_{i}": ["rec"] for i in range(10)}
CAPABILITIES.update({f"v1_{i}": ["ocr", "math"] for i in range(10, 20)})
CAPABILITIES.update({f"v1_{i}": ["know", "rec"] for i in range(20, 25)})


def _grades(ones: list[int], partial: dict[int, float]) -> list[float]:
    return [1.0 if i in ones else partial.get(i, 0.0) for i in range(25)]


# Three runs shaped like LLaVA-1.5-7B's (31.2 / 30.8 / 31.2 -> 31.1):
RUNS = [
    _grades(list(range(7)), {10: 0.8}),  # 7 x 1.0 + 0.8 = 7.8 -> 7.8 / 25 = 31.2
    _grades(list(range(7)), {10: 0.7}),  # 7.7 / 25 = 30.8
    _grades([*range(6), 20], {10: 0.8}),  # 6 + 1 + 0.8 = 7.8 -> 31.2
]


def _official(path, runs):
    """A grade file as the official grader writes it: per item, one list entry per run."""
    data = {
        f"v1_{i}": {
            "model": ["gpt-4-0613"] * len(runs),
            "content": [str(run[i]) for run in runs],
            "score": [run[i] for run in runs],
        }
        for i in range(25)
    }
    path.write_text(json.dumps(data, indent=4))
    return path


@pytest.fixture
def questions(tmp_path):
    path = tmp_path / "mm-vet.json"
    truth = {key: {"question": f"Q{key}", "answer": "A", "capability": caps} for key, caps in CAPABILITIES.items()}
    path.write_text(json.dumps(truth))
    return path


def test_three_runs_official_file(tmp_path, questions):
    path = _official(tmp_path / "llava-v1.5-7b_gpt-4-grade-3runs.json", RUNS)
    result, _ = score_file("mm_vet", reviews=[path], questions=questions)
    # (31.2 + 30.8 + 31.2) / 3 = 31.0667 -> 31.1: the mean of the per-run totals, then rounded.
    assert result["score"] == 31.1 and result["n"] == 25 and result["metric"] == "gpt_score"
    details = result["details"]
    assert details["runs"] == [31.2, 30.8, 31.2] and details["num_runs"] == 3
    # Population std: deviations +0.1333, -0.2667, +0.1333 -> sqrt(0.1067 / 3) = 0.189 -> 0.2.
    assert details["std"] == 0.2
    # rec (15 items): 7, 7, 7 right -> 46.67. ocr = math (10 items): 0.8, 0.7, 0.8 -> 8.0, 7.0, 8.0 -> 7.67.
    # know (5 items): 0, 0, 1 -> 0, 0, 20 -> 6.67. Columns most frequent first (ocr before math: seen first).
    assert details["capabilities"] == {"rec": 46.7, "ocr": 7.7, "math": 7.7, "know": 6.7}
    assert list(details["capabilities"]) == ["rec", "ocr", "math", "know"]
    # Integrations: rec alone (10 items): 7, 7, 6 -> 70, 70, 60 -> 66.67; ocr_math as ocr; rec_know as know.
    assert details["capability_integrations"] == {"rec": 66.7, "ocr_math": 7.7, "rec_know": 6.7}
    assert details["files"] == {str(path): 3} and details["missing"] == 0


def test_one_run_official_file_and_cli(tmp_path, questions, capsys):
    run = _grades(list(range(9)), {10: 0.5, 20: 0.5})  # 9 + 0.5 + 0.5 = 10 -> 40.0
    path = _official(tmp_path / "llava-v1.5-13b_gpt-4-grade-1runs.json", [run])
    assert main(["score", "mm_vet", "--reviews", str(path), "--questions", str(questions)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["score"] == 40.0 and printed["details"]["runs"] == [40.0] and printed["details"]["std"] == 0.0
    # rec: 9 (v1_0..v1_8) + 0.5 (v1_20) = 9.5 / 15 = 63.33; ocr = math: 0.5 / 10 = 5.0; know 0.5 / 5 = 10.0.
    assert printed["details"]["capabilities"] == {"rec": 63.3, "ocr": 5.0, "math": 5.0, "know": 10.0}
    # Without mm-vet.json: the total over the graded items only (all 25 here), no capabilities.
    assert main(["score", "mm_vet", "--reviews", str(path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["score"] == 40.0 and printed["details"]["capabilities"] == {}


def test_our_jsonl_runs_score_as_the_official_file(tmp_path, questions):
    paths = []
    for number, run in enumerate(RUNS, 1):
        paths.append(tmp_path / f"grades_run{number}.jsonl")
        write_jsonl(paths[-1], [{"question_id": f"v1_{i}", "score": g, "parsed": True} for i, g in enumerate(run)])
    ours, _ = score_file("mm_vet", reviews=paths, questions=questions)
    official, _ = score_file("mm_vet", reviews=[_official(tmp_path / "g.json", RUNS)], questions=questions)
    assert ours["score"] == official["score"] == 31.1
    assert {k: v for k, v in ours["details"].items() if k != "files"} == {
        k: v for k, v in official["details"].items() if k != "files"
    }
    # A 2-run official file and one of our runs: three runs again.
    mixed, _ = score_file("mm_vet", reviews=[_official(tmp_path / "g2.json", RUNS[:2]), paths[2]], questions=questions)
    assert mixed["details"]["runs"] == [31.2, 30.8, 31.2] and mixed["score"] == 31.1


def test_per_question_rows_average_the_runs(tmp_path, questions):
    answers = tmp_path / "answers.jsonl"
    write_jsonl(
        answers, [{"question_id": 10, "prompt": "Q", "text": "x = 2"}, {"question_id": 0, "prompt": "Q", "text": "y"}]
    )
    _, rows = score_file("mm_vet", answers, reviews=[_official(tmp_path / "g.json", RUNS)], questions=questions)
    assert [(r["question_id"], r["prediction"], r["target"]) for r in rows] == [(10, "x = 2", "A"), (0, "y", "A")]
    assert rows[0]["score"] == pytest.approx((0.8 + 0.7 + 0.8) / 3) and rows[1]["score"] == 1.0


def test_missing_items(tmp_path, questions):
    run = {f"v1_{i}": 1.0 for i in range(20)}  # v1_20..v1_24 (know + rec) not graded
    path = tmp_path / "grades_run1.jsonl"
    write_jsonl(path, [{"question_id": key, "score": grade} for key, grade in run.items()])
    with pytest.raises(ValueError, match=r"5 of 25 MM-Vet items have no grade \(e.g. \['v1_20'"):
        score_file("mm_vet", reviews=[path], questions=questions)
    wrong, _ = score_file("mm_vet", reviews=[path], questions=questions, missing="wrong")
    assert wrong["score"] == 80.0 and wrong["n"] == 25  # 20 / 25: the ungraded count 0
    assert wrong["details"]["capabilities"]["rec"] == round(10 / 15 * 100, 1) and wrong["details"]["missing"] == 5
    skip, _ = score_file("mm_vet", reviews=[path], questions=questions, missing="skip")
    assert skip["score"] == 100.0 and skip["n"] == 20 and "know" not in skip["details"]["capabilities"]


def test_bad_grade_files_are_named(tmp_path, questions):
    data = json.loads(_official(tmp_path / "g.json", RUNS).read_text())
    data["v1_3"]["score"] = data["v1_3"]["score"][:2]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"short.json: v1_3 has 2 runs, v1_0 has 3"):
        read_grade_runs(tmp_path / "short.json")
    (tmp_path / "flat.json").write_text(json.dumps({"v1_0": {"score": 0.5}}))
    with pytest.raises(ValueError, match=r"flat.json: v1_0 is not an official grade entry"):
        read_grade_runs(tmp_path / "flat.json")
    write_jsonl(tmp_path / "high.jsonl", [{"question_id": "v1_0", "score": 0.5}, {"question_id": "v1_1", "score": 5}])
    with pytest.raises(ValueError, match=r"high.jsonl:2: the grade 5 is not a number in \[0, 1\]"):
        read_grade_runs(tmp_path / "high.jsonl")
    write_jsonl(tmp_path / "r1.jsonl", [{"question_id": "v1_0", "score": 0.5}, {"question_id": "v1_1", "score": 1}])
    write_jsonl(tmp_path / "r2.jsonl", [{"question_id": "v1_0", "score": 0.5}])
    with pytest.raises(
        ValueError, match=r"r2.jsonl: run 1 grades 1 items, the first run 2; they differ on \['v1_1'\]"
    ):
        score_file("mm_vet", reviews=[tmp_path / "r1.jsonl", tmp_path / "r2.jsonl"])
    write_jsonl(tmp_path / "other.jsonl", [{"question_id": "v1_99", "score": 0.5}])
    with pytest.raises(ValueError, match=r"grades for items not in .*mm-vet.json: \['v1_99'\]"):
        score_file("mm_vet", reviews=[tmp_path / "other.jsonl"], questions=questions)


@pytest.mark.parametrize(
    ("reply", "grade"),
    [("0.5", 0.5), ("1.0", 1.0), ("0.0", 0.0), ("0.5\n", 0.5), ("0.3 because", 0.3), (" 0.5", None), ("0.5.", None),
     ("1.1", None), ("-0.1", None), ("nan", None), ("Correctness: 0.5", None), ("", None)],
)  # fmt: skip
def test_parse_grade_reads_the_first_space_separated_field(reply, grade):
    assert parse_grade(reply) == grade
