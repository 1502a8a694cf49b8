"""A trigger's connection end to end: real server, real listener, real worker, real Redis."""

import json

from prometheus_client import REGISTRY

from orvanta_triggers.models import Job
from tests.listener.helpers import fail_once, make_trigger, wait_connected, wait_jobs, wait_status
from tests.support.wsserver import wait_for


def test_text_frame_becomes_success_job_and_result_goes_back(e2e_workspace, ws_server, celery_worker, listener):
    """A text frame runs the script on a worker and its result is sent back on the socket."""
    make_trigger(e2e_workspace, ws_server, can_return_message=True, script_path="upper")
    wait_connected(ws_server)
    ws_server.send_all("hello")
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert job.args == {"msg": "hello"} and job.result == "HELLO" and job.trigger_path == "f/test/feed"
    wait_for(lambda: "HELLO" in ws_server.received_snapshot(), timeout=5, message="result back at the server")


def test_non_string_result_is_sent_as_json(e2e_workspace, ws_server, celery_worker, listener):
    """A dict result goes back as its JSON text."""
    make_trigger(e2e_workspace, ws_server, can_return_message=True, script_path="examples/json_content")
    wait_connected(ws_server)
    ws_server.send_all(json.dumps({"content": "hi"}))
    wait_for(lambda: ws_server.received_snapshot(), timeout=10, message="a result")
    assert json.loads(ws_server.received_snapshot()[0]) == {"content": "hi", "url": ws_server.url}


def test_failing_script_records_failure_and_sends_nothing(e2e_workspace, ws_server, celery_worker, listener):
    """A script that raises gives a failure job with its error, and no frame goes back."""
    make_trigger(e2e_workspace, ws_server, can_return_message=True, script_path="examples/fail")
    wait_connected(ws_server)
    ws_server.send_all("boom")
    [job] = wait_jobs(count=1, status=Job.Status.FAILURE)
    assert job.error["name"] == "RuntimeError"
    assert "always fails" in job.error["message"] and "Traceback" in job.error["stack"]
    # Then a succeeding frame's result proves the channel works and nothing came before it.
    ws_server.send_all("ok")
    wait_jobs(count=2)
    assert ws_server.received_snapshot() == []


def test_results_stay_home_without_can_return_message(e2e_workspace, ws_server, celery_worker, listener):
    """With "send runnable result" off, a successful job sends nothing back."""
    make_trigger(e2e_workspace, ws_server, script_path="upper")
    wait_connected(ws_server)
    ws_server.send_all("quiet")
    wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert ws_server.received_snapshot() == []


def test_filters_decide_which_frames_become_jobs(e2e_workspace, ws_server, celery_worker, listener):
    """Only frames matching the JSON filter produce jobs."""
    make_trigger(e2e_workspace, ws_server, filters=[{"key": "type", "value": "tick"}])
    wait_connected(ws_server)
    for message in ('{"type": "tock"}', "not json", '{"type": "tick", "n": 1}'):
        ws_server.send_all(message)
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert job.args == {"msg": '{"type": "tick", "n": 1}'}


def test_status_is_recorded(e2e_workspace, ws_server, celery_worker, listener):
    """The listener records connected, last_connected_at, last_message_at and itself."""
    trigger = make_trigger(e2e_workspace, ws_server)
    trigger = wait_status(trigger, "connected")
    assert trigger.last_connected_at is not None and trigger.listener_id == "test-listener"
    ws_server.send_all("x")
    wait_for(lambda: type(trigger).objects.get(pk=trigger.pk).last_message_at, timeout=5, message="last_message_at")


def test_server_close_is_followed_by_reconnect(e2e_workspace, ws_server, celery_worker, listener):
    """When the server closes the connection the listener connects again."""
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    ws_server.close_all(1001, "going away")
    wait_for(lambda: ws_server.connects >= 2 and ws_server.open_connections == 1, timeout=5, message="a reconnect")


def test_server_restart_is_followed_by_reconnect(e2e_workspace, ws_server, celery_worker, listener):
    """A server that goes away entirely and comes back is reconnected to."""
    trigger = make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    ws_server.stop()
    ws_server.close_all(1012)
    wait_status(trigger, "connecting")
    ws_server.restart()
    wait_status(trigger, "connected")
    assert ws_server.connects >= 2


def test_unreachable_server_puts_trigger_in_error(e2e_workspace, ws_server, listener):
    """A refused connection is recorded as status error with the reason."""
    ws_server.stop()
    trigger = make_trigger(e2e_workspace, ws_server)
    trigger = wait_status(trigger, "error")
    assert "ConnectionRefused" in trigger.error


def test_an_unexpected_error_is_shown_and_the_connection_comes_back(
    e2e_workspace, ws_server, celery_worker, listener, monkeypatch, caplog
):
    """A bug hit while handling a frame is logged at ERROR with the trigger path, counted,
    and followed by a reconnect after which frames become jobs again."""
    from listener.status import StatusWriter

    fail_once(monkeypatch, StatusWriter, "touch", RuntimeError("injected fault"))
    crashes = REGISTRY.get_sample_value("orvanta_listener_connection_crashes_total")
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    ws_server.send_all("first")
    wait_for(lambda: ws_server.connects >= 2 and ws_server.open_connections, timeout=10, message="a reconnect")
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "f/test/feed" in r.getMessage()]
    assert errors and errors[0].exc_info is not None
    assert REGISTRY.get_sample_value("orvanta_listener_connection_crashes_total") == crashes + 1
    ws_server.send_all("second")
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert job.args == {"msg": "second"}


def test_a_regex_filter_keeps_only_the_frames_it_matches(e2e_workspace, ws_server, celery_worker, listener):
    """A STOMP-like text stream: only MESSAGE frames become jobs; heart-beats and binary frames don't."""
    make_trigger(e2e_workspace, ws_server, filters=[{"regex": "^MESSAGE\n"}])
    wait_connected(ws_server)
    for frame in ("CONNECTED\nversion:1.2\n\n\x00", "\n", b"MESSAGE\n", "MESSAGE\ndestination:/q\n\nhi\x00"):
        ws_server.send_all(frame)
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert job.args == {"msg": "MESSAGE\ndestination:/q\n\nhi\x00"}
    ws_server.send_all("MESSAGE\n\nsecond\x00")
    assert len(wait_jobs(count=2, status=Job.Status.SUCCESS)) == 2


def test_wss_frames_become_jobs_and_results_go_back_over_tls(
    e2e_workspace, ws_server_factory, trusted_ca, celery_worker, listener
):
    """Over wss, frames become jobs and results are sent back on the same TLS connection."""
    server = ws_server_factory(ssl_context=trusted_ca.server_context("localhost"))
    make_trigger(
        e2e_workspace, server, url=f"wss://localhost:{server.port}/feed", can_return_message=True, script_path="upper"
    )
    wait_connected(server)
    server.send_all("over tls")
    wait_jobs(count=1, status=Job.Status.SUCCESS)
    wait_for(lambda: "OVER TLS" in server.received_snapshot(), timeout=10, message="the result over TLS")
