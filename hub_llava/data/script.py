"""What every dataset script shares: the command-line flags, and build -> stage -> report -> (push) with clear errors.

A script (`dataset_scripts/<name>.py`) supplies only its own flags, how to find its configs in the raw folder and how
to build one config; `run` does the rest the same way for every release. Builds reference the image files
(`builder_image_options`) and staging embeds them as it writes the Parquet shards: every image byte is written once.
"""

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Callable

import pyarrow.compute as pc
from tqdm.auto import tqdm

from hub_llava.data.builders.llava_release import ReleaseBuildError
from hub_llava.data.images import MISSING_POLICIES, ImageRootError, MissingImagesError, check_image_root
from hub_llava.data.rejects import EmptyConfigError
from hub_llava.data.staging import (
    REJECTS_FILE,
    REPORT_FILE,
    STAGING_PREFIX,
    BuiltConfig,
    finish_interrupted_moves,
    stage_repo,
)
from hub_llava.data.workdirs import WorkDir, remove_stale

BUILD_PREFIX = ".build-"  # the builders' cache during a run, inside output_dir


def add_common_arguments(parser: argparse.ArgumentParser, default_repo_id: str, configs: list[str]) -> None:
    """The flags every dataset script takes (inputs, build options, staging, push)."""
    parser.add_argument("--raw_dir", required=True, help="Folder holding the release files.")
    parser.add_argument("--image_root", required=True, help="Folder holding the image roots (coco/, vg/, ...).")
    parser.add_argument("--output_dir", required=True, help="Receives repo/, rejects.jsonl and build_report.json.")
    parser.add_argument(
        "--num_proc",
        type=int,
        default=None,
        help="Processes for preparation (byte-range shards) and for writing the Parquet shards.",
    )
    parser.add_argument("--configs", nargs="+", choices=configs, help="Configs to build (default: all found).")
    parser.add_argument(
        "--no_verify_images",
        "--no_embed_images",  # its former name
        dest="no_verify_images",
        action="store_true",
        help="Do not check that every image is whole (faster). The staged repo embeds the images either way.",
    )
    parser.add_argument("--missing_images", choices=MISSING_POLICIES, default="error")
    parser.add_argument("--max_shard_size", default="500MB", help="Maximum size of a parquet shard.")
    parser.add_argument("--push_to_hub", action="store_true", help="Push O/repo with hub_llava.hub.push_dataset.")
    parser.add_argument("--repo_id", default=default_repo_id)
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--create_pr", action="store_true")
    parser.add_argument(
        "--dry_run", action="store_true", help="With --push_to_hub: run the push checks, push nothing."
    )


def builder_image_options(args: argparse.Namespace) -> dict:
    """The builder's image options for a script's build: images referenced (staging reads and embeds them; embedding
    here too would write every image twice, once into the builder's cache), checked unless `--no_verify_images`."""
    return {"embed_images": False, "verify_images": not args.no_verify_images, "missing_images": args.missing_images}


def configs_present(raw_dir: str, requested: list[str] | None, config_files: dict[str, tuple[str, ...]]) -> list[str]:
    """The configs to build: the requested ones (all their files must be in `raw_dir`), or every config whose files
    are there, in `config_files` order.

    Raises:
        `FileNotFoundError`: naming the missing files of a requested config, or what was looked for.
    """
    present = set(os.listdir(raw_dir)) if os.path.isdir(raw_dir) else set()
    if requested:
        for name in requested:
            missing = [file for file in config_files[name] if file not in present]
            if missing:
                raise FileNotFoundError(f"config {name} needs {', '.join(missing)} in {os.path.abspath(raw_dir)}")
        return requested
    found = [name for name, files in config_files.items() if all(file in present for file in files)]
    if not found:
        expected = sorted({file for files in config_files.values() for file in files})
        raise FileNotFoundError(f"no release file in {os.path.abspath(raw_dir)}; expected any of {expected}")
    return found


def source_counts(dataset) -> dict[str, int]:
    """Rows per `source` value, largest first (read from the Arrow column; no row is decoded)."""
    counts = pc.value_counts(dataset.data.column("source")).to_pylist()
    return dict(sorted(((c["values"], c["counts"]) for c in counts), key=lambda item: (-item[1], item[0])))


def count_line(name: str, counts) -> str:
    """`<config>: read N = written W + rejected R (reason: n, ...)`, the line every script prints per config."""
    reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.rejected.items()))
    line = f"{name}: read {counts.read:,} = written {counts.written:,} + rejected {counts.n_rejected:,}"
    return line + (f" ({reasons})" if reasons else "")


def clean_output_dir(output_dir: str) -> list[str]:
    """Puts `output_dir` right after runs that were stopped: finishes a move into place that one left half done and
    removes the temporary folders they left (never one that a running build owns); returns what to tell the user."""
    lines = [
        f"finished moving the build that the stopped run staged in {name} into place"
        for name in finish_interrupted_moves(output_dir)
    ]
    removed = remove_stale(output_dir, (BUILD_PREFIX, STAGING_PREFIX))
    if removed:
        folders = ", ".join(f"{name} ({tqdm.format_sizeof(size, 'B')})" for name, size in removed)
        lines.append(f"removed {len(removed)} temporary folder(s) that stopped runs left in {output_dir}: {folders}")
    return lines


def run(
    args: argparse.Namespace,
    argv: list[str],
    *,
    script: str,
    find_configs: Callable[[], list[str]],
    build: Callable[[str, str], BuiltConfig],
    default_config: str,
    card_template: str,
    card_data: dict,
    card_context: dict,
) -> int:
    """Builds the configs, stages `O/repo` (+ rejects and report beside it) and pushes if asked; returns the exit code.

    Args:
        find_configs (`Callable`): returns the config names to build (raises `FileNotFoundError` naming what is missing).
        build (`Callable`): `build(name, cache_dir) -> BuiltConfig` for one config.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_image_root(args.image_root)
        names = find_configs()
        os.makedirs(args.output_dir, exist_ok=True)
        for line in clean_output_dir(args.output_dir):
            print(line)
        with WorkDir.create(args.output_dir, BUILD_PREFIX) as cache:
            built = [build(name, cache.path) for name in names]
            default = default_config if default_config in names else names[0]
            for config in built:
                config.default = config.name == default
            repo = stage_repo(
                built,
                args.output_dir,
                card_template=card_template,
                card_context={"repo_id": args.repo_id, "pretty_name": card_data["pretty_name"], **card_context},
                card_data=card_data,
                command=shlex.join(["python", script, *argv]),
                max_shard_size=args.max_shard_size,
                num_proc=args.num_proc,
            )
    except (ImageRootError, MissingImagesError, ReleaseBuildError, EmptyConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"staged Hub repo: {repo}")
    print(
        f"rejects: {os.path.join(args.output_dir, REJECTS_FILE)}; report: {os.path.join(args.output_dir, REPORT_FILE)}"
    )
    if args.push_to_hub:
        return push(repo, args)
    return 0


def push(repo: str, args: argparse.Namespace) -> int:
    from hub_llava.hub import PushError, push_dataset
    from hub_llava.hub_checks import HubCheckError

    try:
        result = push_dataset(
            repo, args.repo_id, private=args.private, revision=args.revision, create_pr=args.create_pr,
            dry_run=args.dry_run,
        )  # fmt: skip
    except (HubCheckError, PushError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(f"dry run: {len(result.files)} files checked for dataset repo {args.repo_id}, nothing pushed")
    else:
        print(f"pushed: {result.url}")
    return 0
