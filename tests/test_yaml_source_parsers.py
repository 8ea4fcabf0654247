"""Rule files read through LibYAML's parser give what PyYAML's own parser gives.

:func:`parse_document` reads with LibYAML's C parser when PyYAML has it, and with PyYAML's
parser whenever the C one does not read a document whole; :func:`parse_with_pyyaml` is the
reference. Both must agree on every value, every key's and value's line and column, duplicate
keys, and on every problem (its words and position): on the shipped YAML files, on documents
written to reach the corners of the syntax, and on generated data in every dump style.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.errors import YamlSyntaxError
from leadflow.rule_language import yaml_source
from leadflow.rule_language.yaml_source import parse_document, parse_with_pyyaml

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(
    path
    for pattern in ("rules/**/*.y*ml", "rule_tests/**/*.y*ml", "examples/**/*.y*ml", "*.yaml")
    for path in REPO.glob(pattern)
)

pytestmark = pytest.mark.skipif(
    yaml_source._CStrictLoader is None, reason="PyYAML without LibYAML: one parser only"
)


def outcome(parse: Any, text: str) -> tuple[Any, ...]:
    try:
        document = parse("f.yaml", text)
    except YamlSyntaxError as exc:
        return ("problem", exc.message, exc.mark)
    return (
        "document",
        document.data,
        document.values,
        document.keys,
        document.duplicate_keys,
        document.plain,
    )


def test_libyaml_reads_the_documents_itself() -> None:
    """The fast path is taken (a document it read is not read again by PyYAML)."""
    assert yaml_source._CStrictLoader.__mro__[3] is yaml.cyaml.CParser  # type: ignore[attr-defined]
    document = yaml_source._composed("f.yaml", yaml_source._CStrictLoader("a: [1, {b: x}]\n"))
    assert document.data == {"a": [1, {"b": "x"}]}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.relative_to(REPO).as_posix())
def test_shipped_files(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = outcome(parse_document, text)
    assert found[0] == "document"
    assert found == outcome(parse_with_pyyaml, text)


CORNERS = [
    "",
    "# only a comment\n",
    "---\n...\n",
    "a: 1\nb: [x, y]\nc: {d: e}\n",
    "a: 1\na: 2\n",
    "rules:\n  - id: x\n    when: {field: score, at_least: 60}\n    actions:\n      - set_stage: mql\n",
    "t: |\n  two\n  lines\nf: >-\n  folded\n  text\n\n  paragraph\n",
    "k: |2\n    indented\n",
    "? complex key\n: value\n? [a, b]\n: list key\n",
    "x: &a {p: 1}\ny: *a\nz: [*a, *a]\n",
    "x: *nothing\n",
    "cron: */5 * * * *\n",
    "a: b: c\n",
    "a:\n\t- tab\n",
    "a: [1, 2\n",
    "rules: [a\ntests: x\n",
    "- a\nb: c\n",
    "a: 'it''s'\nb: \"\\u00e9\\t\\x41\"\nc: '\n  folded quoted'\n",
    "%YAML 1.1\n---\na: 1\n",
    "%YAML 2.0\n---\na: 1\n",
    "%TAG !e! tag:example.com,2000:\n---\na: !e!thing x\n",
    "a: !!str 10\nb: !!int '7'\nc: !!float 1\nd: !!bool true\ne: !!null ''\n",
    "a: !!int abc\n",
    "d: 2026-13-01\n",
    "d: 2026-03-02\nt: 2026-03-02T09:00:00Z\n",
    "n: [010, 09, 0x1F, 1e3, .5, -.inf, .NaN, +12, 1_000, 12:30, NO, yes, ~, null, Null]\n",
    'é: ünïcödé\n"日本": 語\nemoji: 😀 x\n',
    "a: x\r\nb: y\r\n",
    "a: x\rb: y\r",
    "a: one\u2028b: two\u0085c: three\n",
    "a: [b, {c: d, e: [f, {g: h}]}, 'i', \"j\"]\n",
    "{a: 1, b: [2, 3]}\n",
    "[a, b, [c, [d]]]\n",
    "- a\n-\n  - b\n  - c\n- {d: e}\n- ? f\n  : g\n",
    "a:\n- 1\n- 2\nb:\n  - 3\n",
    "a:    spaced   \nb:\ttabbed value\n",
    "a: value # comment\n# between\nb: 'x # not a comment'\n",
    "key with spaces: v\n'quoted key': w\n\"dq\": z\n",
    "a: {b: [1, 2], c: }\n",
    "a: [1, 2,]\n",
    "a: {b: 1,, c: 2}\n",
    "a: @reserved\n",
    "a: `reserved\n",
    "- - - - - deep\n",
    "[" * 70 + "]" * 70 + "\n",
    "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 70)),
    "x: &x [*x]\n",
    "a: &a [1, 1]\nb: &b [*a, *a]\nc: &c [*b, *b]\n",
    "a: |\n  x\n b: y\n",
    "a: >\n\n  leading blank\n",
    "a: 'unterminated\n",
    'a: "bad escape \\q"\n',
    "a: b\n  c: d\n",
    "  a: 1\n b: 2\n",
    "a: 1\n---\nb: 2\n",
    "!!map {a: 1}\n",
    "!local x\n",
    "a: !!python/object:os.system x\n",
    "a: <<\n",
    "base: &base {x: 1}\nderived:\n  <<: *base\n  y: 2\n",
    "a: -\n",
    "- -1\n- - 2\n",
    ": no key\n",
    "a: 1\n\ufeffb: 2\n",
    "a: \x7f\n",
    "a: \x01\n",
    "a: \ud7ff\ue000\n",
    "a: " + "long " * 400 + "\n",
    "a:\tx\n",
    "a: [x,\ty]\n",
    "a: x\t# comment\n",
    "a: |\n  \tkept\n",
    "a: {c: }\n",
    "a: {c:}\n",
    "a: {c: , d: 1}\n",
    "[a: ]\n",
    "[a: , b]\n",
    "{? }\n",
    "{? , a: 1}\n",
    "a: [x: ]\n",
    "a: {b:\n }\n",
    "{a: 1, b:  }\n",
    "[ : x]\n",
    "a: &e {b: }\nc: *e\n",
    "a: &e [*e, {b: }]\n",
    "a:\nb: ''\nc: \"\"\nd: {e: '', f: \"\"}\n",
]


@pytest.mark.parametrize("text", CORNERS)
def test_corners(text: str) -> None:
    assert outcome(parse_document, text) == outcome(parse_with_pyyaml, text)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.dates(),
)
data = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(
    value=data,
    flow=st.sampled_from([None, True, False]),
    width=st.sampled_from([20, 80, 10_000]),
    indent=st.sampled_from([2, 4]),
    style=st.sampled_from([None, "'", '"', "|", ">"]),
    explicit=st.booleans(),
)
def test_generated_documents(
    value: Any, flow: bool | None, width: int, indent: int, style: str | None, explicit: bool
) -> None:
    text = yaml.safe_dump(
        value,
        default_flow_style=flow,
        width=width,
        indent=indent,
        default_style=style,
        explicit_start=explicit,
        allow_unicode=True,
    )
    assert outcome(parse_document, text) == outcome(parse_with_pyyaml, text)
