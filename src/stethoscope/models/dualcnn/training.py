"""Training the dual-branch CNN on the auxiliary classes (SPEC 4.2), through the shared loop.

Data path (:mod:`stethoscope.models.clip_batches`): on a GPU whose memory holds them, all training
clips are fitted to the model length once and kept there, and batches are formed there from index
tensors already on the device; otherwise (the CPU, or more data than the GPU holds) each batch is
gathered from the clips as stored (the memory-mapped feature cache) by a few threads ahead of the
step, so memory holds a few batches, not the data set. Features, augmentation and the loss run on
the device, and nothing in the step reads a value back to the host. The network runs in
channels_last (cuDNN and oneDNN both prefer it); on CUDA under bf16 autocast (``amp``), with the
AdaCos heads in float32; ``compile`` runs it through ``torch.compile``. On the CPU it uses half
the cores unless ``threads`` says otherwise, so that a second training or other work beside it
does not make all threads wait on each other (:func:`devices.shared_threads`). Under torchrun the
ranks train it together (:mod:`stethoscope.models.training`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stethoscope.devices import cpu_threads, resolve_device
from stethoscope.models.clip_batches import Batch, ClipBatches
from stethoscope.models.clip_length import MAX_INPUT_SECONDS, typical_length
from stethoscope.models.dualcnn.inputs import fit_length
from stethoscope.models.dualcnn.losses import SubClusterAdaCos, feature_exchange, mixup, one_hot
from stethoscope.models.dualcnn.torch_model import ArchConfig, DualBranchCNN
from stethoscope.models.training import EpochRandom, LoopConfig, digest, global_seed, train
from stethoscope.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DualCNNConfig:
    """Training configuration; defaults follow SPEC 4.2 (Wilkinghoff's recipe)."""

    input_seconds: float | None = None  # None: the training clips' median length, capped:
    max_input_seconds: float = MAX_INPUT_SECONDS  # (see models/clip_length.py)
    sample_rate: int = 16_000
    fit_mode: str = "tile"  # "tile" | "pad"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    n_subclusters: int = 16
    mixup_p: float = 0.5
    feature_exchange: bool = True
    featex_p: float = 0.5
    seed: int = 0
    amp: bool = True  # bf16 autocast, CUDA only
    supplemental_noise: bool = False  # add supplemental/noise clips at random SNR
    noise_p: float = 0.5
    noise_snr_db: tuple[float, float] = (5.0, 20.0)
    threads: int | None = None  # torch threads on the CPU (None: half the cores)
    eval_batch: int = 64  # clips per forward pass when embedding
    compile: bool = False  # run the network through torch.compile in training
    compile_backend: str = "inductor"  # torch.compile's backend ("aot_eager": no code generation)
    data_on_device: bool | None = None  # clips held on the GPU (None: when they fit its budget)
    max_steps: int | None = None  # at most this many steps per epoch (benchmarks, smoke runs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """The settings a checkpoint must share to be resumed: not those that change how it runs
        rather than what it learns (threads, embedding batch, compilation, where data live)."""
        return {k: v for k, v in asdict(self).items() if k not in _HOW_IT_RUNS}


_HOW_IT_RUNS = ("threads", "eval_batch", "compile", "compile_backend", "data_on_device")


def _noise_bank(waves: Sequence[np.ndarray], length: int) -> torch.Tensor:
    """The supplemental noise clips, tiled to ``length``, as one (N, L) tensor."""
    return torch.from_numpy(np.stack([fit_length(w, length, "tile")[0] for w in waves]))


def add_noise(
    wave: torch.Tensor,
    real_len: torch.Tensor,
    bank: torch.Tensor,
    cfg: DualCNNConfig,
    gen: torch.Generator,
) -> torch.Tensor:
    """Add a random bank clip to a random fraction of the batch at an SNR ~ U(noise_snr_db)."""
    b, dev = wave.shape[0], wave.device
    noise = bank[torch.randint(0, bank.shape[0], (b,), generator=gen, device=dev)]
    apply = (torch.rand(b, generator=gen, device=dev) < cfg.noise_p).float()
    lo, hi = cfg.noise_snr_db
    snr = lo + (hi - lo) * torch.rand(b, generator=gen, device=dev)
    mask = (torch.arange(wave.shape[1], device=dev)[None, :] < real_len[:, None]).float()
    p_sig = (wave.pow(2) * mask).sum(1) / real_len.clamp_min(1).float()
    p_noise = noise.pow(2).mean(1).clamp_min(1e-12)
    gain = torch.sqrt(p_sig / (p_noise * 10.0 ** (snr / 10.0))) * apply
    return wave + gain[:, None] * noise * mask


class _CNNTask:
    def __init__(
        self,
        model: DualBranchCNN,
        head: SubClusterAdaCos,
        fx_head: SubClusterAdaCos | None,
        data: ClipBatches,
        n_classes: int,
        bank: torch.Tensor | None,
        cfg: DualCNNConfig,
    ) -> None:
        self.modules: dict[str, torch.nn.Module] = {"model": model}  # the head is inside
        if fx_head is not None:
            self.modules["fx_head"] = fx_head
        self.model, self.head, self.fx_head = model, head, fx_head
        self.data, self.n_classes, self.bank, self.cfg = data, n_classes, bank, cfg
        self.forward: Any = model
        if cfg.compile:
            model.spectrogram.window(next(model.parameters()).device)  # made before, not traced
            self.forward = torch.compile(model, backend=cfg.compile_backend)

    def batches(self, epoch: int, rand: EpochRandom) -> list[torch.Tensor]:
        return self.data.order(rand.host, self.cfg.batch_size)

    def load(self, batches: Sequence[torch.Tensor]) -> Iterator[Batch]:
        return self.data.load(batches)

    def step(
        self, batch: Batch, rand: EpochRandom
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        wave, real_len, y_int = batch
        n = wave.shape[0]
        target = one_hot(y_int, self.n_classes)
        if self.bank is not None:
            wave = add_noise(wave, real_len, self.bank, self.cfg, rand.device)
        wave, real_len, target = mixup(wave, real_len, target, self.cfg.mixup_p, rand.device)
        e_spec, e_spectrum = self.forward(wave, real_len)  # bf16 under the loop's autocast
        with torch.autocast(wave.device.type, enabled=False):
            e_spec, e_spectrum = e_spec.float(), e_spectrum.float()
            emb = torch.cat([e_spec, e_spectrum], dim=1)
            loss_main = self.head(emb, target)
            loss_fx = torch.zeros((), device=emb.device)
            if self.fx_head is not None:
                emb_x, target_x = feature_exchange(
                    e_spec, e_spectrum, target, self.cfg.featex_p, rand.device
                )
                loss_fx = self.fx_head(emb_x, target_x)
            with torch.no_grad():
                hits = self.head.class_logits(emb).argmax(1) == target.argmax(1)
        parts = {"loss_main": loss_main, "loss_featex": loss_fx, "train_acc": hits.float().mean()}
        return loss_main + loss_fx, parts, n

    def epoch_metrics(self) -> dict[str, float]:
        return {"scale": float(self.head.scale)}


def train_dualcnn(
    waves: Sequence[np.ndarray],
    labels: np.ndarray,
    n_classes: int,
    cfg: DualCNNConfig | None = None,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
    noise_waves: Sequence[np.ndarray] | None = None,
    work_dir: str | Path | None = None,
    name: str = "dualcnn",
) -> tuple[DualBranchCNN, list[dict]]:
    """Train one model on all clips (auxiliary classification); returns (model, per-epoch history).

    ``waves`` may read each clip when indexed (:class:`~stethoscope.features.stored.StoredFeatures`
    from the feature cache): they are read a batch at a time, never all at once. The model is in
    eval mode, on the training device, with its main AdaCos head attached (``model.head``) for
    class logits and persistence. ``work_dir`` holds the epoch checkpoint; training resumes from
    it (see :func:`stethoscope.models.training.train`).
    """
    cfg = cfg or DualCNNConfig()
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(waves) != labels.shape[0] or len(waves) < 2:
        raise ValueError(
            f"need >= 2 clips with one label each, got {len(waves)} clips, {labels.shape[0]} labels"
        )
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"labels must lie in [0, {n_classes}), got [{labels.min()}, {labels.max()}]"
        )
    use_noise = bool(cfg.supplemental_noise and noise_waves)
    if cfg.supplemental_noise and not noise_waves:
        log.warning(
            "dualcnn: supplemental_noise is on but no noise clips were given; training without"
        )
    dev = resolve_device(device)
    length = (
        int(round(cfg.input_seconds * cfg.sample_rate))
        if cfg.input_seconds
        else typical_length(waves, cfg.sample_rate, cfg.max_input_seconds)
    )
    arch = ArchConfig(input_len=length, sample_rate=cfg.sample_rate, fit_mode=cfg.fit_mode)
    fingerprint = {
        "dualcnn": cfg.fingerprint(),
        "input_len": length,
        "n_classes": n_classes,
        "data": digest(waves),
        "labels": digest([labels]),
        "noise": digest(noise_waves or []) if use_noise else None,
    }
    with cpu_threads(cfg.threads, dev):
        with global_seed(cfg.seed):
            model = DualBranchCNN(arch)
        head = SubClusterAdaCos(
            model.emb_dim, n_classes, cfg.n_subclusters, learnable_centres=False, seed=cfg.seed
        )
        model.head = head
        fx_head = (
            SubClusterAdaCos(
                model.emb_dim,
                3 * n_classes,
                cfg.n_subclusters,
                learnable_centres=True,
                seed=cfg.seed + 1,
            )
            if cfg.feature_exchange
            else None
        )
        model.to(dev)
        # faster on cuDNN, ~20 % with oneDNN on CPU
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if fx_head is not None:
            fx_head.to(dev)
        data = ClipBatches(waves, labels, length, cfg.fit_mode, dev, cfg.data_on_device)
        bank = _noise_bank(list(noise_waves or []), length).to(dev) if use_noise else None
        task = _CNNTask(model, head, fx_head, data, n_classes, bank, cfg)
        loop = LoopConfig(
            name=name,
            epochs=cfg.epochs,
            seed=cfg.seed,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            amp=cfg.amp,
            threads=cfg.threads,
            cudnn_benchmark=True,
            max_steps=cfg.max_steps,
        )
        history = train(
            task, loop, dev, fingerprint=fingerprint, work_dir=work_dir, progress=progress
        )
    return model, history
