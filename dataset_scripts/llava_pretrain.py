"""Build LLaVA-1.5's stage-1 data (LCS-558K, liuhaotian/LLaVA-Pretrain), stage it as the Hub repo, optionally push.

    python dataset_scripts/llava_pretrain.py --raw_dir LLaVA-Pretrain --image_root LLaVA-Pretrain/images \\
        --output_dir O [--num_proc N] [--no_verify_images] [--missing_images error|skip]
        [--push_to_hub --repo_id hub_llava/llava_pretrain [--private] [--revision REV] [--create_pr] [--dry_run]]

R is the LLaVA-Pretrain download: `blip_laion_cc_sbu_558k.json` (config `lcs558k`) and, optionally,
`blip_laion_cc_sbu_558k_meta.json` (its `url` and `blip_caption` fields become columns, joined on `id`). I is
`images.zip` unzipped (`00453/004539375.jpg`, ...), the folder LLaVA's `pretrain.sh` passes as `--image_folder`.
O receives:

    O/repo/               the exact Hub repo: README.md (configs YAML + card) and lcs558k/train-*.parquet
    O/rejects.jsonl       every record not written, with its file, id and reason (more than one round, no <image>, ...)
    O/build_report.json   read = written + rejected, with reasons; command and version

The three are replaced together (a build_report.json always describes the repo and rejects beside it). While it runs,
the build works in O/.build-* and O/.staging-* and shows its progress on stderr; a run that was killed leaves them,
and the next run into O removes them (or finishes moving a build that was staged whole) and says so.
"""

import argparse
import sys

from hub_llava.data.builders.llava_pretrain import (
    DEFAULT_CONFIG,
    DESCRIPTION,
    LCS558K,
    META,
    META_COLUMNS,
    LlavaPretrain,
)
from hub_llava.data.rejects import check_nonempty
from hub_llava.data.script import add_common_arguments, builder_image_options, configs_present, count_line, run
from hub_llava.data.staging import BuiltConfig

BUILDER = LlavaPretrain  # builds DEFAULT_REPO_ID's configs (tests/test_recipes.py checks the recipes against them)
DEFAULT_REPO_ID = "hub_llava/llava_pretrain"
CARD_TEMPLATE = "dataset_card_llava_pretrain.md.jinja"
CARD_DATA = {
    # The release states no licence of its own (`license: other`); its sources' terms apply (see the card).
    "license": "other",
    "license_name": "laion-cc-sbu-blip-terms",
    "license_link": "https://huggingface.co/datasets/liuhaotian/LLaVA-Pretrain",
    "pretty_name": "LLaVA-Pretrain LCS-558K",
    "language": ["en"],
    "task_categories": ["image-text-to-text", "image-to-text"],
    "tags": ["llava", "llava-1.5", "laion", "conceptual-captions", "sbu", "blip", "pretraining", "captioning"],
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, DEFAULT_REPO_ID, [DEFAULT_CONFIG])
    return parser.parse_args(argv)


def build(args, name: str, cache_dir: str) -> BuiltConfig:
    builder = LlavaPretrain(
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
    extra, line = {"meta_rows": builder.meta_rows()}, count_line(name, counts)
    if extra["meta_rows"] is not None:
        extra["meta_columns"] = [column for column in META_COLUMNS if column in dataset.column_names]
        joined = dataset.data.column(extra["meta_columns"][0]) if extra["meta_columns"] else None
        extra["without_meta"] = joined.null_count if joined is not None else len(dataset)
        line += f"; {META}: {extra['meta_rows']:,} entries, {extra['without_meta']:,} row(s) without one"
    print(line)
    return BuiltConfig(
        name=name,
        splits={"train": dataset},
        counts=counts,
        rejects_path=builder.rejects_path(),
        description=DESCRIPTION,
        extra=extra,
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    return run(
        args,
        argv,
        script="dataset_scripts/llava_pretrain.py",
        find_configs=lambda: configs_present(args.raw_dir, args.configs, {DEFAULT_CONFIG: (LCS558K,)}),
        build=lambda name, cache_dir: build(args, name, cache_dir),
        default_config=DEFAULT_CONFIG,
        card_template=CARD_TEMPLATE,
        card_data=CARD_DATA,
        card_context={},
    )


if __name__ == "__main__":
    sys.exit(main())
