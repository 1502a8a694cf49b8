"""Test connection's URL runnable: its own queue and its own short time limit, so that
one workspace's slow runnable, or a backlog of jobs, never holds another's back."""

import time
import uuid

import pytest

from orvanta_triggers import conf, services
from orvanta_triggers.tasks import run_trigger_job
from orvanta_triggers.wire import job_spec
from tests.conftest import api_client_for
from tests.listener.helpers import make_trigger, wait_jobs
from tests.runnables import sleep_then_echo
from tests.support.processes import start_worker
from tests.support.wsserver import wait_for


def probe(client, url, *, slug="acme", **args):
    """(body, seconds) of a test connection to `$script:slow_url` returning `url`."""
    started = time.monotonic()
    body = client.post(
        f"/api/w/{slug}/test_websocket_connection/",
        {"url": "$script:slow_url", "url_runnable_args": {"url": url, "seconds": 0, **args}},
        format="json",
    ).json()
    return body, time.monotonic() - started


def test_test_connection_waits_for_its_url_runnable_at_most_its_limit(api, ws_server, celery_worker, settings):
    """A URL runnable slower than ORVANTA_TEST_CONNECTION_TIMEOUT_SECS fails the test at that limit (it waited 10 s)."""
    settings.ORVANTA_TEST_CONNECTION_TIMEOUT_SECS = 1
    body, seconds = probe(api, ws_server.url, seconds=4)
    assert body["ok"] is False and "slow_url did not answer within 1s" in body["error"]
    assert seconds < 3


def test_the_default_test_connection_limit_is_10_seconds():
    """ORVANTA_TEST_CONNECTION_TIMEOUT_SECS defaults to 10 seconds."""
    assert conf.test_connection_timeout_secs() == 10


def test_url_runnables_do_not_wait_behind_a_backlog_of_jobs(api, workspace, ws_server, celery_worker):
    """With 5 s of trigger jobs queued, test connection's URL runnable runs at the next free slot (it queued behind them)."""
    trigger = make_trigger(workspace, ws_server, script_path="sleep_then_echo")
    for n in range(20):
        run_trigger_job.delay(
            job_id=str(uuid.uuid4()),
            spec=job_spec(trigger),
            msg=f'{{"sleep": 0.5, "n": {n}}}',
            msg_type="text",
            url=ws_server.url,
        )
    wait_for(lambda: sleep_then_echo.runs(), timeout=10, message="the jobs started")
    body, seconds = probe(api, ws_server.url)
    assert body["ok"] is True and seconds < 2.5
    wait_jobs(count=20, status="success", timeout=30)


@pytest.mark.timeout(180)
def test_a_slow_url_runnable_gives_its_worker_back_at_the_limit(
    api, workspace, ws_server, django_user_model, settings, transactional_db
):
    """A runnable past its limit is stopped, so another workspace's test connection runs at once on a one-process worker (it waited 20 s)."""
    other = django_user_model.objects.create_user(username="other-owner", password="pw")
    services.create_workspace(slug="other", owner=other)
    other_client = api_client_for(other)
    worker = start_worker("probe-limit", concurrency=1)
    try:
        wait_for(
            lambda: probe(other_client, ws_server.url, slug="other")[0]["ok"],
            timeout=60,
            message="the worker",
        )
        settings.ORVANTA_TEST_CONNECTION_TIMEOUT_SECS = 2
        slow, _ = probe(api, ws_server.url, seconds=30)
        # Whichever comes first: the caller giving up, or the worker's reply that it stopped the runnable.
        assert slow["ok"] is False and ("did not answer within 2s" in slow["error"] or "waits (2s)" in slow["error"])
        fast, seconds = probe(other_client, ws_server.url, slug="other")
        assert fast["ok"] is True and seconds < 2
    finally:
        output = worker.stop()
    assert "ran longer than the time its caller waits (2s)" in output
