"""Stage built datasets as the exact folder a Hub dataset repo holds, plus the build's rejects and report beside it.

Layout of `output_dir` (documented in the README and the dataset scripts):

```
output_dir/
  repo/                                   # exactly what goes to the Hub (`hub_llava.hub.push_dataset(output_dir/repo)`)
    README.md                             # `configs:` + `dataset_info` YAML, then the card rendered from model_cards/
    <config>/<split>-00000-of-0000N.parquet
  rejects.jsonl                           # every record not written, with its config, file, id, reason and record
  build_report.json                       # per config: read = written + rejected, reasons; command, version
```

The shards are the ones `datasets.Dataset.push_to_hub` writes (its shard count and row-group size, image bytes
embedded and stored paths cut to their basename as `embed_table_storage` does, `datasets`' own Parquet writer;
`MetadataConfigs` and `DatasetInfosDict` for the YAML), so `load_dataset(<repo>, <config>)` reads the staged folder
exactly as the pushed repo. Images are embedded while each shard is written, batch by batch (`hub_table`): a build
only needs to reference them, and every image byte is written once (`tests/test_staging.py` checks the files against
`push_to_hub`'s own steps).
Everything is written into a `.staging-*` folder inside `output_dir`, owned by the running process
(`hub_llava.data.workdirs`), and moved into place at the end, so that a build is never lost and never mixed with
another: the three outputs belong together, and `build_report.json` is what says a build is finished. Once the staged
report is written (atomically, last), the staged build is whole; the move then takes the old report out first, swaps
`repo/` and `rejects.jsonl`, and moves the new report in last. At every instant a report in `output_dir` describes
the repo and rejects beside it (the old build before the move, the new one after it), and the disk holds the old
build whole (before the move) or the new one (in `output_dir` and the staging folder during the move). A run
stopped during the move leaves its staging folder, report inside: the next run (`finish_interrupted_moves`, called
by `stage_repo` and the dataset scripts) completes the move before anything else. One build at a time per
`output_dir`.
"""

import datetime
import json
import logging
import mmap
import multiprocessing
import os
import sys
from dataclasses import dataclass, field

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.arrow_writer import (
    ParquetWriter,
    get_writer_batch_size_from_data_size,
    get_writer_batch_size_from_features,
)
from datasets.features.features import require_decoding
from datasets.table import InMemoryTable, embed_table_storage
from datasets.utils import are_progress_bars_disabled
from datasets.utils.metadata import MetadataConfigs
from datasets.utils.py_utils import convert_file_size_to_int
from huggingface_hub import DatasetCard, DatasetCardData
from tqdm.auto import tqdm

import hub_llava
from hub_llava.cards import render
from hub_llava.data.processes import children_die_with_parent
from hub_llava.data.rejects import Counts, read_rejects
from hub_llava.data.workdirs import WorkDir, stale_work_dirs

logger = logging.getLogger(__name__)

REPO_DIR = "repo"
REJECTS_FILE = "rejects.jsonl"
REPORT_FILE = "build_report.json"
STAGING_PREFIX = ".staging-"  # the folder a build is staged in, inside output_dir (`workdirs.WorkDir`)
REPLACED_DIR = "replaced"  # inside it: the outputs a build replaced, removed with the folder


@dataclass
class BuiltConfig:
    """One built config, ready to stage.

    Args:
        name (`str`):
            The config name (also its folder in the repo).
        splits (`dict[str, datasets.Dataset]`):
            Split name -> built dataset (images embedded or referenced; staging embeds them either way).
        counts (`Counts`):
            Records read / written / rejected for this config; checked (`read == written + rejected`).
        rejects_path (`str`, *optional*):
            The config's merged rejects file (`hub_llava.data.rejects.merge_rejects`).
        description (`str`, *optional*):
            One line for the card's table of configs.
        default (`bool`, *optional*, defaults to `False`):
            Whether `load_dataset(repo)` without a config name loads this one.
    """

    name: str
    splits: dict[str, datasets.Dataset]
    counts: Counts
    rejects_path: str | None = None
    description: str = ""
    default: bool = False
    extra: dict = field(default_factory=dict)  # anything else the card template wants per config

    @property
    def num_rows(self) -> dict[str, int]:
        return {split: len(ds) for split, ds in self.splits.items()}


def command_line() -> str:
    """The command that is running, for the card and the report (arguments only, never the environment)."""
    return " ".join(["python", *sys.argv]) if sys.argv and sys.argv[0] else "python"


def _is_local(path: str | None) -> bool:
    return path is not None and "://" not in path and "::" not in path


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_files(paths: list[str]) -> pa.Array:
    """The files' bytes as one binary array, read straight into one Arrow buffer (no Python `bytes` per image: their
    allocations fragmented the heap, and RSS grew by ~40 MB per thousand images)."""
    sizes = [os.path.getsize(path) for path in paths]
    offsets = np.zeros(len(paths) + 1, dtype=np.int32 if sum(sizes) < 2**31 else np.int64)
    np.cumsum(sizes, out=offsets[1:])
    data = pa.allocate_buffer(int(offsets[-1]))
    view = memoryview(data).cast("B")
    for path, start, size in zip(paths, offsets[:-1].tolist(), sizes):
        with open(path, "rb") as f:
            if f.readinto(view[start : start + size]) != size:
                raise OSError(f"{path} changed size while it was read")
    kind = pa.binary() if offsets.dtype == np.int32 else pa.large_binary()
    return pa.Array.from_buffers(kind, len(paths), [None, pa.py_buffer(offsets), data]).cast(pa.binary())


def _hub_image_structs(storage: pa.StructArray) -> pa.StructArray | None:
    """Image structs as `push_to_hub` stores them: the bytes (kept, sharing their buffer, or read from the local file
    of an image given by its path) and the path cut to its basename (`os.path.basename`'s rule). `None` for an image
    whose path is a URL (left to `datasets`)."""
    data, path = storage.field("bytes"), storage.field("path")
    missing = pc.and_(storage.is_valid(), data.is_null())
    if pc.any(missing).as_py():
        paths, needs = path.to_pylist(), missing.to_pylist()
        if not all(_is_local(p) for p, need in zip(paths, needs) if need):
            return None
        if all(needs):  # every image given by its path (the scripts' builds): read into Arrow memory at once
            data = _read_files(paths)
        else:
            stored = data.to_pylist()
            data = pa.array([_read(p) if need else b for b, p, need in zip(stored, paths, needs)], pa.binary())
    names = [field.name for field in storage.type]
    children = [data if name == "bytes" else pc.replace_substring_regex(path, "^.*/", "") for name in names]
    return pa.StructArray.from_arrays(children, names=names, mask=storage.is_null() if storage.null_count else None)


def _hub_column(chunk: pa.Array, feature) -> pa.Array | None:
    if isinstance(feature, datasets.Image):
        return _hub_image_structs(chunk)
    # A list of images: the slice of the child its offsets span (a shard is a slice of the table), re-based at 0.
    offsets = chunk.offsets
    first = offsets[0].as_py()
    images = _hub_image_structs(chunk.values.slice(first, offsets[-1].as_py() - first))
    if images is None:
        return None
    list_type = pa.LargeListArray if isinstance(feature, datasets.LargeList) else pa.ListArray
    offsets = pc.subtract(offsets, pa.scalar(first, offsets.type))
    return list_type.from_arrays(offsets, images, mask=chunk.is_null() if chunk.null_count else None)


def hub_table(table: pa.Table, features: datasets.Features) -> pa.Table | None:
    """`table` as `embed_table_storage` makes it (what `push_to_hub` uploads), for tables whose images are columns of
    `Image` or a list of `Image`: bytes kept without a copy, or read once from the local files, and paths cut to
    their basename. `embed_table_storage` turns every image into Python objects to do the same (~3 s per GB here).
    `None` when it does not apply (another nesting, a URL).
    """
    columns = []
    for name, feature in features.items():
        column = table.column(name)
        if not require_decoding(feature, ignore_decode_attribute=True):
            columns.append(column)
            continue
        is_list = isinstance(feature, datasets.List | datasets.LargeList) and isinstance(
            feature.feature, datasets.Image
        )
        if not (isinstance(feature, datasets.Image) or is_list):
            return None
        chunks = [_hub_column(chunk, feature) for chunk in column.chunks]
        if any(chunk is None for chunk in chunks):
            return None
        columns.append(pa.chunked_array(chunks, type=column.type))
    return pa.Table.from_arrays(columns, schema=table.schema)


def _contiguous_shards(dataset: datasets.Dataset, num_shards: int):
    """`dataset.shard(num_shards, index, contiguous=True)` for each index, in order.

    A dataset that is exactly its Arrow cache files (a builder's `as_dataset()`) is read from its own memory map of
    them (no copy), whose pages are dropped after each shard: through the map `dataset` holds, every page read stays
    resident and the process's RSS grows to the whole file (8 GB for 100K embedded images); copying shards into
    memory instead left two shards' worth in Arrow's allocator.
    """
    if dataset._indices is not None or not dataset.cache_files:
        for index in range(num_shards):
            yield dataset.shard(num_shards=num_shards, index=index, contiguous=True)
        return
    mappings = []

    def batches():
        for cache_file in dataset.cache_files:
            with open(cache_file["filename"], "rb") as f:
                mappings.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
            yield from pa.ipc.open_stream(pa.py_buffer(mappings[-1]))

    stream, pending, n = batches(), None, len(dataset)
    for index in range(num_shards):
        need, parts = n // num_shards + (index < n % num_shards), []  # the sizes `Dataset.shard` gives
        while need:
            batch = pending if pending is not None else next(stream)
            pending = batch.slice(need) if len(batch) > need else None
            parts.append(batch.slice(0, need) if pending is not None else batch)
            need -= len(parts[-1])
        table = InMemoryTable(pa.Table.from_batches(parts, schema=dataset.data.schema))
        del parts
        yield datasets.Dataset(table, info=dataset.info, fingerprint=f"{dataset._fingerprint}-shard{index}")
        del table
        for mapping in mappings:  # clean file pages: dropped now, read again from the file if touched again
            mapping.madvise(mmap.MADV_DONTNEED)
    if pending is not None or next(stream, None) is not None:
        raise RuntimeError("the dataset has more rows in its cache files than it reports")


def _write_shard(shard: datasets.Dataset, path: str, batch_size: int, bar: tqdm | None = None) -> int:
    """Writes one shard with `datasets`' own Parquet writer, one batch at a time, images embedded (`hub_table`);
    returns its rows."""
    features = shard.features
    embed = any(require_decoding(feature, ignore_decode_attribute=True) for feature in features.values())
    writer = ParquetWriter(path=path, features=features, writer_batch_size=batch_size)
    try:
        for batch in shard.with_format("arrow").iter(batch_size):
            # One chunk per column before the bytes are read (cheap while images are paths): the writer would combine
            # the chunks of the embedded table, a second copy of every image.
            batch = batch.combine_chunks()
            table = hub_table(batch, features) if embed else batch
            writer.write_table(table if table is not None else embed_table_storage(batch))
            if bar is not None:
                bar.update(len(batch))
        writer.finalize()
    finally:
        writer.close()
    return len(shard)


def _write_shard_of(job: tuple[datasets.Dataset, int, int, str, int]) -> int:
    dataset, num_shards, index, path, batch_size = job
    return _write_shard(dataset.shard(num_shards=num_shards, index=index, contiguous=True), path, batch_size)


def write_parquet_shards(
    dataset: datasets.Dataset, folder: str, split: str, max_shard_size="500MB", num_proc: int | None = None
) -> list[str]:
    """Writes `dataset` as `<folder>/<split>-XXXXX-of-YYYYY.parquet` with images embedded, like `push_to_hub`.

    The shards, their sizes and their rows are `push_to_hub`'s (the same count from `_estimate_nbytes`, contiguous
    shards, `embed_table_storage`'s result, `datasets`' own Parquet writer with its options), written one batch at a
    time: images given by a path are read from their files as they are written, so a builder's output need not hold
    the bytes (its Arrow cache would be a second copy of every image on disk), and memory stays at one batch.

    Args:
        num_proc (`int`, *optional*):
            Processes writing shards in parallel (as `push_to_hub(num_proc=...)`); one by default.

    Returns:
        `list[str]`: the shard paths, in order.
    """
    num_bytes = dataset._estimate_nbytes()  # counts referenced image files, as push_to_hub does
    num_shards = max(1, int(num_bytes / convert_file_size_to_int(max_shard_size)) + 1)
    num_shards = min(num_shards, max(1, len(dataset)))
    batch_size = get_writer_batch_size_from_features(dataset.features) or get_writer_batch_size_from_data_size(
        len(dataset), num_bytes
    )
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"{split}-{index:05d}-of-{num_shards:05d}.parquet") for index in range(num_shards)]
    desc = f"staging {os.path.basename(folder)} ({split})"
    with tqdm(total=len(dataset), desc=desc, unit=" rows", disable=are_progress_bars_disabled()) as bar:
        if num_proc and num_proc > 1 and num_shards > 1:
            jobs = [(dataset, num_shards, index, path, batch_size) for index, path in enumerate(paths)]
            # The workers must not outlive us if we are killed; the bar moves a shard at a time.
            with children_die_with_parent(), multiprocessing.Pool(min(num_proc, num_shards)) as pool:
                for rows in pool.imap_unordered(_write_shard_of, jobs):
                    bar.update(rows)
            return paths
        for shard, path in zip(_contiguous_shards(dataset, num_shards), paths):
            _write_shard(shard, path, batch_size, bar)
            del shard  # before the next shard is read
    return paths


def feature_type(feature) -> str:
    """A short, readable type for the card's schema table (`string`, `list of image`, ...)."""
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, datasets.Image):
        return "image"
    if isinstance(feature, datasets.List | datasets.LargeList):
        return f"list of {feature_type(feature.feature)}"
    if isinstance(feature, dict):
        return "{" + ", ".join(f"{key}: {feature_type(value)}" for key, value in feature.items()) + "}"
    return type(feature).__name__


def size_category(num_rows: int) -> str:
    """The Hub's `size_categories` tag for a number of rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if num_rows < limit:
            return name
    return "1M<n<10M" if num_rows < 10_000_000 else "10M<n<100M"


def _card_yaml(configs: list[BuiltConfig], sizes: dict[str, dict[str, int]], card_data: dict) -> DatasetCardData:
    largest = max(sum(config.num_rows.values()) for config in configs)
    data = DatasetCardData(**{"size_categories": [size_category(largest)], **card_data})
    infos = {}
    for config in configs:
        first = next(iter(config.splits.values()))
        info = datasets.DatasetInfo(features=first.features, splits=datasets.SplitDict(), dataset_size=0)
        info.download_size = sum(sizes[config.name].values())
        for split, ds in config.splits.items():
            info.splits.add(datasets.SplitInfo(name=split, num_bytes=ds._estimate_nbytes(), num_examples=len(ds)))
            info.dataset_size += info.splits[split].num_bytes
        infos[config.name] = info
    datasets.info.DatasetInfosDict(infos).to_dataset_card_data(data)
    metadata = {}
    for config in configs:
        files = [{"split": split, "path": f"{config.name}/{split}-*"} for split in config.splits]
        metadata[config.name] = {"data_files": files, **({"default": True} if config.default else {})}
    MetadataConfigs(metadata).to_dataset_card_data(data)
    return data


def _write_rejects(configs: list[BuiltConfig], path: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for config in configs:
            if config.rejects_path and os.path.exists(config.rejects_path):
                for row in read_rejects(config.rejects_path):
                    out.write(json.dumps({"config": config.name, **row}, ensure_ascii=False) + "\n")


def stage_repo(
    configs: list[BuiltConfig],
    output_dir: str,
    *,
    card_template: str,
    card_context: dict,
    card_data: dict,
    command: str | None = None,
    max_shard_size: str | int = "500MB",
    num_proc: int | None = None,
) -> str:
    """Stages built configs as a Hub dataset repo folder, with the rejects and the build report beside it.

    Args:
        configs (`list[BuiltConfig]`):
            The configs, in the order the card lists them; exactly one should be `default` when there are several.
        output_dir (`str`):
            Receives `repo/`, `rejects.jsonl` and `build_report.json` (replacing those of an earlier run).
        card_template (`str`):
            Template in `model_cards/` for the card body. It gets `card_context` plus `configs` (name, description,
            default, num_rows, counts, extra), `schema` (column, type), `command`, `hub_llava_version`, `build_date`,
            `total_read`, `total_written`, `total_rejected`.
        card_data (`dict`):
            The card's YAML metadata other than `configs`/`dataset_info` (`license`, `pretty_name`, `language`,
            `task_categories`, `tags`, ...).
        command (`str`, *optional*):
            The command that built the data, for the card and the report. Defaults to this process's command line.
        num_proc (`int`, *optional*):
            Processes writing the Parquet shards of a split in parallel.

    Returns:
        `str`: the path of the staged repo folder (`output_dir/repo`).
    """
    defaults = [config.name for config in configs if config.default]
    if len(configs) > 1 and len(defaults) != 1:
        raise ValueError(f"exactly one config must be the default, got {defaults or 'none'}")
    for config in configs:
        config.counts.check(f"config {config.name}")
    command = command or command_line()
    report = {
        "command": command,
        "hub_llava_version": hub_llava.__version__,
        "build_date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "configs": {config.name: {**config.counts.to_dict(), "num_rows": config.num_rows} for config in configs},
    }
    os.makedirs(output_dir, exist_ok=True)
    finish_interrupted_moves(output_dir)  # an earlier build staged whole goes in first: this one replaces it
    work = WorkDir.create(output_dir, STAGING_PREFIX)
    try:
        repo = os.path.join(work.path, REPO_DIR)
        sizes = {config.name: _write_config(config, repo, max_shard_size, num_proc) for config in configs}
        body = _card_body(configs, card_template, card_context, report)
        DatasetCard(f"---\n{_card_yaml(configs, sizes, card_data)}\n---\n\n{body}").save(
            os.path.join(repo, "README.md")
        )
        _write_rejects(configs, os.path.join(work.path, REJECTS_FILE))
        partial = os.path.join(work.path, REPORT_FILE + ".partial")
        with open(partial, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        os.replace(partial, os.path.join(work.path, REPORT_FILE))  # the staged build is whole from here on
        _move_into_place(work.path, output_dir)
    except BaseException:
        staged = os.path.exists(os.path.join(work.path, REPORT_FILE))
        if staged:
            logger.warning("the build staged in %s is whole; the next run moves it into place", work.path)
        work.close(remove=not staged)
        raise
    work.close()
    return os.path.join(output_dir, REPO_DIR)


def _write_config(config: BuiltConfig, repo: str, max_shard_size, num_proc: int | None = None) -> dict[str, int]:
    """Writes a config's splits as parquet shards; returns the bytes written per split."""
    sizes = {}
    for split, ds in config.splits.items():
        paths = write_parquet_shards(ds, os.path.join(repo, config.name), split, max_shard_size, num_proc)
        sizes[split] = sum(os.path.getsize(path) for path in paths)
        logger.info("staged %s/%s: %d rows in %d shard(s)", config.name, split, len(ds), len(paths))
    return sizes


def _card_body(configs: list[BuiltConfig], card_template: str, card_context: dict, report: dict) -> str:
    first = next(iter(configs[0].splits.values()))
    return render(
        card_template,
        **card_context,
        configs=[
            {
                "name": config.name,
                "description": config.description,
                "default": config.default,
                "num_rows": config.num_rows,
                "counts": config.counts.to_dict(),
                "extra": config.extra,
            }
            for config in configs
        ],
        schema=[(name, feature_type(feature)) for name, feature in first.features.items()],
        command=report["command"],
        hub_llava_version=report["hub_llava_version"],
        build_date=report["build_date"],
        total_read=sum(config.counts.read for config in configs),
        total_written=sum(config.counts.written for config in configs),
        total_rejected=sum(config.counts.n_rejected for config in configs),
    )


def _move_into_place(work: str, output_dir: str) -> None:
    """Moves the build staged in `work` into `output_dir` (see the module docstring for the order and why).

    Resumable: each step checks what an interrupted call already did, so `finish_interrupted_moves` runs this again
    on a stopped run's folder. The old build's outputs go to `work/replaced/`, removed with `work`.
    """
    replaced = os.path.join(work, REPLACED_DIR)
    os.makedirs(replaced, exist_ok=True)
    report = os.path.join(output_dir, REPORT_FILE)
    if os.path.exists(os.path.join(work, REPORT_FILE)) and os.path.exists(report):
        os.replace(report, os.path.join(replaced, REPORT_FILE))  # from here nothing claims the old repo is current
    for name in (REPO_DIR, REJECTS_FILE, REPORT_FILE):  # the report last: the sign of a finished build
        staged, target = os.path.join(work, name), os.path.join(output_dir, name)
        if not os.path.lexists(staged):
            continue  # moved in by the interrupted call
        if os.path.isdir(target) and not os.path.islink(target):
            os.rename(target, os.path.join(replaced, name))  # a folder cannot be replaced in one step
        os.replace(staged, target)


def finish_interrupted_moves(output_dir: str) -> list[str]:
    """Completes the moves into place that stopped runs left half done (their staging folder holds a staged report),
    oldest first, and removes those folders; returns their names. A staging folder without a report was stopped
    before its build was whole: `output_dir` still holds the old build, and `workdirs.remove_stale` removes it."""
    stopped = []
    for work_dir in stale_work_dirs(output_dir, (STAGING_PREFIX,)):
        report = os.path.join(work_dir.path, REPORT_FILE)
        if os.path.exists(report):
            stopped.append((os.path.getmtime(report), work_dir))
        else:
            work_dir.close(remove=False)
    finished = []
    try:
        for _, work_dir in sorted(stopped, key=lambda item: item[0]):
            _move_into_place(work_dir.path, output_dir)
            finished.append(os.path.basename(work_dir.path))
            work_dir.close()
    finally:
        for _, work_dir in stopped:
            work_dir.close(remove=False)  # gives up the lock of any not finished (no-op for the others)
    return finished
