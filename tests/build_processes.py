"""Helpers of the tests that stop builds midway: a FIFO that holds a build at a known point, and process checks.

A FIFO in place of an image holds the build exactly where a worker opens that image: `open` blocks until a writer
comes, then `read` until the writer writes or closes. So the test knows, without timing, that the build is running
and where it is (`writer_once_opened`), and decides when it goes on.
"""

import errno
import os
import time

import psutil


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes still running (a zombie has ended: only its exit status is left to collect)."""
    running = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            pass
    return running


def wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Waits up to `timeout` seconds for the processes to end; returns those still running."""
    deadline = time.monotonic() + timeout
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(processes)


def kill(processes: list[psutil.Process]) -> None:
    for process in alive(processes):
        process.kill()


def writer_once_opened(fifo, process, timeout: float = 120) -> int:
    """Opens the write end of `fifo` as soon as someone has opened it for reading (a worker of the build run by
    `process`, a `subprocess.Popen`), and returns it; the reader then waits in `read` until it is written or closed.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        if process.poll() is not None:
            raise AssertionError(f"the build ended (exit status {process.returncode}) before it read {fifo}")
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing opened {fifo} within {timeout} s")
        time.sleep(0.05)
