"""The job admin: read-only jobs, their filters, and the resume and discard of suspended ones."""

import re

from django.contrib.messages import constants
from django.urls import reverse

from orvanta_triggers import services
from orvanta_triggers.models import Job, Membership, WebSocketTrigger
from tests.orvanta_triggers.admin.helpers import (
    JOB_LIST,
    make_trigger,
    messages_of,
    run_action,
    run_job_action,
    trigger_url,
)
from tests.orvanta_triggers.helpers import record_job
from tests.support.wsserver import wait_for

# Jobs


def test_job_admin_shows_the_error_readably(admin_client, workspace):
    """A failed job's page shows the error's name, message and stack (in a <pre>) and pretty args."""
    stack = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom <3'
    job = record_job(
        workspace, status=Job.Status.FAILURE, error={"name": "ValueError", "message": "boom", "stack": stack}
    )
    content = admin_client.get(reverse("admin:orvanta_triggers_job_change", args=[job.pk])).content.decode()
    assert "<strong>ValueError</strong>: boom" in content
    assert re.search(r"<pre[^>]*>Traceback \(most recent call last\):\n.*boom &lt;3</pre>", content, re.S)
    assert "{\n  &quot;msg&quot;: &quot;hi&quot;\n}" in content


def test_job_admin_is_read_only(admin_client, workspace):
    """Jobs can't be added, changed or deleted from the admin."""
    job = record_job(workspace)
    assert admin_client.get(reverse("admin:orvanta_triggers_job_add")).status_code == 403
    page = admin_client.get(reverse("admin:orvanta_triggers_job_change", args=[job.pk])).content.decode()
    assert 'name="_save"' not in page
    assert (
        admin_client.post(reverse("admin:orvanta_triggers_job_delete", args=[job.pk]), {"post": "yes"}).status_code
        == 403
    )


def test_job_list_filters_by_status_and_finds_by_id(admin_client, workspace):
    """The job list filters by status and a search for a job id finds it."""
    ok = record_job(workspace)
    failed = record_job(workspace, status=Job.Status.FAILURE, error={"name": "E", "message": "m", "stack": ""})
    url = reverse("admin:orvanta_triggers_job_changelist")
    assert [j.pk for j in admin_client.get(url, {"status__exact": "failure"}).context["cl"].result_list] == [failed.pk]
    assert [j.pk for j in admin_client.get(url, {"q": str(ok.pk)}).context["cl"].result_list] == [ok.pk]


# Suspended jobs, job kinds


def test_suspend_action_suspends_through_services(admin_client, workspace):
    """The suspend action sets the mode of the selected triggers to suspended."""
    trigger = make_trigger(workspace)
    run_action(admin_client, "suspend", trigger)
    assert WebSocketTrigger.objects.get(pk=trigger.pk).mode == "suspended"


def test_change_form_links_to_the_triggers_suspended_jobs(admin_client, workspace):
    """A trigger with suspended jobs links to them: "Suspended jobs (N)", a jobs list filtered to them."""
    trigger = make_trigger(workspace, mode="suspended")
    record_job(workspace, status=Job.Status.SUSPENDED)
    record_job(workspace, status=Job.Status.SUSPENDED)
    record_job(workspace)
    response = admin_client.get(trigger_url("change", trigger))
    link = re.search(
        r'<a href="([^"]+)" class="orvanta-suspended-jobs"[^>]*>Suspended jobs \(2\)</a>', response.content.decode()
    )
    listed = admin_client.get(link.group(1).replace("&amp;", "&")).context["cl"].result_list
    assert {job.status for job in listed} == {"suspended"} and len(listed) == 2


def test_change_form_links_to_the_error_handler_runs(admin_client, workspace):
    """The trigger's page links to the jobs list filtered to its error-handler runs."""
    trigger = make_trigger(workspace)
    handler = record_job(workspace)
    Job.objects.filter(pk=handler.pk).update(kind=Job.Kind.ERROR_HANDLER)
    record_job(workspace)
    response = admin_client.get(trigger_url("change", trigger))
    link = re.search(r'<a href="([^"]+)" class="orvanta-error-handler-runs"', response.content.decode())
    listed = admin_client.get(link.group(1).replace("&amp;", "&")).context["cl"].result_list
    assert [job.pk for job in listed] == [handler.pk]


def test_discard_action_discards_suspended_jobs_only(admin_client, workspace):
    """The discard action ends the selected suspended jobs `discarded` and leaves a finished one alone."""
    make_trigger(workspace, mode="suspended")
    held, done = record_job(workspace, status=Job.Status.SUSPENDED), record_job(workspace)
    response = run_job_action(admin_client, "discard_selected", held, done)
    assert Job.objects.get(pk=held.pk).status == "discarded" and Job.objects.get(pk=done.pk).status == "success"
    assert (constants.SUCCESS, "Discarded 1 job(s).") in messages_of(response)


def test_viewer_cannot_resume_or_discard_from_the_admin(staff_client, user, workspace):
    """A viewer's resume or discard action leaves the jobs suspended."""
    make_trigger(workspace, mode="suspended")
    held = record_job(workspace, status=Job.Status.SUSPENDED)
    services.set_membership(workspace=workspace, user=user, role=Membership.Role.VIEWER)
    for action in ("resume_selected", "discard_selected"):
        run_job_action(staff_client, action, held)
    assert Job.objects.get(pk=held.pk).status == "suspended"


def test_resume_action_runs_suspended_jobs(client, django_user_model, e2e_workspace, celery_worker):
    """The resume action runs the selected suspended jobs on a real worker."""
    client.force_login(django_user_model.objects.create_superuser(username="root", password="pw", email=""))
    make_trigger(e2e_workspace, mode="suspended")
    held = record_job(e2e_workspace, status=Job.Status.SUSPENDED, msg="later")
    response = run_job_action(client, "resume_selected", held)
    assert (constants.SUCCESS, "Resumed 1 job(s).") in messages_of(response)
    job = wait_for(lambda: Job.objects.filter(pk=held.pk, status="success").first(), timeout=10, message="the run")
    assert job.result == "later"


def test_job_list_filters_by_kind(admin_client, workspace):
    """The job list filters by kind."""
    handler = record_job(workspace)
    Job.objects.filter(pk=handler.pk).update(kind=Job.Kind.ERROR_HANDLER)
    record_job(workspace)
    listed = admin_client.get(reverse(JOB_LIST), {"kind__exact": "error_handler"}).context["cl"].result_list
    assert [job.pk for job in listed] == [handler.pk]
