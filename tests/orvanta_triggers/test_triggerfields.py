"""Each trigger field's own checks (orvanta_triggers.triggerfields), through the services:
script and URL, filters, initial messages, heartbeat, capture and resume, retry,
headers, subprotocols, binary messages."""

import pytest

from orvanta_triggers import services
from tests.orvanta_triggers.validationhelpers import VALID, create_errors

# Script and URL


def test_unknown_script_path_refused(workspace):
    """A script path that is not in the registry is refused on script_path."""
    assert set(create_errors(workspace, script_path="examples/no_such_script")) == {"script_path"}


def test_unknown_flow_refused(workspace):
    """is_flow with a path that names no flow of the workspace is refused on script_path."""
    assert set(create_errors(workspace, script_path="f/no/flow", is_flow=True)) == {"script_path"}


@pytest.mark.parametrize(
    "url",
    ["http://example.org/feed", "https://example.org/feed", "ws:///feed", "ws://", "not a url", "example.org/feed", ""],
    ids=["http", "https", "no-host", "scheme-only", "garbage", "no-scheme", "empty"],
)
def test_non_ws_url_refused(workspace, url):
    """Anything but a ws:// or wss:// URL with a host is refused on url."""
    assert set(create_errors(workspace, url=url)) == {"url"}


@pytest.mark.parametrize(
    "url",
    ["$script:", "$script:examples/no_such_script", "$script:../etc/passwd", "$flow:f/no/flow", "$other:examples/echo"],
    ids=["empty-path", "unknown-script", "malformed-path", "unknown-flow", "unknown-kind"],
)
def test_bad_runnable_url_refused(workspace, url):
    """A $script:/$flow: URL naming no runnable, or another $kind:, is refused on url."""
    assert set(create_errors(workspace, url=url)) == {"url"}


def test_runnable_url_saves(workspace):
    """A $script: URL naming a registry script is accepted with its url_runnable_args."""
    trigger = services.create_trigger(
        workspace=workspace, **{**VALID, "url": "$script:examples/ws_url", "url_runnable_args": {"base_url": "ws://x/"}}
    )
    assert trigger.url == "$script:examples/ws_url"


def test_runnable_url_args_must_be_object(workspace):
    """url_runnable_args of a runnable URL must be a JSON object."""
    assert set(create_errors(workspace, url="$script:examples/ws_url", url_runnable_args=["x"])) == {
        "url_runnable_args"
    }


# Filters


@pytest.mark.parametrize(
    "filters",
    [
        {"key": "type", "value": "tick"},
        [{"value": "tick"}],
        [{"key": "type", "value": "tick", "op": "eq"}],
        [{"key": "", "value": "tick"}],
        [{"key": 3, "value": "tick"}],
        ["type"],
    ],
    ids=["not-a-list", "missing-key", "extra-key", "empty-key", "non-string-key", "not-an-object"],
)
def test_malformed_filters_refused(workspace, filters):
    """filters that are not a list of exactly {"key": <non-empty string>, "value"} are refused on filters."""
    assert set(create_errors(workspace, filters=filters)) == {"filters"}


@pytest.mark.parametrize("logic", ["xor", "AND", ""])
def test_bad_filter_logic_refused(workspace, logic):
    """filter_logic other than "and" / "or" is refused on filter_logic."""
    assert set(create_errors(workspace, filter_logic=logic)) == {"filter_logic"}


# Initial messages


@pytest.mark.parametrize(
    "initial_messages",
    [
        {"raw_message": "{}"},
        [{"text": "{}"}],
        [{"raw_message": "{}", "runnable_result": {"path": "examples/auth_message"}}],
        ["{}"],
        [{"runnable_result": {"args": {}}}],
        [{"runnable_result": {"path": "examples/auth_message", "extra": 1}}],
        [{"runnable_result": {"path": "examples/auth_message", "args": []}}],
    ],
    ids=[
        "not-a-list",
        "unknown-key",
        "two-keys",
        "not-an-object",
        "runnable-no-path",
        "runnable-extra-key",
        "args-not-object",
    ],
)
def test_badly_shaped_initial_messages_refused(workspace, initial_messages):
    """initial_messages items must be {"raw_message"} or {"runnable_result": {"path", "args"?, "is_flow"?}}."""
    assert set(create_errors(workspace, initial_messages=initial_messages)) == {"initial_messages"}


@pytest.mark.parametrize(
    "raw", ["{not json", "hello", "", {"op": "subscribe"}], ids=["broken", "bare-word", "empty", "not-text"]
)
def test_raw_message_must_be_json_text(workspace, raw):
    """A raw_message that is not a string of valid JSON text is refused on initial_messages."""
    assert set(create_errors(workspace, initial_messages=[{"raw_message": raw}])) == {"initial_messages"}


def test_initial_message_unknown_runnable_refused(workspace):
    """A runnable_result naming no registry script is refused on initial_messages."""
    errors = create_errors(workspace, initial_messages=[{"runnable_result": {"path": "examples/no_such_script"}}])
    assert set(errors) == {"initial_messages"}


def test_initial_message_unknown_flow_refused(workspace):
    """A runnable_result with is_flow naming no flow of the workspace is refused on initial_messages."""
    errors = create_errors(workspace, initial_messages=[{"runnable_result": {"path": "f/no/flow", "is_flow": True}}])
    assert set(errors) == {"initial_messages"}


# Heartbeat and retry


@pytest.mark.parametrize(
    "heartbeat",
    [
        {"interval_secs": 0.5, "message": "ping"},
        {"interval_secs": 0, "message": "ping"},
        {"interval_secs": "10", "message": "ping"},
        {"message": "ping"},
        {"interval_secs": 10, "message": ""},
        {"interval_secs": 10},
        {"interval_secs": 10, "message": "ping", "jitter": 1},
        {"interval_secs": 10, "message": "ping", "state_field": 3},
        "ping",
    ],
    ids=[
        "interval-below-1",
        "interval-zero",
        "interval-string",
        "no-interval",
        "empty-message",
        "no-message",
        "extra-key",
        "state-field-not-string",
        "not-an-object",
    ],
)
def test_malformed_heartbeat_refused(workspace, heartbeat):
    """A heartbeat must be {"interval_secs" >= 1, "message": non-empty, "state_field"?: string}."""
    assert set(create_errors(workspace, heartbeat=heartbeat)) == {"heartbeat"}


CAPTURE = {"session_id": "d.session_id", "seq": "s"}
RESUME = {
    "message": '{"op": 6, "d": {"session_id": {{session_id}}, "seq": {{seq}}}}',
    "refused_when": {"key": "op", "value": 9},
}


@pytest.mark.parametrize(
    "capture",
    [["s"], {"1seq": "s"}, {"seq": ""}, {"seq": "d..s"}, {"seq": 3}, {f"v{i}": "s" for i in range(21)}],
    ids=["not-an-object", "name-starts-with-digit", "empty-path", "empty-path-part", "path-not-string", "too-many"],
)
def test_malformed_capture_refused(workspace, capture):
    """capture must be {name: dotted path}, names identifiers, at most 20 entries."""
    assert set(create_errors(workspace, capture=capture)) == {"capture"}


def test_capture_named_state_beside_a_state_field_refused(workspace):
    """'state' is the heartbeat's state_field already: a capture of that name is refused."""
    heartbeat = {"interval_secs": 10, "message": "{{state}}", "state_field": "s"}
    assert set(create_errors(workspace, heartbeat=heartbeat, capture={"state": "s"})) == {"capture"}


@pytest.mark.parametrize(
    "resume",
    [
        {"message": "{{session_id}}"},
        {"message": "", "refused_when": {"key": "op", "value": 9}},
        {"message": "resume please", "refused_when": {"key": "op", "value": 9}},
        {"message": "{{nope}}", "refused_when": {"key": "op", "value": 9}},
        {"message": "{{seq}}", "refused_when": {"op": 9}},
        "resume",
    ],
    ids=["no-refused-when", "empty-message", "no-placeholder", "unknown-name", "bad-filter", "not-an-object"],
)
def test_malformed_resume_refused(workspace, resume):
    """resume must be {message using captured {{names}}, refused_when: one filter entry}."""
    assert set(create_errors(workspace, capture=CAPTURE, resume=resume)) == {"resume"}


def test_capture_and_resume_accepted(workspace):
    """A Discord-style capture and resume pass validation and are stored as given."""
    trigger = services.create_trigger(workspace=workspace, **{**VALID, "capture": CAPTURE, "resume": RESUME})
    trigger.refresh_from_db()
    assert (trigger.capture, trigger.resume) == (CAPTURE, RESUME)


@pytest.mark.parametrize(
    "retry",
    [
        {"max_attempts": 0},
        {"max_attempts": 101},
        {"max_attempts": 2.5},
        {"max_attempts": True},
        {"delay_secs": 1},
        {"max_attempts": 3, "delay_secs": -1},
        {"max_attempts": 3, "multiplier": 0.5},
        {"max_attempts": 3, "backoff": "exp"},
        [3],
    ],
    ids=[
        "zero-attempts",
        "too-many-attempts",
        "float-attempts",
        "bool-attempts",
        "no-attempts",
        "negative-delay",
        "multiplier-below-1",
        "extra-key",
        "not-an-object",
    ],
)
def test_malformed_retry_refused(workspace, retry):
    """A retry must be {"max_attempts": 1..100, "delay_secs"?: 0..86400, "multiplier"?: 1..100}."""
    assert set(create_errors(workspace, retry=retry)) == {"retry"}


# Headers and subprotocols


@pytest.mark.parametrize("name", ["Host", "sec-websocket-key", "Upgrade", "Connection", "Sec-WebSocket-Protocol"])
def test_reserved_header_refused(workspace, name):
    """A header that the WebSocket handshake sets itself is refused on headers."""
    assert set(create_errors(workspace, headers={name: "x"})) == {"headers"}


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", 3], ids=["crlf", "lf", "cr", "not-a-string"])
def test_header_value_must_be_single_line_string(workspace, value):
    """A header value with CR/LF (header injection) or that is not a string is refused on headers."""
    assert set(create_errors(workspace, headers={"X-Token": value})) == {"headers"}


@pytest.mark.parametrize(
    "headers", [{"Bad Name": "x"}, {"X:Y": "x"}, ["X-Token"]], ids=["space", "colon", "not-an-object"]
)
def test_bad_header_names_refused(workspace, headers):
    """Header names must be HTTP tokens, in a JSON object."""
    assert set(create_errors(workspace, headers=headers)) == {"headers"}


@pytest.mark.parametrize(
    "subprotocols",
    ["chat", ["chat v2"], ["a,b"], [""], [3]],
    ids=["not-a-list", "space", "comma", "empty", "not-a-string"],
)
def test_bad_subprotocols_refused(workspace, subprotocols):
    """subprotocols must be a list of token names."""
    assert set(create_errors(workspace, subprotocols=subprotocols)) == {"subprotocols"}


# Binary messages


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("initial_messages", [{"binary_message": "not base64!"}]),
        ("initial_messages", [{"binary_message": ""}]),
        ("heartbeat", {"interval_secs": 5, "binary_message": "%%%"}),
        ("heartbeat", {"interval_secs": 5, "message": "ping", "binary_message": "wAA="}),
        ("heartbeat", {"interval_secs": 5}),
    ],
    ids=["bad-base64", "empty", "bad-heartbeat-base64", "both-messages", "no-message"],
)
def test_binary_messages_are_checked(workspace, field, value):
    """binary_message must be base64, and a heartbeat has exactly one of message and binary_message."""
    assert set(create_errors(workspace, **{field: value})) == {field}
