"""A setup check's result, shared by the data and model checks."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    """One setup check: its name, verdict, one-sentence `detail` and key measured `value`."""

    name: str
    passed: bool
    detail: str
    value: float | None = None



def finite_or_none(value: float) -> float | None:
    """`value`, or None when NaN/inf: results are stored as strict JSON, which has neither."""
    return value if math.isfinite(value) else None


# --- labels ------------------------------------------------------------------------------------
