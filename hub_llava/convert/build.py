"""Builds the transformers side of a conversion: `LlavaConfig`, tokenizer, processor and generation config.

Everything is derived from the original `config.json` (read as JSON) and the CLIP checkpoint's own files, never from
defaults: a 13B checkpoint gets a 13B `text_config`, CLIP-336 gets 336-pixel preprocessing and 576 image tokens.
"""

import dataclasses
from pathlib import Path

from transformers import AutoTokenizer, CLIPVisionConfig, GenerationConfig, LlamaConfig, LlamaTokenizer, LlavaConfig

from hub_llava.convert import source
from hub_llava.processing import IMAGE_TOKEN, add_llava_tokens, build_processor, padding_image_processor

VOCAB_MULTIPLE = 64
# Keys of the flat Llama config the text config keeps (besides LlamaConfig's own fields); everything `mm_*` is LLaVA's.
_LEGACY_TEXT_KEYS = {"rope_theta", "rope_scaling"}
_NOT_TEXT_KEYS = {"architectures", "transformers_version", "dtype", "torch_dtype", "model_type", "_name_or_path"}
_SELECT_STRATEGY = {"patch": "default", "cls_patch": "full"}


def text_config(original: dict) -> LlamaConfig:
    """The `LlamaConfig` held in the flat original config.json (LLaVA subclasses `LlamaConfig`)."""
    fields = {field.name for field in dataclasses.fields(LlamaConfig)} | _LEGACY_TEXT_KEYS
    kwargs = {key: value for key, value in original.items() if key in fields and key not in _NOT_TEXT_KEYS}
    if kwargs.get("rope_scaling") is None:
        kwargs.pop("rope_scaling", None)  # `null` in LLaVA-1.5 configs; passing it is deprecated
    return LlamaConfig(**kwargs)


def vision_config(vision_folder: Path) -> CLIPVisionConfig:
    """The CLIP vision config from a `CLIPModel` or `CLIPVisionModel` checkpoint's config.json.

    Old `CLIPModel` configs (openai's) carry `vision_config_dict` beside `vision_config`; as in `CLIPConfig`, its
    values win.
    """
    config = source.read_json(vision_folder / "config.json")
    if "vision_config" in config or "vision_config_dict" in config:
        config = {**(config.get("vision_config") or {}), **(config.get("vision_config_dict") or {})}
    fields = {field.name for field in dataclasses.fields(CLIPVisionConfig)} - _NOT_TEXT_KEYS
    return CLIPVisionConfig(**{key: value for key, value in config.items() if key in fields})


def select_strategy(original: dict) -> str:
    feature = original.get("mm_vision_select_feature", "patch")
    if feature not in _SELECT_STRATEGY:
        raise ValueError(
            f"mm_vision_select_feature {feature!r} in config.json is not one of {sorted(_SELECT_STRATEGY)}."
        )
    return _SELECT_STRATEGY[feature]


def llava_config(original: dict, vision: CLIPVisionConfig, image_token_id: int) -> LlavaConfig:
    """`LlavaConfig` for an original checkpoint; the text vocabulary is the original one (resized after loading, when
    `<pad>` gets its id)."""
    text = text_config(original)
    text.pad_token_id = None
    mm_hidden_size = original.get("mm_hidden_size", vision.hidden_size)
    if mm_hidden_size != vision.hidden_size:
        raise ValueError(
            f"config.json has mm_hidden_size {mm_hidden_size} but the vision tower's hidden size is "
            f"{vision.hidden_size}: wrong --vision_tower?"
        )
    strategy = select_strategy(original)
    patches = (vision.image_size // vision.patch_size) ** 2
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        image_seq_length=patches + (strategy == "full"),
        projector_hidden_act="gelu",
        vision_feature_layer=original.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy=strategy,
        multimodal_projector_bias=True,
        tie_word_embeddings=text.tie_word_embeddings,
    )


def tokenizer_with_llava_tokens(folder: Path):
    """The checkpoint's tokenizer with `<image>` and `<pad>` added (ids 32000, 32001 on Vicuna's).

    hub_llava itself encodes with the original `tokenizer.model` (`hub_llava.token_stream`, saved beside the converted
    processor with the original `legacy` flag). The fast tokenizer is for plain-transformers users: a Llama
    (sentencepiece) tokenizer is loaded as `LlamaTokenizer` in legacy mode, so every text segment starts with "▁", also
    right after `<s>` and `<image>`, which gives LLaVA's single-turn inference prompt in one pass (except runs of
    spaces). Two traps avoided: `AutoTokenizer` on a folder whose config.json says `model_type: "llava"` returns a
    generic backend without any prefix, and non-legacy mode drops the "▁" (id 29871 on Vicuna) after `<s>` and
    `<image>` when the prompt is tokenized in one pass.
    """
    config_file = folder / "tokenizer_config.json"
    tokenizer_class = source.read_json(config_file).get("tokenizer_class", "") if config_file.is_file() else ""
    if tokenizer_class.removesuffix("Fast") == "LlamaTokenizer":
        tokenizer = LlamaTokenizer.from_pretrained(folder, legacy=True)
        tokenizer.init_kwargs["legacy"] = True
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    add_llava_tokens(tokenizer)
    return tokenizer


def processor(tokenizer, vision_folder: Path, vision: CLIPVisionConfig, original: dict):
    """The shared processor (vicuna_v1 template) with that CLIP's preprocessing; padding as `image_aspect_ratio`."""
    aspect = original.get("image_aspect_ratio", "square")
    if aspect not in ("pad", "square"):
        raise ValueError(f"image_aspect_ratio {aspect!r} in config.json is not supported (LLaVA-1.5 uses 'pad').")
    overrides = {"do_pad": aspect == "pad"}
    preprocessor_file = vision_folder / "preprocessor_config.json"
    if preprocessor_file.is_file():
        clip = source.read_json(preprocessor_file)
        overrides.update({key: clip[key] for key in ("image_mean", "image_std") if key in clip})
    image_processor = padding_image_processor(vision.image_size, **overrides)
    result = build_processor(tokenizer, image_processor, patch_size=vision.patch_size, image_size=vision.image_size)
    result.vision_feature_select_strategy = select_strategy(original)
    return result


def generation_config(tokenizer) -> GenerationConfig:
    """Greedy decoding that stops at `</s>`, as LLaVA-1.5's evaluation."""
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        num_beams=1,
    )


def image_token_id(tokenizer) -> int:
    return tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
