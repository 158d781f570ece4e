"""The run-directory lock: one writer (a trainer) per run directory at a time.

``lock_run_dir(run)`` takes an exclusive ``flock`` on the run directory itself and on ``run/.lock``, and
writes the holder (pid, host, command, start time) into ``.lock``. The directory lock is the one that
counts: a lock *file* deleted by hand while its trainer runs would be silently recreated by the next
trainer, which would then lock a different inode and get in; a directory cannot be replaced under a
running trainer without removing the run. The ``.lock`` file lock keeps older tinyinterp versions out. The kernel releases a flock when its process dies, even by ``kill -9``,
so a lock file left by a killed trainer is never stale: the next trainer takes it over (and logs whose
it was). A second live writer gets one line naming the holder. The lock is re-entrant within a process
(nested users share one lock) and is released on exit with the file emptied. Readers (``tinyinterp info``, the app) never take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tinyinterp.errors import RunDirError
from tinyinterp.runs.layout import LOCK_FILE

log = logging.getLogger(__name__)


class RunDirLockedError(RunDirError):
    """Another live process holds the run directory's lock."""


# Locks this process holds: path -> [fd of .lock, fd of the directory, depth]. flock is per open file, so
# a second open by the same process would conflict with itself; nested users share one.
_HELD_LOCKS: dict[str, list[int]] = {}


def _lock_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']} ({info['command']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not written its pid yet)"


@contextlib.contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``run_dir`` (see the module docstring); re-entrant within a process."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    if key in _HELD_LOCKS:
        _HELD_LOCKS[key][2] += 1
        try:
            yield
        finally:
            _HELD_LOCKS[key][2] -= 1
        return
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise RunDirError(f"{path}: cannot create the run directory's lock file ({e.strerror}); check the folder's permissions") from None
    dir_fd = _lock_directory(run_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if dir_fd is None:
            raise BlockingIOError
    except BlockingIOError:
        os.close(fd)
        if dir_fd is not None and dir_fd >= 0:
            os.close(dir_fd)
        raise RunDirLockedError(
            f"{run_dir}: in use by {_lock_holder(path)}; wait for it to finish or stop it, or use another --out"
        ) from None
    previous = os.pread(fd, 4096, 0)
    if previous.strip():  # a holder that died without releasing (kill -9): the kernel dropped its flock
        log.info("%s: taking over the lock left by a process that is gone (%s)", run_dir, _lock_holder(path))
    command = " ".join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:4]])[:120]
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    _HELD_LOCKS[key] = [fd, dir_fd, 1]
    try:
        yield
    finally:
        del _HELD_LOCKS[key]
        os.ftruncate(fd, 0)  # released cleanly: no holder to report
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        if dir_fd >= 0:
            os.close(dir_fd)  # closing the last descriptor drops the directory's flock


def _lock_directory(run_dir: Path) -> int | None:
    """An fd holding an exclusive flock on the directory; None when another process holds it.

    -1 where the filesystem cannot flock a directory (then the ``.lock`` file lock is all there is).
    """
    try:
        dir_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return -1
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(dir_fd)
        return None
    except OSError:  # e.g. a network filesystem without directory locks
        os.close(dir_fd)
        log.debug("%s: directory cannot be locked; relying on %s alone", run_dir, LOCK_FILE)
        return -1
    return dir_fd
