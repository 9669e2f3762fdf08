"""Benchmarks during training (`hub_llava.training.eval_callback`): the smoke recipe with `eval_benchmarks` on the
bundled eval samples, in one process and under 2-process gloo DDP, checked against `hub-llava eval` run on each saved
checkpoint; the settings' parsing; missing benchmark data stopping the run before its first step."""

import json
import shutil
from pathlib import Path

import pytest
from accelerate_runs import launch
from recipe_runs import run_in_process
from safetensors.torch import load_file
from transformers.integrations import is_tensorboard_available
from trl import DatasetMixtureConfig, ScriptArguments, TrlParser

from hub_llava.cli import main as hub_llava
from hub_llava.eval.files import read_jsonl
from hub_llava.eval.results import coverage
from hub_llava.hub import MODEL_EXCLUDE
from hub_llava.hub_checks import staged_files
from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig
from hub_llava.training.eval_callback import EVAL_FOLDER, log_keys

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "recipes" / "tiny" / "sft" / "config_smoke.yaml"
SAMPLES = REPO / "samples" / "eval"
LIMIT, NEW_TOKENS, BATCH = 4, 8, 2
# 16 rows, 2 per step: 8 steps, saved at 4 and 8.
EVAL = ["--eval_benchmarks", "pope,mme", "--eval_data_dir", str(SAMPLES), "--eval_limit", str(LIMIT)]
EVAL += ["--eval_max_new_tokens", str(NEW_TOKENS), "--per_device_eval_batch_size", str(BATCH)]
SAVES = ["--save_strategy", "steps", "--save_steps", "4"]


def parser():
    return TrlParser((ScriptArguments, LlavaSFTConfig, LlavaModelConfig, DatasetMixtureConfig), allow_abbrev=False)


def run_recipe(tiny_dir, output_dir, *overrides):
    """`recipes/sft.py`'s `main` in this process, with the smoke YAML plus `overrides`; returns the parsed config."""
    return run_in_process(SMOKE, tiny_dir, output_dir, *overrides)[1]


def eval_entries(log_history: list[dict]) -> dict[int, dict]:
    """step -> the logged benchmark scores of that step."""
    return {
        e["step"]: {k: v for k, v in e.items() if k.startswith("eval_")}
        for e in log_history
        if any(k.startswith("eval_") for k in e)
    }


TOTALS = {"pope": 12, "mme": 6, "scienceqa": 3}  # questions in samples/eval


def check_against_hub_llava_eval(out: Path, steps: list[int], tmp_path: Path, benchmarks=("pope", "mme"),
                                 limit=LIMIT, batch=BATCH) -> None:  # fmt: skip
    """Each checkpoint's results.json and logged scores equal what `hub-llava eval` computes on that checkpoint
    (reloaded from disk, in one process), answer for answer."""
    log_history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    logged = eval_entries(log_history)
    assert sorted(logged) == steps
    # Entries of their own (step, epoch and the scores); each training step's entry keeps TRL's metrics.
    assert all(set(e) - {"step", "epoch"} <= set(logged[e["step"]]) for e in log_history if e["step"] in logged
               and any(k.startswith("eval_") for k in e))  # fmt: skip
    assert all("mean_token_accuracy" in e for e in log_history if "loss" in e)
    answers = set()
    for step in steps:
        checkpoint = out / f"checkpoint-{step}"
        results = json.loads((checkpoint / "results.json").read_text())
        assert results["training"]["global_step"] == step and results["model"] == str(checkpoint)
        assert results["dtype"] == "float32" and results["limit"] == limit
        assert logged[step] == log_keys(results)  # the logged numbers are the results.json scores
        for key in benchmarks:
            assert f"eval_{key}_{results['results'][key]['metric']}" in logged[step]
            total = TOTALS[key]
            partial = f"partial: {limit} of {total} questions (--limit {limit})" if limit < total else None
            assert coverage(results["results"][key]) == partial

        independent = tmp_path / f"hub-llava-eval-{step}"
        args = ["eval", "--model", str(checkpoint), "--benchmarks", ",".join(benchmarks), "--data_dir", str(SAMPLES),
                "--output_dir", str(independent), "--limit", str(limit), "--max_new_tokens", str(NEW_TOKENS),
                "--batch_size", str(batch), "--dtype", "float32"]  # fmt: skip
        assert hub_llava(args) == 0
        expected = json.loads((independent / "results.json").read_text())
        assert results["results"] == expected["results"]
        assert results["model_identity"] == expected["model_identity"]  # the checkpoint's weights
        for key in benchmarks:
            during = read_jsonl(out / EVAL_FOLDER / f"step-{step}" / key / "answers.jsonl")
            after = read_jsonl(independent / key / "answers.jsonl")
            assert [(r["question_id"], r["prompt"], r["text"]) for r in during] == [
                (r["question_id"], r["prompt"], r["text"]) for r in after
            ]
            assert len(during) == min(limit, TOTALS[key])
            answers |= {r["text"] for r in during}
    assert len(answers) > 1  # the answers depend on the question and the weights: equal answers mean something


def test_settings_parse_from_yaml_list_and_command_line(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("output_dir: out\nuse_cpu: true\nbf16: false\neval_benchmarks: [pope, mme]\n")
    args = parser().parse_args_and_config(["--config", str(recipe)])[1]
    assert args.eval_benchmarks == ["pope", "mme"] and args.benchmark_eval_steps is None
    for flags in (["pope,scienceqa"], ["pope", "scienceqa"], [" pope , scienceqa "]):
        args = parser().parse_args_and_config(["--config", str(recipe), "--eval_benchmarks", *flags])[1]
        assert args.eval_benchmarks == ["pope", "scienceqa"]
    assert parser().parse_args_and_config(["--config", str(recipe), "--eval_benchmarks", ""])[1].eval_benchmarks == []
    # report_to auto (the default): tensorboard where it is installed, else none
    args = parser().parse_args_and_config(["--config", str(recipe)])[1]
    assert args.report_to == (["tensorboard"] if is_tensorboard_available() else [])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--eval_benchmarks", "pope,mmeee"], "unknown benchmark(s) mmeee; available: gqa, "),
        (["--eval_benchmarks", "pope", "--eval_limit", "0"], "eval_limit must be at least 1"),
        (["--eval_benchmarks", "pope", "--benchmark_eval_steps", "0"], "benchmark_eval_steps must be at least 1"),
        (["--eval_benchmarks", "pope", "--save_strategy", "no"], "save_strategy is 'no' and benchmark_eval_steps"),
    ],
)
def test_bad_settings_are_refused_when_parsed(tmp_path, flags, message):
    argv = ["--output_dir", str(tmp_path), "--use_cpu", "true", "--bf16", "false", *flags]
    with pytest.raises(ValueError) as error:
        parser().parse_args_and_config(argv)
    assert message in str(error.value)


def _pope_without_images(root: Path) -> Path:
    shutil.copytree(SAMPLES / "pope", root / "pope", ignore=shutil.ignore_patterns("*.jpg"))
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    "data, message",
    [
        (lambda root: root, "eval_benchmarks: pope cannot be evaluated from eval_data_dir="),
        (_pope_without_images, "pope: 12 of 12 questions refer to images that do not exist"),
    ],
)
def test_missing_benchmark_data_stops_the_run_before_its_first_step(tiny_dir, tmp_path, data, message):
    root = data(tmp_path / "eval_data")
    root.mkdir(exist_ok=True)
    out = tmp_path / "sft"
    overrides = ["--eval_benchmarks", "pope", "--eval_data_dir", str(root), "--save_strategy", "steps"]
    with pytest.raises(FileNotFoundError) as error:
        run_recipe(tiny_dir, out, *overrides, "--save_steps", "1")
    assert message in str(error.value)
    if "cannot be evaluated" in message:
        assert str(root / "pope" / "llava_pope_test.jsonl") in str(error.value)  # names the missing file
    assert not list(out.glob("checkpoint-*")) and not (out / "trainer_state.json").exists()  # no step ran


@pytest.mark.slow
def test_scores_logged_at_every_save_equal_hub_llava_eval_of_the_checkpoint(tiny_dir, tmp_path):
    out = tmp_path / "sft"
    args = run_recipe(tiny_dir, out, *SAVES, *EVAL)
    check_against_hub_llava_eval(out, [4, 8], tmp_path)
    # The integration that is active got the same numbers: TensorBoard's event files where it is installed (the
    # recipes' default), else the Trainer's own log (trainer_state.json, checked above).
    if is_tensorboard_available():
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        assert args.report_to == ["tensorboard"]
        logged = eval_entries(json.loads((out / "trainer_state.json").read_text())["log_history"])
        events = EventAccumulator(str(next((out / "runs").iterdir()))).Reload()
        for step, scores in logged.items():
            for key, value in scores.items():  # TensorBoardCallback writes eval_pope_f1 as eval/pope_f1
                tag = "eval/" + key.removeprefix("eval_")
                assert [e.value for e in events.Scalars(tag) if e.step == step] == [pytest.approx(value)]
    else:
        assert args.report_to == []
    # Publishing the run leaves the intermediate answers out, as it leaves out the checkpoints.
    published = staged_files(out, exclude=MODEL_EXCLUDE)
    assert "model.safetensors" in published and not [f for f in published if f.startswith(EVAL_FOLDER)]
    # Evaluating leaves training as it was: the same final weights as a run without benchmarks.
    plain = tmp_path / "plain"
    run_recipe(tiny_dir, plain, *SAVES)
    trained, reference = load_file(out / "model.safetensors"), load_file(plain / "model.safetensors")
    assert trained.keys() == reference.keys()
    assert all((trained[k] == reference[k]).all() for k in trained)


@pytest.mark.slow
def test_every_benchmark_eval_steps_and_into_the_checkpoints_saved_then(tiny_dir, tmp_path):
    out = tmp_path / "sft"
    run_recipe(tiny_dir, out, "--save_strategy", "steps", "--save_steps", "6", "--benchmark_eval_steps", "3", *EVAL)
    logged = eval_entries(json.loads((out / "trainer_state.json").read_text())["log_history"])
    assert sorted(logged) == [3, 6]  # step 8 saves (the last step) but is not a multiple of 3
    assert sorted(p.name for p in (out / EVAL_FOLDER).iterdir()) == ["step-3", "step-6"]
    step_6 = json.loads((out / EVAL_FOLDER / "step-6" / "results.json").read_text())
    checkpoint_6 = json.loads((out / "checkpoint-6" / "results.json").read_text())
    assert checkpoint_6["results"] == step_6["results"] and checkpoint_6["model_identity"]["weights"]
    assert not (out / "checkpoint-8" / "results.json").exists()  # not evaluated: no results claimed


@pytest.mark.slow
def test_epoch_saves_are_evaluated_when_they_happen(tiny_dir, tmp_path):
    """`save_strategy: epoch` decides to save after the step's end: the scores come at the save itself."""
    out = tmp_path / "sft"
    run_recipe(tiny_dir, out, "--save_strategy", "epoch", *EVAL)
    check_against_hub_llava_eval(out, [8], tmp_path)


@pytest.mark.slow
def test_two_process_ddp_run_shards_the_questions_and_logs_at_every_save(tiny_dir, tmp_path):
    out = tmp_path / "ddp"
    # accelerate launch --multi_gpu --num_processes 2 (gloo): 2 ranks x 2 rows, 4 steps, saved at 2 and 4.
    run = launch(out, "--model_name_or_path", tiny_dir, "--save_strategy", "steps", "--save_steps", "2", *EVAL)
    assert run.returncode == 0, run.tail()
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 4
    check_against_hub_llava_eval(out, [2, 4], tmp_path)


@pytest.mark.slow
def test_zero3_answers_in_lockstep_on_sharded_weights(tiny_dir, tmp_path):
    """ZeRO-3 (`recipes/accelerate_configs/zero3.yaml`, 2 CPU ranks): the weights are partitioned, every forward
    gathers them; the ranks answer their shards in lockstep (5 POPE questions one at a time: rank 0 has 3, rank 1
    calls generate a third time on a filler question; ScienceQA's first question has no image: the zero image keeps
    the vision tower in every rank's forward) and the scores equal `hub-llava eval` of the gathered checkpoints."""
    out = tmp_path / "zero3"
    flags = [*EVAL, "--eval_benchmarks", "pope,scienceqa", "--eval_limit", "5", "--per_device_eval_batch_size", "1"]
    flags += ["--save_strategy", "steps", "--save_steps", "2"]
    run = launch(out, "--model_name_or_path", tiny_dir, *flags, config="zero3.yaml")
    assert run.returncode == 0, run.tail()
    check_against_hub_llava_eval(out, [2, 4], tmp_path, ("pope", "scienceqa"), limit=5, batch=1)


@pytest.mark.slow
def test_lora_run_answers_with_its_adapter(tiny_dir, tmp_path):
    """A LoRA run evaluates the PEFT model it trains: the same answers as the base model plus the checkpoint's adapter
    (and fully trained projector), loaded back with PEFT and answered by the runner in a fresh output folder."""
    from peft import PeftModel
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from hub_llava.eval.run import evaluate

    out = tmp_path / "lora"
    run_recipe(tiny_dir, out, *SAVES, *EVAL, "--use_peft", "true", "--lora_r", "8", "--lora_alpha", "16")
    checkpoint = out / "checkpoint-8"
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (checkpoint / "model.safetensors").exists()
    results = json.loads((checkpoint / "results.json").read_text())
    model = PeftModel.from_pretrained(LlavaForConditionalGeneration.from_pretrained(tiny_dir), checkpoint).eval()
    reloaded = evaluate(
        str(checkpoint), ["pope", "mme"], SAMPLES, tmp_path / "reloaded", limit=LIMIT, batch_size=BATCH,
        dtype="float32", max_new_tokens=NEW_TOKENS, model=model, processor=AutoProcessor.from_pretrained(checkpoint),
    )  # fmt: skip
    assert results["results"] == reloaded["results"]
    # The base model alone answers otherwise: equal answers show the adapter was in use.
    base = evaluate(
        tiny_dir, ["pope", "mme"], SAMPLES, tmp_path / "base", limit=LIMIT, batch_size=BATCH, dtype="float32",
        max_new_tokens=NEW_TOKENS,
    )  # fmt: skip
    assert base["model_identity"]["weights"] != results["model_identity"]["weights"]
    texts = {}
    for name, folder in [("during", out / EVAL_FOLDER / "step-8"), ("after", tmp_path / "reloaded"),
                         ("base", tmp_path / "base")]:  # fmt: skip
        texts[name] = [r["text"] for key in ("pope", "mme") for r in read_jsonl(folder / key / "answers.jsonl")]
    assert texts["during"] == texts["after"] != texts["base"]
