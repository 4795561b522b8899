"""A trained detector at work: a score and a decision for any recording, named any way.

:class:`Detector` is the one interface that scoring plain recordings, the HTTP service and the
monitor share. It takes a file, its bytes or samples already in memory, reads the channel the
model was trained on, computes the model's features without a cache, and scores them with the
same code that scores a DCASE test folder, so a clip gets the same score either way. A model is
named by its ``model_id`` (a hash of the files of its folder), so every score can be traced to
the exact weights and thresholds that gave it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from stethoscope import SAMPLE_RATE
from stethoscope.audio import MIN_SAMPLES, AudioError, AudioSource, Decoded, decode, from_samples
from stethoscope.audio import prepare as prepare_audio
from stethoscope.data.clip import Clip
from stethoscope.errors import StethoscopeError

if TYPE_CHECKING:
    from stethoscope.decision.base import ThresholdRule

#: a recording to score: a path, the file's bytes or a binary file object, or samples
#: ((frames,) or (frames, channels) at ``sample_rate``)
Source = AudioSource | np.ndarray
DOMAINS = ("source", "target")
#: audio file extensions that a folder of plain recordings is searched for
AUDIO_SUFFIXES = (".wav", ".flac")


class UnknownTarget(StethoscopeError):
    """A machine type, section or domain the model cannot score; ``field`` names which."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class _Section(Protocol):
    threshold: ThresholdRule


class ScoringModel(Protocol):
    """What the detector asks of a loaded model (a system, a fusion, or an exported one)."""

    sections: Any  # Mapping[(machine, section), _Section]
    info: dict

    def feature_needs(self) -> list[tuple[str, str]]: ...

    def score_features(
        self,
        clips: list[Clip],
        features: dict[tuple[str, str], list[np.ndarray]],
        keep_inputs: dict | None = None,
    ) -> dict[tuple[str, str], tuple[list[Clip], np.ndarray, np.ndarray]]: ...

    def forget(self) -> None: ...

    def describe_training_data(self) -> str: ...


#: computes a need's feature ((extractor name, channel)) for a list of waveforms
FeatureFn = Callable[[tuple[str, str], list[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class Result:
    """One recording's score and decision, with what produced them."""

    file: str
    machine: str
    section: str
    domain: str | None
    score: float
    #: 1: anomalous (score above the threshold), 0: normal
    decision: int
    threshold: float
    system: str
    model_id: str
    #: what reading the audio noticed (resampled, mixed down, silent)
    notes: tuple[str, ...] = ()
    #: milliseconds spent decoding, computing features, in the model, and in all
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["notes"] = list(self.notes)
        return out


@dataclass
class Failure:
    """A recording that could not be scored, by name, with the reason."""

    file: str
    reason: str


class Detector:
    """A saved model ready to score recordings (see :meth:`load`)."""

    def __init__(
        self,
        model: ScoringModel,
        system: str,
        model_id: str,
        feature_fn: FeatureFn,
        sample_rates: dict[tuple[str, str], int] | None = None,
        *,
        resample: bool = True,
        directory: Path | None = None,
        runtime: str = "torch",
    ) -> None:
        self.model = model
        self.system = system
        self.model_id = model_id
        self.directory = directory
        self.runtime = runtime
        #: resample recordings at another rate (True) or refuse them (False)
        self.resample = resample
        self._feature_fn = feature_fn
        self._needs = model.feature_needs()
        self._rates = sample_rates or {}

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        device: str = "cpu",
        channel: str | None = None,
        force_channel: bool = False,
        resample: bool = True,
    ) -> Detector:
        """A model folder written by ``stethoscope fit`` or ``run`` (a system or a fusion).

        ``channel`` scores two-channel recordings on another channel than the model was trained on
        (refused unless ``force_channel``, see :func:`stethoscope.pipeline.score.choose_channel`).
        """
        from stethoscope.devices import resolve_device
        from stethoscope.features import FEATURES
        from stethoscope.pipeline.score import choose_channel
        from stethoscope.pipeline.system_model import load_model

        directory = Path(directory)
        model = load_model(directory, device=device)
        choose_channel(model, channel, force_channel)
        dev = resolve_device(device)
        extractors = {(f, ch): FEATURES.get(f)(channel=ch) for f, ch in model.feature_needs()}

        def feature_fn(need: tuple[str, str], waves: list[np.ndarray]) -> list[np.ndarray]:
            return extractors[need].compute_batch(waves, dev)

        rates = {
            n: int(getattr(e.config, "sample_rate", SAMPLE_RATE)) for n, e in extractors.items()
        }
        return cls(
            model, model.config.name, model_id(directory), feature_fn, rates,
            resample=resample, directory=directory,
        )  # fmt: skip

    # -- what it can score -------------------------------------------------------------------

    def machines(self) -> list[str]:
        return sorted({m for m, _ in self.model.sections})

    def sections(self, machine: str) -> list[str]:
        return sorted(s for m, s in self.model.sections if m == machine)

    def threshold(self, machine: str, section: str | None = None) -> float:
        section = self.resolve(machine, section)
        return float(self.model.sections[(machine, section)].threshold.value)

    def resolve(self, machine: str, section: str | None = None, domain: str | None = None) -> str:
        """The section to score ``machine`` with: as given, or the machine's only one."""
        if machine not in self.machines():
            raise UnknownTarget(
                "machine",
                f"machine type {machine!r} is not in this model (it has "
                f"{', '.join(self.machines()) or 'none'})",
            )
        sections = self.sections(machine)
        if domain is not None and domain not in DOMAINS:
            raise UnknownTarget("domain", f"domain must be one of {DOMAINS}, not {domain!r}")
        if section is None:
            if len(sections) > 1:
                raise UnknownTarget(
                    "section",
                    f"machine type {machine!r} has sections {', '.join(sections)} in this model: "
                    "give one",
                )
            return sections[0]
        section = f"{int(section):02d}" if str(section).isdigit() else str(section)
        if section not in sections:
            raise UnknownTarget(
                "section",
                f"machine type {machine!r} has no section {section!r} in this model "
                f"(it has {', '.join(sections)})",
            )
        return section

    def describe(self) -> dict[str, Any]:
        """What a user of the service needs to know of the model."""
        return {
            "system": self.system,
            "model_id": self.model_id,
            "runtime": self.runtime,
            "machines": {
                m: {s: {"threshold": self.threshold(m, s)} for s in self.sections(m)}
                for m in self.machines()
            },
            "channels": sorted({ch for _, ch in self._needs}),
            "sample_rate": max(self._rates.values(), default=SAMPLE_RATE),
            "resample": self.resample,
            "trained_on": self.model.describe_training_data(),
        }

    # -- scoring -----------------------------------------------------------------------------

    def score(
        self,
        source: Source,
        machine: str,
        section: str | None = None,
        domain: str | None = None,
        *,
        sample_rate: int | None = None,
        name: str | None = None,
    ) -> Result:
        """Score one recording; an unusable one raises :class:`AudioError` naming it."""
        results, _ = self.score_many(
            [source], machine, section, domain, sample_rate=sample_rate,
            names=[name] if name is not None else None, on_error="stop",
        )  # fmt: skip
        return results[0]

    def score_many(
        self,
        sources: Sequence[Source],
        machine: str,
        section: str | None = None,
        domain: str | None = None,
        *,
        sample_rate: int | None = None,
        names: Sequence[str] | None = None,
        on_error: str = "skip",
        batch_size: int = 32,
        keep_inputs: dict[str, Any] | None = None,
    ) -> tuple[list[Result], list[Failure]]:
        """Score recordings of one machine (and section), ``batch_size`` at a time; a bad one is
        listed among the failures by name (``on_error="stop"``: raised) and the rest scored.

        ``keep_inputs`` (a dict) receives each scored recording's back-end input (its embedding,
        views or residuals) by name, for callers that follow a machine over time (the monitor).
        """
        section = self.resolve(machine, section, domain)
        if names is not None and len(names) != len(sources):
            raise ValueError("names must give one name per source")
        results: list[Result] = []
        failures: list[Failure] = []
        for start in range(0, len(sources), max(1, batch_size)):
            part = range(start, min(start + max(1, batch_size), len(sources)))
            labels = [names[i] if names is not None else _label(sources[i], i) for i in part]
            got, bad = self._score_batch(
                [sources[i] for i in part], labels, machine, section, domain, sample_rate,
                on_error, keep_inputs,
            )  # fmt: skip
            results += got
            failures += bad
        return results, failures

    def _score_batch(
        self,
        sources: list[Source],
        labels: list[str],
        machine: str,
        section: str,
        domain: str | None,
        sample_rate: int | None,
        on_error: str,
        keep_inputs: dict[str, Any] | None = None,
    ) -> tuple[list[Result], list[Failure]]:
        t0 = time.perf_counter()
        waves: dict[tuple[str, str], list[np.ndarray]] = {need: [] for need in self._needs}
        kept: list[tuple[str, tuple[str, ...]]] = []
        failures: list[Failure] = []
        for source, label in zip(sources, labels, strict=True):
            try:
                decoded = self._decode(source, label, sample_rate)
                prepared = {
                    need: prepare_audio(decoded, self._rates.get(need, SAMPLE_RATE),
                                        MIN_SAMPLES, need[1])
                    for need in self._needs
                }  # fmt: skip
            except AudioError as err:
                if on_error == "stop":
                    raise
                failures.append(Failure(label, err.reason))
                continue
            for need, audio in prepared.items():
                waves[need].append(audio.samples)
            notes = tuple(dict.fromkeys(n for a in prepared.values() for n in a.notes))
            kept.append((label, notes))
        if not kept:
            return [], failures
        t1 = time.perf_counter()
        features = {need: self._feature_fn(need, w) for need, w in waves.items()}
        t2 = time.perf_counter()
        clips = [
            Clip(path=Path(label), machine=machine, section=section, split="test", domain=domain,
                 label=None, index=f"{i:06d}")
            for i, (label, _) in enumerate(kept)
        ]  # fmt: skip
        kept_inputs: dict | None = {} if keep_inputs is not None else None
        try:
            scored = self.model.score_features(clips, features, kept_inputs)
        finally:
            self.model.forget()
        if keep_inputs is not None and kept_inputs:
            x = kept_inputs[(machine, section)]
            keep_inputs.update({label: x[i] for i, (label, _) in enumerate(kept)})
        t3 = time.perf_counter()
        _, scores, decisions = scored[(machine, section)]
        threshold = self.threshold(machine, section)
        n = len(kept)
        timings = {
            "decode_ms": 1e3 * (t1 - t0) / n,
            "features_ms": 1e3 * (t2 - t1) / n,
            "model_ms": 1e3 * (t3 - t2) / n,
            "total_ms": 1e3 * (t3 - t0) / n,
        }
        results = [
            Result(
                file=label, machine=machine, section=section, domain=domain, score=float(s),
                decision=int(d), threshold=threshold, system=self.system,
                model_id=self.model_id, notes=notes, timings=timings,
            )
            for (label, notes), s, d in zip(kept, scores, decisions, strict=True)
        ]  # fmt: skip
        return results, failures

    def _decode(self, source: Source, label: str, sample_rate: int | None) -> Decoded:
        if isinstance(source, np.ndarray):
            if sample_rate is None:
                raise AudioError(label, "samples need their sample rate (sample_rate=...)")
            decoded = from_samples(source, sample_rate, label)
        else:
            decoded = decode(source, label)
        want = max(self._rates.values(), default=SAMPLE_RATE)
        if not self.resample and decoded.sample_rate != want:
            raise AudioError(
                label, f"sample rate {decoded.sample_rate} Hz, the model takes {want} Hz "
                "(resampling is turned off)",
            )  # fmt: skip
        return decoded


def _label(source: Source, i: int) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) and name else f"<recording {i}>"


def model_id(directory: str | Path) -> str:
    """A short hash of every file of a model folder (names and contents): same id, same model."""
    root = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue  # lock files and temporary files
        digest.update(rel.encode("utf-8") + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def find_recordings(paths: Iterable[str | Path]) -> tuple[list[Path], list[Failure]]:
    """The audio files among ``paths`` (folders searched recursively, in name order), and the
    paths that are neither an audio file nor a folder."""
    found: list[Path] = []
    missing: list[Failure] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [
                    Path(root) / f
                    for f in sorted(files)
                    if Path(f).suffix.lower() in AUDIO_SUFFIXES and not f.startswith(".")
                ]
        elif path.is_file():
            found.append(path)
        else:
            missing.append(Failure(str(path), "no such file or folder"))
    return list(dict.fromkeys(found)), missing
