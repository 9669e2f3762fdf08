"""How hub_llava's entry points end on a user's mistake: one `error: ...` line on stderr and exit status 1.

A missing file, a bad flag value, an unsupported config or a checkpoint the Hub refuses is the user's to fix, and a
15-line traceback only hides what to do. Real bugs stay loud: only the exceptions below are turned into one line,
and `--debug` or `HUB_LLAVA_DEBUG=1` shows the traceback of those too. Output cut short by the reader
(`hub-llava score ... | head`) ends quietly, as in other Unix tools.
"""

import os
import sys
from collections.abc import Callable

DEBUG_ENV = "HUB_LLAVA_DEBUG"


class UserError(Exception):
    """An error the user can act on, raised where no built-in exception says it (e.g. a Hub push refused)."""


# ValueError: bad values, configs, records; OSError: missing files and folders (transformers raises OSError for a
# model path that does not exist); UserError: hub_llava's own (push, backend, Hub source).
USER_ERRORS = (UserError, ValueError, OSError)


def debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run(main: Callable[[], int | None], debug: bool = False) -> int:
    """Runs `main()`, turning user errors into one `error:` line (exit status 1) unless `debug`."""
    try:
        return main() or 0
    except BrokenPipeError:
        # The reader closed the pipe: point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if debug:
            raise
        message = " ".join((str(err) or type(err).__name__).split())  # one line, whatever the message holds
        print(f"error: {message} (--debug or {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1
