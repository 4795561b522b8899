"""A system = a front end + a back end + a threshold rule, each named and parameterised.

Systems are plain data so they can be written to a model directory, read from a YAML study config
and compared: two systems with the same front-end spec share one trained front end in a study.
Registering a system checks that its components exist and fit together, so a broken entry fails at
import time with a message naming it, not hours into a study.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from stethoscope.backends.base import BACKENDS
from stethoscope.backends.factory import make_backend
from stethoscope.decision.base import THRESHOLDS
from stethoscope.errors import ConfigError
from stethoscope.models.base import FRONTENDS
from stethoscope.registry import Registry


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return json.dumps({"name": self.name, "params": self.params}, sort_keys=True)

    def slug(self) -> str:
        """Folder-safe id of this exact spec: two specs of one front end never share a work folder."""
        return f"{self.name}-{hashlib.sha1(self.key().encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class SystemConfig:
    name: str
    frontend: ComponentSpec
    backend: ComponentSpec
    threshold: ComponentSpec
    #: what the front end hands the back end: one of the front end's ``outputs``
    backend_input: str = "embedding"
    description: str = ""
    #: a score-level fusion of these systems (:mod:`stethoscope.pipeline.fusion`); then the front
    #: end and back end only name the fusion
    members: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SystemConfig:
        return cls(
            name=d["name"],
            frontend=ComponentSpec(**d["frontend"]),
            backend=ComponentSpec(**d["backend"]),
            threshold=ComponentSpec(**d["threshold"]),
            backend_input=d.get("backend_input", "embedding"),
            description=d.get("description", ""),
            members=tuple(d.get("members") or ()),
        )

    def with_frontend_params(self, **params: Any) -> SystemConfig:
        """Override front-end parameters (e.g. epochs from the command line); None keeps a value."""
        merged = {**self.frontend.params, **{k: v for k, v in params.items() if v is not None}}
        return replace(self, frontend=ComponentSpec(self.frontend.name, merged))

    def check(self) -> None:
        """Raise :class:`ConfigError` naming this system when its parts do not exist or fit."""
        if self.members:
            self._check_fusion()
            return
        for role, spec, registry in (
            ("front end", self.frontend, FRONTENDS),
            ("back end", self.backend, BACKENDS),
            ("threshold rule", self.threshold, THRESHOLDS),
        ):
            if spec.name not in registry:
                raise ConfigError(
                    f"system '{self.name}': unknown {role} '{spec.name}'; "
                    f"known: {', '.join(registry.names())}"
                )
        frontend = FRONTENDS.get(self.frontend.name)
        backend = BACKENDS.get(self.backend.name)
        if self.backend_input not in frontend.outputs:
            raise ConfigError(
                f"system '{self.name}': front end '{frontend.name}' does not produce "
                f"'{self.backend_input}' (it gives {', '.join(frontend.outputs)})"
            )
        try:  # the back end's parameters: a misspelt one fails here, not after training
            make_backend(self.backend.name, self.backend.params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"system '{self.name}': back end '{backend.name}' parameters {self.backend.params}: "
                f"{exc}"
            ) from exc
        if self.backend_input not in backend.inputs:
            raise ConfigError(
                f"system '{self.name}': back end '{backend.name}' does not take "
                f"'{self.backend_input}' (it takes {', '.join(backend.inputs)})"
            )

    def _check_fusion(self) -> None:
        if len(self.members) < 2:
            raise ConfigError(f"system '{self.name}': a fusion needs at least two member systems")
        for member in self.members:
            if member not in SYSTEMS:
                raise ConfigError(f"system '{self.name}': unknown member system '{member}'")
            if SYSTEMS.get(member).members:
                raise ConfigError(f"system '{self.name}': member '{member}' is itself a fusion")
        if self.threshold.name not in THRESHOLDS:
            raise ConfigError(
                f"system '{self.name}': unknown threshold rule '{self.threshold.name}'"
            )


def fusion_system(
    name: str, members: tuple[str, ...], threshold: ComponentSpec, description: str
) -> SystemConfig:
    """A score-level fusion of registered systems: each member's score standardised by its own
    training scores, then averaged."""
    return SystemConfig(
        name=name,
        frontend=ComponentSpec("fusion", {"members": list(members)}),
        backend=ComponentSpec("mean-z"),
        threshold=threshold,
        backend_input="scores",
        description=description,
        members=tuple(members),
    )


SYSTEMS: Registry[SystemConfig] = Registry("system")


def register_system(cfg: SystemConfig) -> SystemConfig:
    """Add a system to the catalogue after checking it (:meth:`SystemConfig.check`)."""
    cfg.check()
    return SYSTEMS.register(cfg.name)(cfg)
