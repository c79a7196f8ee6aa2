"""JSON from an untrusted file, bounded in size and nesting before it is parsed.

Why: ``json.loads`` recurses once per nested array or object, so a few hundred kilobytes of ``[[[[...`` raise
``RecursionError`` (or exhaust the stack) instead of a ValueError a caller would catch. The depth is counted on the
text first, in one linear pass, so an uploaded ``config.json`` or ``card.json`` fails with a one-line reason.
"""

from __future__ import annotations

import json
from typing import Any


class JsonDocumentError(ValueError):
    """A JSON document refused: too large, nested too deeply, not JSON, or not an object; the message says which."""


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_object(data: bytes | str, name: str, max_bytes: int, max_depth: int) -> dict[str, Any]:
    """The JSON object in ``data``; JsonDocumentError naming ``name`` when it is larger than ``max_bytes``, nested
    deeper than ``max_depth``, not UTF-8 JSON, or not an object."""
    if len(data) > max_bytes:
        raise JsonDocumentError(f"{name} is {len(data)} bytes, more than the {max_bytes} accepted")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as err:
        raise JsonDocumentError(f"{name} is not UTF-8 text") from err
    depth = nesting_depth(text)
    if depth > max_depth:
        raise JsonDocumentError(f"{name} is nested {depth} levels deep, more than the {max_depth} accepted")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise JsonDocumentError(f"{name} is not valid JSON ({str(err).splitlines()[0][:120]})") from err
    if not isinstance(value, dict):
        raise JsonDocumentError(f"{name} holds a JSON {type(value).__name__}, not an object")
    return value
