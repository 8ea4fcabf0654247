"""How much one part of an email may render, and the sandbox's guards that keep it to that.

A template is code a marketing-ops person writes and another reviews, not a trusted program.
Jinja's sandbox keeps it from Python's internals and limits ``range()`` to 100,000 items a
call, and nothing else: ``{{ '-' * 1000000000 }}`` took ``leadflow check`` 51 s and 4.9 GB
before it said OK, two nested ``range`` loops never ended, and a running daemon reloading such
a template grew to 6 GB without a log line (an outside tester's find). Each part of an email
(subject, text, HTML) is now held to two limits, checked *before* the work is done, so a bad
template costs milliseconds and is a problem at its file and line, as any other:

- :data:`MAX_PART_CHARS` characters: what the part renders, and every string or list made on
  the way (``*``, ``+``, ``~``, ``%`` and ``format`` widths, ``center``/``indent``/``join``/
  ``replace``/``batch``/``slice`` and the string methods that pad or repeat). Half a megabyte
  is five times what mail clients show before clipping a message (Gmail: 102 KB).
- :data:`MAX_RANGE_STEPS` steps of ``range()`` loops in one part, nested loops counted in
  full: a loop over the context's data is as long as the data, a loop over ``range`` must
  not multiply into billions.

The checks are the sandbox's (:class:`~leadflow.mail.templates` builds it with these): they
raise :class:`RenderLimitError`, a Jinja ``SecurityError``, which ``check``, a reload and a
sender report as ``not allowed in a template: ...`` at the template's line.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import islice
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.utils import _PassArg

MAX_PART_CHARS = 512 * 1024
"""Characters one part of an email (subject, text or HTML) may render, or make on the way."""
MAX_RANGE_STEPS = 100_000
"""Steps of ``range()`` loops in one part, nested ones counted in full."""
MAX_POWER = 1000
"""The largest integer exponent of ``**`` (Python computes ``10 ** 10 ** 9`` for minutes)."""


class RenderLimitError(SecurityError):
    """A template would render more than a part may, or loop longer."""


def too_long(what: str, size: int) -> RenderLimitError:
    return RenderLimitError(
        f"{what} would make {size:,} characters; a part of an email renders at most "
        f"{MAX_PART_CHARS:,} (docs/email.md, Limits)"
    )


@dataclass
class _Budget:
    range_steps: int = 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("template_part_budget", default=None)


class part_budget:  # noqa: N801 (used as a function: ``with part_budget():``)
    """The ``range()`` steps of one part, counted from 0 (includes render within it). A
    class, not a generator: it is entered for every part of every email."""

    def __enter__(self) -> None:
        self._token = _BUDGET.set(_Budget())

    def __exit__(self, *_: object) -> None:
        _BUDGET.reset(self._token)


class CountedRange:
    """``range()`` in a template: a range whose steps count against the part's budget."""

    def __init__(self, *args: int) -> None:
        self._range = range(*args)
        if len(self._range) > MAX_RANGE_STEPS:
            msg = f"range() of {len(self._range):,} steps; a part loops at most {MAX_RANGE_STEPS:,}"
            raise RenderLimitError(msg)

    def __len__(self) -> int:
        return len(self._range)

    def __iter__(self) -> Iterator[int]:
        return self._counted(self._range)

    def __reversed__(self) -> Iterator[int]:
        return self._counted(reversed(self._range))

    @staticmethod
    def _counted(values: Iterable[int]) -> Iterator[int]:
        budget = _BUDGET.get()
        for value in values:
            if budget is not None:
                budget.range_steps += 1
                if budget.range_steps > MAX_RANGE_STEPS:
                    msg = (
                        f"loops over range() would take more than {MAX_RANGE_STEPS:,} steps "
                        "in one part (nested loops multiply)"
                    )
                    raise RenderLimitError(msg)
            yield value

    def __contains__(self, value: object) -> bool:
        return value in self._range

    def __getitem__(self, index: int) -> int:
        return self._range[index]

    def __repr__(self) -> str:
        return repr(self._range)


def bounded_output(chunks: Iterator[str]) -> str:
    """A rendered part's text, stopped once it passes :data:`MAX_PART_CHARS`: measured every
    :data:`_CHUNKS_MEASURED` chunks, not each (an email is hundreds of chunks, rendered
    thousands of times a second), which lets it pass the limit by at most that many chunks,
    each itself within the limits."""
    parts: list[str] = []
    size = 0
    while batch := list(islice(chunks, _CHUNKS_MEASURED)):
        size += sum(map(len, batch))
        if size > MAX_PART_CHARS:
            msg = (
                f"the part renders more than {MAX_PART_CHARS:,} characters (docs/email.md, Limits)"
            )
            raise RenderLimitError(msg)
        parts += batch
    return "".join(parts)


_CHUNKS_MEASURED = 64


def bounded_join(join: Callable[[Any], str], pieces: tuple[Any, ...]) -> str:
    """``a ~ b ~ c`` (Jinja's concatenation), refused before it passes the limit: a string
    doubled in a loop (``{% set ns.s = ns.s ~ ns.s %}``) reaches gigabytes in 30 steps."""
    size = sum(len(piece) if isinstance(piece, str) else len(str(piece)) for piece in pieces)
    if size > MAX_PART_CHARS:
        raise too_long("'~'", size)
    return join(pieces)


# --- operators ---------------------------------------------------------------------------

_PERCENT_FIELD = re.compile(r"%[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_NUMBER = re.compile(r"\d+")


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``*``, ``+``, ``%`` and ``**`` whose result would pass the limits."""
    if operator == "*":
        check_repeat("'*'", left, right)
        check_repeat("'*'", right, left)
    elif operator == "+" and _sized(left) and _sized(right):
        size = len(left) + len(right)
        if size > MAX_PART_CHARS:
            raise too_long("'+'", size)
    elif operator == "%" and isinstance(left, str):
        check_percent_widths(left)
    elif operator == "**" and _is_int(left) and _is_int(right) and abs(left) > 1:
        _check_power(right)


def _check_power(exponent: int) -> None:
    if exponent > MAX_POWER:
        msg = f"'**' with an exponent of {exponent:,}; at most {MAX_POWER:,}"
        raise RenderLimitError(msg)


def check_repeat(what: str, sequence: Any, times: Any) -> None:
    if isinstance(sequence, str | list | tuple) and _is_int(times):
        size = len(sequence) * max(times, 0)
        if size > MAX_PART_CHARS:
            raise too_long(what, size)


def check_percent_widths(template: str) -> None:
    """``'%999999999s' % x`` pads to a gigabyte: widths and precisions within the limit, no
    ``*`` (a width taken from the values)."""
    for width, precision in _PERCENT_FIELD.findall(template):
        for number in (width, precision):
            if number == "*":
                msg = "'%' with a width taken from the values ('*'); write the width"
                raise RenderLimitError(msg)
            if number and int(number) > MAX_PART_CHARS:
                raise too_long("a '%' width", int(number))


def check_brace_widths(template: str) -> None:
    """``'{:>999999999}'.format(x)``: every number in a replacement field within the limit."""
    for field in re.findall(r"\{[^{}]*\}", template):
        for number in _BRACE_NUMBER.findall(field):
            if int(number) > MAX_PART_CHARS:
                raise too_long("a format width", int(number))


def _sized(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- string methods a template may call -------------------------------------------------------


def check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a call of a ``str`` method that pads, repeats or joins past the limit."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(method, "__name__", "")
    values = [*args, *kwargs.values()]
    if name in ("ljust", "rjust", "center", "zfill") and values and _is_int(values[0]):
        if values[0] > MAX_PART_CHARS:
            raise too_long(f"str.{name}", values[0])
    elif name == "expandtabs":
        size = len(owner) * (values[0] if values and _is_int(values[0]) else 8)
        if size > MAX_PART_CHARS:
            raise too_long("str.expandtabs", size)
    elif name == "replace" and len(values) >= 2:
        check_replace(owner, values[0], values[1], values[2] if len(values) > 2 else None)
    elif name == "join" and values:
        check_join(owner, values[0])


def check_replace(text: str, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(old, str) and isinstance(new, str)):
        return
    found = len(text) + 1 if old == "" else text.count(old)
    if _is_int(count) and count >= 0:
        found = min(found, count)
    size = len(text) + found * (len(new) - len(old))
    if size > MAX_PART_CHARS:
        raise too_long("replace", size)


def check_join(separator: Any, items: Any) -> None:
    if isinstance(items, Sized) and isinstance(separator, str):
        size = len(separator) * max(len(items) - 1, 0)
        if size > MAX_PART_CHARS:
            raise too_long("join", size)


# --- filters -----------------------------------------------------------------------------------


def _checked(original: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    """``original`` (a Jinja filter) with ``check`` run on its arguments first; its
    ``pass_eval_context`` / ``pass_environment`` mark is kept (``functools.wraps``)."""

    # A filter marked pass_eval_context (as Jinja's async-aware ones are) or pass_environment
    # takes that first: the check is given the filter's own arguments.
    passed = 1 if _PassArg.from_obj(original) is not None else 0

    @functools.wraps(original)
    def filtered(*args: Any, **kwargs: Any) -> Any:
        check(*args[passed:], **kwargs)
        return original(*args, **kwargs)

    return filtered


def _center(value: Any, width: Any = 80) -> None:
    if _is_int(width) and width > MAX_PART_CHARS:
        raise too_long("center", width)


def _indent(value: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    lines = str(value).count("\n") + 1
    size = len(str(value)) + lines * (width if _is_int(width) else len(str(width)))
    if size > MAX_PART_CHARS:
        raise too_long("indent", size)


def _format(value: Any, *args: Any, **kwargs: Any) -> None:
    check_percent_widths(str(value))


def _join(value: Any, d: Any = "", *_: Any, **__: Any) -> None:
    check_join(str(d), value)


def _replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
    check_replace(str(s), str(old), str(new), count)


def _batch_or_slice(value: Any, count: Any, fill_with: Any = None) -> None:
    if _is_int(count) and count > MAX_RANGE_STEPS:
        msg = f"batch or slice of {count:,}; at most {MAX_RANGE_STEPS:,}"
        raise RenderLimitError(msg)


FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _center,
    "indent": _indent,
    "format": _format,
    "join": _join,
    "replace": _replace,
    "batch": _batch_or_slice,
    "slice": _batch_or_slice,
}


def guard_filters(filters: dict[str, Callable[..., Any]]) -> None:
    """Put the checks in front of the filters that can make a part too long."""
    for name, check in FILTER_CHECKS.items():
        filters[name] = _checked(filters[name], check)


def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja's ``lipsum()``, held to the limit (``lipsum(10 ** 9)``)."""
    from jinja2.utils import generate_lorem_ipsum

    size = n * max * 12  # words of at most 11 letters and a space
    if size > MAX_PART_CHARS:
        raise too_long("lipsum", size)
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))
