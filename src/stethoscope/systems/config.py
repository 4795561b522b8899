"""A system = a front end + a back end + a threshold rule, each named and parameterised.

Systems are plain data so they can be written to a model directory, read from a YAML study config
and compared: two systems with the same front-end spec share one trained front end in a study.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from stethoscope.registry import Registry


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return json.dumps({"name": self.name, "params": self.params}, sort_keys=True)

    def slug(self) -> str:
        """Folder-safe id of this exact spec: two specs of one front end never share a work folder."""
        import hashlib

        return f"{self.name}-{hashlib.sha1(self.key().encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class SystemConfig:
    name: str
    frontend: ComponentSpec
    backend: ComponentSpec
    threshold: ComponentSpec
    #: what the front end hands the back end: "embedding", "views", "residual", "recon-error", ...
    backend_input: str = "embedding"
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SystemConfig":
        return cls(
            name=d["name"], frontend=ComponentSpec(**d["frontend"]),
            backend=ComponentSpec(**d["backend"]), threshold=ComponentSpec(**d["threshold"]),
            backend_input=d.get("backend_input", "embedding"), description=d.get("description", ""),
        )

    def with_frontend_params(self, **params: Any) -> "SystemConfig":
        """Override front-end parameters (e.g. epochs from the command line)."""
        merged = {**self.frontend.params, **{k: v for k, v in params.items() if v is not None}}
        return replace(self, frontend=ComponentSpec(self.frontend.name, merged))


SYSTEMS: Registry[SystemConfig] = Registry("system")


def register_system(cfg: SystemConfig) -> SystemConfig:
    return SYSTEMS.register(cfg.name)(cfg)


def get_system(name: str) -> SystemConfig:
    from stethoscope.systems import catalogue  # noqa: F401  (fills the registry)

    return SYSTEMS.get(name)


def system_names() -> list[str]:
    from stethoscope.systems import catalogue  # noqa: F401

    return SYSTEMS.names()
