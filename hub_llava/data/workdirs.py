"""Temporary folders that a running build owns, and the removal of those that a stopped build left behind.

A build writes into `.build-*` and `.staging-*` folders inside its output folder and removes them when it ends; a
killed one cannot (494 MB for 200K records). Each folder holds a lock file that its process keeps locked
(a POSIX record lock, `fcntl.lockf`) while it runs. The kernel drops the lock when the process dies, however it dies,
so a folder whose lock can be taken belongs to no running build, and a folder whose lock is held is never touched.
(A pid file could not tell a live owner from a new process that was given the same pid.) The lock is the build
process's own: its forked workers do not inherit it (as they would a `flock`), so a killed build's folder is free as
soon as the build itself is gone, whatever its workers still do. A process never conflicts with its own record locks,
and closing any descriptor of the file drops them, so a process skips the folders it owns itself (`_OWNED`).

A folder gets its final name only once its lock is held: it is made as `.new<prefix>*` and renamed, so no one ever
sees a final name that is not locked yet. A folder without a lock file is stale if it has a final name (it was left
by a hub_llava from before the locks); a `.new` one without a lock file may be one being made right now, and is left
alone (it is empty).
"""

import fcntl
import logging
import os
import shutil
import tempfile

logger = logging.getLogger(__name__)

LOCK_FILE = ".owner.lock"
_NEW = ".new"
_OWNED: set[str] = set()  # the folders this process holds the lock of


def _lock(fd: int) -> None:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


class WorkDir:
    """A folder this process owns until `close()`: made by `WorkDir.create`, or taken over from a stopped run
    (`stale_work_dirs`).

    Args:
        path (`str`):
            The folder.
        lock_fd (`int`, *optional*):
            The open, locked lock file (`None` for a folder that had none).
    """

    def __init__(self, path: str, lock_fd: int | None):
        self.path = path
        self._lock_fd = lock_fd
        _OWNED.add(os.path.realpath(path))

    @classmethod
    def create(cls, parent: str, prefix: str) -> "WorkDir":
        """Makes `parent/<prefix><random>`, locked by this process."""
        new = tempfile.mkdtemp(prefix=_NEW + prefix, dir=parent)
        fd = None
        try:
            fd = os.open(os.path.join(new, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _lock(fd)
            except OSError as err:  # a filesystem without locks (some NFS mounts): usable, but never judged stale
                logger.warning("cannot lock %s (%s): a later run will not remove it if this one is killed", new, err)
            os.write(fd, f"{os.getpid()}\n".encode())  # for a person looking at it; the lock is what counts
            path = os.path.join(parent, os.path.basename(new)[len(_NEW) :])
            os.rename(new, path)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            if fd is not None:
                os.close(fd)
            raise
        return cls(path, fd)

    def close(self, remove: bool = True) -> None:
        """Removes the folder (unless `remove=False`), then gives up the lock."""
        if remove:
            shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        _OWNED.discard(os.path.realpath(self.path))

    def __enter__(self) -> "WorkDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _claim(path: str) -> WorkDir | None:
    """`path` as a `WorkDir` of this process, or `None` if a running process owns it (or it cannot be told)."""
    if os.path.realpath(path) in _OWNED:  # ours: opening and closing its lock file would drop our lock
        return None
    try:
        fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR)
    except FileNotFoundError:
        return None if os.path.basename(path).startswith(_NEW) else WorkDir(path, None)
    except OSError:
        return None
    try:
        _lock(fd)
    except OSError:  # held by a running build (or a filesystem without locks: then nothing is known)
        os.close(fd)
        return None
    return WorkDir(path, fd)


def stale_work_dirs(parent: str, prefixes: tuple[str, ...]) -> list[WorkDir]:
    """The folders `<prefix>*` (or `.new<prefix>*`) in `parent` that no running process owns, each now owned by this
    one, by name. Close them (`WorkDir.close`) to remove them."""
    if not os.path.isdir(parent):
        return []
    names = sorted(
        entry.name
        for entry in os.scandir(parent)
        if entry.is_dir(follow_symlinks=False) and entry.name.removeprefix(_NEW).startswith(prefixes)
    )
    claimed = (_claim(os.path.join(parent, name)) for name in names)
    return [work_dir for work_dir in claimed if work_dir is not None]


def folder_size(path: str) -> int:
    """The bytes of the files under `path` (links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def remove_stale(parent: str, prefixes: tuple[str, ...]) -> list[tuple[str, int]]:
    """Removes the folders that stopped runs left in `parent` (`stale_work_dirs`); returns their names and sizes."""
    removed = []
    for work_dir in stale_work_dirs(parent, prefixes):
        removed.append((os.path.basename(work_dir.path), folder_size(work_dir.path)))
        work_dir.close()
    return removed
