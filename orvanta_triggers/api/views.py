"""Thin views: resolve the workspace and the caller's role, call a selector or a
service, serialize."""

from django.http import Http404
from rest_framework import generics, status
from rest_framework.response import Response

from orvanta_triggers import selectors, services
from orvanta_triggers.api.permissions import WorkspaceRolePermission
from orvanta_triggers.api.serializers import (
    FlowSerializer,
    JobSerializer,
    SetEnabledSerializer,
    WebSocketTriggerSerializer,
)
from orvanta_triggers.models import Workspace


class WorkspaceMixin:
    """Loads `self.workspace` and `self.workspace_role`; non-members get 404."""

    permission_classes = [WorkspaceRolePermission]

    def initial(self, request, *args, **kwargs):
        self.workspace = None
        self.workspace_role = None
        super().initial(request, *args, **kwargs)

    def check_permissions(self, request):
        # Authentication has run by now; membership decides visibility first.
        if request.user and request.user.is_authenticated:
            workspace = Workspace.objects.filter(slug=self.kwargs["workspace"]).first()
            role = selectors.membership_role(user=request.user, workspace=workspace) if workspace else None
            if role is None:
                raise Http404("no such workspace")
            self.workspace, self.workspace_role = workspace, role
        super().check_permissions(request)


def _trigger_or_404(workspace, path):
    trigger = selectors.workspace_triggers(workspace=workspace).filter(path=path).first()
    if trigger is None:
        raise Http404(f"no WebSocket trigger '{path}'")
    return trigger


class TriggerListView(WorkspaceMixin, generics.ListCreateAPIView):
    serializer_class = WebSocketTriggerSerializer

    def get_queryset(self):
        return selectors.workspace_triggers(
            workspace=self.workspace,
            script_path=self.request.query_params.get("script_path"),
            path_start=self.request.query_params.get("path_start"),
        )

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        trigger = services.create_trigger(workspace=self.workspace, **serializer.validated_data)
        return Response(self.get_serializer(trigger).data, status=status.HTTP_201_CREATED)


class TriggerDetailView(WorkspaceMixin, generics.GenericAPIView):
    serializer_class = WebSocketTriggerSerializer

    def get(self, request, *args, **kwargs):
        return Response(self.get_serializer(_trigger_or_404(self.workspace, kwargs["path"])).data)

    def _update(self, request, partial):
        trigger = _trigger_or_404(self.workspace, self.kwargs["path"])
        serializer = self.get_serializer(trigger, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        if not partial:
            # PUT replaces: optional fields it leaves out go back to their defaults,
            # except `enabled`, which Windmill's update body never carries.
            for name in services.TRIGGER_CONFIG_FIELDS:
                if name not in fields and name != "enabled":
                    fields[name] = type(trigger)._meta.get_field(name).get_default()
        trigger = services.update_trigger(trigger=trigger, **fields)
        return Response(self.get_serializer(trigger).data)

    def put(self, request, *args, **kwargs):
        return self._update(request, partial=False)

    def patch(self, request, *args, **kwargs):
        return self._update(request, partial=True)

    def delete(self, request, *args, **kwargs):
        services.delete_trigger(trigger=_trigger_or_404(self.workspace, kwargs["path"]))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TriggerSetEnabledView(WorkspaceMixin, generics.GenericAPIView):
    serializer_class = SetEnabledSerializer

    def post(self, request, *args, **kwargs):
        trigger = _trigger_or_404(self.workspace, kwargs["path"])
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        trigger = services.set_trigger_enabled(trigger=trigger, enabled=serializer.validated_data["enabled"])
        return Response(WebSocketTriggerSerializer(trigger).data)


class JobListView(WorkspaceMixin, generics.ListAPIView):
    serializer_class = JobSerializer

    def get_queryset(self):
        params = self.request.query_params
        return selectors.workspace_jobs(
            workspace=self.workspace,
            trigger_path=params.get("trigger_path"),
            status=params.get("status"),
            script_path=params.get("script_path"),
        )


class JobDetailView(WorkspaceMixin, generics.RetrieveAPIView):
    serializer_class = JobSerializer
    lookup_url_kwarg = "job_id"
    lookup_field = "id"

    def get_queryset(self):
        return selectors.workspace_jobs(workspace=self.workspace)


def _flow_or_404(workspace, path):
    flow = selectors.workspace_flows(workspace=workspace).filter(path=path).first()
    if flow is None:
        raise Http404(f"no flow '{path}'")
    return flow


class FlowListView(WorkspaceMixin, generics.ListCreateAPIView):
    serializer_class = FlowSerializer

    def get_queryset(self):
        return selectors.workspace_flows(workspace=self.workspace)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        flow = services.create_flow(workspace=self.workspace, **serializer.validated_data)
        return Response(self.get_serializer(flow).data, status=status.HTTP_201_CREATED)


class FlowDetailView(WorkspaceMixin, generics.GenericAPIView):
    serializer_class = FlowSerializer

    def get(self, request, *args, **kwargs):
        return Response(self.get_serializer(_flow_or_404(self.workspace, kwargs["path"])).data)

    def _update(self, request, partial):
        flow = _flow_or_404(self.workspace, self.kwargs["path"])
        serializer = self.get_serializer(flow, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        if not partial:
            for name in services.FLOW_FIELDS:
                fields.setdefault(name, type(flow)._meta.get_field(name).get_default())
        return Response(self.get_serializer(services.update_flow(flow=flow, **fields)).data)

    def put(self, request, *args, **kwargs):
        return self._update(request, partial=False)

    def patch(self, request, *args, **kwargs):
        return self._update(request, partial=True)

    def delete(self, request, *args, **kwargs):
        services.delete_flow(flow=_flow_or_404(self.workspace, kwargs["path"]))
        return Response(status=status.HTTP_204_NO_CONTENT)
