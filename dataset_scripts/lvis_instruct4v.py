"""Build LVIS-Instruct4V's configs from the release files, stage them as the Hub repo, optionally push.

    python dataset_scripts/lvis_instruct4v.py --raw_dir R --image_root I --output_dir O [--num_proc N]
        [--configs lvis_instruct4v mix730k ...] [--no_verify_images] [--missing_images error|skip]
        [--push_to_hub --repo_id hub_llava/lvis_instruct4v [--private] [--revision REV] [--create_pr] [--dry_run]]

Builds every config whose release file(s) are in R (`lvis_instruct4v_220k.json`, `lvis_instruct4v_mix730k.json`,
`lvis_instruct4v_nodetail_mix619k.json`; `mix880k` also needs LLaVA-1.5's `llava_v1_5_mix665k.json`). I holds the
image roots (`coco/train2017`, `coco/val2017`, `gqa/images`, `ocr_vqa/images`, `textvqa/train_images`, `vg/VG_100K`,
`vg/VG_100K_2`). O receives:

    O/repo/               the exact Hub repo: README.md (configs YAML + card) and <config>/train-*.parquet
    O/rejects.jsonl       every record not written, with its config, file, id and reason
    O/build_report.json   per config: read = written + rejected, with reasons; command and version

The three are replaced together (a build_report.json always describes the repo and rejects beside it). While it runs,
the build works in O/.build-* and O/.staging-* and shows its progress on stderr; a run that was killed leaves them,
and the next run into O removes them (or finishes moving a build that was staged whole) and says so.
"""

import argparse
import sys

from hub_llava.data.builders.lvis_instruct4v import CONFIGS, LvisInstruct4V
from hub_llava.data.rejects import check_nonempty
from hub_llava.data.script import add_common_arguments, builder_image_options, configs_present, count_line, run
from hub_llava.data.staging import BuiltConfig

BUILDER = LvisInstruct4V  # builds DEFAULT_REPO_ID's configs (tests/test_recipes.py checks the recipes against them)
DEFAULT_REPO_ID = "hub_llava/lvis_instruct4v"
DEFAULT_CONFIG = "lvis_instruct4v"
CARD_TEMPLATE = "dataset_card_lvis_instruct4v.md.jinja"
CARD_DATA = {
    "license": "mit",
    "pretty_name": "LVIS-Instruct4V",
    "language": ["en"],
    "task_categories": ["image-text-to-text", "visual-question-answering"],
    "tags": ["llava", "lvis", "coco", "gpt-4v", "visual-instruction-tuning"],
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, DEFAULT_REPO_ID, list(CONFIGS))
    return parser.parse_args(argv)


def available_configs(raw_dir: str, requested: list[str] | None) -> list[str]:
    """The configs to build: the requested ones (all their files must exist), or every config whose files exist."""
    return configs_present(raw_dir, requested, {name: files for name, (files, _, _) in CONFIGS.items()})


def build(args, name: str, cache_dir: str) -> BuiltConfig:
    builder = LvisInstruct4V(
        config_name=name,
        data_dir=args.raw_dir,
        image_root=args.image_root,
        **builder_image_options(args),
        cache_dir=cache_dir,
    )
    builder.download_and_prepare(num_proc=args.num_proc)
    counts = builder.counts()
    print(count_line(name, counts))
    check_nonempty(name, counts, builder.rejects_path())
    return BuiltConfig(
        name=name,
        splits={"train": builder.as_dataset("train")},
        counts=counts,
        rejects_path=builder.rejects_path(),
        description=CONFIGS[name][2],
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    return run(
        args,
        argv,
        script="dataset_scripts/lvis_instruct4v.py",
        find_configs=lambda: available_configs(args.raw_dir, args.configs),
        build=lambda name, cache_dir: build(args, name, cache_dir),
        default_config=DEFAULT_CONFIG,
        card_template=CARD_TEMPLATE,
        card_data=CARD_DATA,
        card_context={},
    )


if __name__ == "__main__":
    sys.exit(main())
