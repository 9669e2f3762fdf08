"""`hub-llava eval` end to end on a tiny model and the bundled sample benchmark (samples/eval/)."""

import json
from pathlib import Path

import pytest
from PIL import Image

from hub_llava.cli import main
from hub_llava.eval import registry
from hub_llava.eval.files import read_jsonl
from hub_llava.eval.generation import Generator
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


def _eval(checkpoint, output, benchmarks="pope,mme,scienceqa", batch_size=1, *extra):
    args = ["eval", "--model", str(checkpoint), "--benchmarks", benchmarks, "--data_dir", str(SAMPLES),
            "--output_dir", str(output), "--batch_size", str(batch_size), "--max_new_tokens", "6", *extra]  # fmt: skip
    assert main(args) == 0
    return json.loads((output / "results.json").read_text())


def test_prompt_snapshot():
    """The exact text the model sees (LLaVA-1.5's vicuna_v1 inference prompt)."""
    processor = tiny_processor()
    generator = Generator(tiny_llava(processor.tokenizer), processor)
    pope = registry.load("pope")
    question = "Is there a snowboard in the image?\nAnswer the question using a single word or phrase."
    assert generator.prompt(pope.text(question), has_image=True) == (
        "<s>A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: <image>\nIs there a snowboard in the image?\n"
        "Answer the question using a single word or phrase. ASSISTANT:"
    )
    assert registry.load("scienceqa").text("Q\nA. x\nB. y") == (
        "Q\nA. x\nB. y\nAnswer with the option's letter from the given choices directly."
    )
    assert registry.load("mmbench_cn").text("Q") == "Q\n请直接回答选项字母。"


def test_generator_feeds_llavas_inference_ids(checkpoint):
    """The ids the model gets for a batch: LLaVA's tokenizer_image_token prompt (one BOS, the lone "▁" after the
    image), the image expanded to its tokens, left-padded; computed by the independent reference from tokenizer.model."""
    from llava_reference import IMAGE_TOKEN_INDEX, SlowLlamaTokenizer, inference_ids
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(checkpoint)
    generator = Generator(tiny_llava(processor.tokenizer), processor)
    slow = SlowLlamaTokenizer(checkpoint / "tokenizer.model", legacy=False)
    questions = ["Is there a cat?  Answer the question using a single word or phrase.", "Why?"]
    inputs = generator._inputs(questions, [Image.new("RGB", (30, 20)), None])
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    for row, mask, question, has_image in zip(inputs["input_ids"], inputs["attention_mask"], questions, [True, False]):
        expected = []
        for token in inference_ids(question, slow, has_image=has_image):
            expected += [image_id] * 4 if token == IMAGE_TOKEN_INDEX else [token]
        assert row[mask.bool()].tolist() == expected
        assert mask[-1] == 1 and (mask == 0).sum() == len(row) - len(expected)  # left padding
    tokens = processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    assert tokens[:3] == ["<s>", "▁A", "▁chat"] and tokens[tokens.index("<image>") + 4] == "▁"
    assert inputs["pixel_values"].shape == (1, 3, 28, 28)


@pytest.mark.slow
def test_runner_end_to_end_batching_and_resume(checkpoint, tmp_path, capsys):
    single = _eval(checkpoint, tmp_path / "b1", batch_size=1)
    assert json.loads(capsys.readouterr().out) == {k: v["score"] for k, v in single["results"].items()}
    batched = _eval(checkpoint, tmp_path / "b4", batch_size=4)
    for key in ("pope", "mme", "scienceqa"):
        a = read_jsonl(tmp_path / "b1" / key / "answers.jsonl")
        b = read_jsonl(tmp_path / "b4" / key / "answers.jsonl")
        assert [(r["question_id"], r["prompt"], r["text"]) for r in a] == [
            (r["question_id"], r["prompt"], r["text"]) for r in b
        ]
        assert set(a[0]) == {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}
    assert single["results"] == batched["results"]

    # Answer files are in question-file order and carry the question file's ids and texts.
    questions = read_jsonl(SAMPLES / "pope" / "llava_pope_test.jsonl")
    answers = read_jsonl(tmp_path / "b4" / "pope" / "answers.jsonl")
    assert [(q["question_id"], q["text"]) for q in questions] == [(r["question_id"], r["prompt"]) for r in answers]
    scienceqa = read_jsonl(tmp_path / "b4" / "scienceqa" / "answers.jsonl")
    assert [r["prompt"].startswith("<image>\n") for r in scienceqa] == [False, True, True]

    # results.json follows the shared contract; the details rows are the scored questions.
    results = single["results"]
    assert set(results) == {"pope", "mme", "mme_cognition", "scienceqa"}
    assert results["pope"]["name"] == "POPE" and results["pope"]["metric"] == "f1" and results["pope"]["n"] == 12
    assert results["mme"]["n"] == 6 and results["scienceqa"]["n"] == 2
    assert single["generation"] == {"temperature": 0, "num_beams": 1, "max_new_tokens": 6}
    assert single["dtype"] == "float16"  # LLaVA's loader evaluated in float16; it runs on CPU too
    details = read_jsonl(tmp_path / "b1" / "pope" / "details.jsonl")
    assert len(details) == 12 and set(details[0]) == {
        "question_id",
        "question",
        "prompt",
        "prediction",
        "target",
        "score",
        "category",
    }
    assert [d["category"] for d in details[::4]] == ["adversarial", "popular", "random"]

    # Resume: drop two answers, rerun -> only those two are generated, the others are kept untouched.
    path = tmp_path / "b4" / "pope" / "answers.jsonl"
    kept = read_jsonl(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in kept[:5] + kept[7:]))
    _eval(checkpoint, tmp_path / "b4", "pope", 4)
    resumed = read_jsonl(path)
    assert [r["answer_id"] for r in resumed[:5] + resumed[7:]] == [r["answer_id"] for r in kept[:5] + kept[7:]]
    assert [r["text"] for r in resumed] == [r["text"] for r in kept]
    assert resumed[5]["answer_id"] != kept[5]["answer_id"]
    assert not list((tmp_path / "b4" / "pope").glob("answers.part*.jsonl"))

    # Another model's answers are never resumed into this one's results.
    with pytest.raises(ValueError, match="holds answers of another model"):
        _eval(checkpoint, tmp_path / "b4", "pope", 4, "--model_name", "other-model")


@pytest.mark.slow
def test_resume_refuses_another_model_with_the_same_folder_name(checkpoint, tmp_path):
    """`a/tiny-llava-sft` and `b/tiny-llava-sft`: same name, other weights. An interrupted run of one must never be
    completed with the other's answers (the answer files' model_id is the folder name for both)."""
    import shutil

    from safetensors.torch import load_file, save_file

    first, second = tmp_path / "a" / "tiny-llava-sft", tmp_path / "b" / "tiny-llava-sft"
    shutil.copytree(checkpoint, first)
    shutil.copytree(checkpoint, second)
    weights = load_file(second / "model.safetensors")
    save_file({k: v + 0.01 if "lm_head" in k else v for k, v in weights.items()}, second / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    _eval(first, tmp_path / "out", "pope", 4, "--limit", "6")
    (tmp_path / "out" / "results.json").unlink()  # interrupted: half of POPE answered, results.json not written yet
    with pytest.raises(ValueError, match="holds the answers of another run") as refused:
        _eval(second, tmp_path / "out", "pope", 4)
    message = str(refused.value)
    assert f"{first.resolve()}" in message and f"{second.resolve()}" in message and "weights" in message
    assert len(read_jsonl(tmp_path / "out" / "pope" / "answers.jsonl")) == 6  # nothing of the other model added
    # The same folder retrained in place (same path, new weights) is another run too.
    shutil.copy(second / "model.safetensors", first / "model.safetensors")
    (tmp_path / "out" / "results.json").unlink(missing_ok=True)
    with pytest.raises(ValueError, match=r"weights: '[0-9a-f]+' there, '[0-9a-f]+' now"):
        _eval(first, tmp_path / "out", "pope", 4)
    # The same model, settings and questions: a longer run resumes the --limit one.
    summary = _eval(second, tmp_path / "second", "pope", 4, "--limit", "6")
    assert summary["results"]["pope"]["answered"] == 6 and summary["results"]["pope"]["total"] == 12
    summary = _eval(second, tmp_path / "second", "pope", 4)
    assert summary["results"]["pope"]["answered"] == 12 and summary["results"]["pope"]["limit"] is None


@pytest.mark.slow
def test_benchmark_files_are_checked_before_anything_is_answered(checkpoint, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(SAMPLES, data)
    (data / "MME" / "llava_mme.jsonl").unlink()  # the second benchmark's question file
    with pytest.raises(FileNotFoundError, match="llava_mme.jsonl"):
        main(["eval", "--model", str(checkpoint), "--benchmarks", "pope,mme", "--data_dir", str(data),
              "--output_dir", str(tmp_path / "out"), "--max_new_tokens", "2"])  # fmt: skip
    assert not (tmp_path / "out" / "pope").exists()  # POPE was not answered first
    shutil.copytree(SAMPLES / "MME", data / "MME", dirs_exist_ok=True)
    next((data / "pope" / "val2014").glob("*.jpg")).unlink()
    with pytest.raises(FileNotFoundError, match=r"pope: 6 of 12 questions refer to images that do not exist"):
        main(["eval", "--model", str(checkpoint), "--benchmarks", "mme,pope", "--data_dir", str(data),
              "--output_dir", str(tmp_path / "out"), "--max_new_tokens", "2"])  # fmt: skip
    assert not (tmp_path / "out" / "mme").exists()


@pytest.mark.parametrize("flag", ["--limit", "--batch_size"])
@pytest.mark.parametrize("value", ["0", "-2"])
def test_zero_or_negative_limit_and_batch_size_are_refused(checkpoint, tmp_path, flag, value, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--model", str(checkpoint), "--benchmarks", "pope", "--data_dir", str(SAMPLES),
              "--output_dir", str(tmp_path), flag, value])  # fmt: skip
    assert f"{flag}: must be at least 1, got {value}" in capsys.readouterr().err


@pytest.mark.slow
def test_limit_scores_only_the_answered_questions(checkpoint, tmp_path):
    summary = _eval(checkpoint, tmp_path, "pope", 2, "--limit", "3", "--dtype", "bfloat16")
    assert summary["results"]["pope"]["n"] == 3
    assert {k: summary["results"]["pope"][k] for k in ("limit", "answered", "total")} == {
        "limit": 3, "answered": 3, "total": 12}  # fmt: skip
    assert summary["limit"] == 3
    assert summary["results"]["pope"]["details"]["missing"] == 9
    assert len(read_jsonl(tmp_path / "pope" / "answers.jsonl")) == 3
    assert summary["dtype"] == "bfloat16"
    # Answers of a bfloat16 run are never resumed into (or reported as) a float16 run.
    with pytest.raises(ValueError, match="holds results evaluated in bfloat16, not float16"):
        _eval(checkpoint, tmp_path, "pope", 2, "--limit", "3")


def test_model_loads_in_float16_by_default(checkpoint):
    import torch

    from hub_llava.eval.run import load_model

    assert load_model(str(checkpoint))[0].dtype == torch.float16
    assert load_model(str(checkpoint), "float32")[0].dtype == torch.float32


def test_unknown_benchmark_is_refused_before_loading_the_model(tmp_path):
    with pytest.raises(ValueError, match="Unknown benchmark 'popes'; available: .*pope"):
        main(["eval", "--model", str(tmp_path / "nowhere"), "--benchmarks", "popes", "--data_dir", str(SAMPLES),
              "--output_dir", str(tmp_path)])  # fmt: skip


@pytest.mark.slow
def test_two_processes_shard_and_merge_in_question_order(checkpoint, tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo): each answers half, the merged file equals one process's."""
    import os
    import subprocess
    import sys

    accelerate = Path(sys.executable).parent / "accelerate"
    common = ["--model", str(checkpoint), "--benchmarks", "pope", "--data_dir", str(SAMPLES), "--batch_size", "2",
              "--max_new_tokens", "4"]  # fmt: skip
    launch = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "hub_llava.cli", "eval"]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [*launch, *common, "--output_dir", str(tmp_path / "two")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "6/6" in done.stderr  # the main process's bar: its shard of the 12 questions
    _eval(checkpoint, tmp_path / "one", "pope", 2, "--max_new_tokens", "4")
    one = read_jsonl(tmp_path / "one" / "pope" / "answers.jsonl")
    two = read_jsonl(tmp_path / "two" / "pope" / "answers.jsonl")
    assert [(r["question_id"], r["text"]) for r in two] == [(r["question_id"], r["text"]) for r in one]
    assert json.loads((tmp_path / "two" / "results.json").read_text())["results"]["pope"]["n"] == 12


def test_a_benchmark_part_that_was_not_evaluated_is_absent_not_zero(tmp_path):
    """MME with every cognition task unanswered: MME-Cognition has no score (it used to be 0.0 and went into the
    model-index); perception is still reported."""
    from hub_llava.eval.results import to_eval_results
    from hub_llava.eval.run import results_entries
    from hub_llava.eval.score import score_file

    questions = read_jsonl(SAMPLES / "MME" / "llava_mme.jsonl")
    perception_only = [q for q in questions if not q["question_id"].startswith("code_reasoning")]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({**q, "prompt": q["text"], "text": "Yes"}) + "\n" for q in perception_only))
    truth = SAMPLES / "MME" / "MME_Benchmark_release_version"
    result, _ = score_file("mme", answers, ground_truth=truth, missing="skip")
    assert result["details"]["cognition"] is None and result["score"] is not None
    entries = results_entries(registry.load("mme"), result, answered=len(perception_only), total=len(questions))
    assert set(entries) == {"mme"} and entries["mme"]["answered"] < entries["mme"]["total"]
    model_index = to_eval_results({"results": entries})
    assert [e.dataset_name for e in model_index] == ["MME-Perception"]
