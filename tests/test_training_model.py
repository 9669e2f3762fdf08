"""Model setup and the trainer's LLaVA details: components, frozen vision tower, LoRA targets, projector LR, zero image."""

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from peft import get_peft_model
from transformers import CLIPVisionModel, LlamaForCausalLM

from hub_llava.testing import tiny_llava, tiny_tokenizer
from hub_llava.training.collator import build_collator
from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig
from hub_llava.training.model import freeze, load_model, load_processor, lora_config, quantization_config
from hub_llava.training.trainer import LlavaSFTTrainer

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "sft_smoke" / "train.parquet"


def sft_args(tmp_path, **kwargs):
    return LlavaSFTConfig(
        output_dir=str(tmp_path / "out"),
        bf16=False,
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=2,
        activation_checkpointing=False,
        **kwargs,
    )


def trainer_for(tiny_dir, tmp_path, model_args=None, **kwargs):
    model_args = model_args or LlavaModelConfig(model_name_or_path=tiny_dir, dtype="float32")
    args = sft_args(tmp_path, **kwargs)
    processor = load_processor(model_args, args)
    model = load_model(model_args, processor)
    freeze(model, args.train_projector_only)
    dataset = Dataset.from_parquet(str(SAMPLES))
    return LlavaSFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        data_collator=build_collator(processor, args),
        peft_config=lora_config(model_args),
    )


def test_projector_has_its_own_learning_rate_group(tiny_dir, tmp_path):
    trainer = trainer_for(tiny_dir, tmp_path, learning_rate=2e-5, mm_projector_lr=1e-3)
    optimizer = trainer.create_optimizer()
    names = {param: name for name, param in trainer.model.named_parameters()}
    for group in optimizer.param_groups:
        in_projector = {"multi_modal_projector." in names[p] for p in group["params"]}
        assert len(in_projector) == 1
        assert group["lr"] == (1e-3 if in_projector.pop() else 2e-5)
    grouped = {names[p] for group in optimizer.param_groups for p in group["params"]}
    assert {n for n in grouped if "multi_modal_projector" in n} == {
        f"model.multi_modal_projector.linear_{i}.{p}" for i in (1, 2) for p in ("weight", "bias")
    }
    assert not any("vision_tower" in name for name in grouped)  # frozen: not optimised at all


def test_stage1_trains_the_projector_only(tiny_dir, tmp_path):
    trainer = trainer_for(tiny_dir, tmp_path, train_projector_only=True, llava_template="plain")
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable == {f"model.multi_modal_projector.linear_{i}.{p}" for i in (1, 2) for p in ("weight", "bias")}


def test_lora_targets_llm_linears_only_and_trains_the_projector(tiny_dir):
    model_args = LlavaModelConfig(model_name_or_path=tiny_dir, use_peft=True, lora_r=8, lora_alpha=16)
    model = get_peft_model(tiny_llava(tiny_tokenizer()), lora_config(model_args))
    lora_modules = {name.rsplit(".lora_A", 1)[0] for name, _ in model.named_parameters() if ".lora_A." in name}
    assert lora_modules and all(".language_model.layers." in name for name in lora_modules)
    assert not any(
        "vision_tower" in name or "lm_head" in name for name, _ in model.named_parameters() if "lora" in name
    )
    assert len(lora_modules) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad and "lora" not in name]
    assert trainable and all("multi_modal_projector.modules_to_save" in name for name in trainable)


def test_qlora_keeps_vision_tower_projector_and_lm_head_unquantised():
    config = quantization_config(LlavaModelConfig(model_name_or_path="x", load_in_4bit=True, dtype="bfloat16"))
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.llm_int8_skip_modules == ["vision_tower", "multi_modal_projector", "lm_head"]
    assert quantization_config(LlavaModelConfig(model_name_or_path="x")) is None


def test_build_from_components_with_original_mm_projector_bin(tmp_path):
    tokenizer = tiny_tokenizer(llava_tokens=False)  # as Vicuna ships: no <image>, no <pad>
    reference = tiny_llava(tiny_tokenizer())
    text_config = reference.config.text_config
    text_config.vocab_size, text_config.pad_token_id = len(tokenizer), 0  # Vicuna pads with <unk> (id 0)
    llm = LlamaForCausalLM(text_config)
    llm.save_pretrained(tmp_path / "vicuna")
    tokenizer.save_pretrained(tmp_path / "vicuna")
    CLIPVisionModel(reference.config.vision_config).save_pretrained(tmp_path / "clip")
    projector = {
        "model.mm_projector.0.weight": torch.randn(32, 32),
        "model.mm_projector.0.bias": torch.randn(32),
        "model.mm_projector.2.weight": torch.randn(32, 32),
        "model.mm_projector.2.bias": torch.randn(32),
    }
    torch.save(projector, tmp_path / "mm_projector.bin")
    model_args = LlavaModelConfig(
        model_name_or_path=str(tmp_path / "vicuna"),
        vision_tower_name_or_path=str(tmp_path / "clip"),
        mm_projector_path=str(tmp_path / "mm_projector.bin"),
        dtype="float32",
    )
    processor = load_processor(model_args, sft_args(tmp_path))
    model = load_model(model_args, processor)
    assert processor.tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [len(tokenizer), len(tokenizer) + 1]
    assert model.get_input_embeddings().num_embeddings % 64 == 0
    assert model.config.image_token_id == len(tokenizer) and model.config.image_seq_length == 4
    torch.testing.assert_close(
        model.model.multi_modal_projector.linear_2.weight, projector["model.mm_projector.2.weight"]
    )
    torch.testing.assert_close(model.lm_head.weight[:10], llm.lm_head.weight[:10])
    freeze(model)
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())


def test_bad_projector_file_names_the_key(tmp_path, tiny_dir):
    torch.save({"model.mm_projector.1.weight": torch.zeros(1)}, tmp_path / "bad.bin")
    model_args = LlavaModelConfig(model_name_or_path=tiny_dir, mm_projector_path=str(tmp_path / "bad.bin"))
    processor = load_processor(model_args, sft_args(tmp_path))
    with pytest.raises(ValueError, match="unexpected key 'model.mm_projector.1.weight'"):
        load_model(model_args, processor)


def test_lora_through_the_trainer_keeps_vision_frozen_and_projector_at_its_own_lr(tiny_dir, tmp_path):
    model_args = LlavaModelConfig(model_name_or_path=tiny_dir, dtype="float32", use_peft=True, lora_r=8, lora_alpha=16)
    trainer = trainer_for(tiny_dir, tmp_path, model_args, learning_rate=2e-4, mm_projector_lr=2e-5)
    names = {param: name for name, param in trainer.model.named_parameters()}
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert not any("vision_tower" in name for name in trainable)
    assert all("lora_" in name or "multi_modal_projector.modules_to_save" in name for name in trainable)
    for group in trainer.create_optimizer().param_groups:
        projector = {"multi_modal_projector" in names[p] for p in group["params"]}
        assert group["lr"] == (2e-5 if projector == {True} else 2e-4) and len(projector) == 1


def test_card_metadata_lists_only_hub_ids(tmp_path, monkeypatch):
    from hub_llava.training.outputs import hub_ids

    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "repo").mkdir(parents=True)  # a staged dataset used from disk
    names = ["hub_llava/lvis_instruct4v:nodetail_mix619k", "outputs/repo:mix730k", "samples", "hub_llava/svit"]
    assert hub_ids(names) == ["hub_llava/lvis_instruct4v", "hub_llava/svit"]
    assert hub_ids(["outputs/repo"]) is None
