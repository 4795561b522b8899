"""One audio clip of a DCASE-layout dataset and the labels its name carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stethoscope.data.naming import NO_ATTRIBUTE, parse_attribute_string


@dataclass(frozen=True)
class Clip:
    path: Path
    machine: str
    section: str
    split: str  # "train" | "test" | "supplemental"
    domain: str | None  # "source" | "target" | None (eval test: hidden)
    label: str | None  # "normal" | "anomaly" | supplemental kind | None (hidden)
    index: str
    attribute_string: str = NO_ATTRIBUTE
    dataset: str = "dev"  # "dev" | "eval"
    edition: str = "2022+"
    extra: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def attributes(self) -> tuple[tuple[str, str], ...]:
        return parse_attribute_string(self.attribute_string)

    @property
    def has_attributes(self) -> bool:
        return bool(self.attributes)

    @property
    def is_anomaly(self) -> bool | None:
        return None if self.label is None else self.label == "anomaly"

    def class_name(self) -> str:
        """Auxiliary classification class (SPEC 2): machine x section x attribute string, or
        machine x section x domain when attributes are hidden."""
        tail = self.attribute_string if self.has_attributes else f"{self.domain or 'source'}"
        return f"{self.machine}|{self.section}|{tail}"
