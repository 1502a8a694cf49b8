"""Unit and property tests of the pure JSON filters (orvanta_triggers/filters.py)."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orvanta_triggers import filters
from orvanta_triggers.filters import is_superset, matches, parse_json


def f(key, value):
    return {"key": key, "value": value}


# Nested objects


def test_nested_object_superset_matches():
    """A nested filter object matches a message object holding at least those keys and values."""
    message = {"user": {"profile": {"name": "ann", "age": 30}, "id": 7}}
    assert matches(message, [f("user", {"profile": {"name": "ann"}})])


def test_extra_keys_in_message_are_allowed_at_every_level():
    """Keys the filter does not mention, top-level or nested, do not prevent a match."""
    message = {"type": "tick", "extra": 1, "data": {"n": 1, "more": {"deep": True}}}
    assert matches(message, [f("data", {"n": 1})])


def test_missing_nested_key_fails():
    """A nested filter key absent from the message's object means no match."""
    message = {"user": {"profile": {"name": "ann"}}}
    assert not matches(message, [f("user", {"profile": {"email": "a@b.c"}})])


def test_nested_value_mismatch_fails():
    """A nested key present with a different value means no match."""
    message = {"user": {"profile": {"name": "ann"}}}
    assert not matches(message, [f("user", {"profile": {"name": "bob"}})])


def test_object_filter_does_not_match_scalar_value():
    """An object filter value never matches a scalar message value."""
    assert not matches({"user": "ann"}, [f("user", {"name": "ann"})])


def test_empty_object_filter_matches_any_object_but_not_a_scalar():
    """{} is contained in every object and in nothing else."""
    assert is_superset({"a": 1}, {}) and is_superset({}, {})
    assert not is_superset(1, {}) and not is_superset([], {}) and not is_superset(None, {})


# Arrays


def test_array_filter_ignores_order():
    """Array filter elements match message elements in any order."""
    assert matches({"tags": ["a", "b", "c"]}, [f("tags", ["c", "a"])])


def test_array_filter_ignores_count():
    """A filter element repeated more often than in the message still matches it."""
    assert matches({"tags": ["a", "b"]}, [f("tags", ["a", "a", "a"])])


def test_array_filter_element_missing_from_message_fails():
    """Every filter element must match some message element."""
    assert not matches({"tags": ["a", "b"]}, [f("tags", ["a", "z"])])


def test_array_elements_match_by_superset():
    """An object in a filter array matches a message element that contains it."""
    message = {"items": [{"id": 1, "qty": 2}, {"id": 2, "qty": 5}]}
    assert matches(message, [f("items", [{"id": 2}])])
    assert not matches(message, [f("items", [{"id": 3}])])


def test_array_filter_does_not_match_non_array():
    """An array filter value never matches an object or a scalar."""
    assert not is_superset({"0": "a"}, ["a"]) and not is_superset("a", ["a"])


def test_empty_array_filter_matches_any_array():
    """[] is contained in every array, the empty one included."""
    assert is_superset([1, 2], []) and is_superset([], [])


# Scalars: strict JSON equality


def test_number_does_not_match_numeric_string():
    """42 and "42" never match, either way round."""
    assert not matches({"n": "42"}, [f("n", 42)])
    assert not matches({"n": 42}, [f("n", "42")])


def test_true_does_not_match_one():
    """true and 1 (and false and 0) never match, either way round."""
    assert not matches({"b": 1}, [f("b", True)])
    assert not matches({"b": True}, [f("b", 1)])
    assert not matches({"b": 0}, [f("b", False)])
    assert not matches({"b": False}, [f("b", 0)])


def test_equal_scalars_match():
    """Equal strings, numbers and booleans match."""
    assert matches({"s": "x", "n": 42, "b": False}, [f("s", "x"), f("n", 42), f("b", False)])


def test_null_filter_matches_null():
    """A null filter value matches a null message value."""
    assert matches({"v": None}, [f("v", None)])


def test_null_filter_does_not_match_falsy_values():
    """null matches neither 0, false, "", [] nor {}."""
    for value in (0, False, "", [], {}):
        assert not matches({"v": value}, [f("v", None)]), value


def test_missing_top_level_key_fails():
    """A filter key absent from the message fails, even with a null value."""
    assert not matches({"other": 1}, [f("v", None)])
    assert not matches({"other": 1}, [f("v", 1)])


# Non-object messages


@pytest.mark.parametrize(
    "message", [[{"type": "tick"}], "tick", 42, None], ids=["array", "string", "number", "not-json"]
)
def test_non_object_message_never_matches_non_empty_filters(message):
    """A JSON array, string, number or non-JSON message (None) fails any non-empty filter list."""
    assert not matches(message, [f("type", "tick")])
    assert not matches(message, [f("type", "tick")], "or")


@pytest.mark.parametrize(
    "message", [{"a": 1}, {}, [1], "x", 0, None], ids=["object", "empty", "array", "string", "number", "not-json"]
)
def test_empty_filter_list_matches_everything(message):
    """No filters: every message matches, non-JSON included."""
    assert matches(message, [])
    assert matches(message, [], "or")


# Logic


def test_and_logic_needs_every_filter():
    """With "and", one failing filter fails the message."""
    message = {"type": "tick", "n": 1}
    assert matches(message, [f("type", "tick"), f("n", 1)], "and")
    assert not matches(message, [f("type", "tick"), f("n", 2)], "and")


def test_or_logic_needs_one_filter():
    """With "or", one passing filter is enough."""
    assert matches({"type": "tick"}, [f("type", "tock"), f("type", "tick")], "or")


def test_or_logic_fails_when_no_filter_matches():
    """With "or", a message matching no filter fails."""
    assert not matches({"type": "tick"}, [f("type", "tock"), f("n", 1)], "or")


def test_default_logic_is_and():
    """Without a logic argument, every filter must match."""
    assert not matches({"type": "tick"}, [f("type", "tick"), f("n", 1)])


# parse_json


@pytest.mark.parametrize("text", ["not json", "{", "{'a': 1}", "", "[1,]"])
def test_parse_json_of_invalid_json_is_none(text):
    """Text that is not JSON parses to None."""
    assert parse_json(text) is None


def test_parse_json_of_valid_json_is_its_value():
    """Valid JSON text parses to its value."""
    assert parse_json('{"a": [1, "2", true, null]}') == {"a": [1, "2", True, None]}


# Properties

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=5), json_values, min_size=1, max_size=4)


@st.composite
def sub_patterns(draw, value):
    """A random pattern `value` contains: some keys of each nested object kept, and a
    list's elements picked with repetition and in any order, each recursively reduced."""
    if isinstance(value, dict):
        keys = draw(st.lists(st.sampled_from(sorted(value)), unique=True)) if value else []
        return {key: draw(sub_patterns(value[key])) for key in keys}
    if isinstance(value, list):
        if not value:
            return []
        indices = draw(st.lists(st.integers(0, len(value) - 1), max_size=len(value) + 1))
        return [draw(sub_patterns(value[i])) for i in indices]
    return value


def _roundtrip(message):
    """The message as the listener sees it: JSON text parsed back."""
    return parse_json(json.dumps(message))


@settings(max_examples=200, deadline=None)
@given(message=json_objects, data=st.data())
def test_message_matches_filter_on_its_own_key_and_value(message, data):
    """A JSON object always matches a filter made of one of its top-level keys and that key's value."""
    key = data.draw(st.sampled_from(sorted(message)))
    assert matches(_roundtrip(message), [f(key, message[key])])


@settings(max_examples=200, deadline=None)
@given(message=json_objects, data=st.data())
def test_message_matches_filter_on_any_sub_pattern_of_its_value(message, data):
    """A JSON object always matches a filter on one of its keys with any sub-pattern of that key's value."""
    key = data.draw(st.sampled_from(sorted(message)))
    pattern = data.draw(sub_patterns(message[key]))
    assert matches(_roundtrip(message), [f(key, pattern)])


@settings(max_examples=200, deadline=None)
@given(message=json_objects, data=st.data())
def test_message_matches_and_of_sub_patterns_of_several_keys(message, data):
    """Filters on several of its keys, each with a sub-pattern, all match together under "and"."""
    keys = data.draw(st.lists(st.sampled_from(sorted(message)), min_size=1, unique=True))
    filters = [f(key, data.draw(sub_patterns(message[key]))) for key in keys]
    assert matches(_roundtrip(message), filters, "and")


@settings(max_examples=200, deadline=None)
@given(message=json_objects, value=json_values)
def test_filter_on_absent_key_never_matches(message, value):
    """A filter on a key the message lacks never matches, whatever its value."""
    absent = "absent-" + "x" * 6  # longer than any generated key
    assert not matches(_roundtrip(message), [f(absent, value)])


def test_a_frame_nested_past_the_limit_is_not_json():
    """parse_json treats nesting deeper than MAX_JSON_DEPTH as not JSON, without raising."""
    limit = filters.MAX_JSON_DEPTH
    assert filters.parse_json("[" * limit + "]" * limit) is not None
    assert filters.parse_json("[" * (limit + 1) + "]" * (limit + 1)) is None
    assert filters.parse_json('{"a":' * 200_000 + "1" + "}" * 200_000) is None


def test_brackets_inside_strings_do_not_count_as_nesting():
    """A shallow frame whose strings hold many brackets still parses."""
    text = '{"type": "x", "text": "' + "[{" * 1000 + '"}'
    assert filters.parse_json(text) == {"type": "x", "text": "[{" * 1000}


def test_a_frame_nested_past_the_limit_never_reaches_the_parser(monkeypatch):
    """Text nested deeper than MAX_JSON_DEPTH is refused before json.loads, which would
    run into the recursion limit (where a finalizer run by the collector fails too)."""
    parsed = []
    real_loads = json.loads
    monkeypatch.setattr(filters.json, "loads", lambda text: parsed.append(text) or real_loads(text))
    limit = filters.MAX_JSON_DEPTH
    for text in ("[" * (limit + 1) + "]" * (limit + 1), '{"a":' * 200_000 + "1" + "}" * 200_000, "[" * 200_000):
        assert filters.parse_json(text) is None
    assert parsed == []


@settings(max_examples=300, deadline=None)
@given(value=json_values, indent=st.sampled_from([None, 1]))
def test_bracket_depth_of_json_text_is_its_nesting_depth(value, indent):
    """bracket_depth of any JSON text (strings full of brackets, quotes and escapes
    included) is the nesting depth of its value."""
    assert filters.bracket_depth(json.dumps(value, indent=indent)) == filters.nesting_depth(value)


@pytest.mark.parametrize(
    "text, depth",
    [('"[[["', 0), ('["\\"[["]', 1), ("]]]", 0), ("[[1,", 2), ('"unterminated [[[', 3), ("[\ud800]", 1)],
)
def test_bracket_depth_of_other_text(text, depth):
    """Outside JSON: escaped quotes, closers first, unfinished text, lone surrogates."""
    assert filters.bracket_depth(text) == depth


def test_nesting_depth_counts_arrays_and_objects():
    """nesting_depth: 0 for a scalar, one per array or object level."""
    assert [filters.nesting_depth(v) for v in (1, [], {"a": [1, {"b": []}]})] == [0, 1, 4]


# Filters v2: paths, regexes, groups


def test_a_path_reaches_into_objects_and_arrays():
    """{"path": "a.b.0.c"} walks keys and indexes; a missing step is no match."""
    message = {"a": {"b": [{"c": {"x": 1, "y": 2}}]}}
    assert matches(message, [{"path": "a.b.0.c", "value": {"x": 1}}])
    assert not matches(message, [{"path": "a.b.1.c", "value": {"x": 1}}])
    assert not matches(message, [{"path": "a.b.0.c.x.z", "value": 1}])


def test_a_regex_searches_text_frames_only():
    """A regex filter searches the frame's text; a binary frame (no text) never matches."""
    stomp = [{"regex": "^MESSAGE\\n"}]
    assert matches(None, stomp, text="MESSAGE\ndestination:/q\n\nhi\x00")
    assert not matches(None, stomp, text="\n")
    assert not matches(None, stomp, text=None)


def test_groups_nest():
    """any_of, all_of and none_of combine entries and further groups."""
    tick = {"key": "type", "value": "tick"}
    vip = {"path": "meta.tags", "value": ["vip"]}
    test = {"regex": "test"}
    filters = [{"any_of": [{"all_of": [tick, vip]}, {"none_of": [tick, test]}]}]
    assert matches({"type": "tick", "meta": {"tags": ["vip", "x"]}}, filters, text="{}")
    assert not matches({"type": "tick", "meta": {"tags": []}}, filters, text="{}")
    assert matches({"type": "tock"}, filters, text="real")
    assert not matches({"type": "tock"}, filters, text="a test")


def test_a_frame_that_is_not_json_matches_no_json_entry_but_may_match_a_regex():
    """Text protocols (STOMP, plain lines) can still be filtered, by regex."""
    filters = [{"key": "type", "value": "x"}, {"regex": "^PING"}]
    assert matches(None, filters, "or", text="PING 1")
    assert not matches(None, filters, "and", text="PING 1")


leaves = st.sampled_from(
    [
        {"key": "a", "value": 1},
        {"key": "b", "value": {"c": True}},
        {"path": "b.c", "value": True},
        {"path": "l.0", "value": "x"},
        {"regex": "^z"},
        {"regex": "1"},
    ]
)


def groups_of(children):
    return st.one_of(
        *(st.builds(lambda items, name=name: {name: items}, st.lists(children, max_size=3)) for name in filters.GROUPS)
    )


entries = st.recursive(leaves, groups_of, max_leaves=8)
messages = st.fixed_dictionaries(
    {},
    optional={
        "a": st.sampled_from([1, 2, "1"]),
        "b": st.sampled_from([{"c": True}, {"c": False}, {}]),
        "l": st.lists(st.sampled_from(["x", "y"]), max_size=2),
    },
)
texts = st.none() | st.sampled_from(["z1", "a1", "zz", ""])


@given(st.lists(entries, max_size=4), messages, texts)
def test_all_of_a_nested_all_of_is_the_flat_list(items, message, text):
    """all_of[x, all_of[y...]] matches exactly when all_of[x, y...] does (and "and" logic is all_of)."""
    nested = [{"all_of": items[:1] + [{"all_of": items[1:]}]}]
    assert matches(message, nested, text=text) == matches(message, items, "and", text=text)


@given(st.lists(entries, min_size=1, max_size=4), messages, texts)
def test_any_of_is_or_logic(items, message, text):
    """A top-level "or" is any_of of its entries (an empty list matches every frame)."""
    assert matches(message, [{"any_of": items}], text=text) == matches(message, items, "or", text=text)


@given(st.lists(entries, max_size=4), messages, texts)
def test_none_of_is_the_negation_of_any_of(items, message, text):
    """none_of[...] matches exactly when any_of[...] does not."""
    assert matches(message, [{"none_of": items}], text=text) != matches(message, [{"any_of": items}], text=text)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"regex": "(a"}, "not a valid RE2 pattern"),
        ({"regex": "(a)\\1"}, "not a valid RE2 pattern"),
        ({"regex": "a" * (filters.MAX_PATTERN_LENGTH + 1)}, "longer than"),
        ({"path": "a..b", "value": 1}, "dot-separated"),
        ({"key": "", "value": 1}, "non-empty"),
        ({"key": "a", "value": 1, "regex": "x"}, "must be"),
        ({"any_of": {"key": "a"}}, "must be a list"),
        ({"key": "a", "value": json.loads("[" * 40 + "]" * 40)}, "nests deeper"),
    ],
)
def test_check_says_what_is_wrong(entry, reason):
    """Invalid entries are refused with a reason naming the entry."""
    [error] = filters.check([entry])
    assert error.startswith("filter 0") and reason in error


def test_check_bounds_group_depth_and_entry_count():
    """Groups nest at most MAX_GROUP_DEPTH deep; a list holds at most MAX_FILTER_ENTRIES entries."""
    deep = {"regex": "x"}
    for _ in range(filters.MAX_GROUP_DEPTH + 1):
        deep = {"all_of": [deep]}
    assert any("nest at most" in error for error in filters.check([deep]))
    assert any("at most" in error for error in filters.check([{"regex": "x"}] * (filters.MAX_FILTER_ENTRIES + 1)))
