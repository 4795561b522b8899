"""The dual-branch CNN of an export: its input features in numpy, its members in onnxruntime.

The features are those of :mod:`stethoscope.models.dualcnn.inputs`: the |STFT| (periodic Hann,
not centred) with each bin's mean over the frames inside the real signal removed (frames that
touch padding zeroed), and the |rFFT| of the whole fitted waveform up to ``fmax``. Windows, views,
length normalisation and the per-clip mean are :mod:`stethoscope.dsp.windows`', as in torch; the
members' embeddings go side by side, scaled by 1/sqrt(N), as the torch front end hands them over.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stethoscope.data.clip import Clip
from stethoscope.data.labels import section_columns
from stethoscope.dsp.logmel import frames, hann, rfft
from stethoscope.dsp.windows import (
    clip_windows,
    crop_samples,
    fit_length,
    normalise,
    per_clip_mean,
    view_crops,
)
from stethoscope.errors import ConfigError, ModelError
from stethoscope.export.frontends import NumpyFrontEnd
from stethoscope.export.manifest import field
from stethoscope.export.sessions import Network

OUTPUTS = ("embedding", "views", "embedding-logits")


def spectrogram(waves: np.ndarray, real_len: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(B, L) waveforms -> (B, n_fft//2 + 1, T) |STFT| minus each bin's mean over the real
    frames; frames reaching into the padding are zero."""
    spec = np.abs(rfft(frames(waves, n_fft, hop) * hann(n_fft))).astype(np.float32)  # (B, T, F)
    t = spec.shape[1]
    n_real = np.clip((np.asarray(real_len) - n_fft) // hop + 1, 1, t)
    mask = (np.arange(t)[None, :] < n_real[:, None]).astype(np.float32)[:, :, None]
    mean = (spec * mask).sum(axis=1, keepdims=True) / n_real[:, None, None].astype(np.float32)
    return np.ascontiguousarray(((spec - mean) * mask).transpose(0, 2, 1), dtype=np.float32)


def spectrum(waves: np.ndarray, n_bins: int) -> np.ndarray:
    """(B, L) waveforms -> (B, n_bins) |rFFT| of the whole waveform."""
    return np.abs(rfft(waves)[:, :n_bins]).astype(np.float32)


class DualCNNFrontEnd(NumpyFrontEnd):
    def __init__(
        self,
        directory: Path,
        meta: dict[str, Any],
        feature: dict[str, Any],
        threads: int | None = None,
    ) -> None:
        super().__init__(directory, meta, feature)
        members = field(meta, "members", list, directory)
        self.members = [
            Network(directory, e, f"dual-branch CNN member {k}", threads)
            for k, e in enumerate(members)
        ]
        if not self.members:
            raise ModelError(f"{directory}: the dual-branch CNN has no member")
        arch = field(meta, "arch", dict, directory)
        self.length, self.fit_mode = int(arch["input_len"]), str(arch["fit_mode"])
        self.n_fft, self.hop = int(arch["n_fft"]), int(arch["hop"])
        self.sample_rate = int(arch["sample_rate"])
        self.n_bins = int(field(meta, "n_spectrum_bins", int, directory))
        self.n_views = int(meta.get("n_views", 8))
        self.crop_seconds = meta.get("crop_seconds")
        self.views = str(meta.get("views", "crops"))
        self.class_names = [str(c) for c in meta.get("class_names", [])]
        self.n_data_classes = int(meta.get("n_data_classes", len(self.class_names)))
        self.batch = max(1, int(meta.get("batch") or 64))

    def transform(
        self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str
    ) -> np.ndarray:
        if output not in OUTPUTS:
            raise ConfigError(f"the dual-branch CNN gives {OUTPUTS}, not '{output}'")
        waves = [np.asarray(w, dtype=np.float32).reshape(-1) for w in inputs]
        n = len(self.members)
        if output == "views":
            crop = crop_samples(self.crop_seconds, self.sample_rate)
            fitted = [
                v
                for w in waves
                for v in view_crops(w, self.n_views, crop, self.length, self.views, self.fit_mode)
            ]
            outs = self._forward(fitted)
            parts = [normalise(e.reshape(len(waves), self.n_views, -1)) for e, _ in outs]
            return (np.concatenate(parts, axis=-1) / np.sqrt(n)).astype(np.float64)
        parts_, owner = clip_windows(waves, self.length)
        outs = self._forward([fit_length(w, self.length, self.fit_mode) for w in parts_])
        embs = [normalise(per_clip_mean(normalise(e), owner, len(waves))) for e, _ in outs]
        if output == "embedding":
            return (np.concatenate(embs, axis=-1) / np.sqrt(n)).astype(np.float64)
        cols = section_columns(self.class_names[: self.n_data_classes], clips)
        joined = []
        for emb, (_, lg) in zip(embs, outs, strict=True):
            if lg is None:
                raise ModelError("the export's dual-branch CNN gives no logits (exported for a "
                                 "system that does not read them)")  # fmt: skip
            # the embedding as the torch front end memoises it: float64, /sqrt(N) then *sqrt(N)
            e64 = emb.astype(np.float64) / np.sqrt(n) * np.sqrt(n)
            joined.append(np.concatenate([e64, per_clip_mean(lg, owner, len(waves))[:, cols]], 1))
        return (np.concatenate(joined, axis=-1) / np.sqrt(n)).astype(np.float64)

    def _forward(
        self, fitted: list[tuple[np.ndarray, int]]
    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per member, (embeddings, logits or None) of the fitted waveforms, in batches."""
        got: list[list[list[np.ndarray]]] = [[] for _ in self.members]
        for s in range(0, len(fitted), self.batch):
            chunk = fitted[s : s + self.batch]
            waves = np.stack([w for w, _ in chunk])
            lens = np.array([n for _, n in chunk], dtype=np.int64)
            feats = (spectrogram(waves, lens, self.n_fft, self.hop), spectrum(waves, self.n_bins))
            for k, member in enumerate(self.members):
                got[k].append(member.run(*feats))
        out = []
        for parts in got:
            emb = np.concatenate([p[0] for p in parts])
            lg = np.concatenate([p[1] for p in parts]) if len(parts[0]) > 1 else None
            out.append((emb, lg))
        return out
