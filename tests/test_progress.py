import os
import re
import time

from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from hub_llava.data.progress import RangeCounts, show_progress

LINE = re.compile(r"read ([\d,]+) = written ([\d,]+) \+ rejected ([\d,]+), ([\d,]+) records/s")


def _numbers(line: str) -> tuple[int, ...]:
    return tuple(int(group.replace(",", "")) for group in LINE.search(line).groups()[:3])


def test_range_counts_are_summed_across_processes(tmp_path):
    counts = RangeCounts.create(str(tmp_path / "train.progress"), 3)
    counts.set(0, 10, 7, 3, 1000)
    pid = os.fork()
    if pid == 0:  # another process, opening the file by its path as `datasets`' workers do
        RangeCounts(counts.path).set(2, 5, 5, 0, 40)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert counts.totals() == {"read": 15, "written": 12, "rejected": 3, "bytes": 1040}


def test_the_bar_is_refreshed_while_nothing_moves_and_ends_on_the_final_counts(tmp_path, capsys):
    counts = RangeCounts.create(str(tmp_path / "train.progress"), 2)
    with show_progress(counts, total_bytes=2000, desc="mix880k (train)", interval=0.1) as bar:
        assert are_progress_bars_disabled()  # `datasets`' own bar is hidden meanwhile
        counts.set(0, 40, 30, 10, 1000)
        time.sleep(0.5)  # a stalled build: the bar still shows, every interval
        counts.set(1, 2, 2, 0, 1000)
    assert not are_progress_bars_disabled() and bar.n == 2000
    lines = [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if line.strip()]
    assert lines[0].startswith("mix880k (train):   0%") and _numbers(lines[0]) == (0, 0, 0)
    stalled = [line for line in lines if _numbers(line) == (40, 30, 10)]
    assert len(stalled) >= 3 and all(" 50%|" in line and "<" in line for line in stalled)  # with the ETA
    assert lines[-1].startswith("mix880k (train): 100%|") and _numbers(lines[-1]) == (42, 32, 10)
    assert all(read == written + rejected for read, written, rejected in map(_numbers, lines))


def test_no_bar_when_datasets_bars_are_disabled(tmp_path, capsys):
    counts = RangeCounts.create(str(tmp_path / "train.progress"), 1)
    disable_progress_bars()
    try:
        with show_progress(counts, total_bytes=10, desc="x", interval=0.05):
            counts.set(0, 1, 1, 0, 10)
            time.sleep(0.2)
        assert are_progress_bars_disabled()  # left as the user set it
    finally:
        enable_progress_bars()
    assert capsys.readouterr().err == ""
