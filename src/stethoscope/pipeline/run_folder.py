"""A run folder: what `stethoscope run` writes, and the promise that it reports only its own data.

``RUN_DIR/run.json`` marks a folder as a Stethoscope run folder and records what it was made from
(:class:`~stethoscope.pipeline.provenance.DataFingerprint`). A run into an existing folder goes on
only when that record matches the data it is given; otherwise it refuses, or with ``overwrite``
removes the outputs it made there and starts again. Files the run did not make are never touched:
a non-empty folder without ``run.json`` is refused, and only the names in :data:`SYSTEM_OUTPUTS` are
ever removed from a system's folder.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from stethoscope import __version__
from stethoscope.errors import ConfigError, ModelError
from stethoscope.pipeline.folder_lock import LOCK_NAME
from stethoscope.pipeline.provenance import DataFingerprint
from stethoscope.state_io import read_json, write_json

log = logging.getLogger(__name__)

MARKER = "run.json"
MARKER_FORMAT = "stethoscope.run"
#: what a run writes in RUN_DIR/<system>/
SYSTEM_OUTPUTS = (
    "model",
    "scores",
    "evaluation.json",
    "result.csv",
    "clip_scores.csv",
    "embeddings.npz",
)
#: what a run writes in RUN_DIR itself, besides the system folders
RUN_OUTPUTS = ("summary.json", "notes.json", "report", ".work")


class StudyConflict(ConfigError):
    """RUN_DIR holds results that do not belong to this run (other data, another system config)."""


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def system_dir(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def open(cls, path: Path, data: DataFingerprint, overwrite: bool = False) -> RunFolder:
        """The run folder at ``path`` for a run on ``data``: new, or one made from the same data.

        Raises :class:`StudyConflict` for a folder that is not a run folder, or one made from other
        data (unless ``overwrite``, which removes this run's earlier outputs there first).
        """
        folder = cls(path)
        own = {MARKER, LOCK_NAME}
        existing = [p for p in folder.path.iterdir() if p.name not in own] if path.is_dir() else []
        marker = folder.path / MARKER
        if marker.is_file():
            before = folder.recorded_data()
            differences = before.differences(data)
            if differences and not overwrite:
                raise StudyConflict(
                    f"{path} holds a run made from other data ({'; '.join(differences)}); "
                    "choose another --out, or give --overwrite to redo the run there"
                )
            if differences:
                log.warning("%s: made from other data; --overwrite: removing its results", path)
                folder.remove_outputs()
        elif existing:
            if not overwrite or not (folder.path / "summary.json").is_file():
                raise StudyConflict(
                    f"{path} exists and is not a Stethoscope run folder (no {MARKER}); "
                    "choose a new or empty folder for --out"
                    + (
                        " (an older run folder can be redone with --overwrite)"
                        if (folder.path / "summary.json").is_file()
                        else ""
                    )
                )
            log.warning(
                "%s: a run folder without a record of its data; --overwrite: redoing it", path
            )
            folder.remove_outputs()
        folder.path.mkdir(parents=True, exist_ok=True)
        write_json(
            marker,
            {
                "format": MARKER_FORMAT,
                "version": 1,
                "stethoscope_version": __version__,
                "data": data.to_dict(),
            },
        )
        return folder

    def recorded_data(self) -> DataFingerprint:
        marker = self.path / MARKER
        try:
            meta = read_json(marker)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{marker}: unreadable run record ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != MARKER_FORMAT:
            raise ModelError(f"{marker}: not a Stethoscope run record")
        return DataFingerprint.from_dict(meta.get("data") or {}, marker)

    def remove_system(self, name: str) -> None:
        """Remove what the run wrote for system ``name`` (and nothing else in its folder)."""
        sdir = self.system_dir(name)
        for item in SYSTEM_OUTPUTS:
            target = sdir / item
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        if sdir.is_dir() and not any(sdir.iterdir()):
            sdir.rmdir()

    def remove_outputs(self) -> None:
        """Remove every output of earlier runs in this folder (system outputs, summary, report)."""
        if not self.path.is_dir():
            return
        for sdir in self.path.iterdir():
            if sdir.is_dir() and (
                (sdir / "model").is_dir() or (sdir / "evaluation.json").is_file()
            ):
                self.remove_system(sdir.name)
        for item in RUN_OUTPUTS:
            target = self.path / item
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
