"""Plain JSON data from numbers and arrays: strict JSON has no NaN, so undefined values become null; text safe in a
spreadsheet cell."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def nan_to_none(obj: Any) -> Any:
    """Recursively replace non-finite floats by None (an undefined metric is stored as null, its reason alongside)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj


def to_plain(obj: Any) -> Any:
    """numpy scalars and arrays, tuples and non-string keys as plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula


def spreadsheet_safe(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (first character = + - @ tab CR) with a leading apostrophe."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) else value
