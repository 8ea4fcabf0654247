"""Bringing a CRM's export in: ``leadflow import reps|leads|deals|activities FILE``.

``readers`` streams rows, ``values`` reads cells, ``mapping`` plans header -> fields,
``kinds``/``reps`` turn records into rows, ``writers`` upserts batches, ``runner`` ties them.
"""

from leadflow.ingest.runner import ImportReport, import_file

__all__ = ["ImportReport", "import_file"]
