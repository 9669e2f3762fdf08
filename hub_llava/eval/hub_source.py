"""Benchmarks read from the Hub: lmms-eval's lmms-lab datasets, written once into LLaVA's own file layout.

A benchmark's YAML may name its Hub dataset (`hub:`): the repo, and per table (`questions`, `images`, ...) the config,
split and the columns the mapping reads (as lmms-eval's task files read them). `materialise` loads each table with
`load_dataset` and the benchmark's helper (`from_hub`) writes LLaVA's question file (LLaVA's question ids and prompts),
the ground-truth files its scorer reads and the images, under `<root>/<dataset_path>/`, exactly as `--data_dir`
would hold them. So a Hub benchmark is answered, scored and published by the same code as LLaVA's files, and its
score is the official one. A table without a column the mapping needs is an error naming the column.

`load_dataset("lmms-lab/POPE", ...)` reads a local folder of that relative path when the working directory has one
(DESIGN §1): a staged copy is used the same way, without the network.
"""

import json
import logging
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)
MARKER = ".hub_source.json"  # written last: a folder without it is rewritten


class HubSourceError(ValueError):
    """A Hub benchmark that cannot be read as its mapping expects (the CLI prints it as one `error:` line)."""


def hub_spec(benchmark) -> dict:
    spec = benchmark.config.get("hub")
    if not spec:
        raise HubSourceError(f"{benchmark.key} has no Hub source: pass --data_dir (LLaVA's playground/data/eval).")
    return spec


def _undecoded(dataset):
    """The dataset with every image left as its stored bytes (images are copied to files, never decoded); a change
    of the decode flag only, so nothing is rewritten."""
    from datasets import Image, List

    for name, feature in dataset.features.items():
        if isinstance(feature, Image):
            dataset = dataset.cast_column(name, Image(decode=False))
        elif isinstance(feature, List) and isinstance(feature.feature, Image):
            dataset = dataset.cast_column(name, List(Image(decode=False)))
    return dataset


def load_table(path: str, table: dict, scratch: Path):
    """One table of a Hub benchmark, its columns checked, images undecoded. A local copy (a folder `path` in the
    working directory) is read through a cache of its own in `scratch`: datasets' cache knows a local folder by its
    relative file names, not their content, and would serve a changed copy stale (old rows, old columns)."""
    from datasets import load_dataset

    where = f"{path} (config {table.get('name') or 'default'}, split {table['split']})"
    local = {"cache_dir": str(scratch)} if Path(path).is_dir() else {}
    dataset = load_dataset(path, table.get("name"), split=table["split"], **local)
    for column in table["columns"]:
        if column not in dataset.column_names:
            raise HubSourceError(
                f"{where} has no column {column!r}, which the mapping to LLaVA's questions needs; it has: "
                f"{', '.join(dataset.column_names)}."
            )
    return _undecoded(dataset)


def materialise(benchmark, root) -> Path:
    """Writes `benchmark`'s Hub dataset in LLaVA's layout under `root` (once: reused while its source is unchanged)
    and returns `root`, to use as the benchmark's data_dir."""
    spec = hub_spec(benchmark)
    root = Path(root)
    folder = benchmark.folder(root)
    marker = folder / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return root
    logger.info("%s: reading %s from the Hub into %s", benchmark.key, spec["path"], folder)
    with tempfile.TemporaryDirectory(dir=root.parent if root.parent.is_dir() else None) as scratch:
        tables = {role: load_table(spec["path"], table, Path(scratch)) for role, table in spec["tables"].items()}
        folder.mkdir(parents=True, exist_ok=True)
        benchmark.helper.from_hub(benchmark, tables, folder)
    marker.write_text(json.dumps(spec, indent=2) + "\n")
    return root


def image_bytes(value: dict) -> bytes:
    """The stored bytes of an undecoded image (`{"bytes", "path"}`; a local dataset may keep only the path)."""
    if value.get("bytes") is not None:
        return value["bytes"]
    return Path(value["path"]).read_bytes()


def write_image(path: Path, value: dict) -> None:
    """Copies a stored image to `path` once (benchmarks ask several questions per image)."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(value))
