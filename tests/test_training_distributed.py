"""The recipe under 2-process gloo DDP (`accelerate launch --multi_gpu --num_processes 2` on CPU): LLaVA's loss
weighting computed by hand, the modality sampler with `world_size x per_device x accumulation` as its global batch,
and a step where one rank has images and the other only text.

Each run trains the mixed rows of `accelerate_runs.mixed_rows()` with plain SGD (lr known), so the first update is
`-lr x gradient` and can be checked against the gradient of a loss written out by hand from per-row losses of the same
initial model.
"""

import json

import pytest
from accelerate_runs import launch, relative_error, state_dict, update_of
from conftest import reference_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, mixed_data, ddp_runs):
    """The references (`micro_batch` weighting, with and without accumulation) and the global mean."""
    global_mean = reference_overrides(tiny_model_dir, mixed_data, 2, "--loss_weighting", "global")
    return {
        ("micro_batch", 2): ddp_runs(2),
        ("micro_batch", 1): ddp_runs(1),
        ("global", 2): launch(tmp_path_factory.mktemp("ddp_global") / "out", *global_mean),
    }


def finished(run):
    assert run.returncode is not None, f"hung: killed after {run.seconds:.0f} s\n{run.tail()}"
    assert run.returncode == 0, run.tail()
    return run


def first_step(rows, run):
    """`(micro_batch, rank) -> row indices` of the run's first optimizer step, read from its log."""
    return {(micro, rank): ids for (step, micro, rank), ids in rows.rows_of(run).items() if step == 1}


@pytest.mark.parametrize("weighting, accumulation", [("micro_batch", 2), ("micro_batch", 1), ("global", 2)])
def test_first_update_is_the_hand_computed_gradient_of_the_chosen_weighting(runs, rows, weighting, accumulation):
    run = finished(runs[weighting, accumulation])
    step = first_step(rows, run)
    assert len(step) == 2 * accumulation
    assert len({rows.signatures[i][1] for ids in step.values() for i in ids}) > 1  # rows of different trained lengths
    got = update_of(run.output_dir, state_dict(rows.model_args.model_name_or_path), "checkpoint-1")
    expected = rows.expected_update(step, weighting)
    other = rows.expected_update(step, "global" if weighting == "micro_batch" else "micro_batch")
    error, error_of_other = relative_error(got, expected), relative_error(got, other)
    assert error < 1e-5, (error, error_of_other)  # float32 rounding: ~1e-7
    assert error_of_other > 1e-3, (error, error_of_other)  # the two weightings differ on these rows: it can fail
    assert {name for name in got if got[name].abs().max() > 0} == set(expected)  # the vision tower stays frozen


@pytest.mark.parametrize("weighting, accumulation", [("micro_batch", 2), ("micro_batch", 1), ("global", 2)])
def test_each_ranks_micro_batches_are_the_modality_samplers(runs, rows, weighting, accumulation):
    run = finished(runs[weighting, accumulation])
    assert rows.rows_of(run) == rows.expected_rows(batch_size=2, accumulation=accumulation)
    if accumulation > 1:  # a sampler cut into megabatches of world_size x per_device only would give another order
        assert rows.rows_of(run) != rows.expected_rows(batch_size=2, accumulation=1)
    steps = json.loads((run.output_dir / "trainer_state.json").read_text())["global_step"]
    assert steps == len(rows.dataset) // (2 * 2 * accumulation)


@pytest.mark.parametrize("accumulation", [2, 1])
def test_one_rank_with_images_and_the_other_text_only_in_the_same_micro_batch(runs, accumulation):
    batches = finished(runs["micro_batch", accumulation]).micro_batches()
    last_step = max(step for step, _, _ in batches)
    micro = accumulation - 1  # the last micro-batch of the last global batch (see accelerate_runs.mixed_rows)
    assert batches[(last_step, micro, 0)]["kind"] == "images"
    assert batches[(last_step, micro, 1)]["kind"] == "text-only" and batches[(last_step, micro, 1)]["zero_image"]
