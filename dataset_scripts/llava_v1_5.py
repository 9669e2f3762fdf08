"""Build LLaVA-1.5's instruction-tuning data (mix665k, LLaVA-Instruct-150K), stage it as the Hub repo, optionally push.

    python dataset_scripts/llava_v1_5.py --raw_dir R --image_root I --output_dir O [--num_proc N]
        [--configs mix665k llava_instruct_150k] [--no_verify_images] [--missing_images error|skip]
        [--push_to_hub --repo_id hub_llava/llava_v1_5 [--private] [--revision REV] [--create_pr] [--dry_run]]

Builds every config whose release file is in R: `llava_v1_5_mix665k.json` (`mix665k`, the default) and
`llava_instruct_150k.json` (`llava_instruct_150k`), both from liuhaotian/LLaVA-Instruct-150K. R may be the same folder
the LVIS-Instruct4V script reads (its `mix880k` needs `llava_v1_5_mix665k.json` too). I holds LLaVA-1.5's image roots
(`coco/train2017`, `gqa/images`, `ocr_vqa/images`, `textvqa/train_images`, `vg/VG_100K`, `vg/VG_100K_2`). About 355
OCR-VQA images can no longer be downloaded: the build stops naming them, or `--missing_images skip` writes those
records to the rejects. O receives:

    O/repo/               the exact Hub repo: README.md (configs YAML + card) and <config>/train-*.parquet
    O/rejects.jsonl       every record not written, with its config, file, id and reason
    O/build_report.json   per config: read = written + rejected, with reasons; command and version

The three are replaced together (a build_report.json always describes the repo and rejects beside it). While it runs,
the build works in O/.build-* and O/.staging-* and shows its progress on stderr; a run that was killed leaves them,
and the next run into O removes them (or finishes moving a build that was staged whole) and says so.
"""

import argparse
import sys

from hub_llava.data.builders.llava_v1_5 import CONFIGS, DEFAULT_CONFIG, LlavaV15
from hub_llava.data.rejects import check_nonempty
from hub_llava.data.script import (
    add_common_arguments,
    builder_image_options,
    configs_present,
    count_line,
    run,
    source_counts,
)
from hub_llava.data.staging import BuiltConfig

BUILDER = LlavaV15  # builds DEFAULT_REPO_ID's configs (tests/test_recipes.py checks the recipes against them)
DEFAULT_REPO_ID = "hub_llava/llava_v1_5"
CARD_TEMPLATE = "dataset_card_llava_v1_5.md.jinja"
CARD_DATA = {
    "license": "cc-by-4.0",  # as liuhaotian/LLaVA-Instruct-150K states it (with OpenAI's terms of use)
    "pretty_name": "LLaVA-1.5 instruction-tuning data",
    "language": ["en"],
    "task_categories": ["image-text-to-text", "visual-question-answering"],
    "tags": ["llava", "llava-1.5", "coco", "gqa", "ocr-vqa", "textvqa", "visual-genome", "visual-instruction-tuning"],
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, DEFAULT_REPO_ID, list(CONFIGS))
    return parser.parse_args(argv)


def build(args, name: str, cache_dir: str) -> BuiltConfig:
    builder = LlavaV15(
        config_name=name,
        data_dir=args.raw_dir,
        image_root=args.image_root,
        **builder_image_options(args),
        cache_dir=cache_dir,
    )
    builder.download_and_prepare(num_proc=args.num_proc)
    counts = builder.counts()
    check_nonempty(name, counts, builder.rejects_path())
    dataset = builder.as_dataset("train")
    sources = source_counts(dataset)
    print(count_line(name, counts) + "; rows by source: " + ", ".join(f"{s} {n:,}" for s, n in sources.items()))
    return BuiltConfig(
        name=name,
        splits={"train": dataset},
        counts=counts,
        rejects_path=builder.rejects_path(),
        description=CONFIGS[name][3],
        extra={"sources": sources},
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    return run(
        args,
        argv,
        script="dataset_scripts/llava_v1_5.py",
        find_configs=lambda: configs_present(args.raw_dir, args.configs, {n: (c[0],) for n, c in CONFIGS.items()}),
        build=lambda name, cache_dir: build(args, name, cache_dir),
        default_config=DEFAULT_CONFIG,
        card_template=CARD_TEMPLATE,
        card_data=CARD_DATA,
        card_context={},
    )


if __name__ == "__main__":
    sys.exit(main())
