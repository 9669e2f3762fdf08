"""The `hub-llava` console script: one subcommand per job, each defined next to the code it runs.

Each command module exposes `add_parser(subparsers)` (which sets `func`) and is listed here explicitly. A user error
ends in one `error:` line (`hub_llava.errors`; `--debug` anywhere on the line shows the traceback), and flags must be
spelled out: `--learning_rat` is refused, not taken for `--learning_rate`.
"""

import argparse
import logging
import sys

from hub_llava import env, errors, push_command
from hub_llava.convert import command as convert_command
from hub_llava.eval import compare as eval_compare
from hub_llava.eval import run as eval_run
from hub_llava.eval import score as eval_score
from hub_llava.eval import submission as eval_submission
from hub_llava.training import commands as training_commands


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` that refuses abbreviated flags; subcommands' parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hub-llava", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="Show the traceback of user errors too.")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = errors.debug_requested(argv)
    args = build_parser().parse_args([arg for arg in argv if arg != "--debug"])
    return errors.run(lambda: args.func(args), debug=debug)


if __name__ == "__main__":
    sys.exit(main())
