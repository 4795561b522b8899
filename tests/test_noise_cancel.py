"""The far microphone cancelled from the near one: the noise both hear goes, the machine stays."""

from __future__ import annotations

import numpy as np
import pytest

from stethoscope.dsp.noise_cancel import cancel, fast_length

SR = 16000


def _delayed(x: np.ndarray, seconds: float) -> np.ndarray:
    """``x`` delayed by a fractional number of samples (a linear phase)."""
    f = np.fft.rfftfreq(x.size, 1.0 / SR)
    return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * f * seconds), x.size)


def _scene(seed: int = 0, seconds: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(machine at the near microphone, near, far): the noise 3 dB above the machine at the near
    microphone, reaching it 2.3 ms after the far one and 12 dB weaker; the machine 16 dB weaker
    at the far one."""
    rng = np.random.default_rng(seed)
    n = int(SR * seconds)
    t = np.arange(n) / SR
    machine = sum(np.sin(2 * np.pi * f0 * t + p) for f0, p in ((120, 0.3), (360, 1.1), (1500, 2.0)))
    machine = machine / np.sqrt(np.mean(machine**2))
    noise = rng.standard_normal(n) * (1.0 + 3.0 * (rng.random(n // 1600).repeat(1600) > 0.8))
    noise *= 4.0 * np.sqrt(2.0) / np.sqrt(np.mean(noise**2))  # +12 dB at far, +3 dB at near
    near = machine + _delayed(noise, 0.0023) * 10 ** (-12 / 20)
    far = noise + _delayed(machine, 0.004) * 10 ** (-16 / 20)
    return machine, near, far


def test_noise_both_microphones_hear_is_cancelled_and_the_machine_kept():
    machine, near, far = _scene()
    out = cancel(near, far)
    assert out.dtype == np.float32 and out.shape == near.shape
    noise_before = np.mean((near - machine) ** 2)
    left = np.mean((out - machine) ** 2)
    assert 10 * np.log10(noise_before / left) > 15  # the noise down by more than 15 dB
    assert np.corrcoef(out, machine)[0, 1] > 0.98


def test_a_silent_far_channel_leaves_the_near_one_as_it_is():
    _, near, _ = _scene()
    np.testing.assert_array_equal(cancel(near, np.zeros_like(near)), near.astype(np.float32))


def test_channels_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="equal length"):
        cancel(np.zeros(100), np.zeros(99))


def test_fft_length_is_the_smallest_five_smooth_number_not_below_n():
    def smooth(m: int) -> bool:
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 700):
        want = next(m for m in range(n, 2 * n + 1) if smooth(m))
        assert fast_length(n) == want, n
    assert fast_length(160128) == 162000  # a 10 s clip and its 128 taps
