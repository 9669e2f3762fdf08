"""What a finished run leaves in `output_dir`: weights (safetensors), processor, generation config and a model card."""

import logging
import os
import re

from transformers import TrainerCallback

from hub_llava.model_card import describe_architecture, parameter_counts, render_model_card
from hub_llava.token_stream import TokenStream

logger = logging.getLogger(__name__)

HYPERPARAMETERS = [
    "learning_rate",
    "mm_projector_lr",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "max_grad_norm",
    "max_length",
    "bf16",
    "seed",
    "llava_template",
    "image_aspect_ratio",
    "train_projector_only",
    "group_by_modality_length",
]


def dataset_hub_id(name: str) -> str | None:
    """The Hub id of a dataset name: `org/name[:config]` as is; a local folder staged by our dataset scripts by the
    repo its card loads (`load_dataset("hub_llava/lvis_instruct4v", ...)`); None for anything else."""
    path, _, _ = name.partition(":")
    card = os.path.join(path, "README.md")
    if os.path.isfile(card):
        with open(card, encoding="utf-8") as f:
            match = re.search(r'load_dataset\("([\w.-]+/[\w.-]+)"', f.read())
        return match.group(1) if match else None
    return path if path.count("/") == 1 and not os.path.exists(path) else None


def data_line(dataset_names: list[str], n_rows: int) -> str:
    """The card's data line: each dataset by its Hub id and config, saying where a local copy was read from."""
    described = []
    for name in dataset_names:
        path, _, config = name.partition(":")
        hub_id = dataset_hub_id(name)
        label = f"`{hub_id}`" + (f" (config `{config}`)" if config else "") if hub_id else f"`{name}`"
        described.append(label + (f", read from the local copy `{path}`" if os.path.exists(path) else ""))
    return f"{'; '.join(described)}: {n_rows} rows after the max_length filter."


def describe_run(training_args) -> str:
    if training_args.train_projector_only:
        return (
            "LLaVA-1.5 stage 1 (feature alignment) with hub_llava's recipe on TRL's `SFTTrainer`: only the projector "
            f"was trained, with the `{training_args.llava_template}` template; the language model and vision tower "
            "are the base's. A starting point for stage 2, not an assistant."
        )
    return (
        f"Fine-tuned with hub_llava's LLaVA-1.5 recipe on TRL's `SFTTrainer` (`{training_args.llava_template}` "
        "template, answers and their `</s>` trained, vision tower frozen)."
    )


def training_section(training_args, model_args, dataset_names: list[str], recipe: str | None, n_rows: int) -> dict:
    """The card's training section: data, recipe command and the hyperparameters that define the run."""
    args = training_args.to_dict()
    hyperparameters = {name: args[name] for name in HYPERPARAMETERS if name in args}
    hyperparameters["global_batch_size"] = (
        training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size
    )
    if model_args.use_peft:
        hyperparameters.update(
            lora_r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout
        )
    command = f"accelerate launch recipes/sft.py --config {recipe}" if recipe else "recipes/sft.py"
    return {
        "data": data_line(dataset_names, n_rows),
        "recipe": f"`{command}` (hub_llava, TRL `SFTTrainer`)",
        "hyperparameters": hyperparameters,
    }


def hub_ids(names: list[str]) -> list[str] | None:
    """The Hub repo ids among dataset/model names (`"org/name"` or `"org/name:config"`); local folders are left out,
    since the card's metadata may only list repo ids (the Hub rejects a card listing a path)."""
    ids = [name.split(":", 1)[0] for name in names]
    ids = [repo for repo in ids if repo.count("/") == 1 and not os.path.exists(repo)]
    return list(dict.fromkeys(ids)) or None


def save_outputs(trainer, model_args, dataset_names: list[str], recipe: str | None, n_rows: int) -> str:
    """Saves model + processor (+ generation config) and, on the main process, writes the model card."""
    args = trainer.args
    trainer.model.generation_config.eos_token_id = trainer.processing_class.tokenizer.eos_token_id
    trainer.save_model(args.output_dir)  # safetensors, processor (template, image processor), generation config
    if trainer.accelerator.is_main_process:
        # tokenizer.model + the slow tokenizer's legacy flag: `hub-llava eval` then feeds the stream trained on.
        TokenStream.from_processor(trainer.processing_class).save_pretrained(args.output_dir)
        name = args.hub_model_id or os.path.basename(os.path.normpath(args.output_dir))
        bases = [model_args.model_name_or_path, model_args.vision_tower_name_or_path]
        config = trainer.accelerator.unwrap_model(trainer.model).config
        datasets = list(dict.fromkeys(filter(None, map(dataset_hub_id, dataset_names)))) or None
        card = render_model_card(
            name,
            model_id=args.hub_model_id or args.output_dir,  # the quick start loads what exists; push rewrites it
            description=describe_run(args),
            base_model=hub_ids([base for base in bases if base]),
            datasets=datasets,
            training=training_section(args, model_args, dataset_names, recipe, n_rows),
            architecture=describe_architecture(config, parameter_counts(args.output_dir)),
        )
        with open(os.path.join(args.output_dir, "README.md"), "w", encoding="utf-8") as f:
            f.write(card)
        logger.info("Saved model, processor and model card to %s", args.output_dir)
    return args.output_dir


class TokenStreamFilesCallback(TrainerCallback):
    """Adds `tokenizer.model` and the slow tokenizer's `legacy` flag to every checkpoint folder the Trainer saves
    (transformers 5 writes neither), so an intermediate checkpoint is evaluated on the stream it was trained on."""

    def __init__(self, processor):
        self.stream = TokenStream.from_processor(processor)

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if state.is_world_process_zero and os.path.isdir(folder):
            self.stream.save_pretrained(folder)
