"""The official baseline's dense autoencoder: network, training, residuals (SPEC 4.1)."""

from stethoscope.models.ae.torch_model import DenseAE
from stethoscope.models.ae.trainer import (
    AEConfig,
    load_model,
    model_state,
    read_model,
    reconstruction_residuals,
    resolve_device,
    save_model,
    train_ae,
)

__all__ = [
    "AEConfig",
    "DenseAE",
    "load_model",
    "model_state",
    "read_model",
    "reconstruction_residuals",
    "resolve_device",
    "save_model",
    "train_ae",
]
