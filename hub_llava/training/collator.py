"""The collator the trainer and `hub-llava render-sample` share: LLaVA-1.5's token stream and padded images.

Text goes through `hub_llava.token_stream` (LLaVA's `tokenizer_image_token` + `preprocess_v1` / `preprocess_plain` on
the checkpoint's SentencePiece model; labels = each answer from its first `▁` plus `</s>`), each `<image>` expanded to
the model's image tokens, then truncated to `max_length` (counted after the image tokens, as LLaVA truncates after
splicing the features in) and padded on the right, or, with `padding_free`, concatenated into one sequence (below).
Images are padded to a square in PIL when the image processor pads
(`image_aspect_ratio: pad`; the same pixels as its own pad, ~9 ms less per 640x480 image), then CLIP-preprocessed.

LLaVA's zero image for text-only batches lives in the model's forward (`hub_llava.training.model.add_zero_image_hook`).

Padding-free (`padding_free=True`): the same rows, truncated and labelled the same way, become one sequence
`input_ids` / `labels` / `position_ids` of shape (1, N), positions restarting at 0 per row, and no `attention_mask`.
From the restarting positions transformers 5.23 keeps the rows apart: `sdpa`, `eager` and `flex_attention` build a
block-causal mask (`masking_utils.find_packed_sequence_indices`, only when no cache is passed: the trainer's forward
has `use_cache=False`), flash-attention runs its varlen kernel on `cu_seq_lens_q/k` and `max_length_q/k` (given here,
as TRL's padding-free collator does, so it does not re-derive them from the positions in every layer). Each row's first
label is -100: with the shift-by-one loss it would be predicted from the previous row's last token, and in a padded
batch position 0 is never a target. The image tokens are spliced in row order, as in the padded batch.
"""

import itertools
from dataclasses import dataclass, field

import torch

from hub_llava.processing import expand_to_square, image_token_count
from hub_llava.token_stream import IGNORE_INDEX, TokenStream, expand_images


def row_ids(stream: TokenStream, messages: list[dict], n_images: int, n_image_tokens: int):
    """A training row's ids and labels, images expanded: the one place rows become tokens (collator and length pass).

    `messages` are the dataset's (plain-string content); the image goes before the first user text, where LLaVA-1.5
    records hold it (TRL's `prepare_multimodal_messages`).
    """
    from trl.data_utils import prepare_multimodal_messages  # here: `pad_rows` / `pack_rows` need torch alone

    ids, labels = stream.conversation(prepare_multimodal_messages(messages, images=[None] * n_images))
    return expand_images(ids, labels, stream.image_token_id, n_image_tokens)


@dataclass
class LlavaCollator:
    """Rows (`messages` + `images`) -> `input_ids`, `attention_mask`, `labels`, `pixel_values` (padded), or
    `input_ids`, `labels`, `position_ids`, the flash-attention lengths and `pixel_values` (padding-free).

    Args:
        processor: the `LlavaProcessor` (its image processor and geometry).
        stream (`TokenStream`): LLaVA's token stream for the processor's tokenizer and template.
        max_length (`int`, *optional*): truncation length, counted after the image tokens.
        pad_to_multiple_of (`int`, *optional*): pad each batch to a multiple of this length.
        assistant_only_loss (`bool`, *optional*, defaults to `True`): train on the answers and their `</s>` only
            (LLaVA); `False` trains every non-padding token, as TRL's collator does.
        padding_free (`bool`, *optional*, defaults to `False`):
            Concatenate the rows into one sequence of shape (1, N) instead of padding them (module docstring);
            `pad_to_multiple_of` then pads N, the padding being one more sequence with labels -100.
    """

    processor: object
    stream: TokenStream
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    assistant_only_loss: bool = True
    padding_free: bool = False
    n_image_tokens: int = field(init=False)

    def __post_init__(self):
        self.n_image_tokens = image_token_count(self.processor)

    def __call__(self, examples: list[dict]) -> dict:
        images = [self._images(example) for example in examples]
        rows = [row_ids(self.stream, ex["messages"], len(im), self.n_image_tokens) for ex, im in zip(examples, images)]
        ids = [row[: self.max_length] for row, _ in rows]
        labels = [(lab if self.assistant_only_loss else row)[: self.max_length] for row, lab in rows]
        batch = self._pack(ids, labels) if self.padding_free else self._pad(ids, labels)
        flat = [image for row in images for image in row]
        if flat:
            batch["pixel_values"] = self.processor.image_processor(flat, return_tensors="pt")["pixel_values"]
        return batch

    def _images(self, example: dict) -> list:
        images = example["images"] if "images" in example else [example["image"]]
        images = [image if image.mode == "RGB" else image.convert("RGB") for image in images or []]
        if self.processor.image_processor.do_pad:
            background = tuple(int(x * 255) for x in self.processor.image_processor.image_mean)
            images = [expand_to_square(image, background) for image in images]
        return images

    def _pad(self, ids: list[list[int]], labels: list[list[int]]) -> dict:
        return pad_rows(ids, labels, self.stream.pad_token_id, self.pad_to_multiple_of)

    def _pack(self, ids: list[list[int]], labels: list[list[int]]) -> dict:
        return pack_rows(ids, labels, self.stream.pad_token_id, self.pad_to_multiple_of)


def _padded_length(length: int, multiple: int | None) -> int:
    return -(-length // multiple) * multiple if multiple else length


def pad_rows(ids: list[list[int]], labels: list[list[int]], pad_token_id: int, multiple: int | None = None) -> dict:
    """Rows of ids and labels (images expanded, truncated) padded on the right into `input_ids`, `attention_mask`,
    `labels` of shape (rows, longest row, rounded up to `multiple`)."""
    length = _padded_length(max(len(row) for row in ids), multiple)
    input_ids = torch.full((len(ids), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), length), dtype=torch.long)
    out_labels = torch.full((len(ids), length), IGNORE_INDEX, dtype=torch.long)
    for i, (row, row_labels) in enumerate(zip(ids, labels)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
        out_labels[i, : len(row)] = torch.tensor(row_labels)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": out_labels}


def pack_rows(ids: list[list[int]], labels: list[list[int]], pad_token_id: int, multiple: int | None = None) -> dict:
    """The same rows concatenated into one sequence (module docstring): `input_ids`, `labels`, `position_ids` of
    shape (1, N), each row's first label -100, and the flash-attention lengths; N rounded up to `multiple` by one more
    sequence of `pad_token_id`, trained on nothing. A forward of it must not pass a cache (`use_cache=False`, as the
    trainer's): with one, sdpa / eager do not split the rows."""
    n_tokens = sum(len(row) for row in ids)
    tail = _padded_length(n_tokens, multiple) - n_tokens
    if tail:
        ids, labels = [*ids, [pad_token_id] * tail], [*labels, [IGNORE_INDEX] * tail]
    lengths = [len(row) for row in ids]
    flat_labels = [IGNORE_INDEX if j == 0 else label for row in labels for j, label in enumerate(row)]
    cu_seq_lens = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
    return {
        "input_ids": torch.tensor([[token for row in ids for token in row]]),
        "labels": torch.tensor([flat_labels]),
        "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
        "cu_seq_lens_q": cu_seq_lens,
        "cu_seq_lens_k": cu_seq_lens,
        "max_length_q": max(lengths),
        "max_length_k": max(lengths),
    }


def build_collator(processor, args) -> LlavaCollator:
    """The collator for `args` (a `LlavaSFTConfig`), exactly as `LlavaSFTTrainer` uses it."""
    return LlavaCollator(
        processor=processor,
        stream=TokenStream.from_processor(processor),
        max_length=args.max_length,
        pad_to_multiple_of=args.pad_to_multiple_of,
        assistant_only_loss=args.assistant_only_loss,
        padding_free=args.padding_free,
    )


def padding_fraction(batches: list[dict], pad_token_id: int) -> float:
    """The fraction of the tokens the model computes that are padding, over collated `batches` (padded or
    padding-free): 1 - real tokens / computed tokens. Real tokens: `attention_mask` where there is one, else the
    tokens that are not `pad_token_id` (padding-free batches pad only with it, and no row holds it)."""
    real = computed = 0
    for batch in batches:
        mask = batch["attention_mask"] if "attention_mask" in batch else batch["input_ids"] != pad_token_id
        real += int(mask.sum())
        computed += batch["input_ids"].numel()
    return 1 - real / computed


def trained_spans(labels: torch.Tensor, tokenizer) -> list[str]:
    """Decodes each contiguous run of trained positions (labels != -100) of one row."""
    spans, current = [], []
    for token in labels.tolist() + [-100]:
        if token != -100:
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    return spans
