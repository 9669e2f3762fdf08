import ctypes
import os
import signal
import subprocess
import sys

import psutil
import pytest
from build_processes import kill, wait_gone

from hub_llava.data import processes

# Forks one child outside the context and a pool of two inside it, then waits to be killed.
PARENT = """
import multiprocessing, os, sys, time
from hub_llava.data.processes import children_die_with_parent

plain = os.fork()
if plain == 0:
    time.sleep(120)
    os._exit(0)
with children_die_with_parent():
    pool = multiprocessing.get_context("fork").Pool(2)
pool.map_async(time.sleep, [120, 120])
print(plain, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not processes.available(), reason="Linux only (prctl)")
def test_children_forked_in_the_context_die_with_their_parent_and_others_do_not():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    children = []
    try:
        plain = int(parent.stdout.readline())
        children = psutil.Process(parent.pid).children()
        workers = [child for child in children if child.pid != plain]
        assert len(workers) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert wait_gone(workers, timeout=5) == []
        assert [child.pid for child in wait_gone(children, timeout=0.5)] == [plain]  # not asked to: still there
    finally:
        kill(children)
        parent.kill()
        parent.wait()


def _death_signal_of_a_fork() -> int:
    """The death signal of a child forked now (`PR_GET_PDEATHSIG`), read by the child and sent back as its exit code."""
    pid = os.fork()
    if pid == 0:
        value = ctypes.c_int(-1)
        ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0)
        os._exit(value.value)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(not processes.available(), reason="Linux only (prctl)")
def test_only_forks_inside_the_context_get_a_death_signal():
    assert _death_signal_of_a_fork() == 0
    with processes.children_die_with_parent():
        with processes.children_die_with_parent():
            assert _death_signal_of_a_fork() == signal.SIGKILL
        assert _death_signal_of_a_fork() == signal.SIGKILL  # re-entrant: still on after the inner one
    assert _death_signal_of_a_fork() == 0
