import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import datasets
import PIL.Image
import psutil
import pytest
from build_processes import kill, wait_gone, writer_once_opened

from hub_llava.data.builders.llava_release import ReleaseBuildError
from hub_llava.data.builders.lvis_instruct4v import LvisInstruct4V
from hub_llava.data.images import ImageRootError, MissingImagesError
from hub_llava.data.reader import shard_ranges
from hub_llava.data.schema import BASE_FEATURES

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT = "\nAnswer the question using a single word or phrase."

# Image path -> colour drawn into it (decoded pixels are checked against these).
IMAGES = {
    "coco/train2017/000000033471.jpg": (200, 20, 20),
    "coco/val2017/000000000139.jpg": (20, 200, 20),
    "gqa/images/2354786.jpg": (20, 20, 200),
    "ocr_vqa/images/140031996.jpg": (200, 200, 20),
    "textvqa/train_images/0054c91397f2fe05.jpg": (20, 200, 200),
    "vg/VG_100K/10.jpg": (200, 20, 200),
    "vg/VG_100K_2/1.jpg": (120, 120, 120),
}


def turns(*texts):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": text} for i, text in enumerate(texts)]


def lvis_records():
    # Two records per COCO image (a conversation and a detailed description), train2017 and val2017 paths.
    return [
        {"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
         "conversations": turns("<image>\nWhat is the bus doing?", "It waits at a stop.", "Colour?", "Red.")},
        {"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
         "conversations": turns("Describe the image.\n<image>", "A red bus at a stop.")},
        {"id": "000000000139", "image": "coco/val2017/000000000139.jpg",
         "conversations": turns("<image>\nWhat room is this?", "A living room.")},
        {"id": "000000000139", "image": "coco/val2017/000000000139.jpg",
         "conversations": turns("<image>\nExplain the image in detail.", "A living room with a table and a couch.")},
    ]  # fmt: skip


def academic_records():
    return [
        {"id": "2354786", "image": "gqa/images/2354786.jpg", "conversations": turns("<image>\nIs the sky dark?" + SHORT, "Yes")},
        {"id": "140031996", "image": "ocr_vqa/images/140031996.jpg", "conversations": turns("<image>\nWho wrote this book?", "Nobody")},
        {"id": "0054c91397f2fe05", "image": "textvqa/train_images/0054c91397f2fe05.jpg",
         "conversations": turns("<image>\nWhat brand?" + SHORT, "Dakota")},
        {"id": "10", "image": "vg/VG_100K/10.jpg", "conversations": turns("<image>\nDescribe the region.", "A bench.")},
        {"id": "1", "image": "vg/VG_100K_2/1.jpg", "conversations": turns("<image>\nWhere is the clock?", "[0.53, 0.15, 0.62, 0.72]")},
        {"id": "wgByO4Y_0", "model": "", "conversations": turns("Hi", "Hello! How can I help?")},
        {"id": 42, "conversations": [{"from": "gpt", "value": "A first turn not from the human is dropped."}] + turns("Q?", "A.")},
    ]  # fmt: skip


BAD_RECORDS = [
    ({"id": "b1", "conversations": []}, "no conversations"),
    ({"id": "b2", "conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]},
     "roles do not alternate: turn 1 is from 'human', expected 'gpt'"),
    ({"id": "b3", "conversations": turns("Hi", "   ")}, "empty turn 1"),
    ({"id": "b4", "conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]},
     "unknown role 'bot' in turn 1"),
]  # fmt: skip


def write_images(root, corrupt=()):
    for relative, color in IMAGES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.new("RGB", (40, 30), color).save(path, "JPEG", quality=95)
        if relative in corrupt:
            path.write_bytes(path.read_bytes()[:100])


def write_release(tmp_path, bad=(), corrupt=(), files=None):
    raw, images = tmp_path / "raw", tmp_path / "images"
    raw.mkdir()
    write_images(images, corrupt)
    lvis, academic = lvis_records(), academic_records()
    releases = {
        "lvis_instruct4v_220k.json": lvis,
        "lvis_instruct4v_mix730k.json": lvis + academic + list(bad),
        "lvis_instruct4v_nodetail_mix619k.json": lvis[::2] + academic,
        "llava_v1_5_mix665k.json": academic,
    }
    for name in files or releases:
        (raw / name).write_text(json.dumps(releases[name], indent=1), encoding="utf-8")
    return raw, images


def load_script():
    spec = importlib.util.spec_from_file_location(
        "lvis_script", os.path.join(REPO_ROOT, "dataset_scripts", "lvis_instruct4v.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args) -> int:
    return load_script().main([str(arg) for arg in args])


def publish_locally(out, site):
    """Places the staged repo where `load_dataset("hub_llava/lvis_instruct4v")` finds it from `site`."""
    (site / "hub_llava").mkdir(parents=True)
    os.rename(out / "repo", site / "hub_llava" / "lvis_instruct4v")


@pytest.mark.slow
def test_build_stage_and_load_every_config_like_a_user(tmp_path, monkeypatch, capsys):
    raw, images = write_release(tmp_path)
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out, "--num_proc", 2) == 0
    printed = capsys.readouterr().out
    assert "lvis_instruct4v: read 4 = written 4 + rejected 0" in printed
    assert "mix730k: read 11 = written 11 + rejected 0" in printed
    assert "nodetail_mix619k: read 9 = written 9 + rejected 0" in printed
    assert "mix880k: read 11 = written 11 + rejected 0" in printed
    publish_locally(out, tmp_path / "site")
    monkeypatch.chdir(tmp_path / "site")

    lvis = datasets.load_dataset("hub_llava/lvis_instruct4v", split="train")  # default config
    assert lvis.features == BASE_FEATURES
    assert lvis["id"] == ["000000033471", "000000033471", "000000000139", "000000000139"]
    assert lvis["image_paths"] == [
        [p] for p in [*["coco/train2017/000000033471.jpg"] * 2, *["coco/val2017/000000000139.jpg"] * 2]
    ]
    assert set(lvis["source"]) == {"lvis_instruct4v"}
    assert lvis[1]["messages"] == [
        {"role": "user", "content": "Describe the image."},
        {"role": "assistant", "content": "A red bus at a stop."},
    ]
    assert lvis[0]["messages"][2:] == [
        {"role": "user", "content": "Colour?"},
        {"role": "assistant", "content": "Red."},
    ]
    for row in lvis:
        pixel = row["images"][0].convert("RGB").getpixel((20, 15))
        assert all(abs(a - b) <= 3 for a, b in zip(pixel, IMAGES[row["image_paths"][0]]))

    mix = datasets.load_dataset("hub_llava/lvis_instruct4v", "mix730k", split="train")
    assert mix["source"] == ["coco"] * 2 + ["coco"] * 2 + ["gqa", "ocr_vqa", "textvqa", "vg", "vg", "text", "text"]
    text_only = mix.filter(lambda row: row["source"] == "text")
    assert text_only["id"] == ["wgByO4Y_0", "42"]  # a numeric id becomes its decimal text
    assert text_only["images"] == [[], []] and text_only["image_paths"] == [[], []]
    assert text_only[1]["messages"] == [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    gqa = mix[4]
    assert gqa["messages"][0]["content"] == "Is the sky dark?" + SHORT
    assert gqa["images"][0].size == (40, 30)

    mix880k = datasets.load_dataset("hub_llava/lvis_instruct4v", "mix880k", split="train")
    assert mix880k["source"][:4] == ["lvis_instruct4v"] * 4 and mix880k["source"][4] == "gqa"
    nodetail = datasets.load_dataset("hub_llava/lvis_instruct4v", "nodetail_mix619k", split="train", streaming=True)
    rows = list(nodetail)
    assert [row["id"] for row in rows[:2]] == ["000000033471", "000000000139"] and len(rows) == 9
    assert rows[1]["images"][0].size == (40, 30) and rows[1]["image_paths"] == ["coco/val2017/000000000139.jpg"]

    card = (tmp_path / "site" / "hub_llava" / "lvis_instruct4v" / "README.md").read_text()
    assert "| `mix880k` | 11 | 11 | 0 |" in card and "MIT" in card and "2311.07574" in card
    assert "--num_proc 2" in card


@pytest.mark.slow
def test_bad_records_are_rejected_with_their_reason(tmp_path, monkeypatch, capsys):
    raw, images = write_release(
        tmp_path, bad=[record for record, _ in BAD_RECORDS], files=["lvis_instruct4v_mix730k.json"]
    )
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out) == 0
    assert "mix730k: read 15 = written 11 + rejected 4" in capsys.readouterr().out
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["config"], r["file"], r["id"], r["reason"]) for r in rejects] == [
        ("mix730k", "lvis_instruct4v_mix730k.json", record["id"], reason) for record, reason in BAD_RECORDS
    ]
    assert rejects[1]["record"] == BAD_RECORDS[1][0]  # the whole record, to fix and re-feed
    report = json.loads((out / "build_report.json").read_text())["configs"]["mix730k"]
    assert report["read"] == report["written"] + report["rejected"] == 15
    assert report["reasons"] == {
        "no conversations": 1, "roles do not alternate": 1, "empty turn": 1, "unknown role 'bot' in turn": 1
    }  # fmt: skip
    assert "15 read =\n11 written + 4 rejected" in (out / "repo" / "README.md").read_text()


@pytest.mark.parametrize(
    "content, where",
    [
        ('[{"id": "1", "conversations": []}, {"id": "2", "conv', "truncated file: unterminated record at byte 35"),
        (
            '[{"id": "1", "conversations": []}\n {"id": "2"}]',
            "invalid JSON (expected ',' or ']' after a record, got '{') at byte 35 (line 2)",
        ),
        ('[{"id": "1", "conversations": [}]', "invalid JSON"),
    ],
    ids=["truncated", "missing-comma", "invalid"],
)
def test_broken_json_names_the_file_and_position_and_stages_nothing(tmp_path, capsys, content, where):
    raw, images = write_release(tmp_path, files=["lvis_instruct4v_220k.json"])
    (raw / "lvis_instruct4v_mix730k.json").write_text(content)
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out) == 1
    err = capsys.readouterr().err
    assert f"{raw / 'lvis_instruct4v_mix730k.json'}: {where}" in err
    assert os.listdir(out) == []  # no repo, no report, no temporary build folder

    builder = LvisInstruct4V(
        config_name="mix730k", data_dir=str(raw), image_root=str(images), cache_dir=str(tmp_path / "c")
    )
    with pytest.raises(ReleaseBuildError, match="lvis_instruct4v_mix730k.json: "):
        builder.download_and_prepare()


def test_missing_images_fail_after_the_pass_with_count_and_examples(tmp_path, capsys):
    raw, images = write_release(tmp_path, files=["lvis_instruct4v_mix730k.json"])
    os.remove(images / "coco/train2017/000000033471.jpg")
    os.remove(images / "gqa/images/2354786.jpg")
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out) == 1
    err = capsys.readouterr().err
    assert f"config mix730k: 3 record(s) have a missing image under the image root {images}" in err
    assert "\n  coco/train2017/000000033471.jpg\n  gqa/images/2354786.jpg\n" in err
    assert os.listdir(out) == []
    cache = tmp_path / "cache"
    builder = LvisInstruct4V(config_name="mix730k", data_dir=str(raw), image_root=str(images), cache_dir=str(cache))
    with pytest.raises(MissingImagesError) as caught:
        builder.download_and_prepare(num_proc=2)
    assert caught.value.count == 3
    assert not any(name.endswith(("dataset_info.json", ".arrow")) for _, _, files in os.walk(cache) for name in files)


def test_missing_images_can_be_skipped_into_the_rejects(tmp_path, capsys):
    raw, images = write_release(tmp_path, files=["lvis_instruct4v_mix730k.json"])
    os.remove(images / "vg/VG_100K_2/1.jpg")
    out = tmp_path / "out"
    args = ["--raw_dir", raw, "--image_root", images, "--output_dir", out, "--missing_images", "skip"]
    assert run_script(*args, "--no_embed_images") == 0
    assert "mix730k: read 11 = written 10 + rejected 1 (missing image: 1)" in capsys.readouterr().out
    [reject] = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert (reject["id"], reject["reason"]) == ("1", "missing image: vg/VG_100K_2/1.jpg")


def test_a_config_with_every_record_rejected_is_one_clear_error(tmp_path, capsys):
    """Nothing to stage: one error line naming the config, the reasons and the first records (their rejects file is
    temporary), and a previous build in the output folder is left as it was (it used to end in datasets' traceback
    "Instruction 'train' corresponds to no data!")."""
    raw, images = write_release(tmp_path, files=["lvis_instruct4v_220k.json"])  # every record has an image
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out, "--no_embed_images") == 0
    before = sorted(os.listdir(out))
    shutil.rmtree(images / "coco")
    (images / "coco").mkdir()  # the root and a folder still exist: every record's image is missing
    rejected = run_script("--raw_dir", raw, "--image_root", images, "--output_dir", out, "--missing_images", "skip")
    err = capsys.readouterr().err
    assert rejected == 1 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert (
        line.startswith("error: config lvis_instruct4v: none of its ")
        and "records could be converted (missing image: " in line
    )
    assert "first: '" in line and "nothing to stage; the output folder was left as it was" in line
    assert sorted(os.listdir(out)) == before


def test_corrupt_image_is_rejected(tmp_path):
    raw, images = write_release(
        tmp_path, corrupt=["textvqa/train_images/0054c91397f2fe05.jpg"], files=["lvis_instruct4v_mix730k.json"]
    )
    builder = LvisInstruct4V(
        config_name="mix730k", data_dir=str(raw), image_root=str(images), cache_dir=str(tmp_path / "c")
    )
    builder.download_and_prepare()
    counts = builder.counts()
    assert (counts.read, counts.written, dict(counts.rejected)) == (11, 10, {"corrupt image": 1})
    [reject] = [json.loads(line) for line in open(builder.rejects_path())]
    assert reject["id"] == "0054c91397f2fe05" and reject["reason"].startswith("corrupt image: ")
    assert "0054c91397f2fe05" not in builder.as_dataset("train")["id"]


def test_missing_image_root_is_an_immediate_error(tmp_path, capsys):
    raw, _ = write_release(tmp_path, files=["lvis_instruct4v_220k.json"])
    out = tmp_path / "out"
    assert run_script("--raw_dir", raw, "--image_root", tmp_path / "no_images", "--output_dir", out) == 1
    assert f"image root {tmp_path / 'no_images'} does not exist" in capsys.readouterr().err
    assert not out.exists()
    builder = LvisInstruct4V(data_dir=str(raw), image_root=str(tmp_path / "no_images"), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ImageRootError, match="no_images"):
        builder.download_and_prepare()


def test_no_release_file(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "raw").mkdir()
    assert (
        run_script("--raw_dir", tmp_path / "raw", "--image_root", tmp_path / "images", "--output_dir", tmp_path / "o")
        == 1
    )
    assert "no release file in" in capsys.readouterr().err
    assert run_script(
        "--raw_dir", tmp_path / "raw", "--image_root", tmp_path / "images", "--output_dir", tmp_path / "o",
        "--configs", "mix880k",
    ) == 1  # fmt: skip
    assert "config mix880k needs lvis_instruct4v_220k.json, llava_v1_5_mix665k.json" in capsys.readouterr().err


@pytest.mark.slow
def test_num_proc_gives_the_same_rows(tmp_path):
    raw, images = write_release(
        tmp_path, bad=[record for record, _ in BAD_RECORDS], files=["lvis_instruct4v_mix730k.json"]
    )
    path = raw / "lvis_instruct4v_mix730k.json"
    assert len(shard_ranges(path, -(-path.stat().st_size // 700))) >= 4  # several ranges for the 2 processes
    tables, rejects = [], []
    for num_proc in (1, 2):
        builder = LvisInstruct4V(
            config_name="mix730k", data_dir=str(raw), image_root=str(images), cache_dir=str(tmp_path / f"c{num_proc}"),
            shard_bytes=700, batch_size=3,
        )  # fmt: skip
        builder.download_and_prepare(num_proc=num_proc)
        tables.append(builder.as_dataset("train").data.to_pylist())
        rejects.append(open(builder.rejects_path()).read())
    assert len(tables[0]) == 11 and tables[0] == tables[1]
    assert rejects[0] == rejects[1] and rejects[0].count("\n") == 4


def test_referenced_images_point_at_the_files(tmp_path):
    raw, images = write_release(tmp_path, files=["lvis_instruct4v_220k.json"])
    builder = LvisInstruct4V(
        data_dir=str(raw), image_root=str(images), embed_images=False, cache_dir=str(tmp_path / "c")
    )
    builder.download_and_prepare()
    ds = builder.as_dataset("train").cast_column("images", datasets.List(datasets.Image(decode=False)))
    assert ds[2]["images"] == [{"bytes": None, "path": str(images / "coco/val2017/000000000139.jpg")}]


@pytest.mark.slow
def test_demo_command_builds_the_bundled_samples(tmp_path):
    out = tmp_path / "lvis_instruct4v"
    script = os.path.join("dataset_scripts", "lvis_instruct4v.py")
    args = ["--raw_dir", "samples/lvis_instruct4v", "--image_root", "samples/images", "--output_dir", str(out)]
    result = subprocess.run([sys.executable, script, *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert "mix880k: read 13 = written 12 + rejected 1 (empty turn: 1)" in result.stdout
    assert sorted(os.listdir(out / "repo")) == [
        "README.md",
        "lvis_instruct4v",
        "mix730k",
        "mix880k",
        "nodetail_mix619k",
    ]


@pytest.mark.parametrize(
    "hub_id", ["hub_llava/lvis_instruct4v", "hub_llava/svit", "hub_llava/llava_v1_5", "hub_llava/llava_pretrain"]
)
def test_no_folder_shadows_a_hub_id(hub_id):
    # `load_dataset("org/name")` reads a local folder of that relative path instead of the Hub, with no fallback.
    assert not os.path.exists(os.path.join(REPO_ROOT, hub_id))


def test_push_dry_run_checks_the_staged_repo(tmp_path, capsys):
    raw, images = write_release(tmp_path, files=["lvis_instruct4v_220k.json", "lvis_instruct4v_mix730k.json"])
    args = ["--raw_dir", raw, "--image_root", images, "--output_dir", tmp_path / "out", "--no_embed_images"]
    assert run_script(*args, "--push_to_hub", "--repo_id", "hub_llava/lvis_instruct4v", "--dry_run") == 0
    # The Hub checks (card YAML, every `configs:` pattern matching a staged parquet file) pass on what we staged.
    assert (
        "dry run: 3 files checked for dataset repo hub_llava/lvis_instruct4v, nothing pushed"
        in capsys.readouterr().out
    )


def test_push_with_an_invalid_repo_id_is_a_clear_error(tmp_path, capsys):
    raw, images = write_release(tmp_path, files=["lvis_instruct4v_220k.json"])
    args = ["--raw_dir", raw, "--image_root", images, "--output_dir", tmp_path / "out", "--no_embed_images"]
    assert run_script(*args, "--push_to_hub", "--repo_id", "not a repo id", "--dry_run") == 1
    err = capsys.readouterr().err  # the build's progress bars, then the error
    assert err.endswith("\n") and err.splitlines()[-1].startswith("error: ") and "not a repo id" in err
    assert "Traceback" not in err
    assert (tmp_path / "out" / "repo" / "README.md").is_file()  # the staged repo is kept for the next try


def _stall_at_image(images, relative):
    """Replaces an image by a FIFO: the build stops where a worker opens it (`build_processes`)."""
    path = images / relative
    data = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    return path, data


def _put_back(fifo, data) -> None:
    """The real image in place of the FIFO, for later readers (staging, the next build)."""
    fifo.unlink()
    fifo.write_bytes(data)


@pytest.mark.slow
def test_a_killed_build_leaves_no_process_and_the_next_build_removes_its_folder(tmp_path, capsys):
    raw, images = write_release(tmp_path, files=["lvis_instruct4v_220k.json", "llava_v1_5_mix665k.json"])
    fifo, data = _stall_at_image(images, "vg/VG_100K/10.jpg")  # in mix665k: the second file, the second worker
    out = tmp_path / "out"
    args = ["--raw_dir", raw, "--image_root", images, "--output_dir", out, "--configs", "mix880k"]
    script = os.path.join(REPO_ROOT, "dataset_scripts", "lvis_instruct4v.py")
    build = subprocess.Popen([sys.executable, script, *args, "--num_proc", "2"], stderr=subprocess.DEVNULL)
    children = []
    try:
        writer = writer_once_opened(fifo, build)  # a worker is reading that image: provably mid-build
        children = psutil.Process(build.pid).children(recursive=True)
        assert len(children) == 3  # `datasets`' two pool workers and the manager of its progress queue
        [folder] = os.listdir(out)
        assert folder.startswith(".build-")
        build.kill()  # SIGKILL: nothing of ours runs after it
        build.wait()
        assert wait_gone(children, timeout=5) == []
    finally:
        kill(children)
    os.close(writer)
    _put_back(fifo, data)
    assert os.listdir(out) == [folder]  # left behind, as any killed run leaves it

    assert run_script(*args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(
        rf"removed 1 temporary folder\(s\) that stopped runs left in {out}: {folder} \(.+B\)", lines[0]
    )
    assert lines[1] == "mix880k: read 11 = written 11 + rejected 0"
    assert sorted(os.listdir(out)) == ["build_report.json", "rejects.jsonl", "repo"]


def _progress_lines(stream, lines: list[str]) -> None:
    # tqdm redraws a bar with "\r": each redraw is a line here.
    buffer = ""
    for chunk in iter(lambda: stream.read1(4096).decode("utf-8", errors="replace"), ""):
        *done, buffer = re.split(r"[\r\n]", buffer + chunk)
        lines += [line for line in done if line.strip()]


PROGRESS = re.compile(r"^mix880k \(train\): .*read ([\d,]+) = written ([\d,]+) \+ rejected ([\d,]+), [\d,]+ records/s")


def _counts(lines: list[str]) -> list[tuple[int, int, int]]:
    """(read, written, rejected) of each progress line."""
    matches = filter(None, map(PROGRESS.match, lines))
    return [tuple(int(n.replace(",", "")) for n in match.groups()) for match in matches]


@pytest.mark.slow
@pytest.mark.parametrize("num_proc", [1, 2])
def test_a_long_build_shows_its_progress_and_its_counts_add_up(tmp_path, num_proc):
    raw, images = write_release(tmp_path, files=["llava_v1_5_mix665k.json"])
    first = lvis_records() + [record for record, _ in BAD_RECORDS]  # read 8 = written 4 + rejected 4
    (raw / "lvis_instruct4v_220k.json").write_text(json.dumps(first), encoding="utf-8")
    fifo, data = _stall_at_image(images, "vg/VG_100K/10.jpg")  # holds the build in its second file
    args = ["--raw_dir", raw, "--image_root", images, "--output_dir", tmp_path / "out", "--configs", "mix880k"]
    script = os.path.join(REPO_ROOT, "dataset_scripts", "lvis_instruct4v.py")
    command = [sys.executable, script, *map(str, args), "--num_proc", str(num_proc)]
    build = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = []
    reader = threading.Thread(target=_progress_lines, args=(build.stderr, lines))
    reader.start()
    try:
        writer = writer_once_opened(fifo, build)
        held = len(lines)
        deadline = time.monotonic() + 60
        while _counts(lines[held:]).count((8, 4, 4)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        held_counts = _counts(lines[held:])
        _put_back(fifo, data)
        os.write(writer, data)  # to the reader waiting on the FIFO: the build goes on
        os.close(writer)
        assert build.wait(timeout=120) == 0
    finally:
        build.kill()
        reader.join()
    # While the build waited, the bar was still redrawn every second, with the first file's counts (with num_proc,
    # summed over the workers: the second one had not finished a slice).
    assert held_counts.count((8, 4, 4)) >= 2
    counts = _counts(lines)
    assert all(read == written + rejected for read, written, rejected in counts)
    assert counts == sorted(counts) and counts[-1] == (15, 11, 4)  # never backwards, ending on the totals
    assert [line for line in lines if PROGRESS.match(line)][-1].startswith("mix880k (train): 100%|")
    assert "mix880k: read 15 = written 11 + rejected 4 (" in build.stdout.read().decode()
