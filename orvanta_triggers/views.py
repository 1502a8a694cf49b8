"""Pages (the API lives in api/)."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, render

from orvanta_triggers import selectors
from orvanta_triggers.models import Workspace


@login_required
def monitor_page(request, workspace):
    """The live monitor of a workspace; its data arrives over /ws/monitor/<ws>/."""
    workspace = get_object_or_404(Workspace, slug=workspace)
    if selectors.membership_role(user=request.user, workspace=workspace) is None:
        raise Http404("no such workspace")
    return render(request, "orvanta_triggers/monitor.html", {"workspace": workspace})


@login_required
def monitor_index(request):
    """The monitors of the workspaces the user is a member of (where a login lands)."""
    return render(
        request, "orvanta_triggers/monitor_index.html", {"workspaces": selectors.member_workspaces(user=request.user)}
    )
