"""`LlavaSFTTrainer`'s LLaVA details in one process: the zero image inside the model's forward, the loss weighting,
the per-micro-batch log, and the start-up check of the launcher's mixed precision. The multi-process behaviour of the
same code is in `test_training_distributed.py` and `test_deepspeed.py`."""

import logging
import runpy
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from hub_llava.data.schema import BASE_FEATURES
from hub_llava.training.collator import build_collator
from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig, check_mixed_precision
from hub_llava.training.model import add_zero_image_hook, freeze, load_model, load_processor
from hub_llava.training.trainer import LlavaSFTTrainer

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "sft_smoke" / "train.parquet"


@pytest.fixture(scope="module")
def rows():
    dataset = Dataset.from_parquet(str(SAMPLES))
    return [dict(row) for row in dataset if row["images"]][:2], [dict(row) for row in dataset if not row["images"]][:2]


def build(tiny_dir, tmp_path, **kwargs):
    model_args = LlavaModelConfig(model_name_or_path=tiny_dir, dtype="float32")
    args = LlavaSFTConfig(
        output_dir=str(tmp_path / "out"), bf16=False, use_cpu=True, report_to="none", activation_checkpointing=False,
        per_device_train_batch_size=2, **kwargs,
    )  # fmt: skip
    processor = load_processor(model_args, args)
    model = load_model(model_args, processor)
    freeze(model)
    return model, build_collator(processor, args), args, processor


def parameter_order(model, batch) -> list[str]:
    """The modules that own parameters, in the order a forward calls them (what ZeRO-3 gathers, step by step)."""
    called, handles = [], []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            handles.append(module.register_forward_pre_hook(lambda m, a, name=name: called.append(name)))
    model(**{k: v for k, v in batch.items() if k != "labels"})
    for handle in handles:
        handle.remove()
    return called


def test_zero_image_runs_the_modules_of_an_image_batch_in_the_same_order(tiny_dir, tmp_path, rows):
    model, collator, _, _ = build(tiny_dir, tmp_path)
    image_batch, text_batch = collator(rows[0]), collator(rows[1])
    assert "pixel_values" in image_batch and "pixel_values" not in text_batch
    with_images = parameter_order(model, image_batch)
    skipped = parameter_order(model, text_batch)
    assert [name for name in with_images if "vision_tower" in name or "projector" in name]
    assert skipped == [name for name in with_images if "vision_tower" not in name and "projector" not in name]
    add_zero_image_hook(model)
    assert parameter_order(model, text_batch) == with_images  # embeddings, vision tower, projector, LLM


def test_zero_image_leaves_the_loss_and_gives_the_projector_a_zero_gradient(tiny_dir, tmp_path, rows):
    model, collator, _, _ = build(tiny_dir, tmp_path)
    batch = collator(rows[1])
    plain = model(**batch).loss
    projector = model.model.multi_modal_projector.linear_1.weight
    plain.backward()
    assert projector.grad is None  # no image, no projector: AdamW would skip it, DDP and ZeRO would disagree
    handle = add_zero_image_hook(model)
    spliced = model(**batch).loss
    torch.testing.assert_close(spliced, plain, rtol=0, atol=0)
    spliced.backward()
    assert projector.grad is not None and torch.count_nonzero(projector.grad) == 0
    handle.remove()
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    assert projector.grad is None


def test_zero_image_runs_once_per_generation_not_per_decoded_token(tiny_dir, tmp_path, rows):
    model, collator, _, processor = build(tiny_dir, tmp_path)
    add_zero_image_hook(model)
    calls = []
    model.model.vision_tower.register_forward_pre_hook(lambda *_: calls.append(1))
    inputs = processor.tokenizer(["USER: Describe a street. ASSISTANT:"], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4 and len(calls) == 1


@pytest.mark.parametrize("choice, hooked", [("yes", True), ("no", False)])
def test_the_trainer_hooks_the_zero_image_by_default(tiny_dir, tmp_path, rows, choice, hooked):
    model, collator, args, processor = build(tiny_dir, tmp_path, zero_image_for_text_only=choice)
    assert LlavaSFTConfig(output_dir=str(tmp_path), use_cpu=True).zero_image_for_text_only == "yes"
    trainer = LlavaSFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_parquet(str(SAMPLES)), processing_class=processor,
        data_collator=collator,
    )  # fmt: skip
    calls = []
    trainer.model.model.vision_tower.register_forward_pre_hook(lambda *_: calls.append(1))
    trainer.model(**{k: v for k, v in collator(rows[1]).items() if k != "labels"})
    assert len(calls) == int(hooked)


def test_loss_weighting_defaults_to_llavas_per_micro_batch_mean(tiny_dir, tmp_path, rows):
    model, collator, args, processor = build(tiny_dir, tmp_path, gradient_accumulation_steps=2)
    assert args.loss_weighting == "micro_batch"
    trainer = LlavaSFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_parquet(str(SAMPLES)), processing_class=processor,
        data_collator=collator,
    )  # fmt: skip
    batches = [collator(rows[0]), collator(rows[1])]
    assert trainer._get_num_items_in_batch(batches, trainer.args.device) is None
    trainer.args.loss_weighting = "global"  # transformers 5's count: every trained token of the step
    trained = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    assert int(trainer._get_num_items_in_batch(batches, trainer.args.device)) == trained


def test_each_micro_batch_is_logged_at_debug_level(tiny_dir, tmp_path, rows, caplog):
    model, collator, args, processor = build(
        tiny_dir, tmp_path, gradient_accumulation_steps=2, max_steps=1, optim="sgd", group_by_modality_length=True
    )
    # One global batch of 4: the sampler's mixed tail, in index order: micro-batch 0 the images, 1 the text rows.
    trainer = LlavaSFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows[0] + rows[1], features=BASE_FEATURES),
        processing_class=processor, data_collator=collator, modality_lengths=[5, 6, -7, -8],
    )  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger="hub_llava.training.trainer"):
        trainer.train()
    lines = [r.getMessage() for r in caplog.records if "micro-batch" in r.getMessage()]
    sizes = [collator([row]) for row in rows[0] + rows[1]]
    sizes = [f"{int(b['attention_mask'].sum())}/{int((b['labels'][0, 1:] != -100).sum())}" for b in sizes]
    assert lines == [
        f"rank 0 step 1 micro-batch 0: images; rows (tokens/trained): {sizes[0]} {sizes[1]}",
        f"rank 0 step 1 micro-batch 1: text-only (zero image); rows (tokens/trained): {sizes[2]} {sizes[3]}",
    ]


@pytest.mark.parametrize(
    "launcher, recipe, ok",
    [
        ("bf16", {"bf16": False}, False),
        ("fp16", {"bf16": True}, False),
        ("bf16", {"fp16": True, "bf16": False}, False),
        ("bf16", {"bf16": True}, True),
        ("bf16", {}, True),  # TRL: bf16 unless fp16
        ("fp16", {"fp16": True, "bf16": False}, True),
        ("no", {"bf16": True}, True),  # accelerate's default when nothing is configured: the recipe decides
        (None, {"bf16": False}, True),  # not launched by accelerate
    ],
)
def test_launcher_precision_must_agree_with_the_recipe(launcher, recipe, ok):
    args = type("Args", (), {"bf16": None, "fp16": False, **recipe})
    if ok:
        check_mixed_precision(args, launcher)
    else:
        with pytest.raises(
            ValueError, match=f"accelerate launch has mixed_precision={launcher} but the recipe has bf16="
        ):
            check_mixed_precision(args, launcher)


def test_recipe_stops_at_start_up_with_one_error_line_on_a_precision_mismatch(monkeypatch, capsys):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch` sets from zero3.yaml
    monkeypatch.delenv("HUB_LLAVA_DEBUG")  # the user's view: one line, no traceback
    config = REPO / "recipes" / "tiny" / "sft" / "config_smoke.yaml"  # bf16: false
    monkeypatch.setattr(sys, "argv", ["recipes/sft.py", "--config", str(config)])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO / "recipes" / "sft.py"), run_name="__main__")
    assert exit_.value.code == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith(
            "error: accelerate launch has mixed_precision=bf16 but the recipe has bf16=false, fp16=false: make them agree "
            "(`accelerate launch --mixed_precision no`, or `--bf16 true --fp16 false` for the recipe)"
        )
    )
