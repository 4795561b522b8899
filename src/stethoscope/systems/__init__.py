"""Systems: named (front end, back end, threshold) triples, and the built-in catalogue.

Importing this package imports every component package first, so all registries are filled
before the built-in systems are checked and registered.
"""

import stethoscope.backends
import stethoscope.decision
import stethoscope.models  # noqa: F401
from stethoscope.systems.builtin import TABLE1
from stethoscope.systems.config import SYSTEMS, ComponentSpec, SystemConfig, register_system

__all__ = [
    "SYSTEMS",
    "TABLE1",
    "ComponentSpec",
    "SystemConfig",
    "get_system",
    "register_system",
    "resolve_systems",
    "system_names",
]


def get_system(name: str) -> SystemConfig:
    return SYSTEMS.get(name)


def system_names() -> list[str]:
    """Every registered system, in catalogue order."""
    return SYSTEMS.names()


def resolve_systems(names: str | list[str]) -> list[SystemConfig]:
    """'all' (the six systems of the report's Table 1), a comma-separated string or a list."""
    if isinstance(names, str):
        names = (
            list(TABLE1)
            if names.strip() == "all"
            else [s.strip() for s in names.split(",") if s.strip()]
        )
    return [SYSTEMS.get(n) for n in names]
