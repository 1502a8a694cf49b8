"""Each feature of the product page, end to end: a real WebSocket server, the real
listener, a real Celery worker and Redis."""

import base64
import json
import time

import pytest
from prometheus_client import REGISTRY

from orvanta_triggers import services
from orvanta_triggers.models import Job
from tests.listener.helpers import make_trigger, wait_connected, wait_jobs, wait_status
from tests.runnables import error_sink
from tests.support.wsserver import wait_for


def reconnects():
    return REGISTRY.get_sample_value("orvanta_listener_reconnects_total")


def test_dynamic_url_runs_the_url_runnable_before_connecting(e2e_workspace, ws_server, celery_worker, listener):
    """A $script: URL is computed on a worker and used, token in the query string."""
    make_trigger(
        e2e_workspace,
        ws_server,
        url="$script:examples/ws_url",
        url_runnable_args={"base_url": ws_server.url, "token": "s3cret"},
    )
    wait_connected(ws_server)
    assert ws_server.request_paths[0] == "/feed?token=s3cret"


def test_dynamic_url_runs_again_on_every_reconnect(e2e_workspace, ws_server, celery_worker, listener):
    """The URL runnable runs before each reconnect too, and the secret is never shown."""
    trigger = make_trigger(
        e2e_workspace,
        ws_server,
        url="$script:examples/ws_url",
        url_runnable_args={"base_url": ws_server.url, "token": "s3cret"},
    )
    wait_connected(ws_server)
    ws_server.close_all(1011)
    wait_for(lambda: ws_server.connects >= 2 and ws_server.open_connections, timeout=10, message="a reconnect")
    assert ws_server.request_paths == ["/feed?token=s3cret"] * len(ws_server.request_paths)
    assert "s3cret" not in (type(trigger).objects.get(pk=trigger.pk).error or "")


def test_dynamic_url_returning_a_non_string_is_an_error(e2e_workspace, ws_server, celery_worker, listener):
    """A URL runnable that returns no string puts the trigger in error, saying what it returned."""
    trigger = make_trigger(e2e_workspace, ws_server, url="$script:url_number")
    trigger = wait_status(trigger, "error")
    assert "did not return a string" in trigger.error and "int" in trigger.error
    assert ws_server.connects == 0


def test_preprocessor_maps_the_event_to_main_arguments(e2e_workspace, ws_server, celery_worker, listener):
    """The product page's preprocessor gets the event with the resolved URL; main gets its dict."""
    make_trigger(e2e_workspace, ws_server, script_path="examples/json_content")
    wait_connected(ws_server)
    ws_server.send_all(json.dumps({"content": "hello"}))
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert job.args == {"message_content": "hello", "url": ws_server.url}
    assert job.result == {"content": "hello", "url": ws_server.url}


def test_preprocessor_that_raises_fails_the_job(e2e_workspace, ws_server, celery_worker, listener):
    """A preprocessor error (here: a non-JSON message) fails the job with that reason."""
    make_trigger(e2e_workspace, ws_server, script_path="examples/json_content")
    wait_connected(ws_server)
    ws_server.send_all("not json")
    [job] = wait_jobs(count=1, status=Job.Status.FAILURE)
    assert job.error["name"] == "JSONDecodeError"


def test_flow_early_return_sends_the_early_result_before_the_flow_ends(
    e2e_workspace, ws_server, celery_worker, listener
):
    """With early_return, the chosen step's result goes back while a 2 s later step still runs."""
    services.create_flow(
        workspace=e2e_workspace,
        path="f/demo/pipeline",
        early_return="a",
        steps=[
            {"id": "a", "script_path": "examples/parse", "args": {"msg": {"type": "ref", "expr": "flow_input.msg"}}},
            {
                "id": "b",
                "script_path": "examples/slow_double",
                "args": {"x": {"type": "ref", "expr": "results.a.value"}, "delay": {"type": "static", "value": 2}},
            },
        ],
    )
    make_trigger(e2e_workspace, ws_server, script_path="f/demo/pipeline", is_flow=True, can_return_message=True)
    wait_connected(ws_server)
    ws_server.send_all(json.dumps({"value": 21}))
    wait_for(ws_server.received_snapshot, timeout=10, message="the early result")
    result_seen_at = time.time()
    assert json.loads(ws_server.received_snapshot()[0]) == {"value": 21}
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert job.result == 42
    assert job.finished_at.timestamp() - result_seen_at > 1.5
    assert len(ws_server.received_snapshot()) == 1


def test_send_runnable_result_sends_non_null_results_only(e2e_workspace, ws_server, celery_worker, listener):
    """With send runnable result on, a null result sends nothing and a string goes back as-is."""
    make_trigger(e2e_workspace, ws_server, script_path="returns_none", can_return_message=True)
    wait_connected(ws_server)
    ws_server.send_all("first")
    wait_jobs(count=1, status=Job.Status.SUCCESS)
    services.update_trigger(trigger=type_trigger(e2e_workspace), script_path="examples/echo")
    # The edit applies to the open connection within a reconcile tick: frames sent
    # until then still run returns_none, and send nothing back.
    probes = iter(range(1000))
    wait_for(
        lambda: ws_server.send_all(f"probe-{next(probes)}") or ws_server.received_snapshot(),
        timeout=10,
        interval=0.2,
        message="a result",
    )
    assert all(result.startswith("probe-") for result in ws_server.received_snapshot())


def type_trigger(workspace):
    return workspace.websocket_triggers.get()


def test_send_result_even_on_error_sends_the_error(e2e_workspace, ws_server, celery_worker, listener):
    """With both toggles on, a failure goes back as {"error": {name, message, stack}}."""
    make_trigger(
        e2e_workspace, ws_server, script_path="examples/fail", can_return_message=True, can_return_error_result=True
    )
    wait_connected(ws_server)
    ws_server.send_all("boom")
    wait_for(ws_server.received_snapshot, timeout=10, message="the error result")
    error = json.loads(ws_server.received_snapshot()[0])["error"]
    assert error["name"] == "RuntimeError" and "always fails" in error["message"] and "Traceback" in error["stack"]


def test_initial_messages_are_sent_in_order_after_every_connect(e2e_workspace, ws_server, celery_worker, listener):
    """A raw string goes unquoted, raw JSON as written, a runnable's dict as JSON; in order, on every connect."""
    make_trigger(
        e2e_workspace,
        ws_server,
        initial_messages=[
            {"raw_message": '"hello"'},
            {"raw_message": '{"op": "subscribe", "channel": "ticks"}'},
            {"runnable_result": {"path": "examples/auth_message", "args": {"token": "t0k"}, "is_flow": False}},
        ],
    )
    expected = [
        "hello",
        '{"op": "subscribe", "channel": "ticks"}',
        json.dumps({"op": "auth", "token": "t0k", "subscribe": "ticks"}),
    ]
    wait_for(lambda: len(ws_server.received_snapshot()) == 3, timeout=10, message="three initial messages")
    assert ws_server.received_snapshot() == expected
    ws_server.close_all(1001)
    wait_for(lambda: len(ws_server.received_snapshot()) == 6, timeout=10, message="initial messages again")
    assert ws_server.received_snapshot() == expected * 2


def test_failing_initial_message_runnable_puts_trigger_in_error(e2e_workspace, ws_server, celery_worker, listener):
    """An initial-message runnable that fails marks the trigger error; the connection is retried."""
    trigger = make_trigger(
        e2e_workspace,
        ws_server,
        initial_messages=[
            {"runnable_result": {"path": "examples/fail", "args": {"msg": "x"}, "is_flow": False}},
        ],
    )
    trigger = wait_status(trigger, "error")
    assert "initial message 0" in trigger.error and "always fails" in trigger.error
    wait_for(lambda: ws_server.connects >= 2, timeout=10, message="a retry")


def test_filters_with_or_logic_match_any_filter(e2e_workspace, ws_server, celery_worker, listener):
    """With OR logic a frame matching either filter becomes a job; others do not."""
    make_trigger(
        e2e_workspace,
        ws_server,
        filter_logic="or",
        filters=[
            {"key": "type", "value": "trade"},
            {"key": "meta", "value": {"tags": ["vip"]}},
        ],
    )
    wait_connected(ws_server)
    for message in ({"type": "quote"}, {"type": "trade", "n": 1}, {"meta": {"tags": ["new", "vip"], "x": 1}}, [1]):
        ws_server.send_all(json.dumps(message))
    jobs = wait_jobs(count=2, status=Job.Status.SUCCESS)
    assert sorted(json.loads(j.args["msg"]).get("type", "meta") for j in jobs) == ["meta", "trade"]


def test_error_handler_and_retries(e2e_workspace, ws_server, celery_worker, listener):
    """A failing job is retried as configured; the handler is called once, after the last attempt."""
    services.update_workspace_settings(workspace=e2e_workspace, error_handler_path="examples/echo")
    make_trigger(
        e2e_workspace,
        ws_server,
        script_path="examples/fail",
        retry={"max_attempts": 2, "delay_secs": 0.2, "multiplier": 1},
        error_handler_path="error_sink",
        error_handler_args={"team": "ops"},
    )
    wait_connected(ws_server)
    ws_server.send_all("boom")
    [job] = wait_jobs(count=1, status=Job.Status.FAILURE)
    assert job.attempt == 2
    [call] = wait_for(error_sink.calls, timeout=5, message="the error handler")
    assert call["job_id"] == str(job.id) and call["error"]["name"] == "RuntimeError"
    assert call["trigger_path"] == "f/test/feed" and call["workspace"] == "e2e"
    assert call["error_handler_args"] == {"team": "ops"} and call["started_at"] and call["failed_at"]


def test_retry_succeeds_without_calling_the_error_handler(e2e_workspace, ws_server, celery_worker, listener):
    """A job that fails, then succeeds on retry, ends success and calls no handler."""
    make_trigger(
        e2e_workspace,
        ws_server,
        script_path="flaky",
        error_handler_path="error_sink",
        retry={"max_attempts": 3, "delay_secs": 0.1, "multiplier": 2},
    )
    wait_connected(ws_server)
    ws_server.send_all("retry-me")
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert job.attempt == 3 and job.result == "retry-me"
    assert error_sink.calls() == []


def test_lasting_connection_failure_notifies_the_error_handler_once(
    celery_worker, listener, trigger_failing_to_connect
):
    """A trigger failing to connect for longer than the threshold notifies its handler once."""
    [call] = wait_for(error_sink.calls, timeout=10, message="the notification")
    assert call["job_id"] is None and call["error"]["name"] == "ConnectionError"
    assert "refused" in call["error"]["message"].lower()
    attempts = reconnects()
    wait_for(lambda: reconnects() >= attempts + 4, timeout=10, message="more failed attempts in the same streak")
    assert len(error_sink.calls()) == 1


def test_plans_without_websocket_triggers_are_refused_and_ignored(e2e_workspace, ws_server, listener):
    """Free and team workspaces can't create triggers, and the listener ignores theirs."""
    from orvanta_triggers.models import Workspace

    free = services.create_workspace(slug="free-ws", plan=Workspace.Plan.FREE)
    with pytest.raises(services.PlanNotAllowed):
        make_trigger(free, ws_server)
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    Workspace.objects.filter(pk=e2e_workspace.pk).update(plan=Workspace.Plan.TEAM)
    wait_for(lambda: ws_server.open_connections == 0, timeout=3, message="the close")


def test_headers_and_subprotocols_are_sent_and_the_chosen_one_shown(e2e_workspace, ws_server_factory, listener):
    """Custom headers reach the server on the upgrade; the negotiated subprotocol is in status."""
    server = ws_server_factory(subprotocols=["v2.feed"])
    trigger = make_trigger(
        e2e_workspace,
        server,
        headers={"Authorization": "Bearer abc", "X-Client": "orvanta"},
        subprotocols=["v3.feed", "v2.feed"],
    )
    trigger = wait_status(trigger, "connected")
    assert trigger.subprotocol == "v2.feed"
    headers = {k.lower(): v for k, v in server.request_headers[0].items()}
    assert headers["authorization"] == "Bearer abc" and headers["x-client"] == "orvanta"


def test_binary_frames_are_delivered_as_base64(e2e_workspace, ws_server, celery_worker, listener):
    """A binary frame becomes a job with base64 msg and msg_type binary (Windmill drops them)."""
    make_trigger(e2e_workspace, ws_server, script_path="examples/json_content")
    services.update_trigger(trigger=type_trigger(e2e_workspace), script_path="msg_type")
    wait_connected(ws_server)
    ws_server.send_all(b"\x00\x01binary\xff")
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert job.result == {"msg": base64.b64encode(b"\x00\x01binary\xff").decode(), "msg_type": "binary"}
