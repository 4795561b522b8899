"""Evaluation: numbers identical to the official DCASE2024 Task 2 evaluator, and clear errors."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from stethoscope.evaluation import (
    EvaluationError,
    EvaluationResult,
    evaluate_scores_dir,
    evaluate_section,
    read_submission_dir,
    write_submission,
)
from stethoscope.evaluation.metrics import roc_area
from stethoscope.evaluation.submission import read_value_csv

SYSTEMS = ("sysA", "sysB")
SCHEMA = {
    "auc_source",
    "auc_target",
    "pauc",
    "precision_source",
    "precision_target",
    "recall_source",
    "recall_target",
    "f1_source",
    "f1_target",
}


@pytest.fixture
def official(shared: Path) -> Path:
    return shared / "fixtures" / "official_evaluator"


def _expected(official: Path) -> dict:
    return json.loads((official / "expected" / "official_scores.json").read_text())


def _dev_names(official: Path, machine: str) -> dict[str, str]:
    """Evaluation name -> development-style name, from ground_truth_attributes."""
    path = official / "ground_truth_attributes" / f"ground_truth_{machine}_section_00_test.csv"
    with open(path, newline="") as fh:
        return {row[0]: row[1] + ".wav" for row in csv.reader(fh) if row}


def _copy_system(official: Path, system: str, dest: Path) -> Path:
    shutil.copytree(official / "teams" / "demo_team" / system, dest)
    return dest


def _dev_labelled(
    n_per_group: int, seed: int, domains=("source", "target")
) -> tuple[list[str], np.ndarray]:
    """Dev-style names with synthetic scores: anomalies shifted up, target normals shifted up a little."""
    rng = np.random.default_rng(seed)
    names, scores, index = [], [], 0
    for domain in domains:
        for label in ("normal", "anomaly"):
            for _ in range(n_per_group):
                names.append(f"section_00_{domain}_test_{label}_{index:04d}_noAttribute.wav")
                shift = (1.0 if label == "anomaly" else 0.0) + (0.4 if domain == "target" else 0.0)
                scores.append(rng.normal() + shift)
                index += 1
    return names, np.asarray(scores)


def _flat(result: dict) -> dict[str, float | None]:
    """JSON schema -> {"machine/section/key": value} plus the official score, for approx comparison."""
    flat: dict[str, float | None] = {"official_score": result["official_score"]}
    for machine, sections in result["machines"].items():
        for section, values in sections.items():
            flat.update({f"{machine}/{section}/{k}": v for k, v in values.items()})
    return flat


# --- (a) golden test against the official evaluator's outputs ---------------------------------


@pytest.mark.parametrize("system", SYSTEMS)
def test_fixture_reproduces_official_numbers(official: Path, system: str) -> None:
    expected = _expected(official)[system]
    got = evaluate_scores_dir(official / "teams" / "demo_team" / system, official).to_json_dict()
    assert got["official_score"] == pytest.approx(expected["official_score"], abs=1e-9)
    assert set(got["machines"]) == set(expected["machines"])
    for machine, sections in expected["machines"].items():
        assert set(got["machines"][machine]) == set(sections)
        for section, values in sections.items():
            for key, value in values.items():
                assert got["machines"][machine][section][key] == pytest.approx(value, abs=1e-9), (
                    system,
                    machine,
                    key,
                )


@pytest.mark.parametrize("system", SYSTEMS)
def test_result_csv_matches_official_file(official: Path, system: str, tmp_path: Path) -> None:
    result = evaluate_scores_dir(official / "teams" / "demo_team" / system, official)
    ours_path = result.write_result_csv(tmp_path / f"{system}_result.csv")
    with open(ours_path, newline="") as fh:
        ours = list(csv.reader(fh))
    with open(official / "expected" / f"{system}_result.csv", newline="") as fh:
        theirs = list(csv.reader(fh))
    assert len(ours) == len(theirs)
    for row_ours, row_theirs in zip(ours, theirs):
        assert len(row_ours) == len(row_theirs), row_theirs
        for cell_ours, cell_theirs in zip(row_ours, row_theirs):
            try:
                value = float(cell_theirs)
            except ValueError:
                assert cell_ours == cell_theirs
                continue
            if row_theirs[0] == "official score ci95":  # jackknife of O(1e-5): compare relatively
                assert float(cell_ours) == pytest.approx(value, rel=1e-9)
            elif row_theirs[0] == "00" and cell_theirs == row_theirs[0]:
                assert cell_ours == "00"
            else:
                assert float(cell_ours) == pytest.approx(value, abs=1e-12), row_theirs[0]


def test_development_names_are_renamed_like_the_official_evaluator(
    official: Path, tmp_path: Path
) -> None:
    """Rows under their development-style names score the same, with or without the ground truth."""
    for machine in ("Compressor", "Conveyor", "Drill", "Pump"):
        rename = _dev_names(official, machine)
        names, scores, decisions = read_submission_dir(official / "teams" / "demo_team" / "sysA")[
            (machine, "00")
        ]
        write_submission(tmp_path, machine, "00", [rename[n] for n in names], scores, decisions)
    expected = _expected(official)["sysA"]
    with_truth = evaluate_scores_dir(tmp_path, official)
    from_names = evaluate_scores_dir(tmp_path)
    assert with_truth.official_score == pytest.approx(expected["official_score"], abs=1e-12)
    assert _flat(from_names.to_json_dict()) == pytest.approx(
        _flat(with_truth.to_json_dict()), abs=1e-15
    )
    assert from_names.machines["Drill"]["00"].auc_target == pytest.approx(
        expected["machines"]["Drill"]["00"]["auc_target"], abs=1e-12
    )


# --- (b) development-name submission, labels from the names --------------------------------------


def test_dev_name_submission_matches_independent_computation(tmp_path: Path) -> None:
    names, scores = _dev_labelled(30, seed=1)
    decisions = (scores > np.quantile(scores, 0.6)).astype(int)
    write_submission(tmp_path, "ToyCar", 0, names, scores, decisions)
    read_names, read_scores, read_decisions = read_submission_dir(tmp_path)[("ToyCar", "00")]
    assert read_names == names and np.array_equal(read_scores, scores)  # repr keeps every bit
    assert np.array_equal(read_decisions, decisions)

    m = evaluate_scores_dir(tmp_path).machines["ToyCar"]["00"]
    is_target = np.array(["_target_" in n for n in names])
    y = np.array(["_anomaly_" in n for n in names], dtype=int)
    for domain, in_domain in (("source", ~is_target), ("target", is_target)):
        rows = in_domain | (y == 1)
        assert getattr(m, f"auc_{domain}") == roc_auc_score(y[rows], scores[rows])
        tp = np.sum(decisions[in_domain] & y[in_domain])
        assert getattr(m, f"precision_{domain}") == pytest.approx(tp / decisions[in_domain].sum())
        assert getattr(m, f"recall_{domain}") == pytest.approx(tp / y[in_domain].sum())
    assert m.pauc == roc_auc_score(y, scores, max_fpr=0.1)
    assert m.auc_target is not None and m.auc_source is not None
    assert m.auc_target < m.auc_source  # target normals were shifted towards the anomalies


def test_hand_computed_section_metrics() -> None:
    names = [f"c{i}" for i in range(6)]
    scores = [0.1, 0.4, 0.35, 0.8, 0.5, 0.3]
    labels = [0, 0, 0, 0, 1, 1]
    domains = ["source", "source", "target", "target", "source", "target"]
    decisions = [0, 0, 0, 1, 1, 0]
    m = evaluate_section(names, scores, decisions, labels, domains)
    assert m.auc_source == pytest.approx(3 / 4)  # anomalies {0.5, 0.3} vs source normals {0.1, 0.4}
    assert m.auc_target == pytest.approx(
        1 / 4
    )  # anomalies {0.5, 0.3} vs target normals {0.35, 0.8}
    assert (m.precision_source, m.recall_source, m.f1_source) == (1.0, 1.0, 1.0)
    # target: one false positive, the anomaly missed -> 0, with the epsilon floor instead of NaN
    assert (m.precision_target, m.recall_target, m.f1_target) == (0.0, 0.0, 0.0)


def test_pauc_is_mcclish_standardised() -> None:
    # anomalies at 9.5 and 8.5 among normals 0..9: ROC (0,0)-(0,.5)-(.1,.5)-(.1,1); raw area 0.05
    scores = [9.5, 8.5] + list(range(10))
    labels = [1, 1] + [0] * 10
    m = evaluate_section([str(i) for i in range(12)], scores, [0] * 12, labels, ["source"] * 12)
    assert m.pauc == pytest.approx(0.5 * (1 + (0.05 - 0.005) / (0.1 - 0.005)))


def test_jackknife_area_agrees_with_sklearn(rng: np.random.Generator) -> None:
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # many ties
    assert roc_area(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert roc_area(y, s, 0.1) == pytest.approx(roc_auc_score(y, s, max_fpr=0.1), abs=1e-12)


# --- (c) errors name the machine or file ------------------------------------------------------------


def _drop_first_row(path: Path) -> str:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[1:]))
    return lines[0].split(",")[0]


def test_missing_name_is_an_error(official: Path, tmp_path: Path) -> None:
    sub = _copy_system(official, "sysA", tmp_path / "sysA")
    dropped = _drop_first_row(sub / "anomaly_score_Drill_section_00_test.csv")
    _drop_first_row(sub / "decision_result_Drill_section_00_test.csv")
    with pytest.raises(EvaluationError, match="Drill") as info:
        evaluate_scores_dir(sub, official)
    assert dropped in str(info.value) and "missing" in str(info.value)


def test_extra_name_is_an_error(official: Path, tmp_path: Path) -> None:
    sub = _copy_system(official, "sysA", tmp_path / "sysA")
    for kind, value in (("anomaly_score", "0.5"), ("decision_result", "1")):
        with open(sub / f"{kind}_Pump_section_00_test.csv", "a") as fh:
            fh.write(f"section_00_9999.wav,{value}\n")
    with pytest.raises(
        EvaluationError, match=r"anomaly_score_Pump_section_00_test\.csv.*section_00_9999"
    ):
        evaluate_scores_dir(sub, official)


def test_missing_submission_file_is_an_error(official: Path, tmp_path: Path) -> None:
    sub = _copy_system(official, "sysB", tmp_path / "sysB")
    (sub / "anomaly_score_Conveyor_section_00_test.csv").unlink()
    (sub / "decision_result_Conveyor_section_00_test.csv").unlink()
    with pytest.raises(EvaluationError, match="Conveyor"):
        evaluate_scores_dir(sub, official)
    (sub / "decision_result_Pump_section_00_test.csv").unlink()
    with pytest.raises(EvaluationError, match="decision_result_Pump_section_00_test.csv"):
        evaluate_scores_dir(sub, official)


def test_nan_score_is_an_error(tmp_path: Path) -> None:
    names, scores = _dev_labelled(5, seed=2)
    write_submission(tmp_path, "fan", 0, names, scores, np.zeros(len(names), dtype=int))
    path = tmp_path / "anomaly_score_fan_section_00_test.csv"
    path.write_text(path.read_text().replace(repr(float(scores[3])), "nan"))
    with pytest.raises(EvaluationError, match=rf"fan.*{names[3]}"):
        evaluate_scores_dir(tmp_path)
    with pytest.raises(EvaluationError, match="fan"):
        write_submission(tmp_path, "fan", 0, names[:1], [math.inf], [0])


def test_machine_without_anomalies_is_an_error(tmp_path: Path) -> None:
    names, scores = _dev_labelled(5, seed=3)
    normal = [i for i, n in enumerate(names) if "_normal_" in n]
    write_submission(
        tmp_path, "valve", 0, [names[i] for i in normal], scores[normal], [0] * len(normal)
    )
    with pytest.raises(EvaluationError, match=r"valve.*no anomalous clips"):
        evaluate_scores_dir(tmp_path)


def test_bad_decisions_and_unlabelled_names_are_errors(tmp_path: Path) -> None:
    names, scores = _dev_labelled(5, seed=4)
    write_submission(tmp_path, "bearing", 0, names, scores, [0] * len(names))
    path = tmp_path / "decision_result_bearing_section_00_test.csv"
    path.write_text(path.read_text().replace(",0\n", ",2\n", 1))
    with pytest.raises(EvaluationError, match="decision_result_bearing_section_00_test.csv"):
        evaluate_scores_dir(tmp_path)
    other = tmp_path / "eval"
    write_submission(
        other, "slider", 0, ["section_00_0000.wav", "section_00_0001.wav"], [0.1, 0.2], [0, 1]
    )
    with pytest.raises(EvaluationError, match=r"slider.*ground-truth"):
        evaluate_scores_dir(other)


# --- (d) no target domain ------------------------------------------------------------------------


def test_no_target_domain_gives_none_and_a_note(tmp_path: Path) -> None:
    expected_pooled = []
    for seed, machine in enumerate(("gearbox", "pump")):
        names, scores = _dev_labelled(20, seed=10 + seed, domains=("source",))
        write_submission(tmp_path, machine, 0, names, scores, (scores > 0.5).astype(int))
        y = np.array(["_anomaly_" in n for n in names], dtype=int)
        expected_pooled += [roc_auc_score(y, scores), roc_auc_score(y, scores, max_fpr=0.1)]
    result = evaluate_scores_dir(tmp_path)
    for machine in ("gearbox", "pump"):
        m = result.machines[machine]["00"]
        assert m.auc_target is None and m.precision_target is None and m.f1_target is None
        assert m.auc_source is not None and m.pauc is not None
    assert any("target" in note for note in result.notes)
    assert any("official score" in note for note in result.notes)
    assert result.official_score == pytest.approx(scipy.stats.hmean(expected_pooled), abs=1e-12)
    assert "-" in result.format_table()
    data = json.loads(result.write_json(tmp_path / "result.json").read_text())
    assert data["machines"]["pump"]["00"]["auc_target"] is None
    csv_text = result.write_result_csv(tmp_path / "result.csv", ci95=False).read_text()
    assert "official score ci95" not in csv_text and "official score," in csv_text


# --- (e) JSON schema --------------------------------------------------------------------------


def test_write_json_round_trips_the_schema(official: Path, tmp_path: Path) -> None:
    result = evaluate_scores_dir(official / "teams" / "demo_team" / "sysB", official)
    data = json.loads(result.write_json(tmp_path / "scores.json").read_text())
    assert data == result.to_json_dict()
    assert set(data) == {"official_score", "machines"}
    for sections in data["machines"].values():
        for values in sections.values():
            assert set(values) == SCHEMA
    assert EvaluationResult.from_json_dict(data).to_json_dict() == data
    assert _flat(data) == pytest.approx(_flat(_expected(official)["sysB"]), abs=1e-9)


def test_format_table_lists_machines_and_official_score(official: Path) -> None:
    table = evaluate_scores_dir(official / "teams" / "demo_team" / "sysA", official).format_table()
    for machine in ("Compressor", "Conveyor", "Drill", "Pump"):
        assert machine in table
    assert "80.24" in table  # Compressor AUC-s 0.8024 in percent
    assert "72.80 %" in table and "harmonic mean" in table


def test_read_value_csv_reports_line_of_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "anomaly_score_x_section_00_test.csv"
    path.write_text("a.wav,0.1\nb.wav,oops\n")
    with pytest.raises(EvaluationError, match=r"line 2.*oops"):
        read_value_csv(path)


@pytest.mark.parametrize("system", ["sysA", "sysB"])
def test_cli_evaluate_reproduces_official_scores(shared: Path, system: str, tmp_path: Path) -> None:
    """The acceptance command itself: `stethoscope evaluate DIR --ground-truth GT --json out.json`."""
    from click.testing import CliRunner

    from stethoscope.cli import main

    fx = shared / "fixtures" / "official_evaluator"
    out = tmp_path / "out.json"
    res = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(fx / "teams" / "demo_team" / system),
            "--ground-truth",
            str(fx),
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    want = json.loads((fx / "expected" / "official_scores.json").read_text())[system]
    assert abs(got["official_score"] - want["official_score"]) <= 1e-9
    for machine, sections in want["machines"].items():
        for key, value in sections["00"].items():
            assert abs(got["machines"][machine]["00"][key] - value) <= 1e-9, (machine, key)


def test_csv_with_a_byte_order_mark_is_read_and_other_encodings_are_named(
    official: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from stethoscope.cli import main

    team = tmp_path / "sysA"
    shutil.copytree(official / "teams" / "demo_team" / "sysA", team)
    target = next(team.glob("anomaly_score_*.csv"))
    target.write_bytes(b"\xef\xbb\xbf" + target.read_bytes())  # as spreadsheet programs save
    want = _expected(official)["sysA"]["official_score"]
    assert evaluate_scores_dir(team, official).official_score == pytest.approx(want, abs=1e-9)
    target.write_bytes(target.read_bytes().replace(b"\xef\xbb\xbf", b"\xff\xfe", 1))
    res = CliRunner().invoke(main, ["evaluate", str(team), "--ground-truth", str(official)])
    assert res.exit_code == 1 and target.name in res.output and "not UTF-8" in res.output
    assert "Traceback" not in res.output
