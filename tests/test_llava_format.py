import itertools
import random

import pytest

from hub_llava.data.llava_format import RejectedRecord, image_collection, llava_messages, llava_row, plain_row


def turns(*pairs):
    return [{"from": role, "value": value} for role, value in pairs]


def test_image_placeholder_removed_and_stripped():
    row = llava_row(
        {
            "id": "000000033471",
            "image": "coco/train2017/000000033471.jpg",
            "conversations": turns(("human", "What are the colors of the bus?\n<image>"), ("gpt", "White and red.")),
        },
        source="coco",
    )
    assert row == {
        "id": "000000033471",
        "messages": [
            {"role": "user", "content": "What are the colors of the bus?"},
            {"role": "assistant", "content": "White and red."},
        ],
        "image_paths": ["coco/train2017/000000033471.jpg"],
        "source": "coco",
    }


def test_text_only_record_and_numeric_id():
    row = llava_row({"id": 7, "model": "", "conversations": turns(("human", "Hi"), ("gpt", " Hello "))}, "text")
    assert row["id"] == "7"
    assert row["image_paths"] == []
    assert row["messages"][1]["content"] == " Hello "  # turns without <image> are kept verbatim, as LLaVA does


def test_first_turn_not_from_human_is_dropped():
    msgs = llava_messages(turns(("gpt", "Hello!"), ("human", "Hi"), ("gpt", "Yes")), has_image=False)
    assert [m["role"] for m in msgs] == ["user", "assistant"]


@pytest.mark.parametrize(
    "conversations, has_image, reason",
    [
        ([], False, "no conversations"),
        (None, False, "no conversations"),
        (turns(("human", "a"), ("human", "b")), False, "roles do not alternate: turn 1"),
        (turns(("human", "a"), ("robot", "b")), False, "unknown role 'robot' in turn 1"),
        (turns(("human", "a"), ("gpt", "  ")), False, "empty turn 1"),
        (turns(("human", "<image>"), ("gpt", "b")), True, "empty turn 0"),
        (turns(("human", "<image>\na"), ("gpt", "b")), False, "text-only record with an <image> placeholder"),
        (turns(("human", "a"), ("gpt", "b")), True, "image record without an <image> placeholder"),
        (turns(("human", "a"), ("gpt", "b"), ("human", "<image>c"), ("gpt", "d")), True, "in the first user turn"),
        (turns(("human", "<image><image>a"), ("gpt", "b")), True, "must appear once"),
        (turns(("human", "a"), ("gpt", "b"), ("human", "c")), False, "no answer"),
        ([{"from": "human"}], False, "turn 0 is not a {from, value} object"),
    ],
)
def test_rejected_with_reason(conversations, has_image, reason):
    with pytest.raises(RejectedRecord, match=reason.replace("{", r"\{").replace("}", r"\}")):
        llava_messages(conversations, has_image)


def test_record_level_rejects():
    with pytest.raises(RejectedRecord, match="no id"):
        llava_row({"conversations": turns(("human", "a"), ("gpt", "b"))}, "x")
    with pytest.raises(RejectedRecord, match="not a JSON object"):
        llava_row(["id"], "x")
    with pytest.raises(RejectedRecord, match="image is not a relative path"):
        llava_row({"id": "1", "image": 3, "conversations": turns(("human", "<image>a"), ("gpt", "b"))}, "x")


@pytest.mark.parametrize(
    "path, collection",
    [("coco/train2017/1.jpg", "coco"), ("gqa/images/2.jpg", "gqa"), ("vg/VG_100K_2/1.jpg", "vg"), (None, "text")],
)
def test_image_collection(path, collection):
    assert image_collection(path) == collection


def _outcome(convert, *args):
    try:
        return convert(*args)
    except RejectedRecord as err:
        return f"rejected: {err}"


def _variants():
    # Conversations over roles, texts with 0-2 placeholders in various places, blank texts and non-turns.
    texts = ["a", " b ", "<image>\nq", "q <image>", "<image><image>q", "<image>", "  ", "", "\u3000", 7]
    turn_kinds = [{"from": r, "value": t} for r in ("human", "gpt", "robot") for t in texts]
    turn_kinds += [{"from": "human"}, "not a turn", {"value": "x"}]
    for n in range(3):  # every conversation of up to 2 turns
        yield from (list(combo) for combo in itertools.product(turn_kinds, repeat=n))
    rng = random.Random(0)
    for n in (3, 4, 5, 6):  # and a sample of longer ones, most of them well-formed up to one turn
        good = [{"from": ("human", "gpt")[i & 1], "value": "<image>\nq" if i == 0 else "t"} for i in range(n)]
        for _ in range(2000):
            combo = list(good)
            combo[rng.randrange(n)] = rng.choice(turn_kinds)
            yield combo if rng.random() < 0.7 else rng.choices(turn_kinds, k=n)
    yield None
    yield ("not", "a list")


def test_fast_path_gives_the_checked_rules_results_and_reasons():
    from hub_llava.data.llava_format import _checked_messages

    cases = 0
    for conversations in _variants():
        for has_image in (False, True):
            assert _outcome(llava_messages, conversations, has_image) == _outcome(
                _checked_messages, conversations, has_image
            ), (conversations, has_image)
            cases += 1
    assert cases > 15_000


@pytest.mark.parametrize("rid", ["000000033471", 33471, None, "", 1.5])
@pytest.mark.parametrize("image", ["coco/x.jpg", None, "", " ", "\t\n", 3, ["coco/x.jpg"]])
@pytest.mark.parametrize("record_type", [dict, list])
def test_llava_row_fast_path_matches_the_record_rules(rid, image, record_type):
    record = {"id": rid, "conversations": turns(("human", "<image>\nq" if image is not None else "q"), ("gpt", "a"))}
    if image is not None:
        record["image"] = image
    record = record if record_type is dict else [record]
    outcome = _outcome(llava_row, record, "coco")
    if record_type is list:
        assert outcome == "rejected: not a JSON object: list"
    elif rid is None:
        assert outcome == "rejected: no id"
    elif image is not None and (not isinstance(image, str) or not image.strip()):
        assert outcome == f"rejected: image is not a relative path: {image!r}"
    else:
        assert outcome["id"] == str(rid) and outcome["image_paths"] == ([image] if image else [])
        assert outcome["messages"] == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_plain_row_keeps_the_instruction_and_caption_with_the_placeholder_before_or_after():
    for instruction in (
        "Render a clear and concise summary of the photo.\n<image>",
        "<image>\nRender a clear and concise summary of the photo.",
    ):
        record = {
            "id": "004539375",
            "image": "00453/004539375.jpg",
            "conversations": turns(("human", instruction), ("gpt", "a dog")),
        }
        assert plain_row(record, "lcs558k") == {
            "id": "004539375",
            "messages": [
                {"role": "user", "content": "Render a clear and concise summary of the photo."},
                {"role": "assistant", "content": "a dog"},
            ],
            "image_paths": ["00453/004539375.jpg"],
            "source": "lcs558k",
        }


@pytest.mark.parametrize(
    "record, reason",
    [
        (
            {
                "id": "1",
                "image": "a.jpg",
                "conversations": turns(("human", "<image>a"), ("gpt", "b"), ("human", "c"), ("gpt", "d")),
            },
            "more than one round: 4 turns, where a stage-1 record is one instruction and one caption",
        ),
        (
            {"id": "1", "image": "a.jpg", "conversations": turns(("human", "a"), ("gpt", "b"))},
            "no <image> placeholder in the instruction",
        ),
        (
            {"id": "1", "conversations": turns(("human", "<image>a"), ("gpt", "b"))},
            "no image: a stage-1 record captions an image",
        ),
        (
            {"id": "1", "image": "a.jpg", "conversations": turns(("human", "<image>a"))},
            "the last turn is a question with no answer",
        ),
        ({"id": "1", "image": "a.jpg", "conversations": []}, "no conversations"),
        ({"image": "a.jpg", "conversations": turns(("human", "<image>a"), ("gpt", "b"))}, "no id"),
    ],
    ids=["two-rounds", "no-placeholder", "no-image", "no-caption", "empty", "no-id"],
)
def test_plain_row_rejects_what_preprocess_plain_refuses(record, reason):
    with pytest.raises(RejectedRecord) as caught:
        plain_row(record, "lcs558k")
    assert str(caught.value).startswith(reason)
