"""The engine: evaluates rules inside the database and applies their actions atomically."""
