"""Build hook for the optional C kernels; everything else about the package is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and the features fall back to
the pure-torch path (same numbers, slower on CPU; see stethoscope/features/native.py).
"""

import sys

from setuptools import Extension, setup

args = ["/O2"] if sys.platform == "win32" else ["-O3"]
setup(ext_modules=[Extension("stethoscope.features._native", ["src/stethoscope/features/_native.c"],
                             extra_compile_args=args, optional=True)])
