"""Rejected records, written beside the output with their reason so that nothing read is ever lost.

Every record read is either written to the dataset or to a rejects file; `read == written + rejected` is checked
and reported by the scripts and stated in the dataset card.
"""

import glob
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Counts:
    """How many records were read, written and rejected (by reason) for one config."""

    read: int = 0
    written: int = 0
    rejected: Counter = field(default_factory=Counter)

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    def check(self, what: str = "") -> None:
        """Raises if a record went missing: read must equal written + rejected."""
        if self.read != self.written + self.n_rejected:
            raise RuntimeError(
                f"{what}: {self.read} records read but {self.written} written + {self.n_rejected} rejected"
            )

    def to_dict(self) -> dict:
        return {
            "read": self.read,
            "written": self.written,
            "rejected": self.n_rejected,
            "reasons": dict(self.rejected),
        }


def reason_key(reason: str) -> str:
    """Groups reasons for counting: the part before the first ':', without turn numbers ("empty turn 3" -> "empty
    turn")."""
    key = reason.split(":", 1)[0].split(" (turn", 1)[0]
    return re.sub(r"\bturn \d+", "turn", key)


class RejectsWriter:
    """Appends `{"file", "id", "reason", "record"}` lines (the whole original record, so it can be fixed and re-fed)."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._f = open(path, "w", encoding="utf-8")
        self.count = 0

    def write(self, file: str, record_id: str | None, reason: str, record) -> None:
        line = {"file": os.path.basename(file), "id": record_id, "reason": reason, "record": record}
        self._f.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_rejects(pattern: str) -> list[dict]:
    """Reads every rejects line from the files matching a glob pattern, in file-name order."""
    rows = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    return rows


def merge_rejects(pattern: str, output_path: str) -> Counter:
    """Concatenates the per-shard rejects files into one `rejects.jsonl`; returns the counts by reason."""
    reasons = Counter()
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    with open(output_path, "w", encoding="utf-8") as out:
        for row in read_rejects(pattern):
            reasons[reason_key(row["reason"])] += 1
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return reasons


class EmptyConfigError(ValueError):
    """A config none of whose records could be converted: there is nothing to stage (the message says why)."""


def check_nonempty(name: str, counts: Counts, rejects_path: str | None, examples: int = 3) -> None:
    """Raises `EmptyConfigError` when a config wrote no row, naming the reasons and the first rejected records (the
    build's rejects file is temporary: the message is where they are seen)."""
    if counts.written:
        return
    first = []
    if rejects_path and os.path.isfile(rejects_path):
        with open(rejects_path, encoding="utf-8") as f:
            for line in f:
                if len(first) == examples:
                    break
                row = json.loads(line)
                first.append(f"{row.get('id')!r}: {row.get('reason')}")
    reasons = ", ".join(f"{reason}: {n:,}" for reason, n in counts.rejected.most_common())
    raise EmptyConfigError(
        f"config {name}: none of its {counts.read:,} records could be converted"
        + (f" ({reasons}; first: {'; '.join(first)})" if counts.read else " (the file holds no record)")
        + ", so there is nothing to stage; the output folder was left as it was"
    )
