"""Back ends (scorers); importing the package registers them all."""

from stethoscope.backends import (
    ae_scores,
    cosine_centre,
    density_softmax,
    domain_norm,
    dtmm,
    ensemble,
    identity,
    kmeans,
    knn,
    zscore,
)

__all__ = [
    "ae_scores",
    "cosine_centre",
    "density_softmax",
    "domain_norm",
    "dtmm",
    "ensemble",
    "identity",
    "kmeans",
    "knn",
    "zscore",
]
