from rest_framework.permissions import SAFE_METHODS, BasePermission

from orvanta_triggers import roles


class WorkspaceRolePermission(BasePermission):
    """Members read; admins and developers write. Non-members never get this far:
    the view answers 404 for a workspace they are not in."""

    message = "viewers can read but not change this workspace"

    def has_permission(self, request, view):
        role = view.workspace_role
        if request.method in SAFE_METHODS:
            return roles.can_read(role)
        return roles.can_write(role)
