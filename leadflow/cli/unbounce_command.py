"""``leadflow unbounce``: clear a lead's hard bounce, the one explicit way to.

A lead flagged ``hard_bounced`` gets no marketing email and leaves its nurture streams
(docs/email.md, "The sender"). When its mailbox has been fixed, or the flag was wrong (before
this version a relay refusing leadflow itself flagged every recipient), it is cleared here,
with the reason in the audit, as ``leadflow resubscribe`` undoes an opt-out.
"""

from __future__ import annotations

from typing import Annotated

import typer

from leadflow.cli.context import cli_context
from leadflow.clock import SystemClock
from leadflow.errors import UserInputError


def unbounce(
    ctx: typer.Context,
    external_id: Annotated[str, typer.Argument(help="The lead's external id.")],
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="Why the address may be mailed again (the mailbox fixed, a wrong bounce); "
            "kept in the audit.",
        ),
    ],
) -> None:
    """Clear a lead's hard bounce so it may get marketing email again; the reason goes into the
    audit."""
    from leadflow.mail.hard_bounces import (
        REASON_NEEDED,
        bounce_cleared_message,
        clear_hard_bounce,
    )
    from leadflow.store.database import transaction

    if not reason.strip():
        raise UserInputError(f"--reason: {REASON_NEEDED}")
    engine = cli_context(ctx).existing_engine
    with transaction(engine) as session:
        done = clear_hard_bounce(session, external_id, SystemClock().now(), reason.strip())
    if done is None:
        raise UserInputError(f"no lead with external id {external_id!r}")
    typer.echo(bounce_cleared_message(external_id, done))
