"""Back-end settings compared on one trained dual-branch CNN: DensitySoftmax readings x scores,
and DtMM views (how many, how long, crops or tiled).

    python benchmarks/study_backends.py --model RUN/cnn-kmeans/model --data ROOT \
        [--what ds,views] [--views-train 300]

The CNN's embeddings of every clip are computed once; each setting fits its back end per machine
type and section on the training clips and scores the test clips; the official metrics come from
the project's evaluator. Prints AUC-s / AUC-t / pAUC (harmonic means over machine types) and the
official score per setting. ``--views-train`` limits the source training clips per machine for the
views study (each view is a forward pass of the CNN).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from stethoscope.backends.base import FitData
from stethoscope.backends.density_softmax import READINGS, SCORES, DensitySoftmaxBackend
from stethoscope.backends.dtmm import DtMMBackend
from stethoscope.data import Catalog
from stethoscope.data.labels import class_labels
from stethoscope.evaluation import evaluate_scores_dir, floored_hmean, write_submission
from stethoscope.features import FEATURES, extract
from stethoscope.features.cache import default_cache_dir
from stethoscope.models.dualcnn.frontend import DualCNNFrontEnd
from stethoscope.pipeline.system_model import SystemModel


def official(results: dict) -> tuple[float, float, float, float]:
    """(official score, hmean AUC-s, hmean AUC-t, hmean pAUC) of {(machine, section): (names,
    scores)} through the project's evaluator."""
    with tempfile.TemporaryDirectory() as tmp:
        for (machine, section), (names, scores) in results.items():
            write_submission(tmp, machine, section, names, scores, np.zeros(len(scores), int))
        ev = evaluate_scores_dir(tmp)
    sections = [m for secs in ev.machines.values() for m in secs.values()]

    def hmean(key: str) -> float:
        value = floored_hmean(getattr(m, key) for m in sections)
        return float("nan") if value is None else value

    return ev.official_score, hmean("auc_source"), hmean("auc_target"), hmean("pauc")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--what", default="ds,views")
    ap.add_argument("--views-train", type=int, default=300)
    ap.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = ap.parse_args()
    model = SystemModel.load(args.model, device="cpu")
    fe = model.frontend
    assert isinstance(fe, DualCNNFrontEnd)
    cat = Catalog.scan(args.data)
    train, test = cat.select(split="train"), cat.select(split="test")
    wave = FEATURES.get("waveform")()
    tr = extract(train, wave, cache=args.cache_dir)
    te = extract(test, wave, cache=args.cache_dir)
    keys = sorted({(c.machine, c.section) for c in tr.clips})

    def section(res, key):
        idx = [i for i, c in enumerate(res.clips) if (c.machine, c.section) == key]
        return [res.clips[i] for i in idx], [res.features[i] for i in idx]

    if "ds" in args.what:
        t0 = time.perf_counter()
        inputs = {}
        for key in keys:
            c_tr, x_tr = section(tr, key)
            c_te, x_te = section(te, key)
            inputs[key] = (
                c_tr, fe.transform(c_tr, x_tr, "embedding-logits"),
                c_te, fe.transform(c_te, x_te, "embedding-logits"),
            )  # fmt: skip
        print(f"embeddings and head logits in {time.perf_counter() - t0:.0f} s", flush=True)
        print(f"\nDensitySoftmax{'':17s}official  AUC-s  AUC-t   pAUC")
        for reading in READINGS:
            for score in SCORES:
                results = {}
                for key, (c_tr, x_tr, c_te, x_te) in inputs.items():
                    classes, _ = class_labels(c_tr)
                    domains = np.array([c.domain for c in c_tr])
                    b = DensitySoftmaxBackend(reading, score)
                    n = len(np.unique(classes))
                    strip = reading != "head"
                    b.fit(FitData(x_tr[:, :-n] if strip else x_tr, domains, classes))
                    s = b.score(x_te[:, :-n] if strip else x_te)
                    results[key] = ([c.name for c in c_te], s)
                o, a_s, a_t, p = official(results)
                print(f"{reading:7s} {score:17s}   {100 * o:6.1f} {100 * a_s:6.1f} "
                      f"{100 * a_t:6.1f} {100 * p:6.1f}", flush=True)  # fmt: skip

    if "views" in args.what:
        print(f"\nDtMM views (source training clips per machine: {args.views_train})")
        print(f"{'views':28s}official  AUC-s  AUC-t   pAUC  seconds")
        limited = []
        for key in keys:
            c_tr, _ = section(tr, key)
            src = [c for c in c_tr if c.domain == "source"][: args.views_train]
            limited += src + [c for c in c_tr if c.domain != "source"]
        keep = {str(c.path) for c in limited}
        tr_v = [(c, x) for c, x in zip(tr.clips, tr.features) if str(c.path) in keep]
        settings = [("tiled", 8, None), ("crops", 8, 0.5), ("crops", 4, 0.5), ("crops", 8, 0.25),
                    ("crops", 16, 0.5)]  # fmt: skip
        for mode, n_views, fraction in settings:
            t0 = time.perf_counter()
            fe.views, fe.n_views = mode, n_views
            results = {}
            for key in keys:
                pairs = [(c, x) for c, x in tr_v if (c.machine, c.section) == key]
                c_tr, x_tr = [c for c, _ in pairs], [x for _, x in pairs]
                c_te, x_te = section(te, key)
                length = np.median([len(x) for x in x_tr])
                fe.crop_seconds = None if fraction is None else fraction * length / 16000
                fe._memo.clear()
                v_tr = fe.transform(c_tr, x_tr, "views")
                v_te = fe.transform(c_te, x_te, "views")
                dtmm = DtMMBackend().fit(FitData(v_tr, np.array([c.domain for c in c_tr])))
                results[key] = ([c.name for c in c_te], dtmm.score(v_te))
            o, a_s, a_t, p = official(results)
            label = f"{mode} {n_views}" + (f" x {fraction:g} clip" if fraction else "")
            print(f"{label:28s}{100 * o:6.1f} {100 * a_s:6.1f} {100 * a_t:6.1f} {100 * p:6.1f}"
                  f"  {time.perf_counter() - t0:6.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
