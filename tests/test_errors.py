"""Every entry point ends a user's mistake in one `error:` line (exit status 1, no traceback), shows the traceback
with `--debug` / HUB_LLAVA_DEBUG=1, refuses abbreviated flags, and survives `| head`. Run as users run them: in
subprocesses, without the in-process debug setting of conftest.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLES = REPO / "samples" / "eval"


def run(*command, env=None, input=None):
    environment = {k: v for k, v in os.environ.items() if k != "HUB_LLAVA_DEBUG"}
    environment.update(env or {})
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO, timeout=300, input=input)


def one_error_line(done, expected: str):
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], done.stderr[-2000:]
    return errors[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from hub_llava.training.tiny_model import make_tiny_model

    return make_tiny_model(str(tmp_path_factory.mktemp("tiny") / "tiny-llava"))


def test_score_with_a_missing_file(tmp_path):
    done = run(str(BIN / "hub-llava"), "score", "pope", "--answers", str(tmp_path / "none.jsonl"),
               "--questions", str(SAMPLES / "pope" / "llava_pope_test.jsonl"), "--annotations", str(SAMPLES / "pope" / "coco"))  # fmt: skip
    line = one_error_line(done, "No such file or directory")
    assert "none.jsonl" in line and line.endswith("(--debug or HUB_LLAVA_DEBUG=1 for the traceback)")
    debug = run(str(BIN / "hub-llava"), "--debug", "score", "pope", "--answers", str(tmp_path / "none.jsonl"),
                "--questions", str(SAMPLES / "pope" / "llava_pope_test.jsonl"), "--annotations", str(SAMPLES / "pope" / "coco"))  # fmt: skip
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr
    with_env = run(str(BIN / "hub-llava"), "score", "pope", "--answers", str(tmp_path / "none.jsonl"),
                   "--questions", str(SAMPLES / "pope" / "llava_pope_test.jsonl"), "--annotations", str(SAMPLES / "pope" / "coco"),
                   env={"HUB_LLAVA_DEBUG": "1"})  # fmt: skip
    assert "Traceback" in with_env.stderr


def test_eval_with_missing_benchmark_data(tiny, tmp_path):
    done = run(str(BIN / "hub-llava"), "eval", "--model", tiny, "--benchmarks", "pope,mme", "--data_dir",
               str(tmp_path / "no_data"), "--output_dir", str(tmp_path / "out"))  # fmt: skip
    one_error_line(done, "llava_pope_test.jsonl")


def test_eval_with_a_bad_flag_value(tiny, tmp_path):
    done = run(str(BIN / "hub-llava"), "eval", "--model", tiny, "--benchmarks", "pope", "--data_dir", str(SAMPLES),
               "--output_dir", str(tmp_path / "out"), "--batch_size", "0")  # fmt: skip
    assert done.returncode == 2 and "--batch_size: must be at least 1, got 0" in done.stderr  # argparse's own line
    assert "Traceback" not in done.stderr


def test_convert_of_an_unsupported_config(tiny, tmp_path):
    done = run(str(BIN / "hub-llava"), "convert", tiny, str(tmp_path / "out"))
    one_error_line(done, "already a transformers Llava checkpoint")


def test_the_recipe_with_a_missing_dataset(tiny, tmp_path):
    done = run(sys.executable, "recipes/sft.py", "--config", "recipes/tiny/sft/config_smoke.yaml",
               "--model_name_or_path", tiny, "--dataset_name", str(tmp_path / "no_dataset"),
               "--output_dir", str(tmp_path / "out"))  # fmt: skip
    one_error_line(done, "no_dataset")


def test_abbreviated_flags_are_refused_everywhere(tiny, tmp_path):
    """argparse would take `--learning_rat` for `--learning_rate` (and `--batch` for `--batch_size`) while the same
    typo in a YAML is refused."""
    done = run(sys.executable, "recipes/sft.py", "--config", "recipes/tiny/sft/config_smoke.yaml",
               "--model_name_or_path", tiny, "--output_dir", str(tmp_path / "out"), "--learning_rat", "0.001")  # fmt: skip
    assert done.returncode == 1 and "--learning_rat" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
    done = run(str(BIN / "hub-llava"), "eval", "--model", tiny, "--benchmarks", "pope", "--data_dir", str(SAMPLES),
               "--output_dir", str(tmp_path / "eval"), "--batch", "2")  # fmt: skip
    assert done.returncode == 2 and "unrecognized arguments: --batch 2" in done.stderr
    done = run(str(BIN / "hub-llava"), "render-sample", "--config", "recipes/tiny/sft/config_smoke.yaml",
               "--model_name_or_path", tiny, "--ind", "1")  # fmt: skip
    assert done.returncode == 2 and "--ind" in done.stderr


def test_output_cut_short_by_head_is_not_an_error():
    command = (f"{BIN / 'hub-llava'} score pope --answers {REPO}/tests/fixtures/eval/pope/answers_llava-v1.5-13b.jsonl "
               f"--questions {REPO}/tests/fixtures/eval/pope/llava_pope_test.jsonl "
               f"--annotations {REPO}/tests/fixtures/eval/pope/coco | head -1")  # fmt: skip
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "HUB_LLAVA_DEBUG"})  # fmt: skip
    assert done.stdout == "{\n" and "BrokenPipeError" not in done.stderr and "Traceback" not in done.stderr


def test_real_bugs_stay_loud(monkeypatch, capsys):
    from hub_llava import errors

    def bug():
        raise TypeError("a bug")

    with pytest.raises(TypeError):
        errors.run(bug)
    assert errors.run(lambda: (_ for _ in ()).throw(ValueError("bad value\non two lines"))) == 1
    assert capsys.readouterr().err.startswith("error: bad value on two lines (--debug")
