"""The PCM16 WAV reader gives libsndfile's samples bit for bit, or declines (None) and lets it decode."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.audio import AudioError, load_audio
from stethoscope.wav import read_pcm16


def _pcm(n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32768, size=(n, channels), dtype=np.int16)


def _libsndfile(path: Path) -> tuple[np.ndarray, int]:
    raw, sr = sf.read(str(path), dtype="int16")
    return np.multiply(raw, np.float32(1 / 32768), dtype=np.float32), sr


def _chunk(cid: bytes, payload: bytes) -> bytes:
    return cid + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")


def _fmt(channels: int, rate: int = 16000, bits: int = 16, tag: int = 1) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def _riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _assert_same_as_libsndfile(path: Path) -> None:
    got = read_pcm16(path)
    assert got is not None, f"{path.name} should take the fast path"
    ref, sr = _libsndfile(path)
    assert got[1] == sr
    assert got[0].dtype == np.float32 and got[0].shape == ref.shape
    np.testing.assert_array_equal(got[0], ref)


@pytest.mark.parametrize("channels", [1, 2])
def test_soundfile_written_pcm16_matches(tmp_path: Path, channels: int):
    path = tmp_path / "a.wav"
    sf.write(str(path), _pcm(16001, channels), 16000, subtype="PCM_16")
    _assert_same_as_libsndfile(path)


def test_extensible_header_and_other_rate_match(tmp_path: Path):
    path = tmp_path / "x.wav"
    sf.write(str(path), _pcm(4000, 3), 22050, subtype="PCM_16", format="WAVEX")
    assert path.read_bytes()[20:22] == b"\xfe\xff"
    _assert_same_as_libsndfile(path)


def test_extra_chunks_odd_sizes_and_truncation_match(tmp_path: Path):
    pcm = _pcm(3000, 1, seed=2).tobytes()
    cases = {
        "list_before_data": _riff(_chunk(b"fmt ", _fmt(1)), _chunk(b"LIST", b"INFOabc"),
                                  _chunk(b"data", pcm)),
        "fmt_18_bytes": _riff(_chunk(b"fmt ", _fmt(1) + b"\0\0"), _chunk(b"data", pcm)),
        "odd_byte_at_end": _riff(_chunk(b"fmt ", _fmt(1)), _chunk(b"data", pcm + b"\x07")),
        "truncated_data": _riff(_chunk(b"fmt ", _fmt(1)), _chunk(b"data", pcm))[:-1001],
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.wav"
        path.write_bytes(data)
        _assert_same_as_libsndfile(path)


def test_real_clips_match(shared: Path):
    clips = sorted((shared / "data" / "real").rglob("*.wav"))[:20]
    assert clips
    for path in clips:
        _assert_same_as_libsndfile(path)


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT", "PCM_U8"])
def test_other_sample_formats_are_left_to_libsndfile(tmp_path: Path, subtype: str):
    path = tmp_path / f"{subtype}.wav"
    sf.write(str(path), _pcm(2000).astype(np.float32) / 32768, 16000, subtype=subtype)
    assert read_pcm16(path) is None
    assert load_audio(path).shape == (2000,)  # still read, through libsndfile


def test_unsure_headers_decline(tmp_path: Path):
    pcm = _pcm(2000).tobytes()
    cases = {
        "flac": None,
        "data_before_fmt": _riff(_chunk(b"data", pcm), _chunk(b"fmt ", _fmt(1))),
        "no_fmt": _riff(_chunk(b"data", pcm)),
        "placeholder_size": _riff(_chunk(b"fmt ", _fmt(1)), b"data" + b"\xff" * 4 + pcm),
        "bad_align": _riff(_chunk(b"fmt ", _fmt(1)[:12] + struct.pack("<HH", 4, 16)),
                           _chunk(b"data", pcm)),
        "chunk_list_runs_off": _riff(_chunk(b"fmt ", _fmt(1)), b"junk" + b"\xf0" * 4 + pcm),
        "text": b"RIFF pretending to be audio\n" * 10,
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.wav"
        if data is None:
            sf.write(str(path), _pcm(2000), 16000, format="FLAC")
        else:
            path.write_bytes(data)
        assert read_pcm16(path) is None, name
    assert read_pcm16(tmp_path / "missing.wav") is None


def test_load_audio_errors_unchanged_for_declined_files(tmp_path: Path):
    path = tmp_path / "no_fmt.wav"
    path.write_bytes(_riff(_chunk(b"data", _pcm(2000).tobytes())))
    with pytest.raises(AudioError, match="corrupt") as info:
        load_audio(path)
    assert info.value.path == path


def test_result_does_not_alias_the_scratch_buffer(tmp_path: Path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(str(a), _pcm(1500, seed=3), 16000, subtype="PCM_16")
    sf.write(str(b), _pcm(1500, seed=4), 16000, subtype="PCM_16")
    first = read_pcm16(a)[0].copy()
    kept = read_pcm16(a)[0]
    read_pcm16(b)
    np.testing.assert_array_equal(kept, first)


def test_long_file_reads_into_its_own_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import stethoscope.wav as wav

    monkeypatch.setattr(wav, "_SCRATCH_MAX", 1000)
    small = bytearray(10)  # too small for the file: without the cap it would be replaced
    monkeypatch.setattr(wav._scratch, "buf", small, raising=False)
    path = tmp_path / "long.wav"
    sf.write(str(path), _pcm(3000), 16000, subtype="PCM_16")  # 6,000 bytes > the cap
    _assert_same_as_libsndfile(path)
    assert wav._scratch.buf is small
