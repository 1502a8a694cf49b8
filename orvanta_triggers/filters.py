"""JSON filters: pure functions, no I/O.

A message matches a filter when it is a JSON object whose top-level `key` holds a
value equal to, or a superset of, the filter's `value` (Windmill's `is_superset`):
objects match when every filter key is present and matches recursively; arrays when
every filter element matches some message element (order and count ignored);
scalars by strict JSON equality, so 42 never matches "42" and true never matches 1.
"""

import json

_NOT_JSON = object()


def is_superset(value, pattern):
    """True when `value` contains `pattern` in the sense above."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and is_superset(value[key], sub) for key, sub in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(is_superset(item, sub) for item in value) for sub in pattern)
    if isinstance(pattern, bool) or isinstance(value, bool):
        return type(pattern) is type(value) and pattern == value
    if isinstance(pattern, (int, float)):
        return isinstance(value, (int, float)) and value == pattern
    return type(value) is type(pattern) and value == pattern


def parse_json(text):
    """The parsed JSON of `text`, or None when it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def matches(message, filters, logic="and"):
    """Whether a parsed message (None when it was not JSON) passes `filters`."""
    if not filters:
        return True
    if not isinstance(message, dict):
        return False
    results = (f["key"] in message and is_superset(message[f["key"]], f["value"]) for f in filters)
    return any(results) if logic == "or" else all(results)
