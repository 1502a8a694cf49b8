"""The workspace admin: creation, plan and members through the services."""

from unittest import mock

from django.urls import reverse

from orvanta_triggers import services
from orvanta_triggers.models import Membership, Workspace

# Workspaces


def test_workspace_add_goes_through_create_workspace_with_the_staff_member_as_owner(staff_client, user):
    """A staff member's new workspace is created by services.create_workspace with them as admin."""
    data = {
        "slug": "beta",
        "name": "Beta",
        "error_handler_path": "",
        "error_handler_args": "{}",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "_save": "Save",
    }
    with mock.patch.object(services, "create_workspace", wraps=services.create_workspace) as create:
        response = staff_client.post(reverse("admin:orvanta_triggers_workspace_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    create.assert_called_once()
    beta = Workspace.objects.get(slug="beta")
    assert beta.plan == Workspace.Plan.SELF_HOSTED
    assert Membership.objects.get(workspace=beta, user=user).role == Membership.Role.ADMIN


def test_workspace_plan_and_members_change_through_services(admin_client, workspace, user, django_user_model):
    """Changing the plan uses set_workspace_plan and a new member row uses set_membership."""
    bob = django_user_model.objects.create_user(username="bob", password="pw")
    alice_membership = Membership.objects.get(workspace=workspace, user=user)
    data = {
        "name": "Acme",
        "plan": "enterprise",
        "error_handler_path": "",
        "error_handler_args": "{}",
        "memberships-TOTAL_FORMS": "2",
        "memberships-INITIAL_FORMS": "1",
        "memberships-0-id": alice_membership.pk,
        "memberships-0-workspace": workspace.pk,
        "memberships-0-user": user.pk,
        "memberships-0-role": "admin",
        "memberships-1-id": "",
        "memberships-1-workspace": workspace.pk,
        "memberships-1-user": bob.pk,
        "memberships-1-role": "viewer",
        "_save": "Save",
    }
    with mock.patch.object(services, "set_membership", wraps=services.set_membership) as set_membership:
        response = admin_client.post(reverse("admin:orvanta_triggers_workspace_change", args=[workspace.pk]), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    workspace.refresh_from_db()
    assert (workspace.plan, workspace.name) == ("enterprise", "Acme")
    set_membership.assert_called_once_with(workspace=workspace, user=bob, role="viewer")


def test_workspace_admin_removes_a_member_through_services(staff_client, workspace, user, django_user_model):
    """A workspace admin deletes a member row; the membership is removed by remove_membership."""
    bob = django_user_model.objects.create_user(username="bob", password="pw")
    services.set_membership(workspace=workspace, user=bob, role=Membership.Role.VIEWER)
    rows = list(Membership.objects.filter(workspace=workspace).order_by("pk"))
    data = {"name": "acme", "error_handler_path": "", "error_handler_args": "{}", "_save": "Save"}
    data.update({"memberships-TOTAL_FORMS": "2", "memberships-INITIAL_FORMS": "2"})
    for index, row in enumerate(rows):
        data.update(
            {
                f"memberships-{index}-id": row.pk,
                f"memberships-{index}-workspace": workspace.pk,
                f"memberships-{index}-user": row.user_id,
                f"memberships-{index}-role": row.role,
            }
        )
    data["memberships-1-DELETE"] = "on"
    with mock.patch.object(services, "remove_membership", wraps=services.remove_membership) as remove_membership:
        response = staff_client.post(reverse("admin:orvanta_triggers_workspace_change", args=[workspace.pk]), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    remove_membership.assert_called_once_with(workspace=workspace, user=bob)
    assert list(Membership.objects.filter(workspace=workspace).values_list("user", flat=True)) == [user.pk]
