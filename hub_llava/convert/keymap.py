"""Original LLaVA weight names -> `LlavaForConditionalGeneration` names (DESIGN.md §4).

| original (`LlavaLlamaForCausalLM`)                     | transformers                              |
| ------------------------------------------------------ | ----------------------------------------- |
| `model.embed_tokens.*`, `model.layers.*`, `model.norm.*` | `model.language_model.*`                |
| `lm_head.*`                                            | `lm_head.*`                               |
| `model.mm_projector.0.*`, `model.mm_projector.2.*`     | `model.multi_modal_projector.linear_{1,2}.*` |
| `model.vision_tower.vision_tower.vision_model.*`       | `model.vision_tower.*`                    |
| CLIP checkpoint: `vision_model.*` (openai's `CLIPModel`) | `model.vision_tower.*`                  |
| CLIP checkpoint saved by transformers 5 as `CLIPVisionModel`: `embeddings.*`, `encoder.*`, `pre_layrnorm.*`, `post_layernorm.*` | `model.vision_tower.*` |
"""

import re

SUPPORTED_PROJECTOR = "mlp2x_gelu"
# Buffers some checkpoints saved; transformers recomputes them.
_SKIPPED = re.compile(r"(rotary_emb\.inv_freq|embeddings\.position_ids)$")
_RULES = [
    (re.compile(r"^model\.(embed_tokens|layers|norm)\."), r"model.language_model.\1."),
    (re.compile(r"^lm_head\."), "lm_head."),
    (re.compile(r"^model\.mm_projector\.0\."), "model.multi_modal_projector.linear_1."),
    (re.compile(r"^model\.mm_projector\.2\."), "model.multi_modal_projector.linear_2."),
    (re.compile(r"^model\.vision_tower\.vision_tower\.vision_model\."), "model.vision_tower."),
]
_CLIP_RULE = re.compile(r"^vision_model\.")
# transformers 5's `CLIPVisionModel` is the vision transformer itself: its checkpoints have no `vision_model.` level.
_CLIP_VISION_ONLY = re.compile(r"^(embeddings|encoder|pre_layrnorm|post_layernorm)\.")


def check_original(config: dict, path) -> None:
    """Raises unless `config` is an original LLaVA config (a flat Llama config with `mm_*` keys), saying what it is
    instead: a checkpoint already in the transformers layout, or a plain language model."""
    architectures = config.get("architectures") or []
    if "mm_vision_tower" in config or any(name.startswith("Llava") and "CausalLM" in name for name in architectures):
        return
    if "vision_config" in config or "LlavaForConditionalGeneration" in architectures:
        raise ValueError(
            f"{path} is already a transformers Llava checkpoint (architectures {architectures}), not an original "
            "LLaVA one: it loads with LlavaForConditionalGeneration.from_pretrained as it is; nothing to convert."
        )
    raise ValueError(
        f"{path} is not an original LLaVA checkpoint (architectures {architectures}, no mm_vision_tower): "
        "`hub-llava convert` reads LLaVA's own checkpoints (LlavaLlamaForCausalLM + mm_* keys)."
    )


def check_projector(config: dict) -> None:
    """Raises a clear error for projectors `LlavaMultiModalProjector` (Linear-GELU-Linear) cannot hold."""
    projector = config.get("mm_projector_type", "linear")
    if projector != SUPPORTED_PROJECTOR:
        raise ValueError(
            f"mm_projector_type {projector!r} in config.json is not supported: LlavaForConditionalGeneration's "
            f"projector is Linear-GELU-Linear, i.e. {SUPPORTED_PROJECTOR!r} (LLaVA-1.5)."
        )
    if config.get("mm_use_im_start_end") or config.get("mm_use_im_patch_token"):
        raise ValueError(
            "mm_use_im_start_end / mm_use_im_patch_token are set in config.json: LlavaForConditionalGeneration has "
            "no <im_start>/<im_end>/<im_patch> tokens (LLaVA-1.5 checkpoints set both to false)."
        )


def map_key(name: str) -> str | None:
    """The transformers name of an original LLaVA weight; None for buffers that are not weights.

    Raises:
        ValueError: for a name that belongs to no known part (a layout this converter does not know).
    """
    if _SKIPPED.search(name):
        return None
    for pattern, replacement in _RULES:
        if pattern.match(name):
            return pattern.sub(replacement, name, count=1)
    raise ValueError(f"Unexpected weight {name!r}: not part of an original LLaVA-1.5 checkpoint.")


def clip_vision_name(name: str) -> str | None:
    """A CLIP checkpoint's weight name inside the vision transformer (`embeddings.…`), from either layout: openai's
    `CLIPModel` / transformers 4 `CLIPVisionModel` (`vision_model.…`) or transformers 5 `CLIPVisionModel` (no prefix).
    None for the text tower, the projections and buffers."""
    if _SKIPPED.search(name):
        return None
    if _CLIP_RULE.match(name):
        return _CLIP_RULE.sub("", name, count=1)
    return name if _CLIP_VISION_ONLY.match(name) else None


def map_clip_key(name: str) -> str | None:
    """The transformers name of a weight of a CLIP checkpoint (`CLIPModel` or `CLIPVisionModel`); None if not vision."""
    inner = clip_vision_name(name)
    return None if inner is None else "model.vision_tower." + inner


def strip_peft_prefix(name: str) -> str:
    """`non_lora_trainables.bin` keys (`base_model.model.model.mm_projector.0.weight`) -> original names."""
    name = name.removeprefix("base_model.")  # as LLaVA's own loader: then `model.model.*` -> `model.*`
    return name.removeprefix("model.") if name.startswith("model.model.") else name
