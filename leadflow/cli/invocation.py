"""How this process's ``leadflow`` was typed, for commands printed to be pasted back.

The README installs into ``.venv`` and runs ``.venv/bin/leadflow`` without activating it; a
printed ``leadflow audit ...`` then answered ``command not found``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path


def invoked_as(
    program: str | None = None,
    cwd: Path | None = None,
    search: Callable[[str], str | None] = shutil.which,
) -> str:
    """``leadflow`` when the shell finds this very program by that name (or it was not started
    by its script: ``python -m leadflow``, a test runner), else its path, relative to ``cwd``
    when it lies below it (``.venv/bin/leadflow``). What the shell
    finds: ``search``, the PATH lookup (a test gives its own)."""
    started = Path(program if program is not None else sys.argv[0])
    if started.name != "leadflow":
        return "leadflow"
    where = search("leadflow")
    if where is not None and Path(where).resolve() == started.resolve():
        return "leadflow"
    here = cwd or Path.cwd()
    absolute = started if started.is_absolute() else here / started
    relative = os.path.relpath(absolute, here)
    if relative.startswith(".."):
        return str(absolute)
    return relative if os.sep in relative else f".{os.sep}{relative}"
