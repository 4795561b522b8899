"""ACAE: attention and convolution enhanced autoencoder with noisy-ArcMix (the report's system 3,
SPEC 4.3): inputs, network, losses, training, inference and the registered front end."""

from stethoscope.models.acae.frontend import ACAEFrontEnd
from stethoscope.models.acae.inference import embed, reconstruction_error
from stethoscope.models.acae.inputs import FeatureSpec, acae_features, fit_length, moving_average
from stethoscope.models.acae.losses import ArcFaceHead, acae_loss, arcface_loss, noisy_arcmix_loss
from stethoscope.models.acae.torch_model import ACAE
from stethoscope.models.acae.training import ACAEConfig, train_acae

__all__ = [
    "ACAE",
    "ACAEConfig",
    "ACAEFrontEnd",
    "ArcFaceHead",
    "FeatureSpec",
    "acae_features",
    "acae_loss",
    "arcface_loss",
    "embed",
    "fit_length",
    "moving_average",
    "noisy_arcmix_loss",
    "reconstruction_error",
    "train_acae",
]
