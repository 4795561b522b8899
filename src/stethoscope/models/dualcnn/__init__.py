"""Dual-branch CNN embedding model (Wilkinghoff, ICASSP 2023/2024; SPEC 4.2): inputs, network,
losses, training, inference and the registered front end."""

from stethoscope.models.dualcnn.frontend import DualCNNFrontEnd
from stethoscope.models.dualcnn.inference import embed, embed_views, logits, view_crops
from stethoscope.models.dualcnn.inputs import SpectrogramFeature, SpectrumFeature, fit_length
from stethoscope.models.dualcnn.losses import SubClusterAdaCos, feature_exchange, mixup
from stethoscope.models.dualcnn.torch_model import ArchConfig, DualBranchCNN
from stethoscope.models.dualcnn.training import DualCNNConfig, train_dualcnn

__all__ = [
    "ArchConfig",
    "DualBranchCNN",
    "DualCNNConfig",
    "DualCNNFrontEnd",
    "SpectrogramFeature",
    "SpectrumFeature",
    "SubClusterAdaCos",
    "embed",
    "embed_views",
    "feature_exchange",
    "fit_length",
    "logits",
    "mixup",
    "train_dualcnn",
    "view_crops",
]
