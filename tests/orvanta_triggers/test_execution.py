"""The worker side of a job (orvanta_triggers.execution), called directly: no broker.
Results travel through real Redis pub/sub."""

import json
import uuid

import pytest
import redis
from django.conf import settings

from orvanta_triggers import bus, execution, services, wire
from orvanta_triggers.models import Job
from tests.orvanta_triggers.helpers import Requeue, run_jobs
from tests.runnables import other_error_handler, record_error, record_event

URL = "ws://example.org/feed"
# The batch watchdog writes rows from its own thread (its own database connection),
# so what the tests create must be committed.
pytestmark = pytest.mark.django_db(transaction=True)
TRIGGER_PATH = "f/test/feed"

FLOW_STEPS = [
    {"id": "a", "script_path": "upper", "args": {"msg": {"type": "ref", "expr": "flow_input.msg"}}},
    {
        "id": "b",
        "script_path": "wrap",
        "args": {
            "value": {"type": "ref", "expr": "results.a"},
            "prefix": {"type": "static", "value": "> "},
        },
    },
]


@pytest.fixture(autouse=True)
def clear_recordings():
    for module in (record_error, other_error_handler):
        module.CALLS.clear()
    record_event.EVENTS.clear()
    record_event.CALLS.clear()
    yield


job_spec = wire.job_spec


@pytest.fixture
def make_trigger(workspace):
    def make(**fields):
        return services.create_trigger(
            workspace=workspace, **{"path": TRIGGER_PATH, "url": URL, "script_path": "examples/echo", **fields}
        )

    return make


def run_spec(spec, msg="hello", *, attempt=1, job_id=None, requeue=None, msg_type="text"):
    """Run one job of `spec`; returns (its status, its Job row)."""
    job_id = job_id or str(uuid.uuid4())
    statuses = run_jobs(
        {str(spec["trigger_id"]): spec}, [[job_id, spec["trigger_id"], msg, msg_type, URL, attempt]], requeue=requeue
    )
    (status,) = statuses
    return status, Job.objects.get(id=job_id)


def run(trigger, msg="hello", **kwargs):
    """Run one job for `trigger`; returns (its status, its Job row)."""
    return run_spec(job_spec(trigger), msg, **kwargs)


@pytest.fixture
def published():
    """published(trigger) -> subscribe to its result channel now; call the returned
    function after a run to get the frames published for a job id."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    subscriptions = []

    def subscribe(trigger):
        pubsub = client.pubsub()
        pubsub.subscribe(bus.results_channel(trigger.id))
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"
        subscriptions.append(pubsub)

        def frames(job_id, wait=0.2):
            found = []
            while (message := pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)) is not None:
                payload = json.loads(message["data"])
                # Other test sessions may share the server: keep this job's frames only.
                if payload["job_id"] == str(job_id):
                    found.append(payload["frame"])
            return found

        return frames

    yield subscribe
    for pubsub in subscriptions:
        pubsub.close()
    client.close()


# Scripts


def test_echo_job_succeeds(make_trigger):
    """examples/echo records a success job with args {"msg": ...} and the message as result."""
    status, job = run(make_trigger(), "hello")
    assert status == Job.Status.SUCCESS
    assert (job.status, job.args, job.result, job.error) == ("success", {"msg": "hello"}, "hello", None)
    assert job.script_path == "examples/echo" and job.trigger_path == TRIGGER_PATH and job.attempt == 1
    assert job.started_at is not None and job.finished_at >= job.started_at


def test_failing_job_records_error(make_trigger):
    """examples/fail records a failure with the exception's name, message and stack."""
    status, job = run(make_trigger(script_path="examples/fail"), "hello")
    assert status == Job.Status.FAILURE and job.status == "failure" and job.result is None
    assert job.error["name"] == "RuntimeError"
    assert job.error["message"] == "examples/fail always fails (got 5 characters)"
    assert job.error["stack"].startswith("Traceback") and "RuntimeError" in job.error["stack"]


def test_preprocessor_maps_event_to_main_kwargs(make_trigger):
    """examples/json_content's preprocessor turns the event into main's kwargs, which are the job's args."""
    status, job = run(make_trigger(script_path="examples/json_content"), json.dumps({"content": "hi"}))
    assert status == Job.Status.SUCCESS
    assert job.args == {"message_content": "hi", "url": URL}
    assert job.result == {"content": "hi", "url": URL}


def test_preprocessor_receives_websocket_event(make_trigger):
    """The preprocessor gets {"kind": "websocket", "msg", "url", "trigger_path", "msg_type"} and nothing else."""
    run(make_trigger(script_path="record_event"), "hello", msg_type="binary")
    assert record_event.EVENTS == [
        {"kind": "websocket", "msg": "hello", "url": URL, "trigger_path": TRIGGER_PATH, "msg_type": "binary"}
    ]
    assert record_event.CALLS == [{"text": "hello", "kind": "websocket"}]


def test_preprocessor_failure_fails_job(make_trigger):
    """examples/json_content's preprocessor raising on a non-JSON message fails the job."""
    status, job = run(make_trigger(script_path="examples/json_content"), "not json")
    assert status == Job.Status.FAILURE and job.error["name"] == "JSONDecodeError"


def test_preprocessor_returning_non_dict_fails_job(make_trigger):
    """A preprocessor that returns a list fails the job, saying it returned a list, not a dict."""
    status, job = run(make_trigger(script_path="bad_preprocessor"))
    assert status == Job.Status.FAILURE
    assert job.error["name"] == "RunnableError"
    assert "returned list" in job.error["message"] and "dict" in job.error["message"]


def test_redelivered_job_reuses_its_row(make_trigger):
    """Running the same job id twice (a redelivery) updates one row instead of adding another."""
    trigger = make_trigger()
    job_id = str(uuid.uuid4())
    run(trigger, job_id=job_id)
    run(trigger, job_id=job_id, attempt=2)
    assert Job.objects.count() == 1 and Job.objects.get().attempt == 2


# Retry

RETRY = {"max_attempts": 3, "delay_secs": 1, "multiplier": 2}


def test_failed_attempt_with_retry_is_requeued(make_trigger):
    """A failing first attempt with retries left calls requeue(countdown=1, attempt=2) and stays "queued"."""
    requeue = Requeue()
    status, job = run(make_trigger(script_path="examples/fail", retry=RETRY), requeue=requeue)
    assert requeue.calls == [(1, 2)]
    assert status == Job.Status.QUEUED and job.status == "queued" and job.error["name"] == "RuntimeError"


def test_retry_delay_grows_by_multiplier(make_trigger):
    """The second failed attempt waits delay_secs * multiplier before the third."""
    requeue = Requeue()
    run(make_trigger(script_path="examples/fail", retry=RETRY), attempt=2, requeue=requeue)
    assert requeue.calls == [(2, 3)]


def test_last_attempt_fails_for_good(make_trigger):
    """On its last attempt a failing job is "failure" and is not requeued."""
    requeue = Requeue()
    status, job = run(make_trigger(script_path="examples/fail", retry=RETRY), attempt=3, requeue=requeue)
    assert requeue.calls == []
    assert status == Job.Status.FAILURE and job.status == "failure" and job.attempt == 3


def test_no_retry_fails_at_once(make_trigger):
    """Without retry a failing job is "failure" after one attempt."""
    requeue = Requeue()
    status, _ = run(make_trigger(script_path="examples/fail"), requeue=requeue)
    assert status == Job.Status.FAILURE and requeue.calls == []


def test_retried_attempt_does_not_call_error_handler(workspace, make_trigger):
    """The error handler waits for the final failure: a requeued attempt doesn't call it."""
    services.update_workspace_settings(workspace=workspace, error_handler_path="record_error")
    run(make_trigger(script_path="examples/fail", retry=RETRY))
    assert record_error.CALLS == []


# Error handlers


def test_workspace_error_handler_called_with_failure(workspace, make_trigger):
    """The workspace's error handler is called once with the documented arguments."""
    services.update_workspace_settings(
        workspace=workspace, error_handler_path="record_error", error_handler_args={"channel": "#alerts"}
    )
    _, job = run(make_trigger(script_path="examples/fail"))
    assert len(record_error.CALLS) == 1
    call = record_error.CALLS[0]
    assert call == {
        "error": job.error,
        "job_id": str(job.id),
        "script_path": "examples/fail",
        "is_flow": False,
        "trigger_path": TRIGGER_PATH,
        "workspace": "acme",
        "started_at": job.started_at.isoformat(),
        "failed_at": job.finished_at.isoformat(),
        "error_handler_args": {"channel": "#alerts"},
    }


def test_trigger_error_handler_overrides_workspace(workspace, make_trigger):
    """A trigger's error_handler_path runs instead of the workspace's, with the trigger's args."""
    services.update_workspace_settings(workspace=workspace, error_handler_path="record_error")
    trigger = make_trigger(
        script_path="examples/fail", error_handler_path="other_error_handler", error_handler_args={"to": "ops"}
    )
    run(trigger)
    assert record_error.CALLS == []
    assert len(other_error_handler.CALLS) == 1 and other_error_handler.CALLS[0]["error_handler_args"] == {"to": "ops"}


def test_success_does_not_call_error_handler(workspace, make_trigger):
    """A successful job calls no error handler."""
    services.update_workspace_settings(workspace=workspace, error_handler_path="record_error")
    run(make_trigger())
    assert record_error.CALLS == []


def test_failing_error_handler_keeps_job_failure(workspace, make_trigger):
    """An error handler that raises is logged; the job stays a plain failure."""
    services.update_workspace_settings(workspace=workspace, error_handler_path="examples/fail")
    status, job = run(make_trigger(script_path="examples/fail"))
    assert status == Job.Status.FAILURE and job.status == "failure"


# Flows


def test_flow_runs_steps_and_fires_early_return(workspace):
    """run_flow feeds step a's result to step b and calls on_early_return with step a's result."""
    flow = services.create_flow(workspace=workspace, path="f/test/flow", steps=FLOW_STEPS, early_return="a")
    early = []
    flow_input, result = execution.run_flow(flow, event={"msg": "hello"}, on_early_return=early.append)
    assert flow_input == {"msg": "hello"}
    assert early == ["HELLO"]
    assert result == {"wrapped": "> HELLO"}


def test_flow_trigger_job_records_final_result(workspace, make_trigger):
    """A job of a flow trigger records the flow input as args and the last step's result."""
    services.create_flow(workspace=workspace, path="f/test/flow", steps=FLOW_STEPS, early_return="a")
    status, job = run(make_trigger(script_path="f/test/flow", is_flow=True), "hello")
    assert status == Job.Status.SUCCESS and job.is_flow is True
    assert job.args == {"msg": "hello"} and job.result == {"wrapped": "> HELLO"}


def test_flow_early_return_is_the_frame_sent(workspace, make_trigger, published):
    """With early_return, the early step's result is the one frame sent back, not the final result."""
    services.create_flow(workspace=workspace, path="f/test/flow", steps=FLOW_STEPS, early_return="a")
    trigger = make_trigger(script_path="f/test/flow", is_flow=True, can_return_message=True)
    frames = published(trigger)
    _, job = run(trigger, "hello")
    assert frames(job.id) == ["HELLO"]


def test_flow_without_early_return_sends_final_result(workspace, make_trigger, published):
    """Without early_return the flow's final result is sent back, as JSON."""
    services.create_flow(workspace=workspace, path="f/test/flow", steps=FLOW_STEPS)
    trigger = make_trigger(script_path="f/test/flow", is_flow=True, can_return_message=True)
    frames = published(trigger)
    _, job = run(trigger, "hello")
    assert [json.loads(frame) for frame in frames(job.id)] == [{"wrapped": "> HELLO"}]


def test_flow_preprocessor_builds_flow_input(workspace, make_trigger):
    """A flow's preprocessor_path maps the event to the flow input used by the steps."""
    steps = [
        {"id": "a", "script_path": "upper", "args": {"msg": {"type": "ref", "expr": "flow_input.message_content"}}}
    ]
    services.create_flow(
        workspace=workspace, path="f/test/flow", steps=steps, preprocessor_path="examples/json_content"
    )
    _, job = run(make_trigger(script_path="f/test/flow", is_flow=True), json.dumps({"content": "hi"}))
    assert job.args == {"message_content": "hi", "url": URL} and job.result == "HI"


def test_job_for_missing_flow_fails(make_trigger):
    """A job whose spec names a flow that is not (or no longer) in the workspace fails instead of raising."""
    spec = {**job_spec(make_trigger()), "script_path": "f/no/flow", "is_flow": True}
    status, job = run_spec(spec)
    assert status == Job.Status.FAILURE and job.error["name"] == "RunnableError"


# Results on Redis


def test_string_result_published_as_is(make_trigger, published):
    """With can_return_message, a string result is published unchanged."""
    trigger = make_trigger(can_return_message=True)
    frames = published(trigger)
    _, job = run(trigger, '{"a": 1}')
    assert frames(job.id) == ['{"a": 1}']


def test_dict_result_published_as_json(make_trigger, published):
    """With can_return_message, a dict result is published as its JSON text."""
    trigger = make_trigger(script_path="examples/json_content", can_return_message=True)
    frames = published(trigger)
    _, job = run(trigger, json.dumps({"content": "hi"}))
    sent = frames(job.id)
    assert len(sent) == 1 and json.loads(sent[0]) == {"content": "hi", "url": URL}


def test_none_result_not_published(make_trigger, published):
    """A None result sends nothing back."""
    trigger = make_trigger(script_path="returns_none", can_return_message=True)
    frames = published(trigger)
    _, job = run(trigger)
    assert job.status == "success" and frames(job.id) == []


def test_nothing_published_without_can_return_message(make_trigger, published):
    """With can_return_message off, a successful result is not sent back."""
    trigger = make_trigger()
    frames = published(trigger)
    _, job = run(trigger)
    assert frames(job.id) == []


def test_error_published_with_can_return_error_result(make_trigger, published):
    """With both flags on, a failure is published as {"error": {"name", "message", "stack"}}."""
    trigger = make_trigger(script_path="examples/fail", can_return_message=True, can_return_error_result=True)
    frames = published(trigger)
    _, job = run(trigger)
    sent = frames(job.id)
    assert len(sent) == 1 and json.loads(sent[0]) == {"error": job.error}
    assert set(job.error) == {"name", "message", "stack"}


def test_error_not_published_without_can_return_error_result(make_trigger, published):
    """With can_return_message only, a failure sends nothing back."""
    trigger = make_trigger(script_path="examples/fail", can_return_message=True)
    frames = published(trigger)
    _, job = run(trigger)
    assert frames(job.id) == []


def test_error_result_needs_can_return_message(make_trigger, published):
    """can_return_error_result alone sends nothing: it only extends can_return_message."""
    trigger = make_trigger(script_path="examples/fail", can_return_error_result=True)
    frames = published(trigger)
    _, job = run(trigger)
    assert frames(job.id) == []


def test_retried_failure_not_published(make_trigger, published):
    """A failed attempt that will be retried publishes no error frame."""
    trigger = make_trigger(
        script_path="examples/fail", retry=RETRY, can_return_message=True, can_return_error_result=True
    )
    frames = published(trigger)
    _, job = run(trigger)
    assert job.status == "queued" and frames(job.id) == []


def test_abandoned_running_jobs_are_marked_failed(workspace):
    """A job left running since before the horizon is failed as lost; a recent one is left alone."""
    from datetime import timedelta

    from django.utils import timezone

    running = dict(
        workspace_id=workspace.id,
        trigger_path="f/x",
        script_path="examples/echo",
        is_flow=False,
        args={},
        attempt=1,
        status="running",
    )
    rows = services.record_jobs(
        jobs={
            "00000000-0000-0000-0000-00000000a001": {**running, "started_at": timezone.now() - timedelta(hours=2)},
            "00000000-0000-0000-0000-00000000a002": {**running, "started_at": timezone.now()},
        }
    )
    old, recent = rows.values()
    assert services.fail_abandoned_jobs(running_since_before=timezone.now() - timedelta(hours=1)) == 1
    old.refresh_from_db()
    recent.refresh_from_db()
    assert old.status == "failure" and old.error["name"] == "JobLost" and recent.status == "running"


def batch(trigger, *msgs):
    return [[str(uuid.uuid4()), trigger.id, msg, "text", URL] for msg in msgs]


def test_a_batch_records_one_row_per_job_in_order(make_trigger):
    """A batch message runs every job, each with its own row and outcome."""
    ok, bad = make_trigger(), make_trigger(path="f/x/fails", script_path="examples/fail")
    jobs = batch(ok, "a", "b") + batch(bad, "c")
    specs = {str(t.id): job_spec(t) for t in (ok, bad)}
    assert run_jobs(specs, jobs) == {"success": 2, "failure": 1}
    rows = {str(j.id): j for j in Job.objects.all()}
    assert [rows[j[0]].status for j in jobs] == ["success", "success", "failure"]
    assert rows[jobs[1][0]].result == "b" and rows[jobs[2][0]].error["name"] == "RuntimeError"


def test_a_resent_batch_skips_jobs_that_already_ended(make_trigger):
    """Jobs sent again after a Redis restart run once: those already ended are skipped."""
    trigger = make_trigger(script_path="upper")
    jobs = batch(trigger, "a")
    specs = {str(trigger.id): job_spec(trigger)}
    run_jobs(specs, jobs)
    Job.objects.update(result="first run")
    assert run_jobs(specs, jobs, redelivered=True) == {}
    assert Job.objects.get().result == "first run"
