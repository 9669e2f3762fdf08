"""`dataset_scripts/llava_pretrain.py` and `LlavaPretrain`: LCS-558K (+ its meta file) built, staged and loaded back
with `load_dataset("hub_llava/llava_pretrain", "lcs558k")` as users call it; LLaVA's stage-1 rules and bad input."""

import importlib.util
import json
import os
import subprocess
import sys

import datasets
import PIL.Image
import pytest

from hub_llava.data.builders.llava_pretrain import LlavaPretrain, MetaIndex, write_meta_index
from hub_llava.data.builders.llava_release import ReleaseBuildError
from hub_llava.data.images import ImageRootError
from hub_llava.data.schema import BASE_FEATURES, features_with

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN, META = "blip_laion_cc_sbu_558k.json", "blip_laion_cc_sbu_558k_meta.json"
COLOURS = {"004539375": (200, 20, 20), "001819539": (20, 200, 20), "000000012": (20, 20, 200)}


def image_path(image_id):
    return f"{image_id[:5]}/{image_id}.jpg"


def record(image_id, instruction, caption, **extra):
    turns = [{"from": "human", "value": instruction}, {"from": "gpt", "value": caption}]
    return {"id": image_id, "image": image_path(image_id), "conversations": turns, **extra}


def good_records():
    return [
        record("004539375", "Render a clear and concise summary of the photo.\n<image>", "a red square"),
        record("001819539", "<image>\nDescribe the image concisely.", "a green square"),
        record("000000012", "<image>\nWhat is in the photo?", "a blue square"),
    ]


TWO_ROUNDS = record("x", "<image>\nq", "a")["conversations"] * 2
BAD_RECORDS = [
    (
        {**record("007700001", "<image>\nDescribe.", "red"), "conversations": TWO_ROUNDS},
        "more than one round: 4 turns, where a stage-1 record is one instruction and one caption (LLaVA's preprocess_plain)",
    ),
    (record("007700002", "Describe the image concisely.", "a red door"), "no <image> placeholder in the instruction: a stage-1 record captions an image (LLaVA's preprocess_plain)"),
    ({"id": "007700003", "conversations": record("x", "<image>\nq", "a")["conversations"]}, "no image: a stage-1 record captions an image (LLaVA's preprocess_plain)"),
]  # fmt: skip


def write_release(tmp_path, bad=(), meta=True):
    raw = tmp_path / "LLaVA-Pretrain"
    images = raw / "images"
    for image_id, colour in COLOURS.items():
        path = images / image_path(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.new("RGB", (40, 30), colour).save(path, "JPEG", quality=95)
    records = good_records() + [r for r, _ in bad]
    (raw / MAIN).write_text(json.dumps(records, indent=1), encoding="utf-8")
    if meta:  # the meta file lists every record but 000000012, in another order
        entries = [
            {"id": r["id"], "image": r.get("image"), "url": f"https://example.com/{r['id']}.jpg", "blip_caption": "c" + r["id"]}
            for r in reversed(records) if r["id"] != "000000012"
        ]  # fmt: skip
        (raw / META).write_text(json.dumps(entries), encoding="utf-8")
    return raw, images


def run_script(*args) -> int:
    spec = importlib.util.spec_from_file_location(
        "llava_pretrain_script", os.path.join(REPO_ROOT, "dataset_scripts", "llava_pretrain.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(arg) for arg in args])


@pytest.mark.slow
def test_build_stage_and_load_like_a_user(tmp_path, monkeypatch, capsys):
    raw, images = write_release(tmp_path, bad=BAD_RECORDS)
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out, "--num_proc", 2) == 0
    assert (
        "lcs558k: read 6 = written 3 + rejected 3 (more than one round: 1, no <image> placeholder in the instruction: "
        f"1, no image: 1); {META}: 5 entries, 1 row(s) without one" in capsys.readouterr().out
    )
    (tmp_path / "site" / "hub_llava").mkdir(parents=True)
    os.rename(out / "repo", tmp_path / "site" / "hub_llava" / "llava_pretrain")
    monkeypatch.chdir(tmp_path / "site")

    ds = datasets.load_dataset("hub_llava/llava_pretrain", "lcs558k", split="train")
    assert ds.features == features_with({"url": datasets.Value("string"), "blip_caption": datasets.Value("string")})
    assert ds["id"] == ["004539375", "001819539", "000000012"]  # leading zeros kept
    assert ds["image_paths"] == [["00453/004539375.jpg"], ["00181/001819539.jpg"], ["00000/000000012.jpg"]]
    assert ds["source"] == ["lcs558k"] * 3
    assert ds[0]["messages"] == [
        {"role": "user", "content": "Render a clear and concise summary of the photo."},  # <image> after: moved out
        {"role": "assistant", "content": "a red square"},
    ]
    assert ds[1]["messages"][0]["content"] == "Describe the image concisely."  # <image> before
    assert ds["url"] == ["https://example.com/004539375.jpg", "https://example.com/001819539.jpg", None]
    assert ds["blip_caption"] == ["c004539375", "c001819539", None]
    for row in ds:
        pixel = row["images"][0].convert("RGB").getpixel((20, 15))
        assert all(abs(a - b) <= 3 for a, b in zip(pixel, COLOURS[row["id"]]))
    assert datasets.load_dataset("hub_llava/llava_pretrain", split="train")["id"] == ds["id"]  # the default config
    streamed = list(datasets.load_dataset("hub_llava/llava_pretrain", "lcs558k", split="train", streaming=True))
    assert [row["id"] for row in streamed] == ds["id"] and streamed[2]["url"] is None
    assert streamed[1]["images"][0].size == (40, 30)

    card = (tmp_path / "site" / "hub_llava" / "llava_pretrain" / "README.md").read_text()
    assert "license: other" in card and "license_name: laion-cc-sbu-blip-terms" in card
    assert "| `lcs558k` (default) | 3 | 6 | 3 |" in card and "6 read =\n3 written + 3 rejected" in card
    assert "| `lcs558k` | more than one round | 1 |" in card and "| `lcs558k` | no image | 1 |" in card
    assert "are null): 1 of 3." in card and "2310.03744" in card


def test_rejects_follow_preprocess_plain_and_carry_the_record(tmp_path, capsys):
    raw, images = write_release(tmp_path, bad=BAD_RECORDS, meta=False)
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out, "--no_embed_images") == 0
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["config"], r["file"], r["id"], r["reason"]) for r in rejects] == [
        ("lcs558k", MAIN, bad["id"], reason) for bad, reason in BAD_RECORDS
    ]
    assert rejects[0]["record"] == BAD_RECORDS[0][0]
    report = json.loads((out / "build_report.json").read_text())["configs"]["lcs558k"]
    assert report["read"] == report["written"] + report["rejected"] == 6
    assert report["reasons"] == {
        "more than one round": 1,
        "no <image> placeholder in the instruction": 1,
        "no image": 1,
    }


def test_without_the_meta_file_there_are_no_meta_columns(tmp_path):
    raw, images = write_release(tmp_path, meta=False)
    builder = LlavaPretrain(
        data_dir=str(raw), image_root=str(images), embed_images=False, cache_dir=str(tmp_path / "c")
    )
    builder.download_and_prepare()
    assert builder.as_dataset("train").features == BASE_FEATURES and builder.meta_rows() is None


@pytest.mark.parametrize("broken", [MAIN, META])
def test_a_truncated_release_or_meta_file_names_the_file_and_byte(tmp_path, capsys, broken):
    raw, images = write_release(tmp_path)
    text = (raw / broken).read_text()
    (raw / broken).write_text(text[: len(text) - 40])
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out) == 1
    err = capsys.readouterr().err
    error = err[err.index("error: ") :]  # after the build's progress bar
    assert error.startswith(f"error: {raw / broken}: truncated file: unterminated record at byte ") and "(line " in err
    assert error.count("\n") == 1 and "Traceback" not in err and os.listdir(out) == []


def test_missing_image_root_is_an_immediate_error(tmp_path, capsys):
    raw, _ = write_release(tmp_path)
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", raw / "imgs", "--output_dir", out) == 1
    assert capsys.readouterr().err == f"error: image root {raw / 'imgs'} does not exist or is not a directory\n"
    assert not out.exists()
    with pytest.raises(ImageRootError, match="imgs"):
        LlavaPretrain(
            data_dir=str(raw), image_root=str(raw / "imgs"), cache_dir=str(tmp_path / "c")
        ).download_and_prepare()


@pytest.mark.slow
def test_num_proc_and_byte_range_shards_give_the_same_rows(tmp_path):
    raw, images = write_release(tmp_path, bad=BAD_RECORDS)
    tables = []
    for num_proc in (1, 2):
        builder = LlavaPretrain(
            data_dir=str(raw), image_root=str(images), cache_dir=str(tmp_path / f"c{num_proc}"), shard_bytes=300,
            batch_size=2,
        )  # fmt: skip
        builder.download_and_prepare(num_proc=num_proc)
        tables.append(builder.as_dataset("train").data.to_pylist())
    assert len(tables[0]) == 3 and tables[0] == tables[1]
    assert [row["url"] for row in tables[1]] == [
        "https://example.com/004539375.jpg",
        "https://example.com/001819539.jpg",
        None,
    ]


def test_meta_index_looks_ids_up_exactly(tmp_path):
    meta = tmp_path / "meta.json"
    entries = [
        {"id": "000000012", "url": "u12"},
        {"id": "12", "url": "u-short"},
        {"id": 7, "url": 8},
        {"id": "é1", "url": "ue"},
    ]
    meta.write_text(json.dumps(entries + [{"url": "no id"}]))
    assert (
        write_meta_index(str(meta), str(tmp_path / "index.arrow"), ["url"]) == 4
    )  # the entry without an id is skipped
    index = MetaIndex(str(tmp_path / "index.arrow"))
    # Leading zeros matter; a query longer than every id (truncated by fixed-width bytes) must not match a prefix.
    queries = ["12", "000000012", "0000000123", "7", "é1", "unknown", "000000012"]
    assert index.columns(queries)["url"].to_pylist() == ["u-short", "u12", None, "8", "ue", None, "u12"]


def test_meta_file_with_broken_json_names_it(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text('[{"id": "1", "url": "a"} {"id": "2"}]')
    with pytest.raises(ReleaseBuildError, match=r"meta.json: invalid JSON \(expected ',' or ']' after a record"):
        write_meta_index(str(meta), str(tmp_path / "index.arrow"), ["url"])


@pytest.mark.slow
def test_demo_command_builds_the_bundled_sample(tmp_path):
    out = tmp_path / "llava_pretrain"
    script = os.path.join("dataset_scripts", "llava_pretrain.py")
    args = [
        "--raw_dir",
        "samples/llava_pretrain",
        "--image_root",
        "samples/llava_pretrain/images",
        "--output_dir",
        str(out),
    ]
    result = subprocess.run([sys.executable, script, *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert (
        "lcs558k: read 10 = written 8 + rejected 2 (more than one round: 1, no <image> placeholder in the "
        f"instruction: 1); {META}: 9 entries, 1 row(s) without one" in result.stdout
    )
    ds = datasets.load_dataset(str(out / "repo"), "lcs558k", split="train")
    assert ds[0]["id"] == "004539375" and ds[0]["image_paths"] == ["00453/004539375.jpg"]
    assert ds[0]["messages"][0]["content"] == "Render a clear and concise summary of the photo."


def test_push_dry_run_checks_the_staged_repo(tmp_path, capsys):
    raw, images = write_release(tmp_path)
    args = ["--raw_dir", raw, "--image_root", images, "--output_dir", tmp_path / "out", "--no_embed_images"]
    assert run_script(*args, "--push_to_hub", "--dry_run") == 0
    assert (
        "dry run: 2 files checked for dataset repo hub_llava/llava_pretrain, nothing pushed" in capsys.readouterr().out
    )
