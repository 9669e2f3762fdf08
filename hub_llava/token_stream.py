"""LLaVA-1.5's token stream: the ids (and labels) LLaVA's own code feeds the model, for every part of hub_llava.

Training (`training.collator`, `training.data`), `hub-llava render-sample`, evaluation (`eval.generation`) and the
converter's model side all get their ids here, so a model is evaluated on the stream it was trained on, and both are
LLaVA's. What LLaVA does (transformers 4.37, DESIGN §3): the slow SentencePiece `LlamaTokenizer`; the prompt (our Jinja
chat template, without its literal BOS) is cut at each `<image>`; every piece is tokenized on its own as a fresh text
(BOS + SentencePiece's dummy prefix), only the first piece keeps its BOS, and the image goes between pieces. Inside a
piece, `</s>` (like `<s>` and `<unk>`) is a special token, and the text after it follows the tokenizer's `legacy`
flag: with `legacy: true` it gets the dummy prefix again (`▁US` `ER`), with `legacy: false` it does not (`USER`); with
`legacy: false` the piece itself starts from `"▁" + text`.

We encode with SentencePiece itself when the checkpoint ships `tokenizer.model` (Vicuna and every published LLaVA
checkpoint do): a converted fast tokenizer splits runs of spaces differently, and no single fast-tokenizer mode gives
the stream above. Without a `tokenizer.model`, each piece goes through the fast tokenizer on its own (the same
algorithm with that tokenizer).

Labels: the chat template's `{% generation %}` spans (each answer with the space before it, and its `</s>`) are
trained, everything else is -100. The space before an answer becomes the `▁` of the answer's first token, so that `▁`
is trained, as in LLaVA. With SentencePiece, a piece is encoded span by span: SentencePiece never merges across a word
start (`▁`), and every span boundary of our templates is a word start or a special token, so the ids are exactly
those of the whole piece (`tests/test_token_stream.py` checks it against an independent reference of LLaVA's code).
"""

import json
import logging
import os
import re
import shutil
from pathlib import Path

from transformers.utils.chat_template_utils import render_jinja_template

from hub_llava.processing import IMAGE_TOKEN

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
SPIECE_UNDERLINE = "▁"
# Our key in tokenizer_config.json: the `legacy` flag of the slow tokenizer the model was trained with. The fast
# tokenizer's own `legacy` may differ (the saved fast tokenizer prepends "▁" to every segment, see `save_pretrained`).
LEGACY_KEY = "slow_tokenizer_legacy"


class _SentencePiecePieces:
    """Encodes one text piece as LLaVA's slow `LlamaTokenizer` (transformers 4.37) does, with `sentencepiece`.

    Args:
        model_file (`str`): the checkpoint's `tokenizer.model`.
        legacy (`bool`): the slow tokenizer's `legacy` flag.
    """

    def __init__(self, model_file: str, legacy: bool):
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2

        self.legacy = legacy
        proto = sentencepiece_model_pb2.ModelProto.FromString(Path(model_file).read_bytes())
        trainer, normalizer = proto.trainer_spec, proto.normalizer_spec
        if (
            not trainer.split_by_whitespace
            or trainer.treat_whitespace_as_suffix
            or normalizer.remove_extra_whitespaces
        ):
            raise ValueError(
                f"{model_file}: hub_llava's token stream needs a SentencePiece model that splits words at '▁' and keeps "
                "whitespace (split_by_whitespace, no treat_whitespace_as_suffix, no remove_extra_whitespaces), as "
                "Llama's does"
            )
        # The model as the slow tokenizer loads it: as is when legacy, else with the dummy prefix off.
        self.first = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
        proto.normalizer_spec.add_dummy_prefix = False
        self.rest = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
        specials = [self.first.id_to_piece(i) for i in (self.first.unk_id(), self.first.bos_id(), self.first.eos_id())]
        self.special_ids = {piece: self.first.piece_to_id(piece) for piece in specials}
        self.special_re = re.compile("(" + "|".join(map(re.escape, sorted(specials, key=len, reverse=True))) + ")")
        self.unk = specials[0]
        self.unk_length = len(self.rest.encode(self.unk))
        self.prefix_id = self.first.piece_to_id(SPIECE_UNDERLINE)

    def encode(self, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[bool]]:
        """Ids of `text` (no BOS) and, per id, whether it lies in one of the character `spans`."""
        shift = 0
        if not self.legacy and text:
            text, shift = SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " "), 1
            spans = [(-1 if start == 0 else start, end) for start, end in spans]  # the prefix joins a span at 0
        ids, trained = [], []
        position = 0
        for chunk in self.special_re.split(text):
            start, position = position, position + len(chunk)
            if not chunk:
                continue
            if chunk in self.special_ids:
                ids.append(self.special_ids[chunk])
                trained.append(_inside(start - shift, spans))
                continue
            for k, (sub_start, sub_end, inside) in enumerate(_cut(start - shift, position - shift, spans)):
                piece = chunk[sub_start - start + shift : sub_end - start + shift]
                if k > 0 and not piece[0].isspace():
                    raise ValueError(
                        f"A {{% generation %}} span starts inside a word ({text[: sub_start + shift]!r} | {piece!r}): "
                        "the chat template must open each span at a space or a special token"
                    )
                encoded = self._encode_chunk(piece) if k == 0 else self.rest.encode(piece)
                ids += encoded
                trained += [inside] * len(encoded)
        if not self.legacy and len(ids) > 1 and ids[0] == self.prefix_id and ids[1] in self.special_ids.values():
            del ids[0], trained[0]  # "▁" + "</s>...": the slow tokenizer drops the lone prefix before a special token
        return ids, trained

    def _encode_chunk(self, chunk: str) -> list[int]:
        if self.legacy or not chunk.startswith((SPIECE_UNDERLINE, " ")):
            return self.first.encode(chunk) if self.legacy else self.rest.encode(chunk)
        # The non-legacy slow tokenizer encodes "<unk>" + text and drops the unk's pieces, so a leading "▁" survives.
        return self.rest.encode(self.unk + chunk)[self.unk_length :]


class _FastPieces:
    """Encodes one text piece with a fast tokenizer on its own (what LLaVA's `tokenizer(piece)` does with it)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def encode(self, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[bool]]:
        if not text:
            return [], []
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        trained = [
            any(s < end and start < e for s, e in spans) or (start == end and _inside(start, spans))
            for start, end in encoded["offset_mapping"]
        ]
        return encoded["input_ids"], trained


def _inside(position: int, spans) -> bool:
    return any(start <= position < end for start, end in spans)


def _cut(start: int, end: int, spans) -> list[tuple[int, int, bool]]:
    """[start, end) cut at the span boundaries: `(sub_start, sub_end, inside a span)`."""
    cuts = sorted({start, end} | {p for span in spans for p in span if start < p < end})
    return [(a, b, _inside(a, spans)) for a, b in zip(cuts, cuts[1:])]


class TokenStream:
    """LLaVA-1.5's ids for a conversation (training) or a prompt (inference), from one tokenizer and chat template.

    Args:
        tokenizer: the checkpoint's (fast) tokenizer with `<image>` and `<pad>` added; gives the special ids and, when
            there is no `tokenizer.model`, the encoding.
        chat_template (`str`): the Jinja template (`hub_llava/templates/vicuna_v1.jinja` or `plain.jinja`).
        sp_model_file (`str`, *optional*): the `tokenizer.model`; when given, pieces are encoded with SentencePiece.
        legacy (`bool`, *optional*, defaults to `True`): the slow tokenizer's `legacy` flag (Vicuna-v1.5: `False`).
    """

    def __init__(self, tokenizer, chat_template: str, sp_model_file: str | None = None, legacy: bool = True):
        self.tokenizer, self.chat_template = tokenizer, chat_template
        self.sp_model_file, self.legacy = sp_model_file, legacy
        self.pieces = _SentencePiecePieces(sp_model_file, legacy) if sp_model_file else _FastPieces(tokenizer)
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.bos_token_id, self.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.pad_token_id = tokenizer.pad_token_id

    @classmethod
    def from_processor(cls, processor, chat_template: str | None = None) -> "TokenStream":
        """The stream of a loaded processor: its tokenizer's `tokenizer.model` and `legacy` flag, when it has them."""
        tokenizer = processor.tokenizer
        vocab_file = tokenizer.init_kwargs.get("vocab_file")  # the resolved tokenizer.model, when the folder has one
        if not isinstance(vocab_file, str) or not vocab_file.endswith(".model") or not os.path.isfile(vocab_file):
            logger.warning(
                "%s ships no tokenizer.model: encoding with the fast tokenizer, whose runs of spaces can differ from "
                "the SentencePiece stream LLaVA used",
                tokenizer.name_or_path,
            )
            return cls(tokenizer, chat_template or processor.chat_template)
        return cls(tokenizer, chat_template or processor.chat_template, vocab_file, _slow_legacy(vocab_file))

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> tuple[str, list[tuple[int, int]]]:
        """The template's text for `messages` (TRL-style content) and its `{% generation %}` character spans."""
        texts, spans = render_jinja_template(
            [messages],
            chat_template=self.chat_template,
            return_assistant_tokens_mask=True,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.tokenizer.bos_token,
            eos_token=self.tokenizer.eos_token,
        )
        return texts[0], [tuple(span) for span in spans[0]]

    def encode(self, text: str, spans: list[tuple[int, int]] = ()) -> tuple[list[int], list[int]]:
        """LLaVA's `tokenizer_image_token` on rendered `text`: ids with one `image_token_id` per image, and labels
        (the id inside `spans`, -100 elsewhere; BOS and images are never trained)."""
        bos = self.tokenizer.bos_token
        offset = len(bos) if text.startswith(bos) else 0  # the template writes BOS; LLaVA's prompt has none
        ids, labels = [self.bos_token_id], [IGNORE_INDEX]
        for k, piece in enumerate(text[offset:].split(IMAGE_TOKEN)):
            if k:
                ids.append(self.image_token_id)
                labels.append(IGNORE_INDEX)
                offset += len(IMAGE_TOKEN)
            local = [(max(s - offset, 0), min(e - offset, len(piece))) for s, e in spans if s < offset + len(piece)]
            piece_ids, trained = self.pieces.encode(piece, [(s, e) for s, e in local if s < e])
            ids += piece_ids
            labels += [i if t else IGNORE_INDEX for i, t in zip(piece_ids, trained)]
            offset += len(piece)
        return ids, labels

    def conversation(self, messages: list[dict]) -> tuple[list[int], list[int]]:
        """Ids and labels of a training conversation."""
        return self.encode(*self.render(messages))

    def prompt(self, messages: list[dict]) -> list[int]:
        """Ids of an inference prompt (ending with `ASSISTANT:` for vicuna_v1)."""
        text, _ = self.render(messages, add_generation_prompt=True)
        return self.encode(text)[0]

    def save_pretrained(self, folder) -> None:
        """Ships what the stream needs beside a saved processor: `tokenizer.model` and the slow tokenizer's `legacy`.

        Call after `processor.save_pretrained(folder)` (transformers 5 writes neither). For a Llama tokenizer the
        saved fast tokenizer is also set to prepend "▁" to every text segment (`legacy: true`), which gives LLaVA's
        inference prompt in one pass (`processor(text=prompt, add_special_tokens=False)`) with plain transformers,
        except runs of spaces; hub_llava itself always encodes through this class.
        """
        folder = Path(folder)
        if self.sp_model_file is None:
            return
        target = folder / "tokenizer.model"
        if not target.exists() or not os.path.samefile(self.sp_model_file, target):
            shutil.copyfile(self.sp_model_file, target)
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config[LEGACY_KEY] = self.legacy
        if config.get("tokenizer_class", "").removesuffix("Fast") == "LlamaTokenizer":
            config["legacy"] = True
            tokenizer_json = folder / "tokenizer.json"
            backend = json.loads(tokenizer_json.read_text(encoding="utf-8"))
            if (backend.get("pre_tokenizer") or {}).get("type") == "Metaspace":
                backend["pre_tokenizer"]["prepend_scheme"] = "always"
                tokenizer_json.write_text(json.dumps(backend, ensure_ascii=False, indent=2), encoding="utf-8")
        config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _slow_legacy(vocab_file: str) -> bool:
    """The slow tokenizer's `legacy` flag from the tokenizer_config.json beside `tokenizer.model`: ours if hub_llava
    saved the folder, else `legacy`; absent means `True`, the slow tokenizer's default in transformers 4.37."""
    path = Path(vocab_file).with_name("tokenizer_config.json")
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return bool(config.get(LEGACY_KEY, config.get("legacy", True)))


def expand_images(ids: list[int], labels: list[int], image_token_id: int, n_image_tokens: int):
    """Repeats each image id `n_image_tokens` times (the HF Llava model's placeholders for the image features)."""
    out_ids, out_labels = [], []
    for token, label in zip(ids, labels):
        if token == image_token_id:
            out_ids += [token] * n_image_tokens
            out_labels += [IGNORE_INDEX] * n_image_tokens
        else:
            out_ids.append(token)
            out_labels.append(label)
    return out_ids, out_labels
