"""The demo: a small synthetic dataset and the full study on it, sized for a 2-core laptop.

The clip counts and epochs are reduced (not the methods): every system trains, scores, decides and
is evaluated exactly as on real data, just on less of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stethoscope.pipeline.spec import StudySpec
from stethoscope.pipeline.study import execute_study
from stethoscope.ui import console

#: synthetic data of the demo: 7 machine types, 12 % of the DCASE source clips (119 train, 6 per
#: test cell) but the full 10 target-domain training clips of the first-shot setting, 5 s clips
DEMO_DATA: dict[str, Any] = {"scale": 0.12, "duration": 5.0, "target_train": 10}
#: training length of the demo, per front end
DEMO_FRONTENDS = {"ae": {"epochs": 30}, "dualcnn": {"epochs": 8}, "acae": {"epochs": 8}}


def run_demo(out: Path, systems: str = "all", seed: int = 0, device: str = "auto") -> None:
    from stethoscope.synth import generate_dataset

    out = Path(out)
    data = out / "data"
    if not (data / "dev_data").exists():
        console.print(f"[bold]1/2[/bold] writing a synthetic dataset to {data} ...")
        generate_dataset(data, seed=seed, **DEMO_DATA)
    else:
        console.print(f"[bold]1/2[/bold] using the synthetic dataset already in {data}")
    console.print(f"[bold]2/2[/bold] running the study ({systems}) into {out / 'run'} ...")
    spec = StudySpec(
        data=data, out=out / "run", systems=systems, frontends=DEMO_FRONTENDS, device=device
    )
    execute_study(spec)
