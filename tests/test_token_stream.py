"""hub_llava's token stream against an independent reference of LLaVA-1.5's own preprocessing (tests/llava_reference.py).

The tokenizer is a SentencePiece BPE model trained locally with Llama-2's settings (`hub_llava.testing`), loaded the
ways checkpoints ship it. Rows start as LLaVA release records and go through our data layer (`llava_format.llava_row`)
and the collator's `row_ids`, exactly as training does; the reference starts from the same records and applies LLaVA's
own rules (`<image>` moved to the front of its turn, `preprocess_v1` / `preprocess_plain`, `tokenizer_image_token`).
"""

import json
import random
import shutil

import pytest
from llava_reference import (
    IMAGE_TOKEN_INDEX,
    SlowLlamaTokenizer,
    inference_ids,
    preprocess_plain,
    preprocess_v1,
    tokenizer_image_token,
)
from transformers import AutoTokenizer
from trl.data_utils import prepare_multimodal_messages

from hub_llava.data.llava_format import llava_row
from hub_llava.processing import build_processor, chat_template, padding_image_processor
from hub_llava.testing import tiny_tokenizer, write_sentencepiece_tokenizer
from hub_llava.token_stream import LEGACY_KEY, TokenStream
from hub_llava.training.collator import row_ids

LEGACY = [False, True]  # Vicuna-v1.5 ships legacy: false


def record(*turns, image="coco/train2017/000000033471.jpg", rid="r"):
    conversations = [{"from": ("human", "gpt")[i % 2], "value": text} for i, text in enumerate(turns)]
    return {"id": rid, "conversations": conversations, **({"image": image} if image else {})}


def reference(rec, tokenizer):
    """LLaVA on a raw record: `preprocess_multimodal` ("<image>\\n" + the stripped rest) then `preprocess_v1`."""
    has_image = "image" in rec
    messages = []
    for turn in rec["conversations"]:
        text = turn["value"]
        if "<image>" in text:
            text = text.replace("<image>", "").strip()  # reference_v1 puts "<image>\n" before the first turn
        messages.append({"content": text})
    return preprocess_v1(messages, has_image, tokenizer)


def ours(rec, stream, n_image_tokens=1):
    row = llava_row(rec, source="test")
    return row_ids(stream, row["messages"], len(row["image_paths"]), n_image_tokens)


def as_ours(ids, labels, image_token_id):
    """The reference's ids in our convention: LLaVA's -200 placeholder -> the `<image>` id (label -100)."""
    return [image_token_id if t == IMAGE_TOKEN_INDEX else t for t in ids], [
        -100 if t == IMAGE_TOKEN_INDEX else t for t in labels
    ]


@pytest.fixture(scope="module", params=LEGACY, ids=["legacy_false", "legacy_true"])
def setup(request):
    tokenizer = tiny_tokenizer(legacy=request.param)
    processor = build_processor(tokenizer, padding_image_processor(28), patch_size=14, image_size=28)
    stream = TokenStream.from_processor(processor)
    return stream, SlowLlamaTokenizer(tokenizer.vocab_file, legacy=request.param), tokenizer


CASES = {
    "multi_round_image_first": record(
        "<image>\nWhat is this?", "A bus.", "What color is the bus?", "The bus is red.", "Why?", "Paint."
    ),
    "image_after_question": record("What is in the picture?\n<image>", "Two people and 345 cars."),
    "text_only": record("Write a function.", "def area(r):\n    return 3.14 * r * r", image=None, rid="wgByO4Y_0"),
    "code_with_indentation": record(
        "<image>\nFix this:\n\tif x:\n        return None", "```python\nif x:\n    return  None\n```"
    ),
    "double_spaces": record("<image>\nWhat does the sign say?  Answer:  briefly.", "STOP.  It says  STOP."),
    "chinese_and_emoji": record("<image>\n图中有什么？ 😀", "一辆红色的公共汽车。🚌 12 cars", "Sure?", "是的 ✅"),
    "leading_space_answer": record("<image>\nWhat?", "  indented answer", "Next?", "\nnewline first"),
}


@pytest.mark.parametrize("case", CASES)
def test_ids_and_labels_equal_llavas_preprocess_v1(setup, case):
    stream, slow, tokenizer = setup
    expected = as_ours(*reference(CASES[case], slow), stream.image_token_id)
    assert any(label != -100 for label in expected[1])  # LLaVA's round arithmetic found no mismatch here
    got = ours(CASES[case], stream)
    assert tokenizer.convert_ids_to_tokens(got[0]) == tokenizer.convert_ids_to_tokens(expected[0])
    assert got == expected


def test_random_conversations_equal_llavas_preprocess_v1(setup):
    stream, slow, _ = setup
    rng = random.Random(0)
    words = ["the", "bus", "USER", "ASSISTANT", "return", "x", "12", "图中", "😀", "\n", "\t", "?", ":", "Answer"]
    for n in range(150):
        turns = []
        for _ in range(2 * rng.randint(1, 4)):
            text = "".join(rng.choice(words) + " " * rng.choice([0, 1, 1, 2, 4]) for _ in range(rng.randint(1, 9)))
            turns.append(text.strip() or "ok")
        image = rng.random() < 0.7
        if image:
            turns[0] = "<image>\n" + turns[0] if rng.random() < 0.5 else turns[0] + "\n<image>"
        rec = record(*turns, image="coco/x.jpg" if image else None, rid=str(n))
        if any("ASSISTANT:" in turn for turn in turns):
            continue  # LLaVA finds rounds by splitting the text at " ASSISTANT: ": see the known-difference test
        assert ours(rec, stream) == as_ours(*reference(rec, slow), stream.image_token_id), rec


def test_plain_template_equals_llavas_preprocess_plain(setup):
    stream, slow, tokenizer = setup
    plain = TokenStream(tokenizer, chat_template("plain"), tokenizer.vocab_file, slow.legacy)
    for instruction, caption in [
        ("<image>\nRender a clear and concise summary of the photo.", "A red bus on a street."),
        ("Give a brief description of the image.\n<image>", "图中 12 people  walking 😀"),
    ]:
        rec = record(instruction, caption, rid="00453/004539375")
        row = llava_row(rec, source="lcs558k")
        got = row_ids(plain, row["messages"], 1, 1)
        assert got == as_ours(*preprocess_plain(caption, slow), plain.image_token_id)
        assert tokenizer.convert_ids_to_tokens(got[0][:3])[:2] == ["<s>", "<image>"]


def test_inference_prompt_equals_llavas(setup):
    stream, slow, tokenizer = setup
    for question in ["Is there a cat?\nAnswer the question using a single word or phrase.", "Sign?  Answer:  x"]:
        messages = prepare_multimodal_messages([{"role": "user", "content": question}], images=[None])
        assert stream.prompt(messages) == as_ours(inference_ids(question, slow), [], stream.image_token_id)[0]
    tokens = tokenizer.convert_ids_to_tokens(stream.prompt(messages))
    assert tokens[:3] == ["<s>", "▁A", "▁chat"] and tokens[-2:] == ["▁ASSISTANT", ":"]


def test_the_tiny_model_shows_the_behaviours_of_vicunas(setup):
    """What DESIGN §3 lists for Vicuna's tokenizer, shown by the locally trained one (so the tests above bite)."""
    stream, slow, tokenizer = setup
    ids, _ = ours(CASES["multi_round_image_first"], stream)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:3] == ["<s>", "▁A", "▁chat"]  # never a bare "A" after BOS
    image = tokens.index("<image>")
    assert tokens[image - 1] == "▁" and tokens[image + 1 : image + 3] == ["▁", "<0x0A>"]  # lone ▁ around the image
    after_eos = tokens[tokens.index("</s>") + 1 : tokens.index("</s>") + 3]
    assert after_eos == (["▁US", "ER"] if slow.legacy else ["USER", ":"])
    sp = [slow.sp.id_to_piece(i) for i in tokenizer_image_token("x  Answer", slow)[1:]]
    fast = tokenizer.convert_ids_to_tokens(tokenizer("x  Answer", add_special_tokens=False).input_ids)
    assert sp[-2:] == ["▁", "▁Answer"] and fast[-2:] == ["▁▁", "Answer"]  # runs of spaces: SentencePiece vs fast


def test_a_converted_fast_tokenizer_in_one_pass_is_not_llavas_stream():
    """Why the stream exists: the chat template's text through Vicuna's fast tokenizer (non-legacy), as TRL does."""
    tokenizer = tiny_tokenizer(legacy=False)
    processor = build_processor(tokenizer, padding_image_processor(28), patch_size=14, image_size=28)
    messages = prepare_multimodal_messages(
        [{"role": "user", "content": "What is this?"}, {"role": "assistant", "content": "A bus."}], images=[None]
    )
    text = processor.apply_chat_template(messages, tokenize=False)
    one_pass = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False).input_ids)
    stream = tokenizer.convert_ids_to_tokens(TokenStream.from_processor(processor).conversation(messages)[0])
    assert one_pass[:2] == ["<s>", "A"] and stream[:2] == ["<s>", "▁A"]
    image = one_pass.index("<image>")
    assert one_pass[image + 1] == "<0x0A>" and stream[stream.index("<image>") + 1] == "▁"


def test_known_differences_where_a_turn_holds_llavas_separator(setup):
    """LLaVA finds each round's answer by splitting the prompt text at " ASSISTANT: ". A turn holding that text
    breaks its arithmetic: an answer containing it makes LLaVA train nothing on the row ("tokenization mismatch"), a
    question ending with "ASSISTANT:" makes it train that tail of the question as answer. The ids are the same; we
    train the answers and their </s> (listed, with the reason, in the closing note of issue 10)."""
    stream, slow, tokenizer = setup
    rec = record("<image>\nQuote the chat.", "It said ASSISTANT: hello.")
    ids, labels = reference(rec, slow)
    assert all(label == -100 for label in labels)
    got_ids, got_labels = ours(rec, stream)
    assert got_ids == as_ours(ids, labels, stream.image_token_id)[0]
    assert tokenizer.decode([t for t in got_labels if t != -100]) == "It said ASSISTANT: hello.</s>"

    rec = record("<image>\nWhat?", "A.", "Finish: USER: hi ASSISTANT:", "Done.")
    ids, labels = as_ours(*reference(rec, slow), stream.image_token_id)
    got_ids, got_labels = ours(rec, stream)
    assert got_ids == ids
    assert tokenizer.decode([t for t in labels if t != -100]) == "A.</s> ASSISTANT: Done.</s>"
    assert tokenizer.decode([t for t in got_labels if t != -100]) == "A.</s> Done.</s>"


@pytest.mark.parametrize("legacy", LEGACY)
def test_checkpoint_folders_as_shipped(tmp_path, legacy):
    """A Vicuna folder, a folder whose config says `llava` but ships only tokenizer.model (AutoTokenizer then returns
    a generic backend with no dummy prefix at all), and our saved processor: all give LLaVA's stream."""
    slow = SlowLlamaTokenizer(
        write_sentencepiece_tokenizer(tmp_path / "ref", legacy=legacy) / "tokenizer.model", legacy
    )
    rec = CASES["multi_round_image_first"]

    vicuna = write_sentencepiece_tokenizer(tmp_path / "vicuna", legacy=legacy)
    llava = write_sentencepiece_tokenizer(tmp_path / "llava", legacy=legacy)
    (llava / "config.json").write_text(json.dumps({"model_type": "llava", "architectures": ["LlavaLlamaForCausalLM"]}))
    generic = AutoTokenizer.from_pretrained(llava)
    assert generic.convert_ids_to_tokens(generic("A chat", add_special_tokens=False).input_ids)[0] == "A"

    for folder in (vicuna, llava):
        processor = build_processor(AutoTokenizer.from_pretrained(folder), image_size=28)
        stream = TokenStream.from_processor(processor)
        assert stream.legacy is legacy
        assert ours(rec, stream) == as_ours(*reference(rec, slow), stream.image_token_id)

        saved = tmp_path / f"saved_{folder.name}"
        processor.save_pretrained(saved)
        stream.save_pretrained(saved)
        config = json.loads((saved / "tokenizer_config.json").read_text())
        assert config[LEGACY_KEY] is legacy and (saved / "tokenizer.model").is_file()
        from transformers import AutoProcessor

        reloaded = TokenStream.from_processor(AutoProcessor.from_pretrained(saved))
        assert reloaded.legacy is legacy and ours(rec, reloaded) == ours(rec, stream)
        saved_again = tmp_path / f"again_{folder.name}"  # a reloaded processor saved once more keeps the flag
        AutoProcessor.from_pretrained(saved).save_pretrained(saved_again)
        reloaded.save_pretrained(saved_again)
        assert json.loads((saved_again / "tokenizer_config.json").read_text())[LEGACY_KEY] is legacy


def test_without_tokenizer_model_the_fast_tokenizer_encodes_each_piece(tmp_path, caplog):
    """No tokenizer.model: LLaVA's algorithm with the fast tokenizer (each piece on its own, one BOS), labels as
    always; a warning says runs of spaces may differ from SentencePiece."""
    processor = build_processor(tiny_tokenizer(), image_size=28)
    processor.save_pretrained(tmp_path / "fast_only")  # transformers writes tokenizer.json, no tokenizer.model
    from transformers import AutoProcessor

    fast_processor = AutoProcessor.from_pretrained(tmp_path / "fast_only")
    stream = TokenStream.from_processor(fast_processor)
    assert "ships no tokenizer.model" in caplog.text
    tokenizer = fast_processor.tokenizer

    def fast(text):
        return tokenizer(text).input_ids

    fast.pad_token_id, fast.legacy, fast.model_max_length = tokenizer.unk_token_id, True, 2048
    rec = record("<image>\nWhat is this?", "A bus.", "Color?", "Red.")
    got = ours(rec, stream)
    assert got[0] == as_ours(*reference(rec, fast), stream.image_token_id)[0]
    trained = tokenizer.convert_ids_to_tokens([i for i, label in zip(*got) if label != -100])
    assert "".join(trained) == "▁A▁bus.</s>▁Red.</s>"


def test_a_span_inside_a_word_is_refused():
    """A custom template whose {% generation %} span opens mid-word cannot be encoded span by span exactly."""
    tokenizer = tiny_tokenizer()
    template = (
        "{{- bos_token -}}{%- for m in messages -%}{%- if m['role'] == 'user' -%}{{- 'USER: ' + m['content'] + "
        "' ASSISTANT:x' -}}{%- else -%}{%- generation -%}{{- m['content'] + eos_token -}}{%- endgeneration -%}"
        "{%- endif -%}{%- endfor -%}"
    )
    stream = TokenStream(tokenizer, template, tokenizer.vocab_file, legacy=False)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "yes"}]
    with pytest.raises(ValueError, match="starts inside a word"):
        stream.conversation(messages)


def test_a_sentencepiece_model_that_drops_spaces_is_refused(tmp_path):
    import sentencepiece as spm

    folder = tmp_path / "t5like"
    folder.mkdir()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["a chat between users"] * 50), model_prefix=str(folder / "tokenizer"),
        vocab_size=16, remove_extra_whitespaces=True, minloglevel=2,
    )  # fmt: skip
    tokenizer = tiny_tokenizer()
    with pytest.raises(ValueError, match="keeps whitespace"):
        TokenStream(tokenizer, chat_template(), str(folder / "tokenizer.model"))
    shutil.rmtree(folder)
