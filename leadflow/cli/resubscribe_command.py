"""``leadflow resubscribe``: undo a lead's opt-out, the one explicit way to.

An opt-out sticks (docs/email.md, "Unsubscribing"): an import or a post saying
``unsubscribed: false`` does not clear it. A person who asks to be mailed again is
re-subscribed here (or by ``POST /v1/leads/{id}/resubscribe``, :mod:`leadflow.http.resubscribe`),
with the reason (their consent) in the audit.
"""

from __future__ import annotations

from typing import Annotated

import typer

from leadflow.cli.context import cli_context
from leadflow.clock import SystemClock
from leadflow.errors import UserInputError


def resubscribe(
    ctx: typer.Context,
    external_id: Annotated[str, typer.Argument(help="The lead's external id.")],
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="Why (the person's new consent: where and when they gave it); kept in the audit.",
        ),
    ],
) -> None:
    """Re-subscribe an unsubscribed lead to marketing email; the reason goes into the audit."""
    from leadflow.engine.unsubscribe import REASON_NEEDED, resubscribe_lead, resubscribed_message
    from leadflow.store.database import transaction

    if not reason.strip():
        raise UserInputError(f"--reason: {REASON_NEEDED}")
    engine = cli_context(ctx).existing_engine
    with transaction(engine) as session:
        done = resubscribe_lead(session, external_id, SystemClock().now(), reason.strip())
    if done is None:
        raise UserInputError(f"no lead with external id {external_id!r}")
    typer.echo(resubscribed_message(external_id, done))
