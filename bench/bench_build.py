"""Benchmark: building a LLaVA-format release (referenced images) vs `datasets.load_dataset("json")` on the same file;
with `--embed`, the Hub path (image bytes embedded) vs `datasets`' own embedding writers on the same rows.

    python bench/bench_build.py [--sizes 100000 300000 600000] [--json_baseline_size 600000] [--workdir DIR]
    python bench/bench_build.py --embed [--embed_sizes 10000 30000 100000] [--num_proc 1] [--workdir DIR]

Synthesises LLaVA-format files (one JSON array, ~1.65 KB per record, 12-digit string ids, COCO paths, 2-6 turns), then
times, each in its own subprocess so that peak RSS is per run (the kernel's high-water mark `ru_maxrss`, and the
process tree sampled every 20 ms):
- hub_llava's builder (`LvisInstruct4V`, `embed_images=False`, `num_proc=1`: records/s per core) at every size;
- `datasets.load_dataset("json", data_files=...)` on one size (the baseline; it needs ~9x the file in RAM).

The referenced-images path stats every image: the records point at 10,000 empty files that exist (the stat is real,
the decoding is not part of this path).

`--embed`: 2,000 real-size 640x480 JPEGs (photo-like noise, ~78 KB each) are drawn once under
`bench/results/embed_images/` and reused; each size's synthetic mix665k-format release points at them in turn.
Measured, each in its own subprocess (peak RSS of the process tree): hub_llava's Hub path as
`dataset_scripts/llava_v1_5.py` runs it (`LlavaV15` checking every image and referencing it, then
`staging.write_parquet_shards` embedding the bytes as it writes the shards `hub-llava push` uploads), and on the same
rows `datasets.Dataset.from_dict(...).cast_column("image", Image())` followed by `save_to_disk` (embeds the files) or
by `embed_table_storage` + `to_parquet` (what `push_to_hub` does per shard). The disk's sequential read speed is
measured with `dd iflag=direct` on a 1 GiB file.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil

N_IMAGES = 10_000
WORDS = "the a bus red street car man woman dog table sits near on with of in front behind large small white".split()


def write_release(path: str, n: int, seed: int = 0) -> None:
    """Writes `n` LLaVA-format records as one JSON array, streaming (never the whole list in memory)."""
    rng = random.Random(seed)
    pools = {}  # words per text -> 500 random texts of that length (drawing every word per record is slow)

    def sentence(rng, words):
        if words not in pools:
            pools[words] = [" ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "." for _ in range(500)]
        return rng.choice(pools[words])

    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        for i in range(n):
            image = i % N_IMAGES
            turns = [{"from": "human", "value": "<image>\n" + sentence(rng, 12)}]
            turns.append({"from": "gpt", "value": sentence(rng, 190)})
            for _ in range(rng.randint(0, 2)):
                turns.append({"from": "human", "value": sentence(rng, 10)})
                turns.append({"from": "gpt", "value": sentence(rng, 90)})
            record = {"id": f"{image:012d}", "image": f"coco/train2017/{image:012d}.jpg", "conversations": turns}
            f.write(("," if i else "") + json.dumps(record) + "\n")
        f.write("]\n")


def make_images(root: str) -> None:
    folder = os.path.join(root, "coco", "train2017")
    os.makedirs(folder, exist_ok=True)
    for i in range(N_IMAGES):
        open(os.path.join(folder, f"{i:012d}.jpg"), "wb").close()


BUILD = """
import resource, sys, time
from datasets.utils.tqdm import disable_progress_bars
from hub_llava.data.builders.lvis_instruct4v import LvisInstruct4V
disable_progress_bars()
data_dir, image_root, cache_dir = sys.argv[1:4]
start, cpu = time.perf_counter(), time.process_time()
builder = LvisInstruct4V(config_name="mix730k", data_dir=data_dir, image_root=image_root, embed_images=False,
                         cache_dir=cache_dir)
builder.download_and_prepare()
print(time.perf_counter() - start, time.process_time() - cpu, builder.counts().written)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

JSON = """
import resource, sys, time
import datasets
from datasets.utils.tqdm import disable_progress_bars
disable_progress_bars()
path, cache_dir = sys.argv[1:3]
start, cpu = time.perf_counter(), time.process_time()
ds = datasets.load_dataset("json", data_files=path, split="train", cache_dir=cache_dir)
print(time.perf_counter() - start, time.process_time() - cpu, len(ds))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


BREAKDOWN = """
import itertools, json, resource, sys, time
import orjson
import pyarrow as pa
from hub_llava.data.images import ImageResolver
from hub_llava.data.llava_format import llava_row
from hub_llava.data.reader import iter_json_array, iter_records
from hub_llava.data.schema import BASE_FEATURES
path, image_root, n = sys.argv[1], sys.argv[2], 20000
def cpu(f):
    start = time.process_time(); f(); return (time.process_time() - start) / n * 1e6
text = "[" + ",".join(json.dumps(r) for r in itertools.islice(iter_json_array(path), n)) + "]"
parts = {"json.loads (stdlib C decoder, whole array)": cpu(lambda: json.loads(text))}
parts["orjson.loads (whole array)"] = cpu(lambda: orjson.loads(text))
parts["streaming parse (reader.iter_json_array)"] = cpu(lambda: list(itertools.islice(iter_json_array(path), n)))
is_record = lambda r: isinstance(r, dict) and "conversations" in r
parts["orjson slices (reader.iter_records, used)"] = cpu(
    lambda: list(itertools.islice(iter_records(path, is_record=is_record), n))
)
records = list(itertools.islice(iter_json_array(path), n))
parts["LLaVA rules (llava_row)"] = cpu(lambda: [llava_row(r, "coco") for r in records])
resolver = ImageResolver(image_root, embed=False)
parts["image check (ImageResolver, referenced)"] = cpu(lambda: [resolver(r["image"]) for r in records])
rows = [dict(llava_row(r, "coco"), images=[resolver(r["image"])]) for r in records]
columns = {name: [row[name] for row in rows] for name in BASE_FEATURES}
parts["Arrow conversion (Table.from_pydict)"] = cpu(lambda: pa.Table.from_pydict(columns, schema=BASE_FEATURES.arrow_schema))
print(json.dumps(parts))
"""


N_EMBED_IMAGES = 2_000
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def make_embed_images(root: str, n: int = N_EMBED_IMAGES) -> list[int]:
    """Draws `n` 640x480 photo-like JPEGs under `root/coco/train2017/` once (kept for later runs); returns their
    sizes in bytes."""
    import numpy as np
    from PIL import Image

    folder = os.path.join(root, "coco", "train2017")
    paths = [os.path.join(folder, f"{i:012d}.jpg") for i in range(n)]
    if not all(os.path.exists(path) for path in paths):
        os.makedirs(folder, exist_ok=True)
        rng = np.random.default_rng(0)
        for path in paths:
            # Smooth colour fields plus sensor-like noise: JPEG sizes like photos' (a flat image would be ~5 KB).
            low = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((640, 480), Image.BICUBIC)
            pixels = np.asarray(low, dtype=np.int16) + rng.normal(0, 10, (480, 640, 3)).astype(np.int16)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=85)
    return [os.path.getsize(path) for path in paths]


def write_embed_release(path: str, n: int, n_images: int = N_EMBED_IMAGES) -> None:
    """`n` mix665k-style records (short VQA turns), record i pointing at image i % n_images."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        for i in range(n):
            image = i % n_images
            turns = [
                {"from": "human", "value": f"<image>\nWhat is in region {i % 97}?\nAnswer with a word or phrase."},
                {"from": "gpt", "value": f"object {i % 13}"},
            ]
            record = {"id": f"{i:012d}", "image": f"coco/train2017/{image:012d}.jpg", "conversations": turns}
            f.write(("," if i else "") + json.dumps(record) + "\n")
        f.write("]\n")


def disk_read_mb_s(folder: str, size_mb: int = 1024) -> tuple[float, str]:
    """Sequential read speed of the disk under `folder`: `dd iflag=direct` (page cache bypassed) of a file of random
    bytes written for it. Returns (MB/s, dd's own summary line)."""
    path = os.path.join(folder, "dd_read_test.bin")
    with open(path, "wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    try:
        start = time.perf_counter()
        result = subprocess.run(
            ["dd", f"if={path}", "of=/dev/null", "bs=4M", "iflag=direct"], capture_output=True, text=True, check=True
        )
        seconds = time.perf_counter() - start
    finally:
        os.remove(path)
    return size_mb * 2**20 / 1e6 / seconds, result.stderr.strip().splitlines()[-1]


EMBED_OURS = """
import json, os, resource, sys, time
from datasets.utils.tqdm import disable_progress_bars
from hub_llava.data.builders.llava_v1_5 import LlavaV15
from hub_llava.data.staging import write_parquet_shards
disable_progress_bars()
data_dir, image_root, cache_dir, out_dir, num_proc = sys.argv[1:6]
start, cpu = time.perf_counter(), time.process_time()
# As dataset_scripts/llava_v1_5.py builds (script.builder_image_options): images checked, referenced, then embedded by
# the staging as it writes the shards.
# The synthetic file is small (~25 MB at 100K records): cut it into byte ranges for num_proc, as a 1 GB release is.
size = os.path.getsize(os.path.join(data_dir, "llava_v1_5_mix665k.json"))
builder = LlavaV15(config_name="mix665k", data_dir=data_dir, image_root=image_root, cache_dir=cache_dir,
                   embed_images=False, verify_images=True, shard_bytes=max(1 << 16, size // (4 * int(num_proc))))
builder.download_and_prepare(num_proc=int(num_proc) if int(num_proc) > 1 else None)
built = time.perf_counter()
paths = write_parquet_shards(builder.as_dataset("train"), out_dir, "train", num_proc=int(num_proc))
end = time.perf_counter()
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"build_s": built - start, "stage_s": end - built, "parquet_bytes": sum(map(os.path.getsize, paths)),
                  "children_cpu_s": children.ru_utime + children.ru_stime}))
print(end - start, time.process_time() - cpu, builder.counts().written)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

EMBED_DATASETS = """
import json, os, resource, sys, time
import datasets
from datasets.table import embed_table_storage
from datasets.utils.tqdm import disable_progress_bars
disable_progress_bars()
release, image_root, out_dir, method = sys.argv[1:5]
with open(release, encoding="utf-8") as f:  # the same rows, prepared outside the timed part
    records = json.load(f)
columns = {
    "id": [r["id"] for r in records],
    "messages": [[{"role": ("user", "assistant")[i % 2], "content": t["value"].replace("<image>\\n", "")}
                  for i, t in enumerate(r["conversations"])] for r in records],
    "image": [os.path.join(image_root, r["image"]) for r in records],
}
del records
start, cpu = time.perf_counter(), time.process_time()
ds = datasets.Dataset.from_dict(columns).cast_column("image", datasets.Image())
del columns
if method == "save_to_disk":
    ds.save_to_disk(out_dir)
    written = sum(os.path.getsize(os.path.join(out_dir, name)) for name in os.listdir(out_dir))
else:  # what push_to_hub does per shard: embed the files, then write parquet
    os.makedirs(out_dir)
    embedded = ds.with_format("arrow").map(embed_table_storage, batched=True, batch_size=100)
    embedded.to_parquet(os.path.join(out_dir, "train.parquet"))
    written = os.path.getsize(os.path.join(out_dir, "train.parquet"))
print(json.dumps({"written_bytes": written}))
print(time.perf_counter() - start, time.process_time() - cpu, len(ds))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_embed(args) -> None:
    images = os.path.join(RESULTS, "embed_images")
    sizes = make_embed_images(images)
    os.makedirs(RESULTS, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench_embed_", dir=args.workdir or RESULTS)
    try:
        disk, dd_line = disk_read_mb_s(work)
        print(f"disk sequential read (dd iflag=direct, 1 GiB): {disk:,.0f} MB/s  [{dd_line}]", flush=True)
        print(f"images: {len(sizes):,} JPEGs 640x480, mean {sum(sizes) / len(sizes) / 1e3:.1f} KB", flush=True)
        results = {"disk_read_mb_s": disk, "dd": dd_line, "image_kb": sum(sizes) / len(sizes) / 1e3, "runs": []}
        for n in args.embed_sizes:
            data_dir = os.path.join(work, f"raw_{n}")
            os.makedirs(data_dir)
            release = os.path.join(data_dir, "llava_v1_5_mix665k.json")
            write_embed_release(release, n)
            image_bytes = sum(sizes[i % len(sizes)] for i in range(n))
            runs = [
                (
                    "hub_llava",
                    EMBED_OURS,
                    [data_dir, images, os.path.join(work, "cache"), os.path.join(work, "out"), str(args.num_proc)],
                )
            ]
            if n in args.embed_baseline_sizes:
                for method in ("save_to_disk", "to_parquet"):
                    runs.append(
                        (f"datasets {method}", EMBED_DATASETS, [release, images, os.path.join(work, "out"), method])
                    )
            for name, code, argv in runs:
                r = run_measured(code, *argv)
                assert r["rows"] == n, r
                r.update(name=name, records=n, image_mb=image_bytes / 1e6, records_per_s=n / r["seconds"],
                         image_mb_per_s=image_bytes / 1e6 / r["seconds"])  # fmt: skip
                results["runs"].append(r)
                print(
                    f"{name:24s} {n:>8,} records ({image_bytes / 1e9:5.2f} GB of images): {r['records_per_s']:7,.0f} "
                    f"records/s, {r['image_mb_per_s']:6,.1f} MB/s of image bytes, {r['seconds']:6.1f} s, peak RSS "
                    f"{r['peak_rss_mb']:,.0f} MB"
                    + (f"  (build {r['build_s']:.1f} s + stage {r['stage_s']:.1f} s)" if "build_s" in r else ""),
                    flush=True,
                )
                for folder in ("cache", "out"):
                    shutil.rmtree(os.path.join(work, folder), ignore_errors=True)
            shutil.rmtree(data_dir)
        for n in args.embed_baseline_sizes:
            by_name = {r["name"]: r for r in results["runs"] if r["records"] == n}
            if "hub_llava" in by_name:
                ours = by_name["hub_llava"]
                for name in ("datasets save_to_disk", "datasets to_parquet"):
                    base = by_name[name]
                    print(
                        f"ratio at {n:,} vs {name}: MB/s x{ours['image_mb_per_s'] / base['image_mb_per_s']:.2f}, "
                        f"peak RSS x{ours['peak_rss_mb'] / base['peak_rss_mb']:.2f}"
                    )
        ours = [r for r in results["runs"] if r["name"] == "hub_llava"]
        rss = [r["peak_rss_mb"] for r in ours]
        print(
            f"hub_llava vs the disk: {max(r['image_mb_per_s'] for r in ours):,.0f} MB/s of image bytes, target "
            f">= {disk / 2:,.0f} (read speed / 2); peak RSS {min(rss):,.0f}-{max(rss):,.0f} MB from "
            f"{ours[0]['records']:,} to {ours[-1]['records']:,} records"
        )
        print(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summary(r: dict) -> str:
    return (
        f"{r['records_per_cpu_s']:>9,.0f} records per CPU-second (1 process), {r['records_per_s']:>9,.0f} records/s "
        f"wall-clock, peak RSS {r['peak_rss_mb']:,.0f} MB"
    )


def run_measured(code: str, *args: str) -> dict:
    """Runs `code` in a fresh Python, sampling the peak RSS of its process tree."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    peak, done = 0, threading.Event()

    def sample():
        nonlocal peak
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                rss = parent.memory_info().rss + sum(c.memory_info().rss for c in parent.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode:
        raise RuntimeError(f"benchmark subprocess failed ({proc.returncode})")
    elapsed, cpu, rows, max_rss_kb = out.split()[-4:]
    # The kernel's high-water mark of the process (ru_maxrss) and the sampled peak of the process tree agree when
    # nothing else runs; the larger is reported.
    peak = max(peak, int(max_rss_kb) * 1024)
    result = {"seconds": float(elapsed), "cpu_seconds": float(cpu), "rows": int(rows), "peak_rss_mb": peak / 2**20}
    lines = out.strip().splitlines()
    if len(lines) >= 3 and lines[-3].startswith("{"):  # a JSON line of extra figures before the usual two lines
        result.update(json.loads(lines[-3]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 600_000])
    parser.add_argument("--json_baseline_size", type=int, default=600_000, help="0 to skip the baseline.")
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--breakdown", action="store_true", help="Also time the parts of a record's cost (first size, 20K records)."
    )
    parser.add_argument("--embed", action="store_true", help="Measure the embedded-images Hub path instead.")
    parser.add_argument("--embed_sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--embed_baseline_sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--num_proc", type=int, default=1, help="--embed: processes of hub_llava's build and staging.")
    args = parser.parse_args()
    if args.embed:
        return run_embed(args)
    work = tempfile.mkdtemp(prefix="bench_build_", dir=args.workdir)
    try:
        make_images(os.path.join(work, "images"))
        results = {"builder": {}, "json": None}
        for n in sorted(set(args.sizes) | ({args.json_baseline_size} - {0})):
            data_dir = os.path.join(work, f"raw_{n}")
            os.makedirs(data_dir)
            path = os.path.join(data_dir, "lvis_instruct4v_mix730k.json")
            write_release(path, n)
            size_mb = os.path.getsize(path) / 2**20
            if n in args.sizes:
                r = run_measured(BUILD, data_dir, os.path.join(work, "images"), os.path.join(work, f"cache_{n}"))
                assert r["rows"] == n, r
                r.update(file_mb=size_mb, records_per_s=n / r["seconds"], records_per_cpu_s=n / r["cpu_seconds"])
                results["builder"][n] = r
                print(f"hub_llava builder  {n:>9,} records ({size_mb:,.0f} MB): {summary(r)}", flush=True)
                shutil.rmtree(os.path.join(work, f"cache_{n}"))
                if args.breakdown and "breakdown" not in results:
                    out = subprocess.run(
                        [sys.executable, "-c", BREAKDOWN, path, os.path.join(work, "images")],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    results["breakdown"] = json.loads(out.splitlines()[-1])
                    build_us = 1e6 / r["records_per_cpu_s"]
                    print(f"  whole build: {build_us:.1f} us of CPU per record; parts (20K records, CPU us/record):")
                    for part, us in results["breakdown"].items():
                        print(f"    {part:45s} {us:6.1f}")
            if n == args.json_baseline_size:
                r = run_measured(JSON, path, os.path.join(work, "json_cache"))
                assert r["rows"] == n, r
                r.update(file_mb=size_mb, records_per_s=n / r["seconds"], records_per_cpu_s=n / r["cpu_seconds"])
                results["json"] = r
                print(f"load_dataset(json) {n:>9,} records ({size_mb:,.0f} MB): {summary(r)}", flush=True)
                shutil.rmtree(os.path.join(work, "json_cache"))
            shutil.rmtree(data_dir)
        if results["json"] and args.json_baseline_size in results["builder"]:
            ours, base = results["builder"][args.json_baseline_size], results["json"]
            print(
                f"ratio at {args.json_baseline_size:,}: records per CPU-second x"
                f"{ours['records_per_cpu_s'] / base['records_per_cpu_s']:.2f}, wall-clock x"
                f"{ours['records_per_s'] / base['records_per_s']:.2f}, peak RSS "
                f"{base['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x lower"
            )
        print(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
