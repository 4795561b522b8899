"""On-disk feature cache: one memory-mappable ``.npy`` per (extractor key, clip identity).

Layout::

    CACHE/<name>-<key>/meta.json            what the key stands for (name, version, config)
    CACHE/<name>-<key>/<id[:2]>/<id>.npy    one clip

A clip's identity hashes its absolute path, size, mtime, inode and ctime (:func:`clip_identity`),
so an edited or replaced file gets a new identity and is recomputed, with no decoding needed to
notice. Writes go to a temporary file that is renamed into place, so a crash or a parallel writer
never leaves a half-written array under a real name. An entry that cannot be read, has the wrong
shape for the extractor or holds NaN/inf is not served: the caller recomputes it and the new array
replaces it. Entries of changed files stay as orphans; :meth:`FeatureCache.clear` drops a key.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mmap
import os
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np

from stethoscope.features.base import FeatureExtractor
from stethoscope.state_io import make_temp, write_json

log = logging.getLogger(__name__)

#: beside an entry ``<id>.npy``: ``<id>.notes.json``, what reading the clip noticed (rarely there)
NOTES_SUFFIX = ".notes.json"


def default_cache_dir() -> Path:
    """$STETHOSCOPE_CACHE, else $XDG_CACHE_HOME/stethoscope, else ~/.cache/stethoscope.

    Outside the data folder on purpose: datasets are often read-only or shared between users.
    """
    env = os.environ.get("STETHOSCOPE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stethoscope"


def clip_identity(path: str | Path) -> str:
    """Hash of the file's absolute path, size, mtime_ns, inode and ctime_ns.

    Size and mtime alone miss a file replaced by another of the same size with its mtime restored
    (``cp -p``, ``rsync -a``, unpacking an archive). Every write, replacement or metadata change
    sets a new ctime, which users cannot set back, and a replacing file has a new inode: such a
    clip is recomputed (after a mere ``chmod`` too, which is the safe side). Raises OSError when
    the file cannot be stat'ed.
    """
    p = os.path.abspath(path)
    st = os.stat(p)
    blob = f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_ctime_ns}"
    return hashlib.sha256(blob.encode("utf-8", "surrogateescape")).hexdigest()[:32]


class FeatureCache:
    """Feature arrays on disk; ``FeatureCache(None)`` is a disabled cache that stores nothing."""

    def __init__(self, cache_dir: str | Path | None) -> None:
        self.root = Path(cache_dir) if cache_dir is not None else None
        self._described: set[str] = set()
        self._folders: set[Path] = set()  # entry folders known to exist: no mkdir per clip
        self._folder_str: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def folder(self, extractor: FeatureExtractor) -> Path:
        if self.root is None:
            raise RuntimeError("feature cache is disabled (cache_dir=None)")
        return self.root / f"{extractor.name}-{extractor.key()}"

    def entry(self, extractor: FeatureExtractor, identity: str) -> Path:
        return Path(self._entry(extractor, identity))

    def entry_str(self, extractor: FeatureExtractor, identity: str) -> str:
        """:meth:`entry` as a string (what :class:`~.stored.StoredFeatures` holds per clip)."""
        return self._entry(extractor, identity)

    def _entry(self, extractor: FeatureExtractor, identity: str) -> str:
        """:meth:`entry` as a string, built without pathlib (a warm-cache hit costs little more)."""
        key = extractor.key()
        folder = self._folder_str.get(key)
        if folder is None:
            folder = self._folder_str[key] = os.fspath(self.folder(extractor))
        return f"{folder}{os.sep}{identity[:2]}{os.sep}{identity}.npy"

    def load(self, extractor: FeatureExtractor, identity: str) -> np.ndarray | None:
        """The stored array, memory-mapped read-only; None on a miss or a bad entry.

        A bad entry (empty, unreadable, wrong shape or dtype, NaN/inf) is logged as a warning
        naming it and treated as a miss, so the caller recomputes and :meth:`store` replaces it.
        """
        if self.root is None:
            return None
        path = self._entry(extractor, identity)
        try:
            stored = map_npy(path)
        except FileNotFoundError:
            return None
        except Exception as exc:  # empty, truncated, garbage, unreadable: several types
            _warn_bad(path, f"unreadable ({type(exc).__name__}: {exc})")
            return None
        problem = extractor.stored_problem(stored)
        if problem is None and stored.dtype.kind == "f" and not np.isfinite(stored).all():
            problem = "contains NaN or infinite values"
        if problem is not None:
            _warn_bad(path, problem)
            return None
        return stored

    def load_notes(self, extractor: FeatureExtractor, identity: str) -> list[str]:
        """What reading the clip noticed when its entry was made (see :meth:`store`)."""
        path = self._entry(extractor, identity)[: -len(".npy")] + NOTES_SUFFIX
        try:
            with open(path, encoding="utf-8") as fh:
                notes = json.load(fh)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            _warn_bad(path, f"unreadable notes ({exc})")
            return []
        return [str(n) for n in notes] if isinstance(notes, list) else []

    def store(
        self,
        extractor: FeatureExtractor,
        identity: str,
        array: np.ndarray,
        notes: list[str] | None = None,
    ) -> bool:
        """Write atomically (temp file in the same folder, then os.replace); ``notes`` (rare: a
        resampled or silent clip) go beside the entry, so a warm run reports them too. Returns
        whether the entry was written (a full or read-only disk turns the cache off instead)."""
        if self.root is None:
            return False
        path = self.entry(extractor, identity)
        try:
            if path.parent not in self._folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._folders.add(path.parent)
            self._describe(extractor)
            try:
                fd, tmp = make_temp(path.parent, path.name)
            except FileNotFoundError:  # the folder was removed behind our back: make it again
                path.parent.mkdir(parents=True, exist_ok=True)
                self._described.discard(extractor.key())
                self._describe(extractor)
                fd, tmp = make_temp(path.parent, path.name)
        except OSError as exc:  # read-only or full disk: carry on without caching
            log.warning(
                "feature cache %s is not writable (%s); continuing without a cache", self.root, exc
            )
            self.root = None
            return False
        try:
            notes_path = path.with_name(path.stem + NOTES_SUFFIX)
            if notes:
                write_json(notes_path, list(notes))
            elif notes_path.exists():
                notes_path.unlink()
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(tmp, path)
        except OSError as exc:  # full disk, quota: the features are still good, only not kept
            Path(tmp).unlink(missing_ok=True)
            log.warning(
                "cannot write to feature cache %s (%s); continuing without a cache", self.root, exc
            )
            self.root = None
            return False
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def clear(self, extractor: FeatureExtractor) -> None:
        """Drop every cached array of this extractor configuration."""
        if self.root is not None:
            shutil.rmtree(self.folder(extractor), ignore_errors=True)
            self._described.discard(extractor.key())
            self._folders.clear()

    def _describe(self, extractor: FeatureExtractor) -> None:
        key = extractor.key()
        if key in self._described:
            return
        meta = self.folder(extractor) / "meta.json"
        if not meta.exists():
            write_json(meta, extractor.describe())
        self._described.add(key)

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root) if self.root else None!r})"


def _warn_bad(path: str, reason: str) -> None:
    log.warning("bad feature cache entry %s: %s; recomputing it", path, reason)


def map_npy(path: str) -> np.ndarray:
    """A ``.npy`` file memory-mapped read-only, as ``np.load(path, mmap_mode="r")`` gives it.

    ``np.load`` spends most of a warm-cache hit parsing the header text and building an
    ``np.memmap``; here numpy parses each distinct header once (:func:`_parse_header`, and a cache
    folder has few: one per clip length) and a plain ``mmap`` backs the array.
    """
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_READ)
        if len(head) < 10 or head[:6] != b"\x93NUMPY":
            raise ValueError("not a .npy file")
        width = 2 if head[6] == 1 else 4  # format 1.0: 2-byte header length; 2.0 and 3.0: 4
        offset = 8 + width + int.from_bytes(head[8 : 8 + width], "little")
        if len(head) < offset:
            raise ValueError("truncated .npy header")
        shape, fortran, dtype = _parse_header(head[:offset])
        buffer = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return np.ndarray(shape, dtype, buffer, offset, order="F" if fortran else "C")


#: Bytes read for the header; numpy writes 64 or 128, and refuses headers over 10,000 by default.
_HEAD_READ = 10_240


@lru_cache(maxsize=256)
def _parse_header(header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of a whole ``.npy`` header (magic to newline), by numpy."""
    fh = io.BytesIO(header)
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    if dtype.hasobject:
        raise ValueError("object arrays are not feature arrays")
    return shape, fortran, dtype
