"""CLI commands that train and score: features, fit, score, run, demo."""

from __future__ import annotations

import time
from pathlib import Path

import click

from stethoscope.cli_common import CACHE, DEVICE, MACHINES, ON_ERROR, _cache, _machines


def _configs(systems: str, epochs: int | None):
    from stethoscope.systems.catalogue import TABLE1
    from stethoscope.systems.config import get_system

    names = TABLE1 if systems.strip() == "all" else [s.strip() for s in systems.split(",") if s.strip()]
    try:
        cfgs = [get_system(n) for n in names]
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--systems") from exc
    return [c.with_frontend_params(epochs=epochs) if "epochs" in c.frontend.params else c
            for c in cfgs]


def _report_failures(failures, what: str) -> None:
    if failures:
        click.echo(f"{len(failures)} file(s) skipped during {what}:", err=True)
        for path, reason in failures[:20]:
            click.echo(f"  {path}: {reason}", err=True)
        if len(failures) > 20:
            click.echo(f"  ... and {len(failures) - 20} more", err=True)


def register(main: click.Group) -> None:
    @main.command()
    @click.option("--system", "system", default="ae-mse", show_default=True,
                  help="system whose front-end feature to compute")
    @click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
    @CACHE
    @DEVICE
    @MACHINES
    @ON_ERROR
    def features(system: str, data: Path, cache_dir: Path | None, device: str,
                 machines: str | None, on_error: str) -> None:
        """Precompute and cache the features of every clip; prints clips/s."""
        from stethoscope.data import Catalog
        from stethoscope.models.base import FRONTENDS
        from stethoscope.pipeline.features import load_features
        from stethoscope.pipeline.model_dir import _load_registries
        from stethoscope.ui import progress_display

        _load_registries()
        cfg = _configs(system, None)[0]
        feature = FRONTENDS.get(cfg.frontend.name).feature
        catalog = Catalog.scan(data, on_error=on_error, machines=_machines(machines))
        cache = _cache(cache_dir, data)
        t0 = time.perf_counter()
        with progress_display() as progress:
            fs = load_features(catalog.clips, feature, cache_dir=cache, device=device,
                               on_error=on_error, progress=progress)
        dt = time.perf_counter() - t0
        click.echo(f"{feature}: {len(fs.clips)} clips in {dt:.1f} s = {len(fs.clips) / dt:.1f} clips/s "
                   f"(cache: {cache})")
        _report_failures(fs.failures + [(i.path, i.reason) for i in catalog.issues], "extraction")

    @main.command()
    @click.option("--system", required=True, help="system name (see `stethoscope systems`)")
    @click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
    @click.option("--out", type=click.Path(path_type=Path), required=True, help="model directory")
    @click.option("--epochs", type=int, default=None, help="override the front end's epochs")
    @MACHINES
    @CACHE
    @DEVICE
    @ON_ERROR
    def fit(system: str, data: Path, out: Path, epochs: int | None, machines: str | None,
            cache_dir: Path | None, device: str, on_error: str) -> None:
        """Train a system on the training clips of ROOT and save it to a model directory."""
        from stethoscope.data import Catalog
        from stethoscope.pipeline.fit import fit_systems
        from stethoscope.pipeline.model_dir import is_model_dir
        from stethoscope.ui import progress_display

        if is_model_dir(out):
            raise click.ClickException(f"{out} already holds a model; choose another --out")
        cfg = _configs(system, epochs)[0]
        catalog = Catalog.scan(data, on_error=on_error, machines=_machines(machines))
        with progress_display() as progress:
            rep = fit_systems(catalog, [cfg], machines=_machines(machines),
                              cache_dir=_cache(cache_dir, data), device=device, on_error=on_error,
                              progress=progress, save_to=lambda c: out, work_dir=out / ".work")
        model = rep.models[cfg.name]
        click.echo(f"saved {cfg.name} to {out} ({len(model.sections)} machine/section back ends)")
        _report_failures(rep.failures + [(i.path, i.reason) for i in catalog.issues], "training")

    @main.command()
    @click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                  required=True)
    @click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
    @click.option("--out", type=click.Path(path_type=Path), required=True, help="scores folder")
    @MACHINES
    @CACHE
    @DEVICE
    @ON_ERROR
    def score(model_dir: Path, data: Path, out: Path, machines: str | None, cache_dir: Path | None,
              device: str, on_error: str) -> None:
        """Score the test clips of ROOT with a saved model: official score/decision CSVs."""
        from stethoscope.data import Catalog
        from stethoscope.pipeline.model_dir import SystemModel
        from stethoscope.pipeline.score import score_catalog
        from stethoscope.ui import progress_display

        model = SystemModel.load(model_dir, device=device)
        catalog = Catalog.scan(data, on_error=on_error, machines=_machines(machines))
        with progress_display() as progress:
            rep = score_catalog(model, catalog, out, cache_dir=_cache(cache_dir, data),
                                device=device, on_error=on_error, progress=progress)
        for machine, section, n in rep.written:
            click.echo(f"{machine} section {section}: {n} clips scored")
        for item in rep.skipped_machines:
            click.echo(f"not scored (no back end in this model): {item}", err=True)
        _report_failures(rep.failures + [(i.path, i.reason) for i in catalog.issues], "scoring")
        click.echo(f"CSVs in {out}")

    @main.command()
    @click.option("--systems", default=None, help="comma-separated system names, or 'all' (Table 1)")
    @click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
    @click.option("--out", type=click.Path(path_type=Path), default=None, help="run folder")
    @click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  default=None, help="YAML study config (alternative to the flags)")
    @click.option("--epochs", type=int, default=None, help="override every front end's epochs")
    @click.option("--ground-truth", type=click.Path(exists=True, file_okay=False, path_type=Path),
                  default=None, help="ground-truth folder for evaluation-set names")
    @click.option("--overwrite", is_flag=True, help="replace systems saved with another config")
    @MACHINES
    @CACHE
    @DEVICE
    @ON_ERROR
    def run(systems: str | None, data: Path | None, out: Path | None, config_path: Path | None,
            epochs: int | None, ground_truth: Path | None, overwrite: bool, machines: str | None,
            cache_dir: Path | None, device: str, on_error: str) -> None:
        """Fit, score, decide and evaluate systems; resumes an interrupted run."""
        from stethoscope.pipeline.runner import StudySpec, execute_study

        spec = StudySpec.from_yaml(config_path) if config_path else StudySpec()
        spec = spec.merged(systems=systems, data=data, out=out, epochs=epochs,
                           ground_truth=ground_truth, machines=_machines(machines),
                           cache_dir=cache_dir, device=device, on_error=on_error,
                           overwrite=overwrite or None)
        try:
            execute_study(spec)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc

    @main.command()
    @click.option("--out", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True,
                  help="folder for the synthetic data and the run")
    @click.option("--systems", default="all", show_default=True,
                  help="systems to run ('all' = the six systems of Table 1)")
    @click.option("--seed", default=0, show_default=True)
    @DEVICE
    def demo(out: Path, systems: str, seed: int, device: str) -> None:
        """Generate a small synthetic dataset and run the whole study on it (no download)."""
        from stethoscope.pipeline.demo import run_demo

        run_demo(out, systems=systems, seed=seed, device=device)

    @main.command()
    @click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--tsne", is_flag=True, help="t-SNE instead of PCA for the embedding maps")
    def report(run_dir: Path, tsne: bool) -> None:
        """Rebuild the report (tables, plots, HTML) of a run folder from its saved results."""
        from stethoscope.report import build_report
        from stethoscope.report.tables import table1_text

        path = build_report(run_dir, tsne=tsne)
        click.echo(table1_text(run_dir))
        click.echo(f"report: {path}")
