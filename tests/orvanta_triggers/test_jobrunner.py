"""A message's jobs on a worker (orvanta_triggers.jobrunner), called directly: each
job run, recorded and answered on its own; slow jobs spread; a time limit per job."""

import json
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from prometheus_client import REGISTRY

from orvanta_triggers import bus, jobrunner, selectors, services
from orvanta_triggers.models import Job
from orvanta_triggers.wire import job_spec
from tests.orvanta_triggers.helpers import run_jobs
from tests.runnables import sleep_then_echo
from tests.support.wsserver import wait_for

URL = "ws://example.org/feed"
# The batch watchdog writes rows from its own thread (its own database connection),
# so what the tests create must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_measurements():
    """Durations measured by earlier tests don't decide how these split."""
    jobrunner._durations.clear()
    yield
    jobrunner._durations.clear()
    sleep_then_echo.bus.client().delete(sleep_then_echo.runs_key())


@pytest.fixture
def make_spec(workspace):
    count = iter(range(1000))

    def make(**fields):
        trigger = services.create_trigger(
            workspace=workspace,
            **{"path": f"f/test/feed{next(count)}", "url": URL, "script_path": "examples/echo", **fields},
        )
        return job_spec(trigger)

    return make


def jobs_of(spec, *msgs):
    return [[str(uuid.uuid4()), spec["trigger_id"], msg, "text", URL] for msg in msgs]


def specs_of(*specs):
    return {str(spec["trigger_id"]): spec for spec in specs}


def rows(jobs):
    by_id = {str(job.id): job for job in Job.objects.all()}
    return [by_id.get(job[0]) for job in jobs]


def sleeping(seconds, tag=""):
    return json.dumps({"sleep": seconds, "tag": tag})


class HandOffs:
    """Stands in for the broker: records the groups of jobs handed off."""

    def __init__(self):
        self.groups = []

    def __call__(self, runs):
        self.groups.append([run.wire() for run in runs])

    @property
    def job_ids(self):
        return [job[0] for group in self.groups for job in group]


def test_bad_jobs_do_not_harm_their_neighbours(make_spec):
    """NUL in a frame, a failing script, a NaN result and a bad preprocessor each end as
    their own row; the good jobs around them succeed."""
    echo = make_spec()
    fail, nan = make_spec(script_path="examples/fail"), make_spec(script_path="returns_nan")
    bad_pre = make_spec(script_path="bad_preprocessor")
    jobs = (
        jobs_of(echo, "first")
        + jobs_of(echo, "MESSAGE\ndestination:/q\n\nbody\x00")
        + jobs_of(fail, "x")
        + jobs_of(nan, "y")
        + jobs_of(bad_pre, "z")
        + jobs_of(echo, "last")
    )
    assert run_jobs(specs_of(echo, fail, nan, bad_pre), jobs) == {"success": 3, "failure": 3}
    recorded = rows(jobs)
    assert [job.status for job in recorded] == ["success", "success", "failure", "failure", "failure", "success"]
    assert recorded[1].args == {"msg": "MESSAGE\ndestination:/q\n\nbody\x00"} == {"msg": recorded[1].result}
    assert recorded[3].error["name"] == "RunnableError" and "not JSON" in recorded[3].error["message"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite does not enforce column lengths")
def test_a_row_the_database_refuses_fails_alone(make_spec):
    """A job whose row the database refuses is skipped with an error; its neighbours are recorded."""
    good = make_spec()
    refused = {**make_spec(), "script_path": "examples/echo" + "x" * 300}
    jobs = jobs_of(good, "a") + jobs_of(refused, "b") + jobs_of(good, "c")
    run_jobs(specs_of(good, refused), jobs)
    recorded = rows(jobs)
    assert recorded[0].status == recorded[2].status == "success" and recorded[1] is None


def test_a_slow_job_hands_the_rest_of_its_batch_off(make_spec):
    """Once a job has run for a few milliseconds, the jobs not started yet go back to the
    broker (here: a recorder) instead of waiting behind it."""
    spec = make_spec(script_path="sleep_then_echo")
    jobs = jobs_of(spec, *(sleeping(0.2, str(i)) for i in range(4)))
    hand_offs = HandOffs()
    assert run_jobs(specs_of(spec), jobs, hand_off=hand_offs) == {"success": 1}
    assert hand_offs.job_ids == [job[0] for job in jobs[1:]]
    assert [job.status if job else None for job in rows(jobs)] == ["success", None, None, None]


def test_a_known_slow_script_is_spread_before_it_runs(make_spec):
    """A script measured slow in this process gets its next batch split at once: one job
    per message when each takes longer than the batch budget."""
    spec = make_spec(script_path="sleep_then_echo")
    run_jobs(specs_of(spec), jobs_of(spec, sleeping(0.1)))
    jobs = jobs_of(spec, *(sleeping(0.1, str(i)) for i in range(3)))
    hand_offs = HandOffs()
    run_jobs(specs_of(spec), jobs, hand_off=hand_offs)
    assert hand_offs.groups == [[job] for job in jobs[1:]]


def test_quick_jobs_stay_in_one_batch(make_spec):
    """Jobs that take microseconds all run in the message that brought them."""
    spec = make_spec()
    run_jobs(specs_of(spec), jobs_of(spec, "the script is imported"))
    jobs = jobs_of(spec, *(str(i) for i in range(100)))
    hand_offs = HandOffs()
    assert run_jobs(specs_of(spec), jobs, hand_off=hand_offs) == {"success": 100}
    assert hand_offs.groups == []


def test_a_job_past_the_time_limit_fails_and_its_neighbour_runs(make_spec, settings):
    """ORVANTA_JOB_TIMEOUT_SECS bounds each job: the slow one fails with JobTimeout, the next succeeds."""
    settings.ORVANTA_JOB_TIMEOUT_SECS = 0.5
    spec = make_spec(script_path="sleep_then_echo")
    jobs = jobs_of(spec, sleeping(30), sleeping(0))
    assert run_jobs(specs_of(spec), jobs) == {"failure": 1, "success": 1}
    timed_out, after = rows(jobs)
    assert timed_out.error["name"] == "JobTimeout" and "0.5s" in timed_out.error["message"]
    assert after.status == "success"


def test_a_long_job_shows_running_meanwhile(make_spec):
    """A job running for more than a second has its row say `running` until it ends."""
    spec = make_spec(script_path="sleep_then_echo")
    jobs = jobs_of(spec, sleeping(2))
    worker = threading.Thread(target=run_jobs, args=(specs_of(spec), jobs))
    worker.start()
    try:
        wait_for(lambda: Job.objects.filter(status="running").exists(), timeout=1.9, message="a running row")
    finally:
        worker.join()
    assert rows(jobs)[0].status == "success"


def test_a_redelivered_message_runs_only_what_did_not_end(make_spec):
    """Redelivered, a message skips its jobs that ended and those retried since."""
    spec = make_spec()
    ended, retried, lost = jobs_of(spec, "ended", "retried", "lost")
    run_jobs(specs_of(spec), [ended])
    row = {"workspace_id": spec["workspace_id"], "script_path": spec["script_path"], "args": {"msg": "retried"}}
    services.record_jobs(jobs={retried[0]: {**row, "status": "queued", "attempt": 2}})
    assert run_jobs(specs_of(spec), [ended, retried, lost], redelivered=True) == {"success": 1}
    assert [job.status for job in rows([ended, retried, lost])] == ["success", "queued", "success"]


def test_results_wait_out_a_redis_outage(private_redis, settings):
    """A result Redis refuses is held, counted, and published once Redis answers again."""
    settings.REDIS_URL = private_redis.url
    bus.reset_client()
    outbox = jobrunner.ResultOutbox()
    held_before = REGISTRY.get_sample_value("orvanta_results_held_total")
    try:
        private_redis.stop()
        outbox.publish([(7, "job-1", "the result")])
        assert REGISTRY.get_sample_value("orvanta_results_held_total") == held_before + 1
        # Retries back off (0.1 s, doubling): after 1.5 s down, the next is 1.6 s away,
        # time enough to subscribe before it.
        time.sleep(1.5)  # the outage itself
        private_redis.start()
        subscriber = bus.client().pubsub()
        subscriber.subscribe(bus.results_channel(7))
        message = wait_for(
            lambda: subscriber.get_message(ignore_subscribe_messages=True, timeout=0.5),
            timeout=10,
            message="the result",
        )
        assert json.loads(message["data"]) == {"job_id": "job-1", "frame": "the result"}
    finally:
        bus.reset_client()


def test_batches_running_side_by_side_are_each_watched(make_spec):
    """With a threads pool, two slow batches at once both hand their rest off."""
    spec = make_spec(script_path="sleep_then_echo")
    batches = [jobs_of(spec, *(sleeping(0.2, f"{b}-{i}") for i in range(3))) for b in range(2)]
    hand_offs = [HandOffs(), HandOffs()]
    threads = [
        threading.Thread(target=run_jobs, args=(specs_of(spec), jobs), kwargs={"hand_off": sink})
        for jobs, sink in zip(batches, hand_offs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [sink.job_ids for sink in hand_offs] == [[job[0] for job in jobs[1:]] for jobs in batches]


def test_one_job_messages_do_not_wake_the_watchdog(make_spec, monkeypatch):
    """A stream of quick one-job messages (a steady low rate) costs the watchdog no look:
    a lone job has nothing to hand off, only `running` to show after a second."""
    looks = []
    check = jobrunner.Batch.check
    monkeypatch.setattr(jobrunner.Batch, "check", lambda batch, now: looks.append(now) or check(batch, now))
    spec = make_spec()
    for i in range(20):
        assert run_jobs(specs_of(spec), jobs_of(spec, str(i))) == {"success": 1}
    assert looks == []


def test_a_slow_batch_stays_whole_while_every_process_is_busy(make_spec):
    """With messages waiting in the queue (no process idle), handing jobs off would only
    reorder them: the batch runs them all."""
    spec = make_spec(script_path="sleep_then_echo")
    jobs = jobs_of(spec, *(sleeping(0.05, str(i)) for i in range(3)))
    hand_offs = HandOffs()
    assert run_jobs(specs_of(spec), jobs, hand_off=hand_offs, queue_is_empty=lambda: False) == {"success": 3}
    assert hand_offs.groups == []


def test_jobs_whose_hand_off_failed_late_still_run(make_spec):
    """A hand-off that fails after the batch's last job ended puts its jobs back, and
    they run: none is left without a row."""
    spec = make_spec(script_path="sleep_then_echo")
    jobs = jobs_of(spec, sleeping(0.05, "slow"), sleeping(0, "a"), sleeping(0, "b"))

    def slow_failing_hand_off(runs):
        time.sleep(0.2)  # the broker hangs, then refuses, after the slow job ended
        raise OSError("broker unavailable")

    assert run_jobs(specs_of(spec), jobs, hand_off=slow_failing_hand_off) == {"success": 3}
    assert [job.status for job in rows(jobs)] == ["success"] * 3


# A suspended trigger's jobs


def test_jobs_of_a_suspended_trigger_are_recorded_unrun(make_spec):
    """A suspended trigger's jobs get a `suspended` row with their frame, type and URL; its neighbours run."""
    suspended, echo = make_spec(mode="suspended"), make_spec()
    held, ran = jobs_of(suspended, "held\x00"), jobs_of(echo, "ran")
    assert run_jobs(specs_of(suspended, echo), held + ran) == {"suspended": 1, "success": 1}
    [row] = rows(held)
    assert (row.status, row.args, row.event, row.started_at) == (
        "suspended",
        {"msg": "held\x00"},
        {"msg_type": "text", "url": URL},
        None,
    )


def test_suspended_jobs_are_oldest_first_by_arrival_whichever_row_was_written_first(make_spec):
    """Suspended jobs sort by when the listener accepted their frames, not by when a worker wrote their rows."""
    spec = make_spec(mode="suspended")
    first, second = (job + [1, arrived_at] for job, arrived_at in zip(jobs_of(spec, "first", "second"), (100.0, 100.5)))
    run_jobs(specs_of(spec), [second])
    run_jobs(specs_of(spec), [first])
    oldest_first = selectors.suspended_jobs(workspace_id=spec["workspace_id"], trigger_path=spec["trigger_path"])
    assert [job.args["msg"] for job in oldest_first] == ["first", "second"]
    assert oldest_first[0].created_at == datetime(1970, 1, 1, 0, 1, 40, tzinfo=UTC)


def test_a_message_carrying_a_suspended_job_again_leaves_its_row_alone(make_spec):
    """A job resumed (or discarded) meanwhile keeps its row when the message that suspended it comes again."""
    spec = make_spec(mode="suspended")
    jobs = jobs_of(spec, "once")
    run_jobs(specs_of(spec), jobs)
    Job.objects.filter(id=jobs[0][0]).update(status=Job.Status.QUEUED)
    run_jobs(specs_of(spec), jobs)
    assert rows(jobs)[0].status == "queued"


@pytest.mark.parametrize("status", ["suspended", "discarded"])
def test_a_redelivered_message_skips_suspended_and_discarded_jobs(make_spec, status):
    """A redelivered message neither runs nor re-records a job that is suspended or discarded."""
    spec = make_spec()
    jobs = jobs_of(spec, "held")
    services.record_jobs(jobs={jobs[0][0]: {"workspace_id": spec["workspace_id"], "status": status}})
    assert run_jobs(specs_of(spec), jobs, redelivered=True) == {}
    assert rows(jobs)[0].status == status


# Error handlers


def test_error_handler_runs_within_the_job_time_limit(make_spec, settings):
    """An error handler that runs past ORVANTA_JOB_TIMEOUT_SECS ends as a failed error_handler job (JobTimeout)."""
    settings.ORVANTA_JOB_TIMEOUT_SECS = 0.5
    spec = make_spec(
        script_path="examples/fail", error_handler_path="slow_error_handler", error_handler_args={"sleep": 30}
    )
    jobs = jobs_of(spec, "boom")
    run_jobs(specs_of(spec), jobs)
    handler = Job.objects.get(kind=Job.Kind.ERROR_HANDLER)
    assert (handler.status, handler.error["name"], str(handler.parent_job_id)) == ("failure", "JobTimeout", jobs[0][0])
