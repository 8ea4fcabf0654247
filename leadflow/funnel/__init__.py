"""The funnel measured: each metric family of docs/report.md as SQL aggregations, one module each.

``leadflow report`` and the dashboard render the same numbers from the same code:
:func:`leadflow.funnel.report.build_report` runs every family for a :class:`Period` and a
grouping, each family one or a few aggregate queries in the database (no rows are loaded into
Python to be counted, except the SLA timers whose business hours are measured, see
:mod:`leadflow.funnel.sla`).
"""
