"""A trigger's page beyond its form: recent jobs and frames, replay."""

import re
from unittest import mock

import redis
from django.contrib.messages import constants
from django.urls import reverse

from orvanta_triggers import monitor, services
from orvanta_triggers.admin import frame_fingerprint
from orvanta_triggers.models import Job
from tests.orvanta_triggers.admin.helpers import make_trigger, messages_of, trigger_url
from tests.orvanta_triggers.helpers import record_job
from tests.support.wsserver import wait_for

# Recent jobs and frames, replay


def test_change_form_shows_recent_jobs_and_frames(admin_client, workspace, push_frame):
    """The change form lists the trigger's jobs (linked, coloured) and its frames, escaped, with Replay."""
    trigger = make_trigger(workspace)
    job = record_job(workspace, result="hi")
    record_job(workspace, trigger_path="f/other/feed")
    push_frame(trigger, "<b>tick</b>", url="ws://example.org/feed?token=s3cret")
    response = admin_client.get(trigger_url("change", trigger))
    content = response.content.decode()
    assert [row["job"].pk for row in response.context["recent_jobs"]] == [job.pk]
    assert reverse("admin:orvanta_triggers_job_change", args=[job.pk]) in content
    assert "orvanta-badge-success" in content
    assert "&lt;b&gt;tick&lt;/b&gt;" in content and "<b>tick</b>" not in content
    assert "token=***" in content and "s3cret" not in content
    assert trigger_url("replay", trigger) in content


def test_change_form_notes_when_frames_are_unavailable(admin_client, workspace):
    """With Redis away the change form still renders, with a note instead of frames."""
    trigger = make_trigger(workspace)
    with mock.patch.object(monitor, "recent_frames", side_effect=redis.ConnectionError("refused")):
        response = admin_client.get(trigger_url("change", trigger))
    assert response.status_code == 200
    assert "Recent frames are unavailable" in response.content.decode()


def test_replay_runs_the_frame_as_a_new_job(client, django_user_model, e2e_workspace, celery_worker, push_frame):
    """Replay queues a job on the frame (its id in the message) that a real worker runs."""
    admin = django_user_model.objects.create_superuser(username="root", password="pw", email="")
    client.force_login(admin)
    trigger = make_trigger(e2e_workspace, enabled=False)
    frame = push_frame(trigger, "hello again")
    response = client.post(trigger_url("replay", trigger), {"frame": frame_fingerprint(frame)})
    assert response.status_code == 302
    [(level, text)] = messages_of(response)
    job_id = re.search(r"job <a [^>]*>([0-9a-f-]{36})</a> queued", text).group(1)
    assert level == constants.SUCCESS
    job = wait_for(
        lambda: Job.objects.filter(pk=job_id, status=Job.Status.SUCCESS).first(),
        timeout=10,
        message="replayed job",
    )
    assert (job.trigger_path, job.result) == ("f/test/feed", "hello again")


def test_replay_of_a_frame_no_longer_kept_is_an_error(admin_client, workspace):
    """Replaying a frame that is no longer stored says so and queues nothing."""
    trigger = make_trigger(workspace)
    with mock.patch.object(services, "enqueue_trigger_job") as enqueue:
        response = admin_client.post(trigger_url("replay", trigger), {"frame": "0" * 32})
    enqueue.assert_not_called()
    assert messages_of(response)[0][0] == constants.ERROR
