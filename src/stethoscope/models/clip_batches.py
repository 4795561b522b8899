"""Training batches of fixed-length waveforms (+ real lengths and labels) for the networks that read
waveforms (dual-branch CNN, ACAE): on the device when the data fit there, else streamed.

- **On the device** (CUDA, and the fitted clips take at most :data:`DEVICE_BUDGET` of its free
  memory): every clip is fitted to the length once, in chunks, into one (N, L) tensor there,
  with its real length and label. An epoch's permutation is copied to the device once and cut
  into index tensors there, so a step is an ``index_select`` on the device: no host work, no
  copy, no synchronisation.
- **Streamed** (the CPU, or data larger than the budget): each batch is gathered from the clips as
  given, typically :class:`~stethoscope.features.stored.StoredFeatures` that read each clip from
  the memory-mapped feature cache when asked, into a fresh (B, L) tensor (pinned on CUDA and
  copied without blocking). A few threads prepare the next batches while the current one trains
  (:func:`~stethoscope.prefetch.ordered_map`), so memory holds a few batches whatever the size of
  the data set.

Both give the same tensors for the same indices.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from stethoscope.dsp.windows import fit_length
from stethoscope.prefetch import ordered_map

#: at most this share of the GPU's free memory holds training waveforms
DEVICE_BUDGET = 0.5
#: clips fitted and copied to the device at a time when filling it
_CHUNK = 256

#: one batch: (waveforms (B, L) float32, real lengths (B,), labels (B,)), on the training device
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def fits_device(n_clips: int, length: int, device: torch.device) -> bool:
    """Whether ``n_clips`` fitted clips of ``length`` samples (float32) fit the device budget."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return n_clips * length * 4 <= DEVICE_BUDGET * free


class ClipBatches:
    """The clips of a training set, brought to ``length`` samples by ``mode`` ("tile" or "pad")."""

    def __init__(
        self,
        waves: Sequence[np.ndarray],
        labels: np.ndarray,
        length: int,
        mode: str,
        device: torch.device,
        on_device: bool | None = None,
        workers: int = 2,
    ) -> None:
        if len(waves) != len(labels):
            raise ValueError(f"{len(waves)} clips but {len(labels)} labels")
        self.waves, self.length, self.mode, self.device = waves, length, mode, device
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.n = len(waves)
        self.workers = workers
        self.on_device = fits_device(self.n, length, device) if on_device is None else on_device
        self.x: torch.Tensor | None = None
        if self.on_device:
            self.x, self.lens = self._fill()
            self.labels = self.labels.to(device)

    def order(self, gen: torch.Generator, batch_size: int) -> list[torch.Tensor]:
        """An epoch: a permutation drawn from ``gen`` cut into batches of ``batch_size`` index
        tensors (on the device when the data are there); a last batch of one clip is dropped
        (BatchNorm cannot train on it)."""
        perm = torch.randperm(self.n, generator=gen)
        if self.on_device:
            perm = perm.to(self.device)
        b = batch_size
        return [perm[s : s + b] for s in range(0, self.n, b) if min(b, self.n - s) >= 2]

    def load(self, batches: Sequence[torch.Tensor]) -> Iterator[Batch]:
        """The batches' tensors on the training device, in order."""
        if self.on_device:
            for idx in batches:
                yield self.take(idx)
            return
        cuda = self.device.type == "cuda"
        init = (lambda: torch.cuda.set_device(self.device)) if cuda else None
        for wave, lens, labels in ordered_map(
            self.gather, batches, self.workers, name="batches", initializer=init
        ):
            yield (
                wave.to(self.device, non_blocking=cuda),
                lens.to(self.device, non_blocking=cuda),
                labels.to(self.device, non_blocking=cuda),
            )

    def take(self, idx: torch.Tensor) -> Batch:
        """A batch of the clips held on the device."""
        assert self.x is not None
        return self.x[idx], self.lens[idx], self.labels[idx]

    def gather(self, idx: torch.Tensor) -> Batch:
        """A batch gathered on the host from the clips as given (pinned when training on CUDA)."""
        pin = self.device.type == "cuda"
        rows = idx.tolist()
        wave = torch.empty((len(rows), self.length), dtype=torch.float32, pin_memory=pin)
        lens = torch.empty(len(rows), dtype=torch.long, pin_memory=pin)
        for j, i in enumerate(rows):
            fitted, n = fit_length(self.waves[i], self.length, self.mode)
            wave[j] = torch.from_numpy(fitted)
            lens[j] = n
        labels = self.labels[torch.as_tensor(rows, dtype=torch.long)]
        return wave, lens, labels.pin_memory() if pin else labels

    def _fill(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every clip fitted into one (N, L) tensor on the device, a chunk at a time."""
        x = torch.empty((self.n, self.length), dtype=torch.float32, device=self.device)
        lens = torch.empty(self.n, dtype=torch.long, device=self.device)
        for s in range(0, self.n, _CHUNK):
            wave, n, _ = self.gather(torch.arange(s, min(s + _CHUNK, self.n)))
            x[s : s + wave.shape[0]].copy_(wave, non_blocking=True)
            lens[s : s + wave.shape[0]].copy_(n, non_blocking=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the pinned chunks may be reused after this
        return x, lens
