"""Front ends: the trained models (and one fixed one) that turn clips into back-end inputs.

Importing this package registers every front end in :data:`FRONTENDS`, in the order they are
listed to users.
"""

# isort: off
from stethoscope.models.base import FRONTENDS, BackendInput, FrontEnd, register_frontend
from stethoscope.models.spectral.frontend import MeanSpectrum
from stethoscope.models.ae.frontend import AEFrontEnd
from stethoscope.models.acae.frontend import ACAEFrontEnd
from stethoscope.models.dualcnn.frontend import DualCNNFrontEnd
# isort: on

__all__ = [
    "ACAEFrontEnd",
    "AEFrontEnd",
    "BackendInput",
    "DualCNNFrontEnd",
    "FRONTENDS",
    "FrontEnd",
    "MeanSpectrum",
    "register_frontend",
]
