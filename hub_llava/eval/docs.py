"""Reading benchmark questions into the runner's docs: `{"question_id", "image", "question", "prompt"}`.

`question_id` keeps the type it has in the question file (the official scripts look ids up with it), `image` is a
path or a PIL image, `question` is what the model is asked (before the benchmark's pre/post prompt) and `prompt` what
the answer file records (LLaVA records the question file's text); `category` (optional) the question file's category,
kept in details.jsonl for per-category comparisons.
"""

from pathlib import Path

from hub_llava.eval.files import read_json_or_jsonl


def llava_question_docs(benchmark, data_dir) -> list[dict]:
    """Docs from a LLaVA question file (`{"question_id", "image", "text", "category"}` per line)."""
    folder = benchmark.folder(data_dir)
    path = folder / benchmark.config["data_files"]["questions"]
    images = folder / benchmark.config.get("image_folder", "")
    docs = []
    for number, row in enumerate(read_json_or_jsonl(path), 1):
        if "question_id" not in row or "text" not in row:
            raise ValueError(f"{path}: question #{number} has no 'question_id' or 'text'.")
        docs.append(
            {
                "question_id": row["question_id"],
                "image": images / row["image"] if row.get("image") else None,
                "question": row["text"],
                "prompt": row["text"],
                "category": row.get("category"),
            }
        )
    return docs


def image_file(path) -> Path | None:
    """The image file a question refers to (SEED-style ids without an extension are tried with the usual ones), or
    None if there is none."""
    path = Path(path)
    candidates = [path] + [path.with_name(path.name + suffix) for suffix in (".jpg", ".png", ".jpeg")]
    return next((candidate for candidate in candidates if candidate.exists()), None)


def resolve_image(path: Path):
    """Opens an image file as RGB (see `image_file`)."""
    from PIL import Image

    found = image_file(path)
    if found is None:
        raise FileNotFoundError(f"Image not found: {path}")
    return Image.open(found).convert("RGB")
