"""When workers can't keep up: bounded listener memory, and either back-pressure
(nothing lost) or counted drops, as ORVANTA_OVERFLOW_POLICY says."""

import json
import logging
import time

import redis
from celery.contrib.testing.worker import start_worker
from django.utils import timezone
from prometheus_client import REGISTRY

from config.celery import app as celery_app
from listener import dispatch
from orvanta_triggers.models import Job
from tests.listener.helpers import make_trigger, wait_connected, wait_jobs
from tests.support.wsserver import wait_for


def dispatched():
    return REGISTRY.get_sample_value("orvanta_listener_frames_dispatched_total") or 0


def dropped():
    return REGISTRY.get_sample_value("orvanta_listener_frames_dropped_total", {"reason": "buffer_full"}) or 0


def backlog():
    return REGISTRY.get_sample_value("orvanta_listener_dispatch_backlog")


def test_backpressure_holds_frames_until_workers_catch_up(e2e_workspace, ws_server, listener_factory, settings):
    """With back-pressure, a flood fills the bounded buffer, then waits; nothing is lost."""
    settings.ORVANTA_OVERFLOW_POLICY = "backpressure"
    settings.ORVANTA_DISPATCH_BUFFER_SIZE = 5
    settings.ORVANTA_MAX_QUEUED_JOBS = 10
    listener_factory()
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    drops_before, dispatched_before = dropped(), dispatched()
    for n in range(40):
        ws_server.send_all(f"m{n}")
    wait_for(
        lambda: dispatched() - dispatched_before == 10 and backlog() == 5,
        timeout=10,
        message="ten jobs published and the buffer full",
    )
    assert dropped() == drops_before
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False):
        jobs = wait_jobs(count=40, status=Job.Status.SUCCESS, timeout=30)
    assert sorted(j.args["msg"] for j in jobs) == sorted(f"m{n}" for n in range(40))


def test_drop_policy_counts_and_logs_what_it_drops(e2e_workspace, ws_server, listener_factory, settings, caplog):
    """With the drop policy, frames past the bound are dropped, counted and logged; the socket stays."""
    caplog.set_level(logging.ERROR)
    settings.ORVANTA_OVERFLOW_POLICY = "drop"
    settings.ORVANTA_DISPATCH_BUFFER_SIZE = 5
    settings.ORVANTA_MAX_QUEUED_JOBS = 0
    listener_factory()
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    drops_before = dropped()
    for n in range(40):
        ws_server.send_all(f"m{n}")
    wait_for(lambda: dropped() > drops_before, timeout=10, message="counted drops")
    assert "dispatch buffer full" in caplog.text
    assert ws_server.open_connections == 1 and ws_server.connects == 1


def test_a_message_lost_on_its_way_to_a_worker_is_sent_again(e2e_workspace, ws_server, listener, settings):
    """A message taken off the queue by a worker that died before recording it (here:
    taken by the test) is sent again once a later message reached a worker."""
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(settings.CELERY_TASK_DEFAULT_QUEUE)  # what earlier tests left unconsumed
    ws_server.send_all("lost")
    wait_for(lambda: broker.rpop(settings.CELERY_TASK_DEFAULT_QUEUE), timeout=10, message="the message in the queue")
    resent_before = REGISTRY.get_sample_value("orvanta_listener_jobs_resent_total")
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False):
        ws_server.send_all("taken")
        jobs = wait_jobs(count=2, status=Job.Status.SUCCESS, timeout=15)
    assert sorted(j.args["msg"] for j in jobs) == ["lost", "taken"]
    assert REGISTRY.get_sample_value("orvanta_listener_jobs_resent_total") == resent_before + 1


def dispatches_within(seconds):
    """Frames handed to the broker within `seconds` of arriving (a histogram bucket's bound)."""
    return REGISTRY.get_sample_value("orvanta_listener_dispatch_latency_seconds_bucket", {"le": str(seconds)}) or 0


def test_frames_at_a_low_rate_are_not_held_for_company(e2e_workspace, ws_server, listener, settings, monkeypatch):
    """While messages wait in the queue, a frame that comes long after the last one
    goes at once: no company would come within the coalescing window."""
    # A long window, so that a frame held for company is told from a slow machine.
    monkeypatch.setattr(dispatch, "COALESCE_MAX_SECS", 0.5)
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    broker.delete(queue)
    broker.lpush(queue, "a message no worker took yet")
    try:
        prompt_before, dispatched_before = dispatches_within(0.25), dispatched()
        for n in range(3):
            # The input: one frame every 0.6 s, each after the previous one was published.
            time.sleep(0.6)
            ws_server.send_all(f"m{n}")
            wait_for(lambda: dispatched() - dispatched_before == n + 1, timeout=10, message=f"frame {n} published")
        assert dispatches_within(0.25) - prompt_before == 3
    finally:
        broker.delete(queue)


def test_published_messages_summarise_their_arguments(e2e_workspace, ws_server, listener, settings):
    """A job message's headers say how many jobs it carries, not what they are: Celery
    would copy the frames (secrets included) into them."""
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    broker.delete(queue)
    try:
        ws_server.send_all("password=hunter2")
        raw = wait_for(lambda: broker.rpop(queue), timeout=10, message="the message in the queue")
        headers = json.loads(raw)["headers"]
        assert (headers["argsrepr"], headers["kwargsrepr"]) == ("()", "{'jobs': 1}")
        assert "hunter2" not in json.dumps(headers)
    finally:
        broker.delete(queue)


def test_job_rows_are_stamped_with_their_frames_arrival_in_order(e2e_workspace, ws_server, listener, settings):
    """A job's created_at is when the listener accepted its frame, before any worker
    wrote its row, and a burst's rows sort in the order its frames came."""
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    sent_from, dispatched_before = timezone.now(), dispatched()
    for n in range(20):
        ws_server.send_all(f"m{n}")
    wait_for(lambda: dispatched() - dispatched_before == 20, timeout=10, message="twenty frames published")
    worker_started = timezone.now()
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False):
        jobs = wait_jobs(count=20, status=Job.Status.SUCCESS, timeout=30)
    oldest_first = sorted(jobs, key=lambda job: job.created_at)
    assert [job.args["msg"] for job in oldest_first] == [f"m{n}" for n in range(20)]
    assert sent_from <= oldest_first[0].created_at and oldest_first[-1].created_at < worker_started
