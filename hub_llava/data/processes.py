"""Worker processes that end with the process that started them, however it ends.

`datasets` prepares a split with `num_proc` in a `multiprocess.Pool` (and a `Manager` process for its progress queue,
`datasets.utils.py_utils.iflatmap_unordered`); staging writes shards in a `multiprocessing.Pool`. Neither child
notices when its parent is killed (SIGKILL, the OOM killer): a worker stays blocked on its task pipe, whose write end
the manager still holds, forever. `datasets` takes no pool initializer, so the hook is at the fork itself: while
`children_die_with_parent()` is active, every process this one forks asks the kernel (Linux `prctl(PR_SET_PDEATHSIG)`)
to SIGKILL it when the thread that forked it ends. Pools fork from the thread that creates them, here the build's.

Linux only, and only for forked children (pools' default start method there): elsewhere this does nothing.
"""

import contextlib
import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_armed = 0  # > 0 while some `children_die_with_parent()` is active; inherited by the children (their forks too)
_forking_pid = None


def _find_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # a libc without prctl
        return None


_prctl = _find_prctl()


def _before_fork() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _after_fork_in_child() -> None:
    if not _armed or _prctl is None:
        return
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != _forking_pid:  # the parent died before the request was made: it will never be signalled
        os._exit(1)


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def available() -> bool:
    """Whether children can be tied to their parent here (Linux)."""
    return _prctl is not None


@contextlib.contextmanager
def children_die_with_parent():
    """Within this context, every process forked by this one is killed when its parent thread ends (see the module
    docstring). Re-entrant; outside it, forks are left as they are."""
    global _armed
    _armed += 1
    try:
        yield
    finally:
        _armed -= 1
