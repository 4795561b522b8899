"""Training the baseline autoencoder, and turning clips into reconstruction residuals.

Follows the official baseline's recipe (SPEC 4.1): all frame vectors of the training clips of one
machine type are pooled; a random 10 % *of the vectors* (not of the clips, as the official code does
with ``train_test_split`` over the vector dataset) is held out for the validation loss; Adam (lr 1e-3),
MSE loss, batch 256, 100 epochs, shuffled every epoch; batches of a single vector are skipped because
BatchNorm cannot train on them (as in the official code).

For speed the vectors live in one float32 tensor on the training device and every batch is an index
slice of a per-epoch permutation, so there is no DataLoader overhead. The per-epoch permutation is
derived from ``(seed, epoch)`` alone, so a run resumed from a checkpoint (weights, BatchNorm statistics,
Adam moments) follows exactly the batches an uninterrupted run would have seen.

Weights are stored pickle-free through :mod:`stethoscope.state_io` (safetensors + JSON).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stethoscope.devices import torch_device as resolve_device
from stethoscope.models.ae.torch_model import DenseAE
from stethoscope.state_io import load_state, save_state

CHECKPOINT_NAME = "ae_checkpoint"
MODEL_NAME = "ae_model"

ProgressFn = Callable[[int, int, dict[str, float]], None]


@dataclass
class AEConfig:
    """Hyper-parameters of the baseline AE (defaults: the official 2023-2025 baseline.yaml)."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    val_split: float = 0.1
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    num_threads: int | None = None
    checkpoint_every: int = 0  # also checkpoint every k epochs (0: only at the end)
    hidden_dim: int = 128
    latent_dim: int = 8
    n_hidden: int = 4
    eval_batch: int = 16384
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, recorded in checkpoints


# ---------------------------------------------------------------- pickle-free weights

def model_state(model: DenseAE) -> dict[str, np.ndarray]:
    """state_dict (weights + BatchNorm running statistics) as numpy arrays for safetensors."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_model(arrays: dict[str, np.ndarray], cfg_meta: dict[str, Any]) -> DenseAE:
    """Rebuild a :class:`DenseAE` from :func:`model_state` arrays and ``model.config()`` meta (eval mode)."""
    keys = ("input_dim", "hidden_dim", "latent_dim", "n_hidden")
    model = DenseAE(**{k: int(cfg_meta[k]) for k in keys if k in cfg_meta})
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, strict=True)
    return model.eval()


def save_model(directory: str | Path, model: DenseAE, name: str = MODEL_NAME, meta: dict | None = None) -> None:
    """Write ``name.safetensors`` + ``name.json`` (architecture under the "model" key)."""
    save_state(directory, name, model_state(model), {"model": model.config(), **(meta or {})})


def read_model(directory: str | Path, name: str = MODEL_NAME) -> tuple[DenseAE, dict]:
    arrays, meta = load_state(directory, name)
    return load_model(arrays, meta["model"]), meta


# ---------------------------------------------------------------- checkpoints

def _optimizer_arrays(opt: torch.optim.Optimizer) -> tuple[dict[str, np.ndarray], list[dict]]:
    sd = opt.state_dict()
    arrays = {
        f"optim.{pid}.{key}": (val.detach().cpu().numpy().copy() if torch.is_tensor(val) else np.asarray(val))
        for pid, st in sd["state"].items()
        for key, val in st.items()
    }
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return arrays, groups


def _load_optimizer(opt: torch.optim.Optimizer, arrays: dict[str, np.ndarray], groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, val in arrays.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = torch.from_numpy(np.array(val))
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    opt.load_state_dict({"state": state, "param_groups": groups})


def _save_checkpoint(directory: Path, model: DenseAE, opt: torch.optim.Optimizer, epoch: int,
                     history: list[dict], cfg: AEConfig, n_vectors: int) -> None:
    arrays = {f"model.{k}": v for k, v in model_state(model).items()}
    opt_arrays, groups = _optimizer_arrays(opt)
    arrays.update(opt_arrays)
    meta = {"epoch": epoch, "history": history, "config": asdict(cfg), "model": model.config(),
            "n_vectors": n_vectors, "param_groups": groups}
    save_state(directory, CHECKPOINT_NAME, arrays, meta)


def _try_resume(directory: Path, model: DenseAE, opt: torch.optim.Optimizer, cfg: AEConfig,
                n_vectors: int) -> tuple[int, list[dict]]:
    """Load the last checkpoint into model/optimizer; returns (completed epochs, history)."""
    if not (directory / f"{CHECKPOINT_NAME}.json").exists():
        return 0, []
    arrays, meta = load_state(directory, CHECKPOINT_NAME)
    old = meta["config"]
    if meta["model"] != model.config() or meta["n_vectors"] != n_vectors or \
            old["seed"] != cfg.seed or old["val_split"] != cfg.val_split or old["batch_size"] != cfg.batch_size:
        raise ValueError(f"checkpoint in {directory} was made for other data or settings; "
                         "remove it or train without resume")
    model.load_state_dict({k[6:]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                           if k.startswith("model.")}, strict=True)
    _load_optimizer(opt, arrays, meta["param_groups"])
    for g in opt.param_groups:
        g["lr"] = cfg.lr
    return int(meta["epoch"]), list(meta["history"])


# ---------------------------------------------------------------- training

def _split(n: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random vector-level train/validation split (ceil, like sklearn's train_test_split)."""
    if not 0.0 <= val_split < 1.0:
        raise ValueError("val_split must be in [0, 1)")
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n)
    n_val = math.ceil(val_split * n) if val_split > 0 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@torch.no_grad()
def _mean_mse(model: DenseAE, x: torch.Tensor, idx: torch.Tensor, batch: int) -> float:
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for s in range(0, idx.numel(), batch):
        xb = x[idx[s:s + batch]]
        recon, _ = model(xb)
        total += ((recon - xb) ** 2).mean(dim=1).sum().double()
    return float(total) / idx.numel()


def train_ae(clip_vectors: Sequence[np.ndarray], cfg: AEConfig, progress: ProgressFn | None = None,
             checkpoint_dir: str | Path | None = None, resume: bool = False) -> tuple[DenseAE, list[dict]]:
    """Train one AE on the pooled frame vectors of the given clips.

    Returns the model (eval mode, on the training device) and the per-epoch history:
    ``[{"epoch", "train_loss", "val_loss", "seconds"}, ...]`` (val_loss None without a split).
    With ``checkpoint_dir`` a checkpoint is written at the end (and every ``cfg.checkpoint_every``
    epochs); ``resume=True`` continues from the checkpoint found there.
    """
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    if len(clip_vectors) == 0:
        raise ValueError("no training clips")
    data = np.concatenate([np.asarray(v, dtype=np.float32).reshape(-1, np.shape(v)[-1]) for v in clip_vectors])
    n, dim = data.shape
    train_idx_np, val_idx_np = _split(n, cfg.val_split, cfg.seed)
    n_train = len(train_idx_np)
    if n_train < 2:
        raise ValueError(f"need at least 2 training vectors, got {n_train}")
    x = torch.from_numpy(data).to(device)
    del data
    train_idx = torch.from_numpy(train_idx_np).to(device)
    val_idx = torch.from_numpy(val_idx_np).to(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = DenseAE(dim, cfg.hidden_dim, cfg.latent_dim, cfg.n_hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    start, history = (0, [])
    if resume and ckpt is not None:
        start, history = _try_resume(ckpt, model, opt, cfg, n)
        history = history[:start]

    for epoch in range(start + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.from_numpy(np.random.default_rng([cfg.seed, epoch]).permutation(n_train)).to(device)
        order = train_idx[perm]
        total = torch.zeros((), dtype=torch.float64, device=device)
        n_batches = 0
        for s in range(0, n_train, cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            if idx.numel() < 2:
                continue
            xb = x[idx]
            recon, _ = model(xb)
            loss = F.mse_loss(recon, xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().double()
            n_batches += 1
        metrics = {
            "epoch": epoch,
            "train_loss": float(total) / max(n_batches, 1),
            "val_loss": _mean_mse(model, x, val_idx, cfg.eval_batch) if val_idx.numel() else None,
            "seconds": time.perf_counter() - t0,
        }
        history.append(metrics)
        if progress is not None:
            progress(epoch, cfg.epochs, metrics)
        if ckpt is not None and (epoch == cfg.epochs or (cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0)):
            _save_checkpoint(ckpt, model, opt, epoch, history, cfg, n)
    return model.eval(), history


# ---------------------------------------------------------------- inference

@torch.no_grad()
def reconstruction_residuals(model: DenseAE, clip_vectors: Sequence[np.ndarray],
                             device: str | torch.device = "auto", batch: int = 16384) -> list[np.ndarray]:
    """Per clip, ``x - x_hat`` of shape (T_i, D) in float32, in eval mode (BatchNorm running stats).

    Clips are grouped so that each forward pass sees about ``batch`` vectors, whatever their lengths.
    """
    dev = resolve_device(device)
    model = model.to(dev).eval()
    out: list[np.ndarray] = []
    group: list[np.ndarray] = []
    size = 0

    def flush() -> None:
        nonlocal group, size
        if not group:
            return
        xs = np.concatenate(group) if len(group) > 1 else group[0]
        xt = torch.from_numpy(np.ascontiguousarray(xs)).to(dev)
        res = torch.empty_like(xt)
        for s in range(0, len(xt), batch):
            recon, _ = model(xt[s:s + batch])
            res[s:s + batch] = xt[s:s + batch] - recon
        res_np = res.cpu().numpy()
        bounds = np.cumsum([len(g) for g in group])[:-1]
        out.extend(np.split(res_np, bounds))
        group, size = [], 0

    for v in clip_vectors:
        v = np.asarray(v, dtype=np.float32).reshape(-1, model.input_dim)
        group.append(v)
        size += len(v)
        if size >= batch:
            flush()
    flush()
    return out
