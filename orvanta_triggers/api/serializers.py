"""JSON shapes of DESIGN.md. Serializers check types only; every rule lives in
orvanta_triggers.validation, reached through the services."""

from rest_framework import serializers

from orvanta_triggers import fieldchecks, redaction, services, windmill
from orvanta_triggers.models import Flow, Job, WebSocketTrigger, Workspace


class LenientJSONField(serializers.JSONField):
    """Any JSON; the model's validation says what is allowed. Only its depth is
    checked here, before DRF's own check re-encodes the value recursively."""

    def to_internal_value(self, data):
        message = fieldchecks.json_depth_error(data)
        if message:
            raise serializers.ValidationError(message)
        return super().to_internal_value(data)


class WebSocketTriggerSerializer(serializers.ModelSerializer):
    url_runnable_args = LenientJSONField(required=False)
    filters = LenientJSONField(required=False)
    initial_messages = LenientJSONField(required=False)
    heartbeat = LenientJSONField(required=False, allow_null=True)
    capture = LenientJSONField(required=False)
    resume = LenientJSONField(required=False, allow_null=True)
    error_handler_args = LenientJSONField(required=False)
    retry = LenientJSONField(required=False, allow_null=True)
    headers = LenientJSONField(required=False)
    subprotocols = LenientJSONField(required=False)
    filter_logic = serializers.CharField(required=False)
    status = serializers.SerializerMethodField()

    class Meta:
        model = WebSocketTrigger
        read_only_fields = [*WebSocketTrigger.STATUS_FIELDS, "edited_at"]
        # The trigger JSON of DESIGN.md: its configuration, then its read-only status.
        fields = [*services.TRIGGER_CONFIG_FIELDS, *read_only_fields]
        # Uniqueness is checked (field-keyed) by the model's validation.
        validators = []
        extra_kwargs = {"path": {"validators": []}}

    def to_internal_value(self, data):
        try:
            data = windmill.from_windmill(data)
        except windmill.WindmillShapeError as exc:
            raise serializers.ValidationError(exc.errors) from exc
        return super().to_internal_value(data)

    def get_status(self, trigger) -> str:
        return WebSocketTrigger.Status.DISABLED if not trigger.enabled else trigger.status

    def to_representation(self, trigger):
        """Secrets redacted unless the context's `workspace_role` may write the trigger."""
        data = super().to_representation(trigger)
        if not redaction.sees_secrets(self.context.get("workspace_role")):
            data = redaction.redact_trigger_config(data)
        return data


class SetEnabledSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


class SetModeSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=WebSocketTrigger.Mode.choices)


class ResumedJobsSerializer(serializers.Serializer):
    resumed = serializers.ListField(child=serializers.UUIDField(), help_text="The jobs resumed, oldest first.")


class DiscardedJobsSerializer(serializers.Serializer):
    discarded = serializers.IntegerField(help_text="How many suspended jobs were discarded.")


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = [
            "id",
            "script_path",
            "is_flow",
            "trigger_path",
            "kind",
            "parent_job_id",
            "status",
            "args",
            "result",
            "result_type",
            "error",
            "attempt",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def to_representation(self, job):
        """Secrets in args and results redacted unless the context's `workspace_role`
        may write (redaction.redact_job)."""
        data = super().to_representation(job)
        if not redaction.sees_secrets(self.context.get("workspace_role")):
            data = redaction.redact_job(data)
        return data


class FlowSerializer(serializers.ModelSerializer):
    steps = LenientJSONField()

    class Meta:
        model = Flow
        fields = ["path", "preprocessor_path", "steps", "early_return", "created_at", "edited_at"]
        read_only_fields = ["created_at", "edited_at"]
        validators = []
        extra_kwargs = {"path": {"validators": []}}


class WorkspaceSettingsSerializer(serializers.ModelSerializer):
    error_handler_args = LenientJSONField(required=False)

    class Meta:
        model = Workspace
        fields = ["error_handler_path", "error_handler_args", "plan"]
        read_only_fields = ["plan"]


class ScriptParameterSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(allow_null=True)
    required = serializers.BooleanField()
    default = serializers.JSONField(required=False)


class ScriptSerializer(serializers.Serializer):
    path = serializers.CharField()
    has_preprocessor = serializers.BooleanField()
    parameters = ScriptParameterSerializer(many=True)


class FlowSummarySerializer(serializers.Serializer):
    path = serializers.CharField()
    has_preprocessor = serializers.BooleanField()


class RunnablesSerializer(serializers.Serializer):
    scripts = ScriptSerializer(many=True)
    flows = FlowSummarySerializer(many=True)


class TestConnectionRequestSerializer(serializers.Serializer):
    url = serializers.CharField()
    url_runnable_args = LenientJSONField(required=False)
    headers = LenientJSONField(required=False)
    subprotocols = LenientJSONField(required=False)


class TestConnectionResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    error = serializers.CharField(allow_null=True)
    subprotocol = serializers.CharField(allow_null=True)
