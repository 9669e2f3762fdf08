"""Our fields on top of TRL's `SFTConfig` and `ModelConfig`, parsed from the recipe YAML by `TrlParser`.

Defaults that differ from TRL's follow LLaVA-1.5 (`max_length` 2048 counted after the 576 image tokens,
`assistant_only_loss`, no gradient clipping as DeepSpeed's default in the original runs).
"""

from dataclasses import dataclass, field

from trl import ModelConfig, SFTConfig

# LoRA on the LLM's linears only: a regex on the full module name, so CLIP's q/k/v/out projections never match.
LLM_LINEARS_REGEX = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


@dataclass
class LlavaSFTConfig(SFTConfig):
    """`SFTConfig` with LLaVA-1.5's defaults and the recipe's own training fields.

    Args:
        mm_projector_lr (`float`, *optional*):
            Learning rate of the projector's own optimizer parameter group (LLaVA's `--mm_projector_lr`, 2e-5 in the
            LoRA recipes). `None` uses `learning_rate`.
        train_projector_only (`bool`, *optional*, defaults to `False`):
            Stage 1 (pretraining): train the projector only, LLM and vision tower frozen.
        group_by_modality_length (`bool`, *optional*, defaults to `False`):
            Every global batch all-image or all-text (LLaVA's sampler); leftovers mixed in the last batch.
        llava_template (`str`, *optional*, defaults to `"vicuna_v1"`):
            Chat template: `vicuna_v1` (stage 2) or `plain` (stage 1: image + caption + "\\n").
        image_aspect_ratio (`str`, *optional*, defaults to `"pad"`):
            LLaVA's `image_aspect_ratio`: `pad` (stage 2: pad to a square with the CLIP mean colour, then resize and
            centre-crop) or `square` (stage 1, LLaVA's `pretrain.sh`: resize and centre-crop only). Saved in the
            processor and the card. LLaVA's own argument defaults to `square`; its stage-2 scripts pass `pad`.
        zero_image_for_text_only (`str`, *optional*, defaults to `"auto"`):
            Run the vision tower on a zero image for batches without images, spliced at length 0 (LLaVA's fix for
            ZeRO-3 hangs). `auto` turns it on under DeepSpeed ZeRO-3, `yes` / `no` force it.
    """

    max_length: int | None = field(
        default=2048, metadata={"help": "Maximum tokenized length, counted after expanding the image tokens."}
    )
    assistant_only_loss: bool = field(
        default=True, metadata={"help": "Train only on each answer and its `</s>` (the `{% generation %}` spans)."}
    )
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Deprecated alias of `activation_checkpointing` (transformers 5)."}
    )
    activation_checkpointing: bool | None = field(
        default=True, metadata={"help": "Gradient (activation) checkpointing, as LLaVA-1.5's runs."}
    )
    max_grad_norm: float = field(
        default=0.0, metadata={"help": "Gradient clipping; 0 = none, as in LLaVA-1.5's DeepSpeed runs."}
    )
    mm_projector_lr: float | None = field(
        default=None, metadata={"help": "Projector learning rate (own parameter group); None = learning_rate."}
    )
    train_projector_only: bool = field(
        default=False, metadata={"help": "Stage 1: train only the projector (LLM and vision tower frozen)."}
    )
    group_by_modality_length: bool = field(
        default=False,
        metadata={"help": "Every global batch all-image or all-text, LLaVA's sampler; leftovers mixed at the end."},
    )
    llava_template: str = field(
        default="vicuna_v1",
        metadata={
            "help": "Chat template: `vicuna_v1` (finetune) or `plain` (pretrain).",
            "choices": ["vicuna_v1", "plain"],
        },
    )
    image_aspect_ratio: str = field(
        default="pad",
        metadata={
            "help": "`pad` (stage 2: pad to a square, then CLIP) or `square` (stage 1: CLIP resize + centre crop only).",
            "choices": ["pad", "square"],
        },
    )
    zero_image_for_text_only: str = field(
        default="auto",
        metadata={
            "help": "Zero image through the vision tower for image-less batches (ZeRO-3 hang fix); auto = on under ZeRO-3.",
            "choices": ["auto", "yes", "no"],
        },
    )


@dataclass
class LlavaModelConfig(ModelConfig):
    """`ModelConfig` plus what building LLaVA-1.5 from components needs.

    Args:
        vision_tower_name_or_path (`str`, *optional*):
            A CLIP vision model. When set, `model_name_or_path` is the LLM (Vicuna/Llama) and the Llava model is built
            from components, as LLaVA-1.5's stage 2 does; otherwise `model_name_or_path` is a Llava checkpoint.
        mm_projector_path (`str`, *optional*):
            Stage-1 projector weights: an original `mm_projector.bin` or a stage-1 output folder of this recipe.
        image_size (`int`, *optional*):
            Image size of the padding image processor; defaults to the vision tower's.
        lora_target_regex (`str`, *optional*):
            LoRA target modules as a regex on full module names, used when `lora_target_modules` is not set. The
            default matches the LLM's attention and MLP linears only, never CLIP nor `lm_head`.
        lora_projector (`bool`, *optional*, defaults to `True`):
            With LoRA, train the projector fully (saved with the adapter), as LLaVA-1.5's LoRA runs do.
    """

    vision_tower_name_or_path: str | None = field(
        default=None, metadata={"help": "CLIP vision tower; set to build from components (LLM = model_name_or_path)."}
    )
    mm_projector_path: str | None = field(
        default=None, metadata={"help": "Stage-1 projector: `mm_projector.bin` or a stage-1 output folder."}
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Image size for the padding image processor; default: the vision tower's."}
    )
    lora_target_regex: str = field(
        default=LLM_LINEARS_REGEX, metadata={"help": "LoRA targets as a regex (used if lora_target_modules unset)."}
    )
    lora_projector: bool = field(
        default=True, metadata={"help": "With LoRA, also train the projector fully (saved with the adapter)."}
    )
