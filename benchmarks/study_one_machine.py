"""One machine, no attributes: the AE baselines against the embedding systems, each machine alone.

    python benchmarks/study_one_machine.py --synth /work/data/synth_default --out /work/runs/one \
        [--train-clips 300] [--machines fan,valve] [--auxiliary synthetic] \
        [--real ../shared/data/real/dcase2020_slider] [--fusion]

For each synthetic machine type, a dataset of that type alone is made of links to its clips (the
first ``--train-clips`` source training clips, every target training clip, every test clip), with
the attribute part of each name replaced by ``noAttribute``: one section, no attribute labels,
what a plant engineer usually has. Each dataset (and the real slider set) is run with the AE
baselines and the CNN systems under each auxiliary-class setting of the CNN (none, synthetic,
shifts), in a run folder per setting; a study that stopped resumes. Prints the official score of
every system per dataset and the means over datasets, and writes them to OUT/one_machine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np

from stethoscope.data import Catalog
from stethoscope.data.naming import dev_name
from stethoscope.pipeline.spec import StudySpec
from stethoscope.pipeline.study import run_study
from stethoscope.state_io import read_json

AE_SYSTEMS = ["ae-mse", "ae-mahala"]
CNN_SYSTEMS = ["cnn-kmeans", "cnn-knn-ldn", "cnn-ds"]
#: run in each CNN folder with ``--fusion``; the AE member's saved system is copied there from the
#: AE folder (same settings, so it is only scored), as the catalogue's fusion expects its members
#: in one run folder
FUSION_SYSTEMS = ["ae-mahala", "cnn-kmeans-dn", "fusion-aemahala-cnnknn",
                  "fusion-aemahala-cnnknn-cnnkmeansdn"]  # fmt: skip
AUXILIARY = ["none", "synthetic", "shifts"]


def one_machine_dataset(root: Path, machine: str, out: Path, n_train: int) -> Path:
    """Links to ``machine``'s clips under ``out`` with attributes hidden; returns the new root."""
    target = out / machine
    if (target / "dev_data").exists():
        return target
    cat = Catalog.scan(root, machines=[machine])
    train_source = [c for c in cat.select(split="train", domain="source")][:n_train]
    keep = train_source + cat.select(split="train", domain="target") + cat.select(split="test")
    for c in keep:
        folder = target / "dev_data" / "raw" / machine / c.split
        folder.mkdir(parents=True, exist_ok=True)
        name = dev_name(c.section, c.domain or "source", c.split, c.label or "normal",
                        int(c.index), "noAttribute")  # fmt: skip
        os.symlink(os.path.abspath(c.path), folder / name)
    return target


def run(data: Path, out: Path, systems: list[str], frontends: dict, cache: Path) -> dict:
    spec = StudySpec(data=data, out=out, systems=systems, frontends=frontends, cache_dir=cache)
    run_study(data, out, spec.system_configs(), cache_dir=cache, device="cpu")
    return {k: v["official_score"] for k, v in read_json(out / "summary.json").items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--synth", type=Path, required=True, help="a default-scale synthetic set")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train-clips", type=int, default=300, help="source training clips per type")
    ap.add_argument("--machines", default=None)
    ap.add_argument("--real", type=Path, action="append", default=[], help="real one-machine sets")
    ap.add_argument("--ae-epochs", type=int, default=20)
    ap.add_argument("--cnn-epochs", type=int, default=10)
    ap.add_argument("--auxiliary", default=",".join(AUXILIARY), help="CNN settings to run")
    ap.add_argument("--fusion", action="store_true", help="also the AE-MAHALA + CNN fusions")
    args = ap.parse_args()
    machines = args.machines.split(",") if args.machines else Catalog.scan(args.synth).machines()
    datasets = {m: one_machine_dataset(args.synth, m, args.out / "data", args.train_clips)
                for m in machines}  # fmt: skip
    datasets.update({p.name: p for p in args.real})
    cache = args.out / "cache"
    table: dict[str, dict[str, float]] = {}
    for name, data in datasets.items():
        scores = run(data, args.out / "runs" / name / "ae", AE_SYSTEMS,
                     {"ae": {"epochs": args.ae_epochs}}, cache)  # fmt: skip
        for aux in args.auxiliary.split(","):
            cnn = {"dualcnn": {"epochs": args.cnn_epochs, "auxiliary": aux}}
            folder = args.out / "runs" / name / f"cnn-{aux}"
            got = run(data, folder, CNN_SYSTEMS, cnn, cache)
            if args.fusion:
                if not (folder / "ae-mahala").exists():
                    shutil.copytree(args.out / "runs" / name / "ae" / "ae-mahala",
                                    folder / "ae-mahala")  # fmt: skip
                cnn["ae"] = {"epochs": args.ae_epochs}
                got.update(run(data, folder, CNN_SYSTEMS + FUSION_SYSTEMS, cnn, cache))
                got.pop("ae-mahala", None)  # the AE folder's, already in the table
            scores.update({f"{k} [{aux}]": v for k, v in got.items()})
        table[name] = scores
        print(name, {k: round(100 * v, 1) for k, v in scores.items()}, flush=True)
    systems = sorted({k for s in table.values() for k in s})
    means = {s: float(np.mean([t[s] for t in table.values() if s in t])) for s in systems}
    (args.out / "one_machine.json").write_text(
        json.dumps({"datasets": table, "mean": means}, indent=1)
    )
    print("\nofficial score (%) per dataset and the mean over datasets")
    print(f"{'system':32s}" + "".join(f"{n[:10]:>11s}" for n in table) + f"{'mean':>9s}")
    for s in systems:
        row = "".join(
            f"{100 * table[n][s]:11.1f}" if s in table[n] else f"{'-':>11s}" for n in table
        )
        print(f"{s:32s}{row}{100 * means[s]:9.1f}")


if __name__ == "__main__":
    main()
