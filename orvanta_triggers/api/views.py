"""Thin views: resolve the workspace and the caller's role, call a selector or a
service, serialize."""

from django.http import Http404
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from orvanta_triggers import registry, selectors, services
from orvanta_triggers.api.errors import exception_handler
from orvanta_triggers.api.pagination import StandardPagination
from orvanta_triggers.api.parsers import JSONParser
from orvanta_triggers.api.permissions import WorkspaceRolePermission
from orvanta_triggers.api.serializers import (
    DiscardedJobsSerializer,
    FlowSerializer,
    JobSerializer,
    ResumedJobsSerializer,
    RunnablesSerializer,
    SetEnabledSerializer,
    SetModeSerializer,
    TestConnectionRequestSerializer,
    TestConnectionResultSerializer,
    WebSocketTriggerSerializer,
    WorkspaceSettingsSerializer,
)
from orvanta_triggers.celeryapp import celery_app
from orvanta_triggers.client.probe import probe_connection
from orvanta_triggers.models import Job


class WorkspaceMixin:
    """Loads `self.workspace` and `self.workspace_role`; non-members get 404. Carries
    the API's own DRF policies, so it behaves the same in any project whatever its
    REST_FRAMEWORK defaults."""

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated, WorkspaceRolePermission]
    parser_classes = [JSONParser]
    pagination_class = StandardPagination
    schema = AutoSchema()

    def get_exception_handler(self):
        return exception_handler

    def initial(self, request, *args, **kwargs):
        self.workspace = None
        self.workspace_role = None
        super().initial(request, *args, **kwargs)

    def get_serializer_context(self):
        # Serializers redact secrets for roles that may not see them.
        return {**super().get_serializer_context(), "workspace_role": self.workspace_role}

    def check_permissions(self, request):
        # Authentication has run by now; membership decides visibility first.
        if request.user and request.user.is_authenticated:
            workspace = selectors.workspace_by_slug(self.kwargs["workspace"])
            role = selectors.membership_role(user=request.user, workspace=workspace) if workspace else None
            if role is None:
                raise Http404("no such workspace")
            self.workspace, self.workspace_role = workspace, role
        super().check_permissions(request)


class TriggerLookupMixin:
    lookup_field = "path"

    def get_queryset(self):
        return selectors.workspace_triggers(workspace=self.workspace)


def query_text(request, name):
    """A text query parameter, or None; 400 for one no database column can hold
    (PostgreSQL refuses NUL in text, so the query would fail with a 500)."""
    value = request.query_params.get(name)
    if value is not None and "\x00" in value:
        raise ValidationError({name: ["must not contain NUL (U+0000)"]})
    return value


@extend_schema_view(
    get=extend_schema(
        summary="List WebSocket triggers",
        parameters=[
            OpenApiParameter("script_path", str, description="Only triggers running this script or flow."),
            OpenApiParameter("path_start", str, description="Only triggers whose path starts with this."),
        ],
    ),
    post=extend_schema(summary="Create a WebSocket trigger (Windmill's trigger JSON is accepted as-is)"),
)
class TriggerListView(WorkspaceMixin, generics.ListCreateAPIView):
    serializer_class = WebSocketTriggerSerializer

    def get_queryset(self):
        return selectors.workspace_triggers(
            workspace=self.workspace,
            script_path=query_text(self.request, "script_path"),
            path_start=query_text(self.request, "path_start"),
        )

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        trigger = services.create_trigger(workspace=self.workspace, **serializer.validated_data)
        return Response(self.get_serializer(trigger).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(summary="Get a WebSocket trigger"),
    put=extend_schema(summary="Replace a WebSocket trigger's configuration"),
    patch=extend_schema(summary="Change some of a WebSocket trigger's configuration"),
    delete=extend_schema(summary="Delete a WebSocket trigger", responses={204: None}),
)
class TriggerDetailView(WorkspaceMixin, TriggerLookupMixin, generics.GenericAPIView):
    serializer_class = WebSocketTriggerSerializer

    def get(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.get_object()).data)

    def _update(self, request, partial):
        trigger = self.get_object()
        serializer = self.get_serializer(trigger, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        if not partial:
            # PUT replaces: optional fields it leaves out go back to their defaults,
            # except `mode` and `enabled`, which Windmill's update body never carries.
            for name in services.TRIGGER_CONFIG_FIELDS:
                if name not in fields and name not in ("mode", "enabled"):
                    fields[name] = type(trigger)._meta.get_field(name).get_default()
        trigger = services.update_trigger(trigger=trigger, **fields)
        return Response(self.get_serializer(trigger).data)

    def put(self, request, *args, **kwargs):
        return self._update(request, partial=False)

    def patch(self, request, *args, **kwargs):
        return self._update(request, partial=True)

    def delete(self, request, *args, **kwargs):
        services.delete_trigger(trigger=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    post=extend_schema(summary="Enable or disable a WebSocket trigger", responses=WebSocketTriggerSerializer)
)
class TriggerSetEnabledView(WorkspaceMixin, TriggerLookupMixin, generics.GenericAPIView):
    serializer_class = SetEnabledSerializer

    def post(self, request, *args, **kwargs):
        trigger = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        trigger = services.set_trigger_enabled(trigger=trigger, enabled=serializer.validated_data["enabled"])
        return Response(WebSocketTriggerSerializer(trigger, context=self.get_serializer_context()).data)


@extend_schema_view(
    post=extend_schema(
        summary="Set a WebSocket trigger's mode: enabled, disabled or suspended",
        responses=WebSocketTriggerSerializer,
    )
)
class TriggerSetModeView(WorkspaceMixin, TriggerLookupMixin, generics.GenericAPIView):
    serializer_class = SetModeSerializer

    def post(self, request, *args, **kwargs):
        trigger = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        trigger = services.set_trigger_mode(trigger=trigger, mode=serializer.validated_data["mode"])
        return Response(WebSocketTriggerSerializer(trigger, context=self.get_serializer_context()).data)


def _resumed(resume):
    """Response of a resume: the ids resumed, or 503 when the broker refused them."""
    try:
        resumed = resume()
    except services.ResumeFailed as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    except services.JobConflict as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    return Response(ResumedJobsSerializer({"resumed": resumed}).data)


@extend_schema_view(
    post=extend_schema(
        summary="Run all of a trigger's suspended jobs, oldest first", request=None, responses=ResumedJobsSerializer
    )
)
class TriggerResumeJobsView(WorkspaceMixin, TriggerLookupMixin, generics.GenericAPIView):
    serializer_class = ResumedJobsSerializer

    def post(self, request, *args, **kwargs):
        trigger = self.get_object()
        return _resumed(lambda: services.resume_jobs(trigger=trigger))


@extend_schema_view(
    post=extend_schema(
        summary="Discard all of a trigger's suspended jobs", request=None, responses=DiscardedJobsSerializer
    )
)
class TriggerDiscardJobsView(WorkspaceMixin, TriggerLookupMixin, generics.GenericAPIView):
    serializer_class = DiscardedJobsSerializer

    def post(self, request, *args, **kwargs):
        trigger = self.get_object()
        count = services.discard_jobs(workspace=self.workspace, trigger_path=trigger.path)
        return Response(DiscardedJobsSerializer({"discarded": count}).data)


@extend_schema_view(
    get=extend_schema(
        summary="List jobs, newest first",
        parameters=[
            OpenApiParameter("trigger_path", str, description="Only jobs of this trigger."),
            OpenApiParameter(
                "status", str, enum=[s.value for s in Job.Status], description="Only jobs in this status."
            ),
            OpenApiParameter("script_path", str, description="Only jobs of this script or flow."),
            OpenApiParameter("kind", str, enum=[k.value for k in Job.Kind], description="Only jobs of this kind."),
        ],
    )
)
class JobListView(WorkspaceMixin, generics.ListAPIView):
    serializer_class = JobSerializer

    def get_queryset(self):
        return selectors.workspace_jobs(
            workspace=self.workspace,
            trigger_path=query_text(self.request, "trigger_path"),
            status=query_text(self.request, "status"),
            script_path=query_text(self.request, "script_path"),
            kind=query_text(self.request, "kind"),
        )


class JobLookupMixin:
    lookup_url_kwarg = "job_id"
    lookup_field = "id"

    def get_queryset(self):
        return selectors.workspace_jobs(workspace=self.workspace)


@extend_schema_view(get=extend_schema(summary="Get a job"))
class JobDetailView(WorkspaceMixin, JobLookupMixin, generics.RetrieveAPIView):
    serializer_class = JobSerializer


@extend_schema_view(
    post=extend_schema(
        summary="Run a suspended job (409 if it is not suspended)", request=None, responses=JobSerializer
    )
)
class JobResumeView(WorkspaceMixin, JobLookupMixin, generics.GenericAPIView):
    serializer_class = JobSerializer

    def post(self, request, *args, **kwargs):
        job = self.get_object()
        response = _resumed(lambda: services.resume_job(job=job))
        if response.status_code != status.HTTP_200_OK:
            return response
        return Response(self.get_serializer(self.get_object()).data)


@extend_schema_view(
    post=extend_schema(
        summary="Discard a suspended job (409 if it is not suspended)", request=None, responses=JobSerializer
    )
)
class JobDiscardView(WorkspaceMixin, JobLookupMixin, generics.GenericAPIView):
    serializer_class = JobSerializer

    def post(self, request, *args, **kwargs):
        job = self.get_object()
        try:
            services.discard_job(job=job)
        except services.JobConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(self.get_object()).data)


@extend_schema_view(get=extend_schema(summary="List flows"), post=extend_schema(summary="Create a flow"))
class FlowListView(WorkspaceMixin, generics.ListCreateAPIView):
    serializer_class = FlowSerializer

    def get_queryset(self):
        return selectors.workspace_flows(workspace=self.workspace)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        flow = services.create_flow(workspace=self.workspace, **serializer.validated_data)
        return Response(self.get_serializer(flow).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(summary="Get a flow"),
    put=extend_schema(summary="Replace a flow"),
    patch=extend_schema(summary="Change some of a flow"),
    delete=extend_schema(summary="Delete a flow (refused while a trigger uses it)", responses={204: None}),
)
class FlowDetailView(WorkspaceMixin, generics.GenericAPIView):
    serializer_class = FlowSerializer
    lookup_field = "path"

    def get_queryset(self):
        return selectors.workspace_flows(workspace=self.workspace)

    def get(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.get_object()).data)

    def _update(self, request, partial):
        flow = self.get_object()
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
        services.delete_flow(flow=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    get=extend_schema(summary="Get the workspace's settings"),
    patch=extend_schema(summary="Change the workspace's error handler"),
)
class WorkspaceSettingsView(WorkspaceMixin, generics.GenericAPIView):
    serializer_class = WorkspaceSettingsSerializer

    def get(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.workspace).data)

    def patch(self, request, *args, **kwargs):
        serializer = self.get_serializer(self.workspace, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        workspace = services.update_workspace_settings(workspace=self.workspace, **serializer.validated_data)
        return Response(self.get_serializer(workspace).data)


@extend_schema_view(get=extend_schema(summary="Scripts in the registry and the workspace's flows"))
class RunnablesView(WorkspaceMixin, generics.GenericAPIView):
    serializer_class = RunnablesSerializer

    def get(self, request, *args, **kwargs):
        scripts = [registry.describe_script(path) for path in registry.list_scripts()]
        flows = [
            {"path": flow.path, "has_preprocessor": bool(flow.preprocessor_path)}
            for flow in selectors.workspace_flows(workspace=self.workspace)
        ]
        return Response(self.get_serializer({"scripts": scripts, "flows": flows}).data)


class TestConnectionView(WorkspaceMixin, generics.GenericAPIView):
    """Connect as the listener would (a URL runnable runs on a worker), then close.
    Members who may write triggers may test connections."""

    serializer_class = TestConnectionRequestSerializer

    @extend_schema(
        summary="Test a WebSocket connection",
        request=TestConnectionRequestSerializer,
        responses=TestConnectionResultSerializer,
    )
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = probe_connection(celery_app=celery_app(), workspace_id=self.workspace.id, **serializer.validated_data)
        return Response(TestConnectionResultSerializer(result).data)
