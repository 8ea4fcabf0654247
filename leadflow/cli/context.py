"""What every command needs, built lazily once: settings, the migrated store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import Engine

from leadflow.config import LoadedSettings, load_settings
from leadflow.logs import configure_logging
from leadflow.settings import Settings
from leadflow.store.database import engine_for, ensure_attribute_indexes, migrate
from leadflow.store.tables import LEADS


@dataclass
class CliContext:
    """Holds the ``--config`` choice and caches what was built from it."""

    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    _loaded: LoadedSettings | None = None
    _engine: Engine | None = None

    @property
    def loaded(self) -> LoadedSettings:
        if self._loaded is None:
            self._loaded = load_settings(self.config_file, overrides=self.overrides)
            log = self._loaded.settings.log
            configure_logging(log.level, log.format)
        return self._loaded

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    @property
    def engine(self) -> Engine:
        """The store's engine, migrated to the newest schema on first use."""
        if self._engine is None:
            self._engine = engine_for(self.settings)
            migrate(self._engine)
            attributes = self.settings.attributes
            ensure_attribute_indexes(self._engine, LEADS, attributes.leads, attributes.indexed)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def cli_context(ctx: typer.Context) -> CliContext:
    """The :class:`CliContext` the top-level callback stored on the click context."""
    found = ctx.find_root().obj
    if not isinstance(found, CliContext):
        found = CliContext()
        ctx.find_root().obj = found
    return found
