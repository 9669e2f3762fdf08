"""Build SVIT's configs from the release files, stage them as the Hub repo, optionally push.

    python dataset_scripts/svit.py --raw_dir R --image_root I --output_dir O [--num_proc N]
        [--configs conversation referring_qa mix_665k ...] [--image_data VG/image_data.json] [--test_split]
        [--llava_boxes [--format_seed S]] [--no_verify_images] [--missing_images error|skip]
        [--push_to_hub --repo_id hub_llava/svit [--private] [--revision REV] [--create_pr] [--dry_run]]

R is the BAAI/SVIT download (gated on the Hub: accept its terms first), unzipped: `data/conversation.json`,
`data/complex_reasoning.json`, `data/detail_description.json`, `data/referring_qa.json` and
`format/llava-v1.5/SVIT_core_150K.json`, `format/llava-v1.5/SVIT_mix_665K.json`; every config whose file is there is
built. I holds Visual Genome (`vg/VG_100K/`, `vg/VG_100K_2/`; a flat folder or DataOptim's `visual_genome/` works
too for the original configs) and, for `mix_665k`, LLaVA-1.5's other image roots (`coco/train2017`, `gqa/images`,
`ocr_vqa/images`, `textvqa/train_images`). O receives:

    O/repo/               the exact Hub repo: README.md (configs YAML + card) and <config>/<split>-*.parquet
    O/rejects.jsonl       every record not written, with its config, file, id and reason
    O/build_report.json   per config: read = written + rejected, with reasons; command and version

The three are replaced together (a build_report.json always describes the repo and rejects beside it). While it runs,
the build works in O/.build-* and O/.staging-* and shows its progress on stderr; a run that was killed leaves them,
and the next run into O removes them (or finishes moving a build that was staged whole) and says so.
"""

import argparse
import os
import shutil
import sys

from hub_llava.data.builders.svit import (
    CONFIG_FILES,
    DEFAULT_CONFIG,
    DESCRIPTIONS,
    Svit,
    grounding_stats,
    qa_count,
    repeated_ids,
)
from hub_llava.data.rejects import Counts, check_nonempty
from hub_llava.data.script import add_common_arguments, builder_image_options, count_line, run
from hub_llava.data.staging import BuiltConfig

BUILDER = Svit  # builds DEFAULT_REPO_ID's configs (tests/test_recipes.py checks the recipes against them)
DEFAULT_REPO_ID = "hub_llava/svit"
CARD_TEMPLATE = "dataset_card_svit.md.jinja"
CARD_DATA = {
    "license": "cc-by-4.0",
    "pretty_name": "SVIT",
    "language": ["en"],
    "task_categories": ["image-text-to-text", "visual-question-answering"],
    "tags": ["llava", "svit", "visual-genome", "gpt-4", "visual-instruction-tuning", "grounding"],
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, DEFAULT_REPO_ID, list(CONFIG_FILES))
    parser.add_argument("--image_data", default=None, help="VG's image_data.json: folders and sizes, no file opened.")
    parser.add_argument("--test_split", action="store_true", help="Hold out SVIT's 10,808 test images as `test`.")
    parser.add_argument("--llava_boxes", action="store_true", help="referring_qa: LLaVA-1.5 text (padded boxes).")
    parser.add_argument("--format_seed", type=int, default=0, help="Seed of the format sentences (--llava_boxes).")
    return parser.parse_args(argv)


def available_configs(raw_dir: str, requested: list[str] | None) -> list[str]:
    """The configs to build: the requested ones (their file must exist), or every config whose file exists."""

    def present(name):
        return os.path.isfile(os.path.join(raw_dir, CONFIG_FILES[name]))

    if requested:
        for name in requested:
            if not present(name):
                raise FileNotFoundError(f"config {name} needs {CONFIG_FILES[name]} in {os.path.abspath(raw_dir)}")
        return requested
    found = [name for name in CONFIG_FILES if present(name)]
    if not found:
        raise FileNotFoundError(
            f"no release file in {os.path.abspath(raw_dir)}; expected any of {list(CONFIG_FILES.values())}"
        )
    return found


def build(args, name: str, cache_dir: str) -> BuiltConfig:
    test_split = args.test_split and name != "mix_665k"  # the held-out ids are SVIT's VG images; the mix has others
    builder = Svit(
        config_name=name,
        data_dir=args.raw_dir,
        image_root=args.image_root,
        image_data=args.image_data,
        **builder_image_options(args),
        test_split=test_split,
        llava_boxes=args.llava_boxes and name == "referring_qa",
        format_seed=args.format_seed,
        cache_dir=cache_dir,
    )
    builder.download_and_prepare(num_proc=args.num_proc)
    counts, splits, extra = Counts(), {}, {"qas": 0}
    for split, info in builder.info.splits.items():
        split_counts = builder.counts(split)
        counts.read += split_counts.read
        counts.written += split_counts.written
        counts.rejected.update(split_counts.rejected)
        if info.num_examples:  # an empty split (no held-out image in the file) is not staged
            splits[split] = builder.as_dataset(split)
            extra["qas"] += qa_count(splits[split])
            if name == "referring_qa":
                for key, value in grounding_stats(splits[split]).items():
                    extra[key] = extra.get(key, 0) + value
    extra["repeated_ids"] = repeated_ids(list(splits.values()))
    rows = ", ".join(f"{split} {len(ds):,}" for split, ds in splits.items())
    print(
        count_line(name, counts)
        + f"; rows {rows}; QAs {extra['qas']:,}"
        + (f"; regions {extra['regions']:,}, unparsed {extra['regions_unparsed']:,}" if "regions" in extra else "")
        + (f"; WARNING: {extra['repeated_ids']:,} rows repeat an id" if extra["repeated_ids"] else "")
    )
    rejects = os.path.join(cache_dir, f"{name}.rejects.jsonl")
    with open(rejects, "w", encoding="utf-8") as out:
        for split in builder.info.splits:
            with open(builder.rejects_path(split), encoding="utf-8") as f:
                shutil.copyfileobj(f, out)
    check_nonempty(name, counts, rejects)
    return BuiltConfig(
        name=name, splits=splits, counts=counts, rejects_path=rejects, description=DESCRIPTIONS[name], extra=extra
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    return run(
        args,
        argv,
        script="dataset_scripts/svit.py",
        find_configs=lambda: available_configs(args.raw_dir, args.configs),
        build=lambda name, cache_dir: build(args, name, cache_dir),
        default_config=DEFAULT_CONFIG,
        card_template=CARD_TEMPLATE,
        card_data=CARD_DATA,
        card_context={"llava_boxes": args.llava_boxes, "test_split": args.test_split},
    )


if __name__ == "__main__":
    sys.exit(main())
