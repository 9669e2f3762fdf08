"""LLaVA-1.5's own stage-2 data (Liu et al., arXiv 2310.03744), as a `datasets` builder run locally.

```python
from hub_llava.data.builders.llava_v1_5 import LlavaV15

builder = LlavaV15(config_name="mix665k", data_dir="raw/", image_root="playground/data", embed_images=False)
builder.download_and_prepare(num_proc=2)
builder.counts()  # read = written + rejected, by reason
```

Configs:
- `mix665k` (default): `llava_v1_5_mix665k.json`, what LLaVA-1.5 was fine-tuned on. Paths are relative to LLaVA's
  image roots (`coco/train2017`, `gqa/images`, `ocr_vqa/images`, `textvqa/train_images`, `vg/VG_100K`,
  `vg/VG_100K_2`); `source` is the root a record's image is under, or `text` for the ~40K text-only ShareGPT records
  (whose extra `model` field is not kept: the schema is the one every LLaVA-1.5 mix shares).
- `llava_instruct_150k`: `llava_instruct_150k.json` (LLaVA-Instruct-150K, GPT-4 conversations on COCO train2017).
  Its paths are bare file names, read under `coco/train2017/` as LLaVA's `--image_folder` did; rows store the path
  relative to the image root (`coco/train2017/000000033471.jpg`), as mix665k holds the same records.

About 355 of OCR-VQA's images can no longer be downloaded: under the default policy the build stops and names the
missing files (`MissingImagesError`); `missing_images="skip"` writes those records to the rejects with their reason.
"""

from hub_llava.data.builders.llava_release import LlavaReleaseBuilder, LlavaReleaseConfig

MIX665K = "llava_v1_5_mix665k.json"
INSTRUCT_150K = "llava_instruct_150k.json"
DEFAULT_CONFIG = "mix665k"

# name -> (file, source of its records (None: the image root of each record), image folder, description)
CONFIGS = {
    "mix665k": (
        MIX665K,
        None,
        "",
        "LLaVA-1.5's instruction-tuning mix: LLaVA-Instruct, academic VQA (COCO, GQA, OCR-VQA, TextVQA, VG) and "
        "ShareGPT text",
    ),
    "llava_instruct_150k": (
        INSTRUCT_150K,
        "coco",
        "coco/train2017",
        "LLaVA-Instruct-150K: GPT-4 conversations, detailed descriptions and complex reasoning on COCO images",
    ),
}


class LlavaV15(LlavaReleaseBuilder):
    """LLaVA-1.5's instruction-tuning data (`llava_v1_5_mix665k.json`, `llava_instruct_150k.json`)."""

    BUILDER_CONFIGS = [
        LlavaReleaseConfig(name=name, files=(file,), sources=(source,), image_folder=folder, description=description)
        for name, (file, source, folder, description) in CONFIGS.items()
    ]
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG
    MISSING_IMAGES_NOTE = (
        "About 355 of LLaVA-1.5's OCR-VQA images (ocr_vqa/images) can no longer be downloaded; if those are the "
        "ones missing, `--missing_images skip` builds without them."
    )
