"""The transactional outbox: rows written with the change that causes them, delivered later.

:mod:`~leadflow.outbox.store` is the table (write, claim, record, requeue, show),
:mod:`~leadflow.outbox.delivery` the sender that drains it, and :mod:`~leadflow.outbox.channel`
what a channel (email, CRM webhooks) must provide. Nothing here imports mail, crm or the engine:
they import the outbox.
"""
