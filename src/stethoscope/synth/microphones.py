"""Two microphones hearing one scene: channel 0 near the machine, channel 1 farther away.

The near microphone hears the machine first and loudest; the far one hears it later, weaker and
a little duller (air absorption), but stands closer to the environmental noise, which reaches the
near microphone later and weaker. The site background is diffuse: both microphones hear it at
the same level but as independent signals. Each microphone adds its own self-noise.

Levels are set against the machine at the near microphone (unit power), so the per-clip SNRs the
manifest records follow from the drawn parameters alone. Delays are fractional (a linear phase in
the frequency domain) on sources rendered a little longer than the clip (:func:`padded_length`),
so that the samples wrapped around by the circular shift fall in the part that is cut away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from stethoscope.synth import sources as S

#: head room rendered before each clip for the delays, seconds (longer than any delay drawn)
PAD_S = 0.02


def padded_length(n: int, sr: int) -> int:
    """Samples to render for an ``n``-sample clip: :data:`PAD_S` more, rounded up to a length
    whose FFT is fast (every source and every delay costs FFTs of this length)."""
    return int(scipy.fft.next_fast_len(n + int(round(PAD_S * sr)), real=True))


@dataclass(frozen=True)
class Microphones:
    """One clip's microphone geometry, drawn in the plan.

    ``machine_far_db``: the machine at the far microphone relative to the near one (negative);
    ``machine_delay_ms``: how much later it arrives there; ``air_lowpass_hz``: the corner of the
    gentle low-pass on that longer path. ``env_near_db`` and ``env_delay_ms``: the same for the
    environmental noise at the near microphone relative to the far one. ``sensor_db``: the
    self-noise of each microphone relative to the machine at the near microphone.
    """

    machine_far_db: float
    machine_delay_ms: float
    air_lowpass_hz: float
    env_near_db: float
    env_delay_ms: float
    sensor_db: float


def draw_microphones(rng: np.random.Generator) -> Microphones:
    """Per-clip geometry: the microphones are never put back in exactly the same place."""
    return Microphones(
        machine_far_db=float(rng.uniform(-20.0, -12.0)),
        machine_delay_ms=float(rng.uniform(2.0, 8.0)),
        air_lowpass_hz=float(rng.uniform(4000.0, 7000.0)),
        env_near_db=float(rng.uniform(-15.0, -10.0)),
        env_delay_ms=float(rng.uniform(0.5, 4.0)),
        sensor_db=float(rng.uniform(-50.0, -40.0)),
    )


def snrs(mic: Microphones, background_db: float, env_db: float | None) -> tuple[float, float]:
    """(near, far) SNR in dB: the machine against background, environment and self-noise.

    ``background_db``: the diffuse site background relative to the machine at the near
    microphone; ``env_db``: the environmental noise there (None: none).
    """
    bg = 10.0 ** (background_db / 10.0)
    sensor = 10.0 ** (mic.sensor_db / 10.0)
    env_near = 0.0 if env_db is None else 10.0 ** (env_db / 10.0)
    env_far = env_near * 10.0 ** (-mic.env_near_db / 10.0)
    near = -10.0 * np.log10(bg + env_near + sensor)
    far = mic.machine_far_db - 10.0 * np.log10(bg + env_far + sensor)
    return float(near), float(far)


def propagate(
    x: np.ndarray, gain_db: float, delay_s: float, sr: int, lowpass_hz: float | None = None
) -> np.ndarray:
    """``x`` attenuated, delayed (fractionally, circularly), optionally low-passed (1st order)."""
    n = x.shape[0]
    f = np.fft.rfftfreq(n, 1.0 / sr).astype(np.float32)
    spec = scipy.fft.rfft(x.astype(np.float32, copy=False))
    spec *= np.exp(np.complex64(-2j * np.pi * delay_s) * f)
    spec *= np.float32(S.db(gain_db))
    if lowpass_hz is not None:
        spec /= np.complex64(1.0) + np.complex64(1j / lowpass_hz) * f
    return scipy.fft.irfft(spec, n).astype(np.float32, copy=False)


def place(
    mic: Microphones,
    n: int,
    sr: int,
    rng: np.random.Generator,
    machine: np.ndarray | None = None,
    background: tuple[np.ndarray, np.ndarray] | None = None,
    background_db: float = 0.0,
    environment: np.ndarray | None = None,
    env_db: float = 0.0,
) -> dict[str, np.ndarray]:
    """The scene's parts at the two microphones: name -> (n, 2) float32, channel 0 near.

    ``machine`` and ``environment`` are rendered over :func:`padded_length` samples, of which the
    last ``n`` are the clip; ``machine`` has unit power. ``background`` is two independent
    unit-power clips of ``n`` samples. Parts left out (a clean clip has no noise, a noise clip no
    machine) are absent from the result; the self-noise is always there.
    """
    parts: dict[str, np.ndarray] = {}

    def cut(x: np.ndarray) -> np.ndarray:
        return x[x.shape[0] - n :]

    if machine is not None:
        far = propagate(
            machine, mic.machine_far_db, mic.machine_delay_ms / 1000.0, sr, mic.air_lowpass_hz
        )
        parts["machine"] = np.stack([cut(machine), cut(far)], axis=1)
    if background is not None:
        k = np.float32(S.db(background_db))
        parts["background"] = np.stack([background[0] * k, background[1] * k], axis=1)
    if environment is not None:
        k = np.float32(S.db(env_db - mic.env_near_db))  # env_db is its level at the near mic
        near = propagate(environment, mic.env_near_db, mic.env_delay_ms / 1000.0, sr)
        parts["environment"] = np.stack([cut(near) * k, cut(environment) * k], axis=1)
    sensor = rng.standard_normal((n, 2), dtype=np.float32)
    parts["sensor"] = sensor * np.float32(S.db(mic.sensor_db))
    return {name: np.ascontiguousarray(p, dtype=np.float32) for name, p in parts.items()}
