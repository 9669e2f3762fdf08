"""`hub-llava render-sample --config <recipe.yaml> [--index N] [--ids]`: one training row as the trainer sees it.

Prints JSON `{"text", "trained_spans", "n_tokens", "n_image_tokens"}`: the rendered training text (one `<image>`
placeholder per image), the decoded spans that carry a loss (each answer + `</s>` for vicuna_v1), the sequence length
and the number of image tokens, computed by the very collator `recipes/sft.py` builds. The tool to trust the masking.

With `--ids`, a table instead: one line per id of LLaVA's stream (`position`, `id`, `piece`, `label`), the image as
LLaVA's single placeholder `-200` (the model sees `n_image_tokens` copies of `<image>` there), so the row can be
diffed against what LLaVA's own `preprocess_v1` / `preprocess_plain` print for the same tokenizer files.
"""

import json

from trl import DatasetMixtureConfig, ScriptArguments, TrlParser
from trl.data_utils import prepare_multimodal_messages

from hub_llava.processing import IMAGE_TOKEN
from hub_llava.token_stream import IGNORE_INDEX
from hub_llava.training.collator import build_collator, trained_spans
from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig
from hub_llava.training.data import check_row, load_train_dataset
from hub_llava.training.model import load_processor

LLAVA_IMAGE_INDEX = -200  # LLaVA's IMAGE_TOKEN_INDEX


def render_sample(row: dict, index: int, processor, training_args) -> dict:
    """Renders `row` through the training collator; raises `BadRowError` naming the row if it is malformed."""
    check_row(row, index, require_image=training_args.llava_template == "plain")
    messages = prepare_multimodal_messages(row["messages"], images=row.get("images") or [])
    text = processor.apply_chat_template(messages, tokenize=False)
    batch = build_collator(processor, training_args)([dict(row)])
    # a padding-free recipe's batch of one row is that row, without an attention mask
    n_tokens = int(batch["attention_mask"][0].sum()) if "attention_mask" in batch else batch["input_ids"].shape[1]
    labels = batch["labels"][0][:n_tokens]
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    return {
        "text": text,
        "trained_spans": trained_spans(labels, processor.tokenizer),
        "n_tokens": n_tokens,
        "n_image_tokens": int((batch["input_ids"][0] == image_id).sum()),
    }


def id_table(row: dict, index: int, processor, training_args) -> list[tuple[int, int, str, int]]:
    """`(position, id, piece, label)` of the row's stream as LLaVA writes it (one `-200` per image)."""
    check_row(row, index, require_image=training_args.llava_template == "plain")
    collator = build_collator(processor, training_args)
    messages = prepare_multimodal_messages(row["messages"], images=[None] * len(row.get("images") or []))
    ids, labels = collator.stream.conversation(messages)
    image_id = collator.stream.image_token_id
    table = []
    for position, (token, label) in enumerate(zip(ids, labels)):
        if token == image_id:
            table.append((position, LLAVA_IMAGE_INDEX, f"<image> (x{collator.n_image_tokens})", IGNORE_INDEX))
        else:
            table.append((position, token, processor.tokenizer.convert_ids_to_tokens(token), label))
    return table


# Settings `TrainingArguments` checks against this machine's hardware at parse time (bf16 needs a GPU or a recent
# CPU). Rendering needs only the processor and the data, so a GPU recipe renders on any machine.
HARDWARE_OFF = ["--bf16", "false", "--fp16", "false", "--tf32", "false"]


def parse_recipe(argv: list[str]):
    """Parses recipe YAML + overrides with the same dataclasses as `recipes/sft.py` (hardware checks off)."""
    parser = TrlParser((ScriptArguments, LlavaSFTConfig, LlavaModelConfig, DatasetMixtureConfig), allow_abbrev=False)
    return parser.parse_args_and_config([*argv, *HARDWARE_OFF])


def main(args) -> int:
    overrides = ["--model_name_or_path", args.model_name_or_path] if args.model_name_or_path else []
    script_args, training_args, model_args, mixture = parse_recipe(["--config", args.config, *overrides])
    dataset, _ = load_train_dataset(script_args, mixture)
    if not 0 <= args.index < len(dataset):
        raise ValueError(f"--index {args.index} is out of range: the training split has {len(dataset)} rows")
    processor = load_processor(model_args, training_args)
    row = dataset[args.index]
    if args.ids:
        print("position\tid\tpiece\tlabel")
        for position, token, piece, label in id_table(row, args.index, processor, training_args):
            print(f"{position}\t{token}\t{json.dumps(piece, ensure_ascii=False)}\t{label}")
    else:
        print(json.dumps(render_sample(row, args.index, processor, training_args), ensure_ascii=False))
    return 0
