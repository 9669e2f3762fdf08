"""Our fields on top of TRL's `SFTConfig` and `ModelConfig`, parsed from the recipe YAML by `TrlParser`.

Defaults that differ from TRL's follow LLaVA-1.5 (`max_length` 2048 counted after the 576 image tokens,
`assistant_only_loss`, no gradient clipping as DeepSpeed's default in the original runs, the loss weighting of
transformers 4.37, the zero image for text-only batches).
"""

import os
from dataclasses import dataclass, field

from transformers.integrations import is_tensorboard_available
from trl import ModelConfig, SFTConfig

# The attention implementations that keep padding-free rows apart from `position_ids` alone in transformers 5.23: the
# mask interfaces of sdpa / eager / flex build a block-causal mask (`masking_utils.find_packed_sequence_indices`), the
# flash-attention forward runs varlen on `cu_seq_lens` (`modeling_flash_attention_utils`). Any other (a kernel from
# the Hub, a paged one) gets no packed mask: rows would attend to each other.
PADDING_FREE_ATTENTION = (
    "flash_attention_2",
    "flash_attention_3",
    "flash_attention_4",
    "sdpa",
    "eager",
    "flex_attention",
)

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
        zero_image_for_text_only (`str`, *optional*, defaults to `"yes"`):
            `yes`: a forward without images runs a zero image through the vision tower and projector, spliced in at
            length 0, inside the model's forward (`hub_llava.training.model.add_zero_image_hook`), as LLaVA does for
            text-only rows. Every rank then runs the same modules in the same order whatever its batch holds
            (ZeRO-3 gathers, ZeRO-2 / DDP reductions) and the projector gets a zero gradient instead of none, so DDP
            and ZeRO runs end with the same weights. `no`: text-only batches skip the vision tower.
        loss_weighting (`str`, *optional*, defaults to `"micro_batch"`):
            `micro_batch`: LLaVA-1.5's (transformers 4.37): each micro-batch's loss is the mean over its own trained
            tokens, divided by the gradient-accumulation steps, and the gradients are averaged over ranks. `global`:
            transformers 5's default, one mean over every trained token of the optimizer step (all accumulation
            steps, and all ranks while `average_tokens_across_devices` is on), through `num_items_in_batch`.
        padding_free (`bool`, *optional*, defaults to `False`):
            Our collator concatenates the rows of each per-device batch into one sequence, positions restarting per row,
            instead of padding them (`hub_llava.training.collator`); the same rows, labels and loss. Needs an
            attention implementation that keeps the rows apart (`PADDING_FREE_ATTENTION`: `flash_attention_2/3/4` on
            GPU, `sdpa` / `eager` / `flex_attention` anywhere); `LlavaSFTTrainer` refuses others. This replaces TRL's
            field of the same name, which TRL refuses for vision datasets and custom collators.
        max_tokens_per_batch (`int`, *optional*):
            With `padding_free`, the batching rule is this token budget instead of a row count: each per-device batch
            takes rows until the next would exceed it (rows counted after image expansion and truncation), so
            `per_device_train_batch_size` is unused for training (`hub_llava.training.sampler.TokenBudgetBatchSampler`;
            global steps stay all-image or all-text under `group_by_modality_length`). Not LLaVA-1.5's recipe: the rows
            per optimizer step then vary. At least `max_length`.
        eval_benchmarks (`list[str]`, *optional*, defaults to `[]`):
            Benchmarks (`hub-llava eval` keys, e.g. `[pope, mme]`, or `pope,mme` on the command line) run on the
            training model at each save, or every `benchmark_eval_steps` (`hub_llava.training.eval_callback`).
            Empty: none. Their scores are logged (`eval_pope_f1`, ...) and written into the checkpoint's
            `results.json`. DDP, ZeRO-2 and ZeRO-3 (in lockstep); not FSDP.
        eval_data_dir (`str`, *optional*):
            The benchmarks' data, as `hub-llava eval --data_dir` takes it (LLaVA's `playground/data/eval` layout);
            `None` reads their Hub datasets. Checked before the first step.
        eval_limit (`int`, *optional*):
            Only the first N questions of each benchmark (the results say the score is partial). `None`: all.
        eval_max_new_tokens (`int`, *optional*):
            Overrides every benchmark's `max_new_tokens` (smoke runs; not the protocol).
        benchmark_eval_steps (`int`, *optional*):
            Run the benchmarks every N optimizer steps; `None`: at each save. (`eval_steps` / `eval_strategy` stay
            the Trainer's loss evaluation on `eval_dataset`.) The batch size is `per_device_eval_batch_size`.
        report_to (`str` or `list[str]`, *optional*, defaults to `"auto"`):
            As the Trainer's; `auto` is `tensorboard` where it is installed, else `none`.
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
        default="yes",
        metadata={
            "help": "Text-only batches run a zero image through the vision tower and projector inside the model's "
            "forward (LLaVA's behaviour; every rank runs the same modules under ZeRO / DDP); `no` skips it.",
            "choices": ["yes", "no"],
        },
    )
    loss_weighting: str = field(
        default="micro_batch",
        metadata={
            "help": "`micro_batch`: LLaVA-1.5's loss (transformers 4.37), each micro-batch's token mean divided by the "
            "accumulation steps, gradients averaged over ranks. `global`: transformers 5's, one token mean over the "
            "whole optimizer step (all ranks with `average_tokens_across_devices`).",
            "choices": ["micro_batch", "global"],
        },
    )

    padding_free: bool = field(
        default=False,
        metadata={
            "help": "Concatenate the rows of each per-device batch into one sequence (positions restarting per row) "
            "instead of padding them: hub_llava's collator, same rows, labels and loss. Needs attn_implementation "
            "flash_attention_2/3/4, sdpa, eager or flex_attention."
        },
    )

    max_tokens_per_batch: int | None = field(
        default=None,
        metadata={
            "help": "With padding_free: fill each per-device batch with rows up to this many tokens (after image "
            "expansion and truncation) instead of per_device_train_batch_size rows, which is then unused for "
            "training. At least max_length. Changes the rows per optimizer step: not LLaVA-1.5's recipe."
        },
    )
    eval_benchmarks: list[str] = field(
        default_factory=list,
        metadata={"help": "Benchmarks run on the training model at each save (or every benchmark_eval_steps), e.g. "
                  "`pope mme` or `pope,mme`; scores logged and written into the checkpoint's results.json."},
    )  # fmt: skip
    eval_data_dir: str | None = field(
        default=None, metadata={"help": "Benchmark data as `hub-llava eval --data_dir`; None: their Hub datasets."}
    )
    eval_limit: int | None = field(
        default=None, metadata={"help": "Questions per benchmark during training (a partial score); None: all."}
    )
    eval_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Override the benchmarks' max_new_tokens (smoke runs; not the protocol)."}
    )
    benchmark_eval_steps: int | None = field(
        default=None, metadata={"help": "Run eval_benchmarks every N optimizer steps; None: at each save."}
    )
    report_to: None | str | list[str] = field(
        default="auto",
        metadata={"help": "The Trainer's integrations; `auto`: tensorboard where it is installed, else none."},
    )

    def __post_init__(self):
        check_mixed_precision(self, os.environ.get("ACCELERATE_MIXED_PRECISION"))
        check_token_budget(self)
        if self.report_to in ("auto", ["auto"]):
            self.report_to = "tensorboard" if is_tensorboard_available() else "none"
        self.eval_benchmarks = benchmark_keys(self.eval_benchmarks)
        super().__post_init__()
        check_benchmark_settings(self)


def benchmark_keys(value: str | list[str] | None) -> list[str]:
    """`eval_benchmarks` as a list of keys: a YAML list, `--eval_benchmarks pope mme` or `pope,mme`."""
    items = [value] if isinstance(value, str) else value or []
    return [key.strip() for item in items for key in item.split(",") if key.strip()]


def check_benchmark_settings(args) -> None:
    """Refuses benchmark settings that cannot run: unknown keys (listing the known ones), a limit or step interval
    below 1, or benchmarks that would never run (no saves and no `benchmark_eval_steps`). Whether the benchmarks'
    files exist is checked when the trainer is built (`hub_llava.training.eval_callback`)."""
    from hub_llava.eval import registry

    unknown = [key for key in args.eval_benchmarks if key not in registry.available()]
    if unknown:
        raise ValueError(
            f"eval_benchmarks: unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(registry.available())}"
        )
    for name in ("eval_limit", "benchmark_eval_steps", "eval_max_new_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"{name} must be at least 1 (or unset), got {getattr(args, name)}")
    if args.eval_benchmarks and args.save_strategy == "no" and args.benchmark_eval_steps is None:
        raise ValueError(
            "eval_benchmarks run at each save or every benchmark_eval_steps, but save_strategy is 'no' and "
            "benchmark_eval_steps is unset: set one of them"
        )


def check_token_budget(args) -> None:
    """Refuses a `max_tokens_per_batch` that cannot work: without `padding_free` (a padded batch costs rows x its
    longest row, not its tokens), or smaller than `max_length` (a row of `max_length` tokens would fit no batch)."""
    budget = args.max_tokens_per_batch
    if budget is None:
        return
    if not args.padding_free:
        raise ValueError(
            f"max_tokens_per_batch: {budget} needs padding_free: true (a padded batch is not counted in tokens): "
            "set padding_free: true, or remove max_tokens_per_batch"
        )
    if budget < (args.max_length or 1):
        raise ValueError(
            f"max_tokens_per_batch ({budget}) is smaller than max_length ({args.max_length}): a row of max_length "
            f"tokens would fit no batch; raise max_tokens_per_batch to at least {args.max_length} or lower max_length"
        )


def check_mixed_precision(args, launcher: str | None) -> None:
    """Refuses a run whose `accelerate launch` mixed precision (`ACCELERATE_MIXED_PRECISION`, from the config file's
    `mixed_precision:` or `--mixed_precision`) disagrees with the recipe's `bf16` / `fp16`.

    Otherwise transformers trains in the launcher's precision although the recipe asks for another (DDP), or
    DeepSpeed stops after the model is loaded with "ds bf16.enabled=True vs hf bf16|bf16_full_eval=False". The
    launcher's `no` is also its default when nothing is configured: the recipe's precision then applies, as before.
    """
    if launcher in (None, "no"):
        return
    bf16 = not args.fp16 if args.bf16 is None else args.bf16  # TRL's default: bf16 unless fp16
    recipe = "bf16" if bf16 else "fp16" if args.fp16 else "no"
    if launcher != recipe:
        raise ValueError(
            f"accelerate launch has mixed_precision={launcher} but the recipe has bf16={str(bool(bf16)).lower()}, "
            f"fp16={str(bool(args.fp16)).lower()}: make them agree (`accelerate launch --mixed_precision {recipe}`, "
            f"or `--bf16 {str(launcher == 'bf16').lower()} --fp16 {str(launcher == 'fp16').lower()}` for the recipe)"
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
        merge_lora (`bool`, *optional*, defaults to `False`):
            With LoRA, also write `output_dir/merged/`: the adapter merged into its base, a full checkpoint that
            `from_pretrained`, `hub-llava eval` and `hub-llava push model` take (QLoRA: merged onto the base reloaded
            unquantised in `dtype`). Ignored, with a log line, on a run without LoRA.
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
    merge_lora: bool = field(
        default=False,
        metadata={
            "help": "With LoRA, also save the adapter merged into its base: a full checkpoint in output_dir/merged."
        },
    )
