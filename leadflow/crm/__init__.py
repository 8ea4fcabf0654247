"""Back to the CRM: the changes leadflow makes, queued in the outbox and posted as webhooks.

``updates`` queues a change (the engine's side), ``channel`` and ``webhook`` post it (the
sender's side, with httpx); importing one does not load the other.
"""
