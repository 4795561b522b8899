"""Bad audio gives an AudioError naming the file; valid audio is read as 16 kHz mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.audio import (
    MIN_SAMPLES,
    AudioError,
    AudioNoteWarning,
    ResampleWarning,
    audio_info,
    load_audio,
    read_audio,
    write_wav,
)
from stethoscope.errors import StethoscopeError


def _noise(n: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(1)
    y = 0.1 * rng.standard_normal((n, channels)).astype(np.float32)
    return y[:, 0] if channels == 1 else y


def test_reads_like_librosa(tmp_path: Path):
    path = tmp_path / "a.wav"
    write_wav(path, _noise(16000))
    y = load_audio(path)
    raw, _ = sf.read(str(path), dtype="int16")
    assert y.dtype == np.float32 and y.shape == (16000,)
    np.testing.assert_array_equal(y, raw.astype(np.float32) / 32768)
    as_float, _ = sf.read(str(path), dtype="float32")  # libsndfile's own float32 decoding
    np.testing.assert_array_equal(y, as_float)
    assert y.flags.c_contiguous


def test_extreme_pcm16_values_are_exact(tmp_path: Path):
    path = tmp_path / "edges.wav"
    pcm = np.tile(np.array([-32768, -1, 0, 1, 32767], dtype=np.int16), 400)
    sf.write(str(path), pcm, 16000, subtype="PCM_16")
    y = load_audio(path)
    np.testing.assert_array_equal(y[:5], [-1.0, -1 / 32768, 0.0, 1 / 32768, 32767 / 32768])


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT"])
def test_other_sample_formats_read_as_float32(tmp_path: Path, subtype: str):
    path = tmp_path / f"{subtype}.wav"
    y0 = (0.25 * np.sin(np.arange(4000) * 0.05)).astype(np.float32)
    sf.write(str(path), y0, 16000, subtype=subtype)
    y = load_audio(path)
    ref, _ = sf.read(str(path), dtype="float32")
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_allclose(y, y0, atol=2**-23 if subtype == "PCM_24" else 0)
    assert audio_info(path) == (4000, 16000, 1)


def test_non_finite_float_audio_is_refused(tmp_path: Path):
    path = tmp_path / "nan.wav"
    y0 = np.zeros(4000, dtype=np.float32)
    y0[100] = np.nan
    sf.write(str(path), y0, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(path)


def test_audio_error_is_a_stethoscope_error():
    err = AudioError("some/clip.wav", "too short")
    assert isinstance(err, StethoscopeError)
    assert err.path == Path("some/clip.wav") and err.reason == "too short"
    assert str(err) == f"{Path('some/clip.wav')}: too short"
    with pytest.raises(AudioError, match="unreadable audio"):
        audio_info("/nonexistent/x.wav")


def test_stereo_is_downmixed(tmp_path: Path):
    path = tmp_path / "stereo.wav"
    st = _noise(16000, 2)
    sf.write(str(path), st, 16000, subtype="PCM_16")
    with pytest.warns(AudioNoteWarning, match="stereo.wav: 2 channels mixed down to mono"):
        y = load_audio(path)
    ref, _ = sf.read(str(path), dtype="float32")
    assert y.ndim == 1
    np.testing.assert_allclose(y, ref.mean(axis=1), atol=1e-7)
    assert read_audio(path).notes == ["2 channels mixed down to mono"]


def test_a_silent_clip_is_noted(tmp_path: Path):
    path = tmp_path / "dead_mic.wav"
    sf.write(str(path), np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    assert read_audio(path).notes == ["silent (peak below -80 dBFS)"]


def test_other_rate_is_resampled_with_warning(tmp_path: Path):
    path = tmp_path / "cd.wav"
    sf.write(str(path), _noise(44100), 44100, subtype="PCM_16")
    with pytest.warns(ResampleWarning, match="cd.wav"):
        y = load_audio(path)
    assert abs(y.shape[0] - 16000) <= 1


@pytest.mark.parametrize("case", ["empty", "truncated", "not_audio", "too_short", "missing"])
def test_bad_files_name_the_file(tmp_path: Path, case: str):
    path = tmp_path / f"{case}.wav"
    if case == "empty":
        path.write_bytes(b"")
        reason = r"empty file \(0 bytes\)"
    elif case == "truncated":
        write_wav(tmp_path / "full.wav", _noise(16000))
        path.write_bytes((tmp_path / "full.wav").read_bytes()[:30])
        reason = r"unreadable or corrupt audio \(.+\)"
    elif case == "not_audio":
        path.write_text("this is a text file pretending to be audio\n" * 20)
        reason = r"unreadable or corrupt audio \(.+\)"
    elif case == "too_short":
        write_wav(path, _noise(MIN_SAMPLES - 1))
        reason = r"too short: 0.064 s, need at least 0.064 s \(1024 samples\)"
    else:
        reason = "file does not exist"
    with pytest.raises(AudioError, match=reason) as info:
        load_audio(path)
    assert str(info.value).startswith(f"{path}: ")
    assert info.value.path == path


def test_exactly_min_samples_is_accepted(tmp_path: Path):
    path = tmp_path / "min.wav"
    write_wav(path, _noise(MIN_SAMPLES))
    assert load_audio(path).shape == (MIN_SAMPLES,)
