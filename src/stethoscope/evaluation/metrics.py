"""Per-section metrics of DCASE Task 2, computed the way the official DCASE2024 evaluator does.

The challenge ranks systems on these exact numbers, so every definition below follows the official
evaluator (``nttcslab/dcase2024_task2_evaluator`` v1.0.1) rather than a textbook variant:

- AUC-source / AUC-target: ROC AUC over that domain's normal clips plus *all* anomalous clips of the
  section (both domains).
- pAUC: ``roc_auc_score(max_fpr=0.1)`` (McClish-standardised) over all clips of the section.
- precision / recall / F1 per domain from the 0/1 decisions, using only that domain's clips, with
  denominators floored at machine epsilon.
- official score: harmonic mean of the flat list {AUC-s, AUC-t, pAUC} of all sections, each floored
  at epsilon.

Extension beyond the official script: a domain without normal clips (e.g. a dataset with no target
domain) gets ``None`` metrics instead of a crash, and means are taken over the values that exist.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats
from sklearn.metrics import roc_auc_score

from stethoscope.errors import StethoscopeError

EPS = sys.float_info.epsilon
MAX_FPR = 0.1
DOMAINS = ("source", "target")
# The nine numbers per section that the official result and our JSON schema carry.
SCHEMA_KEYS = (
    "auc_source",
    "auc_target",
    "pauc",
    "precision_source",
    "precision_target",
    "recall_source",
    "recall_target",
    "f1_source",
    "f1_target",
)


class EvaluationError(StethoscopeError, ValueError):
    """A submission or ground truth that cannot be scored; the message names the file or machine."""


@dataclass(frozen=True)
class SectionMetrics:
    """Metrics of one machine type and section; ``None`` where a domain has no normal clips."""

    auc_all: float | None  # reported, not scored; None when rebuilt from JSON
    auc_source: float | None
    auc_target: float | None
    pauc: float
    precision_source: float | None
    precision_target: float | None
    recall_source: float | None
    recall_target: float | None
    f1_source: float | None
    f1_target: float | None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, float | None]:
        """The nine official numbers (the JSON schema), without ``auc_all`` and notes."""
        return {k: getattr(self, k) for k in SCHEMA_KEYS}

    def get(self, metric: str, domain: str) -> float | None:
        """``get("auc", "source")`` -> ``auc_source``; pAUC has no domain and ignores it."""
        return self.pauc if metric == "pauc" else getattr(self, f"{metric}_{domain}")


def _preview(names: Sequence[str], mask: np.ndarray, limit: int = 5) -> str:
    picked = [names[i] for i in np.flatnonzero(mask)[:limit]]
    more = int(mask.sum()) - len(picked)
    return ", ".join(picked) + (f" (+{more} more)" if more > 0 else "")


def _as_labels(labels: Sequence | np.ndarray, context: str) -> np.ndarray:
    """0 = normal, 1 = anomaly; the strings of the file names are accepted too."""
    table = {"normal": 0, "anomaly": 1, 0: 0, 1: 1}
    try:
        return np.array(
            [table[v if isinstance(v, str) else int(v)] for v in labels], dtype=np.int64
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise EvaluationError(
            f"{context}: labels must be 0/1 or normal/anomaly, got {exc}"
        ) from None


def _as_domains(domains: Sequence, context: str) -> np.ndarray:
    """0 = source, 1 = target (the ground_truth_domain coding)."""
    table = {"source": 0, "target": 1, 0: 0, 1: 1}
    try:
        return np.array(
            [table[v if isinstance(v, str) else int(v)] for v in domains], dtype=np.int64
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise EvaluationError(
            f"{context}: domains must be 0/1 or source/target, got {exc}"
        ) from None


def _detection_scores(y: np.ndarray, decision: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 with the official epsilon floors (0 instead of NaN when undefined)."""
    tp = int(np.sum((y == 1) & (decision == 1)))
    fp = int(np.sum((y == 0) & (decision == 1)))
    fn = int(np.sum((y == 1) & (decision == 0)))
    precision = tp / max(tp + fp, EPS)
    recall = tp / max(tp + fn, EPS)
    f1 = 2.0 * precision * recall / max(precision + recall, EPS)
    return float(precision), float(recall), float(f1)


def evaluate_section(
    names: Sequence[str],
    scores: Sequence[float] | np.ndarray,
    decisions: Sequence[int] | np.ndarray,
    labels: Sequence,
    domains: Sequence,
    *,
    context: str = "section",
) -> SectionMetrics:
    """Score one machine type and section; ``context`` (machine/file) prefixes every error message."""
    n = len(names)
    if not (len(scores) == len(decisions) == len(labels) == len(domains) == n):
        raise EvaluationError(
            f"{context}: lengths differ (names {n}, scores {len(scores)}, decisions {len(decisions)}, "
            f"labels {len(labels)}, domains {len(domains)})"
        )
    if n == 0:
        raise EvaluationError(f"{context}: no clips")
    s = np.asarray(scores, dtype=np.float64)
    bad = ~np.isfinite(s)
    if bad.any():
        raise EvaluationError(
            f"{context}: non-finite anomaly scores (NaN/inf) for {_preview(names, bad)}"
        )
    d_raw = np.asarray(decisions, dtype=np.float64)
    bad = ~np.isin(d_raw, (0.0, 1.0))
    if bad.any():
        raise EvaluationError(
            f"{context}: decisions must be 0 or 1; not so for {_preview(names, bad)}"
        )
    d = d_raw.astype(np.int64)
    y = _as_labels(labels, context)
    dom = _as_domains(domains, context)
    if not (y == 1).any():
        raise EvaluationError(f"{context}: no anomalous clips, so AUC and pAUC are undefined")
    if not (y == 0).any():
        raise EvaluationError(f"{context}: no normal clips, so AUC and pAUC are undefined")

    values: dict[str, float | None] = {}
    notes: list[str] = []
    for idx, domain in enumerate(DOMAINS):
        if not ((dom == idx) & (y == 0)).any():
            notes.append(f"{context}: no {domain}-domain normal clips; {domain} metrics are None")
            for metric in ("auc", "precision", "recall", "f1"):
                values[f"{metric}_{domain}"] = None
            continue
        auc_rows = (dom == idx) | (y != 0)
        values[f"auc_{domain}"] = float(roc_auc_score(y[auc_rows], s[auc_rows]))
        in_domain = dom == idx
        p, r, f = _detection_scores(y[in_domain], d[in_domain])
        values[f"precision_{domain}"], values[f"recall_{domain}"], values[f"f1_{domain}"] = p, r, f
    return SectionMetrics(
        auc_all=float(roc_auc_score(y, s)),
        pauc=float(roc_auc_score(y, s, max_fpr=MAX_FPR)),
        notes=tuple(notes),
        **values,
    )


def floored_hmean(values: Iterable[float | None]) -> float | None:
    """``scipy.stats.hmean`` of the existing values, each floored at epsilon; None when empty."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return float(scipy.stats.hmean(np.maximum(np.asarray(present, dtype=np.float64), EPS)))


def arithmetic_mean(values: Iterable[float | None]) -> float | None:
    """``numpy.mean`` of the existing values; None when empty."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def official_score(sections: Iterable[SectionMetrics]) -> float:
    """Harmonic mean of all AUC-s, then all AUC-t, then all pAUC (the official pooling order)."""
    sections = list(sections)
    pooled = (
        [m.auc_source for m in sections]
        + [m.auc_target for m in sections]
        + [m.pauc for m in sections]
    )
    score = floored_hmean(pooled)
    if score is None:
        raise EvaluationError("no sections to score")
    return score


# --- official score ci95: jackknife over the pooled clips of all machine types --------------------


def _roc_area_sorted(y: np.ndarray, s: np.ndarray, max_fpr: float | None) -> float:
    """ROC area for clips sorted by descending score, the same curve and McClish step as sklearn.

    A re-derivation rather than a call into sklearn so that the N leave-one-out areas of the
    jackknife cost O(N) each on pre-sorted data; it agrees with ``roc_auc_score`` to rounding error.
    """
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = last_of_tie + 1 - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    if max_fpr is None or max_fpr == 1:
        return float(np.trapezoid(tpr, fpr))
    stop = int(np.searchsorted(fpr, max_fpr, side="right"))
    tpr_at = np.interp(max_fpr, fpr[stop - 1 : stop + 1], tpr[stop - 1 : stop + 1])
    partial = float(np.trapezoid(np.r_[tpr[:stop], tpr_at], np.r_[fpr[:stop], max_fpr]))
    min_area, max_area = 0.5 * max_fpr**2, max_fpr
    return 0.5 * (1 + (partial - min_area) / (max_area - min_area))


def _jackknife_ci95(
    estimate: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray, s: np.ndarray
) -> float:
    """95 % half-width of the leave-one-out jackknife (Mesaros et al., TASLP 2019, section IV).

    The spread uses sum((theta_i - mean)^2) / (N (N - 1)), as the official evaluator does.
    """
    n = y.size
    thetas = np.array([estimate(np.delete(y, i), np.delete(s, i)) for i in range(n)])
    sigma = math.sqrt(float(np.sum((thetas - np.mean(thetas)) ** 2)) / (n * (n - 1)))
    t_crit = abs(float(scipy.stats.t.ppf((1 - 0.95) / 2, n - 1)))
    return t_crit * sigma


def official_score_ci95(labels: np.ndarray, scores: np.ndarray) -> float:
    """The official "official score ci95" row: mean of the jackknife ci95 of pooled AUC and pAUC.

    Despite its name it is not a confidence interval of the official score; it is computed over all
    clips of all machine types pooled together.
    """
    y = _as_labels(labels, "pooled clips")
    s = np.asarray(scores, dtype=np.float64)
    if y.size < 3 or y.min() == y.max():
        raise EvaluationError("ci95 needs normal and anomalous clips (at least 3 in all)")
    order = np.argsort(s, kind="mergesort")[::-1]
    y, s = y[order], s[order]
    auc_ci = _jackknife_ci95(lambda a, b: _roc_area_sorted(a, b, None), y, s)
    pauc_ci = _jackknife_ci95(lambda a, b: _roc_area_sorted(a, b, MAX_FPR), y, s)
    return float(np.mean([auc_ci, pauc_ci]))


def roc_area(
    labels: Sequence | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    max_fpr: float | None = None,
) -> float:
    """The jackknife's area function on unsorted input (exposed so tests can check it against sklearn)."""
    y = _as_labels(labels, "clips")
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")[::-1]
    return _roc_area_sorted(y[order], s[order], max_fpr)


__all__ = [
    "EPS",
    "MAX_FPR",
    "SCHEMA_KEYS",
    "EvaluationError",
    "SectionMetrics",
    "arithmetic_mean",
    "evaluate_section",
    "floored_hmean",
    "official_score",
    "official_score_ci95",
    "roc_area",
]
