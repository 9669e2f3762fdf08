"""The collator the trainer and `hub-llava render-sample` share: LLaVA-1.5's token stream and padded images.

Text goes through `hub_llava.token_stream` (LLaVA's `tokenizer_image_token` + `preprocess_v1` / `preprocess_plain` on
the checkpoint's SentencePiece model; labels = each answer from its first `▁` plus `</s>`), each `<image>` expanded to
the model's image tokens, then truncated to `max_length` (counted after the image tokens, as LLaVA truncates after
splicing the features in) and padded on the right. Images are padded to a square in PIL when the image processor pads
(`image_aspect_ratio: pad`; the same pixels as its own pad, ~9 ms less per 640x480 image), then CLIP-preprocessed.

LLaVA's zero image for text-only batches lives in the model's forward (`hub_llava.training.model.add_zero_image_hook`).
"""

from dataclasses import dataclass, field

import torch
from trl.data_utils import prepare_multimodal_messages

from hub_llava.processing import expand_to_square, image_token_count
from hub_llava.token_stream import IGNORE_INDEX, TokenStream, expand_images


def row_ids(stream: TokenStream, messages: list[dict], n_images: int, n_image_tokens: int):
    """A training row's ids and labels, images expanded: the one place rows become tokens (collator and length pass).

    `messages` are the dataset's (plain-string content); the image goes before the first user text, where LLaVA-1.5
    records hold it (TRL's `prepare_multimodal_messages`).
    """
    ids, labels = stream.conversation(prepare_multimodal_messages(messages, images=[None] * n_images))
    return expand_images(ids, labels, stream.image_token_id, n_image_tokens)


@dataclass
class LlavaCollator:
    """Rows (`messages` + `images`) -> `input_ids`, `attention_mask`, `labels`, `pixel_values`.

    Args:
        processor: the `LlavaProcessor` (its image processor and geometry).
        stream (`TokenStream`): LLaVA's token stream for the processor's tokenizer and template.
        max_length (`int`, *optional*): truncation length, counted after the image tokens.
        pad_to_multiple_of (`int`, *optional*): pad each batch to a multiple of this length.
        assistant_only_loss (`bool`, *optional*, defaults to `True`): train on the answers and their `</s>` only
            (LLaVA); `False` trains every non-padding token, as TRL's collator does.
    """

    processor: object
    stream: TokenStream
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    assistant_only_loss: bool = True
    n_image_tokens: int = field(init=False)

    def __post_init__(self):
        self.n_image_tokens = image_token_count(self.processor)

    def __call__(self, examples: list[dict]) -> dict:
        images = [self._images(example) for example in examples]
        rows = [row_ids(self.stream, ex["messages"], len(im), self.n_image_tokens) for ex, im in zip(examples, images)]
        batch = self._pad([ids[: self.max_length] for ids, _ in rows], [lab[: self.max_length] for _, lab in rows])
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
        length = max(len(row) for row in ids)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(ids), length), self.stream.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), length), dtype=torch.long)
        out_labels = torch.full((len(ids), length), IGNORE_INDEX, dtype=torch.long)
        for i, (row, row_labels) in enumerate(zip(ids, labels)):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention_mask[i, : len(row)] = 1
            out_labels[i, : len(row)] = torch.tensor(row_labels if self.assistant_only_loss else row)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": out_labels}


def build_collator(processor, args) -> LlavaCollator:
    """The collator for `args` (a `LlavaSFTConfig`), exactly as `LlavaSFTTrainer` uses it."""
    return LlavaCollator(
        processor=processor,
        stream=TokenStream.from_processor(processor),
        max_length=args.max_length,
        pad_to_multiple_of=args.pad_to_multiple_of,
        assistant_only_loss=args.assistant_only_loss,
    )


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
