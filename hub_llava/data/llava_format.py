"""LLaVA-format records (`id`, `image`, `conversations[from, value]`) -> hub_llava rows, with LLaVA's own rules.

Pure functions, no I/O. LLaVA-1.5's `preprocess` drops a first turn that is not from the human, requires the roles
to alternate, and rebuilds the turn holding `<image>` as "<image>\\n" + stripped text. Our rows keep the text without
the placeholder (TRL puts the image before the first user text, which is exactly where LLaVA-1.5 records hold it),
so a record whose placeholder is elsewhere, doubled or missing is rejected rather than silently moved.

Stage-1 (pretraining) records go through `plain_row`: LLaVA's `preprocess_plain` asserts that a record is exactly one
round (an instruction holding `<image>`, then a caption) and replaces the instruction by the image alone, so anything
else is rejected with that reason before the general rules run.
"""

IMAGE_TOKEN = "<image>"
ROLES = {"human": "user", "gpt": "assistant"}
_EXPECTED = ("human", "gpt")  # the role of even and odd turns
_ROLE_OF_TURN = ("user", "assistant")


class RejectedRecord(ValueError):
    """A record that cannot be converted faithfully; `str(err)` is the reason written to the rejects file."""


def record_id(record) -> str | None:
    """The release's id as a string (ids that are JSON numbers become their decimal text)."""
    if not isinstance(record, dict) or record.get("id") is None:
        return None
    return str(record["id"])


def llava_messages(conversations, has_image: bool) -> list[dict]:
    """Converts LLaVA `conversations` into chat `messages`, applying LLaVA-1.5's rules.

    Args:
        conversations (`list[dict]`):
            Turns `{"from": "human" | "gpt", "value": str}`.
        has_image (`bool`):
            Whether the record has an image (exactly one `<image>`, in the first user turn) or is text-only (none).

    Raises:
        `RejectedRecord`: with the reason (no conversations, unknown role, roles not alternating, empty turn,
        misplaced / missing / extra `<image>`, unanswered last question).
    """
    messages = _clean_messages(conversations, has_image)
    if messages is None:
        messages = _checked_messages(conversations, has_image)  # raises with the reason, or drops a first turn
    return messages


def _clean_messages(conversations, has_image: bool) -> list[dict] | None:
    # The fast path (one pass, no reasons): the messages of a conversation that starts with the human and breaks no
    # rule, exactly as `_checked_messages` returns them; `None` for anything else, which the checked path then takes.
    if type(conversations) is not list or not conversations or len(conversations) & 1:
        return None
    messages = []
    for i, turn in enumerate(conversations):
        if type(turn) is not dict:
            return None
        text = turn.get("value")
        if type(text) is not str or turn.get("from") != _EXPECTED[i & 1]:
            return None
        if i == 0 and has_image:
            head, token, tail = text.partition(IMAGE_TOKEN)
            if not token or IMAGE_TOKEN in tail:
                return None
            text = (head + tail).strip()
        elif "<" in text and IMAGE_TOKEN in text:  # a search for one character is ~10x faster on long answers
            return None
        if not text or text.isspace():
            return None
        messages.append({"role": _ROLE_OF_TURN[i & 1], "content": text})
    return messages


def _checked_messages(conversations, has_image: bool) -> list[dict]:
    # The rules one by one, each with its reason.
    if not isinstance(conversations, list) or not conversations:
        raise RejectedRecord("no conversations")
    for i, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise RejectedRecord(f"turn {i} is not a {{from, value}} object with a string value")
        if turn.get("from") not in ROLES:
            raise RejectedRecord(f"unknown role {turn.get('from')!r} in turn {i}")
    if conversations[0]["from"] != "human":
        conversations = conversations[1:]  # LLaVA drops a first turn that is not from the human
        if not conversations:
            raise RejectedRecord("no conversations after dropping a first turn not from the human")
    messages = []
    for i, turn in enumerate(conversations):  # runs per record: kept lean (no str.count/strip on every turn)
        role, text = turn["from"], turn["value"]
        expected = _EXPECTED[i & 1]
        if role != expected:
            raise RejectedRecord(f"roles do not alternate: turn {i} is from {role!r}, expected {expected!r}")
        if IMAGE_TOKEN in text:
            if not has_image:
                raise RejectedRecord(f"text-only record with an {IMAGE_TOKEN} placeholder in turn {i}")
            if i != 0 or text.count(IMAGE_TOKEN) > 1:
                raise RejectedRecord(f"{IMAGE_TOKEN} placeholder must appear once, in the first user turn (turn {i})")
            text = text.replace(IMAGE_TOKEN, "").strip()
        if not text or text.isspace():
            raise RejectedRecord(f"empty turn {i}")
        messages.append({"role": ROLES[role], "content": text})
    if has_image and IMAGE_TOKEN not in conversations[0]["value"]:
        raise RejectedRecord(f"image record without an {IMAGE_TOKEN} placeholder in the first user turn")
    if role != "gpt":
        raise RejectedRecord("the last turn is a question with no answer")
    return messages


def llava_row(record, source: str) -> dict:
    """Converts one LLaVA-format record into a row of the shared schema, without the decoded `images`.

    Returns:
        `dict` with `id`, `messages`, `image_paths` (`[record["image"]]` or `[]`) and `source`.

    Raises:
        `RejectedRecord`: the record is not an object, has no id, has a non-string image path, or its
        conversation breaks LLaVA's rules.
    """
    if type(record) is dict:  # the fast path: a string id and a non-blank image path or none
        rid, image = record.get("id"), record.get("image")
        if type(rid) is str and (image is None or (type(image) is str and image and not image.isspace())):
            messages = llava_messages(record.get("conversations"), has_image=image is not None)
            return {"id": rid, "messages": messages, "image_paths": [image] if image else [], "source": source}
    if not isinstance(record, dict):
        raise RejectedRecord(f"not a JSON object: {type(record).__name__}")
    rid = record_id(record)
    if rid is None:
        raise RejectedRecord("no id")
    image = record.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise RejectedRecord(f"image is not a relative path: {image!r}")
    messages = llava_messages(record.get("conversations"), has_image=image is not None)
    return {"id": rid, "messages": messages, "image_paths": [image] if image else [], "source": source}


def plain_row(record, source: str) -> dict:
    """Converts one stage-1 (pretraining, `plain` template) record, as `llava_row` does, after LLaVA's
    `preprocess_plain` checks: exactly one round (an instruction with `<image>` before or after it, then a caption)
    and an image.

    Raises:
        `RejectedRecord`: `more than one round: N turns ...`, `no <image> placeholder in the instruction`, `no image`,
        or any reason of `llava_row`.
    """
    conversations = record.get("conversations") if isinstance(record, dict) else None
    if isinstance(conversations, list) and conversations:
        if len(conversations) > 2:
            raise RejectedRecord(
                f"more than one round: {len(conversations)} turns, where a stage-1 record is one instruction and "
                "one caption (LLaVA's preprocess_plain)"
            )
        first = conversations[0]
        if isinstance(first, dict) and isinstance(first.get("value"), str) and IMAGE_TOKEN not in first["value"]:
            raise RejectedRecord(
                f"no {IMAGE_TOKEN} placeholder in the instruction: a stage-1 record captions an image "
                "(LLaVA's preprocess_plain)"
            )
    if isinstance(record, dict) and record.get("image") is None:
        raise RejectedRecord("no image: a stage-1 record captions an image (LLaVA's preprocess_plain)")
    return llava_row(record, source)


def image_collection(image_path: str | None) -> str:
    """The sub-collection a LLaVA-1.5 mix record belongs to, from its image root (`coco`, `gqa`, `ocr_vqa`,
    `textvqa`, `vg`), or `text` for a text-only (ShareGPT) record."""
    if not image_path:
        return "text"
    return image_path.split("/", 1)[0]
