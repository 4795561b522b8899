"""Dual-branch CNN embedding network (Wilkinghoff, ICASSP 2023/2024; SPEC 4.2).

Two sub-networks see the same fixed-length waveform through different features (inputs.py): a
ResNet on the mean-normalised magnitude spectrogram (time structure) and a strided 1-D CNN + MLP on
the magnitude spectrum of the whole clip (fine frequency resolution). Each yields a 128-dim
embedding with a bias-free last layer; the 256-dim concatenation is the clip embedding.

Layout: spectrograms are (B, 1, F, T) as torch.stft returns them (no transposes; every kernel here
is square, so this is the same network as the (T, F) layout of the reference); "max over time" is a
max over the last dim and the flattened (channels x frequency) map has a size independent of the
input length. The spectrum branch's flatten
size does depend on L, so a model is built for one input length (``ArchConfig.input_len``).
Strided convolutions use TF/Keras-style "same" padding (output = ceil(n / stride)), as in the
reference systems.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from stethoscope.models.dualcnn.inputs import HOP, N_FFT, SpectrogramFeature, SpectrumFeature
from stethoscope.models.dualcnn.losses import SubClusterAdaCos


@dataclass(frozen=True)
class ArchConfig:
    """Everything that fixes the network's shapes (saved with the weights)."""

    input_len: int  # samples fed to the network
    sample_rate: int = 16_000
    fmax: float = 8000.0
    n_fft: int = N_FFT
    hop: int = HOP
    branch_dim: int = 128  # per-branch embedding size; the clip embedding is twice this
    fit_mode: str = "tile"  # how clips are brought to input_len ("tile" | "pad")

    def to_dict(self) -> dict:
        return asdict(self)


def _same_pad(n: int, k: int, s: int) -> tuple[int, int]:
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


class SameConv1d(nn.Conv1d):
    """Conv1d whose output length is ceil(n / stride) (asymmetric zero padding when needed)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = _same_pad(x.shape[-1], self.kernel_size[0], self.stride[0])
        return super().forward(F.pad(x, (left, right)))


class PreActUnit(nn.Module):
    """Pre-activation residual unit: BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3 + shortcut.

    When the unit downsamples or changes width, the shortcut is max-pool(2) + 1x1 conv (as in the
    reference systems) rather than a strided 1x1 conv, so no input position is skipped.
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            pool = nn.MaxPool2d(stride, stride, ceil_mode=True) if stride != 1 else nn.Identity()
            self.shortcut = nn.Sequential(pool, nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.conv1(F.relu(self.bn1(x)))
        r = self.conv2(F.relu(self.bn2(r)))
        return self.shortcut(x) + r


class SpectrogramBranch(nn.Module):
    """BN(per bin) -> conv7x7/2 -> BN-ReLU -> maxpool3/2 -> 4 stages (16/32/64/128) -> max over
    time -> BN -> Linear."""

    def __init__(
        self, n_bins: int, out_dim: int = 128, widths: tuple[int, ...] = (16, 32, 64, 128)
    ) -> None:
        super().__init__()
        self.in_bn = nn.BatchNorm1d(n_bins)  # one normaliser per frequency bin
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
        )
        units: list[nn.Module] = []
        c = widths[0]
        for i, w in enumerate(widths):
            units += [PreActUnit(c, w, 1 if i == 0 else 2), PreActUnit(w, w, 1)]
            c = w
        self.stages = nn.Sequential(*units)
        f = (n_bins - 1) // 2 + 1  # conv7x7 stride 2, padding 3
        f = (f - 3) // 2 + 1  # max-pool 3, stride 2
        for _ in widths[1:]:
            f = math.ceil(f / 2)
        self.flat_dim = c * f
        self.out_bn = nn.BatchNorm1d(self.flat_dim)
        self.out = nn.Linear(self.flat_dim, out_dim, bias=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:  # spec: (B, F, T)
        x = self.in_bn(spec).unsqueeze(1)
        if cast(nn.Conv2d, self.stem[0]).weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)  # follow the weights' layout
        x = self.stages(self.stem(x))  # (B, C, F', T')
        x = x.amax(dim=3).flatten(1)
        return self.out(self.out_bn(x))


class SpectrumBranch(nn.Module):
    """3 strided conv1d (k256/s64, k64/s32, k16/s4; BN-ReLU) -> flatten -> 4 x [Linear-BN-ReLU]
    -> Linear."""

    def __init__(self, n_bins: int, out_dim: int = 128, width: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, n = 1, n_bins
        for k, s in ((256, 64), (64, 32), (16, 4)):
            layers += [
                SameConv1d(c, width, k, stride=s, bias=False),
                nn.BatchNorm1d(width),
                nn.ReLU(inplace=True),
            ]
            c, n = width, math.ceil(n / s)
        self.convs = nn.Sequential(*layers)
        mlp: list[nn.Module] = []
        d = width * n
        for _ in range(4):
            mlp += [nn.Linear(d, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            d = width
        self.mlp = nn.Sequential(*mlp)
        self.out = nn.Linear(d, out_dim, bias=False)

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:  # (B, n_bins)
        x = self.convs(spectrum.unsqueeze(1)).flatten(1)
        return self.out(self.mlp(x))


class DualBranchCNN(nn.Module):
    """Waveform (B, L) + real lengths (B,) -> (spectrogram embedding, spectrum embedding), 128 each.

    ``head`` optionally holds the trained classifier (sub-cluster AdaCos, losses.py) so class logits
    and the saved state travel with the network.
    """

    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        min_len = cfg.n_fft + 4 * cfg.hop  # 5 frames: the stem's conv + max-pool need 3 time steps
        if cfg.input_len < min_len:
            raise ValueError(
                f"input_len {cfg.input_len} too short: the network needs >= {min_len} samples"
            )
        self.cfg = cfg
        self.spectrogram = SpectrogramFeature(cfg.n_fft, cfg.hop)
        self.spectrum = SpectrumFeature(cfg.input_len, cfg.sample_rate, cfg.fmax)
        self.spec_branch = SpectrogramBranch(cfg.n_fft // 2 + 1, cfg.branch_dim)
        self.spectrum_branch = SpectrumBranch(self.spectrum.n_bins, cfg.branch_dim)
        self.head: SubClusterAdaCos | None = None

    @property
    def emb_dim(self) -> int:
        return 2 * self.cfg.branch_dim

    def forward(
        self, wave: torch.Tensor, real_len: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if wave.shape[-1] != self.cfg.input_len:
            raise ValueError(
                f"expected waveforms of {self.cfg.input_len} samples, got {wave.shape[-1]}"
            )
        if real_len is None:
            real_len = torch.full(
                (wave.shape[0],), wave.shape[-1], device=wave.device, dtype=torch.long
            )
        spec = self.spectrogram(wave, real_len)
        spectrum = self.spectrum(wave)
        return self.spec_branch(spec), self.spectrum_branch(spectrum)

    def embed(self, wave: torch.Tensor, real_len: torch.Tensor | None = None) -> torch.Tensor:
        """Concatenated (B, 256) embedding [spectrogram | spectrum]; not length-normalised."""
        return torch.cat(self(wave, real_len), dim=1)
