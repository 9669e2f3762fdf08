"""Batched greedy generation with LLaVA-1.5's inference prompt (the vicuna_v1 template, "<image>\\n" + question).

Prompt ids come from `hub_llava.token_stream` (LLaVA's `tokenizer_image_token` on the checkpoint's SentencePiece model:
one BOS, `▁` after the image), the image placeholder expanded to the model's image tokens; prompts are left-padded so
every sequence's last token sits at the end of the batch; images go through the checkpoint's image processor (padded
to a square when it pads, as LLaVA's `image_aspect_ratio: pad`); decoding is greedy (temperature 0, one beam) and
the output is stripped, as LLaVA does.
"""

import torch

from hub_llava.eval.docs import resolve_image
from hub_llava.processing import chat_template, image_token_count
from hub_llava.token_stream import TokenStream, expand_images


class Generator:
    """Wraps a `LlavaForConditionalGeneration` and its processor for batched answering.

    Args:
        model: the model, already on its device and in eval mode.
        processor: its `LlavaProcessor` (loaded from the checkpoint, with its `tokenizer.model`).
        template (`str`, *optional*, defaults to `"vicuna_v1"`): the chat template the prompts are built with.
    """

    def __init__(self, model, processor, template: str = "vicuna_v1"):
        self.model, self.processor = model, processor
        self.stream = TokenStream.from_processor(processor, chat_template(template))
        self.tokenizer = processor.tokenizer
        self.n_image_tokens = image_token_count(processor)

    @staticmethod
    def messages(question: str, has_image: bool) -> list[dict]:
        content = ([{"type": "image"}] if has_image else []) + [{"type": "text", "text": question}]
        return [{"role": "user", "content": content}]

    def prompt(self, question: str, has_image: bool) -> str:
        """The full model input text, e.g. '<s>A chat ... USER: <image>\\nIs there a cat? ASSISTANT:'."""
        return self.stream.render(self.messages(question, has_image), add_generation_prompt=True)[0]

    def prompt_ids(self, question: str, has_image: bool) -> list[int]:
        """LLaVA's prompt ids (one `<image>` id per image, before expansion)."""
        return self.stream.prompt(self.messages(question, has_image))

    def _inputs(self, questions: list[str], images: list) -> dict:
        rows = []
        for question, image in zip(questions, images):
            ids = self.prompt_ids(question, image is not None)
            rows.append(expand_images(ids, ids, self.stream.image_token_id, self.n_image_tokens)[0])
        length = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), length), self.stream.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: every prompt ends at the last position
            input_ids[i, length - len(row) :] = torch.tensor(row)
            attention_mask[i, length - len(row) :] = 1
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        pil = [resolve_image(i) if not hasattr(i, "convert") else i.convert("RGB") for i in images if i is not None]
        if pil:
            inputs["pixel_values"] = self.processor.image_processor(pil, return_tensors="pt")["pixel_values"]
        return inputs

    @torch.inference_mode()
    def generate(self, questions: list[str], images: list, generation_kwargs: dict) -> list[str]:
        """Answers a batch; `images[i]` is a path, a PIL image or None (text-only question)."""
        inputs = {key: value.to(self.model.device) for key, value in self._inputs(questions, images).items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        kwargs = {k: v for k, v in generation_kwargs.items() if k != "temperature"}
        kwargs.setdefault("do_sample", False)  # temperature 0 = greedy
        output = self.model.generate(**inputs, pad_token_id=self.stream.pad_token_id, **kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
