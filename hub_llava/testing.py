"""Tiny, fully local stand-ins for Vicuna + CLIP, for tests, the demo and benchmarks (nothing is downloaded).

`write_sentencepiece_tokenizer()` trains a SentencePiece BPE model with the settings of Llama-2's `tokenizer.model`
(byte fallback, dummy prefix, digits split, no whitespace removal, whitespace-only pieces) and writes it as Vicuna-v1.5
ships its tokenizer: `tokenizer.model` + a `LlamaTokenizer` `tokenizer_config.json` (`legacy: false`). The corpus is
chosen so the model shows every behaviour DESIGN §3 lists for the real one: `<s> ▁A ▁chat`, a lone `▁` before
`<0x0A>` after an image, `USER` as one token after `</s>` without the dummy prefix but `▁US` `ER` with it, and runs of
spaces that SentencePiece and a converted fast tokenizer split differently (whitespace-only pieces are scored below
every other piece, which is what makes SentencePiece prefer `▁` `▁Answer` over `▁▁` `Answer`). Training takes ~50 ms.

`tiny_llava()` builds a randomly initialised `LlavaForConditionalGeneration` with LLaVA-1.5's structure (CLIP vision
tower, 2-layer GELU projector, Llama LM, `vision_feature_layer=-2`, CLS dropped).
"""

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from hub_llava.processing import SYSTEM_PROMPT, add_llava_tokens, build_processor

# One sentence per line: no "\n" is ever seen in training, so a newline falls back to the byte <0x0A>, as in Llama's.
_CORPUS = [
    SYSTEM_PROMPT,
    "What is this? ASSISTANT: A bus.</s>USER: What color is the bus? ASSISTANT: The bus is red.</s>USER:",
    "Is there a cat in the image? Yes. No. How many people are there? Two. Describe the image in detail.",
    "The image shows a street with cars, a clock, a sign, people walking, trees and a building in the background.",
    "Answer the question using a single word or phrase. Answer with the option's letter from the given choices directly.",
    "The US army and the US navy. US dollars and US states. ERROR: ER.",  # "▁US" + "ER", never "▁USER"
    "def area(r):",
    "    return 3.14 * r * r",
    "if x:",
    "        return None",
    "    x  =  1",
    "What does the sign say?  Answer:  STOP.",
    "图中有什么？ 一辆红色的公共汽车。",
    "There are 12 people and 345 cars in 2023.",
]
VICUNA_TOKENIZER_CONFIG = {
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": "<s>",
    "clean_up_tokenization_spaces": False,
    "eos_token": "</s>",
    "legacy": False,
    "model_max_length": 4096,
    "pad_token": None,
    "padding_side": "right",
    "sp_model_kwargs": {},
    "tokenizer_class": "LlamaTokenizer",
    "unk_token": "<unk>",
}


def sentencepiece_model(vocab_size: int = 600) -> bytes:
    """A SentencePiece BPE model trained on `_CORPUS` with Llama-2's trainer settings (serialized `ModelProto`)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 20), model_writer=buffer, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, add_dummy_prefix=True, split_digits=True, split_by_whitespace=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2,
    )  # fmt: skip
    proto = sentencepiece_model_pb2.ModelProto.FromString(buffer.getvalue())
    for piece in proto.pieces:
        if len(piece.piece) > 1 and set(piece.piece) == {"▁"}:
            piece.score = -1e9  # runs of spaces merge last
    return proto.SerializeToString()


def write_sentencepiece_tokenizer(folder, vocab_size: int = 600, legacy: bool = False, **config) -> Path:
    """Writes `tokenizer.model` + a Vicuna-v1.5-style `tokenizer_config.json` (`config` overrides its keys)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(sentencepiece_model(vocab_size))
    settings = {**VICUNA_TOKENIZER_CONFIG, "legacy": legacy, **config}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return folder


def _cached_tokenizer_folder(vocab_size: int, legacy: bool) -> Path:
    # One folder per settings and corpus, shared by the processes of a run: the tokenizer keeps pointing at its
    # `tokenizer.model` (hub_llava's token stream reads it), so it must outlive the call.
    digest = hashlib.sha1(json.dumps([_CORPUS, vocab_size, legacy, VICUNA_TOKENIZER_CONFIG]).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"hub_llava_tiny_tokenizer_{digest}"
    if not (folder / "tokenizer_config.json").is_file():
        staging = Path(tempfile.mkdtemp(prefix=folder.name + "."))
        write_sentencepiece_tokenizer(staging, vocab_size, legacy)
        try:
            os.replace(staging, folder)  # atomic: a concurrent process either sees the whole folder or none
        except OSError:
            pass  # another process put it in place first
    return folder


def tiny_tokenizer(llava_tokens: bool = True, legacy: bool = False, vocab_size: int = 600):
    """A Vicuna-like tokenizer (`<unk>`=0, `<s>`=1, `</s>`=2, SentencePiece `tokenizer.model`) plus `<image>` and
    `<pad>`, loaded with `AutoTokenizer` as a checkpoint's tokenizer is.

    With `llava_tokens=False` it is the tokenizer original LLaVA checkpoints ship (Vicuna's: no `<image>`, padding
    with `<unk>`).
    """
    tokenizer = AutoTokenizer.from_pretrained(_cached_tokenizer_folder(vocab_size, legacy))
    if llava_tokens:
        add_llava_tokens(tokenizer)
    else:
        tokenizer.pad_token = tokenizer.unk_token
    return tokenizer


def tiny_llava(tokenizer, image_size: int = 28, patch_size: int = 14, hidden_size: int = 32, seed: int = 0):
    """A random `LlavaForConditionalGeneration` shaped like LLaVA-1.5, small enough to train in seconds on CPU."""
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=hidden_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    return LlavaForConditionalGeneration(config).eval()


def tiny_processor(image_size: int = 28, patch_size: int = 14, legacy: bool = False):
    """The shared LLaVA processor around `tiny_tokenizer()`, at a tiny image size."""
    return build_processor(tiny_tokenizer(legacy=legacy), patch_size=patch_size, image_size=image_size)


def llava_7b_shaped_config(layers: int, image_token_id: int, pad_token_id: int, tiny: bool = False) -> LlavaConfig:
    """LLaVA-1.5-7B's shapes with `layers` decoder layers (of 32): CLIP ViT-L/14-336 vision tower, 2-layer GELU
    projector, Llama hidden 4096, intermediate 11008, 32 heads, vocabulary 32064, for the GPU benchmarks (random
    weights). `tiny=True` shrinks every width (and the image to 28 px) for a CPU run of the same script."""
    size = 28 if tiny else 336
    vision = (dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2) if tiny else
              dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16))  # fmt: skip
    text = (dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=2) if tiny else
            dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32))  # fmt: skip
    return LlavaConfig(
        vision_config=CLIPVisionConfig(**vision, image_size=size, patch_size=14, projection_dim=768),
        text_config=LlamaConfig(**text, num_hidden_layers=layers, vocab_size=32064, max_position_embeddings=4096,
                                bos_token_id=1, eos_token_id=2, pad_token_id=pad_token_id),
        image_token_id=image_token_id, projector_hidden_act="gelu",
        vision_feature_layer=-2, vision_feature_select_strategy="default",
    )  # fmt: skip
