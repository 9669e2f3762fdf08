"""What a benchmark's answers depend on, so that a resumed `hub-llava eval` never mixes two runs' answers.

A run is the model (its resolved folder, or its Hub repo at a commit, and a fingerprint of its weights), the questions
asked (the benchmark's docs), and how they were answered (backend, dtype, generation settings). Each benchmark folder
keeps its run in `run.json`; answers already in the folder are reused only when the new run is the same, else the
runner refuses, naming what differs. Two checkpoints saved in folders with the same name (`a/tiny-llava-sft`,
`b/tiny-llava-sft`), or a folder retrained in place, are different models.
"""

import hashlib
import json
import struct
from pathlib import Path

RUN_FILE = "run.json"
_SAMPLE = 1 << 20  # bytes read from each end of a weight file: tensors change there when weights change


def weights_fingerprint(folder: Path) -> str | None:
    """A hash of a checkpoint's weight files: names, sizes, safetensors headers (tensor names, dtypes, shapes,
    offsets) and the first and last MiB of tensor data. Reads ~2 MiB per file, whatever the model's size."""
    files = sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")])
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as handle:
            start = 0
            if path.suffix == ".safetensors":
                (length,) = struct.unpack("<Q", handle.read(8))
                digest.update(handle.read(length))
                start = 8 + length
            handle.seek(start)
            digest.update(handle.read(_SAMPLE))
            handle.seek(max(start, size - _SAMPLE))
            digest.update(handle.read(_SAMPLE))
    return digest.hexdigest()[:16]


def model_identity(model_path: str) -> dict:
    """`{"model", "revision", "weights"}`: a local folder by its resolved path and weights; a Hub id by the commit of the
    snapshot in the local cache (transformers has just loaded it from there) and its weights."""
    path = Path(model_path)
    if path.is_dir():
        return {"model": str(path.resolve()), "revision": None, "weights": weights_fingerprint(path)}
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(model_path, local_files_only=True))
    except LocalEntryNotFoundError:  # not in the cache (e.g. a model only a server holds): its name is all we know
        return {"model": model_path, "revision": None, "weights": None}
    return {"model": model_path, "revision": snapshot.name, "weights": weights_fingerprint(snapshot)}


def docs_fingerprint(docs: list[dict]) -> str:
    """A hash of a benchmark's questions (all of them, before any `--limit`): ids, prompts and image paths, in order.
    Another question file, version or image folder of the benchmark gives another fingerprint."""
    digest = hashlib.sha256()
    for doc in docs:
        image = doc["image"] if isinstance(doc["image"], str | Path | None) else "<in-memory image>"
        digest.update(json.dumps([str(doc["question_id"]), doc["prompt"], str(image)], ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def run_identity(model: dict, backend: dict, dtype: str, generation_kwargs: dict, all_docs: list[dict]) -> dict:
    """The `run.json` of one benchmark: model, backend (its name and, for servers, the model name they serve; not the
    batch size, nor the servers' addresses, which change when a server restarts), dtype, generation settings and the
    benchmark's questions. A `--limit` is not part of it: a longer run resumes a shorter one."""
    served = {key: value for key, value in backend.items() if key in ("name", "served_model")}
    return {**model, "backend": served, "dtype": dtype, "generation": generation_kwargs,
            "questions": docs_fingerprint(all_docs)}  # fmt: skip


def check_resume(folder: Path, run: dict, has_answers: bool) -> None:
    """Refuses to add `run`'s answers to a folder holding another run's, naming what differs (read-only: every process
    of a sharded run checks the same files and agrees)."""
    path = folder / RUN_FILE
    if not path.is_file():
        if has_answers:
            raise ValueError(
                f"{folder} holds answers but no {RUN_FILE} saying which model and settings made them; use another "
                f"--output_dir, or delete {folder} to answer again."
            )
        return
    previous = json.loads(path.read_text(encoding="utf-8"))
    differs = [
        f"{key}: {previous.get(key)!r} there, {value!r} now"
        for key, value in run.items()
        if previous.get(key) != value
    ]
    if differs:
        raise ValueError(
            f"{folder} holds the answers of another run ({'; '.join(differs)}). Use another --output_dir, or delete "
            f"{folder} to answer again."
        )


def record_run(folder: Path, run: dict) -> None:
    """Writes the folder's `run.json` (the main process, once every process has checked it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_FILE).write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
