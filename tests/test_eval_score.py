"""`hub-llava score`: the conformance cases, each benchmark's ground-truth reading, and bad input."""

import json
import shutil
from pathlib import Path

import pytest

from hub_llava.cli import main
from hub_llava.eval.files import write_jsonl
from hub_llava.eval.score import score_file

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
POPE = FIXTURES / "pope"
FORMATS = FIXTURES / "formats"


def _pope_files():
    return {"questions": POPE / "llava_pope_test.jsonl", "annotations": POPE / "coco"}


def test_pope_conformance_llava_v15_13b():
    result, rows = score_file("pope", POPE / "answers_llava-v1.5-13b.jsonl", **_pope_files())
    f1 = {c: round(result["details"][c]["f1"], 2) for c in ("adversarial", "popular", "random")}
    assert f1 == {"adversarial": 84.46, "popular": 86.25, "random": 87.14}
    assert result["score"] == 85.95 and result["n"] == 8910 and len(rows) == 8910
    assert result["details"]["adversarial"]["n"] == 3000 and result["details"]["random"]["n"] == 2910


def test_llava_bench_conformance_llava_v15_7b():
    reviews = sorted((FIXTURES / "llava_bench").glob("reviews_eval*.jsonl"))
    result, _ = score_file("llava_bench", reviews=reviews)
    assert result["details"]["relative_per_run"] == [64.7, 65.3, 66.3]
    assert result["score"] == 65.4 and result["n"] == 60


def test_score_cli_prints_one_json_object(capsys, tmp_path):
    output = tmp_path / "pope.json"
    args = [
        "score",
        "pope",
        "--answers",
        str(POPE / "answers_llava-v1.5-13b.jsonl"),
        "--questions",
        str(POPE / "llava_pope_test.jsonl"),
        "--annotations",
        str(POPE / "coco"),
        "--output",
        str(output),
    ]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["score"] == 85.95 and printed["name"] == "POPE" and printed["metric"] == "f1"
    assert json.loads(output.read_text()) == printed


def _subset_answers(tmp_path, drop=(), duplicate=None, extra=None):
    rows = [json.loads(line) for line in open(POPE / "answers_llava-v1.5-13b.jsonl")]
    rows = [r for r in rows if r["question_id"] not in drop]
    if duplicate is not None:
        rows.append(dict(next(r for r in rows if r["question_id"] == duplicate)))
    if extra is not None:
        rows.append({"question_id": extra, "prompt": "?", "text": "Yes"})
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, rows)
    return path


def test_missing_answers_are_an_error_or_counted(tmp_path):
    path = _subset_answers(tmp_path, drop={1, 2})
    with pytest.raises(ValueError, match="2 of 8910 questions have no answer"):
        score_file("pope", path, **_pope_files())
    result, _ = score_file("pope", path, missing="wrong", **_pope_files())
    assert result["details"]["missing"] == 2 and result["n"] == 8910
    skipped, _ = score_file("pope", path, missing="skip", **_pope_files())
    assert skipped["n"] == 8908 and skipped["details"]["missing"] == 2
    assert skipped["details"]["adversarial"]["n"] == 2998


def test_duplicate_and_unknown_ids_are_errors(tmp_path):
    with pytest.raises(ValueError, match="question id '3' is answered twice"):
        score_file("pope", _subset_answers(tmp_path, duplicate=3), **_pope_files())
    with pytest.raises(ValueError, match=r"ground truth does not know \(e.g. \['99999999'\]; its ids look like"):
        score_file("pope", _subset_answers(tmp_path, extra=99999999), **_pope_files())


def test_another_benchmarks_answers_are_named_as_such_not_as_duplicates(tmp_path):
    """MME's answer file (two questions per image share an id) scored as POPE: the ids do not look like POPE's, which
    is what is wrong, rather than "answered twice"."""
    mme_answers = tmp_path / "mme_answers.jsonl"
    rows = [{"question_id": "code_reasoning/0020.png", "prompt": f"Q{i}", "text": "Yes"} for i in range(2)]
    mme_answers.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ValueError, match=r"2 of 2 answers have question ids .* \(e.g. \['code_reasoning/0020.png'"):
        score_file("pope", mme_answers, **_pope_files())


def test_pope_annotation_file_of_another_version_is_an_error(tmp_path):
    annotations = tmp_path / "coco"
    shutil.copytree(POPE / "coco", annotations)
    lines = (annotations / "coco_pope_random.json").read_text().splitlines()
    # A later POPE release: same count, different order -> labels would land on the wrong questions.
    (annotations / "coco_pope_random.json").write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    files = {"questions": POPE / "llava_pope_test.jsonl", "annotations": annotations}
    with pytest.raises(ValueError, match=r"coco_pope_random.json line 1 .* another POPE version"):
        score_file("pope", POPE / "answers_llava-v1.5-13b.jsonl", **files)
    (annotations / "coco_pope_random.json").write_text("\n".join(lines[:-5]) + "\n")
    with pytest.raises(ValueError, match=r"has 2905 annotations but the question file has 2910 'random' questions"):
        score_file("pope", POPE / "answers_llava-v1.5-13b.jsonl", **files)


def _mme_questions():
    data = json.loads((FORMATS / "mme_llava_mme.jsonl_examples.json").read_text())
    return data


def _mme_answers(tmp_path, texts):
    rows = [
        {
            "question_id": q["question_id"],
            "prompt": q["text"],
            "text": t,
            "answer_id": str(i),
            "model_id": "m",
            "metadata": {},
        }
        for i, (q, t) in enumerate(zip(_mme_questions(), texts))
    ]
    write_jsonl(tmp_path / "mme_answers.jsonl", rows)
    return tmp_path / "mme_answers.jsonl"


def test_mme_both_ground_truth_layouts_give_the_same_score(tmp_path):
    # Release layout: <task>/<image>.txt with question<TAB>answer (code_reasoning: files beside the images;
    # artwork: images/ + questions_answers_YN/). Template layout: Your_Results/<task>.txt image<TAB>question<TAB>answer.
    release = tmp_path / "MME_Benchmark_release_version"
    (release / "code_reasoning").mkdir(parents=True)
    (release / "code_reasoning" / "0020.txt").write_text(
        "Is a python code shown in the picture? Please answer yes or no.\tYes\n"
        "Is a c++ code shown in the picture? Please answer yes or no.\tNo\n"
    )
    (release / "artwork" / "images").mkdir(parents=True)
    (release / "artwork" / "questions_answers_YN").mkdir()
    (release / "artwork" / "questions_answers_YN" / "14777.txt").write_text(
        "Does this artwork belong to the type of religious? Please answer yes or no.\tYes\n"
        "Does this artwork belong to the type of historical? Please answer yes or no.\tNo\n"
    )
    templates = tmp_path / "eval_tool" / "Your_Results"
    templates.mkdir(parents=True)
    (templates / "code_reasoning.txt").write_text(
        "0020.png\tIs a python code shown in the picture? Please answer yes or no.\tYes\n"
        "0020.png\tIs a c++ code shown in the picture? Please answer yes or no.\tNo\n"
    )
    (templates / "artwork.txt").write_text(
        "14777.jpg\tDoes this artwork belong to the type of religious? Please answer yes or no.\tYes\n"
        "14777.jpg\tDoes this artwork belong to the type of historical? Please answer yes or no.\tNo\n"
    )
    answers = _mme_answers(tmp_path, ["Yes", "Yes", "Yes", "No"])
    by_release, rows = score_file("mme", answers, ground_truth=release)
    by_template, _ = score_file("mme", answers, ground_truth=templates)
    assert by_release == by_template
    assert by_release["details"]["tasks"]["code_reasoning"] == {
        "acc": 50.0,
        "acc_plus": 0.0,
        "score": 50.0,
        "other": 0,
        "images": 1,
    }
    assert by_release["details"]["tasks"]["artwork"]["score"] == 200.0
    assert by_release["score"] == 200.0 and by_release["details"]["cognition"] == 50.0
    assert len(rows) == 4
    unknown = _mme_answers(tmp_path, ["Yes"] * 4)
    text = unknown.read_text().replace("python", "rust")
    unknown.write_text(text)
    with pytest.raises(ValueError, match="matches no ground-truth question"):
        score_file("mme", unknown, ground_truth=release)


def test_scienceqa_from_llava_file_and_from_problems(tmp_path):
    questions = FORMATS / "scienceqa_llava_test_CQM-A.json_first2.json"
    write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"question_id": "4", "prompt": "Which figure...", "text": "A"},  # wrong (answer B), no image
            {"question_id": "5", "prompt": "<image>\nContext...", "text": "B. how steady"},  # right, image
        ],
    )
    result, rows = score_file("scienceqa", tmp_path / "a.jsonl", questions=questions)
    assert result["score"] == 100.0 and result["n"] == 1
    assert result["details"]["accuracy"] == 50.0
    problems = {
        "4": {"answer": 1, "choices": ["chiasmus", "apostrophe"], "image": None},
        "5": {"answer": 1, "choices": ["a", "b", "c"], "image": "image.png"},
    }
    (tmp_path / "problems.json").write_text(json.dumps(problems))
    (tmp_path / "pid_splits.json").write_text(json.dumps({"test": ["4", "5"]}))
    again, _ = score_file(
        "scienceqa", tmp_path / "a.jsonl", problems=tmp_path / "problems.json", pid_splits=tmp_path / "pid_splits.json"
    )
    assert again["score"] == result["score"] and again["details"]["accuracy"] == 50.0


def test_gqa_and_seed_from_official_files(tmp_path):
    gqa_questions = FORMATS / "gqa_testdev_balanced_questions.json_2entries.json"
    write_jsonl(
        tmp_path / "gqa.jsonl",
        [{"question_id": "201307251", "text": "No."}, {"question_id": "201640614", "text": "Man"}],
    )
    result, _ = score_file("gqa", tmp_path / "gqa.jsonl", questions=gqa_questions)
    assert result["score"] == 50.0 and result["details"]["binary"] == 100.0 and result["details"]["open"] == 0.0
    seed = json.loads((FORMATS / "seed_bench_examples.json").read_text())["SEED-Bench.json"]
    (tmp_path / "SEED-Bench.json").write_text(json.dumps(seed))
    write_jsonl(
        tmp_path / "seed.jsonl", [{"question_id": 101669, "text": "A"}, {"question_id": "v1738", "text": "B."}]
    )
    result, _ = score_file("seed", tmp_path / "seed.jsonl", questions=tmp_path / "SEED-Bench.json")
    assert result["score"] == 50.0
    assert result["details"]["data_types"] == {
        "image": {"accuracy": 100.0, "n": 1},
        "video": {"accuracy": 0.0, "n": 1},
    }
    assert result["details"]["question_types"]["Instances Counting"]["accuracy"] == 100.0


def test_textvqa_keys_by_image_and_question(tmp_path):
    heads = json.loads((FORMATS / "textvqa_llava_textvqa_val_v051_ocr.jsonl_head.json").read_text())
    data = [
        {
            "image_id": h["question_id"],
            "question_id": i,
            "question": h["text"].split("\n")[0],
            "answers": ["dakota"] * 10,
        }
        for i, h in enumerate(heads)
    ]
    (tmp_path / "TextVQA_0.5.1_val.json").write_text(json.dumps({"data": data}))
    write_jsonl(
        tmp_path / "t.jsonl",
        [{"question_id": h["question_id"], "prompt": h["text"], "text": "Dakota."} for h in heads],
    )
    result, rows = score_file("textvqa", tmp_path / "t.jsonl", annotations=tmp_path / "TextVQA_0.5.1_val.json")
    assert result["score"] == 100.0 and result["n"] == 3 and rows[0]["prediction"] == "dakota"


def test_mmbench_circular_from_tsv(tmp_path):
    header = "index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage\n"
    lines = [
        "0\tWhat?\tnan\tcat\tdog\t\t\tA\tc\tx",
        "1000000\tWhat?\tnan\tdog\tcat\t\t\tB\tc\tx",
        "1\tWho?\tA hint\tme\tyou\t\t\tA\tc\tx",
        "1000001\tWho?\tA hint\tyou\tme\t\t\tB\tc\tx",
    ]
    (tmp_path / "mmbench_dev.tsv").write_text(header + "\n".join(lines) + "\n")
    write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"question_id": 0, "text": "A"},
            {"question_id": 1000000, "text": "cat"},
            {"question_id": 1, "text": "A"},
            {"question_id": 1000001, "text": "A"},
        ],
    )
    result, _ = score_file("mmbench", tmp_path / "m.jsonl", questions=tmp_path / "mmbench_dev.tsv")
    assert result["score"] == 50.0 and result["details"]["vanilla"] == 75.0 and result["n"] == 2


def test_mmmu_official_parsing_with_seed(tmp_path):
    record = json.loads((FORMATS / "mmmu_validation_Accounting_1.json").read_text())["record"]
    records = [
        {k: record[k] for k in ("id", "question", "options", "question_type", "answer")},
        {"id": "validation_Math_1", "question": "x?", "options": "[]", "question_type": "open", "answer": "3.14"},
    ]
    write_jsonl(tmp_path / "mmmu.jsonl", records)
    write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"question_id": "validation_Accounting_1", "text": "(B) $7"},
            {"question_id": "validation_Math_1", "text": "so x is 3.140"},
        ],
    )
    result, rows = score_file("mmmu", tmp_path / "a.jsonl", questions=tmp_path / "mmmu.jsonl")
    assert result["score"] == 100.0 and rows[0]["prediction"] == "B"


def test_vqav2_val_uses_the_upload_conversion_then_the_official_rule(tmp_path):
    annotations = {
        "annotations": [
            {
                "question_id": 1,
                "answer_type": "number",
                "answers": [{"answer": "2", "answer_id": i} for i in range(10)],
            },
            {
                "question_id": 2,
                "answer_type": "yes/no",
                "answers": [{"answer": "yes", "answer_id": i} for i in range(10)],
            },
        ]
    }
    (tmp_path / "ann.json").write_text(json.dumps(annotations))
    write_jsonl(tmp_path / "a.jsonl", [{"question_id": 1, "text": "Two"}, {"question_id": 2, "text": "No"}])
    result, _ = score_file("vqav2", tmp_path / "a.jsonl", annotations=tmp_path / "ann.json")
    # "Two" -> "2" by LLaVA's EvalAI conversion before upload, so it matches even though the answers are identical.
    assert result["score"] == 50.0
    assert result["details"]["answer_types"] == {
        "number": {"accuracy": 100.0, "n": 1},
        "yes/no": {"accuracy": 0.0, "n": 1},
    }


def test_answer_file_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question_id": 1, "text": "Yes"}\n{not json}\n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2: not valid JSON"):
        score_file("pope", path, **_pope_files())
