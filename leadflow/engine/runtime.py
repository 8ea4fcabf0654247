"""What evaluating rules needs, built once per process and passed in (never global).

Besides the :class:`Runtime` (store, settings, clock, templates), the engine is handed a
:class:`StopSignal` by a caller that may have to stop it between two batches.

:meth:`Runtime.build` is the one place settings reach the engine, so it is where a secret the
configuration leaves unset is filled in: ``mail.unsubscribe_secret`` comes from the store
(generated once, then shared by every process on it), never from a constant in the source.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr
from sqlalchemy import Engine

from leadflow.clock import Clock
from leadflow.mail.templates import TemplateCatalog
from leadflow.rule_language.loader import load_rule_set
from leadflow.rule_language.model import RuleSet
from leadflow.settings import Settings
from leadflow.store.secrets import stored_secret

UNSUBSCRIBE_KEY_NAME = "mail.unsubscribe_secret"
"""The ``store_secrets`` name of the generated unsubscribe key."""


class StopSignal(Protocol):
    """Asked between batches: a stopping daemon, or a replica that lost leadership."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Runtime:
    """The store, the settings, the clock and the email templates of one process."""

    engine: Engine
    settings: Settings
    clock: Clock
    templates: TemplateCatalog
    unsubscribe_secret_stored: bool = False
    """``mail.unsubscribe_secret`` was unset and the store's generated one is in use."""
    config_file: Path | None = None
    """The ``config.yaml`` the settings were read from: the dashboard reads its users from it
    again when it changes."""

    @classmethod
    def build(
        cls,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        *,
        read_only: bool = False,
        config_file: Path | None = None,
    ) -> Runtime:
        """The runtime of ``settings`` on ``engine``; without ``mail.unsubscribe_secret`` the
        store's secret is used, generated and stored on first use. ``read_only`` (a command that
        never writes the store nor sends email) uses a random one for this process instead."""
        stored = settings.mail.unsubscribe_secret is None
        if stored:
            if read_only:
                value = secrets.token_hex(32)
            else:
                value, _ = stored_secret(engine, UNSUBSCRIBE_KEY_NAME, clock.now())
            mail = settings.mail.model_copy(update={"unsubscribe_secret": SecretStr(value)})
            settings = settings.model_copy(update={"mail": mail})
        folder = settings.path(settings.paths.templates)
        return cls(
            engine,
            settings,
            clock,
            TemplateCatalog(folder, settings),
            unsubscribe_secret_stored=stored and not read_only,
            config_file=config_file,
        )

    @property
    def rules_folder(self) -> Path:
        return self.settings.path(self.settings.paths.rules)

    def load_rules(self, folder: Path | None = None) -> RuleSet:
        """Load and validate the rule set with a frozen copy of the templates it was checked
        against; :class:`ProblemsError` when anything is wrong."""
        templates = self.templates.frozen()
        rule_set = load_rule_set(
            folder or self.rules_folder,
            self.settings,
            check_template=templates.check,
            check_context=templates.check_context,
        )
        return replace(rule_set, templates=templates)

    def templates_for(self, rule_set: RuleSet) -> TemplateCatalog:
        """The templates that go with ``rule_set`` (its frozen copy when it has one)."""
        frozen = rule_set.templates
        return frozen if isinstance(frozen, TemplateCatalog) else self.templates
