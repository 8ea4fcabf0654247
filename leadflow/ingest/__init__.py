"""Bringing a CRM's export in: ``leadflow import reps|leads|deals|activities FILE``.

``readers`` streams rows, ``values`` reads cells, ``mapping`` plans header -> fields,
``kinds``/``reps`` turn records into rows, ``writers`` upserts batches, ``runner`` ties them,
``import_report`` says what an import did and ``import_runs`` records it.
"""

from leadflow.ingest.import_report import ImportReport
from leadflow.ingest.runner import import_file

__all__ = ["ImportReport", "import_file"]
