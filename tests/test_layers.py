"""The package's layers, as the README's Layout tells them: nothing imports upwards.

Each rule below is a sentence of the Layout section. Imports inside functions count too: a
lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "leadflow"
INFRASTRUCTURE = {
    "clock",
    "collector_pause",
    "config",
    "durations",
    "environment",
    "errors",
    "libyaml",
    "logs",
    "mail_settings",
    "metrics",
    "setting_types",
    "settings",
    "suggestions",
}
EVERYTHING = {
    *INFRASTRUCTURE,
    "cli",
    "crm",
    "dashboard",
    "engine",
    "funnel",
    "http",
    "ingest",
    "mail",
    "outbox",
    "rule_language",
    "rule_testing",
    "samples",
    "scoring",
    "service",
    "store",
}
MAY_IMPORT = {
    "store": INFRASTRUCTURE,
    "rule_language": INFRASTRUCTURE | {"store"},
    "outbox": INFRASTRUCTURE | {"store"},
    "mail": INFRASTRUCTURE | {"store", "outbox"},
    "crm": INFRASTRUCTURE | {"store", "outbox"},
    "ingest": INFRASTRUCTURE | {"store"},
    # An import's score column is the scoring model's to take or leave (ownership).
    "scoring": INFRASTRUCTURE | {"store", "rule_language", "ingest"},
    "engine": INFRASTRUCTURE | {"store", "rule_language", "outbox", "mail", "crm", "scoring"},
    "funnel": INFRASTRUCTURE | {"store", "rule_language", "engine"},
    "dashboard": INFRASTRUCTURE
    | {"store", "rule_language", "scoring", "engine", "outbox", "mail", "funnel"},
    "rule_testing": EVERYTHING - {"cli", "http", "service", "dashboard"},
}
"""Who may import whom; service, http and cli are the edges and may import what they run."""


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level leadflow part) for every ``leadflow.X`` import in ``path``; imports for
    type checkers only (``if TYPE_CHECKING:``) do not run and are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "leadflow":
                names = [f"leadflow.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "leadflow" and len(parts) > 1:
                yield node.lineno, parts[1]


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
@pytest.mark.slow
def test_layer_imports_only_below_itself(layer: str) -> None:
    """A layer's modules import only the layers the Layout puts below it."""
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: imports leadflow.{target}"
        for path in modules()
        if part_of(path) == layer
        for line, target in imports_of(path)
        if target != layer and target not in MAY_IMPORT[layer]
    ]
    assert wrong == []


def test_infrastructure_imports_only_infrastructure() -> None:
    """clock, config, errors, logs, ... are the bottom: settings may read store's attribute
    names and column types, nothing else reaches up."""
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: imports leadflow.{target}"
        for path in modules()
        if part_of(path) in INFRASTRUCTURE
        for line, target in imports_of(path)
        if target not in INFRASTRUCTURE
        and not (target == "store" and part_of(path) in ("settings", "mail_settings"))
    ]
    assert wrong == []


def test_nothing_imports_the_cli() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in modules()
        if part_of(path) != "cli"
        for line, target in imports_of(path)
        if target == "cli"
    ]
    assert wrong == []


def test_wall_clock_is_built_only_at_the_edges() -> None:
    """``SystemClock()`` appears in cli/ and service/ only: the library is handed its clock."""
    built = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in modules()
        if part_of(path) not in {"cli", "service", "clock"}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "SystemClock"
    ]
    assert built == []
