"""Shared test settings, and the session-wide fixtures of the distributed tests: one tiny model, the mixed-modality
rows and the DDP reference run that `test_training_distributed.py` checks by hand and `test_deepspeed.py` compares
ZeRO-2 / ZeRO-3 against."""

import pytest
from accelerate_runs import LOGGED, SGD, Rows, launch, write_mixed_rows

from hub_llava.training.tiny_model import make_tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny LLaVA checkpoint (`hub-llava make-tiny-model`) per test module: in-process runs may change nothing in it,
    but a module's own fresh copy keeps the modules independent."""
    return make_tiny_model(str(tmp_path_factory.mktemp("tiny") / "tiny-llava"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return make_tiny_model(str(tmp_path_factory.mktemp("distributed") / "tiny-llava"))


@pytest.fixture(scope="session")
def mixed_data(tmp_path_factory):
    return write_mixed_rows(tmp_path_factory.mktemp("mixed_rows"))


@pytest.fixture(scope="session")
def rows(tiny_model_dir, mixed_data):
    return Rows(tiny_model_dir, mixed_data)


def reference_overrides(tiny_model_dir, mixed_data, accumulation=2, *extra):
    """2 rows per device x `accumulation` steps (global batch 8 by default), SGD, a checkpoint per step, and a debug
    log line per micro-batch."""
    data = ["--model_name_or_path", tiny_model_dir, "--dataset_name", str(mixed_data)]
    return [*data, *SGD, *LOGGED, "--gradient_accumulation_steps", str(accumulation), *extra]


@pytest.fixture(scope="session")
def ddp_runs(tmp_path_factory, tiny_model_dir, mixed_data):
    """The references: gloo DDP, LLaVA's loss weighting (the default), by accumulation steps (`ddp_runs(2)`: global
    batch 8), each launched once."""
    runs = {}

    def run(accumulation):
        if accumulation not in runs:
            overrides = reference_overrides(tiny_model_dir, mixed_data, accumulation)
            runs[accumulation] = launch(tmp_path_factory.mktemp(f"ddp_ga{accumulation}") / "out", *overrides)
        return runs[accumulation]

    return run


@pytest.fixture(autouse=True)
def _judge_cache_in_tmp(tmp_path_factory, monkeypatch):
    # The judge cache defaults to ~/.cache/hub_llava: tests never read or fill the user's (a cached reply would make a
    # test that counts judge calls pass or fail by what ran before it).
    monkeypatch.setenv("HUB_LLAVA_CACHE", str(tmp_path_factory.mktemp("hub_llava_cache")))


@pytest.fixture(autouse=True)
def _tracebacks_in_process(monkeypatch):
    # In-process calls of the CLI raise as a debug run does, so a test sees the exception itself; the one-line
    # `error:` form of each entry point is tested with subprocesses started without this variable
    # (tests/test_errors.py).
    monkeypatch.setenv("HUB_LLAVA_DEBUG", "1")
