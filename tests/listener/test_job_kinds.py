"""Every run of user code is a job, end to end (a real listener, worker and server):
error handlers (with their parent), URL runnables, initial-message runnables, test
connections and replays, each recorded with its kind, args and outcome."""

from orvanta_triggers import services
from orvanta_triggers.models import Job
from tests.conftest import ROLES, api_client_for
from tests.listener.helpers import make_trigger, wait_connected, wait_jobs


def test_error_handler_run_is_a_job_with_its_parent(e2e_workspace, ws_server, celery_worker, listener, owner_api):
    """A final failure's error handler shows as a job of kind error_handler, parent the failed job, args visible."""
    make_trigger(e2e_workspace, ws_server, script_path="examples/fail", error_handler_path="error_sink")
    wait_connected(ws_server)
    ws_server.send_all("boom")
    [failed] = wait_jobs(count=1, status=Job.Status.FAILURE, kind=Job.Kind.TRIGGER)
    [handler] = wait_jobs(count=1, status=Job.Status.SUCCESS, kind=Job.Kind.ERROR_HANDLER)
    assert (handler.parent_job_id, handler.script_path, handler.trigger_path) == (
        failed.id,
        "error_sink",
        "f/test/feed",
    )
    assert handler.args["job_id"] == str(failed.id) and handler.args["error"]["name"] == "RuntimeError"
    listed = owner_api.get("/api/w/e2e/jobs/", {"kind": "error_handler"}).json()["results"]
    assert [(job["id"], job["parent_job_id"]) for job in listed] == [(str(handler.id), str(failed.id))]


def test_failing_error_handler_is_a_failed_job(e2e_workspace, ws_server, celery_worker, listener):
    """An error handler that raises ends as a failed error_handler job saying why (not just a log line)."""
    make_trigger(e2e_workspace, ws_server, script_path="examples/fail", error_handler_path="examples/fail")
    wait_connected(ws_server)
    ws_server.send_all("boom")
    [handler] = wait_jobs(count=1, status=Job.Status.FAILURE, kind=Job.Kind.ERROR_HANDLER)
    assert handler.error["name"] == "TypeError" and "unexpected keyword" in handler.error["message"]


def test_connection_failure_handler_is_a_job_without_parent(celery_worker, listener, trigger_failing_to_connect):
    """The error handler told of a lasting connection failure is an error_handler job with no parent."""
    [handler] = wait_jobs(count=1, status=Job.Status.SUCCESS, kind=Job.Kind.ERROR_HANDLER)
    assert handler.parent_job_id is None and handler.args["error"]["name"] == "ConnectionError"


def test_url_runnable_run_is_a_job(e2e_workspace, ws_server, celery_worker, listener, django_user_model):
    """A URL runnable's run is a url_runnable job of its trigger; viewers see neither its args nor the URL's secret."""
    make_trigger(
        e2e_workspace,
        ws_server,
        url="$script:examples/ws_url",
        url_runnable_args={"base_url": ws_server.url, "token": "s3cret"},
    )
    wait_connected(ws_server)
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS, kind=Job.Kind.URL_RUNNABLE)
    assert (job.trigger_path, job.script_path) == ("f/test/feed", "examples/ws_url")
    assert job.result == f"{ws_server.url}?token=s3cret" and job.args["token"] == "s3cret"
    viewer = django_user_model.objects.create_user(username="viewer", password="pw")
    services.set_membership(workspace=e2e_workspace, user=viewer, role=ROLES.VIEWER)
    shown = api_client_for(viewer).get(f"/api/w/e2e/jobs/{job.id}/").json()
    assert "s3cret" not in str(shown) and set(shown["args"]) == {"base_url", "token"}


def test_initial_message_runnable_run_is_a_job(e2e_workspace, ws_server, celery_worker, listener):
    """An initial-message runnable's run is an initial_message job holding what was sent."""
    make_trigger(
        e2e_workspace,
        ws_server,
        initial_messages=[{"runnable_result": {"path": "examples/auth_message", "args": {"token": "t0k"}}}],
    )
    wait_connected(ws_server)
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS, kind=Job.Kind.INITIAL_MESSAGE)
    assert job.trigger_path == "f/test/feed" and job.result == {"op": "auth", "token": "t0k", "subscribe": "ticks"}


def test_test_connection_runnable_run_is_a_job(e2e_workspace, ws_server, celery_worker, owner_api):
    """The URL runnable a test connection runs is a test_connection job, of no trigger."""
    body = owner_api.post(
        "/api/w/e2e/test_websocket_connection/",
        {"url": "$script:examples/ws_url", "url_runnable_args": {"base_url": ws_server.url}},
        format="json",
    ).json()
    assert body["ok"] is True
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS, kind=Job.Kind.TEST_CONNECTION)
    assert (job.trigger_path, job.script_path, job.result) == ("", "examples/ws_url", ws_server.url)


def test_replay_is_a_job_of_kind_replay(e2e_workspace, ws_server, celery_worker):
    """A replayed frame runs as a job of kind replay."""
    trigger = make_trigger(e2e_workspace, ws_server)
    services.enqueue_trigger_job(trigger=trigger, msg="again")
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert (job.kind, job.result) == ("replay", "again")
