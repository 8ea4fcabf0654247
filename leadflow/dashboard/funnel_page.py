"""The Funnel page's numbers: the stage counts ``leadflow status`` shows, for now.

The seam: :func:`funnel_numbers` is the one call the page makes. When ``leadflow report``
(the funnel metrics: conversion and velocity per period) lands, this function calls the
report's own code and fills :attr:`FunnelNumbers.report`, so the page and the command show the
same numbers from one implementation; until then the page says that the report is not there
yet rather than computing its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from leadflow.settings import StageSettings
from leadflow.store.status import leads_by_stage


@dataclass(frozen=True)
class FunnelNumbers:
    stages: tuple[tuple[str, int], ...]
    """The progression's stages in order, then the side stages, then any other stored stage."""
    report: Any = None
    """``leadflow report``'s metrics for the period, once that command exists."""

    @property
    def total(self) -> int:
        return sum(count for _, count in self.stages)


def funnel_numbers(engine: Engine, stages: StageSettings) -> FunnelNumbers:
    """Leads per stage now, in the configured order of stages."""
    counts = leads_by_stage(engine)
    named = (*stages.progression, *stages.side)
    ordered = [(stage, counts.get(stage, 0)) for stage in named]
    ordered += sorted((stage, n) for stage, n in counts.items() if stage not in named)
    return FunnelNumbers(tuple(ordered))
