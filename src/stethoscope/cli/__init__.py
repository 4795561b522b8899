"""Command line: thin wrappers over the library, one module per group of commands.

Errors the user can act on (the project's own :class:`~stethoscope.errors.StethoscopeError` types,
and OS errors such as a full disk) are printed as one line; anything else is a bug and shows its
traceback with ``-v`` (without it, one line says so).
"""

from __future__ import annotations

import logging
from typing import Any

import click

from stethoscope import __version__
from stethoscope.errors import StethoscopeError

log = logging.getLogger("stethoscope")


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.Abort, click.exceptions.Exit, KeyboardInterrupt):
            raise
        except (StethoscopeError, OSError) as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            if ctx.meta.get("stethoscope.verbose"):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {exc}\n"
                "This is a bug in Stethoscope: run the command again with -v for the traceback "
                "and report it."
            ) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stethoscope")
@click.option("-v", "--verbose", is_flag=True, help="debug logging and full tracebacks")
@click.option(
    "--plugin",
    "plugins",
    multiple=True,
    metavar="MODULE_OR_FILE",
    help="import a module or .py file that registers back ends, front ends or systems "
    "(repeatable; installed ones under the 'stethoscope.plugins' entry point load "
    "by themselves)",
)
@click.pass_context
def main(ctx: click.Context, verbose: bool, plugins: tuple[str, ...]) -> None:
    """Stethoscope: unsupervised anomalous sound detection for machine condition monitoring.

    Typical use: `stethoscope run --systems all --data ROOT --out RUN_DIR`.
    """
    from stethoscope.plugins import load_installed_plugins, load_plugin
    from stethoscope.ui import setup_logging

    ctx.meta["stethoscope.verbose"] = verbose
    setup_logging(verbose)
    if plugins or ctx.invoked_subcommand not in (None, "evaluate"):
        import stethoscope.systems  # noqa: F401  (the built-in components first)

        load_installed_plugins()
        for plugin in plugins:
            load_plugin(plugin)


def _register() -> None:
    from stethoscope.cli import data, exporting, monitoring, results, scoring, serving, training

    for module in (data, training, scoring, results, monitoring, serving, exporting):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
