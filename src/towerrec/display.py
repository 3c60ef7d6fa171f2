"""Plain-text tables for the terminal: one formatter for every table the commands print."""
from __future__ import annotations

from collections.abc import Sequence


def cell(value: object) -> str:
    """A float with 4 decimals (1 from 100 up), anything else as `str`."""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _numeric(text: str) -> bool:
    head = text.lstrip("+-")
    return text == "n/a" or (bool(head) and (head[0].isdigit() or head.startswith("<0.")))


def text_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned with two spaces; numbers right-aligned (except in the first column)."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) if i and _numeric(v) else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
              for row in cells]
    return "\n".join(lines)
