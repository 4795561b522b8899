"""Bad audio gives an AudioError naming the file; valid audio is read as 16 kHz mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.audio import AudioError, ResampleWarning, load_audio, write_wav


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


def test_stereo_is_downmixed(tmp_path: Path):
    path = tmp_path / "stereo.wav"
    st = _noise(16000, 2)
    sf.write(str(path), st, 16000, subtype="PCM_16")
    y = load_audio(path)
    ref, _ = sf.read(str(path), dtype="float32")
    assert y.ndim == 1
    np.testing.assert_allclose(y, ref.mean(axis=1), atol=1e-7)


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
        reason = "empty"
    elif case == "truncated":
        write_wav(tmp_path / "full.wav", _noise(16000))
        path.write_bytes((tmp_path / "full.wav").read_bytes()[:30])
        reason = "corrupt|no samples"
    elif case == "not_audio":
        path.write_text("this is a text file pretending to be audio\n" * 20)
        reason = "corrupt"
    elif case == "too_short":
        write_wav(path, _noise(800))  # 0.05 s
        reason = "too short"
    else:
        reason = "does not exist"
    with pytest.raises(AudioError, match=reason) as info:
        load_audio(path)
    assert str(path) in str(info.value)
    assert info.value.path == path
