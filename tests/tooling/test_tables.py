"""devtools/tables.py: the one Markdown table writer of the reports and benchmarks."""

from __future__ import annotations

import pytest

from devtools.tables import markdown_row, markdown_table


def test_a_table_has_its_header_rule_and_rows_with_right_aligned_columns() -> None:
    assert markdown_table(["name", "n", "note"], [["a", 1, ""], ["b", 2.5, "x"]], "lr") == [
        "| name | n | note |", "|---|---:|---|", "| a | 1 |  |", "| b | 2.5 | x |"]


def test_a_pipe_inside_a_cell_is_escaped_so_the_row_keeps_its_columns() -> None:
    assert markdown_table(["cmd"], [["a | b"]])[2] == "| a \\| b |"


@pytest.mark.parametrize(("rows", "align"), [([["a", "b"]], ""), ([["a"]], "c"),
                                             ([["a"]], "lr")],
                         ids=["too-many-cells", "unknown-alignment", "too-many-alignments"])
def test_a_malformed_table_is_refused(rows: list[list[str]], align: str) -> None:
    with pytest.raises(ValueError):
        markdown_table(["only"], rows, align)


def test_a_row_printed_on_its_own_matches_the_tables_rows() -> None:
    assert markdown_row([1, "a|b"]) == markdown_table(["n", "s"], [[1, "a|b"]])[2]
