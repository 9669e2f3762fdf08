"""`SFTTrainer` with LLaVA-1.5's training details: the projector's own learning rate, the modality-grouped sampler,
the zero image for image-less batches (`hub_llava.training.model.add_zero_image_hook`) and the loss weighting of
transformers 4.37. Plus two fixes: resuming a full fine-tune, and the key names of a ZeRO-3 checkpoint.

Loss weighting: transformers 5.23's `Trainer` counts the trained tokens of a whole optimizer step (every accumulation
micro-batch, summed over ranks under `average_tokens_across_devices`) as `num_items_in_batch`; TRL's `compute_loss`
divides the summed token loss by it and multiplies by the world size (DDP / DeepSpeed average the gradients), and
`training_step` then skips its division by the accumulation steps. LLaVA-1.5 trained with transformers 4.37: each
micro-batch's own token mean, divided by the accumulation steps, averaged over ranks. With `num_items_in_batch=None`
the same code paths give exactly that: TRL divides by the micro-batch's own trained tokens, `training_step` divides by
the micro-batches of the step, and DeepSpeed is told not to scale by its own accumulation setting (`scale_wrt_gas`).

Padding-free (`padding_free`): the layout is the collator's (`hub_llava.training.collator`); TRL 1.16 refuses its own
`padding_free` for vision datasets and custom collators, so TRL's set-up sees it off, and the start-up check refuses an
attention implementation that would let the packed rows attend to each other. With `max_tokens_per_batch` the train
DataLoader takes its batches from `TokenBudgetBatchSampler` (per-device batches of at most that many tokens, the same
on every rank; accelerate's `BatchSamplerShard` deals them out, `SkipBatchSampler` skips them on resume).

Resume: transformers 5.23's `Trainer._load_from_checkpoint` loads `model.safetensors` with a plain non-strict
`load_state_dict`, but `save_pretrained` wrote Llava's legacy key names (`language_model.model.*`, ...): no weight
matched and training silently went on from the initial weights. We rename the keys as `from_pretrained` does.
"""

import json
import logging
import math
import os
from functools import partial
from pathlib import Path

import datasets
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from transformers.conversion_mapping import get_model_conversion_mapping
from transformers.core_model_loading import WeightConverter, rename_source_key
from transformers.trainer_utils import seed_worker
from trl import SFTTrainer

from hub_llava.training.configs import PADDING_FREE_ATTENTION
from hub_llava.training.model import PROJECTOR, add_zero_image_hook
from hub_llava.training.sampler import ModalityLengthGroupedSampler, TokenBudgetBatchSampler

logger = logging.getLogger(__name__)


class LlavaSFTTrainer(SFTTrainer):
    """`SFTTrainer` for `LlavaSFTConfig`.

    Args:
        modality_lengths (`list[int]`, *optional*):
            Per training row: word count, negative for text-only rows; needed by `group_by_modality_length`.
        token_counts (`list[int]`, *optional*):
            Per training row: its tokens in a batch (after image expansion and truncation,
            `hub_llava.training.data.kept_token_counts`); needed by `max_tokens_per_batch`.
        *args, **kwargs:
            As `SFTTrainer`.
    """

    def __init__(
        self, *args, modality_lengths: list[int] | None = None, token_counts: list[int] | None = None, **kwargs
    ):
        self.modality_lengths, self.token_counts = modality_lengths, token_counts
        self._epoch_sampler = None  # the sampler `_run_epoch` sets the epoch of
        # `padding_free` is our collator's (`build_collator`): TRL's own checks would refuse it for a vision dataset
        # and a custom collator, so TRL sees it off while it sets up.
        training_args = kwargs["args"] if "args" in kwargs else args[1]
        padding_free, training_args.padding_free = training_args.padding_free, False
        try:
            super().__init__(*args, **kwargs)
        finally:
            training_args.padding_free = padding_free
        if self.args.group_by_modality_length and modality_lengths is None:
            raise ValueError("`group_by_modality_length` needs `modality_lengths` (see hub_llava.training.data)")
        if self.args.max_tokens_per_batch is not None and token_counts is None:
            raise ValueError("`max_tokens_per_batch` needs `token_counts` (see hub_llava.training.data)")
        if self.args.zero_image_for_text_only == "yes":
            add_zero_image_hook(self.model)
        elif self.is_deepspeed_enabled or self.is_fsdp_enabled:
            logger.warning(
                "zero_image_for_text_only=no under DeepSpeed/FSDP: a step where some ranks have images and others "
                "none will hang or fail with a collective mismatch"
            )
        # Under ZeRO-3, transformers 5.23's `from_pretrained` records every legacy renaming it knows in
        # `_weight_conversions`, and `save_pretrained` reverts them all (`language_model.model.model.*`,
        # `vision_tower.vision_model.*`). Without it `save_pretrained` writes the names of a model built from config,
        # the ones DDP and ZeRO-2 runs write.
        llava = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        llava._weight_conversions = None
        if padding_free:
            check_padding_free_attention(llava)
        self._micro_batch_step, self._micro_batch = 0, -1

    def create_optimizer(self, model=None):
        """AdamW groups as `Trainer`'s (decay / no decay), split again so the projector gets `mm_projector_lr`."""
        if self.optimizer is not None or self.args.mm_projector_lr is None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups = {}
        for name, param in opt_model.named_parameters():
            if not param.requires_grad:
                continue
            is_projector = f"{PROJECTOR}." in name
            key = (is_projector, name in decay)
            groups.setdefault(key, []).append(param)
        param_groups = [
            {
                "params": params,
                "weight_decay": self.args.weight_decay if in_decay else 0.0,
                **({"lr": self.args.mm_projector_lr} if is_projector else {}),
            }
            for (is_projector, in_decay), params in sorted(groups.items())
        ]
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        if not self.args.group_by_modality_length:
            return super()._get_train_sampler(train_dataset)
        self._epoch_sampler = ModalityLengthGroupedSampler(
            self.modality_lengths,
            batch_size=self.args.per_device_train_batch_size,
            n_batches=self.args.world_size * self.args.gradient_accumulation_steps,
            seed=self.args.seed,
        )
        return self._epoch_sampler

    def get_train_dataloader(self) -> DataLoader:
        """`Trainer`'s DataLoader, or with `max_tokens_per_batch` one on `TokenBudgetBatchSampler` (the parameters of
        `Trainer._get_dataloader`, a batch sampler instead of `batch_size` / `sampler` / `drop_last`)."""
        if self.args.max_tokens_per_batch is None:
            return super().get_train_dataloader()
        args, dataset, collator = self.args, self.train_dataset, self.data_collator
        if isinstance(dataset, datasets.Dataset):
            dataset = self._remove_unused_columns(dataset, description="Training")
        else:
            collator = self._get_collator_with_removed_columns(collator, description="Training")
        self._epoch_sampler = self._token_budget_sampler()
        loader = DataLoader(
            dataset,
            batch_sampler=self._epoch_sampler,
            collate_fn=collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            multiprocessing_context=args.dataloader_multiprocessing_context,
            prefetch_factor=args.dataloader_prefetch_factor,
            in_order=args.dataloader_in_order,
            worker_init_fn=partial(seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index),
        )
        return self.accelerator.prepare(loader)

    def _token_budget_sampler(self) -> TokenBudgetBatchSampler:
        """The batch sampler for `max_tokens_per_batch`, its batch count fixed over the epochs the run trains
        (`num_train_epochs`, or as many as `max_steps` needs at the first epoch's count, an upper bound)."""
        args = self.args
        n_batches = args.world_size * args.gradient_accumulation_steps
        lengths = self.modality_lengths if args.group_by_modality_length else [1] * len(self.token_counts)

        def sampler(epochs):
            return TokenBudgetBatchSampler(
                self.token_counts, lengths, args.max_tokens_per_batch, n_batches, args.world_size, args.seed, epochs
            )

        first = sampler(1)
        steps_per_epoch = math.ceil(len(first) / n_batches)
        epochs = (
            math.ceil(args.max_steps / steps_per_epoch) if args.max_steps > 0 else math.ceil(args.num_train_epochs)
        )
        budget = first if epochs <= 1 else sampler(epochs)
        logger.info(
            "max_tokens_per_batch %d: %d per-device batches per epoch (%d per rank) of at most that many tokens "
            "(%.1f rows on average; per_device_train_batch_size=%d is unused)",
            args.max_tokens_per_batch,
            len(budget),
            len(budget) // args.world_size,
            len(self.token_counts) / len(budget),
            args.per_device_train_batch_size,
        )
        return budget

    def _run_epoch(self, *args, epoch, **kwargs):
        # `Trainer` reaches the sampler's `set_epoch` through the DataLoader, except on a resumed run with several
        # ranks (`SkipBatchSampler` over `BatchSamplerShard`): there the resumed epoch would replay epoch 0's order.
        if self._epoch_sampler is not None:
            self._epoch_sampler.set_epoch(epoch)
        return super()._run_epoch(*args, epoch=epoch, **kwargs)

    def _get_num_items_in_batch(self, batch_samples, device):
        """`None` under `loss_weighting="micro_batch"`: each micro-batch is then averaged over its own trained
        tokens and divided by the accumulation steps, as LLaVA-1.5 trained (see the module docstring)."""
        if self.args.loss_weighting == "micro_batch":
            return None
        return super()._get_num_items_in_batch(batch_samples, device)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(self._describe_micro_batch(inputs))
        return super().training_step(model, inputs, num_items_in_batch)

    def _describe_micro_batch(self, inputs) -> str:
        """`rank 1 step 4 micro-batch 1: text-only (zero image); rows (tokens/trained): 41/5 37/9`: what each rank
        trains on, to check the sampler and see which steps mix images and text across ranks."""
        step = self.state.global_step + 1
        self._micro_batch = self._micro_batch + 1 if step == self._micro_batch_step else 0
        self._micro_batch_step = step
        if "pixel_values" in inputs:
            kind = "images"
        else:
            kind = "text-only" + (" (zero image)" if self.args.zero_image_for_text_only == "yes" else "")
        if "attention_mask" in inputs:
            tokens = inputs["attention_mask"].sum(dim=1).tolist()
            trained = (inputs["labels"][:, 1:] != -100).sum(dim=1).tolist()
        else:  # padding-free: one row per sequence of the packed batch (each row's first label is -100)
            starts = inputs["cu_seq_lens_q"].tolist()
            tokens = [end - start for start, end in zip(starts, starts[1:])]
            trained = [int((inputs["labels"][0, start:end] != -100).sum()) for start, end in zip(starts, starts[1:])]
        rows = " ".join(f"{n}/{t}" for n, t in zip(tokens, trained))
        return f"rank {self.args.process_index} step {step} micro-batch {self._micro_batch}: {kind}; rows (tokens/trained): {rows}"

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Loads a single-file full checkpoint with `from_pretrained`'s key renaming; other layouts as `Trainer`."""
        model = self.model if model is None else model
        path = os.path.join(resume_from_checkpoint, "model.safetensors")
        if (
            self.is_fsdp_enabled
            or self.is_deepspeed_enabled
            or not os.path.isfile(path)
            or hasattr(model, "peft_config")
        ):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        transforms = get_model_conversion_mapping(model)
        renamings = [t for t in transforms if not isinstance(t, WeightConverter)]
        converters = [t for t in transforms if isinstance(t, WeightConverter)]
        state = {rename_source_key(key, renamings, converters)[0]: value for key, value in load_file(path).items()}
        result = model.load_state_dict(state, strict=False)
        missing = (
            set(result.missing_keys) - {"lm_head.weight"}
            if model.config.get_text_config().tie_word_embeddings
            else set(result.missing_keys)
        )
        if missing or result.unexpected_keys:
            raise ValueError(
                f"{path} does not match the model: missing {sorted(missing)[:5]}, unexpected {result.unexpected_keys[:5]}"
            )
        logger.info("Loaded model weights from %s", path)


def check_padding_free_attention(model) -> None:
    """Refuses `padding_free` with an attention implementation that cannot keep the packed rows apart (the rows would
    silently attend to each other): the language model's must be one of `PADDING_FREE_ATTENTION`."""
    implementation = model.model.language_model.config._attn_implementation
    if implementation not in PADDING_FREE_ATTENTION:
        raise ValueError(
            f"padding_free: true needs an attention implementation that keeps the packed rows apart "
            f"({', '.join(PADDING_FREE_ATTENTION)}); the model uses {implementation!r}: set attn_implementation in the "
            "recipe, or padding_free: false"
        )
    if implementation in ("sdpa", "eager") and torch.cuda.is_available():
        logger.warning(
            "padding_free with %s is exact but computes attention over the whole packed sequence under a block mask "
            "(quadratic in its length); flash_attention_2 attends within each row only",
            implementation,
        )


def resume_point(checkpoint) -> tuple[int, int]:
    """`(global step, total steps)` of a checkpoint folder, from its `trainer_state.json`."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    return state["global_step"], state["max_steps"]


def whole_run_loss(log_history: list[dict], resumed_at: int, call_loss: float, global_step: int) -> float | None:
    """The mean training loss of every step of a resumed run (transformers averages only the steps of the call that
    resumed): the steps up to the checkpoint from the logged losses (each is the mean since the previous log, rounded
    to 4 decimals), the rest from the call's own mean. None when the checkpoint's step was not a logged step."""
    before, last = 0.0, 0
    for entry in log_history:
        if "loss" in entry and entry["step"] <= resumed_at:
            before += entry["loss"] * (entry["step"] - last)
            last = entry["step"]
    if last != resumed_at or global_step <= 0:
        return None
    return (before + call_loss * (global_step - resumed_at)) / global_step
