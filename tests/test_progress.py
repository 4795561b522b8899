"""Progress: the training loop's fractional reports inside an epoch (throttled by time, none at an
epoch's last step) and how the CLI's line renderer shows them."""

import torch

from stethoscope.models.training import LoopConfig, train
from test_training import ToyTask


def _run(every: float) -> tuple[list[tuple[str, float, int]], list[dict]]:
    calls: list[tuple[str, float, int]] = []
    infos: list[dict] = []

    def progress(stage: str, done: float, total: int, info: dict) -> None:
        calls.append((stage, done, total))
        infos.append(info)

    task = ToyTask(n=32, batch=8)  # 4 steps per epoch
    train(
        task,
        LoopConfig("toy", epochs=2, seed=0, lr=1e-2, progress_every=every),
        torch.device("cpu"),
        progress=progress,
    )
    return calls, infos


def test_fractions_within_epochs_and_none_at_their_last_step():
    calls, infos = _run(every=0.0)
    assert [d for _, d, _ in calls] == [0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2]
    assert {(s, t) for s, _, t in calls} == {("toy: epochs", 2)}
    assert [i["epoch"] for i in infos] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert set(infos[0]) == {"epoch", "loss"}  # mid-epoch: the running loss
    assert {"loss", "mae", "seconds", "lr"} <= set(infos[3])  # epoch end: all metrics


def test_throttled_to_epoch_ends():
    calls, _ = _run(every=3600.0)
    assert [d for _, d, _ in calls] == [1, 2]


def test_log_lines_keep_epoch_ends_after_mid_epoch_lines():
    """Throttled log lines: an epoch's closing line (with its metrics) is never swallowed once the
    epoch was long enough to show mid-epoch lines; short epochs stay throttled."""
    from stethoscope import ui

    log = ui.LineProgress(every=3600.0)
    with ui.console.capture() as cap:
        log("train", 0.5, 3, {})  # first line of a stage always shows
        log("train", 0.75, 3, {})  # throttled
        log("train", 1, 3, {"loss": 1.0})  # closes an epoch that showed a mid-epoch line
        log("train", 2, 3, {"loss": 0.5})  # no mid-epoch line since: throttled
        log("train", 3, 3, {"loss": 0.4})  # completion always shows
    lines = cap.get().splitlines()
    assert [line.split()[1] for line in lines] == ["0.5/3", "1/3", "3/3"]


def test_first_log_line_shows_on_a_freshly_booted_machine(monkeypatch):
    """Monotonic time counts from boot: a machine up for 5 s must still print a stage's first line
    (found on a GPU machine started minutes before the tests)."""
    from stethoscope import ui

    monkeypatch.setattr(ui.time, "monotonic", lambda: 5.0)
    log = ui.LineProgress(every=3600.0)
    with ui.console.capture() as cap:
        log("features", 1, 10, {})
        log("features", 2, 10, {})  # throttled: shown 0 s ago
    assert [line.split()[1] for line in cap.get().splitlines()] == ["1/10"]
