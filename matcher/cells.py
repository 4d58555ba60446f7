"""What the matcher writes into a spreadsheet cell: one sanitiser for every writer (the exports of
`matcher.io`, the nightly batch's report, the annual report, the API's workbook).

* Text never runs as a formula. A spreadsheet program opening a CSV runs a cell that starts with
  = + - @ (or a tab or carriage return before one) as a formula: CSV injection. Text written to
  CSV gets a leading apostrophe there, and reading a CSV takes one off again (`csv_unsafe`), so
  exports still import back unchanged. A value that already starts with apostrophes before such a
  character gets one more, which keeps the two exact inverses. In a workbook every text cell is
  stored as text (openpyxl would store "=…" as a formula and "#N/A" as an error).
* Characters a workbook refuses (control characters such as \\x07, pasted from other programs)
  are dropped from workbook cells: openpyxl raises on them, which failed the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # openpyxl is imported by the writers that need it (a CSV export does not)
    from openpyxl.cell.cell import Cell
    from openpyxl.worksheet.worksheet import Worksheet

#: openpyxl's own ILLEGAL_CHARACTERS_RE (tests/test_export.py checks they agree), written out so that
#: a CSV export does not import openpyxl.
ILLEGAL_CHARACTERS_RE = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")
_FORMULA_CELL = re.compile(r"^'*[=+\-@\t\r]")


def csv_safe(value: Any) -> Any:
    """`value` as a CSV cell that no spreadsheet program runs as a formula (see `csv_unsafe`)."""
    if isinstance(value, str) and _FORMULA_CELL.match(value):
        return "'" + value
    return value


def csv_unsafe(cell: str) -> str:
    """The inverse of `csv_safe` for a cell read from a CSV file."""
    if cell[:1] == "'" and _FORMULA_CELL.match(cell[1:]):
        return cell[1:]
    return cell


def csv_row(values: Iterable[Any]) -> list[Any]:
    return [csv_safe(v) for v in values]


def set_cell(cell: Cell, value: Any) -> Cell:
    """Put `value` into a workbook cell: text as text, without the characters a workbook refuses."""
    if isinstance(value, str):
        cell.value = ILLEGAL_CHARACTERS_RE.sub("", value)
        cell.data_type = "s"
    else:
        cell.value = value
    return cell


def append_row(ws: Worksheet, values: Iterable[Any]) -> None:
    """`ws.append(values)`, each value as `set_cell` puts it."""
    values = [ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v for v in values]
    ws.append(values)
    for cell in ws[ws.max_row]:
        if isinstance(cell.value, str):
            cell.data_type = "s"
