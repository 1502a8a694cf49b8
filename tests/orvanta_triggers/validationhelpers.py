"""What the validation tests share: a valid trigger, every field set, and the errors a create raises."""

import pytest
from django.core.exceptions import ValidationError

from orvanta_triggers import services

VALID = {"path": "f/test/feed", "url": "ws://example.org/feed", "script_path": "examples/echo"}

# Every configuration field of DESIGN.md's trigger JSON.
FULL_TRIGGER = {
    "path": "f/demo/ticks",
    "url": "ws://example.org/feed",
    "url_runnable_args": {},
    "script_path": "examples/echo",
    "is_flow": False,
    "enabled": True,
    "filters": [{"key": "type", "value": "tick"}],
    "filter_logic": "and",
    "initial_messages": [
        {"raw_message": '{"op": "subscribe"}'},
        {"runnable_result": {"path": "examples/auth_message", "args": {}, "is_flow": False}},
    ],
    "can_return_message": False,
    "can_return_error_result": False,
    "heartbeat": {"interval_secs": 10, "message": '{"op": 1, "d": {{state}}}', "state_field": "s"},
    "error_handler_path": None,
    "error_handler_args": {},
    "retry": {"max_attempts": 3, "delay_secs": 1, "multiplier": 2},
    "headers": {},
    "subprotocols": [],
}


def create_errors(workspace, **overrides):
    """The message_dict of the ValidationError that create_trigger raises."""
    with pytest.raises(ValidationError) as info:
        services.create_trigger(workspace=workspace, **{**VALID, **overrides})
    return info.value.message_dict


def flow_errors(workspace, **fields):
    with pytest.raises(ValidationError) as info:
        services.create_flow(workspace=workspace, **{"path": "f/test/flow", **fields})
    return info.value.message_dict
