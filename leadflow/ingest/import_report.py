"""What one import did: its counts, the rows it rejected (by line and field), the notes on
what it read differently from the file as written, and the summary line ``leadflow import``
prints."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from leadflow.errors import Problem
from leadflow.ingest.writers import Counts, Superseded
from leadflow.settings import ImportKind

MAX_KEPT_PROBLEMS = 1000


@dataclass
class ImportReport:
    """What one import did. ``problems`` keeps the first :data:`MAX_KEPT_PROBLEMS` rejections."""

    kind: ImportKind
    file: str
    counts: Counts = field(default_factory=Counts)
    rejected: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    """What was read differently from the file as written (an ignored unnamed column)."""
    rolled_back: bool = False
    superseded: int = 0
    """Rows not written because a later row of the file has their id (anywhere in the file:
    :mod:`leadflow.ingest.repeats`)."""
    unlisted: int = 0
    """Rejected rows whose problems are not in ``problems`` (beyond :data:`MAX_KEPT_PROBLEMS`)."""
    run_id: int | None = None
    """The run's row in ``import_runs`` once the file was accepted and the run started."""
    spaced_pools: dict[str, int] = field(default_factory=dict)
    """A reps import's pool names with a space or a comma in them, each with the first line
    naming it: ``inbound west`` may be two pools written without the ``;`` between them (the
    CLI, which knows the rules, notes those no rule routes to)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Field -> the file's column filling it, where a mapping (or a header written as people
    write it) named it otherwise: a problem names the column the user can find in the file."""
    _committed: _Committed | None = field(default=None, init=False, repr=False, compare=False)

    def mark_committed(self) -> None:
        """What the report says now is about committed work only (no batch is open, none of
        its rows is read): where :meth:`back_to_committed` takes it back to."""
        self._committed = _Committed(
            replace(self.counts),
            self.rejected,
            self.superseded,
            self.unlisted,
            len(self.problems),
            len(self.notes),
        )

    def back_to_committed(self) -> None:
        """Forget what the report says of rows no commit kept (an interrupted import's batch
        rolled back, or read and never written): each count, each rejection and note listed,
        is then of the committed batches only. Nothing when nothing was marked."""
        mark = self._committed
        if mark is None:
            return
        self.counts = replace(mark.counts)
        self.rejected, self.superseded, self.unlisted = (
            mark.rejected,
            mark.superseded,
            mark.unlisted,
        )
        del self.problems[mark.problems :]
        del self.notes[mark.notes :]

    @property
    def summary(self) -> str:
        c = self.counts
        # An activity is an event, not a record that evolves: one imported again, or repeated
        # in the file, is the same event already stored (not duplicated), not "unchanged".
        same = "already present" if self.kind == "activities" else "unchanged"
        counted = (
            f"inserted {c.inserted}, updated {c.updated}, "
            f"{same} {c.unchanged}, rejected {self.rejected}"
        )
        return counted + (f", superseded {self.superseded}" if self.superseded else "")

    def supersede(self, rows: list[Superseded], same_content: bool = False) -> None:
        """Rows a later row of their id replaced, each noted at the later row's line."""
        self.superseded += len(rows)
        for earlier, later, key in rows:
            if len(self.notes) >= MAX_KEPT_PROBLEMS:
                break
            if same_content:  # activities without ids: the id is made from the content
                note = f"the same activity as line {earlier}: imported once"
            else:
                note = (
                    f"external_id: {key!r} is also on line {earlier}; the later row wins "
                    f"(line {earlier} is not imported)"
                )
            self.notes.append(Problem(self.file, later, 0, self._in_file_terms(note)))

    def note(self, line: int, message: str) -> None:
        """A row written otherwise than it says (``field: reason``), noted at its line."""
        if len(self.notes) < MAX_KEPT_PROBLEMS:
            self.notes.append(Problem(self.file, line, 0, self._in_file_terms(message)))

    def reject(self, line: int, *messages: str) -> None:
        """One rejected row, with a message per bad field."""
        self.rejected += 1
        if len(self.problems) < MAX_KEPT_PROBLEMS:
            self.problems += [
                Problem(self.file, line, 0, self._in_file_terms(message)) for message in messages
            ]
        else:
            self.unlisted += 1

    def _in_file_terms(self, message: str) -> str:
        """``field: reason`` as ``column (field): reason`` when the file's column is named
        otherwise (``closed_at`` read from ``close_date`` was not found in the file)."""
        name, colon, reason = message.partition(": ")
        column = self.columns.get(name) if colon else None
        return message if column is None else f"{column} ({name}): {reason}"


@dataclass(frozen=True)
class _Committed:
    """A report's counts, and how many problems and notes it listed, at a commit."""

    counts: Counts
    rejected: int
    superseded: int
    unlisted: int
    problems: int
    notes: int


def same_content(kind: ImportKind, superseded: list[Superseded]) -> bool:
    """Whether the superseded rows' ids were made from their content (activities without ids)."""
    return kind == "activities" and all(key.startswith("auto-") for _e, _l, key in superseded)
