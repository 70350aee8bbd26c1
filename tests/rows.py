"""Row-for-row comparison of replay records across passes.

Steps, answers, flags and counts must be identical; float fields (PRM values) may differ in their
last bits when the PRM scores a prefix in a differently composed batch, so they compare to `tol`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol
    return a == b


def row_differences(rows: Sequence[Any], expected: Sequence[Any], tol: float = 1e-4) -> list[str]:
    """Human-readable differences between two record lists (empty when they match)."""
    if len(rows) != len(expected):
        return [f"{len(rows)} rows, expected {len(expected)}"]
    out = []
    for i, (r, e) in enumerate(zip(rows, expected, strict=True)):
        for f in dataclasses.fields(r):
            a, b = getattr(r, f.name), getattr(e, f.name)
            if not _close(a, b, tol):
                out.append(f"row {i} ({getattr(e, 'question_id', '?')}): {f.name} = {a!r}, expected {b!r}")
    return out


def assert_same_rows(rows: Sequence[Any], expected: Sequence[Any], tol: float = 1e-4) -> None:
    diffs = row_differences(rows, expected, tol)
    assert not diffs, "\n".join(diffs[:20])
