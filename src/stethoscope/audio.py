"""Audio reading: every clip enters the toolkit as 16 kHz mono float32 through :func:`read_audio`.

Reading sits behind one function so that a bad file (missing, empty, truncated, not audio, too
short) always surfaces as an :class:`AudioError` naming the file, whatever libsndfile raised
underneath, and so that what was done to a usable but unusual file (mixed down from several
channels, resampled, silent) comes back as notes the pipeline reports. Decoding is soundfile's
(libsndfile) alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from stethoscope import SAMPLE_RATE
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
CHANNELS = ("near", "far", "mix", "both")

#: Peak amplitude below which a clip counts as silent (-80 dBFS): a dead or unplugged microphone.
SILENCE_PEAK = 1e-4


class AudioNoteWarning(UserWarning):
    """A usable clip that needed something done to it, or looks wrong (see :class:`Audio`)."""


class ResampleWarning(AudioNoteWarning):
    """A clip was not at the expected sample rate and was resampled."""


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
    path: str | Path,
    sr: int = SAMPLE_RATE,
    min_samples: int = MIN_SAMPLES,
    channel: str = "mix",
) -> Audio:
    """Read a clip as float32 at ``sr`` Hz (int16 / 32768, as librosa.load does).

    ``channel`` says what to take from a multi-channel file (DCASE2026: channel 0 a microphone
    near the machine, channel 1 one farther away): "near" channel 0, "far" channel 1, "mix" their
    mean, "both" the first two as a (2, samples) array. A mono file is returned as it is, except
    that "both" refuses it. What was done is noted, as are resampling (librosa) and a silent clip
    (peak below -80 dBFS).
    """
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, not {channel!r}")
    path = Path(path)
    data, file_sr, integer_pcm = _decode(path)
    if data.shape[0] == 0:
        raise AudioError(path, "audio has no samples")
    notes = []
    n_ch = 1 if data.ndim == 1 else data.shape[1]
    if channel == "both" and n_ch < 2:
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


def _decode(path: Path) -> tuple[np.ndarray, int, bool]:
    """(samples, sample rate, whether they came from 16-bit PCM) through libsndfile.

    16-bit PCM is read as int16 and scaled once into float32: bit-identical to libsndfile's own
    float32 decoding, with no float64 pass in between.
    """
    try:
        with sf.SoundFile(str(path)) as fh:
            file_sr = fh.samplerate
            if fh.subtype == "PCM_16":
                raw = fh.read(dtype="int16", always_2d=fh.channels > 1)
                data = np.multiply(raw, _PCM16_SCALE, dtype=np.float32)
                return data, file_sr, True
            return fh.read(dtype="float32", always_2d=fh.channels > 1), file_sr, False
    except Exception as exc:
        raise AudioError(path, _why_unreadable(path, exc)) from exc


def _why_unreadable(path: Path, exc: Exception) -> str:
    """The most useful reason for a file libsndfile refused (checked only once it failed)."""
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
