"""When a stream of clips means trouble: alert rules that look past one odd clip.

A single clip above the threshold is often a door slamming next to the machine; a fault persists.
Both rules therefore judge the stream, not the clip:

* :class:`KOfN` (any system): alerting while at least k of the last n clips are above the
  model's threshold.
* :class:`MixtureEvolution` (CNN-DtMM systems): the report's condition monitoring. Each clip evolves
  the mixture carried from the previous clips (:class:`~stethoscope.backends.dtmm_stream.Monitor`), so a
  lasting change accumulates while one odd clip barely moves it; alerting while KL(state ||
  baseline) is above the threshold.

An alert *fires* when a rule goes from quiet to alerting; a rule that stays on does not fire again.
Every rule's state is a few arrays and a small JSON dict, saved with each clip's result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stethoscope.backends.dtmm import DtMMBackend, Mixture
from stethoscope.backends.dtmm_stream import Monitor
from stethoscope.errors import ConfigError

if TYPE_CHECKING:
    from stethoscope.detector import Detector, Result

RULES = ("auto", "k-of-n", "dtmm")


@dataclass(frozen=True)
class RuleStep:
    """What one clip did to the rule."""

    #: what the rule compares with its threshold (clips above threshold in the window; KL)
    value: float
    threshold: float
    alerting: bool
    #: the rule went from quiet to alerting on this clip
    fired: bool
    #: one line for people, said when it fires
    message: str


class AlertRule(ABC):
    """A rule over a stream of one machine's clips; ``name`` is stored with its state."""

    name: str
    #: whether :meth:`step` needs the clip's back-end input (the detector's ``keep_inputs``)
    needs_inputs: bool = False

    def __init__(self) -> None:
        self.n_clips = 0
        self.alerting = False

    @abstractmethod
    def step(self, result: Result, inputs: np.ndarray | None = None) -> RuleStep:
        """Take one scored clip (in stream order)."""

    @abstractmethod
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-able meta) from which :meth:`set_state` continues the stream."""

    @abstractmethod
    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None: ...

    @abstractmethod
    def reset(self) -> None:
        """Start a new stream."""

    def _finish(self, value: float, threshold: float, alerting: bool, message: str) -> RuleStep:
        fired = alerting and not self.alerting
        self.alerting = alerting
        self.n_clips += 1
        return RuleStep(float(value), float(threshold), alerting, fired, message)


class KOfN(AlertRule):
    """Alerting while at least ``k`` of the last ``n`` clips are above the threshold."""

    name = "k-of-n"

    def __init__(self, k: int = 3, n: int = 5) -> None:
        if not 1 <= k <= n:
            raise ConfigError(f"k-of-n rule: need 1 <= k <= n, got k={k}, n={n}")
        super().__init__()
        self.k, self.n = int(k), int(n)
        self.window: list[int] = []

    def reset(self) -> None:
        self.window, self.n_clips, self.alerting = [], 0, False

    def step(self, result: Result, inputs: np.ndarray | None = None) -> RuleStep:
        self.window = ([*self.window, int(result.decision)])[-self.n :]
        count = sum(self.window)
        message = (
            f"{result.machine} section {result.section}: {count} of the last "
            f"{len(self.window)} clips above the threshold (latest {result.file}: score "
            f"{result.score:.4g}, threshold {result.threshold:.4g})"
        )
        return self._finish(count, self.k, count >= self.k, message)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        meta = {"k": self.k, "n": self.n, "window": list(self.window)}
        return {}, {**meta, "n_clips": self.n_clips, "alerting": self.alerting}

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.window = [int(d) for d in meta.get("window", [])][-self.n :]
        self.n_clips = int(meta.get("n_clips", 0))
        # a changed k or n re-judges the kept window, without firing for it
        self.alerting = sum(self.window) >= self.k


class MixtureEvolution(AlertRule):
    """The DtMM mixture evolved over the stream; alerting while KL(state || baseline) > T."""

    name = "dtmm"
    needs_inputs = True

    def __init__(
        self, backend: DtMMBackend, threshold: float | None = None, forgetting: float = 1.0
    ) -> None:
        super().__init__()
        self.monitor = Monitor(backend, forgetting=forgetting, threshold=threshold)
        self.calibrated = False  # calibrated in this process: a saved threshold does not replace it

    def calibrate(self, normal_views: list[np.ndarray]) -> float:
        """T = mu + k sigma of the KLs of the mixture evolved over a normal stream of this machine
        (the back end's T is set on single clips; an evolved state strays further from the
        baseline, more so the longer the stream and the larger ``forgetting``)."""
        if len(normal_views) < 2:
            raise ConfigError("calibrating the dtmm rule needs at least 2 normal recordings")
        self.calibrated = True
        return self.monitor.calibrate(normal_views)

    @property
    def threshold(self) -> float:
        return self.monitor.threshold

    def reset(self) -> None:
        self.monitor.reset()
        self.n_clips, self.alerting = 0, False

    def step(self, result: Result, inputs: np.ndarray | None = None) -> RuleStep:
        if inputs is None:
            raise ValueError("the DtMM rule needs each clip's view embeddings")
        s = self.monitor.update(np.asarray(inputs))
        self.monitor.history.clear()  # a long-running monitor keeps its steps in the database
        message = (
            f"{result.machine} section {result.section}: the sound has drifted from normal: "
            f"KL(state || baseline) {s.kl:.4g} > threshold {self.threshold:.4g} after "
            f"{self.n_clips + 1} clips (latest {result.file}: score {result.score:.4g})"
        )
        return self._finish(s.kl, self.threshold, s.alert, message)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        st = self.monitor.state
        arrays = {"weights": st.weights, "means": st.means, "covs": st.covs}
        meta = {"n_clips": self.n_clips, "alerting": self.alerting, "threshold": self.threshold}
        return arrays, meta

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        base = self.monitor.backend.baseline
        assert base is not None
        mix = Mixture(
            *(np.asarray(arrays[k], dtype=np.float64) for k in ("weights", "means", "covs"))
        )
        if (mix.weights.shape, mix.means.shape, mix.covs.shape) != (
            base.weights.shape, base.means.shape, base.covs.shape,
        ):  # fmt: skip
            raise ValueError("saved mixture does not match this model's baseline")
        self.monitor.state = mix
        self.n_clips = int(meta.get("n_clips", 0))
        self.alerting = bool(meta.get("alerting", False))
        if not self.calibrated and meta.get("threshold") is not None:
            self.monitor.threshold = float(meta["threshold"])  # a calibration made earlier holds


def choose_rule(
    detector: Detector,
    machine: str,
    section: str,
    kind: str = "auto",
    k: int = 3,
    n: int = 5,
    forgetting: float = 1.0,
) -> AlertRule:
    """The rule for one machine and section: "auto" is mixture evolution for a DtMM back end,
    k-of-n for every other system (a fusion has no single back end)."""
    if kind not in RULES:
        raise ConfigError(f"alert rule must be one of {', '.join(RULES)}, not {kind!r}")
    section_model = detector.model.sections[(machine, section)]
    backend = getattr(section_model, "backend", None)
    is_dtmm = isinstance(backend, DtMMBackend)
    if kind == "dtmm" and not is_dtmm:
        raise ConfigError(
            f"the dtmm rule needs a DtMM back end; {detector.system} has "
            f"{type(backend).__name__ if backend is not None else 'none (a fusion)'}: use k-of-n"
        )
    if is_dtmm and kind in ("auto", "dtmm"):
        assert isinstance(backend, DtMMBackend)
        return MixtureEvolution(backend, detector.threshold(machine, section), forgetting)
    return KOfN(k, n)
