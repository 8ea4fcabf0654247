"""What evaluating rules needs, built once per process and passed in (never global).

Besides the :class:`Runtime` (store, settings, clock, templates), the engine is handed a
:class:`StopSignal` by a caller that may have to stop it between two batches.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine

from leadflow.clock import Clock
from leadflow.mail.templates import TemplateCatalog
from leadflow.rule_language.loader import load_rule_set
from leadflow.rule_language.model import RuleSet
from leadflow.settings import Settings


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

    @classmethod
    def build(cls, engine: Engine, settings: Settings, clock: Clock) -> Runtime:
        folder = settings.path(settings.paths.templates)
        return cls(engine, settings, clock, TemplateCatalog(folder, settings))

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
