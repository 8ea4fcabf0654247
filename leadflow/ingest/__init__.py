"""Bringing a CRM's export in: ``leadflow import reps|leads|deals|activities FILE``.

``readers`` streams rows, ``values`` reads cells (``number_cells`` and ``date_cells`` their
numbers and dates, ``json_values`` what a JSON value may hold), ``mapping`` plans header ->
fields, ``kind_writer`` is what turns a record into a row (key, checked values, hash) and
``lead_rows``/``deal_rows``/``activity_rows``/``reps`` each kind's columns and checks,
``writers`` upserts batches, ``runner`` ties them, ``import_report`` says what an import did
and ``import_runs`` records it.
"""

from leadflow.ingest.import_report import ImportReport
from leadflow.ingest.runner import ImportInterruptedError, import_file

__all__ = ["ImportInterruptedError", "ImportReport", "import_file"]
