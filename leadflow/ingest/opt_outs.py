"""A lead's opt-out as an import row or a posted record meets it, found before a batch is written.

An opt-out sticks (docs/email.md, "Unsubscribing"): the write keeps a stored lead's
``unsubscribed`` set whatever a row says (:meth:`LeadWriter.shape`). Around that, a batch's rows
are surveyed against the stored flags, before the write, for three things:

- a row saying ``false`` of a lead stored unsubscribed is noted (the import's stderr, the API's
  ``warnings``), naming the opt-out the audit holds;
- a row saying ``true`` of a lead stored subscribed is a consent change: once the write has
  changed the lead, it gets an ``unsubscribed`` audit row naming the file and line (``via:
  import``) or the API (``via: api``), as leadflow's own unsubscribe page writes one (``via:
  one_click``); a lead created unsubscribed changed no flag and gets none;
- a row of a lead stored unsubscribed whose values hash to the stored row's once its
  ``unsubscribed`` is the other value changes nothing (the flag stays set either way): it is
  given the stored hash, so the write counts it unchanged and writes nothing, as it does a row
  re-sent as it was.

Two lookups per batch, each a few thousand keys a statement (:func:`rows_of_keys`): the rows
saying ``false`` among the stored unsubscribed leads (few rows come back), and the stored rows
of the keys saying ``true``. The audit rows go in with one ``INSERT`` per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, insert, select

from leadflow.ingest.names import quoted
from leadflow.ingest.references import rows_of_keys
from leadflow.store.audit_trail import audit_row
from leadflow.store.id_ranges import among, chunks
from leadflow.store.tables import AUDIT

ACTION = "unsubscribed"
"""The audit's action for every opt-out, whichever way it came (its ``via`` says which)."""


class Said(NamedTuple):
    """A row's line (a body's index), key, ``unsubscribed`` value and hash."""

    line: int
    key: str
    unsubscribed: bool
    source_hash: str


@dataclass
class BatchOptOuts:
    """What a batch's rows do to the stored opt-outs, found before it is written."""

    opting_out: dict[int, int] = field(default_factory=dict)
    """Lead id -> line of each row saying ``true`` of a lead stored subscribed."""
    kept: list[tuple[int, str, int]] = field(default_factory=list)
    """(line, key, lead id) of each row saying ``false`` of a lead stored unsubscribed."""
    unchanged: dict[int, str] = field(default_factory=dict)
    """Position in the batch -> the stored hash, of each row that changes nothing."""


def survey(
    connection: Connection,
    rows: Sequence[Said],
    values: Callable[[int], tuple[Any, ...]],
    flipped_hash: Callable[[tuple[Any, ...]], str],
) -> BatchOptOuts:
    """The batch's :class:`BatchOptOuts`. ``values(i)`` are the column values of the ``i``-th
    row, ``flipped_hash`` the hash of such values with ``unsubscribed`` the other way."""
    found = BatchOptOuts()
    said_no = [row.key for row in rows if not row.unsubscribed]
    said_yes = [row.key for row in rows if row.unsubscribed]
    # key -> (lead id, stored hash) of the leads stored unsubscribed
    stored: dict[str, tuple[int, str | None]] = {}
    if said_no:
        columns = "SELECT external_id, id, source_hash FROM leads"
        for key, lead_id, stored_hash in rows_of_keys(connection, columns, said_no, "unsubscribed"):
            stored[key] = (lead_id, stored_hash)
    subscribed: dict[str, int] = {}
    if said_yes:
        columns = "SELECT external_id, id, unsubscribed, source_hash FROM leads"
        for key, lead_id, flag, stored_hash in rows_of_keys(connection, columns, said_yes):
            if flag:
                stored[key] = (lead_id, stored_hash)
            else:
                subscribed[key] = lead_id
    for at, row in enumerate(rows):
        if row.key in subscribed:
            found.opting_out[subscribed[row.key]] = row.line
            continue
        kept = stored.get(row.key)
        if kept is None:
            continue
        lead_id, stored_hash = kept
        if not row.unsubscribed:
            found.kept.append((row.line, row.key, lead_id))
        # Hashed again only for the few rows of leads stored unsubscribed whose hash differs:
        # the row's values are rebuilt for it (a reading process's rows are the driver's).
        if (
            stored_hash is not None
            and stored_hash != row.source_hash
            and flipped_hash(values(at)) == stored_hash
        ):
            found.unchanged[at] = stored_hash
    return found


def record_opt_outs(
    connection: Connection,
    opting_out: Mapping[int, int],
    changed: Sequence[int],
    *,
    cause: str,
    source: str | None,
    now: datetime,
) -> None:
    """An ``unsubscribed`` audit row for each lead of ``opting_out`` the write ``changed`` (its
    flag went from false to true), in file order, in one statement."""
    lines = sorted((opting_out[lead_id], lead_id) for lead_id in changed if lead_id in opting_out)
    if not lines:
        return
    rows = [
        audit_row(
            at=now,
            source=cause,
            action=ACTION,
            lead_id=lead_id,
            params=_params(cause, source, line),
        )
        for line, lead_id in lines
    ]
    connection.execute(insert(AUDIT), rows)


def _params(cause: str, source: str | None, line: int) -> dict[str, Any]:
    if cause == "import":
        return {"via": "import", "file": source, "line": line}
    return {"via": cause}


def kept_notes(
    connection: Connection, kept: Sequence[tuple[int, str, int]]
) -> list[tuple[int, str]]:
    """(line, reason) of each row saying ``false`` of a lead that stays unsubscribed, naming
    the opt-out the audit holds for it."""
    if not kept:
        return []
    opt_outs = _recorded_opt_outs(connection, sorted({lead_id for _l, _k, lead_id in kept}))
    return [(line, _kept_note(key, opt_outs.get(lead_id))) for line, key, lead_id in kept]


def _recorded_opt_outs(connection: Connection, lead_ids: Sequence[int]) -> dict[int, str]:
    """Lead id -> how and when its last recorded opt-out (its latest ``unsubscribed`` audit
    row) came, said as the note says it, for the leads that have one."""
    found: dict[int, str] = {}
    for chunk in chunks(lead_ids):
        rows = connection.execute(
            select(AUDIT.c.lead_id, AUDIT.c.at, AUDIT.c.params)
            .where(AUDIT.c.action == ACTION, among(AUDIT.c.lead_id, chunk))
            .order_by(AUDIT.c.id)
        )
        for lead_id, at, params in rows:
            found[lead_id] = _how(params or {}, at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return found


def _how(params: Mapping[str, Any], at: str) -> str:
    via = params.get("via", "unsubscribe")
    if via == "import":
        return f"was unsubscribed by an import ({params.get('file')}:{params.get('line')} at {at})"
    if via == "api":
        return f"was unsubscribed by a post to /v1/leads at {at}"
    return f"unsubscribed through leadflow ({via} at {at})"


def _kept_note(key: str, how: str | None) -> str:
    how = how or "was unsubscribed by an earlier import or post"
    return (
        f"false ignored: lead {quoted(key)} {how} and stays unsubscribed (an opt-out sticks); "
        f"mark it unsubscribed in the CRM, or if the person asked to be mailed again run "
        f"`leadflow resubscribe {key}`"
    )
