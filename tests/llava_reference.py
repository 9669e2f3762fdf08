"""An independent reference of how LLaVA-1.5 turns a conversation into ids and labels, for the tests.

Written from DESIGN.md §3's description of LLaVA's code (`tokenizer_image_token`, `preprocess_v1`,
`preprocess_plain`, the `vicuna_v1` / `plain` conversations), sharing nothing with `hub_llava.token_stream`: it
builds LLaVA's prompt string itself, and it is fed by `SlowLlamaTokenizer`, a stand-in for transformers 4.37's slow
`LlamaTokenizer` that works on SentencePiece's string pieces.
"""

from pathlib import Path

IGNORE_INDEX = -100
IMAGE_TOKEN_INDEX = -200  # LLaVA's placeholder id for the image
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
ROLES = ("USER", "ASSISTANT")
SEP, SEP2 = " ", "</s>"


class SlowLlamaTokenizer:
    """transformers 4.37's slow `LlamaTokenizer` (`use_fast=False`, pad = unk, as LLaVA sets it).

    The special tokens `<unk>`, `<s>`, `</s>` are cut out of the text first; each remaining chunk is encoded by
    SentencePiece (with its dummy prefix when `legacy`); with `legacy=False` the dummy prefix is switched off in the
    model, the whole text is prefixed with "▁" instead, and a chunk starting with a space is encoded behind "<unk>"
    (whose pieces are then dropped) so the space survives.
    """

    def __init__(self, model_file: Path, legacy: bool, model_max_length: int = 2048):
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2

        self.legacy, self.model_max_length = legacy, model_max_length
        data = Path(model_file).read_bytes()
        if not legacy:
            proto = sentencepiece_model_pb2.ModelProto.FromString(data)
            proto.normalizer_spec.add_dummy_prefix = False
            data = proto.SerializeToString()
        self.sp = spm.SentencePieceProcessor(model_proto=data)
        self.specials = ["<unk>", "<s>", "</s>"]
        self.bos_token_id = self.sp.piece_to_id("<s>")
        self.pad_token_id = self.sp.piece_to_id("<unk>")

    def _split_specials(self, text: str) -> list[str]:
        chunks, current, i = [], "", 0
        while i < len(text):
            match = next((s for s in self.specials if text.startswith(s, i)), None)
            if match:
                chunks += [current, match] if current else [match]
                current, i = "", i + len(match)
            else:
                current += text[i]
                i += 1
        return chunks + ([current] if current else [])

    def _sp_tokenize(self, chunk: str) -> list[str]:
        if self.legacy or not chunk.startswith(("▁", " ")):
            return self.sp.encode(chunk, out_type=str)
        unk_pieces = self.sp.encode("<unk>", out_type=str)
        return self.sp.encode("<unk>" + chunk, out_type=str)[len(unk_pieces) :]

    def tokenize(self, text: str) -> list[str]:
        if not self.legacy and text:
            text = "▁" + text.replace("▁", " ")
        tokens = []
        for chunk in self._split_specials(text):
            tokens += [chunk] if chunk in self.specials else self._sp_tokenize(chunk)
        if not self.legacy and len(tokens) > 1 and tokens[0] == "▁" and tokens[1] in self.specials:
            tokens = tokens[1:]
        return tokens

    def __call__(self, text: str) -> list[int]:
        """`tokenizer(text).input_ids`: BOS + the ids of `tokenize(text)`."""
        return [self.bos_token_id] + [self.sp.piece_to_id(token) for token in self.tokenize(text)]


def tokenizer_image_token(prompt: str, tokenizer) -> list[int]:
    """Each piece around `<image>` tokenized on its own; the first piece's BOS kept, the others' dropped."""
    chunks = [tokenizer(chunk) for chunk in prompt.split("<image>")]
    ids = [chunks[0][0]]
    for k, chunk in enumerate(chunks):
        if k:
            ids.append(IMAGE_TOKEN_INDEX)
        ids += chunk[1:]
    return ids


def vicuna_v1_prompt(messages: list[dict], has_image: bool, system: str = SYSTEM) -> str:
    """`conv_vicuna_v1.get_prompt()` (sep_style TWO): the image turn rebuilt as "<image>\\n" + text."""
    prompt = system + SEP
    for i, message in enumerate(messages):
        text = message["content"]
        if i == 0 and has_image:
            text = "<image>\n" + text
        prompt += ROLES[i % 2] + ": " + text + (SEP, SEP2)[i % 2]
    return prompt


def preprocess_v1(messages: list[dict], has_image: bool, tokenizer) -> tuple[list[int], list[int]]:
    """LLaVA's `preprocess_v1`: ids, and labels by its round arithmetic (everything masked on a length mismatch)."""
    prompt = vicuna_v1_prompt(messages, has_image)
    ids = tokenizer_image_token(prompt, tokenizer) if has_image else tokenizer(prompt)
    labels = list(ids)
    total_len = sum(1 for token in ids if token != tokenizer.pad_token_id)
    sep = SEP + ROLES[1] + ": "
    cur_len = 1
    labels[:cur_len] = [IGNORE_INDEX] * cur_len
    for i, rou in enumerate(prompt.split(SEP2)):
        if rou == "":
            break
        parts = rou.split(sep)
        if len(parts) != 2:
            break
        parts[0] += sep
        if has_image:
            round_len = len(tokenizer_image_token(rou, tokenizer))
            instruction_len = len(tokenizer_image_token(parts[0], tokenizer)) - 2
        else:
            round_len = len(tokenizer(rou))
            instruction_len = len(tokenizer(parts[0])) - 2
        if i != 0 and not tokenizer.legacy:
            round_len -= 1
            instruction_len -= 1
        labels[cur_len : cur_len + instruction_len] = [IGNORE_INDEX] * instruction_len
        cur_len += round_len
    labels[cur_len:] = [IGNORE_INDEX] * len(labels[cur_len:])
    if cur_len < tokenizer.model_max_length and cur_len != total_len:
        labels = [IGNORE_INDEX] * len(labels)  # LLaVA prints "tokenization mismatch" and trains nothing
    return ids, labels


def preprocess_plain(caption: str, tokenizer) -> tuple[list[int], list[int]]:
    """LLaVA's `preprocess_plain` (stage 1): "<image>" + caption + "\\n", everything after the image trained."""
    ids = tokenizer_image_token("<image>" + caption + "\n", tokenizer)
    masked = len(tokenizer_image_token("<image>", tokenizer))
    return ids, [IGNORE_INDEX] * masked + ids[masked:]


def inference_ids(question: str, tokenizer, has_image: bool = True) -> list[int]:
    """The ids of LLaVA-1.5's eval prompt: "<image>\\n" + question, ending with "ASSISTANT:"."""
    prompt = SYSTEM + SEP + ROLES[0] + ": " + ("<image>\n" if has_image else "") + question + SEP + ROLES[1] + ":"
    return tokenizer_image_token(prompt, tokenizer)
