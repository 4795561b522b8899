"""The front ends' networks as ONNX graphs (torch side: only ``stethoscope export`` imports this).

Each graph starts where the numpy runtime's features end, so no FFT is exported: the AE takes
stacked log-mel vectors and gives their residuals ``x - x_hat``; each dual-branch CNN member takes
the mean-removed spectrogram and the spectrum and gives the (not length-normalised) embedding,
with the head's best-sub-cluster logits where the system reads them; the ACAE takes its raw
feature maps (standardisation included in the graph) and gives the embedding (encoder only) or
the reconstruction error. The batch axis is dynamic. Every graph is run once through onnxruntime
against torch before it is accepted.

The legacy TorchScript exporter (``dynamo=False``) is used: the torch.export-based one needs
onnxscript, and these graphs (convolutions, attention, reductions) are within what it handles.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stethoscope.errors import ConfigError, ModelError
from stethoscope.export.manifest import OPSET, file_entry
from stethoscope.models.acae.frontend import ACAEFrontEnd
from stethoscope.models.acae.inputs import AMIN
from stethoscope.models.acae.torch_model import ACAE
from stethoscope.models.ae.frontend import AEFrontEnd
from stethoscope.models.base import FrontEnd
from stethoscope.models.dualcnn.frontend import DualCNNFrontEnd
from stethoscope.models.dualcnn.torch_model import DualBranchCNN

#: largest relative difference between onnxruntime and torch on the check input
CHECK_RTOL = 1e-3


class _Residual(nn.Module):
    def __init__(self, ae: nn.Module) -> None:
        super().__init__()
        self.ae = ae

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        recon, _ = self.ae(vectors)
        return vectors - recon


class _DualCNN(nn.Module):
    def __init__(self, model: DualBranchCNN, with_logits: bool) -> None:
        super().__init__()
        self.model, self.with_logits = model, with_logits

    def forward(
        self, spectrogram: torch.Tensor, spectrum: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        emb = torch.cat([m.spec_branch(spectrogram), m.spectrum_branch(spectrum)], dim=1)
        if not self.with_logits:
            return emb
        assert m.head is not None
        return emb, m.head.best_subcluster_logits(emb)


class _ACAE(nn.Module):
    def __init__(self, model: ACAE, output: str) -> None:
        super().__init__()
        self.model, self.output = model, output

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.model.normalize(features)
        if self.output == "embedding":
            return self.model.encode(x)[1]
        recon, _ = self.model(x)
        return ((recon - x) ** 2).mean(dim=(1, 2))


def export_frontend(frontend: FrontEnd, backend_input: str, directory: Path) -> dict[str, Any]:
    """Write the networks of ``frontend`` under ``directory/frontend`` and return the manifest's
    description of the front end (what the numpy runtime needs around the networks)."""
    folder = directory / "frontend"
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(frontend, AEFrontEnd):
        return _export_ae(frontend, directory, folder)
    if isinstance(frontend, DualCNNFrontEnd):
        return _export_dualcnn(frontend, backend_input, directory, folder)
    if isinstance(frontend, ACAEFrontEnd):
        return _export_acae(frontend, backend_input, directory, folder)
    if frontend.name == "spectral":
        return {"name": "spectral", "n_mels": int(frontend.params.get("n_mels", 128))}
    raise ConfigError(f"the '{frontend.name}' front end cannot be exported to ONNX")


def _export_ae(fe: AEFrontEnd, directory: Path, folder: Path) -> dict[str, Any]:
    networks = {}
    for machine, model in sorted(fe.models.items()):
        example = torch.randn(4, model.input_dim)
        path = folder / f"ae_{machine}.onnx"
        _export(_Residual(model), (example,), path, ["vectors"], ["residual"])
        networks[machine] = {**file_entry(directory, path), "inputs": ["vectors"],
                             "outputs": ["residual"]}  # fmt: skip
    input_dims = {m.input_dim for m in fe.models.values()}
    return {
        "name": "ae",
        "input_dim": input_dims.pop() if len(input_dims) == 1 else None,
        "noise_reference": fe.noise_reference,
        "gains": {m: g.tolist() for m, g in sorted(fe.gains.items())},
        "batch": fe.cfg.eval_batch,
        "networks": networks,
    }


def _export_dualcnn(
    fe: DualCNNFrontEnd, backend_input: str, directory: Path, folder: Path
) -> dict[str, Any]:
    if not fe.members:
        raise ModelError("the dual-branch CNN is not trained; nothing to export")
    with_logits = backend_input == "embedding-logits"
    cfg = fe.members[0].cfg
    members = []
    for k, model in enumerate(fe.members):
        model = model.to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
        n_frames = (cfg.input_len - cfg.n_fft) // cfg.hop + 1
        example = (
            torch.randn(2, cfg.n_fft // 2 + 1, n_frames),
            torch.randn(2, model.spectrum.n_bins),
        )
        outputs = ["embedding", "logits"] if with_logits else ["embedding"]
        path = folder / f"dualcnn_member_{k}.onnx"
        _export(_DualCNN(model, with_logits), example, path, ["spectrogram", "spectrum"], outputs)
        members.append({**file_entry(directory, path), "inputs": ["spectrogram", "spectrum"],
                        "outputs": outputs})  # fmt: skip
    return {
        "name": "dualcnn",
        "arch": cfg.to_dict(),
        "n_spectrum_bins": fe.members[0].spectrum.n_bins,
        "emb_dim": fe.members[0].emb_dim,
        "n_views": fe.n_views,
        "crop_seconds": fe.crop_seconds,
        "views": fe.views,
        "class_names": fe.class_names,
        "n_data_classes": fe.n_data_classes,
        "batch": fe.cfg.eval_batch,
        "members": members,
    }


def _export_acae(
    fe: ACAEFrontEnd, backend_input: str, directory: Path, folder: Path
) -> dict[str, Any]:
    if fe.model is None:
        raise ModelError("the ACAE is not trained; nothing to export")
    if backend_input not in ACAEFrontEnd.outputs:
        raise ConfigError(f"the ACAE front end gives {ACAEFrontEnd.outputs}, not '{backend_input}'")
    model = fe.model.eval()
    spec = model.cfg.feature_spec()
    example = torch.randn(2, model.n_freq, model.n_frames)
    path = folder / "acae.onnx"
    output = "embedding" if backend_input == "embedding" else "recon_error"
    _export(_ACAE(model, backend_input), (example,), path, ["features"], [output])
    return {
        "name": "acae",
        "spec": {**asdict(spec), "amin": AMIN},
        "output": backend_input,
        "batch": fe.cfg.eval_batch,
        "network": {**file_entry(directory, path), "inputs": ["features"], "outputs": [output]},
    }


def _export(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    inputs: list[str],
    outputs: list[str],
) -> None:
    """``module`` as an ONNX graph with a dynamic batch axis, checked against torch."""
    module = module.eval()
    axes = {name: {0: "batch"} for name in inputs + outputs}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # attention's fused fast path (taken in eval mode) has no ONNX form: trace the plain one
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
            torch.onnx.export(
            module, example, str(path), input_names=inputs, output_names=outputs,
                dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True,
            )  # fmt: skip
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    _check(module, example, path, inputs)


def _check(
    module: nn.Module, example: tuple[torch.Tensor, ...], path: Path, inputs: list[str]
) -> None:
    """Run the graph on another batch size than it was traced with and compare with torch."""
    import onnxruntime as ort

    batch = tuple(torch.cat([x, x[:1] * 0.5]) for x in example)
    with torch.no_grad():
        want = module(*batch)
    want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: x.numpy() for n, x in zip(inputs, batch, strict=True)})
    for w, g in zip(want, got, strict=True):
        scale = max(float(np.abs(w).max()), 1e-6)
        if g.shape != w.shape or float(np.abs(g - w).max()) > CHECK_RTOL * scale:
            raise ModelError(f"{path}: the ONNX graph does not reproduce the torch network")
