"""The model and processor a recipe trains: an HF Llava checkpoint, or LLaVA-1.5 stage 2 built from components.

From components (`vision_tower_name_or_path` set): the LLM (`model_name_or_path`, Vicuna/Llama), a CLIP vision tower,
and the stage-1 projector (an original `mm_projector.bin`, keys `model.mm_projector.{0,2}.*`, or the output folder
of our own stage-1 run), with `<image>` and `<pad>` added and the vocabulary padded to a multiple of 64, as
LLaVA-1.5 does. Either way the vision tower is frozen (LLaVA-1.5 never trains it), and stage 1 trains the
projector only. `add_zero_image_hook` gives image-less forwards LLaVA's zero image.
"""

import contextlib
import json
import logging
import os

import torch
from accelerate import PartialState
from huggingface_hub import hf_hub_download
from peft import LoraConfig
from safetensors import safe_open
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    CLIPVisionModel,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaModel,
)
from transformers.integrations import is_deepspeed_zero3_enabled

from hub_llava.processing import IMAGE_TOKEN, build_processor, padding_image_processor

logger = logging.getLogger(__name__)

PROJECTOR = "multi_modal_projector"
# Original stage-1 keys -> our projector's.
ORIGINAL_PROJECTOR_KEYS = {"model.mm_projector.0": "linear_1", "model.mm_projector.2": "linear_2"}


def load_processor(model_args, training_args, vision_config=None):
    """The LLaVA processor for the run: checkpoint's tokenizer, the recipe's template and image aspect mode (`pad`:
    padding image processor; `square`: CLIP resize + centre crop only)."""
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    if vision_config is None:
        vision_config = _read_llava_config(model_args).vision_config
    image_size = model_args.image_size or vision_config.image_size
    return build_processor(
        tokenizer,
        padding_image_processor(image_size, do_pad=training_args.image_aspect_ratio == "pad"),
        patch_size=vision_config.patch_size,
        image_size=image_size,
        template=training_args.llava_template,
    )


def _read_llava_config(model_args) -> LlavaConfig:
    if model_args.vision_tower_name_or_path:
        return LlavaConfig(
            vision_config=CLIPVisionModel.config_class.from_pretrained(model_args.vision_tower_name_or_path)
        )
    path = os.path.join(model_args.model_name_or_path, "config.json")
    if os.path.isfile(path):  # transformers 5 reads an original LLaVA config silently into a default Llava shape
        with open(path, encoding="utf-8") as f:
            if json.load(f).get("architectures") == ["LlavaLlamaForCausalLM"]:
                raise ValueError(f"{model_args.model_name_or_path} is an original LLaVA checkpoint: convert it first")
    return LlavaConfig.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)


def quantization_config(model_args) -> BitsAndBytesConfig | None:
    """4-/8-bit loading for QLoRA, keeping the vision tower, projector and `lm_head` out of quantisation."""
    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return None
    return BitsAndBytesConfig(
        load_in_4bit=model_args.load_in_4bit,
        load_in_8bit=model_args.load_in_8bit,
        bnb_4bit_compute_dtype=model_args.dtype,
        bnb_4bit_quant_type=model_args.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=model_args.use_bnb_nested_quant,
        llm_int8_skip_modules=["vision_tower", PROJECTOR, "lm_head"],
    )


def load_model(model_args, processor) -> LlavaForConditionalGeneration:
    """Loads or builds the Llava model, resizes embeddings for the processor's tokens, loads the stage-1 projector."""
    kwargs = {
        "revision": model_args.model_revision,
        "dtype": model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype),
        "attn_implementation": model_args.attn_implementation,
        "quantization_config": quantization_config(model_args),
    }
    if kwargs["quantization_config"] is not None:
        # Each process keeps its quantised copy on its own GPU.
        kwargs["device_map"] = {"": PartialState().local_process_index}
    if model_args.vision_tower_name_or_path:
        model = _from_components(model_args, processor, kwargs)
    else:
        _read_llava_config(model_args)  # refuses original-format checkpoints
        model = LlavaForConditionalGeneration.from_pretrained(model_args.model_name_or_path, **kwargs)
    tokenizer = processor.tokenizer
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        resize_embeddings(model, len(tokenizer))
    model.config.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if model_args.mm_projector_path:
        load_projector(model, model_args.mm_projector_path)
    return model


def resize_embeddings(model, n_tokens: int) -> None:
    """Grows the embeddings and `lm_head` to `n_tokens` rows, padded to a multiple of 64, each new row the mean of the
    existing rows (LLaVA's `smart_tokenizer_and_embedding_resize`).

    transformers' own `mean_resizing` samples the new rows from a normal distribution with the rows' covariance,
    unseeded: a LoRA adapter (which does not save the frozen embeddings) could then never be put back on the base it
    was trained on. The mean, taken in float64 on the CPU, is the same on every rank, device and rebuild.
    """
    old = model.get_input_embeddings().num_embeddings
    model.resize_token_embeddings(n_tokens, pad_to_multiple_of=64, mean_resizing=False)
    layers = [model.get_input_embeddings(), model.get_output_embeddings()]
    weights = list({id(layer.weight): layer.weight for layer in layers if layer is not None}.values())  # tied: once
    with _gathered(weights):
        for weight in weights:
            with torch.no_grad():
                mean = weight[:old].to("cpu", torch.float64).mean(dim=0)
                weight[old:] = mean.to(weight.dtype).to(weight.device)


def _gathered(params):
    """Under ZeRO-3 (parameters partitioned at load), the full parameters, written back from rank 0."""
    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)


def _from_components(model_args, processor, kwargs) -> LlavaForConditionalGeneration:
    """LLaVA-1.5 stage 2's model: LLM + CLIP vision tower + projector (random until `load_projector`)."""
    llm = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **kwargs)
    vision = CLIPVisionModel.from_pretrained(
        model_args.vision_tower_name_or_path, dtype=kwargs["dtype"], attn_implementation=kwargs["attn_implementation"]
    )
    config = LlavaConfig(
        vision_config=vision.config,
        text_config=llm.config,
        image_token_id=processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(vision.config.image_size // vision.config.patch_size) ** 2,
    )
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model.model.language_model = llm.model
    model.lm_head = llm.lm_head
    model.model.vision_tower = vision  # transformers 5: the Llava vision tower is the CLIPVisionModel itself
    model.model.multi_modal_projector.to_empty(device=llm.device)
    for layer in (model.model.multi_modal_projector.linear_1, model.model.multi_modal_projector.linear_2):
        layer.reset_parameters()
    model.model.multi_modal_projector.to(llm.dtype)
    model.generation_config = llm.generation_config
    return model


def _local(path: str) -> str:
    """A local file/folder as is; `owner/repo/file` otherwise, downloaded from the Hub."""
    if os.path.exists(path) or path.count("/") < 2:
        return path
    owner, repo, filename = path.split("/", 2)
    return hf_hub_download(f"{owner}/{repo}", filename)


def load_projector(model, path: str) -> None:
    """Loads stage-1 projector weights: an original `mm_projector.bin` or a stage-1 output folder (safetensors).

    `path` may also be `owner/repo/mm_projector.bin` on the Hub (e.g. LLaVA-1.5's released stage-1 projector).
    """
    path = _local(path)
    if os.path.isdir(path):
        state = {}
        for name in sorted(os.listdir(path)):
            if name.endswith(".safetensors"):
                with safe_open(os.path.join(path, name), framework="pt") as f:
                    for key in f.keys():
                        if f"{PROJECTOR}." in key:
                            state[key.split(f"{PROJECTOR}.", 1)[1]] = f.get_tensor(key)
    else:
        original = torch.load(path, map_location="cpu", weights_only=True)
        state = {}
        for key, value in original.items():
            prefix, _, param = key.rpartition(".")
            if prefix not in ORIGINAL_PROJECTOR_KEYS:
                raise ValueError(f"{path}: unexpected key {key!r} (expected model.mm_projector.{{0,2}}.*)")
            state[f"{ORIGINAL_PROJECTOR_KEYS[prefix]}.{param}"] = value
    if not state:
        raise ValueError(f"{path}: no projector weights found")
    projector = model.model.multi_modal_projector
    projector.load_state_dict({k: v.to(projector.linear_1.weight.dtype) for k, v in state.items()}, strict=True)
    logger.info("Loaded projector weights from %s", path)


def freeze(model, train_projector_only: bool = False) -> None:
    """Freezes the vision tower (always) and, for stage 1, the language model and `lm_head`."""
    model.model.vision_tower.requires_grad_(False)
    if train_projector_only:
        model.model.language_model.requires_grad_(False)
        model.lm_head.requires_grad_(False)


def lora_config(model_args) -> LoraConfig | None:
    """LoRA on the LLM's linears (never CLIP, never `lm_head`), the projector fully trained, as LLaVA-1.5's LoRA."""
    if not model_args.use_peft:
        return None
    return LoraConfig(
        task_type=model_args.lora_task_type,
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=model_args.lora_target_modules or model_args.lora_target_regex,
        modules_to_save=(model_args.lora_modules_to_save or []) + ([PROJECTOR] if model_args.lora_projector else []),
        bias="none",
    )


def add_zero_image_hook(model) -> torch.utils.hooks.RemovableHandle:
    """Makes every forward without images run a zero image through the vision tower and projector, as LLaVA does for
    text-only rows, and splice its features in at length 0 (LLaVA's `cur_image_features[0:0]`): the loss is unchanged,
    the projector gets a zero gradient.

    It is a forward pre-hook on the inner `LlavaModel`, so it runs inside the forward that DeepSpeed, DDP or FSDP
    wraps, in the order of a forward with images (embeddings, vision tower, projector, LLM). Every rank then gathers
    (ZeRO-3) and reduces (ZeRO-2, DDP) the same parameters in the same order whatever its batch holds; run before the
    wrapped forward instead, the two ranks' module orders differ and ZeRO-3 hangs. Decoding steps (a filled cache)
    are left alone.

    Args:
        model (`LlavaForConditionalGeneration`, or a PEFT / DeepSpeed wrapper of one):
            The model to hook.

    Returns:
        The hook's handle (`handle.remove()` takes it off).
    """
    llava = next(module for module in model.modules() if isinstance(module, LlavaModel))
    return llava.register_forward_pre_hook(_splice_zero_image, with_kwargs=True)


def _splice_zero_image(llava: LlavaModel, args: tuple, kwargs: dict):
    cache = kwargs.get("past_key_values")
    decoding = cache is not None and cache.get_seq_length() > 0
    if kwargs.get("pixel_values") is not None or kwargs.get("mm_encoder_outputs") or decoding:
        return None
    embeds = kwargs.get("inputs_embeds")
    if embeds is None:
        embeds = llava.get_input_embeddings()(kwargs["input_ids"])
    size = llava.config.vision_config.image_size
    features = llava.get_image_features(
        pixel_values=embeds.new_zeros(1, 3, size, size),
        vision_feature_layer=llava.config.vision_feature_layer,
        vision_feature_select_strategy=llava.config.vision_feature_select_strategy,
    ).pooler_output[0]
    return args, {**kwargs, "input_ids": None, "inputs_embeds": embeds + features[:0].sum()}  # + 0, in the graph
