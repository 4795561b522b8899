"""Features: named extractors (log-mel, waveform), an on-disk cache, and batched extraction."""

from stethoscope.features.cache import FeatureCache, clip_identity
from stethoscope.features.extract import ExtractResult, extract
from stethoscope.features.logmel import LogMel, LogMelConfig
from stethoscope.features.registry import FEATURES, FeatureExtractor, register_feature
from stethoscope.features.waveform import Waveform, WaveformConfig

__all__ = ["FEATURES", "ExtractResult", "FeatureCache", "FeatureExtractor", "LogMel",
           "LogMelConfig", "Waveform", "WaveformConfig", "clip_identity", "extract",
           "register_feature"]
