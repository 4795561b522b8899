"""Dual-branch CNN embedding model (Wilkinghoff, ICASSP 2023/2024) and its training (SPEC 4.2)."""

from stethoscope.models.dualcnn.frontend import SpectrogramFeature, SpectrumFeature, fit_length
from stethoscope.models.dualcnn.losses import SubClusterAdaCos, feature_exchange, mixup
from stethoscope.models.dualcnn.torch_model import ArchConfig, DualBranchCNN
from stethoscope.models.dualcnn.trainer import (
    DualCNNConfig,
    embed,
    embed_views,
    load_model,
    logits,
    model_meta,
    model_state,
    resolve_device,
    train_dualcnn,
    view_crops,
)

__all__ = [
    "ArchConfig", "DualBranchCNN", "DualCNNConfig", "SpectrogramFeature", "SpectrumFeature",
    "SubClusterAdaCos", "embed", "embed_views", "feature_exchange", "fit_length", "load_model", "logits",
    "mixup", "model_meta", "model_state", "resolve_device", "train_dualcnn", "view_crops",
]
