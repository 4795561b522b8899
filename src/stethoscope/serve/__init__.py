"""The HTTP service (``stethoscope serve``): a trained model scoring uploaded recordings.

:func:`stethoscope.serve.app.create_app` builds the FastAPI app for a loaded
:class:`~stethoscope.detector.Detector`. This package needs the ``serve`` extras (FastAPI,
uvicorn, python-multipart, prometheus-client); the rest of the toolkit does not, and only
:mod:`stethoscope.serve.settings` is importable without them.
"""

from __future__ import annotations

import importlib.util

#: the modules the service needs, with the distribution that provides each
REQUIRED = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "python_multipart": "python-multipart",
    "prometheus_client": "prometheus-client",
}
INSTALL_HINT = "install with `pip install 'stethoscope[serve]'`"


def missing_dependencies() -> list[str]:
    """The distributions the service needs that are not installed."""
    return [dist for module, dist in REQUIRED.items() if importlib.util.find_spec(module) is None]
