"""Mid-epoch progress: fractional reports inside an epoch, none at its last step, throttled by time."""

from stethoscope.models.progress import MidEpoch


def test_fractions_within_epoch_and_none_at_the_end():
    calls = []
    t = MidEpoch(lambda d, n, info: calls.append((d, n, info["epoch"])), epochs=3, steps=4, every=0.0)
    for step in range(4):
        t.step(1, step)
    assert calls == [(1.25, 3, 2), (1.5, 3, 2), (1.75, 3, 2)]  # the epoch end is the trainer's call


def test_throttled_and_silent_without_callback():
    calls = []
    t = MidEpoch(lambda d, n, info: calls.append(d), epochs=1, steps=100, every=3600.0)
    for step in range(100):
        t.step(0, step)
    assert calls == []
    MidEpoch(None, epochs=1, steps=2, every=0.0).step(0, 0)  # no callback: nothing to do
