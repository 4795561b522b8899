"""ACAE: attention and convolution enhanced autoencoder with noisy-ArcMix (the report's system 3, SPEC 4.3).

Public API: :class:`ACAEConfig`, :func:`train_acae`, :func:`embed`, :func:`reconstruction_error`,
:func:`model_state` / :func:`model_meta` / :func:`load_model`; building blocks in ``features``,
``torch_model`` and ``losses``.
"""

from stethoscope.models.acae.features import FeatureSpec, acae_features, fit_length, moving_average
from stethoscope.models.acae.losses import ArcFaceHead, acae_loss, arcface_loss, noisy_arcmix_loss
from stethoscope.models.acae.torch_model import ACAE
from stethoscope.models.acae.trainer import (
    ACAEConfig,
    embed,
    load_model,
    model_meta,
    model_state,
    reconstruction_error,
    train_acae,
)

__all__ = [
    "ACAE", "ACAEConfig", "ArcFaceHead", "FeatureSpec", "acae_features", "acae_loss", "arcface_loss",
    "embed", "fit_length", "load_model", "model_meta", "model_state", "moving_average", "noisy_arcmix_loss",
    "reconstruction_error", "train_acae",
]
