"""The official baseline's dense autoencoder (SPEC 4.1): network, training, residuals, front end."""

from stethoscope.models.ae.frontend import AEFrontEnd
from stethoscope.models.ae.inference import reconstruction_residuals
from stethoscope.models.ae.torch_model import DenseAE
from stethoscope.models.ae.training import AEConfig, train_ae

__all__ = ["AEConfig", "AEFrontEnd", "DenseAE", "reconstruction_residuals", "train_ae"]
