"""Declarations only: fields, constraints, clean() and __str__.

Every write goes through orvanta_triggers.services; validation of the JSON fields
lives in orvanta_triggers.validation and is reached through clean(), so the admin,
the API and the services share one path.
"""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from orvanta_triggers import validation
from orvanta_triggers.fields import StorableJSONField


class Workspace(models.Model):
    class Plan(models.TextChoices):
        FREE = "free", "Free"
        TEAM = "team", "Team"
        ENTERPRISE = "enterprise", "Enterprise"
        SELF_HOSTED = "self_hosted", "Self-hosted"

    # Plans on which WebSocket triggers are not available (product page).
    PLANS_WITHOUT_WEBSOCKET_TRIGGERS = (Plan.FREE, Plan.TEAM)

    slug = models.SlugField(
        max_length=50,
        unique=True,
        help_text="Short name used in API URLs (/api/w/<slug>/...); can't be changed later.",
    )
    name = models.CharField(max_length=200, help_text="Display name.")
    plan = models.CharField(
        max_length=20,
        choices=Plan.choices,
        default=Plan.SELF_HOSTED,
        help_text="WebSocket triggers are not available on the Free and Team plans.",
    )
    error_handler_path = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text="Script run after a job's final failure when its trigger sets no handler of its own.",
    )
    error_handler_args = StorableJSONField(
        default=dict, blank=True, help_text="Extra arguments for the error handler (a JSON object)."
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the workspace was created.")

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug

    @property
    def allows_websocket_triggers(self):
        return self.plan not in self.PLANS_WITHOUT_WEBSOCKET_TRIGGERS

    def clean(self):
        validation.raise_errors(validation.workspace_errors(self))


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        DEVELOPER = "developer", "Developer"
        VIEWER = "viewer", "Viewer"

    workspace = models.ForeignKey(
        Workspace,
        on_delete=models.CASCADE,
        related_name="memberships",
        help_text="The workspace the user belongs to.",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="orvanta_memberships",
        help_text="The member.",
    )
    role = models.CharField(
        max_length=20,
        choices=Role.choices,
        default=Role.DEVELOPER,
        help_text="Viewers read; developers and admins change triggers, flows and settings.",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "user"], name="unique_membership")]

    def __str__(self):
        return f"{self.user} in {self.workspace} ({self.role})"


class Flow(models.Model):
    workspace = models.ForeignKey(
        Workspace,
        on_delete=models.CASCADE,
        related_name="flows",
        help_text="The workspace that owns the flow.",
    )
    path = models.CharField(max_length=255, help_text="Unique in the workspace, e.g. f/demo/pipeline.")
    preprocessor_path = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text="Script whose preprocessor(event) turns the WebSocket event into the flow input.",
    )
    steps = StorableJSONField(
        default=list, help_text="Ordered steps: {id, script_path, args: {name: {type: static|ref, ...}}}."
    )
    early_return = models.CharField(
        max_length=100,
        null=True,
        blank=True,
        help_text="Id of the step whose result is sent back as soon as it exists.",
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the flow was created.")
    edited_at = models.DateTimeField(auto_now=True, help_text="When the flow was last changed.")

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["workspace", "path"], name="unique_flow_path")]

    def __str__(self):
        return f"{self.workspace_id}:{self.path}"

    def clean(self):
        validation.raise_errors(validation.flow_errors(self))


class WebSocketTrigger(models.Model):
    class FilterLogic(models.TextChoices):
        AND = "and", "AND: every filter matches"
        OR = "or", "OR: any filter matches"

    class Status(models.TextChoices):
        DISABLED = "disabled", "Disabled"
        CONNECTING = "connecting", "Connecting"
        CONNECTED = "connected", "Connected"
        ERROR = "error", "Error"

    workspace = models.ForeignKey(
        Workspace,
        on_delete=models.CASCADE,
        related_name="websocket_triggers",
        help_text="The workspace that owns the trigger; its plan must include WebSocket triggers.",
    )
    path = models.CharField(max_length=255, help_text="Unique in the workspace, e.g. f/demo/ticks.")
    url = models.CharField(
        max_length=2048,
        help_text="ws:// or wss:// URL, or $script:<path> / $flow:<path> to compute it before every connect.",
    )
    url_runnable_args = StorableJSONField(
        default=dict, blank=True, help_text="Arguments for the URL runnable (a JSON object)."
    )
    script_path = models.CharField(
        max_length=255, help_text="The script (or flow, with is_flow) run for every matching message."
    )
    is_flow = models.BooleanField(default=False, help_text="script_path names a flow of this workspace.")

    class Mode(models.TextChoices):
        ENABLED = "enabled", "Enabled"
        DISABLED = "disabled", "Disabled"
        SUSPENDED = "suspended", "Suspended"

    mode = models.CharField(
        max_length=10,
        choices=Mode.choices,
        default=Mode.ENABLED,
        db_default=Mode.ENABLED,
        help_text="enabled: runs a job per matching message; suspended: stays connected and records "
        "each matching message's job without running it, until resumed or discarded; disabled: not connected.",
    )
    # Kept beside `mode` (a constraint holds them together): the listener's index, and the
    # API's alias of Windmill's older field. True while enabled or suspended.
    enabled = models.BooleanField(
        default=True,
        help_text="A listener holds enabled and suspended triggers; disabling closes the connection.",
    )
    filters = StorableJSONField(default=list, blank=True, help_text='JSON filters: [{"key": ..., "value": ...}].')
    filter_logic = models.CharField(
        max_length=3,
        choices=FilterLogic.choices,
        default=FilterLogic.AND,
        help_text="AND: a message must match every filter; OR: any one filter.",
    )
    initial_messages = StorableJSONField(
        default=list,
        blank=True,
        help_text='Sent in order after every connect: {"raw_message": "<JSON text>"} or {"runnable_result": {"path", "args", "is_flow"}}.',
    )
    can_return_message = models.BooleanField(
        default=False, help_text="Send each successful job's non-null result back on the socket."
    )
    can_return_error_result = models.BooleanField(
        default=False, help_text='With the former: also send failures back as {"error": {name, message, stack}}.'
    )
    heartbeat = StorableJSONField(
        null=True,
        blank=True,
        help_text='{"interval_secs": 10, "message": "{\\"op\\": 1, \\"d\\": {{state}}}", "state_field": "s"}',
    )
    capture = StorableJSONField(
        default=dict,
        blank=True,
        help_text='Values kept from incoming JSON frames, by name: {"session_id": "d.session_id", "seq": "s"}; '
        "{{name}} in the heartbeat and resume messages.",
    )
    resume = StorableJSONField(
        null=True,
        blank=True,
        help_text="Sent after a reconnect instead of the initial messages once its values are captured: "
        '{"message": "{\\"op\\": 6, \\"d\\": {\\"session_id\\": {{session_id}}, \\"seq\\": {{seq}}}}", '
        '"refused_when": {"key": "op", "value": 9}}',
    )
    error_handler_path = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text="Script run after a job's final failure; overrides the workspace's.",
    )
    error_handler_args = StorableJSONField(default=dict, blank=True, help_text="Extra arguments for the error handler.")
    retry = StorableJSONField(null=True, blank=True, help_text='{"max_attempts": 3, "delay_secs": 1, "multiplier": 2}')
    headers = StorableJSONField(default=dict, blank=True, help_text="HTTP headers sent on the upgrade request.")
    subprotocols = StorableJSONField(
        default=list, blank=True, help_text="WebSocket subprotocols offered, in order of preference."
    )

    # Written by the listener only, with update_fields.
    status = models.CharField(
        max_length=20,
        choices=Status.choices,
        default=Status.CONNECTING,
        editable=False,
        help_text="disabled, connecting, connected or error; written by the listener holding the trigger.",
    )
    error = models.TextField(
        null=True,
        blank=True,
        editable=False,
        help_text="The last connection error (secrets in the URL's query string redacted).",
    )
    last_connected_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the listener last connected.",
    )
    last_message_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When a message was last received.",
    )
    listener_id = models.CharField(
        max_length=200,
        null=True,
        blank=True,
        editable=False,
        help_text="The listener process that holds the trigger's connection.",
    )
    subprotocol = models.CharField(
        max_length=200, null=True, blank=True, editable=False, help_text="The subprotocol the server chose."
    )

    created_at = models.DateTimeField(auto_now_add=True, help_text="When the trigger was created.")
    # Bumped by every configuration write; listeners poll it to notice changes.
    edited_at = models.DateTimeField(
        editable=False,
        help_text="When the configuration last changed; listeners reconnect after a change.",
    )

    STATUS_FIELDS = ("status", "error", "last_connected_at", "last_message_at", "listener_id", "subprotocol")

    class Meta:
        ordering = ["path"]
        verbose_name = "WebSocket trigger"
        constraints = [
            models.UniqueConstraint(fields=["workspace", "path"], name="unique_websocket_trigger_path"),
            models.CheckConstraint(
                condition=models.Q(enabled=True, mode__in=["enabled", "suspended"])
                | models.Q(enabled=False, mode="disabled"),
                name="trigger_enabled_follows_mode",
                violation_error_message="enabled must be true exactly when mode is enabled or suspended",
            ),
        ]
        indexes = [models.Index(fields=["enabled", "edited_at"], name="trigger_enabled_edited")]

    def __str__(self):
        return f"{self.workspace_id}:{self.path}"

    def clean(self):
        validation.raise_errors(validation.trigger_errors(self))


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        SUSPENDED = "suspended", "Suspended"
        DISCARDED = "discarded", "Discarded"

    class Kind(models.TextChoices):
        TRIGGER = "trigger", "Trigger"
        ERROR_HANDLER = "error_handler", "Error handler"
        URL_RUNNABLE = "url_runnable", "URL runnable"
        INITIAL_MESSAGE = "initial_message", "Initial message"
        TEST_CONNECTION = "test_connection", "Test connection"
        REPLAY = "replay", "Replay"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, help_text="The job id.")
    workspace = models.ForeignKey(
        Workspace,
        on_delete=models.CASCADE,
        related_name="jobs",
        help_text="The workspace the job ran in.",
    )
    # A path, not a foreign key: a job outlives edits and deletion of its trigger.
    trigger_path = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="Path of the trigger whose message started the job.",
    )
    script_path = models.CharField(max_length=255, help_text="The script (or flow) that ran.")
    is_flow = models.BooleanField(default=False, help_text="script_path names a flow.")
    status = models.CharField(
        max_length=20,
        choices=Status.choices,
        default=Status.QUEUED,
        help_text="queued, running, success, failure, suspended (its trigger was suspended) or discarded.",
    )
    kind = models.CharField(
        max_length=20,
        choices=Kind.choices,
        default=Kind.TRIGGER,
        db_default=Kind.TRIGGER,
        help_text="What ran user code: a trigger's message, an error handler, a URL runnable, an initial "
        "message, a test connection or a replay.",
    )
    # An id, not a foreign key: jobs are kept and pruned independently.
    parent_job_id = models.UUIDField(
        null=True, blank=True, help_text="For an error handler: the job whose failure it handles."
    )
    args = StorableJSONField(null=True, blank=True, help_text="The arguments main() was called with.")
    # With args["msg"], what a suspended job runs on when resumed.
    event = StorableJSONField(
        null=True,
        blank=True,
        editable=False,
        help_text="For a suspended job: its message's msg_type and the URL it arrived from.",
    )

    class ResultType(models.TextChoices):
        JSON = "json", "JSON"
        BINARY = "binary", "Binary (result holds its base64)"

    result = StorableJSONField(null=True, blank=True, help_text="What the runnable returned.")
    result_type = models.CharField(
        max_length=10,
        choices=ResultType.choices,
        default=ResultType.JSON,
        help_text="json, or binary: the runnable returned bytes, and result is their base64.",
    )
    error = StorableJSONField(null=True, blank=True, help_text="On failure: {name, message, stack}.")
    attempt = models.PositiveIntegerField(default=1, help_text="1 for the first run; retries count up.")
    created_at = models.DateTimeField(
        default=timezone.now,
        editable=False,
        help_text="When the listener accepted the job's frame (by its clock), else when the job row was created.",
    )
    started_at = models.DateTimeField(null=True, blank=True, help_text="When the latest attempt started.")
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When the job finished.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["workspace", "-created_at"], name="job_workspace_created"),
            models.Index(fields=["workspace", "trigger_path", "-created_at"], name="job_workspace_trigger"),
            models.Index(fields=["status", "started_at"], name="job_status_started"),
            models.Index(fields=["workspace", "kind", "-created_at"], name="job_workspace_kind"),
        ]

    def __str__(self):
        return f"{self.id} {self.script_path} {self.status}"
