"""The report as a file: CSV (one table, a ``section`` column first), JSON (sections of rows),
HTML (see :mod:`leadflow.funnel.html`)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from leadflow.funnel.report import Report
from leadflow.funnel.sections import Row

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet reads a cell starting so as a formula (``=HYPERLINK(...)``, ``=cmd|...``)."""


def csv_text(report: Report, sections: dict[str, list[Row]]) -> str:
    """Every section's rows under one header (the union of the columns, in order of first use),
    the section named in the first column; a column a section lacks is empty. The last four
    columns, the same on every row, say what the figures are of (:func:`period_columns`)."""
    columns: dict[str, None] = {"section": None}
    for rows in sections.values():
        for row in rows:
            columns.update(dict.fromkeys(row))
    read = period_columns(report)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*columns, *read], lineterminator="\n")
    writer.writeheader()
    for name, rows in sections.items():
        for row in rows:
            writer.writerow({"section": name, **{k: _inert(v) for k, v in row.items()}, **read})
    return out.getvalue()


def period_columns(report: Report) -> dict[str, str]:
    """``period_from``, ``period_to`` (excluded) and ``as_of``, as JSON's ``period`` has them,
    and ``generated_at`` (when the report was made, by the wall clock), as JSON has it:
    columns on every row, not a comment line above the header, which a spreadsheet shows as a
    row of data and ``csv.DictReader`` or pandas would take for the header."""
    period = report.period
    return {
        "period_from": period.start.isoformat(),
        "period_to": period.end.isoformat(),
        "as_of": period.as_of.isoformat(),
        "generated_at": report.generated_at.isoformat(),
    }


def _inert(value: Any) -> Any:
    """Text from the CRM (a source, a campaign, a rep's name) that a spreadsheet would run as a
    formula gets a leading apostrophe, as OWASP advises for CSV files; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def json_text(report: Report, sections: dict[str, list[Row]]) -> str:
    document: dict[str, Any] = {
        "period": {
            "from": report.period.start.isoformat(),
            "to": report.period.end.isoformat(),
            "by": report.period.by.value,
            # The instant what is open was measured at: the end, or now if the end is later.
            "as_of": report.period.as_of.isoformat(),
        },
        "generated_at": report.generated_at.isoformat(),
        **sections,
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def html_text(report: Report, sections: dict[str, list[Row]]) -> str:
    from leadflow.funnel.html import render_html

    return render_html(report, sections)
