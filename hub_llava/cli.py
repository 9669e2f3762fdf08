"""The `hub-llava` console script: one subcommand per job, each defined next to the code it runs.

Each command module exposes `add_parser(subparsers)` (which sets `func`) and is listed here explicitly.
"""

import argparse
import logging
import sys

from hub_llava import env, push_command
from hub_llava.convert import command as convert_command
from hub_llava.eval import compare as eval_compare
from hub_llava.eval import run as eval_run
from hub_llava.eval import score as eval_score
from hub_llava.eval import submission as eval_submission
from hub_llava.training import commands as training_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub-llava", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    env.add_parser(subparsers)
    eval_run.add_parser(subparsers)
    eval_score.add_parser(subparsers)
    eval_submission.add_parser(subparsers)
    eval_compare.add_parser(subparsers)
    training_commands.add_parser(subparsers)
    convert_command.add_parser(subparsers)
    push_command.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
