"""A nurture stream's problems, naming its steps as a person counts them: ``step 2``.

Pydantic's location ``steps.1.after`` counts from 0, where rule tests (``nurture_step: {step:
2}``) and the audit count from 1: ``stream welcome: steps.1.after: ...`` read as the first step
to anyone not counting like Python. The step goes into the message's owner instead:
``stream welcome, step 2: after: '3days' is not a duration; ...``, at the same FILE:LINE:COL.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from leadflow.rule_language.model import StreamSpec
from leadflow.rule_language.validation_messages import Report, explain_validation
from leadflow.rule_language.yaml_source import Path as NodePath


def stream_owner(stream_id: object, step: int | None = None) -> str:
    """``stream welcome``, ``stream welcome, step 2`` (``step`` counts from 1), or ``stream``."""
    named = f"stream {stream_id}" if isinstance(stream_id, str) else "stream"
    return named if step is None else f"{named}, step {step}"


def validated_stream(data: Any, path: NodePath, report: Report) -> StreamSpec | None:
    """``data`` as a stream, or None after reporting each problem with its step, 1-based."""
    try:
        return StreamSpec.model_validate(data)
    except ValidationError as exc:
        stream_id = data.get("id") if isinstance(data, dict) else None
        for message, where, is_key in explain_validation(StreamSpec, exc, path):
            step, shown = _step_of(where[len(path) :], message)
            report(where, f"{stream_owner(stream_id, step)}: {shown}", is_key)
        return None


def _step_of(inside: NodePath, message: str) -> tuple[int | None, str]:
    """The step (from 1) a problem at ``inside`` (relative to the stream) is in, and the
    message without pydantic's ``steps.N.`` prefix."""
    if len(inside) < 2 or inside[0] != "steps" or not isinstance(inside[1], int):
        return None, message
    index = inside[1]
    prefix = f"steps.{index}"
    if message.startswith(prefix + "."):
        message = message.removeprefix(prefix + ".")
    elif message.startswith(prefix + ":"):
        message = message.removeprefix(prefix + ":").lstrip()
    return index + 1, message
