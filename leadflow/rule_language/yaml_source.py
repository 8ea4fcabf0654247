"""YAML with positions: every value and key of a document keeps its line and column.

The resolver follows YAML 1.2's core schema for booleans and numbers: only ``true``/``false``
are booleans (so a country list ``[NO, SE]`` stays strings), ``09:00`` is not the number 540,
``010`` is ten (not octal eight) and ``1e3`` is a number.

No input may crash the reader: values the constructors cannot build (``2026-13-01``,
``!!int abc``), nesting deeper than :data:`MAX_DEPTH`, aliases that refer to themselves and
alias "bombs" that expand past :data:`MAX_NODES` are all reported as :class:`YamlSyntaxError`.

Where PyYAML has LibYAML, its C parser reads the text (about five times faster than PyYAML's
own scanner and parser, most of ``leadflow check``'s YAML time); the nodes are still composed,
resolved and constructed here, in Python, with the same limits. A document the C parser does
not read whole is read again by PyYAML's parser, so every problem is reported in PyYAML's
words as before; tests/test_yaml_source_parsers.py holds the two to the same result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from leadflow.errors import YamlSyntaxError, uses_aliases
from leadflow.libyaml import reads_alike, with_libyaml_parser

Path = tuple[str | int, ...]


if TYPE_CHECKING:
    _LoaderBase = yaml.SafeLoader
else:
    _LoaderBase = object


class _Strict(_LoaderBase):
    """The composing and constructing both loaders share: depth bounded, positions in errors."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # PyYAML's composer recurses once per level: stop before Python's stack does.
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH + 1:
                message = f"nested too deeply: at most {MAX_DEPTH} levels of mappings and lists"
                raise ComposerError(None, None, message, self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:
            # PyYAML's constructors raise bare ValueErrors (``2026-13-01``, ``!!int abc``)
            # that carry no position; give them the node's.
            kind = str(node.tag).rsplit(":", 1)[-1]
            kind = {"timestamp": "date", "int": "whole number", "float": "number"}.get(kind, kind)
            problem = f"{node.value!r} is not a valid {kind}: {exc}"
            raise ConstructorError(None, None, problem, node.start_mark) from exc


class StrictSafeLoader(_Strict, yaml.SafeLoader):
    """SafeLoader without YAML 1.1's surprising implicit booleans and sexagesimal numbers."""


StrictSafeLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int"}
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictSafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
StrictSafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789")
)
StrictSafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in StrictSafeLoader.yaml_implicit_resolvers.items()
}
StrictSafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _decimal_integer(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    # YAML 1.2: "010" is ten; PyYAML's 1.1 constructor reads it as octal and fails on "09".
    return int(loader.construct_scalar(node))


StrictSafeLoader.add_constructor("tag:yaml.org,2002:int", _decimal_integer)


_CStrictLoader = with_libyaml_parser(StrictSafeLoader, _Strict)


MAX_DEPTH = 60
"""Deepest nesting of mappings and lists a rule file may use (a rule needs about a dozen)."""
MAX_NODES = 100_000
"""Most values a file may hold once aliases are expanded: stops "billion laughs" files (the
refusal names aliases only in a file that uses them)."""


@dataclass(frozen=True)
class Mark:
    line: int
    column: int


@dataclass
class SourceDocument:
    """A parsed YAML document and where each of its parts stands in the file."""

    file: str
    data: Any
    values: dict[Path, Mark] = field(default_factory=dict)
    keys: dict[Path, Mark] = field(default_factory=dict)
    duplicate_keys: list[tuple[Path, Mark]] = field(default_factory=list)
    plain: dict[Path, str] = field(default_factory=dict)
    """The text of each unquoted value YAML did not read as text (``~``, ``True``, ``.inf``,
    ``2026-01-31``), and of each YAML 1.1 boolean word it did (``yes``, ``off``): what the
    file wrote, for messages, where Python's spelling (``None``) would not be."""

    def mark(self, path: Path, *, key: bool = False) -> Mark:
        """The position of ``path``; the nearest enclosing node's when it has none of its own."""
        probe = path
        while True:
            found = (self.keys if key else self.values).get(probe) or self.values.get(probe)
            if found is not None or not probe:
                return found or Mark(1, 1)
            probe = probe[:-1]


def parse_document(file: str, text: str) -> SourceDocument:
    """Parse one YAML document, recording positions; raise :class:`YamlSyntaxError`."""
    if _CStrictLoader is not None and reads_alike(text):
        try:
            return _composed(file, _CStrictLoader(text))
        except YamlSyntaxError:
            # The walker's own limits (too many values, an alias inside itself): the text is
            # YAML and the position is right. Parsing it again with PyYAML only to be told the
            # same took a 1 MiB file of 300,000 values from 2 s to 11 s.
            raise
        except Exception:  # noqa: S110 (PyYAML's parser reads it again and says why)
            pass
    return parse_with_pyyaml(file, text)


def parse_with_pyyaml(file: str, text: str) -> SourceDocument:
    """:func:`parse_document` with PyYAML's own parser, the one whose words problems are in."""
    try:
        loader = StrictSafeLoader(text)
    except yaml.reader.ReaderError as exc:
        # The reader refuses control characters up front, naming only an offset.
        before = text[: exc.position]
        where = Mark(before.count("\n") + 1, exc.position - before.rfind("\n"))
        message = f"character #x{exc.character:04x} is not allowed in YAML (a control character)"
        raise YamlSyntaxError(message, where) from None
    try:
        node = loader.get_single_node()
        if node is not None:
            document = SourceDocument(file=file, data=None)
            _Walker(document, node).walk(node, ())
            document.data = loader.construct_document(node)
    except RecursionError:
        # A safety net only: compose_node bounds the depth before the stack runs out.
        stopped = loader.get_mark()
        message = f"nested too deeply: at most {MAX_DEPTH} levels of mappings and lists"
        raise YamlSyntaxError(message, Mark(stopped.line + 1, stopped.column + 1)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if "\\t" in problem or "'\\t'" in str(exc):
            problem = (
                "a tab character here: YAML indents with spaces only (replace the tab with spaces)"
            )
        elif (plain := _in_plain_words(exc, text)) is not None:
            problem, where = plain
        elif "alias" in (exc.context or "") or "alias" in problem:
            # Cron expressions start with * often enough to deserve the fix in the message.
            problem += (
                ' (YAML reads a value starting with * as an alias: quote it, e.g. "*/5 * * * *")'
            )
        raise YamlSyntaxError(problem, where) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc).splitlines()[0], Mark(1, 1)) from None
    finally:
        loader.dispose()
    if node is None:
        return SourceDocument(file=file, data=None)
    return document


def _in_plain_words(exc: yaml.MarkedYAMLError, text: str) -> tuple[str, Mark] | None:
    """PyYAML's structural errors (``expected <block end>, but found '<block mapping start>'``)
    said as what to fix in the file, and where; None for any other error (PyYAML's words)."""
    found, around = exc.problem_mark, exc.context_mark
    if found is None:
        return None
    where = Mark(found.line + 1, found.column + 1)
    if exc.problem == "could not find expected ':'" and around is not None:
        # PyYAML stops on the line after the one missing its ':'; point at that one.
        where = Mark(around.line + 1, around.column + 1)
    message = _structural_problem(exc.problem or "", found, around, text.splitlines())
    return None if message is None else (message, where)


def _structural_problem(problem: str, found: Any, around: Any, lines: list[str]) -> str | None:
    line = lines[found.line] if found.line < len(lines) else ""
    if problem.startswith("expected <block end>") and around is not None:
        if problem.endswith("'-'"):
            return (
                f"a list item ('-') where the mapping that starts on line {around.line + 1} "
                "expects a key: put the item under the key it belongs to (a line ending in "
                "':', with the item indented below it)"
            )
        indent = len(line) - len(line.lstrip(" "))
        keys = _first_key_column(lines[around.line] if around.line < len(lines) else "", around)
        if indent > keys:
            than = "more"
        elif indent < keys:
            than = "less"
        else:
            than = "differently"
        return (
            f"this line is indented {than} than its neighbours: it starts at column "
            f"{indent + 1}, but the keys of the mapping it is in start at column "
            f"{keys + 1} (line {around.line + 1}); line it up with the key above it "
            "that it belongs beside, or indent it under a key ending in ':'"
        )
    if problem == "mapping values are not allowed here":
        return (
            "a ':' followed by a space inside a value: quote the value (\"a: b\") or, for a "
            "nested key, put it on a line of its own, indented under its parent key"
        )
    if problem == "could not find expected ':'" and around is not None:
        started = lines[around.line].strip() if around.line < len(lines) else ""
        return (
            f"{started!r} is neither 'key: value' nor a list item "
            "'- value': add the ':' after the key, or, if it continues the value above it, "
            "quote that value"
        )
    return None


def _first_key_column(line: str, around: Any) -> int:
    """Where the mapping PyYAML names starts its keys (0-based): for a mapping that is a list
    item (``- field: score``) PyYAML marks the dash, two columns before the key."""
    column: int = around.column
    if line[column : column + 1] == "-":
        column += 1
        while line[column : column + 1] == " ":
            column += 1
    return column


class _FlowEmptyValueError(Exception):
    """An empty value in a flow collection, which LibYAML places elsewhere than PyYAML."""


def _composed(file: str, loader: Any) -> SourceDocument:
    try:
        node = loader.get_single_node()
        document = SourceDocument(file=file, data=None)
        if node is not None:
            _refuse_flow_empty_values(node)
            _Walker(document, node).walk(node, ())
            document.data = loader.construct_document(node)
        return document
    finally:
        loader.dispose()


def _refuse_flow_empty_values(root: yaml.Node) -> None:
    """Raise :class:`_FlowEmptyValueError` for an empty plain value inside ``[...]`` or ``{...}``."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, in_flow = stack.pop()
        if id(node) in seen:  # an alias: its node is checked once (and may contain itself)
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if in_flow and node.value == "" and not node.style:  # plain: None, or "" (LibYAML)
                raise _FlowEmptyValueError
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, in_flow or bool(node.flow_style)) for item in node.value]
        elif isinstance(node, yaml.MappingNode):
            flow = in_flow or bool(node.flow_style)
            for key, value in node.value:
                stack += [(key, flow), (value, flow)]


YAML11_BOOLEAN_WORDS = re.compile(r"^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$")
"""Words YAML 1.1 (and so many other tools) read as booleans, which rule files read as text."""
_TEXT = "tag:yaml.org,2002:str"


def _worth_spelling(node: yaml.ScalarNode) -> bool:
    # Called for plain scalars only (style None in PyYAML, "" in LibYAML).
    return node.tag != _TEXT or bool(YAML11_BOOLEAN_WORDS.match(node.value))


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class _Walker:
    """Records every node's position; refuses self-referring aliases, depth and alias bombs.

    It runs before construction, so nothing downstream ever sees a cyclic or exploding value.
    """

    def __init__(self, document: SourceDocument, root: yaml.Node) -> None:
        self.document = document
        self.root = root
        self.nodes = 0
        self.open: set[int] = set()

    def walk(self, node: yaml.Node, path: Path) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            message = f"too many values: more than {MAX_NODES}"
            if uses_aliases(self.root):
                message += " once aliases (*name) are expanded"
            raise YamlSyntaxError(message, _mark(node))
        if len(path) > MAX_DEPTH:
            message = f"nested too deeply: at most {MAX_DEPTH} levels of mappings and lists"
            raise YamlSyntaxError(message, _mark(node))
        if id(node) in self.open:
            raise YamlSyntaxError(
                "an alias (*name) refers to a value that contains it", _mark(node)
            )
        self.document.values[path] = _mark(node)
        if isinstance(node, yaml.ScalarNode) and not node.style and _worth_spelling(node):
            self.document.plain[path] = str(node.value)
        self.open.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))
        self.open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> None:
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                self.document.duplicate_keys.append(((*path, key), _mark(key_node)))
            seen.add(key)
            self.document.keys[(*path, key)] = _mark(key_node)
            self.walk(value_node, (*path, key))
