"""Diagnostic figures of one system, drawn from its saved clip scores and embeddings (PNG bytes).

Three views answer three questions: ROC curves per domain (does the score rank anomalies above
normals, and how much worse is the target domain?), score distributions with the threshold (where do
decisions fall, and is the threshold placed sensibly?) and a 2-D map of embeddings (do domains or
anomalies separate in the front end's space?). Figures are built on a bare ``Figure`` with the Agg
canvas, so no display and no global pyplot state are involved.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

DPI = 100
DOMAIN_COLOURS = {"source": "tab:blue", "target": "tab:orange", "": "tab:gray"}
PANEL_W, PANEL_H = 3.0, 2.6  # inches per subplot


@dataclass
class Plot:
    """One finished figure: file stem (``<system>_<kind>``), caption and PNG bytes."""

    system: str
    kind: str  # "roc" | "scores" | "embeddings"
    caption: str
    png: bytes

    @property
    def file_name(self) -> str:
        return f"{self.system}_{self.kind}.png"


@dataclass
class ClipScores:
    """Columns of clip_scores.csv as arrays (strings empty where unknown)."""

    machine: np.ndarray
    section: np.ndarray
    domain: np.ndarray
    label: np.ndarray
    score: np.ndarray
    threshold: np.ndarray

    def groups(self) -> list[tuple[str, np.ndarray]]:
        """(panel title, row mask) per machine and section; the section only when a machine has several."""
        keys = sorted(
            set(zip(self.machine.tolist(), self.section.tolist())),
            key=lambda k: (k[0].lower(), k[1]),
        )
        per_machine = {m: sum(1 for k in keys if k[0] == m) for m, _ in keys}
        return [
            (m if per_machine[m] == 1 else f"{m} {s}", (self.machine == m) & (self.section == s))
            for m, s in keys
        ]


def read_clip_scores(path: str | Path) -> ClipScores | None:
    """None when the file is missing or empty."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None

    def col(name: str) -> np.ndarray:
        return np.array([(r.get(name) or "").strip() for r in rows], dtype=str)

    def num(name: str) -> np.ndarray:
        return np.array([float(v) if v else math.nan for v in col(name)], dtype=np.float64)

    return ClipScores(
        col("machine"), col("section"), col("domain"), col("label"), num("score"), num("threshold")
    )


def _grid(n: int, title: str) -> tuple[Figure, list]:
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(PANEL_W * ncols, PANEL_H * nrows + 0.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return fig, axes[:n]


def _legend(fig: Figure, handles: list) -> None:
    """A shared legend below the panels, wrapped so it never runs past a narrow figure."""
    ncols = max(1, min(len(handles), int(fig.get_figwidth() / 1.15)))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=ncols,
        fontsize=7.5,
        frameon=False,
        handlelength=1.5,
        columnspacing=1.0,
    )


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def roc_png(clips: ClipScores, system: str) -> bytes | None:
    """ROC per machine: source normals vs all anomalies, target normals vs all anomalies."""
    from sklearn.metrics import roc_auc_score, roc_curve

    groups = clips.groups()
    if not (clips.label == "anomaly").any() or not (clips.label == "normal").any():
        return None
    fig, axes = _grid(
        len(groups), f"{system}: ROC per domain (normals of the domain vs all anomalies)"
    )
    for ax, (title, mask) in zip(axes, groups):
        anomalies = mask & (clips.label == "anomaly")
        drawn = False
        for domain in ("source", "target"):
            normals = mask & (clips.label == "normal") & (clips.domain == domain)
            if not normals.any() or not anomalies.any():
                continue
            pick = normals | anomalies
            y, s = anomalies[pick].astype(int), clips.score[pick]
            fpr, tpr, _ = roc_curve(y, s)
            auc = roc_auc_score(y, s)
            ax.plot(
                fpr,
                tpr,
                color=DOMAIN_COLOURS[domain],
                lw=1.5,
                label=f"{domain} AUC {100 * auc:.1f}",
            )
            drawn = True
        ax.axvspan(0.0, 0.1, color="0.92", zorder=0)
        ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), title=title, xlabel="false positive rate")
        ax.set_ylabel("true positive rate")
        if drawn:
            ax.legend(loc="lower right", fontsize=8, frameon=False)
        else:
            ax.text(0.5, 0.5, "no labelled normals/anomalies", ha="center", va="center", fontsize=8)
    return _png(fig)


def scores_png(clips: ClipScores, system: str) -> bytes | None:
    """Score histograms per machine by domain (colour) and label (filled normal, outlined anomaly)."""
    groups = clips.groups()
    if not groups:
        return None
    fig, axes = _grid(
        len(groups), f"{system}: anomaly scores by domain and label, with the threshold"
    )
    for ax, (title, mask) in zip(axes, groups):
        scores = clips.score[mask]
        thresholds = np.unique(clips.threshold[mask][np.isfinite(clips.threshold[mask])])
        finite = scores[np.isfinite(scores)]
        span = np.concatenate([finite, thresholds]) if finite.size else thresholds
        if span.size == 0:
            ax.set_title(title)
            continue
        edges = np.histogram_bin_edges(span, bins=int(np.clip(2 * np.sqrt(span.size), 10, 40)))
        for domain in ("source", "target", ""):
            for label in ("normal", "anomaly", ""):
                pick = (
                    mask
                    & (clips.domain == domain)
                    & (clips.label == label)
                    & np.isfinite(clips.score)
                )
                if not pick.any():
                    continue
                style = (
                    dict(histtype="stepfilled", alpha=0.35)
                    if label != "anomaly"
                    else dict(histtype="step", lw=1.6)
                )
                ax.hist(
                    clips.score[pick],
                    bins=edges,
                    density=True,
                    color=DOMAIN_COLOURS[domain],
                    **style,
                )
        for t in thresholds:
            ax.axvline(t, color="crimson", ls="--", lw=1.3)
        ax.set(title=title, xlabel="anomaly score")
        ax.set_ylabel("density")
    handles = [
        Patch(color=DOMAIN_COLOURS["source"], alpha=0.35, label="source normal"),
        Line2D([], [], color=DOMAIN_COLOURS["source"], lw=1.6, label="source anomaly"),
        Patch(color=DOMAIN_COLOURS["target"], alpha=0.35, label="target normal"),
        Line2D([], [], color=DOMAIN_COLOURS["target"], lw=1.6, label="target anomaly"),
        Line2D([], [], color="crimson", ls="--", lw=1.3, label="threshold"),
    ]
    _legend(fig, handles)
    return _png(fig)


def project_2d(x: np.ndarray, tsne: bool = False, seed: int = 0) -> np.ndarray:
    """PCA (or t-SNE initialised from PCA) to two dimensions; deterministic for a given seed."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < 2 or x.shape[1] < 2:
        return np.column_stack([x[:, 0] if x.shape[1] else np.zeros(len(x)), np.zeros(len(x))])
    if tsne and x.shape[0] >= 5:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        perplexity = float(min(30.0, (x.shape[0] - 1) / 3))
        # one thread: OpenMP oversubscription on a busy machine makes small t-SNE runs 40x slower
        with threadpool_limits(1):
            return TSNE(
                n_components=2, perplexity=perplexity, init="pca", random_state=seed, n_jobs=1
            ).fit_transform(x)
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(x)


def embeddings_png(npz_path: str | Path, system: str, tsne: bool = False) -> bytes | None:
    """One 2-D map per machine of the test embeddings; colour = domain, o = normal, x = anomaly."""
    npz_path = Path(npz_path)
    if not npz_path.is_file():
        return None
    with np.load(npz_path, allow_pickle=False) as data:
        x = np.asarray(data["x"], dtype=np.float32)
        machine = np.asarray(data["machine"]).astype(str)
        domain = np.asarray(data["domain"]).astype(str) if "domain" in data else np.full(len(x), "")
        label = np.asarray(data["label"]).astype(str) if "label" in data else np.full(len(x), "")
    if x.ndim != 2 or len(x) == 0:
        return None
    machines = sorted(set(machine.tolist()), key=str.lower)
    method = "t-SNE" if tsne else "PCA"
    fig, axes = _grid(len(machines), f"{system}: test embeddings ({method}), per machine")
    for ax, m in zip(axes, machines):
        mask = machine == m
        xy = project_2d(x[mask], tsne=tsne)
        for dom in ("source", "target", ""):
            for lab, marker in (("normal", "o"), ("", "."), ("anomaly", "x")):
                pick = (domain[mask] == dom) & (label[mask] == lab)
                if not pick.any():
                    continue
                kw = (
                    dict(s=12, alpha=0.55, edgecolors="none")
                    if marker == "o"
                    else dict(s=18, lw=1.0)
                )
                ax.scatter(xy[pick, 0], xy[pick, 1], marker=marker, color=DOMAIN_COLOURS[dom], **kw)
        ax.set_title(m)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        Line2D([], [], ls="", marker="o", color=DOMAIN_COLOURS["source"], label="source normal"),
        Line2D([], [], ls="", marker="x", color=DOMAIN_COLOURS["source"], label="source anomaly"),
        Line2D([], [], ls="", marker="o", color=DOMAIN_COLOURS["target"], label="target normal"),
        Line2D([], [], ls="", marker="x", color=DOMAIN_COLOURS["target"], label="target anomaly"),
    ]
    _legend(fig, handles)
    return _png(fig)


def system_plots(system_dir: str | Path, tsne: bool = False) -> list[Plot]:
    """Every figure the saved results of one system allow, in a fixed order."""
    system_dir = Path(system_dir)
    name = system_dir.name
    plots: list[Plot] = []
    clips = read_clip_scores(system_dir / "clip_scores.csv")
    if clips is not None:
        png = roc_png(clips, name)
        if png:
            plots.append(
                Plot(
                    name,
                    "roc",
                    f"{name}: ROC curves per machine; source and target normals "
                    "each against all anomalies. Grey band: FPR ≤ 0.1 (the pAUC range).",
                    png,
                )
            )
        png = scores_png(clips, name)
        if png:
            plots.append(
                Plot(
                    name,
                    "scores",
                    f"{name}: anomaly-score distributions per machine (density); "
                    "dashed red line: decision threshold.",
                    png,
                )
            )
    png = embeddings_png(system_dir / "embeddings.npz", name, tsne=tsne)
    if png:
        method = "t-SNE" if tsne else "PCA"
        plots.append(
            Plot(
                name,
                "embeddings",
                f"{name}: test-clip embeddings in 2-D ({method}, fitted per "
                "machine); colour = domain, o = normal, x = anomaly.",
                png,
            )
        )
    return plots
