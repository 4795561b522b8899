"""Which microphone a study listens to.

DCASE2026 records every clip with two microphones: channel 0 near the machine, channel 1 farther
away, hearing more environmental noise and less machine. A study has one channel setting:

* ``near`` / ``far``: that channel alone; ``mix``: the mean of the channels (what reading a
  multi-channel file as mono does); ``both``: the two channels kept for the front ends that take
  them (a single-channel front end then hears the near channel); ``near-anc``: the near channel
  with what the far one predicts of it cancelled (:mod:`stethoscope.dsp.noise_cancel`), which
  takes the environmental noise both microphones hear out of every system's input;
* ``auto`` (the default): ``near`` for two-channel data, as the official DCASE2026 baseline feeds
  its autoencoder channel 0, and ``mix`` for mono data (where every setting gives the same samples).

The setting is resolved once per study from its training clips, recorded in run folders and saved
models, and part of every feature extractor's cache key.
"""

from __future__ import annotations

from collections.abc import Sequence

import soundfile as sf

from stethoscope.data.clip import Clip
from stethoscope.errors import ConfigError

SETTINGS = ("auto", "near", "far", "mix", "both", "near-anc")


def n_channels(clip: Clip) -> int:
    """Channels of a clip's file, from its header (1 when it cannot be read: reported elsewhere)."""
    try:
        return int(sf.info(str(clip.path)).channels)
    except Exception:  # noqa: BLE001 - unreadable files are named by the feature extraction
        return 1


def resolve_channel(setting: str, clips: Sequence[Clip], sample: int = 8) -> str:
    """The concrete channel of a study: ``setting``, or for "auto" what the data calls for
    (judged from the headers of a few clips)."""
    if setting not in SETTINGS:
        raise ConfigError(f"channel must be one of {', '.join(SETTINGS)}, not {setting!r}")
    if setting != "auto":
        return setting
    step = max(1, len(clips) // sample)
    multi = any(n_channels(c) >= 2 for c in list(clips)[::step][:sample])
    return "near" if multi else "mix"


def takes_two_channels(frontend_params: dict) -> bool:
    """Whether a front end with these parameters takes both microphones (``two_channel: true``)."""
    return bool(frontend_params.get("two_channel", False))


def frontend_channel(study_channel: str, frontend_params: dict) -> str:
    """What a front end reads: both channels when it takes two, the near one with the far one
    cancelled when it asks for that (``noise_cancel: true``), else the study's one channel (the
    near one when the study keeps both)."""
    cancelled = bool(frontend_params.get("noise_cancel", False))
    if takes_two_channels(frontend_params):
        if cancelled:
            raise ConfigError("noise_cancel reads the near channel alone, not with two_channel")
        return "both"
    if cancelled:
        return "near-anc"
    return "near" if study_channel == "both" else study_channel
