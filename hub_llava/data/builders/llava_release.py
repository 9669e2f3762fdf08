"""A `datasets` builder for releases in LLaVA's format: JSON arrays of `{id, image?, conversations}` + an image root.

Generic over the release: a config lists its files (in order) and the `source` of each file's records (a fixed name,
or `None` for "the image collection of the record's path": `coco`, `gqa`, ..., `text`). LVIS-Instruct4V's builder
is this one with its configs; any other LLaVA-format release (SVIT's llava-v1.5 files, ...) can subclass it the same
way.

Preparation is sharded: each file is cut into byte ranges of about `shard_bytes` (`reader.shard_ranges`, each range's
reader proving its cut), so `download_and_prepare(num_proc=N)` spreads the ranges over N processes and gives the same
rows, in the same order, as one process. A range is read by `reader.iter_records` (orjson on 1 MiB slices: the same
records and errors as the streaming reader, about twice as fast). It is an `ArrowBasedBuilder` yielding record
batches: the per-example generator path tops out near 21K records/s per core, the batched one is about twice as fast.

Every record read is written or rejected. Each range writes its rejects (`{file, id, reason, record}` lines) and its
counts to part files in `<cache>/rejects/`; after the split is built they are merged into
`<cache>/rejects/<split>.jsonl` and `<split>.counts.json` (`builder.counts()`, `builder.rejects_path()`). Missing
images under the `"error"` policy fail the build there, with the total count and the first examples, before `datasets`
moves the prepared folder into place (nothing is left looking finished).
"""

import gc
import glob
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass

import datasets
import pyarrow as pa
from datasets.builder import Key
from datasets.exceptions import DatasetGenerationError

from hub_llava.data.images import (
    ImageResolver,
    MissingImage,
    MissingImagesError,
    check_image_root,
    check_missing_policy,
)
from hub_llava.data.llava_format import RejectedRecord, image_collection, llava_row, record_id
from hub_llava.data.processes import children_die_with_parent
from hub_llava.data.progress import RangeCounts, show_progress
from hub_llava.data.reader import ReleaseFileError, iter_records, shard_ranges
from hub_llava.data.rejects import Counts, RejectsWriter, merge_rejects
from hub_llava.data.schema import BASE_FEATURES

logger = logging.getLogger(__name__)

MISSING_EXAMPLES = 10  # how many missing images the error names


class ReleaseBuildError(DatasetGenerationError):
    """A release file could not be read (invalid or truncated JSON); the message names the file and the position.

    A `DatasetGenerationError`, so `datasets` passes it through unchanged (also from worker processes).
    """


@dataclass
class LlavaReleaseConfig(datasets.BuilderConfig):
    """A config of a LLaVA-format release.

    Args:
        files (`tuple[str, ...]`):
            The release files under `data_dir`, read in this order.
        sources (`tuple[str | None, ...]`):
            The `source` of each file's records; `None` means the record's image collection (`coco`, ..., `text`).
        image_root (`str`):
            The folder holding the image roots (`coco/train2017/...`, `gqa/images/...`). Required.
        image_folder (`str`, *optional*, defaults to `""`):
            A folder under `image_root` that the release's image paths are relative to (LLaVA's `--image_folder`:
            `coco/train2017` for `llava_instruct_150k.json`, whose paths are bare file names). Rows store the path
            relative to `image_root`.
        embed_images (`bool`, *optional*, defaults to `True`):
            Embed image bytes (for the Hub) or only reference the files (for local training).
        missing_images (`str`, *optional*, defaults to `"error"`):
            `"error"`: the build fails after the pass with the count and first missing images; `"skip"`: those
            records go to the rejects.
        verify_images (`bool`, *optional*):
            Decode every image to reject corrupt ones; defaults to `embed_images`.
        check_images_exist (`bool`, *optional*, defaults to `True`):
            Stat referenced images. Only the benchmark turns this off.
        shard_bytes (`int`, *optional*, defaults to 64 MiB):
            Target size of the byte ranges each file is cut into for sharded preparation.
        batch_size (`int`, *optional*):
            Rows per record batch; 100 when embedding images, 2000 otherwise.
    """

    files: tuple[str, ...] = ()
    sources: tuple[str | None, ...] = ()
    image_root: str | None = None
    image_folder: str = ""
    embed_images: bool = True
    missing_images: str = "error"
    verify_images: bool | None = None
    check_images_exist: bool = True
    shard_bytes: int = 64 << 20
    batch_size: int | None = None


def _is_record(candidate) -> bool:
    return isinstance(candidate, dict) and "conversations" in candidate


class LlavaReleaseBuilder(datasets.ArrowBasedBuilder):
    """Builds rows of the shared schema from LLaVA-format release files (see the module docstring)."""

    BUILDER_CONFIG_CLASS = LlavaReleaseConfig
    # A sentence added to the missing-images error (a release whose images are known to be partly unobtainable).
    MISSING_IMAGES_NOTE = ""

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=self.config.description or "", features=BASE_FEATURES)

    def _release_paths(self) -> list[str]:
        if not self.config.data_dir:
            raise ValueError(f"config {self.config.name}: pass data_dir, the folder holding {list(self.config.files)}")
        paths = [os.path.join(os.path.abspath(self.config.data_dir), name) for name in self.config.files]
        missing = [path for path in paths if not os.path.isfile(path)]
        if missing:
            raise FileNotFoundError(f"config {self.config.name}: release file(s) not found: {', '.join(missing)}")
        return paths

    def _split_generators(self, dl_manager):
        if self.config.image_root is None:
            raise ValueError(f"config {self.config.name}: pass image_root, the folder holding the image roots")
        check_image_root(self.config.image_root)
        check_missing_policy(self.config.missing_images)
        shards = []
        for path, source in zip(self._release_paths(), self.config.sources, strict=True):
            num_shards = max(1, -(-os.path.getsize(path) // self.config.shard_bytes))
            for start, end in shard_ranges(path, num_shards, _is_record):
                shards.append({"index": len(shards), "path": path, "start": start, "end": end, "source": source})
        logger.info(
            "config %s: %d release file(s) in %d range(s)", self.config.name, len(self.config.files), len(shards)
        )
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"shards": shards, "split": "train"})]

    def _parts_dir(self) -> str:
        return os.path.join(self._output_dir, "rejects")

    def _generate_tables(self, shards: list[dict], split: str):
        os.makedirs(self._parts_dir(), exist_ok=True)
        resolver = ImageResolver(
            self.config.image_root,
            embed=self.config.embed_images,
            verify=self.config.verify_images,
            check_exists=self.config.check_images_exist,
        )
        batch_size = self.config.batch_size or (100 if self.config.embed_images else 2000)
        schema = self.info.features.arrow_schema
        # The counts `_prepare_split` shows (none when streaming: nothing is prepared, nothing shown).
        path = self._progress_path(split)
        progress = RangeCounts(path) if os.path.exists(path) else None
        for shard in shards:
            part = os.path.join(self._parts_dir(), f"{split}-{shard['index']:05d}")
            tables = self._shard_tables(shard, part, resolver, batch_size, schema, split, progress)
            for batch_index, table in enumerate(tables):
                yield Key(shard["index"], batch_index), table

    def _record_id(self, record) -> str | None:
        """The id written beside a rejected record (a release with another id field overrides this)."""
        return record_id(record)

    def _in_split(self, record, split: str) -> bool:
        """Whether `record` belongs to `split`: always, here. A builder with several splits of one file (SVIT's held-out
        test images) filters here; records of the other splits are not counted as read for this one."""
        return True

    def _shard_tables(
        self,
        shard: dict,
        part: str,
        resolver: ImageResolver,
        batch_size: int,
        schema: pa.Schema,
        split: str = "train",
        progress: RangeCounts | None = None,
    ):
        counts, missing, missing_folders = Counts(), [], Counter()
        rows = []

        def report(offset: int) -> None:  # between two slices of the reader: every record read is a row or a reject
            if progress is not None:
                accepted = counts.written + len(rows)
                progress.set(shard["index"], counts.read, accepted, rejects.count, offset - shard["start"])

        # The garbage collector is paused while this loop reads and converts records (trees of dicts and lists: no
        # cycles), and runs as usual while `datasets` writes each table (measured in BENCHMARKS.md).
        collect = gc.isenabled()
        gc.disable()
        with RejectsWriter(part + ".jsonl") as rejects:
            try:
                for record in iter_records(shard["path"], shard["start"], shard["end"], _is_record, report):
                    if not self._in_split(record, split):
                        continue
                    counts.read += 1
                    try:
                        row = self._convert(record, shard["source"], resolver)
                    except RejectedRecord as err:
                        rejects.write(shard["path"], self._record_id(record), str(err), record)
                        if isinstance(err, MissingImage):
                            missing_folders[os.path.dirname(err.path)] += 1
                            if len(missing) < MISSING_EXAMPLES and err.path not in missing:
                                missing.append(err.path)
                        continue
                    rows.append(row)
                    if len(rows) >= batch_size:
                        counts.written += len(rows)
                        table = self._table(rows, schema)
                        rows = []  # freed before the collector runs again
                        if collect:
                            gc.enable()
                        yield table
                        gc.disable()
            except ReleaseFileError as err:
                raise ReleaseBuildError(str(err)) from err
            finally:
                if collect:
                    gc.enable()
            report(shard["end"])
            if rows:
                counts.written += len(rows)
                yield self._table(rows, schema)
        summary = {
            "read": counts.read,
            "written": counts.written,
            "missing": sum(missing_folders.values()),
            "missing_examples": missing,
            "missing_folders": missing_folders,
        }
        with open(part + ".json", "w", encoding="utf-8") as f:
            json.dump(summary, f)

    def _convert(self, record, source: str | None, resolver: ImageResolver) -> dict:
        if source is None:
            image = record.get("image") if isinstance(record, dict) else None
            source = image_collection(image if isinstance(image, str) else None)
        row = self._row(record, source)
        if self.config.image_folder and row["image_paths"]:
            row["image_paths"] = [f"{self.config.image_folder}/{path}" for path in row["image_paths"]]
        row["images"] = list(map(resolver, row["image_paths"]))
        return row

    def _row(self, record, source: str) -> dict:
        """One record as a row without its images, by LLaVA's rules (a release with other rules overrides this)."""
        return llava_row(record, source)

    def _table(self, rows: list[dict], schema: pa.Schema) -> pa.Table:
        """A batch of rows as an Arrow table (a release with columns from elsewhere adds them here)."""
        return pa.Table.from_pydict({name: [row[name] for row in rows] for name in schema.names}, schema=schema)

    def _progress_path(self, split: str) -> str:
        return os.path.join(self._parts_dir(), f"{split}.progress")

    def _prepare_split(self, split_generator, **kwargs):
        split, shards = split_generator.gen_kwargs["split"], split_generator.gen_kwargs["shards"]
        os.makedirs(self._parts_dir(), exist_ok=True)
        progress = RangeCounts.create(self._progress_path(split), len(shards))
        total_bytes = sum(shard["end"] - shard["start"] for shard in shards)
        # `datasets`' num_proc pool and its manager must not outlive us if we are killed.
        with children_die_with_parent(), show_progress(progress, total_bytes, f"{self.config.name} ({split})"):
            super()._prepare_split(split_generator, **kwargs)
        os.remove(progress.path)
        parts = sorted(glob.glob(os.path.join(self._parts_dir(), f"{split}-*.json")))
        counts, folders, examples = Counts(), Counter(), []
        for path in parts:
            with open(path, encoding="utf-8") as f:
                part = json.load(f)
            counts.read += part["read"]
            counts.written += part["written"]
            folders.update(part["missing_folders"])
            examples += [path for path in part["missing_examples"] if path not in examples]
        if folders and self.config.missing_images == "error":
            raise MissingImagesError(
                os.path.abspath(self.config.image_root),
                sum(folders.values()),
                examples[:MISSING_EXAMPLES],
                what=f"config {self.config.name}",
                folders=folders,
                note=self.MISSING_IMAGES_NOTE,
            )
        rejects = os.path.join(self._parts_dir(), f"{split}.jsonl")
        counts.rejected = merge_rejects(os.path.join(self._parts_dir(), f"{split}-*.jsonl"), rejects)
        if counts.written != split_generator.split_info.num_examples:
            raise RuntimeError(
                f"config {self.config.name}: {counts.written} rows counted but "
                f"{split_generator.split_info.num_examples} written"
            )
        counts.check(f"config {self.config.name}")
        for path in parts + glob.glob(os.path.join(self._parts_dir(), f"{split}-*.jsonl")):
            os.remove(path)
        with open(os.path.join(self._parts_dir(), f"{split}.counts.json"), "w", encoding="utf-8") as f:
            json.dump(counts.to_dict(), f)

    def counts(self, split: str = "train") -> Counts:
        """Records read / written / rejected (by reason) when the split was prepared."""
        with open(os.path.join(self.cache_dir, "rejects", f"{split}.counts.json"), encoding="utf-8") as f:
            data = json.load(f)
        return Counts(read=data["read"], written=data["written"], rejected=Counter(data["reasons"]))

    def rejects_path(self, split: str = "train") -> str:
        """The prepared split's rejects file (`{file, id, reason, record}` lines)."""
        return os.path.join(self.cache_dir, "rejects", f"{split}.jsonl")
