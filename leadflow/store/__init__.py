"""The state store: tables, engine, migrations."""
