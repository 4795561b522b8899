"""Finding the recordings in a watched folder that are new and completely written.

A recorder writes a clip over seconds; scoring it half-written would give a wrong score that is
never corrected (a file version is scored once). A file is taken only when all of these hold:

* it is a .wav or .flac file whose name does not start with "." (hidden and temporary files, as a
  recorder writing ``.x.wav`` and renaming it writes them) and does not end in .tmp or .part;
* its size and mtime did not change since the previous scan, and it has been quiet for ``settle``
  seconds: untouched that long by its mtime, or seen unchanged that long by this watcher (which
  also covers a clock-skewed network share);
* a WAV file's header does not promise more bytes than the file holds (a writer that declares the
  final length up front). A file that keeps such a header for ``give_up_after`` seconds is handed
  over as truncated, so that a crashed recorder's file is recorded as bad once, not waited for
  forever.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from pathlib import Path

from stethoscope.detector import AUDIO_SUFFIXES

#: names a writer gives a file it has not finished
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
#: RIFF sizes that mean "unknown length" (streaming writers, RF64)
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)


@dataclass(frozen=True)
class FileVersion:
    """One version of a file: a file rewritten in place is a new version, scored again."""

    path: Path
    size: int
    mtime_ns: int

    @property
    def key(self) -> tuple[str, int, int]:
        return (str(self.path), self.size, self.mtime_ns)


@dataclass
class Scan:
    """What one look at the folder found (versions in the order they were written)."""

    ready: list[FileVersion] = field(default_factory=list)
    #: complete by every sign but its header, for longer than ``give_up_after``: (version, reason)
    truncated: list[tuple[FileVersion, str]] = field(default_factory=list)
    #: still being written (or too recently touched)
    waiting: list[Path] = field(default_factory=list)


def is_candidate(name: str) -> bool:
    """An audio file name the monitor would score (not hidden, not a partial download)."""
    lower = name.lower()
    return (
        not name.startswith(".")
        and not lower.endswith(PARTIAL_SUFFIXES)
        and Path(lower).suffix in AUDIO_SUFFIXES
    )


def wav_missing_bytes(path: Path, size: int) -> int:
    """How many bytes a RIFF/WAVE header says are still to come (0: none, or not a WAV header)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return 0
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0
    riff = struct.unpack_from("<I", head, 4)[0]
    if riff in _UNKNOWN_SIZES:
        return 0
    missing = riff + 8 - size
    pos = 12
    while pos + 8 <= len(head):  # the data chunk's own size, when the header holds it
        chunk, length = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk == b"data":
            if length not in _UNKNOWN_SIZES:
                missing = max(missing, pos + 8 + length - size)
            break
        pos += 8 + length + (length & 1)
    return max(0, missing)


class Watcher:
    """Scans ``folder`` recursively; remembers what it saw to tell a growing file from a done one."""

    def __init__(
        self,
        folder: str | Path,
        settle: float = 2.0,
        give_up_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: absolute, so a file's path (its identity in the database) does not depend on the cwd
        self.folder = Path(folder).resolve()
        self.settle = float(settle)
        self.give_up_after = float(give_up_after)
        self._clock = clock
        #: path -> ((size, mtime_ns), monotonic time it was first seen so)
        self._seen: dict[str, tuple[tuple[int, int], float]] = {}

    def list_files(self) -> list[FileVersion]:
        """Every candidate file now, oldest first (mtime, then path: a deterministic order)."""
        found: list[FileVersion] = []
        for root, dirs, files in os.walk(self.folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if not is_candidate(name):
                    continue
                path = Path(root) / name
                try:
                    st = path.stat()
                except OSError:  # gone between listing and stat
                    continue
                if os.path.isfile(path):
                    found.append(FileVersion(path, st.st_size, st.st_mtime_ns))
        found.sort(key=lambda v: (v.mtime_ns, str(v.path)))
        return found

    def scan(self, done: Container[tuple[str, int, int]] = ()) -> Scan:
        """The files ready to score, leaving out the versions in ``done`` (already recorded)."""
        now, wall = self._clock(), time.time()
        seen: dict[str, tuple[tuple[int, int], float]] = {}
        scan = Scan()
        for version in self.list_files():
            name, stat = str(version.path), (version.size, version.mtime_ns)
            before = self._seen.get(name)
            changed = before is not None and before[0] != stat
            since = now if before is None or changed else before[1]
            seen[name] = (stat, since)
            if version.key in done:
                continue
            age = wall - version.mtime_ns / 1e9
            quiet = age >= self.settle or now - since >= self.settle
            if changed or not quiet:
                scan.waiting.append(version.path)
                continue
            missing = wav_missing_bytes(version.path, version.size)
            if not missing:
                scan.ready.append(version)
            elif max(age, now - since) >= self.give_up_after:
                scan.truncated.append(
                    (version, f"truncated: the WAV header announces {missing} more bytes")
                )
            else:
                scan.waiting.append(version.path)
        self._seen = seen  # forget files that are gone
        return scan
