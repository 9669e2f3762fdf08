import os

import PIL.Image
import pytest

from hub_llava.data.images import (
    ImageResolver,
    ImageRootError,
    MissingImage,
    MissingImagesError,
    check_image_root,
    check_missing_policy,
    verify_image_bytes,
)
from hub_llava.data.llava_format import RejectedRecord

RELATIVE = "coco/train2017/000000033471.jpg"


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "images" / RELATIVE
    path.parent.mkdir(parents=True)
    PIL.Image.new("RGB", (32, 24), (200, 30, 40)).save(path, "JPEG")
    return tmp_path / "images"


def test_missing_root_names_it(tmp_path):
    with pytest.raises(ImageRootError, match=str(tmp_path / "nope")):
        check_image_root(tmp_path / "nope")
    with pytest.raises(ImageRootError, match="nope"):
        ImageResolver(tmp_path / "nope")


def test_embedded_value_holds_the_bytes_and_the_relative_path(root):
    value = ImageResolver(root)(RELATIVE)
    assert value == {"bytes": (root / RELATIVE).read_bytes(), "path": RELATIVE}


def test_referenced_value_holds_the_absolute_path_only(root):
    value = ImageResolver(root, embed=False)(RELATIVE)
    assert value == {"bytes": None, "path": os.path.join(os.path.abspath(root), RELATIVE)}


@pytest.mark.parametrize("embed", [True, False])
def test_missing_image_is_rejected_with_its_path(root, embed):
    with pytest.raises(MissingImage, match="^missing image: coco/val2017/000000000139.jpg$") as err:
        ImageResolver(root, embed=embed)("coco/val2017/000000000139.jpg")
    assert err.value.path == "coco/val2017/000000000139.jpg"
    assert isinstance(err.value, RejectedRecord)


def test_referenced_path_can_skip_the_stat_for_benchmarks(root):
    value = ImageResolver(root, embed=False, check_exists=False)("coco/val2017/000000000139.jpg")
    assert value["path"].endswith("coco/val2017/000000000139.jpg") and value["bytes"] is None


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda data: b"this is not an image", "corrupt image: not a format PIL can identify"),
        (lambda data: data[: len(data) // 2], "corrupt image: OSError"),
    ],
    ids=["garbage", "truncated-jpeg"],
)
def test_corrupt_image_is_rejected(root, damage, reason):
    path = root / RELATIVE
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(RejectedRecord, match="^" + reason):
        ImageResolver(root)(RELATIVE)
    # Referenced images are only stat'ed by default; verify=True decodes them too.
    assert ImageResolver(root, embed=False)(RELATIVE)["bytes"] is None
    with pytest.raises(RejectedRecord, match="^corrupt image"):
        ImageResolver(root, embed=False, verify=True)(RELATIVE)


def test_verify_returns_the_format(root):
    assert verify_image_bytes((root / RELATIVE).read_bytes()) == "JPEG"


@pytest.mark.parametrize("path", ["../secret.jpg", "coco/../../secret.jpg", "/etc/passwd"])
def test_paths_outside_the_root_are_rejected(root, path):
    (root.parent / "secret.jpg").write_bytes(b"x")
    with pytest.raises(RejectedRecord, match="image path"):
        ImageResolver(root)(path)


def test_missing_images_error_gives_count_and_examples():
    err = MissingImagesError("/data/images", 1234, ["coco/a.jpg", "gqa/images/b.jpg"], what="config mix730k")
    message = str(err)
    assert message.startswith("config mix730k: 1234 record(s) have a missing image under the image root /data/images")
    assert "\n  coco/a.jpg\n  gqa/images/b.jpg\n" in message
    assert "missing_images='skip'" in message


def test_missing_images_error_counts_them_per_folder_and_adds_the_release_note():
    folders = {"ocr_vqa/images": 355, "coco/train2017": 2, **{f"{i:05d}": 1 for i in range(6)}}
    err = MissingImagesError("/data", 363, ["ocr_vqa/images/1.jpg"], folders=folders, note="OCR-VQA lost some.")
    message = str(err)
    assert (
        "\nmissing per folder: ocr_vqa/images 355, coco/train2017 2, 00000 1, 00001 1, 00002 1, ... (3 more folders)\n"
        in message
    )
    assert "\nOCR-VQA lost some.\n" in message and err.folders == folders


def test_missing_policy_is_checked():
    assert check_missing_policy("skip") == "skip"
    with pytest.raises(ValueError, match="'ignore'"):
        check_missing_policy("ignore")


def test_referenced_existence_comes_from_the_folder_listing(root):
    (root / "coco/train2017/000000000999.jpg").mkdir()  # a folder is not an image
    resolver = ImageResolver(root, embed=False)
    assert resolver(RELATIVE)["bytes"] is None
    for missing in ["coco/train2017/000000000999.jpg", "coco/train2017/000000000001.jpg", "nowhere/a.jpg"]:
        with pytest.raises(MissingImage, match=missing):
            resolver(missing)
