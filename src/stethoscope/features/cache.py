"""On-disk feature cache: one memory-mappable ``.npy`` per (extractor key, clip identity).

Layout::

    CACHE/<name>-<key>/meta.json            what the key stands for (name, version, config)
    CACHE/<name>-<key>/<id[:2]>/<id>.npy    one clip

A clip's identity hashes its absolute path, size and mtime_ns, so an edited or replaced file gets
a new identity and is recomputed, with no decoding needed to notice. Writes go to a temporary file
that is renamed into place, so a crash or a parallel writer never leaves a half-written array under
a real name. Entries of changed files stay as orphans; :meth:`FeatureCache.clear` drops a key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from stethoscope.features.registry import FeatureExtractor
from stethoscope.state_io import write_json

log = logging.getLogger(__name__)


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
    """Hash of (absolute path, size, mtime_ns); raises OSError when the file cannot be stat'ed."""
    p = Path(path).resolve()
    st = p.stat()
    blob = f"{p}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(blob).hexdigest()[:32]


class FeatureCache:
    """Feature arrays on disk; ``FeatureCache(None)`` is a disabled cache that stores nothing."""

    def __init__(self, cache_dir: str | Path | None) -> None:
        self.root = Path(cache_dir) if cache_dir is not None else None
        self._described: set[str] = set()
        self._folders: set[Path] = set()  # entry folders known to exist: no mkdir per clip

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def folder(self, extractor: FeatureExtractor) -> Path:
        if self.root is None:
            raise RuntimeError("feature cache is disabled (cache_dir=None)")
        return self.root / f"{extractor.name}-{extractor.key()}"

    def entry(self, extractor: FeatureExtractor, identity: str) -> Path:
        return self.folder(extractor) / identity[:2] / f"{identity}.npy"

    def load(self, extractor: FeatureExtractor, identity: str) -> np.ndarray | None:
        """The stored array, memory-mapped read-only, or None on a miss (or an unreadable entry)."""
        if self.root is None:
            return None
        path = self.entry(extractor, identity)
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            return None
        except ValueError:
            try:  # numpy cannot memory-map a zero-size array; read it instead
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                log.warning("%s: unreadable cache entry, recomputing (%s)", path, exc)
                return None
        except OSError as exc:
            log.warning("%s: unreadable cache entry, recomputing (%s)", path, exc)
            return None

    def store(self, extractor: FeatureExtractor, identity: str, array: np.ndarray) -> None:
        """Write atomically (temp file in the same folder, then os.replace)."""
        if self.root is None:
            return
        path = self.entry(extractor, identity)
        try:
            if path.parent not in self._folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._folders.add(path.parent)
            self._describe(extractor)
            try:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
            except FileNotFoundError:  # the folder was removed behind our back: make it again
                path.parent.mkdir(parents=True, exist_ok=True)
                self._described.discard(extractor.key())
                self._describe(extractor)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        except OSError as exc:  # read-only or full disk: carry on without caching
            log.warning("feature cache %s is not writable (%s); continuing without a cache",
                        self.root, exc)
            self.root = None
            return
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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
