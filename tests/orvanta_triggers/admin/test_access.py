"""Who sees what in the admin: staff scoped to their workspaces, viewers read-only with secrets redacted."""

import pytest
from django.contrib.messages import constants
from django.urls import reverse

from orvanta_triggers import services
from orvanta_triggers.models import Membership, WebSocketTrigger
from tests.orvanta_triggers.admin.helpers import (
    FLOW_STEPS,
    TRIGGER_ADD,
    TRIGGER_LIST,
    make_trigger,
    messages_of,
    run_action,
    trigger_url,
)
from tests.orvanta_triggers.helpers import record_job

# Staff isolation


def test_staff_see_only_their_workspaces_triggers(staff_client, workspace, other_workspace):
    """A staff member's trigger list holds their workspaces' triggers only."""
    make_trigger(workspace, path="f/mine/feed")
    make_trigger(other_workspace, path="f/theirs/feed")
    result = staff_client.get(reverse(TRIGGER_LIST)).context["cl"].result_list
    assert [t.path for t in result] == ["f/mine/feed"]


@pytest.mark.parametrize("model", ["websockettrigger", "job", "flow", "workspace"])
def test_staff_cannot_open_another_workspaces_objects(staff_client, other_workspace, model):
    """Another workspace's trigger, job, flow or the workspace itself is a 404 for a staff member."""
    objects = {
        "websockettrigger": lambda: make_trigger(other_workspace),
        "job": lambda: record_job(other_workspace),
        "flow": lambda: services.create_flow(workspace=other_workspace, path="f/x", steps=FLOW_STEPS),
        "workspace": lambda: other_workspace,
    }
    obj = objects[model]()
    assert staff_client.get(reverse(f"admin:orvanta_triggers_{model}_change", args=[obj.pk])).status_code == 404


def test_staff_workspace_choices_are_their_own(staff_client, workspace, other_workspace):
    """The trigger form offers a staff member only their workspaces, preselected when there is one."""
    form = staff_client.get(reverse(TRIGGER_ADD)).context["adminform"].form
    assert list(form.fields["workspace"].queryset) == [workspace]
    assert form.initial["workspace"] == workspace.pk


def test_staff_cannot_replay_or_test_another_workspaces_trigger(staff_client, other_workspace):
    """The replay and test-connection views answer 404 outside the staff member's workspaces."""
    trigger = make_trigger(other_workspace)
    assert staff_client.post(trigger_url("replay", trigger), {"frame": "x"}).status_code == 404
    assert staff_client.post(trigger_url("test_connection", trigger)).status_code == 404


SECRETS = {
    "url": "wss://feed.example.org/ws?token=s3cret",
    "headers": {"Authorization": "Bearer hunter2"},
    "initial_messages": [
        {"raw_message": '{"token": "raw-s3cret"}'},
        {"runnable_result": {"path": "examples/auth_message", "args": {"token": "arg-s3cret"}, "is_flow": False}},
    ],
}
SECRET_VALUES = ("s3cret", "hunter2")


def test_viewer_sees_a_triggers_secrets_redacted(staff_client, user, workspace):
    """A viewer's trigger page shows URL query values, headers and initial messages as *** (it showed them)."""
    trigger = make_trigger(workspace, **SECRETS)
    services.set_membership(workspace=workspace, user=user, role=Membership.Role.VIEWER)
    page = staff_client.get(trigger_url("change", trigger)).content.decode()
    assert "wss://feed.example.org/ws?token=***" in page and "examples/auth_message" in page
    assert not [value for value in SECRET_VALUES if value in page]


def test_viewer_sees_url_runnable_args_redacted(staff_client, user, workspace):
    """A viewer's trigger page shows a URL runnable's arg values as ***."""
    trigger = make_trigger(workspace, url="$script:examples/ws_url", url_runnable_args={"token": "s3cret"})
    services.set_membership(workspace=workspace, user=user, role=Membership.Role.VIEWER)
    page = staff_client.get(trigger_url("change", trigger)).content.decode()
    assert "$script:examples/ws_url" in page and "s3cret" not in page


def test_writer_sees_a_triggers_secrets(staff_client, workspace):
    """A developer or admin edits the secrets as stored."""
    trigger = make_trigger(workspace, **SECRETS)
    page = staff_client.get(trigger_url("change", trigger)).content.decode()
    assert all(value in page for value in SECRET_VALUES)


def test_viewer_cannot_search_urls(staff_client, user, workspace):
    """A viewer's search doesn't look into URLs (it told query strings apart, a character at a time)."""
    make_trigger(workspace, **SECRETS)
    assert staff_client.get(reverse(TRIGGER_LIST), {"q": "s3cret"}).context["cl"].result_count == 1
    services.set_membership(workspace=workspace, user=user, role=Membership.Role.VIEWER)
    assert staff_client.get(reverse(TRIGGER_LIST), {"q": "s3cret"}).context["cl"].result_count == 0


def test_viewer_sees_urls_in_job_args_redacted(staff_client, user, workspace):
    """A viewer's job page shows the query values of URLs in the args as ***; a writer's shows them."""
    job = record_job(workspace, args={"url": "wss://feed.example.org/ws?token=s3cret"})
    job_page = reverse("admin:orvanta_triggers_job_change", args=[job.pk])
    assert "token=s3cret" in staff_client.get(job_page).content.decode()
    services.set_membership(workspace=workspace, user=user, role=Membership.Role.VIEWER)
    page = staff_client.get(job_page).content.decode()
    assert "token=***" in page and "s3cret" not in page


def test_viewer_member_gets_a_read_only_trigger(staff_client, user, workspace):
    """A staff member who is only a viewer of the workspace sees the trigger read-only."""
    trigger = make_trigger(workspace)
    services.set_membership(workspace=workspace, user=user, role=Membership.Role.VIEWER)
    page = staff_client.get(trigger_url("change", trigger))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    response = run_action(staff_client, "disable", trigger)
    assert WebSocketTrigger.objects.get(pk=trigger.pk).enabled
    assert messages_of(response)[0][0] == constants.ERROR
