"""Audio reading: every clip enters the toolkit as 16 kHz mono float32 through :func:`read_audio`.

Reading sits behind one function so that a bad file (missing, empty, truncated, not audio, too
short) always surfaces as an :class:`AudioError` naming the file, whatever libsndfile raised
underneath, and so that what was done to a usable but unusual file (mixed down from several
channels, resampled, silent) comes back as notes the pipeline reports. Decoding is soundfile's
(libsndfile) alone.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from stethoscope import SAMPLE_RATE
from stethoscope.dsp import noise_cancel
from stethoscope.errors import StethoscopeError

#: Shortest usable clip: one STFT window of the features (1024 samples at 16 kHz).
MIN_SAMPLES = 1024

#: 16-bit PCM to float32, as libsndfile and librosa.load scale it (exact: a power of two).
_PCM16_SCALE = np.float32(1.0 / 32768.0)


class AudioError(StethoscopeError):
    """An audio file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


#: what to take from a multi-channel file (see :func:`read_audio`)
CHANNELS = ("near", "far", "mix", "both", "near-anc")

#: Peak amplitude below which a clip counts as silent (-80 dBFS): a dead or unplugged microphone.
SILENCE_PEAK = 1e-4


class AudioNoteWarning(UserWarning):
    """A usable clip that needed something done to it, or looks wrong (see :class:`Audio`)."""


class ResampleWarning(AudioNoteWarning):
    """A clip was not at the expected sample rate and was resampled."""


#: where audio can come from: a file on disk, or its bytes (an upload, an in-memory file)
AudioSource = str | Path | bytes | BinaryIO


@dataclass
class Decoded:
    """Samples as the file holds them: (frames,) or (frames, channels), before any choice."""

    name: Path
    data: np.ndarray
    sample_rate: int
    #: whether they came from 16-bit PCM (which cannot hold NaN or inf)
    integer_pcm: bool = False


@dataclass
class Audio:
    """Decoded samples and what reading them noticed (one phrase per note)."""

    samples: np.ndarray
    notes: list[str] = field(default_factory=list)


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(frames, sample rate, channels) from the header only, without decoding."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(path, f"unreadable audio ({_short(exc)})") from exc
    return info.frames, info.samplerate, info.channels


def load_audio(
    path: str | Path, sr: int = SAMPLE_RATE, min_samples: int = MIN_SAMPLES, channel: str = "mix"
) -> np.ndarray:
    """:func:`read_audio`'s samples; its notes become warnings (:class:`AudioNoteWarning`)."""
    audio = read_audio(path, sr, min_samples, channel)
    for note in audio.notes:
        kind = ResampleWarning if "resampled" in note else AudioNoteWarning
        warnings.warn(f"{path}: {note}", kind, stacklevel=2)
    return audio.samples


def read_audio(
    path: AudioSource,
    sr: int = SAMPLE_RATE,
    min_samples: int = MIN_SAMPLES,
    channel: str = "mix",
    name: str | Path | None = None,
) -> Audio:
    """Read a clip as float32 at ``sr`` Hz (int16 / 32768, as librosa.load does).

    ``path`` may also be the file's bytes or a binary file object (``name`` then stands for it in
    messages). See :func:`prepare` for ``channel`` and what is checked.
    """
    return prepare(decode(path, name), sr, min_samples, channel)


def decode(source: AudioSource, name: str | Path | None = None) -> Decoded:
    """The samples of a file, or of its bytes, through libsndfile; :class:`AudioError` if none."""
    label = Path(name) if name is not None else _label(source)
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    elif isinstance(source, str):
        source = Path(source)
    data, file_sr, integer_pcm = _decode(source, label)
    return Decoded(label, data, file_sr, integer_pcm)


def from_samples(samples: np.ndarray, sample_rate: int, name: str | Path = "<samples>") -> Decoded:
    """Samples handed over in memory: (frames,) or (frames, channels), as soundfile reads them."""
    label = Path(name)
    data = np.asarray(samples)
    if data.ndim not in (1, 2) or data.dtype.kind not in "fiu":
        raise AudioError(label, f"samples must be a 1-D or (frames, channels) numeric array, "
                         f"not {data.ndim}-D {data.dtype}")  # fmt: skip
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise AudioError(label, f"sample rate must be a positive integer, not {sample_rate!r}")
    if data.dtype.kind in "iu":
        scale = float(np.iinfo(data.dtype).max) + 1.0
        data = (data.astype(np.float64) / scale).astype(np.float32)
    return Decoded(label, np.asarray(data, dtype=np.float32), sample_rate)


def prepare(
    decoded: Decoded, sr: int = SAMPLE_RATE, min_samples: int = MIN_SAMPLES, channel: str = "mix"
) -> Audio:
    """Decoded samples as the features need them: float32 at ``sr`` Hz, one channel chosen.

    ``channel`` says what to take from a multi-channel file (DCASE2026: channel 0 a microphone
    near the machine, channel 1 one farther away): "near" channel 0, "far" channel 1, "mix" their
    mean, "both" the first two as a (2, samples) array, "near-anc" channel 0 with what channel 1
    predicts of it cancelled (:mod:`stethoscope.dsp.noise_cancel`). A mono file is returned as it
    is, except that "both" and "near-anc" refuse it. What was done is noted, as are resampling
    (librosa) and a silent clip (peak below -80 dBFS).
    """
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, not {channel!r}")
    path, data, file_sr, integer_pcm = (
        decoded.name,
        decoded.data,
        decoded.sample_rate,
        decoded.integer_pcm,
    )
    if data.shape[0] == 0:
        raise AudioError(path, "audio has no samples")
    notes = []
    n_ch = 1 if data.ndim == 1 else data.shape[1]
    if channel in ("both", "near-anc") and n_ch < 2:
        raise AudioError(path, f"{n_ch} channel: two (near and far) are needed")
    if n_ch == 1:
        y = data if data.ndim == 1 else data[:, 0]
    elif channel == "mix":
        y = data.mean(axis=1, dtype=np.float32)
        notes.append(f"{n_ch} channels mixed down to mono")
    elif channel == "both":
        y = np.ascontiguousarray(data[:, :2].T)
        if n_ch > 2:
            notes.append(f"{n_ch} channels: channels 0 (near) and 1 (far) used")
    elif channel == "near-anc":
        y = noise_cancel.cancel(data[:, 0], data[:, 1])
        notes.append(f"{n_ch} channels: channel 0 (near), channel 1 (far) cancelled from it")
    else:
        index = 0 if channel == "near" else 1
        y = np.ascontiguousarray(data[:, index])
        notes.append(f"{n_ch} channels: channel {index} ({channel}) used")
    if file_sr != sr:
        notes.append(f"sample rate {file_sr} Hz, resampled to {sr} Hz")
        import librosa  # deferred: only needed for the odd file

        y = librosa.resample(y, orig_sr=file_sr, target_sr=sr, axis=-1).astype(np.float32)
        integer_pcm = False
    if y.shape[-1] < min_samples:
        raise AudioError(
            path,
            f"too short: {y.shape[-1] / sr:.3f} s, need at least "
            f"{min_samples / sr:.3f} s ({min_samples} samples)",
        )
    if not integer_pcm and not np.all(np.isfinite(y)):  # 16-bit PCM cannot hold NaN or inf
        raise AudioError(path, "audio contains NaN or infinite samples")
    if float(np.max(np.abs(y))) < SILENCE_PEAK:
        notes.append("silent (peak below -80 dBFS)")
    return Audio(np.ascontiguousarray(y), notes)


def _label(source: AudioSource) -> Path:
    if isinstance(source, (str, Path)):
        return Path(source)
    return Path(str(getattr(source, "name", "") or "<upload>"))


def _decode(source: Path | BinaryIO, label: Path) -> tuple[np.ndarray, int, bool]:
    """(samples, sample rate, whether they came from 16-bit PCM) through libsndfile.

    16-bit PCM is read as int16 and scaled once into float32: bit-identical to libsndfile's own
    float32 decoding, with no float64 pass in between.
    """
    try:
        with sf.SoundFile(str(source) if isinstance(source, Path) else source) as fh:
            file_sr = fh.samplerate
            if fh.subtype == "PCM_16":
                raw = fh.read(dtype="int16", always_2d=fh.channels > 1)
                data = np.multiply(raw, _PCM16_SCALE, dtype=np.float32)
                return data, file_sr, True
            return fh.read(dtype="float32", always_2d=fh.channels > 1), file_sr, False
    except Exception as exc:
        raise AudioError(label, _why_unreadable(source, exc)) from exc


def _why_unreadable(path: Path | BinaryIO, exc: Exception) -> str:
    """The most useful reason for a file libsndfile refused (checked only once it failed)."""
    if not isinstance(path, Path):
        try:
            empty = path.seek(0, io.SEEK_END) == 0
        except (OSError, ValueError):
            empty = False
        return "empty (0 bytes)" if empty else f"not decodable audio ({_short(exc)})"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "file does not exist"
    except OSError as err:
        return f"cannot read file ({err.strerror or err})"
    if size == 0:
        return "empty file (0 bytes)"
    return f"unreadable or corrupt audio ({_short(exc)})"


def write_wav(path: str | Path, y: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM, atomically (temp file then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), np.clip(y, -1.0, 32767 / 32768), sr, subtype="PCM_16", format="WAV")
    tmp.replace(path)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:200] if text else type(exc).__name__
