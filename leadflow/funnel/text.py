"""The report on the terminal: one rich table per section, figures rounded for people."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.report import Report
from leadflow.funnel.sections import Row

if TYPE_CHECKING:
    from rich.console import Console

TITLES = {
    "stage_entries": "Entries into each stage (period)",
    "deal_stage_entries": "Deals entering each stage (period)",
    "conversion": "Conversion: cohort (leads entering A in the period, reaching B by its end) "
    "and period (entries B / entries A)",
    "requalified": "Recycled leads re-qualified (cohort: recycled in the period, MQL again by "
    "its end)",
    "time_in_stage": "Time in stage, days (stays ended in the period; open ones apart, with "
    "their median age)",
    "pipeline": "Pipeline (deals closed in the period; open at its end)",
    "pipeline_by_product": "Pipeline by product",
    "open_value_by_stage": "Open value by stage at the period's end",
    "sla": "SLA compliance (timers started in the period, ended by its end)",
    "attribution": "Attribution of MQLs and won deals",
    "weekly_conversion": "Period conversion by week",
}


CONVERSION_SECTIONS = ("conversion", "requalified", "weekly_conversion")


def left_out_note(count: int) -> str:
    """What a table says of the conversion pairs it leaves out."""
    pairs = "1 pair" if count == 1 else f"{count:,} pairs"
    return (
        f"{pairs} with no entry into either stage in the period "
        f"{'is' if count == 1 else 'are'} not shown (--format csv and json list every pair)."
    )


OVER_ONE = (
    "A period rate above 100 % counts more entries into the later stage than into the earlier "
    "one in the period: leads that entered the earlier stage before it, or an import that set "
    "stages without their times (each lead entering its stage at the import)."
)


def for_reading(report: Report, sections: dict[str, list[Row]]) -> dict[str, list[Row]]:
    """The sections a person reads (the terminal, the HTML file): a report grouped by product
    has its pipeline by product already, so the second table of the same rows is left out.
    CSV and JSON keep both, so that their sections are the same whatever ``--by``."""
    if report.period.by is not Grouping.product:
        return sections
    return {name: rows for name, rows in sections.items() if name != "pipeline_by_product"}


def for_people(name: str, rows: list[Row]) -> tuple[list[Row], list[str]]:
    """The rows a person reads of a section, and the notes under its table: a conversion with
    no entry on either side (base and converted 0) says nothing, and a grouped report has one
    per group, stage pair and week, so it is left out and counted; a period rate above 1 is
    explained. CSV and JSON keep every row."""
    if name not in CONVERSION_SECTIONS:
        return rows, []
    kept = [row for row in rows if row.get("base") or row.get("converted")]
    notes = [left_out_note(len(rows) - len(kept))] if len(kept) < len(rows) else []
    if any(row.get("kind") == "period" and (row.get("rate") or 0) > 1 for row in kept):
        notes.append(OVER_ONE)
    return kept, notes


def shown(value: Any, column: str) -> str:
    """A value as people read it (docs/report.md, Output): rates as percentages to one decimal
    (``63.2%``), counts whole and other decimals to two places, both with thousands separators,
    and whole attributed conversions as the counts they are (first and last touch credit whole
    ones; a linear share keeps its decimals)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if column.endswith("rate"):
            return f"{value:.1%}"
        if column == "conversions" and value.is_integer():
            return f"{int(value):,}"
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_tables(report: Report, sections: dict[str, list[Row]], output: Path | None) -> None:
    from rich.console import Console

    # Markup and highlighting off, as every command's console: CRM names are data, not markup.
    if output is not None:
        with output.open("w", encoding="utf-8") as handle:  # closed on a failed write too
            _print_tables(
                Console(file=handle, markup=False, highlight=False, width=UNWRAPPED),
                report,
                sections,
            )
        return
    console = Console(markup=False, highlight=False)
    if not console.is_terminal:
        # Piped (to a file, grep, a pager): no screen to fit, so no cell is wrapped.
        console = Console(markup=False, highlight=False, width=UNWRAPPED)
    elif console.width < MIN_WIDTH:
        console = Console(markup=False, highlight=False, width=MIN_WIDTH)
    _print_tables(console, report, sections)


def as_of_text(period: Period) -> str:
    """How a heading says the report was read before the period's end (it includes today, or
    ``--now`` is earlier): nothing after that instant is counted, what is open is open then."""
    return (
        f"As of {period.as_of.isoformat()} (the period ends later): nothing after it is "
        "counted; open stays, deals and SLA timers are those open then."
    )


def read_text(report: Report) -> str:
    """Both instants of a report: the one the store was read as of (the period's end, or now:
    ``--now``) and the wall-clock time it was made at, which ``--now`` does not move."""
    return f"as of {report.period.as_of.isoformat()}, generated {report.generated_at.isoformat()}"


def _print_tables(console: Console, report: Report, sections: dict[str, list[Row]]) -> None:
    from rich.table import Table

    period = report.period
    console.print(
        f"Funnel report {period.start.isoformat()} to {period.end.isoformat()} (end excluded), "
        f"{period.grouping_text()}"
    )
    console.print(f"Figures {read_text(report)}.")
    if period.ends_later:
        console.print(as_of_text(period))
    for name, every_row in for_reading(report, sections).items():
        table = Table(title=TITLES.get(name, name), title_justify="left")
        rows, notes = for_people(name, every_row)
        if not rows:
            console.print(f"{TITLES.get(name, name)}: nothing in the period")
            continue
        columns = list(rows[0])
        for column in columns:
            table.add_column(
                column.replace("_", " "), justify="left" if column in TEXT_COLUMNS else "right"
            )
        for row in rows:
            table.add_row(*(shown(row.get(column), column) for column in columns))
        console.print(table)
        for note in notes:
            console.print(note, soft_wrap=True)


MIN_WIDTH = 140
"""Tables stay unwrapped in a narrow terminal."""

UNWRAPPED = 100_000
"""The width tables are laid out in when written to a file or a pipe: wider than any table, so
no cell wraps (a rep "Daniell Hammack" over two lines broke every line-based tool); a table is
only as wide as its columns, and a note is one line."""

TEXT_COLUMNS = {
    "group",
    "stage",
    "kind",
    "from_stage",
    "to_stage",
    "subject",
    "by",
    "model",
    "conversion",
    "section",
}
"""The columns that name things (left-aligned); every other column is a figure (right-aligned,
as a spreadsheet shows numbers), in the terminal, the HTML file and the dashboard alike."""
