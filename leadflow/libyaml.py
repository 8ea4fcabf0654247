"""LibYAML's parser under PyYAML's composer and constructors.

LibYAML's C parser reads a document about five times faster than PyYAML's own scanner and
parser; the nodes are still composed, resolved and constructed in Python, so the loaders keep
their limits (depth, values, aliases) and their positions. LibYAML reads a few texts
differently (a tab where PyYAML refuses one, control characters), so callers give it only
texts it reads alike (:func:`reads_alike`) and read a document it refuses again with PyYAML's
parser, whose words every problem is reported in.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.reader import Reader


def with_libyaml_parser(loader: type[yaml.SafeLoader], *mixins: type) -> Any:
    """A loader resolving and constructing as ``loader`` (after ``mixins``) whose events come
    from LibYAML's parser; None where PyYAML was built without LibYAML."""
    try:
        from yaml.cyaml import CParser  # type: ignore[attr-defined]
    except ImportError:
        return None

    class LibYamlLoader(*mixins, Composer, CParser, SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
        yaml_implicit_resolvers = loader.yaml_implicit_resolvers
        yaml_constructors = loader.yaml_constructors

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    return LibYamlLoader


def reads_alike(text: str) -> bool:
    """Whether LibYAML reads ``text`` as PyYAML does: it takes a tab for a space where PyYAML
    refuses it, and places an empty value in a flow collection (``{a: }``) a column or a line
    away; PyYAML's reader refuses control characters up front."""
    return "\t" not in text and not Reader.NON_PRINTABLE.search(text)
