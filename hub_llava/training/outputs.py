"""What a finished run leaves in `output_dir`: weights (safetensors), processor, generation config and a model card."""

import logging
import os
import re
from functools import partial

from transformers import TrainerCallback

from hub_llava.model_card import describe_architecture, parameter_counts, render_model_card
from hub_llava.token_stream import TokenStream
from hub_llava.training.lora import MERGED, base_record, merge_adapter, write_base_record

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
    """Saves model + processor (+ generation config) and, on the main process, writes the model card.

    A LoRA run saves its adapter in `output_dir` with `base_model.json` (how to rebuild its base) and, with
    `merge_lora`, the adapter merged into that base in `output_dir/merged/` (main process only), each with its card.

    Returns:
        The folder holding the full model: `output_dir/merged` for a merged LoRA run, `output_dir` otherwise.
    """
    args = trainer.args
    trainer.model.generation_config.eos_token_id = trainer.processing_class.tokenizer.eos_token_id
    trainer.save_model(args.output_dir)  # safetensors, processor (template, image processor), generation config
    merge = model_args.use_peft and model_args.merge_lora
    if model_args.merge_lora and not model_args.use_peft:
        logger.info("merge_lora ignored: the run trained no LoRA adapter (use_peft is false); %s is the full model",
                    args.output_dir)  # fmt: skip
    if not trainer.accelerator.is_main_process:
        return os.path.join(args.output_dir, MERGED) if merge else args.output_dir
    # tokenizer.model + the slow tokenizer's legacy flag: `hub-llava eval` then feeds the stream trained on.
    TokenStream.from_processor(trainer.processing_class).save_pretrained(args.output_dir)
    model = trainer.accelerator.unwrap_model(trainer.model)
    card = partial(_card, args, model_args, dataset_names, recipe, n_rows)
    if not model_args.use_peft:
        card(args.output_dir, model.config, args.output_dir)
        logger.info("Saved model, processor and model card to %s", args.output_dir)
        return args.output_dir
    record = base_record(model_args, model, trainer.processing_class)
    write_base_record(args.output_dir, record)
    merged = merge_adapter(args.output_dir, processor=trainer.processing_class) if merge else None
    lora = lora_section(model_args, record, adapter=True, merged=merged is not None)
    card(args.output_dir, model.config, merged, lora)
    if merged:
        write_base_record(merged, record)  # the merged model's provenance travels with it
        card(merged, model.config, merged, lora_section(model_args, record, adapter=False, merged=True))
    logger.info("Saved the LoRA adapter, processor and model card to %s%s", args.output_dir,
                f", the merged model to {merged}" if merged else "")  # fmt: skip
    return merged or args.output_dir


def _card(args, model_args, dataset_names, recipe, n_rows, folder, config, weights_dir, lora=None) -> None:
    """Writes `folder/README.md`, its architecture counted from the safetensors in `weights_dir` (if any)."""
    name = args.hub_model_id or os.path.basename(os.path.normpath(args.output_dir))
    bases = [model_args.model_name_or_path, model_args.vision_tower_name_or_path]
    datasets = list(dict.fromkeys(filter(None, map(dataset_hub_id, dataset_names)))) or None
    card = render_model_card(
        name,
        model_id=args.hub_model_id or folder,  # the quick start loads what exists; push rewrites it
        description=describe_run(args),
        base_model=hub_ids([base for base in bases if base]),
        datasets=datasets,
        training=training_section(args, model_args, dataset_names, recipe, n_rows),
        architecture=describe_architecture(config, parameter_counts(weights_dir) if weights_dir else None),
        lora=lora,
    )
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)


def describe_base(record: dict) -> str:
    """How a LoRA run's base was built, from its `base_model.json`: what `rebuild_base` builds again."""
    revision = f" (revision `{record['model_revision']}`)" if record["model_revision"] not in (None, "main") else ""
    if record["vision_tower_name_or_path"]:
        text = (
            f"built from components as LLaVA-1.5's stage 2: the LLM `{record['model_name_or_path']}`{revision}, the "
            f"vision tower `{record['vision_tower_name_or_path']}` and "
            + (
                f"the stage-1 projector `{record['mm_projector_path']}`"
                if record["mm_projector_path"]
                else "a randomly initialised projector"
            )
        )
    else:
        text = f"the Llava checkpoint `{record['model_name_or_path']}`{revision}" + (
            f" with the projector `{record['mm_projector_path']}`" if record["mm_projector_path"] else ""
        )
    if record["added_tokens"]:
        added = " and ".join(f"`{token}` (id {id_})" for token, id_ in record["added_tokens"].items())
        text += (
            f"; {added} added to the LLM's {record['llm_vocab_size']}-token vocabulary, padded to "
            f"{record['vocab_size']} rows (a multiple of 64), every new embedding and `lm_head` row the mean of the "
            "existing rows"
        )
    elif record["vocab_size"] != record["llm_vocab_size"]:
        text += f"; vocabulary padded from {record['llm_vocab_size']} to {record['vocab_size']} rows"
    quantised = "4-bit" if record["load_in_4bit"] else "8-bit" if record["load_in_8bit"] else None
    if quantised:
        text += f"; trained quantised to {quantised} (QLoRA)"
    return text + "."


def lora_section(model_args, record: dict, adapter: bool, merged: bool) -> dict:
    """The card's LoRA section: what the folder holds (adapter or merged model) and how its base is rebuilt."""
    projector = "; the projector trained fully and saved with the adapter" if model_args.lora_projector else ""
    settings = f"r {model_args.lora_r}, alpha {model_args.lora_alpha}, dropout {model_args.lora_dropout}{projector}"
    quantised = record["load_in_4bit"] or record["load_in_8bit"]
    if adapter:
        description = f"This folder holds a PEFT LoRA adapter ({settings}), not a full model. " + (
            "`merged/` beside it holds the adapter merged into its base: a full checkpoint that loads with "
            "`LlavaForConditionalGeneration` and that `hub-llava eval --model` and `hub-llava push model` take."
            if merged
            else "`hub_llava.training.lora.merge_adapter(folder)` writes it merged into its base as a full checkpoint."
        )
    else:
        description = (
            f"The LoRA adapter of this run ({settings}) merged into its base: W + (alpha / r) · B · A in every adapted "
            "linear layer, the trained projector in place of the base's. "
            + (
                f"The base was reloaded unquantised in `{record['dtype']}` for the merge: the weights are that base "
                "plus the LoRA delta, which differs from the quantised model trained by the quantisation error."
                if quantised
                else ""
            )
        )
    base = (
        f"The base is {describe_base(record)} `base_model.json` records these settings; "
        "`hub_llava.training.lora.rebuild_base(folder)` builds the same base again."
    )
    return {"adapter": adapter, "description": description.strip(), "base": base}


class TokenStreamFilesCallback(TrainerCallback):
    """Adds `tokenizer.model` and the slow tokenizer's `legacy` flag to every checkpoint folder the Trainer saves
    (transformers 5 writes neither), so an intermediate checkpoint is evaluated on the stream it was trained on; in a
    LoRA run also `base_model.json` (`base_record`), so an intermediate adapter can be rebuilt and merged
    (`hub_llava.training.lora.merge_adapter`) like the final one."""

    def __init__(self, processor, base_record: dict | None = None):
        self.stream = TokenStream.from_processor(processor)
        self.base_record = base_record

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if state.is_world_process_zero and os.path.isdir(folder):
            self.stream.save_pretrained(folder)
            if self.base_record is not None:
                write_base_record(folder, self.base_record)
