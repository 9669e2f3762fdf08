"""LLaVA-1.5's stage-1 data, LCS-558K (liuhaotian/LLaVA-Pretrain), as a `datasets` builder run locally.

```python
from hub_llava.data.builders.llava_pretrain import LlavaPretrain

builder = LlavaPretrain(data_dir="LLaVA-Pretrain/", image_root="LLaVA-Pretrain/images", embed_images=False)
builder.download_and_prepare(num_proc=2)
```

Config `lcs558k`: `blip_laion_cc_sbu_558k.json` (558,128 records in the release: one instruction with `<image>`
before or after it, then a BLIP caption) with the images of `images.zip` (`00453/004539375.jpg`: paths relative to
the unzipped `images/` folder, LLaVA's `--image_folder`). Records follow LLaVA's `preprocess_plain`: a record of more
than one round, without `<image>` or without an image is rejected with that reason (`llava_format.plain_row`). Ids
are the release's strings (leading zeros kept).

If `blip_laion_cc_sbu_558k_meta.json` is in `data_dir`, its `url` and `blip_caption` fields (those present in its
first record) become columns, joined on `id` (null for a record the meta file does not list). The meta file is
streamed once into an Arrow file beside the build; each process memory-maps it and looks ids up in a sorted array of
the ids' bytes (a few MB for 558K ids, where a dict of Python strings would take ~70 MB per process).
"""

import os
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hub_llava.data.builders.llava_release import LlavaReleaseBuilder, LlavaReleaseConfig, ReleaseBuildError
from hub_llava.data.llava_format import plain_row, record_id
from hub_llava.data.reader import ReleaseFileError, iter_json_array, iter_records
from hub_llava.data.schema import features_with

LCS558K = "blip_laion_cc_sbu_558k.json"
META = "blip_laion_cc_sbu_558k_meta.json"
META_COLUMNS = ("url", "blip_caption")  # kept, in this order, when the meta file's records have them
DEFAULT_CONFIG = "lcs558k"
DESCRIPTION = "LCS-558K: LAION/CC/SBU images with BLIP captions, one instruction + caption each (LLaVA-1.5 stage 1)"
_INDEX_BATCH = 50_000


@dataclass
class LlavaPretrainConfig(LlavaReleaseConfig):
    """A config of LLaVA-Pretrain (see `LlavaReleaseConfig`), plus:

    Args:
        meta_file (`str`, *optional*, defaults to `"blip_laion_cc_sbu_558k_meta.json"`):
            The meta file under `data_dir`, used when it exists (`None`: never).
    """

    meta_file: str | None = META


def _is_meta_record(candidate) -> bool:
    return isinstance(candidate, dict) and "id" in candidate


def _text(value) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


def meta_columns(path: str) -> list[str]:
    """The `META_COLUMNS` that the first record of the meta file has (`[]` for an empty file)."""
    try:
        first = next(iter_json_array(path), None)
    except ReleaseFileError as err:
        raise ReleaseBuildError(str(err)) from err
    return [name for name in META_COLUMNS if isinstance(first, dict) and name in first]


def write_meta_index(path: str, out_path: str, columns: list[str]) -> int:
    """Streams the meta file into an Arrow IPC file of `id` + `columns` (strings, file order); returns its rows.

    Raises:
        `ReleaseBuildError`: the meta file is not a well-formed JSON array (file and byte in the message).
    """
    schema = pa.schema([("id", pa.string())] + [(name, pa.string()) for name in columns])
    batch = {name: [] for name in schema.names}
    n = 0
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with pa.OSFile(out_path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        try:
            for record in iter_records(path, is_record=_is_meta_record):
                if not isinstance(record, dict) or record_id(record) is None:
                    continue  # nothing to join it on
                batch["id"].append(record_id(record))
                for name in columns:
                    batch[name].append(_text(record.get(name)))
                if len(batch["id"]) == _INDEX_BATCH:
                    n += len(batch["id"])
                    writer.write_table(pa.table(batch, schema=schema))
                    batch = {name: [] for name in schema.names}
        except ReleaseFileError as err:
            raise ReleaseBuildError(str(err)) from err
        n += len(batch["id"])
        writer.write_table(pa.table(batch, schema=schema))
    return n


class MetaIndex:
    """The meta columns of any ids, from the Arrow file `write_meta_index` wrote (memory-mapped, not copied)."""

    def __init__(self, path: str):
        self.table = pa.ipc.open_file(pa.memory_map(path)).read_all()
        keys = np.array([key.encode() for key in self.table["id"].to_pylist()] or [b""])
        self._order = np.argsort(keys, kind="stable")
        self._keys = keys[self._order]

    def columns(self, ids: list[str]) -> dict[str, pa.Array]:
        """`{column: values}` for `ids`, in their order; null where the meta file has no such id."""
        # Fixed-width bytes may truncate a query longer than every key: each hit is checked on the real ids.
        queries = np.array([key.encode() for key in ids], dtype=self._keys.dtype)
        found = np.minimum(np.searchsorted(self._keys, queries), len(self._keys) - 1)
        rows = pa.array(self._order[found]) if len(self.table) else pa.nulls(len(ids), pa.int64())
        hit = pc.fill_null(pc.equal(pc.take(self.table["id"], rows), pa.array(ids, pa.string())), False)
        missing = pa.scalar(None, pa.string())
        return {
            name: pc.if_else(hit, pc.take(self.table[name], rows), missing) for name in self.table.column_names[1:]
        }


class LlavaPretrain(LlavaReleaseBuilder):
    """LLaVA-Pretrain's LCS-558K (`blip_laion_cc_sbu_558k.json` [+ `_meta.json`] + `images/`)."""

    BUILDER_CONFIG_CLASS = LlavaPretrainConfig
    BUILDER_CONFIGS = [
        LlavaPretrainConfig(name=DEFAULT_CONFIG, files=(LCS558K,), sources=(DEFAULT_CONFIG,), description=DESCRIPTION)
    ]
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG

    def _meta_path(self) -> str | None:
        if not (self.config.data_dir and self.config.meta_file):
            return None
        path = os.path.join(os.path.abspath(self.config.data_dir), self.config.meta_file)
        return path if os.path.isfile(path) else None

    def _info(self) -> datasets.DatasetInfo:
        meta = self._meta_path()
        columns = meta_columns(meta) if meta else []
        features = features_with({name: datasets.Value("string") for name in columns})
        return datasets.DatasetInfo(description=self.config.description or "", features=features)

    def _split_generators(self, dl_manager):
        generators = super()._split_generators(dl_manager)
        meta = self._meta_path()
        if meta:
            index = os.path.join(self._output_dir, "meta", "index.arrow")
            write_meta_index(meta, index, [n for n in self.info.features if n in META_COLUMNS])
            for generator in generators:
                generator.gen_kwargs["meta_index"] = index
        return generators

    def _generate_tables(self, shards: list[dict], split: str, meta_index: str | None = None):
        self._meta = MetaIndex(meta_index) if meta_index else None
        yield from super()._generate_tables(shards, split)

    def _row(self, record, source: str) -> dict:
        return plain_row(record, source)

    def _table(self, rows: list[dict], schema: pa.Schema) -> pa.Table:
        extra = self._meta.columns([row["id"] for row in rows]) if self._meta else {}
        columns = {name: extra[name] if name in extra else [row[name] for row in rows] for name in schema.names}
        return pa.Table.from_pydict(columns, schema=schema)

    def meta_rows(self) -> int | None:
        """How many entries the meta file had (`None` without a meta file), read from the prepared index."""
        path = os.path.join(self.cache_dir, "meta", "index.arrow")
        if not os.path.isfile(path):
            return None
        with pa.memory_map(path) as source:
            return pa.ipc.open_file(source).read_all().num_rows
