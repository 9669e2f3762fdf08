"""The collator the trainer and `hub-llava render-sample` share: TRL's vision-language collator, made faster.

TRL's `DataCollatorForVisionLanguageModeling` already does what LLaVA-1.5 needs: it renders the chat template,
expands each `<image>` to the model's image tokens, pads on the right and, with `assistant_only_loss=True`, keeps
labels only inside the template's `{% generation %}` spans (each answer + `</s>`), re-aligned past the image tokens.
We change one thing: with `return_tensors="pt"`, transformers 5.23 computes the assistant masks by iterating the
offset mapping as tensors, element by element: ~80 ms per row at 576 image tokens (`bench/bench_collate.py`), 4-5x
the rest of the collate. We ask the processor for lists and convert to tensors after the masks are built: identical
output (`tests/test_training_data.py` compares it with TRL's collator), a fraction of the time. (LLaVA's zero image
for text-only batches lives in the model's forward: `hub_llava.training.model.add_zero_image_hook`.)
"""

from dataclasses import dataclass

import torch
from trl.data_utils import prepare_multimodal_messages
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from hub_llava.processing import expand_to_square


@dataclass
class LlavaCollator(DataCollatorForVisionLanguageModeling):
    """TRL's vision-language collator, with the assistant masks built on lists."""

    def _collate_language_modeling(self, examples):
        if not (self.assistant_only_loss and "messages" in examples[0]):
            return super()._collate_language_modeling(examples)
        if "image" in examples[0]:
            for example in examples:
                example["images"] = [example.pop("image")]
        if self.processor.image_processor.do_pad:  # the same pixels, ~9 ms less per 640x480 image (PIL-side pad)
            background = tuple(int(x * 255) for x in self.processor.image_processor.image_mean)
            for example in examples:
                example["images"] = [
                    expand_to_square(image if image.mode == "RGB" else image.convert("RGB"), background)
                    for image in example["images"]
                ]
        messages = [prepare_multimodal_messages(example["messages"], images=example["images"]) for example in examples]
        output = self.processor.apply_chat_template(
            messages,
            chat_template=self.chat_template,
            tokenize=True,
            return_dict=True,
            return_tensors=None,  # lists while the assistant masks are computed (fast), tensors below
            return_assistant_tokens_mask=True,
            processor_kwargs={
                "padding": True,
                "padding_side": "right",
                "pad_to_multiple_of": self.pad_to_multiple_of,
                "truncation": self.max_length is not None,
                "max_length": self.max_length,
                "add_special_tokens": False,  # the template writes BOS itself
            },
        )
        output.convert_to_tensors(tensor_type="pt")
        labels = output["input_ids"].clone()
        labels[output["attention_mask"] == 0] = -100
        labels[output.pop("assistant_masks") == 0] = -100
        output["labels"] = labels
        return output


def build_collator(processor, args) -> LlavaCollator:
    """The collator for `args` (a `LlavaSFTConfig`), exactly as `LlavaSFTTrainer` uses it."""
    return LlavaCollator(
        processor=processor,
        max_length=args.max_length,
        completion_only_loss=False,
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
