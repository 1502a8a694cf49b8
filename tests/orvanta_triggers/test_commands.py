"""Management commands: createworkspace and setupdemo."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from orvanta_triggers import services
from orvanta_triggers.models import Membership, WebSocketTrigger, Workspace


def run_command(*args, **options):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def test_createworkspace_with_owner(user):
    """createworkspace SLUG --plan team --owner alice creates the workspace with alice as its admin."""
    run_command("createworkspace", "sales", "--plan", "team", "--owner", "alice")
    workspace = Workspace.objects.get(slug="sales")
    assert workspace.plan == Workspace.Plan.TEAM
    assert Membership.objects.get(workspace=workspace, user=user).role == Membership.Role.ADMIN


def test_createworkspace_defaults(db):
    """Without options the workspace is self-hosted, named after its slug, with no members."""
    run_command("createworkspace", "solo")
    workspace = Workspace.objects.get(slug="solo")
    assert (workspace.plan, workspace.name, workspace.memberships.count()) == ("self_hosted", "solo", 0)


def test_createworkspace_unknown_owner(db):
    """An --owner that names no user is a CommandError and creates nothing."""
    with pytest.raises(CommandError, match="nobody"):
        run_command("createworkspace", "sales", "--owner", "nobody")
    assert not Workspace.objects.filter(slug="sales").exists()


def test_createworkspace_duplicate_slug(workspace):
    """A slug that is taken is a CommandError, not a traceback."""
    with pytest.raises(CommandError, match="slug"):
        run_command("createworkspace", "acme")


def test_createworkspace_unknown_plan(db):
    """A --plan outside the plans is refused."""
    with pytest.raises(CommandError):
        run_command("createworkspace", "sales", "--plan", "platinum")


def test_setupdemo_creates_demo(db):
    """setupdemo creates the demo workspace, an admin superuser and the enabled demo trigger."""
    run_command("setupdemo")
    admin = get_user_model().objects.get(username="admin")
    workspace = Workspace.objects.get(slug="demo")
    trigger = WebSocketTrigger.objects.get(workspace=workspace, path="f/demo/ticks")
    assert admin.is_superuser and admin.check_password("admin")
    assert Membership.objects.get(workspace=workspace, user=admin).role == Membership.Role.ADMIN
    assert trigger.enabled and trigger.script_path == "examples/echo"


def test_setupdemo_is_idempotent(db):
    """Running setupdemo twice leaves one user, one workspace, one membership and one trigger."""
    run_command("setupdemo")
    run_command("setupdemo")
    assert get_user_model().objects.filter(username="admin").count() == 1
    assert Workspace.objects.filter(slug="demo").count() == 1
    assert Membership.objects.filter(workspace__slug="demo").count() == 1
    assert WebSocketTrigger.objects.filter(workspace__slug="demo").count() == 1


def test_setupdemo_restores_demo_trigger(db):
    """A second setupdemo puts back a demo trigger that was disabled or pointed elsewhere."""
    run_command("setupdemo")
    services.update_trigger(trigger=WebSocketTrigger.objects.get(path="f/demo/ticks"), enabled=False, url="ws://x/")
    run_command("setupdemo", "--demo-url", "ws://127.0.0.1:9000/ws/demo/")
    trigger = WebSocketTrigger.objects.get(path="f/demo/ticks")
    assert trigger.enabled and trigger.url == "ws://127.0.0.1:9000/ws/demo/"
