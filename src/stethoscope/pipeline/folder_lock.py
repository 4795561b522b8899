"""One writer per output folder: a lock file taken atomically, released on exit, stale ones
detected.

Two `run` (or `fit`) commands writing one folder would interleave models, scores and summaries.
The lock file holds the owner's pid and host; it is created with O_EXCL, so exactly one process
gets it. A lock whose process no longer exists on this host (killed, machine rebooted) is stale and
taken over with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from stethoscope.errors import StethoscopeError

log = logging.getLogger(__name__)

LOCK_NAME = ".stethoscope.lock"


class FolderLocked(StethoscopeError):
    """Another live process is writing the folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder``'s lock inside the block; raise :class:`FolderLocked` if a live process has
    it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            owner = _read(path)
            pid, host = owner.get("pid"), owner.get("host")
            stale = isinstance(pid, int) and host == me["host"] and not _pid_alive(pid)
            if stale and attempt == 0:
                log.warning(
                    "%s: taking over a stale lock of process %s (no longer running)", folder, pid
                )
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            raise FolderLocked(
                f"{folder} is being written by another Stethoscope process (pid {pid} on {host}, "
                f"since {owner.get('since', '?')}); wait for it to finish, or delete {path} if "
                "that process is gone"
            ) from None
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise StethoscopeError(f"{folder}: not writable ({exc.strerror})") from exc
            raise
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        break
    try:
        yield path
    finally:
        if _read(path).get("pid") == me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
