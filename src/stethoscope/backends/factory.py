"""Back ends built from a system's spec, with the options every back end has.

``domain_norm`` ("median" or "zscore") among a back end's parameters wraps it in per-domain
normalisation (:mod:`stethoscope.backends.domain_norm`), whatever the back end; an ensemble front
end gets one back end per member (:mod:`stethoscope.backends.ensemble`).
"""

from __future__ import annotations

from typing import Any

from stethoscope.backends.base import BACKENDS, Backend
from stethoscope.backends.domain_norm import DomainNormalised
from stethoscope.backends.ensemble import EnsembleBackend

#: parameters of the back-end layer, not of the back end itself
LAYER_PARAMS = ("domain_norm",)


def make_backend(name: str, params: dict[str, Any], n_members: int = 1) -> Backend:
    """A new, unfitted back end ``name`` with ``params`` for a front end of ``n_members``."""
    own = {k: v for k, v in params.items() if k not in LAYER_PARAMS}
    norm = params.get("domain_norm")

    def one() -> Backend:
        if norm:
            return DomainNormalised(name, own, method=str(norm))
        return BACKENDS.get(name)(**own)

    return EnsembleBackend([one() for _ in range(n_members)]) if n_members > 1 else one()
