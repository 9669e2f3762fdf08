import errno
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

from hub_llava.data.workdirs import LOCK_FILE, WorkDir, folder_size, remove_stale, stale_work_dirs

PREFIXES = (".build-", ".staging-")


def test_a_work_dir_appears_under_its_name_already_locked_and_goes_when_closed(tmp_path):
    work = WorkDir.create(str(tmp_path), ".build-")
    name = os.path.basename(work.path)
    assert name.startswith(".build-") and os.listdir(tmp_path) == [name]  # no `.new` folder left beside it
    take = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"
    )
    other = subprocess.run([sys.executable, "-c", take, os.path.join(work.path, LOCK_FILE)], capture_output=True)
    assert other.returncode == 1 and b"BlockingIOError" in other.stderr  # another process cannot take it
    assert stale_work_dirs(str(tmp_path), PREFIXES) == []  # nor does this one judge its own folder stale
    assert open(os.path.join(work.path, LOCK_FILE)).read() == f"{os.getpid()}\n"
    work.close()
    assert os.listdir(tmp_path) == []


def test_only_folders_that_no_running_build_owns_are_removed(tmp_path):
    running = WorkDir.create(str(tmp_path), ".build-")
    stopped = WorkDir.create(str(tmp_path), ".staging-")
    with open(os.path.join(stopped.path, "shard.parquet"), "wb") as f:
        f.write(b"x" * 5000)
    stopped.close(remove=False)  # as a killed process: the folder stays, the kernel drops the lock
    old = tmp_path / ".build-from_before_locks"  # left by a hub_llava without locks
    (old / "cache").mkdir(parents=True)
    (old / "cache" / "data.arrow").write_bytes(b"y" * 300)
    being_made = tmp_path / ".new.build-abc"  # between mkdtemp and its lock: not ours to judge
    being_made.mkdir()
    for kept in ("repo", ".cache", "notes.build-x"):
        (tmp_path / kept).mkdir()

    removed = remove_stale(str(tmp_path), PREFIXES)

    stopped_name = os.path.basename(stopped.path)
    assert sorted(removed) == [(".build-from_before_locks", 300), (stopped_name, 5000 + len(f"{os.getpid()}\n"))]
    left = sorted(os.listdir(tmp_path))
    assert left == sorted([os.path.basename(running.path), ".new.build-abc", "repo", ".cache", "notes.build-x"])
    running.close()
    assert remove_stale(str(tmp_path), PREFIXES) == []


def test_a_stopped_new_folder_with_its_lock_is_stale(tmp_path):
    folder = tmp_path / ".new.staging-xyz"  # stopped after locking, before the rename
    folder.mkdir()
    (folder / LOCK_FILE).write_text("123\n")
    [stale] = stale_work_dirs(str(tmp_path), PREFIXES)
    assert stale.path == str(folder)
    assert stale_work_dirs(str(tmp_path), PREFIXES) == []  # claimed: a second cleaner leaves it to the first
    stale.close()
    assert os.listdir(tmp_path) == []


def test_folder_size_does_not_follow_links(tmp_path):
    (tmp_path / "big").write_bytes(b"z" * 10_000)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"1234")
    os.symlink(tmp_path / "big", tmp_path / "a" / "link")
    assert folder_size(str(tmp_path / "a")) == 4 + len(str(tmp_path / "big"))  # a link's size is its target's name


def test_without_file_locks_a_build_still_runs_and_its_folder_is_never_judged_stale(tmp_path, monkeypatch, caplog):
    def no_locks(fd, operation):  # what lockf gives on a filesystem without locks (some NFS mounts)
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    work = WorkDir.create(str(tmp_path), ".build-")
    assert "a later run will not remove it if this one is killed" in caplog.text
    work.close(remove=False)
    assert remove_stale(str(tmp_path), PREFIXES) == [] and os.listdir(tmp_path) == [os.path.basename(work.path)]


OWNER_WITH_A_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from hub_llava.data.workdirs import WorkDir
    work = WorkDir.create(sys.argv[1], ".build-")
    if os.fork() == 0:  # a forked worker: it holds the lock file's descriptor too, and outlives its parent here
        time.sleep(60)
        os._exit(0)
    print(work.path, flush=True)
    time.sleep(60)
    """
)


def test_a_killed_owner_frees_its_folder_even_while_a_forked_worker_lives_on(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", OWNER_WITH_A_WORKER, str(tmp_path)], stdout=subprocess.PIPE)
    path = owner.stdout.readline().decode().strip()
    [worker] = psutil.Process(owner.pid).children()
    try:
        assert remove_stale(str(tmp_path), PREFIXES) == []  # its owner runs
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        time.sleep(0.1)
        assert worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE
        assert [name for name, _ in remove_stale(str(tmp_path), PREFIXES)] == [os.path.basename(path)]
        assert os.listdir(tmp_path) == []
    finally:
        worker.kill()
