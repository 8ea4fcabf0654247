"""Email: templates, the transactional outbox, transports and the sender that drains it."""
