"""Domain-offset diagnostic: is a system's score shifted between the source and target domains?

AUC-t and pAUC pool target normals with anomalies of *both* domains, so a score that runs higher on
every target clip (few target training clips, a back end tuned to the source) loses there even when
it ranks anomalies well within each domain. Three numbers per machine and system, from the test
clip scores alone (clip_scores.csv), show which of the two is happening:

* ``tn > sn``: AUC of target normals against source normals; 50 % means no offset, 100 % means every
  target normal scores above every source normal.
* ``AUC tn|ta``: target normals against target anomalies, the within-domain detection quality.
* ``AUC tn|sa``: target normals against source anomalies, the part of AUC-t an offset costs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stethoscope.evaluation.metrics import roc_area
from stethoscope.report.plots import ClipScores, read_clip_scores
from stethoscope.report.tables import RunResults, Table, TableRow, as_results

#: (row label, negatives (domain, label), positives (domain, label)).
DOMAIN_METRICS = (
    ("tn > sn", ("source", "normal"), ("target", "normal")),
    ("AUC tn|ta", ("target", "normal"), ("target", "anomaly")),
    ("AUC tn|sa", ("target", "normal"), ("source", "anomaly")),
)


def pair_auc(
    clips: ClipScores, mask: np.ndarray, neg: tuple[str, str], pos: tuple[str, str]
) -> float | None:
    """AUC of ``pos`` clips over ``neg`` clips within ``mask``; None when either group is empty."""
    n = mask & (clips.domain == neg[0]) & (clips.label == neg[1])
    p = mask & (clips.domain == pos[0]) & (clips.label == pos[1])
    if not n.any() or not p.any():
        return None
    labels = np.r_[np.zeros(int(n.sum()), int), np.ones(int(p.sum()), int)]
    return roc_area(labels, np.r_[clips.score[n], clips.score[p]])


def domain_rows(run: str | Path | RunResults) -> Table:
    """Machines × DOMAIN_METRICS × systems; empty when no system has both domains in its test set."""
    res = as_results(run)
    scores = {s: read_clip_scores(res.run_dir / s / "clip_scores.csv") for s in res.systems}
    rows: list[TableRow] = []
    for machine, section in res.sections():
        masks = {
            s: (c.machine == machine) & (c.section == section)
            for s, c in scores.items()
            if c is not None
        }
        for label, neg, pos in DOMAIN_METRICS:
            values = [
                pair_auc(c, masks[s], neg, pos) if (c := scores[s]) is not None else None
                for s in res.systems
            ]
            rows.append(TableRow(res.row_label(machine, section), label, values))
    if all(v is None for r in rows for v in r.values):
        rows = []
    return Table(res.systems, rows, bold_best=False)
