"""The requesting staff member's roles in their workspaces, read once per request."""

import logging

from orvanta_triggers.models import Membership, Workspace

logger = logging.getLogger(__name__)


def roles_by_workspace(request):
    """{workspace id: role} of the requesting user, once per request."""
    roles = getattr(request, "_orvanta_roles", None)
    if roles is None:
        roles = dict(Membership.objects.filter(user=request.user).values_list("workspace_id", "role"))
        request._orvanta_roles = roles
    return roles


def forget_roles(request):
    request._orvanta_roles = None


def can_write(request, workspace_id):
    return request.user.is_superuser or roles_by_workspace(request).get(workspace_id) in Membership.WRITE_ROLES


def is_workspace_admin(request, workspace_id):
    return request.user.is_superuser or roles_by_workspace(request).get(workspace_id) == Membership.Role.ADMIN


def writable_workspaces(request):
    if request.user.is_superuser:
        return Workspace.objects.all()
    return Workspace.objects.filter(memberships__user=request.user, memberships__role__in=Membership.WRITE_ROLES)
