"""`--verify`: the converted model against an independent forward pass over the ORIGINAL weights.

The reference follows LLaVA-1.5's own code path, with none of the converter's pieces: the LLM is a `LlamaForCausalLM`
loaded under the original names (a LoRA checkpoint is merged by PEFT itself), the image is padded to a square with
PIL in the CLIP mean colour and preprocessed by `CLIPImageProcessor`, CLIP's `hidden_states[-2]` minus CLS goes through
Linear-GELU-Linear built from the raw `mm_projector` tensors, and the result is spliced into the Llama input
embeddings where LLaVA's `tokenizer_image_token` puts `IMAGE_TOKEN_INDEX`. The converted folder is loaded with
`from_pretrained` / `AutoProcessor` and fed the same image and prompt.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from accelerate import init_empty_weights
from PIL import Image, ImageDraw
from transformers import (
    AutoProcessor,
    AutoTokenizer,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaForConditionalGeneration,
)

from hub_llava.convert.source import FULL, LORA, OriginalCheckpoint, iter_file, weight_files
from hub_llava.token_stream import TokenStream

logger = logging.getLogger(__name__)

IMAGE_TOKEN_INDEX = -200  # LLaVA's placeholder id for the image in input_ids
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
QUESTION = "What is shown in this image?"
# Runs of spaces (OCR text, code) are where a converted fast tokenizer and SentencePiece disagree.
WHITESPACE_QUESTION = 'What does the sign say?  Answer:  "STOP".\n    return x'
LOGIT_TOLERANCE = 1e-3  # both sides compute in float32 on the same (dtype-rounded) weights
PIXEL_TOLERANCE = 1e-4


@dataclass
class VerifyReport:
    """What `verify` measured: logits and pixels against the reference, and whether the prompt ids were LLaVA's."""

    max_logit_diff: float
    max_pixel_diff: float
    tokens_match: bool
    atol: float

    @property
    def ok(self) -> bool:
        return self.max_logit_diff <= self.atol and self.max_pixel_diff <= PIXEL_TOLERANCE and self.tokens_match

    def as_dict(self) -> dict:
        return {"max_logit_diff": self.max_logit_diff, "max_pixel_diff": self.max_pixel_diff}


def sample_image(width: int = 640, height: int = 400) -> Image.Image:
    """A non-square image with shapes and a gradient (deterministic, so padding and resizing both matter)."""
    image = Image.new("RGB", (width, height))
    pixels = image.load()
    for x in range(width):
        for y in range(height):
            pixels[x, y] = (255 * x // width, 255 * y // height, 128)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 8, height // 8, width // 2, height * 3 // 4), fill=(200, 30, 30))
    draw.rectangle((width * 5 // 8, height // 4, width * 7 // 8, height * 7 // 8), fill=(20, 180, 60))
    return image


def llava_prompt(question: str) -> str:
    """LLaVA-1.5's `conv_vicuna_v1` prompt for one image and question (its `get_prompt()`; BOS added by tokenizing)."""
    return f"{SYSTEM} USER: <image>\n{question} ASSISTANT:"


def tokenizer_image_token(prompt: str, tokenizer) -> list[int]:
    """LLaVA's `tokenizer_image_token`: tokenise around `<image>`, insert IMAGE_TOKEN_INDEX, keep one BOS."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
    input_ids, offset = [], 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(chunks[0][0])
    for i, chunk in enumerate(chunks):
        if i > 0:
            input_ids.append(IMAGE_TOKEN_INDEX)
        input_ids.extend(chunk[offset:])
    return input_ids


class SentencePieceTokenizer:
    """LLaVA's slow `LlamaTokenizer` on text without special tokens: BOS + sentencepiece ids (dummy prefix included).

    Straight from `tokenizer.model`, so the reference shares nothing with transformers' tokenizer conversion.
    """

    def __init__(self, model_file: Path):
        import sentencepiece

        self.model = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        self.bos_token_id = self.model.bos_id()

    def __call__(self, text: str) -> SimpleNamespace:
        return SimpleNamespace(input_ids=[self.bos_token_id, *self.model.encode(text)])


def reference_tokenizer(folder: Path):
    """The sentencepiece model itself when the checkpoint ships `tokenizer.model` (Vicuna does), else AutoTokenizer."""
    if (folder / "tokenizer.model").is_file():
        return SentencePieceTokenizer(folder / "tokenizer.model")
    logger.warning("%s has no tokenizer.model: the reference tokenises with AutoTokenizer.", folder)
    return AutoTokenizer.from_pretrained(folder)


def expand2square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """LLaVA's `expand2square`: paste the image centred on a square of the background colour."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    result = Image.new(image.mode, (side, side), background)
    result.paste(image, ((side - width) // 2, (side - height) // 2))
    return result


def _clip_image_processor_class():
    try:
        import torchvision  # noqa: F401
        from transformers import CLIPImageProcessor as cls
    except ImportError:  # the PIL backend transformers itself falls back to
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as cls
    return cls


def reference_pixels(image: Image.Image, vision_folder: Path) -> torch.Tensor:
    """LLaVA's preprocessing: `expand2square` with the CLIP mean colour, then CLIP's own image processor."""
    processor = _clip_image_processor_class().from_pretrained(vision_folder)
    background = tuple(int(x * 255) for x in processor.image_mean)
    return processor(expand2square(image.convert("RGB"), background), return_tensors="pt")["pixel_values"]


def _split_original(checkpoint: OriginalCheckpoint) -> tuple[dict, dict, dict]:
    """Original tensors, by part: LLM (`model.layers.*`, `lm_head`...), projector, CLIP (when saved inside)."""
    llm, projector, clip = {}, {}, {}
    files = weight_files(checkpoint.folder if checkpoint.kind == FULL else checkpoint.base)
    if checkpoint.kind != FULL:
        files.append(checkpoint.extra_file())
    for path in files:
        for name, tensor in iter_file(path):
            if "mm_projector." in name:  # model.mm_projector.0.weight, base_model.model.model.mm_projector.0.weight
                projector[name.split("mm_projector.", 1)[1]] = tensor.float()
            elif "vision_tower.vision_tower." in name:
                clip[name.split("vision_tower.vision_tower.", 1)[1]] = tensor.float()
            elif "rotary_emb.inv_freq" not in name:
                llm[name] = tensor.float()
    return llm, projector, clip


def _reference_llm(checkpoint: OriginalCheckpoint, state: dict) -> LlamaForCausalLM:
    keys = set(LlamaConfig.__dataclass_fields__) - {"architectures", "transformers_version", "dtype"}
    keys |= {"rope_theta"} | ({"rope_scaling"} if checkpoint.config.get("rope_scaling") else set())
    with init_empty_weights():  # the state dict becomes the parameters: one float32 copy of the LLM, not two
        model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in checkpoint.config.items() if k in keys}))
    model.load_state_dict(state, strict=True, assign=True)
    if checkpoint.kind == LORA:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, checkpoint.folder).merge_and_unload()
    return model.float().eval()


def _reference_clip(vision_folder: Path, inside: dict) -> CLIPVisionModel:
    """CLIP's vision transformer from the weights saved in the checkpoint, else from the CLIP checkpoint."""
    weights = inside or {
        name: tensor.float()
        for path in weight_files(vision_folder)
        for name, tensor in iter_file(path)
        if name.startswith("vision_model.")
        or name.startswith(("embeddings.", "encoder.", "pre_layrnorm.", "post_layernorm."))
    }
    model = CLIPVisionModel._from_config(CLIPVisionModel.config_class.from_pretrained(vision_folder))
    # transformers 5's CLIPVisionModel holds the transformer itself (no `vision_model.` level).
    state = {k.removeprefix("vision_model."): v for k, v in weights.items() if not k.endswith("position_ids")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"CLIP vision weights do not fit CLIPVisionModel: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.float().eval()


def _round(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """The float32 value of `tensor` once stored in `dtype` (the converted model's storage)."""
    return tensor if dtype is None else tensor.to(dtype).float()


@torch.no_grad()
def reference_logits(
    checkpoint: OriginalCheckpoint,
    vision_folder: Path,
    image: Image.Image,
    question: str,
    storage_dtype: torch.dtype | None = None,
):
    """(input_ids with IMAGE_TOKEN_INDEX, pixel_values, logits) of LLaVA-1.5's forward over the original weights.

    With `storage_dtype`, every weight (after the LoRA merge) is rounded to it first, as the converted model stores
    them: a bfloat16 conversion is then held to the same tolerance as a float16 or float32 one.
    """
    llm_state, projector, clip_state = _split_original(checkpoint)
    llm = _reference_llm(checkpoint, llm_state)
    clip = _reference_clip(vision_folder, clip_state)
    for param in [*llm.parameters(), *clip.parameters()]:
        param.data = _round(param.data, storage_dtype)
    projector = {name: _round(tensor, storage_dtype) for name, tensor in projector.items()}
    pixel_values = reference_pixels(image, vision_folder)
    layer = checkpoint.config.get("mm_vision_select_layer", -2)
    features = clip(pixel_values, output_hidden_states=True).hidden_states[layer]
    if checkpoint.config.get("mm_vision_select_feature", "patch") == "patch":
        features = features[:, 1:]
    features = F.linear(
        F.gelu(F.linear(features, projector["0.weight"], projector["0.bias"])),
        projector["2.weight"],
        projector["2.bias"],
    )

    tokenizer = reference_tokenizer(checkpoint.tokenizer_folder)
    input_ids = _reference_ids(question, tokenizer)
    position = input_ids.index(IMAGE_TOKEN_INDEX)
    embed = llm.get_input_embeddings()
    before, after = torch.tensor([input_ids[:position]]), torch.tensor([input_ids[position + 1 :]])
    embeds = torch.cat([embed(before), features, embed(after)], dim=1)
    return input_ids, pixel_values, llm(inputs_embeds=embeds).logits


@torch.no_grad()
def verify(
    checkpoint: OriginalCheckpoint,
    vision_folder: Path,
    converted: str | Path,
    dtype: str = "float16",
    image: Image.Image | None = None,
    question: str = QUESTION,
) -> VerifyReport:
    """Compares the converted folder with the reference forward on `image` (default: `sample_image()`) and `question`."""
    image = image or sample_image()
    storage = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    input_ids, ref_pixels, ref_logits = reference_logits(checkpoint, vision_folder, image, question, storage)

    processor = AutoProcessor.from_pretrained(converted)
    model = LlavaForConditionalGeneration.from_pretrained(converted, dtype=torch.float32).eval()
    pixel_values = processor.image_processor(image, return_tensors="pt")["pixel_values"]

    # The model side's ids come from hub_llava's token stream, as `hub-llava eval` and training feed them; the
    # reference's from LLaVA's algorithm on the original tokenizer.model. Also on a prompt with runs of spaces.
    stream = TokenStream.from_processor(processor)
    reference = reference_tokenizer(checkpoint.tokenizer_folder)
    tokens_match = True
    for text in (question, WHITESPACE_QUESTION):
        theirs = [
            model.config.image_token_id if t == IMAGE_TOKEN_INDEX else t for t in _reference_ids(text, reference)
        ]
        ours = stream.prompt([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}])
        tokens_match = tokens_match and ours == theirs
    if not tokens_match:
        logger.warning(
            "hub_llava's token stream for the converted folder differs from LLaVA's tokenizer_image_token on the "
            "original tokenizer (the model would not see the ids it was trained on); logits are compared on LLaVA's ids."
        )
    n_image = ref_logits.shape[1] - (len(input_ids) - 1)
    expanded = []
    for token in input_ids:
        expanded.extend([model.config.image_token_id] * n_image if token == IMAGE_TOKEN_INDEX else [token])
    logits = model(input_ids=torch.tensor([expanded]), pixel_values=pixel_values).logits
    vocab = ref_logits.shape[-1]
    return VerifyReport(
        max_logit_diff=(logits[..., :vocab] - ref_logits).abs().max().item(),
        max_pixel_diff=(pixel_values - ref_pixels).abs().max().item(),
        tokens_match=tokens_match,
        atol=LOGIT_TOLERANCE,
    )


def _reference_ids(question: str, tokenizer) -> list[int]:
    return tokenizer_image_token(llava_prompt(question), tokenizer)
