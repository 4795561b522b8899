"""The C kernels of the CPU log-mel path: each against a plain numpy/torch computation of the same
definition, the whole path against the torch path, and their input checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from stethoscope import audio
from stethoscope.audio import write_wav
from stethoscope.features import LogMel, native
from stethoscope.features.logmel import mel_filterbank

_native = native._native


@pytest.fixture(autouse=True)
def _kernels_built() -> None:
    """Built by `pip install` wherever a C compiler is present, as on CI: missing there is a
    failure; elsewhere these tests skip (the torch path is then what runs, and is tested)."""
    if _native is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the C kernels were not built (stethoscope.features._native missing)")
        pytest.skip("stethoscope.features._native not built (no C compiler at install)")

SR = 16_000


def _frames_reference(x: np.ndarray, win: np.ndarray, hop: int, n_frames: int) -> np.ndarray:
    n_fft = win.shape[0]
    padded = np.concatenate([np.zeros(n_fft // 2), x.astype(np.float64), np.zeros(n_fft)])
    return np.stack([padded[t * hop:t * hop + n_fft] * win for t in range(n_frames)])


@pytest.mark.parametrize("n", [1, 700, 1024, 1500, 16_000, 16_001])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_frames_match_zero_padded_centred_windowing(n: int, dtype: type, rng):
    x = (rng.standard_normal(n) * 3000).astype(dtype)
    win = rng.random(1024).astype(np.float32)
    n_frames = 1 + n // 512
    out = np.full((n_frames, 1024), np.nan, np.float32)
    _native.frames(x, win, 512, out)
    ref = _frames_reference(x, win, 512, n_frames)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


def test_power_mel_matches_dense_filterbank_product(rng):
    starts, lengths, weights = native.mel_taps(SR, 1024, 128, 0.0, None)
    fb = mel_filterbank(SR, 1024, 128, 0.0, None).astype(np.float64)
    for n_frames in (1, 7, 8, 9, 313):  # whole and partial blocks of frames
        spec = (rng.standard_normal((n_frames, 513)) + 1j * rng.standard_normal((n_frames, 513)))
        spec = spec.astype(np.complex64)
        out = np.empty((n_frames, 128), np.float32)
        _native.power_mel(spec, starts, lengths, weights, 1e-3, out)
        ref = np.maximum(np.abs(spec.astype(np.complex128)) ** 2 @ fb.T, 1e-3)
        np.testing.assert_allclose(out, ref, rtol=2e-5)


def test_mel_taps_cover_exactly_the_nonzero_filterbank():
    starts, lengths, weights = native.mel_taps(SR, 1024, 128, 0.0, None)
    fb = mel_filterbank(SR, 1024, 128, 0.0, None)
    rebuilt = np.zeros_like(fb)
    at = 0
    for m, (s, n) in enumerate(zip(starts, lengths)):
        rebuilt[m, s:s + n] = weights[at:at + n]
        at += n
    np.testing.assert_array_equal(rebuilt, fb)
    assert at == weights.size and not weights.flags.writeable


def test_kernels_reject_bad_buffers():
    starts, lengths, weights = native.mel_taps(SR, 1024, 128, 0.0, None)
    win = np.ones(1024, np.float32)
    with pytest.raises(ValueError, match="int16 or float32"):
        _native.frames(np.zeros(2000), win, 512, np.empty((4, 1024), np.float32))
    with pytest.raises(ValueError, match="hop too large"):  # t * hop would overflow
        _native.frames(np.ones(1000, np.float32), win, 2**62, np.empty((3, 1024), np.float32))
    with pytest.raises(ValueError, match="multiple"):
        _native.frames(np.zeros(2000, np.float32), win, 512, np.empty(1000, np.float32))
    with pytest.raises(TypeError, match="writable"):
        ro = np.empty((4, 1024), np.float32)
        ro.flags.writeable = False
        _native.frames(np.zeros(2000, np.float32), win, 512, ro)
    spec = np.zeros((4, 513), np.complex64)
    with pytest.raises(ValueError, match="sum"):
        _native.power_mel(spec, starts, lengths, weights[:-1], 1e-3, np.empty((4, 128), np.float32))
    with pytest.raises(ValueError, match="outside"):
        _native.power_mel(np.ascontiguousarray(spec[:, :100]), starts, lengths, weights, 1e-3,
                          np.empty((4, 128), np.float32))
    with pytest.raises(ValueError, match="complex64"):
        _native.power_mel(spec.astype(np.complex128), starts, lengths, weights, 1e-3,
                          np.empty((4, 128), np.float32))


def _torch_path(y: np.ndarray, monkeypatch) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setenv("STETHOSCOPE_NATIVE", "0")
        assert not native.available()
        return LogMel().log_mel_batch([y])[0]


@pytest.mark.parametrize("seconds", [0.07, 1.0, 10.0, 11.3])
def test_c_path_equals_torch_path(tmp_path: Path, seconds: float, monkeypatch, rng):
    y = np.round(np.clip(0.2 * rng.standard_normal(int(seconds * SR)), -1, 1) * 32767) / 32768
    path = tmp_path / "a.wav"
    write_wav(path, y.astype(np.float32))
    y = audio.load_audio(path, min_samples=1)
    ref = _torch_path(y, monkeypatch)
    assert native.available()
    from_floats = LogMel().log_mel_batch([y])[0]
    from_file = LogMel().log_mel_file(path) if y.shape[0] >= audio.MIN_SAMPLES else from_floats
    for got in (from_floats, from_file):
        assert got.shape == ref.shape and got.dtype == np.float32
        assert np.abs(got - ref).max() <= 1e-4  # dB: float32 sums in another order
    np.testing.assert_array_equal(from_file, from_floats)  # int16 route == float route, bit for bit


def test_file_route_writes_into_a_given_buffer_and_falls_back_for_other_files(tmp_path: Path,
                                                                               monkeypatch):
    import soundfile as sf

    y = (0.3 * np.sin(np.arange(3 * SR) * 0.05)).astype(np.float32)
    pcm = tmp_path / "pcm.wav"
    write_wav(pcm, y)
    flt = tmp_path / "float.wav"  # not 16-bit PCM: decoded by load_audio first
    sf.write(str(flt), y, SR, subtype="FLOAT")
    ext = LogMel()
    buf = np.full((200, 128), np.nan, np.float32)
    got = ext.log_mel_file(pcm, out=buf)
    assert got.shape == (94, 128) and np.shares_memory(got, buf)
    small = np.empty((10, 128), np.float32)
    assert not np.shares_memory(ext.log_mel_file(pcm, out=small), small)  # too small: a new array
    ref = _torch_path(audio.load_audio(flt), monkeypatch)
    assert np.abs(ext.log_mel_file(flt) - ref).max() <= 1e-4
    with pytest.raises(audio.AudioError, match="does not exist"):
        ext.log_mel_file(tmp_path / "gone.wav")


def test_switch_off_by_environment(monkeypatch):
    monkeypatch.setenv("STETHOSCOPE_NATIVE", "0")
    assert not native.available()
    monkeypatch.setenv("STETHOSCOPE_NATIVE", "1")
    assert native.available()
