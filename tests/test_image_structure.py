"""`image_structure.complete_format` accepts whole JPEGs without decoding them, never a truncated one, and never one
PIL cannot decode (checked on every truncation and on thousands of random corruptions); other formats are decoded."""

import io
import random
import warnings

import numpy as np
import PIL.Image
import pytest

from hub_llava.data.image_structure import complete_format
from hub_llava.data.images import verify_image_bytes
from hub_llava.data.llava_format import RejectedRecord

VARIANTS = {  # name -> (mode, format, save options)
    "baseline": ("RGB", "JPEG", {}),
    "progressive": ("RGB", "JPEG", {"progressive": True}),
    "optimized": ("RGB", "JPEG", {"optimize": True, "subsampling": 0}),
    "grey": ("L", "JPEG", {}),
    "cmyk": ("CMYK", "JPEG", {}),
    "restart-markers": ("RGB", "JPEG", {"restart_marker_blocks": 1}),
    "exif": ("RGB", "JPEG", {"exif": PIL.Image.Exif()}),
}


def encoded(name: str, size=(48, 36)) -> bytes:
    mode, image_format, options = VARIANTS[name]
    rng = np.random.default_rng(len(name))
    low = PIL.Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)).resize(size, PIL.Image.BICUBIC)
    pixels = np.asarray(low, dtype=np.int16) + rng.normal(0, 10, (size[1], size[0], 3)).astype(np.int16)
    image = PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert(mode)
    out = io.BytesIO()
    image.save(out, image_format, **options)
    return out.getvalue()


def pil_decodes(data: bytes) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PIL.Image.open(io.BytesIO(data)) as image:
                image.verify()
            with PIL.Image.open(io.BytesIO(data)) as image:
                image.load()
    except Exception:
        return False
    return True


@pytest.mark.parametrize("name", VARIANTS)
def test_whole_files_are_accepted_and_every_truncation_is_not(name):
    data = encoded(name)
    assert complete_format(data) == "JPEG" and pil_decodes(data)
    assert complete_format(data + b"\x00trailing bytes") == "JPEG"  # data after EOI is ignored, as decoders do
    assert [cut for cut in range(len(data)) if complete_format(data[:cut])] == []


@pytest.mark.parametrize("name", VARIANTS)
def test_a_file_it_accepts_is_one_pil_decodes(name):
    data, rng = encoded(name), random.Random(name)
    accepted = pil_rejected = 0
    for _ in range(600):
        damaged = bytearray(data)
        for _ in range(rng.choice((1, 1, 2))):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        damaged = bytes(damaged)
        decodes = pil_decodes(damaged)
        pil_rejected += not decodes
        if complete_format(damaged):
            accepted += 1
            assert decodes, (name, damaged.hex())
    # Not a vacuous check: it accepted damaged-but-decodable files, and PIL refused others it did not accept.
    assert accepted > 50 and pil_rejected > 10


@pytest.mark.parametrize("image_format", ["PNG", "GIF", "WEBP"])
def test_other_formats_are_left_to_the_decoder(image_format):
    out = io.BytesIO()
    PIL.Image.new("RGB", (8, 8), "red").save(out, image_format)
    assert complete_format(out.getvalue()) is None
    assert verify_image_bytes(out.getvalue()) == image_format  # decoded, as before
    with pytest.raises(RejectedRecord, match="^corrupt image: "):
        verify_image_bytes(out.getvalue()[: len(out.getvalue()) // 2])


def test_non_images_and_rarer_jpeg_kinds_are_left_to_the_decoder():
    assert complete_format(b"") is None and complete_format(b"<html>not found</html>") is None
    data = bytearray(encoded("baseline"))
    sof = data.index(b"\xff\xc0")
    data[sof + 1] = 0xC9  # an arithmetic-coded frame: not proven here, the decoder judges it
    assert complete_format(bytes(data)) is None


def test_verify_accepts_whole_images_and_names_what_is_broken():
    jpeg = encoded("baseline")
    assert verify_image_bytes(jpeg) == "JPEG"
    with pytest.raises(RejectedRecord, match="^corrupt image: OSError"):
        verify_image_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(RejectedRecord, match="^corrupt image: not a format PIL can identify"):
        verify_image_bytes(b"this is not an image")
