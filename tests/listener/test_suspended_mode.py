"""Suspended mode end to end: a real listener, worker and WebSocket server. A
suspended trigger stays connected and records its matching frames as suspended
jobs; resume runs them (oldest first, with the trigger's current configuration),
discard drops them."""

import itertools

from orvanta_triggers import services
from orvanta_triggers.models import Job, WebSocketTrigger
from tests.listener.helpers import make_trigger, wait_connected, wait_jobs
from tests.runnables import error_sink
from tests.support.wsserver import wait_for

TICK_FILTER = [{"key": "type", "value": "tick"}]
BASE = "/api/w/e2e/websocket_triggers/f/test/feed"


def tick(n):
    return f'{{"type": "tick", "n": {n}}}'


def suspended_jobs(count):
    jobs = wait_jobs(count=count, status=Job.Status.SUSPENDED)
    return sorted(jobs, key=lambda job: job.created_at)


def test_suspended_trigger_records_matching_frames_and_runs_nothing(e2e_workspace, ws_server, celery_worker, listener):
    """Each frame its filters match becomes a suspended job holding the frame; none runs, nothing is sent back."""
    make_trigger(e2e_workspace, ws_server, mode="suspended", filters=TICK_FILTER, can_return_message=True)
    wait_connected(ws_server)
    for message in (tick(1), '{"type": "other"}', tick(2)):
        ws_server.send_all(message)
    jobs = suspended_jobs(2)
    assert sorted(job.args["msg"] for job in jobs) == sorted([tick(1), tick(2)])
    assert {(job.kind, job.trigger_path, job.started_at) for job in jobs} == {("trigger", "f/test/feed", None)}
    assert Job.objects.count() == 2 and ws_server.received_snapshot() == []


def test_resume_runs_suspended_jobs_oldest_first_and_sends_their_results(
    e2e_workspace, ws_server, celery_worker, listener, owner_api
):
    """resume_jobs/ runs every suspended job, oldest first (by frame arrival); the live connection gets each result."""
    make_trigger(e2e_workspace, ws_server, mode="suspended", can_return_message=True)
    wait_connected(ws_server)
    messages = [f"m{n}" for n in range(5)]
    for message in messages:
        ws_server.send_all(message)
    oldest_first = suspended_jobs(5)
    assert [job.args["msg"] for job in oldest_first] == messages
    ids = [str(job.id) for job in oldest_first]
    response = owner_api.post(f"{BASE}/resume_jobs/")
    assert response.status_code == 200 and response.json() == {"resumed": ids}
    # One message carries them in that order; a worker runs them in it while they are
    # quick, but may spread a slow message's jobs over idle processes (jobrunner).
    jobs = wait_jobs(count=5, status=Job.Status.SUCCESS)
    assert sorted(job.result for job in jobs) == messages
    wait_for(lambda: len(ws_server.received_snapshot()) == 5, timeout=10, message="five results sent back")
    assert sorted(ws_server.received_snapshot()) == messages


def test_resume_one_job_runs_only_that_one(e2e_workspace, ws_server, celery_worker, listener, owner_api):
    """jobs/<id>/resume/ runs that suspended job alone; the others stay suspended."""
    make_trigger(e2e_workspace, ws_server, mode="suspended")
    wait_connected(ws_server)
    for message in ("a", "b", "c"):
        ws_server.send_all(message)
    by_message = {job.args["msg"]: job.id for job in suspended_jobs(3)}
    response = owner_api.post(f"/api/w/e2e/jobs/{by_message['b']}/resume/")
    assert response.status_code == 200 and response.json()["status"] in ("queued", "running", "success")
    [done] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert done.id == by_message["b"] and done.result == "b"
    suspended = set(Job.objects.filter(status=Job.Status.SUSPENDED).values_list("id", flat=True))
    assert suspended == {by_message["a"], by_message["c"]}


def test_discard_drops_suspended_jobs_unrun(e2e_workspace, ws_server, celery_worker, listener, owner_api):
    """discard_jobs/ ends every suspended job `discarded`; a discarded job can be neither resumed nor discarded again."""
    make_trigger(e2e_workspace, ws_server, mode="suspended")
    wait_connected(ws_server)
    for message in ("a", "b"):
        ws_server.send_all(message)
    jobs = suspended_jobs(2)
    assert owner_api.post(f"{BASE}/discard_jobs/").json() == {"discarded": 2}
    assert set(Job.objects.values_list("status", flat=True)) == {"discarded"}
    assert all(job.finished_at for job in Job.objects.all())
    assert owner_api.post(f"/api/w/e2e/jobs/{jobs[0].id}/resume/").status_code == 409
    assert owner_api.post(f"/api/w/e2e/jobs/{jobs[0].id}/discard/").status_code == 409


def test_resumed_job_gets_the_current_configuration_retries_and_error_handler(
    e2e_workspace, ws_server, celery_worker, listener, owner_api
):
    """A resumed job runs the trigger's script as it is now, with its retries and error handler."""
    trigger = make_trigger(e2e_workspace, ws_server, mode="suspended", script_path="examples/echo")
    wait_connected(ws_server)
    ws_server.send_all("boom")
    [job] = suspended_jobs(1)
    services.update_trigger(
        trigger=WebSocketTrigger.objects.get(pk=trigger.pk),
        script_path="examples/fail",
        retry={"max_attempts": 2, "delay_secs": 0.1, "multiplier": 1},
        error_handler_path="error_sink",
    )
    assert owner_api.post(f"/api/w/e2e/jobs/{job.id}/resume/").status_code == 200
    [failed] = wait_jobs(count=1, status=Job.Status.FAILURE, kind=Job.Kind.TRIGGER)
    assert (failed.id, failed.script_path, failed.attempt) == (job.id, "examples/fail", 2)
    [call] = wait_for(error_sink.calls, timeout=10, message="the error handler")
    assert call["job_id"] == str(job.id)


def test_switching_between_enabled_and_suspended_keeps_the_connection(
    e2e_workspace, ws_server, celery_worker, listener, owner_api
):
    """setmode/ between enabled and suspended applies to the next frames on the same connection."""
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    probes = itertools.count()
    assert owner_api.post(f"{BASE}/setmode/", {"mode": "suspended"}, format="json").status_code == 200
    wait_for(lambda: probe(ws_server, probes) == "suspended", timeout=10, message="a frame to be suspended")
    assert owner_api.post(f"{BASE}/setmode/", {"mode": "enabled"}, format="json").status_code == 200
    wait_for(lambda: probe(ws_server, probes) == "success", timeout=10, message="a frame to run")
    assert (ws_server.connects, ws_server.open_connections) == (1, 1)


def probe(server, counter):
    """Send a frame of its own; the status of the job it became (the listener applies
    an edit within a reconcile tick, so a frame sent at once may still go the old way)."""
    msg = f"probe-{next(counter)}"
    server.send_all(msg)

    def job_status():
        statuses = [job.status for job in Job.objects.all() if job.args.get("msg") == msg]
        return statuses[0] if statuses and statuses[0] in ("suspended", "success") else None

    return wait_for(job_status, timeout=10, message=f"the job of {msg}")
