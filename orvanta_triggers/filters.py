"""Filters: which frames become jobs. Pure functions, no I/O.

A trigger's `filters` is a list of entries combined by its `filter_logic` ("and", the
default: all must match; "or": any). No entries: every frame matches. Entries:

- `{"key": K, "value": V}`: the frame is a JSON object whose top-level `K` holds a
  value equal to, or a superset of, `V` (Windmill's `is_superset`): objects match
  when every filter key is present and matches recursively; arrays when every filter
  element matches some frame element (order and count ignored); scalars by strict
  JSON equality, so 42 never matches "42" and true never matches 1.
- `{"path": "a.b.0.c", "value": V}`: the same at a dotted path through objects (by
  key) and arrays (by index).
- `{"regex": R}`: an RE2 search of `R` in a text frame (linear time, whatever the
  pattern; never matches a binary frame).
- `{"any_of": [...]}`, `{"all_of": [...]}`, `{"none_of": [...]}`: groups of entries,
  nesting further groups.

A frame that isn't JSON (or nests deeper than MAX_JSON_DEPTH) matches no key or path
entry. `check(filters)` lists what is wrong with a filter list; `compile_filters`
turns a valid one into a predicate, once per connection.
"""

import itertools
import json
import operator
import re

import re2

# A frame nested deeper than this is treated as not JSON: parsing it would cost
# recursion a connection thread can't spare (Python's json raises RecursionError
# somewhere near 1,000 levels, depending on the caller's own depth).
MAX_JSON_DEPTH = 500

# A JSON string: brackets inside it nest nothing.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Of the rest, as UTF-8 bytes, only the brackets are kept, an opening one as the step
# 2 and a closing one as 0: the depth after the i-th bracket is the sum of the first i
# steps minus i.
_BRACKET_STEPS = bytes.maketrans(b"[]{}", b"\x02\x00\x02\x00")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


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


def bracket_depth(text):
    """How deeply [ and { nest in `text` outside JSON strings: the nesting depth of
    JSON text, and for any other text at least as deep as a JSON parser gets into it
    before it fails. Without recursion: each step is one C loop over the text."""
    outside_strings = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass")
    steps = outside_strings.translate(_BRACKET_STEPS, _NOT_BRACKETS)
    depths = map(operator.sub, itertools.accumulate(steps), itertools.count(1))
    return max(max(depths, default=0), 0)


def too_deep_to_parse(text):
    """Whether `text` nests deeper than MAX_JSON_DEPTH. Asked before parsing text from
    outside (frames, request bodies, form fields), rather than catching RecursionError
    after: at the recursion limit, whatever else runs on the thread (a finalizer the
    garbage collector calls, a logging call) fails too."""
    # Only text with that many brackets can nest that deep: the scan is rarely needed.
    return text.count("[") + text.count("{") > MAX_JSON_DEPTH and bracket_depth(text) > MAX_JSON_DEPTH


def parse_json(text):
    """The parsed JSON of `text`, or None when it is not JSON or nests deeper than
    MAX_JSON_DEPTH."""
    if too_deep_to_parse(text):
        return None
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


# Limits, answered with a 400 when a trigger is saved.
MAX_FILTER_ENTRIES = 100
MAX_GROUP_DEPTH = 8
MAX_VALUE_DEPTH = 32
MAX_PATTERN_LENGTH = 1000
GROUPS = ("any_of", "all_of", "none_of")
_LEAF_SHAPES = ({"key", "value"}, {"path", "value"}, {"regex"})


def _regex(pattern):
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


def _value_at(parsed, path):
    """The value at a dotted path through objects and arrays, or _MISSING."""
    value = parsed
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


_MISSING = object()


def value_at(parsed, path):
    """The value at a dotted path of parsed JSON, or None when it isn't there."""
    found = _value_at(parsed, path)
    return None if found is _MISSING else found


def _entry_errors(entry, where, depth, counted):
    counted.append(entry)
    if not isinstance(entry, dict):
        return [f"{where}: must be an object"]
    group = [name for name in GROUPS if name in entry]
    if group:
        name = group[0]
        if set(entry) != {name}:
            return [
                f'{where}: a group is exactly one of {{"any_of": [...]}}, {{"all_of": [...]}}, {{"none_of": [...]}}'
            ]
        if not isinstance(entry[name], list):
            return [f"{where}.{name}: must be a list of filters"]
        if depth >= MAX_GROUP_DEPTH:
            return [f"{where}: groups nest at most {MAX_GROUP_DEPTH} deep"]
        return [
            error
            for index, item in enumerate(entry[name])
            for error in _entry_errors(item, f"{where}.{name}[{index}]", depth + 1, counted)
        ]
    if set(entry) not in _LEAF_SHAPES:
        return [
            f'{where}: must be {{"key": ..., "value": ...}}, {{"path": ..., "value": ...}}, {{"regex": ...}} '
            'or a group ({"any_of"|"all_of"|"none_of": [...]})'
        ]
    if "regex" in entry:
        pattern = entry["regex"]
        if not isinstance(pattern, str) or not pattern:
            return [f"{where}: regex must be a non-empty string"]
        if len(pattern) > MAX_PATTERN_LENGTH:
            return [f"{where}: regex is longer than {MAX_PATTERN_LENGTH} characters"]
        if "\\C" in pattern:
            return [f"{where}: regex may not use \\C (one byte): frames are matched as text"]
        try:
            _regex(pattern)
        except re2.error as exc:
            reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
            return [f"{where}: regex is not a valid RE2 pattern: {reason}"]
        return []
    errors = []
    name = "key" if "key" in entry else "path"
    if not isinstance(entry[name], str) or not entry[name]:
        errors.append(f"{where}: {name} must be a non-empty string")
    elif name == "path" and not all(entry["path"].split(".")):
        errors.append(f"{where}: path must be dot-separated keys or indexes, none empty")
    if nesting_depth(entry["value"]) > MAX_VALUE_DEPTH:
        errors.append(f"{where}: value nests deeper than {MAX_VALUE_DEPTH} levels")
    return errors


def check(filters):
    """What is wrong with a filter list, as messages ([] when it is valid)."""
    if not isinstance(filters, list):
        return ["must be a list of filters"]
    counted = []
    errors = [
        error for index, entry in enumerate(filters) for error in _entry_errors(entry, f"filter {index}", 0, counted)
    ]
    if len(counted) > MAX_FILTER_ENTRIES:
        errors.append(f"has {len(counted)} entries, groups included; at most {MAX_FILTER_ENTRIES}")
    return errors


def needs_json(filters):
    """Whether any entry looks into the frame's JSON (so it must be parsed)."""
    return any(
        needs_json(entry[name]) if (name := next((g for g in GROUPS if g in entry), None)) else "value" in entry
        for entry in filters
    )


def _compile(entry):
    """A predicate (text, parsed) -> bool for one valid entry."""
    for name, combine in (("any_of", any), ("all_of", all)):
        if name in entry:
            parts = [_compile(item) for item in entry[name]]
            return lambda text, parsed: combine(part(text, parsed) for part in parts)
    if "none_of" in entry:
        parts = [_compile(item) for item in entry["none_of"]]
        return lambda text, parsed: not any(part(text, parsed) for part in parts)
    if "regex" in entry:
        search = _regex(entry["regex"]).search
        return lambda text, parsed: text is not None and search(text) is not None
    value = entry["value"]
    if "key" in entry:
        key = entry["key"]
        return lambda text, parsed: isinstance(parsed, dict) and key in parsed and is_superset(parsed[key], value)
    path = entry["path"]

    def at_path(text, parsed):
        found = _value_at(parsed, path)
        return found is not _MISSING and is_superset(found, value)

    return at_path


def compile_filters(filters, logic="and"):
    """A predicate (text, parsed) -> bool for a valid filter list: `text` is the frame
    (None for a binary one), `parsed` its JSON (None when not JSON or not parsed)."""
    if not filters:
        return lambda text, parsed: True
    return _compile({"any_of" if logic == "or" else "all_of": filters})


def matches(message, filters, logic="and", *, text=None):
    """Whether a frame passes `filters`: `message` is its parsed JSON (None when it was
    not JSON), `text` the frame itself (None for a binary one)."""
    return compile_filters(filters, logic)(text, message)
