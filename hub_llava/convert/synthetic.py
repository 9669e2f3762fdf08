"""Writes random checkpoints in the ORIGINAL LLaVA layouts, for tests and `bench/bench_convert.py`.

Names and shapes come from the transformers classes the original code used (`LlamaForCausalLM` for the LLM, `CLIPModel`
for the vision tower), instantiated on the meta device, so nothing here depends on the converter's key map. Tensors
are generated one file at a time: a ~1B-parameter checkpoint is written without holding it in memory.
"""

import json
from pathlib import Path

import torch
from accelerate import init_empty_weights
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel, LlamaConfig, LlamaForCausalLM

IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


def llm_config(vocab_size: int, hidden_size: int = 32, layers: int = 2, heads: int = 2, **kwargs) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=kwargs.pop("intermediate_size", 2 * hidden_size),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        **kwargs,
    )


def clip_config(hidden_size: int = 32, image_size: int = 28, patch_size: int = 14, layers: int = 3) -> CLIPConfig:
    vision = {
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": patch_size,
        "projection_dim": 16,
    }
    text = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "vocab_size": 99,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }
    return CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)


def _shapes(model_class, config) -> dict[str, tuple[torch.Size, torch.dtype]]:
    with init_empty_weights():
        model = model_class(config)
    return {
        name: (tensor.shape, tensor.dtype) for name, tensor in model.state_dict().items() if tensor.is_floating_point()
    }


def random_tensor(name: str, shape: torch.Size, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """Weights around 0.02 std; norm weights around 1 (so a forward pass is well-behaved, and every value matters)."""
    if "norm" in name and name.endswith("weight"):
        values = 1 + 0.1 * torch.randn(shape, generator=generator)
    else:
        values = 0.05 * torch.randn(shape, generator=generator)
    return values.to(dtype)


def llm_tensors(config: LlamaConfig) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Original names (`model.layers.N.*`, `lm_head.weight`) and shapes of a Llama/Vicuna LLM."""
    return _shapes(LlamaForCausalLM, config)


def projector_tensors(vision_hidden: int, hidden: int) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """`mlp2x_gelu`: `model.mm_projector.0` Linear(vision, hidden), `.2` Linear(hidden, hidden)."""
    f32 = torch.float32
    return {
        "model.mm_projector.0.weight": (torch.Size([hidden, vision_hidden]), f32),
        "model.mm_projector.0.bias": (torch.Size([hidden]), f32),
        "model.mm_projector.2.weight": (torch.Size([hidden, hidden]), f32),
        "model.mm_projector.2.bias": (torch.Size([hidden]), f32),
    }


def clip_vision_tensors(config: CLIPConfig, prefix: str = "") -> dict[str, tuple[torch.Size, torch.dtype]]:
    return {
        prefix + name: spec for name, spec in _shapes(CLIPModel, config).items() if name.startswith("vision_model.")
    }


def write_weights(
    folder: Path, specs: dict, *, shards: int = 1, fmt: str = "bin", dtype=torch.float16, seed: int = 0, name: str = ""
) -> list[Path]:
    """Writes random tensors for `specs` as `shards` files (`bin` or `safetensors`), with an index when sharded."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    names = list(specs)
    per_shard = -(-len(names) // shards)
    stem = name or ("pytorch_model" if fmt == "bin" else "model")
    suffix = ".bin" if fmt == "bin" else ".safetensors"
    paths, weight_map = [], {}
    for i in range(shards):
        chunk = names[i * per_shard : (i + 1) * per_shard]
        tensors = {key: random_tensor(key, *specs[key][:1], dtype, generator).contiguous() for key in chunk}
        path = folder / (f"{stem}-{i + 1:05d}-of-{shards:05d}{suffix}" if shards > 1 else f"{stem}{suffix}")
        if fmt == "bin":
            torch.save(tensors, path)
        else:
            save_file(tensors, str(path), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(chunk, path.name))
        paths.append(path)
        del tensors
    if shards > 1:
        index = folder / (f"{stem}.bin.index.json" if fmt == "bin" else f"{stem}.safetensors.index.json")
        index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))
    return paths


def original_config(llm: LlamaConfig, vision_tower: str, vision_hidden: int, **overrides) -> dict:
    """A `config.json` as LLaVA-1.5 writes it: a flat LlamaConfig + `mm_*` keys, `model_type: "llava"`."""
    config = {
        key: value
        for key, value in llm.to_dict().items()
        if key not in ("rope_parameters", "dtype", "transformers_version")
    }
    config.update(
        architectures=["LlavaLlamaForCausalLM"],
        model_type="llava",
        rope_theta=10000.0,
        rope_scaling=None,
        torch_dtype="float16",
        transformers_version="4.31.0",
        freeze_mm_mlp_adapter=False,
        image_aspect_ratio="pad",
        mm_hidden_size=vision_hidden,
        mm_patch_merge_type="flat",
        mm_projector_lr=None,
        mm_projector_type="mlp2x_gelu",
        mm_use_im_patch_token=False,
        mm_use_im_start_end=False,
        mm_vision_select_feature="patch",
        mm_vision_select_layer=-2,
        mm_vision_tower=vision_tower,
        tokenizer_model_max_length=2048,
        tokenizer_padding_side="right",
        tune_mm_mlp_adapter=False,
        use_mm_proj=True,
    )
    config.update(overrides)
    return config


def write_clip(folder: Path, config: CLIPConfig, seed: int = 1) -> Path:
    """A CLIP checkpoint shaped like `openai/clip-vit-large-patch14-336`: CLIPModel weights + preprocessor config."""
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    specs = {name: spec for name, spec in _shapes(CLIPModel, config).items()}
    write_weights(folder, specs, fmt="bin", dtype=torch.float32, seed=seed)
    size = config.vision_config.image_size
    # The preprocessor config exactly as openai/clip-vit-large-patch14-336 ships it (old feature-extractor keys).
    preprocessor = {
        "crop_size": size, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": IMAGE_MEAN, "image_std": IMAGE_STD,
        "resample": 3, "size": size,
    }  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    return folder


def write_config(folder: Path, config: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def write_llama_tokenizer(folder: Path, vocab_size: int = 400) -> Path:
    """A Vicuna-like tokenizer as original checkpoints ship it: a sentencepiece BPE `tokenizer.model` (byte fallback,
    dummy prefix, `<unk>`/`<s>`/`</s>` = 0/1/2) and a `LlamaTokenizer` config with `legacy: false`, pad = `<unk>`."""
    from hub_llava.testing import write_sentencepiece_tokenizer

    return write_sentencepiece_tokenizer(folder, vocab_size, legacy=False, pad_token="<unk>", model_max_length=2048)


def write_tiny_original(root: Path, seed: int = 0) -> Path:
    """A tiny full checkpoint in the original layout (`root/llava-tiny`, sharded .bin + index, CLIP in `root/clip`)."""
    clip = clip_config(hidden_size=24)
    write_clip(root / "clip", clip, seed=seed + 1)
    llm = llm_config(400, hidden_size=32)
    folder = root / "llava-tiny"
    write_weights(folder, {**llm_tensors(llm), **projector_tensors(24, 32)}, shards=2, fmt="bin", seed=seed)
    write_config(folder, original_config(llm, str(root / "clip"), 24))
    write_llama_tokenizer(folder, 400)
    return folder


if __name__ == "__main__":
    import sys

    print(write_tiny_original(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/original")))
