"""Secrets by role: what viewers see of a trigger and a job, and redacted values sent back."""

from orvanta_triggers import redaction
from orvanta_triggers.models import Membership, WebSocketTrigger


def test_only_roles_that_write_see_secrets():
    """Developers and admins see secrets; viewers and non-members don't."""
    assert [redaction.sees_secrets(role) for role in (*Membership.Role, None)] == [True, True, False, False]


def test_a_url_without_secrets_is_shown_as_it_is():
    """URLs without a query string or password, and runnable URLs, are not changed."""
    for url in ("ws://example.org/feed", "$script:examples/ws_url", "$flow:f/a/b"):
        assert redaction.redact_url(url) == url


def test_url_query_values_and_password_are_redacted():
    """Every query value and a userinfo password are ***."""
    assert redaction.redact_url("wss://bob:pw@example.org/ws?token=s3cret&v=2") == (
        "wss://bob:***@example.org/ws?token=***&v=***"
    )


def test_urls_in_job_args_are_redacted_at_any_depth():
    """Strings holding URLs are redacted wherever they are, 5,000 levels deep included, and the args are untouched."""
    args = {"url": "ws://x.example.org/?t=1", "n": 3}
    for _ in range(5000):
        args = {"inner": [args]}
    shown = redaction.redact_urls_in(args)
    for _ in range(5000):
        args, shown = args["inner"][0], shown["inner"][0]
    assert shown == {"url": "ws://x.example.org/?t=***", "n": 3}
    assert args == {"url": "ws://x.example.org/?t=1", "n": 3}


def test_a_redacted_url_sent_back_keeps_the_stored_one():
    """The URL as a viewer sees it is the stored URL; any other URL is taken as sent."""
    trigger = WebSocketTrigger(url="wss://example.org/ws?token=s3cret")
    kept = redaction.keep_stored_secrets(trigger, {"url": "wss://example.org/ws?token=***"})
    assert kept == {"url": "wss://example.org/ws?token=s3cret"}
    changed = redaction.keep_stored_secrets(trigger, {"url": "wss://example.org/other?token=***"})
    assert changed == {"url": "wss://example.org/other?token=***"}


def test_an_initial_message_changed_keeps_only_its_redacted_args():
    """A runnable whose path changes keeps the stored value of each of its args sent back as ***."""
    stored = {"runnable_result": {"path": "examples/auth_message", "args": {"token": "s3cret", "user": "bob"}}}
    trigger = WebSocketTrigger(initial_messages=[stored, {"raw_message": '"hi"'}])
    sent = [
        {"runnable_result": {"path": "examples/echo", "args": {"token": "***", "user": "ann"}}},
        {"raw_message": "***"},
        {"raw_message": "***"},
    ]
    assert redaction.keep_stored_secrets(trigger, {"initial_messages": sent}) == {
        "initial_messages": [
            {"runnable_result": {"path": "examples/echo", "args": {"token": "s3cret", "user": "ann"}}},
            {"raw_message": '"hi"'},
            {"raw_message": "***"},
        ]
    }


def test_a_resume_message_is_hidden_and_kept_when_sent_back():
    """A viewer sees the resume message as ***, refused_when as it is; *** sent back keeps the stored message."""
    stored = {
        "message": '{"op": 6, "d": {"token": "secret", "seq": {{seq}}}}',
        "refused_when": {"key": "op", "value": 9},
    }
    shown = redaction.redact_trigger_config({"resume": stored})["resume"]
    assert shown == {"message": "***", "refused_when": {"key": "op", "value": 9}}
    assert redaction.KEEPERS["resume"](shown, stored) == stored
