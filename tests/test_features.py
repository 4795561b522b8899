"""Features: parity with the official baseline's vectors, the cache, and bad files in a batch."""

from __future__ import annotations

import csv
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import stethoscope.audio as audio
from stethoscope.audio import AudioError, write_wav
from stethoscope.errors import ConfigError
from stethoscope.features import (
    FEATURES,
    FeatureCache,
    LogMel,
    LogMelConfig,
    Waveform,
    clip_identity,
    extract,
)

SR = 16_000


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise plus a tone and a slow envelope, quantised to 16 bits like every DCASE clip."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    y = 0.05 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * (440 + 50 * seed) * t)
    y *= 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)
    return (np.round(np.clip(y, -1, 1) * 32767) / 32768).astype(np.float32)


def _wav(folder: Path, name: str, seconds: float, seed: int = 0) -> Path:
    path = folder / name
    write_wav(path, _signal(seconds, seed))
    return path


def _official_log_mel(y: np.ndarray) -> np.ndarray:
    """Oracle: the baseline's log-mel with librosa (fixtures/official_logmel/README.md), (T,128)."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=1024, hop_length=512, n_mels=128, power=2.0, fmin=0.0, fmax=None
    )
    return (10.0 * np.log10(np.maximum(mel, sys.float_info.epsilon))).T


def _stack5(log_mel: np.ndarray) -> np.ndarray:
    n_vec = log_mel.shape[0] - 4
    return np.concatenate([log_mel[t : t + n_vec] for t in range(5)], axis=1)


# ---------------------------------------------------------------------------- official parity
@pytest.mark.parametrize("workers, batch_size", [(1, 4), (2, 1)])
def test_parity_with_official_fixtures(shared: Path, workers: int, batch_size: int):
    folder = shared / "fixtures" / "official_logmel"
    with open(folder / "clips.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    res = extract(
        [shared / r["clip"] for r in rows], LogMel(), batch_size=batch_size, workers=workers
    )
    assert not res.failures and res.n_computed == 4
    for row, got in zip(rows, res.features, strict=True):
        ref = np.load(folder / row["npy"])
        assert got.shape == ref.shape == (int(row["n_vectors"]), 640), row["npy"]
        assert got.dtype == np.float32
        err = np.abs(got.astype(np.float64) - ref)
        assert err.max() <= 0.1, row["npy"]
        assert np.mean(err <= 0.01) >= 0.999, row["npy"]
        assert err.max() <= 1e-3, f"{row['npy']}: max error {err.max():.2e} dB"


@pytest.mark.parametrize("seconds, n_vectors", [(10, 309), (11, 340), (12, 372)])
def test_shape_per_clip_length(seconds: int, n_vectors: int):
    (feat,) = LogMel().compute_batch([_signal(seconds)])
    assert feat.shape == (n_vectors, 640)
    assert LogMel().n_frames_for(seconds * SR) == n_vectors + 4


def test_lengths_mixed_in_one_batch_match_librosa():
    # Unequal lengths (incl. clips too short for any interior frame), grouped, returned in order.
    lengths = [160_000, 176_000, 1500, 160_000, 16_000 + 300, 1024, 2048, 192_000]
    waves = [_signal(n / SR, seed=i) for i, n in enumerate(lengths)]
    ext = LogMel()
    feats = ext.compute_batch(waves)
    for y, got_mel, got in zip(waves, ext.log_mel_batch(waves), feats, strict=True):
        ref = _official_log_mel(y)
        assert got_mel.shape == ref.shape == (ext.n_frames_for(len(y)), 128)
        np.testing.assert_allclose(got_mel, ref, atol=1e-3, rtol=0)
        if ref.shape[0] >= 5:
            np.testing.assert_allclose(got, _stack5(ref), atol=1e-3, rtol=0)
        else:
            assert got.shape == (0, 640)


def test_stacking_is_frame_major_read_only_view_and_round_trips():
    ext = LogMel()
    (log_mel,) = ext.log_mel_batch([_signal(2.0)])
    stacked = ext.stack(log_mel)
    assert stacked.shape == (log_mel.shape[0] - 4, 640)
    for i in (0, 7, stacked.shape[0] - 1):
        np.testing.assert_array_equal(stacked[i], log_mel[i : i + 5].reshape(-1))
    assert not stacked.flags.writeable
    np.testing.assert_array_equal(ext.to_storage(stacked), log_mel)
    assert np.shares_memory(ext.to_storage(stacked), log_mel)  # the view's own memory, no copy
    np.testing.assert_array_equal(ext.from_storage(ext.to_storage(stacked)), stacked)
    copied = np.ascontiguousarray(stacked)  # vectors from elsewhere: rebuilt by copying
    np.testing.assert_array_equal(ext.to_storage(copied), log_mel)
    assert not np.shares_memory(ext.to_storage(copied), copied)


def test_fewer_frames_than_stack_gives_empty():
    ext = LogMel(n_frames=50)
    (feat,) = ext.compute_batch([_signal(1.0)])  # 32 frames < 50
    assert feat.shape == (0, 128 * 50)


# ---------------------------------------------------------------------------- registry and key
def test_registry_and_key():
    assert FEATURES.get("logmel") is LogMel and FEATURES.get("waveform") is Waveform
    assert FEATURES.names()[:2] == ["logmel", "waveform"]  # registration order
    with pytest.raises(ConfigError, match="unknown feature extractor 'mfcc'"):
        FEATURES.get("mfcc")
    assert LogMel().name == "logmel"
    assert LogMel().key() == LogMel(LogMelConfig()).key()
    assert LogMel().key() != LogMel(n_mels=64).key()
    assert LogMel().key() != Waveform().key()
    assert len(LogMel().key()) == 16
    ext = LogMel()
    before = ext.key()
    ext.config = LogMelConfig(n_mels=64)  # the remembered key follows a new config
    assert ext.key() == LogMel(n_mels=64).key() != before


# ---------------------------------------------------------------------------- cache
def test_cache_hit_does_not_decode_and_is_identical(tmp_path: Path, monkeypatch):
    paths = [_wav(tmp_path, f"c{i}.wav", s, i) for i, s in enumerate([10, 11, 10])]
    cache = FeatureCache(tmp_path / "cache")
    first = extract(paths, LogMel(), cache=cache, batch_size=2)
    assert first.n_computed == 3 and first.n_cached == 0

    def no_decoding(path, *a, **k):
        raise AssertionError(f"decoded {path} despite a warm cache")

    monkeypatch.setattr(audio, "load_audio", no_decoding)
    second = extract(paths, LogMel(), cache=tmp_path / "cache")
    assert second.n_cached == 3 and second.n_computed == 0 and not second.failures
    for a, b in zip(first.features, second.features, strict=True):
        np.testing.assert_array_equal(a, b)
        assert b.shape == a.shape and not b.flags.writeable
    folder = cache.folder(LogMel())
    meta = (folder / "meta.json").read_text()
    assert '"n_mels": 128' in meta and LogMel().key() in meta
    assert len(list(folder.rglob("*.npy"))) == 3
    assert not list(folder.rglob("*.tmp"))


def test_cache_invalidates_when_file_changes(tmp_path: Path):
    path = _wav(tmp_path, "a.wav", 3, seed=1)
    cache = FeatureCache(tmp_path / "cache")
    before = extract([path], LogMel(), cache=cache).features[0].copy()

    write_wav(path, _signal(4, seed=2))  # new content and size
    res = extract([path], LogMel(), cache=cache)
    assert res.n_computed == 1 and res.features[0].shape != before.shape

    # Same size, only the modification time moves: still recomputed.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert extract([path], LogMel(), cache=cache).n_computed == 1
    assert extract([path], LogMel(), cache=cache).n_cached == 1


def test_cache_survives_its_folders_being_removed_during_a_run(tmp_path: Path):
    import shutil

    cache = FeatureCache(tmp_path / "cache")
    ext = LogMel()
    a = np.arange(3 * 128, dtype=np.float32).reshape(3, 128)
    cache.store(ext, "ab" + "0" * 30, a)
    shutil.rmtree(tmp_path / "cache")  # e.g. a user clearing the cache by hand
    cache.store(ext, "ab" + "1" * 30, a)
    assert cache.enabled and (cache.folder(ext) / "meta.json").is_file()
    np.testing.assert_array_equal(cache.load(ext, "ab" + "1" * 30), a)


def test_unwritable_cache_is_skipped_with_a_warning(tmp_path: Path, monkeypatch, caplog):
    paths = [_wav(tmp_path, f"w{i}.wav", 1, i) for i in range(2)]
    ref = extract(paths, LogMel()).features
    not_a_folder = tmp_path / "cache_is_a_file"
    not_a_folder.write_text("x")
    with caplog.at_level(logging.WARNING):
        res = extract(paths, LogMel(), cache=not_a_folder)
    assert res.n_computed == 2 and "continuing without a cache" in caplog.text
    for a, b in zip(res.features, ref, strict=True):
        np.testing.assert_array_equal(a, b)

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    cache = FeatureCache(tmp_path / "cache")
    monkeypatch.setattr(np, "save", disk_full)
    res = extract(paths, LogMel(), cache=cache, workers=1)
    assert res.n_computed == 2 and not cache.enabled
    left = [f.name for f in (tmp_path / "cache").rglob("*") if f.suffix in (".tmp", ".npy")]
    assert left == []
    np.testing.assert_array_equal(res.features[1], ref[1])


def test_no_cache_dir_computes_each_time(tmp_path: Path):
    path = _wav(tmp_path, "a.wav", 2)
    for _ in range(2):
        res = extract([path], LogMel(), cache=None)
        assert res.n_computed == 1 and res.n_cached == 0
    assert FeatureCache(None).load(LogMel(), "0" * 32) is None


def _overwrite_keeping_mtime(path: Path, data: bytes, in_place: bool) -> None:
    """Replace a file's bytes and put its mtime back, as ``cp -p`` (in place: same inode) or
    ``rsync -a`` / unpacking an archive (a new file renamed over it) do."""
    st = path.stat()
    time.sleep(0.02)  # past the file system's clock tick, so the change time moves as in real use
    if in_place:
        with open(path, "r+b") as fh:
            fh.write(data)
    else:
        tmp = path.with_name(".incoming.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


@pytest.mark.parametrize("in_place", [True, False], ids=["cp-p", "rsync-a"])
def test_same_size_replacement_with_restored_mtime_is_recomputed(tmp_path: Path, in_place: bool):
    path = _wav(tmp_path, "a.wav", 2, seed=1)
    other = _wav(tmp_path, "other.wav", 2, seed=5)  # same length: same size, other samples
    cache = FeatureCache(tmp_path / "cache")
    old = extract([path], LogMel(), cache=cache).features[0].copy()
    new = LogMel().compute_batch([audio.load_audio(other)])[0]
    assert np.abs(new - old).max() > 1.0  # the two clips' features really differ

    _overwrite_keeping_mtime(path, other.read_bytes(), in_place)
    res = extract([path], LogMel(), cache=cache)
    assert res.n_computed == 1 and res.n_cached == 0
    np.testing.assert_array_equal(res.features[0], new)
    again = extract([path], LogMel(), cache=cache)
    assert again.n_cached == 1
    np.testing.assert_array_equal(again.features[0], new)


def test_clip_identity_follows_change_time_and_inode(tmp_path: Path):
    path = _wav(tmp_path, "a.wav", 1)
    first = clip_identity(path)
    assert clip_identity(path) == first and clip_identity(str(path)) == first
    assert len(first) == 32
    _overwrite_keeping_mtime(path, path.read_bytes(), in_place=True)  # same bytes, new ctime
    assert clip_identity(path) != first
    with pytest.raises(FileNotFoundError):
        clip_identity(tmp_path / "gone.wav")


def _nan_at(a: np.ndarray, index: tuple[int, int], value: float) -> np.ndarray:
    bad = a.copy()
    bad[index] = value
    return bad


_DAMAGE = {  # how to spoil a cache entry -> what to write over it, from its good array
    "zero_bytes": lambda good: b"",
    "garbage": lambda good: b"garbage" * 10,
    "wrong_mel_bands": lambda good: good[:, :64],
    "wrong_dtype": lambda good: good.astype(np.float64),
    "nan": lambda good: _nan_at(good, (3, 7), np.nan),
    "inf": lambda good: _nan_at(good, (-1, 0), -np.inf),
    "wrong_shape": lambda good: np.zeros((4, 4), dtype=np.int16),
}


@pytest.mark.parametrize(
    "extractor, how",
    [
        *[
            (LogMel, how)
            for how in [
                "zero_bytes",
                "garbage",
                "truncated",
                "wrong_mel_bands",
                "wrong_dtype",
                "nan",
                "inf",
            ]
        ],
        (Waveform, "wrong_shape"),
        (Waveform, "garbage"),
    ],
)
def test_bad_cache_entry_is_recomputed_replaced_and_named(
    tmp_path: Path, extractor, how: str, caplog
):
    path = _wav(tmp_path, "a.wav", 2)
    cache = FeatureCache(tmp_path / "cache")
    ref = extract([path], extractor(), cache=cache).features[0].copy()
    (entry,) = cache.folder(extractor()).rglob("*.npy")
    good_bytes, good = entry.read_bytes(), np.load(entry)
    bad = good_bytes[:1000] if how == "truncated" else _DAMAGE[how](good)
    if isinstance(bad, bytes):
        entry.write_bytes(bad)
    else:
        np.save(entry, bad)
    with caplog.at_level(logging.WARNING, logger="stethoscope.features.cache"):
        res = extract([path], extractor(), cache=cache)
    assert res.n_computed == 1 and res.n_cached == 0 and not res.failures
    np.testing.assert_array_equal(res.features[0], ref)
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(entry) in record.getMessage() and "recomputing" in record.getMessage()
    assert entry.read_bytes() == good_bytes  # the bad entry was replaced
    caplog.clear()
    again = extract([path], extractor(), cache=cache)
    assert again.n_cached == 1 and not caplog.records
    np.testing.assert_array_equal(again.features[0], ref)


# ---------------------------------------------------------------------------- parallel runs
def test_mixed_lengths_and_workers_give_the_same_features(tmp_path: Path):
    seconds = [10, 0.5, 11, 2, 10, 12, 0.07, 3]  # 0.07 s: 1120 samples, 3 frames, no vector
    paths = [_wav(tmp_path, f"m{i}.wav", s, i) for i, s in enumerate(seconds)]
    one = extract(paths, LogMel(), workers=1, batch_size=64)
    two = extract(paths, LogMel(), workers=2, batch_size=3)
    assert [f.shape[0] for f in one.features] == [309, 12, 340, 59, 309, 372, 0, 90]
    for a, b in zip(one.features, two.features, strict=True):
        np.testing.assert_array_equal(a, b)


class _ThreadSpy(LogMel):
    """LogMel that records torch's thread count where each batch is computed."""

    seen: list[int] = []

    def compute_batch(self, waves, device="cpu"):
        self.seen.append(torch.get_num_threads())
        return super().compute_batch(waves, device)


@pytest.mark.parametrize("on_error", ["skip", "stop"])
def test_torch_threads_split_among_workers_and_restored(tmp_path: Path, on_error: str):
    paths = [_wav(tmp_path, f"t{i}.wav", 1, i) for i in range(6)]
    paths.insert(4, _bad_files(tmp_path)["text"])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _ThreadSpy.seen = []
        if on_error == "stop":
            with pytest.raises(AudioError, match="not_audio.wav"):
                extract(paths, _ThreadSpy(), workers=2, batch_size=1, on_error="stop")
        else:
            assert len(extract(paths, _ThreadSpy(), workers=2, batch_size=1)) == 6
        assert _ThreadSpy.seen and set(_ThreadSpy.seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------- bad files
def _bad_files(folder: Path) -> dict[str, Path]:
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    good = _wav(folder, "for_truncation.wav", 2)
    truncated = folder / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])
    text = folder / "not_audio.wav"
    text.write_text("this is not a wav file\n" * 20)
    return {"empty": empty, "truncated": truncated, "text": text}


def test_bad_files_reported_by_name_valid_ones_extracted(tmp_path: Path):
    bad = _bad_files(tmp_path)
    good = [_wav(tmp_path, f"g{i}.wav", s, i) for i, s in enumerate([10, 11])]
    clips = [good[0], bad["empty"], bad["truncated"], good[1], bad["text"]]
    seen: list[tuple[str, float, int, dict]] = []
    res = extract(
        clips, LogMel(), cache=tmp_path / "cache", batch_size=2, progress=lambda *a: seen.append(a)
    )
    assert res.clips == [good[0], good[1]]
    assert [f.shape for f in res.features] == [(309, 640), (340, 640)]
    assert [p for p, _ in res.failures] == [bad["empty"], bad["truncated"], bad["text"]]
    reasons = [reason for _, reason in res.failures]
    assert reasons[0] == "empty file (0 bytes)"
    assert reasons[1].startswith("unreadable or corrupt audio") and "corrupt" in reasons[2]
    assert seen[-1] == ("features (logmel)", 5, 5, {})
    assert [d for _, d, _, _ in seen] == sorted(d for _, d, _, _ in seen)  # never backwards
    seen.clear()
    missing = extract(
        [tmp_path / "gone.wav", good[0]],
        LogMel(),
        cache=tmp_path / "cache",
        progress=lambda *a: seen.append(a),
    )
    assert missing.failures == [(tmp_path / "gone.wav", "file does not exist")]
    assert missing.n_cached == 1 and seen == [("features (logmel)", 2, 2, {})]


def test_on_error_stop_raises_naming_the_file(tmp_path: Path):
    bad = _bad_files(tmp_path)
    good = _wav(tmp_path, "g.wav", 2)
    with pytest.raises(AudioError, match="not_audio.wav"):
        extract([good, bad["text"]], LogMel(), on_error="stop")
    with pytest.raises(ValueError):
        extract([good], LogMel(), on_error="ignore")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- waveform
def test_waveform_cache_is_lossless_and_int16_for_16_bit(tmp_path: Path, monkeypatch):
    path = _wav(tmp_path, "a.wav", 1.5)
    cache = FeatureCache(tmp_path / "cache")
    first = extract([path], Waveform(), cache=cache)
    np.testing.assert_array_equal(first.features[0], audio.load_audio(path))
    (entry,) = cache.folder(Waveform()).rglob("*.npy")
    assert np.load(entry).dtype == np.int16
    monkeypatch.setattr(audio, "load_audio", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    again = extract([path], Waveform(), cache=cache)
    assert again.n_cached == 1 and again.features[0].dtype == np.float32
    np.testing.assert_array_equal(again.features[0], first.features[0])


def test_waveform_non_16_bit_stays_float32(tmp_path: Path):
    path = tmp_path / "float.wav"
    y = (0.3 * np.sin(np.arange(8000) * 0.01)).astype(np.float32)
    sf.write(str(path), y, SR, subtype="FLOAT")
    ext = Waveform()
    stored = ext.to_storage(audio.load_audio(path))
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(ext.from_storage(stored), y)


def test_too_short_for_a_vector_caches_as_empty(tmp_path: Path):
    path = _wav(tmp_path, "short.wav", 0.1)  # 4 STFT frames: no 5-frame vector
    for expected in ("n_computed", "n_cached"):
        res = extract([path], LogMel(), cache=tmp_path / "cache")
        assert getattr(res, expected) == 1 and res.features[0].shape == (0, 640)


def test_accepts_clip_objects_and_empty_input(tmp_path: Path):
    from stethoscope.data import Clip

    path = _wav(tmp_path, "section_00_source_train_normal_0000_noAttribute.wav", 1.0)
    clip = Clip(
        path=path,
        machine="fan",
        section="00",
        split="train",
        domain="source",
        label="normal",
        index="0000",
    )
    res = extract([clip], LogMel(), workers=1)
    assert res.clips == [clip] and res.features[0].shape == (28, 640)
    assert res.clips_per_second == pytest.approx(1 / res.seconds)
    empty = extract([], LogMel())
    assert empty.clips == [] and list(empty.features) == [] and empty.failures == []
