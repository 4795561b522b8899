"""A deliberately simple detector that tells whether the synthetic data are too easy or too hard.

Score = RMS of the z-scored difference between a clip's mean log-mel spectrum and the mean of the
training clips (of its own domain, or of all). If this trivial detector nears AUC 1.0, the anomalies
are loud give-aways and the data teach nothing; if it sits at 0.5, the faults may be inaudible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from sklearn.metrics import roc_auc_score

from stethoscope import SAMPLE_RATE
from stethoscope.audio import load_audio
from stethoscope.data import Catalog


def mean_logmel(y: np.ndarray, sr: int = SAMPLE_RATE, n_mels: int = 64) -> np.ndarray:
    """Time-averaged log-mel spectrum of a clip (the detector's only feature)."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=n_mels, power=2.0
    )
    return np.log10(mel + 1e-10).mean(axis=1)


def detector_scores(
    train: dict[str, np.ndarray], test: np.ndarray, test_domains: list[str], mode: str = "domain"
) -> np.ndarray:
    """Scores for test features; ``train`` maps domain -> (clips, bins) features.

    ``mode="domain"``: mean of the clip's own domain, spread of all training clips;
    ``mode="all"``: mean and spread of all training clips together.
    """
    everything = np.concatenate(list(train.values()))
    sd = everything.std(axis=0) + 1e-3
    mu_all = everything.mean(axis=0)
    scores = np.empty(len(test))
    for i, (x, d) in enumerate(zip(test, test_domains)):
        mu = train[d].mean(axis=0) if mode == "domain" and d in train else mu_all
        scores[i] = np.sqrt(np.mean(((x - mu) / sd) ** 2))
    return scores


def metrics(scores: np.ndarray, labels: np.ndarray, domains: list[str]) -> dict[str, float]:
    """AUC-source, AUC-target and pAUC (max FPR 0.1) as the DCASE evaluator defines them, plus
    the mean within-domain AUC."""
    dom = np.asarray(domains)
    out = {}
    for d, key in (("source", "auc_s"), ("target", "auc_t")):
        sel = (labels == 1) | (dom == d)
        out[key] = float(roc_auc_score(labels[sel], scores[sel]))
    out["pauc"] = float(roc_auc_score(labels, scores, max_fpr=0.1))
    # not an official metric: faults against normals of their own domain only, which is what
    # separates "faults are audible" from "target clips are merely unusual"
    out["auc_within"] = float(
        np.mean([roc_auc_score(labels[dom == d], scores[dom == d]) for d in ("source", "target")])
    )
    return out


def _clip(path: Path, channel: int | None) -> np.ndarray:
    if channel is None:
        return load_audio(path)
    data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data[:, min(channel, data.shape[1] - 1)])


def evaluate_dataset(
    root: str | Path,
    machines: list[str] | None = None,
    modes: tuple[str, ...] = ("domain", "all"),
    channel: int | None = None,
) -> dict[str, dict[str, dict]]:
    """Run the simple detector on every machine of a dataset root: mode -> machine -> metrics.

    ``channel``: the channel of two-channel (near-far) clips to judge (0 near, 1 far); None reads
    clips as :func:`~stethoscope.audio.load_audio` does."""
    cat = Catalog.scan(root, machines=machines)
    results: dict[str, dict[str, dict]] = {mode: {} for mode in modes}
    for m in cat.machines():
        train: dict[str, list[np.ndarray]] = {}
        for c in cat.select(machine=m, split="train"):
            train.setdefault(c.domain or "source", []).append(mean_logmel(_clip(c.path, channel)))
        tests = cat.select(machine=m, split="test")
        feats = np.stack([mean_logmel(_clip(c.path, channel)) for c in tests])
        labels = np.array([c.label == "anomaly" for c in tests], dtype=int)
        domains = [c.domain or "source" for c in tests]
        stacked = {d: np.stack(v) for d, v in train.items()}
        for mode in modes:
            results[mode][m] = metrics(
                detector_scores(stacked, feats, domains, mode), labels, domains
            )
    return results


def quick_check(
    machines: list[str],
    seed: int = 0,
    duration: float = 10.0,
    n_train: int = 60,
    n_test: int = 30,
    mode: str = "domain",
    channels: str = "mono",
    noise_db: float | None = None,
    channel: int = 0,
) -> dict[str, dict[str, float]]:
    """The simple detector on clips synthesised in memory (no files): machine -> metrics.

    Uses the clips a full-scale dataset would hold (the first ``n_train`` source training clips,
    all target training clips, the first ``n_test`` of each test cell), so it is a cheap preview
    of :func:`evaluate_dataset` on the written data, used for tuning and in the tests. Near-far
    clips are judged on one ``channel`` (0: near, 1: far).
    """
    from stethoscope.synth.generator import NEAR_FAR_NOISE_DB, plan_machine, synthesise
    from stethoscope.synth.machines import MACHINES

    limits = {
        ("train", "source"): n_train,
        ("train", "target"): n_test,
        ("test", "source"): n_test,
        ("test", "target"): n_test,
    }
    results = {}
    for m in machines:
        jobs: list = []
        seen: dict[tuple, int] = {}
        noise = NEAR_FAR_NOISE_DB if noise_db is None else noise_db
        for j in plan_machine(
            Path("."), MACHINES[m], seed, 1.0, duration, channels=channels, noise_db=noise
        ):
            key = (j.split, j.domain, j.label)
            if j.split != "supplemental" and seen.get(key, 0) < limits[(j.split, j.domain)]:
                seen[key] = seen.get(key, 0) + 1
                jobs.append(j)
        waves = [synthesise(j) for j in jobs]
        feats = [
            mean_logmel(y if y.ndim == 1 else np.ascontiguousarray(y[:, channel])) for y in waves
        ]
        train: dict[str, list[np.ndarray]] = {}
        for j, f in zip(jobs, feats):
            if j.split == "train":
                train.setdefault(j.domain, []).append(f)
        test = [(j, f) for j, f in zip(jobs, feats) if j.split == "test"]
        labels = np.array([j.label == "anomaly" for j, _ in test], dtype=int)
        domains = [j.domain for j, _ in test]
        scores = detector_scores(
            {d: np.stack(v) for d, v in train.items()},
            np.stack([f for _, f in test]),
            domains,
            mode,
        )
        results[m] = metrics(scores, labels, domains)
    return results


def format_table(results: dict[str, dict[str, float]]) -> str:
    keys = ("auc_s", "auc_t", "pauc", "auc_within")
    lines = [f"{'machine':<10} {'AUC-s':>6} {'AUC-t':>6} {'pAUC':>6} {'within':>6}"]
    for m, r in results.items():
        lines.append(f"{m:<10} " + " ".join(f"{r[k]:6.3f}" for k in keys))
    lines.append(
        f"{'mean':<10} "
        + " ".join(f"{np.mean([r[k] for r in results.values()]):6.3f}" for k in keys)
    )
    return "\n".join(lines)


if __name__ == "__main__":  # python -m stethoscope.synth.check ROOT
    import sys

    for mode, table in evaluate_dataset(sys.argv[1]).items():
        print(f"mode: {mode}")
        print(format_table(table))
