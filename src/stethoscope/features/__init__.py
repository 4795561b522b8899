"""Features: named extractors (log-mel, waveform), an on-disk cache, and batched extraction."""

from stethoscope.features.base import FEATURES, FeatureExtractor, register_feature
from stethoscope.features.cache import FeatureCache, clip_identity, default_cache_dir
from stethoscope.features.extract import ExtractResult, extract
from stethoscope.features.logmel import LogMel, LogMelConfig
from stethoscope.features.waveform import Waveform, WaveformConfig

__all__ = [
    "FEATURES",
    "ExtractResult",
    "FeatureCache",
    "FeatureExtractor",
    "LogMel",
    "LogMelConfig",
    "Waveform",
    "WaveformConfig",
    "clip_identity",
    "default_cache_dir",
    "extract",
    "register_feature",
]
