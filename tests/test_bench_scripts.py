"""The GPU check script, run on this CPU at tiny widths: it trains both layouts on the same rows and reports them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_and_both_layouts_train_the_same_rows():
    command = [sys.executable, "bench/gpu_check.py", "--device", "cpu", "--tiny", "--layers", "1", "--rows", "4"]
    command += ["--steps", "2", "--warmup", "1", "--attn", "sdpa,eager"]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True, timeout=300).stdout
    results = json.loads(out[out.index("[\n") :])
    assert [(r["attn_implementation"], r["layout"]) for r in results] == [
        ("sdpa", "padded"), ("sdpa", "padding_free"), ("eager", "padded"), ("eager", "padding_free"),
    ]  # fmt: skip
    padded, packed = results[0], results[1]
    assert packed["padding_fraction"] == 0 < padded["padding_fraction"]
    for result in results[1:]:  # same rows, same init, three steps: the same model (to bf16 rounding)
        assert result["final_loss"] == pytest.approx(padded["final_loss"], abs=2e-3)
    assert all(r["tokens_per_s"] > 0 and r["mfu"] is None for r in results)  # no peak known on a CPU
