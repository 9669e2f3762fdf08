"""What a LoRA run leaves besides its adapter: the record of its base, the base rebuilt from it, and the adapter merged
into that base as a full checkpoint.

A PEFT adapter holds the LoRA weights and the fully trained projector only. Everything else is the frozen base: the
LLM, CLIP, and the embedding / `lm_head` rows added for `<image>` and `<pad>` (padded to a multiple of 64). So the
run's folder also gets `base_model.json`, the settings `hub_llava.training.model.load_model` built the base from, and
`rebuild_base(folder)` builds it again. The added rows are the mean of the existing rows
(`hub_llava.training.model.resize_embeddings`), so the rebuilt base equals the trained one weight for weight.

The merge reloads that base on the CPU, unquantised, in the run's `dtype` (a QLoRA run's 4-bit weights are never
merged into: the result is the bf16/fp16 base plus the LoRA delta, so it differs from the trained 4-bit model by the
quantisation error, as every QLoRA merge does), loads the adapter from the saved folder with
`PeftModel.from_pretrained`, and saves `merge_and_unload()`'s model. It runs on one process, from the files the
Trainer saved, so it is the same under DDP, ZeRO-2 and ZeRO-3 (whose `save_model` gathers the adapter first).
"""

import contextlib
import json
import logging
import os

import torch
from huggingface_hub import snapshot_download
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoConfig, AutoProcessor
from transformers.integrations import deepspeed as hf_deepspeed

from hub_llava.processing import IMAGE_TOKEN, PAD_TOKEN
from hub_llava.token_stream import TokenStream
from hub_llava.training.configs import LlavaModelConfig
from hub_llava.training.model import load_model

logger = logging.getLogger(__name__)

BASE_RECORD = "base_model.json"
MERGED = "merged"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# The `LlavaModelConfig` fields `load_model` builds the base from (quantisation is dropped on rebuild).
_BASE_FIELDS = (
    "model_name_or_path",
    "model_revision",
    "vision_tower_name_or_path",
    "mm_projector_path",
    "image_size",
    "dtype",
    "load_in_4bit",
    "load_in_8bit",
)


def base_record(model_args, model, processor) -> dict:
    """The settings the run's base was built from, and what they gave: vocabulary sizes and the tokens added.

    Args:
        model_args (`LlavaModelConfig`):
            The run's model settings.
        model (`LlavaForConditionalGeneration` or its PEFT wrapper):
            The model trained (its config gives the padded vocabulary).
        processor (`LlavaProcessor`):
            The run's processor (its tokenizer holds `<image>` and `<pad>`).
    """
    record = {name: getattr(model_args, name) for name in _BASE_FIELDS}
    llm_config = AutoConfig.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    llm_vocab = llm_config.get_text_config().vocab_size
    tokens = processor.tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, PAD_TOKEN])
    record.update(
        llm_vocab_size=llm_vocab,
        vocab_size=model.config.get_text_config().vocab_size,
        added_tokens={token: id_ for token, id_ in zip([IMAGE_TOKEN, PAD_TOKEN], tokens) if id_ >= llm_vocab},
        new_rows="mean of the existing rows",
    )
    return record


def write_base_record(folder, record: dict) -> None:
    with open(os.path.join(folder, BASE_RECORD), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
        f.write("\n")


def read_base_record(folder) -> dict:
    path = os.path.join(folder, BASE_RECORD)
    if not os.path.isfile(path):
        raise ValueError(f"{folder}: no {BASE_RECORD}: not the output folder of a hub_llava LoRA run")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def rebuild_base(folder, dtype: str | None = None):
    """The base a LoRA run's adapter was trained on, rebuilt on the CPU from its folder's `base_model.json` and
    processor: unquantised, in the run's `dtype` unless `dtype` is given, in eval mode.

    Args:
        folder (`str`):
            A LoRA run's `output_dir` (or its `merged/`), or the Hub repo it was pushed to.
        dtype (`str`, *optional*):
            Overrides the recorded `dtype` (e.g. `"float32"` for exact comparisons).

    Raises:
        `ValueError`: the folder has no record, or the rebuilt vocabulary differs from the recorded one.
    """
    if not os.path.isdir(folder):  # a Hub repo id: its record and processor, not its weights
        folder = snapshot_download(folder, allow_patterns=["*.json", "*.model", "*.jinja"])
    record = read_base_record(folder)
    model_args = LlavaModelConfig(
        model_name_or_path=record["model_name_or_path"],
        model_revision=record["model_revision"],
        vision_tower_name_or_path=record["vision_tower_name_or_path"],
        mm_projector_path=record["mm_projector_path"],
        image_size=record["image_size"],
        dtype=dtype or record["dtype"],
    )
    with _one_process_loading():
        model = load_model(model_args, AutoProcessor.from_pretrained(folder))
    vocab = model.config.get_text_config().vocab_size
    if vocab != record["vocab_size"]:
        raise ValueError(
            f"{folder}: the rebuilt base has a vocabulary of {vocab}, the run's had {record['vocab_size']}: "
            f"{record['model_name_or_path']} (revision {record['model_revision']}) is not the base trained on"
        )
    return model.eval()


def merge_adapter(adapter_dir, output_dir=None, processor=None) -> str:
    """Writes the adapter in `adapter_dir` merged into its rebuilt base as a full checkpoint: safetensors, generation
    config, and the processor with `tokenizer.model` (the run's `processor`, else the one saved in `adapter_dir`).

    Args:
        adapter_dir (`str`):
            A LoRA run's `output_dir` (adapter, processor, `base_model.json`).
        output_dir (`str`, *optional*):
            Defaults to `adapter_dir/merged`.
        processor (`LlavaProcessor`, *optional*):
            The run's processor, saved as it was saved beside the adapter.

    Returns:
        The folder written.
    """
    output_dir = output_dir or os.path.join(adapter_dir, MERGED)
    processor = processor or AutoProcessor.from_pretrained(adapter_dir)
    base = rebuild_base(adapter_dir)
    try:
        model = PeftModel.from_pretrained(base, adapter_dir)
    except KeyError as err:  # PEFT's own error for a `modules_to_save` weight missing from the file
        raise ValueError(
            f"{adapter_dir}/{ADAPTER_WEIGHTS} does not fit the rebuilt base: no {err} in the file"
        ) from None
    check_adapter_loaded(model, adapter_dir)
    model = model.merge_and_unload()
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    TokenStream.from_processor(processor).save_pretrained(output_dir)  # tokenizer.model + legacy flag
    logger.info("Merged the LoRA adapter of %s into its base: %s", adapter_dir, output_dir)
    return output_dir


def check_adapter_loaded(model, adapter_dir) -> None:
    """Checks every tensor of the adapter file is in `model` as saved: PEFT only warns about a LoRA weight it cannot
    place and ignores keys it does not know, and the merge would then publish base weights as the run's."""
    saved = load_file(os.path.join(adapter_dir, ADAPTER_WEIGHTS))
    loaded = get_peft_model_state_dict(model, save_embedding_layers=False)
    missing, unexpected = sorted(saved.keys() - loaded.keys()), sorted(loaded.keys() - saved.keys())
    differ = sorted(k for k in saved.keys() & loaded.keys() if not torch.equal(saved[k].to(loaded[k]), loaded[k]))
    if missing or unexpected or differ:
        raise ValueError(
            f"{adapter_dir}/{ADAPTER_WEIGHTS} does not fit the rebuilt base: not loaded {missing[:3]}, absent from the "
            f"file {unexpected[:3]}, loaded with other values {differ[:3]}"
        )


@contextlib.contextmanager
def _one_process_loading():
    """Loads on this process alone while a ZeRO-3 run's DeepSpeed config is alive: with it, `from_pretrained` and
    `resize_token_embeddings` would partition or gather parameters collectively and wait for the other ranks."""
    reference = hf_deepspeed._hf_deepspeed_config_weak_ref  # what `unset_hf_deepspeed_config` clears
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = reference
