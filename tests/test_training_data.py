"""Label masking through the trainer's collator, the row checks and the max_length filter (hub_llava.training.data)."""

import pytest
import torch
from datasets import Dataset
from PIL import Image
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from hub_llava.data.schema import BASE_FEATURES
from hub_llava.processing import IMAGE_TOKEN, build_processor, image_token_count, padding_image_processor
from hub_llava.testing import tiny_tokenizer
from hub_llava.token_stream import TokenStream
from hub_llava.training.collator import build_collator, row_ids, trained_spans
from hub_llava.training.configs import LlavaSFTConfig
from hub_llava.training.data import BadRowError, check_row, filter_trainable, measure
from hub_llava.training.render_sample import render_sample

N_IMAGE_TOKENS = 4  # tiny geometry: 28 px / 14 px patches, CLS dropped


def processor_for(template="vicuna_v1"):
    return build_processor(
        tiny_tokenizer(), padding_image_processor(28), patch_size=14, image_size=28, template=template
    )


def args(**kwargs):
    return LlavaSFTConfig(output_dir="unused", bf16=False, use_cpu=True, report_to="none", **kwargs)


def image(width=40, height=30):
    return Image.new("RGB", (width, height), (200, 10, 10))


TWO_ROUNDS = {
    "id": "000000033471",
    "messages": [
        {"role": "user", "content": "What is this?"},
        {"role": "assistant", "content": "A bus."},
        {"role": "user", "content": "What color is the bus?"},
        {"role": "assistant", "content": "The bus is red."},
    ],
    "images": [image()],
}
TEXT_ONLY = {
    "id": "wgByO4Y_0",
    "messages": [{"role": "user", "content": "Two?"}, {"role": "assistant", "content": "Yes."}],
    "images": [],
}


def pieces(processor, ids):
    return processor.tokenizer.convert_ids_to_tokens([int(i) for i in ids])


def test_trained_tokens_are_exactly_each_answer_and_eos():
    processor = processor_for()
    batch = build_collator(processor, args())([dict(TWO_ROUNDS), dict(TEXT_ONLY)])
    trained = [pieces(processor, ids[labels != -100]) for ids, labels in zip(batch["input_ids"], batch["labels"])]
    # LLaVA's masking: the answer's first piece carries its leading "▁" (the space after "ASSISTANT:"), then </s>.
    assert trained[0] == ["▁A", "▁bus", ".", "</s>", "▁The", "▁bus", "▁is", "▁red", ".", "</s>"]
    assert trained[1] == ["▁Yes", ".", "</s>"]
    assert trained_spans(batch["labels"][0], processor.tokenizer) == ["A bus.</s>", "The bus is red.</s>"]


def test_bos_system_user_assistant_prompt_image_and_padding_are_ignored():
    processor = processor_for()
    batch = build_collator(processor, args())([dict(TWO_ROUNDS), dict(TEXT_ONLY)])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    tokens = pieces(processor, ids)
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert tokens[0] == "<s>" and labels[0] == -100
    assert int((ids == image_id).sum()) == N_IMAGE_TOKENS
    assert (labels[ids == image_id] == -100).all()
    first_answer = tokens.index("▁A", 2)  # after "<s> ▁A ▁chat ..."
    assert tokens[first_answer - 2 : first_answer] == ["▁ASSISTANT", ":"]
    assert (labels[:first_answer] == -100).all()  # BOS, system prompt, USER turn, image, " ASSISTANT:"
    second_user = tokens.index("</s>") + 1
    second_answer = tokens.index("▁The", second_user)
    assert (labels[second_user:second_answer] == -100).all()
    padding = batch["attention_mask"][1] == 0
    assert padding.any() and (batch["labels"][1][padding] == -100).all()


def test_plain_template_trains_caption_and_newline_only():
    processor = processor_for("plain")
    row = {
        "id": "GCC_train_000000001",
        "messages": [
            {"role": "user", "content": "Render a clear and concise summary of the photo."},
            {"role": "assistant", "content": "A red bus."},
        ],
        "images": [image()],
    }
    sample = render_sample(row, 0, processor, args())
    assert sample["text"] == "<s><image>A red bus.\n"  # human text dropped, as LLaVA's preprocess_plain
    assert sample["trained_spans"] == ["A red bus.\n"]
    assert sample["n_image_tokens"] == N_IMAGE_TOKENS
    assert sample["n_tokens"] == 1 + N_IMAGE_TOKENS + 5  # <s> <image>x4 ▁A ▁red ▁bus . <0x0A>


def test_measure_matches_the_collator_and_counts_words_by_modality():
    processor = processor_for()
    dataset = Dataset.from_list(
        [
            {**TWO_ROUNDS, "image_paths": ["coco/train2017/000000033471.jpg"], "source": "t"},
            {**TEXT_ONLY, "image_paths": [], "source": "t"},
        ],
        features=BASE_FEATURES,
    )
    stats = measure(dataset, processor, N_IMAGE_TOKENS, max_length=2048)
    batch = build_collator(processor, args())([dataset[0]])
    assert stats.n_tokens[0] == batch["input_ids"].shape[1]
    assert stats.n_trained == [10, 3]
    assert stats.modality_lengths == [3 + 2 + 5 + 4, -(1 + 1)]
    assert stats.image_cut == [False, False]


def test_over_long_rows_are_dropped_counted_and_named(caplog):
    processor = processor_for()
    long_second_round = [
        *TWO_ROUNDS["messages"][:2],
        {"role": "user", "content": "Two? " * 60},
        TWO_ROUNDS["messages"][3],
    ]
    rows = [
        {**TWO_ROUNDS, "id": "short"},
        {**TWO_ROUNDS, "id": "first_answer_kept", "messages": long_second_round},
        {
            **TEXT_ONLY,
            "id": "nothing_left",
            "messages": [{"role": "user", "content": "Two? " * 60}, TEXT_ONLY["messages"][1]],
        },
    ]
    dataset = Dataset.from_list([{**r, "image_paths": [], "source": "t"} for r in rows], features=BASE_FEATURES)
    stats = measure(dataset, processor, N_IMAGE_TOKENS, max_length=60)
    assert stats.n_tokens[1] > 60 and stats.n_trained[1] == 4  # "▁A ▁bus . </s>" fits, the second answer does not
    assert stats.n_trained[2] == 0
    kept, lengths = filter_trainable(dataset, stats)
    assert kept["id"] == ["short", "first_answer_kept"]
    assert lengths == [14, 3 + 2 + 60 + 4]
    assert "Dropped 1 of 3 rows" in caplog.text and "row 2 (id 'nothing_left')" in caplog.text


def test_row_cut_inside_the_image_is_dropped():
    processor = processor_for()
    system = {"role": "system", "content": "word " * 60}  # the image starts after the other row's first answer
    row = {**TWO_ROUNDS, "id": "cut", "messages": [system, *TWO_ROUNDS["messages"]], "image_paths": [], "source": "t"}
    dataset = Dataset.from_list(
        [{**TWO_ROUNDS, "id": "ok", "image_paths": [], "source": "t"}, row], features=BASE_FEATURES
    )
    ids, _ = row_ids(TokenStream.from_processor(processor), row["messages"], 1, N_IMAGE_TOKENS)
    image_start = ids.index(processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    stats = measure(dataset, processor, N_IMAGE_TOKENS, max_length=image_start + 2)
    assert stats.image_cut == [False, True]
    kept, _ = filter_trainable(dataset, stats)
    assert kept["id"] == ["ok"]


def test_rows_at_max_length_and_one_token_past_it():
    """The length pass and the collator agree at the edge: at exactly max_length every trained token is kept; one
    token longer and the final </s> is cut (one trained token fewer); the collator's batch is max_length long."""
    processor = processor_for()
    stream = TokenStream.from_processor(processor)
    ids, labels = row_ids(stream, TWO_ROUNDS["messages"], 1, N_IMAGE_TOKENS)
    trained = sum(label != -100 for label in labels)
    assert ids[-1] == processor.tokenizer.eos_token_id and labels[-1] == ids[-1]
    dataset = Dataset.from_list([{**TWO_ROUNDS, "image_paths": ["x.jpg"], "source": "t"}], features=BASE_FEATURES)
    exact = measure(dataset, processor, N_IMAGE_TOKENS, max_length=len(ids))
    short = measure(dataset, processor, N_IMAGE_TOKENS, max_length=len(ids) - 1)
    assert exact.n_tokens == short.n_tokens == [len(ids)]
    assert exact.n_trained == [trained] and short.n_trained == [trained - 1]
    for max_length, expected in ((len(ids), trained), (len(ids) - 1, trained - 1)):
        batch = build_collator(processor, args(max_length=max_length))([dict(TWO_ROUNDS)])
        assert batch["input_ids"].shape[1] == max_length
        assert int((batch["labels"] != -100).sum()) == expected
        assert batch["input_ids"][0].tolist() == ids[:max_length]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {
                "id": "a1",
                "messages": [{"role": "user", "content": "<image>\nWhat?"}, {"role": "assistant", "content": "A."}],
                "images": [image()],
            },
            "row 3 (id 'a1') has a stray <image> in message 0",
        ),
        (
            {
                "id": "b2",
                "messages": [{"role": "user", "content": "<image>\nWhat?"}, {"role": "assistant", "content": "A."}],
                "images": [],
            },
            "row 3 (id 'b2') has an <image> placeholder in message 0 but no image",
        ),
        (
            {
                "id": "c3",
                "messages": [{"role": "user", "content": "What?"}, {"role": "assistant", "content": "A."}],
                "images": [],
                "image_paths": ["coco/x.jpg"],
            },
            "row 3 (id 'c3') lists image 'coco/x.jpg' but has no image",
        ),
        (
            {"id": "d4", "messages": [{"role": "user", "content": "What?"}], "images": []},
            "row 3 (id 'd4') has no assistant turn",
        ),
    ],
)
def test_bad_rows_are_refused_naming_the_row(row, message):
    with pytest.raises(BadRowError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_row(row, 3)


def test_measure_refuses_a_bad_row_before_training():
    processor = processor_for()
    bad = {
        "id": "stray",
        "messages": [{"role": "user", "content": "<image>\nWhat?"}, {"role": "assistant", "content": "A."}],
        "images": [image()],
        "image_paths": ["x.jpg"],
        "source": "t",
    }
    good = {**TEXT_ONLY, "image_paths": [], "source": "t"}
    dataset = Dataset.from_list([good, bad], features=BASE_FEATURES)
    with pytest.raises(BadRowError, match=r"row 1 \(id 'stray'\) has a stray <image>"):
        measure(dataset, processor, N_IMAGE_TOKENS, max_length=2048)


def test_image_token_count_follows_the_processor_geometry():
    assert image_token_count(processor_for()) == N_IMAGE_TOKENS
    assert image_token_count(build_processor(tiny_tokenizer())) == 576  # 336 px, 14 px patches, CLS dropped


def test_measure_in_parallel_matches_one_process():
    processor = processor_for()
    rows = [{**TWO_ROUNDS, "id": str(i), "image_paths": ["x.jpg"], "source": "t"} for i in range(3)]
    rows += [{**TEXT_ONLY, "id": f"t{i}", "image_paths": [], "source": "t"} for i in range(3)]
    dataset = Dataset.from_list(rows, features=BASE_FEATURES)
    one = measure(dataset, processor, N_IMAGE_TOKENS, max_length=2048)
    two = measure(dataset, processor, N_IMAGE_TOKENS, max_length=2048, num_proc=2)
    assert one == two and isinstance(two.modality_lengths, list)
    assert two.modality_lengths == [14, 14, 14, -2, -2, -2]


def test_bundled_smoke_data_is_what_its_script_writes(tmp_path):
    import importlib.util
    from pathlib import Path

    samples = Path(__file__).resolve().parents[1] / "samples" / "sft_smoke"
    spec = importlib.util.spec_from_file_location("make_samples", samples / "make_samples.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    fresh = Dataset.from_parquet(script.main(str(tmp_path)))
    bundled = Dataset.from_parquet(str(samples / "train.parquet"))
    assert fresh.features == bundled.features == BASE_FEATURES
    assert (
        fresh.select_columns(["id", "messages", "image_paths"]).to_list()
        == bundled.select_columns(["id", "messages", "image_paths"]).to_list()
    )
    assert [len(row) for row in bundled["images"]] == [1] * 12 + [0] * 4
    assert [images[0].size for images in bundled["images"][:3]] == [(40, 30), (30, 40), (32, 32)]


@pytest.mark.parametrize("size", [(41, 30), (30, 45), (64, 17), (28, 28)])
def test_pil_side_padding_gives_the_image_processors_exact_pixels(size):
    # The collator pads in PIL first (fast); the padding image processor's own pad then has nothing to do.
    import numpy as np

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    processor = processor_for()
    rows = [{**TWO_ROUNDS, "images": [noise]}, {**TWO_ROUNDS, "images": [noise.convert("L")]}]
    ours = build_collator(processor, args())([dict(row) for row in rows])
    trls = DataCollatorForVisionLanguageModeling(processor, max_length=2048, assistant_only_loss=True)(
        [dict(row) for row in rows]
    )
    torch.testing.assert_close(ours["pixel_values"], trls["pixel_values"], rtol=0, atol=0)


def test_stage1_square_images_are_clip_resized_and_cropped_not_padded(tmp_path):
    """`image_aspect_ratio: square` (LLaVA's pretrain.sh): the pixels of CLIP's own resize + centre crop; `pad`: the
    pixels of LLaVA's expand2square first."""
    import numpy as np
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from hub_llava.convert.verify import expand2square
    from hub_llava.training.configs import LlavaModelConfig
    from hub_llava.training.model import load_processor
    from hub_llava.training.tiny_model import make_tiny_model

    folder = make_tiny_model(str(tmp_path / "tiny"))
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    clip = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    for aspect, image in (("square", noise), ("pad", expand2square(noise, (122, 116, 104)))):
        processor = load_processor(LlavaModelConfig(model_name_or_path=folder), args(image_aspect_ratio=aspect))
        assert processor.image_processor.do_pad is (aspect == "pad")
        batch = build_collator(processor, args())([{**TWO_ROUNDS, "images": [noise]}])
        expected = clip(image, return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(batch["pixel_values"], expected, rtol=0, atol=1e-6)
