"""DtMM over a stream of one machine's clips (SPEC 5.3 item 7): the mixture evolves clip by clip.

The back end (:mod:`stethoscope.backends.dtmm`) scores each clip against the baseline on its own;
here the evolved state is carried from clip to clip, which is what the monitor's alert rule runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stethoscope.backends.base import fitted
from stethoscope.backends.dtmm import DtMMBackend, Mixture, clip_views


@dataclass
class MonitorStep:
    index: int
    kl: float
    alert: bool


class Monitor:
    """Condition monitoring of one machine (SPEC 5.3 item 7): the mixture evolves over a stream of clips.

    Each clip evolves the previous state (component means and covariances follow a random walk, as
    the topics of the dynamic topic model), so a fault that persists accumulates while single odd
    clips are damped. ``forgetting`` f in [0, 1] pulls the carried state back towards the baseline
    before each step (prior = f * state + (1 - f) * baseline): f = 1 carries the state fully, f = 0
    scores every clip on its own (same KL as ``DtMMBackend.score``).

    Weights are not carried by default (``carry_weights=False``): one machine usually runs in one
    operating condition, so carried weights would pile up on that condition's components and
    KL(w'||w) would grow on perfectly normal streams. Each step's weights are then evolved from the
    baseline weights, as for single clips, which keeps the back end's threshold T meaningful.
    An alert is raised when KL(state || baseline) > T (the back end's threshold unless given).
    """

    def __init__(
        self,
        backend: DtMMBackend,
        forgetting: float = 1.0,
        threshold: float | None = None,
        carry_weights: bool = False,
    ) -> None:
        if backend.baseline is None:
            raise RuntimeError("Monitor needs a fitted DtMM back end")
        if not 0.0 <= forgetting <= 1.0:
            raise ValueError("forgetting must lie in [0, 1]")
        self.backend = backend
        self.forgetting = float(forgetting)
        self.carry_weights = bool(carry_weights)
        self.threshold = float(
            fitted(backend.threshold, "dtmm") if threshold is None else threshold
        )
        self.reset()

    def reset(self) -> None:
        self.state: Mixture = fitted(self.backend.baseline, "dtmm")
        self.history: list[MonitorStep] = []

    def update(self, views: np.ndarray) -> MonitorStep:
        """Feed one clip's (V, D) view embeddings; returns its step (KL of the new state, alert flag)."""
        base = fitted(self.backend.baseline, "dtmm")
        prior = self.state.blend(base, self.forgetting)
        if not self.carry_weights:
            prior = Mixture(base.weights, prior.means, prior.covs)
        self.state = self.backend.evolve(views, prior)
        kl = self.backend.kl_to_baseline(self.state)
        step = MonitorStep(index=len(self.history), kl=kl, alert=kl > self.threshold)
        self.history.append(step)
        return step

    def run(self, clips: np.ndarray | list[np.ndarray]) -> list[MonitorStep]:
        return [self.update(v) for v in clip_views(clips)]

    def calibrate(
        self, normal_clips: np.ndarray | list[np.ndarray], k: float | None = None
    ) -> float:
        """Set T = mu + k sigma of the KLs of a replayed normal stream, then reset.

        A carried state is an average of several clips, so its KLs are distributed differently from
        single-clip KLs; calibrating on a normal stream of this machine matches T to the monitor."""
        k = self.backend.params["k"] if k is None else float(k)
        self.reset()
        kls = np.array([s.kl for s in self.run(normal_clips)])
        self.threshold = float(kls.mean() + k * kls.std())
        self.reset()
        return self.threshold

    @property
    def alerts(self) -> list[int]:
        return [s.index for s in self.history if s.alert]
