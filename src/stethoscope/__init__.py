"""Stethoscope: unsupervised anomalous sound detection for machine condition monitoring."""

__version__ = "0.1.0"

SAMPLE_RATE = 16_000
