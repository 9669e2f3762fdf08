"""Benchmarks read from the Hub (lmms-eval's lmms-lab datasets): staged here as local parquet repos in those datasets'
schemas (the columns lmms-eval's task files read), loaded by `load_dataset("lmms-lab/<name>")` from the working
directory as users' calls would read the Hub (DESIGN §1), and written in LLaVA's layout: the question ids and prompts
must equal LLaVA's own question files (real lines from tests/fixtures/eval) for the same questions."""

import base64
import io
import json
from pathlib import Path

import pytest
import yaml
from datasets import Dataset, Features, Image, List, Value
from PIL import Image as PILImage

from hub_llava.cli import main
from hub_llava.eval import registry
from hub_llava.eval.benchmarks.mmbench import read_tsv
from hub_llava.eval.files import read_jsonl
from hub_llava.eval.hub_source import materialise
from hub_llava.testing import tiny_llava, tiny_processor
from hub_llava.token_stream import TokenStream

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
FORMATS = FIXTURES / "formats"
SAMPLES = Path(__file__).parent.parent / "samples" / "eval"


def _png(colour=(200, 30, 30), size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def stage(root: Path, repo: str, tables: dict) -> None:
    """Writes a Hub dataset repo as the Hub holds it: <config>/<split>-*.parquet + README.md `configs:`."""
    configs = []
    for (config, split), (rows, features) in tables.items():
        path = f"{config}/{split}-00000-of-00001.parquet"
        (root / repo / config).mkdir(parents=True, exist_ok=True)
        Dataset.from_list(rows, features=Features(features)).to_parquet(str(root / repo / path))
        configs.append({"config_name": config, "data_files": [{"split": split, "path": path}]})
    card = "---\n" + yaml.safe_dump({"configs": configs}) + "---\n"
    (root / repo / "README.md").write_text(card)


def _json(name):
    return json.loads((FORMATS / name).read_text())


POPE_FEATURES = {"id": Value("string"), "question_id": Value("string"), "question": Value("string"),
                 "answer": Value("string"), "image_source": Value("string"), "image": Image(),
                 "category": Value("string")}  # fmt: skip


def _pope_rows(per_category=4):
    """lmms-lab/POPE rows for the first questions of each category, from POPE's own annotation files."""
    rows = []
    for category in ("adversarial", "popular", "random"):
        annotations = read_jsonl(FIXTURES / "pope" / "coco" / f"coco_pope_{category}.json")[:per_category]
        for a in annotations:
            rows.append({"id": str(len(rows)), "question_id": str(a["question_id"]), "question": a["text"],
                         "answer": a["label"], "image_source": a["image"].removesuffix(".jpg"),
                         "image": {"bytes": _png((int(a["image"][-7:-4]) % 255, 90, 160)), "path": None},
                         "category": category})  # fmt: skip
    return rows


def _llava_pope_lines(rows):
    """LLaVA's own question-file lines (llava_pope_test.jsonl) for the same questions."""
    offsets = {"adversarial": 0, "popular": 20000000, "random": 10000000}
    lines = {q["question_id"]: q for q in read_jsonl(FIXTURES / "pope" / "llava_pope_test.jsonl")}
    return [lines[offsets[r["category"]] + int(r["question_id"])] for r in rows]


def test_pope_from_the_hub_gives_llavas_question_ids_and_prompts(tmp_path, monkeypatch):
    rows = _pope_rows()
    stage(tmp_path, "lmms-lab/POPE", {("default", "test"): (rows, POPE_FEATURES)})
    monkeypatch.chdir(tmp_path)  # load_dataset("lmms-lab/POPE") reads this folder, as it would the Hub
    benchmark = registry.load("pope")
    root = materialise(benchmark, tmp_path / "out" / "hub_data")
    written = read_jsonl(root / "pope" / "llava_pope_test.jsonl")
    assert written == _llava_pope_lines(rows)
    docs = benchmark.helper.load_docs(benchmark, root)
    assert [d["question_id"] for d in docs[:5]] == [1, 2, 3, 4, 20000001]
    assert (
        docs[0]["prompt"] == "Is there a snowboard in the image?\nAnswer the question using a single word or phrase."
    )
    assert docs[0]["image"].read_bytes() == rows[0]["image"]["bytes"]
    # The scorer's checks pass: labels align with the questions by position, as POPE's files do.
    labels = benchmark.helper.load_labels(written, root / "pope" / "coco")
    assert [labels[str(q["question_id"])] for q in written] == [r["answer"] for r in rows]


def test_a_missing_column_is_named(tmp_path, monkeypatch, capsys):
    rows = [{k: v for k, v in r.items() if k != "image_source"} for r in _pope_rows(1)]
    features = {k: v for k, v in POPE_FEATURES.items() if k != "image_source"}
    stage(tmp_path, "lmms-lab/POPE", {("default", "test"): (rows, features)})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"lmms-lab/POPE \(config default, split test\) has no column 'image_source'"):
        materialise(registry.load("pope"), tmp_path / "hub_data")
    # Through the CLI: one error line, before any model is loaded.
    assert (
        main(
            [
                "eval",
                "--model",
                str(tmp_path / "no_model_needed"),
                "--benchmarks",
                "pope",
                "--output_dir",
                str(tmp_path / "out"),
                "--backend",
                "openai",
                "--base_url",
                "http://127.0.0.1:9/v1",
            ]
        )
        == 1
    )
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert line.startswith("error: lmms-lab/POPE (config default, split test) has no column 'image_source', which")


def test_mme_from_the_hub(tmp_path, monkeypatch):
    llava = _json("mme_llava_mme.jsonl_examples.json")  # LLaVA's llava_mme.jsonl lines
    answers = ["Yes", "No", "Yes", "No"]
    rows = [
        {"question_id": f"{q['category']}/{q['question_id'].split('/')[-1]}", "image": {"bytes": _png(), "path": None},
         "question": q["text"].split("\n")[0] + " Please answer yes or no.", "answer": a, "category": q["category"]}
        for q, a in zip(llava, answers)
    ]  # fmt: skip
    rows[1]["question"] = rows[1]["question"].replace(" Please", "  Please")  # some MME files have two spaces
    features = {"question_id": Value("string"), "image": Image(), "question": Value("string"),
                "answer": Value("string"), "category": Value("string")}  # fmt: skip
    stage(tmp_path, "lmms-lab/MME", {("default", "test"): (rows, features)})
    monkeypatch.chdir(tmp_path)
    benchmark = registry.load("mme")
    root = materialise(benchmark, tmp_path / "hub_data")
    assert read_jsonl(root / "MME" / "llava_mme.jsonl") == llava  # ids with images/ where the release has it
    truth = benchmark.helper.load_ground_truth(root / "MME" / "MME_Benchmark_release_version")
    assert (
        truth[("artwork", "14777", "Does this artwork belong to the type of religious? Please answer yes or no.")]
        == "Yes"
    )
    assert len(truth) == 4
    docs = benchmark.helper.load_docs(benchmark, root)
    assert docs[2]["image"] == root / "MME" / "MME_Benchmark_release_version" / "artwork" / "images" / "14777.jpg"
    assert docs[2]["image"].is_file()


def test_gqa_from_the_hub_joins_images_on_image_id(tmp_path, monkeypatch):
    truth = _json("gqa_testdev_balanced_questions.json_2entries.json")  # the official questions file
    llava = _json("gqa_llava_gqa_testdev_balanced.jsonl_head.json")[:2]  # LLaVA's lines for them
    questions = [{"id": qid, **{k: e[k] for k in ("imageId", "question", "answer", "isBalanced", "types")}}
                 for qid, e in truth.items()]  # fmt: skip
    features = {"id": Value("string"), "imageId": Value("string"), "question": Value("string"),
                "answer": Value("string"), "isBalanced": Value("bool"),
                "types": {"detailed": Value("string"), "semantic": Value("string"), "structural": Value("string")}}  # fmt: skip
    images = [{"id": e["imageId"], "image": {"bytes": _png(), "path": None}} for e in truth.values()]
    stage(tmp_path, "lmms-lab/GQA", {
        ("testdev_balanced_instructions", "testdev"): (questions, features),
        ("testdev_balanced_images", "testdev"): (images, {"id": Value("string"), "image": Image()}),
    })  # fmt: skip
    monkeypatch.chdir(tmp_path)
    root = materialise(registry.load("gqa"), tmp_path / "hub_data")
    assert read_jsonl(root / "gqa" / "llava_gqa_testdev_balanced.jsonl") == llava
    written = json.loads((root / "gqa" / "data" / "testdev_balanced_questions.json").read_text())
    assert {qid: (e["answer"], e["types"]["structural"]) for qid, e in written.items()} == {
        qid: (e["answer"], e["types"]["structural"]) for qid, e in truth.items()
    }
    assert (root / "gqa" / "data" / "images" / "n161313.jpg").is_file()


def test_seed_from_the_hub(tmp_path, monkeypatch):
    seed = _json("seed_bench_examples.json")
    entries = seed["SEED-Bench.json"]["questions"]
    rows = [{**e, "image": [{"bytes": _png((i, 0, 0)), "path": None} for i in range(1 if e["data_type"] == "image" else 3)]}
            for e in entries]  # fmt: skip
    features = {k: Value("int64" if k == "question_type_id" else "string") for k in entries[0]}
    stage(tmp_path, "lmms-lab/SEED-Bench", {("default", "test"): (rows, {**features, "image": List(Image())})})
    monkeypatch.chdir(tmp_path)
    root = materialise(registry.load("seed"), tmp_path / "hub_data")
    image_line, video_line = read_jsonl(root / "seed_bench" / "llava-seed-bench.jsonl")
    assert image_line == seed["llava-seed-bench.jsonl_line_as_quoted"]  # LLaVA's line for question 101669
    assert video_line["question_id"] == "v1738" and video_line["category"] == "Action Recognition"
    middle = PILImage.open(root / "seed_bench" / video_line["image"]).getpixel((0, 0))
    assert middle == (1, 0, 0)  # the middle of the 3 frames
    truth = json.loads((root / "seed_bench" / "SEED-Bench.json").read_text())
    assert truth["questions"] == entries and truth["question_type"] == seed["SEED-Bench.json"]["question_type"]


def test_scienceqa_from_the_hub_builds_llavas_cqm_a_prompt(tmp_path, monkeypatch):
    record = _json("scienceqa_llava_test_CQM-A.json_first2.json")[1]  # LLaVA's record of problem 5 (with image)
    human = record["conversations"][0]["value"].removeprefix("<image>\n")
    lines = human.split("\n")
    options = [line for line in lines if line[:3] in ("A. ", "B. ", "C. ", "D. ", "E. ")]
    question = lines[-len(options) - 1]
    hint = "\n".join(lines[: -len(options) - 1]).removeprefix("Context: ")
    row = {"image": {"bytes": _png(), "path": None}, "question": question, "hint": hint,
           "choices": [o[3:] for o in options], "answer": "ABCDE".index(record["conversations"][1]["value"])}  # fmt: skip
    features = {"image": Image(), "question": Value("string"), "hint": Value("string"),
                "choices": List(Value("string")), "answer": Value("int64")}  # fmt: skip
    stage(tmp_path, "lmms-lab/ScienceQA", {("ScienceQA-IMG", "test"): ([row], features)})
    monkeypatch.chdir(tmp_path)
    root = materialise(registry.load("scienceqa"), tmp_path / "hub_data")
    (written,) = json.loads((root / "scienceqa" / "llava_test_CQM-A.json").read_text())
    assert written["conversations"] == record["conversations"]  # the same prompt and answer as LLaVA's record
    assert written["id"] == "0" and written["image"] == "0/image.png"  # no problem id on the Hub: by position


def _mmbench_rows():
    """The bundled MMBench TSV's rows as lmms-lab/MMBench holds them (the image as an image, absent fields null)."""
    rows = []
    for row in read_tsv(SAMPLES / "mmbench" / "mmbench_dev_20230712.tsv"):
        hub = {k: (None if v == "nan" else v) for k, v in row.items() if k not in ("image", "l2-category", "index")}
        rows.append({**hub, "index": int(row["index"]), "L2-category": row["l2-category"],
                     "image": {"bytes": base64.b64decode(row["image"]), "path": None}})  # fmt: skip
    features = {k: Value("string") for k in rows[0] if k not in ("index", "image")}
    return rows, {**features, "index": Value("int64"), "image": Image()}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    processor = tiny_processor()
    tiny_llava(processor.tokenizer).save_pretrained(folder)
    processor.save_pretrained(folder)
    TokenStream.from_processor(processor).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_eval_from_the_hub_scores_as_from_llavas_files(checkpoint, tmp_path, monkeypatch):
    """`hub-llava eval` without --data_dir: POPE and MMBench read from the (staged) Hub; the answers and scores equal
    a run on LLaVA's own files for the same questions (POPE: LLaVA's question file + POPE's annotations)."""
    rows = _pope_rows(4)
    stage(tmp_path, "lmms-lab/POPE", {("default", "test"): (rows, POPE_FEATURES)})
    mmbench, mmbench_features = _mmbench_rows()
    stage(tmp_path, "lmms-lab/MMBench", {("en", "dev"): (mmbench, mmbench_features)})
    # LLaVA's layout for the same questions: its question-file lines, POPE's annotation lines, the same images.
    files = tmp_path / "llava" / "pope"
    (files / "coco").mkdir(parents=True)
    (files / "llava_pope_test.jsonl").write_text("".join(json.dumps(q) + "\n" for q in _llava_pope_lines(rows)))
    for category in ("adversarial", "popular", "random"):
        lines = (FIXTURES / "pope" / "coco" / f"coco_pope_{category}.json").read_text().splitlines()[:4]
        (files / "coco" / f"coco_pope_{category}.json").write_text("\n".join(lines) + "\n")
    for row in rows:
        (files / "val2014").mkdir(exist_ok=True)
        (files / "val2014" / f"{row['image_source']}.jpg").write_bytes(row["image"]["bytes"])
    (tmp_path / "llava" / "mmbench").symlink_to(SAMPLES / "mmbench")
    monkeypatch.chdir(tmp_path)
    common = ["eval", "--model", str(checkpoint), "--benchmarks", "pope,mmbench", "--max_new_tokens", "4",
              "--batch_size", "4"]  # fmt: skip
    assert main([*common, "--output_dir", str(tmp_path / "hub_run")]) == 0
    assert main([*common, "--output_dir", str(tmp_path / "files_run"), "--data_dir", str(tmp_path / "llava")]) == 0
    for key in ("pope", "mmbench"):
        hub = read_jsonl(tmp_path / "hub_run" / key / "answers.jsonl")
        llava = read_jsonl(tmp_path / "files_run" / key / "answers.jsonl")
        assert [(a["question_id"], a["prompt"], a["text"]) for a in hub] == [
            (a["question_id"], a["prompt"], a["text"]) for a in llava
        ]
    results = [
        json.loads((tmp_path / run / "results.json").read_text())["results"] for run in ("hub_run", "files_run")
    ]
    assert results[0] == results[1] and results[0]["pope"]["n"] == 12


def test_vizwiz_from_the_hub(tmp_path, monkeypatch):
    llava = _json("vizwiz_llava_test.jsonl_head.json")  # LLaVA's llava_test.jsonl lines
    rows = [{"question_id": f"VizWiz_test_{q['question_id']:08d}", "question": q["text"].split("\n")[0],
             "image": {"bytes": _png(), "path": None}} for q in llava]  # fmt: skip
    features = {"question_id": Value("string"), "question": Value("string"), "image": Image()}
    stage(tmp_path, "lmms-lab/VizWiz-VQA", {("default", "test"): (rows, features)})
    monkeypatch.chdir(tmp_path)
    root = materialise(registry.load("vizwiz"), tmp_path / "hub_data")
    assert read_jsonl(root / "vizwiz" / "llava_test.jsonl") == llava
    assert (root / "vizwiz" / "test" / "VizWiz_test_00000002.jpg").is_file()


def test_textvqa_from_the_hub_is_scored_by_the_official_rule(tmp_path, monkeypatch):
    from hub_llava.eval.files import write_jsonl
    from hub_llava.eval.score import score_file

    llava = _json("textvqa_llava_textvqa_val_v051_ocr.jsonl_head.json")  # LLaVA's question-file lines
    rows = []
    for i, q in enumerate(llava):
        question, ocr = q["text"].split("\n")[:2]
        rows.append({"image_id": q["question_id"], "question_id": 34602 + i, "question": question[0].lower() + question[1:],
                     "answers": ["nous les gosses"] * 4 + ["dakota"] * 6, "ocr_tokens": ocr.removeprefix("Reference OCR token: ").split(", "),
                     "image": {"bytes": _png(), "path": None}})  # fmt: skip
    features = {"image_id": Value("string"), "question_id": Value("int64"), "question": Value("string"),
                "answers": List(Value("string")), "ocr_tokens": List(Value("string")), "image": Image()}  # fmt: skip
    stage(tmp_path, "lmms-lab/textvqa", {("default", "validation"): (rows, features)})
    monkeypatch.chdir(tmp_path)
    root = materialise(registry.load("textvqa"), tmp_path / "hub_data")
    written = read_jsonl(root / "textvqa" / "llava_textvqa_val_v051_ocr.jsonl")
    assert written == llava
    answers = [
        {"question_id": q["question_id"], "prompt": q["text"], "text": t}
        for q, t in zip(written, ["Dakota", "nous les gosses", "x"])
    ]
    write_jsonl(tmp_path / "answers.jsonl", answers)
    result, _ = score_file(
        "textvqa", tmp_path / "answers.jsonl", annotations=root / "textvqa" / "TextVQA_0.5.1_val.json"
    )
    assert result["score"] == pytest.approx(100 * (1.0 + 1.0 + 0.0) / 3, abs=0.01)  # >= 3 matching humans: 1.0


def test_mm_vet_from_the_hub(tmp_path, monkeypatch):
    llava = _json("mmvet_llava-mm-vet.jsonl_head.json")
    rows = [{"question_id": f"v1_{q['question_id']}", "question": q["text"], "answer": f"answer {i}",
             "capability": "ocr,math", "image": {"bytes": _png(), "path": None}} for i, q in enumerate(llava)]  # fmt: skip
    features = {k: Value("string") for k in ("question_id", "question", "answer", "capability")}
    stage(tmp_path, "lmms-lab/MMVet", {("default", "test"): (rows, {**features, "image": Image()})})
    monkeypatch.chdir(tmp_path)
    root = materialise(registry.load("mm_vet"), tmp_path / "hub_data")
    written = read_jsonl(root / "mm-vet" / "llava-mm-vet.jsonl")
    # LLaVA's ids and prompts; each item gets its own image file (LLaVA's items v1_1 and v1_2 share v1_1.png).
    assert [(q["question_id"], q["text"], q["category"]) for q in written] == [
        (q["question_id"], q["text"], q["category"]) for q in llava
    ]
    truth = json.loads((root / "mm-vet" / "mm-vet.json").read_text())
    assert truth["v1_2"] == {"imagename": "v1_2.png", "capability": ["ocr", "math"], "question": llava[2]["text"],
                             "answer": "answer 2"}  # fmt: skip


def test_llava_bench_from_the_hub(tmp_path, monkeypatch):
    folder = SAMPLES / "llava-bench-in-the-wild"
    questions, contexts = read_jsonl(folder / "questions.jsonl"), read_jsonl(folder / "context.jsonl")
    references = {r["question_id"]: r for r in read_jsonl(folder / "answers_gpt4.jsonl")}
    captions = {c["image"]: c["caption"] for c in contexts}
    rows = [{"question_id": str(q["question_id"]), "question": q["text"], "gpt_answer": references[q["question_id"]]["text"],
             "caption": captions[q["image"]], "category": q["category"],
             "image": {"bytes": (folder / "images" / q["image"]).read_bytes(), "path": None}} for q in questions]  # fmt: skip
    features = {k: Value("string") for k in ("question_id", "question", "gpt_answer", "caption", "category")}
    stage(tmp_path, "lmms-lab/llava-bench-in-the-wild", {("default", "train"): (rows, {**features, "image": Image()})})
    monkeypatch.chdir(tmp_path)
    root = materialise(registry.load("llava_bench"), tmp_path / "hub_data")
    out = root / "llava-bench-in-the-wild"
    assert read_jsonl(out / "questions.jsonl") == questions
    assert read_jsonl(out / "context.jsonl") == contexts
    assert [(r["question_id"], r["text"]) for r in read_jsonl(out / "answers_gpt4.jsonl")] == [
        (r["question_id"], r["text"]) for r in references.values()
    ]
