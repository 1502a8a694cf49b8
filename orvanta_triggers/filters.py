"""JSON filters: pure functions, no I/O.

A message matches a filter when it is a JSON object whose top-level `key` holds a
value equal to, or a superset of, the filter's `value` (Windmill's `is_superset`):
objects match when every filter key is present and matches recursively; arrays when
every filter element matches some message element (order and count ignored);
scalars by strict JSON equality, so 42 never matches "42" and true never matches 1.
"""

import json

# A frame nested deeper than this is treated as not JSON: parsing it would cost
# recursion a connection thread can't spare (Python's json raises RecursionError
# somewhere near 1,000 levels, depending on the caller's own depth).
MAX_JSON_DEPTH = 500


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


def nesting_depth(value):
    """How deeply arrays and objects nest in a parsed JSON value (a scalar is 0)."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((item, depth + 1) for item in value)
    return deepest


def parse_json(text):
    """The parsed JSON of `text`, or None when it is not JSON or nests deeper than
    MAX_JSON_DEPTH."""
    try:
        parsed = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return None
    # Only text with that many brackets can nest that deep: the walk is rarely needed.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and nesting_depth(parsed) > MAX_JSON_DEPTH:
        return None
    return parsed


def matches(message, filters, logic="and"):
    """Whether a parsed message (None when it was not JSON) passes `filters`."""
    if not filters:
        return True
    if not isinstance(message, dict):
        return False
    results = (f["key"] in message and is_superset(message[f["key"]], f["value"]) for f in filters)
    return any(results) if logic == "or" else all(results)
