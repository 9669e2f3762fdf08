"""The token budget of padding-free batches (`max_tokens_per_batch`): the batch sampler checked against the budget, the
rows and the modality rule directly (not against a second implementation), how accelerate deals its batches to the
ranks and skips them on resume, the start-up errors, a 1-process smoke run whose batches the model saw respect the
budget (and a resumed run that sees the same batches), and a 2-process gloo DDP run whose steps are each one modality
on both ranks. Tiny model, CPU."""

import collections
import json
import random
from pathlib import Path

import pytest
import torch
from accelerate.data_loader import prepare_data_loader, skip_first_batches
from accelerate_runs import WORLD_SIZE, launch
from conftest import reference_overrides
from recipe_runs import run_in_process
from torch.utils.data import DataLoader
from trl import DatasetMixtureConfig, ScriptArguments, TrlParser

from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig
from hub_llava.training.sampler import TokenBudgetBatchSampler, token_budget_batches
from hub_llava.training.trainer import LlavaSFTTrainer

REPO = Path(__file__).resolve().parents[1]
BUDGET_RECIPE = REPO / "recipes" / "tiny" / "sft" / "config_smoke_budget.yaml"


def length_mix(n=400, seed=0):
    """Token counts and modality signs: 85% image rows (60-700 tokens), 15% text-only rows (20-900 tokens)."""
    rng = random.Random(seed)
    image = [rng.random() < 0.85 for _ in range(n)]
    tokens = [rng.randint(60, 700) if im else rng.randint(20, 900) for im in image]
    return tokens, [1 if im else -1 for im in image]


def steps_of(batches, n_batches):
    return [batches[start : start + n_batches] for start in range(0, len(batches), n_batches)]


def check_epoch(batches, tokens, signs, budget, n_batches, world_size):
    """What every epoch must be: each batch within the budget, every row exactly once, a batch count that is a
    multiple of world_size, each global step one modality except one mixed step among the last two."""
    assert all(sum(tokens[i] for i in batch) <= budget for batch in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(len(tokens)))
    assert len(batches) % world_size == 0
    kinds = [{signs[i] for batch in step for i in batch} for step in steps_of(batches, n_batches)]
    mixed = [k for k, kind in enumerate(kinds) if len(kind) > 1]
    assert len(mixed) <= 1 and all(k >= len(kinds) - 2 for k in mixed), kinds
    for batch in batches:  # a batch never mixes modalities
        assert len({signs[i] for i in batch}) == 1


@pytest.mark.parametrize("budget, n_batches, world_size", [(2048, 8, 2), (900, 4, 4), (4096, 6, 3), (1000, 1, 1)])
def test_every_epoch_keeps_the_budget_the_rows_and_the_modality_rule(budget, n_batches, world_size):
    tokens, signs = length_mix()
    sampler = TokenBudgetBatchSampler(tokens, signs, budget, n_batches, world_size, seed=3, epochs=3)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)  # the same count in every epoch: max_steps and the schedule hold
        check_epoch(batches, tokens, signs, budget, n_batches, world_size)
        epochs.append(batches)
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled per epoch
    sampler.set_epoch(1)
    assert list(sampler) == epochs[1]  # from seed + epoch only
    again = TokenBudgetBatchSampler(tokens, signs, budget, n_batches, world_size, seed=3, epochs=3)
    assert list(again) == epochs[0]  # what another rank builds
    other_seed = TokenBudgetBatchSampler(tokens, signs, budget, n_batches, world_size, seed=4, epochs=3)
    assert list(other_seed) != epochs[0]
    rows_per_batch = [len(batch) for batch in epochs[0]]
    assert max(rows_per_batch) > 2 * min(rows_per_batch)  # the rows per batch follow their lengths


def test_batches_are_filled_until_the_next_row_would_not_fit():
    """Next-fit: in each modality's fill order a batch closes only when its next row would exceed the budget, so every
    batch but each modality's last holds more than budget - the longest row."""
    tokens, signs = length_mix()
    budget = 2000
    batches = token_budget_batches(tokens, signs, budget, 8, torch.Generator().manual_seed(0))
    underfull = [batch for batch in batches if sum(tokens[i] for i in batch) <= budget - max(tokens)]
    assert len(underfull) <= 2


def test_an_epoch_with_fewer_batches_cuts_batches_in_two_and_repeats_no_row():
    tokens, signs = length_mix()
    natural = token_budget_batches(tokens, signs, 2048, 8, torch.Generator().manual_seed(0))
    grown = token_budget_batches(tokens, signs, 2048, 8, torch.Generator().manual_seed(0), n_total=len(natural) + 7)
    assert len(grown) == len(natural) + 7
    check_epoch(grown, tokens, signs, 2048, 8, 1)
    with pytest.raises(RuntimeError, match="more than the 3 planned"):
        token_budget_batches(tokens, signs, 2048, 8, torch.Generator().manual_seed(0), n_total=3)


def test_single_row_batches_that_cannot_split_repeat_rows_to_a_multiple_of_world_size():
    tokens, signs = [100] * 5, [1] * 5  # every row fills the budget: 5 single-row batches, 2 ranks
    batches = list(TokenBudgetBatchSampler(tokens, signs, 100, 2, world_size=2))
    assert len(batches) == 6 and all(len(batch) == 1 for batch in batches)
    counts = collections.Counter(i for batch in batches for i in batch)
    assert set(counts) == set(range(5)) and sorted(counts.values()) == [1, 1, 1, 1, 2]


def test_a_row_longer_than_the_budget_is_named():
    with pytest.raises(ValueError, match=r"row 2 has 300 tokens, more than max_tokens_per_batch \(200\)"):
        TokenBudgetBatchSampler([10, 20, 300], [1, 1, -1], 200, 1)


def test_length_sorted_windows_keep_the_budget_the_rows_and_the_modality_rule():
    tokens, signs = length_mix()
    batches = token_budget_batches(tokens, signs, 2048, 8, torch.Generator().manual_seed(0), sort=True)
    check_epoch(batches, tokens, signs, 2048, 8, 1)
    lengths = [[tokens[i] for i in batch] for batch in batches]
    assert sum(row == sorted(row, reverse=True) for row in lengths) > 0.8 * len(lengths)  # sorted within windows


def dataset_of(n):
    return [{"index": i} for i in range(n)]


def rank_loaders(sampler, world_size):
    """The DataLoader each rank trains on: accelerate's `prepare_data_loader`, as `Trainer` gets it."""
    loader = DataLoader(dataset_of(len(sampler.tokens)), batch_sampler=sampler, collate_fn=lambda rows: rows)
    return [
        prepare_data_loader(loader, num_processes=world_size, process_index=rank, put_on_device=False)
        for rank in range(world_size)
    ]


def test_accelerate_deals_each_rank_its_own_batches_of_every_step_and_skips_them_on_resume():
    tokens, signs = length_mix()
    world_size, accumulation = 2, 3
    sampler = TokenBudgetBatchSampler(tokens, signs, 1500, world_size * accumulation, world_size, seed=1, epochs=2)
    sampler.set_epoch(1)
    expected = list(sampler)
    loaders = rank_loaders(sampler, world_size)
    seen = [[[row["index"] for row in batch] for batch in loader] for loader in loaders]
    assert [len(loader) for loader in loaders] == [len(s) for s in seen] == [len(expected) // world_size] * 2
    for rank in range(world_size):  # rank r: the r-th, (r + world_size)-th, ... batch; so a step's rows are its own
        assert seen[rank] == expected[rank::world_size]
    skip = 2 * accumulation  # resumed after 2 optimizer steps: Trainer skips that many batches of each rank
    for rank, loader in enumerate(loaders):
        resumed = skip_first_batches(loader, skip)
        assert [[row["index"] for row in batch] for batch in resumed] == seen[rank][skip:]


def test_max_tokens_per_batch_needs_padding_free_and_room_for_max_length(tmp_path):
    common = {"output_dir": str(tmp_path), "use_cpu": True, "bf16": False, "report_to": "none"}
    with pytest.raises(
        ValueError, match="max_tokens_per_batch: 4096 needs padding_free: true.*set padding_free: true"
    ):
        LlavaSFTConfig(max_tokens_per_batch=4096, **common)
    with pytest.raises(
        ValueError, match=r"max_tokens_per_batch \(1000\) is smaller than max_length \(2048\).*at least"
    ):
        LlavaSFTConfig(max_tokens_per_batch=1000, padding_free=True, **common)
    args = LlavaSFTConfig(max_tokens_per_batch=2048, padding_free=True, **common)
    assert args.max_tokens_per_batch == 2048


def test_the_recipe_refuses_a_budget_below_max_length():
    parser = TrlParser((ScriptArguments, LlavaSFTConfig, LlavaModelConfig, DatasetMixtureConfig))
    with pytest.raises(ValueError, match=r"max_tokens_per_batch \(90\) is smaller than max_length \(96\)"):
        parser.parse_args_and_config(["--config", str(BUDGET_RECIPE), "--max_tokens_per_batch", "90"])


def run_recipe(output_dir, tiny_dir, *overrides):
    """`recipes/sft.py`'s `main` in this process on the budget smoke recipe; returns each micro-batch the model saw:
    `(global step, images?, per-row token counts)`."""
    seen = []
    training_step = LlavaSFTTrainer.training_step

    def recording_step(self, model, inputs, num_items_in_batch=None):
        bounds = inputs["cu_seq_lens_q"].tolist()
        rows = [end - start for start, end in zip(bounds, bounds[1:])]
        seen.append((self.state.global_step + 1, "pixel_values" in inputs, rows))
        return training_step(self, model, inputs, num_items_in_batch)

    LlavaSFTTrainer.training_step = recording_step
    try:
        run_in_process(BUDGET_RECIPE, tiny_dir, output_dir, *overrides)
    finally:
        LlavaSFTTrainer.training_step = training_step
    return seen


# The smoke data's rows as the tiny model counts them (4 image tokens): 12 image rows, 4 text-only rows.
SMOKE_IMAGE_TOKENS = [62, 80, 65, 81] * 3
SMOKE_TEXT_TOKENS = [52, 60, 57, 59]


@pytest.mark.parametrize("loss_weighting", ["micro_batch", "global"])
def test_smoke_run_trains_on_batches_within_the_budget(tiny_dir, tmp_path, caplog, loss_weighting):
    overrides = ["--gradient_accumulation_steps", "2", "--num_train_epochs", "2", "--loss_weighting", loss_weighting]
    with caplog.at_level("INFO", logger="hub_llava"):
        seen = run_recipe(tmp_path / "out", tiny_dir, *overrides)
    assert all(sum(rows) <= 200 for _, _, rows in seen)
    assert any(len(rows) != 2 for _, _, rows in seen)  # the budget, not per_device_train_batch_size, sets the rows
    image = sorted(n for _, images, rows in seen if images for n in rows)
    text = sorted(n for _, images, rows in seen if not images for n in rows)
    assert image == sorted(SMOKE_IMAGE_TOKENS * 2) and text == sorted(SMOKE_TEXT_TOKENS * 2)  # every row, each epoch
    by_step = collections.defaultdict(set)
    for step, images, _ in seen:
        by_step[step].add(images)
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == max(by_step) == len(seen) // 2  # 2 micro-batches per step, as len() said
    per_epoch = state["global_step"] // 2
    mixed = [step for step, kinds in by_step.items() if len(kinds) > 1]
    assert all(step % per_epoch == 0 for step in mixed)  # only an epoch's last step may mix
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == state["global_step"] and all(0 < loss < 20 for loss in losses)
    assert "per_device_train_batch_size=2 is unused" in caplog.text


def test_without_modality_grouping_the_budget_fills_batches_from_all_rows(tiny_dir, tmp_path):
    seen = run_recipe(tmp_path / "out", tiny_dir, "--group_by_modality_length", "false")
    assert all(sum(rows) <= 200 for _, _, rows in seen)
    assert sorted(n for _, _, rows in seen for n in rows) == sorted(SMOKE_IMAGE_TOKENS + SMOKE_TEXT_TOKENS)
    # the two modalities' token counts differ here, so a batch holding both is visible
    assert any(set(rows) & set(SMOKE_IMAGE_TOKENS) and set(rows) & set(SMOKE_TEXT_TOKENS) for _, _, rows in seen)


def test_a_resumed_run_trains_on_the_batches_the_whole_run_did(tiny_dir, tmp_path):
    """Resumed in the second epoch, from a checkpoint mid-epoch: the steps after it see the rows the uninterrupted
    run saw (the epoch's order from seed + epoch, the finished micro-batches skipped)."""
    overrides = ["--gradient_accumulation_steps", "2", "--num_train_epochs", "2"]
    overrides += ["--save_strategy", "steps", "--save_steps", "1"]
    whole = run_recipe(tmp_path / "out", tiny_dir, *overrides)
    steps = max(step for step, _, _ in whole)
    resume_at = steps // 2 + 1  # the second epoch's first step done
    checkpoint = tmp_path / "out" / f"checkpoint-{resume_at}"
    resumed = run_recipe(tmp_path / "resumed", tiny_dir, *overrides, "--resume_from_checkpoint", str(checkpoint))
    assert resumed == [batch for batch in whole if batch[0] > resume_at] != []


DDP_BUDGET, DDP_ACCUMULATION = 250, 2  # 2 image rows or 3 text rows of `mixed_rows` per batch


def ddp_overrides(tiny_model_dir, mixed_data, *extra):
    overrides = ["--padding_free", "true", "--attn_implementation", "sdpa", "--max_length", "128"]
    overrides += ["--max_tokens_per_batch", str(DDP_BUDGET), "--num_train_epochs", "2", *extra]
    return reference_overrides(tiny_model_dir, mixed_data, DDP_ACCUMULATION, *overrides)


@pytest.fixture(scope="module")
def ddp_budget_run(tiny_model_dir, mixed_data, tmp_path_factory):
    """gloo DDP, 2 ranks x 2 accumulation steps, 2 epochs, a checkpoint per step."""
    run = launch(tmp_path_factory.mktemp("ddp_budget") / "out", *ddp_overrides(tiny_model_dir, mixed_data))
    assert run.returncode == 0, run.tail()
    return run


@pytest.mark.slow
def test_two_process_ddp_run_keeps_each_step_one_modality_on_both_ranks(rows, ddp_budget_run):
    """Each rank's micro-batches are exactly the sampler's batches dealt as accelerate deals them (rank r the r-th,
    (r + 2)-th, ... of each epoch), within the budget, every row once per epoch, as many on both ranks, and every step
    one modality on both ranks but an epoch's tail step."""
    got = rows.rows_of(ddp_budget_run)
    tokens = [signature[0] for signature in rows.signatures]
    n_batches = WORLD_SIZE * DDP_ACCUMULATION
    sampler = TokenBudgetBatchSampler(tokens, rows.modality_lengths, DDP_BUDGET, n_batches, WORLD_SIZE, 42, epochs=2)
    steps_per_epoch = len(sampler) // n_batches
    expected = {}
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for j, batch in enumerate(sampler):
            step = epoch * steps_per_epoch + j // n_batches + 1
            expected[step, (j % n_batches) // WORLD_SIZE, j % WORLD_SIZE] = batch
    assert got == expected
    for epoch in range(2):
        epoch_rows = [
            i for (step, _, _), batch in got.items() if (step - 1) // steps_per_epoch == epoch for i in batch
        ]
        assert sorted(epoch_rows) == list(range(len(tokens)))
    assert all(sum(tokens[i] for i in batch) <= DDP_BUDGET for batch in got.values())
    assert max(len(batch) for batch in got.values()) == 3  # text rows: 3 per batch, not per_device_train_batch_size
    kinds = collections.defaultdict(set)
    for (step, _, _), batch in got.items():
        kinds[step] |= {rows.modality_lengths[i] > 0 for i in batch}
    assert all(len(kind) == 1 for step, kind in kinds.items() if step % steps_per_epoch)
    micro_batches = collections.Counter(rank for _, _, rank in got)
    assert micro_batches[0] == micro_batches[1] == len(sampler)  # len(sampler) // 2 per epoch, 2 epochs


@pytest.mark.slow
def test_two_process_ddp_run_resumed_in_the_second_epoch_sees_the_same_batches(
    rows, tiny_model_dir, mixed_data, ddp_budget_run, tmp_path
):
    """Resumed from a checkpoint inside the second epoch, each rank trains on the batches of the uninterrupted run.
    (Without `LlavaSFTTrainer._run_epoch` setting the epoch, accelerate's `SkipBatchSampler` over `BatchSamplerShard`
    never reaches the sampler's `set_epoch`, and the resumed epoch replays the first epoch's order.)"""
    whole = rows.rows_of(ddp_budget_run)
    steps = max(step for step, _, _ in whole)
    resume_at = steps // 2 + 1
    checkpoint = ddp_budget_run.output_dir / f"checkpoint-{resume_at}"
    extra = ["--resume_from_checkpoint", str(checkpoint)]
    resumed = launch(tmp_path / "out", *ddp_overrides(tiny_model_dir, mixed_data, *extra))
    assert resumed.returncode == 0, resumed.tail()
    assert rows.rows_of(resumed) == {key: batch for key, batch in whole.items() if key[0] > resume_at} != {}


@pytest.mark.slow
def test_two_process_ddp_run_of_the_modality_sampler_resumed_in_the_second_epoch_sees_the_same_batches(
    rows, tiny_model_dir, mixed_data, tmp_path
):
    """The same resume with LLaVA's fixed-size `ModalityLengthGroupedSampler` (padded, 2 rows per device): before
    `LlavaSFTTrainer._run_epoch` set the epoch, a multi-rank run resumed in its second epoch replayed epoch 0's order."""
    overrides = ["--num_train_epochs", "2"]
    whole = launch(tmp_path / "whole", *reference_overrides(tiny_model_dir, mixed_data, DDP_ACCUMULATION, *overrides))
    assert whole.returncode == 0, whole.tail()
    batches = rows.rows_of(whole)
    resume_at = max(step for step, _, _ in batches) // 2 + 1
    overrides += ["--resume_from_checkpoint", str(whole.output_dir / f"checkpoint-{resume_at}")]
    resumed = launch(tmp_path / "out", *reference_overrides(tiny_model_dir, mixed_data, DDP_ACCUMULATION, *overrides))
    assert resumed.returncode == 0, resumed.tail()
    assert rows.rows_of(resumed) == {key: batch for key, batch in batches.items() if key[0] > resume_at} != {}
