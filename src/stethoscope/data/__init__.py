"""Data layer: the clips of a DCASE-layout dataset, their labels and their audio."""

from stethoscope.data.catalog import Catalog, DataError, DataIssue
from stethoscope.data.clip import Clip
from stethoscope.data.naming import NamingError, parse_name

__all__ = ["Catalog", "Clip", "DataError", "DataIssue", "NamingError", "parse_name"]
