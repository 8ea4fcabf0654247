"""Email templates: layout, strict rendering, located problems, header-safe subjects."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from leadflow.errors import Problem, TemplateError
from leadflow.mail.context import email_context, sample_context
from leadflow.mail.templates import RenderedEmail, TemplateCatalog
from leadflow.settings import Settings

REPO_TEMPLATES = Path(__file__).parent.parent / "templates"


def write_template(folder: Path, name: str, **parts: str) -> None:
    suffixes = {"subject": ".subject.txt", "text": ".txt", "html": ".html"}
    for part, content in parts.items():
        (folder / f"{name}{suffixes.get(part, part)}").write_text(content, encoding="utf-8")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "templates"
    path.mkdir()
    return path


@pytest.fixture
def catalog(folder: Path) -> TemplateCatalog:
    settings = Settings.model_validate(
        {"root": str(folder.parent), "attributes": {"leads": {"industry": "string"}}}
    )
    return TemplateCatalog(folder, settings)


def sample_lead(settings: Settings) -> Any:
    """The sample context's lead, as a row: its view's fields."""
    view = sample_context(settings)["lead"]
    fields = ("id", "external_id", "name", "email", "company", "score", "stage")
    more = ("stage_entered_at", "last_activity_at", "timezone", "attributes")
    return SimpleNamespace(**{name: view[name] for name in fields + more})


class TestRendering:
    """A template renders its parts; the HTML part is autoescaped, the text part is not."""

    def test_three_parts_render_with_the_documented_context(
        self, folder: Path, catalog: TemplateCatalog
    ) -> None:
        write_template(
            folder,
            "hello",
            subject="Hi {{ lead.name }} <{{ lead.company }}>\n",
            text="Score {{ lead.score }} & {{ lead.company }}: {{ lead.crm_url }}\n",
            html="<p>{{ lead.company }} & <b>{{ rep.first_name }}</b></p>\n",
        )
        context = sample_context(catalog.settings)
        context["lead"]["company"] = "<Acme & Co>"
        rendered = catalog.render("hello", context)
        assert rendered == RenderedEmail(
            subject="Hi Jo Doe <<Acme & Co>>",
            text="Score 87 & <Acme & Co>: https://crm.example.com/leads/L-1007\n",
            html="<p>&lt;Acme &amp; Co&gt; & <b>Anna</b></p>\n",
        )

    def test_without_an_html_part_the_email_is_text_only(
        self, folder: Path, catalog: TemplateCatalog
    ) -> None:
        write_template(folder, "plain", subject="Plain", text="Body\n")
        assert catalog.render("plain", {}) == RenderedEmail("Plain", "Body\n", None)

    def test_names_lists_templates_but_not_partials(
        self, folder: Path, catalog: TemplateCatalog
    ) -> None:
        write_template(folder, "b_one", subject="s", text="t")
        write_template(folder, "a_two", subject="s", html="h")
        write_template(folder, "_footer", text="--")
        assert catalog.names() == ["a_two", "b_one"]


class TestHeaderInjection:
    """A subject can never carry a line break, whatever the data holds: no injected headers."""

    @pytest.mark.parametrize(
        "name", ["Jo\r\nBcc: victim@example.com", "Jo\nBcc: victim@example.com", "Jo\rBcc: x"]
    )
    def test_cr_lf_in_data_are_folded_into_one_line(
        self, folder: Path, catalog: TemplateCatalog, name: str
    ) -> None:
        write_template(folder, "inject", subject="New MQL: {{ lead.name }}", text="x")
        context = sample_context(catalog.settings)
        context["lead"]["name"] = name
        subject = catalog.render("inject", context).subject
        assert "\r" not in subject
        assert "\n" not in subject
        assert subject == "New MQL: " + " ".join(name.split())

    def test_a_multi_line_subject_template_becomes_one_line(
        self, folder: Path, catalog: TemplateCatalog
    ) -> None:
        write_template(folder, "long", subject="New MQL:\n  {{ lead.name }}\n\n", text="x")
        context = sample_context(catalog.settings)
        assert catalog.render("long", context).subject == "New MQL: Jo Doe"


class TestCheck:
    """``check`` finds every problem a send would hit, located at file:line, before any send."""

    def test_a_good_template_has_no_problems(self, folder: Path, catalog: TemplateCatalog) -> None:
        write_template(
            folder,
            "good",
            subject="{{ lead.attributes.industry }} lead",
            text="{% if deal %}{{ deal.amount }}{% endif %} {{ sla.due_at | localtime }}",
        )
        assert catalog.check("good") == []

    def test_an_undefined_variable_is_reported_with_its_line(
        self, folder: Path, catalog: TemplateCatalog
    ) -> None:
        write_template(folder, "typo", subject="ok", text="Hello\n{{ lead.nmae }}\n")
        assert catalog.check("typo") == [
            Problem(
                str(folder / "typo.txt"),
                2,
                0,
                "undefined variable: lead.nmae: lead has no field 'nmae'; did you mean 'name'? "
                "(see docs/email.md for the context)",
            )
        ]

    def test_an_undeclared_attribute_is_undefined(
        self, folder: Path, catalog: TemplateCatalog
    ) -> None:
        write_template(folder, "attr", subject="{{ lead.attributes.region }}", text="x")
        problems = catalog.check("attr")
        assert [(p.file, p.line) for p in problems] == [(str(folder / "attr.subject.txt"), 1)]
        assert "'region'" in problems[0].message

    def test_a_syntax_error_is_reported_with_its_line(
        self, folder: Path, catalog: TemplateCatalog
    ) -> None:
        write_template(folder, "broken", subject="ok", text="a\nb\n{{ lead.score + }}\nc\n")
        assert catalog.check("broken") == [
            Problem(
                str(folder / "broken.txt"),
                3,
                0,
                "syntax error: unexpected 'end of print statement'",
            )
        ]

    def test_an_error_in_a_partial_points_at_the_partial(
        self, folder: Path, catalog: TemplateCatalog
    ) -> None:
        write_template(folder, "_footer", text="--\n{{ nobody }}\n")
        write_template(
            folder, "with_footer", subject="ok", text="Body\n{% include '_footer.txt' %}"
        )
        problems = catalog.check("with_footer")
        assert [(p.file, p.line) for p in problems] == [(str(folder / "_footer.txt"), 2)]
        assert problems[0].message.startswith("undefined variable: 'nobody' is undefined")

    def test_a_missing_part_and_a_missing_template(
        self, folder: Path, catalog: TemplateCatalog
    ) -> None:
        write_template(folder, "half", subject="only a subject")
        assert catalog.check("half") == [
            Problem(str(folder / "half.txt"), 0, 0, "template 'half' has no text part")
        ]
        assert catalog.check("nope") == [
            Problem(
                str(folder / "nope.subject.txt"),
                0,
                0,
                f"no template 'nope'; templates in {folder}: half",
            ),
            Problem(
                str(folder / "nope.txt"), 0, 0, f"no template 'nope'; templates in {folder}: half"
            ),
        ]

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            (
                "{{ lead.attributs.industry }}",
                "lead.attributs: lead has no field 'attributs'; did you mean 'attributes'?",
            ),
            (
                "{{ lead.attributes.industri }}",
                "lead.attributes.industri: lead has no declared attribute 'industri'; "
                "did you mean 'industry'?",
            ),
            (
                "{{ owner.timezon }}",
                "owner.timezon: owner has no field 'timezon'; did you mean 'timezone'?",
            ),
            (
                "{{ deal['acount'] }}",
                "deal.acount: deal has no field 'acount'; did you mean 'account'?",
            ),
            ("{{ leed.name }}", "'leed' is undefined; did you mean 'lead'?"),
            ("{{ lead.region }}", "lead.region: lead has no field 'region'"),
        ],
    )
    def test_an_unknown_name_is_named_with_the_closest_one(
        self, folder: Path, catalog: TemplateCatalog, text: str, message: str
    ) -> None:
        """Not Jinja's "'dict object' has no attribute": where the name was looked up, and
        the closest name there, as rule errors say it."""
        write_template(folder, "typo", subject="ok", text=f"Hello\n\n{text}\n")
        expected = f"undefined variable: {message} (see docs/email.md for the context)"
        assert catalog.check("typo") == [Problem(str(folder / "typo.txt"), 3, 0, expected)]
        with pytest.raises(TemplateError) as caught:  # a send says the same, file and line
            catalog.frozen().render("typo", sample_context(catalog.settings))
        assert str(caught.value) == f"{folder / 'typo.txt'}:3: {expected}"

    def test_a_declared_attribute_without_a_value_is_none(
        self, folder: Path, catalog: TemplateCatalog
    ) -> None:
        """Every declared attribute is in ``lead.attributes``, None when the lead has none, as
        the sample context ``check`` renders with has it: what passes ``check`` renders."""
        write_template(
            folder,
            "industry",
            subject="ok",
            text=(
                "Hi {{ lead.attributes.industry }}/{{ lead.attributes.industry or 'your field' }}"
                "/{{ lead.attributes.industry is none }}/{{ 0 }}/{{ '' }}"
                "/{{ lead.attributes.industry | default('any field') }}"
                "/{{ lead.attributes.industry | d('a field') }}/{{ 0 | default(5) }}"
                "/{{ '' | default('blank', true) }}/{{ lead.nothing_here | default('undefined') }}"
            ),
        )
        settings = catalog.settings
        lead = SimpleNamespace(**{**vars(sample_lead(settings)), "attributes": {}})
        context = email_context(settings, lead=lead)  # type: ignore[arg-type]
        # A bare None prints nothing (a merge tag without a value), tests still see None, and
        # other empty-looking values print as they are.
        # ``default`` takes None for missing, as it took the attribute when it was left out.
        assert catalog.render("industry", context).text == (
            "Hi /your field/True/0//any field/a field/0/blank/undefined"
        )
        assert context["lead"]["attributes"] == {"industry": None}

    def test_render_raises_the_same_problem(self, folder: Path, catalog: TemplateCatalog) -> None:
        write_template(folder, "typo", subject="ok", text="{{ rep.nmae }}")
        with pytest.raises(TemplateError) as caught:
            catalog.render("typo", sample_context(catalog.settings))
        assert str(caught.value).startswith(f"{folder / 'typo.txt'}:1: undefined variable")

    def test_the_sandbox_refuses_internals(self, folder: Path, catalog: TemplateCatalog) -> None:
        write_template(folder, "evil", subject="ok", text="{{ lead.__class__.__mro__ }}")
        problems = catalog.check("evil")
        assert [(p.file, p.line) for p in problems] == [(str(folder / "evil.txt"), 1)]


class TestStarterTemplates:
    """The templates shipped in ``templates/`` all check cleanly against the sample context."""

    def test_every_starter_template_checks_cleanly(self) -> None:
        catalog = TemplateCatalog(REPO_TEMPLATES, Settings())
        assert catalog.names() == [
            "deal_recycled",
            "lead_reassigned",
            "mql_assigned",
            "nurture_case_study",
            "nurture_welcome",
            "sla_escalated",
            "sla_reminder",
        ]
        assert {name: catalog.check(name) for name in catalog.names()} == {
            name: [] for name in catalog.names()
        }

    def test_nurture_templates_carry_the_unsubscribe_link(self) -> None:
        settings = Settings()
        catalog = TemplateCatalog(REPO_TEMPLATES, settings)
        context = sample_context(settings)
        url = context["unsubscribe_url"]
        for name in ("nurture_welcome", "nurture_case_study"):
            rendered = catalog.render(name, context)
            # The link opens a page with a button (a link scanner's GET unsubscribes nobody):
            # the footer says so, not "with one click".
            assert rendered.text.endswith(
                "To unsubscribe, open this link and press the button on its page:\n" + url + "\n"
            )
            assert rendered.html is not None
            link = f'<a href="{url.replace("&", "&amp;")}">open this page</a>'
            assert f"To unsubscribe, {link} and press its button.</p>" in rendered.html
            assert "one click" not in rendered.text + rendered.html


def _maven_lead(settings: Settings, **fields: Any) -> Any:
    """A lead as the Maven example mapping imports an account: a company, no name or email."""
    values = {
        **vars(sample_lead(settings)),
        "external_id": "W3",
        "name": None,
        "email": None,
        "company": "Cheers",
        "score": 65,
    }
    return SimpleNamespace(**{**values, **fields})


def _timer(due_at: datetime, calendar: str = "default") -> Any:
    return SimpleNamespace(
        name="first_touch", started_at=due_at, due_at=due_at, level=0, calendar=calendar
    )


def _rep(timezone: str | None) -> Any:
    return SimpleNamespace(
        id=1, external_id="rep-rita", name="Rita Lo", email="rita@example.com", timezone=timezone
    )


class TestStarterTemplatesWithoutAName:
    """A lead without a name (the Maven mapping's accounts) is named by its company, else its
    external id, in every shipped template, with no blank where the name would be."""

    DUE = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)

    def render_all(self, lead: Any) -> dict[str, str]:
        settings = Settings()
        catalog = TemplateCatalog(REPO_TEMPLATES, settings)
        rep = _rep("Europe/Berlin")
        context = email_context(
            settings,
            lead=lead,
            rep=rep,
            owner=rep,
            manager=rep,
            sla=_timer(self.DUE),  # type: ignore[arg-type]
            rule_id="mql",
        )
        parts = {}
        for name in ("mql_assigned", "lead_reassigned", "sla_reminder", "sla_escalated"):
            rendered = catalog.render(name, context)
            parts[name] = rendered.subject
            parts[f"{name}.txt"] = rendered.text
            parts[f"{name}.html"] = rendered.html or ""
        return parts

    def test_the_company_stands_in_for_the_name(self) -> None:
        parts = self.render_all(_maven_lead(Settings()))
        assert {k: v for k, v in parts.items() if "." not in k} == {
            "mql_assigned": "New MQL: Cheers (score 65)",
            "lead_reassigned": "Reassigned to you: Cheers",
            "sla_reminder": "Reminder: Cheers is waiting for your follow-up",
            "sla_escalated": "Escalated: Rita Lo has not followed up on Cheers",
        }
        assert "Lead:    Cheers\nEmail:   (none)\n" in parts["mql_assigned.txt"]
        assert "<strong>Cheers</strong>,\nscore 65." in parts["mql_assigned.html"]
        assert "<strong>Cheers</strong> (score 65) has been" in parts["lead_reassigned.html"]
        assert [
            k
            for k, v in parts.items()
            if "  "
            in v.replace("Lead:    ", "")
            .replace("Email:   ", "")
            .replace("Score:   ", "")
            .replace("Stage:   ", "")
        ] == []

    def test_the_external_id_when_there_is_no_company_either(self) -> None:
        parts = self.render_all(_maven_lead(Settings(), company=None))
        assert parts["mql_assigned"] == "New MQL: W3 (score 65)"
        assert parts["sla_reminder"] == "Reminder: W3 is waiting for your follow-up"
        assert "Lead:    W3\n" in parts["mql_assigned.txt"]

    def test_a_named_lead_reads_as_before(self) -> None:
        parts = self.render_all(_maven_lead(Settings(), name="Ann Lee", email="ann@cheers.example"))
        assert parts["mql_assigned"] == "New MQL: Ann Lee at Cheers (score 65)"
        assert (
            "Lead:    Ann Lee (Cheers)\nEmail:   ann@cheers.example\n"
            in (parts["mql_assigned.txt"])
        )
        parts = self.render_all(_maven_lead(Settings(), email="ann@cheers.example"))
        assert parts["mql_assigned"] == "New MQL: ann@cheers.example at Cheers (score 65)"


class TestDueTimeZone:
    """The SLA due time is in the rep's timezone ("in your time zone"), else in the zone of
    the SLA's calendar, and then the email does not claim it is the rep's."""

    DUE = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)

    def settings(self) -> Settings:
        return Settings.model_validate(
            {
                "calendar": {"timezone": "America/New_York"},
                "calendars": {"apac": {"timezone": "Asia/Tokyo"}},
            }
        )

    def render(self, rep_timezone: str | None, calendar: str = "default") -> RenderedEmail:
        settings = self.settings()
        rep = _rep(rep_timezone)
        context = email_context(
            settings,
            lead=_maven_lead(settings, name="Ann Lee"),
            rep=rep,
            owner=rep,
            sla=_timer(self.DUE, calendar),  # type: ignore[arg-type]
            rule_id="mql",
        )
        return TemplateCatalog(REPO_TEMPLATES, settings).render("mql_assigned", context)

    def test_a_rep_without_a_timezone_reads_the_calendars(self) -> None:
        rendered = self.render(None)
        line = "Please get in touch by Wed 02 Dec 13:00 EST (the first_touch SLA).\n"
        assert line in rendered.text
        assert rendered.html is not None
        assert "by <strong>Wed 02 Dec 13:00 EST</strong> (the first_touch SLA).</p>" in (
            rendered.html
        )

    def test_the_named_calendar_of_the_sla(self) -> None:
        line = "Please get in touch by Thu 03 Dec 03:00 JST (the first_touch SLA).\n"
        assert line in self.render(None, "apac").text

    def test_a_rep_with_a_timezone_reads_their_own(self) -> None:
        line = "Please get in touch by Wed 02 Dec 19:00 CET (the first_touch SLA, in your time zone).\n"
        assert line in self.render("Europe/Berlin").text

    def test_the_filter_falls_back_to_the_default_calendar(self, folder: Path) -> None:
        write_template(
            folder, "due", subject="s", text="{{ sla.due_at | localtime(rep.timezone) }}"
        )
        settings = self.settings()
        context = email_context(
            settings,
            rep=_rep(None),  # type: ignore[arg-type]
            sla=_timer(self.DUE),  # type: ignore[arg-type]
        )
        assert (
            TemplateCatalog(folder, settings).render("due", context).text == "Wed 02 Dec 13:00 EST"
        )


class TestOneContextForAllParts:
    """An email's parts render over one context (a frozen catalog, as the daemon renders)."""

    def test_a_part_setting_a_variable_does_not_reach_the_next_part(
        self, folder: Path, catalog: TemplateCatalog
    ) -> None:
        write_template(
            folder,
            "greeting",
            subject="{% set greeting = 'Hi' %}{{ greeting }} {{ lead.name }}",
            text="{{ greeting }}\n",
        )
        frozen = catalog.frozen()
        with pytest.raises(TemplateError) as raised:
            frozen.render("greeting", sample_context(catalog.settings))
        assert raised.value.problem == Problem(
            str(folder / "greeting.txt"),
            1,
            0,
            "undefined variable: 'greeting' is undefined (see docs/email.md for the context)",
        )

    def test_keys_and_the_dict_attributes_resolve_as_in_jinjas_sandbox(
        self, folder: Path, catalog: TemplateCatalog
    ) -> None:
        """``x.key`` is the key; a name dicts have as a method (``items``) stays the method,
        and a missing key is an error naming its line, as before the short way to keys (the
        newline after ``endfor`` goes, as ``trim_blocks`` says)."""
        lines = (
            "{% for k, v in lead.attributes.items() %}{{ k }}={{ v }};{% endfor %}\n"
            "{{ lead.attributes['items'] }} {{ lead.attributes.get('none', '-') }}\n"
        )
        write_template(folder, "keys", subject="{{ lead.name }}", text=lines)
        write_template(folder, "missing", subject="{{ lead.name }}", text=lines + "{{ lead.nope }}")
        frozen = catalog.frozen()
        context = sample_context(catalog.settings)
        context["lead"]["attributes"] = {"industry": "software", "items": 3}
        assert frozen.render("keys", context) == RenderedEmail(
            subject="Jo Doe", text="industry=software;items=3;3 -\n", html=None
        )
        with pytest.raises(TemplateError) as raised:
            frozen.render("missing", context)
        assert raised.value.problem is not None
        assert (raised.value.problem.file, raised.value.problem.line) == (
            str(folder / "missing.txt"),
            3,
        )


class TestCompiledTemplatesKept:
    """Compiled templates are kept in the user's cache folder and used only for the same
    source, file and environment; problems are found as without them; no folder, no cache."""

    @pytest.fixture
    def cache(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        return tmp_path / "cache" / "leadflow" / "templates"

    def settings(self, folder: Path) -> Settings:
        return Settings.model_validate({"root": str(folder.parent)})

    def test_kept_and_used_for_the_same_source_only(self, folder: Path, cache: Path) -> None:
        write_template(
            folder, "hi", subject="Hi {{ lead.name }}\n", text="T\n", html="<b>{{ x }}</b>"
        )
        first = TemplateCatalog(folder, self.settings(folder))
        assert first.render("hi", {"lead": {"name": "<Jo>"}, "x": "<&>"}).html == (
            "<b>&lt;&amp;&gt;</b>"
        )
        kept = sorted((entry.name, entry.stat().st_ino) for entry in cache.iterdir())
        assert len(kept) == 3  # subject, text, html
        assert oct(cache.stat().st_mode & 0o777) == "0o700"
        again = TemplateCatalog(folder, self.settings(folder))
        assert again.render("hi", {"lead": {"name": "<Jo>"}, "x": "<&>"}) == RenderedEmail(
            "Hi <Jo>", "T\n", "<b>&lt;&amp;&gt;</b>"
        )
        # Read, not compiled and written again (a write replaces the file: a new inode).
        assert sorted((entry.name, entry.stat().st_ino) for entry in cache.iterdir()) == kept
        write_template(folder, "hi", subject="Hello {{ lead.name }}\n")
        changed = TemplateCatalog(folder, self.settings(folder))
        assert changed.render("hi", {"lead": {"name": "Jo"}, "x": 1}).subject == "Hello Jo"

    def test_a_broken_template_is_reported_as_before(self, folder: Path, cache: Path) -> None:
        write_template(folder, "hi", subject="Hi\n", text="{{ lead.name }\n")
        catalog = TemplateCatalog(folder, self.settings(folder))
        problems = catalog.check("hi")
        assert [(p.line, p.message) for p in problems] == [(1, "syntax error: unexpected '}'")]
        assert len(list(cache.iterdir())) == 1  # the subject only: a failed compile is not kept
        assert TemplateCatalog(folder, self.settings(folder)).check("hi") == problems

    def test_a_damaged_entry_is_compiled_again(self, folder: Path, cache: Path) -> None:
        write_template(folder, "hi", subject="Hi {{ lead.name }}\n", text="T\n")
        TemplateCatalog(folder, self.settings(folder)).render("hi", {"lead": {"name": "Jo"}})
        for entry in cache.iterdir():
            entry.write_bytes(entry.read_bytes()[:20])
        catalog = TemplateCatalog(folder, self.settings(folder))
        assert catalog.render("hi", {"lead": {"name": "Jo"}}).subject == "Hi Jo"

    def test_a_folder_that_cannot_be_made_is_no_cache(
        self, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "file").write_text("", encoding="utf-8")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
        write_template(folder, "hi", subject="Hi {{ lead.name }}\n", text="T\n")
        catalog = TemplateCatalog(folder, self.settings(folder))
        assert catalog.render("hi", {"lead": {"name": "Jo"}}).subject == "Hi Jo"

    def test_another_users_or_a_shared_folder_is_not_used(self, folder: Path, cache: Path) -> None:
        cache.mkdir(parents=True)
        cache.chmod(0o777)
        write_template(folder, "hi", subject="Hi\n", text="T\n")
        TemplateCatalog(folder, self.settings(folder)).render("hi", {})
        assert list(cache.iterdir()) == []

    def test_a_shared_folder_above_it_is_not_used_either(self, folder: Path, cache: Path) -> None:
        """Whoever may write in the folder above could swap the cache folder for their own
        after the check (found in review): XDG_CACHE_HOME writable by all, without the sticky
        bit, is no cache; with it (as /tmp), nobody may rename another's folder: used."""
        base = cache.parent.parent
        base.mkdir()
        base.chmod(0o777)
        write_template(folder, "hi", subject="Hi\n", text="T\n")
        TemplateCatalog(folder, self.settings(folder)).render("hi", {})
        assert list(cache.iterdir()) == []
        base.chmod(0o1777)
        TemplateCatalog(folder, self.settings(folder)).render("hi", {})
        assert len(list(cache.iterdir())) == 2
