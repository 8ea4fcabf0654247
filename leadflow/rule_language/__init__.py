"""The rule language: what marketing ops write in ``rules/*.yaml``, parsed into frozen objects.

``yaml_source`` reads YAML keeping line and column of every node; ``fields`` says what a
condition may refer to; ``conditions`` is the typed condition tree and its parser; ``to_sql``
and ``to_python`` evaluate the same tree inside the database and for a single record;
``actions`` and ``model`` describe rules and nurture streams; ``loader`` turns a folder into an
immutable, versioned :class:`~leadflow.rule_language.model.RuleSet` or a list of problems.
"""
