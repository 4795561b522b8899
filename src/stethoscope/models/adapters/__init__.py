"""Importing this package registers every front end with the pipeline."""

from stethoscope.models.spectral import adapter as _spectral  # noqa: F401
from stethoscope.models.ae import adapter as _ae  # noqa: F401
from stethoscope.models.acae import adapter as _acae  # noqa: F401
from stethoscope.models.dualcnn import adapter as _dualcnn  # noqa: F401
