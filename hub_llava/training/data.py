"""Training rows -> what the trainer sees: checks, the length filter and the sampler's modality lengths.

Rows follow `hub_llava.data.schema`: `messages` with plain-string content and no `<image>` placeholder, plus an
`images` list (one image, or none for a text-only row). TRL's collator inserts the image before the first user text,
so a literal `<image>` left in the text would make two placeholders for one image: such rows are refused up front,
naming the row, instead of failing deep inside the processor.

`max_length` counts the sequence after the image placeholder is expanded to its 576 tokens (LLaVA-1.5 truncates
after splicing the image features in). A row that would be cut inside the image, or would keep no trained token, is
dropped before training and counted.
"""

import logging
from dataclasses import dataclass, field

import pyarrow.compute as pc
from datasets import Dataset, load_dataset
from trl import get_dataset

from hub_llava.processing import IMAGE_TOKEN
from hub_llava.token_stream import IGNORE_INDEX, TokenStream
from hub_llava.training.collator import row_ids

logger = logging.getLogger(__name__)


class BadRowError(ValueError):
    """A training row that cannot be rendered faithfully; the message names the row."""


def row_name(row: dict, index: int) -> str:
    """`row 12 (id '000000033471')`: how errors and logs point at a row."""
    return f"row {index} (id {row['id']!r})" if row.get("id") is not None else f"row {index}"


def check_row(row: dict, index: int, require_image: bool = False) -> None:
    """Raises `BadRowError` naming the row if it cannot be trained on as LLaVA-1.5 would.

    Checks: at most one image; no literal `<image>` in any message (with an image it would be a second placeholder,
    without one a placeholder with no image); an image path listed but no image; at least one assistant turn; with
    `require_image` (the `plain` stage-1 template, which LLaVA only applies to captioned images), an image and exactly
    one instruction + caption.
    """
    images = row.get("images") or []
    name = row_name(row, index)
    if require_image and not images:
        raise BadRowError(f"{name} has no image; the plain (stage-1) template trains on image captions only")
    if require_image and len(row["messages"]) != 2:
        raise BadRowError(
            f"{name} has {len(row['messages'])} messages; the plain (stage-1) template trains on one instruction and "
            "one caption per image (LLaVA's preprocess_plain)"
        )
    if len(images) > 1:
        raise BadRowError(f"{name} has {len(images)} images; LLaVA-1.5 trains on one image per row")
    for turn, message in enumerate(row["messages"]):
        content = message["content"]
        if isinstance(content, str) and IMAGE_TOKEN in content:
            if images:
                raise BadRowError(
                    f"{name} has a stray {IMAGE_TOKEN} in message {turn}: the image placeholder is added by the "
                    "collator, remove it from the text"
                )
            raise BadRowError(f"{name} has an {IMAGE_TOKEN} placeholder in message {turn} but no image")
    if not images and row.get("image_paths"):
        raise BadRowError(f"{name} lists image {row['image_paths'][0]!r} but has no image")
    if not any(message["role"] == "assistant" for message in row["messages"]):
        raise BadRowError(f"{name} has no assistant turn to train on")


@dataclass
class RowStats:
    """Per-row figures of the length pass, in dataset order.

    Args:
        n_tokens (`list[int]`): sequence length after image expansion, before truncation.
        n_trained (`list[int]`): trained tokens kept within `max_length`.
        image_cut (`list[bool]`): whether `max_length` falls inside the image tokens.
        modality_lengths (`list[int]`): LLaVA's sampler lengths: word count, negative for text-only rows.
    """

    n_tokens: list[int] = field(default_factory=list)
    n_trained: list[int] = field(default_factory=list)
    image_cut: list[bool] = field(default_factory=list)
    modality_lengths: list[int] = field(default_factory=list)


def row_stats(
    row: dict, index: int, stream, n_image_tokens: int, max_length: int | None, require_image: bool = False
) -> dict:
    """Checks one row and measures it with the collator's own tokenization (`collator.row_ids`).

    `row["images"]` may hold anything of the right length (only the count is used: images are not decoded).
    """
    check_row(row, index, require_image)
    n_images = len(row.get("images") or [])
    ids, labels = row_ids(stream, row["messages"], n_images, n_image_tokens)
    limit = len(ids) if max_length is None else max_length
    image_end = max((i + 1 for i, token in enumerate(ids) if token == stream.image_token_id), default=None)
    words = sum(len(message["content"].split()) for message in row["messages"])
    return {
        "n_tokens": len(ids),
        "n_trained": sum(1 for label in labels[:limit] if label != IGNORE_INDEX),
        "image_cut": image_end is not None and image_end > limit,
        "modality_length": words if n_images else -words,
    }


def image_counts(dataset: Dataset, batch_size: int = 10_000) -> list[int]:
    """Images per row, read from the Arrow list lengths (no image is decoded or copied)."""
    if "images" not in dataset.column_names:
        return [0] * len(dataset)
    counts = []
    for batch in dataset.select_columns(["images"]).with_format("arrow").iter(batch_size=batch_size):
        counts.extend(pc.fill_null(pc.list_value_length(batch["images"]), 0).to_pylist())
    return counts


def measure(
    dataset: Dataset, processor, n_image_tokens: int, max_length: int | None, num_proc=None, require_image=False
) -> RowStats:
    """Runs `row_stats` over the dataset; only the text columns are read."""
    stream = TokenStream.from_processor(processor)
    counts = image_counts(dataset)
    columns = [name for name in ("id", "messages", "image_paths") if name in dataset.column_names]

    def stats_of(row, index):
        row = {**row, "images": [None] * counts[index]}
        return row_stats(row, index, stream, n_image_tokens, max_length, require_image)

    stats = dataset.select_columns(columns).map(
        stats_of, with_indices=True, remove_columns=columns, num_proc=num_proc, desc="Checking and measuring rows"
    )
    values = stats.to_dict()  # plain lists (indexing a datasets Column row by row is slow)
    return RowStats(
        n_tokens=values["n_tokens"],
        n_trained=values["n_trained"],
        image_cut=values["image_cut"],
        modality_lengths=values["modality_length"],
    )


def kept_rows(stats: RowStats) -> list[int]:
    """The rows `filter_trainable` keeps: not cut inside the image, some trained token left."""
    return [i for i in range(len(stats.n_tokens)) if not stats.image_cut[i] and stats.n_trained[i] > 0]


def kept_token_counts(stats: RowStats, max_length: int | None) -> list[int]:
    """Per row `filter_trainable` keeps: its tokens in a batch (`n_tokens` cut at `max_length`, as the collator
    truncates), for the token-budget sampler."""
    return [min(stats.n_tokens[i], max_length or stats.n_tokens[i]) for i in kept_rows(stats)]


def filter_trainable(dataset: Dataset, stats: RowStats, ids_to_log: int = 5) -> tuple[Dataset, list[int]]:
    """Drops rows cut inside the image or left with nothing to train on; logs how many and which.

    Returns:
        `(dataset, modality_lengths)`: the kept rows (an index view, nothing copied) and their sampler lengths.
    """
    keep = kept_rows(stats)
    dropped = sorted(set(range(len(dataset))) - set(keep))
    if dropped:
        cut = sum(stats.image_cut[i] for i in dropped)
        ids = dataset.select_columns(["id"]).select(dropped[:ids_to_log])["id"] if "id" in dataset.column_names else []
        names = ", ".join(row_name({"id": ids[k] if ids else None}, i) for k, i in enumerate(dropped[:ids_to_log]))
        logger.warning(
            "Dropped %d of %d rows longer than max_length: %d cut inside the image, %d with no trained token left "
            "(first: %s)",
            len(dropped),
            len(dataset),
            cut,
            len(dropped) - cut,
            names,
        )
    if len(dropped) == len(dataset):
        raise ValueError("No row is left to train on after the max_length filter; raise `max_length`")
    return dataset.select(keep), [stats.modality_lengths[i] for i in keep]


def load_train_dataset(script_args, mixture) -> tuple[Dataset, list[str]]:
    """The training split: TRL's `datasets:` mixture if given, else `dataset_name` / `dataset_config`.

    Returns:
        `(dataset, names)` with names like `hub_llava/lvis_instruct4v:nodetail_mix619k` for the model card.
    """
    if mixture.datasets:
        names = [f"{d.path}:{d.name}" if d.name else d.path for d in mixture.datasets]
        return get_dataset(mixture)[script_args.dataset_train_split], names
    if not script_args.dataset_name:
        raise ValueError("Set `dataset_name` (and `dataset_config`) or a `datasets:` mixture in the recipe")
    dataset = load_dataset(script_args.dataset_name, script_args.dataset_config, split=script_args.dataset_train_split)
    name = script_args.dataset_name + (f":{script_args.dataset_config}" if script_args.dataset_config else "")
    return dataset, [name]
