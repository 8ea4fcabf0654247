"""A JSON Schema (draft 2020-12) of rule files, for editors: completion and validation as you type.

The schema is built from the same tables the loader uses (fields per subject with the
attributes declared in config, operators per value type, stages, calendars), so an editor
offers exactly the names ``leadflow check`` accepts. It checks the shape; ``leadflow check``
remains the authority (stream references, templates, duplicate ids).
"""

from __future__ import annotations

from typing import Any, get_args

from leadflow.rule_language.actions import SHORTHAND, StartSla
from leadflow.rule_language.fields import Subject, ValueType, field_catalog
from leadflow.rule_language.model import RULE_ID_PATTERN
from leadflow.rule_language.operators import Operand, operators_for
from leadflow.settings import DEFAULT_CALENDAR, Settings

Schema = dict[str, Any]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_DURATION_TEXT = r"^\s*(?:\d+(?:\.\d+)?\s*[smhdwSMHDW]\s*)+$"
_TEMPLATE = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$", "description": "a template name"}
_DATE = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}(?:[Tt ].*)?$",
    "description": "a date like 2026-01-31 or a time like 2026-01-31T09:00:00Z",
}


def rule_file_schema(settings: Settings) -> Schema:
    """The schema of one rule file under ``settings`` (declared attributes, stages, calendars)."""
    defs: Schema = {
        "duration": _duration(zero=False),
        "offset": _duration(zero=True),
        "rule": _rule(),
        "stream": _stream(),
        "scoring": _scoring(),
        "start_sla": _start_sla(settings),
        **_actions(settings),
    }
    for subject in Subject:
        defs[f"{subject.value}_condition"] = _condition(subject, settings)
    return {
        "$schema": DRAFT,
        "$id": "urn:leadflow:rule-file",
        "title": "leadflow rule file",
        "description": "Rules, nurture streams and the scoring model; `leadflow check` "
        "validates a folder of them.",
        # An empty file is refused by ``leadflow check`` (a save cut short would drop rules).
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "rules": {"type": "array", "items": {"$ref": "#/$defs/rule"}},
            "streams": {"type": "array", "items": {"$ref": "#/$defs/stream"}},
            "scoring": {"$ref": "#/$defs/scoring"},
        },
        "$defs": defs,
    }


def _duration(*, zero: bool) -> Schema:
    text: Schema = {"type": "string", "pattern": _DURATION_TEXT}
    seconds: Schema = {"type": "number", "exclusiveMinimum": 0}
    if zero:
        seconds = {"type": "number", "minimum": 0}
        text = {"anyOf": [text, {"const": "0"}]}
    return {
        "description": "a duration: 90m, 4h, 2d, 1w, 1d 12h, or seconds",
        "anyOf": [text, seconds],
    }


def _rule() -> Schema:
    def when_and_actions(subject: str) -> Schema:
        return {
            "properties": {
                "when": {"$ref": f"#/$defs/{subject}_condition"},
                "actions": {"items": {"$ref": f"#/$defs/{subject}_action"}},
            }
        }

    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "when", "actions"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": RULE_ID_PATTERN,
                "description": "stable id, kept in the audit",
            },
            "description": {
                "type": "string",
                "description": "what the rule is for, in plain words",
            },
            "enabled": {"type": "boolean", "default": True},
            "subject": {
                "enum": ["lead", "deal"],
                "default": "lead",
                "description": "what the rule looks at: leads (default) or deals",
            },
            "every": {
                "$ref": "#/$defs/duration",
                "description": "how often it runs, counted from the last run (default 5m)",
            },
            "cron": {
                "type": "string",
                "pattern": r"^\s*\S+(\s+\S+){4}\s*$",
                "description": "instead of every: minute hour day month weekday, e.g. "
                "'0 9 * * 1-5' (weekdays at 9:00); needs timezone",
            },
            "timezone": {
                "type": "string",
                "description": "the IANA zone a cron schedule is read in, e.g. Europe/Berlin",
            },
            "when": {"description": "the condition a lead or deal must meet"},
            "reentry": {
                "description": "whether the rule may act again on the same lead or deal",
                "default": "once",
                "anyOf": [
                    {"enum": ["once", "every_time"]},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["once_per"],
                        "properties": {"once_per": {"$ref": "#/$defs/duration"}},
                    },
                ],
            },
            "actions": {"type": "array", "minItems": 1, "description": "what to do, in order"},
        },
        "if": {"required": ["subject"], "properties": {"subject": {"const": "deal"}}},
        "then": when_and_actions("deal"),
        "else": when_and_actions("lead"),
    }


def _stream() -> Schema:
    step = {
        "type": "object",
        "additionalProperties": False,
        "required": ["template"],
        "properties": {
            "template": _TEMPLATE,
            "after": {"$ref": "#/$defs/offset", "description": "delay after the previous step"},
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "steps"],
        "properties": {
            "id": {"type": "string", "pattern": RULE_ID_PATTERN},
            "description": {"type": "string"},
            "renamed_from": {
                "description": "the ids this stream had before: their enrollments go on here",
                "oneOf": [
                    {"type": "string", "pattern": RULE_ID_PATTERN},
                    {"type": "array", "items": {"type": "string", "pattern": RULE_ID_PATTERN}},
                ],
            },
            "allow_parallel": {"type": "boolean", "default": False},
            "steps": {"type": "array", "minItems": 1, "items": step},
        },
    }


def _condition(subject: Subject, settings: Settings) -> Schema:
    own = f"#/$defs/{subject.value}_condition"
    branches: list[Schema] = [
        _one_key(key, {"type": "array", "minItems": 1, "items": {"$ref": own}}, text)
        for key, text in (("all", "every condition holds"), ("any", "at least one holds"))
    ]
    branches.append(_one_key("not", {"$ref": own}, "the condition does not hold"))
    catalog = field_catalog(subject, settings)
    for kind in ValueType:
        names = sorted(name for name, spec in catalog.fields.items() if spec.type is kind)
        if names:
            branches.append(_comparison(kind, names, catalog.fields, settings))
    if subject is Subject.DEAL:
        branches.append(_one_key("idle_beyond_average_cycle", _idle(catalog.fields), _IDLE_HELP))
    if subject is Subject.ACTIVITY:
        properties = _comparison(ValueType.STRING, [], catalog.fields, settings, loose=True)
        properties["properties"]["field"] = {
            "type": "string",
            "pattern": r"^properties\.[A-Za-z_][A-Za-z0-9_]{0,62}$",
            "description": "a property of the activity, as text (properties.url, ...)",
        }
        branches.append(properties)
    return {"description": f"a condition on the {subject.value}", "anyOf": branches}


def _scoring() -> Schema:
    points = {"type": "integer", "minimum": -1_000_000, "maximum": 1_000_000}
    criterion_id = {"type": "string", "pattern": RULE_ID_PATTERN}
    cap_points = {"type": "integer", "minimum": 1, "maximum": 1_000_000}
    activity = {"type": "string", "minLength": 1, "maxLength": 60}
    fit = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "when", "points"],
        "properties": {
            "id": criterion_id,
            "description": {"type": "string"},
            "when": {"$ref": "#/$defs/lead_condition"},
            "points": {**points, "description": "added while the lead meets the condition"},
        },
    }
    engagement = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "activity", "points"],
        "properties": {
            "id": criterion_id,
            "description": {"type": "string"},
            "activity": {
                "description": "the activity type(s) that earn the points",
                "anyOf": [activity, {"type": "array", "minItems": 1, "items": activity}],
            },
            "when": {"$ref": "#/$defs/activity_condition"},
            "points": {**points, "description": "what one activity is worth when new"},
            "half_life": {"$ref": "#/$defs/duration", "description": "points halve every ..."},
            "window": {"$ref": "#/$defs/duration", "description": "full points, then none"},
            "cap": {
                "description": "at most this many points from the criterion, or per period",
                "anyOf": [
                    cap_points,
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["points", "per"],
                        "properties": {"points": cap_points, "per": {"$ref": "#/$defs/duration"}},
                    },
                ],
            },
        },
    }

    def bands(names: tuple[str, ...]) -> Schema:
        return {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {name: {"type": "integer"} for name in names},
        }

    return {
        "type": "object",
        "additionalProperties": False,
        "description": "the lead scoring model: score = fit + engagement (docs/scoring.md)",
        "properties": {
            "description": {"type": "string"},
            "enabled": {"type": "boolean", "default": True},
            "fit": {"type": "array", "items": fit},
            "engagement": {"type": "array", "items": engagement},
            "grades": {
                "type": "object",
                "additionalProperties": False,
                "required": ["fit", "engagement"],
                "properties": {"fit": bands(("A", "B", "C")), "engagement": bands(("1", "2", "3"))},
            },
        },
    }


_IDLE_HELP = "idle longer than factor x the average sales cycle (closed-won deals) of its group"


def _one_key(key: str, value: Schema, description: str) -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [key],
        "properties": {key: {**value, "description": description}},
    }


def _comparison(
    kind: ValueType, names: list[str], fields: Any, settings: Settings, *, loose: bool = False
) -> Schema:
    """``loose``: an activity's property, which has no declared type, takes a number as text."""
    value = {"type": ["string", "number"]} if loose else _value(kind, settings)
    operators = {
        entry.name: {**_operand(entry.operand, value), "description": entry.help}
        for entry in operators_for(kind)
    }
    field_help = "; ".join(f"{name}: {fields[name].description}" for name in names)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["field"],
        "minProperties": 2,
        "maxProperties": 2,
        "properties": {
            "field": {"enum": names, "description": f"a {kind.value} field ({field_help})"},
            **operators,
        },
    }


def _operand(operand: Operand, value: Schema) -> Schema:
    """What an operator expects, given the schema of one value of the field."""
    if operand is Operand.FLAG:
        return {"type": "boolean"}
    if operand is Operand.VALUES:
        return {"type": "array", "minItems": 1, "items": value}
    if operand is Operand.DURATION:
        return {"$ref": "#/$defs/duration"}
    return dict(value)


def _value(kind: ValueType, settings: Settings) -> Schema:
    if kind is ValueType.STAGE:
        return {"enum": list(settings.stages.all())}
    if kind is ValueType.STRING:
        return {"type": "string"}
    if kind is ValueType.INTEGER:
        return {"type": "integer"}
    if kind in (ValueType.NUMBER, ValueType.DAYS):
        return {"type": "number"}
    if kind is ValueType.BOOLEAN:
        return {"type": "boolean"}
    return dict(_DATE)


def _idle(fields: Any) -> Schema:
    text_fields = sorted(name for name, spec in fields.items() if spec.type is ValueType.STRING)
    return {
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "factor": {"type": "number", "exclusiveMinimum": 0, "maximum": 100, "default": 2},
            "window": {"$ref": "#/$defs/duration", "description": "trailing window (default 365d)"},
            "min_deals": {"type": "integer", "minimum": 1, "default": 20},
            "group_by": {"enum": text_fields, "description": "average per value of this field"},
            "idle_from": {
                "enum": ["last_activity", "engaged"],
                "default": "last_activity",
                "description": "count idle time from the later of engaged_at and the last activity, or from engaged_at only",
            },
        },
    }


def _actions(settings: Settings) -> Schema:
    stages = {"enum": list(settings.stages.all())}
    score = {"type": "integer", "minimum": -1_000_000, "maximum": 1_000_000}
    lead_fields = sorted(field_catalog(Subject.LEAD, settings).fields)
    options: dict[str, Schema] = {
        "set_stage": _options({"stage": stages}, ["stage"]),
        "adjust_score": _options({"by": score}, ["by"]),
        "set_score": _options({"to": score}, ["to"]),
        "enroll": _options({"stream": {"type": "string"}}, ["stream"]),
        "notify": _options(
            {
                "to": {
                    "type": "string",
                    "pattern": r"^(owner|manager|lead|rep:\S+)$",
                    "description": "owner, manager, lead or rep:<external id>",
                },
                "template": _TEMPLATE,
            },
            ["to", "template"],
        ),
        "assign": _assign(lead_fields),
        "start_sla": {"$ref": "#/$defs/start_sla"},
        "close_deal": _options(
            {
                "outcome": {"enum": ["recycled", "lost"], "default": "recycled"},
                "reason": {"type": "string", "minLength": 1, "maxLength": 500},
            },
            ["reason"],
        ),
    }
    shorthand = {
        "set_stage": stages,
        "adjust_score": score,
        "set_score": score,
        "enroll": {"type": "string"},
    }
    for name in SHORTHAND:
        options[name] = {"anyOf": [shorthand[name], options[name]]}
    lead = [name for name in options if name != "close_deal"]
    deal = [name for name in options if name not in ("assign", "start_sla")]
    return {
        f"{subject}_action": {
            "description": "one action: a mapping with one key naming it",
            "anyOf": [_one_key(name, options[name], _ACTION_HELP[name]) for name in names],
        }
        for subject, names in (("lead", lead), ("deal", deal))
    }


_ACTION_HELP = {
    "set_stage": "move the lead to a stage",
    "adjust_score": "add to the lead's score (negative lowers it)",
    "set_score": "set the lead's score",
    "assign": "give the lead an owner from a pool of reps",
    "notify": "email someone from a template",
    "start_sla": "start a named SLA timer counted in business hours",
    "enroll": "enroll the lead in a nurture stream",
    "close_deal": "close the deal: recycled back to nurture, or lost",
}


def _options(properties: Schema, required: list[str]) -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": properties,
    }


def _assign(lead_fields: list[str]) -> Schema:
    schema = _options(
        {
            "pool": {"type": "string", "description": "the pool to assign from"},
            "route_by": {"enum": lead_fields, "description": "choose the pool by this lead field"},
            "pools": {"type": "object", "additionalProperties": {"type": "string"}},
            "default_pool": {"type": "string"},
            "strategy": {"enum": ["round_robin", "least_loaded"], "default": "round_robin"},
            "prefer_previous_owner": {"type": "boolean", "default": True},
        },
        [],
    )
    schema["oneOf"] = [{"required": ["pool"]}, {"required": ["route_by"]}]
    return schema


def _start_sla(settings: Settings) -> Schema:
    calendars = [DEFAULT_CALENDAR, *sorted(getattr(settings, "calendars", {}))]
    counted_from = StartSla.model_fields["counted_from"]  # the model's choices, never a copy
    level = _options(
        {
            "after": {"$ref": "#/$defs/offset", "description": "business time past due"},
            "notify": {"enum": ["owner", "manager"]},
            "template": _TEMPLATE,
            "reassign": {"type": "boolean", "default": False},
        },
        [],
    )
    met_by = _options(
        {
            "activities": {"type": "array", "items": {"type": "string"}},
            "stage_change": {"type": "boolean", "default": True},
        },
        [],
    )
    return _options(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "within": {"$ref": "#/$defs/duration", "description": "business time until due"},
            "calendar": {"enum": calendars, "default": DEFAULT_CALENDAR},
            "met_by": met_by,
            "escalate": {"type": "array", "items": level},
            "from": {
                "enum": list(get_args(counted_from.annotation)),
                "default": counted_from.default,
                "description": "when the clock starts: the firing, or when the lead entered its stage",
            },
        },
        ["name", "within"],
    )
