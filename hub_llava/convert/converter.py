"""Original LLaVA checkpoint -> `LlavaForConditionalGeneration` folder, one weight file at a time.

The model is built with its parameters on the meta device (`accelerate.init_empty_weights`: buffers such as the
rotary frequencies stay real), then each original file is read, renamed (`keymap`), cast to the output dtype and
assigned into the model (`load_state_dict(..., assign=True)`), so the peak is about one shard plus the output model,
never the original and the output side by side. The vocabulary then grows by `<image>` and `<pad>` and is padded to a
multiple of 64 with transformers' own mean initialisation.
"""

import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate import init_empty_weights
from transformers import LlavaConfig, LlavaForConditionalGeneration

from hub_llava.convert import build, keymap, registry, source
from hub_llava.convert.lora import LoraMerger
from hub_llava.convert.verify import VerifyReport
from hub_llava.convert.verify import verify as verify_conversion
from hub_llava.model_card import describe_architecture, parameter_counts, render_model_card
from hub_llava.token_stream import TokenStream

logger = logging.getLogger(__name__)

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
MAX_SHARD_SIZE = "5GB"  # a 7B model in fp16 -> 3 shards, as llava-hf publishes them
SEED = 0  # the new embedding rows are sampled: a fixed seed makes conversions reproducible


def _original_files(
    checkpoint: source.OriginalCheckpoint,
) -> Iterator[tuple[Path, Iterator[tuple[str, torch.Tensor]]]]:
    """(file, its tensors under original names): LLM shards (LoRA-merged), then the projector file if separate."""
    if checkpoint.kind == source.FULL:
        for path in source.weight_files(checkpoint.folder):
            yield path, source.iter_file(path)
        return
    merger = LoraMerger(checkpoint) if checkpoint.kind == source.LORA else None
    for path in source.weight_files(checkpoint.base):
        tensors = source.iter_file(path)
        yield path, ((name, merger.merge(name, t)) for name, t in tensors) if merger else tensors
    if merger:
        merger.check_all_merged()
    extra = checkpoint.extra_file()
    yield extra, ((keymap.strip_peft_prefix(name), t) for name, t in source.iter_file(extra))


def _assign(model, tensors: dict[str, torch.Tensor], origin: Path) -> None:
    result = model.load_state_dict(tensors, strict=False, assign=True)
    if result.unexpected_keys:
        raise ValueError(f"{origin}: weights with no place in the model: {result.unexpected_keys[:5]}")


def load_weights(model, checkpoint: source.OriginalCheckpoint, dtype: torch.dtype) -> None:
    """Streams the original weights into `model` (meta parameters), one file at a time."""
    for path, tensors in _original_files(checkpoint):
        logger.info("Reading %s", path.name)
        mapped = {keymap.map_key(name): tensor for name, tensor in tensors}
        _assign(model, {name: tensor.to(dtype) for name, tensor in mapped.items() if name is not None}, path)


def load_vision_tower(model, vision_folder: Path, dtype: torch.dtype) -> None:
    """Assigns CLIP's vision weights from a CLIP checkpoint (`vision_model.*`; its text tower is skipped)."""
    for path in source.weight_files(vision_folder):
        mapped = {keymap.map_clip_key(name): tensor for name, tensor in source.iter_file(path)}
        _assign(model, {name: tensor.to(dtype) for name, tensor in mapped.items() if name is not None}, path)


def _missing(model) -> list[str]:
    return [name for name, param in model.named_parameters() if param.is_meta]


def convert_checkpoint(
    src: str,
    output_dir: str | Path,
    *,
    base: str | None = None,
    vision_tower: str | None = None,
    dtype: str | None = None,
    source_id: str | None = None,
    token: str | None = None,
    verify: bool = False,
    repo_id: str | None = None,
) -> tuple[Path, VerifyReport | None]:
    """Converts an original LLaVA checkpoint into a `from_pretrained`-ready folder; returns that folder.

    Args:
        src (`str`): local folder or Hub id of the original checkpoint (full, LoRA or stage-1 projector).
        output_dir (`str` or `Path`): where the converted model, processor, generation config and card go.
        base (`str`, *optional*): the base Vicuna of a LoRA or stage-1 checkpoint; for a published LoRA checkpoint
            it defaults to the registry's base model.
        vision_tower (`str`, *optional*): CLIP folder or Hub id; defaults to the checkpoint's `mm_vision_tower`.
        dtype (`str`, *optional*): `float16`, `bfloat16` or `float32`; by default the source's own `torch_dtype` (a
            float32 source stays float32: nothing is rounded away), float16 when its config names none.
        source_id (`str`, *optional*): the Hub id of `src` when `src` is a local copy (finds published results).
        token (`str`, *optional*): Hub token for downloads; never printed or stored.
        verify (`bool`, *optional*, defaults to `False`): compare the result with an independent forward pass over
            the original weights (`hub_llava.convert.verify`); its figures go into the card.
        repo_id (`str`, *optional*): the Hub id the result will be pushed to (named in the card's quick start).

    Returns:
        The output folder and the verification report (None without `verify`).
    """
    published = registry.lookup(source_id or src)
    if base is None and published is not None and published.format == source.LORA:
        base = published.base_model
    checkpoint = source.open_checkpoint(src, base=base, token=token)
    keymap.check_original(checkpoint.config, checkpoint.folder / "config.json")
    keymap.check_projector(checkpoint.config)
    dtype = dtype or source_dtype(checkpoint.config)
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}.")
    vision_id = vision_tower or checkpoint.config.get("mm_vision_tower")
    if not vision_id:
        raise ValueError(f"{checkpoint.folder}/config.json names no mm_vision_tower: pass --vision_tower.")

    tokenizer = build.tokenizer_with_llava_tokens(checkpoint.tokenizer_folder)
    model, vision_folder = build_model(checkpoint, vision_id, tokenizer, DTYPES[dtype], token)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir, max_shard_size=MAX_SHARD_SIZE)
    conversion = {
        "source": source_id or src,
        "format": checkpoint.kind,
        "base": base if checkpoint.kind != source.FULL else None,
        "vision_tower": vision_id,
        "dtype": dtype,
        "image_token_id": model.config.image_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "vocab_size": model.config.text_config.vocab_size,
    }
    del model
    vision = build.vision_config(vision_folder)
    processor = build.processor(tokenizer, vision_folder, vision, checkpoint.config)
    processor.save_pretrained(output_dir)
    # The original tokenizer.model and its legacy flag: hub_llava's token stream gives LLaVA's eval ids from them.
    TokenStream.from_processor(processor).save_pretrained(output_dir)
    logger.info("Converted %s -> %s", src, output_dir)

    report = verify_conversion(checkpoint, vision_folder, output_dir, dtype=dtype) if verify else None
    conversion["verify"] = report.as_dict() if report and report.ok else None
    (output_dir / "README.md").write_text(_card(conversion, published, output_dir, repo_id), encoding="utf-8")
    return output_dir, report


def source_dtype(config: dict) -> str:
    """The dtype the original checkpoint says it is stored in (`torch_dtype`, or transformers 5's `dtype`)."""
    dtype = config.get("torch_dtype") or config.get("dtype") or "float16"
    if dtype not in DTYPES:
        raise ValueError(f"config.json says torch_dtype {dtype!r}: pass --dtype ({', '.join(sorted(DTYPES))}).")
    return dtype


def build_model(checkpoint: source.OriginalCheckpoint, vision_id: str, tokenizer, dtype: torch.dtype, token=None):
    """The converted `LlavaForConditionalGeneration` (vocabulary grown and padded) and the CLIP folder it used.

    The CLIP checkpoint's config is always read; its weights are fetched only when the original has none inside.
    """
    vision_folder = source.resolve(vision_id, allow_patterns=source.CONFIG_PATTERNS, token=token)
    config = build.llava_config(checkpoint.config, build.vision_config(vision_folder), build.image_token_id(tokenizer))
    with init_empty_weights():
        model = LlavaForConditionalGeneration(config)
    load_weights(model, checkpoint, dtype)
    if any(name.startswith("model.vision_tower.") for name in _missing(model)):
        logger.info("CLIP weights are not in the checkpoint: reading them from %s", vision_id)
        vision_folder = source.resolve(vision_id, allow_patterns=source.WEIGHT_PATTERNS, token=token)
        load_vision_tower(model, vision_folder, dtype)
    missing = _missing(model)
    if missing:
        raise ValueError(f"{checkpoint.folder}: weights missing after conversion ({len(missing)}), e.g. {missing[:5]}")

    torch.manual_seed(SEED)
    # Never shrink: an embedding with spare rows keeps them (on Vicuna, 32000 rows + <image> + <pad> -> 32064).
    vocab_size = max(len(tokenizer), config.text_config.vocab_size)
    model.resize_token_embeddings(vocab_size, pad_to_multiple_of=build.VOCAB_MULTIPLE)
    model.config.text_config.pad_token_id = tokenizer.pad_token_id
    model.config.dtype = dtype
    model.generation_config = build.generation_config(tokenizer)
    return model, vision_folder


def _card(conversion: dict, published: registry.PublishedModel | None, output_dir: Path, repo_id: str | None) -> str:
    origin = conversion["source"]
    is_hub_id = source.is_hub_id(origin)
    return render_model_card(
        published.name if published else output_dir.name,
        model_id=repo_id or str(output_dir),
        description=f"`{origin}` converted to the transformers LLaVA format." if is_hub_id else "",
        base_model=origin if is_hub_id else None,
        datasets=published.datasets if published else None,
        published=published.published if published else None,
        conversion=conversion,
        architecture=describe_architecture(LlavaConfig.from_pretrained(output_dir), parameter_counts(output_dir)),
        citations=[published.citation] if published else None,
    )
