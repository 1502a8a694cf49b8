"""The jobs REST API: /api/w/<ws>/jobs/ and /api/w/<ws>/jobs/<id>/."""

import uuid

import pytest

from orvanta_triggers import services
from orvanta_triggers.models import Job
from tests.conftest import ROLES, api_client_for
from tests.orvanta_triggers.helpers import record_job

JOBS = "/api/w/acme/jobs/"

JOB_JSON_KEYS = {
    "id",
    "script_path",
    "is_flow",
    "trigger_path",
    "kind",
    "parent_job_id",
    "status",
    "args",
    "result",
    "result_type",
    "error",
    "attempt",
    "created_at",
    "started_at",
    "finished_at",
}


def test_list_newest_first(api, workspace):
    """Jobs are listed newest first."""
    jobs = [record_job(workspace, msg=str(index)) for index in range(3)]
    body = api.get(JOBS).json()
    assert body["count"] == 3
    assert [j["id"] for j in body["results"]] == [str(job.id) for job in reversed(jobs)]


def test_list_item_is_job_json(api, workspace):
    """Each listed job has DESIGN.md's job JSON keys and the recorded values."""
    record_job(workspace, result="hi")
    item = api.get(JOBS).json()["results"][0]
    assert set(item) == JOB_JSON_KEYS
    assert item["status"] == "success" and item["args"] == {"msg": "hi"} and item["result"] == "hi"
    assert item["attempt"] == 1 and item["started_at"] and item["finished_at"]


@pytest.mark.parametrize("name", ["trigger_path", "status", "script_path"])
def test_list_filter_with_nul_is_a_400(api, workspace, name):
    """A NUL in a job filter parameter is refused with 400 naming it, not a 500."""
    response = api.get(JOBS, {name: "a\x00b"})
    assert response.status_code == 400 and name in response.json()


def test_list_filters_by_trigger_path(api, workspace):
    """?trigger_path= keeps only that trigger's jobs."""
    wanted = record_job(workspace, trigger_path="f/a/one")
    record_job(workspace, trigger_path="f/a/two")
    body = api.get(JOBS, {"trigger_path": "f/a/one"}).json()
    assert [j["id"] for j in body["results"]] == [str(wanted.id)]


def test_list_filters_by_status(api, workspace):
    """?status= keeps only the jobs in that status."""
    record_job(workspace, status=Job.Status.SUCCESS)
    failed = record_job(workspace, status=Job.Status.FAILURE, error={"name": "E", "message": "m", "stack": ""})
    record_job(workspace, status=Job.Status.RUNNING)
    body = api.get(JOBS, {"status": "failure"}).json()
    assert [j["id"] for j in body["results"]] == [str(failed.id)]


def test_list_filters_by_script_path(api, workspace):
    """?script_path= keeps only the jobs of that script."""
    record_job(workspace, script_path="examples/echo")
    failing = record_job(workspace, script_path="examples/fail", status=Job.Status.FAILURE)
    body = api.get(JOBS, {"script_path": "examples/fail"}).json()
    assert [j["id"] for j in body["results"]] == [str(failing.id)]


def test_list_filters_combine(api, workspace):
    """Several filters narrow the list together."""
    record_job(workspace, trigger_path="f/a/one", status=Job.Status.SUCCESS)
    wanted = record_job(workspace, trigger_path="f/a/one", status=Job.Status.FAILURE)
    record_job(workspace, trigger_path="f/a/two", status=Job.Status.FAILURE)
    body = api.get(JOBS, {"trigger_path": "f/a/one", "status": "failure"}).json()
    assert [j["id"] for j in body["results"]] == [str(wanted.id)]


def test_list_page_size(api, workspace):
    """?page_size= pages the job list."""
    for index in range(3):
        record_job(workspace, msg=str(index))
    body = api.get(JOBS, {"page_size": 2}).json()
    assert body["count"] == 3 and len(body["results"]) == 2 and body["next"]


def test_list_excludes_other_workspaces(api, workspace, user):
    """A workspace's list holds only its own jobs."""
    record_job(services.create_workspace(slug="other", owner=user))
    mine = record_job(workspace)
    assert [j["id"] for j in api.get(JOBS).json()["results"]] == [str(mine.id)]


def test_detail_by_id(api, workspace):
    """GET jobs/<id>/ answers the job."""
    job = record_job(workspace, status=Job.Status.FAILURE, error={"name": "RuntimeError", "message": "m", "stack": "s"})
    response = api.get(f"{JOBS}{job.id}/")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(job.id) and body["status"] == "failure"
    assert body["error"] == {"name": "RuntimeError", "message": "m", "stack": "s"}


def test_detail_of_other_workspace_job_404(api, workspace, user):
    """A job of another workspace is 404 under this workspace's URL, even for a member of both."""
    theirs = record_job(services.create_workspace(slug="other", owner=user))
    assert api.get(f"{JOBS}{theirs.id}/").status_code == 404


def test_detail_unknown_id_404(api, workspace):
    """An id with no job answers 404."""
    assert api.get(f"{JOBS}{uuid.uuid4()}/").status_code == 404


def test_viewer_can_read_jobs(workspace, member_client):
    """Viewers can list jobs and read one."""
    job = record_job(workspace)
    viewer = member_client(ROLES.VIEWER)
    assert viewer.get(JOBS).json()["count"] == 1
    assert viewer.get(f"{JOBS}{job.id}/").status_code == 200


def test_jobs_are_read_only(api, workspace):
    """The jobs endpoints take no writes (405)."""
    job = record_job(workspace)
    assert api.post(JOBS, {}, format="json").status_code == 405
    assert api.delete(f"{JOBS}{job.id}/").status_code == 405


def test_non_member_jobs_404(workspace, django_user_model):
    """A user who is not a member gets 404 for the workspace's jobs."""
    job = record_job(workspace)
    stranger = api_client_for(django_user_model.objects.create_user(username="bob", password="pw"))
    assert stranger.get(JOBS).status_code == 404
    assert stranger.get(f"{JOBS}{job.id}/").status_code == 404


def test_viewers_get_urls_in_args_redacted(workspace, member_client):
    """A viewer reads job args with the query values of the URLs in them as *** (they read the token)."""
    job = record_job(workspace, msg="see wss://feed.example.org/ws?token=s3cret&v=2 now")
    for client, shown in (
        (member_client(ROLES.VIEWER), "see wss://feed.example.org/ws?token=***&v=*** now"),
        (member_client(ROLES.DEVELOPER), "see wss://feed.example.org/ws?token=s3cret&v=2 now"),
    ):
        assert client.get(f"{JOBS}{job.id}/").json()["args"] == {"msg": shown}
        assert client.get(JOBS).json()["results"][0]["args"] == {"msg": shown}
