"""`hub-llava make-tiny-model OUT`: a tiny random LLaVA-1.5-shaped checkpoint + processor, for the smoke recipe.

Nothing is downloaded: the tokenizer is trained locally and the model initialised from config
(`hub_llava.testing`). The folder loads like any Llava checkpoint, so the smoke recipe runs the real code path.
"""

from hub_llava.processing import build_processor, padding_image_processor
from hub_llava.testing import tiny_llava, tiny_tokenizer
from hub_llava.token_stream import TokenStream


def make_tiny_model(output_dir: str, image_size: int = 28, patch_size: int = 14, seed: int = 0) -> str:
    """Writes a tiny `LlavaForConditionalGeneration` and its processor to `output_dir`; returns the folder."""
    tokenizer = tiny_tokenizer()
    model = tiny_llava(tokenizer, image_size=image_size, patch_size=patch_size, seed=seed)
    model.config.image_seq_length = (image_size // patch_size) ** 2
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    processor = build_processor(tokenizer, padding_image_processor(image_size), patch_size, image_size)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    TokenStream.from_processor(processor).save_pretrained(output_dir)  # tokenizer.model + legacy flag
    return output_dir


def main(args) -> int:
    print(make_tiny_model(args.output_dir, seed=args.seed))
    return 0
