"""Back ends (scorers); importing the package registers them all."""

from stethoscope.backends import (ae_scores, cosine_centre, density_softmax, dtmm,  # noqa: F401
                                  ensemble, identity, kmeans, zscore)
