"""A build's progress: records read / written / rejected, the rate and the time left, shown every second.

The processes that prepare a split (the main one, or `datasets`' `num_proc` workers) count each byte range they read
in a small file that all of them map (`RangeCounts`: one row per range, so each row has one writer and nothing is
locked). A thread of the main process sums the rows once a second into a `tqdm.auto` bar over the bytes of the
ranges, which gives the rate and the ETA; the counts and records per second follow it. Counts are taken between
slices of the reader (`reader.iter_records`'s `on_slice`), where every record read is either in a row or rejected, so
each line adds up: read = written + rejected.

The bar follows `datasets`' switch (`datasets.disable_progress_bars()`, `HF_DATASETS_DISABLE_PROGRESS_BARS=1`) and
stands in for `datasets`' own "Generating train split" bar, which counts only the rows written.
"""

import contextlib
import os
import threading
import time

import datasets
import numpy as np
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from tqdm.auto import tqdm

FIELDS = ("read", "written", "rejected", "bytes")
INTERVAL = 1.0  # seconds between two refreshes of the bar

# `datasets` forks its workers while the bar's thread runs. A fork in the middle of a redraw would give the child a
# stderr (and tqdm) lock held by a thread it does not have: the child's first warning would hang. No fork happens
# while the bar is drawn.
_drawing = threading.Lock()
os.register_at_fork(before=_drawing.acquire, after_in_parent=_drawing.release, after_in_child=_drawing.release)


class RangeCounts:
    """The counts (`FIELDS`) of each byte range of a split, in a file mapped by every process that prepares it.

    Args:
        path (`str`):
            The file; `RangeCounts.create` makes it, the workers open it by its path (an open map is not pickled).
    """

    def __init__(self, path: str):
        self.path = path
        self._rows = np.memmap(path, dtype=np.int64, mode="r+").reshape(-1, len(FIELDS))

    @classmethod
    def create(cls, path: str, num_ranges: int) -> "RangeCounts":
        np.zeros((max(1, num_ranges), len(FIELDS)), dtype=np.int64).tofile(path)
        return cls(path)

    def set(self, index: int, read: int, written: int, rejected: int, done_bytes: int) -> None:
        """The counts of range `index` so far (read = written + rejected, `done_bytes` from the range's start)."""
        self._rows[index] = (read, written, rejected, done_bytes)

    def totals(self) -> dict[str, int]:
        """The sums over the ranges, by field."""
        return dict(zip(FIELDS, np.asarray(self._rows).sum(axis=0).tolist()))


def _postfix(totals: dict[str, int], elapsed: float) -> str:
    rate = totals["read"] / elapsed if elapsed > 0 else 0.0
    return (
        f"read {totals['read']:,} = written {totals['written']:,} + rejected {totals['rejected']:,}, "
        f"{rate:,.0f} records/s"
    )


@contextlib.contextmanager
def show_progress(counts: RangeCounts, total_bytes: int, desc: str, interval: float = INTERVAL):
    """Shows `counts` as a bar over `total_bytes` while the context runs (refreshed every `interval` seconds, and a
    last time with the final counts), with `datasets`' own progress bar hidden meanwhile."""
    enabled = not are_progress_bars_disabled()
    # `datasets`' bar is hidden while ours runs, unless its environment variable forces it on (then both show).
    hide_theirs = enabled and datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is None
    bar = tqdm(
        total=total_bytes,
        desc=desc,
        unit="B",
        unit_scale=True,
        smoothing=0,  # the rate and ETA from the whole run so far: steadier than a recent average
        disable=not enabled,
        postfix=_postfix(dict.fromkeys(FIELDS, 0), 0.0),
    )
    start, stop = time.monotonic(), threading.Event()

    def refresh(display: bool = True) -> None:
        totals = counts.totals()
        with _drawing:
            bar.n = totals["bytes"]  # the rate is bar.n over the time elapsed (smoothing=0)
            bar.set_postfix_str(_postfix(totals, time.monotonic() - start), refresh=display)  # even if nothing moved

    def refresh_until_stopped() -> None:
        while not stop.wait(interval):
            refresh()

    thread = threading.Thread(target=refresh_until_stopped, name="build-progress", daemon=True)
    if hide_theirs:
        disable_progress_bars()
    if enabled:
        thread.start()
    try:
        yield bar
    finally:
        if hide_theirs:
            enable_progress_bars()
        if enabled:
            stop.set()
            thread.join()
            refresh(display=False)  # closing the bar shows it a last time
        bar.close()
