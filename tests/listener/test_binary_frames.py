"""Binary frames out: initial messages, heartbeats and results sent as binary frames,
end to end (real server, listener, worker, Redis)."""

import base64

from orvanta_triggers.models import Job
from tests.listener.helpers import make_trigger, wait_connected, wait_jobs
from tests.support.wsserver import wait_for

MQTT_CONNECT = bytes.fromhex("101000044d5154540402003c0004746573")


def test_a_bytes_result_goes_back_as_a_binary_frame(e2e_workspace, ws_server, celery_worker, listener):
    """A script returning bytes has them sent as a binary frame; its job shows result_type binary, base64 result."""
    make_trigger(e2e_workspace, ws_server, script_path="echo_bytes", can_return_message=True)
    wait_connected(ws_server)
    ws_server.send_all(b"\x00\xffbinary")
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert job.result_type == "binary" and base64.b64decode(job.result) == b"\x00\xffbinary"
    wait_for(lambda: ws_server.received_snapshot() == [b"\x00\xffbinary"], timeout=5, message="the binary result")


def test_binary_initial_messages_are_sent_as_binary_frames(e2e_workspace, ws_server, celery_worker, listener):
    """binary_message and a runnable returning bytes go out as binary frames, in order, after text ones."""
    make_trigger(
        e2e_workspace,
        ws_server,
        initial_messages=[
            {"binary_message": base64.b64encode(MQTT_CONNECT).decode()},
            {"raw_message": '"hello"'},
            {"runnable_result": {"path": "mqtt_pingreq", "args": {}, "is_flow": False}},
        ],
    )
    wait_for(lambda: len(ws_server.received_snapshot()) == 3, timeout=10, message="three initial messages")
    assert ws_server.received_snapshot() == [MQTT_CONNECT, "hello", b"\xc0\x00"]


def test_a_binary_heartbeat_is_a_binary_frame(e2e_workspace, ws_server, listener):
    """A heartbeat with binary_message sends those bytes every interval (MQTT PINGREQ)."""
    make_trigger(e2e_workspace, ws_server, heartbeat={"interval_secs": 1, "binary_message": "wAA="})
    wait_connected(ws_server)
    wait_for(lambda: len(ws_server.received_snapshot()) >= 2, timeout=5, message="two heartbeats")
    assert set(ws_server.received_snapshot()) == {b"\xc0\x00"}
