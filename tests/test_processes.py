"""Multi-process feature extraction: same arrays as in-process, bad files by name, the cache
written by the helpers, warnings passed on, and a dying helper's clips computed here instead."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.audio import AudioError, ResampleWarning, write_wav
from stethoscope.features import FeatureCache, LogMel, extract, processes

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="helper processes: Linux only")
SR = 16_000
PARENT = os.getpid()


def _clips(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        y = 0.1 * rng.standard_normal(int(SR * (0.5 + 0.1 * (i % 7))))
        path = folder / f"c{i:02d}.wav"
        write_wav(path, (np.round(np.clip(y, -1, 1) * 32767) / 32768).astype(np.float32))
        out.append(path)
    return out


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def test_processes_give_the_in_process_arrays(tmp_path: Path):
    clips = _clips(tmp_path, 3 * processes.CHUNK + 3)
    assert processes.usable(LogMel(), len(clips), 2)
    seen: list[int] = []
    pooled = extract(clips, LogMel(), use_processes=True, progress=lambda d, t: seen.append(d))
    pool = processes._Pool._current  # two streams: this process and one helper
    assert pool is not None and len(pool.helpers) == 1
    assert all(h.alive() and h.pid != PARENT for h in pool.helpers)
    here = extract(clips, LogMel(), use_processes=False)
    assert pooled.clips == here.clips == clips and not pooled.failures
    _same(pooled.features, here.features)
    assert all(not f.flags.writeable for f in pooled.features)
    assert seen[-1] == len(clips)
    again = extract(clips, LogMel(), use_processes=True)  # the same pool serves a second call
    assert processes._Pool._current is pool
    _same(again.features, here.features)


def test_bad_files_by_name_and_cache_written_by_the_helpers(tmp_path: Path):
    good = _clips(tmp_path, 2 * processes.CHUNK + 1)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not a wav file\n" * 40)
    flt = tmp_path / "float.wav"  # 32-bit float: decoded by load_audio first
    sf.write(str(flt), np.sin(np.arange(SR) * 0.01).astype(np.float32) * 0.3, SR, subtype="FLOAT")
    clips = good[:5] + [tmp_path / "empty.wav"] + good[5:] + [tmp_path / "text.wav", flt]
    cache = tmp_path / "cache"
    res = extract(clips, LogMel(), cache=cache, use_processes=True)
    assert [p.name for p, _ in res.failures] == ["empty.wav", "text.wav"]
    assert all(reason for _, reason in res.failures)
    assert res.clips == good + [flt] and res.n_computed == len(good) + 1
    assert len(list(FeatureCache(cache).folder(LogMel()).rglob("*.npy"))) == len(good) + 1
    again = extract(clips, LogMel(), cache=cache, use_processes=True)
    assert again.n_cached == len(good) + 1 and again.n_computed == 0
    _same(again.features, res.features)
    _same(res.features, extract(res.clips, LogMel(), use_processes=False).features)


def test_stop_on_error_raises_naming_the_file(tmp_path: Path):
    clips = _clips(tmp_path, 2 * processes.CHUNK)
    (tmp_path / "text.wav").write_text("not a wav file\n" * 40)
    with pytest.raises(AudioError, match="text.wav"):
        extract(clips[:9] + [tmp_path / "text.wav"] + clips[9:], LogMel(), on_error="stop",
                use_processes=True)
    assert processes._Pool._current is None  # its helpers were stopped mid-job, not reused
    assert len(extract(clips, LogMel(), use_processes=True)) == len(clips)


def test_a_resampling_warning_in_a_helper_reaches_the_caller(tmp_path: Path):
    clips = _clips(tmp_path, 2 * processes.CHUNK)
    odd = tmp_path / "odd_rate.wav"
    write_wav(odd, np.zeros(22_050, np.float32) + 0.01, sr=22_050)
    with pytest.warns(ResampleWarning, match="odd_rate.wav"):
        res = extract(clips + [odd], LogMel(), use_processes=True)
    assert res.clips[-1] == odd and res.features[-1].shape == (28, 640)


def test_results_larger_than_the_shared_buffer_come_back_whole(tmp_path: Path, monkeypatch):
    clips = _clips(tmp_path, 4 * processes.CHUNK)  # 4 chunks: the helper takes 2, we compute 2
    for k in (1, 9, 17, 25):  # 3 s clips (94 frames): more than a slot holds, here and there
        write_wav(clips[k], np.zeros(3 * SR, np.float32) + 0.01)
    monkeypatch.setattr(processes, "SLOT_BYTES", 40 * 128 * 4)  # room for 40 frames only
    processes._Pool.discard()
    try:
        res = extract(clips, LogMel(), use_processes=True)
    finally:
        processes._Pool.discard()  # the next test gets a pool with the usual buffers
    _same(res.features, extract(clips, LogMel(), use_processes=False).features)


class DiesOnCrashFiles(LogMel):
    """A helper computing a file named crash*.wav exits at once, as if killed (OOM, signal)."""

    def compute_stored(self, path, out=None):
        if Path(path).name.startswith("crash") and os.getpid() != PARENT:
            os._exit(3)
        return super().compute_stored(path, out)


class SlowHereDiesThere(DiesOnCrashFiles):
    """As above, with this process slow (a loaded machine): the helper answers its first chunk
    and is dead by the time it is sent the next one."""

    def compute_stored(self, path, out=None):
        if os.getpid() == PARENT:
            time.sleep(0.02)
        return super().compute_stored(path, out)


def test_clips_of_a_dead_helper_are_computed_here(tmp_path: Path):
    clips = _clips(tmp_path, 4 * processes.CHUNK)
    for k in range(0, len(clips), processes.CHUNK):  # one in every chunk: a helper meets one
        crash = tmp_path / f"crash{k}.wav"
        crash.write_bytes(clips[k].read_bytes())
        clips.insert(k + 3, crash)
    res = extract(clips, DiesOnCrashFiles(), use_processes=True)
    assert res.clips == clips and not res.failures
    _same(res.features, extract(clips, LogMel(), use_processes=False).features)
    assert processes._Pool._current.broken  # it lost its helper, so the next call makes anew
    extract(clips[:2 * processes.CHUNK], LogMel(), use_processes=True)
    assert all(h.alive() for h in processes._Pool._current.helpers)


def test_not_used_for_few_clips_or_when_switched_off(monkeypatch):
    assert not processes.usable(LogMel(), processes.CHUNK, 2)
    assert not processes.usable(LogMel(), 1000, 1)
    monkeypatch.setenv("STETHOSCOPE_FEATURE_PROCESSES", "0")
    assert not processes.usable(LogMel(), 1000, 2)


def test_ctrl_c_at_an_idle_helper_does_not_break_the_next_call(tmp_path: Path):
    import signal
    import time

    clips = _clips(tmp_path, 2 * processes.CHUNK)
    extract(clips, LogMel(), use_processes=True)
    pool = processes._Pool._current
    for pid in processes.helper_pids():
        os.kill(pid, signal.SIGINT)  # what a Ctrl-C in the terminal sends the process group
    time.sleep(0.2)
    res = extract(clips, LogMel(), use_processes=True)
    assert len(res) == len(clips) and processes._Pool._current is pool and not pool.broken


def test_a_helper_dead_between_answers_leaves_its_chunks_here(tmp_path: Path):
    clips = _clips(tmp_path, 4 * processes.CHUNK)
    crash = tmp_path / "crash.wav"
    crash.write_bytes(clips[0].read_bytes())
    clips.insert(processes.CHUNK, crash)  # first clip of the helper's second chunk
    res = extract(clips, SlowHereDiesThere(), use_processes=True)
    assert res.clips == clips and not res.failures


def test_a_forked_child_neither_uses_nor_stops_the_parents_helpers(tmp_path: Path):
    clips = _clips(tmp_path, 2 * processes.CHUNK)
    extract(clips, LogMel(), use_processes=True)
    helpers = processes.helper_pids()
    pid = os.fork()
    if pid == 0:  # the child: its own extraction, then what its exit would do to the pool
        code = 1
        try:
            ok = len(extract(clips, LogMel(), use_processes=True)) == len(clips)
            mine = not set(processes.helper_pids()) & set(helpers)  # a pool of its own
            processes._shutdown()  # the atexit hook: stops the child's own helpers only
            code = 0 if ok and mine else 2
        except BaseException:  # noqa: BLE001 - reported through the exit code
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert processes.helper_pids() == helpers  # still alive, still ours
    assert len(extract(clips, LogMel(), use_processes=True)) == len(clips)
