"""How a service runs: the model it serves, where it listens, and its limits.

Settings travel to uvicorn's worker processes through one environment variable (JSON), since a
worker process imports the app by name and cannot be handed Python objects; each worker then
loads its own copy of the model. This module imports neither FastAPI nor torch, so the command
line can build settings before knowing whether the service's extras are installed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stethoscope.errors import ConfigError

if TYPE_CHECKING:
    from stethoscope.detector import Detector

#: the environment variable that hands the settings to each worker process
ENV_VAR = "STETHOSCOPE_SERVE_SETTINGS"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_MB = 32.0


@dataclass(frozen=True)
class ServeSettings:
    """One service: the model folder and how requests are taken."""

    model_dir: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: uvicorn worker processes; each holds its own copy of the model
    workers: int = 1
    #: largest request body accepted, in bytes (uploads are held in memory, never on disk)
    max_body_bytes: int = int(DEFAULT_MAX_BODY_MB * 1024 * 1024)
    #: resample recordings at another sample rate (with a note) or refuse them (422)
    resample: bool = True
    channel: str | None = None
    force_channel: bool = False
    device: str = "cpu"
    #: torch threads per worker (None: half the cores shared out among the workers)
    threads: int | None = None
    #: most recordings scored together when requests queue up (1: one at a time)
    max_batch: int = 8
    #: plugin modules or files to import in each worker (``stethoscope --plugin``)
    plugins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        if self.max_body_bytes < 1:
            raise ConfigError("the body limit must be positive")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, not {self.threads}")
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be at least 1, not {self.max_batch}")

    def torch_threads(self) -> int:
        """Threads per worker: the given number, or half the cores divided among the workers.

        Half, as the front ends take by default (:func:`stethoscope.devices.shared_threads`):
        the event loop needs a core too, and OpenMP threads that outnumber the free cores wait
        on each other at every operation.
        """
        if self.threads is not None:
            return self.threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, (cores or 2) // 2 // self.workers)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServeSettings:
        """The settings the ``serve`` command left for this worker process."""
        env = os.environ if environ is None else environ
        raw = env.get(ENV_VAR)
        if not raw:
            raise ConfigError(
                f"${ENV_VAR} is not set: start the service with `stethoscope serve --model DIR`"
            )
        data: dict[str, Any] = json.loads(raw)
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["plugins"] = tuple(data.get("plugins", ()))
        return cls(**data)


def load_detector(settings: ServeSettings, *, fresh_process: bool = False) -> Detector:
    """The model of ``settings``, loaded once for this process, with its torch threads set.

    ``fresh_process``: a process the command line did not start (a uvicorn worker), which first
    imports the built-in components and the plugins, as ``stethoscope`` does at start.
    """
    import torch

    from stethoscope.detector import Detector

    if fresh_process:
        import stethoscope.systems  # noqa: F401  (registers the built-in components)
        from stethoscope.plugins import load_installed_plugins, load_plugin

        load_installed_plugins()
        for plugin in settings.plugins:
            load_plugin(plugin)
    torch.set_num_threads(settings.torch_threads())
    return Detector.load(
        Path(settings.model_dir),
        device=settings.device,
        channel=settings.channel,
        force_channel=settings.force_channel,
        resample=settings.resample,
    )


def describe(detector: Detector) -> str:
    """One line on the model a service scores with."""
    return (
        f"model {detector.system} ({detector.model_id}): {', '.join(detector.machines())}; "
        f"trained on {detector.model.describe_training_data()}"
    )
