"""Tolerant readers for values in parsed JSON bodies, shared by the adapters.

A field of the wrong type reads as absent (``None``, ``[]`` or ``{}``) rather than raising:
clients send variants, and the adapters that must reject a body check its structure themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def number_or_none(value: object) -> float | None:
    """An int or float as it is (JSON ``true`` is not a number); anything else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def list_or_empty(value: object) -> list[Any]:
    """``value`` if it is a list, else ``[]``."""
    return value if isinstance(value, list) else []


def mapping_or_empty(value: object) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else ``{}``."""
    if type(value) is dict:  # what JSON parsers give: skips the ABC check (~1 µs) on the hot path
        return value
    return value if isinstance(value, Mapping) else {}
