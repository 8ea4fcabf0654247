"""Configuration precedence in one place: explicit argument, environment, config.yaml, default.

Every key of :class:`~leadflow.settings.Settings` can be set in ``config.yaml`` or by an
environment variable named after its path: ``database.url`` is ``LEADFLOW_DATABASE__URL``
(sections joined by a double underscore), its text read by the setting's type (text verbatim:
see :mod:`leadflow.environment`). Secrets are read only from the environment, either
the variable itself or ``LEADFLOW_..._FILE`` naming a file that holds the secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from leadflow.durations import format_duration
from leadflow.environment import env_name, merge, nest, read_environment
from leadflow.errors import ConfigError, not_utf8_position, uses_aliases
from leadflow.libyaml import reads_alike, with_libyaml_parser
from leadflow.settings import SECRET_KEYS, Settings
from leadflow.suggestions import did_you_mean

DEFAULT_SOURCE = "default"


@dataclass(frozen=True)
class LoadedSettings:
    """The settings and, per dotted key, where its value came from."""

    settings: Settings
    sources: Mapping[str, str] = field(default_factory=dict)
    config_file: Path | None = None


def find_config_file(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    """``--config``, else ``$LEADFLOW_CONFIG``, else ``./config.yaml`` if it exists."""
    if explicit is not None:
        return explicit
    if env.get("LEADFLOW_CONFIG"):
        return Path(env["LEADFLOW_CONFIG"])
    candidate = Path("config.yaml")
    return candidate if candidate.exists() else None


def load_settings(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedSettings:
    """Build the effective settings; raise :class:`ConfigError` listing every problem."""
    environ = os.environ if env is None else env
    path = find_config_file(config_file, environ)
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    written: dict[str, str] = {}
    sections: dict[str, str] = {}
    if path is not None:
        data, sources, written, sections = _read_yaml(path)
        root = path.resolve().parent
    else:
        root = Path.cwd()
    problems = _reject_secrets_in_file(sources)
    env_data, env_sources, env_problems = read_environment(environ)
    problems += env_problems
    merge(data, env_data)
    sources.update(env_sources)
    for key, value in (overrides or {}).items():
        merge(data, nest(key.split("."), value))
        sources[key] = "argument"
    data["root"] = str(root)
    for key in SECRET_KEYS & sources.keys():
        if not sources[key].startswith("environment"):
            _drop(data, key.split("."))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems += _explain(exc, sources, written, sections, environ)
    if problems:
        raise ConfigError("\n".join(problems))
    return LoadedSettings(settings=settings, sources=sources, config_file=path)


def describe(loaded: LoadedSettings) -> Iterator[tuple[str, str, str]]:
    """Every effective key as (dotted key, shown value, source); secrets are masked."""
    dumped = loaded.settings.model_dump(mode="python", by_alias=True, exclude={"root"})
    for key, value in _leaves(dumped, ()):
        if isinstance(value, SecretStr):
            shown = "********"
        elif key in SECRET_KEYS:
            shown = "(not set)" if value is None else "********"
        else:
            shown = _mask_url_password(_show(value))
        yield key, shown, _source_of(key, loaded.sources)


_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*):[^/?#@]*@")


def _mask_url_password(shown: str) -> str:
    """``postgresql://app:pw@db/x`` is shown as ``postgresql://app:********@db/x``.

    A database or webhook URL may carry a password in its userinfo; the user name stays
    visible because it says which account is used, the password never is.
    """
    return _URL_PASSWORD.sub(r"\g<head>:********@", shown, count=1)


def _show(value: object) -> str:
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if value is None:
        return "(not set)"
    if isinstance(value, timedelta):
        return format_duration(value)
    return str(value)


def _leaves(value: object, prefix: tuple[str, ...]) -> Iterator[tuple[str, object]]:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from _leaves(inner, (*prefix, str(key)))
    else:
        yield ".".join(prefix), value


def _source_of(key: str, sources: Mapping[str, str]) -> str:
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        found = sources.get(".".join(parts[:end]))
        if found:
            return found
    # An unknown section has no source of its own, only its keys do (LEADFLOW_DATABSE__URL).
    below = sorted(source for name, source in sources.items() if name.startswith(f"{key}."))
    return below[0] if below else DEFAULT_SOURCE


def _read_yaml(
    path: Path,
) -> tuple[dict[str, Any], dict[str, str], dict[str, str], dict[str, str]]:
    """The file's values, where each key is written (``FILE:LINE:COL``), each boolean's text
    as written (YAML 1.1 reads ``yes``, ``no``, ``on``, ``off`` as booleans too), by key, and
    where each key holding a mapping (a section) is written."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        msg = f"{path}: config file not found"
        raise ConfigError(msg) from None
    except OSError as exc:
        msg = f"{path}: cannot read config file: {exc}"
        raise ConfigError(msg) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # Located like a rule file's: "position 18" of the whole file sent users counting bytes.
        line, column = not_utf8_position(raw, exc)
        msg = f"{path}:{line}:{column}: not UTF-8 text: save the file as UTF-8"
        raise ConfigError(msg) from None
    try:
        node, data = _document(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        msg = f"{where}: invalid YAML: {problem}"
        raise ConfigError(msg) from None
    except RecursionError:  # the composer recurses per level: '[[[[...' thousands deep
        msg = f"{path}: nested too deeply: at most {MAX_DEPTH} levels of mappings and lists"
        raise ConfigError(msg) from None
    if data is None:
        return {}, {}, {}, {}
    if not isinstance(data, dict):
        msg = f"{path}:1:1: expected a mapping of sections (database:, mail:, ...)"
        raise ConfigError(msg)
    duplicates = _duplicate_keys(node, str(path))
    if duplicates:
        raise ConfigError("\n".join(duplicates))
    _base_60_as_written(node, data)
    sources: dict[str, str] = {}
    written: dict[str, str] = {}
    sections: dict[str, str] = {}
    _record_positions(node, (), str(path), sources, written, sections)
    return data, sources, written, sections


_LIBYAML_LOADER = with_libyaml_parser(yaml.SafeLoader)


def _document(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node (for positions) and its values, composed once: parsing the text
    twice with PyYAML's own parser (compose, then safe_load) took 8 s to refuse a file of
    100,001 values. LibYAML parses what it reads alike; PyYAML's parser reads again a text
    LibYAML refuses, so a problem is reported in its words as before."""
    if _LIBYAML_LOADER is not None and reads_alike(text):
        try:
            return _composed(_LIBYAML_LOADER(text))
        except RecursionError:
            raise  # nested thousands deep: PyYAML's parser would only recurse as deep again
        except yaml.YAMLError as exc:
            if "maximum nesting depth" in str(exc):
                # LibYAML stops at 1,000 levels; PyYAML's parser took 4 s to get as deep.
                raise RecursionError from None
        except Exception:  # noqa: S110 (PyYAML's parser reads it again and says why)
            pass
    return _composed(yaml.SafeLoader(text))


def _composed(loader: yaml.SafeLoader) -> tuple[yaml.Node | None, Any]:
    try:
        node = loader.get_single_node()
        return node, None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


MAX_DEPTH = 60
"""Deepest nesting of mappings and lists config.yaml may use (it needs about five)."""
MAX_VALUES = 100_000
"""Most values config.yaml may hold once aliases are expanded: stops "billion laughs" files,
whose expansion hung the commands (as rule files' ``MAX_NODES``)."""


def _duplicate_keys(node: yaml.Node | None, file: str) -> list[str]:
    """``FILE:LINE:COL: duplicate key 'database'`` for each key a mapping repeats: YAML keeps the
    last one whole, so a second ``database:`` section appended to the file silently dropped
    the first one's keys (its ``url`` back to the default), as rule files already refuse.
    Raises :class:`ConfigError` for a document too large once aliases are expanded, or an
    alias inside the value it names."""
    problems: list[str] = []
    count = 0
    open_nodes: set[int] = set()
    root = node

    def walk(node: yaml.Node, depth: int = 0) -> None:
        nonlocal count
        count += 1
        where = f"{file}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"
        if depth > MAX_DEPTH:
            msg = f"{where}: nested too deeply: at most {MAX_DEPTH} levels of mappings and lists"
            raise ConfigError(msg)
        if count > MAX_VALUES:
            msg = f"{where}: too many values: more than {MAX_VALUES}"
            if root is not None and uses_aliases(root):
                msg += " once aliases (*name) are expanded"
            raise ConfigError(msg)
        if id(node) in open_nodes:
            msg = f"{where}: an alias (*name) refers to a value that contains it"
            raise ConfigError(msg)
        open_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item, depth + 1)
        elif isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                name, line = str(key_node.value), key_node.start_mark.line + 1
                if name in seen:
                    problems.append(
                        f"{file}:{line}:{key_node.start_mark.column + 1}: duplicate key {name!r} (first at line {seen[name]}); "
                        "each key may appear once: merge the two"
                    )
                seen.setdefault(name, line)
                walk(value_node, depth + 1)
        open_nodes.discard(id(node))

    if node is not None:
        walk(node)
    return problems


def _record_positions(
    node: yaml.Node | None,
    prefix: tuple[str, ...],
    file: str,
    out: dict[str, str],
    written: dict[str, str],
    sections: dict[str, str],
) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key = (*prefix, str(key_node.value))
        if isinstance(value_node, yaml.MappingNode) and value_node.value:
            # Kept apart from ``out``: a default below a written section has no source in it.
            mark = key_node.start_mark
            sections[".".join(key)] = f"{file}:{mark.line + 1}:{mark.column + 1}"
            _record_positions(value_node, key, file, out, written, sections)
        else:
            out[".".join(key)] = (
                f"{file}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}"
            )
            if value_node.tag == _YAML_BOOLEAN:
                written[".".join(key)] = str(value_node.value)
            if isinstance(value_node, yaml.SequenceNode):
                # A list written one item a line: an item's problem names the item's line.
                for index, item in enumerate(value_node.value):
                    out[".".join((*key, str(index)))] = (
                        f"{file}:{item.start_mark.line + 1}:{item.start_mark.column + 1}"
                    )


_YAML_BOOLEAN = "tag:yaml.org,2002:bool"
_YAML_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _base_60_as_written(node: yaml.Node | None, data: Any) -> None:
    """Put back as text what YAML 1.1 read as a base-60 number: ``end: 17:00`` unquoted was
    the number 1020, which the calendar took for 00:17 UTC (and a traceback comparing it with
    a quoted start). Read as YAML 1.2 and every person reads it: the text ``17:00``."""
    if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
        for key_node, value_node in node.value:
            key = key_node.value
            if key not in data:
                continue
            if isinstance(value_node, yaml.ScalarNode):
                if value_node.tag in _YAML_NUMBERS and ":" in value_node.value:
                    data[key] = value_node.value
            else:
                _base_60_as_written(value_node, data[key])
    elif isinstance(node, yaml.SequenceNode) and isinstance(data, list):
        for index, item in enumerate(node.value):
            if isinstance(item, yaml.ScalarNode):
                if item.tag in _YAML_NUMBERS and ":" in item.value:
                    data[index] = item.value
            else:
                _base_60_as_written(item, data[index])


def _reject_secrets_in_file(sources: Mapping[str, str]) -> list[str]:
    return [
        f"{sources[key]}: {key} is a secret and is read only from the environment; "
        f"set {env_name(key)} or {env_name(key)}_FILE instead"
        for key in sorted(SECRET_KEYS & sources.keys())
    ]


def _drop(data: dict[str, Any], parts: list[str]) -> None:
    for part in parts[:-1]:
        inner = data.get(part)
        if not isinstance(inner, dict):
            return
        data = inner
    data.pop(parts[-1], None)


def _explain(
    exc: ValidationError,
    sources: Mapping[str, str],
    written: Mapping[str, str],
    sections: Mapping[str, str],
    environ: Mapping[str, str],
) -> list[str]:
    """One ``WHERE: key: problem`` line per error (``NAME='text': problem`` for an environment
    variable); ``written``: the booleans' texts by key; ``sections``: where each key holding a
    mapping is written (an unknown ``databse:``)."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if loc[-1:] == ["[key]"]:  # a refused key (an attribute's name): the key's own line
            loc = loc[:-1]
        key = ".".join(loc)
        where = sources.get(key) or _source_of(key, sources)
        if error["type"] == "extra_forbidden" and key in sections:
            where = sections[key]  # the unknown key itself, not the first key below it
        problem, got = _problem(error, loc)
        if where.startswith(_FROM_ENVIRONMENT):
            lines.append(_env_problem(where, loc, sources, environ, error, problem))
            continue
        message = problem if error["type"] == "extra_forbidden" else f"{key}: {problem}"
        if got:
            message += f", got {_shown(error['input'], written.get(key))}"
        if where == DEFAULT_SOURCE:
            # A default refused by another key's value (mail.lease under a longer
            # smtp.data_done_timeout): "default: mail.lease: ..." read as a file named default.
            lines.append(
                f"{message} (the default; set {key} in the config file, or {env_name(key)})"
            )
        else:
            lines.append(f"{where}: {message}")
    return lines


_FROM_ENVIRONMENT = "environment "


def _problem(error: ErrorDetails, loc: list[str]) -> tuple[str, bool]:
    """What is wrong, without the key; and whether the value it got should follow it."""
    key = ".".join(loc)
    context = error.get("ctx") or {}
    whole = _whole_number_range(loc) if error["type"] in _INTEGER_ERRORS else None
    if error["type"] == "extra_forbidden":
        return f"unknown key {key!r}{_suggestion(loc)}", False
    if whole is not None:
        return f"must be a whole number {whole}", True
    if error["type"] == "model_type":
        # pydantic says "a valid dictionary or instance of MailSettings"
        return "expected a mapping of keys (key: value)", True
    if "wanted" in context and "got" in context:
        return f"expected {context['wanted']}", True
    return str(error["msg"]).removeprefix("Value error, "), False


_ENV_EXPECTED = {
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "string_type": "expected text",
    "tuple_type": "expected a list: values separated by commas (mon,tue) or [mon, tue]",
    "list_type": "expected a list: values separated by commas (mon,tue) or [mon, tue]",
    "dict_type": "expected a mapping, written {key: value, ...}",
    "model_type": "expected a mapping, written {key: value, ...}",
}
"""pydantic's words for a variable's value of the wrong type ("Input should be a valid
boolean, unable to interpret input"), said as what the variable should hold."""


def _env_problem(
    where: str,
    loc: list[str],
    sources: Mapping[str, str],
    environ: Mapping[str, str],
    error: ErrorDetails,
    problem: str,
) -> str:
    """``LEADFLOW_HTTP__ALLOW_ANONYMOUS='maybe': expected true or false``: the variable, its
    text as set (never a secret's) and what was expected; ``item 2: ...`` for one of a list's."""
    name = where.removeprefix(_FROM_ENVIRONMENT)
    error_type = error["type"]
    if error_type == "literal_error" and problem.startswith("Input should be "):
        problem = "expected " + problem.removeprefix("Input should be ")
    problem = _ENV_EXPECTED.get(error_type, problem)
    own = next(
        (k for k, source in sources.items() if source == where and ".".join(loc).startswith(k)),
        ".".join(loc),
    )
    below = loc[len(own.split(".")) :]
    if below and error_type != "extra_forbidden":
        part = ".".join(below)
        item = f"item {int(part) + 1}" if part.isdigit() else part
        problem = f"{item} ({error['input']!r}): {problem}"
    if own in SECRET_KEYS:
        return f"{name} (a secret, not shown): {problem}"
    return f"{name}={environ.get(name, '')!r}: {problem}"


def _shown(value: object, written: str | None = None) -> str:
    """A value as the file spelled it: a boolean as written (``yes``, ``Off``), else YAML's
    ``true``, not Python's ``True``."""
    if isinstance(value, bool):
        return written if written is not None else str(value).lower()
    return repr(value)


_INTEGER_ERRORS = frozenset(
    {
        "int_type",
        "int_parsing",
        "int_from_float",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
    }
)
_WHOLE_NUMBER_NOTES = {"http.port": "from 1 to 65535, or 0 to listen on any free port"}
"""Ranges whose lowest value means something else than a number of things."""


def _whole_number_range(loc: list[str]) -> str | None:
    """``from 1 to 65535`` for an integer setting (pydantic's own message, "unable to parse
    string as an integer", for ``port: 1e9`` hid that a number was wanted); else None."""
    key = ".".join(loc)
    if key in _WHOLE_NUMBER_NOTES:
        return _WHOLE_NUMBER_NOTES[key]
    info = _field_info(_section_of(loc), loc[-1])
    if info is None or info.annotation is not int:
        return None
    low = next((m.ge for m in info.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in info.metadata if isinstance(m, annotated_types.Le)), None)
    if low is not None and high is not None:
        return f"from {low} to {high}"
    if low is not None:
        return f"of at least {low}"
    return ""


def _suggestion(loc: list[str]) -> str:
    model = _section_of(loc)
    if model is None:
        return ""
    names = sorted({f.alias or name for name, f in model.model_fields.items()} - {"root"})
    expected = f"expected one of: {', '.join(names)}"
    return "; " + did_you_mean(loc[-1], names, cutoff=0.5, otherwise=expected)


def _section_of(loc: list[str]) -> type[BaseModel] | None:
    """The settings model holding the key ``loc`` names (None past a key that is no section)."""
    model: type[BaseModel] | None = Settings
    for part in loc[:-1]:
        model = _field_model(model, part)
    return model


def _field_info(model: type[BaseModel] | None, name: str) -> FieldInfo | None:
    """``model``'s field called ``name`` in code or in the file (its alias)."""
    if model is None:
        return None
    return next(
        (info for field, info in model.model_fields.items() if name in (field, info.alias)), None
    )


def _field_model(model: type[BaseModel] | None, name: str) -> type[BaseModel] | None:
    info = _field_info(model, name)
    annotation = info.annotation if info is not None else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None
