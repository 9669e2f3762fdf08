"""Padding-free (packed) batches: the collator's layout against an independent concatenation of the padded rows, the
loss and every gradient of a packed batch against the same rows padded (both loss weightings), training runs of the
smoke recipe (one process, with and without activation checkpointing; 2-process DDP) packed vs padded, the refusal of an attention implementation that would let the rows see each other, and
`padding_fraction`. Tiny model, float32, CPU."""

import json
import os
from pathlib import Path

import pytest
import torch
from accelerate_runs import launch
from conftest import reference_overrides
from datasets import Dataset
from recipe_runs import run_in_process
from safetensors.torch import load_file
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from trl import DatasetMixtureConfig, ScriptArguments, TrlParser

from hub_llava import cli
from hub_llava.token_stream import IGNORE_INDEX
from hub_llava.training.collator import build_collator, padding_fraction
from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig
from hub_llava.training.model import freeze, load_model, load_processor
from hub_llava.training.trainer import LlavaSFTTrainer

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "sft_smoke" / "train.parquet"
SMOKE = REPO / "recipes" / "tiny" / "sft" / "config_smoke.yaml"
SMOKE_PACKED = REPO / "recipes" / "tiny" / "sft" / "config_smoke_packed.yaml"
N_IMAGE_TOKENS = 4  # the tiny model: 28 px images, 14 px patches

# An attention function that knows nothing of packed rows: the same kernel as sdpa, but registered under a name the
# mask interfaces of transformers do not know, so it gets no block-causal mask (as a kernel from the Hub would).
AttentionInterface.register("row_blind", sdpa_attention_forward)


@pytest.fixture(scope="module")
def rows():
    return [dict(row) for row in Dataset.from_parquet(str(SAMPLES))]


def selections(rows):
    image_rows = [row for row in rows if row["images"]]
    text_rows = [row for row in rows if not row["images"]]
    return {
        "images": image_rows[:4],
        "text_only": text_rows[:3],
        "mixed_lengths": image_rows[4:7] + text_rows[3:],
    }


def sft_args(tmp_path, **kwargs):
    return LlavaSFTConfig(
        output_dir=str(tmp_path / "out"), bf16=False, use_cpu=True, report_to="none", activation_checkpointing=False,
        per_device_train_batch_size=2, **kwargs,
    )  # fmt: skip


def build_trainer(tiny_dir, tmp_path, rows, attn="sdpa", **kwargs):
    model_args = LlavaModelConfig(model_name_or_path=tiny_dir, dtype="float32", attn_implementation=attn)
    args = sft_args(tmp_path, **kwargs)
    processor = load_processor(model_args, args)
    model = load_model(model_args, processor)
    freeze(model)
    return LlavaSFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows[:4]),
        processing_class=processor,
        data_collator=build_collator(processor, args),
    )


def collators(trainer, **kwargs):
    """The padded and the padding-free collator of `trainer`'s processor and settings."""
    args = trainer.args
    padded = build_collator(trainer.processing_class, args)
    packed = build_collator(trainer.processing_class, args)
    padded.padding_free, packed.padding_free = False, True
    for collator in (padded, packed):
        for key, value in kwargs.items():
            setattr(collator, key, value)
    return padded, packed


def concatenated(padded: dict) -> dict:
    """The padding-free batch computed independently from the padded one: each row's real tokens (attention mask),
    one after the other, positions 0..n-1 per row, each row's first label -100 (never a target when padded)."""
    lengths = padded["attention_mask"].sum(dim=1).tolist()
    ids = [padded["input_ids"][i, :n] for i, n in enumerate(lengths)]
    labels = [torch.cat([torch.tensor([IGNORE_INDEX]), padded["labels"][i, 1:n]]) for i, n in enumerate(lengths)]
    bounds = torch.tensor([0] + lengths).cumsum(0).to(torch.int32)
    return {
        "input_ids": torch.cat(ids)[None],
        "labels": torch.cat(labels)[None],
        "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
        "cu_seq_lens_q": bounds,
        "cu_seq_lens_k": bounds,
        "max_length_q": max(lengths),
        "max_length_k": max(lengths),
    }


def loss_and_grads(trainer, batch, num_items_in_batch):
    model = trainer.model.train()  # the trainer's path: counts the packed batch's tokens for its metrics
    model.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=num_items_in_batch)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("assistant_only_loss", [True, False])
@pytest.mark.parametrize("max_length", [None, 60])
def test_packed_batch_is_the_padded_rows_concatenated(tiny_dir, tmp_path, rows, assistant_only_loss, max_length):
    trainer = build_trainer(tiny_dir, tmp_path, rows, assistant_only_loss=assistant_only_loss, max_length=max_length)
    padded_collator, packed_collator = collators(trainer)
    for name, selection in selections(rows).items():
        padded, packed = padded_collator(selection), packed_collator(selection)
        assert "attention_mask" not in packed and packed["input_ids"].shape[0] == 1
        expected = concatenated(padded)
        assert packed.keys() - {"pixel_values"} == expected.keys(), name
        for key, value in expected.items():
            assert torch.equal(torch.as_tensor(packed[key]), torch.as_tensor(value)), (name, key)
        if "pixel_values" in padded:
            assert torch.equal(packed["pixel_values"], padded["pixel_values"])
        else:
            assert "pixel_values" not in packed
        image_id = trainer.processing_class.tokenizer.convert_tokens_to_ids("<image>")
        n_images = sum(len(row["images"]) for row in selection)
        assert int((packed["input_ids"] == image_id).sum()) == N_IMAGE_TOKENS * n_images
    if max_length:  # the truncation really cut rows (the mixed selection's text rows are longer than 60)
        assert padded["input_ids"].shape[1] == max_length


def test_pad_to_multiple_of_pads_the_packed_sequence_with_one_untrained_sequence(tiny_dir, tmp_path, rows):
    trainer = build_trainer(tiny_dir, tmp_path, rows)
    padded_collator, packed_collator = collators(trainer, pad_to_multiple_of=64)
    selection = selections(rows)["images"]
    padded, packed = padded_collator(selection), packed_collator(selection)
    n = int(padded["attention_mask"].sum())
    total = packed["input_ids"].shape[1]
    assert total % 64 == 0 and total > n
    pad_id = trainer.processing_class.tokenizer.pad_token_id
    assert packed["input_ids"][0, n:].eq(pad_id).all() and packed["labels"][0, n:].eq(IGNORE_INDEX).all()
    assert torch.equal(packed["position_ids"][0, n:], torch.arange(total - n))
    assert packed["cu_seq_lens_q"].tolist()[-2:] == [n, total]
    assert padding_fraction([packed], pad_id) == pytest.approx((total - n) / total)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("loss_weighting", ["micro_batch", "global"])
@pytest.mark.parametrize("max_length, assistant_only_loss", [(None, True), (60, True), (None, False)])
def test_loss_and_every_gradient_equal_the_padded_batch(
    tiny_dir, tmp_path, rows, attn, loss_weighting, max_length, assistant_only_loss
):
    trainer = build_trainer(
        tiny_dir, tmp_path, rows, attn,
        loss_weighting=loss_weighting, max_length=max_length, assistant_only_loss=assistant_only_loss,
    )  # fmt: skip
    padded_collator, packed_collator = collators(trainer)
    for name, selection in selections(rows).items():
        padded, packed = padded_collator(selection), packed_collator(selection)
        counts = [trainer._get_num_items_in_batch([batch], torch.device("cpu")) for batch in (padded, packed)]
        if loss_weighting == "micro_batch":
            assert counts == [None, None]
        else:
            assert int(counts[0]) == int(counts[1]) > 0
        padded_loss, padded_grads = loss_and_grads(trainer, padded, counts[0])
        packed_loss, packed_grads = loss_and_grads(trainer, packed, counts[1])
        torch.testing.assert_close(packed_loss, padded_loss, rtol=0, atol=1e-5, msg=name)
        trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
        assert padded_grads.keys() == packed_grads.keys() == trainable, name  # zero image: the projector too
        for key, grad in padded_grads.items():
            torch.testing.assert_close(packed_grads[key], grad, rtol=0, atol=1e-5, msg=f"{name}: {key}")
        projector = padded_grads["model.multi_modal_projector.linear_1.weight"]
        assert bool(projector.any()) == (name != "text_only")  # text-only: the zero image's zero gradient


def test_the_comparison_sees_rows_that_attend_to_each_other(tiny_dir, tmp_path, rows):
    """The equality above is not vacuous: the same packed ids with positions that do not restart (one long row), or
    through a forward that passes a cache (transformers then builds no packed mask: the trainer's has
    `use_cache=False`), give another loss."""
    trainer = build_trainer(tiny_dir, tmp_path, rows)
    padded_collator, packed_collator = collators(trainer)
    selection = selections(rows)["mixed_lengths"]
    padded, packed = padded_collator(selection), packed_collator(selection)
    model = trainer.model
    with torch.no_grad():
        reference = model(**padded, use_cache=False).loss
        assert abs(model(**packed, use_cache=False).loss - reference) < 1e-5
        one_row = {**packed, "position_ids": torch.arange(packed["input_ids"].shape[1])[None]}
        assert abs(model(**one_row, use_cache=False).loss - reference) > 1e-4
        assert abs(model(**packed, use_cache=True).loss - reference) > 1e-4


def test_padding_free_refuses_an_attention_that_cannot_keep_rows_apart(tiny_dir, tmp_path, rows):
    trainer = build_trainer(tiny_dir, tmp_path, rows, "row_blind")  # padded: any attention is fine
    padded_collator, packed_collator = collators(trainer)
    selection = selections(rows)["mixed_lengths"]
    with torch.no_grad():  # what the refusal prevents: the rows silently attend to each other
        padded = trainer.model(**padded_collator(selection), use_cache=False).loss
        packed = trainer.model(**packed_collator(selection), use_cache=False).loss
    assert abs(packed - padded) > 1e-4
    with pytest.raises(ValueError, match=r"padding_free: true needs .*flash_attention_2.*'row_blind'"):
        build_trainer(tiny_dir, tmp_path, rows, "row_blind", padding_free=True)


def test_trl_sees_padding_free_off_and_the_trainer_keeps_it(tiny_dir, tmp_path, rows):
    """TRL 1.16 refuses `padding_free` for a vision dataset and with a custom collator; ours is the collator's."""
    trainer = build_trainer(tiny_dir, tmp_path, rows, padding_free=True)
    assert trainer.args.padding_free and trainer.data_collator.padding_free
    batch = trainer.data_collator(rows[:2])
    assert "position_ids" in batch and "attention_mask" not in batch


def test_micro_batch_log_line_is_the_same_packed(tiny_dir, tmp_path, rows):
    trainer = build_trainer(tiny_dir, tmp_path, rows)
    padded_collator, packed_collator = collators(trainer)
    selection = selections(rows)["mixed_lengths"]
    padded = trainer._describe_micro_batch(padded_collator(selection))
    packed = trainer._describe_micro_batch(packed_collator(selection))
    assert padded.split(": ", 1)[1] == packed.split(": ", 1)[1]
    assert "images; rows (tokens/trained): " in padded


def test_padding_fraction_counts_the_padding_of_each_layout(tiny_dir, tmp_path, rows):
    trainer = build_trainer(tiny_dir, tmp_path, rows)
    padded_collator, packed_collator = collators(trainer)
    pad_id = trainer.processing_class.tokenizer.pad_token_id
    batches = list(selections(rows).values())
    padded = [padded_collator(selection) for selection in batches]
    lengths = [batch["attention_mask"].sum(dim=1).tolist() for batch in padded]
    real = sum(sum(row) for row in lengths)
    computed = sum(max(row) * len(row) for row in lengths)
    assert padding_fraction(padded, pad_id) == pytest.approx(1 - real / computed)
    assert padding_fraction(padded, pad_id) > 0.05
    assert padding_fraction([packed_collator(selection) for selection in batches], pad_id) == 0


def run_recipe(config, tiny_dir, output_dir, *overrides):
    """Runs `recipes/sft.py`'s `main` in this process with `config` plus `overrides`."""
    run_in_process(config, tiny_dir, output_dir, *overrides)
    return output_dir


@pytest.mark.parametrize(
    "loss_weighting, checkpointing", [("micro_batch", "false"), ("global", "false"), ("micro_batch", "true")]
)
def test_smoke_recipe_packed_trains_to_the_same_weights_as_padded(tiny_dir, tmp_path, loss_weighting, checkpointing):
    """The smoke recipes (AdamW, the projector's own learning rate, modality grouping, zero image, 4 rows per device
    and 2 accumulation steps, so some micro-batches mix image and text rows): 4 optimizer steps packed and padded."""
    overrides = ["--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2", "--num_train_epochs", "2"]
    overrides += ["--attn_implementation", "sdpa", "--loss_weighting", loss_weighting]
    overrides += ["--activation_checkpointing", checkpointing]  # the GPU recipes' setting: kwargs through checkpoints
    padded = run_recipe(SMOKE, tiny_dir, tmp_path / "padded", *overrides)
    packed = run_recipe(SMOKE_PACKED, tiny_dir, tmp_path / "packed", *overrides)
    states = [json.loads((out / "trainer_state.json").read_text()) for out in (padded, packed)]
    assert states[0]["global_step"] == states[1]["global_step"] == 4
    losses = [[entry["loss"] for entry in state["log_history"] if "loss" in entry] for state in states]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)  # logged rounded to 4 decimals
    before = load_file(os.path.join(tiny_dir, "model.safetensors"))
    expected, got = (load_file(os.path.join(out, "model.safetensors")) for out in (padded, packed))
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-5, msg=key)
    changed = {key for key in expected if not torch.equal(expected[key], before[key])}
    assert any("multi_modal_projector" in key for key in changed) and any("layers" in key for key in changed)


def test_render_sample_of_the_packed_recipe_is_the_padded_ones(tiny_dir, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    samples = []
    for config in (SMOKE, SMOKE_PACKED):
        assert (
            cli.main(["render-sample", "--config", str(config), "--index", "1", "--model_name_or_path", tiny_dir]) == 0
        )
        samples.append(json.loads(capsys.readouterr().out))
    assert samples[0] == samples[1] and samples[1]["n_tokens"] == 80


def parse(path, *overrides):
    parser = TrlParser((ScriptArguments, LlavaSFTConfig, LlavaModelConfig, DatasetMixtureConfig))  # one per parse:
    return parser.parse_args_and_config(["--config", str(path), *overrides])  # a YAML's values become its defaults


def test_stage_2_recipes_keep_padding_and_the_packed_smoke_recipe_packs():
    stage_2 = sorted((REPO / "recipes").glob("llava-1.5-*/sft/config_*.yaml"))
    assert len(stage_2) >= 10
    for path in stage_2:  # the published recipes train padded unless a user turns it on (the line says how)
        assert "padding_free: false  # true with attn_implementation: flash_attention_2" in path.read_text(), path
        assert parse(path, "--bf16", "false", "--tf32", "false")[1].padding_free is False
    _, training_args, model_args, _ = parse(SMOKE_PACKED)
    assert training_args.padding_free is True and model_args.attn_implementation == "sdpa"


@pytest.mark.slow
def test_two_process_ddp_run_packed_ends_with_the_padded_references_weights(
    tiny_model_dir, mixed_data, ddp_runs, tmp_path
):
    """gloo DDP, 2 ranks x 2 rows x 2 accumulation steps, SGD, a step where one rank has images and the other only text
    (`conftest.ddp_runs`, the distributed tests' padded reference): the packed run trains the same rows on each rank
    (the per-micro-batch log) to the same weights."""
    reference = ddp_runs(2)
    packed_overrides = ["--padding_free", "true", "--attn_implementation", "sdpa"]
    packed = launch(tmp_path / "out", *reference_overrides(tiny_model_dir, mixed_data, 2, *packed_overrides))
    for run in (reference, packed):
        assert run.returncode == 0, run.tail()
    assert packed.micro_batches() == reference.micro_batches() != {}
    expected = load_file(os.path.join(reference.output_dir, "model.safetensors"))
    got = load_file(os.path.join(packed.output_dir, "model.safetensors"))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-5, msg=key)
