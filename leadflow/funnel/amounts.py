"""The report's guard against deal amounts too large to add up.

Amounts above :data:`~leadflow.store.models.MAX_AMOUNT` are refused at import and over HTTP,
but a store written before that check may hold some: two won deals of 1e308 made the won
amount's sum too large for a float and the report ended in an ``OverflowError`` traceback on
either store. The report names those deals instead, before it adds anything up.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from leadflow.errors import AmountTooLargeError
from leadflow.store.models import AMOUNT_LIMIT, MAX_AMOUNT
from leadflow.store.tables import DEALS

SHOWN = 5
"""How many of the deals the message names; the count says how many there are."""


def refuse_absurd_amounts(connection: Connection) -> None:
    """Raise :class:`AmountTooLargeError` naming the deals whose amount is above the maximum."""
    too_large = DEALS.c.amount > MAX_AMOUNT
    count = connection.execute(select(func.count()).where(too_large)).scalar_one()
    if not count:
        return
    names = connection.execute(
        select(DEALS.c.external_id).where(too_large).order_by(DEALS.c.external_id).limit(SHOWN)
    ).scalars()
    shown = ", ".join(names) + (f" and {count - SHOWN} more" if count > SHOWN else "")
    raise AmountTooLargeError(
        f"{count} deal(s) hold an amount above {AMOUNT_LIMIT}, the most a deal's amount may "
        f"be, stored before leadflow refused such amounts: {shown}; the report's sums of them "
        "are no numbers. Correct their amounts (leadflow import, or POST /v1/deals) and run "
        "the report again"
    )
