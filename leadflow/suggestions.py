""" "Did you mean ...?" for a name leadflow does not know, worded the same way in every message.

Config keys, rule keys, operators, stages, streams, calendars, timezones, import columns and
rule-test kinds all suggest the closest known names with :func:`did_you_mean`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(
    word: str,
    choices: Iterable[str],
    *,
    otherwise: str = "",
    prefix: str = "",
    suffix: str = "",
    n: int = 1,
    cutoff: float = 0.6,
    quote: bool = True,
    ignore_case: bool = False,
) -> str:
    """``did you mean 'x'?`` naming the choices closest to ``word``, or ``otherwise``.

    ``prefix`` and ``suffix`` surround the suggestion (not ``otherwise``), for messages that
    go on after it. Up to ``n`` names are suggested, each as ``repr`` unless ``quote`` is
    false; ``ignore_case`` also suggests the choices that differ from ``word`` only in case.
    """
    known = list(choices)
    # A choice whose length is too far from the word's cannot reach ``cutoff`` (a ratio is at
    # most 2 * shorter / (both lengths)): left out first, so a huge word (a 100 MB header
    # cell) is not indexed by difflib character by character for nothing. Same answers.
    reachable = [name for name in known if _may_reach(len(word), len(name), cutoff)]
    close = difflib.get_close_matches(word, reachable, n=n, cutoff=cutoff) if reachable else []
    if ignore_case:
        folded = word.casefold() if len(word) <= 4 * max(map(len, known), default=0) else None
        close += [name for name in known if name.casefold() == folded and name not in close]
    if not close:
        return otherwise
    names = ", ".join(repr(name) if quote else name for name in close)
    return f"{prefix}did you mean {names}?{suffix}"


def _may_reach(length: int, other: int, cutoff: float) -> bool:
    total = length + other
    return total == 0 or 2 * min(length, other) >= cutoff * total
