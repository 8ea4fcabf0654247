"""What every command needs, built lazily once: settings, the store (migrated for a command
that writes it, refused when not current for one that only reads).

Logging is configured here, when the settings load. A command that renders for a person
(``demo``'s progress bar, ``simulate``'s table) asks for :meth:`CliContext.render_for_person`
first: on a terminal its info events (``rule_evaluated`` for each rule at each step) would
interleave with what it draws, so the log floor is raised to ``warning`` there, unless the
person asked for them with ``--verbose`` or ``log.level: debug``. Off a terminal (a pipe, a
file, cron) nothing changes: the log lines go to stderr as configured; except for ``demo``,
which is quiet whatever its output unless ``--verbose``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from leadflow.config import LoadedSettings
    from leadflow.settings import Settings


@dataclass
class CliContext:
    """Holds the ``--config`` choice and caches what was built from it."""

    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    quiet_logs: bool = False
    """Raise the log floor to ``warning`` (a person watches a rendering command on a terminal)."""
    _loaded: LoadedSettings | None = None
    _logging: bool = False
    _engine: Engine | None = None

    def render_for_person(self, *, verbose: bool, even_off_a_terminal: bool = False) -> None:
        """Call before the settings load: keep info events out of what the command draws on a
        terminal, unless ``verbose``; ``even_off_a_terminal``: piped too (``demo``, a show
        whose 240 log lines before its summary told nobody anything)."""
        on_terminal = sys.stdout.isatty() and sys.stderr.isatty()
        self.quiet_logs = not verbose and (on_terminal or even_off_a_terminal)

    @property
    def loaded(self) -> LoadedSettings:
        """The settings, with logging configured from them."""
        loaded = self.loaded_without_logging
        if not self._logging:
            from leadflow.logs import configure_logging  # structlog loads here

            log = loaded.settings.log
            quiet = self.quiet_logs and log.level == "info"  # debug was asked for explicitly
            configure_logging("warning" if quiet else log.level, log.format)
            self._logging = True
        return loaded

    @property
    def loaded_without_logging(self) -> LoadedSettings:
        """The settings alone, for a command that never logs (``check`` prints its problems):
        it then starts without loading structlog. Read on first use, not with the CLI."""
        if self._loaded is None:
            from leadflow.config import load_settings

            self._loaded = load_settings(self.config_file, overrides=self.overrides)
        return self._loaded

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    @property
    def engine(self) -> Engine:
        """The store's engine, migrated to the newest schema on first use."""
        if self._engine is None:
            # Only commands that open the store load SQLAlchemy and alembic.
            from leadflow.store.database import engine_for, ensure_attribute_indexes, migrate
            from leadflow.store.tables import LEADS

            self._engine = engine_for(self.settings)
            migrate(self._engine)
            attributes = self.settings.attributes
            ensure_attribute_indexes(self._engine, LEADS, attributes.leads, attributes.indexed)
        return self._engine

    @property
    def existing_engine(self) -> Engine:
        """:attr:`engine` for a command that writes a store it expects to be there (``send``,
        ``outbox --retry``, ``prune``): see :func:`refuse_missing_store`."""
        if self._engine is None:
            refuse_missing_store(self.settings)
        return self.engine

    @property
    def reading_engine(self) -> Engine:
        """The store's engine for a command that only reads it (``status``, ``report``,
        ``audit``, the ``outbox`` listing, ``dashboard serve``, ``score explain``, ``score fit``,
        ``simulate``, ``prune --dry-run``): never migrated, refused when its schema is not
        this leadflow's (:func:`~leadflow.store.database.require_current_schema`).

        Nor are the attribute indexes created: they only make the rules' and the dashboard's
        lookups faster (every query reads the same rows without them), and creating one is a
        write, on SQLite under the write lock, that the daemon or any writing command does."""
        if self._engine is None:
            refuse_missing_store(self.settings)
            from leadflow.store.database import engine_for, require_current_schema

            engine = engine_for(self.settings)
            try:
                require_current_schema(engine)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def refuse_missing_store(settings: Settings) -> None:
    """Refuse an SQLite ``database.url`` whose file is not there: for a command that reads the
    store it is a mistyped path or a store nothing has written yet, and creating it empty (with
    its folders) would show an empty funnel as if it were the real one."""
    from leadflow.store.database import missing_sqlite_file

    missing = missing_sqlite_file(settings)
    if missing is not None:
        from leadflow.errors import UserInputError

        raise UserInputError(
            f"no store at {missing} (database.url {settings.database.url!r}): nothing has "
            "imported into it or run on it yet, or the path is wrong; `leadflow import` or "
            "`leadflow run` creates it"
        )


def cli_context(ctx: typer.Context) -> CliContext:
    """The :class:`CliContext` the top-level callback stored on the click context."""
    found = ctx.find_root().obj
    if not isinstance(found, CliContext):
        found = CliContext()
        ctx.find_root().obj = found
    return found
