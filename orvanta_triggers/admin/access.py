"""What the requesting staff member may do, by their roles in their workspaces (read
once per request and judged by orvanta_triggers.roles, as in the API); superusers may
do anything."""

from orvanta_triggers import roles, selectors


def roles_by_workspace(request):
    """{workspace id: role} of the requesting user, once per request."""
    cached = getattr(request, "_orvanta_roles", None)
    if cached is None:
        cached = selectors.workspace_roles(user=request.user)
        request._orvanta_roles = cached
    return cached


def forget_roles(request):
    """After a change to the user's memberships (a workspace they created)."""
    request._orvanta_roles = None


def can_write(request, workspace_id):
    return request.user.is_superuser or roles.can_write(roles_by_workspace(request).get(workspace_id))


def is_workspace_admin(request, workspace_id):
    return request.user.is_superuser or roles.can_manage_members(roles_by_workspace(request).get(workspace_id))


def writes_some_workspace(request):
    return request.user.is_superuser or any(roles.can_write(role) for role in roles_by_workspace(request).values())


def writes_every_workspace(request):
    """Also true of a user of no workspace: there is nothing they could not see."""
    return request.user.is_superuser or all(roles.can_write(role) for role in roles_by_workspace(request).values())


def writable_workspaces(request):
    return selectors.writable_workspaces(user=request.user)
