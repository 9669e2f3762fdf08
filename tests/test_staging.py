import json
import os
import signal
import subprocess
import sys
from collections import Counter

import datasets
import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from datasets.table import embed_table_storage

from hub_llava.data.rejects import Counts
from hub_llava.data.schema import BASE_FEATURES
from hub_llava.data.script import clean_output_dir
from hub_llava.data.staging import (
    BuiltConfig,
    feature_type,
    hub_table,
    size_category,
    stage_repo,
    write_parquet_shards,
)

TEMPLATE = "dataset_card_lvis_instruct4v.md.jinja"
CONTEXT = {"repo_id": "hub_llava/lvis_instruct4v", "pretty_name": "LVIS-Instruct4V"}
CARD_DATA = {"license": "mit", "pretty_name": "LVIS-Instruct4V"}
COLORS = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250)]


def _dataset(tmp_path, n: int, text_only_every: int = 0) -> datasets.Dataset:
    rows = {name: [] for name in BASE_FEATURES}
    for i in range(n):
        text_only = text_only_every and i % text_only_every == 0
        relative = f"coco/train2017/{i:012d}.jpg"
        if not text_only:
            path = tmp_path / "images" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            PIL.Image.new("RGB", (20, 10), COLORS[i % len(COLORS)]).save(path, "PNG")
        rows["id"].append(f"{i:012d}")
        rows["messages"].append([{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}])
        rows["images"].append([] if text_only else [{"bytes": None, "path": str(path)}])
        rows["image_paths"].append([] if text_only else [relative])
        rows["source"].append("text" if text_only else "coco")
    return datasets.Dataset.from_dict(rows, features=BASE_FEATURES)


def _rejects(tmp_path, name: str, n: int) -> str:
    path = tmp_path / f"{name}.rejects.jsonl"
    lines = [
        {"file": "f.json", "id": str(i), "reason": "no conversations", "record": {"id": str(i)}} for i in range(n)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def _configs(tmp_path):
    small = _dataset(tmp_path, 4, text_only_every=3)
    big = _dataset(tmp_path, 12)
    return [
        BuiltConfig("lvis_instruct4v", {"train": small}, Counts(4, 4), description="four", default=True),
        BuiltConfig(
            "mix730k",
            {"train": big},
            Counts(14, 12, Counter({"no conversations": 2})),
            rejects_path=_rejects(tmp_path, "mix730k", 2),
            description="twelve",
        ),
    ]


def _front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n", 2)[1])


@pytest.mark.slow
def test_stage_then_load_like_a_user(tmp_path, monkeypatch):
    out = tmp_path / "site" / "hub_llava" / "lvis_instruct4v_build"
    repo = stage_repo(
        _configs(tmp_path), str(out), card_template=TEMPLATE, card_context=CONTEXT, card_data=CARD_DATA, command="cmd"
    )
    assert sorted(os.listdir(out)) == ["build_report.json", "rejects.jsonl", "repo"]  # no temporary folder left
    assert sorted(os.listdir(repo)) == ["README.md", "lvis_instruct4v", "mix730k"]
    assert os.listdir(os.path.join(repo, "mix730k")) == ["train-00000-of-00001.parquet"]

    readme = open(os.path.join(repo, "README.md"), encoding="utf-8").read()
    meta = _front_matter(readme)
    assert meta["configs"] == [
        {
            "config_name": "lvis_instruct4v",
            "data_files": [{"split": "train", "path": "lvis_instruct4v/train-*"}],
            "default": True,
        },
        {"config_name": "mix730k", "data_files": [{"split": "train", "path": "mix730k/train-*"}]},
    ]
    infos = {info["config_name"]: info for info in meta["dataset_info"]}
    assert infos["mix730k"]["splits"][0]["num_examples"] == 12
    assert infos["lvis_instruct4v"]["splits"][0]["num_examples"] == 4
    assert meta["license"] == "mit" and meta["size_categories"] == ["n<1K"]
    assert "| `mix730k` | 12 | 14 | 2 | twelve |" in readme
    assert "18 read =\n16 written + 2 rejected" in readme
    assert "| `mix730k` | no conversations | 2 |" in readme

    rejects = [json.loads(line) for line in open(out / "rejects.jsonl")]
    assert [(r["config"], r["id"], r["reason"]) for r in rejects] == [("mix730k", "0", "no conversations")] + [
        ("mix730k", "1", "no conversations")
    ]
    report = json.loads((out / "build_report.json").read_text())
    assert report["command"] == "cmd"
    assert report["configs"]["mix730k"] == {
        "read": 14,
        "written": 12,
        "rejected": 2,
        "reasons": {"no conversations": 2},
        "num_rows": {"train": 12},
    }

    # The exact Hub layout: `load_dataset("org/name")` reads a local folder of that relative path.
    os.rename(repo, tmp_path / "site" / "hub_llava" / "lvis_instruct4v")
    monkeypatch.chdir(tmp_path / "site")
    ds = datasets.load_dataset("hub_llava/lvis_instruct4v", "mix730k", split="train")
    assert ds.features == BASE_FEATURES
    assert ds["id"][:2] == ["000000000000", "000000000001"]
    assert [row["images"][0].getpixel((5, 5)) for row in ds.select(range(5))] == COLORS
    assert ds[7]["image_paths"] == ["coco/train2017/000000000007.jpg"]
    default = datasets.load_dataset("hub_llava/lvis_instruct4v", split="train")  # the default config
    assert default["id"] == [f"{i:012d}" for i in range(4)]
    assert [len(images) for images in default["images"]] == [0, 1, 1, 0]
    # Embedded as push_to_hub does: bytes in the parquet, the stored path cut to its basename.
    raw = default.cast_column("images", datasets.List(datasets.Image(decode=False)))
    assert raw[1]["images"][0]["path"] == "000000000001.jpg"
    streamed = list(datasets.load_dataset("hub_llava/lvis_instruct4v", "mix730k", split="train", streaming=True))
    assert [row["id"] for row in streamed] == ds["id"]
    assert streamed[3]["images"][0].getpixel((0, 0)) == COLORS[3]


@pytest.mark.slow
def test_large_configs_are_cut_into_shards(tmp_path, monkeypatch):
    config = BuiltConfig("mix880k", {"train": _dataset(tmp_path, 9)}, Counts(9, 9), default=True)
    repo = stage_repo(
        [config], str(tmp_path / "out"), card_template=TEMPLATE, card_context=CONTEXT, card_data=CARD_DATA,
        max_shard_size=400,
    )  # fmt: skip
    shards = sorted(os.listdir(os.path.join(repo, "mix880k")))
    assert len(shards) > 1
    assert shards[0] == f"train-00000-of-{len(shards):05d}.parquet"
    os.makedirs(tmp_path / "site" / "hub_llava")
    os.rename(repo, tmp_path / "site" / "hub_llava" / "lvis_instruct4v")
    monkeypatch.chdir(tmp_path / "site")
    ds = datasets.load_dataset("hub_llava/lvis_instruct4v", "mix880k", split="train")
    assert ds["id"] == [f"{i:012d}" for i in range(9)]


def test_counts_must_add_up(tmp_path):
    config = BuiltConfig("mix730k", {"train": _dataset(tmp_path, 2)}, Counts(3, 2), default=True)
    with pytest.raises(RuntimeError, match="config mix730k: 3 records read but 2 written \\+ 0 rejected"):
        stage_repo([config], str(tmp_path / "out"), card_template=TEMPLATE, card_context=CONTEXT, card_data=CARD_DATA)
    assert not (tmp_path / "out" / "repo").exists()


def test_one_default_config(tmp_path):
    configs = _configs(tmp_path)
    configs[1].default = True
    with pytest.raises(ValueError, match="exactly one config must be the default"):
        stage_repo(configs, str(tmp_path / "out"), card_template=TEMPLATE, card_context=CONTEXT, card_data=CARD_DATA)


@pytest.mark.slow
def test_a_failed_run_leaves_the_previous_one_untouched(tmp_path):
    out = tmp_path / "out"
    configs = _configs(tmp_path)
    stage_repo(configs, str(out), card_template=TEMPLATE, card_context=CONTEXT, card_data=CARD_DATA, command="first")
    before = {name: os.path.getmtime(out / name) for name in os.listdir(out)}
    with pytest.raises(Exception, match="pretty_name"):  # the card needs it (StrictUndefined): fails after the shards
        stage_repo(configs, str(out), card_template=TEMPLATE, card_context={"repo_id": "x/y"}, card_data=CARD_DATA)
    assert {name: os.path.getmtime(out / name) for name in os.listdir(out)} == before
    assert json.loads((out / "build_report.json").read_text())["command"] == "first"


class Stopped(BaseException):
    """Raised in place of a rename: the run stops there, as a kill would stop it (no `except Exception` catches it)."""


def _build(tmp_path, tag: str, rows: int, rejected: int) -> list[BuiltConfig]:
    counts = Counts(rows + rejected, rows, Counter({"no conversations": rejected}))
    dataset = _dataset(tmp_path / tag, rows)
    rejects = _rejects(tmp_path, tag, rejected)
    return [BuiltConfig("mix730k", {"train": dataset}, counts, rejects_path=rejects, default=True)]


OLD, NEW = {"rows": 4, "rejected": 1}, {"rows": 6, "rejected": 3}


def _stage(configs, out, command: str) -> str:
    return stage_repo(
        configs, str(out), card_template=TEMPLATE, card_context=CONTEXT, card_data=CARD_DATA, command=command
    )


def _builds_on_show(out) -> dict[str, str | None]:
    """Which build ("old", "new") each output in `out` is (`None`: absent), told by its command, rejects and rows."""
    by_rows = {OLD["rows"]: "old", NEW["rows"]: "new"}
    by_rejects = {OLD["rejected"]: "old", NEW["rejected"]: "new"}
    shards = sorted((out / "repo" / "mix730k").glob("train-*.parquet")) if (out / "repo").exists() else []
    rows = sum(pq.ParquetFile(shard).metadata.num_rows for shard in shards)
    assert not shards or (out / "repo" / "README.md").exists()  # the repo moves as one folder
    return {
        "report": json.loads((out / "build_report.json").read_text())["command"]
        if (out / "build_report.json").exists()
        else None,
        "rejects": by_rejects[len((out / "rejects.jsonl").read_text().splitlines())]
        if (out / "rejects.jsonl").exists()
        else None,
        "repo": by_rows[rows] if shards else None,
    }


def _renames_stopping_at(monkeypatch, stop_at: int | None, calls: list) -> None:
    # Only the OS boundary is replaced: every rename, ours or a library's, counts as a step.
    for name in ("rename", "replace"):
        real = getattr(os, name)

        def call(*args, _real=real, **kwargs):
            calls.append(args)
            if len(calls) - 1 == stop_at:
                raise Stopped(args)
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, call)


@pytest.mark.slow
def test_a_build_stopped_at_any_rename_leaves_the_old_build_or_the_new_one_whole(tmp_path, monkeypatch):
    old, new = _build(tmp_path, "old", **OLD), _build(tmp_path, "new", **NEW)
    _stage(old, tmp_path / "dry", "old")
    steps = []
    with monkeypatch.context() as patch:
        _renames_stopping_at(patch, None, steps)
        _stage(new, tmp_path / "dry", "new")

    outcomes = []
    for stop_at in range(len(steps)):
        out = tmp_path / f"stopped_at_{stop_at}"
        _stage(old, out, "old")
        with monkeypatch.context() as patch:
            _renames_stopping_at(patch, stop_at, [])
            with pytest.raises(Stopped):
                _stage(new, out, "new")
        shown = _builds_on_show(out)
        # A report in `out` (what says a build is finished) always describes the repo and rejects beside it.
        assert shown["report"] is None or set(shown.values()) == {shown["report"]}, (stop_at, steps[stop_at], shown)
        # The next run puts `out` right, with one whole build in it and nothing else.
        lines = clean_output_dir(str(out))
        after = _builds_on_show(out)
        assert None not in after.values() and len(set(after.values())) == 1, (stop_at, steps[stop_at], after)
        assert sorted(os.listdir(out)) == ["build_report.json", "rejects.jsonl", "repo"]
        assert any(line.startswith("finished moving the build") for line in lines) == (after["report"] == "new")
        outcomes.append(after["report"])
    # The old build until the staged report is in place (the new build whole from then on), then the new one.
    whole = next(i for i, args in enumerate(steps) if str(args[1]).endswith(os.sep + "build_report.json"))
    assert ".staging-" in str(steps[whole][1]) and len(steps) - whole > 4
    assert outcomes == ["old"] * (whole + 1) + ["new"] * (len(steps) - whole - 1)


# Stages NEW over the build in argv[2] and is killed (SIGKILL) as it moves the new repo in, the old one being aside
# already: the instant at which `out` holds no repo at all.
KILLED_MID_MOVE = """
import os, signal, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
from test_staging import NEW, _build, _stage
from pathlib import Path

tmp, out = Path(sys.argv[3]), Path(sys.argv[2])
configs = _build(tmp, "new", **NEW)
replace = os.replace
def killing(source, target, **kwargs):
    if str(target) == str(out / "repo"):
        assert not os.path.exists(target)
        os.kill(os.getpid(), signal.SIGKILL)
    return replace(source, target, **kwargs)
os.replace = killing
_stage(configs, out, "new")
"""


@pytest.mark.slow
def test_a_build_killed_mid_move_is_finished_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    _stage(_build(tmp_path, "old", **OLD), out, "old")
    child = [sys.executable, "-c", KILLED_MID_MOVE, __file__, str(out), str(tmp_path / "child")]
    assert subprocess.run(child, capture_output=True).returncode == -signal.SIGKILL
    assert _builds_on_show(out) == {"report": None, "rejects": "old", "repo": None}  # nothing claims to be finished
    [staging] = [name for name in os.listdir(out) if name.startswith(".staging-")]
    [line] = clean_output_dir(str(out))  # what the dataset scripts do first
    assert line == f"finished moving the build that the stopped run staged in {staging} into place"
    assert _builds_on_show(out) == {"report": "new", "rejects": "new", "repo": "new"}
    assert sorted(os.listdir(out)) == ["build_report.json", "rejects.jsonl", "repo"]


def test_card_helpers():
    assert feature_type(BASE_FEATURES["messages"]) == "list of {role: string, content: string}"
    assert feature_type(BASE_FEATURES["images"]) == "list of image"
    assert [size_category(n) for n in (999, 1000, 222_711, 880_000, 1_000_000)] == [
        "n<1K",
        "1K<n<10K",
        "100K<n<1M",
        "100K<n<1M",
        "1M<n<10M",
    ]


def _embedded_table(n: int):
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "images": datasets.List(datasets.Image()),
            "image": datasets.Image(),
            "big": datasets.LargeList(datasets.Image()),
        }
    )
    rows = {"id": [], "images": [], "image": [], "big": []}
    for i in range(n):
        value = {"bytes": bytes([i % 256]) * (i + 1), "path": f"coco/train2017/{i:012d}.jpg"}
        rows["id"].append(str(i))
        rows["images"].append([] if i % 3 == 0 else [value] * (1 + i % 2))
        rows["image"].append(None if i % 5 == 0 else dict(value, path=None if i % 7 == 0 else value["path"]))
        rows["big"].append([value])
    return pa.Table.from_pydict(rows, schema=features.arrow_schema), features


@pytest.mark.parametrize("start, stop", [(0, 40), (7, 31)])
def test_hub_table_equals_embed_table_storage_without_copying_the_bytes(start, stop):
    table, features = _embedded_table(40)
    shard = table.slice(start, stop - start)  # a contiguous shard, as write_parquet_shards cuts them
    fast = hub_table(shard, features)
    assert fast.to_pylist() == embed_table_storage(shard).to_pylist()
    assert fast.schema == shard.schema
    assert fast.column("images").chunk(0).values.field("bytes").buffers()[2].address == (
        shard.column("images").chunk(0).values.field("bytes").buffers()[2].address
    )  # the image bytes are shared, not copied
    assert fast.column("images")[1].as_py()[0]["path"] == f"{start + 1:012d}.jpg"


def test_hub_table_reads_images_given_by_a_path_and_leaves_urls_to_datasets(tmp_path):
    table, features = _embedded_table(10)
    rows = table.to_pylist()
    for i in (2, 4):  # referenced images, as the dataset scripts' builds give them
        image = tmp_path / f"{i}.png"
        image.write_bytes(bytes([i]) * 50)
        rows[i]["images"] = [{"bytes": None, "path": str(image)}]
        rows[i]["image"] = {"bytes": None, "path": str(image)}
    referenced = pa.Table.from_pylist(rows, schema=table.schema)
    assert hub_table(referenced, features).to_pylist() == embed_table_storage(referenced).to_pylist()
    assert hub_table(referenced, features).column("image")[4].as_py() == {"bytes": bytes([4]) * 50, "path": "4.png"}
    rows[3]["images"] = [{"bytes": None, "path": "https://example.com/x.jpg"}]
    assert hub_table(pa.Table.from_pylist(rows, schema=table.schema), features) is None
    rows[3]["images"] = [{"bytes": None, "path": str(tmp_path / "gone.png")}]
    with pytest.raises(FileNotFoundError, match="gone.png"):  # as embed_table_storage: the staging stops
        hub_table(pa.Table.from_pylist(rows, schema=table.schema), features)


def test_shards_read_from_the_cache_files_match_dataset_shard(tmp_path):
    # A dataset made of several Arrow cache files (as `num_proc` builds give), staged in more shards than files.
    datasets.Dataset.from_dict(
        _dataset(tmp_path, 23, text_only_every=4).to_dict(), features=BASE_FEATURES
    ).save_to_disk(str(tmp_path / "saved"), num_shards=3)
    saved = datasets.load_from_disk(str(tmp_path / "saved"))
    assert len(saved.cache_files) == 3
    paths = write_parquet_shards(saved, str(tmp_path / "out"), "train", max_shard_size=saved._estimate_nbytes() // 5)
    assert len(paths) >= 5
    sizes = [pq.read_metadata(path).num_rows for path in paths]
    assert sizes == [len(saved.shard(num_shards=len(paths), index=i, contiguous=True)) for i in range(len(paths))]
    written = pa.concat_tables([pq.read_table(path) for path in paths]).to_pylist()
    assert written == embed_table_storage(saved.data.table).to_pylist()  # as push_to_hub stores them


def test_shards_are_the_parquet_files_push_to_hub_writes(tmp_path):
    ds = _dataset(tmp_path, 7, text_only_every=3)  # images given by their paths, as the scripts' builds give them
    [ours] = write_parquet_shards(ds, str(tmp_path / "ours"), "train")
    reference = str(tmp_path / "push_to_hub.parquet")  # push_to_hub's own steps for one shard
    ds.with_format("arrow").map(embed_table_storage, batched=True, keep_in_memory=True).to_parquet(reference)
    a, b = pq.ParquetFile(ours), pq.ParquetFile(reference)
    assert a.read().equals(b.read()) and a.schema_arrow.metadata == b.schema_arrow.metadata
    assert a.metadata.metadata == b.metadata.metadata  # key-value metadata, content-defined chunking included
    chunks = [(c.path_in_schema, c.compression, c.encodings) for c in map(a.metadata.row_group(0).column, range(7))]
    assert chunks == [
        (c.path_in_schema, c.compression, c.encodings) for c in map(b.metadata.row_group(0).column, range(7))
    ]


def test_num_proc_writes_the_same_shards(tmp_path):
    datasets.Dataset.from_dict(_dataset(tmp_path, 17).to_dict(), features=BASE_FEATURES).save_to_disk(
        str(tmp_path / "saved")
    )
    saved = datasets.load_from_disk(str(tmp_path / "saved"))
    size = saved._estimate_nbytes() // 4
    one = write_parquet_shards(saved, str(tmp_path / "one"), "train", max_shard_size=size)
    two = write_parquet_shards(saved, str(tmp_path / "two"), "train", max_shard_size=size, num_proc=2)
    assert [os.path.basename(p) for p in one] == [os.path.basename(p) for p in two] and len(one) >= 4
    assert all(pq.read_table(a).equals(pq.read_table(b)) for a, b in zip(one, two))
