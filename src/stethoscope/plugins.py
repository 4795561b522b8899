"""Loading user components: a module or ``.py`` file that registers back ends, front ends or systems.

Registering happens at import (the decorators and ``register_system``), so loading a plugin is
importing it. Installed packages can declare theirs under the ``stethoscope.plugins`` entry-point
group; anything else is named with ``stethoscope --plugin``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from stethoscope.errors import ConfigError

ENTRY_POINT_GROUP = "stethoscope.plugins"


def load_plugin(name_or_path: str) -> ModuleType:
    """Import a module by dotted name, or a ``.py`` file by path."""
    path = Path(name_or_path)
    if path.suffix == ".py":
        if not path.is_file():
            raise ConfigError(f"plugin {path}: no such file")
        module_name = f"stethoscope_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"plugin {path}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(name_or_path)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"plugin '{name_or_path}': no such module ({exc})") from exc


def load_installed_plugins() -> list[str]:
    """Import every module declared under the ``stethoscope.plugins`` entry-point group."""
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
        loaded.append(ep.value)
    return loaded
