"""The project's own error types.

Every error a user can cause with their data, their files or their settings derives from
:class:`StethoscopeError`; the CLI prints those as one line. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class StethoscopeError(Exception):
    """An error in the user's input (data, model folder, configuration), with a message to show."""


class ConfigError(StethoscopeError, ValueError):
    """A setting, system definition or study configuration that cannot be used."""


class ModelError(StethoscopeError, ValueError):
    """A saved model folder that cannot be used (missing, incomplete, tampered, another version)."""
