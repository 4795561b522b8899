"""Report package on a realistic fake run folder: numbers, plots, the HTML page and rebuilding."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from stethoscope.report import build as build_mod
from stethoscope.report import (
    build_report,
    load_run,
    screenshot,
    table1_csv,
    table1_markdown,
    table1_text,
)
from stethoscope.report.tables import prf_csv, table1_rows

MACHINES = ("fan", "valve")
# system -> (anomaly shift, has a target domain, has embeddings)
SYSTEMS = {
    "ae-mse": (1.0, True, False),
    "cnn-ds": (2.0, True, True),
    "my-system": (0.5, False, False),
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _clips(rng: np.random.Generator, shift: float, target: bool):
    """Rows (machine, section, name, domain, label, score) with anomalies shifted upwards."""
    rows = []
    for machine in MACHINES:
        for domain in ("source", "target") if target else ("source",):
            for label, n in (("normal", 24), ("anomaly", 12)):
                base = 0.3 if domain == "target" else 0.0
                scores = rng.normal(base + (shift if label == "anomaly" else 0.0), 1.0, n)
                for i, s in enumerate(scores):
                    name = f"section_00_{domain}_test_{label}_{i:04d}.wav"
                    rows.append((machine, "00", name, domain, label, float(s)))
    return rows


def _metrics(rows, threshold: float) -> dict:
    """The evaluation.json numbers, computed directly with sklearn from the clip scores."""
    machines = {}
    for machine in MACHINES:
        r = [x for x in rows if x[0] == machine]
        y = np.array([x[4] == "anomaly" for x in r], int)
        s = np.array([x[5] for x in r])
        dom = np.array([x[3] for x in r])
        dec = (s > threshold).astype(int)
        m = {"pauc": roc_auc_score(y, s, max_fpr=0.1)}
        for d in ("source", "target"):
            if not (dom == d).any():
                m.update({f"{k}_{d}": None for k in ("auc", "precision", "recall", "f1")})
                continue
            pick = ((dom == d) & (y == 0)) | (y == 1)
            m[f"auc_{d}"] = roc_auc_score(y[pick], s[pick])
            dm = dom == d
            m[f"precision_{d}"] = precision_score(y[dm], dec[dm], zero_division=0)
            m[f"recall_{d}"] = recall_score(y[dm], dec[dm], zero_division=0)
            m[f"f1_{d}"] = f1_score(y[dm], dec[dm], zero_division=0)
        machines[machine] = {"00": {k: None if v is None else float(v) for k, v in m.items()}}
    pooled = [
        machines[mc]["00"][k] for k in ("auc_source", "auc_target", "pauc") for mc in MACHINES
    ]
    official = float(scipy.stats.hmean([v for v in pooled if v is not None]))
    return {"official_score": official, "machines": machines}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("run")
    summary = {}
    for system, (shift, target, embeddings) in SYSTEMS.items():
        sdir = root / system
        (sdir / "model").mkdir(parents=True)
        rows = _clips(rng, shift, target)
        threshold = 1.0
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(
            ["machine", "section", "file_name", "domain", "label", "score", "decision", "threshold"]
        )
        for machine, section, name, domain, label, score in rows:
            w.writerow(
                [
                    machine,
                    section,
                    name,
                    domain,
                    label,
                    repr(score),
                    int(score > threshold),
                    threshold,
                ]
            )
        (sdir / "clip_scores.csv").write_text(buf.getvalue())
        ev = _metrics(rows, threshold)
        (sdir / "evaluation.json").write_text(json.dumps(ev))
        summary[system] = {"official_score": ev["official_score"]}
        (sdir / "model" / "system.json").write_text(
            json.dumps(
                {
                    "system": {
                        "name": system,
                        "frontend": {"name": "fe", "params": {"epochs": 2}},
                        "backend": {"name": "be", "params": {}},
                        "threshold": {"name": "percentile", "params": {"q": 90}},
                        "description": f"test system {system}",
                    }
                }
            )
        )
        if embeddings:
            x = np.array(
                [rng.normal(1.5 if r[4] == "anomaly" else 0.0, 1.0, 8) for r in rows], np.float32
            )
            np.savez(
                sdir / "embeddings.npz",
                x=x,
                machine=np.array([r[0] for r in rows]),
                domain=np.array([r[3] for r in rows]),
                label=np.array([r[4] for r in rows]),
                file_name=np.array([r[2] for r in rows]),
            )
    (root / "summary.json").write_text(json.dumps(summary))
    return root


@pytest.fixture(scope="module")
def built(run_dir: Path) -> Path:
    return build_report(run_dir)


def _evals(run_dir: Path) -> dict[str, dict]:
    return {s: json.loads((run_dir / s / "evaluation.json").read_text()) for s in SYSTEMS}


def _pct(v: float | None) -> str:
    return "" if v is None else f"{round(100 * v, 1):.1f}"


def test_load_run_orders_systems(run_dir: Path) -> None:
    res = load_run(run_dir)
    assert res.systems == ["ae-mse", "cnn-ds", "my-system"]
    assert res.machines() == ["fan", "valve"]


def test_table1_csv_matches_evaluation_json(run_dir: Path) -> None:
    evals = _evals(run_dir)
    rows = list(csv.DictReader(io.StringIO(table1_csv(run_dir))))
    keys = {"AUC-s": "auc_source", "AUC-t": "auc_target", "pAUC": "pauc"}
    seen = set()
    for row in rows:
        if row["machine"] in MACHINES:
            for system in SYSTEMS:
                expected = evals[system]["machines"][row["machine"]]["00"][keys[row["metric"]]]
                assert row[system] == _pct(expected), (row, system)
            seen.add((row["machine"], row["metric"]))
    assert seen == {(m, k) for m in MACHINES for k in keys}
    official = next(r for r in rows if r["machine"] == "official score")
    for system in SYSTEMS:
        assert official[system] == _pct(evals[system]["official_score"])
    hmean = {r["metric"]: r for r in rows if r["machine"] == "harmonic mean"}
    for system in SYSTEMS:
        vals = [evals[system]["machines"][m]["00"]["auc_source"] for m in MACHINES]
        assert hmean["AUC-s"][system] == _pct(scipy.stats.hmean(vals))
    assert hmean["AUC-t"]["my-system"] == ""  # no target domain: empty in CSV


def test_prf_csv_matches_evaluation_json(run_dir: Path) -> None:
    evals = _evals(run_dir)
    keys = {
        "P-s": "precision_source",
        "P-t": "precision_target",
        "R-s": "recall_source",
        "R-t": "recall_target",
        "F1-s": "f1_source",
        "F1-t": "f1_target",
    }
    rows = list(csv.DictReader(io.StringIO(prf_csv(run_dir))))
    assert len(rows) == len(MACHINES) * len(keys)
    for row in rows:
        for system in SYSTEMS:
            assert row[system] == _pct(
                evals[system]["machines"][row["machine"]]["00"][keys[row["metric"]]]
            )


def test_markdown_bolds_best_and_dashes_missing(run_dir: Path) -> None:
    md = table1_markdown(run_dir)
    for name in (*MACHINES, *SYSTEMS):
        assert name in md
    evals = _evals(run_dir)
    for machine in MACHINES:
        values = {
            s: round(100 * evals[s]["machines"][machine]["00"]["auc_source"], 1) for s in SYSTEMS
        }
        best = max(values.values())
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {machine} | AUC-s |"))
        assert f"**{best:.1f}**" in line
        assert line.count("**") == 2 * sum(v == best for v in values.values())
    t_line = next(ln for ln in md.splitlines() if ln.startswith("| fan | AUC-t |"))
    assert t_line.rstrip(" |").endswith("–")  # my-system has no target domain


def test_table_rows_structure(run_dir: Path) -> None:
    table = table1_rows(run_dir)
    kinds = [r.kind for r in table.rows]
    assert kinds == ["metric"] * 6 + ["hmean"] * 3 + ["official"]


def test_text_table_from_json_only(run_dir: Path, tmp_path: Path) -> None:
    slim = tmp_path / "slim"
    for system in SYSTEMS:
        (slim / system).mkdir(parents=True)
        shutil.copy(run_dir / system / "evaluation.json", slim / system / "evaluation.json")
    shutil.copy(run_dir / "summary.json", slim / "summary.json")
    text = table1_text(slim)
    for name in (*MACHINES, *SYSTEMS, "official score"):
        assert name in text
    evals = _evals(run_dir)
    assert _pct(evals["cnn-ds"]["official_score"]) in text
    only_summary = tmp_path / "only_summary"
    only_summary.mkdir()
    shutil.copy(run_dir / "summary.json", only_summary / "summary.json")
    text = table1_text(only_summary)
    assert "official score" in text and _pct(evals["ae-mse"]["official_score"]) in text
    # and a whole report from the evaluation files alone: tables, no plots
    index = build_report(slim)
    assert index.is_file() and not list((slim / "report" / "plots").glob("*.png"))


def test_plots_are_valid_pngs(built: Path) -> None:
    plots = built.parent / "plots"
    expected = {f"{s}_{k}.png" for s in SYSTEMS for k in ("roc", "scores")} | {
        "cnn-ds_embeddings.png"
    }
    assert {p.name for p in plots.glob("*.png")} == expected
    for p in plots.glob("*.png"):
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_html_is_self_contained(built: Path) -> None:
    page = built.read_text(encoding="utf-8")
    assert "<table" in page and "Table 1" in page and "official score" in page.lower()
    for name in (*MACHINES, *SYSTEMS):
        assert name in page
    n_png = len(list((built.parent / "plots").glob("*.png")))
    assert page.count('<img src="data:image/png;base64,') == n_png
    assert not re.search(r"https?://", page)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "test system cnn-ds" in page  # description from model/system.json
    for name in ("table1.md", "table1.csv", "prf.csv"):
        assert "cnn-ds" in (built.parent / name).read_text()


def test_build_report_is_idempotent(run_dir: Path, built: Path, tmp_path: Path) -> None:
    out = built.parent
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "plots" / "old-system_roc.png").write_bytes(PNG_MAGIC)  # stale: removed on rebuild
    assert build_report(run_dir) == built
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not list(out.glob(".*.tmp"))
    other = build_report(run_dir, out_dir=tmp_path / "elsewhere")
    assert other == tmp_path / "elsewhere" / "index.html" and other.is_file()


def test_screenshot_without_browser(built: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(build_mod, "find_browser", lambda: None)
    assert screenshot(built, tmp_path / "shot.png") is False


def test_project_2d_is_deterministic() -> None:
    from stethoscope.report.plots import project_2d

    x = np.random.default_rng(1).normal(size=(40, 6))
    for tsne in (False, True):
        a, b = project_2d(x, tsne=tsne), project_2d(x, tsne=tsne)
        assert a.shape == (40, 2) and np.allclose(a, b)


def test_several_sections_get_their_own_rows(tmp_path: Path) -> None:
    metrics = {k: 0.5 for k in ("auc_source", "auc_target", "pauc")}
    ev = {
        "official_score": 0.5,
        "machines": {"fan": {"00": metrics, "01": metrics}, "pump": {"00": metrics}},
    }
    (tmp_path / "ae-mse").mkdir()
    (tmp_path / "ae-mse" / "evaluation.json").write_text(json.dumps(ev))
    groups = [r["machine"] for r in csv.DictReader(io.StringIO(table1_csv(tmp_path)))]
    assert {"fan 00", "fan 01", "pump"} <= set(groups)


def test_domain_offset_table(run_dir: Path, built: Path) -> None:
    """tn > sn, tn|ta and tn|sa equal sklearn's AUCs on the clip scores; absent without a target domain."""
    from stethoscope.report.domain import domain_rows

    table = domain_rows(run_dir)
    assert [r.metric for r in table.rows[:3]] == ["tn > sn", "AUC tn|ta", "AUC tn|sa"]
    with open(run_dir / "cnn-ds" / "clip_scores.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["machine"] == "fan"]
    s = {
        (d, lab): [float(r["score"]) for r in rows if (r["domain"], r["label"]) == (d, lab)]
        for d in ("source", "target")
        for lab in ("normal", "anomaly")
    }

    def auc(neg, pos):
        return roc_auc_score([0] * len(s[neg]) + [1] * len(s[pos]), s[neg] + s[pos])

    col = table.systems.index("cnn-ds")
    fan = {r.metric: r.values[col] for r in table.rows if r.group == "fan"}
    assert fan["tn > sn"] == pytest.approx(auc(("source", "normal"), ("target", "normal")))
    assert fan["AUC tn|ta"] == pytest.approx(auc(("target", "normal"), ("target", "anomaly")))
    assert fan["AUC tn|sa"] == pytest.approx(auc(("target", "normal"), ("source", "anomaly")))
    assert all(r.values[table.systems.index("my-system")] is None for r in table.rows)  # no target
    assert (built.parent / "domain_shift.csv").is_file()
    assert (
        "Domain offset" in built.read_text()
        and "Domain offset" in (built.parent / "table1.md").read_text()
    )
