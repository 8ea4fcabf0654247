"""Records with a stage (leads, deals): each batch's entries into a stage become history."""

from __future__ import annotations

from sqlalchemy import Connection

from leadflow.ingest.kind_writer import KindWriter
from leadflow.ingest.writers import Prepared, Written
from leadflow.store.stage_history import record_written


class RecordsStageEntries(KindWriter):
    """A writer of records with a stage (leads, deals): each batch's entries into a stage
    become ``stage_changes`` rows, in the batch's transaction."""

    def after_write(self, connection: Connection, rows: list[Prepared], written: Written) -> None:
        """Record the stage entries the batch made (new rows, changed stages), in SQL; rows
        it left unchanged made none."""
        self.after_fed_write(connection, written)

    def after_fed_write(self, connection: Connection, written: Written) -> None:
        record_written(
            connection,
            self.kind,
            written.created,
            written.changed,
            cause=self.cause,
            source=self.source,
            now=self.now,
            deal_open_stage=self.settings.stages.deal_open,
        )
