"""Every rule example in docs/rules.md and the README passes ``leadflow check`` (no rot).

Like watchfiles' ``tests/test_docs.py``: each fenced ``yaml`` block is a complete rule file,
checked with the shipped ``config.yaml`` and ``templates/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leadflow.cli import main
from leadflow.config import load_settings
from leadflow.mail.context import placeholder_unsubscribe_warning
from leadflow.rule_language.fields import Subject, field_catalog
from leadflow.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "rules.md"
BLOCKS = re.findall(r"^```yaml\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.M | re.S)
README_BLOCKS = re.findall(
    r"^```yaml\n(.*?)^```$", (ROOT / "README.md").read_text(encoding="utf-8"), re.M | re.S
)


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 5
    assert len(README_BLOCKS) == 1  # the worked example


@pytest.mark.parametrize(
    "block",
    BLOCKS + README_BLOCKS,
    ids=[f"block{i}" for i in range(len(BLOCKS))]
    + [f"readme{i}" for i in range(len(README_BLOCKS))],
)
def test_each_yaml_block_passes_check(
    block: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "example.yaml").write_text(block, encoding="utf-8")
    code = main(["--config", str(ROOT / "config.yaml"), "check", "--rules", str(folder)])
    out = capsys.readouterr().out
    assert code == 0, out
    # The shipped config.yaml sets no public URL: a block sending marketing email is warned of
    # the placeholder unsubscribe link, which is the config's matter, not the block's.
    settings = load_settings(ROOT / "config.yaml", env={}).settings
    placeholder = placeholder_unsubscribe_warning(settings, sends_marketing=True)
    assert re.fullmatch(
        f"(warning: {re.escape(str(placeholder))}\n)?"
        r"\d+ rules?, \d+ streams?(, a scoring model( \(disabled\))?)? OK, version [0-9a-f]{12}\n",
        out,
    ), out


@pytest.mark.parametrize("subject", list(Subject))
def test_every_stored_field_is_documented(subject: Subject) -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in field_catalog(subject, Settings()).fields:
        assert f"`{name}`" in text, name
