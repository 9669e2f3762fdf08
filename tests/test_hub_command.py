"""`hub-llava push {dataset,model,results}`: the console script on top of `hub_llava.hub`."""

import pytest
from test_hub import save_tiny_checkpoint, stage_tiny_dataset
from test_hub_results import write_run
from test_hub_standin import installed

from hub_llava.cli import main


@pytest.fixture
def hub(monkeypatch, tmp_path):
    yield from installed(monkeypatch, tmp_path)


def test_push_dataset_dry_run_prints_files_and_card(hub, tmp_path, capsys):
    staged = stage_tiny_dataset(tmp_path / "out")
    assert main(["push", "dataset", staged, "hub_llava/tiny_ds", "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"dataset repo hub_llava/tiny_ds <- {staged} (3 files, ")
    assert "  conversations/train-00000-of-00001.parquet  (" in out
    assert "configs:\n- config_name: conversations\n" in out
    assert out.endswith("dry run: nothing was pushed.\n")
    assert hub.requests == []


def test_push_model_prints_the_commit(hub, tmp_path, capsys):
    save_tiny_checkpoint(tmp_path / "ckpt")
    assert main(["push", "model", str(tmp_path / "ckpt"), "hub_llava/tiny-llava", "--private"]) == 0
    (commit,) = [c for c in hub.commits_of("hub_llava/tiny-llava") if c.added == ["README.md"]]
    assert (
        capsys.readouterr().out
        == f"pushed model hub_llava/tiny-llava: https://huggingface.co/hub_llava/tiny-llava/commit/{commit.oid}\n"
    )
    assert hub.private[("model", "hub_llava/tiny-llava")] is True


def test_errors_are_one_line_and_exit_1(hub, tmp_path, capsys):
    staged = stage_tiny_dataset(tmp_path / "out")
    capsys.readouterr()  # the staging's progress bars
    assert main(["push", "dataset", staged, "tiny_ds"]) == 1
    assert capsys.readouterr().err.startswith("error: Invalid repo id 'tiny_ds': expected '<namespace>/<name>'")
    assert main(["push", "model", str(tmp_path / "missing"), "hub_llava/m"]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing'}: no such folder to push.\n"


def test_there_is_no_token_flag(tmp_path):
    with pytest.raises(SystemExit):  # tokens come from HF_TOKEN / `hf auth login`, never the command line
        main(["push", "dataset", str(tmp_path), "hub_llava/x", "--token", "hf_x"])


def test_push_results_prints_both_repos(hub, tmp_path, capsys):
    save_tiny_checkpoint(tmp_path / "ckpt")
    assert main(["push", "model", str(tmp_path / "ckpt"), "hub_llava/tiny-llava"]) == 0
    results_json = write_run(tmp_path / "eval")
    capsys.readouterr()
    assert main(["push", "results", str(results_json), "hub_llava/tiny-llava"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "pushed model hub_llava/tiny-llava", "pushed dataset hub_llava/details_tiny-llava",
    ]  # fmt: skip
    assert ".eval_results/pope.yaml" in hub.files("hub_llava/tiny-llava")


def test_push_results_dry_run_works_offline(tmp_path, monkeypatch):
    """No network and no --model_card: the dry run still lists what would go out (the results merged into an empty
    card), in seconds, instead of ~25 s of connection retries and a traceback."""
    import subprocess
    import sys
    import time

    from test_hub_results import write_run

    results_json = write_run(tmp_path / "eval")
    env = {**__import__("os").environ, "HF_ENDPOINT": "https://hub.invalid", "HF_TOKEN": ""}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hub_llava.cli", "push", "results", str(results_json), "hub_llava/tiny-llava", "--dry_run"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - start < 20 and "Traceback" not in done.stderr
    assert "The Hub is unreachable" in done.stderr and "dry run: nothing was pushed." in done.stdout
    assert "POPE (hub_llava)" in done.stdout
