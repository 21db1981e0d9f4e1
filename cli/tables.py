# -*- test-case-name: tests.test_cli_units -*-
"""
Plain-text tables, as squeue and oarstat print them: a header row, columns
padded to their widest cell, no borders, no trailing spaces.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["renderTable"]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split()) or "-"


def renderTable(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "(none)") -> str:
    """
    The table as text ending in a newline. Numbers are right-aligned,
    everything else left-aligned; control characters and line breaks in a
    cell become spaces so one row stays one line. No rows: C{empty}.
    """
    if not rows:
        return empty + "\n"
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows)
        for i in range(len(headers))
    ]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *cells]:
        padded = [
            (row[i].rjust(widths[i]) if numeric[i] else row[i].ljust(widths[i]))
            for i in range(len(headers))
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines) + "\n"
