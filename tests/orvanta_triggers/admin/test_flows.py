"""The flow admin, saved through the services."""

import json
from unittest import mock

from django.contrib.messages import constants
from django.urls import reverse

from orvanta_triggers import services
from orvanta_triggers.models import Flow
from tests.orvanta_triggers.admin.helpers import (
    FLOW_STEPS,
    make_trigger,
    messages_of,
)

# Flows


def test_flow_add_saves_through_services(admin_client, workspace):
    """A valid flow add form is saved through services.save_new_flow."""
    data = {
        "workspace": workspace.pk,
        "path": "f/demo/pipeline",
        "preprocessor_path": "",
        "steps": json.dumps(FLOW_STEPS),
        "early_return": "",
        "_save": "Save",
    }
    with mock.patch.object(services, "save_new_flow", wraps=services.save_new_flow) as save:
        response = admin_client.post(reverse("admin:orvanta_triggers_flow_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    save.assert_called_once()
    assert Flow.objects.get(path="f/demo/pipeline").steps == FLOW_STEPS


def test_flow_steps_with_an_unknown_script_is_a_field_error(admin_client, workspace):
    """A step naming a script outside the registry is an error on steps."""
    steps = [{"id": "a", "script_path": "no/such"}]
    data = {"workspace": workspace.pk, "path": "f/demo/bad", "steps": json.dumps(steps), "_save": "Save"}
    response = admin_client.post(reverse("admin:orvanta_triggers_flow_add"), data)
    assert set(response.context["adminform"].form.errors) == {"steps"}


def test_renaming_a_flow_in_use_is_a_field_error(admin_client, workspace):
    """Renaming a flow a trigger runs is refused on the path field."""
    flow = services.create_flow(workspace=workspace, path="f/demo/pipeline", steps=FLOW_STEPS)
    make_trigger(workspace, script_path="f/demo/pipeline", is_flow=True)
    data = {
        "path": "f/demo/renamed",
        "preprocessor_path": "",
        "steps": json.dumps(FLOW_STEPS),
        "early_return": "",
        "_save": "Save",
    }
    response = admin_client.post(reverse("admin:orvanta_triggers_flow_change", args=[flow.pk]), data)
    assert "used by trigger(s) f/test/feed" in " ".join(response.context["adminform"].form.errors["path"])
    assert Flow.objects.get(pk=flow.pk).path == "f/demo/pipeline"


def test_deleting_a_flow_in_use_shows_the_refusal(admin_client, workspace):
    """Deleting a flow a trigger runs is refused with an error message, not a 500."""
    flow = services.create_flow(workspace=workspace, path="f/demo/pipeline", steps=FLOW_STEPS)
    make_trigger(workspace, script_path="f/demo/pipeline", is_flow=True)
    response = admin_client.post(reverse("admin:orvanta_triggers_flow_delete", args=[flow.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert response.url == reverse("admin:orvanta_triggers_flow_change", args=[flow.pk])
    [(level, text)] = messages_of(response)
    assert level == constants.ERROR and "used by trigger(s) f/test/feed" in text
    assert Flow.objects.filter(pk=flow.pk).exists()


def test_bulk_deleting_flows_deletes_the_unused_and_reports_the_used(admin_client, workspace):
    """The delete action removes unused flows and reports each refusal."""
    used = services.create_flow(workspace=workspace, path="f/demo/used", steps=FLOW_STEPS)
    unused = services.create_flow(workspace=workspace, path="f/demo/unused", steps=FLOW_STEPS)
    make_trigger(workspace, script_path="f/demo/used", is_flow=True)
    response = admin_client.post(
        reverse("admin:orvanta_triggers_flow_changelist"),
        {"action": "delete_selected", "post": "yes", "_selected_action": [used.pk, unused.pk]},
    )
    assert list(Flow.objects.values_list("path", flat=True)) == ["f/demo/used"]
    levels = sorted(level for level, _ in messages_of(response))
    assert levels == [constants.SUCCESS, constants.ERROR]
