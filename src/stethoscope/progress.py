"""One progress type for the whole library: ``progress(stage, done, total, info)``.

Library code only calls it; the CLI decides how to draw it (:mod:`stethoscope.ui`), so library use
stays silent. ``done`` may be fractional (part of an epoch); ``info`` carries the latest metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Progress = Callable[[str, float, int, dict[str, Any]], None]
