"""What a run folder or a saved model was made from, so a result is never reported for other data.

A fingerprint names the dataset root, the machine types, the training clips' identities (a hash of
their sorted relative paths, sizes and modification times: cheap, no decoding) and the settings
that change the numbers (audio channel, feature definitions). Two fingerprints that differ in any
of these belong to different experiments.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stethoscope.data.catalog import Catalog
from stethoscope.data.clip import Clip
from stethoscope.errors import ModelError


@dataclass(frozen=True)
class DataFingerprint:
    root: str
    machines: tuple[str, ...]
    n_train: int
    #: sha256 (first 16 hex digits) of the sorted (relative path, size, mtime_ns) of the clips
    train_clips: str
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, root: Path, clips: Sequence[Clip], settings: dict[str, Any] | None = None
    ) -> DataFingerprint:
        """The fingerprint of training ``clips`` under dataset ``root`` (one stat per clip)."""
        root_abs = os.path.abspath(root)  # not resolve(): a symlink loop must not abort here
        rows = []
        for clip in clips:
            path = os.path.abspath(clip.path)
            try:
                st = os.stat(path)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:  # unreadable clips are reported elsewhere; they still count here
                size, mtime = -1, -1
            rows.append(f"{os.path.relpath(path, root_abs)}\0{size}\0{mtime}")
        digest = hashlib.sha256("\n".join(sorted(rows)).encode("utf-8", "surrogateescape"))
        return cls(
            root=root_abs,
            machines=tuple(sorted({c.machine for c in clips})),
            n_train=len(clips),
            train_clips=digest.hexdigest()[:16],
            settings=dict(settings or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["machines"] = list(self.machines)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: Path | str = "") -> DataFingerprint:
        try:
            return cls(
                root=str(d["root"]),
                machines=tuple(str(m) for m in d["machines"]),
                n_train=int(d["n_train"]),
                train_clips=str(d["train_clips"]),
                settings=dict(d.get("settings") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: unreadable data fingerprint ({exc})") from exc

    def differences(self, other: DataFingerprint) -> list[str]:
        """What differs from ``other``, one phrase each (empty when they are the same data)."""
        out = []
        if self.root != other.root:
            out.append(f"data root {self.root} vs {other.root}")
        if self.machines != other.machines:
            out.append(f"machine types {', '.join(self.machines)} vs {', '.join(other.machines)}")
        if (self.n_train, self.train_clips) != (other.n_train, other.train_clips):
            out.append(
                f"training clips ({self.n_train}, fingerprint {self.train_clips}) vs "
                f"({other.n_train}, fingerprint {other.train_clips})"
            )
        for key in sorted(set(self.settings) | set(other.settings)):
            if self.settings.get(key) != other.settings.get(key):
                out.append(f"{key} {self.settings.get(key)} vs {other.settings.get(key)}")
        return out

    def describe(self) -> str:
        return (
            f"{self.root} (machine types {', '.join(self.machines)}; {self.n_train} training "
            f"clips, fingerprint {self.train_clips})"
        )


def data_fingerprint(catalog: Catalog, clips: Sequence[Clip], channel: str) -> DataFingerprint:
    """The fingerprint of a run or model trained on ``clips`` of ``catalog`` with ``channel``."""
    return DataFingerprint.of(catalog.root, clips, {"channel": channel})
