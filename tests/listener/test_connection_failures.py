"""Connection trouble and bad input from servers: each gets a clear recorded reason,
the right retry policy, and harms no other trigger."""

import logging
import time

from orvanta_triggers.models import WebSocketTrigger
from tests.listener.helpers import make_trigger, wait_connected, wait_jobs, wait_status
from tests.rawservers import http_status, silent, upgrade_then
from tests.support.frames import frame
from tests.support.wsserver import wait_for


def trigger_error(trigger):
    return WebSocketTrigger.objects.get(pk=trigger.pk).error or ""


def test_http_4xx_on_upgrade_is_permanent_and_retried_at_the_cap(e2e_workspace, raw_server, listener, settings):
    """A 403 on the upgrade is recorded and retried only at the backoff cap, never disabled."""
    settings.ORVANTA_BACKOFF_MAX_SECS = 1.5
    server = raw_server(http_status(403))
    trigger = wait_status(make_trigger(e2e_workspace, server), "error")
    assert "HTTP 403" in trigger.error
    first_attempts = server.requests
    started = time.monotonic()
    wait_for(lambda: server.requests > first_attempts, timeout=5, message="a retry")
    assert time.monotonic() - started > 1.0
    assert WebSocketTrigger.objects.get(pk=trigger.pk).enabled


def test_http_5xx_on_upgrade_is_retried_with_backoff(e2e_workspace, raw_server, listener, settings):
    """A 503 on the upgrade is retryable: several quick attempts, each recorded."""
    settings.ORVANTA_BACKOFF_MAX_SECS = 30
    server = raw_server(http_status(503))
    trigger = make_trigger(e2e_workspace, server)
    wait_for(lambda: server.requests >= 3, timeout=5, message="three attempts")
    wait_for(lambda: "HTTP 503" in trigger_error(trigger), timeout=5, message="the recorded reason")


def test_server_that_never_answers_is_an_error_after_the_connect_timeout(e2e_workspace, raw_server, listener, settings):
    """A server that accepts TCP and says nothing is an error after the timeout, not a hang."""
    settings.ORVANTA_CONNECT_TIMEOUT_SECS = 1
    server = raw_server(silent)
    started = time.monotonic()
    trigger = wait_status(make_trigger(e2e_workspace, server), "error", timeout=5)
    assert "no answer within 1s" in trigger.error
    assert time.monotonic() - started < 6


def test_unanswered_ping_drops_a_dead_connection(e2e_workspace, raw_server, listener, settings):
    """A connection whose pings go unanswered is declared dead and reconnected."""
    settings.ORVANTA_PING_INTERVAL_SECS = 0.3
    settings.ORVANTA_PONG_TIMEOUT_SECS = 0.3
    server = raw_server(upgrade_then())
    trigger = make_trigger(e2e_workspace, server)
    wait_for(lambda: server.requests >= 2, timeout=5, message="a reconnect after the dead connection")
    wait_for(lambda: "no pong within" in trigger_error(trigger), timeout=5, message="the recorded reason")


def test_answered_pings_keep_the_connection(e2e_workspace, ws_server, listener, settings):
    """Pongs (taken by the socket, never by websocket-client) count: a quiet server that answers pings is kept."""
    settings.ORVANTA_PING_INTERVAL_SECS = 0.3
    settings.ORVANTA_PONG_TIMEOUT_SECS = 0.3
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    time.sleep(3)
    assert ws_server.connects == 1 and ws_server.open_connections == 1


def test_oversized_frame_is_refused_recorded_and_the_connection_kept(
    e2e_workspace, raw_server, ws_server, celery_worker, listener, settings
):
    """A frame over the limit is skipped unread and recorded; the next frame still runs, others unaffected."""
    settings.ORVANTA_MAX_MESSAGE_BYTES = 1000
    big = raw_server(upgrade_then(frame(0x1, b"x" * 5000), frame(0x1, b"after")))
    trigger = make_trigger(e2e_workspace, big, path="f/test/big")
    make_trigger(e2e_workspace, ws_server, path="f/test/other")
    [job] = wait_jobs(count=1, status="success", trigger_path="f/test/big")
    assert job.args == {"msg": "after"}
    wait_for(lambda: "refused a message of 5000+ bytes" in trigger_error(trigger), timeout=5, message="the record")
    assert big.requests == 1 and big.close_codes() == []
    wait_connected(ws_server)


def test_fragmented_message_over_the_limit_is_refused(e2e_workspace, raw_server, celery_worker, listener, settings):
    """Fragments adding up past the limit are refused like one big frame; the next message runs."""
    settings.ORVANTA_MAX_MESSAGE_BYTES = 1000
    fragments = [
        frame(0x1, b"a" * 600, fin=False),
        frame(0x0, b"b" * 600, fin=False),
        frame(0x0, b"c" * 10, fin=True),
        frame(0x1, b"next"),
    ]
    server = raw_server(upgrade_then(*fragments))
    trigger = make_trigger(e2e_workspace, server)
    [job] = wait_jobs(count=1, status="success")
    assert job.args == {"msg": "next"}
    wait_for(lambda: "refused a message of 1210+ bytes" in trigger_error(trigger), timeout=5, message="the record")


def test_non_utf8_text_frame_is_refused_with_1007(e2e_workspace, raw_server, listener):
    """A text frame that is not UTF-8 closes with 1007 and the reason is recorded."""
    server = raw_server(upgrade_then(frame(0x1, b"\xff\xfe\xfd")))
    trigger = make_trigger(e2e_workspace, server)
    wait_for(lambda: "invalid frame from the server" in trigger_error(trigger), timeout=5, message="the refusal")
    wait_for(lambda: 1007 in server.close_codes(), timeout=5, message="a 1007 close frame")


def test_invalid_close_code_on_the_wire_is_a_protocol_error(e2e_workspace, raw_server, listener):
    """A server sending close code 1006 (never valid on the wire) gets 1002 back; we reconnect."""
    server = raw_server(upgrade_then(frame(0x8, b"\x03\xee")))
    trigger = make_trigger(e2e_workspace, server)
    wait_for(
        lambda: "protocol error" in trigger_error(trigger) and "1006" in trigger_error(trigger),
        timeout=5,
        message="the reason",
    )
    wait_for(lambda: 1002 in server.close_codes(), timeout=5, message="a 1002 close frame")
    wait_for(lambda: server.requests >= 2, timeout=5, message="a reconnect")


def test_private_address_refused_at_connect_when_not_allowed(e2e_workspace, ws_server, listener, settings):
    """With private URLs disallowed, a URL resolving to loopback is refused at connect."""
    trigger = make_trigger(e2e_workspace, ws_server, url=ws_server.url.replace("127.0.0.1", "localhost"))
    wait_connected(ws_server)
    settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    ws_server.close_all(1012)
    trigger = wait_status(trigger, "error")
    assert "private or internal address" in trigger.error
    assert ws_server.connects == 1


def test_secrets_in_the_url_never_reach_status_or_logs(e2e_workspace, raw_server, listener, caplog):
    """A token in the query string is redacted from the recorded error and the log."""
    caplog.set_level(logging.INFO)
    server = raw_server(http_status(401))
    trigger = make_trigger(
        e2e_workspace, server, url=f"{server.url}?token=s3cret&user=bob", headers={"Authorization": "Bearer hunter2"}
    )
    trigger = wait_status(trigger, "error")
    assert "token=***" in trigger.error and "s3cret" not in trigger.error
    assert "s3cret" not in caplog.text and "hunter2" not in caplog.text
