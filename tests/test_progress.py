"""Mid-epoch progress: fractional reports inside an epoch, none at its last step, throttled by time."""

from stethoscope.models.progress import MidEpoch


def test_fractions_within_epoch_and_none_at_the_end():
    calls = []
    t = MidEpoch(lambda d, n, info: calls.append((d, n, info["epoch"])), epochs=3, steps=4, every=0.0)
    built = []
    for step in range(4):
        t.step(1, step, lambda: built.append(step) or {"loss": 0.5})
    assert calls == [(1.25, 3, 2), (1.5, 3, 2), (1.75, 3, 2)]  # the epoch end is the trainer's call
    assert built == [0, 1, 2]  # info is built only for the lines that are reported


def test_throttled_and_silent_without_callback():
    calls = []
    t = MidEpoch(lambda d, n, info: calls.append(d), epochs=1, steps=100, every=3600.0)
    built = []
    for step in range(100):
        t.step(0, step, lambda: built.append(step) or {})
    assert calls == [] and built == []  # throttled steps build no info
    MidEpoch(None, epochs=1, steps=2, every=0.0).step(0, 0)  # no callback: nothing to do


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
