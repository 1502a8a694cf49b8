"""Session resume against a gateway that replays missed events: after a drop the
listener sends RESUME with the captured session id and sequence, the events it missed
become jobs, none twice; a refused resume falls back to the initial messages."""

import json

import pytest

from orvanta_triggers.models import Job
from tests.listener.helpers import make_trigger, wait_jobs
from tests.resumegateway import ResumeGateway
from tests.support.wsserver import wait_for

IDENTIFY = '{"op": 2, "d": {"token": "bot-token"}}'
RESUME = {
    "message": '{"op": 6, "d": {"session_id": {{session_id}}, "seq": {{seq}}}}',
    "refused_when": {"key": "op", "value": 9},
}


@pytest.fixture
def gateway():
    server = ResumeGateway().start()
    yield server
    server.shutdown()


def make_gateway_trigger(workspace, gateway):
    return make_trigger(
        workspace,
        gateway,
        initial_messages=[{"raw_message": IDENTIFY}],
        capture={"session_id": "d.session_id", "seq": "s"},
        resume=RESUME,
        filters=[{"key": "t", "value": "MESSAGE_CREATE"}],
    )


def event_numbers():
    return sorted(json.loads(job.args["msg"])["d"]["n"] for job in Job.objects.all())


def drop_and_miss(gateway, count):
    """Drop the connection and dispatch `count` events while the client is away."""
    gateway.refusing.set()
    gateway.drop()
    wait_for(lambda: not gateway.connected, timeout=5, message="the drop")
    gateway.dispatch(count)
    gateway.refusing.clear()


def test_after_a_drop_the_missed_events_are_replayed_once(e2e_workspace, gateway, celery_worker, listener):
    """Drop, RESUME with the captured session and sequence: missed events become jobs, none twice."""
    make_gateway_trigger(e2e_workspace, gateway)
    wait_for(lambda: gateway.connected and gateway.ops(1) == [2], timeout=10, message="the identify")
    gateway.dispatch(3)
    wait_jobs(count=3, status=Job.Status.SUCCESS)
    drop_and_miss(gateway, 2)
    wait_jobs(count=5, status=Job.Status.SUCCESS)
    assert gateway.ops(2) == [6]
    assert gateway.connections[1][0]["d"] == {"session_id": gateway.session_ids[0], "seq": 4}
    assert event_numbers() == [2, 3, 4, 5, 6]


def test_a_refused_resume_falls_back_to_the_initial_messages(e2e_workspace, gateway, celery_worker, listener):
    """When the gateway answers RESUME with INVALID_SESSION, the listener identifies again on that connection."""
    make_gateway_trigger(e2e_workspace, gateway)
    wait_for(lambda: gateway.connected and gateway.ops(1) == [2], timeout=10, message="the identify")
    gateway.dispatch(1)
    wait_jobs(count=1, status=Job.Status.SUCCESS)
    gateway.forget_sessions()
    gateway.drop()
    wait_for(
        lambda: len(gateway.connections) == 2 and gateway.ops(2) == [6, 2], timeout=10, message="RESUME then IDENTIFY"
    )
    wait_for(lambda: gateway.connected, timeout=5, message="the connection kept")
    gateway.dispatch(2)
    wait_jobs(count=3, status=Job.Status.SUCCESS)
    assert len(gateway.connections) == 2 and len(gateway.session_ids) == 2


def test_without_a_captured_session_the_initial_messages_are_sent(e2e_workspace, gateway, listener):
    """A reconnect before any READY (nothing captured) identifies instead of resuming."""
    make_trigger(
        e2e_workspace,
        gateway,
        initial_messages=[{"raw_message": '{"op": 1, "d": null}'}],
        capture={"session_id": "d.session_id", "seq": "s"},
        resume=RESUME,
    )
    wait_for(lambda: gateway.connected and gateway.ops(1) == [1], timeout=10, message="the first connection")
    gateway.drop()
    wait_for(lambda: len(gateway.connections) == 2 and gateway.ops(2) == [1], timeout=10, message="initial messages")
