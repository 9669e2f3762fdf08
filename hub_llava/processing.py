"""The processor LLaVA-1.5 needs, shared by training, conversion and evaluation.

- the `vicuna_v1` chat template (`templates/vicuna_v1.jinja`), with `{% generation %}` spans for TRL's
  `assistant_only_loss`;
- an image processor that pads to a square with the CLIP mean colour (122, 116, 104), centred, then resizes the
  shortest edge to 336 and centre-crops (LLaVA-1.5's `image_aspect_ratio: pad` + CLIP ViT-L/14-336 preprocessing);
- the `<image>` and `<pad>` tokens LLaVA-1.5 adds to the Vicuna tokenizer.
"""

from importlib import resources

from PIL import Image
from tokenizers import AddedToken
from transformers import LlavaProcessor
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
CLIP_MEAN_RGB = tuple(int(x * 255) for x in OPENAI_CLIP_MEAN)  # (122, 116, 104), LLaVA's padding colour


def chat_template(name: str = "vicuna_v1") -> str:
    """Returns the Jinja chat template shipped in `hub_llava/templates/<name>.jinja`."""
    return resources.files("hub_llava.templates").joinpath(f"{name}.jinja").read_text(encoding="utf-8")


def padding_image_processor(image_size: int = 336, **kwargs):
    """An image processor that pads to a square with the CLIP mean colour, then CLIP-preprocesses.

    Args:
        image_size (`int`, *optional*, defaults to `336`):
            Resize (shortest edge) and centre-crop size; 336 for CLIP ViT-L/14-336.
        kwargs:
            Overrides (e.g. `image_mean`, `image_std` read from another CLIP's preprocessor config).
    """
    settings = {
        "do_pad": True,
        "do_resize": True,
        "size": {"shortest_edge": image_size},
        "do_center_crop": True,
        "crop_size": {"height": image_size, "width": image_size},
        "image_mean": list(OPENAI_CLIP_MEAN),
        "image_std": list(OPENAI_CLIP_STD),
        "resample": 3,  # bicubic, as CLIPImageProcessor
        "do_convert_rgb": True,
    }
    settings.update(kwargs)
    # AutoImageProcessor picks the torchvision backend when available, else the PIL one (same geometry).
    return _llava_image_processor(settings)


def _llava_image_processor(settings: dict):
    try:
        import torchvision  # noqa: F401
        from transformers import LlavaImageProcessor as cls
    except ImportError:
        from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil as cls
    return cls(**settings)


def expand_to_square(image, background: tuple[int, int, int] = CLIP_MEAN_RGB):
    """Pads a PIL image to a square with `background`, centred (LLaVA's `expand2square`), in PIL.

    The padding image processor does the same on arrays; doing it first in PIL makes its own pad a no-op and skips its
    slow array round trip (same pixels: same offsets `(side - w) // 2`, `(side - h) // 2`, same colour).
    """
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), background if image.mode == "RGB" else 0)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def image_token_count(processor) -> int:
    """Tokens one image expands to: (crop size / patch size)^2, CLS dropped (576 for CLIP ViT-L/14-336)."""
    size = processor.image_processor.crop_size
    return (size["height"] // processor.patch_size) * (size["width"] // processor.patch_size)


def add_llava_tokens(tokenizer) -> int:
    """Adds `<image>` and `<pad>` (LLaVA-1.5's ids 32000 and 32001 on the Vicuna tokenizer); returns how many were new."""
    added = tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.unk_token:
        added += tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    tokenizer.image_token = IMAGE_TOKEN
    return added


def build_processor(
    tokenizer, image_processor=None, patch_size: int = 14, image_size: int = 336, template: str = "vicuna_v1"
) -> LlavaProcessor:
    """Builds the `LlavaProcessor` used everywhere: vicuna_v1 template, padding image processor, `<image>` token.

    The number of image tokens per image is (image_size / patch_size)^2 = 576 for CLIP ViT-L/14-336 (CLS dropped).
    `template="plain"` selects LLaVA-1.5's stage-1 template (`templates/plain.jinja`).
    """
    add_llava_tokens(tokenizer)
    tokenizer.chat_template = chat_template(template)
    return LlavaProcessor(
        image_processor=image_processor or padding_image_processor(image_size),
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=chat_template(template),
        image_token=IMAGE_TOKEN,
    )
