"""Email: templates, queueing into the outbox, the message format, transports and the channel."""
