"""A value outside an argument's or option's choices, as one ``error:`` line with a suggestion.

Typer checks a choice argument (``leadflow import deal FILE``) through pydantic and click, whose
message came out as ``Invalid value for 'kind': Value error, 'deal' is not one of 'reps', ...``
under the usage lines: a library's prefix and no hint at the name meant. Here it is
``kind: 'deal' is not one of reps, leads, deals, activities, sample; did you mean 'deals'?``.
"""

from __future__ import annotations

import re

from leadflow.suggestions import did_you_mean

_NOT_ONE_OF = re.compile(r"^(?:Value error, )?'(?P<given>.*)' is not one of (?P<choices>.*?)\.?$")
_CHOICE = re.compile(r"'((?:[^'\\]|\\.)*)'")


def choice_error(exc: Exception) -> str | None:
    """The one line for a usage error about a value outside the choices, else None."""
    message = getattr(exc, "message", None)
    param = getattr(exc, "param", None)
    if not isinstance(message, str) or param is None:
        return None
    found = _NOT_ONE_OF.match(message)
    if found is None:
        return None
    given = found.group("given")
    choices = _CHOICE.findall(found.group("choices"))
    hint = did_you_mean(given, choices, prefix="; ", ignore_case=True)
    opts = [opt for opt in getattr(param, "opts", []) if opt.startswith("--")]
    name = opts[0] if opts and getattr(param, "param_type_name", "") == "option" else param.name
    return f"{name}: {given!r} is not one of {', '.join(choices)}{hint}"
