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
    lines = [markdown_row(header), "|" + "|".join(rules) + "|"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"{len(row)} cells in a table of {len(header)} columns: {row!r}")
        lines.append(markdown_row(row))
    return lines


def markdown_row(cells: Sequence[object]) -> str:
    """One row, for a table printed as its rows come (its header: `markdown_table(h, [])`)."""
    # A pipe inside a cell would end it (in a code span too): escaped, it is shown.
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
