"""File-name grammar of the DCASE Task 2 editions.

The DCASE names carry the labels we train and evaluate with, so parsing them is the one place where
a typo in a dataset turns into wrong metrics: anything off the scheme raises ``NamingError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stethoscope.errors import StethoscopeError

NO_ATTRIBUTE = "noAttribute"

# 2021-2025 development names (2023-2025 always carry an attribute part, 2021 may not).
_DEV = re.compile(
    r"^section_(?P<section>\d{2})_(?P<domain>source|target)_(?P<split>train|test)_"
    r"(?P<label>normal|anomaly)_(?P<index>\d{4})(?:_(?P<attrs>.+))?\.wav$"
)
# Evaluation test names: labels and domains hidden.
_EVAL = re.compile(r"^section_(?P<section>\d{2})_(?:test_)?(?P<index>\d{4})\.wav$")
# DCASE2025 supplemental clips (clean machine sound or noise only); domain and attributes optional.
_SUPPLEMENTAL = re.compile(
    r"^section_(?P<section>\d{2})_(?:(?P<domain>source|target)_)?supplemental_"
    r"(?P<label>[A-Za-z]+)_(?P<index>\d{4})(?:_(?P<attrs>.+))?\.wav$"
)
# DCASE2020 names: the machine ID plays the part of the section.
_DCASE2020 = re.compile(r"^(?P<label>normal|anomaly)_id_(?P<section>\d{2})_(?P<index>\d{8})\.wav$")


class NamingError(StethoscopeError, ValueError):
    """A file name that follows none of the DCASE naming schemes."""


@dataclass(frozen=True)
class ParsedName:
    section: str
    domain: str | None
    split: str | None
    label: str | None
    index: str
    attribute_string: str
    edition: str

    @property
    def attributes(self) -> tuple[tuple[str, str], ...]:
        return parse_attribute_string(self.attribute_string)


def parse_attribute_string(attrs: str) -> tuple[tuple[str, str], ...]:
    """``car_C2_spd_31V_mic_1`` -> (("car","C2"),("spd","31V"),("mic","1")); hidden -> ()."""
    if not attrs or attrs == NO_ATTRIBUTE:
        return ()
    tokens = attrs.split("_")
    if len(tokens) % 2:
        # odd token count: keep the tail as one value rather than guess a split
        tokens = tokens[:-2] + ["_".join(tokens[-2:])] if len(tokens) > 1 else tokens + [""]
    return tuple((tokens[i], tokens[i + 1]) for i in range(0, len(tokens) - 1, 2))


def parse_name(name: str) -> ParsedName:
    """Parse a clip's file name (no folder) into its labels."""
    if m := _DEV.match(name):
        return ParsedName(
            section=m["section"],
            domain=m["domain"],
            split=m["split"],
            label=m["label"],
            index=m["index"],
            attribute_string=m["attrs"] or NO_ATTRIBUTE,
            edition="2021+" if m["attrs"] is None else "2022+",
        )
    if m := _EVAL.match(name):
        return ParsedName(
            section=m["section"],
            domain=None,
            split="test",
            label=None,
            index=m["index"],
            attribute_string="",
            edition="eval",
        )
    if m := _SUPPLEMENTAL.match(name):
        return ParsedName(
            section=m["section"],
            domain=m["domain"],
            split="supplemental",
            label=m["label"],
            index=m["index"],
            attribute_string=m["attrs"] or NO_ATTRIBUTE,
            edition="2025",
        )
    if m := _DCASE2020.match(name):
        return ParsedName(
            section=m["section"],
            domain="source",
            split=None,
            label=m["label"],
            index=m["index"],
            attribute_string=f"id_{m['section']}",
            edition="2020",
        )
    raise NamingError(
        f"{name}: does not follow the DCASE naming scheme "
        "(expected e.g. section_00_source_train_normal_0000_<attributes>.wav or section_00_0000.wav)"
    )


def dev_name(section: str, domain: str, split: str, label: str, index: int, attrs: str) -> str:
    """The inverse of :func:`parse_name` for development names."""
    return f"section_{section}_{domain}_{split}_{label}_{index:04d}_{attrs or NO_ATTRIBUTE}.wav"
