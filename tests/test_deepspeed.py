"""ZeRO-2 and ZeRO-3 for real: the smoke recipe under the shipped `recipes/accelerate_configs/zero{2,3}.yaml`, on 2 CPU
processes (DeepSpeed's CPU accelerator, gloo), with a step where one rank has images and the other only text.

CPU overrides (`accelerate_runs.launch`): `--num_processes 2` and `--mixed_precision no`. A hang is a failure: the
run is killed after its time limit and the test fails with the end of its log. The runs are the DDP references of
`conftest.ddp_runs` under DeepSpeed: ZeRO-2 without gradient accumulation (bitwise equal to DDP: both reduce each
step's gradients once), ZeRO-3 with 2 accumulation steps (DeepSpeed's own scaling by its accumulation setting is off,
the loss is LLaVA's; it reduces every micro-batch where DDP reduces once per step, so equal to rounding).
"""

import json
from pathlib import Path

import pytest
import torch
from accelerate_runs import REPO, launch, relative_error, state_dict, update_of
from conftest import reference_overrides
from safetensors import safe_open

from hub_llava import cli

pytestmark = pytest.mark.slow

ACCUMULATION = {"zero2": 1, "zero3": 2}


@pytest.fixture(scope="module")
def zero_run(tmp_path_factory, tiny_model_dir, mixed_data):
    """`zero_run("zero3")`: the DDP reference's settings under `recipes/accelerate_configs/zero3.yaml` (launched once)."""
    runs = {}

    def run(stage):
        if stage not in runs:
            overrides = reference_overrides(tiny_model_dir, mixed_data, ACCUMULATION[stage])
            runs[stage] = launch(tmp_path_factory.mktemp(stage) / "out", *overrides, config=f"{stage}.yaml")
        return runs[stage]

    return run


def finished(run):
    assert run.returncode is not None, f"hung: killed after {run.seconds:.0f} s\n{run.tail()}"
    assert run.returncode == 0, run.tail()
    return run


@pytest.mark.parametrize("stage", ["zero3", "zero2"])
def test_a_step_with_images_on_one_rank_and_text_only_on_the_other_finishes(zero_run, rows, stage):
    run = finished(zero_run(stage))
    batches = run.micro_batches()
    # The last global batch holds LLaVA's mixed leftovers: rank 0 images, rank 1 text only, in its last micro-batch.
    steps = len(rows.dataset) // (2 * 2 * ACCUMULATION[stage])
    micro = ACCUMULATION[stage] - 1
    assert batches[(steps, micro, 0)]["kind"] == "images"
    assert batches[(steps, micro, 1)]["kind"] == "text-only" and batches[(steps, micro, 1)]["zero_image"]
    assert json.loads((run.output_dir / "trainer_state.json").read_text())["global_step"] == steps
    assert rows.rows_of(run) == rows.expected_rows(batch_size=2, accumulation=ACCUMULATION[stage])


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_first_update_follows_llavas_loss_weighting(zero_run, rows, stage):
    run = finished(zero_run(stage))
    step = {(micro, rank): ids for (s, micro, rank), ids in rows.rows_of(run).items() if s == 1}
    got = update_of(run.output_dir, state_dict(rows.model_args.model_name_or_path), "checkpoint-1")
    error = relative_error(got, rows.expected_update(step, "micro_batch"))
    assert error < 1e-5, error


def test_weights_equal_ddp_after_the_same_steps(zero_run, ddp_runs):
    zero2, ddp = state_dict(finished(zero_run("zero2")).output_dir), state_dict(finished(ddp_runs(1)).output_dir)
    assert zero2.keys() == ddp.keys()
    assert [name for name in ddp if not torch.equal(zero2[name], ddp[name])] == []
    zero3, ddp = state_dict(finished(zero_run("zero3")).output_dir), state_dict(finished(ddp_runs(2)).output_dir)
    assert zero3.keys() == ddp.keys()
    assert max((zero3[name] - ddp[name]).abs().max().item() for name in ddp) <= 1e-6


def test_checkpoints_have_the_usual_key_names_and_load_for_eval(zero_run, ddp_runs, tiny_model_dir, tmp_path):
    def keys(folder):
        with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
            return set(f.keys())

    expected = keys(finished(ddp_runs(2)).output_dir)
    assert expected == keys(Path(tiny_model_dir))  # Llava's legacy names, as save_pretrained writes them
    for stage in ("zero2", "zero3"):
        out = finished(zero_run(stage)).output_dir
        assert keys(out) == expected and keys(out / "checkpoint-1") == expected
    summary = tmp_path / "eval"
    argv = ["eval", "--model", str(out), "--benchmarks", "pope", "--data_dir", str(REPO / "samples" / "eval")]
    assert cli.main([*argv, "--output_dir", str(summary), "--max_new_tokens", "2", "--limit", "4"]) == 0
    assert json.loads((summary / "results.json").read_text())["results"]["pope"]["n"] == 4
