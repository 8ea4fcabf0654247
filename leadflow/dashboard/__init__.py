"""The web dashboard the daemon serves under ``/ui/`` (``routes.dashboard_routes``): a login,
the funnel, the rules, the SLA board, each lead's timeline, the outbox and a search. See
``docs/dashboard.md``."""
