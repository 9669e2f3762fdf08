"""`dataset_scripts/llava_v1_5.py` and `LlavaV15`: LLaVA-1.5's mix665k and LLaVA-Instruct-150K, built, staged and
loaded back with `load_dataset("hub_llava/llava_v1_5", ...)` as users call it; bad input named."""

import importlib.util
import json
import os
import subprocess
import sys

import datasets
import PIL.Image
import pytest

from hub_llava.data.builders.llava_release import ReleaseBuildError
from hub_llava.data.builders.llava_v1_5 import LlavaV15
from hub_llava.data.images import ImageRootError, MissingImagesError
from hub_llava.data.schema import BASE_FEATURES

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT = "\nAnswer the question using a single word or phrase."

IMAGES = {  # path under the image root -> colour drawn into it
    "coco/train2017/000000033471.jpg": (200, 20, 20),
    "coco/train2017/000000052846.jpg": (20, 200, 20),
    "gqa/images/2354786.jpg": (20, 20, 200),
    "ocr_vqa/images/140031996.jpg": (200, 200, 20),
    "ocr_vqa/images/1590282132.jpg": (120, 60, 20),
    "textvqa/train_images/0054c91397f2fe05.jpg": (20, 200, 200),
    "vg/VG_100K/10.jpg": (200, 20, 200),
    "vg/VG_100K_2/1.jpg": (120, 120, 120),
}


def turns(*texts):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": text} for i, text in enumerate(texts)]


def mix665k_records():
    return [
        {"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
         "conversations": turns("What are the colors of the bus in the image?\n<image>", "White and red.", "And the back?", "An advertisement.")},
        {"id": "2354786", "image": "gqa/images/2354786.jpg", "conversations": turns("<image>\nIs the sky dark?" + SHORT, "Yes")},
        {"id": "140031996", "image": "ocr_vqa/images/140031996.jpg", "conversations": turns("<image>\nWho wrote this book?", "Nobody")},
        {"id": "1590282132", "image": "ocr_vqa/images/1590282132.jpg", "conversations": turns("<image>\nIs this a novel?", "No")},
        {"id": "0054c91397f2fe05", "image": "textvqa/train_images/0054c91397f2fe05.jpg",
         "conversations": turns("<image>\nProvide a one-sentence caption for the provided image.", "A Dakota camera.")},
        {"id": "10", "image": "vg/VG_100K/10.jpg", "conversations": turns("<image>\nDescribe the region.", "A bench.")},
        {"id": "1", "image": "vg/VG_100K_2/1.jpg", "conversations": turns("<image>\nWhere is the clock?", "[0.53, 0.15, 0.62, 0.72]")},
        {"id": "wgByO4Y_0", "model": "", "conversations": turns("Hi", "Hello! How can I help?")},
        {"id": "i6IyJda_12", "model": "gpt-4", "conversations": turns("Continue", "Sure.")},
    ]  # fmt: skip


def instruct150k_records():
    # llava_instruct_150k.json stores bare COCO train2017 file names; <image> before or after the question.
    return [
        {"id": "000000033471", "image": "000000033471.jpg",
         "conversations": turns("What are the colors of the bus in the image?\n<image>", "White and red.")},
        {"id": "000000052846", "image": "000000052846.jpg",
         "conversations": turns("<image>\nWhere is this picture taken?", "On a city street.")},
    ]  # fmt: skip


BAD_RECORDS = [
    ({"id": "b1", "conversations": []}, "no conversations"),
    ({"id": "b2", "image": "coco/train2017/000000033471.jpg", "conversations": turns("What is it?", "A bus.")},
     "image record without an <image> placeholder in the first user turn"),
    ({"id": "b3", "conversations": turns("Hi", "   ")}, "empty turn 1"),
]  # fmt: skip


def write_release(tmp_path, bad=(), files=("llava_v1_5_mix665k.json", "llava_instruct_150k.json")):
    raw, images = tmp_path / "raw", tmp_path / "images"
    raw.mkdir()
    for relative, colour in IMAGES.items():
        path = images / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.new("RGB", (40, 30), colour).save(path, "JPEG", quality=95)
    releases = {
        "llava_v1_5_mix665k.json": mix665k_records() + list(bad),
        "llava_instruct_150k.json": instruct150k_records(),
    }
    for name in files:
        (raw / name).write_text(json.dumps(releases[name], indent=1), encoding="utf-8")
    return raw, images


def run_script(*args) -> int:
    spec = importlib.util.spec_from_file_location(
        "llava_v1_5_script", os.path.join(REPO_ROOT, "dataset_scripts", "llava_v1_5.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(arg) for arg in args])


def pixel_matches(image, colour):
    return all(abs(a - b) <= 3 for a, b in zip(image.convert("RGB").getpixel((20, 15)), colour))


@pytest.mark.slow
def test_build_stage_and_load_both_configs_like_a_user(tmp_path, monkeypatch, capsys):
    raw, images = write_release(tmp_path)
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out, "--num_proc", 2) == 0
    printed = capsys.readouterr().out
    # rows by source, largest first, then by name
    assert (
        "mix665k: read 9 = written 9 + rejected 0; rows by source: ocr_vqa 2, text 2, vg 2, coco 1, gqa 1, textvqa 1"
        in printed
    )
    assert "llava_instruct_150k: read 2 = written 2 + rejected 0; rows by source: coco 2" in printed
    (tmp_path / "site" / "hub_llava").mkdir(parents=True)
    os.rename(out / "repo", tmp_path / "site" / "hub_llava" / "llava_v1_5")
    monkeypatch.chdir(tmp_path / "site")

    mix = datasets.load_dataset("hub_llava/llava_v1_5", "mix665k", split="train")
    assert mix.features == BASE_FEATURES
    assert mix["source"] == ["coco", "gqa", "ocr_vqa", "ocr_vqa", "textvqa", "vg", "vg", "text", "text"]
    assert mix["id"] == [record["id"] for record in mix665k_records()]
    assert mix[0]["messages"] == [
        {"role": "user", "content": "What are the colors of the bus in the image?"},  # <image> moved in front
        {"role": "assistant", "content": "White and red."},
        {"role": "user", "content": "And the back?"},
        {"role": "assistant", "content": "An advertisement."},
    ]
    for row in mix.select(range(7)):
        assert pixel_matches(row["images"][0], IMAGES[row["image_paths"][0]])
    text = mix.filter(lambda row: row["source"] == "text")
    assert text["images"] == [[], []] and text["image_paths"] == [[], []] and "model" not in mix.column_names
    assert datasets.load_dataset("hub_llava/llava_v1_5", split="train")["id"] == mix["id"]  # mix665k is the default

    instruct = datasets.load_dataset("hub_llava/llava_v1_5", "llava_instruct_150k", split="train")
    assert instruct["id"] == ["000000033471", "000000052846"] and instruct["source"] == ["coco", "coco"]
    assert instruct["image_paths"] == [["coco/train2017/000000033471.jpg"], ["coco/train2017/000000052846.jpg"]]
    assert [row["messages"][0]["content"] for row in instruct] == [
        "What are the colors of the bus in the image?",
        "Where is this picture taken?",
    ]
    assert pixel_matches(instruct[1]["images"][0], IMAGES["coco/train2017/000000052846.jpg"])

    streamed = list(datasets.load_dataset("hub_llava/llava_v1_5", "mix665k", split="train", streaming=True))
    assert [row["id"] for row in streamed] == mix["id"]
    assert pixel_matches(streamed[2]["images"][0], IMAGES["ocr_vqa/images/140031996.jpg"])
    streamed = list(
        datasets.load_dataset("hub_llava/llava_v1_5", "llava_instruct_150k", split="train", streaming=True)
    )
    assert [row["image_paths"] for row in streamed] == instruct["image_paths"]

    card = (tmp_path / "site" / "hub_llava" / "llava_v1_5" / "README.md").read_text()
    assert "license: cc-by-4.0" in card and "2310.03744" in card and "abide by the policy of OpenAI" in card
    assert "| `mix665k` (default) | 9 | 9 | 0 |" in card and "| `llava_instruct_150k` | 2 | 2 | 0 |" in card
    assert "| `mix665k` | ocr_vqa 2, text 2, vg 2, coco 1, gqa 1, textvqa 1 |" in card
    assert "python dataset_scripts/llava_v1_5.py --raw_dir" in card and "--num_proc 2" in card


def test_missing_ocr_vqa_images_are_named_by_default_and_nothing_is_staged(tmp_path, capsys):
    raw, images = write_release(tmp_path, files=["llava_v1_5_mix665k.json"])
    os.remove(images / "ocr_vqa/images/140031996.jpg")
    os.remove(images / "ocr_vqa/images/1590282132.jpg")
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out) == 1
    err = capsys.readouterr().err
    error = err[err.index("error: ") :]  # after the build's progress bar
    assert error.startswith(f"error: config mix665k: 2 record(s) have a missing image under the image root {images}")
    assert "\n  ocr_vqa/images/140031996.jpg\n  ocr_vqa/images/1590282132.jpg\n" in err
    assert "\nmissing per folder: ocr_vqa/images 2\n" in err and "About 355 of LLaVA-1.5's OCR-VQA images" in err
    assert os.listdir(out) == []
    builder = LlavaV15(data_dir=str(raw), image_root=str(images), cache_dir=str(tmp_path / "c"))
    with pytest.raises(MissingImagesError) as caught:
        builder.download_and_prepare()
    assert caught.value.count == 2 and caught.value.folders == {"ocr_vqa/images": 2}


def test_missing_images_skip_rejects_them_with_their_reason(tmp_path, capsys):
    raw, images = write_release(tmp_path, files=["llava_v1_5_mix665k.json"])
    os.remove(images / "ocr_vqa/images/1590282132.jpg")
    out = tmp_path / "out"
    args = ["--raw_dir", raw, "--image_root", images, "--output_dir", out, "--missing_images", "skip"]
    assert run_script(*args) == 0
    assert "mix665k: read 9 = written 8 + rejected 1 (missing image: 1)" in capsys.readouterr().out
    [reject] = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert (reject["config"], reject["file"], reject["id"], reject["reason"]) == (
        "mix665k", "llava_v1_5_mix665k.json", "1590282132", "missing image: ocr_vqa/images/1590282132.jpg"
    )  # fmt: skip
    report = json.loads((out / "build_report.json").read_text())["configs"]["mix665k"]
    assert (report["read"], report["written"], report["rejected"]) == (9, 8, 1)
    card = (out / "repo" / "README.md").read_text()
    assert "9 read =\n8 written + 1 rejected" in card and "| `mix665k` | missing image | 1 |" in card


@pytest.mark.slow
def test_bad_records_are_rejected_with_their_reason(tmp_path, capsys):
    raw, images = write_release(tmp_path, bad=[record for record, _ in BAD_RECORDS], files=["llava_v1_5_mix665k.json"])
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out, "--no_embed_images") == 0
    assert "mix665k: read 12 = written 9 + rejected 3" in capsys.readouterr().out
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in rejects] == [(record["id"], reason) for record, reason in BAD_RECORDS]
    assert rejects[1]["record"] == BAD_RECORDS[1][0]
    card = (out / "repo" / "README.md").read_text()
    assert "12 read =\n9 written + 3 rejected" in card
    assert "| `mix665k` | image record without an &lt;image> placeholder in the first user turn | 1 |" in card


@pytest.mark.parametrize(
    "content, where",
    [
        ('[{"id": "1", "conversations": []}, {"id": "2", "conv', "truncated file: unterminated record at byte 35"),
        ('[{"id": "1", "conversations": []}', "truncated file: the array is never closed at byte 33"),
    ],
    ids=["truncated-record", "unclosed-array"],
)
def test_truncated_file_names_the_file_and_byte(tmp_path, capsys, content, where):
    raw, images = write_release(tmp_path, files=["llava_instruct_150k.json"])
    (raw / "llava_v1_5_mix665k.json").write_text(content)
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out) == 1
    assert f"error: {raw / 'llava_v1_5_mix665k.json'}: {where}" in capsys.readouterr().err
    assert os.listdir(out) == []
    builder = LlavaV15(data_dir=str(raw), image_root=str(images), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ReleaseBuildError, match="llava_v1_5_mix665k.json: truncated file"):
        builder.download_and_prepare()


def test_missing_image_root_is_an_immediate_error(tmp_path, capsys):
    raw, _ = write_release(tmp_path, files=["llava_v1_5_mix665k.json"])
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", tmp_path / "no_images", "--output_dir", out) == 1
    assert (
        capsys.readouterr().err == f"error: image root {tmp_path / 'no_images'} does not exist or is not a directory\n"
    )
    assert not out.exists()
    with pytest.raises(ImageRootError, match="no_images"):
        LlavaV15(
            data_dir=str(raw), image_root=str(tmp_path / "no_images"), cache_dir=str(tmp_path / "c")
        ).download_and_prepare()


def test_a_requested_config_names_its_missing_file(tmp_path, capsys):
    raw, images = write_release(tmp_path, files=["llava_v1_5_mix665k.json"])
    args = [
        "--raw_dir",
        raw,
        "--image_root",
        images,
        "--output_dir",
        tmp_path / "o",
        "--configs",
        "llava_instruct_150k",
    ]
    assert run_script(*args) == 1
    assert f"error: config llava_instruct_150k needs llava_instruct_150k.json in {raw}" in capsys.readouterr().err


@pytest.mark.slow
def test_lvis_mix880k_reads_mix665k_from_the_same_raw_folder(tmp_path, capsys):
    # One raw folder holds LVIS-Instruct4V's files and LLaVA-1.5's: mix880k's tail is exactly this repo's mix665k.
    raw, images = write_release(tmp_path, files=["llava_v1_5_mix665k.json"])
    lvis = [
        {
            "id": "000000052846",
            "image": "coco/train2017/000000052846.jpg",
            "conversations": turns("<image>\nWhat is this?", "A street."),
        }
    ]
    (raw / "lvis_instruct4v_220k.json").write_text(json.dumps(lvis))
    common = ["--raw_dir", raw, "--image_root", images, "--no_embed_images"]
    assert run_script(*common, "--output_dir", tmp_path / "llava") == 0
    spec = importlib.util.spec_from_file_location(
        "lvis", os.path.join(REPO_ROOT, "dataset_scripts", "lvis_instruct4v.py")
    )
    lvis_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lvis_script)
    assert (
        lvis_script.main([str(a) for a in [*common, "--output_dir", tmp_path / "lvis", "--configs", "mix880k"]]) == 0
    )
    mix665k = datasets.load_dataset(str(tmp_path / "llava" / "repo"), "mix665k", split="train")
    mix880k = datasets.load_dataset(str(tmp_path / "lvis" / "repo"), "mix880k", split="train")
    columns = ["id", "messages", "image_paths", "source"]
    assert (
        mix880k.select(range(1, len(mix880k))).select_columns(columns).to_list()
        == mix665k.select_columns(columns).to_list()
    )


@pytest.mark.slow
def test_demo_command_builds_the_bundled_samples(tmp_path):
    out = tmp_path / "llava_v1_5"
    script = os.path.join("dataset_scripts", "llava_v1_5.py")
    args = ["--raw_dir", "samples/lvis_instruct4v", "--image_root", "samples/images", "--output_dir", str(out)]
    result = subprocess.run([sys.executable, script, *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert "mix665k: read 9 = written 8 + rejected 1 (empty turn: 1)" in result.stdout
    assert "llava_instruct_150k: read 2 = written 2 + rejected 0; rows by source: coco 2" in result.stdout
    assert sorted(os.listdir(out / "repo")) == ["README.md", "llava_instruct_150k", "mix665k"]


def test_push_dry_run_checks_the_staged_repo(tmp_path, capsys):
    raw, images = write_release(tmp_path)
    args = ["--raw_dir", raw, "--image_root", images, "--output_dir", tmp_path / "out", "--no_embed_images"]
    assert run_script(*args, "--push_to_hub", "--dry_run") == 0
    assert "dry run: 3 files checked for dataset repo hub_llava/llava_v1_5, nothing pushed" in capsys.readouterr().out
