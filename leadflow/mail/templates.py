"""Email templates: a catalog over the ``templates/`` folder, rendered in Jinja's sandbox.

Layout, one template = up to three files sharing a name::

    templates/mql_assigned.subject.txt   the subject line (required)
    templates/mql_assigned.txt           the plain-text body (required)
    templates/mql_assigned.html          the HTML body (optional; autoescaped)

Files whose name starts with ``_`` (``_footer.txt``, ``_layout.html``) are partials for
``{% include %}`` and ``{% extends %}``; they are not templates of their own. A variable that is
not in the context is an error (``StrictUndefined``), never a blank in a sent email.

Compiled templates are kept on disk, as Python keeps ``__pycache__``
(:mod:`leadflow.mail.compiled_templates`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, partial
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import jinja2.filters
import jinja2.runtime
import jinja2.utils
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import SandboxedEnvironment

from leadflow.errors import (
    MISSING_TEMPLATES_FOLDER,
    Problem,
    TemplateError,
    not_utf8_position,
    why_not_a_file,
)
from leadflow.mail.compiled_templates import CompiledTemplates
from leadflow.mail.context import sample_context
from leadflow.mail.render_limits import (
    CountedRange,
    bounded_join,
    bounded_output,
    check_binop,
    check_brace_widths,
    check_method,
    guard_filters,
    lipsum,
    part_budget,
)
from leadflow.settings import Settings
from leadflow.suggestions import did_you_mean

SUBJECT_SUFFIX = ".subject.txt"
TEXT_SUFFIX = ".txt"
HTML_SUFFIX = ".html"


@dataclass(frozen=True)
class RenderedEmail:
    """One rendered message: a single-line subject, a text body and maybe an HTML body."""

    subject: str
    text: str
    html: str | None


def one_line(text: str) -> str:
    """Every run of whitespace, CR and LF included, as one space: a subject cannot add headers."""
    return " ".join(text.split())


def blank_for_none(value: Any) -> Any:
    """What ``{{ ... }}`` prints: nothing for a value that is not there.

    Every declared attribute is in the context, None without a value; Jinja's default printed
    "Hi None," to a lead whose CRM left the field empty (merge tags in HubSpot or Marketo print
    nothing, or their fallback). ``{% if %}`` and ``or "fallback"`` still see the None.
    """
    return "" if value is None else value


def default_when_missing(value: Any, fallback: Any = "", boolean: bool = False) -> Any:
    """Jinja's ``default``, with None as missing too.

    A declared attribute without a value is None in the context (not undefined), so
    ``{{ lead.attributes.sector | default("your sector") }}``, which printed the fallback while
    such attributes were left out, would print nothing.
    """
    if value is None:
        return fallback
    return jinja2.filters.do_default(value, fallback, boolean)


@lru_cache(maxsize=1024)
def localtime(
    value: datetime,
    timezone: str | None = None,
    fmt: str = "%a %d %b %H:%M %Z",
    *,
    fallback: str = "UTC",
) -> str:
    """Jinja filter: ``{{ sla.due_at | localtime(rep.timezone) }}`` -> ``Mon 02 Mar 13:30 CET``.

    Without a (known) ``timezone``, ``fallback``: a catalog passes ``calendar.timezone``, the
    zone SLAs are counted in, so a rep without a timezone reads the due time in the SLA
    calendar's zone rather than in UTC.

    Remembered: the emails of a batch show the same few due times in the same few zones."""
    zone = _zone(timezone) or _zone(fallback) or ZoneInfo("UTC")
    return value.astimezone(zone).strftime(fmt)


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


class TemplateCatalog:
    """The templates in one folder, compiled once per process and checked against a sample."""

    def __init__(self, folder: Path, settings: Settings, *, frozen: bool = False) -> None:
        self.folder = folder
        self.settings = settings
        # Frozen: the files as they are now, read once. The daemon renders only from a frozen
        # copy taken with the rule set it validated, so a template saved half-way (or broken)
        # is never used before a reload has checked it and swapped it in with the rules.
        self._sources: dict[str, str] | None = None
        self._unreadable: dict[str, Problem] = {}
        """A template part that cannot be read, by file name: reported, never just missing."""
        if frozen:
            self._sources, self._unreadable = _read_sources(folder)
        loader: jinja2.BaseLoader = (
            _SnapshotLoader(folder, self._sources)
            if self._sources is not None
            else jinja2.FileSystemLoader(folder)
        )
        self._env = _Sandbox(
            loader=loader,
            undefined=_Undefined,
            finalize=blank_for_none,
            # Asked by every part and include of every email: remembered per template name.
            autoescape=lru_cache(maxsize=256)(
                jinja2.select_autoescape(
                    enabled_extensions=("html",), default_for_string=False, default=False
                )
            ),
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            # A frozen catalog's sources never change: no up-to-date check per render/include.
            auto_reload=self._sources is None,
            # ... and its few templates stay compiled in a plain dict: every include of every
            # email looks its template up, and Jinja's default LRU cache takes a lock to do so.
            cache_size=-1 if self._sources is not None else 400,
        )
        self._env.filters["localtime"] = partial(localtime, fallback=settings.calendar.timezone)
        self._env.filters["default"] = self._env.filters["d"] = default_when_missing
        guard_filters(self._env.filters)
        self._env.globals.update(range=CountedRange, lipsum=lipsum)
        self._env.bytecode_cache = CompiledTemplates.for_environment(self._env)
        self._compiled: dict[str, jinja2.Template] = {}

    def frozen(self) -> TemplateCatalog:
        """A copy of this catalog holding the folder's files as they are now."""
        return TemplateCatalog(self.folder, self.settings, frozen=True)

    def _has(self, filename: str) -> bool:
        if self._sources is not None:
            return filename in self._sources
        return (self.folder / filename).is_file()

    def _files(self) -> list[str]:
        if self._sources is not None:
            return list(self._sources)
        if not self.folder.is_dir():
            return []
        return [path.name for path in self.folder.iterdir() if path.is_file()]

    def names(self) -> list[str]:
        """Every template that has at least one part, sorted; partials (``_*``) excluded."""
        found = set()
        for filename in self._files():
            name = _template_name(filename)
            if name and not name.startswith("_"):
                found.add(name)
        return sorted(found)

    def check(self, name: str) -> list[Problem]:
        """Compile every part of ``name`` and render it with a realistic sample context."""
        return self._check_parts(name, {**self._env.globals, **sample_context(self.settings)})

    def check_context(self, name: str, unavailable: Mapping[str, str]) -> list[Problem]:
        """Render ``name`` with each key of ``unavailable`` ``None``, as its sender sends it.

        ``unavailable`` maps the context keys an action leaves empty to why, so
        ``{{ sla.due_at }}`` in a rule without ``start_sla`` is reported, naming ``sla`` and the
        reason; ``{% if sla %}`` is not (every key is always present, see mail/context.py).
        """
        problems = []
        for key, why in sorted(unavailable.items()):
            context = {**self._env.globals, **sample_context(self.settings), key: None}
            found = self._check_parts(name, context)
            if found:  # the first part that reads it is enough to say so
                message = f"uses {key!r}, which is not available here: {why}"
                problems.append(Problem(found[0].file, found[0].line, found[0].column, message))
        return problems

    def _check_parts(self, name: str, context: dict[str, Any]) -> list[Problem]:
        if not self.folder.is_dir():
            return [Problem(str(self.folder), 0, 0, MISSING_TEMPLATES_FOLDER)]
        problems = []
        for suffix, required in _PARTS:
            path = self.folder / f"{name}{suffix}"
            unreadable = self._unreadable_part(path)
            if unreadable is not None:
                problems.append(unreadable)
                continue
            if not self._has(path.name):
                if required:
                    problems.append(self._missing(name, suffix))
                continue
            try:
                rendered = self._render_part(name, suffix, context)
            except TemplateError as exc:
                problems.append(exc.problem or Problem(str(path), 0, 0, str(exc)))
                continue
            if suffix == SUBJECT_SUFFIX and not one_line(rendered):
                problems.append(Problem(str(path), 1, 0, "the subject renders empty"))
        return problems

    def _unreadable_part(self, path: Path) -> Problem | None:
        """The problem of a part that is there but cannot be read: not UTF-8, a folder, a link
        to nothing. Such a part was taken as absent: an HTML part sent every email text-only,
        a text part was reported as missing."""
        if self._sources is not None:
            return self._unreadable.get(path.name)
        return _unreadable(path, path)

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        """Render all parts of ``name``; a problem raises :class:`TemplateError` naming it."""
        values = {**self._env.globals, **context}
        for suffix in (SUBJECT_SUFFIX, TEXT_SUFFIX):
            if not self._has(f"{name}{suffix}"):
                problem = self._missing(name, suffix)
                raise TemplateError(str(problem), problem)
        subject = one_line(self._render_part(name, SUBJECT_SUFFIX, values))
        if not subject:
            subject_path = self.folder / f"{name}{SUBJECT_SUFFIX}"
            msg = f"{subject_path}: the subject of template {name!r} renders empty"
            raise TemplateError(msg)
        text = self._render_part(name, TEXT_SUFFIX, values)
        html = None
        if self._has(f"{name}{HTML_SUFFIX}"):
            html = self._render_part(name, HTML_SUFFIX, values)
        return RenderedEmail(subject=subject, text=text, html=html)

    def _missing(self, name: str, suffix: str) -> Problem:
        path = self.folder / f"{name}{suffix}"
        known = self.names()
        if name not in known:
            hint = f"; templates in {self.folder}: {', '.join(known) or '(none)'}"
            return Problem(str(path), 0, 0, f"no template {name!r}{hint}")
        return Problem(str(path), 0, 0, f"template {name!r} has no {_PART_NAMES[suffix]} part")

    def _render_part(self, name: str, suffix: str, values: dict[str, Any]) -> str:
        """One part rendered with ``values``, the context with the environment's globals in.

        The parts of one email share ``values`` as the context's parent (Jinja's ``shared``
        context: a template's own ``set`` goes to its context, never to the parent), so the
        context is not copied for each part: ``Template.render`` does the rest the same way.
        """
        filename = f"{name}{suffix}"
        try:
            template = self._compiled.get(filename)
            if template is None:
                template = self._env.get_template(filename)
                if self._sources is not None:  # frozen: compiled once, rendered thousands of times
                    self._compiled[filename] = template
            try:
                with part_budget():
                    return bounded_output(
                        template.root_render_func(template.new_context(values, shared=True))
                    )
            except Exception:
                self._env.handle_exception()  # re-raised with the template's lines in the trace
        except jinja2.TemplateSyntaxError as exc:
            where = str(self.folder / exc.name) if exc.name else str(self.folder / filename)
            raise _error(Problem(where, exc.lineno, 0, f"syntax error: {exc.message}")) from exc
        except jinja2.TemplateNotFound as exc:
            problem = Problem(str(self.folder / filename), 0, 0, f"cannot include {exc.name!r}")
            raise _error(problem) from exc
        except (jinja2.UndefinedError, jinja2.exceptions.SecurityError) as exc:
            where, line = _template_line(exc.__traceback__, self.folder, filename)
            raise _error(Problem(where, line, 0, _undefined_message(exc, values))) from exc
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            where, line = _template_line(exc.__traceback__, self.folder, filename)
            raise _error(Problem(where, line, 0, f"cannot render: {exc}")) from exc


class _UnknownName(jinja2.UndefinedError):
    """An undefined name, with what it was looked up in: the message can then name the
    context's path (``lead.attributes``) and suggest the closest name there."""

    def __init__(self, message: str, owner: Any, name: Any) -> None:
        super().__init__(message)
        self.owner = owner
        self.name = name


class _Undefined(jinja2.StrictUndefined):
    """StrictUndefined raising :class:`_UnknownName`: Jinja's own message is about Python
    types (``'dict object' has no attribute 'attributs'``), not about the context."""

    __slots__ = ()

    @jinja2.utils.internalcode
    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        raise _UnknownName(self._undefined_message, self._undefined_obj, self._undefined_name)


# Jinja binds every operation of an undefined value to the base class's function itself
# (``__str__ = __iter__ = ... = _fail_with_undefined_error``): each is bound to ours instead.
for _operation in dir(jinja2.StrictUndefined):
    if getattr(jinja2.StrictUndefined, _operation) is jinja2.Undefined._fail_with_undefined_error:
        setattr(_Undefined, _operation, _Undefined._fail_with_undefined_error)


class _Context(jinja2.runtime.Context):
    """Jinja's context, with the names of its template's globals taken once per template.

    Jinja collects them (``set()`` over the template's ChainMap of globals) for every context,
    one per part and per include of every email: a fifth of rendering an email. They are
    only read (by ``{% import %}``), and a template's globals do not change once it is loaded.
    """

    def __init__(
        self,
        environment: jinja2.Environment,
        parent: dict[str, Any],
        name: str | None,
        blocks: dict[str, Callable[[jinja2.runtime.Context], Iterator[str]]],
        globals: MutableMapping[str, Any] | None = None,  # Jinja passes it by this name
    ) -> None:
        super().__init__(environment, parent, name, blocks)
        if globals is not None:
            self.globals_keys = _names_of(globals)


_GLOBAL_NAMES: dict[int, tuple[Mapping[str, Any], set[str]]] = {}


def _names_of(globals_: Mapping[str, Any]) -> set[str]:
    """The names in ``globals_`` (a template's globals), collected once per mapping."""
    known = _GLOBAL_NAMES.get(id(globals_))
    if known is not None and known[0] is globals_:
        return known[1]
    if len(_GLOBAL_NAMES) > 1024:  # templates reloaded many times: start afresh
        _GLOBAL_NAMES.clear()
    names = set(globals_)
    _GLOBAL_NAMES[id(globals_)] = (globals_, names)
    return names


class _BoundedConcat(CodeGenerator):
    """Jinja's code generator, with ``a ~ b`` joined through the sandbox's
    :meth:`_Sandbox.bounded_join`, which refuses a string past the part's limit before
    making it (:mod:`leadflow.mail.render_limits`)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802 (Jinja's name)
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.bounded_join({join}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox with a short way to a dict's key (the context's values are dicts), and
    the limits of :mod:`leadflow.mail.render_limits` on what a part may make.

    ``lead.name`` on a dict is its key ``name`` exactly when ``name`` is not an attribute of
    dicts (``items``, ``keys``...), as the sandbox decides it, without raising and catching an
    AttributeError on every lookup.
    """

    context_class = _Context
    code_generator_class = _BoundedConcat
    intercepted_binops = frozenset({"*", "+", "%", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES and attribute in obj:
            return obj[attribute]
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            check_brace_widths(obj)
        return super().getattr(obj, attribute)

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(
        __self,  # noqa: N805 (Jinja's signature: the names are free for the call's own keywords)
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        check_method(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def bounded_join(self, join: Callable[[Any], str], pieces: tuple[Any, ...]) -> str:
        return bounded_join(join, pieces)


_DICT_ATTRIBUTES = frozenset(dir(dict))
_PARTS = ((SUBJECT_SUFFIX, True), (TEXT_SUFFIX, True), (HTML_SUFFIX, False))
_PART_NAMES = {SUBJECT_SUFFIX: "subject", TEXT_SUFFIX: "text", HTML_SUFFIX: "html"}


class _SnapshotLoader(jinja2.BaseLoader):
    """Templates read once; each keeps its real path, so errors still name file and line."""

    def __init__(self, folder: Path, sources: Mapping[str, str]) -> None:
        self.folder = folder
        self.sources = sources

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        if template not in self.sources:
            raise jinja2.TemplateNotFound(template)
        return self.sources[template], str(self.folder / template), lambda: True


def _read_sources(folder: Path) -> tuple[dict[str, str], dict[str, Problem]]:
    """Every template file of ``folder`` (and its subfolders, for includes), by relative name;
    and the problem of each visible name that cannot be read as one."""
    if not folder.is_dir():
        return {}, {}
    sources = {}
    unreadable = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            try:
                sources[relative.as_posix()] = path.read_text(encoding="utf-8")
                continue
            except (OSError, UnicodeDecodeError):
                pass
        problem = _unreadable(path, folder / relative)
        if problem is not None and _template_name(path.name) is not None:
            unreadable[relative.as_posix()] = problem
    return sources, unreadable


def _unreadable(path: Path, shown: Path) -> Problem | None:
    """Why the template part at ``path`` cannot be read, or None (a readable file, or none)."""
    if not path.exists() and not path.is_symlink():
        return None
    reason = why_not_a_file(path)
    if reason is not None:
        return Problem(str(shown), 0, 0, reason)
    try:
        raw = path.read_bytes()
        raw.decode("utf-8")
    except OSError as exc:
        return Problem(str(shown), 0, 0, f"cannot be read: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        line, column = not_utf8_position(raw, exc)
        return Problem(str(shown), line, column, "not UTF-8 text: save the file as UTF-8")
    return None


def _template_name(filename: str) -> str | None:
    for suffix, _ in _PARTS:
        if filename.endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)]
    return None


def _error(problem: Problem) -> TemplateError:
    return TemplateError(str(problem), problem)


def _undefined_message(exc: Exception, values: Mapping[str, Any]) -> str:
    text = str(exc)
    if isinstance(exc, _UnknownName) and isinstance(exc.name, str):
        text = _unknown_name(exc.owner, exc.name, values) or text
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined variable: {text} (see docs/email.md for the context)"
    return f"not allowed in a template: {text}"


def _unknown_name(owner: Any, name: str, values: Mapping[str, Any]) -> str | None:
    """``lead.attributs: lead has no field 'attributs'; did you mean 'attributes'?`` for a
    name missing from the context or from one of its dicts; None for anything else (a field
    of a None, an index), which Jinja's own words describe."""
    if owner is jinja2.utils.missing:
        return f"{name!r} is undefined" + did_you_mean(name, values, prefix="; ")
    if not isinstance(owner, dict):
        return None
    path = _path_to(owner, values)
    if path is None:
        return None
    what = "declared attribute" if path.endswith(".attributes") else "field"
    subject = path.removesuffix(".attributes")
    hint = did_you_mean(name, [str(key) for key in owner], prefix="; ")
    return f"{path}.{name}: {subject} has no {what} {name!r}{hint}"


def _path_to(found: dict[str, Any], values: Mapping[str, Any]) -> str | None:
    """Where ``found`` is in the context (``lead``, ``lead.attributes``), by identity: the
    context's values are the plain dicts of mail/context.py, two levels deep at most."""
    for key, value in values.items():
        if value is found:
            return key
        if type(value) is dict:
            for inner_key, inner in value.items():
                if inner is found:
                    return f"{key}.{inner_key}"
    return None


def _template_line(trace: TracebackType | None, folder: Path, filename: str) -> tuple[str, int]:
    """The innermost template file and line in ``trace`` (Jinja rewrites frames to point there)."""
    where, line = str(folder / filename), 0
    root = str(folder.resolve())
    while trace is not None:
        code_file = trace.tb_frame.f_code.co_filename
        if _inside(code_file, root):
            where, line = str(folder / Path(code_file).resolve().relative_to(root)), trace.tb_lineno
        trace = trace.tb_next
    return where, line


def _inside(path: str, root: str) -> bool:
    try:
        Path(path).resolve().relative_to(root)
    except ValueError:
        return False
    return True
