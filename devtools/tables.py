"""Markdown tables for the reports and benchmarks: the one place that writes `| a | b |`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

_RULES = {"l": "---", "r": "---:"}


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]],
                   align: str = "") -> list[str]:
    """The table's lines; `align` has one letter per column, `l` (the default) or `r`."""
    if not set(align) <= _RULES.keys() or len(align) > len(header):
        raise ValueError(f"align {align!r}: one of l or r per column, at most {len(header)}")
    rules = [_RULES[a] for a in align.ljust(len(header), "l")]
    lines = [_row(header, len(header)), "|" + "|".join(rules) + "|"]
    lines += [_row(row, len(header)) for row in rows]
    return lines


def _row(cells: Sequence[object], width: int) -> str:
    if len(cells) != width:
        raise ValueError(f"{len(cells)} cells in a table of {width} columns: {cells!r}")
    # A pipe inside a cell would end it (in a code span too): escaped, it is shown.
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
