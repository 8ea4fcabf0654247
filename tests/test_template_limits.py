"""A template may not render, or build on the way, more than a part of an email holds.

Pins an outside tester's find: ``{{ 'a' * 1000000000 }}`` passed ``leadflow check`` after 51 s
and 4.9 GB, two nested ``range`` loops never ended, and a daemon reloading such a template
grew to 6 GB with no log line. Each way a template could make a part too long (or loop without
end) is now a problem at its file and line, found before the work is done; ordinary templates
render as before. The cases are just past the limits, so that without the guards each one
renders (and the test fails) in a moment rather than taking the machine's memory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from leadflow.errors import Problem, TemplateError
from leadflow.mail.context import sample_context
from leadflow.mail.render_limits import MAX_PART_CHARS, MAX_RANGE_STEPS
from leadflow.mail.templates import TemplateCatalog
from leadflow.settings import Settings
from tests.test_mail_templates import write_template

LIMIT = "a part of an email renders at most 524,288 (docs/email.md, Limits)"
NOT_ALLOWED = "not allowed in a template: "


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "templates"
    path.mkdir()
    return path


@pytest.fixture
def catalog(folder: Path) -> TemplateCatalog:
    return TemplateCatalog(folder, Settings.model_validate({"root": str(folder.parent)}))


def test_the_limits() -> None:
    assert (MAX_PART_CHARS, MAX_RANGE_STEPS) == (524_288, 100_000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "Hi\n{{ '-' * 600000 }}\n",
            f"'*' would make 600,000 characters; {LIMIT}",
            id="repeating-a-string",
        ),
        pytest.param(
            "Hi\n{{ ['-'] * 600000 }}\n",
            f"'*' would make 600,000 characters; {LIMIT}",
            id="repeating-a-list",
        ),
        pytest.param(
            "{% set ns = namespace(s='x') %}\n{% for i in range(20) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}\n",
            f"'~' would make 1,048,576 characters; {LIMIT}",
            id="doubling-with-tilde",
        ),
        pytest.param(
            "{% set ns = namespace(s='x') %}\n{% for i in range(20) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}\n",
            f"'+' would make 1,048,576 characters; {LIMIT}",
            id="doubling-with-plus",
        ),
        pytest.param(
            "{% for i in range(400) %}{% for j in range(400) %}{% endfor %}{% endfor %}\n",
            "loops over range() would take more than 100,000 steps in one part (nested loops "
            "multiply)",
            id="nested-loops",
        ),
        pytest.param(
            "{% for i in range(100001) %}{% endfor %}\n",
            "range() of 100,001 steps; a part loops at most 100,000",
            id="one-long-range",
        ),
        pytest.param(
            "{{ 'x'|center(600000) }}\n",
            f"center would make 600,000 characters; {LIMIT}",
            id="center-filter",
        ),
        pytest.param(
            "{{ 'x'.rjust(600000) }}\n",
            f"str.rjust would make 600,000 characters; {LIMIT}",
            id="padding-method",
        ),
        pytest.param(
            "{{ '%600000s'|format('x') }}\n",
            f"a '%' width would make 600,000 characters; {LIMIT}",
            id="format-filter-width",
        ),
        pytest.param(
            "{{ '%600000s' % 'x' }}\n",
            f"a '%' width would make 600,000 characters; {LIMIT}",
            id="percent-width",
        ),
        pytest.param(
            "{{ '{:>600000}'.format('x') }}\n",
            f"a format width would make 600,000 characters; {LIMIT}",
            id="format-method-width",
        ),
        pytest.param(
            "{{ range(3)|join('x' * 300000) }}\n",
            f"join would make 600,000 characters; {LIMIT}",
            id="join-separator",
        ),
        pytest.param(
            "{{ ('a' * 1000)|replace('a', 'bbbbbbbbbb') }}{{ ('a' * 60000)|replace('a', 'bbbbbbbbbb') }}\n",
            f"replace would make 600,000 characters; {LIMIT}",
            id="replace-growing",
        ),
        pytest.param(
            "{{ [1]|batch(100001, 'x')|list }}\n",
            "batch or slice of 100,001; at most 100,000",
            id="batch-filled",
        ),
        pytest.param(
            "{{ lipsum(500) }}\n",
            f"lipsum would make 600,000 characters; {LIMIT}",
            id="lipsum",
        ),
        pytest.param(
            "{{ 7 ** 1001 }}\n",
            "'**' with an exponent of 1,001; at most 1,000",
            id="huge-power",
        ),
    ],
)
def test_each_way_past_the_limit_is_a_problem_at_its_line(
    folder: Path, catalog: TemplateCatalog, text: str, message: str
) -> None:
    write_template(folder, "big", subject="Subject", text=text)
    line = 1 + text[: text.index("{{" if "{{" in text else "{%")].count("\n")
    if "range(20)" in text:
        line = 2  # the loop's line, where the string is built
    assert catalog.check("big") == [
        Problem(str(folder / "big.txt"), line, 0, NOT_ALLOWED + message)
    ]


def test_a_part_rendering_too_much_is_a_problem_of_its_file(
    folder: Path, catalog: TemplateCatalog
) -> None:
    """Many small pieces, each within the limits, adding up past it."""
    write_template(
        folder, "long", subject="Subject", html="{% for i in range(60000) %}0123456789{% endfor %}"
    )
    write_template(folder, "long", text="ok")
    assert catalog.check("long") == [
        Problem(
            str(folder / "long.html"),
            0,
            0,
            NOT_ALLOWED + "the part renders more than 524,288 characters (docs/email.md, Limits)",
        )
    ]


def test_ordinary_templates_render_as_before(folder: Path, catalog: TemplateCatalog) -> None:
    """Every guarded operation, used within the limits, gives what Jinja gives."""
    write_template(
        folder,
        "fine",
        subject="{{ lead.name ~ ' at ' ~ lead.company }}",
        text=(
            "{{ '-' * 3 }}|{{ [1, 2] + [3] }}|{{ 'a' + 'b' }}|{{ '%3s' % 'x' }}|"
            "{{ '%-4s'|format('y') }}|{{ '{:>3}'.format('z') }}|{{ 'q'.rjust(3) }}|"
            "{{ 'w'|center(3) }}|{{ range(3)|join(', ') }}|{{ 'aXa'|replace('a', 'bb') }}|"
            "{{ [1, 2, 3]|batch(2, 0)|list }}|{{ range(4)|length }}|"
            "{% for i in range(3) %}{% for j in range(2) %}{{ i }}{{ j }} {% endfor %}{% endfor %}|"
            "{{ 2 ** 10 }}|{{ range(5)|reverse|list }}|{{ range(0, 9, 3)|reverse|list }}"
        ),
        html="<p>{{ '<b>' ~ lead.name }}</p>",
    )
    rendered = catalog.render("fine", sample_context(catalog.settings))
    assert rendered.subject == "Jo Doe at Acme GmbH"
    assert rendered.text == (
        "---|[1, 2, 3]|ab|  x|y   |  z|  q| w |0, 1, 2|bbXbb|[[1, 2], [3, 0]]|4|"
        "00 01 10 11 20 21 |1024|[4, 3, 2, 1, 0]|[6, 3, 0]"
    )
    assert rendered.html == "<p>&lt;b&gt;Jo Doe</p>"


def test_sending_such_a_template_fails_the_email_not_the_process(
    folder: Path, catalog: TemplateCatalog
) -> None:
    """The engine renders with the same guards: the firing fails with the reason (and is
    counted, as a template that raises is), nothing is half-made."""
    write_template(folder, "big", subject="Subject", text="{{ lead.name * 600000 }}")
    with pytest.raises(TemplateError) as raised:
        catalog.render("big", sample_context(catalog.settings))
    assert str(raised.value) == (
        f"{folder / 'big.txt'}:1: {NOT_ALLOWED}'*' would make 3,600,000 characters; {LIMIT}"
    )


@pytest.mark.slow
def test_check_of_the_testers_template_answers_at_once(tmp_path: Path) -> None:
    """The tester's own template, in a real ``leadflow check``: a problem and exit 1, in a
    process that stays small (before: 51 s, 4.9 GB, and OK)."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "rules:\n  - id: r\n    when: {field: score, at_least: 50}\n"
        "    actions: [notify: {to: owner, template: evil}]\n",
        encoding="utf-8",
    )
    templates = tmp_path / "templates"
    templates.mkdir()
    write_template(templates, "evil", subject="S {{ lead.name }}", text="{{ 'a' * 1000000000 }}\n")
    leadflow = str(Path(sys.executable).with_name("leadflow"))
    script = (
        "import resource, subprocess, sys; "
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "sys.exit(subprocess.run(sys.argv[1:]).returncode)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, leadflow, "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout.splitlines() == [
        f"rules/r.yaml:4:23: rule r: template 'evil': {templates / 'evil.txt'}:1: "
        f"{NOT_ALLOWED}'*' would make 1,000,000,000 characters; {LIMIT}",
        "1 problem",
    ]
