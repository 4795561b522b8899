"""Training, embedding and persistence of the dual-branch CNN (SPEC 4.2).

Data path: all training clips are fitted to the model length once and held in host memory as one
float32 (N, L) tensor (page-locked when training on a GPU). Each batch is gathered on the host into
one of two pinned staging buffers and copied with ``non_blocking=True``; features, augmentation and
the loss all run on the device, and nothing in the step reads a value back to the host, so the host
prepares batch i+1 while the GPU works on batch i. The network runs in channels_last (cuDNN and
oneDNN both prefer it); on CUDA under bf16 autocast (features and the AdaCos heads stay float32).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from stethoscope.devices import torch_device as resolve_device
from stethoscope.models.dualcnn.frontend import fit_length
from stethoscope.models.dualcnn.losses import SubClusterAdaCos, feature_exchange, mixup, one_hot
from stethoscope.models.dualcnn.torch_model import ArchConfig, DualBranchCNN
from stethoscope.models.progress import MidEpoch

log = logging.getLogger(__name__)
Progress = Callable[[int, int, dict], None]
META_FORMAT = "stethoscope.dualcnn/1"


@dataclass
class DualCNNConfig:
    """Training configuration; defaults follow SPEC 4.2 (Wilkinghoff's recipe)."""

    input_seconds: float | None = None  # None: length of the longest training clip
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
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    amp: bool = True  # bf16 autocast, CUDA only
    supplemental_noise: bool = False  # add supplemental/noise clips at random SNR
    noise_p: float = 0.5
    noise_snr_db: tuple[float, float] = (5.0, 20.0)

    def to_dict(self) -> dict:
        return asdict(self)


def _stack(waves: Sequence[np.ndarray], length: int, mode: str, pin: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit every clip to ``length`` into one (N, L) float32 tensor (+ real lengths)."""
    x = torch.empty((len(waves), length), dtype=torch.float32, pin_memory=pin)
    lens = torch.empty(len(waves), dtype=torch.long)
    for i, w in enumerate(waves):
        fitted, n = fit_length(w, length, mode)
        x[i] = torch.from_numpy(fitted)
        lens[i] = n
    return x, lens


class _Batches:
    """Host -> device batch copies through two pinned staging buffers (plain indexing on CPU)."""

    def __init__(self, x: torch.Tensor, lens: torch.Tensor, labels: torch.Tensor, batch: int,
                 device: torch.device) -> None:
        self.x, self.lens, self.labels, self.device = x, lens, labels, device
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.bufs = [(torch.empty((batch, x.shape[1]), pin_memory=True),
                          torch.empty(batch, dtype=torch.long, pin_memory=True),
                          torch.empty(batch, dtype=torch.long, pin_memory=True)) for _ in range(2)]
            self.events: list[torch.cuda.Event | None] = [None, None]

    def get(self, idx: torch.Tensor, slot: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.cuda:
            return self.x[idx], self.lens[idx], self.labels[idx]
        if self.events[slot] is not None:
            self.events[slot].synchronize()  # the copy that last read this buffer is done
        n = idx.shape[0]
        bw, bl, by = (b[:n] for b in self.bufs[slot])
        torch.index_select(self.x, 0, idx, out=bw)
        torch.index_select(self.lens, 0, idx, out=bl)
        torch.index_select(self.labels, 0, idx, out=by)
        out = tuple(b.to(self.device, non_blocking=True) for b in (bw, bl, by))
        ev = torch.cuda.Event()
        ev.record()
        self.events[slot] = ev
        return out  # type: ignore[return-value]


def _add_noise(wave: torch.Tensor, real_len: torch.Tensor, bank: torch.Tensor, cfg: DualCNNConfig,
               gen: torch.Generator) -> torch.Tensor:
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


def train_dualcnn(waves: Sequence[np.ndarray], labels: np.ndarray, n_classes: int, cfg: DualCNNConfig | None = None,
                  progress: Progress | None = None,
                  noise_waves: Sequence[np.ndarray] | None = None) -> tuple[DualBranchCNN, list[dict]]:
    """Train one model on all clips (auxiliary classification, SPEC 4.2); returns (model, per-epoch history).

    The returned model is in eval mode, on the training device, with its main AdaCos head attached
    (``model.head``) for class logits and persistence.
    """
    cfg = cfg or DualCNNConfig()
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(waves) != labels.shape[0] or len(waves) < 2:
        raise ValueError(f"need >= 2 clips with one label each, got {len(waves)} clips, {labels.shape[0]} labels")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{labels.min()}, {labels.max()}]")
    use_noise = bool(cfg.supplemental_noise and noise_waves)
    if cfg.supplemental_noise and not noise_waves:
        log.warning("dualcnn: supplemental_noise is on but no noise clips were given; training without")
    dev = resolve_device(cfg.device)
    cuda = dev.type == "cuda"
    length = (int(round(cfg.input_seconds * cfg.sample_rate)) if cfg.input_seconds
              else max(int(np.asarray(w).size) for w in waves))
    arch = ArchConfig(input_len=length, sample_rate=cfg.sample_rate, fit_mode=cfg.fit_mode)

    torch.manual_seed(cfg.seed)
    model = DualBranchCNN(arch)
    head = SubClusterAdaCos(model.emb_dim, n_classes, cfg.n_subclusters, learnable_centres=False, seed=cfg.seed)
    fx_head = (SubClusterAdaCos(model.emb_dim, 3 * n_classes, cfg.n_subclusters, learnable_centres=True,
                                seed=cfg.seed + 1) if cfg.feature_exchange else None)
    model.head = head
    model.to(dev)
    if fx_head is not None:
        fx_head.to(dev)
    model.to(memory_format=torch.channels_last)  # faster on cuDNN and ~20 % faster with oneDNN on CPU
    benchmark_flag = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark_flag or cuda  # fixed shapes: let cuDNN pick kernels
    params = list(model.parameters()) + (list(fx_head.parameters()) if fx_head is not None else [])
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    x, lens = _stack(waves, length, cfg.fit_mode, pin=cuda)
    batches = _Batches(x, lens, torch.from_numpy(labels), cfg.batch_size, dev)
    bank = _stack(noise_waves, length, "tile", pin=False)[0].to(dev) if use_noise else None  # small: on device
    host_gen = torch.Generator().manual_seed(cfg.seed)
    dev_gen = torch.Generator(device=dev).manual_seed(cfg.seed + 12345)
    n = x.shape[0]
    history: list[dict] = []
    starts = [s for s in range(0, n, cfg.batch_size) if min(cfg.batch_size, n - s) >= 2]  # BN needs 2
    ticker = MidEpoch(progress, cfg.epochs, len(starts))
    for epoch in range(cfg.epochs):
        model.train()
        head.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=host_gen)
        sums = torch.zeros(4, device=dev)  # loss, main, featex, correct
        seen = 0
        for step, s in enumerate(starts):
            idx = perm[s : s + cfg.batch_size]
            wave, real_len, y_int = batches.get(idx, step % 2)
            target = one_hot(y_int, n_classes)
            if bank is not None:
                wave = _add_noise(wave, real_len, bank, cfg, dev_gen)
            wave, real_len, target = mixup(wave, real_len, target, cfg.mixup_p, dev_gen)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda and cfg.amp):
                e_spec, e_spectrum = model(wave, real_len)
            e_spec, e_spectrum = e_spec.float(), e_spectrum.float()
            emb = torch.cat([e_spec, e_spectrum], dim=1)
            loss_main = head(emb, target)
            loss_fx = torch.zeros((), device=dev)
            if fx_head is not None:
                emb_x, target_x = feature_exchange(e_spec, e_spectrum, target, cfg.featex_p, dev_gen)
                loss_fx = fx_head(emb_x, target_x)
            loss = loss_main + loss_fx
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                correct = (head.class_logits(emb).argmax(1) == target.argmax(1)).float().sum()
                b = idx.shape[0]
                sums += torch.stack([loss.detach() * b, loss_main.detach() * b, loss_fx.detach() * b, correct])
            seen += idx.shape[0]
            ticker.step(epoch, step, lambda: {"clips_per_s": seen / max(time.perf_counter() - t0, 1e-9)})
        tot = sums.cpu().numpy()  # the only host sync of the epoch
        secs = time.perf_counter() - t0
        metrics = {"epoch": epoch + 1, "loss": float(tot[0] / max(seen, 1)),
                   "loss_main": float(tot[1] / max(seen, 1)), "loss_featex": float(tot[2] / max(seen, 1)),
                   "train_acc": float(tot[3] / max(seen, 1)), "scale": float(head.scale),
                   "seconds": secs, "clips_per_s": seen / max(secs, 1e-9)}
        history.append(metrics)
        ticker.epoch_end()
        if progress is not None:
            progress(epoch + 1, cfg.epochs, metrics)
    torch.backends.cudnn.benchmark = benchmark_flag
    model.eval()
    return model, history


# ----------------------------------------------------------------------------------------- inference

def _model_device(model: DualBranchCNN, device: str | torch.device | None) -> torch.device:
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    model.to(dev)
    return dev


@torch.no_grad()
def _forward_fitted(model: DualBranchCNN, fitted: Iterable[tuple[np.ndarray, int]], dev: torch.device,
                    batch_size: int, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> np.ndarray:
    """``fn`` over batches of fitted clips, taken lazily from ``fitted``.

    Lazily, because a back end asks for several views of each clip (DtMM: 8 x 640 KB per 10 s clip,
    5 GB for a machine type's 1,000 training clips if built up front). On a GPU the batch goes
    through pinned memory and the outputs stay on the device until the end, so the host fits and
    stacks batch i+1 while the GPU works on batch i.
    """
    model.eval()
    outs = []
    cuda = dev.type == "cuda"
    it = iter(fitted)
    while chunk := list(itertools.islice(it, batch_size)):
        wave = torch.from_numpy(np.stack([w for w, _ in chunk]))
        real_len = torch.tensor([n for _, n in chunk], dtype=torch.long)
        if cuda:
            wave, real_len = wave.pin_memory(), real_len.pin_memory()
        out = fn(wave.to(dev, non_blocking=cuda), real_len.to(dev, non_blocking=cuda)).float()
        outs.append(out if cuda else out.cpu())
    return torch.cat(outs).cpu().numpy() if outs else np.zeros((0, model.emb_dim), np.float32)


def _normalise(e: np.ndarray) -> np.ndarray:
    return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


def embed(model: DualBranchCNN, waves: Sequence[np.ndarray], device: str | torch.device | None = None,
          batch_size: int = 64, normalize: bool = False) -> np.ndarray:
    """(N, 256) clip embeddings (eval mode); clips fitted to the model length with its fit mode."""
    dev = _model_device(model, device)
    fitted = (fit_length(w, model.cfg.input_len, model.cfg.fit_mode) for w in waves)
    e = _forward_fitted(model, fitted, dev, batch_size, model.embed)
    return _normalise(e) if normalize else e


def view_crops(wave: np.ndarray, n_views: int, crop_len: int | None, length: int) -> list[tuple[np.ndarray, int]]:
    """``n_views`` views of one clip, each tiled to ``length``: evenly spaced overlapping crops of
    ``crop_len`` samples, or (``crop_len`` None) the whole clip tiled from evenly spaced offsets."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    n = wave.shape[0]
    if crop_len is None or crop_len >= n:
        return [fit_length(wave, length, "tile", offset=(v * n) // n_views) for v in range(n_views)]
    starts = np.linspace(0, n - crop_len, n_views).round().astype(int)
    return [fit_length(wave[s : s + crop_len], length, "tile") for s in starts]


def embed_views(model: DualBranchCNN, waves: Sequence[np.ndarray], n_views: int = 5,
                crop_seconds: float | None = None, device: str | torch.device | None = None,
                batch_size: int = 64, normalize: bool = False) -> np.ndarray:
    """(N, n_views, 256) embeddings of several views of each clip (for the DtMM back end)."""
    if n_views < 1:
        raise ValueError("n_views must be >= 1")
    dev = _model_device(model, device)
    crop = None if crop_seconds is None else max(1, int(round(crop_seconds * model.cfg.sample_rate)))
    fitted = (v for w in waves for v in view_crops(w, n_views, crop, model.cfg.input_len))
    e = _forward_fitted(model, fitted, dev, batch_size, model.embed).reshape(len(waves), n_views, -1)
    return _normalise(e) if normalize else e


def logits(model: DualBranchCNN, waves: Sequence[np.ndarray], device: str | torch.device | None = None,
           batch_size: int = 64) -> np.ndarray:
    """(N, C) class logits of the main AdaCos head (softmax = the head's class posterior)."""
    if model.head is None:
        raise ValueError("model has no classifier head attached")
    dev = _model_device(model, device)
    fitted = (fit_length(w, model.cfg.input_len, model.cfg.fit_mode) for w in waves)
    return _forward_fitted(model, fitted, dev, batch_size, lambda w, n: model.head.class_logits(model.embed(w, n)))


# --------------------------------------------------------------------------------------- persistence

def model_state(model: DualBranchCNN, head: SubClusterAdaCos | None = None) -> dict[str, np.ndarray]:
    """All weights and buffers (head included, under ``head.``) as float32/int64 numpy arrays."""
    if head is not None:
        model.head = head
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        out[k] = (v.float() if v.is_floating_point() else v).contiguous().numpy()
    return out


def model_meta(model: DualBranchCNN) -> dict:
    """JSON-able description needed to rebuild the network (pair with ``model_state``)."""
    head = model.head
    return {"format": META_FORMAT, "arch": model.cfg.to_dict(),
            "head": None if head is None else {"n_classes": head.n_classes, "n_subclusters": head.n_subclusters}}


def load_model(arrays: dict[str, np.ndarray], meta: dict, device: str | torch.device = "cpu") -> DualBranchCNN:
    """Rebuild a model from ``model_state`` arrays and ``model_meta``; eval mode."""
    if meta.get("format") != META_FORMAT:
        raise ValueError(f"not a dual-branch CNN state (format {meta.get('format')!r})")
    model = DualBranchCNN(ArchConfig(**meta["arch"]))
    if meta.get("head"):
        model.head = SubClusterAdaCos(model.emb_dim, meta["head"]["n_classes"], meta["head"]["n_subclusters"])
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, strict=True)
    return model.to(resolve_device(device), memory_format=torch.channels_last).eval()
